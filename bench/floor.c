/* The floor docs/model.md §2.4 sets under any engine of the base scenario: per connection, the raw words
 * and floating-point work the contract fixes, and nothing else. PCG64 (128-bit LCG, XSL-RR
 * output) inlined as in collide/_core.pyx; an exponential is -log(((w >> 11) + 1) * 2^-53); an
 * integer in [0, n) is Lemire's multiply-shift on w >> 32 (the rare rejection step left out).
 * Per connection: the inter-arrival exponential, node, port and target, and the end clock's
 * exponential; optionally K random touches of a table of P 8-byte entries (a port table).
 *
 *     cc -O2 -ffp-contract=off bench/floor.c -o /tmp/collide-floor -lm && /tmp/collide-floor [P K]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef unsigned __int128 u128;
static u128 state, inc;

static inline uint64_t next_u64(void) {
    const u128 mult = ((u128)2549297995355413924ULL << 64) + 4865540595714422341ULL;
    state = state * mult + inc;
    uint64_t hi = (uint64_t)(state >> 64), x = hi ^ (uint64_t)state;
    unsigned rot = (unsigned)(hi >> 58);
    return (x >> rot) | (x << ((-rot) & 63));
}
static inline uint32_t randint(uint32_t n) {
    return (uint32_t)(((uint64_t)(uint32_t)(next_u64() >> 32) * n) >> 32);
}
static inline double exponential(void) {
    return -log((double)((next_u64() >> 11) + 1) * (1.0 / 9007199254740992.0));
}

int main(int argc, char **argv) {
    long n = 50000000, P = argc > 1 ? atol(argv[1]) : 0;
    int K = argc > 2 ? atoi(argv[2]) : 0;
    uint64_t *table = P > 0 ? calloc((size_t)P, 8) : NULL, sum = 0;
    double t = 0.0, clock_e = 0.0;
    struct timespec a, b;
    state = 12345;
    inc = 67891;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        t += exponential() / 2000.0;                          /* next arrival */
        uint32_t node = randint(3), port = randint(64512), target = randint(10);
        sum += node + port + target;
        clock_e += exponential() * 10.0;                      /* the end clock */
        uint64_t e = P > 0 ? ((uint64_t)port * 3 + node) % (uint64_t)P : 0;
        for (int k = 0; k < K; k++) {                         /* K lines of the table */
            table[e] += sum;
            e = (e * 2654435761u + (uint64_t)k + 1) % (uint64_t)P;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    printf("%.1f ns per connection, %.1f M conn/s (table %ld entries, %d touches; %g %g %llu)\n",
           dt * 1e9 / (double)n, (double)n / dt / 1e6, P, K, t, clock_e, (unsigned long long)sum);
    free(table);
    return 0;
}
