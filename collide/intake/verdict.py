"""The prediction for the scenario the records describe, and the verdict against the target
resets the load balancer counted, both ways as `collide scan`'s (its wording and its interval).

* What is predicted: under `reset-existing` each collision ends an established connection; its
  client meets an RST from the target when it next sends, one TCP_Target_Reset_Count. So the
  prediction is collisions per hour. The RST that answers the challenge ACK comes from the new
  connection's client (TCP_Client_Reset_Count), and the NLB's own RSTs (idle timeout) count apart
  (TCP_ELB_Reset_Count): both are shown, neither is held against the prediction.
* How: the closed form (`collide.analytic`) where one holds; otherwise `collide.simulate`, its
  conditional estimate replicated until the relative standard error is at most 3 %.
* The interval: the count the window should show is Poisson around the prediction; scan's 99.9 %
  interval (exact, widened by the prediction's own standard error), shown per hour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..scan.verdict import EXPLAINS, FEWER, LEVEL, MORE, interval

TARGET_RELATIVE_SE = 0.03
MAX_REPLICATES = 64
#: a constant-rate scenario is simulated on at most this much of the window (replicated instead)
SIM_HORIZON_S = 3600.0


@dataclass
class Prediction:
    per_hour: float
    se_per_hour: float
    how: str                          # "closed form (steady)" or "simulate, ..."
    seed: int | None
    relative_se: float | None
    interval_count: list              # [lo, hi] of the window's count, 99.9 %
    interval_per_hour: list
    window_s: float


def _simulated(s, seed: int, backend: str, progress) -> tuple[float, float, float, int]:
    """(collisions per hour, its SE, relative SE, replicates) from collide.simulate."""
    from .. import simulate
    if not s.traffic.schedule and s.traffic.horizon > SIM_HORIZON_S:
        s = s.replace({"traffic.horizon": SIM_HORIZON_S})
    R = 1
    for _ in range(4):
        r = simulate(s, seed=seed, backend=backend, replicates=R, progress=progress)
        if not r.finished:              # Ctrl-C inside the run: no prediction from a part of it
            raise KeyboardInterrupt
        if r.expected_collisions is not None:
            mu, se = r.expected_collisions, r.expected_collisions_se or 0.0
        else:
            mu, se = float(r.collisions), math.sqrt(max(r.collisions, 1))
        per_hour, se_hour = mu * 3600.0 / r.measured_s, se * 3600.0 / r.measured_s
        rel = se / mu if mu > 0 else None
        if rel is None or rel <= TARGET_RELATIVE_SE or R >= MAX_REPLICATES:
            return per_hour, se_hour, rel, R
        R = min(MAX_REPLICATES, math.ceil(R * (rel / TARGET_RELATIVE_SE) ** 2 * 1.2))
    return per_hour, se_hour, rel, R


def predict(s, *, window_s: float, seed: int, backend: str = "cython", progress=None) -> Prediction:
    from ..analytic import analytic
    a = analytic(s)
    if a is not None:
        per_hour, se_hour, rel = a.collisions_per_hour, 0.0, None
        how, used_seed = "closed form, docs/model.md §3", None
    else:
        from ..analytic import applies
        per_hour, se_hour, rel, R = _simulated(s, seed, backend, progress)
        used_seed = seed
        how = (f"simulate (no closed form: {applies(s)}), seed {seed}"
               + (f", {R} replicates" if R > 1 else "")
               + (f", relative SE {rel:.1%}" if rel is not None else ""))
    hours = window_s / 3600.0
    lo, hi = interval(per_hour * hours, se_hour * hours)
    return Prediction(per_hour=per_hour, se_per_hour=se_hour, how=how, seed=used_seed,
                      relative_se=rel, interval_count=[lo, hi],
                      interval_per_hour=[lo / hours, hi / hours], window_s=window_s)


def verdict(it, p: Prediction) -> dict:
    """{text, consider, level, observed, interval, prediction}: never an empty text."""
    observed = it.observed_count
    lo, hi = p.interval_count
    out = {"level": LEVEL, "observed": observed, "interval": [lo, hi], "prediction": p.how,
           "consider": []}
    off = it.mechanism_off
    if observed is None:
        out["text"] = ("no observed resets to compare: TCP_Target_Reset_Count is not in the files"
                       + (f" (and none are predicted: {off})" if off else ""))
        return out
    if off and observed == 0:
        out["text"] = f"the mechanism is off ({off}) and no target resets are seen"
        return out
    if lo <= observed <= hi:
        out["text"] = EXPLAINS
    elif observed > hi:
        out["text"] = MORE
        out["consider"] = (
            [f"the mechanism is off here ({off}): every target reset has another cause"] if off
            else []) + [
            "TCP_Target_Reset_Count counts every RST a target sends: refused connections, "
            "application aborts and the targets' own timeouts count too",
            "a NAT or clients that reuse ports more than random ports do (try --set "
            "nat.allocator=sequential or linux)",
            "fewer healthy targets for part of the window than describe-target-health showed",
            "several load balancers or direct traffic reaching the same targets"]
    else:
        out["text"] = FEWER
        out["consider"] = [
            "only part of the load balancer's new flows come through this NAT: the resets scale "
            "about as the square of that share",
            "a few clients that each keep one node for the DNS TTL (--set "
            "load_balancer.node_choice=sticky)",
            "a reset connection whose client closes without sending again meets no target RST",
            "cross-zone load balancing or client IP preservation off for part of the window"]
    return out
