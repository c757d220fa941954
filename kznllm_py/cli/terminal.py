"""Text for a terminal: what the CLI prints from history or a server (queries, reasoning,
requests, model names, errors) with its control characters shown escaped, so a stored
row or a server cannot drive the terminal (an OSC 52 clipboard write, a title change, a
screen clear, a carriage return that hides what came before). Pure.

`text()` keeps the line breaks and tabs of a multi-line text; `line()` escapes those too
(one row of a list). `json_text()` is JSON's own output with the characters JSON leaves
raw (DEL, the C1 controls, bidirectional overrides, line separators) as `\\uXXXX`: the
same value, safe to print. `--raw` in the CLI prints the bytes instead. `err()` prints
the CLI's one line on stderr (redacted, escaped); the rest is pure.
"""

from __future__ import annotations

import re
import sys

from kznllm_py import secrets
from kznllm_py.errors import printable

# what json.dumps(ensure_ascii=False) leaves raw and a terminal may obey or reorder
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def err(text: str) -> None:
    """One line on stderr: redacted, and with control characters shown escaped (a
    server's or a project's text must not drive the terminal: OSC 52, titles, clears)."""
    print(f"kznllm: {printable(secrets.redact(text))}", file=sys.stderr)


def line(value: str) -> str:
    """One line: every control character escaped, line breaks too (`\\n`)."""
    return printable(value)


def text(value: str) -> str:
    """A multi-line text: its line breaks and tabs kept, every other control character
    (ESC, CR, NUL, BEL, C1, bidi overrides) escaped."""
    if value.isprintable():
        return value
    return "\n".join(
        "\t".join(printable(part) for part in row.split("\t")) for row in value.split("\n")
    )


def json_text(dumped: str) -> str:
    """The output of json.dumps(..., ensure_ascii=False) with the characters JSON leaves
    raw and a terminal obeys written as `\\uXXXX` escapes: the same JSON value."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


class AnswerText:
    """An answer streamed to a terminal, delta by delta: `text()`'s escaping (a model's or
    a server's ESC, BEL, C1 or bidi override never reaches the terminal raw), with a CRLF
    split across two deltas still one line break (a CR waits for the next delta)."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, chunk: str) -> str:
        if self._cr:
            chunk, self._cr = "\r" + chunk, False
        if chunk.endswith("\r"):
            chunk, self._cr = chunk[:-1], True
        return text(chunk.replace("\r\n", "\n"))

    def flush(self) -> str:
        """What is held back (a final lone CR, escaped)."""
        held, self._cr = self._cr, False
        return text("\r") if held else ""
