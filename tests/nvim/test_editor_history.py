"""Every fill is recorded in the history database, from the real plugin."""

from __future__ import annotations

from pathlib import Path

from kznllm_py.history import HistoryStore
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, json_reply, openai_events


def db_path(nvim: Child) -> Path:
    return Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"


def finished(nvim: Child, n: int) -> list:
    def entries() -> list | None:
        path = db_path(nvim)
        if not path.exists():
            return None
        rows = HistoryStore(path).list()
        return rows if len(rows) >= n and all(r.status != "running" for r in rows) else None

    return nvim.wait_for(entries, what=f"{n} finished history entries")


def test_fills_are_recorded_with_outcome_text_and_request_but_never_the_key(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(
            chunks=openai_events(["x = ", "2"], usage={"prompt_tokens": 9, "completion_tokens": 2})
        ),
        json_reply(401, {"error": {"message": "bad key"}}),
    )
    nvim.use_server(server.base_url, api_key="KZN_HIST_KEY")
    nvim.lua("vim.env.KZN_HIST_KEY = 'sk-hist-canary-987654'")
    nvim.lua("vim.bo.filetype = 'python'")
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("1KznFill double it")
    nvim.wait_done()
    nvim.nvim.command("KznFill explain")
    nvim.wait_done(2)
    newest, oldest = finished(nvim, 2)
    store = HistoryStore(db_path(nvim))
    ok = store.get(oldest.id)
    assert ok is not None
    assert (ok.status, ok.mode, ok.preset_id, ok.model) == ("ok", "replace", "test", "test-model")
    assert (ok.query, ok.selection, ok.response, ok.filetype) == (
        "double it",
        "x = 1",
        "x = 2",
        "python",
    )
    assert (ok.input_tokens, ok.output_tokens) == (9, 2)
    assert ok.first_token_ms is not None and ok.duration_ms is not None
    assert '"url":"' + server.base_url + '/chat/completions"' in ok.request
    assert '"Authorization":"<redacted>"' in ok.request
    failed = store.get(newest.id)
    assert failed is not None
    assert failed.status == "error" and "401" in (failed.error or "")
    blob = b"".join(p.read_bytes() for p in db_path(nvim).parent.glob("history.sqlite3*"))
    assert b"sk-hist-canary" not in blob


def test_cancelled_fill_keeps_its_partial_answer_in_history(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["partial ", "rest"]), pause_after=2))
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: "partial" in nvim.text(), what="the first token")
    nvim.nvim.command("KznCancel")
    nvim.wait_done()
    (entry,) = finished(nvim, 1)
    got = HistoryStore(db_path(nvim)).get(entry.id)
    assert got is not None and (got.status, got.response) == ("cancelled", "partial ")


def test_history_can_be_turned_off(nvim: Child, server: LoopbackServer):
    nvim.lua("require('kznllm').setup({ history = false })")
    nvim.serve(server, Reply(chunks=openai_events(["x"])))
    nvim.nvim.command("KznFill go")
    nvim.wait_done()
    assert not db_path(nvim).exists()


def test_a_broken_history_store_is_reported_once_and_the_fill_still_works(
    nvim: Child, server: LoopbackServer
):
    # a file where the history folder should be: the store cannot be created
    db_path(nvim).parent.parent.mkdir(parents=True, exist_ok=True)
    db_path(nvim).parent.write_text("not a folder")
    nvim.serve(server, Reply(chunks=openai_events(["one"])), Reply(chunks=openai_events(["two"])))
    nvim.nvim.command("KznFill a")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.nvim.command("KznFill b")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    assert "one" in nvim.text() and "two" in nvim.text()
    reports = nvim.wait_for(
        lambda: [m for m in nvim.messages() if "history is off" in m], what="the report"
    )
    assert len(reports) == 1


def test_the_entry_of_a_file_named_with_a_line_break_opens(
    tmp_path: Path, nvim: Child, server: LoopbackServer
):
    """A cloned repository can hold `we<LF>ird.py`; its fill's entry opened into a Lua
    error ("item contains newlines", a Press ENTER) and no view: now the view opens,
    the name escaped in its title."""
    path = tmp_path / "we\nird.py"
    path.write_text("x = 1\n")
    nvim.serve(server, Reply(chunks=openai_events(["y = 2\n"])))
    nvim.nvim.command(f"edit {nvim.lua('return vim.fn.fnameescape(...)', str(path))}")
    nvim.nvim.command("KznFill more")
    assert nvim.wait_done()[0]["status"] == "ok"
    finished(nvim, 1)
    entry = nvim.open_newest_entry()
    title = nvim.lines()[0]
    assert title == f"# kznllm #{entry} · {str(path).replace(chr(10), chr(92) + 'n')}"
    assert "y = 2" in nvim.lines()
