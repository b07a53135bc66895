"""Process pools whose workers never outlive their command.

- Ctrl-C goes to the whole process group; workers ignore it and the parent, which decides what is
  kept, stops them (SIGTERM, which the command line handles as Ctrl-C, goes to the parent alone and
  is handled the same way; a worker keeps SIGTERM's default) (`stop_pool(..., interrupted=True)` cancels what is queued and terminates what
  runs), so an interrupted command ends within a second whatever its workers were doing.
- A worker leaves when its parent dies, however it dies (SIGKILL included): on Linux the kernel
  sends it SIGKILL (`PR_SET_PDEATHSIG`), and a watch thread notices a new parent elsewhere.
- `width(workers, tasks)`: no process without work to give it.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["process_pool", "stop_pool", "width", "die_with_parent", "imap"]

PR_SET_PDEATHSIG = 1


def width(workers: int | None, tasks: int) -> int:
    """Processes worth starting: at most one per task (all cores when `workers` is None)."""
    if workers is None:
        workers = os.cpu_count() or 1
    return max(1, min(int(workers), int(tasks)))


def die_with_parent() -> None:
    """Make the calling process end when its parent does."""
    ppid = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import ctypes.util
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != ppid or ppid == 1:       # the parent died before the call above
        os._exit(1)

    def watch():
        while True:
            threading.Event().wait(1.0)
            if os.getppid() != ppid:
                os._exit(1)
    threading.Thread(target=watch, daemon=True, name="collide-parent-watch").start()


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the parent's SIGTERM rule (handled as Ctrl-C) is not the worker's: `stop_pool` ends a worker
    # with SIGTERM, and a worker ignoring Ctrl-C would ignore that too
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def process_pool(workers: int):
    """A ProcessPoolExecutor of `workers` processes that ignore Ctrl-C and die with the parent."""
    from concurrent.futures import ProcessPoolExecutor
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker)


def stop_pool(pool, interrupted: bool) -> None:
    """Shut the pool down: wait for it after success; after an interruption or an error cancel
    what is queued and terminate what runs (its results are not kept)."""
    if not interrupted:
        pool.shutdown(wait=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.terminate()
        except Exception:
            pass
    for p in procs:
        try:
            p.join(timeout=5)
        except Exception:
            pass


def _call_chunk(fn, chunk):
    return [fn(x) for x in chunk]


def imap(pool, fn, items, workers: int, chunk: int = 1):
    """`fn` over `items` on the pool, results in order, with at most 4 chunks per worker in
    flight: memory does not grow with the number of items (Executor.map submits them all)."""
    from collections import deque
    from functools import partial
    call = partial(_call_chunk, fn)
    pending: deque = deque()
    it = iter(items)

    def fill():
        while len(pending) < 4 * workers:
            batch = [x for _, x in zip(range(chunk), it)]
            if not batch:
                return
            pending.append(pool.submit(call, batch))
    fill()
    while pending:
        for r in pending.popleft().result():
            yield r
        fill()
