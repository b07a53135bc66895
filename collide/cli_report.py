"""`collide report`: the risk report for one deployment (docs/model.md §4.6, issue 5)."""
from __future__ import annotations

import shlex
import sys
import time

import click

from .options import (backend_option, bad_input, check_size, estimate_option, force_option,
                      handle_value_errors,
                      pop_scenario, progress_bar, scenario_options, seed_option)


@click.command("report")
@scenario_options
@click.option("--out", "out_dir", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Directory for index.html, summary.json, summary.md and figures/.")
@click.option("--window", type=float, default=600.0, show_default=True, metavar="SECONDS",
              help="Length of a load test: the page gives P(at least one reset) within it.")
@seed_option
@backend_option
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Processes for the simulations.")
@click.option("--capture", "captures", multiple=True, metavar="CAPTURE", type=click.Path(),
              help="A packet capture at the targets (repeatable): adds an \"Observed\" section; "
                   "without --scenario/--config the scenario is the capture's (collide scan).")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder that is not empty: the report's own files are replaced, "
                   "nothing else is touched.")
@estimate_option
@force_option
@handle_value_errors
def report_command(out_dir, window, seed, backend, workers, captures, estimate, force, overwrite,
                   **kw):
    """Write a risk report: verdict, mitigations, sensitivity, port headroom, how it was computed."""
    from .api import fresh_seed
    from .studies.report import build_report
    from .studies.report_html import write_report
    given_scenario = kw.get("scenario_name")
    given_plain = given_scenario and not kw.get("config_path") and not kw.get("sets") and all(
        kw.get(k) is None for k in ("rate", "duration", "horizon", "nodes", "targets", "nat_ips",
                                    "allocator", "on_collision", "cross_zone",
                                    "client_ip_preservation"))
    observed = made = None
    given_nodes = kw.get("nodes") is not None
    if not (window > 0) or window != window or window == float("inf"):
        bad_input(f"--window {window}: must be a positive number of seconds")
    from contextlib import ExitStack

    from .files import OutputDir, temp_dir
    with ExitStack() as stack:
        if captures:                  # issue 17: what the captures show, beside the model
            from .scan.report import observe
            tmp = stack.enter_context(temp_dir("report-capture"))
            observed, made = observe(captures, kw, seed=1 if seed is None else seed,
                                     backend=backend, folder=tmp)
            if made is not None:
                kw["config_path"] = str(made)
        s = pop_scenario(kw)
        # the folder is checked and locked before the simulations, not after (exit 2 / 3)
        place = OutputDir(out_dir, "--out", overwrite=overwrite, writer="collide report",
                          need=REPORT_BYTES, names=REPORT_NAMES)
        written = [False]
        stack.callback(lambda: place.close(ok=written[0]))
        check_size(_report_size(s, backend, workers), force)
        seed = fresh_seed() if seed is None else seed
        out = place.path
        where = ["--scenario", given_scenario] if given_plain else \
            ["--config", str(out / "scenario.toml")]
        command = shlex.join(["collide", "report", *where, "--out", str(out), "--window",
                              f"{window:g}", "--seed", str(seed), "--backend", backend]
                             + (["--estimate", estimate] if estimate else []))
        update, done = progress_bar("report")
        if update is None:
            click.echo(f"collide report: simulating (seed {seed}) ...", err=True)
        t0 = time.perf_counter()
        try:
            data = build_report(s, seed=seed, window=window, backend=backend, workers=workers,
                                progress=update, source=given_scenario if given_plain else None,
                                command=command, estimate=estimate)
        except KeyboardInterrupt:
            done()
            click.echo("interrupted: nothing written", err=True)
            sys.exit(130)
        done()
        if observed is not None:
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
            click.echo(f"risk {v['level']}: {v['collisions_per_hour']:.4g} collisions per hour "
                       f"(95 % {v['collisions_per_hour_ci'][0]:.4g} – "
                       f"{v['collisions_per_hour_ci'][1]:.4g}); wrote {out / 'index.html'} in "
                       f"{time.perf_counter() - t0:.1f} s")
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
