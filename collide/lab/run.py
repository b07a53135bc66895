"""Orchestrate one lab run: build the namespaces, run servers, conntrack listeners and the load, count,
tear down, and put the measurement beside the model's prediction for the same cold-start load."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import counting
from .netns import die_with_parent
from .topology import (PORT, LabConfigError, LabError, LabUnavailable, Topology, client_ip,
                       missing_tools, node_ip, remove_namespaces, stale_namespaces, target_ip)

SCHEMA_VERSION = 1
HERE = Path(__file__).resolve().parent

#: what the two-core machine drives reliably (arrivals per second, live connections)
MAX_RATE = 600.0
MAX_LIVE = 12_000
MAX_SECONDS = 600.0
GRACE_S = 2.0              # after the last arrival: let connects finish, events arrive
CONNECT_TIMEOUT_S = 10.0
LEVEL = 0.999              # the predicted interval's coverage
#: replicate simulations of the lab's own setup behind the predictive interval: enough for the
#: variance of an over-dispersed count to within about 10 % (its relative SE is about sqrt(2/R)
#: for a Poisson count, more for a clumped one), a few seconds for 30 s of load
REPLICATES = 400


class LabPermissionError(LabUnavailable):
    """Not root: the CLI prints one line and exits 3."""


class LabInterrupted(KeyboardInterrupt):
    """SIGTERM during a run (the namespaces are removed before it propagates)."""


# -- the model's side -----------------------------------------------------------------------------
def model_scenario(s, *, rate: float, seconds: float, port_min: int, port_max: int, cross_zone: bool,
                   nat: str, clients: int):
    """The scenario the lab actually runs, as the model sees it (cold start, the lab's port range)."""
    return s.replace({
        "traffic.rate": rate, "traffic.warmup": 0, "traffic.horizon": seconds,
        "traffic.clients": clients,
        "nat.port_min": port_min, "nat.port_max": port_max,
        "nat.per_destination_limit": port_max - port_min + 1,
        "nat.allocator": "random" if nat == "random" else "linux",
        "nat.reuse_delay": 0.0,
        "load_balancer.cross_zone": cross_zone,
    })


#: The lab's clients retransmit an unanswered SYN after 1, 3, 7, 15, 31 and 63 s (Linux: initial RTO
#: 1 s, doubling), which is what `target.syn_retries` means for these hosts.
LINUX_SYN_RETRIES = [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]


def replicate_seed(seed: int, r: int) -> int:
    """Replicate r's seed, as a sweep derives a point's (docs/model.md §2.4): independent streams
    for every (lab seed, r)."""
    import numpy as np
    return int(np.random.SeedSequence(int(seed), spawn_key=(r,)).generate_state(1, np.uint64)[0])


def model_delay_p50(m, *, seeds: int = 4, seed: int = 1) -> float | None:
    """The model's median connect delay of colliding connects under `delay-new` (the challenge ACK
    goes to the older flow, as routed here), pooled over a few seeds."""
    from .. import simulate
    d = m.replace({"target.on_collision": "delay-new", "target.syn_retries": LINUX_SYN_RETRIES})
    hist: dict[float, int] = {}
    for r in range(seeds):
        for delay, count in simulate(d, seed=replicate_seed(seed, r), estimate="off"
                                     ).connect_delay_histogram:
            hist[delay] = hist.get(delay, 0) + count
    total, acc = sum(hist.values()), 0
    for delay in sorted(hist):
        acc += hist[delay]
        if 2 * acc >= total:
            return delay
    return None


def predict(m, *, replicates: int = REPLICATES, seed: int = 1, level: float = LEVEL,
            progress=None) -> dict:
    """The model's predictive law of the lab's count: R replicate simulations of the very setup the
    lab ran (cold start, its rate, range, allocator, cross-zone), each counting first-SYN
    collisions as the lab does. The prediction is their mean; the interval is the central `level`
    interval of a count with their mean and variance (`collide.stats.count_interval`: negative
    binomial when the replicates are over-dispersed, Poisson otherwise), so it holds for every NAT
    mode: a Linux-like allocator's collisions clump (its per-destination offsets are redrawn every
    10 s, so a 30 s run holds about three independent draws per destination), and their variance
    is many times their mean. The closed form (random allocator) is given beside it."""
    from ..analytic import analytic
    from ..stats import count_interval, replicate_moments
    out = {"analytic": None, "analytic_form": None, "simulated_mean": None,
           "simulated_variance": None, "simulated_replicates": 0, "interval": None,
           "simulate_error": None, "delay_p50": None}
    a = analytic(m)
    if a is not None:
        out["analytic"] = a.expected_collisions
        out["analytic_form"] = a.form
    try:
        from .. import simulate      # the engine
    except ImportError as exc:
        out["simulate_error"] = f"collide.simulate not available ({exc})"
        return out
    try:
        if progress is not None:
            progress(f"lab: the model's prediction: {replicates} replicate simulations of this setup")
        counts = [simulate(m, seed=replicate_seed(seed, r), estimate="off").collisions
                  for r in range(replicates)]
        mean, var = replicate_moments(counts)
        out.update(simulated_mean=mean, simulated_variance=var, simulated_replicates=replicates,
                   interval=list(count_interval(mean, var, level)))
        out["delay_p50"] = model_delay_p50(m, seed=seed)
    except Exception as exc:      # noqa: BLE001  (a prediction detail must not lose a lab run)
        out["simulate_error"] = f"{type(exc).__name__}: {exc}"
    return out


# -- processes --------------------------------------------------------------------------------------
class _Procs:
    """Every process the lab starts, ended by its own PID."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, preexec_fn=die_with_parent, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 3.0) -> None:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:       # noqa: BLE001  (keep ending the others)
                pass
        self.procs.clear()


def _say(progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


def _wait_file(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    t_end = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise LabError(f"a lab process exited early (code {proc.returncode})")
        if time.time() > t_end:
            raise LabError(f"timed out waiting for {path.name}")
        time.sleep(0.05)


def _cz_text(cz) -> str:
    return {True: "on", False: "off"}.get(cz, str(cz))


def _nstat(ns: str) -> dict[str, int]:
    """The kernel's absolute TCP counters in one of the lab's namespaces (made for this run, so
    absolute is since the run began)."""
    p = subprocess.run(["ip", "netns", "exec", ns, "nstat", "-a", "-s", "-z"], capture_output=True,
                       text=True)
    return counting.parse_nstat(p.stdout)


def check_environment() -> None:
    if os.geteuid() != 0:
        raise LabPermissionError("collide lab needs root (network namespaces, nftables, conntrack); "
                                 "run it as root")
    missing = missing_tools()
    if missing:
        raise LabUnavailable("collide lab needs the Debian packages " + ", ".join(missing)
                             + ": apt-get install -y " + " ".join(missing))
    if not Path("/proc/sys/net").exists():
        raise LabUnavailable("collide lab: /proc/sys/net is not available (run it on a Linux host "
                             "or a privileged container)")


# -- the run ----------------------------------------------------------------------------------------
def run_lab(scenario, seconds: float, cross_zone: bool | str | None = None, nat: str = "random",
            progress=None, *, seed: int | None = None, port_range: tuple[int, int] | None = None,
            clients: int | None = None, keep_logs: str | Path | None = None,
            max_rate: float = MAX_RATE, routing: str = "older",
            capture_dir: str | Path | None = None) -> dict:
    """Run `scenario` on the kernel for `seconds` of load and compare with the model (docs/model.md §4.6).

    `cross_zone` None keeps the scenario's setting; "one-sided" turns it on at node 0 only (no
    prediction: the model has no such setting); `nat` is "random" (fully-random SNAT; the model's
    `random` allocator) or "preserve" (port-preserving SNAT in front of Linux clients; `linux`).
    `port_range` narrows the NAT's ports (the model uses the same). `routing`: where a target's
    challenge ACK goes, "older" (the established socket's node: the new connect is delayed) or
    "new" (the node of the latest SYN: the older connection is reset). `capture_dir`: tcpdump runs
    in each target's namespace and writes `target-<t>.pcap` there (`collide scan` reads them).
    Returns a JSON-ready dict.
    """
    from ..scenario import Scenario
    t_start = time.time()
    s = Scenario.load(scenario)
    if nat not in ("random", "preserve"):
        raise LabConfigError(f"--nat {nat!r}: allowed: random, preserve")
    if not (isinstance(seconds, (int, float)) and 1 <= seconds <= MAX_SECONDS):
        raise LabConfigError(f"--horizon {seconds}: allowed 1..{MAX_SECONDS:g} seconds")
    lb = s.load_balancer
    if not lb.client_ip_preservation:
        raise LabConfigError("load_balancer.client_ip_preservation = false: the lab builds nodes that "
                             "keep the client address only (the model gives zero collisions)")
    if lb.node_choice != "per-connection":
        raise LabConfigError(f"load_balancer.node_choice = {lb.node_choice!r}: the lab supports "
                             "per-connection only")
    if cross_zone not in (None, True, False, "one-sided"):
        raise LabConfigError(f"cross-zone {cross_zone!r}: allowed: on, off, one-sided")
    cz = lb.cross_zone if cross_zone is None else cross_zone
    pmin, pmax = port_range or (s.nat.port_min, s.nat.port_max)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    n_clients = clients or (min(s.traffic.clients, 16) if nat == "preserve"
                            else max(2, min(s.traffic.clients, 8)))
    topo = Topology(nodes=lb.nodes, zone_targets=lb.zone_targets, nat_ips=s.nat.ips, clients=n_clients,
                    cross_zone=cz, nat=nat, port_min=pmin, port_max=pmax, ip_choice=s.nat.ip_choice,
                    routing=routing)
    check_environment()
    captures: list[str] = []
    forwarder_captures: list[str] = []
    if capture_dir is not None:
        if shutil.which("tcpdump") is None:
            raise LabUnavailable("collide lab --capture needs the Debian package tcpdump: "
                                 "apt-get install -y tcpdump")
        cdir = Path(capture_dir)
        if cdir.exists() and not cdir.is_dir():
            raise LabConfigError(f"--capture {capture_dir}: exists and is not a directory")
        cdir.mkdir(parents=True, exist_ok=True)
        captures = [str(cdir / f"target-{t}.pcap") for t in range(topo.targets)]
        # the same traffic seen by hosts that forward it: the NAT (both its sides) and one
        # load-balancer node; kept apart so that `collide scan DIR/*.pcap` reads the targets only
        (cdir / "forwarders").mkdir(exist_ok=True)
        forwarder_captures = [str(cdir / "forwarders" / "nat.pcap"),
                              str(cdir / "forwarders" / "node-0.pcap")]

    notes: list[str] = []
    D = s.traffic.duration.mean
    rate = s.traffic.rate
    cap = min(max_rate, MAX_LIVE / D)
    if rate > cap:
        notes.append(f"scaled down: the scenario's {rate:g} connections/s (about {rate * D:.0f} live) is "
                     f"more than two cores drive reliably here; running {cap:.4g}/s, and the model is run "
                     "at the same rate")
        _say(progress, "lab: " + notes[-1])
        rate = cap
    max_connections = int(rate * seconds * 1.5 + 100)

    stale = stale_namespaces()
    if stale:
        remove_namespaces(stale)
        _say(progress, f"lab: removed {len(stale)} namespaces left by a lab process that no longer runs")

    workdir = Path(tempfile.mkdtemp(prefix="collide-lab-"))
    procs = _Procs()
    cleaned = threading.Event()

    def cleanup() -> None:
        if cleaned.is_set():
            return
        cleaned.set()
        masked = {}
        if threading.current_thread() is threading.main_thread():   # a second signal must not
            for sig in (signal.SIGTERM, signal.SIGINT):               # cut the teardown short
                masked[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            procs.stop_all()
            left = topo.teardown()
        finally:
            for sig, handler in masked.items():
                signal.signal(sig, handler)
        if left:
            print(f"collide lab: could not remove namespaces {', '.join(left)}", file=sys.stderr)
        if keep_logs:
            dest = Path(keep_logs)
            dest.mkdir(parents=True, exist_ok=True)
            for f in workdir.iterdir():
                shutil.copy(f, dest / f.name)
        shutil.rmtree(workdir, ignore_errors=True)

    def on_sigterm(signum, frame):
        raise LabInterrupted()

    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    atexit.register(cleanup)
    try:
        _say(progress, f"lab: building {len(topo.all_namespaces())} namespaces "
                       f"({lb.nodes} nodes, {topo.targets} targets, NAT {nat}, "
                       f"cross-zone {_cz_text(cz)}, ports {pmin}-{pmax})")
        topo.setup()
        deadline = time.time() + seconds + 120
        # servers
        srv_cfg = {"backends": [[topo.backend_ns(t), target_ip(t)] for t in range(topo.targets)],
                   "port": PORT, "log": str(workdir / "servers.log"), "deadline": deadline,
                   "ready": str(workdir / "servers.ready")}
        (workdir / "servers.json").write_text(json.dumps(srv_cfg))
        srv = procs.start([sys.executable, str(HERE / "servers.py"), str(workdir / "servers.json")])
        # conntrack event listeners: the NAT's mappings, each node's target choice
        listeners = {}
        for name, ns in [("nat", topo.nat_ns)] + [(f"n{j}", topo.node_ns(j)) for j in range(lb.nodes)]:
            f = open(workdir / f"ct-{name}.log", "w")
            listeners[name] = procs.start(
                ["timeout", "-s", "TERM", str(int(seconds + 120)), "ip", "netns", "exec", ns,
                 "conntrack", "-E", "-e", "NEW", "-p", "tcp", "-o", "timestamp", "-b", "8388608"],
                stdout=f, stderr=subprocess.DEVNULL)
            f.close()
        # packet captures at the targets: tcpdump in each backend namespace, headers only
        dumps = []
        where = ([topo.backend_ns(t) for t in range(len(captures))]
                 + [topo.nat_ns, topo.node_ns(0)][:len(forwarder_captures)])
        for t, (ns, path) in enumerate(zip(where, captures + forwarder_captures)):
            err = open(workdir / f"tcpdump-{t}.err", "w")
            dumps.append(procs.start(
                ["timeout", "-s", "TERM", str(int(seconds + 120)), "ip", "netns", "exec",
                 ns, "tcpdump", "-i", "any", "-n", "-s", "128", "-U", "-Z", "root",
                 "--immediate-mode", "-w", path, "tcp", "port", str(PORT)],
                stdout=subprocess.DEVNULL, stderr=err))
            err.close()
        for t, p in enumerate(dumps):
            t_end = time.time() + 10
            while "listening on" not in (workdir / f"tcpdump-{t}.err").read_text():
                if p.poll() is not None or time.time() > t_end:
                    raise LabError(f"tcpdump in namespace {where[t]} did not start: "
                                   + (workdir / f"tcpdump-{t}.err").read_text().strip()[:200])
                time.sleep(0.05)
        _wait_file(workdir / "servers.ready", srv, 10)
        time.sleep(0.4)   # let the listeners subscribe
        for name, p in listeners.items():
            if p.poll() is not None:
                raise LabError(f"conntrack -E in the {name} namespace exited (code {p.returncode})")
        # the load
        load_cfg = {"ns": topo.client_ns, "clients": [client_ip(c) for c in range(n_clients)],
                    "nodes": [node_ip(j) for j in range(lb.nodes)],
                    "node_weights": list(lb.node_weights), "port": PORT, "rate": rate,
                    "seconds": seconds, "grace": GRACE_S, "duration": s.traffic.duration.to_dict(),
                    "seed": seed, "server_close_fraction": s.target.server_close_fraction,
                    "connect_timeout": CONNECT_TIMEOUT_S, "max_connections": max_connections,
                    "log": str(workdir / "load.log")}
        (workdir / "load.json").write_text(json.dumps(load_cfg))
        _say(progress, f"lab: {rate:g} connections/s for {seconds:g} s "
                       f"({s.traffic.duration.dist} lifetimes, mean {D:g} s)")
        load = procs.start([sys.executable, str(HERE / "load.py"), str(workdir / "load.json")])
        capture_nstat: list[dict] = []
        if dumps:
            # stop the captures in the load's grace period, before its exit closes the sockets
            # still open: those connections are then censored at the capture's end, as they are
            # in any real capture, instead of ending all at once. Each target's kernel counters
            # are read just before its tcpdump is told to stop, so that what the capture shows
            # (challenge ACKs, TIME_WAIT answers) and what the kernel counted cover one stretch
            try:
                load.wait(max(0.5, seconds + GRACE_S - 0.5))
            except subprocess.TimeoutExpired:
                pass
            for t, p in enumerate(dumps):
                if t < topo.targets:
                    capture_nstat.append(_nstat(topo.backend_ns(t)))
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
            for p in dumps:
                procs.stop(p)
        try:
            load.wait(seconds + GRACE_S + 30)
        except subprocess.TimeoutExpired:
            raise LabError("the load did not stop by itself") from None
        if load.returncode != 0:
            raise LabError(f"the load exited with code {load.returncode}")
        time.sleep(0.3)
        # kernel counters, before anything closes
        nstat_by_backend = [_nstat(topo.backend_ns(t)) for t in range(topo.targets)]
        nstat_client = _nstat(topo.client_ns)
        for p in listeners.values():
            procs.stop(p)
        procs.stop(srv)
        # count
        read = lambda name: (workdir / name).read_text().splitlines()   # noqa: E731
        load_recs, summary = counting.parse_load(read("load.log"))
        nat_ev = counting.parse_conntrack(read("ct-nat.log"))
        node_ev = {j: counting.parse_conntrack(read(f"ct-n{j}.log")) for j in range(lb.nodes)}
        servers = counting.parse_servers(read("servers.log"))
    except KeyboardInterrupt:
        cleanup()
        raise
    finally:
        cleanup()
        atexit.unregister(cleanup)
        if in_main:
            signal.signal(signal.SIGTERM, old_term)

    arrivals = summary.get("arrivals", len(load_recs))
    run_s = seconds
    achieved = arrivals / run_s
    c = counting.count_collisions(load_recs, nat_ev, node_ev, servers,
                                  [node_ip(j) for j in range(lb.nodes)],
                                  [target_ip(t) for t in range(topo.targets)])
    if c.mapped < 0.99 * arrivals:
        notes.append(f"only {c.mapped} of {arrivals} first SYNs were seen in the NAT's conntrack events")
    if c.unmatched_node:
        notes.append(f"{c.unmatched_node} first SYNs had no target in the node's conntrack events")
    if summary.get("max_lag_s", 0) > 0.5:
        notes.append(f"the load fell behind its Poisson schedule by up to {summary['max_lag_s']:.2f} s")

    m = model_scenario(s, rate=achieved, seconds=run_s, port_min=pmin, port_max=pmax,
                       cross_zone=cz is not False, nat=nat, clients=n_clients)
    if cz == "one-sided":
        pred = {"analytic": None, "simulated_mean": None, "simulated_variance": None,
                "simulated_replicates": 0, "interval": None, "delay_p50": None,
                "simulate_error": "the model has no one-sided cross-zone setting"}
    else:
        pred = predict(m, seed=seed, progress=progress)
    predicted, interval, source = pred["simulated_mean"], pred["interval"], None
    if predicted is not None:
        source = (f"engine, {pred['simulated_replicates']} replicates of this setup "
                  f"({m.nat.allocator} allocator); interval: their mean and variance")
    else:
        notes.append("no prediction: the engine is not available"
                     + (f" ({pred['simulate_error']})" if pred["simulate_error"] else ""))
    within = None if interval is None else interval[0] <= c.collisions <= interval[1]

    kernel = {name: sum(n.get(name, 0) for n in nstat_by_backend) for name in counting.COUNTERS}
    established = sum(1 for r in servers)
    out = {
        "schema_version": SCHEMA_VERSION,
        "seconds": run_s,
        "nat": nat,
        "cross_zone": cz,
        "connections": arrivals,
        "established": established,
        "measured_collisions": c.collisions,
        "predicted_collisions": predicted,
        "predicted_interval": interval,
        "interval_level": LEVEL,
        "within_interval": within,
        "prediction_source": source,
        "simulated_collisions_mean": pred["simulated_mean"],
        "simulated_collisions_variance": pred["simulated_variance"],
        "simulated_replicates": pred["simulated_replicates"],
        "analytic_collisions": pred["analytic"],
        "syn_challenges": kernel["TcpExtTCPSYNChallenge"],
        "challenge_acks": kernel["TcpExtTCPChallengeACK"],
        "estab_resets": kernel["TcpEstabResets"],
        "kernel_counters": kernel,
        "client_counters": {k: nstat_client.get(k, 0) for k in
                            ("TcpExtTCPSynRetrans", "TcpAttemptFails", "TcpEstabResets",
                             "TcpExtTCPTimeouts")},
        "clients": counting.client_outcomes(load_recs),
        "pairs": c.pairs,
        "first_syns_seen": c.mapped,
        "nat_remaps": c.nat_remaps,
        "reused_mappings": c.reused_mappings,
        "same_node_hits": c.same_node_hits,
        "time_wait_hits": c.time_wait_hits,
        "collisions_by_client_outcome": c.collisions_by_outcome,
        "collision_connect_s_median": (sorted(c.collision_connect_s)[len(c.collision_connect_s) // 2]
                                       if c.collision_connect_s else None),
        "model_connect_delay_p50_s": pred.get("delay_p50"),
        "examples": c.examples,
        "rate": s.traffic.rate,
        "rate_driven": round(achieved, 3),
        "duration": s.traffic.duration.to_dict(),
        "nodes": lb.nodes,
        "targets": topo.targets,
        "nat_ips": s.nat.ips,
        "client_addresses": n_clients,
        "port_min": pmin,
        "port_max": pmax,
        "model_allocator": m.nat.allocator,
        "challenge_ack_routing": routing,
        "model_outcome": "delay-new" if routing == "older" else "reset-existing",
        "captures": captures,
        "forwarder_captures": forwarder_captures,
        # each target's counters when its capture stopped (what the capture can be held to)
        "capture_kernel_counters": (
            {name: sum(n.get(name, 0) for n in capture_nstat) for name in counting.COUNTERS}
            if capture_nstat else None),
        # the lifetimes the load drew (what a capture's lifetime estimate should find)
        "lifetime_mean_s": (sum(r["life"] for r in load_recs if r.get("life") is not None)
                            / max(1, sum(1 for r in load_recs if r.get("life") is not None))),
        "seed": seed,
        "notes": notes,
        "elapsed_s": round(time.time() - t_start, 2),
        "scenario": m.to_dict(),
    }
    if capture_dir is not None:         # the captures carry the lab's own account of them
        Path(capture_dir, "lab.json").write_text(json.dumps(out, indent=1, allow_nan=False))
    return out
