"""Figures from sweep rows: a metric against an axis, one line per hue value, interval bands, the closed form.

    >>> from collide.plot import plot_sweep
    >>> plot_sweep("results.csv", x="traffic.rate", y="collisions_per_hour",
    ...            hue="load_balancer.cross_zone", out="rate.png")

matplotlib (Agg) is imported only when a figure is drawn.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError

__all__ = ["plot_sweep", "plot_budget", "PlotError", "LABELS"]


class PlotError(InputError):
    """A bad plot request (unknown column, no rows, unknown file type); the message is one line."""


#: Readable axis labels with units, by column name.
LABELS = {
    "traffic.rate": "new connections per second",
    "traffic.duration.mean": "mean connection lifetime (s)",
    "traffic.horizon": "measured window (s)",
    "traffic.clients": "client hosts",
    "nat.ips": "NAT public IPs",
    "nat.reuse_delay": "NAT port reuse delay (s)",
    "nat.allocator": "NAT port allocator",
    "load_balancer.nodes": "load-balancer nodes",
    "load_balancer.targets": "targets",
    "load_balancer.cross_zone": "cross-zone",
    "load_balancer.dns_ttl": "DNS TTL (s)",
    "target.time_wait": "TIME_WAIT (s)",
    "target.on_collision": "on collision",
    "connections": "connections",
    "collisions": "collisions",
    "collision_probability": "collisions per connection",
    "collisions_per_hour": "collisions per hour",
    "expected_collisions": "expected collisions (conditional estimate)",
    "expected_collisions_per_hour": "expected collisions per hour (conditional estimate)",
    "first_collision_s": "first collision (s into the window)",
    "reset_victims": "connections reset",
    "time_wait_hits": "SYNs meeting TIME_WAIT",
    "allocation_failures": "NAT allocation failures",
    "peak_live_per_destination": "peak live connections per destination",
    "elapsed_s": "wall time per point (s)",
    "horizon_s": "measured window per replicate (s)",
    "rel_error": "relative standard error",
}


def plain_text(text) -> str:
    """Text from the user (a title, a column name, a value) shown as written: matplotlib reads a
    pair of `$` as mathtext, which fails on `$\\foo$` and changes what others show."""
    return str(text).replace("$", r"\$")


def _label(col: str) -> str:
    return LABELS.get(col, col.replace("_", " "))


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _spans_decades(values) -> bool:
    pos = [v for v in values if v is not None and v > 0]
    return len(pos) >= 2 and max(pos) / min(pos) >= 50 and len(pos) >= 0.8 * len(values)


def _band(row: dict, y: str):
    """The 95 % interval of metric `y` for one row, where one is known."""
    lo, hi = row.get("collision_probability_ci_low"), row.get("collision_probability_ci_high")
    if y == "collision_probability" and lo is not None:
        return lo, hi
    if y in ("collisions_per_hour", "collisions") and lo is not None:
        conn = row.get("connections") or 0
        scale = conn
        if y == "collisions_per_hour":
            seconds = (row.get("horizon_s") or 0) * (row.get("replicates") or 1)
            if not seconds:
                return None
            scale = conn / seconds * 3600.0
        return lo * scale, hi * scale
    if y == "expected_collisions":
        e, s = row.get("expected_collisions"), row.get("expected_collisions_se")
        if e is not None and s is not None:
            return e - 1.96 * s, e + 1.96 * s
    return None


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _rows(rows_or_path) -> list[dict]:
    """The sweep's rows (a results file or rows already read); PlotError when there are none."""
    from .sweep import rows_of
    try:
        rows = rows_of(rows_or_path)
    except FileNotFoundError:
        raise PlotError(f"RESULTS {rows_or_path}: no such file") from None
    if not rows:
        raise PlotError(f"RESULTS {rows_or_path if isinstance(rows_or_path, (str, Path)) else ''}: "
                        "no rows")
    return rows


def plot_sweep(rows_or_path, x: str, y: str, hue: str | None = None, out: str | Path = "fig.png",
               where: Mapping[str, Any] | None = None, title: str | None = None) -> Path:
    """Draw `y` against `x` (one line per `hue` value) and write PNG or SVG (by `out`'s extension).

    Interval bands: the Wilson 95 % interval for collision_probability (scaled for collisions and
    collisions_per_hour), ±1.96 SE for expected_collisions. The closed form (`analytic_<y>`) is a dashed
    line where the rows have it. Axes go logarithmic where the values span decades. Rows that differ in
    other axis columns (dotted names) are drawn as separate thin lines; `where` keeps only rows with the
    given values.
    """
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise PlotError(f"--out {out}: must end in .png or .svg")
    rows = _rows(rows_or_path)
    columns = list(rows[0])
    for flag, col in (("--x", x), ("--y", y), ("--hue", hue)) + tuple(("--where", k) for k in (where or {})):
        if col is not None and col not in columns:
            from ..scenario import _did_you_mean
            raise PlotError(f"{flag} {col}: no such column{_did_you_mean(col, columns)}; "
                            f"columns: {', '.join(columns)}")
    if where:
        from .sweep import _same
        rows = [r for r in rows if all(_same(r.get(k), v) for k, v in where.items())]
        if not rows:
            raise PlotError("--where " + ", ".join(f"{k}={v}" for k, v in where.items()) + ": no row matches")
    for flag, col in (("--x", x), ("--y", y)):
        if not any(_num(r.get(col)) is not None for r in rows):
            sample = next((r.get(col) for r in rows if r.get(col) is not None), None)
            numeric = [c for c in columns if any(_num(r.get(c)) is not None for r in rows[:50])]
            raise PlotError(f"{flag} {col}: the column holds no numbers"
                            + (f" (e.g. {sample!r})" if sample is not None else " (all empty)")
                            + "; numeric columns: " + (", ".join(numeric[:6]) or "none")
                            + (", ..." if len(numeric) > 6 else ""))

    others = [c for c in columns if "." in c and c not in (x, hue)
              and len({repr(r.get(c)) for r in rows}) > 1]
    groups: dict = {}
    for r in rows:
        key = (r.get(hue) if hue else None, tuple(r.get(c) for c in others))
        groups.setdefault(key, []).append(r)

    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    hues = sorted({k[0] for k in groups}, key=lambda v: (str(type(v)), v))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {h: colors[i % len(colors)] for i, h in enumerate(hues)}
    analytic_col = f"analytic_{y}"
    has_analytic = analytic_col in columns
    series = []                     # (hue, xs, ys, bands, analytic ys)
    all_x, all_y = [], []
    for (h, _), grp in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        pts = sorted(((_num(r.get(x)), r) for r in grp if _num(r.get(x)) is not None), key=lambda t: t[0])
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [_num(r.get(y)) for _, r in pts]
        bands = [_band(r, y) for _, r in pts]
        ay = [_num(r.get(analytic_col)) for _, r in pts] if has_analytic else []
        all_x += xs
        all_y += [v for v in ys + ay if v is not None]
        series.append((h, xs, ys, bands, ay))
    logx, logy = _spans_decades(all_x), _spans_decades(all_y)
    floor = None
    if logy:
        pos = [v for v in all_y if v > 0]
        floor = min(pos) / 3

    def clean(vals):
        out = []
        for v in vals:
            if v is None or (logy and v <= 0):
                out.append(float("nan"))
            else:
                out.append(v)
        return out

    labelled = set()
    drawn_analytic = False
    zeros_hidden = False
    for h, xs, ys, bands, ay in series:
        c = color_of[h]
        label = None
        if h not in labelled:
            label = plain_text(f"{_label(hue)} = {_fmt_value(h)}") if hue else "simulated"
            labelled.add(h)
        if logy and any(v is not None and v <= 0 for v in ys):
            zeros_hidden = True
        ax.plot(xs, clean(ys), "o-", color=c, lw=1.8 if not others else 1.0, ms=3.5, label=label)
        if any(b is not None for b in bands):
            lo = [b[0] if b else float("nan") for b in bands]
            hi = [b[1] if b else float("nan") for b in bands]
            if logy:
                lo = [max(v, floor) for v in lo]
                hi = [max(v, floor) for v in hi]
            ax.fill_between(xs, lo, hi, color=c, alpha=0.18, lw=0)
        if any(v is not None for v in ay):
            ax.plot(xs, clean(ay), "--", color=c, lw=1.0, alpha=0.9,
                    label=None if drawn_analytic else "closed form (docs/model.md §3)")
            drawn_analytic = True

    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
    ax.set_xlabel(plain_text(_label(x)))
    ax.set_ylabel(plain_text(_label(y)))
    bits = [title] if title else []
    if where:
        bits.append(", ".join(f"{k} = {_fmt_value(v)}" for k, v in where.items()))
    if others:
        bits.append("one line per " + ", ".join(others))
    if zeros_hidden:
        bits.append("zeros not shown (log scale)")
    if bits:
        ax.set_title(plain_text("; ".join(bits)), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    bands_note = {"collision_probability": "bands: Wilson 95 %", "collisions_per_hour": "bands: Wilson 95 %",
                  "collisions": "bands: Wilson 95 %", "expected_collisions": "bands: ±1.96 SE"}.get(y)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, title=bands_note, title_fontsize=7)
    fig.tight_layout()
    from ..files import atomic_file, check_output_file
    check_output_file(out, "--out")
    try:
        with atomic_file(out, "--out") as tmp:         # no half-written figure on a failure
            fig.savefig(tmp, format=out.suffix.lower()[1:])
    finally:
        plt.close(fig)
    return out


def plot_budget(rows_or_path, x: str, y: str, budget, out: str | Path = "budget.png",
                where: Mapping[str, Any] | None = None, title: str | None = None) -> Path:
    """The boundary where a budget is met on a two-key grid: a heatmap of the resets per hour
    (`expected_collisions_per_hour`, else the count's `collisions_per_hour`), the contour where it
    equals the budget's rate, and hatched where the budget lies within a point's 95 % interval
    (± 1.96 SE; Poisson for counted rows). `budget`: a Budget or "N/PERIOD" (collide solve)."""
    from .solve import Budget
    from .sweep import _same
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise PlotError(f"--out {out}: must end in .png or .svg")
    b = Budget.parse(budget)
    r_star = b.max_per_hour
    rows = _rows(rows_or_path)
    columns = list(rows[0])
    for flag, col in (("--x", x), ("--y", y)) + tuple(("--where", k) for k in (where or {})):
        if col not in columns:
            from ..scenario import _did_you_mean
            raise PlotError(f"{flag} {col}: no such column{_did_you_mean(col, columns)}; "
                            f"columns: {', '.join(columns)}")
    if "." not in y or "." not in x:
        raise PlotError(f"--x {x} --y {y}: with a budget both must be keys of the grid (dotted "
                        "names such as traffic.rate, nat.ips): the colour is the resets per hour")
    if where:
        rows = [r for r in rows if all(_same(r.get(k), v) for k, v in where.items())]
        if not rows:
            raise PlotError("--where " + ", ".join(f"{k}={v}" for k, v in where.items())
                            + ": no row matches")
    others = [c for c in columns if "." in c and c not in (x, y)
              and len({repr(r.get(c)) for r in rows}) > 1]
    if others:
        raise PlotError(f"--x {x} --y {y}: other keys vary too ({', '.join(others)}); pick one "
                        f"slice with --where, e.g. --where {others[0]}={rows[0].get(others[0])}")
    xs = sorted({_num(r.get(x)) for r in rows if _num(r.get(x)) is not None})
    ys = sorted({_num(r.get(y)) for r in rows if _num(r.get(y)) is not None})
    if len(xs) < 2 or len(ys) < 2:
        raise PlotError(f"--x {x} --y {y}: a boundary needs at least 2 values of each key "
                        f"(got {len(xs)} and {len(ys)})")
    import numpy as np
    Z = np.full((len(ys), len(xs)), np.nan)
    S = np.full((len(ys), len(xs)), np.nan)
    ix = {v: i for i, v in enumerate(xs)}
    iy = {v: i for i, v in enumerate(ys)}
    counted = False
    for r in rows:
        i, j = iy.get(_num(r.get(y))), ix.get(_num(r.get(x)))
        if i is None or j is None:
            continue
        e, se = _num(r.get("expected_collisions_per_hour")), _num(r.get("expected_collisions_per_hour_se"))
        if e is None:               # no estimate kept: the count, with its Poisson error
            counted = True
            e = _num(r.get("collisions_per_hour"))
            c = _num(r.get("collisions")) or 0.0
            se = e / math.sqrt(c) if e and c > 0 else None
        Z[i, j] = e if e is not None else np.nan
        S[i, j] = se if se is not None else np.nan
    if np.isnan(Z).any():
        raise PlotError(f"--x {x} --y {y}: the grid has holes ({int(np.isnan(Z).sum())} of {Z.size} "
                        "points have no rate); a boundary needs every point")
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    pos = Z[Z > 0]
    floor = (pos.min() if pos.size else r_star) / 10
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    X, Y = np.meshgrid(xs, ys)
    shown = np.where(Z > 0, Z, floor)
    vmin, vmax = min(shown.min(), r_star / 10), max(shown.max(), r_star * 10)
    mesh = ax.pcolormesh(X, Y, shown, shading="nearest", cmap="viridis",
                         norm=LogNorm(vmin=vmin, vmax=vmax))
    fig.colorbar(mesh, ax=ax, label=("collisions" if counted else "resets") + " per hour"
                 + (" (counted)" if counted else " (conditional estimate)"))
    logz = np.log(shown)
    cs = ax.contour(X, Y, logz, levels=[math.log(r_star)], colors="white", linewidths=2.0)
    lo = np.log(np.maximum(shown - 1.96 * np.nan_to_num(S), floor / 10))
    hi = np.log(shown + 1.96 * np.nan_to_num(S))
    band = ((lo <= math.log(r_star)) & (hi >= math.log(r_star))).astype(float)
    if band.any():
        ax.contourf(X, Y, band, levels=[0.5, 1.5], colors="none", hatches=["///"])
        ax.contour(X, Y, band, levels=[0.5], colors="white", linewidths=0.8, linestyles="dashed")
    logx = xs[0] > 0 and xs[-1] / xs[0] >= 10
    logy = ys[0] > 0 and ys[-1] / ys[0] >= 10
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Line2D([], [], color="white", lw=2.0, label=f"budget met: {b.text}"),
               Patch(facecolor="none", edgecolor="grey", hatch="///",
                     label="budget within the 95 % interval")]
    leg = ax.legend(handles=handles, fontsize=8, loc="upper left", facecolor="#444", labelcolor="white")
    leg.get_frame().set_alpha(0.8)
    bits = [title] if title else []
    if where:
        bits.append(", ".join(f"{k} = {_fmt_value(v)}" for k, v in where.items()))
    if not cs.allsegs or not any(len(s) for s in cs.allsegs[0]):
        side = "within" if (Z <= r_star).all() else "over"
        bits.append(f"every point is {side} the budget: no boundary on this grid")
    if bits:
        ax.set_title("; ".join(bits), fontsize=9)
    fig.tight_layout()
    from ..files import atomic_file, check_output_file
    check_output_file(out, "--out")
    try:
        with atomic_file(out, "--out") as tmp:
            fig.savefig(tmp, format=out.suffix.lower()[1:])
    finally:
        plt.close(fig)
    return out
