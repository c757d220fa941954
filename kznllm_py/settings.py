"""The host's settings: what setup() configures, validated once when the editor sends
it (the `configure` call, at the host's start and at each setup() while it runs), not
at every fill. Pure: no Neovim, no I/O but the presets file.

An invalid option or preset is one problem (field and reason) and is left out: the
option keeps its default, every valid preset keeps working. Settings are immutable: a
fill takes the object in force when it starts and keeps it to its end, whatever a
later setup() sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kznllm_py import options
from kznllm_py.errors import ConfigError, printable
from kznllm_py.history.store import DEFAULT_MAX_ENTRIES
from kznllm_py.prompt import context, sections
from kznllm_py.prompt.presets import PRESETS_FILE, Preset, builtin_presets, merge_presets, pick
from kznllm_py.secrets import redact

# the HTTP client and the generation are ~250 ms of imports a fill needs, not this: the
# numbers are checked here and made into their types (Timeouts, RetryPolicy) by a fill
TIMEOUTS = ("connect", "stall", "total", "reused", "first_token")
NO_LIMIT = ("total", "first_token")  # these may be false: no limit


def retention(value: Any) -> tuple[bool, int | None, float | None]:
    """setup()'s `history`: true / false, or { enabled, max_entries, max_age_days }.
    Returns (enabled, max entries, max age in days)."""
    if value is None or isinstance(value, bool):
        return value is not False, DEFAULT_MAX_ENTRIES, None
    if not isinstance(value, Mapping):
        raise ConfigError("history must be true, false or a table { enabled, max_entries, ... }")
    enabled = value.get("enabled", True) is not False
    max_entries = value.get("max_entries", DEFAULT_MAX_ENTRIES)
    max_age = value.get("max_age_days")
    if max_entries is not None and (
        isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1
    ):
        raise ConfigError("history.max_entries must be a whole number, 1 or more")
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0
    ):
        raise ConfigError("history.max_age_days must be a positive number of days")
    return enabled, max_entries, None if max_age is None else float(max_age)


@dataclass(frozen=True)
class Settings:
    presets: Mapping[str, Preset] = field(
        default_factory=lambda: {p.id: p for p in builtin_presets()}
    )
    # seconds, only those setup() gave (total, first_token: None for no limit); the
    # rest: defaults
    timeouts: Mapping[str, float | None] = field(default_factory=dict)
    retries: int | None = None  # None: the default
    max_response_bytes: int | None = None  # None: the default
    shape: bool = True  # answers shaped for their file (kznllm_py/fill/shape.py)
    history: tuple[bool, int | None, float | None] = retention(None)
    kzn_allow: tuple[str, ...] = ()
    # what the model is shown beside the selection (kznllm_py/prompt/sections.py)
    context: sections.ContextOptions = field(default_factory=sections.ContextOptions)
    # {preset id: model} picked from its server's list (:KznPreset!)
    models: Mapping[str, str] = field(default_factory=dict)
    data_dir: str = ""
    config_dir: str = ""
    state_dir: str = ""  # stdpath('state'): Neovim's trust database (kznllm_py/prompt/trust.py)
    log_dir: str = ""
    log_level: str = "info"
    # one line (where, field, reason) per option or preset left out
    problems: tuple[str, ...] = ()
    # which configure call these came from: the editor ignores a reply to an older one
    generation: int = 0

    def shown_problems(self) -> list[str]:
        """The problems as the editor shows them: redacted, control characters escaped."""
        return [printable(redact(line)) for line in self.problems]

    @property
    def history_enabled(self) -> bool:
        return self.history[0] and bool(self.data_dir)

    def preset(self, preset_id: str | None) -> Preset:
        """The preset `preset_id` (None: the default), with the model picked for it."""
        p = pick(self.presets, preset_id)
        model = self.models.get(p.id)
        if not model or model == p.model:
            return p
        # a preset's own price is for its own model: another model's is unknown
        return replace(p, model=model, price=None)


def timeouts(value: Any) -> dict[str, float | None]:
    """setup()'s `timeouts`: { connect, stall, total (or false), reused, first_token (or
    false) } in seconds."""
    if value is None or value == []:  # an empty Lua table may come as []
        return {}
    given = value if isinstance(value, Mapping) else None
    if given is None or not all(
        k in TIMEOUTS and ((options.is_number(v) and v > 0) or (k in NO_LIMIT and v is False))
        for k, v in given.items()
    ):
        raise ConfigError(
            "timeouts: connect, stall, total, reused and first_token must be positive numbers "
            "of seconds (total, first_token: or false)"
        )
    return {k: None if v is False else float(v) for k, v in given.items()}


def _models(value: Any) -> dict[str, str]:
    """The models picked per preset (an empty Lua table may come as [])."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str) and v}


def whole(name: str, unit: str) -> Callable[[Any], int | None]:
    """The check of a whole-number option of `unit`s, 1 or more (None: the default)."""

    def check(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number of {unit}, 1 or more, not {value!r}")
        return value

    return check


def switch(name: str) -> Callable[[Any], bool]:
    """The check of an on/off option (absent: on)."""

    def check(value: Any) -> bool:
        if value is None:
            return True
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        return value

    return check


def from_config(p: Mapping[str, Any]) -> Settings:
    """The settings of a `configure` call: setup()'s options and the editor's paths.
    Never raises for a bad option: it goes to `problems` and its default stays."""
    problems: list[str] = []
    base = Settings()

    def option(name: str, check: Callable[[Any], Any], default: Any) -> Any:
        try:
            return check(p.get(name))
        except ConfigError as exc:
            problems.append(f"setup({{ {name} }}): {exc}; the default is used")
            return default

    config_dir = options.text(p, "config_dir")
    merged = merge_presets(
        p.get("presets") or [], file=Path(config_dir) / PRESETS_FILE if config_dir else None
    )
    problems += merged.problems
    return Settings(
        presets=merged.presets,
        timeouts=option("timeouts", timeouts, {}),
        retries=option("retries", whole("retries", "tries"), None),
        max_response_bytes=option("max_response_bytes", whole("max_response_bytes", "bytes"), None),
        history=option("history", retention, base.history),
        shape=option("shape", switch("shape"), True),
        kzn_allow=tuple(option("kzn_allow", context.allow_list, [])),
        context=option("context", sections.context_options, sections.ContextOptions()),
        models=_models(p.get("models")),
        data_dir=options.text(p, "data_dir"),
        config_dir=config_dir,
        state_dir=options.text(p, "state_dir"),
        log_dir=options.text(p, "log_dir"),
        log_level=options.text(p, "log_level") or "info",
        problems=tuple(problems),
        generation=p["generation"] if isinstance(p.get("generation"), int) else 0,
    )
