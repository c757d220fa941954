"""The httpx transport the client uses: aiohttp underneath (its C parser does the
framing, it does TLS, pooling and keep-alive), after httpx-aiohttp's transport (the
approach the OpenAI and Anthropic SDKs ship as their fast transport), with what
long-lived, streamed answers need added:

- idle connections expire after IDLE_MAX seconds, or earlier when the server said so
  (`Keep-Alive: timeout=N`); idle time is counted on CLOCK_BOOTTIME where there is one,
  so a laptop's sleep counts too (aiohttp's own clock stops during a suspend);
- a reused connection that gives no response head within `reused_head` seconds (a
  NAT or a load balancer dropped it silently), or that the server closed or reset as
  the request went out, is tried once more on a fresh connection; nothing of the
  answer was read then, so nothing can be repeated;
- the response head as a whole must come within the read (stall) timeout: trickled
  headers and endless `103 Early Hints` end there, not never;
- a body that goes on past its Content-Length keeps what the Content-Length framed,
  then fails with BodyCut (aiohttp's parser fails a read with the end of a body and
  more bytes as a whole: the answer that had arrived was lost as "bad status line");
  each connection reads through connection.py's protocol and fast body reader.

aiohttp's exceptions are mapped to httpx's here, once (as httpx's own transports map
httpcore's); what a user reads is decided in client.py from httpx's exceptions.

Why not on top of the `httpx-aiohttp` package (0.2.0, its AiohttpTransport; tried on
2026-12-06 against tests/servers.py): its constructor builds a TLS context on the event
loop (150-300 ms here, even for plain http), and its exception map turns a server that
closed before answering into httpx.ConnectTimeout ("no answer within 10 s"), a body cut
mid-answer into ReadError, lets a malformed chunk size through as aiohttp's own
ClientResponseError, and a URL with userinfo fails with aiohttp's ValueError; it passes
no trace context (the head deadline and the retry of a silent reused connection hang
on it) and reads in 16 KB pieces. Undoing each of those on top of it would be more
code than the transport below, not less.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler

from kznllm_py.stream.connection import BodyCut, _fast_reader, _Protocol

IDLE_MAX = 15.0  # seconds an idle pooled connection may wait for its next request
REUSED_HEAD = 5.0  # a reused connection must start answering within this (then: retry)
READ_BUFSIZE = 256 * 1024

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def now() -> float:
    """Seconds on a clock that keeps running while the machine sleeps."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.time()


class HeadTimeout(httpx.ReadTimeout):
    """The response head (status line and headers) did not come in time."""


def keep_alive_timeout(value: str | None) -> float | None:
    """`timeout=N` of a `Keep-Alive` header, in seconds (None when absent or invalid)."""
    for part in (value or "").split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            with contextlib.suppress(ValueError):
                seconds = float(number.strip())
                if seconds >= 0:
                    return seconds
    return None


Origin = tuple[str, int, bool]  # host, port, TLS


def _origin(url: httpx.URL) -> Origin:
    return (url.host, url.port or (443 if url.scheme == "https" else 80), url.scheme == "https")


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, with idle connections timed on our own clock, and for as
    long as their server keeps them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keepalive_timeout=IDLE_MAX, **kwargs)
        protocol: Callable[..., ResponseHandler] = _Protocol  # each connection's, ours
        self._factory = functools.partial(protocol, loop=self._loop)
        self._released_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._idle_limit: dict[Origin, float] = {}  # what the server said, less a margin

    def limit_idle(self, url: httpx.URL, seconds: float) -> None:
        # a margin of a second: a server that closes at N s must not race our request
        self._idle_limit[_origin(url)] = max(0.0, min(IDLE_MAX, seconds - 1.0))

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        self._released_at[protocol] = now()

    async def _get(self, key: Any, traces: list[Any]) -> Any:
        conns = self._conns.get(key)
        if conns:
            t = now()
            limit = self._idle_limit.get((key.host, key.port, key.is_ssl), IDLE_MAX)
            for entry in list(conns):
                proto = entry[0]
                # should_close: flagged while idle (aiohttp 3.14's stray read timer,
                # aio-libs/aiohttp#12953, poisoned pooled connections so)
                if proto.should_close or t - self._released_at.get(proto, t) >= limit:
                    conns.remove(entry)
                    proto.close()
        return await super()._get(key, traces)

    def drop_idle(self, url: httpx.URL) -> None:
        """Close the idle connections to `url`'s origin: after one of them turned out
        dead, the others of its age are suspect too."""
        origin = _origin(url)
        for key in list(self._conns):
            if (key.host, key.port, key.is_ssl) == origin:
                for proto, _ in self._conns.pop(key):
                    proto.close()


class _Attempt:
    """One try of a request, as aiohttp's tracing reports it."""

    __slots__ = ("deadline", "head_timeout", "reused", "reused_head")

    def __init__(self, deadline: asyncio.Timeout, head_timeout: float | None, reused_head: float):
        self.deadline = deadline
        self.head_timeout = head_timeout
        self.reused_head = reused_head
        self.reused = False

    def after(self, seconds: float | None) -> None:
        if seconds is not None:
            self.deadline.reschedule(asyncio.get_running_loop().time() + seconds)

    def after_reuse(self) -> None:
        """A reused connection has `reused_head` (at most the head timeout) to answer."""
        self.after(min(self.reused_head, self.head_timeout or self.reused_head))


async def _on_reuse(session: Any, ctx: Any, params: Any) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, _Attempt):
        attempt.reused = True
        attempt.after_reuse()


async def _on_new_connection(session: Any, ctx: Any, params: Any) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, _Attempt):
        attempt.after(attempt.head_timeout)


async def _on_chunk_sent(session: Any, ctx: Any, params: Any) -> None:
    attempt = ctx.trace_request_ctx
    if isinstance(attempt, _Attempt) and attempt.reused:  # the body went out: count from here
        attempt.after_reuse()


def _trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_connection_reuseconn.append(_on_reuse)
    config.on_connection_create_end.append(_on_new_connection)
    config.on_request_chunk_sent.append(_on_chunk_sent)
    return config


class _Retry(Exception):
    """A reused connection failed before any byte of the answer."""


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._done = False
        _fast_reader(response.content)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped(answered=True):
            async for chunk in content.iter_any():
                yield chunk
        # the payload's protocol (a private slot: where aiohttp changes it, the cut
        # body still arrives whole, only without saying it was cut)
        protocol = getattr(content, "_protocol", None)
        length = self._response.content_length
        if isinstance(protocol, _Protocol) and protocol.cut and length is not None:
            raise BodyCut(length)
        self._done = True

    async def aclose(self) -> None:
        if self._done:
            self._response.release()  # back to the pool
        else:
            self._response.close()  # a body read halfway cannot be reused


class StreamingTransport(httpx.AsyncBaseTransport):
    """See the module docstring. `reused_head`: seconds a reused connection has to
    start answering before the request is tried once more on a fresh one."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,  # str: a CA bundle's path (httpx's)
        trust_env: bool = True,
        limits: httpx.Limits | None = None,
        proxy: httpx.Proxy | None = None,
        reused_head: float = REUSED_HEAD,
        **kwargs: Any,
    ) -> None:
        # the TLS context is built on the first https request, off the loop (~50 ms)
        self._verify = verify
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self.limits = limits or httpx.Limits(max_connections=100)
        self.proxy = proxy
        self.reused_head = reused_head
        self.client: aiohttp.ClientSession | None = None
        self._connector: _Connector | None = None

    async def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # SSL_CERT_FILE / SSL_CERT_DIR from the environment, else certifi
            self._ssl = await asyncio.to_thread(
                httpx.create_ssl_context, verify=self._verify, trust_env=self._trust_env
            )
        return self._ssl

    def get_client(self) -> aiohttp.ClientSession:
        limit = self.limits.max_connections
        self._connector = _Connector(limit=limit if limit is not None else 100)
        return aiohttp.ClientSession(
            connector=self._connector,
            trace_configs=[_trace_config()],
            read_bufsize=READ_BUFSIZE,
            auto_decompress=False,
            trust_env=False,  # httpx decides about proxies (mounts from the environment)
        )

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        reused_head = request.extensions.get("reused_head", self.reused_head)
        timeout = {**timeout, "reused_head": reused_head}
        data = await request.aread()
        try:
            return await self._attempt(request, data, timeout, retry=True)
        except _Retry:
            if self._connector is not None:
                self._connector.drop_idle(request.url)
            return await self._attempt(request, data, timeout, retry=False)

    async def _attempt(
        self, request: httpx.Request, data: bytes, timeout: dict[str, Any], *, retry: bool
    ) -> httpx.Response:
        assert isinstance(self.client, aiohttp.ClientSession)
        head_timeout = timeout.get("read")
        proxy = self.proxy
        if proxy is not None and proxy.url.scheme not in ("http", "https"):
            raise httpx.ProxyError(
                f"{proxy.url.scheme} proxies are not supported (an http:// one is)"
            )
        tls = await self._ssl_context() if request.url.scheme == "https" else True
        attempt: _Attempt | None = None
        try:
            async with asyncio.timeout(None) as deadline:
                attempt = _Attempt(deadline, head_timeout, timeout["reused_head"])
                with _mapped(answered=False):
                    response = await self.client.request(
                        method=request.method,
                        # httpx made the URL's userinfo an Authorization header already;
                        # aiohttp refuses both at once
                        url=str(request.url.copy_with(username=None, password=None)),
                        headers=request.headers,
                        data=data or None,
                        allow_redirects=False,
                        compress=False,
                        timeout=aiohttp.ClientTimeout(
                            sock_connect=timeout.get("connect"),
                            sock_read=timeout.get("read"),
                            connect=timeout.get("pool"),
                        ),
                        proxy=str(proxy.url) if proxy else None,
                        proxy_auth=aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                        proxy_headers=proxy.headers if proxy else None,
                        trace_request_ctx=attempt,
                        ssl=tls,
                    )
        except TimeoutError:  # ours: the head did not come in time
            if attempt is not None and attempt.reused and retry:
                raise _Retry from None
            raise HeadTimeout(f"no response head within {head_timeout} s") from None
        except (
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            httpx.ReadTimeout,  # before `reused_head`: a timer left from its last use
        ) as exc:
            if attempt is not None and attempt.reused and retry:  # closed or reset meanwhile
                raise _Retry from exc
            raise
        seconds = keep_alive_timeout(response.headers.get("keep-alive"))
        if seconds is not None and self._connector is not None:
            self._connector.limit_idle(request.url, seconds)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions=extensions,
        )


@contextlib.contextmanager
def _mapped(*, answered: bool) -> Iterator[None]:
    """aiohttp's exceptions as httpx's (the cause kept, for client.py's messages)."""
    try:
        yield
    except (httpx.HTTPError, TimeoutError) as exc:
        if isinstance(exc, aiohttp.ServerTimeoutError):
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise httpx.ConnectTimeout(str(exc)) from exc
            raise httpx.ReadTimeout(str(exc) or "read timeout") from exc
        raise
    except aiohttp.ClientProxyConnectionError as exc:
        raise httpx.ProxyError(f"could not connect to the proxy: {exc}") from exc
    except aiohttp.ClientHttpProxyError as exc:
        raise httpx.ProxyError(f"the proxy answered {exc.status} {exc.message}") from exc
    except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS (the cause says which)
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ServerDisconnectedError as exc:
        if answered:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            ) from exc
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
    except aiohttp.ClientPayloadError as exc:
        words = _parser_words(exc.__cause__ or exc)
        if "not enough data" in words.lower() or "not completed" in words.lower():
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            ) from exc
        raise httpx.RemoteProtocolError(words) from exc
    except aiohttp.ClientResponseError as exc:  # a head the parser refused
        raise httpx.RemoteProtocolError(_parser_words(exc)) from exc
    except (aiohttp.ClientOSError, ConnectionError) as exc:
        if answered:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(f"invalid URL {exc}") from exc
    except ssl.SSLError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__) from exc


def _parser_words(exc: BaseException) -> str:
    """The parser's own words about a malformed response ("bad status line", "invalid
    character in chunk size"), without aiohttp's wrapping and its excerpt drawing."""
    cause = exc.__cause__ or exc
    text = getattr(exc, "message", None) or getattr(cause, "message", None) or str(cause)
    text = str(text).removeprefix("400, message:").strip().strip("'\"")
    first = text.split(":\n", 1)[0].split("\n", 1)[0].strip().rstrip(":")
    return (first[:1].lower() + first[1:]) or type(exc).__name__
