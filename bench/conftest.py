"""Shared scenarios and reporting for the benchmark suite (`pytest bench/ --benchmark-only`).

Every engine benchmark records `extra_info["connections_per_second"]` (connections over the kernel's
wall time in the measured window, median over the rounds; setup, placement and warm-up are reported
apart as `setup_s`) and `extra_info["state_bytes"]`. The terminal summary prints each rate as a ratio
to the plain-C kernel of its scenario (`bench/kernels.c`, compiled and run by this suite in the same
sitting, one C run right before each engine round, the ratio the median of the pairs: machines
differ by 2x and drift by 30 %, so only ratios of neighbouring runs travel) and to the SimPy model of the base scenario
(`bench/simpy_baseline.py`). `COLLIDE_BENCH_REFERENCE=path/to/other.c` adds a column of ratios to a
second C file with the same command line (`NAME ARRIVALS ...`, one JSON line with `rate`).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from collide.scenario import Scenario  # noqa: E402

ROUNDS = 5

# The base scenario of issue 3: N = 3, B = 10, cross-zone on, one NAT IP, ports 1024-65535,
# λ = 2000/s, exponential lifetimes with mean 10 s, steady state, no TIME_WAIT, reset-existing.
BASE = {
    "traffic": {"rate": 2000.0, "duration": {"dist": "exponential", "mean": 10.0},
                "warmup": "auto", "clients": 1, "horizon": 100.0},
    "nat": {"ips": 1, "port_min": 1024, "port_max": 65535, "allocator": "random"},
    "load_balancer": {"nodes": 3, "targets": 10, "cross_zone": True,
                      "client_ip_preservation": True},
    "target": {"server_close_fraction": 0.0, "on_collision": "reset-existing"},
}

SCENARIOS = {
    "base": {},
    "lognormal": {"traffic.duration": {"dist": "lognormal", "mean": 10.0, "sigma": 1.0}},
    # every feature on: TIME_WAIT for every connection, uneven weights, per-zone targets, four NAT
    # IPs, sticky nodes, lognormal lifetimes
    "everything": {"target.server_close_fraction": 1.0, "target.time_wait": 60.0,
                   "load_balancer.node_weights": [0.5, 0.3, 0.2],
                   "load_balancer.targets": [3, 3, 4], "nat.ips": 4, "traffic.clients": 1000,
                   "load_balancer.node_choice": "sticky", "load_balancer.dns_ttl": 60.0,
                   "traffic.duration": {"dist": "lognormal", "mean": 10.0, "sigma": 1.0}},
    # one destination (N = 1) at 98 % of its 64,512 ports live: λ·D = 63,222
    "exhaustion": {"load_balancer.nodes": 1, "traffic.rate": 6322.2,
                   "nat.per_destination_limit": 64512,
                   "traffic.duration": {"dist": "exponential", "mean": 10.0}},
    "B10": {},
    "B10000": {"load_balancer.targets": 10000},
    # per-connection collision probability about 1e-10 (2x): 8 NAT IPs, 10 million targets, a low
    # rate; x = (λ/k)·D / (N·B·P) = (77.4/8)·10 / (3·1e7·64512) = 5.0e-11
    "rare": {"nat.ips": 8, "load_balancer.targets": 10_000_000, "traffic.rate": 77.4},
}


def scenario(name: str, horizon: float | None = None) -> Scenario:
    s = Scenario.from_dict(BASE).replace(SCENARIOS[name])
    return s.replace({"traffic.horizon": horizon}) if horizon is not None else s


ROWS: list[dict] = []          # filled by record(); printed at the end

# the plain-C kernel each scenario is measured against (bench/kernels.c), and the names a second
# reference file uses for the same scenarios (COLLIDE_BENCH_REFERENCE)
C_KERNEL = {"base": "base", "lognormal": "lognormal", "everything": "everything",
            "exhaustion": "exhaustion", "B10": "base", "B10000": "base", "rare": "base"}
REFERENCE_KERNEL = {"base": "base", "lognormal": "lognormal", "everything": "every_h",
                    "exhaustion": "exh_hl", "B10": "base", "B10000": "base", "rare": "base"}
C_ARRIVALS = 20_000_000


def _compile(source: Path, out: Path) -> Path | None:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    subprocess.run([cc, "-O2", "-ffp-contract=off", "-o", str(out), str(source), "-lm"],
                   check=True)
    return out


@pytest.fixture(scope="session")
def c_kernels(tmp_path_factory):
    """The compiled plain-C kernels: {"own": path, "reference": path or None}."""
    d = tmp_path_factory.mktemp("c-kernels")
    own = _compile(Path(__file__).with_name("kernels.c"), d / "kernels")
    ref_src = os.environ.get("COLLIDE_BENCH_REFERENCE")
    ref = _compile(Path(ref_src), d / "reference") if ref_src else None
    return {"own": own, "reference": ref}


# the base scenario's estimates have their own C kernels (the same work plus the estimate's; for
# `full`, the sums as the engine kept them before issue 24: a ring of end events)
C_KERNEL_ESTIMATE = {("base", "target"): "base_target", ("base", "full"): "base_full"}


def c_run(c_kernels, which: str, scenario_name: str, estimate: str = "off",
          seed: int = 1) -> float | None:
    """Connections per second of one run of C_ARRIVALS arrivals of the C kernel of a scenario.
    `which`: "own" (bench/kernels.c, the estimate's kernel where there is one), "reference"
    (COLLIDE_BENCH_REFERENCE, the scenario's kernel without an estimate). None if not built."""
    exe = c_kernels.get(which)
    if which == "own":
        name = C_KERNEL_ESTIMATE.get((scenario_name, estimate), C_KERNEL.get(scenario_name))
    else:
        name = REFERENCE_KERNEL.get(scenario_name)
    if exe is None or name is None:
        return None
    args = [str(exe), name, str(C_ARRIVALS)]
    args += ["1", str(seed)] if which == "reference" else [str(seed)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [json.loads(line)["rate"] for line in out.splitlines() if line.strip()][0]


def paired_ratio(rates: list, c_rates: list) -> float | None:
    """Median over rounds of engine rate / C rate, each C run right before its engine round: a
    shared VM drifts by ±30 % between minutes, far less between two neighbouring runs."""
    if not c_rates or any(c is None for c in c_rates):
        return None
    return statistics.median(r / c for r, c in zip(rates, c_rates))


def kernel_rate(r) -> float:
    return r.connections / r.kernel_s if r.kernel_s > 0 else 0.0


def record(benchmark, group: str, name: str, results: list, **extra) -> dict:
    """Store speed and memory in extra_info and remember the row for the summary. `results` are
    collide.Result: the rate is over kernel time, setup reported apart."""
    cps = statistics.median(kernel_rate(r) for r in results)
    info = {"connections_per_second": cps, "state_bytes": results[-1].state_bytes,
            "connections": results[-1].connections}
    info["setup_s"] = statistics.median(r.setup_s for r in results)
    info.update(extra)
    benchmark.extra_info.update(info)
    ROWS.append({"group": group, "name": name, **info})
    return info


@pytest.fixture(scope="session")
def simpy_cps():
    import simpy_baseline
    r = simpy_baseline.run(connections=20_000)
    ROWS.append({"group": "simpy", "name": "simpy-base",
                 "connections_per_second": r["connections_per_second"], "state_bytes": None,
                 "connections": r["connections"]})
    return r["connections_per_second"]


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    simpy = [r["connections_per_second"] for r in ROWS if r["group"] == "simpy"]
    base = simpy[0] if simpy else None
    tr = terminalreporter
    tr.section("collide: connections per second (kernel time, median of rounds), ratio to the "
               "plain-C kernel of the scenario (x C) and to SimPy")
    has_ref = any(r.get("x_ref") for r in ROWS)
    tr.write_line(f"{'group':<14}{'benchmark':<34}{'conn/s':>14}{'x C':>7}"
                  + (f"{'x ref':>7}" if has_ref else "") + f"{'x SimPy':>10}{'state MB':>10}  extra")
    for r in ROWS:
        cps = r["connections_per_second"]
        ratio = f"{cps / base:,.0f}" if base and cps else "-"
        xc = f"{r['x_c']:.2f}" if r.get("x_c") else "-"
        xr = f"{r['x_ref']:.2f}" if r.get("x_ref") else "-"
        mb = f"{r['state_bytes'] / 1e6:.1f}" if r.get("state_bytes") else "-"
        extra = {k: v for k, v in r.items() if v is not None and k not in
                 ("group", "name", "connections_per_second", "state_bytes", "connections")}
        ex = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in extra.items())
        tr.write_line(f"{r['group']:<14}{r['name']:<34}{cps:>14,.0f}{xc:>7}"
                      + (f"{xr:>7}" if has_ref else "") + f"{ratio:>10}{mb:>10}  {ex}")
