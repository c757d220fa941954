"""Recording a generation in the history store without ever delaying it.

Every store call runs on one worker thread of its own (so calls stay in order and the
asyncio loop never touches SQLite); streamed text is batched and saved at most
`SAVE_EVERY_S` after it arrived, whether or not more text follows (a timer on the loop),
so a crash or `:qa!` mid-stream leaves the partial answer. The fill's first text waits
for its entry to exist before it is delivered (`before_delivery`, at most
`ENTRY_WAIT_S`: a locked database never holds a fill longer); the request goes out
meanwhile (it used to wait for the entry: two thread wake-ups on the keypress's path,
several ms on a busy machine). A failing store is reported once and then left alone:
history never breaks a fill. The editor (plugin.py) and `kznllm fill` both record
through this module: it records what it is given (a `NewEntry`, plain fields: the
fill's module makes it), `record` takes a generation's events (kznllm_py/stream/events.py)
into the entry, `request_json` is the request as kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kznllm_py.errors import KznError
from kznllm_py.history.conversation import prompt_to_json
from kznllm_py.history.records import NewEntry
from kznllm_py.history.store import DEFAULT_MAX_ENTRIES, HistoryStore
from kznllm_py.providers.base import HttpRequest
from kznllm_py.providers.jsonfast import dumps
from kznllm_py.secrets import redact_url
from kznllm_py.stream.events import Done, GenEvent, PromptReady, Reasoning, RequestReady, Text

SAVE_EVERY_S = 0.5
ENTRY_WAIT_S = 0.5
# the prompt and the request (each as long as the context: tens of KB to redact and
# write) are saved this long after the request went out, or at its end, not before
# it: their redaction on the history thread held the GIL while the host's loop
# built, sent and answered the request (the keypress -> request +6 ms of a 16,000-line
# buffer, bench/keypress_bench.py)
AFTER_SEND_S = 0.05
T = TypeVar("T")


def request_json(request: HttpRequest) -> str:
    """The request as history keeps it: exactly what went out, key headers redacted."""
    shown = {
        "method": request.method,
        "url": redact_url(request.url),
        "headers": request.redacted_headers(),
        "body": request.body,
    }
    return dumps(shown).decode()


def before_delivery(rec: Recording, event: GenEvent) -> Awaitable[None] | None:
    """What a consumer waits for (`GenEvents.hold`) before it delivers `event` (writes
    text to the buffer or stdout): the entry's creation, for the first text or reasoning,
    so that a crash from the first token on leaves the entry. None: deliver at once."""
    if isinstance(event, Text | Reasoning) and not rec.entry_known():
        return rec.created()
    return None


def record(rec: Recording, event: GenEvent) -> None:
    """Take one of a generation's events into its entry."""
    match event:
        case Text(text):
            rec.text(text)
        case Reasoning(text):
            rec.reasoning(text)
        case PromptReady(prompt):
            rec.after_send(lambda: rec.prompt(prompt_to_json(prompt)))
        case RequestReady(request):
            rec.after_send(lambda: rec.request(request_json(request)))
        case Done(outcome):
            rec.finish(outcome.status, outcome.error, outcome.to_dict())


class HistoryRecorder:
    """One per host: owns the store (opened lazily, on the worker thread)."""

    def __init__(
        self,
        path: Path,
        on_error: Callable[[str], None],
        *,
        max_entries: int | None = DEFAULT_MAX_ENTRIES,
        max_age_days: float | None = None,
    ) -> None:
        self._path = path
        self._on_error = on_error
        self._limits = {"max_entries": max_entries, "max_age_days": max_age_days}
        self._store: HistoryStore | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kzn-history")
        self._failed = False

    def _call(self, fn: Callable[[HistoryStore], Any]) -> concurrent.futures.Future[Any]:
        def run() -> Any:
            if self._failed:
                return None
            try:
                return fn(self._opened())
            except KznError as exc:
                self._failed = True
                self._on_error(f"history is off for this session: {exc}")
            except Exception as exc:  # never let history break a fill
                self._failed = True
                self._on_error(f"history is off for this session: {type(exc).__name__}: {exc}")
            return None

        return self._pool.submit(run)

    def _opened(self) -> HistoryStore:
        if self._store is None:
            self._store = HistoryStore(self._path, keep_open=True, **self._limits)  # type: ignore[arg-type]
            if self._store.notice is not None:
                self._on_error(str(self._store.notice))
        return self._store

    async def read(self, fn: Callable[[HistoryStore], T]) -> T:
        """Run `fn` on the store's thread, after every write queued before it (the
        sidebar sees what was recorded); its errors are raised here, and do not turn
        recording off."""
        return await asyncio.wrap_future(self._pool.submit(lambda: fn(self._opened())))

    def begin(self, entry: NewEntry) -> Recording:
        return Recording(self, self._call(lambda s: s.start(entry)))

    def close(self) -> None:
        if self._store is not None:
            self._pool.submit(self._store.close)  # on the thread that opened it
        self._pool.shutdown(wait=True)


class Recording:
    """One generation's entry: text is buffered and saved in batches."""

    def __init__(self, recorder: HistoryRecorder, started: concurrent.futures.Future[Any]):
        self._recorder = recorder
        self._id_future = started
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._last_save = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None  # the save of text not yet saved
        self._after_send: list[Callable[[], None]] = []  # saves kept off the send's path
        self._after_timer: asyncio.TimerHandle | None = None

    def after_send(self, save: Callable[[], None]) -> None:
        """`save()` once the request is out: AFTER_SEND_S from now (after a burst's first
        reads, too), or at the end, whichever comes first; in order."""
        self._after_send.append(save)
        if self._after_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._sent()
                return
            self._after_timer = loop.call_later(AFTER_SEND_S, self._sent)

    def _sent(self) -> None:
        if self._after_timer is not None:
            self._after_timer.cancel()
            self._after_timer = None
        saves, self._after_send = self._after_send, []
        for save in saves:
            save()

    def _with_id(self, fn: Callable[[HistoryStore, int], Any]) -> None:
        def call(store: HistoryStore) -> Any:
            entry_id = self._id_future.result()
            return None if entry_id is None else fn(store, entry_id)

        self._recorder._call(call)

    def request(self, request: str) -> None:
        self._with_id(lambda s, i: s.set_request(i, request))

    def prompt(self, prompt: str) -> None:
        self._with_id(lambda s, i: s.set_prompt(i, prompt))

    def text(self, text: str) -> None:
        self._text.append(text)
        self._maybe_save()

    def reasoning(self, text: str) -> None:
        self._reasoning.append(text)
        self._maybe_save()

    def _maybe_save(self) -> None:
        since = time.monotonic() - self._last_save
        if since >= SAVE_EVERY_S:
            self._save()
        elif self._timer is None:
            # no more text may come (a pause, then a crash): save this much anyway
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timer = loop.call_later(SAVE_EVERY_S - since, self._save)

    def _save(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last_save = time.monotonic()
        if not self._text and not self._reasoning:
            return
        text, reasoning = "".join(self._text), "".join(self._reasoning)
        self._text, self._reasoning = [], []
        self._with_id(lambda s, i: s.append(i, text, reasoning))

    def finish(self, status: str, error: str | None, outcome: Mapping[str, Any]) -> None:
        self._sent()
        self._save()
        first = outcome.get("first_token_ms")
        duration = outcome.get("duration_ms")
        self._with_id(
            lambda s, i: s.finish(
                i,
                status,
                error=error,
                usage=outcome.get("usage"),
                first_token_ms=None if first is None else round(first),
                duration_ms=None if duration is None else round(duration),
                cost_usd=outcome.get("cost_usd"),
                price=json.dumps(outcome["price"]) if outcome.get("price") else "",
            )
        )

    def entry_known(self) -> bool:
        """The entry's creation ended (written, or failed): nothing to wait for."""
        return self._id_future.done()

    async def entry_id(self) -> int | None:
        return await asyncio.wrap_future(self._id_future)

    async def created(self, timeout: float = ENTRY_WAIT_S) -> None:
        """Wait until the entry is written (or failed), at most `timeout`: then the
        request may go out, and a crash from its first token on leaves the entry."""
        # asyncio.wait, not wait_for: a timeout must not cancel the store's call
        await asyncio.wait([asyncio.wrap_future(self._id_future)], timeout=timeout)


class RecorderSlot:
    """A host's one recorder for the history settings in force: made on first use, and
    made anew when setup() changes where history lives or what it keeps (one a running
    fill holds finishes its entry). `on_error` gets its messages, from its worker
    thread."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self.current: HistoryRecorder | None = None
        self._made_for: tuple[Path, int | None, float | None] | None = None

    def get(
        self, path: Path, max_entries: int | None, max_age_days: float | None
    ) -> HistoryRecorder:
        if self._made_for != (path, max_entries, max_age_days):
            self.current, self._made_for = None, (path, max_entries, max_age_days)
        if self.current is None:
            self.current = HistoryRecorder(
                path, self._on_error, max_entries=max_entries, max_age_days=max_age_days
            )
        return self.current
