"""Streams as providers really send them (shapes read in the public SDKs' test suites
and the providers' docs) that the plugin once got wrong: OpenAI `n > 1` interleaving
its choices, Mistral's `content` as typed parts with `thinking`, Gemini / Vertex
bodies that end without a `finishReason`, and the base URL conventions of the SDKs'
environment variables. Parsed as data, then once each through a loopback server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kznllm_py.prompt.presets import builtin_presets, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import gemini, openai
from kznllm_py.providers.base import DoneDelta, ReasoningDelta, TextDelta, UsageDelta
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import Generation
from kznllm_py.stream.sse import SSEDecoder
from tests.servers import LoopbackServer, Reply, anthropic_events

pytestmark = pytest.mark.usefixtures("no_proxy")


def sse(*objs: Any) -> bytes:
    return b"".join(
        b"data: " + (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n\n" for o in objs
    )


def parse(provider, raw: bytes) -> list:
    dec, parser, out = SSEDecoder(), provider.new_parser(), []
    for ev in [*dec.decode(raw), *dec.flush()]:
        out.extend(parser.feed(ev))
    out.extend(parser.finish())
    return out


def texts(deltas, kind=TextDelta) -> str:
    return "".join(d.text for d in deltas if type(d) is kind)


# -- OpenAI, n > 1 -------------------------------------------------------------------------


def oa(choices: list[dict], **extra: Any) -> dict:
    return {
        "id": "chatcmpl-n2",
        "object": "chat.completion.chunk",
        "created": 1702657020,
        "model": "gpt-4o-mini",
        "system_fingerprint": None,
        "choices": choices,
        **extra,
    }


def ch(index: int, delta: dict, finish: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


# as openai-node's stream tests record it: each choice's chunks in turn, one choice per
# chunk, the finish reasons at the end, then the usage chunk (choices: [])
N2_STREAM = sse(
    oa([ch(0, {"role": "assistant", "content": ""})]),
    oa([ch(1, {"role": "assistant", "content": ""})]),
    oa([ch(0, {"content": "Hello"})]),
    oa([ch(1, {"content": "Bonjour"})]),
    oa([ch(1, {"content": " le monde"})]),
    oa([ch(0, {"content": " world"})]),
    oa([ch(1, {}, "stop")]),
    oa([ch(0, {}, "length")]),
    oa([], usage={"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}),
    b"[DONE]",
)


def test_openai_n2_interleaved_choices_take_index_0_only():
    deltas = parse(openai.PROVIDER, N2_STREAM)
    assert texts(deltas) == "Hello world"
    assert deltas[-1] == DoneDelta("length")  # index 0's reason, not index 1's
    assert UsageDelta(9, 12) in deltas


def test_openai_several_choices_in_one_chunk_take_index_0():
    raw = sse(
        oa([ch(1, {"content": "B"}), ch(0, {"content": "A"})]),
        oa([ch(2, {"content": "C"})]),
        oa([ch(0, {}, "stop"), ch(1, {}, "stop")]),
        b"[DONE]",
    )
    assert texts(parse(openai.PROVIDER, raw)) == "A"


def test_a_choice_without_an_index_is_the_answer():
    raw = sse({"choices": [{"delta": {"content": "plain"}}]}, b"[DONE]")  # some servers
    assert texts(parse(openai.PROVIDER, raw)) == "plain"


# -- Mistral: content as typed parts -------------------------------------------------------


def mi(content: Any, finish: str | None = None, **extra: Any) -> dict:
    return {
        "id": "426a1c8c",
        "object": "chat.completion.chunk",
        "created": 1759752086,
        "model": "magistral-medium-latest",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        **extra,
    }


def thinking(*parts: str) -> dict:
    return {"type": "thinking", "thinking": [{"type": "text", "text": p} for p in parts]}


MAGISTRAL_STREAM = sse(
    {"id": "426a1c8c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    mi([thinking("The user wants", " a function.")]),
    mi([thinking(" Multiply by 2 ✓")]),
    mi([{"type": "thinking", "thinking": [{"type": "text", "text": " done"}], "closed": True}]),
    mi([{"type": "text", "text": "def double(x):"}]),
    mi("\n    return 2 * x"),  # plain strings too, in the same stream
    mi([{"type": "text", "text": "\n"}, {"type": "reference", "reference_ids": [1]}]),
    mi("", "stop", usage={"prompt_tokens": 20, "completion_tokens": 31, "total_tokens": 51}),
    b"[DONE]",
)


def test_mistral_thinking_parts_are_reasoning_and_text_parts_the_answer():
    deltas = parse(openai.PROVIDER, MAGISTRAL_STREAM)
    assert texts(deltas) == "def double(x):\n    return 2 * x\n"
    assert texts(deltas, ReasoningDelta) == "The user wants a function. Multiply by 2 ✓ done"
    assert deltas[-1] == DoneDelta("stop")


def test_mistral_text_and_thinking_in_one_chunk_keep_their_order():
    deltas = parse(
        openai.PROVIDER, sse(mi([thinking("t"), {"type": "text", "text": "a"}]), b"[DONE]")
    )
    assert deltas[:2] == [ReasoningDelta("t"), TextDelta("a")]


# -- Gemini / Vertex: a clean end without finishReason --------------------------------------


def gm(text: str, **extra: Any) -> dict:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
        **extra,
    }


VERTEX_STREAM = sse(gm("def f():"), gm("\n    pass"), gm("\n"))  # no finishReason at all


def test_gemini_a_body_that_ends_cleanly_without_finish_reason_is_complete():
    deltas = parse(gemini.PROVIDER, VERTEX_STREAM)
    assert texts(deltas) == "def f():\n    pass\n"
    assert deltas[-1] == DoneDelta(None)


# -- the same streams, over loopback, through Generation -----------------------------------


@pytest.mark.parametrize(
    ("provider", "stream", "answer", "reasoning"),
    [
        ("openai", N2_STREAM, "Hello world", ""),
        (
            "openai",
            MAGISTRAL_STREAM,
            "def double(x):\n    return 2 * x\n",
            "The user wants a function. Multiply by 2 ✓ done",
        ),
        ("gemini", VERTEX_STREAM, "def f():\n    pass\n", ""),
    ],
    ids=["openai-n2", "mistral-thinking", "vertex-no-finish-reason"],
)
async def test_real_streams_end_to_end(provider, stream, answer, reasoning):
    chunks = [stream[i : i + 97] for i in range(0, len(stream), 97)]  # events split anywhere
    with LoopbackServer(default=Reply(chunks=chunks)) as server:
        preset = preset_from_dict(
            {
                "id": "r",
                "provider": provider,
                "model": "m",
                "base_url": server.base_url,
                "api_key": False,
            }
        )
        got: list[str] = []
        thought: list[str] = []
        async with new_client() as client:
            out = await Generation(
                client,
                preset,
                FillContext(mode="yap", query="q"),
                Timeouts(5, 5),
            ).run(got.append, thought.append)
    assert (out.status, out.error) == ("ok", None)
    assert "".join(got) == answer
    assert "".join(thought) == reasoning


# -- base URLs: each SDK's environment variable and convention ------------------------------


def by_id(pid: str):
    return next(p for p in builtin_presets() if p.id == pid)


def test_builtin_presets_honour_anthropic_and_openai_base_url(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gw.example/anthropic")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://gw.example/openai/v1")
    for pid in ("claude-sonnet", "claude-haiku"):
        assert by_id(pid).base_url == "https://gw.example/anthropic"
    for pid in ("gpt-4o-mini", "o4-mini"):
        assert by_id(pid).base_url == "https://gw.example/openai/v1"


def test_builtin_presets_default_to_the_sdks_own_base_urls(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert by_id("claude-sonnet").base_url == "https://api.anthropic.com"
    assert by_id("gpt-4o-mini").base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize("suffix", ["", "/v1"])
async def test_anthropic_base_url_from_the_environment_reaches_v1_messages(suffix, monkeypatch):
    with LoopbackServer(default=Reply(chunks=anthropic_events(["hi"]))) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url + suffix)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        got: list[str] = []
        async with new_client() as client:
            out = await Generation(
                client, by_id("claude-haiku"), FillContext(mode="yap", query="q"), Timeouts(5, 5)
            ).run(got.append)
    assert (out.status, "".join(got)) == ("ok", "hi")
    assert server.requests[0].path == "/v1/messages"
