"""Regenerate the parts of the docs that are made from the code or from recorded results.

A generated part sits between two markers in a Markdown file:

    <!-- generated: NAME (python docs/generate.py) -->
    ...
    <!-- end generated: NAME -->

`python docs/generate.py` rewrites every part in place; `python docs/generate.py --check` changes
nothing and exits 1 naming each part that differs from what the code makes today (tests/test_docs.py
runs it, so CI fails when a table has drifted). `--only NAME` limits either to some parts.

The parts:
- `flags-*`: one table per command from its click options (the flags, their values and defaults,
  their help), so the flag tables cannot drift from the command line.
- `fidelity-examples`: docs/model-fidelity.md's examples, simulated with their fixed seed.
- Tables of recorded figures (lab runs, bench runs) are formatted from the JSON files their commands
  write under docs/data/ and bench/results/, so the figures in the text are the figures on record.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- generated: (?P<name>[\w.-]+) \(python docs/generate.py\) -->\n"
                  r"(?P<body>.*?)"
                  r"<!-- end generated: (?P=name) -->", re.S)


# -- flags, from click -------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(p) -> str:
    import click
    if getattr(p, "is_flag", False):
        return ""
    t = p.type
    if isinstance(t, click.Choice):
        return "|".join(t.choices)
    if p.metavar:
        return p.metavar
    if isinstance(t, click.IntRange):
        lo = "" if t.min is None else t.min
        hi = "" if t.max is None else t.max
        return f"integer {lo}..{hi}" if hi != "" else f"integer ≥ {lo}"
    if isinstance(t, click.FloatRange):
        return "number"
    return {"INTEGER": "integer", "FLOAT": "number", "TEXT": "text", "BOOLEAN": "true|false"}.get(
        t.name.upper(), t.name.upper())


def _default(p) -> str:
    if getattr(p, "is_flag", False) and not p.secondary_opts:
        return ""
    import click
    d = p.default
    unset = getattr(click.core, "UNSET", None)
    if d is None or d is unset or d == () or callable(d) or type(d).__name__ == "Sentinel":
        return ""
    if isinstance(d, bool) and p.secondary_opts:
        return p.opts[0] if d else p.secondary_opts[0]
    return f"`{d}`"


def flag_table(command_name: str) -> str:
    """The flags of `collide COMMAND`, as click defines them (hidden aliases listed apart)."""
    import click
    from collide.cli import cli
    cmd = cli.all_commands()[command_name]
    rows = ["| flag | value | default | meaning |", "|---|---|---|---|"]
    hidden = []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            rows.append(f"| `{p.metavar or p.name.upper()}` "
                        f"(argument{', repeatable' if p.nargs == -1 else ''}) | | | |")
            continue
        if p.name == "help":
            continue
        names = " / ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
        if p.hidden:
            hidden.append(names)
            continue
        rep = " (repeatable)" if p.multiple and "repeatable" not in (p.help or "") else ""
        rows.append(f"| {names}{rep} | {_cell(_value(p))} | {_default(p)} | {_cell(p.help or '')} |")
    out = "\n".join(rows) + "\n"
    if hidden:
        out += f"\nOld names still accepted (hidden): {', '.join(hidden)}.\n"
    return out


def _flag_generators() -> dict[str, Callable[[], str]]:
    from collide.cli import cli
    return {f"flags-{name}": (lambda n=name: flag_table(n)) for name in cli.all_commands()}


# -- docs/model-fidelity.md's examples ----------------------------------------------------------------
FIDELITY_EXAMPLES = [
    ("default (`reset-existing`)", {}),
    ("`on_collision = \"delay-new\"`", {"target.on_collision": "delay-new"}),
    ("`kernel = \"pre-3.6\"`", {"target.kernel": "pre-3.6"}),
    ("`kernel = \"pre-6.4\"`", {"target.kernel": "pre-6.4"}),
    ("`challenge_ack_limit = 1`", {"target.challenge_ack_limit": 1}),
]


def fidelity_examples() -> str:
    import collide
    rows = ["| settings | collisions/h | resets | delayed | p50 / p99 delay |", "|---|---|---|---|---|"]
    cmds = []
    for label, sets in FIDELITY_EXAMPLES:
        s = collide.Scenario.builtin("seed").replace(sets) if sets else "seed"
        r = collide.simulate(s, seed=1)
        extra = [f"{r.failed_connects:,} failed"] * bool(r.failed_connects) + \
                [f"{r.pending_connects:,} pending"] * bool(r.pending_connects)
        delayed = f"{r.delayed_connects:,}" + (f" ({', '.join(extra)})" if extra else "")
        delay = (f"{r.connect_delay_p50_s:g} s / {r.connect_delay_p99_s:g} s"
                 if r.connect_delay_p50_s is not None else "—")
        rows.append(f"| {label} | {r.collisions_per_hour:,.0f} | {r.reset_victims:,} | {delayed} | "
                    f"{delay} |")
        cmds.append("    collide simulate --scenario seed --seed 1"
                    + "".join(f" --set {k}={v}" for k, v in sets.items()))
    return "\n".join(rows) + "\n\n" + "\n".join(cmds) + "\n"


# -- the registry --------------------------------------------------------------------------------------
def generators() -> dict[str, Callable[[], str]]:
    gens = dict(_flag_generators())
    gens["fidelity-examples"] = fidelity_examples
    for extra in RECORDED:
        gens.update(extra())
    return gens


# -- tables of recorded figures ---------------------------------------------------------------------
def _fmt(value, spec: str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return "–".join(_fmt(v, spec) for v in value)
    if spec and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return _cell(value)


def recorded_table(path: Path) -> str:
    """A table from a record of measured figures (JSON): the figures as they were measured, the
    command that measured them, and when. The record is the source; the doc shows it.

    {"command": "...", "measured": "2026-12-08, 2-core x86-64", "columns": [[key, header, format]...],
     "rows": [{key: value, ...}, ...], "notes": ["...", ...]}
    """
    rec = json.loads(path.read_text(encoding="utf-8"))
    cols = rec["columns"]
    rows = ["| " + " | ".join(h for _, h, *_ in cols) + " |",
            "|" + "|".join("---:" if (c[2:] and c[2] and c[2][-1] in "fgde%") else "---"
                           for c in cols) + "|"]
    for r in rec["rows"]:
        rows.append("| " + " | ".join(_fmt(r.get(k), (f[0] if f else None)) for k, _, *f in cols) + " |")
    out = "\n".join(rows) + "\n"
    if rec.get("notes"):
        out += "\n" + "\n".join(f"- {n}" for n in rec["notes"]) + "\n"
    if rec.get("command"):
        out += f"\nMeasured {rec.get('measured', '')} with `{rec['command']}` (record: " \
               f"`{path.relative_to(ROOT)}`).\n".replace("Measured  with", "Measured with")
    return out


def _recorded_generators() -> dict[str, Callable[[], str]]:
    gens = {}
    for folder in (ROOT / "docs" / "data", ROOT / "bench" / "results"):
        for p in sorted(folder.glob("*.json")):
            try:
                if "columns" in json.loads(p.read_text(encoding="utf-8")):
                    gens[f"recorded-{p.stem}"] = (lambda q=p: recorded_table(q))
            except (ValueError, OSError):
                continue
    return gens


RECORDED: list[Callable[[], dict[str, Callable[[], str]]]] = [_recorded_generators]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]


def parts() -> list[tuple[Path, str]]:
    """Every generated part in the docs: (file, name)."""
    return [(p, m["name"]) for p in doc_files() if p.exists()
            for m in MARK.finditer(p.read_text(encoding="utf-8"))]


def regenerate(check: bool, only: set[str] | None = None) -> list[str]:
    """Rewrite (or, with check, compare) every part; returns the parts that differed."""
    gens = generators()
    stale, cache = [], {}
    for path in doc_files():
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")

        def fill(m):
            name = m["name"]
            if only and name not in only:
                return m[0]
            if name not in gens:
                raise SystemExit(f"{path.relative_to(ROOT)}: no generator named {name!r}")
            if name not in cache:
                cache[name] = gens[name]()
            if cache[name] != m["body"]:
                stale.append(f"{path.relative_to(ROOT)}: {name}")
            return (f"<!-- generated: {name} (python docs/generate.py) -->\n{cache[name]}"
                    f"<!-- end generated: {name} -->")
        new = MARK.sub(fill, text)
        if not check and new != text:
            path.write_text(new, encoding="utf-8")
    return stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a part is stale")
    ap.add_argument("--only", action="append", metavar="NAME", help="only this part (repeatable)")
    a = ap.parse_args(argv)
    stale = regenerate(a.check, set(a.only) if a.only else None)
    for s in stale:
        print(("stale: " if a.check else "rewrote: ") + s)
    return 1 if (a.check and stale) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
