"""A wheel carries every built-in template folder (pyproject lists them one by one)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_template_folder_is_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packaged = {p.removeprefix("kznllm_py.templates.") for p in config["packages"]}
    folders = {d.name for d in (ROOT / "templates").iterdir() if d.is_dir()}
    assert folders <= packaged, f"add to pyproject packages: {sorted(folders - packaged)}"
    assert config["package-dir"]["kznllm_py.templates"] == "templates"
