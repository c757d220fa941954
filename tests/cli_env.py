"""The environment of a `kznllm` subprocess in the tests: no proxy (the servers are on
loopback), none of the user's keys or base URLs that a test does not set itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """os.environ without the proxy variables and the ones named in `drop`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and k not in drop}
    env.update(extra)
    return env


def kznllm(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    module: str = "kznllm_py.cli.main",
    **run: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run the `kznllm` command (`python -m module args`) in `cwd` as a user would: its
    output captured, its stdin closed unless `input=` is given, within `timeout`; `run`
    goes to subprocess.run (text=, encoding=, input=)."""
    if run.get("input") is None:
        run.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        **run,
    )
