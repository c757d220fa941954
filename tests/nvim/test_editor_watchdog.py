"""The editor's watchdog (issue 12, invariant 5): a host that is stopped (SIGSTOP) or
spins never keeps a request, its spinner or <Esc> hostage. The Lua side ends the
request itself within about a second of a cancel (or after `watchdog.silence` seconds
without a word from the host), keeps and marks the partial text, says so in one line,
and the next use starts a fresh host."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kznllm_py.history import HistoryStore
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events
from tests.waiting import wait_until

SPIN = """
import os

_flag = os.environ.get("KZN_TEST_SPIN_FLAG")
if _flag:
    try:
        import kznllm_py.nvim.editor as _editor

        _write = _editor.BufferSink.write

        def write(self, text):
            _write(self, text)
            while os.path.exists(_flag):  # a runaway loop on the host's event loop
                pass

        _editor.BufferSink.write = write
    except Exception:
        pass
"""


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The host process stopped (SIGSTOP) for the block, continued after if still there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def shown(nvim: Child) -> list[str]:
    return [m for m in nvim.messages() if m.startswith("kznllm: ")]


@pytest.fixture
def spin_flag(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SPIN)
    return tmp_path / "spin"


@pytest.fixture
def spinning(tmp_path: Path, spin_flag: Path) -> Iterator[Child]:
    env = {
        "PYTHONPATH": str(tmp_path / "site"),
        "KZN_TEST_SPIN_FLAG": str(spin_flag),
    }
    child = Child(tmp_path / "nv", env=env)
    try:
        yield child
    finally:
        child.close()


def history(nvim: Child) -> list:
    path = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"
    return HistoryStore(path).list() if path.exists() else []


def start_streaming(nvim: Child, server: LoopbackServer) -> int:
    nvim.use_server(server.base_url, placement="cursor")
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "kept ", what="the first token")
    nvim.wait_for(lambda: history(nvim), what="the history entry")
    return nvim.lua("return require('kznllm.host').pid")


def next_use_starts_a_fresh_host(nvim: Child, server: LoopbackServer, old: int) -> None:
    wait_until(lambda: gone(old), 10, "the wedged host to be killed")
    server.wait_client_gone()  # its stream is closed with it
    nvim.set_lines([""])
    nvim.nvim.command("KznFill again")
    done = nvim.wait_done(2)[1]
    assert done["status"] == "ok"
    assert nvim.text() == "fresh"
    assert nvim.lua("return require('kznllm.host').pid") not in (None, old)


def test_escape_with_a_stopped_host_ends_the_request_within_about_a_second(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2),
        Reply(chunks=openai_events(["fresh"])),
    )
    pid = start_streaming(nvim, server)
    with stopped(pid):
        t0 = time.monotonic()
        nvim.feed("<Esc>")
        done = nvim.wait_done(timeout=10)[0]
        elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 3.0, elapsed
    reason = "the Python host did not answer a cancel within 1 s; it was stopped"
    assert (done["status"], done["error"]) == ("error", reason)
    assert nvim.text() == "kept "
    assert nvim.marks() == [" ⚠ kznllm: partial output (error)"]
    assert shown(nvim) == [
        "kznllm: the Python host did not answer a cancel within 1 s: ended 1 request"
        " (partial output kept); the next use starts a new host"
    ]
    assert nvim.lua("return vim.fn.maparg('<Esc>', 'n')") == ""
    next_use_starts_a_fresh_host(nvim, server, pid)
    # the killed host could not finish its entry; the fresh host's is finished
    nvim.wait_for(
        lambda: sorted(e.status for e in history(nvim)) == ["ok", "running"],
        what="the fresh host's entry to finish, the killed one's to stay running",
    )


def test_a_stopped_host_is_found_out_without_a_key_and_a_selection_stays(
    nvim: Child, server: LoopbackServer
):
    server.queue(
        Reply(chunks=openai_events(["x"]), pause_after=1),  # the role, then nothing
        Reply(chunks=openai_events(["fresh"])),
    )
    nvim.lua("require('kznllm').setup({ watchdog = { silence = 1 } })")
    nvim.use_server(server.base_url)
    nvim.set_lines(["keep me", "and me"])
    nvim.lua("vim.bo.modified = false")
    nvim.nvim.command("1KznFill go")
    server.wait_paused()
    # the host has answered a ping by now: its silence is what counts
    nvim.wait_for(lambda: nvim.lua("return require('kznllm.host').alive()"), what="a pong")
    pid = nvim.lua("return require('kznllm.host').pid")
    with stopped(pid):
        t0 = time.monotonic()
        done = nvim.wait_done(timeout=10)[0]
        elapsed = time.monotonic() - t0
    # silence counts from the host's last word (a pong up to a third of a second before
    # the stop): not at once, and within the limit plus a ping period and some load
    assert 0.5 < elapsed < 4.0, elapsed
    assert done["status"] == "error"
    assert re.fullmatch(
        r"the Python host stopped answering \(nothing for \d s\); it was stopped", done["error"]
    )
    assert nvim.lines() == ["keep me", "and me"]  # nothing came: the selection is back
    assert not nvim.lua("return vim.bo.modified")
    assert nvim.marks() == []
    (msg,) = shown(nvim)
    assert re.fullmatch(
        r"kznllm: the Python host stopped answering \(nothing for \d s\): ended 1 request"
        r" \(buffer unchanged\); the next use starts a new host",
        msg,
    )
    next_use_starts_a_fresh_host(nvim, server, pid)


def test_a_spinning_host_is_ended_and_replaced(
    spinning: Child, server: LoopbackServer, spin_flag: Path
):
    nvim = spinning
    server.queue(
        Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2),
        Reply(chunks=openai_events(["fresh"])),
    )
    nvim.lua("require('kznllm').setup({ watchdog = { silence = 1 } })")
    spin_flag.touch()  # the host spins after its first write
    pid = start_streaming(nvim, server)
    t0 = time.monotonic()
    nvim.feed("<Esc>")  # the cancel is never read
    done = nvim.wait_done(timeout=10)[0]
    assert time.monotonic() - t0 < 3.0
    assert done["status"] == "error"
    assert done["error"].startswith("the Python host ")
    assert nvim.text() == "kept "
    assert len(shown(nvim)) == 1
    spin_flag.unlink()
    next_use_starts_a_fresh_host(nvim, server, pid)


def test_the_preset_picker_never_freezes_on_a_stopped_host(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["fresh"])))
    nvim.lua("require('kznllm').setup({ watchdog = { silence = 1 } })")
    assert "demo" in nvim.lua("return vim.fn.getcompletion('KznPreset d', 'cmdline')")
    pid = nvim.lua("return require('kznllm.host').pid")
    with stopped(pid):
        t0 = time.monotonic()
        nvim.nvim.command("KznPreset demo")  # would wait forever on an rpcrequest
        elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 3.0, elapsed
    assert shown(nvim) == [
        "kznllm: the Python host did not answer within 1 s: it was stopped;"
        " the next use starts a new host",
        "kznllm: the Python host did not answer",
    ]
    assert nvim.lua("return require('kznllm').current_preset()") != "demo"
    wait_until(lambda: gone(pid), 10, "the wedged host to be killed")
    nvim.nvim.command("KznPreset demo")  # a fresh host answers
    assert nvim.lua("return require('kznllm').current_preset()") == "demo"
