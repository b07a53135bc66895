"""The Monte Carlo against the closed forms of docs/model.md §3, in `count` mode, on a grid of scenarios.

Each comparison uses z = (observed − predicted) / SE with
  SE² = predicted·(1 − p)   (collisions given the path: a sum of Bernoulli(e_i), a martingale)
      + se_est²             (the path's own variation: batch means of the conditional estimate),
and a Bonferroni bound over the whole grid at family error 1e-3. Every point is also run on a
deliberately wrong engine (ports drawn from only half the range: a biased allocator) and must fail.
"""
import math
from statistics import NormalDist

import numpy as np
import pytest

from collide import engine
from collide.analytic import analytic as closed_form, applies, cold_pairs_exact
from collide.api import _result
from collide.scenario import Scenario

FAMILY_ALPHA = 1e-3


def grid():
    """(id, overrides, target expected collisions). N 2–6, B 1–100, k 1–8, p from 1e-5 to 1e-2."""
    pts = []
    specs = [
        # N, B, k, weights, warmup, dist, p_target
        (2, 1, 1, [], "auto", "exponential", 1e-2),
        (3, 6, 1, [], "auto", "exponential", 3e-3),
        (3, 10, 1, [], "auto", "lognormal", 1e-3),
        (4, 20, 2, [], "auto", "exponential", 3e-4),
        (5, 50, 1, [], "auto", "fixed", 1e-4),
        (6, 100, 1, [], "auto", "exponential", 1e-5),
        (2, 4, 8, [], "auto", "exponential", 1e-3),
        (3, 3, 4, [], "auto", "pareto", 5e-3),
        (3, 6, 1, [0.5, 0.3, 0.2], "auto", "exponential", 2e-3),
        (4, 8, 2, [0.4, 0.3, 0.2, 0.1], "auto", "exponential", 1e-3),
        (2, 2, 1, [0.7, 0.3], "auto", "exponential", 1e-2),
        (6, 12, 3, [], "auto", "exponential", 3e-3),
        (3, 6, 1, [], 0, "exponential", 3e-3),
        (3, 6, 1, [], 0, "fixed", 3e-3),
        (2, 10, 2, [], 0, "exponential", 1e-3),
        (5, 25, 1, [], 0, "lognormal", 1e-4),
        (4, 4, 1, [], 0, "fixed", 1e-2),
        (3, 30, 1, [], 20.0, "exponential", 3e-4),
        (6, 60, 8, [], "auto", "exponential", 1e-5),
        (2, 100, 1, [], "auto", "exponential", 3e-5),
        (4, 1, 2, [], "auto", "exponential", 5e-3),
        (3, 9, 1, [0.6, 0.2, 0.2], 0, "exponential", 2e-3),
        (5, 5, 4, [], "auto", "fixed", 1e-3),
        (2, 50, 1, [], 0, "pareto", 3e-4),
    ]
    for i, (n, b, k, w, warm, dist, p) in enumerate(specs):
        rate, mean = 400.0, 10.0
        dur = {"dist": dist, "mean": mean}
        if dist == "lognormal":
            dur["sigma"] = 1.0
        if dist == "pareto":
            dur["alpha"] = 2.5
        # choose the port range (and, where the range is not enough, the lifetime) so that the
        # uniform-weights per-arrival probability is about p
        x = p / (n - 1)
        ports = min(int(round((rate / k) * mean / (n * b * x))), 64000)
        mean = x * n * b * ports * k / rate
        dur["mean"] = mean
        expected_target = 150.0 if p >= 3e-5 else 100.0
        horizon = float(min(max(expected_target / (rate * p), 60.0), 40000.0))
        ov = {"traffic.rate": rate, "traffic.duration": dur, "traffic.horizon": horizon,
              "traffic.warmup": warm, "nat.ips": k, "nat.port_min": 1024,
              "nat.port_max": 1024 + ports - 1, "load_balancer.nodes": n,
              "load_balancer.targets": b, "load_balancer.node_weights": w,
              "target.on_collision": "count", "target.time_wait": 0.0}
        pts.append((f"{i:02d}-N{n}-B{b}-k{k}-{dist}-{'w' if w else 'u'}-{warm}-p{p:g}", ov))
    return pts


GRID = grid()
Z_BOUND = NormalDist().inv_cdf(1 - FAMILY_ALPHA / (2 * len(GRID)))


def _run(s: Scenario, seed: int, wrong: bool = False):
    if not wrong:
        raw = engine.run(s, engine.bit_generator(seed), "cython", estimate=True)
        return _result(s, seed, "cython", raw)
    # the wrong engine: the NAT hands out ports from only the lower half of its range
    half = s.replace({"nat.port_max": s.nat.port_min + s.nat.ports // 2 - 1})
    raw = engine.run(half, engine.bit_generator(seed), "cython", estimate=True)
    return _result(half, seed, "cython", raw)


def z_score(s: Scenario, r) -> float:
    a = closed_form(s)
    pred = a.expected_collisions
    var = pred * (1 - a.collision_probability) + (r.expected_collisions_se or 0.0) ** 2
    return (r.collisions - pred) / math.sqrt(var)


@pytest.mark.stats
@pytest.mark.slow
@pytest.mark.parametrize("name,overrides", GRID, ids=[g[0] for g in GRID])
def test_closed_form_grid(name, overrides):
    s = Scenario.from_dict().replace(overrides)
    assert applies(s) is None
    r = _run(s, seed=1000 + GRID.index((name, overrides)))
    z = z_score(s, r)
    assert abs(z) < Z_BOUND, f"z = {z:.2f} (bound {Z_BOUND:.2f}); observed {r.collisions}, " \
                             f"predicted {closed_form(s).expected_collisions:.1f}"
    # the same test must reject an engine whose ports are drawn with a bias
    bad = _run(s, seed=1000 + GRID.index((name, overrides)), wrong=True)
    z_bad = z_score(s, bad)
    assert abs(z_bad) > Z_BOUND, f"the wrong engine passed: z = {z_bad:.2f}"


def test_grid_covers_the_issue_ranges():
    ns = {ov["load_balancer.nodes"] for _, ov in GRID}
    bs = {ov["load_balancer.targets"] for _, ov in GRID}
    ks = {ov["nat.ips"] for _, ov in GRID}
    warm = {str(ov["traffic.warmup"]) for _, ov in GRID}
    assert len(GRID) >= 20
    assert min(ns) == 2 and max(ns) == 6 and min(bs) == 1 and max(bs) == 100
    assert min(ks) == 1 and max(ks) == 8
    assert {"auto", "0"} <= warm
    assert any(ov["load_balancer.node_weights"] for _, ov in GRID)
    ps = [closed_form(Scenario.from_dict().replace(ov)).collision_probability for _, ov in GRID]
    assert min(ps) < 2e-5 and max(ps) > 5e-3


def test_cold_event_form_matches_design_pairs():
    """The integrated cold form equals docs/model.md §3's pair formula for fixed and exponential lives."""
    for dist in ("fixed", "exponential"):
        s = Scenario.from_dict().replace({"traffic.warmup": 0, "traffic.horizon": 100.0,
                                          "traffic.duration": {"dist": dist, "mean": 20.0},
                                          "traffic.rate": 50.0})
        a = closed_form(s)
        assert a.pairs_per_second * 100.0 == pytest.approx(cold_pairs_exact(s), rel=1e-6)


def test_steady_form_weights_reduce_to_uniform():
    s = Scenario.from_dict()
    sw = s.replace({"load_balancer.node_weights": [1 / 3, 1 / 3, 1 / 3]})
    assert closed_form(s).collision_probability == pytest.approx(
        closed_form(sw).collision_probability, rel=1e-12)
    x = (500 / 1) * 30 / (3 * 6 * 64512)
    assert closed_form(s).collision_probability == pytest.approx(1 - (1 - x) ** 2, rel=1e-12)


def test_zero_forms():
    for ov in ({"load_balancer.cross_zone": False}, {"load_balancer.nodes": 1},
               {"load_balancer.client_ip_preservation": False}, {"nat.allocator": "eim"}):
        a = closed_form(Scenario.from_dict().replace(ov))
        assert a is not None and a.collision_probability == 0.0


def test_no_form_where_none_applies():
    for ov in ({"nat.allocator": "sequential"}, {"nat.allocator": "linux"},
               {"load_balancer.node_choice": "sticky"}):
        assert closed_form(Scenario.from_dict().replace(ov)) is None
