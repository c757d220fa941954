"""The history schema, as append-only forward migrations (the style of simonw/llm's
llm/migrations.py): each step is a named function added with `@migration`, run once, in
order, on a database the steps before it made. The database's PRAGMA user_version is the
number of steps it has run.

Never edit, reorder or remove a released step: a user's database already ran it. A change
is a new `_m00N_...` function at the end of this file (tests/history/test_history_migrations.py
asserts the schema they add up to, and runs every step on the one before).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from kznllm_py.errors import HistoryError

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append


@migration
def _m001_initial(db: sqlite3.Connection) -> None:
    # small columns first, the large and growing text last: a list reads no overflow page
    db.execute(
        """CREATE TABLE entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL DEFAULT 'running',
            preset_id TEXT NOT NULL DEFAULT '',
            provider TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            mode TEXT NOT NULL,
            parent_id INTEGER REFERENCES entries(id) ON DELETE SET NULL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            first_token_ms INTEGER,
            duration_ms INTEGER,
            path TEXT NOT NULL DEFAULT '',
            filetype TEXT NOT NULL DEFAULT '',
            error TEXT,
            query TEXT NOT NULL DEFAULT '',
            selection TEXT NOT NULL DEFAULT '',
            request TEXT NOT NULL DEFAULT '',
            reasoning TEXT NOT NULL DEFAULT '',
            response TEXT NOT NULL DEFAULT ''
        )"""
    )
    db.execute("CREATE INDEX entries_by_time ON entries (started_at DESC, id DESC)")
    db.execute("CREATE INDEX entries_by_preset ON entries (preset_id, started_at DESC, id DESC)")
    db.execute("CREATE INDEX entries_by_status ON entries (status, started_at DESC, id DESC)")
    db.execute("CREATE INDEX entries_by_parent ON entries (parent_id)")


@migration
def _m002_prompt(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE entries ADD COLUMN prompt TEXT NOT NULL DEFAULT ''")


@migration
def _m003_cost(db: sqlite3.Connection) -> None:
    # what a fill cost (US$) and the price it was counted at (JSON {input, cached_input,
    # output} per million tokens): a later change of prices never rewrites history
    db.execute("ALTER TABLE entries ADD COLUMN cost_usd REAL")
    db.execute("ALTER TABLE entries ADD COLUMN cached_input_tokens INTEGER")
    db.execute("ALTER TABLE entries ADD COLUMN reasoning_tokens INTEGER")
    db.execute("ALTER TABLE entries ADD COLUMN price TEXT NOT NULL DEFAULT ''")


@migration
def _m004_span(db: sqlite3.Connection) -> None:
    # where a replace's selection stood (kznllm_py/apply.py Span, as JSON): :KznApply
    # finds it again as whole lines, or as its block
    db.execute("ALTER TABLE entries ADD COLUMN span TEXT NOT NULL DEFAULT ''")


def schema_version() -> int:
    """The version a database has once every migration ran."""
    return len(MIGRATIONS)


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Run the steps `db` has not run yet, in one transaction; a database newer than
    this code is refused (HistoryError), never changed."""
    latest = schema_version()
    if user_version(db) == latest:
        return
    db.execute("BEGIN IMMEDIATE")  # another process may be migrating: read again, locked
    try:
        version = user_version(db)
        if version > latest:
            raise HistoryError(
                f"the history database {path} has schema version {version}, newer than this "
                f"kznllm knows ({latest}): update kznllm, or move the file away"
            )
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise
