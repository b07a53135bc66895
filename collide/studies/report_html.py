"""Render a report dict (`collide.report.build_report`) as files (docs/model.md §4.6).

    OUT/index.html      one self-contained page: inline CSS, figures embedded as base64 PNG, no script,
                        no network
    OUT/summary.json    the report dict plus `page`: every headline element's id, value and text
    OUT/summary.md      the headline and the mitigation table, to paste into a ticket
    OUT/scenario.toml   the resolved scenario (`collide report --config OUT/scenario.toml` repeats it)
    OUT/figures/*.png, *.svg

Files are written to a temporary directory next to OUT and moved into place at the end, so an error
leaves nothing half-written.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

__all__ = ["write_report", "fmt_num", "fmt_pct", "fmt_duration", "FIGURES", "headline"]

FIGURES = ("topology", "mitigations", "allocators", "sensitivity_rate", "sensitivity_lifetime",
           "survival", "ports")
LEVEL_COLOUR = {"low": "#2e7d32", "elevated": "#ef6c00", "high": "#c62828"}


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


# -- formatting ---------------------------------------------------------------------------------------
def fmt_num(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return "∞" if x > 0 else "−∞"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        m, e = f"{x:.{digits - 1}e}".split("e")
        return f"{m}×10{str(int(e)).translate(_SUPERSCRIPT)}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_pct(p) -> str:
    if p is None:
        return "–"
    if p == 0:
        return "0 %"
    if p >= 0.9995 and p < 1:
        return "> 99.9 %"
    if p == 1:
        return "100 %"
    return f"{fmt_num(p * 100)} %"


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "–"
    if not math.isfinite(seconds):
        return "never"
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{fmt_num(seconds / size)} {unit}"
    if seconds < 1:
        return f"{fmt_num(seconds * 1000)} ms"
    return f"{fmt_num(seconds)} s"


def _ci(pair, f=fmt_num) -> str:
    if not pair or pair[0] is None and pair[1] is None:
        return "–"
    return f"{f(pair[0])} – {f(pair[1])}"


def headline(data: dict) -> dict:
    """id -> (value, displayed text): the numbers a test or a reader compares with summary.json."""
    v, fr = data["verdict"], data["first_reset"]
    items = {
        "verdict": (v["level"], v["level"]),
        "collisions-per-hour": (v["collisions_per_hour"], fmt_num(v["collisions_per_hour"])),
        "collisions-per-hour-low": (v["collisions_per_hour_ci"][0], fmt_num(v["collisions_per_hour_ci"][0])),
        "collisions-per-hour-high": (v["collisions_per_hour_ci"][1], fmt_num(v["collisions_per_hour_ci"][1])),
        "closed-form-collisions-per-hour": (v["closed_form_collisions_per_hour"],
                                            fmt_num(v["closed_form_collisions_per_hour"])),
        "collisions-per-day": (v["collisions_per_day"], fmt_num(v["collisions_per_day"])),
        "collision-probability": (v["collision_probability"], fmt_num(v["collision_probability"])),
        "collision-probability-low": (v["collision_probability_ci"][0], fmt_num(v["collision_probability_ci"][0])),
        "collision-probability-high": (v["collision_probability_ci"][1], fmt_num(v["collision_probability_ci"][1])),
        "median-first-reset": (fr["median_s"], fmt_duration(fr["median_s"])),
        "p95-first-reset": (fr["p95_s"], fmt_duration(fr["p95_s"])),
        "budget": (v["max_resets_per_hour"], fmt_num(v["max_resets_per_hour"])),
        "p-reset-window": (v["p_reset_window"]["value"], fmt_pct(v["p_reset_window"]["value"])),
        "peak-live-per-destination": (data["ports"]["peak_live_per_destination"],
                                      fmt_num(data["ports"]["peak_live_per_destination"])),
        "allocation-failures": (data["ports"]["allocation_failures"],
                                fmt_num(data["ports"]["allocation_failures"])),
    }
    for i, row in enumerate(v.get("p_reset", ())):
        items[f"p-reset-{i}"] = (row["value"], fmt_pct(row["value"]))
    rec = (data.get("solve") or {}).get("recommendation")
    if rec:
        items["recommendation-text"] = (rec.get("key"), rec["text"])
    ps = v.get("p_reset_schedule")
    if ps:
        items["p-reset-schedule"] = (ps["value"], fmt_pct(ps["value"]))
        items["expected-resets-schedule"] = (ps["expected"], fmt_num(ps["expected"]))
    dl = data.get("delays")
    if dl:
        items["delayed-connects-per-hour"] = (dl["delayed_connects_per_hour"],
                                              fmt_num(dl["delayed_connects_per_hour"]))
        items["connect-delay-p50"] = (dl["connect_delay_p50_s"], fmt_duration(dl["connect_delay_p50_s"]))
        items["connect-delay-p99"] = (dl["connect_delay_p99_s"], fmt_duration(dl["connect_delay_p99_s"]))
    for i, m in enumerate(data["mitigations"]):
        items[f"mitigation-{i}-collisions-per-hour"] = (m["collisions_per_hour"],
                                                        fmt_num(m["collisions_per_hour"]))
    return {k: {"value": val, "text": text} for k, (val, text) in items.items()}


# -- figures -----------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True,
                         "grid.alpha": 0.3, "figure.dpi": 100})
    return plt


def _fig_sensitivity(plt, sec: dict, xlabel: str, unit: str, budget: float | None = None,
                     budget_text: str = ""):
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    pts = sec["points"]
    xs = [p["x"] for p in pts]
    ys = [p["collisions_per_hour"] for p in pts]
    lo = [p["collisions_per_hour_ci"][0] for p in pts]
    hi = [p["collisions_per_hour_ci"][1] for p in pts]
    positive = [y for y in ys + hi if y and y > 0]
    floor = min(positive) / 10 if positive else 1e-3
    ax.fill_between(xs, [max(v, floor) for v in lo], [max(v, floor) for v in hi], color="C0",
                    alpha=0.25, label="simulation, 95 % interval")
    ax.plot(xs, [max(v, floor) for v in ys], "o-", color="C0", ms=4, label="simulation")
    cx = [x for x, y in zip(sec["closed_form_x"], sec["closed_form_y"]) if y is not None and y > 0]
    cy = [y for y in sec["closed_form_y"] if y is not None and y > 0]
    if cx:
        ax.plot(cx, cy, "--", color="C3", lw=1.2, label="closed form (docs/model.md §3)")
    today = next((p for p in pts if p["factor"] == 1.0), None)
    if today is not None:
        ax.plot([today["x"]], [max(today["collisions_per_hour"], floor)], "*", color="black", ms=13,
                label="today", zorder=5)
    ax.set_xscale("log")
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel(f"{xlabel} ({unit})")
    ax.set_ylabel("collisions per hour")
    if budget:
        ax.axhline(budget, color="#c62828", lw=0.9, ls=":")
        ax.annotate(f"budget: {budget_text}", (0.01, budget), xycoords=("axes fraction", "data"),
                    fontsize=7, color="#c62828", va="bottom")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fig_bars(plt, rows, labels, title, today_value):
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    vals = [r["collisions_per_hour"] for r in rows]
    err = [[v - r["collisions_per_hour_ci"][0] for v, r in zip(vals, rows)],
           [r["collisions_per_hour_ci"][1] - v for v, r in zip(vals, rows)]]
    colours = ["#2e7d32" if v == 0 else ("#c62828" if v >= (today_value or 0) * 0.9 else "#ef6c00")
               for v in vals]
    ax.barh(y, vals, xerr=err, color=colours, alpha=0.8, capsize=2)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    for yi, v in zip(y, vals):
        ax.text(v, yi, " " + fmt_num(v), va="center", fontsize=7)
    if today_value:
        ax.axvline(today_value, color="black", lw=0.8, ls="--", label="today")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("collisions per hour (95 % interval)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _fig_survival(plt, fr: dict):
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    if fr["survival_t"]:
        ax.step(fr["survival_t"], fr["survival_s"], where="post", color="C0",
                label=f"simulation (Kaplan–Meier, {fr['replicates']} runs)")
        tmax = max(fr["survival_t"][-1], fr["median_s"] or 0) * 1.05 or 1.0
    else:
        tmax = (fr["from_rate_p95_s"] or 3600.0) * 1.2
        ax.text(0.5, 0.5, "no reset seen / possible", transform=ax.transAxes, ha="center")
    mean = fr["closed_form_mean_s"]
    if mean:
        import numpy as np
        t = np.linspace(0, tmax, 200)
        ax.plot(t, np.exp(-t / mean), "--", color="C3", label="closed form: exponential, mean 1/rate")
    ax.set_xlabel("time to first reset (s)")
    ax.set_ylabel("P(no reset yet)")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, tmax)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fig_connect_delay(plt, dl: dict):
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    hist = dl.get("connect_delay_histogram") or []
    xs = [h[0] for h in hist]
    ys = [h[1] for h in hist]
    if xs:
        labels = [fmt_duration(x) for x in xs]
        ax.bar(range(len(xs)), ys, color="C1", alpha=0.85)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(labels, fontsize=7, rotation=30 if len(xs) > 8 else 0)
    else:
        ax.text(0.5, 0.5, "no delayed connect in this run", transform=ax.transAxes, ha="center")
    ax.set_xlabel("connect delay (s): time from the first SYN to the connection")
    ax.set_ylabel("delayed connects")
    ax.set_title(f"p50 {fmt_duration(dl.get('connect_delay_p50_s'))}, "
                 f"p99 {fmt_duration(dl.get('connect_delay_p99_s'))}", fontsize=9)
    fig.tight_layout()
    return fig


def _fig_ports(plt, ports: dict, mean_live: float):
    fig, ax = plt.subplots(figsize=(6.4, 1.9))
    ax.barh([1], [ports["peak_live_per_destination"]], color="C0", label="peak live (simulated)")
    ax.barh([0], [mean_live], color="C2", label="mean live (Little's law)")
    ax.axvline(ports["limit"], color="#c62828", lw=1.2, label=f"limit {ports['limit']:,}")
    ax.set_yticks([0, 1])
    ax.set_yticklabels(["mean", "peak"])
    ax.set_xlabel("live connections per destination (NAT IP, NLB node)")
    ax.set_xlim(0, ports["limit"] * 1.08)
    for y, val in ((1, ports["peak_live_per_destination"]), (0, mean_live)):
        ax.text(val + ports["limit"] * 0.01, y, fmt_num(val), va="center", fontsize=8)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return fig


def _fig_topology(plt, sc: dict):
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.axis("off")
    ax.grid(False)
    zones = sc["nodes"]
    balancers = sc.get("balancers", 1) or 1
    total_nodes = sc.get("total_nodes", zones * balancers)
    nodes = min(total_nodes, 12)           # nodes drawn
    zt = sc["zone_targets"]
    k = sc["nat_ips"]
    shown_k = min(k, 8)

    def spread(n, lo=0.1, hi=0.9):
        return [0.5] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    ax.text(0.03, 0.5, f"{sc['clients']:,}\nclient\nhost(s)", ha="center", va="center", fontsize=8,
            bbox=dict(boxstyle="round", fc="#e3f2fd"))
    ips = spread(shown_k)
    for y in ips:
        ax.annotate("", (0.28, y), (0.08, 0.5), arrowprops=dict(arrowstyle="-", color="#90a4ae", lw=0.6))
        ax.text(0.30, y, "NAT IP", ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round", fc="#fff3e0"))
    ax.text(0.30, 1.07, f"NAT: {k} IP(s)" + (f" ({shown_k} drawn)" if k > shown_k else "")
            + f"\n{sc['allocator']} ports, {sc['ip_choice']}", ha="center", va="center", fontsize=7)
    ny = spread(nodes)
    for j, y in enumerate(ny):
        for yi in ips:
            ax.plot([0.34, 0.52], [yi, y], color="#b0bec5", lw=0.5)
        label = (f"LB{j // zones + 1} node z{j % zones + 1}" if balancers > 1
                 else f"NLB node z{j + 1}")
        ax.text(0.55, y, label, ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round", fc="#ede7f6"))
    head = (f"{balancers} LBs × {zones} node(s)" if balancers > 1 else f"NLB: {zones} node(s)")
    if nodes < total_nodes:
        head += f" ({nodes} drawn)"
    ax.text(0.55, 1.07, f"{head}\n{sc['node_choice']} node choice", ha="center",
            va="center", fontsize=7)
    total = sum(zt)
    shown = [min(t, max(1, 16 // max(1, zones))) for t in zt]
    ty = spread(sum(shown), 0.04, 0.96)
    pos, i = [], 0
    for z, n in enumerate(shown):
        pos.append(ty[i:i + n])
        i += n
    for j, y in enumerate(ny):
        for z, zone in enumerate(pos):
            if sc["cross_zone"] or z == j % zones:
                for t in zone:
                    ax.plot([0.60, 0.84], [y, t], color="#c62828" if z != j % zones else "#546e7a",
                            lw=0.5, alpha=0.8)
    for z, zone in enumerate(pos):
        for t in zone:
            ax.text(0.87, t, f"target z{z + 1}", ha="left", va="center", fontsize=6,
                    bbox=dict(boxstyle="round", fc="#e8f5e9", pad=0.15))
    ax.text(0.90, 1.07, f"{total} target(s)" + (" (some not drawn)" if sum(shown) < total else "")
            + f"\ncross-zone {'ON' if sc['cross_zone'] else 'off'}", ha="center", va="center", fontsize=7)
    foot = ("red: cross-zone paths (each lets one NAT ip:port meet another node's "
            "connection at a target)" if sc["cross_zone"] else "cross-zone off: each node reaches "
            "its own zone only")
    if balancers > 1 and not sc["cross_zone"]:
        foot += "; nodes of different LBs in one zone share its targets (collisions remain)"
    ax.text(0.5, -0.02, foot, ha="center", fontsize=7, color="#555")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.05, 1.13)
    fig.tight_layout()
    return fig


def make_figures(data: dict) -> dict:
    """name -> matplotlib Figure."""
    plt = _plt()
    today = data["verdict"]["collisions_per_hour"]
    b = data["verdict"].get("budget")
    budget = (data["verdict"]["max_resets_per_hour"], b["text"]) if b else (None, "")
    figs = {
        "topology": _fig_topology(plt, data["scenario_summary"]),
        "mitigations": _fig_bars(plt, data["mitigations"], [m["name"] for m in data["mitigations"]],
                                 "Mitigations, each simulated", today),
        "allocators": _fig_bars(plt, data["allocators"], [a["allocator"] for a in data["allocators"]],
                                "Today's scenario under each NAT port allocator", today),
        "sensitivity_rate": _fig_sensitivity(plt, data["sensitivity"]["traffic.rate"],
                                             "new connections per second", "conn/s", *budget),
        "sensitivity_lifetime": _fig_sensitivity(plt, data["sensitivity"]["traffic.duration.mean"],
                                                 "mean connection lifetime", "s", *budget),
        "survival": _fig_survival(plt, data["first_reset"]),
        "ports": _fig_ports(plt, data["ports"], data["ports"]["mean_live_per_destination"]),
    }
    if data.get("delays"):
        figs["connect_delay"] = _fig_connect_delay(plt, data["delays"])
    return figs


# -- page ----------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:72rem;margin:1rem auto;
padding:0 1rem;color:#212121;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;border-bottom:1px solid #ddd;margin-top:2rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left;vertical-align:top} th{background:#f5f5f5} td.num{text-align:right;white-space:nowrap}
.verdict{display:inline-block;padding:.25rem .8rem;border-radius:.4rem;color:#fff;font-weight:bold;
text-transform:uppercase;letter-spacing:.05em}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:.8rem 0}
.card{border:1px solid #ddd;border-radius:.4rem;padding:.5rem .8rem;min-width:12rem;flex:1}
.card .big{font-size:1.45rem;font-weight:bold} .small{font-size:.8rem;color:#555}
img{max-width:100%;height:auto;border:1px solid #eee}
code,pre{background:#f5f5f5;padding:.1rem .3rem;border-radius:.2rem;font-size:.85rem}
pre{padding:.6rem;overflow-x:auto;white-space:pre-wrap}
.first .row{display:flex;gap:.8rem;margin:.6rem 0} .first .box{flex:1;border:1px solid #ddd;
border-radius:.4rem;padding:.5rem .8rem} .first .big{font-size:1.35rem;font-weight:bold}
.first .rec{font-size:1.1rem;font-weight:bold;margin:.2rem 0} .first ol{margin:.3rem 0;padding-left:1.3rem}
.first table{width:100%;margin:.3rem 0} .first td,.first th{padding:.15rem .4rem}
.unreachable{color:#777}
"""


def _span(page: dict, key: str) -> str:
    item = page[key]
    return (f'<span id="{key}" data-value="{html.escape(json.dumps(item["value"]))}">'
            f'{html.escape(item["text"])}</span>')


def _img(name: str, png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure><img id="fig-{name.replace("_", "-")}" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{b64}"><figcaption class="small">{html.escape(alt)} '
            f'(also <code>figures/{name}.png</code>, <code>figures/{name}.svg</code>)</figcaption></figure>')


def render_html(data: dict, page: dict, pngs: dict) -> str:
    e = html.escape
    v, fr, sc, comp = data["verdict"], data["first_reset"], data["scenario_summary"], data["computed"]
    colour = LEVEL_COLOUR[v["level"]]
    cf = v["closed_form_collisions_per_hour"]
    cf_text = (f"closed form ({v['closed_form']}): {fmt_num(cf)} per hour, "
               f"{fmt_num(v['closed_form_collision_probability'])} per connection"
               if cf is not None else f"no closed form: {e(str(v['closed_form_missing_reason']))}")
    P = []
    P.append(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<link rel='icon' href='data:,'>"
             f"<title>{e(data['title'])}</title><style>{CSS}</style></head><body>")
    P.append(f"<h1>{e(data['title'])}</h1><p class='small'>TCP 4-tuple collisions between NAT'd "
             f"clients and a cross-zone L4 load balancer. collide {e(comp['version'])}, seed "
             f"{comp['seed']}, backend {e(comp['backend'])}.</p>")
    P.append(_first_screen(data, page, colour))
    # 1. verdict
    P.append("<h2 id='s-verdict'>1. Verdict</h2>")
    P.append(f"<p class='small'>{e(v['thresholds']['text'])}. At the top of the 95 % interval the "
             f"level is <b>{e(v['level_at_ci_high'])}</b>.</p>")
    P.append("<div class='cards'>")
    P.append(f"<div class='card'><div class='small'>collisions (resets) per hour</div><div class='big'>"
             f"{fmt_num(v['collisions_per_hour'])}</div><div class='small'>95 %: "
             f"{_ci(v['collisions_per_hour_ci'])}; closed form "
             f"{fmt_num(v['closed_form_collisions_per_hour'])}</div></div>")
    P.append(f"<div class='card'><div class='small'>per day</div><div class='big'>"
             f"{_span(page, 'collisions-per-day')}</div><div class='small'>95 %: "
             f"{_ci(v['collisions_per_day_ci'])}; closed form {fmt_num(v['closed_form_collisions_per_day'])}"
             f"</div></div>")
    P.append(f"<div class='card'><div class='small'>per connection</div><div class='big'>"
             f"{_span(page, 'collision-probability')}</div><div class='small'>95 %: "
             f"{_span(page, 'collision-probability-low')} – {_span(page, 'collision-probability-high')}; "
             f"closed form {fmt_num(v['closed_form_collision_probability'])}</div></div>")
    P.append("</div><div class='cards'>")
    P.append(f"<div class='card'><div class='small'>median time to first reset</div><div class='big'>"
             f"{_span(page, 'median-first-reset')}</div><div class='small'>95 %: "
             f"{_ci(fr['median_s_ci'], fmt_duration)}; closed form {fmt_duration(fr['closed_form_median_s'])}"
             f"</div></div>")
    P.append(f"<div class='card'><div class='small'>95th percentile</div><div class='big'>"
             f"{_span(page, 'p95-first-reset')}</div><div class='small'>95 %: "
             f"{_ci(fr['p95_s_ci'], fmt_duration)}; closed form {fmt_duration(fr['closed_form_p95_s'])}"
             f"</div></div>")
    P.append("</div>")
    P.append("<table><tr><th>P(at least one reset)</th><th>estimate</th><th>95 % interval</th>"
             "<th>closed form</th></tr>")
    rows_p = [(row, row["label"], f"p-reset-{i}") for i, row in enumerate(v.get("p_reset", ()))]
    rows_p.append((v["p_reset_window"], f"within your window ({fmt_duration(v['window_s'])})",
                   "p-reset-window"))
    for row, label, ident in rows_p:
        P.append(f"<tr><td>{e(label)}</td><td class='num'>{_span(page, ident)}</td>"
                 f"<td class='num'>{_ci(row['ci'], fmt_pct)}</td><td class='num'>{fmt_pct(row['closed_form'])}"
                 f"</td></tr>")
    ps = v.get("p_reset_schedule")
    if ps:
        P.append(f"<tr><td>over the window as scheduled ({fmt_duration(ps['seconds'])}; expected "
                 f"{_span(page, 'expected-resets-schedule')} resets, 95 % {_ci(ps['expected_ci'])}, "
                 f"closed form {fmt_num(ps['closed_form_expected'])})</td>"
                 f"<td class='num'>{_span(page, 'p-reset-schedule')}</td>"
                 f"<td class='num'>{_ci(ps['ci'], fmt_pct)}</td>"
                 f"<td class='num'>{fmt_pct(ps['closed_form'])}</td></tr>")
    P.append("</table>")
    sched = data.get("schedule")
    if sched:
        P.append(f"<p class='small'>{e(sched['note'])} Load-test window: "
                 f"{e(v['p_reset_window'].get('method', ''))}.</p>")
        P.append("<h3 id='s-schedule'>Changing load: each segment of the schedule</h3>")
        P.append("<table id='schedule-table'><tr><th>segment start</th><th>end</th><th>rate (conn/s)</th>"
                 "<th>collisions / hour (closed form over the schedule)</th>"
                 "<th>simulated at the segment's constant rate (95 %)</th><th>used</th></tr>")
        for g in sched["segments"]:
            P.append(f"<tr><td class='num'>{fmt_duration(g['start_s'])}</td>"
                     f"<td class='num'>{fmt_duration(g['end_s'])}</td><td class='num'>{fmt_num(g['rate'])}</td>"
                     f"<td class='num'>{fmt_num(g['closed_form_collisions_per_hour'])}</td>"
                     f"<td class='num'>{fmt_num(g['simulated_collisions_per_hour'])} "
                     f"({_ci(g['simulated_collisions_per_hour_ci'])})</td>"
                     f"<td class='small'>{e(g['source'])}</td></tr>")
        P.append(f"</table><p class='small'>Window mean rate {fmt_num(sched['mean_rate'])} conn/s, peak "
                 f"{fmt_num(sched['peak_rate'])} conn/s. The closed-form column includes the live "
                 "connections carried over from the previous segment; the simulated column is each "
                 "rate at its steady state.</p>")
    dl = data.get("delays")
    if dl:
        P.append("<h3 id='s-delays'>Delayed connects</h3><div class='cards'>")
        P.append(f"<div class='card'><div class='small'>delayed connects per hour</div><div class='big'>"
                 f"{_span(page, 'delayed-connects-per-hour')}</div><div class='small'>95 %: "
                 f"{_ci(dl['delayed_connects_per_hour_ci'])}; {dl['delayed_connects']:,} counted "
                 f"({fmt_pct(dl['delayed_fraction'])} of connections)</div></div>")
        P.append(f"<div class='card'><div class='small'>connect delay, median</div><div class='big'>"
                 f"{_span(page, 'connect-delay-p50')}</div></div>")
        P.append(f"<div class='card'><div class='small'>connect delay, 99th percentile</div>"
                 f"<div class='big'>{_span(page, 'connect-delay-p99')}</div></div></div>")
        if "connect_delay" in pngs:
            P.append(_img("connect_delay", pngs["connect_delay"],
                          "Connect delays: the SYN retried until the 4-tuple was free"))
        extra = []
        if dl.get("failed_connects") is not None:
            extra.append(f"failed connects (SYN schedule ran out): {fmt_num(dl['failed_connects'])}")
        extra.append(f"on collision: {e(str(dl['on_collision']))}")
        if dl.get("kernel"):
            extra.append(f"target kernel {e(str(dl['kernel']))}")
        if dl.get("challenge_ack_limit"):
            extra.append(f"challenge-ACK limit {fmt_num(dl['challenge_ack_limit'])}/s")
        if dl.get("syn_retries"):
            extra.append("SYN retries at " + ", ".join(fmt_num(x) for x in dl["syn_retries"]) + " s")
        P.append(f"<p class='small'>{'; '.join(extra)}. {e(dl['method'])}.</p>")
    P.append(f"<p class='small'>Measured: {v['counted_collisions']:,} collisions counted in "
             f"{v['connections']:,} connections over {fmt_duration(v['horizon_s'])}; rates from the "
             f"{e(v['method'])} (docs/model.md §3). {cf_text}. Time to first reset from "
             f"{fr['replicates']} replicates ({e(str(fr['start']))} start, {fr['censored']} censored at "
             f"{fmt_duration(fr['horizon_s'])}); 95 % intervals by bootstrap.</p>")
    # 2. scenario
    life = sc["lifetime"]
    if life["dist"] == "empirical":
        life_text = (f"empirical: {fmt_num(life.get('samples'))} measured lifetimes from "
                     f"<code>{e(str(life.get('file_name') or life.get('file')))}</code>"
                     + (f" (column <code>{e(life['column'])}</code>)" if life.get("column") else "")
                     + f", mean {fmt_duration(life['mean'])}, resampled; variants scale every value")
    else:
        life_text = ""
    life_text = life_text or f"{life['dist']}, mean {fmt_duration(life['mean'])}" + (
        f", σ {life['sigma']:g}" if "sigma" in life else "") + (f", α {life['alpha']:g}" if "alpha" in life else "")
    P.append("<h2 id='s-scenario'>2. The scenario as understood</h2>")
    P.append(_img("topology", pngs["topology"], "Clients → NAT IPs → NLB nodes → targets"))
    sched_rows = sc.get("schedule") or []
    balancers = sc.get("balancers", 1) or 1
    rows = [("clients", f"{sc['clients']:,} host(s), {fmt_num(sc['rate'])} new connections/s in all"
             + (" (mean over the window)" if sched_rows else "")),
            *([("load schedule", "; ".join(f"from {fmt_duration(a)}: {fmt_num(r)}/s" for a, r in sched_rows[:24])
                + (f"; … ({len(sched_rows)} segments)" if len(sched_rows) > 24 else ""))] if sched_rows else []),
            ("connection lifetime", life_text),
            ("live connections (mean)", fmt_num(sc["mean_live"])),
            ("NAT", f"{sc['nat_ips']} public IP(s), chosen {sc['ip_choice']}; allocator "
                    f"<b>{e(sc['allocator'])}</b>; ports {sc['port_range'][0]}–{sc['port_range'][1]}, "
                    f"≤ {sc['per_destination_limit']:,} per destination"),
            ("load balancer", (f"<b>{balancers} balancers × {sc['nodes']} node(s)</b> = "
                               f"{sc.get('total_nodes')} nodes sharing the targets"
                               + (f" (clients split {sc['balancer_weights']})" if sc.get("balancer_weights") else "")
                               + f", {sc['node_choice']} node choice" if balancers > 1 else
                               f"{sc['nodes']} node(s), {sc['node_choice']} node choice")
                              + (f" (DNS TTL {fmt_num(sc['dns_ttl'])} s)" if sc["node_choice"] == "sticky" else "")
                              + f"; targets per zone {sc['zone_targets']}"),
            ("cross-zone", ("<b>on</b>" if sc["cross_zone"] else "off")
             + (" (with several balancers, their nodes in one zone still share its targets)"
                if balancers > 1 and not sc["cross_zone"] else "")),
            ("client IP preservation", "<b>on</b>" if sc["client_ip_preservation"] else "off"),
            ("at the target", f"on collision: {e(sc['on_collision'])}; TIME_WAIT {fmt_num(sc['time_wait'])} s, "
                              f"server closes first {fmt_pct(sc['server_close_fraction'])}"
                              + (f"; kernel {e(str(sc['kernel']))}" if sc.get("kernel") not in (None, "modern") else "")
                              + (f"; challenge ACKs limited to {fmt_num(sc['challenge_ack_limit'])}/s"
                                 if sc.get("challenge_ack_limit") else "")),
            ("measured", f"{fmt_duration(sc['horizon'])}, warm-up {e(str(sc['warmup']))}")]
    P.append("<table>" + "".join(f"<tr><th>{e(k)}</th><td>{val}</td></tr>" for k, val in rows) + "</table>")
    # 3. mitigations
    P.append("<h2 id='s-mitigations'>3. Mitigations, each simulated</h2>")
    P.append(_img("mitigations", pngs["mitigations"], "Collisions per hour under each mitigation"))
    show_delays = bool(data.get("delays"))
    P.append("<table id='mitigation-table'><tr><th>change</th><th>collisions / hour</th><th>95 %</th>"
             "<th>closed form</th>" + ("<th>delayed connects / hour</th>" if show_delays else "")
             + "<th>vs today</th><th>cost</th></tr>")
    for i, m in enumerate(data["mitigations"]):
        P.append(f"<tr><td>{e(m['name'])}</td><td class='num'>{_span(page, f'mitigation-{i}-collisions-per-hour')}"
                 f"</td><td class='num'>{_ci(m['collisions_per_hour_ci'])}</td>"
                 f"<td class='num'>{fmt_num(m['closed_form_collisions_per_hour'])}</td>"
                 + (f"<td class='num'>{fmt_num(m.get('delayed_connects_per_hour'))}</td>"
                    if show_delays else "")
                 + f"<td class='num'>{_change(m['change_vs_today'])}</td><td class='small'>{e(m['cost'])}"
                 + (f" Allocation failures: {m['allocation_failures']:,}." if m["allocation_failures"] else "")
                 + "</td></tr>")
    P.append("</table>")
    for m in data.get("mitigations_left_out", ()):
        P.append(f"<p class='small left-out'>Not shown: <b>{e(m['name'])}</b> does not apply to this "
                 f"scenario ({e(m['reason'])}).</p>")
    P.append("<p class='small'>More NAT IPs help only if the NAT spreads one client's connections "
             "over them (<code>per-connection</code>); a NAT that pins each client to one IP "
             "(<code>per-client</code>) gives a single busy client no relief.</p>")
    P.append("<h3 id='s-allocators'>3b. Uncertainty about the NAT's port allocator</h3>")
    P.append("<p class='small'>Providers do not document how their NAT picks ports, so today's scenario is "
             "shown under each allocator of docs/model.md §2.3. The range is the honest answer.</p>")
    P.append(_img("allocators", pngs["allocators"], "Collisions per hour under each NAT port allocator"))
    P.append("<table><tr><th>allocator</th><th>collisions / hour</th><th>95 %</th><th>closed form</th>"
             "<th>method</th></tr>")
    for a in data["allocators"]:
        P.append(f"<tr><td>{e(a['allocator'])}</td><td class='num'>{fmt_num(a['collisions_per_hour'])}</td>"
                 f"<td class='num'>{_ci(a['collisions_per_hour_ci'])}</td>"
                 f"<td class='num'>{fmt_num(a['closed_form_collisions_per_hour'])}</td>"
                 f"<td class='small'>{e(a['method'])}</td></tr>")
    P.append("</table><p class='small'><code>sequential</code> depends on where each destination's cursor "
             "starts; one run's interval does not cover that spread. <code>eim</code> cannot collide.</p>")
    # 4. sensitivity
    P.append("<h2 id='s-sensitivity'>4. Sensitivity</h2>")
    P.append(_img("sensitivity_rate", pngs["sensitivity_rate"],
                  "Collisions per hour against the connection rate (today marked)"))
    P.append(_img("sensitivity_lifetime", pngs["sensitivity_lifetime"],
                  "Collisions per hour against the mean connection lifetime (today marked)"))
    for key in ("traffic.rate", "traffic.duration.mean"):
        note = data["sensitivity"][key].get("note")
        if note:
            P.append(f"<p class='small'>{e(key)}: {e(note)}.</p>")
    P.append(_img("survival", pngs["survival"], "Survival curve: time to the first reset"))
    # 5. ports
    pt = data["ports"]
    P.append("<h2 id='s-ports'>5. Port headroom</h2>")
    P.append(_img("ports", pngs["ports"], "Live connections per destination against the limit"))
    P.append(f"<p>Peak live connections per destination (NAT IP, NLB node): "
             f"{_span(page, 'peak-live-per-destination')} of {pt['limit']:,} "
             f"({fmt_pct(pt['fraction_of_limit'])}); mean {fmt_num(pt['mean_live_per_destination'])}. "
             f"Allocation failures: {_span(page, 'allocation-failures')} "
             f"({fmt_pct(pt['allocation_failure_fraction'])} of connections). With client IP preservation "
             f"off, each node may hold at most {pt['node_limit_per_target']:,} live connections per target.</p>")
    if data.get("observed"):      # collide report --capture (issue 17), --intake (issue 26)
        if data["observed"].get("kind") == "intake":
            from ..intake.report import observed_html
        else:
            from ..scan.report import observed_html
        P.append(observed_html(data["observed"]))
    # 6. how computed
    P.append("<h2 id='s-how'>6. How it was computed</h2><ul>")
    P.extend(f"<li>{e(a)}</li>" for a in comp["assumptions"])
    P.append("</ul>")
    P.append(f"<p>Engine: collide {e(comp['version'])} ({e(comp['backend'])} backend), seed "
             f"<code id='seed'>{comp['seed']}</code>; every sub-run's seed is in "
             f"<code>summary.json</code> and repeats with <code>collide simulate --seed</code>. Generated in "
             f"{fmt_num(comp['elapsed_s'])} s. Reproduce this page:</p><pre id='command'>{e(comp['command'])}</pre>")
    P.append("</body></html>")
    return "\n".join(P)


def _value(x, unit: str) -> str:
    if x is None:
        return "–"
    if unit == "s":
        return fmt_duration(x)
    if isinstance(x, float) and x.is_integer() and unit != "conn/s":
        x = int(x)
    if x == 1 and unit.endswith("s") and unit != "conn/s":
        unit = unit[:-1]
    return f"{fmt_num(x)} {unit}".strip()


def _first_screen(data: dict, page: dict, colour: str) -> str:
    """What a reader must see without scrolling (1400×900): the risk against the budget, the
    recommended change and two alternatives with effect and cost, today's headroom on the levers."""
    e = html.escape
    v = data["verdict"]
    b = v["budget"]
    sv = data.get("solve") or {}
    counts = b.get("counts", "resets")
    P = ["<section id='first-screen' class='first'><div class='row'>"]
    factor = v.get("headroom_factor")
    if factor is None:
        margin = "no collision is possible today"
    elif factor < 1:
        margin = f"today is {fmt_num(1 / factor)}× the budget"
    else:
        margin = f"headroom: {fmt_num(factor)}× today's risk"
    pw = v["p_reset_window"]
    P.append(f"<div class='box' id='verdict-box'><div class='small'>Risk against your budget</div>"
             f"<div><span class='verdict' style='background:{colour}'>{_span(page, 'verdict')}"
             f"</span> <b>{e(v['level_words'])}</b></div>"
             f"<div class='big'>{_span(page, 'collisions-per-hour')} {e(counts)} per hour</div>"
             f"<div class='small'>95 %: {_span(page, 'collisions-per-hour-low')} – "
             f"{_span(page, 'collisions-per-hour-high')}; closed form "
             f"{_span(page, 'closed-form-collisions-per-hour')}</div>"
             f"<div id='budget-line'>Budget: {e(b['text'])} = at most {_span(page, 'budget')} per "
             f"hour; {e(margin)}.</div>"
             f"<div class='small'>P(at least one reset within {fmt_duration(v['window_s'])}): "
             f"{fmt_pct(pw['value'])} (95 % {_ci(pw['ci'], fmt_pct)}).</div></div>")
    rec = sv.get("recommendation") or {}
    P.append("<div class='box' id='recommendation'><div class='small'>Recommended change"
             + (f" ({e(rec['reason'])})" if rec.get("reason") else "") + "</div>"
             f"<div class='rec'>{_span(page, 'recommendation-text') if 'recommendation-text' in page else e(rec.get('text', '–'))}</div>"
             + _effect_cost(rec, counts))
    alts = sv.get("alternatives") or []
    if alts:
        P.append("<div class='small'>Next alternatives:</div><ol>")
        for i, alt in enumerate(alts[:2]):
            P.append(f"<li id='alternative-{i}'><b>{e(alt['text'])}</b>{_effect_cost(alt, counts)}</li>")
        P.append("</ol>")
    P.append("</div></div>")
    P.append("<table id='headroom-table'><tr><th>lever (today's headroom)</th><th>today</th>"
             "<th>meets the budget at</th><th>95 %</th><th>how</th><th>simulated there</th></tr>")
    for h in data["headroom"]:
        unit = h["unit"]
        if h["reachable"] and h["value"] is not None:
            way = "≤ " if h["safe_direction"] == "down" else "≥ "
            iv = h.get("interval")
            ivt = _ci(iv, (lambda x: _value(x, unit))) if iv else "–"
            if iv and _value(iv[0], unit) == _value(iv[1], unit):
                ivt = "exact (closed form)" if h["method"].startswith("closed") else _value(iv[0], unit)
            c = h.get("confirmed")
            ctext = (f"{fmt_num(c['resets_per_hour'])} ({_ci(c['interval'])}): {e(c['verdict'])}"
                     if c else "–")
            how = "closed form" if h["method"].startswith("closed form") else "simulation"
            extra = f"; {e(h['deployment'])}" if h.get("deployment") else ""
            P.append(f"<tr><td>{e(h['quantity'])}</td><td class='num'>{_value(h['today'], unit)}</td>"
                     f"<td class='num'><b>{way}{_value(h['value'], unit)}</b></td>"
                     f"<td class='num'>{ivt}</td><td class='small'>{how}{extra}</td>"
                     f"<td class='small'>{ctext}</td></tr>")
        else:
            P.append(f"<tr class='unreachable'><td>{e(h['quantity'])}</td>"
                     f"<td class='num'>{_value(h['today'], unit)}</td><td>not reachable</td>"
                     f"<td colspan='3' class='small'>{e(h.get('note') or '')}</td></tr>")
    P.append("</table>")
    notes = sv.get("notes") or []
    if notes:
        P.append("<p class='small'>" + e("; ".join(notes)) + ".</p>")
    P.append("</section>")
    return "".join(P)


def _effect_cost(item: dict, counts: str) -> str:
    e = html.escape
    if not item or item.get("effect") is None and not item.get("cost"):
        return ""
    eff = item.get("effect")
    iv = item.get("effect_interval")
    eff_t = (f"{fmt_num(eff)} {counts} per hour" + (f" (95 % {_ci(iv)})" if iv else "")
             if eff is not None else "–")
    return (f"<div class='small'>Effect: {eff_t}. Cost: {e(str(item.get('cost') or '–'))}.</div>")


def _change(x) -> str:
    if x is None:
        return "–"
    if x <= -0.9995:
        return "−100 %"
    return ("+" if x > 0 else "−" if x < 0 else "") + f"{fmt_num(abs(x) * 100)} %"


def _head_at(lines: list) -> int:
    """Where the mitigation table's header starts (bullets go just before its blank line)."""
    return lines.index("| change | collisions / hour | 95 % | closed form | vs today | cost |") - 1


def render_md(data: dict, page: dict) -> str:
    v = data["verdict"]
    cf = v["closed_form_collisions_per_hour"]
    rec = (data.get("solve") or {}).get("recommendation") or {}
    alts = (data.get("solve") or {}).get("alternatives") or []
    lines = [f"# {data['title']}", "",
             f"**Risk: {v['level'].upper()} ({v['level_words']})**: {v['thresholds']['text']}.", "",
             f"- Recommended change: **{rec.get('text', '–')}**"
             + (f" (cost: {rec['cost']})" if rec.get("cost") else ""),
             *[f"- Or: {a['text']} (cost: {a.get('cost') or '–'})" for a in alts[:2]],
             f"- Collisions (resets) per hour: **{page['collisions-per-hour']['text']}** "
             f"(95 % {_ci(v['collisions_per_hour_ci'])}; closed form {fmt_num(cf)}); per day "
             f"{page['collisions-per-day']['text']}",
             f"- Per connection: {page['collision-probability']['text']} (95 % "
             f"{_ci(v['collision_probability_ci'])})",
             f"- Time to first reset: median {page['median-first-reset']['text']}, 95th percentile "
             f"{page['p95-first-reset']['text']}",
             "- P(≥ 1 reset): " + ", ".join(f"{row['label']} {fmt_pct(row['value'])}"
                                            for row in v.get("p_reset", ()))
             + f", within {fmt_duration(v['window_s'])} {page['p-reset-window']['text']}",
             "", "| change | collisions / hour | 95 % | closed form | vs today | cost |",
             "|---|---:|---:|---:|---:|---|"]
    for m in data["mitigations"]:
        lines.append(f"| {m['name']} | {fmt_num(m['collisions_per_hour'])} | {_ci(m['collisions_per_hour_ci'])} | "
                     f"{fmt_num(m['closed_form_collisions_per_hour'])} | {_change(m['change_vs_today'])} | "
                     f"{m['cost']} |")
    lines += [""] * bool(data.get("mitigations_left_out")) + [f"- Not shown: {m['name']} does not apply to this scenario ({m['reason']})"
              for m in data.get("mitigations_left_out", ())]
    ps = v.get("p_reset_schedule")
    if ps:
        lines[_head_at(lines):_head_at(lines)] = [f"- Over the window as scheduled ({fmt_duration(ps['seconds'])}): expected "
                        f"{page['expected-resets-schedule']['text']} resets, P(≥ 1) "
                        f"{page['p-reset-schedule']['text']}"]
    dl = data.get("delays")
    if dl:
        lines[_head_at(lines):_head_at(lines)] = [f"- Delayed connects: {page['delayed-connects-per-hour']['text']} per hour; "
                        f"connect delay p50 {page['connect-delay-p50']['text']}, p99 "
                        f"{page['connect-delay-p99']['text']}"]
    if data.get("observed"):      # collide report --capture (issue 17), --intake (issue 26)
        if data["observed"].get("kind") == "intake":
            from ..intake.report import observed_md
        else:
            from ..scan.report import observed_md
        lines += observed_md(data["observed"])
    lines += ["", f"Reproduce: `{data['computed']['command']}`", ""]
    return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):          # numpy scalars
        return x.item()
    return x


def write_report(data: dict, out_dir, scenario_toml: str | None = None,
                 extra_files: dict | None = None, place=None) -> Path:
    """Write the page, the summaries and the figures into out_dir, with `extra_files` ({name:
    bytes}) beside them. `place`: the command's `collide.files.OutputDir`, checked and locked
    before the work; without one the folder is made or its report files replaced (the API)."""
    out = Path(out_dir)
    data = _jsonable(data)
    page = headline(data)
    data["page"] = page
    figs = make_figures(data)
    plt = _plt()
    from ..files import OutputDir
    own = place is None
    if own:
        place = OutputDir(out, "--out", overwrite=True, writer="collide report")
    ok = False
    try:
        # written in a staging folder inside OUT, then each file renamed into place: a failure or
        # a kill leaves no half page, only the report's own files are replaced, and a mount point
        # is never crossed (the next run clears a staging folder a kill left)
        with place.writing() as tmp:
            (tmp / "figures").mkdir()
            pngs = {}
            for name, fig in figs.items():
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=100)
                pngs[name] = buf.getvalue()
                (tmp / "figures" / f"{name}.png").write_bytes(pngs[name])
                fig.savefig(tmp / "figures" / f"{name}.svg", format="svg")
                plt.close(fig)
            (tmp / "index.html").write_text(render_html(data, page, pngs), encoding="utf-8")
            (tmp / "summary.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
            (tmp / "summary.md").write_text(render_md(data, page), encoding="utf-8")
            if scenario_toml is not None:
                (tmp / "scenario.toml").write_text(scenario_toml, encoding="utf-8")
            for name, blob in (extra_files or {}).items():
                (tmp / name).write_bytes(blob)
        ok = True
    finally:
        for fig in figs.values():
            plt.close(fig)
        if own:
            place.close(ok=ok)
    return place.path if own else out
