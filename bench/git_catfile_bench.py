"""What a git before 2.36 costs the git context source: the same questions asked through
`git cat-file --batch-command` (git 2.36 on) and through the two older modes
(`--batch-check`, then `--batch`: `catfile.Pair`, forced with KZNLLM_GIT_BATCH_COMMAND=0
on this git), interleaved (A/B in one run: a loaded machine weighs on both alike), in a
temporary repository whose 300-line file is committed.

    .venv/bin/python bench/git_catfile_bench.py [--runs 200]

Per way, the medians of:
- cold: the first ask of a repository (the processes started, HEAD's blob read whole);
- held: an ask whose blob the caller holds (the editor's usual one: `info` only);
- changed: an ask after the blob changed (`info` then `contents`);
and, for an older git, the refusal it is learnt from (once per git binary per host): a
`git` on PATH that refuses `--batch-command` as 2.34 does, the first ask against the
forced older way's first ask, and what this git takes to refuse a mode it does not know
(exit 129, a real git's refusal). Also the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kznllm_py.prompt.sources import catfile, git

T = TypeVar("T")

OLD_GIT = """#!/bin/sh
case " $* " in *" --batch-command "*) echo "error: unknown option" >&2; exit 129;; esac
exec {real} "$@"
"""


def sh(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    env.update(GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b")
    env.update(GIT_COMMITTER_EMAIL="b@b")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def asker(batches: catfile.Batches, path: Path) -> Callable[[str], catfile.Committed]:
    def ask(held: str = "") -> catfile.Committed:
        found = batches.committed(
            str(path),
            argv=["git", *git._HARDENED],
            env=git.environment(),
            find=git._find,
            cap=git.MAX_BYTES,
            deadline=time.monotonic() + 5,
            held=held,
        )
        assert found is not None
        return found

    return ask


def timed(fn: Callable[..., T], *args: object, **kw: object) -> tuple[float, T]:
    """(milliseconds, result) of fn(*args, **kw)."""
    started = time.perf_counter()
    out = fn(*args, **kw)
    return (time.perf_counter() - started) * 1000, out


def forced(older: bool) -> None:
    if older:
        os.environ["KZNLLM_GIT_BATCH_COMMAND"] = "0"
    else:
        os.environ.pop("KZNLLM_GIT_BATCH_COMMAND", None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    runs = ap.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="kzn-bench-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        sh(root, "init", "-q")
        f = root / "f.txt"
        f.write_text("".join(f"line {i}\n" for i in range(300)))
        sh(root, "add", "f.txt")
        sh(root, "commit", "-qm", "init")
        other = root / "g.txt"  # two blobs to switch between: a "changed" ask each time
        other.write_text("other\n")
        sh(root, "add", "g.txt")
        sh(root, "commit", "-qm", "g")
        figures: dict[str, dict[str, list[float]]] = {
            w: {"cold": [], "held": [], "changed": []} for w in ("batch-command", "older")
        }
        for _ in range(runs):
            for way in ("batch-command", "older"):
                forced(way == "older")
                batches = catfile.Batches()
                ask, ask_other = asker(batches, f), asker(batches, other)
                fig = figures[way]
                ms, found = timed(ask)
                fig["cold"].append(ms)
                fig["held"].append(timed(ask, found.oid)[0])
                fig["changed"].append(timed(ask_other, found.oid)[0])
                batches.close()
        forced(False)
        refusal: list[float] = []
        older_cold: list[float] = []
        fake = Path(tmp) / "bin"
        fake.mkdir()
        (fake / "git").write_text(OLD_GIT.format(real=shutil.which("git")))
        (fake / "git").chmod(0o755)
        path = os.environ["PATH"]
        os.environ["PATH"] = f"{fake}:{path}"
        for _ in range(max(10, runs // 10)):
            for first in (True, False):
                forced(not first)  # the refusal, or the older way known already
                batches = catfile.Batches()
                ask = asker(batches, f)
                (refusal if first else older_cold).append(timed(ask)[0])
                batches.close()
        os.environ["PATH"] = path
        forced(False)
        # what a real git's usage refusal takes (the wrapper's is a sh's): this git
        # refusing a mode it does not know, exit 129, as 2.34 refuses --batch-command
        refuse = ["git", "cat-file", "--batch-no-such-mode"]
        usage = [
            timed(subprocess.run, refuse, cwd=root, capture_output=True, check=False)[0]
            for _ in range(max(10, runs // 10))
        ]
    med = statistics.median
    print(f"{runs} runs each, interleaved; load average {os.getloadavg()[0]:.2f}")
    print(f"{'ms (median)':<14}{'batch-command':>15}{'older git':>12}{'added':>9}")
    for what in ("cold", "held", "changed"):
        a = med(figures["batch-command"][what])
        b = med(figures["older"][what])
        print(f"{what:<14}{a:>15.3f}{b:>12.3f}{b - a:>9.3f}")
    pairs = [r - c for r, c in zip(refusal, older_cold, strict=True)]
    print(
        f"older git's first ask with the refusal learnt: {med(refusal):.3f} ms, "
        f"without: {med(older_cold):.3f} ms (the refusal adds {med(pairs):.3f} ms, "
        "once per git binary per host; through a sh wrapper)"
    )
    print(f"a real git's usage refusal (exit 129), whole: {med(usage):.3f} ms")


if __name__ == "__main__":
    main()
