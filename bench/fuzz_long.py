"""A long fuzz run: the properties of tests/stream/test_fuzz.py with many more examples.

The same test functions that CI runs (valid streams byte-exact under any chunking;
random bytes, byte mutations and random field values raising only KznError; the
decoders on random bytes), each with `--examples` examples instead of a few dozen
(KZN_FUZZ_EXAMPLES, read by tests/stream/test_fuzz.py). No network: the streams go through
`generation.stream_deltas` over an in-process httpx transport.

    .venv/bin/python bench/fuzz_long.py [--examples 2000] [--only SUBSTRING] [--seed N]

About 5-10 ms per example on the 2-core machine: the default 2,000 take ~5-10 min,
`--examples 20000` (an overnight run) ~1-1.5 h. A failure prints Hypothesis's minimal
example; it is saved in .hypothesis/, so the next `pytest tests/stream/test_fuzz.py` replays
it. Exit status 1 when any property failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cases(module: Any) -> Iterator[tuple[str, Callable[..., None], dict[str, Any]]]:
    """(id, test function, its arguments) for every Hypothesis test of the module, one
    per `pytest.mark.parametrize` value (the example-based tests are left to pytest)."""
    for key in sorted(vars(module)):
        fn = getattr(module, key)
        if not key.startswith("test_") or not getattr(fn, "is_hypothesis_test", False):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            yield key, fn, {}
            continue
        argname, values = marks[0].args[:2]
        for value in values:
            yield f"{key}[{value}]", fn, {argname: value}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--examples", type=int, default=2000, help="examples per property")
    ap.add_argument("--only", default="", help="run the properties whose id contains this")
    ap.add_argument("--seed", type=int, default=None, help="a fixed seed (reproducible run)")
    args = ap.parse_args()
    os.environ["KZN_FUZZ_EXAMPLES"] = str(args.examples)  # before the module reads it

    from hypothesis import seed

    import tests.stream.test_fuzz as fuzz

    streams = 0
    wire_run = fuzz.WIRE.run
    decode = fuzz.decode

    def counted_run(*a: Any, **kw: Any) -> Any:
        nonlocal streams
        streams += 1
        return wire_run(*a, **kw)

    def counted_decode(*a: Any, **kw: Any) -> Any:
        nonlocal streams
        streams += 1
        return decode(*a, **kw)

    fuzz.WIRE.run = counted_run  # type: ignore[method-assign]
    fuzz.decode = counted_decode

    print(f"fuzz_long: {args.examples} examples per property (seed: {args.seed or 'random'})")
    rows: list[tuple[str, int, float, str]] = []
    for ident, fn, kwargs in cases(fuzz):
        if args.only not in ident:
            continue
        test = seed(args.seed)(fn) if args.seed is not None else fn
        streams = 0
        start = time.perf_counter()
        try:
            test(**kwargs)
            verdict = "ok"
        except Exception:
            verdict = "FAILED"
            traceback.print_exc()
        took = time.perf_counter() - start
        rows.append((ident, streams, took, verdict))
        print(f"  {verdict:6} {ident:78} {streams:7} streams {took:7.1f} s", flush=True)

    failed = [r for r in rows if r[3] != "ok"]
    total_streams = sum(r[1] for r in rows)
    total_s = sum(r[2] for r in rows)
    print(
        f"summary: {len(rows)} properties, {len(rows) - len(failed)} ok, {len(failed)} failed; "
        f"{total_streams} streams decoded in {total_s:.1f} s"
    )
    for ident, *_ in failed:
        print(f"  failed: {ident}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
