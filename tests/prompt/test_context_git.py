"""The buffer file's uncommitted hunks in what the model is shown (issue 25 item 5, off
by default: `context = { git = true }`, `kznllm --git`), with a real git repository in a
temporary folder: the hunk near the selection is sent and a far one is not, for saved and
unsaved buffers (CRLF, BOM, no final newline); a commit made between two fills is seen;
with the committed text held, the fill goes at the keypress and the host checks its oid
before it uses the diff;
a hostile repository config (diff.external, a diff driver's command and textconv, a clean
filter, core.fsmonitor, core.pager, hooks) runs nothing, through the long-lived cat-file
too; a repository another user owns is not read (git's safe.directory); a hung, wedged or
lying git is stopped, a killed cat-file is replaced, an idle one goes away; a huge blob
is not read, a huge buffer not diffed. The important cases run twice (`way`): through
git 2.36's `cat-file --batch-command`, and through the two older modes a git before
2.36 is asked with (`--batch-check`, `--batch`), forced on this git; a git that refuses
`--batch-command` as 2.34 does is asked the older way, the refusal learnt once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kznllm_py.prompt.sources import catfile, git, git_checks
from tests import cli_env
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(autouse=True)
def own_cat_files() -> Iterator[None]:
    """Each test starts and ends with no cat-file of this process running."""
    git.BATCHES.close()
    yield
    git.BATCHES.close()


@pytest.fixture(params=["batch-command", "older-git"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The cat-file way under test: `--batch-command` (git 2.36 on), or the two older
    modes (`--batch-check`, then `--batch` once a blob is read) forced on this git, as a
    git before 2.36 is asked (set before any Neovim starts: its host inherits it). The
    processes one repository's questions run in once a blob was read."""
    if request.param == "older-git":
        monkeypatch.setenv("KZNLLM_GIT_BATCH_COMMAND", "0")
        return 2
    monkeypatch.delenv("KZNLLM_GIT_BATCH_COMMAND", raising=False)
    return 1


def sh(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t")
    env.update(GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def repo_with(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Path]:
    """A repository (its root, its file) whose one file `name`, holding `data`, is
    committed."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "init", "-q")
    f = root / name
    f.write_bytes(data)
    sh(root, "add", name)
    sh(root, "commit", "-qm", "init")
    return root, f


def committed_repo(tmp_path: Path, lines: int = 300) -> tuple[Path, Path]:
    """A repository whose f.txt (lines "1".."300") is committed, then lines 50 and 250
    changed in the worktree."""
    root, f = repo_with(tmp_path, "f.txt", "".join(f"{i}\n" for i in range(1, lines + 1)).encode())
    text = f.read_text().replace("\n50\n", "\nfifty near\n").replace("\n250\n", "\nfar away\n")
    f.write_text(text)
    return root, f


# -- git itself, in a real repository ----------------------------------------------------


def test_the_hunk_near_the_selection_is_found_and_a_far_one_is_not(tmp_path: Path, way: int):
    _, f = committed_repo(tmp_path)
    found = git.changes(str(f), (45, 46))
    assert found.base == "HEAD" and found.note == ""
    [hunk] = found.hunks
    assert "-50\n+fifty near" in hunk.text and hunk.text.startswith("@@ -47,7 +47,7 @@")
    assert "far away" not in hunk.text
    sec = git.section(found, "f.txt")
    assert sec is not None and sec.kind == "git" and "far away" not in sec.text
    assert git.changes(str(f), (120, 130)).hunks == ()  # nothing within 20 lines


def test_a_file_added_but_never_committed_is_diffed_against_the_index(tmp_path: Path, way: int):
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


def test_a_hostile_repository_config_runs_nothing(tmp_path: Path, way: int):
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
    assert len(git.BATCHES.pids()) == way  # the way under test did read it


def test_git_variables_of_the_environment_do_not_steer_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: int
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: int
):
    root, _ = committed_repo(tmp_path)
    big = root / "big.txt"
    big.write_text("x" * 100 + "\n" * 3000)
    sh(root, "add", "big.txt")
    sh(root, "commit", "-qm", "big")
    big.write_text("small\n")
    monkeypatch.setattr(git, "MAX_BYTES", 1024)
    found = git.changes(str(big), (1, 1))
    assert found.hunks == ()
    assert found.note == "git: the committed file is larger than 1 KiB (not read)"
    reply = git.answer({"request": 1, "path": str(big)})  # the editor's ask: the same
    assert "text" not in reply and reply["note"] == found.note
    assert len(git.BATCHES.pids()) == 1  # refused from its size: no process reads a blob


# -- the long-lived cat-file ---------------------------------------------------------------


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """The process ended and was reaped (no zombie left)."""
    return not Path(f"/proc/{pid}").exists()


def test_the_editors_ask_names_the_oid_and_the_text_comes_only_when_it_changed(
    tmp_path: Path, way: int
):
    """The committed text of `git_blob`, from one cat-file process for the repository:
    asked again with the oid held, no text; after a commit, the new oid and its text
    (a commit made between two fills is seen by the second)."""
    root, f = committed_repo(tmp_path)
    first = git.answer({"request": 1, "path": str(f)})
    assert first["base"] == "HEAD" and first["note"] == ""
    assert first["text"] == "".join(f"{i}\n" for i in range(1, 301)).encode()
    pids = git.BATCHES.pids()
    assert len(pids) == way
    again = git.answer({"request": 2, "path": str(f), "oid": first["oid"]})
    assert again["oid"] == first["oid"] and "text" not in again
    sh(root, "commit", "-qam", "the changes")
    after = git.answer({"request": 3, "path": str(f), "oid": first["oid"]})
    assert after["oid"] != first["oid"] and after["text"] == f.read_bytes()
    assert git.BATCHES.pids() == pids  # the same process answered all three
    sub = root / "sub"
    sub.mkdir()
    (sub / "g.txt").write_text("g\n")
    sh(root, "add", "sub/g.txt")  # added, never committed: the index (read afresh)
    reply = git.answer({"request": 4, "path": str(sub / "g.txt")})
    assert reply["base"] == "the index" and reply["text"] == b"g\n"
    plain = tmp_path / "plain.txt"  # in no repository: nothing, no note
    plain.write_text("x\n")
    assert git.answer({"request": 5, "path": str(plain)}) == {
        "request": 5,
        "oid": "",
        "base": "HEAD",
        "note": "",
    }
    untracked = root / "untracked.txt"
    untracked.write_text("u\n")
    assert git.answer({"request": 6, "path": str(untracked)})["oid"] == ""


def test_names_with_spaces_and_bytes_that_are_not_utf8_are_asked_as_they_are(
    tmp_path: Path, way: int
):
    root, _ = committed_repo(tmp_path)
    spaced = root / "a b.txt"
    spaced.write_text("spaced\n")
    odd = os.fsdecode(bytes(root) + b"/caf\xe9.txt")  # not UTF-8: a surrogate escape
    Path(odd).write_text("latin\n")
    sh(root, "add", "-A")
    for f, text in ((spaced, b"spaced\n"), (Path(odd), b"latin\n")):
        reply = git.answer({"request": 1, "path": str(f)})
        assert reply["text"] == text and reply["note"] == ""  # from the index
    missing = root / "not here.txt"
    missing.write_text("x\n")
    assert git.answer({"request": 2, "path": str(missing)})["note"] == ""  # no broken reply


def test_a_cat_file_killed_mid_session_is_replaced(tmp_path: Path, way: int):
    _, f = committed_repo(tmp_path)
    first = git.answer({"request": 1, "path": str(f)})
    *_, pid = git.BATCHES.pids()  # the one reading blobs (the only one, or --batch)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: (
            subprocess.run(
                ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True
            ).stdout.strip()[:1]
            in ("Z", "")
        ),
        "the kill",
    )
    again = git.answer({"request": 2, "path": str(f)})
    assert again["oid"] == first["oid"] and again["text"] == first["text"]
    assert again["note"] == "" and pid not in git.BATCHES.pids() and gone(pid)
    assert len(git.BATCHES.pids()) == way


def test_an_idle_cat_file_goes_away_and_comes_back_at_the_next_ask(tmp_path: Path, way: int):
    _, f = committed_repo(tmp_path)
    batches = catfile.Batches(idle=0.3)

    def ask() -> catfile.Committed | None:
        return batches.committed(
            str(f),
            argv=["git", *git._HARDENED],
            env=git.environment(),
            find=git._find,
            cap=git.MAX_BYTES,
            deadline=time.monotonic() + 5,
        )

    found = ask()
    assert found is not None and found.base == "HEAD"
    pids = batches.pids()
    assert len(pids) == way
    wait_until(lambda: batches.pids() == [] and all(map(gone, pids)), "the idle cat-file to end")
    wait_until(lambda: batches._reaper is None, "the idle thread to end")
    assert ask() == found and len(batches.pids()) == way
    assert not set(batches.pids()) & set(pids)
    batches.close()
    assert batches.pids() == []


def fake_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cat_file: str) -> Path:
    """`git` on PATH as the real one, but `cat-file` runs `cat_file` (a shell line)
    after writing its pid to the returned file."""
    real = shutil.which("git")
    fake = tmp_path / "bin"
    fake.mkdir()
    pids = tmp_path / "pids"
    (fake / "git").write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" cat-file "*) echo $$ >> {pids}; {cat_file};; esac\n'
        f'exec {real} "$@"\n'
    )
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    return pids


def test_a_wedged_cat_file_is_killed_at_the_deadline_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: int
):
    _, f = committed_repo(tmp_path)
    PATH = os.environ["PATH"]
    pids = fake_git(tmp_path, monkeypatch, "exec sleep 30")
    monkeypatch.setattr(git, "TIMEOUT", 0.5)
    started = time.monotonic()
    reply = git.answer({"request": 1, "path": str(f)})
    assert time.monotonic() - started < 3
    assert reply["oid"] == "" and reply["note"] == "git: git took longer than 0.5 s (stopped)"
    [pid] = [int(p) for p in pids.read_text().split()]
    assert gone(pid) and git.BATCHES.pids() == []
    monkeypatch.setenv("PATH", PATH)  # the real git again: the next ask starts a new cat-file
    assert git.answer({"request": 2, "path": str(f)})["text"] == f.read_bytes().replace(
        b"fifty near", b"50"
    ).replace(b"far away", b"250")


LIAR = r"""exec python3 -c '
import sys
for line in sys.stdin:
    cmd, _, spec = line.strip().partition(" ")
    oid = "a" * 40
    if cmd == "info":
        sys.stdout.write(oid + " blob 5" + chr(10))
    else:  # says 5 bytes, sends a megabyte
        sys.stdout.write(oid + " blob 5" + chr(10) + "x" * (1 << 20))
    sys.stdout.flush()
'"""


def test_a_lying_cat_file_is_refused_and_killed_without_reading_what_it_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: int
):
    _, f = committed_repo(tmp_path)
    pids = fake_git(tmp_path, monkeypatch, LIAR)
    reply = git.answer({"request": 1, "path": str(f)})
    assert reply["oid"] == "" and "text" not in reply
    assert reply["note"] == "git: git cat-file failed: a reply that does not end where it said"
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2 * way  # replaced once, then given up
    wait_until(lambda: all(gone(p) for p in started), "the liars to be killed")
    assert git.BATCHES.pids() == []


def test_a_hostile_repository_config_runs_nothing_through_the_cat_file_either(
    tmp_path: Path, way: int
):
    """The editor's ask (the long-lived cat-file, HEAD and the index) with every door of
    `hostile` open, the index rewritten by a plain `git add` in between."""
    root, f = committed_repo(tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    new = root / "new.txt"
    new.write_text("n\n")
    sh(root, "add", "new.txt")
    hostile(root, marks)
    first = git.answer({"request": 1, "path": str(f)})
    assert first["text"].startswith(b"1\n2\n") and first["note"] == ""
    reply = git.answer({"request": 2, "path": str(new)})
    assert reply["base"] == "the index" and reply["text"] == b"n\n"
    assert sorted(p.name for p in marks.iterdir()) == []
    assert len(git.BATCHES.pids()) == way


OLD_GIT = r"""#!/bin/sh
# git as 2.34 and older: cat-file knows no --batch-command (parse-options' usage, 129)
case " $* " in *" cat-file "*) echo "$*" >> {log};; esac
case " $* " in *" --batch-command "*)
  echo "error: unknown option \`batch-command'" >&2; exit 129;; esac
exec {real} "$@"
"""


def test_a_git_without_batch_command_is_asked_the_older_way_learnt_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A git before 2.36 refuses `cat-file --batch-command` (it left the git section
    out, with "git: git cat-file failed: gone", at every fill): that refusal is learnt
    once for that git, whose repositories are then asked through `--batch-check` and
    `--batch`, the text and the hunks as with a recent git."""
    _, f = committed_repo(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "cat-files"
    (fake / "git").write_text(OLD_GIT.format(log=log, real=shutil.which("git")))
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.delenv("KZNLLM_GIT_BATCH_COMMAND", raising=False)
    reply = git.answer({"request": 1, "path": str(f)})
    assert reply["note"] == "" and reply["text"].startswith(b"1\n2\n")
    modes = [line.split()[-1] for line in log.read_text().splitlines()]
    assert modes == ["--batch-command", "--batch-check", "--batch"]
    assert len(git.BATCHES.pids()) == 2
    git.BATCHES.close()  # new processes, the same git: no second refusal
    found = git.changes(str(f), (45, 46))
    assert found.note == "" and "-50\n+fifty near" in found.hunks[0].text
    modes = [line.split()[-1] for line in log.read_text().splitlines()]
    assert modes == ["--batch-command", "--batch-check", "--batch", "--batch-check", "--batch"]


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
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"edit {f}")
    git_fill(nvim, server, "48GV k")
    assert "+fifty near" not in str(server.requests[0].body)  # off by default
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    user = git_fill(nvim, server, "48GV k")
    assert [d["status"] for d in nvim.done()] == ["ok", "ok"]
    assert "-50\n+fifty near" in user and "uncommitted changes to" in user
    assert "+far away" not in user


def test_the_cli_git_flag_sends_the_hunk_near_the_range(tmp_path: Path, way: int):
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
    git_editor(nvim, server, f)
    nvim.lua("vim.api.nvim_buf_set_lines(0, 0, 0, true, vim.fn['repeat']({ 'top' }, 30))")
    nvim.lua("vim.api.nvim_buf_set_lines(0, 90, 90, true, { 'unsaved line here' })")
    assert nvim.lua("return vim.bo.modified")
    user = git_fill(nvim, server, "78GVj k")
    assert nvim.done()[0]["status"] == "ok"
    assert "-50\n+fifty near" in user and "+unsaved line here" in user
    assert "+top" not in user and "+far away" not in user


def unified(starts: list[int]) -> str:
    """A unified diff with a one-line change at each of `starts` (1-based)."""
    return "".join(f"@@ -{n},1 +{n},1 @@\n-old {n}\n+new {n}\n" for n in starts)


def test_the_editors_relayed_diff_is_typed_and_bounded_again():
    """The unified diff the editor relays with the fill (vim.diff's) is as untrusted as
    any input: the host picks the hunks near the rows itself, at most MAX_HUNKS; a cut
    diff loses its last hunk; anything malformed is nothing."""
    found = git.parse({"diff": unified([5, 100, 30, 31]), "first": 30, "last": 30, "base": "rm"})
    assert found is not None and found.base == "HEAD"
    assert [h.new_start for h in found.hunks] == [30, 31]  # 5 and 100: more than 20 away
    assert found.hunks[0] == git.Hunk(30, 1, "@@ -30,1 +30,1 @@\n-old 30\n+new 30")
    many = git.parse({"diff": unified(list(range(1, 30))), "first": 10, "last": 12})
    assert many is not None and len(many.hunks) == git.MAX_HUNKS
    assert [h.new_start for h in many.hunks] == list(range(7, 15))  # the nearest, in order
    cut = git.parse({"diff": unified([10, 11]), "cut": True, "first": 10, "last": 11})
    assert cut is not None and [h.new_start for h in cut.hunks] == [10]
    big = git.parse({"diff": unified([1]) + "+" * git.MAX_BYTES, "first": 1, "last": 1})
    assert big is not None and big.hunks == ()  # over the cap: its (last) hunk is dropped
    # the editor diffs only from a few lines before the first that differs: `offset`
    later = git.parse({"diff": unified([5]), "offset": 100, "first": 105, "last": 105})
    assert later is not None
    assert later.hunks == (git.Hunk(105, 1, "@@ -105,1 +105,1 @@\n-old 5\n+new 5"),)
    index = git.parse({"diff": unified([3]), "first": 3, "last": 3, "base": "the index"})
    assert index is not None and index.base == "the index"
    noted = git.parse({"note": "git: x\x1b[31m" + "y" * 400, "first": "a", "diff": 5})
    assert noted is not None and noted.hunks == () and len(noted.note) < 310  # 300, escaped
    assert noted.note.startswith("git: x\\x1b[31my")  # no raw escape character
    assert git.parse("junk") is None
    assert git.answer({"request": 7, "path": "relative.txt"}) == {
        "request": 7,
        "oid": "",
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
    _, f = repo_with(tmp_path, "dos.txt", b"".join(b"line %d\r\n" % i for i in range(1, 41)))
    git_editor(nvim, server, f)
    assert nvim.lua("return vim.bo.fileformat") == "dos"
    nvim.lua("vim.api.nvim_buf_set_lines(0, 19, 20, true, { 'edited twenty' })")
    user = git_fill(nvim, server, "20GV k")
    assert nvim.done()[0]["status"] == "ok"
    assert changed_lines(user) == ["-line 20", "+edited twenty"], user


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


def git_fill(nvim: Child, server: LoopbackServer, keys: str) -> str:
    """A fill with `keys` (a selection and the fill's key), query "fix": the user
    message as it reached the server."""
    seen = len(server.requests)
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.feed(keys)
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the query prompt")
    nvim.feed("fix<CR>")
    nvim.wait_for(lambda: len(server.requests) > seen, what="the request")
    nvim.wait_for(lambda: len(nvim.done()) > seen, what="the fill's end")
    nvim.nvim.command("silent! undo")
    return str(server.requests[seen].body["messages"][-1]["content"])


def git_editor(nvim: Child, server: LoopbackServer, f: Path) -> None:
    """The editor, git context on, its host started, editing `f`."""
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    host_started(nvim)
    nvim.nvim.command(f"edit {f}")


def changed_lines(user: str) -> list[str]:
    return [ln for ln in user.splitlines() if ln[:1] in ("+", "-") and ln[:3] not in ("---", "+++")]


def test_a_bom_and_no_final_newline_are_kept_so_only_the_edit_differs(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """A committed file with a BOM and no newline at its end, edited and unsaved in its
    middle: the buffer's text is what :write would write ('bomb', 'noeol', 'nofixeol'), so
    the one edited line is the one change (not the first line, not the last)."""
    lines = b"\n".join(b"line %d" % i for i in range(1, 13))
    _, f = repo_with(tmp_path, "bom.txt", b"\xef\xbb\xbf" + lines)
    git_editor(nvim, server, f)
    nvim.nvim.command("setlocal nofixeol")
    assert nvim.lua("return { vim.bo.bomb, vim.bo.eol }") == [True, False]
    nvim.lua("vim.api.nvim_buf_set_lines(0, 5, 6, true, { 'edited 6' })")
    user = git_fill(nvim, server, "6GV k")  # the first and last lines are near too
    assert changed_lines(user) == ["-line 6", "+edited 6"], user


def test_a_commit_between_two_fills_is_seen_by_the_second(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    root, f = committed_repo(tmp_path)
    git_editor(nvim, server, f)
    assert "-50\n+fifty near" in git_fill(nvim, server, "48GV k")
    sh(root, "commit", "-qam", "the changes")  # the buffer is what HEAD holds now
    second = git_fill(nvim, server, "48GV k")
    assert "fifty near" in second and "uncommitted changes" not in second
    nvim.lua("vim.api.nvim_buf_set_lines(0, 51, 52, true, { 'since the commit' })")
    third = git_fill(nvim, server, "48GV k")
    assert changed_lines(third) == ["-52", "+since the commit"]
    assert "@@ -49,7 +49,7 @@" in third  # the file's line numbers (vim.diff saw 49-55)


SENT_IN_TICK = """
local sent, notify = {}, vim.rpcnotify
vim.rpcnotify = function(chan, method, args, ...)
  sent[#sent + 1] = type(args) == 'table' and args[1] or '?'
  return notify(chan, method, args, ...)
end
local ok, err = pcall(vim.cmd, ...)
vim.rpcnotify = notify
assert(ok, err)
return sent
"""


def test_a_cold_hosts_first_fill_has_the_git_section(
    way: int, nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """The host started by the keypress itself (no prestart, no earlier fill) gets the
    git ask before its loop runs: the ask must still be kept and answered (it was lost
    to "no running event loop", and the first fill of a session went without git)."""
    _, f = committed_repo(tmp_path)
    nvim.use_server(server.base_url)
    nvim.lua("require('kznllm').setup({ context = { git = true, lsp_timeout = 5000 } })")
    nvim.nvim.command(f"edit {f}")
    assert not nvim.lua("return require('kznllm.host').alive()")
    user = git_fill(nvim, server, "48GV k")
    assert changed_lines(user) == ["-50", "+fifty near"], user


def test_with_the_committed_text_held_the_fill_goes_at_the_keypress_and_is_checked(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """Once the editor holds the file's committed text, a fill with its query given does
    not wait for the host's answer: the ask and the fill leave in the keypress's own
    tick, with the diff against the text held; the host checks the oid before it uses
    it (a commit since: tests above), and the hunk is in the request."""
    _, f = committed_repo(tmp_path)
    git_editor(nvim, server, f)
    assert "-50\n+fifty near" in git_fill(nvim, server, "48GV k")  # now held
    seen = len(server.requests)
    server.queue(Reply(chunks=openai_events(["ok"])))
    sent = nvim.lua(SENT_IN_TICK, "48,49KznFill fix")
    assert sent[:2] == ["git_blob", "fill"], sent
    nvim.wait_for(lambda: len(server.requests) > seen, what="the request")
    user = str(server.requests[seen].body["messages"][-1]["content"])
    assert "-50\n+fifty near" in user and "+far away" not in user


def test_an_edit_or_a_write_option_changed_since_the_last_fill_is_in_the_next_diff(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """The diff made for a fill is kept while the buffer and the committed text held
    stay as they were: an edit (its changedtick), a change of what :write writes
    ('bomb', which moves no changedtick) and a new committed text are in the very next
    diff."""
    root, f = committed_repo(tmp_path)
    git_editor(nvim, server, f)
    assert changed_lines(git_fill(nvim, server, "48GV k")) == ["-50", "+fifty near"]
    # :KznContext gathers as a fill does and writes nothing: a diff made, the buffer
    # as it is now
    assert "+fifty near" in context_view(nvim, "48")
    nvim.lua("vim.api.nvim_buf_set_lines(0, 51, 52, true, { 'edited since' })")
    assert changed_lines(git_fill(nvim, server, "48GV k")) == [
        "-50",
        "+fifty near",
        "-52",
        "+edited since",
    ]
    assert "+\ufeff1" not in context_view(nvim, "3")
    nvim.nvim.command("setlocal bomb")
    assert "-1\n+\ufeff1" in context_view(nvim, "3")
    sh(root, "commit", "-qam", "fifty near")  # a new committed text, the buffer unchanged
    for _ in range(2):  # the host's answer brings it; then the diff made against it
        view = context_view(nvim, "48")
        assert "+edited since" in view and "+fifty near" not in view


def context_view(nvim: Child, line: str) -> str:
    """What :KznContext shows at `line` of the current window's buffer (then back)."""
    tick = "local b = vim.fn.bufnr('kznllm://context') return b > 0 and vim.b[b].changedtick or 0"
    before = nvim.lua(tick)
    nvim.nvim.command(line)
    nvim.nvim.command("KznContext")
    nvim.wait_for(lambda: nvim.lua(tick) != before, what="the context view")
    view = "\n".join(nvim.lines(nvim.lua("return vim.fn.bufnr('kznllm://context')")))
    nvim.nvim.command("wincmd p")
    return view


def early(oid: str = "abc", check: int = 7) -> git.Changes | None:
    """A diff the editor sent before the host's answer, as a fill carries it."""
    raw = {"diff": unified([50]), "first": 49, "last": 50, "check": check, "oid": oid}
    return git.parse(raw)


async def test_an_early_diff_is_used_only_once_the_hosts_answer_names_its_oid():
    checks = git_checks.Checks(asyncio.get_running_loop())
    checks.asked(7)
    waiting = asyncio.ensure_future(checks.settled(early()))
    await asyncio.sleep(0)  # the fill waits for the host's answer (a task switch, no time)
    assert not waiting.done()
    checks.answered(7, "abc")
    settled = await waiting
    assert settled.stands
    found = settled.changes
    assert found is not None and [h.new_start for h in found.hunks] == [50] and not found.check


async def test_a_diff_sent_with_nothing_to_check_stands_as_it_is():
    checks = git_checks.Checks(asyncio.get_running_loop())
    for found in (None, early(check=0), git.Changes(note="git: not a repository")):
        assert await checks.settled(found) == git_checks.Settled(found, stands=True)


async def test_an_early_diff_against_an_old_text_gives_way_to_the_editors_new_diff():
    checks = git_checks.Checks(asyncio.get_running_loop())
    checks.asked(7)
    waiting = asyncio.ensure_future(checks.settled(early("old")))
    checks.answered(7, "new")
    await asyncio.sleep(0)
    assert not waiting.done()  # the editor's diff against the new text is awaited
    checks.rediffed(7, {"diff": unified([52]), "first": 49, "last": 50, "base": "HEAD"})
    settled = await waiting
    assert not settled.stands
    found = settled.changes
    assert found is not None and [h.new_start for h in found.hunks] == [52]
    checks.asked(8)  # no repository any more: the editor says nothing, nor does the fill
    waiting = asyncio.ensure_future(checks.settled(early("old", check=8)))
    checks.answered(8, "")
    checks.rediffed(8, None)
    assert await waiting == git_checks.Settled(None, stands=False)


async def test_an_early_diff_stands_when_the_editors_new_diff_is_the_same():
    checks = git_checks.Checks(asyncio.get_running_loop())
    checks.asked(7)
    waiting = asyncio.ensure_future(checks.settled(early("old")))
    checks.answered(7, "new")
    checks.rediffed(7, {"diff": unified([50]), "first": 49, "last": 50})
    settled = await waiting
    assert settled.stands and settled.changes == early(check=0, oid="")


async def test_an_early_diff_never_checked_goes_out_as_a_note_not_as_hunks(
    monkeypatch: pytest.MonkeyPatch,
):
    checks = git_checks.Checks(asyncio.get_running_loop())

    def a_note(settled: git_checks.Settled, says: str) -> bool:
        found = settled.changes
        return not settled.stands and found is not None and found.hunks == () and says in found.note

    gone = await checks.settled(early(check=3))  # an ask this host never saw
    assert a_note(gone, "could not be checked (not sent)")
    monkeypatch.setattr(git_checks, "ANSWER_WAIT", 0.05)
    checks.asked(4)
    late = await checks.settled(early(check=4))  # no answer by the deadline
    assert a_note(late, "in time")
    monkeypatch.setattr(git_checks, "REDIFF_WAIT", 0.05)
    checks.asked(5)
    checks.answered(5, "other")
    late = await checks.settled(early(check=5))  # changed, and no diff from the editor
    assert a_note(late, "in time")
    for n in range(6, 6 + git_checks.KEEP):  # the oldest asks are forgotten
        checks.asked(n)
    checks.answered(5, "abc")
    forgotten = await checks.settled(early(check=5))
    assert a_note(forgotten, "could not be checked")


def host_children(nvim: Child) -> list[int]:
    """The host's child processes (its cat-files)."""
    host = nvim.lua("return require('kznllm.host').pid")
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == host and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def test_one_cat_file_serves_every_fill_and_ends_with_the_host(
    way: int, nvim: Child, server: LoopbackServer, tmp_path: Path
):
    _, f = committed_repo(tmp_path)
    git_editor(nvim, server, f)
    assert "+fifty near" in git_fill(nvim, server, "48GV k")
    cat_files = host_children(nvim)
    assert len(cat_files) == way
    assert "+fifty near" in git_fill(nvim, server, "48GV k")
    assert host_children(nvim) == cat_files  # the same processes, no other
    nvim.lua("vim.fn.jobstop(require('kznllm.host').chan)")
    nvim.wait_for(
        lambda: not any(Path(f"/proc/{p}").exists() for p in cat_files),
        what="the cat-files to end",
    )


def test_a_buffer_over_the_cap_is_not_diffed_and_a_note_says_so(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    _, f = committed_repo(tmp_path)
    git_editor(nvim, server, f)
    nvim.lua("vim.api.nvim_buf_set_lines(0, -1, -1, true, { string.rep('x', 1024 * 1024) })")
    nvim.feed("48G")
    tick = "local b = vim.fn.bufnr('kznllm://context') return b > 0 and vim.b[b].changedtick or 0"
    before = nvim.lua(tick)
    nvim.nvim.command("KznContext")
    nvim.wait_for(lambda: nvim.lua(tick) != before, what="the context view")
    view = "\n".join(nvim.lines(nvim.lua("return vim.fn.bufnr('kznllm://context')")))
    assert "git: the buffer is larger than 1024 KiB (not diffed)" in view
    assert "uncommitted changes" not in view and server.requests == []


def test_a_file_in_no_repository_gets_no_git_section_and_no_note(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    f = tmp_path / "plain.txt"
    f.write_text("".join(f"{i}\n" for i in range(1, 100)))
    git_editor(nvim, server, f)
    nvim.lua("vim.api.nvim_buf_set_lines(0, 49, 50, true, { 'edited' })")
    user = git_fill(nvim, server, "48GV k")
    assert "uncommitted changes" not in user and "git:" not in user
    assert host_children(nvim) == []
