"""<Esc> ends only what the user meant, with real keys in a real Neovim: while an answer
streams on line 5, a habitual second <Esc> after typing elsewhere, or an <Esc> in
Normal mode away from the answer, leaves it streaming; an <Esc> on or next to it
cancels; :KznCancel always does."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

LINES = [f"line {i}" for i in range(1, 9)]


def streaming_on_line_5(nvim: Child, server: LoopbackServer) -> None:
    server.queue(Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(LINES)
    nvim.feed("5G$")
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[4] == "line 5kept ", what="the first token")


def ends_ok(nvim: Child, server: LoopbackServer) -> None:
    """The answer was not cancelled: it streams to its end."""
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines()[4] == "line 5kept lost"


def test_a_second_esc_after_typing_elsewhere_does_not_cancel(nvim: Child, server: LoopbackServer):
    streaming_on_line_5(nvim, server)
    nvim.feed("1GA # x<Esc><Esc>")
    assert nvim.lines()[0] == "line 1 # x"
    ends_ok(nvim, server)


def test_esc_next_to_the_answer_right_after_insert_mode_does_not_cancel(
    nvim: Child, server: LoopbackServer
):
    nvim.lua("vim.o.timeoutlen = 5000")
    streaming_on_line_5(nvim, server)
    nvim.feed("6GA # y<Esc><Esc>")
    ends_ok(nvim, server)


def test_esc_in_normal_mode_away_from_the_answer_does_not_cancel(
    nvim: Child, server: LoopbackServer
):
    streaming_on_line_5(nvim, server)
    nvim.feed("1G<Esc>8G<Esc>")
    ends_ok(nvim, server)


def test_esc_next_to_the_answer_cancels(nvim: Child, server: LoopbackServer):
    streaming_on_line_5(nvim, server)
    nvim.feed("6G<Esc>")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    assert nvim.lines()[4] == "line 5kept "


def test_kzncancel_away_from_the_answer_always_cancels(nvim: Child, server: LoopbackServer):
    streaming_on_line_5(nvim, server)
    nvim.feed("1G")
    nvim.nvim.command("KznCancel")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    assert nvim.lines()[4] == "line 5kept "
