"""A cloned repository's `.kzn` that is a symlink out of the project (`.kzn ->
../../.ssh`: git clones symlinks as they are) must not make the next request send the
folder it leads to. The ownership rule alone let it through: the user owns `~/.ssh`.
It is refused with the reason, unless the user allows that folder (`kzn_allow`,
`--allow-kzn`). A real `kznllm render` subprocess (the same discovery as the editor's)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import cli_env

KEY = "-----BEGIN OPENSSH PRIVATE KEY----- not-a-real-key-material"


def hostile_clone(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    (ssh / "id_ed25519").write_text(KEY + "\n")
    repo = home / "src" / "cloned"
    (repo / ".git").mkdir(parents=True)
    (repo / ".kzn").symlink_to("../../.ssh", target_is_directory=True)
    return home, repo


def render(home: Path, repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = cli_env.clean_env(
        "NVIM_APPNAME",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
    )
    args = ("render", "--preset", "demo", *extra, "hi")
    return cli_env.kznllm(*args, cwd=repo, env=env, text=True, module="kznllm_py.cli")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_kzn_symlinked_out_of_the_project_is_refused_and_sends_nothing(tmp_path: Path):
    home, repo = hostile_clone(tmp_path)
    res = render(home, repo)
    assert res.returncode == 0, res.stderr
    assert "PRIVATE KEY" not in res.stdout and "id_ed25519" not in res.stdout
    assert "symlink to outside the project" in res.stderr, res.stderr
    assert str(home / ".ssh") in res.stderr  # where it leads, said


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_kzn_symlinked_out_is_used_once_the_user_allows_where_it_leads(tmp_path: Path):
    home, repo = hostile_clone(tmp_path)
    res = render(home, repo, "--allow-kzn", str(home / ".ssh"))
    assert res.returncode == 0, res.stderr
    assert "id_ed25519" in res.stdout  # the user's own choice


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_kzn_symlinked_inside_the_project_still_counts(tmp_path: Path):
    home, repo = hostile_clone(tmp_path)
    (repo / ".kzn").unlink()
    (repo / "docs" / "kzn").mkdir(parents=True)
    (repo / "docs" / "kzn" / "style.md").write_text("tabs, not spaces\n")
    (repo / ".kzn").symlink_to("docs/kzn", target_is_directory=True)
    res = render(home, repo)
    assert "tabs, not spaces" in res.stdout, res.stderr
