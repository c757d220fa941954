"""What a new user tripped over, in a real Neovim: messages of one line, a notify
option, CRLF in a dos buffer, the debug view's q, its fenced code and following the
stream."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, json_reply, openai_events

BUILTIN = "vim.notify = _G.kzn_builtin_notify"


def kzn_messages(nvim: Child) -> list[str]:
    out = nvim.lua("return vim.fn.execute('messages')")
    return [line for line in out.split("\n") if line.startswith("kznllm")]


def test_a_long_error_takes_one_line_of_a_90_column_screen(nvim: Child, server: LoopbackServer):
    nvim.nvim.options["columns"] = 90
    nvim.lua(BUILTIN)
    why = "upstream exploded: " + "very long reason " * 20
    nvim.serve(server, json_reply(500, {"error": {"message": why}}))
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "error"
    [line] = [m for m in kzn_messages(nvim) if "HTTP 500" in m]
    assert nvim.lua("return vim.fn.strdisplaywidth(...)", line) < 90
    assert line.endswith("… :KznLog")  # where the rest is


def test_notify_errors_keeps_routine_lines_quiet_and_errors_shown(
    nvim: Child, server: LoopbackServer
):
    nvim.lua(BUILTIN)
    nvim.lua("require('kznllm').setup({ notify = 'errors' })")
    nvim.serve(
        server, Reply(chunks=openai_events(["ok"])), json_reply(401, {"error": {"message": "no"}})
    )
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert not [m for m in kzn_messages(nvim) if "done in" in m]
    nvim.set_lines(["", ""])
    nvim.nvim.command("KznFill again")
    assert nvim.wait_done(2)[1]["status"] == "error"
    assert [m for m in kzn_messages(nvim) if "HTTP 401" in m]


def test_crlf_in_an_answer_is_a_line_break_in_a_dos_buffer(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["first\r", "\nsecond\r\nthird"])))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.nvim.command("setlocal fileformat=dos")
    nvim.set_lines([""])
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["first", "second", "third"]


def test_the_debug_view_fences_code_follows_the_stream_and_q_closes_it(
    nvim: Child, server: LoopbackServer
):
    answer = [f"x{i} = {i}\n" for i in range(200)]
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.lua("vim.bo.filetype = 'python'")
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("1KznDebug more")
    assert nvim.wait_done()[0]["status"] == "ok"
    text = nvim.text()
    assert text.count("## Answer") == 1
    assert "## Answer\n\n````python\nx0 = 0\n" in text and text.endswith("x199 = 199\n````")
    last = nvim.lua("return vim.api.nvim_buf_line_count(0)")
    assert nvim.nvim.current.window.cursor[0] == last  # it followed the answer down
    wins = len(nvim.nvim.windows)
    nvim.feed("q")
    assert len(nvim.nvim.windows) == wins - 1
    assert nvim.lua("return vim.fn.reg_recording()") == ""
