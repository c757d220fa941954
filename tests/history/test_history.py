"""The history store (SQLite): schema, round trips, retention, corruption, concurrency
across real processes, key redaction on disk, speed, and `kznllm history`."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py import history, secrets
from kznllm_py.errors import HistoryError, KznError
from kznllm_py.history import Entry, EntrySummary, HistoryStore, NewEntry
from kznllm_py.history import database as history_database

REPO = Path(__file__).resolve().parents[2]
CANARY = "sk-canary-7f3e9d1c2b4a"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return history.default_path(tmp_path / "data")


@pytest.fixture
def store(db_path: Path) -> HistoryStore:
    return HistoryStore(db_path)


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(secrets, "_known", set())
    secrets.remember(CANARY)
    return CANARY


def new(query: str = "explain this", **kw: object) -> NewEntry:
    fields: dict[str, object] = {
        "mode": "yap",
        "preset_id": "demo",
        "provider": "openai",
        "model": "m1",
        "query": query,
    }
    fields.update(kw)
    return NewEntry(**fields)  # type: ignore[arg-type]


def record(store: HistoryStore, query: str = "q", answer: str = "a", **kw: object) -> int:
    entry_id = store.start(new(query, **kw))
    store.append(entry_id, answer)
    store.finish(entry_id, "ok")
    return entry_id


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


# ---------------------------------------------------------------------------- schema


def test_schema_version_tables_columns_and_indexes(store: HistoryStore) -> None:
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION == 4
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [(r[1], r[2], r[3]) for r in db.execute("PRAGMA table_info(entries)")]
        indexes = {
            r[0]: r[1]
            for r in db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
        fks = [(r[2], r[3], r[4], r[6]) for r in db.execute("PRAGMA foreign_key_list(entries)")]
    finally:
        db.close()
    assert columns == [
        ("id", "INTEGER", 0),
        ("started_at", "REAL", 1),
        ("finished_at", "REAL", 0),
        ("status", "TEXT", 1),
        ("preset_id", "TEXT", 1),
        ("provider", "TEXT", 1),
        ("model", "TEXT", 1),
        ("mode", "TEXT", 1),
        ("parent_id", "INTEGER", 0),
        ("input_tokens", "INTEGER", 0),
        ("output_tokens", "INTEGER", 0),
        ("first_token_ms", "INTEGER", 0),
        ("duration_ms", "INTEGER", 0),
        ("path", "TEXT", 1),
        ("filetype", "TEXT", 1),
        ("error", "TEXT", 0),
        ("query", "TEXT", 1),
        ("selection", "TEXT", 1),
        ("request", "TEXT", 1),
        ("reasoning", "TEXT", 1),
        ("response", "TEXT", 1),
        ("prompt", "TEXT", 1),
        ("cost_usd", "REAL", 0),
        ("cached_input_tokens", "INTEGER", 0),
        ("reasoning_tokens", "INTEGER", 0),
        ("price", "TEXT", 1),
        ("span", "TEXT", 1),
    ]
    assert sorted(indexes) == [
        "entries_by_parent",
        "entries_by_preset",
        "entries_by_status",
        "entries_by_time",
    ]
    assert fks == [("entries", "parent_id", "id", "SET NULL")]


def test_migrations_are_idempotent_and_a_newer_schema_is_refused(db_path: Path) -> None:
    first = HistoryStore(db_path)
    entry_id = record(first)
    assert HistoryStore(db_path).get(entry_id) is not None  # reopening migrates nothing
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryError, match="newer than this kznllm knows"):
        HistoryStore(db_path)
    assert db_path.exists()  # a newer database is not "corrupt": it stays where it is


def test_a_version_1_database_gains_the_prompt_column_and_keeps_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db = sqlite3.connect(db_path)
    history.MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO entries (started_at, mode, query, response, status)"
        " VALUES (1.0, 'yap', 'old question', 'old answer', 'ok')"
    )
    db.commit()
    db.close()
    store = HistoryStore(db_path)
    [old] = store.list()
    entry = store.get(old.id)
    assert entry is not None
    assert (entry.query, entry.response, entry.prompt) == ("old question", "old answer", "")
    assert store.set_prompt(old.id, '{"system": "s", "messages": []}')
    assert store.get(old.id).prompt == '{"system": "s", "messages": []}'  # type: ignore[union-attr]


def test_chain_walks_the_follow_ups_back_to_the_first_turn(store: HistoryStore) -> None:
    first = store.start(NewEntry(mode="yap", query="one"))
    second = store.start(NewEntry(mode="chat", query="two", parent_id=first))
    third = store.start(NewEntry(mode="chat", query="three", parent_id=second))
    store.start(NewEntry(mode="chat", query="elsewhere", parent_id=first))
    assert [e.query for e in store.chain(third)] == ["one", "two", "three"]
    assert [e.query for e in store.chain(first)] == ["one"]
    assert store.chain(999_999) == []
    store.delete(second)  # the link is cut (ON DELETE SET NULL): the chain ends there
    assert [e.query for e in store.chain(third)] == ["three"]


def test_migrations_are_named_in_order() -> None:
    names = [m.__name__ for m in history.MIGRATIONS]
    assert names[0] == "_m001_initial"
    assert all(name.startswith(f"_m{i:03d}_") for i, name in enumerate(names, start=1))


def test_file_mode_0600_wal_files_too_and_directory_0700(db_path: Path) -> None:
    store = HistoryStore(db_path)
    reader = sqlite3.connect(db_path)  # keeps the -wal and -shm files alive
    try:
        reader.execute("SELECT count(*) FROM entries").fetchone()
        record(store)
        for name in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    finally:
        reader.close()
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.touch()
    path.chmod(0o644)
    HistoryStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_default_paths() -> None:
    assert history.default_path("/d") == Path("/d/kznllm/history.sqlite3")
    env = {"XDG_DATA_HOME": "/x", "NVIM_APPNAME": "lazy"}
    assert history.nvim_data_dir(env) == Path("/x/lazy")
    assert history.nvim_data_dir({}) == Path.home() / ".local/share/nvim"


# ---------------------------------------------------------------------------- round trips


def test_a_whole_interaction_round_trips(store: HistoryStore) -> None:
    parent = record(store, "first")
    entry = new(
        "rewrite\nthis please",
        mode="replace",
        path="/src/a.py",
        filetype="python",
        selection="x = 1\n",
        request="POST https://api/v1/chat\n{...}",
        parent_id=parent,
    )
    entry_id = store.start(entry)
    running = store.get(entry_id)
    assert running is not None
    assert (running.status, running.finished_at, running.unfinished) == ("running", None, True)
    assert store.append(entry_id, "x = ", reasoning="think")
    assert store.append(entry_id, "2\n", reasoning="ing")
    usage = {"input_tokens": 120, "output_tokens": 7}
    assert store.finish(entry_id, "ok", usage=usage, first_token_ms=85, duration_ms=900)
    got = store.get(entry_id)
    assert isinstance(got, Entry)
    assert got.to_dict() == {
        **got.to_dict(),
        "mode": "replace",
        "preset_id": "demo",
        "provider": "openai",
        "model": "m1",
        "path": "/src/a.py",
        "filetype": "python",
        "query": "rewrite\nthis please",
        "selection": "x = 1\n",
        "request": "POST https://api/v1/chat\n{...}",
        "response": "x = 2\n",
        "reasoning": "thinking",
        "status": "ok",
        "error": None,
        "input_tokens": 120,
        "output_tokens": 7,
        "first_token_ms": 85,
        "duration_ms": 900,
        "parent_id": parent,
        "unfinished": False,
    }
    assert got.finished_at is not None and got.finished_at >= got.started_at
    assert got.title == "rewrite"


def test_finish_records_errors_and_measures_the_duration_when_not_given(
    store: HistoryStore,
) -> None:
    entry_id = store.start(new(started_at=time.time() - 2.5))
    assert store.finish(entry_id, "error", error="provider error (HTTP 429): slow down")
    got = store.get(entry_id)
    assert got is not None and got.status == "error"
    assert got.error == "provider error (HTTP 429): slow down"
    assert got.duration_ms is not None and 2400 <= got.duration_ms <= 10_000
    assert (got.input_tokens, got.output_tokens) == (None, None)


def test_bad_mode_or_status_is_a_history_error(store: HistoryStore) -> None:
    with pytest.raises(HistoryError, match="mode 'shout'"):
        store.start(new(mode="shout"))
    entry_id = store.start(new())
    with pytest.raises(HistoryError, match="status 'running'"):
        store.finish(entry_id, "running")
    with pytest.raises(HistoryError, match="status 'done'"):
        store.list(status="done")
    assert issubclass(HistoryError, KznError)


def test_append_after_finish_or_to_nothing_is_refused_quietly(store: HistoryStore) -> None:
    entry_id = record(store, answer="kept")
    assert store.append(entry_id, "late") is False
    assert store.append(9999, "nowhere") is False
    assert store.finish(9999, "ok") is False
    assert store.get(entry_id).response == "kept"  # type: ignore[union-attr]
    assert store.get(9999) is None


def test_delete_clear_count_and_parent_links(store: HistoryStore) -> None:
    parent = record(store, "parent")
    child = record(store, "child", parent_id=parent)
    other = record(store, "other")
    assert store.count() == 3
    assert store.delete(parent) is True
    assert store.delete(parent) is False
    assert store.get(child).parent_id is None  # type: ignore[union-attr]
    assert store.count() == 2
    assert store.clear() == 2
    assert store.count() == 0 and store.get(other) is None
    assert record(store) > other  # ids are never reused


async def test_usable_from_worker_threads(store: HistoryStore) -> None:
    async def one(i: int) -> int:
        entry_id = await asyncio.to_thread(store.start, new(f"q{i}"))
        for chunk in ("a", "b", "c"):
            await asyncio.to_thread(store.append, entry_id, chunk)
        await asyncio.to_thread(store.finish, entry_id, "ok")
        return entry_id

    ids = await asyncio.gather(*(one(i) for i in range(24)))
    assert len(set(ids)) == 24
    assert all(store.get(i).response == "abc" for i in ids)  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.text(max_size=30), max_size=8), reasoning=st.text(max_size=20))
def test_appended_chunks_concatenate(pieces: list[str], reasoning: str) -> None:
    """Whatever the pieces, the stored answer is their concatenation."""
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.sqlite3")
        entry_id = store.start(new())
        for piece in pieces:
            store.append(entry_id, piece)
        store.append(entry_id, "", reasoning=reasoning)
        got = store.get(entry_id)
        assert got is not None
        # a NUL is kept as U+FFFD (SQLite's text functions stop at a NUL)
        expected = "".join(pieces).replace("\0", "\ufffd"), reasoning.replace("\0", "\ufffd")
        assert (got.response, got.reasoning) == expected


# ---------------------------------------------------------------------------- listing


def test_list_newest_first_with_filters_and_paging(store: HistoryStore) -> None:
    base = time.time() - 100
    ids = []
    for i, (preset, status) in enumerate(
        [("a", "ok"), ("b", "error"), ("a", "cancelled"), ("b", "ok"), ("a", "ok")]
    ):
        entry_id = store.start(new(f"query {i}\nmore", preset_id=preset, started_at=base + i))
        store.append(entry_id, f"answer {i} 100%_done")
        store.finish(entry_id, status)
        ids.append(entry_id)
    running = store.start(new("still going", preset_id="a", started_at=base + 10))

    listed = store.list()
    assert [s.id for s in listed] == [running, *reversed(ids)]
    assert all(isinstance(s, EntrySummary) and not isinstance(s, Entry) for s in listed)
    assert listed[1].title == "query 4" and listed[1].query == "query 4\nmore"
    assert [s.id for s in store.list(limit=2, offset=1)] == [ids[4], ids[3]]
    assert [s.id for s in store.list(preset="a")] == [running, ids[4], ids[2], ids[0]]
    assert [s.id for s in store.list(status="ok")] == [ids[4], ids[3], ids[0]]
    assert [s.id for s in store.list(status="running")] == [running]
    assert [s.id for s in store.list(preset="b", status="ok")] == [ids[3]]
    assert [s.id for s in store.list(text="QUERY 2")] == [ids[2]]  # case-insensitive
    assert [s.id for s in store.list(text="answer 3")] == [ids[3]]  # in the response
    assert len(store.list(text="100%_")) == 5  # LIKE wildcards are literal
    assert store.list(text="0%x") == []
    assert store.count(preset="a") == 4 and store.count(text="still") == 1


def test_summary_query_is_cut(store: HistoryStore) -> None:
    record(store, "x" * 5000)
    (summary,) = store.list()
    assert summary.query == "x" * history.SUMMARY_QUERY_CHARS


def _bulk_insert(path: Path, n: int) -> None:
    body = "lorem ipsum dolor sit amet " * 80  # ~2 KB
    now = time.time()
    rows = [
        (
            now - n + i,
            "ok" if i % 7 else "error",
            f"preset{i % 5}",
            "yap",
            f"query number {i}\n" + "context " * 10,
            "POST /v1/chat\n" + body * 2,
            f"answer {i} " + body,
        )
        for i in range(n)
    ]
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO entries (started_at, status, preset_id, mode, query, request, response)"
            " VALUES (?,?,?,?,?,?,?)",
            rows,
        )
    db.close()


def _best_ms(fn: object, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def test_listing_10000_entries_is_fast(store: HistoryStore) -> None:
    _bulk_insert(store.path, 10_000)
    assert store.count() == 10_000
    plain = _best_ms(lambda: store.list(limit=100))
    by_status = _best_ms(lambda: store.list(limit=100, status="error"))
    by_preset = _best_ms(lambda: store.list(limit=100, preset="preset3"))
    by_text = _best_ms(lambda: store.list(limit=100, text="answer 9999"), runs=2)
    reopen = _best_ms(lambda: HistoryStore(store.path), runs=2)
    print(
        f"\n10,000 entries: list(100) {plain:.2f} ms, status {by_status:.2f} ms, "
        f"preset {by_preset:.2f} ms, text search {by_text:.1f} ms, open {reopen:.1f} ms"
    )
    assert len(store.list(limit=100)) == 100
    assert plain < 50 and by_status < 50 and by_preset < 50
    assert store.list(limit=1, text="answer 9999 ")[0].title == "query number 9999"


# ---------------------------------------------------------------------------- retention


def test_prune_keeps_the_newest_and_drops_the_old(store: HistoryStore) -> None:
    now = time.time()
    ids = [store.start(new(f"q{i}", started_at=now - (9 - i) * 86400)) for i in range(10)]
    assert store.prune(max_entries=None, max_age_days=None) == 0
    assert store.prune(max_entries=None, max_age_days=3.5) == 6
    assert [s.id for s in store.list()] == ids[:5:-1]
    assert store.prune(max_entries=2) == 2
    assert [s.id for s in store.list()] == [ids[9], ids[8]]


def test_finish_applies_the_store_limits(db_path: Path) -> None:
    store = HistoryStore(db_path, max_entries=3)
    ids = [record(store, f"q{i}") for i in range(5)]
    assert [s.id for s in store.list()] == ids[:1:-1]


# ---------------------------------------------------------------------------- damage


def _assert_recovered(db_path: Path, original: bytes, store: HistoryStore) -> None:
    assert isinstance(store.notice, HistoryError)
    message = str(store.notice)
    assert "could not be read" in message and "moved to" in message
    aside = [p for p in db_path.parent.iterdir() if ".corrupt-" in p.name]
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))] == [
        p.name for p in aside if p.name.startswith(f"{db_path.name}.corrupt-2")
    ]
    (moved,) = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert str(moved) in message
    assert moved.read_bytes() == original  # never deleted, never changed
    assert store.count() == 0
    entry_id = record(store, "after")
    assert store.get(entry_id).query == "after"  # type: ignore[union-attr]


def test_garbage_file_is_moved_aside_and_a_fresh_one_started(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = os.urandom(3000)
    db_path.write_bytes(garbage)
    store = HistoryStore(db_path)
    _assert_recovered(db_path, garbage, store)


def test_truncated_database_is_moved_aside(db_path: Path) -> None:
    store = HistoryStore(db_path)
    _bulk_insert(db_path, 300)
    size = db_path.stat().st_size
    assert not Path(f"{db_path}-wal").exists()  # all in the main file
    with db_path.open("r+b") as f:
        f.truncate(size // 2)
    cut = db_path.read_bytes()
    fresh = HistoryStore(db_path)
    _assert_recovered(db_path, cut, fresh)
    del store


def test_database_damaged_while_open_is_replaced_on_the_next_call(
    store: HistoryStore,
) -> None:
    record(store)
    store.path.write_bytes(b"this is not sqlite at all" * 200)
    for side in ("-wal", "-shm"):
        Path(f"{store.path}{side}").unlink(missing_ok=True)
    with pytest.raises(HistoryError, match=r"moved to .*corrupt-"):
        store.list()
    assert store.notice is not None
    assert store.list() == []
    record(store)
    assert store.count() == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_a_clear_error_and_stays(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    HistoryStore(path)
    path.chmod(0)
    with pytest.raises(HistoryError, match="cannot create the history database"):
        HistoryStore(path)
    assert path.exists()


def test_a_path_that_cannot_be_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "h.sqlite3").mkdir()
    with pytest.raises(HistoryError, match=r"cannot create the history database .*h\.sqlite3"):
        HistoryStore(tmp_path / "h.sqlite3")
    assert [p.name for p in tmp_path.iterdir()] == ["h.sqlite3"]  # nothing moved


# ---------------------------------------------------------------------------- locking


def test_a_lock_held_past_the_busy_timeout_is_retried(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_database, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    try:
        entry_id = store.start(new())  # 0.05 s timeout, then retries over ~0.5 s
    finally:
        release.join()
        holder.close()
    assert store.get(entry_id) is not None


def test_a_lock_never_released_is_a_history_error(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_database, "BUSY_TIMEOUT_S", 0.02)
    monkeypatch.setattr(history_database, "LOCK_RETRIES", 1)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(HistoryError, match="stayed locked"):
            store.start(new())
    finally:
        holder.close()


_WRITER = textwrap.dedent(
    """
    import sys, time
    from kznllm_py.history import HistoryStore, NewEntry
    path, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    while time.time() < go:
        time.sleep(0.002)
    store = HistoryStore(path)
    for i in range(n):
        entry_id = store.start(NewEntry(mode="chat", preset_id=tag, query=f"{tag}-{i}"))
        for part in ("one ", "two ", "three"):
            store.append(entry_id, part)
        store.finish(entry_id, "ok", usage={"input_tokens": i, "output_tokens": 1})
    """
)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_two_processes_writing_at_once_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "history.sqlite3"  # both create it: the init races too
    n = 120
    go = str(time.time() + 0.6)
    procs = [_spawn(str(path), tag, str(n), go) for tag in ("left", "right")]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    store = HistoryStore(path)
    assert store.count() == 2 * n
    for tag in ("left", "right"):
        rows = store.list(limit=1000, preset=tag)
        assert sorted(r.query for r in rows) == sorted(f"{tag}-{i}" for i in range(n))
        assert {r.status for r in rows} == {"ok"}
    entries = [store.get(r.id) for r in store.list(limit=1000)]
    assert {e.response for e in entries if e} == {"one two three"}


def test_a_crash_mid_stream_leaves_the_partial_answer(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    script = textwrap.dedent(
        f"""
        import os
        from kznllm_py.history import HistoryStore, NewEntry
        store = HistoryStore({str(path)!r})
        entry_id = store.start(NewEntry(mode="yap", query="q"))
        store.append(entry_id, "half an ")
        store.append(entry_id, "answer")
        os._exit(9)  # like :qa! or a killed host: no finish, no cleanup
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    (summary,) = HistoryStore(path).list()
    assert summary.unfinished and summary.finished_at is None
    entry = HistoryStore(path).get(summary.id)
    assert entry is not None and entry.response == "half an answer"


# ---------------------------------------------------------------------------- secrets


def test_a_remembered_key_never_reaches_the_file(store: HistoryStore, canary: str) -> None:
    entry_id = store.start(
        new(
            f"why does {canary} fail",
            selection=f"KEY = '{canary}'",
            request=f"POST /v1/chat\nAuthorization: Bearer {canary}\n{{}}",
        )
    )
    split = len(canary) // 2
    store.append(entry_id, f"the key {canary[:split]}", reasoning=canary[:5])
    store.append(entry_id, f"{canary[split:]} is wrong", reasoning=canary[5:])
    store.append(entry_id, f" and {canary}")
    store.finish(entry_id, "error", error=f"HTTP 401: bad key {canary}")
    reader = sqlite3.connect(store.path)  # keep the -wal file for the scan
    try:
        reader.execute("SELECT 1").fetchone()
        on_disk = all_bytes(store.path.parent)
    finally:
        reader.close()
    assert canary.encode() not in on_disk
    assert canary[:split].encode() not in on_disk  # the split half was redacted too
    got = store.get(entry_id)
    assert got is not None
    assert got.response == "the key <redacted> is wrong and <redacted>"
    assert got.reasoning == "<redacted>"
    assert "<redacted>" in got.request and "<redacted>" in got.query
    assert got.error == "HTTP 401: bad key <redacted>"
    assert canary.encode() not in all_bytes(store.path.parent)


def test_clear_leaves_no_text_behind(store: HistoryStore) -> None:
    marker = "private-marker-3141592653"
    record(store, f"{marker} query", answer=f"{marker} answer")
    store.clear()
    assert marker.encode() not in all_bytes(store.path.parent)


# ---------------------------------------------------------------------------- the CLI


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "history", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
    )


@pytest.fixture
def filled(db_path: Path) -> tuple[Path, list[int]]:
    store = HistoryStore(db_path)
    base = time.time() - 60
    a = store.start(new("first question\nline two", preset_id="alpha", started_at=base))
    store.append(a, "first answer")
    store.finish(a, "ok", usage={"input_tokens": 12, "output_tokens": 34}, duration_ms=1500)
    b = store.start(new("second question", preset_id="beta", mode="chat", started_at=base + 1))
    store.finish(b, "error", error="provider error (HTTP 500): down", duration_ms=200)
    c = store.start(new("third, running", preset_id="alpha", started_at=base + 2))
    return db_path, [a, b, c]


def test_cli_lists_entries_one_line_each(filled: tuple[Path, list[int]]) -> None:
    path, (a, _, c) = filled
    out = _cli("--db", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == str(c) and "running" in lines[0]
    assert lines[2].split()[0] == str(a)
    for part in ("alpha", "insert", "ok", "12/34", "1.5s", "first question"):
        assert part in lines[2]
    assert "line two" not in out.stdout
    assert "beta" in lines[1] and "chat" in lines[1] and "error" in lines[1]
    assert _cli("--db", str(path), "-n", "1").stdout.splitlines()[0].split()[0] == str(c)
    only = _cli("--db", str(path), "--preset", "alpha", "--status", "ok").stdout
    assert [line.split()[0] for line in only.splitlines()] == [str(a)]


def test_cli_json_list_and_show(filled: tuple[Path, list[int]]) -> None:
    path, (a, b, _) = filled
    rows = json.loads(_cli("--db", str(path), "--json", "--status", "error").stdout)
    assert [(r["id"], r["error"]) for r in rows] == [(b, "provider error (HTTP 500): down")]
    shown = _cli("show", str(a), "--json", "--db", str(path))
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)
    assert entry["response"] == "first answer" and entry["query"] == "first question\nline two"
    assert entry["input_tokens"] == 12 and entry["unfinished"] is False
    # the options may also come before `show`
    assert json.loads(_cli("--db", str(path), "--json", "show", str(b)).stdout)["id"] == b


def test_cli_show_prints_the_whole_entry(filled: tuple[Path, list[int]]) -> None:
    path, (a, _, c) = filled
    out = _cli("show", str(a), "--db", str(path))
    assert out.returncode == 0, out.stderr
    for part in ("first question\nline two", "--- response ---\nfirst answer", "12/34", "1.5s"):
        assert part in out.stdout
    assert "(unfinished)" in _cli("show", str(c), "--db", str(path)).stdout
    missing = _cli("show", "999", "--db", str(path))
    assert missing.returncode == 1 and "no history entry 999" in missing.stderr


def test_cli_default_path_follows_xdg_and_nvim_appname(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg"), "NVIM_APPNAME": "mynvim"}
    empty = _cli(env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert not (tmp_path / "xdg").exists()  # listing creates nothing
    store = HistoryStore(history.default_path(tmp_path / "xdg" / "mynvim"))
    record(store, "found by default")
    out = _cli("--json", env=env)
    assert [r["query"] for r in json.loads(out.stdout)] == ["found by default"]


def test_cli_reports_a_damaged_database(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"\x00garbage" * 100)
    out = _cli("--db", str(path))
    assert out.returncode == 1
    assert "could not be read" in out.stderr and "left as it is" in out.stderr
    # reading changes nothing: the fill that writes next moves it aside
    assert path.read_bytes() == b"\x00garbage" * 100
    assert [p.name for p in tmp_path.iterdir()] == ["h.sqlite3"]


def test_a_nul_in_the_answer_does_not_cut_later_text(store: HistoryStore) -> None:
    entry_id = store.start(new())
    store.append(entry_id, "a\0b")
    store.append(entry_id, "c")
    got = store.get(entry_id)
    assert got is not None and got.response == "a\ufffdbc"


def test_a_kept_open_store_connects_once_and_reopens_when_the_file_goes(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HistoryStore(db_path, keep_open=True)
    connects = 0
    real = store._connect

    def counting() -> sqlite3.Connection:
        nonlocal connects
        connects += 1
        return real()

    monkeypatch.setattr(store, "_connect", counting)
    for i in range(5):
        entry_id = store.start(NewEntry(mode="yap", query=f"q{i}"))
        store.append(entry_id, "text")
        store.finish(entry_id, "ok")
    assert connects == 1 and store.count() == 5
    db_path.rename(db_path.with_suffix(".moved"))  # e.g. `kznllm history` moved it aside
    store.start(NewEntry(mode="yap", query="fresh"))  # a new file and a new connection
    after_move = connects
    store.start(NewEntry(mode="yap", query="again"))
    assert connects == after_move > 1
    assert [e.query for e in store.list()] == ["again", "fresh"]
    store.close()


def test_take_then_restore_puts_an_entry_back_with_its_id_and_follow_up_links(
    store: HistoryStore,
) -> None:
    parent = record(store, "first", "one")
    gone = record(store, "second", "two", parent_id=parent)
    child = record(store, "third", "three", parent_id=gone)
    before = store.get(gone)
    taken = store.take(gone)
    assert taken is not None and store.get(gone) is None
    assert store.get(child).parent_id is None  # deleting unlinks the follow-up
    assert store.restore(taken)
    assert store.get(gone) == before
    assert store.get(child).parent_id == gone
    assert store.take(9999) is None


def test_restore_refuses_an_id_that_was_used_again(store: HistoryStore) -> None:
    gone = record(store, "second", "two")
    taken = store.take(gone)
    assert taken is not None
    db = store._connect()
    with db:
        db.execute("INSERT INTO entries (id, started_at, mode) VALUES (?, 0, 'yap')", (gone,))
    assert not store.restore(taken)


def test_the_hosts_recorder_is_made_once_and_anew_only_when_its_settings_change(
    tmp_path: Path,
) -> None:
    from kznllm_py.history.recorder import RecorderSlot

    slot = RecorderSlot(print)
    made = [slot.get(tmp_path / "a.sqlite3", 10, None)]
    assert slot.get(tmp_path / "a.sqlite3", 10, None) is made[0] is slot.current
    for changed in [(tmp_path / "b.sqlite3", 10, None), (tmp_path / "b.sqlite3", 20, 7.0)]:
        made.append(slot.get(*changed))
        assert made[-1] is not made[-2] and slot.current is made[-1]
    for recorder in made:
        recorder.close()
