"""What the editor gathered at the keypress for a fill's context (the `context` table of
the `fill` call, lua/kznllm/context/), typed once and bounded. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section
from kznllm_py.prompt.sources import definitions, diagnostics, git, outline, scope
from kznllm_py.prompt.sources.outline import Outline
from kznllm_py.prompt.sources.scope import Scope

MAX_NOTES = 8


@dataclass(frozen=True, slots=True)
class Gathered:
    diagnostics: tuple[diagnostics.Diagnostic, ...] = ()
    # the language servers' definitions of the names used (read off the loop: fill/job.py)
    definitions: definitions.Asked = field(default_factory=definitions.Asked)
    scope: Scope | None = None  # the enclosing function, method or class
    outline: Outline | None = None  # the file's definitions
    # what the editor says about the gathering itself (a source that failed, a language
    # server that did not answer in time): one line each, shown in the debug view
    notes: tuple[str, ...] = ()
    # the file's uncommitted hunks, the host's answer at the keypress (context/git.lua)
    git: git.Changes | None = None


def parse(raw: object) -> Gathered:
    """The editor's `context` table (absent, or anything malformed: nothing gathered)."""
    if not isinstance(raw, Mapping):
        return Gathered()
    notes = raw.get("notes")
    return Gathered(
        diagnostics=diagnostics.parse(raw.get("diagnostics")),
        definitions=definitions.parse(raw.get("definitions")),
        scope=scope.parse(raw.get("scope")),
        outline=outline.parse(raw.get("outline")),
        notes=tuple(printable(n[:300]) for n in notes[:MAX_NOTES] if isinstance(n, str))
        if isinstance(notes, list)
        else (),
        git=git.parse(raw.get("git")),
    )


def sections(g: Gathered, path: str = "") -> list[Section]:
    """The sections of what the editor gathered (each source's own `section`)."""
    found = [diagnostics.section(g.diagnostics, path)]
    found += [git.section(g.git, path)] if g.git is not None else []
    found.append(scope.section(g.scope) if g.scope is not None else None)
    found.append(outline.section(g.outline, path) if g.outline is not None else None)
    return [s for s in found if s is not None]
