"""The pynvim remote plugin: dispatches calls from the Lua shim to the core. Every handler
is `sync=False` (a notification): what the editor must wait for (preset names) comes
back as a notification it waits on with a deadline, so a wedged host never freezes it.
Each fill runs as an asyncio task in the host's loop; cancel cancels the task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pynvim

from kznllm_py import apply, history, logfile, settings
from kznllm_py.errors import KznError, printable
from kznllm_py.fill import known, request
from kznllm_py.fill.request import FillRequest
from kznllm_py.history.ops import HistoryOps
from kznllm_py.history.recorder import HistoryRecorder, RecorderSlot, Recording
from kznllm_py.nvim import calls
from kznllm_py.nvim.editor import BufferSink
from kznllm_py.secrets import redact
from kznllm_py.stream.coalesce import Coalescer, Pace

if TYPE_CHECKING:
    import httpx

    from kznllm_py import models
    from kznllm_py.fill import job as payload
    from kznllm_py.fill import run
    from kznllm_py.history.records import Entry
    from kznllm_py.prompt import prompts, sandbox
    from kznllm_py.prompt.sources.git_checks import Checks as GitChecks


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
    "kznllm_py.stream.client",
    "kznllm_py.history.conversation",
    "kznllm_py.fill.turn",
    "kznllm_py.fill.debug_view",
    "kznllm_py.stream.generation",
    "kznllm_py.models",
    "kznllm_py.fill.job",
    "kznllm_py.prompt.prompts",
    "kznllm_py.prompt.sandbox",
    "kznllm_py.fill.run",
)


def load_fill_modules() -> None:
    """Import what a fill needs, on the loop's thread, before any worker thread of a
    fill (templates, project files) can be the first to import one: two threads
    importing the same modules at once can see them half made."""
    for name in FILL_MODULES:
        importlib.import_module(name)


if not TYPE_CHECKING:
    models = _OnFirstUse("kznllm_py.models")
    payload = _OnFirstUse("kznllm_py.fill.job")
    prompts = _OnFirstUse("kznllm_py.prompt.prompts")
    run = _OnFirstUse("kznllm_py.fill.run")
    sandbox = _OnFirstUse("kznllm_py.prompt.sandbox")

log = logfile.logger

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
    git = sys.modules.get("kznllm_py.prompt.sources.git")
    if git is not None:  # the git source's cat-file processes (only if it was used)
        git.BATCHES.close()


@pynvim.plugin
class KznllmPlugin:
    def __init__(self, nvim: pynvim.Nvim) -> None:
        self.nvim = nvim
        self.editor = calls.Editor(nvim)  # every call into the editor (lua/kznllm/calls.lua)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._client: httpx.AsyncClient | None = None
        # history's recorder reports from its worker thread: hop onto the host's loop,
        # the only thread that may talk to Neovim
        self._recorders = RecorderSlot(
            lambda m: self.nvim.loop.call_soon_threadsafe(self._report, f"kznllm: {m}")
        )
        self._history_ops: HistoryOps | None = None
        # entries this host is streaming (entry id -> job id): the sidebar shows them live
        self.live: dict[int, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._begun: set[int] = set()  # fills whose task started running
        # the write pace of each running fill, set by what its writes cost the editor
        self.paced: dict[int, tuple[Coalescer, Pace]] = {}
        self._warned: set[str] = set()  # skipped .kzn folders already reported
        # the git source's asks, for the fills that went before the answer (git_checks.py)
        self.git_checks: GitChecks | None = None
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
        if self._recorders.current is not None:
            self._recorders.current.close()

    def http(self) -> httpx.AsyncClient:
        """The host's HTTP client, made on first use. A method, not a property: pynvim
        reads every attribute of the plugin when it registers its handlers (at the
        host's first call), and a property would build the client (httpx, aiohttp:
        ~120 ms of imports) before that call is answered."""
        if self._client is None:
            from kznllm_py.stream.client import new_client

            self._client = new_client()
        return self._client

    # -- entry points -------------------------------------------------------------------

    @pynvim.function("KznllmHostCall", sync=False)
    def host_call(self, args: list[Any]) -> None:
        op, data = [*args, {}][:2] if args else ("", {})
        handler = CALLS.get(op) or (_history if op.startswith("history_") else None)
        if handler is None:
            return  # an editor newer than this host: nothing to do
        try:
            handler(self, op, data if isinstance(data, dict) else {})
        except Exception as exc:  # never a traceback in the user's face
            log.exception("%s failed", op)
            self._report(f"kznllm: {redact(str(exc))}")

    # the handlers of the editor's calls (CALLS, below the class): (plugin, op, data)

    def _on_pace(self, op: str, data: dict[str, Any]) -> None:
        self._pace(int(data.get("id", 0)), float(data.get("cpu", -1.0)))

    def _on_cancel(self, op: str, data: dict[str, Any]) -> None:
        self._cancel(int(data.get("id", 0)))

    def _on_request(self, op: str, data: dict[str, Any]) -> None:
        self.editor.reply(data.get("seq"), self.answer(data["op"], data["data"]))

    def _on_ping(self, op: str, data: dict[str, Any]) -> None:
        self.editor.pong()  # the editor's watchdog: a host that answers is not wedged

    def _on_log(self, op: str, data: dict[str, Any]) -> None:
        log.debug("editor: %s", redact(str(data.get("text", ""))))  # a job's transitions

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
        self.editor.configured(known.configured(new))

    def answer(self, op: str, data: dict[str, Any]) -> Any:
        """What a `request` call asks (no I/O); the editor waits for it with a deadline,
        so a wedged host cannot freeze it, as a sync=True handler would."""
        if op == "presets":
            return known.preset_list(self.settings, data.get("current") or "")
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
        # the loop too (prepare._renders_inline), not a hop to a thread
        from kznllm_py.stream.prepare import render_prompt

        s = self.settings
        dirs = prompts.search_path(user_config=Path(s.config_dir) if s.config_dir else None)
        if dirs == (prompts.builtin_root(),):  # the user's own templates: on a thread
            with contextlib.suppress(KznError):
                render_prompt(s.preset(None), prompts.FillContext(mode="yap", query=""), dirs)
        # what the host made to here (its modules, the templates) lives as long as it
        # does: out of the collector's full passes, which walked all of it on the loop
        # (25-60 ms every few fills: a stall in whatever streamed then)
        gc.freeze()
        log.info("host warm: %d objects kept out of full collections", gc.get_freeze_count())

    def recorder(self, s: settings.Settings) -> HistoryRecorder | None:
        """The host's recorder (made on first use), or None when history is off."""
        if not s.history_enabled:
            return None
        _, max_entries, max_age_days = s.history
        return self._recorders.get(history.default_path(s.data_dir), max_entries, max_age_days)

    def _ops(self) -> HistoryOps:
        recorder = self.recorder(self.settings)
        if recorder is None:
            raise KznError("history is off (setup({ history = true }) turns it on)")
        if self._history_ops is None or self._history_ops.recorder is not recorder:
            self._history_ops = HistoryOps(recorder, self.live)
        return self._history_ops

    async def _history_call(self, op: str, p: dict[str, Any]) -> None:
        try:
            handler = HISTORY_CALLS.get(op)
            if handler is None:
                raise KznError(f"unknown history call {op!r}")
            await handler(self, self._ops(), p)
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")
        except Exception as exc:  # a bug of ours: one message, the traceback in the log
            log.exception("%s failed", op)
            self._report(f"kznllm: internal error: {redact(f'{type(exc).__name__}: {exc}')}")

    async def _history_view(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        self.editor.sidebar_render(await ops.view(p, self.settings))

    async def _history_entry(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        self.editor.sidebar_entry(await ops.entry(p))

    async def _history_delete(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        await ops.delete(int(p.get("id") or 0))
        self.editor.sidebar_changed()

    async def _history_undelete(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        self.editor.sidebar_undeleted(await ops.undelete())

    async def _history_clear(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        self.editor.sidebar_cleared(await ops.clear())

    async def _history_review(self, ops: HistoryOps, p: dict[str, Any]) -> None:
        if await ops.review_outcome(p):  # a review the user rejected as a whole
            self.editor.sidebar_changed()

    async def _apply(self, op: str, p: dict[str, Any]) -> None:
        """:KznApply (kznllm_py/apply.py decides): 'apply' picks the answer of the entry's
        conversation and what it replaces; 'apply_locate' finds where that stands in the
        buffer lines the editor sent. The editor captures and writes."""
        try:
            if op == "apply":
                entry_id = int(p.get("id") or 0)
                chain = await self._ops().recorder.read(lambda s: s.chain(entry_id))
                plan = apply.plan(chain, force=bool(p.get("bang")), live=self.live)
                from kznllm_py.fill import shaping  # a fill's module: loaded on use

                # indented as the replace landed it (fill/shaping.py)
                code = shaping.reindent_for(plan.code, plan.selection, span=plan.span)
                plan = replace(plan, code=code)
                # a review of it diffs in the editor (vim.diff), never here on the loop
                self.editor.apply_planned(plan.to_dict(), p.get("scratch"))
            else:
                found = await asyncio.to_thread(apply.locate_call, p)
                self.editor.apply_located(p.get("token"), found.to_dict())
        except apply.ApplyError as exc:
            self.editor.apply_refused(p.get("token"), printable(redact(str(exc))), exc.level)
        except KznError as exc:
            self.editor.apply_refused(p.get("token"), printable(redact(str(exc))), "ERROR")
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
        self.editor.models_listed(result)

    async def _trust(self, p: dict[str, Any]) -> None:
        """`:KznTrust`: the project's template and rules files the user has not trusted
        yet, for the editor to ask about through vim.secure.read()."""
        load_fill_modules()  # on the loop's thread, before a worker may import them
        try:
            job = payload.job_of(request.parse(p), self.settings)
            self.warn_ignored(job.ignored_kzn)
            # the templates of .kzn and the project's rules files
            files, lines, where = await sandbox.run_off_loop(payload.project_review, job)
            self.editor.trust_review(files, lines, where)
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")

    def _checks(self) -> GitChecks:
        if self.git_checks is None:
            from kznllm_py.prompt.sources.git_checks import Checks

            self.git_checks = Checks(self.nvim.loop)
        return self.git_checks

    def _ask_git(self, p: dict[str, Any]) -> None:
        """The ask is known before any fill that names it is handled (git_checks.py)."""
        self._checks().asked(int(p.get("request") or 0))
        self._spawn(self._git_blob(p))

    async def _git_blob(self, p: dict[str, Any]) -> None:
        """The git context source, asked at the keypress: the committed text of the
        buffer's file from the repository's long-lived cat-file, on a thread
        (kznllm_py/prompt/sources/git.py), only when its oid is not the one the editor
        holds; the editor diffs it (lua/kznllm/context/git.lua). A fill that went with
        the editor's diff against the text it holds waits for this answer's oid."""
        from kznllm_py.prompt.sources import git

        try:
            reply = await asyncio.to_thread(git.answer, p)
        except Exception:  # a bug of ours: the fill goes without git, the log has why
            log.exception("git_blob failed")
            reply = {"request": p.get("request"), "oid": "", "note": "git: internal error"}
        self._checks().answered(int(p.get("request") or 0), str(reply.get("oid") or ""))
        self.editor.context_answered("git", reply)

    def _git_diff(self, p: dict[str, Any]) -> None:
        """The editor's diff against a new committed text, for a fill that went early."""
        self._checks().rediffed(int(p.get("request") or 0), p.get("git"))

    async def checked(self, req: FillRequest) -> FillRequest | None:
        """None when `req`'s git diff stands (none, or sent before the host's answer and
        its oid confirmed by it), else `req` with the git section the check settled."""
        found = req.gathered.git
        if found is None or not found.check:
            return None
        settled = await self._checks().settled(found)
        if settled.stands:
            return None
        return replace(req, gathered=replace(req.gathered, git=settled.changes))

    async def _context(self, p: dict[str, Any]) -> None:
        """`:KznContext`: what a fill here would send now, section by section (the job a
        fill builds, fitted); nothing is sent."""
        load_fill_modules()  # on the loop's thread, before a worker may import them
        from kznllm_py.fill import context_view

        try:
            req = request.parse(p)
            job = await context_view.build(await self.checked(req) or req, self.settings)
        except KznError as exc:
            self._report(f"kznllm: {redact(str(exc))}")
            return
        self.warn_ignored(job.ignored_kzn)
        self.editor.context_shown([redact(line) for line in context_view.render(job)])

    async def _track(self, job_id: int, bufnr: int, rec: Recording, ended: asyncio.Event) -> None:
        """The editor learns the entry id (follow-ups in a conversation buffer continue
        from it); while the request runs, the sidebar shows the entry live."""
        entry_id = await rec.entry_id()
        if entry_id is None:
            return
        self.editor.job_entry(job_id, entry_id, bufnr)
        if ended.is_set():
            return  # already over: the refresh at its end shows the outcome
        self.live[entry_id] = job_id
        try:
            self.editor.sidebar_changed()
            await ended.wait()
        finally:
            self.live.pop(entry_id, None)
        self.editor.sidebar_changed()

    def warn_ignored(self, lines: tuple[str, ...]) -> None:
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

    def _notify(self, message: str, level: calls.Level) -> None:
        self.editor.notify(message, level)

    def _start_fill(self, p: dict[str, Any]) -> None:
        load_fill_modules()  # a no-op after the first fill (or the warm-up)
        req = request.parse(p)  # the one place a fill's raw table is read
        job_id = req.id
        # a replace's answer ends as its selection does: a charwise or block one never
        # holds its last line's break, so the answer's final one is dropped too
        mid_line = req.mode == "replace" and not req.debug and not req.selection.endswith("\n")
        sink = BufferSink(self.nvim, job_id, linewise=req.linewise or mid_line, crlf=req.crlf)
        # the settings in force now: a setup() that comes in before the task runs (or
        # while it streams) is for the next fill
        task = self.nvim.loop.create_task(self._fill(req, sink, self.settings))
        self.tasks[job_id] = task

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.pop(job_id, None)
            if t.cancelled() and job_id not in self._begun:
                # cancelled before it ran (the cancel came in the same read as the fill):
                # _fill never got to say so
                sink.finish("cancelled", None, {})
            self._begun.discard(job_id)

        task.add_done_callback(done)

    def _pace(self, job_id: int, cpu_s: float) -> None:
        paced = self.paced.get(job_id)
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

    async def _fill(self, req: FillRequest, sink: BufferSink, s: settings.Settings) -> None:
        self._begun.add(req.id)
        await run.run(req, sink, s, self, client=self.http(), recorder=self.recorder(s))

    # -- what a fill uses of the host (fill.run.Host) -------------------------------------

    async def entry(self, entry_id: int) -> Entry | None:
        return await self._ops().get(entry_id)

    def track(self, job_id: int, bufnr: int, rec: Recording, ended: asyncio.Event) -> None:
        self._spawn(self._track(job_id, bufnr, rec, ended))


def _now(method: Callable[[KznllmPlugin, dict[str, Any]], None]) -> Handler:
    """A handler that runs `method(data)` at once, on the loop."""
    return lambda plugin, _op, data: method(plugin, data)


def _task(method: Callable[[KznllmPlugin, str, dict[str, Any]], Any]) -> Handler:
    """A handler that runs the coroutine `method(op, data)` as a task of its own."""
    return lambda plugin, op, data: plugin._spawn(method(plugin, op, data))


Handler = Callable[[KznllmPlugin, str, dict[str, Any]], None]

# the Lua -> Python protocol: each op the editor sends (host.notify(op, data)), its handler
CALLS: dict[str, Handler] = {
    "configure": _now(KznllmPlugin._configure),
    "fill": _now(KznllmPlugin._start_fill),
    "pace": KznllmPlugin._on_pace,
    "cancel": KznllmPlugin._on_cancel,
    "request": KznllmPlugin._on_request,
    "ping": KznllmPlugin._on_ping,
    "log": KznllmPlugin._on_log,
    "warmup": lambda plugin, _op, _data: plugin._warmup(),
    "apply": _task(KznllmPlugin._apply),
    "apply_locate": _task(KznllmPlugin._apply),
    "models": _task(lambda plugin, _op, data: plugin._models(data)),
    "trust": _task(lambda plugin, _op, data: plugin._trust(data)),
    "git_blob": _now(KznllmPlugin._ask_git),
    "git_diff": _now(KznllmPlugin._git_diff),
    "context": _task(lambda plugin, _op, data: plugin._context(data)),
}
_history: Handler = _task(KznllmPlugin._history_call)

# the sidebar's calls (`history_*`), each on the host's history (`_ops()`)
HISTORY_CALLS: dict[str, Callable[[KznllmPlugin, HistoryOps, dict[str, Any]], Any]] = {
    "history_view": KznllmPlugin._history_view,
    "history_entry": KznllmPlugin._history_entry,
    "history_delete": KznllmPlugin._history_delete,
    "history_undelete": KznllmPlugin._history_undelete,
    "history_clear": KznllmPlugin._history_clear,
    "history_review": KznllmPlugin._history_review,
}
