"""Issue 24's figures in one sitting, written to one JSON file with the command that made them.

    cc -O2 -ffp-contract=off -o /tmp/kernels bench/kernels.c -lm
    cc -O2 -ffp-contract=off -o /tmp/reference REFERENCE.c -lm        # e.g. the issue's lazy.c
    python bench/issue24.py --kernels /tmp/kernels --reference /tmp/reference \\
        --old OLD_VENV/bin/python --out bench/results/issue24-DATE.json

1. `full` and `target` against the engine's own `off`, connections per kernel second, on `base`
   (1,000 s) and `seed` (10,000 s), each backend (Python: 50 s and 500 s), rounds interleaved,
   medians of the per-round ratios.
2. The speed targets against the reference's kernels (`--reference`, its command line NAME
   ARRIVALS RUNS SEED): numba `off` on base vs `base`; Cython `target` on base vs `base`; every
   feature on vs `every_h`; 98 % occupancy vs `exh_hl`; each engine round right after one run of
   the reference's kernel and of bench/kernels.c's kernel of the same work (`--kernels`), whose
   ratio to the reference is the plain-C measurement that bounds the target.
3. Both estimates' precision per second on the scenarios of `bench/estimate_rule.py`, and the
   default rule's choice.
4. The default command against the pinned commit (`bench/regression.py`, `--old`).

`python bench/issue24.py --tables FILE` prints the tables from a results file; `--records FILE`
writes them beside it as records of docs/generate.py (`bench/results/issue24-*.json`), from
which bench/README.md's tables are generated (`python docs/generate.py`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import collide  # noqa: E402
import estimate_rule  # noqa: E402
import regression  # noqa: E402
from collide.scenario import Scenario  # noqa: E402
from conftest import scenario  # noqa: E402

ARRIVALS = 20_000_000


def _scenario(name: str, horizon: float) -> Scenario:
    if name == "seed":
        return Scenario.builtin("seed").replace({"traffic.horizon": horizon})
    return scenario(name, horizon)


def estimate_ratios(backend: str, rounds: int) -> dict:
    """(1) kernel rates of off, target and full, interleaved; median per-round ratios to off."""
    horizons = {"base": 1000.0, "seed": 10000.0} if backend != "python" else \
        {"base": 50.0, "seed": 500.0}
    out = {}
    for name, h in horizons.items():
        s = _scenario(name, h)
        for e in ("off", "target", "full"):
            collide.simulate(s.replace({"traffic.horizon": 1.0}), seed=1, backend=backend,
                             estimate=e)
        rates = {e: [] for e in ("off", "target", "full")}
        for i in range(rounds):
            for e in rates:
                r = collide.simulate(s, seed=i + 1, backend=backend, estimate=e)
                rates[e].append(r.connections / r.kernel_s)
        out[name] = {"horizon_s": h, "rates": rates,
                     "target_over_off": statistics.median(
                         t / o for t, o in zip(rates["target"], rates["off"])),
                     "full_over_off": statistics.median(
                         f / o for f, o in zip(rates["full"], rates["off"]))}
        print(f"{backend:7s} {name:5s} target/off {out[name]['target_over_off']:.2f}  full/off "
              f"{out[name]['full_over_off']:.2f}", flush=True)
    return out


def c_rate(exe: str, name: str, seed: int, reference: bool) -> float:
    args = [exe, name, str(ARRIVALS)] + (["1", str(seed)] if reference else [str(seed)])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[0])["rate"]


# (label, backend, estimate, bench scenario, horizon, our C kernel, the reference's kernel, target)
TARGETS = [("numba off, base", "numba", "off", "base", 10000.0, "base", "base", 0.60),
           ("Cython target, base", "cython", "target", "base", 10000.0, "base_target", "base",
            0.70),
           ("every feature on, Cython off", "cython", "off", "everything", 10000.0, "everything",
            "every_h", 0.60),
           ("98 % occupancy, Cython off", "cython", "off", "exhaustion", 3200.0, "exhaustion",
            "exh_hl", 0.90)]


def speed_targets(kernels: str, reference: str, rounds: int) -> dict:
    """(2) paired rounds: our C kernel, the reference's, then the engine."""
    out = {}
    for label, backend, est, name, h, own, ref, target in TARGETS:
        s = scenario(name, h)
        collide.simulate(s.replace({"traffic.horizon": 1.0}), seed=1, backend=backend,
                         estimate=est)
        engine, c_own, c_ref = [], [], []
        for i in range(rounds):
            c_own.append(c_rate(kernels, own, i + 1, False))
            c_ref.append(c_rate(reference, ref, i + 1, True))
            r = collide.simulate(s, seed=i + 1, backend=backend, estimate=est)
            engine.append(r.connections / r.kernel_s)
        row = {"target": target, "engine_rates": engine, "own_c_rates": c_own,
               "reference_rates": c_ref,
               "engine_over_reference": statistics.median(e / c for e, c in zip(engine, c_ref)),
               "own_c_over_reference": statistics.median(o / c for o, c in zip(c_own, c_ref)),
               "engine_over_own_c": statistics.median(e / o for e, o in zip(engine, c_own)),
               "own_c_kernel": own, "reference_kernel": ref}
        row["met"] = row["engine_over_reference"] >= target
        out[label] = row
        print(f"{label:30s} engine/reference {row['engine_over_reference']:.2f} (target {target});"
              f" our plain C/reference {row['own_c_over_reference']:.2f}; engine/our C "
              f"{row['engine_over_own_c']:.2f}", flush=True)
    return out


def full_bound(kernels: str, rounds: int) -> dict:
    """(1b) the plain-C measurement that bounds `full` / `off`: bench/kernels.c's `base` against
    its `base_full` (per-slot flags, per-destination sums, a ring of end events drained before
    each arrival) and `base_full_ladder` (the same sums through a two-level queue), in turn,
    medians of the per-round ratios."""
    names = ("base", "base_full", "base_full_ladder")
    rates = {n: [] for n in names}
    for i in range(rounds):
        for n in names:
            rates[n].append(c_rate(kernels, n, i + 1, False))
    out = {"rates": rates}
    for n in names[1:]:
        out[f"{n}_over_base"] = statistics.median(f / b for f, b in zip(rates[n], rates["base"]))
    print(f"plain C full/off on base: base_full {out['base_full_over_base']:.2f}, "
          f"base_full_ladder {out['base_full_ladder_over_base']:.2f}", flush=True)
    return out


def tables(d: dict) -> str:
    """bench/README.md's tables of this sitting, from its JSON (`--tables FILE`)."""
    lines = ["| backend | scenario | `target` / `off` | `full` / `off` |", "|---|---|---:|---:|"]
    for b, rows in d["estimates_vs_off"].items():
        for name, r in rows.items():
            lines.append(f"| {b} | {name} ({r['horizon_s']:g} s) | {r['target_over_off']:.2f} | "
                         f"{r['full_over_off']:.2f} |")
    lines += ["", "| target | engine / reference | our plain C / reference | engine / our plain C |"
              " met |", "|---|---:|---:|---:|---|"]
    for label, r in d["speed_targets"].items():
        lines.append(f"| {label} ≥ {r['target']:.2f} ({r['reference_kernel']}; ours: "
                     f"`{r['own_c_kernel']}`) | {r['engine_over_reference']:.2f} | "
                     f"{r['own_c_over_reference']:.2f} | {r['engine_over_own_c']:.2f} | "
                     f"{'yes' if r['met'] else 'no'} |")
    lines += ["", "| scenario | y | variance target / full | cost full / target | precision per "
              "second full / target | rule keeps | of the better |",
              "|---|---:|---:|---:|---:|---|---:|"]
    for name, r in d["precision_per_second"].items():
        lines.append(f"| {name} | {r['y']:.3g} | {r['variance_target_over_full']:.2f} | "
                     f"{r['cost_full_over_target']:.2f} | {r['full_over_target']:.2f} | "
                     f"{r['rule']} | {r['rule_over_better']:.2f} |")
    if "default_command" in d:
        lines += ["", "| command | median wall, today | median wall, pinned commit | old / new | "
                  "SE, today / pinned (mean of squares) | precision per second, new / old |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, r in d["default_command"].items():
            lines.append(f"| {name} | {r['new']['wall_s_median']:.2f} s ({r['new']['estimate']}) "
                         f"| {r['old']['wall_s_median']:.2f} s | {r['wall_ratio_old_over_new']:.2f}"
                         f" | {r['new']['se_mean_square'] ** 0.5:.3g} / "
                         f"{r['old']['se_mean_square'] ** 0.5:.3g} | "
                         f"{r['precision_ratio_new_over_old']:.2f} |")
    return "\n".join(lines)


def records(path: Path) -> list[Path]:
    """The sitting's tables as records of docs/generate.py (`recorded-issue24-*`: a JSON with
    "columns" and "rows" each), written beside the sitting's JSON; bench/README.md shows them."""
    d = json.loads(path.read_text())
    when = f"{d['started_utc'][:16].replace('T', ' ')}–{d['finished_utc'][11:16]} UTC"
    measured = f"{when}, {d['machine']['cpus']}-core {d['machine']['cpu']}, load average " \
               f"{d['machine']['load_average_at_start'][0]:.1f} at the start"
    words, shown = d["command"].split(), {"--kernels": "/tmp/kernels", "--reference": "/tmp/reference",
                                          "--old": "OLD_VENV/bin/python"}
    for i, w in enumerate(words[:-1]):      # this machine's paths: the README's placeholders
        if w in shown:
            words[i + 1] = shown[w]
        elif w == "--out":
            words[i + 1] = f"bench/results/{Path(words[i + 1]).name}"
    command = " ".join(words)
    out = {
        "estimates": {
            "columns": [["backend", "backend"], ["scenario", "scenario"],
                        ["target_over_off", "`target` / `off`", ".2f"],
                        ["full_over_off", "`full` / `off`", ".2f"]],
            "rows": [{"backend": b, "scenario": f"{name} ({r['horizon_s']:g} s)",
                      "target_over_off": r["target_over_off"], "full_over_off": r["full_over_off"]}
                     for b, rows in d["estimates_vs_off"].items() for name, r in rows.items()]},
        "targets": {
            "columns": [["target", "target"], ["engine_over_reference", "engine / reference", ".2f"],
                        ["own_c_over_reference", "our plain C / reference", ".2f"],
                        ["engine_over_own_c", "engine / our plain C", ".2f"], ["met", "met"]],
            "rows": [{"target": f"{label} ≥ {r['target']:.2f} ({r['reference_kernel']}; ours: "
                                f"`{r['own_c_kernel']}`)",
                      "engine_over_reference": r["engine_over_reference"],
                      "own_c_over_reference": r["own_c_over_reference"],
                      "engine_over_own_c": r["engine_over_own_c"],
                      "met": "yes" if r["met"] else "no"}
                     for label, r in d["speed_targets"].items()]},
        "precision": {
            "columns": [["scenario", "scenario"], ["y", "y", ".3g"],
                        ["variance_target_over_full", "variance target / full", ".2f"],
                        ["cost_full_over_target", "cost full / target", ".2f"],
                        ["full_over_target", "precision per second full / target", ".2f"],
                        ["rule", "rule keeps"], ["rule_over_better", "of the better", ".2f"]],
            "rows": [dict(scenario=name, **{k: r[k] for k in (
                "y", "variance_target_over_full", "cost_full_over_target", "full_over_target",
                "rule", "rule_over_better")}) for name, r in d["precision_per_second"].items()]},
    }
    if "full_bound" in d:
        fb = d["full_bound"]
        out["full-bound"] = {
            "columns": [["kernel", "plain-C kernel (bench/kernels.c)"],
                        ["ratio", "connections per second / `base` (no estimate)", ".2f"]],
            "rows": [{"kernel": f"`{n}`", "ratio": fb[f"{n}_over_base"]}
                     for n in ("base_full", "base_full_ladder")]}
    if "default_command" in d:
        out["default"] = {
            "columns": [["command", "command"], ["new", "median wall, today (s)", ".2f"],
                        ["estimate", "today's estimate"],
                        ["old", "median wall, pinned commit (s)", ".2f"],
                        ["ratio", "old / new", ".2f"], ["se", "SE, today / pinned (root mean square)"],
                        ["precision", "precision per second, new / old", ".2f"]],
            "rows": [{"command": name, "new": r["new"]["wall_s_median"],
                      "estimate": r["new"]["estimate"], "old": r["old"]["wall_s_median"],
                      "ratio": r["wall_ratio_old_over_new"],
                      "se": f"{r['new']['se_mean_square'] ** 0.5:.3g} / "
                            f"{r['old']['se_mean_square'] ** 0.5:.3g}",
                      "precision": r["precision_ratio_new_over_old"]}
                     for name, r in d["default_command"].items()]}
    written = []
    for name, rec in out.items():
        rec.update(command=command, measured=measured)
        q = path.with_name(f"issue24-{name}.json")
        q.write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
        written.append(q)
    return written


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--tables":
        print(tables(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--add-full-bound":       # KERNELS FILE
        path = Path(sys.argv[3])
        d = json.loads(path.read_text())
        d["full_bound"] = full_bound(sys.argv[2], 5)
        d["command"] += f"; python bench/issue24.py --add-full-bound /tmp/kernels " \
                        f"bench/results/{path.name}"
        path.write_text(json.dumps(d, indent=1))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--records":
        for q in records(Path(sys.argv[2])):
            print(q)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", required=True, help="bench/kernels.c, compiled")
    ap.add_argument("--reference", required=True, help="the reference kernels, compiled")
    ap.add_argument("--old", default=None, help="python of the pinned commit's environment")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    out = {"command": "python bench/issue24.py " + " ".join(sys.argv[1:]),
           "started_utc": started.isoformat(timespec="seconds"),
           "machine": {"cpu": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
           "estimates_vs_off": {b: estimate_ratios(b, a.rounds if b != "python" else 3)
                                for b in ("cython", "numba", "python")},
           "full_bound": full_bound(a.kernels, a.rounds),
           "speed_targets": speed_targets(a.kernels, a.reference, a.rounds),
           "precision_per_second": {}}
    for name, make in estimate_rule.SCENARIOS.items():
        out["precision_per_second"][name] = row = estimate_rule.measure(make(), 5)
        print(f"{name:16s} full/target per second {row['full_over_target']:.2f}; rule keeps "
              f"{row['rule']} ({row['rule_over_better']:.2f} of the better)", flush=True)
    if a.old:
        for python in (sys.executable, a.old):
            regression.compile_bytecode(python)
        for name, args in (("seed", regression.SEED_ARGS),
                           ("base", ["--config", regression.base_toml(str(Path(a.out).resolve().parent))])):
            r = regression.compare(regression.collide_of(sys.executable),
                                   regression.collide_of(a.old), args, a.rounds)
            out.setdefault("default_command", {})[name] = r
            print(f"default command, {name}: old/new wall {r['wall_ratio_old_over_new']:.2f}, "
                  f"precision per second new/old {r['precision_ratio_new_over_old']:.2f}", flush=True)
        Path(a.out).parent.joinpath("base-1000s.toml").unlink(missing_ok=True)
    out["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    Path(a.out).write_text(json.dumps(out, indent=1))
    for q in records(Path(a.out)):
        print(q)
    return 0


if __name__ == "__main__":
    sys.exit(main())
