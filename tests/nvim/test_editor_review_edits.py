"""A review the user works in, in a real Neovim with real keys: hunks are extmarks that
follow edits, accept and reject act where a hunk is now, an edited hunk is never
silently dropped, a reject never takes the user's keystrokes into its undo step, and a
host that dies ends the review with what arrived."""

from __future__ import annotations

import os
import signal

from tests.nvim.test_editor_review import ANSWER, SOURCE, open_reviews, review_marks
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def reviewed(nvim: Child, server: LoopbackServer) -> None:
    """SOURCE with lines 2-6 under a complete review of ANSWER (hunks on rows 3 and 5)."""
    text = "\n".join(ANSWER) + "\n"
    nvim.serve(server, Reply(chunks=openai_events([text[:25], text[25:]])))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: len(review_marks(nvim)) >= 4, what="the hunks")


def changed_rows(nvim: Child) -> list[int]:
    return sorted(m["row"] for m in review_marks(nvim) if m["hl"] == "KznllmReviewChange")


def test_reject_after_a_line_added_above_acts_where_the_hunk_is_now(
    nvim: Child, server: LoopbackServer
):
    reviewed(nvim, server)
    nvim.feed("3Gonew = 1<Esc>")  # a line inside the region, between the hunks
    nvim.wait_for(lambda: changed_rows(nvim) == [2, 5], what="the hunks to follow")
    nvim.feed("6G")
    nvim.nvim.command("KznReject")
    assert nvim.lines() == [
        "import os",
        "def total(xs):",
        "    s = 0.0",
        "    new = 1",
        "    for x in xs:",
        "        s += x",
        "    return s",
        "print(total([1]))",
    ]


def test_an_edited_hunk_refuses_reject_and_accept_keeps_the_edit(
    nvim: Child, server: LoopbackServer
):
    reviewed(nvim, server)
    nvim.feed("3GA # mine<Esc>")
    nvim.nvim.command("KznReject")
    assert nvim.lines()[2] == "    s = 0.0 # mine"  # refused: the edit stays
    assert any("edited" in m for m in nvim.messages())
    nvim.nvim.command("KznAccept")
    assert nvim.lines()[2] == "    s = 0.0 # mine"
    nvim.feed("5G")
    nvim.nvim.command("KznReject")
    assert nvim.lines()[4] == "        s += x"
    assert open_reviews(nvim) == 0


def test_reject_all_keeps_edits_outside_the_hunks_and_an_edited_hunk(
    nvim: Child, server: LoopbackServer
):
    reviewed(nvim, server)
    nvim.feed("4GA # kept<Esc>")  # an unchanged line inside the region
    nvim.nvim.command("KznReject!")
    assert nvim.lines() == [*SOURCE[:3], "    for x in xs: # kept", *SOURCE[4:]]
    assert open_reviews(nvim) == 0


def test_reject_all_with_an_edited_hunk_keeps_that_hunk_open(nvim: Child, server: LoopbackServer):
    reviewed(nvim, server)
    nvim.feed("5GA # mine<Esc>")
    nvim.nvim.command("KznReject!")
    assert nvim.lines()[2] == "    s = 0"  # the other hunk was rejected
    assert nvim.lines()[4] == "        s += float(x) # mine"
    assert open_reviews(nvim) == 1
    assert any("edited hunk kept" in m for m in nvim.messages())


def test_u_after_a_reject_undoes_only_the_reject_and_reopens_its_hunk(
    nvim: Child, server: LoopbackServer
):
    reviewed(nvim, server)
    nvim.feed("1GA # mine<Esc>")
    nvim.feed("3G")
    nvim.nvim.command("KznReject")
    assert nvim.lines()[:3] == ["import os # mine", "def total(xs):", "    s = 0"]
    nvim.feed("u")
    assert nvim.lines()[:3] == ["import os # mine", "def total(xs):", "    s = 0.0"]
    nvim.wait_for(lambda: changed_rows(nvim) == [2, 4], what="the hunk to reopen")
    nvim.feed("<C-r>")
    assert nvim.lines()[:3] == ["import os # mine", "def total(xs):", "    s = 0"]
    nvim.wait_for(lambda: changed_rows(nvim) == [4], what="the hunk to be rejected again")
    nvim.feed("uu")
    assert nvim.lines() == [f"{SOURCE[0]}", *ANSWER, SOURCE[6]]  # the edit is undone
    nvim.feed("u")
    assert nvim.lines() == SOURCE


def test_a_killed_host_ends_a_streaming_review_with_the_hunks_that_arrived(
    nvim: Child, server: LoopbackServer
):
    text = "\n".join(ANSWER) + "\n"
    nvim.serve(server, Reply(chunks=openai_events([text[:37], text[37:]]), pause_after=2))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[3] == "    for x ", what="the first piece")
    pid = nvim.lua("return require('kznllm.host').pid")
    os.kill(pid, signal.SIGKILL)
    done = nvim.wait_done(timeout=10)[0]
    assert done["status"] == "error"
    nvim.wait_for(
        lambda: nvim.lua("local r = next(require('kznllm.review').reviews) return r ~= nil"),
        what="(the review stays)",
    )
    assert nvim.lua("local _, r = next(require('kznllm.review').reviews) return r.complete")
    assert changed_rows(nvim) == [2, 3]  # what arrived is a hunk to accept or reject
    # the job's end line says what is to review and with which keys
    assert nvim.messages()[-1].endswith(
        "(partial output kept) · 1 hunk to review: gy/gb accept/reject, gY/gB all, ]h/[h move"
    )
    nvim.nvim.command("KznReject!")
    assert nvim.lines() == SOURCE
    assert open_reviews(nvim) == 0
    server.resume()
