"""Every reasoning field of 2026 read, none in the answer: OpenRouter's
`reasoning_details` (text and summary; encrypted skipped, never doubled with its
`reasoning` beside it), vLLM's `reasoning`, Anthropic's `signature_delta` and
`redacted_thinking` (kept out of the text), Gemini's `thought` parts and
`thoughtSignature`. Recorded streams (tests/recorded.py, each citing its source), parsed
under three chunkings, then replayed from a loopback server through `kznllm fill` and
`:KznFill`: the answer byte for byte in stdout and in the buffer, the reasoning in
history, never in the code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kznllm_py.providers import PROVIDERS, openai
from kznllm_py.providers.base import DoneDelta, ReasoningDelta, TextDelta, UsageDelta
from tests.cli_env import clean_env, kznllm
from tests.nvim_child import Child, editor_with
from tests.recorded import CHUNKINGS, REASONING_FIELDS, Recorded
from tests.servers import LoopbackServer, Reply
from tests.streams import base_url_for, cursor_presets, run

CASES = [(r, how) for r in REASONING_FIELDS for how in CHUNKINGS]
IDS = [f"{r.name}-{how}" for r, how in CASES]


@pytest.mark.parametrize(("rec", "how"), CASES, ids=IDS)
def test_reasoning_fields_are_reasoning_and_the_answer_is_exact(rec: Recorded, how: str) -> None:
    deltas = run(PROVIDERS[rec.provider], rec.chunked(how))
    assert "".join(d.text for d in deltas if type(d) is TextDelta) == rec.text
    assert "".join(d.text for d in deltas if type(d) is ReasoningDelta) == rec.reasoning
    assert deltas[-1] == DoneDelta(rec.finish)
    usages = [d for d in deltas if type(d) is UsageDelta]
    assert usages[-1].to_dict() == rec.usage


def test_openrouter_encrypted_details_carry_no_text_and_reasoning_is_not_doubled() -> None:
    assert openai.reasoning_of([{"type": "reasoning.encrypted", "data": "x"}]) is None
    both = {"reasoning": "abc", "reasoning_details": [{"type": "reasoning.text", "text": "abc"}]}
    chunk = {"choices": [{"index": 0, "delta": both}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    deltas = run(openai.PROVIDER, [body])
    assert [d for d in deltas if type(d) is ReasoningDelta] == [ReasoningDelta("abc")]


# -- through the CLI and the editor ------------------------------------------------------------

PROVIDER_NAMES = sorted({r.provider for r in REASONING_FIELDS})


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory, loopback: LoopbackServer) -> Iterator[Child]:
    presets = cursor_presets("rf", PROVIDER_NAMES, loopback.url)
    with editor_with(tmp_path_factory.mktemp("nvim"), presets) as child:
        yield child


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = clean_env(XDG_CONFIG_HOME=str(cwd / "cfg"), XDG_DATA_HOME=str(cwd / "data"))
    return kznllm(*args, cwd=cwd, env=env, timeout=30)


@pytest.mark.parametrize(("rec", "how"), CASES, ids=IDS)
def test_recorded_reasoning_stream_through_cli_and_editor(
    rec: Recorded, how: str, loopback: LoopbackServer, editor: Child, tmp_path: Path
) -> None:
    reply = Reply(chunks=rec.chunked(how))
    loopback.queue(reply, reply)
    base = base_url_for(rec.provider, loopback.url)
    args = ["--provider", rec.provider, "--model", "m", "--base-url", base, "--no-project"]
    res = cli(["fill", *args, "q"], tmp_path)
    assert (res.returncode, res.stderr) == (0, b""), res.stderr
    assert res.stdout == rec.text.encode("utf-8")
    text, done = editor.fill_scratch(f"rf-{rec.provider}")
    assert done["status"] == "ok"
    assert text == rec.text  # the reasoning never lands in the code
    # history keeps the reasoning, apart from the answer
    shown = cli(["history", "show", "1", "--json"], tmp_path)
    entry = json.loads(shown.stdout)
    assert (entry["response"], entry["reasoning"]) == (rec.text, rec.reasoning)
