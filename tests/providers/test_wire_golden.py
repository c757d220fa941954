"""Golden wire requests: what every registered provider sends, byte for byte (method, URL,
headers in order, the JSON body exactly as the client serializes it), for a fixed set of
prompts and params, and the GETs that list its models. A change to a provider's request
building shows up here as a diff to review; after reviewing, regenerate with
KZN_UPDATE_GOLDEN=1. A new provider needs its file: run with KZN_UPDATE_GOLDEN=1 once
and review what it wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kznllm_py.prompt.presets import Preset, builtin_presets, request_params
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import PROVIDERS
from kznllm_py.providers.base import HttpRequest, Message, Param, Prompt, Provider
from kznllm_py.providers.jsonfast import dumps
from kznllm_py.stream.prepare import render_prompt

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "wire"
UPDATE = os.environ.get("KZN_UPDATE_GOLDEN") == "1"
KEY = "sk-golden-key"

CHAT = Prompt(
    system="You write code.",
    messages=(
        Message("user", "first question"),
        Message("assistant", "first answer"),
        Message("user", "second question, with unicode: é ✓ \u2028"),
    ),
    prefill="    ",
)
PREFILLED = Prompt(
    system="sys",
    messages=(Message("user", "go on"),),
    prefill="def f():  \n",
    cache_system=True,
)
NO_SYSTEM = Prompt(system="", messages=(Message("user", "hi"),))
RAW = Prompt(system="", messages=(), raw="<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>")
FILL = FillContext(
    mode="replace",
    query="skip negative prices",
    selection="    return sum(prices)",
    filetype="python",
    path="src/shop.py",
    before="def total(prices):\n",
    after="\n",
    cursor=(1, 0),
    prefill="    ",
)
# names other providers' presets use, and an extra an open provider passes on
PORTABLE = {"max_tokens": 5, "stop": "END", "seed": 3, "temperature": 0.5, "stream": False}


def sample(spec: Param) -> Any:
    """A value every check of `spec` accepts, of its first JSON type."""
    kind = spec.types[0]
    if kind is float or spec.types == (int, float):
        return 0.5
    return {int: 7, str: "s", bool: True, list: ["x"], dict: {"k_v": 1}}[kind]


def base_for(provider: Provider) -> str:
    return "https://res.openai.azure.com" if provider.needs_base_url else provider.default_base_url


def shown(label: str, request: HttpRequest) -> str:
    head = {
        "method": request.method,
        "url": request.url,
        "headers": list(request.headers.items()),
        "secret": sorted(request.secret_headers),
    }
    body = dumps(request.body).decode() if request.method == "POST" else ""
    return f"=== {label} ===\n{json.dumps(head, ensure_ascii=False)}\n{body}\n"


def requests_of(name: str) -> list[tuple[str, HttpRequest]]:
    p = PROVIDERS[name]
    base = base_for(p)
    prompts = {"raw": RAW} if p.raw_prompt else {"chat": CHAT, "prefilled": PREFILLED}
    if not p.raw_prompt:
        prompts["no-system"] = NO_SYSTEM
    every = {k: sample(spec) for k, spec in p.params.items()}
    params: dict[str, dict[str, Any]] = {"no-params": {}, "every-param": every}
    if p.open_params:
        params["portable"] = {**PORTABLE, "repetition_penalty": 1.05}
    out: list[tuple[str, HttpRequest]] = []
    for pname, prompt in prompts.items():
        for qname, values in params.items():
            for model in ("m-1", "o4-mini"):
                request = p.build_request(
                    base_url=base + "/", model=model, prompt=prompt, params=values, api_key=KEY
                )
                out.append((f"{pname} {qname} {model}", request))
    first = RAW if p.raw_prompt else CHAT
    keyless = p.build_request(base_url=base, model="m", prompt=first, params={}, api_key=None)
    out.append(("no key", keyless))
    return out


def builtin_requests(name: str) -> list[tuple[str, HttpRequest]]:
    """The built-in presets of `name`, rendered by their templates for one fill."""
    p = PROVIDERS[name]
    out: list[tuple[str, HttpRequest]] = []
    for preset in builtin_presets():
        if preset.provider != name or preset.demo:
            continue
        fixed = Preset(**{**preset.__dict__, "base_url": base_for(p)})
        prompt = render_prompt(fixed, FILL)
        request = p.build_request(
            base_url=fixed.base_url,
            model=fixed.model,
            prompt=prompt,
            params=request_params(fixed),
            api_key=KEY,
        )
        out.append((f"built-in preset {preset.id}", request))
    return out


# a model of each reasoning rule of each provider (and a base URL where the rule needs
# one), for the golden requests of every level of the switch
SWITCH_MODELS: dict[str, list[tuple[str, str]]] = {
    "openai": [
        ("gpt-5.1", ""),
        ("gpt-5-mini", ""),
        ("o4-mini", ""),
        ("gpt-4o-mini", ""),
        ("Qwen/Qwen3-32B", "http://127.0.0.1:8000/v1"),
        ("deepseek/deepseek-r1", "https://openrouter.ai/api/v1"),
    ],
    "azure": [("gpt-5-mini", ""), ("o4-mini", ""), ("gpt-4o-mini", "")],
    "responses": [
        ("gpt-5.1", ""),
        ("gpt-5-mini", ""),
        ("o3", ""),
        ("gpt-4.1", ""),
        ("openai/gpt-oss-120b", "http://127.0.0.1:8000/v1"),
    ],
    "anthropic": [
        ("claude-opus-4-6", ""),
        ("claude-sonnet-5", ""),
        ("claude-sonnet-4-5", ""),
        ("claude-sonnet-4-20250514", ""),
        ("claude-3-7-sonnet-latest", ""),
        ("claude-3-5-haiku-latest", ""),
    ],
    "gemini": [
        ("gemini-3-pro-preview", ""),
        ("gemini-3-flash-preview", ""),
        ("gemini-2.5-pro", ""),
        ("gemini-2.5-flash", ""),
        ("gemini-2.0-flash", ""),
    ],
    "ollama": [("gpt-oss:20b", ""), ("qwen3:8b", "")],
    "mistral": [("magistral-medium-latest", "")],
    "completions": [("Qwen/Qwen2.5-Coder-7B", "")],
}
# params a preset may have that the switch changes (Anthropic's thinking drops the
# sampling ones and grows max_tokens by the budget)
SWITCH_PARAMS = {"anthropic": {"max_tokens": 8192, "temperature": 0.7}}


def switch_requests(name: str) -> list[tuple[str, HttpRequest | str]]:
    """Every level of the reasoning switch on a model of each of `name`'s rules: the
    request, or the reason it is refused."""
    from kznllm_py.errors import ConfigError

    p = PROVIDERS[name]
    prompt = RAW if p.raw_prompt else NO_SYSTEM
    out: list[tuple[str, HttpRequest | str]] = []
    for model, url in SWITCH_MODELS[name]:
        for level in ("off", "low", "medium", "high"):
            preset = Preset(
                id="switch",
                provider=name,
                model=model,
                base_url=url or base_for(p),
                params=SWITCH_PARAMS.get(name, {}),
                reasoning=level,
            )
            label = f"reasoning={level} {model} {url}".rstrip()
            try:
                params = request_params(preset)
            except ConfigError as exc:
                out.append((label, f"refused: {exc}"))
                continue
            request = p.build_request(
                base_url=preset.base_url, model=model, prompt=prompt, params=params, api_key=KEY
            )
            out.append((label, request))
    return out


def listing_requests(name: str) -> list[tuple[str, HttpRequest]]:
    from kznllm_py import models

    try:
        first = models.models_request(name, base_for(PROVIDERS[name]), KEY)
    except Exception:
        return []  # lists no models
    return [
        ("models", first),
        ("models page 2", models.models_request(name, base_for(PROVIDERS[name]) + "/", KEY, "p 2")),
        ("models no key", models.models_request(name, base_for(PROVIDERS[name]), None)),
    ]


def wire(name: str) -> str:
    rows = requests_of(name) + builtin_requests(name) + listing_requests(name)
    text = "\n".join(shown(label, request) for label, request in rows)
    for label, got in switch_requests(name):
        text += "\n" + (f"=== {label} ===\n{got}\n" if isinstance(got, str) else shown(label, got))
    return text


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_sends_exactly_the_committed_requests(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = wire(name)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run with KZN_UPDATE_GOLDEN=1, review it"
    assert text == path.read_text(encoding="utf-8")
