/* The plain-C floor of `collide scan` (bench/test_bench_scan.py): read a pcap of Ethernet/IPv4/TCP
 * records and classify every packet by its 4-tuple's state, in one loop, nothing else.
 *
 *   cc -O2 -o /tmp/scan_loop bench/scan_loop.c && /tmp/scan_loop capture.pcap 6000
 *
 * Per packet: parse the record (Ethernet, IPv4, TCP), find its 4-tuple (client ip:port, target
 * ip:port; the target is the side on PORT) in an open-addressing table, and move a small state
 * machine: a client SYN on a free 4-tuple is a new connection, on a pending one a retransmission,
 * on an established one a collision; the target's SYN-ACK establishes; a FIN or RST frees. What
 * collide's scan does besides (evidence, TIME_WAIT, lifetimes, forwarding, duplicates, Python
 * objects for what is rare) is left out: this is how fast reading and classifying alone can go.
 * Prints one JSON line: packets, new connections, collisions, seconds (reading included, the
 * process start not), rate in packets per second. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUF (8u << 20)

typedef struct { uint64_t cl, tg; uint8_t state; } entry;   /* state 0 free, 1 pending, 2 est. */

static entry *tab;
static uint64_t cap = 1u << 20, used;

static uint64_t mix(uint64_t x) {
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL; x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static entry *slot(uint64_t cl, uint64_t tg) {
    uint64_t j = mix(cl * 0x9E3779B97F4A7C15ULL ^ tg) & (cap - 1);
    while (tab[j].cl || tab[j].tg) {
        if (tab[j].cl == cl && tab[j].tg == tg) return &tab[j];
        j = (j + 1) & (cap - 1);
    }
    if (2 * (used + 1) > cap) {                       /* grow and retry */
        entry *old = tab; uint64_t oc = cap;
        cap *= 2; used = 0;
        tab = calloc(cap, sizeof(entry));
        for (uint64_t k = 0; k < oc; k++)
            if (old[k].cl || old[k].tg) { entry *e = slot(old[k].cl, old[k].tg); *e = old[k]; }
        free(old);
        return slot(cl, tg);
    }
    tab[j].cl = cl; tab[j].tg = tg; tab[j].state = 0; used++;
    return &tab[j];
}

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s FILE.pcap PORT\n", argv[0]); return 2; }
    uint32_t port = (uint32_t)atoi(argv[2]);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    tab = calloc(cap, sizeof(entry));
    uint8_t *buf = malloc(BUF);
    size_t have = fread(buf, 1, BUF, f), pos = 24;
    uint64_t packets = 0, conns = 0, collisions = 0, tcp = 0;
    volatile int64_t ts_sum = 0;
    for (;;) {
        if (have - pos < 16 || have - pos < 16 + le32(buf + pos + 8)) {   /* refill */
            memmove(buf, buf + pos, have - pos);
            have -= pos; pos = 0;
            size_t got = fread(buf + have, 1, BUF - have, f);
            if (!got) break;
            have += got;
            continue;
        }
        const uint8_t *r = buf + pos;
        uint32_t caplen = le32(r + 8);
        const uint8_t *p = r + 16;
        pos += 16 + caplen;
        packets++;
        ts_sum += (int64_t)le32(r) * 1000000000 + (int64_t)le32(r + 4) * 1000;
        if (caplen < 54 || be16(p + 12) != 0x0800 || p[23] != 6) continue;
        uint32_t ihl = (p[14] & 15) * 4;
        if (caplen < 14 + ihl + 14) continue;
        const uint8_t *t = p + 14 + ihl;
        uint64_t src = be32(p + 26), dst = be32(p + 30);
        uint32_t sp = be16(t), dp = be16(t + 2), fl = t[13];
        int up = dp == port;
        if (!up && sp != port) continue;
        tcp++;
        uint64_t cl = up ? (src << 16 | sp) : (dst << 16 | dp);
        uint64_t tg = up ? (dst << 16 | dp) : (src << 16 | sp);
        entry *e = slot(cl, tg);
        if (fl & 0x02) {
            if (up && !(fl & 0x10)) {
                if (e->state == 0) { conns++; e->state = 1; }
                else if (e->state == 2) { collisions++; conns++; }
            } else if (!up && (fl & 0x10)) e->state = 2;
        } else if (fl & 0x05) {
            e->state = 0;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    printf("{\"packets\": %llu, \"tcp\": %llu, \"connections\": %llu, \"collisions\": %llu, "
           "\"seconds\": %.6f, \"rate\": %.1f}\n", (unsigned long long)packets,
           (unsigned long long)tcp, (unsigned long long)conns, (unsigned long long)collisions, s,
           packets / s);
    fclose(f);
    return 0;
}
