import os

import pytest

from collide.scenario import Scenario

# numba compiles once per machine (cached); tests that need it share this flag
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


def pytest_collection_modifyitems(config, items):
    for item in items:                  # notebooks (nbmake) run with the slow set
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.notebooks)
    if os.environ.get("COLLIDE_SKIP_NUMBA"):
        skip = pytest.mark.skip(reason="COLLIDE_SKIP_NUMBA set")
        for item in items:
            if "numba" in item.name:
                item.add_marker(skip)
