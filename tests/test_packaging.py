"""A wheel carries every module of the package (an installed `kznllm` imports them all),
every built-in template (by glob: a new family folder needs no edit of
pyproject.toml), every Lua module the CLI's headless Neovim loads, and nothing of the
repository's own beyond the package."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_carries_every_module_every_template_and_the_lua_it_runs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("kznllm_py-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {
        "kznllm_py/templates/" + p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*.jinja")
    }
    assert templates and templates <= names, sorted(templates - names)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "kznllm_py").rglob("*.py")}
    assert modules <= names, sorted(modules - names)  # a new package folder listed
    assert "kznllm_py/prompt/builtin_presets.toml" in names  # the built-in presets are data
    assert "kznllm_py/lua/kznllm/context/headless.lua" in names  # the CLI's --outline/--scope
    headless = {f"kznllm/context/{name}.lua" for name in ("headless", "scope", "outline")}
    needed = {f"kznllm_py/lua/{path}" for path in lua_closure(headless)}
    assert needed <= names, sorted(needed - names)  # --outline/--scope from an installed CLI
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def lua_closure(paths: set[str]) -> set[str]:
    """`paths` (under lua/) and every kznllm module they require, through any number of
    steps (headless.lua requires the scope and outline sources by name)."""
    found: set[str] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        text = (ROOT / "lua" / path).read_text()
        for name in re.findall(r"require\('(kznllm\.[\w.]+)'\)", text):
            todo.append(name.replace(".", "/") + ".lua")
    return found
