"""The diagnostics on and near the selection (Neovim's `vim.diagnostic`, from every
source: language servers, linters), so that "fix this" knows what is wrong. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section

MAX_ENTRIES = 40
MAX_MESSAGE = 600  # characters of one message
SEVERITIES = ("ERROR", "WARN", "INFO", "HINT")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    line: int  # 1-based
    col: int  # 1-based, in bytes as Neovim counts
    severity: str  # one of SEVERITIES
    message: str
    source: str = ""
    code: str = ""


def _one(raw: Mapping[str, Any]) -> Diagnostic | None:
    message = options.text(raw, "message").strip()
    line = options.whole(raw, "line")
    if not message or line < 1:
        return None
    severity = options.text(raw, "severity").upper()
    code = raw.get("code")
    return Diagnostic(
        line=line,
        col=max(1, options.whole(raw, "col", 1)),
        severity=severity if severity in SEVERITIES else "INFO",
        message=message[:MAX_MESSAGE],
        source=options.text(raw, "source")[:80],
        code=str(code)[:80] if isinstance(code, str | int) and not isinstance(code, bool) else "",
    )


def parse(raw: object) -> tuple[Diagnostic, ...]:
    """The editor's list of diagnostics, at most MAX_ENTRIES, malformed entries dropped."""
    if not isinstance(raw, list):
        return ()
    out = (_one(r) for r in raw[: MAX_ENTRIES * 2] if isinstance(r, Mapping))
    return tuple(d for d in out if d is not None)[:MAX_ENTRIES]


def line_of(d: Diagnostic) -> str:
    """One diagnostic as the model reads it: `12:5 ERROR (pyflakes F821) undefined name
    'x'`; a message of several lines keeps them, indented."""
    tag = " ".join(t for t in (d.source, d.code) if t)
    head = f"{d.line}:{d.col} {d.severity}" + (f" ({printable(tag)})" if tag else "")
    message = "\n  ".join(printable(part) for part in d.message.splitlines())
    return f"{head} {message}"


def section(found: tuple[Diagnostic, ...], path: str = "") -> Section | None:
    """The diagnostics section: the most severe first, then by line."""
    if not found:
        return None
    ordered = sorted(found, key=lambda d: (SEVERITIES.index(d.severity), d.line, d.col))
    where = f" in {printable(path)}" if path else ""
    title = (
        f"diagnostics on and near the selection{where} (line:column severity (source code) message)"
    )
    return Section("diagnostics", title, "\n".join(line_of(d) for d in ordered))
