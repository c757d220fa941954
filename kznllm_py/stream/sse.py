"""Incremental Server-Sent Events decoder, after the WHATWG HTML "event stream" rules.

`SSEDecoder.decode(chunk)` takes bytes exactly as they come off the network (an event, a
line, even a UTF-8 character may be split anywhere) and returns the events completed by
that chunk; `flush()` ends the stream. Lines end at CRLF, LF or CR (a CR at the end of a
chunk waits to see whether an LF follows). A leading BOM is dropped, `:` lines are
comments, `data:` lines accumulate with "\\n" between them.

One deliberate leniency: at end of stream, an event whose blank line never came is
still delivered (the spec drops it), so a server that closes right after its last
`data:` line loses no text.

Bounded: a line, or an event's data, longer than `max_line` characters (MAX_LINE
unless told) ends the stream with a StreamError (a server that never sends a line end
cannot grow the host).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from itertools import repeat
from typing import cast

from kznllm_py.errors import StreamError, size_text

# characters of one line, or of one event's data, past which the stream is refused
MAX_LINE = 4 * 1024 * 1024
DATA = "data: "  # the prefix of a run's lines (Run)
_DATA = repeat(DATA)  # for map(str.startswith, lines, _DATA)


@dataclass(slots=True)
class Event:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class Run(list[str]):
    """A run of plain events as `SSEDecoder.decode_runs` gives it: each event's one
    line, whole, `data: ` kept (its data is `line[6:]`, `datas()`). Not cut off line by
    line: a reader that knows the shape of its events checks and cuts each line once,
    `data: ` and all (providers/jsonfast.py's Template)."""

    __slots__ = ()

    def datas(self) -> list[str]:
        return [line[6:] for line in self]


def complete_lines(
    pending: list[str], text: str, held: int = 0, limit: int = MAX_LINE
) -> tuple[list[str], int]:
    """The lines `text` completes (split on LF only), the first joined with the
    unterminated pieces before it; `pending` keeps the new unterminated rest (updated in
    place, as a list of pieces so that a huge line is joined once, not per read).
    `held` is the length of what `pending` holds; the new one is returned. Raises
    StreamError when it passes `limit`."""
    if "\n" not in text:
        if text:
            pending.append(text)
            held += len(text)
            if held > limit:
                raise too_long("a line", limit)
        return [], held
    lines = text.split("\n")
    rest = lines.pop()
    if pending:
        pending.append(lines[0])
        lines[0] = "".join(pending)
        pending.clear()
    if rest:
        pending.append(rest)
    return lines, len(rest)


def too_long(what: str, limit: int) -> StreamError:
    return StreamError(f"{what} of the stream passed {size_text(limit)} without an end; stopped")


class TextLines:
    """What the SSE and NDJSON decoders share: bytes to text (a UTF-8 character may be
    split anywhere; invalid bytes become U+FFFD), a leading BOM dropped, the
    unterminated rest of a line held between chunks (bounded by `max_line`), and at the
    end of the stream, the last text and line. A decoder implements `_feed(text)` (which
    calls `_text()` first) and `flush()`."""

    __slots__ = ("_held", "_max_line", "_pending", "_start", "_utf8")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start = True  # BOM check still to do
        self._max_line = max_line
        self._pending: list[str] = []  # pieces of the current, unterminated line
        self._held = 0  # characters in _pending (at most max_line)

    def decode(self, chunk: bytes) -> list[Event]:
        return self._feed(self._utf8.decode(chunk))

    def _feed(self, text: str) -> list[Event]:
        raise NotImplementedError

    def _text(self, text: str) -> str:
        """`text` without the stream's leading BOM."""
        if self._start and text:
            self._start = False
            if text[0] == "\ufeff":
                return text[1:]
        return text

    def _end(self) -> tuple[list[Event], str | None]:
        """End of stream: the events of the decoder's last bytes, and the last line if
        it never got its line end (None if it did)."""
        text = self._utf8.decode(b"", final=True)
        events = self._feed(text) if text else []
        if not self._pending:
            return events, None
        line = "".join(self._pending)
        self._pending = []
        self._held = 0
        return events, line


class SSEDecoder(TextLines):
    __slots__ = (
        "_data",
        "_data_size",
        "_event",
        "_last_id",
        "_retry",
        "_saw_field",
        "_trailing_cr",
    )

    def __init__(self, max_line: int = MAX_LINE) -> None:
        super().__init__(max_line)
        self._data_size = 0  # characters in _data
        self._trailing_cr = False  # the previous chunk ended in CR
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._saw_field = False

    def flush(self) -> list[Event]:
        """End of stream: finish the last line and deliver a pending event, if any."""
        events, line = self._end()
        self._trailing_cr = False
        if line is not None:
            self._line(line, events)
        if self._saw_field:
            self._dispatch(events)
        return events

    def decode_runs(self, chunk: bytes) -> list[Event | Run]:
        """decode(), except that a run of plain events (one `data: ` line each, no event
        name, no id or retry in the stream so far) comes as one Run of their lines: no
        Event each. The events of a fast stream, as its parser reads them."""
        return self._lines(self._utf8.decode(chunk), True)

    # -- internals -------------------------------------------------------------------

    def _feed(self, text: str) -> list[Event]:
        return cast(list[Event], self._lines(text, False))

    def _lines(self, text: str, runs: bool) -> list[Event | Run]:
        text = self._text(text)
        if not text:
            return []
        if self._trailing_cr:
            self._trailing_cr = False
            if text[:1] == "\n":
                text = text[1:]  # the LF of a CRLF split across chunks
        if "\r" in text:
            if text[-1] == "\r":
                self._trailing_cr = True
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines, self._held = complete_lines(self._pending, text, self._held, self._max_line)
        if not lines:
            return []
        events: list[Event | Run] = []
        if not self._saw_field and not self._event and not self._data:
            # the hot path of a fast stream: a run of one-line `data: ` events, each
            # followed by its blank line, checked and cut in C-level passes over the lines
            # (the last line, if its blank line is still to come, takes the loop below)
            pairs = len(lines) & ~1
            heads = lines[0:pairs:2]
            if "" in heads:
                # a run of blank lines ends one event at most (after a blank line another
                # is nothing): one will do, and the run keeps the hot path
                after = ["x", *lines[:-1]]  # what each line comes after
                lines = [x for x, before in zip(lines, after, strict=True) if x or before]
                pairs = len(lines) & ~1
                heads = lines[0:pairs:2]
            if pairs and not any(lines[1:pairs:2]) and all(map(str.startswith, heads, _DATA)):
                last_id, retry = self._last_id, self._retry
                if runs and last_id is None and retry is None:
                    events = [Run(heads)]
                else:
                    events = [Event(head[6:], "message", last_id, retry) for head in heads]
                if pairs == len(lines):
                    return events
                lines = lines[pairs:]
        data = self._data
        saw = self._saw_field
        size = self._data_size
        for line in lines:
            if line[:6] == "data: ":  # the hot path: one `data:` line of an event
                data.append(line[6:])
                size += len(line)
                saw = True
            elif line:
                self._saw_field, self._data_size = saw, size
                self._line(line, events)
                data, saw, size = self._data, self._saw_field, self._data_size
            elif saw:
                if data and not self._event:  # the hot path: a plain message event ends
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    events.append(Event(text, "message", self._last_id, self._retry))
                    data = self._data = []
                else:
                    self._dispatch(events)
                    data = self._data
                saw = False
                size = 0
        self._saw_field = saw
        self._data_size = size
        if size > self._max_line:
            raise too_long("an event", self._max_line)
        return events

    def _line(self, line: str, events: list[Event] | list[Event | Run]) -> None:
        if not line:
            if self._saw_field:
                self._dispatch(events)
            return
        if line[0] == ":":
            return  # comment / keep-alive
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            self._saw_field = True
        elif field == "event":
            self._event = value
            self._saw_field = True
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():  # ASCII digits only
            self._retry = int(value)
        # other fields are ignored, as the spec says

    def _dispatch(self, events: list[Event] | list[Event | Run]) -> None:
        data = self._data
        event = self._event
        self._data = []
        self._data_size = 0
        self._event = ""
        self._saw_field = False
        if not data:
            return  # an event with no data is not dispatched
        events.append(Event("\n".join(data), event or "message", self._last_id, self._retry))
