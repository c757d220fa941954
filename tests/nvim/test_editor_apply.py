""":KznApply in a real Neovim against a loopback server: the answer of a debug view, an
opened history entry or a re-run goes in place of the code it was asked about, tracked
by extmarks while the buffer lives and found again in its file for an earlier session."""

from __future__ import annotations

from pathlib import Path

from kznllm_py.history import HistoryStore
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SOURCE = ["import os", "def f(x):", "    return x+1", "print(f(1))"]


def debug_then_apply(nvim: Child, server: LoopbackServer, answer: str) -> int:
    nvim.serve(server, Reply(chunks=openai_events([answer])))
    nvim.set_lines(SOURCE)
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("2,3KznDebug tidy")
    done = nvim.wait_done()[0]
    assert done["status"] == "ok", done
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry")
    return source


def test_apply_from_the_debug_view_replaces_the_selection_where_it_moved(
    nvim: Child, server: LoopbackServer
):
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    # lines added above the selection since: the extmarks follow it
    nvim.lua("vim.api.nvim_buf_set_lines(..., 0, 0, true, { '# new', '# lines' })", source)
    nvim.nvim.command("KznApply")
    nvim.wait_for(lambda: nvim.lines(source)[4] == "    return x + 1", what="the apply")
    assert nvim.lines(source) == ["# new", "# lines", "import os", "def f(x):",
                                  "    return x + 1", "print(f(1))"]  # fmt: skip
    assert nvim.nvim.current.buffer.number == source
    nvim.feed("u")
    assert nvim.lines(source) == ["# new", "# lines", *SOURCE]


def test_apply_refuses_when_the_selected_code_changed(nvim: Child, server: LoopbackServer):
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    nvim.lua("vim.api.nvim_buf_set_lines(..., 2, 3, true, { '    return x+2' })", source)
    nvim.nvim.command("KznApply")
    nvim.wait_for(lambda: any("cannot apply" in m for m in nvim.messages()), what="refusal")
    assert nvim.lines(source) == ["import os", "def f(x):", "    return x+2", "print(f(1))"]


def test_apply_from_an_earlier_session_finds_the_code_in_its_file(
    tmp_path: Path, server: LoopbackServer
):
    path = tmp_path / "m.py"
    path.write_text("\n".join(SOURCE) + "\n")
    with Child(tmp_path) as first:
        server.queue(Reply(chunks=openai_events(["def f(x):\n    return x + 1\n"])))
        first.use_server(server.base_url)
        first.nvim.command(f"edit {path}")
        first.nvim.command("2,3KznFill tidy")
        done = first.wait_done()[0]
        assert done["status"] == "ok", done
        first.wait_for(lambda: first.lua("return vim.b.kznllm_entry") or True)
    with Child(tmp_path) as again:  # a restart: the same XDG dirs
        again.nvim.command(f"edit {path}")  # the file as it was before the fill
        again.lua("vim.api.nvim_buf_set_lines(0, 0, -1, true, ...)", SOURCE)
        again.nvim.command("write")
        again.nvim.command("KznHistory")
        again.wait_for(lambda: again.lua(
            "local s = require('kznllm.sidebar').state return #vim.tbl_filter("
            "function(x) return x ~= 0 end, s.rows) > 0"), what="the entries")  # fmt: skip
        row = again.lua(
            "for i, id in ipairs(require('kznllm.sidebar').state.rows) do"
            " if id ~= 0 then return i end end"
        )
        again.lua("vim.api.nvim_win_set_cursor(0, { ..., 0 })", row)
        again.feed("<CR>")
        again.wait_for(lambda: again.lua("return vim.b.kznllm_entry"), what="the entry view")
        again.nvim.command("KznApply")
        # the file's buffer shows, with the answer where the recorded code stood
        again.wait_for(lambda: again.lines()[2] == "    return x + 1", what="the apply")
        assert again.lines() == ["import os", "def f(x):", "    return x + 1", "print(f(1))"]
        assert Path(again.nvim.current.buffer.name).resolve() == path.resolve()


def test_apply_with_review_on_opens_a_review_that_gr_rejects(nvim: Child, server: LoopbackServer):
    nvim.lua("require('kznllm').setup({ review = true })")
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    nvim.nvim.command("KznApply")
    nvim.wait_for(
        lambda: nvim.lua("return vim.tbl_count(require('kznllm.review').reviews)") == 1,
        what="the review",
    )
    assert nvim.nvim.current.buffer.number == source
    assert nvim.lines(source)[2] == "    return x + 1"
    nvim.feed("gB")
    assert nvim.lines(source) == SOURCE


def test_apply_refuses_code_that_stands_twice_in_its_file(
    tmp_path: Path, nvim: Child, server: LoopbackServer
):
    path = tmp_path / "twice.py"
    path.write_text("\n".join(SOURCE) + "\n")
    nvim.serve(server, Reply(chunks=openai_events(["def f(x):\n    return x + 1\n"])))
    nvim.nvim.command(f"edit {path}")
    nvim.nvim.command("2,3KznFill tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    # the file now holds the original code twice (and not the answer), neither of them
    # at the lines it was asked about
    nvim.set_lines(["# new", *SOURCE, *SOURCE[1:3]])
    nvim.open_newest_entry()
    nvim.nvim.command("KznApply")
    nvim.wait_for(
        lambda: any("more than once (lines 3, 6)" in m for m in nvim.messages()),
        what="the refusal",
    )
    assert nvim.lua("return vim.fn.getbufline(vim.fn.bufnr('twice.py'), 1, '$')") == [
        "# new",
        *SOURCE,
        *SOURCE[1:3],
    ]


# -- only what finished ---------------------------------------------------------------------

FUNCTION = ["def f(x):", "    y = x * 2", "    z = y + 1", "    w = z - 3", "    return w"]


def store_of(nvim: Child) -> HistoryStore:
    data = Path(nvim.lua("return vim.fn.stdpath('data')"))
    return HistoryStore(data / "kznllm" / "history.sqlite3")


def entry_done(nvim: Child, status: str) -> int:
    """The conversation buffer's entry id, once history has it ended as `status`."""
    store = store_of(nvim)

    def ended() -> int:
        entry_id = nvim.lua("return vim.b.kznllm_entry") or 0
        got = store.get(entry_id) if entry_id else None
        return entry_id if got is not None and got.status == status else 0

    return nvim.wait_for(ended, what=f"the entry, {status}")


def said(nvim: Child, text: str) -> str:
    return nvim.wait_for(
        lambda: next((m for m in nvim.messages() if text in m), ""), what=f"a message {text!r}"
    )


def debug_keys(nvim: Child, keys: str, query: str) -> None:
    """Select with `keys`, <leader>K, type the query at the prompt."""
    nvim.ask(f"{keys} K", query)


def test_a_cancelled_answer_is_refused_and_bang_applies_it(nvim: Child, server: LoopbackServer):
    # the answer streams two of its lines, then the user cancels it
    server.queue(Reply(chunks=openai_events(["def f(x):\n", "    return x\n", "# more"]),
                       pause_after=3))  # fmt: skip
    nvim.use_server(server.base_url)
    nvim.set_lines([*FUNCTION, "print(f(1))"])
    source = nvim.nvim.current.buffer.number
    debug_keys(nvim, "ggV4j", "tidy")
    server.wait_paused()
    view = nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_debug and vim.fn.bufnr()"))
    nvim.wait_for(lambda: "    return x" in nvim.lines(view), what="the partial answer")
    nvim.nvim.command("KznCancel")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    server.resume()
    entry = entry_done(nvim, "cancelled")
    nvim.nvim.command("KznApply")
    msg = said(nvim, "was cancelled")
    assert msg == (
        f"kznllm: #{entry} was cancelled: its answer may be incomplete; nothing was applied"
        " (:KznApply! applies it anyway)"
    )
    assert nvim.lines(source) == [*FUNCTION, "print(f(1))"]
    nvim.nvim.command("KznApply!")
    nvim.wait_for(lambda: nvim.lines(source)[1] == "    return x", what="the forced apply")
    assert nvim.lines(source) == ["def f(x):", "    return x", "print(f(1))"]
    assert said(nvim, "applied (u") == (
        f"kznllm: #{entry} applied (u takes it back); was cancelled, applied as it is"
    )
    nvim.feed("u")
    assert nvim.lines(source) == [*FUNCTION, "print(f(1))"]


def test_an_answer_whose_stream_broke_is_refused(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["def f(x):\n", "    return x\n"], done=False)[:3],
                       end="disconnect"))  # fmt: skip
    nvim.use_server(server.base_url)
    nvim.set_lines(FUNCTION)
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("1,5KznDebug tidy")
    assert nvim.wait_done()[0]["status"] == "error"
    entry = entry_done(nvim, "error")
    nvim.nvim.command("KznApply")
    assert said(nvim, f"#{entry} ended in an error (").endswith("(:KznApply! applies it anyway)")
    assert nvim.lines(source) == FUNCTION


def test_apply_while_the_answer_streams_is_refused(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["def f(x):\n", "rest"]), pause_after=2))
    nvim.set_lines(FUNCTION)
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("1,5KznDebug tidy")
    server.wait_paused()
    # the view knows its entry once the first text landed (the server's pause alone
    # does not say the editor got that far)
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the view's entry")
    nvim.nvim.command("KznApply")
    said(nvim, "the answer is still streaming here: nothing was applied")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines(source) == FUNCTION


# -- conversations ------------------------------------------------------------------------


def follow_up(nvim: Child, server: LoopbackServer, query: str, answer: str, n: int) -> int:
    """In the conversation buffer: <leader>k, the follow-up query; its entry id."""
    before = nvim.lua("return vim.b.kznllm_entry")
    server.queue(Reply(chunks=openai_events([answer])))
    nvim.feed(" k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the follow-up prompt")
    nvim.feed(f"{query}<CR>")
    assert nvim.wait_done(n)[n - 1]["status"] == "ok"
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry") != before, what="its entry")
    return entry_done(nvim, "ok")


def test_a_follow_ups_code_goes_where_the_first_request_asked(nvim: Child, server: LoopbackServer):
    nvim.serve(
        server, Reply(chunks=openai_events(["def f(x):\n    y = x * 2\n    return y - 2\n"]))
    )
    nvim.set_lines(["import os", *FUNCTION, "print(f(1))"])
    source = nvim.nvim.current.buffer.number
    debug_keys(nvim, "jV4j", "tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    entry_done(nvim, "ok")
    shorter = follow_up(
        nvim, server, "make it shorter", "```python\ndef f(x):\n    return 2 * x - 2\n```", 2
    )
    # the user edits above the selection meanwhile: the extmarks follow it
    nvim.lua("vim.api.nvim_buf_set_lines(..., 0, 0, true, { '# top' })", source)
    nvim.nvim.command("KznApply")
    nvim.wait_for(lambda: nvim.lines(source)[3] == "    return 2 * x - 2", what="the apply")
    assert nvim.lines(source) == ["# top", "import os", "def f(x):", "    return 2 * x - 2",
                                  "print(f(1))"]  # fmt: skip
    assert said(nvim, "applied (u") == f"kznllm: #{shorter} applied (u takes it back)"


def test_a_prose_follow_up_applies_the_code_before_it(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["def f(x):\n    return 2 * x - 2\n"])))
    nvim.set_lines(FUNCTION)
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("1,5KznDebug tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    first = entry_done(nvim, "ok")
    why = follow_up(nvim, server, "why is that right?", "Because y + 1 - 3 is y - 2.", 2)
    nvim.nvim.command("KznApply")
    nvim.wait_for(lambda: nvim.lines(source) == ["def f(x):", "    return 2 * x - 2"])
    assert said(nvim, "applied (u") == (
        f"kznllm: #{first} applied (u takes it back); the latest code of the conversation;"
        f" #{why} had none"
    )


# -- without the source buffer: whole lines, blocks --------------------------------------


def in_history(nvim: Child, entry_id: int) -> None:
    """Open `entry_id` from the history sidebar (as after a restart)."""
    if not nvim.lua("return require('kznllm.sidebar').win() ~= nil"):
        nvim.nvim.command("KznHistory")
    rows = "return require('kznllm.sidebar').state.rows or {}"
    nvim.wait_for(lambda: entry_id in nvim.lua(rows), what="the entry in the sidebar")
    row = nvim.lua("return vim.fn.index(require('kznllm.sidebar').state.rows, ...) + 1", entry_id)
    nvim.lua(
        "local w = require('kznllm.sidebar').win() vim.api.nvim_set_current_win(w)"
        " vim.api.nvim_win_set_cursor(w, { ..., 0 })",
        row,
    )
    nvim.feed("<CR>")
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry") == entry_id, what="the entry")


def first_session(
    tmp_path: Path, server: LoopbackServer, path: Path, keys: str, answer: str
) -> int:
    """A debug request on `path` selected with `keys`; Neovim quits. The entry's id."""
    with Child(tmp_path) as first:
        server.queue(Reply(chunks=openai_events([answer])))
        first.use_server(server.base_url)
        first.nvim.command(f"edit {path}")
        debug_keys(first, keys, "tidy")
        assert first.wait_done()[0]["status"] == "ok"
        return entry_done(first, "ok")


def test_after_a_restart_a_moved_line_matches_whole_never_inside_a_longer_one(
    tmp_path: Path, server: LoopbackServer
):
    path = tmp_path / "r.py"
    path.write_text("def f(x):\n    return 10\ndef g(x):\n    return 1\n")
    entry = first_session(tmp_path, server, path, "4GV", "    return 2\n")
    # edited since, in a later session: a line above, so it moved
    path.write_text("# top\ndef f(x):\n    return 10\ndef g(x):\n    return 1\n")
    with Child(tmp_path) as again:
        in_history(again, entry)
        again.nvim.command("KznApply")
        said(again, "applied (u")
        assert again.lines() == ["# top", "def f(x):", "    return 10", "def g(x):", "    return 2"]
        assert Path(again.nvim.current.buffer.name).resolve() == path.resolve()
        # a second time: it is there already
        in_history(again, entry)
        again.nvim.command("KznApply")
        assert said(again, "already") == (
            f"kznllm: #{entry} is already applied: the answer stands at line 5 of r.py"
            " (u takes it back)"
        )


def test_after_a_restart_a_charwise_selection_must_keep_its_lines(
    tmp_path: Path, server: LoopbackServer
):
    path = tmp_path / "c.py"
    path.write_text("def g(x):\n    return 1\n")
    entry = first_session(tmp_path, server, path, "2G$v", "2")  # the `1` of `return 1`
    path.write_text("def g(x):\n    return 10\n")  # not the line it was asked about
    with Child(tmp_path) as again:
        in_history(again, entry)
        again.nvim.command("KznApply")
        assert said(again, "cannot apply") == (
            f"kznllm: cannot apply #{entry}: the code it was asked about is no longer at line 2"
            " in c.py (with the rest of its lines as they were), nor anywhere else there"
        )
        assert again.lua("return vim.fn.bufexists(...)", str(path)) == 0  # not left loaded


def test_after_a_restart_a_block_matches_as_a_block(tmp_path: Path, server: LoopbackServer):
    path = tmp_path / "b.txt"
    path.write_text("abcdef\nghijkl\nmnopqr\n")
    entry = first_session(tmp_path, server, path, "gg0ll<C-v>jl", "XY\nZW")  # cd / ij
    path.write_text("top\n  abcdef\n  ghijkl\n")  # moved down and right, together
    with Child(tmp_path) as again:
        in_history(again, entry)
        again.nvim.command("KznApply")
        said(again, "applied (u")
        # the block's columns go; the answer lands at its top-left corner, as a fill's
        assert again.lines() == ["top", "  abXY", "ZWef", "  ghkl"]
        again.feed("u")
        assert again.lines() == ["top", "  abcdef", "  ghijkl"]
        # "cd\nij" as one run of text across two lines is not the block
        path.write_text("abcd\nijkl\n")
        again.nvim.command("edit!")
        in_history(again, entry)
        again.nvim.command("KznApply")
        assert "the block it was asked about is no longer at lines 1-2 in b.txt" in said(
            again, "cannot apply"
        )
        assert again.lua("return vim.fn.getbufline(vim.fn.bufnr(...), 1, '$')", str(path)) == [
            "abcd",
            "ijkl",
        ]


def test_a_blockwise_apply_with_the_buffer_open_replaces_only_the_blocks_columns(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["NEW"])))
    nvim.set_lines(["abcdef", "ghijkl", "mnopqr"])
    source = nvim.nvim.current.buffer.number
    debug_keys(nvim, "gg0ll<C-v>jl", "tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    entry_done(nvim, "ok")
    nvim.nvim.command("KznApply")
    said(nvim, "applied (u")
    # as a blockwise fill writes it (tests/nvim/test_editor_regions.py), not corner to corner
    assert nvim.lines(source) == ["abNEWef", "ghkl", "mnopqr"]
    nvim.feed("u")
    assert nvim.lines(source) == ["abcdef", "ghijkl", "mnopqr"]


# -- what a demanding user meets ----------------------------------------------------------


def test_apply_twice_from_the_debug_view_says_it_is_there_already(
    nvim: Child, server: LoopbackServer
):
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    nvim.nvim.command("KznApply")
    said(nvim, "applied (u")
    nvim.nvim.command("wincmd p")  # back to the debug view
    nvim.nvim.command("KznApply")
    assert said(nvim, "already applied") == (
        f"kznllm: #{nvim.lua('return vim.b.kznllm_entry')} is already applied: the answer"
        " stands at line 2 (u takes it back)"
    )
    assert nvim.lines(source) == ["import os", "def f(x):", "    return x + 1", "print(f(1))"]
    # after `u` in the source, the code is back where it was: apply finds it again
    nvim.nvim.command("wincmd p")
    nvim.feed("u")
    assert nvim.lines(source) == SOURCE
    nvim.nvim.command("wincmd p")
    nvim.nvim.command("KznApply")
    nvim.wait_for(lambda: nvim.lines(source)[2] == "    return x + 1", what="the second apply")


def test_a_crlf_answer_takes_the_buffers_line_breaks(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["def f(x):\r\n", "    return x + 1\r\n"])))
    nvim.set_lines(SOURCE)
    nvim.lua("vim.bo.fileformat = 'dos'")
    source = nvim.nvim.current.buffer.number
    nvim.nvim.command("2,3KznDebug tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    entry_done(nvim, "ok")
    nvim.nvim.command("KznApply")
    said(nvim, "applied (u")
    assert nvim.lines(source) == ["import os", "def f(x):", "    return x + 1", "print(f(1))"]


def test_after_a_restart_apply_goes_into_the_buffer_as_edited_and_unsaved(
    tmp_path: Path, server: LoopbackServer
):
    path = tmp_path / "u.py"
    path.write_text("def g(x):\n    return 1\n")
    entry = first_session(tmp_path, server, path, "2GV", "    return 2\n")
    with Child(tmp_path) as again:
        again.nvim.command(f"edit {path}")
        again.feed("ggOimport os<Esc>")  # not saved: the buffer, not the file, is searched
        in_history(again, entry)
        again.nvim.command("KznApply")
        said(again, "applied (u")
        assert again.lines() == ["import os", "def g(x):", "    return 2"]
        assert again.lua("return vim.bo.modified") is True
        assert path.read_text() == "def g(x):\n    return 1\n"
        again.feed("u")
        assert again.lines() == ["import os", "def g(x):", "    return 1"]


def test_a_re_run_applies_where_the_entry_it_re_asks_was_selected(
    tmp_path: Path, server: LoopbackServer
):
    path = tmp_path / "rr.py"
    path.write_text("def g(x):\n    return 1\n")
    entry = first_session(tmp_path, server, path, "2G$v", "2")  # the `1` of `return 1`
    path.write_text("# top\ndef g(x):\n    return 1\n")
    with Child(tmp_path) as again:
        server.queue(Reply(chunks=openai_events(["3"])))
        again.use_server(server.base_url)
        again.nvim.command("KznHistory")
        rows = "return require('kznllm.sidebar').state.rows or {}"
        again.wait_for(lambda: entry in again.lua(rows), what="the entry in the sidebar")
        row = again.lua("return vim.fn.index(require('kznllm.sidebar').state.rows, ...) + 1", entry)
        again.lua("vim.api.nvim_win_set_cursor(require('kznllm.sidebar').win(), { ..., 0 })", row)
        again.feed("r")
        assert again.wait_done()[0]["status"] == "ok"
        rerun = entry_done(again, "ok")
        assert rerun != entry
        again.nvim.command("KznApply")
        said(again, "applied (u")
        # the re-run's entry kept where the selection stood: `1` of its line, not a line
        assert again.lines() == ["# top", "def g(x):", "    return 3"]


def test_apply_is_its_own_undo_step_after_the_users_typing(nvim: Child, server: LoopbackServer):
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    nvim.nvim.command("wincmd p")
    assert nvim.nvim.current.buffer.number == source
    nvim.feed("ggO# mine<Esc>")
    nvim.nvim.command("wincmd p")
    nvim.nvim.command("KznApply")
    said(nvim, "applied (u")
    assert nvim.lines(source) == ["# mine", "import os", "def f(x):", "    return x + 1",
                                  "print(f(1))"]  # fmt: skip
    nvim.feed("u")
    assert nvim.lines(source) == ["# mine", *SOURCE]  # the user's line stays
    nvim.feed("u")
    assert nvim.lines(source) == SOURCE
    nvim.feed("<C-r><C-r>")
    assert nvim.lines(source)[3] == "    return x + 1"


def test_apply_into_code_an_answer_streams_into_is_refused(nvim: Child, server: LoopbackServer):
    source = debug_then_apply(nvim, server, "def f(x):\n    return x + 1\n")
    nvim.nvim.command("wincmd p")
    server.queue(Reply(chunks=openai_events(["# other"]), pause_after=1))
    nvim.nvim.command("2,3KznFill other")
    server.wait_paused()
    nvim.nvim.command("wincmd p")
    nvim.nvim.command("KznApply")
    said(nvim, "another answer is streaming there")
    assert nvim.lines(source) == SOURCE
    server.resume()
    assert nvim.wait_done(2)[1]["status"] == "ok"
