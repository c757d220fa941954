"""The OpenAI and Anthropic wire formats, as pure data: requests built, recorded streams
parsed, error bodies read. No network."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from kznllm_py.errors import ProviderError, StreamError
from kznllm_py.providers import anthropic, get_provider, openai
from kznllm_py.providers.base import (
    DoneDelta,
    Message,
    Prompt,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
)
from kznllm_py.stream.sse import Event, SSEDecoder
from tests.fuzzing import chunkings
from tests.streams import run, run_cut, text_of

KEY = "sk-test-SECRET-0123456789"
PROMPT = Prompt("You are terse.", (Message("user", "hi"), Message("assistant", "yo")))


def feed_all(parser, events: list[Event]):
    out = []
    for ev in events:
        out.extend(parser.feed(ev))
    return out


# -- recorded streams -------------------------------------------------------------------


def oa_chunk(delta: dict, finish_reason=None, *, usage=None, choices=True) -> str:
    obj = {
        "id": "chatcmpl-9xyz",
        "object": "chat.completion.chunk",
        "created": 1718000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": (
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            if choices
            else []
        ),
        "usage": usage,
    }
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


OA_USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 3,
    "total_tokens": 22,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}


def openai_stream(pieces: list[str], *, ascii_json: bool = False) -> bytes:
    """A recorded Chat Completions stream (stream_options.include_usage = true)."""
    events = [oa_chunk({"role": "assistant", "content": "", "refusal": None})]
    for p in pieces:
        obj = json.loads(oa_chunk({"content": p}))
        events.append(json.dumps(obj, ensure_ascii=ascii_json, separators=(",", ":")))
    events.append(oa_chunk({}, "stop"))
    events.append(oa_chunk({}, choices=False, usage=OA_USAGE))
    events.append("[DONE]")
    return "".join(f"data: {e}\n\n" for e in events).encode()


def an_event(kind: str, obj: dict, *, ascii_json: bool = False) -> str:
    return f"event: {kind}\ndata: {json.dumps(obj, ensure_ascii=ascii_json)}\n\n"


def anthropic_stream(
    pieces: list[str], *, thinking: list[str] = (), ascii_json: bool = False
) -> bytes:
    """A recorded Messages stream, optionally with a thinking block first."""
    out = [
        an_event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-sonnet-4-5-20250929",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 25,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        )
    ]
    index = 0
    if thinking:
        out.append(
            an_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
        )
        for t in thinking:
            out.append(
                an_event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "thinking_delta", "thinking": t},
                    },
                    ascii_json=ascii_json,
                )
            )
        out.append(
            an_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9G"},
                },
            )
        )
        out.append(an_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    out.append(
        an_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
    )
    out.append(an_event("ping", {"type": "ping"}))
    for p in pieces:
        out.append(
            an_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": p},
                },
                ascii_json=ascii_json,
            )
        )
    out.append(an_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(
        an_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 15},
            },
        )
    )
    out.append(an_event("message_stop", {"type": "message_stop"}))
    return "".join(out).encode()


# -- registry ----------------------------------------------------------------------------


def test_get_provider_by_name():
    assert get_provider("openai") is openai.PROVIDER
    assert get_provider("anthropic") is anthropic.PROVIDER


# -- build_request: OpenAI ---------------------------------------------------------------


@pytest.mark.parametrize(
    "base", ["https://api.openai.com/v1", "https://api.openai.com/v1/", "https://x/v1//"]
)
def test_openai_url_joins_base_with_or_without_trailing_slash(base):
    req = openai.build_request(base_url=base, model="m", prompt=PROMPT, params={}, api_key=None)
    assert req.url == base.rstrip("/") + "/chat/completions"
    assert "//chat" not in req.url
    assert req.method == "POST"


def test_openai_bearer_auth_and_secret_header():
    req = openai.build_request(
        base_url="https://api.openai.com/v1", model="m", prompt=PROMPT, params={}, api_key=KEY
    )
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in {k.lower() for k in req.headers}
    assert req.secret_headers == frozenset({"authorization"})
    shown = req.redacted_headers()
    assert shown["Authorization"] == "<redacted>"
    assert KEY not in repr(shown)
    assert shown["Content-Type"] == "application/json"
    assert req.headers["Authorization"] == f"Bearer {KEY}"  # the real headers untouched


@pytest.mark.parametrize("key", [None, ""])
def test_openai_no_auth_header_without_key(key):
    req = openai.build_request(
        base_url="http://localhost:8080/v1", model="m", prompt=PROMPT, params={}, api_key=key
    )
    assert "authorization" not in {k.lower() for k in req.headers}
    assert req.secret_headers == frozenset()
    assert req.redacted_headers() == req.headers


def test_openai_system_is_the_first_message():
    req = openai.build_request(
        base_url="https://a/v1", model="gpt-4o", prompt=PROMPT, params={}, api_key=None
    )
    assert req.body["model"] == "gpt-4o"
    assert req.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert "system" not in req.body


def test_openai_params_passed_through_and_stream_forced():
    params = {"top_p": 0.9, "repetition_penalty": 1.1, "temperature": 0, "stream": False}
    req = openai.build_request(
        base_url="https://a/v1", model="m", prompt=PROMPT, params=params, api_key=None
    )
    assert req.body["top_p"] == 0.9
    assert req.body["repetition_penalty"] == 1.1
    assert req.body["temperature"] == 0
    assert req.body["stream"] is True
    assert params["stream"] is False  # caller's dict not mutated


def test_openai_body_is_json_serialisable_and_keeps_unicode():
    prompt = Prompt("sys €", (Message("user", "héllo \U0001f600"),))
    req = openai.build_request(
        base_url="https://a/v1", model="m", prompt=prompt, params={}, api_key=None
    )
    assert json.loads(json.dumps(req.body))["messages"][1]["content"] == "héllo \U0001f600"


# -- build_request: Anthropic ------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "url"),
    [
        # the SDKs' convention (ANTHROPIC_BASE_URL): no /v1
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        # a trailing /v1 (this plugin's old convention) is accepted, not doubled
        ("https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"),
        # a gateway under a path prefix
        ("https://gw.example/anthropic", "https://gw.example/anthropic/v1/messages"),
        ("https://gw.example/anthropic/v1", "https://gw.example/anthropic/v1/messages"),
    ],
)
def test_anthropic_messages_url_follows_the_sdk_base_url_convention(base, url):
    req = anthropic.build_request(base_url=base, model="m", prompt=PROMPT, params={}, api_key=None)
    assert req.url == url


def test_anthropic_x_api_key_and_version_headers():
    req = anthropic.build_request(
        base_url="https://api.anthropic.com/v1", model="m", prompt=PROMPT, params={}, api_key=KEY
    )
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in {k.lower() for k in req.headers}
    assert req.secret_headers == frozenset({"x-api-key"})
    shown = req.redacted_headers()
    assert shown["x-api-key"] == "<redacted>"
    assert shown["anthropic-version"] == "2023-06-01"
    assert KEY not in repr(shown)


def test_anthropic_no_key_header_without_key_but_version_kept():
    req = anthropic.build_request(
        base_url="https://api.anthropic.com/v1", model="m", prompt=PROMPT, params={}, api_key=None
    )
    assert "x-api-key" not in req.headers
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.secret_headers == frozenset()


def test_anthropic_system_as_text_blocks_not_a_message():
    req = anthropic.build_request(
        base_url="https://a/v1", model="claude-x", prompt=PROMPT, params={}, api_key=None
    )
    assert req.body["system"] == [{"type": "text", "text": "You are terse."}]
    assert req.body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert req.body["model"] == "claude-x"


def test_anthropic_empty_system_omitted():
    prompt = Prompt("", (Message("user", "hi"),))
    req = anthropic.build_request(
        base_url="https://a/v1", model="m", prompt=prompt, params={}, api_key=None
    )
    assert "system" not in req.body


def test_anthropic_default_max_tokens_and_override():
    req = anthropic.build_request(
        base_url="https://a/v1", model="m", prompt=PROMPT, params={}, api_key=None
    )
    assert req.body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS
    req = anthropic.build_request(
        base_url="https://a/v1", model="m", prompt=PROMPT, params={"max_tokens": 123}, api_key=None
    )
    assert req.body["max_tokens"] == 123


def test_anthropic_params_passed_through_and_stream_forced():
    params = {"top_p": 0.5, "top_k": 40, "stream": False, "thinking": {"type": "enabled"}}
    req = anthropic.build_request(
        base_url="https://a/v1", model="m", prompt=PROMPT, params=params, api_key=None
    )
    assert req.body["top_p"] == 0.5
    assert req.body["top_k"] == 40
    assert req.body["thinking"] == {"type": "enabled"}
    assert req.body["stream"] is True


# -- OpenAI parser ----------------------------------------------------------------------


def test_openai_recorded_stream_exact_deltas():
    deltas = run(openai.PROVIDER, [openai_stream(["Hel", "lo", " wörld"])])
    assert deltas == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" wörld"),
        UsageDelta(19, 3),
        DoneDelta("stop"),
    ]


def test_openai_role_only_first_delta_yields_nothing():
    p = openai.Parser()
    assert p.feed(Event(oa_chunk({"role": "assistant", "content": ""}))) == []
    assert p.feed(Event(oa_chunk({"role": "assistant"}))) == []
    assert p.feed(Event(oa_chunk({"role": "assistant", "content": None}))) == []


def test_openai_empty_delta_yields_nothing():
    p = openai.Parser()
    assert p.feed(Event(oa_chunk({}))) == []
    assert p.feed(Event('{"choices":[{"index":0,"delta":null}]}')) == []


def test_openai_empty_choices_with_usage_is_a_usage_delta():
    p = openai.Parser()
    assert p.feed(Event(oa_chunk({}, choices=False, usage=OA_USAGE))) == [UsageDelta(19, 3)]


def test_openai_usage_null_on_content_chunks_ignored():
    p = openai.Parser()
    assert p.feed(Event(oa_chunk({"content": "a"}, usage=None))) == [TextDelta("a")]


def test_openai_usage_on_the_finish_chunk():
    # llama.cpp / some servers put usage on the chunk that has finish_reason
    p = openai.Parser()
    ev = Event(oa_chunk({}, "length", usage={"prompt_tokens": 4, "completion_tokens": 9}))
    assert p.feed(ev) == [UsageDelta(4, 9)]
    assert p.feed(Event("[DONE]")) == [DoneDelta("length")]


def test_openai_finish_reason_kept_until_done():
    p = openai.Parser()
    assert p.feed(Event(oa_chunk({"content": "x"}, "length"))) == [TextDelta("x")]
    assert p.feed(Event(oa_chunk({}, None))) == []  # a later null does not erase it
    assert p.feed(Event("[DONE]")) == [DoneDelta("length")]
    assert p.done
    assert p.finish() == []


def test_openai_done_without_finish_reason():
    p = openai.Parser()
    assert p.feed(Event("[DONE]")) == [DoneDelta(None)]
    assert p.finish() == []


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_openai_reasoning_is_a_reasoning_delta(field):
    p = openai.Parser()
    ev = Event(oa_chunk({"role": "assistant", "content": None, field: "Let me think"}))
    assert p.feed(ev) == [ReasoningDelta("Let me think")]
    ev = Event(oa_chunk({"content": "Answer", field: None}))
    assert p.feed(ev) == [TextDelta("Answer")]


def test_openai_error_event_is_provider_error_with_message():
    p = openai.Parser()
    data = json.dumps(
        {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
    )
    with pytest.raises(ProviderError) as exc:
        p.feed(Event(data))
    assert "The server had an error while processing your request." in str(exc.value)
    assert exc.value.provider == "openai"
    assert exc.value.status is None


def test_openai_error_next_to_choices_is_not_swallowed():
    # OpenRouter's mid-stream error: an error object beside a choice with
    # finish_reason "error". Ignoring it would end the stream as if it succeeded.
    p = openai.Parser()
    data = json.dumps(
        {
            "id": "gen-1",
            "object": "chat.completion.chunk",
            "created": 1718000000,
            "model": "openai/gpt-4o",
            "provider": "OpenAI",
            "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }
    )
    with pytest.raises(ProviderError, match="Provider disconnected unexpectedly"):
        p.feed(Event(data))


def test_openai_refusal_ends_as_an_error_quoting_the_model_never_as_text():
    # what Chat Completions streams when the model declines (structured outputs)
    words = ["I'm sorry, ", "I can't help with that."]
    chunks = [
        f"data: {oa_chunk({'role': 'assistant', 'content': None, 'refusal': ''})}\n\n",
        *(f"data: {oa_chunk({'refusal': w})}\n\n" for w in words),
        f"data: {oa_chunk({}, 'stop')}\n\n",
        "data: [DONE]\n\n",
    ]
    with pytest.raises(
        ProviderError, match=r"^openai error: the model refused: I'm sorry, I can't"
    ):
        run(openai.PROVIDER, [c.encode() for c in chunks])
    with pytest.raises(ProviderError, match="the model refused"):  # no [DONE] after it
        run(openai.PROVIDER, [c.encode() for c in chunks[:-1]])


def test_openai_vllm_object_error_event_is_provider_error():
    p = openai.Parser()
    data = (
        '{"object":"error","message":"max_tokens is too large","type":"BadRequestError","code":400}'
    )
    with pytest.raises(ProviderError, match="max_tokens is too large"):
        p.feed(Event(data))


def test_openai_null_error_field_is_not_an_error():
    p = openai.Parser()
    assert p.feed(Event('{"error":null,"choices":[{"delta":{"content":"ok"}}]}')) == [
        TextDelta("ok")
    ]


@pytest.mark.parametrize(
    "data", ['{"choices": [', "not json", '{"a":1}{"b":2}', "", "data: {}", "[DONE"]
)
def test_openai_malformed_json_is_stream_error(data):
    p = openai.Parser()
    with pytest.raises(StreamError, match="malformed JSON") as exc:
        p.feed(Event(data))
    assert not isinstance(exc.value, json.JSONDecodeError)
    assert exc.value.__cause__ is None  # no chained JSONDecodeError either


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "42", "null"])
def test_openai_non_object_json_is_stream_error(data):
    with pytest.raises(StreamError, match="unexpected stream event"):
        openai.Parser().feed(Event(data))


def test_openai_malformed_json_message_is_truncated():
    data = '{"x": "' + "a" * 5000
    with pytest.raises(StreamError) as exc:
        openai.Parser().feed(Event(data))
    assert len(str(exc.value)) < 400


def test_openai_finish_without_done_or_finish_reason_is_stream_error():
    p = openai.Parser()
    feed_all(
        p,
        [
            Event(oa_chunk({"role": "assistant", "content": ""})),
            Event(oa_chunk({"content": "par"})),
        ],
    )
    with pytest.raises(StreamError, match="ended before"):
        p.finish()


def test_openai_finish_without_done_ok_after_finish_reason():
    p = openai.Parser()
    feed_all(p, [Event(oa_chunk({"content": "all"})), Event(oa_chunk({}, "stop"))])
    assert p.finish() == [DoneDelta("stop")]
    assert p.done


def test_openai_finish_on_empty_stream_is_stream_error():
    with pytest.raises(StreamError):
        openai.Parser().finish()


def test_openai_stream_cut_mid_event_raises_stream_error_via_flush():
    raw = openai_stream(["abc"])
    cut = raw.index(b'"abc"') + 2  # inside the JSON of the content chunk
    with pytest.raises(StreamError):
        run(openai.PROVIDER, [raw[:cut]])


def test_openai_keep_alive_comments_and_crlf_do_not_change_deltas():
    plain = openai_stream(["a", "b€"])
    noisy = b": OPENROUTER PROCESSING\r\n\r\n" + plain.replace(b"\n", b"\r\n")
    noisy = noisy.replace(b"\r\n\r\ndata", b"\r\n\r\n: ping\r\n\r\ndata")
    assert run(openai.PROVIDER, [noisy]) == run(openai.PROVIDER, [plain])


# -- Anthropic parser -------------------------------------------------------------------


def test_anthropic_recorded_stream_exact_deltas():
    raw = anthropic_stream(["Hello", "!"], thinking=["Let me solve this step by step:\n\n1."])
    assert run(anthropic.PROVIDER, [raw]) == [
        ReasoningDelta("Let me solve this step by step:\n\n1."),
        TextDelta("Hello"),
        TextDelta("!"),
        UsageDelta(25, 15),
        DoneDelta("end_turn"),
    ]


def test_anthropic_each_event_kind():
    p = anthropic.Parser()
    raw = anthropic_stream(["Hi"], thinking=["hm"])
    events = SSEDecoder().decode(raw)
    got = {}
    for ev in events:
        got.setdefault(ev.event, []).append(p.feed(ev))
    assert got["message_start"] == [[]]
    assert got["content_block_start"] == [[], []]
    assert got["ping"] == [[]]
    assert got["content_block_delta"] == [
        [ReasoningDelta("hm")],
        [],  # signature_delta ignored
        [TextDelta("Hi")],
    ]
    assert got["content_block_stop"] == [[], []]
    assert got["message_delta"] == [[UsageDelta(25, 15)]]
    assert got["message_stop"] == [[DoneDelta("end_turn")]]
    assert p.finish() == []


def test_anthropic_type_from_data_not_only_event_line():
    # the `type` inside the data is authoritative; the event: line is a fallback
    p = anthropic.Parser()
    ev = Event('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}')
    assert p.feed(ev) == [TextDelta("x")]
    ev = Event('{"index":0,"delta":{"type":"text_delta","text":"y"}}', "content_block_delta")
    assert p.feed(ev) == [TextDelta("y")]


def test_anthropic_input_json_delta_and_empty_text_ignored():
    p = anthropic.Parser()
    ev = Event(
        json.dumps(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"loc'},
            }
        ),
        "content_block_delta",
    )
    assert p.feed(ev) == []
    ev = Event('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}')
    assert p.feed(ev) == []


def test_anthropic_message_delta_with_input_tokens_uses_them():
    p = anthropic.Parser()
    p.feed(
        Event('{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}')
    )
    ev = Event(
        '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},'
        '"usage":{"input_tokens":10,"output_tokens":7}}'
    )
    assert p.feed(ev) == [UsageDelta(10, 7)]
    # cut at the token limit: reported as "length", the same word as OpenAI's
    assert p.feed(Event('{"type":"message_stop"}')) == [DoneDelta("length")]


def test_anthropic_unknown_future_event_ignored():
    p = anthropic.Parser()
    assert p.feed(Event('{"type":"brand_new_event","x":1}', "brand_new_event")) == []


def test_anthropic_overloaded_error_event_is_provider_error():
    p = anthropic.Parser()
    ev = Event(
        '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
        "error",
    )
    with pytest.raises(ProviderError) as exc:
        p.feed(ev)
    assert "overloaded" in str(exc.value).lower()
    assert "Overloaded" in str(exc.value)
    assert exc.value.provider == "anthropic"


def test_anthropic_error_mid_stream_after_text():
    raw = anthropic_stream(["partial"])
    cut = raw.index(b"event: content_block_stop")
    raw = raw[:cut] + (
        b"event: error\n"
        b'data: {"type": "error", '
        b'"error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    dec, p, seen = SSEDecoder(), anthropic.Parser(), []
    with pytest.raises(ProviderError, match="overloaded"):
        for ev in dec.decode(raw):
            seen.extend(p.feed(ev))
    assert text_of(seen) == "partial"


def test_anthropic_finish_before_message_stop_is_stream_error():
    raw = anthropic_stream(["Hello"])
    cut = raw.index(b"event: message_stop")
    with pytest.raises(StreamError, match="ended before"):
        run(anthropic.PROVIDER, [raw[:cut]])


def test_anthropic_finish_on_empty_stream_is_stream_error():
    with pytest.raises(StreamError):
        anthropic.Parser().finish()


def test_anthropic_malformed_json_is_stream_error():
    with pytest.raises(StreamError, match="malformed JSON") as exc:
        anthropic.Parser().feed(Event('{"type": "content_block_delta", "delta": {', "x"))
    assert not isinstance(exc.value, json.JSONDecodeError)


def test_anthropic_non_object_json_is_stream_error():
    with pytest.raises(StreamError, match="unexpected stream event"):
        anthropic.Parser().feed(Event("[]", "message_start"))


# -- error_message ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "error": {
                    "message": "Incorrect API key provided: sk-abc***xyz.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "Incorrect API key provided: sk-abc***xyz.",
        ),
        (
            {"error": {"code": 402, "message": "Insufficient credits", "metadata": {}}},
            "Insufficient credits",
        ),  # OpenRouter
        ({"error": "model 'llama9' not found"}, "model 'llama9' not found"),  # Ollama
        ({"object": "error", "message": "bad max_tokens", "code": 400}, "bad max_tokens"),
        ({"detail": "Not Found"}, "Not Found"),  # FastAPI-style servers
        ([{"error": {"message": "x"}}], None),  # Google's wrapping is Gemini's alone
    ],
)
def test_openai_error_message(body, expected):
    assert openai.error_message(body) == expected
    assert openai.PROVIDER.error_message(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            },
            "authentication_error: invalid x-api-key",
        ),
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded_error: Overloaded",
        ),
        (
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
            },
            "rate_limit_error: Number of requests exceeded",
        ),
        ({"error": {"message": "no type"}}, "no type"),
        ({"message": "Internal server error"}, "Internal server error"),
        ({"error": {"type": "api_error"}}, None),
    ],
)
def test_anthropic_error_message(body, expected):
    assert anthropic.error_message(body) == expected
    assert anthropic.PROVIDER.error_message(body) == expected


# -- byte-exact under any chunking --------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(chunkings(lambda pieces, ascii_json: openai_stream(pieces, ascii_json=ascii_json)))
def test_property_openai_text_byte_exact_under_any_chunking(case):
    assert run_cut(openai.PROVIDER, case)[-1] == DoneDelta("stop")


@settings(max_examples=150, deadline=None)
@given(
    chunkings(
        lambda pieces, ascii_json: anthropic_stream(
            pieces, thinking=pieces[:2], ascii_json=ascii_json
        )
    )
)
def test_property_anthropic_text_byte_exact_under_any_chunking(case):
    pieces, _, _ = case
    split = run_cut(anthropic.PROVIDER, case)
    reasoning = "".join(d.text for d in split if isinstance(d, ReasoningDelta))
    assert reasoning == "".join(pieces[:2])
    assert split[-2:] == [UsageDelta(25, 15), DoneDelta("end_turn")]


# events each parser refuses as of the wrong shape (JSON, but not an event it knows)
WRONG_SHAPES = {
    "openai": [
        '{"choices": {"0": 1}}',
        '{"choices": [{"delta": "text"}]}',
        '{"choices": [1]}',
        '{"choices": [{"delta": {"content": "x"}}], "usage": 5}',
    ],
    "anthropic": [
        '{"type": "content_block_delta", "delta": "text"}',
        '{"type": "message_start", "message": [1]}',
        '{"type": "message_delta", "delta": 3}',
        "[1, 2]",
    ],
    "gemini": [
        "[1, 2]",
        '"text"',
        "null",
        '{"candidates": "x"}',
        '{"candidates": [1]}',
        '{"candidates": [{"content": "text"}]}',
        '{"candidates": [{"content": {"parts": ["a"]}}]}',
        '{"candidates": [{"content": {"parts": [{"text": 5}]}}]}',
        '{"candidates": [{"content": {"parts": {"text": "a"}}}]}',
        '{"usageMetadata": [3]}',
        '{"usageMetadata": {"candidatesTokenCount": 1, "thoughtsTokenCount": "9"}}',
        '{"promptFeedback": "blocked"}',
    ],
    "ollama": [
        "[1, 2]",
        '"text"',
        "42",
        '{"message": "text", "done": false}',
        '{"message": [1], "done": false}',
        '{"message": {"content": 5}, "done": false}',
        '{"message": {"content": "", "thinking": ["a"]}, "done": false}',
    ],
}


@pytest.mark.parametrize(
    ("provider", "data"), [(p, d) for p, datas in WRONG_SHAPES.items() for d in datas]
)
def test_an_event_of_the_wrong_shape_is_a_stream_error(provider: str, data: str) -> None:
    with pytest.raises(StreamError, match="unexpected stream event"):
        get_provider(provider).new_parser().feed(Event(data))
