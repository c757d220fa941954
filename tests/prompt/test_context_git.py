"""The buffer file's uncommitted hunks in what the model is shown (issue 25 item 5, off
by default: `context = { git = true }`, `kznllm --git`), with a real git repository in a
temporary folder: the hunk near the selection is sent and a far one is not; a hostile
repository config (diff.external, a diff driver's command and textconv, a clean filter,
core.fsmonitor, core.pager, hooks) runs nothing; a repository another user owns is not
read (git's safe.directory); a hung git is stopped and a huge blob is not read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kznllm_py.prompt.sources import git
from tests import cli_env
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def sh(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t")
    env.update(GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def committed_repo(tmp_path: Path, lines: int = 300) -> tuple[Path, Path]:
    """A repository whose f.txt (lines "1".."300") is committed, then lines 50 and 250
    changed in the worktree."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "init", "-q")
    f = root / "f.txt"
    f.write_text("".join(f"{i}\n" for i in range(1, lines + 1)))
    sh(root, "add", "f.txt")
    sh(root, "commit", "-qm", "init")
    text = f.read_text().replace("\n50\n", "\nfifty near\n").replace("\n250\n", "\nfar away\n")
    f.write_text(text)
    return root, f


# -- git itself, in a real repository ----------------------------------------------------


def test_the_hunk_near_the_selection_is_found_and_a_far_one_is_not(tmp_path: Path):
    _, f = committed_repo(tmp_path)
    found = git.changes(str(f), (45, 46))
    assert found.base == "HEAD" and found.note == ""
    [hunk] = found.hunks
    assert "-50\n+fifty near" in hunk.text and hunk.text.startswith("@@ -47,7 +47,7 @@")
    assert "far away" not in hunk.text
    sec = git.section(found, "f.txt")
    assert sec is not None and sec.kind == "git" and "far away" not in sec.text
    assert git.changes(str(f), (120, 130)).hunks == ()  # nothing within 20 lines


def test_a_file_added_but_never_committed_is_diffed_against_the_index(tmp_path: Path):
    root, _ = committed_repo(tmp_path)
    new = root / "new.txt"
    new.write_text("a\nb\n")
    sh(root, "add", "new.txt")
    new.write_text("a\nB changed\n")
    found = git.changes(str(new), (1, 2))
    assert found.base == "the index" and "+B changed" in found.hunks[0].text


MARKERS = ("ext", "cmd", "textconv", "clean", "smudge", "process", "fsmonitor", "pager", "hook")


def hostile(root: Path, marks: Path) -> None:
    """A repository config and attributes naming a program for every door git has."""

    def touch(name: str) -> str:
        return f"sh -c 'touch {marks / name} && cat'"  # no ';': a comment in git config

    config = root / ".git" / "config"
    config.write_text(
        config.read_text()
        + f"""[diff]
\texternal = {touch("ext")}
[diff "evil"]
\tcommand = {touch("cmd")}
\ttextconv = {touch("textconv")}
[filter "evil"]
\tclean = {touch("clean")}
\tsmudge = {touch("smudge")}
\tprocess = {touch("process")}
[core]
\tfsmonitor = {touch("fsmonitor")}
\tpager = {touch("pager")}
\thooksPath = {root / "hooks"}
"""
    )
    (root / "hooks").mkdir()
    for hook in ("post-index-change", "post-checkout", "reference-transaction"):
        h = root / "hooks" / hook
        h.write_text(f"#!/bin/sh\ntouch {marks / 'hook'}\n")
        h.chmod(0o755)
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n")


def test_a_hostile_repository_config_runs_nothing(tmp_path: Path):
    root, f = committed_repo(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    hostile(root, marks)
    # the control: git's own diff in that repository does run its programs
    subprocess.run(["git", "diff"], cwd=root, capture_output=True, env=git.environment())
    assert any((marks / m).exists() for m in MARKERS), "the hostile config ran nothing?"
    for m in MARKERS:
        (marks / m).unlink(missing_ok=True)
    found = git.changes(str(f), (45, 46))
    assert "+fifty near" in found.hunks[0].text
    assert sorted(p.name for p in marks.iterdir()) == []


def test_git_variables_of_the_environment_do_not_steer_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _, f = committed_repo(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", f"touch {marks / 'ext'}")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    found = git.changes(str(f), (45, 46))
    assert found.hunks and list(marks.iterdir()) == []


def test_a_repository_another_user_owns_is_not_read(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another user")
    root, f = committed_repo(tmp_path)
    subprocess.run(["chown", "-R", "nobody", str(root)], check=True)
    found = git.changes(str(f), (45, 46))
    assert found.hunks == ()
    assert found.note == "git: the repository is not yours (git's safe.directory): not read"


def test_a_hung_git_is_stopped_at_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, f = committed_repo(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\nexec sleep 30\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(git, "TIMEOUT", 0.5)
    started = time.monotonic()
    found = git.changes(str(f), (45, 46))
    assert time.monotonic() - started < 3
    assert found.hunks == () and found.note == "git: git took longer than 0.5 s (stopped)"


def test_a_committed_blob_over_the_cap_is_not_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root, _ = committed_repo(tmp_path)
    big = root / "big.txt"
    big.write_text("x" * 100 + "\n" * 3000)
    sh(root, "add", "big.txt")
    sh(root, "commit", "-qm", "big")
    big.write_text("small\n")
    monkeypatch.setattr(git, "MAX_BYTES", 1024)
    found = git.changes(str(big), (1, 1))
    assert found.hunks == () and found.note == "git: git's output is larger than 1 KiB"


# -- the request as it arrives -----------------------------------------------------------


def host_started(nvim: Child) -> None:
    """The host running and heard (a cold start under load can take seconds: the git
    source's answer would then miss the gathering's deadline, as it would for a user's
    first fill without prestart)."""
    nvim.lua("require('kznllm.host').ensure() require('kznllm.host').notify('ping')")
    nvim.wait_for(lambda: nvim.lua("return require('kznllm.host').alive()"), what="the host")


def test_the_editor_sends_the_near_hunk_with_git_on_and_nothing_by_default(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    _, f = committed_repo(tmp_path)
    server.queue(Reply(chunks=openai_events(["ok"])), Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"edit {f}")
    nvim.feed("48GV k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.feed("fix<CR>")
    assert nvim.wait_done(1)[0]["status"] == "ok"
    assert "+fifty near" not in str(server.requests[0].body)  # off by default
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    nvim.feed("<Esc>48GV k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.feed("fix<CR>")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    user = server.requests[1].body["messages"][-1]["content"]
    assert "-50\n+fifty near" in user and "uncommitted changes to" in user
    assert "+far away" not in user


def test_the_cli_git_flag_sends_the_hunk_near_the_range(tmp_path: Path):
    root, _ = committed_repo(tmp_path)
    env = cli_env.clean_env("OPENAI_API_KEY", "NVIM_APPNAME", XDG_STATE_HOME=str(tmp_path / "s"))
    args = ["render", "q", "--json", "--file", "f.txt", "--range", "52:53"]
    args += ["--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]

    def render(*more: str) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "kznllm_py.cli.main", *args, *more],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "+fifty near" not in render()
    with_git = render("--git")
    assert "+fifty near" in with_git and "+far away" not in with_git


def test_unsaved_edits_are_diffed_as_the_buffer_holds_them_and_rows_are_the_buffers(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """30 lines added at the top, unsaved: the committed line 50 changed on disk is now
    the buffer's row 80; a selection at rows 78-79 is near it (in the file as saved,
    rows 78-79 are 28 lines from it: too far), and the unsaved line is in a hunk too."""
    _, f = committed_repo(tmp_path)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    host_started(nvim)
    nvim.nvim.command(f"edit {f}")
    nvim.lua("vim.api.nvim_buf_set_lines(0, 0, 0, true, vim.fn['repeat']({ 'top' }, 30))")
    nvim.lua("vim.api.nvim_buf_set_lines(0, 90, 90, true, { 'unsaved line here' })")
    assert nvim.lua("return vim.bo.modified")
    nvim.feed("78GVj k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.feed("fix<CR>")
    assert nvim.wait_done(1)[0]["status"] == "ok"
    user = server.requests[0].body["messages"][-1]["content"]
    assert "-50\n+fifty near" in user and "+unsaved line here" in user
    assert "+top" not in user and "+far away" not in user


def test_the_editors_relayed_answer_is_typed_and_bounded_again():
    hunk = {"start": 3, "count": 2, "text": "@@ -3,2 +3,2 @@\n-a\n+b"}
    found = git.parse({"hunks": [hunk, "junk", {"text": 5}] + [hunk] * 20, "base": "rm -rf"})
    assert found is not None and len(found.hunks) == git.MAX_HUNKS and found.base == "HEAD"
    assert found.hunks[0] == git.Hunk(3, 2, hunk["text"])
    huge = git.parse({"hunks": [{"start": 1, "count": 1, "text": "x" * (git.MAX_BYTES + 1)}]})
    assert huge is not None and huge.hunks == ()
    assert git.parse("junk") is None
    assert git.answer({"request": 7, "path": "relative.txt", "rows": [1, 2]}) == {
        "request": 7,
        "hunks": [],
        "base": "HEAD",
        "note": "",
    }


def test_the_cli_git_flag_needs_a_file(tmp_path: Path):
    res = subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", "render", "q", "--git", "--preset", "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env.clean_env("OPENAI_API_KEY", XDG_STATE_HOME=str(tmp_path / "s")),
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert res.returncode != 0 and "--git needs --file" in res.stderr


def test_a_dos_file_with_unsaved_edits_differs_only_where_it_was_edited(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """The buffer's text is sent with the file's own line breaks (CRLF here), so that
    only the edited line differs from the committed blob, not every line."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "init", "-q")
    f = root / "dos.txt"
    f.write_bytes(b"".join(b"line %d\r\n" % i for i in range(1, 41)))
    sh(root, "add", "dos.txt")
    sh(root, "commit", "-qm", "init")
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    host_started(nvim)
    nvim.nvim.command(f"edit {f}")
    assert nvim.lua("return vim.bo.fileformat") == "dos"
    nvim.lua("vim.api.nvim_buf_set_lines(0, 19, 20, true, { 'edited twenty' })")
    nvim.feed("20GV k")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.feed("fix<CR>")
    assert nvim.wait_done(1)[0]["status"] == "ok"
    user = server.requests[0].body["messages"][-1]["content"]
    changed = [
        ln for ln in user.splitlines() if ln[:1] in ("+", "-") and ln[:3] not in ("---", "+++")
    ]
    assert changed == ["-line 20", "+edited twenty"], changed


def test_a_setup_right_before_the_keypress_is_what_the_gathering_follows(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    # the host has answered the configure of setup() with git off; git is switched on and
    # a fill asked in the same tick, before the host's word on the new settings: the
    # gathering follows the settings in force, not the host's older word
    _, f = committed_repo(tmp_path)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"edit {f}")
    host_started(nvim)
    nvim.wait_for(
        lambda: nvim.lua(
            "local k = require('kznllm.host').known"
            " return k ~= nil and k.generation == require('kznllm.config').generation"
        ),
        what="the host's word on the settings",
    )
    nvim.lua(
        "require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })"
        " vim.api.nvim_win_set_cursor(0, { 48, 0 })"
        " require('kznllm.actions').prompt_fill({ mode = 'n', query = 'fix' })"
    )
    assert nvim.wait_done()[0]["status"] == "ok"
    assert "+fifty near" in server.requests[0].body["messages"][-1]["content"]
