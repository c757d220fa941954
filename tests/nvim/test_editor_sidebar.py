"""The history sidebar and follow-up conversations, in a real Neovim against loopback
servers: what the sidebar shows, its keys, live requests, re-runs and follow-ups."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kznllm_py.history import HistoryStore, NewEntry
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, anthropic_events, openai_events


def store_of(nvim: Child) -> HistoryStore:
    data = Path(nvim.lua("return vim.fn.stdpath('data')"))
    return HistoryStore(data / "kznllm" / "history.sqlite3")


def rendered(nvim: Child) -> int:
    return nvim.lua(
        "local s = require('kznllm.sidebar').state"
        " return s.buf and vim.b[s.buf].kznllm_rendered or 0"
    )


def open_sidebar(nvim: Child) -> list[str]:
    before = rendered(nvim)
    nvim.nvim.command("KznHistory")
    nvim.wait_for(lambda: rendered(nvim) > before, what="the sidebar to render")
    return sidebar_lines(nvim)


def sidebar_lines(nvim: Child) -> list[str]:
    return nvim.lua(
        "return vim.api.nvim_buf_get_lines(require('kznllm.sidebar').state.buf, 0, -1, true)"
    )


def wait_sidebar(nvim: Child, pred: Any, what: str) -> list[str]:
    return nvim.wait_for(lambda: pred(sidebar_lines(nvim)) and sidebar_lines(nvim), what=what)


def entry_lines(lines: list[str]) -> list[str]:
    head = next(i for i, line in enumerate(lines) if line.startswith("History ("))
    return [line for line in lines[head + 1 :] if line and not line.startswith("…")]


def goto_entry(nvim: Child, entry_id: int) -> None:
    row = nvim.lua(
        "for i, id in ipairs(require('kznllm.sidebar').state.rows) do"
        " if id == ... then return i end end return 0",
        entry_id,
    )
    assert row, f"entry {entry_id} is not in the sidebar"
    nvim.lua("vim.api.nvim_win_set_cursor(require('kznllm.sidebar').win(), { ..., 0 })", row)


def record(store: HistoryStore, query: str, *, status: str = "ok", **kw: Any) -> int:
    response = kw.pop("response", f"answer to {query}")
    reasoning = kw.pop("reasoning", "")
    entry_id = store.start(NewEntry(mode=kw.pop("mode", "yap"), query=query, **kw))
    store.append(entry_id, response, reasoning)
    if status != "running":
        store.finish(entry_id, status, error="boom" if status == "error" else None)
    return entry_id


def test_sidebar_toggles_on_the_right_with_context_and_entries_newest_first(nvim: Child):
    store = store_of(nvim)
    now = time.time()
    record(store, "oldest question", preset_id="claude-sonnet", started_at=now - 30)
    record(store, "a failure", status="error", preset_id="gpt-4o-mini", started_at=now - 20)
    record(store, "crashed midway", status="running", preset_id="demo", started_at=now - 10)
    nvim.lua("vim.bo.filetype = 'python'")
    nvim.nvim.command("file main.py")
    nvim.nvim.options["columns"] = 200  # room for the default width
    lines = open_sidebar(nvim)
    info = nvim.lua(
        "local w = require('kznllm.sidebar').win() local b = vim.api.nvim_win_get_buf(w)"
        " return { width = vim.api.nvim_win_get_width(w), col = vim.fn.win_screenpos(w)[2],"
        " ft = vim.bo[b].filetype, bt = vim.bo[b].buftype, ma = vim.bo[b].modifiable,"
        " wins = #vim.api.nvim_tabpage_list_wins(0) }"
    )
    assert info["wins"] == 2 and info["col"] > 1  # a split on the right
    assert (info["width"], info["ft"], info["bt"], info["ma"]) == (
        80,
        "kznllm-history",
        "nofile",
        False,
    )
    assert lines[0].startswith(
        "<CR> open  r re-run  y yank  p put  dd delete  u undelete  f filter  q close  ? help"
    )
    assert "Context" in lines
    assert any(line.startswith("  preset  ") for line in lines)
    assert any(line.startswith("  buffer  ") and "main.py (python)" in line for line in lines)
    assert "History (3 entries)" in lines
    rows = entry_lines(lines)
    assert [r.split()[-2:] for r in rows] == [
        ["crashed", "midway"],
        ["a", "failure"],
        ["oldest", "question"],
    ]
    assert "unfinished" in rows[0]  # a 'running' row no request here owns
    assert " error " in rows[1] and "gpt-4o-mini" in rows[1]
    assert " ok " in rows[2] and "claude-sonnet" in rows[2]
    nvim.nvim.command("KznHistory")
    assert nvim.lua("return require('kznllm.sidebar').win()") is None
    assert len(nvim.nvim.windows) == 1


def test_the_context_lists_the_kzn_files_the_next_request_would_send(nvim: Child, tmp_path: Path):
    project = tmp_path / "project"
    (project / ".kzn").mkdir(parents=True)
    (project / ".kzn" / "notes.md").write_text("x" * 400)
    (project / ".kzn" / "blob.bin").write_bytes(b"\0\1\2" * 10)
    nvim.nvim.command(f"cd {project}")
    lines = open_sidebar(nvim)
    kzn = [line for line in lines if line.startswith("  .kzn")]
    assert kzn and kzn[0].startswith("  .kzn    .kzn: 1 file, ~100 of ") and "tokens" in kzn[0]
    assert any(line.strip() == ".kzn/notes.md  ~100" for line in lines), lines
    assert any(".kzn/blob.bin  skipped: binary file" in line for line in lines), lines


def test_a_running_request_shows_live_then_its_outcome(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["streaming ", "now"]), pause_after=2))
    open_sidebar(nvim)
    nvim.nvim.command("wincmd p")
    nvim.nvim.command("KznFill live one")
    server.wait_paused()

    def overlay() -> str:
        return nvim.lua(
            "local s = require('kznllm.sidebar').state"
            " local ns = vim.api.nvim_create_namespace('kznllm_history_live')"
            " for _, m in ipairs(vim.api.nvim_buf_get_extmarks(s.buf, ns, 0, -1,"
            " { details = true })) do return m[4].virt_text[1][1] end return ''"
        )

    live = nvim.wait_for(overlay, what="the live status")
    assert "s ~" in live and "tok" in live
    assert "live one" in entry_lines(sidebar_lines(nvim))[0]
    server.resume()
    nvim.wait_done()
    lines = wait_sidebar(nvim, lambda ls: " ok " in entry_lines(ls)[0], "the outcome")
    assert "live one" in entry_lines(lines)[0]
    nvim.wait_for(lambda: overlay() == "", what="the live status to go")


def test_enter_opens_the_entry_with_request_and_reasoning_folded(nvim: Child):
    store = store_of(nvim)
    entry_id = record(
        store,
        "why is the sky blue",
        response="Rayleigh scattering.",
        reasoning="think\nabout\nphysics",
        preset_id="claude-sonnet",
        selection="sky = 'blue'",
        filetype="python",
        request='{"url": "https://example.invalid", "body": {"messages": []}}',
    )
    open_sidebar(nvim)
    goto_entry(nvim, entry_id)
    nvim.feed("<CR>")
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry") == entry_id, what="the entry")
    lines = nvim.lines()
    assert lines[0] == f"# kznllm #{entry_id}"
    assert "why is the sky blue" in lines and "Rayleigh scattering." in lines
    assert "```python" in lines and "sky = 'blue'" in lines
    assert nvim.lua("return vim.bo.buftype") == "nofile"
    for heading in ("## Request", "## Reasoning"):
        row = lines.index(heading) + 1
        assert nvim.lua(f"return vim.fn.foldclosed({row})") == row, heading
    assert (
        nvim.lua(f"return vim.fn.foldclosed({lines.index('## Answer (claude-sonnet)') + 1})") == -1
    )
    # <CR> on another entry opens it in the same window: one view window, not a split each
    other = record(store, "another question")
    wins = len(nvim.nvim.windows)
    nvim.lua("vim.api.nvim_set_current_win(require('kznllm.sidebar').win())")
    nvim.lua("require('kznllm.sidebar').changed()")  # recorded behind its back: refresh
    nvim.wait_for(lambda: other in nvim.lua("return require('kznllm.sidebar').state.rows"))
    goto_entry(nvim, other)
    nvim.feed("<CR>")
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry") == other, what="the 2nd entry")
    assert len(nvim.nvim.windows) == wins


def test_y_yanks_and_p_puts_the_response_at_the_cursor_of_the_previous_window(nvim: Child):
    store = store_of(nvim)
    entry_id = record(store, "q", response="line one\nline two")
    nvim.set_lines(["before", "after"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 1, 5 })")
    open_sidebar(nvim)
    goto_entry(nvim, entry_id)
    nvim.feed("y")
    nvim.wait_for(lambda: nvim.lua("return vim.fn.getreg('\"')") == "line one\nline two\n")
    nvim.feed('"ay')
    nvim.wait_for(lambda: nvim.lua("return vim.fn.getreg('a')") == "line one\nline two\n")
    nvim.feed("p")
    work = nvim.lua("return vim.api.nvim_win_get_buf(vim.fn.win_getid(vim.fn.winnr('#')))")
    nvim.wait_for(lambda: len(nvim.lines(work)) > 2, what="the put")
    # a multi-line answer goes in as whole lines below the cursor's, never mid-line
    assert nvim.lines(work) == ["before", "line one", "line two", "after"]


def test_dd_deletes_an_entry_and_u_brings_it_back_with_its_follow_ups_linked(nvim: Child):
    store = store_of(nvim)
    keep = record(store, "keep me", preset_id="a")
    gone = record(store, "delete me", preset_id="a")
    child = record(store, "follow-up of it", mode="chat", parent_id=gone)
    open_sidebar(nvim)
    goto_entry(nvim, gone)
    nvim.feed("dd")
    lines = wait_sidebar(nvim, lambda ls: "History (2 entries)" in ls, "the deletion")
    assert not any("delete me" in line for line in lines)
    assert store.get(gone) is None and store.get(keep) is not None
    assert store.get(child).parent_id is None
    nvim.feed("u")
    lines = wait_sidebar(nvim, lambda ls: "History (3 entries)" in ls, "the entry back")
    back = store.get(gone)
    assert back is not None and (back.query, back.response) == ("delete me", "answer to delete me")
    assert store.get(child).parent_id == gone
    assert any(f"entry #{gone} is back" in m for m in nvim.messages())
    nvim.feed("u")  # nothing more to bring back: said, nothing changes
    nvim.wait_for(lambda: any("no deleted entry to bring back" in m for m in nvim.messages()))
    assert store.count() == 3


def test_f_filters_by_status_preset_and_text_and_leaves_slash_to_search(nvim: Child):
    store = store_of(nvim)
    record(store, "keep me", preset_id="a")
    record(store, "broken thing", status="error", preset_id="b")
    record(store, "crashed one", status="running", preset_id="b")
    open_sidebar(nvim)
    assert nvim.lua("return vim.fn.maparg('/', 'n', false, true).buffer") is None

    def filter_by(text: str, shown: str | None = None) -> list[str]:
        nvim.lua(
            "local v = ... vim.ui.input = function(o, cb) _G.asked = o cb(v) end",
            text,
        )
        nvim.feed("f")
        want = f"filter: {shown or text})"
        return wait_sidebar(nvim, lambda ls: want in " ".join(ls), f"filter {text}")

    lines = filter_by("status:error")
    assert [r.split()[-2:] for r in entry_lines(lines)] == [["broken", "thing"]]
    assert "History (1 entry, filter: status:error)" in lines
    lines = filter_by("preset:a")
    assert [r.split()[-2:] for r in entry_lines(lines)] == [["keep", "me"]]
    # the prompt named the filter then in force; what is typed replaces it (no pre-filled
    # text that typing would append to)
    asked = nvim.lua("return _G.asked")
    assert "[now: status:error]" in asked["prompt"] and asked.get("default") is None
    lines = filter_by("BROKEN")
    assert [r.split()[-2:] for r in entry_lines(lines)] == [["broken", "thing"]]
    lines = filter_by("status:unfinished")
    assert "History (1 entry, filter: status:unfinished)" in lines
    assert "unfinished" in entry_lines(lines)[0]
    nvim.lua("vim.ui.input = function(o, cb) cb('') end")
    nvim.feed("f")
    wait_sidebar(nvim, lambda ls: "History (3 entries)" in ls, "empty filter shows all")


def test_at_90_columns_the_sidebar_takes_a_share_and_its_lines_go_compact(nvim: Child):
    store = store_of(nvim)
    record(store, "what does this narrow question show", preset_id="claude-sonnet")
    nvim.nvim.options["columns"] = 90
    lines = open_sidebar(nvim)
    width = nvim.lua("return vim.api.nvim_win_get_width(require('kznllm.sidebar').win())")
    assert width == 36  # 0.4 of the screen: the code keeps 53 columns
    [row] = entry_lines(lines)
    assert "claude-sonnet" not in row and " ok " in row
    assert row.endswith("what does this narrow question show")
    assert row.index("what") < 30  # the query shows inside the narrow window
    assert lines[0] == "<CR> open  f filter  ? help"


def test_question_mark_shows_the_keys_and_q_closes(nvim: Child):
    open_sidebar(nvim)
    nvim.feed("?")
    lines = wait_sidebar(nvim, lambda ls: any("toggle this help" in x for x in ls), "help")
    assert any(":KznHistory clear" in line for line in lines)
    nvim.feed("q")
    assert nvim.lua("return require('kznllm.sidebar').win()") is None


def test_ten_thousand_entries_open_one_page_and_more_load_at_the_end(nvim: Child):
    store = store_of(nvim)
    db = store._connect()
    with db:
        db.executemany(
            "INSERT INTO entries (started_at, mode, query, status) VALUES (?, 'yap', ?, 'ok')",
            [(1_700_000_000 + i, f"question {i}") for i in range(10_000)],
        )
    db.close()
    lines = open_sidebar(nvim)
    assert "History (10,000 entries)" in lines
    assert len(entry_lines(lines)) == 200
    assert lines[-1] == "… 9,800 more (move down to load them)"
    assert entry_lines(lines)[0].endswith("question 9999")
    before = rendered(nvim)
    nvim.lua("vim.api.nvim_win_set_cursor(require('kznllm.sidebar').win(), { ..., 0 })", len(lines))
    nvim.wait_for(lambda: rendered(nvim) > before, what="the next page")
    lines = sidebar_lines(nvim)
    assert len(entry_lines(lines)) == 400
    assert entry_lines(lines)[200].endswith("question 9799")
    assert lines[-1] == "… 9,600 more (move down to load them)"


def test_clear_asks_first_and_deletes_everything_only_on_yes(nvim: Child):
    store = store_of(nvim)
    record(store, "one")
    record(store, "two")
    nvim.lua("vim.ui.select = function(items, opts, cb) _G.asked = opts.prompt cb(items[2], 2) end")
    nvim.nvim.command("KznHistory clear")
    assert nvim.lua("return _G.asked") == "Clear the whole kznllm history?"
    assert store.count() == 2
    nvim.lua("vim.ui.select = function(items, opts, cb) cb(items[1], 1) end")
    nvim.nvim.command("KznHistory clear")
    nvim.wait_for(lambda: any("history cleared (2 entries)" in m for m in nvim.messages()))
    assert store.count() == 0


def test_rerun_sends_the_same_prompt_to_the_current_preset_into_a_scratch_buffer(
    nvim: Child, server: LoopbackServer
):
    with LoopbackServer() as other:
        server.queue(Reply(chunks=openai_events(["first model"])))
        other.queue(Reply(chunks=anthropic_events(["second model"])))
        nvim.use_server(server.base_url)
        nvim.nvim.command("KznFill compare us")
        nvim.wait_done()
        nvim.use_server(other.url, provider="anthropic")
        store = store_of(nvim)
        [first] = nvim.wait_for(
            lambda: [e for e in store.list() if e.status == "ok"], what="the first entry"
        )
        open_sidebar(nvim)
        goto_entry(nvim, first.id)
        nvim.feed("r")
        done = nvim.wait_done(2)[1]
        assert done["status"] == "ok"
        sent_first = server.requests[0].body["messages"]
        sent_again = other.requests[0].body
        assert sent_again["system"][0]["text"] == sent_first[0]["content"]
        assert sent_again["messages"] == [{"role": "user", "content": sent_first[1]["content"]}]
        text = nvim.text(done["bufnr"])
        assert text.startswith(f"# kznllm re-run of #{first.id} with test")
        assert text.endswith("## Answer (test)\n\nsecond model")
        newest = nvim.wait_for(
            lambda: [e for e in store.list() if e.status == "ok" and e.id != first.id],
            what="the re-run's entry",
        )[0]
        assert (newest.query, newest.provider, newest.mode) == ("compare us", "anthropic", "rerun")
        # a second re-run opens in the same window, not another split
        wins = len(nvim.nvim.windows)
        nvim.serve(server, Reply(chunks=openai_events(["third"])))
        nvim.nvim.command("wincmd l")  # back to the sidebar (on the right)
        goto_entry(nvim, first.id)
        nvim.feed("r")
        third = nvim.wait_done(3)[2]
        assert third["status"] == "ok" and len(nvim.nvim.windows) == wins
        assert nvim.lua("return vim.api.nvim_get_current_buf()") == third["bufnr"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_follow_up_in_the_debug_view_sends_the_earlier_turns_and_links_them(
    nvim: Child, server: LoopbackServer, provider: str
):
    events = openai_events if provider == "openai" else anthropic_events
    server.queue(Reply(chunks=events(["It adds."])), Reply(chunks=events(["Use sum()."])))
    nvim.use_server(server.base_url if provider == "openai" else server.url, provider=provider)
    nvim.nvim.command("KznDebug what does it do")
    first = nvim.wait_done()[0]
    debug_buf = first["bufnr"]
    assert nvim.nvim.current.buffer.number == debug_buf
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry id")
    nvim.nvim.command("KznFill shorter?")
    second = nvim.wait_done(2)[1]
    assert second["status"] == "ok" and second["bufnr"] == debug_buf
    body = server.requests[1].body
    turns = [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]
    first_user = turns[0]
    assert turns == [first_user, ("assistant", "It adds."), ("user", "shorter?")]
    if provider == "openai":
        assert body["messages"][0]["role"] == "system"
        assert body["messages"][0] == server.requests[0].body["messages"][0]
    else:
        assert body["system"] == server.requests[0].body["system"]
    assert nvim.text(debug_buf).endswith(
        "It adds.\n\n## You\n\nshorter?\n\n## Answer (test)\n\nUse sum()."
    )
    store = store_of(nvim)
    newest, oldest = nvim.wait_for(
        lambda: oks if len(oks := [e for e in store.list() if e.status == "ok"]) == 2 else None,
        what="both entries",
    )
    assert (newest.mode, newest.parent_id, oldest.mode) == ("chat", oldest.id, "debug")
    assert nvim.lua("return vim.b.kznllm_entry") == newest.id  # the next one continues here


def test_a_follow_up_from_a_history_entry_continues_its_conversation(
    nvim: Child, server: LoopbackServer
):
    store = store_of(nvim)
    entry_id = record(store, "name a color", response="Blue.")
    store.set_prompt(
        entry_id,
        '{"system": "Be brief.", "messages": [{"role": "user", "content": "name a color"}]}',
    )
    nvim.serve(server, Reply(chunks=openai_events(["Red."])))
    open_sidebar(nvim)
    goto_entry(nvim, entry_id)
    nvim.feed("<CR>")
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry") == entry_id, what="the entry")
    nvim.lua("vim.ui.input = function(_, cb) cb('another') end")
    nvim.feed(" k")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert server.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "name a color"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "another"},
    ]
    assert nvim.text().endswith("## You\n\nanother\n\n## Answer (test)\n\nRed.")
    # history is written off the host's loop: the follow-up's entry may come after Done
    nvim.wait_for(lambda: len(store.list()) == 2, what="the follow-up's history entry")
    assert store.list()[0].parent_id == entry_id


def test_a_follow_up_waits_for_the_answer_and_needs_history(nvim: Child, server: LoopbackServer):
    server.queue(
        Reply(chunks=openai_events(["slow"]), pause_after=1),
        Reply(chunks=openai_events(["then"])),
    )
    nvim.use_server(server.base_url)
    nvim.nvim.command("KznDebug first")
    server.wait_paused()
    nvim.nvim.command("KznFill too early")  # waits for the answer, then goes out
    assert any("goes out when the answer streaming here ends" in m for m in nvim.messages())
    assert len(server.requests) == 1
    server.resume()
    assert [d["status"] for d in nvim.wait_done(2)] == ["ok", "ok"]
    assert server.requests[1].body["messages"][-1]["content"] == "too early"
    # with history off, a debug view never learns an entry: nothing to follow up
    nvim.lua("require('kznllm').setup({ history = false })")
    server.queue(Reply(chunks=openai_events(["unrecorded"])))
    nvim.nvim.command("KznDebug second")
    second = nvim.wait_done(3)[2]
    assert nvim.nvim.current.buffer.number == second["bufnr"]
    nvim.nvim.command("KznFill no history")
    assert any("follow-ups need setup({ history = true })" in m for m in nvim.messages())
    assert len(server.requests) == 3


def test_history_persists_across_restarts_and_is_navigated_with_real_keys(
    tmp_path: Path, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(["first answer"])))
    server.queue(Reply(chunks=openai_events(["second answer"])))
    first = Child(tmp_path)
    try:
        first.use_server(server.base_url)
        first.nvim.command("KznFill the first question")
        first.wait_done()
        first.nvim.command("KznFill the second question")
        first.wait_done(2)
        store = store_of(first)
        first.wait_for(lambda: [e for e in store.list() if e.status == "ok"][1:], what="2 entries")
    finally:
        first.close()
    again = Child(tmp_path)  # the same XDG dirs: a restart
    try:
        lines = open_sidebar(again)
        assert [r.split()[-3:] for r in entry_lines(lines)] == [
            ["the", "second", "question"],
            ["the", "first", "question"],
        ]
        again.feed("G")  # the oldest entry is the last line
        again.feed("<CR>")
        again.wait_for(lambda: again.lua("return vim.b.kznllm_entry"), what="the entry")
        assert "first answer" in again.lines()
        again.feed("<C-w>l")  # back to the sidebar, on the right
        assert again.lua("return vim.bo.filetype") == "kznllm-history"
        again.feed("k")
        again.feed("y")
        again.wait_for(lambda: again.lua("return vim.fn.getreg('\"')") == "second answer")
    finally:
        again.close()


def test_the_sidebar_follows_the_preset_and_says_when_history_is_off(nvim: Child):
    lines = open_sidebar(nvim)
    assert any(line.startswith("  preset  demo ") for line in lines)
    nvim.nvim.command("KznPreset claude-haiku")
    wait_sidebar(
        nvim, lambda ls: any(x.startswith("  preset  claude-haiku ") for x in ls), "the preset"
    )
    nvim.nvim.command("KznHistory")  # close
    nvim.lua("require('kznllm').setup({ history = { enabled = false } })")
    nvim.nvim.command("KznHistory")
    assert nvim.lua("return require('kznllm.sidebar').win()") is None
    assert any("history is off" in m for m in nvim.messages())
