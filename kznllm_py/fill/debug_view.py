"""The debug view (`:KznDebug`) as a consumer of a generation's events: the request as
the debug template renders it, then the reasoning (if the model sends any) under its
own heading, then the answer under one "## Answer" heading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from kznllm_py.prompt import sandbox
from kznllm_py.providers.base import HttpRequest
from kznllm_py.stream.events import Done, GenEvent, Reasoning, RequestReady, Text


class DebugView:
    """What the debug scratch buffer gets: the request, then the reasoning (if the model
    sends any) under its own heading, then the answer under one "## Answer" heading; a
    replace's answer is code, so it goes in a fence of its filetype."""

    FENCE = "````"  # four: an answer's own ``` fences stay inside

    def __init__(
        self,
        write: Callable[[str], None],
        render: Callable[[HttpRequest], str],
        *,
        fence: str | None = None,
    ) -> None:
        self._write = write
        self._render = render  # blocking: rendered off the loop (kznllm_py/prompt/debug_request.py)
        self._fence = fence  # the filetype of a replace's code, None for prose
        self._in_reasoning = False
        self._answering = False
        self._last = ""
        self._lines = 1  # the buffer's line the next text starts on (it starts empty)
        self._fold: list[int] = []  # the reasoning's first and last line

    def take(self, event: GenEvent) -> Awaitable[None] | None:
        """One event into the view; on the request, what the generation waits for before
        it sends (`GenEvents.hold`): the request's text, rendered off the event loop."""
        match event:
            case Text(text):
                self.answer(text)
            case Reasoning(text):
                self.reasoning(text)
            case RequestReady(request):
                return self._show(request)
            case Done():
                self.close()
        return None

    async def _show(self, request: HttpRequest) -> None:
        self.request(await sandbox.run_off_loop(self._render, request))

    def _put(self, text: str) -> None:
        if text:
            self._last = (self._last + text)[-2:]
            self._lines += text.count("\n")
            self._write(text)

    def fold(self) -> list[int] | None:
        """The lines (1-based, inclusive) of the reasoning, heading included, that the
        editor folds once the answer is in; None without reasoning."""
        return self._fold if len(self._fold) == 2 else None

    def _blank_line(self) -> str:
        """What puts a heading on a line of its own, after a blank line."""
        if self._last in ("", "\n\n"):
            return ""
        return "\n" if self._last.endswith("\n") else "\n\n"

    def request(self, text: str) -> None:
        self._put(text)

    def reasoning(self, text: str) -> None:
        if not self._in_reasoning and not self._answering:
            self._in_reasoning = True
            gap = self._blank_line()
            self._fold = [self._lines + gap.count("\n")]
            self._put(gap + "## Reasoning\n\n")
        self._put(text)

    def _open_answer(self) -> None:
        self._answering = True
        self._in_reasoning = False
        gap = self._blank_line()
        if len(self._fold) == 1:  # to the line before the answer's heading
            self._fold.append(self._lines + gap.count("\n") - 1)
        head = gap + "## Answer\n\n"
        if self._fence is not None:
            head += f"{self.FENCE}{self._fence}\n"
        self._put(head)

    def answer(self, text: str) -> None:
        if not text:
            return
        if not self._answering:
            self._open_answer()
        self._put(text)

    def close(self) -> None:
        """The end of the answer: the heading even if nothing came, the fence closed."""
        if not self._answering:
            self._open_answer()
        if self._fence is not None:
            self._put(("" if self._last[-1:] == "\n" else "\n") + self.FENCE)
        self._fence = None
