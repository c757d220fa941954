"""The answer on its way out of a generation, and its size bound: `AnswerFilter`
(a `<think>` block to reasoning, a replace's markdown fence, an echoed key, all held
back only as long as they may still be one) and the `max_response_bytes` cap (the
option's check, the message past it, the line and wire limits that follow from it).
"""

from __future__ import annotations

from collections import deque

from kznllm_py import secrets
from kznllm_py.errors import ConfigError, size_text
from kznllm_py.stream.client import WIRE_FACTOR, WIRE_FLOOR
from kznllm_py.stream.events import Reasoning, Text
from kznllm_py.stream.fences import FenceStripper
from kznllm_py.stream.sse import MAX_LINE
from kznllm_py.stream.think import ThinkSplitter

# answer + reasoning text delivered, in UTF-8 bytes, past which the stream is stopped
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


class AnswerFilter:
    """The way from the provider's text to the buffer: a `<think>` block at the start
    is reasoning, not answer; in replace mode a markdown fence around the answer is
    removed (the model was asked for raw code). Both hold back only what may still turn
    out to be a tag or a fence. What gets through waits in `held`, as events, in order."""

    __slots__ = (
        "_fences",
        "_keys",
        "_keys_reasoning",
        "_left",
        "_reasoning",
        "_think",
        "chars",
        "held",
        "over_cap",
    )

    def __init__(self, replace: bool, *, cap: int | None = None) -> None:
        self._left = cap  # bytes the cap still allows (None: no cap)
        self.over_cap = False
        self._think = ThinkSplitter()
        self._fences = FenceStripper() if replace else None
        # a server that echoes the key back: never in the buffer, the view or history
        self._keys = secrets.SecretStream()
        self._keys_reasoning = secrets.SecretStream()
        self.held: deque[Text | Reasoning] = deque()
        self._reasoning: list[str] = []
        self.chars = 0

    @property
    def reasoning_text(self) -> str:
        return "".join(self._reasoning)

    def reasoning(self, text: str) -> None:
        self._reason(self._keys_reasoning.push(text) if text else "")

    def _reason(self, text: str) -> None:
        text = self._within_cap(text) if text else ""
        if text:
            self._reasoning.append(text)
            self.held.append(Reasoning(text))

    def push(self, text: str) -> None:
        answer, thought = self._think.push(self._keys.push(text))
        self._reason(thought)
        self._emit(answer)

    def finish(self) -> None:
        self._reason(self._keys_reasoning.finish())
        rest = self._keys.finish()
        if rest:
            answer, thought = self._think.push(rest)
            self._reason(thought)
            self._emit(answer)
        answer, thought = self._think.finish()
        self._reason(thought)
        self._emit(answer, final=True)

    def _emit(self, text: str, *, final: bool = False) -> None:
        if self._fences is not None:
            text = self._fences.push(text) if text else ""
            if final:
                text += self._fences.finish()
        text = self._within_cap(text) if text else ""
        if text:
            self.chars += len(text)
            self.held.append(Text(text))

    def _within_cap(self, text: str) -> str:
        """`text`, or the whole characters of it that the size cap still allows."""
        left = self._left
        if left is None:
            return text
        if self.over_cap:
            return ""
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size <= left:
            self._left = left - size
            return text
        self.over_cap = True
        self._left = 0
        return text.encode("utf-8", "surrogatepass")[:left].decode("utf-8", "ignore")


def cap_message(cap: int) -> str:
    return f"response stopped at the {size_text(cap)} cap (max_response_bytes)"


def line_limit(max_response_bytes: int) -> int:
    """Characters one line or event of the stream may have: room for an answer that
    comes whole in one event (JSON-escaped, it may grow several times)."""
    return max(MAX_LINE, 8 * max_response_bytes)


def wire_limit(max_response_bytes: int) -> int:
    """Bytes of body, on the wire and once decompressed: an event stream spends ~50
    bytes of framing on a token."""
    return max(WIRE_FLOOR, WIRE_FACTOR * max_response_bytes)


def check_max_response_bytes(value: object) -> int:
    """The `max_response_bytes` option, validated: a whole number of bytes, 1 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"max_response_bytes must be a whole number of bytes, 1 or more, not {value!r}"
        )
    return value
