"""`collide report` on the model-fidelity scenarios of issue 7: measured lifetimes, a changing load,
several balancers, delayed connects. Each report is small (seconds); the page must build, its
headline must equal summary.json, and each kind must show what it adds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import collide
from collide.report import build_report
from collide.report_html import FIGURES, headline, write_report
from collide.scenario import Scenario

from .test_report import _png_size, _Spans

pytestmark = pytest.mark.slow   # full reports: ~20 s together

LIFETIMES = Path(collide.__file__).parent / "scenarios" / "lifetimes-example.csv"


def _write(tmp_path, s, **kw):
    data = build_report(s, seed=3, workers=2, replicates=kw.pop("replicates", 12), **kw)
    out = write_report(data, tmp_path / "out", scenario_toml=s.to_toml())
    summary = json.loads((out / "summary.json").read_text())
    page = _Spans()
    html_text = (out / "index.html").read_text()
    page.feed(html_text)
    # the headline on the page equals summary.json
    assert summary["page"] == headline({k: v for k, v in summary.items() if k != "page"})
    for key, item in summary["page"].items():
        assert key in page.found, key
        assert json.loads(page.found[key]["value"]) == item["value"], key
        assert page.found[key]["text"].strip() == item["text"], key
    for fig in FIGURES:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (out / "figures" / f"{fig}.svg").stat().st_size > 1000
    return out, summary, page, html_text


def test_report_empirical_lifetimes(tmp_path):
    s = Scenario.builtin("seed").replace({
        "traffic.horizon": 60,
        "traffic.duration": {"dist": "empirical", "file": str(LIFETIMES), "column": "duration_s"}})
    mean = s.traffic.duration.mean
    out, summary, page, text = _write(tmp_path, s)
    assert summary["scenario_summary"]["lifetime"]["dist"] == "empirical"
    assert summary["scenario_summary"]["lifetime"]["mean"] == pytest.approx(mean)
    assert "measured lifetimes" in text and "lifetimes-example.csv" in text
    # the lifetime axis scales every measured lifetime: x = factor x today's mean, risk grows
    sec = summary["sensitivity"]["traffic.duration.mean"]
    assert sec["note"] and "scaled" in sec["note"]
    assert [p["x"] for p in sec["points"]] == pytest.approx([f * mean for f in
                                                             (0.125, 0.25, 0.5, 1, 2, 4, 8)])
    ys = [p["collisions_per_hour"] for p in sec["points"]]
    assert ys == sorted(ys) and ys[0] > 0
    assert all(y is not None for y in sec["closed_form_y"])
    today = summary["verdict"]["collisions_per_hour"]
    half = {m["name"]: m for m in summary["mitigations"]}["half the connection lifetime"]
    assert "halved" in json.dumps(half["changes"])
    assert half["collisions_per_hour"] == pytest.approx(today / 2, rel=0.25)
    life = next(r for r in summary["headroom"] if r["key"] == "traffic.duration.mean")
    assert life["today"] == pytest.approx(mean)       # the scaled law's mean: every value scaled
    assert life["method"].startswith("closed form") and life["safe_direction"] == "down"
    # the scaled copies were temporary: the page and the summary name only the measured file
    assert "collide-report-lifetimes-" not in json.dumps(summary)
    assert "collide-report-lifetimes-" not in text
    assert Scenario.from_toml(out / "scenario.toml").traffic.duration.file == str(LIFETIMES)


def test_report_schedule(tmp_path):
    sched = [[0, 100.0], [60, 400.0]]           # a load-test ramp
    s = Scenario.builtin("seed").replace({"traffic.horizon": 120, "traffic.schedule": sched})
    out, summary, page, text = _write(tmp_path, s, window=300)
    v = summary["verdict"]
    T = 120
    assert v["scheduled"] is True
    # the verdict is the window as simulated: its expected count gives P(>= 1 reset) over it
    ps = v["p_reset_schedule"]
    assert ps["seconds"] == T
    assert ps["expected"] == pytest.approx(v["collisions_per_hour"] / 3600 * T)
    assert ps["value"] == pytest.approx(-math.expm1(-ps["expected"]))
    assert ps["closed_form_expected"] == pytest.approx(v["closed_form_collisions_per_hour"] / 3600 * T)
    segs = summary["schedule"]["segments"]
    assert [(g["start_s"], g["rate"]) for g in segs] == [tuple(x) for x in sched]
    cf = [g["closed_form_collisions_per_hour"] for g in segs]
    assert cf == sorted(cf) and cf[0] > 0            # risk grows with the ramp
    # the segments' closed forms add up to the window's
    total = sum(c / 3600 * (g["end_s"] - g["start_s"]) for c, g in zip(cf, segs))
    assert total == pytest.approx(ps["closed_form_expected"], rel=1e-6)
    sim = [g["simulated_collisions_per_hour"] for g in segs]
    assert sim == sorted(sim)
    # the load-test window (300 s, past the schedule's end) uses the per-segment rates
    pw = v["p_reset_window"]
    exp = sum(g["simulated_collisions_per_hour"] / 3600
              * (min(g["end_s"] if i + 1 < len(segs) else 300, 300) - g["start_s"])
              for i, g in enumerate(segs))
    assert pw["expected"] == pytest.approx(exp)
    assert "schedule-table" in page.found and "p-reset-schedule" in summary["page"]
    # rate variants scale the schedule: x is the window's mean rate
    sec = summary["sensitivity"]["traffic.rate"]
    assert sec["today"] == pytest.approx(s.traffic.mean_rate) and "schedule" in sec["note"]
    assert summary["first_reset"]["horizon_s"] == T
    assert summary["first_reset"]["replicates"] > 0


def test_report_balancers_cross_zone_off(tmp_path):
    s = Scenario.builtin("seed").replace({"traffic.horizon": 60, "load_balancer.balancers": 2,
                                          "load_balancer.cross_zone": False})
    out, summary, page, text = _write(tmp_path, s)
    sc = summary["scenario_summary"]
    assert sc["balancers"] == 2 and sc["total_nodes"] == 2 * sc["nodes"]
    assert "2 balancers × 3 node(s)" in text
    m = {r["name"]: r for r in summary["mitigations"]}
    assert summary["verdict"]["collisions_per_hour"] > 0       # cross-zone off does not save it
    assert "does not remove collisions" in m["cross-zone off"]["cost"]
    assert m["cross-zone off"]["collisions_per_hour"] > 0
    assert m["one balancer"]["collisions_per_hour"] == 0
    svg = (out / "figures" / "topology.svg").read_text()
    assert "LB2" in svg


def _delay_new_accepted() -> bool:
    try:
        Scenario.builtin("seed").replace({"target.on_collision": "delay-new"})
    except Exception:
        return False
    return True


def test_report_delay_new(tmp_path):
    if not _delay_new_accepted():
        pytest.skip('target.on_collision = "delay-new" is not in the model yet')
    s = Scenario.builtin("seed").replace({"traffic.horizon": 60,
                                          "target.on_collision": "delay-new"})
    if collide.simulate(s.replace({"traffic.horizon": 5}), seed=1).to_dict().get(
            "delayed_connects") is None:
        pytest.skip("the engine does not report delayed_connects yet")
    out, summary, page, text = _write(tmp_path, s)
    dl = summary["delays"]
    assert dl["delayed_connects"] > 0
    assert dl["delayed_connects_per_hour"] == pytest.approx(
        dl["delayed_connects"] * 3600 / summary["verdict"]["horizon_s"])
    lo, hi = dl["delayed_connects_per_hour_ci"]
    assert lo <= dl["delayed_connects_per_hour"] <= hi
    assert 0 < dl["connect_delay_p50_s"] <= dl["connect_delay_p99_s"]
    assert sum(c for _, c in dl["connect_delay_histogram"]) > 0
    for key in ("delayed-connects-per-hour", "connect-delay-p50", "connect-delay-p99"):
        assert key in summary["page"]
    w, h = _png_size(out / "figures" / "connect_delay.png")
    assert w >= 300 and h >= 100
    svg = (out / "figures" / "connect_delay.svg").read_text()
    assert "connect delay" in svg and "delayed connects" in svg
    assert "fig-connect-delay" in page.found
    assert "Delayed connects" in (out / "summary.md").read_text()


def test_seed_report_has_no_fidelity_sections():
    # a plain scenario: no schedule or delay sections, the base figures only
    s = Scenario.builtin("seed").replace({"load_balancer.cross_zone": False, "traffic.horizon": 30})
    d = build_report(s, seed=1, workers=1, replicates=5)
    assert d["schedule"] is None and d["delays"] is None
    assert "p_reset_schedule" not in d["verdict"]
