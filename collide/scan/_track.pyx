# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled tracker of `collide scan` (issue 25): `collide/scan/track.py` written again for
speed, step for step, with the same answer. The reference is the Python module: read it first; the
comments here only say where the two differ in form. tests/test_scan_track.py holds them to the same
output on every fixture and on fuzzed input.

In form: the 4-tuples live in an open-addressing table of C keys (client endpoint, server endpoint)
pointing into a list of `Slot` objects, rebuilt when the eviction removes slots; connections are
`Conn` extension objects with C fields (`NONE` stands for the reference's None in time fields,
-1 in sequence fields); counters are C integers. Slots are visited in the order they were made, as
the reference's dict is. What is rare (a collision's evidence, a TIME_WAIT hit, a moved SYN, the
sources and targets counted per arrival) stays in Python objects, as in the reference.

Also here: `Dedupe`, the filter that drops a packet seen again (the same capture given twice,
pieces that overlap, both sides of a bridge): the same addresses, ports, sequence and
acknowledgment numbers, flags, length, IPv4 ID and TSval within DUP_WINDOW_NS. Both trackers read
what it leaves.
"""
from libc.math cimport floor
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset

import random

import numpy as np
cimport numpy as cnp

cnp.import_array()

from . import track as _reference
from .track import ARRIVALS_KEPT, CHALLENGE_WINDOW, OUTCOMES, PENDING_LIFE, outcome
from .track import PREV_KEPT as _PREV_KEPT
from .track import SYN_WINDOW as _SYN_WINDOW

cdef enum:
    SYN = 0x02
    FIN = 0x01
    RST = 0x04
    ACK = 0x10
    SYN_RECV = 1
    SYNCED = 2

cdef int64_t MASK = 0xFFFFFFFF
cdef int64_t HALF = 0x80000000
cdef int64_t SYN_WINDOW = _SYN_WINDOW
cdef int PREV_KEPT = _PREV_KEPT
assert PREV_KEPT <= 4, "Slot.prev holds 4"
cdef double NONE = -1e300            # the reference's None in a time field
cdef double WINDOW = CHALLENGE_WINDOW
cdef double PENDING = PENDING_LIFE
cdef Py_ssize_t KEPT = ARRIVALS_KEPT
#: a duplicate is seen again within this (copies on both sides of a bridge are microseconds apart,
#: the same file given twice or overlapping pieces have the very same times)
DUP_WINDOW_NS = 1_000_000


cdef inline bint _near(int64_t a, int64_t b) noexcept nogil:
    cdef uint64_t d = <uint64_t>((a - b) & MASK)
    return d < (1 << 20) or d > (<uint64_t>1 << 32) - (1 << 20)


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 30
    x *= <uint64_t>0xBF58476D1CE4E5B9
    x ^= x >> 27
    x *= <uint64_t>0x94D049BB133111EB
    x ^= x >> 31
    return x


# -- duplicates -------------------------------------------------------------------------------------
cdef class Dedupe:
    """Drop packets seen again within DUP_WINDOW_NS (`__call__(chunk)` returns the chunk without
    them; `dropped` counts them). Two hash tables of fingerprints, one per window-wide generation
    of time, so every packet within the window before this one is looked up and nothing older is
    kept."""
    cdef uint64_t* fp[2]
    cdef int64_t* ts[2]
    cdef Py_ssize_t cap[2]
    cdef Py_ssize_t used[2]
    cdef int64_t gen[2]
    cdef int cur
    cdef int64_t window
    cdef public long long dropped

    def __cinit__(self, int64_t window=DUP_WINDOW_NS):
        cdef int i
        self.window = max(1, window)
        for i in range(2):
            self.cap[i] = 4096
            self.fp[i] = <uint64_t*>calloc(self.cap[i], sizeof(uint64_t))
            self.ts[i] = <int64_t*>calloc(self.cap[i], sizeof(int64_t))
            if self.fp[i] == NULL or self.ts[i] == NULL:
                raise MemoryError()
            self.used[i] = 0
            self.gen[i] = -(1 << 62)
        self.cur = 0
        self.dropped = 0

    def __dealloc__(self):
        cdef int i
        for i in range(2):
            free(self.fp[i])
            free(self.ts[i])

    cdef void _clear(self, int i) noexcept:
        memset(self.fp[i], 0, self.cap[i] * sizeof(uint64_t))
        self.used[i] = 0

    cdef int _grow(self, int i) except -1:
        cdef Py_ssize_t oc = self.cap[i], nc = oc * 2, k, j
        cdef uint64_t* of = self.fp[i]
        cdef int64_t* ot = self.ts[i]
        cdef uint64_t* nf = <uint64_t*>calloc(nc, sizeof(uint64_t))
        cdef int64_t* nt = <int64_t*>calloc(nc, sizeof(int64_t))
        if nf == NULL or nt == NULL:
            free(nf)
            free(nt)
            raise MemoryError()
        for k in range(oc):
            if of[k] != 0:
                j = <Py_ssize_t>(_mix(of[k]) & <uint64_t>(nc - 1))
                while nf[j] != 0:
                    j = (j + 1) & (nc - 1)
                nf[j] = of[k]
                nt[j] = ot[k]
        free(of)
        free(ot)
        self.fp[i], self.ts[i], self.cap[i] = nf, nt, nc
        return 0

    cdef bint _seen(self, int i, uint64_t f, int64_t t) noexcept:
        """Is f in table i within the window before t? (f's newest time is kept.)"""
        cdef Py_ssize_t m = self.cap[i] - 1
        cdef Py_ssize_t j = <Py_ssize_t>(_mix(f) & <uint64_t>m)
        while self.fp[i][j] != 0:
            if self.fp[i][j] == f:
                return t - self.ts[i][j] <= self.window
            j = (j + 1) & m
        return False

    cdef int _put(self, int i, uint64_t f, int64_t t) except -1:
        cdef Py_ssize_t m, j
        if 2 * (self.used[i] + 1) > self.cap[i]:
            self._grow(i)
        m = self.cap[i] - 1
        j = <Py_ssize_t>(_mix(f) & <uint64_t>m)
        while self.fp[i][j] != 0:
            if self.fp[i][j] == f:
                self.ts[i][j] = t
                return 0
            j = (j + 1) & m
        self.fp[i][j] = f
        self.ts[i][j] = t
        self.used[i] += 1
        return 0

    def __call__(self, dict ch):
        cdef const int64_t[::1] ts = ch["ts"]
        cdef const uint64_t[::1] src = ch["src"]
        cdef const uint64_t[::1] dst = ch["dst"]
        cdef const uint16_t[::1] sport = ch["sport"]
        cdef const uint16_t[::1] dport = ch["dport"]
        cdef const uint32_t[::1] seq = ch["seq"]
        cdef const uint32_t[::1] ack = ch["ack"]
        cdef const uint8_t[::1] flags = ch["flags"]
        cdef const uint32_t[::1] plen = ch["plen"]
        cdef const uint32_t[::1] tsval = ch["tsval"]
        cdef const uint32_t[::1] ipid = ch["ipid"]
        cdef Py_ssize_t n = ts.shape[0], i
        cdef int64_t g, t
        cdef uint64_t f
        cdef int c
        keep = np.ones(n, dtype=np.bool_)
        cdef uint8_t[::1] k = keep.view(np.uint8)
        cdef long long dropped = 0
        for i in range(n):
            t = ts[i]
            g = t // self.window if t >= 0 else -((-t + self.window - 1) // self.window)
            c = self.cur
            if g != self.gen[c]:
                if g == self.gen[c] + 1:           # the next generation: the older one goes
                    c = 1 - c
                else:                              # a jump: both go
                    self._clear(1 - c)
                    self.gen[1 - c] = g - 1
                    c = 1 - c
                self._clear(c)
                self.gen[c] = g
                self.cur = c
            f = _mix(src[i] * <uint64_t>0x9E3779B97F4A7C15 ^ dst[i])
            f = _mix(f ^ ((<uint64_t>sport[i] << 48) | (<uint64_t>dport[i] << 32) | seq[i]))
            f = _mix(f ^ ((<uint64_t>ack[i] << 32) | (<uint64_t>flags[i] << 24) | (plen[i] & 0xFFFFFF)))
            f = _mix(f ^ ((<uint64_t>tsval[i] << 32) | ipid[i]))
            if f == 0:
                f = 1
            if self._seen(c, f, t) or self._seen(1 - c, f, t):
                k[i] = 0
                dropped += 1
            else:
                self._put(c, f, t)
        if dropped == 0:
            return ch
        self.dropped += dropped
        idx = np.nonzero(keep)[0]
        return {key: v[idx] for key, v in ch.items()}


# -- the tracker ------------------------------------------------------------------------------------
# -- a C map (two 64-bit keys -> a count or an index) ---------------------------------------------
cdef class CMap:
    """Open addressing with linear probing and backward-shift deletion, so that it needs no
    rebuilding however many keys come and go."""
    cdef uint64_t* k1
    cdef uint64_t* k2
    cdef int64_t* v
    cdef uint8_t* used
    cdef Py_ssize_t cap, n

    def __cinit__(self, Py_ssize_t cap=1024):
        self.cap = 1
        while self.cap < cap:
            self.cap *= 2
        self.n = 0
        self.k1 = <uint64_t*>calloc(self.cap, sizeof(uint64_t))
        self.k2 = <uint64_t*>calloc(self.cap, sizeof(uint64_t))
        self.v = <int64_t*>calloc(self.cap, sizeof(int64_t))
        self.used = <uint8_t*>calloc(self.cap, sizeof(uint8_t))
        if self.k1 == NULL or self.k2 == NULL or self.v == NULL or self.used == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.k1)
        free(self.k2)
        free(self.v)
        free(self.used)

    def __len__(self):
        return self.n

    cdef inline Py_ssize_t _home(self, uint64_t a, uint64_t b) noexcept:
        return <Py_ssize_t>(_mix(a * <uint64_t>0x9E3779B97F4A7C15 ^ b) & <uint64_t>(self.cap - 1))

    cdef inline Py_ssize_t _find(self, uint64_t a, uint64_t b) noexcept:
        cdef Py_ssize_t j = self._home(a, b)
        while self.used[j]:
            if self.k1[j] == a and self.k2[j] == b:
                return j
            j = (j + 1) & (self.cap - 1)
        return -1 - j                        # where it would go

    cdef int _grow(self) except -1:
        cdef Py_ssize_t oc = self.cap, i, j
        cdef uint64_t* o1 = self.k1
        cdef uint64_t* o2 = self.k2
        cdef int64_t* ov = self.v
        cdef uint8_t* ou = self.used
        self.cap = 2 * oc
        self.k1 = <uint64_t*>calloc(self.cap, sizeof(uint64_t))
        self.k2 = <uint64_t*>calloc(self.cap, sizeof(uint64_t))
        self.v = <int64_t*>calloc(self.cap, sizeof(int64_t))
        self.used = <uint8_t*>calloc(self.cap, sizeof(uint8_t))
        if self.k1 == NULL or self.k2 == NULL or self.v == NULL or self.used == NULL:
            raise MemoryError()
        for i in range(oc):
            if ou[i]:
                j = -1 - self._find(o1[i], o2[i])
                self.k1[j], self.k2[j], self.v[j], self.used[j] = o1[i], o2[i], ov[i], 1
        free(o1)
        free(o2)
        free(ov)
        free(ou)
        return 0

    cdef int64_t get(self, uint64_t a, uint64_t b, int64_t missing) noexcept:
        cdef Py_ssize_t j = self._find(a, b)
        return self.v[j] if j >= 0 else missing

    cdef int put(self, uint64_t a, uint64_t b, int64_t value) except -1:
        cdef Py_ssize_t j = self._find(a, b)
        if j < 0:
            if 2 * (self.n + 1) > self.cap:
                self._grow()
                j = self._find(a, b)
            j = -1 - j
            self.k1[j], self.k2[j], self.used[j] = a, b, 1
            self.n += 1
        self.v[j] = value
        return 0

    cdef int64_t pop(self, uint64_t a, uint64_t b, int64_t missing) noexcept:
        """Remove (a, b); its value, or `missing`. The keys after it in its run move back."""
        cdef Py_ssize_t j = self._find(a, b), k, h
        cdef int64_t value
        cdef Py_ssize_t m = self.cap - 1
        if j < 0:
            return missing
        value = self.v[j]
        self.used[j] = 0
        self.n -= 1
        k = (j + 1) & m
        while self.used[k]:
            h = self._home(self.k1[k], self.k2[k])
            # move k back to j when its home is not in (j, k] (cyclically)
            if (j <= k and (h <= j or h > k)) or (j > k and (h <= j and h > k)):
                self.k1[j], self.k2[j], self.v[j], self.used[j] = \
                    self.k1[k], self.k2[k], self.v[k], 1
                self.used[k] = 0
                j = k
            k = (k + 1) & m
        return value

    cdef int64_t add(self, uint64_t a, uint64_t b, int64_t delta) except? -1:
        """value += delta (from 0 when absent); a value of 0 removes the key. The new value."""
        cdef int64_t nv = self.get(a, b, 0) + delta
        if nv == 0:
            self.pop(a, b, 0)
        else:
            self.put(a, b, nv)
        return nv


cdef class RunCounter:
    """counts[key] += 1 for keys that come in runs (the target, the second of an arrival): the
    current run is counted in C and added to the dict when the key changes or on `flush`."""
    cdef dict counts
    cdef int64_t key
    cdef long long run
    cdef bint on

    def __cinit__(self):
        self.counts = {}
        self.on = False
        self.run = 0

    cdef inline int count(self, int64_t k) except -1:
        if self.on and k == self.key:
            self.run += 1
        else:
            self.flush()
            self.key = k
            self.run = 1
            self.on = True
        return 0

    cdef dict flush(self):
        if self.on and self.run:
            self.counts[self.key] = self.counts.get(self.key, 0) + self.run
            self.run = 0
        return self.counts


cdef class Slot


cdef class Conn:
    cdef int64_t isn            # -1: None
    cdef double t0, t_synack, t_last, t_last_syn, c_fin, s_fin, end
    cdef bint midlife, live
    cdef long syns
    cdef object how
    cdef int64_t c_next         # -1: None
    cdef object record, victim_of, tw_record
    cdef uint64_t client        # the client's address
    cdef int state
    cdef Slot pslot             # the 4-tuple where this attempt is pending

    def __cinit__(self):
        self.victim_of = None


cdef Conn _conn(int64_t isn, double t0, bint midlife):
    cdef Conn c = Conn.__new__(Conn)
    c.isn = isn
    c.t0 = t0
    c.midlife = midlife
    c.t_synack = NONE
    c.t_last = t0
    c.syns = 0 if midlife else 1
    c.t_last_syn = NONE if midlife else t0
    c.c_fin = NONE
    c.s_fin = NONE
    c.end = NONE
    c.how = None
    c.c_next = -1
    c.record = None
    c.tw_record = None
    c.client = 0
    c.state = SYNCED if midlife else 0
    c.live = False
    c.pslot = None
    return c


cdef class Slot:
    """A 4-tuple. Its pending attempts (the reference's dict by ISN, in insertion order) are `p0`
    and, rarely, more in `pmore`."""
    cdef Conn holder
    cdef Conn p0
    cdef list pmore
    cdef double tw_until, last
    cdef Conn tw_conn
    cdef int64_t prev[4]           # the reference's Slot.prev (PREV_KEPT), latest first
    cdef int nprev
    cdef int64_t old_ack           # -1: None
    cdef uint64_t cl, tg
    cdef long long serial
    cdef int32_t ix                # its place in the tracker's slot list


cdef inline bint _pany(Slot s) noexcept:
    return s.p0 is not None


cdef Conn _pget(Slot s, int64_t isn):
    if s.p0 is None:
        return None
    if s.p0.isn == isn:
        return s.p0
    if s.pmore is not None:
        for c in s.pmore:
            if (<Conn>c).isn == isn:
                return <Conn>c
    return None


cdef _padd(Slot s, Conn c):
    c.pslot = s
    if s.p0 is None:
        s.p0 = c
    else:
        if s.pmore is None:
            s.pmore = []
        s.pmore.append(c)


cdef Conn _ppop(Slot s, int64_t isn):
    cdef Conn r
    cdef Py_ssize_t i
    if s.p0 is None:
        return None
    if s.p0.isn == isn:
        r = s.p0
        if s.pmore:
            s.p0 = <Conn>s.pmore.pop(0)
            if not s.pmore:
                s.pmore = None
        else:
            s.p0 = None
        r.pslot = None
        return r
    if s.pmore is not None:
        for i in range(len(s.pmore)):
            r = <Conn>s.pmore[i]
            if r.isn == isn:
                del s.pmore[i]
                if not s.pmore:
                    s.pmore = None
                r.pslot = None
                return r
    return None


cdef list _plist(Slot s):
    if s.p0 is None:
        return []
    if s.pmore is None:
        return [s.p0]
    return [s.p0] + s.pmore


cdef inline bint _old_segment(Slot slot, Conn h, int64_t seq) noexcept:
    # the reference's _old_segment
    cdef int64_t ref = h.c_next
    cdef int i
    if ref < 0 and h.isn >= 0:
        ref = (h.isn + 1) & MASK
    for i in range(slot.nprev):
        if _near(seq, slot.prev[i]):
            return ref < 0 or not _near(seq, ref) or ((seq - ref) & MASK) >= HALF
    return False


cdef inline void _remember(Slot slot, Conn h) noexcept:
    # the reference's _remember
    cdef int64_t p = h.c_next
    cdef int i
    if p < 0:
        if h.isn < 0:
            return
        p = (h.isn + 1) & MASK
    if slot.nprev < PREV_KEPT:
        slot.nprev += 1
    for i in range(slot.nprev - 1, 0, -1):
        slot.prev[i] = slot.prev[i - 1]
    slot.prev[0] = p


cdef inline bint _rst_resets(Conn h, int64_t seq) noexcept:
    # the reference's _rst_resets
    cdef int64_t n = h.c_next
    if n < 0 or seq == n:
        return True
    if h.c_fin != NONE and seq == ((n - 1) & MASK):
        return True
    return h.state == SYN_RECV and ((seq - n) & MASK) < SYN_WINDOW


cdef inline object _opt_t(double x):
    return None if x == NONE else x


cdef class Tracker:
    """The compiled tracker (see `collide.scan.track.Tracker`, whose interface it has)."""
    cdef uint16_t ports_c[64]
    cdef int nports
    cdef public object ports
    cdef double time_wait, idle
    cdef bint client_side
    cdef public bint prefilter
    # the 4-tuple table
    cdef uint64_t* k_cl
    cdef uint64_t* k_tg
    cdef int32_t* k_ix
    cdef Py_ssize_t kcap, kused
    cdef list slot_list
    cdef list free_ix
    cdef long long serial
    cdef public Py_ssize_t nslots
    cdef CMap pending_isn              # (client address, isn) -> the slot where it is pending
    cdef CMap live_ends                # (client endpoint, service port) -> live holders
    # counters
    cdef long long n_packets, n_other_port, n_syns, n_arrivals, n_retx, n_collisions, n_tw_hits
    cdef long long n_stale, n_new, n_moved, n_midlife, n_challenge, n_client_rsts, n_evicted
    cdef long long n_server_close, n_client_close, n_resets, n_overlaps, n_tw_accepted
    cdef long long n_tw_acked, n_tw_acks, n_tw_rsts, n_syn_recv, n_refused
    cdef public list collisions, tw_hits, stale_hits
    cdef public long keep, sample_size, sample_seen
    cdef object rng
    cdef public dict unlisted_outcomes
    cdef public object nodes_bound_at
    cdef double _next_evict, _t_first, _t_last, _first_arr, _last_arr
    cdef public Py_ssize_t live_peak
    cdef public long nodes_bound, port_min, port_max, other_sources, max_sources
    # per arrival, kept in C: the lifetime sample, the arrival log, and counts per source, target
    # and second, each cached for the key last counted (arrivals come in runs) and flushed to
    # the dicts the reference keeps when the key changes or the dicts are read
    cdef double* s_life
    cdef double* s_end
    cdef Py_ssize_t s_n
    cdef double* a_t
    cdef uint64_t* a_cl
    cdef uint64_t* a_sv
    cdef Py_ssize_t a_n, a_cap
    cdef dict _sources
    cdef RunCounter _targets, _bins
    cdef uint64_t src_key
    cdef long long src_add
    cdef bint src_on

    def __cinit__(self):
        self.k_cl = NULL
        self.k_tg = NULL
        self.k_ix = NULL
        self.s_life = NULL
        self.s_end = NULL
        self.a_t = NULL
        self.a_cl = NULL
        self.a_sv = NULL

    def __init__(self, ports, *, time_wait=60.0, idle_timeout=350.0, side="target",
                 sample=100_000, keep=10_000, seed=1, prefilter=True):
        self.prefilter = prefilter
        self.ports = np.array(sorted(ports), dtype=np.uint16)
        if self.ports.size > 64:
            raise ValueError("at most 64 service ports")
        self.nports = self.ports.size
        for i in range(self.nports):
            self.ports_c[i] = self.ports[i]
        self.time_wait = float(time_wait)
        self.idle = float(idle_timeout)
        self.client_side = side == "client"
        self._table(1024)
        self.slot_list = []
        self.free_ix = []
        self.serial = 0
        self.nslots = 0
        self.pending_isn = CMap(1024)
        self.live_ends = CMap(1024)
        self.collisions, self.tw_hits, self.stale_hits = [], [], []
        self.keep = keep
        self.sample_size = max(0, sample)
        self.s_life = <double*>calloc(max(1, self.sample_size), sizeof(double))
        self.s_end = <double*>calloc(max(1, self.sample_size), sizeof(double))
        if self.s_life == NULL or self.s_end == NULL:
            raise MemoryError()
        self.s_n = 0
        self.sample_seen = 0
        self.rng = random.Random(seed)
        self._sources = {}
        self._targets, self._bins = RunCounter(), RunCounter()
        self.src_on = False
        self._t_first = self._t_last = self._first_arr = self._last_arr = NONE
        self.live_peak = 0
        self._next_evict = NONE
        self.nodes_bound = 1
        self.nodes_bound_at = None
        self.port_min, self.port_max = 65536, -1
        self.other_sources = 0
        self.max_sources = _reference.MAX_SOURCES
        self.unlisted_outcomes = {k: 0 for k in OUTCOMES}
        self.a_n = self.a_cap = 0

    def __dealloc__(self):
        free(self.k_cl)
        free(self.k_tg)
        free(self.k_ix)
        free(self.s_life)
        free(self.s_end)
        free(self.a_t)
        free(self.a_cl)
        free(self.a_sv)

    # -- what the reference keeps as attributes ----------------------------------------------
    @property
    def c(self) -> dict:
        return dict(packets=self.n_packets, other_port=self.n_other_port, syns=self.n_syns,
                    arrivals=self.n_arrivals, retransmissions=self.n_retx,
                    collisions=self.n_collisions, time_wait_hits=self.n_tw_hits,
                    stale=self.n_stale, new=self.n_new, moved=self.n_moved,
                    midlife=self.n_midlife, challenge_acks=self.n_challenge,
                    client_rsts=self.n_client_rsts, evicted=self.n_evicted,
                    server_close=self.n_server_close, client_close=self.n_client_close,
                    resets=self.n_resets, overlaps=self.n_overlaps,
                    tw_accepted=self.n_tw_accepted, tw_acked=self.n_tw_acked,
                    time_wait_acks=self.n_tw_acks, time_wait_rsts=self.n_tw_rsts,
                    syn_recv_holders=self.n_syn_recv, refused=self.n_refused, skipped=0)

    @property
    def t_first(self):
        return _opt_t(self._t_first)

    @property
    def t_last(self):
        return _opt_t(self._t_last)

    @property
    def first_arrival(self):
        return _opt_t(self._first_arr)

    @property
    def last_arrival(self):
        return _opt_t(self._last_arr)

    @property
    def sources(self) -> dict:
        self._flush()
        return self._sources

    @property
    def targets(self) -> dict:
        return self._targets.flush()

    @property
    def arrival_bins(self) -> dict:
        return self._bins.flush()

    @property
    def sample(self):
        """The lifetime sample as an (n, 2) array: lifetime s, 1 ended / 0 censored."""
        out = np.empty((self.s_n, 2), dtype=np.float64)
        cdef double[:, ::1] o = out
        cdef Py_ssize_t i
        for i in range(self.s_n):
            o[i, 0] = self.s_life[i]
            o[i, 1] = self.s_end[i]
        return out

    cdef _flush(self):
        if self.src_on and self.src_add:
            k = self.src_key
            self._sources[k] = self._sources[k] + self.src_add
            self.src_add = 0
        self._targets.flush()
        self._bins.flush()

    # -- the 4-tuple table ----------------------------------------------------------------------
    cdef int _table(self, Py_ssize_t cap) except -1:
        free(self.k_cl)
        free(self.k_tg)
        free(self.k_ix)
        self.k_cl = <uint64_t*>calloc(cap, sizeof(uint64_t))
        self.k_tg = <uint64_t*>calloc(cap, sizeof(uint64_t))
        self.k_ix = <int32_t*>calloc(cap, sizeof(int32_t))
        if self.k_cl == NULL or self.k_tg == NULL or self.k_ix == NULL:
            raise MemoryError()
        self.kcap = cap
        self.kused = 0
        return 0

    cdef inline Py_ssize_t _pos(self, uint64_t cl, uint64_t tg) noexcept:
        """The table position of (cl, tg), or of the empty place where it would go (index 0
        marks empty; slots are stored as index + 1)."""
        cdef Py_ssize_t m = self.kcap - 1
        cdef Py_ssize_t j = <Py_ssize_t>(_mix(cl * <uint64_t>0x9E3779B97F4A7C15 ^ tg) & <uint64_t>m)
        while self.k_ix[j] != 0:
            if self.k_cl[j] == cl and self.k_tg[j] == tg:
                return j
            j = (j + 1) & m
        return j

    cdef int _rebuild(self, Py_ssize_t cap) except -1:
        """A fresh table holding the slots that exist now."""
        cdef Slot s
        cdef Py_ssize_t i, j
        self._table(cap)
        for i in range(len(self.slot_list)):
            o = self.slot_list[i]
            if o is not None:
                s = <Slot>o
                j = self._pos(s.cl, s.tg)
                self.k_cl[j] = s.cl
                self.k_tg[j] = s.tg
                self.k_ix[j] = <int32_t>(i + 1)
                self.kused += 1
        return 0

    cdef list _ordered(self):
        """The slots in the order they were made (the reference's dict order)."""
        live = [s for s in self.slot_list if s is not None]
        live.sort(key=_serial)
        return live

    # -- bookkeeping --------------------------------------------------------------------------
    cdef int _sample(self, double life, int ended) except -1:
        cdef Py_ssize_t j
        self.sample_seen += 1
        if self.s_n < self.sample_size:
            self.s_life[self.s_n] = life
            self.s_end[self.s_n] = ended
            self.s_n += 1
        else:
            j = self.rng.randrange(self.sample_seen)
            if j < self.sample_size:
                self.s_life[j] = life
                self.s_end[j] = ended
        return 0

    cdef int _log_arrival(self, double t, uint64_t cl, uint64_t tg) except -1:
        cdef Py_ssize_t nc
        if self.a_n >= KEPT:
            return 0
        if self.a_n == self.a_cap:
            nc = min(KEPT, max(1024, 2 * self.a_cap))
            self.a_t = <double*>_grow(self.a_t, nc * sizeof(double))
            self.a_cl = <uint64_t*>_grow(self.a_cl, nc * sizeof(uint64_t))
            self.a_sv = <uint64_t*>_grow(self.a_sv, nc * sizeof(uint64_t))
            self.a_cap = nc
        self.a_t[self.a_n] = t
        self.a_cl[self.a_n] = cl
        self.a_sv[self.a_n] = tg
        self.a_n += 1
        return 0

    cdef int _count_arrival(self, double t, uint64_t client, uint64_t tg) except -1:
        """sources[client] += 1 (or a source past the bound: a run of one source is counted in
        C too, the bound checked when the source changes), targets[tg] += 1,
        arrival_bins[int(t)] += 1, as the reference does."""
        cdef long long b = <long long>t
        if self.src_on and client == self.src_key:
            self.src_add += 1
        else:
            if self.src_on and self.src_add:
                k = self.src_key
                self._sources[k] = self._sources[k] + self.src_add
            self.src_add = 0
            n_src = self._sources.get(client)
            if n_src is not None or len(self._sources) < self.max_sources:
                self._sources[client] = (n_src or 0) + 1
                self.src_key = client
                self.src_on = True
            else:
                self.other_sources += 1
                self.src_on = False
        self._targets.count(<int64_t>tg)
        self._bins.count(b)
        return 0

    cdef _end(self, Conn conn, double t, str how, Slot slot, object by=None):
        if conn.end != NONE:
            return
        conn.end = t
        conn.how = how
        if how == "server-close":
            self.n_server_close += 1
        elif how == "client-close":
            self.n_client_close += 1
        elif how == "reset-by-new-client" or how == "client-rst" or how == "target-rst":
            self.n_resets += 1
        if not conn.midlife and conn.state == SYNCED:
            self._sample(max(t - conn.t0, 1e-6),
                         0 if (how == "reset-by-new-client" or how == "superseded") else 1)
        if conn.victim_of is not None:
            for rec in conn.victim_of:
                if rec["holder_end"] is None:
                    h = how
                    if how == "reset-by-new-client" and rec is not by:
                        h = "reset-by-another-new-client"
                    rec["holder_end"] = {"time": t, "how": h, "after_s": round(t - rec["_t"], 6)}
        self._unlive(slot, conn)

    cdef int _live(self, Slot slot, Conn conn, double t) except -1:
        """The reference's live_by_port: here the count of live holders per (client endpoint,
        service port); a 4-tuple has one holder at a time, so that count is the number of
        servers the endpoint is live at."""
        cdef int64_t d
        conn.live = True
        d = self.live_ends.add(slot.cl, slot.tg & 0xFFFF, 1)
        if d > self.nodes_bound:
            self.nodes_bound = d
            self.nodes_bound_at = (t, _key(slot))
        return 0

    cdef int _unlive(self, Slot slot, Conn conn) except -1:
        if not conn.live:
            return 0
        conn.live = False
        self.live_ends.add(slot.cl, slot.tg & 0xFFFF, -1)
        return 0

    cdef dict _record(self, str kind, double t, Slot slot, Conn conn, Conn holder, dict extra=None):
        rec = {"_t": t, "_key": _key(slot), "time": t, "kind": kind,
               "isn": None if conn.isn < 0 else conn.isn,
               "holder": None if holder is None else {
                   "isn": None if holder.isn < 0 else holder.isn,
                   "since": None if holder.midlife else holder.t0,
                   "seen_mid_life": holder.midlife,
                   "state": "SYN_RECV" if holder.state == SYN_RECV else "synchronised",
                   "idle_s": round(t - holder.t_last, 6),
                   "rcv_nxt": None if holder.c_next < 0 else holder.c_next},
               "challenge_ack": None, "client_rst": None, "holder_end": None,
               "syn_retransmissions": 0, "connect_delay_s": None, "moved_to": None,
               "outcome": None}
        if extra:
            rec.update(extra)
        return rec

    # -- the packet loop ----------------------------------------------------------------------
    def feed(self, dict ch):
        cdef const int64_t[::1] ts = ch["ts"]
        cdef const uint64_t[::1] src = ch["src"]
        cdef const uint64_t[::1] dst = ch["dst"]
        cdef const uint16_t[::1] sport = ch["sport"]
        cdef const uint16_t[::1] dport = ch["dport"]
        cdef const uint32_t[::1] seqs = ch["seq"]
        cdef const uint32_t[::1] acks = ch["ack"]
        cdef const uint8_t[::1] flags = ch["flags"]
        cdef const uint32_t[::1] plens = ch["plen"]
        cdef Py_ssize_t n = ts.shape[0], i, j
        cdef bint up, down, fresh
        cdef uint64_t cl, tg
        cdef double t
        cdef int fl
        cdef int64_t seq, ack, nxt
        cdef uint32_t pl
        cdef Py_ssize_t pos
        cdef int32_t ix
        cdef Slot slot
        cdef Conn h
        cdef bint any_kept = False
        if n == 0:
            return
        self.n_packets += n
        for i in range(n):
            up = False
            down = False
            for j in range(self.nports):
                if dport[i] == self.ports_c[j]:
                    up = True
                if sport[i] == self.ports_c[j]:
                    down = True
            if not up and not down:
                self.n_other_port += 1
                continue
            t = <double>ts[i] * 1e-9
            if not any_kept:
                any_kept = True
                if self._t_first == NONE:
                    self._t_first = t
                    self._next_evict = t + 60.0
            self._t_last = t
            if up:
                cl = (src[i] << 16) | sport[i]
                tg = (dst[i] << 16) | dport[i]
            else:
                cl = (dst[i] << 16) | dport[i]
                tg = (src[i] << 16) | sport[i]
            fl = flags[i]
            seq = seqs[i]
            ack = acks[i]
            pl = plens[i]
            pos = self._pos(cl, tg)
            ix = self.k_ix[pos]
            fresh = ix == 0
            if fresh:
                slot = Slot.__new__(Slot)
                slot.tw_until = -1.0
                slot.nprev = 0
                slot.old_ack = -1
                slot.cl = cl
                slot.tg = tg
                slot.serial = self.serial
                self.serial += 1
                if self.free_ix:
                    ix = self.free_ix.pop()
                    self.slot_list[ix] = slot
                else:
                    ix = len(self.slot_list)
                    self.slot_list.append(slot)
                slot.ix = ix
                self.nslots += 1
                if 2 * (self.kused + 1) > self.kcap:
                    self._rebuild(self.kcap * 2)
                    pos = self._pos(cl, tg)
                self.k_cl[pos] = cl
                self.k_tg[pos] = tg
                self.k_ix[pos] = ix + 1
                self.kused += 1
            else:
                slot = <Slot>self.slot_list[ix - 1]
            slot.last = t
            if up:
                if fl & SYN:
                    if fl & ACK:
                        continue
                    self._syn(t, slot, seq)
                    continue
                if fl & RST:
                    self._client_rst(t, slot, seq)
                    continue
                h = self._holder(t, slot, fresh)
                if h is None:
                    continue
                if slot.nprev and _old_segment(slot, h, seq):
                    slot.old_ack = ack if fl & ACK else 0
                    continue
                h.t_last = t
                nxt = (seq + pl) & MASK
                if h.state == SYN_RECV and fl & ACK and h.t_synack != NONE:
                    h.state = SYNCED
                if fl & FIN:
                    nxt = (nxt + 1) & MASK
                    if h.c_fin == NONE:
                        h.c_fin = t
                        if h.s_fin != NONE:
                            self._end(h, t, "server-close", slot)
                            slot.tw_until = t + self.time_wait
                            slot.tw_conn = h
                elif h.c_fin != NONE and h.s_fin != NONE and h.s_fin >= h.c_fin and fl & ACK:
                    self._end(h, t, "client-close", slot)
                if h.c_next < 0 or ((nxt - h.c_next) & MASK) < HALF:
                    h.c_next = nxt
            else:
                if fl & SYN:
                    if fl & ACK:
                        self._synack(t, slot, ack)
                    continue
                if fl & RST:
                    self._target_rst(t, slot, seq)
                    continue
                if _pany(slot) and pl == 0 and not fl & FIN:
                    if self._answer(t, slot, seq, ack):
                        continue
                h = self._holder(t, slot, fresh)
                if h is None:
                    continue
                h.t_last = t
                if h.state == SYN_RECV and h.t_synack != NONE and t > h.t_synack:
                    h.state = SYNCED
                if fl & FIN and h.s_fin == NONE:
                    h.s_fin = t
                if fl & ACK and (h.c_next < 0 or ((ack - h.c_next) & MASK) < HALF):
                    h.c_next = ack
        if any_kept and self._t_last >= self._next_evict:
            self._evict(self._t_last)
            self._next_evict = self._t_last + 60.0

    # -- events -------------------------------------------------------------------------------
    cdef Conn _holder(self, double t, Slot slot, bint fresh):
        cdef Conn h = slot.holder
        if h is not None and h.end == NONE:
            return h
        if not fresh:
            return None
        h = _conn(-1, t, True)
        h.client = slot.cl >> 16
        slot.holder = h
        self.n_midlife += 1
        self._live(slot, h, t)
        return h

    cdef _syn(self, double t, Slot slot, int64_t seq):
        cdef Conn h = slot.holder
        cdef Conn p, conn
        cdef bint hlive = h is not None and h.end == NONE
        cdef long cport = <long>(slot.cl & 0xFFFF)
        cdef uint64_t client_c = slot.cl >> 16
        cdef int64_t oix
        cdef bint moved
        self.n_syns += 1
        if hlive and h.isn == seq:
            self.n_retx += 1
            h.syns += 1
            h.t_last_syn = t
            return
        p = _pget(slot, seq)
        if p is not None:
            self.n_retx += 1
            p.syns += 1
            p.t_last_syn = t
            p.t_last = t
            if p.record is not None:
                p.record["syn_retransmissions"] += 1
            if p.tw_record is not None:
                p.tw_record["syn_retransmissions"] += 1
            return
        if hlive and h.c_fin != NONE and h.s_fin != NONE and t - max(h.c_fin, h.s_fin) > 1.0:
            self._end(h, max(h.c_fin, h.s_fin),
                      "client-close" if h.c_fin <= h.s_fin else "server-close", slot)
            hlive = False
        if cport < self.port_min:
            self.port_min = cport
        if cport > self.port_max:
            self.port_max = cport
        oix = self.pending_isn.pop(client_c, <uint64_t>seq, -1)
        moved = oix >= 0
        if moved:
            conn = _ppop(<Slot>self.slot_list[oix], seq)
            conn.syns += 1
            conn.t_last_syn = t
            self.n_moved += 1
            self.n_retx += 1
            if conn.record is not None and conn.record["moved_to"] is None:
                conn.record["moved_to"] = {"time": t, "_key": _key(slot)}
                conn.record["syn_retransmissions"] += 1
        else:
            conn = _conn(seq, t, False)
            conn.client = client_c
            self.n_arrivals += 1
            self._count_arrival(t, client_c, slot.tg)
            if self._first_arr == NONE:
                self._first_arr = t
            self._last_arr = t
            self._log_arrival(t, slot.cl, slot.tg)
        if hlive:
            if t - h.t_last > self.idle:
                if not moved:
                    self.n_stale += 1
                    if len(self.stale_hits) < self.keep:
                        self.stale_hits.append(self._record("stale", t, slot, conn, h))
            elif not moved:
                self.n_collisions += 1
                if h.state == SYN_RECV:
                    self.n_syn_recv += 1
                rec = self._record("collision", t, slot, conn, h)
                conn.record = rec
                if h.victim_of is None:
                    h.victim_of = []
                h.victim_of.append(rec)
                if len(self.collisions) < self.keep:
                    self.collisions.append(rec)
                else:
                    rec["_dropped"] = True
        elif slot.tw_until > t and not moved:
            self.n_tw_hits += 1
            rec = self._record("time-wait", t, slot, conn, None,
                               {"closed_at": _opt_t(slot.tw_conn.end) if slot.tw_conn is not None
                                else None, "tw_answer": None})
            conn.tw_record = rec
            if len(self.tw_hits) < self.keep:
                self.tw_hits.append(rec)
        elif not moved:
            self.n_new += 1
        if self.client_side and not moved:
            # live towards a server other than this 4-tuple's (whose only live holder is its own)
            if self.live_ends.get(slot.cl, slot.tg & 0xFFFF, 0) > \
                    (1 if slot.holder is not None and slot.holder.live else 0):
                self.n_overlaps += 1
        _padd(slot, conn)
        self.pending_isn.put(client_c, <uint64_t>seq, slot.ix)

    cdef _synack(self, double t, Slot slot, int64_t ack):
        cdef int64_t isn = (ack - 1) & MASK
        cdef Conn conn = _ppop(slot, isn)
        cdef Conn h = slot.holder
        if conn is None:
            if h is not None and h.isn == isn:
                return
            if h is not None and h.end == NONE:
                return
            if h is not None:
                _remember(slot, h)
            conn = _conn(isn, t, True)
            conn.state = SYN_RECV
            conn.t_synack = t
            conn.client = slot.cl >> 16
            slot.holder = conn
            self.n_midlife += 1
            self._live(slot, conn, t)
            return
        self.pending_isn.pop(conn.client, <uint64_t>isn, -1)
        if h is not None:
            if h.end == NONE:
                self._end(h, t, "superseded", slot)
            _remember(slot, h)
        conn.t_synack = t
        conn.state = SYN_RECV
        conn.t_last = t
        slot.holder = conn
        if conn.tw_record is not None:
            self.n_tw_accepted += 1
            if conn.tw_record["tw_answer"] is None:
                conn.tw_record["tw_answer"] = "accepted"
            conn.tw_record["connect_delay_s"] = round(t - conn.t0, 6)
        slot.tw_until = -1.0
        if conn.record is not None:
            conn.record["connect_delay_s"] = round(t - conn.t0, 6)
            self._settle(conn.record, t)
        self._live(slot, conn, t)

    cdef _settle(self, dict rec, double t):
        if rec.get("_dropped") and not rec.get("_settled"):
            rec["_settled"] = True
            self.unlisted_outcomes[outcome(rec, t)] += 1

    cdef bint _answer(self, double t, Slot slot, int64_t seq, int64_t ack) except -1:
        cdef Conn best = None
        cdef Conn conn
        cdef Conn h = slot.holder
        cdef bint live
        for co in _plist(slot):
            conn = <Conn>co
            if conn.t_last_syn != NONE and 0 <= t - conn.t_last_syn <= WINDOW:
                if best is None or conn.t_last_syn > best.t_last_syn:
                    best = conn
        if best is None or ack == ((best.isn + 1) & MASK):
            return False
        live = h is not None and h.end == NONE
        if not live and best.tw_record is not None or not live and not self.client_side:
            best.t_last_syn = NONE
            self.n_tw_acks += 1
            if best.tw_record is not None and best.tw_record["tw_answer"] is None:
                best.tw_record["tw_answer"] = "ack"
                self.n_tw_acked += 1
            return True
        if self.client_side:
            best.t_last_syn = NONE
            self.n_challenge += 1
            rec = best.record
            if rec is None:
                best.record = rec = self._record("challenge-ack-seen", t, slot, best, None)
                rec["challenge_ack"] = {"time": t, "after_s": round(t - best.t0, 6),
                                        "seq": seq, "ack": ack, "names_older": None}
                if len(self.collisions) < self.keep:
                    self.collisions.append(rec)
            rec["_last_ca_ack"] = ack
            rec["_ca_t"] = t
            return True
        if h.c_next >= 0 and ack != h.c_next and not _near(ack, h.c_next):
            return False
        best.t_last_syn = NONE
        if h.state == SYNCED:
            self.n_challenge += 1
        rec = best.record
        if rec is not None:
            if rec["challenge_ack"] is None:
                rec["challenge_ack"] = {"time": t, "after_s": round(t - rec["_t"], 6),
                                        "seq": seq, "ack": ack, "names_older": h.c_next >= 0}
            rec["_last_ca_ack"] = ack
            rec["_ca_t"] = t
        return True

    cdef _client_rst(self, double t, Slot slot, int64_t seq):
        cdef Conn h = slot.holder
        cdef bint live = h is not None and h.end == NONE
        cdef Conn conn
        rec = None
        for co in _plist(slot):
            r = (<Conn>co).record
            ca = None if r is None else r.get("_last_ca_ack")
            if ca is None or not (seq == ca or live and seq == h.c_next):
                continue
            if rec is None or r["_ca_t"] > rec["_ca_t"]:
                rec = r
        if rec is not None and (self.client_side or live):
            self.n_client_rsts += 1
            exact = None
            if not self.client_side:
                exact = seq == rec["_last_ca_ack"] if h.c_next < 0 else _rst_resets(h, seq)
            if rec["client_rst"] is None:
                rec["client_rst"] = {"time": t, "after_s": round(t - rec["_t"], 6), "seq": seq,
                                     "matches_older": exact}
            if exact:
                self._end(h, t, "reset-by-new-client", slot, rec)
            return
        if not live and slot.tw_until > t:
            if _pany(slot) and not self.client_side:
                self.n_tw_rsts += 1
                conn = slot.p0
                if conn.tw_record is not None and conn.tw_record["client_rst"] is None:
                    conn.tw_record["client_rst"] = {"time": t, "seq": seq}
            slot.tw_until = -1.0
        elif live and _rst_resets(h, seq):
            self._end(h, t, "client-rst", slot)

    cdef _target_rst(self, double t, Slot slot, int64_t seq):
        cdef Conn h = slot.holder
        if h is not None and h.end == NONE:
            if seq == slot.old_ack:
                slot.old_ack = -1
                return
            self._end(h, t, "target-rst", slot)
        elif _pany(slot):
            self.n_refused += 1

    # -- memory and the end -------------------------------------------------------------------
    cdef _evict(self, double now):
        cdef double idle2 = 2 * self.idle
        cdef Slot slot
        cdef Conn h, conn
        cdef bint removed = False
        for so in self._ordered():
            slot = <Slot>so
            if _pany(slot):
                for co in _plist(slot):
                    conn = <Conn>co
                    if now - conn.t_last > PENDING:
                        _ppop(slot, conn.isn)
                        self.pending_isn.pop(conn.client, <uint64_t>conn.isn, -1)
                        if conn.record is not None:
                            self._settle(conn.record, now)
            h = slot.holder
            if h is not None and h.end == NONE:
                if now - h.t_last > idle2:
                    if not h.midlife and h.state == SYNCED:
                        self._sample(max(h.t_last - h.t0, 1e-6), 0)
                    h.end = h.t_last
                    h.how = "idle"
                    self.n_evicted += 1
                    self._unlive(slot, h)
                else:
                    continue
            if not _pany(slot) and slot.tw_until <= now and now - slot.last > 1.0:
                ix = self.k_ix[self._pos(slot.cl, slot.tg)] - 1
                self.slot_list[ix] = None
                self.free_ix.append(ix)
                self.nslots -= 1
                removed = True
        if removed:
            self._rebuild(self.kcap)
        self.live_peak = max(self.live_peak, self.nslots)

    def finish(self, t_end=None):
        cdef Slot slot
        cdef Conn h
        cdef double te
        self._flush()
        t_end = self.t_last if t_end is None else t_end
        if t_end is None:
            return
        te = t_end
        self.live_peak = max(self.live_peak, self.nslots)
        for so in self._ordered():
            slot = <Slot>so
            h = slot.holder
            if h is not None and h.end == NONE and not h.midlife and h.state == SYNCED:
                self._sample(max(te - h.t0, 1e-6), 0)
            for co in _plist(slot):
                if (<Conn>co).record is not None:
                    self._settle((<Conn>co).record, te)
        for rec in self.collisions:
            rec["outcome"] = outcome(rec, t_end)

    def arrivals(self) -> dict:
        cdef Py_ssize_t i
        t = np.empty(self.a_n, dtype=np.float64)
        c = np.empty(self.a_n, dtype=np.uint64)
        sv = np.empty(self.a_n, dtype=np.uint64)
        cdef double[::1] tv = t
        cdef uint64_t[::1] cv = c
        cdef uint64_t[::1] svv = sv
        for i in range(self.a_n):
            tv[i] = self.a_t[i]
            cv[i] = self.a_cl[i]
            svv[i] = self.a_sv[i]
        return {"t": t, "client": c, "server": sv}


cdef void* _grow(void* p, size_t nbytes) except NULL:
    cdef void* q = realloc(p, nbytes)
    if q == NULL:
        raise MemoryError()
    return q


def _serial(s):
    return (<Slot>s).serial


cdef inline object _key(Slot slot):
    return (<object>slot.cl << 49) | <object>slot.tg
