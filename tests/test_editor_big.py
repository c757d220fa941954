"""Big buffers stay cheap, in a real Neovim: only the context the prompt can use crosses
the RPC boundary (the host keeps 24,000 characters each side), cut at character
boundaries, however long the lines."""

from __future__ import annotations

import pytest

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SPY = """
local host = require('kznllm.host')
local orig = host.notify
_G.kzn_sent = {}
host.notify = function(op, p)
  if op == 'fill' then table.insert(_G.kzn_sent, { before = p.before, after = p.after }) end
  return orig(op, p)
end
"""


@pytest.mark.parametrize("unit", ["x", "é", "日本"], ids=["ascii", "2-byte", "3-byte"])
def test_a_one_megabyte_line_sends_only_what_the_prompt_keeps(
    nvim: Child, server: LoopbackServer, unit: str
):
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url, placement="cursor")
    half = unit * (512 * 1024 // len(unit.encode()))
    nvim.set_lines([half + "|" + half])
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 1, ... })", len(half.encode()))
    nvim.lua(SPY)
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    [sent] = nvim.lua("return _G.kzn_sent")
    before, after = sent["before"], sent["after"]
    assert len(before) == 24000 and len(after) == 24000  # what the host keeps, no more
    # whole characters, up to the insertion point (after the cursor's "|")
    assert (half + "|").endswith(before) and half.startswith(after)
    prompt = server.requests[0].body["messages"][-1]["content"]
    assert before[-24000:] in prompt


def test_sixteen_thousand_lines_send_the_context_lines_around_the_cursor(
    nvim: Child, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines([f"line {i}" for i in range(16000)])
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 8000, 0 })")
    nvim.lua(SPY)
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    [sent] = nvim.lua("return _G.kzn_sent")
    before = sent["before"].split("\n")
    assert before[0] == "line 7599" and len(before) == 401  # 400 lines, and the cursor's
    assert sent["after"].split("\n")[-1] == "line 8399"
