"""HTTP streaming with httpx: the one place that meets the network. httpx's exceptions
are mapped here, once, into TransportError / ProviderError with the text a user needs:
what failed, the HTTP status, the provider's own error message."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import os
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx

from kznllm_py import secrets
from kznllm_py.errors import (
    KznError,
    LimitError,
    ProviderError,
    StreamError,
    TransportError,
    size_text,
)
from kznllm_py.providers.base import HttpRequest, Provider
from kznllm_py.providers.jsonfast import dumps, loads_body
from kznllm_py.stream import decoding
from kznllm_py.stream.connection import BodyCut
from kznllm_py.stream.transport import REUSED_HEAD, HeadTimeout, StreamingTransport

ERROR_BODY_CAP = 64 * 1024
JSON_CAP = 16 * 1024 * 1024  # a JSON answer that is no stream (a models list)
RAW_ERROR_SHOWN = 300
# 2xx content types that are certainly not a stream of events (anything else is tried)
NOT_A_STREAM = frozenset({"text/html", "application/json", "application/xhtml+xml"})


# bytes of body (on the wire, and once decompressed) allowed per max_response_bytes of
# text (answer.wire_limit), and at least
WIRE_FACTOR = 64
WIRE_FLOOR = 16 * 1024 * 1024


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    stall: float = 60.0  # no byte for this long, mid-answer or before it: give up
    # the whole request, from sending it to the end of the answer (None: no limit)
    total: float | None = 600.0
    # a reused connection that does not start answering within this is tried once more
    # on a fresh one (a NAT or a load balancer dropped it silently)
    reused: float = REUSED_HEAD
    # from sending the request to its first token (text or reasoning): keep-alive
    # comments and empty events do not count (None: no limit)
    first_token: float | None = 120.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.stall, write=30.0, pool=self.connect)


# Loopback never goes through a proxy: the in-process demo model and local servers
# (llama.cpp, Ollama, vLLM on 127.0.0.1) are unreachable from a proxy elsewhere.
_NO_PROXY_MOUNTS: dict[str, httpx.AsyncBaseTransport | None] = {
    "all://127.0.0.1": None,
    "all://localhost": None,
    "all://[::1]": None,
}


class Client(httpx.AsyncClient):
    """httpx's client on StreamingTransport (aiohttp underneath), direct and through a
    proxy alike. httpx builds a transport per proxy from the environment (HTTPS_PROXY,
    HTTP_PROXY, ALL_PROXY, NO_PROXY) only when it is not handed one, so the transports
    are made here, through the same hooks httpx-aiohttp's client uses."""

    # httpx calls these with its client options as keywords; `*args` only makes each a
    # valid override of httpx's signature
    def _init_transport(
        self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **options: Any
    ) -> httpx.AsyncBaseTransport:
        if transport is not None:
            return transport
        return _streaming_transport(None, **options)

    def _init_proxy_transport(
        self, proxy: httpx.Proxy, *args: Any, **options: Any
    ) -> httpx.AsyncBaseTransport:
        return _streaming_transport(proxy, **options)


def _streaming_transport(
    proxy: httpx.Proxy | None,
    *,
    verify: ssl.SSLContext | str | bool = True,
    trust_env: bool = True,
    limits: httpx.Limits | None = None,
    **unsupported: object,  # cert, http1, http2
) -> StreamingTransport:
    """The transport for what of httpx's client options it takes (TLS verification, the
    environment, pool limits); client certificates are not supported."""
    return StreamingTransport(proxy=proxy, verify=verify, trust_env=trust_env, limits=limits)


def new_client() -> httpx.AsyncClient:
    # trust_env: HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE from the environment are honoured
    return Client(
        trust_env=True,
        follow_redirects=False,
        mounts=_NO_PROXY_MOUNTS,
        headers={"Accept-Encoding": decoding.accept_encoding()},
    )


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url  # never show userinfo


def _reason(exc: BaseException) -> str:
    """The most specific cause: httpx often says "All connection attempts failed" over
    an OSError that says "Connection refused". asyncio puts its own text in `strerror`
    ("Connect call failed ('127.0.0.1', 9)"), so a known errno is named by the OS."""
    seen: BaseException | None = exc
    for _ in range(32):  # a chain may, rarely, loop
        if seen is None:
            break
        # a wrapper of the OS's or the ssl module's error (aiohttp's connector errors)
        inner = getattr(seen, "certificate_error", None) or getattr(seen, "os_error", None)
        if isinstance(inner, BaseException) and inner is not seen:
            seen = inner
            continue
        # the ssl module's own errors carry their reason (wrappers such as aiohttp's
        # subclass them without it: their cause has it)
        if isinstance(seen, ssl.SSLCertVerificationError) and hasattr(seen, "verify_message"):
            why = seen.verify_message or seen.reason or str(seen)
            return (
                f"certificate verification failed ({why}); to trust a private CA, set "
                "SSL_CERT_FILE to its PEM file"
            )
        if isinstance(seen, ssl.SSLError):  # its errno 1 is no EPERM
            if hasattr(seen, "reason"):
                return f"TLS handshake failed ({str(seen.reason or seen).lower()})"
            seen = seen.__cause__ or seen.__context__
            continue
        if isinstance(seen, OSError):
            code = seen.errno
            if isinstance(seen, socket.gaierror):
                # getaddrinfo's EAI_* codes are not errno values: keep their own text
                why = (seen.strerror or str(seen)).lower()
                return f"the host name does not resolve ({why})"
            if code is not None and code in errno.errorcode:
                return os.strerror(code).lower()
            if seen.strerror:
                return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip()
    return text or type(exc).__name__


async def stream_bytes(
    client: httpx.AsyncClient,
    provider: Provider,
    request: HttpRequest,
    timeouts: Timeouts,
    *,
    max_bytes: int | None = None,
) -> AsyncGenerator[bytes, None]:
    """Send `request` and yield the response body as it arrives (content-decoded).
    `max_bytes` bounds the body, on the wire and once decompressed."""
    host = host_of(request.url)
    with _mapped(host, timeouts) as state:
        async with client.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=dumps(request.body),
            timeout=timeouts.to_httpx(),
            extensions={"reused_head": timeouts.reused},
        ) as response:
            state.answered = True
            if response.status_code >= 300:  # redirects are not followed: say where to
                raise await _status_error(provider, response)
            ctype = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if ctype in NOT_A_STREAM:
                raise await _not_a_stream(provider, response, host, ctype)
            async for piece in _decoded(response, max_bytes):
                yield piece


async def fetch_json(
    client: httpx.AsyncClient, provider: Provider, request: HttpRequest, timeouts: Timeouts
) -> Any:
    """Send `request` (a GET: a models list) and return its JSON body, at most
    JSON_CAP bytes; errors as for streams (the status and the provider's own words)."""
    host = host_of(request.url)
    with _mapped(host, timeouts) as state:
        async with client.stream(
            request.method, request.url, headers=request.headers, timeout=timeouts.to_httpx()
        ) as response:
            state.answered = True
            if response.status_code >= 300:
                raise await _status_error(provider, response)
            body = b"".join([piece async for piece in _decoded(response, JSON_CAP)])
    parsed = loads_body(body)
    if parsed is None:
        shown = _shown(body) or "an empty body"
        raise StreamError(f"{host} answered something other than JSON: {shown}")
    return parsed


class _State:
    answered = False  # the status line and headers came


@contextlib.contextmanager
def _mapped(host: str, timeouts: Timeouts) -> Iterator[_State]:
    """httpx's exceptions (and the body caps) as the errors a user reads: once, here."""
    state = _State()
    try:
        yield state
    except _TooLarge as exc:
        raise LimitError(
            f"{host} sent more than {size_text(exc.cap)} of response body (the limit grows "
            "with max_response_bytes); stopped"
        ) from None
    except decoding.DecodeError as exc:
        raise TransportError(f"{host} sent a response body that does not decode: {exc}") from None
    except httpx.ConnectTimeout:
        raise TransportError(
            f"could not connect to {host}: no answer within {timeouts.connect:g} s"
        ) from None
    except httpx.ProxyError as exc:
        raise TransportError(f"could not reach {host} through the proxy: {_reason(exc)}") from None
    except httpx.ConnectError as exc:
        raise TransportError(f"could not connect to {host}: {_reason(exc)}") from None
    except HeadTimeout:
        raise TransportError(
            f"{host} sent no complete response head within {timeouts.stall:g} s (stalled); "
            f"the limit is the stall timeout option"
        ) from None
    except httpx.ReadTimeout:
        raise TransportError(
            f"{host} sent nothing for {timeouts.stall:g} s (stalled); "
            f"the limit is the stall timeout option"
        ) from None
    except BodyCut as exc:
        raise TransportError(
            f"{host} sent more than the {exc.length} bytes its Content-Length announced: "
            "the body was cut there (what came before it is kept)"
        ) from None
    except httpx.RemoteProtocolError as exc:
        reason = _reason(exc)
        if not any(word in reason.lower() for word in ("closed", "disconnected")):
            raise TransportError(f"{host} sent a malformed HTTP response: {reason}") from None
        if not state.answered:
            raise TransportError(f"{host} closed the connection without answering") from None
        raise TransportError(f"{host} closed the connection mid-answer: {reason}") from None
    except (httpx.ReadError, httpx.WriteError) as exc:
        raise TransportError(f"lost the connection to {host}: {_reason(exc)}") from None
    except httpx.TimeoutException as exc:
        raise TransportError(f"timed out talking to {host}: {_reason(exc)}") from None
    except httpx.UnsupportedProtocol as exc:
        raise TransportError(f"cannot talk to {host}: {_reason(exc)}") from None
    except httpx.HTTPError as exc:
        raise TransportError(f"HTTP failure talking to {host}: {_reason(exc)}") from None


class _TooLarge(Exception):
    def __init__(self, cap: int) -> None:
        self.cap = cap


async def _decoded(response: httpx.Response, cap: int | None) -> AsyncGenerator[bytes, None]:
    """The body, decompressed with a bound: at most `cap` bytes on the wire and as many
    once decoded, in pieces of a bounded size (a compression bomb stops at the cap)."""
    limit = cap if cap is not None else 1 << 62
    decoder = decoding.Decoder(response.headers.get("content-encoding", ""), limit)
    wire = 0
    try:
        async for raw in response.aiter_raw():
            wire += len(raw)
            if wire > limit:
                raise _TooLarge(limit)
            for i, piece in enumerate(decoder.decode(raw)):
                if i:  # one read that inflates to many pieces: let the loop breathe
                    await asyncio.sleep(0)
                yield piece
        for piece in decoder.flush():
            yield piece
    except decoding.TooLarge:
        raise _TooLarge(limit) from None


async def _read_capped(response: httpx.Response) -> bytes:
    body = b""
    try:
        async for chunk in _decoded(response, None):
            body += chunk
            if len(body) >= ERROR_BODY_CAP:
                break
    except (httpx.HTTPError, decoding.DecodeError):
        pass  # what we have is what we show
    return body[:ERROR_BODY_CAP]


def _shown(body: bytes, *, html: bool = False) -> str:
    """An error body as the user reads it: an HTML page (a proxy's, a load balancer's)
    by its <title>, else by its text without tags, whitespace squashed; anything else
    as it came. At most RAW_ERROR_SHOWN characters, an ellipsis where it was cut."""
    if not html:
        head = body[:1024].lstrip()[:15].lower()
        html = head.startswith((b"<!doctype html", b"<html"))
    # a body read up to its cap may end in the first part of a key
    redact = secrets.redact_cut if len(body) >= ERROR_BODY_CAP else secrets.redact
    if not html:
        # redacted before the cut: a key crossing the cut would leak in part
        text = redact(body.decode("utf-8", errors="replace"))
        return secrets.clip(text, RAW_ERROR_SHOWN).strip()
    page = _PageText()
    with contextlib.suppress(Exception):  # a broken page shows what was read of it
        page.feed(body.decode("utf-8", errors="replace"))
        page.close()
    # the page's pieces are joined with spaces: a key split by a tag or a line break is
    # found across them (secrets.redact allows gaps)
    text = redact(page.title() or page.text())
    if len(text) > RAW_ERROR_SHOWN:
        text = text[: RAW_ERROR_SHOWN - 1].rstrip() + "…"
    return text


class _PageText(HTMLParser):
    """The title and the visible text of an HTML page (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._title: list[str] = []
        self._text: list[str] = []
        self._hidden = 0  # inside <script> / <style>
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden = max(0, self._hidden - 1)
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            (self._title if self._in_title else self._text).append(data)

    def title(self) -> str:
        return " ".join(" ".join(self._title).split())

    def text(self) -> str:
        return " ".join(" ".join(self._text).split())


def _is_html(response: httpx.Response) -> bool:
    ctype = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return ctype in ("text/html", "application/xhtml+xml")


async def _status_error(provider: Provider, response: httpx.Response) -> ProviderError:
    body = await _read_capped(response)
    location = response.headers.get("location")
    if response.status_code < 400 and location:
        return ProviderError(
            f"redirected to {location} (use the final address as base_url)",
            status=response.status_code,
            provider=provider.name,
        )
    message = provider.error_message(loads_body(body)) if body else None
    if not message:
        message = _shown(body, html=_is_html(response)) or (
            response.reason_phrase or "empty response body"
        )
    return ProviderError(
        message,
        status=response.status_code,
        provider=provider.name,
        retry_after=retry_after(response.headers),
    )


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


async def _not_a_stream(
    provider: Provider, response: httpx.Response, host: str, ctype: str
) -> KznError:
    """A 2xx that is no event stream: a proxy's or captive portal's page, or a JSON error
    sent with 200 by some gateways."""
    body = await _read_capped(response)
    message = provider.error_message(loads_body(body)) if ctype == "application/json" else None
    if message:
        return ProviderError(message, provider=provider.name)
    shown = _shown(body, html=ctype != "application/json") or "an empty body"
    return StreamError(f"{host} answered {ctype} instead of an event stream: {shown}")
