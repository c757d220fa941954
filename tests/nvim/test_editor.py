"""The plugin in a real embedded Neovim, against real loopback servers: keys, selections,
extmarks and undo checked in the editor (invariants 1-5 of the design notes)."""

from __future__ import annotations

import time

import pytest

from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, anthropic_events, json_reply, openai_events

TEXT = ["Hel", "lo, ", "wörld ✓ 🎉\n", "second line\n", "  third"]
ANSWER = "".join(TEXT)


def start_fill(nvim: Child, query: str = "q") -> None:
    nvim.nvim.command(f"KznFill {query}")


def modified(nvim: Child) -> bool:
    return bool(nvim.lua("return vim.bo.modified"))


# -- yap mode ------------------------------------------------------------------------------


def test_yap_streams_the_answer_after_the_cursor_byte_exact(nvim: Child, server: LoopbackServer):
    server.queue(Reply(chunks=openai_events(TEXT)))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(["abc", "def"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 1})")
    start_fill(nvim)
    done = nvim.wait_done()
    assert done[0]["status"] == "ok"
    assert nvim.text() == "ab" + ANSWER + "c\ndef"


def test_one_undo_removes_the_whole_generation_and_nothing_before_it(nvim: Child, server):
    chunks = openai_events([f"t{i} " for i in range(40)])
    nvim.serve(server, Reply(chunks=chunks, gap=0.002))
    nvim.feed("ifirst<Esc>")
    nvim.feed("osecond<Esc>")
    start_fill(nvim)
    nvim.wait_done()
    assert nvim.lines()[:2] == ["first", "second"]
    assert nvim.lines()[2].startswith("t0 t1 ")  # on a new line below the cursor's
    assert nvim.lua("return require('kznllm.job').running()") == 0
    nvim.feed("u")
    assert nvim.lines() == ["first", "second"]
    nvim.feed("u")
    assert nvim.lines() == ["first"]


def test_start_and_done_autocmds_carry_id_buffer_status_and_usage(nvim: Child, server):
    server.queue(
        Reply(
            chunks=openai_events(
                ["x"], usage={"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}
            )
        )
    )
    nvim.use_server(server.base_url)
    start_fill(nvim)
    done = nvim.wait_done()[0]
    start = nvim.events("KznllmStart")[0][1]
    assert start["id"] == done["id"] and start["bufnr"] == done["bufnr"] == 1
    assert start["mode"] == "yap"
    assert done["status"] == "ok"
    assert done["usage"] == {"input_tokens": 7, "output_tokens": 1}
    # the end message has the timing and usage
    shown = nvim.nvim.exec_lua("return vim.fn.execute('messages')") + "\n".join(nvim.messages())
    assert "first token" in shown and "7→1 tokens" in shown


def test_anthropic_messages_stream_into_the_buffer(nvim: Child, server):
    server.queue(Reply(chunks=anthropic_events(TEXT)))
    nvim.use_server(server.base_url, provider="anthropic", api_key="KZN_TEST_KEY")
    nvim.lua("vim.env.KZN_TEST_KEY = 'sk-ant-test-123'")
    start_fill(nvim)
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.text() == ANSWER
    req = server.requests[0]
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-test-123"


# -- replace mode --------------------------------------------------------------------------

SOURCE = ["local a = 1", "x = 'héllo wörld'", "return a"]


@pytest.mark.parametrize(
    ("keys", "expected_selection", "expected_after"),
    [
        # charwise, ending on a multibyte character
        ("j0f'lvf\u00f6", "héllo w\u00f6", ["local a = 1", "x = 'NEWrld'", "return a"]),
        # charwise to the end of the line: the line break is not part of it
        ("j0fhv$", "héllo wörld'", ["local a = 1", "x = 'NEW", "return a"]),
        # linewise, ending at the end of the buffer
        ("jVj", "x = 'héllo wörld'\nreturn a", ["local a = 1", "NEW"]),
        # blockwise over two lines: the block's columns go, the answer lands at its corner
        ("gg0\x16jl", "lo\nx ", ["NEWcal a = 1", "= 'héllo wörld'", "return a"]),
    ],
    ids=["charwise-multibyte", "charwise-eol", "linewise-eob", "blockwise"],
)
def test_visual_selection_is_replaced_and_one_undo_brings_it_back(
    nvim: Child,
    server: LoopbackServer,
    keys: str,
    expected_selection: str,
    expected_after: list[str],
):
    # "N" is written on its own before "EW": the later writes must follow it
    nvim.serve(server, Reply(chunks=openai_events(["N", "EW"]), pause_after=2))
    nvim.set_lines(SOURCE)
    nvim.lua("vim.bo.modified = false")
    nvim.ask(keys.replace("\x16", "<C-v>") + " k", "rewrite")
    server.wait_paused()
    nvim.wait_for(lambda: "N" in nvim.text() and not nvim.done(), what="the first write")
    server.resume()
    assert nvim.wait_done()[0]["status"] == "ok"
    user = server.requests[0].body["messages"][-1]["content"]
    assert f"<selection>\n{expected_selection}\n</selection>" in user
    assert nvim.lines() == expected_after
    nvim.feed("u")
    assert nvim.lines() == SOURCE


def test_range_command_replaces_lines_and_drops_the_answers_final_newline(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["a = 2\n", "b = 3\n"])))
    nvim.set_lines(["keep", "old1", "old2", "tail"])
    nvim.nvim.command("2,3KznFill rewrite")
    nvim.wait_done()
    assert nvim.lines() == ["keep", "a = 2", "b = 3", "tail"]


# -- the user keeps working while tokens arrive --------------------------------------------


def test_text_lands_at_the_extmark_while_the_user_edits_above_and_switches_windows(
    nvim: Child, server
):
    server.queue(Reply(chunks=openai_events(["one ", "two ", "three"]), pause_after=2))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(["top", "anchor", "bottom"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {2, 5})")
    start_fill(nvim)
    server.wait_paused()
    nvim.wait_for(lambda: "one" in nvim.text(), what="the first token")
    # the user edits above, opens another window on another buffer and moves there
    nvim.feed("ggOnew first line<Esc>")
    nvim.nvim.command("vsplit | enew")
    nvim.feed("ityping elsewhere<Esc>")
    server.resume()
    nvim.wait_done()
    assert nvim.lines(1) == ["new first line", "top", "anchorone two three", "bottom"]
    assert nvim.nvim.current.buffer.number != 1
    assert nvim.lines(0) == ["typing elsewhere"]


# -- cancel -------------------------------------------------------------------------------


def test_escape_cancels_mid_stream_within_100ms_and_keeps_partial_text(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["kept ", "lost"]), pause_after=2))
    start_fill(nvim)
    server.wait_paused()
    nvim.wait_for(lambda: "kept" in nvim.text(), what="the first token")
    t0 = time.monotonic()
    nvim.feed("<Esc>")
    done = nvim.wait_done()[0]
    elapsed = time.monotonic() - t0
    server.wait_client_gone()
    assert done["status"] == "cancelled"
    assert elapsed < 0.1, elapsed
    assert nvim.text() == "kept "
    assert any("cancelled" in m and "partial" in m for m in nvim.messages())
    # the <Esc> mapping is gone with the job
    assert nvim.lua("return vim.fn.maparg('<Esc>', 'n')") == ""


def test_kzncancel_before_the_first_token_leaves_the_selection_untouched(nvim: Child, server):
    nvim.serve(server, Reply(chunks=[], end="stall"))
    nvim.set_lines(["alpha", "beta"])
    nvim.lua("vim.bo.modified = false")
    nvim.nvim.command("1KznFill rewrite")
    server.wait_requests(1)
    nvim.nvim.command("KznCancel")
    assert nvim.wait_done()[0]["status"] == "cancelled"
    server.wait_client_gone()
    assert nvim.lines() == ["alpha", "beta"]
    assert not modified(nvim)


# -- faults -------------------------------------------------------------------------------


def test_http_error_before_first_token_restores_nothing_because_nothing_changed(
    nvim: Child, server
):
    server.queue(
        json_reply(500, {"error": {"message": "the model is on fire", "type": "server_error"}})
    )
    nvim.use_server(server.base_url)
    nvim.set_lines(["alpha", "beta"])
    nvim.lua("vim.bo.modified = false")
    nvim.ask("Vj k", "rewrite")
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert "500" in done["error"] and "the model is on fire" in done["error"]
    assert nvim.lines() == ["alpha", "beta"]
    assert not modified(nvim)
    assert (
        nvim.lua("return #vim.api.nvim_buf_get_extmarks(0, require('kznllm.job').ns, 0, -1, {})")
        == 0
    )
    assert any("the model is on fire" in m for m in nvim.messages())


def test_missing_api_key_names_the_env_var_and_sends_nothing(nvim: Child, server):
    nvim.use_server(server.base_url, api_key="KZN_MISSING_KEY_VAR")
    nvim.set_lines(["alpha"])
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error" and "KZN_MISSING_KEY_VAR" in done["error"]
    assert server.requests == []
    assert nvim.lines() == ["alpha"]


def test_connection_refused_is_one_clear_message(nvim: Child):
    from tests.servers import free_port_refusing

    nvim.use_server(f"http://127.0.0.1:{free_port_refusing()}/v1")
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert "could not connect" in done["error"] and "refused" in done["error"]


def test_disconnect_mid_stream_keeps_and_marks_the_partial_text(nvim: Child, server):
    chunks = openai_events(["partial ", "text"], done=False)[:3]
    nvim.serve(server, Reply(chunks=chunks, end="disconnect"))
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert nvim.text() == "partial text"
    marks = nvim.lua(
        "return vim.tbl_map(function(m) return m[4].virt_text[1][1] end,"
        " vim.api.nvim_buf_get_extmarks(0, require('kznllm.job').ns, 0, -1, {details=true}))"
    )
    assert any("partial output" in m for m in marks)
    nvim.nvim.command("KznCancel")  # with nothing running: clears the mark
    assert (
        nvim.lua("return #vim.api.nvim_buf_get_extmarks(0, require('kznllm.job').ns, 0, -1, {})")
        == 0
    )


def test_malformed_json_event_keeps_partial_text_and_reports(nvim: Child, server):
    chunks = [*openai_events(["good "], done=False)[:2], b"data: {not json\n\n"]
    nvim.serve(server, Reply(chunks=chunks, end="stall"))
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error" and "malformed" in done["error"]
    assert nvim.text() == "good "


def test_read_stall_times_out_with_a_clear_message(nvim: Child, server):
    nvim.serve(server, Reply(chunks=[], end="stall"))
    nvim.lua("require('kznllm').setup({ timeouts = { stall = 0.3 } })")
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error" and "stalled" in done["error"]
    assert nvim.text() == ""


def test_wiping_the_buffer_mid_stream_stops_the_stream_cleanly(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["a", "b", "c"]), pause_after=2))
    nvim.nvim.command("enew")
    buf = nvim.nvim.current.buffer.number
    start_fill(nvim)
    server.wait_paused()
    nvim.wait_for(lambda: nvim.text() == "a", what="the first token")
    nvim.nvim.command(f"bwipeout! {buf}")
    done = nvim.wait_done()[0]
    server.wait_client_gone()
    server.resume()
    assert done["status"] == "cancelled"
    assert "closed" in done["error"]
    assert all("Traceback" not in m and "Error" not in m for m in nvim.messages())
    # nothing was written anywhere else
    assert all(nvim.lines(b.number) == [""] for b in nvim.nvim.buffers)


def test_undo_mid_stream_cancels_without_e790_and_leaves_the_undone_state(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["one ", "two"]), pause_after=2))
    nvim.set_lines(["base"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 3})")
    start_fill(nvim)
    server.wait_paused()
    nvim.wait_for(lambda: "one" in nvim.text(), what="the first token")
    nvim.feed("u")
    server.resume()
    done = nvim.wait_done()[0]
    assert done["status"] == "cancelled"
    assert "undone" in done["error"]
    assert nvim.lines() == ["base"]
    errmsg = nvim.lua("return vim.v.errmsg")
    assert "E790" not in errmsg


# -- presets and host ----------------------------------------------------------------------


def test_the_python_host_starts_only_on_first_use(nvim: Child, server):
    assert nvim.lua("return require('kznllm.host').chan") is None
    nvim.serve(server, Reply(chunks=openai_events(["x"])))
    start_fill(nvim)
    nvim.wait_done()
    assert nvim.lua("return require('kznllm.host').chan") is not None


def test_kznpreset_switches_and_the_choice_survives_a_restart(tmp_path):
    first = Child(tmp_path)
    try:
        first.nvim.command("KznPreset gpt-4o-mini")
        assert first.lua("return require('kznllm').current_preset()") == "gpt-4o-mini"
        assert "demo" in first.lua("return vim.fn.getcompletion('KznPreset d', 'cmdline')")
    finally:
        first.close()
    # the saved choice wins over setup()'s starting preset
    second = Child(tmp_path, setup={"preset": "demo"})
    try:
        assert second.lua("return require('kznllm').current_preset()") == "gpt-4o-mini"
    finally:
        second.close()


def test_demo_preset_answers_offline_in_replace_mode(nvim: Child):
    nvim.nvim.command("KznPreset demo")
    nvim.lua("vim.bo.filetype = 'python'")
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("1KznFill double it")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["# kznllm demo model (offline): double it", "x = 1"]


def test_neovim_010_fallback_computes_the_same_regions(nvim: Child):
    nvim.set_lines(SOURCE)
    cases = [
        ("v", [0, 2, 6, 0], [0, 2, 11, 0]),
        ("v", [0, 2, 6, 0], [0, 1, 3, 0]),
        ("\x16", [0, 1, 2, 0], [0, 2, 3, 0]),
    ]
    for mode, a, b in cases:
        real = nvim.lua("return {require('kznllm').region(0, ...)}", mode, a, b)
        fallback = nvim.lua(
            "local orig = vim.fn.exists; vim.fn.exists = function(x)"
            " if x == '*getregionpos' then return 0 end return orig(x) end;"
            " local r = {require('kznllm').region(0, ...)}; vim.fn.exists = orig; return r",
            mode,
            a,
            b,
        )
        assert fallback == real, (mode, real, fallback)


def test_builtin_progress_indicator_shows_elapsed_time_and_goes_away(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["a", "b"]), pause_after=2))
    start_fill(nvim)
    server.wait_paused()

    def indicator() -> list[str]:
        return nvim.lua(
            "local out = {} for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0,"
            " require('kznllm.job').ns, 0, -1, {details=true})) do"
            " if m[4].virt_text then table.insert(out, m[4].virt_text[1][1]) end end return out"
        )

    shown = nvim.wait_for(lambda: [t for t in indicator() if "s" in t and "kznllm" in t])
    assert any(t.rstrip().endswith("s") for t in shown)
    server.resume()
    nvim.wait_done()
    assert indicator() == []


def test_fidget_progress_is_used_when_installed(tmp_path, server):
    fake = tmp_path / "fidget" / "lua" / "fidget"
    fake.mkdir(parents=True)
    (fake / "progress.lua").write_text(
        "_G.fidget_calls = {}\n"
        "return { handle = { create = function(o)\n"
        "  table.insert(_G.fidget_calls, 'create:' .. o.title)\n"
        "  return { finish = function(self) table.insert(_G.fidget_calls, 'finish') end }\n"
        "end } }\n"
    )
    child = Child(tmp_path / "nv")
    try:
        child.lua("vim.opt.rtp:append(...)", str(tmp_path / "fidget"))
        server.queue(Reply(chunks=openai_events(["x"])))
        child.use_server(server.base_url)
        start_fill(child)
        child.wait_done()
        assert child.lua("return _G.fidget_calls") == ["create:kznllm", "finish"]
    finally:
        child.close()


def test_buffer_made_nomodifiable_mid_stream_stops_with_a_message(nvim: Child, server):
    nvim.fill_paused(server, ["a", "b"], "KznFill q")
    nvim.lua("vim.bo.modifiable = false")
    server.resume()
    done = nvim.wait_done()[0]
    assert done["status"] == "error"
    assert "could not write" in done["error"]
    assert nvim.text() == "a"


def _rechunk(name: str, chunks: list[bytes]) -> list[bytes]:
    from tests.servers import crlf, fixed_chunks

    whole = b"".join(chunks)
    if name == "one-event-per-write":
        return chunks
    if name == "all-in-one-write":
        return [whole]
    if name == "7-byte-writes":  # splits events, lines and multi-byte characters
        return fixed_chunks(whole, 7)
    if name == "crlf-and-comments":
        return crlf([b": keep-alive\n\n" + c for c in chunks])
    raise AssertionError(name)


@pytest.mark.parametrize(
    "chunking", ["one-event-per-write", "all-in-one-write", "7-byte-writes", "crlf-and-comments"]
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_buffer_text_is_byte_exact_whatever_the_network_chunking(
    nvim: Child, server: LoopbackServer, chunking: str, provider: str
):
    texts = ["def f(x):\n", "    return ", "'héllo ✓ 🎉'", "\r\n", "\n", "  # ünïcode\tend"]
    build = openai_events if provider == "openai" else anthropic_events
    server.queue(Reply(chunks=_rechunk(chunking, build(texts))))
    nvim.use_server(server.base_url, provider=provider)
    nvim.set_lines([""])
    start_fill(nvim)
    assert nvim.wait_done()[0]["status"] == "ok"
    # Neovim stores a CR before a line break as part of the line: the joined lines
    # are the answer byte for byte
    assert nvim.text() == "".join(texts)


def test_yap_on_a_multibyte_character_writes_after_the_whole_character(nvim: Child, server):
    server.queue(Reply(chunks=openai_events(["+"])))
    nvim.use_server(server.base_url, placement="cursor")
    nvim.set_lines(["aé🎉b"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {1, 3})")  # on the emoji (bytes 3-6)
    start_fill(nvim)
    nvim.wait_done()
    assert nvim.lines() == ["aé🎉+b"]


def test_debug_view_shows_the_exact_request_then_streams_the_answer_below(nvim: Child, server):
    server.queue(Reply(chunks=openai_events(["the ", "answer"])))
    nvim.use_server(server.base_url, api_key="KZN_CANARY_VAR", params={"top_p": 0.5})
    nvim.lua("vim.env.KZN_CANARY_VAR = 'sk-canary-1234567890'")
    nvim.set_lines(["alpha", "beta"])
    nvim.lua("vim.bo.modified = false")
    source = nvim.nvim.current.buffer.number
    nvim.ask("Vj K", "explain")
    assert nvim.wait_done()[0]["status"] == "ok"
    scratch = nvim.nvim.current.buffer
    assert scratch.number != source
    assert scratch.options["filetype"] == "markdown"
    assert nvim.nvim.current.window.options["wrap"] is True
    assert nvim.nvim.current.window.options["linebreak"] is True
    assert scratch.options["swapfile"] is False
    text = "\n".join(scratch[:])
    assert "POST " + server.base_url + "/chat/completions" in text
    assert "- top_p: `0.5`" in text
    assert "Authorization: <redacted>" in text
    assert "sk-canary" not in text
    assert "<selection>\nalpha\nbeta\n</selection>" in text
    assert text.endswith("---\n\n## Answer\n\n````\nthe answer\n````")  # a replace: code
    # the source buffer is untouched
    assert nvim.lines(source) == ["alpha", "beta"]
    assert not nvim.lua("return vim.bo[...].modified", source)


def test_replace_mode_strips_a_fence_the_model_added_anyway(nvim: Child, server):
    nvim.serve(server, Reply(chunks=openai_events(["```py", "thon\nx = ", "2\n``", "`\n"])))
    nvim.set_lines(["x = 1", "end"])
    nvim.nvim.command("1KznFill double")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["x = 2", "end"]


def test_help_file_has_tags_and_opens(nvim: Child, tmp_path):
    import shutil

    from tests.nvim_child import REPO

    doc = tmp_path / "doc"
    shutil.copytree(REPO / "doc", doc)
    nvim.nvim.command(f"helptags {doc}")
    nvim.lua("vim.opt.rtp:prepend(...)", str(tmp_path))
    tags = (":KznFill", ":KznDebug", ":KznHistory", "kznllm-sidebar", "kznllm-follow-up")
    tags += (":KznReview", "kznllm-review", "kznllm-operator", "kznllm-chatty", ":KznApply")
    tags += (":KznSend", ":KznTrust", "kznllm-project-trust")
    tags += ("kznllm-regions", "kznllm-undo", "kznllm-placement", "kznllm-watchdog", "kznllm-shape")
    for tag in ("kznllm", *tags, "kznllm-template-variables", "KznllmDone"):
        nvim.nvim.command(f"help {tag}")
        assert nvim.nvim.current.buffer.name.endswith("kznllm.txt")
        nvim.nvim.command("helpclose")


def test_setup_makes_the_help_tags_of_an_install_that_had_none(tmp_path):
    """The README's install without a plugin manager never runs :helptags: setup()
    makes doc/tags when it is missing, so :help kznllm works at once."""
    import shutil

    import pynvim

    from tests.nvim_child import REPO, nvim_binary

    plugin = tmp_path / "kznllm-py"
    for part in ("lua", "plugin", "doc"):
        shutil.copytree(REPO / part, plugin / part, ignore=shutil.ignore_patterns("tags"))
    assert not (plugin / "doc" / "tags").exists()
    argv = [nvim_binary(), "--embed", "--headless", "--clean", "-n"]
    argv += ["--cmd", f"set rtp^={plugin}"]
    child = pynvim.attach("child", argv=argv)
    try:
        child.exec_lua("require('kznllm').setup({})")
        assert (plugin / "doc" / "tags").exists()
        child.command("help kznllm-sidebar")
        assert child.current.buffer.name == str(plugin / "doc" / "kznllm.txt")
    finally:
        child.close()


def _reasoning_stream() -> list[bytes]:
    import json as _json

    def ev(delta: dict) -> bytes:
        obj = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        return b"data: " + _json.dumps(obj).encode() + b"\n\n"

    return [
        ev({"reasoning_content": "let me think"}),
        ev({"content": "<think>also inline</think>\n\n"}),
        ev({"content": "x = 2"}),
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]


def test_reasoning_never_lands_in_the_buffer(nvim: Child, server):
    nvim.serve(server, Reply(chunks=_reasoning_stream()))
    nvim.set_lines(["x = 1"])
    nvim.nvim.command("1KznFill double")
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["x = 2"]


def test_debug_view_shows_reasoning_under_its_own_heading(nvim: Child, server):
    nvim.serve(server, Reply(chunks=_reasoning_stream()))
    nvim.nvim.command("KznDebug why")
    assert nvim.wait_done()[0]["status"] == "ok"
    text = "\n".join(nvim.nvim.current.buffer[:])
    assert text.endswith("---\n\n## Reasoning\n\nlet me thinkalso inline\n\n## Answer\n\nx = 2")
    assert text.count("Answer") == 1  # one heading
    lines = text.split("\n")
    row = lines.index("## Reasoning") + 1
    assert nvim.lua(f"return vim.fn.foldclosed({row})") == row  # folded once done
    assert nvim.lua(f"return vim.fn.foldclosedend({row})") == row + 3  # to the blank line
    assert nvim.lua(f"return vim.fn.foldclosed({lines.index('## Answer') + 1})") == -1


def test_a_rate_limited_request_is_retried_and_then_streams(nvim: Child, server):
    busy = json_reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
    nvim.serve(server, busy, Reply(chunks=openai_events(["after retry"])))
    start_fill(nvim)
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.text() == "after retry"
    assert len(server.requests) == 2


def test_retries_can_be_limited_to_one_try(nvim: Child, server):
    nvim.lua("require('kznllm').setup({ retries = 1 })")
    nvim.serve(
        server, json_reply(503, {"error": {"message": "busy"}}, headers={"Retry-After": "0"})
    )
    start_fill(nvim)
    done = nvim.wait_done()[0]
    assert done["status"] == "error" and "503" in done["error"]
    assert len(server.requests) == 1


def test_fill_in_the_middle_preset_writes_the_middle_at_the_cursor(nvim: Child, server):
    import json as _json

    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return b"data: " + _json.dumps({"choices": [choice]}).encode() + b"\n\n"

    server.queue(Reply(chunks=[chunk("a + "), chunk("b"), chunk("", "stop"), b"data: [DONE]\n\n"]))
    nvim.use_server(server.base_url, provider="completions", templates="qwen", fim=True)
    nvim.set_lines(["def add(a, b):", "    return ", "print(add(1, 2))"])
    nvim.lua("vim.api.nvim_win_set_cursor(0, {2, 10})")  # on the space after 'return'
    start_fill(nvim)
    assert nvim.wait_done()[0]["status"] == "ok"
    assert nvim.lines() == ["def add(a, b):", "    return a + b", "print(add(1, 2))"]
    assert server.requests[0].body["prompt"] == (
        "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\nprint(add(1, 2))<|fim_middle|>"
    )
