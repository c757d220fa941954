"""The one place the host calls into the editor: `Editor`, a typed method per Lua
handler, each an `async_=True` notification (fire and forget, in order), so the host's
asyncio tasks never wait on Neovim. The Lua side's table of the same names is
lua/kznllm/calls.lua; no other Python module names a Lua module."""

from __future__ import annotations

from typing import Any, Literal

import pynvim

# the handlers of lua/kznllm/calls.lua (a test holds the two lists equal)
HANDLERS = (
    "host.reply",
    "host.pong",
    "host.configured",
    "job.write",
    "job.note",
    "job.rewrite",
    "job.finish",
    "job.entry",
    "actions.spent",
    "sidebar.render",
    "sidebar.entry",
    "sidebar.changed",
    "sidebar.undeleted",
    "sidebar.cleared",
    "apply.planned",
    "apply.located",
    "apply.refused",
    "models.listed",
    "trust.review",
    "context.answered",
    "context_view.shown",
    "notify",
)

Level = Literal["DEBUG", "INFO", "WARN", "ERROR"]


def script(name: str) -> str:
    """The Lua that runs handler `name` with a call's arguments (`exec_lua`'s `...`)."""
    if name not in HANDLERS:
        raise ValueError(f"no Lua handler {name!r}")
    return f"return require('kznllm.calls')['{name}'](...)"


_SCRIPTS = {name: script(name) for name in HANDLERS}


class Editor:
    """The host's calls into one editor (its pynvim session)."""

    __slots__ = ("_nvim",)

    def __init__(self, nvim: pynvim.Nvim) -> None:
        self._nvim = nvim

    def _call(self, name: str, *args: Any) -> None:
        self._nvim.exec_lua(_SCRIPTS[name], *args, async_=True)

    # -- the host's channel
    def reply(self, seq: Any, value: Any) -> None:
        self._call("host.reply", seq, value)

    def pong(self) -> None:
        self._call("host.pong")

    def configured(self, reply: dict[str, Any]) -> None:
        self._call("host.configured", reply)

    def notify(self, message: str, level: Level) -> None:
        """Through the plugin's one notify helper (lua/kznllm/notify.lua: setup()'s
        `notify` filter, one line with the built-in vim.notify)."""
        self._call("notify", message, level)

    # -- a job (its writes go through editor.BufferSink, on the same handlers)
    def job_entry(self, job_id: int, entry_id: int, bufnr: int) -> None:
        self._call("job.entry", job_id, entry_id, bufnr)

    # -- the history sidebar
    def sidebar_render(self, view: dict[str, Any]) -> None:
        self._call("sidebar.render", view)

    def sidebar_entry(self, data: dict[str, Any]) -> None:
        self._call("sidebar.entry", data)

    def sidebar_changed(self) -> None:
        self._call("sidebar.changed")

    def sidebar_undeleted(self, entry_id: int | None) -> None:
        self._call("sidebar.undeleted", entry_id)

    def sidebar_cleared(self, n: int) -> None:
        self._call("sidebar.cleared", n)

    # -- :KznApply, :KznPreset!, :KznTrust
    def apply_planned(self, plan: dict[str, Any], scratch: Any) -> None:
        self._call("apply.planned", plan, scratch)

    def apply_located(self, token: Any, found: dict[str, Any]) -> None:
        self._call("apply.located", token, found)

    def apply_refused(self, token: Any, why: str, level: str) -> None:
        self._call("apply.refused", token, why, level)

    def models_listed(self, result: dict[str, Any]) -> None:
        self._call("models.listed", result)

    def trust_review(self, files: list[str], lines: list[str], where: str | None) -> None:
        self._call("trust.review", files, lines, where)

    def context_answered(self, source: str, reply: dict[str, Any]) -> None:
        """A context source the host gathers for the editor (git) answers."""
        self._call("context.answered", source, reply)

    def context_shown(self, lines: list[str]) -> None:
        """`:KznContext`'s view (lua/kznllm/context_view.lua)."""
        self._call("context_view.shown", lines)
