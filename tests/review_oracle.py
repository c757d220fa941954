"""An independent oracle for review tests: the hunks of an answer against the lines it
replaces (Python's difflib, over plain data) and what a mix of accepts and rejects must
leave. The plugin itself diffs in the editor with Neovim's own C diff
(lua/kznllm/review_diff.lua); the host never diffs.

While the answer streams, its last line may still grow and the original lines past the
last one the answer has matched may still come back; those are `pending`, not deletions.
Line numbers are 0-based offsets in the answer (`new_start`) and in the original
(`old_start`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Literal

Kind = Literal["add", "change", "delete"]


@dataclass(frozen=True, slots=True)
class Hunk:
    new_start: int  # first answer line of the hunk (where a deletion shows)
    new_count: int  # answer lines in it (0: the original lines were only removed)
    old_start: int
    old: tuple[str, ...]  # the original lines it replaces (empty: only added)

    @property
    def kind(self) -> Kind:
        if not self.old:
            return "add"
        return "delete" if self.new_count == 0 else "change"

    def to_dict(self) -> dict[str, Any]:
        return {
            "new_start": self.new_start,
            "new_count": self.new_count,
            "old_start": self.old_start,
            "old": list(self.old),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class Diff:
    hunks: tuple[Hunk, ...]
    # streaming only: the original lines not yet reached, and where the answer stands
    pending: tuple[str, ...] = ()
    compared: int = 0  # answer lines compared (the complete ones)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hunks": [h.to_dict() for h in self.hunks],
            "pending": list(self.pending),
            "compared": self.compared,
        }


def split_lines(text: str) -> list[str]:
    """The buffer lines a text makes ("a\\nb" and "a\\nb\\n" differ: the second ends
    with an empty line, as set_text would write it)."""
    return text.split("\n")


def diff(original: Sequence[str], answer: str, *, complete: bool) -> Diff:
    """The hunks between the original lines and the answer (as text, so far)."""
    new = split_lines(answer)
    if not complete:
        new = new[:-1]  # the last line may still grow
    old = list(original)
    ops = SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    if not complete:
        # past the last match nothing is decided yet: the answer's lines there are new
        # (an addition so far), the original's are pending
        last = max((k for k, op in enumerate(ops) if op[0] == "equal"), default=-1)
        i_end = ops[last][2] if last >= 0 else 0
        j_end = ops[last][4] if last >= 0 else 0
        hunks = [_hunk(old, op) for op in ops[: last + 1] if op[0] != "equal"]
        if j_end < len(new):
            hunks.append(Hunk(j_end, len(new) - j_end, i_end, ()))
        return Diff(tuple(hunks), tuple(old[i_end:]), len(new))
    return Diff(tuple(_hunk(old, op) for op in ops if op[0] != "equal"), (), len(new))


def _hunk(old: Sequence[str], op: tuple[str, int, int, int, int]) -> Hunk:
    _, i1, i2, j1, j2 = op
    return Hunk(j1, j2 - j1, i1, tuple(old[i1:i2]))


def resolve(original: Sequence[str], answer: str, keep: Sequence[bool]) -> str:
    """The text that accepting the hunks marked True in `keep` (one per hunk of the
    complete diff, in order) and rejecting the others gives."""
    new = split_lines(answer)
    hunks = diff(original, answer, complete=True).hunks
    if len(keep) != len(hunks):
        raise ValueError(f"want {len(hunks)} choices, got {len(keep)}")
    out: list[str] = []
    j = 0
    for hunk, accepted in zip(hunks, keep, strict=True):
        out.extend(new[j : hunk.new_start])
        out.extend(new[hunk.new_start : hunk.new_start + hunk.new_count] if accepted else hunk.old)
        j = hunk.new_start + hunk.new_count
    out.extend(new[j:])
    return "\n".join(out)
