"""The file's outline: the declaration line of each top-level definition and, one level
in, of those in its classes and impls, with line numbers (tree-sitter, gathered by
lua/kznllm/context/outline.lua), so the model knows what a file holds beyond the lines
around the selection. Pure.

Over its share of the budget, the entries nearest the selection are kept and the gaps
say how many were left out, in file order (`render(outline, tokens)`). The entries the
lines around the selection already show are left out (`beside`): one line says which
lines those are, and a file sent whole has no outline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from operator import attrgetter

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.sections import Section

MAX_ENTRIES = 1500
MAX_TEXT = 200  # characters of one declaration line
INDENT = "    "


@dataclass(frozen=True, slots=True)
class Entry:
    line: int  # 1-based
    depth: int  # 0: top level; 1: in a class, impl, module
    text: str  # the declaration's line, from its first non-blank


@dataclass(frozen=True, slots=True)
class Outline:
    entries: tuple[Entry, ...]
    cursor: int = 1  # the range's first line: the entries nearest it are kept first
    more: int = 0  # entries the editor left out (over its cap)
    around: tuple[int, int] | None = None  # lines the request holds as the code around


def beside(o: Outline, first: int, last: int) -> Outline | None:
    """`o` without the entries of lines `first`..`last` (the code around the selection,
    as sent), which a line marks in their place; None when no entry is left."""
    kept = tuple(e for e in o.entries if not first <= e.line <= last)
    if not kept and not o.more:
        return None
    return replace(o, entries=kept, around=(first, last))


def _entry(raw: object) -> Entry | None:
    """One of the editor's entries: [line, depth, text]."""
    if not isinstance(raw, (list, tuple)) or len(raw) != 3:
        return None
    line, depth, text = raw
    if type(line) is not int or line < 1 or type(text) is not str:
        return None
    text = text.strip()[:MAX_TEXT]
    return Entry(line, 1 if depth else 0, printable(text)) if text else None


def parse(raw: object) -> Outline | None:
    """The editor's outline table, bounded (None: absent, malformed or empty)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("entries"), list):
        return None
    found = [e for e in map(_entry, raw["entries"][: MAX_ENTRIES * 2]) if e is not None]
    found.sort(key=attrgetter("line"))  # the editor's come in order: one pass
    entries = tuple(found)
    if not entries:
        return None
    kept = entries[:MAX_ENTRIES]
    more = max(0, options.whole(raw, "more")) + len(entries) - len(kept)
    return Outline(kept, cursor=max(1, options.whole(raw, "cursor", 1)), more=more)


def line_of(e: Entry) -> str:
    return f"{e.line}: {INDENT * e.depth}{e.text}"


def _gap(n: int) -> str:
    return f"[... {n} more definition{'' if n == 1 else 's'}]"


def render(o: Outline, tokens: int | None = None) -> str:
    """The outline in file order; within `tokens` (None: all of it) the entries nearest
    the cursor line, with a line for each run left out."""
    every = [line_of(e) for e in o.entries]
    if o.around is not None:  # in file order, always kept: it tells what the rest is
        at = sum(1 for e in o.entries if e.line < o.around[0])
        first, last = o.around
        mark = f"[lines {first}-{last}: the code around the selection, sent below]"
        return _render(o, tokens, every[:at], mark, every[at:])
    return _render(o, tokens, every, None, [])


def _render(
    o: Outline, tokens: int | None, head: list[str], mark: str | None, rest: list[str]
) -> str:
    """`render` of the entries `head` + `rest` (in file order, `o.entries`' lines), with
    `mark` between them when given."""
    every = head + rest
    marked = head + ([mark] if mark else []) + rest
    tail = [_gap(o.more)] if o.more else []
    if tokens is None or estimate_tokens("\n".join(marked + tail)) <= tokens:
        return "\n".join(marked + tail)
    by_distance = sorted(range(len(o.entries)), key=lambda i: abs(o.entries[i].line - o.cursor))
    gap = estimate_tokens(_gap(len(every)) + "\n")  # the longest a gap line can be
    room = tokens - gap * 2
    room -= estimate_tokens(mark + "\n") if mark else 0
    chosen: set[int] = set()
    used = 0
    for i in by_distance:
        # each entry may open a gap line of its own: count one with it
        cost = estimate_tokens(every[i] + "\n") + gap
        if used + cost > room:
            break
        chosen.add(i)
        used += cost
    rows = [(line, i in chosen) for i, line in enumerate(every)]
    if mark:  # always kept, in its place between the entries
        rows.insert(len(head), (mark, True))
    out: list[str] = []
    skipped = 0
    for line, kept in rows:
        if not kept:
            skipped += 1
            continue
        if skipped:
            out.append(_gap(skipped))
            skipped = 0
        out.append(line)
    skipped += o.more
    if skipped:
        out.append(_gap(skipped))
    return "\n".join(out)


def section(o: Outline, path: str = "") -> Section:
    where = f" of {printable(path)}" if path else ""
    title = f"outline{where}: its definitions (line: declaration)"
    return Section("outline", title, render(o), shorten=partial(render, o))
