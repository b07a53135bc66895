"""The size model against measured times (issue 22): each class of cost the model covers, run for
real, its estimate beside it. The model must hold within 3x either way; this is a bench, not a
test (timings on a shared machine), run as

    python bench/sizing.py                      # prints the table, writes bench/results/sizing.csv
    python bench/sizing.py exhaustion-overload  # some cases only
    pytest bench/test_bench_sizing.py           # the same, asserting 1/3 <= measured/estimate <= 3

Each case is a (what, how to run it, its size) triple built on the Python API; the estimate is the
one the command line prints and checks (`collide.sizing`), for cython on one process.
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

import collide
from collide.scenario import Scenario
from collide.sizing import size_first_reset, size_runs, size_sweep

HERE = Path(__file__).parent


def _seed(**changes):
    return Scenario.builtin("seed").replace(changes)


def _exh(**changes):
    return Scenario.builtin("exhaustion").replace(changes)


def _simulate(s, **kw):
    def run():
        collide.simulate(s, seed=1, force=True, **kw)
    runs = kw.get("replicates", 1)
    return run, size_runs("simulate", s, runs=runs, backend=kw.get("backend", "cython"),
                          estimate=kw.get("estimate"))


def _lifetimes_file(n: int) -> str:
    import tempfile
    path = Path(tempfile.gettempdir()) / f"collide-bench-lifetimes-{n}.txt"     # made once
    if not path.exists():
        rng = np.random.default_rng(1)
        path.write_text("\n".join(f"{x:.4f}" for x in rng.lognormal(1.0, 1.2, n) + 0.01) + "\n")
    return str(path)


def _empirical(n: int, **changes):
    return _seed(**{"traffic.duration": {"dist": "empirical", "file": _lifetimes_file(n)}},
                 **changes)


def _sweep():
    spec = collide.sweep.build_spec("seed", {"traffic.rate": {"linspace": [100, 2000, 24]}},
                                    overrides={"traffic.horizon": 300}, seed=1)

    def run():
        collide.sweep.run_spec(spec, workers=1)
    return run, size_sweep(spec, 1)


def _first_reset(s, replicates):
    def run():
        collide.first_reset(s, replicates=replicates, seed=1, force=True)
    return run, size_first_reset(s, replicates)


#: name -> (class of cost, a function giving (run, size))
CASES = {
    "seed": ("base", lambda: _simulate(_seed())),
    "seed-long": ("base", lambda: _simulate(_seed(**{"traffic.horizon": 20000}))),
    "quiet-lognormal": ("base", lambda: _simulate(Scenario.builtin("quiet").replace(
        {"traffic.horizon": 36000}))),
    "estimate-target": ("base", lambda: _simulate(_seed(**{"traffic.horizon": 20000}),
                                                  estimate="target")),
    "estimate-off": ("base", lambda: _simulate(_seed(**{"traffic.horizon": 20000}),
                                               estimate="off")),
    "cold-warmup": ("base", lambda: _simulate(_seed(**{"traffic.warmup": 3000,
                                                       "traffic.horizon": 10000}))),
    "schedule": ("base", lambda: _simulate(_seed(**{"traffic.horizon": 10000, "traffic.schedule":
                                                    [[0, 200], [3000, 2000], [6000, 500]]}))),
    "many-ips-targets": ("base", lambda: _simulate(_seed(**{"nat.ips": 8, "traffic.rate": 2000,
                                                            "load_balancer.targets": 600,
                                                            "traffic.horizon": 2000}))),
    "exhaustion": ("exhaustion", lambda: _simulate(_exh())),
    "exhaustion-near": ("exhaustion", lambda: _simulate(_exh(**{"traffic.rate": 18150,
                                                                "traffic.horizon": 30}))),
    "exhaustion-overload": ("exhaustion", lambda: _simulate(_exh(**{"traffic.rate": 25000,
                                                                    "traffic.horizon": 10}))),
    "exhaustion-limit": ("exhaustion", lambda: _simulate(_seed(**{
        "nat.per_destination_limit": 2000, "traffic.rate": 2000, "traffic.horizon": 60}))),
    "long-lived": ("exhaustion", lambda: _simulate(_seed(**{"traffic.rate": 60,
                                                            "traffic.duration.mean": 3600,
                                                            "traffic.horizon": 60}))),
    "time-wait-burn-in": ("burn-in", lambda: _simulate(_seed(**{
        "target.server_close_fraction": 1.0, "target.time_wait": 10000, "traffic.horizon": 60}))),
    "time-wait-half": ("burn-in", lambda: _simulate(_seed(**{
        "target.server_close_fraction": 0.5, "target.time_wait": 3000, "traffic.horizon": 600}))),
    "reuse-delay": ("burn-in", lambda: _simulate(_seed(**{"nat.reuse_delay": 100,
                                                          "traffic.horizon": 600}))),
    "reuse-delay-exhausts": ("burn-in", lambda: _simulate(_seed(**{"nat.reuse_delay": 1000,
                                                                   "traffic.horizon": 60}))),
    "empirical-small": ("empirical", lambda: _simulate(_seed(**{"traffic.duration": {
        "dist": "empirical", "file": str(Path(collide.__file__).parent / "scenarios" /
                                         "lifetimes-example.csv"), "column": "duration_s"},
        "traffic.horizon": 20000}))),
    "empirical-1e6": ("empirical", lambda: _simulate(_empirical(1_000_000,
                                                                **{"traffic.horizon": 20000}))),
    "scan-prediction-ips": ("scan", lambda: _simulate(_seed(**{"nat.ips": 100,
                                                               "traffic.horizon": 600}))),
    "sweep-lazy-axis": ("sweep", _sweep),
    "first-reset": ("first-reset", lambda: _first_reset(_seed(), 100)),
    "replicates": ("replicates", lambda: _simulate(_seed(**{"traffic.horizon": 5000}),
                                                   replicates=4)),
    "python-backend": ("backend", lambda: _simulate(_seed(**{"traffic.horizon": 100}),
                                                    backend="python")),
}


def measure(names=None) -> list[dict]:
    rows = []
    for name in names or CASES:
        kind, make = CASES[name]
        run, size = make()
        t0 = time.perf_counter()
        run()
        took = time.perf_counter() - t0
        rows.append({"case": name, "class": kind, "estimate_s": round(size.wall_s, 3),
                     "measured_s": round(took, 3), "ratio": round(took / size.wall_s, 3)})
        print(f"{name:24s} {kind:12s} estimate {size.wall_s:8.2f} s  measured {took:8.2f} s  "
              f"measured/estimate {took / size.wall_s:5.2f}", flush=True)
    return rows


def main(argv):
    rows = measure(argv or None)
    if not argv:
        out = HERE / "results" / "sizing.csv"
        with open(out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {out}")
    worst = max(max(r["ratio"], 1 / r["ratio"]) for r in rows)
    print(f"{len(rows)} cases, classes {sorted({r['class'] for r in rows})}; worst factor "
          f"{worst:.2f} (the model must hold within 3)")


if __name__ == "__main__":
    main(sys.argv[1:])
