"""Coalescing text into few editor writes: the first batch goes out at once (first token
latency), later ones at most every `interval` seconds. Pure asyncio, no Neovim."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Coalescer:
    __slots__ = ("_flush_fn", "_handle", "_interval", "_last", "_loop", "_parts", "writes")

    def __init__(
        self,
        flush_fn: Callable[[str], None],
        *,
        interval: float = 0.008,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._flush_fn = flush_fn
        self._interval = interval
        self._loop = loop or asyncio.get_running_loop()
        self._parts: list[str] = []
        self._handle: asyncio.Handle | None = None
        self._last = -1e9
        self.writes = 0

    def push(self, text: str) -> None:
        """Called once per network read's worth of text. Writes at once when the last
        write is `interval` old (also while a burst keeps the loop busy, so timers
        could not fire), else schedules the write for when it is."""
        if not text:
            return
        self._parts.append(text)
        now = self._loop.time()
        if now >= self._last + self._interval:
            if self._handle is not None:
                self._handle.cancel()
            self._flush()
        elif self._handle is None:
            self._handle = self._loop.call_at(self._last + self._interval, self._flush)

    def _flush(self) -> None:
        self._handle = None
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._last = self._loop.time()
        self.writes += 1
        self._flush_fn(text)

    def close(self) -> None:
        """Write what is pending now (the end of a stream)."""
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
