"""The TCP life of every 4-tuple at the target, and the class of every SYN: the reference tracker
(issues 17 and 25). `collide/scan/_track.pyx` is its compiled twin, written step for step after this
one; the tests hold both to the same answer on every fixture and on fuzzed input.

A 4-tuple is (client ip, client port, target ip, target port); the client side is the one that
sent the first SYN, the target the one that listens (`--port`, else the ports SYNs went to). Per
4-tuple the tracker keeps the connection the target holds (the *holder*: handshake answered, not yet
ended) and the attempts the target has not answered yet (*pending*). A holder *ends* when the
capture shows it closed by the kernel's rules: a FIN both ways (with the last ACK, or a second
later), an RST that resets it (from the target, or from a client whose sequence number is exactly
its RCV.NXT, or RCV.NXT - 1 after the client's FIN: `_rst_resets`), or idle past twice the idle
timeout. When the target sent its FIN first, the 4-tuple then sits in TIME_WAIT for `time_wait`
seconds, until a client RST or an accepted SYN ends it. A client segment in the sequence space of
the connection that held the 4-tuple before the holder (its client does not know it was reset)
is out of the holder's window: the kernel drops it, and it moves nothing of the holder
(`_old_segment`).

Each SYN is one of:
* a **retransmission**: the ISN of the holder or of a pending attempt again;
* a **collision**: a new ISN while the holder lives and is synchronised (ESTABLISHED through
  LAST_ACK), or in SYN_RECV (its handshake answered and not yet completed: the target holds a
  request for it; the record says `holder.state: "SYN_RECV"`); counted once per new connection;
* a **TIME_WAIT hit**: a new ISN on a 4-tuple in TIME_WAIT (its holder has ended);
* **stale**: the holder was idle longer than `idle_timeout` (the load balancer's and the NAT's idle
  timeout: 350 s on AWS), so in the network it is gone while the target still holds it;
* **new**: nothing there.
A new ISN equal to that of an attempt still pending on another 4-tuple of the same client address is
the same connection moved to another port by the NAT (netfilter does this when an RST closed its
entry): not a new connection. Connections seen mid-life (no SYN) are holders but not arrivals.

What answers a SYN follows the same rules. A **challenge ACK** is the target's pure ACK in answer to
a SYN (within `CHALLENGE_WINDOW`) while the holder lives, acknowledging the holder's RCV.NXT (not the
new ISN + 1); only a synchronised holder's counts (`challenge_acks`, as the kernel's
TcpExtTCPChallengeACK: a request in SYN_RECV answers with an ACK the kernel does not count). An ACK
answering a SYN after the holder has ended comes from TIME_WAIT (`time_wait_acks`) and is never a
collision's evidence; nor is the client RST that answers it, which only ends the TIME_WAIT.

A collision's outcome: `reset-existing` only when its holder was reset by the RST that the new
client sent in answer to the challenge ACK (sequence number = the holder's RCV.NXT); `delay-new` when
the new connection kept retrying and connected only after the holder ended, or never; `unknown`
when the capture cannot tell.

Also kept: how many targets one client ip:port is live at at once (`nodes_bound`: k targets at once
need k load-balancer paths), and the first `ARRIVALS_KEPT` arrivals' source ports in order, from
which `collide.scan.nat` tells the NAT's allocator.
"""
from __future__ import annotations

import random

import numpy as np

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
MASK = 0xFFFFFFFF
CHALLENGE_WINDOW = 0.5      # s after a SYN within which the target's pure ACK is its answer
PENDING_LIFE = 135.0        # s: Linux gives up a connect after about 127 s of SYN retries
MAX_SOURCES = 100_000       # source addresses counted one by one (memory bound)
ARRIVALS_KEPT = 200_000     # arrivals whose ports are kept in order (the allocator's statistic)
HALF = 1 << 31
SYN_WINDOW = 1 << 16       # the most an unscaled SYN-ACK window can say
PREV_KEPT = 4              # earlier connections of a 4-tuple whose late segments are told apart
LOW49 = (1 << 49) - 1

# holder states, as the target sees them
SYN_RECV, SYNCED = 1, 2
OUTCOMES = ("reset-existing", "delay-new", "unknown")


def _seq_near(a: int, b: int, window: int = 1 << 20) -> bool:
    """a and b within `window` of each other in sequence space."""
    d = (a - b) & MASK
    return d < window or d > MASK + 1 - window


def _old_segment(slot, h, seq) -> bool:
    """A client segment of a connection that held the 4-tuple before the holder: near that one's
    RCV.NXT and out of the holder's window (not near the holder's RCV.NXT, or behind it: a client
    that reuses its own 4-tuple from TIME_WAIT starts 65537 past the old sequence). The holder's
    kernel drops it (with a duplicate ACK; a request in SYN_RECV with an RST): nothing of the
    holder moves, not its RCV.NXT, its FIN, its idle time."""
    ref = h.c_next
    if ref is None and h.isn is not None:
        ref = (h.isn + 1) & MASK
    for p in slot.prev:
        if _seq_near(seq, p):
            return ref is None or not _seq_near(seq, ref) or ((seq - ref) & MASK) >= HALF
    return False


def _remember(slot, h) -> None:
    """h no longer holds the 4-tuple: keep its client's sequence (its RCV.NXT) among the last
    PREV_KEPT, for the segments its client may still send."""
    p = h.c_next if h.c_next is not None else (None if h.isn is None else (h.isn + 1) & MASK)
    if p is not None:
        slot.prev = [p] + (slot.prev or [])[:PREV_KEPT - 1]


def _rst_resets(h, seq) -> bool:
    """Does a client RST with this sequence number reset the live holder h (Linux's
    tcp_validate_incoming, RFC 5961 3.2)? Exactly RCV.NXT does; so does RCV.NXT - 1 once the
    client's FIN is in (CLOSE_WAIT, LAST_ACK, CLOSING: tcp_reset_check); a request in SYN_RECV is
    reset by any RST in its window (tcp_check_req; an unscaled SYN-ACK window, at most 64 KiB).
    Any other draws a challenge ACK (in the window) or is dropped. Without a known RCV.NXT (a
    connection seen mid-life) the scan cannot tell, and takes the RST for a reset."""
    n = h.c_next
    if n is None or seq == n:
        return True
    if h.c_fin is not None and seq == (n - 1) & MASK:
        return True
    return h.state == SYN_RECV and ((seq - n) & MASK) < SYN_WINDOW


class Conn:
    __slots__ = ("isn", "t0", "midlife", "t_synack", "t_last", "syns", "t_last_syn",
                 "c_fin", "s_fin", "end", "how", "c_next", "record", "victim_of",
                 "client", "state", "tw_record", "live")

    def __init__(self, isn, t0, midlife=False):
        self.isn = isn
        self.t0 = t0
        self.midlife = midlife
        self.t_synack = None
        self.t_last = t0
        self.syns = 0 if midlife else 1
        self.t_last_syn = None if midlife else t0
        self.c_fin = None
        self.s_fin = None
        self.end = None
        self.how = None
        self.c_next = None
        self.record = None        # the collision record where this is the new connection
        self.victim_of = []       # collision records where this is the holder
        self.client = 0
        self.state = SYNCED if midlife else 0
        self.tw_record = None
        self.live = False         # counted among its client endpoint's live holders


class Slot:
    __slots__ = ("holder", "pending", "tw_until", "tw_conn", "last", "prev", "old_ack")

    def __init__(self, t):
        self.holder = None
        self.pending = {}
        self.tw_until = -1.0
        self.tw_conn = None
        self.last = t
        # the client-side RCV.NXT of the connections that held the 4-tuple before the holder,
        # latest first: their clients may not know they have ended (reset by a new client's RST)
        # and go on sending in their own sequence space, which the holder's kernel drops
        self.prev = None
        self.old_ack = None       # the ACK number of the last such segment


class Tracker:
    """Feed time-ordered chunks of packets (`feed`), then `finish(t_end)`. `side` is where the
    packets were seen: "target" (the target's side of the 4-tuples) or "client" (a client or the
    outside of a NAT: the holder through another node is not in view)."""

    def __init__(self, ports, *, time_wait=60.0, idle_timeout=350.0, side="target",
                 sample=100_000, keep=10_000, seed=1, prefilter=True):
        self.prefilter = prefilter
        self.ports = np.array(sorted(ports), dtype=np.uint16)
        self.time_wait = float(time_wait)
        self.idle = float(idle_timeout)
        self.client_side = side == "client"
        self.slots: dict[int, Slot] = {}
        self.pending_isn: dict[tuple, tuple] = {}    # (client ip, isn) -> (key, Conn)
        self.c = dict(packets=0, other_port=0, syns=0, arrivals=0, retransmissions=0,
                      collisions=0, time_wait_hits=0, stale=0, new=0, moved=0, midlife=0,
                      challenge_acks=0, client_rsts=0, evicted=0, server_close=0,
                      client_close=0, resets=0, overlaps=0, tw_accepted=0, tw_acked=0,
                      time_wait_acks=0, time_wait_rsts=0, syn_recv_holders=0, refused=0,
                      skipped=0)
        self.collisions: list[dict] = []
        self.tw_hits: list[dict] = []
        self.stale_hits: list[dict] = []
        self.keep = keep
        self.sample_size = sample
        self.sample: list[tuple[float, int]] = []     # (lifetime s, 1 ended / 0 censored)
        self.sample_seen = 0
        self.rng = random.Random(seed)
        self.arrival_bins: dict[int, int] = {}        # arrivals per second of capture time
        self.sources: dict[int, int] = {}
        self.targets: dict[int, int] = {}
        self.t_first = None
        self.t_last = None
        self.live_peak = 0
        self._next_evict = None
        # (client endpoint, service port) -> {server ip: live holders}: ports live towards several
        # servers at once (client side: overlaps; both sides: the node count's lower bound)
        self.live_by_port: dict[tuple, dict] = {}
        self.nodes_bound = 1                           # most servers one endpoint was live at
        self.nodes_bound_at = None                     # (time, key) where it was reached
        self.port_min, self.port_max = 65536, -1
        self.other_sources = 0
        # outcomes of collisions past the `keep` listed, decided when their connection resolves
        self.unlisted_outcomes = {k: 0 for k in OUTCOMES}
        self.first_arrival = self.last_arrival = None
        # the first ARRIVALS_KEPT arrivals in order: time, client endpoint, server endpoint
        self.arr_t: list[float] = []
        self.arr_client: list[int] = []
        self.arr_server: list[int] = []

    # -- bookkeeping --------------------------------------------------------------------------
    def _sample(self, life: float, ended: int) -> None:
        self.sample_seen += 1
        if len(self.sample) < self.sample_size:
            self.sample.append((life, ended))
        else:
            j = self.rng.randrange(self.sample_seen)
            if j < self.sample_size:
                self.sample[j] = (life, ended)

    def _end(self, conn: Conn, t: float, how: str, key: int, by=None) -> None:
        """The holder `conn` ends at t. `by`: the collision record whose new client's RST reset
        it (its outcome is reset-existing; any other collision on this holder saw it reset by
        someone else)."""
        if conn.end is not None:
            return
        conn.end = t
        conn.how = how
        if how == "server-close":
            self.c["server_close"] += 1
        elif how == "client-close":
            self.c["client_close"] += 1
        elif how in ("reset-by-new-client", "client-rst", "target-rst"):
            self.c["resets"] += 1
        if not conn.midlife and conn.state == SYNCED:
            # a connection reset by a collision did not end by itself: its own lifetime is
            # longer (censored there); the model draws lifetimes and applies the resets itself
            self._sample(max(t - conn.t0, 1e-6), 0 if how in ("reset-by-new-client",
                                                              "superseded") else 1)
        for rec in conn.victim_of:
            if rec["holder_end"] is None:
                h = how
                if how == "reset-by-new-client" and rec is not by:
                    h = "reset-by-another-new-client"
                rec["holder_end"] = {"time": t, "how": h, "after_s": round(t - rec["_t"], 6)}
        self._unlive(key, conn)

    def _live(self, key, conn, t):
        """conn now holds its 4-tuple: one more live holder for its client endpoint."""
        conn.live = True
        d = self.live_by_port.setdefault((key >> 49, key & 0xFFFF), {})
        sip = (key & LOW49) >> 16
        d[sip] = d.get(sip, 0) + 1
        if len(d) > self.nodes_bound:
            self.nodes_bound = len(d)
            self.nodes_bound_at = (t, key)

    def _unlive(self, key, conn):
        if not conn.live:
            return
        conn.live = False
        d = self.live_by_port.get((key >> 49, key & 0xFFFF))
        if d is not None:
            sip = (key & LOW49) >> 16
            n = d.get(sip, 0) - 1
            if n > 0:
                d[sip] = n
            else:
                d.pop(sip, None)
                if not d:
                    self.live_by_port.pop((key >> 49, key & 0xFFFF), None)

    def _record(self, kind, t, key, conn, holder, extra=None) -> dict:
        rec = {"_t": t, "_key": key, "time": t, "kind": kind, "isn": conn.isn,
               "holder": None if holder is None else {
                   "isn": holder.isn, "since": None if holder.midlife else holder.t0,
                   "seen_mid_life": holder.midlife,
                   "state": "SYN_RECV" if holder.state == SYN_RECV else "synchronised",
                   "idle_s": round(t - holder.t_last, 6),
                   "rcv_nxt": holder.c_next},
               "challenge_ack": None, "client_rst": None, "holder_end": None,
               "syn_retransmissions": 0, "connect_delay_s": None, "moved_to": None,
               "outcome": None}
        if extra:
            rec.update(extra)
        return rec

    # -- the packet loop ----------------------------------------------------------------------
    def feed(self, ch: dict) -> None:
        ts_ns = ch["ts"]
        n = ts_ns.size
        if n == 0:
            return
        self.c["packets"] += n
        sport, dport = ch["sport"], ch["dport"]
        up = np.isin(dport, self.ports)
        down = np.isin(sport, self.ports) & ~up
        keep = up | down
        if not keep.all():
            self.c["other_port"] += int(n - keep.sum())
            idx = np.nonzero(keep)[0]
            ch = {k: v[idx] for k, v in ch.items()}
            up = up[idx]
            if idx.size == 0:
                return
        src, dst = ch["src"], ch["dst"]
        sport, dport = ch["sport"].astype(np.uint64), ch["dport"].astype(np.uint64)
        a = (src << np.uint64(16)) | sport
        b = (dst << np.uint64(16)) | dport
        cl = np.where(up, a, b)
        tg = np.where(up, b, a)
        flags = ch["flags"]
        seq, ackn, plen, ts = ch["seq"], ch["ack"], ch["plen"], ch["ts"]
        if self.prefilter and cl.size > 64:
            keep = needed(cl, tg, flags)
            if not keep.all():
                self.c["skipped"] += int(cl.size - keep.sum())
                cl, tg, up, flags = cl[keep], tg[keep], up[keep], flags[keep]
                seq, ackn, plen, ts = seq[keep], ackn[keep], plen[keep], ts[keep]
        t_list = (ts.astype(np.float64) * 1e-9).tolist()
        if self.t_first is None:
            self.t_first = t_list[0]
            self._next_evict = t_list[0] + 60.0
        self.t_last = t_list[-1]
        self._loop(t_list, cl.tolist(), tg.tolist(), up.tolist(), flags.tolist(),
                   seq.tolist(), ackn.tolist(), plen.tolist())
        if self.t_last >= self._next_evict:
            self._evict(self.t_last)
            self._next_evict = self.t_last + 60.0

    def _loop(self, T, CL, TG, UP, FL, SEQ, ACKS, PL):
        slots = self.slots
        for t, cl, tg, up, fl, seq, ack, pl in zip(T, CL, TG, UP, FL, SEQ, ACKS, PL):
            key = (cl << 49) | tg
            slot = slots.get(key)
            fresh = slot is None
            if fresh:
                slot = Slot(t)
                slots[key] = slot
            slot.last = t
            if up:
                if fl & SYN:
                    if fl & ACK:
                        continue          # a SYN-ACK from the client side: not a handshake we track
                    self._syn(t, key, slot, seq, cl, tg)
                    continue
                if fl & RST:
                    self._client_rst(t, key, slot, seq)
                    continue
                h = self._holder(t, key, slot, fresh)
                if h is None:
                    continue
                if slot.prev is not None and _old_segment(slot, h, seq):
                    slot.old_ack = ack if fl & ACK else 0    # what the RST answering it carries
                    continue
                h.t_last = t
                nxt = (seq + pl) & MASK
                if h.state == SYN_RECV and fl & ACK and h.t_synack is not None:
                    h.state = SYNCED
                if fl & FIN:
                    nxt = (nxt + 1) & MASK
                    if h.c_fin is None:
                        h.c_fin = t
                        if h.s_fin is not None:      # the target closed first: now TIME_WAIT
                            self._end(h, t, "server-close", key)
                            slot.tw_until = t + self.time_wait
                            slot.tw_conn = h
                elif h.c_fin is not None and h.s_fin is not None and h.s_fin >= h.c_fin \
                        and fl & ACK:
                    self._end(h, t, "client-close", key)     # the last ACK: LAST_ACK -> CLOSED
                if h.c_next is None or ((nxt - h.c_next) & MASK) < HALF:
                    h.c_next = nxt
            else:
                if fl & SYN:
                    if fl & ACK:
                        self._synack(t, key, slot, ack, cl)
                    continue
                if fl & RST:
                    self._target_rst(t, key, slot, seq)
                    continue
                if slot.pending and pl == 0 and not fl & FIN:
                    if self._answer(t, key, slot, seq, ack):
                        continue
                h = self._holder(t, key, slot, fresh)
                if h is None:
                    continue
                h.t_last = t
                if h.state == SYN_RECV and h.t_synack is not None and t > h.t_synack:
                    h.state = SYNCED          # the target sends again: the handshake completed
                if fl & FIN and h.s_fin is None:
                    h.s_fin = t
                if fl & ACK and (h.c_next is None or ((ack - h.c_next) & MASK) < HALF):
                    h.c_next = ack            # the target's ACK number is its RCV.NXT

    # -- events -------------------------------------------------------------------------------
    def _holder(self, t, key, slot, fresh):
        """The live holder an ordinary packet belongs to; on a 4-tuple first seen now, a
        connection seen mid-life; None for a stray packet after the end."""
        h = slot.holder
        if h is not None and h.end is None:
            return h
        if not fresh:
            return None
        h = Conn(None, t, midlife=True)
        h.client = key >> 65
        slot.holder = h
        self.c["midlife"] += 1
        self._live(key, h, t)
        return h

    def _syn(self, t, key, slot, seq, cl, tg):
        c = self.c
        c["syns"] += 1
        h = slot.holder
        if h is not None and h.end is None and h.isn == seq:
            c["retransmissions"] += 1
            h.syns += 1
            h.t_last_syn = t
            return
        p = slot.pending.get(seq)
        if p is not None:
            c["retransmissions"] += 1
            p.syns += 1
            p.t_last_syn = t
            p.t_last = t
            if p.record is not None:
                p.record["syn_retransmissions"] += 1
            if p.tw_record is not None:
                p.tw_record["syn_retransmissions"] += 1
            return
        if h is not None and h.end is None and h.c_fin is not None and h.s_fin is not None \
                and t - max(h.c_fin, h.s_fin) > 1.0:
            # both FINs long passed and the last ACK not captured: the holder is closed
            self._end(h, max(h.c_fin, h.s_fin), "client-close" if h.c_fin <= h.s_fin
                      else "server-close", key)
        client = cl >> 16
        self.port_min = min(self.port_min, cl & 0xFFFF)
        self.port_max = max(self.port_max, cl & 0xFFFF)
        moved = self.pending_isn.pop((client, seq), None)
        if moved is not None:
            okey, conn = moved
            oslot = self.slots.get(okey)
            if oslot is not None:
                oslot.pending.pop(seq, None)
            conn.syns += 1
            conn.t_last_syn = t
            c["moved"] += 1
            c["retransmissions"] += 1
            if conn.record is not None and conn.record["moved_to"] is None:
                conn.record["moved_to"] = {"time": t, "_key": key}
                conn.record["syn_retransmissions"] += 1
        else:
            conn = Conn(seq, t)
            conn.client = client
            c["arrivals"] += 1
            n_src = self.sources.get(client)
            if n_src is not None or len(self.sources) < MAX_SOURCES:
                self.sources[client] = (n_src or 0) + 1
            else:
                self.other_sources += 1     # past the bound: counted as one-connection sources
            self.targets[tg] = self.targets.get(tg, 0) + 1
            b = int(t)
            self.arrival_bins[b] = self.arrival_bins.get(b, 0) + 1
            if self.first_arrival is None:
                self.first_arrival = t
            self.last_arrival = t
            if len(self.arr_t) < ARRIVALS_KEPT:
                self.arr_t.append(t)
                self.arr_client.append(cl)
                self.arr_server.append(tg)
        # what the SYN meets at the target
        if h is not None and h.end is None:
            if t - h.t_last > self.idle:
                if moved is None:
                    c["stale"] += 1
                    if len(self.stale_hits) < self.keep:
                        self.stale_hits.append(self._record("stale", t, key, conn, h))
            elif moved is None:
                c["collisions"] += 1
                if h.state == SYN_RECV:
                    c["syn_recv_holders"] += 1
                rec = self._record("collision", t, key, conn, h)
                conn.record = rec
                h.victim_of.append(rec)
                if len(self.collisions) < self.keep:
                    self.collisions.append(rec)
                else:
                    rec["_dropped"] = True
        elif slot.tw_until > t and moved is None:
            c["time_wait_hits"] += 1
            rec = self._record("time-wait", t, key, conn, None,
                               {"closed_at": slot.tw_conn.end if slot.tw_conn else None,
                                "tw_answer": None})
            conn.tw_record = rec
            if len(self.tw_hits) < self.keep:
                self.tw_hits.append(rec)
        elif moved is None:
            c["new"] += 1
        if self.client_side and moved is None:
            d = self.live_by_port.get((key >> 49, key & 0xFFFF))
            if d and any(ip != (tg >> 16) for ip in d):
                c["overlaps"] += 1
        slot.pending[seq] = conn
        self.pending_isn[(client, seq)] = (key, conn)

    def _synack(self, t, key, slot, ack, cl):
        isn = (ack - 1) & MASK
        conn = slot.pending.pop(isn, None)
        h = slot.holder
        if conn is None:
            if h is not None and h.isn == isn:
                return                       # a retransmitted SYN-ACK
            if h is not None and h.end is None:
                return
            # the SYN came before the capture: a connection seen mid-handshake, not an arrival
            if h is not None:
                _remember(slot, h)
            conn = Conn(isn, t, midlife=True)
            conn.state = SYN_RECV
            conn.t_synack = t
            conn.client = cl >> 16
            slot.holder = conn
            self.c["midlife"] += 1
            self._live(key, conn, t)
            return
        self.pending_isn.pop((conn.client, isn), None)
        if h is not None:
            if h.end is None:
                self._end(h, t, "superseded", key)  # the target let the new one in
            _remember(slot, h)
        conn.t_synack = t
        conn.state = SYN_RECV
        conn.t_last = t
        slot.holder = conn
        if conn.tw_record is not None:
            self.c["tw_accepted"] += 1
            if conn.tw_record["tw_answer"] is None:
                conn.tw_record["tw_answer"] = "accepted"
            conn.tw_record["connect_delay_s"] = round(t - conn.t0, 6)
        slot.tw_until = -1.0
        if conn.record is not None:
            conn.record["connect_delay_s"] = round(t - conn.t0, 6)
            self._settle(conn.record, t)
        self._live(key, conn, t)

    def _settle(self, rec, t) -> None:
        """An unlisted collision whose new connection is resolved (connected, given up, or the
        capture ended): count its outcome and let the record go."""
        if rec.get("_dropped") and not rec.get("_settled"):
            rec["_settled"] = True
            self.unlisted_outcomes[outcome(rec, t)] += 1

    def _answer(self, t, key, slot, seq, ack) -> bool:
        """A pure ACK from the target while attempts are pending: the answer to the latest SYN
        (True), or the holder's own traffic (False)?"""
        best = None
        for conn in slot.pending.values():
            if conn.t_last_syn is not None and 0 <= t - conn.t_last_syn <= CHALLENGE_WINDOW:
                if best is None or conn.t_last_syn > best.t_last_syn:
                    best = conn
        if best is None or ack == ((best.isn + 1) & MASK):
            return False
        h = slot.holder
        live = h is not None and h.end is None
        if not live and best.tw_record is not None or not live and not self.client_side:
            # the older connection has ended: the ACK comes from its TIME_WAIT, not a challenge
            best.t_last_syn = None
            self.c["time_wait_acks"] += 1
            if best.tw_record is not None and best.tw_record["tw_answer"] is None:
                best.tw_record["tw_answer"] = "ack"
                self.c["tw_acked"] += 1
            return True
        if self.client_side:
            # at a client or NAT the holder (through another node) is out of view: an ACK that
            # does not acknowledge the SYN is all there is to see
            best.t_last_syn = None
            self.c["challenge_acks"] += 1
            rec = best.record
            if rec is None:
                best.record = rec = self._record("challenge-ack-seen", t, key, best, None)
                rec["challenge_ack"] = {"time": t, "after_s": round(t - best.t0, 6),
                                        "seq": seq, "ack": ack, "names_older": None}
                if len(self.collisions) < self.keep:
                    self.collisions.append(rec)
            rec["_last_ca_ack"] = ack
            rec["_ca_t"] = t
            return True
        if h.c_next is not None and ack != h.c_next and not _seq_near(ack, h.c_next):
            return False                     # the holder's own ACK, not an answer
        best.t_last_syn = None               # one answer per SYN
        if h.state == SYNCED:
            self.c["challenge_acks"] += 1
        rec = best.record
        if rec is not None:
            if rec["challenge_ack"] is None:
                rec["challenge_ack"] = {"time": t, "after_s": round(t - rec["_t"], 6),
                                        "seq": seq, "ack": ack,
                                        "names_older": h.c_next is not None}
            rec["_last_ca_ack"] = ack
            rec["_ca_t"] = t
        return True

    def _client_rst(self, t, key, slot, seq):
        c = self.c
        h = slot.holder
        live = h is not None and h.end is None
        # the RST that answers a challenge ACK: its sequence number is the ACK's acknowledgment
        # number; of several attempts challenged alike, the one challenged last sent it
        rec = None
        for conn in slot.pending.values():
            r = conn.record
            ca = None if r is None else r.get("_last_ca_ack")
            if ca is None or not (seq == ca or live and seq == h.c_next):
                continue
            if rec is None or r["_ca_t"] > rec["_ca_t"]:
                rec = r
        if rec is not None and (self.client_side or live):
            c["client_rsts"] += 1
            exact = None
            if not self.client_side:
                # RCV.NXT exactly resets the holder (or RCV.NXT - 1 after its client's FIN); any
                # other (it moved on since) draws another challenge ACK and resets nothing
                exact = seq == rec["_last_ca_ack"] if h.c_next is None else _rst_resets(h, seq)
            if rec["client_rst"] is None:
                rec["client_rst"] = {"time": t, "after_s": round(t - rec["_t"], 6), "seq": seq,
                                     "matches_older": exact}
            if exact:
                self._end(h, t, "reset-by-new-client", key, by=rec)
            return
        if not live and slot.tw_until > t:
            if slot.pending and not self.client_side:
                # the answer to an ACK from TIME_WAIT: it ends the TIME_WAIT, nothing more
                c["time_wait_rsts"] += 1
                conn = next(iter(slot.pending.values()))
                if conn.tw_record is not None and conn.tw_record["client_rst"] is None:
                    conn.tw_record["client_rst"] = {"time": t, "seq": seq}
            slot.tw_until = -1.0
        elif live and _rst_resets(h, seq):
            self._end(h, t, "client-rst", key)

    def _target_rst(self, t, key, slot, seq):
        h = slot.holder
        if h is not None and h.end is None:
            if seq == slot.old_ack:
                # the answer to an ended connection's segment (its sequence number is that
                # segment's ACK number): a request in SYN_RECV sends it and waits on
                slot.old_ack = None
                return
            self._end(h, t, "target-rst", key)
        elif slot.pending:
            self.c["refused"] += 1

    # -- memory and the end -------------------------------------------------------------------
    def _evict(self, now: float) -> None:
        """Forget what can no longer matter: closed 4-tuples past TIME_WAIT, pending attempts that
        Linux has given up, holders idle past twice the idle timeout (censored at their last
        packet)."""
        dead = []
        idle2 = 2 * self.idle
        for key, slot in self.slots.items():
            if slot.pending:
                for isn, conn in list(slot.pending.items()):
                    if now - conn.t_last > PENDING_LIFE:
                        del slot.pending[isn]
                        self.pending_isn.pop((conn.client, isn), None)
                        if conn.record is not None:
                            self._settle(conn.record, now)
            h = slot.holder
            if h is not None and h.end is None:
                if now - h.t_last > idle2:
                    if not h.midlife and h.state == SYNCED:
                        self._sample(max(h.t_last - h.t0, 1e-6), 0)
                    h.end = h.t_last
                    h.how = "idle"
                    self.c["evicted"] += 1
                    self._unlive(key, h)
                else:
                    continue
            if not slot.pending and slot.tw_until <= now and now - slot.last > 1.0:
                dead.append(key)
        for key in dead:
            del self.slots[key]
        self.live_peak = max(self.live_peak, len(self.slots))

    def finish(self, t_end: float | None = None) -> None:
        """The capture ended: live arrivals are censored at its end; outcomes are decided."""
        t_end = self.t_last if t_end is None else t_end
        if t_end is None:
            return
        self.live_peak = max(self.live_peak, len(self.slots))
        for slot in self.slots.values():
            h = slot.holder
            if h is not None and h.end is None and not h.midlife and h.state == SYNCED:
                self._sample(max(t_end - h.t0, 1e-6), 0)
            for conn in slot.pending.values():
                if conn.record is not None:
                    self._settle(conn.record, t_end)
        for rec in self.collisions:
            rec["outcome"] = outcome(rec, t_end)

    def arrivals(self) -> dict:
        """The kept arrivals in order, as arrays: time (s), client endpoint, server endpoint
        (an endpoint is address << 16 | port)."""
        return {"t": np.array(self.arr_t, dtype=np.float64),
                "client": np.array(self.arr_client, dtype=np.uint64),
                "server": np.array(self.arr_server, dtype=np.uint64)}


def needed(cl: np.ndarray, tg: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """The packets of a time-ordered chunk the classification reads; the rest (data and ACKs in
    the middle of a connection) change nothing it looks at. Per 4-tuple, in time order, kept:
    every SYN, FIN and RST and the two packets after each (the third ACK of a handshake, a
    challenge ACK and the RST answering it, the last ACK of a close), the packet before each SYN
    (what the holder last did: its idle time and RCV.NXT) and each RST (the segment a target's
    RST answers), and the first and last packet of the 4-tuple in the chunk (a connection seen
    mid-life; the last activity)."""
    n = cl.size
    order = np.lexsort((tg, cl))              # stable: time order within each 4-tuple
    c, t = cl[order], tg[order]
    same = np.zeros(n, bool)                  # same 4-tuple as the packet before (in this order)
    same[1:] = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
    f = flags[order]
    ctl = (f & (SYN | FIN | RST)) != 0
    keep = ctl | ~same
    keep[:-1] |= ~same[1:]                    # last of its 4-tuple
    after1 = np.zeros(n, bool)
    after1[1:] = ctl[:-1] & same[1:]
    after2 = np.zeros(n, bool)
    after2[2:] = ctl[:-2] & same[2:] & same[1:-1]
    before = np.zeros(n, bool)
    before[:-1] = ((f[1:] & (SYN | RST)) != 0) & same[1:]
    keep |= after1 | after2 | before
    out = np.zeros(n, bool)
    out[order[keep]] = True
    return out


def outcome(rec: dict, t_end: float) -> str:
    """The model's name for what the capture shows happened at this collision."""
    end = rec.get("holder_end")
    if rec.get("kind") == "challenge-ack-seen":
        return "reset-existing" if rec.get("client_rst") else "unknown"
    if end is not None and end["how"] == "reset-by-new-client":
        return "reset-existing"
    delay = rec.get("connect_delay_s")
    if rec.get("syn_retransmissions", 0) >= 1 and (
            delay is None or delay >= 0.2 or (end is not None and end["how"] != "superseded")):
        return "delay-new"
    if delay is not None and delay >= 0.2:
        return "delay-new"
    return "unknown"
