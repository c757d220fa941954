"""What a fill cost, in US dollars: prices per million tokens as data (the dated
built-in table kznllm_py/prices.toml for the built-in presets' models, or a preset's own
`price = { input, cached_input, output }`), and the cost of a fill's usage at one of
them. Pure. No price known: no cost (tokens only), never a guess."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PRICES_FILE = Path(__file__).with_name("prices.toml")
FIELDS = ("input", "cached_input", "output")
PER = 1_000_000  # prices are per million tokens


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    cached_input: float
    output: float

    def to_dict(self) -> dict[str, float]:
        return {"input": self.input, "cached_input": self.cached_input, "output": self.output}


def check_price(value: Any) -> str | None:
    """What is wrong with a preset's `price` (None: nothing): a table of exactly
    input, cached_input and output, each a number of dollars, 0 or more."""
    if not isinstance(value, Mapping):
        return "want a table { input = ..., cached_input = ..., output = ... }"
    missing = [k for k in FIELDS if k not in value]
    unknown = sorted(set(value) - set(FIELDS))
    if missing or unknown:
        why = [f"missing {', '.join(missing)}"] if missing else []
        why += [f"unknown {', '.join(unknown)}"] if unknown else []
        return f"{'; '.join(why)} (want input, cached_input, output: US$ per million tokens)"
    for key in FIELDS:
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v != v:
            return f"{key}: want a number of US dollars per million tokens, 0 or more, not {v!r}"
    return None


def as_price(value: Mapping[str, Any]) -> Price:
    return Price(*(float(value[k]) for k in FIELDS))


@cache
def builtin_table() -> tuple[str, dict[tuple[str, str], Price]]:
    """(the table's date, {(host, model): price})."""
    data = tomllib.loads(PRICES_FILE.read_text(encoding="utf-8"))
    table = {(str(p["host"]), str(p["model"])): as_price(p) for p in data["prices"]}
    return str(data["date"]), table


def price_for(model: str, base_url: str, own: Mapping[str, Any] | None) -> Price | None:
    """A preset's price: its own `price`, else the built-in table's for its model at
    its host, else None (unknown)."""
    if own is not None:
        return as_price(own)
    host = (urlparse(base_url).hostname or "").lower()
    return builtin_table()[1].get((host, model))


def cost(usage: Mapping[str, int] | None, price: Price | None) -> float | None:
    """The cost of `usage` at `price` in US dollars: cached input tokens at
    cached_input, the rest of the input at input, every output token (reasoning ones
    included) at output. None when the price or a count is unknown."""
    if price is None or not usage:
        return None
    inp, out = usage.get("input_tokens"), usage.get("output_tokens")
    if inp is None or out is None:
        return None
    cached = min(usage.get("cached_input_tokens") or 0, inp)
    return ((inp - cached) * price.input + cached * price.cached_input + out * price.output) / PER


def dollars(amount: float) -> str:
    """A fill's cost as shown: "$0.0042" under a dollar (fills are cheap), "$1.23" above."""
    return f"${amount:.4f}" if amount < 1 else f"${amount:.2f}"


def tokens_short(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def figures(usage: Mapping[str, int] | None, cost_usd: float | None) -> str:
    """Tokens and cost in a few characters, for a statusline: "1200→340 $0.0042"
    (tokens only when no price is known; "" without usage)."""
    if not usage or usage.get("output_tokens") is None:
        return ""
    inp = usage.get("input_tokens")
    text = f"{'?' if inp is None else tokens_short(inp)}→{tokens_short(usage['output_tokens'])}"
    return text + (f" {dollars(cost_usd)}" if cost_usd is not None else "")
