"""What the history sidebar and the entry view show, as lines and highlights. Pure: the
plugin reads the store and the context, this module lays them out, and the Lua side
only puts the lines in a buffer (and overlays the live status of running requests).

Highlights are `[line, start byte, end byte, group]`, 0-based, end-exclusive; folds
are `[first line, last line]`, 1-based inclusive (as `:fold` takes them).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kznllm_py.errors import ConfigError, printable
from kznllm_py.history.conversation import prompt_from_json
from kznllm_py.history.records import STATUSES, Entry, EntrySummary, mode_name, shown_title
from kznllm_py.pricing import dollars

PAGE = 200  # entries rendered per page; more load as the cursor nears the end

DEFAULT_KEYS: dict[str, str] = {
    "open": "<CR>",
    "rerun": "r",
    "yank": "y",
    "put": "p",
    "delete": "dd",
    "undo": "u",
    "filter": "f",
    "close": "q",
    "help": "?",
}
# the same words as :help kznllm-sidebar (tests/history/test_sidebar.py compares them)
KEY_HELP = {
    "open": "open the entry in a scratch buffer (follow up there with :KznFill)",
    "rerun": "re-run the prompt with the current preset, into a scratch buffer",
    "yank": 'yank the response ("ay into register a)',
    "put": "put the response in the previous window (lines: below the cursor's)",
    "delete": "delete the entry",
    "undo": "bring back the entry deleted last",
    "filter": "filter: words, preset:ID, status:ok|error|cancelled|rejected|unfinished",
    "close": "close the sidebar",
    "help": "toggle this help",
}

# the columns of an entry line; a running request's live status is drawn over
# STATUS..DURATION by the Lua side
# (compact, so that the query's first line shows in a sidebar of 80 columns: 53 before it;
# tokens are the answer's, the entry view has both counts)
TIME_W, PRESET_W, MODE_W, STATUS_W, TOKENS_W, DURATION_W = 5, 13, 7, 10, 6, 5
LIVE_WIDTH = STATUS_W + 1 + TOKENS_W + 1 + DURATION_W
# a narrow sidebar keeps the time and the status, then the query (17 columns before it;
# a row streaming now leaves room for its live status: spinner, seconds, tokens)
COMPACT_LIVE_WIDTH = STATUS_W + 1 + TOKENS_W
# below this many columns the sidebar drops the preset, mode and duration columns
COMPACT_BELOW = 64

STATUS_GROUPS = {
    "ok": "KznllmHistoryOk",
    "error": "KznllmHistoryError",
    "cancelled": "KznllmHistoryCancelled",
    "rejected": "KznllmHistoryRejected",
    "unfinished": "KznllmHistoryUnfinished",
    "running": "KznllmHistoryRunning",
}


@dataclass(frozen=True)
class Filter:
    text: str = ""
    preset: str = ""
    status: str = ""  # as the store has it ('running' also finds unfinished entries)
    status_word: str = ""  # as the user typed it

    @property
    def active(self) -> bool:
        return bool(self.text or self.preset or self.status)

    def describe(self) -> str:
        parts = [self.text] if self.text else []
        parts += [f"preset:{self.preset}"] if self.preset else []
        parts += [f"status:{self.status_word or self.status}"] if self.status else []
        return " ".join(parts)


def parse_filter(text: str) -> Filter:
    """`preset:ID` and `status:S` words pick exactly; the other words are searched for
    (as one phrase) in queries and responses. An unknown status is an error."""
    words, preset, status, typed = [], "", "", ""
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key == "preset" and value:
            preset = value
        elif sep and key == "status" and value:
            typed = value
            status = "running" if value == "unfinished" else value
            if status not in STATUSES:
                raise ConfigError(
                    f"unknown status {value!r} (want one of {', '.join(STATUSES)}, unfinished)"
                )
        else:
            words.append(word)
    return Filter(" ".join(words), preset, status, typed)


@dataclass(frozen=True)
class KznFiles:
    """What the next request would send from the project's `.kzn` folder."""

    directory: str
    files: Sequence[tuple[str, int]] = ()  # (path, estimated tokens)
    skipped: Sequence[tuple[str, str]] = ()  # (path, reason)
    budget: int = 0
    error: str = ""


@dataclass(frozen=True)
class ContextInfo:
    preset_id: str = ""
    provider: str = ""
    model: str = ""
    key: str = ""  # where the key comes from (never the key)
    key_present: bool | None = None  # None: the preset needs none
    buffer_path: str = ""
    filetype: str = ""
    kzn: KznFiles | None = None
    error: str = ""  # the presets could not be read


@dataclass
class _Out:
    lines: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # entry id per line, 0 for none
    hl: list[list[Any]] = field(default_factory=list)
    live: list[dict[str, int]] = field(default_factory=list)

    def add(self, text: str, group: str = "", entry: int = 0) -> int:
        line = len(self.lines)
        self.lines.append(text)
        self.rows.append(entry)
        if group and text:
            self.hl.append([line, 0, len(text.encode()), group])
        return line

    def mark(self, line: int, start: int, end: int, group: str) -> None:
        self.hl.append([line, start, end, group])


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(epoch: float, now: float) -> str:
    """HH:MM today, MM-DD before (the entry view has the whole time)."""
    t = datetime.fromtimestamp(epoch)
    if t.date() == datetime.fromtimestamp(now).date():
        return t.strftime("%H:%M")
    return t.strftime("%m-%d")


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _tokens(s: EntrySummary) -> str:
    """Tokens in/out, as the entry view shows them."""
    if s.input_tokens is None and s.output_tokens is None:
        return "-"
    return f"{_count(s.input_tokens)}/{_count(s.output_tokens)}"


def _answer_tokens(s: EntrySummary) -> str:
    return "-" if s.output_tokens is None else _count(s.output_tokens)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 10_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms // 1000}s" if ms < 600_000 else f"{ms // 60_000}m"


def status_word(s: EntrySummary, live: bool) -> str:
    if s.status == "running":
        return "running" if live else "unfinished"
    return s.status


def entry_line(
    s: EntrySummary, *, now: float, live: bool = False, compact: bool = False
) -> tuple[str, int, str]:
    """One entry as a line; also the byte column where the status starts, and the
    status word (a 'running' entry that no request of this editor owns is
    'unfinished': cut short by a crash, or streaming in another Neovim). `compact`
    (a narrow sidebar) keeps the time, status, tokens and query; the entry view has
    the rest."""
    status = status_word(s, live)
    head = f"{_when(s.started_at, now):<{TIME_W}} "
    title = _fit(shown_title(s.mode, s.title), 200)
    if compact:  # the query gets the room: tokens only when known, no empty column
        tokens = _answer_tokens(s)
        tail = f"{status:<{STATUS_W}} " + ("" if tokens == "-" else f"{tokens} ")
        if live:
            tail = f"{tail:<{COMPACT_LIVE_WIDTH + 1}}"
        return head + tail + title, len(head.encode()), status
    head += f"{_fit(s.preset_id or '-', PRESET_W):<{PRESET_W}} {mode_name(s.mode):<{MODE_W}} "
    tail = f"{status:<{STATUS_W}} {_answer_tokens(s):>{TOKENS_W}} "
    tail += f"{_duration(s.duration_ms):>{DURATION_W}} "
    return head + tail + f" {title}", len(head.encode()), status


def help_line(keys: Mapping[str, str], compact: bool = False) -> str:
    names: tuple[str, ...] = ("open", "rerun", "yank", "put", "delete", "undo", "filter")
    names = ("open", "filter", "help") if compact else (*names, "close", "help")
    short = {"open": "open", "rerun": "re-run", "help": "help", "undo": "undelete"}
    shown = [(keys.get(n, DEFAULT_KEYS[n]), n) for n in names]
    return "  ".join(f"{lhs} {short.get(n, n)}" for lhs, n in shown if lhs)


KZN_LISTED = 10  # `.kzn` files the context panel names, of those sent and of those left out


def _context_lines(out: _Out, ctx: ContextInfo, compact: bool = False) -> None:
    out.add("Context", "KznllmHistoryTitle")
    if ctx.error:
        out.add(f"  preset  {ctx.error}", "KznllmHistoryError")
    else:
        model = " ".join(p for p in (ctx.provider, ctx.model) if p)
        line = f"  preset  {ctx.preset_id} · {model}"
        if ctx.key_present is not None:
            key = f"{ctx.key} " + ("set" if ctx.key_present else "MISSING")
            if compact:  # a row of its own: a narrow sidebar (no 'wrap') would cut it off
                out.mark(out.add(line), 0, 9, "KznllmHistoryLabel")
                line = f"  key     {key}"
            else:
                line += f" · key {key}"
        n = out.add(line)
        out.mark(n, 0, 9, "KznllmHistoryLabel")
        if ctx.key_present is False:
            start = len(line.encode()) - len("MISSING")
            out.mark(n, start, len(line.encode()), "KznllmHistoryError")
    # names from outside (a buffer's, a cloned project's files) with their control
    # characters escaped: a line break in one is a line Neovim refuses to set
    buffer = printable(ctx.buffer_path) or "[No Name]"
    n = out.add(f"  buffer  {buffer}" + (f" ({ctx.filetype})" if ctx.filetype else ""))
    out.mark(n, 0, 9, "KznllmHistoryLabel")
    kzn = ctx.kzn
    if kzn is None:
        n = out.add("  .kzn    none (no .kzn folder here or above)")
        out.mark(n, 0, 9, "KznllmHistoryLabel")
        return
    if kzn.error:
        n = out.add(f"  .kzn    {printable(kzn.directory)}: {printable(kzn.error)}")
        out.mark(n, 0, 9, "KznllmHistoryLabel")
        return
    total = sum(t for _, t in kzn.files)
    n = out.add(
        f"  .kzn    {printable(kzn.directory)}: "
        f"{len(kzn.files)} file{'' if len(kzn.files) == 1 else 's'}, "
        f"~{total:,} of {kzn.budget:,} tokens"
    )
    out.mark(n, 0, 9, "KznllmHistoryLabel")
    # a few of each: a cloned `.kzn` of thousands of files must not bury the history
    for path, tokens in kzn.files[:KZN_LISTED]:
        out.add(f"          {printable(path)}  ~{tokens:,}")
    if len(kzn.files) > KZN_LISTED:
        more = len(kzn.files) - KZN_LISTED
        out.add(f"          … {more:,} more file{'' if more == 1 else 's'} (:KznDebug lists them)")
    for path, reason in kzn.skipped[:KZN_LISTED]:
        out.add(f"          {printable(path)}  skipped: {printable(reason)}", "KznllmHistoryDim")
    if len(kzn.skipped) > KZN_LISTED:
        more = len(kzn.skipped) - KZN_LISTED
        out.add(f"          … {more:,} more skipped (:KznDebug says why)", "KznllmHistoryDim")


def render(
    entries: Sequence[EntrySummary],
    *,
    total: int,
    offset: int,
    now: float,
    live: Mapping[int, int],
    context: ContextInfo | None = None,
    flt: Filter = Filter(),
    keys: Mapping[str, str] = DEFAULT_KEYS,
    show_help: bool = False,
    width: int = 80,
    spent_today: float | None = None,
) -> dict[str, Any]:
    """The sidebar: with `context` (the first page), the help line, the context and the
    heading, then the entries; without it (a later page), the entries only. `live`
    maps the ids of entries that requests of this editor are streaming to their job id.
    `width` is the sidebar window's: narrow ones get compact entry lines.
    `spent_today`: what today's fills cost (US$), said in the heading when known."""
    out = _Out()
    compact = width < COMPACT_BELOW
    if context is not None:
        out.add(help_line(keys, compact), "KznllmHistoryDim")
        if show_help:
            for name, text in KEY_HELP.items():
                if lhs := keys.get(name, DEFAULT_KEYS[name]):  # "": turned off
                    # wrapped to the width: a narrow sidebar (no 'wrap') cuts nothing
                    parts = textwrap.wrap(text, max(20, width - 10)) if compact else [text]
                    out.add(f"  {lhs:<6} {parts[0]}", "KznllmHistoryDim")
                    for rest in parts[1:]:
                        out.add(f"  {'':<6} {rest}", "KznllmHistoryDim")
            clear = ("  :KznHistory clear", "delete every entry (asks first)")
            if compact:  # wrapped as the keys' lines are
                out.add(clear[0], "KznllmHistoryDim")
                for part in textwrap.wrap(clear[1], max(20, width - 10)):
                    out.add(f"  {'':<6} {part}", "KznllmHistoryDim")
            else:
                out.add(f"{clear[0]}   {clear[1]}", "KznllmHistoryDim")
        out.add("")
        _context_lines(out, context, compact)
        out.add("")
        heading = f"History ({total:,} entr{'y' if total == 1 else 'ies'}"
        if spent_today:
            heading += f", ${spent_today:.2f} today"
        heading += f", filter: {flt.describe()})" if flt.active else ")"
        out.add(heading, "KznllmHistoryTitle")
        if total == 0:
            out.add("  nothing yet" if not flt.active else "  nothing matches", "KznllmHistoryDim")
    for s in entries:
        job = live.get(s.id) if s.status == "running" else None
        text, col, status = entry_line(s, now=now, live=job is not None, compact=compact)
        n = out.add(text, entry=s.id)
        out.mark(n, 0, TIME_W, "KznllmHistoryDim")
        out.mark(n, col, col + len(status), STATUS_GROUPS.get(status, ""))
        if job is not None:
            out.live.append({"line": n, "col": col, "job": job, "entry": s.id})
    shown = offset + len(entries)
    more = shown < total
    if more:
        out.add(f"… {total - shown:,} more (move down to load them)", "KznllmHistoryDim")
    return {
        "lines": out.lines,
        "rows": out.rows,
        "hl": [h for h in out.hl if h[3]],
        "live": out.live,
        "live_width": COMPACT_LIVE_WIDTH if compact else LIVE_WIDTH,
        "offset": offset,
        "next_offset": shown,
        "more": more,
        "total": total,
        "first_page": context is not None,
    }


# -- the entry view ---------------------------------------------------------------------


def _fence(text: str, filetype: str) -> list[str]:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    ticks = "`" * (longest + 1)
    return [f"{ticks}{printable(filetype)}", *text.split("\n"), ticks]


def _pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _meta(e: Entry) -> str:
    model = " ".join(p for p in (e.provider, e.model) if p)
    status = status_word(e, live=False) + (f": {e.error}" if e.error else "")
    parts = [datetime.fromtimestamp(e.started_at).strftime("%Y-%m-%d %H:%M:%S")]
    parts += [
        f"{e.preset_id or '-'} ({model})" if model else e.preset_id or "-",
        mode_name(e.mode),
        status,
    ]
    if e.duration_ms is not None:
        parts.append(_duration(e.duration_ms))
    if e.first_token_ms is not None:
        parts.append(f"first token {e.first_token_ms} ms")
    if e.input_tokens is not None or e.output_tokens is not None:
        parts.append(f"{_tokens(e)} tokens in/out")
    if e.cost_usd is not None:  # at the price stored with the entry
        parts.append(dollars(e.cost_usd))
    # a field that heads a line (a path, a model, an error) is shown escaped: one line
    return printable(" · ".join(parts))


def entry_view(chain: Sequence[Entry]) -> dict[str, Any]:
    """A conversation (the entry and the turns before it, oldest first) as markdown:
    the first turn with its selection, the request and reasoning (folded), then each
    follow-up. `:KznFill` in that buffer continues from the last entry."""
    lines: list[str] = []
    folds: list[list[int]] = []

    def section(title: str, body: list[str], folded: bool = False) -> None:
        lines.extend(["", f"## {title}", ""])
        start = len(lines) + 1
        lines.extend(body)
        if folded and body:
            folds.append([start - 2, len(lines)])

    for i, e in enumerate(chain):
        if i == 0:
            lines.append(f"# kznllm #{e.id}" + (f" · {printable(e.path)}" if e.path else ""))
        else:
            lines.extend(["", f"# Follow-up #{e.id}"])
        lines.append(_meta(e))
        section("Query" if i == 0 else "You", e.query.split("\n"))
        if e.selection:
            section("Selection", _fence(e.selection, e.filetype))
        if i == 0 and e.request:
            section("Request", _fence(_pretty_json(e.request), "json"), folded=True)
        elif i > 0 and (prompt := prompt_from_json(e.prompt)) is not None and prompt.system:
            section("System", prompt.system.split("\n"), folded=True)
        if e.reasoning:
            section("Reasoning", e.reasoning.split("\n"), folded=True)
        answer = e.response.split("\n") if e.response else []
        if e.status == "running":
            answer.append("[unfinished: the request never ended]")
        elif e.status != "ok" and e.error:
            answer.append(f"[{e.status}: {printable(e.error)}]")
        elif e.status == "cancelled":
            answer.append("[cancelled]")
        section(f"Answer ({printable(e.preset_id or '-')})", answer)
    return {"lines": lines, "folds": folds, "entry": chain[-1].id if chain else 0}
