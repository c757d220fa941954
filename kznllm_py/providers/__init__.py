"""One module per wire format, each ending with `PROVIDER = Provider(...)` (the contract,
kznllm_py/providers/base.py): what it supports as data (its params, how its server
lists its models), and pure functions that build the request, read an error body and
parse the stream (no I/O: tested with plain data, shared by the CLI and the plugin).
Adding a wire format is one module, its test file (tests/providers/test_providers_<name>.py, with
`FUZZ_CASES` for the fuzz properties), one line here, and its golden requests
(tests/golden/wire/<name>.txt, written by KZN_UPDATE_GOLDEN=1 for review); nothing
else names it.
"""

from __future__ import annotations

from kznllm_py.errors import ConfigError
from kznllm_py.providers import (
    anthropic,
    azure,
    completions,
    gemini,
    mistral,
    ollama,
    openai,
    responses,
)
from kznllm_py.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    "openai": openai.PROVIDER,
    "anthropic": anthropic.PROVIDER,
    "gemini": gemini.PROVIDER,
    "ollama": ollama.PROVIDER,
    "completions": completions.PROVIDER,
    "azure": azure.PROVIDER,
    "mistral": mistral.PROVIDER,
    "responses": responses.PROVIDER,
}


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"unknown provider {name!r} (known: {known})") from None
