"""The Cython core: the reference kernels of `_core_python.py`, step for step, without the GIL.

Raw words come from NumPy's PCG64 (an inlined copy of its step on the bit generator's state, or
its `bitgen_t` pointer where the compiler has no 128-bit integers), drawn exactly as the reference
draws them, so every backend gives the same counts. `Engine` keeps raw pointers to the state arrays
(`bind`) and its `def` methods only hand over; the kernels are `noexcept nogil`. One kernel,
specialised at compile time by fused types (the scenario's mode and the estimate kept): the
common case carries no code for what it does not use. Directives are set once in setup.py
(COLLIDE_DEBUG=1 turns the checks back on).
"""
cimport cython
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport log, exp, sqrt, cos, floor, sqrt, INFINITY, M_PI
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t
from numpy.random cimport bitgen_t

import numpy as np

from . import params as C
from . import state as T

# PCG64 inlined: the same 128-bit LCG step and XSL-RR output as NumPy's PCG64. The state is read
# from the public `bit_generator.state` when a kernel starts and written back when it returns.
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
    #if defined(__GNUC__)
    #define COLLIDE_HOT static inline __attribute__((always_inline))
    #define COLLIDE_UNLIKELY(x) __builtin_expect(!!(x), 0)
    #else
    #define COLLIDE_HOT static inline
    #define COLLIDE_UNLIKELY(x) (x)
    #endif
    /* The most live ports one node holds in an ip's rows (P rows of n slots). Only a count of
       compares, so doing two at a time (SSE2, x86-64's baseline) cannot change a result. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static int64_t collide_peak_rows(const double *rows, int64_t P, int64_t n, double t) {
        int64_t best = 0, p = 0, m, c[3] = {0, 0, 0};
        if (n == 3) {
    #if defined(__SSE2__)
            /* two rows = six slots = three pairs: (m0, m1), (m2, m0), (m1, m2) */
            __m128d tv = _mm_set1_pd(t);
            __m128i x = _mm_setzero_si128(), y = _mm_setzero_si128(), z = _mm_setzero_si128();
            int64_t lx[2], ly[2], lz[2];
            for (; p + 2 <= P; p += 2) {
                const double *r = rows + 3 * p;
                x = _mm_sub_epi64(x, _mm_castpd_si128(_mm_cmpgt_pd(_mm_loadu_pd(r), tv)));
                y = _mm_sub_epi64(y, _mm_castpd_si128(_mm_cmpgt_pd(_mm_loadu_pd(r + 2), tv)));
                z = _mm_sub_epi64(z, _mm_castpd_si128(_mm_cmpgt_pd(_mm_loadu_pd(r + 4), tv)));
            }
            _mm_storeu_si128((__m128i *)lx, x);
            _mm_storeu_si128((__m128i *)ly, y);
            _mm_storeu_si128((__m128i *)lz, z);
            c[0] = lx[0] + ly[1]; c[1] = lx[1] + lz[0]; c[2] = ly[0] + lz[1];
    #endif
            for (; p < P; p++)
                for (m = 0; m < 3; m++) c[m] += rows[3 * p + m] > t;
            best = c[0] > c[1] ? c[0] : c[1];
            return best > c[2] ? best : c[2];
        }
        for (m = 0; m < n; m++) {
            int64_t a = 0;
            for (p = 0; p < P; p++) a += rows[p * n + m] > t;
            if (a > best) best = a;
        }
        return best;
    }
    /* A node's column of one ip's rows (stride n): how many ports are free by t (end + reuse
       <= t), and the horizon list of those free by th. Compares and IEEE adds only, two at a
       time where the column is contiguous, so the result is the scalar loop's exactly. */
    static int64_t collide_count_free(const double *col, int64_t P, int64_t stride,
                                      double reuse, double t) {
        int64_t c = 0, p = 0;
    #if defined(__SSE2__)
        if (stride == 1) {
            __m128d tv = _mm_set1_pd(t), rv = _mm_set1_pd(reuse);
            __m128i acc = _mm_setzero_si128();
            int64_t l[2];
            for (; p + 2 <= P; p += 2)
                acc = _mm_sub_epi64(acc, _mm_castpd_si128(
                    _mm_cmple_pd(_mm_add_pd(_mm_loadu_pd(col + p), rv), tv)));
            _mm_storeu_si128((__m128i *)l, acc);
            c = l[0] + l[1];
        }
    #endif
        for (; p < P; p++) c += col[p * stride] + reuse <= t;
        return c;
    }
    static int64_t collide_list_free(const double *col, int64_t P, int64_t stride, double reuse,
                                     double th, int32_t *lst, int32_t *pos) {
        int64_t n = 0, p;
        for (p = 0; p < P; p++, col += stride) {
            int64_t in = *col + reuse <= th;
            lst[n] = (int32_t)p;
            pos[p] = in ? (int32_t)n : -1;
            n += in;
        }
        return n;
    }
    /* The `full` estimate's log of changes now and segments of changes later (the reference's
       ev_log and ev_push), in C so that they are inlined into the kernel. The log's length and
       the segments' "full" flag live in the state's `si` (COLLIDE_EV_* below). */
    enum { COLLIDE_EV_LOG = 19, COLLIDE_EV_FULL = 20, COLLIDE_EV_CUR = 21, COLLIDE_EV_NC = 64 };
    typedef struct {
        double *q; int64_t *n; int64_t cap, lim;          /* segments: cap pairs each */
        double *log; int64_t *si; double cinv;
    } collide_evq;
    COLLIDE_HOT int64_t evq_log(collide_evq *e, double t, int64_t code) {
        int64_t n = e->si[COLLIDE_EV_LOG];
        e->log[2 * n] = t;
        e->log[2 * n + 1] = (double)code;
        e->si[COLLIDE_EV_LOG] = n + 1;
        return n;
    }
    COLLIDE_HOT void evq_push(collide_evq *e, double t, double x, int64_t code) {
        double f;
        int64_t k, n, i;
        if (x <= t) { evq_log(e, t, code); return; }
        f = x * e->cinv;
        k = (int64_t)(f < 4e18 ? f : 4e18) & (COLLIDE_EV_NC - 1);
        n = e->n[k];
        i = 2 * (k * e->cap + n);
        e->q[i] = x;
        e->q[i + 1] = (double)code;
        e->n[k] = n + 1;
        if (n + 1 > e->lim) e->si[COLLIDE_EV_FULL] = 1;
    }
    /* The reference's row_contrib, row_schedule, row_list and row_changed: a row's taken slots
       (occupant i < cnt: end ef[o+i], target ei[o+i], node ei[2n+o+i]) and what they add to T
       (per occupant) and DUP (per zone, at its first occupant) as time passes. */
    static void collide_row_contrib(const double *ef, const int64_t *ei, int64_t o, int64_t cnt,
                                    int64_t n, int64_t Z, double reuse, double tau, int64_t *c) {
        int64_t i, k, x;
        const double *e = ef + o;
        const int64_t *g = ei + o, *node = ei + 2 * n + o;
        if (Z == 1 && cnt == 2) {                /* the common case: two slots taken, one zone */
            int64_t la = e[0] > tau && g[0] >= 0, lb = e[1] > tau && g[1] >= 0;
            int64_t same = la && lb && g[0] == g[1], distinct = la + lb - same;
            c[0] = e[0] + reuse > tau ? distinct - la : 0;
            c[1] = e[1] + reuse > tau ? distinct - lb : 0;
            c[n] = same;
            c[n + 1] = 0;
            return;
        }
        if (Z == 1) {                            /* cross-zone on: one zone */
            int64_t live = 0, distinct = 0;
            for (i = 0; i < cnt; i++) {
                if (e[i] > tau && g[i] >= 0) {
                    int64_t first = 1;
                    live++;
                    for (x = 0; x < i; x++)
                        if (e[x] > tau && g[x] == g[i]) { first = 0; break; }
                    distinct += first;
                }
            }
            for (i = 0; i < cnt; i++) {
                c[i] = e[i] + reuse > tau ? distinct - (e[i] > tau && g[i] >= 0) : 0;
                c[n + i] = 0;
            }
            c[n] = live - distinct;
            return;
        }
        for (i = 0; i < cnt; i++) {
            int64_t zi = node[i] % Z, live = 0, distinct = 0, rep = 1;
            for (k = 0; k < cnt; k++) {
                if (node[k] % Z != zi) continue;
                if (k < i) rep = 0;
                if (e[k] > tau && g[k] >= 0) {
                    int64_t first = 1;
                    live++;
                    for (x = 0; x < k; x++)
                        if (e[x] > tau && g[x] == g[k]) { first = 0; break; }
                    distinct += first;
                }
            }
            c[i] = e[i] + reuse > tau ? distinct - (e[i] > tau && g[i] >= 0) : 0;
            c[n + i] = rep ? live - distinct : 0;
        }
    }
    static void collide_row_schedule(collide_evq *q, double *ef, const int64_t *ei, int64_t o,
                                     int64_t cnt, int64_t n, int64_t Z, double reuse, double t,
                                     int64_t sign, int64_t ip, int64_t sbase, int64_t *c,
                                     int64_t *w) {
        double *bp = ef + 2 * n, x, last = t;
        int64_t nb = 0, i, k, b, m, d;
        for (i = 0; i < cnt; i++) {
            x = ef[o + i];
            if (ei[o + i] >= 0 && t < x && x < INFINITY) bp[nb++] = x;
            x = ef[o + i] + reuse;
            if (reuse > 0.0 && t < x && x < INFINITY) bp[nb++] = x;
        }
        for (i = 1; i < nb; i++) {               /* insertion sort: a handful */
            x = bp[i];
            for (k = i; k > 0 && bp[k - 1] > x; k--) bp[k] = bp[k - 1];
            bp[k] = x;
        }
        for (b = 0; b < nb; b++) {
            x = bp[b];
            if (x == last) continue;
            last = x;
            collide_row_contrib(ef, ei, o, cnt, n, Z, reuse, x, w);
            for (i = 0; i < cnt; i++) {
                m = ei[2 * n + o + i];
                d = w[i] - c[i];
                if (d) {
                    evq_push(q, t, x, ((3 * (ip * n + m) + 2) << 26) | ((sign * d + 512) << 3) | 4);
                    c[i] = w[i];
                }
                d = w[n + i] - c[n + i];
                if (d) {
                    evq_push(q, t, x, ((sbase + 2 * (ip * Z + m % Z) + 1) << 26)
                                      | ((sign * d + 512) << 3) | 5);
                    c[n + i] = w[n + i];
                }
            }
        }
    }
    COLLIDE_HOT int64_t collide_row_list(const double *slot_end, const int32_t *slot_tgt,
                                         int64_t row, int64_t n, double reuse, double t,
                                         double *ef, int64_t *ei, int64_t o) {
        int64_t m, cnt = 0;
        for (m = 0; m < n; m++) {
            if (slot_end[row + m] + reuse > t) {
                ef[o + cnt] = slot_end[row + m];
                ei[o + cnt] = slot_tgt[row + m];
                ei[2 * n + o + cnt] = m;
                cnt++;
            }
        }
        return cnt;
    }
    static void collide_row_changed(collide_evq *q, const double *slot_end,
                                    const int32_t *slot_tgt, int64_t row, double *ef, int64_t *ei,
                                    int64_t n, int64_t Z, double reuse, double t, int64_t ip,
                                    int64_t before, int64_t sbase) {
        int64_t after = collide_row_list(slot_end, slot_tgt, row, n, reuse, t, ef, ei, n);
        int64_t *c = ei + 4 * n, *w = ei + 6 * n, side, cnt, o, sign, i, m;
        for (side = 0; side < 2; side++) {
            cnt = side ? after : before;
            if (cnt < 2) continue;               /* one slot taken: nothing */
            o = side * n;
            sign = side ? 1 : -1;
            collide_row_contrib(ef, ei, o, cnt, n, Z, reuse, t, c);
            for (i = 0; i < cnt; i++) {          /* the difference now, logged */
                m = ei[2 * n + o + i];
                if (c[i])
                    evq_log(q, t, ((3 * (ip * n + m) + 2) << 26) | ((sign * c[i] + 512) << 3) | 4);
                if (c[n + i])
                    evq_log(q, t, ((sbase + 2 * (ip * Z + m % Z) + 1) << 26)
                                  | ((sign * c[n + i] + 512) << 3) | 5);
            }
            collide_row_schedule(q, ef, ei, o, cnt, n, Z, reuse, t, sign, ip, sbase, c, w);
        }
    }
    static const double collide_two53 = 1.0 / 9007199254740992.0;
    /* [0, n) by Lemire's multiply-shift on the high 32 bits of a word, with exact rejection */
    COLLIDE_HOT int64_t rng_randint(collide_pcg64 *g, bitgen_t *b, int64_t n) {
        uint64_t nn, m, threshold;
        if (n <= 1) return 0;
        nn = (uint64_t)n;
        m = (collide_next(g, b) >> 32) * nn;
        if (COLLIDE_UNLIKELY((m & 0xFFFFFFFFULL) < nn)) {
            threshold = (0x100000000ULL - nn) % nn;
            while ((m & 0xFFFFFFFFULL) < threshold)
                m = (collide_next(g, b) >> 32) * nn;
        }
        return (int64_t)(m >> 32);
    }
    COLLIDE_HOT double rng_uniform(collide_pcg64 *g, bitgen_t *b) {
        return (double)(collide_next(g, b) >> 11) * collide_two53;
    }
    COLLIDE_HOT double rng_exponential(collide_pcg64 *g, bitgen_t *b) {
        return -log((double)((collide_next(g, b) >> 11) + 1) * collide_two53);
    }
    COLLIDE_HOT double rng_normal(collide_pcg64 *g, bitgen_t *b) {
        double e = rng_exponential(g, b);
        double u = rng_uniform(g, b);
        return sqrt(2.0 * e) * cos(2.0 * M_PI * u);
    }
    /* one lifetime (the reference's draw_lifetime): 0 exponential, 1 fixed, 2 lognormal,
       3 Pareto, 4 empirical; in C so that it is inlined and the generator stays in registers */
    COLLIDE_HOT double rng_lifetime(collide_pcg64 *g, bitgen_t *b, int64_t dist, double mean,
                                    double mu, double sigma, double xm, double alpha,
                                    const double *xa, int64_t emp_n) {
        if (dist == 0) return mean * rng_exponential(g, b);
        if (dist == 1) return mean;
        if (dist == 2) return exp(mu + sigma * rng_normal(g, b));
        if (dist == 4) return xa[rng_randint(g, b, emp_n)];
        return xm * exp(rng_exponential(g, b) / alpha);
    }
    """
    int COLLIDE_PCG_INLINE
    ctypedef struct collide_pcg64:
        pass
    void collide_pcg64_set(collide_pcg64 *r, uint64_t shi, uint64_t slo, uint64_t ihi,
                           uint64_t ilo) nogil
    uint64_t collide_pcg64_word(collide_pcg64 *r, int i) nogil
    bint COLLIDE_UNLIKELY(bint x) nogil
    int64_t collide_peak_rows(const double *rows, int64_t P, int64_t n, double t) nogil
    int64_t collide_count_free(const double *col, int64_t P, int64_t stride, double reuse,
                               double t) nogil
    int64_t collide_list_free(const double *col, int64_t P, int64_t stride, double reuse,
                              double th, int32_t *lst, int32_t *pos) nogil
    ctypedef struct collide_evq:
        double *q
        int64_t *n
        int64_t cap, lim
        double *log
        int64_t *si
        double cinv
    int COLLIDE_EV_LOG, COLLIDE_EV_FULL, COLLIDE_EV_CUR, COLLIDE_EV_NC
    int64_t evq_log(collide_evq *e, double t, int64_t code) nogil
    void evq_push(collide_evq *e, double t, double x, int64_t code) nogil
    void collide_row_changed(collide_evq *q, const double *slot_end, const int32_t *slot_tgt,
                             int64_t row, double *ef, int64_t *ei, int64_t n, int64_t Z,
                             double reuse, double t, int64_t ip, int64_t before,
                             int64_t sbase) nogil
    int64_t collide_row_list(const double *slot_end, const int32_t *slot_tgt, int64_t row,
                             int64_t n, double reuse, double t, double *ef, int64_t *ei,
                             int64_t o) nogil
    int64_t rng_randint(collide_pcg64 *g, bitgen_t *b, int64_t n) nogil
    double rng_uniform(collide_pcg64 *g, bitgen_t *b) nogil
    double rng_exponential(collide_pcg64 *g, bitgen_t *b) nogil
    double rng_normal(collide_pcg64 *g, bitgen_t *b) nogil
    double rng_lifetime(collide_pcg64 *g, bitgen_t *b, int64_t dist, double mean, double mu,
                        double sigma, double xm, double alpha, const double *xa,
                        int64_t emp_n) nogil

cdef object M64 = (1 << 64) - 1

# parameter and state indices: those of params.py and state.py (checked below)
cdef enum:
    K, N, B, P, CAP, LIMITED, CLIENTS, IP_PER_CLIENT, STICKY, ALLOC, DIST, OUTCOME, CROSS, CIP, \
    WEIGHTED, EST, SUMS, NBATCH, TW_ON, REUSE_ON, NODE_LIMIT, NEED_CLIENT, EMP_N, SCHED_N, SYN_N, \
    CA_LIMIT, COLLIDABLE, NTL_SIZE, EV_NSUB, UNTIL_FIRST, DELAYS, ZONES, EV_CCAP
cdef enum:
    RATE, MEAN, MU, SIGMA, XM, ALPHA, DNS_TTL, TW, SCF, REUSE, T_MEASURE, T_END, BATCH_SCALE, \
    EV_CINV
cdef enum:
    S_CONN, S_EST, S_AFAIL, S_FAILED, S_COLL, S_RESETS, S_TWHITS, S_PAIRS, S_DELAYED, S_PENDING, \
    S_CA_SEC, S_CA_USED, S_PEAK, S_SAMPLE_I, S_FIRST_SEEN, S_PD_TOP, S_HEAP_N, S_PD_SERIAL, \
    S_TW_INS, S_EV_LOG, S_EV_FULL, S_EV_CUR, S_PLACE_I, S_PLACE_N, S_STARTED, S_TRIES
cdef enum:
    F_NEXT_ARR, F_NOW, F_FIRST, F_BSCALE
cdef enum:
    DW = 8
    D_UB = 0
    D_CURSOR = 1
    D_LIN_EPOCH = 2
    D_LIN_OFF = 3
    D_LIN_PERT = 4
    HW = 4
    H_MODE = 0
    H_LEN = 1
    H_MISS = 2
    TWB = 8
    TW_OVF = 6
    EV_NC = 64
    EV_END = 0
    EV_UNEND = 1
    EV_REL = 2
    EV_UNREL = 3
    EV_T = 4
    EV_DUP = 5
    EV_ARR = 6
    ARR_QUERY = 1
    ARR_TAKE = 2
    ARR_LIVE = 4
    KMAX = 128
    PEAK_SAMPLES = 100
cdef enum:
    DONE, BUDGET_SPENT, FIRST_HIT, GROW_PEND, GROW_TW, GROW_EV
cdef double LINUX_EPOCH_S = 10.0
cdef bint _force_general = False


def use_general_kernel(bint on):
    """Debug switch: True runs every scenario through the general specialisation of the kernel
    (tests compare it with the plain and extras ones); returns the previous setting."""
    global _force_general
    cdef bint was = _force_general
    _force_general = on
    return was

assert (C.DELAYS, C.EV_CINV, T.TRIES, T.FIRST, T.DW, T.HW, T.TWB, T.TW_OVF, T.GROW_EV) == \
    (DELAYS, EV_CINV, S_TRIES, F_FIRST, DW, HW, TWB, TW_OVF, GROW_EV)
assert (T.EV_NC, T.D_LIN_PERT, T.BSCALE, C.ZONES, C.EV_CCAP, C.EV_NSUB) == \
    (EV_NC, D_LIN_PERT, F_BSCALE, ZONES, EV_CCAP, EV_NSUB)
assert (T.EV_LOG, T.EV_FULL, T.EV_CUR, T.EV_NC) == \
    (COLLIDE_EV_LOG, COLLIDE_EV_FULL, COLLIDE_EV_CUR, COLLIDE_EV_NC)
assert (C.PEAK_SAMPLES, T.D_LIN_PERT, T.H_MISS, T.PLACE_N) == \
    (PEAK_SAMPLES, D_LIN_PERT, H_MISS, S_PLACE_N)
assert T.FIELDS == ("si", "sf", "slot_end", "slot_tgt", "dest", "pool", "pool_th", "hl_list",
                    "hl_pos", "cl_node", "cl_exp", "ntl", "tw", "pd_slot", "pd_tgt", "pd_retry",
                    "pd_flags", "pd_serial", "pd_t0", "pd_life", "pd_at", "pd_stack", "heap",
                    "est", "est_f", "est_i", "ev_q", "ev_n", "ev_log", "ev_sort", "ev_cnt",
                    "batches", "dhist", "place_life", "place_order")

# compile-time specialisation of the kernel (fused types: one copy per member, branches on them
# resolved when compiling). Mode: plain (random ports, client IP preservation, none of TIME_WAIT,
# clients, weights, reuse delay, retries); extras (plain + TIME_WAIT, clients, weights); general.
ctypedef signed char plain_t
ctypedef short extras_t
ctypedef int general_t
ctypedef fused Mode:
    plain_t
    extras_t
    general_t
# ... and the estimate kept
ctypedef unsigned char est_off_t
ctypedef unsigned short est_target_t
ctypedef unsigned int est_full_t
ctypedef fused Est:
    est_off_t
    est_target_t
    est_full_t


ctypedef struct Kern:
    # parameters
    int64_t k, n, nb, np_, cap, clients, alloc, dist, outcome, nbatch, node_limit, emp_n, sched_n
    int64_t syn_n, syn_off, ca_limit, ntl_size, ev_nsub, zones, sbase, ev_max
    bint limited, ip_per_client, sticky, need_client, cross, cip, weighted, sums, tw_on, delays
    bint collidable, until_first
    double rate, mean, mu, sigma, xm, alpha, dns_ttl, tw_s, scf, reuse, t_measure, t_end
    double batch_scale, ev_cinv
    const int64_t *zs
    const int64_t *zc
    const double *wcum
    const double *xa
    const int64_t *dsum         # per destination d: the place of its S in `est` (full estimate)
    const int64_t *dend         # ... and the code of an end there
    # state
    int64_t *si
    double *sf
    double *slot_end
    int32_t *slot_tgt
    int64_t *dest
    int64_t *pool
    double *pool_th
    int32_t *hl_list
    int32_t *hl_pos
    int64_t *cl_node
    double *cl_exp
    int64_t *ntl
    double *tw
    int64_t tw_nb
    int64_t *pd_slot
    int64_t *pd_tgt
    int64_t *pd_retry
    int64_t *pd_flags
    int64_t *pd_serial
    double *pd_t0
    double *pd_life
    double *pd_at
    int64_t *pd_stack
    int64_t *heap
    int64_t *est
    double *est_f
    int64_t *est_i
    double *ev_q
    int64_t *ev_n
    int64_t ev_cap              # a segment's room
    double *ev_log
    int64_t ev_logcap
    double *ev_pend             # per log record: an arrival's end, queued when its log is settled
    double *ev_sort
    int64_t *ev_cnt
    collide_evq evq             # the same arrays, for the log's and segments' C steps
    double *batches
    int64_t *dhist
    double *place_life
    int64_t *place_order
    bitgen_t *bitgen


# == arrivals in time, lifetimes =================================================================
cdef double next_arrival_after(const Kern *k, double t, double e) noexcept nogil:
    """The next arrival after t for one exponential draw e: invert the cumulative rate."""
    cdef int64_t ms = k.sched_n, lo = 0, hi, mid, i
    cdef const double *start
    cdef const double *rate
    cdef double r, seg_end, t_next
    if ms == 0:
        return t + e / k.rate
    start = k.xa + 2 * k.emp_n
    rate = start + ms
    hi = ms
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if start[mid] <= t:
            lo = mid
        else:
            hi = mid
    i = lo
    while True:
        r = rate[i]
        if i + 1 >= ms:
            return t + e / r
        seg_end = start[i + 1]
        t_next = t + e / r
        if t_next < seg_end:
            return t_next
        e -= (seg_end - t) * r
        if e < 0.0:
            e = 0.0
        t = seg_end
        i += 1


cdef double draw_biased_lifetime(const Kern *k, collide_pcg64 *g) noexcept nogil:
    """A draw from the length-biased law x f(x) / E[L] (the stationary start)."""
    cdef int64_t dist = k.dist, lo, hi, mid, n = k.emp_n
    cdef double e1, x
    if dist == 0:
        e1 = rng_exponential(g, k.bitgen)
        return k.mean * (e1 + rng_exponential(g, k.bitgen))
    if dist == 1:
        return k.mean
    if dist == 2:
        return exp(k.mu + k.sigma * k.sigma + k.sigma * rng_normal(g, k.bitgen))
    if dist == 4:
        x = rng_uniform(g, k.bitgen) * k.xa[2 * n - 1]
        lo = 0
        hi = n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if k.xa[n + mid] > x:
                hi = mid
            else:
                lo = mid + 1
        return k.xa[lo]
    return k.xm * exp(rng_exponential(g, k.bitgen) / (k.alpha - 1.0))


# == scans ===========================================================================================
cdef inline double free_time(const Kern *k, int64_t row, int64_t j, bint pool_is_ip) noexcept nogil:
    cdef double e
    cdef int64_t m
    if pool_is_ip:
        e = k.slot_end[row]
        for m in range(1, k.n):
            if k.slot_end[row + m] > e:
                e = k.slot_end[row + m]
        return e + k.reuse
    return k.slot_end[row + j] + k.reuse


cdef void scan_held(Kern *k, int64_t ip, double t) noexcept nogil:
    cdef int64_t m, p, c, n = k.n, base = ip * k.np_ * k.n
    for m in range(n):
        c = 0
        for p in range(k.np_):
            c += k.slot_end[base + p * n + m] > t
        k.dest[(ip * n + m) * DW + D_UB] = c


cdef int64_t scan_peak(Kern *k, double t) noexcept nogil:
    """The most ports one (ip, node) holds at t: one pass over each ip's rows, counted in
    registers by `collide_peak_rows` (a count kept in the state would be stored at every slot)."""
    cdef int64_t ip, best = 0, n = k.n, P_ = k.np_
    for ip in range(k.k):
        best = max(best, collide_peak_rows(k.slot_end + ip * P_ * n, P_, n, t))
    return best


cdef int64_t scan_count_free(const Kern *k, bint pool_is_ip, int64_t ip, int64_t j,
                             double t) noexcept nogil:
    cdef int64_t p, c = 0, n = k.n, base = ip * k.np_ * k.n
    cdef const double *col = k.slot_end + base + j
    cdef double reuse = k.reuse
    if not pool_is_ip:                  # a node's column
        return collide_count_free(col, k.np_, n, reuse, t)
    for p in range(k.np_):
        c += free_time(k, base + p * n, j, pool_is_ip) <= t
    return c


cdef int64_t scan_nth_free(const Kern *k, bint pool_is_ip, int64_t ip, int64_t j, double t,
                           int64_t rank) noexcept nogil:
    cdef int64_t p, base = ip * k.np_ * k.n
    for p in range(k.np_):
        if free_time(k, base + p * k.n, j, pool_is_ip) <= t:
            if rank == 0:
                return p
            rank -= 1
    return -1


cdef int64_t scan_list(Kern *k, bint pool_is_ip, int64_t ip, int64_t j, double th,
                       int64_t q) noexcept nogil:
    """The pool's horizon list: every port free by th, in port order. Written without branches
    (about a fifth of the ports enter, unpredictably); entries past the length are not read."""
    cdef int64_t p, n = 0, row0 = ip * k.np_ * k.n, base = q * k.np_, inside, stride = k.n
    cdef int32_t *lst = k.hl_list + base
    cdef int32_t *pos = k.hl_pos + base
    cdef const double *col = k.slot_end + row0 + j
    cdef double reuse = k.reuse
    if not pool_is_ip:                  # a node's column
        return collide_list_free(col, k.np_, stride, reuse, th, lst, pos)
    for p in range(k.np_):
        inside = free_time(k, row0 + p * stride, j, pool_is_ip) <= th
        lst[n] = <int32_t>p
        pos[p] = <int32_t>(n if inside else -1)
        n += inside
    return n


cdef void scan_node_targets(Kern *k, double t) noexcept nogil:
    cdef int64_t i, r, m, n = k.n
    for i in range(k.ntl_size):
        k.ntl[i] = 0
    for r in range(k.k * k.np_):
        for m in range(n):
            if k.slot_end[r * n + m] > t:
                k.ntl[(m * k.nb + k.slot_tgt[r * n + m]) % k.ntl_size] += 1


cdef int64_t scan_pair(const Kern *k, int64_t j, int64_t b, double t) noexcept nogil:
    cdef int64_t r, c = 0, n = k.n
    for r in range(k.k * k.np_):
        c += k.slot_end[r * n + j] > t and k.slot_tgt[r * n + j] == b
    return c


cdef int64_t scan_sequential(const Kern *k, int64_t base, int64_t j, double t,
                             int64_t start) noexcept nogil:
    cdef int64_t p = start, i
    for i in range(k.np_):
        if k.slot_end[base + p * k.n + j] + k.reuse <= t:
            return p
        p += 1
        if p == k.np_:
            p = 0
    return -1


cdef int64_t scan_linux(const Kern *k, int64_t base, int64_t j, double t, int64_t offset,
                        int64_t *skipped) noexcept nogil:
    """Linux's scan: ports of the offset's even parity in steps of 2, then the other parity."""
    cdef int64_t p, i, P_ = k.np_
    offset -= offset % 2
    while True:
        p = offset
        i = 0
        while i < P_:
            if p >= P_:
                p -= P_
            if k.slot_end[base + p * k.n + j] + k.reuse <= t:
                skipped[0] = i // 2
                return p
            p += 2
            i += 2
        offset += 1
        if offset % 2 == 0 or P_ <= 1:
            skipped[0] = 0
            return -1


cdef inline int64_t distinct_live(const Kern *k, int64_t row, int64_t j, double t, int64_t lo,
                                  int64_t hi) noexcept nogil:
    """Distinct targets in [lo, hi) held live at t on `row` through nodes other than j."""
    cdef int64_t m, x, c = 0, b
    cdef bint seen
    for m in range(k.n):
        if m == j or not k.slot_end[row + m] > t:
            continue
        b = k.slot_tgt[row + m]
        if b < lo or b >= hi:
            continue
        seen = False
        for x in range(m):
            if x != j and k.slot_end[row + x] > t and k.slot_tgt[row + x] == b:
                seen = True
        if not seen:
            c += 1
    return c


# == TIME_WAIT records ===============================================================================
cdef inline int64_t tw_home(int64_t key, int64_t nb) noexcept nogil:
    return ((key % 2147483647) * 48271 % 2147483647) & (nb - 1)


cdef int64_t tw_find(const double *tw, int64_t nb, int64_t key, double t) noexcept nogil:
    cdef int64_t q = tw_home(key, nb), b, i, step
    cdef double fk = <double>key
    for step in range(nb):
        b = q * TWB
        for i in range(3):
            if tw[b + 2 * i] == fk and tw[b + 2 * i + 1] > t:
                return b + 2 * i
        if not tw[b + TW_OVF] > t:
            return -1
        q += 1
        if q == nb:
            q = 0
    return -1


cdef int64_t tw_put(double *tw, int64_t nb, int64_t key, double ex, double t) noexcept nogil:
    cdef int64_t q0 = tw_home(key, nb), q = q0, qq, d, b, i, s
    for d in range(nb):
        b = q * TWB
        for i in range(3):
            if not tw[b + 2 * i + 1] > t:
                tw[b + 2 * i] = <double>key
                tw[b + 2 * i + 1] = ex
                qq = q0
                for s in range(d):
                    if tw[qq * TWB + TW_OVF] < ex:
                        tw[qq * TWB + TW_OVF] = ex
                    qq += 1
                    if qq == nb:
                        qq = 0
                return 1
        q += 1
        if q == nb:
            q = 0
    return 0


cdef inline int64_t tw_take(Kern *k, int64_t key, bint close, double ex, double t) noexcept nogil:
    cdef int64_t i = tw_find(k.tw, k.tw_nb, key, t)
    if i >= 0:
        k.tw[i + 1] = ex if close else -INFINITY
        return 1
    if close:
        k.si[S_TW_INS] += tw_put(k.tw, k.tw_nb, key, ex, t)
    return 0


def tw_rehash(double[::1] old, double[::1] new, double t):
    """Move the live TIME_WAIT records of `old` into the empty table `new`."""
    cdef int64_t nb = old.shape[0] // TWB, nb_new = new.shape[0] // TWB, q, i, b
    with nogil:
        for q in range(nb):
            b = q * TWB
            for i in range(3):
                if old[b + 2 * i + 1] > t:
                    tw_put(&new[0], nb_new, <int64_t>old[b + 2 * i], old[b + 2 * i + 1], t)


# == the retry heap ==================================================================================
cdef inline bint heap_less(const Kern *k, int64_t a, int64_t b) noexcept nogil:
    return k.pd_at[a] < k.pd_at[b] or (k.pd_at[a] == k.pd_at[b] and k.pd_serial[a] < k.pd_serial[b])


cdef void heap_push(Kern *k, int64_t x) noexcept nogil:
    cdef int64_t i = k.si[S_HEAP_N], parent
    k.si[S_HEAP_N] = i + 1
    while i > 0:
        parent = (i - 1) // 2
        if not heap_less(k, x, k.heap[parent]):
            break
        k.heap[i] = k.heap[parent]
        i = parent
    k.heap[i] = x


cdef int64_t heap_pop(Kern *k) noexcept nogil:
    cdef int64_t top = k.heap[0], n = k.si[S_HEAP_N] - 1, x, i, c
    k.si[S_HEAP_N] = n
    if n > 0:
        x = k.heap[n]
        i = 0
        while True:
            c = 2 * i + 1
            if c >= n:
                break
            if c + 1 < n and heap_less(k, k.heap[c + 1], k.heap[c]):
                c += 1
            if not heap_less(k, k.heap[c], x):
                break
            k.heap[i] = k.heap[c]
            i = c
        k.heap[i] = x
    return top


# == horizon lists ===================================================================================
cdef void hl_sync(Kern *k, int64_t q, int64_t row, int64_t j, int64_t p,
                  bint pool_is_ip) noexcept nogil:
    """Port p's free time changed: put it in or take it out of pool q's horizon list."""
    cdef int64_t base, n, i, last
    cdef bint inside, should
    if k.pool[q * HW + H_MODE] != 1:
        return
    base = q * k.np_
    inside = k.hl_pos[base + p] >= 0
    should = free_time(k, row, j, pool_is_ip) <= k.pool_th[q]
    if inside and not should:
        n = k.pool[q * HW + H_LEN] - 1
        i = k.hl_pos[base + p]
        last = k.hl_list[base + n]
        k.hl_list[base + i] = <int32_t>last
        k.hl_pos[base + last] = <int32_t>i
        k.hl_pos[base + p] = -1
        k.pool[q * HW + H_LEN] = n
    elif should and not inside:
        n = k.pool[q * HW + H_LEN]
        k.hl_list[base + n] = <int32_t>p
        k.hl_pos[base + p] = <int32_t>n
        k.pool[q * HW + H_LEN] = n + 1


cdef int64_t hl_check(Kern *k, int64_t q, int64_t ip, int64_t j, bint pool_is_ip,
                      double t) noexcept nogil:
    cdef int64_t h = q * HW, f0, base, i, P_ = k.np_
    cdef double th
    f0 = scan_count_free(k, pool_is_ip, ip, j, t)
    k.pool[h + H_MISS] = 0
    if 4 * f0 > P_:
        if k.pool[h + H_MODE] == 1:
            base = q * P_
            for i in range(k.pool[h + H_LEN]):
                k.hl_pos[base + k.hl_list[base + i]] = -1
        k.pool[h + H_MODE] = 0
        k.pool[h + H_LEN] = 0
        return P_
    th = t + sqrt(<double>(f0 * P_)) * k.mean / (P_ - f0 + 1)
    k.pool_th[q] = th
    k.pool[h + H_MODE] = 1
    k.pool[h + H_LEN] = scan_list(k, pool_is_ip, ip, j, th, q)
    return 2 * P_


cdef int64_t allocate_pooled(Kern *k, collide_pcg64 *g, int64_t q, int64_t ip, int64_t j,
                             bint pool_is_ip, double t, int64_t *work) noexcept nogil:
    """random (pool = the destination) and eim (pool = the NAT ip): a port free for the pool,
    uniformly; -1 if none. The reference's `allocate_pooled`."""
    cdef int64_t h = q * HW, base = ip * k.np_ * k.n, n, p = -1, tries = 0, x, qp, row, m, nf, r
    cdef bint listed, ok
    if k.pool[h + H_MODE] == 0:
        if k.pool[h + H_MISS] > k.np_:
            work[0] += hl_check(k, q, ip, j, pool_is_ip, t)
    elif t > k.pool_th[q]:
        work[0] += hl_check(k, q, ip, j, pool_is_ip, t)
    listed = k.pool[h + H_MODE] == 1
    n = k.pool[h + H_LEN] if listed else k.np_
    if n == 0:
        return -1
    while tries < KMAX:
        x = rng_randint(g, k.bitgen, n)
        tries += 1
        qp = k.hl_list[q * k.np_ + x] if listed else x
        row = base + qp * k.n
        if pool_is_ip:
            ok = True
            for m in range(k.n):
                if not k.slot_end[row + m] + k.reuse <= t:
                    ok = False
        else:
            ok = k.slot_end[row + j] + k.reuse <= t
        if ok:
            p = qp
            break
    work[0] += tries
    k.si[S_TRIES] += tries
    if not listed:
        k.pool[h + H_MISS] += tries - 1
    if p < 0:
        work[0] += k.np_
        nf = scan_count_free(k, pool_is_ip, ip, j, t)
        if nf == 0:
            return -1
        r = rng_randint(g, k.bitgen, nf)
        p = scan_nth_free(k, pool_is_ip, ip, j, t, r)
    return p


# == the `full` estimate's running counts ============================================================
# The reference's: est_sum[d] = S[ip, z] - A[d] - DUP[ip, z] - T[d], kept late: changes now go to
# a log in time order, changes later to the segment of their window; when time leaves a window its
# changes are sorted and merged with the log, each logged query seeing exactly what came before it
# (docs/engine.md).
cdef inline int64_t zone_index(const Kern *k, int64_t m) noexcept nogil:
    return 0 if k.zones == 1 else m % k.zones


cdef inline int64_t est_code(int64_t offset, int64_t x, int64_t kind) noexcept nogil:
    return (offset << 26) | (x << 3) | kind


cdef inline int64_t end_code(const Kern *k, int64_t ip, int64_t m, int64_t kind) noexcept nogil:
    """The reference's `end_code`."""
    cdef int64_t d = 3 * (ip * k.n + m)
    if kind >= EV_REL:
        return est_code(d + 1, 0, kind)
    return est_code(d, 2 * (ip * k.zones + zone_index(k, m)), kind)


cdef inline void ev_push(Kern *k, double t, double x, int64_t code) noexcept nogil:
    evq_push(&k.evq, t, x, code)


cdef inline void ev_apply(Kern *k, int64_t code) noexcept nogil:
    """The reference's `ev_apply`."""
    cdef int64_t kind = code & 7, off = code >> 26, sgn
    if kind <= EV_UNEND:
        sgn = 1 if kind == EV_UNEND else -1
        k.est[off] += sgn
        k.est[k.sbase + ((code >> 3) & 0x7FFFFF)] += sgn
        if k.reuse == 0.0:
            k.est[off + 1] -= sgn
    elif kind <= EV_UNREL:
        k.est[off] += 1 if kind == EV_REL else -1
    else:
        k.est[off] += ((code >> 3) & 1023) - 512


cdef int64_t ev_window_sort(Kern *k, int64_t w, double upto) noexcept nogil:
    """The reference's `ev_window_sort`: what window w's segment holds due by `upto`, in time order
    in ev_sort; the rest kept. Each entry's sub-bucket is computed once, kept meanwhile past the
    sorted pairs (ev_sort has room for 3 cap doubles; -1: an entry that stays)."""
    cdef int64_t kk = w & (EV_NC - 1), n = k.ev_n[kk], nsub = k.ev_nsub, q, i, j, m, kept = 0, at
    cdef double *seg = k.ev_q + 2 * kk * k.ev_cap
    cdef double *srt = k.ev_sort
    cdef int32_t *key = <int32_t *>(k.ev_sort + 2 * k.ev_cap)
    cdef int64_t *cnt = k.ev_cnt
    cdef double x, f, c, cinv = k.ev_cinv, wf = <double>w
    for q in range(nsub + 1):
        cnt[q] = 0
    for i in range(n):
        x = seg[2 * i]
        f = x * cinv
        if f < wf + 1.0 and x <= upto:
            q = <int64_t>((f - wf) * nsub)
            q = 0 if q < 0 else (nsub - 1 if q >= nsub else q)
            cnt[q + 1] += 1
            key[i] = <int32_t>q
        else:
            key[i] = -1
    for q in range(nsub):
        cnt[q + 1] += cnt[q]
    m = cnt[nsub]
    for i in range(n):
        if key[i] >= 0:
            q = key[i]
            at = cnt[q]
            cnt[q] = at + 1
            srt[2 * at] = seg[2 * i]
            srt[2 * at + 1] = seg[2 * i + 1]
        else:
            seg[2 * kept] = seg[2 * i]
            seg[2 * kept + 1] = seg[2 * i + 1]
            kept += 1
    k.ev_n[kk] = kept
    for i in range(1, m):                        # sub-buckets hold one or two: nearly in order
        x = srt[2 * i]
        if srt[2 * i - 2] <= x:
            continue
        c = srt[2 * i + 1]
        j = i
        while j > 0 and srt[2 * j - 2] > x:
            srt[2 * j] = srt[2 * j - 2]
            srt[2 * j + 1] = srt[2 * j - 1]
            j -= 1
        srt[2 * j] = x
        srt[2 * j + 1] = c
    return m


cdef inline void ev_apply_to(int64_t *est, int64_t sbase, bint reuse0, int64_t code) noexcept nogil:
    """`ev_apply` on the counts `est`, the parameters it reads held by the caller (stores to the
    counts would otherwise make the compiler read them again from the state)."""
    cdef int64_t kind = code & 7, off = code >> 26, sgn
    if kind <= EV_UNEND:
        sgn = 1 if kind == EV_UNEND else -1
        est[off] += sgn
        est[sbase + ((code >> 3) & 0x7FFFFF)] += sgn
        if reuse0:
            est[off + 1] -= sgn
    elif kind <= EV_UNREL:
        est[off] += 1 if kind == EV_REL else -1
    else:
        est[off] += ((code >> 3) & 1023) - 512


cdef inline int64_t arr_end_code(int64_t code) noexcept nogil:
    """The code of the end of the arrival logged as `code` (`dend` of its destination)."""
    return (code >> 26 << 26) | ((((code >> 3) & 0x7FFFFF) >> 4) << 3) | EV_END


cdef int64_t ev_queue_ends(Kern *k, int64_t nl) noexcept nogil:
    """The ends of the arrivals in the log, each queued in the segment of its window (the
    reference queues them at the arrival; here the kernel only notes them, `ev_pend`, and they
    are queued together when the log is settled: the same entries before any is sorted). -1,
    changing nothing, if a segment lacks room (the kernel returns GROW_EV)."""
    cdef int64_t add[EV_NC]
    cdef int64_t r, code, kk, most = 0
    cdef double x, f, tr, cinv = k.ev_cinv
    cdef double *lg = k.ev_log
    cdef double *pend = k.ev_pend
    for kk in range(EV_NC):
        most = k.ev_n[kk] if k.ev_n[kk] > most else most
    if most + nl > k.ev_cap:               # perhaps no room: count where each end goes
        for kk in range(EV_NC):
            add[kk] = 0
        for r in range(nl):
            code = <int64_t>lg[2 * r + 1]
            if code & 7 == EV_ARR and (code >> 3) & ARR_LIVE and pend[r] > lg[2 * r]:
                f = pend[r] * cinv
                add[<int64_t>(f if f < 4e18 else 4e18) & (EV_NC - 1)] += 1
        for kk in range(EV_NC):
            if k.ev_n[kk] + add[kk] > k.ev_cap:
                return -1
    for r in range(nl):
        code = <int64_t>lg[2 * r + 1]
        tr = lg[2 * r]
        if code & 7 == EV_ARR and (code >> 3) & ARR_LIVE and pend[r] > tr:
            evq_push(&k.evq, tr, pend[r], arr_end_code(code))
    return 0


cdef int64_t ev_window(Kern *k, int64_t w, double upto) noexcept nogil:
    """The reference's `ev_window`: window w settled up to `upto`, its changes merged with the
    log. `ev_record` and `add_to_batch` inline, on locals: the same integers, the same batch
    additions in the same order."""
    cdef int64_t nl = k.si[S_EV_LOG], m, i = 0, r, code, d, x, s, f, nt, bi
    cdef int64_t sbase = k.sbase, nbatch = k.nbatch, nb = k.nb, n = k.n
    cdef int64_t *est = k.est
    cdef double *batches = k.batches
    cdef const int64_t *zc = k.zc
    cdef bint reuse0 = k.reuse == 0.0, cross = k.cross
    cdef double tr, e, tm = k.t_measure, bscale = k.sf[F_BSCALE]
    cdef double *lg = k.ev_log
    cdef double *srt = k.ev_sort
    if ev_queue_ends(k, nl) < 0:
        return -1
    m = ev_window_sort(k, w, upto)
    for r in range(nl):
        tr = lg[2 * r]
        while i < m and srt[2 * i] <= tr:
            ev_apply_to(est, sbase, reuse0, <int64_t>srt[2 * i + 1])
            i += 1
        code = <int64_t>lg[2 * r + 1]
        if code & 7 != EV_ARR:
            ev_apply_to(est, sbase, reuse0, code)
            continue
        d = code >> 26                     # an arrival: its query, the port taken, it lives
        x = (code >> 3) & 0x7FFFFF
        s = sbase + (x >> 4)
        if x & ARR_QUERY:
            f = est[d + 1]
            e = 0.0
            if f > 0:
                nt = nb if cross else zc[(d // 3) % n]
                e = <double>(est[s] - est[d] - est[s + 1] - est[d + 2]) / <double>(f * nt)
            bi = <int64_t>((tr - tm) * bscale)
            if 0 <= bi < nbatch:
                batches[bi] += e
            else:
                add_to_batch(k, tr, e)
                bscale = k.sf[F_BSCALE]
        if x & ARR_TAKE:
            est[d + 1] -= 1
        if x & ARR_LIVE:
            est[d] += 1
            est[s] += 1
            if k.ev_pend[r] <= tr:         # (an end at its own start: a change now)
                ev_apply_to(est, sbase, reuse0, arr_end_code(code))
    while i < m:
        ev_apply_to(est, sbase, reuse0, <int64_t>srt[2 * i + 1])
        i += 1
    k.si[S_EV_LOG] = 0
    return nl + m + 1


cdef int64_t ev_catch_up_all(Kern *k, double t) noexcept nogil:
    """The reference's `ev_catch_up`, past its first test."""
    cdef double f = t * k.ev_cinv
    cdef int64_t ct = <int64_t>(f if f < 4e18 else 4e18), cur = k.si[S_EV_CUR], work, kk, kept, i
    cdef double x
    cdef double *seg
    work = ev_window(k, cur, INFINITY)
    if work < 0:                           # no room for the log's ends: nothing changed
        return -1
    cur += 1
    if ct - cur > EV_NC:
        for kk in range(EV_NC):
            seg = k.ev_q + 2 * kk * k.ev_cap
            kept = 0
            for i in range(k.ev_n[kk]):
                x = seg[2 * i]
                f = x * k.ev_cinv
                if <int64_t>(f if f < 4e18 else 4e18) < ct:
                    ev_apply(k, <int64_t>seg[2 * i + 1])
                else:
                    seg[2 * kept] = x
                    seg[2 * kept + 1] = seg[2 * i + 1]
                    kept += 1
            work += k.ev_n[kk]
            k.ev_n[kk] = kept
        cur = ct
    while cur < ct:
        work += ev_window(k, cur, INFINITY)
        cur += 1
    k.si[S_EV_CUR] = ct
    return work


cdef inline int64_t ev_catch_up(Kern *k, double t) noexcept nogil:
    cdef double f = t * k.ev_cinv
    if COLLIDE_UNLIKELY(<int64_t>(f if f < 4e18 else 4e18) > k.si[S_EV_CUR]):
        return ev_catch_up_all(k, t)
    return 0


cdef int64_t est_settle(Kern *k, double t) noexcept nogil:
    """The reference's `est_settle`: counts and batches up to t."""
    if not k.sums:
        return 0
    cdef int64_t work = ev_catch_up(k, t)
    if work < 0:
        return -1
    return work + ev_window(k, k.si[S_EV_CUR], t)


cdef inline int64_t row_list(Kern *k, int64_t row, double t) noexcept nogil:
    """The reference's `row_list` (the contents before a change, at est_f/est_i[0:])."""
    return collide_row_list(k.slot_end, k.slot_tgt, row, k.n, k.reuse, t, k.est_f, k.est_i, 0)


cdef void row_changed(Kern *k, int64_t row, int64_t ip, double t, int64_t before) noexcept nogil:
    """The reference's `row_changed`."""
    collide_row_changed(&k.evq, k.slot_end, k.slot_tgt, row, k.est_f, k.est_i, k.n, k.zones,
                        k.reuse, t, ip, before, k.sbase)


cdef void row_joined(Kern *k, int64_t row, int64_t ip, int64_t j, double t,
                     double end) noexcept nogil:
    """`row_changed` where a row's only holder is joined by a live one with another target (one
    zone, no reuse delay): the two targets are distinct while both live, so each node's T
    counts one more port from now until the first of the two ends. The same changes as the
    general steps, in fewer instructions (they are a fifth of base's arrivals)."""
    cdef int64_t m, a = 0, da, d = ip * k.n + j
    cdef double first
    for m in range(k.n):
        if m != j and k.slot_end[row + m] > t:
            a = m
    da = ip * k.n + a
    first = k.slot_end[row + a]
    first = end if end < first else first
    evq_log(&k.evq, t, ((3 * da + 2) << 26) | (513 << 3) | EV_T)
    evq_log(&k.evq, t, ((3 * d + 2) << 26) | (513 << 3) | EV_T)
    evq_push(&k.evq, t, first, ((3 * da + 2) << 26) | (511 << 3) | EV_T)
    evq_push(&k.evq, t, first, ((3 * d + 2) << 26) | (511 << 3) | EV_T)


cdef inline void est_live(Kern *k, int64_t arr, int64_t ip, int64_t j, double t,
                         double end) noexcept nogil:
    """The arrival logged at `arr` lives until `end` (its end is queued when the log is settled)."""
    k.ev_pend[arr] = end
    if k.reuse > 0.0:
        ev_push(k, t, end + k.reuse, end_code(k, ip, j, EV_REL))


cdef inline void est_release_at(Kern *k, int64_t ip, int64_t j, double t) noexcept nogil:
    ev_push(k, t, t + k.reuse, end_code(k, ip, j, EV_REL))


cdef inline void est_reset(Kern *k, int64_t ip, int64_t m, double t, double old_end) noexcept nogil:
    evq_log(&k.evq, t, end_code(k, ip, m, EV_END))
    ev_push(k, t, old_end, end_code(k, ip, m, EV_UNEND))
    if k.reuse > 0.0:
        ev_push(k, t, old_end + k.reuse, end_code(k, ip, m, EV_UNREL))
        ev_push(k, t, t + k.reuse, end_code(k, ip, m, EV_REL))


cdef double estimate_full(const Kern *k, int64_t ip, int64_t j, int64_t d, double t, int64_t lo,
                          int64_t hi) noexcept nogil:
    cdef int64_t nt = hi - lo, base = ip * k.np_ * k.n, p, o, start, last_start = -1, last = 0
    cdef int64_t acc = 0, pert, cursor, skipped, f
    if k.alloc == 0:
        f = k.est[3 * d + 1]
        if f == 0:
            return 0.0
        return <double>(k.est[k.sbase + 2 * (ip * k.zones + zone_index(k, j))]
                        - k.est[3 * d]
                        - k.est[k.sbase + 2 * (ip * k.zones + zone_index(k, j)) + 1]
                        - k.est[3 * d + 2]) / <double>(f * nt)
    if k.alloc == 3:
        return 0.0
    if k.alloc == 1:
        cursor = k.dest[d * DW + D_CURSOR]
        if cursor >= 0:
            p = scan_sequential(k, base, j, t, cursor)
            if p < 0:
                return 0.0
            return <double>distinct_live(k, base + p * k.n, j, t, lo, hi) / <double>nt
        for p in range(k.np_):
            acc += distinct_live(k, base + p * k.n, j, t, lo, hi)
        return <double>acc / <double>(k.np_ * nt)
    pert = k.dest[d * DW + D_LIN_PERT]
    if <int64_t>floor(t / LINUX_EPOCH_S) == k.dest[d * DW + D_LIN_EPOCH]:
        p = scan_linux(k, base, j, t, (pert + k.dest[d * DW + D_LIN_OFF]) % k.np_, &skipped)
        if p < 0:
            return 0.0
        return <double>distinct_live(k, base + p * k.n, j, t, lo, hi) / <double>nt
    for o in range(k.np_):
        start = (pert + o) % k.np_
        start -= start % 2
        if start != last_start:
            p = scan_linux(k, base, j, t, start, &skipped)
            last = 0 if p < 0 else distinct_live(k, base + p * k.n, j, t, lo, hi)
            last_start = start
        acc += last
    return <double>acc / <double>(k.np_ * nt)


cdef void merge_batches(Kern *k) noexcept nogil:
    cdef int64_t i, nb = k.nbatch
    for i in range(nb // 2):
        k.batches[i] = k.batches[2 * i] + k.batches[2 * i + 1]
    for i in range(nb // 2, nb):
        k.batches[i] = 0.0
    k.sf[F_BSCALE] = k.sf[F_BSCALE] * 0.5


cdef inline void add_to_batch(Kern *k, double t, double e) noexcept nogil:
    """The reference's `add_to_batch`: batches over the window reached, widths doubling."""
    cdef int64_t bi = <int64_t>((t - k.t_measure) * k.sf[F_BSCALE])
    while bi >= k.nbatch:
        if k.sf[F_BSCALE] <= k.batch_scale:
            bi = k.nbatch - 1
            break
        merge_batches(k)
        bi = <int64_t>((t - k.t_measure) * k.sf[F_BSCALE])
    k.batches[bi if bi > 0 else 0] += e


# == retries, samples ==================================================================================
cdef void retry(Kern *k, double t) noexcept nogil:
    """The retrying connect on top of the heap sends its SYN again at t (the reference's
    `retry`)."""
    cdef int64_t x = heap_pop(k), s = k.pd_slot[x], b = k.pd_tgt[x], n = k.n, j, row, ip, p, d, m
    cdef int64_t meas = k.pd_flags[x] & 1, i, before = 0
    cdef bint busy = False
    cdef double end
    j = s % n
    row = s - j
    ip = s // (k.np_ * n)
    p = (row - ip * k.np_ * n) // n
    d = ip * n + j
    for m in range(n):
        if m != j and k.slot_end[row + m] > t and k.slot_tgt[row + m] == b:
            busy = True
    if k.sums and (not busy or k.pd_retry[x] + 1 >= k.syn_n):     # the row will change
        before = row_list(k, row, t)
    if not busy:
        end = t + k.pd_life[x]
        k.slot_end[s] = end
        k.slot_tgt[s] = <int32_t>b
        if k.tw_on:
            i = tw_take(k, (ip * k.np_ + p) * k.nb + b, (k.pd_flags[x] >> 1) != 0, end + k.tw_s, t)
            if meas:
                k.si[S_TWHITS] += i
        if k.alloc == 0:
            hl_sync(k, d, row, j, p, False)
        if k.sums:                         # it lives from now
            i = evq_log(&k.evq, t, est_code(3 * d, (k.dsum[d] - k.sbase) << 4 | ARR_LIVE, EV_ARR))
            est_live(k, i, ip, j, t, end)
            if before >= 2:
                row_changed(k, row, ip, t, before)
        if meas:
            k.si[S_EST] += 1
            k.si[S_DELAYED] += 1
            k.si[S_PENDING] -= 1
            k.dhist[k.pd_retry[x]] += 1
    else:
        i = k.pd_retry[x] + 1
        if i < k.syn_n:
            k.pd_retry[x] = i
            k.pd_at[x] = k.pd_t0[x] + k.xa[k.syn_off + i]
            heap_push(k, x)
            return
        k.slot_end[s] = t
        if k.alloc == 0:
            hl_sync(k, d, row, j, p, False)
        if k.sums:
            est_release_at(k, ip, j, t)
            if before >= 2:
                row_changed(k, row, ip, t, before)
        if meas:
            k.si[S_FAILED] += 1
            k.si[S_PENDING] -= 1
    k.pd_stack[k.si[S_PD_TOP]] = x
    k.si[S_PD_TOP] += 1


cdef int64_t take_samples(Kern *k, double t, bint counted) noexcept nogil:
    """The live counts at the sampling instants up to t. `counted`: the `full` estimate's running
    counts hold them (A[d], live holders through d: the slots live at the instant, where no
    retrying connect holds a slot without a target), so the counts are settled up to the instant
    and read instead of every slot (the same integers; a scan where a segment lacks room)."""
    cdef int64_t work = 0, c, d, x
    cdef double at
    while k.si[S_SAMPLE_I] <= PEAK_SAMPLES:
        at = k.t_measure + (k.t_end - k.t_measure) * k.si[S_SAMPLE_I] / PEAK_SAMPLES
        if at > t:
            break
        x = est_settle(k, at) if counted else -1
        if x >= 0:
            c = 0
            for d in range(k.k * k.n):
                c = k.est[3 * d] if k.est[3 * d] > c else c
            work += x + k.k * k.n
        else:
            c = scan_peak(k, at)
            work += k.k * k.np_
        if c > k.si[S_PEAK]:
            k.si[S_PEAK] = c
        k.si[S_SAMPLE_I] += 1
    return work


# == the kernel ========================================================================================
@cython.cdivision(True)
cdef int kernel(Kern *k, collide_pcg64 *gp, Mode mode, Est est, double t_stop,
                int64_t budget) noexcept nogil:
    """The reference's `advance` (with `arrival` inline): every event before t_stop in time
    order, or `budget` units of work; returns DONE, BUDGET_SPENT, FIRST_HIT or a GROW code.

    The generator, the parameters the hot path reads and the counters' increments are locals
    (written back at return): stores through the state's pointers would otherwise make the
    compiler reload them, and a generator whose address reached a call would live in memory."""
    cdef collide_pcg64 g = gp[0]
    cdef bitgen_t *bg = k.bitgen
    cdef int64_t n = k.n, P_ = k.np_, B_ = k.nb, K_ = k.k, work = 0, code = DONE
    cdef int64_t cap = k.cap, dist = k.dist, emp_n = k.emp_n, sched_n = k.sched_n
    cdef int64_t tw_cap = (k.tw_nb * 3) // 2, log_room = k.ev_logcap - k.ev_max, before = 0
    cdef int64_t arr = 0
    cdef bint limited = k.limited, cross = k.cross, collidable = k.collidable, counted = False
    cdef bint sums = k.sums, tw_on = k.tw_on, until_first = k.until_first
    cdef double rate = k.rate, mean = k.mean, mu = k.mu, sigma = k.sigma, xm = k.xm
    cdef double alpha = k.alpha, scf = k.scf, tw_s = k.tw_s
    cdef const double *xa = k.xa
    cdef double *slot_end = k.slot_end
    cdef int32_t *slot_tgt = k.slot_tgt
    cdef int64_t *si = k.si
    cdef int64_t *dest = k.dest
    cdef int64_t *pool = k.pool
    cdef double t, t_retry = INFINITY, life, given, u, e, end, t_next = k.sf[F_NEXT_ARR]
    cdef double t_measure = k.t_measure, t_end = k.t_end, next_sample
    cdef int64_t c_conn = 0, c_est = 0, c_afail = 0, c_failed = 0, c_coll = 0, c_pairs = 0
    cdef int64_t c_resets = 0, c_twhits = 0, c_pending = 0
    cdef int64_t first_seen = si[S_FIRST_SEEN], place_i = si[S_PLACE_I], place_n = si[S_PLACE_N]
    cdef int64_t i, client, ip, j, d, lo, hi, base, p, row, s, b, holders, m, x, q, h, tries
    cdef int64_t outcome, sec, key, top, skipped, cursor, pert, hit
    cdef bint measure, placing, stale, close
    next_sample = t_measure + (t_end - t_measure) * si[S_SAMPLE_I] / PEAK_SAMPLES \
        if si[S_SAMPLE_I] <= PEAK_SAMPLES else INFINITY
    if Est is est_full_t:
        if Mode is not general_t:
            sums = True                    # random ports, no reuse delay: known when compiling
        counted = sums and not k.delays
    while True:
        if work >= budget:
            code = BUDGET_SPENT
            break
        if Mode is general_t:
            if k.delays and si[S_PD_TOP] == 0:
                code = GROW_PEND
                break
        if Mode is not plain_t:
            if tw_on and si[S_TW_INS] >= tw_cap:
                code = GROW_TW
                break
        if Est is est_full_t:
            if sums and si[S_EV_FULL]:     # a window's segment needs room
                code = GROW_EV
                break
            if sums and si[S_EV_LOG] > log_room:   # the log is full: settle up to now
                x = est_settle(k, k.sf[F_NOW])
                if x < 0:
                    code = GROW_EV
                    break
                work += x
        placing = place_i < place_n
        if placing:                        # the stationary start, oldest first, at t = 0
            t = 0.0
            given = k.place_life[k.place_order[place_i]]
            place_i += 1
            measure = False
        else:
            if si[S_STARTED] == 0:
                si[S_STARTED] = 1
                t_next = next_arrival_after(k, 0.0, rng_exponential(&g, bg))
            t = t_next
            if Mode is general_t:
                t_retry = k.pd_at[k.heap[0]] if si[S_HEAP_N] > 0 else INFINITY
                if t_retry <= t:
                    t = t_retry
            if t >= t_stop:
                if next_sample <= t_stop:
                    work += take_samples(k, t_stop, counted)
                if k.sf[F_NOW] < t_stop:
                    k.sf[F_NOW] = t_stop
                code = DONE
                break
            if COLLIDE_UNLIKELY(next_sample <= t):
                work += take_samples(k, t, counted)
                next_sample = t_measure + (t_end - t_measure) * si[S_SAMPLE_I] / PEAK_SAMPLES \
                    if si[S_SAMPLE_I] <= PEAK_SAMPLES else INFINITY
            if Est is est_full_t:
                if sums:                   # the windows t has left are settled
                    x = ev_catch_up(k, t)
                    if COLLIDE_UNLIKELY(x < 0):     # (before anything of this event is done)
                        code = GROW_EV
                        break
                    work += x
            if Mode is general_t:
                if t_retry <= t_next:
                    retry(k, t)
                    work += 1
                    k.sf[F_NOW] = t
                    continue
            measure = t_measure <= t and t < t_end
            given = -1.0
        while True:                        # one pass; `break` ends the arrival early
            # ---- one arrival at t (the reference's `arrival`) ----
            work += 1
            c_conn += measure
            client = 0
            if Mode is not plain_t:
                if k.need_client:
                    client = rng_randint(&g, bg, k.clients)
            if Mode is not plain_t and k.ip_per_client:
                ip = client % K_
            else:
                ip = rng_randint(&g, bg, K_)
            if Mode is plain_t:
                j = rng_randint(&g, bg, n)
            else:
                stale = True
                if k.sticky:
                    stale = t >= k.cl_exp[client]
                if stale:
                    if k.weighted:
                        u = rng_uniform(&g, bg)
                        j = 0
                        while u >= k.wcum[j]:
                            j += 1
                    else:
                        j = rng_randint(&g, bg, n)
                    if k.sticky:
                        k.cl_node[client] = j
                        k.cl_exp[client] = t + k.dns_ttl
                else:
                    j = k.cl_node[client]
            d = ip * n + j
            if cross:
                lo = 0
                hi = B_
            else:
                lo = k.zs[j]
                hi = lo + k.zc[j]
            base = ip * P_ * n
            # 3. port: the per-destination limit, an upper bound recounted only when it could bind
            if limited and COLLIDE_UNLIKELY(dest[d * DW + D_UB] >= cap):
                scan_held(k, ip, t)
                work += P_
                if dest[d * DW + D_UB] >= cap:
                    c_afail += measure
                    break
            if Est is est_full_t:
                if sums:                   # the query, logged (and what the arrival does, below)
                    arr = evq_log(&k.evq, t, est_code(3 * d, (k.dsum[d] - k.sbase) << 4
                                                      | (ARR_QUERY if measure else 0), EV_ARR))
                elif measure:
                    add_to_batch(k, t, estimate_full(k, ip, j, d, t, lo, hi))
            if Mode is general_t:
                if k.alloc == 0 or k.alloc == 3:
                    q = d if k.alloc == 0 else ip
                    p = allocate_pooled(k, &g, q, ip, j, k.alloc == 3, t, &work)
                elif k.alloc == 1:
                    cursor = dest[d * DW + D_CURSOR]
                    if cursor < 0:
                        cursor = rng_randint(&g, bg, P_)
                    p = scan_sequential(k, base, j, t, cursor)
                    if p >= 0:
                        dest[d * DW + D_CURSOR] = p + 1 if p + 1 < P_ else 0
                    else:
                        dest[d * DW + D_CURSOR] = cursor
                else:
                    x = <int64_t>floor(t / LINUX_EPOCH_S)
                    if x != dest[d * DW + D_LIN_EPOCH]:
                        dest[d * DW + D_LIN_EPOCH] = x
                        dest[d * DW + D_LIN_OFF] = rng_randint(&g, bg, P_)
                    pert = dest[d * DW + D_LIN_PERT]
                    p = scan_linux(k, base, j, t, (pert + dest[d * DW + D_LIN_OFF]) % P_, &skipped)
                    if p >= 0:
                        x = rng_randint(&g, bg, 8)
                        dest[d * DW + D_LIN_PERT] = (pert + 2 * (skipped if skipped > x else x) + 2) \
                            % P_
            else:
                # random: rejection over the destination's ports (or its horizon list), inline
                h = d * HW
                if pool[h + H_MODE] == 0:
                    if COLLIDE_UNLIKELY(pool[h + H_MISS] > P_):
                        work += hl_check(k, d, ip, j, False, t)
                elif t > k.pool_th[d]:
                    work += hl_check(k, d, ip, j, False, t)
                p = -1
                tries = 0
                if pool[h + H_MODE] == 0:
                    while tries < KMAX:
                        q = rng_randint(&g, bg, P_)
                        tries += 1
                        if slot_end[base + q * n + j] <= t:
                            p = q
                            break
                    if COLLIDE_UNLIKELY(tries > 1):
                        pool[h + H_MISS] += tries - 1
                else:
                    x = pool[h + H_LEN]
                    while tries < KMAX and x > 0:
                        q = k.hl_list[d * P_ + rng_randint(&g, bg, x)]
                        tries += 1
                        if slot_end[base + q * n + j] <= t:
                            p = q
                            break
                work += tries
                if COLLIDE_UNLIKELY(p < 0 and tries == KMAX):
                    work += P_
                    x = scan_count_free(k, False, ip, j, t)
                    if x > 0:
                        p = scan_nth_free(k, False, ip, j, t, rng_randint(&g, bg, x))
            if p < 0:
                c_afail += measure
                break
            row = base + p * n
            s = row + j
            dest[d * DW + D_UB] += 1
            if Est is est_full_t:
                if sums:                   # the port is taken
                    k.ev_log[2 * arr + 1] += ARR_TAKE << 3
            if Est is est_target_t:
                if measure and collidable:
                    # distinct_live, inline (the arrival's own slot is free: its end <= t)
                    x = 0
                    for m in range(n):
                        if slot_end[row + m] > t:
                            q = slot_tgt[row + m]
                            if q >= lo and q < hi:
                                x += 1
                                for i in range(m):
                                    if slot_end[row + i] > t and slot_tgt[row + i] == q:
                                        x -= 1
                                        break
                    if x:                       # adding 0.0 changes no batch
                        add_to_batch(k, t, <double>x / <double>(hi - lo))
            # 4. target
            b = lo + rng_randint(&g, bg, hi - lo)
            # 5. at the target: who holds (ip, p, b) through the other nodes
            holders = 0
            if Mode is general_t and not k.cip:
                key = (j * B_ + b) % k.ntl_size
                if k.ntl[key] >= k.node_limit:
                    scan_node_targets(k, t)
                    work += K_ * P_
                    if k.ntl[key] >= k.node_limit and scan_pair(k, j, b, t) >= k.node_limit:
                        c_afail += measure
                        break
            elif Est is est_full_t and Mode is not general_t:
                before = 0                 # no reuse delay: the row's taken slots are its live ones
                for m in range(n):
                    x = slot_end[row + m] > t
                    holders += x & (slot_tgt[row + m] == b)
                    before += x
            else:                          # (the arrival's own slot is free: its end <= t)
                for m in range(n):
                    holders += (slot_end[row + m] > t) & (slot_tgt[row + m] == b)
            if Est is est_full_t:
                if Mode is general_t and sums:     # the row's taken slots before it changes
                    before = 0
                    for m in range(n):
                        before += slot_end[row + m] + k.reuse > t
                if sums and COLLIDE_UNLIKELY(before > 0):
                    row_list(k, row, t)
            # 6. lifetime and who closes first
            if given < 0.0:
                life = rng_lifetime(&g, bg, dist, mean, mu, sigma, xm, alpha, xa, emp_n)
            else:
                life = given
            close = False
            if Mode is not plain_t:
                if scf >= 1.0:
                    close = True
                elif scf > 0.0:
                    close = rng_uniform(&g, bg) < scf
            key = (ip * P_ + p) * B_ + b
            if COLLIDE_UNLIKELY(holders > 0):
                if measure:
                    c_coll += 1
                    c_pairs += holders
                    if first_seen == 0:
                        first_seen = 1
                        k.sf[F_FIRST] = t - t_measure
                outcome = k.outcome
                if Mode is general_t:
                    if outcome <= 2 and k.ca_limit > 0 and not placing:
                        sec = <int64_t>floor(t)
                        if sec != si[S_CA_SEC]:
                            si[S_CA_SEC] = sec
                            si[S_CA_USED] = 0
                        if si[S_CA_USED] < k.ca_limit:
                            si[S_CA_USED] += 1
                        else:
                            outcome = 3
                if outcome == 1:               # fail-new: the new SYN gets nowhere
                    c_failed += measure
                    slot_end[s] = t
                    slot_tgt[s] = -1
                    if Est is est_full_t:
                        if sums:
                            est_release_at(k, ip, j, t)
                            if before >= 1:
                                row_changed(k, row, ip, t, before)
                    if k.alloc == 0:
                        hl_sync(k, d, row, j, p, False)
                    break
                if outcome == 0 or outcome == 4:   # reset-existing / pre-3.6: the older one(s) die
                    for m in range(n):
                        if m != j and slot_end[row + m] > t and slot_tgt[row + m] == b:
                            end = slot_end[row + m]
                            slot_end[row + m] = t
                            c_resets += measure
                            if Est is est_full_t:
                                if sums:
                                    est_reset(k, ip, m, t, end)
                            if k.alloc == 0:
                                hl_sync(k, ip * n + m, row, m, p, False)
                    if Mode is general_t:
                        if tw_on and outcome == 4:
                            x = tw_find(k.tw, k.tw_nb, key, t)
                            if x >= 0:
                                k.tw[x + 1] = -INFINITY
                if Mode is general_t:
                    if outcome >= 3:           # the new connection retries on the SYN schedule
                        slot_end[s] = INFINITY
                        slot_tgt[s] = -1
                        if k.alloc == 0:
                            hl_sync(k, d, row, j, p, False)
                        c_pending += measure
                        top = si[S_PD_TOP] - 1
                        si[S_PD_TOP] = top
                        x = k.pd_stack[top]
                        si[S_PD_SERIAL] += 1
                        k.pd_slot[x] = s
                        k.pd_tgt[x] = b
                        k.pd_retry[x] = 0
                        k.pd_flags[x] = (1 if measure else 0) + 2 * close
                        k.pd_serial[x] = si[S_PD_SERIAL]
                        k.pd_t0[x] = t
                        k.pd_life[x] = life
                        k.pd_at[x] = t + xa[k.syn_off]
                        heap_push(k, x)
                        if Est is est_full_t:
                            if sums and before >= 1:
                                row_changed(k, row, ip, t, before)
                        break
            # the new connection lives; it takes the 4-tuple's TIME_WAIT record
            end = t + life
            slot_end[s] = end
            slot_tgt[s] = <int32_t>b
            if Mode is not plain_t:
                if tw_on:
                    hit = tw_take(k, key, close, end + tw_s, t)
                    if measure and holders == 0:
                        c_twhits += hit
            c_est += measure
            if k.alloc == 0:
                if pool[d * HW + H_MODE] == 1:
                    hl_sync(k, d, row, j, p, False)
            elif Mode is general_t:
                if k.alloc == 3:
                    hl_sync(k, ip, row, j, p, True)
            if Mode is general_t:
                if not k.cip:
                    k.ntl[(j * B_ + b) % k.ntl_size] += 1
            if Est is est_full_t:
                if sums:
                    k.ev_log[2 * arr + 1] += ARR_LIVE << 3
                    est_live(k, arr, ip, j, t, end)
                    if COLLIDE_UNLIKELY(before >= 1):
                        if Mode is not general_t and before == 1 and holders == 0 \
                                and k.zones == 1 and end > t:
                            row_joined(k, row, ip, j, t, end)
                        else:
                            row_changed(k, row, ip, t, before)
            break
        if not placing:
            e = rng_exponential(&g, bg)
            if sched_n == 0:
                t_next = t + e / rate
            else:
                t_next = next_arrival_after(k, t, e)
            k.sf[F_NOW] = t
            if until_first and first_seen:
                code = FIRST_HIT
                break
    gp[0] = g
    k.sf[F_NEXT_ARR] = t_next
    si[S_PLACE_I] = place_i
    si[S_FIRST_SEEN] = first_seen
    si[S_CONN] += c_conn
    si[S_EST] += c_est
    si[S_AFAIL] += c_afail
    si[S_FAILED] += c_failed
    si[S_COLL] += c_coll
    si[S_PAIRS] += c_pairs
    si[S_RESETS] += c_resets
    si[S_TWHITS] += c_twhits
    si[S_PENDING] += c_pending
    return code


# == the Python face ====================================================================================
@cython.final
cdef class Engine:
    """One run's kernels on the state arrays of `state.new_state` (`bind` them again after
    `state.grow` replaced some)."""
    cdef Kern k
    cdef collide_pcg64 pcg
    cdef bint inline_rng
    cdef object bit_generator
    cdef object keep            # the bound arrays, kept alive
    cdef object pend            # the arrivals' ends noted beside the log (Kern.ev_pend)
    cdef object params
    cdef int mode               # 0 plain, 1 extras, 2 general
    cdef int est

    def __init__(self, pi, pf, zs, zc, wcum, xa, bit_generator):
        if type(bit_generator) is not np.random.PCG64:
            raise ValueError("--backend cython: needs a PCG64 bit generator "
                             f"(got {type(bit_generator).__name__})")
        self.bit_generator = bit_generator
        self.k.bitgen = <bitgen_t *>PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
        self.inline_rng = COLLIDE_PCG_INLINE != 0
        xa = xa if xa.size else np.zeros(1, np.float64)
        # the full estimate's per-destination places: S of (ip, zone of j), and an end's code
        kn, zones = int(pi[K] * pi[N]), int(pi[ZONES])
        dd = np.arange(kn, dtype=np.int64)
        srel = 2 * ((dd // pi[N]) * zones + (dd % pi[N]) % zones)
        self.params = (np.ascontiguousarray(zs, np.int64), np.ascontiguousarray(zc, np.int64),
                       np.ascontiguousarray(wcum, np.float64), np.ascontiguousarray(xa, np.float64),
                       3 * kn + srel, ((3 * dd) << 26) | (srel << 3) | EV_END)
        cdef int64_t[::1] zs_v = self.params[0], zc_v = self.params[1]
        cdef double[::1] w_v = self.params[2], xa_v = self.params[3]
        cdef int64_t[::1] ds_v = self.params[4], de_v = self.params[5]
        self.k.zs, self.k.zc, self.k.wcum, self.k.xa = &zs_v[0], &zc_v[0], &w_v[0], &xa_v[0]
        self.k.dsum, self.k.dend = &ds_v[0], &de_v[0]
        k = &self.k
        k.k, k.n, k.nb, k.np_, k.cap = pi[K], pi[N], pi[B], pi[P], pi[CAP]
        k.clients, k.alloc, k.dist, k.outcome = pi[CLIENTS], pi[ALLOC], pi[DIST], pi[OUTCOME]
        k.nbatch, k.node_limit, k.emp_n, k.sched_n = pi[NBATCH], pi[NODE_LIMIT], pi[EMP_N], \
            pi[SCHED_N]
        k.syn_n, k.syn_off, k.ca_limit = pi[SYN_N], 2 * pi[EMP_N] + 2 * pi[SCHED_N], pi[CA_LIMIT]
        k.ntl_size, k.ev_nsub = pi[NTL_SIZE], pi[EV_NSUB]
        k.zones, k.sbase = pi[ZONES], 3 * pi[K] * pi[N]
        k.ev_max = T.events_max(pi[N])
        k.limited, k.ip_per_client, k.sticky = pi[LIMITED] != 0, pi[IP_PER_CLIENT] != 0, \
            pi[STICKY] != 0
        k.need_client, k.cross, k.cip, k.weighted = pi[NEED_CLIENT] != 0, pi[CROSS] != 0, \
            pi[CIP] != 0, pi[WEIGHTED] != 0
        k.sums, k.tw_on, k.delays = pi[SUMS] != 0, pi[TW_ON] != 0, pi[DELAYS] != 0
        k.collidable, k.until_first = pi[COLLIDABLE] != 0, pi[UNTIL_FIRST] != 0
        k.rate, k.mean, k.mu, k.sigma = pf[RATE], pf[MEAN], pf[MU], pf[SIGMA]
        k.xm, k.alpha, k.dns_ttl, k.tw_s = pf[XM], pf[ALPHA], pf[DNS_TTL], pf[TW]
        k.scf, k.reuse, k.t_measure, k.t_end = pf[SCF], pf[REUSE], pf[T_MEASURE], pf[T_END]
        k.batch_scale, k.ev_cinv = pf[BATCH_SCALE], pf[EV_CINV]
        plainish = k.alloc == 0 and k.cip and not pi[REUSE_ON] and not k.delays
        # the plain copy draws no server-close flag: it serves only runs where that flag is never
        # drawn (server_close_fraction 0) and never read (no TIME_WAIT)
        if plainish and not (k.tw_on or k.need_client or k.weighted or k.scf > 0.0):
            self.mode = 0
        elif plainish:
            self.mode = 1
        else:
            self.mode = 2
        self.est = pi[EST]

    def bind(self, S):
        """Attach the state arrays (the tuple `state.as_tuple`)."""
        cdef int64_t[::1] si, dest, pool, cl_node, ntl, pd_slot, pd_tgt, pd_retry, pd_flags
        cdef int64_t[::1] pd_serial, pd_stack, heap, est, est_i, ev_n, ev_cnt
        cdef int64_t[::1] dhist, place_order
        cdef double[::1] sf, slot_end, pool_th, cl_exp, tw, pd_t0, pd_life, pd_at, batches
        cdef double[::1] place_life, est_f, ev_q, ev_log, ev_sort
        cdef int32_t[::1] slot_tgt, hl_list, hl_pos
        (si, sf, slot_end, slot_tgt, dest, pool, pool_th, hl_list, hl_pos, cl_node, cl_exp, ntl,
         tw, pd_slot, pd_tgt, pd_retry, pd_flags, pd_serial, pd_t0, pd_life, pd_at, pd_stack,
         heap, est, est_f, est_i, ev_q, ev_n, ev_log, ev_sort, ev_cnt, batches, dhist,
         place_life, place_order) = S
        self.keep = S
        k = &self.k
        k.si, k.sf, k.slot_end, k.slot_tgt = &si[0], &sf[0], &slot_end[0], &slot_tgt[0]
        k.dest, k.pool, k.pool_th, k.hl_list, k.hl_pos = &dest[0], &pool[0], &pool_th[0], \
            &hl_list[0], &hl_pos[0]
        k.cl_node, k.cl_exp, k.ntl, k.tw = &cl_node[0], &cl_exp[0], &ntl[0], &tw[0]
        k.tw_nb = tw.shape[0] // TWB
        k.pd_slot, k.pd_tgt, k.pd_retry, k.pd_flags = &pd_slot[0], &pd_tgt[0], &pd_retry[0], \
            &pd_flags[0]
        k.pd_serial, k.pd_t0, k.pd_life, k.pd_at = &pd_serial[0], &pd_t0[0], &pd_life[0], &pd_at[0]
        k.pd_stack, k.heap = &pd_stack[0], &heap[0]
        k.est, k.est_f, k.est_i = &est[0], &est_f[0], &est_i[0]
        k.ev_q, k.ev_n, k.ev_log, k.ev_sort, k.ev_cnt = &ev_q[0], &ev_n[0], &ev_log[0], \
            &ev_sort[0], &ev_cnt[0]
        k.ev_cap = ev_q.shape[0] // (2 * EV_NC)
        k.ev_logcap = ev_log.shape[0] // 2
        if self.pend is None or self.pend.shape[0] < k.ev_logcap:
            pend = np.zeros(k.ev_logcap, np.float64)
            if self.pend is not None:
                pend[:self.pend.shape[0]] = self.pend
            self.pend = pend
        cdef double[::1] pend_v = self.pend
        k.ev_pend = &pend_v[0]
        k.evq.q, k.evq.n, k.evq.cap, k.evq.lim = k.ev_q, k.ev_n, k.ev_cap, k.ev_cap - k.ev_max
        k.evq.log, k.evq.si, k.evq.cinv = k.ev_log, k.si, k.ev_cinv
        k.batches, k.dhist, k.place_life, k.place_order = &batches[0], &dhist[0], &place_life[0], \
            &place_order[0]

    cdef void load_rng(self):
        if not self.inline_rng:
            return
        st = self.bit_generator.state["state"]
        collide_pcg64_set(&self.pcg, st["state"] >> 64, st["state"] & M64, st["inc"] >> 64,
                          st["inc"] & M64)

    cdef void store_rng(self):
        if not self.inline_rng:
            return
        full = self.bit_generator.state
        full["state"]["state"] = (int(collide_pcg64_word(&self.pcg, 0)) << 64) | \
            int(collide_pcg64_word(&self.pcg, 1))
        self.bit_generator.state = full

    def stationary_count(self, double[::1] acc, int64_t budget):
        """The reference's `stationary_count`: 1 when the Poisson count is final."""
        cdef int64_t n = <int64_t>acc[0], i
        cdef double s = acc[1], mean_live = self.k.rate * self.k.mean
        cdef int done = 0
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                for i in range(budget):
                    if n == 0 and s == 0.0:
                        s = rng_exponential(&self.pcg, self.k.bitgen)
                    if s >= mean_live:
                        done = 1
                        break
                    n += 1
                    s += rng_exponential(&self.pcg, self.k.bitgen)
            self.store_rng()
        acc[0] = <double>n
        acc[1] = s
        return done

    def stationary_fill(self, double[::1] life, double[::1] age, int64_t i0, int64_t i1):
        cdef int64_t i
        cdef double big, u
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                for i in range(i0, i1):
                    big = draw_biased_lifetime(&self.k, &self.pcg)
                    u = rng_uniform(&self.pcg, self.k.bitgen)
                    life[i] = u * big
                    age[i] = big - u * big
            self.store_rng()

    def settle(self, double t):
        """The reference's `est_settle` on the bound state: the `full` estimate up to t; -1,
        changing nothing, if a window's segment needs room first (`state.grow`, GROW_EV)."""
        cdef int64_t work
        with nogil:
            work = est_settle(&self.k, t)
        return work

    def advance(self, double t_stop, int64_t budget):
        """The reference's `advance` on the bound state: a code of `state` (DONE, ...)."""
        cdef int code
        with self.bit_generator.lock:
            self.load_rng()
            with nogil:
                code = self._dispatch(t_stop, budget)
            self.store_rng()
        return code

    cdef int _dispatch(self, double t_stop, int64_t budget) noexcept nogil:
        cdef int mode = 2 if _force_general else self.mode
        if mode == 0:
            if self.est == 0:
                return kernel(&self.k, &self.pcg, <plain_t>0, <est_off_t>0, t_stop, budget)
            if self.est == 1:
                return kernel(&self.k, &self.pcg, <plain_t>0, <est_target_t>0, t_stop, budget)
            return kernel(&self.k, &self.pcg, <plain_t>0, <est_full_t>0, t_stop, budget)
        if mode == 1:
            if self.est == 0:
                return kernel(&self.k, &self.pcg, <extras_t>0, <est_off_t>0, t_stop, budget)
            if self.est == 1:
                return kernel(&self.k, &self.pcg, <extras_t>0, <est_target_t>0, t_stop, budget)
            return kernel(&self.k, &self.pcg, <extras_t>0, <est_full_t>0, t_stop, budget)
        if self.est == 0:
            return kernel(&self.k, &self.pcg, <general_t>0, <est_off_t>0, t_stop, budget)
        if self.est == 1:
            return kernel(&self.k, &self.pcg, <general_t>0, <est_target_t>0, t_stop, budget)
        return kernel(&self.k, &self.pcg, <general_t>0, <est_full_t>0, t_stop, budget)

    @property
    def mode(self):
        """0: plain, 1: extras, 2: general (the kernel's specialisation)."""
        return self.mode
