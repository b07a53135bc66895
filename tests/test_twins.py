"""The twins, on a fixed example set: three backends, one algorithm, identical results (DESIGN §2.4).

A hypothesis test finds a disagreement only when its random draw happens to hit it (issue 21: the
plain Cython copy skipped the server-close draw, found once, then not in 12 fresh runs). This file
runs the same comparison on a *fixed* list of scenarios, so a disagreement cannot come and go:

- `DRAWN`: 500 scenarios drawn by a seeded generator from the whole scenario space (every key of
  docs/model.md §4.1 and docs/model-fidelity.md), with the exact edge values the kernels branch on
  (time_wait 0, server_close_fraction 0, 1 and in between, one node, one target, one port, ports
  near exhaustion, a per-destination limit of 1, zero weights, ...), kept small so that the Python
  reference runs each in a few tens of milliseconds;
- `EDGES`: the `seed` scenario with one to three keys moved, every key that changes which
  specialised copy of the Cython kernel runs (`Engine.__init__`: plain, extras, general; and the
  estimate kept), each to the values on both sides of its switch. (Every edge runs 3 s, with a
  TIME_WAIT of 4 s: the seed's 60 s would add a minute of burn-in, 12,000 arrivals, wherever a
  server-close fraction is moved in.)

Each scenario runs under every estimate (off, target, full) on python, numba and cython, and on
cython again through the general copy (`_core.use_general_kernel(True)`). Everything a run returns
is compared bit for bit (floats by their hex form): every field of the Result but the wall-clock
ones, the estimate's batches and their weights, the raw counters, and the bit generator's state
after the run. A scenario one backend refuses, every backend must refuse with the same exception
class. Some runs stop at the first collision (`first-reset`), and the compiled ones run with a work
budget per kernel call drawn per scenario (the budget changes no result).

Each test runs once per compiled twin against the reference (`twin`, tests/conftest.py). The
whole set is marked slow (CI's `.ci/run`), and so is every numba run (its first compile takes a
minute); the fast set keeps every 25th drawn scenario and the first edges, on cython.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

import collide
from collide import engine
from collide.api import _result
from collide.scenario import Scenario

EXAMPLE_CSV = str(Path(collide.__file__).parent / "scenarios" / "lifetimes-example.csv")
ESTIMATES = ("off", "target", "full")
WALL_CLOCK = ("elapsed_s", "kernel_s", "setup_s", "backend")
MASTER_SEED = 20261208            # the drawn set; changing it changes the examples


# == the drawn scenarios ==========================================================================
class _Draw:
    """Choices from `random.Random.random()` only, whose stream Python keeps stable across
    versions (its `choice` and `randrange` have changed between releases)."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def u(self) -> float:
        return self.r.random()

    def pick(self, options):
        return options[min(int(self.u() * len(options)), len(options) - 1)]

    def chance(self, p: float) -> bool:
        return self.u() < p

    def int(self, lo: int, hi: int) -> int:            # inclusive
        return lo + min(int(self.u() * (hi - lo + 1)), hi - lo)

    def weights(self, n: int) -> list:
        """n weights summing to 1: uneven, uniform written out, or with zeros."""
        kind = self.pick(["uneven", "uneven", "uniform", "zero"])
        if kind == "uniform" or n == 1:
            return [1.0 / n] * n
        raw = [self.int(0 if kind == "zero" else 1, 5) for _ in range(n)]
        if sum(raw) == 0:
            raw[0] = 1
        total = sum(raw)
        w = [x / total for x in raw]
        w[-1] = 1.0 - sum(w[:-1])       # the sum is exactly 1 within the check's 1e-9
        return [max(0.0, x) for x in w]


def draw_scenario(d: _Draw) -> tuple[dict, int, bool, int | None]:
    """(overrides of the empty scenario, seed, until_first, work budget of the compiled kernels)."""
    o: dict = {}
    # the load balancer
    nodes = d.pick([1, 1, 2, 2, 3, 3, 3, 4, 5, 8])
    balancers = d.pick([1, 1, 1, 1, 1, 2, 3]) if nodes <= 4 else 1
    cross = d.chance(0.7)
    if d.chance(0.3):
        targets = [d.pick([1, 1, 2, 3, 5]) for _ in range(nodes)]
    else:   # an integer below the node count with cross-zone off is refused (a refusal case)
        targets = d.pick([1, 1, 2, 3, 4, 6, 10, 40])
    o["load_balancer.nodes"] = nodes
    o["load_balancer.targets"] = targets
    o["load_balancer.cross_zone"] = cross
    o["load_balancer.client_ip_preservation"] = d.chance(0.85)
    if d.chance(0.3):
        o["load_balancer.node_weights"] = d.weights(nodes)
    if d.chance(0.25):
        o["load_balancer.node_choice"] = "sticky"
        o["load_balancer.dns_ttl"] = d.pick([0.3, 1.0, 4.0, 60.0])
    if balancers > 1:
        o["load_balancer.balancers"] = balancers
        if d.chance(0.5):
            o["load_balancer.balancer_weights"] = d.weights(balancers)
    # the NAT
    ips = d.pick([1, 1, 1, 2, 3, 4])
    o["nat.ips"] = ips
    if d.chance(0.3):
        o["nat.ip_choice"] = "per-client"
    o["nat.allocator"] = d.pick(["random", "random", "sequential", "linux", "eim"])
    o["nat.reuse_delay"] = d.pick([0.0, 0.0, 0.0, 0.3, 2.0])
    # lifetimes
    dist = d.pick(["exponential", "exponential", "fixed", "lognormal", "pareto", "empirical"])
    mean = d.pick([0.5, 2.0, 5.0, 10.0])
    if dist == "empirical":
        o["traffic.duration"] = {"dist": "empirical", "file": EXAMPLE_CSV, "column": "duration_s"}
        mean = 5.0                     # about the file's
    elif dist == "lognormal":
        o["traffic.duration"] = {"dist": dist, "mean": mean, "sigma": d.pick([0.0, 0.5, 1.5])}
    elif dist == "pareto":
        o["traffic.duration"] = {"dist": dist, "mean": mean, "alpha": d.pick([1.1, 1.5, 2.5])}
    else:
        o["traffic.duration"] = {"dist": dist, "mean": mean}
    # the target
    tw = d.pick([0.0, 0.0, 0.5, 3.0, 20.0])
    scf = d.pick([0.0, 0.0, 1.0, 0.5, round(d.u(), 3)])
    o["target.time_wait"] = tw
    o["target.server_close_fraction"] = scf
    o["target.on_collision"] = d.pick(["reset-existing", "reset-existing", "fail-new", "count",
                                       "delay-new"])
    o["target.kernel"] = d.pick(["modern", "modern", "modern", "pre-6.4", "pre-3.6"])
    if d.chance(0.3):
        o["target.syn_retries"] = d.pick([[0.2], [0.5, 1.5], [1.0, 2.0, 3.0, 4.0, 6.0, 10.0]])
    o["target.challenge_ack_limit"] = d.pick([0, 0, 0, 1, 2, 1000])
    # time: the warm-up the engine will simulate, then the size of the run
    warmup = d.pick(["auto", "auto", "auto", 0, 2.5])
    o["traffic.warmup"] = warmup
    horizon = d.pick([0.5, 2.0, 5.0, 15.0, 40.0])
    o["traffic.horizon"] = horizon
    before = (tw * (scf > 0) + o["nat.reuse_delay"] + mean) if warmup == "auto" else float(warmup)
    conns = d.int(100, 900)           # arrivals simulated, placement and warm-up included
    rate = max(0.5, round(conns / (horizon + before), 2))
    o["traffic.rate"] = rate
    if d.chance(0.2):
        k = d.int(2, 4)
        starts = sorted({0.0} | {round(d.u() * horizon * 1.2, 2) for _ in range(k - 1)})
        o["traffic.schedule"] = [[s, round(rate * d.pick([0.2, 0.5, 1.0, 2.0]), 2)] for s in starts]
    o["traffic.clients"] = d.pick([1, 2, 7, 50, 1000])
    # ports: from a handful to a little over the live population of one destination (near
    # exhaustion), now and then the whole range
    live = rate * mean / (ips * nodes * balancers)
    if d.chance(0.1) and ips * nodes * balancers <= 3:   # (the reference scans all the slots
        ports = 64512                                    # at each of 101 peak samples)
    elif d.chance(0.1):
        ports = d.pick([1, 2, 3])
    else:
        ports = max(1, int(live * d.pick([0.5, 0.9, 1.1, 1.5, 3.0, 20.0])) + d.int(0, 3))
    ports = min(ports, 64512)
    pmin = d.int(1024, 65536 - ports)
    o["nat.port_min"], o["nat.port_max"] = pmin, pmin + ports - 1
    if d.chance(0.25):                # (a limit that binds recounts: small ranges only)
        limits = [1, 2, ports // 2, ports - 1, ports, ports + 1] if ports <= 2000 else \
            [ports // 2, ports - 1, ports + 1]
        o["nat.per_destination_limit"] = max(1, d.pick(limits))
    seed = d.int(0, 2**63 - 1)
    until_first = d.chance(0.1)
    budget = d.pick([None, None, 1, 7, 60, 1000])
    return o, seed, until_first, budget


def drawn(count: int = 500) -> list:
    d = _Draw(MASTER_SEED)
    return [draw_scenario(d) for _ in range(count)]


DRAWN = drawn()


# == the fast paths' edges: the seed scenario with one to three keys moved ========================
# each key that decides the Cython copy (plain / extras / general) or what it does, with the
# values on both sides of its switch
MOVES = {
    "time_wait_0": {"target.time_wait": 0.0},
    "time_wait_tiny": {"target.time_wait": 1e-9},
    "scf_half": {"target.server_close_fraction": 0.5},
    "scf_one": {"target.server_close_fraction": 1.0},
    "scf_tiny": {"target.server_close_fraction": 1e-12},
    "scf_almost_one": {"target.server_close_fraction": 1.0 - 2**-52},
    "per_client_2ips": {"nat.ip_choice": "per-client", "nat.ips": 2},
    "per_client_1ip": {"nat.ip_choice": "per-client"},
    "ips_3": {"nat.ips": 3},
    "sticky": {"load_balancer.node_choice": "sticky", "load_balancer.dns_ttl": 0.7},
    "sticky_1node": {"load_balancer.node_choice": "sticky", "load_balancer.nodes": 1},
    "weights_uneven": {"load_balancer.node_weights": [0.5, 0.3, 0.2]},
    "weights_uniform": {"load_balancer.node_weights": [1 / 3, 1 / 3, 1 / 3]},
    "weights_zero": {"load_balancer.node_weights": [0.0, 0.5, 0.5]},
    "balancers_2": {"load_balancer.balancers": 2},
    "balancer_weights": {"load_balancer.balancers": 2, "load_balancer.balancer_weights": [0.7, 0.3]},
    "reuse_delay": {"nat.reuse_delay": 0.5},
    "reuse_delay_tiny": {"nat.reuse_delay": 1e-9},
    "sequential": {"nat.allocator": "sequential"},
    "linux": {"nat.allocator": "linux"},
    "eim": {"nat.allocator": "eim"},
    "cip_off": {"load_balancer.client_ip_preservation": False},
    "delay_new": {"target.on_collision": "delay-new"},
    "fail_new": {"target.on_collision": "fail-new"},
    "count": {"target.on_collision": "count"},
    "pre_6_4": {"target.kernel": "pre-6.4"},
    "pre_3_6": {"target.kernel": "pre-3.6"},
    "challenge_ack_1": {"target.challenge_ack_limit": 1},
    "cross_zone_off": {"load_balancer.cross_zone": False},
    "one_node": {"load_balancer.nodes": 1},
    "one_target": {"load_balancer.targets": 1},
    "limit_binds": {"nat.per_destination_limit": 345},     # about 333 live per node
    "narrow_ports": {"nat.port_min": 1024, "nat.port_max": 1400},
    "lognormal": {"traffic.duration": {"dist": "lognormal", "mean": 5.0, "sigma": 1.0}},
    "empirical": {"traffic.duration": {"dist": "empirical", "file": EXAMPLE_CSV,
                                       "column": "duration_s"}},
    "schedule": {"traffic.schedule": [[0, 200.0], [1.0, 900.0], [2.0, 50.0]]},
    "cold": {"traffic.warmup": 0},
}
# first (the fast set): issue 21's bug (TIME_WAIT off, a server-close fraction between 0 and 1:
# the extras copy), then an edge into the plain and one into the general copy
FIRST = ("time_wait_0+scf_half", "time_wait_0+scf_tiny", "one_target", "reuse_delay")


def _edges(extra: int = 60) -> list:
    """Every single move; the pairs that cross two switches at once (TIME_WAIT off with a
    server-close fraction, ...); then `extra` pairs and triples drawn with a fixed seed."""
    names = sorted(MOVES)
    out = {n: [n] for n in names}
    for a in ("time_wait_0", "time_wait_tiny"):
        for b in ("scf_half", "scf_one", "scf_tiny", "scf_almost_one"):
            out[f"{a}+{b}"] = [a, b]
    for a in ("per_client_1ip", "sticky_1node", "weights_uniform", "balancers_2", "one_node",
              "cip_off", "eim"):
        out[f"scf_half+{a}"] = ["scf_half", a]
    d = _Draw(MASTER_SEED + 1)
    while len(out) < len(names) + 15 + extra:
        k = d.pick([2, 2, 3])
        chosen = sorted({d.pick(names) for _ in range(k)})
        out["+".join(chosen)] = chosen
    edges = []
    for name in list(FIRST) + sorted(set(out) - set(FIRST)):
        o = {"traffic.horizon": 3.0, "target.time_wait": 4.0}
        for move in out[name]:
            o.update(MOVES[move])
        edges.append((name, o))
    return edges


EDGES = _edges()
SEED_SCENARIO = Scenario.builtin("seed").to_dict()


# == running and comparing ========================================================================
def _bits(x):
    """A value with every float written as its hex form (bit for bit; -0.0 and nan distinct)."""
    if isinstance(x, float):
        return x.hex()
    if isinstance(x, dict):
        return {k: _bits(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_bits(v) for v in x]
    return x


def run_once(base: dict | None, overrides: dict, seed: int, backend: str, estimate: str,
             until_first: bool = False, budget: int | None = None, general: bool = False):
    """Everything a run returns but its wall-clock fields; or {"refused": exception class}."""
    from collide.engine import _core
    was = _core.use_general_kernel(general)
    try:
        s = Scenario.from_dict(base).replace(overrides)
        bg = engine.bit_generator(seed)
        raw = engine.run(s, bg, backend, estimate, until_first=until_first,
                         budget=budget if backend != "python" else None)
    except Exception as exc:      # noqa: BLE001 - the class is what is compared
        return {"refused": type(exc).__name__}
    finally:
        _core.use_general_kernel(was)
    res = _result(s, seed, backend, raw).to_dict()
    for k in WALL_CLOCK:
        res.pop(k)
    return _bits({"result": res, "counters": raw.counters, "batches": raw.batches.tolist(),
                  "batch_weights": raw.batch_weights.tolist(), "measured_s": raw.measured_s,
                  "finished": raw.finished, "estimate": raw.estimate,
                  "generator": bg.state["state"]})


def compare(base, overrides, seed, until_first=False, budget=None, twin="cython"):
    """Every estimate on the reference and on `twin` (cython: its specialised and its general
    copy)."""
    copies = {"cython": (("cython", False), ("cython", True)), "numba": (("numba", False),),
              "all": (("numba", False), ("cython", False), ("cython", True))}[twin]
    for estimate in ESTIMATES:
        ref = run_once(base, overrides, seed, "python", estimate, until_first)
        for backend, general in copies:
            got = run_once(base, overrides, seed, backend, estimate, until_first, budget, general)
            where = f"{backend}{' (general copy)' if general else ''}, estimate {estimate}"
            if "refused" in ref or "refused" in got:
                assert got == ref, f"{where}: {got} where python gives {ref}"
                continue
            diff = {k: (ref["result"][k], got["result"][k]) for k in ref["result"]
                    if ref["result"][k] != got["result"][k]}
            assert not diff, f"{where}: python vs this backend: {diff}"
            assert got == ref, f"{where}: batches, counters or the generator's state differ"


FAST_DRAWN = range(0, len(DRAWN), 25)
FAST_EDGES = len(FIRST)


def _cases(n, fast, name):
    """The fast ones on cython (and their numba runs in the slow set); the rest on both twins
    against one reference run, slow."""
    out = []
    for k in range(n):
        if k in fast:
            out += [pytest.param(k, "cython", id=f"{name(k)}-cython"),
                    pytest.param(k, "numba", id=f"{name(k)}-numba", marks=pytest.mark.slow)]
        else:
            out.append(pytest.param(k, "all", id=name(k), marks=pytest.mark.slow))
    return out


@pytest.mark.parametrize("i, twins", _cases(len(DRAWN), FAST_DRAWN, lambda i: f"drawn-{i:03d}"))
def test_drawn_scenario_same_on_every_backend(i, twins):
    overrides, seed, until_first, budget = DRAWN[i]
    compare(None, overrides, seed, until_first, budget, twins)


@pytest.mark.parametrize("k, twins", _cases(len(EDGES), range(FAST_EDGES),
                                            lambda k: f"seed+{EDGES[k][0]}"))
def test_seed_scenario_edges_same_on_every_backend(k, twins):
    name, overrides = EDGES[k]
    compare(SEED_SCENARIO, overrides, seed=1 + k, budget=(None, 5, 333)[k % 3], twin=twins)


# == the set itself: what it covers ================================================================
def _scenarios():
    for overrides, *_ in DRAWN:
        try:
            yield Scenario.from_dict(None).replace(overrides)
        except collide.scenario.ScenarioError:
            continue


def test_drawn_set_covers_the_scenario_space():
    """The fixed set reaches every value and edge the kernels branch on (so that it would have
    caught issue 21's bug, and the like): a change of the generator that loses one fails here."""
    valid = list(_scenarios())
    assert len(valid) >= 450                       # a few refusals, not many
    assert len(valid) < len(DRAWN)                 # but some
    from collide.engine import params as C
    seen: dict = {}

    def mark(name, value):
        seen.setdefault(name, set()).add(value)
    for s in valid:
        t, n, lb, tg = s.traffic, s.nat, s.load_balancer, s.target
        mark("dist", t.duration.dist)
        mark("warmup", t.warmup if isinstance(t.warmup, str) else min(float(t.warmup), 1.0))
        mark("schedule", bool(t.schedule))
        mark("allocator", n.allocator)
        mark("ip_choice", (n.ip_choice, n.ips > 1))
        mark("reuse", n.reuse_delay > 0)
        mark("one_port", n.ports == 1)
        mark("limit_binds", n.capacity < n.ports)
        mark("near_exhaustion", t.rate * t.duration.mean / (n.ips * lb.total_nodes) >= 0.9 * n.ports)
        mark("whole_range", n.ports == 64512)
        mark("nodes", min(lb.total_nodes, 3))
        mark("one_target", lb.total_targets == 1)
        mark("zones", isinstance(lb.targets, tuple))
        mark("cross", lb.cross_zone)
        mark("cip", lb.client_ip_preservation)
        mark("sticky", (lb.node_choice, lb.total_nodes > 1))
        mark("weights", (bool(lb.node_weights), len(set(lb.all_weights)) > 1,
                         0.0 in lb.node_weights))
        mark("balancers", lb.balancers > 1)
        mark("balancer_weights", bool(lb.balancer_weights))
        mark("tw_scf", (tg.time_wait > 0, 0 if tg.server_close_fraction == 0 else
                        1 if tg.server_close_fraction == 1 else 0.5))
        mark("outcome", tg.on_collision)
        mark("kernel", tg.kernel)
        mark("ca_limit", tg.challenge_ack_limit > 0)
        mark("syn_retries", len(tg.syn_retries))
        mark("collidable", C.collidable(s))
    assert seen["dist"] == {"exponential", "fixed", "lognormal", "pareto", "empirical"}
    assert seen["warmup"] == {"auto", 0.0, 1.0}
    assert seen["allocator"] == {"random", "sequential", "linux", "eim"}
    assert seen["outcome"] == {"reset-existing", "fail-new", "count", "delay-new"}
    assert seen["kernel"] == {"modern", "pre-6.4", "pre-3.6"}
    assert seen["nodes"] == {1, 2, 3}
    assert seen["ip_choice"] == {(c, m) for c in ("per-connection", "per-client")
                                 for m in (False, True)}
    assert seen["sticky"] == {(c, m) for c in ("per-connection", "sticky") for m in (False, True)}
    assert seen["tw_scf"] == {(a, b) for a in (False, True) for b in (0, 0.5, 1)}
    assert {(True, True, True), (True, False, False), (True, True, False), (False, False, False)} \
        <= seen["weights"]
    assert seen["syn_retries"] == {1, 2, 6}
    for key in ("schedule", "reuse", "one_port", "limit_binds", "near_exhaustion", "whole_range",
                "one_target", "zones", "cross", "cip", "balancers", "balancer_weights",
                "ca_limit", "collidable"):
        assert seen[key] == {False, True}, key
    assert sum(1 for *_, uf, _b in DRAWN if uf) >= 25


def test_edges_cover_every_copy_of_the_cython_kernel():
    """The seed edges reach the plain, extras and general copies, and issue 21's case (TIME_WAIT
    off with 0 < server_close_fraction < 1) is in the fast set."""
    from collide.engine import _core, params as C
    modes = set()
    for name, o in EDGES:
        s = Scenario.from_dict(SEED_SCENARIO).replace(o)
        pi, pf, zs, zc, w, xa = C.build(s, "full")
        modes.add(_core.Engine(pi, pf, zs, zc, w, xa, engine.bit_generator(1)).mode)
    assert modes == {0, 1, 2}
    fast = [o for _, o in EDGES[:FAST_EDGES]]
    assert any(o.get("target.time_wait") == 0.0 and
               0 < o.get("target.server_close_fraction", 0) < 1 for o in fast)
    assert all(not math.isnan(v) for _, o in EDGES for v in o.values() if isinstance(v, float))
