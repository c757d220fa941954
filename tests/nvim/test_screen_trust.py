""":KznTrust on a real terminal (tmux, 90 columns): after vim.secure.read()'s question the
result is one line, never "Press ENTER" (issue 27, item 4: no Press ENTER, ever)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tmux_screen import Screen


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    family = tmp_path / ".kzn" / "templates" / "openai"
    family.mkdir(parents=True)
    (family / "system.jinja").write_text("You answer in haiku.\n")
    os.chmod(tmp_path / ".kzn", 0o755)
    return tmp_path


@pytest.fixture
def screen(project: Path) -> Iterator[Screen]:
    s = Screen(project, setup="{ preset = 'demo' }")
    try:
        yield s
    finally:
        s.close()


def test_kzntrust_says_what_it_trusted_without_press_enter(screen: Screen):
    screen.wait_for(lambda s: "~" in s, what="Neovim")
    screen.text(":KznTrust\r")
    screen.wait_for(lambda s: "(a)llow" in s, what="vim.secure.read's question")
    screen.text("a")
    shown = screen.wait_for(lambda s: "files trusted" in s, what="the result")
    assert "Press ENTER" not in shown
    assert shown.rstrip("\n").splitlines()[-1] == "kznllm: 1 of 1 project files trusted"
    # the next key is the user's: a command typed now runs (no prompt eats it)
    screen.text(":echo 'next key'\r")
    shown = screen.wait_for(lambda s: "next key" in s, what="the next command")
    assert "Press ENTER" not in shown
