"""Fuzzing the way from network bytes to deltas, through the client's own function.

Every stream goes through `generation.stream_deltas` (the decoder of the provider's
`stream_format`, then the provider's parser, then `finish()`), fed by an in-process
httpx transport that hands the body over in exactly the chunks a test chose. Properties:

- a valid stream, in each provider's real wire format, split at any byte positions
  (inside a multi-byte UTF-8 character, between the CR and LF of a CRLF, one byte at a
  time), yields exactly the text and reasoning that were sent (nothing lost, nothing
  duplicated), then the finish reason and usage that were sent;
- random bytes, random byte mutations of valid streams and random values put in place
  of any field of a valid event never raise anything but the project's own errors
  (`KznError`), and whatever deltas come out are well-typed (text is a non-empty str,
  token counts are ints, a finish reason is a str).

The decoders on their own are covered by the properties in tests/stream/test_sse.py (any
chunking of an SSE stream, random bytes) and tests/providers/test_providers_gemini_ollama.py (any
chunking of NDJSON lines); here they also get random bytes side by side.

`KZN_FUZZ_EXAMPLES=N` runs every property with N examples (bench/fuzz_long.py does).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import itertools
import json
import os
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kznllm_py.errors import KznError, StreamError
from kznllm_py.providers import PROVIDERS, get_provider
from kznllm_py.providers.base import (
    Delta,
    DoneDelta,
    HttpRequest,
    Provider,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
)
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.generation import DECODERS, stream_deltas
from tests.fuzzing import BOM, Case, WireEvent, counts, joined, pieces

# every registered provider (a new one brings its cases in its test file: tests/fuzzing.py)
PROVIDER_NAMES = tuple(PROVIDERS)
EXAMPLES = int(os.environ.get("KZN_FUZZ_EXAMPLES", "0"))


def fuzz_settings(default: int) -> settings:
    """`default` examples in the ordinary run; KZN_FUZZ_EXAMPLES for a long one."""
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- the real path: stream_deltas over an in-process transport -----------------------------


class Wire:
    """Runs `stream_deltas` (what `Generation` uses) against a response whose body is
    the given chunks, one network read each (httpx hands non-empty chunks on as they
    are: `aiter_bytes()` without a chunk size does not re-chunk)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ctype = "text/event-stream"
        self._client = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))
        self._runner = asyncio.Runner()
        self._request = HttpRequest("POST", "http://fuzz.invalid/stream", {}, {})

    def _answer(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": self._ctype}, content=self._body())

    async def _body(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    async def _collect(self, provider: Provider, out: list[Delta]) -> None:
        async for batch in stream_deltas(self._client, provider, self._request, Timeouts()):
            out.extend(batch)

    def run(self, provider: Provider, chunks: list[bytes]) -> tuple[list[Delta], KznError | None]:
        """The deltas that came out, and the project error that ended the stream, if
        any; any other exception propagates (it is a bug)."""
        self._chunks = chunks
        self._ctype = (
            "application/x-ndjson" if provider.stream_format == "ndjson" else "text/event-stream"
        )
        out: list[Delta] = []
        try:
            self._runner.run(self._collect(provider, out))
        except KznError as exc:
            return out, exc
        return out, None

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


WIRE = Wire()
atexit.register(WIRE.close)


def assert_well_formed(deltas: list[Delta]) -> None:
    """What the rest of kznllm relies on, whatever the stream was."""
    for d in deltas:
        if type(d) is TextDelta or type(d) is ReasoningDelta:
            assert type(d.text) is str and d.text, d
        elif type(d) is UsageDelta:
            for count in (d.input_tokens, d.output_tokens):
                assert count is None or type(count) is int, d
        elif type(d) is DoneDelta:
            assert d.finish_reason is None or type(d.finish_reason) is str, d
        else:
            raise AssertionError(f"not a delta: {d!r}")


def run_fuzzed(name: str, chunks: list[bytes]) -> list[Delta]:
    """Only KznError may end a fuzzed stream; the deltas must be well-formed."""
    deltas, _error = WIRE.run(get_provider(name), chunks)
    assert_well_formed(deltas)
    return deltas


# -- what a provider sends, before framing -------------------------------------------------


AZURE_FILTER = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}


@st.composite
def openai_cases(draw: st.DrawFn, *, completions: bool = False, azure: bool = False) -> Case:
    """Chat Completions chunks (role-only first delta, reasoning deltas, a finish
    chunk, a usage chunk with empty choices, [DONE]), or with `completions` the
    /v1/completions ones (`choices[].text`); with `azure`, Azure's first chunk of
    prompt filter results (empty choices) and filter results on every choice."""
    texts = draw(pieces)
    thoughts = [] if completions else draw(pieces)
    reasoning_field = draw(st.sampled_from(["reasoning_content", "reasoning"]))
    finish = draw(st.sampled_from(["stop", "length", "content_filter", "tool_calls"]))
    usage = draw(st.none() | st.tuples(counts, counts))
    null_usage = draw(st.booleans())  # some servers send "usage": null on every chunk

    def chunk(choice: dict[str, Any]) -> WireEvent:
        obj: dict[str, Any] = {
            "id": "cmpl-fuzz" if completions else "chatcmpl-fuzz",
            "object": "text_completion" if completions else "chat.completion.chunk",
            "created": 1718000000,
            "model": "fuzz-1",
            "choices": [{"index": 0, **choice, "logprobs": None, "finish_reason": None}],
        }
        if azure:
            obj["choices"][0]["content_filter_results"] = AZURE_FILTER
        if null_usage:
            obj["usage"] = None
        return WireEvent(obj)

    events: list[WireEvent] = []
    if azure:
        filters = [{"prompt_index": 0, "content_filter_results": AZURE_FILTER}]
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
        events.append(WireEvent({**first, "prompt_filter_results": filters}))
    if completions:
        events.extend(chunk({"text": t}) for t in texts)
        last = chunk({"text": ""})
    else:
        role_only = draw(
            st.sampled_from(
                [
                    {"role": "assistant", "content": ""},
                    {"role": "assistant"},
                    {"role": "assistant", "content": None, "refusal": None},
                ]
            )
        )
        events.append(chunk({"delta": role_only}))
        for t in thoughts:
            delta = {reasoning_field: t}
            if draw(st.booleans()):
                delta["content"] = None  # DeepSeek's shape
            events.append(chunk({"delta": delta}))
        events.extend(chunk({"delta": {"content": t}}) for t in texts)
        last = chunk({"delta": {}})
    last.payload["choices"][0]["finish_reason"] = finish
    usage_obj = None
    if usage is not None:
        usage_obj = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
    if usage_obj is not None and draw(st.booleans()):
        last.payload["usage"] = usage_obj  # on the finish chunk
        events.append(last)
    else:
        events.append(last)
        if usage_obj is not None:  # stream_options.include_usage: a chunk of its own
            events.append(WireEvent({**last.payload, "choices": [], "usage": usage_obj}))
    if draw(st.integers(0, 3)):  # servers that close after finish_reason send no [DONE]
        events.append(WireEvent("[DONE]"))
    return Case(
        "completions" if completions else "azure" if azure else "openai",
        tuple(events),
        joined(texts),
        joined(thoughts),
        finish,
        UsageDelta(*usage) if usage is not None else None,
    )


@st.composite
def anthropic_cases(draw: st.DrawFn) -> Case:
    """A Messages stream: message_start, an optional thinking block (with its
    signature_delta), a text block, pings anywhere, message_delta, message_stop."""
    texts = draw(pieces)
    thoughts = draw(pieces)
    inp, outp = draw(counts), draw(counts)
    stop, reported = draw(
        st.sampled_from(
            [("end_turn", "end_turn"), ("max_tokens", "length"), ("stop_sequence", "stop_sequence")]
        )
    )
    objs: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_fuzz",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-fuzz",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": inp, "output_tokens": 1},
            },
        }
    ]
    index = 0
    if thoughts:
        objs.append(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            }
        )
        objs.extend(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": t},
            }
            for t in thoughts
        )
        objs.append(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
            }
        )
        objs.append({"type": "content_block_stop", "index": 0})
        index = 1
    block = {"type": "text", "text": ""}
    objs.append({"type": "content_block_start", "index": index, "content_block": block})
    objs.extend(
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}
        for t in texts
    )
    objs.append({"type": "content_block_stop", "index": index})
    objs.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": outp},
        }
    )
    for _ in range(draw(st.integers(0, 3))):
        objs.insert(draw(st.integers(0, len(objs))), {"type": "ping"})
    objs.append({"type": "message_stop"})
    # the `event:` line is the type; the parser also reads it from the data alone
    named = draw(st.booleans())
    events = tuple(WireEvent(o, o["type"] if named else None) for o in objs)
    usage = UsageDelta(inp, outp)
    return Case("anthropic", events, joined(texts), joined(thoughts), reported, usage)


@st.composite
def gemini_cases(draw: st.DrawFn) -> Case:
    """GenerateContentResponse chunks: thought parts then text parts, grouped into
    chunks at random, running usageMetadata on every chunk, finishReason on the last."""
    texts = draw(pieces)
    thoughts = draw(pieces)
    parts = [{"text": t, "thought": True} for t in thoughts] + [{"text": t} for t in texts]
    groups: list[list[dict[str, Any]]] = []
    for part in parts:
        if not groups or draw(st.booleans()):
            groups.append([])
        groups[-1].append(part)
    if not groups or draw(st.booleans()):
        groups.append([])  # the finishReason in a chunk of its own
    reason, reported = draw(
        st.sampled_from(
            [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "safety"), ("OTHER", "other")]
        )
    )
    prompt_tokens = draw(counts)
    thought_tokens = draw(st.none() | counts)
    with_index = draw(st.booleans())
    events: list[WireEvent] = []
    for n, group in enumerate(groups):
        final = n == len(groups) - 1
        cand: dict[str, Any] = {"content": {"role": "model"}}
        if group or draw(st.booleans()):
            cand["content"]["parts"] = group
        if with_index:
            cand["index"] = 0
        meta: dict[str, Any] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": n}
        if final:
            cand["finishReason"] = reason
            if thought_tokens is not None:
                meta["thoughtsTokenCount"] = thought_tokens
        events.append(
            WireEvent({"candidates": [cand], "usageMetadata": meta, "modelVersion": "gemini-fuzz"})
        )
    last = len(groups) - 1
    usage = UsageDelta(prompt_tokens, last + (thought_tokens or 0), None, thought_tokens or None)
    return Case("gemini", tuple(events), joined(texts), joined(thoughts), reported, usage)


@st.composite
def ollama_cases(draw: st.DrawFn) -> Case:
    """/api/chat lines: thinking lines, content lines, then the `done: true` line
    (prompt_eval_count is left out when the prompt was cached)."""
    texts = draw(pieces)
    thoughts = draw(pieces)
    head = {"model": "fuzz:1b", "created_at": "2025-01-01T00:00:00.000000Z"}
    objs: list[dict[str, Any]] = []
    for t in thoughts:
        message = {"role": "assistant", "content": "", "thinking": t}
        objs.append({**head, "message": message, "done": False})
    for t in texts:
        objs.append({**head, "message": {"role": "assistant", "content": t}, "done": False})
    reason = draw(st.sampled_from(["stop", "length", "load"]))
    inp, outp = draw(st.none() | counts), draw(st.none() | counts)
    final: dict[str, Any] = {
        **head,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
        "total_duration": 123456,
    }
    if inp is not None:
        final["prompt_eval_count"] = inp
    if outp is not None:
        final["eval_count"] = outp
    objs.append(final)
    usage = UsageDelta(inp, outp) if inp is not None or outp is not None else None
    events = tuple(WireEvent(o) for o in objs)
    return Case("ollama", events, joined(texts), joined(thoughts), reason, usage)


CASES: dict[str, st.SearchStrategy[Case]] = {
    "openai": openai_cases(),
    "azure": openai_cases(azure=True),
    "completions": openai_cases(completions=True),
    "anthropic": anthropic_cases(),
    "gemini": gemini_cases(),
    "ollama": ollama_cases(),
}


def plugged(attribute: str) -> dict[str, Any]:
    """`FUZZ_CASES` / `FUZZ_TOKENS` of the providers' own test files (they import only
    tests.fuzzing, so importing them here makes no cycle)."""
    found: dict[str, Any] = {}
    for path in sorted(
        (Path(__file__).resolve().parents[1] / "providers").glob("test_provider*.py")
    ):
        module = importlib.import_module(f"tests.providers.{path.stem}")
        found.update(getattr(module, attribute, {}))
    return found


PLUGGED_CASES: dict[str, st.SearchStrategy[Case]] = plugged("FUZZ_CASES")
PLUGGED_TOKENS: dict[str, list[bytes]] = plugged("FUZZ_TOKENS")


def cases_for(name: str) -> st.SearchStrategy[Case]:
    cases = CASES[name] if name in CASES else PLUGGED_CASES.get(name)
    if cases is None:
        raise AssertionError(
            f"provider {name!r} has no fuzz cases: declare FUZZ_CASES = {{{name!r}: ...}} "
            "in its test file (see tests/fuzzing.py)"
        )
    return cases


# -- framing: events -> bytes --------------------------------------------------------------


def json_text(payload: Any, *, ascii_only: bool, pretty: bool) -> str:
    if isinstance(payload, str):
        return payload
    if pretty:  # several `data:` lines, joined by the decoder with LF (JSON whitespace)
        return json.dumps(payload, ensure_ascii=ascii_only, indent=1)
    return json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":"))


@st.composite
def sse_bytes(draw: st.DrawFn, events: tuple[WireEvent, ...]) -> bytes:
    """SSE framing with everything the spec allows: CR, LF or CRLF line ends (mixed or
    not), comments and keep-alives, `data:` with or without its space, an event's JSON
    over several `data:` lines, extra blank lines, a leading BOM, and a last event
    without its blank line. (The many small choices come from one drawn seed: drawing
    each of them through Hypothesis would cost most of the test's time.)"""
    ascii_only = draw(st.booleans())
    one_eol = draw(st.sampled_from([None, "\n", "\r\n", "\r"]))
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    lines: list[str] = []
    for ev in events:
        if rnd.randrange(5) == 0:
            lines.append(rnd.choice([":", ": keep-alive", ": OPENROUTER PROCESSING"]))
        if ev.name is not None:
            lines.append(f"event: {ev.name}")
        pretty = rnd.randrange(5) == 0
        prefix = rnd.choice(["data: ", "data:"])
        for line in json_text(ev.payload, ascii_only=ascii_only, pretty=pretty).split("\n"):
            lines.append(prefix + line)
        lines.extend([""] * rnd.randint(1, 2))
    if lines and draw(st.integers(0, 3)) == 0:
        while lines and lines[-1] == "":
            lines.pop()  # the server closed right after its last data line
    out: list[str] = []
    prev = ""
    for line in lines:
        eol = one_eol or rnd.choice(["\n", "\r\n", "\r"])
        if prev == "\r" and line == "" and eol == "\n":
            eol = "\r\n"  # "\r" then "\n" would be one CRLF, not two line ends
        out.append(line + eol)
        prev = eol
    bom = BOM if draw(st.integers(0, 4)) == 0 else ""
    return (bom + "".join(out)).encode()


@st.composite
def ndjson_bytes(draw: st.DrawFn, events: tuple[WireEvent, ...]) -> bytes:
    """NDJSON framing: LF or CRLF, blank lines between, a leading BOM, the last line
    with or without its newline."""
    ascii_only = draw(st.booleans())
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    out: list[str] = []
    for ev in events:
        if rnd.randrange(6) == 0:
            out.append(rnd.choice(["\n", "\r\n", " \n", "\t\r\n"]))
        out.append(json_text(ev.payload, ascii_only=ascii_only, pretty=False))
        out.append(rnd.choice(["\n", "\r\n"]))
    if out and draw(st.integers(0, 3)) == 0:
        out.pop()
    bom = BOM if draw(st.integers(0, 4)) == 0 else ""
    return (bom + "".join(out)).encode()


def framed(name: str, events: tuple[WireEvent, ...]) -> st.SearchStrategy[bytes]:
    fmt = get_provider(name).stream_format
    return ndjson_bytes(events) if fmt == "ndjson" else sse_bytes(events)


# where a cut is hardest on a decoder: before a UTF-8 continuation byte (inside a
# character), before the LF of a CRLF
TRICKY = re.compile(rb"[\x80-\xbf]|(?<=\r)\n")


@st.composite
def cut_up(draw: st.DrawFn, raw: bytes) -> list[bytes]:
    """`raw` as network reads: one byte at a time, or cut at random positions and at
    the tricky ones (inside a UTF-8 character, between the CR and LF of a CRLF)."""
    if len(raw) <= 600 and draw(st.integers(0, 9)) == 0:
        return [raw[i : i + 1] for i in range(len(raw))]
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=16))
    tricky = [m.start() for m in TRICKY.finditer(raw)]
    if tricky:
        picks = draw(st.lists(st.integers(0, len(tricky) - 1), max_size=8))
        cuts += [tricky[i] for i in picks]
    bounds = sorted({0, len(raw), *cuts})
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


# -- valid streams: byte-exact under any chunking --------------------------------------------


def text_of(deltas: list[Delta], kind: type[TextDelta] | type[ReasoningDelta]) -> str:
    return "".join(d.text for d in deltas if type(d) is kind)


@st.composite
def valid_streams(draw: st.DrawFn, name: str) -> tuple[Case, list[bytes]]:
    case = draw(cases_for(name))
    raw = draw(framed(name, case.events))
    return case, draw(cut_up(raw))


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@fuzz_settings(60)
@given(data=st.data())
def test_valid_stream_gives_exactly_the_text_sent_under_any_chunking(
    name: str, data: st.DataObject
) -> None:
    case, chunks = data.draw(valid_streams(name))
    deltas, error = WIRE.run(get_provider(name), chunks)
    assert error is None
    assert_well_formed(deltas)
    assert text_of(deltas, TextDelta) == case.text
    assert text_of(deltas, ReasoningDelta) == case.reasoning
    assert [d for d in deltas if type(d) is DoneDelta] == [DoneDelta(case.finish)]
    assert deltas[-1] == DoneDelta(case.finish)
    usages = [d for d in deltas if type(d) is UsageDelta]
    assert (usages[-1] if usages else None) == case.usage


# -- random bytes, random byte mutations ------------------------------------------------------

# bytes dense in what the decoders and parsers look at, so random streams get far
TOKENS: dict[str, list[bytes]] = {
    "sse": [b"data: ", b"data:", b"event: ", b"id: 1", b"retry: 5", b":", b"\n", b"\r", b"\r\n"],
    "ndjson": [b"\n", b"\r\n", b" "],
    "json": [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b'"',
        b"null",
        b"true",
        b"false",
        b"0",
        b"-1",
        b"1e999",
        b"[DONE]",
        b'"\\u00e9"',
        b'"\\ud800"',
        b"\xe2\x82",
        b"\xac",
        b"\xff",
        b"\xef\xbb\xbf",
    ],
    "openai": [
        b'"choices"',
        b'"delta"',
        b'"content"',
        b'"text"',
        b'"reasoning"',
        b'"reasoning_content"',
        b'"finish_reason"',
        b'"usage"',
        b'"prompt_tokens"',
        b'"completion_tokens"',
        b'"error"',
        b'"object"',
        b'"message"',
    ],
    "anthropic": [
        b'"type"',
        b'"content_block_delta"',
        b'"text_delta"',
        b'"thinking_delta"',
        b'"delta"',
        b'"text"',
        b'"thinking"',
        b'"message_start"',
        b'"message_delta"',
        b'"message_stop"',
        b'"stop_reason"',
        b'"usage"',
        b'"input_tokens"',
        b'"output_tokens"',
        b'"error"',
        b"event: message_stop",
    ],
    "gemini": [
        b'"candidates"',
        b'"content"',
        b'"parts"',
        b'"text"',
        b'"thought"',
        b'"index"',
        b'"finishReason"',
        b'"STOP"',
        b'"usageMetadata"',
        b'"promptTokenCount"',
        b'"candidatesTokenCount"',
        b'"thoughtsTokenCount"',
        b'"promptFeedback"',
        b'"blockReason"',
        b'"error"',
    ],
    "ollama": [
        b'"message"',
        b'"content"',
        b'"thinking"',
        b'"done"',
        b'"done_reason"',
        b'"prompt_eval_count"',
        b'"eval_count"',
        b'"error"',
    ],
}
TOKENS["completions"] = TOKENS["openai"]
TOKENS["azure"] = [*TOKENS["openai"], b'"prompt_filter_results"', b'"content_filter_results"']


def tokens_for(name: str) -> list[bytes]:
    fmt = get_provider(name).stream_format
    own = TOKENS[name] if name in TOKENS else PLUGGED_TOKENS.get(name, [])
    return TOKENS[fmt] + TOKENS["json"] + own


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@fuzz_settings(40)
@given(data=st.data())
def test_random_bytes_raise_only_kzn_errors(name: str, data: st.DataObject) -> None:
    token = st.sampled_from(tokens_for(name))
    raw = b"".join(data.draw(st.lists(token | st.binary(max_size=6), max_size=60)))
    run_fuzzed(name, data.draw(cut_up(raw)))


@st.composite
def mutated(draw: st.DrawFn, raw: bytes, tokens: list[bytes]) -> bytes:
    """`raw` with one to four edits: bytes replaced, deleted, inserted or repeated, or
    the stream cut short."""
    for _ in range(draw(st.integers(1, 4))):
        n = len(raw)
        a = draw(st.integers(0, n))
        b = draw(st.integers(a, min(n, a + 8)))
        kind = draw(st.sampled_from(["replace", "delete", "insert", "repeat", "truncate"]))
        if kind == "replace":
            raw = raw[:a] + draw(st.binary(min_size=1, max_size=4)) + raw[b:]
        elif kind == "delete":
            raw = raw[:a] + raw[b:]
        elif kind == "insert":
            raw = raw[:a] + draw(st.sampled_from(tokens) | st.binary(max_size=4)) + raw[a:]
        elif kind == "repeat":
            c = draw(st.integers(a, min(n, a + 200)))
            raw = raw[:c] + raw[a:c] + raw[c:]
        else:
            raw = raw[:a]
    return raw


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@fuzz_settings(50)
@given(data=st.data())
def test_mutated_valid_stream_raises_only_kzn_errors(name: str, data: st.DataObject) -> None:
    case = data.draw(cases_for(name))
    raw = data.draw(mutated(data.draw(framed(name, case.events)), tokens_for(name)))
    run_fuzzed(name, data.draw(cut_up(raw)))


# -- fields of the wrong type (found by the properties below) -----------------------------------

WRONG_TYPES = [
    ("openai", 'data: {"choices":[{"delta":{"content":[null]}}]}\n\n'),
    ("openai", 'data: {"choices":[{"delta":{"reasoning_content":5}}]}\n\n'),
    ("openai", 'data: {"choices":[{"text":{"a":1}}]}\n\n'),
    ("openai", 'data: {"choices":[{"delta":{},"finish_reason":["stop"]}]}\n\n'),
    ("openai", 'data: {"choices":[],"usage":{"prompt_tokens":"19"}}\n\n'),
    ("openai", 'data: {"choices":[],"usage":{"completion_tokens":1.5}}\n\n'),
    ("anthropic", 'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":5}}\n'),
    (
        "anthropic",
        'data: {"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":[1]}}\n\n',
    ),
    ("anthropic", 'data: {"type":"message_start","message":{"usage":{"input_tokens":true}}}\n\n'),
    ("anthropic", 'data: {"type":"message_delta","delta":{"stop_reason":{}}}\n\n'),
    ("anthropic", 'data: {"type":"message_delta","usage":{"output_tokens":"15"}}\n\n'),
    ("gemini", 'data: {"candidates":[],"usageMetadata":{"promptTokenCount":"3"}}\n\n'),
    ("gemini", 'data: {"usageMetadata":{"candidatesTokenCount":2,"thoughtsTokenCount":[]}}\n\n'),
    ("ollama", '{"done":true,"done_reason":3}\n'),
    ("ollama", '{"done":true,"eval_count":1.0}\n'),
]


@pytest.mark.parametrize(("name", "stream"), WRONG_TYPES)
def test_field_of_the_wrong_type_is_a_stream_error_naming_the_provider(
    name: str, stream: str
) -> None:
    deltas, error = WIRE.run(get_provider(name), [stream.encode()])
    assert isinstance(error, StreamError)
    assert str(error).startswith(f"{name}: unexpected stream event")
    assert_well_formed(deltas)


# -- random values in the fields of valid events ------------------------------------------------

FIELD_NAMES = sorted(
    {
        tok.decode().strip('"')
        for name in PROVIDER_NAMES
        for tok in TOKENS.get(name) or PLUGGED_TOKENS.get(name, [])
        if tok.startswith(b'"') and tok.endswith(b'"')
    }
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "x", "é😀", "stop", "text_delta", "error", *FIELD_NAMES])
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
DELETE = object()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value: the root, each key's value, each list item."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths(item, (*prefix, i))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with `new` at `path` (DELETE removes a key or list item)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if new is DELETE and not rest:
        del copy[head]
    else:
        copy[head] = replaced(value[head], rest, new)
    return copy


@st.composite
def field_mutated(draw: st.DrawFn, case: Case) -> tuple[WireEvent, ...]:
    """The events of `case` with one to three fields given a random JSON value (or
    removed)."""
    events = list(case.events)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(events) - 1))
        payload = events[i].payload
        if isinstance(payload, str):
            payload = {}
        path = draw(st.sampled_from(list(paths(payload))))
        new = draw(json_values | st.just(DELETE)) if path else draw(json_values)
        events[i] = WireEvent(replaced(payload, path, new), events[i].name)
    return tuple(events)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
@fuzz_settings(60)
@given(data=st.data())
def test_random_field_values_raise_only_kzn_errors(name: str, data: st.DataObject) -> None:
    case = data.draw(cases_for(name))
    events = data.draw(field_mutated(case))
    raw = data.draw(framed(name, events))
    run_fuzzed(name, data.draw(cut_up(raw)))


# -- the decoders on random bytes --------------------------------------------------------------


def decode(fmt: str, chunks: list[bytes]) -> list[tuple[str, str]]:
    decoder = DECODERS[fmt]()
    events = [ev for chunk in chunks for ev in decoder.decode(chunk)]
    events.extend(decoder.flush())
    return [(ev.event, ev.data) for ev in events]


@pytest.mark.parametrize("fmt", sorted(DECODERS))
@fuzz_settings(80)
@given(data=st.data())
def test_decoder_on_random_bytes_never_raises_and_ignores_chunking(
    fmt: str, data: st.DataObject
) -> None:
    token = st.sampled_from(TOKENS[fmt] + TOKENS["json"])
    raw = b"".join(data.draw(st.lists(token | st.binary(max_size=6), max_size=60)))
    whole = decode(fmt, [raw])
    assert decode(fmt, data.draw(cut_up(raw))) == whole
    for event, text in whole:
        assert type(event) is str and event
        assert type(text) is str
        if fmt == "ndjson":  # one event per line, never JSON whitespace only
            assert "\n" not in text and text.strip(" \t\r")
        else:  # line ends are gone; the data lines of an event are joined with LF
            assert "\r" not in text
