"""A burst through the real transport (aiohttp under httpx) from a real loopback server:
thousands of small HTTP chunks, one event each, more than the body reader's buffer, and
the same gzip-compressed in small chunks (aiohttp inflates them piece by piece): every
byte arrives, in order, with transport._Protocol skipping aiohttp's resume call after
each chunk read while the connection is not paused."""

from __future__ import annotations

import gzip

import pytest

from kznllm_py.providers import get_provider
from kznllm_py.providers.base import Message, Prompt, TextDelta
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
