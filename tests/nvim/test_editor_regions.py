"""Where answers go, in a real Neovim against real loopback servers: regions are extmarks
from the keypress (edits, other answers and undo in between never move the answer into
other text), several requests at once, exact undo, edits during a stream, placement in
normal mode, refusals up front (issue 12, invariants 1 and 4)."""

from __future__ import annotations

import pytest

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def prompt_open(nvim: Child) -> None:
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")


def shown(nvim: Child) -> list[str]:
    return [m for m in nvim.messages() if m.startswith("kznllm: ")]


def numbered(n: int) -> list[str]:
    return [f"line {i} " + "x" * (i % 7) for i in range(1, n + 1)]


# -- 1. regions are extmarks from the keypress -------------------------------------------


@pytest.mark.parametrize("keys", ["12GVj", "12G0wvjw"], ids=["linewise", "charwise"])
def test_a_selection_made_while_another_answer_streams_is_replaced_where_it_moved(
    nvim: Child, server: LoopbackServer, keys: str
):
    # the first answer streams at line 3 and, while the query prompt of the second is
    # open, adds five lines above the selection (and makes row 12 a short line)
    first = ["a1", "\na2\na3\na4\na5\nz"]
    server.queue(
        Reply(chunks=openai_events(first), pause_after=2),
        Reply(chunks=openai_events(["NEW"])),
    )
    nvim.use_server(server.base_url, placement="cursor")
    source = numbered(20)
    nvim.set_lines(source)
    nvim.lua("vim.api.nvim_win_set_cursor(0, {3, 0})")
    nvim.nvim.command("KznFill first")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[2] == "la1ine 3 xxx", what="the first token")
    nvim.feed(keys + " k")
    prompt_open(nvim)
    server.resume()
    done = nvim.wait_done()
    assert done[0]["status"] == "ok"
    nvim.feed("rewrite<CR>")
    done = nvim.wait_done(2)
    assert [d["status"] for d in done] == ["ok", "ok"]
    sent = server.requests[1].body["messages"][-1]["content"]
    lines = nvim.lines()
    answer = ["la1", "a2", "a3", "a4", "a5", "zine 3 xxx"]
    assert lines[:2] == source[:2] and lines[2:8] == answer
    if keys.startswith("12GV"):
        selection, replaced = "\n".join(source[11:13]), ["NEW"]
    else:  # from "12" on line 12 through the "x" after "13 " on line 13
        selection = source[11][5:] + "\n" + source[12][:9]
        replaced = [source[11][:5] + "NEW" + source[12][9:]]
    assert f"<selection>\n{selection}\n</selection>" in sent
    assert lines[8:] == source[3:11] + replaced + source[13:]
    assert not any("E5108" in m or "out of range" in m for m in nvim.messages())


def test_edits_between_the_keypress_and_enter_move_the_selection_with_them(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["NEW"])))
    nvim.set_lines(["one", "two", "three"])
    nvim.feed("2GV k")
    prompt_open(nvim)
    # while the prompt is open, something (another plugin, a job) edits the buffer
    nvim.lua("vim.api.nvim_buf_set_lines(0, 0, 0, true, {'added 1', 'added 2'})")
    nvim.lua("vim.api.nvim_buf_set_text(0, 4, 0, 4, 0, {'>> '})")
    nvim.feed("rewrite<CR>")
    assert nvim.wait_done()[0]["status"] == "ok"
    sent = server.requests[0].body["messages"][-1]["content"]
    assert "added 2\none\n<selection/>\n>> three" in sent  # the context as it is now
    assert nvim.lines() == ["added 1", "added 2", "one", "NEW", ">> three"]


@pytest.mark.parametrize("when", ["in-the-prompt", "before-the-first-token"])
def test_a_selection_changed_before_the_first_token_is_never_replaced(
    nvim: Child, server: LoopbackServer, when: str
):
    server.queue(Reply(chunks=openai_events(["NEW"]), pause_after=1))  # role only, then wait
    nvim.use_server(server.base_url)
    nvim.set_lines(["keep", "select me", "tail"])
    nvim.feed("2GV k")
    prompt_open(nvim)
    if when == "in-the-prompt":
        nvim.lua("vim.api.nvim_buf_set_text(0, 1, 0, 1, 6, {'edited'})")
        nvim.feed("rewrite<CR>")
        nvim.wait_for(lambda: shown(nvim), what="the refusal")
        assert shown(nvim) == [
            "kznllm: the selected text was changed before the request went out; nothing was sent"
        ]
        assert server.requests == []
        assert nvim.events("KznllmStart") == []
    else:
        nvim.feed("rewrite<CR>")
        server.wait_paused()
        nvim.lua("vim.api.nvim_buf_set_text(0, 1, 0, 1, 6, {'edited'})")
        done = nvim.wait_done()[0]  # cancelled by the edit itself, not by a token
        assert (done["status"], done["error"]) == (
            "cancelled",
            "the selected text was changed before the answer came; nothing was replaced",
        )
        server.wait_client_gone()
        server.resume()
    assert nvim.lines() == ["keep", "edited me", "tail"]
    assert nvim.marks() == []


def test_blockwise_with_a_line_added_above_before_the_first_token(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["N", "EW"]), pause_after=1))
    source = ["abcdef", "ghijkl", "mnopqr"]
    nvim.set_lines(source)
    nvim.feed("gg0ll<C-v>jl k")  # the block cd / ij
    prompt_open(nvim)
    nvim.feed("rewrite<CR>")
    server.wait_paused()
    nvim.feed("ggOthe user's new line<Esc>")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert "<selection>\ncd\nij\n</selection>" in server.requests[0].body["messages"][-1]["content"]
    assert nvim.lines() == ["the user's new line", "abNEWef", "ghkl", "mnopqr"]
    nvim.feed("u")
    assert nvim.lines() == ["the user's new line", *source]


# -- 2. several requests at once ----------------------------------------------------------


def test_a_request_overlapping_a_running_one_is_refused_at_the_keypress(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["A"]), pause_after=1))
    nvim.set_lines(["one", "two", "three", "four"])
    nvim.nvim.command("2,3KznFill first")
    server.wait_paused()
    nvim.feed("3GV k")  # inside the first request's selection
    assert nvim.nvim.api.get_mode()["mode"] == "n"  # no prompt
    nvim.feed("2G k")  # normal mode on a line of it
    assert nvim.nvim.api.get_mode()["mode"] == "n"
    busy = "kznllm: another answer is streaming there (<Esc> cancels it); nothing was sent"
    assert shown(nvim) == [busy, busy]
    assert len(server.requests) == 1
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["one", "A", "four"]


def test_two_answers_in_one_buffer_are_one_undo_step_and_redo_gives_them_back(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(chunks=openai_events(["A1", " A2", " A3"]), pause_after=2),
        Reply(chunks=openai_events(["B1", " B2", " B3"]), pause_after=2),
    )
    nvim.use_server(server.base_url)
    source = ["first", "", "middle", "", "last"]
    nvim.set_lines(source)
    nvim.lua("vim.bo.modified = false")
    nvim.feed("2G")
    nvim.nvim.command("KznFill a")  # on a blank line: the answer goes on it
    server.wait_requests(1)
    nvim.feed("4G")
    nvim.nvim.command("KznFill b")
    server.wait_paused(n=2)
    nvim.wait_for(lambda: nvim.lines()[1] == "A1" and nvim.lines()[3] == "B1", what="tokens")
    server.resume()
    assert [d["status"] for d in nvim.wait_done(2)] == ["ok", "ok"]
    both = ["first", "A1 A2 A3", "middle", "B1 B2 B3", "last"]
    assert nvim.lines() == both
    nvim.feed("u")
    assert nvim.lines() == source
    nvim.feed("<C-r>")
    assert nvim.lines() == both
    nvim.feed("u")
    assert nvim.lines() == source


def test_undo_with_two_answers_streaming_cancels_both_and_redo_restores_the_text(
    nvim: Child, server: LoopbackServer
):
    chunks = openai_events(["A1", "A2"], done=False)[:2]
    server.queue(
        Reply(chunks=chunks, pause_after=2, end="stall"),
        Reply(chunks=openai_events(["B1", "B2"], done=False)[:2], pause_after=2, end="stall"),
    )
    nvim.use_server(server.base_url)
    nvim.set_lines(["one", "two"])
    nvim.nvim.command("1 | KznFill a")  # on a new line below each
    nvim.wait_for(lambda: nvim.lines() == ["one", "A1", "two"], what="the first answer")
    nvim.nvim.command("3 | KznFill b")
    server.wait_paused(n=2)
    with_both = ["one", "A1", "two", "B1"]
    nvim.wait_for(lambda: nvim.lines() == with_both, what="both first tokens")
    nvim.feed("u")
    done = nvim.wait_done(2)
    assert [d["status"] for d in done] == ["cancelled", "cancelled"]
    assert {d["error"] for d in done} == {
        "undone while streaming; the rest of the answer was dropped"
    }
    assert nvim.lines() == ["one", "two"]
    server.resume()
    server.wait_client_gone(n=2)
    nvim.feed("<C-r>")
    assert nvim.lines() == with_both
    assert nvim.marks() == []


def test_two_answers_brought_together_by_a_deletion_never_write_into_each_other(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(chunks=openai_events(["A1", "A2"]), pause_after=2),
        Reply(chunks=openai_events(["B1"]), pause_after=1),  # the role, then wait
    )
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(["x--y"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 0})")
    nvim.nvim.command("KznFill a")  # after the x
    nvim.wait_for(lambda: nvim.lines() == ["xA1--y"], what="the first answer's first token")
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 4})")
    nvim.nvim.command("KznFill b")  # after the second -
    server.wait_paused(n=2)
    nvim.lua("vim.api.nvim_buf_set_text(0, 0, 3, 0, 5, {''})")  # the -- between them
    assert nvim.lines() == ["xA1y"]
    server.resume()  # whichever writes first, each answer stays whole, in its order
    assert [d["status"] for d in nvim.wait_done(2)] == ["ok", "ok"]
    assert nvim.lines() == ["xA1A2B1y"]


# -- 3. undo is exact ----------------------------------------------------------------------


@pytest.mark.parametrize("undo", ["u", "g-", ":undo 1<CR>"])  # 1: the set_lines
def test_undo_then_a_new_edit_before_the_next_token_gets_no_more_of_the_answer(
    nvim: Child, server: LoopbackServer, undo: str
):
    server.queue(Reply(chunks=openai_events(["one ", "two ", "three"]), pause_after=2))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(["base"])
    nvim.lua("vim.bo.modified = false")
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 3})")
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "baseone ", what="the first token")
    nvim.feed(undo)
    nvim.feed("A typed<Esc>")  # a new edit, before the next token
    # the undo alone ends the request (no token needed to notice it); the rest of the
    # answer is released only then, so it can never complete before the cancel
    done = nvim.wait_done()[0]
    assert (done["status"], done["error"]) == (
        "cancelled",
        "undone while streaming; the rest of the answer was dropped",
    )
    server.resume()
    server.wait_client_gone()
    assert nvim.lines() == ["base typed"]
    assert shown(nvim) == [
        "kznllm: cancelled: undone while streaming; the rest of the answer was dropped"
    ]
    assert nvim.marks() == []
    nvim.feed("u")
    assert nvim.lines() == ["base"]


# -- 4. edits during a stream --------------------------------------------------------------


def part1_streaming_on_line_2(nvim: Child, server: LoopbackServer) -> None:
    """An answer "part1 part2" on the blank line 2 of top / (blank) / bottom, paused
    after "part1 ", then the user types "mine" on a new last line."""
    nvim.serve(server, Reply(chunks=openai_events(["part1 ", "part2"]), pause_after=2))
    nvim.set_lines(["top", "", "bottom"])
    nvim.feed("2G")
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[1] == "part1 ", what="the first token")
    nvim.feed("Gomine<Esc>")  # the user types elsewhere in the buffer


def test_an_edit_during_a_stream_is_its_own_undo_step_between_the_answers_parts(
    nvim: Child, server: LoopbackServer
):
    part1_streaming_on_line_2(nvim, server)
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["top", "part1 part2", "bottom", "mine"]
    # each undo step holds one author's text: the answer's rest, the edit, its start
    nvim.feed("u")
    assert nvim.lines() == ["top", "part1 ", "bottom", "mine"]
    nvim.feed("u")
    assert nvim.lines() == ["top", "part1 ", "bottom"]
    nvim.feed("u")
    assert nvim.lines() == ["top", "", "bottom"]


def test_undoing_only_your_own_edit_leaves_the_answer_streaming(
    nvim: Child, server: LoopbackServer
):
    part1_streaming_on_line_2(nvim, server)
    nvim.feed("u")  # takes back "mine", not the answer
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["top", "part1 part2", "bottom"]


def test_an_edit_inside_the_streaming_answer_is_kept_and_the_rest_follows(
    nvim: Child, server: LoopbackServer
):
    nvim.set_lines([""])
    nvim.fill_paused(server, ["def f(x):", " return"])
    nvim.feed("0fxry")  # x -> y, inside the answer
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["def f(y): return"]


# -- 5. placement in normal mode ----------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "lines", "cursor", "expected"),
    [
        ("auto", ["def f():", "", "x"], (2, 0), ["def f():", "A", "B", "x"]),
        ("auto", ["    ", "x"], (1, 2), ["    A", "B", "x"]),
        ("auto", ["return s", "x"], (1, 7), ["return s", "A", "B", "x"]),  # end of line
        ("auto", ["    total = 1", "x"], (1, 6), ["    total = 1", "A", "B", "x"]),  # mid-word
        ("auto", ["last line"], (1, 2), ["last line", "A", "B"]),
        ("below", ["", "x"], (1, 0), ["", "A", "B", "x"]),
        ("above", ["one", "two"], (2, 1), ["one", "A", "B", "two"]),
        ("cursor", ["abcd"], (1, 1), ["abA", "Bcd"]),
    ],
    ids=[
        "auto-blank",
        "auto-blank-indent",
        "auto-eol",
        "auto-mid",
        "auto-last",
        "below",
        "above",
        "cursor",
    ],
)
def test_placement_in_normal_mode(
    nvim: Child, server: LoopbackServer, placement, lines, cursor, expected
):
    # the answer's final newline is not an extra empty line
    server.queue(
        Reply(chunks=openai_events(["A\n", "B\n"] if placement != "cursor" else ["A\n", "B"]))
    )
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ placement = ... })", placement)
    nvim.set_lines(lines)
    nvim.lua("vim.bo.modified = false")
    nvim.lua("vim.api.nvim_win_set_cursor(0, ...)", list(cursor))
    nvim.feed(" k")
    prompt_open(nvim)
    nvim.feed("go<CR>")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == expected
    nvim.feed("u")
    assert nvim.lines() == lines  # one undo step, the new line included


def test_the_prompt_marks_the_spot_where_the_answer_will_go(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["    return sum(xs)"])))
    nvim.set_lines(["def total(xs):", "x = 1"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 0})")  # on the d of def
    nvim.nvim.command("KznFill implement")
    assert nvim.wait_done()[0]["status"] == "ok"
    sent = server.requests[0].body["messages"][-1]["content"]
    assert "def total(xs):\n<cursor/>x = 1" in sent  # not "d<cursor/>ef total"
    assert nvim.lines() == ["def total(xs):", "    return sum(xs)", "x = 1"]


def test_a_presets_placement_wins_over_setup(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["X"])))
    nvim.use_server(server.base_url, placement="above")
    nvim.lua("require('kznllm').setup({ placement = 'below' })")
    nvim.set_lines(["one"])
    nvim.nvim.command("KznFill go")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["X", "one"]


@pytest.mark.parametrize("placement", ["split", "tab"])
def test_split_and_tab_placement_write_to_a_scratch_buffer(
    nvim: Child, server: LoopbackServer, placement: str
):
    server.queue(Reply(chunks=openai_events(["def f():\n", "    pass"])))
    nvim.use_server(server.base_url, placement=placement)
    nvim.lua("vim.bo.filetype = 'python'")
    nvim.set_lines(["x = 1"])
    nvim.lua("vim.bo.modified = false")
    source = nvim.nvim.current.buffer.number
    tabs = len(nvim.nvim.tabpages)
    nvim.nvim.command("KznFill go")
    assert nvim.wait_done()[0]["status"] == "ok"
    scratch = nvim.nvim.current.buffer
    assert scratch.number != source
    assert scratch[:] == ["def f():", "    pass"]
    assert scratch.options["filetype"] == "python"
    assert scratch.options["buftype"] == "nofile"
    assert len(nvim.nvim.tabpages) == tabs + (placement == "tab")
    assert nvim.lines(source) == ["x = 1"]
    assert not nvim.lua("return vim.bo[...].modified", source)


# -- 7. refused up front -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["help", "nomodifiable", "terminal"])
def test_no_request_is_sent_for_a_buffer_that_cannot_be_written(
    nvim: Child, server: LoopbackServer, kind: str
):
    nvim.use_server(server.base_url)
    if kind == "help":
        nvim.nvim.command("help")
        nvim.nvim.command("only")
        why = "this buffer cannot take an answer ('modifiable' is off)"
    elif kind == "nomodifiable":
        nvim.set_lines(["text"])
        nvim.lua("vim.bo.modifiable = false")
        why = "this buffer cannot take an answer ('modifiable' is off)"
    else:
        nvim.lua(
            "local b = vim.api.nvim_create_buf(true, false) vim.api.nvim_set_current_buf(b)"
            " vim.api.nvim_open_term(b, {})"
        )
        why = "a terminal buffer cannot take an answer"
    nvim.feed(" k")
    assert nvim.nvim.api.get_mode()["mode"] in ("n", "t", "nt")  # no prompt opened
    nvim.nvim.command("KznFill go")
    assert shown(nvim) == [f"kznllm: {why}; nothing was sent"] * 2
    assert server.requests == []
    assert nvim.events() == []
    assert nvim.lua("return require('kznllm.host').chan") is None  # not even started


# -- 6. <Esc> keeps the user's own mapping --------------------------------------------------


@pytest.mark.parametrize("kind", ["global-rhs", "buffer-lua", "other-cancel-key"])
def test_escape_cancels_and_still_does_what_the_users_own_mapping_does(
    nvim: Child, server: LoopbackServer, kind: str
):
    nvim.serve(server, Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2))
    nvim.lua("vim.g.esc = 0 vim.fn.setreg('/', 'kept') vim.o.hlsearch = true")
    key = "<Esc>"
    if kind == "buffer-lua":
        nvim.lua(
            "vim.keymap.set('n', '<Esc>', function() vim.g.esc = vim.g.esc + 1 end,"
            " { buffer = true })"
        )
    else:  # kickstart.nvim's mapping, counted
        nvim.lua("vim.keymap.set('n', '<Esc>', '<Cmd>nohlsearch<Bar>let g:esc += 1<CR>')")
    if kind == "other-cancel-key":
        nvim.lua("require('kznllm').setup({ keymaps = { cancel = '<C-c>' } })")
        key = "<C-c>"
    esc_map = (
        "local m = vim.fn.maparg('<Esc>', 'n', false, true)"
        " m.callback = m.callback and tostring(m.callback) return m"
    )
    before = nvim.lua(esc_map)
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: "kept" in nvim.text(), what="the first token")
    if kind == "other-cancel-key":
        assert nvim.lua(esc_map) == before
    nvim.feed(key)
    done = nvim.wait_done()[0]
    assert done["status"] == "cancelled"
    assert nvim.text() == "kept "
    want = 0 if kind == "other-cancel-key" else 1
    nvim.wait_for(lambda: nvim.nvim.vars["esc"] == want, what="the user's <Esc> to run")
    # with the request over, the user's mapping is back exactly as it was
    assert nvim.lua(esc_map) == before
    nvim.feed("<Esc>")
    assert nvim.nvim.vars["esc"] == want + 1
