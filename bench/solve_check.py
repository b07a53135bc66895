"""The check of docs/solve.md: 20 scenarios without a closed form, each solved, then simulated again
at the solved value with another seed; prints the table (markdown) and how many meet the budget
within the combined interval. Also times the two capacity-planning questions of issue 23.

    python bench/solve_check.py            # the 20-scenario table (several minutes on 2 cores)
    python bench/solve_check.py questions  # the two questions, timed (wall clock, this machine)
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = [
    "collide solve --scenario seed --rate 2000 --duration 30 --max-resets 1/week --seed 1",
    "collide solve --scenario seed --max-resets 1/hour --for traffic.rate --seed 1",
]


def table():
    from tests.test_solve import NON_ANALYTIC, resimulate
    print("| scenario (seed + ...) | lever | budget | solved value | 95 % interval | simulated again "
          "(seed 99) | 95 % | z | within | s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---:|")
    inside = 0
    for case in NON_ANALYTIC:
        t0 = time.perf_counter()
        r = resimulate(case)
        inside += r["inside"]
        lo, hi = r["interval"]
        rlo, rhi = r["rate_interval"]
        print(f"| {r['name']} | {r['key']} | {r['budget']} | {r['value']:.4g} | {lo:.4g} – {hi:.4g} "
              f"| {r['resets_per_hour']:.4g} | {rlo:.4g} – {rhi:.4g} | {r['z']:+.2f} | "
              f"{'yes' if r['inside'] else 'no'} | {time.perf_counter() - t0:.0f} |", flush=True)
    print(f"\n{inside} of {len(NON_ANALYTIC)} meet the budget within the combined interval")


def questions():
    for cmd in QUESTIONS:
        t0 = time.perf_counter()
        out = subprocess.run(cmd.split(), capture_output=True, text=True)
        print(f"$ {cmd}\n{out.stdout}{out.stderr}wall {time.perf_counter() - t0:.1f} s\n",
              flush=True)


if __name__ == "__main__":
    questions() if sys.argv[1:] == ["questions"] else table()
