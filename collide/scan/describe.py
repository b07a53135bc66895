"""From what a capture showed to a scenario the model can run (issue 17).

* **Rate**: arrivals (first SYNs of new connections) over the traffic window: the capture's span,
  less a silent stretch at either end longer than ten mean gaps (a capture started before the
  traffic, or left running after it), which is replaced by one mean gap. When the rate moves, a
  `traffic.schedule` from binary segmentation of per-bin counts (Poisson likelihood ratio, split
  kept when 2·ΔlogL > 20, about p = 10⁻⁵ per split).
* **Lifetimes**: arrivals only (connections seen mid-life at the start are length-biased and their
  start is unknown); those still open at the end, or forgotten idle, are right-censored; the
  Kaplan–Meier curve handles both. Past the longest observed lifetime the curve is completed with an
  exponential tail whose rate is the hazard seen over the upper half of the data. The `empirical`
  file holds quantiles of that curve (a bounded sample), so its mean is the estimate's mean.
* **NAT IPs**: the source addresses. With k sources of unequal volume the collision rate follows
  Σλᵢ² = λ²/k_eff, so the scenario gets k_eff = (Σnᵢ)² / Σnᵢ² IPs (equal to k when they are equal);
  many sources (more than a NAT has: AWS allows 8) are aggregated that way, and the note says so.
* **NAT ports**: the client ports' range, widened by one mean spacing at each end, snapped to a
  standard range (1024–65535 NAT Gateway, 32768–60999 Linux, 49152–65535 IANA) when within reach.
"""
from __future__ import annotations

import math

import numpy as np

STANDARD_PORT_RANGES = ((1024, 65535), (32768, 60999), (49152, 65535))
LIFETIME_FILE_MAX = 10_000
NAT_MAX_IPS = 8          # AWS NAT Gateway's most
SPLIT_THRESHOLD = 20.0
MAX_SEGMENTS = 12


# -- lifetimes ----------------------------------------------------------------------------------
def kaplan_meier(sample) -> tuple[np.ndarray, np.ndarray]:
    """(event times, survival just after each) from (time, ended) pairs; ties: events first."""
    a = np.asarray(sample, dtype=np.float64).reshape(-1, 2)
    if a.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    order = np.lexsort((1 - a[:, 1], a[:, 0]))
    t, e = a[order, 0], a[order, 1]
    n = t.size
    at_risk = n - np.arange(n)
    # group ties of event times
    uniq, first = np.unique(t, return_index=True)
    d = np.add.reduceat(e, first)
    r = at_risk[first]
    mask = d > 0
    surv = np.cumprod(1.0 - d[mask] / r[mask])
    return uniq[mask], surv


def lifetime_law(sample) -> dict:
    """Kaplan–Meier with an exponential tail: mean, median, censored share and quantiles.
    `sample`: (lifetime s, 1 ended / 0 censored) pairs, as a list or an (n, 2) array."""
    a = np.asarray(sample, dtype=np.float64).reshape(-1, 2)
    n = int(a.shape[0])
    if n == 0:
        return {"n": 0, "ended": 0, "censored": 0, "mean_s": None, "median_s": None,
                "naive_mean_s": None, "tail_mean_s": None, "values": []}
    done = a[:, 1] != 0
    ended = int(done.sum())
    naive = float(a[done, 0].sum()) / ended if ended else None
    times, surv = kaplan_meier(a)
    if times.size == 0:
        # nothing ended: all censored; the only estimate is a constant hazard with no events
        exposure = float(a[:, 0].sum())
        return {"n": n, "ended": 0, "censored": n, "mean_s": None, "median_s": None,
                "naive_mean_s": None, "tail_mean_s": None, "values": [],
                "lower_bound_s": exposure / n}
    # restricted mean up to the last event time
    steps_t = np.concatenate(([0.0], times))
    steps_s = np.concatenate(([1.0], surv))
    rmst = float(np.sum(steps_s[:-1] * np.diff(steps_t)))
    s_end = float(surv[-1])
    t_max = float(times[-1])
    tail = 0.0
    if s_end > 1e-12:
        half = float(np.median(a[:, 0]))
        after = a[a[:, 0] > half]
        events = float(after[:, 1].sum())
        exposure = float((after[:, 0] - half).sum())
        tail = exposure / events if events > 0 else max(t_max, exposure / max(len(after), 1))
    mean = rmst + s_end * tail
    median = None
    below = np.nonzero(surv <= 0.5)[0]
    if below.size:
        median = float(times[below[0]])
    # quantiles of the completed curve (at most LIFETIME_FILE_MAX)
    m = int(min(LIFETIME_FILE_MAX, max(ended, 1) * 2, n))
    m = max(m, 1)
    q = (np.arange(m) + 0.5) / m                     # P(L <= value)
    cdf = 1.0 - surv
    idx = np.searchsorted(cdf, q, side="left")
    values = np.empty(m)
    inside = idx < times.size
    values[inside] = times[idx[inside]]
    if (~inside).any():
        # the tail: exponential beyond t_max, mean `tail`
        qq = q[~inside]
        u = (qq - (1 - s_end)) / max(s_end, 1e-300)
        values[~inside] = t_max + tail * -np.log1p(-np.clip(u, 0, 1 - 1e-12))
    # spread ties inside a step so the file's mean equals the curve's (steps hold the right mass)
    values = np.maximum(values, 1e-6)
    scale = mean / float(values.mean()) if values.mean() > 0 else 1.0
    if abs(scale - 1) < 0.2:
        values = values * scale
    return {"n": n, "ended": ended, "censored": n - ended, "mean_s": mean, "median_s": median,
            "naive_mean_s": naive, "tail_mean_s": tail if s_end > 1e-12 else None,
            "tail_mass": s_end, "values": values.tolist()}


# -- rate and schedule ---------------------------------------------------------------------------
def window(t_first, t_last, first_arrival, last_arrival, arrivals) -> tuple[float, float, list]:
    """The traffic window [w0, w1] and notes on trimmed silent ends."""
    notes = []
    if t_first is None:
        return 0.0, 0.0, notes
    w0, w1 = t_first, t_last
    if arrivals >= 2 and w1 > w0:
        gap = (last_arrival - first_arrival) / (arrivals - 1) if last_arrival > first_arrival \
            else (w1 - w0) / arrivals
        if first_arrival - w0 > 10 * gap:
            notes.append(f"no new connection in the capture's first {first_arrival - w0:.3g} s: "
                         "the rate is measured from the first one")
            w0 = max(t_first, first_arrival - gap)
        if w1 - last_arrival > 10 * gap:
            notes.append(f"no new connection in the capture's last {w1 - last_arrival:.3g} s: "
                         "the rate is measured up to the last one")
            w1 = min(t_last, last_arrival + gap)
    return w0, w1, notes


def _segment_gain(counts, lengths, i, j, k) -> float:
    """2 · log-likelihood gain of splitting bins [i, j) at k (Poisson rates)."""
    def ll(a, b):
        n = counts[a:b].sum()
        length = lengths[a:b].sum()
        return n * math.log(n / length) if n > 0 and length > 0 else 0.0
    return 2 * (ll(i, k) + ll(k, j) - ll(i, j))


def schedule(bins: dict, w0: float, w1: float, arrivals: int) -> list[list[float]]:
    """Piecewise-constant rates [[start_s, rate], ...] from w0, or [] when one rate fits."""
    span = w1 - w0
    if span <= 0 or arrivals < 50:
        return []
    width = max(1, int(round(span / 50)))
    edges = np.arange(math.floor(w0), math.ceil(w1) + width, width, dtype=np.float64)
    counts = np.zeros(edges.size - 1)
    for sec, n in bins.items():
        k = int((sec - edges[0]) // width)
        if 0 <= k < counts.size:
            counts[k] += n
    lo = np.maximum(edges[:-1], w0)
    hi = np.minimum(edges[1:], w1)
    lengths = np.maximum(hi - lo, 0.0)
    keep = lengths > 0
    counts, lengths, lo = counts[keep], lengths[keep], lo[keep]
    if counts.size < 4:
        return []
    cuts = [0, counts.size]
    while len(cuts) - 1 < MAX_SEGMENTS:
        best = None
        for a, b in zip(cuts[:-1], cuts[1:]):
            for k in range(a + 2, b - 1):
                g = _segment_gain(counts, lengths, a, b, k)
                if best is None or g > best[0]:
                    best = (g, k)
        if best is None or best[0] < SPLIT_THRESHOLD:
            break
        cuts = sorted(cuts + [best[1]])
    if len(cuts) == 2:
        return []
    out = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        n, length = counts[a:b].sum(), lengths[a:b].sum()
        out.append([round(float(lo[a] - w0), 3) if a else 0.0, max(n, 0.5) / length])
    return out


# -- sources and ports -------------------------------------------------------------------------
def nat_ips(sources: dict, singletons: int = 0) -> tuple[int, float, list]:
    """(scenario nat.ips, k_eff, notes) from arrivals per source address; `singletons`: arrivals
    from sources past the counting bound, each taken as a one-connection source."""
    n = np.array(list(sources.values()), dtype=np.float64)
    if n.size == 0 and not singletons:
        return 1, 1.0, []
    total = n.sum() + singletons
    k_eff = float(total ** 2 / ((n * n).sum() + singletons))
    count = len(sources) + singletons
    ips = max(1, min(4096, int(round(k_eff))))
    notes = []
    if count > NAT_MAX_IPS:
        notes.append(f"{count:,} source addresses, more than a NAT has (AWS: at most {NAT_MAX_IPS}): "
                     f"aggregated as {ips} equal NAT IPs (k_eff = (sum n)^2 / sum n^2 = {k_eff:.3g}), "
                     "which keeps the collision rate of sources with their own port spaces")
    elif abs(k_eff - count) > 0.2 * count:
        notes.append(f"{count} source addresses of unequal volume: nat.ips = {ips} "
                     f"(k_eff = {k_eff:.3g})")
    return ips, k_eff, notes


def port_range(pmin: int, pmax: int, n: int) -> tuple[int, int, str]:
    """(port_min, port_max, how) from the client ports seen."""
    if n < 30 or pmax < pmin:
        return 1024, 65535, "default (too few connections to tell)"
    slack = (pmax - pmin) / max(n - 1, 1)
    lo, hi = pmin - slack, pmax + slack
    for a, b in sorted(STANDARD_PORT_RANGES, key=lambda r: r[1] - r[0]):
        if a <= pmin and pmax <= b and a >= lo - 3 * slack - 16 and b <= hi + 3 * slack + 16:
            return a, b, f"standard range {a}-{b}"
    a, b = max(1, int(math.floor(lo))), min(65535, int(math.ceil(hi)))
    reach = 3 * slack + 1
    # a configured range usually starts at a round number and ends just before one
    for step in (1000, 100):
        a2 = int(math.floor(pmin / step) * step)
        b2 = int(math.ceil((pmax + 1) / step) * step) - 1
        if pmin - a2 <= reach and b2 - pmax <= reach:
            a, b = max(1, a2), min(65535, b2)
            break
    return a, b, f"from the ports seen ({pmin}-{pmax})"
