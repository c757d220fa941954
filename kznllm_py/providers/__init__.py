"""One module per wire format. Each offers `build_request(...)` and a stream parser; both
are pure (no I/O), so they are tested with plain data and shared by the CLI and the plugin.
"""

from __future__ import annotations

from kznllm_py.errors import ConfigError
from kznllm_py.providers import anthropic, azure, completions, gemini, ollama, openai
from kznllm_py.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    "openai": openai.PROVIDER,
    "anthropic": anthropic.PROVIDER,
    "gemini": gemini.PROVIDER,
    "ollama": ollama.PROVIDER,
    "completions": completions.PROVIDER,
    "azure": azure.PROVIDER,
}


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider {name!r} (known: {known})") from None
