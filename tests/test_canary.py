"""The canary-key test: a distinctive fake key is configured, every command runs (fill,
debug view, follow-up, history sidebar, checkhealth, errors of every kind with a
provider that echoes the key back, the log at debug level, the CLI), and the key
must appear nowhere: buffers, messages, registers, the history database, the log
files, CLI output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import cli_env
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, free_port_refusing, json_reply, openai_events

KEY_VAR = "KZN_CANARY_KEY"
CANARY = "sk-canary-7f3a9c1e5b2d44"


def echoing_replies() -> list[Reply]:
    """Provider failures whose text carries the key, as careless servers do."""
    return [
        json_reply(401, {"error": {"message": f"Incorrect API key provided: {CANARY}"}}),
        Reply(
            status=500,
            headers={"Content-Type": "text/html"},
            chunks=[f"<html><title>oops {CANARY}</title><body>{CANARY}</body></html>".encode()],
        ),
        Reply(
            chunks=[
                *openai_events(["partial "], done=False)[:2],
                f'data: {{"error": {{"message": "overloaded for {CANARY}"}}}}\n\n'.encode(),
            ]
        ),
    ]


def leaks(blob: str | bytes) -> bool:
    if isinstance(blob, bytes):
        return CANARY.encode() in blob
    return CANARY in blob


def test_the_key_appears_nowhere_in_the_editor(tmp_path: Path):
    nvim = Child(tmp_path, env={KEY_VAR: CANARY}, setup={"log": {"level": "debug"}})
    server = LoopbackServer()
    try:
        nvim.lua("require('kznllm').setup({ retries = 2 })")
        nvim.use_server(server.base_url, api_key=KEY_VAR)
        server.queue(
            Reply(chunks=openai_events(["y = 2"])),  # replace
            # the debug view's answer echoes the key, split across two events
            Reply(chunks=openai_events(["debug answer ", CANARY[:9], CANARY[9:], " end"])),
            Reply(chunks=openai_events(["follow-up answer"])),  # follow-up there
            json_reply(
                429, {"error": {"message": f"slow down {CANARY}"}}, headers={"Retry-After": "0"}
            ),
            *echoing_replies(),
        )
        nvim.set_lines(["y = 1"])
        nvim.nvim.command("1KznFill double")
        nvim.wait_done()
        nvim.nvim.command("KznDebug explain")
        nvim.wait_done(2)
        nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry id")
        nvim.nvim.command("KznFill and then?")
        nvim.wait_done(3)
        nvim.nvim.command("wincmd p")
        for n in range(4, 7):  # 429 then 401; 500 html; mid-stream error
            nvim.nvim.command("KznFill fail")
            nvim.wait_done(n)
        nvim.use_server(f"http://127.0.0.1:{free_port_refusing()}/v1", api_key=KEY_VAR)
        nvim.nvim.command("KznFill refused")
        done = nvim.wait_done(7)
        assert [d["status"] for d in done] == ["ok"] * 3 + ["error"] * 4
        assert any("HTTP 401" in (d.get("error") or "") for d in done)  # the failures happened

        nvim.nvim.command("KznHistory")
        nvim.wait_for(
            lambda: nvim.lua(
                "local s = require('kznllm.sidebar').state"
                " return s.buf and vim.b[s.buf].kznllm_rendered"
            ),
            what="the sidebar",
        )
        rows = nvim.lua("return require('kznllm.sidebar').state.rows")
        for line, entry_id in enumerate(rows, start=1):
            if entry_id:
                nvim.lua(
                    "vim.api.nvim_set_current_win(require('kznllm.sidebar').win())"
                    " vim.api.nvim_win_set_cursor(0, { ..., 0 })",
                    line,
                )
                nvim.feed("y")
                nvim.feed("<CR>")
                nvim.wait_for(
                    lambda: nvim.lua("return vim.b.kznllm_entry") == entry_id,  # noqa: B023
                    what=f"entry {entry_id} opened",
                )
                nvim.nvim.command("close")
        assert len([b for b in nvim.nvim.buffers if "history/" in b.name]) == 7
        nvim.nvim.command("checkhealth kznllm")

        buffers = {b.name: "\n".join(b[:]) for b in nvim.nvim.buffers if b.valid}
        assert any("<redacted>" in text for text in buffers.values())  # the debug view
        for name, text in buffers.items():
            assert not leaks(text), name
        messages = nvim.nvim.api.exec2("messages", {"output": True})["output"]
        assert not leaks(messages)
        assert not leaks("\n".join(nvim.messages()))
        registers = nvim.lua(
            "local out = {} for _, r in ipairs({ '\"', '0', '1', 'a', '+', '*' }) do"
            " table.insert(out, vim.fn.getreg(r)) end return table.concat(out, '\\n')"
        )
        assert not leaks(registers)
        data = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm"
        db = b"".join(p.read_bytes() for p in data.glob("history.sqlite3*"))
        assert b"Incorrect API key provided" in db  # the errors were recorded...
        assert not leaks(db)  # ...without the key
        log_dir = Path(nvim.lua("return vim.fn.stdpath('log')"))
        log = b"".join(p.read_bytes() for p in log_dir.glob("kznllm.log*"))
        assert b"request {" in log and b'"Authorization":"<redacted>"' in log  # debug level
        assert not leaks(log)
    finally:
        nvim.close()
        server.close()


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({KEY_VAR: CANARY, "XDG_DATA_HOME": str(tmp_path / "data")})
    return cli_env.kznllm(*args, cwd=tmp_path, env=env, text=True)


def test_the_key_appears_nowhere_in_cli_output(tmp_path: Path):
    with LoopbackServer() as server:
        custom = ["--provider", "openai", "--model", "m", "--base-url", server.base_url]
        custom += ["--api-key", KEY_VAR]
        server.queue(*echoing_replies())
        outputs = [cli(tmp_path, "fill", *custom, "q") for _ in range(3)]
        assert [o.returncode for o in outputs] == [1, 1, 1]
        # an answer that echoes the key, split across events, in the text and reasoning
        server.queue(Reply(chunks=openai_events(["key: ", CANARY[:5], CANARY[5:], "."])))
        outputs.append(cli(tmp_path, "fill", *custom, "q"))
        assert outputs[-1].returncode == 0 and outputs[-1].stdout == "key: <redacted>."
        assert "HTTP 401" in outputs[0].stderr and "<redacted>" in outputs[0].stderr
        outputs.append(cli(tmp_path, "render", *custom, "q"))
        outputs.append(cli(tmp_path, "render", *custom, "--json", "q"))
        assert "<redacted>" in outputs[-1].stdout
        outputs.append(cli(tmp_path, "presets", "--json"))
        preset = json.dumps([{"id": "c", "provider": "openai", "model": "m", "api_key": KEY_VAR}])
        outputs.append(
            subprocess.run(
                [sys.executable, "-m", "kznllm_py.cli.main", "presets", "--check", "-", "--json"],
                input=preset,
                capture_output=True,
                text=True,
                env={**os.environ, KEY_VAR: CANARY},
                timeout=60,
            )
        )
        outputs.append(cli(tmp_path, "history", "--json"))
        outputs.append(cli(tmp_path, "history", "show", "1"))
        for out in outputs:
            assert not leaks(out.stdout) and not leaks(out.stderr), out.args
