"""later.lua's `debounced`: the context sources' refresh after an edit (the git
source's diff, the outline) runs once, after the last of a run of calls, with that
call's arguments; in a real Neovim."""

from __future__ import annotations

from pathlib import Path

from tests.nvim_child import Child

START = """
_G.kzn_later_calls = {}
_G.kzn_later = require('kznllm.later').debounced(50, function(a, b)
  table.insert(_G.kzn_later_calls, { a, b })
end)
for i = 1, 5 do
  _G.kzn_later(i, 'x' .. i)
end
"""


def test_a_run_of_calls_runs_the_work_once_after_the_last_with_its_arguments(tmp_path: Path):
    with Child(tmp_path) as nvim:
        nvim.lua(START)
        assert nvim.lua("return #_G.kzn_later_calls") == 0  # put off, not run at the call
        nvim.wait_for(lambda: nvim.lua("return #_G.kzn_later_calls") > 0, what="the work")
        nvim.lua("_G.kzn_later(6, nil)")  # a later call starts a new wait, nil kept
        nvim.wait_for(lambda: nvim.lua("return #_G.kzn_later_calls") > 1, what="again")
        assert nvim.lua("return _G.kzn_later_calls") == [[5, "x5"], [6]]
