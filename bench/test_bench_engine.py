"""Engine speed per scenario × backend × estimate, as ratios to the plain-C kernel of the scenario
(`bench/kernels.c`). Run: pytest bench/ --benchmark-only

Rates are connections over the kernel's wall time in the measured window (`RawRun.kernel_s`), from
runs of at least 2·10⁷ arrivals; state, placement and warm-up are reported apart (`setup_s`).
"""
from __future__ import annotations

import math
import statistics

import pytest

import collide
from conftest import ROUNDS, ROWS, c_run, kernel_rate, paired_ratio, record, scenario

COMPILED = ("cython", "numba")
# horizons giving >= 2e7 arrivals (2000/s; 6322.2/s at 98 % occupancy)
HORIZON = {"base": 10_000.0, "lognormal": 10_000.0, "everything": 10_000.0,
           "exhaustion": 3_200.0, "B10": 10_000.0, "B10000": 10_000.0}


def _bench(benchmark, c_kernels, group, name, scenario_name, backend, estimate="off",
           rounds=ROUNDS, seed=1, horizon=None):
    s = scenario(scenario_name, HORIZON.get(scenario_name) if horizon is None else horizon)
    results, c_own, c_ref = [], [], []
    paired = backend != "python"

    def once():
        if paired:          # the C kernels of the scenario, right before this round
            c_own.append(c_run(c_kernels, "own", scenario_name, estimate, len(results) + 1))
            c_ref.append(c_run(c_kernels, "reference", scenario_name, estimate, len(results) + 1))
        r = collide.simulate(s, seed=seed, backend=backend, estimate=estimate)
        results.append(r)
        return r

    if backend == "numba":
        collide.simulate(s.replace({"traffic.horizon": 1.0}), seed=seed, backend="numba",
                         estimate=estimate)   # compile
    benchmark.group = group
    benchmark.pedantic(once, rounds=rounds, iterations=1)
    rates = [kernel_rate(r) for r in results]
    info = record(benchmark, group, name, results, estimate=estimate,
                  x_c=paired_ratio(rates, c_own), x_ref=paired_ratio(rates, c_ref),
                  c_rate=statistics.median(c_own) if paired and None not in c_own else None)
    return info, results


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("estimate", ["off", "target", "full"])
def test_base(benchmark, c_kernels, simpy_cps, backend, estimate):
    _bench(benchmark, c_kernels, "base", f"base-{backend}-{estimate}", "base", backend, estimate)


def test_base_python_reference(benchmark, c_kernels, simpy_cps):
    """The pure-Python reference finishes a 10^5-connection run (one round)."""
    info, res = _bench(benchmark, c_kernels, "base", "base-python-1e5", "base", "python",
                       rounds=1, horizon=50.0)
    assert res[-1].connections >= 99_000


@pytest.mark.parametrize("backend", COMPILED)
def test_lognormal(benchmark, c_kernels, backend):
    _bench(benchmark, c_kernels, "lognormal", f"lognormal-{backend}", "lognormal", backend)


@pytest.mark.parametrize("backend", COMPILED)
def test_everything(benchmark, c_kernels, backend):
    # TIME_WAIT adds 60 s of burn-in before the measured window (simulated, in setup_s)
    _bench(benchmark, c_kernels, "everything", f"everything-{backend}", "everything", backend)


@pytest.mark.parametrize("backend", COMPILED)
def test_exhaustion(benchmark, c_kernels, backend):
    info, res = _bench(benchmark, c_kernels, "exhaustion", f"exhaustion98-{backend}",
                       "exhaustion", backend)
    benchmark.extra_info["peak_live_fraction"] = res[-1].peak_live_per_destination / 64512


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("targets", ["B10", "B10000"])
def test_many_targets(benchmark, c_kernels, backend, targets):
    _bench(benchmark, c_kernels, "targets", f"{targets}-{backend}", targets, backend)


# --- the estimates' precision per second: SE² × wall (smaller is better) -------------------------
EFFICIENCY_RUNS = {"base": ("base", 1_000.0), "seed": (None, 600.0), "rare": ("rare", 13_000.0)}


@pytest.mark.parametrize("estimate", ["target", "full"])
@pytest.mark.parametrize("which", sorted(EFFICIENCY_RUNS))
def test_estimate_efficiency(benchmark, which, estimate):
    """Relative SE of expected_collisions × wall time of the whole run (setup included), for the
    two estimates on base, seed and rare: the figure docs/model.md §3's default is chosen by."""
    name, horizon = EFFICIENCY_RUNS[which]
    s = (collide.Scenario.load("seed").replace({"traffic.horizon": horizon}) if name is None
         else scenario(name, horizon))
    results = []
    benchmark.group = "estimate"
    benchmark.pedantic(lambda: results.append(collide.simulate(s, seed=1, backend="cython",
                                                               estimate=estimate)),
                       rounds=3, iterations=1)
    r = results[-1]
    wall = benchmark.stats.stats.median
    ex, se = r.expected_collisions, r.expected_collisions_se
    rel = se / ex if ex else math.inf
    per_conn = ex / r.connections if r.connections else math.nan
    info = {"estimate": estimate, "relative_se": rel, "wall_s": wall,
            "se2_x_wall": rel * rel * wall, "per_connection_p": per_conn,
            "seconds_to_1pct": wall * (rel / 0.01) ** 2}
    benchmark.extra_info.update(info)
    ROWS.append({"group": "estimate", "name": f"{which}-{estimate}",
                 "connections_per_second": r.connections / wall, "state_bytes": r.state_bytes,
                 "connections": r.connections, **info})
