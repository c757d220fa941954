"""The OpenAI Responses API provider: the request (instructions, input turns, `store:
false` unless a preset says otherwise, its closed parameter set), its typed event stream
(text, reasoning summaries, a refusal, an incomplete, a failed response, an `error`
event), usage with cached and reasoning tokens; pure, then recorded streams
(tests/recorded.py, each citing its source) replayed from a loopback server through
`kznllm fill --provider responses` and `:KznFill` under three chunkings (whole events,
single bytes, random cuts). `FUZZ_CASES` puts its stream under every fuzz property of
tests/stream/test_fuzz.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

from kznllm_py.errors import ProviderError
from kznllm_py.prompt.presets import builtin_presets, merge_presets
from kznllm_py.providers import PROVIDERS, responses
from kznllm_py.providers.base import (
    DoneDelta,
    Message,
    Prompt,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
)
from tests.cli_env import clean_env, kznllm
from tests.fuzzing import Case, WireEvent, counts, joined, pieces
from tests.nvim_child import Child, editor_with
from tests.recorded import CHUNKINGS, RESPONSES, Recorded
from tests.servers import LoopbackServer, Reply, fixed_chunks
from tests.streams import cursor_preset, run

PROMPT = Prompt(
    "You write code.",
    (Message("user", "q1"), Message("assistant", "a1"), Message("user", "q2")),
)
BY_NAME = {r.name: r for r in RESPONSES}


# -- the request ---------------------------------------------------------------------------


def test_is_registered_and_lists_models_like_openai() -> None:
    p = PROVIDERS["responses"]
    assert p is responses.PROVIDER
    assert (p.stream_format, p.reasoning, p.open_params) == ("sse", True, False)
    listing = p.models.request("https://api.openai.com/v1/", "k")  # type: ignore[union-attr]
    assert (listing.method, listing.url) == ("GET", "https://api.openai.com/v1/models")


def test_request_has_instructions_input_turns_store_false_and_streams() -> None:
    req = responses.build_request(
        base_url="https://api.openai.com/v1/",
        model="gpt-5-mini",
        prompt=PROMPT,
        params={"max_tokens": 64},
        api_key="sk-x",
    )
    assert (req.method, req.url) == ("POST", "https://api.openai.com/v1/responses")
    assert req.redacted_headers()["Authorization"] == "<redacted>"
    assert req.body == {
        "model": "gpt-5-mini",
        "instructions": "You write code.",
        "input": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
        ],
        "store": False,
        "max_output_tokens": 64,
        "stream": True,
    }


def test_a_preset_may_ask_to_store_and_stream_is_always_on() -> None:
    req = responses.build_request(
        base_url="http://x/v1",
        model="m",
        prompt=Prompt("", (Message("user", "hi"),)),
        params={"store": True, "stream": False},
        api_key=None,
    )
    assert req.body == {
        "model": "m",
        "input": [{"role": "user", "content": "hi"}],
        "store": True,
        "stream": True,
    }
    assert "Authorization" not in req.headers


def test_an_unknown_param_is_refused_at_setup_with_the_field() -> None:
    raw = {"id": "r", "provider": "responses", "model": "m", "params": {"stop": "END"}}
    merged = merge_presets([raw], file=None, env={"XDG_CONFIG_HOME": "/nonexistent"})
    [problem] = merged.problems
    assert problem.startswith("preset 'r': params.stop: unknown to responses")


def test_builtin_preset_on_openai_api_key() -> None:
    [preset] = [p for p in builtin_presets() if p.provider == "responses"]
    assert (preset.api_key, preset.model) == ("OPENAI_API_KEY", "gpt-5-mini")


# -- the stream, pure ----------------------------------------------------------------------


def deltas_of(rec: Recorded) -> tuple[list[Any], Exception | None]:
    got: list[Any] = []
    try:
        got = run(responses.PROVIDER, [rec.wire()])
    except ProviderError as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("rec", RESPONSES, ids=[r.name for r in RESPONSES])
def test_recorded_streams_give_their_text_reasoning_usage_and_end(rec: Recorded) -> None:
    dec_chunks = fixed_chunks(rec.wire(), 1)
    parser = responses.PROVIDER.new_parser()
    from kznllm_py.stream.sse import SSEDecoder

    dec, out, error = SSEDecoder(), [], None
    try:
        for chunk in dec_chunks:
            for ev in dec.decode(chunk):
                out.extend(parser.feed(ev))
        out.extend(parser.finish())
    except ProviderError as exc:
        error = exc
    assert "".join(d.text for d in out if type(d) is TextDelta) == rec.text
    assert "".join(d.text for d in out if type(d) is ReasoningDelta) == rec.reasoning
    if rec.error is None:
        assert error is None
        assert out[-1] == DoneDelta(rec.finish)
        usages = [d.to_dict() for d in out if type(d) is UsageDelta]
        assert usages == ([rec.usage] if rec.usage else [])
    else:
        assert error is not None and str(error) == f"responses error: {rec.error}"


def test_usage_counts_cached_and_reasoning_tokens() -> None:
    usage = {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1536},
        "output_tokens": 700,
        "output_tokens_details": {"reasoning_tokens": 512},
    }
    assert responses.read_usage(usage) == UsageDelta(2000, 700, 1536, 512)


def test_a_stream_cut_before_its_final_event_is_an_error() -> None:
    from kznllm_py.errors import StreamError

    whole = BY_NAME["responses-text"].wire()
    cut = whole[: whole.index(b"event: response.completed")]
    with pytest.raises(StreamError, match="responses: the stream ended before"):
        run(responses.PROVIDER, [cut])


def test_an_error_nested_as_chat_completions_has_it_is_read() -> None:
    bad = b'data: {"type":"error","error":{"code":"rate_limit_exceeded","message":"slow"}}\n\n'
    with pytest.raises(ProviderError, match="rate_limit_exceeded: slow"):
        run(responses.PROVIDER, [bad])


# -- replayed from a loopback server: the CLI and the editor, three chunkings ---------------


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory, loopback: LoopbackServer) -> Iterator[Child]:
    preset = cursor_preset("resp", "responses", loopback.url, model="gpt-5-mini")
    with editor_with(tmp_path_factory.mktemp("nvim"), [preset], "resp") as child:
        yield child


def cli_fill(server: LoopbackServer, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    args = ["--provider", "responses", "--model", "gpt-5-mini", "--no-project", "q"]
    args += ["--base-url", server.url + "/v1"]
    env = clean_env(XDG_CONFIG_HOME=str(cwd / "xdg-config"))
    return kznllm("fill", *args, cwd=cwd, env=env, timeout=30)


REPLAYED = [(r, how) for r in RESPONSES for how in CHUNKINGS]


@pytest.mark.parametrize(("rec", "how"), REPLAYED, ids=[f"{r.name}-{how}" for r, how in REPLAYED])
def test_recorded_stream_through_cli_and_editor_byte_exact(
    rec: Recorded, how: str, loopback: LoopbackServer, editor: Child, tmp_path: Path
) -> None:
    reply = Reply(chunks=rec.chunked(how))
    loopback.queue(reply, reply)
    before = len(loopback.requests)
    res = cli_fill(loopback, tmp_path)
    text, done = editor.fill_scratch()
    sent = [r.body for r in loopback.requests[before:]]
    assert all(b["store"] is False and b["stream"] is True for b in sent)
    # the answer, byte for byte, in both; the reasoning in neither
    assert res.stdout == rec.text.encode("utf-8")
    assert text == rec.text
    if rec.error is not None:
        assert res.returncode == 1
        assert rec.error in res.stderr.decode()
        assert done["status"] == "error" and rec.error in done["error"]
    elif rec.finish == "length":
        assert res.returncode == 0 and b"cut at the token limit" in res.stderr
        assert done["status"] == "ok"
    elif rec.finish == "content_filter":
        assert res.returncode == 0 and b"content filter" in res.stderr
        assert done["status"] == "ok"
    else:
        assert (res.returncode, res.stderr) == (0, b"")
        assert done["status"] == "ok"
    if rec.usage and rec.error is None:
        assert done["usage"]["output_tokens"] == rec.usage["output_tokens"]


# -- the Responses stream under every fuzz property (tests/stream/test_fuzz.py) -----------------


def _ev(kind: str, **fields: Any) -> WireEvent:
    return WireEvent({"type": kind, **fields}, name=kind)


@st.composite
def responses_cases(draw: st.DrawFn) -> Case:
    """created, reasoning summary deltas (over two parts), output text deltas, then
    completed (usage) or incomplete (max_output_tokens)."""
    thoughts, texts = draw(pieces), draw(pieces)
    inp, outp = draw(counts), draw(counts)
    incomplete = draw(st.booleans())
    events = [_ev("response.created", response={"status": "in_progress"})]
    split = draw(st.integers(0, len(thoughts)))
    shown: list[str] = []
    last_part = None
    for i, t in enumerate(thoughts):
        part = 0 if i < split else 1
        events.append(
            _ev("response.reasoning_summary_text.delta", item_id="rs", summary_index=part, delta=t)
        )
        if t:
            shown.append("\n\n" + t if last_part is not None and part != last_part else t)
            last_part = part
    events += [_ev("response.output_text.delta", item_id="m", delta=t) for t in texts]
    usage = {"input_tokens": inp, "output_tokens": outp}
    if incomplete:
        response = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
        events.append(_ev("response.incomplete", response={**response, "usage": usage}))
    else:
        events.append(_ev("response.completed", response={"status": "completed", "usage": usage}))
    finish = "length" if incomplete else "stop"
    return Case(
        "responses", tuple(events), joined(texts), "".join(shown), finish, UsageDelta(inp, outp)
    )


FUZZ_CASES = {"responses": responses_cases()}
FUZZ_TOKENS = {
    "responses": [
        b'"type"',
        b'"delta"',
        b'"response"',
        b'"usage"',
        b'"response.output_text.delta"',
        b'"response.completed"',
        b'"incomplete_details"',
    ]
}


def test_recorded_data_cites_a_source_for_every_stream() -> None:
    for rec in RESPONSES:
        assert rec.source and rec.provider == "responses"
        json.dumps([e for e in rec.events])  # plain JSON, as sent
