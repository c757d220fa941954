"""Anthropic Messages API: `x-api-key`, `anthropic-version`, system as blocks, and a
typed event stream (message_start, content_block_*, ping, message_delta, message_stop,
error).

Thinking (`thinking_delta`) is reasoning; `signature_delta` and `redacted_thinking`
blocks carry no text and stay out of the answer. A follow-up resends earlier answers as
plain assistant turns without their thinking blocks: the API requires them (signed,
unchanged) only within a tool-use turn, and kznllm uses no tools."""

from __future__ import annotations

from functools import partial
from typing import Any

from kznllm_py.errors import ProviderError
from kznllm_py.providers import base, reasoning
from kznllm_py.providers.base import DoneDelta, ReasoningDelta, TextDelta, UsageDelta, as_text
from kznllm_py.secrets import clip
from kznllm_py.stream.sse import Event

NAME = "anthropic"
API_VERSION = "2023-06-01"
AUTH = base.Auth("x-api-key", "")
HEADERS = {"anthropic-version": API_VERSION}
DEFAULT_MAX_TOKENS = 4096
# the Messages API's request fields (it refuses others: "Extra inputs are not permitted")
PARAMS: dict[str, base.Param] = {
    "max_tokens": base.COUNT,
    "temperature": base.FRACTION,
    "top_p": base.FRACTION,
    "top_k": base.COUNT,
    "stop_sequences": base.LIST,
    "metadata": base.TABLE,
    "thinking": base.TABLE,
    "tools": base.LIST,
    "tool_choice": base.TABLE,
    "service_tier": base.TEXT,
    "container": base.TEXT,
    "mcp_servers": base.LIST,
    "context_management": base.TABLE,
    "output_config": base.TABLE,
}

_OFF = {"thinking": {"type": "disabled"}}
# the API refuses these with thinking on
_NOT_WITH_THINKING = ("temperature", "top_k", "top_p")
# thinking budgets of the models that take `budget_tokens`, counted within max_tokens:
# the switch adds the budget to the preset's max_tokens, so the answer keeps its room
BUDGETS = {"low": 2048, "medium": 8192, "high": 24576}
# the reasoning switch, first match wins (providers/reasoning.py): adaptive thinking
# with an effort for the models of Claude 4.6 and later (they refuse budget_tokens),
# a budget for Claude 3.7 and 4 to 4.5
REASONING_RULES = (
    reasoning.Rule(
        r"^claude-[a-z]+-(4-[6-9]|[5-9])(-|$)",
        {
            "off": _OFF,
            **{
                level: {"thinking": {"type": "adaptive"}, "output_config": {"effort": level}}
                for level in ("low", "medium", "high")
            },
        },
        soft=("thinking.display",),
        drop=_NOT_WITH_THINKING,
    ),
    reasoning.Rule(
        r"^claude-(3-7-sonnet|[a-z]+-4(-[0-5])?(-\d{8})?$)",
        {
            "off": _OFF,
            **{
                level: {"thinking": {"type": "enabled", "budget_tokens": budget}}
                for level, budget in BUDGETS.items()
            },
        },
        drop=_NOT_WITH_THINKING,
        grow=("max_tokens", DEFAULT_MAX_TOKENS),
        budget=BUDGETS,
    ),
    reasoning.Rule(r"^claude-", {"off": {}}, why="this Claude model does not think"),
)


def build_request(
    *, base_url: str, model: str, prompt: base.Prompt, params: dict[str, Any], api_key: str | None
) -> base.HttpRequest:
    messages = base.turns(prompt)
    if prompt.prefill.rstrip():
        # the answer continues this text (the API rejects trailing whitespace there)
        messages.append({"role": "assistant", "content": prompt.prefill.rstrip()})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if prompt.system:
        block: dict[str, Any] = {"type": "text", "text": prompt.system}
        if prompt.cache_system:
            block["cache_control"] = {"type": "ephemeral"}
        body["system"] = [block]
    body.update(params)
    body["stream"] = True
    return base.post(api_url(base_url, "messages"), body, api_key, auth=AUTH, extra=HEADERS)


def api_url(base_url: str, route: str) -> str:
    """The endpoint `route` ("messages", "models") under `base_url`. The SDKs'
    convention (ANTHROPIC_BASE_URL) is a base without `/v1`, "https://api.anthropic.com";
    one with a trailing `/v1` (as this plugin once wanted) is accepted, not doubled."""
    return base_url.rstrip("/").removesuffix("/v1") + "/v1/" + route


def listed_page(body: Any) -> tuple[list[str], str | None]:
    """`{"data": [{"id"}], "has_more", "last_id"}`: the ids, and where the next page
    starts."""
    ids, _ = base.listed_ids(body)
    return ids, (str(body["last_id"]) if body.get("has_more") and body.get("last_id") else None)


def error_message(body: Any) -> str | None:
    """`{"type": "error", "error": {"type", "message"}}` as "type: message"."""
    return base.error_text(body, label="type", fields=("message",))


def input_counts(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(every input token, the ones read from the cache). Anthropic's `input_tokens`
    leaves out `cache_creation_input_tokens` and `cache_read_input_tokens`: all three
    are input."""
    inp = base.as_count(usage.get("input_tokens"))
    written = base.as_count(usage.get("cache_creation_input_tokens"))
    read = base.as_count(usage.get("cache_read_input_tokens"))
    if inp is not None and (written or read):
        inp += (written or 0) + (read or 0)
    return inp, read or None


class Parser(base.JsonEventParser):
    __slots__ = ("cached", "done", "input_tokens", "stop_reason")
    provider_name = NAME

    def __init__(self) -> None:
        self.done = False
        self.stop_reason: str | None = None
        self.input_tokens: int | None = None
        self.cached: int | None = None

    def _deltas(self, obj: dict[str, Any], event: Event) -> list[base.Delta]:
        kind = obj.get("type") or event.event
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = as_text(delta.get("text"))
                return [TextDelta(text)] if text else []
            if dtype == "thinking_delta":
                text = as_text(delta.get("thinking"))
                return [ReasoningDelta(text)] if text else []
            return []  # signature_delta, input_json_delta, ...
        if kind == "message_start":
            usage = (obj.get("message") or {}).get("usage") or {}
            self.input_tokens, self.cached = input_counts(usage)
            return []
        if kind == "message_delta":
            reason = as_text((obj.get("delta") or {}).get("stop_reason"))
            # "max_tokens" is the answer cut at the limit: reported as "length", as OpenAI does
            self.stop_reason = ("length" if reason == "max_tokens" else reason) or self.stop_reason
            usage = obj.get("usage") or {}
            if "output_tokens" in usage:
                inp, cached = self.input_tokens, self.cached
                if "input_tokens" in usage:  # newer servers repeat the counts here
                    inp, cached = input_counts(usage)
                return [
                    UsageDelta(
                        inp, base.as_count(usage["output_tokens"]), cached_input_tokens=cached
                    )
                ]
            return []
        if kind == "message_stop":
            self.done = True
            return [DoneDelta(self.stop_reason)]
        if kind == "error":
            raise ProviderError(error_message(obj) or clip(event.data, 300), provider=NAME)
        return []  # ping, content_block_start/stop, unknown future events


PROVIDER = base.Provider(
    name=NAME,
    description="Anthropic Messages API",
    default_base_url="https://api.anthropic.com",
    build_request=build_request,
    error_message=error_message,
    new_parser=Parser,
    supports_prefill=True,
    reasoning=True,
    prompt_caching=True,
    family="anthropic",
    params=PARAMS,
    open_params=False,
    models=base.ModelListing(
        partial(api_url, route="models"),
        listed_page,
        auth=AUTH,
        extra=HEADERS,
        paging=("limit", "after_id"),
    ),
    reasoning_rules=REASONING_RULES,
)
