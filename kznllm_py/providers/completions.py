"""OpenAI-style `/v1/completions` with one raw prompt, for local code models (vLLM,
llama.cpp, LM Studio): the family's `prompt.jinja` (ChatML, Llama 3 headers) or, for a
fill-in-the-middle preset, `fim.jinja` with the text before and after the cursor. The
stream is the Chat Completions one with `choices[0].text`, so the OpenAI parser reads it.
"""

from __future__ import annotations

from typing import Any

from kznllm_py.providers import openai
from kznllm_py.providers.base import HttpRequest, Prompt, ProviderSpec

NAME = "completions"


def build_request(
    *,
    base_url: str,
    model: str,
    prompt: Prompt,
    params: dict[str, Any],
    api_key: str | None,
) -> HttpRequest:
    body: dict[str, Any] = {"model": model, "prompt": prompt.raw, **params, "stream": True}
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    secret: frozenset[str] = frozenset()
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
        secret = frozenset({"authorization"})
    return HttpRequest("POST", base_url.rstrip("/") + "/completions", headers, body, secret)


PROVIDER = ProviderSpec(
    name=NAME,
    default_base_url="http://127.0.0.1:8000/v1",
    build_request=build_request,
    error_message=openai.error_message,
    new_parser=openai.Parser,
    raw_prompt=True,
)
