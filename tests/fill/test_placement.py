"""Where a normal-mode answer goes, as the host resolves it (pure): 'auto' by the
preset's fill-in-the-middle flag, and the prompt's context split at that spot, so the
model's `<cursor/>` is where the text will land."""

from __future__ import annotations

import pytest

from kznllm_py.fill.request import Spot
from kznllm_py.fill.turn import at_spot, placement
from kznllm_py.prompt.prompts import FillContext


@pytest.mark.parametrize(
    ("asked", "fim", "where"),
    [
        ("auto", False, "line"),
        ("auto", True, "cursor"),
        ("below", True, "below"),
        ("cursor", False, "cursor"),
        (None, False, None),  # replace mode, the debug view, a scratch buffer
        ("sideways", False, None),
    ],
)
def test_the_host_resolves_auto_placement_by_the_presets_fim(asked, fim, where):
    assert placement(asked, fim) == where


# "def f():" / "    return s" / "x", the cursor on the "r" of return: split after it
CTX = FillContext(mode="yap", query="q", before="def f():\n    r", after="eturn s\nx")
SPOT = Spot("    r", "eturn s", blank=False)


@pytest.mark.parametrize(
    ("where", "before", "after"),
    [
        ("cursor", "def f():\n    r", "eturn s\nx"),
        ("line", "def f():\n    return s\n", "x"),
        ("below", "def f():\n    return s\n", "x"),
        ("above", "def f():\n", "    return s\nx"),
    ],
)
def test_the_context_is_split_where_the_answer_goes(where, before, after):
    ctx = at_spot(CTX, where, SPOT)
    assert (ctx.before, ctx.after) == (before, after)
    assert ctx.before + ctx.after == CTX.before + CTX.after  # only the split moves


def test_on_a_blank_line_the_answer_goes_at_its_end_and_on_the_last_line_after_it():
    blank = FillContext(mode="yap", query="q", before="a\n ", after=" \nb")
    ctx = at_spot(blank, "line", Spot(" ", " ", blank=True))
    assert (ctx.before, ctx.after) == ("a\n  ", "\nb")
    last = FillContext(mode="yap", query="q", before="a\nx", after="yz")
    ctx = at_spot(last, "below", Spot("x", "yz", blank=False))
    assert (ctx.before, ctx.after) == ("a\nxyz\n", "")


def test_a_context_that_does_not_hold_the_line_is_left_as_it_is():
    assert at_spot(CTX, "below", Spot("nope", "eturn s")) is CTX
    assert at_spot(CTX, "below", None) is CTX
