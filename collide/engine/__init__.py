"""The simulation engine: one lazy algorithm (docs/engine.md) in three backends side by side.

    driver.py         seed → stationary start → kernel calls of bounded work → RawRun
    params.py         a scenario as the flat parameter arrays every backend reads
    state.py          the flat state arrays: lazy slots, and what some scenarios add
    _core_python.py   the reference kernels: the specification, plain Python on the arrays
    _core_numba.py    the same kernels compiled by numba, with its own draws and scans
    _core.pyx         the same kernels in Cython, without the GIL

The rest of the package imports only what this module exports.
"""
from .driver import BACKENDS, BackendUnavailable, RawRun, bit_generator, run
from .params import ESTIMATES, collidable, default_estimate, estimate_reason, resolve_estimate
from .state import size

__all__ = ["BACKENDS", "BackendUnavailable", "ESTIMATES", "RawRun", "bit_generator", "collidable",
           "default_estimate", "estimate_reason", "resolve_estimate", "run", "size"]
