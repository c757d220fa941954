"""A burst through the real transport (aiohttp under httpx) from a real loopback server:
thousands of small HTTP chunks, one event each, more than the body reader's buffer, and
the same gzip-compressed in small chunks (aiohttp inflates them piece by piece): every
byte arrives, in order, with connection._Protocol skipping aiohttp's resume call after
each chunk read while the connection is not paused."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator

import pytest
from aiohttp import ClientPayloadError
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.providers import get_provider
from kznllm_py.providers.base import Message, Prompt, TextDelta
from kznllm_py.stream import connection
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
    fast_reader = connection._fast_reader

    def spy(content: object) -> None:
        fast_reader(content)
        readers.append(type(content))

    monkeypatch.setattr(connection, "_fast_reader", spy)
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
    """connection._BodyReader (aiohttp's reader, its class changed: a chunk's end not
    kept, the buffer taken in one join): 6,000 HTTP chunks, every byte in order."""
    pieces, reader = await _read_raw(RAW, monkeypatch)
    assert reader is connection._BodyReader
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
    monkeypatch.setattr(connection, "_READER_OK", False)
    pieces, reader = await _read_raw(RAW, monkeypatch)
    assert reader is StreamReader
    assert b"".join(pieces) == BODY


async def test_the_body_reader_hands_out_what_arrived_before_the_connection_failed():
    # the server's last events and its close come in one read: aiohttp sets the error
    # while the events still sit in the buffer, and its own readany raised it first (the
    # answer lost "ial": tests/cli/test_cli.py's partial-text test, 2 runs in 15)
    loop = asyncio.get_running_loop()
    reader = StreamReader(connection._Protocol(loop=loop), 2**16, loop=loop)
    connection._fast_reader(reader)
    assert type(reader) is connection._BodyReader
    reader.feed_data(b"data: part\n\n")
    reader.feed_data(b"data: ial\n\n")
    reader.settle()
    reader.set_exception(ClientPayloadError("closed mid-answer"))
    assert await reader.readany() == b"data: part\n\ndata: ial\n\n"
    with pytest.raises(ClientPayloadError, match="mid-answer"):
        await reader.readany()


def test_a_reader_on_another_protocol_stays_aiohttps():
    """Only a reader of our own connections (connection._Protocol, whose `hold` its
    back pressure uses) becomes a _BodyReader."""
    loop = asyncio.new_event_loop()
    try:
        reader = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
        connection._fast_reader(reader)
        assert type(reader) is StreamReader
    finally:
        loop.close()


BIG = [b"data: " + b"x" * 200 + b"%06d\n\n" % i for i in range(16_000)]  # ~3.4 MB


@pytest.mark.parametrize("ours", [True, False])
async def test_a_body_nobody_reads_stops_the_connection_past_the_high_water_mark(ours, monkeypatch):
    """A burst nobody reads for now (a held answer: history's entry first) is not
    buffered whole: past the reader's high water mark the connection stops reading (our
    reader: once per network read, `_Protocol.hold`; aiohttp's: per chunk), and once the
    body is read again every byte comes, in order."""
    monkeypatch.setattr(connection, "_READER_OK", ours)
    readers: list[StreamReader] = []
    fast_reader = connection._fast_reader

    def spy(content: StreamReader) -> None:
        fast_reader(content)
        readers.append(content)

    monkeypatch.setattr(connection, "_fast_reader", spy)
    raw = HEAD + b"\r\n" + b"".join(chunked(e, len(e))[:-5] for e in BIG) + b"0\r\n\r\n"
    with LoopbackServer(default=Reply(raw=raw)) as server:
        client = new_client()
        try:
            async with client.stream("POST", server.base_url + "/chat/completions") as response:
                reader = readers[-1]
                assert (type(reader) is connection._BodyReader) is ours
                sock = reader._protocol.transport
                deadline = asyncio.get_running_loop().time() + 10
                while sock.is_reading():  # the loop reads until the mark (no nap: a tick)
                    assert asyncio.get_running_loop().time() < deadline, "never stopped reading"
                    await asyncio.sleep(0)
                # the mark, and at most one read past it
                assert reader._size <= reader._high_water + READ_BUFSIZE
                assert reader._size < len(raw) // 2
                pieces = [piece async for piece in response.aiter_raw()]
        finally:
            await client.aclose()
    assert b"".join(pieces) == b"".join(BIG)


async def test_what_a_read_brings_reaches_the_body_reader_before_the_body_ends():
    """Our reader's bookkeeping is per network read: each read wakes the body's reader
    (the events a server sent before it went quiet are read while it is quiet)."""
    events = EVENTS[:40]
    # 2 ms apart: the reader waits for each read (every one must wake it)
    reply = Reply(chunks=events, gap=0.002, pause_after=30, end="close")
    with LoopbackServer(default=reply) as server:
        client = new_client()
        try:
            async with client.stream("POST", server.base_url + "/chat/completions") as response:
                it = response.aiter_raw()
                got = b""
                while len(got) < len(b"".join(events[:30])):
                    got += await asyncio.wait_for(anext(it), 10)
                assert got == b"".join(events[:30])
                server.resume()
                got += b"".join([piece async for piece in it])
        finally:
            await client.aclose()
    assert got == b"".join(events)


@pytest.mark.parametrize("whole", [False, True])
async def test_past_the_mark_a_body_still_coming_stops_its_connection_a_whole_one_not(whole):
    """The reader's back pressure (once per read, `settle`) stops the connection while
    more of the body may come; a body read whole stops nothing (its connection may be in
    the pool already, where a stopped transport would hang the next request)."""
    import socket

    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        protocol = connection._Protocol(loop=loop)
        sock, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
        reader = StreamReader(protocol, READ_BUFSIZE, loop=loop)
        connection._fast_reader(reader)
        assert type(reader) is connection._BodyReader
        for _ in range(3):  # past the mark (twice the limit) in one read
            reader.feed_data(b"x" * READ_BUFSIZE)
        if whole:
            reader.feed_eof()
        reader.settle()
        assert sock.is_reading() is whole
        assert await reader.readany() == b"x" * (3 * READ_BUFSIZE)
        assert sock.is_reading()  # the buffer taken: reading again
        sock.close()
    finally:
        theirs.close()


@st.composite
def cut_response(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A chunked response of events grouped into HTTP chunks any way (empty events,
    multi-byte characters), written in pieces cut anywhere (a chunk's size line, its
    CRLF, a character); and its body."""
    events = draw(st.lists(st.text(max_size=40).map(str.encode), min_size=1, max_size=40))
    groups = sorted(set(draw(st.lists(st.integers(1, len(events)), max_size=len(events)))))
    pieces = [
        b"".join(events[a:b]) for a, b in zip([0, *groups], [*groups, len(events)], strict=True)
    ]
    pieces = [p for p in pieces if p]  # an empty chunk would end the body
    raw = HEAD + b"\r\n" + b"".join(chunked(p, len(p))[:-5] for p in pieces) + b"0\r\n\r\n"
    cuts = sorted(set(draw(st.lists(st.integers(1, len(raw) - 1), max_size=12))))
    writes = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    return b"".join(pieces), writes


@pytest.fixture(scope="module")
def cuts_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@settings(max_examples=60, deadline=None)
@given(cut=cut_response())
def test_any_chunking_and_cut_reads_the_same_body_through_our_reader_and_aiohttps(
    cuts_server: LoopbackServer, cut: tuple[bytes, list[bytes]]
):
    """The body reader's per-read bookkeeping against aiohttp's own per-chunk reader:
    whatever the HTTP chunks and however the bytes are cut into writes, both read the
    body, whole and in order."""
    body, writes = cut

    async def read(ours: bool) -> bytes:
        saved = connection._READER_OK
        connection._READER_OK = ours
        try:
            client = new_client()
            try:
                url = cuts_server.base_url + "/chat/completions"
                async with client.stream("POST", url) as response:
                    return b"".join([piece async for piece in response.aiter_raw()])
            finally:
                await client.aclose()
        finally:
            connection._READER_OK = saved

    for ours in (True, False):
        cuts_server.queue(Reply(raw_chunks=writes))
        assert asyncio.run(read(ours)) == body
