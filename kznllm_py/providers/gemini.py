"""Google Gemini API (Google AI Studio): `models/{model}:streamGenerateContent?alt=sse`,
the key in `x-goog-api-key` (never in the URL), the system text as `systemInstruction`,
turns as `contents` with roles "user" / "model", sampling params in `generationConfig`.

The stream is SSE whose every `data:` is a whole GenerateContentResponse; it has no
[DONE]: it simply ends after the chunk that carries a `finishReason`.

Parts with `thought: true` are reasoning; a `thoughtSignature` (on a part, or a part of its
own) is never text. Follow-ups resend earlier answers as text parts without signatures:
Gemini requires them only on function-call parts, and kznllm uses no tools.
"""

from __future__ import annotations

from typing import Any

from kznllm_py.errors import ProviderError
from kznllm_py.providers import base, reasoning
from kznllm_py.providers.base import DoneDelta, ReasoningDelta, TextDelta, UsageDelta, as_count
from kznllm_py.secrets import clip
from kznllm_py.stream.sse import Event

NAME = "gemini"
AUTH = base.Auth("x-goog-api-key", "")  # never in the URL

# GenerationConfig fields (camelCase, as the REST API spells them)
GENERATION_FIELDS = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseModalities",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
        "enableEnhancedCivicAnswers",
        "speechConfig",
        "thinkingConfig",
        "mediaResolution",
    }
)
# names other providers' presets use for the same thing
ALIASES = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "stop": "stopSequences",
}
# finishReason -> the name the rest of kznllm reports (others: the enum, lowercased)
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}


def _thinking(**config: Any) -> dict[str, Any]:
    return {"thinkingConfig": {**config, "includeThoughts": True}}


_SOFT = ("thinkingConfig.includeThoughts",)
# thinking budgets of the 2.5 models (Pro: 128 to 32768, Flash: 0 to 24576)
BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
# the reasoning switch, first match wins (providers/reasoning.py): `thinkingLevel` for
# Gemini 3 (Pro: low or high, never off; Flash: 'off' is its "minimal"),
# `thinkingBudget` for 2.5 (Pro cannot stop thinking; Flash stops at 0); thoughts are
# included, as reasoning
REASONING_RULES = (
    reasoning.Rule(
        r"^gemini-3.*-pro",
        {"low": _thinking(thinkingLevel="low"), "high": _thinking(thinkingLevel="high")},
        why="Gemini 3 Pro thinks at 'low' or 'high' only, and cannot stop thinking",
        soft=_SOFT,
    ),
    reasoning.Rule(
        r"^gemini-3",
        {
            "off": {"thinkingConfig": {"thinkingLevel": "minimal"}},
            **{lv: _thinking(thinkingLevel=lv) for lv in ("low", "medium", "high")},
        },
        soft=_SOFT,
    ),
    reasoning.Rule(
        r"^gemini-2\.5-pro",
        {lv: _thinking(thinkingBudget=n) for lv, n in BUDGETS.items()},
        why="Gemini 2.5 Pro cannot stop thinking (lowest: 'low')",
        soft=_SOFT,
    ),
    reasoning.Rule(
        r"^gemini-2\.5-flash",
        {
            "off": {"thinkingConfig": {"thinkingBudget": 0}},
            **{lv: _thinking(thinkingBudget=n) for lv, n in BUDGETS.items()},
        },
        soft=_SOFT,
    ),
    reasoning.Rule(r"^gemini-", {"off": {}}, why="this Gemini model does not think"),
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def generation_config(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split preset params into (generationConfig, other top-level request fields).
    snake_case and camelCase names are both accepted; an explicit `generationConfig`
    table is the base the flat names are laid over."""
    config: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("generationConfig", "generation_config") and isinstance(value, dict):
            config = {**{_camel(k): v for k, v in value.items()}, **config}
            continue
        if key == "stream":
            continue  # the endpoint decides: this one always streams
        name = ALIASES.get(key) or _camel(key)
        if name in GENERATION_FIELDS:
            if name == "stopSequences" and isinstance(value, str):
                value = [value]
            elif name == "thinkingConfig" and isinstance(value, dict):
                value = {_camel(k): v for k, v in value.items()}
            config[name] = value
        else:
            top[key] = value
    return config, top


def model_path(model: str) -> str:
    """The resource path: a bare name gets "models/" ("gemini-2.5-flash" ->
    "models/gemini-2.5-flash"); a full one ("models/...", "tunedModels/...") is kept."""
    return model if "/" in model else f"models/{model}"


def build_request(
    *, base_url: str, model: str, prompt: base.Prompt, params: dict[str, Any], api_key: str | None
) -> base.HttpRequest:
    contents = [
        {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
        for m in prompt.messages
    ]
    body: dict[str, Any] = {"contents": contents}
    if prompt.system:
        body["systemInstruction"] = {"parts": [{"text": prompt.system}]}
    config, top = generation_config(params)
    body.update(top)
    if config:
        body["generationConfig"] = config
    url = f"{base_url.rstrip('/')}/{model_path(model)}:streamGenerateContent?alt=sse"
    return base.post(url, body, api_key, auth=AUTH)


def error_message(body: Any) -> str | None:
    """`{"error": {"code", "message", "status"}}`; without `alt=sse` Google wraps it in a
    one-element array, so that shape is read too."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return base.error_text(body, label="status", fields=("message",))


def listed_models(body: Any) -> tuple[list[str], str | None]:
    """`{"models": [{"name": "models/...", "supportedGenerationMethods"}],
    "nextPageToken"}`: the models that generate content (not the embedding ones), by
    the names a preset uses, and the next page's token."""
    names = []
    for m in body.get("models") or []:
        methods = m.get("supportedGenerationMethods")
        if methods is None or "generateContent" in methods:
            names.append(str(m["name"]).removeprefix("models/"))
    return names, body.get("nextPageToken") or None


class Parser(base.JsonEventParser):
    """GenerateContentResponse chunks -> deltas. The first candidate is the answer."""

    __slots__ = ("chunks", "done", "finish_reason", "usage")
    provider_name = NAME

    def __init__(self) -> None:
        self.chunks = 0  # GenerateContentResponse objects read
        self.done = False
        self.finish_reason: str | None = None
        self.usage: tuple[int | None, ...] | None = None

    def _deltas(self, obj: dict[str, Any], event: Event) -> list[base.Delta]:
        if obj.get("error"):
            raise ProviderError(error_message(obj) or clip(event.data, 300), provider=NAME)
        self.chunks += 1
        out: list[base.Delta] = []
        feedback = obj.get("promptFeedback")
        if feedback:
            blocked = feedback.get("blockReason")
            if blocked:
                why = feedback.get("blockReasonMessage")
                detail = f"the prompt was blocked ({blocked})"
                raise ProviderError(f"{detail}: {why}" if why else detail, provider=NAME)
        for cand in obj.get("candidates") or ():
            if cand.get("index"):
                continue  # candidateCount > 1: only the first is the answer
            content = cand.get("content") or {}
            for part in content.get("parts") or ():
                text = part.get("text")
                if text is None:
                    continue  # functionCall, inlineData, a bare thoughtSignature, ...
                if not isinstance(text, str):
                    raise TypeError
                if text:
                    out.append(ReasoningDelta(text) if part.get("thought") else TextDelta(text))
            reason = cand.get("finishReason")
            if reason and reason != "FINISH_REASON_UNSPECIFIED":
                self.finish_reason = FINISH_REASONS.get(reason) or str(reason).lower()
        meta = obj.get("usageMetadata")
        if meta:
            out_tokens = as_count(meta.get("candidatesTokenCount"))
            thoughts = as_count(meta.get("thoughtsTokenCount"))
            if thoughts is not None:  # billed as output, like OpenAI's reasoning tokens
                out_tokens = (out_tokens or 0) + thoughts
            cached = as_count(meta.get("cachedContentTokenCount"))  # within promptTokenCount
            usage = (
                as_count(meta.get("promptTokenCount")),
                out_tokens,
                cached or None,
                thoughts or None,
            )
            if usage != self.usage:  # usageMetadata rides on every chunk, running totals
                self.usage = usage
                out.append(UsageDelta(*usage))
        return out

    def finish(self) -> list[base.Delta]:
        """The body ended cleanly (a cut connection is a transport error before this):
        Gemini and Vertex often leave `finishReason` off the last chunk, so an answer
        that came is complete; a body without a single chunk is not."""
        if not self.done and self.finish_reason is None and self.chunks:
            self.done = True
            return [DoneDelta(None)]
        out = base.stream_end(NAME, self.done, self.finish_reason)
        self.done = True
        return out


PROVIDER = base.Provider(
    name=NAME,
    description="Google Gemini API (AI Studio)",
    default_base_url="https://generativelanguage.googleapis.com/v1beta",
    build_request=build_request,
    error_message=error_message,
    new_parser=Parser,
    reasoning=True,
    # sampling params by the names presets use; generationConfig fields and top-level
    # request fields (safetySettings, tools, ...) pass as they are
    params={
        "temperature": base.Param(base.NUMBER.types, base.between(0, 2)),
        "top_p": base.FRACTION,
        "top_k": base.COUNT,
        "max_tokens": base.COUNT,
        "max_completion_tokens": base.COUNT,
        "stop": base.STOP,
        "generationConfig": base.TABLE,
        "generation_config": base.TABLE,
    },
    models=base.ModelListing(
        base.under("/models"), listed_models, auth=AUTH, paging=("pageSize", "pageToken")
    ),
    reasoning_rules=REASONING_RULES,
)
