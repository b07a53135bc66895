"""Size a command's work before doing it: connections, live population, state bytes, runs, workers,
memory and wall time on this machine.

Why: a scenario is a few lines of TOML, and a few lines can ask for 126 GiB of port tables, a
population of 10^13 live connections or a run of a thousand years. Each command sizes what it is
about to do and

- refuses with one line naming what drives the size when it cannot fit in this machine's memory
  (exit 3: the machine lacks it) or would take more than `MAX_WALL_S` (a day; exit 2: what was
  asked is out of reach); `--force` runs it anyway;
- states its estimate in one line for a large but feasible run (more than `NOTE_WALL_S` or
  `NOTE_BYTES`), and then shows progress.

State bytes come from the engine (`collide.engine.size(scenario)`) where it offers them, else from
this module's model of the engine's layout (`engine_model_bytes`). Wall time is a cost model of
this machine: connections per second per backend, placement of the stationary population, a fixed
cost per run, spread over min(workers, cores).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from .errors import InputError, Unavailable
from .files import human_bytes

__all__ = ["Size", "size_runs", "check", "engine_model_bytes", "available_memory", "MAX_WALL_S"]

#: More than this is refused without --force.
MAX_WALL_S = 86400.0
#: Above these the estimate is stated before the work starts.
NOTE_WALL_S = 20.0
NOTE_BYTES = 2 * 2 ** 30
#: Connections per second on one core of the development machine (bench/README.md, with the
#: conditional estimate), and the fixed cost of one run (scenario, state, first draws).
RATE = {"cython": 3.0e6, "numba": 2.5e6, "python": 3.5e4}
PER_RUN_S = {"cython": 2e-3, "numba": 2e-3, "python": 1e-2}
#: Placing one connection of the stationary start costs about as much as an arrival.
PLACE_COST = 1.0
#: A worker process before any state: the interpreter, numpy, the compiled core.
WORKER_BYTES = 120 * 2 ** 20
#: The engine's layout (issue 16): per (NAT ip, port, node) slot, per live connection, per
#: TIME_WAIT entry, per measured lifetime (the engine's copy, plus the scenario's Python floats).
SLOT_BYTES, LIVE_BYTES, TW_BYTES, LIFETIME_BYTES = 12, 40, 22, 8 + 32


def _fmt(x: float) -> str:
    if x >= 1e6:
        m, e = f"{x:.2e}".split("e")
        return f"{float(m):g}e{int(e)}"
    return f"{x:,.0f}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class RunSize:
    """One run of one scenario."""
    connections: float         # arrivals simulated: warm-up and measured window
    placed: float              # connections placed by the stationary start
    live: float                # live connections at once (collision-free steady state)
    state_bytes: float
    parts: dict = field(default_factory=dict)     # name -> (bytes, what drives it)


def engine_model_bytes(scenario) -> tuple[float, dict]:
    """State bytes by the engine's layout, and the parts with what drives each."""
    nat, lb, t, tg = scenario.nat, scenario.load_balancer, scenario.traffic, scenario.target
    slots = float(nat.ips) * lb.total_nodes * nat.ports
    live = _live(scenario)
    rate = max([t.rate] + [r for _, r in t.schedule])
    tw = rate * tg.server_close_fraction * tg.time_wait if tg.time_wait > 0 else 0.0
    parts = {
        "slots": (slots * SLOT_BYTES,
                  f"nat.ips x load_balancer nodes x NAT ports = {nat.ips:,} x {lb.total_nodes} x "
                  f"{nat.ports:,} port slots"),
        "live": (live * LIVE_BYTES,
                 f"traffic.rate x mean lifetime = {_fmt(rate)}/s x {t.duration.mean:.3g} s = "
                 f"{_fmt(live)} live connections"),
        "time_wait": (tw * TW_BYTES,
                      f"TIME_WAIT entries (rate x server_close_fraction x time_wait = {_fmt(tw)})"),
    }
    if t.duration.dist == "empirical":
        n = len(t.duration.values)
        parts["lifetimes"] = (n * LIFETIME_BYTES, f"traffic.duration.file ({_fmt(n)} lifetimes)")
    return sum(b for b, _ in parts.values()), parts


def _live(scenario) -> float:
    """The stationary population the start draws (before the port limits drop any)."""
    return float(scenario.mean_live)


def size_run(scenario, horizon: float | None = None) -> RunSize:
    t = scenario.traffic
    h = t.horizon if horizon is None else horizon
    warm = t.warmup if isinstance(t.warmup, (int, float)) else 0.0
    mean_rate = t.mean_rate if h == t.horizon else max([t.rate] + [r for _, r in t.schedule])
    conns = mean_rate * h + t.rate_before * warm
    live = _live(scenario)
    placed = live if t.warmup == "auto" else 0.0
    nbytes, parts = engine_model_bytes(scenario)
    try:
        from . import engine
        sizer = getattr(engine, "size", None)
    except ImportError:          # pragma: no cover
        sizer = None
    if sizer is not None:
        try:
            eb, _c, _l = sizer(scenario)
            # the engine knows its own layout; the parts keep naming what drives it
            nbytes = float(eb) + parts.get("lifetimes", (0.0, ""))[0] * 32 / LIFETIME_BYTES
        except Exception:        # an engine that cannot size this scenario: keep the model
            pass
    # the stationary start draws every placed connection's residual life and age first
    if placed:
        parts["placement"] = (placed * 16, f"the stationary start's {_fmt(placed)} connections "
                                           "(traffic.rate x mean lifetime)")
        nbytes += placed * 16
    return RunSize(conns, placed, live, nbytes, parts)


@dataclass
class Size:
    """The work of one command: `runs` runs of (at most) `run`'s size on `workers` processes."""
    what: str                   # "simulate", "sweep", ...
    run: RunSize
    runs: int
    connections: float          # all runs
    placed: float
    workers: int
    memory_bytes: float
    wall_s: float
    backend: str
    drivers: list               # (share of the wall time, text) for the time message

    def line(self) -> str:
        bits = [f"about {_fmt(self.connections)} connections"]
        if self.runs > 1:
            bits.append(f"{_fmt(self.runs)} runs on {self.workers} process(es)")
        bits.append(f"{human_bytes(self.memory_bytes)} of memory")
        bits.append(f"about {_duration(self.wall_s)} on this machine ({self.backend})")
        return f"{self.what}: " + ", ".join(bits)


def size_runs(what: str, scenario, runs: int = 1, workers: int = 1, backend: str = "cython",
              connections: float | None = None, placed: float | None = None,
              drivers: list | None = None, run: RunSize | None = None) -> Size:
    """Size `runs` runs like `scenario` (or totals given by the caller) on `workers` processes."""
    run = run or size_run(scenario)
    rate = RATE.get(backend, RATE["cython"])
    conns = run.connections * runs if connections is None else connections
    place = run.placed * runs if placed is None else placed
    par = max(1, min(workers, runs, cores()))
    wall = (conns + PLACE_COST * place) / rate / par + runs * PER_RUN_S.get(backend, 2e-3) / par
    concurrent = max(1, min(workers, runs))
    memory = run.state_bytes * concurrent + (WORKER_BYTES * concurrent if workers > 1 else 0)
    if drivers is None:
        t = scenario.traffic
        drivers = [(run.connections * runs,
                    f"traffic.rate x (traffic.horizon + warm-up) = {_fmt(t.mean_rate)}/s x "
                    f"{t.horizon + (t.warmup if t.warmup != 'auto' else 0):.4g} s"
                    + (f" x {_fmt(runs)} runs" if runs > 1 else "")),
                   (PLACE_COST * run.placed * runs,
                    f"the stationary start of traffic.rate x mean lifetime = {_fmt(run.placed)} "
                    "live connections" + (f" x {_fmt(runs)} runs" if runs > 1 else ""))]
    return Size(what, run, runs, conns, place, workers, memory, wall, backend, drivers)


def size_first_reset(scenario, replicates: int, start: str = "steady", workers: int = 1,
                     backend: str = "cython") -> Size:
    """R replicates that each stop at their first collision: the closed form's mean time to it
    (where one applies) bounds the connections a replicate simulates, else the horizon does."""
    s = scenario.replace({"traffic.warmup": "auto" if start == "steady" else 0})
    run = size_run(s)
    h = s.traffic.horizon
    try:
        from .analytic import analytic
        a = analytic(s)
        mean = a.mean_first_collision_s if a is not None else None
    except Exception:
        mean = None
    if mean is not None and math.isfinite(mean):
        h = min(h, 3.0 * mean)
    per = s.traffic.mean_rate * h
    t = s.traffic
    drivers = [(per * replicates, f"--replicates x traffic.rate x time to the first reset = "
                                  f"{_fmt(replicates)} x {_fmt(t.mean_rate)}/s x {h:.4g} s"),
               (PLACE_COST * run.placed * replicates,
                f"--replicates x the stationary start of {_fmt(run.placed)} live connections")]
    return size_runs("first-reset", s, runs=replicates, workers=workers, backend=backend,
                     connections=per * replicates, drivers=drivers, run=run)


#: Grids larger than this are sized from a sample of their points.
SAMPLE = 2_000


def size_sweep(spec, workers: int = 1) -> Size:
    """A sweep: every point's connections summed (a uniform sample of points, scaled, for large
    grids), the largest point's state per worker, `replicates` runs per point."""
    import numpy as np
    n, R = len(spec), spec.replicates
    if n <= SAMPLE:
        idx = range(n)
    else:
        idx = np.random.default_rng(0).choice(n, SAMPLE, replace=False).tolist()
    conns = placed = 0.0
    biggest = None
    for i in idx:
        r = size_run(spec.scenarios[i])
        conns += r.connections
        placed += r.placed
        if biggest is None or r.state_bytes > biggest.state_bytes:
            biggest = r
    scale = n / len(idx)
    runs = n * R
    total_conns, total_placed = conns * scale * R, placed * scale * R
    drivers = [(total_conns, f"{_fmt(n)} points x {_fmt(R)} replicate(s) x about "
                             f"{_fmt(conns / len(idx))} connections each (traffic.rate x "
                             "traffic.horizon)"),
               (total_placed, f"{_fmt(n)} points x {_fmt(R)} replicate(s) x a stationary start of "
                              f"about {_fmt(placed / len(idx))} live connections"),
               (runs * PER_RUN_S.get(spec.backend, 2e-3) * RATE.get(spec.backend, 3e6),
                f"{_fmt(n)} points x {_fmt(R)} replicate(s) (axes and replicates)")]
    return size_runs("sweep", spec.base, runs=runs, workers=workers, backend=spec.backend,
                     connections=total_conns, placed=total_placed, drivers=drivers, run=biggest)


def check(size: Size, force: bool = False, echo=None) -> None:
    """Refuse (one line) what cannot fit or would take more than a day unless `force`; state the
    estimate of a large run through `echo(line)`."""
    avail = available_memory()
    if size.memory_bytes > 0.9 * avail and not force:
        name, (nbytes, why) = max(size.run.parts.items(), key=lambda kv: kv[1][0])
        procs = min(size.workers, size.runs)
        per = "" if size.runs <= 1 or size.workers <= 1 else f" x {procs} processes"
        if procs > 1 and WORKER_BYTES * procs > nbytes * procs:
            why, nbytes, per = (f"--workers {size.workers}: {procs} processes of about "
                                f"{human_bytes(WORKER_BYTES)} each"), WORKER_BYTES * procs, ""
        raise Unavailable(
            f"{size.what}: needs about {human_bytes(size.memory_bytes)} of memory, this machine has "
            f"{human_bytes(avail)} available: {why} take {human_bytes(nbytes)}{per}; make it "
            "smaller, or give --force to try anyway")
    if size.wall_s > MAX_WALL_S and not force:
        share, why = max(size.drivers, key=lambda d: d[0])
        raise InputError(
            f"{size.what}: would take about {_duration(size.wall_s)} on this machine "
            f"({_fmt(size.connections)} connections): {why}; make it smaller, or give --force to "
            "run it anyway")
    if echo is not None and (size.wall_s > NOTE_WALL_S or size.memory_bytes > NOTE_BYTES):
        echo(size.line())
