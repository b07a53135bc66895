/* Plain-C kernels of the bench's scenarios: the speed each figure of `pytest bench/` is a ratio to.
 *
 * Each does just the work the model needs, the way collide's engine does it (docs/engine.md):
 * lazy slots (end time and target per (NAT ip, port, node); live iff end > t, no end events), the
 * same kinds of draws (PCG64 words, Lemire on w >> 32 with its rejection step, -log exponentials,
 * Box-Muller normals from an exponential and a uniform), the per-destination limit by an upper
 * bound recounted when it could bind, reset-existing, exact TIME_WAIT from each 4-tuple's latest
 * holder (a lazily expiring hash), a horizon list near exhaustion. No progress, no peak sampling,
 * no estimate, no Python: what is left is the floor an engine of this algorithm stands on.
 *
 *     cc -O2 -ffp-contract=off -o kernels bench/kernels.c -lm
 *     ./kernels base|base_target|base_full|base_full_ladder|lognormal|everything|exhaustion [ARRIVALS=20000000] [SEED=1]
 *
 * base_target and base_full add the two estimates to base (the full one as the engine kept it until
 * issue 24: per-slot flags, per-destination sums and a ring of end events; the engine now keeps
 * counts late, docs/engine.md); base_full_ladder keeps the same sums with a two-level queue and lazy
 * deletion (the same estimate to the last bit, faster).
 *
 * One JSON line: connections, collisions, time_wait_hits, allocation_failures, wall, rate. The warm-up
 * (ten mean lifetimes from empty) is simulated and not timed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define P 64512                  /* ports 1024-65535 */
#define KMAX 128
#define HOT static inline __attribute__((always_inline))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef unsigned __int128 u128;
typedef struct { u128 state, inc; } pcg_t;

HOT uint64_t word(pcg_t *g) {
    const u128 mult = ((u128)0x2360ED051FC65DA4ULL << 64) | 0x4385DF649FCCF645ULL;
    g->state = g->state * mult + g->inc;
    uint64_t hi = (uint64_t)(g->state >> 64), x = hi ^ (uint64_t)g->state;
    unsigned rot = (unsigned)(hi >> 58);
    return (x >> rot) | (x << ((-rot) & 63u));
}
HOT int64_t randint(pcg_t *g, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t m = (word(g) >> 32) * n;
    if (UNLIKELY((m & 0xFFFFFFFFULL) < n)) {
        uint64_t th = (0x100000000ULL - n) % n;
        while ((m & 0xFFFFFFFFULL) < th) m = (word(g) >> 32) * n;
    }
    return (int64_t)(m >> 32);
}
HOT double uniform(pcg_t *g) { return (double)(word(g) >> 11) * 0x1.0p-53; }
HOT double expo(pcg_t *g) { return -log((double)((word(g) >> 11) + 1) * 0x1.0p-53); }
HOT double normal(pcg_t *g) {
    double e = expo(g), u = uniform(g);
    return sqrt(2.0 * e) * cos(6.283185307179586 * u);
}

static void *table(size_t bytes) {              /* 2 MiB aligned, transparent huge pages */
    size_t al = 2u << 20, sz = (bytes + al - 1) / al * al;
    void *m = aligned_alloc(al, sz);
    if (!m) { fprintf(stderr, "out of memory\n"); exit(1); }
    madvise(m, sz, MADV_HUGEPAGE);
    return m;
}

typedef struct {
    int K, N, B, law, tw_on, sticky, listed; double lam, mean, mu, sigma, tw, cum[3];
    double t; pcg_t g;
    double *end; int32_t *tgt;                   /* slots (ip * P + port) * N + node */
    int64_t ub[64], cap;                         /* per-destination bound, limit */
    int64_t conn, coll, twh, fail;
    int32_t *cl_node; double *cl_exp;            /* sticky clients */
    double *tw_tab; uint64_t tw_mask;            /* TIME_WAIT: buckets of 3 (key, expiry) + overflow */
    int32_t *hl, *hpos; int64_t hn; double th; int64_t miss; int mode;   /* horizon list (N = 1) */
    int est; double est_acc;                     /* 0 off, 1 target, 2 full; the estimate's sum */
    uint8_t *fl; int64_t esum[64], efree[64];    /* full: per-slot flags, per-destination sums */
    double *evb; int64_t evm, evcur; double evinv; /* full: ring of buckets of 4 (time, code) */
    double *ovt; int64_t *ovc, *ovn, *ovh, ovfree; /* full: overflow chains */
} sim_t;

/* ---- TIME_WAIT records, keyed by the 4-tuple (ip, port, target) -------------------------------- */
HOT uint64_t tw_home(uint64_t key, uint64_t mask) { return ((key % 2147483647u) * 48271u % 2147483647u) & mask; }
static double *tw_find(sim_t *s, uint64_t key, double t) {
    uint64_t q = tw_home(key, s->tw_mask);
    for (;;) {
        double *b = s->tw_tab + q * 8;
        for (int i = 0; i < 3; i++) if (b[2 * i] == (double)key && b[2 * i + 1] > t) return b + 2 * i;
        if (!(b[6] > t)) return 0;
        q = (q + 1) & s->tw_mask;
    }
}
static void tw_put(sim_t *s, uint64_t key, double ex, double t) {
    uint64_t q0 = tw_home(key, s->tw_mask), q = q0, d = 0;
    for (;; d++, q = (q + 1) & s->tw_mask) {
        double *b = s->tw_tab + q * 8;
        for (int i = 0; i < 3; i++) if (!(b[2 * i + 1] > t)) {
            b[2 * i] = (double)key; b[2 * i + 1] = ex;
            for (uint64_t k = 0; k < d; k++) { double *o = s->tw_tab + ((q0 + k) & s->tw_mask) * 8 + 6; if (*o < ex) *o = ex; }
            return;
        }
    }
}

/* ---- the horizon list of the exhaustion kernel (one destination) -------------------------------- */
static void hl_check(sim_t *s, double t) {
    int64_t f0 = 0;
    for (int64_t p = 0; p < P; p++) f0 += s->end[p] <= t;
    s->miss = 0;
    if (4 * f0 > P) { if (s->mode) for (int64_t p = 0; p < P; p++) s->hpos[p] = -1; s->mode = 0; return; }
    s->th = t + sqrt((double)f0 * P) * s->mean / (double)(P - f0 + 1);
    s->hn = 0;
    for (int64_t p = 0; p < P; p++) {
        int in = s->end[p] <= s->th;
        s->hl[s->hn] = (int32_t)p; s->hpos[p] = in ? (int32_t)s->hn : -1; s->hn += in;
    }
    s->mode = 1;
}
HOT void hl_sync(sim_t *s, int64_t p) {
    int in = s->hpos[p] >= 0, should = s->end[p] <= s->th;
    if (in && !should) { int32_t i = s->hpos[p], last = s->hl[--s->hn]; s->hl[i] = last; s->hpos[last] = i; s->hpos[p] = -1; }
    else if (should && !in) { s->hl[s->hn] = (int32_t)p; s->hpos[p] = (int32_t)s->hn++; }
}

/* ---- the `full` estimate (random ports, cross-zone on, no reuse delay): for each destination d,
 * the sum over its free ports of the distinct targets other nodes hold live there, kept exact by
 * applying each holder's end as an event from a ring of buckets (width 2/λ), as docs/engine.md says */
enum { FL_LIVE = 1, FL_TAKEN = 2 };
HOT int64_t distinct(const sim_t *s, int64_t row, int skip1, int skip2, int b_only) {
    int64_t c = 0;
    for (int m = 0; m < s->N; m++) {
        if (m == skip1 || m == skip2 || !(s->fl[row + m] & FL_LIVE)) continue;
        int b = s->tgt[row + m];
        if (b_only >= 0) { if (b == b_only) return 1; continue; }
        int seen = 0;
        for (int x = 0; x < m; x++) seen |= x != skip1 && x != skip2 && (s->fl[row + x] & FL_LIVE) && s->tgt[row + x] == b;
        c += !seen;
    }
    return c;
}
HOT void take(sim_t *s, int64_t row, int j, int d) { s->fl[row + j] |= FL_TAKEN; s->efree[d]--; s->esum[d] -= distinct(s, row, j, -1, -1); }
HOT void release(sim_t *s, int64_t row, int j, int d) { s->fl[row + j] &= ~FL_TAKEN; s->efree[d]++; s->esum[d] += distinct(s, row, j, -1, -1); }
HOT void holder(sim_t *s, int64_t row, int j0, int d0, int delta) {
    int b = s->tgt[row + j0];
    if (delta < 0) s->fl[row + j0] &= ~FL_LIVE;
    for (int m = 0; m < s->N; m++) {
        if (m == j0 || (s->fl[row + m] & FL_TAKEN)) continue;
        if (distinct(s, row, m, j0, b) == 0) s->esum[d0 - j0 + m] += delta;
    }
    if (delta > 0) s->fl[row + j0] |= FL_LIVE;
}
HOT int64_t bucket(const sim_t *s, double x) { return (int64_t)(x * s->evinv) & (s->evm - 1); }
static void ev_push(sim_t *s, double x, int64_t code) {
    double *b = s->evb + bucket(s, x) * 8;
    for (int i = 0; i < 4; i++) if (b[2 * i] == INFINITY) { b[2 * i] = x; b[2 * i + 1] = (double)code; return; }
    int64_t e = s->ovfree, q = bucket(s, x);
    if (e < 0) { fprintf(stderr, "overflow pool full\n"); exit(1); }
    s->ovfree = s->ovn[e]; s->ovt[e] = x; s->ovc[e] = code; s->ovn[e] = s->ovh[q]; s->ovh[q] = e;
}
static void ev_remove(sim_t *s, double x, int64_t code) {
    int64_t q = bucket(s, x), prev = -1;
    double *b = s->evb + q * 8;
    for (int i = 0; i < 4; i++) if (b[2 * i] == x && b[2 * i + 1] == (double)code) { b[2 * i] = INFINITY; return; }
    for (int64_t e = s->ovh[q]; e >= 0; prev = e, e = s->ovn[e])
        if (s->ovt[e] == x && s->ovc[e] == code) {
            if (prev < 0) s->ovh[q] = s->ovn[e]; else s->ovn[prev] = s->ovn[e];
            s->ovn[e] = s->ovfree; s->ovfree = e; return;
        }
}
static int lazydel;
HOT void ev_apply(sim_t *s, int64_t code, double x) {      /* a holder's end: code = (ip * P + p) * N + j */
    if (lazydel && s->end[code] != x) return;
    int j = (int)(code % s->N); int64_t row = code - j; int d = (int)(row / ((int64_t)P * s->N)) * s->N + j;
    holder(s, row, j, d, -1); release(s, row, j, d);
}
static void ev_drain(sim_t *s, double t) {
    int64_t qt = (int64_t)(t * s->evinv), cur = s->evcur;
    if (cur < qt - s->evm) cur = qt - s->evm;
    for (;; cur++) {
        int64_t q = cur & (s->evm - 1);
        double *b = s->evb + q * 8;
        for (int i = 0; i < 4; i++) if (b[2 * i] <= t) { double x = b[2 * i]; b[2 * i] = INFINITY; ev_apply(s, (int64_t)b[2 * i + 1], x); }
        for (int64_t e = s->ovh[q], prev = -1, nx; e >= 0; e = nx) {
            nx = s->ovn[e];
            if (s->ovt[e] <= t) {
                if (prev < 0) s->ovh[q] = nx; else s->ovn[prev] = nx;
                s->ovn[e] = s->ovfree; s->ovfree = e; ev_apply(s, s->ovc[e], s->ovt[e]);
            } else prev = e;
        }
        if (cur >= qt) break;
    }
    s->evcur = cur;
}

/* ---- base_full_ladder: the same sums through a two-level queue. Near ends (due within two coarse
 * widths) go to a small fine ring of 4,096 buckets (L2-resident); later ones are appended to one of
 * 64 coarse buckets (sequential writes) and moved into the fine ring when their coarse bucket comes
 * due. Deletion is lazy: an end applies only if its slot still ends at that instant (a reset victim's
 * queued end is left to be skipped). Same sums, same estimate, fewer cache misses per push. */
static double *cq[64]; static int64_t cn[64], ccap[64], cc; static double wc;
HOT void lq_push(sim_t *s, double x, int64_t code) {
    int64_t c = (int64_t)(x / wc);
    if (c <= cc + 1) { ev_push(s, x, code); return; }
    int64_t q = c & 63;
    if (UNLIKELY(cn[q] == ccap[q])) { ccap[q] = ccap[q] ? 2 * ccap[q] : 4096; cq[q] = realloc(cq[q], ccap[q] * 16); }
    cq[q][2 * cn[q]] = x; cq[q][2 * cn[q] + 1] = (double)code; cn[q]++;
}
static void lq_drain(sim_t *s, double t) {
    int64_t ct = (int64_t)(t / wc);
    while (cc < ct) {
        cc++;
        int64_t q = (cc + 1) & 63, k = 0;
        for (int64_t i = 0; i < cn[q]; i++) {
            double x = cq[q][2 * i];
            if ((int64_t)(x / wc) <= cc + 1) ev_push(s, x, (int64_t)cq[q][2 * i + 1]);
            else { cq[q][2 * k] = x; cq[q][2 * k + 1] = cq[q][2 * i + 1]; k++; }
        }
        cn[q] = k;
    }
    ev_drain(s, t);
}

static void run(sim_t *s, int64_t arrivals, int measure) {
    pcg_t g = s->g; double t = s->t; const int N = s->N, K = s->K;
    double *end = s->end; int32_t *tgt = s->tgt;
    for (int64_t a = 0; a < arrivals; a++) {
        t += expo(&g) / s->lam;
        int client = s->sticky ? (int)randint(&g, 1000) : 0;
        int ip = (int)randint(&g, K), j;
        if (s->sticky && t < s->cl_exp[client]) j = s->cl_node[client];
        else {
            if (s->cum[0] > 0) { double u = uniform(&g); j = (u >= s->cum[0]) + (u >= s->cum[1]); }
            else j = (int)randint(&g, N);
            if (s->sticky) { s->cl_node[client] = j; s->cl_exp[client] = t + 60.0; }
        }
        int d = ip * N + j;
        int64_t base = (int64_t)ip * P * N;
        s->conn += measure;
        if (s->est == 2) {
            if (lazydel) lq_drain(s, t); else ev_drain(s, t);
            if (measure && s->efree[d]) s->est_acc += (double)s->esum[d] / ((double)s->efree[d] * s->B);
        }
        if (s->cap < P && UNLIKELY(s->ub[d] >= s->cap)) {   /* recount the ip's destinations */
            for (int m = 0; m < N; m++) s->ub[ip * N + m] = 0;
            for (int64_t p = 0; p < P; p++) for (int m = 0; m < N; m++) s->ub[ip * N + m] += end[base + p * N + m] > t;
            if (s->ub[d] >= s->cap) { s->fail += measure; goto next; }
        }
        int64_t p = -1, tries = 0;
        if (s->listed) {
            if (s->mode == 0 ? UNLIKELY(s->miss > P) : t > s->th) hl_check(s, t);
        }
        if (s->listed && s->mode) {
            while (tries < KMAX && s->hn > 0) { int64_t q = s->hl[randint(&g, s->hn)]; tries++; if (end[q] <= t) { p = q; break; } }
        } else {
            while (tries < KMAX) { int64_t q = randint(&g, P); tries++; if (end[base + q * N + j] <= t) { p = q; break; } }
            if (s->listed && tries > 1) s->miss += tries - 1;
        }
        if (UNLIKELY(p < 0 && tries == KMAX)) {  /* count, then take one by rank */
            int64_t nf = 0;
            for (int64_t q = 0; q < P; q++) nf += end[base + q * N + j] <= t;
            if (nf) { int64_t r = randint(&g, nf); for (int64_t q = 0;; q++) if (end[base + q * N + j] <= t && r-- == 0) { p = q; break; } }
        }
        if (p < 0) { s->fail += measure; goto next; }
        if (s->cap < P) s->ub[d]++;             /* a limit of P ports cannot bind */
        int64_t row = base + p * N;
        int b = (int)randint(&g, s->B);
        int holders = 0;
        for (int m = 0; m < N; m++) holders += (end[row + m] > t) & (tgt[row + m] == b);
        double life = s->law == 0 ? s->mean * expo(&g) : exp(s->mu + s->sigma * normal(&g));
        uint64_t key = ((uint64_t)ip * P + (uint64_t)p) * (uint64_t)s->B + (uint64_t)b;
        if (s->est == 1 && measure) {            /* target: distinct targets other nodes hold here */
            int c = 0;
            for (int m = 0; m < N; m++) {
                if (m == j || !(end[row + m] > t)) continue;
                int seen = 0;
                for (int x = 0; x < m; x++) seen |= x != j && end[row + x] > t && tgt[row + x] == tgt[row + m];
                c += !seen;
            }
            s->est_acc += (double)c / s->B;
        }
        if (s->est == 2) take(s, row, j, d);
        if (UNLIKELY(holders)) {
            s->coll += measure;
            for (int m = 0; m < N; m++) if ((end[row + m] > t) & (tgt[row + m] == b)) {   /* reset */
                if (s->est == 2) {
                    if (!lazydel) ev_remove(s, end[row + m], row + m);
                    holder(s, row, m, d - j + m, -1); release(s, row, m, d - j + m);
                }
                end[row + m] = t;
            }
        }
        end[row + j] = t + life;
        tgt[row + j] = b;
        if (s->est == 2) { holder(s, row, j, d, 1); if (lazydel) lq_push(s, t + life, row + j); else ev_push(s, t + life, row + j); }
        if (s->tw_on) {                          /* the new holder takes the 4-tuple's record */
            double *r = tw_find(s, key, t);
            if (r) { s->twh += measure && !holders; r[1] = t + life + s->tw; }
            else tw_put(s, key, t + life + s->tw, t);
        }
        if (s->listed && s->mode) hl_sync(s, p);
    next:;
    }
    s->g = g; s->t = t;
}

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s base|base_target|base_full|base_full_ladder|lognormal|everything|exhaustion [ARRIVALS SEED]\n", argv[0]); return 2; }
    const char *name = argv[1];
    int64_t arrivals = argc > 2 ? atoll(argv[2]) : 20000000;
    uint64_t seed = argc > 3 ? strtoull(argv[3], 0, 10) : 1;
    sim_t s; memset(&s, 0, sizeof s);
    s.K = 1; s.N = 3; s.B = 10; s.lam = 2000; s.mean = 10; s.sigma = 1.0; s.cap = 55000;
    if (!strcmp(name, "base_target")) s.est = 1;
    else if (!strcmp(name, "base_full")) s.est = 2;
    else if (!strcmp(name, "base_full_ladder")) { s.est = 2; lazydel = 1; }
    else if (!strcmp(name, "lognormal")) s.law = 1;
    else if (!strcmp(name, "everything")) {
        s.law = 1; s.K = 4; s.tw_on = 1; s.tw = 60; s.sticky = 1;
        s.cum[0] = 0.5; s.cum[1] = 0.8; s.cum[2] = 1.0;
    } else if (!strcmp(name, "exhaustion")) { s.N = 1; s.lam = 6322.2; s.cap = P; s.listed = 1; }
    else if (strcmp(name, "base")) { fprintf(stderr, "unknown kernel %s\n", name); return 2; }
    s.mu = log(s.mean) - 0.5 * s.sigma * s.sigma;
    s.g.state = ((u128)(seed * 0x9E3779B97F4A7C15ULL) << 64) | (seed + 12345); s.g.inc = ((u128)seed << 1) | 1;
    size_t slots = (size_t)s.K * P * s.N;
    s.end = table(slots * 8); s.tgt = table(slots * 4);
    for (size_t i = 0; i < slots; i++) { s.end[i] = -INFINITY; s.tgt[i] = -1; }
    if (s.sticky) { s.cl_node = calloc(1000, 4); s.cl_exp = malloc(1000 * 8); for (int i = 0; i < 1000; i++) s.cl_exp[i] = -INFINITY; }
    if (s.tw_on) {
        s.tw_mask = (1u << 17) - 1; s.tw_tab = table((s.tw_mask + 1) * 64);
        for (uint64_t i = 0; i < (s.tw_mask + 1) * 8; i++) s.tw_tab[i] = (i % 8 < 6 && i % 2 == 0) ? -1.0 : -INFINITY;
    }
    if (s.est == 2) {
        s.fl = table(slots);
        memset(s.fl, 0, slots);
        for (int d = 0; d < s.K * s.N; d++) s.efree[d] = P;
        s.evinv = s.lam / 2.0;
        for (s.evm = 1; s.evm < 4 * s.mean * s.lam / 2.0; s.evm <<= 1) {}
        if (lazydel) { s.evm = 4096; wc = s.evm / s.evinv / 4; }
        s.evb = table((size_t)s.evm * 64);
        for (int64_t i = 0; i < s.evm * 8; i++) s.evb[i] = INFINITY;
        int64_t nov = 1 << 20;
        s.ovt = malloc(nov * 8); s.ovc = malloc(nov * 8); s.ovn = malloc(nov * 8); s.ovh = malloc(s.evm * 8);
        for (int64_t i = 0; i < nov; i++) s.ovn[i] = i + 1 < nov ? i + 1 : -1;
        for (int64_t i = 0; i < s.evm; i++) s.ovh[i] = -1;
        s.ovfree = 0;
    }
    if (s.listed) { s.hl = table(P * 4); s.hpos = table(P * 4); for (int i = 0; i < P; i++) s.hpos[i] = -1; }
    run(&s, (int64_t)(10 * s.mean * s.lam), 0);
    double w0 = now();
    run(&s, arrivals, 1);
    double wall = now() - w0;
    printf("{\"kernel\":\"%s\",\"connections\":%lld,\"collisions\":%lld,\"time_wait_hits\":%lld,"
           "\"allocation_failures\":%lld,\"expected_collisions\":%.6f,\"wall\":%.6f,\"rate\":%.1f}\n",
           name, (long long)s.conn, (long long)s.coll, (long long)s.twh, (long long)s.fail,
           s.est_acc, wall, (double)s.conn / wall);
    return 0;
}
