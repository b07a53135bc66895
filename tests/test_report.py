"""`collide report`: the numbers, the files, the figures and bad input (issue 5, docs/model.md §4.6)."""
from __future__ import annotations

import json
import math
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

import collide.cli
from collide.report import build_report, garwood, verdict_of
from collide.report_html import FIGURES, fmt_num, headline
from collide.scenario import Scenario

# a short seed run: the whole report in a few seconds of simulation
ARGS = ["report", "--scenario", "seed", "--horizon", "120", "--seed", "7", "--within", "300"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    res = CliRunner().invoke(collide.cli.cli, ARGS + ["--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def summary(report_dir):
    return json.loads((report_dir / "summary.json").read_text())


class _Spans(HTMLParser):
    """Elements with an id: their data-value and their text."""

    def __init__(self):
        super().__init__()
        self.found, self.stack, self.imgs, self.urls = {}, [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])
        if "id" in a:
            self.found[a["id"]] = {"value": a.get("data-value"), "text": ""}
        self.stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i is not None:
                self.found[i]["text"] += data


@pytest.fixture(scope="module")
def page(report_dir):
    p = _Spans()
    p.feed((report_dir / "index.html").read_text())
    return p


@pytest.mark.slow
def test_files_written(report_dir):
    for name in ("index.html", "summary.json", "summary.md", "scenario.toml"):
        assert (report_dir / name).stat().st_size > 0
    for fig in FIGURES:
        assert (report_dir / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (report_dir / "figures" / f"{fig}.svg").stat().st_size > 1000
    # no temporary directory left next to the output
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".collide-report-")]


def test_headline_numbers_match_summary(summary, page):
    assert summary["page"] == headline({k: v for k, v in summary.items() if k != "page"})
    for key, item in summary["page"].items():
        assert key in page.found, key
        got = page.found[key]
        assert json.loads(got["value"]) == item["value"], key
        assert got["text"].strip() == item["text"], key
    v = summary["verdict"]
    assert summary["page"]["collisions-per-hour"]["value"] == v["collisions_per_hour"]
    assert page.found["collisions-per-hour"]["text"] == fmt_num(v["collisions_per_hour"])
    assert page.found["verdict"]["text"] == v["level"]


def test_numbers_consistent(summary):
    v = summary["verdict"]
    rate = v["collisions_per_hour"]
    lo, hi = v["collisions_per_hour_ci"]
    assert lo <= rate <= hi and lo > 0
    assert v["collisions_per_day"] == pytest.approx(24 * rate)
    # the seed scenario: the closed form applies and agrees within a few intervals
    cf = v["closed_form_collisions_per_hour"]
    assert cf is not None and abs(cf - rate) < 5 * (hi - lo) + 0.05 * cf
    p = v["collision_probability"]
    assert v["collision_probability_ci"][0] <= p <= v["collision_probability_ci"][1]
    assert rate == pytest.approx(p * v["connections"] / v["horizon_s"] * 3600)
    # judged against the default budget, 1 reset a day: far over it
    assert v["budget"]["text"] == "at most 1 reset per day"
    assert v["max_resets_per_hour"] == pytest.approx(1 / 24)
    assert v["level"] == verdict_of(rate, (lo, hi), 1 / 24) == "high"
    # P(>= 1 reset) in the user's window matches 1 - exp(-rate T)
    assert v["p_reset_window"]["seconds"] == 300
    assert v["p_reset_window"]["value"] == pytest.approx(-math.expm1(-rate / 3600 * 300))
    # the windows shown are the informative ones (1 %-99 %), here a minute at most
    assert v["p_reset"] and all(0.01 <= r["value"] <= 0.99 or len(v["p_reset"]) == 1
                                for r in v["p_reset"])
    # time to first reset: median below the 95th percentile, close to the exponential law
    fr = summary["first_reset"]
    assert fr["replicates"] > 0 and 0 < fr["median_s"] < fr["p95_s"]
    assert fr["median_s_ci"][0] <= fr["median_s"] <= fr["median_s_ci"][1]
    assert fr["median_s"] == pytest.approx(fr["closed_form_median_s"], rel=0.4)
    assert fr["survival_s"][0] == 1.0 and all(a >= b for a, b in zip(fr["survival_s"], fr["survival_s"][1:]))


def test_headroom_comes_from_solve(summary):
    rows = {r["key"]: r for r in summary["headroom"]}
    assert set(rows) == {"traffic.rate", "traffic.duration.mean", "nat.ips",
                         "load_balancer.targets", "load_balancer.nodes"}
    r_star = summary["verdict"]["max_resets_per_hour"]
    rate = rows["traffic.rate"]
    assert rate["reachable"] and rate["method"].startswith("closed form")
    assert rate["value"] < rate["today"] and rate["safe_direction"] == "down"
    c = rate["confirmed"]                   # simulated there: the budget within the interval
    assert c["interval"][0] <= r_star <= c["interval"][1]
    # what no deployment can do is not advice: a sub-millisecond lifetime, NAT IPs past the cap
    assert not rows["traffic.duration.mean"]["reachable"]
    assert not rows["nat.ips"]["reachable"] and rows["nat.ips"]["value"] is None


def test_first_screen_says_what_to_change(summary, page):
    sv = summary["solve"]
    rec = sv["recommendation"]
    assert rec["kind"] in ("lever", "switch") and rec["text"]
    assert len(sv["alternatives"]) == 2
    for ident in ("first-screen", "verdict-box", "recommendation", "alternative-0",
                  "alternative-1", "headroom-table", "budget"):
        assert ident in page.found, ident
    assert page.found["recommendation-text"]["text"] == rec["text"]
    assert "Cost:" in page.found["recommendation"]["text"]
    assert "not reachable" in page.found["headroom-table"]["text"]


def test_mitigations(summary):
    m = {r["name"]: r for r in summary["mitigations"]}
    today = summary["verdict"]["collisions_per_hour"]
    assert m["cross-zone off"]["collisions_per_hour"] == 0
    assert m["client IP preservation off"]["collisions_per_hour"] == 0
    assert m["cross-zone off"]["change_vs_today"] == -1
    prev = today
    for k in (2, 4, 8):
        per_conn = m[f"{k} NAT IPs, per-connection"]
        assert per_conn["collisions_per_hour"] < prev        # more IPs, fewer collisions
        prev = per_conn["collisions_per_hour"]
        assert per_conn["collisions_per_hour"] == pytest.approx(today / k, rel=0.25)
        # one client pinned to one IP gains nothing
        assert m[f"{k} NAT IPs, per-client"]["collisions_per_hour"] == pytest.approx(today, rel=0.25)
    for name in ("twice the targets", "half the connection lifetime"):
        assert m[name]["collisions_per_hour"] == pytest.approx(today / 2, rel=0.25)
    assert m["sticky DNS on the clients"]["collisions_per_hour"] < today / 2
    for r in summary["mitigations"]:
        lo, hi = r["collisions_per_hour_ci"]
        assert lo <= r["collisions_per_hour"] <= hi
        assert r["cost"]
    allocs = {r["allocator"]: r for r in summary["allocators"]}
    assert set(allocs) == {"random", "sequential", "linux", "eim"}
    assert allocs["eim"]["collisions_per_hour"] == 0


def test_sensitivity(summary):
    for key in ("traffic.rate", "traffic.duration.mean"):
        sec = summary["sensitivity"][key]
        ys = [p["collisions_per_hour"] for p in sec["points"]]
        assert ys == sorted(ys)                    # risk grows with rate and with lifetime
        assert any(p["factor"] == 1.0 for p in sec["points"])
        assert len(sec["closed_form_x"]) == len(sec["closed_form_y"]) > 10
    ports = summary["ports"]
    assert 0 < ports["peak_live_per_destination"] < ports["limit"] == 55000
    assert ports["allocation_failures"] == 0


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures(report_dir):
    for fig in FIGURES:
        w, h = _png_size(report_dir / "figures" / f"{fig}.png")
        assert w >= 300 and h >= 100, fig
    svg = {f: (report_dir / "figures" / f"{f}.svg").read_text() for f in FIGURES}
    for f in FIGURES:
        assert svg[f].lstrip().startswith("<?xml") and "<svg" in svg[f]
    assert "collisions per hour" in svg["sensitivity_rate"]
    assert "new connections per second" in svg["sensitivity_rate"]
    assert "mean connection lifetime" in svg["sensitivity_lifetime"]
    assert "time to first reset" in svg["survival"] and "P(no reset yet)" in svg["survival"]
    assert "collisions per hour" in svg["mitigations"]
    assert "live connections per destination" in svg["ports"]


def test_page_self_contained(page, report_dir):
    assert len(page.imgs) == len(FIGURES)
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 2000
    for url in page.urls:
        assert url.startswith("data:"), url
    text = (report_dir / "index.html").read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    cmd = page.found["command"]["text"]
    assert cmd.startswith("collide report --config ") and "--seed 7" in cmd
    assert "--max-resets 1/day --within 300" in cmd


def test_summary_md(report_dir, summary):
    md = (report_dir / "summary.md").read_text()
    assert "| change | collisions / hour |" in md
    assert summary["page"]["collisions-per-hour"]["text"] in md
    assert md.count("\n| ") >= len(summary["mitigations"]) + 1


def test_scenario_toml_reproduces(report_dir):
    s = Scenario.from_toml(report_dir / "scenario.toml")
    assert s == Scenario.builtin("seed").replace({"traffic.horizon": 120})


@pytest.mark.parametrize("args, needle", [
    (["--scenario", "nope"], "--scenario"),
    (["--scenario", "seed", "--window", "-5"], "--window"),
    (["--scenario", "seed", "--window", "0"], "--window"),
    (["--scenario", "seed", "--within", "-1d"], "--within"),
    (["--scenario", "seed", "--within", "5", "--window", "5"], "--window"),
    (["--scenario", "seed", "--max-resets", "0/week"], "--max-resets"),
    (["--scenario", "seed", "--max-resets", "1/fortnight"], "fortnight"),
    (["--scenario", "seed", "--max-probability", "1", "--within", "1d"], "--max-probability"),
    (["--scenario", "seed", "--max-probability", "0.1"], "--within"),
    (["--scenario", "seed", "--set", "nat.bogus=1"], "nat.bogus"),
    (["--config", "/nonexistent/x.toml"], "--config"),
    (["--scenario", "seed", "--config", "x.toml"], "--scenario"),
    (["--scenario", "seed", "--backend", "fortran"], "--backend"),
])
def test_bad_input_exit_2(tmp_path, args, needle):
    out = tmp_path / "out"
    res = CliRunner().invoke(collide.cli.cli, ["report", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    assert not out.exists()                     # nothing half-written


def test_missing_out_is_exit_2():
    res = CliRunner().invoke(collide.cli.cli, ["report", "--scenario", "seed"])
    assert res.exit_code == 2 and "--out" in res.output


def test_zero_risk_scenario_builds():
    s = Scenario.builtin("seed").replace({"load_balancer.cross_zone": False, "traffic.horizon": 60})
    d = build_report(s, seed=1, workers=1, replicates=10)
    v = d["verdict"]
    assert v["collisions_per_hour"] == 0 and v["level"] == "low"
    assert v["p_reset_window"]["value"] == 0
    assert d["first_reset"]["replicates"] == 0 and d["first_reset"]["median_s"] is None
    assert all(r["value"] is None for r in d["headroom"])
    assert d["solve"]["recommendation"]["kind"] == "none"
    json.dumps(d)


def test_garwood():
    lo, hi = garwood(0)
    assert lo == 0 and hi == pytest.approx(3.689, abs=1e-3)
    lo, hi = garwood(10)
    assert lo == pytest.approx(4.795, abs=0.01) and hi == pytest.approx(18.39, abs=0.02)
    lo, hi = garwood(1000)
    assert lo == pytest.approx(939.1, rel=2e-3) and hi == pytest.approx(1063.2, rel=2e-3)


def test_element_ids_are_stable(page):
    for key in ("collisions-per-hour", "collisions-per-day", "collision-probability",
                "median-first-reset", "p95-first-reset", "p-reset-0", "p-reset-window",
                "verdict", "budget", "recommendation", "headroom-table", "seed", "command"):
        assert key in page.found
    assert re.fullmatch(r"\d+", page.found["seed"]["text"])


def test_mitigation_that_is_no_scenario_is_left_out_with_its_reason():
    from collide.studies.report import _mitigation_plan
    plan = _mitigation_plan(Scenario.builtin("seed").replace({"load_balancer.targets": 2}))
    out = {m["name"]: m for m in plan if "left_out" in m}
    assert list(out) == ["cross-zone off"] and "every zone needs a target" in out["cross-zone off"]["left_out"]
    assert all("variant" in m for m in plan if "left_out" not in m)
    assert not [m for m in _mitigation_plan(Scenario.builtin("seed")) if "left_out" in m]


@pytest.mark.slow
def test_fewer_targets_than_nodes_leaves_cross_zone_off_out(tmp_path):
    """Issue 21: with 2 targets and 3 zones, "cross-zone off" is no valid scenario. The report leaves
    that mitigation out with the reason, and the page is still written."""
    out = tmp_path / "r"
    res = CliRunner().invoke(collide.cli.cli, ARGS + ["--targets", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["mitigations_left_out"]] == ["cross-zone off"]
    assert "every zone needs a target" in summary["mitigations_left_out"][0]["reason"]
    assert "cross-zone off" not in [m["name"] for m in summary["mitigations"]]
    assert "Not shown: cross-zone off" in (out / "summary.md").read_text()
    assert "does not apply to this scenario" in (out / "index.html").read_text()


@pytest.mark.slow
def test_budget_flags_and_the_old_window_name(tmp_path):
    """--max-resets sets the budget; --window (the old name of --within) still works."""
    out = tmp_path / "r"
    args = ["report", "--scenario", "seed", "--horizon", "60", "--seed", "3", "--window", "120",
            "--max-resets", "5000/hour", "--out", str(out)]
    res = CliRunner().invoke(collide.cli.cli, args)
    assert res.exit_code == 0, res.output
    v = json.loads((out / "summary.json").read_text())["verdict"]
    assert v["p_reset_window"]["seconds"] == 120
    assert v["max_resets_per_hour"] == 5000 and v["level"] == "low"      # within the budget
    assert "within budget" in res.output
