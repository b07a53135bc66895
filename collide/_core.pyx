"""The compiled core: the reference algorithm (`_core_python.py`) on flat arrays, without the GIL.

Raw words come from NumPy's PCG64 through its `bitgen_t` capsule (DESIGN §2.4); the kernels are
`cdef ... noexcept nogil` methods and the `def` methods only hand over typed memoryviews.
Directives are set once in setup.py (COLLIDE_DEBUG=1 turns bounds checks on).
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport log, exp, sqrt, cos, floor, INFINITY, M_PI
from libc.stdint cimport int32_t, int64_t, uint64_t
from numpy.random cimport bitgen_t

import numpy as np

from . import _params as C
from . import _state as T

cdef double TWO53 = 1.0 / 9007199254740992.0

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
DEF F_NEXT_ARR = 0
DEF F_FIRST = 1
DEF LINUX_EPOCH_S = 10.0

assert (C.NEED_CLIENT, C.T_END, T.SKIPPED, T.FIRST) == (NEED_CLIENT, T_END, S_SKIPPED, F_FIRST)
assert (C.EMP_N, C.SCHED_N) == (EMP_N, SCHED_N)
assert (C.SYN_N, C.CA_LIMIT, T.DELAYED, T.PENDING, T.CA_SEC, T.CA_USED) == \
    (SYN_N, CA_LIMIT, S_DELAYED, S_PENDING, S_CA_SEC, S_CA_USED)


cdef class Engine:
    """One run's state and kernels. Built by `collide.engine` from `_state.new_state` arrays."""
    cdef bitgen_t *rng
    cdef object bit_generator
    cdef int64_t[::1] pi, zs, zc
    cdef double[::1] pf, wcum, xa
    cdef int64_t emp_n, sched_n
    cdef int64_t[::1] si, live, cursor, lin_epoch, lin_off, lin_pert, est_sum, free_n
    cdef double[::1] sf
    cdef int32_t[::1] slot, free, fpos
    cdef int32_t[::1] c_dest, c_port, c_tgt, c_close, ids, heap, ntl
    cdef double[::1] c_end, cl_exp, tw_exp, twq_exp, cq_at, batches
    cdef int64_t[::1] c_serial, c_hpos, cl_node, tw_key, twq_key, cq_dp
    cdef int32_t[::1] stgt
    cdef double[::1] hkey
    cdef double[::1] c_t0, c_life
    cdef int32_t[::1] c_retry, c_meas
    cdef int64_t[::1] dhist
    cdef int64_t syn_n, syn_off, ca_limit
    # parameters cached in C fields at init (no memoryview indexing in the hot loop)
    cdef int64_t n, Pn, k, nb_targets, alloc, dist, limit, clients, nbatch, node_limit
    cdef bint need_client, ip_per_client, sticky, cross, cip, weighted, estimate, tw_on, cool_on
    cdef bint track
    cdef double rate, mean, mu, sigma, xm, alpha, dns_ttl, tw, scf, reuse, t_measure, t_end
    cdef int tw_shift

    def __init__(self, pi, pf, zs, zc, wcum, xa, bit_generator, state):
        self.bit_generator = bit_generator
        capsule = bit_generator.capsule
        self.rng = <bitgen_t *> PyCapsule_GetPointer(capsule, "BitGenerator")
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
        self.rate, self.mean, self.mu, self.sigma = pf[RATE], pf[MEAN], pf[MU], pf[SIGMA]
        self.xm, self.alpha, self.dns_ttl, self.tw = pf[XM], pf[ALPHA], pf[DNS_TTL], pf[TW]
        self.scf, self.reuse, self.t_measure, self.t_end = pf[SCF], pf[REUSE], pf[T_MEASURE], \
            pf[T_END]
        self.bind(state)

    def bind(self, s):
        """(Re)attach the state arrays, e.g. after `_state.grow` replaced some."""
        self.si, self.sf, self.live, self.cursor = s["si"], s["sf"], s["live"], s["cursor"]
        self.lin_epoch, self.lin_off, self.lin_pert = s["lin_epoch"], s["lin_off"], s["lin_pert"]
        self.est_sum, self.free_n, self.slot = s["est_sum"], s["free_n"], s["slot"]
        self.free, self.fpos = s["free"], s["fpos"]
        self.c_dest, self.c_port, self.c_tgt, self.c_close = s["c_dest"], s["c_port"], \
            s["c_tgt"], s["c_close"]
        self.c_end, self.c_serial, self.c_hpos = s["c_end"], s["c_serial"], s["c_hpos"]
        self.ids, self.heap, self.cl_node, self.cl_exp = s["ids"], s["heap"], s["cl_node"], \
            s["cl_exp"]
        self.ntl, self.tw_key, self.tw_exp = s["ntl"], s["tw_key"], s["tw_exp"]
        self.twq_key, self.twq_exp, self.cq_at, self.cq_dp = s["twq_key"], s["twq_exp"], \
            s["cq_at"], s["cq_dp"]
        self.batches = s["batches"]
        self.stgt, self.hkey = s["stgt"], s["hkey"]
        self.c_t0, self.c_life, self.c_retry, self.c_meas = s["c_t0"], s["c_life"], \
            s["c_retry"], s["c_meas"]
        self.dhist = s["dhist"]
        self.tw_shift = T.tw_shift(s["tw_key"].size)

    # -- public entry points (thin: hand over to nogil kernels) ------------------------------------
    def draw_stationary(self):
        cdef int64_t n = 0, i
        cdef double s, mean_live = self.pf[RATE] * self.pf[MEAN], big, u
        with self.bit_generator.lock, nogil:
            s = self.exponential()
            while s < mean_live:
                n += 1
                s += self.exponential()
        residual = np.empty(n, np.float64)
        age = np.empty(n, np.float64)
        cdef double[::1] r = residual, a = age
        with self.bit_generator.lock, nogil:
            for i in range(n):
                big = self.biased_lifetime()
                u = self.uniform()
                r[i] = u * big
                a[i] = big - u * big
        return residual, age

    def place_stationary(self, double[::1] residuals, int64_t[::1] order):
        cdef Py_ssize_t i
        with self.bit_generator.lock, nogil:
            for i in range(order.shape[0]):
                self.arrival(0.0, residuals[order[i]], False, self.pi[OUTCOME])

    def schedule_first_arrival(self):
        with self.bit_generator.lock, nogil:
            self.sf[F_NEXT_ARR] = self.next_arrival_after(0.0, self.exponential())

    def advance(self, double t_stop):
        cdef int code
        with self.bit_generator.lock, nogil:
            code = self._advance(t_stop)
        return code

    # -- random words --------------------------------------------------------------------------
    cdef inline uint64_t next_u64(self) noexcept nogil:
        return self.rng.next_uint64(self.rng.state)

    cdef inline double uniform(self) noexcept nogil:
        return <double>(self.next_u64() >> 11) * TWO53

    cdef inline int64_t randint(self, int64_t n) noexcept nogil:
        cdef uint64_t nn, m, low, threshold
        if n <= 1:
            return 0
        nn = <uint64_t>n
        m = (self.next_u64() >> 32) * nn
        low = m & 0xFFFFFFFFULL
        if low < nn:
            threshold = (0x100000000ULL - nn) % nn
            while low < threshold:
                m = (self.next_u64() >> 32) * nn
                low = m & 0xFFFFFFFFULL
        return <int64_t>(m >> 32)

    cdef inline double exponential(self) noexcept nogil:
        return -log(<double>((self.next_u64() >> 11) + 1) * TWO53)

    cdef inline double normal(self) noexcept nogil:
        cdef double e = self.exponential()
        cdef double u = self.uniform()
        return sqrt(2.0 * e) * cos(2.0 * M_PI * u)

    cdef inline double lifetime(self) noexcept nogil:
        cdef int64_t dist = self.dist
        if dist == 0:
            return self.mean * self.exponential()
        if dist == 1:
            return self.mean
        if dist == 2:
            return exp(self.mu + self.sigma * self.normal())
        if dist == 4:
            return self.xa[self.randint(self.emp_n)]
        return self.xm * exp(self.exponential() / self.alpha)

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

    # -- end-time queue: a 4-ary heap keyed by (end, serial), the end stored inline ------------------
    # Any exact priority queue pops in the same (end, serial) order as the reference's heapq; the
    # 4-ary layout with keys beside the ids halves the depth and keeps siblings in one cache line.
    cdef inline bint before(self, double ka, int32_t a, double kb, int32_t b) noexcept nogil:
        return ka < kb or (ka == kb and self.c_serial[a] < self.c_serial[b])

    cdef void sift_up(self, int64_t i, int32_t c, double kc) noexcept nogil:
        cdef int64_t parent
        cdef int32_t q
        while i > 0:
            parent = (i - 1) >> 2
            q = self.heap[parent]
            if not self.before(kc, c, self.hkey[parent], q):
                break
            self.heap[i] = q
            self.hkey[i] = self.hkey[parent]
            self.c_hpos[q] = i
            i = parent
        self.heap[i] = c
        self.hkey[i] = kc
        self.c_hpos[c] = i

    cdef void sift_down(self, int64_t i, int32_t c, double kc) noexcept nogil:
        cdef int64_t n = self.si[S_HEAP_N], first, last, best, ch
        cdef double kb
        while True:
            first = 4 * i + 1
            if first >= n:
                break
            last = first + 4 if first + 4 <= n else n
            best = first
            kb = self.hkey[first]
            for ch in range(first + 1, last):
                if self.before(self.hkey[ch], self.heap[ch], kb, self.heap[best]):
                    best = ch
                    kb = self.hkey[ch]
            if not self.before(kb, self.heap[best], kc, c):
                break
            self.heap[i] = self.heap[best]
            self.hkey[i] = kb
            self.c_hpos[self.heap[i]] = i
            i = best
        self.heap[i] = c
        self.hkey[i] = kc
        self.c_hpos[c] = i

    cdef inline void heap_push(self, int32_t c) noexcept nogil:
        cdef int64_t i = self.si[S_HEAP_N]
        self.si[S_HEAP_N] = i + 1
        self.sift_up(i, c, self.c_end[c])

    cdef void heap_remove(self, int32_t c) noexcept nogil:
        cdef int64_t i = self.c_hpos[c]
        cdef int64_t n = self.si[S_HEAP_N] - 1
        cdef int32_t last
        cdef double kl
        self.si[S_HEAP_N] = n
        self.c_hpos[c] = -1
        if i == n:
            return
        last = self.heap[n]
        kl = self.hkey[n]
        if i > 0 and self.before(kl, last, self.hkey[(i - 1) >> 2], self.heap[(i - 1) >> 2]):
            self.sift_up(i, last, kl)
        else:
            self.sift_down(i, last, kl)

    # -- TIME_WAIT table -------------------------------------------------------------------------
    cdef inline int64_t tw_home(self, int64_t key) noexcept nogil:
        cdef uint64_t h = (<uint64_t>key) * 0x9E3779B97F4A7C15ULL
        return (<int64_t>(h >> self.tw_shift)) & (self.tw_key.shape[0] - 1)

    cdef int64_t tw_find(self, int64_t key) noexcept nogil:
        cdef int64_t cap = self.tw_key.shape[0]
        cdef int64_t i = self.tw_home(key)
        while self.tw_key[i] != -1:
            if self.tw_key[i] == key:
                return i
            i = (i + 1) & (cap - 1)
        return -1

    cdef void tw_set(self, int64_t key, double expiry) noexcept nogil:
        cdef int64_t cap = self.tw_key.shape[0]
        cdef int64_t i = self.tw_home(key)
        while self.tw_key[i] != -1:
            if self.tw_key[i] == key:
                self.tw_exp[i] = expiry
                return
            i = (i + 1) & (cap - 1)
        self.tw_key[i] = key
        self.tw_exp[i] = expiry
        self.si[S_TW_N] += 1

    cdef void tw_delete(self, int64_t i) noexcept nogil:
        cdef int64_t cap = self.tw_key.shape[0]
        cdef int64_t mask = cap - 1, j = i, h
        cdef bint keep
        while True:
            j = (j + 1) & mask
            if self.tw_key[j] == -1:
                break
            h = self.tw_home(self.tw_key[j])
            if i <= j:
                keep = i < h and h <= j
            else:
                keep = h > i or h <= j
            if not keep:
                self.tw_key[i] = self.tw_key[j]
                self.tw_exp[i] = self.tw_exp[j]
                i = j
        self.tw_key[i] = -1
        self.si[S_TW_N] -= 1

    # -- free ports and the estimate's sums ------------------------------------------------------
    # The slot tables are port-major: entry (ip, p, j) at (ip * P + p) * n + j, so the N holders of
    # one port from one IP share a cache line; `stgt` holds the holder's target (-1: none), `slot`
    # its connection id.
    cdef inline int64_t pool_of(self, int64_t d) noexcept nogil:
        return d // self.n if self.alloc == 3 else d

    cdef inline bint is_free(self, int64_t pool, int64_t p) noexcept nogil:
        return self.fpos[pool * self.Pn + p] >= 0

    cdef inline void take_free(self, int64_t pool, int64_t p) noexcept nogil:
        cdef int64_t Pn = self.Pn
        cdef int64_t i = self.fpos[pool * Pn + p]
        cdef int64_t n = self.free_n[pool] - 1
        cdef int32_t last = self.free[pool * Pn + n]
        self.free[pool * Pn + i] = last
        self.fpos[pool * Pn + last] = <int32_t>i
        self.free_n[pool] = n
        self.fpos[pool * Pn + p] = -1

    cdef inline void put_free(self, int64_t pool, int64_t p) noexcept nogil:
        cdef int64_t Pn = self.Pn
        cdef int64_t n = self.free_n[pool]
        self.free[pool * Pn + n] = <int32_t>p
        self.fpos[pool * Pn + p] = <int32_t>n
        self.free_n[pool] = n + 1

    cdef int64_t distinct_targets(self, int64_t ip, int64_t p, int64_t skip1,
                                  int64_t skip2) noexcept nogil:
        cdef int64_t n = self.n, base = (ip * self.Pn + p) * n, j, jj, count = 0
        cdef int32_t t
        cdef bint dup
        for j in range(n):
            if j == skip1 or j == skip2:
                continue
            t = self.stgt[base + j]
            if t < 0:
                continue
            dup = False
            for jj in range(j):
                if jj == skip1 or jj == skip2:
                    continue
                if self.stgt[base + jj] == t:
                    dup = True
                    break
            if not dup:
                count += 1
        return count

    cdef void holder_changed(self, int64_t d0, int64_t p, int64_t target,
                             int64_t delta) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t ip = d0 // n
        cdef int64_t j0 = d0 - ip * n, j, jj, d, base = (ip * self.Pn + p) * n
        cdef bint found
        for j in range(n):
            if j == j0:
                continue
            d = ip * n + j
            if not self.is_free(d, p):
                continue
            found = False
            for jj in range(n):
                if jj == j or jj == j0:
                    continue
                if self.stgt[base + jj] == target:
                    found = True
                    break
            if not found:
                self.est_sum[d] += delta

    cdef inline void port_freed(self, int64_t d, int64_t p) noexcept nogil:
        self.put_free(self.pool_of(d), p)
        if self.track:
            self.est_sum[d] += self.distinct_targets(d // self.n, p, d % self.n, -1)

    cdef inline void port_taken(self, int64_t d, int64_t p) noexcept nogil:
        self.take_free(self.pool_of(d), p)
        if self.track:
            self.est_sum[d] -= self.distinct_targets(d // self.n, p, d % self.n, -1)

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

    cdef void end_connection(self, int32_t h, double t, bint by_reset) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t d = self.c_dest[h], p = self.c_port[h], target = self.c_tgt[h]
        cdef int64_t ip = d // n
        cdef int64_t s = (ip * self.Pn + p) * n + (d - ip * n)
        cdef int64_t key, cap, i
        cdef double expiry
        self.slot[s] = -1
        self.stgt[s] = -1
        self.live[d] -= 1
        if self.track:
            self.holder_changed(d, p, target, -1)
        if not self.cip:
            self.ntl[(d - ip * n) * self.nb_targets + target] -= 1
        if self.c_close[h] != 0 and not by_reset and self.tw_on:
            key = (ip * 65536 + p) * self.nb_targets + target
            expiry = t + self.tw
            self.tw_set(key, expiry)
            cap = self.twq_key.shape[0]
            i = (self.si[S_TWQ_HEAD] + self.si[S_TWQ_N]) % cap
            self.twq_key[i] = key
            self.twq_exp[i] = expiry
            self.si[S_TWQ_N] += 1
        self.heap_remove(h)
        self.ids[self.si[S_FREE_TOP]] = h
        self.si[S_FREE_TOP] += 1
        self.release_port(d, p, t)

    # -- allocators --------------------------------------------------------------------------------
    cdef int64_t linux_scan(self, int64_t pool, int64_t offset) noexcept nogil:
        cdef int64_t Pn = self.Pn, p, i
        offset &= ~(<int64_t>1)
        while True:
            p = offset
            i = 0
            while i < Pn:
                if p >= Pn:
                    p -= Pn
                if self.is_free(pool, p):
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
        if alloc == 0 or alloc == 3:
            p = self.free[pool * Pn + self.randint(nfree)]
        elif alloc == 1:
            if self.cursor[d] < 0:
                self.cursor[d] = self.randint(Pn)
            p = self.cursor[d]
            while not self.is_free(pool, p):
                p = p + 1 if p + 1 < Pn else 0
            self.cursor[d] = p + 1 if p + 1 < Pn else 0
        else:
            epoch = <int64_t>floor(t / LINUX_EPOCH_S)
            if epoch != self.lin_epoch[d]:
                self.lin_epoch[d] = epoch
                self.lin_off[d] = self.randint(Pn)
            p = self.linux_scan(pool, (self.lin_pert[d] + self.lin_off[d]) % Pn)
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
        cdef int64_t n = self.n, Pn = self.Pn, pool, nfree, size_t, p, i, total, b, nb
        cdef double e = 0.0
        if self.cross and self.cip and n > 1 and self.live[d] < self.limit:
            pool = self.pool_of(d)
            nfree = self.free_n[pool]
            size_t = self.nb_targets
            if self.alloc == 0 and nfree > 0:
                e = <double>self.est_sum[d] / <double>(nfree * size_t)
            elif self.alloc == 1 and nfree > 0 and self.cursor[d] >= 0:
                p = self.cursor[d]
                while not self.is_free(pool, p):
                    p = p + 1 if p + 1 < Pn else 0
                e = <double>self.distinct_targets(ip, p, j, -1) / <double>size_t
            elif self.alloc == 1 and nfree > 0:
                total = 0
                for i in range(nfree):
                    total += self.distinct_targets(ip, self.free[pool * Pn + i], j, -1)
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
        base = (ip * Pn + p) * n
        if self.cip:
            for jj in range(n):
                if jj != j and self.stgt[base + jj] == target:
                    nholders += 1
        elif self.ntl[j * self.nb_targets + target] >= self.node_limit:
            self.port_freed(d, p)
            if measure:
                self.si[S_AFAIL] += 1
            return
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
                    if jj != j and self.stgt[base + jj] == target:
                        self.end_connection(self.slot[base + jj], t, True)
                        if measure:
                            self.si[S_RESETS] += 1
            if outcome >= 3:
                self.start_pending(d, p, target, close, t, life, measure)
                return
        elif self.tw_on:
            i = self.tw_find((ip * 65536 + p) * self.nb_targets + target)
            if i >= 0:
                self.tw_delete(i)
                if measure:
                    self.si[S_TWHITS] += 1
        if measure:
            self.si[S_EST] += 1
        c = self.new_record(d, p, target, close, t + life)
        if self.track:
            self.holder_changed(d, p, target, 1)
        self.slot[base + j] = c
        self.stgt[base + j] = <int32_t>target
        self.live[d] += 1
        if not self.cip:
            self.ntl[j * self.nb_targets + target] += 1
        if measure and self.live[d] > self.si[S_PEAK]:
            self.si[S_PEAK] = self.live[d]
        self.heap_push(c)

    # -- delayed connects -------------------------------------------------------------------------
    cdef inline int32_t new_record(self, int64_t d, int64_t p, int64_t target, bint close,
                                   double end) noexcept nogil:
        """A connection record from the free-id stack, with the next serial (heap tie-break)."""
        cdef int32_t c
        self.si[S_SERIAL] += 1
        self.si[S_FREE_TOP] -= 1
        c = self.ids[self.si[S_FREE_TOP]]
        self.c_dest[c] = <int32_t>d
        self.c_port[c] = <int32_t>p
        self.c_tgt[c] = <int32_t>target
        self.c_close[c] = 1 if close else 0
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
        c = self.new_record(d, p, target, close, t + self.xa[self.syn_off])
        self.c_t0[c] = t
        self.c_life[c] = life
        self.c_retry[c] = 0
        self.c_meas[c] = 1 if measure else 0
        self.live[d] += 1
        if measure and self.live[d] > self.si[S_PEAK]:
            self.si[S_PEAK] = self.live[d]
        self.heap_push(c)

    cdef void retry(self, int32_t h, double t) noexcept nogil:
        cdef int64_t n = self.n
        cdef int64_t d = self.c_dest[h], p = self.c_port[h], target = self.c_tgt[h]
        cdef int64_t ip = d // n
        cdef int64_t j = d - ip * n, jj, i, r
        cdef int64_t base = (ip * self.Pn + p) * n
        cdef bint meas = self.c_meas[h] != 0, busy = False
        self.heap_remove(h)
        for jj in range(n):
            if jj != j and self.stgt[base + jj] == target:
                busy = True
        if not busy:
            if self.tw_on:
                i = self.tw_find((ip * 65536 + p) * self.nb_targets + target)
                if i >= 0:
                    self.tw_delete(i)
                    if meas:
                        self.si[S_TWHITS] += 1
            r = self.c_retry[h]
            self.c_retry[h] = -1
            self.c_end[h] = t + self.c_life[h]
            if self.track:
                self.holder_changed(d, p, target, 1)
            self.slot[base + j] = h
            self.stgt[base + j] = <int32_t>target
            if meas:
                self.si[S_EST] += 1
                self.si[S_DELAYED] += 1
                self.si[S_PENDING] -= 1
                self.dhist[r] += 1
            self.heap_push(h)
            return
        r = self.c_retry[h] + 1
        self.c_retry[h] = <int32_t>r
        if r < self.syn_n:
            self.c_end[h] = self.c_t0[h] + self.xa[self.syn_off + r]
            self.heap_push(h)
            return
        self.c_retry[h] = -1
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
        cdef double t_end, t_cool, t_tw, t_ev, t, expiry, t_next
        cdef int64_t cap, dp, d, key, i, outcome = self.pi[OUTCOME]
        t_next = self.sf[F_NEXT_ARR]
        while True:
            if self.si[S_FREE_TOP] == 0:
                self.sf[F_NEXT_ARR] = t_next
                return 1
            if tw_on:
                if 10 * (self.si[S_TW_N] + 1) > 7 * self.tw_key.shape[0]:
                    self.sf[F_NEXT_ARR] = t_next
                    return 2
                if self.si[S_TWQ_N] == self.twq_key.shape[0]:
                    self.sf[F_NEXT_ARR] = t_next
                    return 3
            t_end = self.hkey[0] if self.si[S_HEAP_N] > 0 else INFINITY
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
                if t_end == t_ev:
                    if self.c_retry[self.heap[0]] >= 0:
                        self.retry(self.heap[0], t_end)
                    else:
                        self.end_connection(self.heap[0], t_end, False)
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
                    if i >= 0 and self.tw_exp[i] == expiry:
                        self.tw_delete(i)
            else:
                t = t_next
                if t >= t_stop:
                    self.sf[F_NEXT_ARR] = t_next
                    return 0
                measure = self.t_measure <= t and t < self.t_end
                self.arrival(t, -1.0, measure, outcome)
                t_next = self.next_arrival_after(t, self.exponential())
