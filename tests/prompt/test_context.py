"""The project context (".kzn mode"): finding the folder, and which of its files go into
the prompt, in what order, and why the others do not. Real files in tmp_path."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kznllm_py.errors import ConfigError, KznError
from kznllm_py.prompt import context
from kznllm_py.prompt.context import (
    ContextFiles,
    budget_for,
    collect,
    estimate_tokens,
    find_kzn_dir,
)

BIG = 10**9  # a budget nothing in these tests reaches

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")


def write(path: Path, content: str | bytes = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / ".kzn").mkdir(parents=True)
    return root


def paths(found: ContextFiles) -> list[str]:
    return [f.path for f in found.included]


def reasons(found: ContextFiles) -> dict[str, str]:
    return {s.path: s.reason for s in found.skipped}


# -- finding the folder: nearest, within the project, owned by the user -----------------


def test_nearest_kzn_dir_is_found_from_a_nested_subdirectory_of_the_project(
    tmp_path: Path,
) -> None:
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / ".kzn").mkdir()
    (tmp_path / "proj" / "src" / ".kzn").mkdir(parents=True)  # nearer: wins
    deep = tmp_path / "proj" / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    assert find_kzn_dir(deep) == tmp_path / "proj" / "src" / ".kzn"
    assert find_kzn_dir(tmp_path / "proj" / "docs") == tmp_path / "proj" / ".kzn"
    assert find_kzn_dir(tmp_path / "proj") == tmp_path / "proj" / ".kzn"


def test_a_kzn_dir_above_the_project_root_is_never_used(tmp_path: Path) -> None:
    (tmp_path / ".kzn").mkdir()  # e.g. /tmp/.kzn, above every project under /tmp
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / "src").mkdir()
    (tmp_path / "loose" / "work").mkdir(parents=True)  # no .git: its root is itself
    assert find_kzn_dir(tmp_path / "proj" / "src") is None
    assert find_kzn_dir(tmp_path / "loose" / "work") is None
    assert find_kzn_dir(tmp_path) == tmp_path / ".kzn"  # at the working directory: used


def test_a_git_file_marks_a_worktree_root_too(tmp_path: Path) -> None:
    write(tmp_path / "wt" / ".git", "gitdir: /elsewhere\n")
    (tmp_path / "wt" / ".kzn").mkdir()
    (tmp_path / "wt" / "src").mkdir()
    assert find_kzn_dir(tmp_path / "wt" / "src") == tmp_path / "wt" / ".kzn"


def test_the_project_root_never_goes_above_home(tmp_path: Path) -> None:
    home = tmp_path / "home" / "me"
    (tmp_path / "home" / ".git").mkdir(parents=True)  # a repository above home
    (tmp_path / "home" / ".kzn").mkdir()
    (home / "notes").mkdir(parents=True)
    assert context.project_root(home / "notes", home) == home / "notes"
    assert find_kzn_dir(home / "notes", home=home) is None
    (home / ".git").mkdir()  # a dotfiles repository at home: home is the root
    (home / ".kzn").mkdir()
    assert context.project_root(home / "notes", home) == home
    assert find_kzn_dir(home / "notes", home=home) == home / ".kzn"


def test_a_kzn_dir_of_another_user_is_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    kzn = tmp_path / "proj" / ".kzn"
    kzn.mkdir()
    someone_else = os.geteuid() + 1
    found = context.discover_kzn(tmp_path / "proj", uid=someone_else)
    assert found.kzn_dir is None
    (line,) = found.ignored
    assert line.startswith(f"ignored the project folder {kzn}: it is owned by ")
    assert f"(uid {os.geteuid()}), not by you" in line
    assert "kzn_allow" in line and "\n" not in line
    # the allow-list trusts it, by the folder or by its project, or everything
    for allow in ([str(kzn)], [str(tmp_path / "proj")], ["*"]):
        assert context.discover_kzn(tmp_path / "proj", uid=someone_else, allow=allow).kzn_dir == (
            kzn
        )


def test_a_world_writable_kzn_dir_is_skipped_and_the_search_goes_on(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / ".kzn").mkdir()
    bad = tmp_path / "proj" / "sub" / ".kzn"
    bad.mkdir(parents=True)
    bad.chmod(0o777)
    found = context.discover_kzn(tmp_path / "proj" / "sub")
    assert found.kzn_dir == tmp_path / "proj" / ".kzn"
    assert found.ignored == (
        f"ignored the project folder {bad}: every user can write to it (kzn_allow in "
        "setup(), or --allow-kzn, trusts it)",
    )


@needs_symlinks
def test_a_symlinked_kzn_dir_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    target.mkdir()
    target.chmod(0o777)
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / ".kzn").symlink_to(target)
    found = context.discover_kzn(tmp_path / "proj")
    assert found.kzn_dir is None and "every user can write to it" in found.ignored[0]


def test_no_kzn_dir_gives_none(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_kzn_dir(deep) is None


def test_a_kzn_file_is_not_a_kzn_dir(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    (tmp_path / "proj" / ".kzn").mkdir()
    write(tmp_path / "proj" / "sub" / ".kzn", "not a folder")
    assert find_kzn_dir(tmp_path / "proj" / "sub") == tmp_path / "proj" / ".kzn"


def test_a_start_that_does_not_exist_still_finds_its_projects_folder(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".kzn").mkdir()
    assert find_kzn_dir(tmp_path / "gone" / "deeper") == tmp_path / ".kzn"


def test_a_relative_start_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".kzn").mkdir()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    found = find_kzn_dir(Path("."))
    assert found is not None and found.is_absolute()
    assert found.resolve() == (tmp_path / ".kzn").resolve()


def test_kzn_allow_must_be_a_list_of_paths() -> None:
    assert context.allow_list(None) == [] and context.allow_list({}) == []
    assert context.allow_list("*") == ["*"]
    with pytest.raises(ConfigError, match="kzn_allow must be a list"):
        context.allow_list([1])


# -- what is included ----------------------------------------------------------------


def test_files_are_reported_relative_to_the_project_root_with_their_tokens(
    project: Path,
) -> None:
    write(project / ".kzn" / "notes.md", "# Notes\nuse tabs\n")
    write(project / ".kzn" / "api" / "schema.sql", "create table t (id int);\n")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/api/schema.sql", ".kzn/notes.md"]
    notes = found.included[1]
    assert notes.content == "# Notes\nuse tabs\n"
    assert notes.tokens == estimate_tokens(notes.content)
    assert found.total_tokens == sum(f.tokens for f in found.included)
    assert found.skipped == []


def test_hidden_files_and_directories_are_included(project: Path) -> None:
    write(project / ".kzn" / ".env.example", "API_URL=http://localhost\n")
    write(project / ".kzn" / ".hidden" / "conventions.md", "snake_case\n")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/.env.example", ".kzn/.hidden/conventions.md"]


def test_gitignore_is_not_applied_and_is_itself_included(project: Path) -> None:
    write(project / ".gitignore", ".kzn/\n")
    write(project / ".kzn" / ".gitignore", "*.md\nsecret/\n")
    write(project / ".kzn" / "notes.md", "ignored by git, still context\n")
    write(project / ".kzn" / "secret" / "plan.txt", "also context\n")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/.gitignore", ".kzn/notes.md", ".kzn/secret/plan.txt"]


def test_the_templates_subtree_is_not_context(project: Path) -> None:
    write(project / ".kzn" / "templates" / "openai" / "system.jinja", "You are {{ x }}")
    write(project / ".kzn" / "templates" / "notes.md", "template notes")
    write(project / ".kzn" / "docs" / "templates" / "howto.md", "a nested one is context")
    write(project / ".kzn" / "notes.md", "context")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/docs/templates/howto.md", ".kzn/notes.md"]
    assert found.skipped == []  # not "skipped": templates are simply not context


@needs_symlinks
def test_a_symlinked_templates_folder_is_not_context_either(project: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared-templates"
    write(shared / "openai" / "user.jinja", "{{ user_query }}")
    (project / ".kzn" / "templates").symlink_to(shared, target_is_directory=True)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert found.included == [] and found.skipped == []


def test_a_utf8_bom_is_dropped_and_non_ascii_text_is_kept(project: Path) -> None:
    write(project / ".kzn" / "bom.txt", "\ufeffhello".encode())
    write(project / ".kzn" / "cjk.md", "日本語のメモ\n")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert [f.content for f in found.included] == ["hello", "日本語のメモ\n"]


def test_an_empty_file_is_included_with_zero_tokens(project: Path) -> None:
    write(project / ".kzn" / "empty.txt", "")
    found = collect(project / ".kzn", budget_tokens=BIG)
    assert [(f.path, f.content, f.tokens) for f in found.included] == [(".kzn/empty.txt", "", 0)]


# -- what is skipped, and why ----------------------------------------------------------


def test_a_file_over_the_per_file_cap_is_skipped_with_its_size(project: Path) -> None:
    write(project / ".kzn" / "big.log", b"a" * (300 * 1024))
    write(project / ".kzn" / "exact.txt", b"b" * (256 * 1024))  # at the cap: allowed
    write(project / ".kzn" / "small.txt", "ok")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/exact.txt", ".kzn/small.txt"]
    assert reasons(found) == {".kzn/big.log": "larger than 256 KiB (300 KiB)"}


def test_the_per_file_cap_can_be_lowered(project: Path) -> None:
    write(project / ".kzn" / "a.txt", b"a" * 2000)
    write(project / ".kzn" / "b.txt", b"b" * 100)

    found = collect(project / ".kzn", budget_tokens=BIG, per_file_cap=1024)

    assert paths(found) == [".kzn/b.txt"]
    assert reasons(found) == {".kzn/a.txt": "larger than 1 KiB (2 KiB)"}


def test_a_binary_file_with_a_nul_byte_is_skipped(project: Path) -> None:
    write(project / ".kzn" / "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(project / ".kzn" / "late-nul.bin", b"a" * 5000 + b"\x00" + b"b" * 10)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert found.included == []
    assert reasons(found) == {
        ".kzn/late-nul.bin": "binary file (a NUL byte in its first 8 KiB)",
        ".kzn/logo.png": "binary file (a NUL byte in its first 8 KiB)",
    }


def test_a_file_that_is_not_valid_utf8_is_skipped(project: Path) -> None:
    write(project / ".kzn" / "latin1.txt", "caf\u00e9 cr\u00e8me".encode("latin-1"))
    write(project / ".kzn" / "utf8.txt", "café crème")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/utf8.txt"]
    assert reasons(found) == {
        ".kzn/latin1.txt": "binary or not UTF-8 text (invalid byte at offset 3)"
    }


@needs_symlinks
def test_a_symlink_resolving_outside_the_project_is_refused(project: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "elsewhere" / "id_rsa", "PRIVATE KEY")
    (project / ".kzn" / "key").symlink_to(secret)
    (project / ".kzn" / "home").symlink_to(secret.parent, target_is_directory=True)
    (project / ".kzn" / "etc").symlink_to("../../elsewhere", target_is_directory=True)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert found.included == []
    outside = str(secret.parent.resolve())
    assert reasons(found) == {
        ".kzn/etc": f"symlink to outside the project ({outside}), refused",
        ".kzn/home": f"symlink to outside the project ({outside}), refused",
        ".kzn/key": f"symlink to outside the project ({outside}/id_rsa), refused",
    }


@needs_symlinks
def test_symlinks_resolving_inside_the_project_are_followed(project: Path) -> None:
    write(project / "src" / "main.py", "print('hi')\n")
    write(project / "src" / "util" / "io.py", "def read(): ...\n")
    (project / ".kzn" / "main.py").symlink_to("../src/main.py")
    (project / ".kzn" / "code").symlink_to("../src", target_is_directory=True)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/code/main.py", ".kzn/code/util/io.py", ".kzn/main.py"]
    assert found.included[-1].content == "print('hi')\n"
    assert found.skipped == []


@needs_symlinks
def test_a_symlinked_kzn_folder_may_use_its_own_files(project: Path, tmp_path: Path) -> None:
    shared = tmp_path / "dotfiles" / "kzn"
    write(shared / "style.md", "tabs\n")
    (shared / "style-link.md").symlink_to("style.md")
    (project / ".kzn").rmdir()
    (project / ".kzn").symlink_to(shared, target_is_directory=True)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/style-link.md", ".kzn/style.md"]


@needs_symlinks
@pytest.mark.timeout(10)
def test_symlink_loops_do_not_hang_and_are_reported(project: Path) -> None:
    kzn = project / ".kzn"
    write(kzn / "a" / "file.txt", "once\n")
    (kzn / "a" / "up").symlink_to("..", target_is_directory=True)  # back to .kzn
    (kzn / "self").symlink_to(".", target_is_directory=True)
    (kzn / "x").symlink_to("y")  # x -> y -> x: a file symlink loop
    (kzn / "y").symlink_to("x")

    found = collect(kzn, budget_tokens=BIG)

    assert paths(found) == [".kzn/a/file.txt"]
    assert reasons(found) == {
        ".kzn/a/up": "directory symlink cycle (leads back to .kzn), not followed",
        ".kzn/self": "directory symlink cycle (leads back to .kzn), not followed",
        ".kzn/x": "symlink loop (too many levels of symbolic links)",
        ".kzn/y": "symlink loop (too many levels of symbolic links)",
    }


@needs_symlinks
def test_a_directory_reached_twice_is_read_once(project: Path) -> None:
    write(project / "docs" / "guide.md", "guide\n")
    (project / ".kzn" / "d1").symlink_to("../docs", target_is_directory=True)
    (project / ".kzn" / "d2").symlink_to("../docs", target_is_directory=True)

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/d1/guide.md"]
    assert reasons(found) == {".kzn/d2": "same directory as .kzn/d1, already read"}


@needs_symlinks
def test_a_broken_symlink_is_skipped(project: Path) -> None:
    (project / ".kzn" / "gone.md").symlink_to("nowhere.md")
    found = collect(project / ".kzn", budget_tokens=BIG)
    assert reasons(found) == {".kzn/gone.md": "broken symlink (its target does not exist)"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.timeout(10)
def test_a_named_pipe_is_skipped_without_blocking(project: Path) -> None:
    os.mkfifo(project / ".kzn" / "pipe")
    write(project / ".kzn" / "z.txt", "after the pipe\n")

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/z.txt"]
    assert reasons(found) == {".kzn/pipe": "not a regular file (a named pipe)"}


@pytest.mark.skipif(IS_ROOT, reason="root reads files and folders whatever their mode")
def test_an_unreadable_file_and_folder_are_skipped_with_the_os_reason(project: Path) -> None:
    locked = write(project / ".kzn" / "locked.txt", "secret\n")
    locked_dir = project / ".kzn" / "vault"
    write(locked_dir / "inside.txt", "secret\n")
    write(project / ".kzn" / "open.txt", "fine\n")
    locked.chmod(0)
    locked_dir.chmod(0)
    try:
        found = collect(project / ".kzn", budget_tokens=BIG)
    finally:
        locked.chmod(0o644)
        locked_dir.chmod(0o755)

    assert paths(found) == [".kzn/open.txt"]
    assert reasons(found) == {
        ".kzn/locked.txt": "cannot read: Permission denied",
        ".kzn/vault": "cannot read directory: Permission denied",
    }


def test_os_errors_opening_a_file_or_folder_become_skip_reasons(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same as the chmod test, by injecting the OS error: runs as root too."""
    write(project / ".kzn" / "locked.txt", "secret\n")
    write(project / ".kzn" / "vault" / "inside.txt", "secret\n")
    write(project / ".kzn" / "open.txt", "fine\n")
    denied = PermissionError(13, "Permission denied")

    def refusing(real: Callable[..., Any], name: str) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if os.fspath(path).endswith(name):
                raise denied
            return real(path, *args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", refusing(os.open, "locked.txt"))
    monkeypatch.setattr(os, "scandir", refusing(os.scandir, "vault"))

    found = collect(project / ".kzn", budget_tokens=BIG)

    assert paths(found) == [".kzn/open.txt"]
    assert reasons(found) == {
        ".kzn/locked.txt": "cannot read: Permission denied",
        ".kzn/vault": "cannot read directory: Permission denied",
    }


def test_a_missing_or_unlistable_kzn_folder_is_a_kzn_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the project context folder"):
        collect(project / "nope" / ".kzn", budget_tokens=BIG)
    write(project / "file-kzn", "x")
    with pytest.raises(KznError, match="not a directory"):
        collect(project / "file-kzn", budget_tokens=BIG)


# -- budget ------------------------------------------------------------------------------


def test_files_past_the_budget_are_skipped_with_the_tokens_left(project: Path) -> None:
    kzn = project / ".kzn"
    write(kzn / "a.txt", "a" * 40)  # 10 tokens
    write(kzn / "b.txt", "b" * 40)  # 10 tokens: 20 in all
    write(kzn / "c.txt", "c" * 40)  # 10 tokens: would make 30 > 25
    write(kzn / "d.txt", "d")  # 1 token: would fit, but the cut is final

    found = collect(kzn, budget_tokens=25)

    assert paths(found) == [".kzn/a.txt", ".kzn/b.txt"]
    assert found.total_tokens == 20
    assert reasons(found) == {
        ".kzn/c.txt": "over the context budget (5 tokens left)",
        ".kzn/d.txt": "over the context budget (5 tokens left)",
    }


def test_a_file_filling_the_budget_exactly_is_included(project: Path) -> None:
    write(project / ".kzn" / "a.txt", "a" * 40)
    write(project / ".kzn" / "b.txt", "b")
    found = collect(project / ".kzn", budget_tokens=10)
    assert paths(found) == [".kzn/a.txt"]
    assert reasons(found) == {".kzn/b.txt": "over the context budget (0 tokens left)"}


def test_files_past_the_budget_are_not_read(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / ".kzn" / "a.txt", "a" * 400)
    for i in range(5):
        write(project / ".kzn" / f"later{i}.txt", "z" * 400)
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.path.basename(os.fspath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)

    found = collect(project / ".kzn", budget_tokens=150)

    assert paths(found) == [".kzn/a.txt"]
    assert opened == ["a.txt", "later0.txt"]  # the first that did not fit, then no more
    assert len(found.skipped) == 5


def test_budget_for_takes_sixty_percent_of_the_window_by_default() -> None:
    assert budget_for(32_768) == 19_660
    assert budget_for(200_000) == 120_000
    assert budget_for(100_000, share=0.5, reserved=10_000) == 40_000
    assert budget_for(1_000, reserved=5_000) == 0


@pytest.mark.parametrize(
    "args",
    [(0,), (-5,), (1.5,), (True,), (1000, 0.0), (1000, 1.5), (1000, 0.6, -1)],
)
def test_budget_for_rejects_nonsense_with_a_config_error(args: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigError):
        budget_for(*args)


def test_a_negative_budget_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError, match="budget"):
        collect(project / ".kzn", budget_tokens=-1)


# -- order -------------------------------------------------------------------------------


def test_the_order_is_sorted_by_path_whatever_the_creation_order(project: Path) -> None:
    kzn = project / ".kzn"
    names = [
        "zeta.md",
        "B.txt",
        "a/z.txt",
        "a.txt",
        "a/b/c.txt",
        "a/a.txt",
        ".dot",
        "_under.md",
        "é.txt",
        "10.txt",
        "9.txt",
    ]
    for name in names:
        write(kzn / name, name)

    first = collect(kzn, budget_tokens=BIG)
    again = collect(kzn, budget_tokens=BIG)

    expected = sorted((".kzn/" + n for n in names), key=lambda p: p.split("/"))
    assert paths(first) == expected
    assert paths(again) == expected
    assert expected[:6] == [
        ".kzn/.dot",
        ".kzn/10.txt",
        ".kzn/9.txt",
        ".kzn/B.txt",
        ".kzn/_under.md",
        ".kzn/a/a.txt",  # the folder "a" sorts before the file "a.txt"
    ]


def test_two_thousand_small_files_collect_quickly(project: Path) -> None:
    kzn = project / ".kzn"
    for d in range(20):
        for f in range(100):
            write(kzn / f"dir{d:02}" / f"file{f:03}.py", f"# file {d}/{f}\nx = {f}\n")

    start = time.perf_counter()
    found = collect(kzn, budget_tokens=BIG)
    elapsed = time.perf_counter() - start

    assert len(found.included) == 2000
    assert elapsed < 1.0, f"{elapsed * 1000:.0f} ms"  # about 15 ms here; loose for slow CI


# -- estimate_tokens ---------------------------------------------------------------------


def test_estimate_tokens_is_a_quarter_of_the_bytes_for_ascii() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 4000) == 1000


def test_estimate_tokens_is_reasonable_on_english_code_and_cjk() -> None:
    # cl100k counts: 10 tokens for the sentence, about 1 per CJK character
    assert 8 <= estimate_tokens("The quick brown fox jumps over the lazy dog.") <= 14
    code = "def add(a: int, b: int) -> int:\n    return a + b\n"
    assert 10 <= estimate_tokens(code) <= 20
    cjk = "日本語のテキストはトークンが多い" * 10  # 16 characters * 10
    assert estimate_tokens(cjk) == 160  # one a character, not 0.75 as bytes / 4 gives
    assert estimate_tokens("café") == 2  # 3 ASCII + one 2-byte letter


def test_estimate_tokens_never_raises_on_lone_surrogates() -> None:
    assert estimate_tokens("a\udcff") >= 1


@given(st.text(), st.text())
def test_estimate_tokens_is_monotonic_and_subadditive(a: str, b: str) -> None:
    both = estimate_tokens(a + b)
    assert both >= max(estimate_tokens(a), estimate_tokens(b))
    assert both <= estimate_tokens(a) + estimate_tokens(b)
    assert (estimate_tokens(a) == 0) == (a == "")


@given(st.text(min_size=1))
def test_estimate_tokens_stays_between_bytes_over_4_and_characters(text: str) -> None:
    n = estimate_tokens(text)
    assert -(-len(text.encode()) // 4) <= n <= len(text.encode())
    assert context.estimate_tokens(text) == n


def test_a_folder_of_more_entries_than_the_cap_is_listed_only_to_the_cap(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cloned `.kzn` of a million files was listed whole (every directory sorted in
    memory) at every fill and sidebar: the listing stops at MAX_ENTRIES entries, all
    directories together, and one line says the rest was not looked at."""
    monkeypatch.setattr(context, "MAX_ENTRIES", 30)
    for d in ("a", "b"):
        for i in range(20):
            write(project / ".kzn" / d / f"f{i:02}.md", "x\n")
    found = collect(project / ".kzn", budget_tokens=BIG)
    assert found.skipped[-1].path == ".kzn/…"
    assert found.skipped[-1].reason == "more than 30 entries: the rest not looked at"
    assert len(found.included) + len(found.skipped) - 1 <= 30
    assert paths(found)[:3] == [".kzn/a/f00.md", ".kzn/a/f01.md", ".kzn/a/f02.md"]
    monkeypatch.setattr(context, "MAX_ENTRIES", 42)  # 2 folders and 40 files: all of it
    found = collect(project / ".kzn", budget_tokens=BIG)
    assert len(found.included) == 40 and found.skipped == []
