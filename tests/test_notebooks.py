"""The notebooks run, and what they show is what they print today (issue 21).

Each notebook is executed afresh (nbclient, in a scratch copy) and every printed line and every text
result of every cell is compared with the committed one: numbers exact (the notebooks fix their
seeds), after the masks of tests/test_docs.py (wall-clock times, paths, dates, the version).
Figures are compared by kind only (a figure where a figure was). After a change that moves them:
`jupyter execute --inplace notebooks/*.ipynb`.
"""
from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from .test_docs import normal

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]


def shown(nb) -> list[tuple[int, str, list[str]]]:
    """(cell, kind, lines) for every output of every code cell."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout":
                if out and out[-1][:2] == (i, "stdout"):     # a stream may arrive in pieces
                    out[-1] = (i, "stdout", (("\n".join(out[-1][2]) + "\n" + o.text)).splitlines())
                else:
                    out.append((i, "stdout", o.text.splitlines()))
            elif o.output_type in ("execute_result", "display_data"):
                data = o.get("data", {})
                if "image/png" in data or "image/svg+xml" in data:
                    out.append((i, "figure", []))
                elif "text/plain" in data:
                    out.append((i, "text", data["text/plain"].splitlines()))
            elif o.output_type == "error":
                out.append((i, "error", [o.ename, o.evalue]))
    return out


def _flatten(outputs) -> list[str]:
    lines = []
    for cell, kind, text in outputs:
        lines.append(f"[cell {cell} {kind}]")
        lines += normal(text, exact=True)
    return lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_outputs_are_fresh(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    committed = nbformat.read(path, as_version=4)
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    want, got = _flatten(shown(committed)), _flatten(shown(nb))
    assert want, f"{path.name} is committed without outputs"
    diff = "\n".join(difflib.unified_diff(want, got, "committed", "printed today", lineterm="", n=1))
    assert want == got, (f"{path.name}: the committed outputs are stale; run `jupyter execute "
                         f"--inplace notebooks/{path.name}`\n{diff}")
