"""The review's keys shadow nothing, in a real Neovim with real keys: no built-in command,
no default map (0.11's grn/grr/gra/gri) and no user map is hidden or made to wait for
'timeoutlen' while a review is open; the keys are configurable and the line that ends
the answer names the ones in force."""

from __future__ import annotations

import time

from tests.nvim.test_editor_review import ANSWER, SOURCE, open_reviews
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

GR_MAPS = ("grn", "grr", "gra", "gri")
MAPINFO = """
local out = {}
for _, k in ipairs({ ... }) do
  local m = vim.fn.maparg(k, 'n', false, true)
  out[k] = { desc = m.desc or '', buffer = m.buffer or 0, check = vim.fn.mapcheck(k, 'n') }
end
return out
"""


def review(nvim: Child, server: LoopbackServer) -> None:
    text = "\n".join(ANSWER) + "\n"
    nvim.serve(server, Reply(chunks=openai_events([text])))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")
    nvim.wait_done()
    nvim.wait_for(lambda: open_reviews(nvim) == 1, what="the review")


def keys(nvim: Child) -> dict[str, str]:
    return nvim.lua("return require('kznllm.config').options.keymaps.review")


def test_no_builtin_command_or_default_map_is_shadowed_while_a_review_is_open(
    nvim: Child, server: LoopbackServer
):
    lhs = list(keys(nvim).values())
    before = nvim.lua(MAPINFO, *GR_MAPS, "gr", *lhs)
    # the defaults: no built-in command (no help tag) and nothing mapped or started
    for k in lhs:
        assert k not in nvim.lua("return vim.fn.getcompletion(..., 'help')", k), k
        assert before[k]["check"] == "", k
    review(nvim, server)
    after = nvim.lua(MAPINFO, *GR_MAPS, "gr", *lhs)
    for k in (*GR_MAPS, "gr"):
        assert after[k] == before[k], k  # 0.11's gr* maps: the same, not waiting on ours
    assert all(after[k]["buffer"] == 1 for k in lhs)  # ours, in the buffer only
    # typed gr* keys run Neovim's own maps at once: grr finds no language server
    t0 = time.monotonic()
    nvim.lua("vim.o.timeoutlen = 5000")
    nvim.feed("3Ggrr")
    assert time.monotonic() - t0 < 2.5
    assert nvim.lines()[2] == "    s = 0.0"  # and nothing of the review happened


def test_a_user_map_is_neither_shadowed_nor_delayed_and_the_line_names_only_free_keys(
    nvim: Child, server: LoopbackServer
):
    nvim.lua(
        "vim.keymap.set('n', ']h', function() vim.g.user_h = 1 end)"
        " vim.keymap.set('n', 'gyy', function() vim.g.user_gyy = 1 end)"
        " vim.o.timeoutlen = 5000"
    )
    review(nvim, server)
    assert nvim.messages()[-1] == "kznllm: 2 hunks to review: gb reject, gY/gB all, [h move"
    t0 = time.monotonic()
    nvim.feed("]h")
    nvim.feed("gyy")
    assert time.monotonic() - t0 < 2.5  # neither waited for 'timeoutlen'
    assert nvim.nvim.vars.get("user_h") == 1 and nvim.nvim.vars.get("user_gyy") == 1
    assert nvim.lines()[2] == "    s = 0.0"
    nvim.feed("3G")
    nvim.nvim.command("KznAccept")  # the command does what the key left alone would
    nvim.feed("5Ggb")
    assert nvim.lines()[4] == "        s += x"
    assert open_reviews(nvim) == 0
    assert nvim.lua("return vim.fn.maparg(']h', 'n', false, true).buffer") == 0  # the user's


def test_review_keys_are_configurable(nvim: Child, server: LoopbackServer):
    nvim.lua(
        "require('kznllm').setup({ keymaps = { review = { accept = '<LocalLeader>y',"
        " accept_all = false, reject_all = false, next = false, prev = false } } })"
    )
    review(nvim, server)
    assert nvim.messages()[-1] == "kznllm: 2 hunks to review: <LocalLeader>y/gb accept/reject"
    nvim.feed("3G\\y5Ggb")
    assert nvim.lines()[2] == "    s = 0.0" and nvim.lines()[4] == "        s += x"
    assert open_reviews(nvim) == 0
