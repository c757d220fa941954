"""Redaction as the store writes text: `secrets.redact()` again at the last moment (the
caller redacts already; this is a second net). An appended chunk is redacted together
with the last `REDACT_TAIL` characters already stored, so a key split across chunks is
never written; the whole answer is redacted once more when the entry is finished."""

from __future__ import annotations

import sqlite3

from kznllm_py import secrets

REDACT_TAIL = 512  # characters of stored text redacted again with each appended chunk


def redacted_join(tail: str, text: str) -> tuple[int, str]:
    """How many characters of the stored tail to replace, and with what, so that a key
    split between the stored text and the new chunk is redacted before it is written.
    A NUL is stored as U+FFFD: SQLite's length() and substr() stop at a NUL in text."""
    if not text:
        return 0, ""
    text = text.replace("\0", "\ufffd")
    joined = tail + text
    clean = secrets.redact(joined)
    return (0, text) if clean == joined else (len(tail), clean)


def redact_text_of(db: sqlite3.Connection, entry_id: int) -> None:
    """The whole response once more: catches a key split across two appended chunks."""
    row = db.execute("SELECT response, reasoning FROM entries WHERE id = ?", (entry_id,))
    response, reasoning = row.fetchone()
    clean = (secrets.redact(response), secrets.redact(reasoning))
    if clean != (response, reasoning):
        sql = "UPDATE entries SET response = ?, reasoning = ? WHERE id = ?"
        db.execute(sql, (*clean, entry_id))
