"""per_buffer.lua's `forget_on_wipeout`: the context sources' per-buffer state (tree.lua's
parser flags, outline.lua's watched buffers, git.lua's committed text and its diff) is
dropped when its buffer is wiped out, every table handed in for it, through one autocmd
per buffer; in a real Neovim."""

from __future__ import annotations

from pathlib import Path

from tests.nvim_child import Child

START = """
local per_buffer = require('kznllm.per_buffer')
local a, b = vim.api.nvim_create_buf(true, false), vim.api.nvim_create_buf(true, false)
_G.kzn_t1, _G.kzn_t2, _G.kzn_t3 = { [a] = 1, [b] = 1 }, { [a] = 2 }, { [a] = 3 }
per_buffer.forget_on_wipeout(a, _G.kzn_t1, _G.kzn_t2) -- git.lua's two tables
per_buffer.forget_on_wipeout(a, _G.kzn_t3) -- another source's, later
per_buffer.forget_on_wipeout(a, _G.kzn_t1) -- again: nothing more
per_buffer.forget_on_wipeout(b, _G.kzn_t1)
return { a, b }
"""

LEFT = """
local a, b = ...
local t1, t2, t3 = _G.kzn_t1, _G.kzn_t2, _G.kzn_t3
return { tostring(t1[a]), tostring(t2[a]), tostring(t3[a]), tostring(t1[b]) }
"""

WIPE_HOOKS = "return #vim.api.nvim_get_autocmds({ event = 'BufWipeout', buffer = ... })"


def test_a_wiped_buffer_is_forgotten_by_every_table_handed_in_for_it_and_only_it(
    tmp_path: Path,
):
    with Child(tmp_path) as nvim:
        a, b = nvim.lua(START)
        assert nvim.lua(WIPE_HOOKS, a) == 1  # one autocmd, whatever the calls
        nvim.nvim.command(f"bwipeout {a}")
        assert nvim.lua(LEFT, a, b) == ["nil", "nil", "nil", "1"]
        nvim.nvim.command(f"bwipeout {b}")
        assert nvim.lua(LEFT, a, b) == ["nil"] * 4


def test_a_buffer_number_met_again_after_its_wipe_is_watched_afresh(tmp_path: Path):
    # Neovim 0.11 gives a wiped buffer's number to no later buffer; the helper does not
    # count on it: its BufWipeout fired (here without the wipe itself), the number is
    # new to it, and state kept for it again is forgotten at the next wipe
    with Child(tmp_path) as nvim:
        a, b = nvim.lua(START)
        nvim.lua("vim.api.nvim_exec_autocmds('BufWipeout', { buffer = ... })", a)
        assert nvim.lua(LEFT, a, b) == ["nil", "nil", "nil", "1"]
        assert nvim.lua(WIPE_HOOKS, a) == 0
        nvim.lua(
            "local a = ... _G.kzn_t2[a] = 'again'"
            " require('kznllm.per_buffer').forget_on_wipeout(a, _G.kzn_t2)",
            a,
        )
        assert nvim.lua(WIPE_HOOKS, a) == 1
        nvim.nvim.command(f"bwipeout {a}")
        assert nvim.lua(LEFT, a, b) == ["nil", "nil", "nil", "1"]
