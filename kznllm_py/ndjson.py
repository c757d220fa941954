"""Incremental newline-delimited JSON (NDJSON / JSON Lines) decoder: bytes in, one
`Event` per line out, so a provider parser written for SSE events (`feed(Event)`) reads
an NDJSON stream (Ollama's /api/chat) unchanged.

`NDJSONDecoder.decode(chunk)` takes bytes as they come off the network (a line, even a
UTF-8 character, may be split anywhere) and returns the events completed by that chunk;
`flush()` ends the stream. Lines end at LF only: a CR before the LF is dropped (CRLF is
tolerated) but a lone CR, U+2028 or U+0085 is no line end (JSON never holds a raw LF,
so only LF is a safe split). Lines of JSON whitespace only (space, tab, CR) are
skipped, a leading BOM is dropped, and at end of stream an unterminated last line is
still delivered (a truncated one then fails to parse in the provider, which is the
error to show). Nothing is parsed here: the line goes to the provider as
`Event(data=line)`. A line past `max_line` characters ends the stream with a StreamError.
"""

from __future__ import annotations

import codecs
import re

from kznllm_py.sse import MAX_LINE, Event, complete_lines

_BLANK_RUNS = re.compile("\n{2,}")


class NDJSONDecoder:
    __slots__ = ("_held", "_max_line", "_pending", "_start", "_utf8")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._start = True  # BOM check still to do
        self._max_line = max_line
        self._pending: list[str] = []  # pieces of the current, unterminated line
        self._held = 0  # characters in _pending (at most max_line)

    def decode(self, chunk: bytes) -> list[Event]:
        return self._feed(self._utf8.decode(chunk))

    def flush(self) -> list[Event]:
        """End of stream: deliver the last line even without its newline."""
        text = self._utf8.decode(b"", final=True)
        events = self._feed(text) if text else []
        if self._pending:
            line = "".join(self._pending)
            self._pending = []
            self._held = 0
            _emit(line, events)
        return events

    def _feed(self, text: str) -> list[Event]:
        if not text:
            return []
        if self._start:
            self._start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if "\n\n" in text:  # blank lines are skipped: a run of them costs one
            text = _BLANK_RUNS.sub("\n", text)
        lines, self._held = complete_lines(self._pending, text, self._held, self._max_line)
        if not lines:
            return []
        events: list[Event] = []
        for line in lines:
            _emit(line, events)
        return events


def _emit(line: str, events: list[Event]) -> None:
    if line[-1:] == "\r":
        line = line[:-1]
    if line.strip(" \t\r"):  # a line of JSON whitespace only is no value
        events.append(Event(line))
