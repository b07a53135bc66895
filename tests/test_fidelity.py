"""Issue 7, model fidelity: changing load (item 3), real lifetimes (item 4), the NAT envelope (item 6)."""
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import collide
from collide.engine import _core_python as ref, params as C
from collide.analytic import analytic, applies, mean_live_fraction
from collide.api import simulate, simulate_allocators
from collide.scenario import Scenario, ScenarioError

from .conftest import small

EXAMPLE_CSV = Path(collide.__file__).parent / "scenarios" / "lifetimes-example.csv"
EMPIRICAL = {"dist": "empirical", "file": str(EXAMPLE_CSV), "column": "duration_s"}


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "collide.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def _example_values():
    lines = EXAMPLE_CSV.read_text().splitlines()
    assert lines[0] == "request_id,duration_s"
    return [float(x.split(",")[1]) for x in lines[1:] if x]


# -- item 4: empirical lifetimes ------------------------------------------------------------------
def test_example_file_is_plausible():
    v = _example_values()
    assert 200 <= len(v) <= 1000 and min(v) > 0
    assert 1.0 < statistics.median(v) < statistics.mean(v) < 60.0     # right-skewed, seconds


def test_empirical_mean_and_round_trip():
    s = Scenario.from_dict({"traffic": {"duration": EMPIRICAL}})
    d = s.traffic.duration
    assert d.values == tuple(_example_values())
    assert d.mean == pytest.approx(statistics.fmean(_example_values()), rel=1e-12)
    assert s.to_dict()["traffic"]["duration"] == EMPIRICAL
    assert Scenario.from_dict(s.to_dict()).traffic.duration.values == d.values
    assert s.replace({"traffic.rate": 10.0}).traffic.duration.mean == d.mean
    assert mean_live_fraction(d, 1e12) == pytest.approx(d.mean, rel=1e-12)
    t = 2.0
    assert mean_live_fraction(d, t) == pytest.approx(
        statistics.fmean(min(x, t) for x in _example_values()), rel=1e-12)


def test_plain_file_relative_to_scenario_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "life.txt").write_text("# seconds\n1.5\n2.5\n\n8\n")
    cfg = tmp_path / "x.toml"
    cfg.write_text('[traffic]\nduration = { dist = "empirical", file = "data/life.txt" }\n')
    s = Scenario.from_toml(cfg)
    assert s.traffic.duration.values == (1.5, 2.5, 8.0) and s.traffic.duration.mean == 4.0
    assert s.to_dict()["traffic"]["duration"]["file"] == str((tmp_path / "data" / "life.txt"))
    # the CLI resolves it the same way from any working directory
    p = _cli("simulate", "--config", str(cfg), "--set", "traffic.horizon=5", "--seed", "1",
             "--format", "json", cwd="/")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["scenario"]["traffic"]["duration"]["dist"] == "empirical"


@pytest.mark.parametrize("content, column, fragment", [
    ("1.0\n2.0\nabc\n", None, "line 3: 'abc' is not a number"),
    ("1.0\n-2.0\n", None, "line 2: lifetime -2.0 must be"),
    ("1.0\n0\n", None, "line 2: lifetime 0 must be"),
    ("1.0\ninf\n", None, "line 2"),
    ("", None, "no lifetimes"),
    ("a,b\n1,2\n", None, "line 1: 2 fields"),
    ("id,secs\nx,1.0\n", "duration_s", "line 1: no column 'duration_s'"),
    ("id,secs\nx,1.0\ny\n", "secs", "line 3: no field for column 'secs'"),
    ("id,secs\nx,1.0\ny,nan\n", "secs", "line 3"),
])
def test_bad_lifetime_files(tmp_path, content, column, fragment):
    f = tmp_path / "life.csv"
    f.write_text(content)
    dur = {"dist": "empirical", "file": str(f)}
    if column:
        dur["column"] = column
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict({"traffic": {"duration": dur}})
    msg = str(exc.value)
    assert fragment in msg and str(f) in msg and "\n" not in msg
    cfg = tmp_path / "x.toml"
    col = f', column = "{column}"' if column else ""
    cfg.write_text(f'[traffic]\nduration = {{ dist = "empirical", file = "life.csv"{col} }}\n')
    p = _cli("simulate", "--config", str(cfg), "--seed", "1")
    assert p.returncode == 2 and fragment in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


@pytest.mark.parametrize("duration, fragment", [
    ({"dist": "empirical"}, "traffic.duration.file"),
    ({"dist": "empirical", "file": "/nonexistent/x.csv"}, "cannot read"),
    ({"dist": "empirical", "file": str(EXAMPLE_CSV), "mean": 3.0}, "traffic.duration.mean: unknown"),
    ({"dist": "empirical", "file": str(EXAMPLE_CSV), "column": 3}, "traffic.duration.column"),
])
def test_bad_empirical_keys(duration, fragment):
    with pytest.raises(ScenarioError, match=fragment):
        Scenario.from_dict({"traffic": {"duration": duration}})


def test_length_biased_draw_is_proportional_to_the_lifetime():
    """The stationary start picks lifetime i with probability values[i] / total (docs/model.md §2.5)."""
    s = small().replace({"traffic.duration": {"dist": "empirical", "file": str(EXAMPLE_CSV),
                                              "column": "duration_s"}})
    pi, pf, zs, zc, w, xa = C.build(s)
    st = np.random.PCG64(5).state["state"]
    g = (st["state"], st["inc"])
    draws = []
    for _ in range(20000):
        g, x = ref.draw_biased_lifetime(g, int(pi[C.DIST]), pf, xa, int(pi[C.EMP_N]))
        draws.append(x)
    draws = np.array(draws)
    v = np.array(_example_values())
    expected = float((v * v).sum() / v.sum())          # E of the length-biased law
    sd = math.sqrt(float((v ** 3).sum() / v.sum()) - expected ** 2)
    assert abs(draws.mean() - expected) < 5 * sd / math.sqrt(draws.size)
    assert set(draws) <= set(v)


@pytest.mark.parametrize("warmup", ["auto", 0])
def test_closed_form_with_empirical_lifetimes_count_mode(warmup):
    """count mode: the closed form is exact; replicates' mean collisions within a z-bound."""
    s = small().replace({"traffic.duration": EMPIRICAL, "nat.port_max": 2999,
                         "target.on_collision": "count", "traffic.horizon": 1000.0,
                         "traffic.warmup": warmup})
    a = analytic(s)
    assert a is not None and a.form == ("steady" if warmup == "auto" else "cold")
    counts = [simulate(s, seed=100 + r, estimate=False).collisions for r in range(12)]
    mean, sd = statistics.fmean(counts), statistics.stdev(counts)
    assert abs(mean - a.expected_collisions) < 5 * sd / math.sqrt(len(counts)), \
        (mean, sd, a.expected_collisions)


# -- item 3: changing load ------------------------------------------------------------------------
@pytest.mark.parametrize("schedule, fragment", [
    ([[1, 50]], "first start must be 0"),
    ([[0, 50], [10, 60], [10, 70]], "increase strictly"),
    ([[0, 50], [5, 40], [3, 70]], "increase strictly"),
    ([[0, 0]], "rates must be > 0"),
    ([[0, -5]], "rates must be > 0"),
    ([[0, 50, 1]], "pairs"),
    ([[0, "fast"]], "pairs"),
    ("ramp", "pairs"),
])
def test_bad_schedules(schedule, fragment, tmp_path):
    with pytest.raises(ScenarioError, match=fragment) as exc:
        Scenario.from_dict({"traffic": {"schedule": schedule}})
    assert "traffic.schedule" in str(exc.value) and "\n" not in str(exc.value)
    cfg = tmp_path / "x.toml"
    cfg.write_text("[traffic]\nschedule = " + json.dumps(schedule) + "\n")
    p = _cli("simulate", "--config", str(cfg), "--seed", "1")
    assert p.returncode == 2 and "traffic.schedule" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_empty_schedule_is_the_constant_rate():
    s = small()
    same = s.replace({"traffic.schedule": []})
    assert same == s and "schedule" not in same.to_dict()["traffic"]
    flat = s.replace({"traffic.schedule": [[0, s.traffic.rate]]})
    a, b = simulate(s, seed=3, backend="cython"), simulate(flat, seed=3, backend="cython")
    assert (a.connections, a.collisions) == (b.connections, b.collisions)


def test_arrivals_per_segment_follow_the_rates():
    """One seed, growing horizons: the same arrival stream, so differences count one segment."""
    sched = [[0, 400.0], [10.0, 1500.0], [25.0, 150.0], [40.0, 900.0]]
    base = Scenario.from_dict({"traffic": {"schedule": sched, "duration": {"mean": 2.0},
                                           "rate": 7.0},
                               "nat": {"allocator": "eim"}})
    ends = [10.0, 25.0, 40.0, 60.0]
    totals = [simulate(base.replace({"traffic.horizon": h}), seed=11, estimate=False).connections
              for h in ends]
    per_segment = np.diff([0] + totals)
    starts = [0.0] + ends[:-1]
    for n, (a, b), (_, rate) in zip(per_segment, zip(starts, ends), sched):
        mu = rate * (b - a)
        assert abs(n - mu) < 5 * math.sqrt(mu), (n, mu)
    assert base.replace({"traffic.horizon": 60.0}).traffic.mean_rate == pytest.approx(
        sum(r * (b - a) for (_, r), a, b in zip(sched, starts, ends)) / 60.0)


def test_next_arrival_inversion_is_exact():
    """One exponential word per arrival, walked across segment ends."""
    s = Scenario.from_dict({"traffic": {"schedule": [[0, 2.0], [1.0, 4.0], [3.0, 1.0]],
                                        "warmup": 0}})
    pi, pf, zs, zc, w, xa = C.build(s)

    def after(t, e):
        return ref.next_arrival_after(t, e, pf[C.RATE], xa, 2 * int(pi[C.EMP_N]),
                                      int(pi[C.SCHED_N]))
    assert after(0.0, 1.0) == pytest.approx(0.5)
    assert after(0.0, 2.0) == pytest.approx(1.0)      # exactly at the boundary
    assert after(0.5, 3.0) == pytest.approx(1.5)      # 1 in seg 0, 2 in seg 1
    assert after(0.0, 12.0) == pytest.approx(5.0)     # 2 + 8 + 2
    assert after(-5.0, 2.0) == pytest.approx(-4.0)    # before the window: seg 0


@pytest.mark.parametrize("extra", [{}, {"traffic.duration": EMPIRICAL}, {"traffic.warmup": 0},
                                   {"traffic.warmup": 7.0,
                                    "traffic.duration": {"dist": "fixed", "mean": 6.0}}])
def test_closed_form_under_a_schedule_count_mode(extra):
    """The event form integrated over the rate history matches count mode within a z-bound."""
    s = small().replace({"nat.port_max": 2999, "target.on_collision": "count",
                         "traffic.horizon": 300.0,
                         "traffic.schedule": [[0, 10.0], [60, 50.0], [150, 25.0]], **extra})
    a = analytic(s)
    assert a is not None and a.mean_first_collision_s is None and not a.constant_load
    counts = [simulate(s, seed=200 + r, estimate=False).collisions for r in range(12)]
    mean, sd = statistics.fmean(counts), statistics.stdev(counts)
    assert abs(mean - a.expected_collisions) < 5 * sd / math.sqrt(len(counts)), \
        (mean, sd, a.expected_collisions)
    # the form really follows the schedule: the first rate held throughout is far off
    flat = analytic(s.replace({"traffic.schedule": [], "traffic.rate": 10.0}))
    assert abs(mean - flat.expected_collisions) > 20 * sd / math.sqrt(len(counts))


def test_one_segment_schedule_matches_the_constant_forms():
    for warmup in ("auto", 0):
        s = small().replace({"nat.port_max": 2999, "traffic.warmup": warmup})
        a, b = analytic(s), analytic(s.replace({"traffic.schedule": [[0, s.traffic.rate]]}))
        assert b.expected_collisions == pytest.approx(a.expected_collisions, rel=1e-6)
        assert b.form == a.form


def test_first_reset_on_a_ramp():
    s = Scenario.builtin("seed").replace({"traffic.schedule": [[0, 50], [20, 200], [40, 400]],
                                          "traffic.horizon": 60.0})
    assert applies(s) is None
    from collide.api import first_reset
    fr = first_reset(s, replicates=4, seed=2)
    assert fr.replicates == 4 and fr.analytic_mean_s is None and fr.censored < 4


# -- item 6: the NAT envelope ---------------------------------------------------------------------
def test_all_allocators_api():
    ar = simulate_allocators(small(), seed=4, backend="cython", estimate=True)
    assert list(ar.results) == ["random", "sequential", "linux", "eim"]
    assert ar.results["eim"].collisions == 0
    for name, r in ar.results.items():
        assert r.scenario.nat.allocator == name and r.seed == 4
        one = simulate(small().replace({"nat.allocator": name}), seed=4)
        assert (one.connections, one.collisions) == (r.connections, r.collisions)
    lo, hi = ar.collisions_per_hour_range
    assert lo == 0.0 and hi == max(r.collisions_per_hour for r in ar.results.values()) > 0


@pytest.mark.slow
def test_all_allocators_cli_json_and_table():
    p = _cli("simulate", "--scenario", "seed", "--set", "traffic.horizon=20", "--seed", "3",
             "--all-allocators", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d) == {"schema_version", "allocators", "range"} and d["schema_version"] == 1
    assert list(d["allocators"]) == ["random", "sequential", "linux", "eim"]
    assert d["allocators"]["eim"]["collisions"] == 0
    rates = [a["collisions_per_hour"] for a in d["allocators"].values()]
    assert d["range"]["collisions_per_hour"] == [min(rates), max(rates)]
    for name, a in d["allocators"].items():
        assert a["scenario"]["nat"]["allocator"] == name and a["seed"] == 3
        assert "collision_probability_ci" in a
    p = _cli("simulate", "--scenario", "seed", "--set", "traffic.horizon=20", "--seed", "3",
             "--all-allocators")
    assert p.returncode == 0, p.stderr
    for name in ("random", "sequential", "linux", "eim", "range"):
        assert name in p.stdout
