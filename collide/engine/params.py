"""Scenario → the flat parameter arrays every backend reads, and the run's time line.

All three backends read the same arrays, so derived floats (lognormal mu, Pareto scale, cumulative
weights) are computed once here and are bit-identical everywhere.
"""
from __future__ import annotations

import math

import numpy as np

from ..scenario import NODE_PORTS_PER_TARGET, Scenario

# integer parameters (pi)
(K, N, B, P, CAP, LIMITED, CLIENTS, IP_PER_CLIENT, STICKY, ALLOC, DIST, OUTCOME, CROSS, CIP,
 WEIGHTED, EST, SUMS, NBATCH, TW_ON, REUSE_ON, NODE_LIMIT, NEED_CLIENT, EMP_N, SCHED_N, SYN_N,
 CA_LIMIT, COLLIDABLE, NTL_SIZE, EV_NSUB, UNTIL_FIRST, DELAYS, ZONES, EV_CCAP) = range(33)
N_PI = 33
# float parameters (pf)
(RATE, MEAN, MU, SIGMA, XM, ALPHA, DNS_TTL, TW, SCF, REUSE, T_MEASURE, T_END, BATCH_SCALE,
 EV_CINV) = range(14)
N_PF = 14

ALLOC_CODES = {"random": 0, "sequential": 1, "linux": 2, "eim": 3}
DIST_CODES = {"exponential": 0, "fixed": 1, "lognormal": 2, "pareto": 3, "empirical": 4}
OUTCOME_CODES = {"reset-existing": 0, "fail-new": 1, "count": 2, "delay-new": 3}
# effective outcome codes: 3 = the new connection retries (delay-new, pre-6.4 PAWS drop),
# 4 = the holders are reset and the new connection retries (pre-3.6)
KERNEL_OUTCOME = {"pre-6.4": 3, "pre-3.6": 4}
ESTIMATES = ("off", "target", "full")
EST_OFF, EST_TARGET, EST_FULL = 0, 1, 2
NBATCHES = 32          # batches for the conditional estimate's standard error
PEAK_SAMPLES = 100     # live counts are read at t_measure + i * horizon / 100, i = 0..100
LINUX_EPOCH_S = 10.0   # Linux redraws the per-destination port offset every 10 s
NTL_MAX = 1 << 22      # counters of the node-target limit (client IP preservation off)


def collidable(s: Scenario) -> bool:
    """Whether a 4-tuple collision can happen at all (docs/model.md, closed forms: zero)."""
    lb = s.load_balancer
    if lb.total_nodes < 2 or not lb.client_ip_preservation or s.nat.allocator == "eim":
        return False
    return lb.cross_zone or lb.balancers > 1


#: `full` is the default while fewer slots of a port than this are held through the other nodes
#: on average (random ports): validated on 23 scenarios in bench/README.md ("the default estimate")
FULL_BELOW_OTHER_HELD = 0.3


def other_held(s: Scenario) -> float:
    """Slots of one port held through the other nodes, on average: (N - 1) · λ·D / (k·N·P), at
    the window's mean rate. It sets both how much `full` gains over `target` (their variances
    differ by what a port's draw adds, large where a port rarely has another holder) and what it
    costs (rows with two slots taken queue steps)."""
    lb, nat, tr = s.load_balancer, s.nat, s.traffic
    n = lb.total_nodes
    return (n - 1) * tr.mean_rate * tr.duration.mean / (nat.ips * n * nat.ports)


def default_estimate(s: Scenario) -> tuple[str, str]:
    """The estimate a run keeps when none is asked for, and why (docs/model.md §3): the one with
    the most precision per second (smallest SE² × kernel time) by a rule from the scenario."""
    if not collidable(s):
        return "target", "no collision is possible: both estimates are 0 and target costs nothing"
    if s.nat.allocator != "random":
        return "target", (f"{s.nat.allocator} ports: full equals target there (the port is the "
                          "scan's) and costs more")
    y = other_held(s)
    if y < FULL_BELOW_OTHER_HELD:
        return "full", (f"rule: {y:.3g} slots of a port held through other nodes (< "
                        f"{FULL_BELOW_OTHER_HELD:g}): full is the more precise per second")
    return "target", (f"rule: {y:.3g} slots of a port held through other nodes (>= "
                      f"{FULL_BELOW_OTHER_HELD:g}): target is the more precise per second")


def resolve_estimate(s: Scenario, estimate) -> str:
    """The estimate a run keeps: "off", "target" or "full" (docs/model.md, estimators). `None` or
    `True` take the default (`default_estimate`); `False` is "off"."""
    if estimate is None or estimate is True:
        return default_estimate(s)[0]
    if estimate is False:
        return "off"
    if estimate not in ESTIMATES:
        raise ValueError(f"--estimate {estimate!r}: must be one of {', '.join(ESTIMATES)}")
    return estimate


def estimate_reason(s: Scenario, estimate) -> str:
    """Why a run keeps the estimate it keeps (the JSON's `estimate_reason`)."""
    if estimate is None or estimate is True:
        return default_estimate(s)[1]
    resolved = resolve_estimate(s, estimate)
    if resolved == "off":
        return "off: counting only (--estimate off)"
    return f"--estimate {resolved}"


def time_line(s: Scenario) -> tuple[float, float]:
    """(start of the measured window, its end). Every run starts at t = 0.

    warmup = "auto": the stationary state is placed at t = 0, then TIME_WAIT (and the NAT reuse
    delay) get their burn-in before measuring; a number W: W seconds from empty; 0: cold start.
    """
    t = s.traffic
    if t.warmup == "auto":
        burn = 0.0
        if s.target.server_close_fraction > 0 and s.load_balancer.client_ip_preservation:
            burn += s.target.time_wait
        burn += s.nat.reuse_delay
        start = burn
    else:
        start = float(t.warmup)
    return start, start + t.horizon


def extra_array(s: Scenario, t_measure: float) -> np.ndarray:
    """The variable-length parameters, packed in one float64 array `xa` (n = pi[EMP_N] empirical
    lifetimes, m = pi[SCHED_N] schedule segments):

        xa[0:n]            the lifetimes, in file order (lifetime = xa[randint(n)])
        xa[n:2n]           their cumulative sums (np.cumsum, left to right): the length-biased draw
                           picks the first i with cum[i] > u * cum[n-1]
        xa[2n:2n+m]        absolute segment starts: t_measure + start_s
        xa[2n+m:2n+2m]     segment rates
        xa[2n+2m:2n+2m+r]  the SYN retry times after the first SYN (r = pi[SYN_N])
    """
    values = np.array(s.traffic.duration.values, np.float64) if \
        s.traffic.duration.dist == "empirical" else np.zeros(0, np.float64)
    sched = s.traffic.schedule
    starts = np.array([t_measure + a for a, _ in sched], np.float64)
    rates = np.array([r for _, r in sched], np.float64)
    syn = np.array(s.target.syn_retries, np.float64)
    return np.concatenate([values, np.cumsum(values), starts, rates, syn]).astype(np.float64)


def peak_rate(s: Scenario) -> float:
    t = s.traffic
    return max([t.rate_before] + [r for _, r in t.schedule])


def calendar_shape(s: Scenario) -> tuple[int, float, int]:
    """(sub-buckets, 1 / WC, capacity) of the `full` estimate's windows: WC holds about 1,024
    arrivals at the run's highest rate (its queued changes are sorted at once when time leaves
    it, by sub-buckets of about one change each); a window's segment starts with room for four
    times that and grows. They decide the speed, never a result."""
    rate = peak_rate(s)
    width = 1024.0 / rate if rate > 0 else 1.0
    return 1024, 1.0 / width, 4096


def build(s: Scenario, estimate: str = "off", until_first: bool = False) -> tuple:
    """(pi, pf, zone_start, zone_count, cumulative weights, extra array `xa`)."""
    lb, nat, tr, tg = s.load_balancer, s.nat, s.traffic, s.target
    pi = np.zeros(N_PI, np.int64)
    pf = np.zeros(N_PF, np.float64)
    pi[K], pi[N], pi[B], pi[P] = nat.ips, lb.total_nodes, lb.total_targets, nat.ports
    pi[CAP] = nat.capacity
    pi[LIMITED] = nat.capacity < nat.ports
    pi[CLIENTS] = tr.clients
    pi[IP_PER_CLIENT] = nat.ip_choice == "per-client" and nat.ips > 1
    pi[STICKY] = lb.node_choice == "sticky" and lb.total_nodes > 1
    pi[NEED_CLIENT] = pi[IP_PER_CLIENT] or pi[STICKY]
    pi[ALLOC] = ALLOC_CODES[nat.allocator]
    pi[DIST] = DIST_CODES[tr.duration.dist]
    pi[OUTCOME] = OUTCOME_CODES[tg.on_collision]
    if tg.kernel in KERNEL_OUTCOME:
        pi[OUTCOME] = KERNEL_OUTCOME[tg.kernel]
    pi[CROSS] = lb.cross_zone
    pi[CIP] = lb.client_ip_preservation
    pi[WEIGHTED] = len(set(lb.all_weights)) != 1
    pi[COLLIDABLE] = collidable(s)
    est = ESTIMATES.index(estimate)
    pi[EST] = est if pi[COLLIDABLE] else min(est, EST_TARGET)   # nothing to sum where it is 0
    pi[SUMS] = pi[EST] == EST_FULL and pi[ALLOC] == 0
    pi[NBATCH] = NBATCHES
    pi[TW_ON] = tg.time_wait > 0 and tg.server_close_fraction > 0 and lb.client_ip_preservation
    pi[REUSE_ON] = nat.reuse_delay > 0
    pi[NODE_LIMIT] = NODE_PORTS_PER_TARGET
    pi[NTL_SIZE] = 1 if lb.client_ip_preservation else min(lb.total_nodes * lb.total_targets,
                                                            NTL_MAX)
    pi[UNTIL_FIRST] = until_first
    pi[DELAYS] = pi[OUTCOME] >= 3 or tg.challenge_ack_limit > 0
    d = tr.duration
    # with a schedule, warm-up and the stationary start run at the first segment's rate
    pf[RATE], pf[MEAN] = tr.rate_before, d.mean
    pf[SIGMA], pf[ALPHA] = d.sigma, d.alpha
    pf[MU] = math.log(d.mean) - d.sigma * d.sigma / 2.0
    pf[XM] = d.mean * (d.alpha - 1.0) / d.alpha
    pf[DNS_TTL], pf[TW], pf[SCF], pf[REUSE] = lb.dns_ttl, tg.time_wait, tg.server_close_fraction, \
        nat.reuse_delay
    pf[T_MEASURE], pf[T_END] = time_line(s)
    pf[BATCH_SCALE] = NBATCHES / (pf[T_END] - pf[T_MEASURE])
    pi[EV_NSUB], pf[EV_CINV], pi[EV_CCAP] = calendar_shape(s)
    pi[ZONES] = 1 if lb.cross_zone else lb.nodes      # node e's zone: e % ZONES
    # node e of the engine is node e % nodes (its zone) of balancer e // nodes: zones repeat
    zc = np.array(lb.zone_targets, np.int64)
    zs = np.concatenate([[0], np.cumsum(zc)[:-1]]).astype(np.int64)
    zc, zs = np.tile(zc, lb.balancers), np.tile(zs, lb.balancers)
    w = np.cumsum(np.array(lb.all_weights, np.float64))
    w[-1] = np.inf          # the last node takes whatever rounding leaves
    pi[EMP_N] = len(d.values) if d.dist == "empirical" else 0
    pi[SCHED_N] = len(tr.schedule)
    pi[SYN_N] = len(tg.syn_retries)
    pi[CA_LIMIT] = tg.challenge_ack_limit
    xa = extra_array(s, float(pf[T_MEASURE]))
    return pi, pf, zs, zc, w, xa
