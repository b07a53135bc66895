"""The baseline a planner would otherwise write: the base scenario as a SimPy model.

Base scenario (issue 3): one NAT IP, ports 1024-65535 allocated uniformly per destination, N = 3
load-balancer nodes, B = 10 targets with cross-zone on, Poisson arrivals at 2000/s, exponential
lifetimes with mean 10 s, `reset-existing`: a new connection whose 4-tuple is live at the target
resets the older one. One SimPy process per connection; a reset interrupts the victim's process.

    python bench/simpy_baseline.py          # prints connections per second of wall time
"""
from __future__ import annotations

import random
import time

import simpy

PORTS = range(1024, 65536)


class Model:
    def __init__(self, env, rng, rate=2000.0, mean=10.0, nodes=3, targets=10):
        self.env, self.rng = env, rng
        self.rate, self.mean, self.nodes, self.targets = rate, mean, nodes, targets
        self.used = [set() for _ in range(nodes)]          # NAT: ports in use per destination node
        self.tuples = {}                                    # (port, target) -> list of live processes
        self.connections = self.collisions = 0

    def arrivals(self):
        while True:
            yield self.env.timeout(self.rng.expovariate(self.rate))
            self.connections += 1
            self.env.process(self.connection())

    def connection(self):
        node = self.rng.randrange(self.nodes)
        used = self.used[node]
        port = self.rng.choice(PORTS)
        while port in used:                                  # a random free port
            port = self.rng.choice(PORTS)
        used.add(port)
        target = self.rng.randrange(self.targets)
        key = (port, target)
        holders = self.tuples.setdefault(key, [])
        if holders:                                          # the 4-tuple is live: RST the older
            self.collisions += 1
            for proc in list(holders):
                proc.interrupt("reset")
        me = self.env.active_process
        holders.append(me)
        try:
            yield self.env.timeout(self.rng.expovariate(1.0 / self.mean))
        except simpy.Interrupt:
            pass
        holders.remove(me)
        if not holders:
            del self.tuples[key]
        used.discard(port)


def run(connections: int = 20_000, seed: int = 1, warm_connections: int = 20_000) -> dict:
    """Simulate until `connections` arrivals after a warm-up of `warm_connections` (the base
    scenario holds about 20,000 live connections in steady state). Returns counts and speed."""
    env = simpy.Environment()
    m = Model(env, random.Random(seed))
    env.process(m.arrivals())
    env.run(until=warm_connections / m.rate)
    c0, k0 = m.connections, m.collisions
    t0 = time.perf_counter()
    env.run(until=env.now + connections / m.rate)
    elapsed = time.perf_counter() - t0
    n = m.connections - c0
    return {"connections": n, "collisions": m.collisions - k0, "elapsed_s": elapsed,
            "connections_per_second": n / elapsed}


if __name__ == "__main__":
    r = run()
    print(f"SimPy base scenario: {r['connections']} connections, {r['collisions']} collisions, "
          f"{r['connections_per_second']:,.0f} connections/s")
