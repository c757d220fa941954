"""The models a server offers, for `kznllm models` and the preset picker (`:KznPreset!`).
Each provider module declares how its server lists them (`Provider.models`, a
`ModelListing`: the GET, the key, the paging, the reader of the body), as pure data like
its stream format; this module follows the pages, through client.fetch_json (the one
place network errors are mapped). A provider without a listing says so."""

from __future__ import annotations

import httpx

from kznllm_py import secrets
from kznllm_py.errors import ConfigError, ProviderError, StreamError
from kznllm_py.prompt.presets import Preset
from kznllm_py.providers import PROVIDERS, get_provider
from kznllm_py.providers.base import HttpRequest, ModelListing
from kznllm_py.stream import demo_server
from kznllm_py.stream.client import Timeouts, fetch_json

MAX_PAGES = 20  # a server that pages forever is not followed forever
# a server's list is hostile: a name that forges lines or escapes in a picker or a
# terminal, or fills screens, is no model anyone picks; nor is the 5,001st
MAX_NAME = 256
MAX_NAMES = 5000


def _offered(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME and name.isprintable()


def listing(provider: str) -> ModelListing:
    """How `provider`'s server lists its models; a ConfigError when it does not."""
    declared = get_provider(provider).models
    if declared is None:
        listed = ", ".join(name for name, p in PROVIDERS.items() if p.models is not None)
        raise ConfigError(
            f"listing models is not supported for provider {provider!r} (supported: {listed})"
        )
    return declared


def models_request(
    provider: str, base_url: str, api_key: str | None, page: str | None = None
) -> HttpRequest:
    """The GET that lists `provider`'s models at `base_url` (`page`: the token or the
    last id a previous page gave)."""
    return listing(provider).request(base_url, api_key, page)


async def list_models(
    client: httpx.AsyncClient,
    provider: str,
    base_url: str,
    api_key: str | None,
    timeouts: Timeouts,
) -> list[str]:
    """Every model `provider`'s server at `base_url` lists, all pages, sorted."""
    spec = get_provider(provider)
    how = listing(provider)
    names: list[str] = []
    page: str | None = None
    for _ in range(MAX_PAGES):
        body = await fetch_json(client, spec, how.request(base_url, api_key, page), timeouts)
        try:
            got, page = how.parse(body)
        except (KeyError, TypeError, AttributeError):
            shown = secrets.clip(str(body), 200)  # redacted before the cut
            raise StreamError(f"{provider}: unexpected models list: {shown!r}") from None
        # a name may echo the key
        names.extend(secrets.redact(name) for name in got if _offered(name))
        if page is None or len(names) >= MAX_NAMES:
            break
    return sorted(set(names))[:MAX_NAMES]


async def preset_models(
    client: httpx.AsyncClient, preset: Preset, timeouts: Timeouts | None = None
) -> list[str]:
    """The models `preset`'s server lists (the offline demo's too, from its server)."""
    if preset.demo:
        base_url = (await demo_server.ensure_running()).base_url
        return await list_models(client, preset.provider, base_url, None, timeouts or Timeouts())
    provider = get_provider(preset.provider)
    base_url = preset.base_url or provider.default_base_url
    key = await secrets.resolve(preset.api_key, preset_id=preset.id)
    try:
        return await list_models(client, preset.provider, base_url, key, timeouts or Timeouts())
    except ProviderError as exc:
        told = secrets.with_refused_hint(exc, preset.api_key, preset.id, base_url)
        if told is exc:
            raise
        raise told from None
