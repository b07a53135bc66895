"""The end-time heap pops in (end, serial) order, ties included, in both compiled backends.

The sifts pick the least of four children without branches and fall back to an exact path when
ends are equal; engine runs almost never produce equal ends, so the fallback is tested here,
directly, with keys drawn from a handful of values.
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
