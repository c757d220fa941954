"""Mistral's native chat API: the request (Bearer key, system first, a prefill continued
with `prefix: true`, `seed` sent as `random_seed`), its closed parameter set checked at
setup, the stream with Magistral's typed content parts (`thinking` as reasoning), its
error bodies; pure, then the real client over loopback. `FUZZ_CASES` puts Mistral's
stream under every fuzz property of tests/stream/test_fuzz.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import strategies as st

from kznllm_py.prompt.presets import merge_presets, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import PROVIDERS, mistral
from kznllm_py.providers.base import Message, Prompt, ReasoningDelta, TextDelta, UsageDelta
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.generation import Generation
from kznllm_py.stream.sse import Event
from tests.fuzzing import Case, WireEvent, counts, joined, pieces
from tests.servers import LoopbackServer, Reply, json_reply
from tests.streams import generate, loopback_preset

KEY_VAR = "KZN_TEST_MISTRAL_KEY"
KEY = "mst-0123456789abcdef-SECRET"
PROMPT = Prompt("You are terse.", (Message("user", "hi"),))


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-m",
        "object": "chat.completion.chunk",
        "created": 1750000000,
        "model": "magistral-small-2509",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


# -- the request ---------------------------------------------------------------------------


def test_is_registered_with_its_capabilities() -> None:
    p = PROVIDERS["mistral"]
    assert p is mistral.PROVIDER
    assert (p.stream_format, p.raw_prompt, p.supports_prefill, p.reasoning) == (
        "sse",
        False,
        True,
        True,
    )
    assert p.default_base_url == "https://api.mistral.ai/v1"


def test_request_bearer_key_system_first_and_streamed() -> None:
    req = mistral.build_request(
        base_url="https://api.mistral.ai/v1/",
        model="mistral-small-latest",
        prompt=PROMPT,
        params={"temperature": 0.3, "max_tokens": 64},
        api_key=KEY,
    )
    assert (req.method, req.url) == ("POST", "https://api.mistral.ai/v1/chat/completions")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.redacted_headers()["Authorization"] == "<redacted>"
    assert req.body == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
        ],
        "temperature": 0.3,
        "max_tokens": 64,
        "stream": True,
    }


def test_prefill_is_a_prefix_message_and_seed_is_random_seed() -> None:
    prompt = Prompt("", (Message("user", "hi"),), prefill="```python\n")
    req = mistral.build_request(
        base_url="http://x/v1", model="m", prompt=prompt, params={"seed": 7}, api_key=None
    )
    assert req.body["messages"][-1] == {"role": "assistant", "content": "```python", "prefix": True}
    assert req.body["random_seed"] == 7 and "seed" not in req.body
    assert "Authorization" not in req.headers


# -- parameters, checked at setup ----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"top_k": 5}, "params.top_k", "unknown to mistral"),
        ({"temperature": "hot"}, "params.temperature", "want a number"),
        ({"max_tokens": 0}, "params.max_tokens", "want 1 or more"),
        ({"safe_prompt": 1}, "params.safe_prompt", "want true/false"),
    ],
)
def test_bad_param_is_reported_with_the_preset_and_the_field_and_left_out(
    params: dict[str, Any], field: str, reason: str
) -> None:
    raw = {"id": "mst", "provider": "mistral", "model": "m", "params": params}
    merged = merge_presets([raw], file=None, env={"XDG_CONFIG_HOME": "/nonexistent"})
    [problem] = merged.problems
    assert problem.startswith(f"preset 'mst': {field}: {reason}")
    assert "mst" not in merged.presets and "demo" in merged.presets


def test_known_params_pass() -> None:
    params = {"temperature": 0.2, "random_seed": 1, "prompt_mode": "reasoning", "stop": "\n\n"}
    p = preset_from_dict({"id": "mst", "provider": "mistral", "model": "m", "params": params})
    assert p.params == params and p.family == "openai"


# -- the stream ----------------------------------------------------------------------------


def parse(objs: list[Any]) -> list[Any]:
    parser = mistral.PROVIDER.new_parser()
    out: list[Any] = []
    for obj in objs:
        out += parser.feed(Event(data=obj if isinstance(obj, str) else json.dumps(obj)))
    return out + parser.finish()


def test_thinking_parts_are_reasoning_and_text_parts_the_answer() -> None:
    deltas = parse(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": [thinking("Let me ")]}),
            chunk({"content": [thinking("see."), {"type": "text", "text": "Hé"}]}),
            chunk({"content": "llo"}),
            chunk({"content": ""}, "stop", usage={"prompt_tokens": 9, "completion_tokens": 4}),
            "[DONE]",
        ]
    )
    assert "".join(d.text for d in deltas if type(d) is ReasoningDelta) == "Let me see."
    assert "".join(d.text for d in deltas if type(d) is TextDelta) == "Héllo"
    assert UsageDelta(9, 4) in deltas


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"object": "error", "message": "Invalid model: nope", "type": "invalid_model"},
            "invalid_model: Invalid model: nope",
        ),
        (
            {"detail": [{"loc": ["body", "top_k"], "msg": "Extra inputs are not permitted"}]},
            "top_k: Extra inputs are not permitted",
        ),
        ({"message": "Unauthorized", "request_id": "r"}, "Unauthorized"),
    ],
)
def test_error_bodies_give_the_apis_own_words(body: Any, message: str) -> None:
    assert mistral.error_message(body) == message


# -- over loopback, through the real client ------------------------------------------------


async def test_answer_over_loopback_with_key_and_prefill(
    server: LoopbackServer, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VAR, KEY)
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": [thinking("hm")]}),
        chunk({"content": "x = 1\n"}),
        chunk({"content": ""}, "stop", usage={"prompt_tokens": 5, "completion_tokens": 2}),
    ]
    body = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    server.queue(Reply(chunks=body))
    preset = loopback_preset(
        "mistral",
        server.url + "/v1",
        model="codestral-latest",
        api_key=KEY_VAR,
        prefill="```python\n",
    )
    out, text = await generate(client, preset, ctx=FillContext(mode="yap", query="one line"))
    assert (out.status, out.finish_reason) == ("ok", "stop")
    assert text.endswith("x = 1\n")
    assert out.usage == {"input_tokens": 5, "output_tokens": 2}
    [req] = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body["messages"][-1]["prefix"] is True


async def test_refusal_over_loopback_is_one_message_in_the_apis_words(
    server: LoopbackServer, client: Any
) -> None:
    detail = [{"loc": ["body", "top_k"], "msg": "Extra inputs are not permitted"}]
    server.queue(json_reply(422, {"detail": detail}))
    preset = preset_from_dict(
        {"id": "mst", "provider": "mistral", "model": "m", "base_url": server.url + "/v1"}
    )
    gen = Generation(
        client, preset, FillContext(mode="yap", query="q"), Timeouts(connect=5, stall=5)
    )
    out = await gen.run(lambda _text: None)
    assert out.status == "error"
    assert "422" in str(out.error) and "top_k: Extra inputs are not permitted" in str(out.error)


# -- Mistral's stream under every fuzz property (tests/stream/test_fuzz.py) -----------------------


@st.composite
def mistral_cases(draw: st.DrawFn) -> Case:
    """A Magistral stream: a role chunk, content as typed parts (thinking, text, both in
    one chunk) or plain strings, the finish chunk with usage, [DONE]."""
    thoughts, texts = draw(pieces), draw(pieces)
    usage = draw(st.tuples(counts, counts))
    finish = draw(st.sampled_from(["stop", "length", "model_length", "tool_calls"]))
    events = [WireEvent(chunk({"role": "assistant", "content": ""}))]
    events += [WireEvent(chunk({"content": [thinking(t)]})) for t in thoughts]
    for t in texts:
        as_part = draw(st.booleans())
        content: Any = [{"type": "text", "text": t}] if as_part else t
        events.append(WireEvent(chunk({"content": content})))
    last = chunk({"content": ""}, finish)
    last["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    events += [WireEvent(last), WireEvent("[DONE]")]
    return Case(
        "mistral", tuple(events), joined(texts), joined(thoughts), finish, UsageDelta(*usage)
    )


FUZZ_CASES = {"mistral": mistral_cases()}
FUZZ_TOKENS = {"mistral": [b'"thinking"', b'"text"', b'"type"', b'"content"', b'"usage"']}
