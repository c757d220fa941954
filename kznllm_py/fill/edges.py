"""A linewise replace's answer without blank lines at its start or its end, while it
streams: pure.

A linewise selection's blank lines at its top and bottom are not replaced (the editor
leaves them out of the region: lua/kznllm/job/region.lua `inner_lines`); the answer
goes between them. Models add or strip blank lines at an answer's ends at will, so
those are dropped: the blank line that separated the selected function from the next
one stays, and none is added. Only blanks are held back (the text streams as it
comes), and only until the next text that is not blank, or the end.
"""

from __future__ import annotations

_BLANK = " \t\r\n"


class Edges:
    """`push(text)` gives what of the answer so far goes to the buffer (the same result
    whatever the chunking), `finish()` ends it: what is held goes. Holds back at most
    the blanks after the last text that is not blank, from the first line break among
    them (before the first text: the current line's)."""

    __slots__ = ("_ended", "_held", "_started")

    def __init__(self) -> None:
        self._started = False  # a character that is not blank came
        self._held = ""  # blanks not written yet
        self._ended = False

    def push(self, text: str) -> str:
        if not text or self._ended:
            return ""
        if self._started and not self._held and text[-1] not in _BLANK:
            return text  # the common case: nothing held, nothing to hold
        text = self._held + text
        if not self._started:
            core = text.lstrip(_BLANK)
            if not core:  # blank so far: only the line in progress may count
                self._held = text[text.rfind("\n") + 1 :]
                return ""
            # the blank lines before the first text go; that line's indentation stays
            text = text[text.rfind("\n", 0, len(text) - len(core)) + 1 :]
            self._started = True
        core = text.rstrip(_BLANK)
        # a line's own white space goes as it comes; from its line break on, it waits
        blank = text[len(core) :]
        cut = len(blank.split("\n", 1)[0].split("\r", 1)[0])
        self._held = blank[cut:]
        return text[: len(core) + cut]

    def finish(self) -> None:
        """The end: what is held (line breaks and blank lines after the last text) goes."""
        self._held, self._ended = "", True


def trimmed(text: str) -> str:
    """`text` as `Edges` gives it, whole."""
    return Edges().push(text)
