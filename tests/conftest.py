import os

import pytest

from collide.scenario import Scenario

# numba compiles once per machine (cached), and that first compile takes a minute or more of one
# core: every test that runs the numba twin belongs to the slow set (CI runs it). The fast set
# holds Cython to the Python reference, the same algorithm and the same draws.
BACKENDS = ("python", "numba", "cython")


def small(**overrides) -> Scenario:
    """A small scenario (narrow port range, short horizon) where collisions are common."""
    base = {
        "traffic": {"rate": 40.0, "horizon": 60.0, "duration": {"dist": "exponential", "mean": 10.0},
                    "clients": 7, "warmup": "auto"},
        "nat": {"port_min": 2000, "port_max": 2099},
        "load_balancer": {"nodes": 3, "targets": 3},
        "target": {"time_wait": 5.0},
    }
    s = Scenario.from_dict(base)
    return s.replace(overrides) if overrides else s


@pytest.fixture
def small_scenario():
    return small()


def pytest_generate_tests(metafunc):
    """A test that takes `twin` is run once per compiled backend against the Python reference:
    cython in the fast set, numba in the slow one."""
    if "twin" in metafunc.fixturenames:
        metafunc.parametrize("twin", [pytest.param("cython", id="cython"),
                                      pytest.param("numba", id="numba", marks=pytest.mark.slow)])


def _runs_numba(item) -> bool:
    spec = getattr(item, "callspec", None)
    return bool(spec) and "numba" in [v for v in spec.params.values() if isinstance(v, str)]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _runs_numba(item) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    # The slow set (the statistical grid, the 500 twins, notebooks, browser, Dask, the lab as root)
    # is opt-in: `python -m pytest` runs the fast set; `-m slow` (or any -m) chooses; .ci/run runs both.
    if not config.getoption("markexpr"):
        slow = [i for i in items if i.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [i for i in items if not i.get_closest_marker("slow")]
            config._collide_slow = len(slow)
    if os.environ.get("COLLIDE_SKIP_NUMBA"):
        skip = pytest.mark.skip(reason="COLLIDE_SKIP_NUMBA set")
        for item in items:
            if "numba" in item.name:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_collide_slow", 0)
    if n:
        terminalreporter.write_line(f"{n} slow tests not run (statistical grid, numba twin, "
                                    "notebooks, browser, Dask, lab): python -m pytest -m slow")
