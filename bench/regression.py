"""The default command against a pinned earlier commit (issue 24): is the run a user gets by
default ever slower than it was, or less precise per second?

    python bench/regression.py --old OLD_VENV/bin/python [--runs 5] [--out FILE]

Runs `collide simulate --scenario seed --horizon 36000 --format json` and the bench's `base`
scenario over 1,000 s (`--config`, the same command) with this checkout's `collide` and with the
`collide` of another environment (`--old`: a virtual environment holding the pinned commit, e.g.
2945be6 installed from its own worktree), interleaved, each pair with the same seed. Reports the
median wall time of each, their ratio old / new (below 1: today's default is slower), and each
one's precision per second, 1 / (SE² · wall), from the medians. Both packages are compiled to
bytecode first, as installed packages are. The same command line: the old
engine's default estimate was `full` everywhere; today's is chosen by a rule (docs/model.md §3).
`pytest bench/ -k regression --benchmark-only` runs the same through COLLIDE_BENCH_OLD_PYTHON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import scenario  # noqa: E402

SEED_ARGS = ["--scenario", "seed", "--horizon", "36000"]


def base_toml(folder: str) -> str:
    path = os.path.join(folder, "base-1000s.toml")
    Path(path).write_text(scenario("base", 1000.0).to_toml())
    return path


def once(collide_exe: str, args: list, seed: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([collide_exe, "simulate", *args, "--seed", str(seed), "--format", "json"],
                         capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    d = json.loads(out.stdout)
    return {"wall_s": wall, "se": d.get("expected_collisions_se"), "estimate": d.get("estimate"),
            "expected": d.get("expected_collisions"), "connections": d["connections"],
            "kernel_s": d.get("kernel_s")}


def compare(new_exe: str, old_exe: str, args: list, runs: int) -> dict:
    rows = {"new": [], "old": []}
    for i in range(runs):                   # interleaved, the same seed for both in each pair
        for which, exe in (("new", new_exe), ("old", old_exe)):
            rows[which].append(once(exe, args, i + 1))
    out = {}
    for which, rs in rows.items():
        wall = statistics.median(r["wall_s"] for r in rs)
        se2 = statistics.mean(r["se"] ** 2 for r in rs if r["se"] is not None)
        out[which] = {"wall_s_median": wall, "walls_s": [r["wall_s"] for r in rs],
                      "se_mean_square": se2, "precision_per_s": 1.0 / (se2 * wall),
                      "estimate": rs[0]["estimate"] or "full (old default)",
                      "connections": rs[0]["connections"]}
    out["wall_ratio_old_over_new"] = out["old"]["wall_s_median"] / out["new"]["wall_s_median"]
    out["precision_ratio_new_over_old"] = (out["new"]["precision_per_s"]
                                           / out["old"]["precision_per_s"])
    return out


def compile_bytecode(python: str) -> str:
    """Compile the `collide` package of an environment to bytecode, as an installed package has
    it (pip compiles at install): an editable checkout run with PYTHONDONTWRITEBYTECODE would
    otherwise compile every module it imports at every start, and the two commands import
    different modules. Returns the package's folder."""
    where = subprocess.run([python, "-c", "import collide, os; print(os.path.dirname(collide.__file__))"],
                           capture_output=True, text=True, check=True,
                           cwd=tempfile.gettempdir()).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", where], check=True, capture_output=True)
    return where


def collide_of(python: str) -> str:
    exe = Path(python).with_name("collide")
    if not exe.exists():
        raise SystemExit(f"--old {python}: no `collide` beside it ({exe})")
    return str(exe)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="python of the environment with the old commit")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args()
    new_exe = collide_of(sys.executable)
    old_exe = collide_of(a.old)
    for python in (sys.executable, a.old):
        compile_bytecode(python)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"command": " ".join(sys.argv), "runs": a.runs,
                  "seed": compare(new_exe, old_exe, SEED_ARGS, a.runs),
                  "base": compare(new_exe, old_exe, ["--config", base_toml(tmp)], a.runs)}
    for name in ("seed", "base"):
        r = result[name]
        print(f"{name}: wall new {r['new']['wall_s_median']:.3f} s, old {r['old']['wall_s_median']:.3f} s"
              f" (old / new {r['wall_ratio_old_over_new']:.2f}); precision per second new / old "
              f"{r['precision_ratio_new_over_old']:.2f} (estimate {r['new']['estimate']})")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
