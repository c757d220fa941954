"""Every stream is bounded in time, and a body cut short keeps what arrived: against
real loopback servers that send `: keep-alive` every 0.5 s (past the stall timeout,
never a token) and a Content-Length shorter than the body, through the CLI and the
editor."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import Generation
from tests.servers import LoopbackServer, Reply, openai_events
from tests.stream.test_network import CLI, cli_env, preset

pytestmark = pytest.mark.usefixtures("no_proxy")

KEEP_ALIVE = b": keep-alive\n\n"


def keep_alive_only() -> Reply:
    return Reply(chunks=itertools.repeat(KEEP_ALIVE), gap=0.5)


def cut_reply(texts: list[str], framed: int, *, apart: bool = False) -> tuple[Reply, str]:
    """A response whose Content-Length frames the first `framed` events of a stream of
    `texts` while the whole stream follows, in one write (`apart`: the head in one, the
    body in the next); and the text it frames."""
    events = openai_events(texts, done=False)
    length = len(b"".join(events[: 1 + framed]))
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % length
    )
    if apart:
        return Reply(raw_chunks=[head, b"".join(events)], gap=0.05), "".join(texts[:framed])
    return Reply(raw=head + b"".join(events)), "".join(texts[:framed])


def run_cli(base_url: str, tmp_path: Path, *extra: str) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    res = subprocess.run(
        [*CLI, "--base-url", base_url, "--api-key", "KZN_TEST_NET_KEY", *extra, "q"],
        cwd=tmp_path,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    return res.returncode, res.stdout.decode(), res.stderr.decode(), time.perf_counter() - t0


# -- the first-token and total deadlines ------------------------------------------------


def test_keep_alive_comments_end_at_the_first_token_deadline_not_the_stall_timeout(tmp_path):
    with LoopbackServer(default=keep_alive_only()) as server:
        code, out, err, elapsed = run_cli(
            server.base_url, tmp_path, "--stall-timeout", "1", "--first-token-timeout", "2"
        )
    host = f"127.0.0.1:{server.port}"
    assert (code, out) == (1, "")
    assert err == (
        f"kznllm: {host} sent no token within 2 s (nothing, or only keep-alive comments or "
        "empty events); the limit is the first_token timeout option\n"
    )
    assert 1.9 < elapsed < 10, elapsed


async def test_tokens_then_keep_alive_comments_end_at_the_total_deadline_with_the_text():
    events = openai_events(["kept ", "text"], done=False)[:3]  # role, two tokens, no end
    reply = Reply(chunks=itertools.chain(events, itertools.repeat(KEEP_ALIVE)), gap=0.3)
    got: list[str] = []
    with LoopbackServer(default=reply) as server:
        timeouts = Timeouts(connect=5, stall=1, total=2.5, first_token=2)
        async with new_client() as client:
            gen = Generation(
                client, preset(server.base_url), FillContext(mode="yap", query="q"), timeouts
            )
            out = await gen.run(got.append)
    assert "".join(got) == "kept text"
    assert (out.status, out.error) == (
        "error",
        f"127.0.0.1:{server.port} did not finish the answer within 2.5 s; the limit is the "
        "total timeout option",
    )


async def test_the_first_token_deadline_does_not_end_a_slow_answer_once_it_started():
    # one token at 0.3 s, the next ones 0.3 s apart, past a 0.5 s first-token deadline
    reply = Reply(chunks=openai_events(["a", "b", "c", "d"]), gap=0.3)
    got: list[str] = []
    with LoopbackServer(default=reply) as server:
        async with new_client() as client:
            out = await Generation(
                client,
                preset(server.base_url),
                FillContext(mode="yap", query="q"),
                Timeouts(connect=5, stall=5, first_token=1),
            ).run(got.append)
    assert (out.status, "".join(got)) == ("ok", "abcd")


# -- a body cut short by its Content-Length ---------------------------------------------


@pytest.mark.parametrize("apart", [False, True], ids=["one-read", "head-then-body"])
def test_a_body_longer_than_its_content_length_keeps_what_it_framed_and_says_so(tmp_path, apart):
    reply, framed = cut_reply(["Hel", "lo ", "wor", "ld"], 2, apart=apart)
    with LoopbackServer(default=reply) as server:
        code, out, err, _ = run_cli(server.base_url, tmp_path)
    assert (code, out) == (1, framed)  # "Hello ": was lost whole ("bad status line")
    assert err == (
        f"kznllm: 127.0.0.1:{server.port} sent more than the "
        f"{len(b''.join(openai_events(['Hel', 'lo '], done=False)[:3]))} bytes its "
        "Content-Length announced: the body was cut there (what came before it is kept)\n"
    )


async def test_a_body_cut_short_on_a_connection_reused_after_a_chunked_answer_says_so():
    # the connection's framing is followed again for each request: a chunked answer
    # (whose chunks are not followed) must not leave the next one's cut unsaid
    reply, framed = cut_reply(["Hel", "lo ", "wor", "ld"], 2)
    first: list[str] = []
    second: list[str] = []
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["chunked ", "first"])), reply)
        async with new_client() as client:
            for got in (first, second):
                out = await Generation(
                    client, preset(server.base_url), FillContext(mode="yap", query="q"), Timeouts()
                ).run(got.append)
        assert server.connections_accepted == 1  # the second answer came on the same one
    assert "".join(first) == "chunked first"
    assert (out.status, "".join(second)) == ("error", framed)
    assert out.error is not None and "the body was cut there" in out.error, out.error


async def test_a_whole_answer_before_bytes_past_its_content_length_is_ok():
    texts = ["all ", "of ", "it"]
    events = openai_events(texts)
    body = b"".join(events)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n"
    raw = head % len(body) + body + b"data: junk past the end\n\n"
    got: list[str] = []
    with LoopbackServer(default=Reply(raw=raw)) as server:
        async with new_client() as client:
            out = await Generation(
                client, preset(server.base_url), FillContext(mode="yap", query="q"), Timeouts()
            ).run(got.append)
    assert (out.status, out.error, "".join(got)) == ("ok", None, "all of it")


# -- the same in the editor -----------------------------------------------------------------


def test_in_the_editor_a_deadline_and_a_cut_body_end_the_fill_with_what_arrived(tmp_path):
    from tests.nvim_child import Child

    child = Child(tmp_path, env={"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": ""})
    try:
        with LoopbackServer(default=keep_alive_only()) as server:
            child.set_lines(["keep me"])
            child.use_server(server.base_url)
            presets = child.lua("return require('kznllm.config').options.presets")
            child.lua(
                "require('kznllm').setup({ presets = ...,"
                " timeouts = { stall = 1, first_token = 1.5 } })",
                presets,
            )
            t0 = time.perf_counter()
            child.nvim.command("KznFill q")
            [done] = child.wait_done(timeout=30)
            elapsed = time.perf_counter() - t0
        assert done["status"] == "error"
        assert done["error"] == (
            f"127.0.0.1:{server.port} sent no token within 1.5 s (nothing, or only keep-alive "
            "comments or empty events); the limit is the first_token timeout option"
        )
        assert child.lines() == ["keep me"]  # nothing arrived: the buffer as it was
        assert elapsed < 10, elapsed

        reply, framed = cut_reply(["one", "\n", "two", "\nthree"], 3)
        with LoopbackServer(default=reply) as server:
            child.use_server(server.base_url)
            child.nvim.command("KznFill q")
            done = child.wait_done(2, timeout=30)[1]
        assert done["status"] == "error"
        assert "the body was cut there (what came before it is kept)" in done["error"]
        assert framed == "one\ntwo"
        assert child.lines() == ["keep me", "one", "two"]  # kept, as it arrived
    finally:
        child.close()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("loopback servers and /proc")
