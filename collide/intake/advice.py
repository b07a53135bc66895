"""The first line of advice for the scenario the records describe: the first line `collide solve`
prints for it.

`solve` (issue 23: `collide.solve(scenario, budget, levers=None, ...)` in
`collide/studies/solve.py`) is not on this branch, so this returns None and the JSON's `advice`
is null. Wiring it is this one function: call solve on `scenario` and return its first line (the
change that prevents the resets), or None where solve has nothing to say. The text output prints
an "advice" row whenever this returns a line, and `--format json` puts it in `advice`.
"""
from __future__ import annotations


def advice(scenario) -> str | None:
    """The first line of `collide solve` for `scenario`, or None (solve is not built yet)."""
    return None
