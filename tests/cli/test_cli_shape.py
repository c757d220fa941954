"""`kznllm fill` prints an answer as the editor would land it in `--file` (cli/landing.py),
against a loopback server: with `--range A:B` a dedented answer re-indented to the
selection's base, a column-0 comment above code at the selection's depth given that
base, the range's blank edge lines not sent and printed around the answer (its own blank
edges dropped), so that the output pasted over lines A-B is the editor's result; with
`--line N` fences out and prose as comments in the file's 'commentstring'; shaped text
streams as it comes; `--no-shape` prints the model's text byte for byte. The last test
puts the same answer through `:A,BKznFill` in a real Neovim and compares."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kznllm_py.cli import landing
from tests import cli_env
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SOURCE = [
    "class A:",
    "    x = 1",
    "",
    "    def f(self):",
    "        return 1",
    "",
    "",
    "    def g(self):",
    "        pass",
]


def source_file(tmp_path: Path, lines: list[str] = SOURCE, name: str = "a.py") -> Path:
    f = tmp_path / name
    f.write_text("".join(x + "\n" for x in lines))
    return f


def args_for(server: LoopbackServer, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kznllm_py.cli.main",
        "fill",
        "q",
        "--provider",
        "openai",
        "--model",
        "m",
        "--base-url",
        server.base_url,
        "--no-project",
        "--no-history",
        "--no-outline",
        "--no-scope",
        *more,
    ]


def env_for(tmp_path: Path) -> dict[str, str]:
    return cli_env.clean_env(
        "OPENAI_API_KEY",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )


def cli_fill(
    server: LoopbackServer, tmp_path: Path, texts: list[str], *more: str, piped: str | None = None
) -> str:
    """The CLI's stdout for an answer of `texts` (one delta each), `piped` on its stdin."""
    server.queue(Reply(chunks=openai_events(texts)))
    res = subprocess.run(
        args_for(server, *more),
        capture_output=True,
        cwd=tmp_path,
        env=env_for(tmp_path),
        input=piped.encode() if piped is not None else None,
        stdin=subprocess.DEVNULL if piped is None else None,
        timeout=30,
    )
    assert (res.returncode, res.stderr) == (0, b""), res.stderr.decode(errors="replace")
    return res.stdout.decode()


def pasted(lines: list[str], first: int, last: int, out: str) -> list[str]:
    """`lines` with lines first..last replaced by the CLI's output."""
    assert out.endswith("\n"), out
    return [*lines[: first - 1], *out[:-1].split("\n"), *lines[last:]]


def sent_selection(server: LoopbackServer) -> str:
    user = server.requests[-1].body["messages"][-1]["content"]
    return user.split("<selection>\n", 1)[1].split("\n</selection>", 1)[0]


def test_a_dedented_answer_goes_at_the_ranges_base_between_its_blank_lines(
    server: LoopbackServer, tmp_path: Path
):
    f = source_file(tmp_path)
    answer = ["\n\ndef f(self):\n", "    return 2\n", "\n"]  # dedented, blank edges
    out = cli_fill(server, tmp_path, answer, "--file", f.name, "--range", "3:7")
    assert out == "\n    def f(self):\n        return 2\n\n\n"
    assert pasted(SOURCE, 3, 7, out) == [
        *SOURCE[:3],
        "    def f(self):",
        "        return 2",
        *SOURCE[5:],
    ]
    assert sent_selection(server) == "    def f(self):\n        return 1\n"  # no blank edges


def test_a_piped_selection_of_whole_lines_lands_the_same_way(
    server: LoopbackServer, tmp_path: Path
):
    """`sed -n 3,7p a.py | kznllm fill --filetype python`: the same as --range 3:7."""
    piped = "".join(x + "\n" for x in SOURCE[2:7])
    answer = ["def f(self):\n", "    return 2\n"]
    out = cli_fill(server, tmp_path, answer, "--filetype", "python", piped=piped)
    assert out == "\n    def f(self):\n        return 2\n\n\n"
    assert sent_selection(server) == "    def f(self):\n        return 1\n"


def test_a_column_0_comment_above_code_at_the_selections_depth_gets_its_base(
    server: LoopbackServer, tmp_path: Path
):
    f = source_file(tmp_path)
    answer = ["# doubled\n", "    def f(self):\n        return 2\n"]
    out = cli_fill(server, tmp_path, answer, "--file", f.name, "--range", "4:5")
    assert out == "    # doubled\n    def f(self):\n        return 2\n"
    dedented = ["# doubled\n", "def f(self):\n    return 2\n"]  # all at column 0: all shift
    out = cli_fill(server, tmp_path, dedented, "--file", f.name, "--range", "4:5")
    assert out == "    # doubled\n    def f(self):\n        return 2\n"


def test_a_tab_indented_file_gets_tabs_and_an_answer_as_deep_goes_as_it_came(
    server: LoopbackServer, tmp_path: Path
):
    f = source_file(tmp_path, ["func f() {", "\tif x {", "\t\treturn 1", "\t}", "}"], "a.go")
    out = cli_fill(
        server, tmp_path, ["if x {\n\treturn 2\n}\n"], "--file", f.name, "--range", "2:4"
    )
    assert out == "\tif x {\n\t\treturn 2\n\t}\n"
    out = cli_fill(server, tmp_path, ["\tif y {\n\t}\n"], "--file", f.name, "--range", "2:4")
    assert out == "\tif y {\n\t}\n"


def test_at_a_line_fences_go_and_prose_is_commented_in_the_files_syntax(
    server: LoopbackServer, tmp_path: Path
):
    f = source_file(tmp_path)
    answer = ["Sure! Here is a helper:\n", "```python\n", "def h(self):\n", "    return 3\n"]
    answer += ["```\n", "It returns three.\n"]
    out = cli_fill(server, tmp_path, answer, "--file", f.name, "--line", "5")
    assert out == (
        "        # Sure! Here is a helper:\n"
        "        def h(self):\n"
        "            return 3\n"
        "        # It returns three.\n"
    )
    lua = source_file(tmp_path, ["local x = 1"], "m.lua")
    out = cli_fill(
        server,
        tmp_path,
        ["Note: this sets y.\n```lua\nlocal y = 2\n```\n"],
        "--file",
        lua.name,
        "--line",
        "1",
    )
    assert out == "-- Note: this sets y.\nlocal y = 2\n"
    out = cli_fill(
        server,
        tmp_path,
        ["Note: this sets y.\n```\ny = 2\n```\n"],
        "--file",
        lua.name,
        "--line",
        "1",
        "--commentstring",
        "// %s",
    )
    assert out == "// Note: this sets y.\ny = 2\n"


def test_no_shape_prints_the_models_text_as_it_came(server: LoopbackServer, tmp_path: Path):
    f = source_file(tmp_path)
    answer = ["\n\ndef f(self):\n", "    return 2\n", "\n"]
    out = cli_fill(server, tmp_path, answer, "--file", f.name, "--range", "3:7", "--no-shape")
    assert out == "".join(answer)
    fenced = ["Here:\n```python\nx = 1\n```\n"]
    out = cli_fill(server, tmp_path, fenced, "--file", f.name, "--line", "5", "--no-shape")
    assert out == "".join(fenced)


def test_shaped_lines_stream_as_they_come(server: LoopbackServer, tmp_path: Path):
    """The first re-indented line is on stdout while the server holds the rest."""
    f = source_file(tmp_path)
    server.queue(
        Reply(chunks=openai_events(["def f(self):\n", "    return 2\n", "never"]), pause_after=3)
    )
    proc = subprocess.Popen(
        args_for(server, "--file", f.name, "--range", "4:5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env_for(tmp_path),
    )
    try:
        server.wait_paused(timeout=20)
        want = b"    def f(self):\n        return 2"
        out = b""
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not out.startswith(want):
                assert sel.select(timeout=max(0.0, deadline - time.monotonic())), out
                out += os.read(proc.stdout.fileno(), 1024)
        server.resume()
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (out + rest).decode() == "    def f(self):\n        return 2\n    never\n"


def test_the_buffer_options_come_from_the_file_then_neovims_filetype_defaults():
    spaces = ["def f():", "  if x:", "    return 1", ""]
    assert landing.options_for("python", spaces) == landing.Buffer("# %s", 2, True)
    assert landing.options_for("python", ["x = 1"]) == landing.Buffer("# %s", 4, True)
    tabs = ["int f() {", "\treturn 1;", "}"]
    assert landing.options_for("c", tabs) == landing.Buffer("// %s", 8, False)
    assert landing.options_for("", []) == landing.Buffer("", 8, False)
    given = landing.options_for("python", spaces, commentstring="#%s", shiftwidth=3)
    assert given == landing.Buffer("#%s", 3, True)


def test_a_presets_shape_false_keeps_the_editors_edges_but_shapes_nothing():
    buffer = landing.Buffer("# %s", 4, True)
    on = landing.for_range("    x = 1\n", "python", buffer, top="\n", bottom="\n")
    assert on.shape is not None and on.shape.indent == "    " and on.lines
    off = landing.for_range("    x = 1\n", "python", buffer, top="\n", bottom="\n", enabled=False)
    assert off == landing.Landing(None, True, "\n", "\n")


@pytest.mark.parametrize(
    ("first", "last", "inner"),
    [(3, 7, (4, 5)), (4, 5, (4, 5)), (6, 7, (6, 7)), (1, 9, (1, 9)), (5, 7, (5, 5))],
)
def test_the_ranges_blank_edge_lines_are_left_out_as_the_editor_leaves_them(
    first: int, last: int, inner: tuple[int, int]
):
    lines = [x + "\n" for x in SOURCE]
    assert landing.inner(lines, first, last) == inner


def test_pasted_over_the_range_the_cli_output_is_the_editors_result(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """The same dedented answer, with a column-0 comment and blank edges, through
    `:3,7KznFill` on the file in a real Neovim (its python ftplugin: 'shiftwidth' 4,
    'commentstring' '# %s') and through `kznllm fill --range 3:7`."""
    f = source_file(tmp_path)
    answer = ["\n# doubled\n", "def f(self):\n", "    return 2\n\n"]
    out = cli_fill(server, tmp_path, answer, "--file", str(f), "--range", "3:7")
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.nvim.command(f"edit {f}")
    nvim.nvim.command("3,7KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == pasted(SOURCE, 3, 7, out)
    assert "    # doubled" in nvim.lines()  # shaped, not as it came


def test_at_a_line_the_cli_output_is_what_the_editor_writes_below_it(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """A chatty answer with a fence, through `:KznFill` with the cursor on line 5 (not
    blank: the answer goes below it) and through `kznllm fill --line 5`."""
    f = source_file(tmp_path)
    answer = ["Sure! Here is a helper:\n```python\n", "def h(self):\n    return 3\n```\n"]
    out = cli_fill(server, tmp_path, answer, "--file", str(f), "--line", "5")
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.nvim.command(f"edit {f}")
    nvim.feed("5G")
    nvim.nvim.command("KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == [*SOURCE[:5], *out.rstrip("\n").split("\n"), *SOURCE[5:]]
    assert "        # Sure! Here is a helper:" in nvim.lines()  # shaped, not as it came


def test_a_dos_file_gets_crlf_line_breaks_as_the_editor_writes_it(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """A file with CR LF line breaks: the answer (LF only) printed with CR LF too, so
    pasted over the range the bytes are those `:3,7KznFill` then `:w` writes."""
    f = tmp_path / "dos.py"
    data = "".join(x + "\r\n" for x in SOURCE).encode()
    f.write_bytes(data)
    answer = ["def f(self):\n", "    return 2\n"]
    out = cli_fill(server, tmp_path, answer, "--file", f.name, "--range", "3:7")
    assert out == "\r\n    def f(self):\r\n        return 2\r\n\r\n\r\n"
    # sent as the editor sends a DOS buffer's lines: without their CR
    assert sent_selection(server) == "    def f(self):\n        return 1\n"
    user = server.requests[-1].body["messages"][-1]["content"]
    assert "\r" not in user
    lines = data.split(b"\r\n")
    expected = b"\r\n".join(lines[:2]) + b"\r\n" + out.encode() + b"\r\n".join(lines[7:])
    nvim.serve(server, Reply(chunks=openai_events(answer)))
    nvim.nvim.command(f"edit {f}")
    assert nvim.lua("return vim.bo.fileformat") == "dos"
    nvim.nvim.command("3,7KznFill q")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.nvim.command("write")
    assert f.read_bytes() == expected


def test_crlf_line_breaks_whatever_the_chunking():
    for cut in range(1, 9):
        text = "a\r\nb\nc\r\n\nd"
        crlf = landing.Crlf()
        pieces = [text[i : i + cut] for i in range(0, len(text), cut)]
        assert "".join(crlf.push(p) for p in pieces) + crlf.finish() == "a\r\nb\r\nc\r\n\r\nd"
    assert landing.dos(b"a\r\nb\r\n") and not landing.dos(b"a\r\nb\n") and not landing.dos(b"a")


def test_a_form_feed_line_counts_as_one_line_as_in_neovim(server: LoopbackServer, tmp_path: Path):
    """Lines are split at LF only: a form feed (PEP 8's page break, GNU C's) or a U+2028
    inside a line does not shift the lines --range names."""
    f = source_file(tmp_path, ["a = 1", "\x0c", "s = 'x\u2028y'", "def f():", "    return 1"])
    cli_fill(server, tmp_path, ["def f():\n    return 2\n"], "--file", f.name, "--range", "4:5")
    assert sent_selection(server) == "def f():\n    return 1\n"
