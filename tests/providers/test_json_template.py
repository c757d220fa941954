"""The OpenAI parser's template path (jsonfast.Template: a run of events that differ
from a learnt sample only in their text, read without parsing) against its slow path
(Parser.feed, event by event, orjson): the same text, the same deltas, the same error
with what came before it, for events whose text literal is anything a hostile server
may put there (quotes, escapes valid or not, control characters, U+2028, non-BMP), for
events that overlap the template's head and tail, and for any cut of the body into
reads (SSEDecoder.decode_runs)."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.errors import KznError
from kznllm_py.providers import jsonfast, openai
from kznllm_py.providers.base import Delta, TextDelta
from kznllm_py.providers.jsonfast import Template
from kznllm_py.stream.sse import Event, Run, SSEDecoder
from tests.fuzzing import merged

HEAD = '{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"'
TAIL = '"},"logprobs":null,"finish_reason":null}]}'

# what may stand between the quotes of the text's literal, written raw (not JSON-encoded):
# valid and invalid escapes, bare quotes and backslashes, control and odd characters
RAW = st.lists(
    st.sampled_from(
        [
            "a",
            "tok ",
            "é",
            "😀",
            "\\n",
            "\\t",
            '\\"',
            "\\\\",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\u12",
            "\\x",
            "\\",
            '"',
            '","x":"',
            "\t",
            "\x7f",
            "\u2028",
            "\u00a0",
            "}",
            "]",
        ]
    ),
    max_size=4,
).map("".join)
# ... and what a line of an event stream can carry (no line break)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=6)


@st.composite
def event(draw: st.DrawFn) -> str:
    """Mostly the template with another text (raw, or JSON-encoded), sometimes an event
    the template almost fits (its head and tail overlapping, another tail, a duplicate
    key after the text), a finish chunk or `[DONE]`."""
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return "[DONE]"
    if kind == 1:
        return HEAD + TAIL[1:]  # head and tail share the quote: shorter than both
    if kind == 2:
        return HEAD + draw(RAW) + '"},"logprobs":null,"finish_reason":"stop"}]}'
    if kind == 3:  # a second `content` after the text: the last one counts
        return HEAD + draw(RAW) + '","content":"' + draw(RAW) + TAIL
    if kind == 4:
        return HEAD + json.dumps(draw(TEXT), ensure_ascii=draw(st.booleans()))[1:-1] + TAIL
    return HEAD + draw(RAW) + TAIL


def slow(datas: list[str]) -> tuple[list[Delta], str | None]:
    parser = openai.Parser()
    out: list[Delta] = []
    try:
        for data in datas:
            out.extend(parser.feed(Event(data)))
    except KznError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


def through_sse(datas: list[str], cuts: list[int]) -> tuple[list[Delta], str | None]:
    body = "".join(f"data: {d}\n\n" for d in datas).encode("utf-8", "surrogatepass")
    decoder = SSEDecoder()
    parser = openai.Parser()
    out: list[Delta] = []
    try:
        for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
            parser.feed_into(decoder.decode_runs(body[a:b]), out)
        parser.feed_into(decoder.flush(), out)
    except KznError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


LEARN = HEAD + "learn" + TAIL  # the first events teach the template


def run(datas: list[str]) -> Run:
    """A run of plain events with these data, as SSEDecoder.decode_runs gives it."""
    return Run(f"data: {d}" for d in datas)


def assert_reads_as_event_by_event(datas: list[str], data: st.DataObject) -> None:
    """The stream of `datas` cut anywhere (up to 5 cuts drawn from `data`) reads as the
    slow path reads it event by event: the same deltas (text joined), the same error."""
    body_len = len("".join(f"data: {d}\n\n" for d in datas).encode("utf-8", "surrogatepass"))
    cuts = sorted(data.draw(st.lists(st.integers(0, body_len), max_size=5)))
    want, want_error = slow(datas)
    got, got_error = through_sse(datas, cuts)
    assert got_error == want_error
    assert merged(got, drop_empty=True) == merged(want, drop_empty=True)


@settings(max_examples=800, deadline=None)
@given(st.lists(event(), max_size=14), st.data())
def test_every_chunking_of_a_templated_stream_reads_as_event_by_event(datas, data):
    assert_reads_as_event_by_event([LEARN, LEARN, *datas], data)


@settings(max_examples=800, deadline=None)
@given(st.lists(RAW | TEXT, min_size=1, max_size=8))
def test_a_run_reads_as_orjson_reads_each_event_or_not_at_all(inners: list[str]):
    """Template.texts, on events of the template with any text between its quotes,
    gives what orjson reads in each of them, or None (and the caller reads them)."""
    template = Template.learn(LEARN, "learn", openai._plain_text)
    assert template is not None and (template.head, template.tail) == (HEAD, TAIL)
    datas = [HEAD + x + TAIL for x in inners]
    got = template.texts(datas)
    if got is None:
        return
    want = []
    for d in datas:
        text = openai._plain_text(orjson.loads(d))
        assert text is not None
        want.append(text)
    assert got == "".join(want)


# OpenAI's chunks end in random padding: `"obfuscation":"..."` (stream_options'
# include_obfuscation, on by default)
PAD_HEAD = '{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"'
PAD_MID = '"},"logprobs":null,"finish_reason":null}],"obfuscation":"'
PAD_END = '"}'
PAD = st.text(st.sampled_from("aZ09+/_"), max_size=9) | RAW


@st.composite
def padded_event(draw: st.DrawFn) -> str:
    """Mostly the padded shape with another text and pad (raw: quotes and backslashes
    too), sometimes the pad's key changed (`object`, which the reading does look at),
    the pad missing, or an event of the other kinds."""
    kind = draw(st.integers(0, 10))
    if kind == 0:
        return draw(event())
    if kind == 1:  # the varying string is the object's type: "error" reads otherwise
        mid = PAD_MID.replace("obfuscation", "object")
        return PAD_HEAD + draw(RAW) + mid + draw(st.sampled_from(["error", "x"])) + PAD_END
    if kind == 2:
        return PAD_HEAD + draw(RAW) + PAD_MID[:-16] + "}"  # no pad at all
    if kind == 3:  # cut short: the head and the end, no mid between
        return PAD_HEAD + draw(RAW) + PAD_END
    return PAD_HEAD + draw(RAW) + PAD_MID + draw(PAD) + PAD_END


PAD_LEARN = PAD_HEAD + "learn" + PAD_MID + "Xy12" + PAD_END


@settings(max_examples=800, deadline=None)
@given(st.lists(padded_event(), max_size=14), st.data())
def test_every_chunking_of_a_padded_stream_reads_as_event_by_event(datas, data):
    assert_reads_as_event_by_event([PAD_LEARN, PAD_LEARN, *datas], data)


def test_a_padded_template_is_learnt_only_for_a_key_the_reading_ignores():
    template = Template.learn(PAD_LEARN, "learn", openai._plain_text, pad="obfuscation")
    assert template is not None
    assert (template.head, template.mid, template.tail) == (PAD_HEAD, PAD_MID, PAD_END)
    # the same shape, its last string the object's type: no padding (an "error" there
    # would read otherwise)
    sample = PAD_HEAD + "learn" + PAD_MID.replace("obfuscation", "object") + "x" + PAD_END
    template = Template.learn(sample, "learn", openai._plain_text, pad="obfuscation")
    assert template is not None and template.mid is None
    # the padding's value also the last string, of another key: not taken for the pad
    tail = '"},"logprobs":null,"finish_reason":null}],"obfuscation":"Xy12","object":"Xy12"}'
    template = Template.learn(PAD_HEAD + "learn" + tail, "learn", openai._plain_text, "obfuscation")
    assert template is not None and template.mid is None


def assert_read_by_template(
    monkeypatch: pytest.MonkeyPatch, learn: str, event: Callable[[int, str], str], n: int
) -> None:
    """After the events `learn`, one read of `n` events (`event(i, text)`) parses none
    of them (openai._loads is not called) and gives every text."""
    parser = openai.Parser()
    out: list[Delta] = []
    parser.feed_into([run([learn])], out)
    parsed = []
    real = openai._loads
    monkeypatch.setattr(openai, "_loads", lambda s: parsed.append(s) or real(s))
    texts = [f"t{i}\\n" if i % 7 == 0 else f"t{i} " for i in range(n)]
    parser.feed_into([run([event(i, t) for i, t in enumerate(texts)])], out)
    assert parsed == []
    want = "learn" + "".join(t.replace("\\n", "\n") for t in texts)
    assert "".join(d.text for d in out if type(d) is TextDelta) == want


def test_an_openai_stream_with_padding_is_read_by_its_template(monkeypatch):
    pads = ["", "a", "Zk9", "abcdefghij"]
    assert_read_by_template(
        monkeypatch, PAD_LEARN, lambda i, t: PAD_HEAD + t + PAD_MID + pads[i % 4] + PAD_END, 300
    )


def test_the_template_is_learnt_only_where_a_probe_reads_back():
    """The text also found in the id: the template is cut at the text's own place."""
    data = '{"id":"tok","choices":[{"delta":{"content":"tok"}}]}'
    template = Template.learn(data, "tok", openai._plain_text)
    assert template is not None
    assert template.head == '{"id":"tok","choices":[{"delta":{"content":"'
    assert template.tail == '"}}]}'
    # a value with a quote or an escape, or none at all: no template
    assert Template.learn('{"choices":[{"delta":{"content":"a\\nb"}}]}', "a\nb", len) is None
    assert Template.learn('{"choices":[{"delta":{"content":""}}]}', "", len) is None


def test_a_text_equal_to_the_probe_does_not_mislead_the_template():
    """A server whose first text is the probe itself, also found before it (an id):
    the template is still cut at the text's own place, and the stream reads as events."""
    probe = jsonfast._PROBE
    sample = f'{{"id":"{probe}","choices":[{{"delta":{{"content":"{probe}"}}}}]}}'
    template = Template.learn(sample, probe, openai._plain_text)
    assert template is not None
    assert template.head == f'{{"id":"{probe}","choices":[{{"delta":{{"content":"'
    datas = [sample, f'{{"id":"x","choices":[{{"delta":{{"content":"{probe}"}}}}]}}']
    want, _ = slow(datas)
    got, _ = through_sse(datas, [])
    assert merged(got, drop_empty=True) == merged(want, drop_empty=True)


def test_a_stream_of_one_shape_is_read_by_its_template_not_event_by_event(monkeypatch):
    """After the first events, a read of 500 events of the template parses none."""
    assert_read_by_template(monkeypatch, LEARN, lambda _i, t: HEAD + t + TAIL, 500)


def _one_by_one(inners: list[str]) -> str | None:
    """Each literal decoded on its own (the way texts() read escapes before)."""
    try:
        return "".join(orjson.loads(f'"{x}"') for x in inners)
    except orjson.JSONDecodeError:
        return None


@settings(max_examples=1500, deadline=None)
@given(st.lists(RAW.filter(lambda x: '"' not in x), max_size=8))
def test_a_runs_escapes_decode_as_each_literal_does_alone(inners: list[str]):
    """jsonfast._literals reads the literals as one array: an escape never reaches
    across two of them (a trailing backslash, half a surrogate pair), and it fails
    exactly when one of them fails on its own."""
    assert jsonfast._literals(inners) == _one_by_one(inners)


@st.composite
def near_miss(draw: st.DrawFn) -> str:
    """The template's event with one character of its head or tail changed (the same
    length: its middle cut at the same place reads as plain text): only a check of the
    head and the tail themselves tells it apart (another id, "index":1, ...)."""
    text = draw(st.sampled_from(["x", "tok ", "a\\nb"]))
    whole = HEAD + TAIL
    at = draw(st.integers(0, len(whole) - 1))
    char = draw(st.sampled_from("1xZ :,{}[]").filter(lambda c: c != whole[at]))
    whole = whole[:at] + char + whole[at + 1 :]
    return whole[: len(HEAD)] + text + whole[len(HEAD) :]


@settings(max_examples=800, deadline=None)
@given(st.lists(event() | near_miss(), max_size=6), st.data())
def test_a_run_checked_in_one_comparison_reads_as_event_by_event_checks(odd, data):
    """Template.run compares the events joined, RUN_BLOCK at a time, with the template
    around their middles: it reads them exactly when every one has the head and the tail
    (as matches() says, event by event), and then as texts() does."""
    template = Template.learn(LEARN, "learn", openai._plain_text)
    assert template is not None
    # long runs of the template's events (past a block), the drawn ones at any place
    n = data.draw(st.integers(0, 2 * jsonfast.RUN_BLOCK + 10))
    datas = [HEAD + f"t{i}" + TAIL for i in range(n)]
    for event_ in odd:
        datas.insert(data.draw(st.integers(0, len(datas))), event_)
    want = template.texts(datas) if all(template.matches(datas)) else None
    assert template.run(datas) == want
