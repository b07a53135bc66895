"""`collide scan` end to end against the real kernel (issue 17): the lab drives a known load with
`--capture`, the scan reads the targets' captures, and both counts must agree under each routing of
the challenge ACK. Needs root and iproute2, nftables, conntrack, tcpdump; skips otherwise. About
60 s in all (three runs, one at a time; 20 s of load keeps the lifetime estimate within about 1 %)."""
from __future__ import annotations

import os
import shutil

import pytest

from collide.lab import run_lab
from collide.scan import scan
from tests.test_lab import _kernel_skip_reason

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PORTS = (20000, 21999)     # about 7 collisions a second of load, far from exhaustion
SECONDS = 20


def _skip_reason() -> str | None:
    if shutil.which("tcpdump") is None and os.geteuid() == 0:
        return "lab --capture needs tcpdump (Debian package tcpdump)"
    return _kernel_skip_reason()


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
@pytest.mark.parametrize("routing, seed, outcome", [("older", 201, "delay-new"),
                                                    ("new", 202, "reset-existing")])
def test_scan_agrees_with_the_lab_under_each_routing(tmp_path, routing, seed, outcome):
    """older: the challenge ACK goes to the older flow, the new connect is delayed; new: it goes to
    the new client, whose RST resets the older connection (and the NAT moves the new one)."""
    lab, obs = _lab_and_scan(tmp_path, routing, seed=seed)
    _agree(lab, obs)
    assert lab["measured_collisions"] > 40
    oc = obs.outcomes
    other = "delay-new" if outcome == "reset-existing" else "reset-existing"
    assert oc[outcome] >= 0.9 * obs.collisions and oc[other] == 0, oc
    if routing == "older":
        assert lab["estab_resets"] <= 3
    else:
        assert lab["estab_resets"] >= 0.9 * lab["measured_collisions"]
        assert obs.counts["moved"] >= 0.8 * obs.collisions
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
