"""The model's prediction for the traffic a capture showed, and the verdict both ways (issues 17, 25).

Prediction: `collide.simulate` on the scenario the capture describes, its conditional estimate of
the expected collision count where defined (else the count), scaled to the targets the capture saw
(b of B targets see b/B of the collisions). The interval for the observed count is a predictive
one (`collide.stats.count_interval`): the count's own variance under the model, from replicate
simulations of the same scenario (collisions under a Linux-like or sequential allocator clump, and
their variance is many times their mean), thinned to the targets captured, plus the estimate's
own standard error squared.

The allocator: the one the capture shows (collide.scan.nat) when its evidence is strong; else
`random`, or with `--all-allocators` the envelope of `random`, `sequential` and `linux`, the
allocators that reuse a port towards several destinations (`eim` cannot collide and is named among
the explanations of "fewer than predicted").

The node count. With cross-zone on, the collision rate depends on N only through (N - 1)/N, so the
count mostly tells N = 1 from N >= 2; the capture itself bounds N from below when one client
ip:port is live at k targets at once (k paths, k nodes). `node_evidence` weighs N = 1..MAX_NODES by
the likelihood of the count under each and keeps those whose interval holds it. Without `--nodes`
the verdict spans the node counts the capture allows (from its lower bound to MAX_NODES) and says
so; a `--nodes` below the bound, or whose interval misses the count, is pointed out.
"""
from __future__ import annotations

import json
import math

from ..stats import count_interval, count_pmf, poisson_interval_widened, replicate_moments

LEVEL = 0.999
ENVELOPE = ("random", "sequential", "linux")
EXPLAINS = "the NAT x load-balancer mechanism explains it"
MORE = "more than the mechanism explains"
FEWER = "fewer than predicted"
NO_CONNECTIONS = "no connections"
#: the node counts weighed when --nodes is not given (AWS NLB: one node per enabled zone)
MAX_NODES = 8
#: replicate simulations for the count's variance: as many as fit in this many simulated
#: arrivals, within [MIN_REPLICATES, MAX_REPLICATES]
REPLICATE_ARRIVALS = 20_000_000
MIN_REPLICATES = 30
MAX_REPLICATES = 200


def interval(mu: float, se: float) -> list[int]:
    """The 99.9 % Poisson interval around a prediction known to within `se` (the scan's interval
    before issue 25, kept for `collide intake`, whose resets it serves)."""
    return list(poisson_interval_widened(mu, se, LEVEL))


def _factor(n: int) -> float:
    return (n - 1) / n


def predict(scenario, *, share: float, seed: int, backend: str, allocators=("random",),
            progress=None) -> dict:
    """{allocator: {expected, se, variance, dispersion, replicates, interval, source, ...}} for
    the captured share of the targets."""
    from .. import simulate
    out = {}
    steps = len(allocators)
    for i, name in enumerate(allocators):
        s = scenario.replace({"nat.allocator": name})

        def sub(f, i=i, w=0.5):
            if progress is not None:
                progress(min(1.0, (i + w * f) / steps))
        r = simulate(s, seed=seed, backend=backend, progress=sub, force=True)
        if not r.finished:           # a cut simulation is no prediction (the caller exits 130)
            raise KeyboardInterrupt
        if r.expected_collisions is not None:
            mu, se, src = r.expected_collisions, r.expected_collisions_se or 0.0, \
                "conditional estimate"
        else:
            mu, se, src = float(r.collisions), math.sqrt(max(r.collisions, 1)), "count"
        R = int(min(MAX_REPLICATES, max(MIN_REPLICATES,
                                        REPLICATE_ARRIVALS // max(r.connections, 1))))
        if mu == 0 and r.collisions == 0:
            R = 0                  # nothing can collide here (cross-zone off, one node, eim)
        phi = _dispersion(s, R, seed, backend, lambda f: sub(1.0, w=0.5 + 0.5 * f))
        mu_s, se_s = mu * share, se * share
        # b of B targets see a binomial thinning of the count: its variance is
        # mu_s * (1 + share * (phi - 1)); the estimate's own uncertainty adds se_s^2
        var = mu_s * (1 + share * (phi - 1)) + se_s * se_s
        out[name] = {"expected": mu_s, "se": se_s, "variance": var, "dispersion": phi,
                     "replicates": R, "interval": list(count_interval(mu_s, var, LEVEL)),
                     "source": src, "simulated_collisions": r.collisions,
                     "connections": r.connections, "share": share}
    return out


_DISPERSIONS: dict = {}


def _dispersion(s, R: int, seed: int, backend: str, progress) -> float:
    """var/mean of R replicate counts of scenario s (at least 1), remembered for the process: a
    scan asked for its verdict again (another --nodes, another report) does not run them again."""
    from .. import simulate
    from ..studies.sweep import point_seed
    key = (json.dumps(s.to_dict(), sort_keys=True, default=str), R, seed, backend)
    if key not in _DISPERSIONS:
        counts = []
        for k in range(R):
            rk = simulate(s, seed=point_seed(seed, k + 1), backend=backend, estimate="off",
                          force=True)
            if not rk.finished:      # a cut replicate is no count (the caller exits 130)
                raise KeyboardInterrupt
            counts.append(rk.collisions)
            progress((k + 1) / R)
        m, v = replicate_moments(counts) if counts else (0.0, 0.0)
        _DISPERSIONS[key] = max(1.0, v / m) if m > 0 else 1.0
    return _DISPERSIONS[key]


def at_nodes(p: dict, n_ref: int, n: int, cross_zone: bool) -> dict:
    """A prediction made at n_ref nodes moved to n: with cross-zone on the count scales with
    (N - 1)/N (docs/model.md §3), its dispersion kept; with it off nothing depends on N here."""
    if n == n_ref or not cross_zone:
        return p
    if n < 2:
        return dict(p, expected=0.0, se=0.0, variance=0.0, interval=[0, 0])
    f = _factor(n) / _factor(n_ref)
    mu, se = p["expected"] * f, p["se"] * f
    share, phi = p["share"], p["dispersion"]
    var = mu * (1 + share * (phi - 1)) + se * se
    return dict(p, expected=mu, se=se, variance=var, interval=list(count_interval(mu, var, LEVEL)))


def node_evidence(observed: int, p: dict, n_ref: int, cross_zone: bool, lower_bound: int,
                  bound_at: dict | None, given: int | None, top: int = MAX_NODES) -> dict:
    """What the count and the capture say about the node count N = 1..top (the module's doc)."""
    lower = max(1, int(lower_bound))
    top = max(top, lower, given or 1)
    rows, consistent = {}, []
    for n in range(1, top + 1):
        q = at_nodes(p, n_ref, n, cross_zone)
        lo, hi = q["interval"]
        like = count_pmf(observed, q["expected"], q["variance"])
        rows[str(n)] = {"expected": q["expected"], "interval": [lo, hi], "likelihood": like}
        if n >= lower and lo <= observed <= hi:
            consistent.append(n)
    l1 = rows["1"]["likelihood"]
    l2 = max(rows[str(n)]["likelihood"] for n in range(2, top + 1))
    if not cross_zone:
        supported = "any: with cross-zone off the count does not depend on N"
    elif lower >= 2:
        supported = f"N >= {lower} (one client ip:port live at {lower} targets at once)"
    elif observed > 0:
        supported = "N >= 2 (N = 1 cannot collide)"
    elif l2 >= l1 / 1000 and l1 >= l2 / 1000:
        supported = "N = 1 or N >= 2 (the count cannot tell)"
    else:
        supported = "N = 1" if l1 > l2 else "N >= 2"
    out = {"given": given, "lower_bound": lower, "lower_bound_evidence": bound_at,
           "supported": supported,
           "likelihood_n1": l1, "likelihood_n2plus": l2,
           "consistent": consistent,
           "interval": ([consistent[0], None if consistent[-1] == top else consistent[-1]]
                        if consistent else None),
           "by_count": rows, "contradicted": None}
    if given is not None:
        if given < lower:
            out["contradicted"] = (f"--nodes {given}: the capture needs at least {lower} (one "
                                   f"client ip:port was live at {lower} targets at once)")
        elif cross_zone and given not in consistent and consistent:
            lo, hi = rows[str(given)]["interval"]
            span = f"{consistent[0]}" + (f"-{consistent[-1]}" if len(consistent) > 1 else "")
            out["contradicted"] = (f"--nodes {given}: {observed} collisions lie outside its 99.9 % "
                                   f"interval [{lo}, {hi}]; the count fits N = {span}")
    return out


def verdict(observed: int, intervals: list, scenario) -> dict:
    lo = min(iv[0] for iv in intervals)
    hi = max(iv[1] for iv in intervals)
    if lo <= observed <= hi:
        text, why = EXPLAINS, []
    elif observed > hi:
        text = MORE
        why = ["a port-preserving NAT or clients reusing their own ports (try --all-allocators)",
               "fewer targets or more nodes than given (--targets, --nodes)",
               "another source of SYNs on established 4-tuples: several load balancers or direct "
               "traffic to the targets"]
    else:
        text = FEWER
        why = ["cross-zone load balancing off for part of the time (--no-cross-zone)",
               "an endpoint-independent NAT (one port per client socket for every destination)",
               "fewer nodes than given (--nodes), or clients that keep one node (DNS caching)"]
    lb = scenario.load_balancer
    return {"text": text, "interval": [lo, hi], "level": LEVEL, "consider": why,
            "zero_expected": (not lb.cross_zone and lb.balancers == 1) or lb.nodes == 1
            or not lb.client_ip_preservation}
