"""The end-time queues pop in (end, serial) order, ties included, in both compiled backends.

The heap's sifts pick the least of four children without branches and fall back to an exact path
when ends are equal; the plain loop's calendar keeps ends in buckets a ring apart. Engine runs
almost never produce equal ends or ends a ring ahead, so both are tested here, directly.
"""
import numpy as np
import pytest

from collide import _core

SIZES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 21, 64, 333, 1001]


BACKENDS = [pytest.param(_core.heap_order, id="cython"), pytest.param("numba", id="numba")]


def _order(backend, keys, serial):
    if backend == "numba":
        from collide import _core_numba
        backend = _core_numba.heap_order
    return np.asarray(backend(keys, serial))


def _cases():
    rng = np.random.default_rng(20261128)
    for n in SIZES:
        yield n, "distinct", rng.random(n)
        yield n, "few values", rng.integers(0, 3, n).astype(np.float64)
        yield n, "all equal", np.full(n, 7.5)
        yield n, "ascending", np.arange(n, dtype=np.float64)
        yield n, "descending", np.arange(n, 0, -1, dtype=np.float64)
        yield n, "infinite ends", np.where(rng.random(n) < 0.3, np.inf, rng.integers(0, 4, n) * 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_heap_pops_in_end_then_serial_order(backend):
    rng = np.random.default_rng(5)
    for n, label, keys in _cases():
        serial = rng.permutation(n).astype(np.int64) * 3 + 1
        got = _order(backend, np.ascontiguousarray(keys, np.float64), serial)
        want = np.lexsort((serial, keys))
        assert np.array_equal(got, want), (n, label, got[:12], want[:12])


@pytest.mark.parametrize("backend", BACKENDS)
def test_heap_order_needs_the_serials(backend):
    """With every end equal the order is the serials' alone: a heap that ignored them fails."""
    serial = np.array([5, 3, 9, 1, 7, 2, 8], np.int64)
    got = _order(backend, np.zeros(7), serial)
    assert list(got) == list(np.argsort(serial))
    assert list(got) != list(range(7))


# -- the plain loop's calendar of ends (`Calendar` in _core.pyx) --------------------------------
# It must pop in exactly the heap's (end, serial) order whatever the bucket width and ring size:
# widths far below the gaps (most buckets empty, ends a ring or more ahead, the fallback scan)
# and far above them (every end in one bucket), ends before the current least (the ring walks
# back), equal ends and infinite ones. The reference is heapq on (end, serial).

def _calendar_reference(keys, serial, pop_before):
    import heapq
    q, out = [], []
    for i, k in enumerate(keys):
        if pop_before[i] and q:
            out.append(heapq.heappop(q)[2])
        heapq.heappush(q, (k, serial[i], i))
    while q:
        out.append(heapq.heappop(q)[2])
    return out


def _calendar_cases():
    rng = np.random.default_rng(20261128)
    for n in SIZES:
        t = np.cumsum(rng.exponential(1.0, n))       # arrivals, then ends = arrival + life
        yield n, "arrival + lognormal life", t + rng.lognormal(1.0, 1.0, n)
        yield n, "arrival + fixed life", t + 5.0
        yield n, "few values", rng.integers(0, 3, n).astype(np.float64)
        yield n, "all equal", np.full(n, 7.5)
        yield n, "descending", np.arange(n, 0, -1, dtype=np.float64)
        yield n, "heavy tail", t + rng.pareto(0.8, n) * 3.0
        yield n, "infinite ends", np.where(rng.random(n) < 0.3, np.inf, t)


def _calendar(backend):
    if backend == "numba":
        from collide import _core_numba
        return _core_numba.calendar_order
    return _core.calendar_order


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("width,buckets", [(1.0, 64), (0.01, 64), (1e-6, 1024), (1e6, 64),
                                           (0.5, 1), (3.0, 2)])
def test_calendar_pops_in_end_then_serial_order(backend, width, buckets):
    rng = np.random.default_rng(11)
    calendar_order = _calendar(backend)
    for n, label, keys in _calendar_cases():
        keys = np.ascontiguousarray(keys, np.float64)
        serial = rng.permutation(n).astype(np.int64) * 3 + 1
        for pops in (np.zeros(n, np.int64), (rng.random(n) < 0.5).astype(np.int64)):
            got = list(calendar_order(keys, serial, width, buckets, pops))
            want = _calendar_reference(keys, serial, pops)
            assert got == want, (n, label, width, buckets, got[:12], want[:12])


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_calendar_order_needs_the_serials(backend):
    serial = np.array([5, 3, 9, 1, 7, 2, 8], np.int64)
    got = list(_calendar(backend)(np.zeros(7), serial, 1.0, 64, np.zeros(7, np.int64)))
    assert got == list(np.argsort(serial)) and got != list(range(7))


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_calendar_order_checks_its_arguments(backend):
    one = np.zeros(1)
    with pytest.raises(ValueError, match="power of two"):
        _calendar(backend)(one, np.zeros(1, np.int64), 1.0, 3, np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="as many entries"):
        _calendar(backend)(one, np.zeros(2, np.int64), 1.0, 4, np.zeros(1, np.int64))


def test_calendar_is_sized_for_the_busiest_segment():
    """W = 2 / (the run's highest rate) and M = pow2(2 x the live connections at that rate): a
    schedule's peak sizes the ring, not its first segment (which sizes the warm-up)."""
    from collide import _params as C, _state as T
    from collide.scenario import Scenario
    base = {"traffic": {"rate": 50.0, "duration": {"dist": "lognormal", "mean": 4.0, "sigma": 1.0},
                        "horizon": 60.0}}
    flat = Scenario.from_dict(base)
    pi, pf, _, _, _, xa = C.build(flat, False)
    assert T.calendar_shape(pi, pf, xa) == (512, 25.0)          # 2 x 200 live -> 512; W = 2/50
    peaked = flat.replace({"traffic.schedule": [[0, 50.0], [20.0, 3000.0], [40.0, 10.0]]})
    pi, pf, _, _, _, xa = C.build(peaked, False)
    assert T.calendar_shape(pi, pf, xa) == (32768, 1500.0)      # 2 x 12,000 live -> 32,768
