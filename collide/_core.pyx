"""The compiled core: the reference algorithm (`_core_python.py`) on flat arrays, without the GIL.

Raw words come from NumPy's PCG64 through its `bitgen_t` capsule (DESIGN §2.4); the kernels are
`cdef ... noexcept nogil` methods and the `def` methods only hand over typed memoryviews.
Directives are set once in setup.py (COLLIDE_DEBUG=1 turns bounds checks on).
"""
cimport cython
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport log, exp, sqrt, cos, floor, INFINITY, M_PI
from libc.stdint cimport int32_t, int64_t, uint64_t, uint16_t
from libc.stdlib cimport malloc, free as c_free
from numpy.random cimport bitgen_t

import numpy as np

from . import _params as C
from . import _state as T

cdef double TWO53 = 1.0 / 9007199254740992.0

# PCG64 inlined: the same 128-bit LCG step and XSL-RR output as NumPy's PCG64, so the words are the
# ones `PCG64.random_raw()` gives. The state is read from the public `bit_generator.state` when a
# kernel starts and written back when it returns; where the compiler has no 128-bit integers (or the
# bit generator is not PCG64) the kernels call the `bitgen_t` function pointer instead.
cdef extern from *:
    """
    #include "numpy/random/bitgen.h"
    #if defined(__SIZEOF_INT128__)
    #define COLLIDE_PCG_INLINE 1
    typedef struct { unsigned __int128 state, inc; } collide_pcg64;
    static inline uint64_t collide_pcg64_next(collide_pcg64 *r) {
        const unsigned __int128 mult =
            ((unsigned __int128)0x2360ED051FC65DA4ULL << 64) | 0x4385DF649FCCF645ULL;
        uint64_t x;
        unsigned rot;
        r->state = r->state * mult + r->inc;
        x = (uint64_t)(r->state >> 64) ^ (uint64_t)r->state;
        rot = (unsigned)(r->state >> 122);
        return (x >> rot) | (x << ((-rot) & 63u));
    }
    static inline void collide_pcg64_set(collide_pcg64 *r, uint64_t shi, uint64_t slo,
                                         uint64_t ihi, uint64_t ilo) {
        r->state = ((unsigned __int128)shi << 64) | slo;
        r->inc = ((unsigned __int128)ihi << 64) | ilo;
    }
    static inline uint64_t collide_pcg64_word(collide_pcg64 *r, int i) {
        return i == 0 ? (uint64_t)(r->state >> 64) : (uint64_t)r->state;
    }
    #define collide_next(r, b) collide_pcg64_next(r)
    #else
    #define COLLIDE_PCG_INLINE 0
    typedef struct { uint64_t unused; } collide_pcg64;
    static inline uint64_t collide_pcg64_next(collide_pcg64 *r) { return 0; }
    static inline void collide_pcg64_set(collide_pcg64 *r, uint64_t shi, uint64_t slo,
                                         uint64_t ihi, uint64_t ilo) {}
    static inline uint64_t collide_pcg64_word(collide_pcg64 *r, int i) { return 0; }
    #define collide_next(r, b) ((b)->next_uint64((b)->state))
    #endif
    """
    int COLLIDE_PCG_INLINE
    ctypedef struct collide_pcg64:
        pass
    uint64_t collide_pcg64_next(collide_pcg64 *r) nogil
    void collide_pcg64_set(collide_pcg64 *r, uint64_t shi, uint64_t slo, uint64_t ihi,
                           uint64_t ilo) nogil
    uint64_t collide_pcg64_word(collide_pcg64 *r, int i) nogil
    uint64_t collide_next(collide_pcg64 *r, bitgen_t *b) nogil

cdef object M64 = (1 << 64) - 1

cdef bint _plain_loop = True

# compile-time switch of `_advance_plain` (a fused type: Cython emits one loop per member, and the
# branches on it are resolved when compiling): with or without the conditional estimate
ctypedef signed char without_estimate
ctypedef short with_estimate
ctypedef fused Estimate:
    without_estimate
    with_estimate
# ... and ends by the end clock (exponential lifetimes) or the calendar (any other law)
ctypedef signed char end_clock
ctypedef short end_calendar
ctypedef fused Ends:
    end_clock
    end_calendar
# ... and with or without the extras: TIME_WAIT, clients (sticky nodes, per-client NAT IPs)
ctypedef signed char without_extras
ctypedef short with_extras
ctypedef fused Extras:
    without_extras
    with_extras


# The plain loop's port slot tables (`Engine.pt`, all PT_FREE when not in use), kept for the next
# engine of the same shape: a fresh table of megabytes per run would be faulted in page by page
# (glibc hands large blocks back to the kernel), which costs more than a short run itself. An
# engine returns its table when the run gives its rows back (`Engine.release`).
_slot_tables = {}
_SLOT_TABLES_KEPT = 4


def _take_slot_table(Py_ssize_t size):
    try:
        return _slot_tables[size].pop()
    except (KeyError, IndexError):
        return np.full(size, 0, np.int32)     # PT_FREE, written now: no page faults mid-run


def use_plain_loop(bint on):
    """Debug switch: False runs every scenario through the general event loop (tests compare the
    two); returns the previous setting."""
    global _plain_loop
    cdef bint was = _plain_loop
    _plain_loop = on
    return was


# -- draws from raw words (DESIGN §2.4), on a generator passed by pointer so that a kernel can run
# on a local copy of the state (`_advance_plain`) or on the engine's own (the methods below). In C
# so that they are always inlined, with Lemire's rare rejection step (a division) marked unlikely:
# the local generator state then stays in registers.
cdef extern from *:
    """
    #if defined(__GNUC__)
    #define COLLIDE_HOT static inline __attribute__((always_inline))
    #define COLLIDE_UNLIKELY(x) __builtin_expect(!!(x), 0)
    #define COLLIDE_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define COLLIDE_PREFETCH(p) ((void)0)
    #define COLLIDE_HOT static inline
    #define COLLIDE_UNLIKELY(x) (x)
    #endif
    static const double collide_two53 = 1.0 / 9007199254740992.0;
    /* [0, n) by Lemire's multiply-shift on the high 32 bits of a word, with exact rejection */
    COLLIDE_HOT int64_t rng_randint(collide_pcg64 *g, bitgen_t *b, int64_t n) {
        uint64_t nn, m, low, threshold;
        if (n <= 1) return 0;
        nn = (uint64_t)n;
        m = (collide_next(g, b) >> 32) * nn;
        low = m & 0xFFFFFFFFULL;
        if (COLLIDE_UNLIKELY(low < nn)) {
            threshold = (0x100000000ULL - nn) % nn;
            while (low < threshold) {
                m = (collide_next(g, b) >> 32) * nn;
                low = m & 0xFFFFFFFFULL;
            }
        }
        return (int64_t)(m >> 32);
    }
    COLLIDE_HOT double rng_uniform(collide_pcg64 *g, bitgen_t *b) {
        return (double)(collide_next(g, b) >> 11) * collide_two53;
    }
    COLLIDE_HOT double rng_exponential(collide_pcg64 *g, bitgen_t *b) {
        return -log((double)((collide_next(g, b) >> 11) + 1) * collide_two53);
    }
    """
    int64_t rng_randint(collide_pcg64 *g, bitgen_t *b, int64_t n) nogil
    void COLLIDE_PREFETCH(const void *p) nogil
    double rng_uniform(collide_pcg64 *g, bitgen_t *b) nogil
    double rng_exponential(collide_pcg64 *g, bitgen_t *b) nogil

# -- the estimate's running sums, on one ip:port's N slots of the port table (`port`: slot j at
# port[2 j], the live holder's target at port[2 j + 1]) --------------------------------------------
cdef inline int64_t port_distinct(const int32_t *port, int64_t n, int64_t skip) noexcept nogil:
    """How many distinct targets the nodes other than `skip` hold through this ip:port."""
    cdef int64_t j, jj, count = 0
    cdef int32_t t
    for j in range(n):
        if j == skip:
            continue
        t = port[2 * j + 1]
        if t < 0:
            continue
        for jj in range(j):
            if jj != skip and port[2 * jj + 1] == t:
                break
        else:
            count += 1
    return count


cdef inline void port_holder_changed(const int32_t *port, int64_t *est_row, int64_t n, int64_t j0,
                                     int64_t target, int64_t delta) noexcept nogil:
    """Node j0's holder of this ip:port took (delta 1) or dropped (-1) `target`: the sums of the
    nodes whose slot is free move by delta unless another node holds the target too. (A free
    slot holds no target, so "another node than j and j0 holds it" is the same for every such j:
    one pass to see, one to update; the reference's n^2 loop, same sums.)"""
    cdef int64_t j, jj
    for jj in range(n):
        if jj != j0 and port[2 * jj + 1] == target:
            return
    for j in range(n):
        if j != j0 and port[2 * j] == -1:
            est_row[j] += delta


# parameter indices (mirrors _params.py; checked at import below)
DEF K = 0
DEF N = 1
DEF B = 2
DEF P = 3
DEF LIMIT = 4
DEF CLIENTS = 5
DEF IP_PER_CLIENT = 6
DEF STICKY = 7
DEF ALLOC = 8
DEF DIST = 9
DEF OUTCOME = 10
DEF CROSS = 11
DEF CIP = 12
DEF WEIGHTED = 13
DEF ESTIMATE = 14
DEF NBATCH = 15
DEF TW_ON = 16
DEF COOL_ON = 17
DEF NODE_LIMIT = 18
DEF NEED_CLIENT = 19
DEF EMP_N = 20
DEF SCHED_N = 21
DEF SYN_N = 22
DEF CA_LIMIT = 23
DEF RATE = 0
DEF MEAN = 1
DEF MU = 2
DEF SIGMA = 3
DEF XM = 4
DEF ALPHA = 5
DEF DNS_TTL = 6
DEF TW = 7
DEF SCF = 8
DEF REUSE = 9
DEF T_MEASURE = 10
DEF T_END = 11
# state scalars (mirrors _state.py)
DEF S_CONN = 0
DEF S_EST = 1
DEF S_AFAIL = 2
DEF S_FAILED = 3
DEF S_COLL = 4
DEF S_RESETS = 5
DEF S_TWHITS = 6
DEF S_PAIRS = 7
DEF S_PEAK = 8
DEF S_SERIAL = 9
DEF S_HEAP_N = 10
DEF S_FREE_TOP = 11
DEF S_TW_N = 12
DEF S_TWQ_HEAD = 13
DEF S_TWQ_N = 14
DEF S_CQ_HEAD = 15
DEF S_CQ_N = 16
DEF S_SKIPPED = 17
DEF S_DELAYED = 19
DEF S_PENDING = 20
DEF S_CA_SEC = 21
DEF S_CA_USED = 22
DEF S_LIVE_N = 23
DEF F_NEXT_ARR = 0
DEF F_FIRST = 1
DEF F_END_E = 2
DEF F_END_T0 = 3
DEF F_CLOCK = 4
DEF HELD = -2
# connection records: REC int32 per connection, one record in half a cache line
DEF REC = 8
DEF R_DEST = 0
DEF R_PORT = 1
DEF R_TGT = 2
DEF R_CLOSE = 3
DEF R_POS = 4
DEF R_RETRY = 5
DEF R_MEAS = 6
DEF R_ENTRY = 7
DEF DEAD = -2          # R_POS of a reset connection whose heap entry is still queued
DEF UNLISTED = 0xFFFF
DEF LINUX_EPOCH_S = 10.0

assert (C.NEED_CLIENT, C.T_END, T.SKIPPED, T.FIRST) == (NEED_CLIENT, T_END, S_SKIPPED, F_FIRST)
assert (C.EMP_N, C.SCHED_N) == (EMP_N, SCHED_N)
assert (C.SYN_N, C.CA_LIMIT, T.DELAYED, T.PENDING, T.CA_SEC, T.CA_USED) == \
    (SYN_N, CA_LIMIT, S_DELAYED, S_PENDING, S_CA_SEC, S_CA_USED)
assert (T.LIVE_N, T.END_E, T.END_T0, T.CLOCK, T.HELD, T.UNLISTED) == \
    (S_LIVE_N, F_END_E, F_END_T0, F_CLOCK, HELD, UNLISTED)
assert (T.REC, T.R_DEST, T.R_PORT, T.R_TGT, T.R_CLOSE, T.R_POS, T.R_RETRY, T.R_MEAS, T.R_ENTRY,
        T.DEAD) == (REC, R_DEST, R_PORT, R_TGT, R_CLOSE, R_POS, R_RETRY, R_MEAS, R_ENTRY, DEAD)


# -- lifetimes (DESIGN §2.1) on a generator passed by pointer ------------------------------------
cdef inline double rng_normal(collide_pcg64 *g, bitgen_t *b) noexcept nogil:
    cdef double e = rng_exponential(g, b)
    cdef double u = rng_uniform(g, b)
    return sqrt(2.0 * e) * cos(2.0 * M_PI * u)


cdef inline double rng_lifetime(collide_pcg64 *g, bitgen_t *b, int64_t dist, const double *pf,
                                const double *xa, int64_t emp_n) noexcept nogil:
    """One lifetime: 0 exponential, 1 fixed, 2 lognormal, 3 Pareto, 4 empirical (xa[:emp_n])."""
    if dist == 0:
        return pf[MEAN] * rng_exponential(g, b)
    if dist == 1:
        return pf[MEAN]
    if dist == 2:
        return exp(pf[MU] + pf[SIGMA] * rng_normal(g, b))
    if dist == 4:
        return xa[rng_randint(g, b, emp_n)]
    return pf[XM] * exp(rng_exponential(g, b) / pf[ALPHA])


# -- the end-time queue: a 4-ary heap of connection ids keyed by (end, serial), each entry's end
# stored beside it (`hkey`). Any exact priority queue pops in the same (end, serial) order as the
# reference's heapq; the 4-ary layout halves the depth and keeps siblings in one cache line.
cdef inline bint heap_before(const int64_t *serial, double ka, int32_t a, double kb,
                             int32_t b) noexcept nogil:
    """(ka, a) comes before (kb, b); the serials are read only on a tie of the ends."""
    return ka < kb or (ka == kb and serial[a] < serial[b])


cdef inline void heap_sift_up(int32_t *heap, double *hkey, const int64_t *serial, int64_t i,
                              int32_t c, double kc) noexcept nogil:
    cdef int64_t parent
    cdef int32_t q
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


cdef inline int64_t heap_least(const int32_t *heap, const double *hkey, const int64_t *serial,
                               int64_t first, int64_t last) noexcept nogil:
    """The least of the children first..last-1, exactly (ties of the ends by serial)."""
    cdef int64_t best = first, ch
    for ch in range(first + 1, last):
        if heap_before(serial, hkey[ch], heap[ch], hkey[best], heap[best]):
            best = ch
    return best


cdef inline void heap_sift_down(int32_t *heap, double *hkey, const int64_t *serial, int64_t n,
                                int64_t i, int32_t c, double kc) noexcept nogil:
    """Move (kc, c) down from i. Below a full group of four children the least is picked by a
    tournament of three compares that the compiler turns into conditional moves: which child is
    least is a coin toss, and as branches these compares mispredicted about once per level (8
    of 13 mispredictions per connection under lognormal lifetimes). Equal ends, which need the
    serials, take the exact path. (Floyd's bottom-up variant, which skips the compare with kc
    on the way down, measured 6 more instructions per connection: the rise costs more.)"""
    cdef int64_t first, best, s01, s23, sb
    cdef double kb, k0, k1, k2, k3, k01, k23
    while True:
        first = 4 * i + 1
        if first + 4 <= n:
            if 16 * i + 20 < n:     # hints: the grandchildren's ends, read at the next level
                COLLIDE_PREFETCH(&hkey[4 * first + 1])
                COLLIDE_PREFETCH(&hkey[4 * first + 9])
                COLLIDE_PREFETCH(&hkey[4 * first + 16])
            k0 = hkey[first]
            k1 = hkey[first + 1]
            k2 = hkey[first + 2]
            k3 = hkey[first + 3]
            s01 = k1 < k0
            s23 = k3 < k2
            k01 = k1 if k1 < k0 else k0
            k23 = k3 if k3 < k2 else k2
            sb = k23 < k01
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


def heap_order(const double[::1] keys, const int64_t[::1] serial):
    """Push ids 0..n-1 with these ends, pop them all: the order (a test hook for the sifts)."""
    cdef Py_ssize_t n = keys.shape[0], i
    heap = np.zeros(max(n, 1), np.int32)
    hkey = np.zeros(max(n, 1), np.float64)
    out = np.empty(n, np.int32)
    cdef int32_t[::1] h = heap, o = out
    cdef double[::1] k = hkey
    if serial.shape[0] != n:
        raise ValueError(f"serial: {serial.shape[0]} entries, keys {n}; both must be equal")
    for i in range(n):
        heap_sift_up(&h[0], &k[0], &serial[0], i, <int32_t>i, keys[i])
    for i in range(n):
        o[i] = h[0]
        if n - 1 - i > 0:
            heap_sift_down(&h[0], &k[0], &serial[0], n - 1 - i, 0, h[n - 1 - i], k[n - 1 - i])
    return out


# -- the plain loop's end-time queue: a calendar of buckets ----------------------------------------
# Ends only move forward (an arrival at t queues t + life >= t, and t is never before the last end
# taken), so a calendar queue (Brown 1988) serves them: bucket q = floor(end / W) of a ring of M
# buckets, W chosen so that about two ends fall in each; the least is found by walking the ring
# forward. An end then costs a few instructions on lines read in order, where the 4-ary heap
# sifted through log4(live) levels (about 390 instructions per connection under lognormal
# lifetimes, half the loop). Exact: buckets are in end order (floor of a product by a positive
# constant is monotone), ties inside a bucket go by serial, so ends leave in the heap's
# (end, serial) order and every result is the same. Only the plain loop uses it; the heap arrays
# are rebuilt from it when the loop gives its rows back.
ctypedef struct CalEntry:    # per record id, 16 bytes: one line read visits an entry
    double key              # its end
    int32_t next            # the next id in its bucket (-1: none)
    int32_t spare

ctypedef struct Calendar:
    int32_t *head           # M bucket heads (a record id, -1: empty)
    CalEntry *e             # per record id
    const int64_t *serial   # per record id: its serial (ties of the ends)
    const int32_t *rows     # the plain loop's rows (hints only; NULL: none)
    double invw             # 1 / W
    int64_t mask            # M - 1
    int64_t cur             # the least entry's bucket; no entry is in an earlier one
    int64_t n               # entries
    int32_t least           # the least entry (-1: empty)

DEF CAL_FAR = 4611686018427387904     # 2**62: the bucket of ends beyond any ring (inf)


cdef inline int64_t cal_bucket(const Calendar *c, double key) noexcept nogil:
    cdef double x = key * c.invw
    return <int64_t>x if x < 4.0e18 else CAL_FAR


cdef inline void cal_clear(Calendar *c) noexcept nogil:
    cdef int64_t b
    for b in range(c.mask + 1):
        c.head[b] = -1
    c.cur = 0
    c.n = 0
    c.least = -1


cdef inline void cal_insert(Calendar *c, int32_t id, double key) noexcept nogil:
    cdef int64_t q = cal_bucket(c, key)
    cdef int64_t b = q & c.mask
    cdef int32_t m = c.least
    c.e[id].next = c.head[b]
    c.head[b] = id
    c.e[id].key = key
    c.n += 1
    if m < 0 or heap_before(c.serial, key, id, c.e[m].key, m):
        c.least = id
        c.cur = q


cdef void cal_find_least(Calendar *c) noexcept nogil:
    """Walk the ring from bucket `cur` to the first bucket holding an entry of its own year (not
    one a whole ring ahead); the least of those is the least of all. A ring walked in full
    without one (entries sparse beside W) falls back to a scan of every entry."""
    cdef int64_t cur = c.cur, steps = 0, b
    cdef int32_t x, best
    cdef double kx, kb = INFINITY
    while True:
        best = -1
        x = c.head[cur & c.mask]
        while x >= 0:
            kx = c.e[x].key
            if cal_bucket(c, kx) == cur and (best < 0 or heap_before(c.serial, kx, x, kb, best)):
                best = x
                kb = kx
            x = c.e[x].next
        if best >= 0:
            c.least = best
            c.cur = cur
            # hints: the entry and the row of an end a few buckets ahead, read when it is due
            x = c.head[(cur + 3) & c.mask]
            if x >= 0:
                COLLIDE_PREFETCH(&c.e[x])
                if c.rows != NULL:
                    COLLIDE_PREFETCH(&c.rows[4 * x])      # L = 4 ints per row
            return
        cur += 1
        steps += 1
        if steps > c.mask:
            break
    best = -1
    for b in range(c.mask + 1):
        x = c.head[b]
        while x >= 0:
            kx = c.e[x].key
            if best < 0 or heap_before(c.serial, kx, x, kb, best):
                best = x
                kb = kx
            x = c.e[x].next
    c.least = best
    c.cur = cal_bucket(c, kb)


cdef inline int32_t cal_pop(Calendar *c) noexcept nogil:
    """Remove and return the least entry (the calendar is not empty)."""
    cdef int32_t id = c.least, x
    cdef int64_t b = c.cur & c.mask
    x = c.head[b]
    if x == id:
        c.head[b] = c.e[id].next
    else:
        while c.e[x].next != id:
            x = c.e[x].next
        c.e[x].next = c.e[id].next
    c.n -= 1
    if c.n == 0:
        c.least = -1
    else:
        cal_find_least(c)
    return id


cdef inline void cal_to_heap(Calendar *c, int32_t *heap, double *hkey) noexcept nogil:
    """Write the entries as a valid 4-ary heap (any order, then Floyd's heapify)."""
    cdef int64_t b, i = 0, n = c.n
    cdef int32_t x
    for b in range(c.mask + 1):
        x = c.head[b]
        while x >= 0:
            heap[i] = x
            hkey[i] = c.e[x].key
            i += 1
            x = c.e[x].next
    if n > 1:
        for i in range((n - 2) // 4, -1, -1):
            heap_sift_down(heap, hkey, c.serial, n, i, heap[i], hkey[i])


def calendar_order(const double[::1] keys, const int64_t[::1] serial, double width,
                   Py_ssize_t buckets, const int64_t[::1] pop_after):
    """A test hook for the calendar: insert ids 0..n-1 with these ends, popping once before each
    insert i where pop_after[i] is 1 (an end between arrivals), then pop the rest; the popped
    ids in order. `buckets` must be a power of two."""
    cdef Py_ssize_t n = keys.shape[0], i, k = 0
    if serial.shape[0] != n or pop_after.shape[0] != n:
        raise ValueError("serial and pop_after must have as many entries as keys")
    if buckets < 1 or buckets & (buckets - 1) or not width > 0:
        raise ValueError(f"buckets={buckets}, width={width}: a power of two and a positive width")
    head = np.empty(buckets, np.int32)
    ent = np.empty(2 * max(n, 1), np.float64)      # CalEntry: 16 bytes
    out = np.empty(n, np.int32)
    cdef int32_t[::1] hv = head, o = out
    cdef double[::1] ev = ent
    cdef Calendar c
    c.head, c.e, c.serial, c.rows = &hv[0], <CalEntry *>&ev[0], &serial[0], NULL
    c.invw, c.mask = 1.0 / width, buckets - 1
    cal_clear(&c)
    for i in range(n):
        if pop_after[i] and c.n > 0:
            o[k] = cal_pop(&c)
            k += 1
        cal_insert(&c, <int32_t>i, keys[i])
    while c.n > 0:
        o[k] = cal_pop(&c)
        k += 1
    return out


# -- steps of the specialised loop shared by its two ways to end a connection --------------------
# The plain loop keeps its own compact copy of what it touches: connections as 16-byte rows, and
# port slots `pt` of 4 bytes per entry (PT_FREE, PT_HELD or the holder's row + 1) where the shared
# port table `ptab` has 8 (slot and target, interleaved); a taken slot's target is read from its
# row. Under the end clock the rows are in live-list order (a uniformly drawn position picks the
# same connection as `llist`); under the calendar they are indexed by record id. An end reads one
# row instead of a 32-byte record anywhere among the records, and an arrival looks at a port table
# half the size. `rows_enter` builds rows and slots from records, `rows_leave` gives records
# (under the clock: ids 0..nl-1 in list order) and port-table entries back and frees the slots;
# both are linear in the live connections, and run only when the loop is entered after
# something else had the state (`Engine.give_back_rows`).
DEF L = 4
DEF L_ENTRY = 0        # port-table entry (ip:port, node)
DEF L_DEST = 1
DEF L_TGT = 2
DEF L_PORTC = 3        # port | L_CLOSE | L_DEAD
DEF L_CLOSE = 0x10000  # the server closes first
# a slot of `pt`: free (0, so that a fresh table is calloc's zero pages and costs nothing until
# touched), HELD while a connect is decided, or the holder's row + 1
DEF PT_FREE = 0
DEF PT_HELD = -1
DEF L_DEAD = 0x20000   # heap: reset while its end is queued (the records' R_POS = DEAD)


cdef inline void rows_enter(int32_t *rows, int32_t *pt, const int32_t *llist, const int32_t *crec,
                            int32_t *ptab, int64_t nl) noexcept nogil:
    cdef int64_t i
    cdef int32_t h, s
    for i in range(nl):
        h = llist[i]
        s = crec[REC * h + R_ENTRY]
        rows[L * i + L_ENTRY] = s
        rows[L * i + L_DEST] = crec[REC * h + R_DEST]
        rows[L * i + L_TGT] = crec[REC * h + R_TGT]
        rows[L * i + L_PORTC] = crec[REC * h + R_PORT] | (L_CLOSE if crec[REC * h + R_CLOSE] else 0)
        pt[s] = <int32_t>(i + 1)
        ptab[2 * s] = -1
        ptab[2 * s + 1] = -1


cdef inline void rows_leave(const int32_t *rows, int32_t *pt, int32_t *llist, int32_t *crec,
                            int32_t *ids, int32_t *ptab, int64_t nl, int64_t cap) noexcept nogil:
    """Row i becomes record i; ids nl.. are free, the lowest on top of the stack."""
    cdef int64_t i
    cdef int32_t s
    for i in range(nl):
        s = rows[L * i + L_ENTRY]
        crec[REC * i + R_DEST] = rows[L * i + L_DEST]
        crec[REC * i + R_PORT] = rows[L * i + L_PORTC] & 0xFFFF
        crec[REC * i + R_TGT] = rows[L * i + L_TGT]
        crec[REC * i + R_CLOSE] = 1 if rows[L * i + L_PORTC] & L_CLOSE else 0
        crec[REC * i + R_POS] = <int32_t>i
        crec[REC * i + R_RETRY] = -1
        crec[REC * i + R_ENTRY] = s
        llist[i] = <int32_t>i
        ptab[2 * s] = <int32_t>i
        ptab[2 * s + 1] = rows[L * i + L_TGT]
        pt[s] = PT_FREE
    for i in range(nl, cap):
        crec[REC * i + R_POS] = -1
        ids[cap - 1 - i] = <int32_t>i


cdef inline void rows_enter_heap(int32_t *rows, int32_t *pt, const int32_t *heap, int64_t heap_n,
                                 const int32_t *crec, int32_t *ptab) noexcept nogil:
    """The heap's version: rows indexed by record id, for every record in the heap (live, or
    reset and waiting to leave the top); the slots of the live ones."""
    cdef int64_t i
    cdef int32_t c, s
    cdef bint dead
    for i in range(heap_n):
        c = heap[i]
        s = crec[REC * c + R_ENTRY]
        dead = crec[REC * c + R_POS] == DEAD
        rows[L * c + L_ENTRY] = s
        rows[L * c + L_DEST] = crec[REC * c + R_DEST]
        rows[L * c + L_TGT] = crec[REC * c + R_TGT]
        rows[L * c + L_PORTC] = crec[REC * c + R_PORT] | (L_CLOSE if crec[REC * c + R_CLOSE]
                                                            else 0) | (L_DEAD if dead else 0)
        if not dead:
            pt[s] = c + 1
            ptab[2 * s] = -1
            ptab[2 * s + 1] = -1


cdef inline void rows_leave_heap(const int32_t *rows, int32_t *pt, const int32_t *heap,
                                 int64_t heap_n, const int32_t *ids, int64_t free_top,
                                 int32_t *crec, int32_t *ptab) noexcept nogil:
    cdef int64_t i
    cdef int32_t c, s, m
    for i in range(heap_n):
        c = heap[i]
        s = rows[L * c + L_ENTRY]
        m = rows[L * c + L_PORTC]
        crec[REC * c + R_DEST] = rows[L * c + L_DEST]
        crec[REC * c + R_PORT] = m & 0xFFFF
        crec[REC * c + R_TGT] = rows[L * c + L_TGT]
        crec[REC * c + R_CLOSE] = 1 if m & L_CLOSE else 0
        crec[REC * c + R_POS] = DEAD if m & L_DEAD else 0
        crec[REC * c + R_RETRY] = -1
        crec[REC * c + R_ENTRY] = s
        if not m & L_DEAD:
            ptab[2 * s] = c
            ptab[2 * s + 1] = rows[L * c + L_TGT]
            pt[s] = PT_FREE
    for i in range(free_top):
        crec[REC * ids[i] + R_POS] = -1


cdef inline int32_t row_target(const int32_t *pt, const int32_t *rows, int64_t e) noexcept nogil:
    """The target of entry e's live holder (-1: none), through its row (slot = row + 1)."""
    cdef int32_t x = pt[e] - 1
    return rows[L * x + L_TGT] if x >= 0 else -1


cdef inline int64_t rows_port_distinct(const int32_t *pt, const int32_t *rows, int64_t n,
                                       int64_t skip) noexcept nogil:
    """`port_distinct` on one ip:port's N slots of `pt` (targets through the rows)."""
    cdef int64_t j, jj, count = 0
    cdef int32_t t
    for j in range(n):
        if j == skip:
            continue
        t = row_target(pt, rows, j)
        if t < 0:
            continue
        for jj in range(j):
            if jj != skip and row_target(pt, rows, jj) == t:
                break
        else:
            count += 1
    return count


cdef inline void rows_port_holder_changed(const int32_t *pt, const int32_t *rows, int64_t *est_row,
                                          int64_t n, int64_t j0, int64_t target,
                                          int64_t delta) noexcept nogil:
    """`port_holder_changed` on one ip:port's N slots of `pt`."""
    cdef int64_t j, jj
    for jj in range(n):
        if jj != j0 and row_target(pt, rows, jj) == target:
            return
    for j in range(n):
        if j != j0 and pt[j] == PT_FREE:
            est_row[j] += delta


cdef inline void list_free_ports(int32_t *dense, uint16_t *free, uint16_t *fpos,
                                 const int32_t *slot, int64_t stride, int32_t free_slot,
                                 int64_t n, int64_t Pn, int64_t d) noexcept nogil:
    """Random allocator below half free: list d's free ports in port order (`slot[stride * e]`
    is entry e's slot, `free_slot` when free: `ptab` with stride 2 and -1, the plain loop's `pt`
    with 1 and PT_FREE)."""
    cdef int64_t p, i = 0, ip = d // n
    cdef int64_t e0 = ip * Pn * n + (d - ip * n)
    dense[d] = 1
    for p in range(Pn):
        if slot[stride * (e0 + p * n)] == free_slot:
            free[d * Pn + i] = <uint16_t>p
            fpos[d * Pn + p] = <uint16_t>i
            i += 1
        else:
            fpos[d * Pn + p] = UNLISTED


cdef inline int64_t rows_remove(int32_t *rows, int32_t *pt, int64_t nl, int64_t i) noexcept nogil:
    """Swap-remove row i of nl (as `Engine.live_remove` on the live list): the last row moves
    into it and its port slot follows; returns the new length."""
    nl -= 1
    if i != nl:
        rows[L * i + L_ENTRY] = rows[L * nl + L_ENTRY]
        rows[L * i + L_DEST] = rows[L * nl + L_DEST]
        rows[L * i + L_TGT] = rows[L * nl + L_TGT]
        rows[L * i + L_PORTC] = rows[L * nl + L_PORTC]
        pt[rows[L * i + L_ENTRY]] = <int32_t>(i + 1)
    return nl


cdef inline void port_free_counted(int64_t *free_n, int32_t *dense, uint16_t *free, uint16_t *fpos,
                                   int64_t Pn, int64_t d, int64_t p) noexcept nogil:
    """Port p of destination d is free again (`put_free`): counted, and listed while d's pool is."""
    cdef int64_t m = free_n[d]
    free_n[d] = m + 1
    if dense[d] != 0:
        free[d * Pn + m] = <uint16_t>p
        fpos[d * Pn + p] = <uint16_t>m


@cython.final             # direct calls between the kernels (no vtable), so the compiler can inline
cdef class Engine:
    """One run's state and kernels. Built by `collide.engine` from `_state.new_state` arrays."""
    cdef bitgen_t *rng
    cdef object bit_generator
    cdef collide_pcg64 pcg
    cdef bint inline_rng
    cdef int64_t[::1] pi, zs, zc
    cdef double[::1] pf, wcum, xa
    cdef int64_t emp_n, sched_n
    cdef int64_t[::1] si, live, cursor, lin_epoch, lin_off, lin_pert, est_sum, free_n
    cdef double[::1] sf
    cdef int32_t[::1] ptab, llist, dense
    cdef uint16_t[::1] free, fpos
    cdef int32_t[::1] crec, ids, heap, ntl
    cdef double[::1] c_end, cl_exp, tw_exp, twq_exp, cq_at, batches
    cdef int64_t[::1] c_serial, cl_node, tw_key, twq_key, cq_dp
    cdef double[::1] hkey
    cdef int32_t[::1] rows, pt    # `_advance_plain`'s rows and port slots (`rows_enter`)
    cdef int32_t[::1] cal_head    # ... and its calendar of ends (not under the clock)
    cdef double[::1] cal_ent      # CalEntry per record id (two doubles' room)
    cdef Calendar cal
    cdef bint compact             # rows and pt hold the connections (crec, ptab, llist are stale)
    cdef double[::1] c_t0, c_life
    cdef int64_t[::1] dhist
    cdef int64_t syn_n, syn_off, ca_limit
    # parameters cached in C fields at init (no memoryview indexing in the hot loop)
    cdef int64_t n, Pn, k, nb_targets, alloc, dist, limit, clients, nbatch, node_limit
    cdef bint need_client, ip_per_client, sticky, cross, cip, weighted, estimate, tw_on, cool_on
    cdef bint track, memoryless
    cdef readonly bint plain      # runs `_advance_plain` (see __init__)
    cdef double rate, mean, mu, sigma, xm, alpha, dns_ttl, tw, scf, reuse, t_measure, t_end
    cdef int tw_shift
    cdef int64_t tw_cap

    def __init__(self, pi, pf, zs, zc, wcum, xa, bit_generator, state):
        self.bit_generator = bit_generator
        capsule = bit_generator.capsule
        self.rng = <bitgen_t *> PyCapsule_GetPointer(capsule, "BitGenerator")
        if type(bit_generator) is not np.random.PCG64:
            raise ValueError("--backend cython: needs a PCG64 bit generator "
                             f"(got {type(bit_generator).__name__})")
        self.inline_rng = COLLIDE_PCG_INLINE != 0
        self.pi, self.pf, self.zs, self.zc, self.wcum = pi, pf, zs, zc, wcum
        # variable-length parameters (layout in _params.extra_array); never empty as a buffer
        self.xa = xa if xa.size else np.zeros(1, np.float64)
        self.emp_n, self.sched_n = pi[EMP_N], pi[SCHED_N]
        self.syn_n, self.ca_limit = pi[SYN_N], pi[CA_LIMIT]
        self.syn_off = 2 * pi[EMP_N] + 2 * pi[SCHED_N]
        self.n, self.Pn, self.k, self.nb_targets = pi[N], pi[P], pi[K], pi[B]
        self.alloc, self.dist, self.limit, self.clients = pi[ALLOC], pi[DIST], pi[LIMIT], pi[CLIENTS]
        self.nbatch, self.node_limit = pi[NBATCH], pi[NODE_LIMIT]
        self.need_client, self.ip_per_client, self.sticky = pi[NEED_CLIENT] != 0, \
            pi[IP_PER_CLIENT] != 0, pi[STICKY] != 0
        self.cross, self.cip, self.weighted = pi[CROSS] != 0, pi[CIP] != 0, pi[WEIGHTED] != 0
        self.estimate, self.tw_on, self.cool_on = pi[ESTIMATE] != 0, pi[TW_ON] != 0, pi[COOL_ON] != 0
        self.track = self.estimate and self.alloc == 0 and self.cross and self.cip and self.n > 1
        self.memoryless = self.dist == 0
        # the common case gets its own loop (`_advance_plain`): same steps, same draws
        self.plain = (not self.cool_on and pi[OUTCOME] <= 2 and self.ca_limit == 0
                      and self.cip and self.alloc == 0)
        self.rate, self.mean, self.mu, self.sigma = pf[RATE], pf[MEAN], pf[MU], pf[SIGMA]
        self.xm, self.alpha, self.dns_ttl, self.tw = pf[XM], pf[ALPHA], pf[DNS_TTL], pf[TW]
        self.scf, self.reuse, self.t_measure, self.t_end = pf[SCF], pf[REUSE], pf[T_MEASURE], \
            pf[T_END]
        # scratch that outlives `bind` (None: not yet made; a memoryview is not None by itself)
        self.rows = None
        self.pt = None
        self.cal_head = None
        self.cal_ent = None
        self.bind(state)

    def bind(self, s):
        """(Re)attach the state arrays, e.g. after `_state.grow` replaced some."""
        self.si, self.sf, self.live, self.cursor = s["si"], s["sf"], s["live"], s["cursor"]
        self.lin_epoch, self.lin_off, self.lin_pert = s["lin_epoch"], s["lin_off"], s["lin_pert"]
        self.est_sum, self.free_n, self.ptab = s["est_sum"], s["free_n"], s["ptab"]
        self.free, self.fpos, self.dense, self.llist = s["free"], s["fpos"], s["dense"], s["llist"]
        self.crec = s["crec"]
        if self.compact:
            raise RuntimeError("bind: the plain loop's rows were not given back")
        need = L * s["ids"].shape[0] if self.plain else L
        if self.rows is None or self.rows.shape[0] != need:
            self.rows = np.empty(need, np.int32)
        need = s["ptab"].shape[0] // 2 if self.plain else 1
        if self.pt is None or self.pt.shape[0] != need:      # (all free between runs of the loop)
            self.pt = _take_slot_table(need) if self.plain else np.zeros(1, np.int32)
        self.c_end, self.c_serial = s["c_end"], s["c_serial"]
        if self.plain and not self.memoryless:
            self.bind_calendar(s["ids"].shape[0])
        self.ids, self.heap, self.cl_node, self.cl_exp = s["ids"], s["heap"], s["cl_node"], \
            s["cl_exp"]
        self.ntl, self.tw_key, self.tw_exp = s["ntl"], s["tw_key"], s["tw_exp"]
        self.twq_key, self.twq_exp, self.cq_at, self.cq_dp = s["twq_key"], s["twq_exp"], \
            s["cq_at"], s["cq_dp"]
        self.batches = s["batches"]
        self.hkey = s["hkey"]
        self.c_t0, self.c_life = s["c_t0"], s["c_life"]
        self.dhist = s["dhist"]
        self.tw_cap = T.tw_capacity(s)
        self.tw_shift = T.tw_shift(self.tw_cap)

    def bind_calendar(self, Py_ssize_t ids):
        """Size the plain loop's calendar (`_state.calendar_shape`: W and M change only the speed,
        never the order) for `ids` records."""
        m, invw = T.calendar_shape(np.asarray(self.pi), np.asarray(self.pf), np.asarray(self.xa))
        if self.cal_head is None or self.cal_head.shape[0] != m:
            self.cal_head = np.full(m, -1, np.int32)
        if self.cal_ent is None or self.cal_ent.shape[0] != 2 * ids:
            self.cal_ent = np.empty(2 * ids, np.float64)
        self.cal.head, self.cal.e = &self.cal_head[0], <CalEntry *>&self.cal_ent[0]
        self.cal.serial = &self.c_serial[0]
        self.cal.rows = &self.rows[0]
        self.cal.invw = invw
        self.cal.mask = m - 1
        self.cal.n = 0
        self.cal.least = -1
        self.cal.cur = 0

    # -- public entry points (thin: hand over to nogil kernels) ------------------------------------
    cdef void load_rng(self):
        """Copy the PCG64 state into the inlined generator (call with the bit generator's lock)."""
        if not self.inline_rng:
            return
        st = self.bit_generator.state["state"]
        collide_pcg64_set(&self.pcg, st["state"] >> 64, st["state"] & M64, st["inc"] >> 64,
                          st["inc"] & M64)

    cdef void store_rng(self):
        """Write the inlined generator's state back: the bit generator continues from there."""
        if not self.inline_rng:
            return
        full = self.bit_generator.state
        full["state"]["state"] = (int(collide_pcg64_word(&self.pcg, 0)) << 64) | \
            int(collide_pcg64_word(&self.pcg, 1))
        self.bit_generator.state = full

    def draw_stationary(self):
        cdef int64_t n = 0, i
        cdef double s, mean_live = self.pf[RATE] * self.pf[MEAN], big, u
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                s = self.exponential()
                while s < mean_live:
                    n += 1
                    s += self.exponential()
            self.store_rng()
        residual = np.empty(n, np.float64)
        age = np.empty(n, np.float64)
        cdef double[::1] r = residual, a = age
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                for i in range(n):
                    big = self.biased_lifetime()
                    u = self.uniform()
                    r[i] = u * big
                    a[i] = big - u * big
            self.store_rng()
        return residual, age

    def place_stationary(self, double[::1] residuals, int64_t[::1] order, Py_ssize_t start=0):
        """Place order[start:]; returns where it stopped (order's length when done, earlier
        when the connection records ran out: grow the state and call again from there)."""
        cdef Py_ssize_t i = start, n = order.shape[0]
        cdef int64_t outcome = self.pi[OUTCOME]
        self.give_back_rows()
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                while i < n and self.si[S_FREE_TOP] > 0:
                    self.arrival(0.0, residuals[order[i]], False, outcome)
                    i += 1
            self.store_rng()
        return i

    cdef void give_back_rows(self) noexcept nogil:
        """The plain loop keeps its rows and slots from one call to the next (building them
        costs as much as thousands of connections, and a first-reset run makes dozens of calls);
        they become records and port-table entries again before anything else reads those: a
        GROW return, the general loop, placement, or `sync()`."""
        if not self.compact:
            return
        if self.memoryless:
            rows_leave(&self.rows[0], &self.pt[0], &self.llist[0], &self.crec[0], &self.ids[0],
                       &self.ptab[0], self.si[S_LIVE_N], self.ids.shape[0])
        else:
            cal_to_heap(&self.cal, &self.heap[0], &self.hkey[0])
            rows_leave_heap(&self.rows[0], &self.pt[0], &self.heap[0], self.si[S_HEAP_N],
                            &self.ids[0], self.si[S_FREE_TOP], &self.crec[0], &self.ptab[0])
        self.compact = False

    def sync(self):
        """Make the shared state arrays current (records, port table, live list)."""
        self.give_back_rows()

    def release(self):
        """The run is over: give the rows back and keep the slot table for the next engine."""
        self.give_back_rows()
        if not self.plain or self.pt is None:
            return
        table = np.asarray(self.pt)
        self.pt = None
        if sum(len(v) for v in _slot_tables.values()) >= _SLOT_TABLES_KEPT:
            _slot_tables.clear()
        _slot_tables.setdefault(table.shape[0], []).append(table)

    def scratch_bytes(self):
        """Bytes the engine holds beside the shared state (the plain loop's rows and slots)."""
        cal = (self.cal_head.nbytes + self.cal_ent.nbytes
               if self.cal_head is not None else 0)
        return self.rows.nbytes + (self.pt.nbytes if self.pt is not None else 0) + cal

    def schedule_first_arrival(self):
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                self.sf[F_NEXT_ARR] = self.next_arrival_after(0.0, self.exponential())
                if self.memoryless:
                    self.sf[F_END_E] = self.exponential()
                    self.clock_refresh()
            self.store_rng()

    def advance(self, double t_stop):
        cdef int code
        if self.pt is None:             # advanced again after `release`
            self.pt = _take_slot_table(self.ptab.shape[0] // 2 if self.plain else 1)
        with self.bit_generator.lock:
            self.load_rng()
            if self.plain and _plain_loop and self.memoryless and \
                    self.si[S_LIVE_N] + self.si[S_FREE_TOP] != self.ids.shape[0]:
                raise RuntimeError("the end clock's loop needs every record live or free")
            with nogil:
                if not (self.plain and _plain_loop):
                    self.give_back_rows()
                if self.plain and _plain_loop:
                    if self.tw_on or self.need_client:
                        code = self._plain_extras(t_stop, <with_extras>1)
                    else:
                        code = self._plain_extras(t_stop, <without_extras>0)
                else:
                    code = self._advance(t_stop)
            self.store_rng()
        return code

    # -- random words (DESIGN §2.4; the helpers below, on the engine's generator) -----------------
    cdef inline uint64_t next_u64(self) noexcept nogil:
        return collide_next(&self.pcg, self.rng)      # inlined PCG64, or the bitgen_t pointer

    cdef inline double uniform(self) noexcept nogil:
        return rng_uniform(&self.pcg, self.rng)

    cdef inline int64_t randint(self, int64_t n) noexcept nogil:
        return rng_randint(&self.pcg, self.rng, n)

    cdef inline double exponential(self) noexcept nogil:
        return rng_exponential(&self.pcg, self.rng)

    cdef inline double normal(self) noexcept nogil:
        return rng_normal(&self.pcg, self.rng)

    cdef inline double lifetime(self) noexcept nogil:
        return rng_lifetime(&self.pcg, self.rng, self.dist, &self.pf[0], &self.xa[0], self.emp_n)

    cdef inline double next_arrival_after(self, double t, double e) noexcept nogil:
        """The next arrival after t for one exponential draw e (see _core_python)."""
        cdef int64_t ms = self.sched_n, off, lo, hi, mid, i
        cdef double r, seg_end, t_next
        if ms == 0:
            return t + e / self.rate
        off = 2 * self.emp_n
        lo = 0
        hi = ms
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.xa[off + mid] <= t:
                lo = mid
            else:
                hi = mid
        i = lo
        while True:
            r = self.xa[off + ms + i]
            if i + 1 >= ms:
                return t + e / r
            seg_end = self.xa[off + i + 1]
            t_next = t + e / r
            if t_next < seg_end:
                return t_next
            e -= (seg_end - t) * r
            if e < 0.0:
                e = 0.0
            t = seg_end
            i += 1

    cdef double biased_lifetime(self) noexcept nogil:
        cdef int64_t dist = self.dist
        cdef double e1
        if dist == 0:
            e1 = self.exponential()
            return self.mean * (e1 + self.exponential())
        if dist == 1:
            return self.mean
        if dist == 2:
            return exp(self.mu + self.sigma * self.sigma + self.sigma * self.normal())
        if dist == 4:
            return self.biased_empirical()
        return self.xm * exp(self.exponential() / (self.alpha - 1.0))

    cdef double biased_empirical(self) noexcept nogil:
        cdef int64_t ne = self.emp_n, lo = 0, hi, mid
        cdef double x = self.uniform() * self.xa[2 * ne - 1]
        hi = ne - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.xa[ne + mid] > x:
                hi = mid
            else:
                lo = mid + 1
        return self.xa[lo]

    # -- the end-time queue (heap_* above). Entries are never moved out of the middle: a reset
    # victim is marked DEAD and keeps its id until its entry reaches the top (as the reference's
    # lazy deletion), so sifting writes no positions into the connection records.
    cdef inline void sift_up(self, int64_t i, int32_t c, double kc) noexcept nogil:
        heap_sift_up(&self.heap[0], &self.hkey[0], &self.c_serial[0], i, c, kc)

    cdef inline void sift_down(self, int64_t i, int32_t c, double kc) noexcept nogil:
        heap_sift_down(&self.heap[0], &self.hkey[0], &self.c_serial[0], self.si[S_HEAP_N], i, c,
                       kc)

    cdef inline void heap_push(self, int32_t c) noexcept nogil:
        cdef int64_t i = self.si[S_HEAP_N]
        self.si[S_HEAP_N] = i + 1
        self.crec[REC * c + R_POS] = 0
        self.sift_up(i, c, self.c_end[c])

    cdef inline int32_t heap_pop(self) noexcept nogil:
        """Remove and return the top."""
        cdef int32_t top = self.heap[0]
        cdef int64_t n = self.si[S_HEAP_N] - 1
        self.si[S_HEAP_N] = n
        if n > 0:
            self.sift_down(0, self.heap[n], self.hkey[n])
        self.crec[REC * top + R_POS] = -1
        return top

    cdef inline void drop_dead_tops(self) noexcept nogil:
        """Pop the entries of reset connections off the top and give their ids back."""
        cdef int32_t h
        while self.si[S_HEAP_N] > 0 and self.crec[REC * self.heap[0] + R_POS] == DEAD:
            h = self.heap_pop()
            self.ids[self.si[S_FREE_TOP]] = h
            self.si[S_FREE_TOP] += 1

    # -- TIME_WAIT table -------------------------------------------------------------------------
    cdef inline int64_t tw_home(self, int64_t key) noexcept nogil:
        cdef uint64_t h = (<uint64_t>key) * 0x9E3779B97F4A7C15ULL
        return (<int64_t>(h >> self.tw_shift)) & (self.tw_cap - 1)

    # slot i of the TIME_WAIT table: key at tw_key[2 i], expiry at tw_exp[2 i + 1] (one buffer)
    cdef int64_t tw_find(self, int64_t key) noexcept nogil:
        cdef int64_t cap = self.tw_cap
        cdef int64_t i = self.tw_home(key)
        while self.tw_key[2 * i] != -1:
            if self.tw_key[2 * i] == key:
                return i
            i = (i + 1) & (cap - 1)
        return -1

    cdef void tw_set(self, int64_t key, double expiry) noexcept nogil:
        cdef int64_t cap = self.tw_cap
        cdef int64_t i = self.tw_home(key)
        while self.tw_key[2 * i] != -1:
            if self.tw_key[2 * i] == key:
                self.tw_exp[2 * i + 1] = expiry
                return
            i = (i + 1) & (cap - 1)
        self.tw_key[2 * i] = key
        self.tw_exp[2 * i + 1] = expiry
        self.si[S_TW_N] += 1

    cdef void tw_delete(self, int64_t i) noexcept nogil:
        cdef int64_t cap = self.tw_cap
        cdef int64_t mask = cap - 1, j = i, h
        cdef bint keep
        while True:
            j = (j + 1) & mask
            if self.tw_key[2 * j] == -1:
                break
            h = self.tw_home(self.tw_key[2 * j])
            if i <= j:
                keep = i < h and h <= j
            else:
                keep = h > i or h <= j
            if not keep:
                self.tw_key[2 * i] = self.tw_key[2 * j]
                self.tw_exp[2 * i + 1] = self.tw_exp[2 * j + 1]
                i = j
        self.tw_key[2 * i] = -1
        self.si[S_TW_N] -= 1

    cdef inline void take_over_time_wait(self, int64_t ip, int64_t p, int64_t target,
                                         bint measure) noexcept nogil:
        """A SYN for a 4-tuple the target holds in TIME_WAIT: accepted, the entry goes."""
        cdef int64_t i = self.tw_find((ip * 65536 + p) * self.nb_targets + target)
        if i >= 0:
            self.tw_delete(i)
            if measure:
                self.si[S_TWHITS] += 1

    # -- free ports and the estimate's sums ------------------------------------------------------
    # The port table is port-major: entry s = (ip * P + p) * n + j, so the N entries of one port
    # from one IP share a cache line; ptab[2 s] is the slot (-1 free, HELD, or a connection id:
    # live, or pending), ptab[2 s + 1] the live holder's target (-1: none).
    cdef inline int64_t pool_of(self, int64_t d) noexcept nogil:
        return d // self.n if self.alloc == 3 else d

    cdef inline int64_t entry(self, int64_t d, int64_t p) noexcept nogil:
        cdef int64_t ip = d // self.n
        return (ip * self.Pn + p) * self.n + (d - ip * self.n)

    cdef inline bint is_free(self, int64_t d, int64_t p) noexcept nogil:
        """Port p is free towards d (eim: on d's NAT IP)."""
        if self.alloc == 3:
            return self.fpos[(d // self.n) * self.Pn + p] != UNLISTED
        return self.ptab[2 * self.entry(d, p)] == -1

    cdef inline void take_free(self, int64_t pool, int64_t p) noexcept nogil:
        cdef int64_t Pn = self.Pn
        cdef int64_t i, n = self.free_n[pool] - 1
        cdef uint16_t last
        self.free_n[pool] = n
        if self.dense[pool] == 0:
            return
        i = self.fpos[pool * Pn + p]
        last = self.free[pool * Pn + n]
        self.free[pool * Pn + i] = last
        self.fpos[pool * Pn + last] = <uint16_t>i
        self.fpos[pool * Pn + p] = UNLISTED

    cdef inline void put_free(self, int64_t pool, int64_t p) noexcept nogil:
        cdef int64_t Pn = self.Pn
        cdef int64_t n = self.free_n[pool]
        self.free_n[pool] = n + 1
        if self.dense[pool] == 0:
            return
        self.free[pool * Pn + n] = <uint16_t>p
        self.fpos[pool * Pn + p] = <uint16_t>n

    cdef void list_ports(self, int64_t d) noexcept nogil:
        """Random allocator below half free: list d's free ports in port order."""
        list_free_ports(&self.dense[0], &self.free[0], &self.fpos[0], &self.ptab[0], 2, -1, self.n,
                        self.Pn, d)

    cdef inline void unlist_ports(self, int64_t d) noexcept nogil:
        self.dense[d] = 0

    cdef inline int64_t distinct_targets(self, int64_t ip, int64_t p, int64_t skip) noexcept nogil:
        return port_distinct(&self.ptab[2 * (ip * self.Pn + p) * self.n], self.n, skip)

    cdef inline void holder_changed(self, int64_t d0, int64_t p, int64_t target,
                                    int64_t delta) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t ip = d0 // n
        port_holder_changed(&self.ptab[2 * (ip * self.Pn + p) * n], &self.est_sum[ip * n], n,
                            d0 - ip * n, target, delta)

    cdef inline void port_freed(self, int64_t d, int64_t p) noexcept nogil:
        self.ptab[2 * self.entry(d, p)] = -1
        self.put_free(self.pool_of(d), p)
        if self.track:
            self.est_sum[d] += self.distinct_targets(d // self.n, p, d % self.n)

    cdef inline void port_taken(self, int64_t d, int64_t p) noexcept nogil:
        self.ptab[2 * self.entry(d, p)] = HELD
        self.take_free(self.pool_of(d), p)
        if self.track:
            self.est_sum[d] -= self.distinct_targets(d // self.n, p, d % self.n)

    cdef inline void release_port(self, int64_t d, int64_t p, double t) noexcept nogil:
        cdef int64_t cap, i
        if self.cool_on:
            cap = self.cq_at.shape[0]
            i = (self.si[S_CQ_HEAD] + self.si[S_CQ_N]) % cap
            self.cq_at[i] = t + self.reuse
            self.cq_dp[i] = d * self.Pn + p
            self.si[S_CQ_N] += 1
        else:
            self.port_freed(d, p)

    # -- the end clock of exponential lifetimes (see _core_python) -------------------------------
    cdef inline void clock_sync(self, double t) noexcept nogil:
        cdef double e = self.sf[F_END_E] - (t - self.sf[F_END_T0]) * <double>self.si[S_LIVE_N] \
            / self.mean
        self.sf[F_END_E] = e if e >= 0.0 else 0.0
        self.sf[F_END_T0] = t

    cdef inline void clock_refresh(self) noexcept nogil:
        """When the clock rings next (end_t0 + end_e * mean / L), after L or end_e changed."""
        cdef int64_t nl = self.si[S_LIVE_N]
        if nl == 0:
            self.sf[F_CLOCK] = INFINITY
        else:
            self.sf[F_CLOCK] = self.sf[F_END_T0] + self.sf[F_END_E] * self.mean / <double>nl

    cdef inline void live_add(self, int32_t c, double t) noexcept nogil:
        cdef int64_t nl = self.si[S_LIVE_N]
        self.clock_sync(t)
        self.crec[REC * c + R_POS] = nl
        self.llist[nl] = c
        self.si[S_LIVE_N] = nl + 1
        self.clock_refresh()

    cdef inline void live_remove(self, int32_t c, double t) noexcept nogil:
        cdef int64_t nl = self.si[S_LIVE_N] - 1, i = self.crec[REC * c + R_POS]
        cdef int32_t last = self.llist[nl]
        self.clock_sync(t)
        self.si[S_LIVE_N] = nl
        self.llist[i] = last
        self.crec[REC * last + R_POS] = i
        self.crec[REC * c + R_POS] = -1
        self.clock_refresh()

    cdef void end_by_clock(self, double t) noexcept nogil:
        cdef int32_t h
        self.sf[F_END_T0] = t
        h = self.llist[self.randint(self.si[S_LIVE_N])]
        self.end_connection(h, t, False)
        self.sf[F_END_E] = self.exponential()
        self.clock_refresh()

    cdef inline void schedule_end(self, int32_t c, double t) noexcept nogil:
        if self.memoryless:
            self.live_add(c, t)
        else:
            self.heap_push(c)

    cdef void end_connection(self, int32_t h, double t, bint by_reset) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t d = self.crec[REC * h + R_DEST], p = self.crec[REC * h + R_PORT], target = self.crec[REC * h + R_TGT]
        cdef int64_t ip = d // n
        cdef int64_t s = (ip * self.Pn + p) * n + (d - ip * n)
        cdef int64_t key, cap, i
        cdef double expiry
        self.ptab[2 * s] = HELD
        self.ptab[2 * s + 1] = -1
        self.live[d] -= 1
        if self.memoryless:
            self.live_remove(h, t)
        elif by_reset:
            self.crec[REC * h + R_POS] = DEAD      # its heap entry goes when it reaches the top
        if self.track:
            self.holder_changed(d, p, target, -1)
        if not self.cip:
            self.ntl[(d - ip * n) * self.nb_targets + target] -= 1
        if self.crec[REC * h + R_CLOSE] != 0 and not by_reset and self.tw_on:
            key = (ip * 65536 + p) * self.nb_targets + target
            expiry = t + self.tw
            self.tw_set(key, expiry)
            cap = self.twq_key.shape[0]
            i = (self.si[S_TWQ_HEAD] + self.si[S_TWQ_N]) % cap
            self.twq_key[i] = key
            self.twq_exp[i] = expiry
            self.si[S_TWQ_N] += 1
        if self.crec[REC * h + R_POS] != DEAD:
            self.ids[self.si[S_FREE_TOP]] = h
            self.si[S_FREE_TOP] += 1
        self.release_port(d, p, t)

    # -- allocators --------------------------------------------------------------------------------
    cdef int64_t linux_scan(self, int64_t d, int64_t offset) noexcept nogil:
        cdef int64_t Pn = self.Pn, p, i
        offset &= ~(<int64_t>1)
        while True:
            p = offset
            i = 0
            while i < Pn:
                if p >= Pn:
                    p -= Pn
                if self.is_free(d, p):
                    self.si[S_SKIPPED] = i // 2
                    return p
                p += 2
                i += 2
            offset += 1
            if (offset & 1) == 0 or Pn <= 1:
                return -1

    cdef inline int64_t allocate(self, int64_t ip, int64_t j, double t) noexcept nogil:
        cdef int64_t n = self.n, Pn = self.Pn
        cdef int64_t d = ip * n + j
        cdef int64_t pool = self.pool_of(d)
        cdef int64_t nfree = self.free_n[pool], alloc = self.alloc, p, epoch, skipped, u
        if nfree == 0:
            return -1
        if alloc == 0:
            if self.dense[d] != 0 and 4 * nfree > 3 * Pn:
                self.unlist_ports(d)
            elif self.dense[d] == 0 and 2 * nfree < Pn:
                self.list_ports(d)
            if self.dense[d] != 0:
                p = self.free[d * Pn + self.randint(nfree)]
            else:
                p = self.randint(Pn)
                while self.ptab[2 * ((ip * Pn + p) * n + j)] != -1:
                    p = self.randint(Pn)
        elif alloc == 3:
            p = self.free[pool * Pn + self.randint(nfree)]
        elif alloc == 1:
            if self.cursor[d] < 0:
                self.cursor[d] = self.randint(Pn)
            p = self.cursor[d]
            while not self.is_free(d, p):
                p = p + 1 if p + 1 < Pn else 0
            self.cursor[d] = p + 1 if p + 1 < Pn else 0
        else:
            epoch = <int64_t>floor(t / LINUX_EPOCH_S)
            if epoch != self.lin_epoch[d]:
                self.lin_epoch[d] = epoch
                self.lin_off[d] = self.randint(Pn)
            p = self.linux_scan(d, (self.lin_pert[d] + self.lin_off[d]) % Pn)
            skipped = self.si[S_SKIPPED]
            u = self.randint(8)
            self.lin_pert[d] = (self.lin_pert[d] + 2 * (skipped if skipped > u else u) + 2) % Pn
        self.port_taken(d, p)
        return p

    cdef inline int64_t draw_node(self) noexcept nogil:
        cdef double u
        cdef int64_t j = 0
        if self.weighted:
            u = self.uniform()
            while u >= self.wcum[j]:
                j += 1
            return j
        return self.randint(self.n)

    cdef void add_estimate(self, double t, int64_t ip, int64_t j, int64_t d) noexcept nogil:
        cdef int64_t n = self.n, Pn = self.Pn, nfree, size_t, p, i, total, b, nb
        cdef double e = 0.0
        if self.cross and self.cip and n > 1 and self.live[d] < self.limit:
            nfree = self.free_n[self.pool_of(d)]
            size_t = self.nb_targets
            if self.alloc == 0 and nfree > 0:
                e = <double>self.est_sum[d] / <double>(nfree * size_t)
            elif self.alloc == 1 and nfree > 0 and self.cursor[d] >= 0:
                p = self.cursor[d]
                while not self.is_free(d, p):
                    p = p + 1 if p + 1 < Pn else 0
                e = <double>self.distinct_targets(ip, p, j) / <double>size_t
            elif self.alloc == 1 and nfree > 0:
                total = 0
                for i in range(Pn):
                    if self.is_free(d, i):
                        total += self.distinct_targets(ip, i, j)
                e = <double>total / <double>(nfree * size_t)
        nb = self.nbatch
        b = <int64_t>((t - self.t_measure) / (self.t_end - self.t_measure) * nb)
        if b < 0:
            b = 0
        if b > nb - 1:
            b = nb - 1
        self.batches[b] += e

    # -- one arrival (DESIGN §2.1, §2.2) ------------------------------------------------------------
    cdef void arrival(self, double t, double given_life, bint measure, int64_t outcome) noexcept nogil:
        cdef int64_t n = self.n, Pn = self.Pn, k = self.k
        cdef int64_t client = 0, ip, j, d, p, target, nholders = 0, jj, i, base
        cdef int32_t h, c
        cdef double life, scf
        cdef bint close
        if measure:
            self.si[S_CONN] += 1
        if self.need_client:
            client = self.randint(self.clients)
        if self.ip_per_client:
            ip = client % k
        else:
            ip = self.randint(k)
        if self.sticky:
            if t >= self.cl_exp[client]:
                self.cl_node[client] = self.draw_node()
                self.cl_exp[client] = t + self.dns_ttl
            j = self.cl_node[client]
        else:
            j = self.draw_node()
        d = ip * n + j
        if measure and self.estimate:
            self.add_estimate(t, ip, j, d)
        if self.live[d] >= self.limit:
            p = -1
        else:
            p = self.allocate(ip, j, t)
        if p < 0:
            if measure:
                self.si[S_AFAIL] += 1
            return
        if self.cross:
            target = self.randint(self.nb_targets)
        else:
            target = self.zs[j] + self.randint(self.zc[j])
        base = 2 * (ip * Pn + p) * n
        if self.cip:
            for jj in range(n):
                if jj != j and self.ptab[base + 2 * jj + 1] == target:
                    nholders += 1
        elif self.ntl[j * self.nb_targets + target] >= self.node_limit:
            self.port_freed(d, p)
            if measure:
                self.si[S_AFAIL] += 1
            return
        if self.memoryless:
            life = 0.0
        else:
            life = self.lifetime() if given_life < 0 else given_life
        scf = self.scf
        close = scf >= 1.0 or (scf > 0.0 and self.uniform() < scf)
        if nholders > 0:
            if measure:
                self.si[S_COLL] += 1
                self.si[S_PAIRS] += nholders
                if self.sf[F_FIRST] < 0:
                    self.sf[F_FIRST] = t - self.t_measure
            if outcome <= 2 and self.ca_limit > 0 and given_life < 0 and not self.challenge_ack(t):
                outcome = 3
            if outcome == 1:
                if measure:
                    self.si[S_FAILED] += 1
                self.release_port(d, p, t)
                return
            if outcome == 0 or outcome == 4:
                for jj in range(n):
                    if jj != j and self.ptab[base + 2 * jj + 1] == target:
                        self.end_connection(self.ptab[base + 2 * jj], t, True)
                        if measure:
                            self.si[S_RESETS] += 1
            if outcome >= 3:
                self.start_pending(d, p, target, close, t, life, measure)
                return
        elif self.tw_on:
            self.take_over_time_wait(ip, p, target, measure)
        if measure:
            self.si[S_EST] += 1
        c = self.new_record(d, p, target, close, t + life, not self.memoryless)
        if self.track:
            self.holder_changed(d, p, target, 1)
        self.ptab[base + 2 * j] = c
        self.ptab[base + 2 * j + 1] = <int32_t>target
        self.live[d] += 1
        if not self.cip:
            self.ntl[j * self.nb_targets + target] += 1
        if measure and self.live[d] > self.si[S_PEAK]:
            self.si[S_PEAK] = self.live[d]
        self.schedule_end(c, t)

    # -- delayed connects -------------------------------------------------------------------------
    cdef inline int32_t new_record(self, int64_t d, int64_t p, int64_t target, bint close,
                                   double end, bint queued) noexcept nogil:
        """A connection record from the free-id stack, with the next serial (heap tie-break);
        end and serial are stored only if it goes into the heap (`queued`)."""
        cdef int32_t c
        self.si[S_SERIAL] += 1
        self.si[S_FREE_TOP] -= 1
        c = self.ids[self.si[S_FREE_TOP]]
        self.crec[REC * c + R_DEST] = <int32_t>d
        self.crec[REC * c + R_PORT] = <int32_t>p
        self.crec[REC * c + R_TGT] = <int32_t>target
        self.crec[REC * c + R_CLOSE] = 1 if close else 0
        self.crec[REC * c + R_ENTRY] = <int32_t>self.entry(d, p)
        if queued:
            self.c_end[c] = end
            self.c_serial[c] = self.si[S_SERIAL]
        return c

    cdef bint challenge_ack(self, double t) noexcept nogil:
        cdef int64_t sec = <int64_t>floor(t)
        if sec != self.si[S_CA_SEC]:
            self.si[S_CA_SEC] = sec
            self.si[S_CA_USED] = 0
        if self.si[S_CA_USED] < self.ca_limit:
            self.si[S_CA_USED] += 1
            return True
        return False

    cdef void start_pending(self, int64_t d, int64_t p, int64_t target, bint close, double t,
                            double life, bint measure) noexcept nogil:
        cdef int32_t c
        if measure:
            self.si[S_PENDING] += 1
        c = self.new_record(d, p, target, close, t + self.xa[self.syn_off], True)
        self.c_t0[c] = t
        self.c_life[c] = life
        self.crec[REC * c + R_RETRY] = 0
        self.crec[REC * c + R_MEAS] = 1 if measure else 0
        self.ptab[2 * self.entry(d, p)] = c
        self.live[d] += 1
        if measure and self.live[d] > self.si[S_PEAK]:
            self.si[S_PEAK] = self.live[d]
        self.heap_push(c)

    cdef void retry(self, int32_t h, double t) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t d = self.crec[REC * h + R_DEST], p = self.crec[REC * h + R_PORT], target = self.crec[REC * h + R_TGT]
        cdef int64_t ip = d // n
        cdef int64_t j = d - ip * n, jj, i, r
        cdef int64_t base = 2 * (ip * self.Pn + p) * n
        cdef bint meas = self.crec[REC * h + R_MEAS] != 0, busy = False
        for jj in range(n):
            if jj != j and self.ptab[base + 2 * jj + 1] == target:
                busy = True
        if not busy:
            if self.tw_on:
                self.take_over_time_wait(ip, p, target, meas)
            r = self.crec[REC * h + R_RETRY]
            self.crec[REC * h + R_RETRY] = -1
            self.c_end[h] = t + self.c_life[h]
            if self.track:
                self.holder_changed(d, p, target, 1)
            self.ptab[base + 2 * j + 1] = <int32_t>target
            if meas:
                self.si[S_EST] += 1
                self.si[S_DELAYED] += 1
                self.si[S_PENDING] -= 1
                self.dhist[r] += 1
            self.schedule_end(h, t)
            return
        r = self.crec[REC * h + R_RETRY] + 1
        self.crec[REC * h + R_RETRY] = <int32_t>r
        if r < self.syn_n:
            self.c_end[h] = self.c_t0[h] + self.xa[self.syn_off + r]
            self.heap_push(h)
            return
        self.crec[REC * h + R_RETRY] = -1
        self.ptab[base + 2 * j] = HELD
        self.live[d] -= 1
        if meas:
            self.si[S_FAILED] += 1
            self.si[S_PENDING] -= 1
        self.ids[self.si[S_FREE_TOP]] = h
        self.si[S_FREE_TOP] += 1
        self.release_port(d, p, t)

    # -- the event loop --------------------------------------------------------------------------
    cdef int _advance(self, double t_stop) noexcept nogil:
        cdef bint tw_on = self.tw_on, measure
        cdef double t_end, t_cool, t_tw, t_ev, t, expiry, t_next, t_clock
        cdef int64_t cap, dp, d, key, i, outcome = self.pi[OUTCOME]
        cdef int32_t h
        t_next = self.sf[F_NEXT_ARR]
        while True:
            self.drop_dead_tops()
            if self.si[S_FREE_TOP] == 0:
                self.sf[F_NEXT_ARR] = t_next
                return 1
            if tw_on:
                if 10 * (self.si[S_TW_N] + 1) > 7 * self.tw_cap:
                    self.sf[F_NEXT_ARR] = t_next
                    return 2
                if self.si[S_TWQ_N] == self.twq_key.shape[0]:
                    self.sf[F_NEXT_ARR] = t_next
                    return 3
            t_end = self.hkey[0] if self.si[S_HEAP_N] > 0 else INFINITY
            t_clock = self.sf[F_CLOCK] if self.memoryless else INFINITY
            if t_clock < t_end:
                t_end = t_clock
            t_cool = self.cq_at[self.si[S_CQ_HEAD]] if self.si[S_CQ_N] > 0 else INFINITY
            t_tw = self.twq_exp[self.si[S_TWQ_HEAD]] if self.si[S_TWQ_N] > 0 else INFINITY
            t_ev = t_end
            if t_cool < t_ev:
                t_ev = t_cool
            if t_tw < t_ev:
                t_ev = t_tw
            if t_ev <= t_next:
                if t_ev >= t_stop:
                    self.sf[F_NEXT_ARR] = t_next
                    return 0
                if t_clock == t_ev:
                    self.end_by_clock(t_clock)
                elif t_end == t_ev:
                    h = self.heap_pop()
                    if self.crec[REC * h + R_RETRY] >= 0:
                        self.retry(h, t_end)
                    else:
                        self.end_connection(h, t_end, False)
                elif t_cool == t_ev:
                    cap = self.cq_at.shape[0]
                    dp = self.cq_dp[self.si[S_CQ_HEAD]]
                    self.si[S_CQ_HEAD] = (self.si[S_CQ_HEAD] + 1) % cap
                    self.si[S_CQ_N] -= 1
                    d = dp // self.Pn
                    self.port_freed(d, dp - d * self.Pn)
                else:
                    cap = self.twq_key.shape[0]
                    key = self.twq_key[self.si[S_TWQ_HEAD]]
                    expiry = self.twq_exp[self.si[S_TWQ_HEAD]]
                    self.si[S_TWQ_HEAD] = (self.si[S_TWQ_HEAD] + 1) % cap
                    self.si[S_TWQ_N] -= 1
                    i = self.tw_find(key)
                    if i >= 0 and self.tw_exp[2 * i + 1] == expiry:
                        self.tw_delete(i)
            else:
                t = t_next
                if t >= t_stop:
                    self.sf[F_NEXT_ARR] = t_next
                    return 0
                measure = self.t_measure <= t and t < self.t_end
                self.arrival(t, -1.0, measure, outcome)
                t_next = self.next_arrival_after(t, self.exponential())

    # -- the event loop of plain scenarios -----------------------------------------------------------
    cdef inline int _plain_extras(self, double t_stop, Extras extras) noexcept nogil:
        """Pick the copy of `_advance_plain` for the estimate and the end source."""
        if self.estimate and self.memoryless:
            return self._advance_plain(t_stop, <with_estimate>1, <end_clock>0, extras)
        if self.memoryless:
            return self._advance_plain(t_stop, <without_estimate>0, <end_clock>0, extras)
        if self.estimate:
            return self._advance_plain(t_stop, <with_estimate>1, <end_calendar>0, extras)
        return self._advance_plain(t_stop, <without_estimate>0, <end_calendar>0, extras)

    cdef int _advance_plain(self, double t_stop, Estimate with_est, Ends ends,
                            Extras extras) noexcept nogil:
        """`_advance` for the common case: random ports, client IP preservation, no reuse delay
        and no delayed connects; ends by the end clock (exponential lifetimes) or the calendar
        (any other law; built from the heap on entry, given back as one). The same steps, draws
        and floating-point operations in the same order; the generator, the clock, the calendar's
        scalars and the counters live in locals and the arrays are raw pointers, so the compiler
        keeps them in registers.
        The clock is synchronised where `_advance` would (a reset victim's end, a new connection)
        and its ring time computed once where `_advance` overwrites it."""
        cdef collide_pcg64 g = self.pcg
        cdef bitgen_t *bg = self.rng
        cdef int32_t *ptab = &self.ptab[0]
        cdef int32_t *crec = &self.crec[0]
        cdef int32_t *llist = &self.llist[0]
        cdef int32_t *heap = &self.heap[0]
        cdef double *hkey = &self.hkey[0]
        cdef int64_t *c_serial = &self.c_serial[0]
        cdef int32_t *ids = &self.ids[0]
        cdef int32_t *dense = &self.dense[0]
        cdef uint16_t *free = &self.free[0]
        cdef uint16_t *fpos = &self.fpos[0]
        cdef int64_t *live = &self.live[0]
        cdef int64_t *free_n = &self.free_n[0]
        cdef int64_t *si = &self.si[0]
        cdef int64_t *est_sum = &self.est_sum[0]
        cdef double *batches = &self.batches[0]
        cdef double *sf = &self.sf[0]
        cdef const double *pf = &self.pf[0]
        cdef const double *xa = &self.xa[0]
        cdef int64_t nbatch = self.nbatch, dist = self.dist, emp_n = self.emp_n
        cdef int64_t n = self.n, Pn = self.Pn, k = self.k, nb = self.nb_targets, limit = self.limit
        cdef int64_t outcome = self.pi[OUTCOME]
        cdef bint cross = self.cross
        cdef bint track = Estimate is with_estimate and self.track
        cdef bint weighted = self.weighted
        cdef bint tw_on = Extras is with_extras and self.tw_on
        cdef bint sticky = Extras is with_extras and self.sticky
        cdef bint need_client = Extras is with_extras and self.need_client
        cdef bint ip_per_client = Extras is with_extras and self.ip_per_client
        cdef int64_t clients = self.clients, key
        cdef double tw = self.tw, dns_ttl = self.dns_ttl, t_tw = INFINITY, expiry
        cdef int64_t *cl_node = &self.cl_node[0]
        cdef double *cl_exp = &self.cl_exp[0]
        cdef double mean = self.mean, scf = self.scf, t_measure = self.t_measure
        cdef double t_end = self.t_end
        # state held in locals, written back at the end
        cdef int64_t nl = si[S_LIVE_N], free_top = si[S_FREE_TOP], serial = si[S_SERIAL]
        cdef int64_t heap_n = si[S_HEAP_N]
        cdef int64_t conn = si[S_CONN], est = si[S_EST], afail = si[S_AFAIL]
        cdef int64_t failed = si[S_FAILED], coll = si[S_COLL], resets = si[S_RESETS]
        cdef int64_t pairs = si[S_PAIRS], peak = si[S_PEAK]
        cdef double end_e = sf[F_END_E], end_t0 = sf[F_END_T0], clock = sf[F_CLOCK]
        cdef double first = sf[F_FIRST], t_next = sf[F_NEXT_ARR], t, e, u, life = 0.0
        cdef int64_t ip, j, d, p, target, nholders, jj, nfree, s, i, m, client = 0
        cdef int32_t h, c
        cdef bint measure, close, synced
        cdef int code
        cdef int32_t *rows = &self.rows[0]
        cdef int32_t *pt = &self.pt[0]
        cdef int64_t b
        cdef Calendar cal
        if not self.compact:
            if Ends is end_clock:
                rows_enter(rows, pt, llist, crec, ptab, nl)
            else:
                rows_enter_heap(rows, pt, heap, heap_n, crec, ptab)
                cal_clear(&self.cal)
                for i in range(heap_n):
                    cal_insert(&self.cal, heap[i], hkey[i])
            self.compact = True
        if Ends is end_calendar:
            cal = self.cal
        while True:
            if Ends is end_calendar:
                # drop_dead_tops: reset connections' entries leave the top and give their ids back
                while cal.n > 0 and rows[L * cal.least + L_PORTC] & L_DEAD:
                    ids[free_top] = cal_pop(&cal)
                    free_top += 1
            if free_top == 0:
                code = 1
                break
            if tw_on:
                if 10 * (si[S_TW_N] + 1) > 7 * self.tw_cap:
                    code = 2
                    break
                if si[S_TWQ_N] == self.twq_key.shape[0]:
                    code = 3
                    break
                t_tw = self.twq_exp[si[S_TWQ_HEAD]] if si[S_TWQ_N] > 0 else INFINITY
            if Ends is end_clock:
                t = clock
            else:
                t = cal.e[cal.least].key if cal.n > 0 else INFINITY
            if t_tw < t and t_tw <= t_next:
                # a TIME_WAIT entry expires (unless it was renewed or taken over since)
                if t_tw >= t_stop:
                    code = 0
                    break
                key = self.twq_key[si[S_TWQ_HEAD]]
                expiry = self.twq_exp[si[S_TWQ_HEAD]]
                si[S_TWQ_HEAD] = (si[S_TWQ_HEAD] + 1) % self.twq_key.shape[0]
                si[S_TWQ_N] -= 1
                if si[S_TWQ_N] > 0:     # a hint for the next expiry's slot, events from now
                    COLLIDE_PREFETCH(&self.tw_key[2 * self.tw_home(self.twq_key[si[S_TWQ_HEAD]])])
                i = self.tw_find(key)
                if i >= 0 and self.tw_exp[2 * i + 1] == expiry:
                    self.tw_delete(i)
                continue
            if t <= t_next:
                # a connection ends: the clock rings (a uniformly chosen live one: end_by_clock)
                # or the calendar's least is due (cal_pop); then end_connection(h, t, False)
                if t >= t_stop:
                    code = 0
                    break
                if Ends is end_clock:
                    end_t0 = t                  # end_connection's clock_sync is a no-op then
                    h = <int32_t>rng_randint(&g, bg, nl)              # a row of the live list
                    # a hint: the last row moves into h below and its port slot is rewritten;
                    # that line and h's own slot are then loaded at the same time
                    COLLIDE_PREFETCH(&pt[rows[L * (nl - 1) + L_ENTRY]])
                else:
                    h = cal_pop(&cal)
                s = rows[L * h + L_ENTRY]
                d = rows[L * h + L_DEST]
                target = rows[L * h + L_TGT]
                m = rows[L * h + L_PORTC]
                p = m & 0xFFFF
                close = (m & L_CLOSE) != 0
                if track or tw_on:
                    ip = d // n
                    j = d - ip * n
                if tw_on and close:     # a hint: the TIME_WAIT entry is written below
                    COLLIDE_PREFETCH(&self.tw_key[2 * self.tw_home((ip * 65536 + p) * nb + target)])
                pt[s] = PT_HELD
                live[d] -= 1
                if Ends is end_clock:
                    nl = rows_remove(rows, pt, nl, h)
                if track:
                    rows_port_holder_changed(&pt[s - j], rows, &est_sum[d - j], n, j, target, -1)
                if tw_on and close:
                    # the server closed first: the target keeps the 4-tuple in TIME_WAIT
                    key = (ip * 65536 + p) * nb + target
                    expiry = t + tw
                    self.tw_set(key, expiry)
                    i = (si[S_TWQ_HEAD] + si[S_TWQ_N]) % self.twq_key.shape[0]
                    self.twq_key[i] = key
                    self.twq_exp[i] = expiry
                    si[S_TWQ_N] += 1
                if Ends is end_calendar:
                    ids[free_top] = h
                free_top += 1
                pt[s] = PT_FREE                                       # port_freed
                port_free_counted(free_n, dense, free, fpos, Pn, d, p)
                if track:
                    est_sum[d] += rows_port_distinct(&pt[s - j], rows, n, j)
                if Ends is end_clock:
                    end_e = rng_exponential(&g, bg)
                    if nl == 0:
                        clock = INFINITY
                    else:
                        clock = end_t0 + end_e * mean / <double>nl
                continue
            t = t_next
            if t >= t_stop:
                code = 0
                break
            measure = t_measure <= t and t < t_end
            synced = False
            while True:            # one arrival (Engine.arrival); `break` where it returns
                if measure:
                    conn += 1
                if need_client:
                    client = rng_randint(&g, bg, clients)
                if ip_per_client:
                    ip = client % k
                else:
                    ip = rng_randint(&g, bg, k)
                if not sticky or t >= cl_exp[client]:
                    if weighted:                                  # draw_node
                        u = rng_uniform(&g, bg)
                        j = 0
                        while u >= self.wcum[j]:
                            j += 1
                    else:
                        j = rng_randint(&g, bg, n)
                    if sticky:              # the client resolves the name again: a new node
                        cl_node[client] = j
                        cl_exp[client] = t + dns_ttl
                else:
                    j = cl_node[client]
                d = ip * n + j
                if Estimate is with_estimate and measure:         # add_estimate
                    e = 0.0
                    if cross and n > 1 and live[d] < limit and free_n[d] > 0:
                        e = <double>est_sum[d] / <double>(free_n[d] * nb)
                    i = <int64_t>((t - t_measure) / (t_end - t_measure) * nbatch)
                    if i < 0:
                        i = 0
                    if i > nbatch - 1:
                        i = nbatch - 1
                    batches[i] += e
                nfree = free_n[d]
                if live[d] >= limit or nfree == 0:
                    if measure:
                        afail += 1
                    break
                # allocate: rejection against the port table while at least half is free, the
                # free list below half, back to rejection above three quarters
                if dense[d] != 0 and 4 * nfree > 3 * Pn:
                    dense[d] = 0
                elif dense[d] == 0 and 2 * nfree < Pn:
                    list_free_ports(dense, free, fpos, pt, 1, PT_FREE, n, Pn, d)
                if dense[d] != 0:
                    p = free[d * Pn + rng_randint(&g, bg, nfree)]
                    i = fpos[d * Pn + p]                          # take_free
                    free[d * Pn + i] = free[d * Pn + nfree - 1]
                    fpos[d * Pn + free[d * Pn + i]] = <uint16_t>i
                    fpos[d * Pn + p] = UNLISTED
                else:
                    p = rng_randint(&g, bg, Pn)
                    while pt[(ip * Pn + p) * n + j] != PT_FREE:
                        p = rng_randint(&g, bg, Pn)
                free_n[d] = nfree - 1
                b = (ip * Pn + p) * n                             # the port's first entry
                pt[b + j] = PT_HELD                                 # port_taken
                if track:
                    est_sum[d] -= rows_port_distinct(&pt[b], rows, n, j)
                if cross:
                    target = rng_randint(&g, bg, nb)
                else:
                    target = self.zs[j] + rng_randint(&g, bg, self.zc[j])
                if tw_on:       # a hint only: the lookup comes after the lifetime's draw
                    COLLIDE_PREFETCH(&self.tw_key[2 * self.tw_home((ip * 65536 + p) * nb + target)])
                nholders = 0
                for jj in range(n):
                    if jj != j and row_target(pt, rows, b + jj) == target:
                        nholders += 1
                if Ends is end_calendar:
                    life = rng_lifetime(&g, bg, dist, pf, xa, emp_n)
                close = scf >= 1.0 or (scf > 0.0 and rng_uniform(&g, bg) < scf)
                if nholders > 0:
                    if measure:
                        coll += 1
                        pairs += nholders
                        if first < 0:
                            first = t - t_measure
                    if outcome == 1:
                        if measure:
                            failed += 1
                        pt[b + j] = PT_FREE                           # release_port: port_freed
                        port_free_counted(free_n, dense, free, fpos, Pn, d, p)
                        if track:
                            est_sum[d] += rows_port_distinct(&pt[b], rows, n, j)
                        break
                    if outcome == 0:
                        for jj in range(n):
                            if jj == j or row_target(pt, rows, b + jj) != target:
                                continue
                            h = pt[b + jj] - 1
                            if Ends is end_clock and not synced:
                                e = end_e - (t - end_t0) * <double>nl / mean
                                end_e = e if e >= 0.0 else 0.0
                                end_t0 = t
                                synced = True
                            # end_connection(h, t, True): the holder on node jj
                            d = rows[L * h + L_DEST]
                            pt[b + jj] = PT_HELD
                            live[d] -= 1
                            if Ends is end_clock:
                                nl = rows_remove(rows, pt, nl, h)
                            else:               # its entry goes when it is the least
                                rows[L * h + L_PORTC] |= L_DEAD
                            if track:
                                rows_port_holder_changed(&pt[b], rows, &est_sum[d - jj], n, jj,
                                                         target, -1)
                            if Ends is end_clock:
                                free_top += 1
                            pt[b + jj] = PT_FREE
                            port_free_counted(free_n, dense, free, fpos, Pn, d, p)
                            if track:
                                est_sum[d] += rows_port_distinct(&pt[b], rows, n, jj)
                            if measure:
                                resets += 1
                        d = ip * n + j
                elif tw_on:
                    self.take_over_time_wait(ip, p, target, measure)
                if measure:
                    est += 1
                serial += 1                                       # new_record
                free_top -= 1
                if Ends is end_clock:       # the next row of the live list
                    c = <int32_t>nl
                else:                       # the record's row, its serial for the heap's ties
                    c = ids[free_top]
                    c_serial[c] = serial
                rows[L * c + L_ENTRY] = <int32_t>(b + j)
                rows[L * c + L_DEST] = <int32_t>d
                rows[L * c + L_TGT] = <int32_t>target
                rows[L * c + L_PORTC] = <int32_t>(p | (L_CLOSE if close else 0))
                if track:
                    rows_port_holder_changed(&pt[b], rows, &est_sum[d - j], n, j, target, 1)
                pt[b + j] = c + 1
                live[d] += 1
                if measure and live[d] > peak:
                    peak = live[d]
                if Ends is end_clock:                             # live_add
                    if not synced:
                        e = end_e - (t - end_t0) * <double>nl / mean
                        end_e = e if e >= 0.0 else 0.0
                        end_t0 = t
                        synced = True
                    nl += 1
                else:                                             # heap_push
                    cal_insert(&cal, c, t + life)
                break
            if Ends is end_clock and synced:
                clock = end_t0 + end_e * mean / <double>nl if nl > 0 else INFINITY
            t_next = self.next_arrival_after(t, rng_exponential(&g, bg))
        self.pcg = g
        if Ends is end_calendar:
            self.cal = cal
            heap_n = cal.n
        si[S_LIVE_N] = nl
        si[S_HEAP_N] = heap_n
        si[S_FREE_TOP] = free_top
        si[S_SERIAL] = serial
        si[S_CONN] = conn
        si[S_EST] = est
        si[S_AFAIL] = afail
        si[S_FAILED] = failed
        si[S_COLL] = coll
        si[S_RESETS] = resets
        si[S_PAIRS] = pairs
        si[S_PEAK] = peak
        sf[F_END_E] = end_e
        sf[F_END_T0] = end_t0
        sf[F_CLOCK] = clock
        sf[F_FIRST] = first
        sf[F_NEXT_ARR] = t_next
        if code != 0:               # the state must grow: Python's `grow` copies the records
            self.give_back_rows()
        return code
