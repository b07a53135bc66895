"""The backends' TCP servers: one process, one listener on port 6000 in each backend namespace.

Run as a script by the lab (stdlib only): ``python servers.py CONFIG.json``. CONFIG holds
``{"backends": [[ns_name, target_ip], ...], "port": 6000, "log": PATH, "deadline": UNIX_TIME}``.

Each accepted connection is echoed (one byte in, the same byte out; b"s" asks the server to close first)
and, when it ends, logged as one line:

    accept_time end_time backend peer_ip peer_port node how

``node`` comes from the accepted socket's mark (the node it came in through, 1-based in the mark),
``how`` is ``eof``, ``reset``, ``server-close`` or ``open`` (still established when the lab stopped).
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402  (a sibling file; this script runs without the package)

SO_MARK = 36


class Servers:
    def __init__(self, config: dict):
        self.config = config
        self.log = open(config["log"], "w", buffering=1 << 16)
        self.live: dict[int, tuple] = {}
        self.next_id = 0
        self.stop = asyncio.Event()

    def record(self, conn: tuple, end: float | None, how: str) -> None:
        t_acc, backend, ip, port, node = conn
        end_s = "inf" if end is None else f"{end:.6f}"
        self.log.write(f"{t_acc:.6f} {end_s} {backend} {ip} {port} {node} {how}\n")

    async def handle(self, backend: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        t_acc = time.time()
        sock = writer.get_extra_info("socket")
        ip, port = writer.get_extra_info("peername")[:2]
        try:
            node = sock.getsockopt(socket.SOL_SOCKET, SO_MARK) - 1
        except OSError:
            node = -1
        cid = self.next_id
        self.next_id += 1
        conn = (t_acc, backend, ip, port, node)
        self.live[cid] = conn
        how = "eof"
        try:
            while True:
                data = await reader.read(64)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
                if data.endswith(b"s"):
                    how = "server-close"
                    break
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
        except OSError:
            how = "error"
        finally:
            end = time.time()
            self.live.pop(cid, None)
            self.record(conn, end, how)
            try:
                writer.close()
            except OSError:
                pass

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        servers = []
        for backend, (ns, ip) in enumerate(self.config["backends"]):
            netns.enter(ns)
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((ip, self.config["port"]))
            lsock.listen(4096)
            lsock.setblocking(False)
            servers.append(await asyncio.start_server(
                lambda r, w, b=backend: self.handle(b, r, w), sock=lsock))
        ready = self.config.get("ready")
        if ready:
            open(ready, "w").close()
        remaining = self.config["deadline"] - time.time()
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, remaining))
        except asyncio.TimeoutError:
            pass
        for conn in self.live.values():
            self.record(conn, None, "open")
        self.log.flush()
        os._exit(0)     # skip closing thousands of sockets one by one


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(Servers(config).main())


if __name__ == "__main__":
    main()
