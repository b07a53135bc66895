"""The "Observed" section of `collide report --intake FILE...` (issue 26), as `--capture` adds
one: what CloudWatch counted beside what the model predicts for the scenario the records describe.
The report calls `observe` before its own work (bad input: one line, exit 2) and the page renders
`observed_html` / `observed_md` when `data["observed"]["kind"] == "intake"`."""
from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

#: the report's scenario flags, as intake's --set keys
FLAGS = {"rate": "traffic.rate", "duration": "traffic.duration.mean", "nodes": "load_balancer.nodes",
         "targets": "load_balancer.targets", "nat_ips": "nat.ips", "allocator": "nat.allocator",
         "on_collision": "target.on_collision", "cross_zone": "load_balancer.cross_zone",
         "client_ip_preservation": "load_balancer.client_ip_preservation"}


def observe(files, kw: dict, *, seed: int, backend: str, folder=None):
    """Read the records and predict (bad input: one line, exit 2, before any work). Returns (the
    IntakeResult, path of a scenario file made from the records or None when the user gave a
    scenario). The scenario goes into `folder` (the caller's temporary folder, removed by it)."""
    from . import intake
    sets = list(kw.get("sets") or ())
    for flag, key in FLAGS.items():
        v = kw.get(flag)
        if v is not None:
            sets.append(f"{key}={str(v).lower() if isinstance(v, bool) else v}")
    result = intake(files, sets, seed=seed, backend=backend)
    made = None
    if not kw.get("scenario_name") and not kw.get("config_path"):
        made = Path(folder if folder is not None else tempfile.mkdtemp(prefix="collide-report-intake-")) \
            / "scenario.toml"
        made.write_text(result.intake.scenario.to_toml(), encoding="utf-8")
    return result, made


def observed_section(result) -> dict:
    """The dict the page shows (and summary.json keeps)."""
    d = result.to_dict()
    it, v = result.intake, result.verdict
    return {"kind": "intake", "files": [os.path.basename(f) for f in it.files],
            "observed": d["observed"], "observed_count": v["observed"],
            "window_s": result.prediction.window_s,
            "predicted_per_hour": d["predicted_per_hour"],
            "predicted_interval": d["predicted_interval"], "prediction": v["prediction"],
            "verdict": v["text"], "verdict_consider": v["consider"],
            "assumed": [a["why"] if not a["key"] else f"{a['key']} = {a['value']}: {a['why']}"
                        for a in it.assumed],
            "missing": [f"{x['what']}: {x['why']}" for x in it.missing]}


def _n(x) -> str:
    from ..studies.report_html import fmt_num      # the page's own number format
    return fmt_num(x)


def observed_html(o: dict) -> str:
    e = html.escape
    ob = o["observed"]
    lo, hi = o["predicted_interval"]
    rows = [("new flows per second (NewFlowCount_TCP)", _n(ob["new_flows_per_s"]), "observed-rate"),
            ("mean lifetime, Little's law (s)", _n(ob["mean_lifetime_s"]), "observed-lifetime"),
            ("target resets per hour (TCP_Target_Reset_Count)", _n(ob["resets_per_hour"]),
             "observed-resets"),
            ("client resets per hour", _n(ob["client_resets_per_hour"]), None),
            ("load-balancer resets per hour (idle timeout)", _n(ob["elb_resets_per_hour"]), None),
            ("NAT port allocation errors", _n(ob["nat_port_allocation_errors"]), None),
            (f"predicted resets per hour ({o['prediction']})",
             f"{_n(o['predicted_per_hour'])} (99.9 %: {_n(lo)}–{_n(hi)})", "observed-predicted")]
    P = ["<h2 id='s-observed'>Observed in the AWS records</h2>",
         f"<p class='small'>{e(', '.join(o['files']))}: CloudWatch over "
         f"{_n(o['window_s'] / 3600)} h.</p>",
         "<table><tr><th>what</th><th>value</th></tr>"]
    for label, value, ident in rows:
        idattr = f" id='{ident}'" if ident else ""
        P.append(f"<tr><td>{e(label)}</td><td class='num'{idattr}>{e(value)}</td></tr>")
    P.append("</table>")
    P.append(f"<p>Verdict: <b id='observed-verdict'>{e(o['verdict'])}</b>"
             + (" — consider: " + e("; ".join(o["verdict_consider"])) if o["verdict_consider"]
                else "") + "</p>")
    if o["missing"]:
        P.append("<p class='small'>Missing: " + e("; ".join(o["missing"])) + "</p>")
    if o["assumed"]:
        P.append("<details><summary>Assumed</summary><ul>"
                 + "".join(f"<li>{e(a)}</li>" for a in o["assumed"]) + "</ul></details>")
    return "\n".join(P)


def observed_md(o: dict) -> list[str]:
    ob = o["observed"]
    lo, hi = o["predicted_interval"]
    return ["", "## Observed in the AWS records", "",
            f"- {', '.join(o['files'])}: {_n(ob['new_flows_per_s'])} new flows/s, mean lifetime "
            f"{_n(ob['mean_lifetime_s'])} s; **{_n(ob['resets_per_hour'])} target resets per "
            "hour** (TCP_Target_Reset_Count)",
            f"- Predicted: {_n(o['predicted_per_hour'])} per hour (99.9 % {_n(lo)}–{_n(hi)}): "
            f"{o['verdict']}", ""]
