"""The numba twin: the reference kernels of `_core_python.py`, compiled as they stand.

Only the backend primitives differ: the draws run an inlined PCG64 on uint64 registers (the same
words as NumPy's `PCG64.random_raw()`), and the long scans are plain loops where the reference uses
NumPy. Every other function is the reference's own code object, rebound to these primitives and
compiled with numba (no fastmath, so the floating point is the reference's), so the twin cannot
drift from the specification.
"""
from __future__ import annotations

import hashlib
import math
import types as pytypes
from pathlib import Path

import numba as nb
import numpy as np
from llvmlite import ir as llvmir
from numba.core import types
from numba.extending import intrinsic

from . import _core_python as ref
from . import state as T

TWO53 = 2.0 ** -53
# No NRT: the kernels allocate nothing, and a call passing the state tuple would otherwise incref
# and decref each of its arrays.
_OPTS = dict(cache=True, fastmath=False, nogil=True, boundscheck=False, _nrt=False)
jit = nb.njit(**_OPTS)
jit_inline = nb.njit(inline="always", **_OPTS)

MULT = ref.PCG_MULT
S58, U63, U64 = np.uint64(58), np.uint64(63), np.uint64(64)


@intrinsic
def _lcg128(typingctx, hi, lo, inc_hi, inc_lo):
    """(high, low) of state * MULT + inc (mod 2**128) on LLVM's 128-bit integers: one 64 x 64 ->
    128 multiply, where 64-bit halves take four."""
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


# -- the primitives (same names as in the reference) ---------------------------------------------
# The generator is a tuple (state high, low, increment high, low) passed through and returned by
# every draw, so LLVM keeps it in registers; `gst` is uint64[4], loaded and stored around a call.
@jit_inline
def rng_load(gst):
    return (gst[0], gst[1], gst[2], gst[3])


@jit_inline
def rng_store(gst, g):
    gst[0] = g[0]
    gst[1] = g[1]


@jit_inline
def rng_next(g):
    hi, lo = _lcg128(g[0], g[1], g[2], g[3])
    x = hi ^ lo
    rot = hi >> S58
    return (hi, lo, g[2], g[3]), (x >> rot) | (x << ((U64 - rot) & U63))


@jit_inline
def rng_uniform(g):
    g, w = rng_next(g)
    return g, np.float64(w >> np.uint64(11)) * TWO53


@jit_inline
def rng_exponential(g):
    g, w = rng_next(g)
    return g, -math.log(np.float64((w >> np.uint64(11)) + np.uint64(1)) * TWO53)


@jit
def _reject(g, nn, m):
    """rng_randint's rare rejection step (a division), out of line."""
    threshold = (np.uint64(0x100000000) - nn) % nn
    while (m & np.uint64(0xFFFFFFFF)) < threshold:
        g, w = rng_next(g)
        m = (w >> np.uint64(32)) * nn
    return g, m


@jit_inline
def rng_randint(g, n):
    if n <= 1:
        return g, np.int64(0)
    nn = np.uint64(n)
    g, w = rng_next(g)
    m = (w >> np.uint64(32)) * nn
    if (m & np.uint64(0xFFFFFFFF)) < nn:
        g, m = _reject(g, nn, m)
    return g, np.int64(m >> np.uint64(32))


@jit_inline
def rng_normal(g):
    g, e = rng_exponential(g)
    g, u = rng_uniform(g)
    return g, math.sqrt(2.0 * e) * math.cos(2.0 * math.pi * u)


@jit
def scan_held(slot_end, ip, P, N, t, dest):
    base = ip * P * N
    for m in range(N):
        c = 0
        for p in range(P):
            if slot_end[base + p * N + m] > t:
                c += 1
        dest[(ip * N + m) * T.DW + T.D_UB] = c


@jit
def scan_peak(slot_end, K, P, N, t):
    """The most ports one (ip, node) holds at t: node by node, the count in a register."""
    best = 0
    for ip in range(K):
        base = ip * P * N
        for m in range(N):
            c = 0
            for p in range(P):
                c += slot_end[base + p * N + m] > t
            if c > best:
                best = c
    return best


@jit
def _free_time(slot_end, row, j, N, pool_is_ip, reuse):
    if pool_is_ip:
        e = slot_end[row]
        for m in range(1, N):
            if slot_end[row + m] > e:
                e = slot_end[row + m]
        return e + reuse
    return slot_end[row + j] + reuse


@jit
def scan_count_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t):
    c = 0
    base = ip * P * N
    if not pool_is_ip:                  # a node's column: the loop without the eim branch
        for p in range(P):
            c += slot_end[base + p * N + j] + reuse <= t
        return c
    for p in range(P):
        if _free_time(slot_end, base + p * N, j, N, pool_is_ip, reuse) <= t:
            c += 1
    return c


@jit
def scan_nth_free(slot_end, pool_is_ip, ip, j, P, N, reuse, t, rank):
    base = ip * P * N
    for p in range(P):
        if _free_time(slot_end, base + p * N, j, N, pool_is_ip, reuse) <= t:
            if rank == 0:
                return p
            rank -= 1
    return -1


@jit
def scan_list(slot_end, pool_is_ip, ip, j, P, N, reuse, th, hl_list, hl_pos, base):
    """Branch-free, as the Cython kernel's: entries past the length are not read."""
    n = 0
    row0 = ip * P * N
    for p in range(P):
        inside = _free_time(slot_end, row0 + p * N, j, N, pool_is_ip, reuse) <= th
        hl_list[base + n] = p
        hl_pos[base + p] = n if inside else -1
        n += inside
    return n


@jit
def scan_node_targets(slot_end, slot_tgt, K, P, N, B, t, ntl):
    size = len(ntl)
    for i in range(size):
        ntl[i] = 0
    for r in range(K * P):
        for m in range(N):
            if slot_end[r * N + m] > t:
                ntl[(m * B + slot_tgt[r * N + m]) % size] += 1


@jit
def scan_pair(slot_end, slot_tgt, K, P, N, j, b, t):
    c = 0
    for r in range(K * P):
        if slot_end[r * N + j] > t and slot_tgt[r * N + j] == b:
            c += 1
    return c


PRIMITIVES = {f.py_func.__name__: f for f in (
    rng_load, rng_store, rng_next, rng_uniform, rng_exponential, rng_randint, rng_normal,
    scan_held, scan_peak, scan_count_free, scan_nth_free, scan_list, scan_node_targets, scan_pair)}

# Every other function of the reference is a kernel, compiled here; the per-event ones are inlined
# into `advance` at numba's IR level (a call passing the state tuple would flatten its arrays into
# hundreds of arguments).
SHARED = tuple(name for name, f in vars(ref).items()
               if isinstance(f, pytypes.FunctionType) and f.__module__ == ref.__name__
               and name not in PRIMITIVES)
INLINE = {"arrival", "retry", "zone_of", "heap_less", "port_free", "free_time", "tw_home",
          "allocate_pooled", "draw_lifetime", "next_arrival_after", "add_to_batch", "est_code",
          "end_code", "ev_log", "ev_push", "ev_apply", "ev_record", "ev_catch_up", "est_live",
          "est_release_at", "est_reset", "row_list"}

# Compiled copies are cached under names that carry a digest of both sources, so a change to
# either file (the reference's code, or these primitives) compiles afresh.
_DIGEST = hashlib.sha1(Path(ref.__file__).read_bytes() + Path(__file__).read_bytes()).hexdigest()[:10]


def _compile_shared() -> dict:
    scope = dict(vars(ref))
    scope.update(PRIMITIVES)
    for name in SHARED:
        f = getattr(ref, name)
        clone = pytypes.FunctionType(f.__code__, scope, name, f.__defaults__, f.__closure__)
        clone.__qualname__ = f"{name}_{_DIGEST}"
        scope[name] = (jit_inline if name in INLINE else jit)(clone)
    return scope


_scope = _compile_shared()
globals().update({name: _scope[name] for name in SHARED})
