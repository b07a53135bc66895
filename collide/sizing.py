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
#: Seconds per simulated arrival on one core of the development machine, with the default
#: estimate (full), measured under the shared load of a working day (bench/test_bench_sizing.py
#: holds the model against measured times); the conditional estimate `target`, or none, costs
#: about half.
ARRIVAL_S = {"cython": 0.4e-6, "numba": 0.5e-6, "python": 13e-6}
#: The estimate's share of that cost: `target` reads what the collision check reads, `off`
#: (and every arrival before the window, where nothing is estimated) counts only.
ESTIMATE_SHARE = {"full": 1.0, "target": 0.2, "off": 0.17}
#: The old names of the same figures (arrivals per second), kept for callers that read them.
RATE = {k: 1.0 / v for k, v in ARRIVAL_S.items()}
#: The fixed cost of one run: scenario, parameters, the port tables' allocation.
PER_RUN_S = {"cython": 0.3e-3, "numba": 0.3e-3, "python": 5e-3}
#: Placing one connection of the stationary start costs about as much as an arrival.
PLACE_COST = 1.0
#: With TIME_WAIT on, an arrival's lookup and a closing connection's insert in the TIME_WAIT
#: table cost about this many seconds more, times server_close_fraction.
TIME_WAIT_S = 0.5e-6
#: Port exhaustion (the horizon-list regime): a connection that finds its destination full
#: counts the destination's free ports, one pass over its port slots, at about this many seconds
#: per slot; so do the placements of the stationary start beyond the destinations' capacity.
FAIL_SLOT_S = 3.6e-9
#: Per slot and run: the port tables allocated and cleared, and the 101 passes over them that
#: sample the peak live count (docs/engine.md) over the window a run covers.
SLOT_S = 1e-9
PEAK_SLOT_S = 1.6e-7
#: A worker process before any state: the interpreter, numpy, the compiled core.
WORKER_BYTES = 120 * 2 ** 20
#: The engine's layout (issue 16): per (NAT ip, port, node) slot, per live connection, per
#: TIME_WAIT entry, per measured lifetime (the engine's two arrays, the scenario's Python floats).
SLOT_BYTES, LIVE_BYTES, TW_BYTES, LIFETIME_BYTES = 12, 40, 64, 16 + 32


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
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
    connections: float         # arrivals simulated: burn-in or warm-up, and the measured window
    placed: float              # connections placed by the stationary start
    live: float                # live connections at once (collision-free steady state)
    state_bytes: float
    parts: dict = field(default_factory=dict)     # name -> (bytes, what drives it)
    work_s: float = 0.0        # seconds of one core on this machine (cython), all costs in
    drivers: list = field(default_factory=list)   # (seconds, what drives them)
    burn_in_s: float = 0.0     # simulated seconds before the window (time_wait, reuse_delay)
    failures: float = 0.0      # connections expected to find their destination full
    fail_share: float = 0.0    # the share of arrivals that do


def _time_wait_entries(scenario) -> float:
    """TIME_WAIT entries held at once: the rate that leaves one times how long it lasts, and never
    more than the 4-tuples there are (one entry per NAT ip, port and target)."""
    nat, lb, t, tg = scenario.nat, scenario.load_balancer, scenario.traffic, scenario.target
    if not (tg.time_wait > 0 and tg.server_close_fraction > 0 and lb.client_ip_preservation):
        return 0.0
    rate = max([t.rate] + [r for _, r in t.schedule])
    flow = 4.0 / 3 * rate * tg.server_close_fraction * (t.duration.mean + tg.time_wait)
    return min(flow, float(nat.ips) * nat.ports * lb.total_targets)


def engine_model_bytes(scenario) -> tuple[float, dict]:
    """State bytes by the engine's layout, and the parts with what drives each."""
    nat, lb, t = scenario.nat, scenario.load_balancer, scenario.traffic
    slots = float(nat.ips) * lb.total_nodes * nat.ports
    live = _live(scenario)
    rate = max([t.rate] + [r for _, r in t.schedule])
    tw = _time_wait_entries(scenario)
    pools = 0.0
    if nat.allocator in ("random", "eim"):
        pools = 8.0 * (nat.ips if nat.allocator == "eim" else nat.ips * lb.total_nodes) * nat.ports
    parts = {
        "slots": (slots * SLOT_BYTES + pools,
                  f"nat.ips x load_balancer nodes x NAT ports = {nat.ips:,} x {lb.total_nodes} x "
                  f"{nat.ports:,} port slots"),
        "live": (live * LIVE_BYTES,
                 f"traffic.rate x mean lifetime = {_fmt(rate)}/s x {t.duration.mean:.3g} s = "
                 f"{_fmt(live)} live connections"),
        "time_wait": (tw * TW_BYTES,
                      f"TIME_WAIT entries (traffic.rate x server_close_fraction x "
                      f"target.time_wait = {_fmt(tw)}, at most one per NAT ip, port and target)"),
    }
    if t.duration.dist == "empirical":
        n = len(t.duration.values)
        parts["lifetimes"] = (n * LIFETIME_BYTES, f"traffic.duration.file ({_fmt(n)} lifetimes)")
    return sum(b for b, _ in parts.values()), parts


def _live(scenario) -> float:
    """The stationary population the start draws (before the port limits drop any)."""
    return float(scenario.mean_live)


def _exhaustion(scenario, burn_in: float = 0.0) -> tuple[float, float, float, float]:
    """(share of the window's arrivals that find their destination full, placements beyond
    capacity, failures during the burn-in, ports held per destination).

    A destination (NAT ip, node) holds each port for the connection's life and then the NAT's
    reuse delay; under `reset-existing` with cross-zone a holder also ends early when another
    node's arrival takes its 4-tuple (about lambda/k x (N-1)/N / (P x B) per holder and
    second). Beyond capacity C, 1 - C/m of arrivals fail. The stationary start places rate x mean
    lifetime connections at once, the collisions among them resetting some; what is left beyond
    the destinations' capacity fails. During a reuse delay's burn-in the held ports grow with
    time, and arrivals fail only once they pass C."""
    nat, lb, t, tg = scenario.nat, scenario.load_balancer, scenario.traffic, scenario.target
    rate = max([t.rate] + [r for _, r in t.schedule])
    k, n = nat.ips, lb.total_nodes
    share = max(lb.all_weights) if lb.node_choice == "per-connection" else 1.0 / n
    lam_dest = rate / k * share
    mean = t.duration.mean
    life, resets = mean, 0.0
    if (tg.on_collision == "reset-existing" and lb.client_ip_preservation and n > 1
            and (lb.cross_zone or lb.balancers > 1)):
        b = lb.total_targets if lb.cross_zone else max(lb.zone_targets)
        kill = rate / k * (n - 1) / n / (nat.ports * b)
        life = 1.0 / (1.0 / mean + kill)
        resets = (n - 1) / b         # a placed connection meets a holder through another node
    cap = float(nat.capacity)
    m = lam_dest * (life + nat.reuse_delay)
    fail = max(0.0, 1.0 - cap / m) if m > 0 else 0.0
    placed = _live(scenario) if t.warmup == "auto" else 0.0
    slots = float(k) * n * nat.ports
    occupancy = min(placed / (2.0 * slots), cap / nat.ports)     # on average while placing
    placed_left = placed * (1.0 - min(1.0, resets * occupancy))
    over = max(0.0, placed_left - float(k) * n * cap)
    burn_fail = 0.0
    if burn_in > 0 and lam_dest > 0 and m > cap:
        full_at = cap / lam_dest                  # the held ports reach C
        top = min(life + nat.reuse_delay, burn_in)
        if top > full_at:
            burn_fail = (top - full_at) - full_at * math.log(top / full_at)
        burn_fail += fail * max(0.0, burn_in - (life + nat.reuse_delay))
        burn_fail *= rate
    return fail, over, burn_fail, m


def size_run(scenario, horizon: float | None = None, backend: str = "cython",
             estimate=None) -> RunSize:
    """One run: what it simulates (the burn-in of time_wait and reuse_delay, a warm-up, the
    window), what it holds, and what it costs on this machine."""
    from .engine.params import resolve_estimate, time_line
    t, nat, tg = scenario.traffic, scenario.nat, scenario.target
    h = t.horizon if horizon is None else horizon
    start, _ = time_line(scenario)
    mean_rate = t.mean_rate if h == t.horizon else max([t.rate] + [r for _, r in t.schedule])
    conns = mean_rate * h + t.rate_before * start
    live = _live(scenario)
    placed = live if t.warmup == "auto" else 0.0
    nbytes, parts = engine_model_bytes(scenario)
    try:
        from .engine import size as sizer
        eb, _c, _l = sizer(scenario)
        # the engine knows its own layout; the scenario's Python floats of measured lifetimes
        # come on top
        nbytes = float(eb) + parts.get("lifetimes", (0.0, ""))[0] * 32 / LIFETIME_BYTES
    except Exception:            # an engine that cannot size this scenario: keep the model
        pass
    if placed:
        parts["placement"] = (placed * 16, f"the stationary start's {_fmt(placed)} connections "
                                           "(traffic.rate x mean lifetime)")
        nbytes += placed * 16
    # the cost on this machine, in seconds of one core (cython), with what drives each part
    arrival = ARRIVAL_S["cython"]
    try:
        est = resolve_estimate(scenario, estimate)
    except ValueError:
        est = "full"
    tw_on = tg.time_wait > 0 and tg.server_close_fraction > 0 and \
        scenario.load_balancer.client_ip_preservation
    tw = TIME_WAIT_S * tg.server_close_fraction if tw_on else 0.0
    in_window = arrival * ESTIMATE_SHARE.get(est, 1.0) + tw
    before = arrival * ESTIMATE_SHARE["off"] + tw
    fail, over, burn_fail, held = _exhaustion(scenario, start)
    slots = float(nat.ips) * scenario.load_balancer.total_nodes * nat.ports
    failures = fail * mean_rate * h + over + burn_fail
    drivers = [
        (mean_rate * h * in_window,
         f"traffic.rate x traffic.horizon = {_fmt(mean_rate)}/s x {h:.4g} s"),
        (t.rate_before * start * before,
         f"the burn-in before the window: traffic.rate x ({'target.time_wait + ' if start and tw_on else ''}"
         f"nat.reuse_delay / warm-up) = {_fmt(t.rate_before)}/s x {start:.4g} s"),
        (PLACE_COST * placed * arrival,
         f"the stationary start of traffic.rate x mean lifetime = {_fmt(placed)} live connections"),
        (failures * nat.ports * FAIL_SLOT_S,
         f"port exhaustion: {held:,.0f} ports held per destination (rate x (lifetime + "
         f"nat.reuse_delay)) against {nat.capacity:,}, so about {_fmt(failures)} connections "
         f"find their destination full, each a pass over its {nat.ports:,} ports"),
        (slots * (SLOT_S + PEAK_SLOT_S) + PER_RUN_S["cython"],
         f"{_fmt(slots)} port slots (nat.ips x nodes x ports) to set up and sample"),
    ]
    if t.duration.dist == "empirical":
        n_life = len(t.duration.values)
        drivers.append((placed * arrival * 0.05 * math.log2(max(2, n_life)),
                        f"the stationary start's length-biased draws over {_fmt(n_life)} "
                        "measured lifetimes"))
    work = sum(s for s, _ in drivers)
    return RunSize(conns, placed, live, nbytes, parts, work, drivers, start, failures, fail)


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
              drivers: list | None = None, run: RunSize | None = None,
              work_s: float | None = None, estimate=None) -> Size:
    """Size `runs` runs like `scenario` (or totals given by the caller) on `workers` processes."""
    run = run or size_run(scenario, estimate=estimate)
    speed = ARRIVAL_S.get(backend, ARRIVAL_S["cython"]) / ARRIVAL_S["cython"]
    conns = run.connections * runs if connections is None else connections
    place = run.placed * runs if placed is None else placed
    par = max(1, min(workers, runs, cores()))
    if work_s is None:
        if connections is None:
            work_s = run.work_s * runs
        else:                        # totals given: the run's cost per connection, scaled
            per = run.work_s / max(run.connections + run.placed, 1.0)
            work_s = per * (conns + place) + runs * PER_RUN_S["cython"]
    wall = work_s * speed / par
    concurrent = max(1, min(workers, runs))
    memory = run.state_bytes * concurrent + (WORKER_BYTES * concurrent if workers > 1 else 0)
    if drivers is None:
        drivers = [(s * runs, why + (f" x {_fmt(runs)} runs" if runs > 1 else ""))
                   for s, why in run.drivers]
    return Size(what, run, runs, conns, place, workers, memory, wall, backend, drivers)


def _rough_first_collision_s(s) -> float | None:
    """The mean time to a first collision by the event form of docs/model.md §3 taken as it is
    (for sizing only, where no closed form applies): 1 / (rate x (1 - (1 - x)^(N-1)))."""
    from .analytic import is_zero
    try:
        if is_zero(s):
            return None
    except Exception:
        return None
    nat, lb, t = s.nat, s.load_balancer, s.traffic
    n = lb.total_nodes
    x = (t.mean_rate / nat.ips) * t.duration.mean / (n * lb.total_targets * nat.ports)
    p = 1.0 - (1.0 - min(x, 1.0)) ** (n - 1)
    rate = t.mean_rate * p
    return 1.0 / rate if rate > 0 else None


def size_first_reset(scenario, replicates: int, start: str = "steady", workers: int = 1,
                     backend: str = "cython") -> Size:
    """R replicates that each stop at their first collision: the closed form's mean time to it
    (where one applies) bounds the window a replicate simulates, else the horizon does; each
    pays its own start (placement, burn-in, exhaustion)."""
    s = scenario.replace({"traffic.warmup": "auto" if start == "steady" else 0})
    run = size_run(s, estimate="off")          # replicates count only, until their first collision
    h = s.traffic.horizon
    try:
        from .analytic import analytic
        a = analytic(s)
        mean = a.mean_first_collision_s if a is not None else None
    except Exception:
        mean = None
    if mean is None:                 # no closed form here (near exhaustion...): its rough rate
        mean = _rough_first_collision_s(s)
    if mean is not None and math.isfinite(mean):
        h = min(h, 3.0 * mean)
    t = s.traffic
    per = t.mean_rate * h
    window = t.mean_rate * t.horizon
    scale = h / t.horizon if t.horizon > 0 else 1.0
    # the window's part of the run's cost shrinks to the time to the first reset (its peak
    # samples with it)
    slots = float(s.nat.ips) * s.load_balancer.total_nodes * s.nat.ports
    window_s = run.drivers[0][0] + run.fail_share * window * s.nat.ports * FAIL_SLOT_S + \
        slots * PEAK_SLOT_S
    work = (run.work_s - window_s * (1.0 - scale)) * replicates
    drivers = [(window_s * scale * replicates,
                f"--replicates x traffic.rate x time to the first reset = "
                f"{_fmt(replicates)} x {_fmt(t.mean_rate)}/s x {h:.4g} s"),
               ((run.work_s - window_s) * replicates,
                f"--replicates x each replicate's start ({run.drivers[2][1]})")]
    conns = (per + t.rate_before * run.burn_in_s) * replicates
    return size_runs("first-reset", s, runs=replicates, workers=workers, backend=backend,
                     connections=conns, placed=run.placed * replicates, drivers=drivers, run=run,
                     work_s=work)


#: Grids larger than this are sized from a sample of their points.
SAMPLE = 2_000


def size_sweep(spec, workers: int = 1) -> Size:
    """A sweep: every point's cost summed (a uniform sample of points, scaled, for large grids;
    the grid's size comes from its axes' parameters, nothing is expanded), the largest point's
    state per worker, `replicates` runs per point, and the grid's own memory."""
    import numpy as np
    n, R = len(spec), spec.replicates
    if n <= SAMPLE:
        idx = range(n)
    else:
        idx = sorted(set(np.random.default_rng(0).integers(0, n, SAMPLE).tolist()))
    conns = placed = work = 0.0
    biggest = None
    for i in idx:
        r = size_run(spec.scenarios[i], estimate=spec.estimate)
        conns += r.connections
        placed += r.placed
        work += r.work_s
        if biggest is None or r.state_bytes > biggest.state_bytes:
            biggest = r
    scale = n / len(idx)
    runs = n * R
    total_conns, total_placed = conns * scale * R, placed * scale * R
    total_work = work * scale * R
    if spec.rel_error is not None:       # a point may grow its horizon up to max_connections
        total_work = max(total_work, min(runs * spec.max_connections, 1e18)
                         * ARRIVAL_S["cython"] * 0.1)
    drivers = [(total_work, f"{_fmt(n)} points x {_fmt(R)} replicate(s) x about "
                            f"{_duration(work / len(idx))} each ({_fmt(conns / len(idx))} "
                            "connections: traffic.rate x traffic.horizon, and the start)")]
    size = size_runs("sweep", spec.base, runs=runs, workers=workers, backend=spec.backend,
                     connections=total_conns, placed=total_placed, drivers=drivers, run=biggest,
                     work_s=total_work)
    # the grid itself: every point's row (at most one in memory per finished point when
    # written to a file; the resume bookkeeping keeps a byte per point)
    size.memory_bytes += n * 1.0
    return size


def check(size: Size, force: bool = False, echo=None) -> None:
    """Refuse (one line) what cannot fit or would take more than a day unless `force`; state the
    estimate of a large run through `echo(line)`."""
    avail = available_memory()
    if size.memory_bytes > 0.9 * avail and not force:
        name, (nbytes, why) = max(size.run.parts.items(), key=lambda kv: kv[1][0])
        nbytes = min(nbytes, size.memory_bytes)
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
