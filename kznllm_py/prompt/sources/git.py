"""The buffer file's uncommitted changes near the selection (`context = { git = true }`):
the hunks of the file's diff against HEAD whose lines are within `NEAR` lines of the
selection (or the cursor), as one section.

Running git in a cloned (or downloaded, or shared) repository is an attack surface: its
`.git/config` can name programs git runs (`diff.external`, a diff driver's `command`,
`textconv`, a `filter.*.clean` on the worktree file, `core.fsmonitor`, `core.pager`,
hooks, a partial clone's lazy fetch). So git is asked only to read objects, and no git
diffs inside a repository:

1. the committed text comes from one long-lived `git cat-file --batch-command` per
   repository (before git 2.36: one `--batch-check` and one `--batch`)
   (kznllm_py/prompt/sources/catfile.py: `HEAD:<path>`, the index's
   `:0:<path>` for a file added but never committed, by path from the top level that
   `git rev-parse --show-toplevel` names once), with `core.fsmonitor=false`,
   `core.hooksPath` to nowhere, `protocol.allow=never` (no lazy fetch), no pager, no
   optional locks: it reads the object database and runs none of the programs above;
   git's own safe.directory check applies (a repository another user owns is not read:
   one note says so). The answer names the blob's oid: a caller that holds that oid
   gets no text again;
2. the editor diffs the buffer's text against it with Neovim's own `vim.diff`
   (lua/kznllm/context/git.lua: no process at all) and relays the unified diff with the
   fill; the host types it (`parse`: `hunks`, `near`). The CLI's `--git` diffs the file
   as saved with `git diff --no-index --no-ext-diff --no-textconv -- - FILE`, the blob on
   stdin, run in an empty private folder with GIT_CEILING_DIRECTORIES above it: outside
   any repository, so no repository config or attributes are read at all.

Each git runs with the GIT_* variables of the environment removed, bounded in time
(`TIMEOUT` for all the gits of one fill: a hung git is killed) and in output
(`MAX_BYTES`: a committed blob over it is refused from its size, unread; a file larger
than that is not diffed), on the calling thread: run it off the event loop.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kznllm_py import options
from kznllm_py.errors import printable
from kznllm_py.prompt.sections import Section
from kznllm_py.prompt.sources import bounded, catfile
from kznllm_py.prompt.sources.catfile import GitFailed

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
    # a diff the editor sent before the host's answer: the ask it came with and the oid
    # of the text it is against, for the host to check (git_checks.py); 0: checked
    check: int = 0
    oid: str = ""


def environment() -> dict[str, str]:
    """The environment git runs in: the user's, without any GIT_* variable (a GIT_DIR,
    GIT_CONFIG_* or GIT_EXTERNAL_DIFF there would steer it), no prompts, C messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", GIT_NO_LAZY_FETCH="1")
    env.update(LC_ALL="C", LANGUAGE="")
    return env


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
    if deadline - time.monotonic() <= 0:
        raise GitFailed(f"git took longer than {TIMEOUT:g} s")
    argv = ["git", *_HARDENED, *args]
    env = environment() if env is None else env
    try:
        ran = bounded.run(argv, cwd=cwd, env=env, stdin=stdin, until=deadline, cap=MAX_BYTES)
    except OSError as exc:
        raise GitFailed(f"cannot run git: {exc.strerror or exc}") from None
    except bounded.Expired:
        raise GitFailed(f"git took longer than {TIMEOUT:g} s (stopped)") from None
    except bounded.OverCap:
        raise GitFailed(f"git's output is larger than {MAX_BYTES // 1024} KiB") from None
    if ran.code not in ok:
        first = ran.err.decode("utf-8", "replace").strip().split("\n")[0]
        raise GitFailed(first or f"git exited with {ran.code}")
    return ran.out


# the host's cat-file processes (one per repository, closed after a minute unused)
BATCHES = catfile.Batches()


def _find(args: list[str], cwd: str, deadline: float) -> bytes:
    return run(args, cwd=cwd, deadline=deadline)


def committed(path: str, deadline: float, held: str = "") -> catfile.Committed | None:
    """The file's blob at HEAD (or, when HEAD has none, in the index), its oid and which;
    no text when its oid is `held`; None when it is in no repository or not tracked."""
    return BATCHES.committed(
        path,
        argv=["git", *_HARDENED],
        env=environment(),
        find=_find,
        cap=MAX_BYTES,
        deadline=deadline,
        held=held,
    )


def diff(blob: bytes, path: str, deadline: float) -> bytes:
    """`git diff --no-index` of `blob` (the old side) and the file at `path` as saved:
    run in an empty private folder with GIT_CEILING_DIRECTORIES above it, outside any
    repository (no repository config or attributes read)."""
    folder = tempfile.mkdtemp(prefix="kzn-git-")  # 0700, ours
    try:
        env = environment()
        env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(folder)
        args = ["diff", "--no-index", "--no-ext-diff", "--no-textconv", "--no-color"]
        args += ["--no-renames", "-U3", "--", "-", path]  # the blob on stdin
        # --no-index exits with 1 when the two differ: its usual answer here
        return run(args, cwd=folder, deadline=deadline, stdin=blob, env=env, ok=(0, 1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _note(exc: GitFailed) -> str:
    """The one line a failure gets ("" for not in a repository, or not tracked)."""
    why = str(exc)
    if "cat-file failed" in why:
        return f"git: {printable(why)}"
    if "dubious ownership" in why:
        return "git: the repository is not yours (git's safe.directory): not read"
    if "longer than" in why:
        return f"git: git took longer than {TIMEOUT:g} s (stopped)"
    if "larger than" in why:
        return f"git: {printable(why)}"
    return ""


def changes(path: str, rows: tuple[int, int]) -> Changes:
    """The uncommitted hunks of the file at `path` (absolute) as saved within NEAR lines
    of `rows` (1-based, inclusive), at most MAX_HUNKS, nearest first in file order (the
    CLI's --git: the editor diffs the buffer itself)."""
    if not path or not os.path.isabs(path):
        return Changes()
    try:
        size = os.stat(path).st_size
    except OSError:
        return Changes()
    if size > MAX_BYTES:
        return Changes(note=f"git: the file is larger than {MAX_BYTES // 1024} KiB (not diffed)")
    deadline = time.monotonic() + TIMEOUT
    try:
        found = committed(path, deadline)
        if found is None or found.data is None:
            return Changes()  # not in a repository, or not tracked: nothing to say
        out = diff(found.data, path, deadline)
    except GitFailed as exc:
        return Changes(note=_note(exc))
    return Changes(near(hunks(out), rows), found.base)


def answer(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The editor's `git_blob` call (lua/kznllm/context/git.lua: the buffer's path, the
    oid of the committed text it holds, if any) answered: { request, oid, base, note,
    text } with the blob's bytes as `text` only when its oid is not the one held; oid
    "" when the file is in no repository or not tracked (or a note says why). Runs git:
    off the event loop."""
    path = options.text(raw, "path")
    held = options.text(raw, "oid")
    reply: dict[str, Any] = {"request": raw.get("request"), "oid": "", "base": "HEAD"}
    reply["note"] = ""
    if not path or not os.path.isabs(path):
        return reply
    try:
        found = committed(path, time.monotonic() + TIMEOUT, held)
    except GitFailed as exc:
        reply["note"] = _note(exc)
        return reply
    if found is not None:
        reply.update(oid=found.oid, base=found.base)
        if found.data is not None:
            reply["text"] = found.data
    return reply


def parse(raw: object) -> Changes | None:
    """The editor's diff as it relays it with the fill (lua/kznllm/context/git.lua: the
    unified diff of the buffer against the committed text, capped at MAX_BYTES and
    `cut` when it was longer, of the text after its first `offset` lines, the
    selection's rows `first`..`last` (1-based), the base, a note; sent before the
    host's answer: the ask `check` and the `oid` it is against), as untrusted as
    any input: its hunks near the rows, at most MAX_HUNKS; a cut diff's last hunk (maybe
    partial) left out; None when there is nothing."""
    if not isinstance(raw, Mapping):
        return None
    text = raw.get("diff")
    out = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
    out = text if isinstance(text, bytes) else out
    found = hunks(out[:MAX_BYTES], max(0, options.whole(raw, "offset")))
    if (raw.get("cut") is True or len(out) > MAX_BYTES) and found:
        found.pop()
    first, last = options.whole(raw, "first"), options.whole(raw, "last")
    picked = near(found, (first, max(first, last))) if first >= 1 else ()
    base = options.text(raw, "base")
    base = base if base in ("HEAD", "the index") else "HEAD"
    note = printable(options.text(raw, "note")[:300])
    check = max(0, options.whole(raw, "check"))
    return Changes(picked, base, note, check, options.text(raw, "oid")[:64] if check else "")


def hunks(out: bytes, offset: int = 0) -> list[Hunk]:
    """The hunks of a unified diff's text (the header lines before the first @@ off); of
    a diff of the text after its first `offset` lines, the line numbers of its @@ lines
    made the whole text's."""
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
            if offset:
                line = _shifted(m, offset) + line[m.end() :]
            current = [line]
            start = int(m[3]) + offset
            count = int(m[4]) if m[4] is not None else 1
        elif current and line[:1] in (b" ", b"+", b"-", b"\\"):
            current.append(line)
    close()
    return found


def _shifted(m: re.Match[bytes], offset: int) -> bytes:
    """An @@ line's numbers, `offset` lines further (its counts as they were)."""
    old = b"%d" % (int(m[1]) + offset) + (b"," + m[2] if m[2] is not None else b"")
    new = b"%d" % (int(m[3]) + offset) + (b"," + m[4] if m[4] is not None else b"")
    return b"@@ -" + old + b" +" + new + b" @@"


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
