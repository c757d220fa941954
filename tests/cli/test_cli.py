"""`kznllm fill` as a user runs it: a subprocess against a loopback server.

stdout carries the answer's text, byte for byte, and nothing else; errors go to
stderr with a non-zero exit code.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kznllm_py.stream import demo_server
from tests import cli_env
from tests.servers import (
    LoopbackServer,
    Reply,
    anthropic_events,
    free_port_refusing,
    json_reply,
    openai_events,
)

KEY_VAR = "KZN_TEST_CLI_KEY"
KEY = "sk-cli-test-5up3r-s3cr3t"
TEXTS = ["héllo", " wörld\n", "\tline ✓\r\n", "🎉 done"]
WHOLE = "".join(TEXTS)


def clean_env(**extra: str) -> dict[str, str]:
    return cli_env.clean_env("OPENAI_API_KEY", "ANTHROPIC_API_KEY", KEY_VAR, **extra)


def fill(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "fill", *args],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(**{KEY_VAR: KEY}) if env is None else env,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def custom(provider: str, base_url: str, api_key: str = KEY_VAR) -> list[str]:
    return [
        "--provider",
        provider,
        "--model",
        f"{provider}-cli-model",
        "--base-url",
        base_url,
        "--api-key",
        api_key,
    ]


def events(provider: str, texts: list[str], **kw) -> list[bytes]:
    return openai_events(texts, **kw) if provider == "openai" else anthropic_events(texts, **kw)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stdout_is_exactly_the_text(provider, server, tmp_path):
    server.queue(Reply(chunks=events(provider, TEXTS)))
    res = fill(tmp_path, *custom(provider, server.base_url), "say hello")
    assert res.returncode == 0, res.stderr
    assert res.stdout == WHOLE.encode("utf-8")
    assert res.stderr == b""
    [req] = server.requests
    assert req.body["model"] == f"{provider}-cli-model"
    assert req.body["stream"] is True
    if provider == "openai":
        assert req.path == "/v1/chat/completions"
        assert req.headers["authorization"] == f"Bearer {KEY}"
        assert req.body["messages"][-1]["content"].endswith("say hello")
    else:
        assert req.path == "/v1/messages"
        assert req.headers["x-api-key"] == KEY
        assert req.headers["anthropic-version"]
        assert req.body["messages"][-1]["content"].endswith("<request>\nsay hello\n</request>")


def test_builtin_preset_with_a_base_url_override(server, tmp_path):
    """--preset gpt-4o-mini keeps the preset's model, key variable and params."""
    server.queue(Reply(chunks=openai_events(["ok"])))
    env = clean_env(OPENAI_API_KEY=KEY)
    res = fill(tmp_path, "--preset", "gpt-4o-mini", "--base-url", server.base_url, "q", env=env)
    assert (res.returncode, res.stdout, res.stderr) == (0, b"ok", b"")
    body = server.requests[0].body
    assert body["model"] == "gpt-4o-mini"
    assert body["stream_options"] == {"include_usage": True}
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_selection_file_is_sent_in_replace_mode(server, tmp_path):
    selection = "def add(a, b):\n    return a+b  # ünïcode ✓\n"
    (tmp_path / "sel.py").write_text(selection, encoding="utf-8")
    answer = "def add(a: int, b: int) -> int:\n    return a + b\n"
    server.queue(Reply(chunks=openai_events([answer[:10], answer[10:]])))
    res = fill(
        tmp_path,
        *custom("openai", server.base_url),
        "--selection-file",
        "sel.py",
        "--filetype",
        "python",
        "add type hints",
    )
    assert (res.returncode, res.stderr) == (0, b"")
    assert res.stdout == answer.encode()
    messages = server.requests[0].body["messages"]
    system, user = messages[0]["content"], messages[-1]["content"]
    assert f"<selection>\n{selection}\n</selection>" in user
    assert user.endswith("add type hints")
    assert "replaces the user's selection" in system
    assert "python" in system


def test_without_selection_file_it_is_not_replace_mode(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["x"])))
    res = fill(tmp_path, *custom("openai", server.base_url), "explain")
    assert res.returncode == 0
    messages = server.requests[0].body["messages"]
    assert "<selection>" not in messages[-1]["content"]
    assert "replaces the user's selection" not in messages[0]["content"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_http_error_goes_to_stderr(provider, server, tmp_path):
    if provider == "openai":
        body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    else:
        body = {
            "type": "error",
            "error": {"type": "authentication_error", "message": "Incorrect API key provided"},
        }
    server.queue(json_reply(401, body))
    res = fill(tmp_path, *custom(provider, server.base_url), "q")
    assert res.returncode == 1
    assert res.stdout == b""
    err = res.stderr.decode()
    assert err.startswith("kznllm: ")
    assert "HTTP 401" in err
    assert "Incorrect API key provided" in err
    assert KEY not in err


def test_connection_refused(tmp_path):
    port = free_port_refusing()
    res = fill(tmp_path, *custom("openai", f"http://127.0.0.1:{port}/v1"), "q")
    assert res.returncode == 1
    assert res.stdout == b""
    assert res.stderr.decode().strip() == (
        f"kznllm: could not connect to 127.0.0.1:{port}: connection refused"
    )


def test_missing_key_names_the_variable(server, tmp_path):
    res = fill(tmp_path, *custom("anthropic", server.base_url, "KZN_TEST_CLI_UNSET"), "q")
    assert res.returncode != 0
    assert res.stdout == b""
    err = res.stderr.decode()
    assert "KZN_TEST_CLI_UNSET" in err
    assert "set KZN_TEST_CLI_UNSET" in err and "API key is missing" in err
    assert server.requests == []


def test_partial_text_then_error(server, tmp_path):
    chunks = openai_events(["part", "ial", "never"])
    server.queue(Reply(chunks=chunks[:3], end="disconnect"))
    res = fill(tmp_path, *custom("openai", server.base_url), "q")
    assert res.returncode == 1
    assert res.stdout == b"partial"
    assert b"closed the connection mid-answer" in res.stderr


def test_a_turned_away_request_is_said_on_stderr_and_the_answer_comes_once(server, tmp_path):
    busy = json_reply(429, {"error": {"message": "busy"}}, headers={"Retry-After": "0"})
    server.queue(busy, Reply(chunks=openai_events(["fine"])))
    res = fill(tmp_path, *custom("openai", server.base_url), "--retries", "2", "q")
    assert (res.returncode, res.stdout) == (0, b"fine")
    assert res.stderr == b"kznllm: openai error (HTTP 429): busy; trying again in 0 s\n"
    assert len(server.requests) == 2


def test_stall_timeout_option(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["part"])[:2], end="stall"))
    res = fill(tmp_path, *custom("openai", server.base_url), "--stall-timeout", "0.3", "q")
    assert res.returncode == 1
    assert res.stdout == b"part"
    assert b"stalled" in res.stderr
    assert b"0.3 s" in res.stderr


def test_truncated_answer_is_flagged_on_stderr(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["cut sh"], finish="length")))
    res = fill(tmp_path, *custom("openai", server.base_url), "q")
    assert res.returncode == 0
    assert res.stdout == b"cut sh"
    assert b"truncated" in res.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--preset", "no-such-preset", "q"], "unknown preset 'no-such-preset'"),
        (["--base-url", "http://127.0.0.1:9/v1", "q"], "give at least --provider and --model"),
        (["--selection-file", "missing.txt", "q"], "missing.txt"),
    ],
)
def test_usage_errors_exit_2(args, says, tmp_path):
    res = fill(tmp_path, *args)
    assert res.returncode == 2
    assert res.stdout == b""
    assert says in res.stderr.decode()


def test_preset_demo_works_offline(tmp_path):
    """No key, and every proxy pointing at a dead port: the demo model is in-process on
    loopback, which is never proxied."""
    dead = f"http://127.0.0.1:{free_port_refusing()}"
    env = clean_env(HTTP_PROXY=dead, HTTPS_PROXY=dead, ALL_PROXY=dead)
    res = fill(tmp_path, "--preset", "demo", "what is this?", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    want = demo_server.answer_for({"messages": [{"role": "user", "content": "what is this?"}]})
    assert res.stdout == want.encode()
    assert res.stdout.startswith(b"This is the kznllm offline demo model, not a real LLM.")
    assert b"'what is this?'" in res.stdout


def test_default_preset_without_keys_is_the_demo(tmp_path):
    (tmp_path / "sel.lua").write_text("local x = 1\n", encoding="utf-8")
    res = fill(
        tmp_path, "--selection-file", "sel.lua", "--filetype", "lua", "rename x", env=clean_env()
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"-- kznllm demo model (offline): rename x\nlocal x = 1\n"


def running_fill(server: LoopbackServer, tmp_path: Path) -> subprocess.Popen[bytes]:
    """`kznllm fill` against `server`, its stdout and stderr piped."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kznllm_py.cli.main",
            "fill",
            *custom("openai", server.base_url),
            "q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=clean_env(**{KEY_VAR: KEY}),
    )


def read_until(proc: subprocess.Popen[bytes], want: bytes, timeout: float = 10) -> bytes:
    """What `proc` writes to stdout, read until it is `want` (within `timeout` seconds)."""
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while out != want:
            assert sel.select(timeout=max(0.0, deadline - time.monotonic())), out
            out += os.read(proc.stdout.fileno(), 1024)
    return out


def test_ctrl_c_keeps_the_partial_text_and_closes_the_stream(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["part", "ial", "never"]), pause_after=3))
    proc = running_fill(server, tmp_path)
    try:
        server.wait_paused(timeout=10)
        out = read_until(proc, b"partial")
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert out + rest == b"partial"
    assert err == b"kznllm: cancelled\n"
    server.wait_client_gone(timeout=10)
    assert server.clients_gone_mid_response == 1


def test_reader_gone_ends_quietly(server, tmp_path):
    """`kznllm fill ... | head -c 7`: no traceback, no "internal error", the stream closed."""
    # The reply stalls after its last chunk, so the connection can only end by the client
    # going away (a finished reply could race the client's exit and be closed server-side).
    server.queue(Reply(chunks=openai_events(["part", "ial", "never"]), pause_after=3, end="stall"))
    proc = running_fill(server, tmp_path)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        server.wait_paused(timeout=10)
        read_until(proc, b"partial")
        proc.stdout.close()  # the reader goes away
        server.resume()
        err = proc.stderr.read()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == 141
    assert err == b""
    server.wait_client_gone(timeout=10)


def fill_piped(tmp_path: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "fill", *args],
        capture_output=True,
        cwd=tmp_path,
        env=clean_env(**{KEY_VAR: KEY}),
        input=stdin,
        timeout=30,
    )


SOURCE = "import os\n\ndef add(a, b):\n    return a+b\n\nprint(add(1, 2))\n"


@pytest.mark.parametrize("how", ["piped", "dash"])
def test_piped_stdin_is_the_selection_and_the_range_says_where_it_sits(server, tmp_path, how):
    (tmp_path / "f.py").write_text(SOURCE)
    server.queue(Reply(chunks=openai_events(["def add(a: int, b: int) -> int:\n", "    ..."])))
    lines = "".join(SOURCE.splitlines(keepends=True)[2:4])  # sed -n 3,4p f.py
    extra = ["--selection-file", "-"] if how == "dash" else []
    res = fill_piped(
        tmp_path, lines.encode(), *custom("openai", server.base_url), *extra,
        "--file", "f.py", "--range", "3:4", "add hints",
    )  # fmt: skip
    assert (res.returncode, res.stderr) == (0, b"")
    # whole lines replaced: the output ends with their line break, as the buffer would
    assert res.stdout == b"def add(a: int, b: int) -> int:\n    ...\n"
    system = server.requests[0].body["messages"][0]["content"]
    user = server.requests[0].body["messages"][-1]["content"]
    prompt = system + user
    assert "    return a+b" in prompt
    assert prompt.count("def add(a, b):") == 1  # the selection is not also in the context
    assert "import os" in prompt and "print(add(1, 2))" in prompt


def test_the_range_alone_is_the_selection_and_line_places_a_yap(server, tmp_path):
    (tmp_path / "f.py").write_text(SOURCE)
    server.queue(Reply(chunks=openai_events(["x"])), Reply(chunks=openai_events(["y"])))
    res = fill(tmp_path, *custom("openai", server.base_url), "--file", "f.py", "--range", "6", "q")
    assert (res.returncode, res.stdout) == (0, b"x\n")
    assert "print(add(1, 2))" in server.requests[0].body["messages"][-1]["content"]
    res = fill(tmp_path, *custom("openai", server.base_url), "--file", "f.py", "--line", "2", "q")
    assert (res.returncode, res.stdout) == (0, b"y")  # yap: the text as it came


def test_a_range_past_the_end_or_without_a_file_is_a_usage_error(server, tmp_path):
    (tmp_path / "f.py").write_text(SOURCE)
    res = fill(
        tmp_path, *custom("openai", server.base_url), "--file", "f.py", "--range", "5:99", "q"
    )
    assert res.returncode == 2 and b"past the end of f.py (6 lines)" in res.stderr
    res = fill(tmp_path, *custom("openai", server.base_url), "--range", "1:2", "q")
    assert res.returncode == 2 and b"--range and --line need --file" in res.stderr
    res = fill(tmp_path, *custom("openai", server.base_url), "--range", "3:1", "q")
    assert res.returncode == 2 and b"want N or A:B" in res.stderr
    assert server.requests == []
