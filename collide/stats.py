"""Small statistics used by the results: Wilson intervals, Poisson intervals, Kaplan–Meier.

Written here rather than taken from scipy: each is a few lines and scipy would be a heavy
runtime dependency for them.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

__all__ = ["wilson", "z_value", "poisson_interval", "kaplan_meier", "kaplan_meier_quantile"]


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: z_value(0.95) = 1.95996..."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sound at 0 and at small counts)."""
    if trials <= 0:
        return (0.0, 1.0)
    z = z_value(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)     # exact ends, no rounding dust
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return (lo, hi)


def _poisson_cdf(k: int, mu: float) -> float:
    if k < 0:
        return 0.0
    # sum in log space for stability
    term = math.exp(-mu)
    if term == 0.0:     # large mu: normal approximation with continuity correction
        return NormalDist(mu, math.sqrt(mu)).cdf(k + 0.5)
    total = term
    for i in range(1, k + 1):
        term *= mu / i
        total += term
    return min(1.0, total)


def poisson_interval(mu: float, confidence: float = 0.999) -> tuple[int, int]:
    """Central interval [lo, hi] of counts for a Poisson(mu) with at least `confidence` mass."""
    if mu <= 0:
        return (0, 0)
    tail = (1 - confidence) / 2
    lo = 0
    while _poisson_cdf(lo, mu) < tail:
        lo += 1
    hi = lo
    while _poisson_cdf(hi, mu) < 1 - tail:
        hi += 1
    return (lo, hi)


def kaplan_meier(times: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Survival after each event time; None = censored at the horizon (after every event)."""
    events = sorted(t for t in times if t is not None)
    n = len(times)
    ts, surv = [0.0], [1.0]
    s = 1.0
    at_risk = n
    i = 0
    while i < len(events):
        t = events[i]
        d = 0
        while i < len(events) and events[i] == t:
            d += 1
            i += 1
        s *= 1 - d / at_risk
        at_risk -= d
        ts.append(t)
        surv.append(s)
    return np.array(ts), np.array(surv)


def kaplan_meier_quantile(times: Sequence[float | None], q: float) -> float | None:
    """Smallest t with 1 - S(t) >= q, or None if the curve never gets there."""
    ts, surv = kaplan_meier(times)
    for t, s in zip(ts[1:], surv[1:]):
        if 1 - s >= q - 1e-12:
            return float(t)
    return None
