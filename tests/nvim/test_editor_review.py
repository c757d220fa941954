"""Review before keeping, in a real Neovim with real keys against loopback servers: the
answer streams in as real text with the replaced lines beside it, then each hunk (or the
whole answer) is accepted or rejected; chatty answers keep only their code."""

from __future__ import annotations

from typing import Any

from tests.nvim_child import Child
from tests.review_oracle import resolve
from tests.servers import LoopbackServer, Reply, openai_events

SOURCE = [
    "import os",
    "def total(xs):",
    "    s = 0",
    "    for x in xs:",
    "        s += x",
    "    return s",
    "print(total([1]))",
]
ORIGINAL = SOURCE[1:6]
# two hunks, with an unchanged line between them
ANSWER = [
    "def total(xs):",
    "    s = 0.0",
    "    for x in xs:",
    "        s += float(x)",
    "    return s",
]


def review_marks(nvim: Child) -> list[dict[str, Any]]:
    return nvim.lua(
        "local ns = vim.api.nvim_get_namespaces().kznllm_review"
        " local out = {}"
        " for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do"
        "   local d = m[4]"
        "   if d.virt_lines or d.line_hl_group then"
        "     local virt = {}"
        "     for _, l in ipairs(d.virt_lines or {}) do table.insert(virt, l[1][1]) end"
        "     table.insert(out, { row = m[2], virt = virt, hl = d.line_hl_group or '',"
        "       above = d.virt_lines_above or false })"
        "   end"
        " end return out"
    )


def open_reviews(nvim: Child) -> int:
    return nvim.lua("return vim.tbl_count(require('kznllm.review').reviews)")


def start_review(nvim: Child, server: LoopbackServer, answer: list[str], **reply: Any) -> None:
    text = "\n".join(answer) + "\n"
    nvim.serve(server, Reply(chunks=openai_events([text[:25], text[25:]]), **reply))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")


def test_a_review_streams_as_real_text_with_the_original_beside_it(
    nvim: Child, server: LoopbackServer
):
    start_review(nvim, server, ANSWER, pause_after=2)
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[2] == "    s = 0.", what="the first piece")
    # while streaming: the new text is in the buffer; the original not reached yet shows
    # dimmed below it
    pending = nvim.wait_for(
        lambda: [m for m in review_marks(nvim) if m["virt"] and not m["above"]],
        what="the pending original",
    )
    assert pending[0]["virt"][-1] == "    return s"
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [SOURCE[0], *ANSWER, SOURCE[6]]
    marks = nvim.wait_for(lambda: len(review_marks(nvim)) >= 3 and review_marks(nvim))
    deleted = [m["virt"] for m in marks if m["virt"]]
    assert deleted == [["    s = 0"], ["        s += x"]]
    changed = sorted(m["row"] for m in marks if m["hl"] == "KznllmReviewChange")
    assert changed == [2, 4]
    assert nvim.lua("return vim.fn.maparg('gy', 'n', false, true).buffer") == 1
    assert open_reviews(nvim) == 1


def test_reject_all_restores_the_original_byte_for_byte_and_closes(
    nvim: Child, server: LoopbackServer
):
    start_review(nvim, server, ANSWER)
    nvim.wait_done()
    nvim.wait_for(lambda: review_marks(nvim), what="the hunks")
    nvim.feed("3GgB")
    assert nvim.lines() == SOURCE
    assert review_marks(nvim) == [] and open_reviews(nvim) == 0
    assert nvim.lua("return vim.fn.maparg('gy', 'n', false, true).buffer") is None


def test_accept_all_keeps_the_answer_and_one_u_brings_the_original_back(
    nvim: Child, server: LoopbackServer
):
    start_review(nvim, server, ANSWER)
    nvim.wait_done()
    nvim.wait_for(lambda: review_marks(nvim), what="the hunks")
    nvim.nvim.command("KznAccept!")
    assert nvim.lines() == [SOURCE[0], *ANSWER, SOURCE[6]]
    assert review_marks(nvim) == [] and open_reviews(nvim) == 0
    nvim.feed("u")
    assert nvim.lines() == SOURCE


def test_per_hunk_keys_give_exactly_the_hunks_chosen(nvim: Child, server: LoopbackServer):
    start_review(nvim, server, ANSWER)
    nvim.wait_done()
    nvim.wait_for(lambda: review_marks(nvim), what="the hunks")
    nvim.feed("gg]h")
    assert nvim.nvim.current.window.cursor[0] == 3  # the first hunk
    nvim.feed("gy]h")
    assert nvim.nvim.current.window.cursor[0] == 5  # the second
    nvim.feed("gb")
    want = resolve(ORIGINAL, "\n".join(ANSWER), [True, False]).split("\n")
    assert nvim.lines() == [SOURCE[0], *want, SOURCE[6]]
    assert open_reviews(nvim) == 0 and review_marks(nvim) == []
    nvim.feed("u")
    assert nvim.lines() == SOURCE  # still one undo step


def test_per_hunk_commands_reject_one_and_accept_the_other(nvim: Child, server: LoopbackServer):
    start_review(nvim, server, ANSWER)
    nvim.wait_done()
    nvim.wait_for(lambda: review_marks(nvim), what="the hunks")
    nvim.feed("3G")
    nvim.nvim.command("KznReject")
    assert nvim.lines()[2] == "    s = 0"
    nvim.feed("5G")  # the second hunk has not moved (one line for one)
    nvim.nvim.command("KznAccept")
    want = resolve(ORIGINAL, "\n".join(ANSWER), [False, True]).split("\n")
    assert nvim.lines() == [SOURCE[0], *want, SOURCE[6]]
    assert open_reviews(nvim) == 0


def test_reject_while_streaming_cancels_and_restores_the_original(
    nvim: Child, server: LoopbackServer
):
    start_review(nvim, server, ANSWER, pause_after=2)
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[2] == "    s = 0.", what="the first piece")
    nvim.nvim.command("KznReject!")
    done = nvim.wait_done()[0]
    assert done["status"] == "cancelled"
    assert nvim.lines() == SOURCE
    assert open_reviews(nvim) == 0
    partial = nvim.lua(
        "local ns = vim.api.nvim_get_namespaces().kznllm"
        " return #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {})"
    )
    assert partial == 0  # no "partial output" mark on the restored text
    server.resume()


def test_an_error_mid_stream_leaves_the_partial_answer_under_review(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(
        server, Reply(chunks=openai_events(["def total(xs):\n    return 0\n"])[:2], end="reset")
    )
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")
    assert nvim.wait_done()[0]["status"] == "error"
    assert open_reviews(nvim) == 1
    nvim.wait_for(lambda: any(m["virt"] for m in review_marks(nvim)), what="the hunks")
    assert nvim.marks() == [" ⚠ kznllm: partial output (error)"]
    nvim.nvim.command("KznReject!")
    assert nvim.lines() == SOURCE
    # the partial answer is gone: its note does not stay on the original it gave back
    assert nvim.marks() == []


def test_a_partial_answer_accepted_keeps_its_note(nvim: Child, server: LoopbackServer):
    nvim.serve(
        server, Reply(chunks=openai_events(["def total(xs):\n    return 0\n"])[:2], end="reset")
    )
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")
    assert nvim.wait_done()[0]["status"] == "error"
    nvim.wait_for(lambda: any(m["virt"] for m in review_marks(nvim)), what="the hunks")
    nvim.nvim.command("KznAccept!")
    assert open_reviews(nvim) == 0
    assert nvim.marks() == [" ⚠ kznllm: partial output (error)"]


def test_setup_review_makes_every_replace_a_review_and_e_bang_ends_it(
    nvim: Child, server: LoopbackServer, tmp_path
):
    path = tmp_path / "t.py"
    path.write_text("\n".join(SOURCE) + "\n")
    nvim.nvim.command(f"edit {path}")
    nvim.serve(server, Reply(chunks=openai_events(["\n".join(ANSWER)])))
    nvim.lua("require('kznllm').setup({ review = true })")
    nvim.lua("vim.ui.input = function(o, cb) cb('simplify') end")
    nvim.feed("2GV4j k")
    nvim.wait_done()
    nvim.wait_for(lambda: open_reviews(nvim) == 1, what="the review")
    nvim.nvim.command("edit!")
    assert open_reviews(nvim) == 0 and review_marks(nvim) == []
    assert nvim.lines() == SOURCE
    assert nvim.lua("return vim.fn.maparg('gy', 'n', false, true).buffer") is None


def test_a_chatty_answer_keeps_only_its_code_in_one_undo_step(nvim: Child, server: LoopbackServer):
    chatty = "Sure! Here it is:\n\n```python\ndef total(xs):\n    return sum(xs)\n```\n\nDone."
    nvim.serve(server, Reply(chunks=openai_events([chatty[:20], chatty[20:]])))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznFill simplify")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [SOURCE[0], "def total(xs):", "    return sum(xs)", SOURCE[6]]
    nvim.feed("u")
    assert nvim.lines() == SOURCE


def test_the_original_of_a_hunk_on_the_buffers_first_line_is_shown(
    nvim: Child, server: LoopbackServer
):
    """A whole-file review (`ggVG`) changes line 1: its original lines are virtual lines
    above the buffer's first line, which Neovim shows only when the window is scrolled
    up to them (its 'topfill'); a window at the top now shows them, as for any other
    hunk. A window scrolled elsewhere is left where it is."""
    nvim.nvim.ui_attach(80, 24, rgb=True)
    try:
        nvim.serve(server, Reply(chunks=openai_events(["import sys\n", "def total(xs):\n"])))
        nvim.set_lines(SOURCE[:2])
        nvim.nvim.command("1,2KznReview simplify")
        assert nvim.wait_done()[0]["status"] == "ok"
        nvim.wait_for(lambda: any(m["virt"] for m in review_marks(nvim)), what="the hunks")
        assert [m["virt"] for m in review_marks(nvim) if m["virt"]] == [["import os"]]
        assert nvim.lua("return vim.fn.winsaveview().topfill") == 1
        assert nvim.lua("return vim.fn.winsaveview().topline") == 1
        assert nvim.lua("return vim.api.nvim_win_get_cursor(0)") == [1, 0]
    finally:
        nvim.nvim.ui_detach()


def test_a_window_scrolled_away_from_the_first_line_stays_where_it_is(
    nvim: Child, server: LoopbackServer
):
    nvim.nvim.ui_attach(80, 24, rgb=True)
    try:
        nvim.serve(server, Reply(chunks=openai_events(["import sys\n", "def total(xs):\n"])))
        nvim.set_lines([*SOURCE[:2], *[f"x{i} = {i}" for i in range(60)]])
        nvim.feed("40G")
        nvim.nvim.command("normal! zt")
        nvim.nvim.command("1,2KznReview simplify")
        assert nvim.wait_done()[0]["status"] == "ok"
        nvim.wait_for(lambda: any(m["virt"] for m in review_marks(nvim)), what="the hunks")
        assert nvim.lua("return vim.fn.winsaveview().topline") == 40
        assert nvim.lua("return vim.api.nvim_win_get_cursor(0)") == [40, 0]
    finally:
        nvim.nvim.ui_detach()
