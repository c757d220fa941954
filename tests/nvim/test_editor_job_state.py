"""One job, one state, in a real Neovim: a job moves waiting -> streaming -> done (or
stopping -> done), each transition named, and at log level 'debug' the host's log has
them; the fields a job had as flags are gone."""

from __future__ import annotations

from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def log_lines(nvim: Child) -> list[str]:
    path = Path(nvim.lua("return vim.fn.stdpath('log')")) / "kznllm.log"
    return path.read_text().splitlines() if path.exists() else []


def transitions(nvim: Child, job: int) -> list[str]:
    """Job `job`'s state changes as the host's log has them, once it logged the end."""
    mine = f"editor: job {job}:"
    nvim.wait_for(
        lambda: [x for x in log_lines(nvim) if mine in x and "-> done" in x],
        what=f"job {job}'s end in the log",
    )
    return [x.split("editor: ", 1)[1] for x in log_lines(nvim) if mine in x]


def test_a_fill_moves_through_named_states_logged_at_debug(nvim: Child, server: LoopbackServer):
    server.queue(
        Reply(chunks=openai_events(["one ", "two"])),
        Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2),
    )
    nvim.use_server(server.base_url, placement="cursor")
    nvim.lua("require('kznllm').setup({ log = { level = 'debug' } })")
    nvim.nvim.command("KznFill go")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert transitions(nvim, 1) == [
        "job 1: waiting -> streaming (first text)",
        "job 1: streaming -> done (ended ok)",
    ]
    # a cancel: streaming -> stopping -> done
    nvim.set_lines([""])
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "kept ", what="the first token")
    nvim.nvim.command("KznCancel")
    assert nvim.wait_done(2)[1]["status"] == "cancelled"
    assert transitions(nvim, 2) == [
        "job 2: waiting -> streaming (first text)",
        "job 2: streaming -> stopping (cancelled)",
        "job 2: stopping -> done (ended cancelled)",
    ]
    server.resume()


def test_a_job_has_one_state_field_and_no_life_flags(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "kept ", what="the first token")
    fields = nvim.lua(
        "local _, j = next(require('kznllm.job').jobs)"
        " local out = {} for k, v in pairs(j) do if type(v) ~= 'function' and type(v) ~= 'userdata'"
        " then out[k] = type(v) == 'table' and 'table' or v end end return out"
    )
    assert fields["state"] == "streaming"
    assert not {"done", "stopping", "written", "undone", "deleted"} & set(fields)
    nvim.nvim.command("KznCancel")
    nvim.wait_done()
    server.resume()
