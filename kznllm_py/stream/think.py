"""Split a `<think>...</think>` block that some models (DeepSeek-R1 distills, Qwen3,
QwQ) put at the start of their content, while it streams: the block is reasoning, the
rest is the answer. Only a block at the very start counts; elsewhere the text is kept.
Held back is only what may still turn out to be a tag."""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


class ThinkSplitter:
    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> after | answer
        self._held = ""

    def push(self, text: str) -> tuple[str, str]:
        """(answer text, reasoning text) released by this piece."""
        if self._state == "answer":
            return text, ""
        self._held += text
        if self._state == "start":
            return self._start()
        if self._state == "thinking":
            return self._thinking()
        return self._after()

    def finish(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self._state == "thinking":
            return "", held  # never closed: it was all reasoning
        if self._state == "after":
            return held.lstrip("\r\n"), ""
        return held, ""

    def _start(self) -> tuple[str, str]:
        stripped = self._held.lstrip()
        if not stripped:
            return "", ""
        if stripped.startswith(OPEN):
            self._state = "thinking"
            self._held = stripped[len(OPEN) :]
            return self._thinking()
        if OPEN.startswith(stripped):
            return "", ""  # "<thi" so far
        self._state = "answer"
        held, self._held = self._held, ""
        return held, ""

    def _thinking(self) -> tuple[str, str]:
        held = self._held
        end = held.find(CLOSE)
        if end >= 0:
            reasoning = held[:end]
            self._held = held[end + len(CLOSE) :]
            self._state = "after"
            answer, _ = self._after()
            return answer, reasoning
        keep = _partial_suffix(held, CLOSE)
        self._held = held[len(held) - keep :] if keep else ""
        return "", held[: len(held) - keep]

    def _after(self) -> tuple[str, str]:
        # the line breaks between </think> and the answer are not part of it
        text = self._held.lstrip("\r\n")
        if not text:
            return "", ""
        self._held = ""
        self._state = "answer"
        return text, ""


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0
