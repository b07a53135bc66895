"""The model's prediction for the traffic a capture showed, and the verdict both ways (issue 17).

Prediction: `collide.simulate` on the scenario the capture describes (one run per allocator with
the same seed), its conditional estimate of the expected collision count where defined (else the
count), scaled to the targets the capture saw (b of B targets see b/B of the collisions). The 99.9 %
interval for the observed count is the exact central Poisson interval around the prediction widened
by the prediction's own standard error (± 3.29 SE before the Poisson step).

The envelope (`--all-allocators`) spans `random`, `sequential` and `linux`, the allocators that
reuse a port towards several destinations; `eim` (endpoint-independent mapping) cannot collide and
is named among the explanations of "fewer than predicted" instead.
"""
from __future__ import annotations

import math

from ..lab.run import poisson_interval

LEVEL = 0.999
Z = 3.2905267314919255          # two-sided 99.9 %
ENVELOPE = ("random", "sequential", "linux")
EXPLAINS = "the NAT x load-balancer mechanism explains it"
MORE = "more than the mechanism explains"
FEWER = "fewer than predicted"


def interval(mu: float, se: float) -> list[int]:
    lo_mu, hi_mu = max(0.0, mu - Z * se), mu + Z * se
    lo = poisson_interval(lo_mu)[0] if lo_mu > 0 else 0
    hi = poisson_interval(hi_mu)[1] if hi_mu > 0 else 0
    return [int(lo), int(hi)]


def predict(scenario, *, share: float, seed: int, backend: str, allocators=("random",),
            progress=None) -> dict:
    """{allocator: {expected, se, interval, source}} for the captured share of the targets."""
    from .. import simulate
    out = {}
    for i, name in enumerate(allocators):
        s = scenario.replace({"nat.allocator": name})
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(allocators)))
        r = simulate(s, seed=seed, backend=backend, progress=sub, force=True)
        if not r.finished:           # a cut simulation is no prediction (the caller exits 130)
            raise KeyboardInterrupt
        if r.expected_collisions is not None:
            mu, se, src = r.expected_collisions, r.expected_collisions_se or 0.0, \
                "conditional estimate"
        else:
            mu, se, src = float(r.collisions), math.sqrt(max(r.collisions, 1)), "count"
        mu, se = mu * share, se * share
        out[name] = {"expected": mu, "se": se, "interval": interval(mu, se), "source": src,
                     "simulated_collisions": r.collisions, "connections": r.connections}
    return out


def verdict(observed: int, predictions: dict, scenario) -> dict:
    lo = min(p["interval"][0] for p in predictions.values())
    hi = max(p["interval"][1] for p in predictions.values())
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
