"""The check of docs/solve.md: 20 scenarios without a closed form, each solved, then simulated again
at the solved value with another seed; records the table and how many meet the budget within the
combined interval. Also times the two capacity-planning questions of issue 23.

    python bench/solve_check.py            # the 20-scenario table (several minutes on 2 cores)
    python bench/solve_check.py questions  # the two questions, three runs each (wall clock)

Each writes its record to docs/data/ (solve-check.json, solve-questions.json), the source of
docs/solve.md's tables (`python docs/generate.py`).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    ("1 (every lever and switch)",
     "collide solve --scenario seed --rate 2000 --duration 30 --max-resets 1/week --seed 1"),
    ("2 (one lever)", "collide solve --scenario seed --max-resets 1/hour --for traffic.rate --seed 1"),
]


def _measured() -> str:
    return (f"{datetime.date.today().isoformat()}, {platform.system()} {platform.release()}, "
            f"{os.cpu_count()} cores shared with other work")


def _write(name: str, record: dict) -> Path:
    path = ROOT / "docs" / "data" / f"{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def table():
    from tests.test_solve import NON_ANALYTIC, resimulate
    rows, inside, misses = [], 0, []
    for case in NON_ANALYTIC:
        t0 = time.perf_counter()
        r = resimulate(case)
        inside += r["inside"]
        if not r["inside"]:
            misses.append(f"z = {r['z']:+.2f}")
        rows.append({"name": r["name"], "key": r["key"], "budget": r["budget"],
                     "value": r["value"], "interval": list(r["interval"]),
                     "again": r["resets_per_hour"], "again_interval": list(r["rate_interval"]),
                     "z": r["z"], "within": "yes" if r["inside"] else "no",
                     "seconds": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    n = len(NON_ANALYTIC)
    notes = [f"{inside} of {n} meet the budget within the combined interval"
             + (f" (the misses: {', '.join(misses)})" if misses else "")
             + ". Values are conn/s for the rate and seconds for the lifetime."]
    path = _write("solve-check", {
        "command": "python bench/solve_check.py", "measured": _measured(),
        "columns": [["name", "scenario (seed + …)"], ["key", "lever"], ["budget", "budget"],
                    ["value", "solved value", ".4g"], ["interval", "95 % interval", ".4g"],
                    ["again", "simulated again (seed 99)", ".4g"], ["again_interval", "95 %", ".4g"],
                    ["z", "z", "+.2f"], ["within", "within"], ["seconds", "s", ".0f"]],
        "rows": rows, "notes": notes, "inside": inside, "cases": n})
    print(f"{notes[0]}\nwrote {path}")


def questions(runs: int = 3):
    rows = []
    for name, cmd in QUESTIONS:
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            out = subprocess.run(cmd.split(), capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if out.returncode:
                sys.exit(f"{cmd}: exit {out.returncode}\n{out.stderr}")
        print(f"$ {cmd}\n{out.stdout}wall {', '.join(f'{w:.1f}' for w in walls)} s\n", flush=True)
        rows.append({"question": name, "command": cmd,
                     "walls": ", ".join(f"{w:.1f} s" for w in sorted(walls)),
                     "median": sorted(walls)[len(walls) // 2]})
    path = _write("solve-questions", {
        "command": "python bench/solve_check.py questions", "measured": _measured(),
        "columns": [["question", "question"], ["walls", f"wall time ({runs} runs)"],
                    ["median", "median (s)", ".1f"]],
        "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    questions() if sys.argv[1:] == ["questions"] else table()
