"""One reasoning switch for every provider: a preset's `reasoning = 'off' | 'low' |
'medium' | 'high'` (`kznllm fill -o reasoning high`), turned into each API's own
spelling by rules that are data, declared by each provider module
(`Provider.reasoning_rules`). Pure.

A rule names the models it is for (a regular expression on the model name, without a
vendor prefix such as "openai/"; optionally one on the base URL too: OpenRouter speaks
Chat Completions but spells reasoning its own way), and for each level the request
fields it means. The first rule that matches the preset decides; a level that rule has
no fields for is refused with the rule's reason, at setup (presets.validate) and again
when a request is built (a model picked later with :KznPreset! may not take it).

The fields are laid under the preset's own params (deep merge): a raw param adds to
them or changes a detail (`params.reasoning = { summary = 'detailed' }`), but one that
says something else than the switch about the same field (`params.reasoning_effort =
'low'` with `reasoning = 'high'`) is refused, so a preset never sends what its switch
does not say. A rule may also take params out that the API refuses together with
reasoning (Anthropic's thinking refuses temperature, top_k, top_p), and grow an
output limit by the thinking budget (Anthropic counts the budget within max_tokens).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LEVELS = ("off", "low", "medium", "high")


@dataclass(frozen=True)
class Rule:
    """How a provider spells the switch for the models `models` matches (re.search on
    the model name without a vendor prefix; "" is every model) at a base URL `base_url`
    matches ("" is any). `levels`: level -> the request fields it means; a level left
    out is refused, saying `why`. `soft`: dotted field paths a raw param may change
    (details, not how hard the model thinks). `drop`: params taken out when reasoning is
    on (levels other than 'off'). `grow`: (param, its default) grown by `budget[level]`
    (the thinking budget counted within the output limit)."""

    models: str
    levels: Mapping[str, Mapping[str, Any]]
    why: str = ""
    base_url: str = ""
    soft: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    grow: tuple[str, int] | None = None
    budget: Mapping[str, int] = field(default_factory=dict)

    def matches(self, model: str, base_url: str) -> bool:
        name = model.rsplit("/", 1)[-1]
        return re.search(self.models, name) is not None and (
            not self.base_url or re.search(self.base_url, base_url) is not None
        )


class SwitchError(ValueError):
    """A level the provider (or the model) cannot do; the message is the reason."""


def rule_for(rules: Sequence[Rule], model: str, base_url: str) -> Rule | None:
    return next((r for r in rules if r.matches(model, base_url)), None)


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _merged(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(under)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def apply(
    rules: Sequence[Rule],
    provider: str,
    level: str,
    *,
    model: str,
    base_url: str,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The request params of a preset with `reasoning = level` ('' is no switch: the
    params as they are). Raises SwitchError with the reason a level is refused."""
    if not level:
        return dict(params)
    if level not in LEVELS:
        raise SwitchError(f"want one of {', '.join(repr(x) for x in LEVELS)}, not {level!r}")
    rule = rule_for(rules, model, base_url)
    if rule is None:
        raise SwitchError(
            f"{provider} model {model!r} has no reasoning switch (its own params still pass)"
        )
    fields = rule.levels.get(level)
    if fields is None:
        raise SwitchError(f"{level!r} is not possible with {provider} model {model!r}: {rule.why}")
    mine = _leaves(fields)
    for path, value in _leaves(params).items():
        if path in mine and mine[path] != value and path not in rule.soft:
            raise SwitchError(
                f"params.{path} = {value!r} says otherwise than reasoning = {level!r} "
                f"({path} = {mine[path]!r}); give one of them"
            )
    out = _merged(fields, params)
    if level != "off":
        for name in rule.drop:
            out.pop(name, None)
        if rule.grow is not None and level in rule.budget:
            name, default = rule.grow
            limit = out.get(name, default)
            out[name] = (limit if isinstance(limit, int) else default) + rule.budget[level]
    return out
