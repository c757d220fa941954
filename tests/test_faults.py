"""The fault matrix (docs/FAULTS.md): every way a request can go wrong, each with the
message the user reads, the buffer state and the history status it promises.

Core rows run the real client (`new_client()`) against a `LoopbackServer`; editor rows
drive a real embedded Neovim with the plugin, as tests/nvim/test_editor.py does. Rows that
other test files already prove are cited there, not repeated here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from kznllm_py import secrets, settings
from kznllm_py.errors import ConfigError
from kznllm_py.fill import job as payload
from kznllm_py.history import Entry, HistoryStore
from kznllm_py.prompt.prompts import FillContext, search_path
from kznllm_py.stream.answer import DEFAULT_MAX_RESPONSE_BYTES
from tests import cli_env
from tests.nvim_child import Child
from tests.servers import (
    LoopbackServer,
    Reply,
    blackhole_port,
    fixed_chunks,
    free_port_refusing,
    http_response,
    json_reply,
    openai_events,
)
from tests.streams import generate, loopback_preset, provider_events
from tests.waiting import wait_until

PROVIDERS = ("openai", "anthropic")
CTX = FillContext(mode="yap", query="q")
MB = 1024 * 1024


pytestmark = pytest.mark.usefixtures("no_proxy")


# one generation, one try, with this module's context
run = partial(generate, ctx=CTX)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# == core rows ============================================================================

# -- no answer ----------------------------------------------------------------------------


async def test_unresolvable_host_says_the_name_does_not_resolve(client):
    out, text = await run(client, loopback_preset("openai", "http://kznllm-fault-test.invalid/v1"))
    assert (out.status, text) == ("error", "")
    assert out.error is not None
    prefix = "could not connect to kznllm-fault-test.invalid: the host name does not resolve ("
    assert out.error.startswith(prefix) and out.error.endswith(")")


# -- HTTP errors: every status with a JSON, an HTML and an empty body --------------------

STATUSES = [400, 401, 403, 404, 413, 429, 500, 503]


NO_KEY = "preset 'test' sends no key (its api_key is unset) and the server wants one: "


def error_body(provider: str, status: int) -> tuple[dict[str, Any], str]:
    """The provider's own error body, and the text the message must carry from it."""
    message = f"provider says {status}: quota or key or model problem"
    if provider == "openai":
        return {"error": {"message": message, "type": "invalid_request_error"}}, message
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}, f"{kind}: {message}"


def nginx_page(status: int) -> bytes:
    line = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<!DOCTYPE html>\r\n<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n"
        f"<center><h1>{line}</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
        "<script>document.write('never shown')</script></body>\r\n</html>\r\n"
    ).encode()


@pytest.mark.parametrize("body", ["json", "html", "empty"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_http_error_message_has_the_status_and_the_providers_text(
    provider: str, status: int, body: str, client
):
    with LoopbackServer() as server:
        if body == "json":
            obj, says = error_body(provider, status)
            server.queue(json_reply(status, obj))
        elif body == "html":
            server.queue(Reply(raw=http_response(status, nginx_page(status))))
            says = f"{status} {HTTPStatus(status).phrase}"  # the page's title, no markup
        else:
            server.queue(Reply(raw=http_response(status, b"")))
            says = HTTPStatus(status).phrase  # the status line's reason
        out, text = await run(client, loopback_preset(provider, server.base_url))
        assert (out.status, text, out.received) == ("error", "", False)
        # a key turned away: the fix before the provider's words (this preset sends none)
        fix = NO_KEY if status in (401, 403) else ""
        assert out.error == f"{provider} error (HTTP {status}): {fix}{says}"
        assert len(server.requests) == 1  # one try here; retries have their own tests


# -- what the stream carries ------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_invalid_utf8_bytes_become_replacement_characters_and_the_rest_is_exact(
    provider: str, client
):
    raw = b"".join(provider_events(provider, ["ok ", "@BAD@", " caf\u00e9 \u2713"]))
    # two invalid bytes, and a truncated 3-byte sequence (its lead and one continuation)
    raw = raw.replace(b"@BAD@", b"\xff\xfe|\xe2\x9c|")
    with LoopbackServer() as server:
        server.queue(Reply(chunks=fixed_chunks(raw, 5)))  # bad bytes split across reads too
        out, text = await run(client, loopback_preset(provider, server.base_url))
    assert (out.status, out.error) == ("ok", None)
    assert text == "ok \ufffd\ufffd|\ufffd| caf\u00e9 \u2713"


async def test_a_single_10_mb_event_arrives_whole_and_fast_under_a_raised_cap(client):
    big = "a" + "\u00e9" * (5 * MB)  # 10 MB + 1 byte of UTF-8, one JSON string
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events([big])))
        t0 = time.perf_counter()
        out, text = await run(
            client, loopback_preset("openai", server.base_url), max_response_bytes=16 * MB
        )
        elapsed = time.perf_counter() - t0
    assert (out.status, out.error) == ("ok", None)
    assert text == big
    assert elapsed < 5, elapsed


async def test_a_single_10_mb_event_is_stopped_at_the_default_1_mb_cap(client):
    big = "a" + "\u00e9" * (5 * MB)
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events([big])))
        out, text = await run(client, loopback_preset("openai", server.base_url))
    assert out.status == "error"
    assert out.error == "response stopped at the 1 MB cap (max_response_bytes)"
    # whole characters only: 1 + 2 * 524287 bytes, the next "é" would cross the cap
    assert text == "a" + "\u00e9" * (MB // 2 - 1)
    assert len(text.encode()) == MB - 1


async def test_100000_tiny_events_arrive_byte_exact_and_fast(client):
    head, *_, finish, done = openai_events(["x"])
    tokens = [str(i % 10) for i in range(100_000)]
    body = b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % t.encode() for t in tokens
    )
    with LoopbackServer() as server:
        server.queue(Reply(chunks=[head, *fixed_chunks(body, 64 * 1024), finish, done]))
        t0 = time.perf_counter()
        out, text = await run(client, loopback_preset("openai", server.base_url))
        elapsed = time.perf_counter() - t0
    assert (out.status, out.error) == ("ok", None)
    assert text == "".join(tokens)
    assert elapsed < 5, elapsed


# -- the response size cap --------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_answer_past_the_cap_is_stopped_kept_up_to_the_cap_and_its_stream_closed(
    provider: str, client
):
    with LoopbackServer() as server:
        # 30 events of 100 bytes; the server holds the rest after 20 (2000 bytes, past
        # the cap): only the client closing the stream ends that wait
        server.queue(Reply(chunks=provider_events(provider, ["x" * 100] * 30), pause_after=25))
        out, text = await run(
            client, loopback_preset(provider, server.base_url), max_response_bytes=1000
        )
        await server.wait_client_gone_async(timeout=5)
        assert server.clients_gone_mid_response == 1
    assert out.status == "error"
    assert out.error == "response stopped at the 1000 bytes cap (max_response_bytes)"
    assert text == "x" * 1000
    assert out.text_chars == 1000


async def test_reasoning_counts_toward_the_cap(client):
    chunks = [
        b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"%s"}}]}\n\n' % (b"r" * 50)
    ] * 3 + openai_events(["never"])
    with LoopbackServer() as server:
        server.queue(Reply(chunks=chunks))
        out, text = await run(
            client, loopback_preset("openai", server.base_url), max_response_bytes=120
        )
    assert (out.status, text) == ("error", "")
    assert out.error == "response stopped at the 120 bytes cap (max_response_bytes)"
    assert out.reasoning == "r" * 120


async def test_an_answer_of_exactly_the_cap_is_not_stopped(client):
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["\u00e9" * 8, "abcd"])))  # 20 bytes
        out, text = await run(
            client, loopback_preset("openai", server.base_url), max_response_bytes=20
        )
    assert (out.status, out.error, text) == ("ok", None, "\u00e9" * 8 + "abcd")


async def test_text_held_back_by_the_fence_filter_is_capped_too(client):
    ctx = FillContext(mode="replace", query="q", selection="s")
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["```py\n", "0123456789", "\n```"])))
        out, text = await run(
            client, loopback_preset("openai", server.base_url), ctx=ctx, max_response_bytes=4
        )
    assert (out.status, text) == ("error", "0123")
    assert out.error == "response stopped at the 4 bytes cap (max_response_bytes)"


def test_the_cap_comes_with_the_settings_and_is_validated_there():
    base = {"id": 1, "mode": "yap", "query": "q"}
    assert payload.parse(base).max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == MB
    s = settings.from_config({"max_response_bytes": 4096})
    assert payload.parse(base, s).max_response_bytes == 4096
    for bad in (0, -1, "1MB", 1.5, True):
        s = settings.from_config({"max_response_bytes": bad})
        assert s.problems == (
            "setup({ max_response_bytes }): max_response_bytes must be a whole number of "
            f"bytes, 1 or more, not {bad!r}; the default is used",
        )
        assert payload.parse(base, s).max_response_bytes == MB


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return cli_env.kznllm(*args, cwd=tmp, env=env, timeout=30)


def test_cli_max_response_bytes_stops_the_answer_with_a_message(tmp_path: Path):
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["héllo ", "wörld"])))
        res = _cli(
            tmp_path,
            "fill",
            *("--provider", "openai", "--model", "m", "--base-url", server.base_url),
            *("--max-response-bytes", "8", "--no-project", "q"),
        )
    assert res.returncode == 1
    assert res.stdout == "héllo ".encode() + b"w"  # 7 + 1 bytes: stopped at 8
    assert (
        res.stderr.decode() == "kznllm: response stopped at the 8 bytes cap (max_response_bytes)\n"
    )
    bad = _cli(tmp_path, "fill", "--max-response-bytes", "0", "q")
    assert bad.returncode == 2
    assert b"--max-response-bytes: want a whole number of bytes, 1 or more, not '0'" in bad.stderr


# -- the key command --------------------------------------------------------------------


async def test_a_hanging_key_command_is_killed_with_its_children_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(secrets, "_cmd_cache", {})
    monkeypatch.setattr(secrets, "CMD_TIMEOUT_S", 0.3)
    pid_file = tmp_path / "child.pid"
    spec = f"cmd:sleep 30 & echo $! > {pid_file}; wait"
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as err:
        await secrets.resolve(spec, preset_id="p")
    assert time.monotonic() - t0 < 3
    assert str(err.value) == "the api_key command of preset 'p' did not finish within 0.3 s"
    child = int(pid_file.read_text())
    await asyncio.to_thread(wait_until, lambda: not alive(child), 5, "the command's child to die")


# -- project files (.kzn) never run anything ----------------------------------------------

CMD_CONFIGS = {
    # every form a project could try to pass config in; none of them is read as config
    "presets.json": '[{{"id": "test", "provider": "openai", "api_key": "cmd:{cmd}"}}]',
    "presets.lua": "return {{ {{ id = 'test', api_key = 'cmd:{cmd}' }} }}",
    "kznllm.lua": "require('kznllm').setup({{ presets = {{ {{ id = 'test', "
    "api_key = 'cmd:{cmd}' }} }} }})",
    "config.toml": 'api_key = "cmd:{cmd}"\n',
    ".env": "OPENAI_API_KEY=$({cmd})\napi_key=cmd:{cmd}\n",
    ".nvim.lua": "vim.fn.system('{cmd}')",
    "templates/openai/preset.json": '{{"api_key": "cmd:{cmd}"}}',
}


def kzn_project(root: Path, marker: Path) -> Path:
    cmd = f"touch {marker}"
    for name, text in CMD_CONFIGS.items():
        path = root / ".kzn" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(cmd=cmd))
    return root


async def test_a_kzn_folder_cannot_supply_a_key_command_to_a_fill(tmp_path: Path, client):
    marker = tmp_path / "pwned"
    project = kzn_project(tmp_path / "repo", marker)
    job = payload.with_project_files(
        payload.parse({"id": 1, "mode": "yap", "query": "q", "cwd": str(project), "presets": []})
    )
    # the files are read as text for the prompt, never as settings
    assert {f.path for f in job.ctx.context_files} >= {".kzn/presets.json", ".kzn/.env"}
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["fine"])))
        preset = loopback_preset("openai", server.base_url)  # a user preset: no key
        out, text = await run(client, preset, ctx=job.ctx, search_dirs=job.search_dirs)
        assert (out.status, text) == ("ok", "fine")
        assert "authorization" not in server.requests[0].headers
    assert not marker.exists()


def test_a_kzn_folder_cannot_supply_presets_or_key_commands_to_the_cli(tmp_path: Path):
    marker = tmp_path / "pwned"
    project = kzn_project(tmp_path / "repo", marker)
    listed = _cli(project, "presets", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "test" not in {p["id"] for p in json.loads(listed.stdout)}
    assert all(p["key"] != "a key command (cmd:)" for p in json.loads(listed.stdout))
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["fine"])))
        filled = _cli(
            project,
            "fill",
            *("--provider", "openai", "--model", "m", "--base-url", server.base_url, "q"),
        )
    assert (filled.returncode, filled.stdout) == (0, b"fine"), filled.stderr
    assert not marker.exists()


SANDBOX_ESCAPES = [
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self.__init__.__globals__['__builtins__']['__import__']('os').system('touch MARKER') }}",
    "{{ joiner.__init__.__globals__.os.system('touch MARKER') }}",
]


@pytest.mark.parametrize("escape", SANDBOX_ESCAPES)
async def test_a_project_template_cannot_run_code_and_nothing_is_sent(
    escape: str, tmp_path: Path, client
):
    marker = tmp_path / "pwned"
    system = tmp_path / "repo" / ".kzn" / "templates" / "openai" / "system.jinja"
    system.parent.mkdir(parents=True)
    system.write_text("You write code.\n" + escape.replace("MARKER", str(marker)) + "\n")
    dirs = search_path(project_kzn=tmp_path / "repo" / ".kzn")
    with LoopbackServer() as server:
        out, text = await run(client, loopback_preset("openai", server.base_url), search_dirs=dirs)
        assert server.requests == []
    assert (out.status, text) == ("error", "")
    assert out.error is not None
    assert out.error.startswith(f"template {system}:2: SecurityError: ")
    assert not marker.exists()


# == editor rows ==========================================================================

SELECTION = ["héllo ✓", "wörld", "keep"]


def db_path(nvim: Child) -> Path:
    return Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"


def history_entry(nvim: Child, n: int = 1, *, query: str | None = None) -> Entry:
    """The newest of `n` finished history entries (of those asking `query`, if given)."""

    def entries() -> list | None:
        path = db_path(nvim)
        if not path.exists():
            return None
        rows = [r for r in HistoryStore(path).list() if query is None or r.query == query]
        return rows if len(rows) >= n and all(r.status != "running" for r in rows) else None

    newest = nvim.wait_for(entries, what=f"{n} finished history entries")[0]
    entry = HistoryStore(db_path(nvim)).get(newest.id)
    assert entry is not None
    return entry


def marks(nvim: Child, buf: int = 0) -> list[str]:
    """The virtual texts of the plugin's extmarks (the 'partial output' note)."""
    return nvim.marks(buf)


def modified(nvim: Child) -> bool:
    return bool(nvim.lua("return vim.bo.modified"))


def shown(nvim: Child) -> list[str]:
    return [m for m in nvim.messages() if m.startswith("kznllm: ")]


NO_PROXY_ENV = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": ""}


@pytest.fixture
def nvim(tmp_path: Path) -> Iterator[Child]:
    child = Child(tmp_path, env=NO_PROXY_ENV)
    try:
        yield child
    finally:
        child.close()


@pytest.fixture(scope="module")
def _one_nvim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    child = Child(tmp_path_factory.mktemp("faults-nvim"), env=NO_PROXY_ENV)
    try:
        yield child
    finally:
        child.close()


@pytest.fixture
def reused(_one_nvim: Child) -> Child:
    """One Neovim (and host) for the rows that differ only by the fault, reset between
    them: no events or messages, the default options, a fresh buffer."""
    child = _one_nvim
    child.nvim.command("enew!")
    child.lua(
        "_G.kzn_events = {} _G.kzn_msgs = {} require('kznllm').setup({ retries = 3,"
        " timeouts = { connect = 10, stall = 60 } })"
    )
    assert child.lua("return require('kznllm.job').running()") == 0
    return child


# -- failures before the first token: the selection stays, byte for byte ----------------

PRE_TOKEN = [
    "refused",
    "unresolvable",
    "connect-timeout",
    "stall-before-body",
    "http-401-json",
    "http-503-html",
    "http-413-empty",
    "key-cmd-fails",
]


@pytest.mark.parametrize("fault", PRE_TOKEN)
def test_failure_before_the_first_token_leaves_the_selection_and_records_the_error(
    fault: str, reused: Child
):
    nvim = reused
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(LoopbackServer())
        base_url, extra = server.base_url, {}
        timeouts = {"connect": 5, "stall": 5}
        here = f"127.0.0.1:{server.port}"
        if fault == "refused":
            port = free_port_refusing()
            base_url = f"http://127.0.0.1:{port}/v1"
            want = f"could not connect to 127.0.0.1:{port}: connection refused"
        elif fault == "unresolvable":
            base_url = "http://kznllm-fault-test.invalid/v1"
            want = (
                "could not connect to kznllm-fault-test.invalid: the host name does not resolve ("
            )
        elif fault == "connect-timeout":
            port = stack.enter_context(blackhole_port())
            base_url, timeouts["connect"] = f"http://127.0.0.1:{port}/v1", 0.3
            want = f"could not connect to 127.0.0.1:{port}: no answer within 0.3 s"
        elif fault == "stall-before-body":
            server.queue(Reply(chunks=[], end="stall"))
            timeouts["stall"] = 0.3
            want = f"{here} sent nothing for 0.3 s (stalled); the limit is the stall timeout option"
        elif fault == "http-401-json":
            server.queue(json_reply(401, {"error": {"message": "Incorrect API key provided"}}))
            want = "openai error (HTTP 401): " + NO_KEY + "Incorrect API key provided"
        elif fault == "http-503-html":
            server.queue(Reply(raw=http_response(503, nginx_page(503))))
            want = "openai error (HTTP 503): 503 Service Unavailable"
        elif fault == "http-413-empty":
            server.queue(Reply(raw=http_response(413, b"")))
            want = f"openai error (HTTP 413): {HTTPStatus(413).phrase}"
        else:
            extra = {"api_key": "cmd:echo sk-fault-secret; echo 'vault is locked' >&2; exit 3"}
            want = "the api_key command of preset 'test' failed (exit 3): vault is locked"
        nvim.use_server(base_url, **extra)
        nvim.lua("require('kznllm').setup({ retries = 1, timeouts = ... })", timeouts)
        nvim.set_lines(SELECTION)
        nvim.lua("vim.bo.modified = false")
        nvim.nvim.command(f"1,2KznFill rewrite {fault}")
        done = nvim.wait_done()[0]
        if fault.startswith("key-"):
            assert server.requests == []
    assert done["status"] == "error"
    if fault == "unresolvable":
        assert done["error"].startswith(want) and done["error"].endswith(")")
        want = done["error"]
    assert done["error"] == want
    assert nvim.lines() == SELECTION
    assert not modified(nvim)
    assert marks(nvim) == []  # the pending highlight is gone, no partial mark
    assert shown(nvim) == [f"kznllm: {want} (buffer unchanged)"]
    entry = history_entry(nvim, query=f"rewrite {fault}")
    assert (entry.status, entry.error, entry.response) == ("error", want, "")
    assert entry.selection == "héllo ✓\nwörld"
    assert "sk-fault-secret" not in json.dumps(entry.to_dict())


def test_a_missing_env_key_is_refused_at_the_keypress_and_nothing_is_sent(reused: Child):
    # once the host has said which presets lack their key (its configure reply, at its
    # first start or prestart), the editor refuses before anything starts; before that
    # the host says the same when the fill reaches it (test_client_http, test_cli)
    nvim = reused
    with LoopbackServer() as server:
        nvim.use_server_without_key(server.base_url, "KZN_FAULT_UNSET_KEY")
        nvim.set_lines(SELECTION)
        nvim.lua("vim.bo.modified = false")
        nvim.nvim.command("1,2KznFill rewrite key-env-missing")
        want = "kznllm: set KZN_FAULT_UNSET_KEY for preset test: its API key is missing"
        nvim.wait_for(lambda: any(m.startswith(want) for m in shown(nvim)), what="the refusal")
        assert server.requests == []
    assert nvim.lines() == SELECTION
    assert not modified(nvim)
    assert marks(nvim) == []


# -- failures mid-stream: the partial text stays, marked, and history has it --------------

MID_STREAM = ["stall", "disconnect", "malformed-json", "over-the-cap"]


@pytest.mark.parametrize("fault", MID_STREAM)
def test_failure_mid_stream_keeps_and_marks_the_partial_text_and_records_it(
    fault: str, reused: Child
):
    nvim = reused
    with LoopbackServer() as server:
        here = f"127.0.0.1:{server.port}"
        head = openai_events(["part", "ial"], done=False)[:3]  # role, "part", "ial"
        partial = "partial"
        if fault == "stall":
            server.queue(Reply(chunks=head, end="stall"))
            nvim.lua("require('kznllm').setup({ timeouts = { stall = 0.3 } })")
            want = f"{here} sent nothing for 0.3 s (stalled); the limit is the stall timeout option"
        elif fault == "disconnect":
            server.queue(Reply(chunks=head, end="disconnect"))
            want = f"{here} closed the connection mid-answer: "
        elif fault == "malformed-json":
            server.queue(Reply(chunks=[*head, b"data: {not json\n\n"], end="stall"))
            want = "openai: malformed JSON in a stream event: '{not json'"
        else:  # the default 1 MB cap, in lines of 1,024 bytes
            line = "x" * 1023 + "\n"
            server.queue(Reply(chunks=openai_events([line * 64] * 20)))  # 1.25 MB
            partial = line * 1024  # 1,048,576 bytes: the cap exactly
            want = "response stopped at the 1 MB cap (max_response_bytes)"
        nvim.use_server(server.base_url, placement="cursor")
        nvim.set_lines(["start", "end"])
        nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 4})")
        nvim.nvim.command(f"KznFill go {fault}")
        done = nvim.wait_done()[0]
    assert done["status"] == "error"
    if fault == "disconnect":
        assert done["error"].startswith(want)
        want = done["error"]
    assert done["error"] == want
    assert nvim.text() == "start" + partial + "\nend"
    assert marks(nvim) == [" ⚠ kznllm: partial output (error)"]
    assert shown(nvim) == [f"kznllm: {want} (partial output kept)"]
    entry = history_entry(nvim, query=f"go {fault}")
    assert (entry.status, entry.error, entry.response) == ("error", want, partial)


# -- the editor stops a stream: wipe, nomodifiable, undo ---------------------------------


def test_a_buffer_made_nomodifiable_mid_stream_is_reported_in_one_clean_line(nvim: Child):
    with LoopbackServer() as server:
        nvim.fill_paused(server, ["a", "b"])
        nvim.lua("vim.bo.modifiable = false")
        server.resume()
        done = nvim.wait_done()[0]
    assert done["error"] == "could not write to the buffer: Buffer is not 'modifiable'"


@pytest.mark.parametrize("stop", ["wipe", "nomodifiable", "undo"])
def test_the_editor_stopping_a_stream_is_one_message_and_history_says_cancelled(
    stop: str, nvim: Child
):
    with LoopbackServer() as server:
        # "one " then, once released, "two" and a stall: only the client's hang-up ends it
        chunks = openai_events(["one ", "two"], done=False)[:3]
        server.queue(Reply(chunks=chunks, pause_after=2, end="stall"))
        nvim.use_server(server.base_url, placement="cursor")
        nvim.nvim.command("enew")
        buf = nvim.nvim.current.buffer.number
        nvim.set_lines(["base"])
        nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 3})")
        nvim.nvim.command("KznFill go")
        server.wait_paused()
        nvim.wait_for(lambda: nvim.text() == "baseone ", what="the first token")
        if stop == "wipe":
            nvim.nvim.command(f"bwipeout! {buf}")
        elif stop == "nomodifiable":
            nvim.lua("vim.bo.modifiable = false")
        else:
            nvim.feed("u")
            # the undo itself ends the request: no later token is needed to notice it
            nvim.wait_done()
        server.resume()
        done = nvim.wait_done()[0]
        server.wait_client_gone()
    entry = history_entry(nvim)
    if stop == "wipe":
        assert (done["status"], done["error"]) == ("cancelled", "the buffer was closed")
        assert shown(nvim) == ["kznllm: cancelled: the buffer was closed (partial output kept)"]
        assert all(nvim.lines(b.number) == [""] for b in nvim.nvim.buffers)
        assert (entry.status, entry.response) == ("cancelled", "one ")
        return
    if stop == "nomodifiable":
        assert done["status"] == "error"
        assert done["error"].startswith("could not write to the buffer: ")
        assert "Buffer is not 'modifiable'" in done["error"]
        assert shown(nvim) == [f"kznllm: {done['error']} (partial output kept)"]
        assert nvim.lines() == ["baseone "]
    else:
        assert done["status"] == "cancelled"
        assert done["error"] == "undone while streaming; the rest of the answer was dropped"
        # the text was taken back: no "partial output kept", no partial mark on it
        assert shown(nvim) == [
            "kznllm: cancelled: undone while streaming; the rest of the answer was dropped"
        ]
        assert nvim.lines() == ["base"]
        assert marks(nvim) == []
        assert "E790" not in nvim.lua("return vim.v.errmsg")
    # history keeps all the provider sent, the editor's stop reached the host as a cancel
    assert (entry.status, entry.response) == ("cancelled", "one " if stop == "undo" else "one two")


def test_deleting_the_answer_mid_stream_stops_it_and_writes_nothing_elsewhere(
    nvim: Child,
):
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["A", "B\nC"]), pause_after=2))
        nvim.use_server(server.base_url, placement="cursor")
        nvim.set_lines(["one", "two", "three"])
        nvim.lua("vim.api.nvim_win_set_cursor(0, {2, 2})")
        nvim.nvim.command("KznFill q")
        server.wait_paused()
        nvim.wait_for(lambda: nvim.lines() == ["one", "twoA", "three"], what="the first token")
        nvim.feed("2Gdd")  # the line with all of the answer so far
        server.resume()
        done = nvim.wait_done()[0]
    # the rest is not glued to the next line: the answer is gone, so is the stream
    assert (done["status"], done["error"]) == (
        "cancelled",
        "the answer was deleted while streaming; the rest was dropped",
    )
    assert nvim.lines() == ["one", "three"]
    assert shown(nvim) == [
        "kznllm: cancelled: the answer was deleted while streaming; the rest was dropped"
    ]
    assert marks(nvim) == []
    assert history_entry(nvim).response == "AB\nC"
    # the user's edit is its own undo step, the answer another
    nvim.feed("u")
    assert nvim.lines() == ["one", "twoA", "three"]
    nvim.feed("u")
    assert nvim.lines() == ["one", "two", "three"]


# -- two fills at once ------------------------------------------------------------------


def two_paused_answers(nvim: Child, server: LoopbackServer) -> None:
    """Two answers, A1 A2 then B1 B2, each paused after its first token; at the cursor."""
    server.queue(
        Reply(chunks=openai_events(["A1", "A2"]), pause_after=2),
        Reply(chunks=openai_events(["B1", "B2"]), pause_after=2),
    )
    nvim.use_server(server.base_url, placement="cursor")


def test_two_fills_in_one_buffer_each_write_at_their_own_place(nvim: Child):
    with LoopbackServer() as server:
        two_paused_answers(nvim, server)
        nvim.set_lines(["first", "second"])
        nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 4})")
        nvim.nvim.command("KznFill a")
        server.wait_requests(1)
        nvim.lua("vim.api.nvim_win_set_cursor(0, {2, 5})")
        nvim.nvim.command("KznFill b")
        server.wait_paused(n=2)
        nvim.wait_for(lambda: nvim.lines() == ["firstA1", "secondB1"], what="both first tokens")
        server.resume()
        done = nvim.wait_done(2)
    assert [d["status"] for d in done] == ["ok", "ok"]
    assert nvim.lines() == ["firstA1A2", "secondB1B2"]
    assert sorted(HistoryStore(db_path(nvim)).get(e.id).response for e in _entries(nvim, 2)) == [
        "A1A2",
        "B1B2",
    ]


def _entries(nvim: Child, n: int) -> list:
    history_entry(nvim, n)
    return HistoryStore(db_path(nvim)).list()


def test_two_fills_in_two_buffers_and_escape_cancels_only_its_own_buffers(nvim: Child):
    with LoopbackServer() as server:
        two_paused_answers(nvim, server)
        first = nvim.nvim.current.buffer.number
        nvim.set_lines(["a"])
        nvim.nvim.command("KznFill a")
        server.wait_requests(1)
        nvim.nvim.command("enew")
        second = nvim.nvim.current.buffer.number
        nvim.set_lines(["b"])
        nvim.nvim.command("KznFill b")
        server.wait_paused(n=2)
        nvim.wait_for(
            lambda: (nvim.lines(first), nvim.lines(second)) == (["aA1"], ["bB1"]),
            what="both first tokens",
        )
        nvim.feed("<Esc>")  # in the second buffer
        server.wait_client_gone()
        server.resume()
        done = nvim.wait_done(2)
    by_buf = {d["bufnr"]: d["status"] for d in done}
    assert by_buf == {second: "cancelled", first: "ok"}
    assert (nvim.lines(first), nvim.lines(second)) == (["aA1A2"], ["bB1"])


# -- <Esc> before the first token -------------------------------------------------------


def _job_id(nvim: Child) -> int:
    return nvim.wait_for(lambda: nvim.events("KznllmStart"), what="KznllmStart")[-1][1]["id"]


def test_escape_while_connecting_cancels_at_once_and_leaves_the_selection(nvim: Child):
    with blackhole_port() as port:
        nvim.use_server(f"http://127.0.0.1:{port}/v1")
        nvim.set_lines(SELECTION)
        nvim.lua("vim.bo.modified = false")
        nvim.nvim.command("1,2KznFill rewrite")
        # the request is on its way (recorded as running; the connect takes up to 10 s)
        nvim.wait_for(
            lambda: (
                db_path(nvim).exists()
                and [r.status for r in HistoryStore(db_path(nvim)).list()] == ["running"]
            ),
            what="the request to start",
        )
        t0 = time.monotonic()
        nvim.feed("<Esc>")
        done = nvim.wait_done()[0]
        elapsed = time.monotonic() - t0
    assert (done["status"], done.get("error")) == ("cancelled", None)
    assert elapsed < 1.0, elapsed
    assert nvim.lines() == SELECTION and not modified(nvim)
    assert marks(nvim) == []
    assert shown(nvim) == ["kznllm: cancelled (buffer unchanged)"]
    entry = history_entry(nvim)
    assert (entry.status, entry.response, entry.error) == ("cancelled", "", None)


def test_escape_during_a_retry_wait_cancels_at_once_and_sends_no_retry(nvim: Child):
    with LoopbackServer() as server:
        server.queue(
            json_reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "30"})
        )
        nvim.use_server(server.base_url)
        nvim.set_lines(SELECTION)
        nvim.lua("vim.bo.modified = false")
        nvim.nvim.command("1,2KznFill rewrite")
        job = _job_id(nvim)
        note = nvim.wait_for(
            lambda: nvim.lua("local j = require('kznllm.job').jobs[...] return j and j.note", job),
            what="the retry note",
        )
        assert note == "retry in 20 s: openai error (HTTP 429): slow down"
        t0 = time.monotonic()
        nvim.feed("<Esc>")
        done = nvim.wait_done()[0]
        assert time.monotonic() - t0 < 1.0
        assert len(server.requests) == 1
    assert (done["status"], done.get("error")) == ("cancelled", None)
    assert nvim.lines() == SELECTION and not modified(nvim)
    assert shown(nvim) == ["kznllm: cancelled (buffer unchanged)"]
    assert history_entry(nvim).status == "cancelled"


def test_a_cancel_that_reaches_the_host_with_its_fill_still_ends_the_job(nvim: Child):
    with LoopbackServer() as server:
        nvim.serve(server, Reply(chunks=openai_events(["A"]), pause_after=1))
        nvim.set_lines(["x"])
        # the host is not started yet: fill and cancel wait in the same pipe
        nvim.lua(
            "require('kznllm').start({ query = 'q' })"
            " require('kznllm.job').cancel_buffer(vim.api.nvim_get_current_buf())"
        )
        done = nvim.wait_done(timeout=2)[0]
    assert done["status"] == "cancelled"
    assert nvim.lines() == ["x"]


# -- Neovim quits mid-stream --------------------------------------------------------------


def stream_paused_after_a_token(child: Child, server: LoopbackServer) -> int:
    """A fill whose stream stops after "partial " (in the buffer); the host's pid."""
    server.queue(Reply(chunks=openai_events(["partial ", "rest"]), pause_after=2))
    child.use_server(server.base_url)
    child.nvim.command("KznFill go")
    server.wait_paused()
    child.wait_for(lambda: child.text() == "partial ", what="the first token")
    return int(child.lua("return vim.fn.jobpid(require('kznllm.host').chan)"))


def recorded(path: Path) -> tuple[str, str]:
    """The status and response of the one history entry in `path`."""
    store = HistoryStore(path)
    (row,) = store.list()
    entry = store.get(row.id)
    assert entry is not None
    return entry.status, entry.response


def test_quitting_neovim_mid_stream_ends_the_host_and_history_keeps_the_partial_text(
    tmp_path: Path,
):
    child = Child(tmp_path)
    try:
        with LoopbackServer() as server:
            host = stream_paused_after_a_token(child, server)
            editor = child.nvim.call("getpid")
            data = Path(child.lua("return vim.fn.stdpath('data')"))
            with contextlib.suppress(Exception):  # the channel goes away with Neovim
                child.nvim.command("qa!", async_=True)
            wait_until(lambda: not alive(editor), 10, "Neovim to exit", nap=0.005)
            wait_until(
                lambda: not alive(host), 10, "the Python host to exit (no orphan)", nap=0.005
            )
            server.wait_client_gone()  # the stream was closed, not left hanging
    finally:
        child.close()
    assert recorded(data / "kznllm" / "history.sqlite3") == ("cancelled", "partial ")


def test_a_host_whose_channel_closes_mid_stream_records_the_partial_answer(nvim: Child):
    """No cancel comes first (unlike :qa!, which unloads the buffer): the host sees its
    channel end, and still ends the fill as a cancel does, history flushed, before it
    exits."""
    with LoopbackServer() as server:
        host = stream_paused_after_a_token(nvim, server)
        nvim.lua("vim.fn.chanclose(require('kznllm.host').chan)")
        wait_until(lambda: not alive(host), 10, "the Python host to exit", nap=0.005)
        server.wait_client_gone()
    assert recorded(db_path(nvim)) == ("cancelled", "partial ")


# -- the history database ---------------------------------------------------------------


def test_a_locked_history_database_never_delays_the_fill(nvim: Child):
    path = db_path(nvim)
    HistoryStore(path)  # created, then locked by another process's write transaction
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with LoopbackServer() as server:
            nvim.serve(server, Reply(chunks=openai_events(["fast ", "anyway"])))
            t0 = time.monotonic()
            nvim.nvim.command("KznFill go")
            done = nvim.wait_done()[0]
            elapsed = time.monotonic() - t0
        assert done["status"] == "ok"
        assert nvim.text() == "fast anyway"
        assert elapsed < 3.0, elapsed  # not the 5 s busy timeout
        assert shown(nvim) == []
    finally:
        holder.execute("COMMIT")
        holder.close()
    entry = history_entry(nvim)  # written once the lock went away
    assert (entry.status, entry.response) == ("ok", "fast anyway")


def test_a_corrupt_history_database_is_moved_aside_and_the_fill_recorded_anew(nvim: Child):
    path = db_path(nvim)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just garbage " * 200)
    with LoopbackServer() as server:
        nvim.serve(server, Reply(chunks=openai_events(["still ", "works"])))
        nvim.nvim.command("KznFill go")
        done = nvim.wait_done()[0]
    assert done["status"] == "ok" and nvim.text() == "still works"
    (aside,) = path.parent.glob("history.sqlite3.corrupt-*[0-9]")
    assert aside.read_bytes().startswith(b"this is not a database")
    notice = nvim.wait_for(lambda: shown(nvim), what="the notice")
    assert notice == [
        f"kznllm: the history database {path} could not be read (file is not a database); "
        f"it was moved to {aside} and a new one was started"
    ]
    entry = history_entry(nvim)
    assert (entry.status, entry.response) == ("ok", "still works")


# -- the cap from setup() --------------------------------------------------------------


def test_setup_max_response_bytes_goes_to_a_running_host_with_the_settings(nvim: Child):
    nvim.set_lines(["one"])
    nvim.nvim.command("KznFill one")  # the demo: starts the host
    nvim.wait_done()
    nvim.spy_sent()
    nvim.lua("require('kznllm').setup({ max_response_bytes = 4096 })")
    assert [op for op, _, _ in nvim.sent()] == ["configure"]
    assert nvim.lua("return require('kznllm.host').settings().max_response_bytes") == 4096


def test_a_cap_set_in_setup_stops_the_answer_in_the_editor(nvim: Child):
    with LoopbackServer() as server:
        nvim.serve(server, Reply(chunks=openai_events(["0123456789"] * 10)))
        nvim.lua("require('kznllm').setup({ max_response_bytes = 25 })")
        nvim.nvim.command("KznFill go")
        done = nvim.wait_done()[0]
    assert (done["status"], done["error"]) == (
        "error",
        "response stopped at the 25 bytes cap (max_response_bytes)",
    )
    assert nvim.text() == "0123456789" * 2 + "01234"
