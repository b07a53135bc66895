"""The errors a user sees, by whose fault they are (docs/model.md §4.2, exit codes).

    InputError    exit 2   what the user gave is wrong: a key, a flag, a file, an output place
    Unavailable   exit 3   this machine cannot do it: no space left, a missing system package,
                           no privileges, a lock held by another run, not enough memory

Every message is one line naming what the user wrote, the value and what is allowed (or what to do).
The command line turns them into that line and the exit code (`collide.cli.main`); the Python API
raises them as they are (`InputError` is a `ValueError`, so older `except ValueError` still works).
"""
from __future__ import annotations

import click

__all__ = ["CollideError", "InputError", "Unavailable", "EXIT_INPUT", "EXIT_UNAVAILABLE",
           "EXIT_INTERRUPTED"]

EXIT_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130


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
