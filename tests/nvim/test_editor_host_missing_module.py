"""A Python without the plugin's dependencies (the build step never ran, or `python`
points at another interpreter): the host cannot start, and the line that says so leads
with the fix, naming the missing module, instead of a traceback cut at 90 columns. A real Neovim, a
real interpreter started with `-S` (no site-packages: `import pynvim` fails as it does
where pynvim was never installed)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.nvim_child import Child


def test_a_python_without_pynvim_is_named_with_the_fix(tmp_path: Path):
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    nvim = Child(tmp_path, setup={"python": str(bare)})
    try:
        nvim.nvim.command("KznFill hi")
        nvim.wait_for(
            lambda: any("exited" in m or "no module" in m for m in nvim.messages()),
            what="the host's failure said",
        )
        [line] = [m for m in nvim.messages() if "no module" in m or "exited with" in m]
        assert line.startswith(
            f"kznllm: {bare} has no module 'pynvim': run the build step in the plugin's "
            "folder (python3 -m venv .venv && .venv/bin/pip install .), or set "
            "setup({ python = ... }); :checkhealth kznllm"
        ), line
        assert "Traceback" not in line.split("\n")[0]
        # the host's stderr as it wrote it, lines whole (not cut where its chunks were)
        assert "\nModuleNotFoundError: No module named 'pynvim'" in line, line
        assert nvim.wait_done()[0]["status"] == "error"
    finally:
        nvim.close()
