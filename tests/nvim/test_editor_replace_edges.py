"""What a replace does to the text around the answer, in a real Neovim against a loopback
server: a linewise selection's blank lines at its top and bottom stay where they are
(models add or strip blank lines at an answer's ends; the blank line that separated the
selected function from the next one is the user's), and one undo brings back the
buffer exactly."""

from __future__ import annotations

import itertools

import pytest

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

HEAD = ["import os"]
BODY = ["def f():", "    return 1"]
TAIL = ["def g():", "    pass"]
ANSWER = ["def f():\n", "    return 2"]  # the new body, in two pieces
NEW = ["def f():", "    return 2"]


def answer(lead: int, trail: int) -> list[str]:
    """The answer with `lead` blank lines before it and `trail` line breaks after it,
    each run its own piece of the stream."""
    return [x for x in ["\n" * lead, *ANSWER, "\n" * trail] if x]


def test_a_linewise_replace_keeps_the_selections_blank_lines_at_its_edges(
    nvim: Child, server: LoopbackServer
):
    """Every mix of 0-2 blank lines at the selection's end (0-1 at its start), of 0-2
    line breaks at the answer's end (0-1 blank lines at its start), with code after the
    selection or the buffer's end: the answer replaces the selection's lines between
    its blank ones, which stay as they were; its own blank edges are dropped; one `u`
    brings back the buffer exactly."""
    nvim.use_server(server.base_url)
    cases = itertools.product(range(2), range(3), range(2), range(3), [TAIL, []])
    for n, (sel_lead, sel_trail, ans_lead, ans_trail, tail) in enumerate(cases, 1):
        case = f"selection {sel_lead}+{sel_trail}, answer {ans_lead}+{ans_trail}, tail {tail}"
        gap_above, gap_below = [""] * sel_lead, [""] * sel_trail
        source = [*HEAD, *gap_above, *BODY, *gap_below, *tail]
        nvim.set_lines(source)
        server.queue(Reply(chunks=openai_events(answer(ans_lead, ans_trail))))
        selected = sel_lead + len(BODY) + sel_trail
        keys = f"{len(HEAD) + 1}GV" + (f"{selected - 1}j" if selected > 1 else "")
        nvim.ask(keys + " k", "return 2")
        assert nvim.wait_done(n)[-1]["status"] == "ok", case
        assert nvim.lines() == [*HEAD, *gap_above, *NEW, *gap_below, *tail], case
        nvim.feed("u")
        assert nvim.lines() == source, case


def test_a_range_command_sends_and_replaces_the_lines_between_the_blank_ones(
    nvim: Child, server: LoopbackServer
):
    source = [*HEAD, "", *BODY, "", "", *TAIL]
    nvim.serve(server, Reply(chunks=openai_events(["\n", *ANSWER, "\n\n"])))
    nvim.set_lines(source)
    nvim.nvim.command("2,6KznFill return 2")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [*HEAD, "", *NEW, "", "", *TAIL]
    user = server.requests[0].body["messages"][-1]["content"]
    assert "<selection>\n" + "\n".join(BODY) + "\n</selection>" in user
    nvim.feed("u")
    assert nvim.lines() == source


@pytest.mark.parametrize(
    ("below", "fenced"),
    [(1, "def f():\n    return 2\n"), (0, "\ndef f():\n    return 2\n\n")],
    ids=["a-blank-line-below-stays", "blank-lines-in-the-fence-are-not-added"],
)
def test_a_chatty_answer_cut_to_its_code_goes_between_the_blank_lines(
    nvim: Child, server: LoopbackServer, below: int, fenced: str
):
    chatty = ["Here is the fix:\n\n```python\n", fenced + "```\n\nDone.\n"]
    source = [*HEAD, *BODY, *[""] * below, *TAIL]
    nvim.serve(server, Reply(chunks=openai_events(chatty)))
    nvim.set_lines(source)
    nvim.ask(f"2GV{len(BODY) - 1 + below}j k", "return 2")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: "Done" not in nvim.text(), what="the cut to the code")
    assert nvim.lines() == [*HEAD, *NEW, *[""] * below, *TAIL]
    nvim.feed("u")
    assert nvim.lines() == source


def unchanged_since(nvim: Child, source: list[str], seq: int) -> None:
    """The buffer is exactly as it was: its lines, unmodified, no undo step added."""
    assert nvim.lines() == source
    assert nvim.lua("return vim.bo.modified") is False
    assert nvim.lua("return vim.fn.undotree().seq_last") == seq


def test_esc_before_the_first_token_leaves_the_buffer_exactly_as_it_was(
    nvim: Child, server: LoopbackServer
):
    source = [*HEAD, "", *BODY, "", *TAIL]
    nvim.serve(server, Reply(chunks=openai_events(["x"]), pause_after=1))
    nvim.set_lines(source)
    nvim.lua("vim.bo.modified = false")
    seq = nvim.lua("return vim.fn.undotree().seq_last")
    nvim.ask("2GV3j k", "return 2")
    server.wait_paused()
    nvim.feed("<Esc>")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    unchanged_since(nvim, source, seq)


def test_an_answer_of_blank_lines_only_leaves_the_buffer_exactly_as_it_was(
    nvim: Child, server: LoopbackServer
):
    source = [*HEAD, "", *BODY, "", *TAIL]
    nvim.serve(server, Reply(chunks=openai_events(["\n", "\n  \n", "\t"])))
    nvim.set_lines(source)
    nvim.lua("vim.bo.modified = false")
    seq = nvim.lua("return vim.fn.undotree().seq_last")
    nvim.ask("2GV3j k", "return 2")
    assert nvim.wait_done()[0]["status"] == "ok"
    unchanged_since(nvim, source, seq)


BLOCK = [
    "def f(a, b):",
    "    if a:",
    "        total = compute(a,",
    "                        b)",
    "        return total",
    "    return 0",
]


def test_a_charwise_replace_from_mid_line_continues_under_that_lines_indentation(
    nvim: Child, server: LoopbackServer
):
    """`v` from the middle of an indented line over three lines, answered flush left:
    the first line goes on where the selection started, the next ones under the
    indentation of the line it started on (their own indentation kept under it)."""
    flush_left = ["comp", "ute(a, b)\nif total:\n", "    log(total)\nreturn total"]
    nvim.serve(server, Reply(chunks=openai_events(flush_left)))
    nvim.set_lines(BLOCK)
    nvim.nvim.command("setlocal filetype=python expandtab shiftwidth=4")
    nvim.ask("3G0fcvjj$ k", "one call")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [
        *BLOCK[:2],
        "        total = compute(a, b)",
        "        if total:",
        "            log(total)",
        "        return total",
        BLOCK[5],
    ]
    nvim.feed("u")
    assert nvim.lines() == BLOCK


@pytest.mark.parametrize(
    ("filetype", "source", "answer", "replaced"),
    [
        (
            "python",
            ["class A:", "    def f(self):", "        return 1", "", "    def g(self):"],
            ["# cached: comp", "uted once\n", "        return self._one\n"],
            ["        # cached: computed once", "        return self._one"],
        ),
        (
            "lua",
            ["local M = {}", "function M.f()", "  return 1", "end"],
            ["-- the one\n", "-- (cached)\n", "  return M._one\n"],
            ["  -- the one", "  -- (cached)", "  return M._one"],
        ),
    ],
    ids=["python", "lua"],
)
def test_a_comment_at_column_0_above_code_as_deep_as_the_selection_is_not_indented_twice(
    nvim: Child,
    server: LoopbackServer,
    filetype: str,
    source: list[str],
    answer: list[str],
    replaced: list[str],
):
    """The comment gets the selection's indentation; the code, as deep as the
    selection already, keeps its own."""
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.set_lines(source)
    nvim.nvim.command(f"setlocal filetype={filetype} expandtab")
    nvim.ask("3GV k", "cache it")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [*source[:2], *replaced, *source[3:]]
    nvim.feed("u")
    assert nvim.lines() == source


def test_kznapply_puts_an_answer_between_the_selections_blank_lines_as_the_stream_would(
    nvim: Child, server: LoopbackServer
):
    """The debug view keeps the answer as it came, blank lines and all; :KznApply puts
    it where a replace would have: between the selection's blank lines, without its own."""
    nvim.serve(server, Reply(chunks=openai_events(["\n", *ANSWER, "\n\n"])))
    source = [*HEAD, "", *BODY, "", *TAIL]
    nvim.set_lines(source)
    buf = nvim.nvim.current.buffer.number
    nvim.nvim.command("2,5KznDebug return 2")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.wait_for(lambda: nvim.lua("return vim.b.kznllm_entry"), what="the entry")
    nvim.nvim.command("KznApply")
    want = [*HEAD, "", *NEW, "", *TAIL]
    nvim.wait_for(lambda: nvim.lines(buf) == want, what="the apply between the blank lines")


def end_lines(nvim: Child) -> list[str]:
    """The lines that ended an answer so far, as :KznLog has them (a plain "done in" line
    goes there, not to the screen)."""
    log = nvim.lua("return require('kznllm.notify').log_lines()")
    return [line for line in log if "done in" in line or "answer was empty" in line]


@pytest.mark.parametrize("texts", [[], ["\n", "\n\n"], [" \n"]], ids=["none", "blank", "space"])
def test_an_empty_answer_says_so_and_leaves_the_selection(
    nvim: Child, server: LoopbackServer, texts: list[str]
):
    """A model that answers nothing (no text, or blank lines only, which a linewise
    replace drops): the selection stays, the buffer is unmodified, and the end line says
    the answer was empty instead of a plain "done in" that left the user looking for a
    change."""
    source = [*HEAD, *BODY, *TAIL]
    nvim.serve(server, Reply(chunks=openai_events(texts)))
    nvim.set_lines(source)
    nvim.nvim.command("set nomodified")
    nvim.ask("2GVj k", "return 2")
    assert nvim.wait_done(1)[-1]["status"] == "ok"
    assert nvim.lines() == source
    assert nvim.nvim.eval("&modified") == 0
    [line] = nvim.wait_for(lambda: end_lines(nvim), what="the end line")
    assert "kznllm: the answer was empty (buffer unchanged)" in line, line


@pytest.mark.parametrize(
    ("keys", "answer", "replaced"),
    [
        ("1G0ffvt ", ["bar(2)", "\n"], ["    x = bar(2) + 1", "    y = bar(1) + 1"]),
        ("1G0ffv$", ["bar(2) - 1\n"], ["    x = bar(2) - 1", "    y = bar(1) + 1"]),
        ("1G0f(<C-v>jl", ["[2\n"], ["    x = foo[2) + 1", "    y = bar) + 1"]),
    ],
    ids=["mid-line", "to-eol", "block"],
)
def test_a_charwise_or_block_replace_drops_the_answers_final_line_break(
    nvim: Child, server: LoopbackServer, keys: str, answer: list[str], replaced: list[str]
):
    """Models end their answer with a line break; a charwise selection never holds its
    last line's (nor does a block): the answer's final line break split the user's line
    ("x = bar(2)" then "+ 1" on a line of its own). The answer ends where the selection
    ended; one `u` brings the buffer back."""
    source = ["    x = foo(1) + 1", "    y = bar(1) + 1"]
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.set_lines(source)
    nvim.nvim.command("setlocal filetype=python expandtab shiftwidth=4")
    nvim.ask(keys + " k", "bar")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == replaced
    nvim.feed("u")
    assert nvim.lines() == source


def test_a_chatty_answer_to_a_mid_line_selection_keeps_only_its_code_in_place(
    nvim: Child, server: LoopbackServer
):
    """Prose around one code block, for `v` from the middle of an indented line: the
    stream indents the lines after the first under that line's indentation, and the
    code cut out at the end came from that indented text, so it landed indented in the
    middle of the line ("x =     bar(2) + 1"). It is cut from the answer as the model
    sent it, then placed as its stream would have been."""
    source = ["    x = foo(1) + 1", "    y = bar(1) + 1"]
    chatty = "Here you go:\n```python\nbar(2)\n```\nThis calls bar.\n"
    nvim.serve(server, Reply(chunks=openai_events([chatty[:15], chatty[15:]])))
    nvim.set_lines(source)
    nvim.nvim.command("setlocal filetype=python expandtab shiftwidth=4")
    nvim.ask("1G0ffvt  k", "bar")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["    x = bar(2) + 1", source[1]]
    nvim.feed("u")
    assert nvim.lines() == source


def test_a_chatty_answer_in_crlf_lands_without_carriage_returns_in_a_dos_buffer(
    nvim: Child, server: LoopbackServer
):
    source = ["a = 1", "def f():", "    return 1", "b = 2"]
    chatty = "Sure:\r\n```python\r\ndef f():\r\n    return 2\r\n```\r\nDone.\r\n"
    nvim.serve(server, Reply(chunks=openai_events([chatty[:9], chatty[9:]])))
    nvim.set_lines(source)
    nvim.nvim.command("setlocal filetype=python expandtab fileformat=dos")
    nvim.ask("2GVj k", "return 2")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["a = 1", "def f():", "    return 2", "b = 2"]
    nvim.feed("u")
    assert nvim.lines() == source
