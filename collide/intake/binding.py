"""Which files belong together: one network load balancer and what describes it.

* The load balancer binds to its target groups by ARN (`LoadBalancerArns`), and a Service to its
  load balancer by `status.loadBalancer.ingress[].hostname` = `DNSName`.
* Attribute, target-health and metric outputs carry no ARN: they bind to the single load balancer
  in the set. A set whose files name several load balancers, or one that is not the others', is
  refused with one line naming the file.
* Target groups of other load balancers and Services of other hostnames in a listing are left
  out (and said so); a file of which nothing belongs is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .service import Service, services as read_services
from .shapes import Record, attributes, fail


@dataclass
class Bound:
    """The set's one load balancer and everything bound to it (None / empty where not given)."""
    lb: dict | None = None
    lb_file: str | None = None
    service: Service | None = None
    target_groups: list = field(default_factory=list)       # [(tg dict, file)]
    lb_attributes: dict = field(default_factory=dict)        # key -> (value, file)
    tg_attributes: dict = field(default_factory=dict)
    health: list = field(default_factory=list)               # [(description, file)]
    health_files: list = field(default_factory=list)
    nat_gateways: list = field(default_factory=list)         # [(gateway, file)]
    metrics: list = field(default_factory=list)              # [Record]
    left_out: list = field(default_factory=list)             # lines: what was not this LB's
    records: list = field(default_factory=list)

    @property
    def arn(self) -> str | None:
        if self.lb is not None:
            return self.lb.get("LoadBalancerArn")
        arns = {a for tg, _ in self.target_groups for a in tg.get("LoadBalancerArns") or []}
        return arns.pop() if len(arns) == 1 else None

    @property
    def name(self) -> str:
        if self.lb is not None:
            return str(self.lb.get("LoadBalancerName"))
        if self.service is not None:
            return f"the load balancer of Service {self.service.name}"
        if self.arn:
            return _arn_name(self.arn)
        return "the load balancer"


def _arn_name(arn: str) -> str:
    """The name in a load balancer ARN (…:loadbalancer/net/NAME/ID), else the ARN as given."""
    parts = str(arn).split("/")
    return parts[-2] if len(parts) >= 3 else str(arn)


def _name(lb: dict) -> str:
    return str(lb.get("LoadBalancerName") or lb.get("LoadBalancerArn"))


def _load_balancers(recs: list[Record]) -> list[tuple[dict, Record]]:
    """Network load balancers of the describe-load-balancers files (a file with none: refused)."""
    out, seen = [], set()
    for rec in recs:
        lbs = [x for x in rec.data["LoadBalancers"] if isinstance(x, dict)]
        nlb = [x for x in lbs if x.get("Type") == "network"]
        if not nlb:
            other = ", ".join(f"{_name(x)} ({x.get('Type') or 'no Type'})" for x in lbs[:4]) \
                or "none listed"
            fail(rec.path, f"no network load balancer in it ({other}); intake reads NLBs")
        for lb in nlb:
            if "LoadBalancerArn" not in lb or not isinstance(lb.get("AvailabilityZones"), list):
                fail(rec.path, f"load balancer {_name(lb)} has no LoadBalancerArn or "
                               "AvailabilityZones (truncated or edited?)")
            if lb["LoadBalancerArn"] not in seen:
                seen.add(lb["LoadBalancerArn"])
                out.append((lb, rec))
    return out


def _merge_attributes(recs: list[Record]) -> dict:
    out: dict = {}
    for rec in recs:
        for k, v in attributes(rec).items():
            if k in out and out[k][0] != v:
                fail(rec.path, f"{k} = {v}, but {out[k][1]} says {out[k][0]}: attributes of two "
                               "different load balancers, target groups or moments")
            out.setdefault(k, (v, rec.name))
    return out


def bind(records: list[Record]) -> Bound:
    by = {}
    for r in records:
        by.setdefault(r.shape, []).append(r)
    b = Bound(records=records)
    lbs = _load_balancers(by.get("load-balancers", []))
    svcs = [(s, rec) for rec in by.get("services", []) for s in read_services(rec)]
    tgs = [(tg, rec) for rec in by.get("target-groups", [])
           for tg in rec.data["TargetGroups"] if isinstance(tg, dict)]
    for rec in by.get("target-groups", []):
        if not rec.data["TargetGroups"]:
            fail(rec.path, "no target group in it; save describe-target-groups "
                           "--load-balancer-arn ARN")

    # -- the load balancer ------------------------------------------------------------------
    if lbs:
        cands = lbs
        if len(cands) > 1 and tgs:
            named = {a for tg, _ in tgs for a in tg.get("LoadBalancerArns") or []}
            cands = [x for x in cands if x[0]["LoadBalancerArn"] in named] or cands
        if len(cands) > 1 and svcs:
            hosts = {(s.hostname or "").lower() for s, _ in svcs}
            cands = [x for x in cands if str(x[0].get("DNSName")).lower() in hosts] or cands
        if len(cands) > 1:
            files = {rec.path for _, rec in cands}
            where = cands[1][1].path
            if len(files) > 1:
                fail(where, f"load balancer {_name(cands[1][0])}, but {cands[0][1].name} holds "
                            f"{_name(cands[0][0])}; give the files of one load balancer")
            fail(where, f"{len(cands)} network load balancers ("
                        + ", ".join(_name(x) for x, _ in cands[:4])
                        + ") and nothing else in the set says which; save one "
                          "(describe-load-balancers --names NAME)")
        b.lb, lb_rec = cands[0]
        b.lb_file = lb_rec.name
        for rec in {id(r): r for _, r in lbs}.values():
            if not any(lb is b.lb for lb, r in lbs if r is rec):
                other = next(lb for lb, r in lbs if r is rec)
                fail(rec.path, f"load balancer {_name(other)}, but the other files are "
                               f"{_name(b.lb)}'s ({b.lb_file}); give the files of one load "
                               "balancer")
        for lb, rec in lbs:
            if lb is not b.lb:
                b.left_out.append(f"{rec.name}: load balancer {_name(lb)} is not the one the "
                                  "other files name; left out")
    # -- Services: by hostname ----------------------------------------------------------------
    if svcs:
        if b.lb is not None:
            dns = b.lb.get("DNSName")
            match = [(s, r) for s, r in svcs                  # DNS names ignore case
                     if s.hostname and dns and s.hostname.lower() == dns.lower()]
            for rec in by.get("services", []):
                if not any(r is rec for _, r in match):
                    s = next(s for s, r in svcs if r is rec)
                    host = s.hostname or "none yet (status.loadBalancer is empty)"
                    fail(rec.path, f"Service {s.name} has load balancer hostname {host}, not "
                                   f"{dns} ({b.lb_file}); give the files of one load balancer")
            svcs = match
        hosts = {s.hostname for s, _ in svcs}
        if len(hosts) > 1 or (len(svcs) > 1 and None in hosts):
            where = svcs[1][1].path
            fail(where, f"{len(svcs)} load-balancer Services ("
                        + ", ".join(s.name for s, _ in svcs[:4]) + ") of different load "
                        "balancers; save one (kubectl get svc NAME -n NAMESPACE -o json)")
        b.service = svcs[0][0]
        for s, rec in svcs[1:]:
            b.left_out.append(f"{rec.name}: Service {s.name} repeats the load balancer of "
                              f"{b.service.name}")
    # -- target groups: by ARN ----------------------------------------------------------------
    if tgs:
        arn = b.arn if b.lb is not None else None
        if arn is None:
            named = {a for tg, _ in tgs for a in tg.get("LoadBalancerArns") or []}
            if len(named) > 1:
                fail(tgs[0][1].path, "target groups of " + ", ".join(sorted(_arn_name(a) for a
                                                                           in named))
                     + ": several load balancers; give the files of one "
                       "(describe-target-groups --load-balancer-arn ARN)")
            arn = named.pop() if named else None
        for rec in by.get("target-groups", []):
            mine = [tg for tg in rec.data["TargetGroups"]
                    if isinstance(tg, dict) and (arn is None or arn in (tg.get("LoadBalancerArns") or []))]
            if not mine:
                tg = rec.data["TargetGroups"][0]
                theirs = ", ".join(_arn_name(a) for a in tg.get("LoadBalancerArns") or []) \
                    or "no load balancer"
                fail(rec.path, f"target group {tg.get('TargetGroupName')} belongs to {theirs}, "
                               f"not {b.name} ({b.lb_file or 'the other files'}); give the files "
                               "of one load balancer")
            for tg in rec.data["TargetGroups"]:
                if isinstance(tg, dict) and tg not in mine:
                    b.left_out.append(f"{rec.name}: target group {tg.get('TargetGroupName')} is "
                                      f"not {b.name}'s; left out")
            b.target_groups += [(tg, rec.name) for tg in mine]
    # -- what carries no ARN: the single load balancer's ----------------------------------------
    b.lb_attributes = _merge_attributes(by.get("load-balancer-attributes", []))
    b.tg_attributes = _merge_attributes(by.get("target-group-attributes", []))
    seen = {}
    for rec in by.get("target-health", []):
        b.health_files.append(rec.name)
        for d in rec.data["TargetHealthDescriptions"]:
            if not isinstance(d, dict) or not isinstance(d.get("Target"), dict) \
                    or "Id" not in d["Target"]:
                fail(rec.path, "a TargetHealthDescriptions entry without Target.Id (truncated "
                               "or edited?)")
            t = d["Target"]
            seen[(t.get("Id"), t.get("Port"))] = (d, rec.name)
    b.health = list(seen.values())
    gws = {}
    for rec in by.get("nat-gateways", []):
        for g in rec.data["NatGateways"]:
            if not isinstance(g, dict) or "NatGatewayId" not in g:
                fail(rec.path, "a NatGateways entry without NatGatewayId (truncated or edited?)")
            gws[g["NatGatewayId"]] = (g, rec.name)
    b.nat_gateways = list(gws.values())
    b.metrics = by.get("metric-data", []) + by.get("metric-statistics", [])
    return b
