"""The review tests' oracle (tests/review_oracle.py): pure, over plain data."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.review_oracle import Hunk, diff, resolve, split_lines

ORIGINAL = ["def total(xs):", "    s = 0", "    for x in xs:", "        s += x", "    return s"]


def test_an_unchanged_answer_has_no_hunks():
    assert diff(ORIGINAL, "\n".join(ORIGINAL), complete=True).hunks == ()


def test_a_changed_line_is_a_change_hunk_with_the_original_line():
    answer = "\n".join(ORIGINAL).replace("s = 0", "s = 0.0")
    [hunk] = diff(ORIGINAL, answer, complete=True).hunks
    assert hunk == Hunk(new_start=1, new_count=1, old_start=1, old=("    s = 0",))
    assert hunk.kind == "change"


def test_added_and_removed_lines_are_add_and_delete_hunks():
    answer = "\n".join(["# sums", *ORIGINAL[:2], *ORIGINAL[4:]])
    hunks = diff(ORIGINAL, answer, complete=True).hunks
    assert [(h.kind, h.new_start, h.new_count, h.old) for h in hunks] == [
        ("add", 0, 1, ()),
        ("delete", 3, 0, ("    for x in xs:", "        s += x")),
    ]


def test_while_streaming_the_unreached_original_is_pending_not_deleted():
    # two lines in, the third still growing
    d = diff(ORIGINAL, "def total(xs):\n    s = 0\n    for", complete=False)
    assert d.hunks == ()
    assert d.pending == tuple(ORIGINAL[2:])
    assert d.compared == 2


def test_while_streaming_new_lines_past_the_last_match_show_as_added():
    d = diff(ORIGINAL, "def total(xs):\n    return sum(xs)\n", complete=False)
    assert [(h.kind, h.new_start, h.new_count) for h in d.hunks] == [("add", 1, 1)]
    assert d.pending == tuple(ORIGINAL[1:])
    final = diff(ORIGINAL, "def total(xs):\n    return sum(xs)", complete=True)
    assert [(h.kind, h.new_start, h.new_count, h.old) for h in final.hunks] == [
        ("change", 1, 1, tuple(ORIGINAL[1:])),
    ]


def test_resolve_gives_exactly_the_hunks_chosen():
    answer = "\n".join(["# sums", "def total(xs):", "    return sum(xs)"])
    hunks = diff(ORIGINAL, answer, complete=True).hunks
    assert len(hunks) == 2
    assert resolve(ORIGINAL, answer, [True, True]) == answer
    assert resolve(ORIGINAL, answer, [False, False]) == "\n".join(ORIGINAL)
    assert resolve(ORIGINAL, answer, [True, False]) == "\n".join(["# sums", *ORIGINAL])
    assert resolve(ORIGINAL, answer, [False, True]) == "def total(xs):\n    return sum(xs)"


lines = st.lists(st.sampled_from(["a", "b", "c", "", "  d", "é"]), max_size=12)


@given(lines, lines)
def test_property_accepting_all_gives_the_answer_and_rejecting_all_the_original(
    old: list[str], new: list[str]
):
    answer = "\n".join(new)
    hunks = diff(old, answer, complete=True).hunks
    assert resolve(old, answer, [True] * len(hunks)) == answer
    assert resolve(old, answer, [False] * len(hunks)) == "\n".join(old)


@given(lines, st.text(alphabet="abc \n", max_size=40))
def test_property_a_streaming_diff_covers_the_compared_lines_and_keeps_the_rest_pending(
    old: list[str], answer: str
):
    d = diff(old, answer, complete=False)
    assert d.compared == len(split_lines(answer)) - 1
    deleted = sum(len(h.old) for h in d.hunks)
    matched = d.compared - sum(h.new_count for h in d.hunks)
    assert deleted + matched + len(d.pending) == len(old)
    assert all(h.new_start + h.new_count <= d.compared for h in d.hunks)
