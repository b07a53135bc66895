"""The errors a user sees, by whose fault they are (docs/model.md §4.2, exit codes).

    InputError    exit 2   what the user gave is wrong: a key, a flag, a file, an output place
    Unavailable   exit 3   this machine cannot do it: no space left, a missing system package,
                           no privileges, a lock held by another run, not enough memory, a
                           stdout that is closed or full, no usable temporary folder
    (Ctrl-C)      exit 130 what finished and is right is kept; SIGTERM is handled alike, exit 143
    (EPIPE)       exit 141 stdout's reader went away (`| head`): quietly

Every message is one line naming what the user wrote, the value and what is allowed (or what to do).
The command line turns them into that line and the exit code (`collide.cli.main`); the Python API
raises them as they are (`InputError` is a `ValueError`, so older `except ValueError` still works).
"""
from __future__ import annotations

import contextlib
import signal
import threading

import click

__all__ = ["CollideError", "InputError", "Unavailable", "EXIT_INPUT", "EXIT_UNAVAILABLE",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_PIPE", "require_finished",
           "held_interrupts", "interrupted_exit_code"]

EXIT_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
#: stdout closed by its reader (`collide ... | head`): quiet, as a program ended by SIGPIPE.
EXIT_PIPE = 141


class CollideError(click.ClickException):
    """An error with a one-line message and the exit code the command line gives it (a click
    exception, so a command invoked on its own, e.g. by click's test runner, ends the same way)."""
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))

    def __str__(self) -> str:
        return self.message

    def show(self, file=None) -> None:
        click.echo(f"collide: error: {self.message}", err=True, file=file)


class InputError(CollideError, ValueError):
    """Bad input (exit 2): nothing was done, nothing was written."""
    exit_code = EXIT_INPUT


class Unavailable(CollideError, RuntimeError):
    """The environment cannot do it (exit 3): the message says what to do."""
    exit_code = EXIT_UNAVAILABLE


# -- interruptions -----------------------------------------------------------------------------------
#: Exit code after SIGTERM (128 + 15); SIGTERM is handled as Ctrl-C (collide.cli.main).
EXIT_TERMINATED = 143


class _Signals:
    """What the command line's handlers saw: `terminated` after a SIGTERM."""
    terminated = False


signals = _Signals()


def interrupted_exit_code() -> int:
    return EXIT_TERMINATED if signals.terminated else EXIT_INTERRUPTED


def require_finished(result, what: str = "the run") -> None:
    """An interrupted computation is never an answer: raise KeyboardInterrupt when `result` (a
    Result, a RawRun, anything with `finished`) was cut short."""
    if not getattr(result, "finished", True):
        raise KeyboardInterrupt(f"{what} was interrupted")


class _Held:
    hit = False


@contextlib.contextmanager
def held_interrupts():
    """Ctrl-C (and SIGTERM, which the command line turns into Ctrl-C) wait until the block ends:
    for a step that must happen whole once begun (moving a finished report into place and saying
    so). The block's `.hit` tells whether one came; the caller then ends with exit 130."""
    held = _Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def on(signum, frame):
        held.hit = True
    old = signal.signal(signal.SIGINT, on)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, old)
