"""Big buffers stay cheap, in a real Neovim: only the context the prompt can use crosses
the RPC boundary (the host keeps 24,000 characters each side), cut at character
boundaries, however long the lines."""

from __future__ import annotations

import pytest

from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.sections import DEFAULT_BUDGET
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
    # the prompt keeps the characters nearest the cursor, within the context budget
    assert before[-4000:] + "<cursor/>" + after[:4000] in prompt
    assert estimate_tokens(prompt) <= DEFAULT_BUDGET + 300  # the template's own words


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


@pytest.mark.parametrize("placement", ["auto", "below", "above"])
def test_a_one_megabyte_line_is_not_sent_whole_wherever_the_answer_goes(
    nvim: Child, server: LoopbackServer, placement: str
):
    """The cursor line's parts (where an answer on a line of its own splits the context)
    cross only when the context can hold them."""
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url, placement=placement)
    nvim.set_lines(["x" * (1 << 20), "next"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 1, 500000 })")
    nvim.spy_sent()
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    [(_, size, _)] = nvim.sent("fill")
    assert size < 2 * 4 * 24000 + 4096, size  # the two contexts at most, not the line
    expected = {
        "auto": ["x" * (1 << 20), "ok", "next"],  # a chat preset: a line of its own
        "below": ["x" * (1 << 20), "ok", "next"],
        "above": ["ok", "x" * (1 << 20), "next"],
    }[placement]
    assert nvim.lines() == expected


LINE_LEN = """
local buf = vim.api.nvim_get_current_buf()
vim.bo[buf].eol, vim.bo[buf].fixeol, vim.bo[buf].binary = ...
local out = {}
for row = 0, vim.api.nvim_buf_line_count(buf) - 1 do
  local line = vim.api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
  table.insert(out, { require('kznllm.job').line_len(buf, row), #line })
end
return out
"""


@pytest.mark.parametrize(
    "eol,fixeol,binary",
    [(a, b, c) for a in (True, False) for b in (True, False) for c in (True, False)],
)
def test_line_lengths_from_offsets_match_the_lines(
    nvim: Child, eol: bool, fixeol: bool, binary: bool
):
    nvim.set_lines(["abc", "", "héllo wörld", "日本"])
    for got, want in nvim.lua(LINE_LEN, eol, fixeol, binary):
        assert got == want


def test_a_long_blank_line_takes_the_answer_on_itself(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url, placement="auto")  # a chat preset: on a blank line
    nvim.set_lines(["first", " " * 1000, "last"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 2, 0 })")
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["first", " " * 1000 + "ok", "last"]
