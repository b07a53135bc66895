"""Scenario → flat parameter arrays shared by the three backends, and the run's time line.

All three backends read the same arrays, so derived floats (lognormal mu, Pareto scale, cumulative
weights) are computed once here and are bit-identical everywhere.
"""
from __future__ import annotations

import math

import numpy as np

from .scenario import NODE_PORTS_PER_TARGET, Scenario

# integer parameters (pi)
K, N, B, P, LIMIT, CLIENTS, IP_PER_CLIENT, STICKY, ALLOC, DIST, OUTCOME, CROSS, CIP, WEIGHTED, \
    ESTIMATE, NBATCH, TW_ON, COOL_ON, NODE_LIMIT, NEED_CLIENT, EMP_N, SCHED_N = range(22)
SYN_N, CA_LIMIT = 22, 23    # SYN retry times (in xa after the schedule); challenge ACKs per second
N_PI = 24
# float parameters (pf)
RATE, MEAN, MU, SIGMA, XM, ALPHA, DNS_TTL, TW, SCF, REUSE, T_MEASURE, T_END = range(12)
N_PF = 12

ALLOC_CODES = {"random": 0, "sequential": 1, "linux": 2, "eim": 3}
DIST_CODES = {"exponential": 0, "fixed": 1, "lognormal": 2, "pareto": 3, "empirical": 4}
OUTCOME_CODES = {"reset-existing": 0, "fail-new": 1, "count": 2, "delay-new": 3}
# effective outcome codes: 3 = the new connection retries (delay-new, pre-6.4 PAWS drop),
# 4 = the holders are reset and the new connection retries (pre-3.6)
KERNEL_OUTCOME = {"pre-6.4": 3, "pre-3.6": 4}
NBATCHES = 32          # batches for the conditional estimate's standard error
LINUX_EPOCH_S = 10.0   # Linux redraws the per-destination port offset every 10 s


def estimate_defined(s: Scenario) -> bool:
    """The conditional estimate of DESIGN §3 exists for `random`, `sequential` and `eim`.

    The kernels' running sums assume every other node's target can be the arrival's (cross-zone on,
    or one balancer with cross-zone off, where the estimate is 0); several balancers with cross-zone
    off share targets by zone only, which the sums do not track, so there it is not reported."""
    lb = s.load_balancer
    if lb.balancers > 1 and not lb.cross_zone:
        return False
    return s.nat.allocator in ("random", "sequential", "eim")


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


def build(s: Scenario, estimate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, np.ndarray]:
    """(pi, pf, zone_start, zone_count, cumulative weights, extra array `xa`)."""
    lb, nat, tr, tg = s.load_balancer, s.nat, s.traffic, s.target
    pi = np.zeros(N_PI, np.int64)
    pf = np.zeros(N_PF, np.float64)
    pi[K], pi[N], pi[B], pi[P] = nat.ips, lb.total_nodes, lb.total_targets, nat.ports
    pi[LIMIT] = nat.capacity
    pi[CLIENTS] = tr.clients
    pi[IP_PER_CLIENT] = nat.ip_choice == "per-client" and nat.ips > 1
    pi[STICKY] = lb.node_choice == "sticky" and lb.total_nodes > 1
    pi[NEED_CLIENT] = pi[IP_PER_CLIENT] or pi[STICKY]
    pi[ALLOC] = ALLOC_CODES[nat.allocator]
    pi[DIST] = DIST_CODES[tr.duration.dist]
    pi[OUTCOME] = OUTCOME_CODES[tg.on_collision]
    pi[CROSS] = lb.cross_zone
    pi[CIP] = lb.client_ip_preservation
    uniform = len(set(lb.all_weights)) == 1
    pi[WEIGHTED] = not uniform
    pi[ESTIMATE] = estimate and estimate_defined(s)
    pi[NBATCH] = NBATCHES
    pi[TW_ON] = tg.time_wait > 0 and tg.server_close_fraction > 0 and lb.client_ip_preservation
    pi[COOL_ON] = nat.reuse_delay > 0
    pi[NODE_LIMIT] = NODE_PORTS_PER_TARGET
    d = tr.duration
    # with a schedule, warm-up and the stationary start run at the first segment's rate
    pf[RATE], pf[MEAN] = tr.rate_before, d.mean
    pf[SIGMA], pf[ALPHA] = d.sigma, d.alpha
    pf[MU] = math.log(d.mean) - d.sigma * d.sigma / 2.0
    pf[XM] = d.mean * (d.alpha - 1.0) / d.alpha
    pf[DNS_TTL], pf[TW], pf[SCF], pf[REUSE] = lb.dns_ttl, tg.time_wait, tg.server_close_fraction, \
        nat.reuse_delay
    pf[T_MEASURE], pf[T_END] = time_line(s)
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
    if tg.kernel in KERNEL_OUTCOME:
        pi[OUTCOME] = KERNEL_OUTCOME[tg.kernel]
    xa = extra_array(s, float(pf[T_MEASURE]))
    return pi, pf, zs, zc, w, xa
