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
the SYN retries (a heap by (time, serial)), the `full` estimate's running sums (a ring of events).
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


# -- the `full` estimate's running sums (random allocator) -------------------------------------------
# est_sum[d] = sum over the ports counted free for d of the distinct targets of T_d that other
# nodes' counted holders have on that port; est_free[d] = ports counted free. "Counted" is the
# slot flags (F_LIVE, F_TAKEN), brought up to date by the events of every time <= t before each
# arrival, so every update is exact against the flags whatever order events of one time take.
def flag_distinct(flags, slot_tgt, row, N, skip1, skip2, lo, hi, b_only):
    """Distinct counted-live targets in [lo, hi) on `row` through nodes other than skip1, skip2;
    with b_only >= 0, 1 if b_only is among them else 0."""
    c = 0
    for m in range(N):
        if m == skip1 or m == skip2 or not (flags[row + m] & T.F_LIVE):
            continue
        b = slot_tgt[row + m]
        if b_only >= 0:
            if b == b_only:
                return 1
            continue
        if b < lo or b >= hi:
            continue
        seen = False
        for x in range(m):
            if x != skip1 and x != skip2 and (flags[row + x] & T.F_LIVE) and slot_tgt[row + x] == b:
                seen = True
        if not seen:
            c += 1
    return c


def zone_of(m, cross, zs, zc, B):
    if cross:
        return 0, B
    return zs[m], zs[m] + zc[m]


def sums_take(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B):
    flags[row + j] = flags[row + j] | T.F_TAKEN
    lo, hi = zone_of(j, cross, zs, zc, B)
    est_free[d] -= 1
    est_sum[d] -= flag_distinct(flags, slot_tgt, row, N, j, -1, lo, hi, -1)


def sums_release(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B):
    flags[row + j] = flags[row + j] & (255 - T.F_TAKEN)
    lo, hi = zone_of(j, cross, zs, zc, B)
    est_free[d] += 1
    est_sum[d] += flag_distinct(flags, slot_tgt, row, N, j, -1, lo, hi, -1)


def sums_holder(flags, slot_tgt, est_sum, row, j0, d0, N, cross, zs, zc, B, delta):
    """The holder on row through node j0 (target slot_tgt[row + j0]) starts (+1) or stops (-1)
    counting: each other node m for which the port is counted free gains or loses the target
    unless another counted holder (not m's, not j0's) already has it."""
    b = slot_tgt[row + j0]
    if delta < 0:
        flags[row + j0] = flags[row + j0] & (255 - T.F_LIVE)
    for m in range(N):
        if m == j0 or (flags[row + m] & T.F_TAKEN):
            continue
        lo, hi = zone_of(m, cross, zs, zc, B)
        if b < lo or b >= hi:
            continue
        if flag_distinct(flags, slot_tgt, row, N, m, j0, 0, 0, b) == 0:
            est_sum[d0 - j0 + m] += delta
    if delta > 0:
        flags[row + j0] = flags[row + j0] | T.F_LIVE


def ev_bucket(x, m, invw):
    qb = x * invw
    if qb > 4e18:
        qb = 4e18
    return int(qb) & (m - 1)


def ev_push(EV, si, x, code, m, invw):
    """Queue an event (code = 2 * slot + kind) at time x in its ring bucket: one of the bucket's
    EVB inline entries (one cache line), or its overflow chain."""
    ev_b, ev_t, ev_s, ev_next, ev_head = EV
    q = ev_bucket(x, m, invw)
    b = q * 2 * T.EVB
    for i in range(T.EVB):
        if ev_b[b + 2 * i] == INF:
            ev_b[b + 2 * i] = x
            ev_b[b + 2 * i + 1] = code
            return
    e = si[T.EV_FREE]
    si[T.EV_FREE] = ev_next[e]
    si[T.EV_USED] += 1
    ev_t[e] = x
    ev_s[e] = code
    ev_next[e] = ev_head[q]
    ev_head[q] = e


def ev_remove(EV, si, x, code, m, invw):
    """Take back the queued event (x, code): a reset ends its holder before its time."""
    ev_b, ev_t, ev_s, ev_next, ev_head = EV
    q = ev_bucket(x, m, invw)
    b = q * 2 * T.EVB
    for i in range(T.EVB):
        if ev_b[b + 2 * i] == x and ev_b[b + 2 * i + 1] == code:
            ev_b[b + 2 * i] = INF
            return
    prev = -1
    e = ev_head[q]
    while e >= 0:
        if ev_t[e] == x and ev_s[e] == code:
            if prev < 0:
                ev_head[q] = ev_next[e]
            else:
                ev_next[prev] = ev_next[e]
            ev_next[e] = si[T.EV_FREE]
            si[T.EV_FREE] = e
            si[T.EV_USED] -= 1
            return
        prev = e
        e = ev_next[e]


def ev_apply(code, flags, slot_tgt, est_sum, est_free, N, P, cross, zs, zc, B, reuse):
    """An event's time has come: a holder's end (kind 0; with no reuse delay its port is
    released too) or a port's release after the reuse delay (kind 1)."""
    s = code >> 1
    j = s % N
    row = s - j
    d = (s // (P * N)) * N + j
    if code & 1:
        sums_release(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B)
        return
    sums_holder(flags, slot_tgt, est_sum, row, j, d, N, cross, zs, zc, B, -1)
    if reuse == 0.0:
        sums_release(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B)


def ev_drain(EV, si, flags, slot_tgt, est_sum, est_free, t, m, invw, reuse, N, P, cross, zs, zc,
             B):
    """Apply every event of a time <= t: bucket by bucket up to t's, leaving what belongs to a
    later turn of the ring. Events of one time may go in any order: each update is exact
    against the flags. Returns the work done."""
    ev_b, ev_t, ev_s, ev_next, ev_head = EV
    work = 0
    qt = int(min(t * invw, 4e18))
    cur = si[T.EV_CUR]
    if cur < qt - m:                       # a quiet stretch longer than a turn: one turn will do
        cur = qt - m
    while True:
        q = cur & (m - 1)
        b = q * 2 * T.EVB
        work += 1
        for i in range(T.EVB):
            if ev_b[b + 2 * i] <= t:
                ev_b[b + 2 * i] = INF
                ev_apply(int(ev_b[b + 2 * i + 1]), flags, slot_tgt, est_sum, est_free, N, P,
                         cross, zs, zc, B, reuse)
        prev = -1
        e = ev_head[q]
        while e >= 0:
            nxt = ev_next[e]
            work += 1
            if ev_t[e] <= t:
                if prev < 0:               # unlink, then apply
                    ev_head[q] = nxt
                else:
                    ev_next[prev] = nxt
                ev_next[e] = si[T.EV_FREE]
                si[T.EV_FREE] = e
                si[T.EV_USED] -= 1
                ev_apply(ev_s[e], flags, slot_tgt, est_sum, est_free, N, P, cross, zs, zc, B,
                         reuse)
            else:
                prev = e
            e = nxt
        if cur >= qt:
            break
        cur += 1
    si[T.EV_CUR] = cur
    return work


def sums_live(flags, slot_tgt, est_sum, EV, si, s, end, N, P, cross, zs, zc, B, reuse, m, invw):
    """A holder starts on slot s (it ends at `end`): counted now, its end (and release) queued."""
    j = s % N
    row = s - j
    d = (s // (P * N)) * N + j
    sums_holder(flags, slot_tgt, est_sum, row, j, d, N, cross, zs, zc, B, 1)
    ev_push(EV, si, end, 2 * s, m, invw)
    if reuse > 0.0:
        ev_push(EV, si, end + reuse, 2 * s + 1, m, invw)


def sums_end_now(flags, slot_tgt, est_sum, est_free, EV, si, s, N, P, cross, zs, zc, B, t, reuse,
                 m, invw, old_end):
    """Slot s stops holding at t: a reset victim (old_end: the end it had, whose queued events
    are taken back) or a refused or failed connect (old_end < 0: it held no 4-tuple). Its port
    is released now, or after the reuse delay."""
    j = s % N
    row = s - j
    d = (s // (P * N)) * N + j
    if old_end >= 0.0:
        ev_remove(EV, si, old_end, 2 * s, m, invw)
        if reuse > 0.0:
            ev_remove(EV, si, old_end + reuse, 2 * s + 1, m, invw)
        sums_holder(flags, slot_tgt, est_sum, row, j, d, N, cross, zs, zc, B, -1)
    if reuse == 0.0:
        sums_release(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B)
    else:
        ev_push(EV, si, t + reuse, 2 * s + 1, m, invw)


def estimate_full(slot_end, slot_tgt, dest, est_sum, est_free, alloc, ip, j, d, N, P, t, reuse,
                  lo, hi):
    """P(this arrival collides | the state), before its port is drawn (docs/model.md)."""
    nt = hi - lo
    base = ip * P * N
    if alloc == 0:
        f = est_free[d]
        if f == 0:
            return 0.0
        return est_sum[d] / (f * nt)
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
     est_sum, est_free, flags, ev_b, ev_t, ev_s, ev_next, ev_head, batches, dhist, place_life,
     place_order) = S
    EV = (ev_b, ev_t, ev_s, ev_next, ev_head)
    K = pi[C.K]
    N = pi[C.N]
    B = pi[C.B]
    P = pi[C.P]
    alloc = pi[C.ALLOC]
    cross = pi[C.CROSS]
    reuse = pf[C.REUSE]
    est = pi[C.EST]
    sums = pi[C.SUMS]
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
    if measure and est == C.EST_FULL:
        e = estimate_full(slot_end, slot_tgt, dest, est_sum, est_free, alloc, ip, j, d, N, P, t,
                          reuse, lo, hi)
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
    if sums:
        sums_take(flags, slot_tgt, est_sum, est_free, row, j, d, N, cross, zs, zc, B)
    if measure and est == C.EST_TARGET and pi[C.COLLIDABLE]:
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
                sums_end_now(flags, slot_tgt, est_sum, est_free, EV, si, s, N, P, cross, zs, zc,
                             B, t, reuse, pi[C.EV_M], pf[C.EV_INVW], -1.0)
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
                        sums_end_now(flags, slot_tgt, est_sum, est_free, EV, si, row + m, N, P,
                                     cross, zs, zc, B, t, reuse, pi[C.EV_M], pf[C.EV_INVW],
                                     old_end)
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
        sums_live(flags, slot_tgt, est_sum, EV, si, s, end, N, P, cross, zs, zc, B, reuse,
                  pi[C.EV_M], pf[C.EV_INVW])
    return g, work


def retry(S, pi, pf, zs, zc, xa, t):
    """The retrying connect on top of the heap sends its SYN again at t: the 4-tuple is free (no
    live holder through another node) → it lives its lifetime from now; else the next retry, or a
    failed connect when the schedule is spent (docs/model-fidelity.md)."""
    (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl, tw,
     pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack, heap,
     est_sum, est_free, flags, ev_b, ev_t, ev_s, ev_next, ev_head, batches, dhist, place_life,
     place_order) = S
    EV = (ev_b, ev_t, ev_s, ev_next, ev_head)
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
    busy = False
    for m in range(N):
        if m != j and slot_end[row + m] > t and slot_tgt[row + m] == b:
            busy = True
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
        if pi[C.SUMS]:
            sums_live(flags, slot_tgt, est_sum, EV, si, s, end, N, P, pi[C.CROSS], zs, zc, B,
                      reuse, pi[C.EV_M], pf[C.EV_INVW])
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
        if pi[C.SUMS]:
            sums_end_now(flags, slot_tgt, est_sum, est_free, EV, si, s, N, P, pi[C.CROSS], zs, zc,
                         B, t, reuse, pi[C.EV_M], pf[C.EV_INVW], -1.0)
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
     est_sum, est_free, flags, ev_b, ev_t, ev_s, ev_next, ev_head, batches, dhist, place_life,
     place_order) = S
    EV = (ev_b, ev_t, ev_s, ev_next, ev_head)
    g = rng_load(gst)
    N = pi[C.N]
    t_measure = pf[C.T_MEASURE]
    t_end = pf[C.T_END]
    sums = pi[C.SUMS]
    delays = pi[C.DELAYS]
    tw_on = pi[C.TW_ON]
    tw_cap = (len(tw) // T.TWB) * 3 // 2
    ev_room = len(ev_t) - 2 * N - 4
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
        if sums and si[T.EV_USED] >= ev_room:
            code = T.GROW_EV
            break
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
        if sums:
            work += ev_drain(EV, si, flags, slot_tgt, est_sum, est_free, t, pi[C.EV_M],
                             pf[C.EV_INVW], pf[C.REUSE], N, pi[C.P], pi[C.CROSS], zs, zc, pi[C.B])
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
