"""Attacks on the CLI's terminal and on a read-only history: stored rows carrying escape
sequences (an OSC 52 clipboard write, a window title, a carriage return) reach the
terminal only escaped, checked byte by byte, with `--raw` for the bytes; `kznllm
history` lists and shows from a data folder mounted read-only (a private mount namespace:
as root, chmod stops nothing), and a fill there still streams its answer."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py.history import HistoryStore, NewEntry, default_path, nvim_data_dir
from kznllm_py.history.migrations import MIGRATIONS
from tests.cli_env import clean_env
from tests.servers import LoopbackServer, Reply, openai_events

OSC52 = "\x1b]52;c;cHduZWQ=\x07"  # sets the clipboard to "pwned"
TITLE = "\x1b]0;owned\x07"
C1_CSI = "\x9b2J"  # a screen clear through the 8-bit CSI


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", *args],
        env=env or clean_env(),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def _hostile_db(path: Path) -> int:
    store = HistoryStore(path)
    entry = store.start(
        NewEntry(
            mode="yap",
            query=f"what{OSC52}is{TITLE}this\rforged",
            preset_id="p",
            request=f"POST /v1\n{TITLE}body{C1_CSI}",
        )
    )
    store.append(entry, "answer", reasoning=f"think{OSC52}\nmore\r")
    store.finish(entry, "ok")
    store.close()
    return entry


def test_history_show_prints_stored_escape_sequences_escaped_byte_for_byte(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.sqlite3"
    entry = _hostile_db(db)
    out = _cli("history", "show", str(entry), "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert b"\x1b" not in out.stdout and b"\x07" not in out.stdout
    assert b"\r" not in out.stdout and "\x9b".encode() not in out.stdout
    text = out.stdout.decode()
    assert "--- query ---\nwhat\\x1b]52;c;cHduZWQ=\\x07is\\x1b]0;owned\\x07this\\rforged\n" in text
    assert "--- reasoning ---\nthink\\x1b]52;c;cHduZWQ=\\x07\nmore\\r\n" in text
    assert "--- request ---\nPOST /v1\n\\x1b]0;owned\\x07body\\x9b2J\n" in text

    raw = _cli("history", "show", str(entry), "--db", str(db), "--raw")
    assert OSC52.encode() in raw.stdout and TITLE.encode() in raw.stdout

    js = _cli("history", "show", str(entry), "--db", str(db), "--json")
    assert b"\x1b" not in js.stdout and "\x9b".encode() not in js.stdout
    assert json.loads(js.stdout)["request"] == f"POST /v1\n{TITLE}body{C1_CSI}"


def test_history_list_prints_stored_queries_escaped(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _hostile_db(db)
    out = _cli("history", "--db", str(db))
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.decode().splitlines()
    assert line.endswith("what\\x1b]52;c;cHduZWQ=\\x07is\\x1b]0;owned\\x07this")
    js = _cli("history", "--db", str(db), "--json")
    assert b"\x1b" not in js.stdout
    assert json.loads(js.stdout)[0]["query"].startswith(f"what{OSC52}")
    raw = _cli("history", "--db", str(db), "--raw")
    assert OSC52.encode() in raw.stdout


def test_model_names_a_server_forged_with_escapes_are_not_listed(server: LoopbackServer) -> None:
    # no model anyone picks: the same list as :KznPreset!'s picker (models.py `_offered`)
    names = [f"gpt{TITLE}x", f"m{C1_CSI}", "ok-model", "x" * 257]
    body = json.dumps({"data": [{"id": name} for name in names]})
    server.queue(Reply(headers={"Content-Type": "application/json"}, chunks=[body.encode()]))
    out = _cli(
        "models", "--provider", "openai", "--base-url", server.base_url + "/v1", "--api-key", ""
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["ok-model"]


# -- a read-only data folder ---------------------------------------------------------------


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and unshare -m")


def _read_only(folder: Path, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """`argv` with `folder` bind-mounted read-only over itself, in a private mount
    namespace (the test's own processes see it writable)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(folder), *argv],
        env=env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@needs_mount
def test_history_lists_and_shows_from_a_read_only_folder(tmp_path: Path) -> None:
    env = clean_env(XDG_DATA_HOME=str(tmp_path / "data"), NVIM_APPNAME="nvim")
    db = default_path(nvim_data_dir(env))
    entry = _hostile_db(db)
    cli = [sys.executable, "-m", "kznllm_py.cli.main", "history"]
    proof = _read_only(db.parent, "sh", "-c", f'touch "{db.parent}/x"', env=env)
    assert proof.returncode != 0 and b"Read-only file system" in proof.stderr
    listed = _read_only(db.parent, *cli, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == b""
    assert b"what\\x1b]52" in listed.stdout
    shown = _read_only(db.parent, *cli, "show", str(entry), env=env)
    assert shown.returncode == 0, shown.stderr
    assert b"--- response ---\nanswer\n" in shown.stdout
    assert sorted(p.name for p in db.parent.iterdir()) == ["history.sqlite3"]


@needs_mount
def test_a_fill_with_a_read_only_history_streams_and_says_so_once(
    tmp_path: Path, server: LoopbackServer
) -> None:
    env = clean_env(XDG_DATA_HOME=str(tmp_path / "data"), NVIM_APPNAME="nvim", KZN_RO_KEY="k-ro-1")
    db = default_path(nvim_data_dir(env))
    _hostile_db(db)
    server.queue(Reply(chunks=openai_events(["hello ", "there"])))
    argv = [sys.executable, "-m", "kznllm_py.cli.main", "fill", "--provider", "openai"]
    argv += ["--model", "m", "--base-url", server.base_url + "/v1", "--api-key", "KZN_RO_KEY"]
    out = _read_only(db.parent, *argv, "hi", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"hello there"
    [line] = out.stderr.decode().splitlines()
    assert "history" in line and "Read-only file system" in line


def test_history_reads_a_database_of_an_older_kznllm_after_bringing_it_up_to_date(
    tmp_path: Path,
) -> None:
    """Read-only opening must not strand a database the editor has not migrated yet:
    `kznllm history` brings it up to date where it can write, as the editor would."""
    db_path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA user_version = {1}")
    MIGRATIONS[0](db)
    db.execute(
        "INSERT INTO entries (started_at, mode, query, response, status)"
        " VALUES (1.0, 'yap', 'old question', 'old answer', 'ok')"
    )
    db.close()
    out = _cli("history", "--db", str(db_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().rstrip().endswith("old question")
    shown = _cli("history", "show", "1", "--db", str(db_path))
    assert shown.returncode == 0 and b"--- response ---\nold answer\n" in shown.stdout


def test_render_prints_a_projects_escape_sequences_escaped(tmp_path: Path) -> None:
    """A cloned repository's `.kzn` file with a clipboard write: `kznllm render` shows the
    request with it escaped (text and JSON), `--raw` as it is."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".kzn").mkdir()
    (tmp_path / ".kzn" / "notes.md").write_text(f"notes {OSC52}{C1_CSI}\n")
    argv = ["render", "--provider", "openai", "--model", "m"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--api-key", "", "q"]

    def render(*extra: str) -> bytes:
        out = subprocess.run(
            [sys.executable, "-m", "kznllm_py.cli.main", *argv[:-1], *extra, argv[-1]],
            cwd=tmp_path,
            env=clean_env(XDG_STATE_HOME=str(tmp_path / "state")),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown = render()
    assert b"\x1b" not in shown and "\x9b".encode() not in shown
    assert b"notes \\x1b]52;c;cHduZWQ=\\x07\\x9b2J" in shown
    as_json = render("--json")
    assert b"\x1b" not in as_json and "\x9b".encode() not in as_json
    system = json.loads(as_json)["body"]["messages"][0]["content"]
    assert f"notes {OSC52}{C1_CSI}" in system  # the same value, escaped only as JSON
    assert OSC52.encode() in render("--raw")
