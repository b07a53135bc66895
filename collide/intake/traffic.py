"""What CloudWatch says about the traffic: the rate (the window's mean, with a schedule when it
moves), the mean lifetime by Little's law, the window, the observed resets, and the NAT's port
allocation errors and connection count (which can bound the share of the load balancer's flows
that come through this NAT, the main uncertainty).

* `traffic.rate`: total NewFlowCount_TCP over the window (n periods), with `traffic.schedule`
  when the rate moves (binary segmentation of the per-period counts, as `collide scan` finds it);
* `traffic.duration`: exponential with Little's-law mean W = mean ActiveFlowCount_TCP / rate;
* `traffic.horizon`: the window;
* observed: resets per hour = sum of TCP_Target_Reset_Count x 3600 / (n x period), the client and
  load-balancer resets alike, the NAT's ErrorPortAllocation over its own window.

`it` is the Intake being built (collide.intake.build): values go in with where they came from,
gaps under assumed or missing.
"""
from __future__ import annotations

import math

from . import metrics as m
from .binding import Bound

RATE_FLAG = "--set traffic.rate=R"


def sig(x: float, digits: int = 6) -> float:
    """x to `digits` significant digits: the scenario file stays readable, and the prediction is
    made on exactly what the file says."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def describe_traffic(it, b: Bound):
    """Rate, schedule, lifetime and window from the load balancer's series; the observed resets;
    the NAT's port errors and what its connection count says about the main uncertainty."""
    from ..scan.describe import schedule as find_schedule
    series, ignored, notes = m.collect(b.metrics)
    it.series = series
    it.notes += notes
    for rec in b.metrics:
        mine = [s for s in series.values() if rec.name in s.files]
        it.read(rec.name, rec.shape, ", ".join(
            f"{s.metric} ({s.stat}, {len(s.points)} points"
            + (f", {s.parts} series added up" if s.parts > 1 else "") + ")" for s in mine)
            or "no series intake reads")
    if ignored:
        it.notes.append("series not read (their Label or Id names no metric intake reads): "
                        + "; ".join(ignored))
    nlb = [s for s in series.values() if s.namespace == m.NLB]
    nat = [s for s in series.values() if s.namespace == m.NAT]
    w = it.window = m.window(nlb)
    it.nat_window = m.window(nat)
    flows = series.get("NewFlowCount_TCP") or series.get("NewFlowCount")
    active = series.get("ActiveFlowCount_TCP") or series.get("ActiveFlowCount")
    if b.metrics and w is not None:
        it.notes.append("a period without a datapoint counts as 0: the load balancer reports "
                        "these metrics only when they are not 0")
        if w.period_assumed:
            it.assume(None, None, f"the period: {w.period:g} s (no series has two points to "
                                  "show it)")
        if any(s.metric in ("NewFlowCount", "ActiveFlowCount") for s in nlb):
            it.assume(None, None, "NewFlowCount/ActiveFlowCount (all protocols) read as TCP: "
                                  "no _TCP series")
        if any(rec.shape == "metric-data" for rec in b.metrics):
            it.assume(None, None, "get-metric-data does not print the statistic: Sum for counts, "
                                  "Average for ActiveFlowCount_TCP (as in the printed query file)")
    if flows is not None and w is not None:
        counts = w.counts(flows)
        total = sum(counts)
        rate = total / w.seconds
        if rate > 0:
            it.set("traffic.rate", sig(rate), f"{', '.join(flows.files)}: {flows.metric}, "
                                               f"{total:,.0f} new flows over {_hours(w.seconds)}")
            segs = find_schedule({i: c for i, c in enumerate(counts)}, 0.0, float(w.n), int(total))
            if segs:
                it.set("traffic.schedule", [[sig(a * w.period), sig(r / w.period)] for a, r in segs],
                       f"{flows.metric} moves: {len(segs)} levels by binary segmentation, as "
                       "collide scan finds them")
            it.set("traffic.horizon", w.seconds, _window_text(w))
            it.observed["new_flows_per_s"] = rate
        else:
            it.lack("the connection rate", f"NewFlowCount_TCP is 0 over the window; give {RATE_FLAG}")
    elif w is not None:
        it.set("traffic.horizon", w.seconds, _window_text(w))
    if "traffic.rate" not in it.values:
        if flows is None:
            it.lack("the connection rate", "no NewFlowCount_TCP series (get-metric-data or "
                                           f"get-metric-statistics); give {RATE_FLAG}")
    if active is not None and w is not None and "traffic.rate" in it.values:
        mean_active = sum(w.counts(active)) / w.n
        life = mean_active / (sum(w.counts(flows)) / w.seconds)
        if life > 0:
            it.set("traffic.duration", {"dist": "exponential", "mean": sig(life)},
                   f"Little's law: {active.metric} {mean_active:,.4g} / "
                   f"{it.values['traffic.rate']:,.4g} new flows/s; exponential")
            it.observed["mean_lifetime_s"] = life
    if "traffic.duration" not in it.values:
        it.assume("traffic.duration", {"dist": "exponential", "mean": 30.0},
                  "no ActiveFlowCount_TCP series: mean lifetime 30 s (collide's default) assumed; "
                  "give --set traffic.duration.mean=S")
    if "traffic.horizon" not in it.values:
        it.assume("traffic.horizon", 3600.0, "no window of metrics: one hour")
    # observed resets, over the load balancer's window
    for metric, key in (("TCP_Target_Reset_Count", "resets_per_hour"),
                        ("TCP_Client_Reset_Count", "client_resets_per_hour"),
                        ("TCP_ELB_Reset_Count", "elb_resets_per_hour")):
        s = series.get(metric)
        if s is not None and w is not None:
            n = sum(w.counts(s))
            it.observed[key] = n * 3600.0 / w.seconds
            if metric == "TCP_Target_Reset_Count":
                it.observed_count = int(round(n))
        else:
            it.observed[key] = None
    if it.observed.get("resets_per_hour") is None:
        it.lack("the observed resets", "no TCP_Target_Reset_Count series: nothing to hold the "
                                       "prediction against")
    errs = series.get("ErrorPortAllocation")
    nw = it.nat_window
    it.observed["nat_port_allocation_errors"] = (int(round(sum(nw.counts(errs))))
                                                 if errs is not None and nw else None)
    n_err = it.observed["nat_port_allocation_errors"]
    if n_err:
        it.notes.append(f"ErrorPortAllocation {n_err:,}: the NAT found no free source port that "
                        "many times (some destination near 55,000 live connections per address); "
                        "the model counts these as allocation failures")
    est = series.get("ConnectionEstablishedCount")
    if est is not None and nw is not None and it.observed.get("new_flows_per_s"):
        nat_rate = sum(nw.counts(est)) / nw.seconds
        ratio = nat_rate / it.observed["new_flows_per_s"]
        if ratio < 1:
            bound = f"at most {ratio:.0%} of them can (its ConnectionEstablishedCount is that " \
                    "share of the load balancer's NewFlowCount_TCP)"
        else:
            bound = (f"the NAT made {ratio:.3g}x as many connections as the load balancer "
                     "received, so it serves other destinations too; these records do not say "
                     "what share of the load balancer's flows it carries")
        it.nat_share_bound = min(1.0, ratio)
    else:
        bound = "nothing in these records says what share that is"
    it.lack("the share of the load balancer's new flows that come through this NAT (the main "
            "uncertainty)", f"the prediction takes all of them; {bound}. Flows from elsewhere "
                            "do not collide with these: the resets scale about as the square of "
                            "the share")


def _window_text(w: m.Window) -> str:
    return f"{w.n:,} periods of {w.period:g} s from {m.iso(w.start)}"


def _hours(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.4g} h"
    return f"{seconds / 60:.4g} min"
