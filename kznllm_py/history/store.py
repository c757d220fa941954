"""The history's rows: one SQLite row per interaction (stdlib sqlite3, no Neovim).

    store = HistoryStore(default_path(data_dir))   # data_dir: stdpath('data')
    entry_id = store.start(NewEntry(mode="yap", preset_id=..., query=..., request=...))
    store.append(entry_id, "streamed text", reasoning="")   # as often as wanted
    store.finish(entry_id, "ok", usage={"input_tokens": 12, "output_tokens": 40})

Every call is synchronous and runs in a transaction of its own on the database file
(history/database.py: connections, busy retries, a bad file moved aside, read-only
opening), so any thread may call any method (the plugin calls them through
`asyncio.to_thread`). A row is 'running' from `start()` until `finish()`: a crash or
`:qa!` mid-stream leaves the partial response saved by the last `append()`, still
'running' with no `finished_at` (`Entry.unfinished`). `finish()` applies the retention
limits (`prune`); `take()` and `restore()` undo a delete.

Text is redacted again as it is written (history/redaction.py); the rows' shapes come
from history/records.py.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from kznllm_py import secrets
from kznllm_py.history.database import Database
from kznllm_py.history.records import (
    ENTRY_SELECT,
    FINAL_STATUSES,
    MODES,
    NEWEST_FIRST,
    REVIEW_STATUSES,
    STATUSES,
    SUMMARY_SELECT,
    Entry,
    EntrySummary,
    NewEntry,
    check_choice,
    entry_of,
    summary_of,
)
from kznllm_py.history.redaction import REDACT_TAIL, redact_text_of, redacted_join

DEFAULT_MAX_ENTRIES = 10_000


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _where(text: str | None, preset: str | None, status: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if preset:
        clauses.append("preset_id = ?")
        params.append(preset)
    if status:
        check_choice("status", status, STATUSES)
        clauses.append("status = ?")
        params.append(status)
    if text:
        clauses.append("(query LIKE ? ESCAPE '\\' OR response LIKE ? ESCAPE '\\')")
        params += [_like(text), _like(text)]
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


# ---------------------------------------------------------------------------- the store


class HistoryStore(Database):
    """The history's entries, in the database at `path` (created with its directory
    when missing: history/database.py)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_entries: int | None = DEFAULT_MAX_ENTRIES,
        max_age_days: float | None = None,
        keep_open: bool = False,
        read_only: bool = False,
    ) -> None:
        self.max_entries = max_entries
        self.max_age_days = max_age_days
        super().__init__(path, keep_open=keep_open, read_only=read_only)

    # -- writing

    def start(self, entry: NewEntry) -> int:
        """Record a request that starts now; its id, status 'running'."""
        check_choice("mode", entry.mode, MODES)
        started = time.time() if entry.started_at is None else entry.started_at
        row = (
            started,
            entry.preset_id,
            entry.provider,
            entry.model,
            entry.mode,
            entry.parent_id,
            entry.path,
            entry.filetype,
            secrets.redact(entry.query),
            secrets.redact(entry.selection),
            secrets.redact(entry.request),
            entry.span,  # its texts come redacted (apply.span_of)
        )

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO entries (started_at, preset_id, provider, model, mode, parent_id,"
                " path, filetype, query, selection, request, span)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
            return int(cur.lastrowid or 0)

        return self._run("record the request", insert, write=True)

    def append(self, entry_id: int, text: str, reasoning: str = "") -> bool:
        """Add streamed text (the new part only) to a running entry; False when there is
        no running entry `entry_id` (finished, deleted)."""
        if not text and not reasoning:
            return True

        def update(db: sqlite3.Connection) -> bool:
            sql = (
                "SELECT substr(response, -?), substr(reasoning, -?) FROM entries"
                " WHERE id = ? AND status = 'running'"
            )
            tails = db.execute(sql, (REDACT_TAIL, REDACT_TAIL, entry_id)).fetchone()
            if tails is None:
                return False
            cut_text, new_text = redacted_join(tails[0], text)
            cut_reasoning, new_reasoning = redacted_join(tails[1], reasoning)
            db.execute(
                "UPDATE entries SET response = substr(response, 1, length(response) - ?) || ?,"
                " reasoning = substr(reasoning, 1, length(reasoning) - ?) || ? WHERE id = ?",
                (cut_text, new_text, cut_reasoning, new_reasoning, entry_id),
            )
            return True

        return self._run("save the answer", update, write=True)

    def finish(
        self,
        entry_id: int,
        status: str,
        error: str | None = None,
        usage: Mapping[str, int] | None = None,
        first_token_ms: int | None = None,
        duration_ms: int | None = None,
        cost_usd: float | None = None,
        price: str = "",
    ) -> bool:
        """Close an entry (ok / error / cancelled), then apply the retention limits.
        Without `duration_ms`, the time since `started_at`. False when there is no entry.
        `cost_usd` and `price` (JSON, the price it was counted at) are kept as they are:
        a later price change never rewrites them."""
        check_choice("status", status, FINAL_STATUSES)
        usage = usage or {}
        now = time.time()
        params = (
            status,
            None if error is None else secrets.redact(error),
            now,
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            first_token_ms,
            cost_usd,
            usage.get("cached_input_tokens"),
            usage.get("reasoning_tokens"),
            price,
            duration_ms,
            now,
            entry_id,
        )

        def close(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE entries SET status = ?, error = ?, finished_at = ?, input_tokens = ?,"
                " output_tokens = ?, first_token_ms = ?, cost_usd = ?, cached_input_tokens = ?,"
                " reasoning_tokens = ?, price = ?,"
                " duration_ms = coalesce(?, CAST(round((? - started_at) * 1000) AS INTEGER))"
                " WHERE id = ?",
                params,
            )
            if cur.rowcount:
                redact_text_of(db, entry_id)
            return cur.rowcount > 0

        done = self._run("save the outcome", close, write=True)
        self.prune(self.max_entries, self.max_age_days)
        return done

    def set_review_outcome(self, entry_id: int, status: str) -> bool:
        """A reviewed answer the user rejected as a whole (every hunk, or while it
        streamed): its entry says so instead of how the request ended. Only an entry
        that ended (a running one is left alone). False when there is none."""
        check_choice("status", status, REVIEW_STATUSES)

        def mark(db: sqlite3.Connection) -> bool:
            sql = "UPDATE entries SET status = ? WHERE id = ? AND status != 'running'"
            return db.execute(sql, (status, entry_id)).rowcount > 0

        return bool(self._run("save the review's outcome", mark, write=True))

    def set_request(self, entry_id: int, request: str) -> bool:
        """The rendered request, once it is built (after the entry was started)."""
        return self._set_text(entry_id, "request", request, "save the request")

    def set_prompt(self, entry_id: int, prompt: str) -> bool:
        """The provider-neutral prompt (JSON, see `Entry.prompt`) the request was built from."""
        return self._set_text(entry_id, "prompt", prompt, "save the prompt")

    def _set_text(self, entry_id: int, column: str, text: str, what: str) -> bool:
        assert column in ("request", "prompt")  # a column name, never user data
        value = secrets.redact(text).replace("\0", "\ufffd")

        def update(db: sqlite3.Connection) -> bool:
            cur = db.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (value, entry_id))
            return cur.rowcount > 0

        return self._run(what, update, write=True)

    def chain(self, entry_id: int, limit: int = 100) -> list[Entry]:
        """The entry and the ones it follows up (via parent_id), oldest first."""
        out: list[Entry] = []
        seen: set[int] = set()
        next_id: int | None = entry_id
        while next_id is not None and next_id not in seen and len(out) < limit:
            seen.add(next_id)
            entry = self.get(next_id)
            if entry is None:
                break
            out.append(entry)
            next_id = entry.parent_id
        return out[::-1]

    def delete(self, entry_id: int) -> bool:
        def remove(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM entries WHERE id = ?", (entry_id,)).rowcount > 0

        return self._run("delete the entry", remove, write=True)

    def take(self, entry_id: int) -> dict[str, Any] | None:
        """Delete the entry and return what `restore` needs to put it back as it was:
        the whole row, and the follow-ups that pointed at it (they keep their own
        rows; deleting only unlinks them)."""

        def remove(db: sqlite3.Connection) -> dict[str, Any] | None:
            cur = db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,))
            row = cur.fetchone()
            if row is None:
                return None
            names = [d[0] for d in cur.description]
            children = [
                r[0] for r in db.execute("SELECT id FROM entries WHERE parent_id = ?", (entry_id,))
            ]
            db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
            return {"row": dict(zip(names, row, strict=True)), "children": children}

        return self._run("delete the entry", remove, write=True)

    def restore(self, taken: Mapping[str, Any]) -> bool:
        """Put back an entry that `take` removed, with its id and its follow-ups' links;
        False if its id was taken again meanwhile."""
        row = dict(taken["row"])
        if row.get("parent_id") is not None:
            # the entry it followed may be gone since: keep the row, drop the link
            row["parent_id"] = row["parent_id"] if self.get(int(row["parent_id"])) else None

        def put(db: sqlite3.Connection) -> bool:
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            try:
                db.execute(f"INSERT INTO entries ({cols}) VALUES ({marks})", tuple(row.values()))
            except sqlite3.IntegrityError:
                return False
            for child in taken.get("children") or ():
                sql = "UPDATE entries SET parent_id = ? WHERE id = ? AND parent_id IS NULL"
                db.execute(sql, (row["id"], child))
            return True

        return self._run("restore the entry", put, write=True)

    def clear(self) -> int:
        """Delete every entry (zeroed on disk: secure_delete, WAL truncated); how many."""

        def remove(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM entries").rowcount

        removed = self._run("clear the history", remove, write=True)
        self.compact()
        return removed

    def prune(
        self, max_entries: int | None = DEFAULT_MAX_ENTRIES, max_age_days: float | None = None
    ) -> int:
        """Keep the newest `max_entries` and none older than `max_age_days`; how many went."""
        if max_entries is None and max_age_days is None:
            return 0

        def remove(db: sqlite3.Connection) -> int:
            removed = 0
            if max_age_days is not None:
                cutoff = time.time() - max_age_days * 86400
                sql = "DELETE FROM entries WHERE started_at < ?"
                removed += db.execute(sql, (cutoff,)).rowcount
            if max_entries is not None:
                sql = (
                    "DELETE FROM entries WHERE id IN (SELECT id FROM entries"
                    f" {NEWEST_FIRST} LIMIT -1 OFFSET ?)"
                )
                removed += db.execute(sql, (max(0, max_entries),)).rowcount
            return removed

        return self._run("prune the history", remove, write=True)

    # -- reading

    def get(self, entry_id: int) -> Entry | None:
        def read(db: sqlite3.Connection) -> Entry | None:
            sql = f"SELECT {ENTRY_SELECT} FROM entries WHERE id = ?"
            row = db.execute(sql, (entry_id,)).fetchone()
            return None if row is None else entry_of(row)

        return self._run("read the entry", read)

    def spent(self, since: float | None = None) -> tuple[float, int, int]:
        """(what the entries started since `since` (epoch seconds; None: ever) cost in
        US$, how many of them had a price, how many finished with tokens but none)."""

        def read(db: sqlite3.Connection) -> tuple[float, int, int]:
            row = db.execute(
                "SELECT coalesce(sum(cost_usd), 0), count(cost_usd),"
                " sum(cost_usd IS NULL AND output_tokens IS NOT NULL)"
                " FROM entries WHERE started_at >= ?",
                (since if since is not None else float("-inf"),),
            ).fetchone()
            return float(row[0]), int(row[1]), int(row[2] or 0)

        return self._run("read the costs", read)

    def list(
        self,
        limit: int = 50,
        offset: int = 0,
        text: str | None = None,
        preset: str | None = None,
        status: str | None = None,
    ) -> list[EntrySummary]:
        """Newest first; `text` is looked for (ASCII case-insensitively) in the query and
        the response, `preset` and `status` must match exactly."""
        where, params = _where(text, preset, status)
        sql = f"SELECT {SUMMARY_SELECT} FROM entries {where} {NEWEST_FIRST} LIMIT ? OFFSET ?"

        def read(db: sqlite3.Connection) -> list[EntrySummary]:
            rows = db.execute(sql, (*params, max(0, limit), max(0, offset))).fetchall()
            return [summary_of(row) for row in rows]

        return self._run("list the history", read)

    def count(
        self, text: str | None = None, preset: str | None = None, status: str | None = None
    ) -> int:
        where, params = _where(text, preset, status)

        def read(db: sqlite3.Connection) -> int:
            return int(db.execute(f"SELECT count(*) FROM entries {where}", params).fetchone()[0])

        return self._run("count the history", read)
