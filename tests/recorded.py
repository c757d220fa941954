"""Streams of the 2026 wire formats as their servers sent them, each with its source:
the OpenAI Responses API (plain text, reasoning summaries, a refusal, an incomplete and
a failed response, an `error` event), OpenRouter's `reasoning_details`, vLLM's
`reasoning`, Anthropic's `redacted_thinking` and `signature_delta`, Gemini's `thought`
parts and `thoughtSignature`. Long fields the parsers do not read (the `instructions`
echoed back, `obfuscation` padding, ids) are shortened where noted; every field a
parser reads is kept as recorded.

`Recorded.wire()` is the body as the server writes it (SSE framing included).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from tests.servers import fixed_chunks, split_at

CHUNKINGS = ("events", "bytes", "random")


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Recorded:
    name: str
    provider: str  # the provider module that reads it
    source: str  # where the events were recorded or documented
    events: tuple[Any, ...]  # JSON objects (or "[DONE]")
    text: str  # the answer it holds
    reasoning: str  # the reasoning it holds
    error: str | None = None  # the error the stream ends with (words it contains)
    finish: str | None = "stop"
    usage: dict[str, int] | None = None
    named: bool = False  # each event also has its `event:` line (its `type`)

    def wire(self) -> bytes:
        out = []
        for ev in self.events:
            data = ev if isinstance(ev, str) else _json(ev)
            head = f"event: {ev['type']}\n" if self.named and isinstance(ev, dict) else ""
            out.append(f"{head}data: {data}\n\n")
        return "".join(out).encode("utf-8")

    def chunked(self, how: str) -> list[bytes]:
        """Its wire cut as a server may send it (`how`, one of CHUNKINGS): one event a
        chunk, one byte a chunk, or 40 random cuts (the same at each run)."""
        wire = self.wire()
        if how == "events":
            return [e + b"\n\n" for e in wire.split(b"\n\n") if e]
        if how == "bytes":
            return fixed_chunks(wire, 1)
        rnd = random.Random(f"{self.name}-cuts")  # reproducible random cuts
        return split_at(wire, *rnd.sample(range(1, len(wire)), min(40, len(wire) - 1)))


# -- OpenAI Responses API -----------------------------------------------------------------

RESP_ID = "resp_029acd36fd74595b0068dea8ffb00c8190a87fe92af1cadf59"
MSG_ID = "msg_029acd36fd74595b0068dea90117688190a9ef73d3fe552c76"


def _response(status: str, usage: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": RESP_ID,
        "object": "response",
        "created_at": 1759422719,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "gpt-4.1-2025-04-14",
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
        **extra,
    }


def _text_delta(seq: int, delta: str, obfuscation: str) -> dict[str, Any]:
    return {
        "type": "response.output_text.delta",
        "sequence_number": seq,
        "item_id": MSG_ID,
        "output_index": 0,
        "content_index": 0,
        "delta": delta,
        "logprobs": [],
        "obfuscation": obfuscation,
    }


_MESSAGE_ADDED = {
    "type": "response.output_item.added",
    "sequence_number": 2,
    "output_index": 0,
    "item": {
        "id": MSG_ID,
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    },
}
_PART_ADDED = {
    "type": "response.content_part.added",
    "sequence_number": 3,
    "item_id": MSG_ID,
    "output_index": 0,
    "content_index": 0,
    "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
}
_DONE_ITEM = {
    "id": MSG_ID,
    "type": "message",
    "status": "completed",
    "content": [
        {"type": "output_text", "annotations": [], "logprobs": [], "text": "Elegant language"}
    ],
    "role": "assistant",
}
_CREATED = {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")}
# how a stream of one message opens: the response created, its message and text part added
_OPENING = (_CREATED, _MESSAGE_ADDED, _PART_ADDED)


def _usage(inputs: int, outputs: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    """A response's `usage` object as the API reports it."""
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inputs + outputs,
    }


RESPONSES_TEXT = Recorded(
    "responses-text",
    "responses",
    "olimorris/codecompanion.nvim tests/adapters/http/stubs/openai_responses_streaming.txt "
    "(gpt-4.1, recorded 2025-10-02; `store` false here, as kznllm sends it)",
    (
        _CREATED,
        {
            "type": "response.in_progress",
            "sequence_number": 1,
            "response": _response("in_progress"),
        },
        _MESSAGE_ADDED,
        _PART_ADDED,
        _text_delta(4, "Elegant", "sdkq1GTMZ"),
        _text_delta(5, " language", "iMv0IKG"),
        {
            "type": "response.output_text.done",
            "sequence_number": 6,
            "item_id": MSG_ID,
            "output_index": 0,
            "content_index": 0,
            "text": "Elegant language",
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "sequence_number": 7,
            "item_id": MSG_ID,
            "output_index": 0,
            "content_index": 0,
            "part": _DONE_ITEM["content"][0],  # type: ignore[index]
        },
        {
            "type": "response.output_item.done",
            "sequence_number": 8,
            "output_index": 0,
            "item": _DONE_ITEM,
        },
        {
            "type": "response.completed",
            "sequence_number": 9,
            "response": _response("completed", _usage(12, 3), output=[_DONE_ITEM]),
        },
    ),
    text="Elegant language",
    reasoning="",
    usage={"input_tokens": 12, "output_tokens": 3},
    named=True,
)

RS_ID = "rs_01fd1c627dddf8680068e69b8c93f8819485e4b29cd0b33a67"
RS_MSG = "msg_01fd1c627dddf8680068e69b95f7688194883bddb0539714c1"


def _summary(seq: int, index: int, delta: str) -> dict[str, Any]:
    return {
        "type": "response.reasoning_summary_text.delta",
        "sequence_number": seq,
        "item_id": RS_ID,
        "output_index": 0,
        "summary_index": index,
        "delta": delta,
        "obfuscation": "le2bm6wsva",
    }


def _rs_text(seq: int, delta: str) -> dict[str, Any]:
    return {**_text_delta(seq, delta, "x"), "item_id": RS_MSG, "output_index": 1}


_REASONING_SUMMARY_0 = ["**summ", "ar", "izing", " ruby", "'s", " strengths", "**\n\nruby", " is"]
_REASONING_SUMMARY_1 = ["**describing", " ruby's", " features**", "\n\nruby", " is", " renowned"]
_REASONING_ANSWER = ["ruby", " excels", " at", " developer", " productivity", " and", " joy", "."]
RESPONSES_REASONING = Recorded(
    "responses-reasoning",
    "responses",
    "olimorris/codecompanion.nvim tests/adapters/http/stubs/"
    "openai_responses_reasoning_streaming.txt (gpt-5, effort medium, summary detailed, "
    "recorded 2025-10-08); abridged: fewer summary deltas, and the answer's text deltas "
    "(which the stub leaves out) cut from the output_text its response.completed holds",
    (
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": _response("in_progress", model="gpt-5-2025-08-07"),
        },
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": {"id": RS_ID, "type": "reasoning", "summary": []},
        },
        {
            "type": "response.reasoning_summary_part.added",
            "sequence_number": 3,
            "item_id": RS_ID,
            "output_index": 0,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        *(_summary(4 + i, 0, d) for i, d in enumerate(_REASONING_SUMMARY_0)),
        {
            "type": "response.reasoning_summary_part.added",
            "sequence_number": 20,
            "item_id": RS_ID,
            "output_index": 0,
            "summary_index": 1,
            "part": {"type": "summary_text", "text": ""},
        },
        *(_summary(21 + i, 1, d) for i, d in enumerate(_REASONING_SUMMARY_1)),
        {
            "type": "response.output_item.done",
            "sequence_number": 204,
            "output_index": 0,
            "item": {"id": RS_ID, "type": "reasoning", "summary": []},
        },
        *(_rs_text(205 + i, d) for i, d in enumerate(_REASONING_ANSWER)),
        {
            "type": "response.completed",
            "sequence_number": 330,
            "response": _response(
                "completed", _usage(995, 446, reasoning=320), model="gpt-5-2025-08-07"
            ),
        },
    ),
    text="".join(_REASONING_ANSWER),
    reasoning="".join(_REASONING_SUMMARY_0) + "\n\n" + "".join(_REASONING_SUMMARY_1),
    usage={"input_tokens": 995, "output_tokens": 446, "reasoning_tokens": 320},
)


# the refusal, incomplete, failed and error events as OpenAI's API reference documents
# them (https://platform.openai.com/docs/api-reference/responses-streaming: the event
# objects response.refusal.delta / .done, response.incomplete, response.failed, error)
def _refusal(seq: int, kind: str, **text: str) -> dict[str, Any]:
    """A response.refusal.`kind` event (delta, done) of the message's first part."""
    return {
        "type": f"response.refusal.{kind}",
        "item_id": MSG_ID,
        "output_index": 0,
        "content_index": 0,
        **text,
        "sequence_number": seq,
    }


_REFUSAL_PART = {
    "type": "response.content_part.added",
    "sequence_number": 3,
    "item_id": MSG_ID,
    "output_index": 0,
    "content_index": 0,
    "part": {"type": "refusal", "refusal": ""},
}
RESPONSES_REFUSAL = Recorded(
    "responses-refusal",
    "responses",
    "OpenAI API reference, Responses streaming events response.refusal.delta / "
    "response.refusal.done (event shapes), framed as codecompanion's recorded stream",
    (
        _CREATED,
        _MESSAGE_ADDED,
        _REFUSAL_PART,
        _refusal(4, "delta", delta="I'm sorry, I can't "),
        _refusal(5, "delta", delta="help with that."),
        _refusal(6, "done", refusal="I'm sorry, I can't help with that."),
        {"type": "response.completed", "sequence_number": 9, "response": _response("completed")},
    ),
    text="",
    reasoning="",
    error="the model refused: I'm sorry, I can't help with that.",
    finish=None,
)
RESPONSES_INCOMPLETE = Recorded(
    "responses-incomplete",
    "responses",
    "OpenAI API reference, Responses streaming event response.incomplete "
    "(incomplete_details.reason max_output_tokens), after codecompanion's recorded deltas",
    (
        *_OPENING,
        _text_delta(4, "def total(prices):\n", "a"),
        _text_delta(5, "    return sum(p for p", "b"),
        {
            "type": "response.incomplete",
            "sequence_number": 6,
            "response": _response(
                "incomplete",
                _usage(40, 16, cached=32),
                incomplete_details={"reason": "max_output_tokens"},
                max_output_tokens=16,
            ),
        },
    ),
    text="def total(prices):\n    return sum(p for p",
    reasoning="",
    finish="length",
    usage={"input_tokens": 40, "output_tokens": 16, "cached_input_tokens": 32},
    named=True,
)
RESPONSES_FILTERED = Recorded(
    "responses-content-filter",
    "responses",
    "OpenAI API reference, Responses object incomplete_details.reason content_filter",
    (
        *_OPENING,
        _text_delta(4, "partial", "a"),
        {
            "type": "response.incomplete",
            "sequence_number": 5,
            "response": _response("incomplete", incomplete_details={"reason": "content_filter"}),
        },
    ),
    text="partial",
    reasoning="",
    finish="content_filter",
)
RESPONSES_FAILED = Recorded(
    "responses-failed",
    "responses",
    "OpenAI API reference, Responses streaming event response.failed (its example object)",
    (
        *_OPENING,
        _text_delta(4, "Half an ", "a"),
        {
            "type": "response.failed",
            "sequence_number": 5,
            "response": _response(
                "failed",
                error={
                    "code": "server_error",
                    "message": "The model failed to generate a response.",
                },
            ),
        },
    ),
    text="Half an ",
    reasoning="",
    error="server_error: The model failed to generate a response.",
    finish=None,
)
RESPONSES_ERROR = Recorded(
    "responses-error-event",
    "responses",
    "OpenAI API reference, Responses streaming event `error` (its example object)",
    (
        _CREATED,
        {
            "type": "error",
            "code": "ERR_SOMETHING",
            "message": "Something went wrong",
            "param": None,
            "sequence_number": 1,
        },
    ),
    text="",
    reasoning="",
    error="ERR_SOMETHING: Something went wrong",
    finish=None,
)

RESPONSES = (
    RESPONSES_TEXT,
    RESPONSES_REASONING,
    RESPONSES_REFUSAL,
    RESPONSES_INCOMPLETE,
    RESPONSES_FILTERED,
    RESPONSES_FAILED,
    RESPONSES_ERROR,
)


# -- reasoning fields of the other formats ----------------------------------------------------

OR_ID = "gen-1781978252-oERvmq3BlwuXujK8XVU7"


def _or(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": OR_ID,
        "object": "chat.completion.chunk",
        "created": 1781978252,
        "model": "openai/gpt-5.5-20260423",
        "provider": "OpenAI",
        "choices": [
            {
                "index": 0,
                "delta": {"content": "", "role": "assistant", **delta},
                "finish_reason": finish,
                "native_finish_reason": "completed" if finish else None,
            }
        ],
        **extra,
    }


def _or_summary(text: str) -> dict[str, Any]:
    detail = {"type": "reasoning.summary", "summary": text, "format": "openai-responses-v1"}
    return _or({"reasoning": text, "reasoning_details": [{**detail, "index": 0}]})


_OR_SUMMARY = ["**Considering concise descriptions**\n\nI", " see", " the", " user", " is"]
OPENROUTER_DETAILS = Recorded(
    "openrouter-reasoning-details",
    "openai",
    "olimorris/codecompanion.nvim tests/adapters/http/stubs/"
    "openrouter_reasoning_streaming.txt (openai/gpt-5.5 through OpenRouter); abridged: "
    "fewer summary deltas, the encrypted detail's `data` shortened",
    (
        *(_or_summary(t) for t in _OR_SUMMARY),
        _or(
            {
                "reasoning": None,
                "reasoning_details": [
                    {
                        "type": "reasoning.encrypted",
                        "data": "gAAAAABqNtSd4grAadCD6NmHi5AZxV8Wsm7JMJGst-MIZ==",
                        "format": "openai-responses-v1",
                        "id": "rs_024a4dbbd7df51ce016a36d48d2c1c8193acbcd1dcef67ad46",
                        "index": 0,
                    }
                ],
            }
        ),
        _or({"content": "Express"}),
        _or({"content": "ive"}),
        _or({"content": " language"}),
        _or({"reasoning": None}, "stop"),
        _or(
            {},
            "stop",
            service_tier="default",
            usage={
                "prompt_tokens": 1985,
                "completion_tokens": 145,
                "total_tokens": 2130,
                "cost": 0.01413225,
                "is_byok": False,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 136, "image_tokens": 0},
            },
        ),
        "[DONE]",
    ),
    text="Expressive language",
    reasoning="".join(_OR_SUMMARY),
    usage={"input_tokens": 1985, "output_tokens": 145, "reasoning_tokens": 136},
)


def _vllm(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-8f0a",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "Qwen/Qwen3-8B",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


VLLM_REASONING = Recorded(
    "vllm-reasoning",
    "openai",
    "vLLM docs, Reasoning Outputs (streaming: `delta.reasoning`, the field that replaced "
    "`reasoning_content`), chunk shape of vLLM's OpenAI-compatible server",
    (
        _vllm({"role": "assistant", "content": ""}),
        _vllm({"reasoning": "9.11 and 9.8:"}),
        _vllm({"reasoning": " compare tenths."}),
        _vllm({"content": "9.8 is "}),
        _vllm({"content": "greater."}),
        _vllm(
            {},
            "stop",
            usage={"prompt_tokens": 21, "completion_tokens": 12, "total_tokens": 33},
        ),
        "[DONE]",
    ),
    text="9.8 is greater.",
    reasoning="9.11 and 9.8: compare tenths.",
    usage={"input_tokens": 21, "output_tokens": 12},
)


def _an(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


ANTHROPIC_SIGNED = Recorded(
    "anthropic-thinking-signature-redacted",
    "anthropic",
    "Anthropic docs, Building with extended thinking: the streaming example "
    "(thinking_delta, signature_delta) and thinking redaction (a redacted_thinking "
    "block); signature and data shortened",
    (
        _an(
            "message_start",
            message={
                "id": "msg_01HCDu5LRGeP2o7s2xGmxyx8",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-5",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2048,
                    "output_tokens": 1,
                },
            },
        ),
        _an("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        _an(
            "content_block_delta",
            index=0,
            delta={"type": "thinking_delta", "thinking": "Let me solve this step by step:"},
        ),
        _an(
            "content_block_delta",
            index=0,
            delta={"type": "thinking_delta", "thinking": "\n\n1. First break down 27 * 453"},
        ),
        _an(
            "content_block_delta",
            index=0,
            delta={"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
        ),
        _an("content_block_stop", index=0),
        _an(
            "content_block_start",
            index=1,
            content_block={"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
        ),
        _an("content_block_stop", index=1),
        _an("content_block_start", index=2, content_block={"type": "text", "text": ""}),
        _an("ping"),
        _an("content_block_delta", index=2, delta={"type": "text_delta", "text": "27 * 453 "}),
        _an("content_block_delta", index=2, delta={"type": "text_delta", "text": "= 12,231"}),
        _an("content_block_stop", index=2),
        _an(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": 89},
        ),
        _an("message_stop"),
    ),
    text="27 * 453 = 12,231",
    reasoning="Let me solve this step by step:\n\n1. First break down 27 * 453",
    finish="end_turn",
    usage={"input_tokens": 2520, "output_tokens": 89, "cached_input_tokens": 2048},
    named=True,
)


def _gm(parts: list[dict[str, Any]], finish: str | None = None, **meta: int) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    usage = {"promptTokenCount": 30, "candidatesTokenCount": 0, **meta}
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}


GEMINI_THOUGHTS = Recorded(
    "gemini-thought-signature",
    "gemini",
    "Google Gemini API docs, Thinking (thought summaries: parts with `thought: true` "
    "while streaming) and Thought signatures (`thoughtSignature` on a part, or a part of "
    "its own); signatures shortened",
    (
        _gm([{"text": "**Weighing the sums**\n\nAdd", "thought": True}], thoughtsTokenCount=40),
        _gm(
            [{"text": " the digits.", "thought": True, "thoughtSignature": "CiQBVKhc7oX0a3N2"}],
            thoughtsTokenCount=80,
        ),
        _gm([{"text": "The sum ", "thoughtSignature": "Ci8BVKhc7k9q"}], thoughtsTokenCount=80),
        _gm([{"text": "is 12."}], candidatesTokenCount=5, thoughtsTokenCount=80),
        _gm(
            [{"text": "", "thoughtSignature": "CiwBVKhc7uZr"}],
            "STOP",
            candidatesTokenCount=5,
            thoughtsTokenCount=80,
            cachedContentTokenCount=16,
        ),
    ),
    text="The sum is 12.",
    reasoning="**Weighing the sums**\n\nAdd the digits.",
    usage={
        "input_tokens": 30,
        "output_tokens": 85,
        "cached_input_tokens": 16,
        "reasoning_tokens": 80,
    },
)

REASONING_FIELDS = (OPENROUTER_DETAILS, VLLM_REASONING, ANTHROPIC_SIGNED, GEMINI_THOUGHTS)
