"""`collide solve`: where a risk budget is met, lever by lever, and which change gets there.

    >>> import collide
    >>> r = collide.solve("seed", "1/hour", levers=["traffic.rate"], seed=1)
    >>> r.levers[0].value, r.levers[0].interval, r.recommendation

A budget is a most-resets rate (`--max-resets 1/week`) or a most-probability of at least one reset
in a window (`--max-probability 0.01 --within 30d`). Both become a largest rate r* of resets per
hour: N / period, or −ln(1 − P) / T (the stationary state's resets are a Poisson process, so
P = 1 − exp(−r·T)). `--start cold` judges the expected count of a window that starts with no live
connection, as a load test does, with the same r* over that window.

A lever is a numeric scenario key that moves the risk one way: the connection rate, the mean
lifetime, NAT IPs, targets, load-balancer nodes, or any numeric key given with `--for` that passes
a check of five points. For each, the value where the risk meets the budget:

- by the closed form (`collide.analytic`) where it holds along the lever: bisection, exact for the
  model's form (an upper bound on the risk under `reset-existing`, so the value is on the safe side);
- otherwise by stochastic root finding on the conditional estimate: evaluations that move along a
  local power law ln R = a + b ln x, coarse while far, until one lands within a few standard errors
  of r* with the standard error `rel_error` of the estimate; the boundary and its interval come from
  that last evaluation's 95 % interval and the local slope.

Each reachable value is confirmed by a fresh simulation (another seed). Integer levers are rounded
in the safe direction. A value past the key's allowed range is `reachable: false` with the value an
extrapolation says would be needed. Switches that remove the risk are simulated and listed apart,
each with its cost. The recommendation is the change that meets the budget with the smallest
|ln(new / today)|; when no lever can, the first switch that does.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..analytic import analytic, applies, is_zero
from ..errors import InputError
from ..scenario import Scenario, ScenarioError
from .variants import (HOUR, Estimate, Variants, child_seed, closed_form_rate, estimate_risk,
                       precision)

__all__ = ["solve", "Budget", "SolveResult", "Lever", "Switch", "PERIODS", "parse_within",
           "DEFAULT_LEVERS", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
PERIODS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 30 * 86400.0,
           "year": 365 * 86400.0}
DEFAULT_LEVERS = ("traffic.rate", "traffic.duration.mean", "nat.ips", "load_balancer.targets",
                  "load_balancer.nodes")
#: An AWS NAT gateway has at most this many IPv4 addresses (1 primary + 7 secondary).
NAT_GATEWAY_IPS = 8
#: A mean connection lifetime below this is shorter than a TCP handshake: no deployment does it.
MIN_LIFETIME_S = 1e-3
#: Simulated connections at most per evaluation of a lever.
MAX_CONNECTIONS = 5e7
#: Simulated connections at most for a switch: enough to tell whether it meets the budget (most
#: switches remove the risk and cost nothing to simulate).
SWITCH_CONNECTIONS = 3e5
#: How far from today a continuous lever is searched (a factor either way).
SEARCH_FACTOR = 1e9


# -- budgets -------------------------------------------------------------------------------------------
_WITHIN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_within(text, flag: str = "--within") -> float:
    """`<number>[s|m|h|d|w]` in seconds (no unit: seconds); InputError (exit 2) otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = repr(float(text))
    m = _WITHIN.match(str(text))
    if not m:
        raise InputError(f"{flag} {text}: must be <number>[s|m|h|d|w], e.g. 30d or 10m")
    v = float(m.group(1)) * _UNITS[m.group(2)]
    if not (v > 0 and math.isfinite(v)):
        raise InputError(f"{flag} {text}: must be a duration > 0, e.g. 30d or 10m")
    return v


@dataclass(frozen=True)
class Budget:
    """The most risk a deployment accepts: `resets` per `period`, or a `probability` of at least one
    reset `within` a window; `start` "steady" (default) or "cold"."""
    kind: str                          # "resets" or "probability"
    resets: float | None = None
    period: str | None = None
    probability: float | None = None
    within_s: float | None = None
    start: str = "steady"

    @classmethod
    def max_resets(cls, text: str, start: str = "steady", flag: str = "--max-resets") -> "Budget":
        """`N/PERIOD`, PERIOD one of hour, day, week, month (30 d), year (365 d)."""
        allowed = ", ".join(PERIODS)
        n, sep, period = str(text).partition("/")
        if not sep:
            raise InputError(f"{flag} {text}: must be N/PERIOD, e.g. 1/week (PERIOD: {allowed})")
        period = period.strip()
        if period not in PERIODS:
            raise InputError(f"{flag} {text}: unknown period {period!r}; allowed: {allowed}")
        try:
            count = float(n)
        except ValueError:
            raise InputError(f"{flag} {text}: {n.strip()!r} is not a number of resets, e.g. "
                             "1/week") from None
        if not (count > 0 and math.isfinite(count)):
            raise InputError(f"{flag} {text}: the number of resets must be > 0 (a budget of none "
                             "is met only by a switch that removes the risk; any N/PERIOD lists "
                             "them)")
        return cls("resets", resets=count, period=period, start=_start(start))

    @classmethod
    def max_probability(cls, p, within, start: str = "steady") -> "Budget":
        try:
            prob = float(p)
        except (TypeError, ValueError):
            raise InputError(f"--max-probability {p}: must be a probability between 0 and 1, "
                             "e.g. 0.01") from None
        if not 0 < prob < 1:
            raise InputError(f"--max-probability {p}: must be between 0 and 1, both excluded "
                             "(e.g. 0.01)")
        if within is None:
            raise InputError(f"--max-probability {p}: needs --within DURATION, e.g. --within 30d")
        return cls("probability", probability=prob, within_s=parse_within(within),
                   start=_start(start))

    @classmethod
    def parse(cls, spec, start: str = "steady") -> "Budget":
        """A Budget, "1/week", or "0.01 within 30d"."""
        if isinstance(spec, Budget):
            return spec if start == "steady" else replace(spec, start=_start(start))
        text = str(spec)
        if " within " in text:
            p, _, w = text.partition(" within ")
            return cls.max_probability(p.strip(), w.strip(), start)
        return cls.max_resets(text, start, flag="budget")

    @property
    def window_s(self) -> float:
        """The window the budget speaks of: the period, or `within`."""
        return PERIODS[self.period] if self.kind == "resets" else self.within_s

    @property
    def max_per_hour(self) -> float:
        """The largest rate of resets per hour that meets the budget."""
        if self.kind == "resets":
            return self.resets / PERIODS[self.period] * HOUR
        return -math.log1p(-self.probability) / self.within_s * HOUR

    @property
    def text(self) -> str:
        if self.kind == "resets":
            return f"at most {self.resets:g} reset{'' if self.resets == 1 else 's'} per {self.period}"
        return (f"P(at least one reset within {_dur(self.within_s)}) at most "
                f"{self.probability:g}")

    @property
    def flags(self) -> str:
        """The command-line flags that give this budget."""
        f = (f"--max-resets {self.resets:g}/{self.period}" if self.kind == "resets" else
             f"--max-probability {self.probability:g} --within {_within_text(self.within_s)}")
        return f + (" --start cold" if self.start == "cold" else "")

    def probability_in(self, per_hour: float, seconds: float | None = None) -> float:
        """P(at least one reset within `seconds` (default the budget's window)) at a Poisson rate."""
        return -math.expm1(-per_hour / HOUR * (seconds or self.window_s))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "flags": self.flags, "resets": self.resets,
                "period": self.period, "probability": self.probability,
                "within_s": self.within_s, "window_s": self.window_s, "start": self.start,
                "max_resets_per_hour": self.max_per_hour}


def _start(start: str) -> str:
    if start not in ("steady", "cold"):
        raise InputError(f"--start {start}: must be steady or cold")
    return start


def _within_text(seconds: float) -> str:
    for unit, size in (("w", 604800.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _dur(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400.0), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


# -- levers --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """What solve knows of a lever: its words, whether it is an integer, its model range, the way
    the risk moves with it (+1 up, -1 down, None: found by the five-point check) and the local
    power of the risk in it (d ln R / d ln x at low load, docs/model.md §3)."""
    key: str
    words: str
    unit: str
    integer: bool
    lo: float
    hi: float
    sign: int | None
    power: float


_SPECS = {
    "traffic.rate": _Spec("traffic.rate", "connection rate", "conn/s", False, 0.0, math.inf, 1, 2.0),
    "traffic.duration.mean": _Spec("traffic.duration.mean", "mean connection lifetime", "s", False,
                                   0.0, math.inf, 1, 1.0),
    "nat.ips": _Spec("nat.ips", "NAT public IPs", "IPs", True, 1, 4096, -1, -1.0),
    "load_balancer.targets": _Spec("load_balancer.targets", "targets", "targets", True, 1,
                                   10_000_000, -1, -1.0),
    "load_balancer.nodes": _Spec("load_balancer.nodes", "load-balancer nodes (zones)", "nodes", True,
                                 1, 64, 1, 1.0),
}


def _spec(s: Scenario, key: str) -> _Spec:
    from ..scenario import ALIASES
    key = ALIASES.get(key, key)
    if key in _SPECS:
        return _SPECS[key]
    try:
        v = s.get(key)
    except KeyError:
        from ..scenario import _did_you_mean, all_keys
        raise InputError(f"--for {key}: unknown scenario key{_did_you_mean(key, all_keys())}; "
                         f"levers: {', '.join(DEFAULT_LEVERS)} or any numeric key") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"--for {key} = {v!r}: not a number, so not a lever; switches "
                         "(cross-zone, client IP preservation, the NAT's mapping, sticky clients) "
                         "are solved apart, every time")
    return _Spec(key, key, "", isinstance(v, int), -math.inf, math.inf, None, 1.0)


@dataclass
class Lever:
    """One lever's answer (the JSON `levers` items)."""
    key: str
    words: str
    unit: str
    today: float
    value: float | None = None            # the boundary (integers rounded in the safe direction)
    crossing: float | None = None         # where the risk meets the budget, before rounding
    interval: tuple | None = None         # 95 % interval of the crossing
    safe_direction: str | None = None     # "up" or "down"
    reachable: bool = False
    method: str = ""
    confirmed: dict | None = None
    note: str = ""
    needed: float | None = None           # unreachable: about this value would be needed
    move: float | None = None             # |ln(value / today)|
    deployment: str | None = None
    closed_form_at_value: float | None = None
    boundary_rel_se: float | None = None  # simulated: relative SE of the risk where it was solved

    def to_dict(self) -> dict:
        return {"key": self.key, "words": self.words, "unit": self.unit, "today": self.today,
                "boundary_rel_se": self.boundary_rel_se,
                "value": self.value, "crossing": self.crossing,
                "interval": list(self.interval) if self.interval else None,
                "safe_direction": self.safe_direction, "reachable": self.reachable,
                "method": self.method, "confirmed": self.confirmed, "note": self.note,
                "needed": self.needed, "move": self.move, "deployment": self.deployment,
                "closed_form_at_value": self.closed_form_at_value}


@dataclass
class Switch:
    """A change of kind rather than amount, simulated (the JSON `switches` items)."""
    key: str
    value: object
    name: str
    cost: str
    resets_per_hour: float | None = None
    interval: tuple | None = None
    closed_form: float | None = None
    meets_budget: bool = False
    helps: bool = True
    note: str = ""
    seed: int | None = None
    left_out: str | None = None

    def to_dict(self) -> dict:
        return {"key": self.key, "value": self.value, "name": self.name, "cost": self.cost,
                "resets_per_hour": self.resets_per_hour,
                "interval": list(self.interval) if self.interval else None,
                "closed_form": self.closed_form, "meets_budget": self.meets_budget,
                "helps": self.helps, "note": self.note, "seed": self.seed,
                "left_out": self.left_out}


@dataclass
class SolveResult:
    """`collide.solve`'s answer; `to_dict()` is `collide solve --format json` (docs/model.md §4.7)."""
    scenario: Scenario
    budget: Budget
    today: dict
    levers: list
    switches: list
    recommendation: dict | None
    alternatives: list
    notes: list
    seed: int
    rel_error: float
    elapsed_s: float = 0.0
    counts: str = "resets"

    def lever(self, key: str) -> Lever:
        return next(x for x in self.levers if x.key == key)

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "budget": {**self.budget.to_dict(),
                                                             "counts": self.counts},
                "today": self.today, "levers": [x.to_dict() for x in self.levers],
                "switches": [x.to_dict() for x in self.switches],
                "recommendation": self.recommendation, "alternatives": self.alternatives,
                "notes": self.notes, "seed": self.seed, "rel_error": self.rel_error,
                "elapsed_s": self.elapsed_s, "scenario": self.scenario.to_dict()}


# -- the judged scenario -----------------------------------------------------------------------------------
def judged(s: Scenario, budget: Budget) -> Scenario:
    """The scenario as the budget judges it: from the stationary state, or a cold window of the
    budget's length (a schedule keeps its own window)."""
    if budget.start == "steady":
        return s if s.traffic.warmup == "auto" else s.replace({"traffic.warmup": "auto"})
    changes = {"traffic.warmup": 0}
    if not s.traffic.schedule:
        changes["traffic.horizon"] = budget.window_s
    return s.replace(changes)


def closed_form_holds(s: Scenario) -> bool:
    """Whether solve may take the closed form for this scenario: it applies (random allocator,
    per-connection choices, below exhaustion) and nothing the form leaves out moves the risk:
    delayed connects (delay-new, older kernels, a challenge-ACK limit), the NAT's reuse delay, or
    TIME_WAIT entries left by servers that close first."""
    if applies(s) is not None:
        return False
    if is_zero(s):
        return True
    t = s.target
    return not (t.delays or s.nat.reuse_delay > 0
                or (t.server_close_fraction > 0 and t.time_wait > 0))


_closed_form_holds = closed_form_holds


def _risk(s: Scenario, seed: int, rel_error: float, backend: str, use_cf: bool,
          max_connections: float = MAX_CONNECTIONS) -> tuple[float, float, str, Estimate | None]:
    """(resets per hour, its standard error, method, the simulation or None) of one variant."""
    if use_cf:
        a = analytic(s)
        if a is not None:
            return a.collisions_per_hour, 0.0, "closed form", None
    e = estimate_risk(s, seed, rel_error, backend, max_connections)
    return e.per_hour, e.se_per_hour or 0.0, e.method, e


# -- one lever (a worker's task) ---------------------------------------------------------------------------
def _check_points(spec: _Spec, x0: float) -> list[float]:
    """Five values around today's, within the key's range (fewer where the range is short)."""
    if spec.integer:
        cands = sorted({int(round(x0 * f)) for f in (0.25, 0.5, 1, 2, 4)} | {int(x0)})
        pts = [c for c in cands if spec.lo <= c <= spec.hi and c >= 1]
        extra = [int(x0) + d for d in (-2, -1, 1, 2, 3, 4)]
        for c in extra:
            if len(pts) >= 5:
                break
            if spec.lo <= c <= spec.hi and c >= 1 and c not in pts:
                pts.append(c)
        return sorted(pts)[:7]
    if x0 == 0:
        return [0.0, 0.25, 0.5, 1.0, 2.0]
    return [x0 * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]


class _Refused(Exception):
    """A lever that does not move the risk one way (InputError for --for, a note otherwise)."""


def _five_points(s, spec, V, seed, backend, use_cf) -> tuple[int, float, list]:
    """(the way the risk moves with the lever: +1 or -1, d ln R / d ln x near today, the points).
    _Refused when it does not move, or not one way."""
    x0 = V.today(s, spec.key)
    variants = []
    for x in _check_points(spec, x0):
        try:
            variants.append((x, V.set(s, spec.key, x)))
        except ScenarioError:
            continue
    if use_cf:
        # where the closed form holds at three points or more, those points decide (a point past
        # it, near port exhaustion, would cost a long simulation and tell nothing more)
        held = [(x, sx) for x, sx in variants if _closed_form_holds(sx)]
        if len(held) >= 3:
            variants = held
    pts = []
    for x, sx in variants:
        r, se, how, _ = _risk(sx, seed, 0.1, backend, use_cf and _closed_form_holds(sx), 2e5)
        pts.append((x, r, se))
    if len(pts) < 3:
        raise _Refused(f"fewer than 3 allowed values around {x0:g}")
    xs = ", ".join(f"{p[0]:g}" for p in pts)
    rs = ", ".join(f"{p[1]:.3g}" for p in pts)
    first, last = pts[0], pts[-1]

    def apart(a, b, k):
        if a[2] == 0 and b[2] == 0:
            return abs(a[1] - b[1]) > 1e-9 * max(abs(a[1]), abs(b[1]), 1e-300)
        return abs(a[1] - b[1]) > k * math.hypot(a[2], b[2])
    if not apart(first, last, 3.0):
        noisy = any(p[1] > 0 and p[2] > 0.25 * p[1] for p in (first, last))
        if noisy and spec.sign is not None:
            # too few collisions in a short check to tell; the model says which way it goes
            return spec.sign, spec.power, pts
        raise _Refused(f"the risk does not move over {spec.key} = {xs} ({rs} resets per hour)")
    sign = 1 if last[1] > first[1] else -1
    for a, b in zip(pts, pts[1:]):
        if (b[1] - a[1]) * sign < 0 and apart(a, b, 3.0):
            raise _Refused(f"the risk does not move one way over {spec.key} = {xs} ({rs} resets "
                           "per hour)")
    # the local power near today: from the two points around it with a risk above zero
    near = sorted((p for p in pts if p[1] > 0 and p[0] > 0), key=lambda p: abs(math.log(p[0] / x0))
                  if x0 > 0 else p[0])[:3]
    power = spec.power if spec.sign is not None else sign * 1.0
    if len(near) >= 2:
        near.sort()
        a, b = near[0], near[-1]
        if a[0] != b[0] and a[1] != b[1]:
            power = math.log(b[1] / a[1]) / math.log(b[0] / a[0])
    if power * sign <= 0:
        power = sign * abs(spec.power)
    return sign, power, pts


def check_lever(s: Scenario, key: str, seed: int, backend: str = "cython",
                use_cf: bool = True) -> tuple[int, float]:
    """(+1 if the risk grows with the lever, -1 if it falls; the local power d ln R / d ln x)
    from five points around today; InputError (exit 2) for a lever that does not move the risk
    one way."""
    spec = _spec(s, key)
    with Variants() as V:
        try:
            sign, power, _ = _five_points(s, spec, V, child_seed(seed, 11), backend, use_cf)
        except _Refused as exc:
            raise InputError(f"--for {spec.key}: {exc}; a lever must raise or lower the risk one "
                             "way" + _why_flat(s, spec.key)) from None
    return sign, power


def _solve_lever(task) -> Lever:
    (s, key, r_star, seed, rel_error, backend, use_cf, checked) = task
    spec = _spec(s, key)
    with Variants() as V:
        x0 = V.today(s, key)
        lever = Lever(key, spec.words, spec.unit, x0)
        if checked is not None:
            sign, power = checked
        else:
            try:
                sign, power, _ = _five_points(s, spec, V, child_seed(seed, 11), backend, use_cf)
            except _Refused as exc:
                lever.note = f"not a lever here: {exc}"
                lever.method = "none"
                return lever
        lever.safe_direction = "down" if sign > 0 else "up"
        try:
            _find(lever, s, spec, V, r_star, seed, rel_error, backend, use_cf, sign, power)
        except ScenarioError as exc:
            lever.note = f"not solved: {exc}"
        if lever.reachable and lever.value is not None:
            _confirm(lever, s, V, r_star, seed, rel_error, backend)
        return lever


def _find(lever, s, spec, V, r_star, seed, rel_error, backend, use_cf, sign, power):
    x0 = lever.today
    s0_cf = use_cf and _closed_form_holds(s)
    toward_safe = None   # set below

    def valid(x):
        if spec.integer:
            x = int(round(x))
        if not spec.lo <= x <= spec.hi:
            return None
        try:
            return V.set(s, spec.key, x)
        except ScenarioError:
            return None

    r0, se0, how0, today_est = _risk(s, child_seed(seed, 12), max(rel_error, 0.1), backend, s0_cf)
    if r0 <= 0:
        lever.note = "no collision at today's value: nothing to move"
        lever.method = "none"
        return
    # which way the risk meets r*: the safe way if today is over the budget, else the headroom
    toward_safe = r0 > r_star
    step_sign = (-sign if toward_safe else sign)       # +1: x grows, -1: x shrinks
    if s0_cf:
        ok = _closed_form_search(lever, s, spec, V, r_star, step_sign, valid)
        if ok:
            return
    _simulated_search(lever, s, spec, V, r_star, seed, rel_error, backend, sign, power, step_sign,
                      valid, r0, today_est)


def _closed_form_search(lever, s, spec, V, r_star, step_sign, valid) -> bool:
    """Bisection on the closed form; False where the form stops holding before the crossing (the
    simulation takes over)."""
    x0 = lever.today

    def f(x):
        sx = valid(x)
        if sx is None:
            return "range"
        a = analytic(sx)
        return None if a is None else a.collisions_per_hour
    f0 = f(x0)
    above0 = f0 > r_star
    prev, x = x0, x0
    factor = 2.0
    hist = [(x0, f0)]
    while True:
        if spec.integer:
            nxt = int(x * factor) if step_sign > 0 else max(int(spec.lo), int(x / factor))
            if nxt == x:
                nxt = x + step_sign
            if step_sign > 0 and nxt > spec.hi:
                nxt = int(spec.hi) if x < spec.hi else None
        else:
            nxt = x * factor if step_sign > 0 else x / factor
            if abs(math.log(nxt / x0)) > math.log(SEARCH_FACTOR):
                nxt = None
        v = f(nxt) if nxt is not None and nxt >= spec.lo else "range"
        if v == "range" or nxt is None:
            _unreachable(lever, spec, hist, r_star, "closed form")
            return True
        if v is None:
            return False          # the form stops holding: simulate from here
        hist.append((nxt, v))
        if (v > r_star) != above0:
            lo, hi = (x, nxt) if x < nxt else (nxt, x)
            break
        x = nxt
    # bisection between lo and hi (the crossing is between them)
    f_lo = f(lo)
    lo_above = f_lo > r_star
    if spec.integer:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            v = f(mid)
            if v is None or v == "range":
                return False
            lo, hi = (mid, hi) if (v > r_star) == lo_above else (lo, mid)
        f_lo, f_hi = f(lo), f(hi)
        crossing = _interp(lo, f_lo, hi, f_hi, r_star) if f_lo > 0 and f_hi > 0 else None
        lever.value = lo if f_lo <= r_star else hi          # the integer that meets the budget
        if crossing is None:
            crossing = float(lever.value)
    else:
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            v = f(mid)
            if v is None or v == "range":
                return False
            lo, hi = (mid, hi) if (v > r_star) == lo_above else (lo, mid)
            if hi / lo - 1 < 1e-10:
                break
        crossing = math.sqrt(lo * hi)
    lever.crossing = crossing
    lever.interval = _form_interval(s, spec, V, crossing)
    lever.method = "closed form (docs/model.md §3), bisection"
    lever.note = ("the closed form is exact in count mode; under reset-existing or fail-new it is an "
                  "upper bound on the risk, high by about the collision probability per connection "
                  "(relative), so the interval reaches that far to the risky side")
    _settle(lever, spec, crossing, lever.value if spec.integer else None)
    a = analytic(V.set(s, spec.key, lever.value)) if lever.value is not None else None
    lever.closed_form_at_value = a.collisions_per_hour if a else None
    return True


def _form_interval(s, spec, V, crossing) -> tuple[float, float]:
    """Where the true crossing lies given the closed form's own error: none in count mode; under
    an outcome that ends a connection, the form overstates the risk by at most the per-connection
    collision probability p (relative; docs/model.md §3), so the crossing may lie up to a factor
    (1 + p)^(1/b) further to the risky side, b the local power of the risk in the lever."""
    if s.target.on_collision == "count" or crossing <= 0:
        return (crossing, crossing)
    x = crossing if not spec.integer else max(spec.lo, round(crossing))
    try:
        a = analytic(V.set(s, spec.key, x))
        x2 = crossing * 1.01 if not spec.integer else x + 1
        a2 = analytic(V.set(s, spec.key, x2))
    except ScenarioError:
        return (crossing, crossing)
    if a is None or a2 is None or a.collisions_per_hour <= 0 or a2.collisions_per_hour <= 0 \
            or a.collisions_per_hour == a2.collisions_per_hour:
        return (crossing, crossing)
    b = math.log(a2.collisions_per_hour / a.collisions_per_hour) / math.log(x2 / x)
    other = crossing * (1 + a.collision_probability) ** (1.0 / b)
    return (min(crossing, other), max(crossing, other))


def _interp(x1, r1, x2, r2, r_star) -> float:
    """Where a power law through two points reaches r*."""
    if r1 <= 0 or r2 <= 0 or r1 == r2 or x1 <= 0 or x2 <= 0:
        return x2
    b = math.log(r2 / r1) / math.log(x2 / x1)
    return x1 * (r_star / r1) ** (1.0 / b)


def _unreachable(lever, spec, hist, r_star, how):
    """The key's range (or the search) ended before the risk met the budget."""
    lever.reachable = False
    lever.method = how
    edge = hist[-1][0]
    if len(hist) >= 2 and hist[-1][1] > 0 and hist[-2][1] > 0 and hist[-1][1] != hist[-2][1]:
        lever.needed = _interp(hist[-2][0], hist[-2][1], hist[-1][0], hist[-1][1], r_star)
    cap = ""
    if spec.key == "nat.ips":
        cap = f"{int(spec.hi):,} NAT IPs is the model's cap"
    elif spec.integer and math.isfinite(spec.hi):
        cap = f"{spec.hi:,.0f} is the model's cap"
    else:
        cap = f"the search ended at {edge:.4g}"
    need = (f"; about {lever.needed:.2g} would be needed" if lever.needed else "")
    still = ("would still be about" if "extrapolated" in how else "is still")
    lever.note = f"not reachable: {cap}, where the risk {still} {hist[-1][1]:.3g} per hour{need}"


def _settle(lever, spec, crossing, value=None):
    """Round an integer lever in the safe direction (unless the integer that meets the budget is
    known: `value`); say what is reachable and what a deployment unit gives."""
    if crossing is None:
        return
    up = lever.safe_direction == "up"
    if value is not None:
        pass
    elif spec.integer:
        value = math.ceil(crossing - 1e-9) if up else math.floor(crossing + 1e-9)
        value = int(min(max(value, spec.lo), spec.hi)) if math.isfinite(spec.hi) else int(value)
    else:
        value = crossing
    lever.value = value
    lever.reachable = True
    if spec.key == "traffic.duration.mean" and value < MIN_LIFETIME_S:
        lever.reachable = False
        lever.note = (f"not reachable: a mean lifetime of {value * 1000:.3g} ms is shorter than a "
                      "TCP handshake (under 1 ms): no deployment gets there")
    if spec.key == "load_balancer.nodes" and value < 1:
        lever.reachable = False
        lever.note = "not reachable: at least one node"
    if lever.today > 0 and value > 0:
        lever.move = abs(math.log(value / lever.today))
    if spec.key == "nat.ips" and value > NAT_GATEWAY_IPS:
        gws = math.ceil(value / NAT_GATEWAY_IPS)
        lever.deployment = (f"an AWS NAT gateway has at most {NAT_GATEWAY_IPS} addresses, so "
                            f"{value:,} NAT IPs means {gws:,} gateways, or clients spread over them")
    if spec.key == "load_balancer.nodes":
        lever.deployment = "one node per enabled zone: fewer zones, less availability"


#: A variant whose engine state is larger than this is not simulated by solve: its risk is
#: extrapolated instead (4,096 NAT IPs x 3 nodes x 64,512 ports is 9 GB of port slots).
MAX_STATE_BYTES = 512 * 2 ** 20


def _affordable(sx: Scenario) -> bool:
    from ..engine import size
    try:
        return size(sx)[0] <= MAX_STATE_BYTES
    except Exception:
        return True


def _simulated_search(lever, s, spec, V, r_star, seed, rel_error, backend, sign, power, step_sign,
                      valid, r0, today_est=None):
    """Stochastic root finding on the conditional estimate (see the module's docstring)."""
    x0 = lever.today
    pts = []            # (x, R, se, Estimate)
    if today_est is not None and spec.integer:
        pts.append((x0, today_est.per_hour, today_est.se_per_hour or 0.0, today_est))
    x, r = x0, r0
    idx = 100
    hist = [(x0, r0)]
    for _ in range(24):
        # the next guess along the local power law, at most a factor 16 a step
        target_x = x * (r_star / r) ** (1.0 / power) if r > 0 else x * 16.0 ** step_sign
        f = target_x / x
        f = min(max(f, 1 / 16), 16)
        nx = x * f
        if spec.integer:
            nx = int(round(nx))
            if nx == x:
                nx = x + (1 if (r > r_star) == (sign < 0) else -1)
            pair = _nearest_pair(pts, r_star)
            if pair is not None:            # the crossing is between two integers: bisect there
                a, b = sorted(pair)
                if not a < nx < b:
                    nx = (a + b) // 2
        sx = valid(nx)
        if sx is None:
            # the range ends: try its edge once, then stop
            edge = spec.hi if nx > x else spec.lo
            if not math.isfinite(edge) or edge == x or valid(edge) is None:
                _unreachable(lever, spec, hist, r_star, "simulation")
                return
            nx, sx = edge, valid(edge)
        if not _affordable(sx):
            # too large to simulate here: the power law from what was simulated says the rest
            hist.append((nx, r * (nx / x) ** power if r > 0 else 0.0))
            _unreachable(lever, spec, hist, r_star, "simulation, extrapolated past "
                                                    f"{x:g} (larger runs do not fit in memory)")
            if lever.needed is not None and spec.lo <= lever.needed <= spec.hi:
                lever.note = (f"not solved: the boundary, about {lever.needed:.3g} by extrapolation, "
                              f"is past what fits in memory to simulate ({x:g} was the last value "
                              "simulated)")
            return
        far = abs(math.log(r_star / r)) if r > 0 else math.inf
        prec = rel_error if far < 6 * rel_error else min(0.2, max(rel_error, far / 4))
        idx += 1
        e = estimate_risk(sx, child_seed(seed, idx), prec, backend, MAX_CONNECTIONS)
        pts.append((nx, e.per_hour, e.se_per_hour or 0.0, e))
        hist.append((nx, e.per_hour))
        if e.per_hour > 0 and r > 0 and nx != x:
            p = math.log(e.per_hour / r) / math.log(nx / x)
            if p * sign > 0 and abs(math.log(nx / x)) > 3 * (e.rel_error or 0):
                power = math.copysign(min(max(abs(p), abs(power) / 4), abs(power) * 4), power)
        x, r = nx, e.per_hour
        if spec.integer and _bracketed(pts, r_star):
            break
        target = precision(sx, rel_error)
        close = r > 0 and abs(math.log(r_star / r)) <= 3 * max(e.rel_error or 0, target)
        precise = (e.rel_error or 0) <= target * 1.05 or e.connections >= MAX_CONNECTIONS * 0.9
        if close and precise:
            break
    else:
        lever.note = "the search did not settle within 24 evaluations"
    # the boundary from the last evaluation: x* = x (r*/R)^(1/b), R within its interval
    x, e = pts[-1][0], pts[-1][3]
    lever.boundary_rel_se = e.rel_error
    value = None
    if spec.integer:
        br = _bracketed(pts, r_star)
        if br:
            (xa, ra, ea), (xb, rb, eb) = br          # a meets the budget, b does not
            value = xa
            if ra > 0 and rb > 0:
                lever.crossing = _interp(xa, ra, xb, rb, r_star)
                ends = [_interp(xa, max(ea.interval[i], 1e-300), xb, max(eb.interval[i], 1e-300),
                                r_star) for i in (0, 1)]
                lever.interval = (min(ends), max(ends))
            else:                                    # a removes the risk: the boundary is there
                lever.crossing = float(xa)
                lever.interval = (min(xa, xb), max(xa, xb))
            lever.boundary_rel_se = eb.rel_error
        else:
            _from_last(lever, x, e, r_star, power)
    else:
        _from_last(lever, x, e, r_star, power)
    lever.method = (f"simulation: stochastic root finding on the {e.method}, "
                    f"{len(pts)} evaluations, last at {x:.4g} (±{100 * (e.rel_error or 0):.2g} %, "
                    f"seed {e.seed}, {e.connections:,} connections)")
    _settle(lever, spec, lever.crossing, value)


def _nearest_pair(pts, r_star):
    """The closest evaluated values on either side of r* (meeting it, not meeting it), or None."""
    below = [p[0] for p in pts if p[1] <= r_star]
    above = [p[0] for p in pts if p[1] > r_star]
    if not below or not above:
        return None
    return min(((a, b) for a in below for b in above), key=lambda ab: abs(ab[0] - ab[1]))


def _bracketed(pts, r_star):
    """Two neighbouring evaluated integers, one meeting the budget (a zero risk included) and one
    not, as ((x, R, Estimate) that meets it, the other), or None."""
    below = [(p[0], p[1], p[3]) for p in pts if p[1] <= r_star]
    above = [(p[0], p[1], p[3]) for p in pts if p[1] > r_star]
    for a in below:
        for b in above:
            if abs(a[0] - b[0]) == 1:
                return (a, b)
    return None


def _from_last(lever, x, e: Estimate, r_star, power):
    lo_r, hi_r = e.interval
    lever.crossing = x * (r_star / e.per_hour) ** (1.0 / power)
    ends = []
    for r in (max(lo_r, e.per_hour * 1e-6), hi_r):
        for p in (power * 0.8, power * 1.25):       # the slope is known to about 25 %
            ends.append(x * (r_star / r) ** (1.0 / p))
    lever.interval = (min(ends), max(ends))


def _confirm(lever, s, V, r_star, seed, rel_error, backend):
    """A fresh simulation at the boundary value, another seed."""
    try:
        sx = V.set(s, lever.key, lever.value)
    except ScenarioError as exc:
        lever.note += f"; not confirmed: {exc}"
        return
    import zlib                 # a stable index (str hashes change from run to run)
    e = estimate_risk(sx, child_seed(seed, 5000 + zlib.crc32(lever.key.encode()) % 1000), rel_error,
                      backend,
                      MAX_CONNECTIONS)
    lo, hi = e.interval
    verdict = ("meets the budget" if hi <= r_star else
               "at the budget, within its interval" if lo <= r_star else "over the budget")
    lever.confirmed = {**e.to_dict(), "verdict": verdict, "meets_budget": lo <= r_star}


# -- switches --------------------------------------------------------------------------------------------
def _switch_plan(s: Scenario) -> list[Switch]:
    lb = s.load_balancer
    several = lb.balancers > 1
    plans = [
        Switch("load_balancer.cross_zone", False, "cross-zone off",
               "every zone needs healthy targets: a node sends only to its own zone's targets, so a "
               "zone without one fails its share of connections, and load follows the clients' "
               "spread over zones" + (f"; with {lb.balancers} balancers sharing the targets, the "
                                      "nodes of different balancers in one zone still meet"
                                      if several else "")),
        Switch("load_balancer.client_ip_preservation", False, "client IP preservation off",
               "the target loses the client address and sees the load balancer's (proxy protocol "
               "v2 carries it); each node may hold at most 55,000 live connections per target"),
        Switch("nat.allocator", "eim", "an endpoint-independent NAT",
               "one external port per client ip:port for every destination (RFC 4787 "
               "endpoint-independent mapping); AWS NAT Gateway does not offer it: it takes another "
               "NAT (an instance or appliance that maps this way)"),
        Switch("load_balancer.node_choice", "sticky", "sticky clients",
               f"clients keep one load-balancer address for the DNS TTL ({lb.dns_ttl:g} s): each "
               "client's load lands on one zone at a time, unevenly"),
    ]
    return [p for p in plans if s.get(p.key) != p.value]


def _solve_switch(task) -> Switch:
    s, sw, r_star, seed, rel_error, backend = task
    try:
        sx = s.replace({sw.key: sw.value})
    except ScenarioError as exc:
        return replace(sw, left_out=str(exc))
    e = estimate_risk(sx, seed, max(rel_error, 0.1), backend, SWITCH_CONNECTIONS)
    a = analytic(sx)
    out = replace(sw, resets_per_hour=e.per_hour, interval=tuple(e.interval), seed=seed,
                  closed_form=a.collisions_per_hour if a else None,
                  meets_budget=e.interval[1] <= r_star)
    if is_zero(sx):
        out.note = "removes the risk: no collision is possible"
    return out


def _today_task(task) -> dict:
    s, seed, rel_error, backend = task
    e = estimate_risk(s, seed, rel_error, backend, MAX_CONNECTIONS)
    return e.to_dict()


def _run(task):
    kind, payload = task
    return {"lever": _solve_lever, "switch": _solve_switch, "today": _today_task}[kind](payload)


# -- the whole answer ---------------------------------------------------------------------------------------
def solve(scenario, budget, levers=None, seed: int | None = None, workers: int | None = None,
          rel_error: float = 0.03, start: str = "steady", backend: str = "cython",
          method: str = "auto", progress: Callable[[float], None] | None = None) -> SolveResult:
    """Where `budget` is met on each lever, which switches remove the risk, and the change to make.

    `scenario`: a Scenario, dict, built-in name or TOML path. `budget`: a Budget, "N/PERIOD" or
    "P within DURATION". `levers`: keys (default: rate, mean lifetime, NAT IPs, targets, nodes;
    a key given here that does not move the risk one way raises InputError). `method`: "auto"
    (closed form where it holds) or "simulation" (always simulate). `workers`: processes (None:
    every core)."""
    t0 = time.perf_counter()
    s = Scenario.load(scenario)
    b = Budget.parse(budget, start)
    if not (isinstance(rel_error, (int, float)) and 0 < rel_error < 1):
        raise InputError(f"--rel-error {rel_error}: must be between 0 and 1, e.g. 0.03")
    if method not in ("auto", "simulation"):
        raise InputError(f"method {method!r}: must be auto or simulation")
    from ..api import fresh_seed
    seed = fresh_seed() if seed is None else int(seed)
    explicit = levers is not None
    keys = list(DEFAULT_LEVERS if levers is None else levers)
    if explicit and not keys:
        raise InputError("--for: give at least one lever")
    from ..scenario import ALIASES
    keys = [ALIASES.get(k, k) for k in keys]
    for k in keys:
        _spec(s, k)                      # unknown or non-numeric keys: one line, before any work
    sj = judged(s, b)
    _check_cold(sj, b)
    r_star = b.max_per_hour
    use_cf = method == "auto"
    # a lever asked for by name must move the risk one way: checked before anything else runs
    checked = {k: check_lever(sj, k, child_seed(seed, 100 + i), backend, use_cf) if explicit
               else None for i, k in enumerate(keys)}
    tasks = [("today", (sj, child_seed(seed, 1), rel_error, backend))]
    for i, k in enumerate(keys):
        tasks.append(("lever", (sj, k, r_star, child_seed(seed, 100 + i), rel_error, backend,
                                use_cf, checked[k])))
    plans = _switch_plan(sj)
    for i, sw in enumerate(plans):
        tasks.append(("switch", (sj, sw, r_star, child_seed(seed, 200 + i), rel_error, backend)))
    results = _map(tasks, workers, progress)
    today_sim = results[0]
    lever_out = results[1:1 + len(keys)]
    sw_out = results[1 + len(keys):]
    a = analytic(sj)
    per_hour = today_sim["resets_per_hour"]
    lo, hi = today_sim["interval"]
    cf_ok = a is not None and closed_form_holds(sj)
    today = {"resets_per_hour": per_hour, "interval": [lo, hi], "method": today_sim["method"],
             "seed": today_sim["seed"], "horizon_s": today_sim["horizon_s"],
             "closed_form": a.collisions_per_hour if cf_ok else None,
             "closed_form_missing_reason": None if cf_ok else (applies(sj) or _form_left_out(sj)),
             "max_resets_per_hour": r_star,
             "meets_budget": hi <= r_star, "over_budget": lo > r_star,
             "verdict": ("within the budget" if hi <= r_star else
                         "over the budget" if lo > r_star else "at the budget, within the interval"),
             "probability_in_window": b.probability_in(per_hour),
             "probability_in_window_interval": [b.probability_in(lo), b.probability_in(hi)],
             "window_s": b.window_s}
    notes = _notes(sj, b)
    if b.kind == "probability" and _not_poisson(sj):
        today["first_reset"] = _first_reset_probability(sj, b, child_seed(seed, 2), backend)
    for sw in sw_out:           # sticky clients only where they help
        if sw.key == "load_balancer.node_choice" and sw.interval is not None:
            sw.helps = sw.interval[1] < lo
            if not sw.helps:
                sw.note = "does not lower the risk here"
    rec, alts = _recommend(today, lever_out, sw_out)
    counts = "collisions" if _resets_nothing(sj) else "resets"
    return SolveResult(s, b, today, lever_out, sw_out, rec, alts, notes, seed, rel_error,
                       time.perf_counter() - t0, counts)


def _map(tasks, workers, progress):
    from ..pool import process_pool, stop_pool, width
    n = width(workers, len(tasks))
    out = [None] * len(tasks)
    if n <= 1:
        for i, t in enumerate(tasks):
            out[i] = _run(t)
            if progress:
                progress((i + 1) / len(tasks))
        return out
    pool = process_pool(n)
    ok = False
    try:
        # the slow ones (levers) first, so they overlap the quick ones
        order = sorted(range(len(tasks)), key=lambda i: tasks[i][0] != "lever")
        futs = {pool.submit(_run, tasks[i]): i for i in order}
        from concurrent.futures import as_completed
        for k, fut in enumerate(as_completed(futs)):
            out[futs[fut]] = fut.result()
            if progress:
                progress((k + 1) / len(tasks))
        ok = True
    finally:
        stop_pool(pool, interrupted=not ok)
    return out


def _form_left_out(s: Scenario) -> str:
    t = s.target
    if t.delays:
        return "delayed connects (the SYN is retried)"
    if s.nat.reuse_delay > 0:
        return "the NAT's reuse delay"
    return "TIME_WAIT left by servers that close first"


def _why_flat(s: Scenario, key: str) -> str:
    if key == "target.time_wait" and s.target.server_close_fraction == 0:
        return " (nothing closes first here: target.server_close_fraction = 0)"
    return ""


def _check_cold(s: Scenario, b: Budget):
    if b.start != "cold" or s.traffic.schedule:
        return
    n = s.traffic.rate * b.window_s
    if n > 2e8:
        raise InputError(f"--start cold with a window of {_dur(b.window_s)}: {n:.2g} connections a "
                         "run; a cold start matters for load tests (minutes to hours); judge longer "
                         "windows from the steady state (the default)")


def _resets_nothing(s: Scenario) -> bool:
    return s.target.on_collision in ("delay-new", "count")


def _not_poisson(s: Scenario) -> bool:
    return s.nat.allocator == "linux" or bool(s.traffic.schedule)


def _notes(s: Scenario, b: Budget) -> list[str]:
    notes = []
    if _resets_nothing(s):
        notes.append(f"on_collision = {s.target.on_collision}: a collision resets nothing here, so "
                     "the budget counts collisions (each a delayed or doubled connection) instead "
                     "of resets")
    if b.kind == "probability":
        notes.append("P(at least one reset within the window) = 1 − exp(−r·T) from the "
                     + ("stationary" if b.start == "steady" else "cold-start window's mean")
                     + " rate r")
    if _not_poisson(s) and b.kind == "probability":
        why = "the linux allocator's resets come in clumps" if s.nat.allocator == "linux" else \
            "the load follows a schedule"
        notes.append(f"{why}: counts are not Poisson; today's probability is also measured from "
                     "first-reset replicates. Boundaries use the mean rate, and 1 − exp(−r·T) "
                     "overstates the probability of clumped resets, so they err on the safe side")
    if b.start == "cold":
        notes.append(f"judged from a cold start: the expected resets in the first "
                     f"{_dur(b.window_s)} after a start with no live connection, as a load test sees")
    if s.traffic.schedule:
        notes.append("the load follows traffic.schedule: rates are the mean over the window as "
                     "scheduled; the rate lever scales every segment")
    return notes


def _first_reset_probability(s: Scenario, b: Budget, seed: int, backend: str) -> dict:
    """P(at least one reset within the window) from first-reset replicates: the fraction with a
    reset by T where the replicates cover T, else 1 − exp(−T/mean) from their censored mean."""
    from ..api import first_reset
    from ..stats import garwood, wilson
    R = 200
    T = b.window_s
    if s.traffic.schedule:
        horizon = min(T, s.traffic.horizon)
    else:
        horizon = min(T, max(1.0, 2e5 / s.traffic.rate))
    sr = s.replace({"traffic.horizon": horizon})
    fr = first_reset(sr, replicates=R, seed=seed, start=b.start, backend=backend)
    seen = R - fr.censored
    if horizon >= T:
        hit = sum(1 for t in fr.times if t is not None and t <= T)
        lo, hi = wilson(hit, R)
        return {"probability": hit / R, "interval": [lo, hi], "replicates": R,
                "horizon_s": horizon, "method": "fraction of replicates with a reset within T "
                                                 "(Wilson 95 %)", "seed": seed}
    exposure = sum(horizon if t is None else t for t in fr.times)
    lo_n, hi_n = garwood(seen)
    p = (lambda n: -math.expm1(-T * n / exposure))
    return {"probability": p(seen), "interval": [p(lo_n), p(hi_n)], "replicates": R,
            "horizon_s": horizon, "method": "1 − exp(−T/mean), mean time to the first reset from "
                                             "censored replicates (Garwood 95 % on the count)",
            "seed": seed}


def _recommend(today, levers, switches):
    """The change that meets the budget with the smallest |ln(new/today)|; switches after the
    levers, and first when no lever can."""
    cands = []
    meets_today = today["meets_budget"]
    if not meets_today:
        for lv in levers:
            if lv.reachable and lv.value is not None and lv.move is not None:
                cands.append((0, lv.move, {
                    "kind": "lever", "key": lv.key, "words": lv.words, "today": lv.today,
                    "value": lv.value, "unit": lv.unit, "move": lv.move,
                    "effect": (lv.confirmed or {}).get("resets_per_hour"),
                    "effect_interval": (lv.confirmed or {}).get("interval"),
                    "cost": lv.deployment or _lever_cost(lv),
                    "text": _lever_text(lv)}))
    for i, sw in enumerate(switches):
        if sw.left_out is None and sw.meets_budget and sw.helps:
            cands.append((1, i, {"kind": "switch", "key": sw.key, "value": sw.value,
                                 "words": sw.name, "move": None, "effect": sw.resets_per_hour,
                                 "effect_interval": list(sw.interval) if sw.interval else None,
                                 "cost": sw.cost, "text": f"{sw.name} ({sw.key} = "
                                                          f"{_fmt_val(sw.value)})"}))
    cands.sort(key=lambda c: (c[0], c[1]))
    if meets_today:
        rec = {"kind": "none", "text": "no change needed: today's risk is within the budget",
               "key": None, "value": None, "move": 0.0, "effect": today["resets_per_hour"],
               "effect_interval": today["interval"], "cost": "none"}
        return rec, [c[2] for c in cands[:2]]
    if not cands:
        return ({"kind": "none", "key": None, "value": None, "move": None, "effect": None,
                 "effect_interval": None, "cost": None,
                 "text": "no lever or switch tried meets the budget"}, [])
    rec = dict(cands[0][2])
    if rec["kind"] == "switch" and not any(lv.reachable for lv in levers):
        rec["reason"] = "no lever reaches the budget within its range"
    else:
        rec["reason"] = "the smallest relative move that meets the budget"
    return rec, [c[2] for c in cands[1:3]]


def _fmt_val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _lever_text(lv: Lever) -> str:
    arrow = "at most" if lv.safe_direction == "down" else "at least"
    unit = "" if _spec_integer(lv.key) else f" {lv.unit}"
    return f"{lv.words} {arrow} {_fmt_num(lv.value)}{unit} (today {_fmt_num(lv.today)})"


def _spec_integer(key: str) -> bool:
    return key in _SPECS and _SPECS[key].integer


def _lever_cost(lv: Lever) -> str:
    return {"traffic.rate": "less traffic through this path (spread it over other NATs or "
                            "balancers, or reuse connections)",
            "traffic.duration.mean": "shorter connections: more handshakes (and TLS set-ups) for "
                                     "the same work",
            "nat.ips": "more NAT addresses (Elastic IPs)",
            "load_balancer.targets": "more targets to run and pay for",
            "load_balancer.nodes": "fewer zones: less availability"}.get(lv.key, f"{lv.key} moved")


def _fmt_num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


# -- the table -----------------------------------------------------------------------------------------------
def format_table(r: SolveResult) -> str:
    """`collide solve`'s plain-text answer."""
    b, t = r.budget, r.today
    per = r.counts[:-1] if b.max_per_hour == 1 else r.counts
    lines = [f"  budget    {b.text}: at most {_fmt_num(b.max_per_hour)} {per} per hour"
             + (" (cold start)" if b.start == "cold" else "")]
    cf = f"; closed form {_fmt_num(t['closed_form'])}" if t["closed_form"] is not None else ""
    lines.append(f"  today     {_fmt_num(t['resets_per_hour'])} {r.counts} per hour (95 % "
                 f"{_fmt_num(t['interval'][0])} – {_fmt_num(t['interval'][1])}{cf}): {t['verdict']}")
    if b.kind == "probability":
        lines.append(f"            P(at least one within {_dur(b.window_s)}) "
                     f"{_pct(t['probability_in_window'])} (95 % "
                     f"{_pct(t['probability_in_window_interval'][0])} – "
                     f"{_pct(t['probability_in_window_interval'][1])})")
        fr = t.get("first_reset")
        if fr:
            lines.append(f"            from {fr['replicates']} first-reset replicates: "
                         f"{_pct(fr['probability'])} (95 % {_pct(fr['interval'][0])} – "
                         f"{_pct(fr['interval'][1])})")
    rec = r.recommendation
    lines.append(f"  change    {rec['text']}" + (f"  [{rec.get('reason')}]" if rec.get("reason")
                                                 else ""))
    for i, alt in enumerate(r.alternatives):
        lines.append(f"  or        {alt['text']}")
    lines.append("")
    lines.append("  levers")
    form_note = False
    for lv in r.levers:
        unit = lv.unit[:-1] if lv.today == 1 and lv.unit.endswith("s") and "/" not in lv.unit \
            else lv.unit
        lines.append(f"  {lv.key}: today {_fmt_num(lv.today)} {unit}".rstrip())
        if lv.reachable and lv.value is not None:
            way = "at most" if lv.safe_direction == "down" else "at least"
            iv = lv.interval
            ivt = (f" (crossing {_fmt_num(lv.crossing)}, 95 % {_fmt_num(iv[0])} – "
                   f"{_fmt_num(iv[1])})" if iv and iv[0] != iv[1] else
                   f" (crossing {_fmt_num(lv.crossing)})" if lv.crossing != lv.value else "")
            lines.append(f"      safe    {way} {_fmt_num(lv.value)}{ivt}")
            lines.append(f"      how     {lv.method}")
            c = lv.confirmed
            if c:
                lines.append(f"      check   {_fmt_num(c['resets_per_hour'])} per hour there (95 % "
                             f"{_fmt_num(c['interval'][0])} – {_fmt_num(c['interval'][1])}, "
                             f"seed {c['seed']}): {c['verdict']}")
            if lv.deployment:
                lines.append(f"      unit    {lv.deployment}")
            if lv.method.startswith("closed form"):
                form_note = True
            elif lv.note:
                lines.append(f"      note    {lv.note}")
        else:
            lines.append(f"      {lv.note or 'not solved'}")
    lines.append("")
    lines.append("  switches")
    for sw in r.switches:
        if sw.left_out:
            lines.append(f"  {sw.name}: left out ({sw.left_out})")
            continue
        verdict = ("meets the budget" if sw.meets_budget else "does not meet the budget")
        lines.append(f"  {sw.name} ({sw.key} = {_fmt_val(sw.value)}): "
                     f"{_fmt_num(sw.resets_per_hour)} per hour (95 % {_fmt_num(sw.interval[0])} – "
                     f"{_fmt_num(sw.interval[1])}): {verdict}")
        lines.append(f"      cost    {sw.cost}")
    notes = list(r.notes)
    if form_note:
        notes.append("closed form: exact in count mode; under reset-existing or fail-new an upper "
                     "bound on the risk, high by about the collision probability per connection, so "
                     "its interval reaches that far to the risky side")
    for n in notes:
        lines.append(f"  note      {n}")
    lines.append(f"  run       seed {r.seed}, rel-error {r.rel_error:g}, {r.elapsed_s:.1f} s")
    return "\n".join(lines)


def _pct(p) -> str:
    if p is None:
        return "-"
    if p == 0:
        return "0 %"
    if p < 0.001:
        return f"{p * 100:.2g} %"
    return f"{p * 100:.3g} %"
