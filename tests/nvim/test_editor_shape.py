"""Answers shaped for the file they land in, in a real Neovim against a loopback server:
a chatty answer at the cursor of a Python class lands as indented code with its prose
as comments and no fence; a markdown buffer keeps it as it came; a replace answered
dedented gets the selection's indentation back; one undo still takes it all back, and a
cancel keeps the shaped text so far. History keeps the answer as the model sent it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kznllm_py.history.store import HistoryStore
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

CLASS = [
    "class Greeter:",
    "    def hello(self):",
    "        return 'hi'",
    "",
    "    def bye(self):",
    "        return 'bye'",
]
# the fence is split over chunks, as a stream splits it
CHATTY = [
    "Sure! Here is a helper:\n\n`",
    "``py",
    "thon\ndef answer(self):\n    return 42\n``",
    "`\n\nThis returns 42.",
]
SHAPED = [
    "class Greeter:",
    "    def hello(self):",
    "        return 'hi'",
    "    # Sure! Here is a helper:",
    "",
    "    def answer(self):",
    "        return 42",
    "",
    "    # This returns 42.",
    "    def bye(self):",
    "        return 'bye'",
]


def yap_on_line_4(nvim: Child, filetype: str) -> None:
    nvim.set_lines(CLASS)
    nvim.nvim.command(f"setlocal filetype={filetype} expandtab shiftwidth=4")
    nvim.lua("vim.api.nvim_win_set_cursor(0, {4, 0})")  # the blank line between methods
    nvim.nvim.command("KznFill add a helper")


def history_answer(nvim: Child) -> str:
    """The answer history recorded for the one fill made, once it is finished."""
    path = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"

    def entry() -> Any:
        rows = HistoryStore(path).list() if path.exists() else []
        return rows[0] if rows and rows[0].status != "running" else None

    got = HistoryStore(path).get(nvim.wait_for(entry, what="the history entry").id)
    assert got is not None
    return got.response


def test_yap_in_a_python_class_lands_as_indented_code_with_comments_and_no_fence(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(CHATTY)))
    yap_on_line_4(nvim, "python")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == SHAPED
    # the model was asked for code in the file's syntax
    system = server.requests[0].body["messages"][0]["content"]
    assert "no markdown code fences" in system and "# a note" in system
    # one undo takes the whole answer back, and nothing of the user's
    nvim.feed("u")
    assert nvim.lines() == CLASS


def test_the_same_answer_in_a_markdown_buffer_lands_unchanged(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(CHATTY)))
    yap_on_line_4(nvim, "markdown")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines()[3:-2] == "".join(CHATTY).split("\n")
    system = server.requests[0].body["messages"][0]["content"]
    assert "no markdown code fences" not in system


def test_shape_false_on_the_preset_leaves_the_answer_as_it_came(nvim: Child, server):
    server.queue(Reply(chunks=openai_events(CHATTY)))
    nvim.use_server(server.base_url, shape=False)
    yap_on_line_4(nvim, "python")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines()[3:-2] == "".join(CHATTY).split("\n")


def test_a_replace_answered_dedented_keeps_the_selections_indentation(nvim: Child, server):
    server.queue(
        Reply(chunks=openai_events(["if self.x:\n", "    return 'hi'\n", "return None\n"]))
    )
    nvim.use_server(server.base_url)
    nvim.set_lines(CLASS)
    nvim.nvim.command("setlocal filetype=python expandtab")
    nvim.nvim.command("3KznFill guard it")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines()[2:5] == [
        "        if self.x:",
        "            return 'hi'",
        "        return None",
    ]
    nvim.feed("u")
    assert nvim.lines() == CLASS


def test_a_replace_in_a_tab_indented_buffer_is_reindented_with_tabs(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["if (x) {\n  y();\n}\n"])))
    nvim.set_lines(["int f() {", "\tz();", "}"])
    nvim.nvim.command("setlocal filetype=c noexpandtab")
    nvim.nvim.command("2KznFill guard it")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["int f() {", "\tif (x) {", "\t\ty();", "\t}", "}"]


def test_a_cancel_mid_stream_keeps_the_shaped_text_so_far_and_history_the_raw(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events([*CHATTY[:3], "`\n\nlost"]), pause_after=4))
    yap_on_line_4(nvim, "python")
    server.wait_paused()
    nvim.wait_for(lambda: "def answer" in nvim.text(), what="the shaped code")
    nvim.feed("<Esc>")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    # the last line ("    return 42", not yet ended by a line break) lands at the cancel
    assert nvim.lines()[3:7] == SHAPED[3:7]
    assert "```" not in nvim.text()
    assert history_answer(nvim) == "".join(CHATTY[:3])


def test_a_chatty_replace_is_cut_to_its_code_at_the_selections_indentation(nvim: Child, server):
    chatty = ["Here is the fix:\n\n```python\n", "return 'hello'\n```\n\nDone."]
    nvim.serve(server, Reply(chunks=openai_events(chatty)))
    nvim.set_lines(CLASS)
    nvim.nvim.command("setlocal filetype=python expandtab")
    nvim.nvim.command("3KznFill say hello")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: "Done" not in nvim.text(), what="the cut to the code")
    assert nvim.lines() == [*CLASS[:2], "        return 'hello'", *CLASS[3:]]
    nvim.feed("u")
    assert nvim.lines() == CLASS


def test_kznapply_puts_a_dedented_answer_at_the_selections_indentation(nvim: Child, server):
    """The debug view keeps the answer as it came; :KznApply lands it as the replace's
    stream would have: at the selection's indentation."""
    nvim.serve(server, Reply(chunks=openai_events(["if self.x:\n    return 'hi'\n"])))
    nvim.set_lines(CLASS)
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("3KznDebug guard it")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry")
    assert "\nif self.x:\n    return 'hi'\n" in nvim.text()  # the view: as it came
    nvim.nvim.command("KznApply")
    want = [*CLASS[:2], "        if self.x:", "            return 'hi'", *CLASS[3:]]
    nvim.wait_for(lambda: nvim.lines(source) == want, what="the apply, re-indented")


def test_a_crlf_answer_in_a_dos_buffer_is_shaped_without_carriage_returns(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events([c.replace("\n", "\r\n") for c in CHATTY])))
    nvim.nvim.command("setlocal fileformat=dos")
    yap_on_line_4(nvim, "python")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == SHAPED
