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
    ESTIMATE, NBATCH, TW_ON, COOL_ON, NODE_LIMIT, NEED_CLIENT = range(20)
N_PI = 20
# float parameters (pf)
RATE, MEAN, MU, SIGMA, XM, ALPHA, DNS_TTL, TW, SCF, REUSE, T_MEASURE, T_END = range(12)
N_PF = 12

ALLOC_CODES = {"random": 0, "sequential": 1, "linux": 2, "eim": 3}
DIST_CODES = {"exponential": 0, "fixed": 1, "lognormal": 2, "pareto": 3}
OUTCOME_CODES = {"reset-existing": 0, "fail-new": 1, "count": 2}
NBATCHES = 32          # batches for the conditional estimate's standard error
LINUX_EPOCH_S = 10.0   # Linux redraws the per-destination port offset every 10 s


def estimate_defined(s: Scenario) -> bool:
    """The conditional estimate of DESIGN §3 exists for `random`, `sequential` and `eim`."""
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


def build(s: Scenario, estimate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray]:
    """(pi, pf, zone_start, zone_count, cumulative weights)."""
    lb, nat, tr, tg = s.load_balancer, s.nat, s.traffic, s.target
    pi = np.zeros(N_PI, np.int64)
    pf = np.zeros(N_PF, np.float64)
    pi[K], pi[N], pi[B], pi[P] = nat.ips, lb.nodes, lb.total_targets, nat.ports
    pi[LIMIT] = nat.capacity
    pi[CLIENTS] = tr.clients
    pi[IP_PER_CLIENT] = nat.ip_choice == "per-client" and nat.ips > 1
    pi[STICKY] = lb.node_choice == "sticky" and lb.nodes > 1
    pi[NEED_CLIENT] = pi[IP_PER_CLIENT] or pi[STICKY]
    pi[ALLOC] = ALLOC_CODES[nat.allocator]
    pi[DIST] = DIST_CODES[tr.duration.dist]
    pi[OUTCOME] = OUTCOME_CODES[tg.on_collision]
    pi[CROSS] = lb.cross_zone
    pi[CIP] = lb.client_ip_preservation
    uniform = not lb.node_weights or len(set(lb.node_weights)) == 1
    pi[WEIGHTED] = not uniform
    pi[ESTIMATE] = estimate and estimate_defined(s)
    pi[NBATCH] = NBATCHES
    pi[TW_ON] = tg.time_wait > 0 and tg.server_close_fraction > 0 and lb.client_ip_preservation
    pi[COOL_ON] = nat.reuse_delay > 0
    pi[NODE_LIMIT] = NODE_PORTS_PER_TARGET
    d = tr.duration
    pf[RATE], pf[MEAN] = tr.rate, d.mean
    pf[SIGMA], pf[ALPHA] = d.sigma, d.alpha
    pf[MU] = math.log(d.mean) - d.sigma * d.sigma / 2.0
    pf[XM] = d.mean * (d.alpha - 1.0) / d.alpha
    pf[DNS_TTL], pf[TW], pf[SCF], pf[REUSE] = lb.dns_ttl, tg.time_wait, tg.server_close_fraction, \
        nat.reuse_delay
    pf[T_MEASURE], pf[T_END] = time_line(s)
    zc = np.array(lb.zone_targets, np.int64)
    zs = np.concatenate([[0], np.cumsum(zc)[:-1]]).astype(np.int64)
    w = np.cumsum(np.array(lb.weights, np.float64))
    w[-1] = np.inf          # the last node takes whatever rounding leaves
    return pi, pf, zs, zc, w
