"""Studies: everything that runs variants of one scenario and reads them together.

- `sweep`: a grid of scenarios, one row per point, on every core or Dask (docs/sweeps.md);
- `plot`: figures from a sweep's rows;
- `report`, `report_html`: a page for a change review (the risk, its headroom and mitigations).

The command-line modules (`collide.cli_sweep`, `collide.cli_report`) only parse flags and call these.
"""
