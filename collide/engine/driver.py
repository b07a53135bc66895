"""Drive one run on a backend: seed → stationary start → kernel calls of bounded work → raw counts.

The three backends share this driver; only the kernels differ. Every kernel call does at most a
fixed amount of work (`BUDGET`: about 50 ms compiled, a few ms in Python) and returns, so a run
reports progress as it goes and Ctrl-C stops it within a second in every phase (the stationary
draws, the placement, warm-up and the measured window). Ctrl-C only sets a flag, read between
calls: the state is never left half-updated, and the counts cover exactly the simulated time
reached (`measured_s`).
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..scenario import Scenario
from . import params as C
from . import state as T

BACKENDS = ("cython", "numba", "python")
BUDGET = {"cython": 1 << 21, "numba": 1 << 21, "python": 1 << 12}
COUNTERS = (("connections", T.CONN), ("established", T.EST), ("allocation_failures", T.AFAIL),
            ("failed_connects", T.FAILED), ("collisions", T.COLL), ("reset_victims", T.RESETS),
            ("time_wait_hits", T.TWHITS), ("pairs", T.PAIRS),
            ("peak_live_per_destination", T.PEAK), ("delayed_connects", T.DELAYED),
            ("pending_connects", T.PENDING))
_M64 = (1 << 64) - 1


class BackendUnavailable(RuntimeError):
    pass


def bit_generator(seed: int, replicate: int | None = None, replicates: int = 1) -> np.random.PCG64:
    """PCG64(SeedSequence(seed)); replicate r of R uses SeedSequence(seed).spawn(R)[r], built
    directly as SeedSequence(seed, spawn_key=(r,)) (the same stream, without R children)."""
    if replicate is None:
        return np.random.PCG64(np.random.SeedSequence(seed))
    return np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(replicate,)))


@dataclass
class RawRun:
    counters: dict
    first_collision_s: float | None
    batches: np.ndarray            # the estimate's sums per batch of the window
    batch_weights: np.ndarray      # the seconds of each batch the run covered
    elapsed_s: float               # wall time of the whole run
    kernel_s: float                # wall time of the measured window's kernel calls
    setup_s: float                 # wall time before the measured window (state, placement, warm-up)
    state_bytes: int
    finished: bool
    measured_s: float              # simulated seconds of the measured window actually covered
    estimate: str                  # "off", "target" or "full"
    estimate_reason: str = ""      # why (params.estimate_reason)
    pilot_s: float = 0.0           # wall time spent choosing it (0: a rule from the scenario)


class _Interrupt:
    """Ctrl-C sets a flag that the driver reads between kernel calls (main thread only; elsewhere
    the caller's own handling applies)."""

    def __init__(self):
        self.hit = False
        self.old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._on)
            except ValueError:          # pragma: no cover - an embedding without signals
                self.old = None
        return self

    def _on(self, signum, frame):
        self.hit = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False


class _Kernels:
    """One backend's kernels on the run's state."""

    def __init__(self, backend: str, arrays: tuple, state: dict, bitgen):
        self.backend, self.arrays, self.state, self.bitgen = backend, arrays, state, bitgen
        if backend == "cython":
            try:
                from . import _core
            except ImportError as exc:  # pragma: no cover - only without a build
                raise BackendUnavailable(
                    f"--backend cython: the compiled core is not built ({exc}); "
                    "run `pip install .` or choose --backend numba|python") from None
            self.mod = _core
            self.engine = _core.Engine(*arrays, bitgen)
            self.engine.bind(T.as_tuple(state))
            return
        if type(bitgen) is not np.random.PCG64:
            raise ValueError(f"--backend {backend}: needs a PCG64 bit generator "
                             f"(got {type(bitgen).__name__})")
        if backend == "numba":
            from . import _core_numba as mod
        else:
            from . import _core_python as mod
        self.mod = mod

    # the generator of the Python and numba kernels: loaded before, stored after each call
    def _gst(self):
        st = self.bitgen.state["state"]
        if self.backend == "numba":
            return np.array([st["state"] >> 64, st["state"] & _M64, st["inc"] >> 64,
                             st["inc"] & _M64], np.uint64)
        return [st["state"], st["inc"]]

    def _store(self, gst):
        full = self.bitgen.state
        if self.backend == "numba":
            full["state"]["state"] = (int(gst[0]) << 64) | int(gst[1])
        else:
            full["state"]["state"] = gst[0]
        self.bitgen.state = full

    def _call(self, name, *args):
        if self.backend == "cython":
            return getattr(self.engine, name)(*args)
        gst = self._gst()
        fn = getattr(self.mod, name)
        with self.bitgen.lock:
            if name == "advance":
                out = fn(T.as_tuple(self.state), *self.arrays, gst, *args)
            elif name == "stationary_count":
                out = fn(self.arrays[0], self.arrays[1], gst, *args)
            else:
                out = fn(self.arrays[0], self.arrays[1], self.arrays[5], gst, *args)
            self._store(gst)
        return out

    def stationary_count(self, acc, budget):
        return self._call("stationary_count", acc, budget)

    def stationary_fill(self, life, age, i0, i1):
        return self._call("stationary_fill", life, age, i0, i1)

    def settle(self, t):
        """Bring the `full` estimate's counts and batches up to t (they are kept late)."""
        if self.backend == "cython":
            while (work := self.engine.settle(float(t))) < 0:   # a segment needs room first
                T.grow(self.state, T.GROW_EV, float(t), self.mod.tw_rehash)
                self.engine.bind(T.as_tuple(self.state))
            return work
        return self.mod.est_settle(T.as_tuple(self.state), self.arrays[0], self.arrays[1],
                                   self.arrays[2], self.arrays[3], float(t))

    def advance(self, t_stop, budget):
        while True:
            code = self._call("advance", float(t_stop), int(budget))
            if code < T.GROW_PEND:
                return code
            T.grow(self.state, code, float(self.state["sf"][T.NOW]), self.mod.tw_rehash)
            if self.backend == "cython":
                self.engine.bind(T.as_tuple(self.state))


def _stationary(k: _Kernels, budget: int, stop: _Interrupt) -> tuple[np.ndarray, np.ndarray] | None:
    """The stationary population at t = 0, oldest first; None if Ctrl-C came first."""
    acc = np.zeros(2, np.float64)
    while not k.stationary_count(acc, budget):
        if stop.hit:
            return None
    n = int(acc[0])
    life, age = np.empty(n, np.float64), np.empty(n, np.float64)
    step = max(1, budget // 4)
    for i0 in range(0, n, step):
        k.stationary_fill(life, age, i0, min(n, i0 + step))
        if stop.hit:
            return None
    order = np.argsort(-age, kind="stable").astype(np.int64)
    return life, order


class Run:
    """One run's parameters, state and kernels, advanced in calls of bounded work (`run` drives
    it; tests step it to inspect the state between calls)."""

    def __init__(self, scenario: Scenario, bitgen: np.random.PCG64, backend: str = "cython",
                 estimate=None, until_first: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")
        self.scenario, self.backend = scenario, backend
        self.estimate = C.resolve_estimate(scenario, estimate)
        self.arrays = C.build(scenario, self.estimate, until_first)
        self.pi, self.pf = self.arrays[0], self.arrays[1]
        self.state = T.new_state(self.pi, self.pf, self.arrays[5])
        self.kernels = _Kernels(backend, self.arrays, self.state, bitgen)

    def place(self, budget: int, stop: _Interrupt) -> bool:
        """Draw the stationary population (warm-up "auto"); False if Ctrl-C came first."""
        placed = _stationary(self.kernels, budget, stop)
        if placed is None:
            return False
        T.set_placement(self.state, *placed)
        if self.backend == "cython":
            self.kernels.engine.bind(T.as_tuple(self.state))
        return True

    def advance(self, t_stop: float, budget: int) -> int:
        return self.kernels.advance(t_stop, budget)

    def settle(self) -> None:
        """The `full` estimate's counts and batches brought up to now (docs/engine.md)."""
        self.kernels.settle(self.now)

    @property
    def now(self) -> float:
        return float(self.state["sf"][T.NOW])


def run(scenario: Scenario, bitgen: np.random.PCG64, backend: str = "cython", estimate=None,
        progress: Callable[[float], None] | None = None, until_first: bool = False,
        budget: int | None = None) -> RawRun:
    """Simulate one run. `estimate`: "off", "target", "full", or None/True for the default (False
    is "off"). `progress(fraction of simulated time)` after kernel calls. `until_first` stops at
    the first measured collision (time to first reset). `budget`: work per kernel call.

    Ctrl-C (in the main thread) stops the run between kernel calls and returns what finished,
    with `finished=False` and `measured_s` the part of the window covered."""
    t0 = time.perf_counter()
    r = Run(scenario, bitgen, backend, estimate, until_first)
    pi, state = r.pi, r.state
    t_measure, t_end = float(r.pf[C.T_MEASURE]), float(r.pf[C.T_END])
    budget = int(budget or BUDGET[backend])
    finished, code = True, T.DONE
    kernel_s = 0.0
    with _Interrupt() as stop:
        if scenario.traffic.warmup == "auto":
            finished = r.place(budget, stop)
        # the placement at t = 0 and the warm-up before the window, then the window itself
        phases = ((0.0, False), (t_measure, False), (t_end, True))
        for t_stop, measured in phases:
            if not finished or code == T.FIRST_HIT:
                break
            while True:
                if stop.hit:
                    finished = False
                    break
                w0 = time.perf_counter()
                code = r.advance(t_stop, budget)
                if measured:
                    kernel_s += time.perf_counter() - w0
                if progress is not None:
                    progress(min(1.0, r.now / t_end) if t_end > 0 else 1.0)
                if code in (T.DONE, T.FIRST_HIT):
                    break
        w0 = time.perf_counter()
        r.settle()                       # (the estimate's last window: kernel time too)
        kernel_s += time.perf_counter() - w0
        t_setup = time.perf_counter() - t0 - kernel_s
        # a Ctrl-C during the last kernel call still counts: the run ended, the caller must
        # know it was asked to stop (first-reset's replicates, scan's prediction)
        interrupted = stop.hit
    si, sf = state["si"], state["sf"]
    counters = {name: int(si[i]) for name, i in COUNTERS}
    hist = state["dhist"]
    counters["connect_delay_histogram"] = tuple(
        (float(dl), int(x)) for dl, x in zip(scenario.target.syn_retries, hist) if x)
    reached = t_end if finished and code == T.DONE else r.now
    measured_s = max(0.0, min(reached, t_end) - t_measure)
    # the batches' width when the run stopped; a quiet end past the last batch merges them on
    nb = int(pi[C.NBATCH])
    batches = state["batches"].copy()
    width = 1.0 / float(sf[T.BSCALE])
    while measured_s > nb * width and width * nb < (t_end - t_measure) * (1 - 1e-12):
        batches = np.concatenate([batches[0::2] + batches[1::2], np.zeros(nb // 2)])
        width *= 2.0
    weights = np.clip(measured_s - width * np.arange(nb), 0.0, width)
    first = float(sf[T.FIRST])
    elapsed = time.perf_counter() - t0
    return RawRun(counters, None if first < 0 else first, batches, weights,
                  elapsed, kernel_s, t_setup, T.state_bytes(state), finished and not interrupted,
                  measured_s, r.estimate, C.estimate_reason(scenario, estimate))
