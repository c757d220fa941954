"""The stream quirks real providers and gateways send, each through the real client over
loopback (one test per quirk not already proven end to end elsewhere; the others are
listed here with the test that proves them).

Proven elsewhere:
- usage chunk with empty `choices`: test_client_http.py::test_usage_is_reported
- Azure's empty-`choices` chunks with filter results:
  test_azure.py::test_stream_with_filter_results_and_empty_choices_is_byte_exact
- `length` reported as truncated on the command line:
  test_cli.py::test_truncated_answer_is_flagged_on_stderr
- `:` keep-alive comments: test_client_http.py::test_keep_alive_comments
- Anthropic `ping`: every Anthropic stream of tests.servers.anthropic_events has one
  (test_client_http.py::test_one_event_per_write[anthropic])
- Anthropic mid-stream `event: error` (overloaded_error):
  test_client_http.py::test_anthropic_error_event_mid_stream
- a JSON error with status 200 and `Content-Type: application/json`:
  test_client_http.py::test_200_json_error_body_shows_the_providers_message
- CRLF line ends: test_client_http.py::test_crlf_line_ends
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from functools import partial
from typing import Any

import pytest

from kznllm_py.prompt.presets import Preset, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events
from tests.streams import (
    CONTENT_TYPES,
    FAST,
    PROVIDERS,
    base_url_for,
    generate,
    provider_events,
)

CTX = FillContext(mode="yap", query="q", filetype="python")
TEXTS = ["Hél", "lo ✓", "\n🎉"]
WHOLE = "".join(TEXTS)
BOM = b"\xef\xbb\xbf"


pytestmark = pytest.mark.usefixtures("no_proxy")


def preset_for(provider: str, server: LoopbackServer) -> Preset:
    return preset_from_dict(
        {
            "id": f"quirk-{provider}",
            "provider": provider,
            "model": "m",
            "base_url": base_url_for(provider, server.url),
            "api_key": False,
        }
    )


def reply(provider: str, chunks: list[bytes], **kw: Any) -> Reply:
    headers = {"Content-Type": CONTENT_TYPES[provider], **kw.pop("headers", {})}
    return Reply(headers=headers, chunks=chunks, **kw)


# one generation, one try, with this module's context
run = partial(generate, ctx=CTX)


def oa_chunk(choices: list[dict[str, Any]] | None, **extra: Any) -> bytes:
    obj: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "model": "m", **extra}
    if choices is not None:
        obj["choices"] = choices
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


# -- role-only first deltas, `delta: {}` --------------------------------------------------


async def test_role_only_and_empty_deltas_add_no_text(server, client):
    """A role-only first delta without `content` (vLLM, llama.cpp), one with
    `content: null` and `refusal: null` (OpenAI), `delta: {}` mid-stream, a choice with
    no delta at all, and `delta: null`: none adds text or fails."""
    chunks = [
        oa_chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]),
        oa_chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": None, "refusal": None},
                    "finish_reason": None,
                }
            ]
        ),
        oa_chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]),
        oa_chunk([{"index": 0, "delta": {}, "finish_reason": None}]),
        oa_chunk([{"index": 0, "finish_reason": None}]),
        oa_chunk([{"index": 0, "delta": None, "finish_reason": None}]),
        oa_chunk([{"index": 0, "delta": {"content": "b"}, "finish_reason": None}]),
        oa_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        b"data: [DONE]\n\n",
    ]
    server.queue(Reply(chunks=chunks))
    out, text = await run(client, preset_for("openai", server))
    assert (out.status, out.error, text, out.finish_reason) == ("ok", None, "ab", "stop")


# -- finish_reason `length` -----------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_length_finish_is_reported_as_length_by_every_provider(provider, server, client):
    """OpenAI `length`, Anthropic `max_tokens`, Gemini `MAX_TOKENS`, Ollama `length`: one
    word, `length`, which the CLI and the editor report as truncated."""
    server.queue(reply(provider, provider_events(provider, TEXTS, finish="length")))
    out, text = await run(client, preset_for(provider, server))
    assert (out.status, out.error, text) == ("ok", None, WHOLE)
    assert out.finish_reason == "length"


def test_length_finish_is_shown_in_the_editor_as_truncated(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["cut sh"], finish="length")))
    nvim.nvim.command("KznFill q")
    done = nvim.wait_done()
    assert done[0]["status"] == "ok"
    assert nvim.text() == "cut sh"
    assert any("truncated" in m for m in nvim.messages()), nvim.messages()


# -- the final event, when the server keeps the body open ---------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_final_event_ends_the_answer_though_the_body_stays_open(provider, server, client):
    """`data: [DONE]`, Anthropic's `message_stop`, Ollama's `"done": true` end the
    answer: a server (or proxy) that then keeps the response open is not waited on
    until the stall timeout, and the answer is complete, not an error."""
    server.queue(reply(provider, provider_events(provider, TEXTS), end="stall"))
    t0 = time.perf_counter()
    out, text = await run(client, preset_for(provider, server))
    assert (out.status, out.error, text) == ("ok", None, WHOLE)
    assert time.perf_counter() - t0 < FAST.stall / 2
    await server.wait_client_gone_async()  # and the open response was hung up on


async def test_final_event_then_a_normal_end_keeps_the_connection_for_reuse(server, client):
    """The usual case, `[DONE]` and then the end of the body: the connection is reused
    for the next request (the wait for the body's end is not cut short)."""
    preset = preset_for("openai", server)
    for _ in range(3):
        server.queue(Reply(chunks=openai_events(TEXTS)))
        out, text = await run(client, preset)
        assert (out.status, text) == ("ok", WHOLE)
    assert server.connections_accepted == 1


async def test_text_after_done_is_not_part_of_the_answer(server, client):
    """Whatever a server sends after `data: [DONE]` in the same read is not answer text."""
    chunks = openai_events(["a"])
    chunks.append(oa_chunk([{"index": 0, "delta": {"content": "LATE"}, "finish_reason": None}]))
    server.queue(Reply(chunks=[b"".join(chunks)]))
    out, text = await run(client, preset_for("openai", server))
    assert (out.status, text) == ("ok", "a")


# -- a JSON error body with status 200 and no SSE --------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/event-stream", "text/plain", None], ids=["sse", "text", "none"]
)
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_json_error_sent_with_200_as_a_stream_shows_the_providers_message(
    provider, content_type, server, client
):
    """Some gateways send an error as one JSON object with status 200 under a stream's
    content type (or none): the provider's message is shown, not "the stream ended"."""
    if provider == "anthropic":
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "busy now"}}
    elif provider == "gemini":
        body = {"error": {"code": 503, "message": "busy now", "status": "UNAVAILABLE"}}
    else:
        body = {"error": {"message": "busy now", "type": "server_error", "code": None}}
    headers = {} if content_type is None else {"Content-Type": content_type}
    raw = b"\n" + json.dumps(body).encode() + b"\n"
    server.queue(Reply(headers=headers, chunks=[raw[:7], raw[7:]]))
    out, text = await run(client, preset_for(provider, server))
    assert (out.status, text) == ("error", "")
    assert out.error is not None
    assert out.error.startswith(f"{provider} error: ")
    assert "busy now" in out.error


async def test_non_json_body_with_200_is_still_a_stream_error(server, client):
    server.queue(Reply(chunks=[b"upstream said something odd\n"]))
    out, text = await run(client, preset_for("openai", server))
    assert (out.status, text) == ("error", "")
    assert out.error == "openai: the stream ended before the answer was complete"


# -- a UTF-8 BOM at the stream's start ------------------------------------------------------


@pytest.mark.parametrize("split", ["whole", "own-write", "split-bom"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_utf8_bom_at_the_stream_start_is_dropped(provider, split, server, client):
    chunks = provider_events(provider, TEXTS)
    if split == "whole":
        chunks = [BOM + chunks[0], *chunks[1:]]
    elif split == "own-write":
        chunks = [BOM, *chunks]
    else:
        chunks = [BOM[:1], BOM[1:] + chunks[0][:3], chunks[0][3:], *chunks[1:]]
    server.queue(reply(provider, chunks))
    out, text = await run(client, preset_for(provider, server))
    assert (out.status, out.error, text) == ("ok", None, WHOLE)


# -- gzip ---------------------------------------------------------------------------------


GZIP = {"Content-Encoding": "gzip"}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_gzip_encoded_chunked_stream_is_decoded_byte_exact(provider, server, client):
    """The whole stream gzipped, sent as HTTP chunks of 7 bytes (cut anywhere in the
    compressed data, and so in the middle of events and characters)."""
    z = gzip.compress(b"".join(provider_events(provider, TEXTS * 20)))
    server.queue(reply(provider, [z[i : i + 7] for i in range(0, len(z), 7)], headers=GZIP))
    out, text = await run(client, preset_for(provider, server))
    assert (out.status, out.error, text) == ("ok", None, WHOLE * 20)
    assert "gzip" in server.requests[0].headers.get("accept-encoding", "")


async def test_gzip_stream_flushed_per_event_streams_as_it_comes(server, client):
    """A server that flushes its gzip stream after each event: the first text reaches
    the caller while the server still holds back the rest (decoding is incremental)."""
    co = zlib.compressobj(wbits=31)  # gzip framing
    events = openai_events(TEXTS)
    parts = [co.compress(e) + co.flush(zlib.Z_SYNC_FLUSH) for e in events] + [co.flush()]
    server.queue(
        Reply(headers={"Content-Type": "text/event-stream", **GZIP}, chunks=parts, pause_after=2)
    )
    out, text = await run(
        client,
        preset_for("openai", server),
        timeouts=Timeouts(connect=5.0, stall=2.0),
        on_text=lambda _t: server.resume(),  # released only once text came through
    )
    assert (out.status, out.error, text) == ("ok", None, WHOLE)


async def test_gzip_encoded_error_body_shows_the_providers_message(server, client):
    body = gzip.compress(json.dumps({"error": {"message": "bad request: x"}}).encode())
    server.queue(
        Reply(status=400, headers={"Content-Type": "application/json", **GZIP}, chunks=[body])
    )
    out, text = await run(client, preset_for("openai", server))
    assert (out.status, text) == ("error", "")
    assert out.error == "openai error (HTTP 400): bad request: x"


async def test_corrupt_gzip_stream_is_a_clear_error_keeping_the_text_before(server, client):
    co = zlib.compressobj(wbits=31)
    events = openai_events(["part", "ial", "never"])
    good = b"".join(co.compress(e) + co.flush(zlib.Z_SYNC_FLUSH) for e in events[:3])
    server.queue(
        Reply(
            headers={"Content-Type": "text/event-stream", **GZIP},
            chunks=[good, b"\x00garbage-not-deflate" * 4],
            pause_after=1,
        )
    )
    # the bad bytes come in a read of their own, once the text before them arrived
    resume = lambda _t: server.resume()  # noqa: E731
    out, text = await run(client, preset_for("openai", server), on_text=resume)
    assert (out.status, text) == ("error", "partial")
    assert out.error is not None
    assert out.error.startswith(
        f"127.0.0.1:{server.port} sent a response body that does not decode: "
    )
