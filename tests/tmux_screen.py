"""A real Neovim on a real terminal, for tests where the screen is the point ("Press
ENTER", a resize): tmux runs it, `screen()` reads what a user sees. Each Screen has its
own tmux server (a socket in the test's temp dir): parallel-safe, and nothing of it
outlives the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.nvim_child import REPO, nvim_binary, xdg_env


def tmux_or_skip() -> str:
    exe = shutil.which("tmux")
    if exe is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return exe


class Screen:
    def __init__(
        self,
        tmp: Path,
        *,
        init: str = "",
        setup: str = "{}",
        width: int = 90,
        height: int = 24,
        files: tuple[str, ...] = (),
    ) -> None:
        self.tmux = tmux_or_skip()
        self.tmp = tmp
        self.socket = str(tmp / "tmux.sock")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "TMUX", "NVIM")) and "proxy" not in k.lower()
        }
        env.update(xdg_env(tmp))
        for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            env.pop(var, None)
        env["TERM"] = "xterm-256color"
        self.env = env
        init_lua = tmp / "init.lua"
        init_lua.write_text(
            "\n".join(
                [
                    "vim.g.mapleader = ' '",
                    "vim.g.loaded_python3_provider = 0",
                    f"vim.opt.rtp:prepend({str(REPO)!r})",
                    "vim.o.swapfile = false",
                    "vim.o.shortmess = vim.o.shortmess .. 'I'",
                    init,
                    f"require('kznllm').setup(vim.tbl_extend('force', {{ python = "
                    f"{sys.executable!r} }}, {setup}))",
                ]
            )
            + "\n"
        )
        cmd = [nvim_binary(), "-n", "-u", str(init_lua), *files]
        self._tmux(
            "new-session", "-d", "-x", str(width), "-y", str(height), "-s", "kzn",
            subprocess.list2cmdline(cmd),
        )  # fmt: skip
        self._tmux("set-option", "-g", "status", "off")

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(
            [self.tmux, "-S", self.socket, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.tmp,
            timeout=30,
        )
        return res.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "kzn")

    def keys(self, *keys: str) -> None:
        """tmux key names (`Enter`, `Escape`, `C-w`) or literal text."""
        self._tmux("send-keys", "-t", "kzn", *keys)

    def text(self, text: str) -> None:
        self._tmux("send-keys", "-t", "kzn", "-l", text)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "kzn", "-x", str(width), "-y", str(height))

    def wait_for(
        self, pred: Callable[[str], bool], timeout: float = 30.0, what: str = "the screen"
    ) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if pred(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            # no sleep: each capture-pane is a round trip to the tmux server (a few ms)

    def close(self) -> None:
        self._tmux("kill-server")
