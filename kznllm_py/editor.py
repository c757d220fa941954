"""The Neovim edge of a generation: writes and the end of a job go to the Lua shim as
notifications (fire and forget, ordered), never as requests, so the host's asyncio
tasks never wait on the editor and the editor never waits on the network."""

from __future__ import annotations

from typing import Any

import pynvim

_WRITE = "require('kznllm.job').write(...)"
_FINISH = "require('kznllm.job').finish(...)"
_NOTE = "require('kznllm.job').note(...)"


class BufferSink:
    """Sends one job's text to its extmark. In linewise replace mode the answer's final
    newline is held back and dropped (the replaced lines keep their own line break)."""

    __slots__ = ("_held", "_id", "_nvim", "linewise")

    def __init__(self, nvim: pynvim.Nvim, job_id: int, *, linewise: bool = False) -> None:
        self._nvim = nvim
        self._id = job_id
        self.linewise = linewise  # also an answer on a line of its own (placement)
        self._held = ""

    def write(self, text: str) -> None:
        if self.linewise:
            text = self._held + text
            stripped = text.rstrip("\n")
            self._held = text[len(stripped) :]
            text = stripped
            if not text:
                return
        self._nvim.exec_lua(_WRITE, self._id, text, async_=True)

    def note(self, text: str) -> None:
        """A word next to the progress indicator (e.g. a retry's wait)."""
        self._nvim.exec_lua(_NOTE, self._id, text, async_=True)

    def finish(self, status: str, error: str | None, info: dict[str, Any]) -> None:
        if self.linewise and len(self._held) > 1:
            self._nvim.exec_lua(_WRITE, self._id, self._held[:-1], async_=True)
        self._held = ""
        self._nvim.exec_lua(_FINISH, self._id, status, error, info, async_=True)
