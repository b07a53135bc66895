"""The `collide` command's entry point (`collide ...`, `python -m collide ...`).

Why a module of its own: the command line imports click, numpy and the compiled core before it can
run anything, and a Ctrl-C in those first tenths of a second must end like any other Ctrl-C (one
line, exit 130), not in a traceback. This module imports nothing heavy itself; it imports the
command line inside the same handling that `collide.cli.main` gives the command.
"""
import signal
import sys

_terminated = []


def _on_sigterm(signum, frame):
    """SIGTERM is handled as Ctrl-C (collide.cli.main installs the same rule for the command)."""
    _terminated.append(signum)
    signal.raise_signal(signal.SIGINT)


def main():
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        from .cli import main as run
    except KeyboardInterrupt:
        try:
            sys.stderr.write("interrupted\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        sys.exit(143 if _terminated else 130)
    run()


if __name__ == "__main__":
    main()
