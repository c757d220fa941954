"""The offline demo model in a real Neovim: its model list and its bad-model answer, with
no network and no key (issue 27, item 6)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kznllm_py.nvim import demo as editor_demo
from tests.nvim_child import Child, nvim_binary


def test_kznpreset_bang_lists_the_demo_servers_models_and_fills_with_the_pick(nvim: Child):
    nvim.lua("require('kznllm').state.preset = 'demo'")
    nvim.lua(
        "_G.offered = nil; vim.ui.select = function(items, opts, cb)"
        " _G.offered = items; cb('kznllm-demo-fast') end"
    )
    nvim.nvim.command("KznPreset!")
    offered = nvim.wait_for(lambda: nvim.lua("return _G.offered"), what="the model picker")
    assert offered == ["kznllm-demo", "kznllm-demo-fast"]  # GET /v1/models of the demo
    nvim.wait_for(
        lambda: any("now uses kznllm-demo-fast" in m for m in nvim.messages()),
        what="the choice",
    )
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("1KznFill rename x")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["// kznllm demo model (offline): rename x", "x = 1"]


def test_a_model_the_demo_server_does_not_have_fails_with_its_404(nvim: Child):
    nvim.lua(
        "require('kznllm').setup({ presets = { { id = 'demo', model = 'gpt-9' } } })"
        " require('kznllm').state.preset = 'demo'"
    )
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("KznFill hello")
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert "HTTP 404" in done["error"] and "gpt-9" in done["error"]
    assert nvim.lines() == ["x = 1"]  # nothing written


def test_the_demo_opens_its_python_file_without_probing_for_a_python_provider(tmp_path: Path):
    """Neovim's python ftplugin asks has('python3'), which runs provider/python3.vim's
    probe (about a second here) unless the demo's init says there is none to find."""
    work = editor_demo._workdir(tmp_path)
    log = tmp_path / "startup.log"
    subprocess.run(
        [nvim_binary(), "--headless", "-n", "-u", str(work / "init.lua"), "--startuptime",
         str(log), str(work / "demo.py"), "+qa!"],
        cwd=work, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    sourced = log.read_text()
    assert "ftplugin/python.vim" in sourced  # the file did open as Python
    assert "autoload/provider/python3.vim" not in sourced
