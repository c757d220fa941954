"""The one schema of option checks: how a field of a table the editor sent (a Lua
table, made a dict by msgpack) is read as a typed value. Lua tables are loose (an empty
one may come as [], a number as a float, anything as anything), so each reader takes
what has the field's type and falls back to its default otherwise: settings, a fill's
request and history's calls read their fields through these. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(p: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string field; anything else (absent, nil, a number, a table) is `default`."""
    v = p.get(key)
    return v if isinstance(v, str) else default


def whole(p: Mapping[str, Any], key: str, default: int = 0) -> int:
    """A whole-number field (a float with no fraction counts; a boolean does not)."""
    v = p.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return default
    if isinstance(v, float) and not v.is_integer():
        return default
    return int(v)


def flag(p: Mapping[str, Any], key: str) -> bool:
    """A switch: Lua's truthiness (nil and false are off; 0 and "" are on in Lua, but
    the editor sends only booleans here, so Python's truthiness is kept as it was)."""
    return bool(p.get(key))


def is_number(v: Any) -> bool:
    """A real number (not a boolean)."""
    return isinstance(v, int | float) and not isinstance(v, bool)
