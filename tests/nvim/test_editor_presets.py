"""Presets, templates and project context as a user meets them in a real Neovim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, free_port_refusing, json_reply, openai_events
from tests.trusting import allow_in


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / ".kzn").mkdir(parents=True)
    (root / "src").mkdir()
    (root / ".git").mkdir()  # the project root: its .kzn is found from src/
    (root / ".kzn" / "notes.md").write_text("Use tabs. The API is frozen.\n")
    (root / ".kzn" / "big.txt").write_text("x" * (300 * 1024))
    return root


def test_kzn_project_files_go_into_the_request_and_the_debug_view(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    root = project(tmp_path)
    nvim.nvim.command(f"cd {root / 'src'}")
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.nvim.command("KznDebug what now?")
    assert nvim.wait_done()[0]["status"] == "ok"
    system = server.requests[0].body["messages"][0]
    assert system["role"] == "system"
    assert "--- .kzn/notes.md ---\nUse tabs. The API is frozen." in system["content"]
    assert "xxxx" not in system["content"]
    debug = "\n".join(nvim.nvim.current.buffer[:])
    assert f"- project folder: `{root / '.kzn'}`" in debug  # absolute: whose folder it is
    assert "- included `.kzn/notes.md`" in debug
    assert "- skipped `.kzn/big.txt`: larger than 256 KiB (300 KiB)" in debug
    assert "estimated prompt tokens" in debug
    assert any(
        "1 .kzn file(s) left out (:KznDebug shows which and why)" in m for m in nvim.messages()
    )


def test_a_project_template_overrides_the_builtin_and_runs_sandboxed(
    nvim: Child, server: LoopbackServer, tmp_path: Path
):
    root = project(tmp_path)
    tdir = root / ".kzn" / "templates" / "openai"
    tdir.mkdir(parents=True)
    (tdir / "user.jinja").write_text("PROJECT TEMPLATE: {{ user_query | upper }}\n")
    allow_in(nvim, tdir / "user.jinja")
    nvim.nvim.command(f"cd {root}")
    nvim.serve(server, Reply(chunks=openai_events(["ok"])))
    nvim.nvim.command("KznFill hello")
    nvim.wait_done()
    assert server.requests[0].body["messages"][-1]["content"] == "PROJECT TEMPLATE: HELLO"
    # an escape attempt is refused with the template's path, and nothing is sent
    (tdir / "user.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    allow_in(nvim, tdir / "user.jinja")
    nvim.nvim.command("KznFill again")
    done = nvim.wait_done(2)[1]
    assert done["status"] == "error"
    assert "user.jinja" in done["error"] and "unsafe" in done["error"].lower()
    assert len(server.requests) == 1


def test_invalid_user_presets_are_reported_at_setup_with_field_and_reason(nvim: Child):
    assert nvim.lua("return require('kznllm.host').chan") is None
    nvim.lua(
        "require('kznllm').setup({ presets = {"
        " { id = 'bad1', provider = 'nope', model = 'm' },"
        " { id = 'bad2', provider = 'openai' },"
        " { id = 'ok', provider = 'openai', model = 'm', base_url = 'http://127.0.0.1:1/v1' } } })"
    )
    # one message for both (two would ask for ENTER at startup), a line each
    [msg] = nvim.wait_for(
        lambda: [m for m in nvim.messages() if "bad1" in m and "bad2" in m],
        what="the preset errors",
    )
    lines = msg.split("\n")
    assert any("bad1" in m and "unknown provider 'nope'" in m for m in lines)
    assert any("bad2" in m and "missing model" in m for m in lines)
    # the check did not start the plugin's host
    assert nvim.lua("return require('kznllm.host').chan") is None


def test_preset_picker_lists_presets_marks_the_current_one_and_remembers_the_choice(nvim: Child):
    nvim.lua(
        "_G.picked = nil; vim.ui.select = function(items, opts, cb)"
        " _G.picked = vim.tbl_map(opts.format_item, items);"
        " for _, it in ipairs(items) do if it.id == 'claude-haiku' then cb(it) end end end"
    )
    nvim.feed(" m")
    items = nvim.wait_for(lambda: nvim.lua("return _G.picked"), what="the picker")
    assert any(i.startswith("● demo") for i in items)
    assert any("claude-haiku" in i and "Haiku" in i for i in items)
    # which presets lack their key shows in the list, and switching to one says so
    [haiku] = [i for i in items if "claude-haiku" in i]
    assert haiku.endswith("(no $ANTHROPIC_API_KEY)")
    assert "(no $" not in next(i for i in items if i.startswith("● demo"))
    assert nvim.lua("return require('kznllm').current_preset()") == "claude-haiku"
    nvim.wait_for(  # the fix first, once the picker is gone from the screen
        lambda: any(
            m.startswith("kznllm: set ANTHROPIC_API_KEY for preset claude-haiku")
            for m in nvim.messages()
        ),
        what="the missing key",
    )
    saved = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "preset"
    assert saved.read_text().strip() == "claude-haiku"


def test_default_demo_preset_shows_its_notice_once(nvim: Child):
    nvim.set_lines([""])
    nvim.nvim.command("KznFill hi")
    assert nvim.wait_done()[0]["status"] == "ok"
    nvim.nvim.command("KznFill again")
    nvim.wait_done(2)
    notices = [m for m in nvim.messages() if "offline demo model" in m and "OPENAI_API_KEY" in m]
    assert len(notices) == 1


def test_preset_picker_with_real_keys_in_the_builtin_select(nvim: Child):
    # the built-in vim.ui.select is an inputlist(): answered by typing a number
    ids = [p["id"] for p in nvim.lua("return require('kznllm').presets().presets")]
    nvim.nvim.input(" m")
    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="the picker prompt")
    nvim.nvim.input(f"{ids.index('o4-mini') + 1}<CR>")
    nvim.wait_for(
        lambda: nvim.lua("return require('kznllm').current_preset()") == "o4-mini",
        what="the choice",
    )


def test_kznpreset_completes_preset_ids_on_the_command_line(nvim: Child):
    nvim.nvim.input(":KznPreset claude-h<Tab>")
    line = nvim.wait_for(
        lambda: nvim.nvim.call("getcmdline") == "KznPreset claude-haiku" and "done",
        what="completion",
    )
    assert line
    nvim.feed("<CR>")
    assert nvim.lua("return require('kznllm').current_preset()") == "claude-haiku"


def test_checkhealth_lists_the_users_presets_and_probes_their_local_servers(
    nvim: Child, server: LoopbackServer
):
    dead = free_port_refusing()
    nvim.lua(
        "require('kznllm').setup({ presets = ... })",
        [
            {
                "id": "up",
                "provider": "openai",
                "model": "m",
                "base_url": server.base_url,
                "api_key": False,
            },
            {
                "id": "down",
                "provider": "openai",
                "model": "m",
                "base_url": f"http://127.0.0.1:{dead}/v1",
                "api_key": False,
            },
            {
                "id": "keyless",
                "provider": "openai",
                "model": "m",
                "base_url": "https://api.example.invalid/v1",
                "api_key": "KZN_HEALTH_MISSING",
            },
        ],
    )
    nvim.nvim.command("checkhealth kznllm")
    text = "\n".join(nvim.nvim.current.buffer[:])
    port = server.base_url.split(":")[2].split("/")[0]
    assert f"up (yours): no key needed · 127.0.0.1:{port} answers" in text
    assert f"down (yours): nothing answers at 127.0.0.1:{dead}" in text
    assert "keyless (yours): key missing ($KZN_HEALTH_MISSING)" in text
    assert "ERROR" not in text


def test_checkhealth_reports_python_packages_presets_and_keys(nvim: Child):
    nvim.lua("vim.env.OPENAI_API_KEY = 'sk-health-canary-123'")
    nvim.nvim.command("checkhealth kznllm")
    text = "\n".join(nvim.nvim.current.buffer[:])
    for want in ("Neovim 0.", "pynvim", "httpx", "jinja2", "orjson", "user presets valid"):
        assert want in text, want
    assert "gpt-4o-mini [current]: key set ($OPENAI_API_KEY)" in text
    assert "claude-sonnet: key missing ($ANTHROPIC_API_KEY)" in text
    assert "sk-health-canary" not in text
    assert "ERROR" not in text


def test_status_shows_the_preset_and_a_spinner_with_seconds_while_running(
    nvim: Child, server: LoopbackServer
):
    nvim.serve(server, Reply(chunks=openai_events(["a", "b"]), pause_after=2))
    assert nvim.lua("return require('kznllm').status()") == "kznllm test"
    nvim.nvim.command("KznFill go")
    server.wait_paused()
    running = nvim.lua("return require('kznllm').status()")
    assert running.startswith("kznllm test ") and running.endswith("s")
    server.resume()
    nvim.wait_done()
    assert nvim.lua("return require('kznllm').status()") == "kznllm test"


# a listing per provider whose server lists (OpenAI-compatible, and Mistral's own, which
# leaves out the models that do not chat)
LISTINGS = {
    "openai": {"object": "list", "data": [{"id": "qwen-7b"}, {"id": "llama-1b"}]},
    "mistral": {
        "object": "list",
        "data": [
            {"id": "qwen-7b", "capabilities": {"completion_chat": True}},
            {"id": "mistral-embed", "capabilities": {"completion_chat": False}},
            {"id": "llama-1b", "capabilities": {"completion_chat": True}},
        ],
    },
}


@pytest.mark.parametrize("provider", sorted(LISTINGS))
def test_kznpreset_bang_picks_the_model_from_the_servers_list_and_fills_with_it(
    nvim: Child, server: LoopbackServer, provider: str
):
    server.queue(json_reply(200, LISTINGS[provider]), Reply(chunks=openai_events(["ok"])))
    nvim.use_server(server.base_url, provider)
    nvim.lua(
        "_G.offered = nil; vim.ui.select = function(items, opts, cb)"
        " _G.offered = { prompt = opts.prompt, items = vim.tbl_map(opts.format_item, items) }"
        " cb('qwen-7b') end"
    )
    nvim.nvim.command("KznPreset!")  # the preset in use: `test`
    offered = nvim.wait_for(lambda: nvim.lua("return _G.offered"), what="the model picker")
    assert offered["prompt"] == "kznllm model for test"
    assert offered["items"] == ["  llama-1b", "  qwen-7b"]
    nvim.wait_for(
        lambda: any("preset test now uses qwen-7b" in m for m in nvim.messages()),
        what="the choice",
    )
    assert (server.requests[0].method, server.requests[0].path) == ("GET", "/v1/models")
    nvim.nvim.command("KznFill hello")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert server.requests[1].body["model"] == "qwen-7b"
    saved = Path(nvim.lua("return vim.fn.stdpath('data')")) / "kznllm" / "models.json"
    assert json.loads(saved.read_text()) == {"test": "qwen-7b"}  # remembered across restarts


def test_kznpreset_bang_offers_no_model_name_a_hostile_server_forged(
    nvim: Child, server: LoopbackServer
):
    """A server's list is hostile: a name with a line break and a CR forged lines in
    the picker ("two<LF>lines<CR>cr" showed as "two" and "crnes"), one of 5,000
    characters filled screens of "-- More --", an ESC sequence went to the screen.
    Only printable names of at most 256 characters are offered, at most 5,000 of them."""
    forged = ["two\nlines\rcr", "x\x1b]0;T\x07", "z" * 5000, "rtl\u202eevil"]
    body = {"object": "list", "data": [{"id": n} for n in [*forged, "qwen-7b", "m" * 256]]}
    server.queue(json_reply(200, body))
    nvim.use_server(server.base_url)
    nvim.lua(
        "_G.offered = nil; vim.ui.select = function(items, opts, cb)"
        " _G.offered = vim.tbl_map(opts.format_item, items) end"
    )
    nvim.nvim.command("KznPreset!")
    offered = nvim.wait_for(lambda: nvim.lua("return _G.offered"), what="the model picker")
    assert offered == ["  " + "m" * 256, "  qwen-7b"]


def test_kznpreset_bang_says_why_when_the_list_cannot_be_had(nvim: Child, server: LoopbackServer):
    nvim.serve(server, json_reply(401, {"error": {"message": "no such key"}}))
    nvim.nvim.command("KznPreset!")
    nvim.wait_for(
        # what failed, its status and the fix first: the provider's words may be cut
        lambda: any(
            "openai error (HTTP 401): preset 'test' sends no key" in m for m in nvim.messages()
        ),
        what="the error",
    )
    nvim.nvim.command("KznPreset! azure")  # Azure lists deployments, not models
    nvim.wait_for(
        lambda: any("azure (azure) does not list its models" in m for m in nvim.messages()),
        what="the warning",
    )


def test_kznpreset_bang_does_not_open_the_picker_on_keys_typed_while_the_list_came(
    nvim: Child, server: LoopbackServer
):
    # the list arrives after the user went on typing: a picker opening then would take
    # their keys; it says the list is in, and the next :KznPreset! offers it at once
    server.queue(
        Reply(
            headers={"Content-Type": "application/json"},
            chunks=[json.dumps(LISTINGS["openai"]).encode()],
            pause_after=0,
        )
    )
    nvim.use_server(server.base_url)
    nvim.lua(
        "_G.offered = 0; vim.ui.select = function(items, opts, cb) _G.offered = _G.offered + 1"
        " _G.items = items end"
    )
    nvim.set_lines(["one", "two"])
    nvim.nvim.command("KznPreset!")
    server.wait_paused()
    nvim.feed("ix<Esc>")  # typed while the list is on its way
    nvim.wait_for(lambda: nvim.lines()[0] == "xone", what="the typed keys")
    server.resume()
    nvim.wait_for(
        lambda: any(
            "2 models of test listed (not opened while you typed)" in m for m in nvim.messages()
        ),
        what="the word that the list is in",
    )
    assert nvim.lua("return _G.offered") == 0 and nvim.lines() == ["xone", "two"]
    nvim.nvim.command("KznPreset!")
    assert nvim.lua("return _G.offered") == 1
    assert nvim.lua("return _G.items") == ["llama-1b", "qwen-7b"]  # as the server's list
    assert len(server.requests) == 1  # offered from what came, not fetched again
