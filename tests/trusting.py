"""Trusting project files in tests the way a user does: in a real Neovim through its own
`vim.secure.trust()` (`allow_in`), or, for the CLI, by writing Neovim's trust database
in the format Neovim writes (`allow`: `SHA256 REALPATH` lines in stdpath('state')/trust;
test_trust.py proves the two agree)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def allow(state_dir: Path, *files: Path) -> Path:
    """Trust `files` (their bytes now) in the trust database under `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db = state_dir / "trust"
    lines = db.read_text().splitlines(keepends=True) if db.exists() else []
    for f in files:
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()} {os.path.realpath(f)}\n")
    db.write_text("".join(lines))
    return db


TRUST_LUA = """
local path = ...
local buf = vim.fn.bufadd(path)
vim.fn.bufload(buf)
local ok, msg = vim.secure.trust({ action = 'allow', bufnr = buf })
vim.api.nvim_buf_delete(buf, { force = true })
return { ok, msg }
"""


def allow_in(nvim: Any, *files: Path) -> None:
    """Trust `files` with Neovim's own vim.secure.trust() in the child `nvim`."""
    for f in files:
        ok, msg = nvim.lua(TRUST_LUA, str(f))
        assert ok, msg


def trust_with_kzntrust(nvim: Any, trusted: str = "1 of 1 project files trusted") -> None:
    """`:KznTrust` answered as a user does: vim.secure.read() shows the file and asks (a
    prompt needs a UI: one is attached meanwhile), the user answers [a]llow; returns once
    the plugin says `trusted`."""
    nvim.nvim.ui_attach(80, 24, rgb=True)
    nvim.nvim.command("KznTrust")
    # nvim_get_mode is answered while Neovim waits in the prompt (vim.fn.confirm)
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "r?", what="the trust prompt")
    nvim.nvim.input("a")
    nvim.wait_for(lambda: any(trusted in m for m in nvim.messages()), what="the file trusted")
    nvim.nvim.ui_detach()
