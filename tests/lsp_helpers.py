"""Language servers for the editor tests: the real pylsp (python-lsp-server, from the
`dev` extra) or the tests' own hostile one (tests/lsp_fake.py), started by Neovim's
vim.lsp.start for the current buffer, and waited for with a deadline: attached, and
(pylsp) done with its first look at the file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tests.nvim_child import Child

HERE = Path(__file__).resolve().parent

# every publishDiagnostics a server sends, by URI (the sign that it analysed the file)
_SPY = """
if not _G.kzn_published then
  _G.kzn_published = {}
  local orig = vim.lsp.handlers['textDocument/publishDiagnostics']
  vim.lsp.handlers['textDocument/publishDiagnostics'] = function(err, result, ctx)
    if result and result.uri then
      _G.kzn_published[result.uri] = (_G.kzn_published[result.uri] or 0) + 1
    end
    return orig(err, result, ctx)
  end
end
"""


def pylsp() -> str:
    exe = shutil.which("pylsp", path=str(Path(sys.executable).parent))
    if not exe:
        raise RuntimeError("pylsp not found: pip install -e '.[dev]' (python-lsp-server)")
    return exe


def start(nvim: Child, cmd: list[str], root: Path, name: str, settings: dict | None = None) -> int:
    """Start `cmd` as the language server of the current buffer; its client id once it
    is initialized and attached (30 s deadline)."""
    nvim.lua(_SPY)
    client = nvim.lua(
        "local cmd, root, name, settings = ... "
        "return vim.lsp.start({ name = name, cmd = cmd, root_dir = root, "
        "settings = type(settings) == 'table' and settings or nil })",
        cmd,
        str(root),
        name,
        settings,
    )
    nvim.wait_for(
        lambda: nvim.lua(
            "local c = vim.lsp.get_client_by_id(...) return c ~= nil and c.initialized == true"
            " and c.attached_buffers[vim.api.nvim_get_current_buf()] == true",
            client,
        ),
        what=f"{name} to attach",
    )
    return int(client)


def start_pylsp(nvim: Child, root: Path, extra_paths: list[str] | None = None) -> int:
    """pylsp for the current buffer (a file under `root`), waited for until it has
    published the file's diagnostics and answered one definition (jedi warmed up, so
    a test's deadline measures the plugin, not jedi's first import)."""
    settings = {"pylsp": {"plugins": {"jedi": {"extra_paths": extra_paths or []}}}}
    client = start(nvim, [pylsp()], root, "pylsp", settings)
    nvim.wait_for(
        lambda: nvim.lua("return (_G.kzn_published or {})[vim.uri_from_bufnr(0)] ~= nil"),
        what="pylsp's first diagnostics",
    )
    nvim.lua(
        "vim.lsp.buf_request_sync(0, 'textDocument/definition', { textDocument = "
        "{ uri = vim.uri_from_bufnr(0) }, position = { line = 0, character = 0 } }, 20000)"
    )
    return client


def start_fake(
    nvim: Child, mode: str, log: Path, root: Path, target: Path | None = None, line: int = 0
) -> int:
    """The tests' own hostile server (tests/lsp_fake.py) in `mode`, logging to `log`,
    pointing at `target`'s `line` (0-based)."""
    cmd = [sys.executable, str(HERE / "lsp_fake.py"), mode, str(log)]
    return start(nvim, cmd + ([str(target), str(line)] if target else []), root, f"fake-{mode}")


def logged(log: Path, method: str) -> set[int]:
    """The ids of the `method` messages tests/lsp_fake.py logged to `log` (for
    `$/cancelRequest`: the ids of the requests cancelled)."""
    if not log.exists():
        return set()
    msgs = [json.loads(line) for line in log.read_text().splitlines()]
    if method == "$/cancelRequest":
        return {m["params"]["id"] for m in msgs if m["method"] == method}
    return {m["id"] for m in msgs if m["method"] == method}
