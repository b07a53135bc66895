"""From the bound records to a scenario, saying for every value where it came from, what was
assumed and why, and what is missing.

Scenario values (issue 26, "Precise contracts"):
* `load_balancer.nodes`: the load balancer's zones (describe-load-balancers `AvailabilityZones`,
  or the Service's subnets annotation);
* `load_balancer.cross_zone`: the target group's own `load_balancing.cross_zone.enabled` when it
  is `true` or `false`, else the load balancer's (`use_load_balancer_configuration`);
* `load_balancer.client_ip_preservation`: the target group's `preserve_client_ip.enabled`, else
  the documented default (on for instance targets; off for ip targets with TCP or TLS);
* `load_balancer.targets`: the healthy targets, a per-zone list only when zones are unequal;
  describe-target-health names a target's zone only when it was registered with one, otherwise
  an even split is assumed;
* `load_balancer.node_weights`: zonal DNS affinity (`dns_record.client_routing_policy`) sends a
  client's DNS answers to its own zone's node: 100 % (`availability_zone_affinity`) or 85 % plus
  an even share of the rest (`partial_availability_zone_affinity`). Clients sit in one zone (their
  NAT gateway's); with cross-zone on, which zone it is changes nothing;
* `nat.ips`: the public addresses of the NAT gateway (private ones for a private gateway); several
  gateways are not one pool: `nat.ip_choice = "per-client"`;
* `traffic.*`: from CloudWatch (collide.intake.traffic).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..options import parse_assignments
from ..scenario import Scenario
from . import metrics as m
from .binding import Bound
from .shapes import COMMANDS
from .traffic import RATE_FLAG, describe_traffic, sig

AFFINITY = {"any_availability_zone": None, "availability_zone_affinity": 1.0,
            "partial_availability_zone_affinity": 0.85}
HEALTHY = "healthy"
#: AWS NAT Gateway (VPC user guide): ports 1024-65535, 55,000 live connections per address to
#: each destination; collide's own defaults are the same numbers.
NAT_GATEWAY_PORTS = (1024, 65535, 55000)
NODES_FLAG = "--set load_balancer.nodes=N"


@dataclass
class Intake:
    """What the files say, the scenario they describe, and what was assumed or is missing."""
    files: list
    sources: list = field(default_factory=list)     # {"file", "shape", "read"}
    assumed: list = field(default_factory=list)     # {"key", "value", "why"}
    missing: list = field(default_factory=list)     # {"what", "why"}
    notes: list = field(default_factory=list)
    values: dict = field(default_factory=dict)      # dotted key -> value
    origin: dict = field(default_factory=dict)      # dotted key -> where it came from
    scenario: Scenario | None = None
    refused: str | None = None                      # why no prediction, naming the flag
    observed: dict = field(default_factory=dict)
    observed_count: int | None = None               # TCP_Target_Reset_Count over the window
    window: m.Window | None = None
    nat_window: m.Window | None = None
    series: dict = field(default_factory=dict)
    mechanism_off: str | None = None                # the setting that rules collisions out
    nat_share_bound: float | None = None            # the NAT's connections / the LB's new flows
    bound: Bound | None = None

    # -- bookkeeping ----------------------------------------------------------------------------
    def read(self, file, shape, text):
        self.sources.append({"file": file, "shape": COMMANDS.get(shape, shape), "read": text})

    def set(self, key, value, origin):
        self.values[key] = value
        self.origin[key] = origin

    def assume(self, key, value, why):
        if key is not None:
            self.values[key] = value
            self.origin[key] = "assumed"
        self.assumed.append({"key": key, "value": value, "why": why})

    def lack(self, what, why):
        self.missing.append({"what": what, "why": why})


# -- the load balancer ----------------------------------------------------------------------------
def _zones(it: Intake, b: Bound) -> list[str] | None:
    if b.lb is not None:
        zones = [str(z.get("ZoneName")) for z in b.lb["AvailabilityZones"] if isinstance(z, dict)]
        it.read(b.lb_file, "load-balancers",
                f"{b.lb.get('LoadBalancerName')} ({b.lb.get('Type')}, {b.lb.get('Scheme', '?')}), "
                f"{len(zones)} zone(s): {', '.join(zones)}; DNS {b.lb.get('DNSName')}")
        it.set("load_balancer.nodes", len(zones), f"{b.lb_file}: its {len(zones)} zones")
        return zones
    s = b.service
    if s is not None and s.zones:
        it.set("load_balancer.nodes", s.zones,
               f"{_base(s.file)}: the Service's {s.zones_from} names {s.zones} zones")
        return None
    it.lack("the node count (zones)",
            "no describe-load-balancers output" + (" and the Service names no subnets"
                                                   if s is not None else "")
            + f"; give {NODES_FLAG}")
    return None


def _base(path) -> str:
    import os
    return os.path.basename(path)


def _service(it: Intake, b: Bound):
    s = b.service
    if s is None:
        return
    parts = [f"Service {s.name} ({s.controller}), {s.target_type} targets"
             + {"annotation": "", "nlb-ip": " (aws-load-balancer-type nlb-ip)",
                "default": " (the controller's default)",
                "assumed": " (no aws-load-balancer-nlb-target-type: the controller's default, "
                           "instance, assumed)"}[s.target_type_from],
             f"{s.scheme}", f"externalTrafficPolicy {s.external_traffic_policy}"]
    if s.hostname:
        parts.append(f"hostname {s.hostname}")
    for k, v in sorted(s.lb_attributes.items()):
        parts.append(f"{k} = {v}")
    if s.legacy_cross_zone is not None:
        parts.append(f"aws-load-balancer-cross-zone-load-balancing-enabled = {s.legacy_cross_zone}")
    for k, v in sorted(s.tg_attributes.items()):
        parts.append(f"target group {k} = {v}")
    it.read(_base(s.file), "services", "; ".join(parts))
    if s.external_traffic_policy == "Local" and s.target_type == "instance":
        it.notes.append("externalTrafficPolicy Local: only nodes with a ready pod pass the health "
                        "check, so the healthy targets are those nodes")


def _lb_attribute(b: Bound, key: str) -> tuple[str | None, str | None]:
    """(value, where) of a load-balancer attribute, from the attributes output or the Service."""
    if key in b.lb_attributes:
        v, f = b.lb_attributes[key]
        return v, f
    s = b.service
    if s is not None:
        if key == "load_balancing.cross_zone.enabled" and s.legacy_cross_zone is not None:
            return s.legacy_cross_zone, (f"{_base(s.file)}: aws-load-balancer-cross-zone-load-"
                                         "balancing-enabled")
        if key in s.lb_attributes:
            return s.lb_attributes[key], f"{_base(s.file)}: aws-load-balancer-attributes"
    return None, None


def _tg_attribute(b: Bound, key: str) -> tuple[str | None, str | None]:
    if key in b.tg_attributes:
        v, f = b.tg_attributes[key]
        return v, f
    s = b.service
    if s is not None and key in s.tg_attributes:
        return s.tg_attributes[key], f"{_base(s.file)}: aws-load-balancer-target-group-attributes"
    return None, None


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    return {"true": True, "false": False}.get(text.strip().lower())


def _attributes_read(it: Intake, b: Bound):
    for kind, attrs in (("load-balancer-attributes", b.lb_attributes),
                        ("target-group-attributes", b.tg_attributes)):
        files = sorted({f for _, f in attrs.values()})
        for f in files:
            shown = [f"{k} = {v}" for k, (v, g) in sorted(attrs.items()) if g == f and (
                k.startswith(("load_balancing.cross_zone", "preserve_client_ip", "dns_record",
                              "stickiness", "deregistration_delay.timeout"))
                or k == "load_balancing.cross_zone.enabled")]
            it.read(f, kind, "; ".join(shown) or "nothing intake uses")


def _cross_zone(it: Intake, b: Bound):
    lb_v, lb_f = _lb_attribute(b, "load_balancing.cross_zone.enabled")
    tg_v, tg_f = _tg_attribute(b, "load_balancing.cross_zone.enabled")
    tg_b = _bool(tg_v)
    if tg_b is not None:
        it.set("load_balancer.cross_zone", tg_b,
               f"{tg_f}: the target group's own setting"
               + (f", over the load balancer's {lb_v}" if lb_v is not None else ""))
        return
    lb_b = _bool(lb_v)
    via = ", which the target group follows" if tg_v else ""
    if lb_b is not None:
        it.set("load_balancer.cross_zone", lb_b, f"{lb_f}{via}")
        return
    if b.service is not None:
        it.set("load_balancer.cross_zone", False,
               f"{_base(b.service.file)}: no annotation sets it, so the AWS default, off")
        return
    it.assume("load_balancer.cross_zone", False,
              "no describe-load-balancer-attributes output: the AWS default (off), under which "
              "no collision is possible; if it is on, give --set load_balancer.cross_zone=true")


def _target_type(b: Bound) -> tuple[str | None, str | None, str]:
    """(target type, protocol, where)."""
    if b.target_groups:
        tg, f = b.target_groups[0]
        return tg.get("TargetType"), tg.get("Protocol"), f
    s = b.service
    if s is not None:
        proto = "UDP" if s.protocols and set(s.protocols) <= {"UDP"} else "TCP"
        return s.target_type, proto, _base(s.file)
    return None, None, ""


def _preservation(it: Intake, b: Bound):
    v, f = _tg_attribute(b, "preserve_client_ip.enabled")
    if _bool(v) is not None:
        it.set("load_balancer.client_ip_preservation", _bool(v), f)
        return
    tt, proto, where = _target_type(b)
    if tt == "instance":
        it.set("load_balancer.client_ip_preservation", True,
               f"{where}: the default for instance targets")
    elif tt == "ip":
        on = proto in ("UDP", "TCP_UDP", "QUIC", "TCP_QUIC")
        it.set("load_balancer.client_ip_preservation", on,
               f"{where}: the default for ip targets with {proto}")
    else:
        it.assume("load_balancer.client_ip_preservation", True,
                  ("no target group attributes and target type "
                   f"{tt!r}" if tt else "no target group or its attributes")
                  + ": on assumed (the default for instance targets); give "
                    "--set load_balancer.client_ip_preservation=false if it is off")


def _target_groups(it: Intake, b: Bound):
    for f in sorted({f for _, f in b.target_groups}):
        tgs = [tg for tg, g in b.target_groups if g == f]
        it.read(f, "target-groups", "; ".join(
            f"{tg.get('TargetGroupName')}: {tg.get('Protocol')} {tg.get('Port')}, "
            f"{tg.get('TargetType')} targets" for tg in tgs) + f", of {b.name}")
    if len({tg.get("TargetGroupArn") for tg, _ in b.target_groups}) > 1:
        it.notes.append(f"{b.name} has {len(b.target_groups)} target groups: the health and "
                        "attribute files are read as the traffic's target group")


def _targets(it: Intake, b: Bound, zones: list[str] | None):
    if not b.health:
        it.assume("load_balancer.targets", 6,
                  "no describe-target-health output: 6 (collide's default) assumed; give "
                  "--set load_balancer.targets=B")
        return
    states: dict[str, int] = {}
    for d, _ in b.health:
        st = str((d.get("TargetHealth") or {}).get("State", "unknown"))
        states[st] = states.get(st, 0) + 1
    healthy = [d for d, _ in b.health if (d.get("TargetHealth") or {}).get("State") == HEALTHY]
    others = ", ".join(f"{n} {s}" for s, n in sorted(states.items()) if s != HEALTHY)
    used = healthy
    if not healthy:
        used = [d for d, _ in b.health
                if (d.get("TargetHealth") or {}).get("State") not in ("unused", "draining")]
        if not used:
            used = [d for d, _ in b.health]
    az = [(d.get("Target") or {}).get("AvailabilityZone") for d in used]
    named = all(a and a != "all" for a in az)
    it.read(", ".join(b.health_files), "target-health",
            f"{len(healthy)} healthy of {len(b.health)}" + (f" ({others})" if others else "")
            + ("; zones " + ", ".join(f"{z} {az.count(z)}" for z in sorted(set(az))) if named
               else "; no zones named"))
    total = len(used)
    where = ", ".join(b.health_files)
    if not healthy:
        it.assume("load_balancer.targets", total,
                  f"no healthy target ({where}): a network load balancer whose targets are all "
                  f"unhealthy routes to all of them (fail open); {total} taken")
    else:
        it.set("load_balancer.targets", total, f"{where}: the healthy targets")
    nodes = it.values.get("load_balancer.nodes")
    cz = it.values.get("load_balancer.cross_zone")
    if named:
        order = list(zones) if zones else sorted(set(az))
        outside = sorted(set(az) - set(order))
        if outside:
            it.notes.append(f"targets in zone(s) {', '.join(outside)}, which the load balancer "
                            "does not have: counted in the total only")
        counts = [az.count(z) for z in order]
        if nodes == len(order) and len(set(counts)) > 1 and min(counts) > 0:
            it.set("load_balancer.targets", counts, f"{where}: the healthy targets per zone")
        elif nodes == len(order) and min(counts) == 0 and cz is False:
            empty = [z for z, c in zip(order, counts) if c == 0]
            kept = [c for c in counts if c > 0]
            it.assume("load_balancer.nodes", len(kept),
                      f"zone(s) {', '.join(empty)} have no healthy target: with cross-zone off "
                      "their nodes leave DNS, so only the zones with targets count")
            it.set("load_balancer.targets", kept if len(set(kept)) > 1 else sum(kept),
                   f"{where}: the healthy targets per zone")
    else:
        it.assume(None, None,
                  "targets spread evenly over the zones: describe-target-health names a target's "
                  "zone only when it was registered with one"
                  + ("" if cz is not False else " (this matters with cross-zone off)"))
    if cz is False and nodes and isinstance(it.values["load_balancer.targets"], int) \
            and it.values["load_balancer.targets"] < nodes:
        it.assume("load_balancer.nodes", it.values["load_balancer.targets"],
                  "fewer targets than zones with cross-zone off: a zone without a target leaves "
                  "DNS, so at most one node per target counts")


def _stickiness(it: Intake, b: Bound):
    on, _ = _tg_attribute(b, "stickiness.enabled")
    kind, _ = _tg_attribute(b, "stickiness.type")
    if _bool(on) and (kind or "source_ip") == "source_ip":
        it.assume(None, None, "stickiness by source IP is on, and the model draws a target for "
                              "every connection; if it holds across nodes, all connections of a "
                              "NAT address meet one target and collide far more often "
                              "(--set load_balancer.targets=1 shows that case)")


def _affinity(it: Intake, b: Bound):
    v, f = _lb_attribute(b, "dns_record.client_routing_policy")
    if v is None:
        return
    if v not in AFFINITY:
        it.notes.append(f"dns_record.client_routing_policy = {v} ({f}) is not one intake knows; "
                        "read as any_availability_zone")
        return
    share = AFFINITY[v]
    n = it.values.get("load_balancer.nodes")
    if share is None or not n or n < 2:
        return
    rest = (1.0 - share) / n
    w = [sig(share + rest, 12)] + [sig(rest, 12)] * (n - 1)
    w[0] = 1.0 - sum(w[1:])
    it.set("load_balancer.node_weights", w,
           f"{f}: {v}, {share:.0%} of a client's DNS answers name its own zone's node"
           + (", the rest any zone" if share < 1 else ""))
    it.assume(None, None, "the clients resolve the name through Route 53 Resolver in one of the "
                          "load balancer's zones (their NAT gateway's), so zonal affinity applies")


# -- the NAT --------------------------------------------------------------------------------------
def _nat(it: Intake, b: Bound):
    if not b.nat_gateways:
        it.assume("nat.ips", 1, "no describe-nat-gateways output: one NAT address assumed; give "
                                "--set nat.ips=K")
        return
    scheme = (b.lb or {}).get("Scheme") or (b.service.scheme if b.service else None)
    live = [(g, f) for g, f in b.nat_gateways if g.get("State", "available") == "available"]
    gone = [g for g, _ in b.nat_gateways if g.get("State", "available") != "available"]
    public = [(g, f) for g, f in live if g.get("ConnectivityType", "public") == "public"]
    private = [(g, f) for g, f in live if g.get("ConnectivityType") == "private"]
    if scheme == "internet-facing" and public:
        use, why = public, "public gateways (the load balancer is internet-facing)"
    elif scheme == "internal" and private:
        use, why = private, "private gateways (the load balancer is internal)"
    else:
        use, why = live, ""
        if public and private:
            it.assume(None, None, "public and private NAT gateways, and nothing says which way "
                                  "the clients reach the load balancer: the addresses of all taken")
    described = []
    ips = 0
    for g, f in live:
        kind = g.get("ConnectivityType", "public")
        addrs = [a for a in g.get("NatGatewayAddresses") or [] if isinstance(a, dict)
                 and a.get("Status", "succeeded") in ("succeeded", "assigning", "associating")]
        field_ = "PublicIp" if kind == "public" else "PrivateIp"
        shown = [str(a.get(field_)) for a in addrs if a.get(field_)]
        prim = [str(a.get(field_)) for a in addrs if a.get(field_) and a.get("IsPrimary")]
        text = f"{g['NatGatewayId']}: {kind}, {len(shown)} address(es) {', '.join(shown)}" + (
            f" (primary {prim[0]})" if prim and len(shown) > 1 else "")
        if any(g is x for x, _ in use):
            ips += len(shown)
        else:
            text += ": not on the way to this load balancer, left out"
        described.append(text)
    for g in gone:
        described.append(f"{g['NatGatewayId']}: {g.get('State')}, left out")
    files = ", ".join(sorted({f for _, f in b.nat_gateways}))
    it.read(files, "nat-gateways", "; ".join(described))
    if not use or ips == 0:
        it.assume("nat.ips", 1, f"no available NAT gateway with an address ({files}): one NAT "
                                "address assumed; give --set nat.ips=K")
        return
    kind = "private" if all(g.get("ConnectivityType") == "private" for g, _ in use) else "public"
    it.set("nat.ips", ips, f"{files}: the {kind} addresses of {len(use)} gateway(s)"
                          + (f"; {why}" if why and len(use) < len(live) else ""))
    if len(use) > 1:
        it.set("nat.ip_choice", "per-client",
               f"{len(use)} gateways (one per zone, as AWS advises) are not one pool: each client "
               "keeps its gateway's addresses")
        it.assume("traffic.clients", 1000, "the clients behind the NATs: 1,000 assumed (it only "
                                           "spreads them over the addresses)")
    elif ips > 1:
        it.assume("nat.ip_choice", "per-connection",
                  "AWS does not say how one gateway picks among its addresses: a uniform choice "
                  "per connection assumed")


def _model_defaults(it: Intake):
    it.assume("nat.allocator", "random",
              "AWS does not document how NAT Gateway picks ports; uniformly random ports are the "
              "best public guess (try --set nat.allocator=sequential or linux for the envelope)")
    it.assume("load_balancer.node_choice", "per-connection",
              "each connection takes any of the DNS answers; a few clients that each keep one "
              "node for the 60 s TTL collide less (--set load_balancer.node_choice=sticky)")
    it.assume("target.on_collision", "reset-existing",
              "Linux targets (3.6 or later) answer the second SYN with a challenge ACK, and the "
              "new client's RST resets the older connection, whose client then meets a target RST")
    pmin, pmax, limit = NAT_GATEWAY_PORTS
    it.set("nat.port_min", pmin, "NAT Gateway's documented port range")
    it.set("nat.port_max", pmax, "NAT Gateway's documented port range")
    it.set("nat.per_destination_limit", limit, "NAT Gateway's documented limit per address and "
                                               "destination")


def _nested(values: dict) -> dict:
    out: dict = {}
    for key, v in values.items():
        section, _, rest = key.partition(".")
        out.setdefault(section, {})[rest] = v
    return out


def _why_off(s: Scenario) -> str | None:
    lb = s.load_balancer
    if not lb.cross_zone and lb.balancers == 1:
        return "cross-zone load balancing is off"
    if not lb.client_ip_preservation:
        return "client IP preservation is off"
    if lb.total_nodes == 1:
        return "the load balancer has one node"
    if sum(1 for w in lb.all_weights if w > 0) == 1:
        return "zonal DNS affinity sends every connection to one node"
    if s.nat.allocator == "eim":
        return "the NAT maps each client port to one port for every destination"
    return None


def describe(bound: Bound, sets=()) -> Intake:
    """The Intake of a bound set; --set KEY=VALUE items override (and lift refusals)."""
    it = Intake(files=[r.path for r in bound.records], bound=bound)
    overrides = parse_assignments(sets, "--set", "load_balancer.nodes=3")
    zones = _zones(it, bound)
    _service(it, bound)
    _target_groups(it, bound)
    _attributes_read(it, bound)
    _cross_zone(it, bound)
    _preservation(it, bound)
    if "load_balancer.nodes" in overrides:
        it.set("load_balancer.nodes", overrides["load_balancer.nodes"], "--set")
    _targets(it, bound, zones)
    _stickiness(it, bound)
    _affinity(it, bound)
    _nat(it, bound)
    describe_traffic(it, bound)
    _model_defaults(it)
    it.notes += bound.left_out
    for key, value in overrides.items():
        it.sources.append({"file": None, "shape": "--set", "read": f"{key} = {value}"})
        it.origin[key] = "--set"
        it.assumed = [a for a in it.assumed if a["key"] != key and not (
            key == "traffic.duration.mean" and a["key"] == "traffic.duration")]
        it.missing = [x for x in it.missing if not (
            (key == "load_balancer.nodes" and x["what"].startswith("the node count"))
            or (key == "traffic.rate" and x["what"] == "the connection rate"))]
    need = []
    if "load_balancer.nodes" not in it.values and "load_balancer.nodes" not in overrides:
        need.append(f"the node count is unknown; give {NODES_FLAG} (the load balancer's zones: "
                    "describe-load-balancers shows them)")
    if "traffic.rate" not in it.values and "traffic.rate" not in overrides:
        need.append(f"the connection rate is unknown; give {RATE_FLAG} (new connections per "
                    "second: NewFlowCount_TCP shows it)")
    if need:
        it.refused = "no prediction: " + "; ".join(need)
        return it
    values = dict(it.values)
    if "traffic.schedule" in overrides or "traffic.rate" in overrides:
        values.pop("traffic.schedule", None)
    if "load_balancer.nodes" in overrides:
        values.pop("load_balancer.node_weights", None)
        if isinstance(values.get("load_balancer.targets"), list):
            values["load_balancer.targets"] = sum(values["load_balancer.targets"])
    values.setdefault("load_balancer.nodes", 1)
    values.setdefault("traffic.rate", 1.0)
    s = Scenario.from_dict(_nested(values))
    s = s.replace(overrides) if overrides else s
    it.scenario = s
    it.mechanism_off = _why_off(s)
    return it


__all__ = ["Intake", "describe"]
