"""What every provider module shares: the request as data, the deltas a stream yields,
and the protocol a provider module implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kznllm_py.errors import StreamError
from kznllm_py.providers.jsonfast import loads_event
from kznllm_py.secrets import clip
from kznllm_py.sse import Event


@dataclass(slots=True, frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass(slots=True, frozen=True)
class Prompt:
    """A rendered prompt, provider-neutral: one system text and the turns. `prefill`
    starts the assistant's answer (providers that support it continue from there);
    `cache_system` asks for the system text to be cached (Anthropic prompt caching)."""

    system: str
    messages: tuple[Message, ...]
    prefill: str = ""
    cache_system: bool = False
    raw: str = ""  # the whole prompt as one string, for completion endpoints


@dataclass(slots=True, frozen=True)
class HttpRequest:
    """Pure data: what goes on the wire. `secret_headers` names the headers holding a key
    (they are redacted wherever the request is shown)."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    secret_headers: frozenset[str] = field(default_factory=frozenset)

    def redacted_headers(self) -> dict[str, str]:
        return {
            k: ("<redacted>" if k.lower() in self.secret_headers else v)
            for k, v in self.headers.items()
        }


# -- deltas: what a parsed stream yields ------------------------------------------------
# (not frozen: a frozen dataclass's __init__ costs about twice as much, and thousands
# are made per second of a fast stream)


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class UsageDelta:
    input_tokens: int | None = None
    output_tokens: int | None = None

    def to_dict(self) -> dict[str, int]:
        out = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(slots=True)
class DoneDelta:
    finish_reason: str | None = None


Delta = TextDelta | ReasoningDelta | UsageDelta | DoneDelta


def as_text(value: Any) -> str | None:
    """A text field of a stream event (text, reasoning, finish reason): a str or absent.
    Anything else raises TypeError, which the parsers report as a StreamError."""
    if value is None or type(value) is str:
        return value
    raise TypeError


def as_count(value: Any) -> int | None:
    """A token count of a stream event: an int or absent. Anything else (a float, a
    bool, a string) raises TypeError, which the parsers report as a StreamError."""
    if value is None or type(value) is int:
        return value
    raise TypeError


def stream_end(name: str, done: bool, finish_reason: str | None = None) -> list[Delta]:
    """What a parser's finish() returns at the end of the body: nothing after the
    provider's final event; the DoneDelta when the stream closed after a finish reason
    but without that final event (some compatible servers do); else the stream was cut
    short, a StreamError."""
    if done:
        return []
    if finish_reason:
        return [DoneDelta(finish_reason)]
    raise StreamError(f"{name}: the stream ended before the answer was complete")


class StreamParser(Protocol):
    def feed(self, event: Event) -> list[Delta]:
        """Deltas for one SSE event; raises ProviderError / StreamError."""
        ...

    def finish(self) -> list[Delta]:
        """End of stream; raises StreamError if the provider never said it was done."""
        ...


class JsonEventParser:
    """Base of the parsers whose events are JSON objects: feed() decodes the event and
    hands the object to `_deltas()`; an object of the wrong shape is a StreamError,
    never an AttributeError or KeyError from deep inside."""

    __slots__ = ()
    provider_name = ""

    def feed(self, event: Event) -> list[Delta]:
        obj = loads_event(event.data, self.provider_name)
        try:
            if not isinstance(obj, dict):
                raise TypeError
            return self._deltas(obj, event)
        except (AttributeError, TypeError, KeyError, IndexError):
            raise StreamError(
                f"{self.provider_name}: unexpected stream event: {clip(event.data, 200)!r}"
            ) from None

    def _deltas(self, obj: dict[str, Any], event: Event) -> list[Delta]:
        raise NotImplementedError


@dataclass(frozen=True)
class ProviderSpec:
    """A provider module's declaration: its name, where it lives by default, and its
    pure functions. Every module ends with `PROVIDER = ProviderSpec(...)`."""

    name: str
    default_base_url: str
    build_request: Callable[..., HttpRequest]
    error_message: Callable[[Any], str | None]
    new_parser: Callable[[], StreamParser]
    supports_prefill: bool = False  # the answer continues an assistant prefill
    stream_format: str = "sse"  # or "ndjson"
    raw_prompt: bool = False  # takes Prompt.raw (a completion endpoint), not messages


class Provider(Protocol):
    name: str
    default_base_url: str
    supports_prefill: bool  # the answer continues an assistant prefill

    def build_request(
        self,
        *,
        base_url: str,
        model: str,
        prompt: Prompt,
        params: dict[str, Any],
        api_key: str | None,
    ) -> HttpRequest: ...

    new_parser: Callable[[], StreamParser]

    def error_message(self, body: Any) -> str | None:
        """The provider's own error text from a parsed JSON error body, if any."""
        ...
