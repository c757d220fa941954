"""The buffer file's uncommitted changes near the selection (`context = { git = true }`):
the hunks of `git diff HEAD` for that file whose lines are within `NEAR` lines of the
selection (or the cursor), as one section.

Running git in a cloned (or downloaded, or shared) repository is an attack surface: its
`.git/config` can name programs git runs (`diff.external`, a diff driver's `command`,
`textconv`, a `filter.*.clean` on the worktree file, `core.fsmonitor`, `core.pager`,
hooks, a partial clone's lazy fetch). So git is asked only to read objects, and the
diff is made where no repository is:

1. `git cat-file blob HEAD:./NAME` (the index's `:./NAME` for a file added but never
   committed), in the file's folder, with `core.fsmonitor=false`, `core.hooksPath` to
   nowhere, `protocol.allow=never` (no lazy fetch), no pager, no optional locks: it
   reads the object database and runs none of the programs above; git's own
   safe.directory check applies (a repository another user owns is not read: one
   note says so);
2. `git diff --no-index --no-ext-diff --no-textconv -- - FILE` with that blob on stdin,
   run in an empty private folder with GIT_CEILING_DIRECTORIES above it: outside any
   repository, so no repository config or attributes are read at all.

Each git runs with the GIT_* variables of the environment removed, bounded in time
(`TIMEOUT` in all: a hung git is killed) and in output (`MAX_BYTES`; the file and its
committed blob larger than that are not diffed), on the calling thread: run it off the
event loop. The diff is of the buffer's text when the editor sent it (a buffer with
unsaved edits: lua/kznllm/context/git.lua), else of the file as saved.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section

NEAR = 20  # lines either side of the selection a hunk may start or end within
MAX_HUNKS = 8
MAX_BYTES = 1024 * 1024  # the blob, the file and the diff output, each
TIMEOUT = 2.0  # seconds for all the gits of one fill
_HARDENED = (
    "--no-pager",
    "--no-optional-locks",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "protocol.allow=never",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "gc.auto=0",
)
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True, slots=True)
class Hunk:
    new_start: int  # 1-based first line in the file (for a pure deletion: the line before)
    new_count: int
    text: str  # the hunk, its @@ line first


@dataclass(frozen=True, slots=True)
class Changes:
    hunks: tuple[Hunk, ...] = ()
    base: str = "HEAD"  # what the file is compared with: HEAD, or the index
    note: str = ""  # why there is nothing (a dubious repository, a timeout, a size)


def environment() -> dict[str, str]:
    """The environment git runs in: the user's, without any GIT_* variable (a GIT_DIR,
    GIT_CONFIG_* or GIT_EXTERNAL_DIFF there would steer it), no prompts, C messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_NO_LAZY_FETCH="1")
    env.update(LC_ALL="C", LANGUAGE="")
    return env


class GitFailed(Exception):
    """git could not answer: the text says why, in a plain phrase."""


def run(
    args: list[str],
    *,
    cwd: str,
    deadline: float,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
) -> bytes:
    """git's stdout for `args` (after the hardened options), at most MAX_BYTES, killed
    at `deadline` (time.monotonic()); GitFailed on an exit not in `ok` (with its first
    stderr line), a timeout, too much output, or no git."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise GitFailed(f"git took longer than {TIMEOUT:g} s")
    argv = ["git", *_HARDENED, *args]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=environment() if env is None else env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitFailed(f"cannot run git: {exc.strerror or exc}") from None
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(left, expire)
        timer.start()
        try:
            out = _talk(proc, stdin)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if expired.is_set():
            raise GitFailed(f"git took longer than {TIMEOUT:g} s (stopped)")
        if out is None:
            raise GitFailed(f"git's output is larger than {MAX_BYTES // 1024} KiB")
        if code not in ok:
            err.seek(0)
            first = err.read(4096).decode("utf-8", "replace").strip().split("\n")[0]
            raise GitFailed(first or f"git exited with {code}")
    return out


def _talk(proc: subprocess.Popen[bytes], stdin: bytes | None) -> bytes | None:
    """Write `stdin` (from a thread: git may answer before it has read it all) and read
    stdout up to MAX_BYTES; None when there is more (git is killed)."""
    stdout: IO[bytes] | None = proc.stdout
    assert stdout is not None
    writer = None
    if stdin is not None and proc.stdin is not None:
        pipe = proc.stdin

        def feed() -> None:
            with contextlib.suppress(OSError):
                pipe.write(stdin)
            with contextlib.suppress(OSError):
                pipe.close()

        writer = threading.Thread(target=feed, name="kzn-git-stdin", daemon=True)
        writer.start()
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_BYTES:
            chunk = os.read(stdout.fileno(), min(65536, MAX_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        stdout.close()
    if size > MAX_BYTES:
        proc.kill()
        return None
    if writer is not None:
        writer.join(1.0)
    return b"".join(chunks)


def committed(path: str, deadline: float) -> tuple[bytes, str]:
    """The file's blob at HEAD (or, when HEAD has none, in the index) and which."""
    folder, name = os.path.split(path)
    try:
        return run(["cat-file", "blob", f"HEAD:./{name}"], cwd=folder, deadline=deadline), "HEAD"
    except GitFailed as exc:
        if "dubious ownership" in str(exc) or "longer than" in str(exc):
            raise
    return run(["cat-file", "blob", f":./{name}"], cwd=folder, deadline=deadline), "the index"


def diff(blob: bytes, path: str, deadline: float, text: bytes | None = None) -> bytes:
    """`git diff --no-index` of `blob` (the old side) and the file at `path`, or `text`
    (the buffer's, unsaved) when given: run in an empty private folder with
    GIT_CEILING_DIRECTORIES above it, outside any repository (no repository config or
    attributes read)."""
    folder = tempfile.mkdtemp(prefix="kzn-git-")  # 0700, ours
    try:
        env = environment()
        env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(folder)
        args = ["diff", "--no-index", "--no-ext-diff", "--no-textconv", "--no-color"]
        args += ["--no-renames", "-U3", "--"]
        if text is None:
            args += ["-", path]  # the blob on stdin, the file as saved
            stdin = blob
        else:
            old = os.path.join(folder, "committed")
            with open(old, "xb") as f:
                f.write(blob)
            args += ["committed", "-"]  # the buffer's text on stdin
            stdin = text
        # --no-index exits with 1 when the two differ: its usual answer here
        return run(args, cwd=folder, deadline=deadline, stdin=stdin, env=env, ok=(0, 1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def changes(path: str, rows: tuple[int, int], text: str | None = None) -> Changes:
    """The uncommitted hunks of the file at `path` (absolute) within NEAR lines of
    `rows` (1-based, inclusive), at most MAX_HUNKS, nearest first in file order; of
    `text` (the buffer's unsaved text, whose rows the selection's are) when given, else
    of the file as saved."""
    if not path or not os.path.isabs(path):
        return Changes()
    data = None if text is None else text.encode("utf-8", "surrogateescape")
    try:
        size = os.stat(path).st_size if data is None else len(data)
    except OSError:
        return Changes()
    if size > MAX_BYTES:
        return Changes(note=f"git: the file is larger than {MAX_BYTES // 1024} KiB (not diffed)")
    deadline = time.monotonic() + TIMEOUT
    try:
        blob, base = committed(path, deadline)
        out = diff(blob, path, deadline, data)
    except GitFailed as exc:
        why = str(exc)
        if "dubious ownership" in why:
            return Changes(note="git: the repository is not yours (git's safe.directory): not read")
        if "longer than" in why or "larger than" in why:
            return Changes(note=f"git: {printable(why)}")
        return Changes()  # not in a repository, or not tracked: nothing to say
    return Changes(near(hunks(out), rows), base)


def answer(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The editor's `git_hunks` call (lua/kznllm/context/git.lua: the buffer's path, the
    selection's rows, its text when unsaved) answered: { request, hunks, base, note }.
    Runs git: off the event loop."""
    rows = raw.get("rows")
    text = raw.get("text")
    path = options.text(raw, "path")
    ok = isinstance(rows, list) and len(rows) == 2 and all(_whole(r) for r in rows)
    found = (
        changes(path, (rows[0], rows[1]), text if isinstance(text, str) else None)
        if ok and rows is not None
        else Changes()
    )
    return {
        "request": raw.get("request"),
        "hunks": [
            {"start": h.new_start, "count": h.new_count, "text": h.text} for h in found.hunks
        ],
        "base": found.base,
        "note": found.note,
    }


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def parse(raw: object) -> Changes | None:
    """The answer as the editor relays it with the fill (as untrusted as any input):
    at most MAX_HUNKS hunks of at most MAX_BYTES in all; None when there is none."""
    if not isinstance(raw, Mapping):
        return None
    found: list[Hunk] = []
    size = 0
    items = raw.get("hunks")
    for h in items[: MAX_HUNKS * 4] if isinstance(items, list) else []:
        if not isinstance(h, Mapping) or not isinstance(h.get("text"), str):
            continue
        if len(found) == MAX_HUNKS:
            break
        start, count = options.whole(h, "start"), options.whole(h, "count")
        size += len(h["text"])
        if size > MAX_BYTES:
            break
        found.append(Hunk(start, count, h["text"]))
    base = options.text(raw, "base")
    base = base if base in ("HEAD", "the index") else "HEAD"
    return Changes(tuple(found), base, options.text(raw, "note")[:300])


def hunks(out: bytes) -> list[Hunk]:
    """The hunks of a unified diff's text (the header lines before the first @@ off)."""
    found: list[Hunk] = []
    current: list[bytes] = []
    start = count = 0

    def close() -> None:
        if current:
            text = b"\n".join(current).decode("utf-8", "replace")
            found.append(Hunk(start, count, text))

    for line in out.split(b"\n"):
        m = _HUNK.match(line)
        if m:
            close()
            current = [line]
            start = int(m[3])
            count = int(m[4]) if m[4] is not None else 1
        elif current and line[:1] in (b" ", b"+", b"-", b"\\"):
            current.append(line)
    close()
    return found


def near(found: list[Hunk], rows: tuple[int, int]) -> tuple[Hunk, ...]:
    """The hunks within NEAR lines of `rows`, the nearest MAX_HUNKS, in file order."""
    first, last = rows

    def distance(h: Hunk) -> int:
        end = h.new_start + max(h.new_count, 1) - 1
        return max(0, h.new_start - last, first - end)

    close = [h for h in found if distance(h) <= NEAR]
    close = sorted(close, key=distance)[:MAX_HUNKS]
    return tuple(sorted(close, key=lambda h: h.new_start))


def section(found: Changes, path: str) -> Section | None:
    """The section of the hunks (None when there are none)."""
    if not found.hunks:
        return None
    title = (
        f"uncommitted changes to {printable(path)} near the selection "
        f"(diff against {found.base}; + lines are the buffer now)"
    )
    return Section("git", title, "\n".join(h.text for h in found.hunks))
