"""Which estimate is the more precise per second, scenario by scenario, beside what the default
rule keeps (docs/model.md §3; collide/engine/params.py, `default_estimate`).

    python bench/estimate_rule.py [NAME ...] [--seeds 5] [--out FILE]

For each scenario: 5 seeds, `target` and `full` interleaved (Cython), precision per second as
1 / (mean SE² × mean kernel_s) (single runs' timings move by about 20 %); the ratio full / target,
the rule's figure y (slots of a port held through the other nodes) and its choice, and the choice's
precision per second as a fraction of the better one's (the issue asks >= 0.8).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import collide  # noqa: E402
from collide import engine  # noqa: E402
from collide.engine.params import other_held  # noqa: E402
from collide.scenario import Scenario  # noqa: E402
from conftest import scenario as bench  # noqa: E402


def _seed(**o) -> Scenario:
    return Scenario.builtin("seed").replace(o)


def _base(horizon, **o) -> Scenario:
    return bench("base", horizon).replace({k.replace("__", "."): v for k, v in o.items()})


# across occupancy, targets, nodes, NAT IPs and allocators; the first six are issue 24's
SCENARIOS = {
    "base": lambda: bench("base", 300.0),
    "seed": lambda: _seed(**{"traffic.horizon": 3000.0}),
    "rare": lambda: bench("rare", 3000.0),
    "exhaustion": lambda: Scenario.builtin("exhaustion").replace({"traffic.horizon": 60.0}),
    "everything": lambda: bench("everything", 300.0),
    "middle": lambda: _seed(**{"traffic.rate": 500.0, "traffic.duration.mean": 30.0,
                               "nat.ips": 2, "load_balancer.targets": 30,
                               "traffic.horizon": 1500.0}),
    "base-B100": lambda: _base(300.0, load_balancer__targets=100),
    "base-K4": lambda: _base(300.0, nat__ips=4),
    "base-N2": lambda: _base(300.0, load_balancer__nodes=2),
    "base-N6": lambda: _base(300.0, load_balancer__nodes=6),
    "base-200": lambda: _base(2000.0, traffic__rate=200.0),
    "base-500": lambda: _base(1000.0, traffic__rate=500.0),
    "base-4000": lambda: _base(150.0, traffic__rate=4000.0),
    "base-6000": lambda: _base(100.0, traffic__rate=6000.0),
    "base-9000": lambda: _base(80.0, traffic__rate=9000.0),
    "base-9000-B100": lambda: _base(80.0, traffic__rate=9000.0, load_balancer__targets=100),
    "seed-B30": lambda: _seed(**{"load_balancer.targets": 30, "traffic.horizon": 3000.0}),
    "seed-N5-K2": lambda: _seed(**{"load_balancer.nodes": 5, "nat.ips": 2, "traffic.rate": 2000.0,
                                   "traffic.horizon": 500.0}),
    "quiet": lambda: Scenario.builtin("quiet").replace({"traffic.horizon": 20000.0}),
    "seed-sequential": lambda: _seed(**{"nat.allocator": "sequential", "traffic.horizon": 3000.0}),
    "seed-linux": lambda: _seed(**{"nat.allocator": "linux", "traffic.horizon": 3000.0}),
    "base-sequential": lambda: _base(300.0, nat__allocator="sequential"),
    "base-linux": lambda: _base(300.0, nat__allocator="linux"),
}


def measure(s: Scenario, seeds: int) -> dict:
    for e in ("target", "full"):         # load (and compile) before timing
        collide.simulate(s.replace({"traffic.horizon": 1.0}), seed=1, estimate=e)
    runs = {"target": [], "full": []}
    for seed in range(1, seeds + 1):
        for e in ("target", "full"):
            r = collide.simulate(s, seed=seed, estimate=e)
            runs[e].append((r.expected_collisions_se ** 2, r.kernel_s))
    row = {}
    for e, rs in runs.items():
        se2 = statistics.mean(x[0] for x in rs)
        ks = statistics.mean(x[1] for x in rs)
        row[e] = {"se2_mean": se2, "kernel_s_mean": ks, "precision_per_s": 1.0 / (se2 * ks)}
    choice, reason = engine.default_estimate(s)
    better = max(row["target"]["precision_per_s"], row["full"]["precision_per_s"])
    row.update(y=other_held(s), rule=choice, reason=reason,
               full_over_target=row["full"]["precision_per_s"] / row["target"]["precision_per_s"],
               variance_target_over_full=row["target"]["se2_mean"] / row["full"]["se2_mean"],
               cost_full_over_target=row["full"]["kernel_s_mean"] / row["target"]["kernel_s_mean"],
               rule_over_better=row[choice]["precision_per_s"] / better)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="scenarios (default: all)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    out = {"command": " ".join(["python", "bench/estimate_rule.py"] + sys.argv[1:]),
           "seeds": a.seeds, "scenarios": {}}
    for name in a.names or list(SCENARIOS):
        row = measure(SCENARIOS[name](), a.seeds)
        out["scenarios"][name] = row
        print(f"{name:16s} y {row['y']:.4f}  var target/full {row['variance_target_over_full']:7.2f}"
              f"  cost full/target {row['cost_full_over_target']:5.2f}  full/target per second "
              f"{row['full_over_target']:7.2f}  rule {row['rule']:6s} {row['rule_over_better']:.2f}"
              " of the better", flush=True)
    worst = min(r["rule_over_better"] for r in out["scenarios"].values())
    print(f"the rule's choice: at least {worst:.2f} of the better estimate's precision per second")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
