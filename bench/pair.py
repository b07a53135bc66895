"""One scenario's engine rate against C kernels, run in turn: a quick paired ratio without the
whole suite (the suite's figures are the reference; this is for checking a change).

    cc -O2 -ffp-contract=off -o /tmp/kernels bench/kernels.c -lm
    python bench/pair.py everything 10000 off cython /tmp/kernels:everything [/tmp/ref:every_h] [--runs 3]

Each run: every C kernel once (2e7 arrivals, seed = run), then the engine on the bench scenario
(kernel time). Prints the rates and the median over runs of engine / C per kernel. A C file named
with "lazy" in its path takes the reference's command line (NAME ARRIVALS RUNS SEED).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import collide  # noqa: E402
from conftest import scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("horizon", type=float)
    ap.add_argument("estimate", choices=["off", "target", "full"])
    ap.add_argument("backend", choices=["cython", "numba", "python"])
    ap.add_argument("kernels", nargs="+", help="EXE:NAME of each C kernel")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    s = scenario(a.scenario, a.horizon)
    collide.simulate(scenario(a.scenario, 1.0), seed=1, estimate=a.estimate, backend=a.backend)
    engine, c = [], {k: [] for k in a.kernels}
    for i in range(a.runs):
        for k in a.kernels:
            exe, name = k.split(":")
            args = [exe, name, "20000000"] + (["1", str(i + 1)] if "lazy" in exe else [str(i + 1)])
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            c[k].append(json.loads(out.splitlines()[0])["rate"])
        r = collide.simulate(s, seed=i + 1, estimate=a.estimate, backend=a.backend)
        engine.append(r.connections / r.kernel_s)
    print(f"engine {a.scenario} {a.estimate} {a.backend}: "
          f"{[round(x / 1e6, 2) for x in engine]} M conn/s")
    for k, rates in c.items():
        ratio = statistics.median(e / x for e, x in zip(engine, rates))
        print(f"{k}: {[round(x / 1e6, 2) for x in rates]} M conn/s; engine / this, median of "
              f"pairs: {ratio:.3f}")


if __name__ == "__main__":
    main()
