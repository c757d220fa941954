"""OpenAI Responses API, `POST {base_url}/responses` (`base_url` includes `/v1`, as
OPENAI_BASE_URL does): the system text as `instructions`, the turns as `input`, and a
stream of typed events (each `data:` names its `type`; there is no `[DONE]`):

    response.created ─► response.output_item.added ─► response.output_text.delta* ...
    ─► response.completed | response.incomplete | response.failed      (or `error`)

Output text deltas are the answer, reasoning summary (and raw reasoning) deltas are
reasoning; a refusal ends the answer with an error carrying the model's words;
`response.incomplete` keeps the partial answer and says why; usage (cached input and
reasoning tokens included) comes with the final response object. `store` is false
unless a preset's params say otherwise: nothing of a fill is kept on OpenAI's side.

Follow-ups resend the earlier answers as plain assistant turns. The encrypted reasoning
items that `store: false` would need are not sent back: they carry the model's chain of
thought between the tool calls of one turn, and OpenAI drops reasoning items of earlier
turns once a new user message comes, which is where every follow-up starts.
"""

from __future__ import annotations

from typing import Any

from kznllm_py.errors import ProviderError
from kznllm_py.providers import base, reasoning
from kznllm_py.providers.base import (
    DoneDelta,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
    as_count,
    as_text,
)
from kznllm_py.stream.sse import Event

NAME = "responses"

# the request fields of POST /v1/responses (the API refuses unknown ones: "Unknown
# parameter"); names other providers' presets use for the output limit are accepted
PARAMS: dict[str, base.Param] = {
    "max_output_tokens": base.COUNT,
    "max_tokens": base.COUNT,
    "max_completion_tokens": base.COUNT,
    "temperature": base.Param(base.NUMBER.types, base.between(0, 2)),
    "top_p": base.FRACTION,
    "reasoning": base.TABLE,
    "text": base.TABLE,
    "store": base.FLAG,
    "include": base.LIST,
    "metadata": base.TABLE,
    "service_tier": base.TEXT,
    "truncation": base.TEXT,
    "user": base.TEXT,
    "safety_identifier": base.TEXT,
    "prompt_cache_key": base.TEXT,
    "previous_response_id": base.TEXT,
    "top_logprobs": base.Param((int,)),
    "tools": base.LIST,
    "tool_choice": base.Param((str, dict)),
    "parallel_tool_calls": base.FLAG,
    "max_tool_calls": base.COUNT,
}
ALIASES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}
# incomplete_details.reason -> the finish reason the rest of kznllm reports
INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _effort(effort: str) -> dict[str, Any]:
    return {"reasoning": {"effort": effort, "summary": "auto"}}


_GRADED = {level: _effort(level) for level in ("low", "medium", "high")}
_SOFT = ("reasoning.summary",)  # a preset may ask for "detailed" summaries
# the reasoning switch, first match wins (providers/reasoning.py)
REASONING_RULES = (
    reasoning.Rule(
        r"^gpt-5\.\d", {"off": {"reasoning": {"effort": "none"}}, **_GRADED}, soft=_SOFT
    ),
    reasoning.Rule(r"^gpt-5", {"off": {"reasoning": {"effort": "minimal"}}, **_GRADED}, soft=_SOFT),
    reasoning.Rule(
        r"^o\d", _GRADED, why="o-series models always reason (lowest: 'low')", soft=_SOFT
    ),
    reasoning.Rule(r"^(gpt-4|chatgpt-)", {"off": {}}, why="it is not a reasoning model"),
    reasoning.Rule(
        "",
        _GRADED,
        why="only OpenAI's own models are known to turn reasoning off",
        soft=_SOFT,
    ),
)


def build_request(
    *, base_url: str, model: str, prompt: base.Prompt, params: dict[str, Any], api_key: str | None
) -> base.HttpRequest:
    body: dict[str, Any] = {"model": model}
    if prompt.system:
        body["instructions"] = prompt.system
    body["input"] = base.turns(prompt)
    body["store"] = False
    for key, value in params.items():
        if key != "stream":
            body[ALIASES.get(key, key)] = value
    body["stream"] = True
    return base.post(base_url.rstrip("/") + "/responses", body, api_key)


def error_message(body: Any) -> str | None:
    """`{"error": {"message", "type", "param", "code"}}`, as Chat Completions has it."""
    return base.error_text(body, fields=("message",))


def _failure(obj: dict[str, Any]) -> str:
    """The words of an `error` event (`code`, `message`) or of a failed response's
    `error` object, as "code: message"."""
    code = as_text(obj.get("code"))
    message = as_text(obj.get("message")) or "the response failed"
    return f"{code}: {message}" if code else message


class Parser(base.JsonEventParser):
    """Responses API events -> deltas. Ends at response.completed / .incomplete."""

    __slots__ = ("done", "refusal", "summary")
    provider_name = NAME

    def __init__(self) -> None:
        self.done = False
        self.refusal: list[str] = []
        self.summary: tuple[Any, Any] | None = None  # (item id, summary index) last read

    def _deltas(self, obj: dict[str, Any], event: Event) -> list[base.Delta]:
        kind = obj.get("type") or event.event
        if kind == "response.output_text.delta":
            text = as_text(obj.get("delta"))
            return [TextDelta(text)] if text else []
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            text = as_text(obj.get("delta"))
            if not text:
                return []
            part = (obj.get("item_id"), obj.get("summary_index", obj.get("content_index")))
            new_part = self.summary is not None and part != self.summary
            self.summary = part
            # the summary's parts are paragraphs of their own
            return [ReasoningDelta("\n\n" + text if new_part else text)]
        if kind == "response.refusal.delta":
            self.refusal.append(as_text(obj.get("delta")) or "")
            return []
        if kind == "response.refusal.done":
            words = as_text(obj.get("refusal")) or "".join(self.refusal)
            raise ProviderError(f"the model refused: {words}", provider=NAME)
        if kind in ("response.completed", "response.incomplete"):
            response = obj.get("response") or {}
            if self.refusal:  # a refusal whose .done never came
                raise ProviderError(f"the model refused: {''.join(self.refusal)}", provider=NAME)
            out: list[base.Delta] = []
            usage = response.get("usage")
            if usage:
                out.append(read_usage(usage))
            reason = "stop"
            if kind == "response.incomplete":
                why = as_text((response.get("incomplete_details") or {}).get("reason"))
                reason = INCOMPLETE.get(why or "", why or "incomplete")
            self.done = True
            out.append(DoneDelta(reason))
            return out
        if kind == "response.failed":
            error = (obj.get("response") or {}).get("error") or {}
            raise ProviderError(_failure(error), provider=NAME)
        if kind == "error":
            # {"type": "error", "code", "message", "param"}; some servers nest it
            inner = obj.get("error")
            raise ProviderError(_failure(inner if isinstance(inner, dict) else obj), provider=NAME)
        return []  # created, in_progress, output_item.*, content_part.*, *.done, ...


def read_usage(usage: dict[str, Any]) -> UsageDelta:
    """`{input_tokens, input_tokens_details: {cached_tokens}, output_tokens,
    output_tokens_details: {reasoning_tokens}}` (reasoning tokens are part of the
    output tokens, and billed as such)."""
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    return UsageDelta(
        as_count(usage.get("input_tokens")),
        as_count(usage.get("output_tokens")),
        cached_input_tokens=as_count(cached) or None,  # 0: none (as absent)
        reasoning_tokens=as_count(reasoning) or None,
    )


PROVIDER = base.Provider(
    name=NAME,
    description="OpenAI Responses API (reasoning summaries, store: false)",
    default_base_url="https://api.openai.com/v1",
    build_request=build_request,
    error_message=error_message,
    new_parser=Parser,
    reasoning=True,
    params=PARAMS,
    open_params=False,
    models=base.ModelListing(base.under("/models")),
    reasoning_rules=REASONING_RULES,
)
