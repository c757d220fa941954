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

import re

from kznllm_py.stream.sse import Event, TextLines, complete_lines

_BLANK_RUNS = re.compile("\n{2,}")


class NDJSONDecoder(TextLines):
    __slots__ = ()

    def flush(self) -> list[Event]:
        """End of stream: deliver the last line even without its newline."""
        events, line = self._end()
        if line is not None:
            _emit(line, events)
        return events

    def _feed(self, text: str) -> list[Event]:
        text = self._text(text)
        if not text:
            return []
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
