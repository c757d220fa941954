"""API key resolution and redaction.

A preset's `api_key` is an environment variable name, `cmd:<shell command>` (run once,
10 s timeout, output trimmed, cached in memory, never logged), or false/None for servers
that need no key. Every key resolved is remembered so that `redact()` can scrub it from
any text shown to the user (a provider's error message may echo it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping

from kznllm_py.errors import ConfigError

CMD_PREFIX = "cmd:"
CMD_TIMEOUT_S = 10.0
REDACTED = "<redacted>"

_known: set[str] = set()
_cmd_cache: dict[str, str] = {}


def remember(secret: str) -> None:
    if secret and len(secret) >= 4:
        _known.add(secret)


def redact(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def describe(spec: str | bool | None) -> str:
    """How a key spec is shown to the user (never the key itself)."""
    if not spec:
        return "no key"
    spec = str(spec)
    if spec.startswith(CMD_PREFIX):
        return "a key command (cmd:)"
    return f"${spec}"


def present(spec: str | bool | None, env: Mapping[str, str] | None = None) -> bool | None:
    """Whether a key is available, without running anything: None when the preset needs
    no key; a `cmd:` key counts as present (it is only run when used)."""
    if not spec:
        return None
    spec = str(spec)
    if spec.startswith(CMD_PREFIX):
        return True
    return bool((os.environ if env is None else env).get(spec, "").strip())


async def resolve(
    spec: str | bool | None, *, preset_id: str = "", env: Mapping[str, str] | None = None
) -> str | None:
    if spec is None or spec is False or spec == "":
        return None
    if spec is True:
        raise ConfigError(f"preset {preset_id!r}: api_key must be an env var name, not true")
    spec = str(spec)
    if spec.startswith(CMD_PREFIX):
        key = await _run_key_command(spec[len(CMD_PREFIX) :].strip(), preset_id)
    else:
        key = (os.environ if env is None else env).get(spec, "").strip()
        if not key:
            where = f" for preset {preset_id!r}" if preset_id else ""
            raise ConfigError(
                f"API key missing{where}: set the environment variable {spec} "
                f"(or choose another preset)"
            )
    remember(key)
    return key


async def _run_key_command(command: str, preset_id: str) -> str:
    if command in _cmd_cache:
        return _cmd_cache[command]
    where = f" of preset {preset_id!r}" if preset_id else ""
    if not command:
        raise ConfigError(f"the api_key command{where} is empty")
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: a timeout kills it all
        )
    except OSError as exc:
        raise ConfigError(f"the api_key command{where} could not start: {exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CMD_TIMEOUT_S)
    except TimeoutError:
        # the shell's children hold the pipes open: kill the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise ConfigError(
            f"the api_key command{where} did not finish within {CMD_TIMEOUT_S:g} s"
        ) from None
    key = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not key:
        # stderr may be shown: it is the command's own complaint, never its stdout (the key)
        why = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(
            f"the api_key command{where} failed (exit {proc.returncode}): {why[0][:200]}"
        )
    _cmd_cache[command] = key
    return key
