"""Adaptive writes in a real Neovim: the host paces a stream's writes by what they cost
the editor, so a buffer whose changes are expensive (treesitter, LSP, any on_bytes
listener) gets few large writes and a plain one many small ones, every byte the same."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

TOKENS = [f"t{i} " if i % 10 else f"t{i}\n" for i in range(500)]

# a listener as costly as treesitter reparsing a large file: 15 ms of CPU per change
# (CPU time, os.clock(): the same cost however loaded the machine is)
COSTLY = """
local buf = vim.api.nvim_get_current_buf()
vim.api.nvim_buf_attach(buf, false, { on_lines = function()
  local t = os.clock()
  while os.clock() - t < 0.015 do end
end })
"""

COUNT = """
_G.kzn_changes = {}
vim.api.nvim_buf_attach(vim.api.nvim_get_current_buf(), false, { on_lines = function()
  table.insert(_G.kzn_changes, vim.uv.hrtime())
end })
"""


def stream(nvim: Child, server: LoopbackServer, n: int) -> dict:
    """Stream TOKENS into the current buffer; KznllmDone's data."""
    server.queue(Reply(chunks=openai_events(TOKENS), gap=0.002))
    nvim.nvim.command("KznFill go")
    [*_, done] = nvim.wait_done(n)
    assert done["status"] == "ok"
    assert nvim.text().endswith("".join(TOKENS))
    assert len(nvim.lua("return _G.kzn_changes")) == done["writes"]
    return done


def test_costly_changes_get_fewer_writes_and_the_same_text(nvim: Child, server: LoopbackServer):
    nvim.use_server(server.base_url)
    nvim.lua(COUNT)
    cheap = stream(nvim, server, 1)
    nvim.nvim.command("enew!")
    nvim.lua(COUNT)
    nvim.lua(COSTLY)
    costly = stream(nvim, server, 2)
    # the pace follows the editor's CPU time per write: a few frames at most in the
    # plain buffer, 15 ms / 10 % = 150 ms, held at the ceiling (15 updates/s) in the
    # costly one
    assert cheap["pace_ms"] < 30, cheap
    assert 60 <= costly["pace_ms"] <= 66.7, costly
    assert costly["writes"] * 2 < cheap["writes"], (costly, cheap)
