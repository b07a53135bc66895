"""`collide intake --print-commands`: the aws and kubectl commands that collect what intake reads,
and the CloudWatch query file, as one shell script.

The query file fixes what get-metric-data does not print: the Period (one for every metric) and
the statistic (Sum for the counts, Average for ActiveFlowCount_TCP, Maximum for the NAT's
ActiveConnectionCount), and labels each series with its metric name so intake can match it. The
period is the finest CloudWatch keeps for the window asked: 60 s up to 15 days, 300 s up to 63
days, 3600 s beyond (up to 455 days).
"""
from __future__ import annotations

import json
import re

from ..options import bad_input
from .metrics import METRICS, NAT, NLB

ARN = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/"
                 r"(?P<kind>app|net|gwy)/[A-Za-z0-9-]{1,32}/[0-9a-f]+$")
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")
GATEWAY = re.compile(r"^nat-[0-9a-f]{8,17}$")
SINCE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>m|min|h|d|w)$")
UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
RETENTION = 455 * 86400
OUT = "nlb-records"
QUERIES = "nlb-queries.json"         # beside the folder: intake reads every *.json in it
NLB_METRICS = [k for k, (ns, _) in METRICS.items()
               if ns == NLB and (k.endswith("_TCP") or k.startswith("TCP_"))]
NAT_METRICS = [k for k, (ns, _) in METRICS.items() if ns == NAT]


def since_seconds(text: str) -> int:
    m = SINCE.match(text.strip().lower())
    if not m:
        bad_input(f"--since {text!r}: give a length such as 30m, 24h, 7d or 2w")
    s = int(float(m.group("n")) * UNITS[m.group("unit")])
    if not 120 <= s <= RETENTION:
        bad_input(f"--since {text!r}: must be between 2 minutes and 455 days (CloudWatch keeps "
                  "hourly data for 455 days)")
    return s


def period_for(seconds: int) -> int:
    """The finest period CloudWatch keeps for data that old."""
    if seconds <= 15 * 86400:
        return 60
    if seconds <= 63 * 86400:
        return 300
    return 3600


def check(load_balancer: str | None, nat_gateways) -> None:
    if load_balancer is not None:
        lb = load_balancer.strip()
        m = ARN.match(lb)
        if lb.startswith("arn:"):
            if not m:
                bad_input(f"--load-balancer {load_balancer!r}: not a load balancer ARN "
                          "(arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/net/NAME/ID)")
            if m.group("kind") != "net":
                bad_input(f"--load-balancer {load_balancer!r}: an "
                          f"{'Application' if m.group('kind') == 'app' else 'Gateway'} Load "
                          "Balancer; intake reads Network Load Balancers (loadbalancer/net/...)")
        elif not NAME.match(lb):
            bad_input(f"--load-balancer {load_balancer!r}: a load balancer name has 1 to 32 "
                      "letters, digits and hyphens (or give its ARN)")
    for g in nat_gateways:
        if not GATEWAY.match(g):
            bad_input(f"--nat-gateway {g!r}: a NAT gateway ID looks like nat-0123456789abcdef0")


def queries(period: int, nat_gateways) -> list[dict]:
    """The get-metric-data query list; the load balancer's dimension is the shell's $DIM."""
    out = []
    for name in NLB_METRICS:
        out.append({"Id": name.lower(), "Label": name, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": NLB, "MetricName": name,
                       "Dimensions": [{"Name": "LoadBalancer", "Value": "${DIM}"}]},
            "Period": period, "Stat": METRICS[name][1]}})
    for i, g in enumerate(nat_gateways):
        for name in NAT_METRICS:
            out.append({"Id": f"{name.lower()}_{i}", "Label": name, "ReturnData": True,
                        "MetricStat": {"Metric": {"Namespace": NAT, "MetricName": name,
                                                  "Dimensions": [{"Name": "NatGatewayId",
                                                                  "Value": g}]},
                                       "Period": period, "Stat": METRICS[name][1]}})
    return out


def script(load_balancer: str | None, nat_gateways=(), since: str = "24h") -> str:
    check(load_balancer, nat_gateways)
    seconds = since_seconds(since)
    period = period_for(seconds)
    lb = (load_balancer or "").strip()
    minutes = seconds // 60
    lines = [
        "#!/usr/bin/env bash",
        "# What `collide intake` reads, saved as JSON in one folder; then: collide intake "
        f"{OUT}/",
        "# Needs the AWS CLI v2 with read access (elasticloadbalancing:Describe*, "
        "ec2:DescribeNatGateways, cloudwatch:GetMetricData).",
        "set -euo pipefail",
        f"mkdir -p {OUT}",
    ]
    if lb.startswith("arn:"):
        lines.append(f"LB={lb}")
    else:
        lines += [f"LB_NAME={lb or 'my-load-balancer'}" + ("" if lb else
                                                           "    # your load balancer's name"),
                  "LB=$(aws elbv2 describe-load-balancers --names \"$LB_NAME\" "
                  "--query 'LoadBalancers[0].LoadBalancerArn' --output text)"]
    lines += [
        "DIM=${LB#*:loadbalancer/}    # CloudWatch's LoadBalancer dimension: net/NAME/ID",
        f"aws elbv2 describe-load-balancers --load-balancer-arns \"$LB\" --output json > {OUT}/lb.json",
        "aws elbv2 describe-load-balancer-attributes --load-balancer-arn \"$LB\" --output json "
        f"> {OUT}/lb-attributes.json",
        "aws elbv2 describe-target-groups --load-balancer-arn \"$LB\" --output json "
        f"> {OUT}/target-groups.json",
        "TG=$(aws elbv2 describe-target-groups --load-balancer-arn \"$LB\" "
        "--query 'TargetGroups[0].TargetGroupArn' --output text)",
        "aws elbv2 describe-target-group-attributes --target-group-arn \"$TG\" --output json "
        f"> {OUT}/tg-attributes.json",
        "aws elbv2 describe-target-health --target-group-arn \"$TG\" --output json "
        f"> {OUT}/target-health.json",
        "# the NAT gateway(s) the clients leave through (in the clients' account and region)",
    ]
    if nat_gateways:
        lines.append("aws ec2 describe-nat-gateways --nat-gateway-ids " + " ".join(nat_gateways)
                     + f" --output json > {OUT}/nat-gateways.json")
    else:
        lines += ["aws ec2 describe-nat-gateways --filter Name=state,Values=available "
                  f"--output json > {OUT}/nat-gateways.json",
                  "# (give --nat-gateway ID to name them, and to add their metrics to the query "
                  "file)"]
    body = "[\n" + ",\n".join("  " + json.dumps(q) for q in queries(period, nat_gateways)) + "\n]"
    lines += [
        f"# CloudWatch: every {period} s over the last {since.strip()}; statistics and labels "
        "fixed here, as get-metric-data prints neither",
        f"cat > {QUERIES} <<EOF",
        body,
        "EOF",
        f"END=$(date -u +%Y-%m-%dT%H:%M:00Z)",
        f"START=$(date -u -d '-{minutes} minutes' +%Y-%m-%dT%H:%M:00Z 2>/dev/null || "
        f"date -u -v-{minutes}M +%Y-%m-%dT%H:%M:00Z)    # GNU date, or BSD/macOS date",
        f"aws cloudwatch get-metric-data --metric-data-queries file://{QUERIES} "
        f"--start-time \"$START\" --end-time \"$END\" --output json > {OUT}/metrics.json",
        "# On EKS, the Service adds the AWS Load Balancer Controller's annotations (intake binds "
        "it to the load balancer by its hostname):",
        f"# kubectl get svc --all-namespaces -o json > {OUT}/services.json",
        f"collide intake {OUT}/",
    ]
    return "\n".join(lines)
