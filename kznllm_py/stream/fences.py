"""Strip a stray markdown fence around a replace-mode answer, while it streams.

Models asked for raw code sometimes answer "```python\\n...\\n```" anyway. `FenceStripper`
removes an opening fence line at the very start of the answer and, only when it did,
the closing fence at the end. It holds back as little as it can: at the start, only
while the text could still be an opening fence; inside a fenced answer, only a last
line that could be the closing fence. An answer that does not open with a fence
passes through untouched and undelayed.
"""

from __future__ import annotations

from dataclasses import dataclass

FENCE = "```"
_BLANK = " \t\r\n"


class FenceStripper:
    __slots__ = ("_held", "_state")

    def __init__(self) -> None:
        self._state = "start"  # start -> passthrough | fenced
        self._held = ""

    def push(self, text: str) -> str:
        if self._state == "passthrough":
            return text
        self._held += text
        if self._state == "start":
            return self._decide_start()
        return self._release_fenced()

    def finish(self) -> str:
        held, self._held = self._held, ""
        if self._state == "fenced":
            core = held.rstrip(_BLANK)
            cut = core.rfind("\n")
            if _is_closing(core[cut + 1 :]):
                return core[: max(cut, 0)]
            return held
        if self._state == "start" and _opening_line(held.strip(_BLANK)) is not None:
            return ""  # the answer was only an opening fence
        return held

    def _decide_start(self) -> str:
        held = self._held
        stripped = held.lstrip(" \t\r\n")
        if not stripped:
            return ""  # only blank so far: undecided
        if not (stripped.startswith(FENCE) or FENCE.startswith(stripped)):
            self._state = "passthrough"
            self._held = ""
            return held
        if "\n" not in stripped:
            return ""  # "```py" so far: wait for the end of the line
        first, _, rest = stripped.partition("\n")
        if _opening_line(first) is None:
            self._state = "passthrough"
            self._held = ""
            return held
        self._state = "fenced"
        self._held = rest
        return self._release_fenced()

    def _release_fenced(self) -> str:
        """Release all but a tail that could still turn out to be the closing fence:
        trailing blanks, and before them a last line that is or may become "```"."""
        held = self._held
        core = held.rstrip(_BLANK)
        cut = core.rfind("\n")
        keep_from = len(core)
        if _could_be_closing(core[cut + 1 :]):
            keep_from = max(cut, 0)
        out, self._held = held[:keep_from], held[keep_from:]
        return out


def _opening_line(line: str) -> str | None:
    """The info string if `line` is an opening fence ("```", "```python"), else None."""
    line = line.rstrip("\r").strip()
    if not line.startswith(FENCE) or "`" in line[3:]:
        return None
    info = line[3:].strip()
    return info if " " not in info else None


def _could_be_closing(line: str) -> bool:
    s = line.rstrip("\r").strip()
    return FENCE.startswith(s) or _is_closing(s)


def _is_closing(line: str) -> bool:
    return line.rstrip("\r").strip() == FENCE


@dataclass(frozen=True, slots=True)
class Fenced:
    """A text's fenced code blocks, by line: `blocks`, the (opening, closing) lines of
    each closed block ("```" or "```lang" to a "```" line); `open_from`, the opening
    line of a last block left open (an answer cut short); `marks`, every line that
    starts with ``` (a fence, or prose that starts like one)."""

    lines: tuple[str, ...]
    blocks: tuple[tuple[int, int], ...]
    open_from: int | None
    marks: tuple[int, ...]

    def code(self, block: tuple[int, int]) -> str:
        return "\n".join(self.lines[block[0] + 1 : block[1]])

    def unclosed(self) -> str | None:
        """The content of the block left open, if any."""
        return None if self.open_from is None else "\n".join(self.lines[self.open_from + 1 :])

    def prose_around(self) -> bool:
        """Whether anything but blanks stands before the first line starting with ```
        or after the last."""
        if not self.marks:
            return any(x.strip() for x in self.lines)
        outside = self.lines[: self.marks[0]] + self.lines[self.marks[-1] + 1 :]
        return any(x.strip() for x in outside)


def fenced(text: str) -> Fenced:
    """The fenced code blocks of `text` (see `Fenced`): the one reading of fences for
    the stream's end (`only_code`) and :KznApply (kznllm_py/apply.py)."""
    lines = text.split("\n")
    blocks: list[tuple[int, int]] = []
    marks: list[int] = []
    start: int | None = None
    for i, line in enumerate(lines):
        if line.rstrip("\r").strip().startswith(FENCE):
            marks.append(i)
        if start is None:
            if _opening_line(line) is not None:
                start = i
        elif _is_closing(line):
            blocks.append((start, i))
            start = None
    return Fenced(tuple(lines), tuple(blocks), start, tuple(marks))


def only_code(answer: str) -> str | None:
    """A chatty replace-mode answer: prose, exactly one fenced code block (an opening
    fence line "```" or "```lang", a closing "```" line), maybe more prose after. Returns
    the block's content (what the code should become), or None when the answer is not
    that shape (no block, several, an unclosed one, another line that starts with ```,
    or nothing but the block: the stripper handles that while it streams)."""
    found = fenced(answer)
    if len(found.marks) != 2 or found.blocks != (found.marks,):
        return None
    if not found.prose_around():
        return None  # no prose: not chatty
    return found.code(found.blocks[0])
