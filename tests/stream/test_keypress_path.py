"""What stands between a keypress and the request (bench/keypress_bench.py finds the
stages): the built-in templates render on the loop once compiled (a thread hop costs
more than the render), project templates always on a thread; history's entry exists
before the request goes out, while its prompt and request (the whole context, to
redact) are saved after it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kznllm_py.history.recorder import HistoryRecorder
from kznllm_py.history.records import NewEntry
from kznllm_py.history.store import HistoryStore
from kznllm_py.prompt import prompts, sandbox
from kznllm_py.stream import prepare as prepare_mod
from kznllm_py.stream.prepare import prepare_with_prompt
from tests.servers import LoopbackServer, Reply, openai_events
from tests.stream.test_events import CTX, generation, preset, recorded


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The renders that went to a thread (sandbox.run_off_loop), by function name."""
    seen: list[str] = []
    off_loop = sandbox.run_off_loop

    async def counted(fn: Any, *args: Any, **kw: Any) -> Any:
        seen.append(fn.__name__)
        return await off_loop(fn, *args, **kw)

    monkeypatch.setattr(sandbox, "run_off_loop", counted)
    monkeypatch.setattr(prepare_mod, "_compiled", set())  # as in a fresh host
    return seen


async def test_builtin_templates_render_on_the_loop_once_compiled(
    server: LoopbackServer, hops: list[str]
):
    dirs = prompts.search_path()  # the built-in templates only
    first = await prepare_with_prompt(preset(server), CTX, search_dirs=dirs)
    again = await prepare_with_prompt(preset(server), CTX, search_dirs=dirs)
    assert hops == ["render_prompt"]  # the first compiles, on a thread; then on the loop
    assert first[2] == again[2]  # the same prompt either way


async def test_project_templates_always_render_on_a_thread(
    server: LoopbackServer, hops: list[str], tmp_path: Path
):
    root = tmp_path / ".kzn" / "templates" / "openai"
    root.mkdir(parents=True)
    (root / "system.jinja").write_text("project system", encoding="utf-8")
    dirs = prompts.search_path(project_kzn=tmp_path / ".kzn")
    for _ in range(3):
        _, _, prompt = await prepare_with_prompt(preset(server), CTX, search_dirs=dirs)
        assert prompt.system == "project system"
    assert hops == ["render_prompt"] * 3


async def test_the_prompt_and_request_are_saved_after_the_send(
    server: LoopbackServer, client: httpx.AsyncClient, tmp_path: Path, monkeypatch
):
    """The prompt and request are saved (redacted: the whole context, on history's
    thread) after the request reached the server, and are in history at the end."""
    saves: dict[str, float] = {}

    def stamped(name: str) -> Any:
        original = getattr(HistoryStore, name)

        def save(store: HistoryStore, entry_id: int, value: str) -> bool:
            saves[name] = time.time()  # the server stamps requests on this clock
            return original(store, entry_id, value)

        return save

    for name in ("set_prompt", "set_request"):
        monkeypatch.setattr(HistoryStore, name, stamped(name))
    recorder = HistoryRecorder(tmp_path / "h.sqlite3", print, max_entries=None)
    try:
        rec = recorder.begin(NewEntry(mode="yap", query="say hello"))
        await rec.created()  # the entry first: what follows is the send's own time
        server.queue(Reply(chunks=openai_events(["saved"])))
        entry = await recorded(recorder, rec, generation(client, server).events())
    finally:
        recorder.close()
    assert entry is not None
    (request,) = server.requests
    assert request.at <= saves["set_prompt"] and request.at <= saves["set_request"]
    assert "say hello" in entry.request and "say hello" in entry.prompt
    assert (entry.status, entry.response) == ("ok", "saved")
