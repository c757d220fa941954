"""The pynvim remote plugin: dispatches calls from the Lua shim to the core. Handlers are
`sync=False` (notifications) except the request for preset names, which does no I/O.
Each fill runs as an asyncio task in the host's loop; cancel cancels the task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pynvim

from kznllm_py import history, payload, prompts
from kznllm_py.client import new_client
from kznllm_py.coalesce import Coalescer
from kznllm_py.editor import BufferSink
from kznllm_py.errors import KznError
from kznllm_py.generation import Generation
from kznllm_py.presets import merge_presets, pick
from kznllm_py.providers.base import HttpRequest
from kznllm_py.providers.jsonfast import dumps
from kznllm_py.recorder import HistoryRecorder, Recording
from kznllm_py.secrets import redact

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
            if op == "fill":
                self._start_fill(data)
            elif op == "cancel":
                self._cancel(int(data.get("id", 0)))
            elif op == "warmup":
                self._warmup()
        except Exception as exc:  # never a traceback in the user's face
            self._report(f"kznllm: {redact(str(exc))}")

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
                    {"id": p.id, "description": p.description, "model": p.model}
                    for p in presets.values()
                ],
            }
        return {"error": f"unknown request {op!r}"}

    # -- work ---------------------------------------------------------------------------

    def _warmup(self) -> None:
        _ = self.client
        prompts.render(prompts.FillContext(mode="yap", query=""))  # compile the templates

    def _recording(self, p: dict[str, Any], job: payload.FillJob) -> Recording | None:
        data_dir = p.get("data_dir")
        if not p.get("history", True) or not isinstance(data_dir, str) or not data_dir:
            return None
        if self._recorder is None:
            # the recorder reports from its worker thread: hop onto the host's loop, the
            # only thread that may talk to Neovim
            self._recorder = HistoryRecorder(
                history.default_path(data_dir),
                lambda m: self.nvim.loop.call_soon_threadsafe(self._report, f"kznllm: {m}"),
            )
        ctx = job.ctx
        return self._recorder.begin(
            history.NewEntry(
                mode="debug" if job.debug else ctx.mode,
                query=ctx.query,
                preset_id=job.preset.id,
                provider=job.preset.provider,
                model=job.preset.model,
                path=ctx.path,
                filetype=ctx.filetype,
                selection=ctx.selection,
            )
        )

    def _report(self, message: str) -> None:
        self.nvim.exec_lua("vim.notify(..., vim.log.levels.ERROR)", message, async_=True)

    def _start_fill(self, p: dict[str, Any]) -> None:
        job_id = int(p["id"])
        debug = bool(p.get("debug"))
        sink = BufferSink(self.nvim, job_id, linewise=bool(p.get("linewise")) and not debug)
        task = self.nvim.loop.create_task(self._fill(job_id, p, sink))
        self.tasks[job_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(job_id, None))

    def _cancel(self, job_id: int) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()
        else:
            # nothing runs here (already over, or never started): end it in the editor
            BufferSink(self.nvim, job_id).finish("cancelled", None, {})

    async def _fill(self, job_id: int, p: dict[str, Any], sink: BufferSink) -> None:
        coalescer = Coalescer(sink.write)
        info: dict[str, Any] = {}
        try:
            try:
                job = payload.parse(p)
                job = await asyncio.to_thread(payload.with_project_files, job)
            except KznError as exc:
                sink.finish("error", redact(str(exc)), info)
                return
            generation = Generation(
                self.client, job.preset, job.ctx, job.timeouts, search_dirs=job.search_dirs
            )
            out = Outputs(coalescer.push)
            if job.debug:
                view = DebugView(coalescer.push, lambda r: payload.debug_text(job, r))
                out = Outputs(view.answer, view.reasoning, view.request)
            rec = self._recording(p, job)
            if rec is not None:
                out = out.also(rec.text, rec.reasoning, lambda r: rec.request(request_json(r)))
            generation.on_request, generation.on_reasoning = out.request, out.reasoning
            generation.retry = job.retry
            generation.on_retry = lambda _n, wait, why: sink.note(f"retry in {wait:g} s: {why}")
            outcome = await generation.run(out.text)
            coalescer.close()
            info = outcome.to_dict()
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
