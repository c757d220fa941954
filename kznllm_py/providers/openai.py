"""OpenAI Chat Completions, and every server that speaks it (Groq, DeepSeek, vLLM,
llama.cpp, LM Studio, OpenRouter, Ollama's /v1, ...). `base_url` includes `/v1`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import orjson

from kznllm_py.errors import ProviderError, StreamError
from kznllm_py.providers import base, reasoning
from kznllm_py.providers.base import ReasoningDelta, TextDelta, UsageDelta, as_count, as_text
from kznllm_py.providers.jsonfast import Template, loads_event
from kznllm_py.secrets import clip
from kznllm_py.stream.sse import DATA, Event, Run

_loads = orjson.loads
_JSONError = (orjson.JSONDecodeError, RecursionError)

NAME = "openai"

# Chat Completions parameters (type-checked; other names pass: vLLM, llama.cpp, OpenRouter
# and the rest take extras of their own, e.g. repetition_penalty)
PARAMS: dict[str, base.Param] = {
    "temperature": base.Param(base.NUMBER.types, base.between(0, 2)),
    "top_p": base.FRACTION,
    "max_tokens": base.COUNT,
    "max_completion_tokens": base.COUNT,
    "stop": base.STOP,
    "seed": base.Param((int,)),
    "n": base.COUNT,
    "presence_penalty": base.Param(base.NUMBER.types, base.between(-2, 2)),
    "frequency_penalty": base.Param(base.NUMBER.types, base.between(-2, 2)),
    "logit_bias": base.TABLE,
    "logprobs": base.FLAG,
    "top_logprobs": base.Param((int,)),
    "response_format": base.TABLE,
    "stream_options": base.TABLE,
    "reasoning_effort": base.TEXT,
    "tools": base.LIST,
    "tool_choice": base.Param((str, dict)),
    "parallel_tool_calls": base.FLAG,
    "user": base.TEXT,
    "service_tier": base.TEXT,
    "metadata": base.TABLE,
    "store": base.FLAG,
}


def _effort(level: str, off: str | None = None) -> dict[str, Any]:
    return {"reasoning_effort": off if level == "off" else level}


_GRADED = {level: _effort(level) for level in ("low", "medium", "high")}
# the reasoning switch, first match wins (providers/reasoning.py)
REASONING_RULES = (
    # OpenRouter: its own `reasoning` object, for every model it routes
    reasoning.Rule(
        "",
        {
            level: {"reasoning": {"effort": "none" if level == "off" else level}}
            for level in reasoning.LEVELS
        },
        base_url=r"//openrouter\.ai/",
        soft=("reasoning.exclude",),
    ),
    reasoning.Rule(r"^gpt-5\.\d", {"off": _effort("off", "none"), **_GRADED}),
    reasoning.Rule(r"^gpt-5", {"off": _effort("off", "minimal"), **_GRADED}),
    reasoning.Rule(r"^o\d", _GRADED, why="o-series models always reason (lowest: 'low')"),
    reasoning.Rule(r"^(gpt-4|gpt-3\.5|chatgpt-)", {"off": {}}, why="it is not a reasoning model"),
    # any other model on a compatible server (vLLM's gpt-oss, Groq, ...): the effort;
    # there is no common way to turn reasoning off
    reasoning.Rule(
        "",
        _GRADED,
        why="compatible servers have no common way to turn reasoning off "
        "(pass the server's own param instead)",
    ),
)


def build_request(
    *, base_url: str, model: str, prompt: base.Prompt, params: dict[str, Any], api_key: str | None
) -> base.HttpRequest:
    reasoning = is_reasoning_model(model)
    messages = base.turns(prompt, None if reasoning else "system")
    body: dict[str, Any] = {"model": model, "messages": messages, **params, "stream": True}
    if reasoning:
        # o-series: no system role (folded into the first user message), and
        # max_completion_tokens instead of max_tokens
        if prompt.system:
            if messages and messages[0]["role"] == "user":
                messages[0] = {
                    "role": "user",
                    "content": f"{prompt.system}\n\n{messages[0]['content']}",
                }
            else:
                messages.insert(0, {"role": "user", "content": prompt.system})
        if "max_tokens" in body:
            body.setdefault("max_completion_tokens", body.pop("max_tokens"))
    return base.post(base_url.rstrip("/") + "/chat/completions", body, api_key)


def is_reasoning_model(model: str) -> bool:
    """OpenAI's o-series (o1, o3-mini, o4-mini, ...), also behind a vendor prefix."""
    return re.match(r"o\d", model.rsplit("/", 1)[-1]) is not None


def error_message(body: Any) -> str | None:
    """`{"error": {"message"}}`, `{"error": "text"}` (Ollama's /v1), vLLM's older
    `{"object": "error", "message"}`, FastAPI-style servers' `{"detail": "text"}`."""
    return base.error_text(body, fields=("message", "detail"))


def content_parts(parts: list[Any]) -> tuple[str, str]:
    """(text, reasoning) of a `content` given as a list of typed parts (Mistral's
    Magistral models): `{"type": "text", "text"}` is answer, `{"type": "thinking",
    "thinking": [{"type": "text", "text"}, ...]}` reasoning; other parts (images,
    references) carry no text of the answer. A part of the wrong shape: TypeError."""
    text: list[str] = []
    thought: list[str] = []
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            text.append(as_text(part.get("text")) or "")
        elif kind == "thinking":
            inner = part.get("thinking")
            if type(inner) is str:
                thought.append(inner)
            else:
                for sub in inner or ():
                    if sub.get("type") == "text":
                        thought.append(as_text(sub.get("text")) or "")
    return "".join(text), "".join(thought)


def reasoning_of(details: list[Any]) -> str | None:
    """The reasoning text of OpenRouter's `reasoning_details`: `reasoning.text` (its
    `text`) and `reasoning.summary` (its `summary`); `reasoning.encrypted` carries none.
    None when no detail has text (OpenRouter's `reasoning` beside it then says it; when
    both come, they hold the same text, read once)."""
    texts = []
    for detail in details:
        kind = detail.get("type")
        if kind == "reasoning.text":
            texts.append(as_text(detail.get("text")) or "")
        elif kind == "reasoning.summary":
            texts.append(as_text(detail.get("summary")) or "")
    return "".join(texts) if texts else None


def read_usage(usage: dict[str, Any]) -> UsageDelta:
    """`{prompt_tokens, completion_tokens, prompt_tokens_details: {cached_tokens},
    completion_tokens_details: {reasoning_tokens}}` (the details: OpenAI, DeepSeek's
    `prompt_cache_hit_tokens` too; both counted within the totals)."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = usage.get("prompt_cache_hit_tokens")
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return UsageDelta(
        as_count(usage.get("prompt_tokens")),
        as_count(usage.get("completion_tokens")),
        cached_input_tokens=as_count(cached) or None,  # 0: none (as absent)
        reasoning_tokens=as_count(reasoning) or None,
    )


def _plain_text(obj: Any) -> str | None:
    """The text of an event of the common shape (one choice, index 0, whose delta has
    only `content`, a string, no finish reason; no usage, no error), read as feed()
    reads it; None for any other event (feed() then reads it)."""
    if type(obj) is not dict or "error" in obj or obj.get("usage") or obj.get("object") == "error":
        return None
    choices = obj.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("index") or choice.get("finish_reason") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    content = delta.get("content")
    if type(content) is not str or (len(delta) > 1 and delta.keys() - _PLAIN_KEYS):
        return None
    return content


# events of other shapes at the end of a read that feed_into leaves out of the read's run
# (a stream's last read: its finish chunk, the usage chunk, [DONE])
END_EVENTS = 4

# events of the common shape a stream's template is tried on (one that varies more than
# its text and OpenAI's `obfuscation` padding, which _plain_text never reads, is then
# read event by event)
LEARN_TRIES = 4


def _index(flags: list[bool], value: bool, start: int) -> int:
    """The first index from `start` on where `flags` is `value`, or its length."""
    try:
        return flags.index(value, start)
    except ValueError:
        return len(flags)


# the keys a delta of the common shape may have besides `content` (OpenAI's first delta
# also names the role)
_PLAIN_KEYS = frozenset({"content", "role"})


class Parser:
    """Chat Completions chunks -> deltas. Ends at `data: [DONE]`."""

    __slots__ = ("_learning", "_template", "done", "finish_reason", "name", "refusal")

    def __init__(self, name: str = NAME) -> None:
        self.done = False
        self.finish_reason: str | None = None
        self.name = name  # who errors are attributed to (Azure reuses this parser)
        # `delta.refusal`: the model declined (structured outputs, safety); its words
        # end the answer as an error, never as text in the buffer
        self.refusal: list[str] = []
        # the stream's events of the common shape, as one template (jsonfast.Template),
        # learned from one of its first few
        self._template: Template | None = None
        self._learning = LEARN_TRIES

    def _refused(self) -> None:
        if self.refusal:
            words = "".join(self.refusal)
            raise ProviderError(f"the model refused: {clip(words, 500)}", provider=self.name)

    def feed(self, event: Event) -> list[base.Delta]:
        data = event.data
        if data == "[DONE]":
            self.done = True
            self._refused()
            return [base.DoneDelta(self.finish_reason)]
        if self.done:
            return []  # nothing after [DONE] is part of the answer
        obj = loads_event(data, self.name)
        if not isinstance(obj, dict):
            raise StreamError(f"{self.name}: unexpected stream event: {clip(data, 200)!r}")
        if obj.get("error") or obj.get("object") == "error":
            # {"error": {...}} (OpenAI, vLLM, SGLang; OpenRouter adds it next to `choices`
            # with finish_reason "error") or vLLM's older {"object": "error", "message": ...}
            raise ProviderError(error_message(obj) or clip(data, 300), provider=self.name)
        try:
            out: list[base.Delta] = []
            choices = obj.get("choices") or []
            choice = choices[0] if choices else None
            if choice is not None and (choice.get("index") or len(choices) > 1):
                # n > 1: the choices interleave, chunk by chunk; index 0 is the answer
                choice = next((c for c in choices if not c.get("index")), None)
            if choice is not None:
                delta = choice.get("delta") or {}
                details = delta.get("reasoning_details")
                reasoning = reasoning_of(details) if details else None
                if reasoning is None:  # vLLM: `reasoning` (was `reasoning_content`)
                    reasoning = as_text(delta.get("reasoning_content") or delta.get("reasoning"))
                refusal = delta.get("refusal")
                if type(refusal) is str and refusal:
                    self.refusal.append(refusal)
                content = delta.get("content")
                if type(content) is list:  # Mistral: typed parts, `thinking` ones too
                    content, thought = content_parts(content)
                    reasoning = (reasoning or "") + thought
                else:
                    content = as_text(content)
                if reasoning:
                    out.append(ReasoningDelta(reasoning))
                if content is None:  # /v1/completions chunks carry `text`, no delta
                    content = as_text(choice.get("text"))
                if content:
                    out.append(TextDelta(content))
                reason = as_text(choice.get("finish_reason"))
                if reason:
                    self.finish_reason = reason
            usage = obj.get("usage")
            if usage:
                out.append(read_usage(usage))
        except (AttributeError, TypeError, KeyError, IndexError):
            shown = clip(data, 200)
            raise StreamError(f"{self.name}: unexpected stream event: {shown!r}") from None
        return out

    def feed_into(self, events: Sequence[Event | Run], out: list[base.Delta]) -> None:
        """The deltas of a network read's events (an event, or a run of plain events:
        SSEDecoder.decode_runs), appended to `out` as feed() gives them event by event,
        except that consecutive text is one TextDelta (joined once per read). Once the
        stream's template is known (jsonfast.Template: its events differ only in their
        text), a run of events of that template is read in C-level passes over their
        whole `data: ` lines, without parsing; an event of the common shape,
        `{"choices": [{"delta": {"content": "..."}}]}`, is read in a few lookups
        (_plain_text); any other goes through feed(), and when that raises, `out` holds
        what came before it."""
        lines: list[str]  # each event's data, after DATA
        if len(events) == 1 and type(events[0]) is Run:
            lines = events[0]
        else:
            lines = []
            for item in events:
                if type(item) is Run:
                    lines += item
                else:
                    lines.append(DATA + cast(Event, item).data)
        texts: list[str] = []
        i = 0 if self._template is not None else self._each(lines, texts, out)
        template = self._template
        n = len(lines)
        if template is not None and i < n and not self.done:
            # the rest of the read in one go (a burst's reads), but for the few events
            # of other shapes a stream ends with (the finish chunk, usage, [DONE])
            j = n
            while j > i and n - j < END_EVENTS and not lines[j - 1].endswith(template.tail):
                j -= 1
            text = template.run(lines[i:j] if i or j < n else lines) if j > i else None
            if text is not None:
                if text:
                    texts.append(text)
                i = j
        if template is not None and i < n:
            self._mixed(template, lines[i:] if i else lines, texts, out)
        if texts:
            out.append(TextDelta("".join(texts)))

    def _mixed(
        self, template: Template, lines: list[str], texts: list[str], out: list[base.Delta]
    ) -> None:
        """feed_into() of events of the template and of other shapes mixed: each run of
        the template's in C-level passes, the others one by one (_each)."""
        ok = template.matches(lines)
        i, n = 0, len(lines)
        while i < n:
            if ok[i] and not self.done:
                j = _index(ok, False, i)
                text = template.texts(lines[i:j])
                if text is not None:
                    if text:
                        texts.append(text)
                    i = j
                    continue
            else:
                j = n if self.done else _index(ok, True, i)
            self._each(lines[i:j], texts, out)
            i = j

    def _each(self, lines: list[str], texts: list[str], out: list[base.Delta]) -> int:
        """feed_into() event by event: text of the common shape to `texts`, the rest
        through feed(), after the text before it. Returns how many events it read: it
        stops after the one that taught the stream's template, if one did (one of the
        first few events of the common shape)."""
        loads = _loads
        for i, line in enumerate(lines):
            data = line[6:]
            if not self.done:
                try:
                    obj = loads(data)
                except _JSONError:
                    obj = None  # feed() says what is wrong with it
                text = _plain_text(obj)
                if text is not None:
                    if text:
                        texts.append(text)
                        if self._template is None and self._learning:
                            self._learning -= 1
                            template = Template.learn(data, text, _plain_text, pad="obfuscation")
                            if template is not None:
                                self._template = template.after(DATA)
                                return i + 1
                    continue
            if texts:
                out.append(TextDelta("".join(texts)))
                texts.clear()
            out.extend(self.feed(Event(data)))
        return len(lines)

    def finish(self) -> list[base.Delta]:
        if not self.done:
            self._refused()  # a refusal whose [DONE] never came
        out = base.stream_end(self.name, self.done, self.finish_reason)
        self.done = True
        return out


PROVIDER = base.Provider(
    name=NAME,
    description="OpenAI Chat Completions and compatible servers",
    default_base_url="https://api.openai.com/v1",
    build_request=build_request,
    error_message=error_message,
    new_parser=Parser,
    reasoning=True,
    params=PARAMS,
    models=base.ModelListing(base.under("/models")),
    reasoning_rules=REASONING_RULES,
)
