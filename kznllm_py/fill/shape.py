"""An answer shaped for the file it lands in, while it streams: pure, line-based.

Asked at the cursor of a code buffer (no selection), a model is told to answer with code
only; models disobey ("Sure! Here is a helper:", a ```python fence, "This returns 42."),
so the text is shaped on its way to the buffer (`Shaper`, `push` + `finish`, the same
result whatever the chunking):

- fence lines (CommonMark: ``` or ~~~, 3 or more, indented 0-3 spaces; a closing fence
  as long as its opening or longer) are dropped, what is inside them is code;
- once the answer has had a fence, every line outside one is prose: a comment in the
  buffer's 'commentstring' (`# %s`, `// %s`, `/* %s */`, `-- %s`);
- before any fence, a leading chatty line ("Sure! Here is ...") is prose; a run of
  sentence-like lines at column 0 is held until what follows tells: a fence or the end
  of the answer makes it prose, a line of code makes it code; a third sentence in a
  row makes it prose at once;
- code keeps its own relative indentation under the target's (the cursor line's), in
  the buffer's tabs or spaces; blank lines stay blank (no trailing spaces).

Each line is decided as a whole, but a line sure to be code (inside a fence; where no
fence was seen, indented, or at column 0 with = ; { or } before any `code span`) is
written from there on, as it comes; prose and a possible fence wait for their end.

A replace only re-indents: when the answer's first non-blank line is indented less than
the selection's, every line gets the selection's base (`Shape.dedented_only`). A
charwise selection that starts mid-line (`Shape.inline`) has its line's indentation for
base: the answer's first line goes on that line as it comes, and the rest are decided
the same way on the first non-blank line after it, the first line counting as column 0.
A comment at column 0 in the buffer's syntax (`Shape.leader`) is no such first line: a
few of them wait for the line of code after them (NOTES_HELD lines, NOTES_BYTES at
most, then they decide as any line); code at the selection's depth after them gives
them the selection's base and goes as it comes; code dedented after them shifts all.

Nothing is lost: history records the text before it is shaped; the buffer gets this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

# filetypes whose buffers take prose, as written (a 'commentstring' there is for markup)
PROSE_FILETYPES = frozenset(
    {
        "",
        "text",
        "markdown",
        "help",
        "gitcommit",
        "gitrebase",
        "mail",
        "rst",
        "asciidoc",
        "org",
        "norg",
        "tex",
        "plaintex",
        "kznllm",
    }
)

# sentence lines in a row (blank lines between them aside) that are prose at once,
# without waiting for what follows: a long explanation streams in as comments
PROSE_RUN = 3
# characters of a line at column 0 looked at again for = ; { } (bounded: no quadratic)
COL0_LOOK = 256
# a replace's comment lines at column 0 that wait for the code after them, at most
NOTES_HELD = 8
NOTES_BYTES = 4096

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
# a chatty first line: "Sure! Here is ...", "Certainly.", "Here's a helper:", "I'll ..."
_OPENER = re.compile(
    r"^(?:sure|certainly|of course|absolutely|alright|okay|great|here(?:'s|\u2019s| is| are)"
    r"|below is|i(?:'ve|\u2019ve| have|'ll|\u2019ll| will)|let me)\b(?!\s*[=(\[])",
    re.IGNORECASE,
)
# the first word of a line, complete (what follows it is known): in lower case, an
# identifier or a keyword (`def`, `int`, `return`, `local`), unless it opens a chatty
# sentence (_OPENER's first words)
_FIRST_WORD = re.compile(r"[a-z_][A-Za-z0-9_]*(?=[^A-Za-z0-9_'\u2019])")
_OPENER_WORDS = frozenset(
    [
        "sure",
        "certainly",
        "of",
        "absolutely",
        "alright",
        "okay",
        "great",
        "here",
        "below",
        "i",
        "let",
    ]
)
_CODE_SPAN = re.compile(r"`[^`]*`")
_NOT_PROSE = re.compile(r"[{};=]")
_MARKDOWN = re.compile(r"^(?:#{1,6} |[-*+] |\d{1,3}[.)] )\S")


@dataclass(frozen=True, slots=True)
class Shape:
    """How an answer is shaped for its buffer: `indent` is the target's base
    indentation (as the buffer writes it); `comment` the buffer's 'commentstring' ('':
    only re-indent, as a replace does); `tabs` whether the buffer indents with tabs;
    `width` the columns of one level there ('shiftwidth')."""

    indent: str = ""
    comment: str = ""
    tabs: bool = False
    width: int = 4
    dedented_only: bool = False  # a replace: shift only an answer indented less
    inline: bool = False  # a replace from mid-line: the first line goes as it comes
    leader: str = ""  # a replace: the buffer's comment leader ('#', '//'), if any


def comment_parts(commentstring: str) -> tuple[str, str] | None:
    """'commentstring' as its left and right parts, or None when it is no comment
    syntax (empty, no `%s`, nothing around it)."""
    left, sep, right = commentstring.partition("%s")
    if not sep or not (left.strip() or right.strip()) or "%s" in right:
        return None
    return left, right


def columns(ws: str, width: int) -> int:
    """The columns of leading whitespace `ws`, a tab counting to the next multiple of
    `width`."""
    col = 0
    for ch in ws:
        col = (col // width + 1) * width if ch == "\t" else col + 1
    return col


def _closes(fence: re.Match[str], char: str, n: int) -> bool:
    """Whether a fence line closes a block opened with `n` of `char`."""
    run = fence.group(1)
    return run[0] == char and len(run) >= n and not fence.group(2).strip()


def leading_space(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _code_word(line: str) -> bool:
    """A line at column 0 whose first word is written in lower case and opens no chatty
    sentence: code (a model's prose starts with a capital), known at that word's end."""
    found = _FIRST_WORD.match(line)
    return found is not None and found.group() not in _OPENER_WORDS


def _sentence(line: str) -> bool:
    """A line of prose as a model writes it, at column 0: a markdown heading or list
    item, or words (three or more) ending in . ! ? or :, with no braces, ; or =
    outside `code spans`; not one whose first word is code's (`_code_word`)."""
    if not line or line[0] in " \t" or _code_word(line):
        return False
    if _MARKDOWN.match(line):
        return True
    text = _CODE_SPAN.sub("x", line).rstrip()
    if not text[:1].isalpha() or _NOT_PROSE.search(text):
        return False
    return len(text.split()) >= 3 and text.rstrip("*_\"')").endswith((".", "!", "?", ":"))


class Shaper:
    """`push(text)` gives what of the answer so far is shaped (whole lines), `finish()`
    the rest. Holds back at most the line in progress and a run of would-be prose."""

    __slots__ = (
        "_base",
        "_buf",
        "_fence",
        "_first",
        "_held",
        "_in_prose",
        "_left",
        "_line_state",
        "_notes",
        "_opened",
        "_pass",
        "_right",
        "_seen",
        "_seen_fence",
        "_unit",
        "shape",
    )

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        parts = comment_parts(shape.comment)
        self._left, self._right = parts if parts is not None else ("", "")
        self._buf: list[str] = []  # the pieces of the line in progress
        self._fence: tuple[str, int] | None = None  # inside a fence: its char and length
        self._seen_fence = False
        self._held: list[str] = []  # a run of would-be prose, with their line ends
        self._in_prose = False  # the run of sentences so far is prose (PROSE_RUN)
        self._opened = False  # the answer's first non-blank line is past
        self._base: int | None = None  # the answer's base indentation (columns), per block
        self._unit = 0  # the answer's indentation step (columns), for a tab buffer
        self._pass = False  # a replace indented as deep as its selection: as it comes
        # the line in progress: "" undecided, "open" its start is written (code: the rest
        # follows as it comes), "whole" it waits for its end (prose, a fence, column 0)
        self._line_state = ""
        self._seen = 0  # characters of a column-0 line looked at (COL0_LOOK at most)
        self._first = shape.inline  # on the first line of a replace from mid-line
        self._notes = False  # a replace's held lines are comments at column 0

    def push(self, text: str) -> str:
        if self._first:  # the rest of the line the selection starts on: as it comes
            end = text.find("\n") + 1
            if not end:
                return text
            self._first = False
            return text[:end] + (self.push(text[end:]) if end < len(text) else "")
        if self._pass:
            return text
        out: list[str] = []
        if self._line_state == "open":  # a line of code under way: as it comes
            end = text.find("\n") + 1
            if not end:
                return text
            out.append(text[:end])
            text, self._line_state = text[end:], ""
        # only the new piece is looked at for a line break: a long line stays linear
        if "\n" in text:
            *lines, text = text.split("\n")
            if self._buf:
                lines[0] = "".join(self._buf) + lines[0]
                self._buf = []
            out += [self._line(line) for line in lines]
            self._line_state = ""
        if text:
            if self._pass:
                out.append(text)
            else:
                self._buf.append(text)
                out.append(self._start(text))
        return "".join(out)

    def finish(self) -> str:
        if self._pass:
            return ""
        out = ""
        if self._buf:
            out = self._line("".join(self._buf), end="")
        self._buf, self._line_state = [], ""
        return out + self._release(prose=bool(self._left))

    # -- the start of a line, before its end ----------------------------------------

    def _start(self, piece: str) -> str:
        """Write the start of the line in progress as soon as it is sure to be code, as
        its whole would be written (so every chunking gives the same text); else wait."""
        state = self._line_state
        if state == "col0":  # a line at column 0: code once it has = ; { or }
            self._seen += len(piece)
            if self._seen > COL0_LOOK:
                self._line_state = "whole"
            if self._line_state == "whole":
                return ""
            line = "".join(self._buf)  # at most COL0_LOOK characters
            if not (_NOT_PROSE.search(piece) or _code_word(line)):
                return ""
            write = self._col0_code(line)
        elif state or not piece.strip(" \t\r"):
            return ""  # decided already, or nothing but blanks yet
        else:
            line = "".join(self._buf)  # once a line: its first non-blank decides
            self._seen = len(line)
            lead = leading_space(line)
            first = line[len(lead)]
            fence_like = len(lead) <= 3 and "\t" not in lead and first in "`~"
            start = self._code_start(lead, first, fence_like)
            if start == "col0":
                write = self._col0_code(line)
                if write is None:
                    self._line_state = "col0"
                    return ""
            else:
                write = start
        if write is None:
            self._line_state = "whole"
            return ""
        out = write(line)
        self._buf = []
        self._line_state = "" if self._pass else "open"
        return out

    def _code_start(
        self, lead: str, first: str, fence_like: bool
    ) -> Callable[[str], str] | Literal["col0"] | None:
        """How the start of a line is written when it is code whatever follows, else
        None: `_line`'s decisions, on what is known before the line ends."""
        if not self._left:  # a replace
            if self._base is not None:
                return self._code_part
            width = self.shape.width
            deep = columns(lead, width) >= columns(self.shape.indent, width)
            if self._notes:  # after comments at column 0: deep code gives them the base
                return self._after_notes if deep and not fence_like else None
            if self._held:  # after a first line that reads as a sentence
                return None if fence_like else self._released
            if deep:
                return self._let_pass
            return self._code_part if lead else None  # column 0: a sentence, maybe
        if self._fence is not None:
            return None if fence_like and first == self._fence[0] else self._code_part
        if self._seen_fence or fence_like:
            return None  # prose; maybe a fence
        if not lead:
            return "col0"  # a sentence or an opener, maybe: see _col0_code
        self._opened = True
        self._in_prose = False
        return self._released

    def _col0_code(self, line: str) -> Callable[[str], str] | None:
        """A line at column 0 (no fence seen) is code before its end once it cannot be
        prose: a markdown heading or item, an opener, or a sentence (one with = ; { or
        } before any `code span`, or whose first word is code's: `_code_word`)."""
        first = line[0]
        if first in "#-*+" or first.isdigit():
            return None
        if not (_code_word(line) or _NOT_PROSE.search(line.split("`", 1)[0])):
            return None
        if not self._opened and _OPENER.match(line):
            return None
        self._opened = True
        self._in_prose = False
        return self._released

    def _code_part(self, line: str) -> str:
        return self._code(line, "")

    def _released(self, line: str) -> str:
        return self._release(prose=False) + self._code(line, "")

    # -- one whole line -----------------------------------------------------------

    def _line(self, raw: str, end: str = "\n") -> str:
        if self._pass:
            return raw + end
        line = raw[:-1] if raw.endswith("\r") else raw
        eol = "\r" + end if raw.endswith("\r") else end
        if not self._left:  # a replace: re-indent only
            return self._reindent(line, eol)
        fence = _FENCE.match(line)
        if self._fence is not None:  # inside a fence: code, up to its closing fence
            char, n = self._fence
            if fence and _closes(fence, char, n):
                self._fence = None
                return ""
            return self._code(line, eol)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            out = self._release(prose=True)
            self._fence, self._seen_fence, self._opened = (
                (fence.group(1)[0], len(fence.group(1))),
                True,
                True,
            )
            self._base = None  # each block has its own base
            return out
        if not line.strip():
            if self._held:
                self._held.append(eol)
                return ""
            return eol
        if self._seen_fence:
            return self._prose(line, eol)
        if not self._opened:
            self._opened = True
            if _OPENER.match(line):
                return self._prose(line, eol)
        if _sentence(line):
            if self._in_prose:  # more of a run known to be prose
                return self._prose(line, eol)
            self._held.append(line + eol)
            if sum(1 for x in self._held if x.strip()) < PROSE_RUN:
                return ""
            self._in_prose = True  # that many sentences are no code
            return self._release(prose=True)
        self._in_prose = False
        return self._release(prose=False) + self._code(line, eol)

    def _release(self, *, prose: bool) -> str:
        held, self._held, self._notes = self._held, [], False
        out = []
        for item in held:
            line = item.rstrip("\r\n")
            eol = item[len(line) :]
            out.append(self._prose(line, eol) if prose else self._code(line, eol))
        return "".join(out)

    def _prose(self, line: str, eol: str) -> str:
        text = line.rstrip()
        if not text:
            return eol
        left, right = self._left, self._right
        leader = left.strip()
        if not (leader and text.lstrip().startswith(leader)):  # a comment already: as is
            closing = right.strip()
            if len(closing) > 1:  # prose cannot end the comment early
                text = text.replace(closing, closing[0] + " " + closing[1:])
            text = f"{left}{text}{right}".rstrip()
        return self.shape.indent + text + eol

    def _code(self, line: str, eol: str) -> str:
        if not line.strip():
            return eol
        width = self.shape.width
        lead = leading_space(line)
        col = columns(lead, width)
        if self._base is None:  # after a first line that went inline, it was column 0
            self._base = 0 if self.shape.inline else col
        rel = max(0, col - self._base)
        return self.shape.indent + self._indent(rel) + line[len(lead) :] + eol

    def _indent(self, rel: int) -> str:
        if not rel:
            return ""
        if not self.shape.tabs:
            return " " * rel
        if not self._unit:
            self._unit = rel  # the answer's own step: one level, one tab
        return "\t" * (rel // self._unit) + " " * (rel % self._unit)

    def _reindent(self, line: str, eol: str) -> str:
        if self._base is not None:
            return self._code(line, eol)
        deep = columns(leading_space(line), self.shape.width) >= columns(
            self.shape.indent, self.shape.width
        )
        if self._held:  # a first line that reads as a sentence: a fence after it is chatty
            if not line.strip():
                self._held.append(eol)
                return ""
            if _FENCE.match(line):
                return self._let_pass(line + eol)
            if self._notes and self._note(line):
                self._held.append(line + eol)
                return ""
            if self._notes and deep:
                return self._after_notes(line + eol)
            self._notes = False
            return self._release(prose=False) + self._code(line, eol)
        if not line.strip():
            return line + eol
        if not deep and self._note(line):  # a comment at column 0: the code after it tells
            self._notes = True
            self._held.append(line + eol)
            return ""
        if deep or _OPENER.match(line):
            # as deep as the selection already, or chatty (its code is cut out and
            # re-indented at the end: `reindent`): untouched
            return self._let_pass(line + eol)
        if _sentence(line):
            self._held.append(line + eol)
            return ""
        return self._code(line, eol)

    def _note(self, line: str) -> bool:
        """A comment at column 0 that may wait for the code after it (a few, bounded)."""
        leader = self.shape.leader
        if not leader or not line.startswith(leader):
            return False
        held = self._held
        return sum(1 for x in held if x.strip()) < NOTES_HELD and (
            sum(map(len, held)) + len(line) <= NOTES_BYTES
        )

    def _after_notes(self, text: str) -> str:
        """Code as deep as the selection after comments at column 0: they get its base,
        and the code goes as it comes."""
        indent = self.shape.indent
        notes = "".join(indent + x if x.strip() else x for x in self._held)
        self._held, self._notes = [], False
        return self._let_pass(notes + text)

    def _let_pass(self, text: str) -> str:
        held, self._held = "".join(self._held), []
        self._pass = True
        return held + text


def reindent(text: str, shape: Shape) -> str:
    """`text` as a replace's shaper gives it, whole (a chatty answer's code, cut out at
    its end)."""
    s = Shaper(replace(shape, comment=""))
    return s.push(text) + s.finish()
