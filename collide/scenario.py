"""The scenario model: docs/model.md §4.1 tables loaded into typed, immutable, validated objects.

Every key has a default; unknown keys, wrong types and out-of-range values raise
:class:`ScenarioError` with one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError

__all__ = ["Scenario", "Traffic", "Duration", "Nat", "LoadBalancer", "Target", "ScenarioError",
           "builtin_names", "NODE_PORTS_PER_TARGET"]

#: With client IP preservation off, a node's own SNAT allows this many live connections per target.
NODE_PORTS_PER_TARGET = 55_000

DISTRIBUTIONS = {"exponential": ("mean",), "fixed": ("mean",), "lognormal": ("mean", "sigma"),
                 "pareto": ("mean", "alpha"), "empirical": ("file", "column")}
ALLOCATORS = ("random", "sequential", "linux", "eim")
IP_CHOICES = ("per-connection", "per-client")
NODE_CHOICES = ("per-connection", "sticky")
OUTCOMES = ("reset-existing", "fail-new", "count", "delay-new")
KERNELS = ("modern", "pre-6.4", "pre-3.6")
#: Linux's SYN retransmission times after the first SYN (initial RTO 1 s, doubling; 6 retries).
SYN_RETRIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class ScenarioError(InputError):
    """A scenario key has a value that is not allowed. The message is one line (exit 2)."""


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ScenarioError(f"{key} = {_fmt(value)}: {allowed}")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (np.int64(2) is an integer here; numpy is
    not imported for this)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _plain_value(value: Any) -> Any:
    """numpy scalars and arrays inside a value as Python numbers and lists."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain_value(x) for x in value]
    if isinstance(value, Mapping):
        return {k: _plain_value(v) for k, v in value.items()}
    return value


def _number(key: str, value: Any, *, gt: float | None = None, ge: float | None = None,
            le: float | None = None) -> float:
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(key, value, "must be a finite number")
    if gt is not None and not value > gt:
        _fail(key, value, f"must be > {gt:g}")
    if ge is not None and not value >= ge:
        _fail(key, value, f"must be >= {ge:g}")
    if le is not None and not value <= le:
        _fail(key, value, f"must be <= {le:g}")
    return float(value)


def _integer(key: str, value: Any, *, ge: int | None = None, le: int | None = None) -> int:
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, value, "must be an integer")
    if ge is not None and value < ge:
        _fail(key, value, f"must be an integer >= {ge}")
    if le is not None and value > le:
        _fail(key, value, f"must be an integer <= {le}")
    return int(value)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(key, value, "must be true or false")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        _fail(key, value, "must be one of " + ", ".join(allowed))
    return value


@dataclass(frozen=True)
class Duration:
    """Connection lifetime law: exponential/fixed{mean}, lognormal{mean, sigma}, pareto{mean, alpha}."""
    dist: str = "exponential"
    mean: float = 30.0
    sigma: float = 1.0
    alpha: float = 2.5
    #: empirical: the lifetimes file (resolved, absolute), its CSV column (None: one value a line),
    #: and the loaded lifetimes in file order; `mean` is their sample mean.
    file: str | None = None
    column: str | None = None
    values: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict:
        if self.dist == "empirical":
            d = {"dist": self.dist, "file": self.file}
            if self.column is not None:
                d["column"] = self.column
            return d
        d = {"dist": self.dist, "mean": self.mean}
        if self.dist == "lognormal":
            d["sigma"] = self.sigma
        if self.dist == "pareto":
            d["alpha"] = self.alpha
        return d

    @property
    def second_moment(self) -> float:
        """E[L^2], for the length-biased (equilibrium) law."""
        m = self.mean
        if self.dist == "empirical":
            if len(self.values) <= 1_000_000:
                return math.fsum(v * v for v in self.values) / len(self.values)
            import numpy as np          # a measured file of millions: pairwise sum, as precise
            a = np.asarray(self.values)
            return float(np.dot(a, a)) / a.size
        if self.dist == "exponential":
            return 2 * m * m
        if self.dist == "fixed":
            return m * m
        if self.dist == "lognormal":
            return m * m * math.exp(self.sigma ** 2)
        a = self.alpha
        return math.inf if a <= 2 else m * m * (a - 1) ** 2 / (a * (a - 2))


@dataclass(frozen=True)
class Traffic:
    rate: float = 500.0
    duration: Duration = field(default_factory=Duration)
    horizon: float = 3600.0
    warmup: str | float = "auto"
    clients: int = 1000
    #: piecewise-constant load: ((start_s, rate), ...) from the start of the measured window;
    #: empty: the constant `rate`.
    schedule: tuple[tuple[float, float], ...] = ()

    @property
    def rate_before(self) -> float:
        """The rate before and at the start of the measured window (warm-up, stationary start)."""
        return self.schedule[0][1] if self.schedule else self.rate

    @property
    def mean_rate(self) -> float:
        """Arrivals per second averaged over the measured window."""
        if not self.schedule:
            return self.rate
        total = 0.0
        for i, (start, rate) in enumerate(self.schedule):
            if start >= self.horizon:
                break
            end = self.schedule[i + 1][0] if i + 1 < len(self.schedule) else self.horizon
            total += rate * (min(end, self.horizon) - start)
        return total / self.horizon


@dataclass(frozen=True)
class Nat:
    ips: int = 1
    ip_choice: str = "per-connection"
    port_min: int = 1024
    port_max: int = 65535
    per_destination_limit: int = 55000
    allocator: str = "random"
    reuse_delay: float = 0.0

    @property
    def ports(self) -> int:
        return self.port_max - self.port_min + 1

    @property
    def capacity(self) -> int:
        """Live connections one destination (ip, node) can hold."""
        return min(self.per_destination_limit, self.ports)


@dataclass(frozen=True)
class LoadBalancer:
    nodes: int = 3
    node_weights: tuple[float, ...] = ()
    node_choice: str = "per-connection"
    dns_ttl: float = 60.0
    targets: int | tuple[int, ...] = 6
    cross_zone: bool = True
    client_ip_preservation: bool = True
    balancers: int = 1                       # load balancers (entry points) sharing the targets
    balancer_weights: tuple[float, ...] = ()  # share of connections per balancer; empty: uniform

    @property
    def total_nodes(self) -> int:
        """Nodes of all balancers; node e is node e % nodes (its zone) of balancer e // nodes."""
        return self.balancers * self.nodes

    @property
    def all_weights(self) -> tuple[float, ...]:
        """Per-connection probability of each of the total_nodes nodes."""
        bw = self.balancer_weights or tuple(1.0 / self.balancers for _ in range(self.balancers))
        return tuple(b * w for b in bw for w in self.weights)

    @property
    def zone_targets(self) -> tuple[int, ...]:
        """Targets per zone: a list as given, or an integer spread evenly (first zones get the rest)."""
        if isinstance(self.targets, tuple):
            return self.targets
        q, r = divmod(self.targets, self.nodes)
        return tuple(q + (1 if j < r else 0) for j in range(self.nodes))

    @property
    def total_targets(self) -> int:
        return sum(self.zone_targets)

    @property
    def weights(self) -> tuple[float, ...]:
        return self.node_weights or tuple(1.0 / self.nodes for _ in range(self.nodes))


@dataclass(frozen=True)
class Target:
    time_wait: float = 60.0
    server_close_fraction: float = 0.0
    on_collision: str = "reset-existing"
    kernel: str = "modern"
    syn_retries: tuple[float, ...] = SYN_RETRIES
    challenge_ack_limit: int = 0        # challenge ACKs per second; 0 = unlimited

    @property
    def delays(self) -> bool:
        """Whether a collision can leave the new connection retrying (docs/model-fidelity.md)."""
        return (self.on_collision == "delay-new" or self.kernel != "modern"
                or self.challenge_ack_limit > 0)

    @property
    def resets(self) -> bool:
        """Whether a collision can reset a connection (a reset victim): under `delay-new`,
        `fail-new`, `count` and a `pre-6.4` kernel none ever is, and "time to first reset" would
        name something that never happens."""
        if self.kernel == "pre-3.6":
            return True
        return self.on_collision == "reset-existing" and self.kernel == "modern"


_SECTIONS = {"traffic": Traffic, "nat": Nat, "load_balancer": LoadBalancer, "target": Target}

#: Short names accepted by Scenario.replace and the CLI, mapped to dotted keys.
ALIASES = {
    "rate": "traffic.rate", "horizon": "traffic.horizon", "warmup": "traffic.warmup",
    "clients": "traffic.clients", "nodes": "load_balancer.nodes", "targets": "load_balancer.targets",
    "nat_ips": "nat.ips", "ips": "nat.ips", "allocator": "nat.allocator",
    "on_collision": "target.on_collision", "cross_zone": "load_balancer.cross_zone",
    "client_ip_preservation": "load_balancer.client_ip_preservation",
}


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(prefix: str, given: Mapping, allowed) -> None:
    if not isinstance(given, Mapping):
        _fail(prefix.rstrip("."), given, "must be a table")
    for key in given:
        if key not in allowed:
            raise ScenarioError(f"{prefix}{key}: unknown key{_did_you_mean(key, allowed)}; "
                                f"allowed: {', '.join(allowed)}")


#: A lifetimes file is read as a stream up to this size (about 10^8 values); beyond, it is refused.
LIFETIMES_MAX_BYTES = 2 ** 30
#: Files larger than this show a progress bar while they are read.
LIFETIMES_PROGRESS_BYTES = 32 * 2 ** 20


def _read_lifetimes(path: Path, column: str | None) -> tuple[float, ...]:
    """Lifetimes in seconds from a file: one a line, or a CSV column named in a header line."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ScenarioError(f"traffic.duration.file = {str(path)!r}: cannot read "
                            f"({exc.strerror})") from None
    import stat as _stat
    if _stat.S_ISDIR(st.st_mode):
        raise ScenarioError(f"traffic.duration.file = {str(path)!r}: is a directory, not a file")
    return _read_lifetimes_cached(str(path), column, st.st_mtime_ns, st.st_size)


def _parse_chunk(lines: list[str], first: int, column_index: int | None, path: str, column):
    """One chunk of a lifetimes file as a float array; ScenarioError names the first bad line."""
    import csv

    import numpy as np

    def bad(line: int, problem: str):
        raise ScenarioError(f"traffic.duration.file {path}, line {line}: {problem}")
    if column_index is None and lines:
        # fast path: one number a line, no comment, no blank line (numpy parses them in C)
        joined = "\n".join(lines)
        if "#" not in joined:
            tokens = joined.split()
            if len(tokens) == len(lines):
                try:
                    values = np.array(tokens, dtype=np.float64)
                except ValueError:
                    values = None
                if values is not None:
                    ok = np.isfinite(values) & (values > 0) & (values <= MAX_LIFETIME)
                    if not ok.all():
                        i = int(np.argmin(ok))
                        bad(first + i, _bad_lifetime(tokens[i], values[i]))
                    return values
    cells, where = [], []
    if column_index is None:
        for i, line in enumerate(lines):
            t = line.strip()
            if t and not t.startswith("#"):
                cells.append(t)
                where.append(first + i)
    else:
        for i, row in enumerate(csv.reader(lines)):
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            if column_index >= len(row):
                bad(first + i, f"no field for column {column!r}")
            cells.append(row[column_index].strip())
            where.append(first + i)
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is None:                   # find the first bad cell, and say what is wrong with it
        for cell, line in zip(cells, where):
            try:
                float(cell)
            except ValueError:
                if column_index is None and "," in cell:
                    bad(line, f"{len(cell.split(','))} fields, expected one lifetime a line "
                              "(or set traffic.duration.column for a CSV)")
                bad(line, f"{cell!r} is not a number of seconds")
    ok = np.isfinite(values) & (values > 0) & (values <= MAX_LIFETIME)
    if not ok.all():
        i = int(np.argmin(ok))
        bad(where[i], _bad_lifetime(cells[i], values[i]))
    return values


def _bad_lifetime(cell: str, value: float) -> str:
    if math.isfinite(value) and value > MAX_LIFETIME:
        return (f"lifetime {cell} s is more than {MAX_LIFETIME:.0e} s (31 years): are the values "
                "in seconds?")
    return f"lifetime {cell} must be a finite number of seconds > 0"


@functools.lru_cache(maxsize=8)
def _read_lifetimes_cached(path: str, column: str | None, _stamp: int, size: int) -> tuple[float, ...]:
    """Stream-parse the file: bounded (LIFETIMES_MAX_BYTES, lines of at most 1 MiB), a chunk at a
    time into float arrays, a progress bar for large files."""
    import csv

    import numpy as np

    from . import files
    from .errors import InputError
    what = "traffic.duration.file"
    bar = None
    if size > LIFETIMES_PROGRESS_BYTES:
        from .progress import Progress
        bar = Progress("reading lifetimes", total=size, unit="B", unit_scale=True)
    parts = []
    col = None
    last = 0
    try:
        for first, lines in files.iter_line_chunks(
                path, what, LIFETIMES_MAX_BYTES,
                progress=None if bar is None else (lambda n, _t: bar.update_to(n))):
            last = first + len(lines) - 1
            if column is not None and col is None:
                if not lines:
                    continue
                header = [h.strip() for h in next(csv.reader(lines[:1]))]
                if column not in header:
                    raise ScenarioError(f"traffic.duration.file {path}, line 1: no column "
                                        f"{column!r} in the header (columns: {', '.join(header)})")
                col = header.index(column)
                lines, first = lines[1:], first + 1
            parts.append(_parse_chunk(lines, first, col, path, column))
    except InputError as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    if column is not None and col is None:
        raise ScenarioError(f"traffic.duration.file {path}, line 1: empty file, expected a header "
                            f"naming column {column!r}")
    values = np.concatenate(parts) if parts else np.empty(0)
    if values.size == 0:
        raise ScenarioError(f"traffic.duration.file {path}, line {max(last, 1)}: no lifetimes in "
                            "the file")
    return tuple(values.tolist())


def _duration(value: Any, base: Path | None = None) -> Duration:
    key = "traffic.duration"
    if not isinstance(value, Mapping):
        _fail(key, value, 'must be a table such as { dist = "exponential", mean = 30.0 }')
    dist = value.get("dist", "exponential")
    dist = _choice(f"{key}.dist", dist, tuple(DISTRIBUTIONS))
    _check_keys(f"{key}.", value, ("dist",) + DISTRIBUTIONS[dist])
    if dist == "empirical":
        f = value.get("file")
        if not isinstance(f, str) or not f:
            _fail(f"{key}.file", f, "must be the path of a lifetimes file (one lifetime in "
                                    "seconds a line, or a CSV with a header and `column`)")
        column = value.get("column")
        if column is not None and (not isinstance(column, str) or not column):
            _fail(f"{key}.column", column, "must be the name of a column in the file's header")
        path = Path(f).expanduser()
        if not path.is_absolute():
            path = (base if base is not None else Path.cwd()) / path
        path = path.resolve()
        values = _read_lifetimes(path, column)
        mean = math.fsum(values) / len(values)
        return Duration(dist, mean, 1.0, 2.5, str(path), column, values)
    mean = _number(f"{key}.mean", value.get("mean", 30.0), gt=0)
    sigma = _number(f"{key}.sigma", value.get("sigma", 1.0), ge=0)
    if sigma > 20:
        _fail(f"{key}.sigma", sigma, "must be <= 20")
    alpha = _number(f"{key}.alpha", value.get("alpha", 2.5), gt=1)
    return Duration(dist, mean, sigma, alpha)


def _schedule(value: Any) -> tuple[tuple[float, float], ...]:
    key = "traffic.schedule"
    allowed = ("must be a list of [start_s, rate] pairs: first start 0, starts strictly "
               "increasing, rates > 0")
    if not isinstance(value, (list, tuple)):
        _fail(key, value, allowed)
    out = []
    for i, pair in enumerate(value):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float))
                       or not math.isfinite(x) for x in pair)):
            _fail(f"{key}[{i}]", list(pair) if isinstance(pair, tuple) else pair, allowed)
        start, rate = float(pair[0]), float(pair[1])
        if i == 0 and start != 0:
            _fail(f"{key}[0]", [start, rate], "the first start must be 0 (the start of the "
                                              "measured window)")
        if i > 0 and not start > out[-1][0]:
            _fail(f"{key}[{i}]", [start, rate], f"starts must increase strictly (previous "
                                                f"{out[-1][0]:g})")
        if not rate > 0:
            _fail(f"{key}[{i}]", [start, rate], "rates must be > 0")
        out.append((start, rate))
    return tuple(out)


#: The shortest measured window: below it the window is no time at all (5e-324 is a positive
#: float, and the batches of the estimate would have width 0).
MIN_HORIZON = 1e-3
#: The longest TIME_WAIT and NAT reuse delay: a day (Linux's TIME_WAIT is 60 s, 2 MSL at most
#: 240 s); each is simulated as burn-in before the window.
MAX_DELAY = 86400.0
#: The longest lifetime a lifetimes file may hold (about 31.7 years): more is a unit mistake.
MAX_LIFETIME = 1e9


def _horizon(value: Any) -> float:
    h = _number("traffic.horizon", value, gt=0)
    if h < MIN_HORIZON:
        _fail("traffic.horizon", value, f"must be >= {MIN_HORIZON:g} seconds")
    return h


def _traffic(d: Mapping, base: Path | None = None) -> Traffic:
    _check_keys("traffic.", d, [f.name for f in dataclasses.fields(Traffic)])
    warmup = d.get("warmup", "auto")
    if isinstance(warmup, str):
        if warmup != "auto":
            _fail("traffic.warmup", warmup, 'must be "auto", or a number of seconds >= 0')
    else:
        warmup = _number("traffic.warmup", warmup, ge=0)
    return Traffic(rate=_number("traffic.rate", d.get("rate", 500.0), gt=0),
                   duration=_duration(d.get("duration", {}), base),
                   horizon=_horizon(d.get("horizon", 3600.0)),
                   warmup=warmup,
                   clients=_integer("traffic.clients", d.get("clients", 1000), ge=1, le=10_000_000),
                   schedule=_schedule(d.get("schedule", [])))


def _nat(d: Mapping) -> Nat:
    _check_keys("nat.", d, [f.name for f in dataclasses.fields(Nat)])
    pmin = _integer("nat.port_min", d.get("port_min", 1024), ge=1, le=65535)
    pmax = _integer("nat.port_max", d.get("port_max", 65535), ge=1, le=65535)
    if pmin > pmax:
        _fail("nat.port_min", pmin, f"must be <= nat.port_max ({pmax})")
    return Nat(ips=_integer("nat.ips", d.get("ips", 1), ge=1, le=4096),
               ip_choice=_choice("nat.ip_choice", d.get("ip_choice", "per-connection"), IP_CHOICES),
               port_min=pmin, port_max=pmax,
               per_destination_limit=_integer("nat.per_destination_limit",
                                              d.get("per_destination_limit", 55000), ge=1),
               allocator=_choice("nat.allocator", d.get("allocator", "random"), ALLOCATORS),
               reuse_delay=_number("nat.reuse_delay", d.get("reuse_delay", 0.0), ge=0,
                                   le=MAX_DELAY))


def _weights(key: str, value: Any, count: int, what: str) -> tuple[float, ...]:
    """A list of `count` non-negative weights summing to 1, or empty for uniform."""
    if not isinstance(value, (list, tuple)):
        _fail(key, value, "must be a list of numbers (empty: uniform)")
    weights = tuple(_number(key, w, ge=0) for w in value)
    if weights:
        if len(weights) != count:
            _fail(key, list(weights), f"must have one weight per {what} ({count}), or be empty for uniform")
        if abs(sum(weights) - 1.0) > 1e-9:
            _fail(key, list(weights), "must sum to 1")
    return weights


def _load_balancer(d: Mapping) -> LoadBalancer:
    _check_keys("load_balancer.", d, [f.name for f in dataclasses.fields(LoadBalancer)])
    nodes = _integer("load_balancer.nodes", d.get("nodes", 3), ge=1, le=64)
    weights = _weights("load_balancer.node_weights", d.get("node_weights", []), nodes, "node")
    cross_zone = _boolean("load_balancer.cross_zone", d.get("cross_zone", True))
    targets = d.get("targets", 6)
    if isinstance(targets, (list, tuple)):
        if len(targets) != nodes:
            _fail("load_balancer.targets", list(targets),
                  f"a per-zone list needs one count per node ({nodes})")
        targets = tuple(_integer("load_balancer.targets", t, ge=1, le=10_000_000) for t in targets)
    else:
        targets = _integer("load_balancer.targets", targets, ge=1, le=10_000_000)
        if not cross_zone and targets < nodes:
            _fail("load_balancer.targets", targets,
                  f"with cross_zone = false every zone needs a target: at least nodes ({nodes})")
    balancers = _integer("load_balancer.balancers", d.get("balancers", 1), ge=1, le=64)
    bweights = _weights("load_balancer.balancer_weights", d.get("balancer_weights", []), balancers,
                        "balancer")
    if balancers * nodes > 256:
        _fail("load_balancer.balancers", balancers, f"balancers x nodes must be <= 256 (nodes = {nodes})")
    return LoadBalancer(
        balancers=balancers, balancer_weights=bweights,
        nodes=nodes, node_weights=weights,
        node_choice=_choice("load_balancer.node_choice", d.get("node_choice", "per-connection"),
                            NODE_CHOICES),
        dns_ttl=_number("load_balancer.dns_ttl", d.get("dns_ttl", 60.0), gt=0),
        targets=targets, cross_zone=cross_zone,
        client_ip_preservation=_boolean("load_balancer.client_ip_preservation",
                                        d.get("client_ip_preservation", True)))


def _target(d: Mapping) -> Target:
    _check_keys("target.", d, [f.name for f in dataclasses.fields(Target)])
    return Target(time_wait=_number("target.time_wait", d.get("time_wait", 60.0), ge=0,
                                    le=MAX_DELAY),
                  server_close_fraction=_number("target.server_close_fraction",
                                                d.get("server_close_fraction", 0.0), ge=0, le=1),
                  on_collision=_choice("target.on_collision", d.get("on_collision", "reset-existing"),
                                       OUTCOMES),
                  kernel=_choice("target.kernel", d.get("kernel", "modern"), KERNELS),
                  syn_retries=_syn_retries(d.get("syn_retries", list(SYN_RETRIES))),
                  challenge_ack_limit=_challenge_limit(d.get("challenge_ack_limit", 0)))


def _syn_retries(value: Any) -> tuple[float, ...]:
    key = "target.syn_retries"
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 16:
        _fail(key, value, "must be a list of 1 to 16 retry times in seconds after the first SYN")
    out = tuple(_number(key, v, gt=0) for v in value)
    if any(b <= a for a, b in zip(out, out[1:])):
        _fail(key, list(value), "must be strictly increasing")
    return out


def _challenge_limit(value: Any) -> int:
    key = "target.challenge_ack_limit"
    if value == "unlimited":
        return 0
    if isinstance(value, str):
        _fail(key, value, 'must be a number of challenge ACKs per second, or "unlimited" (0)')
    return _integer(key, value, ge=0, le=2_147_483_647)


@dataclass(frozen=True)
class Scenario:
    """One deployment: traffic, NAT, load balancer and target settings (docs/model.md §4.1)."""
    traffic: Traffic = field(default_factory=Traffic)
    nat: Nat = field(default_factory=Nat)
    load_balancer: LoadBalancer = field(default_factory=LoadBalancer)
    target: Target = field(default_factory=Target)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping | None = None, *, base_dir: str | Path | None = None,
                  **keywords) -> "Scenario":
        """Build from nested tables as in a TOML file; keywords are dotted or short overrides.
        `base_dir`: where relative file paths (empirical lifetimes) resolve; default the cwd."""
        d = {} if d is None else d
        _check_keys("", d, _SECTIONS)
        base = Path(base_dir) if base_dir is not None else None
        scenario = cls(traffic=_traffic(d.get("traffic", {}), base), nat=_nat(d.get("nat", {})),
                       load_balancer=_load_balancer(d.get("load_balancer", {})),
                       target=_target(d.get("target", {})))
        return scenario.replace(**keywords) if keywords else scenario

    @classmethod
    def from_toml(cls, path: str | Path) -> "Scenario":
        from .files import read_toml
        if str(path) == "":
            raise ScenarioError("--config '': an empty path; give a scenario TOML file")
        try:
            data = read_toml(path, "--config", expected="a scenario file is a few KB of TOML",
                             nested="; a scenario file is a few flat tables")
        except InputError as exc:
            raise ScenarioError(str(exc)) from None
        return cls.from_dict(data, base_dir=Path(path).resolve().parent)

    @classmethod
    def builtin(cls, name: str) -> "Scenario":
        """A scenario shipped with the package (`collide simulate --scenario NAME`)."""
        names = builtin_names()
        if name not in names:
            raise ScenarioError(f"--scenario {name!r}: unknown built-in{_did_you_mean(name, names)}; "
                                f"allowed: {', '.join(names)}")
        folder = resources.files("collide.scenarios")
        text = folder.joinpath(f"{name}.toml").read_text("utf-8")
        return cls.from_dict(tomllib.loads(text), base_dir=Path(str(folder)))

    @classmethod
    def load(cls, spec: "str | Path | Mapping | Scenario") -> "Scenario":
        """A Scenario, a dict, a built-in name or a path to a TOML file."""
        if isinstance(spec, Scenario):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        import os
        if not isinstance(spec, (str, os.PathLike)):
            raise ScenarioError(f"scenario = {spec!r:.60}: must be a Scenario, a dict of tables, a "
                                f"built-in name ({', '.join(builtin_names())}) or the path of a "
                                "TOML file")
        if isinstance(spec, str) and spec in builtin_names():
            return cls.builtin(spec)
        return cls.from_toml(spec)

    # -- variants -----------------------------------------------------------------------------
    def replace(self, mapping: Mapping[str, Any] | None = None, **keywords) -> "Scenario":
        """A copy with some keys changed: ``s.replace({"traffic.rate": 100}, nodes=2)``.

        Keys are dotted (``"nat.ips"``), short aliases (``nat_ips``) or ``traffic__rate``.
        ``traffic.duration.mean`` changes the mean and keeps the distribution.
        The result is validated like a file.
        """
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ScenarioError(f"replace({mapping!r:.60}): give a dict of dotted key -> value, "
                                "e.g. {\"traffic.rate\": 100}")
        changes = dict(mapping or {})
        for key in changes:
            if not isinstance(key, str):
                raise ScenarioError(f"replace: key {key!r:.40}: must be a dotted scenario key "
                                    "such as \"traffic.rate\"")
        for key, value in keywords.items():
            changes[ALIASES.get(key, key.replace("__", "."))] = value
        d = self.to_dict()
        for key, value in changes.items():
            key = ALIASES.get(key, key)
            parts = key.split(".")
            if parts[0] not in _SECTIONS or len(parts) < 2:
                raise ScenarioError(f"{key}: unknown key{_did_you_mean(key, all_keys())}")
            node = d
            for p in parts[:-1]:
                if p not in node or not isinstance(node[p], dict):
                    raise ScenarioError(f"{key}: unknown key{_did_you_mean(key, all_keys())}")
                node = node[p]
            node[parts[-1]] = _plain_value(value)
        return Scenario.from_dict(d)

    # -- output -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The resolved scenario as nested tables, every key present (docs/model.md §4.1 names)."""
        t, n, lb, tg = self.traffic, self.nat, self.load_balancer, self.target
        traffic = {"rate": t.rate, "duration": t.duration.to_dict(), "horizon": t.horizon,
                   "warmup": t.warmup, "clients": t.clients}
        if t.schedule:          # optional key: absent means the constant `rate`
            traffic["schedule"] = [list(x) for x in t.schedule]
        return {
            "traffic": traffic,
            "nat": dataclasses.asdict(n),
            "load_balancer": {"nodes": lb.nodes, "node_weights": list(lb.node_weights),
                              "node_choice": lb.node_choice, "dns_ttl": lb.dns_ttl,
                              "targets": list(lb.targets) if isinstance(lb.targets, tuple)
                              else lb.targets,
                              "cross_zone": lb.cross_zone,
                              "client_ip_preservation": lb.client_ip_preservation,
                              # shown only when used, so single-balancer files stay docs/model.md §4.1
                              **({"balancers": lb.balancers,
                                  "balancer_weights": list(lb.balancer_weights)}
                                 if lb.balancers > 1 or lb.balancer_weights else {})},
            "target": {"time_wait": tg.time_wait, "server_close_fraction": tg.server_close_fraction,
                       "on_collision": tg.on_collision,
                       # shown only when used, so files without them stay docs/model.md §4.1
                       **({"kernel": tg.kernel} if tg.kernel != "modern" else {}),
                       **({"syn_retries": list(tg.syn_retries)}
                          if tg.syn_retries != SYN_RETRIES else {}),
                       **({"challenge_ack_limit": tg.challenge_ack_limit}
                          if tg.challenge_ack_limit else {})},
        }

    def to_toml(self, relative_to: str | Path | None = None) -> str:
        """TOML text that loads back into this scenario. Strings are written by a TOML writer
        (tomli-w), so a quote, a backslash or a newline in a path cannot break the file or add
        keys to it. `relative_to`: a lifetimes file inside that folder is named relative to it
        (a scenario written beside its lifetimes loads from wherever the folder moves)."""
        import tomli_w

        def val(v):
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return tomli_w.dumps({"v": v})[len("v = "):].rstrip("\n")
            if isinstance(v, dict):
                return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
            if isinstance(v, (list, tuple)):
                return "[" + ", ".join(val(x) for x in v) + "]"
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"to_toml: {v!r} has no TOML form here")
            return repr(v)
        data = self.to_dict()
        d = self.traffic.duration
        if relative_to is not None and d.dist == "empirical" and d.file:
            folder = Path(relative_to).resolve()
            try:
                data["traffic"]["duration"]["file"] = Path(d.file).relative_to(folder).as_posix()
            except ValueError:               # not inside: keep the absolute path
                pass
        lines = []
        for section, table in data.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {val(v)}" for k, v in table.items()]
            lines.append("")
        return "\n".join(lines)

    def get(self, dotted: str) -> Any:
        """The value of a dotted key, e.g. ``s.get("traffic.rate")``; keys that `to_dict` leaves
        out at their defaults (balancers, schedule, kernel settings) are read from the fields."""
        parts = ALIASES.get(dotted, dotted).split(".")
        node: Any = self.to_dict()
        try:
            for p in parts:
                node = node[p]
            return node
        except KeyError:
            pass
        obj: Any = self
        for p in parts:
            if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
                raise KeyError(dotted)
            obj = getattr(obj, p)
        return list(obj) if isinstance(obj, tuple) else obj

    # -- derived quantities used by the engine and the closed forms ------------------------------
    @property
    def destinations(self) -> int:
        return self.nat.ips * self.load_balancer.total_nodes

    @property
    def mean_live(self) -> float:
        """Mean live connections in the collision-free steady state (Little's law); with a
        schedule, at its highest rate."""
        t = self.traffic
        rate = max([t.rate] + [r for _, r in t.schedule]) if t.schedule else t.rate
        return rate * t.duration.mean


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)] + \
        ["traffic.duration.mean", "traffic.duration.dist", "traffic.duration.sigma",
         "traffic.duration.alpha", "traffic.duration.file", "traffic.duration.column",
         "traffic.schedule"]


def builtin_names() -> list[str]:
    files = resources.files("collide.scenarios").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))
