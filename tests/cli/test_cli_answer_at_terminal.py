"""The CLI's output where it goes: a model's answer printed at a terminal by `kznllm
PROMPT` cannot drive it (its escape sequences, an OSC 52 clipboard write, a title change,
a screen clear, a bidi override, are shown escaped) while a pipe still gets every byte;
a pipe whose reader is gone ends a command quietly. Real subprocesses, on a
pseudo-terminal or a pipe, a real loopback server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py.cli.terminal import AnswerText
from kznllm_py.history import HistoryStore, NewEntry, default_path, nvim_data_dir
from tests.cli.test_cli_llm_style import env_for, kznllm, on, run_in_pty
from tests.servers import LoopbackServer, Reply, openai_events

HOSTILE = [
    "ok\r",
    "\nclip:\x1b]52;c;cm0gLXJmIH4K\x07",
    " title:\x1b]0;PWNED\x07 clear:\x1b[2J",
    " \u202eevil\u202c\tend",
]


def test_an_answers_escape_sequences_are_shown_escaped_at_a_terminal_and_raw_in_a_pipe(
    tmp_path: Path, server: LoopbackServer
):
    server.queue(Reply(chunks=openai_events(HOSTILE)))
    shown = run_in_pty(tmp_path, *on(server), "-m", "m", "q")
    assert b"\x1b" not in shown and b"\x07" not in shown and "\u202e".encode() not in shown
    assert shown == (
        b"ok\r\nclip:\\x1b]52;c;cm0gLXJmIH4K\\x07 title:\\x1b]0;PWNED\\x07 clear:\\x1b[2J"
        b" \\u202eevil\\u202c\tend\r\n"  # the CRLF split across deltas is one line break
    )
    server.queue(Reply(chunks=openai_events(HOSTILE)))
    piped = kznllm(tmp_path, *on(server), "-m", "m", "q")
    # a program reading it gets the bytes (the helper reads text: CRLF comes as LF)
    assert piped.stdout == "".join(HOSTILE).replace("\r\n", "\n")


def test_a_cr_held_at_a_delta_end_is_escaped_when_nothing_follows():
    screen = AnswerText()
    assert screen.feed("a\r") == "a"
    assert screen.feed("") == ""
    assert screen.flush() == "\\r"
    assert screen.feed("b\r") + screen.feed("c") == "b\\rc"


@pytest.mark.parametrize("args", [("presets",), ("history",), ("models", "--preset", "demo")])
def test_a_reader_gone_before_the_output_ends_the_command_quietly(tmp_path: Path, args):
    """`kznllm presets | head -1`: a reader that closed its end (here before the first
    byte, so the race is decided) gets no traceback on stderr, as other tools cut short
    by a pipe; the exit code says SIGPIPE (141), as a shell reports a killed tool."""
    env = env_for(tmp_path)
    if args[0] == "history":  # something to list
        server_free_store(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run(
            [sys.executable, "-m", "kznllm_py.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert res.stderr.decode() == ""
    assert res.returncode == 141


def server_free_store(tmp_path: Path) -> None:
    store = HistoryStore(default_path(nvim_data_dir(env_for(tmp_path))))
    try:
        for i in range(50):
            entry = store.start(NewEntry(mode="yap", query=f"question {i}"))
            store.finish(entry, "ok")
    finally:
        store.close()


def test_a_fill_from_the_demo_whose_reader_is_gone_prints_no_server_traceback(tmp_path: Path):
    """`kznllm fill --preset demo ... | head -c 20`: the in-process demo server finds the
    client gone at its next write; that is the end of its answer, not a traceback on
    the user's terminal."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run(
            [sys.executable, "-m", "kznllm_py.cli", "fill", "--preset", "demo", "a question"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
            env=env_for(tmp_path),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert res.stderr.decode() == ""
    assert res.returncode == 141
