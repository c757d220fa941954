"""`q` in a scratch view (the debug view, a split or tab answer) while its answer still
streams: the window goes, the request does not, and one line says where the answer
went and how to get it back or stop it (issue 27's last bullet). Real Neovim, real
loopback server."""

from __future__ import annotations

import re

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def hidden_line(nvim: Child) -> str:
    said = [m for m in nvim.messages() if "hidden answer" in m]
    assert len(said) == 1, nvim.messages()
    return said[0]


def test_q_in_a_streaming_debug_view_hides_it_says_so_and_the_answer_comes_back(
    nvim: Child, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(["first ", "second"]), pause_after=2))
    nvim.lua("vim.notify = _G.kzn_builtin_notify")  # Neovim's own: the echo area's width
    nvim.use_server(server.base_url)
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("KznDebug more")
    server.wait_paused()
    nvim.wait_for(lambda: "first" in nvim.text(), what="the first token in the view")
    view = nvim.nvim.current.buffer.number
    wins = len(nvim.nvim.windows)
    nvim.feed("q")
    assert len(nvim.nvim.windows) == wins - 1  # the window went
    # one line that leads with what brings it back (the buffer) and says how to stop it,
    # whole in the echo area of an 80-column screen (ruler and showcmd on), not cut
    messages = nvim.lua("return vim.fn.execute('messages')").split("\n")
    [line] = [m for m in messages if "hidden answer" in m]
    assert re.match(rf"^kznllm: :sb {view} shows the hidden answer", line), line
    assert line.endswith(":KznCancel there stops it"), line
    assert not nvim.done()  # the request runs on
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.text(view).endswith("## Answer\n\nfirst second")  # all of it, in the hidden view
    nvim.nvim.command(f"sbuffer {view}")
    assert nvim.nvim.current.buffer.number == view


def test_q_in_a_finished_debug_view_just_closes_it(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["done"])))
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("KznDebug more")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.feed("q")
    assert not [m for m in nvim.messages() if "hidden answer" in m]


def test_q_in_a_streaming_tab_answer_closes_the_tab_and_keeps_the_answer(
    nvim: Child, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(["one ", "two"]), pause_after=2))
    nvim.use_server(server.base_url, placement="tab")
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("KznFill more")
    server.wait_paused()
    nvim.wait_for(lambda: "one" in nvim.text(), what="the first token in the tab")
    answer = nvim.nvim.current.buffer.number
    assert len(nvim.nvim.tabpages) == 2
    nvim.feed("q")
    assert len(nvim.nvim.tabpages) == 1
    hidden_line(nvim)
    # the buffer stays loaded: the rest of the answer lands in it
    assert nvim.lua("return vim.api.nvim_buf_is_loaded(...)", answer)
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.text(answer) == "one two"
