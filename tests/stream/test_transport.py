"""The transport under httpx (httpx-aiohttp, aiohttp's parser): every body framing,
connection reuse, idle expiry (ours and the server's `Keep-Alive: timeout`), a dead
pooled connection tried once more on a fresh one (silent, FIN, RST), and response
heads bounded in time (trickled headers, endless interim responses)."""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from kznllm_py.stream import transport
from kznllm_py.stream.client import new_client
from kznllm_py.stream.transport import HeadTimeout, keep_alive_timeout
from tests.servers import LoopbackServer, Reply, http_response

pytestmark = pytest.mark.usefixtures("no_proxy")

TIMEOUT = httpx.Timeout(5.0)


async def get(
    server: LoopbackServer,
    client: httpx.AsyncClient,
    *,
    reused_head: float = 5.0,
    timeout: httpx.Timeout = TIMEOUT,
) -> tuple[int, bytes]:
    async with client.stream(
        "POST",
        server.url + "/x",
        content=b"{}",
        timeout=timeout,
        extensions={"reused_head": reused_head},
    ) as r:
        return r.status_code, b"".join([c async for c in r.aiter_bytes()])


async def test_content_length_body(server, client):
    server.queue(Reply(raw=http_response(200, b"exactly this", content_type="text/plain")))
    assert await get(server, client) == (200, b"exactly this")


async def test_close_delimited_body(server, client):
    server.queue(Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"))
    assert await get(server, client) == (200, b"until close")


async def test_keep_alive_connection_is_reused(server, client):
    server.queue(Reply(chunks=[b"one"]), Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"one")
    assert await get(server, client) == (200, b"two")
    assert server.connections_accepted == 1


async def test_after_a_broken_body_the_next_request_gets_a_fresh_connection(server, client):
    server.queue(Reply(chunks=[b"one"], end="disconnect"))
    with pytest.raises(httpx.RemoteProtocolError):
        await get(server, client)  # no terminating chunk: an incomplete body
    server.queue(Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"two")


async def test_a_body_abandoned_halfway_closes_its_connection(server, client):
    server.queue(Reply(chunks=[b"a", b"b"], pause_after=1), Reply(chunks=[b"next"]))
    async with client.stream("POST", server.url + "/x", content=b"{}") as r:
        async for _ in r.aiter_bytes():
            break
    await server.wait_client_gone_async()
    server.resume()
    assert await get(server, client) == (200, b"next")
    assert server.connections_accepted == 2


async def test_interim_responses_are_skipped(server, client):
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        + http_response(200, b"final", content_type="text/plain")
    )
    server.queue(Reply(raw=raw))
    assert await get(server, client) == (200, b"final")


# -- idle connections expire -------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """transport.now() plus an offset the test moves (idle time without waiting)."""
    offset = [0.0]
    real = transport.now
    monkeypatch.setattr(transport, "now", lambda: real() + offset[0])
    return offset


@pytest.mark.parametrize(
    ("header", "idle", "connections"),
    [
        (None, 14.0, 1),  # within our 15 s: reused
        (None, 16.0, 2),  # past it: a fresh connection
        ("timeout=5, max=100", 3.5, 1),  # within the server's 5 s, less a second of margin
        ("timeout=5, max=100", 4.5, 2),
        ("timeout=1", 0.0, 2),  # a server that keeps idle connections a second: never reused
        ("timeout=600", 16.0, 2),  # ours is the longest idle time, whatever the server says
    ],
)
async def test_idle_connections_expire(server, client, clock, header, idle, connections):
    headers = {"Content-Type": "text/event-stream"}
    if header:
        headers["Keep-Alive"] = header
    server.queue(Reply(headers=headers, chunks=[b"one"]), Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"one")
    clock[0] = idle
    assert await get(server, client) == (200, b"two")
    assert server.connections_accepted == connections


async def test_an_idle_connection_flagged_for_closing_is_not_reused(server, client):
    server.queue(Reply(chunks=[b"one"]), Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"one")
    connector = client._transport._connector  # the pool of the direct transport
    [[(proto, _)]] = list(connector._conns.values())
    proto.force_close()  # as a stray timer did in aiohttp 3.14 (aio-libs/aiohttp#12953)
    assert await get(server, client) == (200, b"two")
    assert server.connections_accepted == 2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("timeout=5", 5.0),
        ("max=10, timeout=2.5", 2.5),
        ("Timeout = 7", 7.0),
        ("max=3", None),
        ("timeout=x", None),
        ("timeout=-1", None),
        (None, None),
    ],
)
def test_keep_alive_header_parsing(value, seconds):
    assert keep_alive_timeout(value) == seconds


# -- a dead pooled connection: once more, on a fresh one ---------------------------------


@pytest.mark.parametrize(
    "dead",
    [
        Reply(raw=b"", end="stall"),  # silent: a NAT or a load balancer dropped it
        Reply(raw=b""),  # FIN as the request arrives
        Reply(raw=b"", end="reset"),  # RST
    ],
    ids=["silent", "fin", "rst"],
)
async def test_a_dead_reused_connection_is_retried_once_on_a_fresh_one(server, client, dead):
    server.queue(Reply(chunks=[b"one"]), dead, Reply(chunks=[b"two"]))
    assert await get(server, client) == (200, b"one")
    t0 = time.perf_counter()
    assert await get(server, client, reused_head=0.3) == (200, b"two")
    assert time.perf_counter() - t0 < 4.0  # well before the 5 s stall timeout
    assert len(server.requests) == 3  # the dead one got the request, then the fresh one
    assert server.connections_accepted == 2


async def test_a_fresh_connection_that_dies_is_not_retried(server, client):
    server.queue(Reply(raw=b""), Reply(chunks=[b"never asked for"]))
    with pytest.raises(httpx.RemoteProtocolError):
        await get(server, client)
    assert len(server.requests) == 1


async def test_retried_once_only(server, client):
    server.queue(Reply(chunks=[b"one"]), Reply(raw=b""), Reply(raw=b""), Reply(chunks=[b"3"]))
    assert await get(server, client) == (200, b"one")
    with pytest.raises(httpx.RemoteProtocolError):
        await get(server, client)
    assert len(server.requests) == 3


async def test_a_slow_head_on_a_fresh_connection_waits_the_stall_timeout(server, client):
    """The short wait is for reused connections only: a fresh one that is slow to answer
    (a local model reading a long prompt) is not sent the request twice."""
    server.queue(Reply(raw=http_response(200, b"late", content_type="text/plain"), end="stall"))
    server.queue(Reply(chunks=[b"two"]))
    async with client.stream(
        "POST", server.url + "/x", content=b"{}", extensions={"reused_head": 0.01}
    ) as r:
        assert await r.aread() == b"late"
    assert len(server.requests) == 1


# -- heads bounded in time ----------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw_chunks=[bytes([b]) for b in http_response(200, b"x")], gap=0.1),  # 1 B / 0.1 s
        Reply(raw_chunks=itertools.repeat(b"HTTP/1.1 103 Early Hints\r\n\r\n"), gap=0.02),
    ],
    ids=["trickled-headers", "endless-103"],
)
async def test_a_response_head_must_come_within_the_stall_timeout(server, client, reply):
    server.queue(reply)
    t0 = time.perf_counter()
    with pytest.raises(HeadTimeout):
        await get(server, client, timeout=httpx.Timeout(5.0, read=0.5))
    assert time.perf_counter() - t0 < 3.0
    await server.wait_client_gone_async()


@pytest.fixture
async def client(no_proxy: None):
    async with new_client() as c:
        yield c
