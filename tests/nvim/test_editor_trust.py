"""Trust, the Neovim way, in a real Neovim: a cloned repository's templates are not used
until the user trusts them through Neovim's own trust database (`:KznTrust` goes through
vim.secure.read(), which shows the file and asks); until then the built-in templates
are used and one line says how to trust them; a file changed after it was trusted is
not used again until trusted again. Links out of the project are refused, never
offered for trust, and a 1 GiB template costs nothing."""

from __future__ import annotations

import time
from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events
from tests.trusting import allow_in, trust_with_kzntrust

BUILTIN = "You are a helpful assistant"


def cloned(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "cloned"
    (root / ".git").mkdir(parents=True)
    tdir = root / ".kzn" / "templates" / "openai"
    tdir.mkdir(parents=True)
    system = tdir / "system.jinja"
    system.write_text("PROJECT SYSTEM\n")
    return root, system


def trust_lines(nvim: Child) -> list[str]:
    return [m for m in nvim.messages() if "the project's templates are not used" in m]


def test_untrusted_then_trusted_then_changed(nvim: Child, server: LoopbackServer, tmp_path: Path):
    root, system = cloned(tmp_path)
    nvim.serve(server, *[Reply(chunks=openai_events(["ok"])) for _ in range(5)])
    nvim.nvim.command(f"cd {root}")
    # untrusted: the built-ins, and one line that says how to trust
    assert [d["status"] for d in nvim.fill_in_turn("one", "two")] == ["ok", "ok"]
    assert server.requests[0].system.startswith(BUILTIN)
    assert server.requests[1].system.startswith(BUILTIN)
    [line] = trust_lines(nvim)  # once, not at every fill
    assert line == (
        "kznllm: the project's templates are not used, the built-in ones are (:KznTrust "
        "reviews and trusts them): openai/system.jinja: not trusted in "
        f"{root / '.kzn' / 'templates'}"
    )
    # :KznTrust asks through vim.secure.read() (a prompt needs a UI: one is attached);
    # the user answers [a]llow
    trust_with_kzntrust(nvim)
    trust_db = Path(nvim.lua("return vim.fn.stdpath('state')")) / "trust"
    assert str(system) in trust_db.read_text()  # Neovim's own database
    nvim.nvim.command("KznFill three")
    assert nvim.wait_done(3)[2]["status"] == "ok"
    assert server.requests[2].system == "PROJECT SYSTEM"
    # changed after it was trusted: the built-ins again, and the line says why
    system.write_text("PROJECT SYSTEM, now with an injected prompt\n")
    nvim.nvim.command("KznFill four")
    assert nvim.wait_done(4)[3]["status"] == "ok"
    assert server.requests[3].system.startswith(BUILTIN)
    assert trust_lines(nvim)[-1] == (
        "kznllm: the project's templates are not used, the built-in ones are (:KznTrust "
        "reviews and trusts them): openai/system.jinja: changed since it was trusted in "
        f"{root / '.kzn' / 'templates'}"
    )


def test_links_out_are_refused_and_never_offered_for_trust(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    """The attack of the issue: env.jinja links to the process's environment (every
    provider's key), system.jinja includes it. Even when the user trusts system.jinja,
    the link is refused, nothing of the environment is sent, and other fills run."""
    root, system = cloned(tmp_path)
    (system.parent / "env.jinja").symlink_to("/proc/self/environ")
    system.write_text('sys {% include "openai/env.jinja" %}\n')
    huge = root / ".kzn" / "templates" / "qwen" / "system.jinja"
    huge.parent.mkdir()
    with open(huge, "wb") as f:
        f.truncate(1 << 30)
    nvim.serve(server, *[Reply(chunks=openai_events(["ok"])) for _ in range(2)])
    allow_in(nvim, system)
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.command("KznTrust")
    nvim.wait_for(
        lambda: any("nothing to trust in" in m for m in nvim.messages()), what=":KznTrust's answer"
    )
    warned = [m for m in nvim.messages() if "refused" in m]
    assert "kznllm: openai/env.jinja: a symbolic link (refused)" in warned
    assert any(
        "qwen/system.jinja: larger than 64 KB (1024 MB; refused unread)" in m for m in warned
    )
    started = time.monotonic()
    nvim.nvim.command("KznFill one")
    assert nvim.wait_done(1)[0]["status"] == "ok"
    assert time.monotonic() - started < 10
    assert server.requests[0].system.startswith(BUILTIN)
    assert "PATH=" not in str(server.requests[0].body)
    line = trust_lines(nvim)[-1]
    assert line.startswith("kznllm: the project's templates are not used, the built-in ones")
    assert (
        "(:KznTrust reviews and trusts them): openai/env.jinja: a symbolic link (refused)" in line
    )
    # a qwen preset in the same repository: the huge file is refused unread, fill goes on
    nvim.lua(
        "require('kznllm').setup({ presets = { { id = 'q', provider = 'openai', model = 'm',"
        " base_url = ..., templates = 'qwen', api_key = false } } })"
        " require('kznllm').state.preset = 'q'",
        server.base_url,
    )
    nvim.nvim.command("KznFill two")
    assert nvim.wait_done(2)[1]["status"] == "ok"
    assert any("qwen/system.jinja: larger than 64 KB" in m for m in trust_lines(nvim))


def test_a_file_neovims_trust_cannot_hash_is_named_and_the_others_are_still_offered(
    nvim: Child, tmp_path: Path
):
    """A cloned repository's template holding a NUL byte: Neovim's vim.secure.read()
    throws on it (its sha256() gets a Blob), which ended :KznTrust with a Lua traceback
    ("Press ENTER") before the next file was asked about. Now that file is named, with
    why, and the rules file after it is still offered and trusted."""
    root, system = cloned(tmp_path)
    system.write_bytes(b"PROJECT\x00SYSTEM\n")
    agents = root / "AGENTS.md"
    agents.write_text("Use tabs.\n")
    nvim.nvim.command(f"cd {root}")
    nvim.nvim.ui_attach(80, 24, rgb=True)
    nvim.nvim.command("KznTrust")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "r?", what="the trust prompt")
    nvim.nvim.input("a")
    nvim.wait_for(
        lambda: any("project files trusted" in m for m in nvim.messages()),
        what=":KznTrust's end",
    )
    nvim.nvim.ui_detach()
    said = nvim.messages()
    assert "kznllm: 1 of 2 project files trusted" in said
    assert any(
        m.startswith(f"kznllm: {system} cannot be trusted: Neovim's trust cannot read it")
        for m in said
    ), said
    trust_db = Path(nvim.lua("return vim.fn.stdpath('state')")) / "trust"
    assert str(agents) in trust_db.read_text()
    assert str(system) not in trust_db.read_text()
