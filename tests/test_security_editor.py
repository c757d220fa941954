"""The threat model's attacks (docs/SECURITY.md) against a real Neovim and real loopback
servers: a cloned repository's templates, another user's `.kzn`, a server's bytes."""

from __future__ import annotations

import time
from pathlib import Path

from kznllm_py.history import HistoryStore
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def db_path(nvim: Child) -> Path:
    return Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"


def statuses(nvim: Child) -> list[str]:
    path = db_path(nvim)
    return [r.status for r in HistoryStore(path).list()] if path.exists() else []


def attack_project(tmp_path: Path, name: str = "cloned") -> Path:
    root = tmp_path / name
    tdir = root / ".git"
    tdir.mkdir(parents=True)
    t = root / ".kzn" / "templates" / "openai"
    t.mkdir(parents=True)
    (t / "system.jinja").write_text("You are helpful.\n" + SPIN + "\n")
    return root


def test_a_spinning_project_template_leaves_other_fills_free_and_fails_with_one_message(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    attack = attack_project(tmp_path)
    clean = tmp_path / "clean"
    (clean / ".git").mkdir(parents=True)
    server.queue(Reply(chunks=openai_events(["fine"])))
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"cd {attack}")
    nvim.set_lines(["a"])
    nvim.lua("vim.bo.modified = false")
    started = time.monotonic()
    nvim.nvim.command("KznFill spin")
    nvim.wait_for(lambda: statuses(nvim) == ["running"], what="the first fill to start")
    # meanwhile, in another project and buffer, a fill goes through at once
    nvim.nvim.command(f"cd {clean} | enew")
    nvim.nvim.command("KznFill hello")
    first = nvim.wait_done()[0]
    assert first["status"] == "ok", first
    assert nvim.lines() == ["fine"]
    assert len(server.requests) == 1
    # the spinning one fails on its own, after its 2 s, with one clear message
    done = nvim.wait_done(2)[1]
    took = time.monotonic() - started
    assert done["status"] == "error"
    path = attack / ".kzn" / "templates" / "openai" / "system.jinja"
    assert done["error"] == (
        f"template {path}:2: rendering took longer than 2 s (the time limit of a prompt "
        "template); stopped"
    )
    assert took < 10, took
    nvim.nvim.command("bfirst")
    assert nvim.lines() == ["a"] and not nvim.lua("return vim.bo.modified")
    assert len(server.requests) == 1  # nothing was sent for it


def test_escape_while_a_project_template_renders_cancels_at_once(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    attack = attack_project(tmp_path)
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"cd {attack}")
    nvim.set_lines(["keep", "me"])
    nvim.lua("vim.bo.modified = false")
    nvim.nvim.command("1,2KznFill rewrite")
    nvim.wait_for(lambda: statuses(nvim) == ["running"], what="the fill to start")
    t0 = time.monotonic()
    nvim.feed("<Esc>")
    done = nvim.wait_done()[0]
    elapsed = time.monotonic() - t0
    assert (done["status"], done.get("error")) == ("cancelled", None)
    assert elapsed < 1.0, elapsed
    assert nvim.lines() == ["keep", "me"] and not nvim.lua("return vim.bo.modified")
    assert server.requests == []


def test_a_spinning_debug_template_does_not_freeze_the_host(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    attack = tmp_path / "dbg"
    t = attack / ".kzn" / "templates" / "openai"
    t.mkdir(parents=True)
    (attack / ".git").mkdir()
    (t / "debug.jinja").write_text(SPIN)
    server.queue(Reply(chunks=openai_events(["fine"])))
    nvim.use_server(server.base_url)
    nvim.nvim.command(f"cd {attack}")
    nvim.nvim.command("KznDebug spin")
    nvim.wait_for(lambda: statuses(nvim) == ["running"], what="the debug fill to start")
    nvim.nvim.command(f"cd {tmp_path} | enew")
    nvim.nvim.command("KznFill hello")
    first = nvim.wait_done()[0]
    assert first["status"] == "ok" and nvim.lines() == ["fine"]
    done = nvim.wait_done(2)[1]
    assert done["status"] == "error" and "debug.jinja" in done["error"]
    assert "longer than 2 s" in done["error"]
