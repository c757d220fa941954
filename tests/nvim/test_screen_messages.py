"""Messages as a user sees them on a real terminal (tmux, 90 columns): the fix first, one
line each, never "Press ENTER", the whole text in :KznLog (issue 27, items 1 and 4)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nvim_child import Child
from tests.tmux_screen import Screen

BAD_PRESETS = (
    "{ presets = { { id = 'bad1', provider = 'opena', model = 'x' },"
    " { id = 'bad2', provider = 'openai', model = 'y', params = { temperature = 'hot' } } } }"
)


@pytest.fixture
def screens(tmp_path: Path) -> Iterator[list[Screen]]:
    made: list[Screen] = []
    try:
        yield made
    finally:
        for s in made:
            s.close()


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def last_line(shown: str) -> str:
    return shown.rstrip("\n").splitlines()[-1]


def test_two_bad_presets_at_startup_say_one_line_with_the_fix_and_no_press_enter(
    tmp_path: Path, screens: list[Screen]
):
    screen = Screen(tmp_path, setup=BAD_PRESETS)
    screens.append(screen)
    shown = screen.wait_for(lambda s: "kznllm: preset" in s, what="the bad presets")
    assert "Press ENTER" not in shown
    bottom = last_line(shown)
    assert bottom.startswith("kznllm: preset 'bad1': did you mean provider 'openai'? (unknown")
    assert bottom.endswith("… :KznLog") and len(bottom) <= 90
    screen.text(":KznLog\r")
    shown = screen.wait_for(lambda s: "kznllm://log" in s, what=":KznLog")
    # the whole of both problems, the second one's fix too (wrapped: compared without
    # the white space)
    flat = squeezed(shown)
    assert squeezed("unknown provider 'opena'; known: anthropic, azure") in flat
    assert squeezed("preset 'bad2': params.temperature: want a number, not str 'hot'") in flat
    assert "Press ENTER" not in screen.screen()


def pick_line(shown: str, label: str) -> tuple[str, str]:
    """The number inputlist() gives the item `label`, and its whole line."""
    for line in shown.splitlines():
        m = re.match(r"^(\d+): [● ] (\S+)", line)
        if m and m.group(2) == label:
            return m.group(1), line
    raise AssertionError(f"{label} not offered:\n{shown}")


def test_picks_in_kznpreset_and_its_model_list_ask_for_no_enter(
    tmp_path: Path, screens: list[Screen]
):
    plain = (
        "{ presets = { { id = 'plain', provider = 'openai', model = 'm',"
        " base_url = 'http://127.0.0.1:9/v1', api_key = false } } }"
    )
    screen = Screen(tmp_path, setup=plain)
    screens.append(screen)
    screen.text(":KznPreset\r")
    shown = screen.wait_for(lambda s: "Type number" in s, what="the preset picker")
    number, line = pick_line(shown, "plain")
    assert line.rstrip() == f"{number}:   plain"  # no description: no "()", no " — "
    screen.text(number + "\r")
    shown = screen.wait_for(lambda s: "kznllm: preset plain" in s, what="the choice")
    assert "Press ENTER" not in shown
    assert last_line(shown) == "kznllm: preset plain"
    # the model list of the offline demo (its server's GET /v1/models)
    screen.text(":KznPreset! demo\r")
    shown = screen.wait_for(lambda s: "kznllm-demo-fast" in s, what="the model picker")
    number, _ = pick_line(shown, "kznllm-demo-fast")
    screen.text(number + "\r")
    shown = screen.wait_for(lambda s: "now uses kznllm-demo-fast" in s, what="the model choice")
    assert "Press ENTER" not in shown


def test_a_long_message_is_one_line_in_messages_and_whole_in_kznlog(nvim: Child):
    nvim.lua("vim.notify = _G.kzn_builtin_notify")  # Neovim's own, as a user has it
    nvim.nvim.command("set columns=80")
    text = "set MY_KEY for preset 'x': " + "a long reason, " * 12 + "the end\nand a second line"
    nvim.lua("require('kznllm.notify').notify(..., vim.log.levels.ERROR)", "kznllm: " + text)
    said = nvim.nvim.api.exec2("messages", {"output": True})["output"].splitlines()[-1]
    assert said.startswith("kznllm: set MY_KEY for preset 'x': a long reason")
    assert said.endswith("… :KznLog") and len(said) < 80
    nvim.nvim.command("KznLog")
    assert nvim.nvim.current.buffer.name == "kznllm://log"
    log = nvim.lines()
    assert log[-2].endswith("kznllm: " + text.split("\n")[0])  # whole, with time and level
    assert " error " in log[-2]
    assert log[-1].strip() == "and a second line"
    assert not nvim.lua("return vim.bo.modifiable")
