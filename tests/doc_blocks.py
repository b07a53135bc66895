"""The commands the docs show, read out of the Markdown (for tests/test_docs.py).

A block is a fenced code block (``` or ~~~) or an indented one. In a block:
- `$ collide ...` lines are sessions: the command (continued by a trailing backslash) and, up to the
  next `$` line or the end of the block, the output the reader is told to expect;
- other lines that call `collide` (alone, after `&&`, `;` or `|`, after a shell comment is cut) are
  commands shown without output.

An HTML comment on the line right before a block marks it: `<!-- docs-test: slow -->` (its sessions
run with the slow set), `<!-- docs-test: root -->` (they need root and the lab's packages), `<!--
docs-test: skip REASON -->` (not run; its commands are still parsed).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(\s*)(```|~~~)(.*)$")
MARK = re.compile(r"<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*(?P<why>.*?)\s*-->")
OPERATORS = {"&&", "||", ";", "|", "&", ";;"}


@dataclass
class Session:
    """One `$ command` and the output shown under it."""
    command: str
    expected: list[str]
    line: int


@dataclass
class Block:
    path: Path
    line: int                     # 1-based line of the block's first content line
    info: str                     # the fence's info string ("bash", "console", "" ...)
    lines: list[str]
    marks: dict[str, str] = field(default_factory=dict)

    @property
    def sessions(self) -> list[Session]:
        out: list[Session] = []
        i = 0
        while i < len(self.lines):
            ln = self.lines[i]
            if ln.startswith("$ "):
                cmd, start = ln[2:], i
                while cmd.endswith("\\") and i + 1 < len(self.lines):
                    i += 1
                    cmd = cmd[:-1] + " " + self.lines[i].strip()
                exp = []
                while i + 1 < len(self.lines) and not self.lines[i + 1].startswith("$ "):
                    i += 1
                    exp.append(self.lines[i])
                while exp and not exp[-1].strip():
                    exp.pop()
                out.append(Session(cmd.strip(), exp, self.line + start))
            i += 1
        return out

    def commands(self) -> list[tuple[int, list[str]]]:
        """Every `collide` invocation in the block: (line, argv after `collide`)."""
        found = []
        joined: list[tuple[int, str]] = []
        buf, start = "", 0
        for k, ln in enumerate(self.lines):
            if buf == "":
                start = k
            text = ln[2:] if ln.startswith("$ ") else ln
            if text.rstrip().endswith("\\"):
                buf += text.rstrip()[:-1] + " "
                continue
            joined.append((self.line + start, buf + text))
            buf = ""
        if buf:
            joined.append((self.line + start, buf))
        for line_no, text in joined:
            for argv in split_commands(text):
                if argv and argv[0] == "collide":
                    found.append((line_no, argv[1:]))
        return found


def split_commands(text: str) -> list[list[str]]:
    """Shell words of each simple command on a line (comments cut, operators split)."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        words = list(lex)
    except ValueError:                      # an unbalanced quote: not a shell line
        return []
    out, cur, skip_next = [], [], False
    for w in words:
        if skip_next:
            skip_next = False
            continue
        if w in OPERATORS or w in ("(", ")"):
            out.append(cur)
            cur = []
        elif w in (">", ">>", "<", "2>", "&>") or re.fullmatch(r"\d?>>?", w):
            skip_next = True                 # a redirection and its target
        else:
            cur.append(w)
    out.append(cur)
    return [c for c in out if c]


def blocks(path: Path) -> list[Block]:
    """The code blocks of a Markdown file, with the docs-test marks just above them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i, in_list = [], 0, False
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            indent, fence, info = m.group(1), m.group(2), m.group(3).strip()
            j = i + 1
            body = []
            while j < len(lines) and not lines[j].strip().startswith(fence):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            out.append(Block(path, i + 2, info, body, _marks(lines, i)))
            i = j + 1
            continue
        # an indented block: four spaces after a blank line, outside a list item's text
        if lines[i].startswith("    ") and i > 0 and not lines[i - 1].strip() and not in_list:
            j, body = i, []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            out.append(Block(path, i + 1, "indented", body, _marks(lines, i)))
            i = j
            continue
        stripped = lines[i].lstrip()
        if stripped:
            in_list = bool(re.match(r"([-*+]|\d+\.)\s", stripped)) or (in_list and lines[i].startswith(" "))
        i += 1
    return out


def _marks(lines: list[str], fence_at: int) -> dict[str, str]:
    k = fence_at - 1
    marks = {}
    while k >= 0 and lines[k].strip().startswith("<!--"):
        for m in MARK.finditer(lines[k]):
            marks[m["what"]] = m["why"]
        k -= 1
    return marks
