"""Coalescing text into few editor writes: the first batch goes out at once (first token
latency), later ones at most every `interval` seconds, an interval that `Pace` sets from
what a write costs the editor. Pure asyncio, no Neovim."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Pace:
    """How often to write, from what each write cost the editor: Neovim's own CPU time
    between two writes (the write, its `on_bytes` listeners, LSP change tracking, the
    redraw and treesitter's reparse it caused), as the editor reports it. The interval
    keeps a stream's share of the editor's time near `share`, within [floor, ceiling]:
    a plain buffer gets a write a frame, a heavy one as few as keep the text moving."""

    # of the editor's time one stream may take: a tenth (issue 28's goal 5); a fifth let a
    # 3,000-line treesitter C buffer (~1 ms of Neovim per write, with or without a
    # language server) take 11-13% of Neovim at ~1,000 tokens/s, its writes at the floor
    share: float = 0.1
    floor: float = 0.008  # s: never more often than this (a frame at 120 Hz)
    ceiling: float = 1 / 15  # s: never less often (text visibly moving, 15 updates/s)
    # s of editor CPU per write, smoothed; until measured, a frame's worth (16 ms apart):
    # a plain buffer is down to the floor within a few writes, a heavy one is not
    # flooded before its first measurement
    cost: float = 0.0016

    def observe(self, cpu_s: float) -> float:
        """One write's cost; returns the interval to use from now on. A rising cost is
        followed at once (the editor is struggling), a falling one slowly (one cheap
        write among costly ones is no trend)."""
        if cpu_s >= 0:
            weight = 0.7 if cpu_s > self.cost else 0.3
            self.cost += weight * (cpu_s - self.cost)
        return self.interval

    @property
    def interval(self) -> float:
        return min(self.ceiling, max(self.floor, self.cost / self.share))


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

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, seconds: float) -> None:
        """A new pace: a write already scheduled moves to the new time."""
        self._interval = seconds
        if self._handle is not None:
            self._handle.cancel()
            self._handle = self._loop.call_at(self._last + seconds, self._flush)

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
