"""Network namespaces for the lab: clients -> NAT -> N load-balancer nodes -> B backends.

Everything lives in namespaces named ``collide-lab-<pid>-<role>``; nothing touches the host's own
namespace except ``ip netns add/del`` of those names. Addresses come only from the documentation ranges:

* 192.0.2.0/24     the private side: clients 192.0.2.10.., the NAT's inside address 192.0.2.1
* 198.51.100.0/24  the NAT's public addresses 198.51.100.1..k
* 203.0.113.0/24   node addresses 203.0.113.1..N (what clients connect to), targets 203.0.113.101..,
                   and each node's next-hop address 203.0.113.(201+j) towards its targets

No namespace has a default route; each knows routes to the lab's own prefixes only.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "collide-lab-"
PORT = 6000                      # listener port on nodes and targets

CLIENT_NET = "192.0.2"
NAT_NET = "198.51.100"
LB_NET = "203.0.113"

MAX_NODES = 8
MAX_TARGETS = 32
MAX_NAT_IPS = 8
MAX_CLIENT_ADDRS = 16
TOOLS = {"ip": "iproute2", "nft": "nftables", "conntrack": "conntrack", "nstat": "iproute2",
         "sysctl": "procps", "timeout": "coreutils"}

#: what `ip`, `nft` and `sysctl` say when the machine, not the lab, is the obstacle: no privilege
#: to make namespaces (a container without CAP_SYS_ADMIN), a kernel without nf_tables or conntrack
ENVIRONMENT_ERRORS = ("Operation not permitted", "Permission denied", "Protocol not supported",
                      "Could not process rule: No such file or directory", "not supported",
                      "Cannot open netlink socket", "Read-only file system")


class LabError(RuntimeError):
    """The lab could not run (setup failed, a tool is missing...)."""


class LabConfigError(LabError):
    """Bad input for the lab: the CLI prints one line and exits 2."""


class LabUnavailable(LabError):
    """This machine cannot run the lab (docs/model.md §4.2, exit 3): no root, a system package
    missing, or a kernel or container that refuses namespaces or nftables. The message is one
    line saying what to do."""


def client_ip(c: int) -> str:
    return f"{CLIENT_NET}.{10 + c}"


def nat_ip(i: int) -> str:
    return f"{NAT_NET}.{1 + i}"


def node_ip(j: int) -> str:
    return f"{LB_NET}.{1 + j}"


def target_ip(t: int) -> str:
    return f"{LB_NET}.{101 + t}"


def node_hop_ip(j: int) -> str:
    return f"{LB_NET}.{201 + j}"


def missing_tools() -> list[str]:
    """Debian packages whose commands are not on PATH."""
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


def _run(args: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        what = " ".join(args[:6]) + (" ..." if len(args) > 6 else "")
        said = " ".join((p.stderr or p.stdout).split())
        if any(e in said for e in ENVIRONMENT_ERRORS):
            raise LabUnavailable(f"collide lab: this machine refused `{what}` ({said}); the lab "
                                 "needs root with the privilege to create network namespaces "
                                 "and a kernel with nf_tables and conntrack")
        raise LabError(f"{what}: {said}")
    return p


def list_lab_namespaces() -> list[str]:
    p = _run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def stale_namespaces() -> list[str]:
    """Lab namespaces left by a lab process that no longer exists (killed with SIGKILL)."""
    out = []
    for name in list_lab_namespaces():
        m = re.match(re.escape(PREFIX) + r"(\d+)-", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            out.append(name)
    return out


def remove_namespaces(names) -> list[str]:
    """`ip netns del` each name (lab names only); returns those that could not be removed."""
    failed = []
    for name in names:
        if not name.startswith(PREFIX):
            raise LabError(f"refusing to remove namespace {name!r}: not a lab namespace")
        p = _run(["ip", "netns", "del", name], check=False)
        if p.returncode != 0 and name in list_lab_namespaces():
            failed.append(name)
    return failed


@dataclass
class Topology:
    """Names and addresses of one lab; `setup()` builds it, `teardown()` removes it by name."""
    nodes: int
    zone_targets: tuple[int, ...]        # targets per node's zone
    nat_ips: int = 1
    clients: int = 2                     # client addresses
    #: True, False, or "one-sided": node 0 reaches every target, the other nodes their zone's
    #: only (a cross-zone setting half rolled out; the model has no such setting)
    cross_zone: bool | str = True
    nat: str = "random"                  # "random" (fully-random SNAT) or "preserve"
    port_min: int = 1024
    port_max: int = 65535
    ip_choice: str = "per-connection"    # NAT public IP: per connection, or per client address
    #: where a target's challenge ACK goes: "older" (the established socket's node: the older
    #: client gets it, the new connect is delayed) or "new" (the node the latest SYN of that
    #: 4-tuple came through, as a return path by packet: the new client answers with an RST that
    #: resets the older connection)
    routing: str = "older"
    tag: str = field(default_factory=lambda: str(os.getpid()))
    created: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabConfigError(f"load_balancer.nodes = {self.nodes}: the lab builds 1..{MAX_NODES} nodes")
        if len(self.zone_targets) != self.nodes:
            raise LabConfigError("load_balancer.targets: need one count per node's zone")
        if not 1 <= self.targets <= MAX_TARGETS:
            raise LabConfigError(f"load_balancer.targets = {self.targets}: the lab builds 1..{MAX_TARGETS}")
        if self.cross_zone not in (True, False, "one-sided"):
            raise LabConfigError(f"cross-zone {self.cross_zone!r}: allowed: on, off, one-sided")
        if self.cross_zone is False and min(self.zone_targets) == 0:
            raise LabConfigError("load_balancer.targets: with cross-zone off every zone needs a target")
        if self.cross_zone == "one-sided" and min(self.zone_targets[1:], default=1) == 0:
            raise LabConfigError("load_balancer.targets: with cross-zone on one side only, every "
                                 "zone but the first needs a target")
        if not 1 <= self.nat_ips <= MAX_NAT_IPS:
            raise LabConfigError(f"nat.ips = {self.nat_ips}: the lab builds 1..{MAX_NAT_IPS} NAT addresses")
        if not 1 <= self.clients <= MAX_CLIENT_ADDRS:
            raise LabConfigError(f"clients = {self.clients}: 1..{MAX_CLIENT_ADDRS} client addresses")
        if self.routing not in ("older", "new"):
            raise LabConfigError(f"--challenge-ack {self.routing!r}: allowed: older, new")
        if self.nat not in ("random", "preserve"):
            raise LabConfigError(f"--nat {self.nat!r}: allowed: random, preserve")
        if not 1024 <= self.port_min <= self.port_max <= 65535 or self.port_max - self.port_min < 15:
            raise LabConfigError(f"port range {self.port_min}-{self.port_max}: need 1024 <= min, "
                                 "max <= 65535 and at least 16 ports")

    # -- names --------------------------------------------------------------------------------
    @property
    def targets(self) -> int:
        return sum(self.zone_targets)

    def ns(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    @property
    def client_ns(self) -> str:
        return self.ns("cl")

    @property
    def nat_ns(self) -> str:
        return self.ns("nat")

    def node_ns(self, j: int) -> str:
        return self.ns(f"n{j}")

    def backend_ns(self, t: int) -> str:
        return self.ns(f"b{t}")

    def zone_of_target(self, t: int) -> int:
        acc = 0
        for j, n in enumerate(self.zone_targets):
            acc += n
            if t < acc:
                return j
        raise IndexError(t)

    def eligible(self, j: int) -> list[int]:
        if self.cross_zone is True or (self.cross_zone == "one-sided" and j == 0):
            return list(range(self.targets))
        start = sum(self.zone_targets[:j])
        return list(range(start, start + self.zone_targets[j]))

    def all_namespaces(self) -> list[str]:
        return ([self.client_ns, self.nat_ns] + [self.node_ns(j) for j in range(self.nodes)]
                + [self.backend_ns(t) for t in range(self.targets)])

    # -- helpers ------------------------------------------------------------------------------
    def _ip_batch(self, ns: str, lines: list[str]) -> None:
        _run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    def _sysctl(self, ns: str, settings: dict[str, object]) -> None:
        args = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"]
        args += [f"{k}={v}" for k, v in settings.items()]
        _run(args)

    def _nft(self, ns: str, ruleset: str) -> None:
        _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset)

    # -- build --------------------------------------------------------------------------------
    def setup(self) -> None:
        for name in self.all_namespaces():
            _run(["ip", "netns", "add", name])
            self.created.append(name)
        common = {"net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}
        for name in self.all_namespaces():
            self._ip_batch(name, ["link set lo up"])
        self._links()
        self._client()
        self._nat_box()
        for j in range(self.nodes):
            self._node(j)
        for t in range(self.targets):
            self._backend(t)
        for name in self.all_namespaces():
            self._sysctl(name, common)

    def _links(self) -> None:
        cl, nat = self.client_ns, self.nat_ns
        _run(["ip", "-n", cl, "link", "add", "c0", "type", "veth", "peer", "name", "in0", "netns", nat])
        for j in range(self.nodes):
            _run(["ip", "-n", nat, "link", "add", f"x{j}", "type", "veth", "peer", "name", "up0",
                  "netns", self.node_ns(j)])
            for t in range(self.targets):
                _run(["ip", "-n", self.node_ns(j), "link", "add", f"b{t}", "type", "veth", "peer",
                      "name", f"n{j}", "netns", self.backend_ns(t)])

    def _client(self) -> None:
        lines = ["link set c0 up"]
        lines += [f"addr add {client_ip(c)}/24 dev c0" for c in range(self.clients)]
        lines.append(f"route add {LB_NET}.0/24 via {CLIENT_NET}.1 dev c0 src {client_ip(0)}")
        self._ip_batch(self.client_ns, lines)
        if self.nat == "preserve":       # the clients' own connect() picks the port the NAT keeps
            prange = f"{self.port_min} {self.port_max}"
        else:
            prange = "1024 65535"
        self._sysctl(self.client_ns, {"net.ipv4.ip_local_port_range": prange,
                                      "net.ipv4.tcp_tw_reuse": 1})

    def _nat_box(self) -> None:
        lines = ["link set in0 up", f"addr add {CLIENT_NET}.1/24 dev in0"]
        lines += [f"addr add {nat_ip(i)}/32 dev lo" for i in range(self.nat_ips)]
        for j in range(self.nodes):
            lines += [f"link set x{j} up", f"route add {node_ip(j)}/32 dev x{j} src {nat_ip(0)}"]
        self._ip_batch(self.nat_ns, lines)
        ports = f"{self.port_min}-{self.port_max}"
        flags = " fully-random" if self.nat == "random" else ""
        chains = []
        for i in range(self.nat_ips):
            chains.append(f"  chain ip{i} {{\n    meta l4proto tcp snat ip to {nat_ip(i)}:{ports}{flags}\n  }}")
        if self.nat_ips == 1:
            pick = "    jump ip0"
        elif self.ip_choice == "per-client":
            pairs = ", ".join(f"{client_ip(c)} : jump ip{c % self.nat_ips}" for c in range(self.clients))
            pick = f"    ip saddr vmap {{ {pairs} }}"
        else:
            pairs = ", ".join(f"{i} : jump ip{i}" for i in range(self.nat_ips))
            pick = f"    numgen random mod {self.nat_ips} vmap {{ {pairs} }}"
        rules = (
            "table ip collide_lab {\n" + "\n".join(chains) + "\n"
            "  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr != {CLIENT_NET}.0/24 accept\n"
            f"    oifname != \"x*\" accept\n{pick}\n"
            "  }\n}\n")
        self._nft(self.nat_ns, rules)
        self._sysctl(self.nat_ns, {"net.ipv4.ip_forward": 1, **_CT_TIMEOUTS, **self._liberal()})

    def _node(self, j: int) -> None:
        ns = self.node_ns(j)
        lines = ["link set up0 up", f"addr add {node_ip(j)}/32 dev up0",
                 f"addr add {node_hop_ip(j)}/32 dev lo",
                 f"route add {NAT_NET}.0/24 dev up0 src {node_ip(j)}"]
        for t in range(self.targets):
            lines += [f"link set b{t} up", f"route add {target_ip(t)}/32 dev b{t} src {node_hop_ip(j)}"]
        self._ip_batch(ns, lines)
        elig = self.eligible(j)
        if len(elig) == 1:
            dnat = f"dnat ip to {target_ip(elig[0])}"
        else:
            pairs = ", ".join(f"{i} : {target_ip(t)}" for i, t in enumerate(elig))
            dnat = f"dnat ip to numgen random mod {len(elig)} map {{ {pairs} }}"
        rules = (
            "table ip collide_lab {\n"
            "  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n"
            f"    iifname \"up0\" ip daddr {node_ip(j)} tcp dport {PORT} {dnat}\n"
            "  }\n}\n")
        self._nft(ns, rules)
        self._sysctl(ns, {"net.ipv4.ip_forward": 1, **_CT_TIMEOUTS, **self._liberal()})

    def _backend(self, t: int) -> None:
        ns = self.backend_ns(t)
        lines = [f"addr add {target_ip(t)}/32 dev lo"]
        for j in range(self.nodes):
            table = 100 + j
            lines += [f"link set n{j} up",
                      f"route add {NAT_NET}.0/24 via {node_hop_ip(j)} dev n{j} onlink "
                      f"src {target_ip(t)} table {table}",
                      f"rule add fwmark {j + 1} table {table} pref {1000 + j}"]
        self._ip_batch(ns, lines)
        # the accepted socket keeps the SYN's mark, so its replies (and its challenge ACKs) leave
        # through the node the connection came in on; kernel replies without a socket copy the mark
        self._sysctl(ns, {"net.ipv4.tcp_fwmark_accept": 1, "net.ipv4.fwmark_reflect": 1})
        pairs = ", ".join(f"\"n{j}\" : {j + 1}" for j in range(self.nodes))
        by_packet = ""
        if self.routing == "new":
            # the 4-tuple's conntrack entry remembers the node of its latest SYN (a SYN on an
            # established entry is "ignored" by conntrack but keeps its entry), and every packet
            # the target sends on it, the established socket's challenge ACK included, is routed
            # back through that node (RSTs the kernel sends for a dead socket keep the mark of the
            # packet they answer, so a reset connection's client hears of it)
            by_packet = (
                "    tcp flags & (syn | ack) == syn ct mark set meta mark\n"
                "  }\n"
                "  chain out {\n    type route hook output priority mangle; policy accept;\n"
                "    tcp flags & rst == 0 ct mark != 0 meta mark set ct mark\n")
        rules = (
            "table ip collide_lab {\n"
            "  chain pre {\n    type filter hook prerouting priority mangle; policy accept;\n"
            f"    meta mark set iifname map {{ {pairs} }}\n"
            + by_packet +
            "  }\n}\n")
        self._nft(ns, rules)

    def _liberal(self) -> dict:
        """With the challenge ACK routed to the new client, the NAT and the node see an ACK on a
        SYN_SENT entry and an RST whose sequence number belongs to the older connection: conntrack
        must pass them with their entry (translated), as a load balancer's flow table does."""
        return {"net.netfilter.nf_conntrack_tcp_be_liberal": 1} if self.routing == "new" else {}

    # -- teardown -----------------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Remove every namespace this topology created (by name); returns any left behind."""
        names = [n for n in self.all_namespaces() if n in self.created]
        failed = remove_namespaces(reversed(names))
        self.created = [n for n in self.created if n in failed]
        return failed


# short conntrack timeouts for closed flows: the model frees a port when its connection ends
# (reuse_delay = 0); netfilter's default keeps a TIME_WAIT entry 120 s, which would hold the port
_CT_TIMEOUTS = {
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_close": 1,
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": 5,
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": 5,
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": 5,
}
