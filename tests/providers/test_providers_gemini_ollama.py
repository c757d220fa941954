"""The Gemini and Ollama wire formats and the NDJSON line decoder, as pure data: requests
built, recorded streams parsed, error bodies read. No network."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.errors import ConfigError, ProviderError, StreamError
from kznllm_py.prompt.presets import preset_from_dict
from kznllm_py.providers import PROVIDERS, anthropic, gemini, get_provider, ollama, openai
from kznllm_py.providers.base import (
    DoneDelta,
    Message,
    Prompt,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
)
from kznllm_py.stream.ndjson import NDJSONDecoder
from kznllm_py.stream.sse import Event
from tests.fuzzing import chunkings
from tests.streams import reasoning_of, run, run_cut, text_of

KEY = "AIzaSy-test-SECRET-0123456789"
PROMPT = Prompt(
    "You are terse.",
    (Message("user", "hi"), Message("assistant", "yo"), Message("user", "again")),
)
GEMINI_BASE = "https://generativelanguage.googleapis.com/v1beta"


def lines_of(events: list[Event]) -> list[str]:
    return [e.data for e in events]


def decode_all(chunks: list[bytes]) -> list[Event]:
    dec = NDJSONDecoder()
    out = []
    for chunk in chunks:
        out.extend(dec.decode(chunk))
    out.extend(dec.flush())
    return out


# -- recorded streams -------------------------------------------------------------------


def gm_chunk(
    parts: list[dict] | None,
    finish: str | None = None,
    *,
    usage: dict | None = None,
    ascii_json: bool = False,
) -> str:
    """One GenerateContentResponse as gemini-2.5-flash streams it."""
    cand: dict = {"index": 0}
    if parts is not None:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish:
        cand["finishReason"] = finish
    obj: dict = {"candidates": [cand]}
    if usage is not None:
        obj["usageMetadata"] = usage
    obj["modelVersion"] = "gemini-2.5-flash"
    obj["responseId"] = "y3BJaK2xLs-nz7IPpM2f0Ao"
    return json.dumps(obj, ensure_ascii=ascii_json)


def gm_usage(candidates: int | None, thoughts: int | None = None) -> dict:
    usage: dict = {"promptTokenCount": 12}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = 12 + (candidates or 0) + (thoughts or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": 12}]
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def gemini_stream(
    pieces: list[str],
    *,
    thoughts: list[str] = (),
    finish: str = "STOP",
    ascii_json: bool = False,
) -> bytes:
    """A recorded alt=sse stream (Google ends its events with CRLF CRLF): thought
    summaries first, then the answer; the last chunk carries the finishReason."""
    events = []
    nthoughts = 40 if thoughts else None
    for t in thoughts:
        events.append(
            gm_chunk(
                [{"text": t, "thought": True}],
                usage=gm_usage(None, nthoughts),
                ascii_json=ascii_json,
            )
        )
    for i, p in enumerate(pieces):
        events.append(
            gm_chunk([{"text": p}], usage=gm_usage(i + 1, nthoughts), ascii_json=ascii_json)
        )
    events.append(gm_chunk([{"text": ""}], finish, usage=gm_usage(len(pieces), nthoughts)))
    return "".join(f"data: {e}\r\n\r\n" for e in events).encode()


def ol_line(content: str, *, thinking: str | None = None, ascii_json: bool = False) -> str:
    message: dict = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    obj = {
        "model": "qwen3:0.6b",
        "created_at": "2025-06-01T10:00:00.123456789Z",
        "message": message,
        "done": False,
    }
    return json.dumps(obj, ensure_ascii=ascii_json, separators=(",", ":"))


OL_DONE = {
    "model": "qwen3:0.6b",
    "created_at": "2025-06-01T10:00:02.5Z",
    "message": {"role": "assistant", "content": ""},
    "done_reason": "stop",
    "done": True,
    "total_duration": 4883583458,
    "load_duration": 1334875,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 342546000,
    "eval_count": 282,
    "eval_duration": 4535599000,
}


def ollama_stream(
    pieces: list[str], *, thinking: list[str] = (), reason: str = "stop", ascii_json=False
) -> bytes:
    lines = [ol_line("", thinking=t, ascii_json=ascii_json) for t in thinking]
    lines += [ol_line(p, ascii_json=ascii_json) for p in pieces]
    lines.append(json.dumps({**OL_DONE, "done_reason": reason}, separators=(",", ":")))
    return "".join(line + "\n" for line in lines).encode()


# -- registry ----------------------------------------------------------------------------


def test_registered_by_name():
    assert get_provider("gemini") is gemini.PROVIDER
    assert get_provider("ollama") is ollama.PROVIDER
    assert {"openai", "anthropic", "gemini", "ollama"} <= set(PROVIDERS)
    assert gemini.PROVIDER.name == "gemini"
    assert ollama.PROVIDER.name == "ollama"


def test_stream_formats():
    assert gemini.PROVIDER.stream_format == "sse"
    assert ollama.PROVIDER.stream_format == "ndjson"
    for p in (openai.PROVIDER, anthropic.PROVIDER):  # the implicit default
        assert p.stream_format == "sse"


@pytest.mark.parametrize("name", ["gemini", "ollama"])
def test_presets_accept_the_new_providers_and_their_default_urls(name):
    preset = preset_from_dict({"id": f"my-{name}", "provider": name, "model": "m"})
    assert preset.provider == name


def test_unknown_provider_lists_the_new_ones():
    with pytest.raises(ConfigError, match=r"gemini.*ollama"):
        get_provider("palm")


# -- build_request: Gemini ---------------------------------------------------------------


@pytest.mark.parametrize("base", [GEMINI_BASE, GEMINI_BASE + "/", GEMINI_BASE + "//"])
def test_gemini_url(base):
    req = gemini.build_request(
        base_url=base, model="gemini-2.5-flash", prompt=PROMPT, params={}, api_key=KEY
    )
    assert req.method == "POST"
    assert req.url == f"{GEMINI_BASE}/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("models/gemini-2.0-flash", "models/gemini-2.0-flash"),
        ("tunedModels/my-model-abc", "tunedModels/my-model-abc"),
    ],
)
def test_gemini_full_resource_names_kept(model, path):
    req = gemini.build_request(
        base_url=GEMINI_BASE, model=model, prompt=PROMPT, params={}, api_key=None
    )
    assert req.url == f"{GEMINI_BASE}/{path}:streamGenerateContent?alt=sse"


def test_gemini_key_in_header_never_in_url():
    req = gemini.build_request(
        base_url=GEMINI_BASE, model="gemini-2.5-pro", prompt=PROMPT, params={}, api_key=KEY
    )
    assert req.headers["x-goog-api-key"] == KEY
    assert KEY not in req.url
    assert "key=" not in req.url
    assert KEY not in json.dumps(req.body)
    assert "authorization" not in {k.lower() for k in req.headers}
    assert req.secret_headers == frozenset({"x-goog-api-key"})
    shown = req.redacted_headers()
    assert shown["x-goog-api-key"] == "<redacted>"
    assert KEY not in repr(shown)
    assert req.headers["Accept"] == "text/event-stream"


@pytest.mark.parametrize("key", [None, ""])
def test_gemini_no_key_header_without_key(key):
    req = gemini.build_request(
        base_url="http://127.0.0.1:8080/v1beta", model="m", prompt=PROMPT, params={}, api_key=key
    )
    assert "x-goog-api-key" not in req.headers
    assert req.secret_headers == frozenset()


def test_gemini_system_instruction_and_roles():
    req = gemini.build_request(
        base_url=GEMINI_BASE, model="m", prompt=PROMPT, params={}, api_key=None
    )
    assert req.body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert req.body["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "yo"}]},
        {"role": "user", "parts": [{"text": "again"}]},
    ]
    assert "generationConfig" not in req.body  # nothing to configure
    assert set(req.body) == {"contents", "systemInstruction"}


def test_gemini_empty_system_omitted():
    prompt = Prompt("", (Message("user", "héllo \U0001f600"),))
    req = gemini.build_request(
        base_url=GEMINI_BASE, model="m", prompt=prompt, params={}, api_key=None
    )
    assert "systemInstruction" not in req.body
    body = json.loads(json.dumps(req.body))
    assert body["contents"][0]["parts"][0]["text"] == "héllo \U0001f600"


def test_gemini_prefill_not_supported():
    assert gemini.PROVIDER.supports_prefill is False


def test_gemini_snake_case_params_mapped_into_generation_config():
    params = {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "max_tokens": 512,
        "stop": "\n\n",
        "seed": 7,
        "presence_penalty": 0.1,
        "response_mime_type": "text/plain",
        "thinking_config": {"thinking_budget": 1024, "include_thoughts": True},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
        "stream": False,
    }
    req = gemini.build_request(
        base_url=GEMINI_BASE, model="m", prompt=PROMPT, params=params, api_key=None
    )
    assert req.body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 512,
        "stopSequences": ["\n\n"],
        "seed": 7,
        "presencePenalty": 0.1,
        "responseMimeType": "text/plain",
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
    }
    # unknown names go to the top level, untouched; `stream` is the endpoint's business
    assert req.body["safety_settings"] == params["safety_settings"]
    assert "stream" not in req.body
    for gone in ("temperature", "top_p", "max_tokens", "stop", "thinking_config"):
        assert gone not in req.body
    assert params["stream"] is False and params["max_tokens"] == 512  # caller's dict intact


def test_gemini_camel_case_params_and_explicit_generation_config():
    params = {
        "maxOutputTokens": 100,
        "topP": 0.5,
        "stopSequences": ["END"],
        "generationConfig": {"temperature": 1.0, "topP": 0.1, "candidate_count": 1},
        "safetySettings": [],
        "cachedContent": "cachedContents/abc",
    }
    req = gemini.build_request(
        base_url=GEMINI_BASE, model="m", prompt=PROMPT, params=params, api_key=None
    )
    assert req.body["generationConfig"] == {
        "temperature": 1.0,
        "topP": 0.5,  # the flat name wins over the table
        "candidateCount": 1,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
    }
    assert req.body["safetySettings"] == []
    assert req.body["cachedContent"] == "cachedContents/abc"


def test_gemini_max_completion_tokens_alias():
    req = gemini.build_request(
        base_url=GEMINI_BASE,
        model="m",
        prompt=PROMPT,
        params={"max_completion_tokens": 64},
        api_key=None,
    )
    assert req.body["generationConfig"] == {"maxOutputTokens": 64}


# -- build_request: Ollama ----------------------------------------------------------------


@pytest.mark.parametrize("base", ["http://127.0.0.1:11434", "http://127.0.0.1:11434/"])
def test_ollama_url_and_no_key(base):
    req = ollama.build_request(
        base_url=base, model="qwen3:0.6b", prompt=PROMPT, params={}, api_key=None
    )
    assert req.method == "POST"
    assert req.url == "http://127.0.0.1:11434/api/chat"
    assert "authorization" not in {k.lower() for k in req.headers}
    assert req.secret_headers == frozenset()
    assert req.headers["Accept"] == "application/x-ndjson"
    assert ollama.PROVIDER.default_base_url == "http://127.0.0.1:11434"


def test_ollama_key_if_given_is_a_redacted_bearer_token():
    # Ollama has no keys; a proxy in front of it may want one
    req = ollama.build_request(
        base_url="https://ollama.example", model="m", prompt=PROMPT, params={}, api_key=KEY
    )
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.secret_headers == frozenset({"authorization"})
    assert KEY not in repr(req.redacted_headers())
    assert KEY not in req.url


def test_ollama_body_system_message_and_stream():
    req = ollama.build_request(
        base_url="http://h:11434", model="llama3.2", prompt=PROMPT, params={}, api_key=None
    )
    assert req.body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
            {"role": "user", "content": "again"},
        ],
        "stream": True,
    }


def test_ollama_params_mapped_into_options():
    params = {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 256,
        "stop": "<|end|>",
        "num_ctx": 8192,
        "repeat_penalty": 1.1,
        "options": {"seed": 1, "temperature": 0.1},
        "think": True,
        "keep_alive": "10m",
        "format": "json",
        "stream": False,
    }
    req = ollama.build_request(
        base_url="http://h:11434", model="m", prompt=PROMPT, params=params, api_key=None
    )
    assert req.body["options"] == {
        "seed": 1,
        "temperature": 0.7,  # the flat name wins over the table
        "top_p": 0.9,
        "top_k": 20,
        "num_predict": 256,
        "stop": ["<|end|>"],
        "num_ctx": 8192,
        "repeat_penalty": 1.1,
    }
    assert req.body["think"] is True
    assert req.body["keep_alive"] == "10m"
    assert req.body["format"] == "json"
    assert req.body["stream"] is True
    assert "max_tokens" not in req.body and "temperature" not in req.body
    assert params["stream"] is False  # caller's dict not mutated


def test_ollama_prefill_not_supported():
    assert ollama.PROVIDER.supports_prefill is False


# -- Gemini parser -------------------------------------------------------------------------


def test_gemini_recorded_stream_exact_deltas():
    deltas = run(gemini.PROVIDER, [gemini_stream(["Hel", "lo", " wörld"])])
    assert deltas == [
        TextDelta("Hel"),
        UsageDelta(12, 1),
        TextDelta("lo"),
        UsageDelta(12, 2),
        TextDelta(" wörld"),
        UsageDelta(12, 3),
        DoneDelta("stop"),
    ]


def test_gemini_thought_parts_are_reasoning_and_count_as_output():
    raw = gemini_stream(["Answer."], thoughts=["**Planning**\n\nThe user", " wants"])
    deltas = run(gemini.PROVIDER, [raw])
    assert reasoning_of(deltas) == "**Planning**\n\nThe user wants"
    assert text_of(deltas) == "Answer."
    # thoughtsTokenCount is billed output, like OpenAI's reasoning tokens (and said so)
    assert [d for d in deltas if isinstance(d, UsageDelta)] == [
        UsageDelta(12, 40, reasoning_tokens=40),
        UsageDelta(12, 41, reasoning_tokens=40),
    ]
    assert deltas[-1] == DoneDelta("stop")
    assert deltas.index(ReasoningDelta(" wants")) < deltas.index(TextDelta("Answer."))


def test_gemini_thought_and_text_parts_in_one_chunk_keep_their_order():
    p = gemini.Parser()
    ev = Event(gm_chunk([{"text": "hm", "thought": True}, {"text": "A"}, {"text": "B"}]))
    assert p.feed(ev) == [ReasoningDelta("hm"), TextDelta("A"), TextDelta("B")]


def test_gemini_non_text_parts_ignored():
    p = gemini.Parser()
    parts = [
        {"thoughtSignature": "CiIBVKhc7oX0"},
        {"functionCall": {"name": "f", "args": {}}},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0"}},
        {"text": ""},
        {"text": "ok", "thoughtSignature": "CiIB"},
    ]
    assert p.feed(Event(gm_chunk(parts))) == [TextDelta("ok")]


def test_gemini_usage_only_when_it_changes():
    p = gemini.Parser()
    first = p.feed(Event(gm_chunk([{"text": "a"}], usage={"promptTokenCount": 5})))
    assert first == [TextDelta("a"), UsageDelta(5, None)]
    again = p.feed(Event(gm_chunk([{"text": "b"}], usage={"promptTokenCount": 5})))
    assert again == [TextDelta("b")]
    last = {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}
    assert p.feed(Event(gm_chunk(None, "STOP", usage=last))) == [UsageDelta(5, 2)]
    assert p.finish() == [DoneDelta("stop")]


@pytest.mark.parametrize(
    ("reason", "reported"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "safety"),
        ("RECITATION", "recitation"),
        ("PROHIBITED_CONTENT", "prohibited_content"),
        ("OTHER", "other"),
    ],
)
def test_gemini_finish_reasons(reason, reported):
    deltas = run(gemini.PROVIDER, [gemini_stream(["x"], finish=reason)])
    assert deltas[-1] == DoneDelta(reported)
    assert text_of(deltas) == "x"


def test_gemini_max_tokens_chunk_without_parts():
    # a cut answer's last chunk may carry a content with a role and no parts
    p = gemini.Parser()
    assert p.feed(Event(gm_chunk([{"text": "partial"}]))) == [TextDelta("partial")]
    ev = Event(
        '{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS","index":0}],'
        '"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":8,'
        '"thoughtsTokenCount":100}}'
    )
    assert p.feed(ev) == [UsageDelta(3, 108, reasoning_tokens=100)]
    assert p.finish() == [DoneDelta("length")]
    assert p.finish() == []  # once


def test_gemini_safety_stop_without_content():
    p = gemini.Parser()
    ev = Event(
        json.dumps(
            {
                "candidates": [
                    {
                        "finishReason": "SAFETY",
                        "index": 0,
                        "safetyRatings": [
                            {
                                "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                                "probability": "HIGH",
                                "blocked": True,
                            }
                        ],
                    }
                ]
            }
        )
    )
    assert p.feed(ev) == []
    assert p.finish() == [DoneDelta("safety")]


def test_gemini_unspecified_finish_reason_is_no_reason_but_a_clean_end_is_complete():
    p = gemini.Parser()
    p.feed(Event(gm_chunk([{"text": "a"}], "FINISH_REASON_UNSPECIFIED")))
    assert p.finish_reason is None
    assert p.finish() == [DoneDelta(None)]


def test_gemini_only_the_first_candidate_is_the_answer():
    p = gemini.Parser()
    ev = Event(
        json.dumps(
            {
                "candidates": [
                    {"content": {"parts": [{"text": "one"}], "role": "model"}, "index": 0},
                    {"content": {"parts": [{"text": "two"}], "role": "model"}, "index": 1},
                ]
            }
        )
    )
    assert p.feed(ev) == [TextDelta("one")]
    ev = Event(
        '{"candidates":[{"content":{"parts":[{"text":"z"}]},"finishReason":"STOP","index":1}]}'
    )
    assert p.feed(ev) == []
    # candidate 1's STOP is not the answer's reason; the clean end still completes it
    assert p.finish() == [DoneDelta(None)]


def test_gemini_candidate_without_index_is_the_first():
    p = gemini.Parser()
    ev = Event('{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}')
    assert p.feed(ev) == [TextDelta("x")]
    assert p.finish() == [DoneDelta("stop")]


def test_gemini_blocked_prompt_is_provider_error():
    p = gemini.Parser()
    ev = Event(
        json.dumps(
            {
                "promptFeedback": {
                    "blockReason": "PROHIBITED_CONTENT",
                    "safetyRatings": [],
                },
                "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                "modelVersion": "gemini-2.5-flash",
            }
        )
    )
    with pytest.raises(ProviderError, match=r"blocked.*PROHIBITED_CONTENT") as exc:
        p.feed(ev)
    assert exc.value.provider == "gemini"
    assert exc.value.status is None


def test_gemini_blocked_prompt_message_shown():
    ev = Event(
        '{"promptFeedback":{"blockReason":"SAFETY",'
        '"blockReasonMessage":"The prompt could not be submitted."}}'
    )
    with pytest.raises(ProviderError, match=r"\(SAFETY\): The prompt could not be submitted"):
        gemini.Parser().feed(ev)


def test_gemini_prompt_feedback_without_block_is_fine():
    p = gemini.Parser()
    ev = Event('{"promptFeedback":{"safetyRatings":[]},"candidates":[{"content":{"parts":[]}}]}')
    assert p.feed(ev) == []


def test_gemini_error_event_is_provider_error():
    p = gemini.Parser()
    assert p.feed(Event(gm_chunk([{"text": "par"}]))) == [TextDelta("par")]
    ev = Event(
        '{"error": {"code": 503, "message": "The model is overloaded. Please try again later.",'
        ' "status": "UNAVAILABLE"}}'
    )
    with pytest.raises(ProviderError) as exc:
        p.feed(ev)
    assert "UNAVAILABLE: The model is overloaded" in str(exc.value)
    assert exc.value.provider == "gemini"


def test_gemini_clean_end_without_finish_reason_is_a_complete_answer():
    """Gemini and Vertex often leave finishReason off the last chunk: a body that ends
    cleanly after chunks of text is the whole answer (a cut connection is a transport
    error, raised before the parser's finish())."""
    raw = gemini_stream(["Hello", " there"])
    cut = raw.rindex(b"data: ")  # the body ends before the chunk with finishReason
    deltas = run(gemini.PROVIDER, [raw[:cut]])
    assert text_of(deltas) == "Hello there"
    assert deltas[-1] == DoneDelta(None)


def test_gemini_finish_on_empty_stream_is_stream_error():
    with pytest.raises(StreamError):
        gemini.Parser().finish()


def test_gemini_stream_cut_mid_event_is_stream_error():
    raw = gemini_stream(["abc"])
    cut = raw.index(b'"abc"') + 2
    with pytest.raises(StreamError):
        run(gemini.PROVIDER, [raw[:cut]])


def test_gemini_lf_only_stream_same_as_crlf():
    raw = gemini_stream(["a", "b€"], thoughts=["t"])
    assert run(gemini.PROVIDER, [raw.replace(b"\r\n", b"\n")]) == run(gemini.PROVIDER, [raw])


def test_gemini_malformed_json_is_stream_error():
    with pytest.raises(StreamError, match="malformed JSON") as exc:
        gemini.Parser().feed(Event('{"candidates": [{"content": {'))
    assert exc.value.__cause__ is None


# -- Ollama parser ---------------------------------------------------------------------


def test_ollama_recorded_stream_exact_deltas():
    deltas = run(ollama.PROVIDER, [ollama_stream(["Hel", "lo", " wörld"])])
    assert deltas == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" wörld"),
        UsageDelta(26, 282),
        DoneDelta("stop"),
    ]


def test_ollama_thinking_is_reasoning():
    raw = ollama_stream(["42"], thinking=["Okay, the user", " asks"])
    deltas = run(ollama.PROVIDER, [raw])
    assert deltas[:3] == [
        ReasoningDelta("Okay, the user"),
        ReasoningDelta(" asks"),
        TextDelta("42"),
    ]
    p = ollama.Parser()
    ev = Event('{"message":{"role":"assistant","content":"b","thinking":"a"},"done":false}')
    assert p.feed(ev) == [ReasoningDelta("a"), TextDelta("b")]


def test_ollama_length_done_reason_and_done_in_the_middle_of_a_read():
    raw = ollama_stream(["x"], reason="length")
    assert run(ollama.PROVIDER, [raw])[-1] == DoneDelta("length")
    p = ollama.Parser()
    assert p.feed(Event('{"message":{"role":"assistant","content":"z"},"done":true}')) == [
        TextDelta("z"),
        DoneDelta(None),
    ]
    assert p.finish() == []


def test_ollama_error_line_is_provider_error():
    raw = ollama_stream(["partial"])
    cut = raw.index(b'{"model":"qwen3:0.6b","created_at":"2025-06-01T10:00:02.5Z"')
    raw = raw[:cut] + b'{"error":"an error was encountered while running the model: EOF"}\n'
    dec, p, seen = NDJSONDecoder(), ollama.Parser(), []
    with pytest.raises(ProviderError, match="while running the model: EOF") as exc:
        for ev in dec.decode(raw):
            seen.extend(p.feed(ev))
    assert text_of(seen) == "partial"
    assert exc.value.provider == "ollama"


def test_ollama_finish_before_done_is_stream_error():
    raw = ollama_stream(["Hello"])
    cut = raw.index(b'"done":true')
    cut = raw.rindex(b"\n", 0, cut) + 1  # the stream stops before the done line
    with pytest.raises(StreamError, match="ended before"):
        run(ollama.PROVIDER, [raw[:cut]])


def test_ollama_finish_on_empty_stream_is_stream_error():
    with pytest.raises(StreamError):
        run(ollama.PROVIDER, [b""])


def test_ollama_last_line_without_newline_still_counts():
    raw = ollama_stream(["a"]).rstrip(b"\n")
    assert run(ollama.PROVIDER, [raw])[-1] == DoneDelta("stop")


def test_ollama_truncated_last_line_is_stream_error():
    raw = ollama_stream(["a"])
    with pytest.raises(StreamError, match="malformed JSON"):
        run(ollama.PROVIDER, [raw[:-20]])


def test_ollama_malformed_json_is_stream_error():
    with pytest.raises(StreamError, match="malformed JSON"):
        ollama.Parser().feed(Event('{"message": {"content": "x"'))


# -- NDJSON decoder ----------------------------------------------------------------------


def test_ndjson_lines_become_events():
    events = decode_all([b'{"a":1}\n{"b":2}\n'])
    assert events == [Event('{"a":1}'), Event('{"b":2}')]
    assert all(e.event == "message" for e in events)


def test_ndjson_crlf_blank_lines_and_bom():
    raw = b'\xef\xbb\xbf{"a":1}\r\n\r\n  \n{"b":2}\r\n\n'
    assert lines_of(decode_all([raw])) == ['{"a":1}', '{"b":2}']


def test_ndjson_only_lf_splits():
    # a lone CR, U+2028, U+0085 and a form feed inside a line are no line ends
    line = '{"t":"a\rb\u2028c\x85d\x0ce"}'
    raw = (line + "\n" + line + "\r\n").encode()
    assert lines_of(decode_all([raw])) == [line, line]


def test_ndjson_line_split_across_reads_and_multibyte_split():
    raw = '{"t":"héllo 🎉"}\n{"t":"€"}\n'.encode()
    emoji = raw.index("🎉".encode())
    chunks = [raw[:5], raw[5 : emoji + 1], raw[emoji + 1 : emoji + 3], raw[emoji + 3 :]]
    dec = NDJSONDecoder()
    got = [lines_of(dec.decode(c)) for c in chunks]
    assert got[:3] == [[], [], []]  # nothing is complete before the first LF
    assert got[3] == ['{"t":"héllo 🎉"}', '{"t":"€"}']
    assert dec.flush() == []


def test_ndjson_crlf_split_between_reads():
    dec = NDJSONDecoder()
    assert dec.decode(b'{"a":1}\r') == []
    assert lines_of(dec.decode(b'\n{"b":2}')) == ['{"a":1}']
    assert lines_of(dec.flush()) == ['{"b":2}']
    assert dec.flush() == []


def test_ndjson_flush_delivers_unterminated_line_and_invalid_utf8_is_replaced():
    dec = NDJSONDecoder()
    assert dec.decode(b'{"a":"\xe2\x82') == []
    assert lines_of(dec.flush()) == ['{"a":"\ufffd']


def test_ndjson_empty_input():
    assert decode_all([b"", b"\n", b"\r\n"]) == []


ndjson_line = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
        max_size=12,
    ),
    st.sampled_from(['{"a":"é€🎉"}', "\r", "\u2028", "\x85", "\ufeff", "", "  ", '"\\n"']),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(ndjson_line, max_size=8),
    st.booleans(),
    st.data(),
)
def test_property_ndjson_any_split_gives_the_same_events(lines, crlf, data):
    sep = "\r\n" if crlf else "\n"
    raw = "".join(line + sep for line in lines).encode()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=16))
    bounds = [0, *sorted(cuts), len(raw)]
    chunks = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    whole = decode_all([raw])
    assert decode_all(chunks) == whole
    assert decode_all([raw[i : i + 1] for i in range(len(raw))]) == whole
    # what comes out is every line that is not JSON whitespace only (space, tab, CR),
    # without the CR of its line end (a leading BOM of the stream is dropped)
    expected = [line[:-1] if crlf is False and line.endswith("\r") else line for line in lines]
    if expected and expected[0].startswith("\ufeff"):
        expected[0] = expected[0][1:]
    expected = [line for line in expected if line.strip(" \t\r")]
    assert lines_of(whole) == expected


# -- byte-exact under any chunking, through decoder and parser --------------------------


# provider: its stream of the pieces after the first two as reasoning, and how it ends
THINKING_STREAMS = {
    "gemini": (
        gemini.PROVIDER,
        lambda pieces, ascii_json: gemini_stream(
            pieces, thoughts=pieces[:2], ascii_json=ascii_json
        ),
        [DoneDelta("stop")],
    ),
    "ollama": (
        ollama.PROVIDER,
        lambda pieces, ascii_json: ollama_stream(
            pieces, thinking=pieces[:2], ascii_json=ascii_json
        ),
        [UsageDelta(26, 282), DoneDelta("stop")],
    ),
}


@pytest.mark.parametrize("name", list(THINKING_STREAMS))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_property_text_and_reasoning_byte_exact_under_any_chunking(name, data):
    provider, stream, end = THINKING_STREAMS[name]
    case = data.draw(chunkings(stream))
    pieces, _, _ = case
    whole = run_cut(provider, case)
    assert reasoning_of(whole) == "".join(pieces[:2])
    assert whole[-len(end) :] == end


# -- error_message ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                        }
                    ],
                }
            },
            "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.",
        ),
        (
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota.",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
            "RESOURCE_EXHAUSTED: You exceeded your current quota.",
        ),
        (
            [
                {
                    "error": {
                        "code": 404,
                        "message": "models/gemini-9 is not found for API version v1beta",
                        "status": "NOT_FOUND",
                    }
                }
            ],
            "NOT_FOUND: models/gemini-9 is not found for API version v1beta",
        ),  # without alt=sse Google wraps the error in an array
        ({"error": {"code": 500, "message": "Internal error"}}, "Internal error"),
        ({"error": "quota"}, "quota"),
        ({"message": "Bad gateway"}, "Bad gateway"),
        ({"error": {"code": 500, "status": "INTERNAL"}}, None),
        ([{"error": {"message": "a"}}, {"error": {"message": "b"}}], None),
    ],
)
def test_gemini_error_message(body, expected):
    assert gemini.error_message(body) == expected
    assert gemini.PROVIDER.error_message(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": "model 'llama9' not found, try pulling it first"},
            "model 'llama9' not found, try pulling it first",
        ),
        (
            {"error": "model requires more system memory (8.0 GiB) than is available"},
            "model requires more system memory (8.0 GiB) than is available",
        ),
        ({"error": {"message": "Unauthorized", "type": "auth"}}, "Unauthorized"),  # a proxy
    ],
)
def test_ollama_error_message(body, expected):
    assert ollama.error_message(body) == expected
    assert ollama.PROVIDER.error_message(body) == expected
