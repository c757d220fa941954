"""Diagnostics in what the model is shown (issue 25 item 3): the editor's vim.diagnostic
entries on and near the selection, typed and bounded by the host, sent as their own
section; and the gathering's deadline (lua/kznllm/context/)."""

from __future__ import annotations

import time

from kznllm_py.prompt.sources import diagnostics, gathered
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

# -- pure: what the editor's table becomes ------------------------------------------------


def test_malformed_and_oversized_entries_are_dropped_or_bounded():
    raw = [
        {
            "line": 3,
            "col": 2,
            "severity": "ERROR",
            "message": "undefined name 'y'",
            "source": "pyflakes",
            "code": "F821",
        },
        {"line": 0, "message": "no line"},
        {"line": 4, "message": ""},
        "not a table",
        {"line": 5, "message": "m" * 5000, "severity": "SHOUT", "code": True},
    ] + [{"line": 9, "message": f"n{i}"} for i in range(100)]
    found = diagnostics.parse(raw)
    assert len(found) == diagnostics.MAX_ENTRIES
    assert found[0] == diagnostics.Diagnostic(
        3, 2, "ERROR", "undefined name 'y'", "pyflakes", "F821"
    )
    assert found[1].severity == "INFO" and len(found[1].message) == diagnostics.MAX_MESSAGE
    assert found[1].code == ""
    assert gathered.parse("junk") == gathered.Gathered()
    assert gathered.parse({"diagnostics": {"a": 1}, "notes": "x"}) == gathered.Gathered()


def test_the_section_puts_errors_first_and_escapes_control_characters():
    found = diagnostics.parse(
        [
            {"line": 2, "message": "unused import", "severity": "WARN"},
            {"line": 9, "message": "bad\x1b]0;owned\x07 name\nsecond line", "severity": "ERROR"},
        ]
    )
    s = diagnostics.section(found, "a.py")
    assert s is not None and s.kind == "diagnostics" and "a.py" in s.title
    first, second, third = s.text.split("\n")
    assert first.startswith("9:1 ERROR bad\\x1b]0;owned\\x07 name")
    assert second == "  second line" and third == "2:1 WARN unused import"
    assert diagnostics.section((), "a.py") is None


# -- in the editor: the request as it arrives --------------------------------------------


def set_diagnostics(nvim: Child, entries: list[dict]) -> None:
    nvim.lua(
        "local ns = vim.api.nvim_create_namespace('kzn-test-diag') vim.diagnostic.set(ns, 0, ...)",
        entries,
    )


def sent_user(server: LoopbackServer, n: int = 0) -> str:
    return server.requests[n].body["messages"][-1]["content"]


def test_a_diagnostic_on_the_selection_is_in_the_request_and_a_far_one_is_not(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["fixed"])))
    nvim.set_lines([f"line {i}" for i in range(1, 101)])
    set_diagnostics(
        nvim,
        [
            {
                "lnum": 49,
                "col": 2,
                "severity": 1,
                "message": "name 'zork' is not defined",
                "source": "pyflakes",
            },
            {"lnum": 95, "col": 0, "severity": 2, "message": "far away warning"},
        ],
    )
    nvim.ask("50GV k", "fix this")
    assert nvim.wait_done()[0]["status"] == "ok"
    user = sent_user(server)
    assert "50:3 ERROR (pyflakes) name 'zork' is not defined" in user
    assert "far away warning" not in user
    assert user.index("name 'zork'") < user.index("<selection>")


def test_context_false_sends_no_diagnostics(nvim: Child, server: LoopbackServer):
    nvim.serve(server, Reply(chunks=openai_events(["fixed"])))
    nvim.lua("require('kznllm').setup({ context = false })")
    nvim.set_lines(["a", "b", "c"])
    set_diagnostics(nvim, [{"lnum": 1, "col": 0, "severity": 1, "message": "broken here"}])
    nvim.ask("2GV k", "fix")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert "broken here" not in sent_user(server)


SLOW_SOURCE = """
local ms, name = ...
package.loaded['kzn_test_slow'] = {
  collect = function(_, _, _, done)
    vim.defer_fn(function()
      done({ { line = 1, message = 'slow source answered', severity = 'ERROR' } })
    end, ms)
  end,
}
-- a source that answers `ms` after the keypress, its answer read as diagnostics
require('kznllm.context').SOURCES.diagnostics = { switch = 'diagnostics', module = 'kzn_test_slow' }
"""


def test_a_source_slower_than_the_deadline_is_left_out_and_the_fill_goes_at_the_deadline(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["warm"])), Reply(chunks=openai_events(["ok"])))
    nvim.lua("require('kznllm').setup({ context = { lsp_timeout = 200 } })")
    nvim.set_lines(["a", "b"])
    nvim.nvim.command("KznFill warm")  # the host is up: what is timed next is the deadline
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.lua(SLOW_SOURCE, 30_000)  # answers long after any wait a test could see
    start = time.monotonic()
    nvim.nvim.command("KznFill go")
    server.wait_requests(2, timeout=10)
    waited = time.monotonic() - start
    assert waited >= 0.15, waited  # it waited for the source, until the deadline
    assert "slow source answered" not in sent_user(server, 1)
    assert nvim.wait_done(2)[1]["status"] == "ok"


def test_a_source_answering_before_the_deadline_is_in_the_request(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.lua("require('kznllm').setup({ context = { lsp_timeout = 2000 } })")
    nvim.lua(SLOW_SOURCE, 100)
    nvim.set_lines(["a", "b"])
    nvim.nvim.command("KznFill go")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert "slow source answered" in sent_user(server)


def test_the_debug_view_lists_the_sections_sent_with_their_tokens(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.set_lines(["a", "b", "c"])
    set_diagnostics(nvim, [{"lnum": 1, "col": 0, "severity": 1, "message": "broken here"}])
    nvim.feed("2G")
    nvim.nvim.command("KznDebug why")
    assert nvim.wait_done()[0]["status"] == "ok"
    view = "\n".join(nvim.lines())
    assert "- section `diagnostics on and near the selection" in view
    assert "tokens)" in view
