"""The host up before it is needed: setup() arms one start for the first time Neovim is
idle (CursorHold), the first fill then finds it running and warm; with prestart = false
nothing starts until the first use; an idle host spends no CPU."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def host_started(child: Child) -> bool:
    return child.lua("return require('kznllm.host').chan") is not None


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def quiet(pid: int, window: float = 0.5, timeout: float = 20.0) -> None:
    """Until the process spent no CPU for `window` seconds (measured spans: the
    condition is the CPU time, read at the span's ends), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_ticks(pid)
        time.sleep(window)
        if cpu_ticks(pid) == before:
            return
    raise AssertionError(f"pid {pid} kept spending CPU for {timeout} s")


def test_the_host_starts_when_neovim_is_first_idle_and_the_first_fill_finds_it(tmp_path):
    child = Child(tmp_path, setup={"prestart": True})
    try:
        assert not host_started(child)  # setup() starts nothing
        # the first time Neovim is idle: its CursorHold, fired here as Neovim fires it
        # (an embedded Neovim's own idle timer did not fire within 10 s in two of five
        # full-suite runs, with or without keys fed again)
        child.nvim.command("doautocmd CursorHold")
        child.wait_for(lambda: host_started(child), timeout=10, what="the host started")
        child.nvim.command("doautocmd CursorHold")  # once: a second idle starts nothing
        pid = child.lua("return require('kznllm.host').pid")
        # the host answered its configure (its first word), warms, then spends nothing
        child.wait_for(lambda: child.lua("return require('kznllm.host').alive()"), what="alive")
        quiet(pid)  # its warm-up (imports, the HTTP client, templates) done
        # what the warm-up made is kept out of the collector's full passes (gc.freeze:
        # each walked it all, 25-60 ms on the host's loop every few fills)
        log = Path(child.lua("return vim.fn.stdpath('log')")) / "kznllm.log"
        frozen = re.search(r"host warm: (\d+) objects", log.read_text())
        assert frozen is not None and int(frozen[1]) > 10_000
        before, t0 = cpu_ticks(pid), time.monotonic()
        time.sleep(3)  # not a wait for a condition: the span the CPU is measured over
        spent = cpu_ticks(pid) - before
        assert spent <= 2, f"an idle host spent {spent} ticks in {time.monotonic() - t0:.1f} s"
        with LoopbackServer(default=Reply(chunks=openai_events(["warm"]))) as server:
            child.use_server(server.base_url)
            child.nvim.command("KznFill q")
            [done] = child.wait_done()
        assert done["status"] == "ok"
        assert child.lua("return require('kznllm.host').pid") == pid  # the same host
    finally:
        child.close()


def test_with_prestart_off_nothing_starts_until_the_first_use(tmp_path):
    child = Child(tmp_path, setup={"prestart": False})
    try:
        child.lua(
            "vim.o.updatetime = 20 _G.held = 0 vim.api.nvim_create_autocmd('CursorHold',"
            " { callback = function() _G.held = _G.held + 1 end })"
        )
        child.feed("l")
        child.wait_for(lambda: child.lua("return _G.held") > 0, what="CursorHold")
        assert not host_started(child)
    finally:
        child.close()


def test_with_prestart_bad_presets_are_reported_by_the_host_at_idle_with_no_check_process(
    tmp_path,
):
    """setup() with presets and prestart on runs no Python process of its own to check
    them (the host, started when Neovim is first idle, checks them anyway): the problems
    come from the host, once, with field and reason."""
    child = Child(tmp_path, setup={"prestart": True})
    try:
        child.lua(
            "_G.spawned = {} local system = vim.system"
            " vim.system = function(cmd, ...) table.insert(_G.spawned, table.concat(cmd, ' '))"
            " return system(cmd, ...) end"
        )
        child.lua(
            "require('kznllm').setup({ prestart = true, presets = {"
            " { id = 'bad1', provider = 'nope', model = 'm' } } })"
        )
        child.nvim.command("doautocmd CursorHold")
        [msg] = child.wait_for(
            lambda: [m for m in child.messages() if "bad1" in m], what="the preset's problem"
        )
        assert "unknown provider 'nope'" in msg
        assert host_started(child)
        assert not [c for c in child.lua("return _G.spawned") if "presets" in c]
    finally:
        child.close()
