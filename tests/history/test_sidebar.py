"""The pure parts of the history sidebar and of conversations: filters, the layout of
entry lines, paging, the entry view and its folds, follow-up and re-run prompts, the
retention options, and the host-side view over a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kznllm_py.errors import ConfigError, KznError
from kznllm_py.history import Entry, EntrySummary, HistoryStore, NewEntry, conversation
from kznllm_py.history import view as sidebar
from kznllm_py.history.ops import HistoryOps
from kznllm_py.history.recorder import HistoryRecorder
from kznllm_py.providers.base import Message, Prompt
from kznllm_py.settings import Settings, retention

NOW = 1_763_900_000.0


def summary(**kw: object) -> EntrySummary:
    base: dict[str, object] = {
        "id": 1,
        "started_at": NOW - 5,
        "finished_at": NOW,
        "preset_id": "claude-sonnet",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "mode": "yap",
        "status": "ok",
        "error": None,
        "input_tokens": 1200,
        "output_tokens": 345,
        "first_token_ms": 300,
        "duration_ms": 2500,
        "path": "/p/main.py",
        "parent_id": None,
        "query": "explain this\nsecond line",
    }
    base.update(kw)
    return EntrySummary(**base)  # type: ignore[arg-type]


def entry(**kw: object) -> Entry:
    fields: dict[str, object] = {
        "filetype": "python",
        "selection": "",
        "request": "",
        "reasoning": "",
        "response": "It explains.",
        "prompt": "",
    }
    for k in list(fields):
        if k in kw:
            fields[k] = kw.pop(k)
    s = summary(**kw)
    return Entry(**{f: getattr(s, f) for f in EntrySummary.__dataclass_fields__}, **fields)  # type: ignore[arg-type]


# -- filters ----------------------------------------------------------------------------


def test_filter_words_pick_preset_and_status_and_the_rest_is_searched_text():
    f = sidebar.parse_filter("preset:gpt-4o  empty case status:error")
    assert (f.text, f.preset, f.status) == ("empty case", "gpt-4o", "error")
    assert f.describe() == "empty case preset:gpt-4o status:error"
    unfinished = sidebar.parse_filter("status:unfinished")
    assert unfinished.status == "running"  # what the store has
    assert unfinished.describe() == "status:unfinished"  # what the user typed
    assert not sidebar.parse_filter("   ").active
    with pytest.raises(ConfigError, match="unknown status 'bogus'"):
        sidebar.parse_filter("status:bogus")


# -- entry lines ------------------------------------------------------------------------


def test_an_entry_line_has_fixed_columns_and_the_query_title_last():
    line, col, status = sidebar.entry_line(summary(), now=NOW)
    assert status == "ok"
    assert line.encode()[col:].startswith(b"ok ")
    assert line.endswith("  explain this")  # first line of the query only
    assert " 345 " in line and "2.5s" in line and "claude-sonnet" in line
    assert line.startswith(time.strftime("%H:%M ", time.localtime(NOW - 5)))
    assert len(line) - len("explain this") == 53  # the query starts at column 53


def test_a_compact_line_keeps_time_status_tokens_and_query_for_a_narrow_sidebar():
    line, col, _ = sidebar.entry_line(summary(), now=NOW, compact=True)
    assert "claude-sonnet" not in line and "2.5s" not in line
    assert line.encode()[col:].startswith(b"ok ") and " 345 " in line
    assert len(line) - len("explain this") == 21  # the query starts at column 21
    # no tokens known: no empty column either (the query starts at column 17)
    bare, _, _ = sidebar.entry_line(
        replace(summary(), input_tokens=None, output_tokens=None), now=NOW, compact=True
    )
    assert bare.endswith("ok         explain this") and len(bare) - len("explain this") == 17
    view = sidebar.render([summary()], total=1, offset=0, now=NOW, live={}, width=36)
    assert view["live_width"] == sidebar.COMPACT_LIVE_WIDTH
    assert view["lines"][-1] == line
    wide = sidebar.render([summary()], total=1, offset=0, now=NOW, live={}, width=80)
    assert wide["live_width"] == sidebar.LIVE_WIDTH and "claude-sonnet" in wide["lines"][-1]


def test_the_help_keys_and_texts_are_the_ones_the_help_file_documents():
    doc = (Path(__file__).resolve().parents[2] / "doc" / "kznllm.txt").read_text()
    for name, key in sidebar.DEFAULT_KEYS.items():
        assert f"\n  {key:<6} {sidebar.KEY_HELP[name]}\n" in doc, name


def test_a_running_entry_is_live_only_when_this_editor_streams_it():
    s = summary(status="running", finished_at=None, duration_ms=None, output_tokens=None)
    assert sidebar.entry_line(s, now=NOW)[2] == "unfinished"
    assert sidebar.entry_line(s, now=NOW, live=True)[2] == "running"


def test_long_presets_are_cut_and_multibyte_columns_are_byte_offsets():
    s = summary(preset_id="ünïcode-preset-with-a-long-name", query="日本語の質問")
    line, col, _ = sidebar.entry_line(s, now=NOW)
    assert "ünïcode-pres…" in line
    assert line.encode()[col:].startswith(b"ok ")
    assert line.endswith("日本語の質問")


def test_older_entries_show_the_date():
    line, _, _ = sidebar.entry_line(summary(started_at=NOW - 3 * 86400), now=NOW)
    assert line.startswith(time.strftime("%m-%d ", time.localtime(NOW - 3 * 86400)))


# -- the view ---------------------------------------------------------------------------


def test_the_first_page_has_help_context_heading_and_a_more_line_with_entry_ids():
    entries = [
        summary(id=i, query=f"q{i}", status="running" if i == 8 else "ok") for i in (9, 8, 7)
    ]
    ctx = sidebar.ContextInfo(
        preset_id="gpt-4o-mini",
        provider="openai",
        model="gpt-4o-mini",
        key="$OPENAI_API_KEY",
        key_present=False,
        buffer_path="/p/a.lua",
        filetype="lua",
    )
    view = sidebar.render(entries, total=10, offset=0, now=NOW, live={8: 3}, context=ctx)
    lines = view["lines"]
    assert lines[0].startswith("<CR> open")
    assert "  preset  gpt-4o-mini · openai gpt-4o-mini · key $OPENAI_API_KEY MISSING" in lines
    assert "  buffer  /p/a.lua (lua)" in lines
    assert "History (10 entries)" in lines
    assert lines[-1] == "… 7 more (move down to load them)"
    assert [view["rows"][lines.index(x)] for x in lines if x.endswith(("q9", "q8", "q7"))] == [
        9,
        8,
        7,
    ]
    (live,) = view["live"]
    assert (live["job"], live["entry"], lines[live["line"]].endswith("q8")) == (3, 8, True)
    assert lines[live["line"]].encode()[live["col"] :].startswith(b"running")
    assert (view["more"], view["next_offset"], view["first_page"]) == (True, 3, True)
    error_hl = [h for h in view["hl"] if h[3] == "KznllmHistoryError"]
    assert error_hl  # MISSING is marked


def test_a_finished_entry_is_never_drawn_live():
    view = sidebar.render([summary(id=4)], total=1, offset=0, now=NOW, live={4: 1})
    assert view["live"] == []


def test_a_later_page_is_entries_only_and_the_last_has_no_more_line():
    view = sidebar.render([summary(id=1)], total=201, offset=200, now=NOW, live={})
    assert len(view["lines"]) == 1 and view["rows"] == [1]
    assert (view["more"], view["first_page"]) == (False, False)


def test_an_empty_history_and_an_empty_filter_say_so():
    ctx = sidebar.ContextInfo(preset_id="demo")
    assert (
        "  nothing yet"
        in sidebar.render([], total=0, offset=0, now=NOW, live={}, context=ctx)["lines"]
    )
    view = sidebar.render(
        [], total=0, offset=0, now=NOW, live={}, context=ctx, flt=sidebar.Filter(status="error")
    )
    assert "History (0 entries, filter: status:error)" in view["lines"]
    assert "  nothing matches" in view["lines"]


def test_help_lists_every_key_with_the_configured_mapping():
    ctx = sidebar.ContextInfo(preset_id="demo")
    keys = {**sidebar.DEFAULT_KEYS, "delete": "X"}
    view = sidebar.render(
        [], total=0, offset=0, now=NOW, live={}, context=ctx, keys=keys, show_help=True
    )
    assert "X delete" in view["lines"][0]
    assert any(line.startswith("  X      delete the entry") for line in view["lines"])


def test_the_entry_view_folds_request_and_reasoning_and_shows_follow_ups():
    first = entry(
        id=1,
        query="why?",
        selection="x = 1",
        request='{"url": "u", "body": {"k": 1}}',
        reasoning="step 1\nstep 2",
        response="Because.",
    )
    second = entry(
        id=2,
        parent_id=1,
        mode="chat",
        query="more",
        response="",
        status="error",
        error="HTTP 500",
        prompt=json.dumps({"system": "S", "messages": []}),
    )
    view = sidebar.entry_view([first, second])
    lines = view["lines"]
    assert lines[0] == "# kznllm #1 · /p/main.py"
    assert view["entry"] == 2
    for a, _ in view["folds"]:
        assert lines[a - 1].startswith("## ")
    titles = [lines[a - 1] for a, _ in view["folds"]]
    assert titles == ["## Request", "## Reasoning", "## System"]
    request = lines[lines.index("## Request") + 2 : lines.index("## Request") + 9]
    assert request[0] == "```json" and '  "url": "u",' in request  # pretty-printed
    assert "# Follow-up #2" in lines
    assert "[error: HTTP 500]" in lines
    fold_req = view["folds"][0]
    assert lines[fold_req[1] - 1] == "```"  # the fold ends with its section


def test_a_selection_with_fences_gets_a_longer_fence():
    view = sidebar.entry_view([entry(selection="```\ncode\n```", filetype="md")])
    assert "````md" in view["lines"]


def test_a_kzn_folder_of_thousands_of_files_does_not_bury_the_history():
    """A cloned repository's `.kzn` of 20,000 files put 20,000 lines above the history:
    the entries were out of reach (found in tmux). A few files of each kind are listed,
    then how many more and where they all are; the totals stay whole."""
    kzn = sidebar.KznFiles(
        directory=".kzn",
        files=[(f".kzn/f{i:05}.md", 25) for i in range(786)],
        skipped=[
            (f".kzn/g{i:05}.md", "over the context budget (0 tokens left)") for i in range(19214)
        ],
        budget=19660,
    )
    ctx = sidebar.ContextInfo(preset_id="demo", buffer_path="/p/a.py", kzn=kzn)
    lines = sidebar.render([summary()], total=1, offset=0, now=NOW, live={}, context=ctx)["lines"]
    assert len(lines) < 40, len(lines)
    assert "  .kzn    .kzn: 786 files, ~19,650 of 19,660 tokens" in lines
    assert "          .kzn/f00000.md  ~25" in lines
    assert "          … 776 more files (:KznDebug lists them)" in lines
    assert "          … 19,204 more skipped (:KznDebug says why)" in lines
    assert [x for x in lines if x.startswith("History (1 entry")]
    few = sidebar.KznFiles(directory=".kzn", files=[(".kzn/a.md", 1)], budget=10)
    ctx = sidebar.ContextInfo(preset_id="demo", buffer_path="/p/a.py", kzn=few)
    lines = sidebar.render([], total=0, offset=0, now=NOW, live={}, context=ctx)["lines"]
    assert not [x for x in lines if "more" in x]


def test_no_line_of_the_entry_view_holds_a_line_break_or_a_raw_control_character():
    """A cloned repository's file named `we\nird.py`, a model or an error with a line
    break (a CLI argument, a server's model list): each was put whole on one line, and
    Neovim refused the lines ("item contains newlines"), so the entry never opened. The
    fields that head a line are shown escaped; the texts of the sections (query,
    selection, answer) stay as they were, split into lines."""
    e = entry(
        path="/p/we\nird\r\x1b]0;T\x07.py",
        model="m\nx",
        preset_id="p\n1",
        error="bad\nthing",
        status="error",
        filetype="py\nthon",
        selection="a\nb",
        query="q1\nq2",
    )
    lines = sidebar.entry_view([e, replace(e, id=2, parent_id=1)])["lines"]
    assert not [line for line in lines if "\n" in line or "\x1b" in line or "\r" in line]
    assert lines[0] == "# kznllm #1 · /p/we\\nird\\r\\x1b]0;T\\x07.py"
    assert "p\\n1 (anthropic m\\nx)" in lines[1]
    assert "error: bad\\nthing" in lines[1]
    assert lines[lines.index("## Query") + 2 : lines.index("## Query") + 4] == ["q1", "q2"]
    assert "## Answer (p\\n1)" in lines


# -- conversations ----------------------------------------------------------------------


def test_a_prompt_round_trips_through_its_json_without_the_prefill():
    p = Prompt("sys", (Message("user", "hi ünï"), Message("assistant", "yo")), prefill="```")
    back = conversation.prompt_from_json(conversation.prompt_to_json(p))
    assert back == Prompt("sys", p.messages)
    for bad in ("", "nope", "[]", '{"system": 1}', '{"system": "", "messages": [{"role": "x"}]}'):
        assert conversation.prompt_from_json(bad) is None


def test_a_follow_up_alternates_turns_and_keeps_the_system():
    e = entry(
        response="Answer one.\n",
        prompt=conversation.prompt_to_json(Prompt("Be brief.", (Message("user", "Q1"),))),
    )
    p = conversation.follow_up(e, "Q2")
    assert p.system == "Be brief."
    assert p.messages == (
        Message("user", "Q1"),
        Message("assistant", "Answer one."),
        Message("user", "Q2"),
    )


def test_a_follow_up_of_an_unanswered_entry_joins_the_question():
    e = entry(
        response="",
        status="error",
        prompt=conversation.prompt_to_json(Prompt("", (Message("user", "Q1"),))),
    )
    assert conversation.follow_up(e, "Q2").messages == (Message("user", "Q1\n\nQ2"),)


def test_an_entry_without_a_stored_prompt_continues_from_its_query():
    p = conversation.follow_up(entry(query="old q", response="old a"), "new q")
    assert p.messages == (
        Message("user", "old q"),
        Message("assistant", "old a"),
        Message("user", "new q"),
    )
    assert conversation.rerun(entry(query="old q")).messages == (Message("user", "old q"),)
    with pytest.raises(conversation.ConversationError, match="no prompt"):
        conversation.rerun(entry(query="  "))
    with pytest.raises(conversation.ConversationError, match="needs a question"):
        conversation.follow_up(entry(), " ")


# -- options ----------------------------------------------------------------------------


def test_history_retention_options():
    assert retention(True) == (True, 10_000, None)
    assert retention(None) == (True, 10_000, None)
    assert retention(False)[0] is False
    assert retention({"max_entries": 50, "max_age_days": 30}) == (True, 50, 30.0)
    assert retention({"enabled": False})[0] is False
    for bad in ({"max_entries": 0}, {"max_entries": "x"}, {"max_age_days": -1}, "yes"):
        with pytest.raises(ConfigError):
            retention(bad)


def test_a_store_keeps_at_most_max_entries_and_none_older_than_max_age(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3", max_entries=3, max_age_days=1)
    old = store.start(NewEntry(mode="yap", query="ancient", started_at=time.time() - 3 * 86400))
    store.finish(old, "ok")
    ids = []
    for i in range(5):
        ids.append(store.start(NewEntry(mode="yap", query=f"q{i}")))
        store.finish(ids[-1], "ok")
    assert [e.query for e in store.list()] == ["q4", "q3", "q2"]


# -- the host's view over a real store --------------------------------------------------


async def test_the_view_reads_after_queued_writes_and_pages(tmp_path: Path):
    errors: list[str] = []
    recorder = HistoryRecorder(tmp_path / "h.sqlite3", errors.append)
    try:
        rec = recorder.begin(NewEntry(mode="yap", query="first"))
        rec.text("partial")
        rec.finish("ok", None, {"duration_ms": 12.0})
        ops = HistoryOps(recorder, live={})
        view = await ops.view({"filter": "", "offset": 0, "seq": 7}, Settings())
        assert view["seq"] == 7
        assert "History (1 entry)" in view["lines"]
        assert any(line.endswith("  first") and " ok " in line for line in view["lines"])
        got = await ops.entry({"id": await rec.entry_id(), "action": "yank"})
        assert got["text"] == "partial"
        with pytest.raises(KznError, match="is gone"):
            await ops.entry({"id": 999, "action": "open"})
        with pytest.raises(ConfigError):
            await ops.view({"filter": "status:nope"}, Settings())
        assert await ops.clear() == 1
        assert errors == []
    finally:
        await asyncio.to_thread(recorder.close)


def test_the_heading_says_what_todays_fills_cost_when_known():
    view = sidebar.render(
        [summary()],
        total=1,
        offset=0,
        now=NOW,
        live={},
        context=sidebar.ContextInfo(),
        spent_today=0.0512,
    )
    assert "History (1 entry, $0.05 today)" in view["lines"]
    unknown = sidebar.render(
        [summary()], total=1, offset=0, now=NOW, live={}, context=sidebar.ContextInfo()
    )
    assert "History (1 entry)" in unknown["lines"]


def test_the_entry_view_says_the_cost_stored_with_the_entry():
    e = entry(cost_usd=0.023)
    meta = sidebar.entry_view([e])["lines"][1]
    assert meta.endswith("1200/345 tokens in/out · $0.0230"), meta
    assert "$" not in sidebar.entry_view([entry()])["lines"][1]  # no price: tokens only
