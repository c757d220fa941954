"""Indicators that tell the truth (issue 27, item 4): the progress keeps moving at a
slow token rate, and a "partial output" note leaves with the text `u` takes back."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

PROBE = """
_G.seen = {}
_G.probe = vim.uv.new_timer()
_G.probe:start(50, 50, vim.schedule_wrap(function()
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\\n')
  local _, n = text:gsub('tok', '')
  local ns = require('kznllm.job').ns
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local s = (m[4].virt_text and m[4].virt_text[1][1] or ''):match('kznllm%S* .-(%d+%.%d)s')
    if s then table.insert(_G.seen, { n, tonumber(s) }) end
  end
end))
"""

DONE = (
    "return vim.wait(20000, function() for _, e in ipairs(_G.kzn_events) do"
    " if e[1] == 'KznllmDone' then return true end end return false end, 20)"
)


def test_the_progress_keeps_moving_at_five_tokens_a_second(nvim: Child, server: LoopbackServer):
    # a token every 0.2 s: text lands at every tick of the spinner (every 0.1 s)
    nvim.serve(server, Reply(chunks=openai_events(["tok "] * 25), gap=0.2))
    nvim.set_lines(["x"])
    nvim.lua(PROBE)  # what the screen shows, sampled inside Neovim (no RPC load on it)
    nvim.nvim.command("KznFill slow")
    assert nvim.lua(DONE)  # vim.wait: Neovim runs on, the test waits for the Done event
    seen = nvim.lua("_G.probe:stop() return _G.seen")
    landing = [secs for tokens, secs in seen if 3 <= tokens < 25]
    assert landing, seen
    # while tokens land it counts on (it stayed at the first token's tick for all 5 s)
    assert max(landing) - min(landing) >= 2.0, landing


def test_undo_of_a_cancelled_answer_takes_its_partial_output_note_too(
    nvim: Child, server: LoopbackServer
):
    nvim.set_lines(["keep me"])
    nvim.fill_paused(server, ["partial ", "answer"], "1KznFill rewrite")
    assert nvim.lines() == ["partial "]
    nvim.nvim.command("KznCancel")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    assert nvim.marks() == [" ⚠ kznllm: partial output (cancelled)"]
    nvim.feed("u")
    assert nvim.lines() == ["keep me"]  # the original, back
    nvim.wait_for(lambda: nvim.marks() == [], what="the note to go with the text")
    server.resume()
