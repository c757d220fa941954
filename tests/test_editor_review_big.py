"""A big review in a real Neovim: `:%KznReview` of a 2,502-line JSON file streams with the
host answering every ping and ends as a review of its 250 hunks (the old host-side diff
took seconds per pass on this file and got the host killed by the watchdog)."""

from __future__ import annotations

import itertools

from tests.nvim_child import Child
from tests.review_json import json_lines, token_chunks
from tests.servers import LoopbackServer, Reply, openai_events

PONGS = """
local host = require('kznllm.host')
_G.kzn_pongs = {}
local pong = host.pong
host.pong = function(...)
  table.insert(_G.kzn_pongs, vim.uv.hrtime())
  return pong(...)
end
"""


def test_the_host_answers_pings_and_a_2500_line_json_review_completes(
    nvim: Child, server: LoopbackServer
):
    source = json_lines()
    answer = "\n".join(json_lines(disable_every_other=True)) + "\n"
    pieces = token_chunks(answer, 64)  # ~16 tokens an event, ~600 events over ~2 s
    server.queue(Reply(chunks=openai_events(pieces), gap=0.003))
    nvim.lua("require('kznllm').setup({ watchdog = { silence = 1 } })")  # pings every 1/3 s
    nvim.use_server(server.base_url)
    nvim.set_lines(source)
    nvim.lua(PONGS)
    nvim.nvim.command("%KznReview disable every other item")
    done = nvim.wait_done(timeout=60)[0]
    assert done["status"] == "ok", done
    pongs = nvim.lua("return _G.kzn_pongs")
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(pongs)]
    assert len(pongs) >= 3 and max(gaps) < 0.9, gaps  # answered each ping, never went silent
    review = nvim.lua(
        "local _, r = next(require('kznllm.review').reviews)"
        " return r and { complete = r.complete, hunks = #r.hunks } or vim.NIL"
    )
    assert review == {"complete": True, "hunks": 250}
    assert nvim.lines() == json_lines(disable_every_other=True)
    nvim.nvim.command("KznReject!")
    assert nvim.lines() == source
