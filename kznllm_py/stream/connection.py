"""One connection's reading under aiohttp, from the socket to the body's reader (the
hot path of a burst); the httpx transport around it is transport.py's.

- `_Protocol`, aiohttp's protocol (its C parser still parses), follows the framing
  only: a body that goes on past its Content-Length is delivered whole, then the rest
  fails the connection (`cut`: transport.py's body raises `BodyCut`); and it makes a
  response's body reader ours as the head is read (`_fast_reader`).
- `_BodyReader`, aiohttp's StreamReader for a body read a whole buffer at a time: a
  fast stream's bookkeeping per HTTP chunk done once per network read (`settle`), and
  back pressure through `_Protocol.hold`. A feature check (`_READER_OK`) makes a
  reader ours only where aiohttp's has what this relies on; elsewhere aiohttp's own
  reader reads, slower and as correct.

The protocol feeds and settles the reader, the reader holds the protocol's reading:
one mechanism, one module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from aiohttp.streams import StreamReader


class BodyCut(httpx.RemoteProtocolError):
    """More bytes followed a body framed by its Content-Length: the body ends there."""

    def __init__(self, length: int) -> None:
        super().__init__(f"more bytes followed the {length} of the Content-Length")
        self.length = length


HEAD_SEEN_MAX = 64 * 1024  # a head longer than this is aiohttp's to refuse: not followed


def body_length(head: bytes) -> int | None:
    """The body length a response head frames by Content-Length (0 for an interim or
    bodiless status); None when it has none or is chunked (its end is not ours to find)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    status = int(parts[1])
    if status < 200 or status in (204, 304):
        return 0
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and int(value) != length):
                return None  # aiohttp refuses it (or decides): not ours
            length = int(value)
    return length


class _Protocol(ResponseHandler):
    """aiohttp's protocol, with a read that holds the end of a Content-Length body and
    more bytes fed to its parser in two: the response is delivered whole, then the
    rest fails the connection as before. Only the framing is followed here (the head's
    end, its Content-Length, the body's size), the parsing stays aiohttp's."""

    _head = b""  # the head read so far
    _left: int | None = None  # body bytes the Content-Length still frames
    _follow = True  # False once a head is chunked, unframed or too long
    cut = False  # bytes after a framed body failed the parser: that body was cut there
    _bodies = 0  # framed bodies read whole

    def set_response_params(self, **params: Any) -> None:
        """aiohttp calls this before each request it sends on the connection: what
        comes next is that request's response, framed anew (a chunked answer before it,
        whose chunks are not followed here, must not leave this one's cut unsaid)."""
        super().set_response_params(**params)
        self._head, self._left, self._follow, self._bodies = b"", None, True, 0

    def data_received(self, data: bytes) -> None:
        end = self._head_end(data)
        if end:  # a response's head, then its body: the body's reader is ours first
            self._received(data[:end])
            if self.exception() is not None:
                return
            payload = getattr(self, "_payload", None)  # the reader the head made
            if payload is not None:
                _fast_reader(payload)
            data = data[end:]
        failed = self.exception() is not None
        self._received(data)
        if not failed and self.exception() is not None:
            self._fail_body()

    def _fail_body(self) -> None:
        """aiohttp's parser failed in a body it had already handed out (its head came
        in an earlier read, or was read first here): the body's reader is told, as the
        response would have been (aiohttp tells only the connection: the reader waited
        for bytes that never come, until the read timeout)."""
        payload = getattr(self, "_payload", None)
        exc = self.exception()
        if payload is None or exc is None or payload.is_eof() or payload.exception() is not None:
            return
        failed = aiohttp.ClientPayloadError("the response body could not be parsed")
        failed.__cause__ = exc  # the parser's own words (_mapped)
        payload.set_exception(failed, exc)

    def _head_end(self, data: bytes) -> int:
        """Where the head of a new response ends in `data` when body bytes follow it
        there (a burst's first read: the head and a thousand HTTP chunks), else 0.
        Between two responses (the last one's body read whole, or none yet) the first
        blank line that comes ends the next head."""
        payload = getattr(self, "_payload", None)
        if payload is not None and not payload.is_eof():
            return 0  # in a body
        end = data.find(b"\r\n\r\n") + 4
        return end if 4 <= end < len(data) else 0

    def _received(self, data: bytes) -> None:
        if not self._follow or not data or self.exception() is not None:
            self._feed(data)  # b"": aiohttp resuming its decompression
            return
        after_body = self._left is None and not self._head and self._bodies > 0
        for i, piece in enumerate(self._split(data)):
            self._feed(piece)
            if self.exception() is not None:
                self.cut = i > 0 or after_body  # the failing bytes came after a whole body
                return

    def _feed(self, data: bytes) -> None:
        """aiohttp's own data_received (its parser), then, when the body's reader is
        ours, that reader's bookkeeping for the whole read at once (_BodyReader.settle)."""
        payload = getattr(self, "_payload", None)
        super().data_received(data)
        if type(payload) is _BodyReader:
            payload.settle()

    _held = False  # reading stopped by our body reader (`hold`)

    def hold(self) -> None:
        """Stop reading from the connection until the body's reader takes its buffer
        (_BodyReader.settle, past its high water mark), as aiohttp's pause_reading does
        but for its parser: aiohttp pauses from inside its parser, which then stops at
        once; paused from outside it, the parser would stop after the first chunk of
        the next read and keep the rest of it until a read that never comes. The read
        (stall) timer stops meanwhile, as aiohttp's: the wait is ours, not the server's."""
        if not self._held and self.transport is not None:
            self._held = True
            self.transport.pause_reading()
            self._drop_timeout()

    def resume_reading(self, resume_parser: bool = True) -> None:
        """aiohttp's body reader calls this after every HTTP chunk it hands out while
        its buffer is low, paused or not; unpaused, the call only feeds its parser an
        empty read (nothing is held: a held read or decompression always comes with a
        pause). A fast stream sends one chunk per event: skipping that call saves a
        parser round per event, a quarter of the host's time in a 5,000-event burst.
        A connection that `hold` stopped reads again."""
        if self._held:
            self._held = False
            if self.transport is not None and not (self._reading_paused or self._buffer_paused):
                self.transport.resume_reading()
                self._reschedule_timeout()
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def _split(self, data: bytes) -> list[bytes]:
        pieces: list[bytes] = []
        start = pos = 0
        while self._follow and pos < len(data):
            if self._left is None:  # in a head
                seen = len(self._head)
                self._head += data[pos : pos + HEAD_SEEN_MAX]
                end = self._head.find(b"\r\n\r\n", max(0, seen - 3))
                if end < 0:
                    if len(self._head) >= HEAD_SEEN_MAX:
                        self._follow = False
                    break
                pos += end + 4 - seen
                self._left = body_length(bytes(self._head[:end]))
                self._head = b""
                if self._left is None:
                    self._follow = False
            else:
                take = min(self._left, len(data) - pos)
                pos += take
                self._left -= take
                if self._left == 0:
                    self._left = None  # the next head, if any, starts here
                    self._bodies += 1
                    if pos < len(data):
                        pieces.append(data[start:pos])
                        start = pos
        pieces.append(data[start:])
        return pieces


# a C-level callable of no arguments that returns None
_NOTHING: Callable[[], None] = itertools.repeat(None).__next__


class _BodyReader(StreamReader):
    """aiohttp's StreamReader for a body that is only ever read whole-buffer at a time
    (_Body: readany), as fast streams need it: a server sends an HTTP chunk per event,
    and aiohttp's reader keeps the end of every chunk (for readchunk, never used here)
    and hands the buffer out chunk by chunk (~0.8 us per chunk, the transport's whole
    cost in a 5,000-event burst). Here a chunk's end is not kept, feed_data only keeps
    the bytes (its bookkeeping is done once per network read: `settle`) and readany()
    takes the buffer in one join; aiohttp's parser and framing are untouched. Only the
    class of a reader aiohttp made is changed (`_fast_reader`), when its slots are the
    ones this relies on."""

    __slots__ = ()

    # aiohttp's parser calls these two around every HTTP chunk: here they do nothing,
    # and do it in C (a Python method's call, twice per chunk, was a tenth of a burst's
    # reads): a C function of no arguments that returns None, taken from the class
    # as it is (it binds to nothing)
    begin_http_chunk_receiving = end_http_chunk_receiving = _NOTHING

    def feed_data(self, data: bytes, size: int = 0) -> bool:
        """aiohttp's parser calls this for every HTTP chunk (a fast stream's every
        event): here it only keeps the bytes; what aiohttp's does besides with each
        (the sizes, waking the reader, back pressure: a fifth of a 5,000-event burst's
        reading) is done once per network read, by `settle`. Returns False: no more
        data is held back (aiohttp's parser then calls it no more for this chunk)."""
        if data:
            self._buffer.append(data)
        return False

    def settle(self) -> None:
        """What aiohttp's feed_data does per chunk, once for a network read's chunks
        (_Protocol._feed): the sizes counted, a waiting reader woken, and past the
        high water mark the connection stops reading until the buffer is taken (a held
        answer, history's entry first: at most the mark and one read are buffered)."""
        size = sum(map(len, self._buffer)) - self._buffer_offset
        added = size - self._size
        if added <= 0:
            return
        self._size = size
        self.total_bytes += added
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        # (a body read whole holds nothing back: its connection may be in the pool
        # already, where a stopped transport would hang the next request)
        if size > self._high_water and not self._eof:
            protocol = self._protocol
            if isinstance(protocol, _Protocol):
                protocol.hold()

    async def readany(self) -> bytes:
        """aiohttp's readany, but what arrived before a failure (the server closed the
        connection mid-answer) is handed out first: aiohttp raises the failure while
        that text still sits in its buffer, and the answer lost it."""
        if self._buffer:
            return self._read_nowait(-1)
        return await super().readany()

    def _read_nowait(self, n: int) -> bytes:
        if n != -1:
            return super()._read_nowait(n)
        self._timer.assert_timeout()
        buffer = self._buffer
        if self._buffer_offset:
            buffer[0] = buffer[0][self._buffer_offset :]
            self._buffer_offset = 0
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        self._cursor += len(data)
        if self._http_chunk_splits:
            self._http_chunk_splits.clear()
        self._protocol.resume_reading()  # below the low water mark now: as aiohttp does
        return data


# what _BodyReader relies on in aiohttp's StreamReader
_READER_SLOTS = {
    "_buffer",
    "_buffer_offset",
    "_size",
    "_cursor",
    "_http_chunk_splits",
    "_waiter",
    "_high_water",
    "_eof",
    "_protocol",
    "total_bytes",
}
_READER_OK = (
    set(getattr(StreamReader, "__slots__", ())) >= _READER_SLOTS
    and all(
        hasattr(StreamReader, name)
        for name in (
            "_read_nowait",
            "begin_http_chunk_receiving",
            "end_http_chunk_receiving",
            "feed_data",
        )
    )
    # what _Protocol.hold does as aiohttp's pause_reading does
    and all(hasattr(ResponseHandler, name) for name in ("_drop_timeout", "_reschedule_timeout"))
)


def _fast_reader(content: Any) -> None:
    """A body's reader becomes a _BodyReader, if it is aiohttp's own StreamReader as
    this aiohttp version has it, on one of our connections (else it stays as it is:
    slower, as correct)."""
    if _READER_OK and type(content) is StreamReader and isinstance(content._protocol, _Protocol):
        content.__class__ = _BodyReader
