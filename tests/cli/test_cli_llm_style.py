"""`kznllm` as a user of simonw/llm types it: a bare prompt, -m, -s, -c, a final newline
at a terminal, tables that line up, the modes' own names, `render` of the demo (issue 27,
item 7). Every run is a real subprocess; the servers are real, on loopback."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from kznllm_py.history import HistoryStore, default_path, nvim_data_dir
from kznllm_py.stream import demo_server
from tests import cli_env
from tests.servers import LoopbackServer, Reply, openai_events

KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "GROQ_API_KEY")


def env_for(tmp_path: Path) -> dict[str, str]:
    return cli_env.clean_env(
        *KEY_VARS,
        "NVIM_APPNAME",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )


def kznllm(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = env_for(tmp_path)
    return cli_env.kznllm(*args, cwd=tmp_path, env=env, text=True, encoding="utf-8")


def on(server: LoopbackServer) -> list[str]:
    return ["--provider", "openai", "--base-url", server.base_url]


def entries(tmp_path: Path) -> list:
    store = HistoryStore(default_path(nvim_data_dir(env_for(tmp_path))))
    try:
        return [store.get(s.id) for s in store.list(limit=10)]
    finally:
        store.close()


def test_a_bare_prompt_is_a_fill_and_a_subcommand_still_wins(tmp_path: Path):
    res = kznllm(tmp_path, "what is this?")
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == demo_server.answer_for(
        {"messages": [{"role": "user", "content": "what is this?"}]}
    )
    res = kznllm(tmp_path, "presets")  # the subcommand, not the question "presets"
    assert res.returncode == 0 and "claude-sonnet" in res.stdout


def test_m_picks_the_model_and_s_the_system_prompt(tmp_path: Path, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = kznllm(tmp_path, *on(server), "-m", "small-1", "-s", "Answer in French.", "hello")
    assert (res.returncode, res.stdout) == (0, "ok"), res.stderr
    body = server.requests[0].body
    assert body["model"] == "small-1"
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["messages"][-1]["role"] == "user" and "hello" in body["messages"][-1]["content"]
    # -m alone: the default preset (the demo here) with that model
    res = kznllm(tmp_path, "-m", "kznllm-demo-fast", "hi")
    assert res.returncode == 0, res.stderr
    assert entries(tmp_path)[0].model == "kznllm-demo-fast"


def test_c_continues_the_last_conversation(tmp_path: Path, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["Paris."])), Reply(chunks=openai_events(["2M."])))
    first = kznllm(tmp_path, *on(server), "-m", "m1", "capital of France?")
    assert first.returncode == 0, first.stderr
    second = kznllm(tmp_path, *on(server), "-m", "m1", "-c", "and its population?")
    assert (second.returncode, second.stdout) == (0, "2M."), second.stderr
    turns = [(m["role"], m["content"]) for m in server.requests[1].body["messages"][1:]]
    assert turns[1:] == [("assistant", "Paris."), ("user", "and its population?")]
    assert "capital of France?" in turns[0][1]
    newest, older = entries(tmp_path)[:2]
    assert newest.parent_id == older.id and newest.mode == "chat"
    empty = tmp_path / "empty"
    empty.mkdir()
    res = kznllm(empty, "-c", "more")
    assert res.returncode == 2 and "no conversation to continue" in res.stderr


def run_in_pty(tmp_path: Path, *args: str) -> bytes:
    """What a terminal shows of `kznllm ARGS` (stdout and stderr on a pseudo-terminal)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kznllm_py.cli.main", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=tmp_path,
        env=env_for(tmp_path),
    )
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=30) == 0, out
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return out


def test_the_answer_ends_with_a_newline_at_a_terminal_and_not_in_a_pipe(
    tmp_path: Path, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(["no newline here"])))
    shown = run_in_pty(tmp_path, *on(server), "-m", "m", "q")
    assert shown == b"no newline here\r\n"  # the shell's prompt starts on its own line
    server.queue(Reply(chunks=openai_events(["no newline here"])))
    piped = kznllm(tmp_path, *on(server), "-m", "m", "q")
    assert piped.stdout == "no newline here"  # byte-exact where a program reads it


def test_presets_columns_line_up_whatever_the_widths(tmp_path: Path):
    config = tmp_path / "config" / "kznllm"
    config.mkdir(parents=True)
    (config / "presets.toml").write_text(
        '[[presets]]\nid = "a-very-long-preset-identifier-x"\nprovider = "completions"\n'
        'model = "m"\nbase_url = "http://127.0.0.1:9/v1"\napi_key = false\n'
    )
    res = kznllm(tmp_path, "presets")
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    starts = {header.index(word) for word in ("provider", "model", "key")}
    for row in rows:
        for start in starts:
            assert row[start - 2 : start] == "  " and row[start] != " ", (row, start)
    assert not any(line.endswith(" ") for line in res.stdout.splitlines())


def test_history_names_modes_as_the_user_knows_them(tmp_path: Path):
    assert kznllm(tmp_path, "what?").returncode == 0
    listed = kznllm(tmp_path, "history").stdout
    assert " insert " in listed and " yap " not in listed
    entry_id = entries(tmp_path)[0].id
    shown = kznllm(tmp_path, "history", "show", str(entry_id)).stdout
    assert "mode:        insert" in shown


def test_render_of_the_demo_shows_no_port_of_a_server_started_for_nothing(tmp_path: Path):
    res = kznllm(tmp_path, "render", "hello")
    assert res.returncode == 0, res.stderr
    assert "`POST http://127.0.0.1:<port>/v1/chat/completions`" in res.stdout
