"""Content decoding (gzip, deflate, br) with a bound on what comes out: a compression
bomb of a few hundred KB must not become gigabytes in memory, nor block the event loop
for seconds in one call. Every call yields pieces of at most PIECE bytes, and the total
decoded size is capped.

Same shape as httpx's decoders (`decode(chunk)` + `flush()`), but each is a generator
of pieces and the output is bounded per call, which httpx's are not.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is optional
    # mypy types an imported module as never None; the checks below are for this case
    brotli = None  # type: ignore[assignment]

PIECE = 256 * 1024


class DecodeError(Exception):
    """The body does not decode, or its encoding is not one we read."""


class TooLarge(Exception):
    """More decoded bytes than the cap."""


def accept_encoding() -> str:
    """The Accept-Encoding we send: only what decode() reads with a bound."""
    return "gzip, deflate, br" if _has_brotli() else "gzip, deflate"


def _has_brotli() -> bool:
    return brotli is not None and hasattr(brotli.Decompressor(), "can_accept_more_data")


class _Zlib:
    def __init__(self, wbits: int, *, deflate: bool = False) -> None:
        self._wbits = wbits
        self._deflate = deflate  # "deflate" is zlib-wrapped, or raw from some servers
        self._first = True
        self._z = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        z = self._z
        while data:
            try:
                out = z.decompress(data, PIECE)
            except zlib.error as exc:
                if self._deflate and self._first:  # not zlib-wrapped: raw deflate
                    self._first = False
                    self._z = z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise DecodeError(str(exc)) from None
            self._first = False
            if out:
                yield out
            if z.eof and z.unused_data:  # concatenated gzip members
                data = z.unused_data
                self._z = z = zlib.decompressobj(self._wbits)
            else:
                data = z.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        out = self._z.flush()
        if out:  # only what decompress() left: its size was bounded by PIECE already
            yield out


class _Brotli:
    def __init__(self) -> None:
        assert brotli is not None
        self._d = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        d = self._d
        try:
            out = d.process(data, output_buffer_limit=PIECE)
            if out:
                yield out
            while not d.can_accept_more_data():
                out = d.process(b"", output_buffer_limit=PIECE)
                if not out:
                    break
                yield out
        except brotli.error as exc:
            raise DecodeError(str(exc) or "invalid brotli data") from None

    def flush(self) -> Iterator[bytes]:
        if not self._d.is_finished():
            raise DecodeError("the brotli stream is truncated")
        return iter(())


class Decoder:
    """Decodes a body sent with `content_encoding`, capped at `cap` decoded bytes."""

    def __init__(self, content_encoding: str, cap: int) -> None:
        self._cap = cap
        self.size = 0
        self._stages: list[_Zlib | _Brotli] = []
        # applied in the reverse order of the header's list ("gzip, br": br last)
        for name in reversed([n.strip().lower() for n in content_encoding.split(",")]):
            if name in ("", "identity"):
                continue
            if name in ("gzip", "x-gzip"):
                self._stages.append(_Zlib(zlib.MAX_WBITS | 16))
            elif name == "deflate":
                self._stages.append(_Zlib(zlib.MAX_WBITS, deflate=True))
            elif name == "br" and _has_brotli():
                self._stages.append(_Brotli())
            else:
                raise DecodeError(f"unsupported content encoding {name!r}")

    def decode(self, data: bytes) -> Iterator[bytes]:
        yield from self._count(self._run(0, data))

    def flush(self) -> Iterator[bytes]:
        yield from self._count(self._flush(0))

    def _run(self, i: int, data: bytes) -> Iterator[bytes]:
        if i == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[i].decode(data):
            yield from self._run(i + 1, piece)

    def _flush(self, i: int) -> Iterator[bytes]:
        if i == len(self._stages):
            return
        for piece in self._stages[i].flush():
            yield from self._run(i + 1, piece)
        yield from self._flush(i + 1)

    def _count(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.size += len(piece)
            if self.size > self._cap:
                raise TooLarge
            yield piece
