"""What a generation tells its consumers, as typed events, in this order:

    PromptReady ─► RequestReady ─► (Retry)* ─► (Text | Reasoning | Usage)* ─► (Error) ─► Done

`Generation.events()` (generation.py) returns a `GenEvents`: an async iterator of them.
Nothing is sent before the pull that follows `RequestReady`, so what a consumer awaits
between the two (through `GenEvents.hold`: history's entry, the debug view's render)
happens before the request goes out. `Done` always comes last, whatever the outcome:
an error, a cancel of the consumer's task (`<Esc>`) or a `stop()` each end with the text
held back so far, then `Done`. Text comes one event per network read (the deltas of one
read, joined), never one per token.

Pure data and asyncio only: the plugin, the CLI, the history recorder and the debug
view consume these without importing the HTTP stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from kznllm_py.providers.base import HttpRequest, Prompt

T = TypeVar("T")


@dataclass
class Outcome:
    status: str  # "ok" | "error" | "cancelled"
    error: str | None = None
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    text_chars: int = 0
    reasoning: str = ""
    first_token_ms: float | None = None
    duration_ms: float = 0.0
    received: bool = False  # anything at all came from the provider's stream
    # what it cost in US$ and the price it was counted at (pricing.py); None: unknown
    cost_usd: float | None = None
    price: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "chars": self.text_chars}
        if self.error:
            out["error"] = self.error
        if self.usage:
            out["usage"] = self.usage
        if self.finish_reason:
            out["finish_reason"] = self.finish_reason
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
            out["price"] = self.price
        if self.first_token_ms is not None:
            out["first_token_ms"] = round(self.first_token_ms, 2)
            rate = self.tokens_per_s()
            if rate is not None:
                out["tokens_per_s"] = rate
        out["duration_ms"] = round(self.duration_ms, 2)
        return out

    def tokens_per_s(self) -> float | None:
        """Output tokens per second of streaming (from the first token to the end), when
        the provider reported how many tokens it wrote."""
        tokens = (self.usage or {}).get("output_tokens")
        if not tokens or self.first_token_ms is None:
            return None
        streaming_s = (self.duration_ms - self.first_token_ms) / 1000
        return round(tokens / streaming_s, 1) if streaming_s > 0 else None


@dataclass(frozen=True, slots=True)
class PromptReady:
    """The provider-neutral prompt, rendered (or given: a follow-up, a re-run)."""

    prompt: Prompt


@dataclass(frozen=True, slots=True)
class RequestReady:
    """The request as it will go out (its key only in its headers): not sent before the
    next pull."""

    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Retry:
    """The provider turned try `attempt` away before any answer; the next try follows
    after `wait` seconds. `why` is redacted."""

    attempt: int
    wait: float
    why: str


@dataclass(frozen=True, slots=True)
class _Streamed:
    text: str


class Text(_Streamed):
    """Answer text: one network read's worth, `<think>` blocks and stray fences out."""

    __slots__ = ()


class Reasoning(_Streamed):
    """The model's reasoning (never part of the answer)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them (the last one counts)."""

    usage: dict[str, int]


@dataclass(frozen=True, slots=True)
class Error:
    """The generation failed: one clear, redacted message. `Done` follows."""

    message: str


@dataclass(frozen=True, slots=True)
class Done:
    """The last event: how it ended, with its figures."""

    outcome: Outcome


GenEvent = PromptReady | RequestReady | Retry | Text | Reasoning | Usage | Error | Done


class Stopped(Exception):
    """Thrown into a generation its consumer stopped (`GenEvents.stop`)."""


class GenEvents:
    """One generation's events (see the module's docstring). Use it as `async with`, or
    `aclose()` it: leaving early closes the HTTP response at once."""

    __slots__ = ("_agen", "_outcome", "_throw")

    def __init__(self, agen: AsyncGenerator[GenEvent, None]) -> None:
        self._agen = agen
        self._throw: BaseException | None = None
        self._outcome: Outcome | None = None

    def __aiter__(self) -> GenEvents:
        return self

    async def __anext__(self) -> GenEvent:
        throw = self._throw
        if throw is None:
            event = await anext(self._agen)
        else:
            self._throw = None
            event = await self._agen.athrow(throw)
        if type(event) is Done:
            self._outcome = event.outcome
        return event

    def outcome(self) -> Outcome:
        """How the generation ended, once its `Done` went by."""
        if self._outcome is None:
            raise RuntimeError("the generation has not ended")
        return self._outcome

    async def hold(self, aw: Awaitable[T]) -> T | None:
        """Await `aw` before the next event: the generation waits for it (nothing more
        is sent or read meanwhile). What goes wrong while waiting is the generation's:
        None here, then the events of a cancel (a cancel of the task: held-back text,
        `Done` with status "cancelled") or of a failure (`aw` raised: `Error`, `Done`)."""
        if self._outcome is not None:  # over: nothing to end, a cancel stays the task's
            return await aw
        try:
            return await aw
        except asyncio.CancelledError:
            self._throw = asyncio.CancelledError()
        except Exception as exc:
            self._throw = exc
        return None

    def stop(self) -> None:
        """End the generation from the consumer's side (its reader went away): the next
        pull gives what was held back, then `Done` with status "cancelled"."""
        if self._outcome is None:
            self._throw = Stopped()

    async def aclose(self) -> None:
        await self._agen.aclose()

    async def __aenter__(self) -> GenEvents:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
