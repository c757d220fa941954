"""A review the user rejected as a whole is recorded as "rejected", not "ok": in history,
in the sidebar and in `kznllm history`; one with a hunk accepted keeps its outcome."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from kznllm_py.history import HistoryStore, NewEntry
from tests.nvim.test_editor_review import ANSWER, SOURCE, open_reviews
from tests.nvim.test_editor_sidebar import open_sidebar, store_of, wait_sidebar
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def statuses(nvim: Child) -> list[str]:
    return [e.status for e in store_of(nvim).list()]


def review(nvim: Child, server: LoopbackServer, **reply: Any) -> None:
    text = "\n".join(ANSWER) + "\n"
    nvim.serve(server, Reply(chunks=openai_events([text[:25], text[25:]]), **reply))
    nvim.set_lines(SOURCE)
    nvim.nvim.command("2,6KznReview simplify")


def test_a_review_rejected_as_a_whole_is_recorded_as_rejected(nvim: Child, server: LoopbackServer):
    review(nvim, server)
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: statuses(nvim) == ["ok"], what="the entry")
    nvim.feed("3Ggb5Ggb")  # each hunk, one by one
    assert open_reviews(nvim) == 0 and nvim.lines() == SOURCE
    nvim.wait_for(lambda: statuses(nvim) == ["rejected"], what="the entry to say rejected")
    lines = open_sidebar(nvim)
    wait_sidebar(nvim, lambda ls: any(" rejected " in line for line in ls), "rejected shown")
    assert not any(" ok " in line for line in lines if "simplify" in line)
    data = nvim.lua("return vim.fn.stdpath('data')")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kznllm_py.cli.main",
            "history",
            "--db",
            f"{data}/kznllm/history.sqlite3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "rejected" in out and " ok " not in out


def test_a_review_rejected_while_streaming_is_recorded_as_rejected(
    nvim: Child, server: LoopbackServer
):
    review(nvim, server, pause_after=2)
    server.wait_paused()
    nvim.wait_for(lambda: nvim.lines()[2] == "    s = 0.", what="the first piece")
    nvim.nvim.command("KznReject!")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    nvim.wait_for(lambda: statuses(nvim) == ["rejected"], what="the entry to say rejected")
    server.resume()


def test_a_review_with_a_hunk_accepted_keeps_its_outcome(nvim: Child, server: LoopbackServer):
    review(nvim, server)
    nvim.wait_done()
    nvim.wait_for(lambda: statuses(nvim) == ["ok"], what="the entry")
    nvim.feed("3Ggy5Ggb")
    assert open_reviews(nvim) == 0
    # a later word from the host (a refreshed sidebar) finds it still "ok"
    open_sidebar(nvim)
    assert statuses(nvim) == ["ok"]


def test_the_store_marks_only_an_entry_that_ended(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    entry = NewEntry(preset_id="p", provider="openai", model="m", mode="replace", query="q")
    running = store.start(entry)
    ended = store.start(entry)
    store.finish(ended, "ok")
    assert not store.set_review_outcome(running, "rejected")
    assert store.set_review_outcome(ended, "rejected")
    assert {e.id: e.status for e in store.list()} == {running: "running", ended: "rejected"}
