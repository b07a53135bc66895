"""`collide solve`: where a risk budget is met (collide.studies.solve). Registered lazily by collide.cli."""
from __future__ import annotations

import json

import click

from .options import (backend_option, bad_input, budget_options, format_option, handle_value_errors,
                      pop_scenario, progress_bar, scenario_options, seed_option, workers_option)


def make_budget(max_resets, max_probability, within, start, required: bool = True):
    """The Budget the flags give (None when none is given and none is required); exit 2 otherwise."""
    from .studies.solve import Budget
    if max_resets is not None and max_probability is not None:
        bad_input("--max-resets and --max-probability: give one budget")
    if max_resets is not None:
        if within is not None:
            bad_input(f"--within {within}: goes with --max-probability (--max-resets carries its "
                      "own period)")
        return Budget.max_resets(max_resets, start)
    if max_probability is not None:
        return Budget.max_probability(max_probability, within, start)
    if within is not None and required:
        bad_input(f"--within {within}: needs --max-probability P")
    if required:
        bad_input("give a budget: --max-resets N/PERIOD (e.g. 1/week) or --max-probability P "
                  "--within DURATION (e.g. 0.01 --within 30d)")
    return None


@click.command("solve", epilog="""\b
Examples:
  collide solve --scenario seed --max-resets 1/hour --for traffic.rate --seed 1
  collide solve --rate 2000 --duration 30 --max-resets 1/week --for nat.ips
  collide solve --scenario quiet --max-probability 0.01 --within 30d --format json""")
@scenario_options
@click.option("--for", "levers", multiple=True, metavar="LEVER",
              help="A lever to solve (repeatable): traffic.rate, traffic.duration.mean, nat.ips, "
                   "load_balancer.targets, load_balancer.nodes, or any numeric key that moves the "
                   "risk one way (default: the first five).")
@budget_options()
@seed_option
@backend_option
@format_option
@workers_option("runs")
@click.option("--rel-error", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=0.03, show_default=True,
              help="Precision of a simulated boundary: the relative standard error of the resets "
                   "per hour there, as in sweeps.")
@handle_value_errors
def solve_command(levers, max_resets, max_probability, within, start, seed, backend, fmt, workers,
                  rel_error, **kw):
    """Where a risk budget is met: for each lever today's value, the boundary with its interval, the
    safe direction and a confirming simulation; the switches that remove the risk; the change to make."""
    from .api import fresh_seed
    from .studies.solve import format_table, solve
    s = pop_scenario(kw)
    budget = make_budget(max_resets, max_probability, within, start)
    seed = fresh_seed() if seed is None else seed
    update, done = progress_bar("solving")
    try:
        r = solve(s, budget, levers=list(levers) or None, seed=seed, workers=workers,
                  rel_error=rel_error, start=start, backend=backend, progress=update)
    finally:
        done()
    from .studies.report_html import _jsonable      # infinities as null, numpy numbers as numbers
    click.echo(json.dumps(_jsonable(r.to_dict()), indent=2) if fmt == "json" else format_table(r))

