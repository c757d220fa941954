"""Presets: provider + model + params + prompt templates. Data, validated once.

User presets add to or override the built-ins by id, in this order: the shared presets
file (`<nvim config dir>/kznllm/presets.toml`, read by the editor and the CLI alike),
then `setup({ presets = ... })`; a partial preset with a known id changes only the fields
it names. An invalid user preset is reported (where, field, reason) and left out; the
others work. Nothing here names a provider: what differs between them (their default
template family, raw prompts, parameters) is declared by each provider module; no code
here branches on a provider's name.
`default_preset()` picks the first built-in whose key is set, else the offline demo.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kznllm_py import pricing
from kznllm_py.errors import ConfigError, close_match, did_you_mean
from kznllm_py.prompt import sections
from kznllm_py.providers import PROVIDERS, get_provider, reasoning
from kznllm_py.stdpath import nvim_stdpath

DEMO_ID = "demo"
DEFAULT_CONTEXT_WINDOW = 32_768
_TEMPLATE_ROLES = ("system", "user")


@dataclass(frozen=True)
class Preset:
    id: str
    provider: str
    model: str
    base_url: str = ""
    api_key: str | bool | None = None
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    # a template family name, or {system=path, user=path} (+ family=name)
    templates: str | Mapping[str, str] = ""
    context_window: int = DEFAULT_CONTEXT_WINDOW
    cache_system: bool = False  # Anthropic prompt caching of the system block
    prefill: str = ""  # start of the assistant's answer (providers that support it)
    # provider "completions": fill in the middle (the family's fim.jinja) instead of a
    # chat-style raw prompt (prompt.jinja)
    fim: bool = False
    # where a normal-mode answer goes, over setup()'s `placement` ('' = that one)
    placement: str = ""
    # the offline demo model: served in-process on loopback, never a silent fallback
    demo: bool = False
    # the reasoning switch: 'off', 'low', 'medium', 'high' ('' = none), in the
    # provider's spelling (providers/reasoning.py)
    reasoning: str = ""
    # US$ per million tokens { input, cached_input, output }; None: the built-in
    # table's for its model at its host, if any (pricing.py)
    price: Mapping[str, Any] | None = None
    # an answer at the cursor of a code buffer shaped for it (kznllm_py/fill/shape.py):
    # None follows setup()'s `shape`
    shape: bool | None = None
    # what the model is shown beside the selection, over setup()'s `context` for fills
    # with this preset (the fields it names; false: nothing): prompt/sections.py
    context: Mapping[str, Any] | bool | None = None

    @property
    def family(self) -> str:
        t = self.templates
        if isinstance(t, str) and t:
            return t
        if isinstance(t, Mapping) and t.get("family"):
            return str(t["family"])
        provider = PROVIDERS.get(self.provider)
        return provider.family if provider is not None else "openai"

    @property
    def explicit_templates(self) -> dict[str, str]:
        t = self.templates
        if isinstance(t, Mapping):
            return {k: str(v) for k, v in t.items() if k in _TEMPLATE_ROLES}
        return {}


BUILTIN_FILE = Path(__file__).with_name("builtin_presets.toml")


@cache
def _builtin_entries() -> tuple[dict[str, Any], ...]:
    return tuple(tomllib.loads(BUILTIN_FILE.read_text(encoding="utf-8"))["presets"])


def builtin_presets() -> tuple[Preset, ...]:
    """The built-ins: the data in builtin_presets.toml (the presets file's format), where
    `FIELD_env = "VAR"` means $VAR, when set, is the FIELD (base URLs come from the
    environment as the SDKs read them: ANTHROPIC_BASE_URL without `/v1`,
    OPENAI_BASE_URL with it, VLLM_BASE_URL, OLLAMA_BASE_URL); a base URL neither given
    nor set is the provider's default."""
    presets = []
    for entry in deepcopy(_builtin_entries()):
        given = {k: v for k, v in entry.items() if not k.endswith("_env")}
        fallback = {"base_url": PROVIDERS[given["provider"]].default_base_url}
        for key, var in entry.items():
            if key.endswith("_env"):
                name = key.removesuffix("_env")
                given[name] = os.environ.get(var) or given.get(name) or fallback[name]
        presets.append(Preset(**given))
    return tuple(presets)


_FIELDS = {f.name for f in fields(Preset)}
PLACEMENTS = ("", "auto", "cursor", "below", "above", "split", "tab")


def preset_from_dict(raw: Mapping[str, Any], *, base: Preset | None = None) -> Preset:
    """Validate one user preset; a `base` (same id) supplies the fields left out."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a preset must be a table, not {type(raw).__name__}")
    where = f"preset {raw.get('id')!r}"
    unknown = set(raw) - _FIELDS
    if unknown:
        hint = did_you_mean(min(unknown), _FIELDS) if len(unknown) == 1 else ""
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}{hint} "
            f"(known: {', '.join(sorted(_FIELDS))})"
        )
    pid = raw.get("id")
    if not isinstance(pid, str) or not pid:
        raise ConfigError("a preset needs an id (a non-empty string)")
    given = {k: v for k, v in raw.items() if v is not None}
    if base is not None:
        preset = replace(base, **{k: v for k, v in given.items() if k != "params"})
        if "params" in given:
            if not isinstance(given["params"], Mapping):
                raise ConfigError(f"{where}: params must be a table")
            preset = replace(preset, params={**base.params, **given["params"]})
    else:
        for need in ("provider", "model"):
            if not isinstance(given.get(need), str) or not given[need]:
                raise ConfigError(f"{where}: missing {need}")
        preset = Preset(**given)
    validate(preset)
    return preset


def validate(p: Preset) -> None:
    where = f"preset {p.id!r}"
    if p.provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        close = close_match(p.provider, PROVIDERS)
        if close:  # the fix first: a one-line message keeps its start
            raise ConfigError(
                f"{where}: did you mean provider {close!r}? "
                f"(unknown provider {p.provider!r}; known: {known})"
            )
        raise ConfigError(f"{where}: unknown provider {p.provider!r} (known: {known})")
    provider = PROVIDERS[p.provider]
    if not isinstance(p.model, str) or not p.model:
        raise ConfigError(f"{where}: missing model")
    if not p.demo:
        url = urlparse(p.base_url or provider.default_base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"{where}: bad base_url {p.base_url!r} (want http(s)://host/...)")
    if not isinstance(p.params, Mapping):
        raise ConfigError(f"{where}: params must be a table")
    bad_params = provider.check_params(p.params)
    if bad_params:
        raise ConfigError(f"{where}: " + "; ".join(f"{k}: {why}" for k, why in bad_params))
    if p.api_key is True or not (p.api_key in (None, False) or isinstance(p.api_key, str)):
        raise ConfigError(f"{where}: api_key must be an env var name, 'cmd:...', or false")
    if isinstance(p.templates, Mapping):
        if "debug" in p.templates:  # the debug view is the plugin's own layout now
            raise ConfigError(
                f"{where}: templates.debug is no longer read: the debug view's layout is "
                "the plugin's own, so that no template can hide or forge what is sent "
                "(remove the key)"
            )
        bad = set(p.templates) - {*_TEMPLATE_ROLES, "family"}
        if bad:
            raise ConfigError(
                f"{where}: templates: unknown key(s) {', '.join(sorted(bad))} "
                f"(want family, {', '.join(_TEMPLATE_ROLES)})"
            )
    elif not isinstance(p.templates, str):
        raise ConfigError(f"{where}: templates must be a family name or a table of paths")
    if (
        isinstance(p.context_window, bool)
        or not isinstance(p.context_window, int)
        or p.context_window <= 0
    ):
        raise ConfigError(f"{where}: context_window must be a positive number of tokens")
    if not isinstance(p.prefill, str):
        raise ConfigError(f"{where}: prefill must be a string")
    if p.context is not None:
        try:
            sections.context_options(p.context)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if p.fim is not False and not (p.fim is True and provider.raw_prompt):
        raw = ", ".join(repr(name) for name, spec in PROVIDERS.items() if spec.raw_prompt)
        raise ConfigError(f"{where}: fim = true needs a raw-prompt provider ({raw})")
    if p.price is not None:
        why = pricing.check_price(p.price)
        if why:
            raise ConfigError(f"{where}: price: {why}")
    if not isinstance(p.reasoning, str):
        raise ConfigError(f"{where}: reasoning must be one of {', '.join(reasoning.LEVELS)}")
    try:
        request_params(p)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if p.shape is not None and not isinstance(p.shape, bool):
        raise ConfigError(f"{where}: shape must be true or false")
    if p.placement not in PLACEMENTS:
        raise ConfigError(
            f"{where}: placement must be one of {', '.join(repr(x) for x in PLACEMENTS[1:])}"
        )


def request_params(p: Preset) -> dict[str, Any]:
    """The params a request of `p` sends: its own, with its reasoning switch in its
    provider's spelling. A level the provider or model cannot do: ConfigError
    ("reasoning: why")."""
    provider = get_provider(p.provider)
    try:
        return reasoning.apply(
            provider.reasoning_rules,
            p.provider,
            p.reasoning,
            model=p.model,
            base_url=p.base_url or provider.default_base_url,
            params=p.params,
        )
    except reasoning.SwitchError as exc:
        raise ConfigError(f"reasoning: {exc}") from None


def preset_price(p: Preset) -> pricing.Price | None:
    """What `p`'s tokens cost: its own `price`, else the built-in table's for its model
    at its host; None: unknown."""
    base_url = p.base_url or get_provider(p.provider).default_base_url
    return pricing.price_for(p.model, base_url, p.price)


@dataclass(frozen=True)
class Merged:
    """The presets by id (built-ins, then the presets file's, then setup()'s), and one
    message (where, field, reason) per user preset that was invalid and left out."""

    presets: dict[str, Preset]
    problems: tuple[str, ...] = ()


def merge_presets(
    user: Iterable[Any] | None, *, file: Path | None = None, env: Mapping[str, str] | None = None
) -> Merged:
    """The built-ins, overridden or extended by id by the entries of `file` (the shared
    presets file; `presets_file(env)` when None; it may be absent) and then by `user`
    (setup()'s presets). An invalid entry is reported and skipped: every valid preset,
    the demo included, stays usable."""
    presets = {p.id: p for p in builtin_presets()}
    problems: list[str] = []
    path = presets_file(env) if file is None else file
    entries, file_problems = read_presets_file(path)
    problems += file_problems
    for source, layer in ((f"{path}: ", entries), ("", user or ())):
        for raw in layer:
            try:
                base = presets.get(str(raw.get("id"))) if isinstance(raw, Mapping) else None
                preset = preset_from_dict(raw, base=base)
            except ConfigError as exc:
                problems.append(source + str(exc))
                continue
            presets[preset.id] = preset
    return Merged(presets, tuple(problems))


def check_presets(
    user: Iterable[Any] | None, *, file: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem with the user's presets, one message each (empty: all valid)."""
    return list(merge_presets(user, file=file, env=env).problems)


# -- the presets file the editor and the CLI share ---------------------------------------

PRESETS_FILE = Path("kznllm") / "presets.toml"


def presets_file(env: Mapping[str, str] | None = None) -> Path:
    """`<nvim config dir>/kznllm/presets.toml`: user presets that Neovim's setup() and
    the `kznllm` command both see."""
    return nvim_stdpath("config", env) / PRESETS_FILE


_file_cache: dict[Path, tuple[tuple[int, int], list[Any], list[str]]] = {}


def _unsafe(st: os.stat_result) -> str:
    """Why a presets file is not trusted ('' if it is): another user owns it, or every
    user can write to it (as for a `.kzn` folder)."""
    if os.name == "nt":
        return ""
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}, not by you"
    if st.st_mode & stat.S_IWOTH:
        return "every user can write to it (chmod o-w)"
    return ""


def read_presets_file(path: Path) -> tuple[list[Any], list[str]]:
    """The `[[presets]]` tables of a TOML presets file, and what is wrong with the file
    itself (unreadable, not TOML, no array of tables), each message naming the file. An
    absent file is no presets and no problem. Read again only when it changed."""
    try:
        st = path.stat()
    except OSError:
        return [], []
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _file_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return list(cached[1]), list(cached[2])
    entries: list[Any] = []
    problems: list[str] = []
    unsafe = _unsafe(st)
    if unsafe:  # its presets may run commands (api_key = 'cmd:...'): only the user's own
        problems.append(f"{path}: ignored: {unsafe}")
        _file_cache[path] = (stamp, entries, problems)
        return [], list(problems)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {exc}")
    else:
        unknown = sorted(set(data) - {"presets"})
        if unknown:
            problems.append(
                f"{path}: unknown key(s) {', '.join(unknown)} (want [[presets]] tables)"
            )
        raw = data.get("presets", [])
        if isinstance(raw, list):
            entries = raw
        else:
            problems.append(f"{path}: presets must be an array of tables ([[presets]])")
    _file_cache[path] = (stamp, entries, problems)
    return list(entries), list(problems)


def default_preset(presets: Mapping[str, Preset], env: Mapping[str, str] | None = None) -> Preset:
    env = os.environ if env is None else env
    for builtin in builtin_presets():
        # the user's version of it: an override may name another key variable
        p = presets.get(builtin.id, builtin)
        if p.demo or (
            get_provider(p.provider).needs_base_url
            and p.base_url in ("", get_provider(p.provider).default_base_url)
        ):
            continue  # (Azure without an endpoint cannot be used, key or not)
        if isinstance(p.api_key, str) and env.get(p.api_key, "").strip():
            return p
    return presets[DEMO_ID]


def pick(
    presets: Mapping[str, Preset], preset_id: str | None, env: Mapping[str, str] | None = None
) -> Preset:
    if not preset_id:
        return default_preset(presets, env)
    try:
        return presets[preset_id]
    except KeyError:
        raise ConfigError(
            f"unknown preset {preset_id!r}{did_you_mean(preset_id, presets)} "
            f"(known: {', '.join(sorted(presets))})"
        ) from None
