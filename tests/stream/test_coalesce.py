"""Coalescing and pacing, on a real asyncio loop (no editor)."""

from __future__ import annotations

import asyncio

from kznllm_py.stream.coalesce import Coalescer, Pace


def test_cheap_writes_keep_the_floor_interval() -> None:
    pace = Pace()
    for _ in range(50):
        pace.observe(0.0005)  # half a millisecond of editor time per write
    assert pace.interval == pace.floor


def test_costly_writes_slow_the_pace_to_keep_the_editors_share() -> None:
    pace = Pace(share=0.25)
    for _ in range(20):
        pace.observe(0.004)  # 4 ms per write: 16 ms between writes keeps 25 %
    assert abs(pace.interval - 0.016) < 0.001


def test_a_treesitter_buffers_writes_keep_the_editor_at_a_tenth() -> None:
    """~1 ms of Neovim per write (a 3,000-line C buffer highlighted, a language server
    attached): writes at most every 10 ms, the stream's share of the editor 10%."""
    pace = Pace()
    for _ in range(20):
        pace.observe(0.001)
    assert pace.interval >= 0.01 - 1e-9
    assert 0.001 / pace.interval <= 0.1 + 1e-9


def test_very_costly_writes_stop_at_the_ceiling_so_text_keeps_moving() -> None:
    pace = Pace()
    for _ in range(20):
        pace.observe(0.2)
    assert pace.interval == pace.ceiling


def test_until_measured_writes_go_a_frame_apart() -> None:
    assert abs(Pace().interval - 0.016) < 1e-9


def test_a_rise_is_followed_at_once_and_a_fall_slowly() -> None:
    pace = Pace(cost=0.0)
    pace.observe(0.02)
    assert pace.cost > 0.0139  # most of the way in one write
    pace.observe(0.0)
    assert pace.cost > 0.009  # one cheap write is no trend


def test_a_negative_report_is_ignored() -> None:
    pace = Pace()
    pace.observe(0.004)
    before = pace.cost
    pace.observe(-1.0)  # a clock that went backwards
    assert pace.cost == before


async def test_first_push_writes_at_once_later_ones_wait_for_the_interval() -> None:
    written: list[str] = []
    c = Coalescer(written.append, interval=30.0)
    c.push("a")
    assert written == ["a"]
    c.push("b")
    c.push("c")
    assert written == ["a"]  # held: the next write is 30 s away
    c.close()
    assert written == ["a", "bc"]


async def test_a_shorter_interval_moves_a_scheduled_write_earlier() -> None:
    written: list[str] = []
    done = asyncio.Event()

    def write(text: str) -> None:
        written.append(text)
        if len(written) == 2:
            done.set()

    c = Coalescer(write, interval=30.0)
    c.push("a")
    c.push("b")
    c.interval = 0.001
    await asyncio.wait_for(done.wait(), timeout=5)
    assert written == ["a", "b"]
    assert c.writes == 2
