"""Several load balancers (entry points) sharing targets: issue 7 item 2.

Node e of the engine is node e % nodes (its zone) of balancer e // nodes, so nodes of different
balancers in one zone share that zone's targets: with cross-zone off, collisions no longer vanish.
"""
import math

import pytest
from click.testing import CliRunner

import collide
from collide.analytic import analytic as closed_form
from collide.cli import cli
from collide.scenario import Scenario, ScenarioError

from .conftest import small


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {"load_balancer.balancers": 2},
    {"load_balancer.balancers": 2, "load_balancer.cross_zone": False},
    {"load_balancer.balancers": 3, "load_balancer.balancer_weights": [0.5, 0.3, 0.2],
     "load_balancer.node_weights": [0.2, 0.3, 0.5], "load_balancer.targets": [1, 2, 3],
     "load_balancer.cross_zone": False, "target.server_close_fraction": 0.5},
    {"load_balancer.balancers": 2, "load_balancer.node_choice": "sticky", "nat.ips": 2},
])
def test_backends_identical_with_balancers(overrides, twin):
    s = small().replace(overrides)
    keys = ("connections", "collisions", "established", "reset_victims", "time_wait_hits",
            "allocation_failures", "pairs", "first_collision_s", "expected_collisions")
    out = [{k: collide.simulate(s, seed=17, backend=b).to_dict()[k] for k in keys}
           for b in ("python", twin)]
    assert out[0] == out[1]
    assert out[1]["collisions"] > 0


def test_one_balancer_is_unchanged():
    s = Scenario.builtin("seed")
    t = s.replace({"load_balancer.balancers": 1, "load_balancer.balancer_weights": [1.0]})
    a, b = collide.simulate(s, seed=1), collide.simulate(t, seed=1)
    assert (a.connections, a.collisions, a.first_collision_s) == \
        (b.connections, b.collisions, b.first_collision_s)
    assert "balancers" not in s.to_dict()["load_balancer"]


@pytest.mark.parametrize("cross_zone", [True, False])
def test_closed_form_with_balancers_in_count_mode(cross_zone):
    s = Scenario.builtin("seed").replace({
        "load_balancer.balancers": 2, "load_balancer.balancer_weights": [0.7, 0.3],
        "load_balancer.cross_zone": cross_zone, "target.on_collision": "count",
        "traffic.horizon": 1500.0})
    a = closed_form(s)
    assert a is not None and a.collision_probability > 0
    r = collide.simulate(s, seed=5)
    z = (r.collisions - a.expected_collisions) / math.sqrt(a.expected_collisions)
    assert r.collisions > 300 and abs(z) < 4.5


def test_cross_zone_off_no_longer_vanishes_but_one_balancer_does():
    s = Scenario.builtin("seed").replace({"load_balancer.cross_zone": False})
    assert collide.simulate(s, seed=2).collisions == 0
    assert closed_form(s).collision_probability == 0
    two = s.replace({"load_balancer.balancers": 2})
    assert collide.simulate(two, seed=2).collisions > 0
    # same-zone nodes only: 2 of 6 nodes (the other balancer's node in the zone) can meet
    x = 200 * 5 / (6 * 2 * 64512)
    assert closed_form(two).collision_probability == pytest.approx(x, rel=1e-9)
    # the estimates now follow zones too (docs/engine.md): both agree with the count
    for est in ("target", "full"):
        r = collide.simulate(two.replace({"traffic.horizon": 3000.0}), seed=2, estimate=est)
        z = (r.collisions - r.expected_collisions) / math.sqrt(
            r.expected_collisions + r.expected_collisions_se ** 2)
        assert r.collisions > 100 and abs(z) < 4, (est, r.collisions, r.expected_collisions)


@pytest.mark.parametrize("table,message", [
    ({"balancers": 0}, "load_balancer.balancers = 0: must be an integer >= 1"),
    ({"balancers": 2, "balancer_weights": [1.0]}, "must have one weight per balancer (2)"),
    ({"balancers": 2, "balancer_weights": [0.6, 0.6]}, "must sum to 1"),
    ({"balancers": 2, "balancer_weights": [1.2, -0.2]}, "load_balancer.balancer_weights = -0.2"),
    ({"balancers": 64, "nodes": 5}, "balancers x nodes must be <= 256"),
])
def test_balancer_validation(tmp_path, table, message):
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Scenario.from_dict({"load_balancer": table})
    r = CliRunner().invoke(cli, ["simulate", "--set", f"load_balancer.balancers={table['balancers']}"]
                           + [a for k, v in table.items() if k != "balancers"
                              for a in ("--set", f"load_balancer.{k}={v}")],
                           standalone_mode=False)
    assert getattr(r.exception, "exit_code", None) == 2
