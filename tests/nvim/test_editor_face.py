"""A thin Lua face: what the editor shows at a request's end, the debug view's fold and
the token figures come from the host, not from Lua's own reading of the text."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

CUT = re.compile(
    r"the answer was cut at the token limit \(truncated\) after \d+\.\ds, "
    r"first token \d+\.\d\ds, 5→2 tokens(, \d+/s)?"
)


def test_the_end_line_is_the_hosts_and_the_cli_says_the_same(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    for _ in range(2):
        server.queue(Reply(chunks=openai_events(["a", "b"], finish="length", usage=usage)))
    nvim.use_server(server.base_url)
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    [editor] = [m for m in nvim.messages() if "truncated" in m]
    assert editor.startswith("kznllm: ") and CUT.fullmatch(editor[len("kznllm: ") :])
    args = ["--provider", "openai", "--model", "m", "--base-url", server.base_url]
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "kznllm_py.cli.main",
            "fill",
            *args,
            "--api-key",
            "",
            "--no-history",
            "q",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert (cli.returncode, cli.stdout) == (0, "ab"), cli.stderr
    [line] = cli.stderr.splitlines()
    assert line.startswith("kznllm: ") and CUT.fullmatch(line[len("kznllm: ") :])


def test_a_failure_before_any_text_says_the_buffer_is_unchanged_in_the_hosts_words(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(
            status=400,
            headers={"Content-Type": "application/json"},
            chunks=[json.dumps({"error": {"message": "no such model"}}).encode()],
        )
    )
    nvim.use_server(server.base_url)
    nvim.set_lines(["keep me"])
    nvim.nvim.command("KznFill q")
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert nvim.lines() == ["keep me"]
    assert f"kznllm: {done['error']} (buffer unchanged)" in nvim.messages()


def _reasoning(text: str) -> list[bytes]:
    def ev(delta: dict[str, str]) -> bytes:
        obj = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    return [
        ev({"reasoning_content": "step one\nstep two"}),
        ev({"content": text}),
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]


def test_the_debug_view_folds_the_lines_the_host_says_not_a_heading_it_finds(
    nvim: Child, server: LoopbackServer
):
    # the selection itself holds the headings: a search for them would fold the request
    nvim.serve(server, Reply(chunks=_reasoning("x = 2")))
    nvim.set_lines(["## Reasoning", "x = 1", "## Answer"])
    nvim.nvim.command("%KznDebug fix")
    assert nvim.wait_done()[0]["status"] == "ok"
    lines = nvim.lines()
    heads = [i + 1 for i, line in enumerate(lines) if line == "## Reasoning"]
    assert len(heads) >= 2  # the selection's copy in the request, then the real one
    real = heads[-1]
    answer = max(i + 1 for i, line in enumerate(lines) if line == "## Answer")
    assert nvim.lua(f"return vim.fn.foldclosed({real})") == real
    assert nvim.lua(f"return vim.fn.foldclosedend({real})") == answer - 1
    assert lines[real + 1 : answer - 1] == ["step one", "step two", ""][: answer - real - 2]
    assert nvim.lua(f"return vim.fn.foldclosed({heads[0]})") == -1  # the request's copy
    assert nvim.lua(f"return vim.fn.foldclosed({answer})") == -1


def test_the_token_figures_are_the_hosts_estimate(nvim: Child, server: LoopbackServer):
    # 10 CJK characters: the host counts 10 tokens (3 bytes each), chars/4 would say 2
    cjk = "漢字漢字漢字漢字漢字"
    nvim.serve(server, Reply(chunks=openai_events([cjk, "ab"]), pause_after=2))
    nvim.lua(
        "_G.seen = {} require('kznllm').setup({ progress = { message = function(info)"
        " table.insert(_G.seen, info.tokens or -1) return 'x' end } })"
    )
    nvim.nvim.command("KznFill q")
    nvim.wait_for(lambda: cjk in nvim.text(), what="the first text")
    tokens = nvim.wait_for(
        lambda: nvim.lua(
            "for _, j in pairs(require('kznllm.job').jobs) do return j.tokens end return nil"
        ),
        what="a token figure",
    )
    assert tokens == 10
    # the progress message is given it too (redrawn once no text has come for a while)
    nvim.wait_for(lambda: 10 in nvim.lua("return _G.seen"), what="the progress message")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"


def test_the_sidebar_maps_the_keys_the_hosts_view_names(nvim: Child):
    from tests.nvim.test_editor_sidebar import open_sidebar

    nvim.lua("require('kznllm').setup({ sidebar = { keys = { yank = false, open = 'o' } } })")
    lines = open_sidebar(nvim)
    maps = nvim.lua(
        "local out = {} for _, m in ipairs(vim.api.nvim_buf_get_keymap("
        "require('kznllm.sidebar').state.buf, 'n')) do out[m.lhs] = m.desc end return out"
    )
    # the defaults are the host's (history/view.py): none of them is written in Lua
    assert maps["r"] == "kznllm: rerun" and maps["dd"] == "kznllm: delete"
    assert maps["o"] == "kznllm: open" and "<CR>" not in maps and "y" not in maps
    assert lines[0] == "o open  f filter  ? help"  # the help says the keys as mapped
    nvim.feed("?")
    get = "return vim.api.nvim_buf_get_lines(require('kznllm.sidebar').state.buf, 0, -1, true)"
    full = nvim.wait_for(
        lambda: [line for line in nvim.lua(get) if "re-run the prompt" in line], what="help"
    )
    assert full[0].lstrip().startswith("r ")
    help_text = "\n".join(nvim.lua(get)[:12])
    assert "  o      open the entry" in help_text and "yank" not in help_text
