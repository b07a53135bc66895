"""End-to-end: the CLI's wall time, the default command against a pinned earlier commit, first-reset on
1 vs 2 workers, and the scaling check."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import collide
from conftest import ROUNDS, ROWS, scenario


def test_cli_simulate_seed(benchmark):
    """`collide simulate --scenario seed --horizon 10` as a user types it (target < 1.5 s wall),
    and whether numba got imported on the way (it must not be with the Cython backend)."""
    exe = shutil.which("collide") or "collide"
    args = ["simulate", "--scenario", "seed", "--horizon", "10", "--seed", "1", "--format", "json"]
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from collide.cli import main\n"
         f"sys.argv = ['collide'] + {args!r}\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print('NUMBA_LOADED', 'numba' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True)
    numba_loaded = "NUMBA_LOADED True" in probe.stderr
    benchmark.group = "cli"
    benchmark.pedantic(lambda: subprocess.run([exe] + args, capture_output=True, check=True),
                       rounds=ROUNDS, iterations=1)
    wall = benchmark.stats.stats.median
    benchmark.extra_info.update(wall_s=wall, numba_loaded=numba_loaded)
    ROWS.append({"group": "cli", "name": "collide simulate seed 10s", "connections_per_second": 0.0,
                 "state_bytes": None, "connections": None, "wall_s": wall,
                 "numba_loaded": numba_loaded})


@pytest.mark.parametrize("which", ["seed", "base"])
def test_default_command_regression(benchmark, which, tmp_path):
    """Today's default command against the same command at a pinned earlier commit (issue 24:
    2945be6), interleaved, 5 pairs (`bench/regression.py`): the ratio old wall / new wall is below
    1 if the default got slower. COLLIDE_BENCH_OLD_PYTHON: the python of the old commit's
    environment; without it the group is skipped."""
    import os
    import regression
    old = os.environ.get("COLLIDE_BENCH_OLD_PYTHON")
    if not old:
        pytest.skip("COLLIDE_BENCH_OLD_PYTHON is not set (the python of the pinned commit's venv)")
    args = regression.SEED_ARGS if which == "seed" else ["--config", regression.base_toml(
        str(tmp_path))]
    for python in (sys.executable, old):        # as installed packages are (bench/regression.py)
        regression.compile_bytecode(python)
    out = {}
    benchmark.group = "regression"
    benchmark.pedantic(lambda: out.update(regression.compare(
        regression.collide_of(sys.executable), regression.collide_of(old), args, ROUNDS)),
        rounds=1, iterations=1)
    info = {"wall_new_s": out["new"]["wall_s_median"], "wall_old_s": out["old"]["wall_s_median"],
            "x_old": out["wall_ratio_old_over_new"],
            "precision_x_old": out["precision_ratio_new_over_old"],
            "estimate": out["new"]["estimate"]}
    benchmark.extra_info.update(info)
    ROWS.append({"group": "regression", "name": f"default-{which}", "connections_per_second":
                 out["new"]["connections"] / out["new"]["wall_s_median"], "state_bytes": None,
                 "connections": out["new"]["connections"], **info})


FR_REPLICATES = 96


@pytest.mark.parametrize("workers", [1, 2])
def test_first_reset_workers(benchmark, workers):
    """first-reset, 96 replicates of a run where most replicates are censored (so each does the
    same work: 100 s of the base scenario with B = 100,000; a few seconds in all, so the process
    pool's start-up does not dominate)."""
    s = scenario("base", 100.0).replace({"load_balancer.targets": 100_000})
    benchmark.group = "first-reset"
    benchmark.pedantic(lambda: collide.first_reset(s, replicates=FR_REPLICATES, seed=1,
                                                   workers=workers),
                       rounds=3, iterations=1)
    wall = benchmark.stats.stats.median
    benchmark.extra_info.update(wall_s=wall, workers=workers)
    row = {"group": "first-reset", "name": f"first-reset-{FR_REPLICATES}x-workers{workers}",
           "connections_per_second": FR_REPLICATES * 2000 * 100 / wall, "state_bytes": None,
           "connections": FR_REPLICATES * 200_000, "wall_s": wall}
    if workers == 2:
        row["speedup_interleaved"] = _interleaved_speedup(
            lambda w: collide.first_reset(s, replicates=FR_REPLICATES, seed=1, workers=w))
        benchmark.extra_info["speedup_interleaved"] = row["speedup_interleaved"]
    ROWS.append(row)


SIM_REPLICATES = 8


def test_simulate_replicates_workers(benchmark):
    """`collide simulate --replicates 8 --workers 1|2` on the base scenario (5,000 s each, default
    estimate: a long run, about 15 s on one worker): the median of 3 back-to-back pairs of
    wall(1 worker) / wall(2 workers), and the pooled counts must be identical."""
    s = scenario("base", 5_000.0)
    runs = {}

    def run(w):
        r = collide.simulate(s, seed=1, replicates=SIM_REPLICATES, workers=w)
        runs[w] = (r.collisions, r.connections, r.expected_collisions)
        return r

    benchmark.group = "replicates"
    benchmark.pedantic(lambda: run(2), rounds=1, iterations=1)
    speedup = _interleaved_speedup(run, pairs=3)
    assert runs[1] == runs[2]
    benchmark.extra_info.update(speedup_interleaved=speedup)
    ROWS.append({"group": "replicates", "name": f"simulate-{SIM_REPLICATES}x-workers2",
                 "connections_per_second": runs[2][1] / benchmark.stats.stats.median,
                 "state_bytes": None, "connections": runs[2][1],
                 "speedup_interleaved": speedup})


def _interleaved_speedup(run, pairs: int = 5) -> float:
    """Median over `pairs` of wall(1 worker) / wall(2 workers), the two timed back to back: on a
    shared VM the machine's speed drifts between two separate benchmark groups."""
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        run(1)
        t1 = time.perf_counter()
        run(2)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return float(np.median(ratios))


LAWS = {"exponential": {"dist": "exponential", "mean": 10.0},
        "lognormal": {"dist": "lognormal", "mean": 10.0, "sigma": 1.0}}


def _scaling_run(live: float, backend: str, law: str = "exponential"):
    """A base-like run with `live` mean live connections (k = 8 IPs, so 10^6 fits in the ports):
    returns a callable giving the kernel's seconds for the measured window (placement and warm-up
    excluded), and the connections it simulates."""
    rate = live / 10.0
    n_conn = max(300_000, int(live))
    horizon = n_conn / rate
    s = scenario("base", horizon).replace({"nat.ips": 8, "traffic.rate": rate,
                                           "traffic.duration": LAWS[law]})
    return (lambda: collide.simulate(s, seed=1, backend=backend, estimate="off")), n_conn


@pytest.mark.parametrize("backend", ["cython"])
@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("live", [1e3, 1e4, 1e5, 1e6], ids=["1e3", "1e4", "1e5", "1e6"])
def test_scaling_ns_per_connection(benchmark, backend, law, live):
    """Nanoseconds per connection of the kernel alone (placement excluded) against the number of
    live connections: the lazy core's slots grow with IPs x ports x nodes, not with the load, so
    the figure should stay flat until the slots outgrow the caches."""
    benchmark.group = "scaling"
    run, n_conn = _scaling_run(live, backend, law)
    results = []
    benchmark.pedantic(lambda: results.append(run()), rounds=3, iterations=1)
    ns = sorted(r.kernel_s / r.connections for r in results)[1] * 1e9
    benchmark.extra_info.update(ns_per_connection=ns, live=live,
                                connections_per_second=1e9 / ns)
    ROWS.append({"group": "scaling", "name": f"live-{live:.0e}-{law}-{backend}",
                 "connections_per_second": 1e9 / ns, "state_bytes": results[-1].state_bytes,
                 "connections": results[-1].connections, "ns_per_connection": ns})


SWEEP_ROWS: dict[int, list] = {}


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_workers(benchmark, workers):
    """A 400-point sweep of the `seed` family (rate x NAT IPs x targets x cross-zone, 60 s each,
    the shape of examples/sweep-seed.toml) on 1 and 2 worker processes; rows must be identical."""
    from collide.sweep import spec_from_dict, run_spec
    spec = spec_from_dict({
        "base": "seed", "seed": 1, "overrides": {"traffic.horizon": 60},
        "axes": {"traffic.rate": {"logspace": [1, 3.5, 10]}, "nat.ips": [1, 2, 4, 8],
                 "load_balancer.targets": [3, 12, 24, 48, 96],
                 "load_balancer.cross_zone": [True, False]}})
    results = []
    benchmark.group = "sweep"
    benchmark.pedantic(lambda: results.append(run_spec(spec, workers=workers)), rounds=3,
                       iterations=1)
    wall = benchmark.stats.stats.median
    rows = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in results[-1].rows]
    SWEEP_ROWS[workers] = rows
    if 1 in SWEEP_ROWS and 2 in SWEEP_ROWS:
        assert SWEEP_ROWS[1] == SWEEP_ROWS[2]
    conns = sum(r["connections"] for r in rows)
    row = {"group": "sweep", "name": f"sweep-{len(rows)}pts-workers{workers}",
           "connections_per_second": conns / wall, "state_bytes": None, "connections": conns,
           "wall_s": wall}
    if workers == 2:
        row["speedup_interleaved"] = _interleaved_speedup(lambda w: run_spec(spec, workers=w))
        benchmark.extra_info["speedup_interleaved"] = row["speedup_interleaved"]
    benchmark.extra_info.update(wall_s=wall, workers=workers, points=len(rows))
    ROWS.append(row)
