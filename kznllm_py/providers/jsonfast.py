"""JSON for the hot path: orjson (a dependency; about 4x faster than the standard
library on the small objects a stream carries)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from operator import and_, itemgetter
from typing import Any

import orjson

from kznllm_py.errors import StreamError
from kznllm_py.secrets import clip

_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads_event(data: str, provider: str) -> Any:
    try:
        return _loads(data)
    except (_JSONError, RecursionError):
        shown = clip(data, 200) + ("..." if len(data) > 200 else "")
        raise StreamError(f"{provider}: malformed JSON in a stream event: {shown!r}") from None


def loads_body(data: bytes) -> Any:
    """Parse an error body; None when it is not JSON."""
    try:
        return _loads(data)
    except (_JSONError, UnicodeDecodeError, ValueError, RecursionError):
        return None


# events that Template.run compares at once: a burst's 256 are ~60 KB joined, under the
# size from which malloc maps fresh pages for a string (a whole read joined, 256 KB, was
# slower to build than comparing event by event)
RUN_BLOCK = 256
# a string that no template's sample holds where its value is, to find that value's place
_PROBE = "kznllm template probe"


class Template:
    """Events of one stream that differ only in one string value (the text of a token):
    a sample event of the common shape, cut around that value's string literal into
    `head` (up to and with its opening quote) and `tail` (from its closing quote on).
    An event `head + inner + tail` whose `inner` holds no quote, no control character
    and no other character that `str.isprintable` refuses is the sample with `inner` as
    that string: JSON's grammar reads it as the same tokens, one string token changed.
    `texts` reads a whole run of events so, in C-level passes; anything else (an escape
    the run cannot decode, another shape) is left to the caller's own reading.

    A padded template (`mid` set) has a second string that varies, one the reading
    ignores (OpenAI's `obfuscation`, random padding of every chunk): an event is then
    `head + inner + mid + pad + tail`, `pad` as plain as `inner` and with no escape."""

    __slots__ = ("head", "mid", "tail")

    def __init__(self, head: str, tail: str, mid: str | None = None) -> None:
        self.head = head
        self.tail = tail
        self.mid = mid

    @classmethod
    def learn(
        cls,
        data: str,
        value: str,
        read: Callable[[Any], str | None],
        pad: str | None = None,
    ) -> Template | None:
        """The template of `data`, an event that `read` (a parser's reading of a parsed
        event of the common shape) reads as `value`; None when the value is no plain
        string literal of `data` or when its place cannot be told for sure: a probe
        value put there must read back as itself. `pad`: a top-level key that `read`
        never looks at; when the sample's own value of it is a plain string after the
        text, the template is padded (a probe there must read back as that key's)."""
        if not value or "\\" in value or not _plain(value):
            return None
        literal = f'"{value}"'
        # a probe other than the value: only the value's own token reads back as it
        probe = _PROBE if value != _PROBE else _PROBE + "."
        start = data.find(literal)
        for _ in range(8):  # the value may also be found elsewhere (an id, a model name)
            if start < 0:
                return None
            head, tail = data[: start + 1], data[start + len(literal) - 1 :]
            try:
                if read(_loads(f"{head}{probe}{tail}")) == probe:
                    padded = cls._padded(head, tail, data, probe, read, pad)
                    return padded or cls(head, tail)
            except (_JSONError, RecursionError):
                pass
            start = data.find(literal, start + 1)
        return None

    @classmethod
    def _padded(
        cls,
        head: str,
        tail: str,
        data: str,
        probe: str,
        read: Callable[[Any], str | None],
        pad: str | None,
    ) -> Template | None:
        if pad is None:
            return None
        obj = _loads(data)
        padding = obj.get(pad) if type(obj) is dict else None
        if type(padding) is not str or not _plain(padding):
            return None
        literal = f'"{padding}"'
        at = tail.rfind(literal)
        if at <= 0:  # after the text's closing quote, or not at all
            return None
        mid, end = tail[: at + 1], tail[at + len(literal) - 1 :]
        other = probe + "p" if padding != probe + "p" else probe + "q"  # not the text's
        probed = _loads(f"{head}{probe}{mid}{other}{end}")
        if read(probed) != probe or type(probed) is not dict or probed.get(pad) != other:
            return None
        return cls(head, end, mid)

    def after(self, prefix: str) -> Template:
        """The same template for events that come with `prefix` before them (an SSE
        run's whole `data: ` lines, sse.Run): one check and one cut per line, the
        prefix's with the head's."""
        return Template(prefix + self.head, self.tail, self.mid)

    def run(self, datas: list[str]) -> str | None:
        """texts() of `datas` when every one of them has the template's head and tail
        (a whole read of a fast stream); else None. Checked in one comparison, not
        event by event: the events joined equal the head, their middles joined with
        tail and head between, and the tail, only if each one is head, middle and tail
        (the lengths line up); RUN_BLOCK events at a time."""
        head, tail = self.head, self.tail
        # an event shorter than head and tail together has an empty middle: its block
        # then falls short of the length the template gives it (no check of its own)
        middles = list(map(itemgetter(slice(len(head), -len(tail))), datas))
        between = tail + head
        for i in range(0, len(datas), RUN_BLOCK):
            end = i + RUN_BLOCK
            if "".join(datas[i:end]) != head + between.join(middles[i:end]) + tail:
                return None
        return self._read(middles)

    def matches(self, datas: list[str]) -> list[bool]:
        """For each event, whether it has the template's head and tail (C-level)."""
        heads = map(str.startswith, datas, repeat(self.head))
        tails = map(str.endswith, datas, repeat(self.tail))
        return list(map(and_, heads, tails))

    def texts(self, datas: list[str]) -> str | None:
        """The values of `datas` (each with the head and tail), joined; None when one
        of them is not sure to read as the template says (the caller reads them)."""
        middles = list(map(itemgetter(slice(len(self.head), -len(self.tail))), datas))
        if not self._long_enough(datas, middles):
            return None
        return self._read(middles)

    def _long_enough(self, datas: list[str], middles: list[str]) -> bool:
        """No event overlaps the head and the tail: an event shorter than both together
        has an empty middle, and its length falls short of what the sum counts."""
        whole = len(self.head) + len(self.tail)
        return sum(map(len, datas)) == len(datas) * whole + sum(map(len, middles))

    def _read(self, middles: list[str]) -> str | None:
        """The values whose events have these middles (between head and tail)."""
        if self.mid is None:
            inners = middles
        else:
            # inner, mid, pad: the first mid after a quote-free inner is the mid (it
            # starts with a quote); an overlap of head and tail leaves no mid to find
            parts = [m.partition(self.mid) for m in middles]
            pads = "".join(map(itemgetter(2), parts))
            if not all(map(itemgetter(1), parts)) or "\\" in pads or not _plain(pads):
                return None
            inners = list(map(itemgetter(0), parts))
        text = "".join(inners)
        if not _plain(text):
            return None
        if "\\" in text:  # escapes (a line break is one): each literal decoded on its own
            return _literals(inners)
        return text


def _literals(inners: list[str]) -> str | None:
    """The JSON string literals whose insides are `inners` (no quote in any), each
    decoded on its own, joined; None when one does not decode. Read as one array in one
    parse: a literal that ended in a backslash would escape the quote after it, and the
    array would then hold fewer strings than literals (or not parse at all), so an
    escape never reaches across two of them."""
    if not inners:
        return ""
    try:
        values = _loads('["' + '","'.join(inners) + '"]')
    except (_JSONError, RecursionError):
        return None
    if type(values) is not list or len(values) != len(inners):
        return None
    return "".join(values)


def _plain(text: str) -> bool:
    """No quote, and only characters that str.isprintable takes (none of JSON's
    control characters among them)."""
    return '"' not in text and text.isprintable()
