"""The models a server offers, for `kznllm models` and the preset picker: one GET per
provider family, built and read as pure data (like the stream formats), sent through
client.fetch_json (the one place network errors are mapped).

  openai, completions   GET {base_url}/models            {"data": [{"id"}]}
  ollama                GET {base_url}/api/tags          {"models": [{"name"}]}
  anthropic             GET {base_url}/v1/models         {"data": [{"id"}], "has_more", "last_id"}
  gemini                GET {base_url}/models            {"models": [{"name": "models/..."}],
                                                          "nextPageToken"}
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from kznllm_py import secrets
from kznllm_py.client import Timeouts, fetch_json
from kznllm_py.errors import ConfigError, StreamError
from kznllm_py.presets import Preset
from kznllm_py.providers import anthropic, get_provider
from kznllm_py.providers.base import HttpRequest

MAX_PAGES = 20  # a server that pages forever is not followed forever
LISTED = ("openai", "completions", "ollama", "anthropic", "gemini")


# provider: (the header that carries the key, what goes before the key in it)
_KEY_HEADERS = {
    "openai": ("Authorization", "Bearer "),
    "completions": ("Authorization", "Bearer "),
    "anthropic": ("x-api-key", ""),
    "gemini": ("x-goog-api-key", ""),
}
# provider: (the page size parameter, the parameter naming where the next page starts)
_PAGING = {"anthropic": ("limit", "after_id"), "gemini": ("pageSize", "pageToken")}


def models_request(
    provider: str, base_url: str, api_key: str | None, page: str | None = None
) -> HttpRequest:
    """The GET that lists `provider`'s models at `base_url` (`page`: the token or the
    last id a previous page gave)."""
    base = base_url.rstrip("/")
    if provider in ("openai", "completions", "gemini"):
        url = base + "/models"
    elif provider == "ollama":
        url = base.removesuffix("/v1") + "/api/tags"
    elif provider == "anthropic":
        url = anthropic.messages_url(base).removesuffix("/messages") + "/models"
    else:
        raise ConfigError(
            f"listing models is not supported for provider {provider!r} "
            f"(supported: {', '.join(LISTED)})"
        )
    headers = {"Accept": "application/json"}
    if provider == "anthropic":
        headers["anthropic-version"] = anthropic.API_VERSION
    secret: frozenset[str] = frozenset()
    if api_key and provider in _KEY_HEADERS:
        name, prefix = _KEY_HEADERS[provider]
        headers[name] = prefix + api_key
        secret = frozenset({name.lower()})
    if provider in _PAGING:
        size, start = _PAGING[provider]
        query = {size: "1000", **({start: page} if page else {})}
        url += "?" + urlencode(query)
    return HttpRequest("GET", url, headers, {}, secret)


def parse_models(provider: str, body: Any) -> tuple[list[str], str | None]:
    """(model ids, the next page's token or None) from a models listing."""
    try:
        if provider == "ollama":
            return [str(m["name"]) for m in body["models"]], None
        if provider == "gemini":
            names = []
            for m in body.get("models") or []:
                methods = m.get("supportedGenerationMethods")
                if methods is None or "generateContent" in methods:
                    names.append(str(m["name"]).removeprefix("models/"))
            return names, body.get("nextPageToken") or None
        ids = [str(m["id"]) for m in body["data"]]
        if provider == "anthropic" and body.get("has_more") and body.get("last_id"):
            return ids, str(body["last_id"])
        return ids, None
    except (KeyError, TypeError, AttributeError):
        raise StreamError(f"{provider}: unexpected models list: {str(body)[:200]!r}") from None


async def list_models(
    client: httpx.AsyncClient,
    provider: str,
    base_url: str,
    api_key: str | None,
    timeouts: Timeouts,
) -> list[str]:
    """Every model `provider`'s server at `base_url` lists, all pages, sorted."""
    spec = get_provider(provider)
    names: list[str] = []
    page: str | None = None
    for _ in range(MAX_PAGES):
        request = models_request(provider, base_url, api_key, page)
        got, page = parse_models(provider, await fetch_json(client, spec, request, timeouts))
        names.extend(got)
        if page is None:
            break
    return sorted(set(names))


async def preset_models(
    client: httpx.AsyncClient, preset: Preset, timeouts: Timeouts | None = None
) -> list[str]:
    """The models `preset`'s server lists (the offline demo: its one model)."""
    if preset.demo:
        return [preset.model]
    provider = get_provider(preset.provider)
    base_url = preset.base_url or provider.default_base_url
    key = await secrets.resolve(preset.api_key, preset_id=preset.id)
    return await list_models(client, preset.provider, base_url, key, timeouts or Timeouts())
