"""The streaming review's diff (lua/kznllm/review_diff.lua) in a real Neovim: each pass
reads and diffs only the part of the answer that more text can still change, and what it
shows is always a true diff: putting each hunk's original lines back in place of its
answer lines, then the pending original, gives the original, at every step of the stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.nvim_child import Child

# feeds `new` to the incremental diff in the given cuts (answer lines so far, the last
# one still growing) and checks every pass; returns the first failure, or the lines
# each pass diffed
STREAM = """
local old, new, cuts = ...
local differ = require('kznllm.review_diff')
local state, diffed = {}, {}
local function rebuild(hunks, shown, pending)
  local out, j = {}, 0
  for _, h in ipairs(hunks) do
    for k = j + 1, h.new_start do table.insert(out, shown[k]) end
    for _, l in ipairs(h.old) do table.insert(out, l) end
    j = h.new_start + h.new_count
  end
  for k = j + 1, #shown do table.insert(out, shown[k]) end
  for _, l in ipairs(pending) do table.insert(out, l) end
  return out
end
for _, n in ipairs(cuts) do
  local so_far = vim.list_slice(new, 1, n)
  local hunks, pending, count = differ.stream(state, old, function(from)
    return vim.list_slice(so_far, from + 1, #so_far)
  end)
  table.insert(diffed, count)
  local shown = vim.list_slice(so_far, 1, #so_far - 1) -- the last line may still grow
  if not vim.deep_equal(rebuild(hunks, shown, pending), old) then
    return { failed = n, hunks = hunks, pending = pending }
  end
end
return { diffed = diffed }
"""


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Child]:
    c = Child(tmp_path_factory.mktemp("diff"))
    try:
        yield c
    finally:
        c.close()


lines = st.lists(st.sampled_from(["{", "}", "a", "b", "", "  c"]), max_size=30)


@settings(max_examples=150, deadline=None)
@given(old=lines, new=lines, data=st.data())
def test_every_streaming_pass_shows_a_true_diff(
    child: Child, old: list[str], new: list[str], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(new))), max_size=10)))
    got = child.lua(STREAM, old, new, cuts or [max(1, len(new))])
    assert "failed" not in got, got


def test_a_long_answer_is_diffed_only_where_it_can_still_change(child: Child) -> None:
    from tests.review_json import json_lines

    old = json_lines()
    new = json_lines(disable_every_other=True)
    cuts = list(range(25, len(new) + 1, 25))  # a pass every 25 lines of answer
    got = child.lua(STREAM, old, new, cuts)
    assert "failed" not in got, got
    late = got["diffed"][len(cuts) // 2 :]  # past line 1,250 of 2,502
    assert max(late) < 100, late  # a full diff would read 1,250 to 2,502 lines each
