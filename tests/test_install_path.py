"""The README's install path, run as a newcomer runs it: a clean tree, a fresh virtual
environment, the README's commands as the README writes them (read from its fenced
blocks, never copied here), packages from the package index.

The clean tree is a copy of what `git clone` would give of the tree under test: the
tracked files plus new files not ignored by .gitignore (`git ls-files --cached --others
--exclude-standard`), without .venv, caches or build output. Not a `git clone`: that
would test the last commit, so a local run would pass or fail on code other than the
code being changed; in CI the checkout *is* the commit, and the copy is the same files.

The README's second command (install the dev extras, run the suite) is not run here: it
is what runs this file (.ci/run does exactly that), so every CI run tests it.

Slow by nature (two virtualenvs, a pip install each: ~25 s per test on an idle 2-core
machine with a warm pip cache); it needs the package index (PyPI, or the pip
configuration's) and fails, never skips, without it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nvim_child import REPO, nvim_binary, xdg_env

README = REPO / "README.md"
INSTALL_TIMEOUT = 600.0
IGNORED = (".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache")

pytestmark = pytest.mark.timeout(900)


# -- reading the README --------------------------------------------------------------------


def fenced_blocks(lang: str) -> list[str]:
    """The README's fenced code blocks in language `lang`, in order."""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.S | re.M)


def try_it_command() -> str:
    """The first command of the README (install, then open the demo)."""
    command = fenced_blocks("sh")[0].strip()
    assert command.endswith("kznllm demo"), command
    return command


def build_hooks() -> dict[str, str]:
    """The build command each plugin manager's snippet gives, by manager."""
    lua, vim = "\n".join(fenced_blocks("lua")), "\n".join(fenced_blocks("vim"))
    found = {
        "lazy.nvim build": re.findall(r"^\s*build = '([^']+)',$", lua, flags=re.M),
        "packer run": re.findall(r"^\s*run = '([^']+)',$", lua, flags=re.M),
        "vim-plug do": re.findall(r"^Plug '[^']+', \{ 'do': '([^']+)' \}$", vim, flags=re.M),
    }
    for manager, hits in found.items():
        assert len(hits) == 1, f"README: one {manager} command expected, found {hits}"
    return {manager: hits[0] for manager, hits in found.items()}


def lazy_config_body() -> str:
    """The Lua the lazy.nvim spec's `config` function runs."""
    lua = next(b for b in fenced_blocks("lua") if "build = " in b)
    match = re.search(r"config = function\(\)\n(.*?)\n  end,", lua, flags=re.S)
    assert match, lua
    return match.group(1).strip()


# -- a newcomer's machine --------------------------------------------------------------


def clean_tree(dest: Path) -> Path:
    """What a clone of the tree under test holds, copied to `dest`."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the same, roughly
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*IGNORED))
        return dest
    for name in listed.decode().split("\0"):
        src = REPO / name
        if name and src.is_file():  # a tracked file deleted in the tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def newcomer_env(home: Path) -> dict[str, str]:
    """This environment without the test run's virtualenv (so `python3` is the machine's,
    as for a newcomer), without API keys (so the default preset is the offline demo), and
    with Neovim's dirs under `home`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    if sys.prefix != sys.base_prefix:
        ours = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != ours)
    env.update(xdg_env(home))
    return env


def sh(command: str, cwd: Path, env: dict[str, str], *, shell: str = "/bin/sh") -> str:
    """Run `command` with `shell -c` in `cwd`, as the README's reader (or a plugin manager)
    does; its output, or a failure that shows it."""
    res = subprocess.run(
        [shell, "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{command!r} exited with {res.returncode}:\n{out[-4000:]}"
    return out


def machine_python_is_new_enough(env: dict[str, str]) -> None:
    res = subprocess.run(
        ["python3", "-c", "import sys; print(sys.version_info >= (3, 11))"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.stdout.strip() == "True", "the README needs a python3 >= 3.11 on PATH"


# -- the tests -------------------------------------------------------------------------


def test_readme_try_it_installs_in_a_fresh_venv_and_its_demo_passes_headless(tmp_path: Path):
    repo = clean_tree(tmp_path / "kznllm-py")
    env = newcomer_env(tmp_path / "home")
    machine_python_is_new_enough(env)
    assert not (repo / ".venv").exists()
    # verbatim, but `kznllm demo` needs a terminal: its headless twin, as the README says
    out = sh(try_it_command() + " --check", repo, env)
    assert "kznllm demo --check: OK" in out, out
    assert (repo / ".venv" / "bin" / "nvim").exists()  # the [nvim] extra's Neovim


DRIVE = r"""
-- run once Neovim has started (during -c, the cursor of the empty buffer is on line 0)
vim.api.nvim_create_autocmd('VimEnter', { once = true, callback = function()
  local out = {}
  local ok, err = pcall(function()
    out.python = require('kznllm.host').find_python()
    vim.api.nvim_create_autocmd('User', { pattern = 'KznllmDone',
      callback = function(ev) out.done = ev.data end })
    vim.cmd('KznFill say hi')
    vim.wait(30000, function() return out.done ~= nil end, 20)
    out.text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\n')
    vim.cmd('checkhealth kznllm')
    out.health = vim.api.nvim_buf_get_lines(0, 0, -1, true)
  end)
  out.error = not ok and tostring(err) or nil
  vim.fn.writefile({ vim.json.encode(out) }, vim.env.KZN_OUT)
  vim.cmd('qa!')
end })
"""


def test_readme_plugin_manager_build_makes_a_plugin_that_finds_its_python_and_answers(
    tmp_path: Path,
):
    hooks = build_hooks()
    assert len(set(hooks.values())) == 1, f"the managers' build commands differ: {hooks}"
    build = hooks["lazy.nvim build"]
    plugin = clean_tree(tmp_path / "kznllm-py")
    env = newcomer_env(tmp_path / "home")
    machine_python_is_new_enough(env)
    # lazy.nvim and packer run it with `$SHELL -c` in the plugin directory (vim-plug too)
    before = {p.name for p in plugin.iterdir()}
    sh(build, plugin, env, shell=env.get("SHELL") or "/bin/sh")
    left = {p.name for p in plugin.iterdir()} - before
    # the user's init.lua: the plugin on 'runtimepath' (what the manager does), then the
    # spec's config function; no `python` given: the plugin must find its own venv
    init = tmp_path / "init.lua"
    init.write_text(f"vim.opt.rtp:append({str(plugin)!r})\n{lazy_config_body()}\n")
    drive = tmp_path / "drive.lua"
    drive.write_text(DRIVE)
    env["KZN_OUT"] = str(tmp_path / "out.json")
    env.pop("KZNLLM_PYTHON", None)
    subprocess.run(
        [nvim_binary(), "--headless", "-n", "-u", str(init), "-c", f"luafile {drive}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    assert not out.get("error"), out["error"]
    assert out["python"] == str(plugin / ".venv" / "bin" / "python")
    assert out["done"]["status"] == "ok", out
    assert "offline demo model" in out["text"]
    health = "\n".join(out["health"])
    assert "ERROR" not in health, health
    assert "OK Python 3." in health and str(plugin / ".venv" / "bin" / "python") in health
    # what the build leaves in the plugin directory is git-ignored, so the plugin
    # manager's next update (a git pull) finds a clean checkout
    patterns = [
        line.strip().rstrip("/")
        for line in (plugin / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in left
    assert all(any(fnmatch.fnmatch(name, pat) for pat in patterns) for name in left), left


def test_host_python_is_the_plugin_venv_when_nothing_is_configured(tmp_path: Path):
    """The quick check of what the slow test above relies on: with no `python` in
    setup(), no $KZNLLM_PYTHON, the host's Python is <plugin>/.venv/bin/python."""
    plugin = tmp_path / "plugin"
    shutil.copytree(REPO / "lua", plugin / "lua")  # the Lua side, without a Python
    (plugin / ".venv" / "bin").mkdir(parents=True)
    (plugin / ".venv" / "bin" / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "KZNLLM_PYTHON"}
    res = subprocess.run(
        [
            nvim_binary(),
            "--headless",
            "--clean",
            "--cmd",
            f"set rtp^={plugin}",
            "-c",
            "lua io.stdout:write(tostring(require('kznllm.host').find_python()))",
            "-c",
            "qa!",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert res.stdout == str(plugin / ".venv" / "bin" / "python"), res.stdout + res.stderr
