"""The environment of a `kznllm` subprocess in the tests: no proxy (the servers are on
loopback), none of the user's keys or base URLs that a test does not set itself."""

from __future__ import annotations

import os

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """os.environ without the proxy variables and the ones named in `drop`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and k not in drop}
    env.update(extra)
    return env
