"""The 1,000-point sweep of docs/sweeps.md ("Measured"), run four ways in one sitting: one worker, two
workers, a Dask cluster of two worker processes, and Ctrl-C half-way then --resume. Each run's wall
time and CPU time (the sweep and its workers), and whether its rows equal the one-worker run's
(every column but elapsed_s, rows matched by seed).

    python bench/sweep_runs.py [--toml examples/sweep-seed.toml]

Writes docs/data/sweep-runs.json, the source of docs/sweeps.md's table (`python docs/generate.py`).
A few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rows(path: Path) -> list[dict]:
    from collide.studies.sweep import read_rows
    return sorted(({k: v for k, v in r.items() if k != "elapsed_s"} for r in read_rows(path)),
                  key=lambda r: r["seed"])


def _run(args: list[str], cwd: Path) -> tuple[float, float, int]:
    c0, t0 = _cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "collide.cli", *args], cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"collide {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return time.perf_counter() - t0, _cpu() - c0, p.returncode


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return max(sum(1 for _ in f) - 1, 0)
    except FileNotFoundError:
        return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--toml", default="examples/sweep-seed.toml")
    a = ap.parse_args(argv)
    toml = (ROOT / a.toml).resolve()
    shown = a.toml
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        base = ["sweep", str(toml)]

        def record(run, command, wall, cpu, out, ref):
            got = _rows(out)
            rows.append({"run": run, "command": command, "wall": wall, "cpu": cpu, "rows": len(got),
                         "same": "—" if ref is None else ("identical" if got == ref else "DIFFERENT")})
            print(rows[-1], flush=True)
            return got

        w, c, _ = _run(base + ["--out", "w1.csv", "--workers", "1"], d)
        ref = record("1 worker", f"collide sweep {shown} --out w1.csv --workers 1", w, c,
                     d / "w1.csv", None)
        w, c, _ = _run(base + ["--out", "w2.csv", "--workers", "2"], d)
        record("2 workers", f"collide sweep {shown} --out w2.csv --workers 2", w, c, d / "w2.csv", ref)

        from dask.distributed import LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            w, c, _ = _run(base + ["--out", "dask.csv", "--scheduler", cluster.scheduler_address], d)
        record("Dask, 2 worker processes", f"collide sweep {shown} --out dask.csv --scheduler "
               "tcp://…  (a LocalCluster of 2 processes, 1 thread each)", w, c, d / "dask.csv", ref)

        # Ctrl-C once half the rows are written, then --resume
        c0, t0 = _cpu(), time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "collide.cli", *base, "--out", "kill.csv",
                              "--workers", "2"], cwd=d, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        while p.poll() is None and _lines(d / "kill.csv") < 500:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        code = p.wait()
        kept = _lines(d / "kill.csv")
        w2, c2, _ = _run(base + ["--out", "kill.csv", "--workers", "2", "--resume"], d)
        record("Ctrl-C half-way, then --resume",
               f"collide sweep … --out kill.csv --workers 2, SIGINT at 500 rows (exit {code}, "
               f"{kept} rows kept), then the same with --resume", time.perf_counter() - t0,
               _cpu() - c0, d / "kill.csv", ref)
    rec = {"command": "python bench/sweep_runs.py",
           "measured": f"{datetime.date.today().isoformat()}, {platform.system()} "
                       f"{platform.release()}, {os.cpu_count()} cores shared with other work "
                       f"(load average {os.getloadavg()[0]:.1f} at the end)",
           "columns": [["run", "run"], ["command", "command"], ["wall", "wall (s)", ".1f"],
                       ["cpu", "CPU, sweep and workers (s)", ".1f"], ["rows", "rows"],
                       ["same", "rows against 1 worker"]],
           "rows": rows,
           "notes": ["Rows are compared on every column but elapsed_s, matched by seed. The Dask "
                     "client's CPU is the client's alone (the cluster's workers are not its "
                     "children)."]}
    out = ROOT / "docs" / "data" / "sweep-runs.json"
    out.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
