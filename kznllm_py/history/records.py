"""What the history holds: one entry per interaction, as its writer starts it
(`NewEntry`), as a list shows it (`EntrySummary`) and whole (`Entry`); the columns a
read selects. Plain data, no SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kznllm_py.errors import HistoryError

MODES = ("replace", "yap", "debug", "chat", "rerun", "send")
STATUSES = ("ok", "error", "cancelled", "running", "rejected")
# set after the request ended: a reviewed answer the user rejected as a whole
REVIEW_STATUSES = ("rejected",)
FINAL_STATUSES = ("ok", "error", "cancelled")
SUMMARY_QUERY_CHARS = 200
# what a user reads for each mode ('yap' is the code's word for an answer at the cursor)
MODE_NAMES = {"replace": "replace", "yap": "insert", "debug": "debug", "chat": "chat"}
MODE_NAMES["rerun"] = "re-run"
MODE_NAMES["send"] = "edited"  # :KznSend: the debug view's request as the user edited it


def mode_name(mode: str) -> str:
    """The user-facing name of a stored `mode` (an unknown one as it is)."""
    return MODE_NAMES.get(mode, mode)


def shown_title(mode: str, title: str) -> str:
    """An entry's title as a list shows it: a :KznSend one says it was edited."""
    return f"edited request: {title}" if mode == "send" else title


@dataclass(frozen=True, slots=True)
class NewEntry:
    """What is known when a request starts. Text must come already redacted."""

    mode: str  # one of MODES
    query: str = ""
    preset_id: str = ""
    provider: str = ""
    model: str = ""
    path: str = ""  # the buffer's file
    filetype: str = ""
    selection: str = ""
    request: str = ""  # the rendered request (URL, headers redacted, body)
    parent_id: int | None = None  # the entry this one follows up
    started_at: float | None = None  # epoch seconds; None: now
    span: str = ""  # where a replace's selection stood (apply.Span as JSON), else ""


@dataclass(frozen=True, slots=True)
class EntrySummary:
    """A row as a list shows it: no large text; `query` is cut to SUMMARY_QUERY_CHARS."""

    id: int
    started_at: float  # epoch seconds
    finished_at: float | None
    preset_id: str
    provider: str
    model: str
    mode: str
    status: str  # one of STATUSES
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    first_token_ms: int | None
    duration_ms: int | None
    path: str
    parent_id: int | None
    query: str
    # what it cost (None: no price known) and the tokens within input / output counted
    # apart (schema version 3; keyword-only, so that Entry's fields can follow)
    cost_usd: float | None = field(default=None, kw_only=True)
    cached_input_tokens: int | None = field(default=None, kw_only=True)
    reasoning_tokens: int | None = field(default=None, kw_only=True)

    @property
    def unfinished(self) -> bool:
        """Still streaming, or cut short by a crash before `finish()`."""
        return self.status == "running"

    @property
    def title(self) -> str:
        """The query's first non-blank line."""
        return next((line.strip() for line in self.query.splitlines() if line.strip()), "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unfinished": self.unfinished}


@dataclass(frozen=True, slots=True)
class Entry(EntrySummary):
    """A whole row; here `query` is complete."""

    filetype: str
    selection: str
    request: str
    reasoning: str
    response: str
    # the provider-neutral prompt as JSON {"system": str, "messages": [{role, content}]}:
    # what a follow-up continues and a re-run sends again ("" before schema version 2)
    prompt: str = ""
    # the price the cost was counted at, JSON {input, cached_input, output} in US$ per
    # million tokens ("" when none was known)
    price: str = field(default="", kw_only=True)
    # where a replace's selection stood, as JSON (apply.Span; "" before schema version 4)
    span: str = field(default="", kw_only=True)


SUMMARY_COLUMNS = (
    "id, started_at, finished_at, preset_id, provider, model, mode, status, error, "
    "input_tokens, output_tokens, first_token_ms, duration_ms, path, parent_id"
)
COST_COLUMNS = "cost_usd, cached_input_tokens, reasoning_tokens"
SUMMARY_SELECT = f"{SUMMARY_COLUMNS}, substr(query, 1, {SUMMARY_QUERY_CHARS}), {COST_COLUMNS}"
ENTRY_SELECT = (
    f"{SUMMARY_COLUMNS}, query, filetype, selection, request, reasoning, response, prompt, "
    f"{COST_COLUMNS}, price, span"
)
NEWEST_FIRST = "ORDER BY started_at DESC, id DESC"


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise HistoryError(f"unknown history {what} {value!r} (want one of {', '.join(choices)})")


def summary_of(row: Sequence[Any]) -> EntrySummary:
    cost, cached, reasoning = row[-3:]
    return EntrySummary(
        *row[:-3], cost_usd=cost, cached_input_tokens=cached, reasoning_tokens=reasoning
    )


def entry_of(row: Sequence[Any]) -> Entry:
    cost, cached, reasoning, price, span = row[-5:]
    return Entry(
        *row[:-5],
        cost_usd=cost,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
        price=price,
        span=span,
    )
