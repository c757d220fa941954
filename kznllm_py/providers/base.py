"""What every provider module shares: the request as data, the deltas a stream yields,
and the protocol a provider module implements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from kznllm_py.errors import StreamError, did_you_mean
from kznllm_py.providers.jsonfast import loads_event
from kznllm_py.providers.reasoning import Rule
from kznllm_py.secrets import clip
from kznllm_py.stream.sse import Event


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


@dataclass(frozen=True, slots=True)
class Auth:
    """Where a provider's server takes the key: the header, and what goes before the key
    in it. The header is marked secret, so that it is redacted wherever a request is
    shown."""

    header: str = "Authorization"
    scheme: str = "Bearer "

    def headers(
        self, headers: dict[str, str], api_key: str | None
    ) -> tuple[dict[str, str], frozenset[str]]:
        """`headers` with the key (if any) added, and the names of the secret ones."""
        if not api_key:
            return headers, frozenset()
        headers[self.header] = self.scheme + api_key
        return headers, frozenset({self.header.lower()})


BEARER = Auth()


def post(
    url: str,
    body: dict[str, Any],
    api_key: str | None,
    *,
    auth: Auth = BEARER,
    accept: str = "text/event-stream",
    extra: Mapping[str, str] | None = None,
) -> HttpRequest:
    """A streamed JSON POST, the key (if any) where `auth` says."""
    headers = {"Content-Type": "application/json", "Accept": accept, **(extra or {})}
    headers, secret = auth.headers(headers, api_key)
    return HttpRequest("POST", url, headers, body, secret)


def turns(prompt: Prompt, system_role: str | None = None) -> list[dict[str, Any]]:
    """The prompt's turns as `{"role", "content"}` objects, after its system text as a
    first message of `system_role` when one is named (and there is a system text)."""
    messages: list[dict[str, Any]] = [
        {"role": m.role, "content": m.content} for m in prompt.messages
    ]
    if system_role and prompt.system:
        messages.insert(0, {"role": system_role, "content": prompt.system})
    return messages


def error_text(body: Any, *, label: str = "", fields: tuple[str, ...] = ()) -> str | None:
    """The provider's words in an error body: `{"error": {"message"}}` (as "LABEL:
    message" when the error has a `label` field: Anthropic's type, Google's status),
    `{"error": "text"}`, or else the first text among the body's own `fields`. Empty
    text is no message."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict) and err.get("message"):
        kind = err.get(label) if label else None
        return f"{kind}: {err['message']}" if kind else str(err["message"])
    if isinstance(err, str) and err:
        return err
    for name in fields:
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def get_json(
    url: str, api_key: str | None, *, auth: Auth = BEARER, extra: Mapping[str, str] | None = None
) -> HttpRequest:
    """A GET of a JSON document, the key (if any) where `auth` says."""
    headers, secret = auth.headers({"Accept": "application/json", **(extra or {})}, api_key)
    return HttpRequest("GET", url, headers, {}, secret)


def under(route: str) -> Callable[[str], str]:
    """The URL of `route` under a base URL (given without its trailing slash)."""
    return lambda base: base + route


def listed_ids(body: Any) -> tuple[list[str], str | None]:
    """The model ids of an OpenAI-style list, `{"data": [{"id"}, ...]}` (one page)."""
    return [str(m["id"]) for m in body["data"]], None


@dataclass(frozen=True, slots=True)
class ModelListing:
    """How a provider's server lists its models (`kznllm models`, `:KznPreset!`): a GET
    of `url(base_url)`, the key where `auth` says (as the provider's requests have it),
    with `extra` headers; `parse(body)` gives (model ids, the next page's token or None)
    and raises KeyError / TypeError / AttributeError on a body of the wrong shape.
    `paging` names the query parameters of a paged list: (page size, next page)."""

    url: Callable[[str], str]
    parse: Callable[[Any], tuple[list[str], str | None]] = listed_ids
    auth: Auth = BEARER
    extra: Mapping[str, str] = field(default_factory=dict)
    paging: tuple[str, str] | None = None

    def request(self, base_url: str, api_key: str | None, page: str | None = None) -> HttpRequest:
        """The GET of the list (`page`: the token or the last id a previous page gave)."""
        url = self.url(base_url.rstrip("/"))
        if self.paging is not None:
            size, start = self.paging
            url += "?" + urlencode({size: "1000", **({start: page} if page else {})})
        return get_json(url, api_key, auth=self.auth, extra=self.extra)


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
    """Token counts as the provider reports them. `input_tokens` counts every input
    token, the cached ones (`cached_input_tokens`, billed at the cached price) among
    them; `output_tokens` counts every output token, the reasoning ones
    (`reasoning_tokens`) among them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None

    def to_dict(self) -> dict[str, int]:
        out = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens or None,
            "reasoning_tokens": self.reasoning_tokens or None,
        }
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
    done: bool  # the provider's final event came (a slot of each subclass)

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

    def finish(self) -> list[Delta]:
        """The body ended: complete only after the provider's final event."""
        return stream_end(self.provider_name, self.done)


# -- the contract: what a provider module declares ------------------------------------

_NUMBER = (int, float)


def _type_name(types: tuple[type, ...]) -> str:
    names = {
        int: "a whole number",
        float: "a number",
        str: "a string",
        bool: "true/false",
        list: "a list",
        dict: "a table",
    }
    if types == _NUMBER:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


@dataclass(frozen=True, slots=True)
class Param:
    """A request parameter a provider knows: the JSON types it takes (a bool is never a
    number) and, optionally, a check of the value that returns what is wrong with it."""

    types: tuple[type, ...]
    check: Callable[[Any], str | None] | None = None

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) and bool not in self.types:
            ok = False
        else:
            ok = isinstance(value, self.types)
        if not ok:
            return f"want {_type_name(self.types)}, not {type(value).__name__} {value!r}"
        return self.check(value) if self.check is not None else None


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"want {low} or more, not {v!r}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"want {low} to {high}, not {v!r}"


def non_empty(value: Any) -> str | None:
    return None if value.strip() else "want a non-empty string"


NUMBER = Param(_NUMBER)
COUNT = Param((int,), at_least(1))
TABLE = Param((dict,))
TEXT = Param((str,))
FLAG = Param((bool,))
LIST = Param((list,))
STOP = Param((str, list))  # one stop sequence or several
FRACTION = Param(_NUMBER, between(0, 1))  # top_p, and Anthropic's temperature


@dataclass(frozen=True)
class Provider:
    """A provider module's declaration, the one contract every module fulfils with a
    `PROVIDER = Provider(...)` at its end (and one line in `providers.PROVIDERS`): what
    the wire format supports, as data, and its pure functions (build the request, read
    an error body, parse the stream). Nothing outside the module branches on its name.
    """

    name: str
    default_base_url: str
    build_request: Callable[..., HttpRequest]
    error_message: Callable[[Any], str | None]
    new_parser: Callable[[], StreamParser]
    description: str = ""
    stream_format: str = "sse"  # the body's framing: "sse" or "ndjson"
    # takes Prompt.raw (a completion endpoint: a raw prompt, fill in the middle), not turns
    raw_prompt: bool = False
    supports_prefill: bool = False  # the answer continues an assistant prefill
    reasoning: bool = False  # the stream may carry reasoning (ReasoningDelta)
    prompt_caching: bool = False  # honours Prompt.cache_system
    usage: bool = True  # the stream reports token counts (UsageDelta)
    # the template family a preset of this provider uses unless it names one
    family: str = "openai"
    # the request parameters it knows (name -> Param); with `open_params`, other names go
    # to the server as they are (OpenAI-compatible servers take their own extras), else
    # an unknown name is a configuration error
    params: Mapping[str, Param] = field(default_factory=dict)
    open_params: bool = True
    # the default base URL is a placeholder: a preset must say where (Azure's resource)
    needs_base_url: bool = False
    # how its server lists its models; None: it does not
    models: ModelListing | None = None
    # the reasoning switch (a preset's `reasoning`) in its spelling, per model: data
    # (providers/reasoning.py); empty: it has none
    reasoning_rules: tuple[Rule, ...] = ()

    def check_params(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field, reason) for each param this provider refuses: a wrongly typed known
        one, or an unknown one when its parameter set is closed."""
        problems: list[tuple[str, str]] = []
        for key, value in params.items():
            spec = self.params.get(key)
            if spec is None:
                if not self.open_params:
                    known = ", ".join(sorted(self.params))
                    hint = did_you_mean(key, self.params)
                    unknown = f"unknown to {self.name}{hint} (known: {known})"
                    problems.append((f"params.{key}", unknown))
                continue
            why = spec.problem(value)
            if why:
                problems.append((f"params.{key}", why))
        return problems
