"""The reference engine: the lazy algorithm of docs/engine.md written out plainly on flat arrays.

This file is the specification. `_core_numba.py` compiles these very functions with numba (its own
draws and scans substituted: the same words, the same counts), and `_core.pyx` follows them step
for step in Cython, so one (scenario, seed) gives identical counts on all three backends.

Random draws (docs/model.md, randomness), all from raw 64-bit PCG64 words w:
  uniform       (w >> 11) * 2**-53                        in [0, 1)
  randint(n)    Lemire multiply-shift on w >> 32, exact rejection; n <= 1 draws no word
  exponential   -log(((w >> 11) + 1) * 2**-53)           in (0, 37]
  normal        sqrt(2 E) cos(2 pi u), E exponential then u uniform (Box-Muller)

One arrival, in order: client (only if a per-client choice needs it), NAT IP, node, port (tries),
target, lifetime, server-close flag. An allocation failure stops after the port step.

Lazy slots. Slot s = (ip * P + port) * N + node keeps its last holder's end time and target. A
connection is live at t iff end > t; its port is free towards the node iff end + reuse <= t. No end
is an event: an arrival reads the slots it needs. A connect that retries (delay-new) holds its slot
with end = +inf and no target; a refused or reset connection's slot gets end = t (its port cools
for the reuse delay). What still waits on time keeps a queue, only while the scenario asks for it:
the SYN retries (a heap by (time, serial)); the `full` estimate keeps running counts late, a
window of time at a time (a log of changes now, segments of changes later).
TIME_WAIT is exact without a queue: each (ip, port, target) keeps the record of its latest holder
(expiry = end + time_wait when the server closed first), overwritten when a new holder takes the
4-tuple and removed by a reset; expired records are dead and their entries reused.

Ports (random): rejection over all ports (exactly uniform over the free ones) while the pool is
not crowded; after every P failed tries the pool's free ports are counted and, below a quarter
free, it draws from a "horizon list": every port whose free time is
before a horizon th, drawn uniformly and accepted iff free now (exactly uniform: the list holds
every port that can be free before th). A port whose free time moves is put in or taken out at
once (`hl_sync`). eim does the same per NAT ip, a port's free time being the latest of its row.
After KMAX failed tries the free ports are counted and one is taken by rank (exact, and it finds
"none").
"""
from __future__ import annotations

import math

import numpy as np

from . import params as C
from . import state as T

INF = math.inf
KMAX = 128             # rejection tries before the exact count
TWO53 = 2.0 ** -53
M64 = (1 << 64) - 1
M128 = (1 << 128) - 1
PCG_MULT = 0x2360ED051FC65DA4_4385DF649FCCF645


# == Backend primitives ===========================================================================
# The draws and the long scans. `_core_numba.py` substitutes its own versions of exactly these
# names (the same words and results on uint64 registers and plain loops); everything below the
# next banner is shared.

def rng_load(gst):
    """The generator as a value: here the (state, increment) of the bit generator."""
    return (gst[0], gst[1])


def rng_store(gst, g):
    gst[0] = g[0]


def rng_next(g):
    s = (g[0] * PCG_MULT + g[1]) & M128
    hi, lo = s >> 64, s & M64
    x, rot = hi ^ lo, hi >> 58
    return (s, g[1]), ((x >> rot) | (x << ((64 - rot) & 63))) & M64


def rng_uniform(g):
    g, w = rng_next(g)
    return g, (w >> 11) * TWO53


def rng_exponential(g):
    g, w = rng_next(g)
    return g, -math.log(((w >> 11) + 1) * TWO53)


def rng_randint(g, n):
    """Uniform in [0, n), n < 2**32: Lemire's method on the high 32 bits, with exact rejection."""
    if n <= 1:
        return g, 0
    g, w = rng_next(g)
    m = (w >> 32) * n
    if (m & 0xFFFFFFFF) < n:
        threshold = ((1 << 32) - n) % n
        while (m & 0xFFFFFFFF) < threshold:
            g, w = rng_next(g)
            m = (w >> 32) * n
    return g, m >> 32


def rng_normal(g):
    g, e = rng_exponential(g)
    g, u = rng_uniform(g)
    return g, math.sqrt(2.0 * e) * math.cos(2.0 * math.pi * u)


def scan_held(slot_end, ip, P, N, t, dest):
    """Recount: each destination of NAT ip gets the ports it holds at t (end > t: live or
    retrying) as its bound."""
    rows = np.asarray(slot_end[ip * P * N:(ip + 1) * P * N]).reshape(P, N)
    counts = np.count_nonzero(rows > t, axis=0)
    for m in range(N):
        dest[(ip * N + m) * T.DW + T.D_UB] = int(counts[m])


def scan_peak(slot_end, K, P, N, t):
    """The most ports one (ip, node) holds at t."""
    rows = np.asarray(slot_end[:K * P * N]).reshape(K, P, N)
    return int(np.count_nonzero(rows > t, axis=1).max())


def scan_free_time(slot_end, pool_is_ip, ip, j, P, N, reuse):
    """The free time (end + reuse) of each port of a pool: a node's column, or for an eim pool
    (pool_is_ip) the latest end of each row."""
    rows = np.asarray(slot_end[ip * P * N:(ip + 1) * P * N]).reshape(P, N)
    ends = rows.max(axis=1) if pool_is_ip else rows[:, j]
    return ends + reuse


def scan_count_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t):
    return int(np.count_nonzero(scan_free_time(slot_end, pool_is_ip, ip, j, P, N, reuse) <= t))


def scan_nth_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t, rank):
    """The rank-th free port (port order)."""
    free = np.flatnonzero(scan_free_time(slot_end, pool_is_ip, ip, j, P, N, reuse) <= t)
    return int(free[rank])


def scan_list(slot_end, pool_is_ip, ip, j, P, N, reuse, th, hl_list, hl_pos, base):
    """Put every port whose free time is <= th in the pool's horizon list, in port order; return
    the list's length."""
    ft = scan_free_time(slot_end, pool_is_ip, ip, j, P, N, reuse)
    inlist = ft <= th
    ports = np.flatnonzero(inlist)
    n = ports.size
    hl_list[base:base + n] = ports
    pos = np.full(P, -1, np.int64)
    pos[ports] = np.arange(n)
    hl_pos[base:base + P] = pos
    return n


def scan_node_targets(slot_end, slot_tgt, K, P, N, B, t, ntl):
    """Recount the node-target counters (client IP preservation off): ntl[(node * B + target) %
    size] = live connections of the pairs that share the counter."""
    ends = np.asarray(slot_end[:K * P * N]).reshape(K * P, N)
    tgts = np.asarray(slot_tgt[:K * P * N]).reshape(K * P, N)
    size = len(ntl)
    ntl[:] = 0
    for m in range(N):
        live = ends[:, m] > t
        keys = (m * B + tgts[live, m].astype(np.int64)) % size
        np.add.at(ntl, keys, 1)


def scan_pair(slot_end, slot_tgt, K, P, N, j, b, t):
    """Live connections through node j to target b (client IP preservation off)."""
    ends = np.asarray(slot_end[:K * P * N]).reshape(K * P, N)[:, j]
    tgts = np.asarray(slot_tgt[:K * P * N]).reshape(K * P, N)[:, j]
    return int(np.count_nonzero((ends > t) & (tgts == b)))


# == Shared kernels ===============================================================================
# Everything from here on is compiled by numba as it stands (`_core_numba.py`): flat arrays,
# numbers, no Python objects.

def next_arrival_after(t, e, rate, xa, sched_off, ms):
    """The next arrival after t for one exponential draw e: invert the cumulative rate.

    Without a schedule: t + e / rate. With one, start in the segment holding t (segment 0 also
    covers everything before the window) and spend e: if t + e / rate stays inside the segment that
    is the arrival, else e loses (end - t) * rate and the walk moves on."""
    if ms == 0:
        return t + e / rate
    lo = 0
    hi = ms                                # the last i with start[i] <= t (0 if none)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xa[sched_off + mid] <= t:
            lo = mid
        else:
            hi = mid
    i = lo
    while True:
        r = xa[sched_off + ms + i]
        if i + 1 >= ms:
            return t + e / r
        seg_end = xa[sched_off + i + 1]
        t_next = t + e / r
        if t_next < seg_end:
            return t_next
        e -= (seg_end - t) * r
        if e < 0.0:
            e = 0.0
        t = seg_end
        i += 1


def draw_lifetime(g, dist, pf, xa, n_emp):
    if dist == 0:
        g, e = rng_exponential(g)
        return g, pf[C.MEAN] * e
    if dist == 1:
        return g, pf[C.MEAN]
    if dist == 2:
        g, z = rng_normal(g)
        return g, math.exp(pf[C.MU] + pf[C.SIGMA] * z)
    if dist == 4:                          # empirical: the file's lifetimes, with replacement
        g, i = rng_randint(g, n_emp)
        return g, xa[i]
    g, e = rng_exponential(g)              # Pareto (type I)
    return g, pf[C.XM] * math.exp(e / pf[C.ALPHA])


def draw_biased_lifetime(g, dist, pf, xa, n_emp):
    """A draw from the length-biased law x f(x) / E[L] (the stationary start)."""
    if dist == 0:                          # Gamma(2, D)
        g, e1 = rng_exponential(g)
        g, e2 = rng_exponential(g)
        return g, pf[C.MEAN] * (e1 + e2)
    if dist == 1:
        return g, pf[C.MEAN]
    if dist == 2:                          # lognormal with mu + sigma^2
        g, z = rng_normal(g)
        return g, math.exp(pf[C.MU] + pf[C.SIGMA] * pf[C.SIGMA] + pf[C.SIGMA] * z)
    if dist == 4:                          # index i with probability values[i] / total
        g, u = rng_uniform(g)
        x = u * xa[2 * n_emp - 1]
        lo = 0
        hi = n_emp - 1                     # the first i with cum[i] > x (the last if none)
        while lo < hi:
            mid = (lo + hi) // 2
            if xa[n_emp + mid] > x:
                hi = mid
            else:
                lo = mid + 1
        return g, xa[lo]
    g, e = rng_exponential(g)              # Pareto(xm, alpha - 1)
    return g, pf[C.XM] * math.exp(e / (pf[C.ALPHA] - 1.0))


def stationary_count(pi, pf, gst, acc, budget):
    """The Poisson(rate * mean) number of connections live at t = 0, by summing exponentials;
    acc = [count, sum] carries the sum between calls. Returns 1 when the count is final."""
    g = rng_load(gst)
    mean_live = pf[C.RATE] * pf[C.MEAN]
    n = int(acc[0])
    s = acc[1]
    done = 0
    for _ in range(budget):
        if n == 0 and s == 0.0:
            g, s = rng_exponential(g)
        if s >= mean_live:
            done = 1
            break
        n += 1
        g, e = rng_exponential(g)
        s += e
    acc[0] = n
    acc[1] = s
    rng_store(gst, g)
    return done


def stationary_fill(pi, pf, xa, gst, life, age, i0, i1):
    """(residual, age) of stationary connections i0..i1-1: a length-biased lifetime split at a
    uniform point."""
    g = rng_load(gst)
    dist = pi[C.DIST]
    n_emp = pi[C.EMP_N]
    for i in range(i0, i1):
        g, big = draw_biased_lifetime(g, dist, pf, xa, n_emp)
        g, u = rng_uniform(g)
        life[i] = u * big
        age[i] = big - u * big
    rng_store(gst, g)


# -- TIME_WAIT records: (key, expiry) in buckets of three, probing bucket to bucket ------------------
def tw_home(key, nb):
    """The home bucket of a key (an integer below 2**53): a Lehmer step modulo 2**31 - 1."""
    return ((int(key) % 2147483647) * 48271 % 2147483647) & (nb - 1)


def tw_find(tw, key, t):
    """The index (into tw) of key's live record (expiry > t), or -1. A lookup moves past a bucket
    only while its overflow mark says something homed at or before it was stored further on."""
    nb = len(tw) // T.TWB
    q = tw_home(key, nb)
    for _ in range(nb):
        b = q * T.TWB
        for i in range(3):
            if tw[b + 2 * i] == key and tw[b + 2 * i + 1] > t:
                return b + 2 * i
        if not tw[b + T.TW_OVF] > t:
            return -1
        q += 1
        if q == nb:
            q = 0
    return -1


def tw_put(tw, key, exp, t):
    """key's record := expiry exp (the caller removed any live record of key first). Returns 1
    if it took a dead entry (the caller counts inserts towards the next rehash)."""
    nb = len(tw) // T.TWB
    q0 = tw_home(key, nb)
    q = q0
    for d in range(nb):
        b = q * T.TWB
        for i in range(3):
            if not tw[b + 2 * i + 1] > t:
                tw[b + 2 * i] = key
                tw[b + 2 * i + 1] = exp
                qq = q0                    # the buckets passed point past the record
                for _ in range(d):
                    ob = qq * T.TWB + T.TW_OVF
                    if tw[ob] < exp:
                        tw[ob] = exp
                    qq += 1
                    if qq == nb:
                        qq = 0
                return 1
        q += 1
        if q == nb:
            q = 0
    return 0


def tw_rehash(old, new, t):
    """Move the live records of `old` into the empty table `new`."""
    nb = len(old) // T.TWB
    for q in range(nb):
        b = q * T.TWB
        for i in range(3):
            if old[b + 2 * i + 1] > t:
                tw_put(new, old[b + 2 * i], old[b + 2 * i + 1], t)


def tw_take(tw, si, key, close, exp, t):
    """A new holder takes key's 4-tuple at t: returns 1 if a live record was there (a TIME_WAIT
    hit when nobody holds the 4-tuple); the record becomes the new holder's (close: expiry exp) or
    goes."""
    hit = 0
    i = tw_find(tw, key, t)
    if i >= 0:
        hit = 1
        if close:
            tw[i + 1] = exp
            return hit
        tw[i + 1] = -INF
        return hit
    if close:
        si[T.TW_INS] += tw_put(tw, key, exp, t)
    return hit


def tw_drop(tw, key, t):
    """A reset ends key's latest holder with an RST: no TIME_WAIT."""
    i = tw_find(tw, key, t)
    if i >= 0:
        tw[i + 1] = -INF


# -- the retry heap: pending connects by (next retry time, serial) -----------------------------------
def heap_less(pd_at, pd_serial, a, b):
    return pd_at[a] < pd_at[b] or (pd_at[a] == pd_at[b] and pd_serial[a] < pd_serial[b])


def heap_push(heap, si, pd_at, pd_serial, x):
    i = si[T.HEAP_N]
    si[T.HEAP_N] = i + 1
    while i > 0:
        parent = (i - 1) // 2
        if not heap_less(pd_at, pd_serial, x, heap[parent]):
            break
        heap[i] = heap[parent]
        i = parent
    heap[i] = x


def heap_pop(heap, si, pd_at, pd_serial):
    top = heap[0]
    n = si[T.HEAP_N] - 1
    si[T.HEAP_N] = n
    if n > 0:
        x = heap[n]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= n:
                break
            if c + 1 < n and heap_less(pd_at, pd_serial, heap[c + 1], heap[c]):
                c += 1
            if not heap_less(pd_at, pd_serial, heap[c], x):
                break
            heap[i] = heap[c]
            i = c
        heap[i] = x
    return top


# -- the horizon lists of crowded port pools ---------------------------------------------------------
def free_time(slot_end, row, j, N, pool_is_ip, reuse):
    """When the port of `row` is free for the pool: its node's end (eim: the row's latest) plus
    the reuse delay."""
    if pool_is_ip:
        e = slot_end[row]
        for m in range(1, N):
            if slot_end[row + m] > e:
                e = slot_end[row + m]
        return e + reuse
    return slot_end[row + j] + reuse


def hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, q, P, N, row, j, p, pool_is_ip, reuse):
    """Port p's free time changed: put it in or take it out of pool q's horizon list."""
    if pool[q * T.HW + T.H_MODE] != 1:
        return
    base = q * P
    inside = hl_pos[base + p] >= 0
    should = free_time(slot_end, row, j, N, pool_is_ip, reuse) <= pool_th[q]
    if inside and not should:
        n = pool[q * T.HW + T.H_LEN] - 1
        i = hl_pos[base + p]
        last = hl_list[base + n]
        hl_list[base + i] = last
        hl_pos[base + last] = i
        hl_pos[base + p] = -1
        pool[q * T.HW + T.H_LEN] = n
    elif should and not inside:
        n = pool[q * T.HW + T.H_LEN]
        hl_list[base + n] = p
        hl_pos[base + p] = n
        pool[q * T.HW + T.H_LEN] = n + 1


def hl_check(slot_end, pool, pool_th, hl_list, hl_pos, q, ip, j, P, N, pool_is_ip, reuse, mean,
             t):
    """Count the pool's free ports; below a quarter free, list every port free before a horizon
    th at which about sqrt(free * P) more ports will have come free (held / mean lifetime of them
    per second); else rejection over all ports. Returns the work done."""
    h = q * T.HW
    f0 = scan_count_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t)
    pool[h + T.H_MISS] = 0
    if 4 * f0 > P:
        if pool[h + T.H_MODE] == 1:        # leave list mode: clear the positions
            base = q * P
            for i in range(pool[h + T.H_LEN]):
                hl_pos[base + hl_list[base + i]] = -1
        pool[h + T.H_MODE] = 0
        pool[h + T.H_LEN] = 0
        return P
    horizon = math.sqrt(f0 * P) * mean / (P - f0 + 1)
    th = t + horizon
    pool_th[q] = th
    pool[h + T.H_MODE] = 1
    pool[h + T.H_LEN] = scan_list(slot_end, pool_is_ip, ip, j, P, N, reuse, th, hl_list, hl_pos,
                                  q * P)
    return 2 * P


def allocate_pooled(g, slot_end, pool, pool_th, hl_list, hl_pos, q, ip, j, P, N, pool_is_ip,
                    reuse, mean, t, si):
    """random (pool = the destination) and eim (pool = the NAT ip): a port free for the pool,
    uniformly; -1 if none. Returns (g, port, work)."""
    h = q * T.HW
    work = 0
    if pool[h + T.H_MODE] == 0:
        if pool[h + T.H_MISS] > P:
            work += hl_check(slot_end, pool, pool_th, hl_list, hl_pos, q, ip, j, P, N, pool_is_ip,
                             reuse, mean, t)
    elif t > pool_th[q]:
        work += hl_check(slot_end, pool, pool_th, hl_list, hl_pos, q, ip, j, P, N, pool_is_ip,
                         reuse, mean, t)
    base = ip * P * N
    listed = pool[h + T.H_MODE] == 1
    n = pool[h + T.H_LEN] if listed else P
    if n == 0:
        return g, -1, work
    p = -1
    tries = 0
    while tries < KMAX:
        g, x = rng_randint(g, n)
        tries += 1
        q_port = hl_list[q * P + x] if listed else x
        row = base + q_port * N
        if pool_is_ip:
            ok = True
            for m in range(N):
                if not slot_end[row + m] + reuse <= t:
                    ok = False
        else:
            ok = slot_end[row + j] + reuse <= t
        if ok:
            p = q_port
            break
    work += tries
    si[T.TRIES] += tries
    if not listed:
        pool[h + T.H_MISS] += tries - 1
    if p < 0:                              # KMAX failed tries: count, then take one by rank
        work += P
        nf = scan_count_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t)
        if nf == 0:
            return g, -1, work
        g, r = rng_randint(g, nf)
        p = scan_nth_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t, r)
    return g, p, work


def port_free(slot_end, s, reuse, t):
    return slot_end[s] + reuse <= t


def scan_sequential(slot_end, base, j, P, N, reuse, t, start):
    """The first port at or after `start` (wrapping) free towards node j; -1 if none."""
    p = start
    for _ in range(P):
        if slot_end[base + p * N + j] + reuse <= t:
            return p
        p += 1
        if p == P:
            p = 0
    return -1


def scan_linux(slot_end, base, j, P, N, reuse, t, offset):
    """Linux's scan (RFC 6056 alg. 4): ports of the offset's even parity in steps of 2, then the
    other parity. Returns (port or -1, ports skipped before it in its parity)."""
    offset = offset - offset % 2
    while True:
        p = offset
        i = 0
        while i < P:
            if p >= P:
                p -= P
            if slot_end[base + p * N + j] + reuse <= t:
                return p, i // 2
            p += 2
            i += 2
        offset += 1
        if offset % 2 == 0 or P <= 1:
            return -1, 0


def distinct_live(slot_end, slot_tgt, row, N, j, t, lo, hi):
    """Distinct targets in [lo, hi) held live at t on `row` through nodes other than j."""
    c = 0
    for m in range(N):
        if m == j or not slot_end[row + m] > t:
            continue
        b = slot_tgt[row + m]
        if b < lo or b >= hi:
            continue
        seen = False
        for x in range(m):
            if x != j and slot_end[row + x] > t and slot_tgt[row + x] == b:
                seen = True
        if not seen:
            c += 1
    return c


def zone_of(m, cross, zs, zc, B):
    """The targets [lo, hi) node m may send to."""
    if cross:
        return 0, B
    return zs[m], zs[m] + zc[m]


# -- the `full` estimate's running counts (random allocator) -----------------------------------------
# est_sum[d], the sum over d's free ports of the distinct targets of T_d that other nodes hold live
# there, is kept as S[ip, z] - A[d] - DUP[ip, z] - T[d] (z: j's zone; 0 with cross-zone on):
#   A[d]      live holders through d = (ip, j); S[ip, z] live holders of ip through zone z's nodes:
#             S - A counts every live holder of another node once, port by port;
#   DUP, T    what that count has too many, row by row: dup_z = the live holders of zone z minus
#             their distinct targets; t_j = (distinct targets of j's zone - 1 if j is live) when
#             j's slot is taken, else 0 (that port is not free for j).
# F[d] counts d's free ports. A row with at most one slot taken adds nothing to DUP and T, so the
# common end (a row's only holder leaving) changes A, S and F alone and needs no row. A row with two
# or more slots taken adds a step function of time whose steps are its holders' ends and releases,
# all known: the arrival that makes the row so (reading it anyway) queues the steps, and one that
# changes such a row again first queues their negation.
#
# Nothing in the simulation reads these counts: only the estimate does, at each measured arrival.
# So they are kept late, a window of time at a time. What an event changes at once (the port taken,
# a holder starting or reset, the estimate's query itself) goes to a log in time order; what it
# changes later (an end, a release, a step) is queued in the segment of its window (NC windows of
# width WC, a ring of fixed-size segments filled in order). When time leaves a window, its queued
# events are sorted (by sub-bucket, then a pass of insertion) and merged with its log: each logged
# query sees every change of a time <= its own and of an earlier record. Every update is a count,
# so changes of one time may go in any order; only the queries' places matter.
#
# Codes: (offset << 26) | (x << 3) | kind, `offset` the counter's place in `est` (A for an end or
# an arrival, F for a release, T or DUP for a step); x, for an end, the place of its S after sbase;
# for a step, its delta + 512; for an arrival, (S's place << 4) | what it did (ARR_*).
EV_END, EV_UNEND, EV_REL, EV_UNREL, EV_T, EV_DUP, EV_ARR = range(7)
ARR_QUERY, ARR_TAKE, ARR_LIVE = 1, 2, 4


def est_code(offset, x, kind):
    return (offset << 26) | (x << 3) | kind


def end_code(ip, m, N, Z, kind):
    """An end's (EV_END, EV_UNEND) or release's (EV_REL, EV_UNREL) code for the slot of (ip, m)."""
    d = 3 * (ip * N + m)
    if kind >= EV_REL:
        return est_code(d + 1, 0, kind)
    return est_code(d, 2 * (ip * Z + m % Z), kind)


def ev_log(EVQ, si, t, code):
    """A change at t, after every one logged before it."""
    ev_log_ = EVQ[2]
    n = si[T.EV_LOG]
    ev_log_[2 * n] = t
    ev_log_[2 * n + 1] = code
    si[T.EV_LOG] = n + 1
    return n


def ev_push(EVQ, si, t, x, code, cinv, lim):
    """A change due at x, queued in its window's segment (one due at once, x <= t, is logged).
    A segment filled past `lim` asks for room before the next event (T.EV_FULL)."""
    if x <= t:
        ev_log(EVQ, si, t, code)
        return
    ev_q, ev_n = EVQ[0], EVQ[1]
    c = int(min(x * cinv, 4e18))
    k = c & (T.EV_NC - 1)
    n = ev_n[k]
    cap = len(ev_q) // (2 * T.EV_NC)
    i = 2 * (k * cap + n)
    ev_q[i] = x
    ev_q[i + 1] = code
    ev_n[k] = n + 1
    if n + 1 > lim:
        si[T.EV_FULL] = 1


def ev_apply(code, est, sbase, reuse):
    """A queued change: its counter updates. `est` holds (A, F, T) per destination d at 3d, then
    (S, DUP) per (ip, zone) at sbase + 2 (ip Z + z)."""
    kind = code & 7
    off = code >> 26
    if kind <= EV_UNEND:                   # a holder's end (and, with no reuse delay, release)
        sign = 1 if kind == EV_UNEND else -1
        est[off] += sign
        est[sbase + ((code >> 3) & 0x7FFFFF)] += sign
        if reuse == 0.0:
            est[off + 1] -= sign
    elif kind <= EV_UNREL:                 # a port's release after the reuse delay
        est[off] += 1 if kind == EV_REL else -1
    else:                                  # a step of T or DUP
        est[off] += ((code >> 3) & 1023) - 512


def ev_record(code, t, est, sbase, reuse, N, B, cross, zc, batches, sf, pf, nbatch):
    """A logged change at t: an arrival's query (its estimate, added to the batch of t) and what
    it did, or a queued kind's updates."""
    if code & 7 != EV_ARR:
        ev_apply(code, est, sbase, reuse)
        return
    d = code >> 26
    x = (code >> 3) & 0x7FFFFF
    s = sbase + (x >> 4)
    if x & ARR_QUERY:
        f = est[d + 1]
        e = 0.0
        if f > 0:
            nt = B if cross else zc[(d // 3) % N]
            e = (est[s] - est[d] - est[s + 1] - est[d + 2]) / (f * nt)
        add_to_batch(batches, sf, nbatch, pf, t, e)
    if x & ARR_TAKE:
        est[d + 1] -= 1
    if x & ARR_LIVE:
        est[d] += 1
        est[s] += 1


def ev_window_sort(EVQ, w, upto, cinv, nsub):
    """Take from window w's segment what is due by `upto` (every entry if upto is +inf) into
    ev_sort, in time order; keep the rest. Returns how many."""
    ev_q, ev_n, ev_log_, ev_sort, ev_cnt = EVQ
    cap = len(ev_q) // (2 * T.EV_NC)
    k = w & (T.EV_NC - 1)
    n = ev_n[k]
    i0 = 2 * k * cap
    for q in range(nsub + 1):
        ev_cnt[q] = 0
    for i in range(n):                     # how many per sub-bucket of the window
        x = ev_q[i0 + 2 * i]
        f = min(x * cinv, 4e18)
        if int(f) <= w and x <= upto:
            q = min(max(int((f - w) * nsub), 0), nsub - 1)
            ev_cnt[q + 1] += 1
    for q in range(nsub):
        ev_cnt[q + 1] += ev_cnt[q]
    m = ev_cnt[nsub]
    kept = 0
    for i in range(n):                     # each to its sub-bucket's place; a later turn's stays
        x = ev_q[i0 + 2 * i]
        f = min(x * cinv, 4e18)
        if int(f) <= w and x <= upto:
            q = min(max(int((f - w) * nsub), 0), nsub - 1)
            at = ev_cnt[q]
            ev_cnt[q] = at + 1
            ev_sort[2 * at] = x
            ev_sort[2 * at + 1] = ev_q[i0 + 2 * i + 1]
        else:
            ev_q[i0 + 2 * kept] = x
            ev_q[i0 + 2 * kept + 1] = ev_q[i0 + 2 * i + 1]
            kept += 1
    ev_n[k] = kept
    for i in range(1, m):                  # sub-buckets hold one or two: nearly in order
        x = ev_sort[2 * i]
        c = ev_sort[2 * i + 1]
        j = i
        while j > 0 and ev_sort[2 * j - 2] > x:
            ev_sort[2 * j] = ev_sort[2 * j - 2]
            ev_sort[2 * j + 1] = ev_sort[2 * j - 1]
            j -= 1
        ev_sort[2 * j] = x
        ev_sort[2 * j + 1] = c
    return m


def ev_window(EVQ, si, est, w, upto, cinv, nsub, sbase, reuse, N, B, cross, zc, batches, sf, pf,
              nbatch):
    """Settle window w up to `upto`: its queued changes due by then, merged in time order with the
    log (all of it: every record is of window w and <= upto). Returns the work done."""
    ev_log_, ev_sort = EVQ[2], EVQ[3]
    nl = si[T.EV_LOG]
    m = ev_window_sort(EVQ, w, upto, cinv, nsub)
    i = 0
    for r in range(nl):
        tr = ev_log_[2 * r]
        while i < m and ev_sort[2 * i] <= tr:
            ev_apply(int(ev_sort[2 * i + 1]), est, sbase, reuse)
            i += 1
        ev_record(int(ev_log_[2 * r + 1]), tr, est, sbase, reuse, N, B, cross, zc, batches, sf,
                  pf, nbatch)
    while i < m:
        ev_apply(int(ev_sort[2 * i + 1]), est, sbase, reuse)
        i += 1
    si[T.EV_LOG] = 0
    return nl + m + 1


def ev_catch_up(EVQ, si, est, t, cinv, nsub, sbase, reuse, N, B, cross, zc, batches, sf, pf,
                nbatch):
    """Before an event at t: settle every window that t has left. Returns the work done."""
    ct = int(min(t * cinv, 4e18))
    cur = si[T.EV_CUR]
    if ct <= cur:
        return 0
    work = ev_window(EVQ, si, est, cur, INF, cinv, nsub, sbase, reuse, N, B, cross, zc, batches,
                     sf, pf, nbatch)
    cur += 1
    if ct - cur > T.EV_NC:                 # a quiet stretch of a whole turn: all that is queued
        ev_q, ev_n = EVQ[0], EVQ[1]        # before ct is due, and no query waits in between
        cap = len(ev_q) // (2 * T.EV_NC)
        for k in range(T.EV_NC):
            kept = 0
            for i in range(ev_n[k]):
                x = ev_q[2 * (k * cap + i)]
                if int(min(x * cinv, 4e18)) < ct:
                    ev_apply(int(ev_q[2 * (k * cap + i) + 1]), est, sbase, reuse)
                else:
                    ev_q[2 * (k * cap + kept)] = x
                    ev_q[2 * (k * cap + kept) + 1] = ev_q[2 * (k * cap + i) + 1]
                    kept += 1
            work += ev_n[k]
            ev_n[k] = kept
        cur = ct
    while cur < ct:
        work += ev_window(EVQ, si, est, cur, INF, cinv, nsub, sbase, reuse, N, B, cross, zc,
                          batches, sf, pf, nbatch)
        cur += 1
    si[T.EV_CUR] = ct
    return work


def est_settle(S, pi, pf, zs, zc, t):
    """Bring the counts and the estimate's batches up to t (every logged change, every queued one
    due by then): at the end of a run, before reading them, and when the log is full."""
    (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl, tw,
     pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack, heap,
     est, est_f, est_i, ev_q, ev_n, ev_log_, ev_sort, ev_cnt, batches, dhist, place_life,
     place_order) = S
    EVQ = (ev_q, ev_n, ev_log_, ev_sort, ev_cnt)
    if not pi[C.SUMS]:
        return 0
    cinv = pf[C.EV_CINV]
    nsub = pi[C.EV_NSUB]
    sbase = 3 * pi[C.K] * pi[C.N]
    work = ev_catch_up(EVQ, si, est, t, cinv, nsub, sbase, pf[C.REUSE], pi[C.N], pi[C.B],
                       pi[C.CROSS], zc, batches, sf, pf, pi[C.NBATCH])
    work += ev_window(EVQ, si, est, si[T.EV_CUR], t, cinv, nsub, sbase, pf[C.REUSE], pi[C.N],
                      pi[C.B], pi[C.CROSS], zc, batches, sf, pf, pi[C.NBATCH])
    return work


def row_contrib(ef, ei, o, cnt, N, Z, reuse, tau, c, co):
    """A row's contribution at tau, from its taken slots (occupant i < cnt: end ef[o + i], target
    ei[o + i], node ei[2N + o + i]; o = 0 for the contents before a change, N after): t of each
    occupant into c[co + i], and the dup of its zone into c[co + N + i] if it is the first
    occupant of that zone (0 otherwise). A node without a taken slot has t = 0."""
    if Z == 1:                             # cross-zone on: one zone
        live = 0
        distinct = 0
        for i in range(cnt):
            if ef[o + i] > tau and ei[o + i] >= 0:
                live += 1
                first = 1
                for x in range(i):
                    if ef[o + x] > tau and ei[o + x] == ei[o + i]:
                        first = 0
                distinct += first
        for i in range(cnt):
            v = 0
            if ef[o + i] + reuse > tau:
                v = distinct
                if ef[o + i] > tau and ei[o + i] >= 0:
                    v -= 1
            c[co + i] = v
            c[co + N + i] = 0
        c[co + N] = live - distinct
        return
    for i in range(cnt):
        e = ef[o + i]
        g = ei[o + i]
        zi = ei[2 * N + o + i] % Z
        live = 0                           # live holders of i's zone, and their distinct targets
        distinct = 0
        rep = 1
        for k in range(cnt):
            if ei[2 * N + o + k] % Z != zi:
                continue
            if k < i:
                rep = 0
            if ef[o + k] > tau and ei[o + k] >= 0:
                live += 1
                first = 1
                for x in range(k):
                    if ef[o + x] > tau and ei[o + x] == ei[o + k]:
                        first = 0
                distinct += first
        v = 0
        if e + reuse > tau:
            v = distinct
            if e > tau and g >= 0:
                v -= 1
        c[co + i] = v
        c[co + N + i] = live - distinct if rep else 0


def row_schedule(EVQ, si, ef, ei, o, cnt, ip, N, Z, sbase, reuse, t, sign, c, co, w, wo, cinv,
                 lim):
    """Queue the steps after t of a row's contribution (occupants as in `row_contrib`; c[co:] its
    value at t, w[wo:] scratch), times sign (-1: take back the steps queued for contents the row
    no longer has). The steps are its holders' ends and its slots' releases."""
    nb = 0
    bo = 2 * N
    for i in range(cnt):
        x = ef[o + i]
        if ei[o + i] >= 0 and t < x < INF:
            ef[bo + nb] = x
            nb += 1
        x = ef[o + i] + reuse
        if reuse > 0.0 and t < x < INF:
            ef[bo + nb] = x
            nb += 1
    for i in range(1, nb):                 # in time order (insertion sort: a handful)
        x = ef[bo + i]
        k = i
        while k > 0 and ef[bo + k - 1] > x:
            ef[bo + k] = ef[bo + k - 1]
            k -= 1
        ef[bo + k] = x
    last = t
    for b in range(nb):
        x = ef[bo + b]
        if x == last:
            continue
        last = x
        row_contrib(ef, ei, o, cnt, N, Z, reuse, x, w, wo)
        for i in range(cnt):
            m = ei[2 * N + o + i]
            dt = w[wo + i] - c[co + i]
            if dt != 0:
                ev_push(EVQ, si, t, x, est_code(3 * (ip * N + m) + 2, sign * dt + 512, EV_T),
                        cinv, lim)
                c[co + i] = w[wo + i]
            dd = w[wo + N + i] - c[co + N + i]
            if dd != 0:
                ev_push(EVQ, si, t, x, est_code(sbase + 2 * (ip * Z + m % Z) + 1, sign * dd + 512,
                                                EV_DUP), cinv, lim)
                c[co + N + i] = w[wo + N + i]


def row_list(slot_end, slot_tgt, row, N, reuse, t, ef, ei, o):
    """The row's slots taken at t (end + reuse > t), listed at ef/ei[o:] (see `row_contrib`);
    returns how many."""
    cnt = 0
    for m in range(N):
        if slot_end[row + m] + reuse > t:
            ef[o + cnt] = slot_end[row + m]
            ei[o + cnt] = slot_tgt[row + m]
            ei[2 * N + o + cnt] = m
            cnt += 1
    return cnt


def row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t, before, scf, sci,
                cinv, lim):
    """The row's slots changed at t (an arrival or a retry), its taken slots before listed at
    scf/sci[0:] (`before` of them): take back its old steps, queue its new ones, and change DUP and
    T by the difference now (logged). A row with one slot taken contributes nothing."""
    after = row_list(slot_end, slot_tgt, row, N, reuse, t, scf, sci, N)
    co = 4 * N
    for side in range(2):
        cnt = before if side == 0 else after
        if cnt < 2:
            continue
        o = side * N
        sign = 1 if side else -1
        row_contrib(scf, sci, o, cnt, N, Z, reuse, t, sci, co)
        for i in range(cnt):
            m = sci[2 * N + o + i]
            if sci[co + i] != 0:
                ev_log(EVQ, si, t, est_code(3 * (ip * N + m) + 2, sign * sci[co + i] + 512, EV_T))
            if sci[co + N + i] != 0:
                ev_log(EVQ, si, t, est_code(sbase + 2 * (ip * Z + m % Z) + 1,
                                            sign * sci[co + N + i] + 512, EV_DUP))
        row_schedule(EVQ, si, scf, sci, o, cnt, ip, N, Z, sbase, reuse, t, sign, sci, co, sci,
                     6 * N, cinv, lim)


def est_events_max(N):
    """The most changes one arrival or retry can log or queue: its arrival, per victim four, two
    for a new holder, and two rows' contributions now and at up to 2N steps, of 2N counts each."""
    return 4 * N + 4 + 8 * N * N + 4 * N


def est_live(EVQ, si, ip, j, N, Z, t, end, reuse, cinv, lim):
    """A holder starts on (ip, j) at t until `end`: its end (and release) queued."""
    ev_push(EVQ, si, t, end, end_code(ip, j, N, Z, EV_END), cinv, lim)
    if reuse > 0.0:
        ev_push(EVQ, si, t, end + reuse, end_code(ip, j, N, Z, EV_REL), cinv, lim)


def est_release_at(EVQ, si, ip, j, N, t, reuse, cinv, lim):
    """(ip, j)'s slot stops holding at t without a live holder ending (a refused or failed
    connect): its port is free now, or after the reuse delay."""
    ev_push(EVQ, si, t, t + reuse, end_code(ip, j, N, 1, EV_REL), cinv, lim)


def est_reset(EVQ, si, ip, m, N, Z, t, old_end, reuse, cinv, lim):
    """The live holder on (ip, m), due to end at old_end, is reset at t: it ends now; its queued
    end (and release) are taken back by changes of the same times."""
    ev_log(EVQ, si, t, end_code(ip, m, N, Z, EV_END))
    ev_push(EVQ, si, t, old_end, end_code(ip, m, N, Z, EV_UNEND), cinv, lim)
    if reuse > 0.0:
        ev_push(EVQ, si, t, old_end + reuse, end_code(ip, m, N, Z, EV_UNREL), cinv, lim)
        ev_push(EVQ, si, t, t + reuse, end_code(ip, m, N, Z, EV_REL), cinv, lim)


def estimate_full(slot_end, slot_tgt, dest, alloc, ip, j, d, N, P, t, reuse, lo, hi):
    """P(this arrival collides | the state), before its port is drawn (docs/model.md), for the
    allocators that scan (random ports have running counts: `ev_record`)."""
    nt = hi - lo
    base = ip * P * N
    if alloc == 3:
        return 0.0
    if alloc == 1:
        cursor = dest[d * T.DW + T.D_CURSOR]
        if cursor >= 0:
            p = scan_sequential(slot_end, base, j, P, N, reuse, t, cursor)
            if p < 0:
                return 0.0
            return distinct_live(slot_end, slot_tgt, base + p * N, N, j, t, lo, hi) / nt
        acc = 0                            # the cursor is not drawn yet: every port alike
        for p in range(P):
            acc += distinct_live(slot_end, slot_tgt, base + p * N, N, j, t, lo, hi)
        return acc / (P * nt)
    # linux: the port its scan will take; at a new epoch the offset is redrawn: average over it
    pert = dest[d * T.DW + T.D_LIN_PERT]
    if math.floor(t / C.LINUX_EPOCH_S) == dest[d * T.DW + T.D_LIN_EPOCH]:
        p, _ = scan_linux(slot_end, base, j, P, N, reuse, t,
                          (pert + dest[d * T.DW + T.D_LIN_OFF]) % P)
        if p < 0:
            return 0.0
        return distinct_live(slot_end, slot_tgt, base + p * N, N, j, t, lo, hi) / nt
    acc = 0
    last_start = -1
    last = 0
    for o in range(P):
        start = (pert + o) % P
        start -= start % 2
        if start != last_start:
            p, _ = scan_linux(slot_end, base, j, P, N, reuse, t, start)
            last = 0 if p < 0 else distinct_live(slot_end, slot_tgt, base + p * N, N, j, t, lo, hi)
            last_start = start
        acc += last
    return acc / (P * nt)


def add_to_batch(batches, sf, nb, pf, t, e):
    """The estimate's term e goes to the batch of the window holding t (for its standard error).
    The batches cover the window reached so far: when t passes the last one, pairs merge and the
    width doubles (at most up to horizon / nb), so a run cut short still has 16 to 32 batches."""
    bi = int((t - pf[C.T_MEASURE]) * sf[T.BSCALE])
    while bi >= nb:
        if sf[T.BSCALE] <= pf[C.BATCH_SCALE]:
            bi = nb - 1                    # the last batch of a full window (rounding at its end)
            break
        for i in range(nb // 2):
            batches[i] = batches[2 * i] + batches[2 * i + 1]
        for i in range(nb // 2, nb):
            batches[i] = 0.0
        sf[T.BSCALE] = sf[T.BSCALE] * 0.5
        bi = int((t - pf[C.T_MEASURE]) * sf[T.BSCALE])
    batches[max(bi, 0)] += e


def arrival(g, S, pi, pf, zs, zc, wcum, xa, t, given_life, measure, placing):
    """One new connection at t (docs/model.md, one arrival and its outcomes). Returns (g, work)."""
    (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl, tw,
     pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack, heap,
     est, est_f, est_i, ev_q, ev_n, ev_log_, ev_sort, ev_cnt, batches, dhist, place_life,
     place_order) = S
    EVQ = (ev_q, ev_n, ev_log_, ev_sort, ev_cnt)
    K = pi[C.K]
    N = pi[C.N]
    B = pi[C.B]
    P = pi[C.P]
    alloc = pi[C.ALLOC]
    cross = pi[C.CROSS]
    reuse = pf[C.REUSE]
    kept = pi[C.EST]
    sums = pi[C.SUMS]
    Z = pi[C.ZONES]
    sbase = 3 * K * N
    cinv = pf[C.EV_CINV]
    lim = len(ev_q) // (2 * T.EV_NC) - est_events_max(N)
    work = 1
    if measure:
        si[T.CONN] += 1
    # 1-2. client, NAT IP and node
    client = 0
    if pi[C.NEED_CLIENT]:
        g, client = rng_randint(g, pi[C.CLIENTS])
    if pi[C.IP_PER_CLIENT]:
        ip = client % K
    else:
        g, ip = rng_randint(g, K)
    stale = True
    if pi[C.STICKY]:
        stale = t >= cl_exp[client]
    if stale:
        if pi[C.WEIGHTED]:
            g, u = rng_uniform(g)
            j = 0
            while u >= wcum[j]:
                j += 1
        else:
            g, j = rng_randint(g, N)
        if pi[C.STICKY]:
            cl_node[client] = j
            cl_exp[client] = t + pf[C.DNS_TTL]
    else:
        j = cl_node[client]
    d = ip * N + j
    lo, hi = zone_of(j, cross, zs, zc, B)
    base = ip * P * N
    # 3. port: the per-destination limit (an upper bound, recounted only when it could bind)
    if pi[C.LIMITED] and dest[d * T.DW + T.D_UB] >= pi[C.CAP]:
        scan_held(slot_end, ip, P, N, t, dest)
        work += P
        if dest[d * T.DW + T.D_UB] >= pi[C.CAP]:
            if measure:
                si[T.AFAIL] += 1
            return g, work
    arr = -1
    if sums:                               # the query, logged (and what the arrival does, below)
        arr = ev_log(EVQ, si, t, est_code(3 * d, (2 * (ip * Z + j % Z)) << 4 |
                                          (ARR_QUERY if measure else 0), EV_ARR))
    elif measure and kept == C.EST_FULL:
        e = estimate_full(slot_end, slot_tgt, dest, alloc, ip, j, d, N, P, t, reuse, lo, hi)
        add_to_batch(batches, sf, pi[C.NBATCH], pf, t, e)
    if alloc == 0 or alloc == 3:
        q = d if alloc == 0 else ip
        g, p, w = allocate_pooled(g, slot_end, pool, pool_th, hl_list, hl_pos, q, ip, j, P, N,
                                  alloc == 3, reuse, pf[C.MEAN], t, si)
        work += w
    elif alloc == 1:
        cursor = dest[d * T.DW + T.D_CURSOR]
        if cursor < 0:
            g, cursor = rng_randint(g, P)
        p = scan_sequential(slot_end, base, j, P, N, reuse, t, cursor)
        if p >= 0:
            dest[d * T.DW + T.D_CURSOR] = p + 1 if p + 1 < P else 0
        else:
            dest[d * T.DW + T.D_CURSOR] = cursor
    else:
        epoch = math.floor(t / C.LINUX_EPOCH_S)
        if epoch != dest[d * T.DW + T.D_LIN_EPOCH]:
            dest[d * T.DW + T.D_LIN_EPOCH] = epoch
            g, off = rng_randint(g, P)
            dest[d * T.DW + T.D_LIN_OFF] = off
        pert = dest[d * T.DW + T.D_LIN_PERT]
        p, skipped = scan_linux(slot_end, base, j, P, N, reuse, t,
                                (pert + dest[d * T.DW + T.D_LIN_OFF]) % P)
        if p >= 0:
            g, u = rng_randint(g, 8)
            dest[d * T.DW + T.D_LIN_PERT] = (pert + 2 * max(skipped, u) + 2) % P
    if p < 0:
        if measure:
            si[T.AFAIL] += 1
        return g, work
    row = base + p * N
    s = row + j
    dest[d * T.DW + T.D_UB] += 1
    before = 0
    if sums:                               # the port is taken; the row's contents before
        ev_log_[2 * arr + 1] += ARR_TAKE << 3
        before = row_list(slot_end, slot_tgt, row, N, reuse, t, est_f, est_i, 0)
    if measure and kept == C.EST_TARGET and pi[C.COLLIDABLE]:
        x = distinct_live(slot_end, slot_tgt, row, N, j, t, lo, hi)
        if x:                                  # adding 0.0 changes no batch
            add_to_batch(batches, sf, pi[C.NBATCH], pf, t, x / (hi - lo))
    # 4. target
    if cross:
        g, b = rng_randint(g, B)
    else:
        g, b = rng_randint(g, zc[j])
        b += zs[j]
    # 5. at the target: who holds (ip, p, b) through the other nodes
    holders = 0
    if pi[C.CIP]:                          # (the arrival's own slot is free: end <= t)
        for m in range(N):
            if slot_end[row + m] > t and slot_tgt[row + m] == b:
                holders += 1
    else:
        key = (j * B + b) % pi[C.NTL_SIZE]
        if ntl[key] >= pi[C.NODE_LIMIT]:
            scan_node_targets(slot_end, slot_tgt, K, P, N, B, t, ntl)
            work += K * P
            if ntl[key] >= pi[C.NODE_LIMIT] and \
                    scan_pair(slot_end, slot_tgt, K, P, N, j, b, t) >= pi[C.NODE_LIMIT]:
                if measure:                # the node has no port left: nothing is held
                    si[T.AFAIL] += 1
                return g, work
    # 6. lifetime and who closes first
    life = given_life
    if given_life < 0.0:
        g, life = draw_lifetime(g, pi[C.DIST], pf, xa, pi[C.EMP_N])
    scf = pf[C.SCF]
    close = 0
    if scf >= 1.0:
        close = 1
    elif scf > 0.0:
        g, u = rng_uniform(g)
        close = 1 if u < scf else 0
    key = (base // N + p) * B + b         # the 4-tuple (ip, p, b), for TIME_WAIT
    if holders > 0:
        if measure:
            si[T.COLL] += 1
            si[T.PAIRS] += holders
            if si[T.FIRST_SEEN] == 0:
                si[T.FIRST_SEEN] = 1
                sf[T.FIRST] = t - pf[C.T_MEASURE]
        outcome = pi[C.OUTCOME]
        if outcome <= 2 and pi[C.CA_LIMIT] > 0 and not placing:
            sec = math.floor(t)            # one challenge ACK from this second's budget, if any
            if sec != si[T.CA_SEC]:
                si[T.CA_SEC] = sec
                si[T.CA_USED] = 0
            if si[T.CA_USED] < pi[C.CA_LIMIT]:
                si[T.CA_USED] += 1
            else:
                outcome = 3                # over the limit: the SYN is silently dropped
        if outcome == 1:                   # fail-new: the new SYN gets nowhere
            if measure:
                si[T.FAILED] += 1
            slot_end[s] = t
            slot_tgt[s] = -1
            if sums:
                est_release_at(EVQ, si, ip, j, N, t, reuse, cinv, lim)
                if before >= 1:
                    row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t,
                                before, est_f, est_i, cinv, lim)
            if alloc == 0:
                hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, d, P, N, row, j, p, False,
                        reuse)
            return g, work
        if outcome == 0 or outcome == 4:   # reset-existing / pre-3.6: the older one(s) die
            for m in range(N):
                if m != j and slot_end[row + m] > t and slot_tgt[row + m] == b:
                    old_end = slot_end[row + m]
                    slot_end[row + m] = t
                    if measure:
                        si[T.RESETS] += 1
                    if sums:
                        est_reset(EVQ, si, ip, m, N, Z, t, old_end, reuse, cinv, lim)
                    if alloc == 0:
                        hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, ip * N + m, P, N, row,
                                m, p, False, reuse)
            if pi[C.TW_ON] and outcome == 4:
                tw_drop(tw, key, t)
        if outcome >= 3:                   # the new connection retries on the SYN schedule
            slot_end[s] = INF
            slot_tgt[s] = -1
            if alloc == 0:
                hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, d, P, N, row, j, p, False,
                        reuse)
            if measure:
                si[T.PENDING] += 1
            top = si[T.PD_TOP] - 1
            si[T.PD_TOP] = top
            x = pd_stack[top]
            si[T.PD_SERIAL] += 1
            pd_slot[x] = s
            pd_tgt[x] = b
            pd_retry[x] = 0
            pd_flags[x] = (1 if measure else 0) + 2 * close
            pd_serial[x] = si[T.PD_SERIAL]
            pd_t0[x] = t
            pd_life[x] = life
            pd_at[x] = t + xa[2 * pi[C.EMP_N] + 2 * pi[C.SCHED_N]]
            heap_push(heap, si, pd_at, pd_serial, x)
            if sums and before >= 1:
                row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t, before,
                            est_f, est_i, cinv, lim)
            return g, work
    # the new connection lives; it takes the 4-tuple's TIME_WAIT record
    end = t + life
    slot_end[s] = end
    slot_tgt[s] = b
    if pi[C.TW_ON]:
        hit = tw_take(tw, si, key, close, end + pf[C.TW], t)
        if measure and holders == 0:
            si[T.TWHITS] += hit
    if measure:
        si[T.EST] += 1
    if alloc == 0:
        if pool[d * T.HW + T.H_MODE] == 1:       # (hl_sync does nothing otherwise)
            hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, d, P, N, row, j, p, False, reuse)
    elif alloc == 3:
        hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, ip, P, N, row, j, p, True, reuse)
    if not pi[C.CIP]:
        ntl[(j * B + b) % pi[C.NTL_SIZE]] += 1
    if sums:
        ev_log_[2 * arr + 1] += ARR_LIVE << 3
        est_live(EVQ, si, ip, j, N, Z, t, end, reuse, cinv, lim)
        if before >= 1:
            row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t, before,
                        est_f, est_i, cinv, lim)
    return g, work


def retry(S, pi, pf, zs, zc, xa, t):
    """The retrying connect on top of the heap sends its SYN again at t: the 4-tuple is free (no
    live holder through another node) → it lives its lifetime from now; else the next retry, or a
    failed connect when the schedule is spent (docs/model-fidelity.md)."""
    (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl, tw,
     pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack, heap,
     est, est_f, est_i, ev_q, ev_n, ev_log_, ev_sort, ev_cnt, batches, dhist, place_life,
     place_order) = S
    EVQ = (ev_q, ev_n, ev_log_, ev_sort, ev_cnt)
    N = pi[C.N]
    B = pi[C.B]
    P = pi[C.P]
    reuse = pf[C.REUSE]
    x = heap_pop(heap, si, pd_at, pd_serial)
    s = pd_slot[x]
    b = pd_tgt[x]
    j = s % N
    row = s - j
    ip = s // (P * N)
    p = (row - ip * P * N) // N
    d = ip * N + j
    meas = pd_flags[x] & 1
    sums = pi[C.SUMS]
    K = pi[C.K]
    Z = pi[C.ZONES]
    sbase = 3 * K * N
    cinv = pf[C.EV_CINV]
    lim = len(ev_q) // (2 * T.EV_NC) - est_events_max(N)
    busy = False
    for m in range(N):
        if m != j and slot_end[row + m] > t and slot_tgt[row + m] == b:
            busy = True
    before = 0
    if sums and (not busy or pd_retry[x] + 1 >= pi[C.SYN_N]):   # the row will change
        before = row_list(slot_end, slot_tgt, row, N, reuse, t, est_f, est_i, 0)
    if not busy:
        end = t + pd_life[x]
        slot_end[s] = end
        slot_tgt[s] = b
        if pi[C.TW_ON]:
            hit = tw_take(tw, si, (ip * P + p) * B + b, pd_flags[x] >> 1, end + pf[C.TW], t)
            if meas:
                si[T.TWHITS] += hit
        if pi[C.ALLOC] == 0:
            hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, d, P, N, row, j, p, False, reuse)
        if sums:                           # it lives from now
            ev_log(EVQ, si, t, est_code(3 * d, (2 * (ip * Z + j % Z)) << 4 | ARR_LIVE, EV_ARR))
            est_live(EVQ, si, ip, j, N, Z, t, end, reuse, cinv, lim)
            if before >= 2:
                row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t, before,
                            est_f, est_i, cinv, lim)
        if meas:
            si[T.EST] += 1
            si[T.DELAYED] += 1
            si[T.PENDING] -= 1
            dhist[pd_retry[x]] += 1
    else:
        i = pd_retry[x] + 1
        if i < pi[C.SYN_N]:
            pd_retry[x] = i
            pd_at[x] = pd_t0[x] + xa[2 * pi[C.EMP_N] + 2 * pi[C.SCHED_N] + i]
            heap_push(heap, si, pd_at, pd_serial, x)
            return
        slot_end[s] = t                    # the schedule is spent: the connect fails
        if pi[C.ALLOC] == 0:
            hl_sync(slot_end, pool, pool_th, hl_list, hl_pos, d, P, N, row, j, p, False, reuse)
        if sums:
            est_release_at(EVQ, si, ip, j, N, t, reuse, cinv, lim)
            if before >= 2:
                row_changed(EVQ, si, slot_end, slot_tgt, row, ip, N, Z, sbase, reuse, t, before,
                            est_f, est_i, cinv, lim)
        if meas:
            si[T.FAILED] += 1
            si[T.PENDING] -= 1
    pd_stack[si[T.PD_TOP]] = x
    si[T.PD_TOP] += 1


def next_sample_at(si, pf):
    """The instant of the next live count (+inf after the last)."""
    if si[T.SAMPLE_I] > C.PEAK_SAMPLES:
        return INF
    return pf[C.T_MEASURE] + (pf[C.T_END] - pf[C.T_MEASURE]) * si[T.SAMPLE_I] / C.PEAK_SAMPLES


def take_samples(si, slot_end, pi, pf, t):
    """Live counts at the instants t_measure + i * horizon / 100 up to t, each read before
    anything happens at its instant; the peak is the largest (peak_live_exact: false)."""
    work = 0
    while si[T.SAMPLE_I] <= C.PEAK_SAMPLES:
        at = pf[C.T_MEASURE] + (pf[C.T_END] - pf[C.T_MEASURE]) * si[T.SAMPLE_I] / C.PEAK_SAMPLES
        if at > t:
            break
        c = scan_peak(slot_end, pi[C.K], pi[C.P], pi[C.N], at)
        work += pi[C.K] * pi[C.P]
        if c > si[T.PEAK]:
            si[T.PEAK] = c
        si[T.SAMPLE_I] += 1
    return work


def advance(S, pi, pf, zs, zc, wcum, xa, gst, t_stop, budget):
    """Run every event before t_stop in time order, or until `budget` units of work are done
    (an arrival is one, a port try one, a scan of P ports P): the placement of the stationary
    connections at t = 0, then retries (first at equal times) and arrivals. Returns a code of
    `state`: DONE, BUDGET, FIRST_HIT (pi[UNTIL_FIRST] and a measured collision), or GROW_* before
    an event that could need room the state does not have."""
    (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl, tw,
     pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack, heap,
     est, est_f, est_i, ev_q, ev_n, ev_log_, ev_sort, ev_cnt, batches, dhist, place_life,
     place_order) = S
    EVQ = (ev_q, ev_n, ev_log_, ev_sort, ev_cnt)
    g = rng_load(gst)
    N = pi[C.N]
    t_measure = pf[C.T_MEASURE]
    t_end = pf[C.T_END]
    sums = pi[C.SUMS]
    delays = pi[C.DELAYS]
    tw_on = pi[C.TW_ON]
    tw_cap = (len(tw) // T.TWB) * 3 // 2
    sbase = 3 * pi[C.K] * N
    cinv = pf[C.EV_CINV]
    nsub = pi[C.EV_NSUB]
    reuse = pf[C.REUSE]
    ev_max = est_events_max(N)
    log_room = len(ev_log_) // 2 - ev_max
    sched_off = 2 * pi[C.EMP_N]
    ms = pi[C.SCHED_N]
    code = T.DONE
    work = 0
    next_sample = next_sample_at(si, pf)
    while True:
        if work >= budget:
            code = T.BUDGET
            break
        if delays and si[T.PD_TOP] == 0:
            code = T.GROW_PEND
            break
        if tw_on and si[T.TW_INS] >= tw_cap:
            code = T.GROW_TW
            break
        if sums and si[T.EV_FULL]:         # a window's segment needs room
            code = T.GROW_EV
            break
        if sums and si[T.EV_LOG] > log_room:   # the log is full: settle up to now
            work += est_settle(S, pi, pf, zs, zc, sf[T.NOW])
        if si[T.PLACE_I] < si[T.PLACE_N]:    # the stationary start, oldest first, at t = 0
            i = si[T.PLACE_I]
            g, w = arrival(g, S, pi, pf, zs, zc, wcum, xa, 0.0, place_life[place_order[i]],
                           False, True)
            work += w
            si[T.PLACE_I] = i + 1
            continue
        if si[T.STARTED] == 0:
            si[T.STARTED] = 1
            g, e = rng_exponential(g)
            sf[T.NEXT_ARR] = next_arrival_after(0.0, e, pf[C.RATE], xa, sched_off, ms)
        t = sf[T.NEXT_ARR]
        t_retry = pd_at[heap[0]] if si[T.HEAP_N] > 0 else INF
        if t_retry <= t:
            t = t_retry
        if t >= t_stop:
            if next_sample <= t_stop:
                work += take_samples(si, slot_end, pi, pf, t_stop)
            if sf[T.NOW] < t_stop:
                sf[T.NOW] = t_stop
            code = T.DONE
            break
        if next_sample <= t:
            work += take_samples(si, slot_end, pi, pf, t)
            next_sample = next_sample_at(si, pf)
        if sums:                           # the windows t has left are settled
            work += ev_catch_up(EVQ, si, est, t, cinv, nsub, sbase, reuse, N, pi[C.B], pi[C.CROSS],
                                zc, batches, sf, pf, pi[C.NBATCH])
        if t_retry <= sf[T.NEXT_ARR]:
            retry(S, pi, pf, zs, zc, xa, t)
            work += 1
        else:
            measure = t_measure <= t < t_end
            g, w = arrival(g, S, pi, pf, zs, zc, wcum, xa, t, -1.0, measure, False)
            work += w
            g, e = rng_exponential(g)
            sf[T.NEXT_ARR] = next_arrival_after(t, e, pf[C.RATE], xa, sched_off, ms)
        sf[T.NOW] = t
        if pi[C.UNTIL_FIRST] and si[T.FIRST_SEEN]:
            code = T.FIRST_HIT
            break
    rng_store(gst, g)
    return code
