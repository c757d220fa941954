"""What the editor gathered at the keypress for a fill's context (the `context` table of
the `fill` call, lua/kznllm/context/), typed once and bounded. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section
from kznllm_py.prompt.sources import diagnostics, git

MAX_NOTES = 8


@dataclass(frozen=True, slots=True)
class Gathered:
    diagnostics: tuple[diagnostics.Diagnostic, ...] = ()
    # what the editor says about the gathering itself (a source that failed, a language
    # server that did not answer in time): one line each, shown in the debug view
    notes: tuple[str, ...] = ()
    # the buffer's text when it has unsaved edits and git is on (lua/kznllm/context/git.lua)
    unsaved: str | None = None


def parse(raw: object) -> Gathered:
    """The editor's `context` table (absent, or anything malformed: nothing gathered)."""
    if not isinstance(raw, Mapping):
        return Gathered()
    notes = raw.get("notes")
    return Gathered(
        diagnostics=diagnostics.parse(raw.get("diagnostics")),
        notes=tuple(printable(n[:300]) for n in notes[:MAX_NOTES] if isinstance(n, str))
        if isinstance(notes, list)
        else (),
        unsaved=_unsaved(raw.get("git")),
    )


def _unsaved(raw: object) -> str | None:
    """The git source's buffer text, if it is one and within git's size cap."""
    text = raw.get("text") if isinstance(raw, Mapping) else None
    return text if isinstance(text, str) and len(text) <= git.MAX_BYTES else None


def sections(g: Gathered, path: str = "") -> list[Section]:
    """The sections of what the editor gathered (each source's own `section`)."""
    found = [diagnostics.section(g.diagnostics, path)]
    return [s for s in found if s is not None]
