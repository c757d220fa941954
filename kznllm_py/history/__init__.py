"""The history: one SQLite row per interaction, written as it streams, read by the
sidebar and `kznllm history`. One job per module:

    records.py     the rows' shapes (NewEntry, EntrySummary, Entry), modes and statuses
    migrations.py  the schema, as append-only named migrations (PRAGMA user_version)
    redaction.py   text redacted once more as it is written, across appended chunks
    database.py    the database file: where it lives, connections, busy retries, 0600,
                   corrupt-file recovery, read-only opening, compaction
    store.py       HistoryStore: the entries' rows (start, append, finish, list, take,
                   restore, prune)
    recorder.py    HistoryRecorder / Recording: a generation recorded off the event loop
    view.py        the sidebar and the entry view as lines and highlights (pure)
    ops.py         what the sidebar asks the host for (pages, entries, delete, clear)

The editor (plugin.py) and the CLI (`kznllm fill`) record through the same recorder;
printing entries on a terminal is the CLI's (cli/history.py).
"""

from kznllm_py.history.database import DB_NAME, default_path, nvim_data_dir
from kznllm_py.history.migrations import MIGRATIONS, schema_version
from kznllm_py.history.records import (
    FINAL_STATUSES,
    MODES,
    STATUSES,
    SUMMARY_QUERY_CHARS,
    Entry,
    EntrySummary,
    NewEntry,
)
from kznllm_py.history.store import DEFAULT_MAX_ENTRIES, HistoryStore

SCHEMA_VERSION = schema_version()

__all__ = [
    "DB_NAME",
    "DEFAULT_MAX_ENTRIES",
    "FINAL_STATUSES",
    "MIGRATIONS",
    "MODES",
    "SCHEMA_VERSION",
    "STATUSES",
    "SUMMARY_QUERY_CHARS",
    "Entry",
    "EntrySummary",
    "HistoryStore",
    "NewEntry",
    "default_path",
    "nvim_data_dir",
]
