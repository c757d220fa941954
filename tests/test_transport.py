"""The streaming transport under httpx: chunked decoding in bulk whatever the framing,
every body framing HTTP/1.1 has, connection reuse, and httpx's own layers on top."""

from __future__ import annotations

import gzip

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.transport import ChunkedDecoder, StreamingTransport
from tests.servers import LoopbackServer, Reply, http_response


def chunked(parts: list[bytes], trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return body + b"0\r\n" + trailer + b"\r\n"


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.binary(min_size=1, max_size=40), max_size=12),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_chunked_decoder_gives_the_body_whatever_the_reads(parts, cuts):
    wire = chunked(parts, b"X-Trailer: 1\r\n")
    bounds = sorted({min(c, len(wire)) for c in cuts})
    d = ChunkedDecoder()
    got = b""
    for i, j in zip([0, *bounds], [*bounds, len(wire)], strict=True):
        got += d.feed(wire[i:j])
    assert got == b"".join(parts)
    assert d.done


def test_chunk_extensions_are_ignored():
    d = ChunkedDecoder()
    assert d.feed(b"5;name=value\r\nhello\r\n0\r\n\r\n") == b"hello"
    assert d.done


@pytest.mark.parametrize(
    "wire", [b"zz\r\n", b"5\r\nhelloXX", b"1" * 2000], ids=["bad-size", "no-crlf", "endless-size"]
)
def test_malformed_chunking_is_a_protocol_error(wire):
    with pytest.raises(httpx.RemoteProtocolError):
        ChunkedDecoder().feed(wire)


async def get(server: LoopbackServer, client: httpx.AsyncClient) -> tuple[int, bytes]:
    async with client.stream("GET", server.url + "/x") as r:
        return r.status_code, b"".join([c async for c in r.aiter_bytes()])


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=StreamingTransport()) as c:
        yield c


async def test_content_length_body(server, client):
    server.queue(Reply(raw=http_response(200, b"exactly this", content_type="text/plain")))
    assert await get(server, client) == (200, b"exactly this")


async def test_close_delimited_body(server, client):
    server.queue(Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"))
    assert await get(server, client) == (200, b"until close")


async def test_gzip_bodies_are_decoded_by_httpx_on_top(server, client):
    body = gzip.compress(b"data: compressed\n\n")
    server.queue(
        Reply(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
            chunks=[body[:7], body[7:]],
        )
    )
    assert await get(server, client) == (200, b"data: compressed\n\n")


async def test_keep_alive_connection_is_reused(server, client):
    server.queue(Reply(chunks=[b"one"]), Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"one")
    assert await get(server, client) == (200, b"two")
    assert server.connections_accepted == 1


async def test_after_a_broken_body_the_next_request_gets_a_fresh_connection(server, client):
    # the first reply drops its connection mid-body: the next request must not reuse it
    server.queue(Reply(chunks=[b"one"], end="disconnect"))
    with pytest.raises(httpx.RemoteProtocolError):
        await get(server, client)  # no terminating chunk: an incomplete body
    server.queue(Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"two")


async def test_a_body_abandoned_halfway_closes_its_connection(server, client):
    server.queue(Reply(chunks=[b"a", b"b"], pause_after=1), Reply(chunks=[b"next"]))
    async with client.stream("GET", server.url + "/x") as r:
        async for _ in r.aiter_bytes():
            break
    await server.wait_client_gone_async()
    server.resume()
    assert await get(server, client) == (200, b"next")
    assert server.connections_accepted == 2


async def test_interim_100_continue_is_skipped(server, client):
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(200, b"final", content_type="text/plain")
    server.queue(Reply(raw=raw))
    assert await get(server, client) == (200, b"final")
