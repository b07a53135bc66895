"""`collide scan`: find the collisions in a user's own packet captures, describe the traffic as a
scenario, and hold the model's prediction against what was seen (issue 17, docs/scan.md).

    >>> from collide.scan import scan
    >>> obs = scan(["target-0.pcap", "target-1.pcap"], port=6000)
    >>> obs.collisions, obs.rate_per_s, obs.lifetime["mean_s"]
    >>> result = obs.verdict(nodes=3, targets=6, seed=1)

The pipeline: the files merged in time order (capture.py), duplicate packets dropped
(`_track.Dedupe`), the side of the capture told (forward.py: a target, a client, or a host that
forwards: a NAT or a load-balancer node, whose one rewritten side is followed), every 4-tuple
followed (`_track.Tracker`, the compiled twin of the reference `track.Tracker`), the traffic
described (describe.py), the NAT's allocator told (nat.py), and the model's prediction held against
the count (verdict.py).
"""
from __future__ import annotations

import gc
import ipaddress
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import describe
from .capture import CaptureInputError, Merged, check
from .forward import detect

SIDES = ("target", "client", "nat", "load-balancer")

__all__ = ["scan", "Observation", "CaptureInputError", "SCHEMA_VERSION", "ScanInputError"]

SCHEMA_VERSION = 1
#: Linux's SYN retransmission times after the first SYN (initial RTO 1 s, doubling).
LINUX_SYN_RETRIES = [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]


class ScanInputError(ValueError):
    """A flag value that cannot work; one line."""


def _addr(merged: Merged, value: int) -> str:
    if value < (1 << 32):
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv6Address(merged.addresses6[value - (1 << 32)]))


def _endpoint(merged: Merged, packed: int) -> str:
    ip = _addr(merged, packed >> 16)
    return (f"[{ip}]" if ":" in ip else ip) + f":{packed & 0xFFFF}"


def _service_ports(first: dict, port: int | None) -> set[int]:
    """The listening ports: --port, else the ports pure SYNs went to in the first chunk, else the
    port on one side of the most packets."""
    if port:
        return {int(port)}
    import numpy as np
    syn = (first["flags"] & 0x12) == 0x02
    if syn.any():
        ports, counts = np.unique(first["dport"][syn], return_counts=True)
        top = counts.max()
        # the ports that got a real share of the SYNs (not a stray ssh login)
        return {int(p) for p, c in zip(ports, counts) if c >= max(1, top // 20)}
    sa = (first["flags"] & 0x12) == 0x12
    if sa.any():
        ports, counts = np.unique(first["sport"][sa], return_counts=True)
        return {int(ports[counts.argmax()])}
    both = np.concatenate([first["sport"], first["dport"]])
    ports, counts = np.unique(both, return_counts=True)
    return {int(ports[counts.argmax()])}


@dataclass
class Observation:
    """What the captures show (issue 17): counts, the collisions with their evidence, the traffic."""
    files: list
    formats: list
    side: str
    side_reason: str
    ports: list
    packets: int
    tcp_packets: int
    t_first: float | None
    t_last: float | None
    window: tuple
    counts: dict
    collisions_list: list
    time_wait_list: list
    stale_list: list
    lifetime: dict
    rate_per_s: float
    schedule: list
    sources: dict
    targets: dict
    nat_ips: int
    nat_k_eff: float
    port_min: int
    port_max: int
    port_how: str
    server_close_fraction: float | None
    warmup: object
    notes: list
    truncated: list
    elapsed_s: float
    live_peak: int
    time_wait: float
    idle_timeout: float
    reader_counts: dict = field(default_factory=dict)
    unlisted_outcomes: dict = field(default_factory=lambda: {"reset-existing": 0,
                                                             "delay-new": 0, "unknown": 0})
    duplicates: int = 0
    forwarding: dict | None = None
    nat_allocator: dict = field(default_factory=dict)
    nodes_bound: int = 1
    nodes_bound_at: dict | None = None

    # -- headline numbers -------------------------------------------------------------------
    @property
    def connections(self) -> int:
        return self.counts["arrivals"]

    @property
    def collisions(self) -> int:
        return self.counts["collisions"]

    @property
    def time_wait_hits(self) -> int:
        return self.counts["time_wait_hits"]

    @property
    def no_connections(self) -> bool:
        """No TCP connection at all: nothing arrived and nothing was seen mid-life."""
        return self.counts["arrivals"] == 0 and self.counts["midlife"] == 0

    @property
    def span_s(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def outcomes(self) -> dict:
        """Over every collision: those listed, and those past the list (decided as they ended)."""
        out = dict(self.unlisted_outcomes)
        for r in self.collisions_list:
            if r["kind"] == "collision":
                out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        return out

    # -- the scenario -------------------------------------------------------------------------
    def scenario(self, *, nodes: int | None = None, targets: int | None = None,
                 cross_zone: bool | None = None, nat_ports: tuple | None = None,
                 lifetimes_dir: str | None = None, on_collision: str | None = None):
        """The scenario this traffic makes, with what a capture cannot show from the flags
        (defaults where missing: nodes 3, targets as seen, cross-zone on). Writes the lifetimes
        file into `lifetimes_dir` (a temporary directory if None)."""
        from ..scenario import Scenario
        seen = max(1, len(self.targets))
        b = int(targets) if targets else seen
        rate = max(self.rate_per_s, 1e-9) * b / seen
        d = lifetimes_dir or tempfile.mkdtemp(prefix="collide-scan-")
        if self.lifetime.get("values"):
            write_lifetimes(Path(d) / "lifetimes.csv", self.lifetime["values"])
            duration = {"dist": "empirical", "file": "lifetimes.csv", "column": "duration_s"}
        else:
            duration = {"dist": "exponential", "mean": self.lifetime.get("lower_bound_s") or 1.0}
        pmin, pmax = nat_ports or (self.port_min, self.port_max)
        traffic = {"rate": rate, "duration": duration, "horizon": max(self.span_s, 1e-3),
                   "warmup": self.warmup, "clients": max(1, min(len(self.sources), 10_000_000))}
        if self.schedule:
            traffic["schedule"] = [[s, r * b / seen] for s, r in self.schedule]
        if on_collision is None:
            oc = self.outcomes
            on_collision = "delay-new" if oc["delay-new"] > oc["reset-existing"] else "reset-existing"
        n = int(nodes) if nodes else max(3, min(self.nodes_bound, 64))
        target = {"time_wait": self.time_wait,
                  "server_close_fraction": self.server_close_fraction or 0.0,
                  "on_collision": on_collision}
        if on_collision == "delay-new":
            target["syn_retries"] = LINUX_SYN_RETRIES
        cz = True if cross_zone is None else bool(cross_zone)
        if not cz and b < n:
            b = n
        data = {"traffic": traffic,
                "nat": {"ips": self.nat_ips, "port_min": pmin, "port_max": pmax,
                        "per_destination_limit": min(55000, pmax - pmin + 1)},
                "load_balancer": {"nodes": n, "targets": b, "cross_zone": cz},
                "target": target}
        return Scenario.from_dict(data, base_dir=d)

    def verdict(self, *, nodes: int | None, targets: int | None = None,
                cross_zone: bool | None = None, nat_ports=None, all_allocators: bool = False,
                seed: int = 1, backend: str = "cython", progress=None,
                lifetimes_dir: str | None = None) -> dict:
        """Prediction and verdict: None entries, with `reason`, where none can be given (a capture
        not taken at a target; no connections). See collide.scan.verdict."""
        from .verdict import (ENVELOPE, MAX_NODES, NO_CONNECTIONS, at_nodes, node_evidence,
                              predict, verdict)
        lower = max(1, self.nodes_bound)
        top = max(MAX_NODES, lower)          # the node counts weighed: up to 8, or the bound
        n_ref = int(nodes) if nodes else max(2, lower)
        s = self.scenario(nodes=n_ref, targets=targets, cross_zone=cross_zone,
                          nat_ports=nat_ports, lifetimes_dir=lifetimes_dir)
        seen = max(1, len(self.targets))
        share = min(1.0, seen / s.load_balancer.total_targets)
        missing = []
        if cross_zone is None:
            missing.append("--cross-zone/--no-cross-zone: not visible in a capture; assumed on")
        if not targets:
            missing.append(f"--targets B: assumed the {seen} target(s) seen are all there are")
        out = {"scenario": s, "missing": missing, "share": share, "predictions": None,
               "verdict": None, "reason": None, "seed": seed, "nodes": None,
               "allocator": None, "notes": []}
        if self.side != "target":
            where = {"nat": "a NAT host", "load-balancer": "a load-balancer node"}.get(
                self.side, f"a {self.side}")
            out["reason"] = (f"taken at {where}, not at a target: a collision happens at a "
                             "target, between connections through two nodes")
            out["missing"] = []
            return out
        if self.no_connections:
            out["reason"] = NO_CONNECTIONS
            out["missing"] = []
            return out
        a = self.nat_allocator or {}
        if a.get("evidence") == "strong" and a.get("model"):
            names = (a["model"],)
            out["allocator"] = {"used": a["model"], "from": "the capture",
                                "class": a["class"]}
            if all_allocators:
                out["notes"].append(f"--all-allocators: the capture shows a {a['class']} "
                                    f"allocator ({a['why']}); the verdict uses it")
        else:
            names = ENVELOPE if all_allocators else ("random",)
            out["allocator"] = {"used": list(names) if all_allocators else names[0],
                                "from": "--all-allocators" if all_allocators else "default",
                                "class": None}
        cz = s.load_balancer.cross_zone
        p = predict(s, share=share, seed=seed, backend=backend, allocators=names,
                    progress=progress)
        base = p.get("random") or p[names[0]]
        out["nodes"] = node_evidence(self.collisions, base, n_ref, cz, lower,
                                     self.nodes_bound_at, nodes, top=top)
        if nodes:
            intervals = [x["interval"] for x in p.values()]
        else:
            span = range(lower, top + 1)
            intervals = [at_nodes(x, n_ref, n, cz)["interval"] for x in p.values() for n in span]
            out["notes"].append(
                f"--nodes not given: a capture shows the node count only as a bound (N >= "
                f"{lower}); the verdict spans N = {lower}..{top}, and the prediction shown "
                f"is at N = {n_ref}")
        out["predictions"] = p
        out["verdict"] = verdict(self.collisions, intervals, s)
        if out["nodes"]["contradicted"]:
            out["notes"].append(out["nodes"]["contradicted"])
        return out

    # -- JSON -----------------------------------------------------------------------------------
    def to_dict(self, result: dict | None = None) -> dict:
        def clean(rec):
            return {k: v for k, v in rec.items() if not k.startswith("_")}
        lt = self.lifetime
        d = {
            "schema_version": SCHEMA_VERSION,
            "files": self.files, "formats": self.formats,
            "capture_side": self.side, "capture_side_reason": self.side_reason,
            "ports": self.ports,
            "packets": self.packets, "tcp_packets": self.tcp_packets,
            "start": self.t_first, "end": self.t_last,
            "window_s": self.span_s,
            "connections": self.connections,
            "collisions": self.collisions,
            "time_wait_hits": self.time_wait_hits,
            "stale": self.counts["stale"],
            "retransmissions": self.counts["retransmissions"],
            "moved_by_nat": self.counts["moved"],
            "seen_mid_life": self.counts["midlife"],
            "challenge_acks": self.counts["challenge_acks"],
            "client_rsts": self.counts["client_rsts"],
            "time_wait_acks": self.counts["time_wait_acks"],
            "port_overlaps": self.counts["overlaps"] if self.side in ("client", "nat") else None,
            "duplicate_packets": self.duplicates,
            "forwarding": self.forwarding,
            "nat_allocator": self.nat_allocator,
            "nodes_lower_bound": self.nodes_bound,
            "nodes_lower_bound_at": self.nodes_bound_at,
            "outcomes": self.outcomes,
            "rate_per_s": self.rate_per_s,
            "schedule": self.schedule or None,
            "lifetime_mean_s": lt.get("mean_s"),
            "lifetime_median_s": lt.get("median_s"),
            "lifetime_naive_mean_s": lt.get("naive_mean_s"),
            "lifetime_sample": {"n": lt.get("n", 0), "ended": lt.get("ended", 0),
                                "censored": lt.get("censored", 0)},
            "server_close_fraction": self.server_close_fraction,
            "sources": len(self.sources) + self.counts.get("other_sources", 0),
            "nat_ips": self.nat_ips, "nat_k_eff": self.nat_k_eff,
            "nat_ports": [self.port_min, self.port_max], "nat_ports_how": self.port_how,
            "targets_seen": sorted(self.targets),
            "live_peak": self.live_peak,
            "truncated": self.truncated,
            "notes": self.notes,
            "elapsed_s": self.elapsed_s,
            "collisions_listed": [clean(r) for r in self.collisions_list],
            "time_wait_listed": [clean(r) for r in self.time_wait_list[:1000]],
            "stale_listed": [clean(r) for r in self.stale_list[:1000]],
            "predicted_collisions": None, "predicted_interval": None, "predicted_range": None,
            "predictions": None, "verdict": None, "verdict_reason": None, "nodes": None,
            "allocator_used": None, "missing": [], "scenario": None,
        }
        if result is not None:
            d["missing"] = result["missing"]
            d["scenario"] = result["scenario"].to_dict()
            d["verdict_reason"] = result["reason"]
            d["nodes"] = result["nodes"]
            d["allocator_used"] = result["allocator"]
            d["notes"] = self.notes + result["notes"]
            d["seed"] = result["seed"]
            p = result["predictions"]
            if p:
                base = p.get("random") or next(iter(p.values()))
                d["predicted_collisions"] = base["expected"]
                d["predicted_interval"] = result["verdict"]["interval"]
                d["predicted_range"] = [min(x["expected"] for x in p.values()),
                                        max(x["expected"] for x in p.values())]
                d["predictions"] = p
                d["verdict"] = result["verdict"]["text"]
                d["verdict_consider"] = result["verdict"]["consider"]
        return d


def write_lifetimes(path: Path, values) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("duration_s\n")
        for v in values:
            fh.write(f"{v:.6g}\n")


def scan(paths, *, port: int | None = None, time_wait: float = 60.0, idle_timeout: float = 350.0,
         side: str = "auto", progress: Callable[[float], None] | None = None,
         sample: int = 100_000, keep: int = 10_000, chunk: int = 262144,
         prefilter: bool = True, tracker: str = "compiled") -> Observation:
    """Read the captures (merged in time order) and follow every 4-tuple; see the module doc.
    `tracker`: "compiled" (collide.scan._track) or "python" (the reference, collide.scan.track)."""
    from ._track import Dedupe
    from .nat import classify
    if tracker == "compiled":
        from ._track import Tracker
    elif tracker == "python":
        from .track import Tracker
    else:
        raise ValueError(f"tracker {tracker!r}: allowed: compiled, python")
    if side != "auto" and side not in SIDES:
        raise ScanInputError(f"--side {side!r}: allowed: auto, {', '.join(SIDES)}")
    t0 = time.perf_counter()
    paths = [str(p) for p in paths]
    if not paths:
        raise CaptureInputError("CAPTURE: give at least one capture file")
    formats = [check(p) for p in paths]
    merged = Merged(paths, port=port or 0, chunk=chunk)
    dedupe = Dedupe()
    notes: list[str] = []
    legs = None
    # the tracker makes a few objects per connection and frees them as connections end; none of
    # them refer back to one another, so the cyclic collector (which walks every live object each
    # time it runs) only costs time here: a third of it on short connections
    collecting = gc.isenabled()
    gc.disable()
    try:
        stream = (dedupe(c) for c in merged.chunks(progress))
        first = next(stream, None)
        if first is None:
            ports = {int(port)} if port else set()
            detected, reason = "target", "assumed (the capture holds no TCP packet)"
        else:
            ports = _service_ports(first, port)
            detected, reason, legs = detect(first, ports)
        side_used = detected if side == "auto" else side
        if side_used != detected and first is not None:
            reason = f"given (--side {side}); the capture looks like a {detected}'s: {reason}"
            if side == "target" and detected in ("nat", "load-balancer"):
                notes.append(f"--side target: read as a target's capture although it looks like a "
                             f"{detected}'s; a connection seen on both of its sides may be counted twice")
            else:
                notes.append(f"--side {side}: overrides what the capture looks like ({detected})")
        elif side != "auto":
            reason = "given (--side), as the capture shows"
        if legs is not None and legs.kind != side_used:
            legs = None
        tr = Tracker(ports, time_wait=time_wait, idle_timeout=idle_timeout,
                     side="client" if side_used in ("client", "nat") else "target",
                     sample=sample, keep=keep, prefilter=prefilter)
        if first is not None:
            tr.feed(legs.select(first) if legs is not None else first)
            for ch in stream:
                tr.feed(legs.select(ch) if legs is not None else ch)
        tr.finish()
    finally:
        merged.close()
        if collecting:
            gc.enable()
    readers = merged.readers
    packets = sum(r.packets for r in readers)
    tcp = sum(r.tcp for r in readers)
    truncated = [{"file": p, "bytes": r.truncated_bytes} for p, r in zip(paths, readers)
                 if r.truncated]
    for t in truncated:
        notes.append(f"{t['file']}: the last record is cut short ({t['bytes']} bytes): "
                     "ignored, the rest used")
    other_port = sum(r.other_port for r in readers)
    if port and tcp == 0 and other_port > 0:
        raise CaptureInputError(f"--port {port}: no TCP packets to or from it in "
                                f"{', '.join(paths)} ({other_port:,} TCP packets on other ports); "
                                "give the targets' listening port, or leave --port out")
    untimed = sum(r.no_timestamp for r in readers)
    if packets > 0 and tcp == 0 and untimed:
        raise CaptureInputError(f"CAPTURE {', '.join(paths)}: {untimed:,} of {packets:,} packets "
                                "are pcapng simple packet blocks, which carry no timestamp; "
                                "re-save the capture with timestamps (tcpdump -w, or editcap -F "
                                "pcapng)")
    if packets > 0 and tcp == 0:
        what = f" to or from port {port}" if port else ""
        raise CaptureInputError(f"CAPTURE {', '.join(paths)}: no TCP packets{what} among "
                                f"{packets:,} packets; expected a capture of the targets' TCP "
                                "traffic")
    c = tr.c
    if tcp > 0 and c["packets"] - c["other_port"] == 0 and legs is None:
        raise CaptureInputError(f"--port {port}: no TCP packets to or from it")
    if dedupe.dropped:
        notes.append(f"{dedupe.dropped:,} duplicate packets (seen again within "
                     f"{1e3 * _dup_window():g} ms: the same capture twice, overlapping pieces, "
                     "or both sides of a bridge) counted once")
    forwarding = None
    if legs is not None:
        forwarding = {"kind": legs.kind, "forwarded_syns": legs.pairs,
                      "followed": ("the NAT's outside (its public addresses as the clients)"
                                   if legs.kind == "nat" else
                                   "the side towards the targets"),
                      "addresses": [_addr(merged, int(a)) for a in legs.addresses[:16]]}
    if side_used == "client":
        notes.append("taken at a client, not at a target: collisions happen at the target "
                     "and cannot be counted here; shown: ports live towards two load-balancer "
                     "addresses at once, and challenge-ACK symptoms")
    elif side_used == "nat":
        notes.append("taken at a NAT host: its outside is followed (each connection once); a "
                     "collision happens at a target and cannot be counted here; shown: the NAT's "
                     "port choices per destination (its allocator), ports live towards several "
                     "destinations at once, and challenge-ACK symptoms; no verdict")
    elif side_used == "load-balancer":
        notes.append("taken at a load-balancer node: its side towards the targets is followed "
                     "(each connection once); it sees only the connections through this node, "
                     "so no collision between two nodes; shown: the targets it picks; no verdict")
    if packets == 0 or c["arrivals"] == 0 and c["midlife"] == 0:
        notes.append("no TCP connection in the capture: no connections, so no verdict")
    elif c["syns"] == 0:
        notes.append("no SYN in the capture: no new connection, so no collision (zero)")
    # describe the traffic
    w0, w1, wnotes = describe.window(tr.t_first, tr.t_last, tr.first_arrival, tr.last_arrival,
                                     c["arrivals"])
    notes += wnotes
    span = w1 - w0
    rate = c["arrivals"] / span if span > 0 else 0.0
    sched = describe.schedule(tr.arrival_bins, w0, w1, c["arrivals"])
    if sched:
        notes.append(f"the rate moves: {len(sched)} segments (traffic.schedule)")
    life = describe.lifetime_law(tr.sample)
    ips, k_eff, nnotes = describe.nat_ips(tr.sources, tr.other_sources)
    notes += nnotes
    pmin, pmax, phow = describe.port_range(tr.port_min, tr.port_max, c["arrivals"])
    allocator = classify(tr.arrivals(), pmin, pmax,
                         per_destination=side_used in ("client", "nat"),
                         mappings=legs.mapping_arrays() if legs is not None and legs.kind == "nat"
                         else None)
    closed = c["server_close"] + c["client_close"]
    scf = c["server_close"] / closed if closed else None
    warm = "auto" if c["midlife"] else 0.0
    if c["evicted"]:
        notes.append(f"{c['evicted']:,} connections idle more than {2 * idle_timeout:g} s were "
                     "dropped from memory (lifetimes censored at their last packet)")
    targets = {_endpoint(merged, k): v for k, v in tr.targets.items()}
    sources = {_addr(merged, k): v for k, v in tr.sources.items()}

    def fix(rec):
        k = rec["_key"]
        cl, tg = k >> 49, k & ((1 << 49) - 1)
        rec["client"] = _endpoint(merged, cl)
        rec["target"] = _endpoint(merged, tg)
        mv = rec.get("moved_to")
        if mv and "_key" in mv:
            rec["moved_to"] = {"time": mv["time"], "client": _endpoint(merged, mv["_key"] >> 49)}
        return rec
    for lst in (tr.collisions, tr.tw_hits, tr.stale_hits):
        for rec in lst:
            fix(rec)
    bound_at = None
    if tr.nodes_bound_at is not None and tr.nodes_bound > 1:
        t_b, k_b = tr.nodes_bound_at
        bound_at = {"time": t_b, "client": _endpoint(merged, k_b >> 49),
                    "servers": tr.nodes_bound}
    rc = {k: sum(getattr(r, k) for r in readers) for k in
          ("non_tcp", "other_link", "fragments", "short", "no_timestamp", "other_port")}
    return Observation(
        files=paths, formats=formats, side=side_used, side_reason=reason,
        ports=sorted(ports), packets=packets, tcp_packets=tcp - dedupe.dropped,
        t_first=tr.t_first, t_last=tr.t_last, window=(w0, w1),
        counts=dict(c, other_sources=tr.other_sources),
        collisions_list=tr.collisions,
        time_wait_list=tr.tw_hits, stale_list=tr.stale_hits, lifetime=life, rate_per_s=rate,
        schedule=sched, sources=sources, targets=targets, nat_ips=ips, nat_k_eff=k_eff,
        port_min=pmin, port_max=pmax, port_how=phow, server_close_fraction=scf, warmup=warm,
        notes=notes + ([f"collisions past the first {keep:,} are counted but not listed"]
                       if c["collisions"] > keep else []),
        truncated=truncated, elapsed_s=time.perf_counter() - t0,
        live_peak=tr.live_peak, time_wait=time_wait, idle_timeout=idle_timeout, reader_counts=rc,
        unlisted_outcomes=dict(tr.unlisted_outcomes), duplicates=dedupe.dropped,
        forwarding=forwarding, nat_allocator=allocator, nodes_bound=tr.nodes_bound,
        nodes_bound_at=bound_at)


def _dup_window() -> float:
    from ._track import DUP_WINDOW_NS
    return DUP_WINDOW_NS * 1e-9
