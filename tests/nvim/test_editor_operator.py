"""The Vim grammar in a real Neovim with real keys: `gz{motion}` replaces what the motion
covers as a visual selection of it would, and `.` repeats it on a new motion with the
same query and preset, without asking again."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SOURCE = ["def a():", "    return 1", "", "def b():", "    return 2", "", "tail"]

ASK = """
local answer = ...
_G.kzn_asked = 0
vim.ui.input = function(opts, cb) _G.kzn_asked = _G.kzn_asked + 1 cb(answer) end
"""


def operate(nvim: Child, server: LoopbackServer, answers: list[str], query: str, keys: str):
    """The `answers` queued, SOURCE in the buffer, `query` typed at the prompt, `keys`
    fed: the first fill's end once it is over."""
    nvim.serve(server, *(Reply(chunks=openai_events([a])) for a in answers))
    nvim.set_lines(SOURCE)
    nvim.lua(ASK, query)
    nvim.feed(keys)
    return nvim.wait_done()[0]


def test_gz_ip_replaces_the_paragraph_and_dot_repeats_with_the_same_query_and_preset(
    nvim: Child, server: LoopbackServer
):
    assert operate(nvim, server, ["A", "B"], "make it better", "gzip")["status"] == "ok"
    assert nvim.lines() == ["A", "", "def b():", "    return 2", "", "tail"]
    first = server.requests[0].body["messages"]
    assert "def a():\n    return 1" in first[-1]["content"]
    assert "make it better" in first[-1]["content"]
    # another preset is current now; the repeat keeps the one it was made with
    nvim.lua("require('kznllm').state.preset = 'demo'")
    nvim.feed("3G.")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    assert nvim.lines() == ["A", "", "B", "", "tail"]
    assert nvim.lua("return _G.kzn_asked") == 1  # the repeat did not ask
    second = server.requests[1].body["messages"]
    assert "def b():\n    return 2" in second[-1]["content"]
    assert "make it better" in second[-1]["content"]


def test_gzz_replaces_the_current_lines_with_a_count(nvim: Child, server: LoopbackServer):
    assert operate(nvim, server, ["ONE"], "q", "4G2gzz")["status"] == "ok"
    assert nvim.lines() == ["def a():", "    return 1", "", "ONE", "", "tail"]


def test_a_dismissed_prompt_sends_nothing_and_dot_then_asks_again(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["X"])))
    nvim.set_lines(SOURCE)
    nvim.lua("vim.ui.input = function(opts, cb) cb(nil) end")
    nvim.feed("gzip")
    assert server.requests == [] and nvim.lines() == SOURCE
    nvim.lua(ASK, "now")
    nvim.feed("gzj")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["X", "", "def b():", "    return 2", "", "tail"]
