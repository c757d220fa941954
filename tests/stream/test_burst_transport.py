"""A burst through the real transport (aiohttp under httpx) from a real loopback server:
thousands of small HTTP chunks, one event each, more than the body reader's buffer, and
the same gzip-compressed in small chunks (aiohttp inflates them piece by piece): every
byte arrives, in order, with transport._Protocol skipping aiohttp's resume call after
each chunk read while the connection is not paused."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp import ClientPayloadError
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader

from kznllm_py.providers import get_provider
from kznllm_py.providers.base import Message, Prompt, TextDelta
from kznllm_py.stream import transport
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import stream_deltas
from kznllm_py.stream.transport import READ_BUFSIZE
from tests.servers import LoopbackServer, Reply, openai_events

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"


def chunked(data: bytes, size: int) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


TOKENS = [f"tok{i}\n" if i % 16 == 15 else f"tök{i} " for i in range(6000)]
EVENTS = openai_events(TOKENS)
BODY = b"".join(EVENTS)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_burst_of_small_chunks_past_the_read_buffer_arrives_whole(encoding):
    assert len(BODY) > 2 * READ_BUFSIZE
    if encoding == "gzip":
        raw = HEAD + b"Content-Encoding: gzip\r\n\r\n" + chunked(gzip.compress(BODY), 97)
    else:
        raw = HEAD + b"\r\n" + b"".join(chunked(e, len(e))[:-5] for e in EVENTS) + b"0\r\n\r\n"
    provider = get_provider("openai")
    with LoopbackServer(default=Reply(raw=raw)) as server:
        request = provider.build_request(
            base_url=server.base_url,
            model="m",
            prompt=Prompt("", (Message("user", "q"),)),
            params={},
            api_key=None,
        )
        client = new_client()
        try:
            texts = [
                d.text
                async for batch in stream_deltas(client, provider, request, Timeouts())
                for d in batch
                if type(d) is TextDelta
            ]
        finally:
            await client.aclose()
    assert "".join(texts) == "".join(TOKENS)


async def _read_raw(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], type]:
    """The body's pieces as the transport gives them (httpx's aiter_raw), and the class
    of the aiohttp reader they came through."""
    readers: list[type] = []
    fast_reader = transport._fast_reader

    def spy(content: object) -> None:
        fast_reader(content)
        readers.append(type(content))

    monkeypatch.setattr(transport, "_fast_reader", spy)
    with LoopbackServer(default=Reply(raw=raw)) as server:
        client = new_client()
        try:
            async with client.stream("POST", server.base_url + "/chat/completions") as response:
                pieces = [piece async for piece in response.aiter_raw()]
        finally:
            await client.aclose()
    # made ours as the head is read, before its body (again, a no-op, as it is read)
    assert readers and len(set(readers)) == 1
    return pieces, readers[0]


RAW = HEAD + b"\r\n" + b"".join(chunked(e, len(e))[:-5] for e in EVENTS) + b"0\r\n\r\n"


async def test_a_burst_of_chunks_is_read_by_the_body_reader_whole(monkeypatch):
    """transport._BodyReader (aiohttp's reader, its class changed: a chunk's end not
    kept, the buffer taken in one join): 6,000 HTTP chunks, every byte in order."""
    pieces, reader = await _read_raw(RAW, monkeypatch)
    assert reader is transport._BodyReader
    assert b"".join(pieces) == BODY


async def test_the_chunks_that_come_with_the_head_go_to_the_body_reader(monkeypatch):
    """A burst's first read brings the head and a thousand HTTP chunks: the reader is
    made ours as soon as the head is parsed, so none of them goes through aiohttp's
    own chunk bookkeeping (a Python call twice per chunk), on a fresh connection and
    on a reused one."""
    calls = []
    real = StreamReader.end_http_chunk_receiving

    def counted(self: StreamReader) -> None:
        calls.append(type(self))
        real(self)

    monkeypatch.setattr(StreamReader, "end_http_chunk_receiving", counted)
    with LoopbackServer(default=Reply(raw=RAW)) as server:
        client = new_client()
        try:
            for _ in range(2):  # the second on the pooled connection
                async with client.stream("POST", server.base_url + "/chat/completions") as r:
                    assert b"".join([piece async for piece in r.aiter_raw()]) == BODY
        finally:
            await client.aclose()
    assert calls == []


async def test_an_aiohttp_whose_reader_differs_keeps_its_own_reader(monkeypatch):
    """Where aiohttp's StreamReader is not the one _BodyReader knows, the body is read
    with aiohttp's own reader: slower, byte for byte the same."""
    monkeypatch.setattr(transport, "_READER_OK", False)
    pieces, reader = await _read_raw(RAW, monkeypatch)
    assert reader is StreamReader
    assert b"".join(pieces) == BODY


async def test_the_body_reader_hands_out_what_arrived_before_the_connection_failed():
    # the server's last events and its close come in one read: aiohttp sets the error
    # while the events still sit in the buffer, and its own readany raised it first (the
    # answer lost "ial": tests/cli/test_cli.py's partial-text test, 2 runs in 15)
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    transport._fast_reader(reader)
    assert type(reader) is transport._BodyReader
    reader.feed_data(b"data: part\n\n")
    reader.feed_data(b"data: ial\n\n")
    reader.set_exception(ClientPayloadError("closed mid-answer"))
    assert await reader.readany() == b"data: part\n\ndata: ial\n\n"
    with pytest.raises(ClientPayloadError, match="mid-answer"):
        await reader.readany()
