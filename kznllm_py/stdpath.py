"""Neovim's standard paths, for the command line (which runs outside Neovim)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def nvim_stdpath(kind: str, env: Mapping[str, str] | None = None) -> Path:
    """Neovim's stdpath('data') or stdpath('config') computed outside Neovim, as Neovim
    does: XDG_DATA_HOME / XDG_CONFIG_HOME (LOCALAPPDATA on Windows) and NVIM_APPNAME."""
    env = os.environ if env is None else env
    app = env.get("NVIM_APPNAME") or "nvim"
    if os.name == "nt":
        base = env.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / (f"{app}-data" if kind in ("data", "state") else app)
    if kind == "data":
        return Path(env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / app
    if kind == "state":
        return Path(env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")) / app
    return Path(env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / app
