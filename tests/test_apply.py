""":KznApply's decisions as plain data (kznllm_py/apply.py): which answer of a
conversation, whether it finished, what of it is code, and where the selection stands
in a buffer's lines now. The editor side is in tests/nvim/test_editor_apply.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kznllm_py import apply, secrets
from kznllm_py.apply import ApplyError, Span, locate, locate_answer, plan, span_of
from kznllm_py.history import HistoryStore, NewEntry
from kznllm_py.history.records import Entry

BASE = Entry(
    id=1, started_at=0.0, finished_at=1.0, preset_id="p", provider="openai", model="m",
    mode="debug", status="ok", error=None, input_tokens=None, output_tokens=None,
    first_token_ms=None, duration_ms=None, path="/src/m.py", parent_id=None, query="tidy",
    filetype="python", selection="    return x+1", request="", reasoning="",
    response="    return x + 1", prompt="", span="",
)  # fmt: skip


def entry(id: int, **kw: Any) -> Entry:
    fields: dict[str, Any] = {"id": id, "parent_id": id - 1 if id > 1 else None}
    if id > 1:
        fields.update(mode="chat", selection="")
    fields.update(kw)
    return replace(BASE, **fields)


# -- which answer -------------------------------------------------------------------------


def test_an_answer_that_did_not_finish_is_refused_saying_why_and_forced_with_bang() -> None:
    for status, error, why in [
        ("cancelled", None, "was cancelled"),
        ("error", "the stream broke", "ended in an error (the stream broke)"),
        ("running", None, "has not finished (it streams in another Neovim, or its Neovim quit"),
    ]:
        chain = [entry(1, status=status, error=error, response="def f(x):\n    y = 1")]
        with pytest.raises(ApplyError, match=r"#1 .*:KznApply! applies it anyway") as exc:
            plan(chain, force=False)
        assert why in str(exc.value)
        forced = plan(chain, force=True)
        assert forced.code == "def f(x):\n    y = 1"
        assert why in forced.note
    running = [entry(1, status="running")]
    with pytest.raises(ApplyError, match="is still streaming"):
        plan(running, force=False, live={1})


def test_the_latest_code_answer_of_a_conversation_goes_where_the_first_request_asked() -> None:
    chain = [
        entry(1, span='{"kind": "block", "rows": [[1, 0, 3]]}'),
        entry(2, response="Here it is, shorter:\n```python\nreturn x+1\n```\nDone."),
        entry(3, response="It is already as short as it can be, I think."),
        entry(4, response="", status="cancelled"),
    ]
    p = plan(chain, force=False)
    assert (p.entry_id, p.root_id, p.code, p.selection, p.path) == (
        2, 1, "return x+1", "    return x+1", "/src/m.py",
    )  # fmt: skip
    assert p.span == Span("block", rows=((1, 0, 3),))
    assert "#3, #4 had none" in p.note
    # a follow-up answered with bare code (as the system asked) is code
    bare = plan([*chain[:1], entry(2, response="return x+1\n")], force=False)
    assert bare.code == "return x+1"


def test_a_conversation_that_did_not_start_from_a_selection_cannot_be_applied() -> None:
    with pytest.raises(ApplyError, match="#1, was not a replace"):
        plan([entry(1, selection=""), entry(2, response="x = 1")], force=False)
    with pytest.raises(ApplyError, match="#5: it was not a replace"):
        plan([entry(5, selection="", parent_id=None)], force=False)


def test_several_code_blocks_are_refused_and_prose_only_is_no_code() -> None:
    two = "Either\n```\na = 1\n```\nor\n```\na = 2\n```"
    with pytest.raises(ApplyError, match="has 2 code blocks"):
        plan([entry(1), entry(2, response=two)], force=False)
    with pytest.raises(ApplyError, match="no answer of the conversation"):
        plan(
            [entry(1, response=""), entry(2, response="This cannot be made shorter.")], force=False
        )


def test_prose_is_told_from_code() -> None:
    assert apply.reads_as_prose("It is already as short as it can be.")
    assert apply.reads_as_prose("Sure. Here is why:\n\n- It avoids a copy of the list.\n")
    for code in [
        "return x + 1",
        "# Return the sum of the values in the list.\nreturn sum(xs)",
        'def f(x):\n    """Add one to x.\n\n    The value is an int, the result one more.\n'
        '    """\n    return x + 1',
        "SELECT name FROM users WHERE id = 1;",
    ]:
        assert not apply.reads_as_prose(code), code
    # a selection of prose (a README paragraph): a prose answer is the code
    prose = "This tool is fast and small."
    chain = [entry(1, selection=prose, response="x"), entry(2, response="It is fast and tiny.")]
    assert plan(chain, force=False).code == "It is fast and tiny."


def test_the_answer_takes_the_selections_line_breaks() -> None:
    crlf = "def f(x):\r\n    return x + 1\r\n"
    assert plan([entry(1, response=crlf)], force=False).code == "def f(x):\n    return x + 1"
    dos = entry(1, selection="a\r\nb", response="c\r\nd\r\n")
    assert plan([dos], force=False).code == "c\r\nd"


# -- where it stood --------------------------------------------------------------------------


def test_a_span_keeps_the_text_around_the_selection_on_its_lines() -> None:
    p = {"span": {"kind": "range", "range": [3, 11, 3, 14], "last_len": 20}}
    s = span_of(p, "x+1", "import os\ndef f(x):\n\n    return ", "  # one\nprint(f(1))")
    assert s == Span("range", (3, 11), (3, 14), "    return ", "  # one", 6)
    assert Span.from_json(s.to_json()) == s
    block = span_of({"span": {"kind": "block", "rows": [[0, 2, 4], [1, 2, 4]]}}, "cd\nij", "", "")
    assert block is not None and Span.from_json(block.to_json()) == block
    assert span_of({}, "x", "", "") is None and span_of(p, "", "", "") is None
    for bad in ["", "[]", '{"kind": "range"}', '{"kind": "block", "rows": [[1, -1, 2]]}', "{"]:
        assert Span.from_json(bad) is None
    # a block's rows are consecutive, each starting at or before its end
    for rows in ["[[1, 0, 2], [1, 0, 2]]", "[[2, 0, 2], [1, 0, 2]]", "[[1, 3, 2]]"]:
        assert Span.from_json('{"kind": "block", "rows": ' + rows + "}") is None
    # a key in the line around the selection is redacted, as the selection is
    secrets.remember("sk-test-apply-span-" + "a" * 30)
    keyed = span_of(p, "x", 'k = "sk-test-apply-span-' + "a" * 30 + '"; ', "")
    assert keyed is not None and "a" * 30 not in keyed.head


def test_history_keeps_the_span(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    span = Span("block", rows=((0, 2, 4), (1, 2, 4))).to_json()
    entry_id = store.start(NewEntry(mode="replace", selection="cd\nij", span=span))
    got = store.get(entry_id)
    assert got is not None and Span.from_json(got.span) == Span.from_json(span)


# -- where it is now ---------------------------------------------------------------------------

LINES = ["def f(x):", "    return 10", "def g(x):", "    return 1", "print(f(1))"]


def line_span(row: int, text: str) -> Span:
    return Span("range", (row, 0), (row, len(text.encode())), "", "", 0)


def test_a_selection_matches_whole_lines_never_inside_a_longer_line() -> None:
    # the selection `    return 1` was line 4; two lines came above it since
    moved = ["# a", "# b", *LINES]
    assert locate(moved, "    return 1", line_span(3, "    return 1")).range == (5, 0, 5, 12)
    # without a recorded span (older entries) too
    assert locate(moved, "    return 1", None).range == (5, 0, 5, 12)
    # gone: `    return 10` does not hold it
    with pytest.raises(ApplyError, match=r"no longer at line 4 in m\.py"):
        locate(LINES[:3], "    return 1", line_span(3, "    return 1"), name="m.py")


def test_a_charwise_selection_matches_with_its_lines_as_they_were() -> None:
    span = Span("range", (3, 11), (3, 12), "    return ", "", 0)
    assert locate(LINES, "1", span).range == (3, 11, 3, 12)
    assert locate(["", *LINES], "1", span).range == (4, 11, 4, 12)
    with pytest.raises(ApplyError, match="no longer"):
        locate(["    return 1  # changed", "x"], "1", span)
    multi = Span("range", (0, 4), (1, 10), "def ", " 10", 3)
    sel = "f(x):\n    return"
    assert locate(["", "def f(x):", "    return 10"], sel, multi).range == (1, 4, 2, 10)
    with pytest.raises(ApplyError):  # the text after it on its last line is not ` 10`
        locate(["", "def f(x):", "    return 1"], sel, multi)


def test_a_selection_in_more_than_one_place_is_refused_when_not_at_its_own() -> None:
    twice = ["# new", *LINES, "    return 1"]
    with pytest.raises(ApplyError, match=r"more than once \(lines 5, 7\)"):
        locate(twice, "    return 1", line_span(3, "    return 1"))
    # at its recorded place it is the one meant, however often it stands elsewhere
    assert locate([*LINES, "    return 1"], "    return 1", line_span(3, "x" * 12)).range == (
        3, 0, 3, 12,
    )  # fmt: skip


def test_a_block_matches_as_a_block_never_as_a_run_of_text() -> None:
    span = Span("block", rows=((0, 2, 4), (1, 2, 4)))
    lines = ["abcdef", "ghijkl", "mnopqr"]
    assert locate(lines, "cd\nij", span).rows == ((0, 2, 4), (1, 2, 4))
    # moved down a line and right two columns, together
    moved = ["", "  abcdef", "  ghijkl"]
    assert locate(moved, "cd\nij", span).rows == ((1, 4, 6), (2, 4, 6))
    # "cd\nij" as one run across two lines is not the block
    with pytest.raises(ApplyError, match="block it was asked about is no longer at lines 1-2"):
        locate(["xxabcd", "ijyy"], "cd\nij", span)
    # a text that stands everywhere is searched within a bound
    with pytest.raises(ApplyError, match="too many places to search"):
        locate(["a" * 1000] * 300, "a\nb", Span("block", rows=((0, 0, 1), (1, 0, 1))))


def test_an_answer_already_in_place_says_so() -> None:
    span = line_span(3, "    return 1")
    applied = [*LINES[:3], "    return 2", *LINES[4:]]
    with pytest.raises(ApplyError, match="is already applied: the answer stands at line 4"):
        locate_answer(applied, "    return 1", "    return 2", span)
    assert locate_answer(LINES, "    return 1", "    return 2", span).range == (3, 0, 3, 12)


def test_a_replace_answer_keeps_its_one_closed_block_whatever_else_starts_like_a_fence() -> None:
    """:KznApply of a replace's own answer reads the fenced blocks (a line that starts
    with ``` but is no fence is prose), unlike the stream's end (tests/stream/test_fences.py:
    the same texts)."""
    from tests.stream.test_fences import EDGES

    got = {
        name: apply.code_of(entry(1, response=text), replace=True, prose_ok=False)
        for name, text in EDGES.items()
    }
    assert got == {
        "prose_after": ("code", "x = 1"),
        # prose around is looked for outside the first and last line starting with ```
        "prose_before": ("code", EDGES["prose_before"]),
        "nested_open": ("code", "a\n```py\nb"),
        "opened_last": ("code", "x = 1"),  # the block opened last is empty: not counted
        "closing_cr": ("code", "x = 1\r"),
        "info_space": ("code", EDGES["info_space"]),
    }
