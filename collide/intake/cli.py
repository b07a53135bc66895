"""`collide intake FILE...` and `collide intake --print-commands` (the command line, thin)."""
from __future__ import annotations

import csv
import io
import json
import os
import sys

import click

from ..options import bad_input, budget_options, format_option, progress_bar, seed_option


def write_out(place, out, result) -> list[str]:
    """scenario.toml and metrics.csv into the checked folder, all or nothing (files.OutputDir)."""
    from .metrics import csv_rows
    it = result.intake
    head = ["# made by `collide intake` from "
            + ", ".join(sorted({os.path.basename(f) for f in it.files}))]
    head += [f"# assumed: {a['key'] + ' = ' + str(a['value']) + ': ' if a['key'] else ''}{a['why']}"
             for a in it.assumed]
    head += [f"# missing: {x['what']}: {x['why']}" for x in it.missing]
    header, rows = csv_rows(it.series)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with place.writing() as tmp:
        (tmp / "scenario.toml").write_text("\n".join(head) + "\n\n" + it.scenario.to_toml(),
                                           encoding="utf-8")
        (tmp / "metrics.csv").write_text(buf.getvalue(), encoding="utf-8")
    return [os.path.join(out, "scenario.toml"), os.path.join(out, "metrics.csv")]


@click.command("intake", epilog="""\b
Examples:
  collide intake tests/data/intake/aws --seed 1
  collide intake nlb-records/ --out intake/ --set load_balancer.targets=12
  collide intake --print-commands --load-balancer my-nlb --nat-gateway nat-0123456789abcdef0 --since 7d""")
@click.argument("files", nargs=-1, metavar="FILE...", type=click.Path())
@click.option("--out", "out_dir", metavar="DIR", type=click.Path(),
              help="Write scenario.toml (for simulate, sweep, report, solve) and metrics.csv (the "
                   "series used).")
@format_option
@seed_option
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override or supply a scenario key, e.g. --set load_balancer.nodes=3 "
                   "(repeatable).")
@budget_options(
    resets="The budget for the advice: at most N resets per hour, day, week, month or year "
           "(default 1/day, as the report's).",
    probability="The budget for the advice as P(at least one reset within --within) at most P.",
    within="The window of --max-probability, e.g. 30d.", start=False)
@click.option("--advice/--no-advice", "give_advice", default=True, show_default=True,
              help="Solve for the change that meets the budget (collide solve: seconds to a "
                   "minute); --no-advice gives the verdict alone.")
@click.option("--overwrite", is_flag=True,
              help="Write into an --out folder that is not empty: intake's own files are "
                   "replaced, nothing else is touched.")
@click.option("--print-commands", is_flag=True,
              help="Print the aws and kubectl commands, and the CloudWatch query file, that "
                   "collect what intake reads.")
@click.option("--load-balancer", metavar="NAME|ARN", help="With --print-commands: the load "
              "balancer's name or ARN.")
@click.option("--nat-gateway", "nat_gateways", multiple=True, metavar="ID",
              help="With --print-commands: the clients' NAT gateway (repeatable).")
@click.option("--since", metavar="LENGTH", help="With --print-commands: how far back the metrics "
              "go (30m, 24h, 7d; default 24h).")
def intake_command(files, out_dir, fmt, seed, sets, max_resets, max_probability, within,
                   give_advice, overwrite, print_commands, load_balancer, nat_gateways, since):
    """The scenario and the verdict from what AWS and Kubernetes already report: each FILE is the
    JSON of an aws elbv2 / ec2 / cloudwatch command or of kubectl get svc (a directory stands
    for its *.json files)."""
    from .commands import script
    if print_commands:
        if files:
            bad_input("--print-commands prints the commands; give it without FILE arguments")
        for flag, given in (("--out", out_dir), ("--set", sets), ("--seed", seed),
                            ("--max-resets", max_resets), ("--max-probability", max_probability),
                            ("--within", within), ("--overwrite", overwrite)):
            if given:
                bad_input(f"{flag} goes with FILE..., not with --print-commands")
        click.echo(script(load_balancer, nat_gateways, since or "24h"))
        return
    for flag, given in (("--load-balancer", load_balancer), ("--nat-gateway", nat_gateways),
                        ("--since", since)):
        if given:
            bad_input(f"{flag} goes with --print-commands")
    if not files:
        bad_input("FILE: give the outputs to read (or a directory of them); "
                  "`collide intake --print-commands` prints the commands that make them")
    from ..api import fresh_seed
    from ..cli_solve import make_budget
    from ..files import OutputDir
    from . import intake
    from .text import format_table
    budget = None
    if give_advice:
        budget = make_budget(max_resets if (max_resets or max_probability) else "1/day",
                             max_probability, within, "steady")
    elif max_resets or max_probability or within:
        bad_input("--max-resets/--max-probability/--within set the advice's budget: not with "
                  "--no-advice")
    place = None
    if out_dir is not None:         # checked and locked before the work (exit 2 / 3)
        place = OutputDir(out_dir, "--out", overwrite=overwrite, writer="collide intake",
                          names=("scenario.toml", "metrics.csv"))
    elif overwrite:
        bad_input("--overwrite goes with --out DIR")
    seed = fresh_seed() if seed is None else seed
    bar: list = []                  # made on the first call: the closed form needs no bar

    def update(fraction):
        if not bar:
            bar.extend(progress_bar("simulating"))
        if bar[0] is not None:
            bar[0](fraction)

    def done():
        if bar:
            bar[1]()
    ok = False
    try:
        result = intake(files, sets, seed=seed, budget=budget, progress=update)
        done()
        written = write_out(place, out_dir, result) if place is not None else None
        ok = True
    except KeyboardInterrupt:
        done()
        click.echo("interrupted: nothing written", err=True)
        sys.exit(130)
    finally:
        if place is not None:
            place.close(ok=ok)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        click.echo(format_table(result, written))
