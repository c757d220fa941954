"""The offline demo model: a deterministic, OpenAI-compatible stream on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kznllm_py.prompt.presets import DEMO_ID, merge_presets
from kznllm_py.prompt.prompts import FillContext, render
from kznllm_py.providers import openai
from kznllm_py.stream import demo_server
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.demo_server import DemoServer, answer_for, tokens
from kznllm_py.stream.generation import Generation, Outcome

FAST = Timeouts(connect=5.0, stall=5.0)


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture
async def demo() -> AsyncIterator[DemoServer]:
    server = await DemoServer(rate=0).start()  # rate 0: no pacing
    try:
        yield server
    finally:
        await server.close()


def chat_body(ctx: FillContext) -> dict[str, Any]:
    """The body the plugin sends for `ctx` (real templates, real request builder)."""
    req = openai.build_request(
        base_url="http://unused/v1",
        model="kznllm-demo",
        prompt=render(ctx),
        params={},
        api_key=None,
    )
    return req.body


async def stream(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[dict | str]:
    """POST and return the stream's events: parsed chunks, and "[DONE]"."""
    async with client.stream("POST", url + "/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        raw = b"".join([c async for c in resp.aiter_bytes()])
    out: list[dict | str] = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode("utf-8").split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def text_of(events: list[dict | str]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict)
    )


async def test_same_request_same_text(demo, client):
    body = chat_body(FillContext(mode="yap", query="what does this do?"))
    first = await stream(client, demo.base_url, body)
    second = await stream(client, demo.base_url, body)
    assert text_of(first) == text_of(second) == answer_for(body)
    assert "not a real LLM" in text_of(first)
    assert "'what does this do?'" in text_of(first)


async def test_stream_is_chat_completions_shaped(demo, client):
    body = chat_body(FillContext(mode="yap", query="hi"))
    events = await stream(client, demo.base_url, body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len(chunks) > 10  # token by token, not one blob
    for c in chunks:
        assert isinstance(c, dict)
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == demo_server.MODEL
        assert len(c["choices"]) == 1
        assert c["choices"][0]["index"] == 0
    assert [c["choices"][0]["finish_reason"] for c in chunks[-1:]] == ["stop"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["delta"] == {}


@pytest.mark.parametrize(
    ("filetype", "lead"), [("python", "#"), ("lua", "--"), ("vim", '"'), ("rust", "//"), ("", "//")]
)
async def test_replace_mode_returns_the_selection_under_a_comment(filetype, lead, demo, client):
    selection = 'fn main() {\n    println!("hé ✓");\n}\n'
    ctx = FillContext(mode="replace", query="add logging", selection=selection, filetype=filetype)
    events = await stream(client, demo.base_url, chat_body(ctx))
    assert text_of(events) == f"{lead} kznllm demo model (offline): add logging\n{selection}"


async def test_replace_mode_puts_its_comment_at_the_selections_indentation(demo, client):
    # at column 0 above indented code, the replace's shaping indented the code twice
    selection = "    if x:\n        y()\n"
    ctx = FillContext(mode="replace", query="q", selection=selection, filetype="python")
    events = await stream(client, demo.base_url, chat_body(ctx))
    assert text_of(events) == f"    # kznllm demo model (offline): q\n{selection}"


async def test_replace_mode_keeps_the_selection_byte_for_byte(demo, client):
    selection = "  indented\n\n\ttabs  \n\u2028odd separators\r\nend"
    ctx = FillContext(mode="replace", query="q", selection=selection, filetype="python")
    events = await stream(client, demo.base_url, chat_body(ctx))
    assert text_of(events).split("\n", 1)[1] == selection


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nothing"), ("POST", "/v1/completions")])
async def test_unknown_route_is_a_404_json_error(method, path, demo, client):
    resp = await client.request(method, f"http://127.0.0.1:{demo.port}{path}", json={})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["message"] == f"demo server: no route {method} {path}"
    # the connection is still good for a real request
    events = await stream(client, demo.base_url, chat_body(FillContext(mode="yap", query="x")))
    assert events[-1] == "[DONE]"


async def test_models_are_listed_as_openai_lists_them(demo, client):
    resp = await client.get(demo.base_url + "/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["kznllm-demo", "kznllm-demo-fast"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_an_unknown_model_is_a_404_with_an_openai_error_body(demo, client):
    body = {**chat_body(FillContext(mode="yap", query="x")), "model": "gpt-9"}
    resp = await client.post(demo.base_url + "/chat/completions", json=body)
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "model_not_found"
    assert err["type"] == "invalid_request_error"
    assert err["message"].startswith("The model `gpt-9` does not exist")
    assert "kznllm-demo" in err["message"]  # what it has instead


async def test_the_fast_model_streams_the_same_answer_under_its_own_name(client):
    server = await DemoServer(rate=1.0).start()  # paced at 1/s: only the fast one is quick
    try:
        body = {**chat_body(FillContext(mode="yap", query="x")), "model": "kznllm-demo-fast"}
        events = await asyncio.wait_for(stream(client, server.base_url, body), 5)
    finally:
        await server.close()
    assert text_of(events) == answer_for(body)
    assert {e["model"] for e in events if isinstance(e, dict)} == {"kznllm-demo-fast"}


async def demo_fill(ctx: FillContext) -> tuple[Outcome, list[str]]:
    """A generation with the built-in demo preset (its server shut down after), and the
    texts it wrote."""
    preset = merge_presets(None).presets[DEMO_ID]
    assert preset.demo
    got: list[str] = []
    try:
        async with new_client() as client:
            out = await Generation(client, preset, ctx, FAST).run(got.append)
    finally:
        await demo_server.shutdown()
    return out, got


async def test_generation_with_the_demo_preset():
    ctx = FillContext(mode="replace", query="rename x", selection="x = 1\n", filetype="python")
    out, got = await demo_fill(ctx)
    assert (out.status, out.error) == ("ok", None)
    assert "".join(got) == "# kznllm demo model (offline): rename x\nx = 1\n"
    assert out.finish_reason == "stop"
    assert len(got) > 1  # streamed, not delivered at once


def test_demo_preset_survives_a_closed_event_loop():
    """A demo server started in an earlier `asyncio.run` (its loop now closed) must not
    be reused: it would accept connections and never answer them."""

    async def start_and_leave() -> int:
        return (await demo_server.ensure_running()).port

    async def generate() -> tuple[str, str]:
        ctx = FillContext(mode="replace", query="q", selection="y", filetype="lua")
        out, got = await demo_fill(ctx)
        return out.status, "".join(got)

    stale_port = asyncio.run(start_and_leave())  # no shutdown: left behind on purpose
    t0 = time.perf_counter()
    assert asyncio.run(generate()) == ("ok", "-- kznllm demo model (offline): q\ny")
    assert time.perf_counter() - t0 < 4.0
    assert demo_server._running is None
    # and the stale one stopped listening
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{stale_port}/", timeout=2)


async def test_close_ends_idle_keep_alive_connections(client):
    server = await DemoServer(rate=0).start()
    await stream(client, server.base_url, chat_body(FillContext(mode="yap", query="x")))
    # the client keeps its connection open; close() must not wait for it
    await asyncio.wait_for(server.close(), 2)


@given(st.text())
def test_tokens_concatenate_to_the_text(text):
    assert "".join(tokens(text)) == text


def test_demo_server_command(tmp_path):
    """`kznllm demo-server --port 0` announces its URL and answers on it."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kznllm_py.cli.main", "demo-server", "--port", "0", "--rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=10), "demo-server printed nothing"
        first = proc.stdout.readline().decode()
        assert "not a real LLM" in first
        base_url = first.rsplit(" at ", 1)[1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert not base_url.endswith(":0/v1")
        body = chat_body(FillContext(mode="yap", query="hello"))
        resp = httpx.post(base_url + "/chat/completions", json=body, timeout=5)
        assert resp.status_code == 200
        text = "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in resp.text.split("\n\n")
            if line.startswith("data: {")
        )
        assert text == answer_for(body)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
