"""A fill as the editor asks for it: one frozen, typed `FillRequest`, parsed once from
the table the Lua shim sends (`parse`), so that nothing past the Neovim edge reads the
raw dict. Loose fields fall back to their defaults (kznllm_py/options.py). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kznllm_py import options
from kznllm_py.apply import Span, span_of

if TYPE_CHECKING:
    from kznllm_py.prompt.sources.gathered import Gathered

PLACEMENTS = ("auto", "cursor", "below", "above")


def _gathered() -> Any:
    """The context sources' typing (kznllm_py/prompt/sources/gathered.py), imported at
    the first fill: a host started by the sidebar does not pay its ~20 ms."""
    from kznllm_py.prompt.sources import gathered

    return gathered


@dataclass(frozen=True, slots=True)
class Spot:
    """The cursor line around the point where a normal-mode answer is written: its text
    before and after that point, and whether the line is blank."""

    head: str
    rest: str
    blank: bool = False


@dataclass(frozen=True, slots=True)
class FillRequest:
    id: int = 0  # the editor's job id
    bufnr: int = 0  # the buffer the answer goes to
    mode: str = "yap"  # 'replace' (a selection) or 'yap'
    query: str = ""
    selection: str = ""
    filetype: str = ""
    path: str = ""
    before: str = ""
    after: str = ""
    cursor: tuple[int, int] | None = None
    cwd: str = ""
    preset: str | None = None  # None: the default preset
    debug: bool = False  # :KznDebug: the request first, in a scratch buffer
    linewise: bool = False  # the answer replaces whole lines
    crlf: bool = False  # the target buffer's 'fileformat' is dos
    # the target buffer, for shaping the answer (kznllm_py/fill/shape.py)
    commentstring: str = ""
    buftype: str = ""
    expandtab: bool = True
    shiftwidth: int = 4
    send: str | None = None  # :KznSend: the debug view as edited
    followup: int = 0  # the history entry a follow-up continues (0: none)
    rerun: int = 0  # the history entry re-asked (0: none)
    placement: str | None = None  # a normal-mode answer's place (PLACEMENTS), else None
    spot: Spot | None = None
    span: Span | None = None  # where a replace's selection stood (:KznApply)
    # what the editor gathered for the context (diagnostics, scope, ...): lua/kznllm/context/
    gathered: Gathered = field(default_factory=lambda: _gathered().Gathered())


def placement(asked: str | None, fim: bool) -> str | None:
    """Where a normal-mode answer goes, as the editor writes it: 'cursor', 'line' (on
    the cursor's line when blank, else below it), 'below' or 'above'. 'auto' writes a
    fill-in-the-middle preset's answer at the cursor. None: not a normal-mode fill."""
    if asked not in PLACEMENTS:
        return None
    if asked == "auto":
        return "cursor" if fim else "line"
    return str(asked)


def _spot(raw: Any) -> Spot | None:
    if not isinstance(raw, Mapping):
        return None
    head, rest = raw.get("head"), raw.get("rest")
    if not isinstance(head, str) or not isinstance(rest, str):
        return None
    return Spot(head, rest, bool(raw.get("blank")))


def parse(p: Mapping[str, Any]) -> FillRequest:
    """The request of a `fill` call (or of a call that reads a fill's fields, as
    `:KznTrust` does): every key the editor sends, typed once."""
    cursor = p.get("cursor")
    selection, before, after = (
        options.text(p, "selection"),
        options.text(p, "before"),
        options.text(p, "after"),
    )
    where = p.get("placement")
    send = p.get("send")
    debug = options.flag(p, "debug")
    return FillRequest(
        id=options.whole(p, "id"),
        bufnr=options.whole(p, "bufnr"),
        mode=options.text(p, "mode") or "yap",
        query=options.text(p, "query"),
        selection=selection,
        filetype=options.text(p, "filetype"),
        path=options.text(p, "path"),
        before=before,
        after=after,
        cursor=(int(cursor[0]), int(cursor[1]))
        if isinstance(cursor, list | tuple) and len(cursor) == 2
        else None,
        cwd=options.text(p, "cwd"),
        preset=options.text(p, "preset") or None,
        debug=debug,
        linewise=options.flag(p, "linewise") and not debug,
        crlf=p.get("fileformat") == "dos" and not debug,
        commentstring=options.text(p, "commentstring"),
        buftype=options.text(p, "buftype"),
        expandtab=p.get("expandtab") is not False,
        shiftwidth=min(max(options.whole(p, "shiftwidth", 4), 1), 16),
        send=send if isinstance(send, str) else None,
        followup=options.whole(p, "followup"),
        rerun=options.whole(p, "rerun"),
        placement=where if where in PLACEMENTS else None,
        spot=_spot(p.get("spot")),
        span=span_of(p, selection, before, after),
        gathered=_gathered().parse(p.get("context")),
    )
