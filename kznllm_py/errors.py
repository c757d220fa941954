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


class KznError(Exception):
    """Base of every error this project raises on purpose; its text is user-facing."""

    kind = "error"


class ConfigError(KznError):
    kind = "config"


class ProviderError(KznError):
    """The provider said no. `status` is the HTTP status (None for an in-stream error)."""

    kind = "provider"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.provider = provider
        self.detail = message
        self.retry_after = retry_after  # seconds, from the Retry-After header
        prefix = provider or "provider"
        where = f" (HTTP {status})" if status else ""
        text = f"{prefix} error{where}: {message}"
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        """Worth another try: rate limited (429), overloaded (503, Anthropic's 529) or a
        gateway that gave up (502, 504)."""
        return self.status in (429, 502, 503, 504, 529)


class TransportError(KznError):
    kind = "transport"


class StreamError(KznError):
    kind = "stream"


class LimitError(KznError):
    kind = "limit"


class HistoryError(KznError):
    kind = "history"


def size_text(n: int) -> str:
    """A byte count as set: "1 MB", "64 KB", "1000 bytes" (binary units, exact)."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} byte{'' if n == 1 else 's'}"
