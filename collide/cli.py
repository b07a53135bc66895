"""The `collide` command line (a click group). Exit codes: 0 done, 1 bug, 2 bad input, 130 interrupted."""
from __future__ import annotations

import importlib
import json
import math
import sys

import click

from . import __version__
from .errors import EXIT_INTERRUPTED, CollideError
from .options import (backend_option, bad_input, check_size, estimate_option, force_option,
                      format_option, handle_value_errors, pop_scenario, progress_bar, scenario_options,
                      seed_option, workers_option)


# -- subcommands that live in their own modules ------------------------------------------------------------
_LAZY = {"sweep": ("collide.cli_sweep", "sweep_command"), "plot": ("collide.cli_sweep", "plot_command"),
         "report": ("collide.cli_report", "report_command"),
         "solve": ("collide.cli_solve", "solve_command"), "lab": ("collide.lab.cli", "lab_command"),
         "scan": ("collide.scan.cli", "scan_command"),
         "intake": ("collide.intake.cli", "intake_command")}


def _load_lazy(name: str) -> click.Command:
    module, attr = _LAZY[name]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        def not_yet(_name=name):
            bad_input(f"`collide {_name}` is not built yet in this version")
        return click.Command(name, callback=not_yet, help="(not yet available in this version)",
                             context_settings={"ignore_unknown_options": True,
                                               "allow_extra_args": True})


class _LazyGroup(click.Group):
    """A group whose commands in other modules are imported when named: `collide simulate` does
    not pay for importing scan, intake, the lab and solve (a third of its start)."""

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(_LAZY))

    def get_command(self, ctx, cmd_name):
        if cmd_name in _LAZY and cmd_name not in self.commands:
            self.add_command(_load_lazy(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def all_commands(self) -> dict[str, click.Command]:
        """Every command by name, the lazy ones imported (for the docs and their tests)."""
        for name in _LAZY:
            self.get_command(None, name)
        return dict(sorted(self.commands.items()))


@click.group(cls=_LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="""\b
Examples:
  collide simulate --scenario seed --seed 1
  collide first-reset --scenario seed --replicates 200 --start cold
  collide report --scenario seed --out report/
Every command has its own --help with examples.""")
@click.version_option(__version__, prog_name="collide")
def cli():
    """How often will TCP connections through a NAT and a multi-node L4 load balancer be reset by
    4-tuple collisions, how soon is the first reset, and which change prevents it?"""


# -- formatting helpers -------------------------------------------------------------------------------
def _num(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{digits}g}"
    return f"{x:,.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def _duration(seconds):
    if seconds is None:
        return "-"
    if seconds == math.inf:
        return "never"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _describe(s) -> str:
    lb, nat, t = s.load_balancer, s.nat, s.traffic
    d = t.duration
    life = f"{d.dist} mean {d.mean:g} s" + (f", sigma {d.sigma:g}" if d.dist == "lognormal" else "") \
        + (f", alpha {d.alpha:g}" if d.dist == "pareto" else "")
    load = f"{t.rate:g} conn/s" if not t.schedule else "schedule " + ", ".join(
        f"{r:g} conn/s from {a:g} s" for a, r in t.schedule)
    return (f"{load}, {life}; NAT {nat.ips} IP(s) {nat.allocator} "
            f"ports {nat.port_min}-{nat.port_max}; {lb.nodes} nodes, {lb.total_targets} targets, "
            f"cross-zone {'on' if lb.cross_zone else 'off'}, client IP preservation "
            f"{'on' if lb.client_ip_preservation else 'off'}; {s.target.on_collision}"
            + (f", kernel {s.target.kernel}" if s.target.kernel != "modern" else "")
            + (f", challenge ACKs <= {s.target.challenge_ack_limit}/s"
               if s.target.challenge_ack_limit else ""))


def _table(rows):
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"  {k:<{w}}  {v}" for k, v in rows)


def _first_event_row(s, mean_first):
    """Time to the first reset, or to the first collision where a collision resets nothing."""
    if s.target.resets:
        return ("mean time to first reset",
                _duration(mean_first) + ("  (from the collision rate)" if mean_first else ""))
    why = ("a collision delays the new connect" if s.target.delays else
           "a collision fails the new connect" if s.target.on_collision == "fail-new" else
           "collisions are counted only")
    return ("mean time to first collision",
            _duration(mean_first) + (f"  (from the collision rate; nothing is reset: {why})"
                                     if mean_first else f"  (nothing is reset: {why})"))


def _simulate_table(r) -> str:
    d = r.to_dict()
    if not r.measured:                   # cut before the measured window: no rate to show
        return _table([("scenario", _describe(r.scenario)),
                       ("measured", "nothing: INTERRUPTED before the measured window began "
                                    "(during the stationary start or the warm-up)"),
                       ("run", f"seed {r.seed}, backend {r.backend}, {r.elapsed_s:.3g} s")])
    a = r.analytic
    lo, hi = d["collision_probability_ci"]
    rate = r.collisions_per_hour
    mean_first = 3600.0 / rate if rate > 0 else None
    rows = [
        ("scenario", _describe(r.scenario)),
        ("measured", f"{_duration(r.horizon_s)}, {r.connections:,} connections "
                     f"({'steady state' if r.scenario.traffic.warmup == 'auto' else 'from warm-up ' + str(r.scenario.traffic.warmup) + ' s'}"
                     + (f"; {r.replicates:,} replicates pooled" if r.replicates > 1 else "")
                     + ("; INTERRUPTED: the part of the window that finished" if not r.finished else "")
                     + ")"),
        ("collisions", f"{r.collisions:,}  ({_num(rate)} per hour"
                       + (f"; closed form {_num(a.collisions_per_hour)} per hour ({a.form})" if a else "")
                       + ")"),
        ("per connection", f"{_num(r.collision_probability)}  (95% CI {_num(lo)} – {_num(hi)})"
                           + (f"; closed form {_num(a.collision_probability)}" if a else "")),
    ]
    if r.expected_collisions is not None:
        rows.append(("expected collisions", f"{_num(r.expected_collisions)} ± "
                                            f"{_num(r.expected_collisions_se)} (conditional estimate, "
                                            f"{r.estimate})"))
    rows += [
        _first_event_row(r.scenario, mean_first),
        ("first collision", _duration(r.first_collision_s) + " into the window" if r.first_collision_s is not None else "none"),
        ("resets (victims)", f"{r.reset_victims:,}"),
        ("failed connects", f"{r.failed_connects:,}"),
        ("allocation failures", f"{r.allocation_failures:,}  (peak {r.peak_live_per_destination:,} live "
                                f"per destination of {r.scenario.nat.capacity:,}, at 101 instants)"),
        ("TIME_WAIT hits", f"{r.time_wait_hits:,}"),
    ]
    if r.delayed_connects or r.pending_connects:     # issue 7 items 1, 5: retried SYNs
        rows.append(("delayed connects", f"{r.delayed_connects:,}  (succeeded after SYN retries; "
                                         f"{r.pending_connects:,} still retrying at the end)"))
    if r.connect_delay_p50_s is not None:
        rows.append(("connect delay p50/p99", f"{r.connect_delay_p50_s:g} s / "
                                              f"{r.connect_delay_p99_s:g} s"))
    rows += [
        ("run", f"seed {r.seed}, backend {r.backend}, {r.elapsed_s:.3g} s"
                + (f" on {r.replicates:,} replicates" if r.replicates > 1 else "")),
    ]
    return _table(rows)


def _allocators_table(ar) -> str:
    first = next(iter(ar.results.values()))
    lines = [f"  scenario  {_describe(first.scenario)} (allocator varied)",
             f"  run       seed {first.seed}, backend {first.backend}, "
             f"{sum(r.elapsed_s for r in ar.results.values()):.3g} s", ""]
    head = ("allocator", "collisions/hour", "per connection", "95% CI")
    rows = []
    for name, r in ar.results.items():
        lo, hi = r.collision_probability_ci
        rows.append((name, _num(r.collisions_per_hour), _num(r.collision_probability),
                     f"{_num(lo)} – {_num(hi)}"))
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(4)]
    for row in [head] + rows:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(row, widths))))
    lo, hi = ar.collisions_per_hour_range
    lines += ["", f"  range     {_num(lo)} – {_num(hi)} collisions per hour"]
    return "\n".join(lines)


# -- simulate ------------------------------------------------------------------------------------------
@cli.command(epilog="""\b
Examples:
  collide simulate --scenario seed --seed 1
  collide simulate --scenario seed --no-cross-zone
  collide simulate --scenario quiet --nat-ips 4 --format json
  collide simulate --scenario seed --replicates 8 --seed 1 --format json
  collide simulate --scenario seed --all-allocators --seed 1""")
@scenario_options
@seed_option
@backend_option
@format_option
@estimate_option
@click.option("--replicates", type=click.IntRange(min=1), default=1, show_default=True,
              help="Independent stationary replicates (streams SeedSequence(seed).spawn(R)), "
                   "pooled; identical for any --workers.")
@workers_option("replicates")
@click.option("--all-allocators", is_flag=True,
              help="Run under each NAT allocator (random, sequential, linux, eim) with one seed "
                   "and print the range.")
@force_option
@handle_value_errors
def simulate(seed, backend, fmt, estimate, replicates, workers, all_allocators, force, **kw):
    """Simulate a scenario: collisions, resets, TIME_WAIT hits, the closed form beside them."""
    from .api import fresh_seed, simulate as run, simulate_allocators
    from .pool import width
    from .sizing import size_runs
    s = pop_scenario(kw)
    if all_allocators and replicates > 1:
        bad_input(f"--all-allocators with --replicates {replicates}: give one")
    workers = width(workers, replicates)        # no process without a replicate to run
    runs = 4 if all_allocators else replicates
    check_size(size_runs("simulate", s, runs=runs, workers=workers, backend=backend), force)
    seed = fresh_seed() if seed is None else seed
    update, done = progress_bar("simulating")
    if all_allocators:
        ar = simulate_allocators(s, seed=seed, backend=backend, estimate=estimate,
                                 progress=update)
        done()
        click.echo(json.dumps(ar.to_dict(), indent=2) if fmt == "json" else _allocators_table(ar))
        if not ar.finished:
            click.echo("interrupted: the counts cover the part of the window that finished",
                       err=True)
            sys.exit(130)
        return
    r = run(s, seed=seed, backend=backend, estimate=estimate, progress=update,
            replicates=replicates, workers=workers, force=True)      # sized above, with --force
    done()
    click.echo(json.dumps(r.to_dict(), indent=2) if fmt == "json" else _simulate_table(r))
    if not r.finished:
        click.echo("interrupted: the counts cover the part of the window that finished", err=True)
        sys.exit(130)


# -- first-reset ---------------------------------------------------------------------------------------
@cli.command("first-reset", epilog="""\b
Examples:
  collide first-reset --scenario seed --replicates 200 --seed 1
  collide first-reset --scenario seed --replicates 500 --start cold --format json""")
@scenario_options
@seed_option
@backend_option
@format_option
@click.option("--replicates", type=click.IntRange(min=1), default=200, show_default=True,
              help="Independent runs (docs/model.md §2.4 streams).")
@click.option("--start", type=click.Choice(["steady", "cold"]), default="steady", show_default=True,
              help="steady: from the stationary state; cold: from empty (a load test beginning).")
@workers_option("replicates")
@estimate_option
@force_option
@handle_value_errors
def first_reset(seed, backend, fmt, replicates, start, workers, estimate, force, **kw):
    """Time to the first reset: R replicates until the first collision or the horizon."""
    from .api import first_reset as run, fresh_seed
    from .pool import width
    from .sizing import size_first_reset
    s = pop_scenario(kw)
    workers = width(workers, replicates)        # no process without a replicate to run
    check_size(size_first_reset(s, replicates, start, workers, backend), force)
    seed = fresh_seed() if seed is None else seed
    update, done = progress_bar("replicates")
    try:
        fr = run(s, replicates=replicates, seed=seed, start=start, backend=backend,
                 workers=workers, progress=update, force=True)     # sized above, with --force
    finally:
        done()
    d = fr.to_dict()
    if fmt == "json":
        click.echo(json.dumps(d, indent=2))
        return
    rows = [("scenario", _describe(fr.scenario)),
            ("replicates", f"{fr.replicates:,} from a {start} start, horizon {_duration(fr.horizon_s)}; "
                           f"{fr.censored:,} saw no collision"),
            (f"mean time to first {'reset' if fr.scenario.target.resets else 'collision'}",
             _duration(d["mean_s"]) + (
                f"  (closed form {_duration(d['analytic_mean_s'])})" if d["analytic_mean_s"] else "")),
            ("median", _duration(d["median_s"])),
            ("5% / 95%", f"{_duration(d['p05_s'])} / {_duration(d['p95_s'])}"),
            ("run", f"seed {seed}, backend {backend}")]
    click.echo(_table(rows))




def _quiet_libraries() -> None:
    """Library warnings (numba, numpy, matplotlib, tqdm) are not the user's business: silence them
    here and in every process started from here, unless the user asked for them (-W,
    PYTHONWARNINGS). Matplotlib also speaks through logging (a read-only HOME: "created a
    temporary cache directory"): only its errors pass."""
    import logging
    import os
    import warnings
    if not sys.warnoptions and not os.environ.get("PYTHONWARNINGS"):
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"
        logging.getLogger("matplotlib").setLevel(logging.ERROR)


def _caused_by(exc: BaseException, kinds) -> BaseException | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _caused_by_interrupt(exc: BaseException) -> bool:
    return _caused_by(exc, KeyboardInterrupt) is not None


class _StdoutGone(Exception):
    """stdout's reader went away (EPIPE): the command ends quietly."""


class _GuardedStdout:
    """sys.stdout with its failures named: EPIPE ends the command quietly, a full device or an
    error is one line (exit 3), a closed stdout (`>&-`) is one line instead of a result lost
    without a word."""

    def __init__(self, stream):
        self._stream = stream

    def _fail(self, exc: OSError):
        import errno
        from .errors import Unavailable
        if isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE:
            raise _StdoutGone() from None
        raise Unavailable(f"stdout: cannot write the result ({exc.strerror or exc}); send it "
                          "somewhere with room (e.g. > result.txt)") from None

    def write(self, text):
        if self._stream is None:
            from .errors import Unavailable
            raise Unavailable("stdout is closed: the result has nowhere to go; run with stdout "
                              "open (e.g. > result.txt)")
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._fail(exc)

    def flush(self):
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._fail(exc)

    def isatty(self):
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name):
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def _stdout_to_devnull() -> None:
    """After EPIPE or a full stdout: later flushes (the interpreter's own at exit) go nowhere."""
    import os
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass


def _on_sigterm(signum, frame):
    """SIGTERM is handled as Ctrl-C (what finished is kept, nothing wrong is written), exit 143."""
    import signal
    from .errors import signals
    signals.terminated = True
    signal.raise_signal(signal.SIGINT)


def _setup_signals() -> None:
    import signal
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            pass                     # started in the background with Ctrl-C ignored: keep that
        else:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):    # pragma: no cover - not the main thread
        pass


def _environment_error(exc: BaseException):
    """The one-line error for what reached the top without one, when it is the machine's or the
    user's and not a bug; None for a bug."""
    import errno
    import os
    from concurrent.futures.process import BrokenProcessPool
    from .errors import InputError, Unavailable
    if isinstance(exc, MemoryError) or (isinstance(exc, ValueError) and (
            "array is too big" in str(exc) or "Maximum allowed size exceeded" in str(exc))):
        return Unavailable("not enough memory for this run; make it smaller (the size check's "
                           "estimate is printed before large runs)")
    if isinstance(exc, BrokenProcessPool):
        return Unavailable("a worker process died (out of memory, or killed); make the run "
                           "smaller or give fewer --workers")
    if isinstance(exc, RecursionError):
        return InputError("the input is nested too deeply (a TOML value inside thousands of "
                          "brackets?)")
    if isinstance(exc, OSError):
        try:
            os.getcwd()
        except OSError:
            return InputError("the current folder no longer exists (deleted?); cd to a folder "
                              "that exists, or give absolute paths")
        if exc.errno in (errno.ENOMEM,):
            return Unavailable(f"not enough memory for this run ({exc.strerror}); make it smaller")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" {exc.filename}" if exc.filename else ""
            return Unavailable(f"cannot write{where}: no space left on the device; free some "
                               "space or choose another place")
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return Unavailable(f"too many open files ({exc.strerror}); raise the limit (ulimit -n)")
    return None


def main():
    """Run the command; map every ending to its exit code (docs/model.md §4.2): 0 done, 2 bad
    input, 3 the environment cannot do it, 130 interrupted (143 after SIGTERM), 141 stdout's
    reader gone (quietly), 1 a bug (with its traceback)."""
    from .errors import EXIT_PIPE, interrupted_exit_code
    _setup_signals()
    _quiet_libraries()
    sys.stdout = _GuardedStdout(sys.stdout)
    code = 0
    try:
        try:
            rv = cli.main(standalone_mode=False)
            # a command that ends through ctx.exit(code) returns the code in standalone_mode=False
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        finally:
            sys.stdout.flush()
    except _StdoutGone:
        _stdout_to_devnull()
        code = EXIT_PIPE
    except CollideError as exc:
        exc.show()
        code = exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        code = interrupted_exit_code()
    except click.exceptions.NoArgsIsHelpError as exc:     # bare `collide`: the help, as --help
        click.echo(exc.ctx.get_help() if exc.ctx else cli.get_help(click.Context(cli)))
        code = 0
    except click.ClickException as exc:     # usage errors: bad flag values, unknown options
        msg = exc.format_message().replace("\n", " ")
        click.echo(f"collide: error: {msg}", err=True)
        code = 2
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == EXIT_INTERRUPTED:
            code = interrupted_exit_code()
    except Exception as exc:
        if _caused_by_interrupt(exc):       # Ctrl-C inside a library (an import, a class body)
            click.echo("interrupted", err=True)
            code = interrupted_exit_code()
        else:
            known = _environment_error(_caused_by(exc, (MemoryError, OSError, RecursionError,
                                                        ValueError)) or exc)
            if known is None:
                raise
            known.show()
            code = known.exit_code
    _finish(code)


def _finish(code: int):
    """Exit with `code`, Ctrl-C no longer able to turn a finished command into a traceback (the
    interpreter's own shutdown), stdout flushed or sent nowhere."""
    import signal
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except (ValueError, OSError):    # pragma: no cover
        pass
    out = sys.stdout
    try:
        if out is not None:
            out.flush()
    except (_StdoutGone, CollideError, OSError):
        _stdout_to_devnull()
    sys.exit(code)


if __name__ == "__main__":
    main()
