""":KznApply's decisions, pure (no Neovim, no SQLite): which answer of a conversation is
applied and what of it is code (`plan`), where a replace's selection stood when it was
asked (`Span`, recorded in history), and where that selection stands in a buffer's lines
now (`locate`): whole lines at the recorded place, else the one place it moved to; a
blockwise selection as a block. The plugin passes history entries and buffer lines in
and sends the results to lua/kznllm/apply.lua, which only captures and writes."""

from __future__ import annotations

import json
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from kznllm_py import secrets
from kznllm_py.errors import KznError
from kznllm_py.history.records import Entry
from kznllm_py.stream import fences

SPAN_CAP = 1000  # characters kept of the line's text on each side of a selection
MAX_PLACES = 100  # matches counted when the selection stands in several places
MAX_CHECKS = 200_000  # places a block's first row stands that are checked as the block


class ApplyError(KznError):
    """Why nothing was applied (said to the user as is)."""

    def __init__(self, message: str, level: str = "ERROR") -> None:
        super().__init__(message)
        self.level = level


# ------------------------------------------------------------------------ where it stood


@dataclass(frozen=True, slots=True)
class Span:
    """Where a replace's selection stood when the request went out (0-based rows, byte
    columns, end exclusive). A range keeps the text around it on its first and last
    line (`head`, `tail`: at most SPAN_CAP characters each, the nearest, redacted as the
    selection is) so that a match can be checked as whole lines; a block keeps its
    rows: (row, start column, end column) each."""

    kind: str  # "range" | "block"
    start: tuple[int, int] = (0, 0)
    end: tuple[int, int] = (0, 0)
    head: str = ""  # the first line before the selection (its last SPAN_CAP characters)
    tail: str = ""  # the last line after it (its first SPAN_CAP characters)
    tail_bytes: int = 0  # the whole tail's length in bytes
    rows: tuple[tuple[int, int, int], ...] = ()

    def to_json(self) -> str:
        if self.kind == "block":
            return json.dumps({"kind": "block", "rows": [list(r) for r in self.rows]})
        return json.dumps(
            {
                "kind": "range",
                "start": list(self.start),
                "end": list(self.end),
                "head": self.head,
                "tail": self.tail,
                "tail_bytes": self.tail_bytes,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Span | None:
        """The recorded span, or None when there is none or it does not read."""
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        if data.get("kind") == "block":
            rows = _block_rows(data.get("rows"))
            return None if rows is None else cls("block", rows=rows)
        start, end = data.get("start"), data.get("end")
        head, tail, tail_bytes = data.get("head"), data.get("tail"), data.get("tail_bytes")
        if not (_pair(start) and _pair(end) and isinstance(head, str) and isinstance(tail, str)):
            return None
        if not _nat(tail_bytes):
            return None
        return cls("range", (start[0], start[1]), (end[0], end[1]), head, tail, tail_bytes)


def _nat(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _block_rows(rows: Any) -> tuple[tuple[int, int, int], ...] | None:
    """A block's rows as recorded: [row, start column, end column] each, on consecutive
    rows, each start at or before its end; else None."""
    if not isinstance(rows, list) or not rows:
        return None
    out: list[tuple[int, int, int]] = []
    for r in rows:
        if not (isinstance(r, list) and len(r) == 3 and all(_nat(x) for x in r)):
            return None
        if r[1] > r[2] or (out and r[0] != out[-1][0] + 1):
            return None
        out.append((r[0], r[1], r[2]))
    return tuple(out)


def _pair(x: Any) -> TypeGuard[list[int]]:
    return isinstance(x, list) and len(x) == 2 and all(_nat(v) for v in x)


def span_of(p: Mapping[str, Any], selection: str, before: str, after: str) -> Span | None:
    """The span of a fill request (`p["span"]`, what the editor's region was when it
    sent the request), its head and tail taken from the context sent with it (`before`
    ends with the selection's first line up to it, `after` starts with its last line
    after it). None for a request without a selection."""
    raw = p.get("span")
    if not selection or not isinstance(raw, Mapping):
        return None
    if raw.get("kind") == "block":
        rows = _block_rows(raw.get("rows"))
        return None if rows is None else Span("block", rows=rows)
    rng, last_len = raw.get("range"), raw.get("last_len")
    if not (isinstance(rng, list) and len(rng) == 4 and all(_nat(x) for x in rng)):
        return None
    sr, sc, er, ec = rng
    head = before[before.rfind("\n") + 1 :][-SPAN_CAP:]
    cut = after.find("\n")
    tail = (after if cut < 0 else after[:cut])[:SPAN_CAP]
    tail_bytes = last_len - ec if _nat(last_len) and last_len >= ec else len(_b(tail))
    return Span("range", (sr, sc), (er, ec), secrets.redact(head), secrets.redact(tail), tail_bytes)


# ------------------------------------------------------------------------ which answer


@dataclass(frozen=True, slots=True)
class Plan:
    """What :KznApply puts where: the code of answer `entry_id` in place of the
    selection the conversation's first request (`root_id`) was asked about."""

    entry_id: int
    root_id: int
    code: str
    selection: str
    path: str
    span: Span | None
    note: str  # said after "#N applied", e.g. a later answer without code, a forced one

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "root": self.root_id,
            "text": self.code,
            "selection": self.selection,
            "path": self.path,
            "span": None if self.span is None else self.span.to_json(),
            "block": self.span is not None and self.span.kind == "block",
            "note": self.note,
        }


def plan(chain: Sequence[Entry], *, force: bool, live: Container[int] = ()) -> Plan:
    """The latest answer of the conversation `chain` (oldest first, as the store's
    `chain` gives it) that has code, for the selection its first request was asked
    about. An answer that did not end on its own (cancelled, failed, still streaming,
    cut by a crash) is refused unless `force`. Raises ApplyError saying why not."""
    if not chain:
        raise ApplyError("the history entry is gone")
    root, last = chain[0], chain[-1]
    if not root.selection:
        asked = "it" if root is last else f"its conversation's first request, #{root.id},"
        raise ApplyError(
            f"cannot apply #{last.id}: {asked} was not a replace: there is no code to put"
            " it in place of"
        )
    prose_ok = reads_as_prose(root.selection)
    skipped: list[int] = []
    for entry in reversed(chain):
        kind, code = code_of(entry, replace=entry is root, prose_ok=prose_ok)
        if kind == "several":
            raise ApplyError(
                f"cannot apply #{entry.id}: its answer has {code} code blocks; yank the one"
                " you want (or ask for one block)"
            )
        if kind == "none":
            skipped.append(entry.id)
            continue
        notes = []
        if skipped:
            ids = ", ".join(f"#{i}" for i in reversed(skipped))
            notes.append(f"the latest code of the conversation; {ids} had none")
        if entry.status != "ok":
            why = unfinished(entry, live)
            if not force:
                raise ApplyError(
                    f"#{entry.id} {why}: its answer may be incomplete; nothing was applied"
                    " (:KznApply! applies it anyway)",
                    "WARN",
                )
            notes.append(f"{why}, applied as it is")
        return Plan(
            entry.id,
            root.id,
            _line_breaks(code, root.selection),
            root.selection,
            root.path,
            Span.from_json(root.span),
            "; ".join(notes),
        )
    ids = ", ".join(f"#{e.id}" for e in chain)
    raise ApplyError(f"cannot apply #{last.id}: no answer of the conversation ({ids}) has code")


def unfinished(entry: Entry, live: Container[int]) -> str:
    if entry.status == "running":
        if entry.id in live:
            return "is still streaming"
        return "has not finished (it streams in another Neovim, or its Neovim quit mid-answer)"
    if entry.status == "cancelled":
        return "was cancelled"
    error = secrets.redact(entry.error or "").strip().splitlines()
    return f"ended in an error ({error[0][:120]})" if error else "ended in an error"


def code_of(entry: Entry, *, replace: bool, prose_ok: bool) -> tuple[str, str]:
    """("code", the code) | ("none", "") | ("several", the number of blocks). The first
    request's answer (`replace`) was asked to be raw code: a stray fence was stripped as
    it streamed; prose around one fenced block keeps only the block. A follow-up's
    answer is code when it is one fenced block (prose around it or not; an unclosed
    fence counts to the end), or has no fence and does not read as prose."""
    text = entry.response
    if not text.strip():
        return "none", ""
    found = fences.fenced(text)
    blocks, unclosed = [found.code(b) for b in found.blocks], found.unclosed()
    if replace:
        if len(blocks) == 1 and not unclosed and found.prose_around():
            return "code", blocks[0]
        return "code", text
    if unclosed is not None and not blocks:
        return "code", unclosed
    if len(blocks) + (unclosed is not None) > 1:
        return "several", str(len(blocks) + (unclosed is not None))
    if blocks:
        return "code", blocks[0]
    if not prose_ok and reads_as_prose(text):
        return "none", ""
    return "code", text


_SENTENCE_START = re.compile(r"(?:[-*+>]\s+|\d{1,3}[.)]\s+)?[\"'(*_`]*[A-Za-z]")
_SENTENCE_END = (".", "!", "?", ":", ")", ".*", ".**")


def _sentence(line: str) -> bool:
    """A line that starts with a word (maybe as a list item, quoted or emphasized),
    runs four words or more and ends as a sentence does."""
    start = _SENTENCE_START.match(line)
    if start is None or not line.endswith(_SENTENCE_END):
        return False
    return len(line[start.end() - 1 :].split(None, 4)) >= 4


def reads_as_prose(text: str) -> bool:
    """Whether `text` reads as sentences, not code: more than half of its non-blank
    lines are sentences (see `_sentence`). Code does not: a comment starts with # //
    or --, a statement does not end as a sentence, a signature is no sentence."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return sum(1 for x in lines if _sentence(x)) * 2 > len(lines)


def _line_breaks(code: str, selection: str) -> str:
    """The answer as a replace would have written it: its line breaks are the
    selection's (CRLF only where the selection's lines end in CR), and whole lines keep
    their own line break, so the answer's final one goes."""
    crlf = selection.count("\n") > 0 and selection.count("\r\n") == selection.count("\n")
    if not crlf:
        code = code.replace("\r\n", "\n")
    if code.endswith("\n") and not selection.endswith("\n"):
        code = code[:-2] if crlf and code.endswith("\r\n") else code[:-1]
    return code


# ------------------------------------------------------------------------ where it is now


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Found:
    """Where to apply: one { srow, scol, erow, ecol } for a range, (row, scol, ecol)
    per row for a block."""

    range: tuple[int, int, int, int] | None = None
    rows: tuple[tuple[int, int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.range is not None:
            return {"range": list(self.range)}
        return {"rows": [list(r) for r in self.rows]}


def locate(lines: Sequence[str], selection: str, span: Span | None, *, name: str = "") -> Found:
    """Where `selection` stands in `lines` (a buffer's, as Neovim has them): at the
    recorded span when it is there, else the one place it moved to. A range matches as
    whole lines (the text around it on its first and last line as recorded); a block
    as a block (the same columns on consecutive lines, shifted together). Raises
    ApplyError when it is nowhere or in more than one place. Without a span (an entry
    recorded before spans were) the selection must stand as whole lines, once."""
    where = f" in {name}" if name else ""
    buf = [_b(x) for x in lines]
    if span is not None and span.kind == "block":
        texts = [_b(t) for t in selection.split("\n")]
        if len(texts) == len(span.rows):
            return _locate_block(buf, texts, span, where)
        span = None
    if span is None:
        return _locate_range(buf, _b(selection), Span("range"), where, legacy=True)
    return _locate_range(buf, _b(selection), span, where, legacy=False)


def _fmt_rows(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r + 1) for r in rows[:5])
    return shown + (", ..." if len(rows) > 5 else "")


def _locate_range(buf: list[bytes], sel: bytes, span: Span, where: str, *, legacy: bool) -> Found:
    parts = sel.split(b"\n")
    head, tail = _b(span.head), _b(span.tail)
    sc, n = span.start[1], len(parts)
    if len(head) > sc:  # a head longer than where the selection began: not ours to trust
        head = head[len(head) - sc :]

    def at(r: int) -> tuple[int, int, int, int] | None:
        if r < 0 or r + n > len(buf):
            return None
        first = buf[r]
        if len(first) < sc or first[sc - len(head) : sc] != head:
            return None
        if n == 1:
            end = sc + len(parts[0])
            if first[sc:end] != parts[0]:
                return None
        else:
            if first[sc:] != parts[0] or buf[r + 1 : r + n - 1] != parts[1:-1]:
                return None
            end = len(parts[-1])
            if buf[r + n - 1][:end] != parts[-1]:
                return None
        rest = buf[r + n - 1][end:]
        if len(rest) != span.tail_bytes or not rest.startswith(tail):
            return None
        return (r, sc, r + n - 1, end)

    here = at(span.start[0])
    if here is not None:
        return Found(range=here)
    places = []
    for r in range(len(buf) - n + 1):
        p = at(r)
        if p is not None:
            places.append(p)
            if len(places) > MAX_PLACES:
                break
    if len(places) == 1:
        return Found(range=places[0])
    what = "the code it was asked about"
    if not places:
        if legacy:
            raise ApplyError(f"{what} no longer stands{where} as whole lines")
        raise ApplyError(
            f"{what} is no longer at line {span.start[0] + 1}{where} (with the rest of its"
            " lines as they were), nor anywhere else there"
        )
    raise ApplyError(
        f"{what} stands{where} more than once (lines {_fmt_rows([p[0] for p in places])}):"
        " apply from the debug view while the buffer is open, or by hand"
    )


def _locate_block(buf: list[bytes], texts: list[bytes], span: Span, where: str) -> Found:
    rows = span.rows

    def at(dr: int, dc: int) -> tuple[tuple[int, int, int], ...] | None:
        out = []
        for (row, s, e), text in zip(rows, texts, strict=True):
            r, s2, e2 = row + dr, s + dc, e + dc
            if r < 0 or r >= len(buf) or s2 < 0 or e2 > len(buf[r]):
                return None
            if buf[r][s2:e2] != text or e2 - s2 != len(text):
                return None
            out.append((r, s2, e2))
        return tuple(out)

    here = at(0, 0)
    if here is not None:
        return Found(rows=here)
    # anchor on the block's first non-empty row: each place it stands is a candidate
    anchor = next((i for i, t in enumerate(texts) if t), None)
    places: list[tuple[tuple[int, int, int], ...]] = []
    checks = 0
    if anchor is not None:
        arow, acol, _ = rows[anchor]
        text = texts[anchor]
        for r, line in enumerate(buf):
            c = line.find(text)
            while c >= 0 and len(places) <= MAX_PLACES:
                checks += 1
                if checks > MAX_CHECKS:
                    raise ApplyError(
                        f"the block it was asked about is no longer at lines {rows[0][0] + 1}-"
                        f"{rows[-1][0] + 1}{where}, and its text stands in too many places"
                        " to search"
                    )
                p = at(r - arow, c - acol)
                if p is not None and p not in places:
                    places.append(p)
                c = line.find(text, c + 1)
    if len(places) == 1:
        return Found(rows=places[0])
    what = "the block it was asked about"
    if not places:
        raise ApplyError(
            f"{what} is no longer at lines {rows[0][0] + 1}-{rows[-1][0] + 1}{where} (the same"
            " columns of each line), nor anywhere else there"
        )
    raise ApplyError(
        f"{what} stands{where} more than once (from lines "
        f"{_fmt_rows([p[0][0] for p in places])}): apply from the debug view while the"
        " buffer is open, or by hand"
    )


def locate_answer(
    lines: Sequence[str], selection: str, code: str, span: Span | None, *, name: str = ""
) -> Found:
    """`locate` for :KznApply: when the selection is nowhere but the answer stands
    where it was (whole lines, as the selection would), it was applied already."""
    try:
        return locate(lines, selection, span, name=name)
    except ApplyError as exc:
        if (span is not None and span.kind == "block") or code == selection or not code:
            raise
        try:
            found = locate(lines, code, span, name=name)
        except ApplyError:
            raise exc from None
        assert found.range is not None
        raise ApplyError(
            f"is already applied: the answer stands at line {found.range[0] + 1}"
            f"{' of ' + name if name else ''} (u takes it back)",
            "INFO",
        ) from None


def locate_call(p: Mapping[str, Any]) -> Found:
    """`locate_answer` for the editor's `apply_locate` call, its loose table read here:
    the buffer's `lines`, the entry's `selection`, the answer's `text`, the recorded
    `span` and the buffer's `name`."""
    lines = [x if isinstance(x, str) else "" for x in p.get("lines") or ()]
    return locate_answer(
        lines,
        str(p.get("selection") or ""),
        str(p.get("text") or ""),
        Span.from_json(str(p.get("span") or "")),
        name=str(p.get("name") or ""),
    )
