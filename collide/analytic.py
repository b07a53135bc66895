"""Closed forms of docs/model.md §3: collision rates where the birthday-type argument is exact.

For the `random` allocator below exhaustion, each destination's held ports are a uniform random set,
so an arrival through node j meets a holder on node i with probability m_i / (B·P), m_i the mean live
connections on destination (ip, i). Nodes are independent, which gives the product forms below. They
hold exactly in `count` mode; under `reset-existing` / `fail-new` they are upper bounds that are tight
for small probabilities (docs/model.md §3).
"""
from __future__ import annotations

import bisect
import functools
import itertools
import math
from dataclasses import dataclass

from .scenario import Duration, Scenario

__all__ = ["Analytic", "analytic", "applies", "mean_live_fraction", "time_wait_hits_per_connection"]


@dataclass(frozen=True)
class Analytic:
    """Closed-form prediction for one scenario."""
    collision_probability: float   # collisions (arrivals meeting >= 1 holder) per arrival
    collisions_per_hour: float
    form: str                      # "steady" or "cold"
    expected_collisions: float     # over the scenario's measured horizon
    pairs_per_second: float        # mean over the horizon
    constant_load: bool = True     # False under traffic.schedule: rates are window averages

    @property
    def collision_rate(self) -> float:
        """Collisions per second."""
        return self.collisions_per_hour / 3600.0

    @property
    def mean_first_collision_s(self) -> float | None:
        """Steady state: time to the first collision is exponential with mean 1/r."""
        if self.form != "steady" or not self.constant_load or self.collision_rate <= 0:
            return None
        return 1.0 / self.collision_rate

    def to_dict(self) -> dict:
        return {"collision_probability": self.collision_probability,
                "collisions_per_hour": self.collisions_per_hour, "form": self.form}


def is_zero(s: Scenario) -> bool:
    """Settings under which the model allows no collision at all."""
    lb = s.load_balancer
    # several balancers' nodes in one zone share that zone's targets even with cross-zone off
    return ((not lb.cross_zone and lb.balancers == 1) or lb.total_nodes == 1
            or not lb.client_ip_preservation or s.nat.allocator == "eim")


def applies(s: Scenario) -> str | None:
    """None if a closed form applies to the scenario, else the reason it does not."""
    if is_zero(s):
        return None
    if s.nat.allocator != "random":
        return f"allocator {s.nat.allocator!r} (the forms need uniformly random ports)"
    if s.load_balancer.node_choice != "per-connection":
        return "sticky node choice"
    lb, nat = s.load_balancer, s.nat
    peak = 1.0
    if s.traffic.schedule:      # occupancy never exceeds the highest rate's steady state
        peak = max(r for _, r in s.traffic.schedule) / s.traffic.rate
    for rate_ip in _ip_rates(s):
        for w in lb.all_weights:
            if rate_ip * peak * w * s.traffic.duration.mean > 0.8 * nat.capacity:
                return "destinations near exhaustion"
    return None


def _ip_rates(s: Scenario) -> list[float]:
    """Arrival rate through each NAT IP."""
    k, lam = s.nat.ips, s.traffic.rate
    if s.nat.ip_choice == "per-connection" or k == 1:
        return [lam / k] * k
    counts = [0] * k
    for c in range(s.traffic.clients):
        counts[c % k] += 1
    return [lam * n / s.traffic.clients for n in counts]


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@functools.lru_cache(maxsize=8)
def _sorted_sample(d: Duration) -> tuple[list[float], list[float]]:
    """An empirical law's lifetimes sorted, and their prefix sums (prefix[i] = sum of the i smallest)."""
    v = sorted(d.values)
    return v, [0.0] + list(itertools.accumulate(v))


def mean_live_fraction(d: Duration, t: float) -> float:
    """E[min(L, t)]: the cold-start occupancy at time t per unit arrival rate."""
    if t <= 0:
        return 0.0
    m = d.mean
    if d.dist == "empirical":     # the sample's E[min(L, t)]
        v, prefix = _sorted_sample(d)
        i = bisect.bisect_right(v, t)
        return (prefix[i] + t * (len(v) - i)) / len(v)
    if d.dist == "exponential":
        return m * -math.expm1(-t / m)
    if d.dist == "fixed":
        return min(t, m)
    if d.dist == "lognormal":
        s = d.sigma
        if s == 0:
            return min(t, m)
        mu = math.log(m) - s * s / 2
        z = (math.log(t) - mu) / s
        return m * _phi(z - s) + t * (1 - _phi(z))
    # Pareto type I with scale xm = m (a-1)/a
    a = d.alpha
    xm = m * (a - 1) / a
    if t <= xm:
        return t
    return m - xm ** a * t ** (1 - a) / (a - 1)


def _collide_prob(s: Scenario, occupancy: float) -> tuple[float, float]:
    """(collisions, pairs) per arrival, given E[min(L, t)] (steady state: the mean lifetime).

    Node i holds a given (port, target t) with probability m_i / (P |T_i|) when t is one of its
    targets T_i (all targets with cross-zone on, its zone's otherwise), m_i its mean live
    connections; an arrival through node j meets node i only on a target both can reach.
    With several balancers, node e is node e % nodes (its zone) of balancer e // nodes.
    """
    lb, nat = s.load_balancer, s.nat
    P, lam, n = nat.ports, s.traffic.rate, lb.nodes
    zones = lb.zone_targets
    w = lb.all_weights
    reach = [lb.total_targets if lb.cross_zone else zones[e % n] for e in range(len(w))]

    def shares(i, j):       # can node i's connections use node j's targets?
        return lb.cross_zone or i % n == j % n
    prob = pairs = 0.0
    for rate_ip in _ip_rates(s):
        share = rate_ip / lam
        q = [rate_ip * wi * occupancy / (P * reach[i]) for i, wi in enumerate(w)]
        for j, wj in enumerate(w):
            if wj == 0:
                continue
            miss = 1.0
            for i, qi in enumerate(q):
                if i != j and shares(i, j):
                    miss *= 1.0 - qi
                    pairs += share * wj * qi
            prob += share * wj * (1.0 - miss)
    return prob, pairs


def analytic(s: Scenario) -> Analytic | None:
    """The closed form for the scenario's start and horizon, or None where none applies. `s`: a
    Scenario, or anything `Scenario.load` takes (a built-in name, a dict, a TOML path)."""
    if not isinstance(s, Scenario):
        s = Scenario.load(s)
    if applies(s) is not None:
        return None
    T, lam = s.traffic.horizon, s.traffic.rate
    if is_zero(s):
        form = "steady" if s.traffic.warmup == "auto" else "cold"
        return Analytic(0.0, 0.0, form, 0.0, 0.0, not s.traffic.schedule)
    if s.traffic.schedule:
        return _scheduled(s)
    if s.traffic.warmup == "auto":
        p, pairs = _collide_prob(s, s.traffic.duration.mean)
        return Analytic(p, lam * p * 3600.0, "steady", lam * p * T, lam * pairs)
    # cold start (or a time-based warm-up W): integrate the event form over the measured window
    W = float(s.traffic.warmup)
    n = 2000
    h = T / n
    tot_p = tot_pairs = 0.0
    for i in range(n + 1):              # Simpson's rule
        c = 1 if i in (0, n) else (4 if i % 2 else 2)
        p, pairs = _collide_prob(s, mean_live_fraction(s.traffic.duration, W + i * h))
        tot_p += c * p
        tot_pairs += c * pairs
    exp_coll = lam * tot_p * h / 3
    exp_pairs = lam * tot_pairs * h / 3
    return Analytic(exp_coll / (lam * T), exp_coll / T * 3600.0, "cold", exp_coll, exp_pairs / T)


def scheduled_occupancy(s: Scenario, t: float) -> float:
    """Mean live connections (all destinations, collision-free) at window time t under
    traffic.schedule: the rate history convolved with the survival function,
    m(t) = sum_i r_i (G(t - a_i) - G(t - b_i)), G(x) = E[min(L, x)], segment i = [a_i, b_i) cut at t.

    Before the window the first segment's rate holds: from -infinity for warmup = "auto" (the
    stationary start), from -W for a warm-up of W seconds (0: cold start)."""
    d, sched = s.traffic.duration, s.traffic.schedule
    steady = s.traffic.warmup == "auto"
    total = 0.0
    for i, (a, r) in enumerate(sched):
        if a > t:
            break
        hi = min(sched[i + 1][0], t) if i + 1 < len(sched) else t
        if i == 0:
            g_lo = d.mean if steady else mean_live_fraction(d, t + float(s.traffic.warmup))
        else:
            g_lo = mean_live_fraction(d, t - a)
        total += r * (g_lo - mean_live_fraction(d, t - hi))
    return total


def _scheduled(s: Scenario) -> Analytic:
    """The event form integrated over a piecewise-constant load: at window time t an arrival
    (rate r(t)) meets the occupancy m(t) of `scheduled_occupancy`; Simpson's rule on each segment
    (the integrand jumps at segment starts). Rates per hour and per connection are window averages,
    so the time to a first collision is not exponential and no mean is given for it."""
    T, lam, sched = s.traffic.horizon, s.traffic.rate, s.traffic.schedule
    exp_coll = exp_pairs = arrivals = 0.0
    for i, (a, r) in enumerate(sched):
        if a >= T:
            break
        b = min(sched[i + 1][0], T) if i + 1 < len(sched) else T
        n = 400
        h = (b - a) / n
        tot_p = tot_pairs = 0.0
        for j in range(n + 1):
            c = 1 if j in (0, n) else (4 if j % 2 else 2)
            p, pairs = _collide_prob(s, scheduled_occupancy(s, a + j * h) / lam)
            tot_p += c * p
            tot_pairs += c * pairs
        exp_coll += r * tot_p * h / 3
        exp_pairs += r * tot_pairs * h / 3
        arrivals += r * (b - a)
    form = "steady" if s.traffic.warmup == "auto" else "cold"
    return Analytic(exp_coll / arrivals, exp_coll / T * 3600.0, form, exp_coll, exp_pairs / T,
                    constant_load=False)


def cold_pairs_exact(s: Scenario) -> float:
    """docs/model.md §3's cold-start pair count for fixed or exponential lifetimes, uniform weights."""
    lam, T = s.traffic.rate, s.traffic.horizon
    lb, nat = s.load_balancer, s.nat
    N, B, P, k, D = lb.nodes, lb.total_targets, nat.ports, nat.ips, s.traffic.duration.mean
    c = lam * lam * (N - 1) / (k * N * B * P)
    if s.traffic.duration.dist == "fixed":
        if T < D:
            return c * T * T / 2
        return c * (D * T - D * D / 2)
    if s.traffic.duration.dist == "exponential":
        return c * D * (T - D * -math.expm1(-T / D))
    raise ValueError("cold_pairs_exact: fixed or exponential lifetimes only")


def time_wait_hits_per_connection(s: Scenario) -> float:
    """docs/model.md §5: steady-state TIME_WAIT hits per connection, all connections closed by the server."""
    lb, nat = s.load_balancer, s.nat
    N, B, P, k, D = lb.nodes, lb.total_targets, nat.ports, nat.ips, s.traffic.duration.mean
    a = s.traffic.rate / (k * B * P)
    tau = s.target.time_wait
    return -math.expm1(-a * tau) / (1 + a * (N - 1) / N * D)
