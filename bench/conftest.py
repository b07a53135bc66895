"""Shared scenarios and reporting for the benchmark suite (`pytest bench/ --benchmark-only`).

Every benchmark records `extra_info["connections_per_second"]` (engine wall time, median over the
rounds) and `extra_info["state_bytes"]`; the terminal summary prints them with the ratio to the SimPy
model of the base scenario (`bench/simpy_baseline.py`).
"""
from __future__ import annotations

import statistics
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


def record(benchmark, group: str, name: str, results: list, **extra) -> dict:
    """Store speed and memory in extra_info and remember the row for the summary."""
    cps = statistics.median(r.connections_per_second for r in results)
    info = {"connections_per_second": cps, "state_bytes": results[-1].state_bytes,
            "connections": results[-1].connections}
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
    tr.section("collide: connections per second (median of rounds) and ratio to SimPy")
    tr.write_line(f"{'group':<14}{'benchmark':<34}{'conn/s':>14}{'x SimPy':>10}{'state MB':>10}"
                  "  extra")
    for r in ROWS:
        cps = r["connections_per_second"]
        ratio = f"{cps / base:,.0f}" if base and cps else "-"
        mb = f"{r['state_bytes'] / 1e6:.1f}" if r.get("state_bytes") else "-"
        extra = {k: v for k, v in r.items() if k not in
                 ("group", "name", "connections_per_second", "state_bytes", "connections")}
        ex = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in extra.items())
        tr.write_line(f"{r['group']:<14}{r['name']:<34}{cps:>14,.0f}{ratio:>10}{mb:>10}  {ex}")
