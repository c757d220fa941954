"""The context deadline (context.lsp_timeout) bounds how long a fill waits for the
language servers, not how long they may take while the user is still typing the query:
a definition that answers after the deadline but before the query is confirmed is in
the request; leaving the prompt empty cancels what is still asked. Against the tests'
own slow and silent servers (tests/lsp_fake.py), the request asserted at the loopback
server."""

from __future__ import annotations

import time
from pathlib import Path

from tests.lsp_fake import SLOW_S
from tests.lsp_helpers import logged, start_fake
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

TIMEOUT_MS = 200  # far below the slow server's SLOW_S


def project(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "proj"
    root.mkdir()
    target = root / "lib.py"
    target.write_text("def helper(x):\n    return 'HELPER BODY'\n", encoding="utf-8")
    (root / "a.py").write_text("def f():\n    return helper(1)\n", encoding="utf-8")
    return root, target


def open_with(
    nvim: Child, root: Path, mode: str, log: Path, target: Path | None, timeout_ms: int = TIMEOUT_MS
) -> None:
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit a.py")
    start_fake(nvim, mode, log, root, target)
    nvim.lua(
        "_G.kzn_answers = 0 vim.api.nvim_create_autocmd('LspRequest', { callback = "
        "function(ev) if ev.data.request.type == 'complete' then "
        "_G.kzn_answers = _G.kzn_answers + 1 end end })"
    )
    nvim.lua(f"require('kznllm').setup({{ context = {{ lsp_timeout = {timeout_ms} }} }})")


def test_a_definition_answered_while_the_query_is_typed_is_sent_past_the_deadline(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    root, target = project(tmp_path)
    log = tmp_path / "lsp.log"
    open_with(nvim, root, "slow", log, target)
    began = time.monotonic()
    nvim.feed("2G k")  # yap below line 2: the query prompt opens
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    # the user is still typing when the server answers, well past the deadline
    nvim.wait_for(lambda: nvim.lua("return _G.kzn_answers") >= 1, what="the slow answer")
    assert time.monotonic() - began >= SLOW_S > TIMEOUT_MS / 1000
    nvim.feed("use the helper<CR>")
    server.wait_requests(1, timeout=5.0)
    user = server.requests[0].body["messages"][-1]["content"]
    assert "HELPER BODY" in user, user
    assert "not answered by the deadline" not in user
    assert nvim.wait_done()[0]["status"] == "ok"


def test_a_confirmed_query_waits_no_longer_than_the_deadline_for_a_slow_server(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    server.queue(Reply(chunks=openai_events(["warm"])), Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    root, target = project(tmp_path)
    log = tmp_path / "lsp.log"
    nvim.nvim.command("KznFill warm the host")  # its start is not the deadline's
    assert nvim.wait_done()[0]["status"] == "ok"
    open_with(nvim, root, "slow", log, target)
    began = time.monotonic()
    nvim.nvim.command("2KznFill at once")  # the query is known at the keypress
    server.wait_requests(2, timeout=5.0)
    assert time.monotonic() - began < SLOW_S  # the deadline, not the server
    assert "HELPER BODY" not in server.requests[1].body["messages"][-1]["content"]
    asked = logged(log, "textDocument/definition")
    assert asked
    nvim.wait_for(lambda: logged(log, "$/cancelRequest") >= asked, what="requests cancelled")
    nvim.wait_done(2)


def test_leaving_the_query_prompt_empty_cancels_what_is_still_asked(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    nvim.use_server(server.base_url)
    root, _ = project(tmp_path)
    log = tmp_path / "lsp.log"
    open_with(nvim, root, "silent", log, None, timeout_ms=60_000)  # no deadline soon
    nvim.feed("2G k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.wait_for(lambda: logged(log, "textDocument/definition"), what="the request")
    asked = logged(log, "textDocument/definition")
    nvim.feed("<Esc>")
    cancelled = lambda: logged(log, "$/cancelRequest") >= asked  # noqa: E731
    nvim.wait_for(cancelled, timeout=10.0, what="requests cancelled at the <Esc>")
    assert server.requests == []  # nothing was sent
