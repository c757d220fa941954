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
