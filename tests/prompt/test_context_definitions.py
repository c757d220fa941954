"""Definitions in what the model is shown (issue 25 item 2): the names a selection uses,
resolved by the buffer's attached language servers (the real pylsp, and a hostile one of
the tests' own: tests/lsp_fake.py), read from the project only, sent as one section;
one deadline for all of it. The request is asserted where it arrives."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from kznllm_py.fill import job as payload
from kznllm_py.prompt.sections import ContextOptions
from kznllm_py.prompt.sources import definitions, gathered
from kznllm_py.prompt.sources.definitions import Asked, Found
from kznllm_py.settings import Settings
from tests.lsp_helpers import logged, start, start_fake, start_pylsp
from tests.nvim_child import REPO, Child
from tests.servers import LoopbackServer, Reply, openai_events

TITLE = "definitions of the names used here"

# -- pure: the extent of a definition -------------------------------------------------------


def one_answer(nvim: Child, server: LoopbackServer) -> None:
    """The server answers one fill "ok"; the servers get 5 s (a loaded machine's pylsp)."""
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.lua("require('kznllm').setup({ context = { lsp_timeout = 5000 } })")


def test_the_extent_of_a_python_function_is_its_indented_body_and_open_brackets():
    lines = [
        "def parse(",
        "    path,",
        "):",
        "    x = 1",
        "",
        "    return x",
        "",
        "def other():",
    ]
    assert definitions.extent(lines) == 6
    assert definitions.extent(["X = 3", "Y = 4"]) == 1


def test_the_extent_of_a_braced_definition_ends_where_its_braces_close():
    c = ["int f(int a)", "{", "  if (a) {", "    return 1;", "  }", "  return 0;", "}", "int g;"]
    assert definitions.extent(c) == 7
    assert definitions.extent(["int x = 3;", "int y;"]) == 1
    js = ["const f = () => {", "  return 1", "};", "f()"]
    assert definitions.extent(js) == 3
    lua = ["local function f()", "  return 1", "end", "local x"]
    assert definitions.extent(lua) == 3


def test_the_doc_comment_and_decorators_above_a_definition_come_with_it():
    above = ["x = 1", "", "# Parse it.", "# Twice.", "@cache"]
    assert definitions.lead_in(above) == 3
    assert definitions.lead_in(["int y;", "/* doc */"]) == 1
    assert definitions.lead_in(["#!/usr/bin/env python"]) == 0
    assert definitions.lead_in(["f()"]) == 0


def test_the_extent_is_capped():
    lines = ["def f():"] + ["    pass"] * 1000
    assert definitions.extent(lines, 50) == 50


# -- pure: what the editor's table becomes, and what the host reads -------------------------


def test_malformed_and_oversized_locations_are_dropped_or_bounded():
    raw = {
        "found": [
            {"name": "ok", "path": "/p/a.py", "line": 3},
            {"name": "", "path": "/p/a.py", "line": 3},
            {"name": "rel", "path": "a.py", "line": 3},
            {"name": "zero", "path": "/p/a.py", "line": 0},
            {"name": "nul", "path": "/p/a\0.py", "line": 1},
            {"name": "x" * 500, "path": "/p/b.py", "line": 2, "end": 1},
            {"name": "lines", "path": "/p/c.py", "line": 1, "lines": ["l" * 5000] * 1000},
            # lines that do not reach the definition's own line, or start below it
            {"name": "short", "path": "/p/e.py", "line": 50, "start": 40, "lines": ["a"] * 5},
            {"name": "below", "path": "/p/e.py", "line": 50, "start": 60, "lines": ["a"] * 5},
            # a first line above the lines sent, and one inside them
            {"name": "t1", "path": "/p/f.c", "line": 10, "start": 5, "lines": ["a"] * 9, "top": 2},
            {"name": "t2", "path": "/p/f.c", "line": 10, "start": 5, "lines": ["a"] * 9, "top": 8},
            "junk",
        ]
        + [{"name": f"n{i}", "path": "/p/d.py", "line": i + 1} for i in range(1000)],
        "path": "/p/main.py",
        "first": 4,
        "last": 9,
    }
    asked = definitions.parse(raw)
    assert len(asked.found) <= definitions.MAX_FOUND
    assert asked.found[0] == Found("ok", "/p/a.py", 3)
    long = asked.found[1]
    assert len(long.name) == definitions.MAX_NAME and long.end == 0
    sent = asked.found[2].lines
    assert len(sent) == definitions.MAX_SENT_LINES and len(sent[0]) == definitions.MAX_LINE_CHARS
    assert asked.found[3].lines == () and asked.found[4].lines == ()
    assert asked.found[5].top == 0 and asked.found[6].top == 8
    assert (asked.path, asked.first, asked.last) == ("/p/main.py", 4, 9)
    assert definitions.parse("junk") == Asked()
    assert gathered.parse({"definitions": {"found": "x"}}).definitions == Asked()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_only_regular_project_files_outside_virtualenvs_and_vendored_folders_are_read(
    tmp_path: Path,
):
    root = tmp_path / "proj"
    own = write(root / "pkg" / "own.py", "def own():\n    return 1\n")
    venv = root / "env"
    write(venv / "pyvenv.cfg", "home = /usr\n")
    in_venv = write(venv / "lib" / "dep.py", "def dep():\n    return 2\n")
    in_modules = write(root / "node_modules" / "m.js", "function m() {}\n")
    outside = write(tmp_path / "elsewhere.py", "def secret():\n    return 3\n")
    (root / "link_out.py").symlink_to(outside)
    (root / "link_in.py").symlink_to(own)
    hidden = write(root / ".ssh" / "id_rsa.py", "KEY = 1\n")
    assert definitions.project_file(str(own), str(root)) == str(own)
    assert definitions.project_file(str(root / "link_in.py"), str(root)) == str(own)
    for refused in (in_venv, in_modules, outside, root / "link_out.py", hidden):
        assert definitions.project_file(str(refused), str(root)) is None, refused
    # Neovim started in the home directory, no repository: no project to read from
    assert definitions.project_file(str(own), str(root), home=str(root)) is None
    big = write(root / "big.py", "x = 1\n" * (definitions.MAX_FILE_BYTES // 6 + 10))
    assert definitions.read_lines(str(big)) is None
    fifo = root / "pipe.py"
    os.mkfifo(fifo)
    assert definitions.read_lines(str(fifo)) is None  # never blocks on a pipe
    asked = Asked(
        found=(
            Found("own", str(own), 1),
            Found("dep", str(in_venv), 1),
            Found("secret", str(root / "link_out.py"), 1),
            Found("pipe", str(fifo), 1),
        )
    )
    s = definitions.section(asked, str(root))
    assert s is not None and s.kind == "definitions"
    assert "=== `own` in pkg/own.py, lines 1-2 ===\ndef own():\n    return 1" in s.text
    assert "dep" not in s.text and "secret" not in s.text and "pipe" not in s.text


def test_what_the_prompt_holds_and_duplicates_are_skipped_and_long_ones_cut(tmp_path: Path):
    root = tmp_path / "proj"
    text = "def near():\n    pass\n\n" + "\n" * 50 + "def far():\n    pass\n"
    main = write(root / "main.py", text)
    long_body = "def long():\n" + "".join(f"    x{i} = {i}\n" for i in range(300))
    other = write(root / "other.py", long_body)
    asked = Asked(
        found=(
            Found("near", str(main), 1),  # in the lines around the selection
            Found("far", str(main), 54),
            Found("far", str(main), 54),  # the same again (a second server)
            Found("x5", str(other), 7),  # inside `long`, shown already
            Found("other", str(other), 1),  # a module: the top of its file
            Found("long", str(other), 1),
        ),
        path=str(main),
        first=20,
        last=22,
    )
    s = definitions.section(asked, str(root), held_before=19, held_after=10)
    assert s is not None
    assert "`near`" not in s.text
    assert s.text.count("def far():") == 1
    assert "`x5`" not in s.text and "`other`" not in s.text
    assert "=== `long` in other.py, lines 1-220 ===" in s.text
    assert "===\ndef long():\n    x0 = 0" in s.text
    assert "x78 = 78" in s.text and "x79 = 79" not in s.text
    assert "the rest is cut" in s.text


# -- in the editor, with the real pylsp -----------------------------------------------------

HELPERS = '''\
def parse_config(path):
    """Read KEY=VALUE lines."""
    with open(path) as f:
        return dict(line.split("=", 1) for line in f)


def unused_one():
    return 0
'''

MAIN = """\
import json

from helpers import parse_config
from vendored import vendored_helper


def local_helper(x):
    return x * 2


def run(path):
    def inner(v):
        return v + 1

    cfg = parse_config(path)
    out = local_helper(cfg)
    vendored_helper(out)
    return json.dumps(inner(out))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / "helpers.py", HELPERS)
    write(root / "main.py", MAIN)
    # a package installed in the project's virtualenv (pylsp is told its path)
    site = root / ".venv" / "lib" / "python3.11" / "site-packages"
    write(root / ".venv" / "pyvenv.cfg", "home = /usr\n")
    write(site / "vendored.py", "def vendored_helper(x):\n    return 'VENDORED BODY'\n")
    return root


def open_with_pylsp(nvim: Child, root: Path) -> None:
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit main.py")
    site = root / ".venv" / "lib" / "python3.11" / "site-packages"
    start_pylsp(nvim, root, extra_paths=[str(site)])


def sent_user(server: LoopbackServer, n: int = 0) -> str:
    return server.requests[n].body["messages"][-1]["content"]


def user_sent(nvim: Child, server: LoopbackServer) -> str:
    """The fill's user message as the server got it, once the fill ended ok."""
    assert nvim.wait_done()[0]["status"] == "ok"
    return sent_user(server)


def fill_beside_a_loaded_definition(
    nvim: Child,
    server: LoopbackServer,
    tmp_path: Path,
    lib: tuple[str, str],
    caller: tuple[str, str],
    line: int = 0,
    change: str = "",
) -> str:
    """The user message of a fill on line 1 of `caller` (name, text), whose name the tests'
    server resolves to `line` (0-based) of `lib` (name, text): both written in a project
    of their own, `lib` loaded in the editor (hidden) after the Ex command `change` ran
    in its buffer only."""
    one_answer(nvim, server)
    root = tmp_path / "proj"
    target = write(root / lib[0], lib[1])
    write(root / caller[0], caller[1])
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command(f"edit {lib[0]}")
    if change:
        nvim.nvim.command(change)
    nvim.nvim.command(f"edit {caller[0]}")  # lib stays loaded (hidden)
    start_fake(nvim, "flood", tmp_path / "lsp.log", root, target, line=line)
    nvim.nvim.command("1KznFill go")
    return user_sent(nvim, server)


def fill_on_run_with_pylsp(nvim: Child, server: LoopbackServer, project: Path) -> str:
    """The user message of a fill on main.py's `run` (selected), pylsp attached."""
    one_answer(nvim, server)
    open_with_pylsp(nvim, project)
    nvim.ask("11GV18G k", "refactor")  # def run(path): ... return json.dumps(...)
    return user_sent(nvim, server)


def test_the_definition_of_a_function_from_another_file_is_in_the_request_with_its_body(
    nvim: Child, server: LoopbackServer, project: Path
):
    user = fill_on_run_with_pylsp(nvim, server, project)
    assert TITLE in user
    assert "=== `parse_config` in helpers.py, lines 1-4 ===" in user
    assert 'return dict(line.split("=", 1) for line in f)' in user  # the body, not the name
    assert user.index("parse_config` in helpers.py") < user.index("<selection>")
    assert "unused_one" not in user


def test_definitions_outside_the_project_its_virtualenv_and_the_prompt_are_left_out(
    nvim: Child, server: LoopbackServer, project: Path
):
    user = fill_on_run_with_pylsp(nvim, server, project)
    assert TITLE in user  # pylsp answered (parse_config)
    assert "VENDORED BODY" not in user  # the project's .venv: site-packages
    assert "def dumps" not in user  # the standard library
    assert user.count("def inner(v):") == 1  # in the selection already
    assert user.count("def local_helper(x):") == 1  # in the lines around it already


def test_a_diagnostic_from_pylsp_is_in_the_request(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    root = tmp_path / "diag"
    write(root / "bad.py", "def f():\n    return zork + 1\n")
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit bad.py")
    start_pylsp(nvim, root)
    nvim.wait_for(
        lambda: nvim.lua("return #vim.diagnostic.get(0) > 0"), what="pyflakes' diagnostic"
    )
    nvim.ask("2GV k", "fix")
    user = user_sent(nvim, server)
    assert "2:12 ERROR (pyflakes) undefined name 'zork'" in user


# -- the deadline ------------------------------------------------------------------------------


@pytest.mark.parametrize("attached", ["none", "a server without definitions"])
def test_with_no_server_giving_definitions_the_fill_goes_at_once(
    nvim: Child, server: LoopbackServer, tmp_path: Path, attached: str
):
    nvim.serve(server, Reply(chunks=openai_events(["warm"])), Reply(chunks=openai_events(["ok"])))
    nvim.lua("require('kznllm').setup({ context = { lsp_timeout = 5000 } })")
    root = tmp_path / "none"
    write(root / "a.py", "def f():\n    return g(1)\n")
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit a.py")
    if attached != "none":  # bench/lsp_server.py: text sync only, no definitionProvider
        start(nvim, [sys.executable, str(REPO / "bench" / "lsp_server.py")], root, "sync-only")
    nvim.lua(
        "_G.kzn_asked = {} vim.api.nvim_create_autocmd('LspRequest', { callback = function(ev)"
        " table.insert(_G.kzn_asked, ev.data.request.method) end })"
    )
    nvim.nvim.command("KznFill warm the host")
    assert nvim.wait_done()[0]["status"] == "ok"
    began = time.monotonic()
    nvim.nvim.command("2KznFill go")
    server.wait_requests(2, timeout=4.0)
    assert time.monotonic() - began < 4.0  # not the 5 s deadline
    assert TITLE not in sent_user(server, 1)
    assert "textDocument/definition" not in nvim.lua("return _G.kzn_asked")  # nothing asked


def test_a_server_that_never_answers_is_cancelled_and_the_fill_goes_at_the_deadline(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.lua("require('kznllm').setup({ context = { lsp_timeout = 400 } })")
    root = tmp_path / "silent"
    write(root / "a.py", "def f():\n    return helper(1)\n")
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit a.py")
    log = tmp_path / "lsp.log"
    start_fake(nvim, "silent", log, root)
    nvim.lua(
        "vim.diagnostic.set(vim.api.nvim_create_namespace('kzn-test'), 0, "
        "{ { lnum = 1, col = 4, severity = 1, message = 'the rest of the context' } })"
    )
    start = time.monotonic()
    nvim.nvim.command("2KznFill go")
    server.wait_requests(1, timeout=4.0)
    waited = time.monotonic() - start
    assert 0.35 <= waited < 4.0, waited
    user = sent_user(server)
    assert "the rest of the context" in user and TITLE not in user
    nvim.wait_done()
    # the debug view says why (the same gathering, seen in :KznDebug)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.nvim.command("2KznDebug again")
    nvim.wait_done(2)
    view = "\n".join(nvim.lines())
    assert "language server requests not answered by the deadline" in view

    asked = logged(log, "textDocument/definition")
    assert asked  # `helper` was asked about
    cancelled = lambda: logged(log, "$/cancelRequest") >= asked  # noqa: E731
    nvim.wait_for(cancelled, what="every request cancelled")


@pytest.mark.parametrize("mode", ["flood", "malformed"])
def test_a_hostile_server_is_bounded_and_its_one_project_location_is_used(
    nvim: Child, server: LoopbackServer, tmp_path: Path, mode: str
):
    one_answer(nvim, server)
    root = tmp_path / mode
    target = write(root / "lib.py", "def target():\n    return 'TARGET BODY'\n")
    write(root / "a.py", "def f():\n    return target()\n")
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("edit a.py")
    start_fake(nvim, mode, tmp_path / "lsp.log", root, target)
    nvim.nvim.command("2KznFill go")
    user = user_sent(nvim, server)
    assert "=== `target` in lib.py, lines 1-2 ===" in user
    assert user.count("TARGET BODY") == 1  # every name resolves there: shown once
    assert "far/away" not in user


LIB_LUA = """\
local x = 1

-- Says what it is, with a doc comment.
local function target()
  local s = 'first'
    .. 'second'
-- a comment at column 0 inside the body
  return s
end

return target
"""


def test_a_definition_in_a_loaded_buffer_is_its_unsaved_text_its_extent_from_tree_sitter(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    lib = ("lib.lua", LIB_LUA)
    caller = ("a.lua", "local y = target()\n")
    change = "6s/'second'/'UNSAVED'/"
    user = fill_beside_a_loaded_definition(nvim, server, tmp_path, lib, caller, 3, change)
    assert "=== `target` in lib.lua, lines 3-9 ===\n-- Says what it is" in user
    assert "    .. 'UNSAVED'\n-- a comment at column 0 inside the body\n  return s\nend" in user
    assert "local x = 1" not in user and "return target" not in user


def test_with_no_selection_the_names_near_the_cursor_are_resolved(
    nvim: Child, server: LoopbackServer, project: Path
):
    one_answer(nvim, server)
    open_with_pylsp(nvim, project)
    # normal mode, on `out = local_helper(cfg)`: a fill at the cursor
    nvim.ask("16G k", "continue")
    assert "=== `parse_config` in helpers.py, lines 1-4 ===" in user_sent(nvim, server)


def test_a_working_directory_reached_through_a_link_still_finds_the_project(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    one_answer(nvim, server)
    real = tmp_path / "real"
    target = write(real / "lib.py", "def target():\n    return 'TARGET BODY'\n")
    write(real / "a.py", "def f():\n    return target()\n")
    (tmp_path / "link").symlink_to(real)
    nvim.nvim.command(f"cd {tmp_path / 'link'}")  # the server names files by real path
    nvim.nvim.command("edit a.py")
    start_fake(nvim, "flood", tmp_path / "lsp.log", tmp_path / "link", target)
    nvim.nvim.command("2KznFill go")
    assert "=== `target` in lib.py, lines 1-2 ===" in user_sent(nvim, server)


def test_a_local_in_a_loaded_buffer_is_its_own_lines_not_the_function_around_it(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    lib = ("lib.lua", "local function outer()\n  s = 'first'\n  return s\nend\n")
    caller = ("a.lua", "local y = s\n")
    user = fill_beside_a_loaded_definition(nvim, server, tmp_path, lib, caller, 1)  # `s = ...`
    assert "=== `s` in lib.lua, line 2 ===\n  s = 'first'\n" in user
    assert "local function outer" not in user


def test_a_c_definition_starting_above_its_name_is_whole_with_its_doc_comment(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    text = "int x;\n\n/* Adds one. */\nstatic int\nhelper(int a)\n{\n  return a + 1;\n}\n"
    caller = ("a.c", "int y = helper(1);\n")
    user = fill_beside_a_loaded_definition(nvim, server, tmp_path, ("lib.c", text), caller, 4)
    want = "=== `helper` in lib.c, lines 3-8 ===\n/* Adds one. */\nstatic int\nhelper(int a)\n{"
    assert want in user  # from `helper(int a)`, line 4, up to its doc comment


def test_a_definition_is_left_out_only_when_the_lines_around_as_sent_hold_it(tmp_path: Path):
    root = tmp_path / "proj"
    lines = ["def far_one():", "    return 1"]
    lines += [f"x_{i} = {i}" for i in range(3, 291)]
    lines += ["def near_one():", "    return 2"] + [f"y_{i} = {i}" for i in range(293, 300)]
    main = write(root / "main.py", "\n".join([*lines, "use()"]) + "\n")
    found = [
        {"name": "far_one", "path": str(main), "line": 1},
        {"name": "near_one", "path": str(main), "line": 291},
    ]
    raw = {
        "mode": "replace",
        "selection": "use()",
        "path": str(main),
        "before": "\n".join(lines) + "\n",
        "cwd": str(root),
        "context": {"definitions": {"found": found, "path": str(main), "first": 300, "last": 300}},
    }
    job = payload.parse(raw, Settings(context=ContextOptions(budget=400)))
    job = payload.fitted(payload.with_definitions(job))
    sent = "\n".join(s.text for s in job.ctx.sections if s.kind == "definitions")
    # line 1 was in the lines the editor sent, but the budget cut them: it is shown
    assert "def far_one():" in sent and "def far_one():" not in job.ctx.before
    # line 291 is in the lines around as sent: not repeated
    assert "def near_one():" not in sent and "def near_one():" in job.ctx.before


def test_a_loaded_buffers_long_line_is_sent_cut(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    body = "local function target()\n  return '" + "x" * 999 + "é" + "x" * 50_000 + "'\nend\n"
    nvim.spy_sent()
    caller = ("a.lua", "local y = target()\n")
    user = fill_beside_a_loaded_definition(nvim, server, tmp_path, ("lib.lua", body), caller)
    assert "=== `target` in lib.lua, lines 1-3 ===" in user
    assert "  return '" + "x" * 990 in user and "é" not in user  # cut before the character
    assert max(size for op, size, _ in nvim.sent("fill")) < 20_000  # not the 50 KB line
