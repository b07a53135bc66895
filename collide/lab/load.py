"""The clients: Poisson arrivals of TCP connections, each held for a drawn lifetime, then closed.

Run as a script by the lab (stdlib only): ``python load.py CONFIG.json``. It enters the client namespace,
drives ``rate`` arrivals per second for ``seconds`` seconds (never more than ``max_connections``), then
waits ``grace`` seconds and stops by itself. Each arrival picks a client address and a node uniformly
(or by ``node_weights``), lets the kernel pick its port at connect() (IP_BIND_ADDRESS_NO_PORT, so the
per-destination choice of Linux applies), holds the connection ``L`` seconds from its start, then sends
one byte, waits for the echo and closes. One JSON line per arrival goes to ``log``:

    {"i", "t0", "cip", "cport", "node", "life", "connect_s", "outcome", "errno"}

``outcome``: ok, reset (ECONNRESET at the end of its life), refused, timeout (no connect within
``connect_timeout``), stalled (no echo), error, pending (connect still running when the lab stopped),
open (established and still alive when the lab stopped).
"""
from __future__ import annotations

import asyncio
import errno
import json
import math
import os
import random
import resource
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = 24


def lifetime_sampler(rng: random.Random, d: dict):
    dist, mean = d["dist"], float(d["mean"])
    if dist == "fixed":
        return lambda: mean
    if dist == "exponential":
        return lambda: rng.expovariate(1.0 / mean)
    if dist == "lognormal":
        s = float(d.get("sigma", 1.0))
        mu = math.log(mean) - s * s / 2
        return lambda: rng.lognormvariate(mu, s)
    if dist == "pareto":
        a = float(d.get("alpha", 2.5))
        xm = mean * (a - 1) / a
        return lambda: xm * rng.paretovariate(a)
    raise ValueError(dist)


class Load:
    def __init__(self, config: dict):
        self.c = config
        self.rng = random.Random(config["seed"])
        self.life = lifetime_sampler(self.rng, config["duration"])
        self.log = open(config["log"], "w", buffering=1 << 16)
        self.active: dict[int, dict] = {}
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    def write(self, rec: dict) -> None:
        rec = {k: v for k, v in rec.items() if k != "close_first"}
        self.log.write(json.dumps(rec, separators=(",", ":")) + "\n")

    async def one(self, rec: dict) -> None:
        loop = asyncio.get_running_loop()
        c = self.c
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((rec["cip"], 0))
            rec["t0"] = time.time()
            rc = s.connect_ex((c["nodes"][rec["node"]], c["port"]))
            rec["cport"] = s.getsockname()[1]
            if rc not in (0, errno.EINPROGRESS):
                rec["outcome"], rec["errno"] = "error", rc
                return
            if rc == errno.EINPROGRESS:
                fut = loop.create_future()
                loop.add_writer(s.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await asyncio.wait_for(fut, c["connect_timeout"])
                except asyncio.TimeoutError:
                    rec["outcome"] = "timeout"
                    return
                finally:
                    loop.remove_writer(s.fileno())
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                rec["outcome"] = "refused" if err == errno.ECONNREFUSED else (
                    "timeout" if err == errno.ETIMEDOUT else "error")
                rec["errno"] = err
                return
            rec["connect_s"] = round(time.time() - rec["t0"], 6)
            rec["outcome"] = "open"
            await asyncio.sleep(max(0.0, rec["t0"] + rec["life"] - time.time()))
            byte = b"s" if rec["close_first"] else b"x"
            try:
                await loop.sock_sendall(s, byte)
                reply = await asyncio.wait_for(loop.sock_recv(s, 16), 3.0)
                if not reply:
                    rec["outcome"] = "reset"     # closed without the echo: the server lost it
                    return
                if byte == b"s":
                    await asyncio.wait_for(loop.sock_recv(s, 16), 3.0)
                rec["outcome"] = "ok"
            except asyncio.TimeoutError:
                rec["outcome"] = "stalled"
            except (ConnectionResetError, BrokenPipeError) as exc:
                rec["outcome"], rec["errno"] = "reset", exc.errno
            except OSError as exc:
                rec["outcome"], rec["errno"] = "error", exc.errno
        finally:
            s.close()
            if rec.get("outcome") not in ("open", "pending"):
                self.active.pop(rec["i"], None)
                self.write(rec)

    async def main(self) -> None:
        c = self.c
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        netns.enter(c["ns"])
        weights = c.get("node_weights") or [1.0] * len(c["nodes"])
        nodes = list(range(len(c["nodes"])))
        rate, seconds, limit = c["rate"], c["seconds"], c["max_connections"]
        start = time.time()
        t_next = start + self.rng.expovariate(rate)
        i = 0
        max_lag = 0.0
        while i < limit and not self.stop.is_set():
            if t_next >= start + seconds:
                break
            delay = t_next - time.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
            max_lag = max(max_lag, time.time() - t_next)
            rec = {"i": i, "t0": None, "cip": self.rng.choice(c["clients"]),
                   "node": self.rng.choices(nodes, weights)[0], "life": self.life(),
                   "close_first": self.rng.random() < c["server_close_fraction"],
                   "cport": None, "connect_s": None, "outcome": "pending", "errno": None}
            self.active[i] = rec
            task = asyncio.create_task(self.one(rec))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            i += 1
            t_next += self.rng.expovariate(rate)
        end_arrivals = time.time()
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, start + seconds + c["grace"] - time.time()))
        except asyncio.TimeoutError:
            pass
        for rec in self.active.values():
            self.write(rec)
        self.write({"summary": True, "start": start, "end_arrivals": end_arrivals, "arrivals": i,
                    "max_lag_s": round(max_lag, 4), "stopped": self.stop.is_set()})
        self.log.flush()
        os._exit(0)


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Load(config).main())


if __name__ == "__main__":
    main()
