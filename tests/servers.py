"""A scriptable loopback HTTP/1.1 server for tests, plus SSE stream builders.

`LoopbackServer` runs a tiny hand-written asyncio server in a background thread with
its own event loop, bound to 127.0.0.1 on an ephemeral port, so it serves synchronous
tests (that drive a real Neovim) and async tests (whose loop must stay free for the
client) alike. Replies are scripted with `Reply` and consumed in order by `queue()`;
when the queue is empty, the `default` reply answers.

    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(["Hel", "lo"])))
        ...  # point a preset at server.base_url
        server.wait_requests(1)
        assert server.requests[0].body["stream"] is True

Waiting is on conditions with deadlines, never sleep-polling. From an async test use
the `*_async` twins (`await server.wait_requests_async(1)`): the blocking ones would
freeze the test's loop, and with it the client under test.

Limits: HTTP/1.1 only (TLS with `tls=`, any loopback address with `host=`), no
pipelining (httpx never pipelines), request bodies framed by Content-Length or chunked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = [
    "LoopbackServer",
    "Recorded",
    "Reply",
    "anthropic_events",
    "blackhole_port",
    "crlf",
    "every_split",
    "fixed_chunks",
    "free_port_refusing",
    "http_response",
    "json_reply",
    "openai_events",
    "split_at",
    "split_bytes",
]

HOST = "127.0.0.1"
_READ_SIZE = 64 * 1024


@dataclass
class Reply:
    """One scripted response.

    `chunks` are written one per write (each its own HTTP chunk with
    `Transfer-Encoding: chunked`; unframed when `headers` carry a Content-Length), with
    TCP_NODELAY and a drain after each write, `gap` seconds apart (pacing only).

    `end`: "close" sends the terminating 0-chunk (the connection stays open for the next
    request, keep-alive); "disconnect" closes the socket (FIN) without it; "reset"
    aborts it (RST); "stall" keeps the connection open and sends nothing more until
    `server.resume()` (then ends as "close") or the client or server closes.

    `pause_after`: after writing that many chunks, wait for `server.resume()`.
    `raw`: written verbatim instead of a chunked response (status, headers and chunks
    are then ignored); the connection is closed afterwards unless `end` is "stall".
    `raw_chunks`: the same, one write each, `gap` seconds apart (trickled headers, an
    endless run of interim responses: any iterable, endless ones too).

    `chunks` may be any iterable, an endless one too (a comment flood).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/event-stream"})
    chunks: Iterable[bytes] = field(default_factory=list)
    gap: float = 0.0
    end: str = "close"
    pause_after: int | None = None
    raw: bytes | None = None
    raw_chunks: Iterable[bytes] | None = None

    def __post_init__(self) -> None:
        if self.end not in ("close", "disconnect", "reset", "stall"):
            raise ValueError(f"Reply.end: unknown {self.end!r}")


@dataclass
class Recorded:
    """A request as the server received it. Header names are lower-cased; `body` is the
    JSON-decoded body when it parses, else the raw bytes; `at` is when its head had
    arrived (time.time(), as history's `started_at`)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = 0.0

    @property
    def system(self) -> str:
        """The text of the first message of a chat body (the system prompt)."""
        content = self.body["messages"][0]["content"]
        assert isinstance(content, str)
        return content


class _ClientGone(Exception):
    pass


class _Conn:
    """One accepted connection: a pump task reads everything the client sends into a
    buffer, so that a client going away is seen at once, even while a reply stalls."""

    def __init__(
        self, server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False
        self.closing = False  # the server closes it: not a client going away
        self.in_response = False
        self.changed = asyncio.Event()
        self.gone = asyncio.Event()
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                data = await self.reader.read(_READ_SIZE)
                if not data:
                    break
                self.buf += data
                self.changed.set()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            return
        self.eof = True
        self.changed.set()
        self._went_away()

    def _went_away(self) -> None:
        """The client closed or reset the connection (seen by a read or a write)."""
        if not self.closing and not self.gone.is_set():
            self.gone.set()
            self.server._client_went_away(mid_response=self.in_response)

    async def _more(self) -> None:
        if self.eof:
            raise _ClientGone
        self.changed.clear()
        await self.changed.wait()

    async def read_until(self, sep: bytes) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            await self._more()

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_request(self) -> tuple[Recorded, bool]:
        head = await self.read_until(b"\r\n\r\n")
        at = time.time()
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = [*lines[0].split(" ", 2), "", "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int((await self.read_until(b"\r\n")).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await self.read_until(b"\r\n")  # no trailers expected
                    break
                body += await self.read_exactly(size)
                await self.read_exactly(2)
        else:
            body = await self.read_exactly(int(headers.get("content-length") or 0))
        try:
            parsed: Any = json.loads(body) if body else body
        except (ValueError, UnicodeDecodeError):
            parsed = body
        keep_alive = headers.get("connection", "").lower() != "close" and version != "HTTP/1.0"
        return Recorded(method, path, headers, parsed, at), keep_alive

    async def write(self, data: bytes) -> None:
        if self.eof:
            raise _ClientGone
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            # the client went away while we wrote: as seen by the pump, had it read first
            self._went_away()
            raise _ClientGone from None

    async def wait_resume_or_gone(self) -> None:
        """Park until server.resume() (consuming it) or the client leaves."""
        srv = self.server
        assert srv._resumed is not None
        srv._paused += 1
        srv._signal()
        try:
            resumed = asyncio.ensure_future(srv._resumed.wait())
            gone = asyncio.ensure_future(self.gone.wait())
            try:
                await asyncio.wait({resumed, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                resumed.cancel()
                gone.cancel()
            if self.gone.is_set():
                raise _ClientGone
            srv._resumed.clear()
        finally:
            srv._paused -= 1
            srv._signal()

    def close(self, *, reset: bool = False) -> None:
        self.closing = True
        if reset:
            self.writer.transport.abort()
        else:
            self.writer.close()


class LoopbackServer:
    """See the module docstring. Starts serving in __init__; `close()` (or leaving the
    `with` block) stops it and drops every connection."""

    def __init__(
        self,
        default: Reply | None = None,
        *,
        host: str = HOST,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.default = default if default is not None else Reply(chunks=openai_events(["ok"]))
        self.requests: list[Recorded] = []
        self.connections_closed_by_client = 0
        self.clients_gone_mid_response = 0
        self.connections_accepted = 0
        self._replies: deque[Reply] = deque()
        self._cond = threading.Condition()
        self._paused = 0
        self._closed = False
        self._conns: set[_Conn] = set()
        self._resumed: asyncio.Event | None = None

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(64)
        self.port: int = sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.base_url = self.url + "/v1"

        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._resumed = asyncio.Event()
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._handle, sock=sock, ssl=tls)
                )
            except BaseException as exc:  # surfaced to the constructor
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"loopback-{self.port}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            sock.close()
            raise failure[0]

    # -- scripting --------------------------------------------------------------------

    def queue(self, *replies: Reply) -> None:
        with self._cond:
            self._replies.extend(replies)

    def resume(self) -> None:
        """Release replies parked at `pause_after` or in `end="stall"`. Latched: when none
        is parked yet, the next one to reach its pause passes straight through."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self._resume_now)

    def _resume_now(self) -> None:
        assert self._resumed is not None
        self._resumed.set()

    # -- waiting (blocking; use the *_async twins from a coroutine) -------------------

    def _wait_for(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"loopback server: {what} within {timeout:g} s")
                self._cond.wait(left)

    def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        self._wait_for(
            lambda: len(self.requests) >= n,
            timeout,
            f"wanted {n} request(s), got {len(self.requests)}",
        )

    def wait_client_gone(self, timeout: float = 5.0, *, n: int = 1) -> None:
        """Wait until `n` connections in all were closed by their client."""
        self._wait_for(
            lambda: self.connections_closed_by_client >= n,
            timeout,
            f"wanted {n} client(s) gone, saw {self.connections_closed_by_client}",
        )

    def wait_paused(self, timeout: float = 5.0, *, n: int = 1) -> None:
        """Wait until `n` replies are parked at their `pause_after` or stall."""
        self._wait_for(lambda: self._paused >= n, timeout, f"wanted {n} paused repl(ies)")

    async def wait_requests_async(self, n: int, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.wait_requests, n, timeout)

    async def wait_client_gone_async(self, timeout: float = 5.0, *, n: int = 1) -> None:
        await asyncio.to_thread(self.wait_client_gone, timeout, n=n)

    async def wait_paused_async(self, timeout: float = 5.0, *, n: int = 1) -> None:
        await asyncio.to_thread(self.wait_paused, timeout, n=n)

    def _signal(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _client_went_away(self, *, mid_response: bool) -> None:
        with self._cond:
            self.connections_closed_by_client += 1
            if mid_response:
                self.clients_gone_mid_response += 1
            self._cond.notify_all()

    # -- serving (in the server's thread) ---------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(self, reader, writer)
        self._conns.add(conn)
        with self._cond:
            self.connections_accepted += 1
        try:
            while True:
                request, keep_alive = await conn.read_request()
                with self._cond:
                    self.requests.append(request)
                    reply = self._replies.popleft() if self._replies else self.default
                    self._cond.notify_all()
                conn.in_response = True
                keep = await self._respond(conn, reply)
                conn.in_response = False
                if not (keep and keep_alive):
                    break
        except (_ClientGone, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the server is closing
        finally:
            if not conn.closing:
                conn.close()  # also after the client's FIN: the transport stays half-open
            conn.pump.cancel()
            self._conns.discard(conn)

    async def _respond(self, conn: _Conn, reply: Reply) -> bool:
        """Write `reply`; True when the connection may serve another request."""
        if reply.raw_chunks is not None:
            for i, data in enumerate(reply.raw_chunks):
                if i and reply.gap:
                    await asyncio.sleep(reply.gap)
                await conn.write(data)
        if reply.raw is not None or reply.raw_chunks is not None:
            await conn.write(reply.raw or b"")
            if reply.end == "stall":
                await conn.wait_resume_or_gone()
            conn.close(reset=reply.end == "reset")
            return False
        reason = _reason_phrase(reply.status)
        framed = not any(k.lower() == "content-length" for k in reply.headers)
        head = [f"HTTP/1.1 {reply.status} {reason}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if framed:
            head.append("Transfer-Encoding: chunked")
        await conn.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if reply.pause_after == 0:
            await conn.wait_resume_or_gone()
        for i, chunk in enumerate(reply.chunks):
            if i and reply.gap:
                await asyncio.sleep(reply.gap)
            if chunk:  # an empty HTTP chunk would end the body
                await conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framed else chunk)
            if reply.pause_after is not None and i + 1 == reply.pause_after:
                await conn.wait_resume_or_gone()
        if reply.end == "stall":
            await conn.wait_resume_or_gone()
        if reply.end in ("disconnect", "reset"):
            conn.close(reset=reply.end == "reset")
            return False
        if framed:
            await conn.write(b"0\r\n\r\n")
        return True

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for conn in list(self._conns):
                conn.close(reset=True)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> LoopbackServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# -- replies ------------------------------------------------------------------------------


def _json(obj: Any) -> bytes:
    # raw UTF-8 (not \\u escapes): multi-byte characters really cross the wire as bytes
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_reply(status: int, obj: Any, *, headers: dict[str, str] | None = None) -> Reply:
    """A (chunked, keep-alive) JSON reply, e.g. a provider's error body."""
    return Reply(
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
        chunks=[_json(obj)],
    )


def http_response(
    status: int, body: bytes = b"", *, content_type: str = "text/html; charset=utf-8"
) -> bytes:
    """A complete raw response with Content-Length and `Connection: close`, for
    `Reply(raw=...)`."""
    return (
        f"HTTP/1.1 {status} {_reason_phrase(status)}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


# -- stream builders ------------------------------------------------------------------------


def openai_events(
    texts: Sequence[str],
    *,
    finish: str = "stop",
    usage: dict | None = None,
    done: bool = True,
    model: str = "gpt-test",
) -> list[bytes]:
    """A Chat Completions stream as OpenAI sends it, one `data: ...\\n\\n` per item:
    a role-only first delta, one content delta per text, the finish chunk, an optional
    usage chunk (empty `choices`), then `data: [DONE]`."""
    base = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_test",
    }

    def chunk(delta: dict, finish_reason: str | None) -> bytes:
        obj = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        return b"data: " + _json(obj) + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""}, None)]
    out += [chunk({"content": t}, None) for t in texts]
    out.append(chunk({}, finish))
    if usage is not None:
        out.append(b"data: " + _json({**base, "choices": [], "usage": usage}) + b"\n\n")
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def anthropic_events(
    texts: Sequence[str],
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 10,
    output_tokens: int | None = None,
    model: str = "claude-test",
) -> list[bytes]:
    """A Messages stream as Anthropic sends it, one `event: X\\ndata: {...}\\n\\n` each."""

    def ev(kind: str, obj: dict) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + _json(obj) + b"\n\n"

    out = [
        ev(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_test",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                },
            },
        ),
        ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ev("ping", {"type": "ping"}),
    ]
    out += [
        ev(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
        )
        for t in texts
    ]
    out += [
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": len(texts) if output_tokens is None else output_tokens},
            },
        ),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return out


# -- re-chunking --------------------------------------------------------------------------


def split_bytes(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes, in order; the rest (if any) is the last
    piece. `sizes` may be endless (e.g. itertools.cycle([1, 7]))."""
    out: list[bytes] = []
    pos = 0
    for size in sizes:
        if pos >= len(data):
            break
        if size <= 0:
            raise ValueError("split_bytes: sizes must be positive")
        out.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return out


def split_at(data: bytes, *offsets: int) -> list[bytes]:
    """`data` cut at the given byte offsets (empty pieces dropped)."""
    cuts = [0, *sorted(offsets), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def fixed_chunks(data: bytes, size: int) -> list[bytes]:
    return split_bytes(data, itertools.repeat(size))


def every_split(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """(offset, [data[:offset], data[offset:]]) for every offset 1..len-1."""
    for i in range(1, len(data)):
        yield i, [data[:i], data[i:]]


def crlf(chunks: Iterable[bytes]) -> list[bytes]:
    """The same stream with CRLF line ends."""
    return [c.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for c in chunks]


# -- ports that do not answer -------------------------------------------------------------

_refusing: list[socket.socket] = []


def free_port_refusing() -> int:
    """A loopback port with nothing listening: connecting to it is refused at once. The
    port stays bound (never listening) for the life of the process, so that nobody else
    can start listening on it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    _refusing.append(sock)
    return sock.getsockname()[1]


@contextlib.contextmanager
def blackhole_port(max_fill: int = 16) -> Iterator[int]:
    """A loopback port whose connect() never completes: a listener with backlog 0 that
    never accepts, its accept queue filled first, so that Linux drops further SYNs and a
    client's connect times out. Raises RuntimeError when the kernel does not behave so."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(max_fill):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(0.1)
            try:
                s.connect((HOST, port))
            except TimeoutError:
                s.close()
                break  # the queue is full: connects now hang
            fillers.append(s)
        else:
            raise RuntimeError("blackhole_port: the accept queue never filled")
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()
