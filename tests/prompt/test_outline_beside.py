"""The outline leaves out what the lines around the selection already show: a line in
their place says which lines those are, and a file sent whole around the selection has
no outline at all (its every declaration is in the request already). Pure, and in a real
editor against the loopback server."""

from __future__ import annotations

import re

from kznllm_py.prompt.sources import outline
from kznllm_py.prompt.sources.outline import Entry, Outline
from tests.nvim_child import Child
from tests.prompt.test_context_scope import c_buffer, c_function, fill_at
from tests.servers import LoopbackServer

ENTRIES = tuple(Entry(line, 0, f"int f{line}(void) {{") for line in (3, 40, 80, 120, 160))


def test_the_entries_the_lines_around_show_are_left_out_and_marked_in_their_place():
    shown = outline.beside(Outline(ENTRIES, cursor=80), 60, 130)
    assert shown is not None
    assert outline.render(shown).split("\n") == [
        "3: int f3(void) {",
        "40: int f40(void) {",
        "[lines 60-130: the code around the selection, sent below]",
        "160: int f160(void) {",
    ]


def test_an_outline_the_lines_around_show_whole_is_none_unless_more_were_left_out():
    assert outline.beside(Outline(ENTRIES, cursor=80), 1, 200) is None
    capped = outline.beside(Outline(ENTRIES, cursor=80, more=7), 1, 200)
    assert capped is not None
    assert outline.render(capped) == (
        "[lines 1-200: the code around the selection, sent below]\n[... 7 more definitions]"
    )


def test_the_mark_stays_when_the_outline_is_cut_to_its_room():
    many = tuple(Entry(line, 0, f"int function_number_{line}(void) {{") for line in range(1, 400))
    shown = outline.beside(Outline(many, cursor=200), 150, 250)
    assert shown is not None
    text = outline.render(shown, tokens=120)
    assert "[lines 150-250: the code around the selection, sent below]" in text
    assert "249: " not in text and "[... " in text


def test_a_mark_with_no_entry_after_it_ends_the_outline_after_the_gap_before_it():
    # every entry above the lines around, the nearest the cursor (line 1) kept: the
    # entries cut before the mark are counted before it, the editor's own cut after
    many = tuple(Entry(line, 0, f"int function_number_{line}(void) {{") for line in range(1, 400))
    shown = outline.beside(Outline(many, cursor=1, more=7), 450, 500)
    assert shown is not None
    lines = outline.render(shown, tokens=120).split("\n")
    assert lines[0] == "1: int function_number_1(void) {"
    kept = len(lines) - 3
    assert lines[kept - 1] == f"{kept}: int function_number_{kept}(void) {{"
    assert lines[-3:] == [
        f"[... {len(many) - kept} more definitions]",
        "[lines 450-500: the code around the selection, sent below]",
        "[... 7 more definitions]",
    ]


def test_a_small_file_sent_whole_goes_without_an_outline_and_a_long_one_keeps_the_rest(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", ""]
    lines += c_function("first", 5) + c_function("second", 5) + c_function("third", 5)
    c_buffer(nvim, lines, server)
    user = fill_at(nvim, server, 12)
    assert "outline" not in user  # every declaration is in the lines around already
    assert user.count("static long third(") == 1
    # a long file: the far declarations only, and a line for what is around
    far = [*lines, *c_function("middle", 400), *c_function("far_end", 5)]
    nvim.set_lines(far)
    user = fill_at(nvim, server, 12)
    listed = user.split("its definitions (line: declaration) ---", 1)[1].split("\n---", 1)[0]
    assert "static long far_end(" in listed
    assert "static long second(" not in listed
    assert "the code around the selection, sent below]" in listed


def test_a_dense_file_lists_the_definitions_beyond_the_lines_around_not_only_a_mark(
    nvim: Child, server: LoopbackServer
):
    """2,000 one-line functions: the 800 lines around the cursor show 800 of them; the
    editor gathers as many more, so the outline lists the nearest ones beyond them."""
    lines = [f"int f{i}(void) {{ return {i}; }}" for i in range(2000)]
    c_buffer(nvim, lines, server, context_lines=400)
    user = fill_at(nvim, server, 1000)
    listed = user.split("its definitions (line: declaration) ---", 1)[1].split("\n---", 1)[0]
    mark = re.search(r"\[lines (\d+)-(\d+): the code around the selection, sent below\]", listed)
    assert mark is not None, listed[:400]
    first, last = int(mark[1]), int(mark[2])
    assert first < 1000 < last
    # the nearest ones beyond the lines sent, on both sides; none of those inside
    assert f"\n{first - 1}: int f{first - 2}(void)" in listed
    assert f"\n{last + 1}: int f{last}(void)" in listed
    assert "\n1000: int f999(void)" not in listed
