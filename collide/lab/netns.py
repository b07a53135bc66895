"""Enter a named network namespace from Python (stdlib only: used by the lab's worker scripts)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter(name: str) -> None:
    """Move the calling thread into /run/netns/NAME; sockets made afterwards belong to it."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the lab process dies, however it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
