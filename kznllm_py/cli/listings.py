"""`kznllm presets` and `kznllm models`: what there is to choose from, the presets (or
the check of a user's list of them) and the models a preset's server offers, as aligned
rows or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kznllm_py import secrets
from kznllm_py.cli import job_args, terminal
from kznllm_py.cli.terminal import err
from kznllm_py.errors import KznError
from kznllm_py.prompt.presets import check_presets, pick
from kznllm_py.stream.client import Timeouts, new_client


def _server(base_url: str) -> dict[str, Any] | None:
    """Where a preset's server is: scheme, host and port (never a userinfo password)."""
    parts = urlsplit(base_url or "")
    if not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return {"scheme": parts.scheme, "host": parts.hostname, "port": port}


def _read_user_presets(source: str) -> list[Any]:
    """A JSON list of user presets from a file or stdin ('-'); KznError when unreadable."""
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text()
        user = json.loads(raw or "[]")
    except (OSError, ValueError) as exc:
        raise KznError(f"cannot read presets: {exc}") from exc
    if user is None:
        return []
    if isinstance(user, dict):  # an empty Lua table encodes as {}
        user = list(user.values())
    if not isinstance(user, list):
        raise KznError(f"cannot read presets: want a JSON list, not {type(user).__name__}")
    return user


def presets(args: argparse.Namespace) -> int:
    try:
        user = _read_user_presets(args.check or args.user) if args.check or args.user else []
    except KznError as exc:
        err(str(exc))
        return 2
    if args.check:
        problems = check_presets(user)  # the presets file's too
        if args.json:
            print(json.dumps({"problems": problems}))
        for problem in [] if args.json else problems:
            err(f"{problem}")
        return 1 if problems else 0
    presets = job_args.merged(user)
    default = pick(presets, None)
    rows = [
        {
            "id": p.id,
            "description": p.description,
            "provider": p.provider,
            "model": p.model,
            "server": _server(p.base_url),
            "key": secrets.describe(p.api_key),
            "key_present": secrets.present(p.api_key),
            "default": p.id == default.id,
        }
        for p in presets.values()
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    words: dict[object, str] = {True: "yes", False: "no", None: "not needed"}
    table: list[tuple[str, ...]] = [("", "id", "provider", "model", "key")]
    for r in rows:
        present = words[r["key_present"]]
        if r["key_present"] is not None:
            present += f" ({r['key']})"
        mark = "*" if r["default"] else " "
        table.append((mark, str(r["id"]), str(r["provider"]), str(r["model"]), present))
    for line in aligned(table):
        print(line)
    return 0


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines whose columns line up, each as wide as its widest cell (in display
    cells: a wide character counts twice), two spaces between; no trailing spaces."""
    import unicodedata

    def width(cell: str) -> int:
        wide = sum(unicodedata.east_asian_width(ch) in "WF" for ch in cell)
        return len(cell) + wide - sum(bool(unicodedata.combining(ch)) for ch in cell)

    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c + " " * (w - width(c)) for c, w in zip(r[:-1], widths, strict=False)]
        out.append(" ".join([*cells[:1], "  ".join([*cells[1:], r[-1]])]).rstrip())
    return out


async def models(args: argparse.Namespace) -> int:
    from kznllm_py.models import preset_models

    try:
        preset = job_args.preset_from_args(args, need_model=False)
        timeouts = Timeouts(connect=args.connect_timeout, stall=args.stall_timeout)
        async with new_client() as client:
            names = await preset_models(client, preset, timeouts)
    except KznError as exc:
        err(str(exc))
        return 1
    if args.json:  # the names are the server's: escaped for the terminal
        print(terminal.json_text(json.dumps(names, ensure_ascii=False)))
    else:
        for name in names:
            print(terminal.line(name))
    return 0
