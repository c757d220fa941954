"""The enclosing scope of the selection or cursor: the innermost named function, method
or class around it (tree-sitter, gathered by lua/kznllm/context/scope.lua), whole, as a
section titled with its kind, name and lines. Pure.

When the lines around the selection that are sent already hold the whole scope (a
function of 40 lines with the cursor in it), its text is not sent twice: the section is
its title and one line saying so, and the lines around keep the scope's lines first
(kznllm_py/fill/job.py `fitted`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section

MAX_CHARS = 200_000  # of the scope's text (the editor reads at most 192 KiB)
MAX_NAME = 120
KINDS = (
    "function",
    "method",
    "class",
    "struct",
    "union",
    "enum",
    "impl",
    "trait",
    "interface",
    "module",
    "namespace",
    "section",
)


@dataclass(frozen=True, slots=True)
class Scope:
    kind: str  # one of KINDS
    name: str  # qualified: `Parser.feed`
    start: int  # 1-based lines, as at the keypress
    end: int
    text: str  # its lines (the first ones only when `cut`)
    cut: bool = False
    # bytes of `text` before and after the range (None: not known, e.g. when cut)
    head: int | None = None
    tail: int | None = None


def _bytes(raw: Mapping[str, object], key: str) -> int | None:
    v = raw.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def parse(raw: object) -> Scope | None:
    """The editor's scope table, or None when it is absent or malformed."""
    if not isinstance(raw, Mapping):
        return None
    kind = options.text(raw, "kind")
    name = options.text(raw, "name").strip()
    start, end = options.whole(raw, "start"), options.whole(raw, "end")
    text = raw.get("text")
    if kind not in KINDS or not name or not 1 <= start <= end or not isinstance(text, str):
        return None
    cut = bool(raw.get("truncated")) or len(text) > MAX_CHARS
    return Scope(
        kind=kind,
        name=printable(name[:MAX_NAME]),
        start=start,
        end=end,
        text=text[:MAX_CHARS],
        cut=cut,
        head=None if cut else _bytes(raw, "head"),
        tail=None if cut else _bytes(raw, "tail"),
    )


def title(s: Scope) -> str:
    """`enclosing method `Parser.feed` (lines 120-188)`."""
    lines = f"line {s.start}" if s.start == s.end else f"lines {s.start}-{s.end}"
    return f"enclosing {s.kind} `{s.name}` ({lines})"


def section(s: Scope) -> Section:
    """The scope whole (its share of the budget cuts it, on a line, if need be)."""
    text = s.text
    if s.cut:
        shown = s.start + text.count("\n")
        text += f"\n[... lines {shown + 1}-{s.end} not read: the scope is too long]"
    return Section("scope", title(s), text)


def in_around(s: Scope, before: str, after: str) -> tuple[int, int] | None:
    """When the lines around the selection (`before` and `after` it, as sent) hold the
    whole scope: how many of `before`'s last lines and of `after`'s first lines are the
    scope's (to keep first). None when they do not, or it cannot be told."""
    if s.head is None or s.tail is None:
        return None
    raw = s.text.encode("utf-8", "surrogatepass")
    if s.head + s.tail > len(raw):
        return None
    try:
        head = raw[: s.head].decode("utf-8")
        tail = raw[len(raw) - s.tail :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not (before.endswith(head) and after.startswith(tail)):
        return None
    return head.count("\n") + 1, tail.count("\n") + 1


def noted(s: Scope) -> Section:
    """The scope as a title only: its text is in the lines around the selection."""
    return Section("scope", title(s), "(whole in the code around the selection, not repeated here)")
