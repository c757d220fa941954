"""Ollama's native chat API, `{base_url}/api/chat` (no key; `base_url` is the server
root, without `/v1`: that is the OpenAI-compatible route, for the "openai" provider).

The stream is newline-delimited JSON, not SSE (`stream_format = "ndjson"`): one object a
line, `{"message": {"role", "content", "thinking"?}, "done": false}` ... then a final
`{"done": true, "done_reason", "prompt_eval_count", "eval_count", ...}`; a failure
mid-stream is a line `{"error": "..."}`.
"""

from __future__ import annotations

from typing import Any

from kznllm_py.errors import ProviderError
from kznllm_py.providers import base, reasoning
from kznllm_py.providers.base import DoneDelta, ReasoningDelta, TextDelta, UsageDelta
from kznllm_py.secrets import clip
from kznllm_py.stream.sse import Event

NAME = "ollama"

# request fields beside `options`; every other param is a model option
TOP_LEVEL = frozenset({"format", "keep_alive", "think", "tools", "truncate", "shift"})
# names other providers' presets use for an option
ALIASES = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}


# the reasoning switch, first match wins (providers/reasoning.py): gpt-oss takes a
# level and cannot stop thinking; other thinking models (Qwen3, DeepSeek-R1, ...) think
# or not, so 'low', 'medium' and 'high' all send `think: true`
REASONING_RULES = (
    reasoning.Rule(
        r"^gpt-oss",
        {level: {"think": level} for level in ("low", "medium", "high")},
        why="gpt-oss cannot stop thinking (lowest: 'low')",
    ),
    reasoning.Rule(
        "",
        {"off": {"think": False}, **{lv: {"think": True} for lv in ("low", "medium", "high")}},
    ),
)


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Preset params -> (options, top-level request fields). An explicit `options`
    table is the base the flat names are laid over."""
    options: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in params.items():
        if key == "options" and isinstance(value, dict):
            options = {**value, **options}
        elif key == "stream":
            continue  # always streamed
        elif key in TOP_LEVEL:
            top[key] = value
        else:
            name = ALIASES.get(key, key)
            if name == "stop" and isinstance(value, str):
                value = [value]
            options[name] = value
    return options, top


def build_request(
    *, base_url: str, model: str, prompt: base.Prompt, params: dict[str, Any], api_key: str | None
) -> base.HttpRequest:
    messages = base.turns(prompt, "system")
    options, top = split_params(params)
    body: dict[str, Any] = {"model": model, "messages": messages, **top, "stream": True}
    if options:
        body["options"] = options
    # Ollama itself has no keys; a reverse proxy in front of it (or ollama.com) takes a
    # bearer token
    url = base_url.rstrip("/") + "/api/chat"
    return base.post(url, body, api_key, accept="application/x-ndjson")


def error_message(body: Any) -> str | None:
    """`{"error": "text"}` (a proxy in front may send OpenAI's `{"error": {"message"}}`)."""
    return base.error_text(body)


def tags_url(base_url: str) -> str:
    """The native model list, also when `base_url` is the OpenAI-compatible `/v1`."""
    return base_url.removesuffix("/v1") + "/api/tags"


def listed_tags(body: Any) -> tuple[list[str], str | None]:
    """`{"models": [{"name"}, ...]}`, one page."""
    return [str(m["name"]) for m in body["models"]], None


class Parser(base.JsonEventParser):
    """/api/chat lines -> deltas. Ends at the line with `"done": true`."""

    __slots__ = ("done",)
    provider_name = NAME

    def __init__(self) -> None:
        self.done = False

    def _deltas(self, obj: dict[str, Any], event: Event) -> list[base.Delta]:
        if obj.get("error"):
            raise ProviderError(error_message(obj) or clip(event.data, 300), provider=NAME)
        out: list[base.Delta] = []
        message = obj.get("message")
        if message:
            thinking = message.get("thinking")
            if thinking:
                if not isinstance(thinking, str):
                    raise TypeError
                out.append(ReasoningDelta(thinking))
            content = message.get("content")
            if content:
                if not isinstance(content, str):
                    raise TypeError
                out.append(TextDelta(content))
        if obj.get("done") is True:
            inp = base.as_count(obj.get("prompt_eval_count"))
            outp = base.as_count(obj.get("eval_count"))
            if inp is not None or outp is not None:
                out.append(UsageDelta(inp, outp))
            self.done = True
            out.append(DoneDelta(base.as_text(obj.get("done_reason"))))
        return out


PROVIDER = base.Provider(
    name=NAME,
    description="Ollama's native chat API (/api/chat, NDJSON)",
    default_base_url="http://127.0.0.1:11434",
    build_request=build_request,
    error_message=error_message,
    new_parser=Parser,
    stream_format="ndjson",
    reasoning=True,
    # model options by their names pass as they are (Ollama's option set grows)
    params={
        "temperature": base.Param(base.NUMBER.types),
        "top_p": base.Param(base.NUMBER.types),
        "top_k": base.COUNT,
        "num_predict": base.Param((int,)),
        "num_ctx": base.COUNT,
        "max_tokens": base.COUNT,
        "max_completion_tokens": base.COUNT,
        "stop": base.STOP,
        "seed": base.Param((int,)),
        "options": base.TABLE,
        "keep_alive": base.Param((str, int, float)),
        "think": base.Param((bool, str)),
        "format": base.Param((str, dict)),
    },
    models=base.ModelListing(tags_url, listed_tags),
    reasoning_rules=REASONING_RULES,
)
