"""A narrow history sidebar (below 64 columns: 36 at a 90-column screen) cuts nothing
the user needs from its top: a missing key's "MISSING" and the last help line are on
rows of their own (the sidebar has no 'wrap'; tmux at 90 columns showed them cut)."""

from __future__ import annotations

from kznllm_py.history import view as sidebar

NOW = 1_700_000_000.0
CTX = sidebar.ContextInfo(
    preset_id="claude-sonnet",
    provider="anthropic",
    model="claude-sonnet-4-5",
    key="$ANTHROPIC_API_KEY",
    key_present=False,
    buffer_path="/p/a.lua",
    filetype="lua",
)


def test_a_narrow_sidebar_shows_a_missing_key_on_a_row_of_its_own_and_marks_it():
    view = sidebar.render([], total=0, offset=0, now=NOW, live={}, context=CTX, width=36)
    lines = view["lines"]
    row = lines.index("  key     $ANTHROPIC_API_KEY MISSING")
    assert len(row_text := lines[row]) <= 36, row_text
    assert lines[row - 1] == "  preset  claude-sonnet · anthropic claude-sonnet-4-5"
    marked = [h for h in view["hl"] if h[3] == "KznllmHistoryError"]
    assert [h[0] for h in marked] == [row]  # MISSING is red where it now stands
    start, end = marked[0][1], marked[0][2]
    assert lines[row].encode()[start:end] == b"MISSING"
    # a wide sidebar keeps the one line
    wide = sidebar.render([], total=0, offset=0, now=NOW, live={}, context=CTX, width=80)
    assert any(x.endswith("· key $ANTHROPIC_API_KEY MISSING") for x in wide["lines"])


def test_every_help_row_of_a_narrow_sidebar_fits_it():
    view = sidebar.render(
        [], total=0, offset=0, now=NOW, live={}, context=CTX, width=36, show_help=True
    )
    top = view["lines"][: view["lines"].index("Context")]
    assert "  :KznHistory clear" in top
    assert all(len(x) <= 36 for x in top), [x for x in top if len(x) > 36]
