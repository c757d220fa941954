"""An answer shaped for its buffer (kznllm_py/fill/shape.py), pure: fences out, prose
as comments in the buffer's syntax, code indented where it lands, and the same result
whatever the stream's chunking."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py.apply import Span
from kznllm_py.fill import request, shape, shaping
from kznllm_py.fill.shape import Shape, Shaper

CHATTY = (
    "Sure! Here is a helper:\n\n```python\ndef helper(self):\n    return 42\n```\n\n"
    "This returns 42."
)


def run(s: Shape, chunks: list[str]) -> str:
    shaper = Shaper(s)
    return "".join(shaper.push(c) for c in chunks) + shaper.finish()


def whole(s: Shape, text: str) -> str:
    return run(s, [text])


def test_a_chatty_python_answer_becomes_indented_code_with_comments():
    out = whole(Shape("    ", "# %s"), CHATTY)
    assert out == (
        "    # Sure! Here is a helper:\n\n"
        "    def helper(self):\n        return 42\n\n"
        "    # This returns 42."
    )
    assert "```" not in out


def test_comment_syntaxes_of_several_languages():
    answer = "Here it is:\n```\nx();\n```\nDone."
    assert whole(Shape("", "// %s"), answer) == "// Here it is:\nx();\n// Done."
    assert whole(Shape("", "-- %s"), answer) == "-- Here it is:\nx();\n-- Done."
    assert whole(Shape("  ", "; %s"), answer) == "  ; Here it is:\n  x();\n  ; Done."


def test_block_comments_close_on_each_line_and_prose_cannot_close_them_early():
    answer = "```c\nint x;\n```\nThis ends */ here.\nAnd <!-- this -->."
    out = whole(Shape("\t", "/* %s */", tabs=True), answer)
    assert out == "\tint x;\n\t/* This ends * / here. */\n\t/* And <!-- this -->. */"
    html = whole(Shape("", "<!-- %s -->"), "```\n<b/>\n```\nSee --> there.")
    assert html == "<b/>\n<!-- See - -> there. -->"


# the buffer's shape, the answer, what lands; the id says what it proves
SHAPED = [
    pytest.param(
        Shape("", "# %s"),
        "```\nx = 1\n```\n# a note\n## Usage",
        "x = 1\n# a note\n## Usage",
        id="a-line-already-a-comment-is-not-commented-twice",
    ),
    pytest.param(
        Shape("  ", "# %s"),
        "I cannot see the rest of the file.\n\nCould you share where `x` comes from?",
        "  # I cannot see the rest of the file.\n\n  # Could you share where `x` comes from?",
        id="an-answer-that-is-only-prose-becomes-comments",
    ),
    pytest.param(
        Shape("    ", "# %s"),
        "def f():\n    return 42\n\nThis returns 42.\n",
        "    def f():\n        return 42\n\n    # This returns 42.\n",
        id="plain-code-passes-as-code-and-a-trailing-sentence-is-prose",
    ),
    pytest.param(
        Shape("    ", "# %s"),
        "```\n    def f(self):\n        if x:\n            return 1\n```",
        "    def f(self):\n        if x:\n            return 1\n",
        id="relative-indentation-is-kept-under-the-cursor-lines",
    ),
]


@pytest.mark.parametrize(("buffer", "answer", "shaped"), SHAPED)
def test_an_answer_is_shaped_for_its_buffer(buffer: Shape, answer: str, shaped: str):
    assert whole(buffer, answer) == shaped


def test_nested_fences_follow_commonmark():
    # a 4-backtick block holds a 3-backtick one: the inner fence lines are content
    answer = "````markdown\n```python\nx = 1\n```\n````\nafter"
    assert whole(Shape("", "# %s"), answer) == "```python\nx = 1\n```\n# after"
    # a fence with an info string never closes; ~~~ does not close ```
    answer = "```\na\n```python\n~~~\nb\n```\nc"
    assert whole(Shape("", "# %s"), answer) == "a\n```python\n~~~\nb\n# c"


def test_code_that_looks_like_a_sentence_is_code_when_code_follows():
    answer = "for item in the_items:\n    print(item)\n"
    assert whole(Shape("", "# %s"), answer) == answer
    assert whole(Shape("", "# %s"), "ok = done(x)\n") == "ok = done(x)\n"


def test_indentation_with_tabs_follows_the_buffer():
    answer = "```go\nfunc f() {\n    if x {\n        y()\n    }\n}\n```"
    assert whole(Shape("\t", "// %s", tabs=True, width=8), answer) == (
        "\tfunc f() {\n\t\tif x {\n\t\t\ty()\n\t\t}\n\t}\n"
    )
    # an answer indented with tabs, into a buffer of spaces
    out = whole(Shape("  ", "# %s", width=2), "```\nif x:\n\ty()\n```")
    assert out == "  if x:\n    y()\n"


def test_blank_lines_stay_blank():
    out = whole(Shape("        ", "# %s"), "a = 1\n   \n\t\nb = 2\n")
    assert out == "        a = 1\n\n\n        b = 2\n"
    assert not any(line != line.rstrip() for line in out.split("\n"))


def test_crlf_line_ends_are_kept_after_the_shaping():
    answer = CHATTY.replace("\n", "\r\n")
    out = whole(Shape("    ", "# %s"), answer)
    assert out == whole(Shape("    ", "# %s"), CHATTY).replace("\n", "\r\n")


def test_a_fence_split_over_chunks():
    chunks = ["Sure! Here:\n`", "`", "`py", "thon\nx = 1\n`", "``\nok."]
    assert run(Shape("", "# %s"), chunks) == "# Sure! Here:\nx = 1\n# ok."


def test_a_replace_answer_returned_dedented_gets_the_selections_base():
    s = Shape("        ", dedented_only=True)
    assert whole(s, "if x:\n    y()\n\nz()\n") == (
        "        if x:\n            y()\n\n        z()\n"
    )
    # as deep already: untouched, as it comes (no holding back)
    shaper = Shaper(s)
    assert shaper.push("        a = 1\n") == "        a = 1\n"
    assert shaper.push("  odd") == "  odd"
    # a chatty one is left for its end, where its code is cut out and re-indented
    assert whole(s, "Here is the fix:\n```\nx\n```") == "Here is the fix:\n```\nx\n```"
    assert shape.reindent("x = 1\nif x:\n    y()", s) == (
        "        x = 1\n        if x:\n            y()"
    )


def test_a_replace_in_a_tab_buffer_reindents_with_tabs():
    s = Shape("\t\t", tabs=True, width=4, dedented_only=True)
    assert whole(s, "if (x) {\n  y();\n}") == "\t\tif (x) {\n\t\t\ty();\n\t\t}"


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(
        st.sampled_from(
            [*"aSx.:= `~#\t\n\r{;(-", "    ", "```", "~~~~", "Sure ", "The cat sat. ", "# ", "// "]
        ),
        max_size=25,
    ).map("".join),
    comment=st.sampled_from(["# %s", "// %s", "/* %s */", "-- %s"]),
    indent=st.sampled_from(["", "  ", "\t", "        "]),
    replace=st.booleans(),
    data=st.data(),
)
def test_any_chunking_gives_the_result_of_the_whole_text(
    body: str, comment: str, indent: str, replace: bool, data: st.DataObject
) -> None:
    answer = data.draw(
        st.sampled_from([body, "  " + body, CHATTY + body, f"```\n{body}\n```\n{body}"])
    )
    s = Shape(indent, "" if replace else comment, tabs=indent == "\t", dedented_only=replace)
    if replace:
        leader = data.draw(st.sampled_from(["", "#", "//", "--"]), label="leader")
        s = dataclasses.replace(s, inline=data.draw(st.booleans(), label="inline"), leader=leader)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(answer)), max_size=10)))
    chunks = [answer[i:j] for i, j in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    assert run(s, chunks) == whole(s, answer)
    assert run(s, list(answer)) == whole(s, answer)  # a character at a time


def fill(**kw: object) -> request.FillRequest:
    base: dict[str, object] = {
        "mode": "yap",
        "filetype": "python",
        "commentstring": "# %s",
        "before": "class A:\n    def f(self):\n        return 1\n",
        "after": "\n    def g(self):\n        pass\n",
        "spot": {"head": "", "rest": "", "blank": True},
    }
    return request.parse({**base, **kw})


def test_which_fills_are_shaped():
    assert shaping.for_fill(fill(), "line") == Shape("    ", "# %s")
    assert shaping.for_fill(fill(), "line", enabled=False) is None  # shape = false
    assert shaping.for_fill(fill(), "cursor") is None  # fill in the middle, inline
    for ft in ("markdown", "text", "help", "gitcommit", ""):
        assert shaping.for_fill(fill(filetype=ft, commentstring="<!-- %s -->"), "line") is None
    assert shaping.for_fill(fill(commentstring=""), "line") is None  # no comment syntax
    assert shaping.for_fill(fill(buftype="nofile"), "line") is None  # a scratch buffer
    assert shaping.for_fill(fill(debug=True), "line") is None
    assert shaping.for_fill(fill(followup=3), "line") is None
    replace = fill(mode="replace", selection="\tx = 1\n", expandtab=False, shiftwidth=8)
    want = Shape("\t", "", True, 8, dedented_only=True, leader="#")
    assert shaping.for_fill(replace, None) == want
    assert shaping.for_fill(fill(mode="replace", selection="x = 1"), None) is None
    block = dataclasses.replace(replace, span=Span("block", rows=((0, 0, 5),)))
    assert shaping.for_fill(block, None) is None  # a blockwise selection's columns


def test_the_target_indentation_is_the_cursor_lines_or_the_code_below_a_blank_line():
    spot = {"head": "        ret", "rest": "urn 1", "blank": False}
    assert shaping.target_indent(fill(spot=spot)) == "        "
    assert shaping.target_indent(fill()) == "    "  # blank: the next code line's
    at_end = fill(after="\n", before="class A:\n    x = 1\n")
    assert shaping.target_indent(at_end) == "    "  # nothing below: the line above's
    spaced = fill(spot={"head": "  ", "rest": "", "blank": True})
    assert shaping.target_indent(spaced) == "  "  # a blank line with its own indentation


def test_a_dedented_replace_that_starts_like_a_sentence_is_still_code():
    s = Shape("    ", dedented_only=True)
    assert whole(s, "for item in the_items:\n    use(item)\n") == (
        "    for item in the_items:\n        use(item)\n"
    )
    # a sentence with a fence after it: chatty, left for its end
    chatty = "The loop was wrong, fixed:\n\n```\nfor x in xs:\n    y()\n```\n"
    assert whole(s, chatty) == chatty


def test_kznapply_puts_a_dedented_answer_at_the_selections_indentation():
    assert shaping.reindent_for("if x:\n    y()", "\t\tz()\n") == "\t\tif x:\n\t\t\ty()"
    assert shaping.reindent_for("a()", "b()") == "a()"  # nothing to keep
    assert shaping.reindent_for("        a()", "    b()") == "        a()"  # deeper: as it is


def test_a_long_explanation_streams_as_comments_without_waiting_for_its_end():
    shaper = Shaper(Shape("", "# %s"))
    assert shaper.push("First, note this.\nThen do that.\n") == ""  # not known yet
    out = shaper.push("Finally, run it.\n")
    assert out == "# First, note this.\n# Then do that.\n# Finally, run it.\n"
    assert shaper.push("And one more thing.\nx = 1\n") == "# And one more thing.\nx = 1\n"


def test_a_long_line_without_a_break_is_shaped_in_linear_time():
    """80,000 pieces of one 4 MB line: only each new piece is searched for a line break
    and the line is joined once (a quadratic shaper copies ~160 GB here)."""
    import time

    shaper = Shaper(Shape("  ", "# %s"))
    piece = "x" * 50
    t0 = time.monotonic()
    assert all(shaper.push(piece) == "" for _ in range(80_000))
    out = shaper.finish()
    assert time.monotonic() - t0 < 5.0
    assert out == "  " + piece * 80_000


def test_the_shape_switch_of_setup_and_of_a_preset():
    from kznllm_py import settings
    from kznllm_py.errors import ConfigError
    from kznllm_py.prompt.presets import preset_from_dict

    assert settings.from_config({}).shape is True
    assert settings.from_config({"shape": False}).shape is False
    bad = settings.from_config({"shape": "no"})
    assert bad.shape is True and any("shape must be true or false" in p for p in bad.problems)
    raw = {"id": "p", "provider": "openai", "model": "m", "api_key": False}
    assert preset_from_dict({**raw, "shape": False}).shape is False
    assert preset_from_dict(raw).shape is None  # setup()'s
    try:
        preset_from_dict({**raw, "shape": 1})
    except ConfigError as exc:
        assert "shape must be true or false" in str(exc)
    else:
        raise AssertionError("shape = 1 was taken")


def test_code_streams_before_its_line_ends_and_prose_waits_for_its_end():
    shaper = Shaper(Shape("    ", "# %s"))
    assert shaper.push("```py\n    if x") == "    if x"  # code inside a fence: at once
    assert shaper.push(":\n        re") == ":\n        re"
    assert shaper.push("turn 1\n``") == "turn 1\n"  # "``" may close the fence: wait
    assert shaper.push("`\nThis is") == ""  # prose after a fence: a comment, whole
    assert shaper.push(" it.\n") == "    # This is it.\n"
    plain = Shaper(Shape("  ", "# %s"))
    assert plain.push("de") == ""  # column 0: its first word decides
    assert plain.push("f f") == "  def f"  # a lower-case first word: code, at once
    assert plain.push("():\n    ret") == "():\n      ret"  # indented: code at once


def test_a_line_at_column_0_streams_once_it_cannot_be_prose():
    shaper = Shaper(Shape("  ", "# %s"))
    assert shaper.push("Total ") == ""  # a sentence, maybe
    assert shaper.push("= 1") == "  Total = 1"  # "=": code, at once
    assert shaper.push(" + 2\n") == " + 2\n"
    word = Shaper(Shape("  ", "# %s"))
    assert word.push("total") == ""  # a first word not yet whole
    assert word.push(" ") == "  total "  # lower case, no opener: code, at once
    chatty = Shaper(Shape("", "# %s"))
    assert chatty.push("here is the fix: ") == ""  # an opener's first word: waits
    assert chatty.push("\n") == "# here is the fix:\n"  # a chatty first line: prose
    prose = Shaper(Shape("  ", "# %s"))
    assert prose.push("Set `a = b` first") == ""  # "=" inside a code span: prose, maybe
    assert prose.push(".\n") == ""
    assert prose.finish() == "  # Set `a = b` first.\n"
    opener = Shaper(Shape("", "// %s"))
    assert opener.push("Sure; here {") == ""  # a chatty first line: whole
    assert opener.push(" it is:\n") == "// Sure; here { it is:\n"


def test_a_replace_from_mid_line_goes_on_inline_and_the_rest_under_its_lines_indentation():
    s = Shape("        ", dedented_only=True, inline=True)
    # flush left: the first line goes on as it comes, the rest under the line's base,
    # keeping their indentation relative to the first line's (column 0)
    assert whole(s, "compute(a, b)\nlog(total)\nif total:\n    return total\n") == (
        "compute(a, b)\n        log(total)\n        if total:\n            return total\n"
    )
    # already as deep as the line: as it comes
    deep = "compute(a, b)\n\n        log(total)\n    odd()"
    assert whole(s, deep) == deep
    # the first line streams at once; what follows is decided as for a whole-line replace
    shaper = Shaper(s)
    assert shaper.push("comp") == "comp"
    assert shaper.push("ute(a)\n") == "ute(a)\n"
    assert shaper.push("    x") == "            x"  # indented: code, at once
    tabs = Shape("\t", tabs=True, dedented_only=True, inline=True)
    assert whole(tabs, "f(a)\nif x {\n  y()\n}") == "f(a)\n\tif x {\n\t\ty()\n\t}"


def replace_fill(before: str, selection: str, start: int) -> request.FillRequest:
    span = {"kind": "range", "range": [2, start, 4, 20]}
    return fill(mode="replace", before=before, selection=selection, span=span)


def test_a_charwise_replace_from_mid_line_takes_its_lines_indentation():
    before = "def f():\n    if ok:\n        total = "
    req = replace_fill(before, "compute(a,\n            b)\n        return total", 16)
    inline = Shape("        ", "", False, 4, True, inline=True, leader="#")
    assert shaping.for_fill(req, None) == inline
    # from the first non-blank character of an indented line: the same
    req = replace_fill("    if ok:\n        ", "total = 1\nreturn total", 8)
    assert shaping.for_fill(req, None) == inline
    # from the line's start: its first non-blank line's indentation, as a linewise one
    req = replace_fill("    if ok:\n", "        total = 1\n        return total", 0)
    assert shaping.for_fill(req, None) == dataclasses.replace(inline, inline=False)
    # a line at column 0: nothing to keep; the context cut inside the line: not known
    assert shaping.for_fill(replace_fill("x = ", "1\ny = 2", 4), None) is None
    assert shaping.for_fill(replace_fill("  total = ", "1\nreturn", 900), None) is None


def test_kznapply_puts_an_answer_from_mid_line_as_the_stream_would_have():
    code = "compute(a, b)\nreturn total"
    selection = "compute(a,\n  b)\n    return total"
    span = Span("range", (3, 12), (5, 16), head="    total = ")
    assert shaping.reindent_for(code, selection, span=span) == "compute(a, b)\n    return total"
    cut = Span("range", (3, 900), (5, 16), head="    total = ")  # its head cut: unknown
    assert shaping.reindent_for(code, selection, span=cut) == code


def test_kznapply_puts_an_answer_in_place_of_whole_lines_without_blank_lines_at_its_ends():
    lines = Span("range", (3, 0), (5, 12), tail_bytes=0)
    assert shaping.reindent_for("\nx = 1\n\n", "y = 2", span=lines) == "x = 1"
    inside = Span("range", (3, 0), (5, 12), tail="  # end", tail_bytes=7)  # not to the end
    assert shaping.reindent_for("\nx = 1\n", "y = 2", span=inside) == "\nx = 1\n"


def test_a_comment_at_column_0_above_code_as_deep_as_the_selection_gets_its_base():
    s = Shape("        ", dedented_only=True, leader="#")
    answer = "# helper for x\n\n        def helper(self):\n            return 1\n"
    assert whole(s, answer) == (
        "        # helper for x\n\n        def helper(self):\n            return 1\n"
    )
    # comments followed by dedented code: all of it shifts, as a dedented answer does
    dedented = "# helper for x\n# (fast)\ndef helper(self):\n    return 1"
    assert whole(s, dedented) == (
        "        # helper for x\n        # (fast)\n        def helper(self):\n            return 1"
    )
    # a comment alone: at the base
    assert whole(s, "# nothing to change\n") == "        # nothing to change\n"
    # a C comment, and a comment as deep already: as it comes
    c = Shape("\t", tabs=True, dedented_only=True, leader="//")
    assert whole(c, "// guard\n\tif (x) {\n\t\ty();\n\t}") == (
        "\t// guard\n\tif (x) {\n\t\ty();\n\t}"
    )
    assert whole(s, "        # deep\ndef f(): pass") == "        # deep\ndef f(): pass"


def test_comments_at_column_0_wait_for_the_code_then_it_streams_as_it_comes():
    shaper = Shaper(Shape("    ", dedented_only=True, leader="--"))
    assert shaper.push("-- the sum\n") == ""  # waits for the line of code after it
    assert shaper.push("\n    lo") == "    -- the sum\n\n    lo"  # deep: known at once
    assert shaper.push("cal x = 1\n") == "cal x = 1\n"
    # an ordinary answer is not held: the first line of code streams at once
    plain = Shaper(Shape("    ", dedented_only=True, leader="--"))
    assert plain.push("    local") == "    local"


def test_comments_held_are_bounded_then_decided_as_any_line():
    s = Shape("    ", dedented_only=True, leader="#")
    shaper = Shaper(s)
    many = "".join(f"# note {i}\n" for i in range(shape.NOTES_HELD + 1))
    out = shaper.push(many)  # one too many: decided as a dedented answer's lines
    assert out.startswith("    # note 0\n") and out.count("\n") == shape.NOTES_HELD + 1
    long = Shaper(dataclasses.replace(s, leader="//"))
    assert long.push("// " + "x" * shape.NOTES_BYTES + "\n").startswith("    // xxx")
