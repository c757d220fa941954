"""SSEDecoder.decode_runs (a run of plain one-line `data: ` events as one Run of their
whole lines, no Event each) against decode() fed one byte at a time: every chunking of
any mix of lines gives the same events, a run standing for plain message events with no
id and no retry."""

from __future__ import annotations

from hypothesis import given, settings

from kznllm_py.stream.sse import Event, Run, SSEDecoder
from tests.stream.test_sse_fast_path import bytewise, cut_body


def decode_runs(body: bytes, cuts: list[int]) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        for item in decoder.decode_runs(body[a:b]):
            if isinstance(item, Run):
                assert all(line.startswith("data: ") for line in item)
                events.extend(Event(data) for data in item.datas())
            else:
                events.append(item)
    events.extend(decoder.flush())
    return events


@settings(max_examples=500, deadline=None)
@given(cut_body())
def test_every_chunking_of_runs_gives_what_one_byte_at_a_time_gives(cut: tuple[bytes, list[int]]):
    body, cuts = cut
    assert decode_runs(body, cuts) == bytewise(body)


def test_a_read_of_plain_events_comes_as_one_run():
    body = b"".join(b"data: t%d\n\n" % i for i in range(100))
    (run,) = SSEDecoder().decode_runs(body)
    assert type(run) is Run
    assert run == [f"data: t{i}" for i in range(100)]
    assert run.datas() == [f"t{i}" for i in range(100)]


def test_after_an_id_events_come_one_by_one_with_it():
    decoder = SSEDecoder()
    assert decoder.decode_runs(b"id: 7\ndata: a\n\n") == [Event("a", id="7")]
    assert decoder.decode_runs(b"data: b\n\ndata: c\n\n") == [
        Event("b", id="7"),
        Event("c", id="7"),
    ]
