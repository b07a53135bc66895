"""Engine speed per scenario of issue 3 × backend. Run: pytest bench/ --benchmark-only"""
from __future__ import annotations

import math

import pytest

import collide
from conftest import ROUNDS, record, scenario

COMPILED = ("cython", "numba")
# long enough that the run's fixed cost (state, stationary placement: about 10 ms for 20,000 live
# connections, more near exhaustion) is a few per cent of it: the rate is the engine's
BASE_HORIZON = 600.0


def _bench(benchmark, group, name, s, backend, estimate=True, rounds=ROUNDS, seed=1):
    results = []

    def once():
        r = collide.simulate(s, seed=seed, backend=backend, estimate=estimate)
        results.append(r)
        return r

    if backend == "numba":
        collide.simulate(s.replace({"traffic.horizon": 1.0}), seed=seed, backend="numba")  # compile
    benchmark.group = group
    benchmark.pedantic(once, rounds=rounds, iterations=1)
    return record(benchmark, group, name, results), results


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("estimate", [False, True], ids=["no-estimate", "estimate"])
def test_base(benchmark, simpy_cps, backend, estimate):
    _bench(benchmark, "base", f"base-{backend}-{'est' if estimate else 'noest'}",
           scenario("base", BASE_HORIZON), backend, estimate)


def test_base_python_reference(benchmark, simpy_cps):
    """The pure-Python reference finishes a 10^5-connection run (one round)."""
    info, res = _bench(benchmark, "base", "base-python-1e5", scenario("base", 50.0), "python",
                       estimate=False, rounds=1)
    assert res[-1].connections >= 99_000


@pytest.mark.parametrize("backend", COMPILED)
def test_lognormal(benchmark, backend):
    _bench(benchmark, "lognormal", f"lognormal-{backend}", scenario("lognormal", 300.0), backend,
           estimate=False)


@pytest.mark.parametrize("backend", COMPILED)
def test_everything(benchmark, backend):
    # TIME_WAIT adds 60 s of burn-in before the measured window (simulated, not counted)
    _bench(benchmark, "everything", f"everything-{backend}", scenario("everything", 100.0), backend,
           estimate=False)


@pytest.mark.parametrize("backend", COMPILED)
def test_exhaustion(benchmark, backend):
    info, res = _bench(benchmark, "exhaustion", f"exhaustion98-{backend}",
                       scenario("exhaustion", 200.0), backend, estimate=False)
    benchmark.extra_info["peak_live_fraction"] = res[-1].peak_live_per_destination / 64512


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("targets", ["B10", "B10000"])
def test_many_targets(benchmark, backend, targets):
    _bench(benchmark, "targets", f"{targets}-{backend}", scenario(targets, BASE_HORIZON), backend,
           estimate=False)


@pytest.mark.parametrize("backend", COMPILED)
def test_rare_events(benchmark, backend):
    """Per-connection probability about 1e-10, estimate only: the relative standard error of
    expected_collisions, and the wall time it would take to reach 5 % at this speed."""
    info, res = _bench(benchmark, "rare", f"rare-1e-10-{backend}", scenario("rare", 13_000.0),
                       backend, estimate=True, rounds=3)
    r = res[-1]
    rel = r.expected_collisions_se / r.expected_collisions if r.expected_collisions else math.inf
    per_conn = r.expected_collisions / r.connections
    secs_to_5pct = r.elapsed_s * (rel / 0.05) ** 2
    benchmark.extra_info.update(per_connection_p=per_conn, relative_se=rel,
                                seconds_to_5pct=secs_to_5pct)
    from conftest import ROWS
    ROWS[-1].update(per_connection_p=per_conn, relative_se=rel, seconds_to_5pct=secs_to_5pct)
