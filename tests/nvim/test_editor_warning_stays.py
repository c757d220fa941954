"""A warning stays on the screen: the "done in" line of the answer it was said for does
not cover it (the project's untrusted templates were named, then the fill's routine
line replaced them at once, in tmux: the user never saw why their templates were not
used). Like a refusal, a warning holds the echo area; the routine line goes to :KznLog.
A real Neovim with Neovim's own notify, a real loopback server."""

from __future__ import annotations

from pathlib import Path

from tests.nvim.test_editor_trust import cloned
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def kzn_messages(nvim: Child) -> list[str]:
    out = nvim.lua("return vim.fn.execute('messages')")
    return [line for line in out.split("\n") if line.startswith("kznllm")]


def test_the_done_line_does_not_cover_the_untrusted_templates_warning(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    root, _ = cloned(tmp_path)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.lua("vim.notify = _G.kzn_builtin_notify")
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("KznFill one")
    nvim.wait_for(
        lambda: any(
            "done in" in line for line in nvim.lua("return require('kznllm.notify').log_lines()")
        ),
        what="the answer's end",
    )
    shown = kzn_messages(nvim)
    assert shown and "the project's templates are not used" in shown[-1], shown  # still the last
    assert not [m for m in shown if "done in" in m]
    # the done line is in :KznLog, whole
    log = nvim.lua("return require('kznllm.notify').log_lines()")
    assert any("done in" in line for line in log)
