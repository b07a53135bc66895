"""A documented command is a test (issue 21): what README.md, docs/*.md and bench/README.md show is
what the tool does today.

- Every `collide ...` line in their code blocks, and every example in a `--help`, parses: the
  command exists, every flag exists and every value is one the flag accepts.
- Every `$ collide ...` session is run, top to bottom per file, in a scratch folder that sees the
  repo's `tests/`, `examples/`, `collide/`, `docs/`, `bench/` and `notebooks/`, and its output is
  compared with the one shown: after the masks below, line for line and number for number when the
  command fixes `--seed`; in shape (every number a `#`) when it does not.
- The generated parts of the docs (flag tables, tables of figures) equal what `docs/generate.py`
  makes today.
- Every file the docs name exists, every link's anchor is a heading, and the README's rebuild line is
  the one `.ci/run` runs.
"""
from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from .doc_blocks import blocks

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
SEE = ("tests", "examples", "collide", "docs", "bench", "notebooks")

#: What differs from run to run and is masked in both the shown and the real output (name, pattern,
#: replacement). Nothing else is: every count, rate, interval and word must match.
MASKS = [
    ("wall-clock fields in JSON", re.compile(r'"(elapsed_s|kernel_s|setup_s|pilot_s|wall_s|'
                                             r'seconds_wall|scan_s|predict_s)": [-+\d.e]+'), r'"\1": <t>'),
    ("wall-clock seconds on a `run` line", re.compile(r"^(\s*run\s.*)$", re.M), None),
    ("wall-clock 'wrote ... in N s'", re.compile(r"(\bwrote\b.*?\bin) \d[\d.,]*(?:e[-+]?\d+)? ?(?:s|ms|min)\b"),
     r"\1 <t>"),
    ("absolute paths of the scratch folder", None, None),
    ("dates and times of day", re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"), "<date>"),
    ("collide's version", re.compile(r"\bcollide \d+\.\d+\.\d+\S*"), "collide <version>"),
]
_SECONDS = re.compile(r"\d[\d.,]*(?:e[-+]?\d+)? ?(?:s|ms|us|µs)\b")
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def mask(text: str, scratch: str | None = None) -> str:
    for name, pattern, repl in MASKS:
        if name.startswith("absolute paths"):
            if scratch:
                text = text.replace(scratch + os.sep, "").replace(scratch, ".")
            continue
        if name.startswith("wall-clock seconds on a `run` line"):
            text = pattern.sub(lambda m: _SECONDS.sub("<t>", m.group(1)), text)
            continue
        text = pattern.sub(repl, text)
    return text


def normal(lines: list[str], exact: bool, scratch: str | None = None) -> list[str]:
    out = []
    for ln in mask("\n".join(lines), scratch).splitlines():
        ln = " ".join(ln.split())
        if not exact:
            ln = _NUMBER.sub("#", ln)
        out.append(ln)
    while out and not out[-1]:
        out.pop()
    return out


# -- every command parses ---------------------------------------------------------------------------
def _documented_commands():
    found = []
    for path in DOCS:
        for b in blocks(path):
            for line, argv in b.commands():
                found.append((f"{path.relative_to(ROOT)}:{line}", argv))
    from collide.cli import cli
    for name, cmd in cli.all_commands().items():
        for ln in (cmd.epilog or "").splitlines():
            ln = ln.strip()
            if ln.startswith("collide "):
                import shlex
                found.append((f"collide {name} --help", shlex.split(ln)[1:]))
    return found


def parse(argv: list[str]) -> None:
    """Parse `collide ARGV` as click would, without running it: raises click.ClickException."""
    from collide.cli import cli
    if not argv:
        return
    ctx = click.Context(cli, info_name="collide")
    cmd = cli.get_command(ctx, argv[0])
    if cmd is None:
        raise click.UsageError(f"no command {argv[0]!r}")
    if "--help" in argv or "-h" in argv:
        return
    with cmd.make_context(argv[0], list(argv[1:]), parent=ctx) as sub:
        sub.params              # noqa: B018 (parsed: types, choices and ranges checked)


def test_every_documented_command_parses():
    bad = []
    for where, argv in _documented_commands():
        try:
            parse(argv)
        except click.ClickException as exc:
            bad.append(f"{where}: collide {' '.join(argv)}\n    -> {exc.format_message()}")
    assert not bad, "documented commands that collide refuses:\n" + "\n".join(bad)
    assert len(_documented_commands()) > 40          # the docs are read at all


def test_every_help_has_an_example():
    from collide.cli import cli
    missing = [n for n, c in cli.all_commands().items() if "Examples" not in (c.epilog or "")]
    assert not missing, f"commands whose --help shows no example: {missing}"
    assert "Examples:" in (cli.epilog or "")


def test_no_help_shows_a_placeholder():
    """Every --help reads as prose: no 'None', no empty range brackets (click printed
    '[x<=None]' under an unbounded float flag)."""
    from click.testing import CliRunner
    from collide.cli import cli
    bad = []
    for name in ["", *cli.all_commands()]:
        out = CliRunner().invoke(cli, [name, "--help"] if name else ["--help"]).output
        bad += [f"collide {name} --help shows {n!r}" for n in ("None", "[]") if n in out]
    assert not bad, bad


# -- every session runs and prints what is shown -----------------------------------------------------
def _sessions_by_file():
    out = []
    for path in DOCS:
        sess = [(b, s) for b in blocks(path) for s in b.sessions]
        if not sess:
            continue
        marks = set()
        for b, _ in sess:
            marks |= set(b.marks)
        kw = {}
        if "root" in marks:
            kw["marks"] = [pytest.mark.slow, pytest.mark.lab]
        elif "slow" in marks:
            kw["marks"] = [pytest.mark.slow]
        out.append(pytest.param(path, sess, id=str(path.relative_to(ROOT)), **kw))
    return out


def _scratch(tmp_path: Path) -> Path:
    for name in SEE:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    return tmp_path


@pytest.mark.parametrize("path, sessions", _sessions_by_file())
def test_documented_sessions(path, sessions, tmp_path):
    scratch = _scratch(tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               TMPDIR=str(tmp_path), COLUMNS="100", NO_COLOR="1")
    env.pop("PYTHONWARNINGS", None)
    failures = []
    for block, s in sessions:
        if "skip" in block.marks:
            continue
        if "root" in block.marks and (os.geteuid() != 0 or not shutil.which("nft")):
            pytest.skip("the lab's sessions need root and nftables")
        proc = subprocess.run(["bash", "-c", s.command], cwd=scratch, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        exact = bool(re.search(r"--seed[ =]\d", s.command))
        want = normal(s.expected, exact)
        got = normal(proc.stdout.splitlines(), exact, str(scratch))
        if got != want:
            diff = "\n".join(difflib.unified_diff(want, got, "shown", "printed today", lineterm="", n=1))
            failures.append(f"{path.relative_to(ROOT)}:{s.line}: $ {s.command}\n{diff}")
    assert not failures, "\n\n".join(failures)


# -- generated parts, files, links, the rebuild line -------------------------------------------------
def test_generated_docs_are_fresh():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    stale = generate.regenerate(check=True)
    assert not stale, ("parts of the docs differ from what the code makes today; run "
                       "`python docs/generate.py`:\n" + "\n".join(stale))
    assert len(generate.parts()) >= 8


_PATH = re.compile(r"`((?:collide|tests|bench|docs|examples|notebooks|\.ci)/[\w./*-]*\w)`")
_LINK = re.compile(r"\]\(((?!https?:|mailto:)[^)#\s]*)(#[^)\s]*)?\)")


def _slug(heading: str) -> str:
    h = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", h).replace(" ", "-")


def test_every_named_file_and_link_exists():
    bad = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in _PATH.finditer(text):
            name = m.group(1)
            if not (list(ROOT.glob(name)) if "*" in name else (ROOT / name).exists()):
                bad.append(f"{path.relative_to(ROOT)}: `{name}` does not exist")
        for m in _LINK.finditer(text):
            target = (path.parent / m.group(1)).resolve() if m.group(1) else path
            if not target.exists():
                bad.append(f"{path.relative_to(ROOT)}: link to {m.group(1)} does not exist")
                continue
            if m.group(2) and target.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"^#+ (.*)$", target.read_text(encoding="utf-8"), re.M)}
                if m.group(2)[1:] not in slugs:
                    bad.append(f"{path.relative_to(ROOT)}: link {m.group(1)}{m.group(2)}: no such heading")
    assert not bad, "\n".join(bad)


def test_readme_rebuild_line_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    line = "pip install -e . --no-build-isolation"
    assert line in readme and line in ci
    first = readme.split("```", 2)[1]
    assert "pip install -e '.[test]' && python -m pytest" in first and \
        "pip install -e '.[test]' && python -m pytest" in ci
