"""Writes the CloudWatch fixtures of tests/data/intake (run once; the JSON is committed).

The shapes follow the AWS CLI reference pages' output examples and field lists (get-metric-data:
MetricDataResults of Id, Label, Timestamps newest first, Values, StatusCode; get-metric-statistics:
Label and unordered Datapoints with Timestamp, the statistic and Unit). The numbers are drawn
with a fixed seed from the scenario the other fixtures describe (3 zones, 6 healthy targets,
cross-zone on, client IP preservation on, 2 NAT addresses): two hours, 150 new flows/s for the
first and 250/s for the second, flows of 5 s on average, and target resets drawn from the
closed form's collision rate at each rate. NewFlowCount_TCP and the reset counts are Poisson per
minute; a reset metric is left out of a minute where it is 0, as the load balancer reports it.

    python tests/data/intake/generate.py
"""
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

import collide

HERE = Path(__file__).parent
START = datetime(2024, 6, 3, 8, 0, tzinfo=timezone.utc)
MINUTES = 120
LIFETIME = 5.0


def rate(i):
    return 150.0 if i < 60 else 250.0


def collisions_per_minute(r):
    s = collide.Scenario.builtin("seed").replace({
        "traffic.rate": r, "traffic.duration.mean": LIFETIME, "nat.ips": 2,
        "load_balancer.nodes": 3, "load_balancer.targets": 6})
    return collide.analytic(s).collisions_per_hour / 60.0


def stamp(i):
    return (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def main():
    g = np.random.Generator(np.random.PCG64(20240603))
    per_min = {150.0: collisions_per_minute(150.0), 250.0: collisions_per_minute(250.0)}
    rows = []
    for i in range(MINUTES):
        r = rate(i)
        flows = int(g.poisson(r * 60))
        active = round(r * LIFETIME * (1 + 0.02 * g.standard_normal()), 1)
        target = int(g.poisson(per_min[r]))
        client = target + int(g.poisson(3.0))
        elb = int(g.poisson(0.5))
        nat_new = int(g.poisson(1.25 * r * 60))
        nat_active = int(round(1.3 * r * LIFETIME * (1 + 0.1 * abs(g.standard_normal()))))
        rows.append(dict(t=stamp(i), flows=flows, active=active, target=target, client=client,
                         elb=elb, nat_new=nat_new, nat_active=nat_active, nat_err=0))
    newest = rows[::-1]

    def series(ident, label, key, nonzero_only=False):
        pts = [(x["t"], x[key]) for x in newest if not (nonzero_only and x[key] == 0)]
        return {"Id": ident, "Label": label, "Timestamps": [t for t, _ in pts],
                "Values": [float(v) for _, v in pts], "StatusCode": "Complete"}

    data = {"MetricDataResults": [
        series("newflowcount_tcp", "NewFlowCount_TCP", "flows"),
        series("activeflowcount_tcp", "ActiveFlowCount_TCP", "active"),
        series("tcp_target_reset_count", "TCP_Target_Reset_Count", "target", True),
        series("tcp_client_reset_count", "TCP_Client_Reset_Count", "client", True),
        series("tcp_elb_reset_count", "TCP_ELB_Reset_Count", "elb", True),
        series("errorportallocation_0", "ErrorPortAllocation", "nat_err"),
        series("activeconnectioncount_0", "ActiveConnectionCount", "nat_active"),
        series("connectionestablishedcount_0", "ConnectionEstablishedCount", "nat_new"),
    ], "Messages": []}
    (HERE / "aws" / "metrics.json").write_text(json.dumps(data, indent=4) + "\n")

    shuffle = random.Random(7)
    for name, label, key, stat, nonzero in (
            ("new-flows.json", "NewFlowCount_TCP", "flows", "Sum", False),
            ("active-flows.json", "ActiveFlowCount_TCP", "active", "Average", False),
            ("target-resets.json", "TCP_Target_Reset_Count", "target", "Sum", True)):
        pts = [{"Timestamp": x["t"], stat: float(x[key]), "Unit": "Count"}
               for x in rows if not (nonzero and x[key] == 0)]
        shuffle.shuffle(pts)        # get-metric-statistics returns them unordered
        (HERE / "statistics" / name).write_text(
            json.dumps({"Label": label, "Datapoints": pts}, indent=4) + "\n")


if __name__ == "__main__":
    main()
