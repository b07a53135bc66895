"""Flat engine state for the compiled backends (Cython and numba share this layout).

Memory is per destination port (the port table, 8 bytes per port per destination, plus a 4-byte
free list for the random and eim allocators), per live connection (about 84 bytes) and per TIME_WAIT entry; never per target. Arrays that can outgrow their
first size (connections, TIME_WAIT) make the kernel return a GROW code before it touches them;
`grow` copies them into bigger arrays and the kernel resumes where it stopped.
"""
from __future__ import annotations

import numpy as np

from . import _params as C

# scalar slots in si (int64)
CONN, EST, AFAIL, FAILED, COLL, RESETS, TWHITS, PAIRS, PEAK, SERIAL, HEAP_N, FREE_TOP, TW_N, \
    TWQ_HEAD, TWQ_N, CQ_HEAD, CQ_N, SKIPPED, TW_SHIFT = range(19)
# delayed connects: succeeded after retries, measured ones still pending, challenge-ACK budget
DELAYED, PENDING, CA_SEC, CA_USED = range(19, 23)
LIVE_N = 23            # length of the live list (exponential lifetimes)
N_SI = 24
# scalar slots in sf (float64); END_E, END_T0: the end clock of exponential lifetimes
NEXT_ARR, FIRST, END_E, END_T0 = range(4)
CLOCK = 4              # when the end clock rings next (kept up to date: no division per event)
N_SF = 5
# port table entries: ptab[2 s] is the slot (FREE, HELD or a connection id), ptab[2 s + 1] the
# live holder's target (-1: none)
FREE, HELD = -1, -2
UNLISTED = 0xFFFF      # fpos of a port that is not in its pool's free list
# connection records: REC int32 per connection id (two records per cache line): destination,
# port, target, server closes first, position in the heap or live list, next SYN retry (-1 once
# live), first SYN measured, the port-table entry (so that an end needs no division)
REC = 8
R_DEST, R_PORT, R_TGT, R_CLOSE, R_POS, R_RETRY, R_MEAS, R_ENTRY = range(8)
# R_POS of a connection reset while its end is queued in the heap: the entry is dropped (and the
# id given back) when it reaches the top, so the heap never moves entries out of its middle
DEAD = -2

# kernel return codes
DONE, GROW_CONN, GROW_TW, GROW_TWQ = 0, 1, 2, 3

FIELDS = ("si", "sf", "live", "cursor", "lin_epoch", "lin_off", "lin_pert", "est_sum", "free_n",
          "ptab", "free", "fpos", "crec", "c_end", "c_serial", "ids", "heap", "cl_node", "cl_exp", "ntl", "tw_key", "tw_exp", "twq_key",
          "twq_exp", "cq_at", "cq_dp", "batches", "llist", "hkey",
          # a pending (retrying) connection: first SYN time, lifetime; histogram of successes by
          # retry index
          "c_t0", "c_life", "dhist",
          # random allocator: 1 while the pool's free ports are listed (eim: always)
          "dense")


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def new_state(pi: np.ndarray, pf: np.ndarray, conn_cap: int) -> dict:
    k, n, ports = int(pi[C.K]), int(pi[C.N]), int(pi[C.P])
    dests = k * n
    pools = k if pi[C.ALLOC] == 3 else dests
    s = {}
    s["si"] = np.zeros(N_SI, np.int64)
    s["sf"] = np.zeros(N_SF, np.float64)
    s["sf"][FIRST] = -1.0
    s["sf"][NEXT_ARR] = np.inf
    s["sf"][CLOCK] = np.inf
    s["live"] = np.zeros(dests, np.int64)
    s["cursor"] = np.full(dests, -1, np.int64)
    s["lin_epoch"] = np.full(dests, -1, np.int64)
    s["lin_off"] = np.zeros(dests, np.int64)
    s["lin_pert"] = np.zeros(dests, np.int64)
    s["est_sum"] = np.zeros(dests, np.int64)
    s["free_n"] = np.full(pools, ports, np.int64)
    # the port table, port-major: entry s = (ip * ports + port) * n + j for node j, so one port's
    # entries towards all nodes share a cache line; each entry is (slot, holder's target).
    s["ptab"] = line_aligned(2 * dests * ports, np.int32, -1)
    # free lists (uint16: ports < 65536), kept for eim pools always and random pools below half free
    eim, listed = int(pi[C.ALLOC]) == 3, int(pi[C.ALLOC]) in (0, 3)
    s["free"] = np.tile(np.arange(ports, dtype=np.uint16), pools) if eim else \
        np.zeros(pools * ports if listed else 1, np.uint16)
    s["fpos"] = np.tile(np.arange(ports, dtype=np.uint16), pools) if eim else \
        np.full(pools * ports if listed else 1, UNLISTED, np.uint16)
    s["dense"] = np.full(pools, 1 if eim else 0, np.int32)
    conn_cap = max(int(conn_cap), 16)
    s["crec"] = new_records(conn_cap)
    s["c_end"] = np.zeros(conn_cap, np.float64)
    s["c_serial"] = np.zeros(conn_cap, np.int64)
    s["ids"] = np.arange(conn_cap - 1, -1, -1, dtype=np.int32)   # stack: id 0 on top
    s["si"][FREE_TOP] = conn_cap
    s["llist"] = np.zeros(conn_cap, np.int32)      # live list (exponential lifetimes)
    s["heap"] = heap_array(conn_cap, np.int32)     # 4-ary heap of ids by (end, serial) ...
    s["hkey"] = heap_array(conn_cap, np.float64)   # ... with each entry's end beside it
    s["c_t0"] = np.zeros(conn_cap, np.float64)
    s["c_life"] = np.zeros(conn_cap, np.float64)
    s["dhist"] = np.zeros(max(1, int(pi[C.SYN_N])), np.int64)
    s["si"][CA_SEC] = -1
    clients = int(pi[C.CLIENTS]) if pi[C.NEED_CLIENT] else 1
    s["cl_node"] = np.zeros(clients, np.int64)
    s["cl_exp"] = np.full(clients, -np.inf, np.float64)
    s["ntl"] = np.zeros(n * int(pi[C.B]) if not pi[C.CIP] else 1, np.int32)
    tw_guess = int(pf[C.RATE] * pf[C.TW] * pf[C.SCF] * 1.5) + 64 if pi[C.TW_ON] else 8
    s["tw_key"], s["tw_exp"] = new_tw_table(_pow2(2 * tw_guess))
    s["si"][TW_SHIFT] = tw_shift(tw_capacity(s))
    s["twq_key"] = np.zeros(_pow2(tw_guess), np.int64)
    s["twq_exp"] = np.zeros(_pow2(tw_guess), np.float64)
    cq = dests * ports if pi[C.COOL_ON] else 1
    s["cq_at"] = np.zeros(cq, np.float64)
    s["cq_dp"] = np.zeros(cq, np.int64)
    s["batches"] = np.zeros(int(pi[C.NBATCH]), np.float64)
    return s


def line_aligned(count: int, dtype, fill, lead: int = 0) -> np.ndarray:
    """A 1-d array whose element `lead` starts a 64-byte cache line. NumPy aligns to 16 bytes
    only, so half of the 32-byte records would straddle two lines (one more miss per end)."""
    itemsize = np.dtype(dtype).itemsize
    per_line = 64 // itemsize
    buf = np.full(count + 2 * per_line, fill, dtype)
    off = ((-buf.ctypes.data % 64) // itemsize - lead) % per_line
    return buf[off:off + count]


def heap_array(count: int, dtype) -> np.ndarray:
    """The 4-ary heap's ids or ends: entry 1 starts a cache line, so each group of four
    siblings (entries 4i+1..4i+4: 16 or 32 bytes) lies in one line, where half of them
    straddled two (a sift reads one group per level)."""
    return line_aligned(count, dtype, 0, lead=1)


def calendar_shape(pi: np.ndarray, pf: np.ndarray, xa: np.ndarray) -> tuple[int, float]:
    """(M, 1 / W) of the plain loop's calendar of ends (`Calendar` in _core.pyx, `cal_*` in
    _core_numba.py): W for about two ends per bucket at the highest rate of the run (a schedule's
    peak: a bucket crowded by a peak costs a scan per end, where an empty one in a lull costs a
    step), M, a power of two, for twice the live connections that rate keeps, so that one turn of
    the ring spans several mean lifetimes. They decide the speed, never the order."""
    m_sched, n_emp = int(pi[C.SCHED_N]), int(pi[C.EMP_N])
    rates = xa[2 * n_emp + m_sched: 2 * n_emp + 2 * m_sched]
    rate = max([float(pf[C.RATE])] + [float(r) for r in rates])
    mean = float(pf[C.MEAN])
    live = rate * mean if rate > 0 and 0 < mean and rate * mean < 1e9 else 1e3
    buckets = 64
    while buckets < 2 * live and buckets < (1 << 24):
        buckets *= 2
    return buckets, (rate / 2.0 if rate > 0 else 1.0)


def new_records(count: int) -> np.ndarray:
    rec = line_aligned(count * REC, np.int32, 0)
    rec[R_POS::REC] = -1
    rec[R_RETRY::REC] = -1
    return rec


def capacity(s: dict) -> int:
    """Connection records the state has room for."""
    return s["c_end"].size


def as_tuple(s: dict) -> tuple:
    return tuple(s[f] for f in FIELDS)


def tw_shift(cap: int) -> int:
    """Right shift of the TIME_WAIT hash for a table of `cap` (a power of two) slots: the kernels
    cache it when the table is (re)bound instead of recomputing it per lookup."""
    return 64 - (cap.bit_length() - 1)


def new_tw_table(cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The TIME_WAIT table: `cap` slots of (key, expiry) side by side in one buffer, so a lookup
    and the expiry it checks share a cache line. Slot i: key at tw_key[2 i] (-1: empty), expiry at
    tw_exp[2 i + 1]; the two arrays are int64 and float64 views of the same memory."""
    keys = np.full(2 * cap, -1, np.int64)
    exps = keys.view(np.float64)
    exps[1::2] = 0.0
    return keys, exps


def tw_capacity(s: dict) -> int:
    return s["tw_key"].size // 2


def _hash(keys: np.ndarray, mask: int) -> np.ndarray:
    h = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    shift = np.uint64(tw_shift(mask + 1))
    return (h >> shift).astype(np.int64) & mask


def grow(s: dict, code: int) -> None:
    """Enlarge what the kernel ran out of (in place in the dict)."""
    si = s["si"]
    if code == GROW_CONN:
        old = capacity(s)
        new = old * 2
        for f in ("c_end", "c_serial", "heap", "hkey", "c_t0", "c_life", "llist"):
            a = heap_array(new, s[f].dtype) if f in ("heap", "hkey") else np.zeros(new, s[f].dtype)
            a[:old] = s[f]
            s[f] = a
        a = new_records(new)
        a[:old * REC] = s["crec"]
        s["crec"] = a
        top = int(si[FREE_TOP])
        ids = np.empty(new, np.int32)
        ids[:top] = s["ids"][:top]
        extra = np.arange(new - 1, old - 1, -1, dtype=np.int32)
        ids[top:top + extra.size] = extra
        s["ids"] = ids
        si[FREE_TOP] = top + extra.size
    elif code == GROW_TW:
        keys, exps = s["tw_key"][0::2], s["tw_exp"][1::2]
        live = keys >= 0
        new = tw_capacity(s) * 2
        mask = new - 1
        nk, ne = new_tw_table(new)
        lk, le = keys[live], exps[live]
        homes = _hash(lk, mask)
        for key, e, h in zip(lk.tolist(), le.tolist(), homes.tolist()):
            while nk[2 * h] >= 0:
                h = (h + 1) & mask
            nk[2 * h] = key
            ne[2 * h + 1] = e
        s["tw_key"], s["tw_exp"] = nk, ne
        si[TW_SHIFT] = tw_shift(new)
    elif code == GROW_TWQ:
        head, n = int(si[TWQ_HEAD]), int(si[TWQ_N])
        cap = s["twq_key"].size
        idx = (head + np.arange(n)) % cap
        for f in ("twq_key", "twq_exp"):
            a = np.zeros(cap * 2, s[f].dtype)
            a[:n] = s[f][idx]
            s[f] = a
        si[TWQ_HEAD] = 0


_M64 = (1 << 64) - 1


def pcg_load(bitgen) -> np.ndarray:
    """PCG64 state as uint64[4] (state high, low, increment high, low) for the numba kernels."""
    st = bitgen.state["state"]
    return np.array([st["state"] >> 64, st["state"] & _M64, st["inc"] >> 64, st["inc"] & _M64],
                    np.uint64)


def pcg_store(bitgen, words: np.ndarray) -> None:
    """Write the kernels' PCG64 state back: the bit generator goes on from there."""
    full = bitgen.state
    full["state"]["state"] = (int(words[0]) << 64) | int(words[1])
    bitgen.state = full


def state_bytes(s: dict) -> int:
    """Bytes of state, each buffer once (the TIME_WAIT table's two arrays share one)."""
    seen = {}
    for a in s.values():
        base = a.base if isinstance(a.base, np.ndarray) else a
        seen[id(base)] = base.nbytes
    return int(sum(seen.values()))
