"""An httpx transport for streamed answers: HTTP/1.1 over asyncio streams, with the
response body decoded in bulk, one batch per network read.

Why: httpx's default stack parses a chunked body with h11, in pure Python, one HTTP
chunk at a time; a provider flushes one chunk per SSE event, so a fast stream of 5,000
events cost 35-45 ms in h11 alone on the 2-core machine we measure on, before any
work of ours. Here a network read of many chunks is decoded with a few `bytes.find`
calls and handed on as one piece.

Everything else stays httpx's: the client API, timeouts (from the request's
extensions), content decoding (gzip, ...), and proxies (httpx mounts its own proxy
transports for the URLs that go through one; this transport serves direct
connections). Errors are raised as httpx's exceptions, so the one mapping to the
project's errors stays in client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

READ_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024
_NO_BODY_STATUS = {204, 304}

Key = tuple[str, str, int]


class _Connection:
    __slots__ = ("key", "reader", "writer")

    def __init__(self, key: Key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.key = key
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class ChunkedDecoder:
    """`Transfer-Encoding: chunked`, incrementally and in bulk: feed() takes whatever
    arrived and returns the body bytes it completes; `done` once the last chunk and the
    trailers are in. Raises httpx.RemoteProtocolError on malformed framing."""

    __slots__ = ("_buf", "_left", "_state", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0  # bytes of chunk data still to come
        self._state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        out: list[bytes] = []
        state = self._state
        left = self._left
        while pos < end:
            if state == 1:
                take = min(left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                left -= take
                if left:
                    break
                state = 2
            elif state == 2:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError(
                        "malformed chunked encoding (no CRLF after data)"
                    )
                pos += 2
                state = 0
            elif state == 0:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    if end - pos > 1024:
                        raise httpx.RemoteProtocolError("illegal chunk header: too long")
                    break
                size_field = buf[pos:nl].split(b";", 1)[0].strip()
                try:
                    left = int(size_field, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(
                        f"illegal chunk header: {size_field[:20]!r}"
                    ) from None
                pos = nl + 2
                state = 1 if left else 3
            else:  # trailers, up to an empty line
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    break
                line_empty = nl == pos
                pos = nl + 2
                if line_empty:
                    self.done = True
                    break
        self._buf = buf[pos:]
        self._state = state
        self._left = left
        return b"".join(out) if len(out) != 1 else out[0]


class _Body(httpx.AsyncByteStream):
    def __init__(
        self,
        transport: StreamingTransport,
        conn: _Connection,
        *,
        chunked: bool,
        length: int | None,
        keep_alive: bool,
        read_timeout: float | None,
        leftover: bytes,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._chunked = ChunkedDecoder() if chunked else None
        self._left = length  # None: until the connection closes
        self._keep_alive = keep_alive
        self._timeout = read_timeout
        self._leftover = leftover
        self._finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        pending = self._leftover
        self._leftover = b""
        try:
            while True:
                if pending:
                    data, pending = pending, b""
                else:
                    if self._complete():
                        break
                    data = await _read(reader, self._timeout)
                    if not data:
                        self._eof()
                        break
                piece = self._decode(data)
                if piece:
                    yield piece
                if self._complete():
                    break
        except BaseException:
            self._conn.close()
            raise
        self._finished = True
        if self._keep_alive and self._complete():
            self._transport._release(self._conn)
        else:
            self._conn.close()

    def _decode(self, data: bytes) -> bytes:
        if self._chunked is not None:
            return self._chunked.feed(data)
        if self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
        return data

    def _complete(self) -> bool:
        if self._chunked is not None:
            return self._chunked.done
        return self._left is not None and self._left <= 0

    def _eof(self) -> None:
        if self._chunked is not None:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                "(incomplete chunked read)"
            )
        if self._left:
            raise httpx.RemoteProtocolError(
                f"peer closed connection without sending complete message body "
                f"({self._left} bytes missing)"
            )
        self._keep_alive = False  # a close-delimited body ended as it should

    async def aclose(self) -> None:
        if not self._finished:
            self._conn.close()  # a body read halfway cannot be reused: drop the stream


async def _read(reader: asyncio.StreamReader, timeout: float | None) -> bytes:
    try:
        if timeout is None:
            return await reader.read(READ_SIZE)
        async with asyncio.timeout(timeout):
            return await reader.read(READ_SIZE)
    except TimeoutError:
        raise httpx.ReadTimeout(f"no data for {timeout} s") from None
    except (ConnectionError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from exc


class StreamingTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, verify: ssl.SSLContext | None = None) -> None:
        self._ssl = verify
        self._idle: dict[Key, list[_Connection]] = {}

    # -- connections -------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # built on the first https request only (it is slow)
            self._ssl = httpx.create_ssl_context(trust_env=True)
        return self._ssl

    async def _connect(self, key: Key, timeout: float | None) -> _Connection:
        scheme, host, port = key
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEAD
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(key, reader, writer)

    def _release(self, conn: _Connection) -> None:
        if conn.usable():
            self._idle.setdefault(conn.key, []).append(conn)

    def _take_idle(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    # -- one request -------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        key: Key = (scheme, url.host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _request_head(request)
        reused = self._take_idle(key)
        if reused is not None:
            try:
                return await self._exchange(reused, head, body, timeouts, request)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if not getattr(exc, "_kzn_before_response", False):
                    raise
                # the server closed the idle connection meanwhile: once more, fresh
        conn = await self._connect(key, timeouts.get("connect"))
        return await self._exchange(conn, head, body, timeouts, request)

    async def _exchange(
        self,
        conn: _Connection,
        head: bytes,
        body: bytes,
        timeouts: dict[str, Any],
        request: httpx.Request,
    ) -> httpx.Response:
        read_timeout = timeouts.get("read")
        try:
            conn.writer.write(head + body)
            async with asyncio.timeout(timeouts.get("write")):
                await conn.writer.drain()
        except TimeoutError:
            conn.close()
            raise httpx.WriteTimeout("could not send the request in time") from None
        except (ConnectionError, OSError) as exc:
            conn.close()
            err = httpx.WriteError(str(exc) or type(exc).__name__)
            err._kzn_before_response = True  # type: ignore[attr-defined]
            raise err from exc
        try:
            status, reason, headers, leftover = await _read_head(conn.reader, read_timeout)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
                exc._kzn_before_response = True  # type: ignore[attr-defined]
            raise
        fields = {}
        for name, value in headers:
            fields.setdefault(name.lower(), value)
        connection = fields.get(b"connection", b"").lower()
        chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        length: int | None = None
        if request.method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            length = 0
        elif not chunked and b"content-length" in fields:
            try:
                length = int(fields[b"content-length"])
            except ValueError:
                conn.close()
                raise httpx.RemoteProtocolError("malformed Content-Length") from None
        keep_alive = connection != b"close" and (chunked or length is not None)
        stream = _Body(
            self,
            conn,
            chunked=chunked,
            length=length,
            keep_alive=keep_alive,
            read_timeout=read_timeout,
            leftover=leftover,
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


def _request_head(request: httpx.Request) -> bytes:
    target = request.url.raw_path or b"/"
    lines = [b"%s %s HTTP/1.1" % (request.method.encode(), target)]
    lines.extend(b"%s: %s" % (name, value) for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_head(
    reader: asyncio.StreamReader, timeout: float | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    """Status line and headers (skipping 1xx interim responses); returns what of the
    body arrived with them, too."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise httpx.RemoteProtocolError("response headers too large")
            data = await _read(reader, timeout)
            if not data:
                if buf:
                    raise httpx.RemoteProtocolError("peer closed connection mid-headers")
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            buf += data
            end = buf.find(b"\r\n\r\n")
        head, buf = buf[:end], buf[end + 4 :]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise httpx.RemoteProtocolError(f"illegal status line: {lines[0][:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise httpx.RemoteProtocolError(f"illegal status line: {lines[0][:60]!r}") from None
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue, 103 Early Hints: the real answer follows
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpx.RemoteProtocolError(f"malformed header line {line[:60]!r}")
            headers.append((name.strip(), value.strip()))
        reason = parts[2] if len(parts) > 2 else b""
        return status, reason, headers, buf
