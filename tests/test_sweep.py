"""Sweeps (docs/model.md §4.5): axis expansion, up-front validation, determinism, resume, seeds, plots."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import collide
from collide import sweep as sweep_mod
from collide.cli import cli
from collide.sweep import (METRIC_COLUMNS, SweepError, SweepInterrupted, build_spec, expand_axis,
                           point_seed, read_rows)

FAST = {"traffic.horizon": 5.0}
AXES = {"traffic.rate": [50, 200], "nat.ips": [1, 2], "load_balancer.cross_zone": [True, False]}


def strip(rows):
    """Rows without wall time, in seed order: what must agree between two runs of a sweep."""
    return sorted(({k: v for k, v in r.items() if k != "elapsed_s"} for r in rows),
                  key=lambda r: r["seed"])


def write_sweep(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


# -- axes ---------------------------------------------------------------------------------------------
def test_axis_helpers():
    assert expand_axis("a", [1, 2]) == [1, 2]
    assert expand_axis("a", {"linspace": [0, 1, 3]}) == [0.0, 0.5, 1.0]
    assert expand_axis("a", {"logspace": [1, 3, 3]}) == pytest.approx([10.0, 100.0, 1000.0])
    assert expand_axis("a", {"range": [1, 5]}) == [1, 2, 3, 4]
    assert expand_axis("a", {"range": [2, 10, 4]}) == [2, 6]
    assert expand_axis("a", {"range": [0.5, 1.6, 0.5]}) == pytest.approx([0.5, 1.0, 1.5])
    for bad in ([], {"range": [3, 1]}, {"linspace": [1, 2]}, {"geomspace": [1, 2, 3]}, 5,
                {"logspace": [1, 2, 0]}, {"range": [1, 5, 0]}):
        with pytest.raises(SweepError, match="^axes.x"):
            expand_axis("axes.x", bad)


def test_grid_order_and_zip():
    spec = build_spec("seed", {"traffic.rate": [1, 2], "nat.ips": [1, 2, 3]}, overrides=FAST,
                      zip={"load_balancer.targets": [3, 6], "traffic.clients": [1, 2]})
    assert len(spec) == 2 * 3 * 2
    assert spec.points[0] == {"traffic.rate": 1, "nat.ips": 1, "load_balancer.targets": 3,
                              "traffic.clients": 1}
    assert spec.points[1]["load_balancer.targets"] == 6 and spec.points[1]["traffic.clients"] == 2
    assert spec.points[-1] == {"traffic.rate": 2, "nat.ips": 3, "load_balancer.targets": 6,
                               "traffic.clients": 2}
    assert spec.scenarios[-1].get("traffic.horizon") == 5.0
    assert spec.columns[:4] == ["traffic.rate", "nat.ips", "load_balancer.targets", "traffic.clients"]
    assert spec.columns[4:4 + len(METRIC_COLUMNS)] == list(METRIC_COLUMNS)
    assert spec.columns[-4:] == ["seed", "horizon_s", "rel_error", "elapsed_s"]


def test_aliases_become_dotted_columns():
    spec = build_spec("seed", {"rate": [10], "nat_ips": [2]}, overrides=FAST)
    assert list(spec.points[0]) == ["traffic.rate", "nat.ips"]


@pytest.mark.parametrize("body, words", [
    ('[axes]\n"traffic.rat" = [1, 2]\n', ["axes.traffic.rat", "unknown", "traffic.rate"]),
    ('[axes]\n"traffic.rate" = []\n', ["axes.traffic.rate", "empty axis"]),
    ('[axes]\n"traffic.rate" = [10, -5]\n"nat.ips" = [1]\n', ["point 1", "traffic.rate=-5", "must be > 0"]),
    ('[axes]\n"load_balancer.targets" = [3, 2]\n"load_balancer.cross_zone" = [true, false]\n',
     ["point 3", "load_balancer.targets=2", "cross_zone=false"]),
    ('[zip]\n"nat.ips" = [1, 2]\n"traffic.rate" = [1]\n', ["zip", "one length"]),
    ('bogus = 1\n[axes]\n"nat.ips" = [1]\n', ["bogus", "unknown sweep key"]),
    ('[overrides]\n"nat.ipz" = 2\n[axes]\n"nat.ips" = [1]\n', ["overrides.nat.ipz", "unknown"]),
    ('replicates = 0\n[axes]\n"nat.ips" = [1]\n', ["replicates", ">= 1"]),
    ('[axes]\n"nat.ips" = { logspace = [1, 2] }\n', ["axes.nat.ips", "logspace"]),
    ('base = "nope"\n[axes]\n"nat.ips" = [1]\n', ["base"]),
    ('[axes\n', ["not valid TOML"]),
])
def test_bad_sweep_files_exit_2_with_one_line(tmp_path, body, words):
    p = write_sweep(tmp_path, body)
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(cli, ["sweep", str(p), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 2, res.output
    msg = res.output.strip()
    assert "Traceback" not in msg and len(msg.splitlines()) == 1, msg
    for w in words:
        assert w in msg, msg
    assert not out.exists()          # nothing half-written


def test_bad_out_and_flags_exit_2(tmp_path):
    p = write_sweep(tmp_path, '[axes]\n"nat.ips" = [1]\n')
    for args in (["--out", str(tmp_path / "r.xlsx")], ["--out", str(tmp_path / "r.csv"), "--workers", "0"],
                 ["--out", str(tmp_path / "r.csv"), "--rel-error", "2"]):
        res = CliRunner().invoke(cli, ["sweep", str(p)] + args)
        assert res.exit_code == 2, res.output
    res = CliRunner().invoke(cli, ["sweep", str(tmp_path / "missing.toml"), "--out", "x.csv"])
    assert res.exit_code == 2 and "missing.toml" in res.output


# -- running ------------------------------------------------------------------------------------------
def test_rows_columns_and_point_seed_reproduces_simulate():
    res = collide.sweep("seed", AXES, overrides=FAST, seed=7, workers=1)
    assert len(res.rows) == 8 and list(res.rows[0]) == res.columns
    for i, row in enumerate(res.rows):
        assert row["seed"] == point_seed(7, i)
        assert row["replicates"] == 1 and row["horizon_s"] == 5.0
    # the contract's formula, written out
    assert res.rows[3]["seed"] == int(np.random.SeedSequence(7, spawn_key=(3,)).generate_state(1, np.uint64)[0])
    row = res.rows[2]          # rate 50, 2 IPs, cross-zone on
    assert (row["traffic.rate"], row["nat.ips"], row["load_balancer.cross_zone"]) == (50, 2, True)
    s = collide.Scenario.load("seed").replace({**FAST, "traffic.rate": 50, "nat.ips": 2})
    d = collide.simulate(s, seed=row["seed"]).to_dict()
    for k in ("connections", "collisions", "expected_collisions", "expected_collisions_se",
              "first_collision_s", "collisions_per_hour", "peak_live_per_destination"):
        assert row[k] == d[k], k
    assert [row["collision_probability_ci_low"], row["collision_probability_ci_high"]] == d["collision_probability_ci"]
    assert row["analytic_collisions_per_hour"] == d["analytic"]["collisions_per_hour"]
    off = res.rows[3]
    assert off["load_balancer.cross_zone"] is False and off["collisions"] == 0


def test_cli_point_seed_reproduces(tmp_path):
    p = write_sweep(tmp_path, 'seed = 3\n[overrides]\n"traffic.horizon" = 5\n[axes]\n"traffic.rate" = [80, 160]\n')
    out = tmp_path / "r.jsonl"
    res = CliRunner().invoke(cli, ["sweep", str(p), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    row = next(r for r in read_rows(out) if r["traffic.rate"] == 160)   # file order = finish order
    sim = CliRunner().invoke(cli, ["simulate", "--scenario", "seed", "--horizon", "5", "--rate", "160",
                                   "--seed", str(row["seed"]), "--format", "json"])
    d = json.loads(sim.output)
    assert (d["collisions"], d["connections"], d["expected_collisions"]) == \
        (row["collisions"], row["connections"], row["expected_collisions"])


def test_one_worker_and_two_workers_give_the_same_rows(tmp_path):
    a = collide.sweep("seed", AXES, overrides=FAST, seed=11, workers=1, out=tmp_path / "a.csv")
    b = collide.sweep("seed", AXES, overrides=FAST, seed=11, workers=2, out=tmp_path / "b.csv")
    assert strip(a.rows) == strip(b.rows)
    assert strip(read_rows(tmp_path / "a.csv")) == strip(read_rows(tmp_path / "b.csv")) == strip(a.rows)


def test_thread_pool_and_map_objects_are_executors(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    ref = collide.sweep("seed", {"traffic.rate": [50, 100, 200]}, overrides=FAST, seed=5, workers=1)
    with ThreadPoolExecutor(2) as ex:
        got = collide.sweep("seed", {"traffic.rate": [50, 100, 200]}, overrides=FAST, seed=5, executor=ex)
    assert strip(got.rows) == strip(ref.rows)

    class MapOnly:                     # a Ray-style pool: map, no submit
        def map(self, fn, items):
            return [fn(x) for x in reversed(list(items))]
    got = collide.sweep("seed", {"traffic.rate": [50, 100, 200]}, overrides=FAST, seed=5, executor=MapOnly())
    assert strip(got.rows) == strip(ref.rows)


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_resume_after_a_partial_output_gives_the_same_rows(tmp_path, ext):
    if ext == "parquet":
        pytest.importorskip("pyarrow")
    full = collide.sweep("seed", AXES, overrides=FAST, seed=2, workers=1, out=tmp_path / f"full.{ext}")
    part = tmp_path / f"part.{ext}"
    # a run stopped after three points (the third interrupted by Ctrl-C)
    calls = {"n": 0}

    def stop_after_three(done, total):
        calls["n"] = done
        if done == 3:
            raise KeyboardInterrupt
    with pytest.raises(SweepInterrupted) as info:
        collide.sweep("seed", AXES, overrides=FAST, seed=2, workers=1, out=part, progress=stop_after_three)
    assert info.value.result.written == 3 and info.value.result.interrupted
    assert len(read_rows(part)) == 3
    if ext in ("csv", "jsonl"):
        with open(part, "a") as fh:       # plus a line cut off by a crash
            fh.write("123,4")
    res = collide.sweep("seed", AXES, overrides=FAST, seed=2, workers=2, out=part, resume=True)
    assert res.skipped == 3 and res.written == 5
    assert strip(res.rows) == strip(full.rows)
    assert strip(read_rows(part)) == strip(read_rows(tmp_path / f"full.{ext}"))


def test_resume_refuses_another_sweeps_output(tmp_path):
    out = tmp_path / "r.csv"
    collide.sweep("seed", {"traffic.rate": [50]}, overrides=FAST, seed=1, workers=1, out=out)
    with pytest.raises(SweepError, match="another sweep"):
        collide.sweep("seed", {"traffic.rate": [50]}, overrides=FAST, seed=2, workers=1, out=out,
                      resume=True)
    with pytest.raises(SweepError, match="another sweep|other columns"):
        collide.sweep("seed", {"nat.ips": [1]}, overrides=FAST, seed=1, workers=1, out=out, resume=True)


def test_replicates_are_pooled():
    s = collide.Scenario.load("seed").replace(FAST)
    res = collide.sweep(s, {"traffic.rate": [200]}, replicates=3, seed=4, workers=1)
    row = res.rows[0]
    seed = point_seed(4, 0)
    from collide import engine
    from collide.api import _result
    runs = [_result(s, seed, "cython", engine.run(s, engine.bit_generator(seed, r, 3)))
            for r in range(3)]
    assert row["replicates"] == 3
    assert row["connections"] == sum(r.connections for r in runs)
    assert row["collisions"] == sum(r.collisions for r in runs)
    assert row["collisions_per_hour"] == pytest.approx(row["collisions"] / 15.0 * 3600)
    assert row["expected_collisions"] == pytest.approx(sum(r.expected_collisions for r in runs))
    assert row["expected_collisions_se"] == pytest.approx(
        math.sqrt(sum(r.expected_collisions_se ** 2 for r in runs)))
    assert row["first_collision_s"] == runs[0].first_collision_s
    assert row["peak_live_per_destination"] == max(r.peak_live_per_destination for r in runs)


def test_rel_error_grows_the_horizon_until_the_target():
    axes = {"traffic.rate": [20, 400], "load_balancer.cross_zone": [True, False]}
    res = collide.sweep("seed", axes, overrides={"traffic.horizon": 1.0}, seed=1, workers=1, rel_error=0.01)
    on = [r for r in res.rows if r["load_balancer.cross_zone"]]
    off = [r for r in res.rows if not r["load_balancer.cross_zone"]]
    for r in on:
        assert r["rel_error"] <= 0.01 and r["horizon_s"] > 1.0
    assert on[0]["horizon_s"] > on[1]["horizon_s"]          # the rarer point needed longer
    for r in off:                                            # no collision possible: no growth
        assert r["horizon_s"] == 1.0 and r["collisions"] == 0
    # the cap on connections bounds the growth
    capped = collide.sweep("seed", {"traffic.rate": [20]}, overrides={"traffic.horizon": 2.0}, seed=1,
                           workers=1, rel_error=0.001, max_connections=2000)
    assert capped.rows[0]["horizon_s"] == pytest.approx(100.0)
    assert capped.rows[0]["rel_error"] > 0.001
    # the row is reproducible from its seed and horizon
    r = on[0]
    s = collide.Scenario.load("seed").replace({"traffic.rate": 20, "traffic.horizon": r["horizon_s"]})
    assert collide.simulate(s, seed=r["seed"]).collisions == r["collisions"]


def test_to_pandas():
    pd = pytest.importorskip("pandas")
    res = collide.sweep("seed", {"traffic.rate": [50, 100]}, overrides=FAST, seed=1, workers=1)
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == res.columns and len(df) == 2


def test_example_sweep_file_parses():
    from pathlib import Path
    spec = sweep_mod.load_sweep(Path(__file__).parent.parent / "examples" / "sweep-seed.toml")
    assert len(spec) == 1000


# -- plots ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_plot_png_svg_and_errors(tmp_path):
    out = tmp_path / "r.csv"
    collide.sweep("seed", {"traffic.rate": {"logspace": [1, 3, 4]}, "load_balancer.cross_zone": [True, False]},
                  overrides=FAST, seed=1, workers=1, out=out)
    r = CliRunner()
    for name in ("f.png", "f.svg"):
        res = r.invoke(cli, ["plot", str(out), "--x", "traffic.rate", "--y", "collisions_per_hour",
                             "--hue", "load_balancer.cross_zone", "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()[:2000]
    res = r.invoke(cli, ["plot", str(out), "--x", "traffic.rate", "--y", "collisions_per_hour",
                         "--where", "load_balancer.cross_zone=true", "--out", str(tmp_path / "w.png")])
    assert res.exit_code == 0, res.output
    for args, word in ((["--y", "collisions_per_hr"], "collisions_per_hr"), (["--y", "collisions", "--hue", "nat"], "--hue nat"),
                       (["--y", "collisions", "--out", str(tmp_path / "f.gif")], ".png or .svg")):
        full = ["plot", str(out), "--x", "traffic.rate"] + args
        if "--out" not in args:
            full += ["--out", str(tmp_path / "g.png")]
        res = r.invoke(cli, full)
        assert res.exit_code == 2 and word in res.output, res.output
    res = r.invoke(cli, ["plot", str(tmp_path / "none.csv"), "--x", "a", "--y", "b", "--out", "x.png"])
    assert res.exit_code == 2


def test_short_points_travel_in_bounded_batches():
    """The pool gets short points in batches (shipping costs as much as running them), each of at
    most BATCH_MAX points and BATCH_CONNECTIONS connections; costly points and points with a
    relative-error target travel alone (ahead of a batch still filling); every point once."""
    from collide import sweep as S
    base = collide.Scenario.builtin("seed")
    rates = [5000.0, 10.0, 10.0, 3000.0, 10.0] + [10.0] * 30 + [2000.0, 2000.0]
    tasks = [(i, base.replace({"traffic.rate": r, "traffic.horizon": 60.0}), i, 1, "cython",
              0.05 if i == 4 else None, 10**7) for i, r in enumerate(rates)]
    batches = S._batches(tasks, 2)
    assert sorted(t[0] for b in batches for t in b) == list(range(len(tasks)))
    for b in batches:       # a batch closes once it reaches the bound: all but its last point below
        before_last = sum(t[1].traffic.rate * t[1].traffic.horizon for t in b[:-1])
        assert len(b) <= S.BATCH_MAX and before_last < S.BATCH_CONNECTIONS
    alone = {b[0][0] for b in batches if len(b) == 1}
    assert {0, 4} <= alone                      # 300,000 connections; a relative-error point
    assert max(len(b) for b in batches) == 2    # 37 points for 2 workers: 37 // 16 = 2 per batch
