"""job/write.lua's own line split (lines_of, on every write's path) and text.lua's
split under it (the git source's cut at a file's line break too) against Neovim's
vim.split(text, sep, { plain = true }), in a real Neovim: the same pieces for any text
(line breaks at the ends, runs of them, CR, NUL, multibyte characters)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.nvim_child import Child

SPLIT = """
local text = ...
local w = require('kznllm.job.write')
return { w.lines_of(text), vim.split(text, '\\n', { plain = true }) }
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    c = Child(Path(tmp_path_factory.mktemp("lines")))
    try:
        yield c
    finally:
        c.close()


PIECES = ["\n", "\n\n", "\r", "\r\n", "a", "tok ", "é", "😀", "\0"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXT | st.text())
def test_lines_of_splits_as_vim_split(child: Child, text: str) -> None:
    ours, neovim = child.lua(SPLIT, text)
    assert ours == neovim


SPLIT_AT = """
local text, sep = ...
return { require('kznllm.text').split(text, sep), vim.split(text, sep, { plain = true }) }
"""


@pytest.mark.parametrize("sep", ["\r\n", "\r", "%."], ids=["crlf", "cr", "pattern-characters"])
@settings(max_examples=100, deadline=None)
@given(text=TEXT | st.text())
def test_split_at_any_line_break_cuts_as_vim_split(child: Child, sep: str, text: str) -> None:
    ours, neovim = child.lua(SPLIT_AT, text + sep + "%." + text, sep)
    assert ours == neovim


def test_a_bursts_last_write_splits_into_its_lines(child: Child) -> None:
    text = "".join(f"tok{i}\n" if i % 16 == 15 else f"tok{i} " for i in range(5000))
    ours, neovim = child.lua(SPLIT, text)
    assert ours == neovim and len(ours) == 5000 // 16 + 1
