"""Progress in a real Neovim: `setup({ progress = { message = function(info) ... end } })`
words both fidget.nvim's progress (a fake `fidget.progress` on the runtimepath records
what it is told) and the built-in virtual-text indicator; `true`/`false` keep working."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nvim_child import REPO, Child
from tests.servers import LoopbackServer, Reply, openai_events

# every field the message function is given, in one line
MESSAGE_FN = """
require('kznllm').setup({ progress = { message = function(info)
  return ('MSG preset=%s model=%s status=%s chars=%d note=%s in=%s t=%s')
    :format(info.preset, info.model, info.status, info.chars, info.note or '-',
      info.usage and info.usage.input_tokens or '-', type(info.elapsed))
end } })
"""

FAKE_FIDGET = """
_G.fidget_calls = {}
local function rec(...) table.insert(_G.fidget_calls, { ... }) end
return { handle = { create = function(o)
  rec('create', o.title, o.message, o.lsp_client and o.lsp_client.name)
  local h = {}
  function h:report(p) rec('report', p.message) end
  function h:finish() rec('finish', self.message) end
  return h
end } }
"""


def indicator(nvim: Child) -> list[str]:
    """The built-in indicator's text (virtual text in the plugin's namespace)."""
    return nvim.lua(
        "local out = {} for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0,"
        " require('kznllm.job').ns, 0, -1, {details=true})) do"
        " if m[4].virt_text then table.insert(out, m[4].virt_text[1][1]) end end return out"
    )


def shown_with(nvim: Child, needle: str) -> str:
    return nvim.wait_for(
        lambda: next((t for t in indicator(nvim) if needle in t), ""),
        what=f"the indicator to show {needle!r}",
    )


@pytest.fixture
def with_fidget(tmp_path: Path) -> Iterator[Child]:
    fake = tmp_path / "fidget" / "lua" / "fidget"
    fake.mkdir(parents=True)
    (fake / "progress.lua").write_text(FAKE_FIDGET, encoding="utf-8")
    child = Child(tmp_path / "nv")
    try:
        child.lua("vim.opt.rtp:append(...)", str(tmp_path / "fidget"))
        yield child
    finally:
        child.close()


def fidget_calls(nvim: Child) -> list[list[Any]]:
    return nvim.lua("return _G.fidget_calls")


def test_builtin_indicator_shows_the_custom_message_with_status_and_progress(
    nvim: Child, server: LoopbackServer
):
    # headers, then nothing until resumed; then role + "ab", then nothing until resumed
    nvim.serve(server, Reply(chunks=openai_events(["ab", "cd"]), pause_after=0))
    nvim.lua(MESSAGE_FN)
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    waiting = shown_with(nvim, "MSG")
    assert "preset=test model=test-model status=waiting chars=0 note=- in=- t=number" in waiting
    # a retry's note from the host is part of the info until the text comes
    job_id = nvim.events("KznllmStart")[0][1]["id"]
    nvim.lua("require('kznllm.job').note(...)", job_id, "retry in 2 s: busy")
    assert "status=retrying" in shown_with(nvim, "note=retry in 2 s: busy")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert indicator(nvim) == []
    assert nvim.text() == "abcd"


def test_the_progress_shows_the_preset_and_model_the_host_resolved(
    nvim: Child, server: LoopbackServer
):
    # no preset chosen: the host's default; a model picked for it with :KznPreset!
    nvim.lua("require('kznllm.models').set('demo', 'kznllm-demo-fast')")  # its server has it
    nvim.lua(MESSAGE_FN)
    nvim.nvim.command("KznFill q")
    shown = shown_with(nvim, "preset=demo model=kznllm-demo-fast")
    assert "MSG preset=demo model=kznllm-demo-fast" in shown
    assert nvim.wait_done()[0]["status"] == "ok"


def test_the_request_leaves_before_the_progress_and_kznllmstart_of_its_tick(
    nvim: Child, server: LoopbackServer
):
    """The fill goes to the host first in the keypress's tick; the statusline, the
    progress and `User KznllmStart` follow in the same tick (nothing the host answers
    is handled before them), so they add nothing to keypress -> request."""
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    order = nvim.lua(
        """
        local order, notify = {}, vim.rpcnotify
        vim.rpcnotify = function(chan, method, args, ...)
          if type(args) == 'table' and args[1] == 'fill' then order[#order + 1] = 'fill' end
          return notify(chan, method, args, ...)
        end
        local au = vim.api.nvim_create_autocmd('User', { pattern = 'KznllmStart',
          callback = function() order[#order + 1] = 'KznllmStart' end })
        local ok, err = pcall(vim.cmd, 'KznFill q')
        vim.rpcnotify = notify
        vim.api.nvim_del_autocmd(au)
        assert(ok, err)
        return order
        """
    )
    assert order == ["fill", "KznllmStart"]
    assert nvim.wait_done(1)[0]["status"] == "ok"


def test_builtin_indicator_counts_written_bytes_while_streaming(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["ab", "cd"]), pause_after=2))
    nvim.lua(MESSAGE_FN)
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    assert "model=test-model" in shown_with(nvim, "status=streaming chars=2")
    server.resume()
    nvim.wait_done()
    assert indicator(nvim) == []


def test_fidget_is_created_reported_and_finished_with_the_custom_message(with_fidget, server):
    nvim = with_fidget
    server.queue(
        Reply(
            chunks=openai_events(
                ["x"], usage={"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
            ),
            pause_after=2,
        )
    )
    nvim.use_server(server.base_url)
    nvim.lua(MESSAGE_FN)
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    nvim.wait_for(
        lambda: any(c[0] == "report" and "status=streaming" in c[1] for c in fidget_calls(nvim)),
        what="a streaming report to fidget",
    )
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    calls = fidget_calls(nvim)
    kind, title, created, client = calls[0]
    assert (kind, title, client) == ("create", "kznllm", "kznllm")
    assert created.startswith("MSG preset=test model=test-model status=waiting chars=0")
    assert calls[-1][0] == "finish"
    assert "status=ok chars=1" in calls[-1][1] and "in=7" in calls[-1][1]
    # the same text is not reported twice in a row
    reports = [c[1] for c in calls if c[0] == "report"]
    assert all(a != b for a, b in itertools.pairwise(reports))
    # no virtual text when fidget shows the progress
    assert indicator(nvim) == []


def test_fidget_default_message_names_the_preset_and_the_outcome(with_fidget, server):
    nvim = with_fidget
    nvim.serve(server, Reply(chunks=openai_events(["x"]), status=500))
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "error"
    calls = fidget_calls(nvim)
    assert calls[0][:2] == ["create", "kznllm"] and calls[0][2].startswith("kznllm test 0.")
    assert calls[-1][0] == "finish" and calls[-1][1].endswith("s · error")


def test_progress_false_shows_nothing_anywhere(with_fidget, server):
    nvim = with_fidget
    nvim.lua("require('kznllm').setup({ progress = false })")
    nvim.serve(server, Reply(chunks=openai_events(["ab", "cd"]), pause_after=2))
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "ab", what="the first text")
    assert indicator(nvim) == []
    server.resume()
    nvim.wait_done()
    assert not fidget_calls(nvim)  # fidget.progress was not even loaded


def test_failing_message_function_falls_back_to_the_default_and_warns_once(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["ab", "cd"]), pause_after=2))
    nvim.lua("require('kznllm').setup({ progress = { message = function() error('boom') end } })")
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    shown = shown_with(nvim, "kznllm test")
    assert shown.rstrip().endswith("s")
    # several ticks later, still one warning
    nvim.wait_for(lambda: len({t for t in [shown, *indicator(nvim)]}) > 1, what="a tick")
    server.resume()
    nvim.wait_done()
    warnings = [m for m in nvim.messages() if "progress.message" in m]
    assert len(warnings) == 1 and "boom" in warnings[0]


def test_message_function_returning_a_non_string_falls_back_to_the_default(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["ab"]), pause_after=2))
    nvim.lua("require('kznllm').setup({ progress = { message = function() return 42 end } })")
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    assert "42" not in shown_with(nvim, "kznllm test")
    server.resume()
    nvim.wait_done()
    assert any("returned a number, not a string" in m for m in nvim.messages())


# -- the README's examples, as written there ------------------------------------------


def readme_lua_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```lua\n(.*?)^```$", text, flags=re.S | re.M)


def test_readme_progress_example_words_the_builtin_indicator(nvim: Child, server):
    example = next(b for b in readme_lua_blocks() if "progress = {" in b)
    nvim.serve(server, Reply(chunks=openai_events(["ab", "cd"]), pause_after=0))
    nvim.lua(example)
    nvim.nvim.command("KznFill q")
    server.wait_paused()
    assert shown_with(nvim, "test-model: waiting, ").rstrip().endswith("s")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.messages() == []  # no error from the example


def test_readme_configuration_example_is_accepted_by_setup(nvim: Child):
    example = next(b for b in readme_lua_blocks() if "context_lines" in b)
    nvim.lua(example)
    assert nvim.lua("return require('kznllm').config.presets[1].id") == "local-qwen"
    # its presets pass the check setup() runs (in a short-lived process, reporting only
    # problems): the same check, run here to its end
    presets = nvim.lua("return vim.json.encode(require('kznllm').config.presets)")
    check = subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "presets", "--check", "-"],
        input=presets,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
