"""The OpenAI parser's fast path for a whole read (Parser.feed_into) against its slow
path (Parser.feed, event by event): the same deltas, consecutive text joined, the same
error with what came before it kept, for any mix of events: the common shape, shapes one
lookup away from it (a finish reason, usage, an error, a second choice, reasoning,
content that is not a string), odd JSON and `[DONE]` anywhere."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.errors import KznError
from kznllm_py.providers import openai
from kznllm_py.providers.base import Delta, TextDelta
from kznllm_py.stream.sse import Event, SSEDecoder
from tests.fuzzing import merged

TEXT = st.text(min_size=1, max_size=8)
ODD = st.one_of(st.none(), st.integers(-1, 2), st.booleans(), TEXT, st.just([]), st.just({}))


PERTURB = (
    "none",
    "role",
    "index",
    "finish_reason",
    "text",
    "choices",
    "usage",
    "error",
    "object",
    "content",
    "reasoning",
    "delta",
)


@st.composite
def chunk(draw: st.DrawFn) -> str:
    """Mostly the common shape, each with at most two things changed (a key added, a
    value of another type), so that every check of the fast path meets the case it
    guards; sometimes `[DONE]` or JSON that is not an event."""
    kind = draw(st.integers(0, 15))
    if kind == 0:
        return "[DONE]"
    if kind == 1:
        return draw(
            st.sampled_from(
                ["{", "nul", "[1]", '"x"', "{}", '{"a":1},{"b":2}', "", '{"choices": [{}]}']
            )
        )
    delta: dict[str, Any] = {"content": draw(TEXT)}
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
    obj: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}
    for what in draw(st.lists(st.sampled_from(PERTURB), max_size=2)):
        if what == "role":
            delta["role"] = draw(st.sampled_from(["assistant", None, 3]))
        elif what == "index":
            choice["index"] = draw(st.one_of(ODD, st.just(1)))
        elif what == "finish_reason":
            choice["finish_reason"] = draw(st.one_of(st.just("stop"), ODD))
        elif what == "text":
            choice["text"] = draw(ODD)
        elif what == "choices":
            obj["choices"] = draw(
                st.sampled_from(
                    [[], [choice, {"index": 1, "delta": {"content": "z"}}], None, "x", [3], {}]
                )
            )
        elif what == "usage":
            obj["usage"] = draw(
                st.one_of(st.just({"prompt_tokens": 1, "completion_tokens": 2}), ODD)
            )
        elif what == "error":
            obj["error"] = draw(st.one_of(st.just({"message": "boom"}), ODD))
        elif what == "object":
            obj["object"] = draw(st.sampled_from(["error", None]))
        elif what == "content":
            delta["content"] = draw(ODD)
        elif what == "reasoning":
            key = draw(
                st.sampled_from(["reasoning_content", "reasoning", "reasoning_details", "x"])
            )
            delta[key] = draw(st.one_of(ODD, st.just([{"type": "reasoning.text", "text": "r"}])))
        elif what == "delta":
            choice["delta"] = draw(ODD)
    if draw(st.booleans()):
        return json.dumps(obj, ensure_ascii=draw(st.booleans()))
    return json.dumps(obj, separators=(",", ":"))


def slow(events: list[Event]) -> tuple[list[Delta], str | None]:
    parser = openai.Parser()
    out: list[Delta] = []
    try:
        for event in events:
            out.extend(parser.feed(event))
    except KznError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


def fast(reads: list[list[Event]]) -> tuple[list[Delta], str | None]:
    parser = openai.Parser()
    out: list[Delta] = []
    try:
        for read in reads:
            parser.feed_into(read, out)
    except KznError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


@settings(max_examples=600, deadline=None)
@given(st.lists(chunk(), max_size=12), st.data())
def test_feed_into_gives_what_feed_gives_event_by_event(datas: list[str], data: st.DataObject):
    events = [Event(d) for d in datas]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=4)))
    reads = [events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)]
    want, want_error = slow(events)
    got, got_error = fast(reads)
    assert got_error == want_error
    assert merged(got) == merged(want)


@settings(max_examples=1500, deadline=None)
@given(chunk())
def test_feed_into_reads_each_event_as_feed_does(data: str):
    events = [Event(data)]
    want, want_error = slow(events)
    got, got_error = fast([events])
    assert (got, got_error) == (want, want_error)


def test_feed_into_joins_a_reads_text_once():
    events = [Event(json.dumps({"choices": [{"delta": {"content": t}}]})) for t in "abc"]
    out: list[Delta] = []
    openai.Parser().feed_into(events, out)
    assert out == [TextDelta("abc")]


def test_feed_into_keeps_what_came_before_a_bad_event():
    parser = openai.Parser()
    good = Event('{"choices":[{"delta":{"content":"kept"}}]}')
    out: list[Delta] = []
    try:
        parser.feed_into([good, Event("{not json")], out)
    except KznError as exc:
        assert "malformed JSON" in str(exc)
    else:
        raise AssertionError("a malformed event must raise")
    assert out == [TextDelta("kept")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=30), st.data())
def test_a_stream_through_sse_and_feed_into_is_byte_exact(texts: list[str], data: st.DataObject):
    """Every chunking of a real-shaped stream gives the text, whole."""
    body = (
        b"".join(
            b"data: "
            + json.dumps(
                {"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
            ).encode()
            + b"\n\n"
            for t in texts
        )
        + b"data: [DONE]\n\n"
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    decoder = SSEDecoder()
    parser = openai.Parser()
    out: list[Delta] = []
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        parser.feed_into(decoder.decode(body[a:b]), out)
    parser.feed_into(decoder.flush(), out)
    assert "".join(d.text for d in out if type(d) is TextDelta) == "".join(texts)
    assert parser.done
