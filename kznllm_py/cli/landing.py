"""How `kznllm fill`'s answer lands: as the editor would put it in the file, so that what
the CLI prints for `--file F --range A:B`, pasted over lines A-B, gives what `:KznFill`
on those lines gives, and what it prints for `--line N` is what the editor writes below
line N. Pure: the editor's own shaping (fill/shaping.py `for_fill`, on a `FillRequest`
made as the editor would send it) and edges (fill/edges.py).

- `--range A:B` is a linewise selection: its blank lines at the top and bottom are not
  sent and stay (lua/kznllm/job/region.lua `inner_lines`; all blank: all of them); the
  answer is re-indented to the selection's base when it came dedented, without blank
  lines at its ends, printed between those blank lines (`Landing.top`, `.bottom`).
- a DOS file (every line break a CR LF) is printed with CR LF line breaks, the
  answer's too, as the editor's buffer is written (`Crlf`);
- `--line N` is the cursor on line N, the answer below it: fences out, prose as comments
  in the file's 'commentstring', code at line N's indentation.
- a piped selection (or --selection-file) is a replace, linewise when it ends with a
  line break (its blank edge lines then not sent, printed around the answer, as a
  range's); without --file nor a selection, the answer goes as it comes (a scratch
  buffer's).

The buffer options the editor would have, without starting a Neovim (`options_for`):
'commentstring', 'shiftwidth' and 'expandtab' as Neovim 0.11's own filetype plugins set
them (`nvim --clean`: NVIM_DEFAULTS), the file's own indentation over them when it shows
one (tabs or spaces, the step of its space indentation: as a user's guess-indent,
sleuth or .editorconfig would), `--commentstring` and `--shiftwidth` over both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from kznllm_py.fill import shape, shaping
from kznllm_py.fill.request import FillRequest, Spot

# filetype -> ('commentstring', 'shiftwidth', 'expandtab') as Neovim 0.11.4 sets them
# with its runtime's filetype plugins and no user config (`nvim --clean`, `set ft=X`)
NVIM_DEFAULTS: dict[str, tuple[str, int, bool]] = {
    "python": ("# %s", 4, True),
    "lua": ("-- %s", 8, False),
    "c": ("// %s", 8, False),
    "cpp": ("// %s", 8, False),
    "javascript": ("// %s", 8, False),
    "typescript": ("// %s", 8, False),
    "rust": ("// %s", 4, True),
    "go": ("// %s", 8, False),
    "ruby": ("# %s", 2, True),
    "sh": ("# %s", 8, False),
    "bash": ("# %s", 8, False),
    "zsh": ("# %s", 8, False),
    "yaml": ("# %s", 2, True),
    "toml": ("# %s", 8, False),
    "java": ("// %s", 8, False),
    "kotlin": ("// %s", 8, False),
    "haskell": ("-- %s", 8, False),
    "sql": ("-- %s", 8, False),
    "html": ("<!-- %s -->", 8, False),
    "css": ("/* %s */", 8, False),
    "vim": ('"%s', 8, False),
    "make": ("# %s", 8, False),
    "perl": ("# %s", 8, False),
    "php": ("/* %s */", 8, False),
    "swift": ("// %s", 4, True),
    "scala": ("// %s", 2, True),
    "cs": ("// %s", 8, False),
    "elixir": ("# %s", 2, True),
    "zig": ("// %s", 4, True),
    "terraform": ("# %s", 2, True),
    "dockerfile": ("# %s", 8, False),
    "r": ("# %s", 8, False),
    "julia": ("# %s", 8, False),
    "nix": ("# %s", 8, False),
}
NVIM_DEFAULT = ("", 8, False)  # Neovim's own, for a filetype without a plugin
GUESS_LINES = 2000  # lines of the file looked at for its indentation


@dataclass(frozen=True, slots=True)
class Buffer:
    """The options of the buffer the editor would have the file in."""

    commentstring: str = ""
    shiftwidth: int = 8
    expandtab: bool = False


@dataclass(frozen=True, slots=True)
class Landing:
    """How the answer is printed: `shape` (None: as it comes), without blank lines at
    its ends when it replaces whole lines (`lines`), between the range's blank lines at
    its top and bottom, which the editor leaves in place."""

    shape: shape.Shape | None = None
    lines: bool = False
    top: str = ""
    bottom: str = ""
    crlf: bool = False  # a DOS file ('fileformat' dos): every line break printed as CRLF


def dos(data: bytes) -> bool:
    """Whether Neovim reads `data` as a DOS file: it has line breaks, each a CR LF."""
    n = data.count(b"\n")
    return n > 0 and data.count(b"\r\n") == n


class Crlf:
    """Text with every line break a CR LF, as a DOS buffer is written (its own CR LFs
    kept), whatever the chunking: `push(text)`, then `finish()`."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = ""  # a CR at the end of the last piece: its LF may come next

    def push(self, text: str) -> str:
        text = self._cr + text
        self._cr = "\r" if text.endswith("\r") else ""
        text = text[:-1] if self._cr else text
        return text.replace("\r\n", "\n").replace("\n", "\r\n")

    def finish(self) -> str:
        cr, self._cr = self._cr, ""
        return cr


def indentation(lines: list[str]) -> tuple[bool | None, int | None]:
    """What a file's indentation shows (of its first GUESS_LINES lines): whether it
    indents with tabs (None: no indented line) and the step of its space indentation
    (the most frequent rise from one non-blank line to the next; None: none)."""
    tabs = spaces = 0
    rises: Counter[int] = Counter()
    previous = 0
    for line in lines[:GUESS_LINES]:
        if not line.strip():
            continue
        lead = shape.leading_space(line)
        if lead.startswith("\t"):
            tabs += 1
        elif lead:
            spaces += 1
            if "\t" not in lead and len(lead) > previous:
                rises[len(lead) - previous] += 1
        previous = len(lead) if "\t" not in lead else previous
    if not (tabs or spaces):
        return None, None
    step = rises.most_common(1)[0][0] if rises and spaces >= tabs else None
    return tabs > spaces, step


def options_for(
    filetype: str,
    lines: list[str],
    *,
    commentstring: str | None = None,
    shiftwidth: int | None = None,
) -> Buffer:
    """The buffer's options: Neovim's for `filetype`, the file's own indentation over
    them, the flags over both."""
    cms, width, expand = NVIM_DEFAULTS.get(filetype, NVIM_DEFAULT)
    tabs, step = indentation(lines)
    if tabs is not None:
        expand = not tabs
        if step is not None and not tabs:
            width = step
    return Buffer(
        cms if commentstring is None else commentstring,
        width if shiftwidth is None else shiftwidth,
        expand,
    )


def inner(lines: list[str], first: int, last: int) -> tuple[int, int]:
    """Lines `first`..`last` (1-based, inclusive) without the blank ones at their top
    and bottom (Vim's blank: nothing but spaces and tabs); all blank: all of them."""
    top, bottom = first, last
    while top <= last and not _text(lines[top - 1]):
        top += 1
    if top > last:
        return first, last
    while not _text(lines[bottom - 1]):
        bottom -= 1
    return top, bottom


def edges(selection: str) -> tuple[str, str, str]:
    """Whole lines `selection` as (its blank lines at the top, the lines between,
    its blank lines at the bottom), as `inner` splits a range."""
    lines = selection.splitlines(keepends=True)
    first, last = inner(lines, 1, len(lines))
    return "".join(lines[: first - 1]), "".join(lines[first - 1 : last]), "".join(lines[last:])


def _text(line: str) -> bool:
    return bool(line.strip(" \t\r\n"))


def for_range(
    selection: str,
    filetype: str,
    buffer: Buffer,
    *,
    top: str = "",
    bottom: str = "",
    enabled: bool = True,
    crlf: bool = False,
) -> Landing:
    """A replace of `selection` (whole lines when it ends with a line break), the blank
    lines `top` and `bottom` around it left in place; not shaped unless `enabled` (a
    preset's `shape = false`: its edges are still the editor's)."""
    linewise = selection.endswith("\n")
    req = FillRequest(
        mode="replace",
        selection=selection,
        filetype=filetype,
        linewise=linewise,
        commentstring=buffer.commentstring,
        expandtab=buffer.expandtab,
        shiftwidth=buffer.shiftwidth,
    )
    return Landing(shaping.for_fill(req, None, enabled=enabled), linewise, top, bottom, crlf)


def for_line(
    lines: list[str], n: int, filetype: str, buffer: Buffer, *, crlf: bool = False
) -> Landing:
    """An answer below line `n` (1-based) of the file's `lines` (with their line
    breaks), the cursor on it."""
    line = lines[n - 1].rstrip("\r\n")
    req = FillRequest(
        mode="yap",
        filetype=filetype,
        before="".join(lines[: n - 1]) + line,
        after="\n" + "".join(lines[n:]),
        commentstring=buffer.commentstring,
        expandtab=buffer.expandtab,
        shiftwidth=buffer.shiftwidth,
        spot=Spot(line, "", not line.strip()),
    )
    return Landing(shaping.for_fill(req, "below"), crlf=crlf)
