"""Sweeps: a grid of scenarios run on any executor, one pooled row per point (docs/model.md §4.5).

    >>> import collide
    >>> res = collide.sweep("seed", {"traffic.rate": [100, 200, 400], "nat.ips": [1, 2]},
    ...                     overrides={"traffic.horizon": 60}, seed=1, workers=1)
    >>> res.rows[0]["collisions_per_hour"]

A sweep file (TOML) holds the same arguments::

    base = "seed"                      # a built-in name, or a scenario file (relative to the sweep file)
    seed = 1
    replicates = 1
    [overrides]
    "traffic.horizon" = 600
    [axes]                             # the grid is the product of the axes, in the order given
    "traffic.rate" = { logspace = [1, 3, 7] }        # also { linspace = [a, b, n] }, { range = [a, b, step] }
    "load_balancer.cross_zone" = [true, false]
    [zip]                              # keys that move together: one more axis, innermost
    "load_balancer.targets" = [3, 6, 12]
    "traffic.clients" = [1, 2, 4]

Determinism: point `i` runs with the seed ``SeedSequence(sweep_seed, spawn_key=(i,))`` (docs/model.md §2.4), so
the rows do not depend on the executor, the number of workers, the order points finish in or on an
interruption and ``resume``. With one replicate, ``collide simulate --seed SEED`` plus the point's keys
reproduces the row. With R replicates, replicate r uses ``SeedSequence(SEED).spawn(R)[r]``; counters are
summed, rates recomputed over R·horizon, ``expected_collisions`` summed with standard errors combined in
quadrature, ``peak_live_per_destination`` is the maximum and ``first_collision_s`` is replicate 0's (so the
column means "first collision in one run" whatever R).

Adaptive precision (``rel_error``): each point first runs with the scenario's horizon; while the relative
standard error of its collision-rate estimate (``expected_collisions_se / expected_collisions`` where the
conditional estimate exists, else Poisson ``1/sqrt(collisions)``) exceeds the target, it is run again from
the start, same seed, with a longer horizon, until the target or ``max_connections`` (default 1e8 per point)
is reached. The final horizon is in the ``horizon_s`` column and the achieved relative error in
``rel_error``, so ``collide simulate --seed SEED --horizon HORIZON_S`` still reproduces the row. Points where
the model allows no collision at all (cross-zone off, one node, ...) stop at once.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import math
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..scenario import ALIASES, Scenario, ScenarioError

__all__ = ["sweep", "SweepSpec", "SweepResult", "SweepError", "SweepInterrupted", "load_sweep",
           "expand_axis", "point_seed", "read_rows", "METRIC_COLUMNS", "TAIL_COLUMNS"]

#: The metrics of docs/model.md §4.3, nested names joined by `_` (scenario, backend, schema_version left out).
METRIC_COLUMNS = (
    "connections", "established", "allocation_failures", "failed_connects", "collisions",
    "reset_victims", "time_wait_hits", "pairs", "collision_probability",
    "collision_probability_ci_low", "collision_probability_ci_high", "collisions_per_hour",
    "expected_collisions", "expected_collisions_se", "expected_collisions_per_hour",
    "expected_collisions_per_hour_se", "estimate", "first_collision_s",
    "peak_live_per_destination", "analytic_collision_probability", "analytic_collisions_per_hour",
    "analytic_form", "delayed_connects", "pending_connects", "connect_delay_p50_s",
    "connect_delay_p99_s",
)
#: After the metrics: pooled replicates, the point's seed, the horizon each replicate measured, the
#: achieved relative error of the collision rate, wall time.
TAIL_COLUMNS = ("replicates", "seed", "horizon_s", "rel_error", "elapsed_s")

DEFAULT_MAX_CONNECTIONS = 100_000_000
SWEEP_KEYS = ("base", "seed", "replicates", "overrides", "axes", "zip", "rel_error",
              "max_connections", "backend", "estimate")


class SweepError(ScenarioError):
    """A bad sweep file or argument; one line naming the axis, key or point."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``.result`` holds the rows that finished (all of them are in the output)."""

    def __init__(self, result: "SweepResult"):
        super().__init__("sweep interrupted")
        self.result = result


class _PointInterrupted(RuntimeError):
    pass


# -- axes ---------------------------------------------------------------------------------------------
#: An axis longer than this is refused (exit 2) from its parameters, before any value is made; a
#: grid of more points than MAX_POINTS too (the size check refuses far smaller ones by their cost).
MAX_AXIS_VALUES = 10_000_000
MAX_POINTS = 10 ** 12
#: Helpers of more values than this are made one value at a time, when their points run.
LAZY_FROM = 100_000


def _plain(v: Any) -> Any:
    """numpy scalars and arrays as the Python numbers and lists they hold (the API takes both)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _helper_numbers(name: str, where: str, args: Any, counts: tuple[int, ...]) -> list:
    args = _plain(args)
    if not isinstance(args, list) or len(args) not in counts or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        want = " or ".join(str(c) for c in counts)
        raise SweepError(f"{where}: {{ {name} = {_show(args)} }}: must be a list of {want} numbers")
    if not all(math.isfinite(a) for a in args):
        raise SweepError(f"{where}: {{ {name} = {_show(args)} }}: must be finite numbers "
                         "(no inf, no nan)")
    return args


class _Lazy(Sequence):
    """A sequence whose items are made when asked for: `_item(i)` for 0 <= i < n."""
    n = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._item(i)

    def _item(self, i):
        raise NotImplementedError


class _Helper(_Lazy):
    """The values of a `linspace`, `logspace` or float `range` helper, made one at a time (an
    axis of 10^9 values costs nothing until its points run). Value i is what numpy's linspace and
    logspace give (i * step + start, the last one exactly `stop`), so rows are the same as with
    the values made at once."""

    def __init__(self, name: str, a: float, b: float, n: int, step: float | None = None):
        self.name, self.a, self.b, self.n = name, a, b, n
        if step is not None:
            self.step = step
        else:
            self.step = (b - a) / (n - 1) if n > 1 else 0.0

    def _item(self, i):
        if self.name == "range":
            return self.a + i * self.step
        if self.n > 1 and i == self.n - 1:
            x = float(self.b)
        elif self.step == 0 and self.n > 1:
            x = float(i) / (self.n - 1) * (self.b - self.a) + self.a
        else:
            x = float(i) * self.step + self.a
        if self.name != "logspace":
            return float(x)
        try:
            return float(10.0 ** x)
        except OverflowError:
            return math.inf

    def __eq__(self, other):
        return isinstance(other, Sequence) and len(other) == len(self) and all(
            x == y for x, y in zip(self, other))


def axis_length(where: str, spec: Any) -> int:
    """How many values an axis has, from its parameters alone (nothing is expanded)."""
    spec = _plain(spec)
    if isinstance(spec, list):
        return len(spec)
    if isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in ("linspace", "logspace",
                                                                            "range"):
        name, args = next(iter(spec.items()))
        if name in ("linspace", "logspace"):
            n = _helper_numbers(name, where, args, (3,))[2]
            if isinstance(n, float) and n.is_integer():
                n = int(n)
            if not isinstance(n, int) or n < 1:
                raise SweepError(f"{where}: {{ {name} = {_show(args)} }}: the count must be an "
                                 "integer >= 1")
            return n
        args = _helper_numbers(name, where, args, (2, 3))
        a, b = args[0], args[1]
        step = args[2] if len(args) == 3 else 1
        if step == 0:
            raise SweepError(f"{where}: {{ range = {_show(args)} }}: the step must not be 0")
        if all(isinstance(x, int) for x in (a, b, step)):
            return len(range(a, b, step))
        n = (b - a) / step - 1e-9
        if not math.isfinite(n):
            raise SweepError(f"{where}: {{ range = {_show(args)} }}: more values than can be "
                             "counted")
        return max(0, math.ceil(n))
    return -1                        # not an axis: expand_axis names what is wrong


def expand_axis(where: str, spec: Any) -> Sequence:
    """An axis's values: a list as is, or ``{linspace = [a, b, n]}``, ``{logspace = [a, b, n]}``
    (10**a .. 10**b, n values, as numpy), ``{range = [a, b]}`` / ``{range = [a, b, step]}`` (b excluded,
    as Python's range; integers stay integers). Helpers are counted from their parameters and
    made lazily; an axis of more than MAX_AXIS_VALUES values is refused before anything is made."""
    spec = _plain(spec)
    n = axis_length(where, spec)
    if n > MAX_AXIS_VALUES:
        raise SweepError(f"{where} = {_show(spec)}: {n:.3g} values; at most "
                         f"{MAX_AXIS_VALUES:,} per axis (a sweep of that many points would not "
                         "finish)")
    if isinstance(spec, list):
        values: Sequence = spec
    elif isinstance(spec, Mapping) and n >= 0:
        name, args = next(iter(spec.items()))
        if name in ("linspace", "logspace"):
            a, b = float(args[0]), float(args[1])
            values = _Helper(name, a, b, n)
        else:
            a, b = args[0], args[1]
            step = args[2] if len(args) == 3 else 1
            if all(isinstance(x, int) for x in (a, b, step)):
                values = range(a, b, step)
            else:
                values = _Helper("range", a, b, n, step)
    elif isinstance(spec, Mapping):
        raise SweepError(f"{where} = {_show(spec)}: must be a list, or one of "
                         "{ linspace = [a, b, n] }, { logspace = [a, b, n] }, { range = [a, b, step] }")
    else:
        raise SweepError(f"{where} = {_show(spec)}: must be a list of values or a "
                         "{ linspace | logspace | range = [...] } helper")
    if not len(values):
        raise SweepError(f"{where}: empty axis (give at least one value)")
    if isinstance(values, _Helper) and len(values) <= LAZY_FROM and values.name != "range":
        fn = np.linspace if values.name == "linspace" else np.logspace     # as made before
        return [float(v) for v in fn(values.a, values.b, values.n)]
    if not isinstance(values, list) and len(values) <= LAZY_FROM:
        return list(values)
    return values


class _Factor(_Lazy):
    """One factor of the grid: {key: value} for each value of an axis (or of the zip group's
    keys together), made when asked for."""

    def __init__(self, columns: dict, keys: list):
        self.columns, self.keys = columns, keys
        self.n = len(columns[keys[0]])

    def _item(self, i):
        return {k: self.columns[k][i] for k in self.keys}


def _show(v: Any) -> str:
    try:
        return json.dumps(v)
    except TypeError:
        return repr(v)


def _dotted(key: str) -> str:
    return ALIASES.get(key, key)


def _check_key(where: str, key: str, base: Scenario) -> str:
    dotted = _dotted(key)
    try:
        base.get(dotted)
    except (KeyError, TypeError):
        from ..scenario import _did_you_mean, all_keys
        raise SweepError(f"{where}: unknown scenario key{_did_you_mean(dotted, all_keys())}") from None
    return dotted


# -- the grid, point by point ---------------------------------------------------------------------------
#: Grids up to this many points have every point's scenario built and checked before any runs;
#: larger ones have each axis value checked on the base, and are built as they run (memory does not
#: grow with the number of points).
FULL_CHECK = 50_000


def _key(v: Any):
    """A value as a row holds it and as the grid holds it compare equal (1 == 1.0, lists as JSON)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return (type(v).__name__, v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    return ("json", _show(v))


class _Points(_Lazy):
    """The points of a product of factors (the last varies fastest, as itertools.product), by
    index, without holding them."""

    def __init__(self, grid: list[list[dict]]):
        self.grid = grid
        self.sizes = [len(f) for f in grid]
        self.n = math.prod(self.sizes)
        self._lookup = None

    def _item(self, i):
        parts = []
        for factor, size in zip(reversed(self.grid), reversed(self.sizes)):
            i, r = divmod(i, size)
            parts.append(factor[r])
        point = {}
        for part in reversed(parts):
            point.update(part)
        return point

    def index_of(self, row: Mapping) -> int | None:
        """The index of the point whose keys have the row's values, or None."""
        if self._lookup is None:
            self._lookup = [{tuple(_key(v) for v in part.values()): j for j, part in enumerate(f)}
                            for f in self.grid]
        index = 0
        for factor, size, lookup in zip(self.grid, self.sizes, self._lookup):
            j = lookup.get(tuple(_key(row.get(k)) for k in factor[0]))
            if j is None:
                return None
            index = index * size + j
        return index


class _Scenarios(Sequence):
    """The scenario of each point, built on demand (SweepError names a point that is not allowed)."""

    def __init__(self, base: Scenario, points: _Points):
        self.base, self.points = base, points

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        point = self.points[i]
        try:
            return self.base.replace(point)
        except ScenarioError as exc:
            where = ", ".join(f"{k}={_show(v)}" for k, v in point.items())
            raise SweepError(f"point {i} ({where}): {exc}") from None


# -- the specification ------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    """A parsed, validated sweep: the scenario of every point, in index order."""
    base: Scenario
    axes: dict                       # dotted key -> values (the zip group's keys are listed too)
    zip_keys: tuple = ()
    overrides: dict = field(default_factory=dict)
    replicates: int = 1
    seed: int = 0
    rel_error: float | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    backend: str = "cython"
    estimate: str | None = None                      # None: the engine's default
    axis_specs: dict = field(default_factory=dict)   # the axes as given (lists or helpers)
    zip_specs: dict = field(default_factory=dict)
    points: list = field(default_factory=list)       # list of {dotted key: value}
    scenarios: list = field(default_factory=list)    # Scenario per point

    @property
    def columns(self) -> list[str]:
        return list(self.axes) + list(METRIC_COLUMNS) + list(TAIL_COLUMNS)

    def __len__(self):
        return len(self.points)


def build_spec(base, axes: Mapping, overrides: Mapping | None = None, zip: Mapping | None = None,
               replicates: int = 1, seed: int = 0, rel_error: float | None = None,
               max_connections: int | None = None, backend: str = "cython",
               estimate: str | None = None) -> SweepSpec:
    """Expand and validate a sweep; every point's scenario is built here, so errors come up front."""
    try:
        base_s = Scenario.load(base)
    except ScenarioError as exc:
        raise SweepError(f"base: {exc}") from None
    replicates, seed, rel_error, max_connections = (_plain(x) for x in (replicates, seed, rel_error,
                                                                         max_connections))
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise SweepError(f"replicates = {_show(replicates)}: must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SweepError(f"seed = {_show(seed)}: must be an integer >= 0")
    if rel_error is not None and (isinstance(rel_error, bool) or not isinstance(rel_error, (int, float))
                                  or not 0 < rel_error < 1):
        raise SweepError(f"rel_error = {_show(rel_error)}: must be a number between 0 and 1, e.g. 0.1")
    if max_connections is None:
        max_connections = DEFAULT_MAX_CONNECTIONS
    if isinstance(max_connections, float) and max_connections.is_integer():
        max_connections = int(max_connections)
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise SweepError(f"max_connections = {_show(max_connections)}: must be an integer >= 1")
    from ..engine import BACKENDS
    if backend not in BACKENDS:
        raise SweepError(f"backend = {_show(backend)}: must be one of {', '.join(BACKENDS)}")
    from ..engine import ESTIMATES
    if estimate is not None and estimate not in ESTIMATES:
        raise SweepError(f"estimate = {_show(estimate)}: must be one of {', '.join(ESTIMATES)}")

    if overrides is not None and not isinstance(overrides, Mapping):
        raise SweepError(f"overrides = {_show(_plain(overrides))}: must be a table of key = value, "
                         "e.g. {\"traffic.horizon\": 60}")
    fixed = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str):
            raise SweepError(f"overrides: key {_show(_plain(key))}: must be a dotted scenario key "
                             "such as \"traffic.horizon\"")
        fixed[_check_key(f"overrides.{key}", key, base_s)] = _plain(value)
    if fixed:
        try:
            base_s = base_s.replace(fixed)
        except ScenarioError as exc:
            raise SweepError(f"overrides: {exc}") from None

    if not isinstance(axes, Mapping):
        raise SweepError(f"axes = {_show(axes)}: must be a table of key = values")
    grid: list = []
    columns: dict = {}
    axis_specs: dict = {}
    zip_specs: dict = {}
    for key, spec in axes.items():
        if not isinstance(key, str):
            raise SweepError(f"axes: key {_show(_plain(key))}: must be a dotted scenario key such "
                             "as \"traffic.rate\"")
        dotted = _check_key(f"axes.{key}", key, base_s)
        if dotted in columns:
            raise SweepError(f"axes.{key}: the key {dotted} is given twice")
        values = expand_axis(f"axes.{key}", spec)
        axis_specs[dotted] = _plain(spec)
        columns[dotted] = values
        grid.append(_Factor(columns, [dotted]))
    zip_keys: list[str] = []
    if zip:
        if not isinstance(zip, Mapping):
            raise SweepError(f"zip = {_show(zip)}: must be a table of key = values of one length")
        lengths = {}
        for key, spec in zip.items():
            dotted = _check_key(f"zip.{key}", key, base_s)
            if dotted in columns:
                raise SweepError(f"zip.{key}: the key {dotted} is also an axis")
            columns[dotted] = expand_axis(f"zip.{key}", spec)
            zip_specs[dotted] = _plain(spec)
            lengths[dotted] = len(columns[dotted])
            zip_keys.append(dotted)
        if len(set(lengths.values())) > 1:
            raise SweepError("zip: the keys must have lists of one length; got "
                             + ", ".join(f"{k} {n}" for k, n in lengths.items()))
        grid.append(_Factor(columns, list(zip_keys)))
    if not columns:
        raise SweepError("axes: no axis given (add at least one key = [values] under [axes])")

    total = math.prod(len(f) for f in grid)
    if total > MAX_POINTS:
        raise SweepError(f"axes: {total:.3g} points (the product of the axes' lengths); at most "
                         f"{MAX_POINTS:.0e}")
    points = _Points(grid)
    scenarios: Sequence = _Scenarios(base_s, points)
    if len(points) <= FULL_CHECK:
        scenarios = [scenarios[i] for i in range(len(points))]     # every point, up front
    else:
        for factor in grid:             # each value on the base; combinations as they run
            if len(factor) > FULL_CHECK:    # a long helper: its ends and a sample of its values
                step = max(1, len(factor) // 1000)
                sample = [factor[j] for j in range(0, len(factor), step)] + [factor[-1]]
            else:
                sample = factor
            for part in sample:
                try:
                    base_s.replace(part)
                except ScenarioError as exc:
                    where = ", ".join(f"{k}={_show(v)}" for k, v in part.items())
                    raise SweepError(f"axes ({where}): {exc}") from None
    return SweepSpec(base=base_s, axes=columns, zip_keys=tuple(zip_keys), overrides=fixed,
                     replicates=replicates, seed=seed, rel_error=rel_error,
                     max_connections=max_connections, backend=backend, estimate=estimate,
                     axis_specs=axis_specs, zip_specs=zip_specs, points=points,
                     scenarios=scenarios)


def load_sweep(path: str | Path, **overrides) -> SweepSpec:
    """Parse and validate a sweep file; keyword arguments (rel_error, backend...) take precedence."""
    from ..errors import InputError
    from ..files import read_toml
    try:
        data = read_toml(path, "SWEEP.toml", expected="a sweep file is a few KB of TOML")
    except InputError as exc:
        raise SweepError(str(exc)) from None
    return spec_from_dict(data, root=Path(path).parent, **overrides)


def spec_from_dict(data: Mapping, root: str | Path | None = None, **overrides) -> SweepSpec:
    for key in data:
        if key not in SWEEP_KEYS:
            from ..scenario import _did_you_mean
            raise SweepError(f"{key}: unknown sweep key{_did_you_mean(key, SWEEP_KEYS)}; "
                             f"allowed: {', '.join(SWEEP_KEYS)}")
    base = data.get("base", "seed")
    from ..scenario import _did_you_mean, builtin_names
    names = builtin_names()
    if not isinstance(base, str) or not base.strip():
        raise SweepError(f"base = {_show(base)}: must be a built-in scenario name "
                         f"({', '.join(names)}) or the path of a scenario file")
    if base not in names:
        candidate = Path(base) if Path(base).is_absolute() or root is None else Path(root) / base
        if not candidate.exists() and not Path(base).exists():
            looks_like_path = "/" in base or base.endswith(".toml")
            raise SweepError(f"base = {_show(base)}: "
                             + ("no such scenario file" if looks_like_path else
                                f"not a built-in scenario{_did_you_mean(base, names)} nor a file")
                             + f"; built-in: {', '.join(names)}")
        if candidate.exists() or not Path(base).exists():
            base = str(candidate)
    kw = {k: data[k] for k in ("seed", "replicates", "rel_error", "max_connections", "backend",
                               "estimate") if k in data}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if "axes" not in data and "zip" not in data:
        raise SweepError("axes: missing (add an [axes] table, e.g. \"traffic.rate\" = [100, 200])")
    return build_spec(base, data.get("axes", {}), overrides=data.get("overrides"),
                      zip=data.get("zip"), **kw)


def point_seed(sweep_seed: int, index: int) -> int:
    """docs/model.md §2.4: the seed of point `index`, which `collide simulate --seed` takes as is."""
    ss = np.random.SeedSequence(sweep_seed, spawn_key=(index,))
    return int(ss.generate_state(1, np.uint64)[0])


# -- one point (runs in a worker) ---------------------------------------------------------------------
def _one_horizon(scenario: Scenario, seed: int, replicates: int, backend: str,
                 estimate: str | None = None) -> dict:
    """Run the point's replicates one after another, pooling as they finish (memory does not grow
    with the number of replicates)."""
    from .. import engine
    from ..api import _result
    pooled = _Pooled(scenario)
    for r in range(replicates):
        bitgen = engine.bit_generator(seed) if replicates == 1 else \
            engine.bit_generator(seed, r, replicates)
        raw = engine.run(scenario, bitgen, backend, estimate)
        if not raw.finished:
            raise _PointInterrupted()
        pooled.add(_result(scenario, seed, backend, raw))
    return pooled.row()


_SUMMED = ("connections", "established", "allocation_failures", "failed_connects", "collisions",
           "reset_victims", "time_wait_hits", "pairs", "delayed_connects", "pending_connects")


class _Pooled:
    """Replicates pooled as they come: counters summed, rates over R horizons, expected collisions
    summed with standard errors in quadrature, the peak the largest, the first collision replicate
    0's, connect delays from the summed histogram."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.R = 0
        self.total = dict.fromkeys(_SUMMED, 0)
        self.hist: dict = {}
        self.ex, self.var = 0.0, 0.0
        self.ex_none = self.se_none = False
        self.peak = 0
        self.first = None
        self.template = None

    def add(self, x) -> None:
        if self.R == 0:
            self.first, self.template = x.first_collision_s, x
        self.R += 1
        for k in _SUMMED:
            self.total[k] += getattr(x, k)
        for delay, count in x.connect_delay_histogram:
            self.hist[delay] = self.hist.get(delay, 0) + count
        if x.expected_collisions is None:
            self.ex_none = True
        else:
            self.ex += x.expected_collisions
        if x.expected_collisions_se is None:
            self.se_none = True
        else:
            self.var += x.expected_collisions_se ** 2
        self.peak = max(self.peak, x.peak_live_per_destination)

    def row(self) -> dict:
        from ..analytic import analytic
        from ..stats import wilson
        scenario, R = self.scenario, self.R
        pooled = dataclasses.replace(self.template,
                                     connect_delay_histogram=tuple(sorted(self.hist.items())))
        conn, coll = self.total["connections"], self.total["collisions"]
        lo, hi = wilson(coll, conn)
        horizon = scenario.traffic.horizon
        a = analytic(scenario)
        row = dict(self.total)
        row.update({
            "collision_probability": coll / conn if conn else 0.0,
            "collision_probability_ci_low": lo, "collision_probability_ci_high": hi,
            "collisions_per_hour": coll / (R * horizon) * 3600.0,
            "expected_collisions": None if self.ex_none else float(self.ex),
            "expected_collisions_se": None if self.se_none else float(math.sqrt(self.var)),
            # the estimate as a rate, the budget's unit (collide solve, plot --max-resets)
            "expected_collisions_per_hour": None if self.ex_none
            else float(self.ex) / (R * horizon) * 3600.0,
            "expected_collisions_per_hour_se": None if self.se_none
            else float(math.sqrt(self.var)) / (R * horizon) * 3600.0,
            "estimate": self.template.estimate,
            "first_collision_s": self.first,
            "peak_live_per_destination": self.peak,
            "analytic_collision_probability": a.collision_probability if a else None,
            "analytic_collisions_per_hour": a.collisions_per_hour if a else None,
            "analytic_form": a.form if a else None,
            "connect_delay_p50_s": pooled.connect_delay_p50_s,
            "connect_delay_p99_s": pooled.connect_delay_p99_s,
            "replicates": R, "horizon_s": horizon,
        })
        return row


def _pool(scenario: Scenario, results: list) -> dict:
    """One row from a point's replicate results (see _Pooled)."""
    pooled = _Pooled(scenario)
    for x in results:
        pooled.add(x)
    return pooled.row()


def relative_error(row: dict) -> float | None:
    """Relative standard error of a row's collision-rate estimate (None where the rate is zero)."""
    e, s = row.get("expected_collisions"), row.get("expected_collisions_se")
    if e is not None and s is not None and e > 0:
        return s / e
    c = row.get("collisions") or 0
    if e is not None and e == 0 and c == 0:
        return None if s == 0 else math.inf
    return 1.0 / math.sqrt(c) if c > 0 else math.inf


def _run_point(task: tuple) -> tuple[int, dict]:
    """Run one point (top level, so process pools and Dask can ship it)."""
    index, scenario, seed, replicates, backend, rel_error, max_conn, estimate = task
    t0 = time.perf_counter()
    if rel_error is None:
        row = _one_horizon(scenario, seed, replicates, backend, estimate)
    else:
        from ..analytic import is_zero
        rate = scenario.traffic.rate
        cap_h = max_conn / (rate * replicates)
        h = min(scenario.traffic.horizon, cap_h)
        while True:
            s = scenario if h == scenario.traffic.horizon else scenario.replace({"traffic.horizon": h})
            row = _one_horizon(s, seed, replicates, backend, estimate)
            rel = relative_error(row)
            if is_zero(s) or rel is None or rel <= rel_error or h >= cap_h:
                break
            grow = 16.0 if not math.isfinite(rel) else min(16.0, max(2.0, 1.2 * (rel / rel_error) ** 2))
            h = min(cap_h, float(h * grow))
    row["seed"] = seed
    rel = relative_error(row)
    row["rel_error"] = None if rel is None or not math.isfinite(rel) else rel
    row["elapsed_s"] = time.perf_counter() - t0
    return index, row


# -- output -------------------------------------------------------------------------------------------
def _fmt_csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v)
    return str(v)


def _parse_csv(text: str) -> Any:
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


#: Results files are read whole: beyond this size they are refused (a mistaken file, a device).
MAX_RESULTS_BYTES = 2 ** 30


def _out_format(path: Path, what: str = "--out") -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SweepError(f"{what} {path}: parquet needs pyarrow (pip install pyarrow); "
                             "or use .csv / .jsonl") from None
        return "parquet"
    raise SweepError(f"{what} {path}: unknown format {suffix or '(no extension)'}; "
                     "allowed: .csv, .jsonl, .parquet")


def _complete_lines(path: Path, what: str = "RESULTS") -> str:
    """The file's text up to its last newline (a line cut by a crash is dropped); bounded, UTF-8."""
    if not path.exists():
        return ""
    from ..errors import InputError
    from ..files import read_text
    try:
        text = read_text(path, what, MAX_RESULTS_BYTES)
    except InputError as exc:
        raise SweepError(str(exc)) from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return text


def _read_csv_text(text: str, what: str = "RESULTS", path="") -> list[dict]:
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return []
        if len(set(header)) != len(header) or any(not h for h in header):
            raise SweepError(f"{what} {path}, line 1: not a results header (empty or repeated "
                             "column names)")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise SweepError(f"{what} {path}, line {reader.line_num}: {len(row)} fields, the "
                                 f"header has {len(header)} (a damaged or foreign file?)")
            rows.append({k: _parse_csv(v) for k, v in zip(header, row)})
    except csv.Error as exc:
        raise SweepError(f"{what} {path}, line {reader.line_num}: not CSV ({exc})") from None
    return rows


def _read_jsonl_text(text: str, what: str = "RESULTS", path="") -> list[dict]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SweepError(f"{what} {path}, line {i}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise SweepError(f"{what} {path}, line {i}: a JSON {type(row).__name__}, expected one "
                             "object (a row) a line")
        rows.append(row)
    return rows


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".partial.jsonl")


def read_rows(path: str | Path, what: str = "RESULTS") -> list[dict]:
    """Rows of a sweep output (.csv, .jsonl, .parquet), values typed back (numbers, booleans, None).
    A damaged, foreign or unreadable file is a SweepError naming `what`, the file and the line."""
    path = Path(path)
    fmt = _out_format(path, what)
    if path.is_dir():
        raise SweepError(f"{what} {path}: is a directory, not a results file")
    if fmt == "csv":
        return _read_csv_text(_complete_lines(path, what), what, path)
    if fmt == "jsonl":
        return _read_jsonl_text(_complete_lines(path, what), what, path)
    rows = []
    if path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq
        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SweepError(f"{what} {path}: not a Parquet file ({first})") from None
    side = _sidecar(path)
    if side.exists():
        rows += _read_jsonl_text(_complete_lines(side, what), what, side)
    return rows


def exists(path) -> bool:
    """Whether `path` holds results (a non-empty file, or a parquet sweep's side file)."""
    path = Path(path)
    return (path.is_file() and path.stat().st_size > 0) or _sidecar(path).exists()


def digest_path(path) -> Path:
    """The file beside the results that records what defines their rows (`sweep_digest`)."""
    from ..files import resolved
    r = resolved(path)
    return r.with_name(f".{r.name}.sweep.json")


def sweep_digest(spec: SweepSpec) -> dict:
    """Everything that defines a sweep's rows: the resolved base (its lifetimes' content too), the
    overrides, the axes as given, replicates, seed, estimate, backend, the adaptive precision and
    the columns. `--resume` goes on only when this is what the results file was written with."""
    base = spec.base.to_dict()
    d = spec.base.traffic.duration
    if d.dist == "empirical":
        import hashlib
        base["traffic"]["duration"]["values_sha256"] = hashlib.sha256(
            np.asarray(d.values, dtype=np.float64).tobytes()).hexdigest()
    out = {"schema": 1, "base": base, "overrides": spec.overrides, "axes": spec.axis_specs,
           "zip": spec.zip_specs, "replicates": spec.replicates, "seed": spec.seed,
           "estimate": spec.estimate, "backend": spec.backend, "rel_error": spec.rel_error,
           "max_connections": spec.max_connections, "columns": spec.columns}
    return json.loads(json.dumps(out, default=_plain_json))


def _plain_json(v):
    v = _plain(v)
    if isinstance(v, (range, Sequence)) and not isinstance(v, str):
        return list(v)
    return str(v)


def _flat(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}." if not isinstance(v, dict) or v else prefix + k))
        return out
    return {prefix.rstrip("."): d}


def _digest_difference(old: dict, new: dict) -> str:
    """The first thing that differs, in words: `traffic.horizon 5 -> 10`."""
    a, b = _flat(old), _flat(new)
    none = object()

    def show(v):
        return "(none)" if v is none else _show(v)
    for key in list(b) + [k for k in a if k not in b]:
        if a.get(key, none) != b.get(key, none):
            name = key[5:] if key.startswith("base.") else key
            return f"{name} {show(a.get(key, none))} then, {show(b.get(key, none))} now"
    return "it differs"


def check_resume(spec: SweepSpec, out) -> None:
    """`--resume` of another sweep is refused before anything is said or run (the results file is
    not opened for writing): the digest beside it must be this sweep's."""
    _same_sweep(Path(out), sweep_digest(spec))


def _same_sweep(out: Path, new: dict) -> None:
    if not exists(out):
        return
    side = digest_path(out)
    try:
        old = json.loads(side.read_text("utf-8"))
    except FileNotFoundError:
        raise SweepError(f"--resume: {out} has no record of the sweep that wrote it ({side.name} "
                         "is missing), so it cannot be checked to be this sweep; use another "
                         "--out, or --overwrite (nothing was run)") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"--resume: {side}: unreadable ({exc}); use another --out, or "
                         "--overwrite (nothing was run)") from None
    if old != new:
        raise SweepError(f"--resume: {out} was written by another sweep "
                         f"({_digest_difference(old, new)}); use another --out, or --overwrite "
                         f"(nothing was run, {out.name} is as it was)")


class _Writer:
    """A sweep's results file, written so that no finished row is ever lost:

    - the lock (an flock on `<resolved folder>/.<name>.lock`) is held from the check to the end;
    - a new sweep writes its digest (`.<name>.sweep.json`, what defines the rows) and a file
      holding only the header, each renamed into place; `--resume` checks the digest, the header
      and every row (the caller) before it opens the file, and then only appends: a refused
      resume leaves the file byte for byte;
    - a last line cut by a crash is set aside into `<name>.cut`, not thrown away;
    - each row is appended and flushed as its point finishes (parquet: into a side file,
      converted at the end);
    - a sweep that completes sorts its rows into grid order, into a new file renamed into place.
    """

    def __init__(self, path: Path, columns: list[str], resume: bool, overwrite: bool = False,
                 lock=None, digest: dict | None = None):
        from ..files import OutputLock
        self.path, self.columns, self.fmt = path, columns, _out_format(path)
        self.existing: list[dict] = []
        self.order: list[int] = []
        self.fh = None
        self.resume, self.overwrite, self.digest = resume, overwrite, digest
        self.target = _sidecar(path) if self.fmt == "parquet" else path
        self.lock = lock or OutputLock(path, "--out")
        try:
            self._check()
        except BaseException:
            self.lock.release()
            raise

    def _check(self):
        path, columns = self.path, self.columns
        if exists(path) and not self.resume and not self.overwrite:
            raise SweepError(f"--out {path}: exists; give --resume to finish that sweep, or "
                             "--overwrite to replace it (nothing was run)")
        if not self.resume:
            return
        if self.digest is not None:
            _same_sweep(path, self.digest)
        self.existing = read_rows(path, "--resume: --out")
        if self.fmt == "csv" and path.exists():
            header = next(csv.reader(io.StringIO(_complete_lines(path, "--out"))), None)
            if header is not None and header != columns:
                raise SweepError(f"--resume: {path} has other columns than this sweep "
                                 f"(use another --out, or --overwrite)")

    def start(self, order: list[int]) -> None:
        """Open the file for appending (after the rows found were checked); `order`: the point
        index of each row found, in file order."""
        from ..files import os_error, write_file
        path = self.path
        self.order = list(order)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.resume or not exists(path)
            if fresh:
                if self.digest is not None:
                    write_file(digest_path(path), json.dumps(self.digest, indent=1) + "\n",
                               "--out")
                if self.fmt == "parquet":
                    path.unlink(missing_ok=True)
                    write_file(self.target, "", "--out")
                else:
                    head = io.StringIO()
                    if self.fmt == "csv":
                        csv.writer(head, lineterminator="\n").writerow(self.columns)
                    write_file(path, head.getvalue(), "--out")
            else:
                self._set_aside_cut_line()
            self.fh = open(self.target, "a", encoding="utf-8", newline="")
        except OSError as exc:
            raise os_error(exc, "--out", path, kept=self._kept()) from None

    def _kept(self) -> str:
        n = len(self.order)
        return (f"{n:,} finished row(s) are kept in {self.path}; run again with --resume"
                if n else "no row was written")

    def _set_aside_cut_line(self) -> None:
        """A last line without its newline (a crash mid-row) moves to `<name>.cut`; the rows
        before it are not touched."""
        target = self.target
        if not target.exists():
            return
        size = target.stat().st_size
        if size == 0:
            return
        with open(target, "rb") as fh:
            back = min(size, 1 << 20)
            fh.seek(size - back)
            tail = fh.read(back)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n") + 1
        keep = size - back + cut
        if cut == 0 and back < size:      # a "line" longer than a MiB: not ours to judge
            return
        aside = target.with_name(target.name + ".cut")
        with open(aside, "ab") as fh:
            fh.write(tail[cut:] + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.truncate(target, keep)

    def _csv(self):
        return csv.writer(self.fh, lineterminator="\n")

    def write(self, row: dict, index: int):
        from ..files import os_error
        at = self.fh.tell()
        try:
            if self.fmt == "csv":
                self._csv().writerow([_fmt_csv(row.get(c)) for c in self.columns])
            else:
                self.fh.write(json.dumps({c: row.get(c) for c in self.columns}) + "\n")
            self.fh.flush()
        except OSError as exc:           # no partial row: back to the last complete one
            try:
                self.fh.close()
            except OSError:
                pass
            self.fh = None
            try:
                os.truncate(self.target, at)
            except OSError:
                pass
            raise os_error(exc, "--out", self.path, kept=self._kept()) from None
        self.order.append(index)

    def close(self, complete: bool = False):
        """Flush and close; a complete sweep is left in grid order (parquet: converted)."""
        try:
            if self.fh is not None:
                try:
                    self.fh.flush()
                    os.fsync(self.fh.fileno())
                    self.fh.close()
                except OSError:
                    pass
                self.fh = None
                if self.fmt == "parquet":
                    self._to_parquet()
                elif complete:
                    self._sort()
        finally:
            self.lock.release()

    def _sorted_order(self) -> list[int] | None:
        order = self.order
        if all(a < b for a, b in zip(order, order[1:])):
            return None
        return sorted(range(len(order)), key=order.__getitem__)

    def _sort(self) -> None:
        """Rows into grid order: a new file beside, renamed into place (never rewritten in place).
        A file whose lines are not the rows counted (a blank line, a foreign edit) is left as is."""
        from ..errors import CollideError
        from ..files import atomic_file
        perm = self._sorted_order()
        if perm is None:
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        head = lines[:1] if self.fmt == "csv" else []
        body = lines[len(head):]
        if len(body) != len(self.order) or any(not line for line in body):
            return
        try:
            with atomic_file(self.path, "--out") as tmp:
                with open(tmp, "wb") as fh:
                    for line in head:
                        fh.write(line + b"\n")
                    for k in perm:
                        fh.write(body[k] + b"\n")
        except CollideError:             # no room for the sorted copy: the rows stay, unsorted
            pass

    def _to_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..files import atomic_file
        rows = read_rows(self.path, "--out")
        if len(rows) == len(self.order):
            perm = self._sorted_order()
            if perm is not None:
                rows = [rows[k] for k in perm]
        data = {c: [r.get(c) for r in rows] for c in self.columns}
        arrays = [pa.array(data[c], type=pa.uint64()) if c == "seed" else pa.array(data[c])
                  for c in self.columns]
        table = pa.Table.from_arrays(arrays, names=self.columns)
        with atomic_file(self.path, "--out") as tmp:
            pq.write_table(table, tmp)
        self.target.unlink(missing_ok=True)


# -- the result -----------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Rows in point order (replicates pooled); ``written`` were run now, ``skipped`` found by resume."""
    rows: list
    columns: list
    out: str | None = None
    written: int = 0
    skipped: int = 0
    total: int = 0
    interrupted: bool = False
    elapsed_s: float = 0.0

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.rows, columns=self.columns)

    def __len__(self):
        return len(self.rows)


# -- running --------------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


#: Grids up to this many points run their costliest points first; larger ones run in index order,
#: point by point, so that nothing is held for the points not yet run.
SORT_MAX = 100_000


def run_spec(spec: SweepSpec, executor=None, workers: int | None = None, out=None,
             resume: bool = False, progress: Callable[[int, int], None] | None = None,
             overwrite: bool = True, keep_rows: bool = True, lock=None) -> SweepResult:
    """Run a validated sweep. See :func:`sweep`. `overwrite=False` refuses an existing `out`
    (the command line's default); `keep_rows=False` returns no rows (they are in `out`), so memory
    does not grow with the number of points."""
    if progress is True:                 # a tqdm bar on a terminal or in a notebook
        from ..progress import count_bar
        update, close = count_bar("points", unit="point")
        try:
            return run_spec(spec, executor, workers, out, resume, update, overwrite, keep_rows, lock)
        finally:
            close()
    t0 = time.perf_counter()
    columns = spec.columns
    n = len(spec)
    done = bytearray(n)              # 1 where the point's row is written (or found by --resume)
    rows: dict[int, dict] = {}
    count = [0]
    writer = None
    if out is not None:
        out = Path(out)
        writer = _Writer(out, columns, resume, overwrite, lock, digest=sweep_digest(spec))
        try:
            order = []
            for row in writer.existing:
                i = spec.points.index_of(row) if isinstance(spec.points, _Points) else next(
                    (j for j, p in enumerate(spec.points)
                     if all(_same(row.get(k), v) for k, v in p.items())), None)
                if i is None or row.get("seed") != point_seed(spec.seed, i) or done[i]:
                    raise SweepError(f"--resume: {out} holds a row of another sweep (seed "
                                     f"{row.get('seed')}); use another --out, or --overwrite "
                                     f"(nothing was run, {out.name} is as it was)")
                done[i] = 1
                order.append(i)
                count[0] += 1
                if keep_rows:
                    rows[i] = {c: row.get(c) for c in columns}
            writer.existing = []
            writer.start(order)          # only now is the file opened, for appending
        except BaseException:
            writer.close()
            raise
    elif resume:
        raise SweepError("--resume needs --out FILE (the rows to skip are read from it)")
    skipped = count[0]
    todo_n = n - skipped

    def todo_indices():
        if n <= SORT_MAX:
            # the costliest points (most connections to simulate) go first, so no long point is
            # left for the end
            idx = [i for i in range(n) if not done[i]]
            idx.sort(key=lambda i: -spec.scenarios[i].traffic.rate * spec.scenarios[i].traffic.horizon)
            return iter(idx)
        return (i for i in range(n) if not done[i])

    def tasks():
        for i in todo_indices():
            yield (i, spec.scenarios[i], point_seed(spec.seed, i), spec.replicates, spec.backend,
                   spec.rel_error, spec.max_connections, spec.estimate)

    def finish(index: int, metrics: dict):
        row = dict(spec.points[index])
        row.update(metrics)
        row = {c: row.get(c) for c in columns}
        if writer is not None:
            writer.write(row, index)
        done[index] = 1
        count[0] += 1
        if keep_rows:
            rows[index] = row
        if progress is not None:
            progress(count[0], n)

    if progress is not None:
        progress(count[0], n)
    interrupted = False
    own = None
    ok = False
    try:
        if todo_n:
            if executor is None and (workers == 1 or todo_n == 1):
                for task in tasks():
                    try:
                        finish(*_run_point(task))
                    except _PointInterrupted:
                        raise KeyboardInterrupt from None
            else:
                if executor is None:
                    from ..pool import process_pool, width
                    workers = width(workers, todo_n)        # no process without a point
                    own = executor = process_pool(workers)
                _drive(executor, tasks(), finish, workers, todo_n)
        ok = True
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if own is not None:
            from ..pool import stop_pool
            stop_pool(own, interrupted=not ok)
        if writer is not None:
            writer.close(complete=ok and count[0] == n)
    result = SweepResult(rows=[rows[i] for i in sorted(rows)], columns=columns,
                         out=None if out is None else str(out),
                         written=count[0] - skipped, skipped=skipped, total=n,
                         interrupted=interrupted, elapsed_s=time.perf_counter() - t0)
    if interrupted:
        raise SweepInterrupted(result)
    return result


def _run_points(batch: list) -> list[tuple[int, dict]]:
    """Run a few points in one task: a point of a short run takes about as long as shipping it."""
    return [_run_point(task) for task in batch]


# Short points travel to the pool together: a point of a few milliseconds costs about as much to
# ship (a pickled Scenario out, a row back) as to run. A batch holds at most BATCH_MAX points and
# BATCH_CONNECTIONS simulated connections (about 40 ms of the engine), so an interruption abandons
# at most that much finished work per worker; costlier points, and points whose horizon grows to
# reach a relative error, travel alone.
BATCH_MAX = 8
BATCH_CONNECTIONS = 200_000


def _batches(tasks: list, width: int) -> list[list]:
    return list(_iter_batches(tasks, width, len(tasks)))


def _iter_batches(tasks: Iterable, width: int, count: int):
    """Batches of tasks, made as they are asked for (the tasks are a generator)."""
    size = max(1, min(BATCH_MAX, count // (8 * width)))    # >= 8 batches per worker
    batch, work = [], 0.0
    for task in tasks:
        scenario, replicates, rel_error = task[1], task[3], task[5]
        cost = scenario.traffic.rate * scenario.traffic.horizon * replicates
        if rel_error is not None or cost >= BATCH_CONNECTIONS:
            yield [task]
            continue
        batch.append(task)
        work += cost
        if len(batch) >= size or work >= BATCH_CONNECTIONS:
            yield batch
            batch, work = [], 0.0
    if batch:
        yield batch


def _drive(executor, tasks: Iterable, finish: Callable, workers: int | None, count: int):
    """Run tasks on an Executor (submit, bounded window, short points in small batches) or
    anything with imap_unordered / map (one point per task)."""
    if hasattr(executor, "submit"):
        width = workers or getattr(executor, "_max_workers", None) or 64
        window = max(8, 4 * int(width))
        pending: set = set()
        try:
            for batch in _iter_batches(tasks, int(width), count):
                pending.add(executor.submit(_run_points, batch))
                if len(pending) >= window:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        for index, metrics in f.result():
                            finish(index, metrics)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    for index, metrics in f.result():
                        finish(index, metrics)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    elif hasattr(executor, "imap_unordered"):
        for index, metrics in executor.imap_unordered(_run_point, tasks):
            finish(index, metrics)
    elif hasattr(executor, "map"):
        for index, metrics in executor.map(_run_point, tasks):
            finish(index, metrics)
    else:
        raise TypeError("executor: needs .submit (concurrent.futures.Executor), .imap_unordered or .map")


def sweep(base, axes: Mapping, overrides: Mapping | None = None, replicates: int = 1, seed: int = 0,
          executor=None, workers: int | None = None, out=None, resume: bool = False,
          rel_error: float | None = None, progress: Callable[[int, int], None] | None = None,
          zip: Mapping | None = None, backend: str = "cython",
          max_connections: int | None = None, overwrite: bool = True,
          estimate: str | None = None, force: bool = False) -> SweepResult:
    """Run `base` (a Scenario, dict, built-in name or TOML path) over the grid of `axes`.

    `axes`: dotted key -> list of values, or a ``{"linspace"|"logspace"|"range": [...]}`` helper;
    `zip`: keys that move together (one more axis, innermost). Every point is validated before any runs
    (:class:`SweepError` names the axis or the point).

    `executor`: any ``concurrent.futures.Executor`` (e.g. Dask's ``client.get_executor()``) or an object
    with ``imap_unordered``/``map`` (a Ray pool); default a local process pool with `workers` processes
    (all cores); ``workers=1`` runs inline. The grid is sized first (collide.sizing): more than
    memory or a day is refused unless `force`. `estimate`: "full", "target", "off" (None: the default). `out` (.csv, .jsonl, .parquet) gets each row as soon as its
    point finishes; `resume` skips points already there. `progress(done, total)` after each point,
    or `progress=True` for a progress bar (terminal or notebook).
    Ctrl-C raises :class:`SweepInterrupted` (a KeyboardInterrupt) carrying the finished rows.
    """
    spec = build_spec(base, axes, overrides=overrides, zip=zip, replicates=replicates, seed=seed,
                      rel_error=rel_error, max_connections=max_connections, backend=backend,
                      estimate=estimate)
    from ..sizing import check, size_sweep     # as the command line: a day or memory, else `force`
    check(size_sweep(spec, workers or 1), force)
    return run_spec(spec, executor=executor, workers=workers, out=out, resume=resume,
                    progress=progress, overwrite=overwrite)


def rows_of(source) -> list[dict]:
    """Rows from a SweepResult, a list of dicts, a pandas DataFrame or an output path."""
    if isinstance(source, SweepResult):
        return source.rows
    if isinstance(source, (str, Path)):
        return read_rows(source)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        return source.to_dict("records")
    return list(source)


# `collide.sweep` is the function, but importing this submodule binds the name `collide.sweep` to the
# module: make the module callable so both spellings work (`collide.sweep(...)`, `collide.sweep.sweep(...)`).
class _CallableModule(__import__("types").ModuleType):
    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
