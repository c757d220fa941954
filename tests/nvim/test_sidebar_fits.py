"""The history sidebar fits its screen (issue 27, item 5): it follows a resize of the
terminal (tmux, 200 -> 90 columns), a narrow one keeps the query readable, and an entry
sent with :KznSend says it was an edited request, with its question."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kznllm_py.history import HistoryStore, NewEntry, default_path
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events
from tests.tmux_screen import Screen

QUERY = "why does the parser drop the last token of a stream"


@pytest.fixture
def screen(tmp_path: Path) -> Iterator[Screen]:
    # an entry to list, in the data dir the Neovim in tmux will use
    store = HistoryStore(default_path(tmp_path / "xdg_data_home" / "nvim"))
    entry_id = store.start(NewEntry(mode="yap", query=QUERY))
    store.append(entry_id, "an answer")
    store.finish(entry_id, "ok")
    store.close()
    s = Screen(tmp_path, width=200, height=30)
    try:
        yield s
    finally:
        s.close()


def border_column(shown: str) -> int:
    """Where the code window ends: the column of the vertical separator."""
    columns = {line.index("│") for line in shown.splitlines() if "│" in line}
    assert len(columns) == 1, shown
    return columns.pop()


def test_the_sidebar_follows_a_resize_and_keeps_the_query_readable(screen: Screen):
    screen.text(":KznHistory\r")
    shown = screen.wait_for(lambda s: "why does the parser" in s, what="the sidebar")
    assert border_column(shown) == 200 - 80 - 1  # 40% of 200, at most 80
    screen.resize(90, 30)
    # 40% of 90 is 36: below 64 columns the line keeps the time, status and query
    shown = screen.wait_for(
        lambda s: "│" in s and border_column(s) == 90 - 36 - 1 and "ok         why" in s,
        what="the sidebar laid out again for 36 columns",
    )
    row = next(line for line in shown.splitlines() if "why does" in line)
    sidebar_part = row[row.index("│") + 1 :]
    assert "ok" in sidebar_part
    # 19 characters of the query at 36 columns (the columns of a wide sidebar left 11)
    assert sidebar_part.startswith(f"{sidebar_part[:5]} ok         why does the parser")
    assert "Press ENTER" not in shown


def test_an_entry_sent_with_kznsend_says_edited_request_and_shows_its_question(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(
        server, Reply(chunks=openai_events(["first"])), Reply(chunks=openai_events(["second"]))
    )
    nvim.nvim.command("KznDebug what is 2+2")
    assert nvim.wait_done()[0]["status"] == "ok"
    lines = nvim.lines()
    i = lines.index("what is 2+2")
    nvim.lua("vim.api.nvim_buf_set_lines(0, ..., ... + 1, true, { 'what is 3+3' })", i, i)
    nvim.nvim.command("KznSend")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    data = Path(nvim.lua("return vim.fn.stdpath('data')"))
    store = HistoryStore(data / "kznllm" / "history.sqlite3")
    try:
        sent = store.get(store.list(limit=1)[0].id)
    finally:
        store.close()
    assert sent is not None and (sent.mode, sent.query) == ("send", "what is 3+3")
    nvim.nvim.command("KznHistory")
    shown = nvim.wait_for(
        lambda: [
            line
            for line in nvim.lua(
                "local b = require('kznllm.sidebar').state.buf"
                " return b and vim.api.nvim_buf_get_lines(b, 0, -1, true) or {}"
            )
            if "edited request: what is 3+3" in line
        ],
        what="the sidebar line",
    )
    assert " edited " in shown[0]  # the mode column too
