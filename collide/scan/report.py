"""The "Observed" section of `collide report --capture CAPTURE...` (issue 17): what the captures
showed beside what the model predicts for that traffic. The report calls `observe` before its own
work and the page renders `observed_html` / `observed_md` when `data["observed"]` is present."""
from __future__ import annotations

import html
import os
from pathlib import Path

from .cli import WHERE

LISTED = 10


def observe(captures, kw: dict, *, seed: int, backend: str, folder=None):
    """Scan the captures (bad input: one line, exit 2, before any work). Returns (observation,
    path of a scenario file made from the capture or None when the user gave a scenario). The
    scenario and its lifetimes go into `folder` (the caller's temporary folder, removed by it)."""
    from ..options import bad_input
    from . import CaptureInputError, scan
    from .capture import check
    try:
        for c in captures:
            check(c)
        obs = scan(captures)
    except CaptureInputError as exc:
        bad_input(str(exc))
    made = None
    if not kw.get("scenario_name") and not kw.get("config_path"):
        d = Path(folder)
        s = obs.scenario(nodes=kw.get("nodes"), targets=kw.get("targets"),
                         cross_zone=kw.get("cross_zone"), lifetimes_dir=str(d))
        made = d / "scenario.toml"
        made.write_text(s.to_toml(relative_to=d), encoding="utf-8")
    return obs, made


def observed_section(obs, scenario, *, given_nodes: bool, seed: int, backend: str,
                     folder=None) -> dict:
    """The dict the page shows: counts, outcomes, the prediction for the captured traffic under
    the report's load balancer (nodes, targets, cross-zone) and the verdict. `folder`: where the
    prediction's lifetimes file goes (the caller's temporary folder)."""
    lb = scenario.load_balancer
    res = obs.verdict(nodes=lb.nodes, targets=lb.total_targets, cross_zone=lb.cross_zone,
                      seed=seed, backend=backend,
                      lifetimes_dir=None if folder is None else str(folder))
    d = obs.to_dict(res)
    keep = ("files", "capture_side", "packets", "window_s", "connections", "collisions",
            "outcomes", "time_wait_hits", "stale", "retransmissions", "moved_by_nat",
            "challenge_acks", "client_rsts", "rate_per_s", "schedule", "lifetime_mean_s",
            "lifetime_naive_mean_s", "server_close_fraction", "nat_ips", "nat_ports",
            "targets_seen", "predicted_collisions", "predicted_interval", "verdict",
            "verdict_consider", "notes")
    out = {k: d.get(k) for k in keep}
    out["files"] = [os.path.basename(f) for f in d["files"]]
    out["collisions_listed"] = [r for r in d["collisions_listed"] if r["kind"] == "collision"][:LISTED]
    out["nodes_assumed"] = not given_nodes
    out["nodes"] = lb.nodes
    return out


def _n(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}"


def observed_html(o: dict) -> str:
    e = html.escape
    oc = o["outcomes"]
    lo, hi = o["predicted_interval"] or (None, None)
    P = ["<h2 id='s-observed'>Observed in the captures</h2>",
         f"<p class='small'>{e(', '.join(o['files']))}: {_n(o['packets'])} packets over "
         f"{_n(o['window_s'])} s, taken {e(WHERE[o['capture_side']])}.</p>",
         "<table><tr><th>what</th><th>seen</th></tr>",
         f"<tr><td>new connections</td><td class='num' id='observed-connections'>"
         f"{_n(o['connections'])} ({_n(o['rate_per_s'])}/s)</td></tr>",
         f"<tr><td>collisions</td><td class='num' id='observed-collisions'>{_n(o['collisions'])}"
         f"</td></tr>",
         f"<tr><td>outcomes</td><td>reset-existing {oc['reset-existing']}, delay-new "
         f"{oc['delay-new']}, unknown {oc['unknown']}</td></tr>",
         f"<tr><td>TIME_WAIT hits / stale</td><td class='num'>{_n(o['time_wait_hits'])} / "
         f"{_n(o['stale'])}</td></tr>",
         f"<tr><td>lifetime mean (Kaplan–Meier)</td><td class='num'>{_n(o['lifetime_mean_s'])} s "
         f"(completed only: {_n(o['lifetime_naive_mean_s'])} s)</td></tr>",
         f"<tr><td>predicted for this traffic ({o['nodes']} nodes"
         f"{', assumed' if o['nodes_assumed'] else ''})</td><td class='num' "
         f"id='observed-predicted'>{_n(o['predicted_collisions'])} (99.9 %: {lo}–{hi})</td></tr>",
         "</table>",
         f"<p>Verdict: <b id='observed-verdict'>{e(o['verdict'] or '-')}</b>"
         + (" — consider: " + e("; ".join(o["verdict_consider"])) if o.get("verdict_consider")
            else "") + "</p>"]
    if o["collisions_listed"]:
        P.append("<table><tr><th>time</th><th>client → target</th><th>challenge ACK</th>"
                 "<th>client RST</th><th>older connection ends</th><th>SYN retries</th>"
                 "<th>outcome</th></tr>")
        for r in o["collisions_listed"]:
            ca, rst, he = r["challenge_ack"], r["client_rst"], r["holder_end"]
            P.append(f"<tr><td class='num'>{r['time']:.6f}</td><td>{e(r['client'])} → "
                     f"{e(r['target'])}</td><td>{'-' if ca is None else _n(ca['after_s'] * 1e3) + ' ms'}"
                     f"</td><td>{'-' if rst is None else _n(rst['after_s'] * 1e3) + ' ms'}</td>"
                     f"<td>{'-' if he is None else e(he['how']) + ' after ' + _n(he['after_s']) + ' s'}"
                     f"</td><td class='num'>{r['syn_retransmissions']}</td><td>{e(r['outcome'])}"
                     "</td></tr>")
        P.append("</table>")
    P.extend(f"<p class='small'>note: {e(n)}</p>" for n in o["notes"])
    return "\n".join(P)


def observed_md(o: dict) -> list[str]:
    lo, hi = o["predicted_interval"] or (None, None)
    oc = o["outcomes"]
    return ["", "## Observed in the captures", "",
            f"- {', '.join(o['files'])}: {o['connections']:,} new connections "
            f"({_n(o['rate_per_s'])}/s), **{o['collisions']:,} collisions** (reset-existing "
            f"{oc['reset-existing']}, delay-new {oc['delay-new']}, unknown {oc['unknown']}), "
            f"{o['time_wait_hits']:,} TIME_WAIT hits",
            f"- Predicted for this traffic: {_n(o['predicted_collisions'])} (99.9 % {lo}–{hi}): "
            f"{o['verdict']}", ""]
