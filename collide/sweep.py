"""Sweeps: a grid of scenarios run on any executor, one pooled row per point (DESIGN §4.5).

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

Determinism: point `i` runs with the seed ``SeedSequence(sweep_seed, spawn_key=(i,))`` (DESIGN §2.4), so
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
import io
import json
import dataclasses
import math
import os
import signal
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .scenario import ALIASES, Scenario, ScenarioError

__all__ = ["sweep", "SweepSpec", "SweepResult", "SweepError", "SweepInterrupted", "load_sweep",
           "expand_axis", "point_seed", "read_rows", "METRIC_COLUMNS", "TAIL_COLUMNS"]

#: The metrics of DESIGN §4.3, nested names joined by `_` (scenario, backend, schema_version left out).
METRIC_COLUMNS = (
    "connections", "established", "allocation_failures", "failed_connects", "collisions",
    "reset_victims", "time_wait_hits", "pairs", "collision_probability",
    "collision_probability_ci_low", "collision_probability_ci_high", "collisions_per_hour",
    "expected_collisions", "expected_collisions_se", "first_collision_s",
    "peak_live_per_destination", "analytic_collision_probability", "analytic_collisions_per_hour",
    "analytic_form", "delayed_connects", "pending_connects", "connect_delay_p50_s",
    "connect_delay_p99_s",
)
#: After the metrics: pooled replicates, the point's seed, the horizon each replicate measured, the
#: achieved relative error of the collision rate, wall time.
TAIL_COLUMNS = ("replicates", "seed", "horizon_s", "rel_error", "elapsed_s")

DEFAULT_MAX_CONNECTIONS = 100_000_000
SWEEP_KEYS = ("base", "seed", "replicates", "overrides", "axes", "zip", "rel_error",
              "max_connections", "backend")


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
def _helper_numbers(name: str, where: str, args: Any, counts: tuple[int, ...]) -> list:
    if not isinstance(args, list) or len(args) not in counts or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        want = " or ".join(str(c) for c in counts)
        raise SweepError(f"{where}: {{ {name} = {_show(args)} }}: must be a list of {want} numbers")
    return args


def expand_axis(where: str, spec: Any) -> list:
    """An axis's values: a list as is, or ``{linspace = [a, b, n]}``, ``{logspace = [a, b, n]}``
    (10**a .. 10**b, n values, as numpy), ``{range = [a, b]}`` / ``{range = [a, b, step]}`` (b excluded,
    as Python's range; integers stay integers)."""
    if isinstance(spec, (list, tuple)):
        values = list(spec)
    elif isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in ("linspace", "logspace", "range"):
            raise SweepError(f"{where} = {_show(spec)}: must be a list, or one of "
                             "{ linspace = [a, b, n] }, { logspace = [a, b, n] }, { range = [a, b, step] }")
        name, args = next(iter(spec.items()))
        if name in ("linspace", "logspace"):
            a, b, n = _helper_numbers(name, where, args, (3,))
            if isinstance(n, float) and n.is_integer():
                n = int(n)
            if not isinstance(n, int) or n < 1:
                raise SweepError(f"{where}: {{ {name} = {_show(args)} }}: the count must be an integer >= 1")
            fn = np.linspace if name == "linspace" else np.logspace
            values = [float(v) for v in fn(a, b, n)]
        else:
            args = _helper_numbers(name, where, args, (2, 3))
            a, b = args[0], args[1]
            step = args[2] if len(args) == 3 else 1
            if step == 0:
                raise SweepError(f"{where}: {{ range = {_show(args)} }}: the step must not be 0")
            if all(isinstance(x, int) for x in (a, b, step)):
                values = list(range(a, b, step))
            else:
                n = max(0, math.ceil((b - a) / step - 1e-9))
                values = [a + i * step for i in range(n)]
    else:
        raise SweepError(f"{where} = {_show(spec)}: must be a list of values or a "
                         "{ linspace | logspace | range = [...] } helper")
    if not values:
        raise SweepError(f"{where}: empty axis (give at least one value)")
    return values


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
        from .scenario import _did_you_mean, all_keys
        raise SweepError(f"{where}: unknown scenario key{_did_you_mean(dotted, all_keys())}") from None
    return dotted


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
    points: list = field(default_factory=list)       # list of {dotted key: value}
    scenarios: list = field(default_factory=list)    # Scenario per point

    @property
    def columns(self) -> list[str]:
        return list(self.axes) + list(METRIC_COLUMNS) + list(TAIL_COLUMNS)

    def __len__(self):
        return len(self.points)


def build_spec(base, axes: Mapping, overrides: Mapping | None = None, zip: Mapping | None = None,
               replicates: int = 1, seed: int = 0, rel_error: float | None = None,
               max_connections: int | None = None, backend: str = "cython") -> SweepSpec:
    """Expand and validate a sweep; every point's scenario is built here, so errors come up front."""
    try:
        base_s = Scenario.load(base)
    except ScenarioError as exc:
        raise SweepError(f"base: {exc}") from None
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
    from .engine import BACKENDS
    if backend not in BACKENDS:
        raise SweepError(f"backend = {_show(backend)}: must be one of {', '.join(BACKENDS)}")

    fixed = {}
    for key, value in (overrides or {}).items():
        fixed[_check_key(f"overrides.{key}", key, base_s)] = value
    if fixed:
        try:
            base_s = base_s.replace(fixed)
        except ScenarioError as exc:
            raise SweepError(f"overrides: {exc}") from None

    if not isinstance(axes, Mapping):
        raise SweepError(f"axes = {_show(axes)}: must be a table of key = values")
    grid: list[list[dict]] = []
    columns: dict = {}
    for key, spec in axes.items():
        dotted = _check_key(f"axes.{key}", key, base_s)
        if dotted in columns:
            raise SweepError(f"axes.{key}: the key {dotted} is given twice")
        values = expand_axis(f"axes.{key}", spec)
        columns[dotted] = values
        grid.append([{dotted: v} for v in values])
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
            lengths[dotted] = len(columns[dotted])
            zip_keys.append(dotted)
        if len(set(lengths.values())) > 1:
            raise SweepError("zip: the keys must have lists of one length; got "
                             + ", ".join(f"{k} {n}" for k, n in lengths.items()))
        n = next(iter(lengths.values()))
        grid.append([{k: columns[k][i] for k in zip_keys} for i in range(n)])
    if not columns:
        raise SweepError("axes: no axis given (add at least one key = [values] under [axes])")

    points, scenarios = [], []
    for index, combo in enumerate(product(*grid)):
        point = {}
        for part in combo:
            point.update(part)
        try:
            scenarios.append(base_s.replace(point))
        except ScenarioError as exc:
            where = ", ".join(f"{k}={_show(v)}" for k, v in point.items())
            raise SweepError(f"point {index} ({where}): {exc}") from None
        points.append(point)
    return SweepSpec(base=base_s, axes=columns, zip_keys=tuple(zip_keys), overrides=fixed,
                     replicates=replicates, seed=seed, rel_error=rel_error,
                     max_connections=max_connections, backend=backend, points=points,
                     scenarios=scenarios)


def load_sweep(path: str | Path, **overrides) -> SweepSpec:
    """Parse and validate a sweep file; keyword arguments (rel_error, backend...) take precedence."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML ({exc})") from None
    return spec_from_dict(data, root=path.parent, **overrides)


def spec_from_dict(data: Mapping, root: str | Path | None = None, **overrides) -> SweepSpec:
    for key in data:
        if key not in SWEEP_KEYS:
            from .scenario import _did_you_mean
            raise SweepError(f"{key}: unknown sweep key{_did_you_mean(key, SWEEP_KEYS)}; "
                             f"allowed: {', '.join(SWEEP_KEYS)}")
    base = data.get("base", "seed")
    if isinstance(base, str) and root is not None:
        from .scenario import builtin_names
        if base not in builtin_names() and not Path(base).is_absolute():
            candidate = Path(root) / base
            if candidate.exists() or not Path(base).exists():
                base = str(candidate)
    kw = {k: data[k] for k in ("seed", "replicates", "rel_error", "max_connections", "backend")
          if k in data}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if "axes" not in data and "zip" not in data:
        raise SweepError("axes: missing (add an [axes] table, e.g. \"traffic.rate\" = [100, 200])")
    return build_spec(base, data.get("axes", {}), overrides=data.get("overrides"),
                      zip=data.get("zip"), **kw)


def point_seed(sweep_seed: int, index: int) -> int:
    """DESIGN §2.4: the seed of point `index`, which `collide simulate --seed` takes as is."""
    ss = np.random.SeedSequence(sweep_seed, spawn_key=(index,))
    return int(ss.generate_state(1, np.uint64)[0])


# -- one point (runs in a worker) ---------------------------------------------------------------------
def _one_horizon(scenario: Scenario, seed: int, replicates: int, backend: str) -> dict:
    from . import engine
    from .api import _result
    results = []
    for r in range(replicates):
        bitgen = engine.bit_generator(seed) if replicates == 1 else engine.bit_generator(seed, r, replicates)
        raw = engine.run(scenario, bitgen, backend, None)
        if not raw.finished:
            raise _PointInterrupted()
        results.append(_result(scenario, seed, backend, raw))
    return _pool(scenario, results)


def _pool(scenario: Scenario, results: list) -> dict:
    from .analytic import analytic
    from .stats import wilson
    R = len(results)
    total = {k: sum(getattr(x, k) for x in results)
             for k in ("connections", "established", "allocation_failures", "failed_connects",
                       "collisions", "reset_victims", "time_wait_hits", "pairs", "delayed_connects",
                       "pending_connects")}
    # connect delays take only the SYN schedule's values: pool the histograms, then the quantiles
    hist: dict = {}
    for x in results:
        for delay, count in x.connect_delay_histogram:
            hist[delay] = hist.get(delay, 0) + count
    pooled = dataclasses.replace(results[0], connect_delay_histogram=tuple(sorted(hist.items())))
    ex = [x.expected_collisions for x in results]
    se = [x.expected_collisions_se for x in results]
    conn, coll = total["connections"], total["collisions"]
    lo, hi = wilson(coll, conn)
    horizon = scenario.traffic.horizon
    a = analytic(scenario)
    row = dict(total)
    row.update({
        "collision_probability": coll / conn if conn else 0.0,
        "collision_probability_ci_low": lo, "collision_probability_ci_high": hi,
        "collisions_per_hour": coll / (R * horizon) * 3600.0,
        "expected_collisions": None if any(e is None for e in ex) else float(sum(ex)),
        "expected_collisions_se": None if any(s is None for s in se)
        else float(math.sqrt(sum(s * s for s in se))),
        "first_collision_s": results[0].first_collision_s,
        "peak_live_per_destination": max(x.peak_live_per_destination for x in results),
        "analytic_collision_probability": a.collision_probability if a else None,
        "analytic_collisions_per_hour": a.collisions_per_hour if a else None,
        "analytic_form": a.form if a else None,
        "connect_delay_p50_s": pooled.connect_delay_p50_s,
        "connect_delay_p99_s": pooled.connect_delay_p99_s,
        "replicates": R, "horizon_s": horizon,
    })
    return row


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
    index, scenario, seed, replicates, backend, rel_error, max_conn = task
    t0 = time.perf_counter()
    if rel_error is None:
        row = _one_horizon(scenario, seed, replicates, backend)
    else:
        from .analytic import is_zero
        rate = scenario.traffic.rate
        cap_h = max_conn / (rate * replicates)
        h = min(scenario.traffic.horizon, cap_h)
        while True:
            s = scenario if h == scenario.traffic.horizon else scenario.replace({"traffic.horizon": h})
            row = _one_horizon(s, seed, replicates, backend)
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


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def _out_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SweepError(f"--out {path}: parquet needs pyarrow (pip install pyarrow); "
                             "or write .csv / .jsonl") from None
        return "parquet"
    raise SweepError(f"--out {path}: unknown format {suffix or '(no extension)'}; "
                     "allowed: .csv, .jsonl, .parquet")


def _complete_lines(path: Path) -> str:
    """The file's text up to its last newline (a line cut by a crash is dropped)."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return text


def _read_csv_text(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    return [{k: _parse_csv(v) for k, v in row.items()} for row in reader]


def _read_jsonl_text(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".partial.jsonl")


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a sweep output (.csv, .jsonl, .parquet), values typed back (numbers, booleans, None)."""
    path = Path(path)
    fmt = _out_format(path)
    if fmt == "csv":
        return _read_csv_text(_complete_lines(path))
    if fmt == "jsonl":
        return _read_jsonl_text(_complete_lines(path))
    rows = []
    if path.exists():
        import pyarrow.parquet as pq
        rows = pq.read_table(path).to_pylist()
    side = _sidecar(path)
    if side.exists():
        rows += _read_jsonl_text(_complete_lines(side))
    return rows


class _Writer:
    """Appends each finished row at once and flushes (parquet: to a side file, converted at the end)."""

    def __init__(self, path: Path, columns: list[str], resume: bool):
        self.path, self.columns, self.fmt = path, columns, _out_format(path)
        self.existing: list[dict] = []
        if resume:
            try:
                self.existing = read_rows(path)
            except Exception as exc:   # a file we cannot read is not one we wrote
                raise SweepError(f"--resume: cannot read {path} ({exc})") from None
            if self.fmt == "csv" and path.exists():
                header = next(csv.reader(io.StringIO(_complete_lines(path))), None)
                if header is not None and header != columns:
                    raise SweepError(f"--resume: {path} has other columns than this sweep "
                                     f"(use another --out, or remove the file)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.target = _sidecar(path) if self.fmt == "parquet" else path
        if self.fmt == "parquet":
            if not resume and path.exists():
                path.unlink()
            text = _complete_lines(self.target) if resume else ""
        else:
            text = _complete_lines(path) if resume else ""
        self.fh = open(self.target, "w", encoding="utf-8", newline="")
        self.fh.write(text)
        if self.fmt == "csv" and not text:
            self._csv().writerow(columns)
        self.fh.flush()

    def _csv(self):
        return csv.writer(self.fh, lineterminator="\n")

    def write(self, row: dict):
        if self.fmt == "csv":
            self._csv().writerow([_fmt_csv(row.get(c)) for c in self.columns])
        else:
            self.fh.write(json.dumps({c: row.get(c) for c in self.columns}) + "\n")
        self.fh.flush()

    def close(self):
        self.fh.close()
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            rows = read_rows(self.path)
            data = {c: [r.get(c) for r in rows] for c in self.columns}
            arrays = [pa.array(data[c], type=pa.uint64()) if c == "seed" else pa.array(data[c])
                      for c in self.columns]
            table = pa.Table.from_arrays(arrays, names=self.columns)
            tmp = self.path.with_name(self.path.name + ".tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, self.path)
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


def run_spec(spec: SweepSpec, executor=None, workers: int | None = None, out=None,
             resume: bool = False, progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run a validated sweep. See :func:`sweep`."""
    t0 = time.perf_counter()
    columns = spec.columns
    n = len(spec)
    seeds = [point_seed(spec.seed, i) for i in range(n)]
    done: dict[int, dict] = {}
    writer = None
    if out is not None:
        out = Path(out)
        writer = _Writer(out, columns, resume)
        by_seed = {s: i for i, s in enumerate(seeds)}
        for row in writer.existing:
            i = by_seed.get(row.get("seed"))
            if i is None or not all(_same(row.get(k), v) for k, v in spec.points[i].items()):
                writer.fh.close()
                raise SweepError(f"--resume: {out} holds a row of another sweep (seed {row.get('seed')}); "
                                 "use another --out, or remove the file")
            done[i] = {c: row.get(c) for c in columns}
    elif resume:
        raise SweepError("--resume needs --out FILE (the rows to skip are read from it)")
    skipped = len(done)
    todo = [i for i in range(n) if i not in done]
    # the costliest points (most connections to simulate) go first, so no long point is left for the end
    todo.sort(key=lambda i: -spec.scenarios[i].traffic.rate * spec.scenarios[i].traffic.horizon)
    tasks = [(i, spec.scenarios[i], seeds[i], spec.replicates, spec.backend, spec.rel_error,
              spec.max_connections) for i in todo]

    def finish(index: int, metrics: dict):
        row = dict(spec.points[index])
        row.update(metrics)
        row = {c: row.get(c) for c in columns}
        done[index] = row
        if writer is not None:
            writer.write(row)
        if progress is not None:
            progress(len(done), n)

    if progress is not None:
        progress(len(done), n)
    interrupted = False
    own = None
    try:
        if tasks:
            if executor is None and (workers == 1 or len(tasks) == 1):
                for task in tasks:
                    try:
                        finish(*_run_point(task))
                    except _PointInterrupted:
                        raise KeyboardInterrupt from None
            else:
                if executor is None:
                    from concurrent.futures import ProcessPoolExecutor
                    own = executor = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                                         initializer=_ignore_sigint)
                _drive(executor, tasks, finish, workers)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if own is not None:
            _stop_pool(own, interrupted)
        if writer is not None:
            writer.close()
    rows = [done[i] for i in sorted(done)]
    result = SweepResult(rows=rows, columns=columns, out=None if out is None else str(out),
                         written=len(done) - skipped, skipped=skipped, total=n,
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
    size = max(1, min(BATCH_MAX, len(tasks) // (8 * width)))    # >= 8 batches per worker
    out, batch, work = [], [], 0.0
    for task in tasks:
        scenario, replicates, rel_error = task[1], task[3], task[5]
        cost = scenario.traffic.rate * scenario.traffic.horizon * replicates
        if rel_error is not None or cost >= BATCH_CONNECTIONS:
            out.append([task])
            continue
        batch.append(task)
        work += cost
        if len(batch) >= size or work >= BATCH_CONNECTIONS:
            out.append(batch)
            batch, work = [], 0.0
    if batch:
        out.append(batch)
    return out


def _drive(executor, tasks: list, finish: Callable, workers: int | None):
    """Run tasks on an Executor (submit, bounded window, short points in small batches) or
    anything with imap_unordered / map (one point per task)."""
    if hasattr(executor, "submit"):
        width = workers or getattr(executor, "_max_workers", None) or 64
        window = max(8, 4 * int(width))
        batches = _batches(tasks, int(width))
        pending: set = set()
        try:
            for batch in batches:
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


def _stop_pool(pool, interrupted: bool):
    if not interrupted:
        pool.shutdown(wait=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:        # running points are abandoned: their rows were never written
        try:
            p.terminate()
        except Exception:
            pass
    for p in procs:
        try:
            p.join(timeout=5)
        except Exception:
            pass


def sweep(base, axes: Mapping, overrides: Mapping | None = None, replicates: int = 1, seed: int = 0,
          executor=None, workers: int | None = None, out=None, resume: bool = False,
          rel_error: float | None = None, progress: Callable[[int, int], None] | None = None,
          zip: Mapping | None = None, backend: str = "cython",
          max_connections: int | None = None) -> SweepResult:
    """Run `base` (a Scenario, dict, built-in name or TOML path) over the grid of `axes`.

    `axes`: dotted key -> list of values, or a ``{"linspace"|"logspace"|"range": [...]}`` helper;
    `zip`: keys that move together (one more axis, innermost). Every point is validated before any runs
    (:class:`SweepError` names the axis or the point).

    `executor`: any ``concurrent.futures.Executor`` (e.g. Dask's ``client.get_executor()``) or an object
    with ``imap_unordered``/``map`` (a Ray pool); default a local process pool with `workers` processes
    (all cores); ``workers=1`` runs inline. `out` (.csv, .jsonl, .parquet) gets each row as soon as its
    point finishes; `resume` skips points already there. `progress(done, total)` after each point.
    Ctrl-C raises :class:`SweepInterrupted` (a KeyboardInterrupt) carrying the finished rows.
    """
    spec = build_spec(base, axes, overrides=overrides, zip=zip, replicates=replicates, seed=seed,
                      rel_error=rel_error, max_connections=max_connections, backend=backend)
    return run_spec(spec, executor=executor, workers=workers, out=out, resume=resume,
                    progress=progress)


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
