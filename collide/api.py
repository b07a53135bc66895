"""The Python API: `simulate`, `first_reset`, and their JSON-ready results (docs/model.md §4.3, §4.4)."""
from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import engine
from .analytic import analytic as _analytic
from .scenario import ALLOCATORS, Scenario
from .stats import kaplan_meier_quantile, wilson

SCHEMA_VERSION = 1


def fresh_seed() -> int:
    """A new seed for runs given none; it is printed so the run can be repeated."""
    return secrets.randbits(63)


# -- arguments: the command line's one-line errors, numpy numbers taken as numbers --------------------
def _whole(name: str, value, low: int = 0):
    """An integer argument (numpy integers and integral floats too); InputError otherwise, never
    a silent truncation."""
    from .errors import InputError
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} = {value!r:.40}: must be an integer >= {low}")
    return value


def _seed(seed):
    return fresh_seed() if seed is None else _whole("seed", seed, 0)


def _choice(name: str, value, allowed):
    from .errors import InputError
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} = {value!r:.40}: must be one of {', '.join(allowed)}")
    return value


def _estimate_arg(estimate):
    if estimate is None or isinstance(estimate, bool):
        return estimate
    return _choice("estimate", estimate, engine.ESTIMATES)


def _sized(what: str, scenario, force: bool, runs: int = 1, workers: int = 1,
           backend: str = "cython", size=None, estimate=None) -> None:
    """The command line's size check (collide.sizing): more than memory or a day is refused
    unless `force`."""
    from .sizing import check, size_runs
    check(size or size_runs(what, scenario, runs=runs, workers=workers, backend=backend,
                            estimate=estimate), force)


@dataclass(frozen=True)
class Result:
    """One simulation: counters, derived rates, the closed form beside them (docs/model.md §4.3)."""
    scenario: Scenario
    seed: int
    backend: str
    connections: int
    established: int
    allocation_failures: int
    failed_connects: int
    collisions: int
    reset_victims: int
    time_wait_hits: int
    pairs: int
    peak_live_per_destination: int
    first_collision_s: float | None
    expected_collisions: float | None
    expected_collisions_se: float | None
    elapsed_s: float
    state_bytes: int = 0
    kernel_s: float = 0.0            # wall time of the measured window's kernel calls
    setup_s: float = 0.0             # wall time before it: state, stationary placement, warm-up
    finished: bool = True
    horizon_s: float = field(default=0.0)      # the measured window covered (measured_s)
    estimate: str | None = None                # "target" or "full" (None: off)
    estimate_reason: str | None = None         # why that estimate (docs/model.md §3)
    pilot_s: float = 0.0                       # wall time spent choosing it (in kernel_s)
    replicates: int = 1
    # delayed connects (issue 7 items 1, 5; docs/model-fidelity.md)
    delayed_connects: int = 0
    pending_connects: int = 0          # measured connections still retrying at the window's end
    connect_delay_histogram: tuple = ()    # ((delay_s, count), ...) over the SYN schedule

    def _delay_quantile(self, num: int, den: int) -> float | None:
        """Nearest-rank quantile num/den of the connect delays (exact: delays take only the
        schedule's values); None when no connection was delayed."""
        total = sum(x for _, x in self.connect_delay_histogram)
        if total == 0:
            return None
        rank = max(1, -(-total * num // den))
        seen = 0
        for delay, x in self.connect_delay_histogram:
            seen += x
            if seen >= rank:
                return delay
        return self.connect_delay_histogram[-1][0]

    @property
    def connect_delay_p50_s(self) -> float | None:
        return self._delay_quantile(50, 100)

    @property
    def connect_delay_p99_s(self) -> float | None:
        return self._delay_quantile(99, 100)

    @property
    def collision_probability(self) -> float:
        return self.collisions / self.connections if self.connections else 0.0

    @property
    def collision_probability_ci(self) -> tuple[float, float]:
        return wilson(self.collisions, self.connections)

    @property
    def collisions_per_hour(self) -> float:
        return self.collisions / self.horizon_s * 3600.0 if self.horizon_s else 0.0

    @property
    def measured_s(self) -> float:
        """Simulated seconds of measured window behind every rate (all replicates)."""
        return self.horizon_s

    @property
    def interrupted(self) -> bool:
        return not self.finished

    @property
    def analytic(self):
        return _analytic(self.scenario)

    @property
    def connections_per_second(self) -> float:
        """Simulated connections per second of wall time."""
        return self.connections / self.elapsed_s if self.elapsed_s > 0 else math.inf

    @property
    def measured(self) -> bool:
        """Whether any of the measured window was covered (a run cut during its warm-up or its
        stationary start was not: it has counts of nothing, and no rate)."""
        return self.horizon_s > 0 or (self.finished and self.connections > 0)

    def to_dict(self) -> dict:
        a = self.analytic
        lo, hi = self.collision_probability_ci
        d = self._dict(a, lo, hi)
        if not self.measured:              # interrupted before the window: no rate to give
            for k in ("collision_probability", "collision_probability_ci", "collisions_per_hour",
                      "expected_collisions", "expected_collisions_se"):
                d[k] = None
        return d

    def _dict(self, a, lo, hi) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "connections": self.connections, "established": self.established,
            "allocation_failures": self.allocation_failures,
            "failed_connects": self.failed_connects, "collisions": self.collisions,
            "reset_victims": self.reset_victims, "time_wait_hits": self.time_wait_hits,
            "pairs": self.pairs,
            "collision_probability": self.collision_probability,
            "collision_probability_ci": [lo, hi],
            "collisions_per_hour": self.collisions_per_hour,
            "expected_collisions": self.expected_collisions,
            "expected_collisions_se": self.expected_collisions_se,
            "estimate": self.estimate,
            "estimate_reason": self.estimate_reason, "pilot_s": self.pilot_s,
            "first_collision_s": self.first_collision_s,
            "peak_live_per_destination": self.peak_live_per_destination,
            "peak_live_exact": False,
            "measured_s": self.measured_s, "interrupted": self.interrupted,
            "replicates": self.replicates,
            "analytic": a.to_dict() if a is not None else None,
            "seed": self.seed, "backend": self.backend, "elapsed_s": self.elapsed_s,
            "kernel_s": self.kernel_s, "setup_s": self.setup_s,
            "scenario": self.scenario.to_dict(),
            "delayed_connects": self.delayed_connects,
            "pending_connects": self.pending_connects,
            "connect_delay_p50_s": self.connect_delay_p50_s,
            "connect_delay_p99_s": self.connect_delay_p99_s,
            "connect_delay_histogram": [list(x) for x in self.connect_delay_histogram],
        }


def _estimate(raw: engine.RawRun):
    """The estimate's total and its standard error from the batch means of the window covered.

    Batches of the window are equal in time except the last one an interruption cut short, so
    the error is that of a ratio estimator: n / (n - 1) * sum (S_i - r w_i)^2 with r = sum S /
    sum w over the n batches covered (for equal batches, n times the variance of the sums)."""
    if raw.estimate == "off":
        return None, None
    b, w = raw.batches, raw.batch_weights
    used = w > 0
    total = float(b[used].sum())
    n = int(used.sum())
    if n < 2:
        return total, None
    r = total / float(w[used].sum())
    dev = b[used] - r * w[used]
    return total, float(math.sqrt(n / (n - 1) * float(np.dot(dev, dev))))


def simulate(scenario, seed: int | None = None, backend: str = "cython", estimate=None,
             progress: Callable[[float], None] | None = None, replicates: int = 1,
             workers: int = 1, force: bool = False) -> Result:
    """Simulate a scenario. `scenario` is a Scenario, a dict, a built-in name or a TOML path.

    `estimate`: "full", "target" or "off" (None: the default of docs/model.md §3; True/False are
    the default and "off"). The same (scenario, seed) gives the same counts on every backend
    (docs/model.md §2.4). With `replicates` R > 1 the result pools R independent replicates on
    the streams SeedSequence(seed).spawn(R), run on `workers` processes: identical for any worker
    count. Arguments are checked as the command line checks them (InputError, one line), and the
    run is sized first: more than this machine's memory or a day is refused unless `force`.
    """
    scenario = Scenario.load(scenario)
    seed = _seed(seed)
    replicates = _whole("replicates", replicates, 1)
    workers = _whole("workers", workers, 1)
    backend = _choice("backend", backend, engine.BACKENDS)
    estimate = _estimate_arg(estimate)
    _sized("simulate", scenario, force, runs=replicates, workers=min(workers, replicates),
           backend=backend, estimate=estimate)
    if replicates > 1:
        return _replicated(scenario, seed, backend, estimate, progress, replicates, workers)
    raw = engine.run(scenario, engine.bit_generator(seed), backend, estimate, progress)
    return _result(scenario, seed, backend, raw)


def _one_replicate(args) -> Result:
    scenario, seed, r, R, backend, estimate = args
    raw = engine.run(scenario, engine.bit_generator(seed, r, R), backend, estimate)
    return _result(scenario, seed, backend, raw)


def pool_results(results: list) -> Result:
    """R replicates as one result: counts and measured time summed, the estimate summed with its
    standard errors in quadrature, the first collision of the first replicate, the largest peak."""
    first = results[0]
    total = {k: sum(getattr(x, k) for x in results)
             for k in ("connections", "established", "allocation_failures", "failed_connects",
                       "collisions", "reset_victims", "time_wait_hits", "pairs", "delayed_connects",
                       "pending_connects", "horizon_s", "elapsed_s", "kernel_s", "setup_s",
                       "state_bytes")}
    hist: dict = {}
    for x in results:
        for delay, count in x.connect_delay_histogram:
            hist[delay] = hist.get(delay, 0) + count
    ex = [x.expected_collisions for x in results]
    se = [x.expected_collisions_se for x in results]
    return dataclasses.replace(
        first, **total, connect_delay_histogram=tuple(sorted(hist.items())),
        peak_live_per_destination=max(x.peak_live_per_destination for x in results),
        expected_collisions=None if any(e is None for e in ex) else float(sum(ex)),
        expected_collisions_se=None if any(s is None for s in se)
        else float(math.sqrt(sum(s * s for s in se))),
        finished=all(x.finished for x in results), replicates=len(results))


def _replicated(scenario, seed, backend, estimate, progress, replicates, workers) -> Result:
    """R replicates, in order, on `workers` processes (collide.pool: they ignore Ctrl-C and die
    with their parent). Ctrl-C keeps the replicates that finished, pooled and marked interrupted."""
    from .pool import imap, process_pool, stop_pool, width
    tasks = ((scenario, seed, r, replicates, backend, estimate) for r in range(replicates))
    results: list = []
    workers = width(workers, replicates)
    interrupted = False
    pool = process_pool(workers) if workers > 1 else None
    try:
        it = imap(pool, _one_replicate, tasks, workers) if pool else map(_one_replicate, tasks)
        for r in it:
            results.append(r)
            if progress:
                progress(len(results) / replicates)
            if not r.finished:
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            stop_pool(pool, interrupted)
    if not results:
        raise KeyboardInterrupt
    pooled = pool_results(results)
    return dataclasses.replace(pooled, finished=False) if interrupted else pooled


@dataclass(frozen=True)
class AllocatorRange:
    """One scenario under every NAT port allocator with one seed (issue 7 item 6: providers do not
    document their allocator, so the answer is a range)."""
    results: dict          # allocator name -> Result

    @property
    def collisions_per_hour_range(self) -> tuple[float, float]:
        rates = [r.collisions_per_hour for r in self.results.values()]
        return min(rates), max(rates)

    @property
    def finished(self) -> bool:
        return all(r.finished for r in self.results.values())

    def to_dict(self) -> dict:
        lo, hi = self.collisions_per_hour_range
        return {"schema_version": SCHEMA_VERSION,
                "allocators": {name: r.to_dict() for name, r in self.results.items()},
                "range": {"collisions_per_hour": [lo, hi]}}


def simulate_allocators(scenario, seed: int | None = None, backend: str = "cython",
                        estimate=None, progress: Callable[[float], None] | None = None,
                        allocators: tuple[str, ...] = ALLOCATORS) -> AllocatorRange:
    """`simulate` under each allocator (random, sequential, linux, eim), all with the same seed."""
    scenario = Scenario.load(scenario)
    seed = _seed(seed)
    results = {}
    for i, name in enumerate(allocators):
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(allocators)))
        r = simulate(scenario.replace({"nat.allocator": name}), seed=seed, backend=backend,
                     estimate=estimate, progress=sub, force=True)
        results[name] = r
        if not r.finished:
            break
    return AllocatorRange(results)


def _result(scenario, seed, backend, raw: engine.RawRun) -> Result:
    exp, se = _estimate(raw)
    return Result(scenario=scenario, seed=seed, backend=backend, **raw.counters,
                  first_collision_s=raw.first_collision_s, expected_collisions=exp,
                  expected_collisions_se=se, elapsed_s=raw.elapsed_s,
                  kernel_s=raw.kernel_s, setup_s=raw.setup_s, state_bytes=raw.state_bytes, finished=raw.finished, horizon_s=raw.measured_s,
                  estimate=None if raw.estimate == "off" else raw.estimate,
                  estimate_reason=raw.estimate_reason, pilot_s=raw.pilot_s)


# -- time to the first reset ------------------------------------------------------------------------
@dataclass(frozen=True)
class FirstReset:
    """Time to the first collision over R replicates (docs/model.md §4.4)."""
    scenario: Scenario
    seed: int
    start: str
    times: tuple[float | None, ...]     # None: no collision within the horizon (censored)
    horizon_s: float
    analytic_mean_s: float | None

    @property
    def replicates(self) -> int:
        return len(self.times)

    @property
    def censored(self) -> int:
        return sum(t is None for t in self.times)

    @property
    def mean_s(self) -> float | None:
        """Censored-exponential maximum likelihood: total exposure / collisions seen."""
        seen = self.replicates - self.censored
        if seen == 0:
            return None
        exposure = sum(self.horizon_s if t is None else t for t in self.times)
        return exposure / seen

    def quantile(self, q: float) -> float | None:
        return kaplan_meier_quantile(self.times, q)

    def survival(self) -> tuple[np.ndarray, np.ndarray]:
        """Kaplan–Meier survival curve: (times, S(t)) just after each event."""
        from .stats import kaplan_meier
        return kaplan_meier(self.times)

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "replicates": self.replicates,
                "censored": self.censored, "mean_s": self.mean_s,
                "median_s": self.quantile(0.5), "p05_s": self.quantile(0.05),
                "p95_s": self.quantile(0.95), "analytic_mean_s": self.analytic_mean_s,
                "start": self.start, "seed": self.seed, "scenario": self.scenario.to_dict()}


def _first_reset_one(args) -> float | None:
    """One replicate: run until the first collision or the horizon (picklable for pools).
    A replicate cut by Ctrl-C is not a censored one: the interruption goes on up."""
    scenario, seed, r, R, backend = args
    raw = engine.run(scenario, engine.bit_generator(seed, r, R), backend, estimate="off",
                     until_first=True)
    if not raw.finished:
        raise KeyboardInterrupt
    return raw.first_collision_s


def first_reset(scenario, replicates: int = 100, seed: int | None = None, start: str = "steady",
                backend: str = "cython", workers: int = 1,
                progress: Callable[[float], None] | None = None,
                force: bool = False) -> FirstReset:
    """Time to the first reset: R replicates from steady state or a cold start. Arguments are
    checked and the work sized as in `simulate`."""
    scenario = Scenario.load(scenario)
    start = _choice("start", start, ("steady", "cold"))
    replicates = _whole("replicates", replicates, 1)
    workers = _whole("workers", workers, 1)
    backend = _choice("backend", backend, engine.BACKENDS)
    from .sizing import size_first_reset
    _sized("first-reset", scenario, force,
           size=size_first_reset(scenario, replicates, start, min(workers, replicates), backend))
    scenario = scenario.replace({"traffic.warmup": "auto" if start == "steady" else 0})
    seed = _seed(seed)
    tasks = ((scenario, seed, r, replicates, backend) for r in range(replicates))
    times: list = [None] * replicates
    workers = min(workers, replicates)
    if workers > 1:
        from .pool import imap, process_pool, stop_pool
        pool = process_pool(workers)
        ok = False
        try:
            for i, t in enumerate(imap(pool, _first_reset_one, tasks, workers,
                                       chunk=max(1, min(64, replicates // (4 * workers))))):
                times[i] = t
                if progress:
                    progress((i + 1) / replicates)
            ok = True
        finally:
            stop_pool(pool, interrupted=not ok)
    else:
        for i, task in enumerate(tasks):
            times[i] = _first_reset_one(task)
            if progress:
                progress((i + 1) / replicates)
    a = _analytic(scenario)
    mean = a.mean_first_collision_s if a is not None else None
    return FirstReset(scenario, seed, start, tuple(times), scenario.traffic.horizon, mean)
