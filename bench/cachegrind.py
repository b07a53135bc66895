"""Instructions and cache misses per simulated connection, from cachegrind (repeatable where wall
time is not: on a shared VM the same run moves by ±30 % from minute to minute).

    python bench/cachegrind.py base lognormal --backend cython --horizons 100 300 [--estimate full]
    python bench/cachegrind.py lognormal --l2 524288 --branches    # this VM's L2; mispredictions

Each scenario of `bench/conftest.py` runs under `valgrind --tool=cachegrind` at two horizons; the
difference divided by the difference in connections is the marginal cost of one connection
(start-up, imports and the stationary placement cancel out). The last-level cache is simulated
at 1 MB by default (`--l2`; `lscpu` reports 1 MiB for 2 instances, 512 KB per core, which the
fourth session's figures use), so "LL misses" are what leaves L2. `--branches` adds cachegrind's
branch simulation: a simple predictor, trustworthy where the outcome is data (a heap's compares),
pessimistic for loop patterns a real CPU's history-based predictor learns. Needs valgrind; the numba
backend must be compiled (cached) before, or the compile runs under valgrind for many minutes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import sys
sys.path.insert(0, {here!r})
import collide
from conftest import scenario
name, horizon, backend, est = {name!r}, {horizon!r}, {backend!r}, {estimate!r}
collide.simulate(scenario(name, 1.0), seed=1, backend=backend, estimate=est)   # load, compile
r = collide.simulate(scenario(name, horizon), seed=1, backend=backend, estimate=est)
print("CONNECTIONS", r.connections)
"""


def _totals(path: str) -> tuple[int, int, int, int]:
    """(instructions, D1 misses, LL misses, mispredicted branches) of the whole program from a
    cachegrind out file (0 mispredictions without branch simulation)."""
    events = summary = None
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(x) for x in line.split()[1:]]
    v = dict(zip(events, summary))
    return (v["Ir"], v.get("D1mr", 0) + v.get("D1mw", 0), v.get("DLmr", 0) + v.get("DLmw", 0),
            v.get("Bcm", 0) + v.get("Bim", 0))


def measure(name: str, horizon: float, backend: str, estimate: str = "off", l2: int = 1048576,
            branches: bool = False) -> tuple[int, tuple[int, int, int, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--LL={l2},16,64",
               f"--branch-sim={'yes' if branches else 'no'}",
               f"--cachegrind-out-file={out}", sys.executable, "-c",
               CHILD.format(here=str(HERE), name=name, horizon=horizon, backend=backend,
                            estimate=estimate)]
        # a fixed hash seed: Python's start-up differs with it, and that would not cancel out
        env = dict(os.environ, PYTHONHASHSEED="0")
        # run in the temporary directory: from the checkout, `python -c` would import the
        # package's source tree (no compiled core) instead of the installed build
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=tmp)
        n = int(re.search(r"CONNECTIONS (\d+)", res.stdout).group(1))
        return n, _totals(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="+", help="names from bench/conftest.py SCENARIOS")
    ap.add_argument("--backend", default="cython", choices=["cython", "numba"])
    ap.add_argument("--horizons", nargs=2, type=float, default=[100.0, 300.0],
                    metavar=("SHORT", "LONG"))
    ap.add_argument("--estimate", default="off", choices=["off", "target", "full"],
                    help="the conditional estimate kept (default off)")
    ap.add_argument("--l2", type=int, default=1048576, help="simulated last-level cache, bytes")
    ap.add_argument("--branches", action="store_true", help="simulate branch prediction too")
    args = ap.parse_args(argv)
    if args.l2 < 65536 or args.l2 & (args.l2 - 1):
        print(f"--l2 {args.l2}: must be a power of two of at least 65536 bytes", file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    print(f"{'scenario':<12}{'backend':<9}{'Ir/conn':>10}{'D1 miss/conn':>14}{'LL miss/conn':>14}"
          + (f"{'Bmiss/conn':>12}" if args.branches else ""))
    for name in args.scenarios:
        n1, a = measure(name, args.horizons[0], args.backend, args.estimate, args.l2, args.branches)
        n2, b = measure(name, args.horizons[1], args.backend, args.estimate, args.l2, args.branches)
        per = [(y - x) / (n2 - n1) for x, y in zip(a, b)]
        print(f"{name:<12}{args.backend:<9}{per[0]:>10.0f}{per[1]:>14.2f}{per[2]:>14.2f}"
              + (f"{per[3]:>12.2f}" if args.branches else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
