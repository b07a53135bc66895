"""Which output a file is: each FILE is recognised by its shape, exactly as `aws ... --output json`
and `kubectl get svc -o json` print it, never by its name.

A file that is no known shape, that is cut short (a truncated JSON document, a series with more
timestamps than values), empty or unreadable is refused with one line naming it (exit 2).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import read_text

#: CloudWatch outputs of two weeks of one-minute data for a dozen metrics stay far below this.
MAX_BYTES = 64 * 2 ** 20

#: Keys that only a target group's attributes have (the two attribute outputs look alike).
TARGET_GROUP_KEYS = ("preserve_client_ip.", "deregistration_delay.", "stickiness.",
                     "proxy_protocol_v2.", "target_health_state.", "target_failover.",
                     "load_balancing.algorithm.", "lambda.")
#: Keys that only a load balancer's attributes have.
LOAD_BALANCER_KEYS = ("deletion_protection.", "access_logs.", "dns_record.", "zonal_shift.",
                      "ipv6.", "idle_timeout.", "routing.", "waf.", "connection_logs.",
                      "health_check_logs.", "client_keep_alive.", "secondary_ips.")

#: shape name -> the command that prints it (in messages and in `sources`).
COMMANDS = {
    "load-balancers": "aws elbv2 describe-load-balancers",
    "load-balancer-attributes": "aws elbv2 describe-load-balancer-attributes",
    "target-groups": "aws elbv2 describe-target-groups",
    "target-group-attributes": "aws elbv2 describe-target-group-attributes",
    "target-health": "aws elbv2 describe-target-health",
    "nat-gateways": "aws ec2 describe-nat-gateways",
    "metric-data": "aws cloudwatch get-metric-data",
    "metric-statistics": "aws cloudwatch get-metric-statistics",
    "services": "kubectl get svc -o json",
}


#: the list at the top of each AWS output -> its shape
TOP_LISTS = (("LoadBalancers", "load-balancers"), ("TargetGroups", "target-groups"),
             ("TargetHealthDescriptions", "target-health"), ("NatGateways", "nat-gateways"),
             ("MetricDataResults", "metric-data"), ("Datapoints", "metric-statistics"))


class IntakeInputError(InputError):
    """A file intake cannot use: one line naming it and what is wrong (exit 2)."""


@dataclass
class Record:
    """One file's output: its shape and the parsed document."""
    path: str
    shape: str
    data: dict = field(repr=False)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def command(self) -> str:
        return COMMANDS[self.shape]


def fail(path, problem: str):
    raise IntakeInputError(f"{path}: {problem}")


def expand(paths) -> list[str]:
    """FILE arguments as files: a directory stands for the *.json files in it."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(q) for q in Path(p).glob("*.json") if q.is_file())
            if not found:
                fail(p, "a directory with no *.json file in it; give the outputs' files")
            out += found
        else:
            out.append(str(p))
    seen, unique = set(), []
    for p in out:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def parse(path) -> object:
    """The JSON document in a file; truncation and non-JSON output named as such."""
    text = read_text(path, "FILE", limit=MAX_BYTES, expected="intake reads JSON outputs")
    if not text.strip():
        fail(path, "empty; save the whole output of the command (--output json)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated"):
            fail(path, f"truncated JSON: the document ends at line {exc.lineno} before it is "
                       "complete; save the whole output again")
        if exc.msg == "Extra data":
            fail(path, f"more than one JSON document (a second starts at line {exc.lineno}); save "
                       "each command's output in its own file")
        hint = ""
        if text.lstrip()[:1] not in ("{", "["):
            hint = " (was it printed with --output json / -o json?)"
        fail(path, f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}{hint}")


#: The fields intake reads, with their JSON types: a file whose field has another type was edited
#: or is not what it seems, and is refused with the field's path ("!" marks a required field).
FIELDS = {
    "load-balancers": {"LoadBalancers[]": dict, "LoadBalancers[].LoadBalancerArn": str,
                       "LoadBalancers[].LoadBalancerName": str, "LoadBalancers[].DNSName": str,
                       "LoadBalancers[].Type": str, "LoadBalancers[].Scheme": str,
                       "LoadBalancers[].AvailabilityZones": list,
                       "LoadBalancers[].AvailabilityZones[]": dict,
                       "LoadBalancers[].AvailabilityZones[].ZoneName": str},
    "target-groups": {"TargetGroups[]": dict, "TargetGroups[].TargetGroupArn": str,
                      "TargetGroups[].TargetGroupName": str, "TargetGroups[].LoadBalancerArns": list,
                      "TargetGroups[].LoadBalancerArns[]": str, "TargetGroups[].TargetType": str,
                      "TargetGroups[].Protocol": str, "TargetGroups[].Port": int},
    "target-health": {"TargetHealthDescriptions[]": dict,
                      "TargetHealthDescriptions[].Target!": dict,
                      "TargetHealthDescriptions[].Target.Id!": str,
                      "TargetHealthDescriptions[].Target.Port": int,
                      "TargetHealthDescriptions[].Target.AvailabilityZone": str,
                      "TargetHealthDescriptions[].TargetHealth": dict,
                      "TargetHealthDescriptions[].TargetHealth.State": str},
    "nat-gateways": {"NatGateways[]": dict, "NatGateways[].NatGatewayId!": str,
                     "NatGateways[].State": str, "NatGateways[].ConnectivityType": str,
                     "NatGateways[].NatGatewayAddresses": list,
                     "NatGateways[].NatGatewayAddresses[]": dict,
                     "NatGateways[].NatGatewayAddresses[].PublicIp": str,
                     "NatGateways[].NatGatewayAddresses[].PrivateIp": str,
                     "NatGateways[].NatGatewayAddresses[].Status": str,
                     "NatGateways[].NatGatewayAddresses[].IsPrimary": bool},
    "load-balancer-attributes": {"Attributes[].Key!": str, "Attributes[].Value": str},
    "target-group-attributes": {"Attributes[].Key!": str, "Attributes[].Value": str},
    "metric-data": {"MetricDataResults[]": dict, "MetricDataResults[].Id": str,
                    "MetricDataResults[].Label": str, "MetricDataResults[].Timestamps": list,
                    "MetricDataResults[].Values": list, "MetricDataResults[].StatusCode": str},
    "metric-statistics": {"Label": str, "Datapoints[]": dict},
    "services": {"items[]": dict, "items[].metadata": dict, "items[].metadata.name": str,
                 "items[].metadata.namespace": str, "items[].metadata.annotations": dict,
                 "items[].spec": dict, "items[].spec.type": str, "items[].spec.ports": list,
                 "items[].spec.ports[]": dict, "items[].spec.externalTrafficPolicy": str,
                 "items[].spec.loadBalancerClass": str, "items[].status": dict,
                 "items[].status.loadBalancer": dict, "items[].status.loadBalancer.ingress": list,
                 "items[].status.loadBalancer.ingress[]": dict,
                 "items[].status.loadBalancer.ingress[].hostname": str},
}
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "a number",
               bool: "true or false"}


def _walk(node, parts, where):
    """(path shown, value) of every place `parts` reaches; missing places are skipped."""
    if not parts:
        yield where, node
        return
    head, rest = parts[0], parts[1:]
    many = head.endswith("[]")
    key = head[:-2] if many else head
    if key:
        if not isinstance(node, dict) or key not in node:
            return
        node, where = node[key], f"{where}.{key}" if where else key
    if many:
        if not isinstance(node, list):
            return
        for i, item in enumerate(node):
            yield from _walk(item, rest, f"{where}[{i}]")
    else:
        yield from _walk(node, rest, where)


def _check_fields(rec: "Record") -> None:
    for path, kind in FIELDS[rec.shape].items():
        required = path.endswith("!")
        parts = path.rstrip("!").replace("[]", "[].").split(".")
        parts = [p for p in parts if p]
        parent, leaf = parts[:-1], parts[-1]
        for where, node in _walk(rec.data, parent, ""):
            name = leaf[:-2] if leaf.endswith("[]") else leaf
            if not isinstance(node, dict):
                continue
            if name not in node:
                if required:
                    fail(rec.path, f"{where}: no {name} (truncated or edited?)")
                continue
            for shown, value in _walk(node, [leaf], where):
                ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
                if not ok:
                    fail(rec.path, f"{shown} is {json.dumps(value)[:40]}, expected "
                                   f"{_TYPE_NAMES[kind]} (edited, or another output?)")


def _is_attributes(d: dict) -> bool:
    a = d.get("Attributes")
    return isinstance(a, list) and all(isinstance(x, dict) and "Key" in x for x in a)


def _attribute_owner(path, attrs: list) -> str:
    """"load-balancer-attributes" or "target-group-attributes", from the keys present."""
    keys = [str(x.get("Key", "")) for x in attrs]
    tg = any(k.startswith(TARGET_GROUP_KEYS) for k in keys)
    lb = any(k.startswith(LOAD_BALANCER_KEYS) for k in keys)
    if any(x.get("Value") == "use_load_balancer_configuration" for x in attrs):
        tg = True
    if tg and not lb:
        return "target-group-attributes"
    if lb and not tg:
        return "load-balancer-attributes"
    if tg and lb:
        fail(path, "attributes of both a load balancer and a target group in one file; save "
                   "describe-load-balancer-attributes and describe-target-group-attributes apart")
    fail(path, "attributes that do not say whose they are (no deletion_protection.*, "
               "access_logs.* of a load balancer, no preserve_client_ip.*, deregistration_delay.* "
               "of a target group); save the whole output of the describe-*-attributes command")


def _is_service(item) -> bool:
    return isinstance(item, dict) and item.get("kind") == "Service" and isinstance(item.get("spec"), dict)


def recognise(path, doc) -> Record:
    """The Record for a parsed document, or one line saying what it is not."""
    if isinstance(doc, dict):
        for key, shape in TOP_LISTS:
            if isinstance(doc.get(key), list):
                return Record(path, shape, doc)
        if _is_attributes(doc):
            return Record(path, _attribute_owner(path, doc["Attributes"]), doc)
        if _is_service(doc):
            return Record(path, "services", {"items": [doc]})
        if doc.get("kind") in ("List", "ServiceList") and isinstance(doc.get("items"), list):
            if doc["items"] and all(_is_service(x) for x in doc["items"]):
                return Record(path, "services", doc)
            kinds = sorted({str(x.get("kind")) for x in doc["items"] if isinstance(x, dict)})
            fail(path, "a Kubernetes list " + (f"of {', '.join(kinds)}" if kinds else "with no items")
                       + "; intake reads Services (kubectl get svc -o json)")
        keys = ", ".join(sorted(map(str, doc))[:6]) or "none"
        fail(path, f"not an output intake reads (top-level keys: {keys}); expected the JSON of "
                   + "; ".join(COMMANDS.values()))
    if isinstance(doc, list) and doc and all(isinstance(x, dict) and "Id" in x and (
            "MetricStat" in x or "Expression" in x) for x in doc):
        fail(path, "the get-metric-data query file, not its output; give the JSON that "
                   "`aws cloudwatch get-metric-data --metric-data-queries file://...` prints")
    kind = "a list" if isinstance(doc, list) else f"a {type(doc).__name__}"
    fail(path, f"{kind} at the top, not an output intake reads; expected the JSON of "
               + "; ".join(COMMANDS.values()))


def read(path) -> Record:
    rec = recognise(path, parse(path))
    _check_fields(rec)
    return rec


def attributes(record: Record) -> dict[str, str]:
    """{Key: Value} of an attributes output."""
    return {str(x["Key"]): str(x.get("Value", "")) for x in record.data["Attributes"]}
