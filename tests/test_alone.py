"""The turns that let a bound-in-time test run alone under pytest-xdist
(tests/alone.py): a test alone waits for the shared turns to end, and no shared turn
starts while it waits or runs; shared turns run together. Each turn here is a thread
with its own open file (flock conflicts between open files, as between workers)."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.alone import ALONE, Turns, runs_alone, unknown

SETTLE_S = 0.3  # how long a turn that must stay blocked is given to (wrongly) start
DEADLINE_S = 10.0


class Turn(threading.Thread):
    """A turn taken in a thread: `started` once held, held until `release` is set."""

    def __init__(self, turns: Turns, alone: bool) -> None:
        super().__init__(daemon=True)
        self.turns, self.alone = turns, alone
        self.started, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        with self.turns.take(self.alone):
            self.started.set()
            self.release.wait(DEADLINE_S)

    def end(self) -> None:
        self.release.set()
        self.join(DEADLINE_S)
        assert not self.is_alive()


def test_shared_turns_run_together(tmp_path: Path) -> None:
    turns = Turns(tmp_path)
    a, b = Turn(turns, alone=False), Turn(turns, alone=False)
    a.start()
    b.start()
    assert a.started.wait(DEADLINE_S) and b.started.wait(DEADLINE_S)
    a.end()
    b.end()


def test_a_turn_alone_waits_for_the_shared_ones_and_none_starts_meanwhile(
    tmp_path: Path,
) -> None:
    turns = Turns(tmp_path)
    shared = Turn(turns, alone=False)
    shared.start()
    assert shared.started.wait(DEADLINE_S)
    alone = Turn(turns, alone=True)
    alone.start()
    assert not alone.started.wait(SETTLE_S)  # the shared turn still runs
    later = Turn(turns, alone=False)
    later.start()
    assert not later.started.wait(SETTLE_S)  # queued behind the waiting alone turn
    shared.end()
    assert alone.started.wait(DEADLINE_S)
    assert not later.started.wait(SETTLE_S)  # nothing beside the alone turn
    alone.end()
    assert later.started.wait(DEADLINE_S)
    later.end()


def test_alone_names_modules_and_functions_and_finds_stale_names() -> None:
    module, names = next((m, n) for m, n in ALONE.items() if n is not None)
    assert runs_alone(module, names[0])
    assert not runs_alone(module, "test_not_listed")
    whole = next(m for m, n in ALONE.items() if n is None)
    assert runs_alone(whole, "test_anything")
    assert not runs_alone("test_not_a_listed_module.py", names[0])
    assert unknown({module: set(names)}) == []
    assert unknown({module: set(names[1:])}) == [f"{module}::{names[0]}"]
    assert unknown({}) == []  # a module not collected (a partial run) is not checked
