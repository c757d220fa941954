"""What the editor knows of the host's settings, as plain data (no Neovim): the reply to
`configure` (lua/kznllm/host.lua's `host.known`: the default preset, each preset's model,
where 'auto' puts its answers, a key this host lacks) and the preset list of the
`:KznPreset` picker."""

from __future__ import annotations

from typing import Any

from kznllm_py import secrets
from kznllm_py.errors import KznError
from kznllm_py.fill import request
from kznllm_py.prompt import sections
from kznllm_py.prompt.presets import pick
from kznllm_py.settings import Settings


def configured(new: Settings) -> dict[str, Any]:
    """What the editor shows and where it puts an answer, as this side resolves them:
    the default preset, each preset's model (or the one picked) and 'auto' placement."""
    presets = {pid: new.preset(pid) for pid in new.presets}
    return {
        "generation": new.generation,
        "problems": new.shown_problems(),
        "presets": {
            pid: {
                "model": p.model,
                "auto": request.placement("auto", p.fim),
                # the env var of a key this host lacks: the editor refuses at the
                # keypress, before the query is typed (a cmd: key is never run there)
                "missing_key": p.api_key if secrets.present(p.api_key) is False else None,
                # what the editor gathers at the keypress for a fill with it
                "context": sections.context_options(p.context, new.context).for_editor(),
            }
            for pid, p in presets.items()
        },
        "default": new.preset(None).id,
    }


def preset_list(s: Settings, current: str) -> dict[str, Any]:
    """The presets for the picker, `current` (a preset id, or '' for the default) first
    resolved; the current one may be a preset left out as invalid: the list stays."""
    presets = s.presets
    try:
        chosen = presets.get(current) or pick(presets, None)
    except KznError as exc:
        return {"error": str(exc), "presets": []}
    return {
        "problems": s.shown_problems(),
        "current": chosen.id,
        "presets": [
            {
                "id": p.id,
                "description": p.description,
                "model": p.model,
                "key": secrets.describe(p.api_key),
                # None: needs none; a cmd: key counts as there (it runs when used)
                "key_present": secrets.present(p.api_key),
                "provider": p.provider,
            }
            for p in presets.values()
        ],
    }
