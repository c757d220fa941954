"""What the fuzz properties (tests/stream/test_fuzz.py) draw streams from: one event of a wire
format, a case (the events and what they should yield), and the texts models stream.
A provider's test file that brings a new wire format declares `FUZZ_CASES = {name:
strategy of Case}` (and, optionally, `FUZZ_TOKENS = {name: [bytes]}`, the field names its
parser looks at), and every property covers it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from kznllm_py.providers.base import Delta, TextDelta, UsageDelta

BOM = "\ufeff"


@dataclass(frozen=True)
class WireEvent:
    """One SSE event (`name` is its `event:` line, if any) or one NDJSON line. A str
    payload goes on the wire as it is (`[DONE]`), anything else as JSON."""

    payload: Any
    name: str | None = None


@dataclass(frozen=True)
class Case:
    provider: str
    events: tuple[WireEvent, ...]
    text: str
    reasoning: str
    finish: str | None
    usage: UsageDelta | None


# texts as models stream them: empty, multi-byte, emoji (ZWJ and skin-tone sequences),
# CR/LF, quotes, backslashes, U+2028/NEL, NUL, BOM, and things that look like framing
SPECIAL = [
    "",
    "é",
    "€",
    "中",
    "\U0001f600",
    "\U0001f468\u200d\U0001f4bb",
    "\U0001f44d\U0001f3fd",
    "\r",
    "\n",
    "\r\n",
    "\n\n",
    "\t",
    '"',
    "\\",
    "\u2028",
    "\x85",
    "\0",
    BOM,
    "data: ",
    ": ",
    "[DONE]",
    "\n\ndata: [DONE]\n\n",
    '{"done": true}\n',
    "\U0010ffff",
]
fragment = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6), st.sampled_from(SPECIAL)
)
piece = st.lists(fragment, max_size=3).map("".join)
pieces = st.lists(piece, max_size=8)
counts = st.integers(0, 2**31)


def joined(parts: list[str]) -> str:
    return "".join(parts)


def merged(deltas: list[Delta], drop_empty: bool = False) -> list[Delta]:
    """`deltas` with consecutive text deltas as one (a fast path joins the text of a run
    of events; the slow path gives a delta per event); `drop_empty`: empty texts left out
    (a path that reads no text out of an event may give none)."""
    out: list[Delta] = []
    for d in deltas:
        if type(d) is TextDelta and out and type(out[-1]) is TextDelta:
            out[-1] = TextDelta(out[-1].text + d.text)
        elif not drop_empty or type(d) is not TextDelta or d.text:
            out.append(d)
    return out


# text deltas as models emit them, for the per-provider chunking properties
piece_text = st.lists(
    st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from([s for s in SPECIAL if s]),
    ),
    min_size=1,
    max_size=8,
).map("".join)


def chunkings(raw_strategy: Callable[[list[str], bool], Any]) -> st.SearchStrategy[Any]:
    """(pieces, the stream `raw_strategy` makes of them, that stream cut anywhere)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[str], Any, list[Any]]:
        pieces = draw(st.lists(piece_text, max_size=8))
        ascii_json = draw(st.booleans())
        raw = raw_strategy(pieces, ascii_json)
        cuts = draw(st.lists(st.integers(0, len(raw)), max_size=16))
        bounds = [0, *sorted(cuts), len(raw)]
        return pieces, raw, [raw[a:b] for a, b in itertools.pairwise(bounds)]

    return build()
