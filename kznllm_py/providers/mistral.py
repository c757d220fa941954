"""Mistral's native chat API, `{base_url}/chat/completions` on https://api.mistral.ai/v1
with `Authorization: Bearer $MISTRAL_API_KEY`.

The body is Chat Completions' with Mistral's own names (`random_seed`, `safe_prompt`,
`prompt_mode`), and a prefill is native: a last assistant message with `"prefix": true`
is continued, not answered. The API refuses fields it does not know ("Extra inputs are
not permitted"), so the parameter set is closed and checked at setup. The stream is
OpenAI's (`data: [DONE]`, `usage` on the last chunk); a reasoning model's (Magistral)
`delta.content` is a list of typed parts, `text` and `thinking`, which the OpenAI parser
already reads. A refused request's body is `{"message", "type", "code"}`, or, for a
malformed one, FastAPI's `{"detail": [{"loc", "msg"}, ...]}`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kznllm_py.providers import openai
from kznllm_py.providers.base import (
    FLAG,
    TABLE,
    TEXT,
    HttpRequest,
    ModelListing,
    Param,
    Prompt,
    Provider,
    under,
)

NAME = "mistral"

# the Chat Completions parameters Mistral shares, and its own
_SHARED = (
    "temperature", "top_p", "max_tokens", "stop", "n", "presence_penalty",
    "frequency_penalty", "response_format", "tools", "tool_choice", "parallel_tool_calls",
    "reasoning_effort", "metadata",
)  # fmt: skip
PARAMS: dict[str, Param] = {
    **{name: openai.PARAMS[name] for name in _SHARED},
    "random_seed": Param((int,)),
    "seed": Param((int,)),  # OpenAI's name: sent as random_seed
    "prediction": TABLE,
    "prompt_mode": TEXT,
    "safe_prompt": FLAG,
}


def build_request(*, prompt: Prompt, params: dict[str, Any], **where: Any) -> HttpRequest:
    """OpenAI's request (system first, Bearer key; `where` is the contract's base_url,
    model and api_key, passed on), with Mistral's seed and prefill."""
    params = dict(params)
    seed = params.pop("seed", None)
    if seed is not None:
        params.setdefault("random_seed", seed)
    request = openai.build_request(prompt=prompt, params=params, **where)
    if prompt.prefill.rstrip():
        # continued, not answered (trimmed as the text shown before the answer is)
        prefix = {"role": "assistant", "content": prompt.prefill.rstrip(), "prefix": True}
        request.body["messages"].append(prefix)
    return request


def listed_chat_models(body: Any) -> tuple[list[str], str | None]:
    """GET /v1/models: `{"object": "list", "data": [{"id", "capabilities": {
    "completion_chat", ...}}]}`, the models that chat (not the embedding, moderation
    or OCR ones; a card without capabilities is kept), one page."""
    ids = []
    for card in body["data"]:
        capabilities = card.get("capabilities") or {}
        if capabilities.get("completion_chat", True) is not False:
            ids.append(str(card["id"]))
    return ids, None


def error_message(body: Any) -> str | None:
    """The API's own words: `{"message", "type"}` as "type: message"; a validation
    error's `detail` list as "field: why; ..."."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list) and detail:
            shown = []
            for item in detail[:3]:
                if isinstance(item, dict) and isinstance(item.get("msg"), str):
                    loc = item.get("loc")
                    where = ".".join(str(x) for x in loc[1:]) if isinstance(loc, list) else ""
                    shown.append(f"{where}: {item['msg']}" if where else item["msg"])
            if shown:
                return "; ".join(shown)
        message = body.get("message")
        kind = body.get("type")
        if isinstance(message, str) and message:
            return f"{kind}: {message}" if isinstance(kind, str) and kind else message
    return openai.error_message(body)


PROVIDER = Provider(
    name=NAME,
    description="Mistral's chat API (api.mistral.ai)",
    default_base_url="https://api.mistral.ai/v1",
    build_request=build_request,
    error_message=error_message,
    new_parser=partial(openai.Parser, NAME),  # errors name this provider
    supports_prefill=True,
    reasoning=True,
    params=PARAMS,
    open_params=False,
    models=ModelListing(under("/models"), listed_chat_models),
)
