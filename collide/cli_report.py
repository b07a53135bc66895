"""`collide report`: the risk report for one deployment (docs/model.md §4.6, issue 5)."""
from __future__ import annotations

import shlex
import sys
import time

import click

from .options import (backend_option, bad_input, budget_options, check_size, estimate_option,
                      force_option, handle_value_errors,
                      pop_scenario, progress_bar, scenario_options, seed_option, workers_option)


@click.command("report", epilog="""\b
Examples:
  collide report --scenario seed --max-resets 1/week --out report/
  collide report --config my.toml --nat-ips 2 --out report/ --seed 1
  collide report --capture t-a.pcap --capture t-b.pcap --nodes 3 --out report/""")
@scenario_options
@click.option("--out", "out_dir", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Directory for index.html, summary.json, summary.md and figures/.")
@budget_options(
    resets="The budget the risk is judged against: at most N resets per hour, day, week, month or "
           "year (default 1/day).",
    probability="The budget as P(at least one reset within --within) at most P.",
    within="Your window, <number>[s|m|h|d|w] (default 10m, a load test): the page gives P(at least "
           "one reset) within it; with --max-probability, the budget's window.", start=False)
@click.option("--window", "window", type=float, default=None, hidden=True,
              help="Old name of --within, in seconds.")
@seed_option
@backend_option
@workers_option("simulations")
@click.option("--capture", "captures", multiple=True, metavar="CAPTURE", type=click.Path(),
              help="A packet capture at the targets (repeatable): adds an \"Observed\" section; "
                   "without --scenario/--config the scenario is the capture's (collide scan).")
@click.option("--intake", "intake_files", multiple=True, metavar="FILE", type=click.Path(),
              help="An AWS or kubectl JSON output (repeatable; a directory: its *.json): adds an "
                   "\"Observed\" section; without --scenario/--config the scenario is the one "
                   "the records describe (collide intake).")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder that is not empty: the report's own files are replaced, "
                   "nothing else is touched.")
@estimate_option
@force_option
@handle_value_errors
def report_command(out_dir, max_resets, max_probability, within, window, seed, backend, workers,
                   captures, intake_files, overwrite, estimate, force, **kw):
    """Write a risk report: the risk against a budget, the change that meets it, headroom,
    mitigations, sensitivity, port headroom, how it was computed."""
    from .api import fresh_seed
    from .studies.solve import Budget, parse_within
    if window is not None and within is not None:
        bad_input(f"--window {window:g} and --within {within}: give one (--window is the old name)")
    if window is not None:
        if not (window > 0) or window == float("inf"):
            bad_input(f"--window {window}: must be a positive number of seconds")
        within = repr(window)
    window = parse_within(within if within is not None else "600")
    if max_resets is not None and max_probability is not None:
        bad_input("--max-resets and --max-probability: give one budget")
    if max_probability is not None:
        budget = Budget.max_probability(max_probability, within if within is not None else None)
    else:
        budget = Budget.max_resets(max_resets if max_resets is not None else "1/day")
    from .studies.report import build_report
    from .studies.report_html import write_report
    given_scenario = kw.get("scenario_name")
    given_plain = given_scenario and not kw.get("config_path") and not kw.get("sets") and all(
        kw.get(k) is None for k in ("rate", "duration", "horizon", "nodes", "targets", "nat_ips",
                                    "allocator", "on_collision", "cross_zone",
                                    "client_ip_preservation"))
    observed = made = None
    given_nodes = kw.get("nodes") is not None
    if captures and intake_files:
        bad_input("--capture and --intake: give one source of observations")
    from contextlib import ExitStack

    from .files import OutputDir, temp_dir
    with ExitStack() as stack:
        tmp = None
        if captures:                  # issue 17: what the captures show, beside the model
            from .scan.report import observe
            tmp = stack.enter_context(temp_dir("report-capture"))
            observed, made = observe(captures, kw, seed=1 if seed is None else seed,
                                     backend=backend, folder=tmp)
        if intake_files:              # issue 26: what AWS's records show, beside the model
            from .intake.report import observe as observe_intake
            tmp = stack.enter_context(temp_dir("report-intake"))
            observed, made = observe_intake(intake_files, kw, seed=1 if seed is None else seed,
                                            backend=backend, folder=tmp)
        if made is not None:
            kw["config_path"] = str(made)
        s = pop_scenario(kw)
        # the folder is checked and locked before the simulations, not after (exit 2 / 3)
        place = OutputDir(out_dir, "--out", overwrite=overwrite, writer="collide report",
                          need=REPORT_BYTES, names=REPORT_NAMES)
        written = [False]
        stack.callback(lambda: place.close(ok=written[0]))
        from .pool import width
        workers = width(workers, 1 << 20)           # all cores unless --workers says otherwise
        check_size(_report_size(s, backend, workers), force)
        seed = fresh_seed() if seed is None else seed
        out = place.path
        where = ["--scenario", given_scenario] if given_plain else \
            ["--config", str(out / "scenario.toml")]
        win = ["--within", within] if (budget.kind == "resets" and within is not None) else []
        command = shlex.join(["collide", "report", *where, "--out", str(out), *budget.flags.split(),
                              *win, "--seed", str(seed), "--backend", backend]
                             + (["--estimate", estimate] if estimate else []))
        update, done = progress_bar("report")
        if update is None:
            click.echo(f"collide report: simulating (seed {seed}) ...", err=True)
        t0 = time.perf_counter()
        try:
            data = build_report(s, seed=seed, window=window, backend=backend, workers=workers,
                                progress=update, source=given_scenario if given_plain else None,
                                command=command, estimate=estimate, budget=budget)
        except KeyboardInterrupt:
            done()
            click.echo("interrupted: nothing written", err=True)
            sys.exit(130)
        done()
        if observed is not None and intake_files:
            from .intake.report import observed_section as intake_section
            data["observed"] = intake_section(observed)
        elif observed is not None:
            from .scan.report import observed_section
            data["observed"] = observed_section(observed, s, given_nodes=given_nodes or made is None,
                                                seed=seed, backend=backend, folder=tmp)
        extra = {}
        if made is not None:          # the capture's lifetimes beside the scenario that names them
            if (made.parent / "lifetimes.csv").exists():
                extra["lifetimes.csv"] = (made.parent / "lifetimes.csv").read_bytes()
        toml = s.to_toml(relative_to=made.parent if made is not None else None)
        from .errors import held_interrupts
        with held_interrupts() as held:     # the page is moved in and said as one step
            write_report(data, out, scenario_toml=toml, extra_files=extra, place=place)
            written[0] = True
            v = data["verdict"]
            click.echo(f"risk {v['level']} ({v['level_words']}: {budget.text}): "
                       f"{v['collisions_per_hour']:.4g} collisions per hour "
                       f"(95 % {v['collisions_per_hour_ci'][0]:.4g} – "
                       f"{v['collisions_per_hour_ci'][1]:.4g}); "
                       f"change: {data['solve']['recommendation']['text']}; "
                       f"wrote {out / 'index.html'} in {time.perf_counter() - t0:.1f} s")
        if held.hit:
            click.echo(f"interrupted after the report was written ({out} is complete)", err=True)
            sys.exit(130)


#: What a report writes (checked before the work) and about how many bytes it needs.
REPORT_NAMES = ("index.html", "summary.json", "summary.md", "scenario.toml", "lifetimes.csv",
                "figures")
REPORT_BYTES = 8 * 2 ** 20


def _report_size(s, backend: str, workers: int):
    """Today's run in full, then about 40 secondary runs capped at the report's arrival budget and
    the first-reset replicates (collide.report)."""
    from .studies.report import ARRIVAL_BUDGET, FIRST_RESET_ARRIVALS, FIRST_RESET_REPLICATES
    from .sizing import size_run, size_runs
    run = size_run(s)
    secondary = 40 * min(ARRIVAL_BUDGET, run.connections)
    first = FIRST_RESET_REPLICATES * min(FIRST_RESET_ARRIVALS, run.connections)
    return size_runs("report", s, runs=41 + FIRST_RESET_REPLICATES, workers=workers,
                     backend=backend, connections=run.connections + secondary + first,
                     placed=run.placed * (41 + FIRST_RESET_REPLICATES), run=run)
