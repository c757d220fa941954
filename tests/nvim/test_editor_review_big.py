"""A big review in a real Neovim: `:%KznReview` of a 2,502-line JSON file streams with the
host answering every ping and ends as a review of its 250 hunks (the old host-side diff
took seconds per pass on this file and got the host killed by the watchdog), each pass
diffing only the part of the answer that more text can still change."""

from __future__ import annotations

import itertools
import time

from tests.nvim_child import Child
from tests.review_json import json_lines, token_chunks
from tests.servers import LoopbackServer, Reply, openai_events

PONGS = """
local differ = require('kznllm.review_diff')
local stream = differ.stream
_G.kzn_diffed = {}
differ.stream = function(...)
  local hunks, pending, n = stream(...)
  if hunks then table.insert(_G.kzn_diffed, n) end
  return hunks, pending, n
end
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
    diffed = nvim.lua("return _G.kzn_diffed")  # lines each streaming pass read and diffed
    late = diffed[len(diffed) // 2 :]
    assert len(diffed) >= 4 and max(late) < 300, diffed  # the whole region: up to 2,502
    assert nvim.lines() == json_lines(disable_every_other=True)
    nvim.nvim.command("KznReject!")
    assert nvim.lines() == source


def test_applying_a_2500_line_json_answer_under_review_never_diffs_on_the_host(
    nvim: Child, server: LoopbackServer
):
    # :KznApply used to diff selection and answer on the host's loop (difflib, seconds
    # on this file) though the editor's review diffs them itself
    source = json_lines()
    answer = "\n".join(json_lines(disable_every_other=True)) + "\n"
    server.queue(Reply(chunks=openai_events(token_chunks(answer, 4096))))
    nvim.lua("require('kznllm').setup({ review = true, watchdog = { silence = 1 } })")
    nvim.use_server(server.base_url)
    nvim.set_lines(source)
    buf = nvim.nvim.current.buffer.number
    nvim.nvim.command("%KznDebug disable every other item")
    assert nvim.wait_done(timeout=60)[0]["status"] == "ok"
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry")
    started = time.monotonic()
    nvim.nvim.command("KznApply")
    nvim.wait_for(
        lambda: nvim.lua(
            "local _, r = next(require('kznllm.review').reviews)"
            " return r ~= nil and r.complete and #r.hunks == 250"
        ),
        timeout=30,
        what="the review of the applied answer",
    )
    # the host's part is reading the entry and planning: milliseconds (the diff on its
    # loop took ~4 s here, and the review waited for it)
    assert time.monotonic() - started < 2.0
    assert nvim.lines(buf) == json_lines(disable_every_other=True)
