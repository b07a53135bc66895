"""Captures taken on a host that forwards the traffic: a NAT (both of its sides) or a load-balancer
node (issue 25). Such a host shows every SYN twice: as it came in, and as it left with an address
rewritten. A copy is told from a retransmission by its content: the same sequence number and the
same TCP timestamp (TSval, which a retransmission renews), a few microseconds apart.

* **NAT**: the source is rewritten (the destination kept). What it shows: the NAT's port choice for
  each inside endpoint and destination, so its allocator (collide.scan.nat), whether it maps one
  inside endpoint to one port for every destination (endpoint-independent), whether it keeps the
  inside port, and the ports live towards several destinations at once.
* **load-balancer node**: the destination is rewritten (the client's address kept: client IP
  preservation). What it shows: the targets this node picks, for the connections through it.

Neither shows a collision (it happens at a target, between connections through two nodes), so the
scan gives no verdict for them, and follows each connection on one side only (the rewritten one:
the NAT's outside, the node's target side), so that none is counted twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SYN, ACK = 0x02, 0x10
#: a forwarded copy follows its original within this (without a timestamp option to match on);
#: the quickest retransmission of a SYN (after an RST, TCP_TIMEOUT_MIN) is 2 ms or more later
WINDOW_NS = 1_000_000
#: with equal TSvals (a retransmission carries a later one) a slower forwarder still matches
WINDOW_TS_NS = 50_000_000
#: a forwarding host: at least this share of the SYNs in the first chunk come in pairs
MIN_SHARE = 0.2
MAPPINGS_KEPT = 200_000


def syn_pairs(ch: dict) -> dict:
    """The forwarded SYNs of a time-ordered chunk: pairs (original, copy) with the same sequence
    number and TSval, different addresses or ports, the copy within the window. Returns index
    arrays `first`, `second` into the chunk and `kind` (1: source rewritten, a NAT; 2: destination
    rewritten, a load-balancer node; 3: both), and `syns`, the pure SYNs seen."""
    f = ch["flags"]
    syn = np.nonzero((f & (SYN | ACK)) == SYN)[0]
    empty = {"first": np.zeros(0, np.int64), "second": np.zeros(0, np.int64),
             "kind": np.zeros(0, np.int8), "syns": int(syn.size)}
    if syn.size < 2:
        return empty
    seq = ch["seq"][syn].astype(np.uint64)
    tsv = ch["tsval"][syn].astype(np.uint64)
    ts = ch["ts"][syn]
    order = np.lexsort((ts, tsv, seq))
    i, j = order[:-1], order[1:]
    same = (seq[i] == seq[j]) & (tsv[i] == tsv[j])
    gap = ts[j] - ts[i]
    window = np.where(tsv[i] != 0, WINDOW_TS_NS, WINDOW_NS)
    src, dst = ch["src"][syn], ch["dst"][syn]
    sp, dp = ch["sport"][syn], ch["dport"][syn]
    s_new = (src[i] != src[j]) | (sp[i] != sp[j])
    d_new = (dst[i] != dst[j]) | (dp[i] != dp[j])
    pair = same & (gap >= 0) & (gap <= window) & (s_new | d_new)
    i, j = i[pair], j[pair]
    kind = np.where(s_new[pair] & ~d_new[pair], 1, np.where(~s_new[pair] & d_new[pair], 2, 3))
    return {"first": syn[i], "second": syn[j], "kind": kind.astype(np.int8),
            "syns": int(syn.size)}


@dataclass
class Legs:
    """Which packets of a forwarding host's capture to follow: those with `addresses` on the
    rewritten side (the NAT's public addresses as the client; the targets as the server)."""
    kind: str                                   # "nat" or "load-balancer"
    addresses: np.ndarray
    ports: np.ndarray
    pairs: int = 0
    mappings: dict = field(default_factory=lambda: {"t": [], "inside": [], "outside": [],
                                                    "server": []})
    kept: int = 0

    def select(self, ch: dict) -> dict:
        """The chunk's packets on the followed side; the NAT's mappings (inside endpoint ->
        outside endpoint, per destination) are noted from its SYN pairs."""
        if self.kind == "nat":
            self._note_mappings(ch)
        up = np.isin(ch["dport"], self.ports)
        if self.kind == "nat":     # the client is the NAT's public address
            keep = np.where(up, np.isin(ch["src"], self.addresses),
                            np.isin(ch["dst"], self.addresses))
        else:                      # the server is a target
            keep = np.where(up, np.isin(ch["dst"], self.addresses),
                            np.isin(ch["src"], self.addresses))
        if keep.all():
            return ch
        idx = np.nonzero(keep)[0]
        return {k: v[idx] for k, v in ch.items()}

    def _note_mappings(self, ch: dict) -> None:
        if self.kept >= MAPPINGS_KEPT:
            return
        p = syn_pairs(ch)
        m = p["kind"] == 1
        a, b = p["first"][m], p["second"][m]
        n = min(a.size, MAPPINGS_KEPT - self.kept)
        a, b = a[:n], b[:n]
        ep = lambda ip, port: (ip.astype(np.uint64) << np.uint64(16)) | port.astype(np.uint64)  # noqa: E731
        self.mappings["t"].append(ch["ts"][a] * 1e-9)
        self.mappings["inside"].append(ep(ch["src"][a], ch["sport"][a]))
        self.mappings["outside"].append(ep(ch["src"][b], ch["sport"][b]))
        self.mappings["server"].append(ep(ch["dst"][b], ch["dport"][b]))
        self.kept += n

    def mapping_arrays(self) -> dict:
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self.mappings.items()}


def detect(first: dict, ports) -> tuple[str, str, Legs | None]:
    """(side, reason, legs) from the first chunk: a forwarding host when at least MIN_SHARE of its
    SYNs come in pairs (a NAT when the source is rewritten, else a load-balancer node); else the
    link layer's direction of the SYNs (arriving: a target; leaving: a client), else a target."""
    p = syn_pairs(first)
    n_pairs = int(p["first"].size)
    if n_pairs >= 2 and n_pairs >= MIN_SHARE * p["syns"]:
        nat = int((p["kind"] == 1).sum())
        kind = "nat" if nat * 2 > n_pairs else "load-balancer"
        if kind == "nat":
            addrs = first["src"][p["second"][p["kind"] == 1]]
            what = "the source rewritten"
        else:
            addrs = first["dst"][p["second"][p["kind"] != 1]]
            what = "the destination rewritten"
        legs = Legs(kind, np.unique(addrs), np.array(sorted(ports), dtype=np.uint16), n_pairs)
        return kind, (f"{n_pairs:,} of its {p['syns']:,} SYNs are forwarded copies (same "
                      f"sequence number and timestamp, {what})"), legs
    syn = (first["flags"] & (SYN | ACK)) == SYN
    dirs = np.bincount(first["dirn"][syn], minlength=3) if syn.any() else np.zeros(3, int)
    if dirs[1] + dirs[2] > 0:
        if dirs[2] > dirs[1]:
            return "client", "the SYNs leave this host (link-layer direction)", None
        return "target", "the SYNs arrive at this host (link-layer direction)", None
    return "target", "assumed (no direction in the link layer)", None
