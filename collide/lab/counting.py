"""Turn the lab's logs into the model's quantities (docs/model.md §2.2): collisions counted on first SYNs.

Inputs, all timestamped with the same wall clock:
* the clients' log (load.py): one record per arrival, its client address, port and node;
* conntrack NEW events in the NAT namespace: which external (NAT) ip:port each client socket got;
* conntrack NEW events in each node namespace: which target the node picked for that ip:port;
* the servers' log (servers.py): the established period of every connection at every target, and the
  node it came through.

An arrival **collides** when its first SYN (the first NAT mapping of its client socket) carries an
external ip:port and a target for which a connection through another node is established at that moment.
A NAT mapping made later for the same client socket (after an RST cleared the NAT's entry, a
retransmitted SYN is mapped afresh) is counted as ``nat_remaps``, not as a new arrival.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

_TS = re.compile(r"^\[(\d+\.\d+)\]")
_KV = re.compile(r"\b(src|dst|sport|dport)=(\S+)")

#: kernel counters reported beside the collisions (nstat names)
COUNTERS = (
    "TcpExtTCPSYNChallenge", "TcpExtTCPChallengeACK", "TcpExtTCPACKSkippedChallenge",
    "TcpEstabResets", "TcpAttemptFails", "TcpExtPAWSEstab", "TcpExtPAWSActive",
    "TcpExtTW", "TcpExtTWRecycled", "TcpExtTWKilled", "TcpExtTCPACKSkippedTimeWait",
    "TcpExtTCPTimeWaitOverflow", "TcpExtTCPAbortOnSyn", "TcpExtTCPAbortOnData",
    "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts", "TcpExtListenDrops", "TcpExtListenOverflows",
)


def parse_conntrack(lines) -> list[tuple]:
    """`conntrack -E -o timestamp` NEW lines -> (time, orig src, orig sport, orig dst, reply src,
    reply dport), reply dport being the port the flow's originator is seen with after NAT."""
    out = []
    for line in lines:
        if "[NEW]" not in line or " tcp " not in line:
            continue
        m = _TS.match(line.strip())
        if not m:
            continue
        kv = _KV.findall(line)
        if len(kv) < 8:
            continue
        o = dict(kv[:4])
        r = dict(kv[4:8])
        out.append((float(m.group(1)), o["src"], int(o["sport"]), o["dst"], r["src"], r["dst"],
                    int(r["dport"])))
    return out


def parse_servers(lines) -> list[tuple]:
    """servers.py lines -> (accept, end, backend, peer ip, peer port, node, how)."""
    out = []
    for line in lines:
        f = line.split()
        if len(f) != 7:
            continue
        out.append((float(f[0]), math.inf if f[1] == "inf" else float(f[1]), int(f[2]), f[3],
                    int(f[4]), int(f[5]), f[6]))
    return out


def parse_load(lines) -> tuple[list[dict], dict]:
    recs, summary = [], {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if d.get("summary"):
            summary = d
        else:
            recs.append(d)
    return recs, summary


def parse_nstat(text: str) -> dict[str, int]:
    """`nstat -a -s -z` (or --json) output -> {name: value}."""
    text = text.strip()
    if text.startswith("{"):
        d = json.loads(text)
        d = d.get("kernel", d)
        return {k: int(v) for k, v in d.items() if isinstance(v, (int, float))}
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            out[f[0]] = int(f[1])
    return out


@dataclass
class Count:
    arrivals: int = 0
    mapped: int = 0                # arrivals whose first SYN was seen at the NAT
    collisions: int = 0
    pairs: int = 0
    same_node_hits: int = 0        # first SYN met a connection through its own node (not a collision)
    time_wait_hits: int = 0        # first SYN met no live holder but a TIME_WAIT one (server closed first)
    nat_remaps: int = 0
    reused_mappings: int = 0       # first SYNs that went out on the NAT entry of the socket's last use
    unmatched_node: int = 0        # first SYNs whose target could not be found in the node's events
    collisions_by_outcome: dict = field(default_factory=dict)
    collision_connect_s: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    time_wait_list: list = field(default_factory=list)   # (time, ext ip, ext port, target), first 10,000


def count_collisions(load: list[dict], nat_events: list[tuple], node_events: dict[int, list[tuple]],
                     servers: list[tuple], node_ips: list[str], target_ips: list[str],
                     time_wait: float = 60.0) -> Count:
    node_of_ip = {ip: j for j, ip in enumerate(node_ips)}
    target_of_ip = {ip: t for t, ip in enumerate(target_ips)}
    res = Count(arrivals=len(load))

    # NAT mappings per client socket (client ip, client port, node), in time order
    maps: dict[tuple, list] = defaultdict(list)
    for ts, src, sport, dst, _rsrc, rdst, rdport in sorted(nat_events):
        if dst in node_of_ip:
            maps[(src, sport, node_of_ip[dst])].append((ts, rdst, rdport))
    # arrivals per client socket, in time order: each owns the mappings up to the next one's start
    by_sock: dict[tuple, list] = defaultdict(list)
    for rec in load:
        if rec.get("cport") is not None and rec.get("t0") is not None:
            by_sock[(rec["cip"], rec["cport"], rec["node"])].append(rec)
    first_syn: list[tuple] = []    # (time, ext ip, ext port, node, rec)
    remapped: list[tuple] = []     # (closed, made, ext ip, ext port, node): mappings an RST closed
    for key, recs in by_sock.items():
        recs.sort(key=lambda r: r["t0"])
        ev = maps.get(key, [])
        times = [e[0] for e in ev]
        for n, rec in enumerate(recs):
            lo = bisect.bisect_left(times, rec["t0"] - 0.002)
            hi = bisect.bisect_left(times, recs[n + 1]["t0"] - 0.002) if n + 1 < len(recs) else len(ev)
            if hi <= lo:
                # no new NAT entry: the SYN matched the entry of the socket's previous use (netfilter
                # lets a SYN through an entry still closing), so it kept that mapping
                if lo == 0 or n == 0 or ev[lo - 1][0] < recs[n - 1]["t0"] - 0.002:
                    continue
                res.reused_mappings += 1
                lo, hi = lo - 1, lo
            res.mapped += 1
            res.nat_remaps += hi - lo - 1
            for m in range(lo, hi - 1):
                # an RST through the NAT closed this mapping (the client's next SYN was mapped
                # afresh): whatever the target held on its 4-tuple, TIME_WAIT included, ended then
                remapped.append((ev[m + 1][0], ev[m][0], ev[m][1], ev[m][2], key[2]))
            _ts, eip, eport = ev[lo]
            # the client's connect() time is the first SYN's time; the listener's timestamp is when
            # it read the event, which can trail the handshake itself
            first_syn.append((rec["t0"], eip, eport, key[2], rec))

    # the target each node picked, per external ip:port, in time order
    picks: dict[tuple, list] = defaultdict(list)
    for j, events in node_events.items():
        for ts, src, sport, dst, rsrc, _rdst, _rdport in events:
            if rsrc in target_of_ip:
                picks[(j, src, sport)].append((ts, target_of_ip[rsrc]))
    for v in picks.values():
        v.sort()

    # established periods per (target, ext ip, ext port)
    est: dict[tuple, list] = defaultdict(list)
    for acc, end, backend, ip, port, node, how in servers:
        est[(backend, ip, port)].append((acc, end, node, how))

    def target_of(j, eip, eport, ts):
        """The target node j picked for ext ip:port at about ts: its event nearest in time (the
        listeners are separate, ms apart), else its last one before (the SYN went through the
        node's entry of the port's last use)."""
        cand = picks.get((j, eip, eport), [])
        best = None
        for pts, t in cand:
            if abs(pts - ts) <= 0.5 and (best is None or abs(pts - ts) < abs(best[0] - ts)):
                best = (pts, t)
        if best is None:
            before = [(pts, t) for pts, t in cand if pts < ts]
            if before:
                best = max(before)
        return best

    # TIME_WAIT entries ended by an RST, per (target, ext ip, ext port)
    killed: dict[tuple, list] = defaultdict(list)
    for closed, made, eip, eport, j in remapped:
        best = target_of(j, eip, eport, made)
        if best is not None:
            killed[(best[1], eip, eport)].append(closed)

    for ts, eip, eport, j, rec in first_syn:
        best = target_of(j, eip, eport, ts)
        if best is None:
            res.unmatched_node += 1
            continue
        t = best[1]
        periods = est.get((t, eip, eport), ())
        holders = [(acc, end, node) for acc, end, node, _how in periods if acc <= ts < end]
        other = [h for h in holders if h[2] != j]
        if len(holders) > len(other):
            res.same_node_hits += 1
        if not holders:
            # the 4-tuple's last connection before this SYN: closed by the server, so in TIME_WAIT
            ended = [(end, how) for _acc, end, _node, how in periods if end <= ts]
            if ended:
                end, how = max(ended)
                if how == "server-close" and ts < end + time_wait and not any(
                        end <= k < ts for k in killed.get((t, eip, eport), ())):
                    res.time_wait_hits += 1
                    if len(res.time_wait_list) < 10_000:
                        res.time_wait_list.append((ts, eip, eport, t))
        if other:
            res.collisions += 1
            res.pairs += len(other)
            out = rec.get("outcome", "?")
            res.collisions_by_outcome[out] = res.collisions_by_outcome.get(out, 0) + 1
            if rec.get("connect_s") is not None:
                res.collision_connect_s.append(rec["connect_s"])
            if len(res.examples) < 5:
                res.examples.append({"time": round(ts, 3), "nat": f"{eip}:{eport}", "target": t,
                                     "node": j, "holder_node": other[0][2],
                                     "connect_s": rec.get("connect_s"), "outcome": out})
    return res


def client_outcomes(load: list[dict], slow_s: float = 0.9) -> dict:
    out = {"slow_connects": 0, "resets": 0, "timeouts": 0, "refused": 0, "stalled": 0, "errors": 0,
           "pending_at_end": 0, "ok": 0, "open_at_end": 0}
    names = {"reset": "resets", "timeout": "timeouts", "refused": "refused", "stalled": "stalled",
             "error": "errors", "pending": "pending_at_end", "ok": "ok", "open": "open_at_end"}
    for rec in load:
        if rec.get("connect_s") is not None and rec["connect_s"] > slow_s:
            out["slow_connects"] += 1
        key = names.get(rec.get("outcome"))
        if key:
            out[key] += 1
    return out
