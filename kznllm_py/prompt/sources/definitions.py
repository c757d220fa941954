"""The definitions of the names a selection uses (issue 25 item 2): the locations the
buffer's language servers gave for them (lua/kznllm/context/definitions.lua), typed and
bounded here (`parse`), then read, confined to the project and cut into one section
(`section`: reads files, run it off the event loop).

Where the text comes from: a definition in a buffer loaded in the editor comes with its
lines (the buffer is the truth, saved or not; its extent from tree-sitter when a parser
knows it); any other is read from its file here, only when it is a regular file inside
the project root (the git root, else the working directory; its real path, so no link
leads out; never the home directory itself), not hidden, not in a virtualenv,
site-packages, node_modules or the like, and at most `MAX_FILE_BYTES`. Its extent (the
whole function or class, not its name line) is then found by `extent`: brackets where
the definition opens a `{`, else indentation; capped.

The comment lines and decorators right above a definition (its doc in C, Rust, Lua,
JavaScript; `@dataclass`) come with it (`lead_in`). A location whose line does
not hold the name (a module's: the top of its file) is skipped; so are a definition
the prompt already holds (inside the selection, or in the lines around it that are
sent), duplicates and one inside another shown. Each definition is cut at `MAX_LINES`
lines / `MAX_CHARS` characters, its signature and doc first; at most `MAX_SYMBOLS` of
them; the section's share of the budget cuts the rest (kznllm_py/prompt/sections.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt import context
from kznllm_py.prompt.sections import Section

MAX_FOUND = 64  # locations taken from the editor
MAX_SYMBOLS = 12  # definitions in the section
MAX_LINES = 80  # lines of one definition
MAX_CHARS = 4000  # characters of one definition
MAX_SENT_LINES = 220  # lines of a loaded buffer taken per definition (LEAD above it)
LEAD = 20  # lines looked at above a definition for its doc comment and decorators
MAX_LINE_CHARS = 1000  # characters of one such line
MAX_NAME = 100
MAX_FILE_BYTES = 512 * 1024  # a file larger than this is not read for a definition
# folders whose files are not the project's own, wherever they are under its root
FOREIGN_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "node_modules",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".git",
        "__pycache__",
        ".mypy_cache",
    }
)


@dataclass(frozen=True, slots=True)
class Found:
    """One location a language server gave for `name`: `path` (absolute), `line`
    (1-based); from a loaded buffer also its `lines` (from line `start`, at most LEAD
    above `line`, on) and, when tree-sitter knew it, the definition's first line `top`
    (when above `line`) and last line `end` (0: unknown)."""

    name: str
    path: str
    line: int
    end: int = 0
    lines: tuple[str, ...] = ()
    start: int = 0
    top: int = 0  # where tree-sitter says it starts, when above `line` (0: at `line`)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the editor gathered: the locations, in the order of first use, and the
    lines of the current file the request holds (`path`, 1-based `first`..`last`: the
    selection, or the cursor's line)."""

    found: tuple[Found, ...] = ()
    path: str = ""
    first: int = 0
    last: int = 0
    asked: int = 0  # definition requests sent
    late: int = 0  # of them, not answered by the deadline (cancelled)

    def notes(self) -> tuple[str, ...]:
        """What the debug view says of the gathering: requests cut by the deadline."""
        if not self.late:
            return ()
        return (
            f"definitions: {self.late} of {self.asked} language server requests not "
            "answered by the deadline (context.lsp_timeout), cancelled",
        )


def _lines(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(s[:MAX_LINE_CHARS] for s in raw[:MAX_SENT_LINES] if isinstance(s, str))


def _one(raw: Mapping[str, Any]) -> Found | None:
    name = options.text(raw, "name")[:MAX_NAME]
    path = options.text(raw, "path")
    line = options.whole(raw, "line")
    if not name or not os.path.isabs(path) or "\0" in path or line < 1:
        return None
    end = options.whole(raw, "end")
    lines = _lines(raw.get("lines"))
    start = options.whole(raw, "start", line)
    if not line - LEAD <= start <= line or line - start >= len(lines):
        lines, start = (), 0  # lines that do not hold the definition's own
    top = options.whole(raw, "top")
    return Found(
        name=name,
        path=path,
        line=line,
        end=end if end >= line else 0,
        lines=lines,
        start=start if lines else 0,
        top=top if lines and start <= top < line else 0,
    )


def parse(raw: object) -> Asked:
    """The editor's `definitions` table (anything malformed: nothing), bounded."""
    if not isinstance(raw, Mapping):
        return Asked()
    found = raw.get("found")
    entries = found[:MAX_FOUND] if isinstance(found, list) else []
    out = (_one(f) for f in entries if isinstance(f, Mapping))
    return Asked(
        found=tuple(f for f in out if f is not None),
        path=options.text(raw, "path"),
        first=options.whole(raw, "first"),
        last=options.whole(raw, "last"),
        asked=options.whole(raw, "asked"),
        late=options.whole(raw, "late"),
    )


# -- the extent of a definition ------------------------------------------------------------

_OPEN, _CLOSE = "([{", ")]}"
_ENDS = ("end", "end)", "end,", "end;", "}", "};", ")", ");")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def extent(lines: list[str] | tuple[str, ...], cap: int = MAX_LINES) -> int:
    """How many of `lines` (a definition's first line on) the definition spans: up to
    where its brackets close when its header opens a `{` (C, JavaScript, Rust, ...),
    else up to the next line indented no deeper than the first (Python; a closing `end`
    or `}` at that depth is kept), brackets left open carrying on. At most `cap`.

    Only a `{` of the header, outside its parentheses, opens a braced body: the first
    line, the lines its open brackets carry on to, a `where` clause, a `{` on a line of
    its own right after. A `{` further down is the body's own (a Python dict, a Lua
    table), and `f(x={})` is a default, not a body."""
    if not lines:
        return 0
    base = _indent(lines[0])
    depth = 0
    braced = False
    clause = False  # in a `where` clause (Rust): header lines until the body's `{`
    n = min(len(lines), cap)
    for i in range(n):
        line = lines[i]
        stripped = line.strip()
        header = i == 0 or depth > 0 or clause
        if i > 0 and depth == 0 and stripped and not braced:
            if stripped.startswith("{") and (clause or _indent(line) <= base):
                header = True  # a body that opens on the line after its header
                clause = False
            elif stripped.startswith("where") and _indent(line) <= base and not clause:
                header = clause = True
            elif _indent(line) <= base and not clause:
                return i + 1 if stripped in _ENDS else _trimmed(lines, i)
        for ch in line:
            if ch in _OPEN:
                if ch == "{" and depth == 0 and header:
                    braced = True
                depth += 1
            elif ch in _CLOSE:
                depth = max(0, depth - 1)
        if braced and depth == 0:
            return i + 1
        if i == 0 and depth == 0 and stripped.endswith(";"):
            return 1  # a declaration of one line
    return _trimmed(lines, n)


def _trimmed(lines: list[str] | tuple[str, ...], n: int) -> int:
    while n > 1 and not lines[n - 1].strip():
        n -= 1
    return n


# -- where a definition may be read from ---------------------------------------------------


def project_file(path: str, root: str, home: str | None = None) -> str | None:
    """The real path of `path` when it is inside the real `root` and not hidden (no
    part of it under the root starts with `.`: `.ssh`, `.venv`, `.git`), not under
    one of the FOREIGN_DIRS or a virtualenv (a folder holding `pyvenv.cfg`); else None.
    A root that is the home directory or `/` (no project: Neovim started there) holds
    no project file."""
    real_root = os.path.realpath(root)
    home = os.path.realpath(home if home is not None else os.path.expanduser("~"))
    if real_root in (home, os.sep):
        return None
    real = os.path.realpath(path)
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    parts = os.path.relpath(real, real_root).split(os.sep)
    if any(p.startswith(".") for p in parts) or any(p in FOREIGN_DIRS for p in parts[:-1]):
        return None
    folder = real_root
    for p in parts[:-1]:
        folder = os.path.join(folder, p)
        if os.path.lexists(os.path.join(folder, "pyvenv.cfg")):
            return None
    return real


def read_lines(real: str) -> list[str] | None:
    """The lines of the regular text file at `real` (a real path: no link), or None when
    it is not one, unreadable, binary or over MAX_FILE_BYTES."""
    text, _why = context.read_text(real, MAX_FILE_BYTES)
    return None if text is None else text.splitlines()


# -- the section ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One definition as it is shown: its file's real path, its lines `first`..`last`
    (1-based), its titled text, and whether that file is the one the fill is in."""

    real: str
    first: int
    last: int
    text: str
    current: bool = False

    def inside(self, other: Entry) -> bool:
        return self.real == other.real and other.first <= self.first <= self.last <= other.last


_LEADERS = ("#", "//", "--", "/*", "*", "@", ";", "<!--")


def lead_in(above: list[str] | tuple[str, ...]) -> int:
    """How many of the lines right `above` a definition (the nearest last) are its doc
    comment or decorators: comment lines and `@` lines, up to a blank line or code."""
    n = 0
    for line in reversed(above):
        stripped = line.strip()
        if not stripped or not stripped.startswith(_LEADERS) or stripped.startswith("#!"):
            break
        n += 1
    return n


def _body(lines: list[str]) -> str:
    """A definition's text, whole when within MAX_LINES / MAX_CHARS; else its first
    lines within them (its signature and doc), with a line saying the rest is cut."""
    text = "\n".join(lines)
    if len(lines) <= MAX_LINES and len(text) <= MAX_CHARS:
        return text
    head = "\n".join(lines[:MAX_LINES])
    if len(head) > MAX_CHARS:
        head = head[:MAX_CHARS].rsplit("\n", 1)[0]
    return f"{head}\n[... the rest is cut (past {MAX_LINES} lines or {MAX_CHARS} characters)]"


def entries(
    asked: Asked,
    root: str,
    *,
    read: Callable[[str], list[str] | None] = read_lines,
) -> tuple[Entry, ...]:
    """The definitions of `asked` in the project at `root`, read and titled with name,
    path and lines, in the order asked, duplicates and those inside the selection left
    out (the lines around it are judged once fitted: `unheld`). Reads files (through
    `read`): run it off the event loop."""
    if not asked.found or not root:
        return ()
    current = os.path.realpath(asked.path) if asked.path else ""
    files: dict[str, list[str] | None] = {}
    real_root = os.path.realpath(root)
    found: list[Entry] = []
    for f in asked.found:
        if len(found) >= 2 * MAX_SYMBOLS:
            break
        real = project_file(f.path, root)
        if real is None or any(e.real == real and e.first <= f.line <= e.last for e in found):
            continue  # outside the project, or shown already
        if real == current and asked.first <= f.line <= asked.last:
            continue  # in the selection
        if f.lines:
            above = list(f.lines[: f.line - f.start])
            source = list(f.lines[f.line - f.start :])
        else:
            if real not in files:
                files[real] = read(real)
            whole = files[real]
            if whole is None or f.line > len(whole):
                continue
            above = whole[max(0, f.line - 1 - LEAD) : f.line - 1]
            source = whole[f.line - 1 : f.line - 1 + MAX_SENT_LINES]
        if not source or f.name not in source[0]:
            continue  # not where the name is defined (a module's location: its file's top)
        n = min(f.end - f.line + 1, len(source)) if f.end else extent(source, MAX_SENT_LINES)
        if n < 1:
            continue
        upper = f.line - f.top if f.top else 0  # its first lines, above its name's
        lead = upper + lead_in(above[: len(above) - upper])
        first, last = f.line - lead, f.line + n - 1
        text = [*above[len(above) - lead :], *source[:n]]
        rel = os.path.relpath(real, real_root)
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        # not a `--- title ---` line: the sections' own titles in that style are (and a
        # line shaped so inside a section is shown sealed, prompt/sealing.py)
        head = f"=== `{printable(f.name)}` in {printable(rel)}, {where} ==="
        found.append(Entry(real, first, last, f"{head}\n{_body(text)}", real == current))
    # one inside another (a method of a class shown whole) is shown once, in it
    return tuple(
        e
        for i, e in enumerate(found)
        if not any(e.inside(o) for j, o in enumerate(found) if j != i)
    )


def unheld(found: tuple[Entry, ...], first: int, last: int) -> tuple[Entry, ...]:
    """The entries the request does not hold already: not starting in the current
    file's lines `first`..`last` (the selection and the lines around it that are sent)."""
    return tuple(e for e in found if not (e.current and first <= e.first <= last))


def section_of(found: tuple[Entry, ...]) -> Section | None:
    """The definitions section: the first MAX_SYMBOLS entries."""
    if not found:
        return None
    title = "definitions of the names used here, from the language server (project files only)"
    return Section("definitions", title, "\n\n".join(e.text for e in found[:MAX_SYMBOLS]))


def section(
    asked: Asked,
    root: str,
    *,
    held_before: int = 0,
    held_after: int = 0,
    read: Callable[[str], list[str] | None] = read_lines,
) -> Section | None:
    """The definitions section of `asked` for the project at `root` when the current
    file's lines `first - held_before` to `last + held_after` are sent. Reads files."""
    found = unheld(
        entries(asked, root, read=read), asked.first - held_before, asked.last + held_after
    )
    return section_of(found)
