"""`collide solve` (collide.studies.solve): budgets, levers, switches, the recommendation, and
whether the intervals it states hold.

Statistical checks use fixed seeds. The interval checks count how many of a set of scenarios land
inside the stated 95 % intervals and require at least 17 of 20 (P(X >= 17) = 0.984 when the
coverage is 95 %; 0.23 if the intervals were half as wide as they should be).
"""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import collide
import collide.cli
from collide import Scenario, analytic
from collide.studies.solve import Budget, closed_form_holds, solve
from collide.studies.variants import HOUR, Variants, estimate_risk


def _cli(*args):
    return CliRunner().invoke(collide.cli.cli, list(args))


# -- budgets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, per_hour", [("1/hour", 1.0), ("24/day", 1.0), ("1/week", 1 / 168),
                                            ("1/month", 1 / 720), ("1/year", 1 / 8760),
                                            ("0.5/day", 0.5 / 24)])
def test_max_resets_budget(text, per_hour):
    assert Budget.max_resets(text).max_per_hour == pytest.approx(per_hour, rel=1e-12)


def test_probability_budget_is_poisson_in_the_window():
    b = Budget.max_probability(0.01, "30d")
    r = b.max_per_hour
    assert b.window_s == 30 * 86400
    assert -math.expm1(-r / HOUR * b.window_s) == pytest.approx(0.01, rel=1e-12)
    assert Budget.parse("0.01 within 30d") == b
    for w, s in (("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1w", 604800), ("1.5d", 129600)):
        assert Budget.max_probability(0.5, w).within_s == s


@pytest.mark.parametrize("args, needle", [
    (["--max-resets", "0/week"], "--max-resets 0/week"),
    (["--max-resets", "-1/week"], "--max-resets -1/week"),
    (["--max-resets", "1/fortnight"], "fortnight"),
    (["--max-resets", "one/week"], "one"),
    (["--max-resets", "1"], "N/PERIOD"),
    (["--max-probability", "0", "--within", "1d"], "--max-probability 0"),
    (["--max-probability", "1", "--within", "1d"], "--max-probability 1"),
    (["--max-probability", "0.1", "--within", "-1d"], "--within -1d"),
    (["--max-probability", "0.1", "--within", "0"], "--within 0"),
    (["--max-probability", "0.1", "--within", "3x"], "--within 3x"),
    (["--max-probability", "0.1"], "--within"),
    (["--max-resets", "1/week", "--max-probability", "0.1", "--within", "1d"], "give one"),
    ([], "give a budget"),
    (["--max-resets", "1/week", "--for", "nat.allocator"], "not a number"),
    (["--max-resets", "1/week", "--for", "nat.ipz"], "unknown scenario key"),
])
def test_bad_budgets_one_line_exit_2(args, needle):
    res = _cli("solve", "--scenario", "seed", "--seed", "1", *args)
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert "Traceback" not in res.output


def test_a_lever_that_does_not_move_the_risk_is_refused():
    """Nothing closes first (server_close_fraction = 0): TIME_WAIT cannot move the risk."""
    res = _cli("solve", "--scenario", "seed", "--seed", "1", "--max-resets", "1/week",
               "--for", "target.time_wait")
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1
    assert "target.time_wait" in lines[0] and "server_close_fraction = 0" in lines[0]


# -- closed-form levers -----------------------------------------------------------------------------
def _brentq_rate(s, r_star):
    from scipy.optimize import brentq
    return brentq(lambda x: analytic(s.replace({"traffic.rate": x})).collisions_per_hour - r_star,
                  1e-3, s.traffic.rate, xtol=1e-12, rtol=1e-13)


def test_closed_form_rate_boundary_and_confirmation():
    s = Scenario.builtin("seed")
    r = solve(s, "1/hour", levers=["traffic.rate"], seed=1, workers=1)
    lv = r.lever("traffic.rate")
    assert lv.method.startswith("closed form")
    assert lv.value == pytest.approx(_brentq_rate(s, 1.0), rel=1e-8)
    assert lv.safe_direction == "down" and lv.reachable
    lo, hi = lv.interval
    assert lo <= lv.crossing <= hi and hi / lo - 1 < 1e-3     # the form's own error is tiny here
    c = lv.confirmed
    assert c["interval"][0] <= 1.0 <= c["interval"][1], c     # the simulation there agrees
    assert r.recommendation["key"] == "traffic.rate"          # the only lever asked for
    assert r.today["over_budget"]


def test_integer_lever_is_rounded_to_the_safe_side():
    s = Scenario.builtin("seed")
    r = solve(s, "100/hour", levers=["nat.ips"], seed=1, workers=1)
    lv = r.lever("nat.ips")
    n = lv.value
    assert isinstance(n, int) and lv.safe_direction == "up"
    assert analytic(s.replace({"nat.ips": n})).collisions_per_hour <= 100
    assert analytic(s.replace({"nat.ips": n - 1})).collisions_per_hour > 100
    assert n - 1 < lv.crossing <= n


def test_nat_ips_past_the_model_cap_are_not_reachable():
    """Question 1 in small: no NAT IP count within the model's 4,096 meets one reset a week."""
    r = solve("seed", "1/week", levers=["nat.ips"], seed=1, workers=1)
    lv = r.lever("nat.ips")
    assert not lv.reachable and lv.value is None
    assert "4,096" in lv.note and lv.needed > 4096
    # about 1240 / (1/168) IPs: the risk falls as 1/k
    assert lv.needed == pytest.approx(1240 * 168, rel=0.05)
    meets = {sw.key for sw in r.switches if sw.meets_budget}
    assert {"load_balancer.cross_zone", "load_balancer.client_ip_preservation",
            "nat.allocator"} <= meets
    assert r.recommendation["kind"] == "switch"
    eim = next(sw for sw in r.switches if sw.key == "nat.allocator")
    assert "AWS NAT Gateway does not offer" in eim.cost


@pytest.mark.slow
def test_deployment_unit_and_unreachable_lifetime():
    ips = solve("seed", "20/hour", seed=1, workers=1, levers=["nat.ips"]).lever("nat.ips")
    assert ips.reachable and ips.value > 8          # about 1240 / 20 = 62
    assert f"{math.ceil(ips.value / 8):,} gateways" in ips.deployment
    r = solve("seed", "0.2/hour", seed=1, workers=1, levers=["traffic.duration.mean"])
    life = r.lever("traffic.duration.mean")         # 5 s x 0.2 / 1240: 0.8 ms
    assert not life.reachable and "TCP handshake" in life.note   # sub-millisecond: not advice


@pytest.mark.slow
def test_recommendation_is_the_smallest_log_move():
    r = solve("seed", "300/hour", seed=1, workers=2)
    moves = [(lv.move, lv.key) for lv in r.levers if lv.reachable and lv.move is not None]
    assert r.recommendation["kind"] == "lever"
    assert r.recommendation["key"] == min(moves)[1]
    alt = [a["key"] for a in r.alternatives]
    assert alt == [k for _, k in sorted(moves)][1:3]


def test_json_carries_the_documented_fields():
    res = _cli("solve", "--scenario", "seed", "--seed", "1", "--max-resets", "1/hour",
               "--for", "traffic.rate", "--format", "json", "--workers", "1")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["schema_version"] == 1
    for k in ("budget", "today", "levers", "switches", "recommendation"):
        assert k in d
    lv = d["levers"][0]
    for k in ("key", "today", "value", "interval", "safe_direction", "reachable", "method",
              "confirmed", "note"):
        assert k in lv
    for sw in d["switches"]:
        for k in ("key", "value", "resets_per_hour", "cost"):
            assert k in sw


def test_headroom_when_today_meets_the_budget():
    """Today within the budget: the boundary is how far the lever may move the risky way."""
    r = solve("seed", "5000/hour", levers=["traffic.rate"], seed=1, workers=1)
    lv = r.lever("traffic.rate")
    assert r.today["meets_budget"] and r.recommendation["kind"] == "none"
    assert lv.value > 200 and lv.safe_direction == "down"


def test_delay_new_counts_collisions_and_says_so():
    r = solve(Scenario.builtin("seed").replace({"target.on_collision": "delay-new"}), "1/hour",
              levers=["traffic.rate"], seed=1, workers=1, rel_error=0.05)
    assert r.counts == "collisions"
    assert any("counts collisions" in n for n in r.notes)
    assert not closed_form_holds(Scenario.builtin("seed").replace(
        {"target.on_collision": "delay-new"}))
    assert r.lever("traffic.rate").method.startswith("simulation")


def test_python_api_takes_a_budget_object():
    b = Budget.max_probability(0.5, "1h")
    r = collide.solve("seed", b, levers=["traffic.rate"], seed=2, workers=1)
    lv = r.lever("traffic.rate")
    # P = 0.5 within an hour: r* = ln 2 per hour
    assert analytic(Scenario.builtin("seed").replace({"traffic.rate": lv.value})) \
        .collisions_per_hour == pytest.approx(math.log(2), rel=1e-6)


# -- the simulated boundary against the closed form -----------------------------------------------
def _count(s):
    return s.replace({"target.on_collision": "count"})


def test_simulated_boundary_brackets_the_closed_form():
    """count mode, where the closed form is exact: the stochastic root finder's interval holds it;
    the same check against a deliberately wrong closed form (targets 6 -> 8) fails."""
    s = _count(Scenario.builtin("seed"))
    r = solve(s, "1/hour", levers=["traffic.rate"], seed=5, workers=1, method="simulation")
    lv = r.lever("traffic.rate")
    assert lv.method.startswith("simulation")
    exact = _brentq_rate(s, 1.0)
    lo, hi = lv.interval
    assert lo <= exact <= hi, (lo, exact, hi)
    assert hi / lo - 1 < 0.3          # an interval that says something
    wrong = _brentq_rate(s.replace({"load_balancer.targets": 8}), 1.0)
    assert not lo <= wrong <= hi


ANALYTIC_CASES = [                           # (changes, budget, lever), all in count mode
    ({}, "1/hour", "traffic.rate"), ({}, "10/hour", "traffic.rate"),
    ({}, "1/day", "traffic.rate"), ({}, "1/hour", "traffic.duration.mean"),
    ({}, "30/hour", "traffic.duration.mean"),
    ({"load_balancer.nodes": 2}, "1/hour", "traffic.rate"),
    ({"load_balancer.nodes": 4, "load_balancer.targets": 8}, "1/hour", "traffic.rate"),
    ({"nat.ips": 2}, "1/hour", "traffic.rate"),
    ({"traffic.duration": {"dist": "lognormal", "mean": 5.0, "sigma": 1.0}}, "1/hour", "traffic.rate"),
    ({"traffic.duration": {"dist": "fixed", "mean": 5.0}}, "1/hour", "traffic.rate"),
    ({"traffic.duration": {"dist": "pareto", "mean": 5.0, "alpha": 3.0}}, "1/hour", "traffic.rate"),
    ({"load_balancer.targets": 30}, "1/hour", "traffic.rate"),
    ({"traffic.rate": 1000}, "100/hour", "traffic.rate"),
    ({"traffic.rate": 50}, "1/hour", "traffic.duration.mean"),
    ({"nat.port_min": 30000}, "1/hour", "traffic.rate"),
    ({"load_balancer.node_weights": [0.5, 0.3, 0.2]}, "1/hour", "traffic.rate"),
    ({"traffic.duration.mean": 60.0}, "1/hour", "traffic.rate"),
    ({"nat.ips": 3, "nat.ip_choice": "per-client", "traffic.clients": 300}, "1/hour", "traffic.rate"),
    ({}, "0.1/hour", "traffic.duration.mean"),
    ({"load_balancer.targets": [1, 2, 3]}, "1/hour", "traffic.rate"),
]


def _exact_crossing(s, key, r_star):
    from scipy.optimize import brentq
    V = Variants()
    x0 = V.today(s, key)
    f = (lambda x: analytic(V.set(s, key, x)).collisions_per_hour - r_star)
    return brentq(f, x0 * 1e-7, x0 * 10, xtol=1e-14, rtol=1e-12)


@pytest.mark.slow
def test_simulated_boundaries_agree_with_the_closed_form_in_17_of_20():
    inside = []
    for i, (changes, budget, key) in enumerate(ANALYTIC_CASES):
        s = _count(Scenario.builtin("seed").replace(changes) if changes else Scenario.builtin("seed"))
        r = solve(s, budget, levers=[key], seed=1000 + i, workers=2, method="simulation")
        lv = r.lever(key)
        exact = _exact_crossing(s, key, Budget.parse(budget).max_per_hour)
        lo, hi = lv.interval
        inside.append(lo <= exact <= hi)
        print(f"{i:2d} {key:22s} {budget:9s} exact {exact:.5g} solved {lv.crossing:.5g} "
              f"[{lo:.5g}, {hi:.5g}] {'in' if inside[-1] else 'OUT'}")
    assert sum(inside) >= 17, inside


# -- the 20 scenarios without a closed form ----------------------------------------------------------
#: (name, changes to `seed`, budget, lever). None has a closed form that solve may take.
NON_ANALYTIC = [
    ("sticky, 200 clients", {"load_balancer.node_choice": "sticky", "traffic.clients": 200},
     "10/hour", "traffic.rate"),
    ("sticky, 50 clients", {"load_balancer.node_choice": "sticky", "traffic.clients": 50},
     "1/hour", "traffic.rate"),
    ("sticky, TTL 5 s", {"load_balancer.node_choice": "sticky", "load_balancer.dns_ttl": 5.0,
                         "traffic.clients": 20}, "10/hour", "traffic.duration.mean"),
    ("linux allocator", {"nat.allocator": "linux"}, "100/hour", "traffic.rate"),
    ("linux, 20 s lifetimes", {"nat.allocator": "linux", "traffic.duration.mean": 20.0},
     "300/hour", "traffic.rate"),
    ("linux, lifetime lever", {"nat.allocator": "linux"}, "100/hour", "traffic.duration.mean"),
    ("delay-new", {"target.on_collision": "delay-new"}, "1/hour", "traffic.rate"),
    ("delay-new, lifetime", {"target.on_collision": "delay-new"}, "10/hour",
     "traffic.duration.mean"),
    ("kernel pre-6.4", {"target.kernel": "pre-6.4"}, "1/hour", "traffic.rate"),
    ("challenge-ACK limit 50/s", {"target.challenge_ack_limit": 50}, "1/hour", "traffic.rate"),
    ("TIME_WAIT, half close first", {"target.server_close_fraction": 0.5}, "1/hour",
     "traffic.rate"),
    ("TIME_WAIT, lifetime lever", {"target.server_close_fraction": 1.0, "target.time_wait": 30.0},
     "10/hour", "traffic.duration.mean"),
    ("reuse delay 2 s", {"nat.reuse_delay": 2.0}, "1/hour", "traffic.rate"),
    ("reuse delay, lifetime", {"nat.reuse_delay": 1.0}, "10/hour", "traffic.duration.mean"),
    ("sticky, lognormal", {"load_balancer.node_choice": "sticky", "traffic.clients": 30,
                           "traffic.duration": {"dist": "lognormal", "mean": 5.0, "sigma": 1.5}},
     "1/hour", "traffic.rate"),
    ("linux, Pareto", {"nat.allocator": "linux",
                       "traffic.duration": {"dist": "pareto", "mean": 5.0, "alpha": 2.5}},
     "100/hour", "traffic.rate"),
    ("delay-new, fixed lifetimes", {"target.on_collision": "delay-new",
                                    "traffic.duration": {"dist": "fixed", "mean": 5.0}},
     "1/hour", "traffic.rate"),
    ("kernel pre-3.6, 2 NAT IPs", {"target.kernel": "pre-3.6", "nat.ips": 2}, "1/hour",
     "traffic.rate"),
    ("sticky, per-client IPs", {"load_balancer.node_choice": "sticky", "traffic.clients": 40,
                                "nat.ips": 2, "nat.ip_choice": "per-client"},
     "1/hour", "traffic.rate"),
    ("schedule ramp, sticky", {"traffic.schedule": [[0, 100], [200, 200], [400, 300]],
                               "load_balancer.node_choice": "sticky", "traffic.clients": 100},
     "10/hour", "traffic.rate"),
]


def resimulate(case, seed: int = 1, check_seed: int = 99, workers: int = 2):
    """Solve one case, then simulate the solved value again with another seed. Returns a row:
    the solved value and interval, the rate there, and whether the budget lies within the
    combined interval (both estimates' standard errors)."""
    name, changes, budget, key = case
    s = Scenario.builtin("seed").replace(changes)
    assert not closed_form_holds(s), name
    b = Budget.parse(budget)
    r = solve(s, b, levers=[key], seed=seed, workers=workers)
    lv = r.lever(key)
    assert lv.method.startswith("simulation"), (name, lv.method)
    with Variants() as V:
        e = estimate_risk(V.set(s, key, lv.crossing), check_seed, 0.03)
    r_star = b.max_per_hour
    se_solve = (lv.boundary_rel_se or 0.0) * r_star
    z = (e.per_hour - r_star) / math.hypot(se_solve, e.se_per_hour or 0.0)
    return {"name": name, "key": key, "budget": budget, "value": lv.crossing,
            "interval": lv.interval, "resets_per_hour": e.per_hour,
            "rate_interval": e.interval, "r_star": r_star, "z": z, "inside": abs(z) <= 1.96}


@pytest.mark.slow
def test_simulated_boundaries_meet_the_budget_again_in_17_of_20():
    rows = [resimulate(c) for c in NON_ANALYTIC]
    for r in rows:
        print(f"{r['name']:28s} {r['key']:22s} {r['value']:.4g} [{r['interval'][0]:.4g}, "
              f"{r['interval'][1]:.4g}] -> {r['resets_per_hour']:.4g} (r* {r['r_star']:.4g}, "
              f"z {r['z']:+.2f})")
    assert sum(r["inside"] for r in rows) >= 17


# -- plot: where a budget is met on a two-key grid ------------------------------------------------------
@pytest.fixture(scope="module")
def grid_rows():
    res = collide.sweep("seed", {"traffic.rate": [2.0, 8.0, 32.0], "nat.ips": [1, 4]},
                        overrides={"traffic.horizon": 200}, seed=1, workers=1)
    return res.rows


def test_sweep_rows_carry_the_estimate_per_hour(grid_rows):
    for r in grid_rows:
        per_h = r["expected_collisions"] / (r["replicates"] * r["horizon_s"]) * 3600
        assert r["expected_collisions_per_hour"] == pytest.approx(per_h)
        assert r["expected_collisions_per_hour_se"] == pytest.approx(
            r["expected_collisions_se"] / (r["replicates"] * r["horizon_s"]) * 3600)


def test_plot_draws_the_budget_boundary(grid_rows, tmp_path):
    from collide.studies.plot import plot_budget
    out = plot_budget(grid_rows, x="traffic.rate", y="nat.ips", budget="1/hour",
                      out=tmp_path / "b.svg")
    svg = out.read_text()
    assert "budget met: at most 1 reset per hour" in svg


def test_plot_budget_refusals(grid_rows, tmp_path):
    import csv
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(grid_rows[0]))
        w.writeheader()
        for r in grid_rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    for args, needle in ((["--y", "collisions_per_hour"], "both must be keys"),
                         (["--y", "nat.ips", "--hue", "nat.ips"], "--hue"),
                         (["--y", "nat.ips", "--max-resets", "1/fortnight"], "fortnight")):
        extra = [] if "--max-resets" in args else ["--max-resets", "1/hour"]
        res = _cli("plot", str(path), "--x", "traffic.rate", *args, *extra, "--out",
                   str(tmp_path / "x.png"))
        assert res.exit_code == 2 and needle in res.output, res.output
