"""The project's exception tree. Foreign errors (httpx, json, OS) are mapped once, at
the boundary that meets them, into one of these; callers show `str(err)` to the user.

    KznError
     ├── ConfigError      a preset, an option or an API key is missing or wrong
     ├── ProviderError    the provider answered with an error (HTTP status or error event)
     ├── TransportError   no answer: connection refused, timeout, stall, disconnect
     ├── StreamError      the answer cannot be understood (malformed event, cut short)
     ├── LimitError       the answer went past a configured limit (max_response_bytes)
     └── HistoryError     the history database cannot be opened, read or written
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KznError(Exception):
    """Base of every error this project raises on purpose; its text is user-facing."""


class ConfigError(KznError):
    """A preset, an option or an API key is missing or wrong."""


class ProviderError(KznError):
    """The provider said no. `status` is the HTTP status (None for an in-stream error)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str = "",
        retry_after: float | None = None,
        fix: str = "",
    ) -> None:
        self.status = status
        self.provider = provider
        self.detail = message
        self.retry_after = retry_after  # seconds, from the Retry-After header
        prefix = provider or "provider"
        where = f" (HTTP {status})" if status else ""
        # what failed and its status, then the fix when known, then the provider's words
        # (the longest part: a one-line message cut at the screen's width loses them first)
        text = f"{prefix} error{where}: {fix}{message}"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """Worth another try: rate limited (429), overloaded (503, Anthropic's 529) or a
        gateway that gave up (502, 504)."""
        return self.status in (429, 502, 503, 504, 529)


class TransportError(KznError):
    """No answer: connection refused, timeout, stall, disconnect."""


class StreamError(KznError):
    """The answer cannot be understood (a malformed event, cut short)."""


class LimitError(KznError):
    """The answer went past a configured limit (max_response_bytes)."""


class HistoryError(KznError):
    """The history database cannot be opened, read or written."""


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F  # DEL and the C1 controls (0x9b is a CSI on some terminals)
        or 0x202A <= code <= 0x202E  # bidirectional overrides: text that reads backwards
        or 0x2066 <= code <= 0x2069
        or code in (0x2028, 0x2029)  # line and paragraph separators
    )


def printable(text: str) -> str:
    """`text` safe for a terminal and a one-line message: control characters (an OSC 52
    clipboard write, a window title, a screen clear start with ESC), line breaks and
    bidirectional overrides are shown escaped (`\\x1b`, `\\n`, `\\u202e`), never sent
    raw. For error text from servers and projects; never for the answer itself."""
    if text.isprintable():
        return text
    return "".join(_escaped(ch) if _unsafe(ch) else ch for ch in text)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """ ": did you mean 'openai'?" when `word` is close to one of `known` (a typo), else
    "": the fix, said before the list of what is known (which a one-line message cuts)."""
    close = close_match(word, known)
    return f": did you mean {close!r}?" if close else ""


def close_match(word: str, known: Iterable[str]) -> str | None:
    """The one of `known` that `word` is a typo of, if any."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.7)
    return close[0] if close else None


def size_text(n: int) -> str:
    """A byte count as set: "1 MB", "64 KB", "1000 bytes" (binary units, exact)."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} byte{'' if n == 1 else 's'}"
