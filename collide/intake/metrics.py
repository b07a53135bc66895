"""CloudWatch series: which metric each one is, the window they cover, and what they say.

* A series is matched to its metric by its `Label` (whose default is the metric name), or else by
  its `Id`, case-insensitively. Series of one Id split over pages are joined.
* get-metric-data prints neither the period nor the statistic: the period is the timestamps'
  spacing, the statistic the one the printed query file asks for (Sum for counts, Average for
  ActiveFlowCount_TCP, Maximum for the NAT's ActiveConnectionCount). get-metric-statistics names
  its statistic; its Datapoints come unordered and are sorted.
* The load balancer's metrics are reported only for periods with a value other than zero, so the
  window is the span of all its series and a period without a datapoint counts as 0.
* Several NAT gateways' series of one metric are added up; two series of one load-balancer metric
  cannot be told apart and are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .shapes import Record, fail

NLB = "AWS/NetworkELB"
NAT = "AWS/NATGateway"
#: metric -> (namespace, statistic).
METRICS = {
    "NewFlowCount_TCP": (NLB, "Sum"),
    "ActiveFlowCount_TCP": (NLB, "Average"),
    "TCP_Target_Reset_Count": (NLB, "Sum"),
    "TCP_Client_Reset_Count": (NLB, "Sum"),
    "TCP_ELB_Reset_Count": (NLB, "Sum"),
    "NewFlowCount": (NLB, "Sum"),            # all protocols: used only without the _TCP series
    "ActiveFlowCount": (NLB, "Average"),
    "ErrorPortAllocation": (NAT, "Sum"),
    "ActiveConnectionCount": (NAT, "Maximum"),
    "ConnectionEstablishedCount": (NAT, "Sum"),
}
#: the load balancer's per-minute resolution, when no series has two points to show the period
DEFAULT_PERIOD = 60.0


@dataclass
class Series:
    metric: str
    points: dict = field(default_factory=dict)          # epoch seconds -> value
    files: list = field(default_factory=list)
    parts: int = 1                                       # series added up (NAT gateways)
    partial: bool = False

    @property
    def namespace(self) -> str:
        return METRICS[self.metric][0]

    @property
    def stat(self) -> str:
        return METRICS[self.metric][1]


def parse_time(path, value) -> float:
    """Epoch seconds from an ISO 8601 timestamp as the AWS CLI prints it (or epoch numbers)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        fail(path, f"timestamp {value!r} is not a date and time")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        fail(path, f"timestamp {value!r} is not ISO 8601 (as the AWS CLI prints it)")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _match(label, ident) -> str | None:
    if isinstance(label, str) and label in METRICS:
        return label
    if isinstance(ident, str):
        for name in METRICS:
            if ident.lower() == name.lower():
                return name
    return None


def _number(path, what, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        fail(path, f"{what}: value {v!r} is not a number")
    return float(v)


def from_metric_data(rec: Record) -> tuple[list[tuple[str, Series]], list[str], list[str]]:
    """[(series key, Series)], the labels intake does not read, and notes (partial data)."""
    path = rec.path
    by_id: dict[str, Series] = {}
    order: list[str] = []
    ignored, notes = [], []
    for i, r in enumerate(rec.data["MetricDataResults"]):
        if not isinstance(r, dict):
            fail(path, f"MetricDataResults[{i}] is not an object")
        ts, vs = r.get("Timestamps", []), r.get("Values", [])
        if not isinstance(ts, list) or not isinstance(vs, list):
            fail(path, f"MetricDataResults[{i}]: Timestamps and Values must be lists")
        if len(ts) != len(vs):
            fail(path, f"series {r.get('Label') or r.get('Id')!r} has {len(ts)} timestamps and "
                       f"{len(vs)} values (truncated or edited?)")
        name = _match(r.get("Label"), r.get("Id"))
        if name is None:
            ignored.append(str(r.get("Label") or r.get("Id")))
            continue
        key = str(r.get("Id") or r.get("Label"))
        s = by_id.get(key)
        if s is None:
            s = by_id[key] = Series(name, files=[rec.name])
            order.append(key)
        elif s.metric != name:
            fail(path, f"Id {key!r} names both {s.metric} and {name}")
        for t, v in zip(ts, vs):
            s.points[parse_time(path, t)] = _number(path, f"{name} at {t}", v)
        if r.get("StatusCode") not in (None, "Complete"):
            s.partial = True
            notes.append(f"{rec.name}: {name} is {r.get('StatusCode')} (CloudWatch returned part "
                         "of the window)")
    return [(f"{rec.name}#{k}", by_id[k]) for k in order], ignored, notes


def from_metric_statistics(rec: Record) -> tuple[list[tuple[str, Series]], list[str], list[str]]:
    path = rec.path
    label = rec.data.get("Label")
    name = _match(label, None)
    if name is None:
        return [], [str(label)], []
    want = METRICS[name][1]
    s = Series(name, files=[rec.name])
    notes = []
    for i, d in enumerate(rec.data["Datapoints"]):
        if not isinstance(d, dict) or "Timestamp" not in d:
            fail(path, f"Datapoints[{i}] has no Timestamp (truncated or edited?)")
        t = parse_time(path, d["Timestamp"])
        if want in d:
            v = _number(path, f"{name} {want} at {d['Timestamp']}", d[want])
        elif want == "Sum" and "Average" in d and "SampleCount" in d:
            v = _number(path, name, d["Average"]) * _number(path, name, d["SampleCount"])
        elif want == "Average" and "Sum" in d and "SampleCount" in d and d["SampleCount"]:
            v = _number(path, name, d["Sum"]) / _number(path, name, d["SampleCount"])
        else:
            have = ", ".join(k for k in d if k not in ("Timestamp", "Unit")) or "none"
            fail(path, f"{name} needs the {want} statistic (--statistics {want}); the "
                       f"datapoints have {have}")
        s.points[t] = v
    return [(f"{rec.name}#{name}", s)], [], notes


@dataclass
class Window:
    """The span a namespace's series cover: n periods of `period` seconds from `start`."""
    start: float
    period: float
    n: int
    period_assumed: bool = False

    @property
    def seconds(self) -> float:
        return self.n * self.period

    def counts(self, s: Series) -> list[float]:
        """The series per period of the window, 0 where it has no datapoint."""
        out = [0.0] * self.n
        for t, v in s.points.items():
            i = int(round((t - self.start) / self.period))
            if 0 <= i < self.n:
                out[i] += v
        return out


def _period(s: Series) -> float | None:
    ts = sorted(s.points)
    gaps = [b - a for a, b in zip(ts, ts[1:]) if b - a > 0]
    return min(gaps) if gaps else None


def window(series: list[Series]) -> Window | None:
    """The window of one namespace's series; a second period is refused (one Period per query)."""
    with_points = [s for s in series if s.points]
    if not with_points:
        return None
    periods = [(p, s) for s in with_points if (p := _period(s)) is not None]
    if periods:
        period = min(p for p, _ in periods)
        for p, s in periods:
            ratio = p / period
            if abs(ratio - round(ratio)) > 1e-6:
                fail(s.files[0], f"{s.metric} every {p:g} s but another series every {period:g} "
                                 "s; query every metric with one Period")
    else:
        period = DEFAULT_PERIOD
    t0 = min(min(s.points) for s in with_points)
    t1 = max(max(s.points) for s in with_points)
    n = int(round((t1 - t0) / period)) + 1
    for s in with_points:
        for t in s.points:
            off = (t - t0) / period
            if abs(off - round(off)) > 1e-6:
                fail(s.files[0], f"{s.metric} at {iso(t)} is off the {period:g} s grid of the "
                                 "other series; query every metric with one Period")
    return Window(t0, period, n, period_assumed=not periods)


def collect(records: list[Record]) -> tuple[dict[str, Series], list[str], list[str]]:
    """{metric: Series} from every metric output; labels not read; notes."""
    found: dict[str, list[tuple[str, Series]]] = {}
    ignored, notes = [], []
    for rec in records:
        pairs, ign, nts = (from_metric_data(rec) if rec.shape == "metric-data"
                           else from_metric_statistics(rec))
        if not pairs:
            fail(rec.path, "no series intake reads (labels: " + (", ".join(ign[:5]) or "none")
                 + "); label each query with its metric name (NewFlowCount_TCP, "
                   "ActiveFlowCount_TCP, TCP_Target_Reset_Count, ...), as the query file of "
                   "--print-commands does")
        ignored += [f"{rec.name}: {x}" for x in ign]
        notes += nts
        for key, s in pairs:
            found.setdefault(s.metric, []).append((key, s))
    out: dict[str, Series] = {}
    for metric, pairs in found.items():
        first = pairs[0][1]
        if len(pairs) > 1 and first.namespace == NLB:
            fail(pairs[1][1].files[0], f"a second {metric} series (the first is in "
                                       f"{first.files[0]}); give one series per load-balancer "
                                       "metric (the LoadBalancer dimension alone, not per zone)")
        total = Series(metric, files=sorted({f for _, s in pairs for f in s.files}),
                       parts=len(pairs), partial=any(s.partial for _, s in pairs))
        for _, s in pairs:
            for t, v in s.points.items():
                total.points[t] = total.points.get(t, 0.0) + v
        out[metric] = total
    for plain in ("NewFlowCount", "ActiveFlowCount"):     # the _TCP series win
        if plain in out and plain + "_TCP" in out:
            del out[plain]
    return out, ignored, notes


def csv_rows(series: dict[str, Series]) -> tuple[list[str], list[list]]:
    """(header, rows) of metrics.csv: one row per timestamp, one column per metric used."""
    names = [m for m in METRICS if m in series]
    stamps = sorted({t for s in series.values() for t in s.points})
    rows = [[iso(t)] + [series[m].points.get(t, "") for m in names] for t in stamps]
    return ["timestamp"] + names, rows
