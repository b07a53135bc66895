"""Studies: everything that runs variants of one scenario and reads them together.

- `variants`: what the others share: a scenario with one key moved, the closed form along it, the
  risk of a variant simulated to a given precision;
- `solve`: where a risk budget is met on each lever, the switches, the change to make (docs/solve.md);
- `sweep`: a grid of scenarios, one row per point, on every core or Dask (docs/sweeps.md);
- `plot`: figures from a sweep's rows, and where a budget is met on a two-key grid;
- `report`, `report_html`: a page for a change review (the risk against a budget, the change solve
  recommends, headroom and mitigations).

The command-line modules (`collide.cli_sweep`, `collide.cli_report`, `collide.cli_solve`) only parse
flags and call these.
"""
