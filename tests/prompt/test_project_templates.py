"""A cloned repository's templates, as an attacker writes them: a link to the process's
environment in procfs, a link to a file outside the project, a folder link out, a `..`
include, a FIFO, a 1 GiB sparse template. Each is refused with one message naming the
file and why, unread; the host's render stays within its budget. Trust (Neovim's trust
database) decides whether the project's templates are used at all."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.fill import job as payload
from kznllm_py.prompt import prompts, sandbox, trust
from kznllm_py.prompt.presets import preset_from_dict
from kznllm_py.prompt.project_templates import MAX_TEMPLATE_BYTES, decide, review
from kznllm_py.prompt.prompts import FillContext, TemplateSet
from tests.trusting import allow

SECRET = "id_rsa-PRIVATE-KEY-canary-5521"


def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A cloned repository with a .kzn/templates/openai folder, and a secret outside."""
    root = tmp_path / "repo"
    tdir = root / ".kzn" / "templates" / "openai"
    tdir.mkdir(parents=True)
    (root / ".git").mkdir()
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    return root, tdir


def render_with(root: Path, tdir: Path) -> str:
    """The project's system template rendered as a caller that trusts it would."""
    dirs = prompts.search_path(project_kzn=root / ".kzn")
    ctx = FillContext(mode="yap", query="q")
    return prompts.render(ctx, TemplateSet("openai", dirs)).system


ATTACKS = {
    "procfs-environ": lambda tdir, secret: (tdir / "env.jinja").symlink_to("/proc/self/environ"),
    "link-to-a-file-outside": lambda tdir, secret: (tdir / "env.jinja").symlink_to(secret),
    "folder-link-out": lambda tdir, secret: (tdir / "sub").symlink_to(secret.parent),
    "fifo": lambda tdir, secret: os.mkfifo(tdir / "env.jinja"),
}
INCLUDES = {
    "procfs-environ": "openai/env.jinja",
    "link-to-a-file-outside": "openai/env.jinja",
    "folder-link-out": "openai/sub/id_rsa",
    "fifo": "openai/env.jinja",
}
WHY = {
    "procfs-environ": "openai/env.jinja: a symbolic link (refused)",
    "link-to-a-file-outside": "openai/env.jinja: a symbolic link (refused)",
    "folder-link-out": "openai/sub/id_rsa: a link leads out of .kzn/templates (refused)",
    "fifo": "openai/env.jinja: not a regular file (refused)",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_template_leading_out_of_its_folder_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str
) -> None:
    monkeypatch.setenv("KZN_TEMPLATE_CANARY", SECRET)  # in /proc/self/environ
    root, tdir = repo(tmp_path)
    ATTACKS[attack](tdir, tmp_path / "home" / ".ssh" / "id_rsa")
    (tdir / "system.jinja").write_text(f'sys {{% include "{INCLUDES[attack]}" %}}')
    # even with every file "trusted", the render refuses it, with one message
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        render_with(root, tdir)
    assert str(err.value) == f"project template {WHY[attack]}; nothing was sent"
    assert time.monotonic() - started < 1.0  # a FIFO is never waited on
    assert SECRET not in str(err.value)
    # and the fill's decision: the built-ins, one line naming the file and why
    decision = decide(root / ".kzn", "openai", None, how=":KznTrust")
    assert decision.root is None
    named = "openai/sub: a symbolic link" if attack == "folder-link-out" else WHY[attack]
    assert named in decision.notice
    assert decision.notice.startswith("the project's templates are not used, the built-in ")


def test_a_dotdot_include_is_refused(tmp_path: Path) -> None:
    root, tdir = repo(tmp_path)
    (tdir / "system.jinja").write_text('{% include "../../../home/.ssh/id_rsa" %}')
    with pytest.raises(ConfigError, match=r"a name with `\.\.` or an absolute path \(refused\)"):
        render_with(root, tdir)


def test_a_templates_folder_that_is_a_link_is_not_used(tmp_path: Path) -> None:
    root, _ = repo(tmp_path)
    (root / ".kzn" / "templates" / "openai").rename(tmp_path / "elsewhere")
    (root / ".kzn" / "templates").rmdir()
    (root / ".kzn" / "templates").symlink_to(tmp_path / "elsewhere")
    decision = decide(root / ".kzn", "openai", None, how=":KznTrust")
    assert decision.root is None and "templates: a symbolic link (refused)" in decision.notice


def test_a_huge_sparse_template_is_refused_before_a_byte_is_read(tmp_path: Path) -> None:
    """1 GiB of zeros (git packs it to ~1 MB): refused from its size, in milliseconds,
    without the host's memory growing."""
    root, tdir = repo(tmp_path)
    with open(tdir / "system.jinja", "wb") as f:
        f.truncate(1 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        render_with(root, tdir)
    took = time.monotonic() - started
    grew_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert str(err.value) == (
        "project template openai/system.jinja: larger than 64 KB (1024 MB; refused unread); "
        "nothing was sent"
    )
    assert took < 0.5 and grew_kb < 50_000, (took, grew_kb)
    decision = decide(root / ".kzn", "openai", None, how=":KznTrust")
    assert decision.root is None and "larger than 64 KB" in decision.notice


def test_a_template_at_the_cap_is_read(tmp_path: Path) -> None:
    root, tdir = repo(tmp_path)
    (tdir / "system.jinja").write_text("x" * MAX_TEMPLATE_BYTES)
    assert render_with(root, tdir) == "x" * MAX_TEMPLATE_BYTES


def test_trust_decides_and_a_changed_file_is_untrusted_again(tmp_path: Path) -> None:
    root, tdir = repo(tmp_path)
    system = tdir / "system.jinja"
    system.write_text("PROJECT SYSTEM")
    db = tmp_path / "state" / "trust"
    untrusted = decide(root / ".kzn", "openai", db, how=":KznTrust")
    assert untrusted.root is None
    assert (
        "openai/system.jinja: not trusted" in untrusted.notice and ":KznTrust" in untrusted.notice
    )
    assert review(root / ".kzn", db).files == (str(system),)
    allow(db.parent, system)
    assert decide(root / ".kzn", "openai", db, how="").root == str(root / ".kzn" / "templates")
    assert review(root / ".kzn", db).files == ()
    system.write_text("PROJECT SYSTEM, changed")
    changed = decide(root / ".kzn", "openai", db, how=":KznTrust")
    assert changed.root is None and "changed since it was trusted" in changed.notice
    db.write_text(f"! {system}\n")
    denied = review(root / ".kzn", db)
    assert denied.files == () and "denied earlier" in denied.lines[0]


def test_a_file_changed_between_the_decision_and_the_render_is_refused(tmp_path: Path) -> None:
    root, tdir = repo(tmp_path)
    system = tdir / "system.jinja"
    system.write_text("trusted text")
    db = allow(tmp_path / "state", system)
    preset = preset_from_dict({"id": "p", "provider": "openai", "model": "m"})
    job = payload.FillJob(
        preset=preset,
        ctx=FillContext(mode="yap", query="q"),
        timeouts=payload.Timeouts(),
        search_dirs=prompts.search_path(),
        debug=False,
        kzn_dir=root / ".kzn",
        trust_db=db,
    )
    job = payload.with_project_templates(job)
    assert job.notices == () and job.search_dirs[0] == root / ".kzn" / "templates"
    system.write_text("swapped after the check")
    with pytest.raises(ConfigError, match=r"openai/system\.jinja: changed since it was trusted"):
        prompts.render(job.ctx, TemplateSet("openai", job.search_dirs))


def test_the_trust_file_is_read_as_neovim_writes_it(tmp_path: Path) -> None:
    db = tmp_path / "trust"
    db.write_text(f"{trust.digest(b'a')} /x/a.jinja\n! /x/b.jinja\nbad-line\n\n")
    known = trust.load(db)
    assert known == {"/x/a.jinja": trust.digest(b"a"), "/x/b.jinja": "!"}
    assert trust.verdict("/x/a.jinja", b"a", known) is None
    assert trust.verdict("/x/a.jinja", b"b", known) == "changed since it was trusted"
    assert trust.verdict("/x/b.jinja", b"a", known) == "denied"
    assert trust.verdict("/x/c.jinja", b"a", known) == "not trusted"
    assert trust.load(tmp_path / "none") == {} and trust.load(None) == {}


def test_compiling_a_large_template_counts_in_the_budget(tmp_path: Path) -> None:
    """Lexing, parsing and code generation check the render's deadline: a template at
    the cap made of 9,000 expressions stops with the time limit, not seconds later."""
    root, tdir = repo(tmp_path)
    (tdir / "system.jinja").write_text("{{ a }}" * (MAX_TEMPLATE_BYTES // 7))
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"longer than 0\.05 s"):
        sandbox.run_limited(render_with, root, tdir, budget=sandbox.Budget(time_limit=0.05))
    assert time.monotonic() - started < 1.5
