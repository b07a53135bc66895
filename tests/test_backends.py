"""The three backends implement one algorithm and read the same words: identical counts (DESIGN §2.4)."""
from pathlib import Path

import numpy as np
import pytest

import collide
from hypothesis import HealthCheck, given, settings, strategies as st

from collide import engine
from collide.api import simulate
from collide.scenario import Scenario

from .conftest import small

EXAMPLE_CSV = str(Path(collide.__file__).parent / "scenarios" / "lifetimes-example.csv")

CASES = {
    "default-random": {},
    "sequential": {"nat.allocator": "sequential"},
    "linux": {"nat.allocator": "linux", "traffic.horizon": 35.0},
    "eim": {"nat.allocator": "eim"},
    "exhaustion": {"traffic.rate": 60.0, "nat.per_destination_limit": 80},
    "exhaustion-linux": {"traffic.rate": 60.0, "nat.allocator": "linux"},
    "exhaustion-sequential": {"traffic.rate": 60.0, "nat.allocator": "sequential"},
    "time-wait": {"target.server_close_fraction": 0.6, "target.time_wait": 8.0},
    "time-wait-all": {"target.server_close_fraction": 1.0, "target.time_wait": 3.0},
    "reuse-delay": {"nat.reuse_delay": 2.0},
    "reuse-delay-eim": {"nat.reuse_delay": 2.0, "nat.allocator": "eim"},
    "weights": {"load_balancer.node_weights": [0.5, 0.3, 0.2]},
    "sticky": {"load_balancer.node_choice": "sticky", "load_balancer.dns_ttl": 4.0},
    "per-client-ips": {"nat.ips": 3, "nat.ip_choice": "per-client"},
    "per-connection-ips": {"nat.ips": 2},
    "fail-new": {"target.on_collision": "fail-new"},
    "count": {"target.on_collision": "count"},
    "cross-zone-off": {"load_balancer.cross_zone": False, "load_balancer.targets": [1, 2, 3]},
    "per-zone-targets": {"load_balancer.targets": [2, 1, 4]},
    "cip-off": {"load_balancer.client_ip_preservation": False},
    "fixed": {"traffic.duration": {"dist": "fixed", "mean": 6.0}},
    "lognormal": {"traffic.duration": {"dist": "lognormal", "mean": 6.0, "sigma": 1.2}},
    "pareto": {"traffic.duration": {"dist": "pareto", "mean": 6.0, "alpha": 1.5}},
    "cold": {"traffic.warmup": 0},
    "warmup-seconds": {"traffic.warmup": 12.5},
    "many-nodes": {"load_balancer.nodes": 5, "load_balancer.targets": 2, "traffic.rate": 30.0},
    "everything": {"target.server_close_fraction": 0.5, "load_balancer.node_weights": [0.2, 0.5, 0.3],
                   "load_balancer.targets": [2, 3, 1], "nat.ips": 2,
                   "load_balancer.node_choice": "sticky",
                   "traffic.duration": {"dist": "lognormal", "mean": 8.0, "sigma": 1.0},
                   "nat.reuse_delay": 1.0},
    # issue 7: changing load (item 3) and real lifetimes (item 4)
    "schedule": {"traffic.schedule": [[0, 20.0], [15.0, 60.0], [30.0, 35.5], [45.0, 80.0]]},
    "schedule-cold-fixed": {"traffic.schedule": [[0, 70.0], [10.0, 25.0]], "traffic.warmup": 3.0,
                            "traffic.duration": {"dist": "fixed", "mean": 4.0}},
    "empirical": {"traffic.duration": {"dist": "empirical", "file": EXAMPLE_CSV,
                                       "column": "duration_s"}},
    "empirical-schedule-fail-new": {
        "traffic.duration": {"dist": "empirical", "file": EXAMPLE_CSV, "column": "duration_s"},
        "traffic.schedule": [[0, 30.0], [20.0, 90.0]], "target.on_collision": "fail-new",
        "target.server_close_fraction": 0.5, "nat.allocator": "sequential"},
    # issue 7: delayed connects (item 1) and target kernels (item 5)
    "delay-new": {"target.on_collision": "delay-new"},
    "delay-new-time-wait-fail": {"target.on_collision": "delay-new", "target.syn_retries": [0.5, 1.5],
                                 "target.server_close_fraction": 0.6, "target.time_wait": 4.0,
                                 "traffic.duration": {"dist": "lognormal", "mean": 6.0, "sigma": 1.2}},
    "pre-3.6": {"target.kernel": "pre-3.6", "target.server_close_fraction": 0.5},
    "pre-6.4": {"target.kernel": "pre-6.4", "nat.allocator": "sequential"},
    "challenge-ack-limit": {"target.challenge_ack_limit": 1, "traffic.rate": 60.0,
                            "target.on_collision": "fail-new", "nat.reuse_delay": 0.5},
    "delays-schedule-empirical": {
        "traffic.duration": {"dist": "empirical", "file": EXAMPLE_CSV, "column": "duration_s"},
        "traffic.schedule": [[0, 30.0], [20.0, 90.0]], "target.on_collision": "delay-new",
        "target.challenge_ack_limit": 2, "target.server_close_fraction": 0.5,
        "target.syn_retries": [1, 2, 3, 4, 6, 10], "load_balancer.node_weights": [0.2, 0.5, 0.3]},
    # issue 7, every item at once: shared targets (item 2) with the others
    "every-fidelity-item": {
        "traffic.duration": {"dist": "empirical", "file": EXAMPLE_CSV, "column": "duration_s"},
        "traffic.schedule": [[0, 25.0], [20.0, 70.0]], "target.on_collision": "delay-new",
        "target.challenge_ack_limit": 2, "target.server_close_fraction": 0.5,
        "load_balancer.balancers": 2, "load_balancer.balancer_weights": [0.6, 0.4],
        "load_balancer.cross_zone": False, "load_balancer.targets": [1, 2, 2], "nat.ips": 2},
}


def _counts(r):
    d = r.to_dict()
    keys = ("connections", "established", "allocation_failures", "failed_connects", "collisions",
            "reset_victims", "time_wait_hits", "pairs", "peak_live_per_destination",
            "first_collision_s", "expected_collisions", "delayed_connects", "pending_connects",
            "connect_delay_histogram")
    return {k: d[k] for k in keys}


@pytest.mark.parametrize("name", sorted(CASES))
def test_three_backends_identical(name):
    s = small(**{}).replace(CASES[name])
    results = {b: _counts(simulate(s, seed=20261127, backend=b)) for b in
               ("python", "numba", "cython")}
    assert results["python"] == results["numba"] == results["cython"], results
    c = results["cython"]
    assert c["connections"] > 500
    assert c["connections"] == c["established"] + c["allocation_failures"] + c["failed_connects"] \
        + c["pending_connects"]


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1])
def test_same_counts_numba_cython_seed_scenario(seed):
    s = Scenario.builtin("seed").replace({"traffic.horizon": 60.0})
    assert _counts(simulate(s, seed=seed, backend="numba")) == \
        _counts(simulate(s, seed=seed, backend="cython"))


# Golden counts: a change of the algorithm or of the draws changes these, and must be a decision.
def test_golden_seed_scenario():
    r = simulate("seed", seed=1, backend="cython")
    assert (r.connections, r.collisions, r.established, r.reset_victims, r.time_wait_hits,
            r.allocation_failures, r.peak_live_per_destination) == \
        (119773, 193, 119773, 193, 0, 0, 396)
    assert r.first_collision_s == pytest.approx(4.777301126159383, rel=0, abs=1e-12)


def test_golden_small_everything():
    s = small().replace(CASES["everything"])
    r = simulate(s, seed=5, backend="cython")
    got = (r.connections, r.collisions, r.established, r.reset_victims, r.time_wait_hits,
           r.allocation_failures, r.failed_connects, r.pairs)
    assert got == GOLDEN_EVERYTHING, got


GOLDEN_EVERYTHING = (2419, 338, 2419, 338, 186, 0, 0, 338)


def test_golden_exhaustion_linux():
    s = small().replace(CASES["exhaustion-linux"])
    r = simulate(s, seed=9, backend="cython")
    got = (r.connections, r.collisions, r.allocation_failures, r.peak_live_per_destination)
    assert got == GOLDEN_EXHAUSTION_LINUX, got


GOLDEN_EXHAUSTION_LINUX = (3581, 2139, 44, 100)


scenario_strategy = st.fixed_dictionaries({
    "traffic.rate": st.floats(5.0, 60.0),
    "traffic.duration": st.sampled_from([
        {"dist": "exponential", "mean": 5.0}, {"dist": "fixed", "mean": 3.0},
        {"dist": "lognormal", "mean": 4.0, "sigma": 0.8}, {"dist": "pareto", "mean": 4.0, "alpha": 2.2}]),
    "traffic.horizon": st.floats(5.0, 25.0),
    "traffic.warmup": st.sampled_from(["auto", 0, 3.0]),
    "traffic.clients": st.integers(1, 20),
    "nat.ips": st.integers(1, 3),
    "nat.ip_choice": st.sampled_from(["per-connection", "per-client"]),
    "nat.port_max": st.integers(2003, 2150),
    "nat.allocator": st.sampled_from(["random", "sequential", "linux", "eim"]),
    "nat.reuse_delay": st.sampled_from([0.0, 0.5]),
    "nat.per_destination_limit": st.integers(3, 200),
    "load_balancer.nodes": st.integers(1, 4),
    "load_balancer.node_choice": st.sampled_from(["per-connection", "sticky"]),
    "load_balancer.dns_ttl": st.floats(0.5, 10.0),
    "load_balancer.targets": st.integers(4, 9),
    "load_balancer.cross_zone": st.booleans(),
    "load_balancer.client_ip_preservation": st.booleans(),
    "target.server_close_fraction": st.sampled_from([0.0, 0.5, 1.0]),
    "target.time_wait": st.floats(0.0, 5.0),
    "target.on_collision": st.sampled_from(["reset-existing", "fail-new", "count", "delay-new"]),
    "target.kernel": st.sampled_from(["modern", "modern", "pre-6.4", "pre-3.6"]),
    "target.challenge_ack_limit": st.sampled_from([0, 0, 1, 3]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(overrides=scenario_strategy, seed=st.integers(0, 2**32))
def test_property_backends_agree(overrides, seed):
    s = small().replace(overrides)
    a = _counts(simulate(s, seed=seed, backend="python"))
    b = _counts(simulate(s, seed=seed, backend="numba"))
    c = _counts(simulate(s, seed=seed, backend="cython"))
    assert a == b == c
    assert c["connections"] == c["established"] + c["allocation_failures"] + c["failed_connects"] \
        + c["pending_connects"]


def test_chunking_does_not_change_counts():
    s = small().replace(CASES["everything"])
    one = engine.run(s, engine.bit_generator(3), "cython", chunks=1)
    many = engine.run(s, engine.bit_generator(3), "cython", chunks=37)
    assert one.counters == many.counters
    assert np.array_equal(one.batches, many.batches)


def test_state_grows_past_first_guess():
    # a heavy tail pushes live connections far above the first capacity guess: GROW paths run
    s = small().replace({"traffic.duration": {"dist": "pareto", "mean": 10.0, "alpha": 1.1},
                         "nat.port_max": 9000, "traffic.warmup": 0, "traffic.horizon": 400.0,
                         "target.server_close_fraction": 1.0, "target.time_wait": 30.0})
    a = _counts(simulate(s, seed=11, backend="cython"))
    b = _counts(simulate(s, seed=11, backend="numba"))
    assert a == b
