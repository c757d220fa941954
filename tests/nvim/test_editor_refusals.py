"""No typed key lost or run as a command (issue 27, item 3): every refusal comes before
the query prompt opens, a follow-up asked while an answer streams is sent once it ends,
and a refusal stays on the screen when an answer elsewhere ends right after it."""

from __future__ import annotations

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def test_a_follow_up_typed_while_the_debug_stream_ends_is_sent_not_run_as_commands(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(chunks=openai_events(["first ", "answer"]), pause_after=2),
        Reply(chunks=openai_events(["second answer"])),
    )
    nvim.use_server(server.base_url)
    nvim.nvim.command("KznDebug hello")
    nvim.wait_for(lambda: "first" in nvim.text(), what="the first answer to stream")
    debug_buf = nvim.nvim.current.buffer.number
    before = nvim.lines()
    # <leader>k in the view while its answer still streams, then the query, typed on
    nvim.feed(" k")
    nvim.feed("please fix it<CR>")
    assert nvim.lines() == before  # nothing of it ran as Normal-mode commands (p, l, e, ...)
    assert nvim.nvim.api.get_mode()["mode"] == "n"
    server.resume()  # the first answer ends; the follow-up goes out then
    done = nvim.wait_done(2)
    assert [d["status"] for d in done] == ["ok", "ok"]
    assert all(d["bufnr"] == debug_buf for d in done)
    assert server.requests[1].body["messages"][-1] == {"role": "user", "content": "please fix it"}
    text = nvim.text(debug_buf)
    assert "## You\n\nplease fix it" in text and text.rstrip().endswith("second answer")


def test_a_missing_key_is_refused_at_the_keypress_before_the_prompt(
    nvim: Child, server: LoopbackServer
):
    nvim.use_server_without_key(server.base_url, "KZN_REFUSAL_UNSET_KEY")
    nvim.lua("_G.asked = 0; vim.ui.input = function() _G.asked = _G.asked + 1 end")
    nvim.set_lines(["x = 1"])
    nvim.feed(" k")
    assert nvim.lua("return _G.asked") == 0  # no prompt opened: nothing typed is lost
    assert any(
        m.startswith("kznllm: set KZN_REFUSAL_UNSET_KEY for preset test") for m in nvim.messages()
    )
    nvim.feed("V k")
    assert nvim.lua("return _G.asked") == 0
    assert nvim.lines() == ["x = 1"] and server.requests == []


def test_a_refusal_is_not_covered_by_the_done_line_of_the_answer_it_refused_for(
    nvim: Child, server: LoopbackServer
):
    nvim.lua("vim.notify = _G.kzn_builtin_notify")  # Neovim's own: the echo area
    nvim.serve(server, Reply(chunks=openai_events(["a", "b"]), pause_after=2))
    nvim.set_lines(["one", "two"])
    nvim.nvim.command("1,2KznFill rewrite")
    nvim.wait_for(lambda: nvim.lines()[0].startswith("a"), what="the answer to stream")
    nvim.nvim.command("%KznFill again")  # overlaps the streaming answer: refused
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    said = nvim.nvim.api.exec2("messages", {"output": True})["output"].splitlines()
    assert "another answer is streaming there" in said[-1]
    log = "\n".join(nvim.lua("return require('kznllm.notify').log_lines()"))
    assert "done in" in log  # kept for :KznLog


def test_a_setup_that_gives_the_key_is_not_refused_on_the_hosts_older_word(
    nvim: Child, server: LoopbackServer
):
    # the host said the key was missing; a setup() then gives one, and a fill comes
    # before the host's reply to it: the editor must not refuse on the old word
    nvim.use_server_without_key(server.base_url, "KZN_REFUSAL_UNSET_KEY")
    server.queue(Reply(chunks=openai_events(["fine"])))
    nvim.set_lines(["x = 1"])
    # one request: the setup() and the fill reach the editor before any reply can
    nvim.lua(
        "require('kznllm').setup({ presets = { ... } }) require('kznllm').state.preset = 'test'"
        " vim.cmd('KznFill go')",
        {
            "id": "test",
            "provider": "openai",
            "model": "m",
            "base_url": server.base_url,
            "api_key": False,
        },
    )
    done = nvim.wait_done()[0]
    assert done["status"] == "ok", done
    assert len(server.requests) == 1
