"""One protocol in one place on each side: the ops the Lua shim sends each have their
handler in the host's table (plugin.CALLS, HISTORY_CALLS), and the host's calls into
the editor (calls.Editor) name exactly the handlers of lua/kznllm/calls.lua, each a
function of a real module, checked in a real Neovim."""

from __future__ import annotations

import re
from pathlib import Path

from kznllm_py.nvim import calls, plugin
from tests.nvim_child import Child

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "lua" / "kznllm"


def _ops_sent_by_lua() -> set[str]:
    """Every op of the Lua sources: `host.notify('op', ...)` (or through pcall), and
    host.lua's own `rpcnotify(chan, method, { 'op', ... })`."""
    found: set[str] = set()
    for path in LUA.rglob("*.lua"):
        text = path.read_text()
        found |= set(re.findall(r"notify(?:\(|, )'([a-z_]+)'", text))
        found |= set(re.findall(r"\{\s*'([a-z_]+)',", text)) & {
            "configure",
            "ping",
            "warmup",
            "request",
        }
    return found


def test_every_op_the_editor_sends_has_a_handler_in_the_hosts_table() -> None:
    sent = _ops_sent_by_lua()
    assert {"fill", "cancel", "configure", "ping", "request", "history_entry"} <= sent, sent
    handled = set(plugin.CALLS) | set(plugin.HISTORY_CALLS)
    assert sent - handled == set(), sent - handled


def test_the_hosts_calls_into_the_editor_are_the_lua_tables_handlers(nvim: Child) -> None:
    names = nvim.lua("return vim.tbl_keys(require('kznllm.calls'))")
    assert sorted(names) == sorted(calls.HANDLERS)
    # each handler's module has the function it calls (a typo would fail only when called)
    missing = nvim.lua(
        """
        local out = {}
        for name in pairs(require('kznllm.calls')) do
          local module, fn = name:match('^(%w+)%.(%w+)$')
          if module and type(require('kznllm.' .. module)[fn]) ~= 'function' then
            table.insert(out, name)
          end
        end
        return out
        """
    )
    assert missing == []


def test_no_python_module_but_the_facade_names_a_lua_module() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "kznllm_py").rglob("*.py")
        # the facade; the demo, which drives an editor as its user would
        if p.relative_to(ROOT).as_posix()
        not in ("kznllm_py/nvim/calls.py", "kznllm_py/nvim/demo.py")
        and re.search(r"require\(['\"]kznllm\.", p.read_text())
    ]
    assert offenders == []
