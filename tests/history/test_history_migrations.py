"""The history schema's migrations (kznllm_py/history/migrations.py): what they add up
to, that each runs on a database the ones before it made (with rows in it, which
survive), that a store opened on any older version brings it up to date, and that a
released migration is never edited."""

from __future__ import annotations

import hashlib
import inspect
import sqlite3
from pathlib import Path

import pytest

from kznllm_py.history import HistoryStore, NewEntry, default_path
from kznllm_py.history import migrations as m

# name -> sha256 (first 16 hex digits) of its source, for every released migration. A
# user's database already ran these: a change is a new migration, never an edit here.
RELEASED = {
    "_m001_initial": "6d1067db74757bab",
    "_m002_prompt": "9c6eac9423b21085",
    "_m003_cost": "4849e05dc8584434",
    "_m004_span": "c5c2a3f247a2aad3",
}

COLUMNS = [  # (name, type, not null, default, primary key)
    ("id", "INTEGER", 0, None, 1),
    ("started_at", "REAL", 1, None, 0),
    ("finished_at", "REAL", 0, None, 0),
    ("status", "TEXT", 1, "'running'", 0),
    ("preset_id", "TEXT", 1, "''", 0),
    ("provider", "TEXT", 1, "''", 0),
    ("model", "TEXT", 1, "''", 0),
    ("mode", "TEXT", 1, None, 0),
    ("parent_id", "INTEGER", 0, None, 0),
    ("input_tokens", "INTEGER", 0, None, 0),
    ("output_tokens", "INTEGER", 0, None, 0),
    ("first_token_ms", "INTEGER", 0, None, 0),
    ("duration_ms", "INTEGER", 0, None, 0),
    ("path", "TEXT", 1, "''", 0),
    ("filetype", "TEXT", 1, "''", 0),
    ("error", "TEXT", 0, None, 0),
    ("query", "TEXT", 1, "''", 0),
    ("selection", "TEXT", 1, "''", 0),
    ("request", "TEXT", 1, "''", 0),
    ("reasoning", "TEXT", 1, "''", 0),
    ("response", "TEXT", 1, "''", 0),
    ("prompt", "TEXT", 1, "''", 0),
    ("cost_usd", "REAL", 0, None, 0),
    ("cached_input_tokens", "INTEGER", 0, None, 0),
    ("reasoning_tokens", "INTEGER", 0, None, 0),
    ("price", "TEXT", 1, "''", 0),
    ("span", "TEXT", 1, "''", 0),
]

INDEXES = {  # name -> [(column, descending)]
    "entries_by_parent": [("parent_id", 0)],
    "entries_by_preset": [("preset_id", 0), ("started_at", 1), ("id", 1)],
    "entries_by_status": [("status", 0), ("started_at", 1), ("id", 1)],
    "entries_by_time": [("started_at", 1), ("id", 1)],
}


def schema(db: sqlite3.Connection) -> dict[str, object]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    indexes = {}
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall():
        keys = db.execute(f"PRAGMA index_xinfo({name})").fetchall()
        indexes[name] = [(r[2], r[3]) for r in keys if r[5]]  # r[5]: a key column
    return {
        "tables": sorted(tables),
        "columns": [tuple(r[1:]) for r in db.execute("PRAGMA table_info(entries)")],
        "indexes": indexes,
        "foreign_keys": [
            (r[2], r[3], r[4], r[6]) for r in db.execute("PRAGMA foreign_key_list(entries)")
        ],
    }


def fresh(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, isolation_level=None)


def test_the_migrations_add_up_to_the_schema_the_store_reads() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    m.migrate(db, Path(":memory:"))
    assert m.user_version(db) == m.schema_version() == len(m.MIGRATIONS)
    assert schema(db) == {
        "tables": ["entries", "sqlite_sequence"],
        "columns": COLUMNS,
        "indexes": INDEXES,
        "foreign_keys": [("entries", "parent_id", "id", "SET NULL")],
    }


def test_each_migration_runs_on_the_database_the_ones_before_it_made(tmp_path: Path) -> None:
    db = fresh(tmp_path / "steps.sqlite3")
    for number, step in enumerate(m.MIGRATIONS, start=1):
        before = db.execute("SELECT * FROM entries").fetchall() if number > 1 else []
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
        # a row written at this version, as a store of this version would have
        db.execute(
            "INSERT INTO entries (started_at, mode, query, response, status)"
            " VALUES (?, 'yap', ?, 'answer', 'ok')",
            (float(number), f"asked at version {number}"),
        )
        rows = db.execute("SELECT * FROM entries").fetchall()
        # the rows of older versions are all there, their old columns unchanged
        assert [row[: len(old)] for row, old in zip(rows, before, strict=False)] == before
        assert len(rows) == len(before) + 1
    assert schema(db)["columns"] == COLUMNS


@pytest.mark.parametrize("version", range(1, len(m.MIGRATIONS)))
def test_a_store_opened_on_an_older_version_migrates_it_and_keeps_its_rows(
    tmp_path: Path, version: int
) -> None:
    path = default_path(tmp_path / "data")
    db = fresh(path)
    for step in m.MIGRATIONS[:version]:
        step(db)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute(
        "INSERT INTO entries (started_at, mode, query, response, status)"
        " VALUES (1.0, 'replace', 'old question', 'old answer', 'ok')"
    )
    db.close()
    store = HistoryStore(path)
    [old] = store.list()
    assert (old.query, old.mode, old.status) == ("old question", "replace", "ok")
    new_id = store.start(NewEntry(mode="yap", query="new question"))
    assert store.finish(new_id, "ok")
    check = sqlite3.connect(path)
    try:
        assert m.user_version(check) == m.schema_version()
        assert schema(check)["columns"] == COLUMNS
    finally:
        check.close()


def test_released_migrations_are_never_edited_and_new_ones_are_named_in_order() -> None:
    names = [step.__name__ for step in m.MIGRATIONS]
    assert names[: len(RELEASED)] == list(RELEASED), "a released migration was removed or moved"
    for i, name in enumerate(names, start=1):
        assert name.startswith(f"_m{i:03d}_"), name
    for step in m.MIGRATIONS[: len(RELEASED)]:
        digest = hashlib.sha256(inspect.getsource(step).encode()).hexdigest()[:16]
        assert digest == RELEASED[step.__name__], (
            f"{step.__name__} was edited: add a new migration instead"
        )
    # a new one (not yet in RELEASED) is fine: add its digest here when it ships
