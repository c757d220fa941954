"""The enclosing scope and the file's outline in what the model is shown (issue 25 item
1): tree-sitter in the editor (Neovim's bundled C and Lua parsers), typed, bounded and
worded by the host, fitted into the one budget; the request asserted where it arrives."""

from __future__ import annotations

from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.sections import Section, fit, fit_around
from kznllm_py.prompt.sources import gathered, outline, scope
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

# -- pure: what the editor's tables become -------------------------------------------------


def test_a_malformed_or_oversized_scope_is_dropped_or_bounded():
    assert scope.parse({"kind": "function", "name": "f", "start": 3, "end": 2, "text": ""}) is None
    assert scope.parse({"kind": "lambda", "name": "f", "start": 1, "end": 2, "text": ""}) is None
    assert scope.parse("junk") is None
    big = scope.parse(
        {"kind": "function", "name": "f\x1b[2J" * 50, "start": 1, "end": 9, "text": "x" * 10**6}
    )
    assert big is not None and big.cut and len(big.text) == scope.MAX_CHARS
    assert len(big.name) <= 4 * scope.MAX_NAME and "\x1b" not in big.name
    assert big.head is None  # a cut scope is never taken as held by the lines around
    assert gathered.parse({"scope": {"kind": 1}}).scope is None


def test_the_scope_title_names_kind_name_and_lines():
    s = scope.parse(
        {"kind": "method", "name": "Parser.feed", "start": 120, "end": 188, "text": "x"}
    )
    assert s is not None
    assert scope.section(s).title == "enclosing method `Parser.feed` (lines 120-188)"


def test_the_scope_is_held_by_the_lines_around_only_when_they_hold_all_of_it():
    text = "int f(void) {\n  int x = 1;\n  return x;\n}"
    head = len("int f(void) {\n  int ")  # the range is the `x`
    s = scope.Scope("function", "f", 1, 4, text, head=head, tail=len(text) - head - 1)
    assert scope.in_around(s, "#include <a.h>\nint f(void) {\n  int ", " = 1;\n  return x;\n}\n")
    assert scope.in_around(s, "int f(void) {\n  int ", " = 1;\n  return x;\n}") == (2, 3)
    assert scope.in_around(s, "void) {\n  int ", " = 1;\n  return x;\n}") is None  # cut
    assert scope.in_around(s, "int f(void) {\n  int ", " = 1;\n  ret") is None


def test_the_outline_over_its_room_keeps_the_entries_nearest_the_cursor_in_file_order():
    o = outline.parse(
        {
            "entries": [[i * 10 + 1, 0, f"int f{i}(void) {{"] for i in range(500)],
            "cursor": 2500,
        }
    )
    assert o is not None
    text = outline.render(o, 200)
    assert estimate_tokens(text) <= 200
    kept = [line for line in text.split("\n") if not line.startswith("[...")]
    assert "2491: int f249(void) {" in kept and "1: int f0(void) {" not in kept
    assert [int(k.split(":")[0]) for k in kept] == sorted(int(k.split(":")[0]) for k in kept)
    assert text.startswith("[... ") and text.endswith(" more definitions]")
    # fit uses it: the outline is shortened its own way, not cut from the top
    placed = fit([outline.section(o)], budget=2_000).placed[0]
    assert placed.cut and "2491: int f249(void) {" in placed.text


def test_the_lines_around_keep_the_scope_first_then_share_the_rest():
    before = "\n".join(f"b{i}" for i in range(300)) + "\nint f(void) {\n  int "
    after = " = 1;\n  return x;\n}\n" + "\n".join(f"a{i}" for i in range(300))
    b, a = fit_around(before, after, 30, keep=(2, 4))
    assert b.endswith("int f(void) {\n  int ") and a.startswith(" = 1;\n  return x;\n}\n")
    assert before.endswith(b) and after.startswith(a)
    assert estimate_tokens(b) + estimate_tokens(a) <= 30


def test_a_section_that_shortens_itself_over_its_word_is_cut_instead():
    liar = Section("outline", "o", "x\n" * 4000, shorten=lambda _tokens: "y" * 100_000)
    placed = fit([liar], budget=2_000).placed[0]
    assert placed.tokens <= 200 and placed.text.startswith("x")


# -- in the editor: the request as it arrives --------------------------------------------


def c_function(name: str, body_lines: int) -> list[str]:
    out = [f"static long {name}(const long *xs, size_t n) {{", "    long best = 0;"]
    out += [f"    best += xs[{i} % n] * {i}; /* {name} */" for i in range(body_lines)]
    return [*out, "    return best;", "}", ""]


def sent_user(server: LoopbackServer, n: int = 0) -> str:
    return server.requests[n].body["messages"][-1]["content"]


def fill_at(nvim: Child, server: LoopbackServer, row: int, query: str = "fix") -> str:
    """Yap at line `row` with `query` typed into the prompt; the user message sent."""
    server.queue(Reply(chunks=openai_events(["ok"])))
    n = len(nvim.done()) + 1
    nvim.ask(f"{row}G k", query)
    try:
        end = nvim.wait_done(n)[-1]
    except AssertionError as exc:
        raise AssertionError((nvim.messages(), nvim.done(), len(server.requests))) from exc
    assert end["status"] == "ok", (end, nvim.messages())
    return sent_user(server, len(server.requests) - 1)


def c_buffer(nvim: Child, lines: list[str], server: LoopbackServer, **context: object) -> None:
    nvim.use_server(server.base_url)
    nvim.lua(
        "require('kznllm').setup({ context_lines = ..., context = { lsp_timeout = 3000 } })",
        context.pop("context_lines", 400),
    )
    nvim.set_lines(lines)
    nvim.nvim.command("setfiletype c")


def test_the_enclosing_c_function_is_in_the_request_whole_with_its_title(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", ""]
    lines += c_function("first", 5) + c_function("window_sum", 60) + c_function("last", 5)
    start = lines.index("static long window_sum(const long *xs, size_t n) {") + 1
    end = start + 63
    assert lines[end - 1] == "}"
    c_buffer(nvim, lines, server, context_lines=5)  # the lines around hold a few lines only
    user = fill_at(nvim, server, start + 40)
    title = f"--- enclosing function `window_sum` (lines {start}-{end}) ---"
    assert title in user
    scope_text = user.split(title, 1)[1]
    assert "    best += xs[0 % n] * 0;" in scope_text.split("--- ", 1)[0]
    assert "    best += xs[59 % n] * 59;" in scope_text
    assert "static long first" not in scope_text.split("--- ", 1)[0]


def test_a_scope_the_lines_around_hold_whole_is_sent_once_under_its_title(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", "", *c_function("small", 4), *c_function("other", 4)]
    c_buffer(nvim, lines, server)
    user = fill_at(nvim, server, 5)
    assert "--- enclosing function `small` (lines 3-10) ---" in user
    assert "(whole in the code around the selection, not repeated here)" in user
    assert user.count("    best += xs[2 % n] * 2; /* small */") == 1  # in the lines around


def test_the_outline_line_of_a_function_14000_lines_away_is_in_the_request_and_the_budget_holds(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", ""]
    while len(lines) < 1000:
        lines += c_function(f"near_{len(lines)}", 30)
    lines += [f"static const long table_{i} = {i}; /* data */" for i in range(14000)]
    far = len(lines) + 1
    lines += c_function("far_away", 10)
    while len(lines) < 16000:
        lines += [f"static const long tail_{len(lines)} = 0;"]
    c_buffer(nvim, lines, server)
    nvim.lua("require('kznllm').setup({ context = { budget = 6000, lsp_timeout = 3000 } })")
    user = fill_at(nvim, server, 500)
    assert f"{far}: static long far_away(const long *xs, size_t n) {{" in user
    assert "--- outline: its definitions (line: declaration) ---" in user
    # the budget holds: the selection, the query, the sections and the lines around
    # within 6,000 tokens (the template's own words and the titles besides)
    assert estimate_tokens(user) <= 6000 + 300, estimate_tokens(user)
    assert "enclosing function `near_" in user


def test_a_lua_function_is_named_as_its_statement_names_it(nvim: Child, server: LoopbackServer):
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context_lines = 1, context = { lsp_timeout = 3000 } })")
    nvim.set_lines(
        [
            "local M = {}",
            "function M.feed(parser, chunk)",
            "  local n = #chunk",
            "  parser.buf = parser.buf .. chunk",
            "  return n",
            "end",
            "M.reset = function(parser)",
            "  parser.buf = ''",
            "end",
            "return M",
        ]
    )
    nvim.nvim.command("setfiletype lua")
    user = fill_at(nvim, server, 4)
    assert "--- enclosing function `M.feed` (lines 2-6) ---" in user
    assert "2: function M.feed(parser, chunk)" in user and "7: M.reset = function(parser)" in user
    at = nvim.lines().index("M.reset = function(parser)") + 1  # the answer went in above
    user = fill_at(nvim, server, at)  # on its first line
    assert f"--- enclosing function `M.reset` (lines {at}-{at + 2}) ---" in user


def test_a_buffer_with_no_parser_fills_with_the_lines_around_only(
    nvim: Child, server: LoopbackServer
):
    nvim.use_server(server.base_url)
    nvim.set_lines(["def f():", "    return 1", "", "class A:", "    def g(self): pass"])
    nvim.nvim.command("setfiletype python")  # Neovim bundles no Python parser
    user = fill_at(nvim, server, 2)
    assert "enclosing" not in user and "outline" not in user
    assert "def f():" in user


def test_scope_and_outline_switched_off_are_not_gathered_or_sent(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", "", *c_function("small", 4)]
    c_buffer(nvim, lines, server)
    nvim.lua("require('kznllm').setup({ context = { scope = false, outline = false } })")
    user = fill_at(nvim, server, 5)
    assert "enclosing" not in user and "outline" not in user


# -- :KznContext: see it first --------------------------------------------------------------


def context_view(nvim: Child, command: str = "KznContext") -> list[str]:
    """Run `command`; the context view's lines once the host's answer is in it."""
    tick = "local b = vim.fn.bufnr('kznllm://context') return b > 0 and vim.b[b].changedtick or 0"
    before = nvim.lua(tick)
    nvim.nvim.command(command)
    nvim.wait_for(lambda: nvim.lua(tick) != before, what="the context view")
    return nvim.lines(nvim.lua("return vim.fn.bufnr('kznllm://context')"))


def test_kzncontext_lists_the_sections_with_their_tokens_and_sends_nothing(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", "", *c_function("small", 4), *c_function("other", 40)]
    c_buffer(nvim, lines, server, context_lines=2)
    nvim.feed("20G")
    view = context_view(nvim)
    text = "\n".join(view)
    assert view[0].startswith("# kznllm context: what a fill here would send now")
    assert '- section "enclosing function `other` (lines 12-55)" (~' in text
    assert "- section `outline: its definitions (line: declaration)` (~" in text
    assert "- budget: 16000 tokens; used ~" in text
    assert "## enclosing function `other` (lines 12-55)" in text
    assert "    best += xs[30 % n] * 30; /* other */" in view  # the section's text
    assert nvim.lua("return vim.bo.modifiable") is False
    assert server.requests == []  # nothing was sent
    # long titles wrap between words at any width, as in the debug view
    wrapping = "local w = vim.fn.bufwinid(vim.fn.bufnr('kznllm://context')) return {"
    wrapping += " vim.wo[w].wrap, vim.wo[w].linebreak }"
    assert nvim.lua(wrapping) == [True, True]
    # on a selection: the scope of the selected lines; the view is the same buffer
    nvim.feed("<C-w>p")
    view = context_view(nvim, "4,5KznContext")
    assert "- at the selection in" in "\n".join(view)
    assert '- section "enclosing function `small` (lines 3-10)"' in "\n".join(view)
    assert nvim.lua("return #vim.fn.getbufinfo({ bufloaded = 1 })") == 2
    assert server.requests == []


def test_the_debug_view_lists_the_sections_in_the_same_words_as_kzncontext(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", "", *c_function("small", 4), *c_function("other", 40)]
    c_buffer(nvim, lines, server, context_lines=2)
    nvim.feed("20G")
    listed = [line for line in context_view(nvim) if line.startswith("- section")]
    assert len(listed) == 2
    nvim.feed("<C-w>p")
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.nvim.command("KznDebug why")
    assert nvim.wait_done()[0]["status"] == "ok"
    debug = [line for line in nvim.lines() if line.startswith("- section")]
    assert debug == listed


def test_a_presets_context_overrides_setups_for_fills_with_that_preset(
    nvim: Child, server: LoopbackServer
):
    lines = ["#include <stddef.h>", "", *c_function("small", 4), *c_function("other", 4)]
    c_buffer(nvim, lines, server, context_lines=1)
    nvim.lua(
        "require('kznllm').setup({ context = { outline = false, lsp_timeout = 3000 }, presets = {"
        " { id = 'test', provider = 'openai', model = 'm', base_url = ..., api_key = false,"
        "   context = { outline = true, scope = false } },"
        " { id = 'plain', provider = 'openai', model = 'm', base_url = ..., api_key = false } } })",
        server.base_url,
    )
    user = fill_at(nvim, server, 5)  # the first fill: gathered before the host started
    assert "--- outline: its definitions" in user and "enclosing function" not in user
    nvim.lua("require('kznllm').state.preset = 'plain'")
    user = fill_at(nvim, server, 5)
    assert "--- outline" not in user and "enclosing function `small`" in user
    nvim.lua("require('kznllm').state.preset = 'test'")
    user = fill_at(nvim, server, 5)  # the host's word now
    assert "--- outline: its definitions" in user and "enclosing function" not in user


def test_a_bad_preset_context_is_named_with_its_preset():
    import pytest

    from kznllm_py.errors import ConfigError
    from kznllm_py.prompt.presets import preset_from_dict

    raw = {"id": "x", "provider": "openai", "model": "m", "context": {"sope": True}}
    with pytest.raises(ConfigError, match="preset 'x': context: unknown field 'sope'"):
        preset_from_dict(raw)
    ok = preset_from_dict({**raw, "context": {"outline": False, "budget": 4000}})
    assert ok.context == {"outline": False, "budget": 4000}


def test_a_buffer_without_a_tree_is_parsed_after_the_keypress_not_in_it(nvim: Child):
    """No highlighter and no parser yet: the keypress's tick makes none and parses
    nothing; the scope and the outline come from a parse after it."""
    lines = ["#include <stddef.h>", ""]
    while len(lines) < 16000:
        lines += c_function(f"f{len(lines)}", 8)
    nvim.set_lines(lines)
    nvim.nvim.command("setfiletype c | 8000")
    got = nvim.lua(
        """
        local buf = vim.api.nvim_get_current_buf()
        local range = { 7999, 0, 7999, 0 }
        local pending = require('kznllm.context').start(buf, range)
        _G.kzn_pending = pending
        return { scope = pending.answered.scope or false, outline = pending.answered.outline
          or false, parsed = pcall(function() return vim.treesitter.get_parser(buf):trees()[1] end)
          and vim.treesitter.get_parser(buf):is_valid() }
        """
    )
    assert got == {"scope": False, "outline": False, "parsed": False}
    nvim.wait_for(
        lambda: nvim.lua("return _G.kzn_pending.waiting == 0"), what="the parse after the keypress"
    )
    facts = nvim.lua("return _G.kzn_pending.facts")
    assert facts["scope"]["name"].startswith("f") and facts["scope"]["kind"] == "function"
    entries = facts["outline"]["entries"]
    # its share (100), beyond those the 400 lines sent each side show (the host drops
    # those: they are in the request as code)
    shown = [e for e in entries if 8000 - 400 <= e[0] <= 8000 + 400]
    assert len(entries) - len(shown) == 100 and shown and facts["outline"]["more"] > 1000


def test_markdown_and_vimscript_scopes_and_a_selected_whole_function(
    nvim: Child, server: LoopbackServer
):
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context_lines = 0, context = { lsp_timeout = 3000 } })")
    nvim.set_lines(["# Guide", "intro", "## Install", "run make", "more", "## Use", "call it"])
    nvim.nvim.command("setfiletype markdown")
    user = fill_at(nvim, server, 4)
    assert "--- enclosing section `Install` (lines 3-5) ---" in user
    assert "1: # Guide" in user and "3:     ## Install" in user and "6:     ## Use" in user
    nvim.nvim.command("enew | setfiletype vim")
    nvim.set_lines(["function! s:Greet(name) abort", "  echo a:name", "endfunction"])
    user = fill_at(nvim, server, 2)
    assert "--- enclosing function `s:Greet` (lines 1-3) ---" in user
    # a selection that is the whole function: what holds it is the scope (nothing here)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.ask("1GVG k", "fix")  # the answer went inside it: now 4 lines
    nvim.wait_for(lambda: len(server.requests) == 3, what="the third request")
    assert "enclosing function" not in sent_user(server, 2)


def test_a_tree_source_answers_nothing_without_a_tree_or_when_it_fails(nvim: Child):
    # tree.answer, the scope's and the outline's way to their answer
    nvim.set_lines(["int f(void) {", "  return 1;", "}"])
    nvim.nvim.command("setfiletype c")
    nvim.lua(
        "local tree = require('kznllm.context.tree')"
        " _G.kzn_answers = {}"
        " local function keep(name) return function(found)"
        "   _G.kzn_answers[name] = found == nil and 'nil' or found end end"
        " tree.answer(0, keep('ok'), function(root, lang) return { lang, root:type() } end)"
        " tree.answer(0, keep('fails'), function() error('a grammar surprise') end)"
        " local plain = vim.api.nvim_create_buf(true, false)"
        " tree.answer(plain, keep('no tree'), function() return 'asked' end)"
    )
    nvim.wait_for(
        lambda: nvim.lua("return vim.tbl_count(_G.kzn_answers) == 3"), what="three answers"
    )
    answers = nvim.lua("return _G.kzn_answers")
    assert answers == {"ok": ["c", "translation_unit"], "fails": "nil", "no tree": "nil"}
