""":KznApply in a real Neovim against a loopback server: the answer of a debug view, an
opened history entry or a re-run goes in place of the code it was asked about, tracked
by extmarks while the buffer lives and found again in its file for an earlier session."""

from __future__ import annotations

from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SOURCE = ["import os", "def f(x):", "    return x+1", "print(f(1))"]


def debug_then_apply(nvim: Child, server: LoopbackServer, answer: str) -> int:
    server.queue(Reply(chunks=openai_events([answer])))
    nvim.use_server(server.base_url)
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
    first = Child(tmp_path)
    try:
        server.queue(Reply(chunks=openai_events(["def f(x):\n    return x + 1\n"])))
        first.use_server(server.base_url)
        first.nvim.command(f"edit {path}")
        first.nvim.command("2,3KznFill tidy")
        done = first.wait_done()[0]
        assert done["status"] == "ok", done
        first.wait_for(lambda: first.lua("return vim.b.kznllm_entry") or True)
    finally:
        first.close()
    again = Child(tmp_path)  # a restart: the same XDG dirs
    try:
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
    finally:
        again.close()


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
    server.queue(Reply(chunks=openai_events(["def f(x):\n    return x + 1\n"])))
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"edit {path}")
    nvim.nvim.command("2,3KznFill tidy")
    assert nvim.wait_done()[0]["status"] == "ok"
    # the file now holds the original code twice (and not the answer)
    nvim.set_lines([*SOURCE, *SOURCE[1:3]])
    nvim.nvim.command("KznHistory")
    entry = nvim.wait_for(
        lambda: next((i for i in nvim.lua("return require('kznllm.sidebar').state.rows") if i), 0),
        what="the entry",
    )
    row = nvim.lua("return vim.fn.index(require('kznllm.sidebar').state.rows, ...) + 1", entry)
    nvim.lua("vim.api.nvim_win_set_cursor(0, { ..., 0 })", row)
    nvim.feed("<CR>")
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry view")
    nvim.nvim.command("KznApply")
    nvim.wait_for(
        lambda: any("stands there more than once" in m for m in nvim.messages()),
        what="the refusal",
    )
    assert nvim.lua("return vim.fn.getbufline(vim.fn.bufnr('twice.py'), 1, '$')") == [
        *SOURCE,
        *SOURCE[1:3],
    ]
