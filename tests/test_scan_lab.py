"""`collide scan` end to end against the real kernel (issues 17, 25): the lab drives a known load
with `--capture`, the scan reads the targets' captures (and the NAT's and a node's), and both
accounts must agree, under each routing of the challenge ACK and three cross-zone settings. Needs
root and iproute2, nftables, conntrack, tcpdump; skips otherwise. About two and a half minutes in
all (six runs of 15 s and two of 8 s, one at a time; COLLIDE_LAB_SEED moves their seeds). Each
test prints its row of docs/scan.md's table of these runs (-s); with COLLIDE_RECORD=1 the rows are
written to docs/data/scan-lab-runs.json, the record that table is generated from
(`python docs/generate.py`)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from collide.lab import run_lab
from collide.scan import scan
from collide.scenario import Scenario
from tests.test_lab import _kernel_skip_reason, lab_seed

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PORTS = (20000, 21999)     # about 7 collisions a second of load, far from exhaustion
SECONDS = 15
OUTCOME = {"older": "delay-new", "new": "reset-existing"}


def _skip_reason() -> str | None:
    if shutil.which("tcpdump") is None and os.geteuid() == 0:
        return "lab --capture needs tcpdump (Debian package tcpdump)"
    return _kernel_skip_reason()


needs_kernel = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


RECORD = Path(__file__).resolve().parents[1] / "docs" / "data" / "scan-lab-runs.json"
ROWS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def record():
    """With COLLIDE_RECORD=1, the runs' rows become docs/data/scan-lab-runs.json."""
    yield
    if os.environ.get("COLLIDE_RECORD") and ROWS:
        cols = [["routing", "routing"], ["cross_zone", "cross-zone"], ["nat", "NAT"],
                ["close_first", "server closes first", "g"],
                ["lab", "lab: connections / collisions / TIME_WAIT hits"],
                ["scan", "scan: connections / collisions / TIME_WAIT hits"],
                ["outcomes", "outcomes (scan)"], ["challenge_acks", "challenge ACKs: scan / nstat"],
                ["resets", "resets: scan / nstat"],
                ["allocator", "allocator named (evidence)"],
                ["nodes", "node interval (lower bound)"], ["verdict", "verdict (--nodes 3 --targets 6)"],
                ["forwarders", "NAT's and node 0's captures: connections"]]
        RECORD.write_text(json.dumps({
            "command": "COLLIDE_RECORD=1 python -m pytest -s -m lab tests/test_scan_lab.py",
            "measured": time.strftime("%Y-%m-%d") + ", Linux " + os.uname().release.split("-")[0]
                        + ", 2 cores shared with other work",
            "columns": cols, "rows": ROWS}, indent=1) + "\n", encoding="utf-8")


def _cz(cz) -> str:
    return {True: "on", False: "off"}.get(cz, cz)


def lab_and_scan(tmp_path, routing, cross_zone, seed, *, nat="random", close_first=0.0,
                 seconds=SECONDS):
    """One lab run with captures, the targets' scan and its verdict; prints the table row."""
    s = Scenario.builtin("seed").replace({"target.server_close_fraction": close_first})
    lab = run_lab(s, seconds, cross_zone=cross_zone, nat=nat, seed=lab_seed(seed),
                  port_range=PORTS, routing=routing, capture_dir=tmp_path / "cap")
    obs = scan(lab["captures"], port=6000)
    res = obs.verdict(nodes=3, targets=6, cross_zone=cross_zone is not False, seed=1)
    ca = lab["capture_kernel_counters"]["TcpExtTCPChallengeACK"]
    er = lab["capture_kernel_counters"]["TcpEstabResets"]
    nd = res["nodes"]
    iv = nd["interval"]
    nodes = "-" if iv is None else (f"N >= {iv[0]}" if iv[1] is None else f"N = {iv[0]}–{iv[1]}")
    row = {"routing": routing, "cross_zone": _cz(cross_zone), "nat": nat, "close_first": close_first,
           "lab": f"{lab['connections']} / {lab['measured_collisions']} / {lab['time_wait_hits']}",
           "scan": f"{obs.connections} / {obs.collisions} / {obs.time_wait_hits}",
           "outcomes": ", ".join(f"{k} {v}" for k, v in obs.outcomes.items() if v) or "–",
           "challenge_acks": f"{obs.counts['challenge_acks']} / {ca}",
           "resets": f"{obs.counts['resets']} / {er}",
           "allocator": f"{obs.nat_allocator['class']} ({obs.nat_allocator['evidence']})",
           "nodes": f"{'none' if iv is None else nodes} ({nd['lower_bound']})",
           "verdict": res["verdict"]["text"] if res["verdict"] else "–"}
    ROWS.append(row)
    print("\n| " + " | ".join(str(v) for v in row.values()) + " |")
    return lab, obs, res


def check(lab, obs, routing):
    """What the issue holds the scan to on every lab capture."""
    m = lab["measured_collisions"]
    assert abs(obs.collisions - m) <= max(3, 0.02 * m), (obs.collisions, m)
    assert abs(obs.connections - lab["connections"]) <= 0.01 * lab["connections"]
    assert obs.side == "target" and len(obs.targets) == lab["targets"]
    # every outcome is the routing's (a collision still undecided at the capture's end aside)
    oc = obs.outcomes
    other = "delay-new" if OUTCOME[routing] == "reset-existing" else "reset-existing"
    assert oc[other] == 0 and oc[OUTCOME[routing]] >= 0.9 * obs.collisions, oc
    # challenge ACKs against the kernel's counter when the capture stopped
    ca = lab["capture_kernel_counters"]["TcpExtTCPChallengeACK"]
    assert abs(obs.counts["challenge_acks"] - ca) <= max(2, 0.02 * ca), (obs.counts, ca)
    tw = lab["time_wait_hits"]
    assert abs(obs.time_wait_hits - tw) <= max(3, 0.05 * tw), (obs.time_wait_hits, tw)
    # every established connection the capture shows reset (by a new client's RST, under the new
    # routing) is one the kernel counted, and no other: TcpEstabResets when the capture stopped
    er = lab["capture_kernel_counters"]["TcpEstabResets"]
    assert abs(obs.counts["resets"] - er) <= max(2, 0.02 * er), (obs.counts["resets"], er)


@needs_kernel
@pytest.mark.parametrize("routing, cross_zone, close_first, seed", [
    ("older", True, 0.5, 201), ("new", True, 0.5, 202),
    ("older", False, 0.0, 203), ("new", False, 0.0, 204),
    ("older", "one-sided", 0.0, 205), ("new", "one-sided", 0.0, 206)])
def test_scan_agrees_with_the_lab(tmp_path, routing, cross_zone, close_first, seed):
    """older: the challenge ACK goes to the older flow, the new connect is delayed; new: it goes to
    the new client, whose RST resets the older connection. Cross-zone on (with the server closing
    half the connections first: TIME_WAIT hits), off (zero), and on at one node only."""
    # cross-zone off: zero whatever the length, so a shorter load checks the same
    lab, obs, res = lab_and_scan(tmp_path, routing, cross_zone, seed, close_first=close_first,
                                 seconds=SECONDS if cross_zone is not False else 8)
    check(lab, obs, routing)
    if cross_zone is False:
        assert lab["measured_collisions"] == 0 and obs.collisions == 0
        assert res["verdict"]["text"].startswith("the NAT")
        return
    assert lab["measured_collisions"] > 10
    assert obs.nat_allocator["model"] == "random" and obs.nat_allocator["evidence"] == "strong"
    assert res["nodes"]["likelihood_n1"] == 0
    if routing == "older":
        assert lab["estab_resets"] <= 3
    else:
        assert lab["estab_resets"] >= 0.9 * lab["measured_collisions"]
    if cross_zone is True:
        assert res["verdict"]["text"].startswith("the NAT") and 3 in res["nodes"]["consistent"]
        assert lab["time_wait_hits"] > 50
        # the same traffic at the NAT host and at node 0: recognised, each connection once
        nat, node = lab["forwarder_captures"]
        o = scan([nat], port=6000)
        assert o.side == "nat" and abs(o.connections - lab["connections"]) <= 0.01 * lab["connections"]
        assert o.nat_allocator["model"] == "random"
        assert o.verdict(nodes=3, targets=6, seed=1)["verdict"] is None
        o = scan([node], port=6000)
        assert o.side == "load-balancer" and 0.25 < o.connections / lab["connections"] < 0.42
        assert o.verdict(nodes=3, targets=6, seed=1)["verdict"] is None
        ROWS[-1]["forwarders"] = f"NAT {scan([nat], port=6000).connections}, node 0 {o.connections}"


@needs_kernel
@pytest.mark.parametrize("routing, seed", [("older", 207), ("new", 208)])
def test_a_port_preserving_nat_is_named(tmp_path, routing, seed):
    """Linux clients behind a port-keeping NAT: the scan names a kernel-like allocator at the
    targets, and the NAT's capture shows the inside port kept."""
    lab, obs, res = lab_and_scan(tmp_path, routing, True, seed, nat="preserve")
    check(lab, obs, routing)
    assert obs.nat_allocator["model"] == "linux" and obs.nat_allocator["evidence"] == "strong"
    assert res["allocator"]["used"] == "linux"
    lo, hi = res["verdict"]["interval"]
    assert lo <= obs.collisions <= hi
    o = scan([lab["forwarder_captures"][0]], port=6000)
    assert o.side == "nat" and o.nat_allocator["mappings"]["preserved_share"] >= 0.9
