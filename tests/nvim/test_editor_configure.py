"""Configure once: setup()'s options go to the host when it starts and at each setup()
while it runs, are validated there once, and a fill carries only what is new."""

from __future__ import annotations

from pathlib import Path

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events


def ten_presets(base_url: str) -> list[dict[str, object]]:
    return [
        {
            "id": f"p{i}",
            "description": f"preset number {i}",
            "provider": "openai",
            "model": f"model-{i}",
            "base_url": base_url,
            "api_key": False,
            "params": {"temperature": 0.2},
        }
        for i in range(10)
    ]


def setup(nvim: Child, presets: list[dict[str, object]], current: str, **opts: object) -> None:
    nvim.lua(
        "local o, id = ... ; require('kznllm').setup(o) require('kznllm').state.preset = id",
        {"presets": presets, **opts},
        current,
    )


def fill(nvim: Child, server: LoopbackServer, n: int, text: str = "ok") -> dict[str, object]:
    server.queue(Reply(chunks=openai_events([text])))
    nvim.nvim.command("KznFill q")
    return nvim.wait_done(n)[n - 1]


def test_the_settings_go_once_per_host_and_a_fill_carries_only_what_is_new(
    nvim: Child, server: LoopbackServer
):
    nvim.spy_sent()
    setup(nvim, ten_presets(server.base_url), "p3")
    for n in (1, 2, 3):
        assert fill(nvim, server, n)["status"] == "ok"
    assert [op for op, _, _ in nvim.sent() if op in ("configure", "fill")] == [
        "configure",
        "fill",
        "fill",
        "fill",
    ]
    [configure] = nvim.sent("configure")
    assert "presets" in configure[2] and "timeouts" in configure[2]
    for _, size, keys in nvim.sent("fill"):
        assert not {"presets", "history", "timeouts", "data_dir", "models"} & set(keys)
        assert size < 600  # the buffer's context, the query, the preset id: no presets
    assert configure[1] > 5 * max(size for _, size, _ in nvim.sent("fill"))
    # the preset in use travels per call: every request went to p3's model
    assert [r.body["model"] for r in server.requests] == ["model-3"] * 3


def test_setup_again_sends_the_new_settings_to_the_running_host(
    nvim: Child, server: LoopbackServer
):
    nvim.spy_sent()
    presets = ten_presets(server.base_url)
    setup(nvim, presets, "p1")
    assert fill(nvim, server, 1)["status"] == "ok"
    presets[1]["model"] = "renamed-model"
    setup(nvim, presets, "p1")
    assert len(nvim.sent("configure")) == 2
    assert fill(nvim, server, 2)["status"] == "ok"
    assert [r.body["model"] for r in server.requests] == ["model-1", "renamed-model"]
    # :KznPreset switching works with the settings the host keeps
    nvim.nvim.command("KznPreset p7")
    assert fill(nvim, server, 3)["status"] == "ok"
    assert server.requests[-1].body["model"] == "model-7"
    assert len(nvim.sent("configure")) == 2


def test_a_restarted_host_gets_the_settings_first(nvim: Child, server: LoopbackServer):
    nvim.spy_sent()
    setup(nvim, ten_presets(server.base_url), "p2")
    assert fill(nvim, server, 1)["status"] == "ok"
    chan = nvim.lua("return require('kznllm.host').chan")
    nvim.lua("vim.fn.jobstop(...)", chan)
    nvim.wait_for(lambda: nvim.lua("return require('kznllm.host').chan") is None, what="exit")
    assert fill(nvim, server, 2)["status"] == "ok"
    ops = [op for op, _, _ in nvim.sent() if op in ("configure", "warmup", "fill")]
    assert ops == ["configure", "warmup", "fill", "configure", "warmup", "fill"]
    assert [r.body["model"] for r in server.requests] == ["model-2", "model-2"]


def test_a_bad_preset_is_said_once_and_left_out_while_the_others_work(
    nvim: Child, server: LoopbackServer
):
    toml = Path(nvim.lua("return vim.fn.stdpath('config')")) / "kznllm" / "presets.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text('[[presets]]\nid = "filebad"\nprovider = "openai"\n')
    # count the reports: the check at setup() and the host's, both said through one place
    nvim.lua(
        "local host = require('kznllm.host') local orig = host.report _G.reports = 0"
        " host.report = function(...) _G.reports = _G.reports + 1 return orig(...) end"
    )
    good = ten_presets(server.base_url)[:2]
    setup(nvim, [{"id": "bad1", "provider": "nope", "model": "m"}, *good], "p1")
    assert fill(nvim, server, 1)["status"] == "ok"
    assert fill(nvim, server, 2)["status"] == "ok"
    nvim.wait_for(lambda: nvim.lua("return _G.reports") >= 2, what="both checks")
    bad = [m for m in nvim.messages() if "bad1" in m]
    assert len(bad) == 1
    assert "unknown provider 'nope'" in bad[0]
    filebad = [m for m in nvim.messages() if "filebad" in m]
    assert len(filebad) == 1 and "missing model" in filebad[0] and str(toml) in filebad[0]
    # every valid preset works, the built-in demo too
    nvim.nvim.command("KznPreset demo")
    assert fill(nvim, server, 3)["status"] == "ok"
    assert len([m for m in nvim.messages() if "bad1" in m and "left out" not in m]) == 1


def test_kznpreset_shows_what_was_left_out_and_why(nvim: Child, server: LoopbackServer):
    setup(nvim, [{"id": "bad1", "provider": "nope", "model": "m"}], "demo")
    nvim.lua(
        "_G.prompt = nil vim.ui.select = function(items, opts, cb) _G.prompt = opts.prompt"
        " _G.ids = vim.tbl_map(function(p) return p.id end, items) end"
    )
    nvim.nvim.command("KznPreset")
    prompt = nvim.wait_for(lambda: nvim.lua("return _G.prompt"), what="the picker")
    assert prompt == "kznllm preset (1 left out, see :KznLog)"
    assert "bad1" not in nvim.lua("return _G.ids") and "demo" in nvim.lua("return _G.ids")
    left_out = [m for m in nvim.messages() if m.startswith("kznllm: left out: ")]
    assert len(left_out) == 1 and "preset 'bad1'" in left_out[0] and "nope" in left_out[0]
    nvim.nvim.command("KznPreset bad1")
    why = nvim.wait_for(
        lambda: [m for m in nvim.messages() if "preset bad1 was left out" in m], what="why"
    )
    assert "unknown provider 'nope'" in why[0]


def test_a_fill_keeps_its_settings_when_setup_runs_while_it_streams(
    nvim: Child, server: LoopbackServer
):
    presets = ten_presets(server.base_url)[:1]
    setup(nvim, presets, "p0")
    nvim.set_lines([""])
    server.queue(
        Reply(chunks=openai_events(["0123456789", "abcdefghij", "KLMNOPQRST"]), pause_after=2)
    )
    # the fill and a setup() in the same tick: the setup reaches the host right behind
    # the fill, before its task has run
    nvim.lua(
        "vim.cmd('KznFill q') require('kznllm').setup({ presets = ..., max_response_bytes = 8 })",
        presets,
    )
    server.wait_requests(1, timeout=30)
    nvim.wait_for(lambda: "0123456789" in nvim.text(), what="the first tokens")
    nvim.lua("require('kznllm').setup({ presets = ..., max_response_bytes = 4 })", presets)
    server.resume()
    first = nvim.wait_done(1)[0]
    assert first["status"] == "ok"
    assert nvim.text() == "0123456789abcdefghijKLMNOPQRST"
    # the next fill runs with the last setup()'s
    nvim.set_lines([""])
    second = fill(nvim, server, 2, "0123456789")
    assert second["status"] == "error"
    assert "4 bytes cap" in str(second["error"])
