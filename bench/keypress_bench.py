"""Keypress -> request, stage by stage: where the time between `:KznFill q` and the
request at the server goes, for this tree and another checkout side by side.

    .venv/bin/python bench/keypress_bench.py [--root DIR ...] [--fills 30] [--lines 16000]
        [--c] [--context JSON] [--idle-ms 0] [--git]

`--git`: the C buffer is a file of a git repository the bench makes, with uncommitted
hunks near the cursor (bench/editor_bench.py `git_repo`); with `--context '{"git": true}'`
the git source diffs it.

Each `--root` (default: this checkout) is a tree of the plugin: the same script
measures an older one (`git archive a29e220 | tar -x -C /tmp/kzn_a29`). The trees run
interleaved, a fill each in turn, so that the load of the machine falls on all alike.

Clocks: Neovim's `vim.uv.hrtime()`, the host's and the server's `time.monotonic_ns()`
(all CLOCK_MONOTONIC). The editor side wraps `vim.rpcnotify`; the host side is traced
by a `sitecustomize` (only when KZN_STAGES is set) that wraps, where the tree has them,
the fill's entry (`host_call`), `payload.parse` (the settings), the project files'
read, `prompts.render` (the template render, and on which thread), `_log_request`
(the request is built) and the transport's send; the server stamps the request head's
arrival. Stages (medians, ms from the keypress):

  rpc_sent     the editor captured the context and sent the fill (capture in Lua)
  host_entry   the host's handler runs (the RPC)
  parsed       the payload is parsed with the settings
  files        the project files are read (a thread hop)
  render_start the render begins (after the hop onto its thread, where it has one)
  rendered     the templates are rendered (a thread hop on trees that render off-loop)
  built        the request is built (RequestReady)
  send         the transport is handed the request (after history's entry: the hold)
  at_server    the request head reached the server (connect, write)
  decoded      the host decoded the first read of the answer
  sink_write   the host sent the first text to the editor
  first_write  the first text was written into the buffer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import servers  # noqa: E402
from tests.nvim_child import embed  # noqa: E402
from tests.servers import LoopbackServer, Reply, openai_events  # noqa: E402

# the hops back from the render thread (trees that render off the loop)
EXTRA = ["hop_back_with_project_files", "hop_back_render_prompt"]
# the host's steps between host_entry and render_start, where the tree has them: the job
# under the settings (the context typed), the hop for files, the budget's fit, the turn,
# history's entry begun, the key; and the git source's request in and answer out
HOST_STEPS = ["job", "files", "fitted", "turn", "entry_begun", "key", "git_blob_in", "git_out"]
STAGES = [
    "rpc_sent",
    "host_entry",
    "parsed",
    "files",
    "render_start",
    "rendered",
    "built",
    "send",
    "at_server",
    "decoded",
    "sink_write",
    "first_write",
]

# the host side: wraps what each tree has, appends {stage: monotonic_ns} lines
TRACER = r"""
import json, os, sys, threading, time
_out = os.environ.get("KZN_STAGES")
if _out:
    sys.path.insert(0, os.environ["KZN_ROOT"])
    _main = threading.main_thread()
    def _mark(stage):
        on_loop = threading.current_thread() is _main
        rec = {"stage": stage, "t": time.monotonic_ns(), "loop": on_loop}
        with open(_out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    def _after(mod, name, stage):
        fn = getattr(mod, name, None)
        if fn is None:
            return
        def wrapped(*a, **kw):
            r = fn(*a, **kw)
            _mark(stage)
            return r
        setattr(mod, name, wrapped)
    import kznllm_py.nvim.plugin as plugin
    import kznllm_py.fill.job as payload
    import kznllm_py.prompt.prompts as prompts
    orig_call = plugin.KznllmPlugin.host_call
    def host_call(self, args):
        if args and args[0] == "fill":
            _mark("host_entry")
        elif args and args[0] == "git_blob":
            _mark("git_blob_in")
        return orig_call(self, args)
    host_call._nvim_rpc_method_name = getattr(orig_call, "_nvim_rpc_method_name", None)
    for k, v in vars(orig_call).items():
        setattr(host_call, k, v)
    plugin.KznllmPlugin.host_call = host_call
    def _before(mod, name, stage):
        fn = getattr(mod, name, None)
        if fn is None:
            return
        def wrapped(*a, **kw):
            _mark(stage)
            return fn(*a, **kw)
        setattr(mod, name, wrapped)
    _before(prompts, "render", "render_start")
    # the host's steps between the handler and the render (HOST_STEPS)
    _after(payload, "job_of", "job")
    _after(payload, "with_files", "files")
    _after(payload, "fitted", "fitted")
    try:
        import kznllm_py.fill.turn as turn_mod
        _after(turn_mod, "turn", "turn")
        import kznllm_py.history.recorder as recorder_mod
        _after(recorder_mod.HistoryRecorder, "begin", "entry_begun")
        import kznllm_py.secrets as secrets_mod
        orig_resolve = secrets_mod.resolve
        async def resolve(*a, **kw):
            r = await orig_resolve(*a, **kw)
            _mark("key")
            return r
        secrets_mod.resolve = resolve
    except (ImportError, AttributeError):
        pass
    _after(payload, "parse", "parsed")
    _after(payload, "with_project_files", "files")
    _after(prompts, "render", "rendered")
    _after(plugin, "_log_request", "built")  # where older trees have it
    try:
        import kznllm_py.fill.run as run
        _after(run, "log_request", "built")
    except ImportError:
        pass
    try:
        import kznllm_py.prompt.sandbox as sandbox
        orig_off = sandbox.run_off_loop
        async def run_off_loop(fn, *a, **kw):
            r = await orig_off(fn, *a, **kw)
            _mark("hop_back_" + getattr(fn, "__name__", "fn"))
            return r
        sandbox.run_off_loop = run_off_loop
    except ImportError:
        pass
    import kznllm_py.nvim.editor as editor, kznllm_py.stream.sse as sse
    try:
        import kznllm_py.nvim.calls as calls_mod
        orig_answered = calls_mod.Editor.context_answered
        def context_answered(self, *a, **kw):
            _mark("git_out")
            return orig_answered(self, *a, **kw)
        calls_mod.Editor.context_answered = context_answered
    except (ImportError, AttributeError):
        pass
    _after(editor.BufferSink, "write", "sink_write")
    _after(sse.SSEDecoder, "decode", "decoded")
    try:
        import kznllm_py.stream.transport as transport
        cls = transport.StreamingTransport
        orig_send = cls.handle_async_request
        async def handle(self, request):
            _mark("send")
            return await orig_send(self, request)
        cls.handle_async_request = handle
    except (ImportError, AttributeError):
        pass
"""

LUA = r"""
local B = { rpc = {}, writes = {} }
_G.kzn_stage = B
local notify = vim.rpcnotify
vim.rpcnotify = function(chan, method, args, ...)
  if type(args) == 'table' and args[1] == 'fill' then B.rpc[#B.rpc + 1] = vim.uv.hrtime() end
  return notify(chan, method, args, ...)
end
local job = require('kznllm.job')
local write = job.write
job.write = function(...)
  B.writes[#B.writes + 1] = vim.uv.hrtime()
  return write(...)
end
-- the editor's steps (EDITOR_STEPS): each source's work in the keypress tick (`<name>_tick`,
-- a duration) and when it answered (`<name>`), the host's git answer's arrival, the
-- gathering's end, the end of the keypress's own tick
B.marks, B.ticks = {}, {}
local function mark(name)
  if B.key and not B.marks[name] then B.marks[name] = vim.uv.hrtime() end
end
local ok_ctx, context = pcall(require, 'kznllm.context')
if ok_ctx and type(context.SOURCES) == 'table' then
  for name, s in pairs(context.SOURCES) do
    local ok_mod, mod = pcall(require, s.module)
    if ok_mod and mod.collect then
      local collect = mod.collect
      mod.collect = function(buf, range, o, done)
        local t0 = vim.uv.hrtime()
        local r = collect(buf, range, o, function(...)
          mark(name)
          return done(...)
        end)
        B.ticks[name .. '_tick'] = (vim.uv.hrtime() - t0) / 1e6
        return r
      end
    end
  end
  if context.answered then
    local answered = context.answered
    context.answered = function(source, ...)
      mark(source .. '_reply')
      return answered(source, ...)
    end
  end
end
do -- the fill's own steps: the command's handler, the gathering's start, the start once gathered
  local ok_a, actions = pcall(require, 'kznllm.actions')
  if ok_a and actions.prompt_fill then
    local prompt_fill, start = actions.prompt_fill, actions.start
    actions.prompt_fill = function(...)
      mark('prompt')
      return prompt_fill(...)
    end
    actions.start = function(spec, ...)
      mark(spec and spec.context and 'start_gathered' or 'start')
      return start(spec, ...)
    end
  end
  if ok_ctx and context.start then
    local start = context.start
    context.start = function(...)
      mark('gather')
      return start(...)
    end
  end
end
B.done = 0
vim.api.nvim_create_autocmd('User', { pattern = 'KznllmDone',
  callback = function() B.done = B.done + 1 end })
function B.fill()
  B.rpc, B.writes, B.marks, B.ticks = {}, {}, {}, {}
  B.key = vim.uv.hrtime()
  vim.cmd('KznFill q')
  B.marks.tick_end = vim.uv.hrtime()
end
"""


class StampedRecorded(servers.Recorded):
    """A request as the server received it, with the monotonic time of its head."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.mono = time.monotonic_ns()


def settled(pid: int, window: float = 0.5, timeout: float = 30.0) -> None:
    """Until `pid` spent no CPU for `window` seconds (its warm-up is over)."""

    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[11]) + int(fields[12])

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = ticks()
        time.sleep(window)
        if ticks() == before:
            return


class Tree:
    def __init__(
        self,
        root: Path,
        server: LoopbackServer,
        lines: int,
        history: bool,
        prestart: bool,
        filetype: str = "",
        c_file: bool = False,
        context: dict[str, Any] | None = None,
        idle_ms: int = 0,
        repo: bool = False,
    ) -> None:
        self.root = root
        self.tmp = Path(tempfile.mkdtemp(prefix="kzn-stages-"))
        self.trace = self.tmp / "stages.jsonl"
        site = self.tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(TRACER)
        env = dict(KZN_STAGES=str(self.trace), KZN_ROOT=str(root), PYTHONPATH=str(site))
        self.nvim = embed(self.tmp, [root], env=env)
        preset = {
            "id": "bench",
            "provider": "openai",
            "model": "m",
            "base_url": server.base_url,
            "api_key": False,
        }
        opts: dict[str, Any] = {"python": sys.executable, "presets": [preset]}
        if not history:  # only what differs from the defaults: older trees know less
            opts["history"] = False
        if prestart:
            opts["prestart"] = True
        if context is not None:
            opts["context"] = context
        self.nvim.exec_lua(
            "require('kznllm').setup(...) require('kznllm').state.preset = 'bench'", opts
        )
        self.nvim.exec_lua(LUA)
        if prestart:  # Neovim idle after startup: the host starts (and warms) by itself
            self.nvim.exec_lua("vim.o.updatetime = 50")
            self.nvim.input("<Esc>")
            deadline = time.monotonic() + 5
            while not self.nvim.exec_lua("return require('kznllm.host').alive()"):
                if time.monotonic() > deadline:  # a tree without prestart: a cold first fill
                    print(f"{root}: no host started while idle", file=sys.stderr)
                    break
                time.sleep(0.05)
            else:
                settled(self.nvim.exec_lua("return require('kznllm.host').pid"))
        self.c_file = c_file
        self.idle_ms = idle_ms
        if lines and c_file:
            # a C file of functions, highlighted by the C parser Neovim bundles: the
            # scope and the outline come from the tree the highlighter keeps
            from bench.editor_bench import c_source, git_repo

            if repo:  # the file of a repository, changed near the cursor
                self.nvim.command(f"edit {git_repo(self.tmp / 'repo', lines)}")
            else:
                self.nvim.current.buffer[:] = c_source(lines).splitlines()
            self.nvim.command("setfiletype c")
            self.nvim.exec_lua("vim.treesitter.start() vim.treesitter.get_parser(0):parse()")
            self.nvim.command(f"normal! {lines // 2}G")
        elif lines:
            text = [f"int line_{i} = {i}; /* some code on this line */" for i in range(lines)]
            self.nvim.current.buffer[:] = text
            self.nvim.command(f"normal! {lines // 2}G")
        if filetype:  # a code buffer: its answer is shaped (kznllm_py/fill/shape.py)
            self.nvim.command(f"setlocal filetype={filetype}")
        self.server = server
        self.fills = 0

    def fill(self) -> dict[str, float] | None:
        done = self.fills
        seen = len(self.server.requests)
        before = self.trace.read_text().count("\n") if self.trace.exists() else 0
        self.server.queue(Reply(chunks=openai_events(["hello", " world"])))
        self.nvim.exec_lua("_G.kzn_stage.fill()")
        # waits inside Neovim (its loop runs, nothing polls it from here)
        if not self.nvim.exec_lua(
            "local n = ... return vim.wait(30000, function() return _G.kzn_stage.done > n end, 5)",
            done,
        ):
            raise SystemExit(f"{self.root}: timed out waiting for a fill")
        self.fills += 1
        self.nvim.command("silent! undo")  # the buffer as it was
        if self.c_file:  # and its tree, as the highlighter re-parses it at a redraw
            self.nvim.exec_lua("vim.treesitter.get_parser(0):parse()")
        if self.idle_ms:  # the user's pause before the next keypress (Neovim's loop runs)
            self.nvim.exec_lua("vim.wait(...)", self.idle_ms)
        b = self.nvim.exec_lua(
            "local B = _G.kzn_stage return { key = B.key, rpc = B.rpc, writes = B.writes,"
            " marks = B.marks, ticks = B.ticks }"
        )
        key = b["key"]
        out: dict[str, float] = {}
        for name, t in (b.get("marks") or {}).items():
            out["e." + name] = (t - key) / 1e6
        for name, ms in (b.get("ticks") or {}).items():
            out["e." + name] = ms
        if b["rpc"]:
            out["rpc_sent"] = (b["rpc"][0] - key) / 1e6
        for line in self.trace.read_text().splitlines()[before:]:
            rec = json.loads(line)
            if rec["stage"] not in out and rec["stage"] in (*STAGES, *EXTRA, *HOST_STEPS):
                out[rec["stage"]] = (rec["t"] - key) / 1e6
                if rec["stage"] == "rendered":
                    out["render_on_loop"] = float(rec["loop"])
        reqs = self.server.requests[seen:]
        if reqs and hasattr(reqs[0], "mono"):
            out["at_server"] = (reqs[0].mono - key) / 1e6
        if b["writes"]:
            out["first_write"] = (b["writes"][0] - key) / 1e6
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvim.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, action="append", help="a plugin tree (repeatable)")
    ap.add_argument("--fills", type=int, default=30, help="measured fills per tree")
    ap.add_argument("--warm", type=int, default=3, help="fills first, not measured")
    ap.add_argument("--lines", type=int, default=0, help="buffer lines (e.g. 16000)")
    ap.add_argument("--no-history", action="store_true", help="setup({ history = false })")
    ap.add_argument(
        "--prestart",
        action="store_true",
        help="the host starts while Neovim is idle (setup's prestart); with --warm 0 the "
        "first fill is shown on its own",
    )
    ap.add_argument("--filetype", default="", help="the buffer's filetype (e.g. c)")
    ap.add_argument(
        "--c", action="store_true", help="the buffer is a C file with treesitter highlighting"
    )
    ap.add_argument("--context", type=json.loads, help="setup()'s `context`, as JSON")
    ap.add_argument(
        "--idle-ms", type=int, default=0, help="a pause after each fill's undo (a user's)"
    )
    ap.add_argument("--git", action="store_true", help="--c's file in a git repository")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    roots = [r.resolve() for r in (args.root or [REPO])]
    servers.Recorded = StampedRecorded  # type: ignore[misc]
    results: dict[str, list[dict[str, float]]] = {str(r): [] for r in roots}
    with LoopbackServer() as server:
        trees = [
            Tree(
                r,
                server,
                args.lines,
                not args.no_history,
                args.prestart,
                args.filetype,
                args.c,
                args.context,
                args.idle_ms,
                args.git,
            )
            for r in roots
        ]
        try:
            for _ in range(args.warm):
                for t in trees:
                    t.fill()
            for _ in range(args.fills):
                for t in trees:
                    got = t.fill()
                    if got:
                        results[str(t.root)].append(got)
        finally:
            for t in trees:
                t.close()
    first = {root: runs[0] for root, runs in results.items() if runs}
    summary = {
        root: {
            s: round(statistics.median(v[s] for v in runs), 2)
            for s in [*STAGES, *EXTRA, "render_on_loop"]
            if runs and all(s in v for v in runs)
        }
        for root, runs in results.items()
    }
    # the finer steps (the editor's `e.*`, the host's HOST_STEPS): those of most fills
    steps = {
        root: {
            s: round(statistics.median(got), 2)
            for s in sorted({k for v in runs for k in v if k.startswith("e.") or k in HOST_STEPS})
            if len(got := [v[s] for v in runs if s in v]) * 2 > len(runs)
        }
        for root, runs in results.items()
    }
    if args.json:
        print(json.dumps({"median": summary, "steps": steps, "first": first}, indent=2))
        return 0
    print(f"ms from the keypress, median of {args.fills} fills, buffer of {args.lines} lines")
    width = max(len(r) for r in summary)
    head = "".join(f"{s:>13}" for s in STAGES)
    print(f"{'tree':<{width}}{head}")
    for root, stages in summary.items():
        row = "".join(f"{stages[s]:>13.2f}" if s in stages else f"{'-':>13}" for s in STAGES)
        print(f"{root:<{width}}{row}")
    if args.warm == 0:
        print("the first fill of each tree:")
        for root, stages in first.items():
            row = "".join(f"{stages[s]:>13.2f}" if s in stages else f"{'-':>13}" for s in STAGES)
            print(f"{root:<{width}}{row}")
    for root, stages in summary.items():
        extra = ", ".join(f"{s} {stages[s]:.2f}" for s in EXTRA if s in stages)
        if extra:
            print(f"{root}: {extra}")
    print("steps (ms from the keypress; *_tick: ms of the source's work in the keypress tick):")
    for root, found in steps.items():
        at = sorted(
            ((k, v) for k, v in found.items() if not k.endswith("_tick")), key=lambda kv: kv[1]
        )
        ticks = [(k, v) for k, v in found.items() if k.endswith("_tick")]
        print(f"{root}:")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in at))
        if ticks:
            print("  " + ", ".join(f"{k} {v:.2f}" for k, v in ticks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
