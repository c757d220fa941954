"""The pynvim remote plugin: dispatches calls from the Lua shim to the core. Every handler
is `sync=False` (a notification): what the editor must wait for (preset names) comes
back as a notification it waits on with a deadline, so a wedged host never freezes it.
Each fill runs as an asyncio task in the host's loop; cancel cancels the task."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pynvim

from kznllm_py import apply, fences, history, logfile, secrets, settings
from kznllm_py.coalesce import Coalescer, Pace
from kznllm_py.editor import BufferSink
from kznllm_py.errors import KznError, printable
from kznllm_py.events import Outcome, RequestReady, Retry, Text
from kznllm_py.history.ops import HistoryOps
from kznllm_py.history.recorder import (
    HistoryRecorder,
    Recording,
    before_delivery,
    new_entry,
    record,
    request_json,
)
from kznllm_py.presets import pick
from kznllm_py.providers.base import HttpRequest, Prompt
from kznllm_py.secrets import redact, redact_url

if TYPE_CHECKING:
    import httpx

    from kznllm_py import conversation, models, payload, prompts, sandbox
    from kznllm_py.debug_view import DebugView
    from kznllm_py.generation import Generation


class _OnFirstUse:
    """A module imported on first use (an ordinary import, so under the import lock:
    the loop and the sandbox's threads may both be first): the host starts on the first
    call (often the history sidebar), and HTTP (httpx, aiohttp), Jinja2 and the
    generation are ~200 ms of imports it needs only for a fill."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


FILL_MODULES = (
    "kznllm_py.client",
    "kznllm_py.conversation",
    "kznllm_py.debug_view",
    "kznllm_py.generation",
    "kznllm_py.models",
    "kznllm_py.payload",
    "kznllm_py.prompts",
    "kznllm_py.sandbox",
)


def load_fill_modules() -> None:
    """Import what a fill needs, on the loop's thread, before any worker thread of a
    fill (templates, project files) can be the first to import one: two threads
    importing the same modules at once can see them half made."""
    for name in FILL_MODULES:
        importlib.import_module(name)


if not TYPE_CHECKING:
    conversation = _OnFirstUse("kznllm_py.conversation")
    models = _OnFirstUse("kznllm_py.models")
    payload = _OnFirstUse("kznllm_py.payload")
    prompts = _OnFirstUse("kznllm_py.prompts")
    sandbox = _OnFirstUse("kznllm_py.sandbox")

log = logfile.logger

DEMO_NOTICE = (
    "kznllm: no API key found, so this answer came from the offline demo model (not a "
    "real LLM). Set OPENAI_API_KEY or ANTHROPIC_API_KEY (or add a preset in setup()) "
    "and pick it with :KznPreset."
)


_PLUGINS: list[KznllmPlugin] = []  # the instances pynvim made (one per host)


def shutdown(timeout: float = 1.0) -> None:
    """The host's loop has ended (Neovim quit, or closed the channel; the host's entry
    command calls this): what each plugin instance still runs ends as a cancel ends it,
    within `timeout`, so history records a partial answer as cancelled, and history's
    queued writes are flushed before the process exits. Neovim's SIGTERM at its exit
    (it follows with SIGKILL 2 s later) would cut that short: it is ignored meanwhile."""
    with contextlib.suppress(ValueError, OSError):  # not the main thread: not ours to set
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for plugin in _PLUGINS:
        plugin.detach(timeout)


@pynvim.plugin
class KznllmPlugin:
    def __init__(self, nvim: pynvim.Nvim) -> None:
        self.nvim = nvim
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        self._recorder: HistoryRecorder | None = None
        self._recorder_for: tuple[Any, ...] = ()  # the path and limits it was made with
        self._history_ops: HistoryOps | None = None
        # entries this host is streaming (entry id -> job id): the sidebar shows them live
        self.live: dict[int, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._begun: set[int] = set()  # fills whose task started running
        # the write pace of each running fill, set by what its writes cost the editor
        self._paced: dict[int, tuple[Coalescer, Pace]] = {}
        self._warned: set[str] = set()  # skipped .kzn folders already reported
        _PLUGINS.append(self)
        # setup()'s options, validated once per `configure` (the editor's first call on
        # a host's channel, and again at each setup()); a fill keeps the one it began with
        self.settings = settings.Settings()

    def detach(self, timeout: float) -> None:
        """See `shutdown`. Nothing more goes to the editor: it is gone."""
        session = getattr(self.nvim, "_session", None)
        if session is not None:
            setattr(session, "request", lambda *_args, **_kw: None)  # noqa: B010
        loop = self.nvim.loop
        pending = [t for t in (*self.tasks.values(), *self._background) if not t.done()]
        for task in pending:
            task.cancel()
        if pending and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
        if self._recorder is not None:
            self._recorder.close()

    def http(self) -> httpx.AsyncClient:
        """The host's HTTP client, made on first use. A method, not a property: pynvim
        reads every attribute of the plugin when it registers its handlers (at the
        host's first call), and a property would build the client (httpx, aiohttp:
        ~120 ms of imports) before that call is answered."""
        if self._client is None:
            from kznllm_py.client import new_client

            self._client = new_client()
        return self._client

    # -- entry points -------------------------------------------------------------------

    @pynvim.function("KznllmHostCall", sync=False)
    def host_call(self, args: list[Any]) -> None:
        op, data = [*args, {}][:2] if args else ("", {})
        try:
            if op == "configure":
                self._configure(data)
            elif op == "fill":
                self._start_fill(data)
            elif op == "pace":
                self._pace(int(data.get("id", 0)), float(data.get("cpu", -1.0)))
            elif op == "cancel":
                self._cancel(int(data.get("id", 0)))
            elif op == "request":
                self._lua("host", "reply", data.get("seq"), self.answer(data["op"], data["data"]))
            elif op == "ping":  # the editor's watchdog: a host that answers is not wedged
                self._lua("host", "pong")
            elif op == "log":  # the editor's own debug lines (a job's transitions)
                log.debug("editor: %s", redact(str(data.get("text", ""))))
            elif op == "warmup":
                self._warmup()
            elif op.startswith("history_"):
                self._spawn(self._history_call(op, data))
            elif op in ("apply", "apply_locate"):
                self._spawn(self._apply(op, data))
            elif op == "models":
                self._spawn(self._models(data))
            elif op == "trust":
                self._spawn(self._trust(data))
        except Exception as exc:  # never a traceback in the user's face
            log.exception("%s failed", op)
            self._report(f"kznllm: {redact(str(exc))}")

    def _spawn(self, coro: Any) -> None:
        task = self.nvim.loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _configure(self, data: dict[str, Any]) -> None:
        """setup()'s options, validated once: what every later call runs with. Each
        problem goes back to the editor, which says it once (field and reason)."""
        new = settings.from_config(data)
        logfile.configure(new.log_dir or None, new.log_level)
        for line in new.problems:
            log.warning("%s", line)
        self.settings = new
        # what the editor shows and where it puts an answer, as this side resolves them:
        # the default preset, each preset's model (or the one picked) and 'auto' placement
        presets = {pid: new.preset(pid) for pid in new.presets}
        reply = {
            "generation": new.generation,
            "problems": new.shown_problems(),
            "presets": {
                pid: {
                    "model": p.model,
                    "auto": placement("auto", p.fim),
                    # the env var of a key this host lacks: the editor refuses at the
                    # keypress, before the query is typed (a cmd: key is never run there)
                    "missing_key": p.api_key if secrets.present(p.api_key) is False else None,
                }
                for pid, p in presets.items()
            },
            "default": new.preset(None).id,
        }
        self._lua("host", "configured", reply)

    def answer(self, op: str, data: dict[str, Any]) -> Any:
        """What a `request` call asks (no I/O); the editor waits for it with a deadline,
        so a wedged host cannot freeze it, as a sync=True handler would."""
        if op == "presets":
            s = self.settings
            presets = s.presets
            # the current one may be a preset left out as invalid: the list stays
            try:
                current = presets.get(data.get("current") or "") or pick(presets, None)
            except KznError as exc:
                return {"error": str(exc), "presets": []}
            return {
                "problems": s.shown_problems(),
                "current": current.id,
                "presets": [
                    {
                        "id": p.id,
                        "description": p.description,
                        "model": p.model,
                        "key": secrets.describe(p.api_key),
                        # None: needs none; a cmd: key counts as there (it runs when used)
                        "key_present": secrets.present(p.api_key),
                        "provider": p.provider,
                    }
                    for p in presets.values()
                ],
            }
        return {"error": f"unknown request {op!r}"}

    # -- work ---------------------------------------------------------------------------

    def _warmup(self) -> None:
        log.info("host up: pid %d, Python %s", os.getpid(), sys.version.split()[0])
        # the HTTP client and the templates for the first fill: a moment later, so that a
        # call that came with the start (the history sidebar) is answered first
        self.nvim.loop.call_later(0.2, self._warm)

    def _warm(self) -> None:
        load_fill_modules()
        self.http()
        prompts.render(prompts.FillContext(mode="yap", query=""))  # compile the templates
        # and the default preset's, as a fill renders them: its first render is then on
        # the loop too (generation._renders_inline), not a hop to a thread
        from kznllm_py.generation import render_prompt

        s = self.settings
        dirs = prompts.search_path(user_config=Path(s.config_dir) if s.config_dir else None)
        if dirs == (prompts.builtin_root(),):  # the user's own templates: on a thread
            with contextlib.suppress(KznError):
                render_prompt(s.preset(None), prompts.FillContext(mode="yap", query=""), dirs)

    def _history(self, s: settings.Settings) -> HistoryRecorder | None:
        """The host's recorder (made on first use), or None when history is off."""
        if not s.history_enabled:
            return None
        _, max_entries, max_age_days = s.history
        path = history.default_path(s.data_dir)
        if self._recorder_for != (path, max_entries, max_age_days):
            # first use, or setup() changed where history lives or what it keeps: a new
            # recorder (one a running fill holds finishes its entry)
            self._recorder, self._recorder_for = None, (path, max_entries, max_age_days)
        if self._recorder is None:
            # the recorder reports from its worker thread: hop onto the host's loop, the
            # only thread that may talk to Neovim
            self._recorder = HistoryRecorder(
                path,
                lambda m: self.nvim.loop.call_soon_threadsafe(self._report, f"kznllm: {m}"),
                max_entries=max_entries,
                max_age_days=max_age_days,
            )
        return self._recorder

    def _ops(self) -> HistoryOps:
        recorder = self._history(self.settings)
        if recorder is None:
            raise KznError("history is off (setup({ history = true }) turns it on)")
        if self._history_ops is None or self._history_ops.recorder is not recorder:
            self._history_ops = HistoryOps(recorder, self.live)
        return self._history_ops

    async def _history_call(self, op: str, p: dict[str, Any]) -> None:
        try:
            ops = self._ops()
            if op == "history_view":
                self._lua("sidebar", "render", await ops.view(p, self.settings))
            elif op == "history_entry":
                self._lua("sidebar", "entry", await ops.entry(p))
            elif op == "history_delete":
                await ops.delete(int(p.get("id") or 0))
                self._lua("sidebar", "changed")
            elif op == "history_undelete":
                restored = await ops.undelete()
                self._lua("sidebar", "undeleted", restored)
            elif op == "history_clear":
                n = await ops.clear()
                self._lua("sidebar", "cleared", n)
            elif op == "history_review":  # a review the user rejected as a whole
                if await ops.review_outcome(p):
                    self._lua("sidebar", "changed")
            else:
                raise KznError(f"unknown history call {op!r}")
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("%s failed", op)
            self._report(f"kznllm: internal error: {redact(f'{type(exc).__name__}: {exc}')}")

    async def _apply(self, op: str, p: dict[str, Any]) -> None:
        """:KznApply (kznllm_py/apply.py decides): 'apply' picks the answer of the entry's
        conversation and what it replaces; 'apply_locate' finds where that stands in the
        buffer lines the editor sent. The editor captures and writes."""
        try:
            if op == "apply":
                entry_id = int(p.get("id") or 0)
                chain = await self._ops().recorder.read(lambda s: s.chain(entry_id))
                plan = apply.plan(chain, force=bool(p.get("bang")), live=self.live)
                # a review of it diffs in the editor (vim.diff), never here on the loop
                self._lua("apply", "planned", plan.to_dict(), p.get("scratch"))
            else:
                lines = [x if isinstance(x, str) else "" for x in p.get("lines") or ()]
                found = await asyncio.to_thread(
                    apply.locate_answer,
                    lines,
                    str(p.get("selection") or ""),
                    str(p.get("text") or ""),
                    apply.Span.from_json(str(p.get("span") or "")),
                    name=str(p.get("name") or ""),
                )
                self._lua("apply", "located", p.get("token"), found.to_dict())
        except apply.ApplyError as exc:
            self._lua("apply", "refused", p.get("token"), printable(redact(str(exc))), exc.level)
        except KznError as exc:
            self._lua("apply", "refused", p.get("token"), printable(redact(str(exc))), "ERROR")
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("%s failed", op)
            self._report(f"kznllm: internal error: {redact(f'{type(exc).__name__}: {exc}')}")

    async def _models(self, p: dict[str, Any]) -> None:
        """The models of a preset's server, for the model picker (`:KznPreset!`)."""
        result: dict[str, Any] = {"request": p.get("request")}
        try:
            preset = self.settings.preset(p.get("preset") or None)
            result["models"] = await models.preset_models(self.http(), preset)
        except KznError as exc:
            result["error"] = redact(str(exc))
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("models failed")
            result["error"] = redact(f"internal error: {type(exc).__name__}: {exc}")
        self._lua("models", "listed", result)

    async def _trust(self, p: dict[str, Any]) -> None:
        """`:KznTrust`: the project's template files the user has not trusted yet, for
        the editor to ask about through vim.secure.read()."""
        load_fill_modules()  # on the loop's thread, before a worker may import them
        from kznllm_py import project_templates

        try:
            job = payload.parse(p, self.settings)
            self._warn_ignored(job.ignored_kzn)
            if job.kzn_dir is None:
                self._lua("trust", "review", [], [], None)
                return
            found = await sandbox.run_off_loop(project_templates.review, job.kzn_dir, job.trust_db)
            where = str(job.kzn_dir / "templates")
            self._lua("trust", "review", list(found.files), list(found.lines), where)
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")

    def _lua(self, module: str, fn: str, *args: Any) -> None:
        self.nvim.exec_lua(f"return require('kznllm.{module}').{fn}(...)", *args, async_=True)

    def _recording(
        self,
        s: settings.Settings,
        job: payload.FillJob,
        *,
        mode: str,
        parent_id: int | None,
        span: str = "",
    ) -> Recording | None:
        recorder = self._history(s)
        if recorder is None:
            return None
        return recorder.begin(replace(new_entry(job, mode=mode, parent_id=parent_id), span=span))

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
        if isinstance(p.get("send"), str):  # :KznSend: the debug view as edited
            head = f"\n\n## Answer ({job.preset.id}, to the edited request)\n\n"
            from kznllm_py import debug_request

            # history's entry says so, with the question as the view now asks it
            ctx = replace(job.ctx, mode="yap", query=debug_request.last_question(p["send"]))
            return Turn(replace(job, ctx=ctx), None, None, "send", head)
        if not follow and not again:
            return Turn(job, None, None, "debug" if job.debug else job.ctx.mode, "")
        entry = await self._ops().get(follow or again)
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
        turn = Turn(replace(job, ctx=ctx), conversation.rerun(entry), None, "rerun", head)
        return replace(turn, span=entry.span)  # where the selection it re-asks stood

    def _warn_ignored(self, lines: tuple[str, ...]) -> None:
        """A skipped `.kzn` folder is said once a session, not at every fill."""
        for line in lines:
            if line not in self._warned:
                self._warned.add(line)
                log.warning("%s", line)
                self._notify(f"kznllm: {printable(redact(line))}", "WARN")

    def _report(self, message: str) -> None:
        message = printable(redact(message))
        log.error("%s", message)
        self._notify(message, "ERROR")

    def _notify(self, message: str, level: str) -> None:
        """Through the plugin's one notify helper (lua/kznllm/notify.lua: setup()'s
        `notify` filter, one line with the built-in vim.notify)."""
        self.nvim.exec_lua(
            f"require('kznllm.notify').notify(..., vim.log.levels.{level})", message, async_=True
        )

    def _start_fill(self, p: dict[str, Any]) -> None:
        load_fill_modules()  # a no-op after the first fill (or the warm-up)
        job_id = int(p["id"])
        debug = bool(p.get("debug"))
        sink = BufferSink(
            self.nvim,
            job_id,
            linewise=bool(p.get("linewise")) and not debug,
            crlf=p.get("fileformat") == "dos" and not debug,
        )
        # the settings in force now: a setup() that comes in before the task runs (or
        # while it streams) is for the next fill
        task = self.nvim.loop.create_task(self._fill(job_id, p, sink, self.settings))
        self.tasks[job_id] = task

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.pop(job_id, None)
            if t.cancelled() and job_id not in self._begun:
                # cancelled before it ran (the cancel came in the same read as the fill):
                # _fill never got to say so
                sink.finish("cancelled", None, {})
            self._begun.discard(job_id)

        task.add_done_callback(done)

    def _answer_taps(
        self, job_id: int, p: dict[str, Any], job: payload.FillJob, turn: Turn, sink: BufferSink
    ) -> Answer:
        """Follow what a fill writes: a replace (not a debug view or a conversation) may
        be chatty. A review's diff is the editor's own (vim.diff over the region, in
        lua/kznllm/review.lua): the host's loop never diffs."""
        replace = job.ctx.mode == "replace" and not job.debug and turn.prompt is None
        answer = Answer(replace)
        if replace:  # only a replace's text is needed again (chatty)
            sink.tap = answer.tap
        return answer

    def _pace(self, job_id: int, cpu_s: float) -> None:
        paced = self._paced.get(job_id)
        if paced is not None:
            coalescer, pace = paced
            coalescer.interval = pace.observe(cpu_s)

    def _cancel(self, job_id: int) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()
        else:
            # nothing runs here (already over, or never started): end it in the editor
            BufferSink(self.nvim, job_id).finish("cancelled", None, {})

    async def _fill(
        self, job_id: int, p: dict[str, Any], sink: BufferSink, s: settings.Settings
    ) -> None:
        self._begun.add(job_id)
        pace = Pace()
        coalescer = Coalescer(sink.write, interval=pace.interval)
        self._paced[job_id] = (coalescer, pace)
        info: dict[str, Any] = {}
        ended = asyncio.Event()
        answer: Answer | None = None
        try:
            try:
                if isinstance(p.get("send"), str):  # :KznSend: the preset the view names
                    from kznllm_py.debug_request import preset_of

                    p = {**p, "preset": preset_of(p["send"], s.presets)}
                job = payload.parse(p, s)
                self._warn_ignored(job.ignored_kzn)
                # file I/O and template renders (fitting the budget): off the loop, when
                # there is a .kzn folder to read (else no hop to a thread and back)
                if job.kzn_dir is not None:
                    job = await sandbox.run_off_loop(payload.with_project_files, job)
                    self._warn_ignored(job.notices)  # project templates not used: why
                turn = await self._conversation(p, job)
            except KznError as exc:
                sink.finish("error", printable(redact(str(exc))), info)
                return
            job = turn.job
            # the editor places it the same way: the settings' presets told it (configure)
            where = placement(p.get("placement"), job.preset.fim)
            if where is not None and not job.debug and turn.prompt is None:
                # an answer on a line of its own keeps that line's own line break
                sink.linewise = where != "cursor"
                job = replace(job, ctx=at_spot(job.ctx, where, p.get("spot")))
            log.info(
                "fill %d: %s, preset %s (%s %s)",
                job_id,
                turn.mode,
                job.preset.id,
                job.preset.provider,
                job.preset.model,
            )
            from kznllm_py.debug_view import DebugView
            from kznllm_py.generation import Generation

            generation = Generation(
                self.http(),
                job.preset,
                job.ctx,
                job.timeouts,
                search_dirs=job.search_dirs,
                retry=job.retry,
                prompt=turn.prompt,
                edited_view=p["send"] if isinstance(p.get("send"), str) else None,
                max_response_bytes=job.max_response_bytes,
            )
            answer = self._answer_taps(job_id, p, job, turn, sink)
            if turn.head:
                coalescer.push(turn.head)
            view = None
            if job.debug:
                fence = job.ctx.filetype if job.ctx.mode == "replace" else None
                view = DebugView(coalescer.push, partial(payload.debug_text, job), fence=fence)
            span = turn.span or _span_json(p, job.ctx)
            rec = self._recording(s, job, mode=turn.mode, parent_id=turn.parent_id, span=span)
            if rec is not None:
                self._spawn(self._track(job_id, int(p.get("bufnr") or 0), rec, ended))
            outcome = await _generate(job_id, generation, sink, coalescer.push, view, rec)
            coalescer.close()
            answer.end(sink)
            info = outcome.to_dict()
            if view is not None and view.fold() is not None:
                info["fold"] = view.fold()  # the editor folds the reasoning there
            _log_outcome(job_id, info)
            info["preset"] = job.preset.id
            info["writes"] = coalescer.writes
            info["pace_ms"] = round(coalescer.interval * 1000, 1)
            if job.skipped:
                info["skipped_files"] = len(job.skipped)
            if job.used_default and job.preset.demo:
                info["notice"] = DEMO_NOTICE
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
            self._paced.pop(job_id, None)
            ms = coalescer.interval * 1000
            log.debug("fill %d: %d writes, paced at %.0f ms", job_id, coalescer.writes, ms)


def _span_json(p: dict[str, Any], ctx: prompts.FillContext) -> str:
    """Where a replace's selection stood, for history (:KznApply finds it again)."""
    if ctx.mode != "replace":
        return ""
    span = apply.span_of(p, ctx.selection, ctx.before, ctx.after)
    return "" if span is None else span.to_json()


class Answer:
    """What a replace-mode answer put in the buffer, as it went there: at its end a
    chatty answer (prose around one code block) is cut down to the code, in the same
    undo step."""

    def __init__(self, replace: bool) -> None:
        self._parts: list[str] = []
        self._replace = replace

    def tap(self, text: str) -> None:
        self._parts.append(text)

    def end(self, sink: BufferSink, *, complete: bool = True) -> None:
        """The answer is over (`complete`: it ended on its own, not cancelled)."""
        sink.flush()
        code = fences.only_code("".join(self._parts)) if self._replace and complete else None
        if code is not None:
            sink.rewrite(code)


PLACEMENTS = ("auto", "cursor", "below", "above")


def placement(asked: Any, fim: bool) -> str | None:
    """Where a normal-mode answer goes, as the editor writes it: 'cursor', 'line' (on
    the cursor's line when blank, else below it), 'below' or 'above'. 'auto' writes a
    fill-in-the-middle preset's answer at the cursor. None: not a normal-mode fill."""
    if asked not in PLACEMENTS:
        return None
    if asked == "auto":
        return "cursor" if fim else "line"
    return str(asked)


def at_spot(ctx: prompts.FillContext, where: str, spot: Any) -> prompts.FillContext:
    """The context split where the answer will go, not at the cursor: the editor sends
    it split after the cursor's character, with `spot` = {head, rest, blank}: the
    cursor line's text before and after that point. 'line' on a blank line: its end;
    'line' elsewhere and 'below': the start of the next line; 'above': the start of the
    cursor's line. A context that does not hold the line as said is left as it is."""
    if where == "cursor" or not isinstance(spot, dict):
        return ctx
    head, rest = spot.get("head"), spot.get("rest")
    if not isinstance(head, str) or not isinstance(rest, str):
        return ctx
    before, after = ctx.before, ctx.after
    if not before.endswith(head) or not after.startswith(rest):
        return ctx
    if where == "above":
        return replace(ctx, before=before[: len(before) - len(head)], after=head + after)
    if where == "line" and spot.get("blank"):
        return replace(ctx, before=before + rest, after=after[len(rest) :])
    tail = after[len(rest) :]
    return replace(ctx, before=before + rest + "\n", after=tail[1:] if tail[:1] == "\n" else tail)


async def _generate(
    job_id: int,
    generation: Generation,
    sink: BufferSink,
    write: Callable[[str], None],
    view: DebugView | None,
    rec: Recording | None,
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
                    _log_request(job_id, request)
                case Retry(attempt, wait, why):
                    _retry_note(sink, job_id, attempt, wait, why)
            if view is not None and (gate := view.take(event)) is not None:
                await events.hold(gate)
            if rec is not None:
                record(rec, event)
    return events.outcome()


def _log_request(job_id: int, request: HttpRequest) -> None:
    log.info("fill %d: %s %s", job_id, request.method, redact_url(request.url))
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
    span: str = ""  # a re-run's: where the selection of the entry it re-asks stood
