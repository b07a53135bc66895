"""The numba twin of `_core.pyx`: the reference algorithm of `_core_python.py` on flat arrays.

Same procedure, same raw words in the same order (DESIGN §2.4). Compiled on first use and cached;
no fastmath. The state layout lives in `_state.py`; `S` is `_state.as_tuple(state)`: the port table
`ptab` (slot, live holder's target), connection records `crec` (REC int32 each), the live list and
end clock of exponential lifetimes, the end-time heap for other lifetimes and pending connects.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir as llvmir
from numba.core import cgutils, types
from numba.extending import intrinsic

from . import _params as C
from . import _state as T

TWO53 = 2.0 ** -53
# No NRT in the kernels: they allocate nothing, and every call that passes the state tuple S
# (33 arrays) would otherwise incref and decref each array atomically (about 2/3 of the run time).
jit = nb.njit(cache=True, fastmath=False, nogil=True, boundscheck=False, _nrt=False)
jit_alloc = nb.njit(cache=True, fastmath=False, nogil=True, boundscheck=False)  # allocates arrays
# The event handlers are inlined into the event loop at numba's IR level: a call that passes the
# state tuple flattens its arrays into a few hundred machine arguments.
jit_inline = nb.njit(cache=True, fastmath=False, nogil=True, boundscheck=False, _nrt=False,
                     inline="always")

# state tuple indices (order of _state.FIELDS)
(SI, SF, LIVE, CURSOR, LIN_EPOCH, LIN_OFF, LIN_PERT, EST_SUM, FREE_N, PTAB, FREE, FPOS, CREC,
 C_END, C_SERIAL, IDS, HEAP, CL_NODE, CL_EXP, NTL, TW_KEY, TW_EXP, TWQ_KEY, TWQ_EXP, CQ_AT, CQ_DP,
 BATCHES, LLIST, HKEY, C_T0, C_LIFE, DHIST, DENSE) = range(33)
assert T.FIELDS == ("si", "sf", "live", "cursor", "lin_epoch", "lin_off", "lin_pert", "est_sum",
                    "free_n", "ptab", "free", "fpos", "crec", "c_end", "c_serial", "ids", "heap",
                    "cl_node", "cl_exp", "ntl", "tw_key", "tw_exp", "twq_key", "twq_exp", "cq_at",
                    "cq_dp", "batches", "llist", "hkey", "c_t0", "c_life", "dhist", "dense")
# connection record fields: crec[REC * c + R_...]
REC, R_DEST, R_PORT, R_TGT, R_CLOSE, R_POS, R_RETRY, R_MEAS, R_ENTRY = \
    T.REC, T.R_DEST, T.R_PORT, T.R_TGT, T.R_CLOSE, T.R_POS, T.R_RETRY, T.R_MEAS, T.R_ENTRY
DEAD = T.DEAD          # R_POS of a reset connection whose heap entry is still queued
HELD, UNLISTED = T.HELD, T.UNLISTED


# -- random words ----------------------------------------------------------------------------------
# PCG64 inlined (the same 128-bit LCG step and XSL-RR output as NumPy's PCG64): `st` is uint64[4] =
# state high, state low, increment high, increment low, loaded from and written back to the run's
# bit generator by `collide.engine` around every kernel call.
MULT = 0x2360ED051FC65DA4_4385DF649FCCF645
S58, U63, U64 = np.uint64(58), np.uint64(63), np.uint64(64)


@intrinsic
def _lcg128(typingctx, hi, lo, inc_hi, inc_lo):
    """(high, low) of state * MULT + inc (mod 2**128) on LLVM's 128-bit integers (the Cython core
    uses the C compiler's `unsigned __int128`): one 64 x 64 -> 128 multiply, where 64-bit halves
    take four."""
    u64 = types.uint64
    sig = types.UniTuple(u64, 2)(u64, u64, u64, u64)

    def codegen(context, builder, signature, args):
        i64, i128 = llvmir.IntType(64), llvmir.IntType(128)
        c64 = llvmir.Constant(i128, 64)
        h, lo, ih, il = [builder.zext(a, i128) for a in args]
        state = builder.or_(builder.shl(h, c64), lo)
        inc = builder.or_(builder.shl(ih, c64), il)
        new = builder.add(builder.mul(state, llvmir.Constant(i128, MULT)), inc)
        return context.make_tuple(builder, signature.return_type,
                                  (builder.trunc(builder.lshr(new, c64), i64),
                                   builder.trunc(new, i64)))
    return sig, codegen


@intrinsic
def prefetch(typingctx, ary, idx):
    """A hint, no effect on results: start loading ary[idx]'s cache line (llvm.prefetch, read,
    high locality), as `COLLIDE_PREFETCH` in _core.pyx."""
    if not isinstance(ary, types.Array):
        return None
    sig = types.void(ary, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        a = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, a, [args[1]], wraparound=False)
        i8p, i32 = llvmir.IntType(8).as_pointer(), llvmir.IntType(32)
        fnty = llvmir.FunctionType(llvmir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return sig, codegen


# Draws on a generator held in a tuple g = (state high, low, increment high, low); each returns the
# advanced generator with its value: `g, x = rng_randint(g, n)`. A kernel that loads `st` into a
# local tuple once (`advance_plain`) lets LLVM keep the state in registers, where a store to `st`
# (which may alias any other array) keeps it in memory between draws.
@jit
def rng_next(g):
    """One raw word: state = state * MULT + inc (mod 2**128), output rotr(hi ^ lo, hi >> 58)."""
    hi, lo = _lcg128(g[0], g[1], g[2], g[3])
    x = hi ^ lo
    rot = hi >> S58
    return (hi, lo, g[2], g[3]), (x >> rot) | (x << ((U64 - rot) & U63))


@jit
def rng_uniform(g):
    g, w = rng_next(g)
    return g, np.float64(w >> np.uint64(11)) * TWO53


@jit
def rng_reject(g, nn, m):
    """`rng_randint`'s rare rejection step (a division), out of line."""
    low = m & np.uint64(0xFFFFFFFF)
    threshold = (np.uint64(0x100000000) - nn) % nn
    while low < threshold:
        g, w = rng_next(g)
        m = (w >> np.uint64(32)) * nn
        low = m & np.uint64(0xFFFFFFFF)
    return g, m


@jit_inline
def rng_randint(g, n):
    """`randint` on a tuple. Inlined at numba's IR level (LLVM leaves it a call, which passes the
    generator through memory); its rare rejection step (a division) stays out of line."""
    if n <= 1:
        return g, np.int64(0)
    nn = np.uint64(n)
    g, w = rng_next(g)
    m = (w >> np.uint64(32)) * nn
    if (m & np.uint64(0xFFFFFFFF)) < nn:
        g, m = rng_reject(g, nn, m)
    return g, np.int64(m >> np.uint64(32))


@jit
def rng_exponential(g):
    g, w = rng_next(g)
    return g, -math.log(np.float64((w >> np.uint64(11)) + np.uint64(1)) * TWO53)


@jit_inline
def rng_lifetime(g, dist, pf, xa, emp_n):
    """`lifetime` on a tuple (the plain loop's heap ends)."""
    if dist == 0:
        g, e = rng_exponential(g)
        return g, pf[C.MEAN] * e
    if dist == 1:
        return g, pf[C.MEAN]
    if dist == 2:
        g, e = rng_exponential(g)             # normal(): the same operations in the same order
        g, u = rng_uniform(g)
        z = math.sqrt(2.0 * e) * math.cos(2.0 * math.pi * u)
        return g, math.exp(pf[C.MU] + pf[C.SIGMA] * z)
    if dist == 4:
        g, i = rng_randint(g, emp_n)
        return g, xa[i]
    g, e = rng_exponential(g)
    return g, pf[C.XM] * math.exp(e / pf[C.ALPHA])


# The same draws on the array `st` (the general loop and the start-up kernels).
@jit
def next_u64(st):
    g, w = rng_next((st[0], st[1], st[2], st[3]))
    st[0], st[1] = g[0], g[1]
    return w


@jit
def uniform(st):
    return np.float64(next_u64(st) >> np.uint64(11)) * TWO53


@jit
def randint(st, n):
    if n <= 1:
        return 0
    nn = np.uint64(n)
    m = (next_u64(st) >> np.uint64(32)) * nn
    low = m & np.uint64(0xFFFFFFFF)
    if low < nn:
        threshold = (np.uint64(0x100000000) - nn) % nn
        while low < threshold:
            m = (next_u64(st) >> np.uint64(32)) * nn
            low = m & np.uint64(0xFFFFFFFF)
    return np.int64(m >> np.uint64(32))


@jit
def exponential(st):
    return -math.log(np.float64((next_u64(st) >> np.uint64(11)) + np.uint64(1)) * TWO53)


@jit
def normal(st):
    e = exponential(st)
    u = uniform(st)
    return math.sqrt(2.0 * e) * math.cos(2.0 * math.pi * u)


@jit
def lifetime(pi, pf, xa, st):
    dist = pi[C.DIST]
    if dist == 0:
        return pf[C.MEAN] * exponential(st)
    if dist == 1:
        return pf[C.MEAN]
    if dist == 2:
        return math.exp(pf[C.MU] + pf[C.SIGMA] * normal(st))
    if dist == 4:
        return xa[randint(st, pi[C.EMP_N])]
    return pf[C.XM] * math.exp(exponential(st) / pf[C.ALPHA])


@jit
def biased_lifetime(pi, pf, xa, st):
    dist = pi[C.DIST]
    if dist == 0:
        e1 = exponential(st)
        return pf[C.MEAN] * (e1 + exponential(st))
    if dist == 1:
        return pf[C.MEAN]
    if dist == 2:
        return math.exp(pf[C.MU] + pf[C.SIGMA] * pf[C.SIGMA] + pf[C.SIGMA] * normal(st))
    if dist == 4:
        ne = pi[C.EMP_N]
        x = uniform(st) * xa[2 * ne - 1]
        lo = 0
        hi = ne - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if xa[ne + mid] > x:
                hi = mid
            else:
                lo = mid + 1
        return xa[lo]
    return pf[C.XM] * math.exp(exponential(st) / (pf[C.ALPHA] - 1.0))


# -- end-time queue: a 4-ary heap keyed by (end, serial), each entry's end stored beside it ------------
# Any exact priority queue pops in the reference's (end, serial) order; this layout halves the depth
# and keeps siblings in one cache line.
@jit
def heap_before(serial, ka, a, kb, b):
    """(ka, a) comes before (kb, b); the serials are read only on a tie of the ends."""
    return ka < kb or (ka == kb and serial[a] < serial[b])


# The sifts take the heap's arrays, not the state tuple: the plain loop calls them with its
# arrays in locals (`heap_sift_up/down` in _core.pyx).
@jit
def heap_sift_up(heap, hkey, serial, i, c, kc):
    while i > 0:
        parent = (i - 1) >> 2
        q = heap[parent]
        if not heap_before(serial, kc, c, hkey[parent], q):
            break
        heap[i] = q
        hkey[i] = hkey[parent]
        i = parent
    heap[i] = c
    hkey[i] = kc


@jit
def heap_least(heap, hkey, serial, first, last):
    """The least of the children first..last-1, exactly (ties of the ends by serial)."""
    best = first
    for ch in range(first + 1, last):
        if heap_before(serial, hkey[ch], heap[ch], hkey[best], heap[best]):
            best = ch
    return best


@jit
def heap_sift_down(heap, hkey, serial, n, i, c, kc):
    """Move (kc, c) down from i; below a full group of four children the least is picked by a
    branch-free tournament (see `heap_sift_down` in _core.pyx), equal ends by the exact path."""
    while True:
        first = 4 * i + 1
        if first + 4 <= n:
            if 16 * i + 20 < n:     # hints: the grandchildren's ends, read at the next level
                prefetch(hkey, 4 * first + 1)
                prefetch(hkey, 4 * first + 9)
                prefetch(hkey, 4 * first + 16)
            k0 = hkey[first]
            k1 = hkey[first + 1]
            k2 = hkey[first + 2]
            k3 = hkey[first + 3]
            s01 = np.int64(k1 < k0)
            s23 = np.int64(k3 < k2)
            k01 = k1 if k1 < k0 else k0
            k23 = k3 if k3 < k2 else k2
            sb = np.int64(k23 < k01)
            kb = k23 if k23 < k01 else k01
            best = first + s01 + ((-sb) & (2 + s23 - s01))      # no branch: sb picks 2 + s23
            if (k0 == k1) | (k2 == k3) | (k01 == k23):
                best = heap_least(heap, hkey, serial, first, first + 4)
                kb = hkey[best]
        elif first < n:
            best = heap_least(heap, hkey, serial, first, n)
            kb = hkey[best]
        else:
            break
        if not heap_before(serial, kb, heap[best], kc, c):
            break
        heap[i] = heap[best]
        hkey[i] = kb
        i = best
    heap[i] = c
    hkey[i] = kc


@jit_alloc
def heap_order(keys, serial):
    """Push ids 0..n-1 with these ends, pop them all: the order (a test hook for the sifts)."""
    n = keys.shape[0]
    size = n if n > 0 else 1
    heap = np.zeros(size, np.int32)
    hkey = np.zeros(size, np.float64)
    out = np.empty(n, np.int32)
    for i in range(n):
        heap_sift_up(heap, hkey, serial, i, np.int32(i), keys[i])
    for i in range(n):
        out[i] = heap[0]
        m = n - 1 - i
        if m > 0:
            heap_sift_down(heap, hkey, serial, m, 0, heap[m], hkey[m])
    return out


@jit
def heap_push(S, c):
    si = S[SI]
    i = si[T.HEAP_N]
    si[T.HEAP_N] = i + 1
    S[CREC][REC * c + R_POS] = 0
    heap_sift_up(S[HEAP], S[HKEY], S[C_SERIAL], i, c, S[C_END][c])


@jit
def heap_pop(S):
    """Remove and return the top."""
    si, heap, hkey = S[SI], S[HEAP], S[HKEY]
    top = heap[0]
    n = si[T.HEAP_N] - 1
    si[T.HEAP_N] = n
    if n > 0:
        heap_sift_down(heap, hkey, S[C_SERIAL], n, 0, heap[n], hkey[n])
    S[CREC][REC * top + R_POS] = -1
    return top


@jit
def drop_dead_tops(S):
    """Pop the entries of reset connections off the top and give their ids back."""
    si = S[SI]
    while si[T.HEAP_N] > 0 and S[CREC][REC * S[HEAP][0] + R_POS] == DEAD:
        h = heap_pop(S)
        S[IDS][si[T.FREE_TOP]] = h
        si[T.FREE_TOP] += 1


# -- TIME_WAIT table: open addressing, linear probing, backward-shift deletion ---------------------------
# The table's functions take its arrays and `si` (its size and hash shift), not the state tuple:
# the plain loop calls them with its arrays in locals.
@jit
def _tw_home(si, key, cap):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(si[T.TW_SHIFT])) & (cap - 1)


# slot i: key at keys[2 i], expiry at exps[2 i + 1] (views of one buffer, _state.new_tw_table)
@jit
def tw_find(keys, si, key):
    cap = keys.shape[0] >> 1
    i = _tw_home(si, key, cap)
    while keys[2 * i] != -1:
        if keys[2 * i] == key:
            return i
        i = (i + 1) & (cap - 1)
    return -1


@jit
def tw_set(keys, exps, si, key, expiry):
    cap = keys.shape[0] >> 1
    i = _tw_home(si, key, cap)
    while keys[2 * i] != -1:
        if keys[2 * i] == key:
            exps[2 * i + 1] = expiry
            return
        i = (i + 1) & (cap - 1)
    keys[2 * i] = key
    exps[2 * i + 1] = expiry
    si[T.TW_N] += 1


@jit
def tw_delete(keys, exps, si, i):
    cap = keys.shape[0] >> 1
    mask = cap - 1
    j = i
    while True:
        j = (j + 1) & mask
        if keys[2 * j] == -1:
            break
        h = _tw_home(si, keys[2 * j], cap)
        # keep slot j where it is if its home lies cyclically in (i, j]
        if i <= j:
            keep = i < h <= j
        else:
            keep = h > i or h <= j
        if not keep:
            keys[2 * i] = keys[2 * j]
            exps[2 * i + 1] = exps[2 * j + 1]
            i = j
    keys[2 * i] = -1
    si[T.TW_N] -= 1


@jit
def tw_enter(keys, exps, qkey, qexp, si, key, expiry):
    """A 4-tuple enters TIME_WAIT until `expiry`: into the table and the expiry queue."""
    tw_set(keys, exps, si, key, expiry)
    i = (si[T.TWQ_HEAD] + si[T.TWQ_N]) % qkey.shape[0]
    qkey[i] = key
    qexp[i] = expiry
    si[T.TWQ_N] += 1


@jit
def tw_expire(keys, exps, qkey, qexp, si):
    """The expiry queue's head is due: its entry goes unless renewed or taken over since."""
    key = qkey[si[T.TWQ_HEAD]]
    expiry = qexp[si[T.TWQ_HEAD]]
    si[T.TWQ_HEAD] = (si[T.TWQ_HEAD] + 1) % qkey.shape[0]
    si[T.TWQ_N] -= 1
    if si[T.TWQ_N] > 0:         # a hint for the next expiry's slot, events from now
        prefetch(keys, 2 * _tw_home(si, qkey[si[T.TWQ_HEAD]], keys.shape[0] >> 1))
    i = tw_find(keys, si, key)
    if i >= 0 and exps[2 * i + 1] == expiry:
        tw_delete(keys, exps, si, i)


@jit
def tw_take_over(keys, exps, si, key, measure):
    """A SYN for a 4-tuple the target holds in TIME_WAIT: accepted, the entry goes."""
    i = tw_find(keys, si, key)
    if i >= 0:
        tw_delete(keys, exps, si, i)
        if measure:
            si[T.TWHITS] += 1


@jit
def take_over_time_wait(S, pi, ip, p, target, measure):
    tw_take_over(S[TW_KEY], S[TW_EXP], S[SI], (ip * 65536 + p) * pi[C.B] + target, measure)


# -- free ports and the conditional estimate's sums ----------------------------------------------------
# The port table is port-major: entry s = (ip * P + p) * n + j, so the N entries of one port
# from one IP share a cache line; ptab[2 s] is the slot (-1 free, HELD, or a connection id: live,
# or pending), ptab[2 s + 1] the live holder's target (-1: none).
@jit
def pool_of(pi, d):
    return d // pi[C.N] if pi[C.ALLOC] == 3 else d


@jit
def entry(pi, d, p):
    n = pi[C.N]
    ip = d // n
    return (ip * pi[C.P] + p) * n + (d - ip * n)


@jit
def is_free(S, pi, d, p):
    """Port p is free towards d (eim: on d's NAT IP)."""
    if pi[C.ALLOC] == 3:
        return S[FPOS][(d // pi[C.N]) * pi[C.P] + p] != UNLISTED
    return S[PTAB][2 * entry(pi, d, p)] == -1


@jit
def take_free(S, pi, pool, p):
    P = pi[C.P]
    free, fpos, free_n = S[FREE], S[FPOS], S[FREE_N]
    n = free_n[pool] - 1
    free_n[pool] = n
    if S[DENSE][pool] == 0:
        return
    i = np.int64(fpos[pool * P + p])
    last = np.int64(free[pool * P + n])
    free[pool * P + i] = last
    fpos[pool * P + last] = i
    fpos[pool * P + p] = UNLISTED


@jit
def put_free(S, pi, pool, p):
    P = pi[C.P]
    free_n = S[FREE_N]
    n = free_n[pool]
    free_n[pool] = n + 1
    if S[DENSE][pool] == 0:
        return
    S[FREE][pool * P + n] = p
    S[FPOS][pool * P + p] = n


@jit
def list_ports(S, pi, d):
    """Random allocator below half free: list d's free ports in port order."""
    P = pi[C.P]
    free, fpos, ptab = S[FREE], S[FPOS], S[PTAB]
    S[DENSE][d] = 1
    i = 0
    for p in range(P):
        if ptab[2 * entry(pi, d, p)] == -1:
            free[d * P + i] = p
            fpos[d * P + p] = i
            i += 1
        else:
            fpos[d * P + p] = UNLISTED


@jit
def unlist_ports(S, d):
    S[DENSE][d] = 0


# -- the plain loops' compact copy of the connections and port slots (`_core.pyx`) ----------------
# The plain loops keep their own compact copy of what they touch: connections as 16-byte rows, and
# port slots `pt` of 4 bytes per entry (PT_FREE, PT_HELD or the holder's row + 1) where the shared
# port table `ptab` has 8 (slot and target, interleaved); a taken slot's target is read from its
# row. Under the end clock the rows are in live-list order (a uniformly drawn position picks the
# same connection as `llist`); under the heap they are indexed by record id. `rows_enter` builds
# rows and slots from records, `rows_leave` gives records (under the clock: ids 0..nl-1 in list
# order) and port-table entries back and frees the slots; both are linear in the live
# connections, and run only when a plain loop starts after something else had the state
# (`give_back_rows`). The rows and slots belong to the run (`PlainRows`, held by
# `collide.engine._Compiled`), not to the state.
L = 4
L_ENTRY = 0            # port-table entry (ip:port, node)
L_DEST = 1
L_TGT = 2
L_PORTC = 3            # port | L_CLOSE | L_DEAD
L_CLOSE = 0x10000      # the server closes first
L_DEAD = 0x20000       # heap: reset while its end is queued (the records' R_POS = DEAD)
PT_FREE = 0            # a slot of `pt`: free, HELD while a connect is decided, or holder's row + 1
PT_HELD = -1


@jit
def rows_enter(rows, pt, llist, crec, ptab, nl):
    for i in range(nl):
        h = llist[i]
        s = crec[REC * h + R_ENTRY]
        rows[L * i + L_ENTRY] = s
        rows[L * i + L_DEST] = crec[REC * h + R_DEST]
        rows[L * i + L_TGT] = crec[REC * h + R_TGT]
        rows[L * i + L_PORTC] = crec[REC * h + R_PORT] | (L_CLOSE if crec[REC * h + R_CLOSE] != 0
                                                          else 0)
        pt[s] = i + 1
        ptab[2 * s] = -1
        ptab[2 * s + 1] = -1


@jit
def rows_leave(rows, pt, llist, crec, ids, ptab, nl, cap):
    """Row i becomes record i; ids nl.. are free, the lowest on top of the stack."""
    for i in range(nl):
        s = rows[L * i + L_ENTRY]
        m = rows[L * i + L_PORTC]
        crec[REC * i + R_DEST] = rows[L * i + L_DEST]
        crec[REC * i + R_PORT] = m & 0xFFFF
        crec[REC * i + R_TGT] = rows[L * i + L_TGT]
        crec[REC * i + R_CLOSE] = 1 if (m & L_CLOSE) != 0 else 0
        crec[REC * i + R_POS] = i
        crec[REC * i + R_RETRY] = -1
        crec[REC * i + R_ENTRY] = s
        llist[i] = i
        ptab[2 * s] = i
        ptab[2 * s + 1] = rows[L * i + L_TGT]
        pt[s] = PT_FREE
    for i in range(nl, cap):
        crec[REC * i + R_POS] = -1
        ids[cap - 1 - i] = i


@jit
def rows_enter_heap(rows, pt, heap, heap_n, crec, ptab):
    """The heap's version: rows indexed by record id, for every record in the heap (live, or
    reset and waiting to leave the top); the slots of the live ones."""
    for i in range(heap_n):
        c = heap[i]
        s = crec[REC * c + R_ENTRY]
        dead = crec[REC * c + R_POS] == DEAD
        rows[L * c + L_ENTRY] = s
        rows[L * c + L_DEST] = crec[REC * c + R_DEST]
        rows[L * c + L_TGT] = crec[REC * c + R_TGT]
        rows[L * c + L_PORTC] = crec[REC * c + R_PORT] | (
            L_CLOSE if crec[REC * c + R_CLOSE] != 0 else 0) | (L_DEAD if dead else 0)
        if not dead:
            pt[s] = c + 1
            ptab[2 * s] = -1
            ptab[2 * s + 1] = -1


@jit
def rows_leave_heap(rows, pt, heap, heap_n, ids, free_top, crec, ptab):
    for i in range(heap_n):
        c = heap[i]
        s = rows[L * c + L_ENTRY]
        m = rows[L * c + L_PORTC]
        crec[REC * c + R_DEST] = rows[L * c + L_DEST]
        crec[REC * c + R_PORT] = m & 0xFFFF
        crec[REC * c + R_TGT] = rows[L * c + L_TGT]
        crec[REC * c + R_CLOSE] = 1 if (m & L_CLOSE) != 0 else 0
        crec[REC * c + R_POS] = DEAD if (m & L_DEAD) != 0 else 0
        crec[REC * c + R_RETRY] = -1
        crec[REC * c + R_ENTRY] = s
        if (m & L_DEAD) == 0:
            ptab[2 * s] = c
            ptab[2 * s + 1] = rows[L * c + L_TGT]
            pt[s] = PT_FREE
    for i in range(free_top):
        crec[REC * ids[i] + R_POS] = -1


@jit
def row_target(pt, rows, e):
    """The target of entry e's live holder (-1: none), through its row (slot = row + 1)."""
    x = np.int64(pt[e]) - 1
    return np.int64(rows[L * x + L_TGT]) if x >= 0 else np.int64(-1)


@jit
def rows_port_distinct(pt, rows, b, n, skip):
    """`distinct_targets` on one ip:port's N slots of `pt` from entry b (targets through the
    rows)."""
    count = 0
    for j in range(n):
        if j == skip:
            continue
        t = row_target(pt, rows, b + j)
        if t < 0:
            continue
        dup = False
        for jj in range(j):
            if jj != skip and row_target(pt, rows, b + jj) == t:
                dup = True
                break
        if not dup:
            count += 1
    return count


@jit
def rows_port_holder_changed(pt, rows, est_sum, b, e0, n, j0, target, delta):
    """`holder_changed` on one ip:port's N slots of `pt` from entry b; est_sum[e0 + j] is node j's
    sum (e0 = ip * N)."""
    for jj in range(n):
        if jj != j0 and row_target(pt, rows, b + jj) == target:
            return
    for j in range(n):
        if j != j0 and pt[b + j] == PT_FREE:
            est_sum[e0 + j] += delta


@jit
def list_free_ports(dense, free, fpos, slot, stride, free_slot, n, Pn, d):
    """Random allocator below half free: list d's free ports in port order (`slot[stride * e]`
    is entry e's slot, `free_slot` when free: `ptab` with stride 2 and -1, the plain loops' `pt`
    with 1 and PT_FREE)."""
    ip = d // n
    e0 = ip * Pn * n + (d - ip * n)
    dense[d] = 1
    i = 0
    for p in range(Pn):
        if slot[stride * (e0 + p * n)] == free_slot:
            free[d * Pn + i] = p
            fpos[d * Pn + p] = i
            i += 1
        else:
            fpos[d * Pn + p] = UNLISTED


@jit
def rows_remove(rows, pt, nl, i):
    """Swap-remove row i of nl (as `live_remove` on the live list): the last row moves into it
    and its port slot follows; returns the new length."""
    nl -= 1
    if i != nl:
        rows[L * i + L_ENTRY] = rows[L * nl + L_ENTRY]
        rows[L * i + L_DEST] = rows[L * nl + L_DEST]
        rows[L * i + L_TGT] = rows[L * nl + L_TGT]
        rows[L * i + L_PORTC] = rows[L * nl + L_PORTC]
        pt[rows[L * i + L_ENTRY]] = i + 1
    return nl


# -- the plain loop's end-time queue: a calendar of buckets (`Calendar` in _core.pyx) --------------
# Bucket q = floor(end / W) of a ring of M buckets (`head`, a record id or -1); per record id, its
# end at ent[2 id] and the next id of its bucket at nxt[4 id + 2] (`nxt` is an int32 view of `ent`:
# one 16-byte entry, as CalEntry). The least is found by walking the ring forward; buckets are in
# end order and ties inside one go by serial, so ends leave in the heap's (end, serial) order.
# The scalars travel as locals: cur (the least's bucket, none earlier), n, least (-1: empty).
CAL_FAR = np.int64(1 << 62)     # the bucket of ends beyond any ring (inf)


@jit
def cal_bucket(invw, key):
    x = key * invw
    return np.int64(x) if x < 4.0e18 else CAL_FAR


@jit
def cal_clear(head):
    for b in range(head.shape[0]):
        head[b] = -1


@jit
def cal_insert(head, ent, nxt, serial, invw, least, cur, c, key):
    """Queue record c with its end; returns the new (least, cur)."""
    q = cal_bucket(invw, key)
    b = q & (head.shape[0] - 1)
    nxt[4 * c + 2] = head[b]
    head[b] = c
    ent[2 * c] = key
    if least < 0 or heap_before(serial, key, c, ent[2 * least], least):
        return np.int64(c), q
    return least, cur


@jit
def cal_find_least(head, ent, nxt, serial, rows, invw, cur):
    """Walk from bucket cur to the first holding an entry of its own year: (least, its bucket).
    A whole ring walked without one falls back to a scan of every entry."""
    mask = head.shape[0] - 1
    steps = 0
    kb = np.inf
    while True:
        best = np.int64(-1)
        x = np.int64(head[cur & mask])
        while x >= 0:
            kx = ent[2 * x]
            if cal_bucket(invw, kx) == cur and (best < 0 or heap_before(serial, kx, x, kb, best)):
                best = x
                kb = kx
            x = np.int64(nxt[4 * x + 2])
        if best >= 0:
            # hints: the entry and the row of an end a few buckets ahead, read when it is due
            x = np.int64(head[(cur + 3) & mask])
            if x >= 0:
                prefetch(ent, 2 * x)
                prefetch(rows, L * x)
            return best, cur
        cur += 1
        steps += 1
        if steps > mask:
            break
    best = np.int64(-1)
    for b in range(mask + 1):
        x = np.int64(head[b])
        while x >= 0:
            kx = ent[2 * x]
            if best < 0 or heap_before(serial, kx, x, kb, best):
                best = x
                kb = kx
            x = np.int64(nxt[4 * x + 2])
    return best, cal_bucket(invw, kb)


@jit
def cal_pop(head, ent, nxt, serial, rows, invw, least, cur, n):
    """Remove the least entry (n > 0); returns (it, new least, new cur, n - 1)."""
    c = least
    b = cur & (head.shape[0] - 1)
    x = np.int64(head[b])
    if x == c:
        head[b] = nxt[4 * c + 2]
    else:
        while nxt[4 * x + 2] != c:
            x = np.int64(nxt[4 * x + 2])
        nxt[4 * x + 2] = nxt[4 * c + 2]
    n -= 1
    if n == 0:
        return c, np.int64(-1), cur, n
    least, cur = cal_find_least(head, ent, nxt, serial, rows, invw, cur)
    return c, least, cur, n


@jit
def cal_from_heap(head, ent, nxt, serial, invw, heap, hkey, heap_n):
    """Queue the heap's entries; returns (least, cur)."""
    cal_clear(head)
    least, cur = np.int64(-1), np.int64(0)
    for i in range(heap_n):
        least, cur = cal_insert(head, ent, nxt, serial, invw, least, cur, np.int64(heap[i]),
                                hkey[i])
    return least, cur


@jit
def cal_to_heap(head, ent, nxt, serial, n, heap, hkey):
    """Write the entries as a valid 4-ary heap (any order, then Floyd's heapify)."""
    i = 0
    for b in range(head.shape[0]):
        x = np.int64(head[b])
        while x >= 0:
            heap[i] = x
            hkey[i] = ent[2 * x]
            i += 1
            x = np.int64(nxt[4 * x + 2])
    for i in range((n - 2) // 4, -1, -1):
        heap_sift_down(heap, hkey, serial, n, i, heap[i], hkey[i])


def calendar_buffers(ids, buckets):
    """(head, ent, nxt) for `ids` record ids and a ring of `buckets` (a power of two)."""
    head = np.full(buckets, -1, np.int32)
    ent = np.zeros(2 * max(ids, 1), np.float64)
    return head, ent, ent.view(np.int32)


def calendar_order(keys, serial, width, buckets, pop_after):
    """As `_core.calendar_order`: insert ids 0..n-1 with these ends, popping once before each
    insert i where pop_after[i] is 1, then pop the rest; the popped ids in order."""
    n = keys.shape[0]
    if serial.shape[0] != n or pop_after.shape[0] != n:
        raise ValueError("serial and pop_after must have as many entries as keys")
    if buckets < 1 or buckets & (buckets - 1) or not width > 0:
        raise ValueError(f"buckets={buckets}, width={width}: a power of two and a positive width")
    head, ent, nxt = calendar_buffers(n, buckets)
    return _calendar_order(keys, serial, 1.0 / width, pop_after, head, ent, nxt)


@jit_alloc
def _calendar_order(keys, serial, invw, pop_after, head, ent, nxt):
    n = keys.shape[0]
    out = np.empty(n, np.int32)
    rows = np.zeros(L * max(n, 1), np.int32)
    least, cur, m, k = np.int64(-1), np.int64(0), np.int64(0), 0
    for i in range(n):
        if pop_after[i] != 0 and m > 0:
            c, least, cur, m = cal_pop(head, ent, nxt, serial, rows, invw, least, cur, m)
            out[k] = c
            k += 1
        least, cur = cal_insert(head, ent, nxt, serial, invw, least, cur, np.int64(i), keys[i])
        m += 1
    while m > 0:
        c, least, cur, m = cal_pop(head, ent, nxt, serial, rows, invw, least, cur, m)
        out[k] = c
        k += 1
    return out


@jit
def tracking(pi):
    return pi[C.ESTIMATE] != 0 and pi[C.ALLOC] == 0 and pi[C.CROSS] != 0 and pi[C.CIP] != 0 \
        and pi[C.N] > 1


@jit
def distinct_targets(S, pi, ip, p, skip1, skip2):
    n, P = pi[C.N], pi[C.P]
    ptab = S[PTAB]
    base = 2 * (ip * P + p) * n + 1      # the targets of port p's entries: ptab[base + 2 j]
    count = 0
    for j in range(n):
        if j == skip1 or j == skip2:
            continue
        t = ptab[base + 2 * j]
        if t < 0:
            continue
        dup = False
        for jj in range(j):
            if jj == skip1 or jj == skip2:
                continue
            if ptab[base + 2 * jj] == t:
                dup = True
                break
        if not dup:
            count += 1
    return count


@jit
def holder_changed(S, pi, d0, p, target, delta):
    n, P = pi[C.N], pi[C.P]
    ip = d0 // n
    j0 = d0 - ip * n
    ptab, est = S[PTAB], S[EST_SUM]
    base = 2 * (ip * P + p) * n
    # A node j whose slot is free holds no target, so "another node than j and j0 holds target"
    # is the same for every such j: one pass to see, one to update (the reference's n^2 loop).
    for jj in range(n):
        if jj != j0 and ptab[base + 2 * jj + 1] == target:
            return
    for j in range(n):
        if j != j0 and ptab[base + 2 * j] == -1:
            est[ip * n + j] += delta


@jit
def port_freed(S, pi, d, p):
    S[PTAB][2 * entry(pi, d, p)] = -1
    put_free(S, pi, pool_of(pi, d), p)
    if tracking(pi):
        n = pi[C.N]
        S[EST_SUM][d] += distinct_targets(S, pi, d // n, p, d % n, -1)


@jit
def port_taken(S, pi, d, p):
    S[PTAB][2 * entry(pi, d, p)] = HELD
    take_free(S, pi, pool_of(pi, d), p)
    if tracking(pi):
        n = pi[C.N]
        S[EST_SUM][d] -= distinct_targets(S, pi, d // n, p, d % n, -1)


@jit
def release_port(S, pi, pf, d, p, t):
    if pi[C.COOL_ON]:
        si = S[SI]
        cap = S[CQ_AT].shape[0]
        i = (si[T.CQ_HEAD] + si[T.CQ_N]) % cap
        S[CQ_AT][i] = t + pf[C.REUSE]
        S[CQ_DP][i] = d * pi[C.P] + p
        si[T.CQ_N] += 1
    else:
        port_freed(S, pi, d, p)


# -- the end clock of exponential lifetimes (see _core_python) -----------------------------------------
@jit
def memoryless(pi):
    return pi[C.DIST] == 0


@jit
def clock_sync(S, pf, t):
    sf = S[SF]
    e = sf[T.END_E] - (t - sf[T.END_T0]) * np.float64(S[SI][T.LIVE_N]) / pf[C.MEAN]
    sf[T.END_E] = e if e >= 0.0 else 0.0
    sf[T.END_T0] = t


@jit
def clock_refresh(S, pf):
    """When the clock rings next (end_t0 + end_e * mean / L), after L or end_e changed."""
    nl = S[SI][T.LIVE_N]
    sf = S[SF]
    if nl == 0:
        sf[T.CLOCK] = np.inf
    else:
        sf[T.CLOCK] = sf[T.END_T0] + sf[T.END_E] * pf[C.MEAN] / np.float64(nl)


@jit
def live_add(S, pf, c, t):
    si = S[SI]
    nl = si[T.LIVE_N]
    clock_sync(S, pf, t)
    S[CREC][REC * c + R_POS] = nl
    S[LLIST][nl] = c
    si[T.LIVE_N] = nl + 1
    clock_refresh(S, pf)


@jit
def live_remove(S, pf, c, t):
    si, crec, llist = S[SI], S[CREC], S[LLIST]
    nl = si[T.LIVE_N] - 1
    i = np.int64(crec[REC * c + R_POS])
    last = llist[nl]
    clock_sync(S, pf, t)
    si[T.LIVE_N] = nl
    llist[i] = last
    crec[REC * last + R_POS] = i
    crec[REC * c + R_POS] = -1
    clock_refresh(S, pf)


@jit_inline
def end_by_clock(S, pi, pf, st, t):
    """The end clock rang at t: a uniformly chosen live connection ends, the clock restarts."""
    S[SF][T.END_T0] = t
    h = S[LLIST][randint(st, S[SI][T.LIVE_N])]
    end_connection(S, pi, pf, h, t, False)
    S[SF][T.END_E] = exponential(st)
    clock_refresh(S, pf)


@jit
def schedule_end(S, pi, pf, c, t):
    """Connection c went live at t: into the live list (exponential lifetimes) or the heap."""
    if memoryless(pi):
        live_add(S, pf, c, t)
    else:
        heap_push(S, c)


@jit_inline
def end_connection(S, pi, pf, h, t, by_reset):
    n, P = pi[C.N], pi[C.P]
    crec = S[CREC]
    d = crec[REC * h + R_DEST]
    p = crec[REC * h + R_PORT]
    target = crec[REC * h + R_TGT]
    ip = d // n
    s = (ip * P + p) * n + (d - ip * n)
    S[PTAB][2 * s] = HELD
    S[PTAB][2 * s + 1] = -1
    S[LIVE][d] -= 1
    if memoryless(pi):
        live_remove(S, pf, h, t)
    elif by_reset:
        crec[REC * h + R_POS] = DEAD          # its heap entry goes when it reaches the top
    if tracking(pi):
        holder_changed(S, pi, d, p, target, -1)
    if pi[C.CIP] == 0:
        S[NTL][(d % n) * pi[C.B] + target] -= 1
    if crec[REC * h + R_CLOSE] != 0 and not by_reset and pi[C.TW_ON] != 0:
        key = ((d // n) * 65536 + p) * pi[C.B] + target
        expiry = t + pf[C.TW]
        tw_enter(S[TW_KEY], S[TW_EXP], S[TWQ_KEY], S[TWQ_EXP], S[SI], key, expiry)
    si = S[SI]
    if crec[REC * h + R_POS] != DEAD:
        S[IDS][si[T.FREE_TOP]] = h
        si[T.FREE_TOP] += 1
    release_port(S, pi, pf, d, p, t)


# -- allocators ----------------------------------------------------------------------------------------
@jit
def linux_scan(S, pi, d, offset):
    P = pi[C.P]
    offset &= ~1
    while True:
        p = offset
        for i in range(0, P, 2):
            if p >= P:
                p -= P
            if is_free(S, pi, d, p):
                S[SI][T.SKIPPED] = i // 2
                return p
            p += 2
        offset += 1
        if (offset & 1) == 0 or P <= 1:
            return -1


@jit_inline
def allocate(S, pi, st, ip, j, t):
    n, P = pi[C.N], pi[C.P]
    d = ip * n + j
    pool = pool_of(pi, d)
    nfree = S[FREE_N][pool]
    if nfree == 0:
        return -1
    alloc = pi[C.ALLOC]
    if alloc == 0:
        # rejection while at least half free; a free list (in port order) below half
        dense = S[DENSE]
        if dense[d] != 0 and 4 * nfree > 3 * P:
            unlist_ports(S, d)
        elif dense[d] == 0 and 2 * nfree < P:
            list_ports(S, pi, d)
        if dense[d] != 0:
            p = np.int64(S[FREE][d * P + randint(st, nfree)])
        else:
            ptab = S[PTAB]
            p = randint(st, P)
            while ptab[2 * ((ip * P + p) * n + j)] != -1:
                p = randint(st, P)
    elif alloc == 3:
        p = np.int64(S[FREE][pool * P + randint(st, nfree)])
    elif alloc == 1:
        cursor = S[CURSOR]
        if cursor[d] < 0:
            cursor[d] = randint(st, P)
        p = cursor[d]
        while not is_free(S, pi, d, p):
            p = p + 1 if p + 1 < P else 0
        cursor[d] = p + 1 if p + 1 < P else 0
    else:
        epoch = np.int64(math.floor(t / C.LINUX_EPOCH_S))
        if epoch != S[LIN_EPOCH][d]:
            S[LIN_EPOCH][d] = epoch
            S[LIN_OFF][d] = randint(st, P)
        p = linux_scan(S, pi, d, (S[LIN_PERT][d] + S[LIN_OFF][d]) % P)
        skipped = S[SI][T.SKIPPED]
        u = randint(st, 8)
        S[LIN_PERT][d] = (S[LIN_PERT][d] + 2 * max(skipped, u) + 2) % P
    port_taken(S, pi, d, p)
    return p


@jit
def draw_node(pi, wcum, st):
    if pi[C.WEIGHTED]:
        u = uniform(st)
        j = 0
        while u >= wcum[j]:
            j += 1
        return j
    return randint(st, pi[C.N])


@jit_inline
def add_estimate(S, pi, pf, t, ip, j, d):
    n, P = pi[C.N], pi[C.P]
    e = 0.0
    if pi[C.CROSS] and pi[C.CIP] and n > 1 and S[LIVE][d] < pi[C.LIMIT]:
        nfree = S[FREE_N][pool_of(pi, d)]
        size_t = pi[C.B]
        if pi[C.ALLOC] == 0 and nfree > 0:
            e = S[EST_SUM][d] / (nfree * size_t)
        elif pi[C.ALLOC] == 1 and nfree > 0 and S[CURSOR][d] >= 0:
            p = S[CURSOR][d]
            while not is_free(S, pi, d, p):
                p = p + 1 if p + 1 < P else 0
            e = distinct_targets(S, pi, ip, p, j, -1) / size_t
        elif pi[C.ALLOC] == 1 and nfree > 0:
            total = 0
            for i in range(P):
                if is_free(S, pi, d, i):
                    total += distinct_targets(S, pi, ip, i, j, -1)
            e = total / (nfree * size_t)
    nb_ = pi[C.NBATCH]
    b = np.int64((t - pf[C.T_MEASURE]) / (pf[C.T_END] - pf[C.T_MEASURE]) * nb_)
    b = min(max(b, 0), nb_ - 1)
    S[BATCHES][b] += e


# -- one arrival -------------------------------------------------------------------------------------
@jit_inline
def arrival(S, pi, pf, zs, zc, wcum, xa, st, t, given_life, measure, outcome):
    si = S[SI]
    n, P, k = pi[C.N], pi[C.P], pi[C.K]
    if measure:
        si[T.CONN] += 1
    client = randint(st, pi[C.CLIENTS]) if pi[C.NEED_CLIENT] else 0
    ip = client % k if pi[C.IP_PER_CLIENT] else randint(st, k)
    if pi[C.STICKY]:
        if t >= S[CL_EXP][client]:
            S[CL_NODE][client] = draw_node(pi, wcum, st)
            S[CL_EXP][client] = t + pf[C.DNS_TTL]
        j = S[CL_NODE][client]
    else:
        j = draw_node(pi, wcum, st)
    d = ip * n + j
    if measure and pi[C.ESTIMATE]:
        add_estimate(S, pi, pf, t, ip, j, d)
    if S[LIVE][d] >= pi[C.LIMIT]:
        p = -1
    else:
        p = allocate(S, pi, st, ip, j, t)
    if p < 0:
        if measure:
            si[T.AFAIL] += 1
        return
    if pi[C.CROSS]:
        target = randint(st, pi[C.B])
    else:
        target = zs[j] + randint(st, zc[j])
    ptab = S[PTAB]
    base = 2 * (ip * P + p) * n      # port-major port table: one port's entries side by side
    nholders = 0
    if pi[C.CIP]:
        for jj in range(n):
            if jj != j and ptab[base + 2 * jj + 1] == target:
                nholders += 1
    else:
        if S[NTL][j * pi[C.B] + target] >= pi[C.NODE_LIMIT]:
            port_freed(S, pi, d, p)
            if measure:
                si[T.AFAIL] += 1
            return
    if memoryless(pi):
        life = 0.0                   # ends come from the end clock
    else:
        life = lifetime(pi, pf, xa, st) if given_life < 0 else given_life
    scf = pf[C.SCF]
    close = scf >= 1.0 or (scf > 0.0 and uniform(st) < scf)
    if nholders > 0:
        if measure:
            si[T.COLL] += 1
            si[T.PAIRS] += nholders
            if S[SF][T.FIRST] < 0:
                S[SF][T.FIRST] = t - pf[C.T_MEASURE]
        if outcome <= 2 and pi[C.CA_LIMIT] > 0 and given_life < 0 and not challenge_ack(S, pi, t):
            outcome = 3
        if outcome == 1:
            if measure:
                si[T.FAILED] += 1
            release_port(S, pi, pf, d, p, t)
            return
        if outcome == 0 or outcome == 4:
            for jj in range(n):
                if jj != j and ptab[base + 2 * jj + 1] == target:
                    end_connection(S, pi, pf, ptab[base + 2 * jj], t, True)
                    if measure:
                        si[T.RESETS] += 1
        if outcome >= 3:
            start_pending(S, pi, xa, d, p, target, close, t, life, measure)
            return
    elif pi[C.TW_ON]:
        take_over_time_wait(S, pi, ip, p, target, measure)
    if measure:
        si[T.EST] += 1
    c = new_record(S, pi, d, p, target, close, t + life, not memoryless(pi))
    if tracking(pi):
        holder_changed(S, pi, d, p, target, 1)
    ptab[base + 2 * j] = c
    ptab[base + 2 * j + 1] = target
    S[LIVE][d] += 1
    if pi[C.CIP] == 0:
        S[NTL][j * pi[C.B] + target] += 1
    if measure and S[LIVE][d] > si[T.PEAK]:
        si[T.PEAK] = S[LIVE][d]
    schedule_end(S, pi, pf, c, t)


# -- delayed connects ----------------------------------------------------------------------------------
@jit
def new_record(S, pi, d, p, target, close, end, queued):
    """A connection record from the free-id stack, with the next serial (heap tie-break) and its
    port-table entry (`R_ENTRY`: `rows_enter` copies it into the plain loops' rows, which end a
    connection without a division); end and serial are stored only if it goes into the heap
    (`queued`)."""
    si = S[SI]
    si[T.SERIAL] += 1
    si[T.FREE_TOP] -= 1
    c = S[IDS][si[T.FREE_TOP]]
    crec = S[CREC]
    crec[REC * c + R_DEST] = d
    crec[REC * c + R_PORT] = p
    crec[REC * c + R_TGT] = target
    crec[REC * c + R_CLOSE] = 1 if close else 0
    crec[REC * c + R_ENTRY] = entry(pi, d, p)
    if queued:
        S[C_END][c] = end
        S[C_SERIAL][c] = si[T.SERIAL]
    return c


@jit
def challenge_ack(S, pi, t):
    si = S[SI]
    sec = np.int64(math.floor(t))
    if sec != si[T.CA_SEC]:
        si[T.CA_SEC] = sec
        si[T.CA_USED] = 0
    if si[T.CA_USED] < pi[C.CA_LIMIT]:
        si[T.CA_USED] += 1
        return True
    return False


@jit
def syn_at(pi, xa, i):
    return xa[2 * pi[C.EMP_N] + 2 * pi[C.SCHED_N] + i]


@jit
def start_pending(S, pi, xa, d, p, target, close, t, life, measure):
    si = S[SI]
    if measure:
        si[T.PENDING] += 1
    c = new_record(S, pi, d, p, target, close, t + syn_at(pi, xa, 0), True)
    S[C_T0][c] = t
    S[C_LIFE][c] = life
    S[CREC][REC * c + R_RETRY] = 0
    S[CREC][REC * c + R_MEAS] = 1 if measure else 0
    S[PTAB][2 * entry(pi, d, p)] = c
    S[LIVE][d] += 1
    if measure and S[LIVE][d] > si[T.PEAK]:
        si[T.PEAK] = S[LIVE][d]
    heap_push(S, c)


@jit_inline
def retry(S, pi, pf, xa, h, t):
    si = S[SI]
    n, P = pi[C.N], pi[C.P]
    crec, ptab = S[CREC], S[PTAB]
    d = crec[REC * h + R_DEST]
    p = crec[REC * h + R_PORT]
    target = crec[REC * h + R_TGT]
    ip = d // n
    j = d - ip * n
    base = 2 * (ip * P + p) * n
    meas = crec[REC * h + R_MEAS] != 0
    busy = False
    for jj in range(n):
        if jj != j and ptab[base + 2 * jj + 1] == target:
            busy = True
    if not busy:
        if pi[C.TW_ON]:
            take_over_time_wait(S, pi, ip, p, target, meas)
        r = crec[REC * h + R_RETRY]
        crec[REC * h + R_RETRY] = -1
        S[C_END][h] = t + S[C_LIFE][h]
        if tracking(pi):
            holder_changed(S, pi, d, p, target, 1)
        ptab[base + 2 * j + 1] = target       # the slot holds h since its first SYN
        if meas:
            si[T.EST] += 1
            si[T.DELAYED] += 1
            si[T.PENDING] -= 1
            S[DHIST][r] += 1
        schedule_end(S, pi, pf, h, t)
        return
    r = crec[REC * h + R_RETRY] + 1
    crec[REC * h + R_RETRY] = r
    if r < pi[C.SYN_N]:
        S[C_END][h] = S[C_T0][h] + syn_at(pi, xa, r)
        heap_push(S, h)
        return
    crec[REC * h + R_RETRY] = -1
    ptab[base + 2 * j] = HELD
    S[LIVE][d] -= 1
    if meas:
        si[T.FAILED] += 1
        si[T.PENDING] -= 1
    S[IDS][si[T.FREE_TOP]] = h
    si[T.FREE_TOP] += 1
    release_port(S, pi, pf, d, p, t)


# -- the run -------------------------------------------------------------------------------------------
@jit_alloc
def draw_stationary(pi, pf, xa, st):
    mean_live = pf[C.RATE] * pf[C.MEAN]
    n = 0
    s = exponential(st)
    while s < mean_live:
        n += 1
        s += exponential(st)
    residual = np.empty(n, np.float64)
    age = np.empty(n, np.float64)
    for i in range(n):
        big = biased_lifetime(pi, pf, xa, st)
        u = uniform(st)
        residual[i] = u * big
        age[i] = big - u * big
    return residual, age


@jit
def place_stationary(S, pi, pf, zs, zc, wcum, xa, st, residuals, order, start):
    """Place order[start:]; returns where it stopped (early when the records ran out)."""
    i = start
    while i < order.shape[0] and S[SI][T.FREE_TOP] > 0:
        arrival(S, pi, pf, zs, zc, wcum, xa, st, 0.0, residuals[order[i]], False, pi[C.OUTCOME])
        i += 1
    return i


@jit
def next_arrival_after(pi, pf, xa, t, e):
    ms = pi[C.SCHED_N]
    if ms == 0:
        return t + e / pf[C.RATE]
    off = 2 * pi[C.EMP_N]
    lo = 0
    hi = ms
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if xa[off + mid] <= t:
            lo = mid
        else:
            hi = mid
    i = lo
    while True:
        r = xa[off + ms + i]
        if i + 1 >= ms:
            return t + e / r
        seg_end = xa[off + i + 1]
        t_next = t + e / r
        if t_next < seg_end:
            return t_next
        e -= (seg_end - t) * r
        if e < 0.0:
            e = 0.0
        t = seg_end
        i += 1


@jit
def schedule_first_arrival(S, pi, pf, xa, st):
    S[SF][T.NEXT_ARR] = next_arrival_after(pi, pf, xa, 0.0, exponential(st))
    if memoryless(pi):
        S[SF][T.END_E] = exponential(st)
        clock_refresh(S, pf)


@jit
def advance_general(S, pi, pf, zs, zc, wcum, xa, st, t_stop):
    """The event loop of every scenario (`Engine._advance` in _core.pyx)."""
    si, sf = S[SI], S[SF]
    tw_on = pi[C.TW_ON] != 0
    while True:
        drop_dead_tops(S)
        if si[T.FREE_TOP] == 0:
            return T.GROW_CONN
        if tw_on:
            if 10 * (si[T.TW_N] + 1) > 7 * (S[TW_KEY].shape[0] >> 1):
                return T.GROW_TW
            if si[T.TWQ_N] == S[TWQ_KEY].shape[0]:
                return T.GROW_TWQ
        t_end = S[HKEY][0] if si[T.HEAP_N] > 0 else np.inf
        t_clock = S[SF][T.CLOCK] if memoryless(pi) else np.inf
        if t_clock < t_end:
            t_end = t_clock
        t_cool = S[CQ_AT][si[T.CQ_HEAD]] if si[T.CQ_N] > 0 else np.inf
        t_tw = S[TWQ_EXP][si[T.TWQ_HEAD]] if si[T.TWQ_N] > 0 else np.inf
        t_ev = min(t_end, t_cool, t_tw)
        if t_ev <= sf[T.NEXT_ARR]:
            if t_ev >= t_stop:
                return T.DONE
            if t_clock == t_ev:
                end_by_clock(S, pi, pf, st, t_clock)
            elif t_end == t_ev:
                h = heap_pop(S)
                if S[CREC][REC * h + R_RETRY] >= 0:
                    retry(S, pi, pf, xa, h, t_end)
                else:
                    end_connection(S, pi, pf, h, t_end, False)
            elif t_cool == t_ev:
                cap = S[CQ_AT].shape[0]
                dp = S[CQ_DP][si[T.CQ_HEAD]]
                si[T.CQ_HEAD] = (si[T.CQ_HEAD] + 1) % cap
                si[T.CQ_N] -= 1
                d = dp // pi[C.P]
                port_freed(S, pi, d, dp - d * pi[C.P])
            else:
                tw_expire(S[TW_KEY], S[TW_EXP], S[TWQ_KEY], S[TWQ_EXP], si)
        else:
            t = sf[T.NEXT_ARR]
            if t >= t_stop:
                return T.DONE
            measure = pf[C.T_MEASURE] <= t < pf[C.T_END]
            arrival(S, pi, pf, zs, zc, wcum, xa, st, t, -1.0, measure, pi[C.OUTCOME])
            sf[T.NEXT_ARR] = next_arrival_after(pi, pf, xa, t, exponential(st))


@jit_inline
def port_free_counted(free_n, dense, free, fpos, Pn, d, p):
    """Port p of destination d is free again (`put_free`): counted, and listed while d's pool is."""
    m = free_n[d]
    free_n[d] = m + 1
    if dense[d] != 0:
        free[d * Pn + m] = p
        fpos[d * Pn + p] = m


# -- the event loop of plain scenarios -----------------------------------------------------------------
@jit
def plain(pi):
    """The scenarios of the plain loops (`Engine.plain` in _core.pyx): the random allocator, no
    reuse delay, no delayed connects (outcome <= 2, no challenge-ACK limit: the heap holds only
    ends), client IP preservation on (no per-target limits). Any lifetime law, TIME_WAIT, sticky
    clients and per-client IPs."""
    return (pi[C.COOL_ON] == 0 and pi[C.OUTCOME] <= 2 and pi[C.CA_LIMIT] == 0
            and pi[C.CIP] != 0 and pi[C.ALLOC] == 0)


@jit
def plain_base(pi):
    """The plain scenarios that `advance_plain` runs: exponential lifetimes (the end clock, the
    heap stays empty) and none of the extras (TIME_WAIT, sticky clients, per-client IPs)."""
    return pi[C.DIST] == 0 and pi[C.TW_ON] == 0 and pi[C.NEED_CLIENT] == 0


@jit_inline
def draw_target(g, cross, nb_, zs, zc, j, pt, rows, b, n):
    """The target the connection via node j goes to (any of B with cross-zone, else one of node
    j's zone), and how many other nodes' holders of this ip:port went to it (the 4-tuple check,
    N - 1 compares); returns (generator, target, holders)."""
    if cross:
        g, target = rng_randint(g, nb_)
    else:
        g, i = rng_randint(g, zc[j])
        target = zs[j] + i
    nholders = 0
    for jj in range(n):
        if jj != j and row_target(pt, rows, b + jj) == target:
            nholders += 1
    return g, target, nholders


@jit_inline
def draw_close(g, scf):
    """Whether the server closes first (a uniform drawn only for a fraction strictly between 0
    and 1); returns (generator, close)."""
    if scf >= 1.0:
        return g, True
    if scf > 0.0:
        g, u = rng_uniform(g)
        return g, u < scf
    return g, False


@jit_inline
def take_free_port(g, dense, free, fpos, free_n, pt, ip, j, d, n, Pn, nfree):
    """The plain loops' `allocate`: a uniformly drawn free port of destination d (node j from
    NAT IP ip), by rejection against the port slots while at least half is free, from the free
    list below half, back to rejection above three quarters; returns (generator, port)."""
    if dense[d] != 0 and 4 * nfree > 3 * Pn:
        dense[d] = 0
    elif dense[d] == 0 and 2 * nfree < Pn:
        list_free_ports(dense, free, fpos, pt, 1, PT_FREE, n, Pn, d)
    if dense[d] != 0:
        g, i = rng_randint(g, nfree)
        p = np.int64(free[d * Pn + i])
        i = np.int64(fpos[d * Pn + p])                # take_free
        moved = np.int64(free[d * Pn + nfree - 1])
        free[d * Pn + i] = moved
        fpos[d * Pn + moved] = i
        fpos[d * Pn + p] = UNLISTED
    else:
        g, p = rng_randint(g, Pn)
        while pt[(ip * Pn + p) * n + j] != PT_FREE:
            g, p = rng_randint(g, Pn)
    free_n[d] = nfree - 1
    return g, p


@jit
def advance_plain(S, pi, pf, zs, zc, wcum, xa, st, t_stop, rows, pt):
    """`advance_general` for plain scenarios without extras (`plain_base(pi)`, empty heap): the
    copy of the plain loop for the base scenario, with none of the code it does not use (the
    extras and the heap: `advance_plain_extras`). The same steps, draws and
    floating-point operations in the same order (`Engine._advance_plain` in _core.pyx). The
    generator, the clock and the counters live in locals, written back when it returns, so LLVM
    keeps them in registers. The clock is synchronised where `advance_general` would (a reset
    victim's end, a new connection) and its ring time computed once where `advance_general`
    overwrites it. The connections are `rows` in live-list order and the port slots `pt`
    (`rows_enter`, done by `advance`): the records, the live list, the free ids and the port
    table are stale until `give_back_rows`."""
    si, sf = S[SI], S[SF]
    dense = S[DENSE]
    free, fpos, live, free_n, est_sum = S[FREE], S[FPOS], S[LIVE], S[FREE_N], S[EST_SUM]
    n, Pn, k, nb_, limit = pi[C.N], pi[C.P], pi[C.K], pi[C.B], pi[C.LIMIT]
    outcome = pi[C.OUTCOME]
    track, estimate = tracking(pi), pi[C.ESTIMATE] != 0
    cross, weighted = pi[C.CROSS] != 0, pi[C.WEIGHTED] != 0
    mean, scf, t_measure, t_end = pf[C.MEAN], pf[C.SCF], pf[C.T_MEASURE], pf[C.T_END]
    # state held in locals, written back at the end
    g = (st[0], st[1], st[2], st[3])
    nl, free_top, serial = si[T.LIVE_N], si[T.FREE_TOP], si[T.SERIAL]
    conn, est, afail, failed = si[T.CONN], si[T.EST], si[T.AFAIL], si[T.FAILED]
    coll, resets, pairs, peak = si[T.COLL], si[T.RESETS], si[T.PAIRS], si[T.PEAK]
    end_e, end_t0, clock = sf[T.END_E], sf[T.END_T0], sf[T.CLOCK]
    first, t_next = sf[T.FIRST], sf[T.NEXT_ARR]
    j = np.int64(0)
    while True:
        if free_top == 0:
            code = T.GROW_CONN
            break
        if clock <= t_next:
            # the end clock rings: a uniformly chosen live connection ends (end_by_clock)
            if clock >= t_stop:
                code = T.DONE
                break
            t = clock
            end_t0 = t
            g, h = rng_randint(g, nl)                       # a row of the live list
            # a hint: the last row moves into h below and its port slot is rewritten
            prefetch(pt, rows[L * (nl - 1) + L_ENTRY])
            # end_connection(h, t, False), its clock_sync a no-op at end_t0 == t
            s = np.int64(rows[L * h + L_ENTRY])
            d = np.int64(rows[L * h + L_DEST])
            target = np.int64(rows[L * h + L_TGT])
            p = np.int64(rows[L * h + L_PORTC]) & 0xFFFF
            pt[s] = PT_HELD
            live[d] -= 1
            nl = rows_remove(rows, pt, nl, h)
            if track:
                j = d - (d // n) * n
                rows_port_holder_changed(pt, rows, est_sum, s - j, d - j, n, j, target, -1)
            free_top += 1                                   # (the ids: `rows_leave`)
            pt[s] = PT_FREE                                 # port_freed
            port_free_counted(free_n, dense, free, fpos, Pn, d, p)
            if track:
                est_sum[d] += rows_port_distinct(pt, rows, s - j, n, j)
            g, end_e = rng_exponential(g)
            if nl == 0:
                clock = np.inf
            else:
                clock = end_t0 + end_e * mean / np.float64(nl)
            continue
        t = t_next
        if t >= t_stop:
            code = T.DONE
            break
        measure = t_measure <= t and t < t_end
        synced = False
        while True:            # one arrival (`arrival`); `break` where it returns
            if measure:
                conn += 1
            g, ip = rng_randint(g, k)
            if weighted:
                g, u = rng_uniform(g)
                j = 0
                while u >= wcum[j]:
                    j += 1
            else:
                g, j = rng_randint(g, n)
            d = ip * n + j
            if measure and estimate:
                add_estimate(S, pi, pf, t, ip, j, d)
            nfree = free_n[d]
            if live[d] >= limit or nfree == 0:
                if measure:
                    afail += 1
                break
            g, p = take_free_port(g, dense, free, fpos, free_n, pt, ip, j, d, n, Pn, nfree)
            b = (ip * Pn + p) * n                             # the port's first entry
            pt[b + j] = PT_HELD                               # port_taken
            if track:
                est_sum[d] -= rows_port_distinct(pt, rows, b, n, j)
            g, target, nholders = draw_target(g, cross, nb_, zs, zc, j, pt, rows, b, n)
            g, close = draw_close(g, scf)
            if nholders > 0:
                if measure:
                    coll += 1
                    pairs += nholders
                    if first < 0:
                        first = t - t_measure
                if outcome == 1:
                    if measure:
                        failed += 1
                    pt[b + j] = PT_FREE                       # release_port: port_freed
                    port_free_counted(free_n, dense, free, fpos, Pn, d, p)
                    if track:
                        est_sum[d] += rows_port_distinct(pt, rows, b, n, j)
                    break
                if outcome == 0:
                    for jj in range(n):
                        if jj == j or row_target(pt, rows, b + jj) != target:
                            continue
                        h = np.int64(pt[b + jj]) - 1
                        if not synced:
                            e = end_e - (t - end_t0) * np.float64(nl) / mean
                            end_e = e if e >= 0.0 else 0.0
                            end_t0 = t
                            synced = True
                        # end_connection(h, t, True): the holder on node jj
                        dh = np.int64(rows[L * h + L_DEST])
                        pt[b + jj] = PT_HELD
                        live[dh] -= 1
                        nl = rows_remove(rows, pt, nl, h)
                        if track:
                            rows_port_holder_changed(pt, rows, est_sum, b, dh - jj, n, jj,
                                                     target, -1)
                        free_top += 1
                        pt[b + jj] = PT_FREE
                        port_free_counted(free_n, dense, free, fpos, Pn, dh, p)
                        if track:
                            est_sum[dh] += rows_port_distinct(pt, rows, b, n, jj)
                        if measure:
                            resets += 1
            if measure:
                est += 1
            serial += 1                                       # new_record (not queued)
            free_top -= 1
            c = nl                                            # the next row of the live list
            rows[L * c + L_ENTRY] = b + j
            rows[L * c + L_DEST] = d
            rows[L * c + L_TGT] = target
            rows[L * c + L_PORTC] = p | (L_CLOSE if close else 0)
            if track:
                rows_port_holder_changed(pt, rows, est_sum, b, d - j, n, j, target, 1)
            pt[b + j] = c + 1
            live[d] += 1
            if measure and live[d] > peak:
                peak = live[d]
            if not synced:                                    # live_add
                e = end_e - (t - end_t0) * np.float64(nl) / mean
                end_e = e if e >= 0.0 else 0.0
                end_t0 = t
                synced = True
            nl += 1
            break
        if synced:
            clock = end_t0 + end_e * mean / np.float64(nl) if nl > 0 else np.inf
        g, e = rng_exponential(g)
        t_next = next_arrival_after(pi, pf, xa, t, e)
    st[0], st[1] = g[0], g[1]
    si[T.LIVE_N] = nl
    si[T.FREE_TOP] = free_top
    si[T.SERIAL] = serial
    si[T.CONN] = conn
    si[T.EST] = est
    si[T.AFAIL] = afail
    si[T.FAILED] = failed
    si[T.COLL] = coll
    si[T.RESETS] = resets
    si[T.PAIRS] = pairs
    si[T.PEAK] = peak
    sf[T.END_E] = end_e
    sf[T.END_T0] = end_t0
    sf[T.CLOCK] = clock
    sf[T.FIRST] = first
    sf[T.NEXT_ARR] = t_next
    return code


@jit
def advance_plain_extras(S, pi, pf, zs, zc, wcum, xa, st, t_stop, rows, pt, cal_head, cal_ent,
                         cal_nxt, cal_st, invw):
    """`advance_plain` for every plain scenario (`plain(pi)`): also TIME_WAIT, sticky clients,
    per-client IPs and ends by the calendar (any lifetime law but the exponential; the end clock
    for it). The same steps, draws and floating-point operations in the same order as
    `advance_general` (`Engine._advance_plain` in _core.pyx); the calendar's scalars, like the
    generator and the counters, live in locals. Where Cython compiles a copy per end source and
    extras (fused types), these are flags tested at run time: one more copy of the loop to
    compile, no measurable cost on the wall clock (docs/engine.md). The connections are `rows` (in
    live-list order under the clock, by record id under the calendar; `rows_enter`/
    `rows_enter_heap`, done by `advance`) and the port slots `pt`; the ends are in the calendar
    (`cal_head`, `cal_ent`, `cal_nxt`; `cal_st` = cur, n, least; `invw` = 1 / W; built from the
    heap by `_enter_rows`), as in `Engine._advance_plain`."""
    heap_ends = pi[C.DIST] != 0
    si, sf = S[SI], S[SF]
    ids, dense = S[IDS], S[DENSE]
    free, fpos, live, free_n, est_sum = S[FREE], S[FPOS], S[LIVE], S[FREE_N], S[EST_SUM]
    c_serial = S[C_SERIAL]
    tw_key, tw_exp, twq_key, twq_exp = S[TW_KEY], S[TW_EXP], S[TWQ_KEY], S[TWQ_EXP]
    cl_node, cl_exp = S[CL_NODE], S[CL_EXP]
    n, Pn, k, nb_, limit = pi[C.N], pi[C.P], pi[C.K], pi[C.B], pi[C.LIMIT]
    outcome, dist, emp_n, clients = pi[C.OUTCOME], pi[C.DIST], pi[C.EMP_N], pi[C.CLIENTS]
    track, estimate = tracking(pi), pi[C.ESTIMATE] != 0
    cross, weighted = pi[C.CROSS] != 0, pi[C.WEIGHTED] != 0
    tw_on, sticky = pi[C.TW_ON] != 0, pi[C.STICKY] != 0
    need_client, ip_per_client = pi[C.NEED_CLIENT] != 0, pi[C.IP_PER_CLIENT] != 0
    mean, scf, t_measure, t_end = pf[C.MEAN], pf[C.SCF], pf[C.T_MEASURE], pf[C.T_END]
    tw, dns_ttl = pf[C.TW], pf[C.DNS_TTL]
    tw_cap, twq_cap = tw_key.shape[0] >> 1, twq_key.shape[0]
    # state held in locals, written back at the end
    g = (st[0], st[1], st[2], st[3])
    nl, free_top, serial, heap_n = si[T.LIVE_N], si[T.FREE_TOP], si[T.SERIAL], si[T.HEAP_N]
    conn, est, afail, failed = si[T.CONN], si[T.EST], si[T.AFAIL], si[T.FAILED]
    coll, resets, pairs, peak = si[T.COLL], si[T.RESETS], si[T.PAIRS], si[T.PEAK]
    end_e, end_t0, clock = sf[T.END_E], sf[T.END_T0], sf[T.CLOCK]
    first, t_next = sf[T.FIRST], sf[T.NEXT_ARR]
    t_tw, life = np.inf, 0.0
    client, ip, j = np.int64(0), np.int64(0), np.int64(0)
    cal_cur, cal_n, cal_least = cal_st[0], cal_st[1], cal_st[2]
    while True:
        if heap_ends:
            # drop_dead_tops: reset connections' entries leave the top and give their ids back
            while cal_n > 0 and (rows[L * cal_least + L_PORTC] & L_DEAD) != 0:
                h, cal_least, cal_cur, cal_n = cal_pop(cal_head, cal_ent, cal_nxt, c_serial, rows,
                                                       invw, cal_least, cal_cur, cal_n)
                ids[free_top] = h
                free_top += 1
        if free_top == 0:
            code = T.GROW_CONN
            break
        if tw_on:
            if 10 * (si[T.TW_N] + 1) > 7 * tw_cap:
                code = T.GROW_TW
                break
            if si[T.TWQ_N] == twq_cap:
                code = T.GROW_TWQ
                break
            t_tw = twq_exp[si[T.TWQ_HEAD]] if si[T.TWQ_N] > 0 else np.inf
        if heap_ends:
            t = cal_ent[2 * cal_least] if cal_n > 0 else np.inf
        else:
            t = clock
        if t_tw < t and t_tw <= t_next:
            # a TIME_WAIT entry expires (unless it was renewed or taken over since)
            if t_tw >= t_stop:
                code = T.DONE
                break
            tw_expire(tw_key, tw_exp, twq_key, twq_exp, si)
            continue
        if t <= t_next:
            # a connection ends: the clock rings (a uniformly chosen live one: end_by_clock)
            # or the calendar's least is due (cal_pop); then end_connection(h, t, False)
            if t >= t_stop:
                code = T.DONE
                break
            if heap_ends:
                h, cal_least, cal_cur, cal_n = cal_pop(cal_head, cal_ent, cal_nxt, c_serial, rows,
                                                       invw, cal_least, cal_cur, cal_n)
            else:
                end_t0 = t                  # end_connection's clock_sync is a no-op then
                g, h = rng_randint(g, nl)   # a row of the live list
                prefetch(pt, rows[L * (nl - 1) + L_ENTRY])  # a hint: see advance_plain
            s = np.int64(rows[L * h + L_ENTRY])
            d = np.int64(rows[L * h + L_DEST])
            target = np.int64(rows[L * h + L_TGT])
            m = np.int64(rows[L * h + L_PORTC])
            p = m & 0xFFFF
            if track or tw_on:
                ip = d // n
                j = d - ip * n
            if tw_on and (m & L_CLOSE) != 0:    # a hint: the TIME_WAIT entry is written below
                prefetch(tw_key, 2 * _tw_home(si, (ip * 65536 + p) * nb_ + target, tw_cap))
            pt[s] = PT_HELD
            live[d] -= 1
            if not heap_ends:
                nl = rows_remove(rows, pt, nl, h)
            if track:
                rows_port_holder_changed(pt, rows, est_sum, s - j, d - j, n, j, target, -1)
            if tw_on and (m & L_CLOSE) != 0:
                # the server closed first: the target keeps the 4-tuple in TIME_WAIT
                tw_enter(tw_key, tw_exp, twq_key, twq_exp, si, (ip * 65536 + p) * nb_ + target,
                         t + tw)
            if heap_ends:
                ids[free_top] = h
            free_top += 1
            pt[s] = PT_FREE                                   # port_freed
            port_free_counted(free_n, dense, free, fpos, Pn, d, p)
            if track:
                est_sum[d] += rows_port_distinct(pt, rows, s - j, n, j)
            if not heap_ends:
                g, end_e = rng_exponential(g)
                if nl == 0:
                    clock = np.inf
                else:
                    clock = end_t0 + end_e * mean / np.float64(nl)
            continue
        t = t_next
        if t >= t_stop:
            code = T.DONE
            break
        measure = t_measure <= t and t < t_end
        synced = False
        while True:            # one arrival (`arrival`); `break` where it returns
            if measure:
                conn += 1
            if need_client:
                g, client = rng_randint(g, clients)
            if ip_per_client:
                ip = client % k
            else:
                g, ip = rng_randint(g, k)
            if not sticky or t >= cl_exp[client]:
                if weighted:                                  # draw_node
                    g, u = rng_uniform(g)
                    j = 0
                    while u >= wcum[j]:
                        j += 1
                else:
                    g, j = rng_randint(g, n)
                if sticky:              # the client resolves the name again: a new node
                    cl_node[client] = j
                    cl_exp[client] = t + dns_ttl
            else:
                j = cl_node[client]
            d = ip * n + j
            if measure and estimate:
                add_estimate(S, pi, pf, t, ip, j, d)
            nfree = free_n[d]
            if live[d] >= limit or nfree == 0:
                if measure:
                    afail += 1
                break
            g, p = take_free_port(g, dense, free, fpos, free_n, pt, ip, j, d, n, Pn, nfree)
            b = (ip * Pn + p) * n                             # the port's first entry
            pt[b + j] = PT_HELD                               # port_taken
            if track:
                est_sum[d] -= rows_port_distinct(pt, rows, b, n, j)
            g, target, nholders = draw_target(g, cross, nb_, zs, zc, j, pt, rows, b, n)
            if tw_on:           # a hint only: the lookup comes after the lifetime's draw
                prefetch(tw_key, 2 * _tw_home(si, (ip * 65536 + p) * nb_ + target, tw_cap))
            if heap_ends:
                g, life = rng_lifetime(g, dist, pf, xa, emp_n)
            g, close = draw_close(g, scf)
            if nholders > 0:
                if measure:
                    coll += 1
                    pairs += nholders
                    if first < 0:
                        first = t - t_measure
                if outcome == 1:
                    if measure:
                        failed += 1
                    pt[b + j] = PT_FREE                       # release_port: port_freed
                    port_free_counted(free_n, dense, free, fpos, Pn, d, p)
                    if track:
                        est_sum[d] += rows_port_distinct(pt, rows, b, n, j)
                    break
                if outcome == 0:
                    for jj in range(n):
                        if jj == j or row_target(pt, rows, b + jj) != target:
                            continue
                        h = np.int64(pt[b + jj]) - 1
                        if not heap_ends and not synced:
                            e = end_e - (t - end_t0) * np.float64(nl) / mean
                            end_e = e if e >= 0.0 else 0.0
                            end_t0 = t
                            synced = True
                        # end_connection(h, t, True): the holder on node jj
                        dh = np.int64(rows[L * h + L_DEST])
                        pt[b + jj] = PT_HELD
                        live[dh] -= 1
                        if heap_ends:           # its entry goes when it is the least
                            rows[L * h + L_PORTC] |= L_DEAD
                        else:
                            nl = rows_remove(rows, pt, nl, h)
                        if track:
                            rows_port_holder_changed(pt, rows, est_sum, b, dh - jj, n, jj,
                                                     target, -1)
                        if not heap_ends:
                            free_top += 1
                        pt[b + jj] = PT_FREE
                        port_free_counted(free_n, dense, free, fpos, Pn, dh, p)
                        if track:
                            est_sum[dh] += rows_port_distinct(pt, rows, b, n, jj)
                        if measure:
                            resets += 1
            elif tw_on:
                tw_take_over(tw_key, tw_exp, si, (ip * 65536 + p) * nb_ + target, measure)
            if measure:
                est += 1
            serial += 1                                       # new_record
            free_top -= 1
            if heap_ends:       # the record's row, its serial for the heap's ties
                c = np.int64(ids[free_top])
                c_serial[c] = serial
            else:               # the next row of the live list
                c = nl
            rows[L * c + L_ENTRY] = b + j
            rows[L * c + L_DEST] = d
            rows[L * c + L_TGT] = target
            rows[L * c + L_PORTC] = p | (L_CLOSE if close else 0)
            if track:
                rows_port_holder_changed(pt, rows, est_sum, b, d - j, n, j, target, 1)
            pt[b + j] = c + 1
            live[d] += 1
            if measure and live[d] > peak:
                peak = live[d]
            if heap_ends:                                     # heap_push
                cal_least, cal_cur = cal_insert(cal_head, cal_ent, cal_nxt, c_serial, invw,
                                                cal_least, cal_cur, c, t + life)
                cal_n += 1
            else:                                             # live_add
                if not synced:
                    e = end_e - (t - end_t0) * np.float64(nl) / mean
                    end_e = e if e >= 0.0 else 0.0
                    end_t0 = t
                    synced = True
                nl += 1
            break
        if not heap_ends and synced:
            clock = end_t0 + end_e * mean / np.float64(nl) if nl > 0 else np.inf
        g, e = rng_exponential(g)
        t_next = next_arrival_after(pi, pf, xa, t, e)
    st[0], st[1] = g[0], g[1]
    si[T.LIVE_N] = nl
    if heap_ends:
        cal_st[0], cal_st[1], cal_st[2] = cal_cur, cal_n, cal_least
        heap_n = cal_n
    si[T.HEAP_N] = heap_n
    si[T.FREE_TOP] = free_top
    si[T.SERIAL] = serial
    si[T.CONN] = conn
    si[T.EST] = est
    si[T.AFAIL] = afail
    si[T.FAILED] = failed
    si[T.COLL] = coll
    si[T.RESETS] = resets
    si[T.PAIRS] = pairs
    si[T.PEAK] = peak
    sf[T.END_E] = end_e
    sf[T.END_T0] = end_t0
    sf[T.CLOCK] = clock
    sf[T.FIRST] = first
    sf[T.NEXT_ARR] = t_next
    return code


# -- the run's entry point -----------------------------------------------------------------------------
_plain_loop = True


def use_plain_loop(on):
    """Debug switch: False runs every scenario through the general event loop (tests compare the
    two); returns the previous setting. Read here in Python: a jitted function would freeze it."""
    global _plain_loop
    was = _plain_loop
    _plain_loop = bool(on)
    return was


# The plain loops' port slot tables (`PlainRows.pt`, all PT_FREE when not in use), kept for the
# next run of the same shape: a fresh table of megabytes per run would be faulted in page by page
# (glibc hands large blocks back to the kernel), which costs more than a short run itself. A run
# returns its table when it gives its rows back (`release`). As `_slot_tables` in _core.pyx.
_slot_tables = {}
_SLOT_TABLES_KEPT = 4


def _take_slot_table(size):
    try:
        return _slot_tables[size].pop()
    except (KeyError, IndexError):
        return np.full(size, PT_FREE, np.int32)     # written now: no page faults mid-run


class PlainRows:
    """One run's rows and port slots for the plain loops (Cython keeps them in its `Engine`;
    `collide.engine._Compiled` holds one of these for numba). `compact`: rows and pt hold the
    connections, and the records, the live list, the free ids and the port table are stale."""
    __slots__ = ("rows", "pt", "compact", "cal_head", "cal_ent", "cal_nxt", "cal_st", "invw")

    def __init__(self):
        self.rows = None
        self.pt = None
        self.compact = False
        self.cal_head, self.cal_ent, self.cal_nxt = calendar_buffers(1, 1)   # (the end clock's)
        self.cal_st = np.array([0, 0, -1], np.int64)     # cur, n, least
        self.invw = 1.0

    def size_calendar(self, ids, pi, pf, xa):
        """As `Engine.bind_calendar` (`_state.calendar_shape`: only the speed depends on it)."""
        m, self.invw = T.calendar_shape(pi, pf, xa)
        if self.cal_head.shape[0] != m or self.cal_ent.shape[0] != 2 * ids:
            self.cal_head, self.cal_ent, self.cal_nxt = calendar_buffers(ids, m)

    def nbytes(self):
        return sum(a.nbytes for a in (self.rows, self.pt, self.cal_head, self.cal_ent)
                   if a is not None)


def give_back_rows(S, pi, rows):
    """The plain loops keep their rows and slots from one call to the next (building them costs
    as much as thousands of connections, and a first-reset run makes dozens of calls); they become
    records and port-table entries again before anything else reads those: a GROW return, the
    general loop, placement, the end of the run (`release`)."""
    if rows is None or not rows.compact:
        return
    si = S[SI]
    if pi[C.DIST] == 0:
        rows_leave(rows.rows, rows.pt, S[LLIST], S[CREC], S[IDS], S[PTAB], si[T.LIVE_N],
                   S[IDS].shape[0])
    else:
        cal_to_heap(rows.cal_head, rows.cal_ent, rows.cal_nxt, S[C_SERIAL], si[T.HEAP_N],
                    S[HEAP], S[HKEY])
        rows_leave_heap(rows.rows, rows.pt, S[HEAP], si[T.HEAP_N], S[IDS], si[T.FREE_TOP],
                        S[CREC], S[PTAB])
    rows.compact = False


def release(S, pi, rows):
    """The run is over: give the rows back and keep the slot table for the next run."""
    give_back_rows(S, pi, rows)
    if rows is None or rows.pt is None:
        return
    table, rows.pt = rows.pt, None
    if sum(len(v) for v in _slot_tables.values()) >= _SLOT_TABLES_KEPT:
        _slot_tables.clear()
    _slot_tables.setdefault(table.shape[0], []).append(table)


def _enter_rows(S, pi, pf, xa, rows):
    """Size the scratch for the state (the records grow) and build rows and slots if the loop
    does not hold them yet."""
    if rows.compact:
        return
    si = S[SI]
    need = L * S[IDS].shape[0]
    if rows.rows is None or rows.rows.shape[0] != need:
        rows.rows = np.empty(need, np.int32)
    need = S[PTAB].shape[0] // 2
    if rows.pt is None or rows.pt.shape[0] != need:      # (all free between calls of the loops)
        rows.pt = _take_slot_table(need)
    if pi[C.DIST] == 0:
        if si[T.LIVE_N] + si[T.FREE_TOP] != S[IDS].shape[0]:
            raise RuntimeError("the end clock's loop needs every record live or free")
        rows_enter(rows.rows, rows.pt, S[LLIST], S[CREC], S[PTAB], si[T.LIVE_N])
    else:
        rows_enter_heap(rows.rows, rows.pt, S[HEAP], si[T.HEAP_N], S[CREC], S[PTAB])
        rows.size_calendar(S[IDS].shape[0], pi, pf, xa)
        least, cur = cal_from_heap(rows.cal_head, rows.cal_ent, rows.cal_nxt, S[C_SERIAL],
                                   rows.invw, S[HEAP], S[HKEY], si[T.HEAP_N])
        rows.cal_st[:] = (cur, si[T.HEAP_N], least)
    rows.compact = True


def advance(S, pi, pf, zs, zc, wcum, xa, st, t_stop, rows=None):
    """Run to t_stop (T.DONE) or until the state must grow (a GROW code): plain scenarios in a
    plain loop (`advance_plain` for the base case, `advance_plain_extras` for the others), the
    other scenarios in `advance_general`. `rows` (a `PlainRows`) keeps the plain loops' rows and
    slots between calls; without it they are built and given back in this call."""
    plain_loop = _plain_loop and plain(pi) and (pi[C.DIST] != 0 or S[SI][T.HEAP_N] == 0)
    if not plain_loop:      # (exponential lifetimes: the heap always empty, no delayed connects)
        give_back_rows(S, pi, rows)
        return advance_general(S, pi, pf, zs, zc, wcum, xa, st, t_stop)
    own = rows is None
    if own:
        rows = PlainRows()
    _enter_rows(S, pi, pf, xa, rows)
    if plain_base(pi):
        code = advance_plain(S, pi, pf, zs, zc, wcum, xa, st, t_stop, rows.rows, rows.pt)
    else:
        code = advance_plain_extras(S, pi, pf, zs, zc, wcum, xa, st, t_stop, rows.rows, rows.pt,
                                    rows.cal_head, rows.cal_ent, rows.cal_nxt, rows.cal_st,
                                    rows.invw)
    if own:
        release(S, pi, rows)
    elif code != T.DONE:        # the state grows: Python's `grow` copies the records
        give_back_rows(S, pi, rows)
    return code
