"""`kznllm fill` records its run in the editor's history: the real CLI against a loopback
server, the entry read back from the database under Neovim's data dir (the same file
`:KznHistory` reads), with the fields and outcome the editor records; crash-safe (a
killed run leaves what arrived, 'running'); `--no-history` records nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kznllm_py.history import (
    DEFAULT_MAX_ENTRIES,
    Entry,
    HistoryStore,
    default_path,
    nvim_data_dir,
)
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, json_reply, openai_events
from tests.waiting import wait_until

KEY_VAR = "KZN_CLI_HIST_KEY"
KEY = "sk-cli-hist-canary-24680"
USAGE = {"prompt_tokens": 9, "completion_tokens": 2}


def cli_env(data_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({KEY_VAR: KEY, "XDG_DATA_HOME": str(data_home)})
    env.pop("NVIM_APPNAME", None)
    return env


def fill_argv(base_url: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kznllm_py.cli.main",
        "fill",
        "--provider",
        "openai",
        "--model",
        "test-model",
        "--base-url",
        base_url,
        "--api-key",
        KEY_VAR,
        *args,
    ]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60
    )


def db_for(env: dict[str, str]) -> Path:
    return default_path(nvim_data_dir(env))


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))


def only_entry(path: Path) -> Entry:
    store = HistoryStore(path)
    [row] = store.list()
    entry = store.get(row.id)
    assert entry is not None
    return entry


def test_a_cli_fill_lands_in_the_editors_database_with_the_fields_the_editor_records(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """The editor and the CLI make the same replace; both entries are in one database
    (the CLI finds Neovim's stdpath('data') itself) and agree on every recorded field
    but the preset's name (the CLI has no setup() presets) and the buffer's path."""
    reply = Reply(chunks=openai_events(["x = ", "2"], usage=USAGE))
    server.queue(reply, reply)
    nvim = Child(tmp_path / "nvim", env={KEY_VAR: KEY})
    try:
        nvim.use_server(server.base_url, api_key=KEY_VAR)
        nvim.lua("vim.bo.filetype = 'python'")
        nvim.set_lines(["x = 1"])
        nvim.nvim.command("1KznFill double it")
        nvim.wait_done()
        editor_db = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"
        data_home = Path(nvim.lua("return vim.env.XDG_DATA_HOME"))
    finally:
        nvim.close()
    env = cli_env(data_home)
    assert db_for(env) == editor_db  # the CLI computes the editor's path
    (tmp_path / "sel.py").write_text("x = 1")
    argv = fill_argv(server.base_url, "--selection-file", "sel.py", "--filetype", "python")
    res = run([*argv, "double it"], tmp_path, env)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"x = 2"

    store = HistoryStore(editor_db)
    cli_row, editor_row = store.list()  # newest first
    cli, editor = store.get(cli_row.id), store.get(editor_row.id)
    assert cli is not None and editor is not None
    assert (cli.preset_id, editor.preset_id) == ("cli", "test")
    same = [
        "mode",
        "provider",
        "model",
        "status",
        "error",
        "query",
        "selection",
        "filetype",
        "response",
        "reasoning",
        "input_tokens",
        "output_tokens",
        "parent_id",
        "unfinished",
    ]
    assert {f: getattr(cli, f) for f in same} == {f: getattr(editor, f) for f in same}
    assert (cli.mode, cli.status, cli.response) == ("replace", "ok", "x = 2")
    assert (cli.input_tokens, cli.output_tokens) == (9, 2)
    assert cli.finished_at is not None and cli.duration_ms is not None
    assert cli.first_token_ms is not None
    # the request as it went out, the key header redacted; the prompt it was built from
    request, editor_request = json.loads(cli.request), json.loads(editor.request)
    assert request["url"] == editor_request["url"] == f"{server.base_url}/chat/completions"
    assert request["headers"]["Authorization"] == "<redacted>"
    assert request["body"]["messages"] == editor_request["body"]["messages"]
    assert json.loads(cli.prompt) == json.loads(editor.prompt)
    assert KEY.encode() not in db_bytes(editor_db)


@contextmanager
def running(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The CLI in the background; killed if still running at the end of the block."""
    pipe = subprocess.PIPE
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def wait_saved(path: Path, response: str) -> Entry:
    """The entry once its saved answer is `response` (the run still going on)."""

    def saved() -> Entry | None:
        if not path.exists() or not HistoryStore(path).count():
            return None
        entry = only_entry(path)
        return entry if entry.response == response else None

    return wait_until(saved, 15, f"{response!r} saved in the history while the run goes on")


def test_a_killed_cli_run_leaves_its_streamed_text_as_an_unfinished_entry(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.queue(Reply(chunks=openai_events(["partial ", "never"]), pause_after=2))
    env = cli_env(tmp_path / "data")
    path = db_for(env)
    with running(fill_argv(server.base_url, "explain"), tmp_path, env) as proc:
        server.wait_paused(timeout=15)
        wait_saved(path, "partial ")
        proc.kill()  # no chance to finish the entry
        proc.communicate(timeout=15)
    entry = only_entry(path)
    assert (entry.status, entry.unfinished, entry.finished_at) == ("running", True, None)
    assert (entry.mode, entry.query, entry.response) == ("yap", "explain", "partial ")
    assert json.loads(entry.request)["headers"]["Authorization"] == "<redacted>"
    assert KEY.encode() not in db_bytes(path)


def test_ctrl_c_is_recorded_as_cancelled_with_the_text_that_reached_stdout(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.queue(Reply(chunks=openai_events(["part", "ial", "never"]), pause_after=3))
    env = cli_env(tmp_path / "data")
    with running(fill_argv(server.base_url, "q"), tmp_path, env) as proc:
        server.wait_paused(timeout=15)
        wait_saved(db_for(env), "partial")  # saved once written to stdout
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert (proc.returncode, out) == (130, b"partial")
    entry = only_entry(db_for(env))
    assert (entry.status, entry.response, entry.unfinished) == ("cancelled", "partial", False)


def test_a_closed_pipe_is_recorded_as_cancelled_with_the_text_that_reached_stdout(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """`kznllm fill ... | head`: the text after the reader left reaches neither stdout
    nor the history; the run ends cancelled (exit 141), not as an error."""
    server.queue(Reply(chunks=openai_events(["part", "ial", "never"]), pause_after=3))
    env = cli_env(tmp_path / "data")
    with running(fill_argv(server.base_url, "q"), tmp_path, env) as proc:
        assert proc.stdout is not None
        server.wait_paused(timeout=15)
        wait_saved(db_for(env), "partial")  # written to stdout, then saved
        proc.stdout.close()  # the reader goes away
        server.resume()  # "never" comes, and finds the pipe closed
        proc.wait(timeout=15)
    assert proc.returncode == 141
    entry = only_entry(db_for(env))
    assert (entry.status, entry.error, entry.response) == ("cancelled", None, "partial")


def test_a_request_refused_before_any_text_is_recorded_as_an_error(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.queue(json_reply(401, {"error": {"message": "bad key"}}))
    env = cli_env(tmp_path / "data")
    res = run(fill_argv(server.base_url, "--retries", "1", "q"), tmp_path, env)
    assert res.returncode == 1 and res.stdout == b""
    entry = only_entry(db_for(env))
    assert entry.status == "error" and "401" in (entry.error or "")
    assert entry.response == "" and entry.finished_at is not None
    # and `kznllm history` lists it, as it lists the editor's entries
    listed = subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "history", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(entry.id, "error")]


@pytest.mark.parametrize("history", [True, False])
def test_no_history_turns_the_recording_off(
    tmp_path: Path, server: LoopbackServer, history: bool
) -> None:
    server.queue(Reply(chunks=openai_events(["answer"])))
    env = cli_env(tmp_path / "data")
    flag = [] if history else ["--no-history"]
    res = run(fill_argv(server.base_url, *flag, "q"), tmp_path, env)
    assert res.returncode == 0 and res.stdout == b"answer", res.stderr
    path = db_for(env)
    if history:
        assert only_entry(path).response == "answer"
    else:
        assert not path.exists() and not path.parent.exists()


def test_a_cli_run_never_prunes_what_the_editors_retention_keeps(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """setup({ history = { max_entries = ... } }) lives in the editor: the CLI, which
    cannot read it, deletes nothing (not even past the default 10,000)."""
    server.queue(Reply(chunks=openai_events(["answer"])))
    env = cli_env(tmp_path / "data")
    path = db_for(env)
    HistoryStore(path)  # the schema
    kept = DEFAULT_MAX_ENTRIES + 5
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO entries (started_at, mode, query, status) VALUES (?, 'yap', ?, 'ok')",
            ((1.0 + i, f"old {i}") for i in range(kept)),
        )
    db.close()
    res = run(fill_argv(server.base_url, "q"), tmp_path, env)
    assert res.returncode == 0, res.stderr
    store = HistoryStore(path, max_entries=None)
    assert store.count() == kept + 1
    [newest] = store.list(limit=1)
    assert newest.query == "q" and store.get(newest.id).response == "answer"  # type: ignore[union-attr]
