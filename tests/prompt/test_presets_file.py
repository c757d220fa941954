"""The presets file the editor and the CLI share, `<nvim config dir>/kznllm/presets.toml`
(a `[[presets]]` array of tables, the fields of setup()'s presets), merged under setup()'s
by id; and an invalid preset, from either, reported with where, field and reason and left
out while every valid one keeps working. Pure merging first, then the `kznllm` command,
then a real Neovim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py.prompt.presets import DEMO_ID, merge_presets, presets_file, read_presets_file
from tests.cli.test_cli import clean_env
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

FILE = """
[[presets]]
id = "local-coder"
description = "my llama.cpp"
provider = "openai"
model = "qwen-coder"
base_url = "{url}"
api_key = false
params = {{ temperature = 0.1 }}

[[presets]]
id = "claude-haiku"         # a built-in, changed in one field
model = "claude-haiku-4-0"

[[presets]]
id = "broken"
provider = "nope"
model = "m"

[[presets]]
id = "typo"
provider = "anthropic"
model = "claude-x"
params = {{ temprature = 0.2 }}
"""


def write_file(config_dir: Path, url: str = "http://127.0.0.1:9/v1", text: str = FILE) -> Path:
    path = config_dir / "kznllm" / "presets.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.format(url=url))
    path.chmod(0o600)
    return path


# -- pure ------------------------------------------------------------------------------------


def test_file_presets_merge_under_setups_by_id_and_bad_ones_are_left_out(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    setup = [
        {"id": "local-coder", "model": "qwen-coder-big"},  # over the file's, by id
        {"id": "mine", "provider": "nope", "model": "m"},
    ]
    merged = merge_presets(setup, file=path)
    p = merged.presets
    assert (p["local-coder"].model, p["local-coder"].params) == (
        "qwen-coder-big",
        {"temperature": 0.1},
    )
    assert p["local-coder"].description == "my llama.cpp"
    assert p["claude-haiku"].model == "claude-haiku-4-0"
    assert p["claude-haiku"].provider == "anthropic"  # the rest of the built-in stays
    assert DEMO_ID in p and "broken" not in p and "typo" not in p and "mine" not in p
    broken, typo, mine = merged.problems
    assert broken.startswith(f"{path}: preset 'broken': unknown provider 'nope'")
    assert typo.startswith(f"{path}: preset 'typo': params.temprature: unknown to anthropic")
    assert mine.startswith("preset 'mine': unknown provider 'nope'")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[presets]\nid = 1", "not valid TOML: "),
        ('presets = "all"', "presets must be an array of tables ([[presets]])"),
        ('[[preset]]\nid = "x"', "unknown key(s) preset (want [[presets]] tables)"),
    ],
)
def test_a_broken_file_is_one_message_naming_it_and_the_builtins_stay(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write_file(tmp_path, text=text)
    merged = merge_presets(None, file=path)
    assert [m.removeprefix(f"{path}: ")[: len(problem)] for m in merged.problems] == [problem]
    assert DEMO_ID in merged.presets


def test_no_file_is_no_presets_and_no_problem(tmp_path: Path) -> None:
    assert read_presets_file(tmp_path / "absent.toml") == ([], [])
    env = {"XDG_CONFIG_HOME": str(tmp_path), "NVIM_APPNAME": "mine"}
    assert presets_file(env) == tmp_path / "mine" / "kznllm" / "presets.toml"


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    assert "local-coder" in merge_presets(None, file=path).presets
    path.write_text('[[presets]]\nid = "other"\nprovider = "openai"\nmodel = "m"\n')
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse clock
    presets = merge_presets(None, file=path).presets
    assert "other" in presets and "local-coder" not in presets


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_file_every_user_can_write_is_ignored_with_the_reason(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    path.chmod(0o666)
    merged = merge_presets(None, file=path)
    assert merged.problems == (f"{path}: ignored: every user can write to it (chmod o-w)",)
    assert "local-coder" not in merged.presets


# -- the command line ------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kznllm ARGS` with the Neovim config dir under tmp_path (no proxy, no real keys)."""
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), NVIM_APPNAME="nvim")
    argv = [sys.executable, "-m", "kznllm_py.cli.main", *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)


def test_cli_lists_the_file_presets_and_says_what_it_left_out(tmp_path: Path) -> None:
    path = write_file(tmp_path / "xdg" / "nvim")
    res = cli(tmp_path, "presets", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["id"]: r for r in json.loads(res.stdout)}
    assert rows["local-coder"]["model"] == "qwen-coder"
    assert rows["claude-haiku"]["model"] == "claude-haiku-4-0"
    assert "broken" not in rows and DEMO_ID in rows
    warnings = res.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"kznllm: warning: {path}: preset 'broken': unknown provider")
    assert "params.temprature" in warnings[1] and warnings[1].endswith("(left out)")
    check = cli(tmp_path, "presets", "--check", "-", "--json")
    assert len(json.loads(check.stdout)["problems"]) == 2 and check.returncode == 1


def test_cli_fill_finds_a_preset_of_the_file(tmp_path: Path, server: LoopbackServer) -> None:
    write_file(tmp_path / "xdg" / "nvim", url=server.base_url)
    server.queue(Reply(chunks=openai_events(["from ", "the file"])))
    res = cli(tmp_path, "fill", "--preset", "local-coder", "say it")
    assert (res.returncode, res.stdout) == (0, "from the file"), res.stderr
    [req] = server.requests
    assert req.body["model"] == "qwen-coder" and req.body["temperature"] == 0.1


# -- the editor ------------------------------------------------------------------------------


@pytest.mark.nvim
def test_editor_uses_file_presets_and_a_bad_one_never_stops_the_others(
    nvim: Child, server: LoopbackServer
) -> None:
    config = Path(nvim.lua("return vim.fn.stdpath('config')"))
    path = write_file(config, url=server.base_url)
    nvim.lua(
        "require('kznllm').setup({ presets = {"
        " { id = 'bad', provider = 'nope', model = 'm' },"
        " { id = 'local-coder', params = { temperature = 0.3 } } } })"
    )
    ids = [p["id"] for p in nvim.lua("return require('kznllm').presets().presets")]
    assert {"local-coder", "claude-haiku", DEMO_ID} <= set(ids)
    assert "bad" not in ids and "broken" not in ids
    # the demo still answers
    nvim.set_lines([""])
    nvim.nvim.command("KznPreset demo")
    nvim.nvim.command("KznFill hi")
    assert nvim.wait_done()[0]["status"] == "ok"
    # the file's preset, changed by setup()'s, reaches the server
    server.queue(Reply(chunks=openai_events(["ok"])))
    nvim.nvim.command("KznPreset local-coder")
    nvim.nvim.command("KznFill go")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    [req] = server.requests
    assert req.body["model"] == "qwen-coder" and req.body["temperature"] == 0.3

    # each problem said once (at setup, and by the host at most once a session)
    def said(word: str) -> list[str]:
        return [m for m in nvim.messages() if word in m]

    nvim.wait_for(lambda: said("'broken'") and said("'bad'"), what="the preset problems")
    assert any(str(path) in m and "unknown provider 'nope'" in m for m in said("'broken'"))
    assert any("params.temprature" in m for m in nvim.messages())
