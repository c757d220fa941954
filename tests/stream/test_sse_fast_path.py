"""The SSE decoder's fast path (a read of one-line `data: ` events, each with its blank
line, cut in C-level passes) against its line-by-line path: a stream fed one byte at a
time never takes the fast path (no read completes two lines), so every chunking of any
mix of lines must give what that gives, event for event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.stream.sse import Event, SSEDecoder

LINE = st.one_of(
    st.builds(lambda t: "data: " + t, st.text(max_size=6)),
    st.builds(lambda t: "data: " + t, st.text(max_size=6)),
    st.builds(lambda t: "data:" + t, st.text(max_size=4)),
    st.sampled_from(
        ["", "", "", ": keep-alive", "event: ping", "event:", "id: 7", "id", "retry: 5"]
    ),
    st.text(max_size=5),
)
END = st.sampled_from(["\n", "\n", "\r\n", "\r"])


def decode(body: bytes, cuts: list[int]) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        events.extend(decoder.decode(body[a:b]))
    events.extend(decoder.flush())
    return events


@st.composite
def cut_body(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A body of any mix of lines and line ends, and up to 5 places to cut it."""
    lines = draw(st.lists(st.tuples(LINE, END), max_size=30))
    body = "".join(line + end for line, end in lines).encode("utf-8", "surrogatepass")
    return body, sorted(draw(st.lists(st.integers(0, len(body)), max_size=5)))


def bytewise(body: bytes) -> list[Event]:
    """The events of `body` fed one byte at a time (never the fast path)."""
    return decode(body, list(range(1, len(body))))


@settings(max_examples=500, deadline=None)
@given(cut_body())
def test_every_chunking_gives_what_one_byte_at_a_time_gives(cut: tuple[bytes, list[int]]):
    body, cuts = cut
    want = bytewise(body)
    assert decode(body, cuts) == want
    assert decode(body, []) == want


def test_a_read_of_plain_events_with_a_data_line_still_open():
    decoder = SSEDecoder()
    got = decoder.decode(b"data: a\n\ndata: b\n\ndata: c\n")
    assert [e.data for e in got] == ["a", "b"]
    assert [e.data for e in decoder.decode(b"\n")] == ["c"]


def test_events_of_a_later_read_carry_the_last_id_and_retry():
    decoder = SSEDecoder()
    assert decoder.decode(b"id: 7\nretry: 30\ndata: a\n\n") == [Event("a", "message", "7", 30)]
    got = decoder.decode(b"data: b\n\ndata: c\n\n")
    assert got == [Event("b", "message", "7", 30), Event("c", "message", "7", 30)]
