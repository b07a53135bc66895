"""Drive one run on a backend: seed → warm-up → chunks of simulated time → raw counters.

The driver is shared by the three backends; only the `Simulation`/`Engine` object differs. Runs go in
chunks of simulated time so that a long run reports progress and Ctrl-C stops it between chunks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _params as C
from . import _state as T
from .scenario import Scenario

BACKENDS = ("cython", "numba", "python")
COUNTER_NAMES = ("connections", "established", "allocation_failures", "failed_connects",
                 "collisions", "reset_victims", "time_wait_hits", "pairs",
                 "peak_live_per_destination", "delayed_connects", "pending_connects")


class BackendUnavailable(RuntimeError):
    pass


def bit_generator(seed: int, replicate: int | None = None, replicates: int = 1) -> np.random.PCG64:
    """DESIGN §2.4: PCG64(SeedSequence(seed)); replicate r uses SeedSequence(seed).spawn(R)[r]."""
    ss = np.random.SeedSequence(seed)
    if replicate is not None:
        ss = ss.spawn(replicates)[replicate]
    return np.random.PCG64(ss)


@dataclass
class RawRun:
    counters: dict
    first_collision_s: float | None
    batches: np.ndarray
    elapsed_s: float
    state_bytes: int
    finished: bool
    measured_s: float      # simulated seconds of the measured window actually covered


class _Compiled:
    """Cython or numba: flat state arrays, kernels that return GROW codes when they run out."""

    def __init__(self, backend, arrays, bitgen, conn_cap):
        pi, pf, zs, zc, w, xa = arrays
        self.arrays = arrays
        self.state = T.new_state(pi, pf, conn_cap)
        self.bitgen = bitgen
        self.backend = backend
        if backend == "cython":
            try:
                from . import _core
            except ImportError as exc:  # pragma: no cover - only without a build
                raise BackendUnavailable(
                    f"--backend cython: the compiled core is not built ({exc}); "
                    "run `pip install .` or choose --backend numba|python") from None
            self.engine = _core.Engine(pi, pf, zs, zc, w, xa, bitgen, self.state)
        else:
            from . import _core_numba as nbk
            self.nbk = nbk
            self.rows = nbk.PlainRows()     # the plain loops' rows and slots, kept between calls
            if type(bitgen) is not np.random.PCG64:
                raise ValueError("--backend numba: needs a PCG64 bit generator "
                                 f"(got {type(bitgen).__name__})")

    def _call(self, name, *args):
        if self.backend == "cython":
            return getattr(self.engine, name)(*args)
        pi, pf, zs, zc, w, xa = self.arrays
        nbk, S = self.nbk, T.as_tuple(self.state)
        with self.bitgen.lock:          # the kernels run an inlined PCG64 on a copy of its state
            st = T.pcg_load(self.bitgen)
            if name == "draw_stationary":
                out = nbk.draw_stationary(pi, pf, xa, st)
            elif name == "place_stationary":
                nbk.give_back_rows(S, pi, self.rows)
                out = nbk.place_stationary(S, pi, pf, zs, zc, w, xa, st, *args)
            elif name == "schedule_first_arrival":
                out = nbk.schedule_first_arrival(S, pi, pf, xa, st)
            else:
                out = nbk.advance(S, pi, pf, zs, zc, w, xa, st, *args, self.rows)
            T.pcg_store(self.bitgen, st)
        return out

    def draw_stationary(self):
        return self._call("draw_stationary")

    def place_stationary(self, residuals, order):
        need = len(order) + 1024
        while T.capacity(self.state) < need:
            self._grow(T.GROW_CONN)
        # the heap keeps a reset connection's record until its end time comes up, so the records
        # can run out during placement: grow and go on from where it stopped
        done = self._call("place_stationary", residuals, order, 0)
        while done < len(order):
            self._grow(T.GROW_CONN)
            done = self._call("place_stationary", residuals, order, done)

    def schedule_first_arrival(self):
        self._call("schedule_first_arrival")

    def _grow(self, code):
        T.grow(self.state, code)
        if self.backend == "cython":
            self.engine.bind(self.state)

    def advance(self, t_stop):
        while True:
            code = self._call("advance", t_stop)
            if code == T.DONE:
                return
            self._grow(code)

    def release(self):
        """The run is over: the shared state arrays become current, scratch goes back."""
        if self.backend == "cython":
            self.engine.release()
        else:
            self.nbk.release(T.as_tuple(self.state), self.arrays[0], self.rows)

    def counters(self):
        si, sf = self.state["si"], self.state["sf"]
        c = {"connections": si[T.CONN], "established": si[T.EST],
             "allocation_failures": si[T.AFAIL], "failed_connects": si[T.FAILED],
             "collisions": si[T.COLL], "reset_victims": si[T.RESETS],
             "time_wait_hits": si[T.TWHITS], "pairs": si[T.PAIRS],
             "peak_live_per_destination": si[T.PEAK], "delayed_connects": si[T.DELAYED],
             "pending_connects": si[T.PENDING]}
        c = {k: int(v) for k, v in c.items()}
        c["delay_hist"] = [int(x) for x in self.state["dhist"]]
        nbytes = T.state_bytes(self.state)
        if self.backend == "cython":
            nbytes += self.engine.scratch_bytes()
        else:
            nbytes += self.rows.nbytes()
        return c, float(sf[T.FIRST]), self.state["batches"].copy(), nbytes


class _Reference:
    def __init__(self, arrays, bitgen):
        from ._core_python import Simulation
        self.sim = Simulation(*arrays, bitgen)

    def draw_stationary(self):
        r, a = self.sim.draw_stationary()
        return np.array(r, np.float64), np.array(a, np.float64)

    def place_stationary(self, residuals, order):
        self.sim.place_stationary(residuals, order)

    def schedule_first_arrival(self):
        self.sim.schedule_first_arrival()

    def advance(self, t_stop):
        self.sim.advance(t_stop)

    def release(self):
        pass

    def counters(self):
        raw = self.sim.counters()
        c = {k: int(raw[k]) for k in COUNTER_NAMES}
        c["delay_hist"] = [int(x) for x in raw["delay_hist"]]
        return c, float(raw["first_collision_s"]), np.array(raw["batches"]), 0


def run(scenario: Scenario, bitgen: np.random.PCG64, backend: str = "cython", estimate: bool = True,
        progress: Callable[[float], None] | None = None, chunks: int | None = None,
        until_first: bool = False) -> RawRun:
    """Simulate one run; `progress(fraction)` after each chunk. `until_first` stops after the
    chunk in which the first collision happened (time to first reset).

    KeyboardInterrupt between chunks returns what finished, with `finished=False`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    arrays = C.build(scenario, estimate)
    pf = arrays[1]
    t_measure, t_end = float(pf[C.T_MEASURE]), float(pf[C.T_END])
    t0 = time.perf_counter()
    if backend == "python":
        sim = _Reference(arrays, bitgen)
    else:
        cap = int(scenario.mean_live * 1.3 + 10 * np.sqrt(scenario.mean_live) + 1024)
        cap = min(cap, scenario.destinations * scenario.nat.capacity + 16)
        sim = _Compiled(backend, arrays, bitgen, cap)
    if scenario.traffic.warmup == "auto":
        residuals, age = sim.draw_stationary()
        order = np.argsort(-age, kind="stable").astype(np.int64)
        sim.place_stationary(residuals, order)
    sim.schedule_first_arrival()
    if chunks is None:
        expected = max(scenario.traffic.rate, scenario.traffic.mean_rate) * t_end
        chunks = int(min(400, max(1, expected // 2_000_000)))
        if until_first:
            chunks = max(chunks, 64)
    finished = True
    covered = 0.0
    try:
        if t_measure > 0:
            sim.advance(t_measure)
        for i in range(1, chunks + 1):
            t_stop = t_measure + (t_end - t_measure) * i / chunks
            sim.advance(t_stop)
            covered = t_stop - t_measure
            if progress is not None:
                progress(i / chunks)
            if until_first and sim.counters()[1] >= 0:
                break
    except KeyboardInterrupt:
        finished = False
    counters, first, batches, nbytes = sim.counters()
    sim.release()
    # successes after retries by delay (the schedule's values): [(delay_s, count), ...]
    hist = counters.pop("delay_hist")
    counters["connect_delay_histogram"] = tuple(
        (float(dl), int(x)) for dl, x in zip(scenario.target.syn_retries, hist) if x)
    return RawRun(counters, None if first < 0 else first, batches, time.perf_counter() - t0,
                  nbytes, finished, covered)
