"""What the CLI knows of `--file`: its bytes, read once and confined, and the context
Neovim's tree-sitter gives of it (--scope: the enclosing function or class of
--range/--line; --outline: the file's definitions), as the editor's sections.

Defaults: with --file, the outline and (with --range/--line) the scope are on when a
Neovim is found, as in the editor (a headless Neovim costs ~60-100 ms beside a request of
seconds); what is missing then (no Neovim, no parser for the file type) is a note of
`kznllm render`'s view, not a line on every fill. Asked for by name (--outline,
--scope), what is missing is one line on stderr; --no-outline/--no-scope: never run."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from kznllm_py.errors import KznError
from kznllm_py.prompt import context, project_templates
from kznllm_py.prompt.sections import Section
from kznllm_py.prompt.sources import headless, outline, scope
from kznllm_py.prompt.sources.outline import Outline
from kznllm_py.prompt.sources.scope import Scope

MAX_FILE_BYTES = 8 * 1024 * 1024  # --file, from fstat before a byte is read


def read_file(path: Path) -> bytes:
    """The bytes of --file, read once: a regular file (a FIFO or a device is refused
    without hanging) of at most MAX_FILE_BYTES (refused unread, from fstat); a link on
    its way is followed only to inside the project it is in (the git root of its folder,
    else that folder), as a project's files are (docs/SECURITY.md)."""
    given = os.path.abspath(path)
    real = os.path.realpath(given)
    if real != given:
        root = os.path.realpath(context.project_root(Path(os.path.dirname(given))))
        if not project_templates.inside(real, root):
            raise KznError(f"--file {path}: a link to outside the project ({real}; refused)")
    try:
        fd = os.open(real, project_templates.OPEN_FLAGS)
    except OSError as exc:
        raise KznError(f"--file {path}: cannot open it: {exc.strerror or exc}") from None
    try:
        return project_templates.read_regular(fd, MAX_FILE_BYTES, f"--file {path}", KznError)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the flags ask for: the sources to run, and those named (a missing one is
    then said on stderr)."""

    want: frozenset[str]
    named: frozenset[str]


def asked(outline_flag: bool | None, scope_flag: bool | None, positioned: bool) -> Asked:
    """The sources --outline/--scope (None: not given, the default) ask for; the scope
    only with a position (--range or --line)."""
    flags = {"outline": outline_flag, "scope": scope_flag}
    want = {s for s, on in flags.items() if on is not False}
    if not positioned:
        want.discard("scope")
    return Asked(frozenset(want), frozenset(s for s, on in flags.items() if on))


def rows_of(data: bytes, first: int, last: int, after_line: bool) -> tuple[int, int, int, int]:
    """The editor's range (0-based, end exclusive) of lines `first`..`last` (1-based; a
    linewise selection, as `V`), or of the end of line `first` (--line: the answer goes
    after it)."""
    lines = data.split(b"\n", last)
    end = len(lines[last - 1]) if last - 1 < len(lines) else 0
    if after_line:
        return first - 1, end, first - 1, end
    return first - 1, 0, last - 1, end


def framed(s: Scope, first: int, last: int) -> Scope:
    """`s` with its bytes before and after the CLI's selection (lines `first`..`last`,
    whole, with their line break; for --line N, `first` is N + 1 and `last` N), as the
    CLI splits the file, so `fitted` can tell when the lines around hold it whole."""
    if s.cut or not s.start <= first <= last + 1 <= s.end + 1:
        return replace(s, head=None, tail=None)
    lines = s.text.split("\n")
    head = "".join(line + "\n" for line in lines[: first - s.start])
    tail = "\n".join(lines[last - s.start + 1 :])
    return replace(s, head=len(head.encode()), tail=len(tail.encode()))


@dataclass(frozen=True, slots=True)
class TreeContext:
    sections: tuple[Section, ...] = ()
    scope: Scope | None = None
    outline: Outline | None = None
    # what is missing and why: said on stderr (`loud`, a source named by its flag) or
    # only in the notes of render's view
    problem: str = ""
    loud: bool = False


def tree_context(
    data: bytes,
    path: str,
    *,
    what: Asked,
    where: tuple[int, int] | None,
    after_line: bool,
    filetype: str,
    budget: int,
    deadline: float,
) -> TreeContext:
    """The scope and outline sections of --file (bytes `data`) around `where` (the
    --range lines, or (N, N) for --line N; None: neither, the outline around the file's
    end, where the CLI's buffer context puts the cursor)."""
    if not what.want:
        return TreeContext()
    if where is None:
        end = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        where, after_line = (max(1, end), max(1, end)), True
    first, last = where
    rows = rows_of(data, first, last, after_line)
    found = headless.ask(
        data,
        path,
        rows=rows,
        want=what.want,
        filetype=filetype,
        budget=budget,
        deadline=deadline,
    )
    out: list[Section] = []
    sc = found.scope
    if sc is not None:
        sc = framed(sc, first + 1 if after_line else first, last)
        out.append(scope.section(sc))
    if found.outline is not None:
        out.append(outline.section(found.outline, path))
    return TreeContext(
        sections=tuple(out),
        scope=sc,
        outline=found.outline,
        problem=found.problem,
        loud=bool(found.problem) and bool(what.named),
    )
