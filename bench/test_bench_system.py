"""End-to-end: the CLI's wall time, first-reset on 1 vs 2 workers, and the scaling check."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import collide
from collide import _params as C
from collide import engine
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


FR_REPLICATES = 16


@pytest.mark.parametrize("workers", [1, 2])
def test_first_reset_workers(benchmark, workers):
    """first-reset, 16 replicates of a run where most replicates are censored (so each does the
    same work: 100 s of the base scenario with B = 100,000)."""
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
    one = [r for r in ROWS if r["name"] == f"first-reset-{FR_REPLICATES}x-workers1"]
    if one:
        row["speedup"] = one[0]["wall_s"] / wall
        benchmark.extra_info["speedup"] = row["speedup"]
    ROWS.append(row)


LAWS = {"exponential": {"dist": "exponential", "mean": 10.0},
        "lognormal": {"dist": "lognormal", "mean": 10.0, "sigma": 1.0}}


def _prepared(live: float, backend: str, law: str = "exponential"):
    """A base-like run with `live` mean live connections (k = 8 IPs, so 10^6 fits in the ports),
    stationary state placed; returns (advance-callable, connections it will simulate)."""
    rate = live / 10.0
    n_conn = max(300_000, int(live))
    horizon = n_conn / rate
    s = scenario("base", horizon).replace({"nat.ips": 8, "traffic.rate": rate,
                                           "traffic.duration": LAWS[law]})
    arrays = C.build(s, False)
    cap = int(s.mean_live * 1.3 + 10 * np.sqrt(s.mean_live) + 1024)
    sim = engine._Compiled(backend, arrays, engine.bit_generator(1), cap)
    residuals, age = sim.draw_stationary()
    sim.place_stationary(residuals, np.argsort(-age, kind="stable").astype(np.int64))
    sim.schedule_first_arrival()
    return (lambda: sim.advance(horizon)), n_conn


@pytest.mark.parametrize("backend", ["cython"])
@pytest.mark.parametrize("law", sorted(LAWS))
@pytest.mark.parametrize("live", [1e3, 1e4, 1e5, 1e6], ids=["1e3", "1e4", "1e5", "1e6"])
def test_scaling_ns_per_connection(benchmark, backend, law, live):
    """Nanoseconds per connection of the event loop alone (placement excluded) against the number
    of live connections: flat or logarithmic is the target (exponential lifetimes: the end clock,
    no queue; lognormal: the end-time heap)."""
    benchmark.group = "scaling"
    if backend == "numba":
        _prepared(1e3, backend, law)[0]()
    benchmark.pedantic(lambda f: f(), setup=lambda: ((_prepared(live, backend, law)[0],), {}),
                       rounds=3, iterations=1)
    n_conn = max(300_000, int(live))
    ns = benchmark.stats.stats.median / n_conn * 1e9
    benchmark.extra_info.update(ns_per_connection=ns, live=live,
                                connections_per_second=1e9 / ns)
    ROWS.append({"group": "scaling", "name": f"live-{live:.0e}-{law}-{backend}",
                 "connections_per_second": 1e9 / ns, "state_bytes": None, "connections": n_conn,
                 "ns_per_connection": ns})
