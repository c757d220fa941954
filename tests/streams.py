"""Streams of the four wire formats as their servers send them, one item per event (or
NDJSON line), built the same way for every provider: `provider_events(provider, texts)`.
OpenAI and Anthropic come from tests.servers; Gemini and Ollama are added here.

`finish="length"` asks for each provider's own way of saying "cut at the token limit"
(OpenAI `length`, Anthropic `max_tokens`, Gemini `MAX_TOKENS`, Ollama `length`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from kznllm_py.prompt.presets import Preset, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers.base import Delta, Provider, ReasoningDelta, TextDelta
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.generation import DECODERS, Generation, Outcome, RetryPolicy
from tests.servers import anthropic_events, openai_events

PROVIDERS = ("openai", "anthropic", "gemini", "ollama")
FAST = Timeouts(connect=5.0, stall=5.0)  # a broken test fails, it does not hang
# error tests see the first answer; retries have tests of their own
ONE_TRY = RetryPolicy(tries=1)
# the Content-Type each server streams with
CONTENT_TYPES = {
    "openai": "text/event-stream",
    "anthropic": "text/event-stream",
    "gemini": "text/event-stream",
    "ollama": "application/x-ndjson",
}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def gemini_events(texts: Sequence[str], *, finish: str = "STOP") -> list[bytes]:
    """`streamGenerateContent?alt=sse` as Google sends it: CRLF line ends, one
    GenerateContentResponse per event, the last one with the finishReason."""

    def ev(parts: list[dict[str, Any]], reason: str | None, n: int) -> bytes:
        cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if reason:
            cand["finishReason"] = reason
        obj = {
            "candidates": [cand],
            "usageMetadata": {
                "promptTokenCount": 9,
                "candidatesTokenCount": n,
                "totalTokenCount": 9 + n,
            },
            "modelVersion": "gemini-test",
            "responseId": "resp-test",
        }
        return b"data: " + _json(obj) + b"\r\n\r\n"

    out = [ev([{"text": t}], None, i + 1) for i, t in enumerate(texts)]
    out.append(ev([{"text": ""}], finish, len(texts)))
    return out


def ollama_lines(texts: Sequence[str], *, finish: str = "stop") -> list[bytes]:
    """Ollama's /api/chat: one JSON object per line, the last with `"done": true`."""
    base = {"model": "qwen-test", "created_at": "2025-06-01T10:00:00Z"}
    out = [
        _json({**base, "message": {"role": "assistant", "content": t}, "done": False}) + b"\n"
        for t in texts
    ]
    out.append(
        _json(
            {
                **base,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": finish,
                "prompt_eval_count": 9,
                "eval_count": len(texts),
            }
        )
        + b"\n"
    )
    return out


def provider_events(provider: str, texts: Sequence[str], *, finish: str = "stop") -> list[bytes]:
    """The stream of `texts` in `provider`'s wire format; `finish` is "stop" or "length"."""
    if finish not in ("stop", "length"):
        raise ValueError(f"provider_events: finish {finish!r}")
    if provider == "openai":
        return openai_events(list(texts), finish=finish)
    if provider == "anthropic":
        reason = "max_tokens" if finish == "length" else "end_turn"
        return anthropic_events(list(texts), stop_reason=reason)
    if provider == "gemini":
        return gemini_events(texts, finish="MAX_TOKENS" if finish == "length" else "STOP")
    if provider == "ollama":
        return ollama_lines(texts, finish=finish)
    raise ValueError(f"provider_events: unknown provider {provider!r}")


def run(provider: Provider, chunks: Sequence[bytes]) -> list[Delta]:
    """Network bytes -> the provider's stream decoder (as generation.stream_deltas picks
    it) -> its parser -> deltas, finish() included."""
    dec = DECODERS[provider.stream_format]()
    parser = provider.new_parser()
    out: list[Delta] = []
    for chunk in chunks:
        for ev in dec.decode(chunk):
            out.extend(parser.feed(ev))
    for ev in dec.flush():
        out.extend(parser.feed(ev))
    out.extend(parser.finish())
    return out


def run_cut(provider: Provider, case: tuple[list[str], bytes, list[bytes]]) -> list[Delta]:
    """A chunking property's case (`tests.fuzzing.chunkings`: the pieces of text, the
    stream, that stream cut anywhere): the deltas of the cut stream, asserted the same as
    of the whole and its text the pieces' byte for byte."""
    pieces, raw, chunks = case
    split = run(provider, chunks)
    assert split == run(provider, [raw])
    assert text_of(split).encode() == "".join(pieces).encode()
    return split


def text_of(deltas: Sequence[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


def reasoning_of(deltas: Sequence[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))


def base_url_for(provider: str, server_url: str) -> str:
    """Where a preset of `provider` points to reach a loopback server at `server_url`
    (`http://127.0.0.1:PORT`): OpenAI-style servers under /v1, Ollama at the root."""
    return server_url if provider == "ollama" else server_url + "/v1"


def cursor_preset(preset_id: str, provider: str, server_url: str, **fields: Any) -> dict[str, Any]:
    """A keyless preset `preset_id` of `provider` on a loopback server, model "m" unless
    `fields` say otherwise, its answer at the cursor (the stream's bytes as they are: on a
    line of its own an answer's final newline is dropped, as in linewise replace mode)."""
    return {
        "id": preset_id,
        "provider": provider,
        "model": "m",
        "base_url": base_url_for(provider, server_url),
        "api_key": False,
        "placement": "cursor",
        **fields,
    }


def cursor_presets(prefix: str, providers: Sequence[str], server_url: str) -> list[dict[str, Any]]:
    """`cursor_preset` `prefix-PROVIDER` of each provider."""
    return [cursor_preset(f"{prefix}-{p}", p, server_url) for p in providers]


def loopback_preset(provider: str, base_url: str, **fields: Any) -> Preset:
    """A preset of `provider` served at `base_url` (a loopback server), model "m" and no
    key unless `fields` say otherwise; the other fields as a presets.toml entry has them."""
    raw = {"id": "test", "provider": provider, "model": "m", "base_url": base_url}
    return preset_from_dict({**raw, "api_key": False, **fields})


async def generate(
    client: httpx.AsyncClient,
    preset: Preset,
    *,
    ctx: FillContext,
    timeouts: Timeouts = FAST,
    retry: RetryPolicy = ONE_TRY,
    on_text: Callable[[str], None] | None = None,
    **options: Any,
) -> tuple[Outcome, str]:
    """One Generation run to its end over a real client: its outcome and the text it
    wrote, joined (`on_text` also sees each write as it comes). `options` go to
    Generation as they are (search_dirs, max_response_bytes, ...)."""
    got: list[str] = []

    def write(text: str) -> None:
        got.append(text)
        if on_text is not None:
            on_text(text)

    out = await Generation(client, preset, ctx, timeouts, retry=retry, **options).run(write)
    return out, "".join(got)
