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
from dataclasses import dataclass
from typing import Any


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
RESPONSES_TEXT = Recorded(
    "responses-text",
    "responses",
    "olimorris/codecompanion.nvim tests/adapters/http/stubs/openai_responses_streaming.txt "
    "(gpt-4.1, recorded 2025-10-02; `store` false here, as kznllm sends it)",
    (
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
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
            "response": _response(
                "completed",
                {
                    "input_tokens": 12,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 3,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 15,
                },
                output=[_DONE_ITEM],
            ),
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
                "completed",
                {
                    "input_tokens": 995,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 446,
                    "output_tokens_details": {"reasoning_tokens": 320},
                    "total_tokens": 1441,
                },
                model="gpt-5-2025-08-07",
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
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
        _MESSAGE_ADDED,
        _REFUSAL_PART,
        {
            "type": "response.refusal.delta",
            "item_id": MSG_ID,
            "output_index": 0,
            "content_index": 0,
            "delta": "I'm sorry, I can't ",
            "sequence_number": 4,
        },
        {
            "type": "response.refusal.delta",
            "item_id": MSG_ID,
            "output_index": 0,
            "content_index": 0,
            "delta": "help with that.",
            "sequence_number": 5,
        },
        {
            "type": "response.refusal.done",
            "item_id": MSG_ID,
            "output_index": 0,
            "content_index": 0,
            "refusal": "I'm sorry, I can't help with that.",
            "sequence_number": 6,
        },
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
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
        _MESSAGE_ADDED,
        _PART_ADDED,
        _text_delta(4, "def total(prices):\n", "a"),
        _text_delta(5, "    return sum(p for p", "b"),
        {
            "type": "response.incomplete",
            "sequence_number": 6,
            "response": _response(
                "incomplete",
                {
                    "input_tokens": 40,
                    "input_tokens_details": {"cached_tokens": 32},
                    "output_tokens": 16,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 56,
                },
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
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
        _MESSAGE_ADDED,
        _PART_ADDED,
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
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
        _MESSAGE_ADDED,
        _PART_ADDED,
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
        {"type": "response.created", "sequence_number": 0, "response": _response("in_progress")},
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
