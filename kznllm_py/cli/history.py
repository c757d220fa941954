"""The CLI's side of the history: `kznllm history` (a list, or one whole entry, as text
or JSON) and the recording of `kznllm fill` runs, in the same database the editor uses
(stdpath('data')/kznllm/history.sqlite3, computed as Neovim does) and through the same
recorder (kznllm_py/history/recorder.py): the entry is written before the request goes
out, the answer is saved as it streams, a run killed mid-answer leaves it 'running'
with what arrived."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from kznllm_py import history
from kznllm_py.cli import terminal
from kznllm_py.errors import KznError
from kznllm_py.fill.job import FillJob
from kznllm_py.fill.turn import new_entry
from kznllm_py.history import Entry, EntrySummary
from kznllm_py.history.recorder import HistoryRecorder, Recording
from kznllm_py.history.records import mode_name, shown_title
from kznllm_py.pricing import dollars


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _tokens(s: EntrySummary) -> str:
    if s.input_tokens is None and s.output_tokens is None:
        return "-"
    return f"{s.input_tokens if s.input_tokens is not None else '?'}/" + (
        f"{s.output_tokens if s.output_tokens is not None else '?'}"
    )


def _cost(s: EntrySummary) -> str:
    """What it cost ("-": no price was known)."""
    return "-" if s.cost_usd is None else dollars(s.cost_usd)


def _token_details(s: EntrySummary) -> str:
    parts = []
    if s.cached_input_tokens:
        parts.append(f"{s.cached_input_tokens} cached")
    if s.reasoning_tokens:
        parts.append(f"{s.reasoning_tokens} reasoning")
    return f"; {', '.join(parts)}" if parts else ""


def _price(e: Entry) -> str:
    """The price the cost was counted at, as stored with the entry."""
    try:
        p = json.loads(e.price)
        return f" at ${p['input']:g} in, ${p['cached_input']:g} cached, ${p['output']:g} out per M"
    except (ValueError, TypeError, KeyError):
        return ""


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}s"


def format_summary(s: EntrySummary) -> str:
    """One line: id, time, preset, mode, status, tokens in/out, cost, duration, query."""
    return (
        f"{s.id:>5}  {_when(s.started_at)}  {s.preset_id or '-':<18} {mode_name(s.mode):<7} "
        f"{s.status:<9} {_tokens(s):>11} {_cost(s):>8} {_seconds(s.duration_ms):>7}  "
        f"{shown_title(s.mode, s.title)}"
    )


def format_entry(e: Entry) -> str:
    """The whole entry, as `kznllm history show` prints it."""
    model = " ".join(part for part in (e.provider, e.model) if part) or "-"
    status = e.status + (f": {e.error}" if e.error else "")
    if e.unfinished:
        status += " (unfinished)"
    head = [
        f"id:          {e.id}" + (f" (follows {e.parent_id})" if e.parent_id else ""),
        f"started:     {_when(e.started_at)}",
        f"preset:      {e.preset_id or '-'} ({model})",
        f"mode:        {mode_name(e.mode)}",
        f"buffer:      {e.path or '-'} ({e.filetype or 'no filetype'})",
        f"status:      {status}",
        f"tokens:      {_tokens(e)} (in/out{_token_details(e)})",
        f"cost:        {_cost(e)}{_price(e) if e.cost_usd is not None else ' (no known price)'}",
        f"first token: {'-' if e.first_token_ms is None else f'{e.first_token_ms} ms'}",
        f"duration:    {_seconds(e.duration_ms)}",
    ]
    parts = ["\n".join(head)]
    for name, text in (
        ("query", e.query),
        ("selection", e.selection),
        ("request", e.request),
        ("reasoning", e.reasoning),
        ("response", e.response),
    ):
        if text or name == "response":
            parts.append(f"--- {name} ---\n{text.rstrip(chr(10))}")
    return "\n\n".join(parts) + "\n"


def _reader(db: Path) -> history.HistoryStore:
    """The database opened read-only (it works on a read-only folder, and reading changes
    nothing); one from an older kznllm is first brought up to date, as the editor's next
    fill would, where it can be written (else it is read as it is)."""
    store = history.HistoryStore(db, read_only=True)
    if store.behind():
        with contextlib.suppress(KznError):
            return history.HistoryStore(db)
    return store


def show(args: argparse.Namespace, err: Callable[[str], None]) -> int:
    """`kznllm history [show ID]`: reading creates nothing (no database: no entries)."""
    db = args.db or history.default_path(history.nvim_data_dir())
    try:
        store = _reader(db) if db.exists() else None
        if store is not None and store.notice is not None:
            err(f"{store.notice}")
        if getattr(args, "cost", False) and args.history_command != "show":
            return _spent(store, args.since, err)
        if args.history_command == "show":
            entry = store.get(args.id) if store else None
            if entry is None:
                err(f"no history entry {args.id} in {db}")
                return 1
            if args.json:
                text = json.dumps(entry.to_dict(), ensure_ascii=False, indent=2) + "\n"
                sys.stdout.write(text if args.raw else terminal.json_text(text))
            else:
                text = format_entry(entry)
                sys.stdout.write(text if args.raw else terminal.text(text))
            return 0
        rows = store.list(limit=args.n, preset=args.preset, status=args.status) if store else []
    except KznError as exc:
        err(f"{exc}")
        return 1
    if args.json:
        text = json.dumps([r.to_dict() for r in rows], ensure_ascii=False)
        print(text if args.raw else terminal.json_text(text))
    for line in [] if args.json else map(format_summary, rows):
        print(line if args.raw else terminal.line(line))
    return 0


def _spent(
    store: history.HistoryStore | None, since: str | None, err: Callable[[str], None]
) -> int:
    """`kznllm history --cost [--since DAY]`: the total as "$D.CC" on stdout."""
    start = None
    if since is not None:
        try:
            start = datetime.strptime(since, "%Y-%m-%d").timestamp()  # local midnight
        except ValueError:
            err(f"--since: want a day as YYYY-MM-DD, not {since!r}")
            return 2
    total, _priced, unpriced = store.spent(start) if store else (0.0, 0, 0)
    print(f"${total:.2f}")
    if unpriced:
        err(f"{unpriced} fill(s) with tokens but no known price are not counted")
    return 0


@contextmanager
def recording(
    job: FillJob, err: Callable[[str], None], *, enabled: bool, parent_id: int | None = None
) -> Iterator[Recording | None]:
    """Record a `kznllm fill` run as the editor records a fill: the caller passes the
    generation's events to `recorder.record`, the answer's text as it reached stdout.
    Leaving the block waits for every queued write (a few ms), so the entry is complete
    when the CLI exits. A history that cannot be written is said once on stderr and
    never fails the run."""
    if not enabled:
        yield None
        return
    # no retention limits: the CLI cannot know setup()'s `history.max_entries` and must
    # not prune what the editor keeps (the editor prunes at its next finished fill)
    path = history.default_path(history.nvim_data_dir())
    recorder = HistoryRecorder(path, err, max_entries=None, max_age_days=None)
    try:
        mode = "chat" if parent_id is not None else job.ctx.mode  # a follow-up (-c)
        yield recorder.begin(new_entry(job, mode=mode, parent_id=parent_id))
    finally:
        recorder.close()
