"""Variants of one scenario, and their risk: the machinery report, solve and sweep share.

- `Variants`: a scenario with one key moved (the connection rate of a schedule scales every
  segment; an empirical lifetime law scales every measured value through a scaled copy of the file;
  a per-zone target list scales zone by zone).
- `closed_form_rate`, `bisect_closed_form`: the closed form (collide.analytic) along a key, and the
  value where it reaches a given rate.
- `estimate_risk`: resets per hour of one variant from simulation, run until its standard error is a
  given fraction of the estimate (the sweep's adaptive precision, docs/sweeps.md), with an interval
  that holds (see `Estimate`).

`child_seed(seed, i)` is a sub-run's seed, as a sweep point's (docs/model.md §2.4), so `collide
simulate --seed` repeats any run a study made.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass

from ..analytic import analytic, is_zero
from ..scenario import Scenario, ScenarioError
from .sweep import point_seed as child_seed

__all__ = ["Variants", "Estimate", "estimate_risk", "precision", "closed_form_rate", "bisect_closed_form",
           "child_seed", "correlation_time", "t_quantile", "HOUR"]

HOUR = 3600.0
#: Batches of the engine's conditional estimate (collide.engine.params.NBATCHES).
BATCHES = 32
#: A run's window is at least this many correlation times of the live population, so that
#: neighbouring batches are nearly independent (the batch-means error is then within a few %).
WINDOW_CORRELATION_TIMES = 128
#: Independent replicates where a window cannot grow (a schedule, a cold start, infinite-variance
#: lifetimes): the error comes from their spread.
MIN_REPLICATES = 8


def t_quantile(df: float, confidence: float = 0.95) -> float:
    """Two-sided Student t quantile (SciPy)."""
    from scipy.stats import t
    return float(t.ppf(0.5 + confidence / 2, df))


# -- variants ------------------------------------------------------------------------------------------
class Variants:
    """Scenarios with one key moved.

    - `traffic.rate` of a scenario with `traffic.schedule` is the window's mean rate: a variant
      multiplies every segment's rate (and `traffic.rate`) by the same factor.
    - `traffic.duration.mean` of an empirical law: every measured lifetime is multiplied by the
      factor, written to a scaled copy of the file in a temporary directory that lives as long as
      the study's runs (`close()` removes it).
    - `load_balancer.targets` given per zone: the lever is the total, spread over the zones in
      their proportions (each zone keeps at least one).
    - any other key: `Scenario.replace`.
    """

    def __init__(self):
        self.dir: str | None = None
        self.cache: dict[float, str] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def today(s: Scenario, key: str) -> float:
        if key == "traffic.rate":
            return s.traffic.mean_rate
        if key == "traffic.duration.mean":
            return s.traffic.duration.mean
        if key == "load_balancer.targets":
            return s.load_balancer.total_targets
        return s.get(key)

    def set(self, s: Scenario, key: str, value: float) -> Scenario:
        t = s.traffic
        if key == "traffic.rate":
            value = float(value)
            if not t.schedule:
                return s.replace({"traffic.rate": value})
            f = value / t.mean_rate
            return s.replace({"traffic.rate": t.rate * f,
                              "traffic.schedule": [[a, r * f] for a, r in t.schedule]})
        if key == "traffic.duration.mean":
            value = float(value)
            d = t.duration
            if d.dist != "empirical":
                return s.replace({"traffic.duration.mean": value})
            return s.replace({"traffic.duration": {"dist": "empirical",
                                                   "file": self._scaled(d, value / d.mean)}})
        if key == "load_balancer.targets" and isinstance(s.load_balancer.targets, tuple):
            return s.replace({"load_balancer.targets": _spread(s.load_balancer.targets, value)})
        return s.replace({key: value})

    def _scaled(self, d, f: float) -> str:
        path = self.cache.get(f)
        if path is None:
            if self.dir is None:
                # named after this process, so the next study clears it if this one is killed
                from ..files import clear_stale, make_temp_dir
                near = os.path.join(tempfile.gettempdir(), "collide-report-lifetimes")
                clear_stale(near)
                self.dir = str(make_temp_dir(near, "lifetimes"))
            path = os.path.join(self.dir, f"lifetimes-{len(self.cache)}.txt")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write("\n".join(repr(float(v) * f) for v in d.values) + "\n")
            self.cache[f] = path
        return path

    def close(self):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            self.cache.clear()


def _spread(zones: tuple, total) -> list[int]:
    """`total` targets over the zones in the proportions of `zones`, each zone at least one."""
    total = int(round(total))
    n = len(zones)
    if total < n:
        raise ScenarioError(f"load_balancer.targets = {total}: a per-zone list needs at least one "
                            f"target in each of its {n} zones")
    have = sum(zones)
    raw = [z * total / have for z in zones]
    out = [max(1, int(math.floor(x))) for x in raw]
    order = sorted(range(n), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    i = 0
    while sum(out) < total:
        out[order[i % n]] += 1
        i += 1
    while sum(out) > total:
        j = max(range(n), key=lambda k: out[k])
        out[j] -= 1
    return out


# -- the closed form along a key ------------------------------------------------------------------------
def closed_form_rate(s: Scenario, key: str, x: float, V: Variants) -> float | None:
    """Collisions per hour from the closed form with `key` = x, or None where no form applies (or the
    value is not allowed)."""
    try:
        a = analytic(V.set(s, key, x))
    except ScenarioError:
        return None
    return None if a is None else a.collisions_per_hour


def bisect_closed_form(s: Scenario, key: str, target_per_hour: float,
                       V: Variants | None = None) -> float | None:
    """The value of `key` (rate or mean lifetime) below today's where the closed form falls to the
    target, or None (the report's headroom of old; `collide.studies.solve` generalises it)."""
    V = V or Variants()
    x0 = V.today(s, key)
    slow = bool(s.traffic.schedule) or s.traffic.duration.dist == "empirical"
    tol = 1e-4 if slow else 1e-10

    def f(x):
        return closed_form_rate(s, key, x, V)
    lo, hi = x0 * 1e-9, x0
    f_hi = f(hi)
    if f_hi is None or f_hi <= 0:
        return None
    if f_hi < target_per_hour:
        while True:
            nxt = hi * 2
            v = f(nxt)
            if v is None or nxt > x0 * 1e9:
                return None
            lo, hi = hi, nxt
            if v >= target_per_hour:
                break
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        v = f(mid)
        if v is None:
            return None
        lo, hi = (mid, hi) if v < target_per_hour else (lo, mid)
        if hi / lo - 1 < tol:
            break
    return math.sqrt(lo * hi)


# -- the risk of one variant, by simulation -------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Resets (collisions) per hour of one scenario, from simulation.

    `interval` is the 95 % interval: ± t·SE, with Student's t for the degrees of freedom the error
    was estimated with (31 batch means of one long run, or R − 1 for R independent replicates).
    Under `--estimate off` (or where the engine keeps none) the count's exact Poisson interval."""
    per_hour: float
    se_per_hour: float | None
    interval: tuple[float, float]
    method: str                 # "conditional estimate (full)", "... replicates", "counted", "zero"
    seed: int
    horizon_s: float            # measured seconds per replicate
    replicates: int
    connections: int
    collisions: int
    df: float | None = None

    @property
    def rel_error(self) -> float | None:
        if self.se_per_hour is None or self.per_hour <= 0:
            return None
        return self.se_per_hour / self.per_hour

    def to_dict(self) -> dict:
        return {"resets_per_hour": self.per_hour, "interval": list(self.interval),
                "se": self.se_per_hour, "method": self.method, "seed": self.seed,
                "horizon_s": self.horizon_s, "replicates": self.replicates,
                "connections": self.connections}


#: The linux allocator redraws its per-destination offsets this often (docs/model.md §2.3).
LINUX_OFFSET_PERIOD_S = 10.0


def correlation_time(s: Scenario) -> float:
    """How long the risk remembers itself: the mean residual lifetime E[L²] / (2 E[L]) of the live
    population (the mean lifetime for exponential lifetimes; infinite for laws without a second
    moment), or longer where something else holds still: sticky clients keep their node for the
    DNS TTL, the linux allocator keeps its offsets for 10 s."""
    d = s.traffic.duration
    m2 = d.second_moment
    tau = m2 / (2.0 * d.mean) if math.isfinite(m2) else math.inf
    if s.load_balancer.node_choice == "sticky":
        tau = max(tau, s.load_balancer.dns_ttl)
    if s.nat.allocator == "linux":
        tau = max(tau, LINUX_OFFSET_PERIOD_S)
    return tau


#: Collisions counted at least before a run of an allocator with slow hidden state is trusted.
MIN_COUNTED = 30
#: The finest relative error asked of such a run: its error is no smaller than the count's, so a
#: finer one would need more collisions than a solve can afford (400 for 5 %).
HIDDEN_STATE_PRECISION = 0.05


def precision(s: Scenario, rel_error: float) -> float:
    """The relative error a run of `s` is taken to: `rel_error`, or no finer than
    HIDDEN_STATE_PRECISION where the allocator's state hides the risk."""
    return max(rel_error, HIDDEN_STATE_PRECISION) if hidden_state(s) else rel_error


def hidden_state(s: Scenario) -> bool:
    """Allocators whose own state (linux's per-destination offsets, sequential cursors) sets the
    risk for long stretches: rare alignments carry most of it."""
    return s.nat.allocator in ("linux", "sequential")


def fixed_window(s: Scenario) -> bool:
    """Whether the window is part of the question (a schedule, a cold or warm-up start) or the
    batch means cannot be trusted (lifetimes without a second moment): replicates, not a longer run."""
    return bool(s.traffic.schedule) or s.traffic.warmup != "auto" or \
        not math.isfinite(correlation_time(s))


def estimate_risk(s: Scenario, seed: int, rel_error: float, backend: str = "cython",
                  max_connections: float = 5e7, estimate=None) -> Estimate:
    """Resets per hour of `s`, simulated until the standard error is `rel_error` of the estimate
    (or `max_connections` are spent).

    Stationary runs grow their window (at least WINDOW_CORRELATION_TIMES correlation times, so the
    32 batch means are nearly independent; the small remaining correlation, about τ/w for batches
    of width w, is corrected for). A fixed window (schedule, cold start) or lifetimes without a
    second moment run independent replicates instead (seeds child_seed(seed, r)), as many as it
    takes, and take the error from their spread."""
    if is_zero(s):
        return Estimate(0.0, 0.0, (0.0, 0.0), "zero: no collision is possible", seed,
                        s.traffic.horizon, 1, 0, 0)
    if fixed_window(s):
        return _by_replicates(s, seed, rel_error, backend, max_connections, estimate)
    from .sweep import _run_point
    tau = correlation_time(s)
    rate = s.traffic.rate
    h0 = max(WINDOW_CORRELATION_TIMES * tau, 2000.0 / rate, 1.0)
    cap_h = max(max_connections / rate, 1.0)
    h0 = min(h0, cap_h)
    hidden = hidden_state(s)
    rel_error = precision(s, rel_error)
    need = max(MIN_COUNTED, math.ceil(1.0 / rel_error ** 2)) if hidden else 0
    while True:
        _, row = _run_point((0, s.replace({"traffic.horizon": h0}), seed, 1, backend, rel_error,
                             int(max_connections), estimate))
        h = row["horizon_s"]
        c = row["collisions"]
        # an allocator whose state holds still (linux offsets, sequential cursors) hides its risk
        # in rare alignments the batch means cannot see until some have been counted
        if not hidden or c >= need or h >= cap_h or row["expected_collisions"] == 0:
            break
        h0 = min(cap_h, h * min(16.0, max(1.2, 1.1 * need / max(c, 1))))
    if row["expected_collisions"] is None or row["expected_collisions_se"] is None:
        from ..stats import garwood
        c = row["collisions"]
        lo, hi = garwood(c)
        k = HOUR / h
        return Estimate(c * k, math.sqrt(c) * k if c else None, (lo * k, hi * k), "counted", seed,
                        h, 1, row["connections"], c)
    k = HOUR / h
    e = row["expected_collisions"] * k
    w = h / BATCHES
    inflate = 1.0 / math.sqrt(max(0.5, 1.0 - tau / w))
    se = row["expected_collisions_se"] * k * inflate
    if hidden:        # no tighter than the count itself (its clumps make it looser still)
        se = max(se, e / math.sqrt(max(row["collisions"], 1)))
    tq = t_quantile(BATCHES - 1)
    return Estimate(e, se, (max(0.0, e - tq * se), e + tq * se),
                    f"conditional estimate ({row['estimate']})", seed, h, 1, row["connections"],
                    row["collisions"], BATCHES - 1)


def _by_replicates(s, seed, rel_error, backend, max_connections, estimate) -> Estimate:
    from ..api import simulate
    vals, conns, colls = [], 0, 0
    est_name = None
    per_rep = s.traffic.mean_rate * s.traffic.horizon
    cap = max(MIN_REPLICATES, int(max_connections / max(per_rep, 1.0)))
    r = 0
    target = MIN_REPLICATES
    while True:
        while r < target:
            res = simulate(s, seed=child_seed(seed, r), backend=backend, estimate=estimate)
            if not res.finished:
                raise KeyboardInterrupt
            x = res.expected_collisions if res.expected_collisions is not None else res.collisions
            est_name = res.estimate
            vals.append(x * HOUR / res.horizon_s)
            conns += res.connections
            colls += res.collisions
            r += 1
        n = len(vals)
        mean = math.fsum(vals) / n
        var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
        se = math.sqrt(var / n)
        if mean <= 0 or se <= rel_error * mean or n >= cap:
            break
        target = min(cap, max(2 * n, int(n * (se / (rel_error * mean)) ** 2 * 1.2) + 1))
    tq = t_quantile(n - 1)
    method = (f"conditional estimate ({est_name}), {n} replicates" if est_name
              else f"counted, {n} replicates")
    return Estimate(mean, se, (max(0.0, mean - tq * se), mean + tq * se), method, seed,
                    s.traffic.horizon, n, conns, colls, n - 1)
