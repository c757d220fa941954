"""A generation as an async iterator of typed events (kznllm_py/stream/events.py), against real
loopback servers: the sequence for each way a generation goes (ok, an error before the
first token, an error mid-stream, a retry, a cancel, reasoning and usage), and the
orderings its consumers rely on (history's entry exists before the request goes out,
a retry never repeats text, held-back text lands whatever the outcome)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kznllm_py.errors import KznError
from kznllm_py.history.recorder import HistoryRecorder, Recording, before_delivery, record
from kznllm_py.history.records import Entry, NewEntry
from kznllm_py.history.store import HistoryStore
from kznllm_py.prompt.presets import Preset, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.events import (
    Done,
    Error,
    GenEvent,
    GenEvents,
    PromptReady,
    Reasoning,
    RequestReady,
    Retry,
    Text,
    Usage,
)
from kznllm_py.stream.generation import Generation, RetryPolicy
from tests.servers import LoopbackServer, Reply, json_reply, openai_events

FAST = Timeouts(connect=5.0, stall=5.0)  # a broken test fails, it does not hang
CTX = FillContext(mode="yap", query="say hello", filetype="python")
USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def preset(server: LoopbackServer, **extra: Any) -> Preset:
    raw = {"id": "ev", "provider": "openai", "model": "m", "base_url": server.base_url}
    return preset_from_dict({"api_key": False, **raw, **extra})


def generation(
    client: httpx.AsyncClient, server: LoopbackServer, *, ctx: FillContext = CTX, **kw: Any
) -> Generation:
    return Generation(client, preset(server), ctx, FAST, retry=RetryPolicy(tries=1), **kw)


async def collect(gen: Generation) -> list[GenEvent]:
    async with gen.events() as events:
        return [event async for event in events]


def kinds(seen: list[GenEvent], *, skip: tuple[type, ...] = (Text,)) -> list[str]:
    return [type(e).__name__ for e in seen if not isinstance(e, skip)]


def text(seen: list[GenEvent]) -> str:
    return "".join(e.text for e in seen if isinstance(e, Text))


def done(seen: list[GenEvent]) -> Done:
    last = seen[-1]
    assert isinstance(last, Done), seen
    return last


def chunk(delta: dict[str, Any]) -> bytes:
    """One Chat Completions event with `delta` (what openai_events builds, any delta)."""
    return openai_events([])[0].replace(b'{"role":"assistant","content":""}', _json(delta))


def _json(obj: Any) -> bytes:
    import json

    return json.dumps(obj, separators=(",", ":")).encode()


async def recorded(
    recorder: HistoryRecorder,
    rec: Recording,
    events: GenEvents,
    seen: Callable[[GenEvent], None] = lambda event: None,
) -> Entry | None:
    """Run `events` into history as the editor does (each event held on the gate
    `before_delivery` gives, then to `seen`, then recorded); the entry it made."""
    async with events:
        async for event in events:
            gate = before_delivery(rec, event)
            if gate is not None:
                await events.hold(gate)
            seen(event)
            record(rec, event)
    entry_id = await rec.entry_id()
    assert entry_id is not None
    return await recorder.read(lambda store: store.get(entry_id))


async def test_a_good_stream_is_prompt_request_text_usage_then_done(server, client):
    server.queue(Reply(chunks=openai_events(["Hel", "lo"], usage=USAGE)))
    seen = await collect(generation(client, server))
    assert kinds(seen) == ["PromptReady", "RequestReady", "Usage", "Done"]
    prompt, request = seen[0], seen[1]
    assert isinstance(prompt, PromptReady) and "say hello" in prompt.prompt.messages[-1].content
    assert isinstance(request, RequestReady)
    assert request.request.url == server.base_url + "/chat/completions"
    assert text(seen) == "Hello"
    usage = next(e for e in seen if isinstance(e, Usage))
    assert seen.index(usage) > max(i for i, e in enumerate(seen) if isinstance(e, Text))
    outcome = done(seen).outcome
    assert (outcome.status, outcome.error, outcome.text_chars) == ("ok", None, 5)
    assert outcome.usage == usage.usage
    assert outcome.usage is not None and outcome.usage["output_tokens"] == 2


async def test_text_comes_one_event_per_network_read_not_one_per_token(server, client):
    """A 5,000-token burst written in one go is a few Text events, not 5,000."""
    tokens = [f"t{i} " for i in range(5000)]
    server.queue(Reply(chunks=[b"".join(openai_events(tokens))]))
    seen = await collect(generation(client, server))
    texts = [e for e in seen if isinstance(e, Text)]
    assert text(seen) == "".join(tokens)
    assert 1 <= len(texts) <= 20, len(texts)
    assert done(seen).outcome.status == "ok"


async def test_an_error_before_the_first_token_is_error_then_done_with_no_text(server, client):
    server.queue(json_reply(401, {"error": {"message": "bad key"}}))
    seen = await collect(generation(client, server))
    assert kinds(seen, skip=()) == ["PromptReady", "RequestReady", "Error", "Done"]
    error, outcome = seen[2], done(seen).outcome
    assert isinstance(error, Error)
    assert (
        error.message
        == outcome.error
        == (
            "openai error (HTTP 401): preset 'ev' sends no key (its api_key is unset) and "
            "the server wants one: bad key"
        )
    )
    assert (outcome.status, outcome.text_chars, outcome.received) == ("error", 0, False)


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (401, "check $KZN_EVENTS_KEY (preset 'ev'): the server refused the key: "),
        (
            403,
            "check $KZN_EVENTS_KEY (preset 'ev'): the key has no access to this model or project: ",
        ),
        (500, ""),  # not about the key: no hint
        (429, ""),
    ],
)
async def test_a_key_turned_away_says_which_key_of_which_preset_to_check(
    status, fix, server, client, monkeypatch
):
    """What failed and its status, then the fix, then the provider's own words (the
    longest part, which a one-line message cut at the screen's width loses first); the
    key itself never."""
    monkeypatch.setenv("KZN_EVENTS_KEY", "sk-events-secret-0123456789")
    server.queue(json_reply(status, {"error": {"message": "nope"}}))
    gen = Generation(
        client, preset(server, api_key="KZN_EVENTS_KEY"), CTX, FAST, retry=RetryPolicy(tries=1)
    )
    error = done(await collect(gen)).outcome.error or ""
    assert error == f"openai error (HTTP {status}): {fix}nope"
    assert "sk-events-secret" not in error


async def test_a_refused_user_and_password_in_the_base_url_are_named_never_shown(server, client):
    # the preset sends no api_key but credentials in its URL: "sends no key" was wrong
    url = server.base_url.replace("http://", "http://me:pw-secret-0123456789@")
    server.queue(json_reply(401, {"error": {"message": "nope"}}))
    gen = Generation(client, preset(server, base_url=url), CTX, FAST, retry=RetryPolicy(tries=1))
    error = done(await collect(gen)).outcome.error or ""
    assert error == (
        "openai error (HTTP 401): check the user and password in the base_url of preset "
        "'ev': the server refused them: nope"
    )
    assert "pw-secret" not in error
    assert server.requests[0].headers["authorization"].startswith("Basic ")


async def test_a_failure_before_the_request_is_built_has_no_request_event(
    server, client, monkeypatch
):
    monkeypatch.delenv("KZN_EVENTS_NO_SUCH_KEY", raising=False)
    gen = Generation(client, preset(server, api_key="KZN_EVENTS_NO_SUCH_KEY"), CTX, FAST)
    seen = await collect(gen)
    assert kinds(seen, skip=()) == ["Error", "Done"]
    assert "KZN_EVENTS_NO_SUCH_KEY" in done(seen).outcome.error  # type: ignore[operator]
    assert server.requests == []


async def test_an_error_mid_stream_keeps_the_text_so_far_then_error_then_done(server, client):
    head = openai_events(["part"], done=False)[:2]
    server.queue(Reply(chunks=[*head, b'data: {"error": {"message": "overloaded"}}\n\n']))
    seen = await collect(generation(client, server))
    assert kinds(seen) == ["PromptReady", "RequestReady", "Error", "Done"]
    assert text(seen) == "part"
    assert seen.index(next(e for e in seen if isinstance(e, Text))) < len(seen) - 2
    outcome = done(seen).outcome
    assert (outcome.status, outcome.text_chars) == ("error", 4)
    assert outcome.error is not None and "overloaded" in outcome.error


async def test_a_retry_is_announced_then_the_answer_comes_once(server, client):
    busy = json_reply(429, {"error": {"message": "busy"}}, headers={"Retry-After": "0"})
    server.queue(busy, Reply(chunks=openai_events(["fine"])))
    gen = Generation(client, preset(server), CTX, FAST, retry=RetryPolicy(tries=3))
    seen = await collect(gen)
    assert kinds(seen) == ["PromptReady", "RequestReady", "Retry", "Done"]
    assert seen[2] == Retry(1, 0.0, "openai error (HTTP 429): busy")
    assert text(seen) == "fine"  # once: a retry never repeats text
    assert done(seen).outcome.status == "ok"
    assert len(server.requests) == 2


async def test_reasoning_and_usage_come_as_their_own_events_before_done(server, client):
    chunks = openai_events(["answer"], usage=USAGE)
    chunks[1:1] = [chunk({"reasoning_content": "thin"}), chunk({"reasoning_content": "king"})]
    server.queue(Reply(chunks=chunks))
    seen = await collect(generation(client, server))
    assert kinds(seen, skip=(Text, Reasoning)) == ["PromptReady", "RequestReady", "Usage", "Done"]
    reasoning = [e for e in seen if isinstance(e, Reasoning)]
    assert "".join(e.text for e in reasoning) == "thinking"
    assert text(seen) == "answer"  # reasoning is never part of the answer
    first_text = next(i for i, e in enumerate(seen) if isinstance(e, Text))
    assert all(seen.index(e) < first_text for e in reasoning)
    outcome = done(seen).outcome
    assert (outcome.reasoning, outcome.text_chars) == ("thinking", 6)
    assert outcome.usage is not None and outcome.usage["input_tokens"] == 7


async def test_a_cancel_mid_stream_ends_with_done_cancelled_and_the_text_so_far(server, client):
    """<Esc> cancels the consumer's task while it iterates: the events still end with
    Done("cancelled") and the text so far, the connection is closed, and the task
    ends as it always did (the generation took the cancel)."""
    server.queue(Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2))
    seen: list[GenEvent] = []
    task = await until_text(generation(client, server), seen)
    await server.wait_paused_async()
    task.cancel()
    await asyncio.wait_for(task, 5)
    assert not task.cancelled() and task.cancelling() == 0
    assert kinds(seen) == ["PromptReady", "RequestReady", "Done"]
    assert text(seen) == "kept "
    outcome = done(seen).outcome
    assert (outcome.status, outcome.error, outcome.text_chars) == ("cancelled", None, 5)
    await server.wait_client_gone_async(timeout=5.0)
    assert server.clients_gone_mid_response == 1


async def test_held_back_text_lands_on_a_cancel(server, client):
    """In replace mode, after an opening fence a line break is held back (a closing
    fence may follow it); cancelled there, it is text that arrived: it lands, as a
    Text event before Done."""
    ctx = FillContext(mode="replace", query="q", selection="old\n", filetype="python")
    server.queue(Reply(chunks=openai_events(["```python\nx = 1\n", "```"]), pause_after=2))
    seen: list[GenEvent] = []
    task = await until_text(generation(client, server, ctx=ctx), seen)
    task.cancel()
    await asyncio.wait_for(task, 5)
    assert kinds(seen) == ["PromptReady", "RequestReady", "Done"]
    assert [e.text for e in seen if isinstance(e, Text)] == ["x = 1", "\n"]
    assert seen[-2] == Text("\n")
    assert done(seen).outcome.status == "cancelled"


async def test_a_cancel_while_a_consumer_holds_the_request_sends_nothing(server, client):
    """A consumer awaiting between the request event and the next pull (history's
    entry, the debug view's render) is waited for: cancelled there, nothing was sent."""
    server.queue(Reply(chunks=openai_events(["never"])))
    seen: list[GenEvent] = []
    holding = asyncio.Event()

    async def consume() -> None:
        async with generation(client, server).events() as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, RequestReady):
                    holding.set()
                    assert await events.hold(asyncio.Event().wait()) is None

    task = asyncio.create_task(consume())
    await asyncio.wait_for(holding.wait(), 5)
    task.cancel()
    await asyncio.wait_for(task, 5)
    assert kinds(seen) == ["PromptReady", "RequestReady", "Done"]
    assert done(seen).outcome.status == "cancelled"
    assert server.requests == [] and server.connections_accepted == 0


async def test_a_consumer_failing_while_it_holds_fails_the_generation_unsent(server, client):
    """The debug view's render of a project's debug.jinja may fail (over its time
    budget): that is the generation's error, one message, and nothing was sent."""

    async def render() -> None:
        raise KznError("debug.jinja: rendering took longer than 2 s")

    server.queue(Reply(chunks=openai_events(["never"])))
    async with generation(client, server).events() as events:
        seen = []
        async for event in events:
            seen.append(event)
            if isinstance(event, RequestReady):
                assert await events.hold(render()) is None
    assert kinds(seen, skip=()) == ["PromptReady", "RequestReady", "Error", "Done"]
    outcome = events.outcome()
    assert (outcome.status, outcome.error) == (
        "error",
        "debug.jinja: rendering took longer than 2 s",
    )
    assert server.connections_accepted == 0


async def test_stop_ends_the_generation_as_cancelled_and_closes_the_stream(server, client):
    """The CLI's reader went away (`| head`): it stops the generation, which ends as a
    cancel with the connection closed."""
    server.queue(Reply(chunks=openai_events(["one ", "two"]), pause_after=2))
    seen: list[GenEvent] = []
    async with generation(client, server).events() as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, Text):
                events.stop()
    assert kinds(seen) == ["PromptReady", "RequestReady", "Done"]
    assert (text(seen), events.outcome().status) == ("one ", "cancelled")
    await server.wait_client_gone_async(timeout=5.0)


async def test_history_entry_exists_before_the_first_text_is_delivered(
    server, client, tmp_path: Path, monkeypatch
):
    """With a slow store (writing an entry takes 0.25 s), the request goes out at once
    (it does not wait for history), and the first text is delivered only once the entry
    was written: the consumer holds the generation on it (`before_delivery`)."""
    start = HistoryStore.start

    def slow_start(store: HistoryStore, entry: NewEntry) -> int:
        time.sleep(0.25)  # a slow disk, on the store's own thread
        return start(store, entry)

    monkeypatch.setattr(HistoryStore, "start", slow_start)
    recorder = HistoryRecorder(tmp_path / "h.sqlite3", print, max_entries=None)
    try:
        rec = recorder.begin(NewEntry(mode="yap", query="say hello"))
        server.queue(Reply(chunks=openai_events(["saved"])))
        delivered: list[float] = []

        def seen(event: GenEvent) -> None:
            if isinstance(event, Text):
                delivered.append(time.time())

        entry = await recorded(recorder, rec, generation(client, server).events(), seen)
        delivered_at = delivered[0] if delivered else None
    finally:
        recorder.close()
    assert entry is not None
    (request,) = server.requests
    assert request.at < entry.started_at, "the request waited for history's entry"
    assert delivered_at is not None and entry.started_at <= delivered_at
    assert (entry.status, entry.response) == ("ok", "saved")
    assert "say hello" in entry.request


async def until_text(gen: Generation, seen: list[GenEvent]) -> asyncio.Task[None]:
    """A task consuming `gen`'s events into `seen`, once its first Text came."""
    first_text = asyncio.Event()

    async def consume() -> None:
        async with gen.events() as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, Text):
                    first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 5)
    return task
