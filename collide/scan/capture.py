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
    progress; `readers` keep their counters (packets, TCP, truncation...)."""

    def __init__(self, paths, port: int = 0, chunk: int = 262144):
        self.paths = [str(p) for p in paths]
        self.readers: list[Reader] = []
        self.v6ids: dict = {}
        self.addresses6: list = []
        for p in self.paths:
            try:
                self.readers.append(Reader(p, chunk=chunk, port=port, v6ids=self.v6ids,
                                           addresses6=self.addresses6))
            except CaptureError as exc:
                raise CaptureInputError(f"CAPTURE {p}: {exc}; expected {ALLOWED}") from None
        self.bytes_total = sum(r.size for r in self.readers)
        self.errors: list[str] = []

    @property
    def bytes_read(self) -> int:
        return sum(r.offset for r in self.readers)

    def _next(self, i: int) -> dict | None:
        try:
            c = self.readers[i].read()
        except CaptureError as exc:
            raise CaptureInputError(f"CAPTURE {self.paths[i]}: {exc}") from None
        return None if c is None else _sorted(c)

    def chunks(self, progress: Callable[[float], None] | None = None) -> Iterator[dict]:
        k = len(self.readers)
        pending: list[dict | None] = [None] * k
        active = [True] * k
        while True:
            for i in range(k):
                while active[i] and (pending[i] is None or pending[i]["ts"].size == 0):
                    pending[i] = self._next(i)
                    if pending[i] is None:
                        active[i] = False
            live = [i for i in range(k) if active[i]]
            if not live:
                break
            if len(live) == 1:
                i = live[0]
                out = pending[i]
                pending[i] = None
            else:
                t_cut = min(int(pending[i]["ts"][-1]) for i in live)
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
            r.close()


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
