"""Every interval and survival curve collide shows, from SciPy, in one module.

- `wilson`: the Wilson score interval of a proportion (collisions per connection);
- `garwood`: the exact (Garwood) interval of a Poisson mean from an observed count, by the
  gamma quantiles it is defined with (a count of 0 has its own closed form: [0, -ln(a)]);
- `poisson_cdf`, `poisson_interval`: the Poisson law of a predicted count;
- `count_interval`, `count_pmf`, `replicate_moments`: the predictive law of a count whose variance
  may exceed its mean (the lab's check and the scan's verdict): Poisson when the variance is at
  most the mean, else the negative binomial with the same two moments. Collisions under a Linux-like
  allocator clump (its per-destination offsets are redrawn every 10 s, so a 30 s run holds about
  three independent draws per destination): their variance is ten times their mean, and a Poisson
  interval around the mean is far too narrow;
- `kaplan_meier`, `kaplan_meier_quantile`: survival of censored times (first-reset replicates that saw
  no collision are censored at the horizon).

`wilson` and `garwood` take arrays as well as numbers (SciPy's special functions are vectorised), so
a sweep or a plot computes all its intervals in one call. SciPy is imported on first use: the
command line starts without it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["wilson", "garwood", "z_value", "poisson_cdf", "poisson_interval",
           "poisson_interval_widened", "count_interval", "count_pmf", "replicate_moments",
           "kaplan_meier", "kaplan_meier_quantile"]


def _special():
    import scipy.special
    return scipy.special


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: z_value(0.95) = 1.959963984540054 (SciPy's own value,
    kept so that the 95 % intervals of every result need no import of SciPy: it takes a quarter
    of a second, as long as a whole short run)."""
    if confidence == 0.95:
        return 1.959963984540054
    return float(_special().ndtri(0.5 + confidence / 2))


def _out(lo, hi, scalar: bool):
    if scalar:
        return float(lo), float(hi)
    return lo, hi


def wilson(successes, trials, confidence: float = 0.95):
    """Wilson score interval (low, high) for a binomial proportion; sound at 0 and at small counts.
    Numbers give floats, arrays give arrays; no trials gives (0, 1)."""
    scalar = np.ndim(successes) == 0 and np.ndim(trials) == 0
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = z_value(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        lo = np.where(k <= 0, 0.0, np.maximum(0.0, centre - half))   # exact ends, no rounding dust
        hi = np.where(k >= n, 1.0, np.minimum(1.0, centre + half))
    lo = np.where(n > 0, lo, 0.0)
    hi = np.where(n > 0, hi, 1.0)
    return _out(lo, hi, scalar)


def garwood(count, confidence: float = 0.95):
    """Exact (Garwood) interval (low, high) for a Poisson mean given an observed count k:
    low = Gamma(k, 1) quantile a, high = Gamma(k + 1, 1) quantile 1 - a, a = (1 - confidence)/2;
    for k = 0, low = 0 and high = -ln(a). Numbers give floats, arrays give arrays."""
    sp = _special()
    scalar = np.ndim(count) == 0
    k = np.asarray(count, dtype=np.float64)
    if np.any(k < 0) or not np.all(np.isfinite(k)):
        raise ValueError(f"garwood: counts must be finite and >= 0 (got {count!r})")
    a = (1 - confidence) / 2
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, sp.gammaincinv(np.maximum(k, 1.0), a), 0.0)
    hi = sp.gammainccinv(k + 1, a)
    return _out(lo, hi, scalar)


def poisson_cdf(k, mu):
    """P(X <= k) for X ~ Poisson(mu); arrays welcome."""
    out = _special().pdtr(np.floor(np.asarray(k, dtype=np.float64)), np.asarray(mu, np.float64))
    out = np.where(np.asarray(k) < 0, 0.0, out)
    return float(out) if np.ndim(out) == 0 else out


def poisson_interval(mu: float, confidence: float = 0.999) -> tuple[int, int]:
    """Central interval [lo, hi] of counts of a Poisson(mu): P(X < lo) <= a and P(X > hi) <= a,
    a = (1 - confidence)/2, each end the smallest that does it."""
    if not mu > 0:
        return (0, 0)
    from scipy.stats import poisson
    tail = (1 - confidence) / 2
    lo, hi = poisson.ppf([tail, 1 - tail], mu)
    return int(lo), int(hi)


def poisson_interval_widened(mu: float, se: float, confidence: float = 0.999) -> tuple[int, int]:
    """A Poisson count whose mean is known to within a standard error: the low end of the central
    interval of Poisson(mu - z·se), the high end of Poisson(mu + z·se), z the two-sided normal
    quantile of `confidence` (conservative: the two uncertainties are not combined)."""
    z = z_value(confidence)
    lo_mu, hi_mu = max(0.0, mu - z * se), mu + z * se
    lo = poisson_interval(lo_mu, confidence)[0] if lo_mu > 0 else 0
    hi = poisson_interval(hi_mu, confidence)[1] if hi_mu > 0 else 0
    return int(lo), int(hi)


def _count_law(mean: float, variance: float):
    """The frozen SciPy law of a count with this mean and variance (see `count_interval`)."""
    from scipy.stats import nbinom, poisson
    if variance <= mean * (1 + 1e-9):
        return poisson(mean)
    return nbinom(mean * mean / (variance - mean), mean / variance)


def count_interval(mean: float, variance: float, confidence: float = 0.999) -> tuple[int, int]:
    """Central interval [lo, hi] of a count with this mean and variance: P(X < lo) <= a and
    P(X > hi) <= a, a = (1 - confidence)/2. The law is Poisson(mean) when variance <= mean (a
    Poisson count, or an under-dispersed one, for which Poisson is conservative), else the negative
    binomial with these two moments (a Poisson whose mean is itself gamma-distributed: the shape of
    counts that clump)."""
    if not mean > 0:
        return (0, 0)
    if not math.isfinite(mean) or not math.isfinite(variance):
        raise ValueError(f"count_interval: mean and variance must be finite (got {mean!r}, "
                         f"{variance!r})")
    tail = (1 - confidence) / 2
    lo, hi = _count_law(mean, max(variance, 0.0)).ppf([tail, 1 - tail])
    return int(lo), int(hi)


def count_pmf(k: int, mean: float, variance: float) -> float:
    """P(X = k) under the law of `count_interval` (a likelihood of an observed count)."""
    if not mean > 0:
        return 1.0 if k == 0 else 0.0
    return float(_count_law(mean, max(variance, 0.0)).pmf(k))


def replicate_moments(counts) -> tuple[float, float]:
    """(mean, predictive variance) of the next count from R replicate counts of the same
    experiment: the sample mean, and the sample variance times (1 + 1/R), which adds the
    uncertainty of the mean itself (the variance of X - mean over R replicates)."""
    c = np.asarray(counts, dtype=np.float64)
    if c.size == 0:
        raise ValueError("replicate_moments: no replicates")
    if c.size == 1:
        return float(c[0]), float(c[0])          # one replicate: a Poisson guess
    return float(c.mean()), float(c.var(ddof=1) * (1 + 1 / c.size))


def kaplan_meier(times: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier survival just after each event time, starting at (0, 1); None = censored at
    the horizon, after every event."""
    events = np.array([t for t in times if t is not None], dtype=np.float64)
    if events.size == 0:
        return np.array([0.0]), np.array([1.0])
    censored = len(times) - events.size
    from scipy.stats import CensoredData, ecdf
    # censored at the last event's time: still at risk there, as "after every event" means
    data = CensoredData(uncensored=events, right=np.full(censored, events.max()))
    sf = ecdf(data).sf
    return (np.concatenate([[0.0], sf.quantiles]), np.concatenate([[1.0], sf.probabilities]))


def kaplan_meier_quantile(times: Sequence[float | None], q: float) -> float | None:
    """Smallest t with 1 - S(t) >= q, or None if the curve never gets there."""
    ts, surv = kaplan_meier(times)
    hit = np.nonzero(1 - surv[1:] >= q - 1e-12)[0]
    return float(ts[1:][hit[0]]) if hit.size else None
