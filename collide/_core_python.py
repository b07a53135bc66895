"""The reference engine: DESIGN §2 written out plainly. Slow, readable, and the specification.

`_core_numba.py` and `_core.pyx` follow this file step for step and draw the same raw 64-bit words
in the same order, so one (scenario, seed) gives identical counts on all three backends.

Random draws (DESIGN §2.4), all from raw words w = next_uint64():
  uniform       (w >> 11) * 2**-53                        in [0, 1)
  randint(n)    Lemire multiply-shift on w >> 32, exact rejection; n <= 1 draws no word
  exponential   -log(((w >> 11) + 1) * 2**-53)           in (0, 37]
  normal        sqrt(2 E) cos(2 pi u), E exponential then u uniform (Box-Muller)

Lifetimes from a file (`empirical`): values[randint(n)]; the stationary start's length-biased draw
takes u = uniform() and the first i with cumulative[i] > u * total (one word). Arrival times: one
exponential word per arrival, turned into a time by inverting the cumulative rate of
`traffic.schedule` (`next_arrival_after`; without a schedule t + E / rate as always).

One arrival, in order: client (only if a per-client choice needs it), NAT IP, node, port, target,
lifetime, server-close flag. An allocation failure stops after the port step.

Delayed connects (outcome 3 = delay-new or a kernel that drops the SYN, 4 = pre-3.6: the holders
are reset and the SYN dropped; over the challenge-ACK limit any outcome becomes 3): the new
connection holds its NAT port (it counts in `live`) but is not in the slot table, so it is no
holder; it sits in the end-time heap keyed by its next retry time t0 + syn_retries[i]. At a retry
the 4-tuple is looked up again: free (no live holder through another node) → it lives L from now
(a TIME_WAIT entry is taken over as at an arrival); held → the next retry, or a failed connect
when the schedule is spent. Retries draw nothing. Counters of a delayed connection go to the
window of its first SYN.

Ends of exponential lifetimes (DESIGN §2.5 with `dist = exponential`) need no end-time queue: the
lifetimes are memoryless, so the next end among L live connections comes after an exponential time
of rate L / mean, and the connection that ends is uniform among them. The run keeps the live
connections in a list and one end clock: `end_e`, the exponential units left at time `end_t0`.
Before L changes at time t the clock is brought to t (end_e -= (t - end_t0) * L / mean); the next
end is at end_t0 + end_e * mean / L. At that end: victim = live[randint(L)], it ends, then
end_e = exponential(). No lifetime is drawn for an arrival (the first end_e is drawn right after
the first arrival time). Other lifetime laws keep every end time in a heap.

Ports (random allocator): while at least half of a destination's ports are free the port is drawn
by rejection (randint(P) until the slot table says free); below half (and until more than three
quarters are free again) from a free list rebuilt in port order when it is entered. Both are
uniform over the free ports; the mode only decides which words are drawn. The eim allocator keeps
its per-IP free list always; sequential and linux only count free ports. A port is free towards d
when its slot entry is empty: it is HELD while its connect is decided and while it cools down
(reuse delay), and holds the connection record once live or pending.
"""
from __future__ import annotations

import heapq
import math

from . import _params as C

TWO53 = 2.0 ** -53
MASK32 = 0xFFFFFFFF
INF = math.inf
HELD = "held"          # slot of a port that is taken but has no connection record in it


class Words:
    """Raw words from a NumPy bit generator (the same stream the compiled backends read)."""

    def __init__(self, bitgen):
        self.bitgen = bitgen

    def next(self) -> int:
        return int(self.bitgen.random_raw())

    def uniform(self) -> float:
        return (self.next() >> 11) * TWO53

    def randint(self, n: int) -> int:
        """Uniform integer in [0, n), n < 2**32: Lemire's method on the high 32 bits, no bias."""
        if n <= 1:
            return 0
        m = (self.next() >> 32) * n
        low = m & MASK32
        if low < n:
            threshold = (2 ** 32 - n) % n
            while low < threshold:
                m = (self.next() >> 32) * n
                low = m & MASK32
        return m >> 32

    def exponential(self) -> float:
        return -math.log(((self.next() >> 11) + 1) * TWO53)

    def normal(self) -> float:
        e = self.exponential()
        u = self.uniform()
        return math.sqrt(2.0 * e) * math.cos(2.0 * math.pi * u)


class Connection:
    __slots__ = ("dest", "port", "target", "close", "end", "serial", "alive", "retry", "t0", "life",
                 "meas", "lpos")

    def __init__(self, dest, port, target, close, end, serial):
        self.dest, self.port, self.target, self.close = dest, port, target, close
        self.end, self.serial, self.alive = end, serial, True
        self.retry = -1          # pending: index of the next SYN retry; -1 once live
        self.t0, self.life, self.meas = 0.0, 0.0, False
        self.lpos = -1           # index in the live list (exponential lifetimes)


class Simulation:
    """State of one run. `place_stationary`, then `advance(t)` in chunks; `counters()` at the end."""

    def __init__(self, pi, pf, zone_start, zone_count, wcum, xa, bitgen):
        self.rng = Words(bitgen)
        self.pi, self.pf = [int(x) for x in pi], [float(x) for x in pf]
        # variable-length parameters (layout in _params.extra_array)
        ne, ms = int(pi[C.EMP_N]), int(pi[C.SCHED_N])
        xa = [float(x) for x in xa]
        self.emp, self.emp_cum = xa[:ne], xa[ne:2 * ne]
        self.sched_start, self.sched_rate = xa[2 * ne:2 * ne + ms], xa[2 * ne + ms:2 * ne + 2 * ms]
        self.syn = xa[2 * ne + 2 * ms:2 * ne + 2 * ms + int(pi[C.SYN_N])]
        self.zone_start, self.zone_count = [int(x) for x in zone_start], [int(x) for x in zone_count]
        self.wcum = [float(x) for x in wcum]
        pi = self.pi
        k, n, ports = pi[C.K], pi[C.N], pi[C.P]
        self.k, self.n, self.ports = k, n, ports
        dests = k * n
        pools = k if pi[C.ALLOC] == 3 else dests          # eim: one pool of ports per IP
        # Free ports per pool: a count, and for listed pools (eim always, random below half free)
        # a list plus each port's index in it (swap-remove keeps picks O(1)).
        self.free_n = [ports] * pools
        self.dense = [pi[C.ALLOC] == 3] * pools
        self.free = [list(range(ports)) if self.dense[q] else [] for q in range(pools)]
        self.pos = [list(range(ports)) if self.dense[q] else [-1] * ports for q in range(pools)]
        # Slot table: port p towards destination d is free (None), HELD, or holds a connection
        # record (live, or pending with retry >= 0: then it is no holder of the 4-tuple).
        self.slot = [[None] * ports for _ in range(dests)]
        # exponential lifetimes: the live connections and the end clock (see the module docstring)
        self.memoryless = pi[C.DIST] == 0
        self.live_list = []
        self.end_e, self.end_t0 = 0.0, 0.0
        self.live = [0] * dests
        self.cursor = [-1] * dests                         # sequential
        self.lin_epoch, self.lin_offset, self.lin_perturb = [-1] * dests, [0] * dests, [0] * dests
        self.est_sum = [0] * dests                         # Σ over free ports of holders' targets
        self.client_node, self.client_expiry = [0] * pi[C.CLIENTS], [-INF] * pi[C.CLIENTS]
        self.node_target_live = {}                         # client IP preservation off
        self.ends = []                                     # heap of (end, serial, connection)
        self.time_wait = {}                                # (ip, port, target) -> expiry
        self.tw_queue = []                                 # FIFO of (expiry, key)
        self.tw_head = 0
        self.cool_queue = []                               # FIFO of (release time, dest, port)
        self.cool_head = 0
        self.serial = 0
        self.next_arrival = INF
        self.batches = [0.0] * pi[C.NBATCH]
        self.c = dict(connections=0, established=0, allocation_failures=0, failed_connects=0,
                      collisions=0, reset_victims=0, time_wait_hits=0, pairs=0,
                      peak_live_per_destination=0, delayed_connects=0, pending_connects=0)
        self.first_collision = -1.0
        self.delay_hist = [0] * max(1, len(self.syn))      # successes by retry index
        self.ca_sec, self.ca_used = -1, 0                  # challenge-ACK budget of one second

    # -- helpers ------------------------------------------------------------------------------
    def pool_of(self, d: int) -> int:
        return d // self.n if self.pi[C.ALLOC] == 3 else d

    def is_free(self, d: int, p: int) -> bool:
        """Port p is free towards destination d (eim: free on d's NAT IP)."""
        if self.pi[C.ALLOC] == 3:
            return self.pos[d // self.n][p] >= 0
        return self.slot[d][p] is None

    def holder(self, d: int, p: int):
        """The live connection holding port p towards d, or None."""
        h = self.slot[d][p]
        return h if isinstance(h, Connection) and h.retry < 0 else None

    def take_free(self, pool: int, p: int) -> None:
        self.free_n[pool] -= 1
        if not self.dense[pool]:
            return
        i, lst = self.pos[pool][p], self.free[pool]
        last = lst[-1]
        lst[i] = last
        self.pos[pool][last] = i
        lst.pop()
        self.pos[pool][p] = -1

    def put_free(self, pool: int, p: int) -> None:
        self.free_n[pool] += 1
        if self.dense[pool]:
            self.pos[pool][p] = len(self.free[pool])
            self.free[pool].append(p)

    def list_ports(self, d: int) -> None:
        """Random allocator below half free: list d's free ports in port order."""
        self.dense[d] = True
        self.free[d] = [p for p in range(self.ports) if self.slot[d][p] is None]
        self.pos[d] = [-1] * self.ports
        for i, p in enumerate(self.free[d]):
            self.pos[d][p] = i

    def unlist_ports(self, d: int) -> None:
        """Random allocator above three quarters free again: back to rejection."""
        self.dense[d] = False
        self.free[d] = []

    def tracking(self) -> bool:
        """Keep the conditional estimate's running sums (random allocator, collisions possible)."""
        pi = self.pi
        return pi[C.ESTIMATE] and pi[C.ALLOC] == 0 and pi[C.CROSS] and pi[C.CIP] and self.n > 1

    def distinct_targets(self, ip: int, p: int, skip1: int, skip2: int) -> int:
        """Distinct targets held on port p from `ip` through nodes other than skip1, skip2."""
        seen = set()
        for j in range(self.n):
            if j != skip1 and j != skip2:
                h = self.holder(ip * self.n + j, p)
                if h is not None:
                    seen.add(h.target)
        return len(seen)

    def holder_changed(self, d0: int, p: int, target: int, delta: int) -> None:
        """A holder of (ip, p, target) through node j0 appeared (+1) or left (-1): update the
        estimate's sums of the other destinations of that IP for which p is free."""
        ip, j0 = divmod(d0, self.n)
        for j in range(self.n):
            if j == j0:
                continue
            d = ip * self.n + j
            if not self.is_free(d, p):
                continue
            others = {self.holder(ip * self.n + jj, p).target for jj in range(self.n)
                      if jj not in (j, j0) and self.holder(ip * self.n + jj, p) is not None}
            if target not in others:
                self.est_sum[d] += delta

    def port_freed(self, d: int, p: int) -> None:
        pool = self.pool_of(d)
        self.slot[d][p] = None
        self.put_free(pool, p)
        if self.tracking():
            self.est_sum[d] += self.distinct_targets(d // self.n, p, d % self.n, -1)

    def port_taken(self, d: int, p: int) -> None:
        pool = self.pool_of(d)
        self.slot[d][p] = HELD
        self.take_free(pool, p)
        if self.tracking():
            self.est_sum[d] -= self.distinct_targets(d // self.n, p, d % self.n, -1)

    def release_port(self, d: int, p: int, t: float) -> None:
        """The NAT frees port p towards d: free again now, or after the reuse delay."""
        if self.pi[C.COOL_ON]:
            self.cool_queue.append((t + self.pf[C.REUSE], d, p))
        else:
            self.port_freed(d, p)

    def end_connection(self, h: Connection, t: float, by_reset: bool) -> None:
        """A live connection ends: free its slot, maybe leave TIME_WAIT, release its NAT port."""
        h.alive = False
        d, p = h.dest, h.port
        self.slot[d][p] = HELD
        self.live[d] -= 1
        if self.memoryless:
            self.live_remove(h, t)
        if self.tracking():
            self.holder_changed(d, p, h.target, -1)
        if not self.pi[C.CIP]:
            self.node_target_live[(d % self.n, h.target)] -= 1
        if h.close and not by_reset and self.pi[C.TW_ON]:
            key = (d // self.n, p, h.target)
            expiry = t + self.pf[C.TW]
            self.time_wait[key] = expiry
            self.tw_queue.append((expiry, key))
        self.release_port(d, p, t)

    # -- the end clock of exponential lifetimes ---------------------------------------------------
    def clock_sync(self, t: float) -> None:
        """Spend the end clock up to t (before the number of live connections changes)."""
        self.end_e -= (t - self.end_t0) * len(self.live_list) / self.pf[C.MEAN]
        if self.end_e < 0.0:
            self.end_e = 0.0
        self.end_t0 = t

    def next_end(self) -> float:
        n = len(self.live_list)
        return self.end_t0 + self.end_e * self.pf[C.MEAN] / n if n else INF

    def live_add(self, h: Connection, t: float) -> None:
        self.clock_sync(t)
        h.lpos = len(self.live_list)
        self.live_list.append(h)

    def live_remove(self, h: Connection, t: float) -> None:
        self.clock_sync(t)
        last = self.live_list.pop()
        if last is not h:
            self.live_list[h.lpos] = last
            last.lpos = h.lpos

    def end_by_clock(self, t: float) -> None:
        """The end clock rang at t: a uniformly chosen live connection ends, the clock restarts."""
        self.end_t0 = t
        h = self.live_list[self.rng.randint(len(self.live_list))]
        self.end_connection(h, t, by_reset=False)
        self.end_e = self.rng.exponential()

    # -- lifetimes ------------------------------------------------------------------------------
    def lifetime(self) -> float:
        pi, pf, rng = self.pi, self.pf, self.rng
        dist = pi[C.DIST]
        if dist == 0:
            return pf[C.MEAN] * rng.exponential()
        if dist == 1:
            return pf[C.MEAN]
        if dist == 2:
            return math.exp(pf[C.MU] + pf[C.SIGMA] * rng.normal())
        if dist == 4:       # empirical: resample the file's lifetimes with replacement
            return self.emp[rng.randint(len(self.emp))]
        return pf[C.XM] * math.exp(rng.exponential() / pf[C.ALPHA])

    def biased_lifetime(self) -> float:
        """A draw from the length-biased law x f(x) / E[L] (DESIGN §2.5)."""
        pi, pf, rng = self.pi, self.pf, self.rng
        dist = pi[C.DIST]
        if dist == 0:       # Gamma(2, D)
            e1 = rng.exponential()
            return pf[C.MEAN] * (e1 + rng.exponential())
        if dist == 1:
            return pf[C.MEAN]
        if dist == 2:       # lognormal with mu + sigma^2
            return math.exp(pf[C.MU] + pf[C.SIGMA] * pf[C.SIGMA] + pf[C.SIGMA] * rng.normal())
        if dist == 4:       # empirical: index i with probability values[i] / total
            cum = self.emp_cum
            x = rng.uniform() * cum[-1]
            lo, hi = 0, len(cum) - 1        # first i with cum[i] > x (the last if none)
            while lo < hi:
                mid = (lo + hi) // 2
                if cum[mid] > x:
                    hi = mid
                else:
                    lo = mid + 1
            return self.emp[lo]
        return pf[C.XM] * math.exp(rng.exponential() / (pf[C.ALPHA] - 1.0))   # Pareto(xm, a - 1)

    # -- port allocators (DESIGN §2.3) -----------------------------------------------------------
    def allocate(self, ip: int, j: int, t: float) -> int:
        """A port free for (ip, j), taken; -1 if none. Draws as the allocator needs."""
        pi, rng = self.pi, self.rng
        d = ip * self.n + j
        pool = self.pool_of(d)
        nfree = self.free_n[pool]
        if nfree == 0:
            return -1
        alloc = pi[C.ALLOC]
        if alloc == 0:                                     # random: uniform over the free ports
            if self.dense[d] and 4 * nfree > 3 * self.ports:
                self.unlist_ports(d)
            elif not self.dense[d] and 2 * nfree < self.ports:
                self.list_ports(d)
            if self.dense[d]:
                p = self.free[d][rng.randint(nfree)]
            else:
                p = rng.randint(self.ports)
                while self.slot[d][p] is not None:
                    p = rng.randint(self.ports)
        elif alloc == 3:                                   # eim: uniform over the IP's free list
            p = self.free[pool][rng.randint(nfree)]
        elif alloc == 1:                                   # sequential: first free at/after cursor
            if self.cursor[d] < 0:
                self.cursor[d] = rng.randint(self.ports)
            p = self.cursor[d]
            while not self.is_free(d, p):
                p = p + 1 if p + 1 < self.ports else 0
            self.cursor[d] = p + 1 if p + 1 < self.ports else 0
        else:                                              # linux: RFC 6056 alg. 4, Linux >= 5.18
            epoch = math.floor(t / C.LINUX_EPOCH_S)
            if epoch != self.lin_epoch[d]:
                self.lin_epoch[d] = epoch
                self.lin_offset[d] = rng.randint(self.ports)
            p = self.linux_scan(d, (self.lin_perturb[d] + self.lin_offset[d]) % self.ports)
            skipped = self.linux_skipped
            u = rng.randint(8)
            self.lin_perturb[d] = (self.lin_perturb[d] + 2 * max(skipped, u) + 2) % self.ports
        self.port_taken(d, p)
        return p

    def linux_scan(self, d: int, offset: int) -> int:
        """Ports of the range's low parity in steps of 2 from offset, then the other parity."""
        P = self.ports
        offset &= ~1
        while True:
            p = offset
            for i in range(0, P, 2):
                if p >= P:
                    p -= P
                if self.is_free(d, p):
                    self.linux_skipped = i // 2
                    return p
                p += 2
            offset += 1
            if not (offset & 1) or P <= 1:
                raise AssertionError("linux_scan: no free port although the pool is not empty")

    # -- one arrival (DESIGN §2.1, §2.2) ----------------------------------------------------------
    def arrival(self, t: float, given_life: float, measure: bool, outcome: int) -> None:
        pi, pf, rng, c = self.pi, self.pf, self.rng, self.c
        if measure:
            c["connections"] += 1
        # 1-2. client, NAT IP and node
        client = rng.randint(pi[C.CLIENTS]) if pi[C.NEED_CLIENT] else 0
        ip = client % self.k if pi[C.IP_PER_CLIENT] else rng.randint(self.k)
        if pi[C.STICKY]:
            if t >= self.client_expiry[client]:
                self.client_node[client] = self.draw_node()
                self.client_expiry[client] = t + pf[C.DNS_TTL]
            j = self.client_node[client]
        else:
            j = self.draw_node()
        d = ip * self.n + j
        # conditional estimate: P(this arrival collides | state), before its port and target draws
        if measure and pi[C.ESTIMATE]:
            self.add_estimate(t, ip, j, d)
        # 3. port
        if self.live[d] >= pi[C.LIMIT]:
            p = -1
        else:
            p = self.allocate(ip, j, t)
        if p < 0:
            if measure:
                c["allocation_failures"] += 1
            return
        # 4. target
        if pi[C.CROSS]:
            target = rng.randint(pi[C.B])
        else:
            target = self.zone_start[j] + rng.randint(self.zone_count[j])
        # 5. at the target
        holders = []
        if pi[C.CIP]:
            for jj in range(self.n):
                h = self.holder(ip * self.n + jj, p)
                if jj != j and h is not None and h.target == target:
                    holders.append(h)
        else:
            key = (j, target)
            if self.node_target_live.get(key, 0) >= pi[C.NODE_LIMIT]:
                self.port_freed(d, p)            # the node has no port left: nothing is held
                if measure:
                    c["allocation_failures"] += 1
                return
        # 6. lifetime and who closes first
        if self.memoryless:
            life = 0.0                           # ends come from the end clock
        else:
            life = self.lifetime() if given_life < 0 else given_life
        scf = pf[C.SCF]
        close = scf >= 1.0 or (scf > 0.0 and rng.uniform() < scf)
        if holders:
            if measure:
                c["collisions"] += 1
                c["pairs"] += len(holders)
                if self.first_collision < 0:
                    self.first_collision = t - pf[C.T_MEASURE]
            if outcome <= 2 and pi[C.CA_LIMIT] > 0 and given_life < 0 \
                    and not self.challenge_ack(t):
                outcome = 3                      # over the limit: the SYN is silently dropped
            if outcome == 1:                     # fail-new: the new SYN gets nowhere
                if measure:
                    c["failed_connects"] += 1
                self.release_port(d, p, t)
                return
            if outcome == 0 or outcome == 4:     # reset-existing / pre-3.6: the older one(s) die
                for h in holders:
                    self.end_connection(h, t, by_reset=True)
                    if measure:
                        c["reset_victims"] += 1
            if outcome >= 3:                     # the new connection retries on the SYN schedule
                self.start_pending(d, p, target, close, t, life, measure)
                return
        elif pi[C.TW_ON]:
            self.take_over_time_wait(ip, p, target, measure)
        # the new connection lives
        if measure:
            c["established"] += 1
        self.serial += 1
        conn = Connection(d, p, target, close, t + life, self.serial)
        if self.tracking():
            self.holder_changed(d, p, target, +1)
        self.slot[d][p] = conn
        self.live[d] += 1
        if not pi[C.CIP]:
            self.node_target_live[(j, target)] = self.node_target_live.get((j, target), 0) + 1
        if measure and self.live[d] > c["peak_live_per_destination"]:
            c["peak_live_per_destination"] = self.live[d]
        self.schedule_end(conn, t)

    def schedule_end(self, h: Connection, t: float) -> None:
        """A connection went live at t: into the end clock's list, or the end-time heap."""
        if self.memoryless:
            self.live_add(h, t)
        else:
            heapq.heappush(self.ends, (h.end, h.serial, h))

    def take_over_time_wait(self, ip: int, p: int, target: int, measure: bool) -> None:
        """A SYN for a 4-tuple the target holds in TIME_WAIT: accepted, the entry goes (expired
        entries are gone before any event after their expiry)."""
        key = (ip, p, target)
        if key in self.time_wait:
            del self.time_wait[key]
            if measure:
                self.c["time_wait_hits"] += 1

    def challenge_ack(self, t: float) -> bool:
        """One challenge ACK from the global budget of the current whole second, if any is left."""
        sec = math.floor(t)
        if sec != self.ca_sec:
            self.ca_sec, self.ca_used = sec, 0
        if self.ca_used < self.pi[C.CA_LIMIT]:
            self.ca_used += 1
            return True
        return False

    def start_pending(self, d, p, target, close, t, life, measure) -> None:
        """The new SYN was dropped or answered elsewhere: hold the port, retry at t + syn[0]."""
        c = self.c
        if measure:
            c["pending_connects"] += 1
        self.serial += 1
        conn = Connection(d, p, target, close, t + self.syn[0], self.serial)
        conn.retry, conn.t0, conn.life, conn.meas = 0, t, life, measure
        self.slot[d][p] = conn
        self.live[d] += 1
        if measure and self.live[d] > c["peak_live_per_destination"]:
            c["peak_live_per_destination"] = self.live[d]
        heapq.heappush(self.ends, (conn.end, conn.serial, conn))

    def retry(self, h: Connection, t: float) -> None:
        """A pending connection's SYN retry at t (its heap entry is already popped)."""
        c, n = self.c, self.n
        d, p, target = h.dest, h.port, h.target
        ip, j = divmod(d, n)
        busy = False
        for jj in range(n):
            o = self.holder(ip * n + jj, p)
            if jj != j and o is not None and o.target == target:
                busy = True
        if not busy:
            if self.pi[C.TW_ON]:
                self.take_over_time_wait(ip, p, target, h.meas)
            i = h.retry
            h.retry = -1
            h.end = t + h.life
            if self.tracking():
                self.holder_changed(d, p, target, +1)
            if h.meas:
                c["established"] += 1
                c["delayed_connects"] += 1
                c["pending_connects"] -= 1
                self.delay_hist[i] += 1
            self.schedule_end(h, t)
            return
        h.retry += 1
        if h.retry < len(self.syn):
            h.end = h.t0 + self.syn[h.retry]
            heapq.heappush(self.ends, (h.end, h.serial, h))
            return
        h.alive = False                          # the schedule is spent: the connect fails
        self.slot[d][p] = HELD
        self.live[d] -= 1
        if h.meas:
            c["failed_connects"] += 1
            c["pending_connects"] -= 1
        self.release_port(d, p, t)

    def draw_node(self) -> int:
        if self.pi[C.WEIGHTED]:
            u = self.rng.uniform()
            j = 0
            while u >= self.wcum[j]:
                j += 1
            return j
        return self.rng.randint(self.n)

    def add_estimate(self, t: float, ip: int, j: int, d: int) -> None:
        pi = self.pi
        e = 0.0
        if pi[C.CROSS] and pi[C.CIP] and self.n > 1 and self.live[d] < pi[C.LIMIT]:
            nfree = self.free_n[self.pool_of(d)]
            size_t = pi[C.B]
            if pi[C.ALLOC] == 0 and nfree:
                e = self.est_sum[d] / (nfree * size_t)
            elif pi[C.ALLOC] == 1 and nfree and self.cursor[d] >= 0:
                p = self.cursor[d]
                while not self.is_free(d, p):
                    p = p + 1 if p + 1 < self.ports else 0
                e = self.distinct_targets(ip, p, j, -1) / size_t
            # sequential before its first use: the cursor is not drawn yet, so the port is uniform
            elif pi[C.ALLOC] == 1 and nfree:
                e = sum(self.distinct_targets(ip, p, j, -1) for p in range(self.ports)
                        if self.is_free(d, p)) / (nfree * size_t)
        nb = pi[C.NBATCH]
        b = int((t - self.pf[C.T_MEASURE]) / (self.pf[C.T_END] - self.pf[C.T_MEASURE]) * nb)
        self.batches[min(max(b, 0), nb - 1)] += e

    # -- the run --------------------------------------------------------------------------------
    def draw_stationary(self):
        """Poisson(λ E[L]) connections with (residual, age) from the equilibrium law."""
        rng, pf = self.rng, self.pf
        mean_live = pf[C.RATE] * pf[C.MEAN]
        n = 0
        s = rng.exponential()
        while s < mean_live:
            n += 1
            s += rng.exponential()
        residual, age = [], []
        for _ in range(n):
            big = self.biased_lifetime()
            u = rng.uniform()
            residual.append(u * big)
            age.append(big - u * big)
        return residual, age

    def place_stationary(self, residuals, order) -> None:
        """Allocate the stationary connections at t = 0 in order of start (oldest first), nothing
        counted. A placed connection that meets a live holder of its 4-tuple meets the scenario's
        outcome (the older is reset, or the newer fails), so the start holds no double holders."""
        for i in order:
            self.arrival(0.0, float(residuals[i]), measure=False, outcome=self.pi[C.OUTCOME])

    def next_arrival_after(self, t: float, e: float) -> float:
        """The next arrival after t for one exponential draw e: invert the cumulative rate.

        Without a schedule: t + e / rate. With one, start in the segment holding t (segment 0 also
        covers everything before the window) and spend e: if t + e / rate stays inside the
        segment that is the arrival, else e loses (end - t) * rate and the walk moves on."""
        ms = len(self.sched_start)
        if ms == 0:
            return t + e / self.pf[C.RATE]
        starts, rates = self.sched_start, self.sched_rate
        lo, hi = 0, ms                      # last i with starts[i] <= t (0 if none)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if starts[mid] <= t:
                lo = mid
            else:
                hi = mid
        i = lo
        while True:
            r = rates[i]
            if i + 1 >= ms:
                return t + e / r
            seg_end = starts[i + 1]
            t_next = t + e / r
            if t_next < seg_end:
                return t_next
            e -= (seg_end - t) * r
            if e < 0.0:
                e = 0.0
            t = seg_end
            i += 1

    def schedule_first_arrival(self) -> None:
        self.next_arrival = self.next_arrival_after(0.0, self.rng.exponential())
        if self.memoryless:
            self.end_e = self.rng.exponential()

    def advance(self, t_stop: float) -> int:
        """Process every event before t_stop in time order (ties: ends, reuse, TIME_WAIT, arrival)."""
        pf, pi = self.pf, self.pi
        while True:
            while self.ends and not self.ends[0][2].alive:
                heapq.heappop(self.ends)
            t_heap = self.ends[0][0] if self.ends else INF
            t_clock = self.next_end() if self.memoryless else INF
            t_end = min(t_heap, t_clock)
            t_cool = self.cool_queue[self.cool_head][0] if self.cool_head < len(self.cool_queue) \
                else INF
            t_tw = self.tw_queue[self.tw_head][0] if self.tw_head < len(self.tw_queue) else INF
            t_ev = min(t_end, t_cool, t_tw)
            if t_ev <= self.next_arrival:
                if t_ev >= t_stop:
                    return 0
                if t_clock == t_ev:
                    self.end_by_clock(t_clock)
                elif t_heap == t_ev:
                    _, _, h = heapq.heappop(self.ends)
                    if h.retry >= 0:
                        self.retry(h, t_end)
                    else:
                        self.end_connection(h, t_end, by_reset=False)
                elif t_cool == t_ev:
                    _, d, p = self.cool_queue[self.cool_head]
                    self.cool_queue[self.cool_head] = None
                    self.cool_head += 1
                    self.port_freed(d, p)
                else:
                    expiry, key = self.tw_queue[self.tw_head]
                    self.tw_head += 1
                    if self.time_wait.get(key) == expiry:
                        del self.time_wait[key]
            else:
                t = self.next_arrival
                if t >= t_stop:
                    return 0
                measure = pf[C.T_MEASURE] <= t < pf[C.T_END]
                self.arrival(t, -1.0, measure, pi[C.OUTCOME])
                self.next_arrival = self.next_arrival_after(t, self.rng.exponential())

    def counters(self) -> dict:
        out = dict(self.c)
        out["first_collision_s"] = self.first_collision
        out["batches"] = list(self.batches)
        out["delay_hist"] = list(self.delay_hist)
        return out
