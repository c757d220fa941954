"""One generation, from a preset and a fill context to text, shared by the CLI and the
plugin: its request prepared (stream/prepare.py: the key, the prompt, the request),
then streamed, decoded and parsed here, the answer passed through its filter and size
cap (stream/answer.py).

`Generation.events()` is the generation as an async iterator of typed events
(kznllm_py/stream/events.py): the prompt, the request, retries, text (the deltas decoded from
one network read, concatenated), reasoning, usage, an error, and `Done` with the
`Outcome`. It never raises for a failure of the request, and every error text in it is
redacted. `run(on_text)` is its consumer for callers that want only the text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import httpx

from kznllm_py import pricing, secrets
from kznllm_py.errors import (
    KznError,
    LimitError,
    ProviderError,
    TransportError,
    printable,
)
from kznllm_py.prompt import debug_request, prompts
from kznllm_py.prompt.presets import Preset, preset_price
from kznllm_py.providers.base import (
    Delta,
    DoneDelta,
    HttpRequest,
    Prompt,
    Provider,
    ReasoningDelta,
    TextDelta,
    UsageDelta,
)
from kznllm_py.providers.jsonfast import loads_body
from kznllm_py.stream.answer import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AnswerFilter,
    cap_message,
    line_limit,
    wire_limit,
)
from kznllm_py.stream.client import Timeouts, host_of, stream_bytes
from kznllm_py.stream.events import (
    Done,
    Error,
    GenEvent,
    GenEvents,
    Outcome,
    PromptReady,
    Reasoning,
    RequestReady,
    Retry,
    Stopped,
    Text,
    Usage,
)
from kznllm_py.stream.ndjson import NDJSONDecoder
from kznllm_py.stream.prepare import prepare_with_prompt
from kznllm_py.stream.sse import Event, Run, SSEDecoder

FIRST_PIECE = 8 * 1024
# after the provider's final event, how long the end of the body is waited for
DONE_GRACE_S = 0.5
ERROR_HEAD_CAP = 64 * 1024


class StreamDecoder(Protocol):
    """Bytes of a response body in, the events they complete out (SSE, NDJSON)."""

    def decode(self, chunk: bytes) -> list[Event]: ...

    def flush(self) -> list[Event]: ...


# the body's framing, by Provider.stream_format
DECODERS: dict[str, Callable[[int], StreamDecoder]] = {"sse": SSEDecoder, "ndjson": NDJSONDecoder}


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a request the provider turned away for now (429, 503, 529, ...), only
    before the first byte of an answer: the provider's Retry-After if it gives one,
    else capped exponential backoff."""

    tries: int = 3
    base: float = 1.0
    cap: float = 20.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        return min(self.base * 2.0 ** (attempt - 1), self.cap)


async def stream_deltas(
    client: httpx.AsyncClient,
    provider: Provider,
    request: HttpRequest,
    timeouts: Timeouts,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> AsyncGenerator[list[Delta], None]:
    """Deltas, one list per network read; ends after the provider's final event."""
    decoder = DECODERS[provider.stream_format](line_limit(max_response_bytes))
    parser = provider.new_parser()
    feed = parser.feed
    # a parser's fast path for a whole read's events (providers/openai.py), if it has one,
    # given runs of plain events as their whole lines where the decoder can (sse.Run)
    feed_into: Callable[[Sequence[Event | Run], list[Delta]], None] | None = getattr(
        parser, "feed_into", None
    )
    decode: Callable[[bytes], Sequence[Event | Run]] = decoder.decode
    if feed_into is not None:
        decode = getattr(decoder, "decode_runs", decoder.decode)
    started = False  # the first delta went out
    head = b""  # the body until the first delta: a JSON error sent as a 200 is read from it
    loop = asyncio.get_running_loop()
    sent = loop.time()
    deadline = None if timeouts.total is None else sent + timeouts.total
    first = None if timeouts.first_token is None else sent + timeouts.first_token
    wire_cap = wire_limit(max_response_bytes)
    body = stream_bytes(client, provider, request, timeouts, max_bytes=wire_cap)
    async with aclosing(body) as chunks:
        it = aiter(chunks)
        while True:
            grace = getattr(parser, "done", False)
            # the provider's final event came: the body's end follows at once from a
            # well-behaved server (the connection is then reused); one that keeps the
            # body open is not waited on until the stall timeout
            until = loop.time() + DONE_GRACE_S if grace else None
            limit = "grace"
            if deadline is not None and (until is None or deadline < until):
                until, limit = deadline, "total"
            if not started and first is not None and (until is None or first < until):
                until, limit = first, "first_token"
            try:
                async with asyncio.timeout_at(until):
                    chunk = await anext(it)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if limit == "grace":
                    break
                raise deadline_error(request, timeouts, limit) from None
            except TransportError:
                if grace:  # the answer is whole: what broke after its end loses nothing
                    break
                raise
            if not started and len(head) < ERROR_HEAD_CAP:
                head += chunk[: ERROR_HEAD_CAP - len(head)]
            pieces = [chunk]
            if not started and len(chunk) > FIRST_PIECE:
                # a burst arrives as one big read: decode its head first, so that the
                # first token does not wait for the whole read to be parsed
                pieces = [chunk[:FIRST_PIECE], chunk[FIRST_PIECE:]]
            for piece in pieces:
                batch: list[Delta] = []
                try:
                    if feed_into is not None:
                        feed_into(decode(piece), batch)
                    else:
                        for event in decoder.decode(piece):
                            batch.extend(feed(event))
                except KznError:
                    if batch:  # what came before the bad event in this read is kept
                        yield batch
                    raise
                if batch:
                    started = True
                    yield batch
    tail: list[Delta] = []
    try:
        for event in decoder.flush():
            tail.extend(feed(event))
        if not started and not tail:
            _raise_json_error(provider, head)
        tail.extend(parser.finish())
    except KznError:
        if tail:
            yield tail
        raise
    if tail:
        yield tail


def deadline_error(request: HttpRequest, timeouts: Timeouts, limit: str) -> TransportError:
    """The stream passed one of its deadlines: which, and the option that sets it."""
    host = host_of(request.url)
    if limit == "first_token":
        return TransportError(
            f"{host} sent no token within {timeouts.first_token:g} s (nothing, or only "
            "keep-alive comments or empty events); the limit is the first_token timeout option"
        )
    return TransportError(
        f"{host} did not finish the answer within {timeouts.total:g} s; the limit is the "
        "total timeout option"
    )


def _raise_json_error(provider: Provider, head: bytes) -> None:
    """A body that was one JSON error object, not a stream (some gateways send it with
    status 200 and an event-stream or no content type): raise the provider's message."""
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not body.startswith(b"{"):
        return
    message = provider.error_message(loads_body(body))
    if message:
        raise ProviderError(message, provider=provider.name)


@dataclass(frozen=True)
class Generation:
    """One generation, configured at construction; `events()` runs it."""

    client: httpx.AsyncClient
    preset: Preset
    ctx: prompts.FillContext
    timeouts: Timeouts = field(default_factory=Timeouts)
    search_dirs: Sequence[Path] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # sent instead of the rendered templates (a follow-up or re-run from history)
    prompt: Prompt | None = None
    # the debug view's text as the user edited it: its request body is sent as it reads
    # (kznllm_py/prompt/debug_request.py), to the preset's URL with its headers
    edited_view: str | None = None
    # the answer and its reasoning, in UTF-8 bytes: past it the stream is stopped
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    started: float = field(default_factory=time.perf_counter)

    def events(self) -> GenEvents:
        """The generation's events (kznllm_py/stream/events.py): it starts at the first pull,
        and never raises for a failure of the request: that is an `Error`, then `Done`."""
        return GenEvents(self._events())

    async def run(
        self, on_text: Callable[[str], None], on_reasoning: Callable[[str], None] | None = None
    ) -> Outcome:
        """The answer's text to `on_text` (reasoning to `on_reasoning`), then the outcome:
        a consumer of `events()` for callers that need nothing else."""
        async with self.events() as events:
            async for event in events:
                match event:
                    case Text(text):
                        on_text(text)
                    case Reasoning(text) if on_reasoning is not None:
                        on_reasoning(text)
        return events.outcome()

    async def _events(self) -> AsyncGenerator[GenEvent, None]:
        out = Outcome("ok")
        answer = AnswerFilter(self.ctx.mode == "replace", cap=self.max_response_bytes)
        try:
            provider, request, prompt = await prepare_with_prompt(
                self.preset, self.ctx, search_dirs=self.search_dirs, prompt=self.prompt
            )
            if self.edited_view is not None:
                # to the preset, provider and URL the view names, or nothing is sent
                url = secrets.redact_url(request.url)
                debug_request.check(
                    self.edited_view,
                    preset_id=self.preset.id,
                    provider=self.preset.provider,
                    url=url,
                )
                body = debug_request.parse(self.edited_view, system_on_top="system" in request.body)
                request = replace(request, body=body)
            yield PromptReady(prompt)
            # the consumers' waits (history's entry, the debug view) happen here, before
            # the next pull: nothing is sent until then
            yield RequestReady(request)
            # the answer continues the prefill: it is part of the text
            pending = self.preset.prefill.rstrip() if provider.supports_prefill else ""
            for attempt in range(1, self.retry.tries + 1):
                try:
                    async with aclosing(
                        self._stream(provider, request, answer, out, pending)
                    ) as it:
                        async for event in it:
                            yield event
                    break
                except ProviderError as exc:
                    # only before anything arrived: a retry must not repeat text
                    if not exc.retryable or out.received or attempt == self.retry.tries:
                        raise
                    wait = self.retry.wait(attempt, exc.retry_after)
                    yield Retry(attempt, wait, shown(str(exc)))
                    await asyncio.sleep(wait)  # cancellable: <Esc> ends the wait too
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            out.status = "cancelled"
        except Stopped:
            out.status = "cancelled"
        except KznError as exc:
            out.status = "error"
            out.error = shown(str(self._with_fix(exc)))
        except Exception as exc:  # a bug of ours: still one clear, redacted message
            out.status = "error"
            out.error = shown(f"internal error: {type(exc).__name__}: {exc}")
        # what was held back is text that arrived: it lands whatever the outcome
        answer.finish()
        while answer.held:
            yield answer.held.popleft()
        if answer.over_cap and out.status == "ok":  # the held-back text went past the cap
            out.status, out.error = "error", cap_message(self.max_response_bytes)
        out.text_chars = answer.chars
        out.reasoning = answer.reasoning_text
        out.duration_ms = (time.perf_counter() - self.started) * 1000
        price = preset_price(self.preset)
        out.cost_usd = pricing.cost(out.usage, price)
        if out.cost_usd is not None and price is not None:
            out.price = price.to_dict()
        if out.error is not None:
            yield Error(out.error)
        yield Done(out)

    def _with_fix(self, exc: KznError) -> KznError:
        """A key turned away (HTTP 401/403) says which key of which preset to check,
        right after the status: before the provider's own words, which a one-line
        message cut at the screen's width loses first."""
        if not isinstance(exc, ProviderError):
            return exc
        return secrets.with_refused_hint(
            exc, self.preset.api_key, self.preset.id, self.preset.base_url or ""
        )

    async def _stream(
        self,
        provider: Provider,
        request: HttpRequest,
        answer: AnswerFilter,
        out: Outcome,
        pending: str,
    ) -> AsyncGenerator[GenEvent, None]:
        """One try: the events of each network read, as the answer filter lets them by."""
        held = answer.held
        async with aclosing(
            stream_deltas(
                self.client,
                provider,
                request,
                self.timeouts,
                max_response_bytes=self.max_response_bytes,
            )
        ) as batches:
            async for batch in batches:
                out.received = True
                texts: list[str] = [pending] if pending else []
                usage = None
                for delta in batch:
                    if type(delta) is TextDelta:
                        texts.append(delta.text)
                    elif type(delta) is ReasoningDelta:
                        answer.reasoning(delta.text)
                    elif type(delta) is UsageDelta:
                        out.usage = delta.to_dict()
                        usage = Usage(out.usage)
                    elif type(delta) is DoneDelta:
                        out.finish_reason = delta.finish_reason
                if len(texts) > bool(pending):
                    pending = ""
                    if out.first_token_ms is None:
                        out.first_token_ms = (time.perf_counter() - self.started) * 1000
                    answer.push("".join(texts))
                while held:
                    yield held.popleft()
                if usage is not None:
                    yield usage
                if answer.over_cap:  # leaving the loop closes the HTTP response
                    raise LimitError(cap_message(self.max_response_bytes))


def shown(text: str) -> str:
    """Error text as every sink gets it (messages, history, the CLI's stderr): keys
    redacted, then control characters escaped."""
    return printable(secrets.redact(text))
