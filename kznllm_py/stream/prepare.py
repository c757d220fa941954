"""A generation's request prepared, everything before the network: the API key
resolved, the preset's templates rendered into a `Prompt` (on the loop once the
built-in ones are compiled, else off it, within the template budget), and the
provider's `HttpRequest` built from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kznllm_py import secrets
from kznllm_py.errors import ConfigError
from kznllm_py.prompt import prompts, sandbox
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.presets import Preset, request_params
from kznllm_py.providers import get_provider
from kznllm_py.providers.base import HttpRequest, Prompt, Provider
from kznllm_py.stream import demo_server


def template_set(preset: Preset, search_dirs: Sequence[Path] = ()) -> prompts.TemplateSet:
    return prompts.TemplateSet(preset.family, tuple(search_dirs), preset.explicit_templates)


async def prepare(
    preset: Preset,
    ctx: prompts.FillContext,
    *,
    search_dirs: Sequence[Path] = (),
    prompt: Prompt | None = None,
) -> tuple[Provider, HttpRequest]:
    """Everything before the network: key, prompt, request. Raises KznError."""
    provider, request, _ = await prepare_with_prompt(
        preset, ctx, search_dirs=search_dirs, prompt=prompt
    )
    return provider, request


async def prepare_with_prompt(
    preset: Preset,
    ctx: prompts.FillContext,
    *,
    search_dirs: Sequence[Path] = (),
    prompt: Prompt | None = None,
) -> tuple[Provider, HttpRequest, Prompt]:
    """Everything before the network: key, prompt, request. Raises KznError.
    `prompt`, when given, is sent instead of rendering the templates (a follow-up or a
    re-run from history)."""
    provider = get_provider(preset.provider)
    if prompt is not None and provider.raw_prompt:
        raise ConfigError(
            f"preset {preset.id}: a {preset.provider} endpoint takes one raw prompt, not a "
            "conversation; pick a chat preset (:KznPreset) to continue or re-run it"
        )
    key = await secrets.resolve(preset.api_key, preset_id=preset.id)
    base_url = preset.base_url or provider.default_base_url
    secrets.remember_url(base_url)  # a password in its userinfo is scrubbed like a key
    if preset.demo:
        base_url = (await demo_server.ensure_running()).base_url
    if preset.prefill and provider.supports_prefill:
        ctx = replace(ctx, prefill=preset.prefill)
    if prompt is None:
        if _renders_inline(preset, search_dirs):
            # the built-in templates, compiled already: ~0.1 ms, less than the hop to a
            # thread and back costs (0.1 ms idle, a few ms on a busy machine); still
            # within the template budget
            prompt = sandbox.run_limited(
                render_prompt, preset, ctx, search_dirs, budget=sandbox.Budget()
            )
        else:
            # off the event loop, within the template budget (project templates are
            # untrusted; a first render compiles)
            prompt = await sandbox.run_off_loop(render_prompt, preset, ctx, search_dirs)
    if preset.cache_system and provider.prompt_caching:
        prompt = replace(prompt, cache_system=True)
    request = provider.build_request(
        base_url=base_url,
        model=preset.model,
        prompt=prompt,
        params=request_params(preset),
        api_key=key,
    )
    secrets.check_headers(request.headers, preset.id)
    return provider, request, prompt


# the built-in template sets rendered once already (compiled: later renders are quick)
_compiled: set[tuple[str, str, bool, tuple[str, ...]]] = set()


def _template_key(
    preset: Preset, search_dirs: Sequence[Path]
) -> tuple[str, str, bool, tuple[str, ...]]:
    return (preset.family, preset.provider, preset.fim, tuple(str(d) for d in search_dirs))


def _renders_inline(preset: Preset, search_dirs: Sequence[Path]) -> bool:
    """Whether the render may run on the event loop: only the built-in templates (no
    project's, no user's, none named by the preset), and only once they are compiled."""
    builtin = all(Path(d) == prompts.builtin_root() for d in search_dirs)
    compiled = _template_key(preset, search_dirs) in _compiled
    return builtin and compiled and not preset.explicit_templates


def render_prompt(
    preset: Preset, ctx: prompts.FillContext, search_dirs: Sequence[Path] = ()
) -> Prompt:
    """The preset's templates rendered for `ctx`: system and user messages, or one raw
    prompt for a completion endpoint (fill-in-the-middle around the cursor). Blocking:
    call it off the event loop (sandbox.run_off_loop), or under a budget on the loop
    when `_renders_inline` says so."""
    templates = template_set(preset, search_dirs)
    if get_provider(preset.provider).raw_prompt:
        role = "fim" if preset.fim else "prompt"
        raw = prompts.render_raw(ctx, templates, role, preset_id=preset.id, model=preset.model)
        prompt = Prompt(system="", messages=(), raw=raw)
    else:
        prompt = prompts.render(ctx, templates, preset_id=preset.id, model=preset.model)
    _compiled.add(_template_key(preset, search_dirs))
    return prompt


def prompt_tokens(prompt: Prompt) -> int:
    """The estimated tokens of what is sent of a prompt."""
    texts = [prompt.system, prompt.raw, *(m.content for m in prompt.messages)]
    return sum(estimate_tokens(t) for t in texts)
