"""What a capture says about the NAT's port allocator (issue 25), from the source ports of new
connections in arrival order, per source address (and per destination where the capture shows it:
at a client or a NAT's outside; at a target the node a connection came through is not visible).

The statistic. For each arrival, `d` is the forward distance (modulo the port range) from the
nearest of the K = 32 ports its source used just before it. Uniform random ports put d near the
range divided by K; a sequential allocator (a cursor per destination) puts most at 1; Linux's
connect() (RFC 6056 alg. 4, and a port-preserving NAT in front of Linux clients) walks each
destination's ports in even steps of 2 to 16 from an offset, and keeps to the range's low parity.
So:

* `near`: arrivals with d <= D, D chosen so that uniform random ports give 5 % (the exact null
  probability for each arrival's number of predecessors k: 1 - (1 - D/(P-1))^k); `z_near`, the
  binomial z-score of `near` against that null;
* `step1`, `even_steps`: the near arrivals whose d is 1, and whose d is even;
* `z_parity`: the z-score of the share of ports with the range's low parity against 1/2.

Classes (the model's allocator in brackets):
* sequential [sequential]: `z_near` >= 5, at least 30 % of arrivals near, most near steps 1;
* port-preserving or kernel-like [linux]: `z_near` >= 5, at least 30 % near, 90 % of near steps
  even; or at least 75 % of the ports of the low parity with `z_parity` >= 5;
* uniform random [random]: near no more than twice what uniform ports give, and no parity bias.
  (Netfilter's fully-random SNAT probes the next port when its draw is in use, which adds a few
  steps of 1 at high occupancy, hence the factor of two rather than a significance test);
* endpoint-independent [eim] (a NAT-side capture only, where each inside endpoint's mapping per
  destination is visible): one outside port for every destination of an inside endpoint in >= 90 %
  of the endpoints seen towards several destinations (while a port-keeping NAT maps the inside
  port to itself, which is the kernel-like class);
* unclear: anything else.
The evidence is strong when the class's test is met with at least 100 scored arrivals (random) or
30 (the others, whose z >= 5 is already p < 3e-7); the verdict then predicts with that allocator.
"""
from __future__ import annotations

import math

import numpy as np

K = 32
NULL_SHARE = 0.05
Z_STRONG = 5.0
MIN_RANDOM = 100
MIN_OTHER = 30

CLASSES = {"random": "uniform random", "sequential": "sequential",
           "linux": "port-preserving or kernel-like", "eim": "endpoint-independent"}


def _near_distance(ports: np.ndarray, groups: np.ndarray, P: int) -> tuple[np.ndarray, np.ndarray]:
    """(d, k): per arrival the forward distance mod P to the nearest of its group's K previous
    ports (P where none is ahead), and how many previous ports there were (<= K). Arrays in the
    order given (grouped, time order inside a group)."""
    n = ports.size
    d = np.full(n, P, dtype=np.int64)
    k = np.zeros(n, dtype=np.int64)
    p = ports.astype(np.int64)
    for o in range(1, K + 1):
        if o >= n:
            break
        same = groups[o:] == groups[:-o]
        diff = (p[o:] - p[:-o]) % P
        diff = np.where(same & (diff > 0), diff, P)
        d[o:] = np.minimum(d[o:], diff)
        k[o:] += same
    return d, k


def classify(arrivals: dict, port_min: int, port_max: int, *, per_destination: bool,
             mappings: dict | None = None) -> dict:
    """The allocator class and its statistic from the arrivals (`t`, `client`, `server`
    endpoints in arrival order; an endpoint is address << 16 | port)."""
    client = np.asarray(arrivals["client"], dtype=np.uint64)
    n_all = int(client.size)
    P = int(port_max) - int(port_min) + 1
    out = {"class": "unclear", "model": None, "evidence": "weak", "arrivals": n_all,
           "scored": 0, "port_range_seen": None, "statistic": None, "mappings": None,
           "why": ""}
    if n_all == 0 or P < 4:
        out["why"] = "no new connections" if n_all == 0 else "a port range of fewer than 4 ports"
        return out
    port = (client & np.uint64(0xFFFF)).astype(np.int64)
    ip = client >> np.uint64(16)
    out["port_range_seen"] = [int(port.min()), int(port.max())]
    dest = np.asarray(arrivals["server"], dtype=np.uint64) if per_destination \
        else np.zeros(n_all, np.uint64)
    order = np.lexsort((np.arange(n_all), dest, ip))       # grouped, time order inside
    g_ip, g_dest = ip[order], dest[order]
    newg = np.ones(n_all, bool)
    newg[1:] = (g_ip[1:] != g_ip[:-1]) | (g_dest[1:] != g_dest[:-1])
    groups = np.cumsum(newg)
    d, k = _near_distance(port[order], groups, P)
    D = max(1, int(math.floor((P - 1) * (1 - (1 - NULL_SHARE) ** (1 / K)))))
    scored = k > 0
    dk, kk = d[scored], k[scored]
    n = int(dk.size)
    p0 = 1 - (1 - D / (P - 1)) ** kk
    near = dk <= D
    expected, var = float(p0.sum()), float((p0 * (1 - p0)).sum())
    z_near = (int(near.sum()) - expected) / math.sqrt(var) if var > 0 else 0.0
    low = int((port % 2 == port_min % 2).sum())
    z_par = (low - n_all / 2) / math.sqrt(n_all / 4)
    n_near = int(near.sum())
    step1 = int((near & (dk == 1)).sum())
    even = int((near & (dk % 2 == 0)).sum())
    out["scored"] = n
    out["statistic"] = {"D": D, "near": n_near, "near_expected_if_random": round(expected, 3),
                        "z_near": round(z_near, 3), "step1": step1, "even_steps": even,
                        "low_parity_share": round(low / n_all, 4), "z_parity": round(z_par, 3),
                        "groups": int(groups[-1]), "per_destination": per_destination}
    eim = _endpoint_independence(mappings) if mappings is not None else None
    out["mappings"] = eim
    share_near, share_null = n_near / max(n, 1), expected / max(n, 1)
    low_share = low / n_all
    parity = z_par >= Z_STRONG and low_share >= 0.75
    if eim is not None and eim["multi"] >= 20 and eim["same_share"] >= 0.9 \
            and eim["preserved_share"] < 0.5:
        cls, strong = "eim", True
        why = (f"{eim['same_share']:.0%} of {eim['multi']} inside endpoints seen towards several "
               "destinations kept one outside port for all of them")
    elif z_near >= Z_STRONG and share_near >= 0.3 and step1 >= 0.5 * n_near:
        cls, strong = "sequential", n >= MIN_OTHER
        why = f"{step1} of {n} new ports follow one of the last {K} by 1 (z = {z_near:.1f})"
    elif (z_near >= Z_STRONG and share_near >= 0.3 and even >= 0.9 * n_near) or parity:
        cls, strong = "linux", n >= MIN_OTHER
        why = (f"{n_near} of {n} new ports lie a short even step after one of the last {K} "
               f"(z = {z_near:.1f}; uniform random would give {expected:.0f}); "
               f"{low_share:.0%} have the range's low parity (z = {z_par:.1f})")
        if eim is not None and eim["preserved_share"] >= 0.9:
            why += f"; the NAT kept the inside port in {eim['preserved_share']:.0%} of mappings"
    elif share_near <= 2 * share_null and not parity:
        # uniform, or uniform with a short linear probe past a port in use (netfilter's
        # fully-random SNAT tries the next port when its draw is taken), which adds a few steps
        # of 1 at high occupancy but no structure
        cls, strong = "random", n >= MIN_RANDOM
        why = (f"{n_near} of {n} new ports near one of the last {K} (uniform random: "
               f"{expected:.0f}, z = {z_near:.1f}); {low_share:.0%} of the range's low parity "
               f"(z = {z_par:.1f})")
    else:
        cls, strong = "unclear", False
        why = (f"{n_near} of {n} near (uniform: {expected:.0f}, z = {z_near:.1f}), "
               f"{low_share:.0%} of the low parity (z = {z_par:.1f}): no class fits")
    out.update({"class": CLASSES.get(cls, "unclear"), "model": cls if cls in CLASSES else None,
                "evidence": "strong" if strong else "weak", "why": why})
    return out


def _distinct_per_group(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How many distinct v each distinct g has (groups in the order of sorted g)."""
    order = np.lexsort((v, g))
    gg, vv = g[order], v[order]
    first = np.concatenate(([True], gg[1:] != gg[:-1]))
    new = first | np.concatenate(([True], vv[1:] != vv[:-1]))
    return np.bincount(np.cumsum(first) - 1, weights=new).astype(np.int64)


def _endpoint_independence(m: dict) -> dict | None:
    """From a NAT's mappings (inside endpoint -> outside endpoint, per destination): the share of
    inside endpoints seen towards several destinations that kept one outside port, and the share
    of mappings that kept the inside port."""
    inside = np.asarray(m["inside"], dtype=np.uint64)
    if inside.size == 0:
        return None
    outside = np.asarray(m["outside"], dtype=np.uint64)
    server = np.asarray(m["server"], dtype=np.uint64)
    preserved = float(((inside & np.uint64(0xFFFF)) == (outside & np.uint64(0xFFFF))).mean())
    servers = _distinct_per_group(inside, server)
    ports = _distinct_per_group(inside, outside & np.uint64(0xFFFF))
    several = servers >= 2
    multi, same = int(several.sum()), int((several & (ports == 1)).sum())
    return {"mappings": int(inside.size), "multi": multi,
            "same_share": round(same / multi, 4) if multi else None,
            "preserved_share": round(preserved, 4)}
