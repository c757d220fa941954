"""A cloned repository's `.kzn` file names are text from outside: a name with a line
break (or an escape sequence) must not break the history sidebar. Neovim refuses a
buffer line with a newline, so one such name left the sidebar at "loading…" with a
Lua error and a Press ENTER (found in tmux). Pure layout, then a real Neovim."""

from __future__ import annotations

from pathlib import Path

from kznllm_py.history import view as sidebar
from tests.nvim.test_editor_sidebar import open_sidebar
from tests.nvim_child import Child


def test_context_lines_show_control_characters_in_names_escaped():
    kzn = sidebar.KznFiles(
        directory="/p/.kzn",
        files=[(".kzn/new\nline.md", 3), (".kzn/esc\x1b[31m.md", 2)],
        skipped=[(".kzn/big\r\n.txt", "larger than\n256 KiB")],
        budget=1000,
    )
    ctx = sidebar.ContextInfo(preset_id="demo", buffer_path="/p/a\nb.py", kzn=kzn)
    lines = sidebar.render([], total=0, offset=0, now=0.0, live={}, context=ctx)["lines"]
    assert all("\n" not in x and "\r" not in x and "\x1b" not in x for x in lines), lines
    assert "          .kzn/new\\nline.md  ~3" in lines
    assert "          .kzn/esc\\x1b[31m.md  ~2" in lines
    assert "          .kzn/big\\r\\n.txt  skipped: larger than\\n256 KiB" in lines
    assert "  buffer  /p/a\\nb.py" in lines


def test_a_kzn_file_named_with_a_line_break_leaves_the_sidebar_working(nvim: Child, tmp_path: Path):
    project = tmp_path / "project"
    (project / ".kzn").mkdir(parents=True)
    (project / ".kzn" / "new\nline.md").write_text("hi\n")
    (project / ".kzn" / "notes.md").write_text("x" * 40)
    nvim.nvim.command(f"cd {project}")
    lines = open_sidebar(nvim)
    assert any(line.strip() == ".kzn/new\\nline.md  ~1" for line in lines), lines
    assert any(line.strip().startswith(".kzn/notes.md") for line in lines), lines
    assert [x for x in lines if x.startswith("History (")]  # rendered whole
