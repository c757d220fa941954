"""A fill's answer shaped on its way to the buffer (fill/shape.py is the
shaping itself, on plain text): which `Shape` a fill's request gets (`for_fill`: a
replace re-indented to its selection, an answer at the cursor's line as code in the
buffer's syntax, or none), the indentation it lands at (`target_indent`), the prompt
asking for code when so (`asked`), the `Pipe` from the stream to the buffer (the
shaper, then a linewise replace's blank edges: fill/edges.py), and :KznApply's code
landed as the stream would have (`reindent_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from kznllm_py.apply import Span
from kznllm_py.fill.edges import Edges, trimmed
from kznllm_py.fill.request import FillRequest
from kznllm_py.fill.shape import (
    PROSE_FILETYPES,
    Shape,
    Shaper,
    comment_parts,
    leading_space,
    reindent,
)

if TYPE_CHECKING:  # the host imports this module at its start: Jinja2 only for a fill
    from kznllm_py.prompt.prompts import FillContext


def reindent_for(code: str, selection: str, *, width: int = 4, span: Span | None = None) -> str:
    """`code` put in place of `selection` as a replace's stream would have landed it
    (:KznApply): at the selection's base indentation when it came dedented (`span`:
    where the selection stood, the text before it on its first line); in place of whole
    lines, without blank lines at its ends (fill/edges.py)."""
    head = head_of(span, span.head if span is not None else "")
    shape = None if head is None else replace_shape(selection, head, width=width)
    code = code if shape is None else reindent(code, shape)
    if span is not None and span.kind == "range" and span.start[1] == 0 == span.tail_bytes:
        code = trimmed(code)  # whole lines
    return code


def replace_shape(
    selection: str, head: str, *, width: int, commentstring: str = ""
) -> Shape | None:
    """How a replace of `selection` is re-indented (None: it is not): from its line's
    indentation when it starts mid-line (`head` is the text before it there), else from
    its first non-blank line's, in that indentation's tabs or spaces."""
    if head:
        base, inline = leading_space(head + selection.split("\n", 1)[0]), True
    else:
        base, inline = (
            leading_space(next((x for x in selection.split("\n") if x.strip()), "")),
            False,
        )
    if not base:
        return None
    parts = comment_parts(commentstring)
    leader = parts[0].strip() if parts is not None else ""
    return Shape(base, "", "\t" in base, width, True, inline=inline, leader=leader)


def asked(ctx: FillContext, shape: Shape | None) -> FillContext:
    """The prompt's context, asking for code in the buffer's syntax when the answer is
    shaped as code (the templates' `code_answer`)."""
    if shape is None or not shape.comment:
        return ctx
    return replace(ctx, code_comment=shape.comment)


def for_fill(req: FillRequest, where: str | None, *, enabled: bool = True) -> Shape | None:
    """How a fill's answer is shaped, or None when it goes as it comes: shaping off,
    a debug view or conversation, a fill at the cursor, a prose buffer."""
    if not enabled or req.debug or req.send is not None or req.followup or req.rerun:
        return None
    if req.buftype or req.filetype in PROSE_FILETYPES:
        return None
    width = req.shiftwidth
    if req.mode == "replace":
        span = req.span
        if span is not None and span.kind == "block":
            return None  # a block's columns take the answer as it comes
        head = start_head(req)
        if head is None:
            return None
        return replace_shape(req.selection, head, width=width, commentstring=req.commentstring)
    if where not in ("line", "below", "above") or comment_parts(req.commentstring) is None:
        return None
    indent = target_indent(req)
    return Shape(indent, req.commentstring, _tabs(indent, req), width)


def start_head(req: FillRequest) -> str | None:
    """The text before a replace's selection on the line it starts on, from the context
    sent with it (`before` ends there): `head_of`."""
    return head_of(req.span, req.before[req.before.rfind("\n") + 1 :])


def head_of(span: Span | None, known: str) -> str | None:
    """The text before the selection `span` on the line it starts on ("" from the
    line's start), `known` being the end of that text as sent; None when that is not all
    of it (the context was cut inside the line: its indentation is unknown)."""
    if span is None or span.kind != "range" or span.start[1] == 0:
        return ""
    return known if len(known.encode("utf-8", "surrogateescape")) == span.start[1] else None


def _tabs(indent: str, req: FillRequest) -> bool:
    """Whether the answer's indentation goes in tabs: as the line it lands by is
    indented, else as 'expandtab' says."""
    return "\t" in indent if indent else not req.expandtab


class Pipe:
    """A fill's text on its way to the buffer: shaped when `shape` says how, else as it
    comes; a linewise replace's (`lines`) without blank lines at its ends (fill/edges.py).
    `close()` at the answer's end (whatever the outcome) gives the rest."""

    __slots__ = ("_edges", "_shaper", "_write")

    def __init__(
        self, write: Callable[[str], None], shape: Shape | None, *, lines: bool = False
    ) -> None:
        self._write = write
        self._shaper = Shaper(shape) if shape is not None else None
        self._edges = Edges() if lines else None

    def push(self, text: str) -> None:
        if self._shaper is not None:
            text = self._shaper.push(text)
        if text and self._edges is not None:
            text = self._edges.push(text)
        if text:
            self._write(text)

    def close(self) -> None:
        text = self._shaper.finish() if self._shaper is not None else ""
        if self._edges is not None:
            text = self._edges.push(text)
            self._edges.finish()
        if text:
            self._write(text)

    def final(self, code: str) -> str:
        """A replace's code, cut out of a chatty answer at its end, shaped as its
        stream would have been."""
        s = self._shaper
        if s is not None and s.shape.dedented_only:
            code = reindent(code, s.shape)
        return trimmed(code) if self._edges is not None else code


def target_indent(req: FillRequest) -> str:
    """The indentation a normal-mode answer is written at: the cursor line's; on a blank
    line (without indentation of its own), the next non-blank line's below it (the
    answer goes before that code), else the previous one's above. From the context the
    editor sent, split at the cursor."""
    spot = req.spot
    line = spot.head + spot.rest if spot is not None else ""
    if spot is not None and (not spot.blank or leading_space(line)):
        return leading_space(line)
    after, before = req.after, req.before
    start = after.find("\n") + 1  # the lines below the cursor's, 200 at most
    for _ in range(200):
        if not start:
            break
        end = after.find("\n", start)
        below = after[start:] if end < 0 else after[start:end]
        if below.strip():
            return leading_space(below)
        start = end + 1
    end = before.rfind("\n")  # the lines above it
    for _ in range(200):
        if end < 0:
            break
        start = before.rfind("\n", 0, end) + 1
        if before[start:end].strip():
            return leading_space(before[start:end])
        end = start - 1
    return ""
