"""The same stream through `kznllm fill` on the command line and through `:KznFill` in a
real Neovim gives identical text: the CLI's stdout equals the scratch buffer's text,
byte for byte, for every provider's wire format, with multi-byte characters cut across
network reads, newlines, CRLF (in the text and as the stream's line ends), a trailing
newline and empty lines.

One Neovim and one loopback server serve every case (a fresh scratch buffer each);
each case queues the same reply twice, once for the CLI, once for the editor.
(NUL is left out on purpose: Neovim's API shows a NUL in a line as "\\n".)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_env import kznllm
from tests.nvim_child import Child, editor_with
from tests.servers import LoopbackServer, Reply, crlf, fixed_chunks
from tests.streams import (
    CONTENT_TYPES,
    PROVIDERS,
    base_url_for,
    cursor_presets,
    provider_events,
)

# name -> (text pieces, one delta each; how the stream is cut into network writes)
STREAMS: dict[str, tuple[list[str], str]] = {
    "multibyte-cut-across-reads": (["héllo ", "wörld ", "✓ 🎉", " 日本語", "ß"], "5-bytes"),
    # (ends with a newline: the trailing-newline case)
    "newlines-and-empty-lines": (["line one\n", "\n", "\nline four\n", "  indented\n"], "events"),
    "crlf-in-text-and-framing": (["a\r\n", "b\r\n\r\n", "c\r", "\nd\r\n"], "crlf"),
    "empty-deltas-and-blank-answer-lines": (["", "x", "", "\n\n\n", "", "\ty\u2028z"], "one-read"),
}
CASES = [(p, name) for p in PROVIDERS for name in STREAMS]


def chunks_for(provider: str, name: str) -> list[bytes]:
    texts, cut = STREAMS[name]
    events = provider_events(provider, texts)
    if cut == "5-bytes":
        return fixed_chunks(b"".join(events), 5)
    if cut == "crlf":
        return crlf(events)
    if cut == "one-read":
        return [b"".join(events)]
    return events


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def editor(tmp_path_factory: pytest.TempPathFactory, server: LoopbackServer) -> Iterator[Child]:
    presets = cursor_presets("same", PROVIDERS, server.url)
    with editor_with(tmp_path_factory.mktemp("nvim"), presets) as child:
        yield child


def cli_env(home: Path) -> dict[str, str]:
    drop = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["XDG_CONFIG_HOME"] = str(home / "xdg-config")
    env["XDG_DATA_HOME"] = str(home / "xdg-data")
    return env


def cli_fill(provider: str, server: LoopbackServer, cwd: Path) -> bytes:
    base = base_url_for(provider, server.url)
    args = ["--provider", provider, "--model", "m", "--base-url", base, "--no-project", "q"]
    res = kznllm("fill", *args, cwd=cwd, env=cli_env(cwd), timeout=30)
    assert (res.returncode, res.stderr) == (0, b""), res.stderr.decode(errors="replace")
    return res.stdout


def editor_fill(nvim: Child, provider: str) -> str:
    """`:KznFill q` in yap mode into a new, empty scratch buffer; its text once done."""
    text, done = nvim.fill_scratch(f"same-{provider}")
    assert done["status"] == "ok", done
    return text


@pytest.mark.parametrize(("provider", "name"), CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_cli_stdout_and_editor_buffer_hold_identical_text(
    provider: str, name: str, server: LoopbackServer, editor: Child, tmp_path: Path
) -> None:
    reply = Reply(
        headers={"Content-Type": CONTENT_TYPES[provider]}, chunks=chunks_for(provider, name)
    )
    server.queue(reply, reply)
    expected = "".join(STREAMS[name][0])
    stdout = cli_fill(provider, server, tmp_path)
    buffer_text = editor_fill(editor, provider)
    assert stdout.decode("utf-8") == expected  # both are the provider's text...
    assert buffer_text.encode("utf-8") == stdout  # ...and the same bytes
