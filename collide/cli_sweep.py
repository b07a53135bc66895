"""`collide sweep` and `collide plot` (docs/model.md §4.2, §4.5). Registered lazily by collide.cli."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import bad_input, budget_options, parse_assignments, workers_option


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        bad_input(f"--scheduler {address}: needs Dask distributed (pip install 'collide[dask]')")
    try:
        return Client(address, timeout="15s")
    except (OSError, TimeoutError, ValueError) as exc:
        bad_input(f"--scheduler {address}: cannot connect ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


@click.command("sweep", epilog="""\b
Examples:
  collide sweep examples/sweep-seed.toml --out grid.csv
  collide sweep examples/sweep-seed.toml --out grid.csv --resume
  collide sweep examples/sweep-seed.toml --out grid.parquet --workers 2 --rel-error 0.05""")
@click.argument("sweep_file", metavar="SWEEP.toml", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, metavar="FILE",
              help="Results: .csv, .jsonl or .parquet (pyarrow); each point is appended as it finishes.")
@workers_option("points")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run on an existing Dask distributed cluster, e.g. tcp://10.0.0.5:8786.")
@click.option("--resume", is_flag=True, help="Skip the points already in --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (kept otherwise).")
@click.option("--force", is_flag=True,
              help="Run even when the size check says it will not fit in memory or would take "
                   "more than a day.")
@click.option("--rel-error", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=None,
              help="Run each point until its collision rate has this relative standard error "
                   "(the horizon grows from traffic.horizon), capped by --max-connections.")
@click.option("--max-connections", type=click.IntRange(min=1), default=None,
              help="Cap per point for --rel-error (default 1e8 connections).")
@click.option("--backend", type=click.Choice(["cython", "numba", "python"]), default=None,
              help="Simulation engine (default: the sweep file's, else cython).")
@click.option("--estimate", type=click.Choice(["target", "full", "off"]), default=None,
              help="The conditional estimate kept (default: the sweep file's, else full where a "
                   "collision can happen).")
@click.option("--no-estimate", "no_estimate", is_flag=True, help="Count only (= --estimate off).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="The sweep's seed (default: the sweep file's `seed`); point i runs on "
                   "SeedSequence(seed, spawn_key=(i,)).")
def sweep_command(sweep_file, out, workers, scheduler, resume, overwrite, force, rel_error,
                  max_connections, backend, estimate, no_estimate, seed):
    """Run a grid of scenarios (docs/model.md §4.5): one pooled row per point, appended to --out as it finishes.

    Rows do not depend on --workers, the executor or an interruption: Ctrl-C keeps what finished,
    and --resume completes it.
    """
    from .files import check_output_file
    from .options import check_size
    from .pool import width
    from .sizing import size_sweep
    from .studies.sweep import SweepError, SweepInterrupted, _out_format, load_sweep, run_spec
    if not Path(sweep_file).exists():
        bad_input(f"SWEEP.toml {sweep_file}: no such file")
    if resume and overwrite:
        bad_input("--resume and --overwrite: give one (finish the sweep in --out, or replace it)")
    try:
        _out_format(Path(out))
        if no_estimate and estimate not in (None, "off"):
            bad_input(f"--estimate {estimate} and --no-estimate: give one")
        spec = load_sweep(sweep_file, rel_error=rel_error, backend=backend,
                          max_connections=max_connections, seed=seed,
                          estimate="off" if no_estimate else estimate)
    except SweepError as exc:
        bad_input(str(exc))
    if workers is not None and scheduler is not None:
        bad_input("--workers and --scheduler: give one (the cluster decides its workers)")
    # before any point runs: the place (links are never written through), then the lock on the
    # name the place resolves to (two names for one file are one file)
    check_output_file(out, "--out", append=True)
    from .files import OutputLock
    from .studies.sweep import exists
    lock = OutputLock(out, "--out")                   # one writer at a time (exit 3)
    try:
        if exists(out) and not resume and not overwrite:
            bad_input(f"--out {out}: exists; give --resume to finish that sweep, or --overwrite "
                      "to replace it (nothing was run)")
        if resume:
            from .studies.sweep import check_resume
            try:
                check_resume(spec, out)
            except SweepError as exc:
                bad_input(str(exc))
        if scheduler is None:
            asked = workers
            workers = width(workers, len(spec))          # no process without a point to run
            if asked is not None and asked > workers:
                click.echo(f"sweep: --workers {asked}: {len(spec)} point(s), so {workers} "
                           "process(es)", err=True)
        check_size(size_sweep(spec, workers or 1), force)
        client = executor = None
        if scheduler is not None:
            client = _connect(scheduler)
            executor = client.get_executor()
    except BaseException:
        lock.release()
        raise
    where = f"Dask cluster {scheduler}" if scheduler else (
        "1 process (inline)" if workers == 1 else f"{workers or __import__('os').cpu_count()} processes")
    click.echo(f"sweep: {len(spec)} points x {spec.replicates} replicate(s), seed {spec.seed}, on {where}"
               + (f", rel-error {spec.rel_error:g}" if spec.rel_error else ""), err=True)
    from .progress import count_bar
    update, done = count_bar("points", unit="point")
    try:
        res = run_spec(spec, executor=executor, workers=workers, out=out, resume=resume,
                       progress=update, overwrite=overwrite, keep_rows=False, lock=lock)
    except SweepError as exc:
        done()
        bad_input(str(exc))
    except SweepInterrupted as exc:
        done()
        r = exc.result
        click.echo(f"interrupted: {r.written} point(s) written to {out} this run, {r.written + r.skipped} "
                   f"of {r.total} in all; run again with --resume to finish", err=True)
        sys.exit(130)
    finally:
        if client is not None:
            client.close()
    done()
    click.echo(f"wrote {res.written} point(s) to {out} in {res.elapsed_s:.1f} s"
               + (f" ({res.skipped} already there, skipped)" if res.skipped else ""), err=True)


@click.command("plot", epilog="""\b
Examples:
  collide plot grid.csv --x traffic.rate --y collisions_per_hour --hue nat.ips --out rate.png
  collide plot grid.csv --x traffic.rate --y collision_probability --where nat.ips=1 --out p.svg""")
@click.argument("results", metavar="RESULTS", type=click.Path(dir_okay=False))
@click.option("--x", "x", required=True, metavar="KEY", help="Column on the x axis, e.g. traffic.rate.")
@click.option("--y", "y", required=True, metavar="METRIC", help="Column on the y axis, e.g. collisions_per_hour.")
@click.option("--hue", default=None, metavar="KEY", help="One line per value of this column.")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Keep only rows with this value, e.g. --where nat.ips=1 (repeatable).")
@click.option("--title", default=None, help="Figure title.")
@click.option("--out", "out", required=True, metavar="FILE", help="Figure: .png or .svg.")
@budget_options(
    resets="On a two-key grid (--y a second key): draw where this budget is met, with its "
           "uncertainty band, over a heatmap of the resets per hour.",
    probability="The budget as P(at least one reset within --within) at most P.",
    within="The window of --max-probability, e.g. 30d.", start=False)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out (kept otherwise).")
def plot_command(results, x, y, hue, where, title, out, max_resets, max_probability, within,
                 overwrite):
    """Plot a sweep's RESULTS (.csv, .jsonl, .parquet): METRIC against KEY, bands and the closed form;
    with a budget, where it is met on a grid of two keys."""
    from .files import check_output_file
    from .studies.plot import PlotError, plot_budget, plot_sweep
    from .studies.sweep import SweepError
    if not Path(results).exists():
        bad_input(f"RESULTS {results}: no such file")
    if Path(out).suffix.lower() not in (".png", ".svg"):
        bad_input(f"--out {out}: must end in .png or .svg")
    budget = None
    if max_resets is not None or max_probability is not None or within is not None:
        from .cli_solve import make_budget
        budget = make_budget(max_resets, max_probability, within, "steady")
        if hue is not None:
            bad_input(f"--hue {hue}: not with a budget (the colour is the resets per hour)")
    check_output_file(out, "--out", overwrite=overwrite)     # before reading and drawing
    filt = parse_assignments(where, "--where", "nat.ips=1")
    try:
        if budget is not None:
            path = plot_budget(results, x=x, y=y, budget=budget, out=out, where=filt or None,
                               title=title)
        else:
            path = plot_sweep(results, x=x, y=y, hue=hue, out=out, where=filt or None, title=title)
    except (PlotError, SweepError) as exc:
        bad_input(str(exc))
    click.echo(f"wrote {path}", err=True)
