"""Real HTTP over loopback, through kznllm_py.stream.generation: bytes on a socket to text.

Every test talks to a `LoopbackServer` (its own thread, ephemeral port) with the httpx
client the plugin uses (`new_client()`), for both wire formats. They prove the text is
byte-exact whatever the chunking, that the request on the wire is right, and that each
failure ends as an `Outcome` with a clear, redacted message and the partial text kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import pytest

from kznllm_py.prompt.presets import Preset, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers.base import DoneDelta, TextDelta
from kznllm_py.stream import generation
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.events import Retry, Text
from kznllm_py.stream.generation import Generation, Outcome, RetryPolicy, stream_deltas
from kznllm_py.stream.prepare import prepare
from tests.servers import (
    LoopbackServer,
    Recorded,
    Reply,
    anthropic_events,
    blackhole_port,
    crlf,
    every_split,
    free_port_refusing,
    http_response,
    json_reply,
    openai_events,
)
from tests.streams import FAST, generate, provider_events

PROVIDERS = ("openai", "anthropic")
KEY_VAR = "KZN_TEST_HTTP_KEY"
KEY = "sk-test-0123456789abcdef"
TEXTS = ["héllo", " wörld", " ✓", " 🎉"]
WHOLE = "".join(TEXTS)
CTX = FillContext(mode="yap", query="say hello", filetype="python")


@pytest.fixture(autouse=True)
def _no_proxy_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # new_client() trusts the environment: a proxy there must not swallow loopback calls
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    monkeypatch.setenv(KEY_VAR, KEY)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_client() as c:
        yield c


def make_preset(provider: str, base_url: str, **extra: Any) -> Preset:
    raw: dict[str, Any] = {
        "id": f"test-{provider}",
        "provider": provider,
        "model": f"{provider}-test-model",
        "base_url": base_url,
        "api_key": KEY_VAR,
        **extra,
    }
    return preset_from_dict(raw)


def partial_upto(provider: str) -> int:
    """How many events of `provider_events(provider, ["part", "ial", ...])` carry
    "partial"."""
    return 3 if provider == "openai" else 5  # role, 2 deltas | start, block, ping, 2 deltas


# one generation with this module's context (one try unless a test says otherwise)
run = partial(generate, ctx=CTX)


# -- byte-exact text ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_event_per_write(provider, server, client):
    server.queue(Reply(chunks=provider_events(provider, TEXTS)))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, out.error, text) == ("ok", None, WHOLE)
    assert out.text_chars == len(WHOLE)
    assert out.finish_reason == ("stop" if provider == "openai" else "end_turn")
    assert out.first_token_ms is not None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_many_events_per_write(provider, server, client):
    stream = b"".join(provider_events(provider, TEXTS * 50))
    server.queue(Reply(chunks=[stream]))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("ok", WHOLE * 50)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_is_reported(provider, server, client):
    if provider == "openai":
        chunks = openai_events(["a"], usage={"prompt_tokens": 7, "completion_tokens": 3})
        want = {"input_tokens": 7, "output_tokens": 3}
    else:
        chunks = anthropic_events(["a"], input_tokens=7, output_tokens=3)
        want = {"input_tokens": 7, "output_tokens": 3}
    server.queue(Reply(chunks=chunks))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text, out.usage) == ("ok", "a", want)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_split_at_every_byte_offset(provider, server, client, monkeypatch):
    """The whole stream as two HTTP chunks, cut at every byte offset: through the middle
    of `data:`, of the JSON, of a CRLF... and of every multi-byte character. The server
    holds the second chunk until the client has read the first, so the client's reads
    really are split there."""
    stream = b"".join(provider_events(provider, TEXTS))
    assert len(stream) > len(WHOLE.encode())  # multi-byte chars are raw UTF-8 on the wire
    real_stream_bytes = generation.stream_bytes

    reads: list[int] = []  # network reads seen by the client, per request

    async def resume_after_first_read(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        reads.append(0)
        async for chunk in real_stream_bytes(*args, **kwargs):
            yield chunk
            reads[-1] += 1
            if reads[-1] == 1:
                server.resume()

    monkeypatch.setattr(generation, "stream_bytes", resume_after_first_read)
    provider_, request = await prepare(make_preset(provider, server.base_url), CTX)
    splits = list(every_split(stream))
    server.queue(*(Reply(chunks=parts, pause_after=1) for _, parts in splits))
    bad: list[tuple[int, str]] = []
    for offset, _ in splits:
        texts: list[str] = []
        done = False
        async for batch in stream_deltas(client, provider_, request, FAST):
            for d in batch:
                if type(d) is TextDelta:
                    texts.append(d.text)
                done = done or type(d) is DoneDelta
        if "".join(texts) != WHOLE or not done:
            bad.append((offset, "".join(texts)))
    assert bad == []
    assert len(server.requests) == len(splits)
    assert len(reads) == len(splits)
    assert min(reads) >= 2  # every split really reached the decoder as two reads


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_byte_per_write(provider, server, client):
    stream = b"".join(provider_events(provider, TEXTS))
    server.queue(Reply(chunks=[stream[i : i + 1] for i in range(len(stream))]))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("ok", WHOLE)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_crlf_line_ends(provider, server, client):
    chunks = crlf(provider_events(provider, TEXTS))
    assert all(b"\r\n\r\n" in c for c in chunks)
    # also cut right between a CR and its LF
    joined = b"".join(chunks)
    cut = joined.index(b"\r\n") + 1
    server.queue(Reply(chunks=chunks), Reply(chunks=[joined[:cut], joined[cut:]]))
    preset = make_preset(provider, server.base_url)
    for _ in range(2):
        out, text = await run(client, preset)
        assert (out.status, text) == ("ok", WHOLE)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_keep_alive_comments(provider, server, client):
    chunks = [b": keep-alive\n\n"]
    for ev in provider_events(provider, TEXTS):
        chunks += [ev, b": keep-alive\n\n", b":\n\n"]
    # and a comment inside an event, between its lines
    if provider == "anthropic":
        chunks = [c.replace(b"\ndata: ", b"\n: ping\ndata: ") for c in chunks]
    server.queue(Reply(chunks=chunks))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("ok", WHOLE)


async def test_text_with_line_separators_is_not_split(server, client):
    """U+2028, U+0085, form feed, NUL... inside a delta: text, not line ends."""
    texts = ["a\u2028b", "\u0085c\x0c", "d\r\ne", "\x00f", '"g"\\']
    server.queue(Reply(chunks=openai_events(texts)))
    out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("ok", "".join(texts))


# -- the request on the wire ------------------------------------------------------------


async def request_sent(
    server: LoopbackServer, client: httpx.AsyncClient, preset: Preset
) -> Recorded:
    """The one request a fill with `preset` sent, its server answering "x" (ended ok)."""
    server.queue(Reply(chunks=provider_events(preset.provider, ["x"])))
    out, text = await run(client, preset)
    assert (out.status, text) == ("ok", "x")
    [req] = server.requests
    return req


async def test_openai_request_on_the_wire(server, client):
    preset = make_preset("openai", server.base_url, params={"top_p": 0.25, "temperature": 0})
    req = await request_sent(server, client, preset)
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in req.headers
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "text/event-stream"
    body = req.body
    assert body["model"] == "openai-test-model"
    assert body["stream"] is True
    assert body["top_p"] == 0.25
    assert body["temperature"] == 0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user"]
    assert "python" in body["messages"][0]["content"]
    assert body["messages"][-1]["content"].endswith("say hello")


async def test_anthropic_request_on_the_wire(server, client):
    preset = make_preset("anthropic", server.base_url, params={"top_p": 0.5, "max_tokens": 77})
    req = await request_sent(server, client, preset)
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    body = req.body
    assert body["model"] == "anthropic-test-model"
    assert body["stream"] is True
    assert body["top_p"] == 0.5
    assert body["max_tokens"] == 77
    assert body["system"][0]["type"] == "text"
    assert "python" in body["system"][0]["text"]
    assert [m["role"] for m in body["messages"]] == ["user"]
    # the anthropic family's template wraps the query in <request> tags
    assert body["messages"][0]["content"].endswith("<request>\nsay hello\n</request>")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_no_key_sends_no_auth_header(provider, server, client):
    preset = make_preset(provider, server.base_url, api_key=False)
    headers = (await request_sent(server, client, preset)).headers
    assert "authorization" not in headers
    assert "x-api-key" not in headers


async def test_stream_param_cannot_be_turned_off(server, client):
    preset = make_preset("openai", server.base_url, params={"stream": False})
    assert (await request_sent(server, client, preset)).body["stream"] is True


# -- HTTP errors ------------------------------------------------------------------------


def provider_error_body(provider: str, status: int, message: str) -> dict:
    if provider == "openai":
        return {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", [401, 429, 500])
async def test_http_error_shows_status_and_provider_message(provider, status, server, client):
    message = f"the provider says no ({status})"
    server.queue(json_reply(status, provider_error_body(provider, status, message)))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert out.status == "error"
    assert text == ""
    assert out.error is not None
    assert f"HTTP {status}" in out.error
    assert message in out.error
    assert out.error.startswith(f"{provider} error")
    # for a key turned away (401) its fix comes before the provider's words
    assert ("check $KZN_TEST_HTTP_KEY" in out.error) == (status == 401), out.error
    if provider == "anthropic":
        assert "error:" in out.error  # the error type is named too
    assert len(server.requests) == 1  # no silent retry


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_http_error_html_body_shows_its_title_not_its_markup(provider, server, client):
    body = (
        b"<html><head><title>502 Bad Gateway</title><style>h1{color:red}</style></head>"
        b"<body><h1>502 Bad Gateway</h1>" + b"<p>THE-REST-IS-NOT-SHOWN</p>" * 20 + b"</body></html>"
    )
    server.queue(Reply(raw=http_response(502, body)))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error == f"{provider} error (HTTP 502): 502 Bad Gateway"


async def test_http_error_html_body_without_a_title_shows_its_text_cut(server, client):
    body = b"<html><body><h1>Oops</h1><script>var x = 1;</script>" + b"<p>word</p>" * 200
    server.queue(Reply(raw=http_response(500, body)))
    out, _ = await run(client, make_preset("openai", server.base_url))
    shown = out.error.removeprefix("openai error (HTTP 500): ")
    assert shown.startswith("Oops word word ")
    assert "<" not in shown and "var x" not in shown
    assert len(shown) == 300 and shown.endswith("…")


async def test_http_error_non_json_text_body(server, client):
    server.queue(
        Reply(status=503, headers={"Content-Type": "text/plain"}, chunks=[b"upstream busy\n"])
    )
    out, _ = await run(client, make_preset("openai", server.base_url))
    assert out.status == "error"
    assert out.error == "openai error (HTTP 503): upstream busy"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_http_error_empty_body(provider, server, client):
    server.queue(Reply(raw=http_response(500, b"")))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error == f"{provider} error (HTTP 500): Internal Server Error"


async def test_http_error_json_without_message_shows_the_body(server, client):
    server.queue(json_reply(400, {"weird": "shape"}))
    out, _ = await run(client, make_preset("openai", server.base_url))
    assert out.status == "error"
    assert "HTTP 400" in out.error
    assert '{"weird":"shape"}' in out.error


# -- transport failures -----------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_connection_refused(provider, client):
    port = free_port_refusing()
    out, text = await run(client, make_preset(provider, f"http://127.0.0.1:{port}/v1"))
    assert (out.status, text) == ("error", "")
    assert out.error == f"could not connect to 127.0.0.1:{port}: connection refused"


async def test_connect_timeout(client):
    with blackhole_port() as port:
        t0 = time.perf_counter()
        out, text = await run(
            client,
            make_preset("openai", f"http://127.0.0.1:{port}/v1"),
            timeouts=Timeouts(connect=0.3, stall=5.0),
        )
        elapsed = time.perf_counter() - t0
    assert (out.status, text) == ("error", "")
    assert out.error == f"could not connect to 127.0.0.1:{port}: no answer within 0.3 s"
    assert elapsed < 3.0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_read_stall_keeps_partial_text(provider, server, client):
    chunks = provider_events(provider, ["part", "ial", "never"])
    upto = partial_upto(provider)
    server.queue(Reply(chunks=chunks[:upto], end="stall"))
    t0 = time.perf_counter()
    out, text = await run(
        client, make_preset(provider, server.base_url), timeouts=Timeouts(connect=5, stall=0.3)
    )
    assert time.perf_counter() - t0 < 3.0
    assert (out.status, text) == ("error", "partial")
    assert "stalled" in out.error
    assert "0.3 s" in out.error
    assert f"127.0.0.1:{server.port}" in out.error
    await server.wait_client_gone_async()  # the client hung up on the stalled stream


async def test_stall_before_any_byte_of_the_body(server, client):
    server.queue(Reply(chunks=[], end="stall"))
    out, text = await run(
        client, make_preset("openai", server.base_url), timeouts=Timeouts(connect=5, stall=0.3)
    )
    assert (out.status, text) == ("error", "")
    assert "stalled" in out.error


@pytest.mark.parametrize("end", ["disconnect", "reset"])
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_disconnect_mid_stream_keeps_partial_text(provider, end, server, client):
    chunks = provider_events(provider, ["part", "ial", "never"])
    upto = partial_upto(provider)
    server.queue(Reply(chunks=chunks[:upto], end=end))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "partial")
    assert f"127.0.0.1:{server.port}" in out.error
    if end == "disconnect":
        assert "closed the connection mid-answer" in out.error
    else:
        assert "connection" in out.error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_clean_close_before_the_end_event_is_an_error(provider, server, client):
    """A well-formed HTTP body that stops before the provider's final event."""
    chunks = provider_events(provider, ["part", "ial", "never"])
    upto = partial_upto(provider)
    server.queue(Reply(chunks=chunks[:upto]))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "partial")
    assert "ended before the answer was complete" in out.error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_mid_stream(provider, server, client):
    chunks = provider_events(provider, ["part", "ial", "never"])
    upto = partial_upto(provider)
    bad = b"data: {not json\n\n" if provider == "openai" else b"event: x\ndata: {not json\n\n"
    server.queue(Reply(chunks=[*chunks[:upto], bad, *chunks[upto:]]))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "partial")
    assert out.error == f"{provider}: malformed JSON in a stream event: '{{not json'"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_in_the_same_read_keeps_the_text_before_it(provider, server, client):
    """Text decoded from the events before a bad one, in the same network read, is
    delivered too (invariant 2: partial output stays)."""
    chunks = provider_events(provider, ["part", "ial", "never"])
    upto = partial_upto(provider)
    bad = b"data: {not json\n\n"
    server.queue(Reply(chunks=[b"".join([*chunks[:upto], bad, *chunks[upto:]])]))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert out.status == "error"
    assert "malformed JSON" in out.error
    assert text == "partial"


async def test_anthropic_error_event_mid_stream(server, client):
    chunks = anthropic_events(["part", "ial", "never"])
    err = (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    server.queue(Reply(chunks=[*chunks[: partial_upto("anthropic")], err]))
    out, text = await run(client, make_preset("anthropic", server.base_url))
    assert (out.status, text) == ("error", "partial")
    assert out.error == "anthropic error: overloaded_error: Overloaded"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "closed the connection without answering"),
        (b"garbage\r\n\r\n", "sent a malformed HTTP response: bad status line"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "sent a malformed HTTP response: invalid character in chunk size",
        ),
        (  # int("-6", 16) took this backwards, into an endless loop
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-6\r\nabc\r\n",
            "sent a malformed HTTP response: invalid character in chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n",
            "sent a malformed HTTP response: invalid character in chunk size",
        ),
    ],
)
async def test_broken_http_responses(raw, says, server, client):
    server.queue(Reply(raw=raw))
    out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error.startswith(f"127.0.0.1:{server.port} {says}")


async def test_a_malformed_chunk_after_the_head_came_fails_at_once(server, client):
    """The head in one read, a malformed chunk size in the next: aiohttp's parser fails
    in a body it already handed out, and the body's reader is told at once (it used to
    wait until the read timeout)."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server.queue(Reply(raw_chunks=[head, b"zz\r\n"], gap=0.05))
    out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("error", "")
    says = "sent a malformed HTTP response: invalid character in chunk size"
    assert out.error.startswith(f"127.0.0.1:{server.port} {says}")
    assert out.duration_ms < 2000


async def test_200_html_page_is_not_taken_for_a_stream(server, client):
    """A captive portal or a proxy's page, sent with 200."""
    page = b"<html><body>Please log in to the hotel Wi-Fi</body></html>"
    server.queue(Reply(headers={"Content-Type": "text/html; charset=utf-8"}, chunks=[page]))
    out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error == (
        f"127.0.0.1:{server.port} answered text/html instead of an event stream: "
        "Please log in to the hotel Wi-Fi"
    )


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_200_json_error_body_shows_the_providers_message(provider, server, client):
    """Some gateways send an error as JSON with status 200."""
    server.queue(json_reply(200, provider_error_body(provider, 400, "model not found: x")))
    out, text = await run(client, make_preset(provider, server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error.startswith(f"{provider} error: ")
    assert out.error.endswith("model not found: x")


async def test_redirect_is_not_followed_and_says_where(server, client):
    server.queue(
        Reply(
            status=308,
            headers={"Location": "https://api.example.com/v1/chat/completions"},
            chunks=[b"<html>moved</html>"],
        )
    )
    out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("error", "")
    assert out.error == (
        "openai error (HTTP 308): redirected to https://api.example.com/v1/chat/completions "
        "(use the final address as base_url)"
    )
    assert len(server.requests) == 1


# -- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_missing_key_names_the_variable_and_sends_nothing(
    provider, server, client, monkeypatch
):
    monkeypatch.delenv("KZN_TEST_UNSET_KEY", raising=False)
    preset = make_preset(provider, server.base_url, api_key="KZN_TEST_UNSET_KEY")
    out, text = await run(client, preset)
    assert (out.status, text) == ("error", "")
    assert "KZN_TEST_UNSET_KEY" in out.error
    assert out.error.startswith("set KZN_TEST_UNSET_KEY")
    assert server.requests == []
    assert server.connections_accepted == 0


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("shape", ["json", "html", "stream-error"])
async def test_key_echoed_by_the_server_is_redacted(provider, shape, server, client, monkeypatch):
    canary = f"sk-canary-{provider}-{shape}-7f3e9a"
    monkeypatch.setenv("KZN_TEST_CANARY_KEY", canary)
    echo = f"Incorrect API key provided: {canary}. You can find your key at ..."
    if shape == "json":
        server.queue(json_reply(401, provider_error_body(provider, 401, echo)))
    elif shape == "html":
        server.queue(Reply(raw=http_response(403, f"<p>{echo}</p>".encode())))
    else:
        data = json.dumps(provider_error_body(provider, 400, echo)).encode()
        prefix = b"event: error\n" if provider == "anthropic" else b""
        server.queue(Reply(chunks=[prefix + b"data: " + data + b"\n\n"]))
    preset = make_preset(provider, server.base_url, api_key="KZN_TEST_CANARY_KEY")
    out, _ = await run(client, preset)
    assert out.status == "error"
    assert canary not in out.error
    assert canary[:12] not in out.error
    assert "<redacted>" in out.error
    assert "Incorrect API key provided" in out.error
    # ...while the key did go out, in its header
    sent = server.requests[0].headers
    assert canary in (sent.get("authorization", "") + sent.get("x-api-key", ""))


# -- cancel -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_mid_stream_closes_the_connection(provider, server, client):
    chunks = provider_events(provider, ["part", "ial", "never", "ever"])
    upto = partial_upto(provider)
    server.queue(Reply(chunks=chunks, pause_after=upto))
    got: list[str] = []
    first_text = asyncio.Event()

    def on_text(text: str) -> None:
        got.append(text)
        if "".join(got) == "partial":
            first_text.set()

    gen = Generation(client, make_preset(provider, server.base_url), CTX, FAST)
    task = asyncio.create_task(gen.run(on_text))
    await asyncio.wait_for(first_text.wait(), 5)
    await server.wait_paused_async()
    t0 = time.perf_counter()
    task.cancel()
    out = await asyncio.wait_for(task, 5)
    assert out.status == "cancelled"
    assert out.error is None
    assert "".join(got) == "partial"
    # the server sees the client go away promptly: the stream was really closed
    await server.wait_client_gone_async(timeout=2.0)
    assert time.perf_counter() - t0 < 2.0
    assert server.clients_gone_mid_response == 1
    assert not task.cancelled()


async def test_cancel_while_connecting(client):
    """Cancel before any byte: status cancelled, nothing delivered, no exception."""
    with blackhole_port() as port:
        gen = Generation(client, make_preset("openai", f"http://127.0.0.1:{port}/v1"), CTX, FAST)
        got: list[str] = []
        task = asyncio.create_task(gen.run(got.append))
        await asyncio.sleep(0)  # let it start connecting
        task.cancel()
        out = await asyncio.wait_for(task, 5)
    assert (out.status, got) == ("cancelled", [])


async def test_keep_alive_connection_is_reused(server, client):
    preset = make_preset("openai", server.base_url)
    server.queue(*(Reply(chunks=openai_events([f"r{i}"])) for i in range(3)))
    for i in range(3):
        out, text = await run(client, preset)
        assert (out.status, text) == ("ok", f"r{i}")
    assert server.connections_accepted == 1


async def test_loopback_is_never_proxied(server, monkeypatch):
    """A proxy from the environment is honoured, but not for 127.0.0.1 / localhost: the
    demo model and local servers would be unreachable through it."""
    dead = f"http://127.0.0.1:{free_port_refusing()}"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(var, dead)
    server.queue(Reply(chunks=openai_events(["direct"])))
    async with new_client() as client:
        out, text = await run(client, make_preset("openai", server.base_url))
    assert (out.status, text) == ("ok", "direct")
    assert len(server.requests) == 1


# -- the loopback server itself, driven from synchronous code (as the editor tests do) ---


def test_server_pause_and_resume_from_sync_code(server):
    server.queue(
        Reply(chunks=[b"a", b"b"], pause_after=1),
        Reply(chunks=[b"c"], pause_after=1),
    )
    with httpx.Client() as c:
        with c.stream("POST", server.url + "/x", json={"n": 1}) as r:
            it = r.iter_bytes()
            assert next(it) == b"a"
            server.wait_paused()
            server.resume()
            assert b"".join(it) == b"b"
        server.resume()  # latched: the next pause passes straight through
        assert c.post(server.url + "/y", content=b"not json").content == b"c"
    server.wait_requests(2)
    first, second = server.requests
    assert (first.method, first.path, first.body) == ("POST", "/x", {"n": 1})
    assert second.body == b"not json"
    assert server.connections_accepted == 1  # keep-alive


def test_server_sees_a_sync_client_leave_a_stall(server):
    server.queue(Reply(chunks=[b"a"], end="stall"), Reply(raw=http_response(418, b"tea")))
    with httpx.Client() as c:
        with c.stream("GET", server.url + "/s") as r:
            assert next(r.iter_bytes()) == b"a"
        # leaving the block closed the unfinished response, hence the connection
        server.wait_client_gone()
        assert server.clients_gone_mid_response == 1
        r2 = c.get(server.url + "/t")
        assert (r2.status_code, r2.text) == (418, "tea")


# -- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 529])
async def test_turned_away_requests_are_retried_after_retry_after(status, server, client):
    busy = json_reply(status, {"error": {"message": "busy"}}, headers={"Retry-After": "0"})
    server.queue(busy, Reply(chunks=openai_events(["fine"])))
    gen = Generation(
        client, make_preset("openai", server.base_url), CTX, FAST, retry=RetryPolicy(tries=3)
    )
    async with gen.events() as events:
        seen = [event async for event in events]
    got = "".join(e.text for e in seen if isinstance(e, Text))
    assert (events.outcome().status, got) == ("ok", "fine")
    assert len(server.requests) == 2
    assert [e for e in seen if isinstance(e, Retry)] == [
        Retry(1, 0.0, f"openai error (HTTP {status}): busy")
    ]


async def test_retries_give_up_after_the_last_try_with_the_last_error(server, client):
    busy = json_reply(503, {"error": {"message": "still busy"}}, headers={"Retry-After": "0"})
    server.queue(busy, busy, busy)
    out, text = await run(client, make_preset("openai", server.base_url), retry=RetryPolicy(3))
    assert (out.status, text) == ("error", "")
    assert out.error == "openai error (HTTP 503): still busy"
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried(server, client):
    server.queue(json_reply(401, {"error": {"message": "bad key"}}))
    out, _ = await run(client, make_preset("openai", server.base_url), retry=RetryPolicy(3))
    assert out.status == "error" and len(server.requests) == 1


async def test_an_error_after_the_first_bytes_is_not_retried(server, client):
    chunks = [*openai_events(["part"], done=False)[:2], b'data: {"error": {"message": "x"}}\n\n']
    server.queue(Reply(chunks=chunks))
    out, text = await run(client, make_preset("openai", server.base_url), retry=RetryPolicy(3))
    assert (out.status, text) == ("error", "part")
    assert len(server.requests) == 1


async def test_cancel_ends_a_retry_wait_at_once(server, client):
    server.queue(
        json_reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "30"})
    )
    gen = Generation(client, make_preset("openai", server.base_url), CTX, FAST)
    waiting = asyncio.Event()

    async def consume() -> Outcome:
        async with gen.events() as events:
            async for event in events:
                if isinstance(event, Retry):
                    waiting.set()
        return events.outcome()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(waiting.wait(), 5)
    task.cancel()
    out = await asyncio.wait_for(task, 2)
    assert out.status == "cancelled"


def test_backoff_is_exponential_and_capped_and_honours_retry_after():
    policy = RetryPolicy(tries=5, base=1.0, cap=5.0)
    assert [policy.wait(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.wait(1, 2.5) == 2.5
    assert policy.wait(1, 300) == 5.0


def test_tokens_per_second_counts_the_streaming_time_only():
    out = Outcome("ok", usage={"output_tokens": 100}, first_token_ms=500.0, duration_ms=2500.0)
    assert out.tokens_per_s() == 50.0
    assert out.to_dict()["tokens_per_s"] == 50.0
    assert Outcome("ok", first_token_ms=1.0, duration_ms=2.0).tokens_per_s() is None
