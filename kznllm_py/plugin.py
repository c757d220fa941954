"""The pynvim remote plugin: dispatches calls from the Lua shim to the core. Handlers are
`sync=False` (notifications) except the request for preset names, which does no I/O.
Each fill runs as an asyncio task in the host's loop; cancel cancels the task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pynvim

from kznllm_py import conversation, history, logfile, models, payload, prompts
from kznllm_py.client import new_client
from kznllm_py.coalesce import Coalescer
from kznllm_py.editor import BufferSink
from kznllm_py.errors import KznError
from kznllm_py.generation import Generation
from kznllm_py.history_ops import HistoryOps, retention
from kznllm_py.presets import merge_presets, pick
from kznllm_py.providers.base import HttpRequest, Prompt
from kznllm_py.providers.jsonfast import dumps
from kznllm_py.recorder import HistoryRecorder, Recording
from kznllm_py.secrets import redact

log = logfile.logger

DEMO_NOTICE = (
    "kznllm: no API key found, so this answer came from the offline demo model (not a "
    "real LLM). Set OPENAI_API_KEY or ANTHROPIC_API_KEY (or add a preset in setup()) "
    "and pick it with :KznPreset."
)


@pynvim.plugin
class KznllmPlugin:
    def __init__(self, nvim: pynvim.Nvim) -> None:
        self.nvim = nvim
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        self._recorder: HistoryRecorder | None = None
        self._history_ops: HistoryOps | None = None
        # entries this host is streaming (entry id -> job id): the sidebar shows them live
        self.live: dict[int, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._begun: set[int] = set()  # fills whose task started running

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client()
        return self._client

    # -- entry points -------------------------------------------------------------------

    @pynvim.function("KznllmHostCall", sync=False)
    def host_call(self, args: list[Any]) -> None:
        op, data = [*args, {}][:2] if args else ("", {})
        try:
            if isinstance(data, dict) and "log_level" in data:
                logfile.configure(data.get("log_dir"), data.get("log_level"))
            if op == "fill":
                self._start_fill(data)
            elif op == "cancel":
                self._cancel(int(data.get("id", 0)))
            elif op == "warmup":
                self._warmup()
            elif op.startswith("history_"):
                self._spawn(self._history_call(op, data))
            elif op == "models":
                self._spawn(self._models(data))
        except Exception as exc:  # never a traceback in the user's face
            log.exception("%s failed", op)
            self._report(f"kznllm: {redact(str(exc))}")

    def _spawn(self, coro: Any) -> None:
        task = self.nvim.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @pynvim.function("KznllmHostRequest", sync=True)
    def host_request(self, args: list[Any]) -> Any:
        op, data = [*args, {}][:2] if args else ("", {})
        if op == "presets":
            try:
                presets = merge_presets(data.get("presets") or [])
                current = pick(presets, data.get("current") or None)
            except KznError as exc:
                return {"error": str(exc), "presets": []}
            return {
                "current": current.id,
                "presets": [
                    {
                        "id": p.id,
                        "description": p.description,
                        "model": p.model,
                        "provider": p.provider,
                    }
                    for p in presets.values()
                ],
            }
        return {"error": f"unknown request {op!r}"}

    # -- work ---------------------------------------------------------------------------

    def _warmup(self) -> None:
        log.info("host up: pid %d, Python %s", os.getpid(), sys.version.split()[0])
        _ = self.client
        prompts.render(prompts.FillContext(mode="yap", query=""))  # compile the templates

    def _history(self, p: dict[str, Any]) -> HistoryRecorder | None:
        """The host's recorder (made on first use), or None when history is off."""
        enabled, max_entries, max_age_days = retention(p.get("history"))
        data_dir = p.get("data_dir")
        if not enabled or not isinstance(data_dir, str) or not data_dir:
            return None
        if self._recorder is None:
            # the recorder reports from its worker thread: hop onto the host's loop, the
            # only thread that may talk to Neovim
            self._recorder = HistoryRecorder(
                history.default_path(data_dir),
                lambda m: self.nvim.loop.call_soon_threadsafe(self._report, f"kznllm: {m}"),
                max_entries=max_entries,
                max_age_days=max_age_days,
            )
        return self._recorder

    def _ops(self, p: dict[str, Any]) -> HistoryOps:
        recorder = self._history(p)
        if recorder is None:
            raise KznError("history is off (setup({ history = true }) turns it on)")
        if self._history_ops is None or self._history_ops.recorder is not recorder:
            self._history_ops = HistoryOps(recorder, self.live)
        return self._history_ops

    async def _history_call(self, op: str, p: dict[str, Any]) -> None:
        try:
            ops = self._ops(p)
            if op == "history_view":
                self._lua("sidebar", "render", await ops.view(p))
            elif op == "history_entry":
                self._lua("sidebar", "entry", await ops.entry(p))
            elif op == "history_delete":
                await ops.delete(int(p.get("id") or 0))
                self._lua("sidebar", "changed")
            elif op == "history_clear":
                n = await ops.clear()
                self._lua("sidebar", "cleared", n)
            else:
                raise KznError(f"unknown history call {op!r}")
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("%s failed", op)
            self._report(f"kznllm: internal error: {redact(f'{type(exc).__name__}: {exc}')}")

    async def _models(self, p: dict[str, Any]) -> None:
        """The models of a preset's server, for the model picker (`:KznPreset!`)."""
        result: dict[str, Any] = {"request": p.get("request")}
        try:
            preset = pick(merge_presets(p.get("presets") or []), p.get("preset") or None)
            result["models"] = await models.preset_models(self.client, preset)
        except KznError as exc:
            result["error"] = redact(str(exc))
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("models failed")
            result["error"] = redact(f"internal error: {type(exc).__name__}: {exc}")
        self._lua("models", "listed", result)

    def _lua(self, module: str, fn: str, *args: Any) -> None:
        self.nvim.exec_lua(f"return require('kznllm.{module}').{fn}(...)", *args, async_=True)

    def _recording(
        self, p: dict[str, Any], job: payload.FillJob, *, mode: str, parent_id: int | None
    ) -> Recording | None:
        recorder = self._history(p)
        if recorder is None:
            return None
        ctx = job.ctx
        return recorder.begin(
            history.NewEntry(
                mode=mode,
                query=ctx.query,
                preset_id=job.preset.id,
                provider=job.preset.provider,
                model=job.preset.model,
                path=ctx.path,
                filetype=ctx.filetype,
                selection=ctx.selection,
                parent_id=parent_id,
            )
        )

    async def _track(self, job_id: int, bufnr: int, rec: Recording, ended: asyncio.Event) -> None:
        """The editor learns the entry id (follow-ups in a conversation buffer continue
        from it); while the request runs, the sidebar shows the entry live."""
        entry_id = await rec.entry_id()
        if entry_id is None:
            return
        self._lua("job", "entry", job_id, entry_id, bufnr)
        if ended.is_set():
            return  # already over: the refresh at its end shows the outcome
        self.live[entry_id] = job_id
        try:
            self._lua("sidebar", "changed")
            await ended.wait()
        finally:
            self.live.pop(entry_id, None)
        self._lua("sidebar", "changed")

    async def _conversation(self, p: dict[str, Any], job: payload.FillJob) -> Turn:
        """A follow-up or a re-run of a history entry: what to send and record."""
        follow, again = int(p.get("followup") or 0), int(p.get("rerun") or 0)
        if not follow and not again:
            return Turn(job, None, None, "debug" if job.debug else job.ctx.mode, "")
        entry = await self._ops(p).get(follow or again)
        if entry is None:
            raise KznError(f"history entry {follow or again} is gone")
        answer = f"## Answer ({job.preset.id})\n\n"
        if follow:
            prompt = conversation.follow_up(entry, job.ctx.query)
            ctx = replace(job.ctx, mode="yap")
            head = f"\n\n## You\n\n{job.ctx.query}\n\n{answer}"
            return Turn(replace(job, ctx=ctx), prompt, entry.id, "chat", head)
        mode = entry.mode if entry.mode in ("replace", "yap") else "yap"
        ctx = replace(
            job.ctx,
            mode=mode,
            query=entry.query,
            selection=entry.selection,
            path=entry.path,
            filetype=entry.filetype,
        )
        head = f"# kznllm re-run of #{entry.id} with {job.preset.id}\n\n## Query\n\n"
        head += f"{entry.query}\n\n{answer}"
        return Turn(replace(job, ctx=ctx), conversation.rerun(entry), None, mode, head)

    def _report(self, message: str) -> None:
        log.error("%s", message)
        self.nvim.exec_lua("vim.notify(..., vim.log.levels.ERROR)", message, async_=True)

    def _start_fill(self, p: dict[str, Any]) -> None:
        job_id = int(p["id"])
        debug = bool(p.get("debug"))
        sink = BufferSink(self.nvim, job_id, linewise=bool(p.get("linewise")) and not debug)
        task = self.nvim.loop.create_task(self._fill(job_id, p, sink))
        self.tasks[job_id] = task

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.pop(job_id, None)
            if t.cancelled() and job_id not in self._begun:
                # cancelled before it ran (the cancel came in the same read as the fill):
                # _fill never got to say so
                sink.finish("cancelled", None, {})
            self._begun.discard(job_id)

        task.add_done_callback(done)

    def _cancel(self, job_id: int) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()
        else:
            # nothing runs here (already over, or never started): end it in the editor
            BufferSink(self.nvim, job_id).finish("cancelled", None, {})

    async def _fill(self, job_id: int, p: dict[str, Any], sink: BufferSink) -> None:
        self._begun.add(job_id)
        coalescer = Coalescer(sink.write)
        info: dict[str, Any] = {}
        ended = asyncio.Event()
        try:
            try:
                job = payload.parse(p)
                job = await asyncio.to_thread(payload.with_project_files, job)
                turn = await self._conversation(p, job)
            except KznError as exc:
                sink.finish("error", redact(str(exc)), info)
                return
            job = turn.job
            # the progress message may show the model the preset resolved to
            self._lua("job", "meta", job_id, {"preset": job.preset.id, "model": job.preset.model})
            log.info(
                "fill %d: %s, preset %s (%s %s)",
                job_id,
                turn.mode,
                job.preset.id,
                job.preset.provider,
                job.preset.model,
            )
            generation = Generation(
                self.client,
                job.preset,
                job.ctx,
                job.timeouts,
                search_dirs=job.search_dirs,
                prompt=turn.prompt,
            )
            out = Outputs(coalescer.push)
            if turn.head:
                coalescer.push(turn.head)
            if job.debug:
                view = DebugView(coalescer.push, lambda r: payload.debug_text(job, r))
                out = Outputs(view.answer, view.reasoning, view.request)
            rec = self._recording(p, job, mode=turn.mode, parent_id=turn.parent_id)
            if rec is not None:
                out = out.also(rec.text, rec.reasoning, lambda r: rec.request(request_json(r)))
                generation.on_prompt = lambda pr: rec.prompt(conversation.prompt_to_json(pr))
                self._spawn(self._track(job_id, int(p.get("bufnr") or 0), rec, ended))
            generation.on_request = _both(out.request, lambda r: _log_request(job_id, r))
            generation.on_reasoning = out.reasoning
            generation.retry = job.retry
            generation.max_response_bytes = job.max_response_bytes
            generation.on_retry = lambda n, wait, why: _retry_note(sink, job_id, n, wait, why)
            outcome = await generation.run(out.text)
            coalescer.close()
            info = outcome.to_dict()
            _log_outcome(job_id, info)
            if rec is not None:
                rec.finish(outcome.status, outcome.error, info)
            info["preset"] = job.preset.id
            info["writes"] = coalescer.writes
            if job.skipped:
                info["skipped_files"] = len(job.skipped)
            if job.used_default and job.preset.demo:
                info["notice"] = DEMO_NOTICE
            sink.finish(outcome.status, outcome.error, info)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                coalescer.close()
                sink.finish("cancelled", None, info)
            raise
        finally:
            ended.set()


def _log_request(job_id: int, request: HttpRequest) -> None:
    log.info("fill %d: %s %s", job_id, request.method, request.url)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("fill %d: request %s", job_id, request_json(request))


def _retry_note(sink: BufferSink, job_id: int, attempt: int, wait: float, why: str) -> None:
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


def request_json(request: HttpRequest) -> str:
    """The request as history keeps it: exactly what went out, key headers redacted."""
    shown = {
        "method": request.method,
        "url": request.url,
        "headers": request.redacted_headers(),
        "body": request.body,
    }
    return dumps(shown).decode()


@dataclass(frozen=True)
class Turn:
    """What a fill sends and records: the job, the prompt when it is not rendered from
    the templates (a follow-up or re-run), the entry it follows, the recorded mode, and
    the text written before the answer."""

    job: payload.FillJob
    prompt: Prompt | None
    parent_id: int | None
    mode: str
    head: str


@dataclass(frozen=True)
class Outputs:
    """Where a generation's answer, reasoning and request go; `also` adds a listener."""

    text: Callable[[str], None]
    reasoning: Callable[[str], None] | None = None
    request: Callable[[HttpRequest], None] | None = None

    def also(
        self,
        text: Callable[[str], None],
        reasoning: Callable[[str], None],
        request: Callable[[HttpRequest], None],
    ) -> Outputs:
        return Outputs(
            _both(self.text, text), _both(self.reasoning, reasoning), _both(self.request, request)
        )


def _both(
    first: Callable[[Any], None] | None, second: Callable[[Any], None]
) -> Callable[[Any], None]:
    if first is None:
        return second

    def call(value: Any) -> None:
        first(value)
        second(value)

    return call


class DebugView:
    """What the debug scratch buffer gets: the request, then the reasoning (if the
    model sends any) under its own heading, then the answer."""

    def __init__(self, write: Callable[[str], None], render: Callable[[HttpRequest], str]):
        self._write = write
        self._render = render
        self._in_reasoning = False

    def request(self, request: HttpRequest) -> None:
        self._write(self._render(request))

    def reasoning(self, text: str) -> None:
        if not self._in_reasoning:
            self._in_reasoning = True
            self._write("### Reasoning\n\n")
        self._write(text)

    def answer(self, text: str) -> None:
        if self._in_reasoning:
            self._in_reasoning = False
            self._write("\n\n### Answer\n\n")
        self._write(text)
