"""Progress bars: tqdm (`tqdm.auto`), one kind for terminals and notebooks alike.

A bar appears only where someone watches (a terminal on stderr, or a notebook), only for work that
lasts (after `DELAY` seconds, so a 30 ms run prints nothing), and from then on it moves every half
second even while a compiled kernel is inside one long call: a small thread redraws the elapsed
time between the engine's own updates.
"""
from __future__ import annotations

import sys
import threading
import time
import warnings

__all__ = ["Progress", "fraction_bar", "count_bar", "DELAY"]

#: Seconds before a bar is drawn at all.
DELAY = 0.5
#: Seconds between redraws while nothing reports.
TICK = 0.5


def _watched() -> bool:
    """A terminal on stderr, or a Jupyter kernel (tqdm.auto draws a widget there)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return "ipykernel" in sys.modules


class Progress:
    """A tqdm bar that redraws itself every TICK seconds; does nothing when nobody watches."""

    def __init__(self, label: str, total: float | None = None, unit: str = "it",
                 unit_scale: bool = False, bar_format: str | None = None, enabled: bool | None = None):
        self.bar = None
        self._stop = threading.Event()
        if enabled is False or (enabled is None and not _watched()):
            return
        with warnings.catch_warnings():          # tqdm.auto warns when notebook widgets are missing
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=label, unit=unit, unit_scale=unit_scale,
                            delay=DELAY, leave=False, dynamic_ncols=True, file=sys.stderr,
                            bar_format=bar_format, mininterval=0.2)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="collide-progress")
        self._thread.start()

    def _tick(self):
        while not self._stop.wait(TICK):
            bar = self.bar
            if bar is None:
                return
            if time.monotonic() - self._t0 >= DELAY:
                try:
                    bar.refresh()
                except Exception:           # a closed stream: stop drawing, never fail the run
                    return

    def update_to(self, n: float) -> None:
        if self.bar is not None:
            self.bar.n = n
            if time.monotonic() - self._t0 >= DELAY:
                self.bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fraction_bar(label: str, enabled: bool | None = None):
    """(update(fraction), close) for the engine's `progress(fraction)` callback; update is None
    when nobody watches, so the engine does not even call it."""
    p = Progress(label, total=100, bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
                 enabled=enabled)
    if p.bar is None:
        return None, p.close
    return (lambda f: p.update_to(round(100 * min(max(f, 0.0), 1.0), 1))), p.close


def count_bar(label: str, unit: str = "point", enabled: bool | None = None):
    """(update(done, total), close) for counts of finished points or replicates."""
    p = Progress(label, unit=unit, enabled=enabled)
    if p.bar is None:
        return None, p.close

    def update(done: int, total: int):
        if p.bar is not None and p.bar.total != total:
            p.bar.total = total
        p.update_to(done)
    return update, p.close
