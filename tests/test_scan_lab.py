"""`collide scan` end to end against the real kernel (issue 17): the lab drives a known load with
`--capture`, the scan reads the targets' captures, and both counts must agree under each routing of
the challenge ACK. Needs root and iproute2, nftables, conntrack, tcpdump; skips otherwise. About
60 s in all (three runs, one at a time; 20 s of load keeps the lifetime estimate within about 1 %)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from collide.lab import run_lab
from collide.scan import scan

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PORTS = (20000, 21999)     # about 7 collisions a second of load, far from exhaustion
SECONDS = 20


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("conntrack", "conntrack"),
                      ("nstat", "iproute2"), ("tcpdump", "tcpdump")):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (Debian package {pkg})"
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"ip netns unavailable: {p.stderr.strip()}"
    return None


needs_kernel = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _lab_and_scan(tmp_path, routing, seed, cross_zone=True, seconds=SECONDS):
    lab = run_lab("seed", seconds, cross_zone=cross_zone, nat="random", seed=seed,
                  port_range=PORTS, routing=routing, capture_dir=tmp_path / "cap")
    obs = scan(lab["captures"], port=6000)
    print(f"\nrouting {routing}, cross-zone {cross_zone}: lab connections {lab['connections']} "
          f"collisions {lab['measured_collisions']} rate {lab['rate_driven']} lifetime "
          f"{lab['lifetime_mean_s']:.4g} | scan connections {obs.connections} collisions "
          f"{obs.collisions} rate {obs.rate_per_s:.5g} lifetime {obs.lifetime['mean_s']:.4g} "
          f"outcomes {obs.outcomes} | syn_challenges {lab['syn_challenges']} estab_resets "
          f"{lab['estab_resets']}")
    return lab, obs


def _agree(lab, obs):
    m = lab["measured_collisions"]
    assert abs(obs.collisions - m) <= max(3, 0.02 * m), (obs.collisions, m)
    assert abs(obs.connections - lab["connections"]) <= 0.01 * lab["connections"]
    assert obs.rate_per_s == pytest.approx(lab["rate_driven"], rel=0.02)
    assert obs.lifetime["mean_s"] == pytest.approx(lab["lifetime_mean_s"], rel=0.05)
    assert obs.side == "target" and len(obs.targets) == lab["targets"]


@needs_kernel
def test_challenge_ack_to_the_older_flow_delays_the_new_connect(tmp_path):
    lab, obs = _lab_and_scan(tmp_path, "older", seed=201)
    _agree(lab, obs)
    assert lab["measured_collisions"] > 40
    oc = obs.outcomes
    assert oc["reset-existing"] == 0 and oc["delay-new"] >= 0.9 * obs.collisions, oc
    assert lab["estab_resets"] <= 3
    res = obs.verdict(nodes=3, targets=6, cross_zone=True, seed=1)
    assert res["verdict"]["text"].startswith("the NAT")


@needs_kernel
def test_challenge_ack_to_the_new_client_resets_the_older(tmp_path):
    lab, obs = _lab_and_scan(tmp_path, "new", seed=202)
    _agree(lab, obs)
    assert lab["measured_collisions"] > 40
    oc = obs.outcomes
    assert oc["reset-existing"] >= 0.9 * obs.collisions and oc["delay-new"] == 0, oc
    assert lab["estab_resets"] >= 0.9 * lab["measured_collisions"]
    assert obs.counts["moved"] >= 0.8 * obs.collisions      # the NAT's new port after the RST
    res = obs.verdict(nodes=3, targets=6, cross_zone=True, seed=1)
    assert res["verdict"]["text"].startswith("the NAT")


@needs_kernel
def test_cross_zone_off_scans_to_zero(tmp_path):
    lab, obs = _lab_and_scan(tmp_path, "new", seed=203, cross_zone=False, seconds=6)
    assert lab["measured_collisions"] == 0 and obs.collisions == 0
    assert abs(obs.connections - lab["connections"]) <= 0.01 * lab["connections"]
    res = obs.verdict(nodes=3, targets=6, cross_zone=False, seed=1)
    assert res["predictions"]["random"]["expected"] == 0
    assert res["verdict"]["text"].startswith("the NAT")
