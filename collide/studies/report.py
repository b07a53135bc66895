"""The risk report's numbers (docs/model.md §4.6, issue 5): one dictionary with everything the page shows.

`build_report(scenario, seed=..., budget=...)` runs `collide solve` against the budget (the
headroom on each lever, the switches, the recommended change and its alternatives), then every
other simulation the page needs (today's scenario, the mitigations, the NAT allocators, the
sensitivity curves and the time to the first reset) over a small process pool, and returns a
JSON-ready dict. `collide.report_html`
turns that dict into `index.html`, `summary.json`, `summary.md` and the figures.

Estimates. A rate comes from the conditional estimate of docs/model.md §3 where the allocator defines one
(`random`, `sequential`, `eim`: unbiased, low variance, 95 % interval = ± 1.96 batch-means standard
errors), else from the collision count with an exact (Garwood) Poisson 95 % interval. Every Monte
Carlo number carries its interval and, where §3 gives one, the closed form beside it.

Model fidelity (issue 7): a `traffic.schedule` gets its verdict over the window as simulated, a
per-segment table and P(>= 1 reset) from the schedule's expected count; empirical lifetimes are
varied by scaling every measured value (`_Variants`); several balancers get a "one balancer"
mitigation; delayed connects (`delay-new`, older kernels, a challenge-ACK limit) get their rate,
p50/p99 and histogram (read defensively from the result: older engines lack the keys).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from typing import Callable

import numpy as np

from .. import __version__
from ..analytic import analytic, applies, is_zero
from ..scenario import Scenario, ScenarioError, builtin_names
from ..stats import garwood, kaplan_meier, kaplan_meier_quantile, z_value
from .solve import Budget
from .variants import Variants, bisect_closed_form, child_seed

SCHEMA_VERSION = 1
HOUR, DAY = 3600.0, 86400.0
#: The budget a report judges by when none is given (`--max-resets 1/day`).
DEFAULT_BUDGET = "1/day"
#: Old fixed thresholds, kept for `verdict_of(rate)` without a budget.
LOW_PER_HOUR = 1.0 / 24.0      # one reset a day
HIGH_PER_HOUR = 1.0            # one reset an hour
#: Windows offered for P(at least one reset): those where it is informative (1 %–99 %) are shown.
P_WINDOWS = (("a minute", 60.0), ("an hour", HOUR), ("a day", DAY), ("a week", 7 * DAY),
             ("a month (30 d)", 30 * DAY), ("a year", 365 * DAY))
NAT_IP_COUNTS = (2, 4, 8)
ALLOCATORS = ("random", "sequential", "linux", "eim")
#: Arrivals simulated at most per secondary run (mitigations, sensitivity): keeps a report fast.
ARRIVAL_BUDGET = 400_000
CONFIRM_ARRIVALS = 300_000
FIRST_RESET_REPLICATES = 200
FIRST_RESET_ARRIVALS = 100_000     # per replicate, at most
SENSITIVITY_FACTORS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Schedules with more segments than this get no per-segment closed form (it costs O(segments²)).
SEGMENT_CLOSED_FORM_MAX = 24

__all__ = ["build_report", "child_seed", "garwood", "rate_estimate", "verdict_of", "SCHEMA_VERSION",
           "LOW_PER_HOUR", "HIGH_PER_HOUR"]


def rate_estimate(res: dict, scenario: Scenario) -> dict:
    """Collisions per hour and per connection from one run, with the 95 % interval and the method."""
    horizon = res["horizon_s"]
    n = res["connections"]
    z = z_value(0.95)
    if res["expected_collisions"] is not None and res["expected_collisions_se"] is not None:
        e, se = res["expected_collisions"], res["expected_collisions_se"]
        lo, hi = max(0.0, e - z * se), e + z * se
        method = "conditional estimate"
    else:
        e = float(res["collisions"])
        lo, hi = garwood(res["collisions"])
        method = "counted"
    scale = HOUR / horizon if horizon > 0 else 0.0
    a = analytic(scenario)
    return {
        "collisions_per_hour": e * scale, "collisions_per_hour_ci": [lo * scale, hi * scale],
        "collision_probability": e / n if n else 0.0,
        "collision_probability_ci": [lo / n, hi / n] if n else [0.0, 1.0],
        "counted_collisions": res["collisions"], "connections": n, "horizon_s": horizon,
        "method": method,
        "closed_form_collisions_per_hour": a.collisions_per_hour if a else None,
        "closed_form_collision_probability": a.collision_probability if a else None,
        "closed_form": a.form if a else None,
        "closed_form_missing_reason": None if a else applies(scenario),
        "allocation_failures": res["allocation_failures"],
        "peak_live_per_destination": res["peak_live_per_destination"],
        "delayed_connects": res.get("delayed_connects"),
        "delayed_connects_per_hour": res["delayed_connects"] * scale
        if res.get("delayed_connects") is not None else None,
        "seed": res["seed"],
    }


def verdict_of(per_hour: float, interval=None, budget_per_hour: float | None = None) -> str:
    """"high" (over the budget: the whole 95 % interval above it), "elevated" (the interval holds
    the budget), "low" (the whole interval within it). Without a budget, the old fixed thresholds
    (1 per hour, 1 per day) on the estimate."""
    if budget_per_hour is None:
        if per_hour >= HIGH_PER_HOUR:
            return "high"
        if per_hour >= LOW_PER_HOUR:
            return "elevated"
        return "low"
    lo, hi = interval if interval is not None else (per_hour, per_hour)
    if lo > budget_per_hour:
        return "high"
    if hi <= budget_per_hour:
        return "low"
    return "elevated"


LEVEL_WORDS = {"high": "over budget", "elevated": "at the budget", "low": "within budget"}


def p_windows(per_hour: float) -> list[tuple[str, float]]:
    """Windows where P(at least one reset) is informative (1 %–99 %); where none is, the one
    nearest the expected time to the first reset."""
    if per_hour <= 0:
        return [("a day", DAY)]
    good = [(n, w) for n, w in P_WINDOWS if 0.01 <= _p_at_least_one(per_hour, w) <= 0.99]
    if good:
        return good
    mean_first = HOUR / per_hour
    return [min(P_WINDOWS, key=lambda nw: abs(math.log(nw[1] / mean_first)))]


def _p_at_least_one(per_hour: float, seconds: float) -> float:
    return -math.expm1(-per_hour / HOUR * seconds)


# -- the pool ---------------------------------------------------------------------------------------
def _run_task(task):
    """One task for the pool: ("simulate", scenario, seed, backend, estimate) or
    ("first_reset", ...)."""
    kind = task[0]
    t0 = time.perf_counter()
    if kind == "simulate":
        from ..api import simulate
        _, scenario, seed, backend, estimate = task
        r = simulate(scenario, seed=seed, backend=backend, estimate=estimate, force=True)
        if not r.finished:          # a cut run is not a result: the page is not written
            raise KeyboardInterrupt
        d = r.to_dict()
        d.pop("scenario")
        d["horizon_s"] = r.horizon_s
        return d
    from ..api import first_reset
    _, scenario, seed, backend, replicates, start = task
    fr = first_reset(scenario, replicates=replicates, seed=seed, start=start, backend=backend,
                     workers=1, force=True)
    d = fr.to_dict()
    d.pop("scenario")
    d["times"] = list(fr.times)
    d["horizon_s"] = fr.horizon_s
    d["elapsed_s"] = time.perf_counter() - t0
    return d


def _capped(s: Scenario, budget: float = ARRIVAL_BUDGET) -> Scenario:
    """The scenario with its horizon shortened so that a run simulates at most `budget` arrivals."""
    h = s.traffic.horizon
    if s.traffic.warmup != "auto" or s.traffic.schedule:
        # a cold or warm-up window's average, or a schedule's, depends on the window's length
        return s
    # runs start from the stationary state (or the scenario's warm-up), so a short window is unbiased
    cap = max(budget / s.traffic.rate, 1.0)
    return s.replace({"traffic.horizon": cap}) if cap < h else s


#: A secondary run (a sensitivity point) whose size estimate exceeds this many seconds of one core
#: is not simulated: past the NAT's port capacity every connection that finds its destination
#: full costs a pass over the ports, and a few such points would take the report from a minute to
#: a quarter of an hour (`collide report --scenario exhaustion`). The page names them.
SECONDARY_BUDGET_S = 15.0


def _too_costly(s: Scenario) -> str | None:
    """Why a secondary run is not simulated (its estimated cost, what drives it), or None."""
    from ..sizing import _duration, size_run
    size = size_run(s)
    if size.work_s <= SECONDARY_BUDGET_S:
        return None
    why = max(size.drivers, key=lambda d: d[0])[1]
    return f"{_duration(size.work_s)} of one core ({why})"


def _scaled_targets(s: Scenario, factor: int):
    t = s.load_balancer.targets
    return [x * factor for x in t] if isinstance(t, tuple) else t * factor


#: The shared variant machinery (collide.studies.variants); the old private names stay.
_Variants = Variants
_bisect_closed_form = bisect_closed_form


# -- headroom -----------------------------------------------------------------------------------------
def _headroom_rows(result) -> list[dict]:
    """The headroom table from `collide solve`: each lever's today, boundary, interval, safe
    direction, method and confirmation; unreachable values are shown as such, never as advice."""
    rows = []
    for lv in result.levers:
        d = lv.to_dict()
        d["quantity"] = lv.words
        rows.append(d)
    return rows


# -- time to first reset -------------------------------------------------------------------------------
def _bootstrap_quantile(times, q, seed, n_boot=300) -> list[float | None]:
    rng = np.random.default_rng(seed)
    arr = np.array([np.nan if t is None else t for t in times], dtype=float)
    vals = []
    for _ in range(n_boot):
        sample = arr[rng.integers(0, arr.size, arr.size)]
        v = kaplan_meier_quantile([None if math.isnan(t) else float(t) for t in sample], q)
        vals.append(math.inf if v is None else v)
    vals.sort()
    lo, hi = vals[int(0.025 * (n_boot - 1))], vals[int(math.ceil(0.975 * (n_boot - 1)))]
    return [None if not math.isfinite(lo) else float(lo), None if not math.isfinite(hi) else float(hi)]


def _first_reset_section(fr: dict | None, s: Scenario, per_hour: float, seed: int) -> dict:
    a = analytic(s)
    mean_cf = a.mean_first_collision_s if a else None
    out = {"replicates": 0, "censored": 0, "horizon_s": None, "start": None, "seed": None,
           "median_s": None, "median_s_ci": [None, None], "p95_s": None, "p95_s_ci": [None, None],
           "closed_form_median_s": mean_cf * math.log(2) if mean_cf else None,
           "closed_form_p95_s": mean_cf * math.log(20) if mean_cf else None,
           "closed_form_mean_s": mean_cf, "from_rate_median_s": None, "from_rate_p95_s": None,
           "survival_t": [], "survival_s": []}
    if per_hour > 0 and not s.traffic.schedule:
        out["from_rate_median_s"] = math.log(2) / per_hour * HOUR
        out["from_rate_p95_s"] = math.log(20) / per_hour * HOUR
    if fr is None:
        return out
    times = fr["times"]
    out.update(replicates=fr["replicates"], censored=fr["censored"], horizon_s=fr["horizon_s"],
               start=fr["start"], seed=fr["seed"], median_s=fr["median_s"], p95_s=fr["p95_s"],
               mean_s=fr["mean_s"])
    out["median_s_ci"] = _bootstrap_quantile(times, 0.5, seed)
    out["p95_s_ci"] = _bootstrap_quantile(times, 0.95, seed + 1)
    ts, ss = kaplan_meier(times)
    out["survival_t"] = [float(x) for x in ts]
    out["survival_s"] = [float(x) for x in ss]
    return out


# -- the report ----------------------------------------------------------------------------------------
def _describe_source(s: Scenario) -> str | None:
    """The built-in name if the scenario is exactly one, else None."""
    for name in builtin_names():
        if Scenario.builtin(name) == s:
            return name
    return None


def _mitigation_plan(s: Scenario, V: "_Variants | None" = None) -> list[dict]:
    V = V or _Variants()
    lb = s.load_balancer
    several = lb.balancers > 1
    plans = [
        ("cross-zone off", {"load_balancer.cross_zone": False},
         "Each node sends only to its own zone's targets: load is uneven across zones when clients "
         "favour one zone's node or zones hold different target counts; a zone losing targets is not "
         "backed up by the others."
         + (f" With {lb.balancers} balancers sharing the targets, the nodes of different balancers "
            "in one zone still send one client ip:port to the same targets: cross-zone off does not "
            "remove collisions here." if several else "")),
        ("client IP preservation off", {"load_balancer.client_ip_preservation": False},
         "Targets see the node's address, not the client's (use proxy protocol v2 to recover it); "
         "each node may hold at most 55,000 live connections per target."),
    ]
    for k in NAT_IP_COUNTS:
        for choice in ("per-connection", "per-client"):
            note = ("Extra NAT Gateway IPs (secondary addresses, about the price of an Elastic IP "
                    "each); " + ("helps: the NAT spreads each client's connections over all IPs."
                                 if choice == "per-connection" else
                                 "a NAT that pins each client to one IP only helps when there are "
                                 f"many clients (this scenario: {s.traffic.clients:,}); one busy "
                                 "client gains nothing."))
            plans.append((f"{k} NAT IPs, {choice}", {"nat.ips": k, "nat.ip_choice": choice}, note))
    empirical = s.traffic.duration.dist == "empirical"
    half = V.set(s, "traffic.duration.mean", s.traffic.duration.mean / 2)
    plans += [
        ("twice the targets", {"load_balancer.targets": _scaled_targets(s, 2)},
         f"{lb.total_targets} more targets to run and pay for."),
        ("half the connection lifetime",
         ({"traffic.duration": "every measured lifetime halved (a scaled copy of "
                               f"{os.path.basename(s.traffic.duration.file or '')})"}
          if empirical else {"traffic.duration.mean": s.traffic.duration.mean / 2}),
         "Shorter keep-alive / idle timeouts: more handshakes (and TLS set-ups) for the same work.",
         half),
        ("sticky DNS on the clients", {"load_balancer.node_choice": "sticky"},
         f"Clients cache one NLB address for {lb.dns_ttl:g} s: each client's load lands on one zone "
         "at a time, uneven across zones."),
    ]
    if several:
        plans.append(("one balancer", {"load_balancer.balancers": 1,
                                       "load_balancer.balancer_weights": []},
                      f"All clients through one of the {lb.balancers} entry points: one load balancer's "
                      "capacity, quotas and failure domain; clients or DNS must be repointed."))
    if several and lb.cross_zone:
        plans.append(("one balancer, cross-zone off",
                      {"load_balancer.balancers": 1, "load_balancer.balancer_weights": [],
                       "load_balancer.cross_zone": False},
                      "Both of the above: one entry point, and uneven load across zones."))
    out = []
    for p in plans:
        n, c, note = p[:3]
        try:
            variant = p[3] if len(p) > 3 else s.replace(c)
        except ScenarioError as exc:           # e.g. cross-zone off with fewer targets than zones
            out.append({"name": n, "changes": c, "cost": note, "left_out": str(exc)})
            continue
        out.append({"name": n, "changes": c, "cost": note, "variant": variant})
    return out


def build_report(scenario, seed: int = 1, window: float = 600.0, backend: str = "cython",
                 workers: int = 2, replicates: int = FIRST_RESET_REPLICATES,
                 progress: Callable[[float], None] | None = None,
                 source: str | None = None, command: str | None = None, estimate=None,
                 budget=None, rel_error: float = 0.05) -> dict:
    """Run everything the report shows and return it as one JSON-ready dict. `estimate`: the
    conditional estimate its simulations keep (None: the default). `budget`: what the risk is
    judged against (a Budget or "N/PERIOD"; default 1/day); `collide solve` gives the headroom,
    the recommended change and its alternatives, to `rel_error`. `window`: the user's window
    for P(at least one reset) (`--within`)."""
    V = _Variants()
    try:
        return _build_report(scenario, seed, window, backend, workers, replicates, progress, source,
                             command, V, estimate, budget, rel_error)
    finally:
        V.close()


def _segments_plan(s: Scenario) -> list[dict]:
    """The schedule's segments inside the measured window: start, end, rate."""
    t, out = s.traffic, []
    for i, (a, r) in enumerate(t.schedule):
        if a >= t.horizon:
            break
        b = min(t.schedule[i + 1][0], t.horizon) if i + 1 < len(t.schedule) else t.horizon
        out.append({"start_s": a, "end_s": b, "rate": r})
    return out


def _segment_closed_forms(s: Scenario, segs: list[dict]) -> list[float | None]:
    """Collisions per hour in each segment from the closed form integrated over the schedule
    (the expected count up to the segment's end minus that up to its start), or None."""
    if applies(s) is not None or len(segs) > SEGMENT_CLOSED_FORM_MAX:
        return [None] * len(segs)
    cum = {0.0: 0.0}
    for g in segs:
        for x in (g["start_s"], g["end_s"]):
            if x not in cum:
                a = analytic(s.replace({"traffic.horizon": x}))
                if a is None:
                    return [None] * len(segs)
                cum[x] = a.expected_collisions
    return [(cum[g["end_s"]] - cum[g["start_s"]]) / (g["end_s"] - g["start_s"]) * HOUR
            for g in segs]


def _expected_in(segs: list[dict], per_hour: list[float], seconds: float) -> float:
    """Expected collisions in [0, seconds] from per-segment rates; the last segment's rate holds on."""
    total = 0.0
    for i, (g, c) in enumerate(zip(segs, per_hour)):
        end = g["end_s"] if i + 1 < len(segs) else math.inf
        overlap = max(0.0, min(end, seconds) - g["start_s"])
        total += c / HOUR * overlap
    return total


def _build_report(scenario, seed, window, backend, workers, replicates, progress, source, command,
                  V: _Variants, estimate=None, budget=None, rel_error=0.05) -> dict:
    t_start = time.perf_counter()
    s = Scenario.load(scenario)
    if not window > 0:
        raise ValueError(f"--within {window}: must be > 0 seconds")
    seed = int(seed)
    budget = Budget.parse(budget if budget is not None else DEFAULT_BUDGET)
    from .solve import solve
    solve_progress = None if progress is None else (lambda f: progress(0.4 * f))
    solved = solve(s, budget, seed=child_seed(seed, 3000), workers=workers, backend=backend,
                   rel_error=rel_error, progress=solve_progress)
    outer = progress
    progress = None if outer is None else (lambda f: outer(0.4 + 0.6 * f))
    idx = iter(range(1, 10_000))
    tasks: dict[str, tuple] = {"today": ("simulate", s, seed, backend, estimate)}
    mitigations = _mitigation_plan(s, V)
    left_out = [{"name": m["name"], "reason": m["left_out"]} for m in mitigations if "left_out" in m]
    mitigations = [m for m in mitigations if "left_out" not in m]
    for m in mitigations:
        m["scenario"] = _capped(m.pop("variant"))
        m["seed"] = child_seed(seed, next(idx))
        tasks["mit:" + m["name"]] = ("simulate", m["scenario"], m["seed"], backend, estimate)
    alloc = []
    for name in ALLOCATORS:
        sa = _capped(s.replace({"nat.allocator": name}))
        sd = child_seed(seed, next(idx))
        alloc.append({"allocator": name, "scenario": sa, "seed": sd})
        tasks["alloc:" + name] = ("simulate", sa, sd, backend, estimate)
    sens = {}
    for key in ("traffic.rate", "traffic.duration.mean"):
        base = V.today(s, key)
        pts = []
        for f in SENSITIVITY_FACTORS:
            sp = _capped(V.set(s, key, base * f))
            sd = child_seed(seed, next(idx))
            pts.append({"factor": f, "x": base * f, "scenario": sp, "seed": sd,
                        "too_costly": _too_costly(sp)})
            if pts[-1]["too_costly"] is None:
                tasks[f"sens:{key}:{f}"] = ("simulate", sp, sd, backend, estimate)
        sens[key] = pts
    segs = _segments_plan(s) if s.traffic.schedule else []
    for i, g in enumerate(segs):
        # the segment's rate held constant, from its stationary state
        gs = s.replace({"traffic.schedule": [], "traffic.rate": g["rate"],
                        "traffic.warmup": "auto"})
        g["scenario"] = _capped(gs.replace({"traffic.horizon": max(s.traffic.horizon, 60.0)}))
        g["seed"] = child_seed(seed, 2000 + i)
        tasks[f"seg:{i}"] = ("simulate", g["scenario"], g["seed"], backend, estimate)
    fr_seed = child_seed(seed, next(idx))
    start = "steady" if s.traffic.warmup == "auto" else "cold"

    results: dict[str, dict] = {}
    done = [0]
    # the first-reset horizon depends on today's rate: run today first, then everything else
    results["today"] = _run_task(tasks.pop("today"))
    today = rate_estimate(results["today"], s)
    per_hour = today["collisions_per_hour"]
    fr_task = None
    if per_hour > 0 and not is_zero(s) and s.traffic.schedule:
        # over the window as scheduled (a ramp from the scenario's start): censored at its end
        tasks["first_reset"] = ("first_reset", s, fr_seed, backend, replicates, start)
    elif per_hour > 0 and not is_zero(s):
        mean_first = HOUR / per_hour
        fr_h = max(s.traffic.horizon, 8.0 * mean_first)
        fr_h = min(fr_h, max(s.traffic.horizon, FIRST_RESET_ARRIVALS / s.traffic.rate))
        fr_s = s.replace({"traffic.horizon": fr_h})
        fr_task = ("first_reset", fr_s, fr_seed, backend, replicates, start)
        tasks["first_reset"] = fr_task

    headroom = _headroom_rows(solved)
    total = len(tasks) + 1
    done[0] = 1
    if progress:
        progress(done[0] / total)
    # the long first-reset task first, so it overlaps the many short ones
    order = sorted(tasks, key=lambda k: k != "first_reset")
    if workers > 1:
        from ..pool import process_pool, stop_pool, width
        pool = process_pool(width(workers, len(tasks) + 4))
        ok = False
        try:
            futs = {pool.submit(_run_task, tasks[k]): k for k in order}
            from concurrent.futures import as_completed
            for fut in as_completed(futs):
                results[futs[fut]] = fut.result()
                done[0] += 1
                if progress:
                    progress(done[0] / total)
            ok = True
        finally:               # Ctrl-C or an error: queued runs cancelled, running ones stopped
            stop_pool(pool, interrupted=not ok)
    else:
        for k in order:
            results[k] = _run_task(tasks[k])
            done[0] += 1
            if progress:
                progress(done[0] / total)

    # -- assemble -----------------------------------------------------------------------------------
    a = analytic(s)
    lo_h, hi_h = today["collisions_per_hour_ci"]
    cf_h = today["closed_form_collisions_per_hour"]

    def p_row(seconds):
        return {"seconds": seconds, "value": _p_at_least_one(per_hour, seconds),
                "ci": [_p_at_least_one(lo_h, seconds), _p_at_least_one(hi_h, seconds)],
                "closed_form": _p_at_least_one(cf_h, seconds) if cf_h is not None else None}

    r_star = budget.max_per_hour
    level = verdict_of(per_hour, (lo_h, hi_h), r_star)
    shown = p_windows(per_hour)
    verdict = {
        "level": level,
        "level_words": LEVEL_WORDS[level],
        "level_at_ci_high": verdict_of(hi_h, None, r_star),
        "budget": {**budget.to_dict(), "counts": solved.counts},
        "max_resets_per_hour": r_star,
        "headroom_factor": r_star / per_hour if per_hour > 0 else None,
        "thresholds": {"max_resets_per_hour": r_star,
                       "text": f"budget: {budget.text} (at most {r_star:.3g} per hour); over budget: "
                               "the whole 95 % interval above it; within: the whole interval "
                               "below; at the budget: the interval holds it"},
        "p_reset": [{**p_row(w), "label": f"in {name}"} for name, w in shown],
        "collisions_per_hour": per_hour, "collisions_per_hour_ci": [lo_h, hi_h],
        "closed_form_collisions_per_hour": cf_h,
        "collisions_per_day": per_hour * 24, "collisions_per_day_ci": [lo_h * 24, hi_h * 24],
        "closed_form_collisions_per_day": cf_h * 24 if cf_h is not None else None,
        "collision_probability": today["collision_probability"],
        "collision_probability_ci": today["collision_probability_ci"],
        "closed_form_collision_probability": today["closed_form_collision_probability"],
        "closed_form": today["closed_form"],
        "closed_form_missing_reason": today["closed_form_missing_reason"],
        "method": today["method"],
        "counted_collisions": today["counted_collisions"], "connections": today["connections"],
        "horizon_s": today["horizon_s"],
        "p_reset_hour": p_row(HOUR), "p_reset_day": p_row(DAY), "p_reset_window": p_row(window),
        "window_s": window,
        "scheduled": bool(s.traffic.schedule),
    }
    schedule = None
    if segs:
        cf_seg = _segment_closed_forms(s, segs)
        seg_rows = []
        for i, (g, cf_i) in enumerate(zip(segs, cf_seg)):
            est = rate_estimate(results[f"seg:{i}"], g["scenario"])
            seg_rows.append({"start_s": g["start_s"], "end_s": g["end_s"], "rate": g["rate"],
                             "closed_form_collisions_per_hour": cf_i,
                             "simulated_collisions_per_hour": est["collisions_per_hour"],
                             "simulated_collisions_per_hour_ci": est["collisions_per_hour_ci"],
                             "simulated_method": est["method"], "simulated_seed": g["seed"],
                             "simulated_horizon_s": est["horizon_s"],
                             "collisions_per_hour": cf_i if cf_i is not None
                             else est["collisions_per_hour"],
                             "source": "closed form over the schedule" if cf_i is not None
                             else "simulation at the segment's constant rate"})
        T = s.traffic.horizon
        exp_sim = per_hour / HOUR * T
        exp_cf = a.expected_collisions if a is not None else None

        def p_sched(seconds):
            """P(>= 1 reset) in [0, seconds] from the per-segment expected counts."""
            sim = _expected_in(segs, [r["simulated_collisions_per_hour"] for r in seg_rows], seconds)
            lo = _expected_in(segs, [r["simulated_collisions_per_hour_ci"][0] for r in seg_rows], seconds)
            hi = _expected_in(segs, [r["simulated_collisions_per_hour_ci"][1] for r in seg_rows], seconds)
            cf = (_expected_in(segs, cf_seg, seconds) if all(c is not None for c in cf_seg)
                  else None)
            return {"seconds": seconds, "expected": sim, "value": -math.expm1(-sim),
                    "ci": [-math.expm1(-lo), -math.expm1(-hi)],
                    "closed_form_expected": cf,
                    "closed_form": -math.expm1(-cf) if cf is not None else None,
                    "method": "per-segment rates (each segment at its steady state), summed over "
                              "[0, T]; the last segment's rate holds after the schedule's end"}
        verdict["p_reset_schedule"] = {
            "seconds": T, "expected": exp_sim, "expected_ci": [lo_h / HOUR * T, hi_h / HOUR * T],
            "value": -math.expm1(-exp_sim),
            "ci": [-math.expm1(-lo_h / HOUR * T), -math.expm1(-hi_h / HOUR * T)],
            "closed_form_expected": exp_cf,
            "closed_form": -math.expm1(-exp_cf) if exp_cf is not None else None,
            "method": "the expected count over the window as simulated (the engine follows the "
                      "schedule), closed form integrated over the schedule"}
        verdict["p_reset_window"] = p_sched(window)
        schedule = {"segments": seg_rows, "window_s": T, "mean_rate": s.traffic.mean_rate,
                    "peak_rate": max(r for _, r in s.traffic.schedule),
                    "expected_collisions": exp_sim, "closed_form_expected_collisions": exp_cf,
                    "note": "The verdict's collisions per hour are the average over the measured "
                            "window as scheduled; P(>= 1 reset) in an hour or a day assumes that "
                            "average holds (the schedule repeats); the load-test window uses the "
                            "per-segment rates."}
    delays = None
    today_res = results["today"]
    if today_res.get("delayed_connects") is not None and (
            today_res.get("delayed_connects") or getattr(s.target, "delays", False)
            or s.target.on_collision == "delay-new"):
        dc = int(today_res["delayed_connects"])
        hz = today_res["horizon_s"]
        sc_h = HOUR / hz if hz > 0 else 0.0
        glo, ghi = garwood(dc)
        hist = today_res.get("connect_delay_histogram") or []
        delays = {"delayed_connects": dc, "delayed_connects_per_hour": dc * sc_h,
                  "delayed_connects_per_hour_ci": [glo * sc_h, ghi * sc_h],
                  "delayed_fraction": dc / max(1, today_res["connections"]),
                  "connect_delay_p50_s": today_res.get("connect_delay_p50_s"),
                  "connect_delay_p99_s": today_res.get("connect_delay_p99_s"),
                  "connect_delay_histogram": [[float(x), int(c)] for x, c in hist],
                  "failed_connects": today_res.get("failed_connects"),
                  "on_collision": s.target.on_collision,
                  "kernel": getattr(s.target, "kernel", None),
                  "challenge_ack_limit": getattr(s.target, "challenge_ack_limit", None),
                  "syn_retries": list(getattr(s.target, "syn_retries", ()) or ()),
                  "method": "counted in today's run; exact Poisson (Garwood) 95 % interval"}
    first = _first_reset_section(results.get("first_reset"), s, per_hour, fr_seed)

    mit_rows = []
    for m in mitigations:
        est = rate_estimate(results["mit:" + m["name"]], m["scenario"])
        mit_rows.append({"name": m["name"], "changes": m["changes"], "cost": m["cost"],
                         "change_vs_today": (est["collisions_per_hour"] / per_hour - 1)
                         if per_hour > 0 else None, **est})
    alloc_rows = []
    for row in alloc:
        est = rate_estimate(results["alloc:" + row["allocator"]], row["scenario"])
        alloc_rows.append({"allocator": row["allocator"], **est})
    sens_out = {}
    for key, pts in sens.items():
        rows = []
        skipped = [p for p in pts if p["too_costly"] is not None]
        for p in pts:
            if p["too_costly"] is not None:
                continue
            est = rate_estimate(results[f"sens:{key}:{p['factor']}"], p["scenario"])
            rows.append({"x": p["x"], "factor": p["factor"], **est})
        base = V.today(s, key)
        n_grid = 16 if s.traffic.schedule else 60      # a schedule's form is a numerical integral
        grid = list(np.geomspace(base * SENSITIVITY_FACTORS[0], base * SENSITIVITY_FACTORS[-1],
                                 n_grid))
        line = []
        for x in grid:
            aa = analytic(V.set(s, key, float(x)))
            line.append(aa.collisions_per_hour if aa else None)
        note = None
        if key == "traffic.rate" and s.traffic.schedule:
            note = "x is the window's mean rate; every segment of the schedule is scaled alike"
        if key == "traffic.duration.mean" and s.traffic.duration.dist == "empirical":
            note = ("x is the mean of the measured lifetimes, each multiplied by the same factor "
                    "(a scaled copy of the file)")
        if skipped:
            factors = ", ".join(f"x {p['factor']:g}" for p in skipped)
            left = f"not simulated at {factors}: each would take {skipped[0]['too_costly']} or more"
            note = f"{note}; {left}" if note else left
        sens_out[key] = {"key": key, "today": base, "points": rows, "note": note,
                         "closed_form_x": [float(x) for x in grid], "closed_form_y": line}

    nat, lb, tr, tg = s.nat, s.load_balancer, s.traffic, s.target
    peak = results["today"]["peak_live_per_destination"]
    ports = {"peak_live_per_destination": peak, "limit": nat.capacity,
             "per_destination_limit": nat.per_destination_limit, "port_range": nat.ports,
             "fraction_of_limit": peak / nat.capacity if nat.capacity else None,
             "allocation_failures": results["today"]["allocation_failures"],
             "allocation_failure_fraction": results["today"]["allocation_failures"] /
             max(1, results["today"]["connections"]),
             "mean_live_per_destination": s.mean_live / s.destinations,
             "node_limit_per_target": 55000}

    d = tr.duration
    source = source or _describe_source(s)
    if command is None:
        where = f"--scenario {source}" if source else "--config OUT/scenario.toml"
        command = (f"collide report {where} --out OUT {budget.flags} --within {window:g} "
                   f"--seed {seed} --backend {backend}")
    out = {
        "schema_version": SCHEMA_VERSION,
        "title": f"collide risk report: {source or 'custom scenario'}",
        "verdict": verdict,
        "first_reset": first,
        "headroom": headroom,
        "solve": {"recommendation": solved.recommendation, "alternatives": solved.alternatives,
                  "switches": [x.to_dict() for x in solved.switches], "today": solved.today,
                  "notes": solved.notes, "seed": solved.seed, "rel_error": solved.rel_error,
                  "elapsed_s": solved.elapsed_s, "counts": solved.counts},
        "scenario_summary": {
            "clients": tr.clients, "rate": tr.mean_rate, "lifetime": {
                **d.to_dict(), "mean": d.mean,
                **({"samples": len(d.values), "file_name": os.path.basename(d.file or "")}
                   if d.dist == "empirical" else {})},
            "schedule": [list(x) for x in tr.schedule],
            "balancers": lb.balancers, "balancer_weights": list(lb.balancer_weights or ()),
            "total_nodes": lb.total_nodes,
            "nat_ips": nat.ips, "ip_choice": nat.ip_choice, "allocator": nat.allocator,
            "port_range": [nat.port_min, nat.port_max],
            "per_destination_limit": nat.per_destination_limit, "nodes": lb.nodes,
            "node_choice": lb.node_choice, "dns_ttl": lb.dns_ttl,
            "zone_targets": list(lb.zone_targets), "total_targets": lb.total_targets,
            "cross_zone": lb.cross_zone, "client_ip_preservation": lb.client_ip_preservation,
            "on_collision": tg.on_collision, "time_wait": tg.time_wait,
            "kernel": getattr(tg, "kernel", None),
            "challenge_ack_limit": getattr(tg, "challenge_ack_limit", None),
            "server_close_fraction": tg.server_close_fraction, "warmup": tr.warmup,
            "horizon": tr.horizon, "mean_live": s.mean_live,
        },
        "scenario": s.to_dict(),
        "mitigations": mit_rows,
        "mitigations_left_out": left_out,
        "allocators": alloc_rows,
        "sensitivity": sens_out,
        "ports": ports,
        "schedule": schedule,
        "delays": delays,
        "computed": {
            "engine": "collide", "version": __version__, "backend": backend, "seed": seed,
            "window_s": window, "command": command, "source": source,
            "closed_form_applies": a is not None,
            "elapsed_s": time.perf_counter() - t_start,
            "replicates_first_reset": replicates, "arrival_budget_per_run": ARRIVAL_BUDGET,
            "assumptions": [
                f"The risk is judged against the budget '{budget.text}' (at most {r_star:.3g} "
                "resets per hour): high when the whole 95 % interval lies above it, low when it lies "
                "below, elevated when it holds it. The headroom and the recommended change come from "
                "collide solve (its own simulations, with their own seeds in summary.json: solve).",
                "Poisson arrivals; each connection draws its NAT IP, NLB node, NAT port and target "
                "independently (docs/model.md §2.1); the NLB flow hash includes the TCP sequence number, "
                "so every connection is a fresh target draw.",
                "The NAT's port allocator is not documented by AWS; 'random' (uniform over free "
                "ports per destination) is the best public guess, hence the allocator range.",
                "A collision resets the older connection (Linux RFC 5961 challenge ACK answered "
                "by an RST) unless on_collision says otherwise; TIME_WAIT hits are counted "
                "separately and are not resets.",
                "Rates are steady-state (or the scenario's warm-up) expectations; the probability "
                "of at least one reset in a window T is 1 − exp(−rate·T), which assumes the steady "
                "rate holds through T (a load test that starts cold sees fewer in its first "
                "minutes).",
                "Closed forms (docs/model.md §3) are exact for the random allocator in 'count' mode and "
                "upper bounds, tight at small probabilities, under reset-existing; none applies to "
                "sticky DNS, sequential or linux allocators, or near port exhaustion.",
                f"Secondary runs (mitigations, allocators, sensitivity) that start from the "
                f"steady state are capped at {ARRIVAL_BUDGET:,} arrivals each, so their horizons "
                "may be shorter than today's; each row lists its own seed and horizon_s in "
                "summary.json. Rates come from the conditional estimate (±1.96 standard errors); "
                "with --estimate off they are counted, with exact Poisson (Garwood) intervals.",
            ],
        },
    }
    notes = out["computed"]["assumptions"]
    if tr.duration.dist == "empirical":
        notes.append(f"Lifetimes are measured ({len(tr.duration.values):,} values from "
                     f"{os.path.basename(tr.duration.file or '')}), resampled with replacement. "
                     "They have no mean to set: the lifetime sensitivity, the lifetime headroom and "
                     "'half the connection lifetime' multiply every measured lifetime by the same "
                     "factor (a scaled copy of the file, kept only while the report runs), so the "
                     "shape of the law is kept.")
    if tr.schedule:
        notes.append("The load follows traffic.schedule (piecewise constant). The verdict is the "
                     "average over the measured window as simulated; the per-segment table gives "
                     "each segment's rate from the closed form integrated over the schedule (with "
                     "the carry-over of live connections from the previous segment) and from a "
                     "simulation of the segment's constant rate at its steady state. Secondary runs "
                     "keep the full window (not capped); rate variants scale every segment. Time to "
                     f"first reset: runs over the window as scheduled ({start} start), censored at "
                     "its end.")
    if lb.balancers > 1:
        notes.append(f"{lb.balancers} load balancers × {lb.nodes} node(s) share the targets: node e "
                     "is node e mod nodes (its zone) of balancer e div nodes; with cross-zone off "
                     "the nodes of different balancers in one zone still reach the same targets.")
    if delays is not None:
        notes.append("Delayed connects: a colliding SYN is not answered usefully, and the client "
                     "retries on its SYN schedule until the 4-tuple is free (or fails when the "
                     "schedule runs out); delays are counted in today's run.")
    return out
