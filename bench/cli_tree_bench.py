"""What the CLI's --outline/--scope add to a run: `kznllm render --file F --line N`
with them (the default) and with --no-outline --no-scope, interleaved (A/B in the same
run, so a loaded machine weighs on both alike), for a 7-line C file and a 14,012-line one
whose outline names a function 14,000 lines from the line.

    PATH=.venv/bin:$PATH .venv/bin/python bench/cli_tree_bench.py [--runs 10]

Prints the medians of each, the added time (median of the pairwise differences, and the
difference of the minima) and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOPBACK = ["--provider", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]


def files(folder: Path) -> list[tuple[str, Path, int]]:
    small = folder / "small.c"
    small.write_text("int f(void) {\n  return 1;\n}\n\nint g(int x) {\n  return x + f();\n}\n")
    lines = ["#include <stdio.h>", "", "int far_away(int x) {", "  return x * 2;", "}", ""]
    lines += [f"int table{i} = {i};" for i in range(14000)]
    lines += ["", "int near(int y) {", "  int z = y + 1;", "  return z;", "}", ""]
    far = folder / "far.c"
    far.write_text("\n".join(lines) + "\n")
    return [("7-line C file", small, 6), (f"{len(lines)}-line C file", far, 14010)]


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise SystemExit(res.stderr.decode(errors="replace"))
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    cli = [sys.executable, "-m", "kznllm_py.cli.main", "render", "q"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, line in files(Path(tmp)):
            base = [*cli, "--file", str(path), "--line", str(line), *LOOPBACK]
            on: list[float] = []
            off: list[float] = []
            for _ in range(args.runs):
                on.append(timed(base))
                off.append(timed([*base, "--no-outline", "--no-scope"]))
            added = statistics.median(a - b for a, b in zip(on, off, strict=True))
            print(
                f"{name}: with {statistics.median(on) * 1000:.0f} ms, without "
                f"{statistics.median(off) * 1000:.0f} ms; added {added * 1000:.0f} ms "
                f"(minima: {(min(on) - min(off)) * 1000:.0f} ms)"
            )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
