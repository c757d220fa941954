"""The Neovim edge of a generation: writes and the end of a job go to the Lua shim as
notifications (fire and forget, ordered), never as requests, so the host's asyncio
tasks never wait on the editor and the editor never waits on the network."""

from __future__ import annotations

from typing import Any

import pynvim

from kznllm_py.messages import end_message
from kznllm_py.nvim.calls import script
from kznllm_py.pricing import figures
from kznllm_py.prompt.context import TokenTally

_WRITE = script("job.write")
_FINISH = script("job.finish")
_NOTE = script("job.note")
_REWRITE = script("job.rewrite")
_SPENT = script("actions.spent")


class BufferSink:
    """Sends one job's text to its extmark. In linewise replace mode the answer's final
    newline is held back and dropped (the replaced lines keep their own line break)."""

    __slots__ = (
        "_cr",
        "_held",
        "_id",
        "_nvim",
        "_tally",
        "crlf",
        "linewise",
        "scratch",
    )

    def __init__(
        self, nvim: pynvim.Nvim, job_id: int, *, linewise: bool = False, crlf: bool = False
    ) -> None:
        self._nvim = nvim
        self._id = job_id
        self.linewise = linewise  # also an answer on a line of its own (placement)
        # a 'fileformat=dos' buffer: its lines end in CRLF on disk, so an answer's CRLF is
        # a line break there, not a literal ^M
        self.crlf = crlf
        self._held = ""
        self._cr = ""  # a CR at the end of the last piece: the LF may come next
        # the tokens of what went to the buffer so far (context.estimate_tokens'), sent
        # with each write: the progress and the sidebar show it
        self._tally = TokenTally()
        # the plugin's own buffer (the debug view, a conversation): what it wrote there
        # before the answer (the request, a heading) is neither kept output nor the
        # user's text, so an answer that never came says neither
        self.scratch = False

    def write(self, text: str) -> None:
        if self.crlf:
            text = self._cr + text
            self._cr = "\r" if text.endswith("\r") else ""
            text = (text[:-1] if self._cr else text).replace("\r\n", "\n")
            if not text:
                return
        if self.linewise:
            text = self._held + text
            stripped = text.rstrip("\n")
            self._held = text[len(stripped) :]
            text = stripped
            if not text:
                return
        self._send(text)

    def _send(self, text: str) -> None:
        self._tally.add(text)
        self._nvim.exec_lua(_WRITE, self._id, text, self._tally.tokens, async_=True)

    def note(self, text: str) -> None:
        """A word next to the progress indicator (e.g. a retry's wait)."""
        self._nvim.exec_lua(_NOTE, self._id, text, async_=True)

    def flush(self) -> None:
        """The end of the answer's text: what linewise mode held back beyond the one
        final newline it drops (and a last lone CR)."""
        if self._cr:
            self._cr, self.crlf = "", False
            self.write("\r")
        if self.linewise and len(self._held) > 1:
            self._send(self._held[:-1])
        self._held = ""

    def rewrite(self, text: str) -> None:
        """Replace the whole answer in the buffer (in its undo step); its final newline
        dropped as the stream's was."""
        if self.crlf:  # the answer as the model sent it: its CRLF a line break here
            text = text.replace("\r\n", "\n")
        if self.linewise and text.endswith("\n"):
            text = text[:-1]
        self._nvim.exec_lua(_REWRITE, self._id, text, async_=True)

    def finish(self, status: str, error: str | None, info: dict[str, Any]) -> None:
        """The end of the job, with the line that says it (messages.end_message)."""
        self.flush()
        # whether the model's text went in: the outcome counts the answer's characters (a
        # conversation's heading or the debug view's request written before it is not
        # the model's output); a job cancelled before it has an outcome counts the writes
        chars = info.get("chars")
        wrote: bool | None = chars > 0 if isinstance(chars, int) else self._tally.tokens > 0
        if self.scratch and not (isinstance(chars, int) and chars > 0):
            wrote = None
        elif status == "ok" and not self.scratch:
            # an answer of nothing, or of blank lines a replace drops: said, not "done"
            # (the tally counts what went to the buffer: never an empty piece)
            wrote = self._tally.tokens > 0
        text, level = end_message(status, error, info, wrote=wrote)
        info = {**info, "message": text, "level": level}
        self._nvim.exec_lua(_FINISH, self._id, status, error, info, async_=True)
        spent = figures(info.get("usage"), info.get("cost_usd"))
        if spent:  # the statusline's last tokens and cost
            self._nvim.exec_lua(_SPENT, spent, async_=True)
