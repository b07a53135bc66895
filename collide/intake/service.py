"""A Kubernetes Service of type LoadBalancer as the AWS Load Balancer Controller reads it: its
annotations (comma-separated `key=value` strings), `spec.externalTrafficPolicy`, and the
controller's documented defaults.

Defaults, from the controller's annotation reference (kubernetes-sigs/aws-load-balancer-controller,
docs/guide/service/annotations.md):
* `aws-load-balancer-type: nlb-ip` means ip targets (deprecated form); `external` takes the target
  type from `aws-load-balancer-nlb-target-type`, `instance` by default (the documented default
  with `spec.loadBalancerClass`; assumed without it);
* client IP preservation is on for instance targets and off for ip targets with TCP or TLS
  target groups, unless `aws-load-balancer-target-group-attributes` sets
  `preserve_client_ip.enabled`;
* cross-zone load balancing follows `aws-load-balancer-attributes`
  (`load_balancing.cross_zone.enabled`); the deprecated
  `aws-load-balancer-cross-zone-load-balancing-enabled` wins a tie, as the reference says; neither:
  the AWS default, off;
* the zones are the subnets of `aws-load-balancer-subnets` (one per zone), or as many as
  `aws-load-balancer-eip-allocations` / `-private-ipv4-addresses` list (their length must match
  the subnets); without them the controller discovers subnets and the Service does not say how
  many.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .shapes import Record, fail

PREFIX = "service.beta.kubernetes.io/"
LB_CLASS = "service.k8s.aws/nlb"
NLB_TYPES = ("external", "nlb-ip", "nlb")


@dataclass
class Service:
    """What a Service says about its network load balancer."""
    name: str                        # namespace/name
    file: str
    controller: str                  # "aws-load-balancer-controller" or "in-tree"
    hostname: str | None
    target_type: str
    target_type_from: str            # "annotation", "nlb-ip", "default", "assumed"
    lb_attributes: dict = field(default_factory=dict)
    tg_attributes: dict = field(default_factory=dict)
    legacy_cross_zone: str | None = None
    external_traffic_policy: str = "Cluster"
    zones: int | None = None
    zones_from: str | None = None
    protocols: tuple = ()
    scheme: str = "internal"         # the controller's default


def string_map(path, key: str, text: str) -> dict[str, str]:
    """An annotation's `k1=v1,k2=v2` as a dict; an item without `=` is refused."""
    out = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            fail(path, f"annotation {key}: {item!r} is not key=value (the annotation is a "
                       "comma-separated list of key=value)")
        k, _, v = item.partition("=")
        out[k.strip()] = v.strip()
    return out


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def is_nlb(item: dict) -> bool:
    ann = (item.get("metadata") or {}).get("annotations") or {}
    spec = item.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and (
        ann.get(PREFIX + "aws-load-balancer-type") in NLB_TYPES
        or spec.get("loadBalancerClass") == LB_CLASS)


def read_service(path, item: dict) -> Service:
    meta = item.get("metadata") or {}
    ann = {k: str(v) for k, v in (meta.get("annotations") or {}).items()}
    spec = item.get("spec") or {}
    name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
    lb_type = ann.get(PREFIX + "aws-load-balancer-type")
    controller = "in-tree" if lb_type == "nlb" else "aws-load-balancer-controller"
    tt = ann.get(PREFIX + "aws-load-balancer-nlb-target-type")
    if lb_type == "nlb-ip":
        target_type, how = "ip", "nlb-ip"
    elif tt:
        if tt not in ("instance", "ip"):
            fail(path, f"Service {name}: aws-load-balancer-nlb-target-type {tt!r}; the "
                       "controller allows instance or ip")
        target_type, how = tt, "annotation"
    elif spec.get("loadBalancerClass") == LB_CLASS or lb_type == "nlb":
        target_type, how = "instance", "default"
    else:
        target_type, how = "instance", "assumed"
    ingress = ((item.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    hostname = next((x.get("hostname") for x in ingress if isinstance(x, dict) and x.get("hostname")),
                    None)
    lb_attrs = {}
    key = PREFIX + "aws-load-balancer-attributes"
    if key in ann:
        lb_attrs = string_map(path, key, ann[key])
    tg_attrs = {}
    key = PREFIX + "aws-load-balancer-target-group-attributes"
    if key in ann:
        tg_attrs = string_map(path, key, ann[key])
    legacy = ann.get(PREFIX + "aws-load-balancer-cross-zone-load-balancing-enabled")
    if legacy is not None and legacy.lower() not in ("true", "false"):
        fail(path, f"Service {name}: aws-load-balancer-cross-zone-load-balancing-enabled "
                   f"{legacy!r}; must be \"true\" or \"false\"")
    zones = zones_from = None
    for k in ("aws-load-balancer-subnets", "aws-load-balancer-eip-allocations",
              "aws-load-balancer-private-ipv4-addresses"):
        if PREFIX + k in ann and _list(ann[PREFIX + k]):
            zones, zones_from = len(_list(ann[PREFIX + k])), k
            break
    protocols = tuple(sorted({str(p.get("protocol", "TCP")) for p in spec.get("ports") or []
                              if isinstance(p, dict)}))
    return Service(name=name, file=path, controller=controller, hostname=hostname,
                   target_type=target_type, target_type_from=how, lb_attributes=lb_attrs,
                   tg_attributes=tg_attrs, legacy_cross_zone=legacy.lower() if legacy else None,
                   external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
                   zones=zones, zones_from=zones_from, protocols=protocols,
                   scheme=_scheme(ann))


def _scheme(ann: dict) -> str:
    """aws-load-balancer-scheme, else the deprecated aws-load-balancer-internal, else internal."""
    s = ann.get(PREFIX + "aws-load-balancer-scheme")
    if s in ("internal", "internet-facing"):
        return s
    if ann.get(PREFIX + "aws-load-balancer-internal", "").lower() == "false":
        return "internet-facing"
    return "internal"


def services(rec: Record) -> list[Service]:
    """The network-load-balancer Services of a `kubectl get svc -o json` output; none is refused."""
    items = rec.data["items"]
    nlb = [read_service(rec.path, x) for x in items if is_nlb(x)]
    if not nlb:
        names = ", ".join(f"{(x.get('metadata') or {}).get('name')} "
                          f"({(x.get('spec') or {}).get('type', 'ClusterIP')})" for x in items[:4])
        fail(rec.path, f"no Service of type LoadBalancer for an AWS NLB here ({names}); intake "
                       "reads Services annotated aws-load-balancer-type: external or nlb-ip, or "
                       f"with loadBalancerClass {LB_CLASS}")
    return nlb
