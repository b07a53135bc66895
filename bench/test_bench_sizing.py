"""The size model held against measured times (issue 22): `python bench/sizing.py` prints the table;
this runs the same cases and asserts that each estimate is within 3x of the time measured. Not part
of the test suite (timings on a shared machine): `pytest bench/test_bench_sizing.py`."""
from __future__ import annotations

import sizing


def test_size_model_within_three_times_of_measured():
    rows = sizing.measure()
    classes = {r["class"] for r in rows}
    assert len(rows) >= 20 and {"base", "exhaustion", "burn-in", "empirical", "scan", "sweep",
                                "first-reset"} <= classes
    off = [r for r in rows if not 1 / 3 <= r["ratio"] <= 3]
    assert not off, off
