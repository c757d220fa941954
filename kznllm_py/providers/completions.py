"""OpenAI-style `/v1/completions` with one raw prompt, for local code models (vLLM,
llama.cpp, LM Studio): the family's `prompt.jinja` (ChatML, Llama 3 headers) or, for a
fill-in-the-middle preset, `fim.jinja` with the text before and after the cursor. The
stream is the Chat Completions one with `choices[0].text`, so the OpenAI parser reads it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kznllm_py.providers import openai
from kznllm_py.providers.base import FLAG, TEXT, HttpRequest, Prompt, Provider, post

NAME = "completions"

# the legacy Completions parameters: Chat Completions' sampling ones, plus its own
PARAMS = {
    **{k: v for k, v in openai.PARAMS.items() if k not in ("max_completion_tokens", "tools")},
    "echo": FLAG,
    "suffix": TEXT,
    "best_of": openai.PARAMS["n"],
}


def build_request(
    *, base_url: str, model: str, prompt: Prompt, params: dict[str, Any], api_key: str | None
) -> HttpRequest:
    body: dict[str, Any] = {"model": model, "prompt": prompt.raw, **params, "stream": True}
    return post(base_url.rstrip("/") + "/completions", body, api_key)


PROVIDER = Provider(
    name=NAME,
    description="OpenAI-style /v1/completions: one raw prompt, fill in the middle",
    default_base_url="http://127.0.0.1:8000/v1",
    build_request=build_request,
    error_message=openai.error_message,
    new_parser=partial(openai.Parser, NAME),  # errors name this provider
    raw_prompt=True,
    params=PARAMS,
    models=openai.PROVIDER.models,
)
