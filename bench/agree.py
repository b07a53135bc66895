"""Do two engines agree in distribution? Run before renewing the golden counts after a change of draws.

    python bench/agree.py --other /path/to/old/venv/bin/python [--seeds 200] [--out agree.json]

Runs every named backend scenario of `tests/test_backends.py` (CASES, on the small scenario) for
`--seeds` seeds on this checkout's engine and on the engine importable by the other interpreter
(e.g. a virtual environment holding the previous release), then compares each count's
distribution: Welch's t-test on the means and the two-sample Kolmogorov–Smirnov test, with a
Bonferroni bound over every (scenario, count, test). The seeds differ between the engines' draws,
so only distributions can agree. The peak is reported but not tested: it moved from an exact
maximum to the largest of 101 sampled counts (docs/engine.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("connections", "established", "allocation_failures", "failed_connects", "collisions",
           "reset_victims", "time_wait_hits", "pairs", "delayed_connects", "pending_connects",
           "expected_collisions")
REPORTED = ("peak_live_per_destination",)

WORKER = r"""
import json, sys
sys.path.append({root!r})   # its tests, not its uninstalled package
from tests.test_backends import CASES
from tests.conftest import small
from collide.api import simulate
seeds = int(sys.argv[1])
out = {{}}
for name in sorted(CASES):
    s = small().replace(CASES[name])
    rows = []
    for seed in range(seeds):
        d = simulate(s, seed=1000 + seed, backend="cython").to_dict()
        rows.append({{k: d.get(k) for k in {keys!r}}})
    out[name] = rows
json.dump(out, sys.stdout)
"""


def collect(python: str, seeds: int, root: Path) -> dict:
    code = WORKER.format(root=str(root), keys=METRICS + REPORTED)
    res = subprocess.run([python, "-c", code, str(seeds)], capture_output=True, text=True,
                         cwd="/", check=True)
    return json.loads(res.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="python of the other engine's environment")
    ap.add_argument("--other-root", default=None,
                    help="checkout of the other engine (its tests/ define the scenarios); "
                         "default: this one")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=0.01, help="family-wise error rate")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from scipy import stats
    new = collect(sys.executable, a.seeds, ROOT)
    old = collect(a.other, a.seeds, Path(a.other_root) if a.other_root else ROOT)
    tests = []
    for name in sorted(new):
        for m in METRICS + REPORTED:
            x = np.array([r[m] for r in new[name] if r[m] is not None], float)
            y = np.array([r[m] for r in old[name] if r[m] is not None], float)
            if x.size < 2 or y.size < 2:
                continue
            row = {"scenario": name, "metric": m, "new_mean": float(x.mean()),
                   "old_mean": float(y.mean()), "tested": m not in REPORTED}
            if x.std() == 0 and y.std() == 0:
                row.update(p_t=1.0 if x[0] == y[0] else 0.0, p_ks=1.0 if x[0] == y[0] else 0.0)
            else:
                row["p_t"] = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
                row["p_ks"] = float(stats.ks_2samp(x, y).pvalue)
            tests.append(row)
    tested = [t for t in tests if t["tested"]]
    bound = a.alpha / (2 * len(tested))
    bad = [t for t in tested if min(t["p_t"], t["p_ks"]) < bound]
    for t in sorted(tests, key=lambda t: min(t["p_t"], t["p_ks"]))[:15]:
        flag = "FAIL" if t in bad else ("    " if t["tested"] else "info")
        print(f"{flag} {t['scenario']:28s} {t['metric']:26s} new {t['new_mean']:12.3f} "
              f"old {t['old_mean']:12.3f}  p_t {t['p_t']:.2e}  p_ks {t['p_ks']:.2e}")
    print(f"{len(tested)} (scenario, count) pairs x 2 tests, {a.seeds} seeds each; Bonferroni "
          f"bound {bound:.1e} for a family-wise rate of {a.alpha}: {len(bad)} below it")
    if a.out:
        Path(a.out).write_text(json.dumps({"seeds": a.seeds, "bound": bound, "tests": tests},
                                          indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
