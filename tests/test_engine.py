"""Engine semantics: invariants, zero cases, allocators, the conditional estimate, first-reset, CLI."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import collide
from collide import _params as C, engine
from collide._core_python import HELD, Connection, Simulation
from collide.analytic import analytic as closed_form
from collide.scenario import Scenario

from .conftest import small


def reference(s: Scenario, seed: int) -> Simulation:
    """Run the reference engine and hand back its state for inspection."""
    arrays = C.build(s, True)
    sim = Simulation(*arrays, engine.bit_generator(seed))
    if s.traffic.warmup == "auto":
        r, a = sim.draw_stationary()
        sim.place_stationary(r, np.argsort(-np.array(a), kind="stable"))
    sim.schedule_first_arrival()
    return sim


def check_state(sim: Simulation):
    n = sim.n
    cooling = {(d, p) for _, d, p in sim.cool_queue[sim.cool_head:]}
    for d, slots in enumerate(sim.slot):
        held = [p for p, h in enumerate(slots) if isinstance(h, Connection)]
        assert sim.live[d] == len(held) >= 0
        for p in held:                                  # a held port is never also free
            assert not sim.is_free(d, p)
            assert slots[p].dest == d and slots[p].port == p and slots[p].alive
        for p, h in enumerate(slots):                   # between events only cooling ports are HELD
            assert (h == HELD) == ((d, p) in cooling)
    for pool, free in enumerate(sim.free):
        if sim.pi[C.ALLOC] == 3:                        # eim: the pool of an IP
            free_ports = [p for p in range(sim.ports) if sim.pos[pool][p] >= 0]
        else:
            free_ports = [p for p in range(sim.ports) if sim.is_free(pool, p)]
        assert sim.free_n[pool] == len(free_ports)
        if sim.dense[pool]:                             # a listed pool: list and positions agree
            assert sorted(free) == free_ports
            for i, p in enumerate(free):
                assert sim.pos[pool][p] == i
    if sim.memoryless:                                  # the end clock's list: every live connection
        live = [h for slots in sim.slot for h in slots if isinstance(h, Connection) and h.retry < 0]
        assert sorted(id(h) for h in sim.live_list) == sorted(id(h) for h in live)
        for i, h in enumerate(sim.live_list):
            assert h.lpos == i
    if sim.pi[C.ALLOC] == 3:                             # eim: a port is live towards one node
        for ip in range(sim.k):
            for p in range(sim.ports):
                assert sum(isinstance(sim.slot[ip * n + j][p], Connection) for j in range(n)) <= 1


@pytest.mark.parametrize("overrides", [
    {}, {"nat.allocator": "eim"}, {"nat.allocator": "sequential", "nat.reuse_delay": 1.0},
    {"nat.allocator": "linux"}, {"traffic.rate": 80.0, "nat.per_destination_limit": 60},
    {"target.on_collision": "fail-new"}, {"target.on_collision": "count"},
    {"target.server_close_fraction": 1.0}, {"traffic.rate": 90.0, "nat.port_max": 2049},
    {"traffic.duration": {"dist": "lognormal", "mean": 6.0, "sigma": 1.0}, "nat.reuse_delay": 0.5},
])
def test_invariants_hold_throughout(overrides):
    s = small().replace(overrides).replace({"traffic.horizon": 20.0})
    sim = reference(s, 4)
    for t in np.linspace(1, 20, 12):
        sim.advance(float(t))
        check_state(sim)
        c = sim.c
        assert c["connections"] == c["established"] + c["allocation_failures"] + \
            c["failed_connects"]
        if s.target.on_collision != "count":
            assert c["pairs"] == c["collisions"]


@pytest.mark.parametrize("overrides", [
    {"load_balancer.cross_zone": False}, {"load_balancer.nodes": 1},
    {"nat.allocator": "eim"}, {"load_balancer.client_ip_preservation": False},
])
@pytest.mark.parametrize("backend", ["cython", "python"])
def test_exactly_zero(overrides, backend):
    s = small().replace({"traffic.rate": 60.0, "traffic.horizon": 40.0}).replace(overrides)
    r = collide.simulate(s, seed=8, backend=backend)
    assert r.connections > 1000
    assert r.collisions == r.pairs == r.reset_victims == 0
    assert r.expected_collisions in (0.0, None)


def test_linux_uses_low_parity_first():
    s = small().replace({"nat.allocator": "linux", "traffic.warmup": 0,
                         "traffic.duration": {"dist": "fixed", "mean": 1000.0},
                         "traffic.rate": 10.0, "traffic.horizon": 4.0, "load_balancer.nodes": 1,
                         "nat.port_min": 2001, "nat.port_max": 2100})
    sim = reference(s, 2)
    sim.advance(4.0)
    held = [p for p, h in enumerate(sim.slot[0]) if h is not None]
    assert 10 < len(held) <= 50
    assert all(p % 2 == 0 for p in held)      # index 0 = port 2001: the range's low parity


def test_sequential_hands_out_consecutive_ports():
    s = small().replace({"nat.allocator": "sequential", "traffic.warmup": 0,
                         "traffic.duration": {"dist": "fixed", "mean": 1000.0},
                         "traffic.rate": 10.0, "traffic.horizon": 3.0, "load_balancer.nodes": 1})
    sim = reference(s, 3)
    sim.advance(3.0)
    conns = sorted((h.serial, h.port) for h in sim.slot[0] if h is not None)
    ports = [p for _, p in conns]
    P = sim.ports
    assert len(ports) > 10
    assert all((b - a) % P == 1 for a, b in zip(ports, ports[1:]))


def test_random_allocator_is_uniform_over_free_ports():
    """Chi-square on the ports picked from an otherwise empty range (exact Lemire draws)."""
    s = small().replace({"traffic.warmup": 0, "traffic.duration": {"dist": "fixed", "mean": 1e-6},
                         "traffic.rate": 1000.0, "traffic.horizon": 40.0, "load_balancer.nodes": 1,
                         "nat.port_min": 1, "nat.port_max": 50})
    sim = reference(s, 5)
    counts = np.zeros(50)
    orig = sim.port_taken

    def spy(d, p):
        counts[p] += 1
        orig(d, p)
    sim.port_taken = spy
    sim.advance(40.0)
    expected = counts.sum() / 50
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.sum() > 30000
    assert chi2 < 105          # chi-square(49) upper 1e-6 quantile ≈ 105


def test_time_wait_hits_follow_design_section_5():
    """With every connection closed by the server, hits per connection ≈ (1 − e^(−aτ))/(1 + a(N−1)/N·D)."""
    from collide.analytic import time_wait_hits_per_connection
    s = small().replace({"target.server_close_fraction": 1.0, "target.time_wait": 30.0,
                         "traffic.rate": 100.0, "traffic.horizon": 600.0,
                         "traffic.duration": {"dist": "exponential", "mean": 2.0},
                         "nat.port_max": 2999, "target.on_collision": "count"})
    r = collide.simulate(s, seed=12)
    pred = time_wait_hits_per_connection(s) * r.connections
    assert r.time_wait_hits > 300
    assert abs(r.time_wait_hits - pred) < 5 * math.sqrt(pred) + 0.03 * pred


def test_estimate_agrees_with_counting():
    s = Scenario.builtin("seed").replace({"traffic.horizon": 3000.0, "target.on_collision": "count"})
    r = collide.simulate(s, seed=21)
    z = (r.collisions - r.expected_collisions) / math.sqrt(
        r.expected_collisions + r.expected_collisions_se ** 2)
    assert r.collisions > 800 and abs(z) < 4
    assert r.expected_collisions_se < 0.1 * math.sqrt(r.expected_collisions)   # far more precise


def test_estimate_sequential_agrees_with_counting():
    s = small().replace({"nat.allocator": "sequential", "traffic.horizon": 400.0,
                         "nat.port_max": 2999, "target.on_collision": "count"})
    r = collide.simulate(s, seed=22)
    z = (r.collisions - r.expected_collisions) / math.sqrt(
        r.expected_collisions + r.expected_collisions_se ** 2)
    assert r.collisions > 100 and abs(z) < 4


@pytest.mark.slow
def test_estimate_at_one_in_ten_billion():
    """A per-connection probability of 1e-10: counting sees nothing, the estimate is within 5 %."""
    s = Scenario.from_dict().replace({
        "traffic.rate": 50000.0, "traffic.duration": {"dist": "exponential", "mean": 2.58e-6},
        "traffic.horizon": 200.0, "load_balancer.nodes": 2, "load_balancer.targets": 10000,
        "target.time_wait": 0.0})
    a = closed_form(s)
    assert 5e-11 < a.collision_probability < 2e-10
    r = collide.simulate(s, seed=31)
    assert r.connections > 9e6
    assert r.collisions <= 2
    assert r.expected_collisions == pytest.approx(a.expected_collisions, rel=0.05)
    assert r.expected_collisions_se / r.expected_collisions < 0.05


def test_first_reset_mean_matches_closed_form():
    fr = collide.first_reset("seed", replicates=300, seed=4, start="steady")
    d = fr.to_dict()
    assert d["replicates"] == 300 and d["censored"] == 0
    # censored exponential MLE: relative SE = 1/sqrt(events); reset-existing is ~p/4 below the form
    assert abs(d["mean_s"] / d["analytic_mean_s"] - 1) < 4 / math.sqrt(300) + 0.01
    assert d["p05_s"] < d["median_s"] < d["p95_s"]


def test_first_reset_cold_and_censoring():
    s = Scenario.builtin("seed").replace({"traffic.rate": 5.0, "traffic.horizon": 20.0})
    fr = collide.first_reset(s, replicates=20, seed=1, start="cold")
    d = fr.to_dict()
    assert d["censored"] == 20 and d["mean_s"] is None and d["median_s"] is None
    assert d["start"] == "cold" and d["analytic_mean_s"] is None


def test_replicate_streams_follow_design():
    a = engine.bit_generator(7, 2, 5).random_raw(3)
    b = np.random.PCG64(np.random.SeedSequence(7).spawn(5)[2]).random_raw(3)
    assert np.array_equal(a, b)


def test_simulate_json_has_design_keys():
    p = subprocess.run([sys.executable, "-m", "collide.cli", "simulate", "--scenario", "seed",
                        "--horizon", "30", "--seed", "5", "--format", "json"],
                       capture_output=True, text=True, check=True)
    d = json.loads(p.stdout)
    keys = {"schema_version", "connections", "established", "allocation_failures",
            "failed_connects", "collisions", "reset_victims", "time_wait_hits", "pairs",
            "collision_probability", "collision_probability_ci", "collisions_per_hour",
            "expected_collisions", "expected_collisions_se", "first_collision_s",
            "peak_live_per_destination", "analytic", "seed", "backend", "elapsed_s", "scenario"}
    assert keys <= set(d)
    assert d["schema_version"] == 1 and d["seed"] == 5 and d["backend"] == "cython"
    assert set(d["analytic"]) == {"collision_probability", "collisions_per_hour", "form"}
    assert d["collision_probability"] == d["collisions"] / d["connections"]
    assert d["collisions_per_hour"] == pytest.approx(d["collisions"] / 30 * 3600)
    assert d["scenario"]["traffic"]["horizon"] == 30.0
    # --seed reproduces
    again = json.loads(subprocess.run([sys.executable, "-m", "collide.cli", "simulate",
                                       "--scenario", "seed", "--horizon", "30", "--seed", "5",
                                       "--format", "json", "--no-estimate"],
                                      capture_output=True, text=True, check=True).stdout)
    assert again["collisions"] == d["collisions"] and again["expected_collisions"] is None


def test_first_reset_json_keys():
    p = subprocess.run([sys.executable, "-m", "collide.cli", "first-reset", "--replicates", "10",
                        "--seed", "1", "--format", "json"], capture_output=True, text=True,
                       check=True)
    d = json.loads(p.stdout)
    assert {"schema_version", "replicates", "censored", "mean_s", "median_s", "p05_s", "p95_s",
            "analytic_mean_s", "start", "seed", "scenario"} <= set(d)


def test_table_output_is_readable():
    p = subprocess.run([sys.executable, "-m", "collide.cli", "simulate", "--scenario", "seed",
                        "--horizon", "30", "--seed", "5"], capture_output=True, text=True,
                       check=True)
    for label in ("collisions", "per connection", "95% CI", "closed form",
                  "mean time to first reset", "allocation failures", "TIME_WAIT hits"):
        assert label in p.stdout


def test_cython_run_does_not_load_numba():
    code = ("import sys, collide; collide.simulate('seed', seed=1); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
