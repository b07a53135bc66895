"""The flat state every backend works on: a tuple of NumPy arrays, laid out once here.

The heart of it is one slot per (NAT ip, port, node): `slot_end`, the end time of its last holder,
and `slot_tgt`, that holder's target (-1: the port is held without a 4-tuple, by a connect that is
retrying). A slot is live at t iff end > t and its target is set; its port is free for the node at t
iff end + reuse_delay <= t; a retrying connect holds it with end = +inf. Nothing is done when a
connection ends (docs/engine.md). The other arrays are small, or exist only while the scenario
asks for what they serve (TIME_WAIT, retries, the `full` estimate's running sums).

Arrays that can run out (retries, TIME_WAIT records, the `full` estimate's events) make the kernel
return a GROW code before the arrival that could need more; `grow` enlarges them and the kernel
goes on where it stopped.
"""
from __future__ import annotations

import mmap

import numpy as np

from . import params as C

# scalar slots in si (int64)
(CONN, EST, AFAIL, FAILED, COLL, RESETS, TWHITS, PAIRS, DELAYED, PENDING, CA_SEC, CA_USED, PEAK,
 SAMPLE_I, FIRST_SEEN, PD_TOP, HEAP_N, PD_SERIAL, TW_INS, EV_LOG, EV_FULL, EV_CUR, PLACE_I,
 PLACE_N, STARTED, TRIES) = range(26)
N_SI = 26
# scalar slots in sf (float64): the next arrival, the time every event before it is done, the
# first measured collision (seconds into the window; -1: none yet), 1 / the estimate's batch width
NEXT_ARR, NOW, FIRST, BSCALE = range(4)
N_SF = 4
BATCH_DOUBLINGS = 20       # the batches start 2**20 times narrower than horizon / NBATCH
# per destination (ip, node), DW int64 each in `dest`: an upper bound of the ports it holds (exact
# after a recount), the sequential cursor, Linux's epoch, offset and perturbation (padded to 8)
DW = 8
D_UB, D_CURSOR, D_LIN_EPOCH, D_LIN_OFF, D_LIN_PERT = range(5)
# per port pool (random: a destination; eim: a NAT ip), HW int64 each in `pool`: the pool's mode
# (0: rejection over all ports; 1: rejection over the horizon list), the list's length, the
# failed tries since the last count; the horizon time is in `pool_th`
HW = 4
H_MODE, H_LEN, H_MISS = range(3)
# `full` estimate (docs/engine.md): counters `est` ((A, F, T) per destination, then (S, DUP) per
# (ip, zone)), scratch for one row's contents (`est_f`, `est_i`), the segments of EV_NC windows of
# queued changes (`ev_q`: (time, code) pairs, EV_NC segments of a capacity that grows; `ev_n` their
# counts), the log of changes now (`ev_log`, (time, code) pairs, LOG entries), and the sort's scratch
# (`ev_sort`, `ev_cnt`)
EV_NC = 64
LOG = 4096
# TIME_WAIT records: buckets of 8 float64 = 64 bytes: three (key, expiry) pairs and the overflow
# mark (the latest expiry of any record stored past this bucket from a home at or before it)
TWB = 8
TW_OVF = 6

# kernel return codes
DONE, BUDGET, FIRST_HIT, GROW_PEND, GROW_TW, GROW_EV = range(6)

FIELDS = ("si", "sf", "slot_end", "slot_tgt", "dest", "pool", "pool_th", "hl_list", "hl_pos",
          "cl_node", "cl_exp", "ntl", "tw", "pd_slot", "pd_tgt", "pd_retry", "pd_flags",
          "pd_serial", "pd_t0", "pd_life", "pd_at", "pd_stack", "heap", "est", "est_f", "est_i",
          "ev_q", "ev_n", "ev_log", "ev_sort", "ev_cnt", "batches", "dhist", "place_life",
          "place_order")


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


HUGE = 2 << 20          # transparent huge pages: 2 MiB


def line_aligned(count: int, dtype, fill) -> np.ndarray:
    """A 1-d array that starts a 64-byte cache line (NumPy aligns to 16 bytes only). Arrays of a
    megabyte or more are read at random by the kernels: they get memory of their own, aligned to
    2 MiB and advised to use transparent huge pages, where 4 KiB pages would cost a TLB miss on
    most accesses (madvise mode, the usual default; elsewhere the advice is a no-op)."""
    dtype = np.dtype(dtype)
    nbytes = count * dtype.itemsize
    if nbytes >= (1 << 20) and hasattr(mmap, "MADV_HUGEPAGE"):
        size = -(-nbytes // HUGE) * HUGE + HUGE
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE)
        raw = np.frombuffer(m, np.uint8)
        off = (-raw.ctypes.data) % HUGE
        arr = raw[off:off + nbytes].view(dtype)
        arr.fill(fill)
        return arr
    per_line = 64 // dtype.itemsize
    buf = np.full(count + per_line, fill, dtype)
    off = (-buf.ctypes.data % 64) // dtype.itemsize
    return buf[off:off + count]


def new_state(pi: np.ndarray, pf: np.ndarray, xa: np.ndarray) -> dict:
    k, n, ports = int(pi[C.K]), int(pi[C.N]), int(pi[C.P])
    dests = k * n
    pools = k if pi[C.ALLOC] == 3 else dests
    listed = pi[C.ALLOC] in (0, 3)
    slots = dests * ports
    s = {}
    s["si"] = np.zeros(N_SI, np.int64)
    s["si"][CA_SEC] = -1
    s["sf"] = np.zeros(N_SF, np.float64)
    s["sf"][FIRST] = -1.0
    s["sf"][NEXT_ARR] = np.inf
    s["sf"][BSCALE] = pf[C.BATCH_SCALE] * 2.0 ** BATCH_DOUBLINGS
    s["slot_end"] = line_aligned(slots, np.float64, -np.inf)
    s["slot_tgt"] = line_aligned(slots, np.int32, -1)
    dest = np.zeros(dests * DW, np.int64)
    dest[D_CURSOR::DW] = -1
    dest[D_LIN_EPOCH::DW] = -1
    s["dest"] = dest
    s["pool"] = np.zeros(pools * HW, np.int64)
    s["pool_th"] = np.zeros(pools, np.float64)
    s["hl_list"] = line_aligned(pools * ports if listed else 1, np.int32, 0)
    s["hl_pos"] = line_aligned(pools * ports if listed else 1, np.int32, -1)
    clients = int(pi[C.CLIENTS]) if pi[C.NEED_CLIENT] else 1
    s["cl_node"] = np.zeros(clients, np.int64)
    s["cl_exp"] = np.full(clients, -np.inf, np.float64)
    s["ntl"] = np.zeros(int(pi[C.NTL_SIZE]), np.int64)
    if pi[C.TW_ON]:
        live = pf[C.RATE] * pf[C.SCF] * (pf[C.MEAN] + pf[C.TW])
        rates = xa[2 * int(pi[C.EMP_N]) + int(pi[C.SCHED_N]):2 * int(pi[C.EMP_N]) + 2 * int(pi[C.SCHED_N])]
        if rates.size:
            live *= max(1.0, float(rates.max()) / max(float(pf[C.RATE]), 1e-300))
        # at most one entry per 4-tuple (NAT ip, port, target): a long time_wait fills no more
        live = min(live, float(pi[C.K]) * float(pi[C.P]) * float(pi[C.B]))
        buckets = _pow2(int(min(live, 1e8) * 4 / 3) + 16)
    else:
        buckets = 1
    s["tw"] = new_tw(buckets)
    cap = 1024 if pi[C.DELAYS] else 1
    s.update(new_pending(cap))
    s["si"][PD_TOP] = cap
    sums = bool(pi[C.SUMS])
    zones = int(pi[C.ZONES])
    est = np.zeros(3 * dests + 2 * k * zones if sums else 3, np.int64)
    est[1:3 * dests:3] = ports                  # every port free
    s["est"] = est
    s["est_f"] = np.zeros(4 * n if sums else 1, np.float64)   # (see _core_python.row_contrib)
    s["est_i"] = np.zeros(8 * n if sums else 1, np.int64)
    cap = max(int(pi[C.EV_CCAP]), 2 * events_max(n)) if sums else 0
    s["ev_q"] = np.zeros(2 * EV_NC * cap if sums else 2, np.float64)
    s["ev_n"] = np.zeros(EV_NC, np.int64)
    s["ev_log"] = np.zeros(2 * max(LOG, 2 * events_max(n)) if sums else 2, np.float64)
    s["ev_sort"] = np.zeros(3 * cap if sums else 3, np.float64)   # pairs, then the sort's keys
    s["ev_cnt"] = np.zeros(int(pi[C.EV_NSUB]) + 1 if sums else 1, np.int64)
    s["batches"] = np.zeros(int(pi[C.NBATCH]), np.float64)
    s["dhist"] = np.zeros(max(1, int(pi[C.SYN_N])), np.int64)
    s["place_life"] = np.zeros(1, np.float64)
    s["place_order"] = np.zeros(1, np.int64)
    return s


def events_max(n: int) -> int:
    """What one arrival can log or queue (_core_python.est_events_max)."""
    return 4 * n + 4 + 8 * n * n + 4 * n


def new_tw(buckets: int) -> np.ndarray:
    """An empty TIME_WAIT table: keys -1, expiries and overflow marks -inf."""
    tw = line_aligned(buckets * TWB, np.float64, -np.inf)
    tw.reshape(buckets, TWB)[:, 0:6:2] = -1.0
    return tw


def new_pending(cap: int) -> dict:
    """Records of connects that retry (delay-new), a stack of free ids, a heap of ids."""
    return {"pd_slot": np.zeros(cap, np.int64), "pd_tgt": np.zeros(cap, np.int64),
            "pd_retry": np.zeros(cap, np.int64), "pd_flags": np.zeros(cap, np.int64),
            "pd_serial": np.zeros(cap, np.int64), "pd_t0": np.zeros(cap, np.float64),
            "pd_life": np.zeros(cap, np.float64), "pd_at": np.zeros(cap, np.float64),
            "pd_stack": np.arange(cap, dtype=np.int64)[::-1].copy(),
            "heap": np.zeros(cap, np.int64)}


def as_tuple(s: dict) -> tuple:
    return tuple(s[f] for f in FIELDS)


def set_placement(s: dict, life: np.ndarray, order: np.ndarray) -> None:
    """The stationary connections to place at t = 0, oldest first (`order` into `life`)."""
    s["place_life"] = np.ascontiguousarray(life, np.float64) if life.size else np.zeros(1)
    s["place_order"] = np.ascontiguousarray(order, np.int64) if order.size else np.zeros(1, np.int64)
    s["si"][PLACE_N] = order.size
    s["si"][PLACE_I] = 0


def grow(s: dict, code: int, t: float, tw_rehash) -> None:
    """Enlarge what the kernel ran out of (in place in the dict); `tw_rehash(old, new, t)` is the
    backend's kernel that moves the live TIME_WAIT records."""
    si = s["si"]
    if code == GROW_PEND:
        old = s["pd_slot"].size
        new = new_pending(2 * old)
        for f in ("pd_slot", "pd_tgt", "pd_retry", "pd_flags", "pd_serial", "pd_t0", "pd_life",
                  "pd_at", "heap"):
            new[f][:old] = s[f]
        top = int(si[PD_TOP])               # the free ids: the old stack, then the new ids
        stack = new["pd_stack"]
        stack[:top] = s["pd_stack"][:top]
        stack[top:top + old] = np.arange(2 * old - 1, old - 1, -1)
        si[PD_TOP] = top + old
        s.update(new)
    elif code == GROW_TW:
        old = s["tw"]
        live = int(np.count_nonzero(old.reshape(-1, TWB)[:, 1:6:2] > t))
        buckets = old.size // TWB
        while 4 * live > 3 * buckets:              # live records at most a quarter of the entries
            buckets *= 2
        if buckets > old.size // TWB:              # (else the table stays: dead entries are taken
            new = new_tw(buckets)                  # again in place, and an overflow mark dies with
            tw_rehash(old, new, t)                 # the last expiry it covers; only the count of
            s["tw"] = new                          # inserts since the last look starts afresh)
        si[TW_INS] = live
    elif code == GROW_EV:                         # a window's segment is nearly full: double
        old = s["ev_q"].reshape(EV_NC, -1, 2)      # every segment's room
        cap = old.shape[1]
        new = np.zeros((EV_NC, 2 * cap, 2), np.float64)
        new[:, :cap] = old
        s["ev_q"] = new.reshape(-1)
        s["ev_sort"] = np.zeros(6 * cap, np.float64)
        si[EV_FULL] = 0


def tw_capacity(tw: np.ndarray) -> int:
    """Records the kernel may insert before asking for a rehash (the kernels compute it alike):
    half of the entries, so a probe always finds a dead entry near home."""
    return (tw.size // TWB) * 3 // 2


def state_bytes(s: dict) -> int:
    """Bytes of state."""
    return int(sum(a.nbytes for a in s.values()))


def size(scenario, estimate=None) -> tuple[float, float, float]:
    """(state bytes, connections simulated, live connections) of one run, before anything is
    allocated (collide.sizing). The stationary start's arrays (24 bytes per placed connection)
    are not included."""
    from .params import EST_FULL, ESTIMATES, calendar_shape, collidable, resolve_estimate, time_line
    nat, lb, tr, tg = scenario.nat, scenario.load_balancer, scenario.traffic, scenario.target
    k, n, ports = nat.ips, lb.total_nodes, nat.ports
    slots = float(k) * n * ports
    est = ESTIMATES.index(resolve_estimate(scenario, estimate))
    sums = est == EST_FULL and nat.allocator == "random" and collidable(scenario)
    nbytes = slots * 12
    if nat.allocator in ("random", "eim"):
        pools = k if nat.allocator == "eim" else k * n
        nbytes += 8.0 * pools * ports
    peak = max([tr.rate_before] + [r for _, r in tr.schedule])
    live = float(scenario.mean_live)
    if tg.time_wait > 0 and tg.server_close_fraction > 0 and lb.client_ip_preservation:
        entries = min(peak * tg.server_close_fraction * (tr.duration.mean + tg.time_wait),
                      float(k) * ports * lb.total_targets)      # one per 4-tuple at most
        nbytes += 64 * 4.0 / 3 * entries
    if sums:
        _, _, cap = calendar_shape(scenario)
        nbytes += 16.0 * (EV_NC + 1) * cap + 16.0 * LOG
    if not lb.client_ip_preservation:
        nbytes += 8.0 * min(n * lb.total_targets, 1 << 22)
    start, end = time_line(scenario)
    conns = tr.mean_rate * tr.horizon + tr.rate_before * start
    return nbytes, conns, live
