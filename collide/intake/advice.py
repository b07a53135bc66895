"""The first line of advice for the scenario the records describe: the change `collide solve`
recommends for a budget (by default the report's, at most 1 reset per day).

It costs a solve (every lever and switch, each confirmed by simulation: seconds to a minute), so
the command asks for it by default and `--no-advice` skips it; the Python `intake()` gives it only
when a budget is passed.
"""
from __future__ import annotations


def advice(scenario, budget, *, seed: int, backend: str = "cython", workers=None,
           progress=None) -> str | None:
    """'to stay within BUDGET: CHANGE', the first line of `collide solve` for `scenario`; None
    when there is no budget."""
    if budget is None:
        return None
    from ..studies.solve import Budget, solve
    b = budget if isinstance(budget, Budget) else Budget.parse(budget)
    r = solve(scenario, b, seed=seed, backend=backend, workers=workers, progress=progress)
    rec = r.recommendation
    if rec is None:
        return None
    return f"to stay within {b.text}: {rec['text']}"
