"""<think> blocks at the start of an answer are reasoning, whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.stream.think import ThinkSplitter


def run(chunks: list[str]) -> tuple[str, str]:
    s = ThinkSplitter()
    answer, reasoning = "", ""
    for c in chunks:
        a, r = s.push(c)
        answer, reasoning = answer + a, reasoning + r
    a, r = s.finish()
    return answer + a, reasoning + r


@pytest.mark.parametrize(
    ("text", "answer", "reasoning"),
    [
        ("<think>hmm</think>\n\nx = 1", "x = 1", "hmm"),
        ("  <think>a\nb</think>code", "code", "a\nb"),
        ("x = '<think>' + y", "x = '<think>' + y", ""),
        ("answer first <think>no</think>", "answer first <think>no</think>", ""),
        ("<think>never closed", "", "never closed"),
        ("<thi", "<thi", ""),
        ("", "", ""),
        ("<think></think>\nok", "ok", ""),
    ],
)
def test_leading_think_block_is_reasoning(text, answer, reasoning):
    assert run([text]) == (answer, reasoning)
    assert run(list(text)) == (answer, reasoning)


def test_answer_without_think_is_released_at_once():
    s = ThinkSplitter()
    assert s.push("def f") == ("def f", "")


@settings(max_examples=300, deadline=None)
@given(
    think=st.text(st.sampled_from(list("ab<>/thinkx \n")), max_size=20),
    body=st.text(st.sampled_from(list("ab<>/thinkx \n")), max_size=20),
    tagged=st.booleans(),
    data=st.data(),
)
def test_any_chunking_gives_the_unsplit_result(think, body, tagged, data):
    text = f"<think>{think}</think>{body}" if tagged else body
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=8)))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert run(chunks) == run([text])
