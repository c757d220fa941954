"""A linewise replace's answer without blank lines at its ends (kznllm_py/fill/edges.py),
pure: the same result whatever the stream's chunking, and only blanks held back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.fill.edges import Edges, trimmed
from kznllm_py.fill.shape import Shape
from kznllm_py.fill.shaping import Pipe


@pytest.mark.parametrize(
    ("answer", "written"),
    [
        ("def f():\n    return 2", "def f():\n    return 2"),
        ("def f():\n    return 2\n", "def f():\n    return 2"),
        ("def f():\n    return 2\n\n\n", "def f():\n    return 2"),
        ("\n\n    x = 1\n\n    y = 2\n\n", "    x = 1\n\n    y = 2"),  # inner blanks stay
        ("  \n\t\n  x\n  \n", "  x"),  # a blank line's white space is blank
        ("x = 1  \n\n", "x = 1  "),  # the last line's own trailing white space stays
        ("\r\nx\r\ny\r\n\r\n", "x\r\ny"),  # CRLF: no CR left behind
        ("x\r\n", "x"),
        ("", ""),
        ("\n \n\t", ""),  # nothing but blanks: nothing
    ],
)
def test_blank_lines_at_the_answers_ends_are_dropped(answer: str, written: str) -> None:
    assert trimmed(answer) == written


def test_only_blanks_are_held_back() -> None:
    edges = Edges()
    assert edges.push("\n\n  ") == ""  # the indentation of a line not known yet
    assert edges.push("x = 1") == "  x = 1"
    assert edges.push("\n\n") == ""
    assert edges.push("  y") == "\n\n  y"  # more text: the blanks were inner ones
    assert edges.push(" = 2\n") == " = 2"
    assert edges.push("z = ") == "\nz = "  # a line's own white space: at once
    assert edges.push("3 \t\r") == "3 \t"  # a CR may start a CRLF: it waits
    edges.finish()
    assert edges.push("\n\nmore") == ""  # the end was the end


@settings(max_examples=300, deadline=None)
@given(
    answer=st.lists(st.sampled_from(["\n", "\r\n", " ", "\t", "x", "  y = 1", "z\n"])).map("".join),
    data=st.data(),
)
def test_any_chunking_gives_the_result_of_the_whole_text(answer: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(answer)), max_size=8)))
    chunks = [answer[i:j] for i, j in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    edges = Edges()
    out = "".join(edges.push(c) for c in chunks)
    assert out == trimmed(answer)
    # what was cut is blank lines at the ends only
    assert out.strip(" \t\r\n") == answer.strip(" \t\r\n")
    assert not out.startswith(("\n", "\r")) and not out.endswith("\n")


def test_a_replace_pipe_reindents_then_drops_the_blank_edges() -> None:
    got: list[str] = []
    pipe = Pipe(got.append, Shape("    ", dedented_only=True), lines=True)
    for piece in ["\n", "if x:\n", "    y()\n", "\n"]:
        pipe.push(piece)
    pipe.close()
    pipe.close()  # the flush at Done, then the end: once
    assert "".join(got) == "    if x:\n        y()"
    assert pipe.final("\nz()\n\n") == "    z()"  # a chatty answer's code, cut out
    plain = Pipe(got.append, None, lines=False)
    assert plain.final("\nz()\n") == "\nz()\n"  # not a linewise replace: as it is
