"""The replace-mode fence stripper: whatever the chunking, the output equals the
answer with a surrounding fence removed, and unfenced answers pass through at once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.stream.fences import FenceStripper


def run(chunks: list[str]) -> str:
    f = FenceStripper()
    return "".join(f.push(c) for c in chunks) + f.finish()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("```python\nx = 1\n```", "x = 1"),
        ("```python\nx = 1\n```\n", "x = 1"),
        ("```\nx = 1\ny = 2\n```", "x = 1\ny = 2"),
        ("\n```lua\nlocal a = 1\n```  \n", "local a = 1"),
        ("```py\r\nx = 1\r\n```\r\n", "x = 1\r"),
        ("x = 1\n```", "x = 1\n```"),  # no opening fence: nothing stripped
        ("x = '```'\ny", "x = '```'\ny"),
        ("```python\nprint('```')\nz\n```", "print('```')\nz"),
        ("```python\na\n```\nb", "a\n```\nb"),  # text after the fence: keep it all
        ("``x", "``x"),
        ("`code`", "`code`"),
        ("```python", ""),
        ("", ""),
        ("```not a fence line\nx", "```not a fence line\nx"),
    ],
)
def test_surrounding_fence_is_removed_and_nothing_else(answer: str, expected: str) -> None:
    assert run([answer]) == expected
    assert run(list(answer)) == expected


def test_unfenced_answer_is_released_without_delay() -> None:
    f = FenceStripper()
    assert f.push("def f():") == "def f():"
    assert f.push("\n    ```") == "\n    ```"


def test_fenced_answer_holds_back_only_a_possible_closing_line() -> None:
    f = FenceStripper()
    assert f.push("```python\n") == ""
    assert f.push("a = 1\nb") == "a = 1\nb"
    assert f.push(" = 2\n``") == " = 2"
    assert f.push("`") == ""
    assert f.finish() == ""


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(st.sampled_from(list("ab` \n")), max_size=30),
    fenced=st.booleans(),
    data=st.data(),
)
def test_any_chunking_gives_the_unsplit_result(body: str, fenced: bool, data) -> None:
    answer = f"```python\n{body}\n```" if fenced else body
    cuts = sorted(data.draw(st.sets(st.integers(0, len(answer)), max_size=8)))
    chunks = [answer[i:j] for i, j in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    assert run(chunks) == run([answer])


def test_a_chatty_answer_keeps_only_its_one_code_block():
    from kznllm_py.stream.fences import only_code

    chatty = "Sure! Here is the fix:\n\n```python\ndef f():\n    return 1\n```\n\nIt returns 1."
    assert only_code(chatty) == "def f():\n    return 1"
    assert only_code("Here:\n```\nx = 1\n```") == "x = 1"  # no info string, no prose after


def test_answers_of_other_shapes_are_left_alone():
    from kznllm_py.stream.fences import only_code

    assert only_code("def f():\n    return 1") is None  # plain code
    assert only_code("```python\nx = 1\n```") is None  # only the block: no prose
    two = "a:\n```\nx\n```\nb:\n```\ny\n```"
    assert only_code(two) is None  # two blocks: which one?
    assert only_code("text\n```python\nx = 1") is None  # never closed
    assert only_code("text ``` inline ``` text") is None


# the edges the stream's end and :KznApply (tests/test_apply.py) see alike or apart
EDGES = {
    # a prose line that starts with ``` (not a fence: backticks in it) after the block
    "prose_after": "Here:\n```py\nx = 1\n```\n```a``` is how it is quoted.",
    # ... and before it
    "prose_before": "```a``` quotes it; the fix:\n```py\nx = 1\n```",
    # an opening fence line inside the block
    "nested_open": "Here:\n```py\na\n```py\nb\n```\nDone.",
    # a lone fence opened on the last line, after the block and prose
    "opened_last": "Here:\n```py\nx = 1\n```\nDone.\n```",
    # a closing fence line with blanks and a CR around it
    "closing_cr": "Here:\r\n```py\r\nx = 1\r\n  ```  \r\nDone.",
    # an info string with a space is no opening fence
    "info_space": "Here:\n```py title\nx = 1\n```\nDone.",
}


def test_the_stream_end_keeps_the_block_only_when_no_other_line_starts_like_a_fence():
    """A chatty answer at the end of a replace: any further line that starts with ```
    (a fence or prose) leaves the whole answer as it came."""
    from kznllm_py.stream.fences import only_code

    got = {name: only_code(text) for name, text in EDGES.items()}
    assert got == {
        "prose_after": None,
        "prose_before": None,
        "nested_open": None,
        "opened_last": None,
        "closing_cr": "x = 1\r",
        "info_space": None,
    }
