"""A fill from its typed request to its end: the job under the settings (project files
read off the loop), the turn (a follow-up or re-run reads its history entry), the
generation into its consumers (the buffer, or the debug view; history; the log; the
retry note), a chatty replace cut down to its code, and the typed end record.

No Neovim here: the editor is a `Sink` (kznllm_py/nvim/editor.py's BufferSink), and
what the host keeps across fills (the HTTP client, history, the write paces, the
warnings said once, the sidebar's live rows) is a `Host` (kznllm_py/nvim/plugin.py,
which only dispatches)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from kznllm_py import logfile
from kznllm_py.errors import KznError, printable
from kznllm_py.fill import job as payload
from kznllm_py.fill import shaping
from kznllm_py.fill import turn as fill
from kznllm_py.fill.debug_view import DebugView
from kznllm_py.fill.request import FillRequest
from kznllm_py.history.recorder import (
    HistoryRecorder,
    Recording,
    before_delivery,
    record,
    request_json,
)
from kznllm_py.prompt import sandbox
from kznllm_py.providers.base import HttpRequest
from kznllm_py.secrets import redact, redact_url
from kznllm_py.stream import fences
from kznllm_py.stream.coalesce import Coalescer, Pace
from kznllm_py.stream.events import Done, Outcome, RequestReady, Retry, Text
from kznllm_py.stream.generation import Generation

if TYPE_CHECKING:
    import httpx

    from kznllm_py.history.records import Entry
    from kznllm_py.settings import Settings

log = logfile.logger

DEMO_NOTICE = (
    "kznllm: no API key found, so this answer came from the offline demo model (not a "
    "real LLM). Set OPENAI_API_KEY or ANTHROPIC_API_KEY (or add a preset in setup()) "
    "and pick it with :KznPreset."
)


class Sink(Protocol):
    """Where a fill's text goes (the editor's BufferSink)."""

    linewise: bool
    scratch: bool

    def write(self, text: str) -> None: ...
    def note(self, text: str) -> None: ...
    def flush(self) -> None: ...
    def rewrite(self, text: str) -> None: ...
    def finish(self, status: str, error: str | None, info: dict[str, Any]) -> None: ...


class Host(Protocol):
    """What a fill calls back in the host that runs it."""

    paced: dict[int, tuple[Coalescer, Pace]]  # the write pace of each running fill

    def warn_ignored(self, lines: tuple[str, ...]) -> None: ...
    async def entry(self, entry_id: int) -> Entry | None: ...
    def track(self, job_id: int, bufnr: int, rec: Recording, ended: asyncio.Event) -> None: ...
    # None when `req` stands as it is, else `req` with the git section its check settled
    async def checked(self, req: FillRequest) -> FillRequest | None: ...


async def run(
    req: FillRequest,
    sink: Sink,
    s: Settings,
    host: Host,
    *,
    client: httpx.AsyncClient,
    recorder: HistoryRecorder | None,
) -> None:
    """Run the fill `req` under the settings `s` into `sink`, to its end line (a cancel
    of the task ends it as cancelled, then propagates), on the host's HTTP `client`,
    recorded by `recorder` (None: history is off)."""
    job_id = req.id
    pace = Pace()
    coalescer = Coalescer(sink.write, interval=pace.interval)
    host.paced[job_id] = (coalescer, pace)
    info: dict[str, Any] = {}
    ended = asyncio.Event()
    answer: Answer | None = None
    try:
        try:
            if req.send is not None:  # :KznSend: the preset the view names
                from kznllm_py.prompt.debug_request import preset_of

                req = replace(req, preset=preset_of(req.send, s.presets))
            job = await _job(req, s, host)
            # a git diff sent before the host's answer: checked once the job is built
            # (the check overlaps it), and built again in the rare case it did not stand
            settled = await host.checked(req)
            if settled is not None:
                req = settled
                job = await _job(req, s, host)
            turn = await _turn(req, job, host)
        except KznError as exc:
            sink.finish("error", printable(redact(str(exc))), info)
            return
        job = turn.job
        # the editor places it the same way: the settings' presets told it (configure)
        where = fill.placement(req.placement, job.preset.fim)
        if where is not None and not job.debug and turn.prompt is None:
            # an answer on a line of its own keeps that line's own line break
            sink.linewise = where != "cursor"
            job = replace(job, ctx=fill.at_spot(job.ctx, where, req.spot))
        # shaped for the buffer it lands in (history records the answer as it came)
        on = s.shape if job.preset.shape is None else job.preset.shape
        how = shaping.for_fill(req, where, enabled=on)
        job = replace(job, ctx=shaping.asked(job.ctx, how))
        log.info(
            "fill %d: %s, preset %s (%s %s)",
            job_id,
            turn.mode,
            job.preset.id,
            job.preset.provider,
            job.preset.model,
        )
        generation = Generation(
            client,
            job.preset,
            job.ctx,
            job.timeouts,
            search_dirs=job.search_dirs,
            retry=job.retry,
            prompt=turn.prompt,
            edited_view=req.send,
            max_response_bytes=job.max_response_bytes,
        )
        answer = _answer_taps(job, turn)
        sink.scratch = job.debug or bool(turn.head)
        if turn.head:
            coalescer.push(turn.head)
        view = None
        if job.debug:
            fence = job.ctx.filetype if job.ctx.mode == "replace" else None
            view = DebugView(coalescer.push, partial(payload.debug_text, job), fence=fence)
        span = turn.span or fill.span_json(req, job.ctx)
        rec = None
        if recorder is not None:
            entry = fill.new_entry(job, mode=turn.mode, parent_id=turn.parent_id)
            rec = recorder.begin(replace(entry, span=span))
        if rec is not None:
            host.track(job_id, req.bufnr, rec, ended)
        # a linewise replace goes between the selection's blank edges, without its own
        lines = req.linewise and job.ctx.mode == "replace"
        pipe = shaping.Pipe(coalescer.push, how, lines=lines)

        def flush() -> None:  # all the text came: to the editor at once
            pipe.close()
            coalescer.close()

        write = answer.taps(pipe.push)
        outcome = await generate(job_id, generation, sink, write, view, rec, flush=flush)
        pipe.close()
        coalescer.close()
        answer.end(sink, final=pipe.final)
        end = fill.FillEnd(
            outcome,
            preset=job.preset.id,
            writes=coalescer.writes,
            pace_ms=coalescer.interval * 1000,
            fold=view.fold() if view is not None else None,  # the editor folds there
            skipped_files=len(job.skipped),
            notice=DEMO_NOTICE if job.used_default and job.preset.demo else None,
        )
        info = end.to_dict()
        _log_outcome(job_id, info)
        sink.finish(outcome.status, outcome.error, info)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            coalescer.close()
            if answer is not None:
                answer.end(sink, complete=False)
            sink.finish("cancelled", None, info)
        raise
    finally:
        ended.set()
        host.paced.pop(job_id, None)
        ms = coalescer.interval * 1000
        log.debug("fill %d: %d writes, paced at %.0f ms", job_id, coalescer.writes, ms)


async def _job(req: FillRequest, s: Settings, host: Host) -> payload.FillJob:
    """The job of `req` under `s`, its project files read, its context fitted."""
    job = payload.job_of(req, s)
    host.warn_ignored(job.ignored_kzn)
    # file I/O, git and template renders: off the loop, when there is anything
    # to read (else no hop to a thread and back)
    if payload.reads_files(job):
        job = await sandbox.run_off_loop(payload.with_files, job)
        host.warn_ignored(job.notices)  # project templates, rules not used: why
    return payload.fitted(job)  # the context sections in the budget


async def _turn(req: FillRequest, job: payload.FillJob, host: Host) -> fill.Turn:
    """What to send and record: a follow-up or a re-run reads its history entry."""
    asked = 0 if req.send is not None else (req.followup or req.rerun)
    if not asked:
        return fill.turn(req, job)
    entry = await host.entry(asked)
    if entry is None:
        raise KznError(f"history entry {asked} is gone")
    return fill.turn(req, job, entry)


def _answer_taps(job: payload.FillJob, turn: fill.Turn) -> Answer:
    """Follow what a fill writes: a replace (not a debug view or a conversation) may
    be chatty. A review's diff is the editor's own (vim.diff over the region, in
    lua/kznllm/review.lua): the host's loop never diffs."""
    replace = job.ctx.mode == "replace" and not job.debug and turn.prompt is None
    return Answer(replace)


class Answer:
    """A replace-mode answer as the model sent it (its reasoning and a fence around it
    already out), before it is shaped for the buffer: at its end a chatty answer (prose
    around one code block) is cut down to the code, which is then placed as its stream
    would have been (the shaper's `final`), in the same undo step. Cut from the shaped
    text, a mid-line replace's code kept the indentation the shaper gave the lines
    after the first."""

    def __init__(self, replace: bool) -> None:
        self._parts: list[str] = []
        self._replace = replace

    def taps(self, write: Callable[[str], None]) -> Callable[[str], None]:
        """`write`, with the text seen first (only a replace's is needed again)."""
        if not self._replace:
            return write

        def tapped(text: str) -> None:
            self._parts.append(text)
            write(text)

        return tapped

    def end(self, sink: Sink, *, complete: bool = True, final: Callable[[str], str] = str) -> None:
        """The answer is over (`complete`: it ended on its own, not cancelled); `final`
        shapes the code cut out of a chatty one (fill/shape.py)."""
        sink.flush()
        code = fences.only_code("".join(self._parts)) if self._replace and complete else None
        if code is not None:
            sink.rewrite(final(code))


async def generate(
    job_id: int,
    generation: Generation,
    sink: Sink,
    write: Callable[[str], None],
    view: DebugView | None,
    rec: Recording | None,
    *,
    flush: Callable[[], None] | None = None,
) -> Outcome:
    """Run a fill's generation into its consumers: the buffer (or the debug view, which
    then gets the text), history, the log, the progress message. What a consumer must
    have done before the request goes out (the debug view's render, history's entry)
    holds the generation."""
    async with generation.events() as events:
        async for event in events:
            if rec is not None and (gate := before_delivery(rec, event)) is not None:
                await events.hold(gate)  # the first text waits for history's entry
            match event:
                case Text(text) if view is None:
                    write(text)
                case RequestReady(request):
                    log_request(job_id, request)
                case Retry(attempt, wait, why):
                    _retry_note(sink, job_id, attempt, wait, why)
                case Done() if flush is not None and view is None:
                    # all the text came: it goes to the editor now, before history's
                    # end of the entry (its thread would compete for the GIL and a core)
                    flush()
            if view is not None and (gate := view.take(event)) is not None:
                await events.hold(gate)
            if rec is not None:
                record(rec, event)
    return events.outcome()


def log_request(job_id: int, request: HttpRequest) -> None:
    log.info("fill %d: %s %s", job_id, request.method, redact_url(request.url))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("fill %d: request %s", job_id, request_json(request))


def _retry_note(sink: Sink, job_id: int, attempt: int, wait: float, why: str) -> None:
    log.warning("fill %d: try %d turned away, retry in %g s: %s", job_id, attempt, wait, why)
    sink.note(f"retry in {wait:g} s: {why}")


def _log_outcome(job_id: int, info: dict[str, Any]) -> None:
    level = logging.INFO if info.get("status") != "error" else logging.WARNING
    log.log(
        level,
        "fill %d: %s%s, %d chars, first token %s ms, %s ms",
        job_id,
        info.get("status"),
        f" ({info['error']})" if info.get("error") else "",
        info.get("chars", 0),
        info.get("first_token_ms", "-"),
        info.get("duration_ms"),
    )
