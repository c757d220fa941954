"""/v1/completions with a raw prompt: chat-style (prompt.jinja) or fill-in-the-middle
(fim.jinja) for local code models, through the real HTTP path on loopback."""

from __future__ import annotations

import json

import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.prompt.presets import merge_presets, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import completions, openai
from kznllm_py.providers.base import Prompt, TextDelta
from kznllm_py.stream.client import new_client
from kznllm_py.stream.sse import Event
from tests.servers import LoopbackServer, Reply
from tests.streams import generate, loopback_preset


def completion_events(texts: list[str]) -> list[bytes]:
    def chunk(text: str, finish: str | None) -> bytes:
        obj = {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": "m",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    return [*(chunk(t, None) for t in texts), chunk("", "stop"), b"data: [DONE]\n\n"]


def test_request_is_the_raw_prompt_on_the_completions_endpoint():
    req = completions.build_request(
        base_url="http://127.0.0.1:8000/v1/",
        model="qwen",
        prompt=Prompt(system="", messages=(), raw="<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"),
        params={"max_tokens": 64, "stop": ["<|endoftext|>"]},
        api_key=None,
    )
    assert req.url == "http://127.0.0.1:8000/v1/completions"
    assert req.body == {
        "model": "qwen",
        "prompt": "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
        "max_tokens": 64,
        "stop": ["<|endoftext|>"],
        "stream": True,
    }
    assert "Authorization" not in req.headers


def test_completion_chunks_are_read_by_the_openai_parser():
    first = completion_events(["def "])[0]
    data = first.decode().removeprefix("data: ").strip()
    assert openai.Parser().feed(Event(data)) == [TextDelta("def ")]


def test_fim_needs_the_completions_provider():
    with pytest.raises(ConfigError, match="fim = true needs a raw-prompt provider"):
        preset_from_dict({"id": "x", "provider": "openai", "model": "m", "fim": True})


def test_builtin_fim_preset_is_valid():
    assert merge_presets(None).presets["vllm-qwen-fim"].fim is True


@pytest.mark.parametrize(
    ("fim", "expected_start"), [(True, "<|fim_prefix|>"), (False, "<|im_start|>system")]
)
async def test_fill_in_the_middle_through_loopback_is_byte_exact(fim, expected_start):
    with LoopbackServer() as server:
        server.queue(Reply(chunks=completion_events(["    return ", "a + b ✓\n"])))
        preset = loopback_preset(
            "completions", server.base_url, model="qwen", templates="qwen", fim=fim
        )
        ctx = FillContext(
            mode="yap", query="", before="def add(a, b):\n", after="\n\nprint(add(1, 2))\n"
        )
        async with new_client() as client:
            out, text = await generate(client, preset, ctx=ctx)
        assert (out.status, text) == ("ok", "    return a + b ✓\n")
        sent = server.requests[0]
        assert sent.path == "/v1/completions"
        assert sent.body["prompt"].startswith(expected_start)
        if fim:
            assert sent.body["prompt"] == (
                "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\n\nprint(add(1, 2))\n<|fim_middle|>"
            )
