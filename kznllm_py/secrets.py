"""API key resolution and redaction.

A preset's `api_key` is an environment variable name, `cmd:<shell command>` (run once,
10 s timeout; the key is the first line of its output, stripped, as `pass` prints it:
the other lines are never used or kept; cached in memory, never logged), or false/None
for servers that need no key. Every key resolved is remembered, whole and line by line,
so that `redact()` can scrub it from any text shown to the user (a provider's error
message may echo it back); so is the password of a base URL's userinfo. Text is
redacted before it is cut (`clip`): a key crossing the cut never leaks in part.

A server cannot split a key past redaction: a secret of `SPLIT_MIN` characters or more
is also found with whitespace or invisible characters (zero-width spaces, soft hyphens)
between its characters, which is what an HTML error page's reduction to text makes of a
key split by a tag (`sk-ab<b>cd</b>`), a line break or an entity. Text a cap already cut
(an error body read up to its limit) loses a trailing beginning of a secret too
(`redact_cut`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from kznllm_py.errors import ConfigError, ProviderError

CMD_PREFIX = "cmd:"
CMD_TIMEOUT_S = 10.0
REDACTED = "<redacted>"

_known: set[str] = set()
_cmd_cache: dict[str, str] = {}


_ordered: list[str] = []  # _known, longest first
# what may sit between a secret's characters and still show it to a reader: whitespace
# (an HTML page's tags and line breaks become spaces) and invisible characters
GAPS = "\\s\u00ad\u200b-\u200f\u2060\ufeff"
_GAP = re.compile(f"[{GAPS}]")
SPLIT_MIN = 8  # shorter secrets are matched whole only (too many false matches)
_split: list[re.Pattern[str]] = []  # the secrets of SPLIT_MIN or more, gaps allowed


def remember(secret: str) -> None:
    """Scrub `secret` from every text from now on: the whole of it and each of its
    lines (a multi-line secret echoed back one line at a time)."""
    if not secret:
        return
    added = False
    for part in (secret, *(line.strip() for line in secret.splitlines())):
        if len(part) >= 4 and part not in _known:
            _known.add(part)
            added = True
    if added:
        _ordered[:] = sorted(_known, key=len, reverse=True)
        gap = f"[{GAPS}]*"
        _split[:] = [
            re.compile(gap.join(re.escape(c) for c in s)) for s in _ordered if len(s) >= SPLIT_MIN
        ]


def redact(text: str) -> str:
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _split:
        text = pattern.sub(REDACTED, text)
    return text


def redact_cut(text: str) -> str:
    """`text` that a limit cut (the head of a body read up to its cap) redacted, and
    also without a beginning of a secret at its end (gaps allowed, 4 characters or
    more): the rest of that secret was past the cut, where `redact` cannot see it."""
    text = redact(text)
    start = _secret_start(text, shortest=4)
    return text if start is None else text[:start] + REDACTED


def _secret_start(text: str, *, shortest: int) -> int | None:
    """Where the longest beginning of a secret (`shortest` characters of it or more,
    gaps allowed) that ends `text` starts, or None."""
    window = text[-4096:]
    offset = len(text) - len(window)
    kept = [i for i, c in enumerate(window) if not _GAP.match(c)]
    chars = "".join(window[i] for i in kept)
    longest = 0
    for secret in _ordered:
        for k in range(min(len(secret) - 1, len(chars)), max(shortest, longest + 1) - 1, -1):
            if chars.endswith(secret[:k]):
                longest = k
                break
    return offset + kept[len(chars) - longest] if longest else None


class SecretStream:
    """Redaction of a text that arrives in pieces (an answer a server streams: one that
    echoes the key back must not show it, whole or split across two pieces): each piece
    comes back redacted, less a trailing beginning of a secret, which waits for the next
    piece (or `finish`) to tell. Nothing is held while no secret is known."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def push(self, text: str) -> str:
        if not _ordered:
            if self._held:
                text, self._held = self._held + text, ""
            return text
        text = redact(self._held + text)
        start = _secret_start(text, shortest=1)
        if start is None:
            self._held = ""
            return text
        self._held = text[start:]
        return text[:start]

    def finish(self) -> str:
        """What is still held: a beginning of a secret that never went on, as it was."""
        text, self._held = self._held, ""
        return redact(text)


def clip(text: str, limit: int) -> str:
    """`text` redacted, then cut to `limit` characters: cutting first could leave part
    of a key that crossed the cut, which `redact()` no longer recognises."""
    return redact(text)[:limit]


def remember_url(url: str) -> None:
    """The password of a URL's userinfo (`https://user:pass@host/`) is a secret too."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            remember(parts.password)
            remember(unquote(parts.password))


def redact_url(url: str) -> str:
    """`url` with its userinfo (user and password) as <redacted>, for showing or
    storing; the request itself goes out with it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    _, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def check_headers(headers: Mapping[str, str], preset_id: str = "") -> None:
    """Refuse, before anything is sent, a header whose name or value holds CR, LF or
    NUL (a multi-line key would smuggle its other lines to the server, or split the
    request). The message names the preset and the header, never the value."""
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n\0"):
            where = f"preset {preset_id!r}: " if preset_id else ""
            raise ConfigError(
                f"{where}the {name} header holds a line break or NUL byte (from the api_key "
                "or the preset's settings); refused, nothing was sent"
            )


def describe(spec: str | bool | None) -> str:
    """How a key spec is shown to the user (never the key itself)."""
    if not spec:
        return "no key"
    spec = str(spec)
    if spec.startswith(CMD_PREFIX):
        return "a key command (cmd:)"
    return f"${spec}"


def refused_hint(
    status: int | None, spec: str | bool | None, preset_id: str, base_url: str = ""
) -> str:
    """The fix, said first, when a server turned the key away (HTTP 401, or 403: a key
    without access to this model or project): which key of which preset to check, the
    user and password of its base_url when it sends those instead, or that the preset
    sends none. "" for any other status."""
    if status not in (401, 403):
        return ""
    preset = f"preset {preset_id!r}" if preset_id else "the preset"
    refused, without = "the key", "the key has"  # what was sent, in the hint's words
    if spec and str(spec).startswith(CMD_PREFIX):
        key = f"the key command (cmd:) of {preset}"
    elif spec:
        key = f"{describe(spec)} ({preset})"
    elif _has_userinfo(base_url):
        key = f"the user and password in the base_url of {preset}"
        refused, without = "them", "they have"
    else:
        return f"{preset} sends no key (its api_key is unset) and the server wants one: "
    if status == 401:
        return f"check {key}: the server refused {refused}: "
    return f"check {key}: {without} no access to this model or project: "


def _has_userinfo(url: str) -> bool:
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def with_refused_hint(
    exc: ProviderError, spec: str | bool | None, preset_id: str, base_url: str = ""
) -> ProviderError:
    """`exc` saying, right after its status, which key of which preset to check when it
    is a key turned away (`refused_hint`); else `exc` itself."""
    fix = refused_hint(exc.status, spec, preset_id, base_url)
    if not fix:
        return exc
    return ProviderError(exc.detail, status=exc.status, provider=exc.provider, fix=fix)


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
                f"set {spec}{where}: its API key is missing (or choose another preset)"
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
    # the key is the first line (pass's convention: more lines may follow, a login,
    # a URL, notes); the rest is dropped here, never used, kept or remembered
    lines = out.decode(errors="replace").splitlines()
    key = lines[0].strip() if lines else ""
    del out, lines
    if proc.returncode != 0 or not key:
        # stderr may be shown: it is the command's own complaint, never its stdout (the key)
        why = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        if proc.returncode == 0:
            why = ["no key on the first line of its output"]
        raise ConfigError(
            f"the api_key command{where} failed (exit {proc.returncode}): {clip(why[0], 200)}"
        )
    _cmd_cache[command] = key
    return key
