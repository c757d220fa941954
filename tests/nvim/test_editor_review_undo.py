"""Undo never takes the user's keystrokes, as a property: random interleavings of user
edits (before, inside and after the reviewed region), the review's keys, `u` and
`<C-r>`, typed into a real Neovim. After every step:
- a reject that went through changed only its hunk's lines, one refused left all as it
  was (an edited hunk is never silently dropped);
- `u` then `<C-r>` comes back to the same text (undo and redo walk whole states);
and at the end every state a user edit made is still reachable with `:undo N`: no
accept or reject was joined to a user's edit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.nvim.test_editor_review import ANSWER, SOURCE
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply, openai_events

EXAMPLES = int(os.environ.get("KZN_FUZZ_EXAMPLES", "0")) or 25

REVIEWING = "return next(require('kznllm.review').reviews) ~= nil"

OPEN_HUNKS = """
local _, r = next(require('kznllm.review').reviews)
if not r or not r.complete or not r.hunks[1] or not r.hunks[1].mark then return {} end
local api = vim.api
local track = api.nvim_get_namespaces().kznllm_review_track
local out = {}
for k, h in ipairs(r.hunks) do
  if h.state == 'open' then
    local m = api.nvim_buf_get_extmark_by_id(0, track, h.mark, { details = true })
    local d = m[3]
    local text = table.concat(api.nvim_buf_get_text(0, m[1], m[2], d.end_row, d.end_col, {}), '\\n')
    table.insert(out, { k = k, text = text, want = h.text, old = h.old_text,
      at_end = h.at_end or false, srow = m[1], scol = m[2], erow = d.end_row, ecol = d.end_col })
  end
end
return out
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, LoopbackServer]]:
    tmp: Path = tmp_path_factory.mktemp("undo")
    with LoopbackServer() as server:
        child = Child(tmp)
        try:
            child.use_server(server.base_url)
            yield child, server
        finally:
            child.close()


def start(nvim: Child, server: LoopbackServer) -> None:
    """A fresh buffer (fresh undo tree) with SOURCE, lines 2-6 under a complete review."""
    nvim.nvim.command("enew! | setlocal noautoindent")
    nvim.nvim.command("silent! bwipeout! #")
    nvim.lua("vim.bo.undolevels = -1")
    nvim.set_lines(SOURCE)
    nvim.lua("vim.bo.undolevels = 1000")
    text = "\n".join(ANSWER) + "\n"
    server.queue(Reply(chunks=openai_events([text[:25], text[25:]])))
    before = len(nvim.done())
    nvim.nvim.command("2,6KznReview simplify")
    nvim.wait_done(before + 1)
    nvim.wait_for(lambda: nvim.lua(OPEN_HUNKS), what="the review's hunks")


def review_keys(nvim: Child) -> dict[str, str]:
    return nvim.lua("return require('kznllm.config').options.keymaps.review")


def splice(text: str, h: dict, new: str) -> str:
    """`text` (lines joined by \\n) with hunk h's span replaced by `new`."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode()) + 1)
    data = text.encode()
    a = offsets[h["srow"]] + h["scol"]
    b = offsets[h["erow"]] + h["ecol"]
    return (data[:a] + new.encode() + data[b:]).decode()


edit = st.tuples(
    st.just("edit"),
    st.sampled_from(["before", "inside", "after"]),
    st.sampled_from(["A", "o", "dd"]),
    st.integers(0, 10),
)
review_key = st.tuples(
    st.sampled_from(["accept", "reject", "accept_all", "reject_all"]), st.integers(0, 3)
)
undo = st.tuples(st.sampled_from(["u", "<C-r>"]))
steps = st.lists(st.one_of(edit, review_key, undo), min_size=1, max_size=8)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=steps)
def test_property_undo_and_redo_walk_whole_states_and_every_user_edit_is_reachable(
    env: tuple[Child, LoopbackServer], steps: list[tuple]
) -> None:
    nvim, server = env
    start(nvim, server)
    keys = review_keys(nvim)
    made: list[tuple[int, str]] = []  # (change number, text) of each user edit
    n = 0
    for step in steps:
        before = nvim.text()
        if step[0] == "edit":
            _, where, how, k = step
            last = len(nvim.lines())
            if where == "before":
                row = 1
            elif where == "after":
                row = last
            else:
                if last <= 2:
                    continue
                row = 2 + k % (last - 2)
            if how == "dd" and where != "inside":
                how = "A"
            n += 1
            typed = {"A": f"A # e{n}<Esc>", "o": f"oe{n}<Esc>", "dd": "dd"}[how]
            nvim.feed(f"{row}G{typed}")
            if nvim.text() != before:
                made.append((nvim.lua("return vim.fn.changenr()"), nvim.text()))
        elif step[0] in ("u", "<C-r>"):
            nvim.feed(step[0])
        else:
            name, k = step
            if not nvim.lua(REVIEWING):
                continue  # no review open: its keys are not mapped
            hunks = nvim.lua(OPEN_HUNKS)
            if name in ("accept", "reject") and not hunks:
                nvim.feed(f"{2 + k}G{keys[name]}")  # a review without hunks: a line of it
            elif name in ("accept", "reject"):
                h = hunks[k % len(hunks)]
                row = h["srow"] + (1 if h["at_end"] and h["text"] else 0)
                nvim.feed(f"{row + 1}G{keys[name]}")
                after = nvim.text()
                if name == "accept" or h["text"] != h["want"]:
                    assert after == before  # an edited hunk's reject is refused: edit kept
                else:
                    assert after == splice(before, h, h["old"])
            else:
                nvim.feed(keys[name])
                if name == "accept_all":
                    assert nvim.text() == before
        # undo and redo walk whole states: u then <C-r> comes back to the same text
        now = nvim.text()
        if nvim.lua("return vim.fn.changenr()") > 0:
            nvim.feed("u<C-r>")
            assert nvim.text() == now
    # every state a user edit made is reachable
    for seq, text in made:
        nvim.nvim.command(f"undo {seq}")
        assert nvim.text() == text, (seq, steps)
