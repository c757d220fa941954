"""The headless Neovim's runner (kznllm_py/prompt/sources/headless.py `run`, `ask`),
with real processes standing in for a broken Neovim: its answer is bounded, its failure
is one line, and it never raises past `ask`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kznllm_py.prompt.sources import headless


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-nvim.sh"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_an_answer_past_the_cap_is_killed_not_held(tmp_path: Path):
    flood = script(tmp_path, "cat /dev/zero")  # endless output: only the cap ends it
    t0 = time.monotonic()
    with pytest.raises(headless.Failed, match=r"an answer over 4096 bytes \(killed\)"):
        headless.run([flood], b"", deadline=30, cap=4096)
    assert time.monotonic() - t0 < 10


def test_a_failing_program_is_one_line_with_its_last_words(tmp_path: Path):
    bad = script(
        tmp_path, "cat >/dev/null; echo 'E5113: Error while calling lua chunk' >&2; exit 3"
    )
    with pytest.raises(
        headless.Failed, match=r"^exited with 3 \(E5113: Error while calling lua chunk\)$"
    ):
        headless.run([bad], b"x" * 200_000, deadline=30, cap=4096)  # stdin past a pipe's size


def test_ask_never_raises_and_says_what_is_missing(tmp_path: Path):
    junk = script(tmp_path, "cat >/dev/null; echo 'not json'")
    found = headless.ask(b"int f;\n", "f.c", rows=(0, 0, 0, 1), program=junk)
    assert found.scope is None and found.outline is None
    assert found.problem.startswith(f"{junk}: an answer that does not read (")
    assert found.problem.endswith(": no scope or outline")
    gone = headless.ask(b"", "f.c", rows=(0, 0, 0, 0), program=str(tmp_path / "none"))
    assert "cannot run it" in gone.problem
