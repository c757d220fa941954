"""A model's answer printed at a terminal by `kznllm PROMPT` cannot drive it: its escape
sequences (an OSC 52 clipboard write, a title change, a screen clear, a bidi override)
are shown escaped, while a pipe still gets every byte. A real subprocess on a
pseudo-terminal, a real loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kznllm_py.terminal import AnswerText
from tests.servers import LoopbackServer, Reply, openai_events
from tests.test_cli_llm_style import kznllm, on, run_in_pty

HOSTILE = [
    "ok\r",
    "\nclip:\x1b]52;c;cm0gLXJmIH4K\x07",
    " title:\x1b]0;PWNED\x07 clear:\x1b[2J",
    " \u202eevil\u202c\tend",
]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


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
