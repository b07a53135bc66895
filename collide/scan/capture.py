"""Capture files in: checks made before any work, and several files merged into one time-ordered
stream of TCP packets (one file per target, several targets in one file, rotated pieces)."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ._reader import SUPPORTED_LINKTYPES, CaptureError, Reader

COLUMNS = ("ts", "src", "dst", "sport", "dport", "seq", "ack", "flags", "plen", "dirn", "tsval",
           "ipid")
ALLOWED = "a pcap or pcapng file (tcpdump -w, Wireshark)"
LINKTYPES_TEXT = ", ".join(f"{k} ({v})" for k, v in SUPPORTED_LINKTYPES.items())


class CaptureInputError(ValueError):
    """A capture the user gave cannot be read; the message is one line naming it."""


def _pcapng_linktypes(head: bytes) -> list[int] | None:
    """The link types of the interfaces described before the first packet, or None if the first
    kilobytes do not show them (the reader then decides)."""
    if len(head) < 12:
        return None
    bom = head[8:12]
    e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
    if e is None:
        return None
    pos, types = 0, []
    while pos + 12 <= len(head):
        btype, blen = struct.unpack_from(e + "II", head, pos)
        if blen < 12 or blen % 4:
            return None
        if btype == 1 and pos + 10 <= len(head):
            types.append(struct.unpack_from(e + "H", head, pos + 8)[0])
        elif btype in (2, 3, 6):
            return types
        pos += blen
    return types or None


def check(path: str) -> str:
    """One capture file, checked before any work: exists, readable, a capture, a supported link
    type. Returns its format; raises CaptureInputError with one line otherwise."""
    p = Path(path)
    if not p.exists():
        raise CaptureInputError(f"CAPTURE {path}: no such file; expected {ALLOWED}")
    if p.is_dir():
        raise CaptureInputError(f"CAPTURE {path}: is a directory; expected {ALLOWED} "
                                f"(give the files, e.g. {path}/*.pcap)")
    from ..files import special_kind
    kind = special_kind(p.stat().st_mode)
    if kind is not None:             # a pipe would block, or lose the header the check reads
        raise CaptureInputError(f"CAPTURE {path}: {kind}, not a file; expected {ALLOWED} "
                                "(save the capture to a file first: tcpdump -w FILE)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise CaptureInputError(f"CAPTURE {path}: cannot read ({exc.strerror})") from None
    try:
        r = Reader(str(p), chunk=16)
        fmt = r.format
        r.close()
    except CaptureError as exc:
        raise CaptureInputError(f"CAPTURE {path}: {exc}; expected {ALLOWED}") from None
    except OSError as exc:
        raise CaptureInputError(f"CAPTURE {path}: cannot read ({exc.strerror})") from None
    if fmt == "pcapng":
        types = _pcapng_linktypes(head)
        if types is not None and types and not any(t in SUPPORTED_LINKTYPES for t in types):
            raise CaptureInputError(f"CAPTURE {path}: link type {types[0]} is not supported "
                                    f"(allowed: {LINKTYPES_TEXT})")
    return fmt


def _sorted(chunk: dict) -> dict:
    ts = chunk["ts"]
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        order = np.argsort(ts, kind="stable")
        return {k: v[order] for k, v in chunk.items()}
    return chunk


class Merged:
    """Several readers as one stream of chunks in time order; `bytes_read`/`bytes_total` for
    progress; `readers` keep their counters (packets, TCP, truncation...).

    Files are opened in turn: beyond `OPEN_AT_ONCE` files (rotated `tcpdump -G` pieces are
    hundreds), each file's first timestamp is read first, and a file is opened only when the
    merge reaches that time and closed as soon as it is read to its end, so any number of files
    can be read within the open-file limit (files that all overlap in time still need one
    descriptor each: the limit is raised to its maximum, and past it the scan says so)."""

    OPEN_AT_ONCE = 64

    def __init__(self, paths, port: int = 0, chunk: int = 262144):
        self.paths = [str(p) for p in paths]
        self.port, self.chunk = port, chunk
        self.readers: list = [None] * len(self.paths)
        self.v6ids: dict = {}
        self.addresses6: list = []
        self.bytes_total = sum(file_size(p) for p in self.paths)
        self.errors: list[str] = []
        self.lazy = len(self.paths) > self.OPEN_AT_ONCE
        if self.lazy:
            _raise_open_file_limit()
            self.first = [self._first_time(i) for i in range(len(self.paths))]
        else:
            for i in range(len(self.paths)):
                self._open(i)

    def _open(self, i: int):
        try:
            self.readers[i] = Reader(self.paths[i], chunk=self.chunk, port=self.port,
                                     v6ids=self.v6ids, addresses6=self.addresses6)
        except CaptureError as exc:
            raise CaptureInputError(f"CAPTURE {self.paths[i]}: {exc}; expected {ALLOWED}") from None
        except OSError as exc:
            import errno
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                from ..errors import Unavailable
                raise Unavailable(f"CAPTURE: more capture files overlap in time than this process "
                                  f"may open at once ({exc.strerror}); raise the limit (ulimit "
                                  "-n) or scan fewer files together") from None
            raise CaptureInputError(f"CAPTURE {self.paths[i]}: cannot read ({exc.strerror})") from None
        return self.readers[i]

    def _first_time(self, i: int) -> int:
        """The first packet's time in file i (opened and closed again); -1 when it has none."""
        r = self._open(i)
        try:
            while True:
                c = r.read()
                if c is None:
                    return -1
                if c["ts"].size:
                    return int(c["ts"].min())
        except CaptureError as exc:
            raise CaptureInputError(f"CAPTURE {self.paths[i]}: {exc}") from None
        finally:
            r.close()
            self.readers[i] = None

    @property
    def bytes_read(self) -> int:
        return sum(r.offset for r in self.readers if r is not None)

    def _next(self, i: int) -> dict | None:
        try:
            c = self.readers[i].read()
        except CaptureError as exc:
            raise CaptureInputError(f"CAPTURE {self.paths[i]}: {exc}") from None
        if c is None and self.lazy:
            self.readers[i].close()          # read to its end: its descriptor goes back
        return None if c is None else _sorted(c)

    def chunks(self, progress: Callable[[float], None] | None = None) -> Iterator[dict]:
        k = len(self.readers)
        pending: list[dict | None] = [None] * k
        if self.lazy:
            waiting = sorted(range(k), key=lambda i: self.first[i])
            active = [False] * k
        else:
            waiting = []
            active = [True] * k

        def fill(i):
            while active[i] and (pending[i] is None or pending[i]["ts"].size == 0):
                pending[i] = self._next(i)
                if pending[i] is None:
                    active[i] = False

        def start(i):
            self._open(i)
            active[i] = True
            fill(i)
        while True:
            for i in range(k):
                fill(i)
            live = [i for i in range(k) if active[i]]
            if not live and waiting:
                start(waiting.pop(0))
                continue
            if not live:
                break
            t_cut = min(int(pending[i]["ts"][-1]) for i in live)
            while waiting and self.first[waiting[0]] <= t_cut:   # files that begin by then
                j = waiting.pop(0)
                start(j)
                if active[j]:
                    t_cut = min(t_cut, int(pending[j]["ts"][-1]))
            live = [i for i in range(k) if active[i]]
            if len(live) == 1:
                i = live[0]
                out = pending[i]
                pending[i] = None
            else:
                parts = []
                for i in live:
                    c = pending[i]
                    j = int(np.searchsorted(c["ts"], t_cut, side="right"))
                    if j:
                        parts.append({key: v[:j] for key, v in c.items()})
                        pending[i] = {key: v[j:] for key, v in c.items()}
                out = {key: np.concatenate([p[key] for p in parts]) for key in COLUMNS}
                out = _sorted(out)
            if progress is not None and self.bytes_total:
                progress(min(1.0, self.bytes_read / self.bytes_total))
            yield out

    def address(self, value: int) -> str:
        """An address column value as text."""
        import ipaddress
        if value < (1 << 32):
            return str(ipaddress.IPv4Address(value))
        return str(ipaddress.IPv6Address(self.addresses6[value - (1 << 32)]))

    def close(self) -> None:
        for r in self.readers:
            if r is not None:
                r.close()


def _raise_open_file_limit() -> None:
    """Many capture files at once: the soft open-file limit up to the hard one."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else max(soft, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
