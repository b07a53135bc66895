"""The table `collide intake` prints: what was read from which file, the scenario with where each
value came from, what was assumed and why, what is missing, what the records show, the
prediction beside it and the verdict. Numbers in the command line's format (collide.cli._num)."""
from __future__ import annotations

#: scenario rows: (dotted key, label)
ROWS = (("load_balancer.nodes", "nodes"), ("load_balancer.node_weights", "node weights"),
        ("load_balancer.cross_zone", "cross-zone"),
        ("load_balancer.client_ip_preservation", "client IP preservation"),
        ("load_balancer.targets", "targets"), ("nat.ips", "NAT IPs"),
        ("nat.ip_choice", "NAT IP choice"), ("traffic.rate", "rate"),
        ("traffic.schedule", "schedule"), ("traffic.duration", "lifetime"),
        ("traffic.horizon", "window"))


def _num(x, digits=3):
    from ..cli import _num as num        # the command line's format (imported late: cli loads us)
    return num(x, digits)


def _duration(seconds):
    from ..cli import _duration as d
    return d(seconds)


def _value(s, key) -> str:
    v = s.get(key)
    if key == "traffic.rate":
        return f"{_num(v)} new connections/s"
    if key == "traffic.schedule":
        return ", ".join(f"{_num(r)}/s from {_duration(a) if a else '0 s'}" for a, r in v)
    if key == "traffic.duration":
        return f"{v['dist']}, mean {_num(v['mean'])} s" if "mean" in v else str(v)
    if key == "traffic.horizon":
        return _duration(v)
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, list):
        return "[" + ", ".join(_num(x) if isinstance(x, float) else str(x) for x in v) + "]"
    return str(v)


def _block(label: str, lines: list[str]) -> list[tuple[str, str]]:
    return [(label if i == 0 else "", line) for i, line in enumerate(lines)]


def format_table(result, written: list[str] | None = None) -> str:
    it, p, v = result.intake, result.prediction, result.verdict
    s = it.scenario
    rows: list[tuple[str, str]] = []
    rows += _block("read", [f"{x['file'] or '(command line)'}: {x['shape']}: {x['read']}"
                            for x in it.sources])
    scen = []
    for key, label in ROWS:
        if key not in it.origin and key not in ("load_balancer.nodes", "load_balancer.targets"):
            continue
        origin = it.origin.get(key, "")
        why = "see assumed" if origin == "assumed" else origin
        scen.append(f"{label} {_value(s, key)}" + (f"  ({why})" if why else ""))
    rows += _block("scenario", scen)
    rows += _block("assumed", [(f"{a['key']} = {a['value']}: " if a["key"] else "") + a["why"]
                               for a in it.assumed])
    rows += _block("missing", [f"{x['what']}: {x['why']}" for x in it.missing])
    o = it.observed
    obs = []
    if o.get("new_flows_per_s") is not None:
        obs.append(f"{_num(o['new_flows_per_s'])} new flows/s"
                   + (f", mean lifetime {_num(o['mean_lifetime_s'])} s (Little's law)"
                      if o.get("mean_lifetime_s") is not None else ""))
    resets = [(k, name) for k, name in (("resets_per_hour", "target resets (TCP_Target_Reset_Count)"),
                                        ("client_resets_per_hour", "client resets"),
                                        ("elb_resets_per_hour", "load-balancer resets (idle "
                                                                "timeout)")) if o.get(k) is not None]
    if resets:
        obs.append("; ".join(f"{name} {_num(o[k])} per hour" for k, name in resets))
    if o.get("nat_port_allocation_errors") is not None:
        obs.append(f"NAT port allocation errors {o['nat_port_allocation_errors']:,} "
                   f"(ErrorPortAllocation over {_duration(it.nat_window.seconds)})")
    rows += _block("observed", obs or ["nothing: no CloudWatch series"])
    lo, hi = p.interval_per_hour
    beside = (f" beside {_num(o['resets_per_hour'])} observed (TCP_Target_Reset_Count)"
              if o.get("resets_per_hour") is not None else "")
    rows.append(("predicted", f"{_num(p.per_hour)} resets per hour{beside}; 99.9 % interval for "
                              f"this window's observed rate {_num(lo)} – {_num(hi)} per hour; "
                              f"{p.how}"))
    seen = ""
    if v["observed"] is not None:
        seen = (f" ({v['observed']:,} target resets in {_duration(p.window_s)}; the interval "
                f"for the count {v['interval'][0]:,} – {v['interval'][1]:,})")
    rows.append(("verdict", v["text"] + seen + (" -- consider: " + "; ".join(v["consider"])
                                                if v["consider"] else "")))
    if result.advice:
        rows.append(("advice", result.advice))
    rows += _block("note", it.notes)
    if written:
        rows.append(("wrote", ", ".join(written)))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{w}}  {val}" for k, val in rows)
