"""A fill's request, typed once at the edge (kznllm_py/fill/request.py), and a fill's own
logic over plain data (kznllm_py/fill/turn.py): what it sends, records and writes first."""

from __future__ import annotations

import json
from dataclasses import replace

from kznllm_py.fill import job as payload
from kznllm_py.fill import request
from kznllm_py.fill import turn as fill
from kznllm_py.settings import Settings
from tests.history.test_sidebar import entry


def test_a_fill_table_is_typed_once_and_loose_fields_take_their_defaults() -> None:
    req = request.parse(
        {
            "id": 7,
            "bufnr": 3.0,
            "mode": "replace",
            "query": "q",
            "selection": "sel",
            "before": "x = 1\nab",
            "after": "cd\ny",
            "cursor": [2, 4],
            "preset": "",  # Lua's nil or "": the default preset
            "linewise": True,
            "fileformat": "dos",
            "followup": None,
            "placement": "sideways",  # not a placement: none
            "spot": {"head": 1, "rest": "r"},  # not strings: no spot
            "span": {"range": [1, 2, 1, 4], "last_len": 6},
            "send": 42,
        }
    )
    assert (req.id, req.bufnr, req.mode, req.cursor) == (7, 3, "replace", (2, 4))
    assert req.preset is None and req.followup == 0 and req.send is None
    assert req.linewise and req.crlf
    assert req.placement is None and req.spot is None
    assert req.span is not None and json.loads(req.span.to_json())["start"] == [1, 2]


def test_a_debug_view_is_never_linewise_nor_crlf() -> None:
    req = request.parse({"debug": True, "linewise": True, "fileformat": "dos"})
    assert req.debug and not req.linewise and not req.crlf


def test_a_spot_and_a_placement_are_typed() -> None:
    req = request.parse({"placement": "below", "spot": {"head": "a", "rest": "b", "blank": 1}})
    assert req.placement == "below" and req.spot == request.Spot("a", "b", blank=True)


def _job(req: request.FillRequest) -> payload.FillJob:
    return payload.job_of(req, Settings())


def test_a_fresh_fill_sends_its_own_prompt_and_records_its_mode() -> None:
    req = request.parse({"mode": "replace", "query": "q", "selection": "s"})
    turn = fill.turn(req, _job(req))
    assert (turn.prompt, turn.parent_id, turn.mode, turn.head) == (None, None, "replace", "")


def test_a_follow_up_continues_its_entry_under_headings() -> None:
    req = request.parse({"query": "and then?", "followup": 5})
    job = _job(req)
    turn = fill.turn(req, job, entry(id=5, query="first", response="It explains."))
    assert turn.mode == "chat" and turn.parent_id == 5 and turn.job.ctx.mode == "yap"
    assert turn.head == f"\n\n## You\n\nand then?\n\n## Answer ({job.preset.id})\n\n"
    assert turn.prompt is not None
    assert [m.role for m in turn.prompt.messages][-1] == "user"


def test_a_rerun_asks_the_entrys_question_again_where_its_selection_stood() -> None:
    req = request.parse({"rerun": 9})
    job = _job(req)
    old = replace(entry(id=9, query="why?", mode="replace", selection="x"), span='{"kind":"r"}')
    turn = fill.turn(req, job, old)
    assert (turn.mode, turn.job.ctx.mode, turn.job.ctx.query) == ("rerun", "replace", "why?")
    assert turn.span == '{"kind":"r"}'
    assert turn.head.startswith(f"# kznllm re-run of #9 with {job.preset.id}\n\n## Query\n\nwhy?")


def test_a_span_is_recorded_for_a_replace_only() -> None:
    raw = {"selection": "s", "before": "a", "after": "b", "span": {"range": [0, 1, 0, 2]}}
    req = request.parse({**raw, "mode": "replace"})
    assert fill.span_json(req, _job(req).ctx) == req.span.to_json() != ""  # type: ignore[union-attr]
    yap = request.parse({**raw, "mode": "yap"})
    assert fill.span_json(yap, _job(yap).ctx) == ""


def test_a_new_entry_holds_the_asked_fields_and_the_presets_model() -> None:
    req = request.parse({"mode": "yap", "query": "q", "path": "/p.py", "filetype": "python"})
    job = _job(req)
    new = fill.new_entry(job, mode="yap", parent_id=3)
    assert (new.query, new.path, new.filetype, new.parent_id) == ("q", "/p.py", "python", 3)
    assert (new.preset_id, new.model) == (job.preset.id, job.preset.model)


def test_the_end_record_holds_what_the_editor_reads_at_a_fills_end() -> None:
    from kznllm_py.stream.events import Outcome

    usage = {"input_tokens": 3, "output_tokens": 4}
    end = fill.FillEnd(
        Outcome("ok", usage=usage, finish_reason="stop", text_chars=9),
        preset="p",
        writes=2,
        pace_ms=16.66,
        fold=[3, 5],
        skipped_files=1,
        notice="demo",
    )
    info = end.to_dict()
    assert {k: info[k] for k in ("status", "chars", "usage", "finish_reason")} == {
        "status": "ok",
        "chars": 9,
        "usage": usage,
        "finish_reason": "stop",
    }
    assert (info["fold"], info["preset"], info["writes"], info["pace_ms"]) == ([3, 5], "p", 2, 16.7)
    assert (info["skipped_files"], info["notice"]) == (1, "demo")
    bare = fill.FillEnd(Outcome("cancelled"), preset="p", writes=0, pace_ms=0).to_dict()
    assert not {"fold", "skipped_files", "notice"} & set(bare)
