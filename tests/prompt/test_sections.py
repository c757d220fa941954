"""The context budget (kznllm_py/prompt/sections.py): the selection and the query first,
never cut; then each section in its order within its share; then the lines around; and
setup()'s `context` checked. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.errors import ConfigError
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.sections import (
    CUT_LINE,
    MIN_TOKENS,
    ContextOptions,
    Section,
    context_options,
    cut_to,
    fit,
    fit_around,
)


def lines(n: int, width: int = 40) -> str:
    return "\n".join(f"{i:04d} " + "x" * width for i in range(n))


def test_sections_are_placed_in_their_order_whatever_order_they_come_in():
    given_ = [
        Section("outline", "outline", "def f(): ..."),
        Section("rules", "AGENTS.md", "use tabs", system=True),
        Section("scope", "function f", "def f():\n    pass"),
        Section("diagnostics", "diagnostics", "1:1 ERROR x"),
    ]
    out = fit(given_, budget=10_000)
    assert [p.kind for p in out.placed] == ["rules", "scope", "diagnostics", "outline"]
    assert not out.left and not any(p.cut for p in out.placed)
    assert out.placed[0].system


def test_a_section_over_its_share_is_cut_on_a_line_and_says_so():
    out = fit([Section("scope", "function f", lines(400))], budget=2_000)
    (placed,) = out.placed
    assert placed.cut and placed.text.endswith(CUT_LINE)
    assert placed.tokens <= 2_000 * 0.25
    kept = placed.text.split("\n")[:-1]
    assert kept == lines(400).split("\n")[: len(kept)] and len(kept) > 5


def test_the_selection_and_query_are_reserved_first_and_sections_get_what_is_left():
    out = fit(
        [Section("scope", "f", lines(50)), Section("outline", "o", lines(5))],
        budget=1_000,
        reserved=990,
    )
    assert not out.placed
    assert [lf.kind for lf in out.left] == ["scope", "outline"]
    assert out.left[0].reason == "over the context budget"
    full = fit([Section("scope", "f", "x")], budget=1_000, reserved=5_000)
    assert full.left[0].reason == "the selection and the query fill the context budget"
    assert full.remaining == 0


def test_empty_sections_are_dropped_silently():
    assert fit([Section("scope", "f", "  \n")], budget=1_000) == fit([], budget=1_000)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(max_size=300), max_size=60).map("\n".join),
    st.integers(MIN_TOKENS, 3_000),
)
def test_a_cut_text_always_fits_its_tokens(text: str, tokens: int):
    cut = cut_to(text, tokens)
    assert estimate_tokens(cut) <= tokens
    assert cut.endswith(CUT_LINE)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["rules", "scope", "diagnostics", "definitions", "outline", "git"]),
        max_size=8,
    ),
    st.integers(0, 20_000),
    st.integers(256, 40_000),
    st.integers(0, 3_000),
)
def test_what_is_placed_never_exceeds_the_budget_left_after_the_selection(
    kinds, reserved, budget, size
):
    out = fit(
        [Section(k, k, lines(size // 40 + 1)) for k in kinds], budget=budget, reserved=reserved
    )
    assert sum(p.tokens for p in out.placed) + out.remaining <= max(0, budget - reserved)
    assert len(out.placed) + len(out.left) == len(kinds)


def test_the_lines_around_keep_those_nearest_the_selection():
    before, after = lines(200), lines(200)
    b, a = fit_around(before, after, 500)
    assert before.endswith(b) and after.startswith(a)
    assert estimate_tokens(b) + estimate_tokens(a) <= 500
    assert b and a
    # what one side does not need goes to the other
    b2, a2 = fit_around("short", after, 500)
    assert b2 == "short" and estimate_tokens(a2) > 400
    assert fit_around("x", "y", 10) == ("x", "y")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("yes", "context must be false or a table"),
        ({"scope": "on"}, "context.scope must be true or false"),
        ({"budget": 10}, "context.budget must be a whole number of tokens, 256 or more"),
        ({"budget": 1000.5}, "context.budget"),
        ({"lsp_timeout": 60_000}, "context.lsp_timeout"),
        ({"sope": True}, "unknown field 'sope'"),
    ],
)
def test_a_bad_context_option_is_named(value, why):
    with pytest.raises(ConfigError, match=why.replace("(", r"\(")):
        context_options(value)


def test_context_switches_turn_section_kinds_on_and_off():
    assert context_options(None) == ContextOptions()
    default = ContextOptions()
    assert default.on("scope") and default.on("definitions") and not default.on("git")
    off = context_options(False)
    assert not any(
        off.on(k) for k in ("rules", "scope", "diagnostics", "definitions", "outline", "git")
    )
    some = context_options({"lsp": False, "git": True, "budget": 4000})
    assert not some.on("definitions") and some.on("git") and some.budget == 4000


def test_one_long_line_around_the_selection_keeps_its_characters_nearest_the_selection():
    # a minified file: the line the cursor is on is longer than the whole budget
    before, after = "x" * 50_000 + "NEAR", "NEAR" + "y" * 50_000
    b, a = fit_around(before, after, 1_000)
    assert b.endswith("NEAR") and a.startswith("NEAR") and before.endswith(b)
    assert 1_000 * 0.9 <= estimate_tokens(b) + estimate_tokens(a) <= 1_000
