"""SSEDecoder against the WHATWG "event stream" rules, fed the way a network feeds it:
events, lines, CRLF pairs and UTF-8 characters split anywhere."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kznllm_py.errors import StreamError
from kznllm_py.stream.ndjson import NDJSONDecoder
from kznllm_py.stream.sse import MAX_LINE, Event, SSEDecoder

BOM = "\ufeff".encode()


def decode_all(chunks: list[bytes]) -> list[Event]:
    dec = SSEDecoder()
    out: list[Event] = []
    for chunk in chunks:
        out.extend(dec.decode(chunk))
    out.extend(dec.flush())
    return out


def decode_one(raw: bytes) -> list[Event]:
    return decode_all([raw])


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def datas(events: list[Event]) -> list[str]:
    return [e.data for e in events]


# A stream that has a bit of everything: BOM, comment, CRLF, lone CR, multi-byte text
# (2-, 3- and 4-byte UTF-8), an event type, an id, a multi-line data field.
MIXED = (
    BOM
    + b": keep-alive\r\n"
    + "data: héllo €\r\n\r\n".encode()
    + b"event: note\rid: 7\rdata: line1\rdata: line2\r\r"
    + "data: \U0001f600 emoji\n\n".encode()
    + b"data: [DONE]\r\n\r\n"
)
MIXED_EXPECTED = [
    Event("héllo €"),
    Event("line1\nline2", "note", "7"),
    Event("\U0001f600 emoji", "message", "7"),
    Event("[DONE]", "message", "7"),
]


# -- chunking ----------------------------------------------------------------------------


def test_mixed_stream_unsplit():
    assert decode_one(MIXED) == MIXED_EXPECTED


@pytest.mark.parametrize("cut", range(len(MIXED) + 1))
def test_split_in_two_at_every_byte_offset_gives_the_same_events(cut):
    assert decode_all([MIXED[:cut], MIXED[cut:]]) == MIXED_EXPECTED


def test_one_byte_at_a_time_gives_the_same_events():
    assert decode_all([bytes([b]) for b in MIXED]) == MIXED_EXPECTED


def test_split_in_three_at_every_pair_of_offsets():
    raw = "data: a€b\r\n\r\ndata: \U0001f600\r\r".encode()
    expected = [Event("a€b"), Event("\U0001f600")]
    for i in range(len(raw) + 1):
        for j in range(i, len(raw) + 1):
            assert decode_all([raw[:i], raw[i:j], raw[j:]]) == expected, (i, j)


def test_split_inside_each_byte_of_a_four_byte_character():
    raw = "data: x\U0001f680y\n\n".encode()
    start = raw.index(b"\xf0")
    for cut in range(start, start + 5):
        assert decode_all([raw[:cut], raw[cut:]]) == [Event("x\U0001f680y")]


def test_split_between_cr_and_lf_of_crlf_is_one_line_end():
    # if the LF after a chunk-final CR counted as a second line end, the blank line
    # would dispatch "a" alone and "b" would be a separate event
    dec = SSEDecoder()
    assert dec.decode(b"data: a\r") == []
    assert dec.decode(b"\ndata: b\r") == []
    assert dec.decode(b"\n\r") == [Event("a\nb")]
    assert dec.decode(b"\n") == []  # the LF of that last CRLF, not another blank line
    assert dec.flush() == []


def test_chunk_final_cr_then_lone_cr_is_a_blank_line():
    dec = SSEDecoder()
    assert dec.decode(b"data: a\r") == []
    assert dec.decode(b"\r") == [Event("a")]


def test_chunk_final_cr_survives_an_empty_chunk_and_a_held_partial_character():
    dec = SSEDecoder()
    assert dec.decode(b"data: a\r") == []
    assert dec.decode(b"") == []
    assert dec.decode(b"\ndata: \xe2") == []  # LF of the CRLF, then half of a "€"
    assert dec.decode(b"\x82\xac\r\n\r\n") == [Event("a\n€")]


def test_several_events_in_one_read():
    raw = b"data: 1\n\ndata: 2\n\nevent: x\ndata: 3\n\n"
    assert decode_one(raw) == [Event("1"), Event("2"), Event("3", "x")]


def test_events_are_returned_by_the_read_that_completes_them():
    dec = SSEDecoder()
    assert dec.decode(b"data: 1\n\ndata: 2") == [Event("1")]
    assert dec.decode(b"\n") == []
    assert dec.decode(b"\ndata: 3\n\n") == [Event("2"), Event("3")]


# -- line endings ------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_each_line_ending_style(eol):
    raw = eol.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode_one(raw) == [Event("a\nb", "e"), Event("c")]


def test_mixed_line_endings_in_one_stream():
    raw = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r"
    assert decode_one(raw) == [Event("a\nb\nc"), Event("d")]


def test_u2028_u2029_and_nel_do_not_split_lines():
    text = "a\u2028b\u2029c\x85d\x0bv\x0cf\x1cg"
    raw = f"data: {text}\n\n".encode()
    assert decode_one(raw) == [Event(text)]
    # and split in the middle of those multi-byte separators
    for cut in range(len(raw) + 1):
        assert decode_all([raw[:cut], raw[cut:]]) == [Event(text)]


def test_blank_lines_between_events_dispatch_nothing_extra():
    raw = b"\n\n\r\n\rdata: a\n\n\n\n\r\n\rdata: b\n\n\n"
    assert decode_one(raw) == [Event("a"), Event("b")]


# -- BOM ---------------------------------------------------------------------------------


def test_leading_bom_dropped():
    assert decode_one(BOM + b"data: a\n\n") == [Event("a")]


def test_leading_bom_dropped_when_split_across_reads():
    raw = BOM + b"data: a\n\n"
    for cut in range(1, 4):
        assert decode_all([raw[:cut], raw[cut:]]) == [Event("a")]
    assert decode_all([b"", BOM, b"data: a\n\n"]) == [Event("a")]


def test_only_one_leading_bom_dropped():
    # the second BOM becomes part of the field name "\ufeffdata", an unknown field
    assert decode_one(BOM + BOM + b"data: a\n\ndata: b\n\n") == [Event("b")]


def test_bom_after_stream_start_is_not_dropped():
    raw = b"data: a\n\n" + BOM + b"data: b\n\n"
    assert decode_one(raw) == [Event("a")]
    assert decode_one(b"data: " + BOM + b"x\n\n") == [Event("\ufeffx")]


# -- fields ------------------------------------------------------------------------------


def test_comment_and_keep_alive_lines_ignored():
    raw = b": ping\n:\n: OPENROUTER PROCESSING\ndata: a\n:data: not data\n\n:\n\n"
    assert decode_one(raw) == [Event("a")]


def test_comment_only_stream_dispatches_nothing():
    assert decode_one(b": keep-alive\n\n: keep-alive\r\n\r\n") == []


def test_multi_line_data_joined_with_lf():
    raw = b"data: a\ndata:\ndata: c\n\n"
    assert decode_one(raw) == [Event("a\n\nc")]


def test_data_with_no_colon_is_an_empty_data_line():
    assert decode_one(b"data\n\n") == [Event("")]
    assert decode_one(b"data\ndata\n\n") == [Event("\n")]
    assert decode_one(b"data: a\ndata\n\n") == [Event("a\n")]


def test_data_with_no_space_after_colon():
    assert decode_one(b"data:x\n\n") == [Event("x")]
    assert decode_one(b"data:\n\n") == [Event("")]


def test_only_one_leading_space_stripped():
    assert decode_one(b"data:  two\n\n") == [Event(" two")]
    assert decode_one(b"data:   \n\n") == [Event("  ")]
    assert decode_one(b"event:  sp\ndata: x\n\n") == [Event("x", " sp")]


def test_trailing_spaces_and_tabs_kept():
    assert decode_one(b"data: a \t\n\n") == [Event("a \t")]
    assert decode_one(b"data:\tb\n\n") == [Event("\tb")]  # only a space is stripped


def test_value_may_contain_colons():
    assert decode_one(b'data: {"a": "b:c"}\n\n') == [Event('{"a": "b:c"}')]


def test_field_names_are_exact():
    # "data " (trailing space), "Data", "DATA" are unknown fields
    assert decode_one(b"data : a\nData: b\nDATA: c\n\n") == []


def test_event_type_set_and_reset_after_dispatch():
    raw = b"event: first\ndata: a\n\ndata: b\n\n"
    assert decode_one(raw) == [Event("a", "first"), Event("b", "message")]


def test_empty_event_type_means_message():
    assert decode_one(b"event:\ndata: a\n\n") == [Event("a", "message")]
    assert decode_one(b"event\ndata: a\n\n") == [Event("a", "message")]


def test_last_event_type_line_wins():
    assert decode_one(b"event: a\nevent: b\ndata: x\n\n") == [Event("x", "b")]


def test_event_with_type_but_no_data_not_dispatched_and_type_reset():
    raw = b"event: lonely\n\ndata: x\n\n"
    assert decode_one(raw) == [Event("x", "message")]


def test_id_sets_last_event_id_which_persists():
    raw = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n"
    assert [e.id for e in decode_one(raw)] == ["1", "1", "2"]


def test_empty_id_resets_last_event_id_to_empty():
    raw = b"id: 1\ndata: a\n\nid\ndata: b\n\n"
    assert [e.id for e in decode_one(raw)] == ["1", ""]


def test_id_containing_nul_is_ignored():
    raw = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert [e.id for e in decode_one(raw)] == ["1", "1"]


def test_id_alone_does_not_dispatch():
    assert decode_one(b"id: 5\n\n") == []
    assert decode_one(b"id: 5\n\ndata: a\n\n") == [Event("a", "message", "5")]


def test_retry_digits_only():
    assert decode_one(b"retry: 3000\ndata: a\n\n")[0].retry == 3000
    assert decode_one(b"retry:250\ndata: a\n\n")[0].retry == 250
    for bad in [b"retry: 1.5", b"retry: -1", b"retry: 10a", b"retry: ", b"retry", b"retry:  5"]:
        assert decode_one(bad + b"\ndata: a\n\n")[0].retry is None, bad


def test_retry_rejects_non_ascii_digits_without_raising():
    # str.isdigit() accepts superscript two, Arabic-Indic and fullwidth digits, and
    # int("\u00b2") raises. Only ASCII digits count.
    for value in ["\u00b2", "\u0661\u0662", "\uff13"]:
        raw = f"retry: {value}\ndata: a\n\n".encode()
        assert decode_one(raw) == [Event("a")], value


def test_bad_retry_keeps_previous_value():
    raw = b"retry: 100\ndata: a\n\nretry: x\ndata: b\n\n"
    assert [e.retry for e in decode_one(raw)] == [100, 100]


def test_unknown_fields_ignored():
    raw = b"foo: bar\nx\nevent2: y\ndata: a\nhello: world\n\n"
    assert decode_one(raw) == [Event("a")]


def test_done_sentinel_is_plain_data():
    assert decode_one(b"data: [DONE]\n\n") == [Event("[DONE]")]


def test_invalid_utf8_replaced_not_raised():
    assert decode_one(b"data: a\xffb\n\n") == [Event("a\ufffdb")]


def test_truncated_utf8_at_end_of_stream_replaced_on_flush():
    assert decode_one(b"data: a\xe2\x82") == [Event("a\ufffd")]


# -- end of stream (documented leniency) ---------------------------------------------------


def test_flush_delivers_final_event_with_no_line_end():
    dec = SSEDecoder()
    assert dec.decode(b'data: {"last": true}') == []
    assert dec.flush() == [Event('{"last": true}')]


def test_flush_delivers_final_event_missing_only_its_blank_line():
    for eol in (b"\n", b"\r\n", b"\r"):
        dec = SSEDecoder()
        assert dec.decode(b"event: e" + eol + b"data: a" + eol + b"data: b" + eol) == []
        assert dec.flush() == [Event("a\nb", "e")]


def test_flush_after_complete_events_delivers_nothing_more():
    dec = SSEDecoder()
    assert dec.decode(b"data: a\n\n") == [Event("a")]
    assert dec.flush() == []


def test_flush_does_not_deliver_an_event_without_data():
    assert decode_one(b"event: x\n") == []
    assert decode_one(b"id: 1\nretry: 5") == []
    assert decode_one(b": comment") == []


def test_flush_on_empty_stream():
    assert SSEDecoder().flush() == []


# -- size --------------------------------------------------------------------------------


def test_a_big_event_within_the_line_limit_in_64k_chunks():
    payload = ("0123456789abcdef" * 65536 * 3)[: 3 * 1024 * 1024 - 3] + "€"  # ~3 MB
    raw = b"data: " + payload.encode() + b"\n\ndata: after\n\n"
    t0 = time.perf_counter()
    events = decode_all([raw[i : i + 65536] for i in range(0, len(raw), 65536)])
    elapsed = time.perf_counter() - t0
    assert len(events) == 2
    assert events[0].data == payload
    assert events[1] == Event("after")
    assert elapsed < 2.0, f"3 MB event took {elapsed:.2f}s"


def test_a_big_multi_line_event_within_the_limit_in_64k_chunks():
    line = "x" * 1000
    n = 3_000
    raw = (f"data: {line}\r\n" * n + "\r\n").encode()
    t0 = time.perf_counter()
    events = decode_all([raw[i : i + 65536] for i in range(0, len(raw), 65536)])
    elapsed = time.perf_counter() - t0
    assert events == [Event("\n".join([line] * n))]
    assert elapsed < 2.0, f"3 MB multi-line event took {elapsed:.2f}s"


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda n: b"data: " + b"x" * n, "a line"),  # no line end ever
        (lambda n: b"data: x\n" * (n // 4), "an event"),  # data lines, no blank line
        (lambda n: b"data:x\n" * (n // 2 + 1), "an event"),  # the same without the space
        (lambda n: b": " + b"c" * n, "a line"),  # an endless comment
    ],
    ids=["line", "data-lines", "data-lines-no-space", "comment"],
)
def test_a_line_or_event_past_the_limit_ends_the_stream(make, what):
    raw = make(MAX_LINE + 1024)
    decoder = SSEDecoder()
    with pytest.raises(StreamError) as info:
        for i in range(0, len(raw), 65536):
            decoder.decode(raw[i : i + 65536])
    assert str(info.value) == f"{what} of the stream passed 4 MB without an end; stopped"
    assert len(decoder._pending) < MAX_LINE // 65536 + 2  # nothing held past the limit


def test_an_ndjson_line_past_the_limit_ends_the_stream():
    decoder = NDJSONDecoder()
    with pytest.raises(StreamError, match="a line of the stream passed 4 MB"):
        for _ in range(MAX_LINE // 65536 + 2):
            decoder.decode(b"x" * 65536)


# -- properties --------------------------------------------------------------------------

# text of a field value: any character but CR/LF (they end lines); includes U+2028, NEL,
# emoji, BOM, ':' and leading spaces
value_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        st.sampled_from(["\u2028", "\x85", "€", "\U0001f600", ":", " ", "\ufeff"]),
    ),
    max_size=12,
)
EOLS = ["\n", "\r\n", "\r"]


@st.composite
def recorded_streams(draw):
    """(raw bytes, the events a conforming decoder must produce)."""
    lines: list[str] = []
    expected: list[Event] = []
    last_id: str | None = None
    retry: int | None = None
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(":" + draw(value_text))
        etype = draw(st.one_of(st.none(), value_text))
        if etype is not None:
            lines.append("event: " + etype)
        new_id = draw(st.one_of(st.none(), value_text.filter(lambda s: "\0" not in s)))
        if new_id is not None:
            lines.append("id: " + new_id)
            last_id = new_id
        if draw(st.booleans()):
            retry = draw(st.integers(0, 10**6))
            lines.append(f"retry: {retry}")
        data = draw(st.lists(value_text, max_size=3))
        for d in data:
            lines.append("data: " + d)
            if draw(st.booleans()):
                lines.append(": between data lines")
        if data:
            expected.append(Event("\n".join(data), etype or "message", last_id, retry))
        lines.append("")  # the blank line that dispatches
        lines.extend([""] * draw(st.integers(0, 2)))
    if lines and draw(st.booleans()):
        lines.pop()  # final event unterminated: flush() still delivers it
    out: list[str] = []
    prev_eol = ""
    for line in lines:
        eol = draw(st.sampled_from(EOLS))
        if prev_eol == "\r" and line == "" and eol == "\n":
            eol = "\r\n"  # "\r" + "\n" would be read as one CRLF, not as two line ends
        out.append(line + eol)
        prev_eol = eol
    raw = "".join(out).encode()
    if draw(st.booleans()):
        raw = BOM + raw
    return raw, expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recorded_streams(), st.data())
def test_property_any_chunking_gives_the_unsplit_result(stream, data):
    raw, expected = stream
    whole = decode_one(raw)
    assert whole == expected
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    assert decode_all(split_at(raw, cuts)) == whole


@settings(max_examples=100, deadline=None)
@given(recorded_streams())
def test_property_byte_at_a_time_gives_the_unsplit_result(stream):
    raw, expected = stream
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == expected


# pieces dense in what the decoder looks at, so random streams reach every branch
interesting = st.sampled_from(
    [
        b"data:",
        b"data: ",
        b"event:",
        b"id:",
        b"retry:",
        b"retry: \xc2\xb2",
        b"\x00",
        b":",
        b" ",
        b"\r",
        b"\n",
        b"\r\n",
        BOM,
        b"\xe2\x82",
        b"\xac",
        b"\xff",
        b"[DONE]",
        b"7",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(interesting, st.binary(max_size=6)), max_size=40),
    st.data(),
)
def test_property_random_bytes_never_raise(pieces, data):
    raw = b"".join(pieces)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    whole = decode_one(raw)
    split = decode_all(split_at(raw, cuts))
    assert split == whole
    for ev in whole:
        assert isinstance(ev.data, str)
        assert isinstance(ev.event, str) and ev.event
        assert ev.retry is None or ev.retry >= 0
