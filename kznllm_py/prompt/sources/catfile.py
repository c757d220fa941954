"""The committed text of a file without a git process per keypress: one long-lived
`git cat-file --batch-command` per repository, two older ones before git 2.36
(kznllm_py/prompt/sources/git.py words the hardening and passes it in: the same `-c`
options, the environment without GIT_*, git's own safe.directory check), started at
first use, closed after `idle` seconds unused and at the process's exit (it also ends
by itself when our end of its stdin closes: a killed host leaves nothing).

Each question is `info <spec>` (the blob's oid, type and size), then, only when the
caller does not hold that oid already and the size is within the cap, `contents <oid>`:
a blob over the cap is refused from its size, never read.

A git before 2.36 (Ubuntu 22.04's 2.34, Debian 11's 2.30) has no `--batch-command`: its
cat-file exits at once with a usage error (129). That refusal is the feature check, so a
recent git pays nothing for it: the process that said so is dropped (not counted as a
failure), the git binary (its path, inode, mtime) is remembered as one without it, and
from then on its repositories are asked the same questions through `Pair`: one
`--batch-check` (`info`) and, from the first blob read on, one `--batch` (`contents` by
oid), long-lived, closed and replaced together, under the same caps and deadlines.
`KZNLLM_GIT_BATCH_COMMAND=0` in the environment forces that way.

Every answer is read with a deadline and checked against the protocol: a wedged, dead
or lying cat-file (a short or malformed reply, a header line that does not end) is
killed, and the next question starts a new one.

The index is read once by a cat-file process: before asking the index (`:0:<path>`, a
file added but never committed), a process started before the index last changed is
replaced. HEAD and the objects are read afresh at each question (a commit made since is
seen). Blocking (pipes, a deadline): call it off the event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

IDLE = 60.0  # seconds unused before a repository's cat-file is closed
MAX_LINE = 4096  # a reply's header line
USAGE_EXIT = 129  # git's exit on an option it does not know (parse-options' usage)
REFUSAL_WAIT = 0.5  # seconds a process gone at once may take to say why


class GitFailed(Exception):
    """git could not answer: the text says why, in a plain phrase."""


@dataclass(frozen=True, slots=True)
class Committed:
    oid: str  # the blob's object id
    base: str  # "HEAD", or "the index" for a file added but never committed
    data: bytes | None  # the blob; None when the caller already holds `oid`


@dataclass(frozen=True, slots=True)
class Where:
    toplevel: str  # the repository's work tree (its real path)
    index: str  # its index file (absolute)


Runner = Callable[[list[str], str, float], bytes]  # git args, cwd, deadline -> stdout


class _Process:
    """One `git cat-file <mode>` at a repository's top level, and its pipes: a line, or
    exactly n bytes, each by a deadline."""

    def __init__(self, argv: Sequence[str], mode: str, where: Where, env: dict[str, str]) -> None:
        try:
            self.proc = subprocess.Popen(
                [*argv, "cat-file", mode],
                cwd=where.toplevel,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitFailed(f"cannot run git: {exc.strerror or exc}") from None
        self.pending = bytearray()  # read past the last reply (nothing, if honest)
        self.answered = False  # a reply's line came

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except (OSError, ValueError):
            raise _Broken("gone") from None

    def _read(self, deadline: float) -> None:
        fd = self.proc.stdout.fileno() if self.proc.stdout is not None else -1
        left = deadline - time.monotonic()
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        if left <= 0 or not poll.poll(max(1, int(left * 1000))):
            raise _Late()
        chunk = os.read(fd, 65536)
        if not chunk:
            raise _Broken("gone")
        self.pending += chunk

    def line(self, deadline: float) -> bytes:
        while b"\n" not in self.pending:
            if len(self.pending) > MAX_LINE:
                raise _Broken("a header line that does not end")
            self._read(deadline)
        end = self.pending.index(b"\n")
        if end > MAX_LINE:
            raise _Broken("a header line that does not end")
        line = bytes(self.pending[:end])
        del self.pending[: end + 1]
        self.answered = True
        return line

    def exactly(self, n: int, deadline: float) -> bytes:
        while len(self.pending) < n:
            self._read(deadline)
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def blob(self, oid: str, size: int, deadline: float) -> bytes:
        """The body of a `contents`/`--batch` reply for `oid` of `size` bytes (its header
        line first), checked against what `info` said."""
        again = self.line(deadline).split(b" ")
        if len(again) != 3 or again[0].decode("ascii", "replace") != oid or _size(again[2]) != size:
            raise _Broken("a reply for another object")
        body = self.exactly(size + 1, deadline)
        if body[-1:] != b"\n":
            raise _Broken("a reply that does not end where it said")
        return body[:-1]

    def refused(self, deadline: float) -> bool:
        """Whether it ended before any reply with git's usage error (exit 129): a git
        that does not know its mode (`--batch-command` before git 2.36)."""
        if self.answered:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(0.0, min(REFUSAL_WAIT, deadline - time.monotonic())))
        return self.proc.returncode == USAGE_EXIT

    def close(self) -> None:
        """Stop it (its stdin closed, then killed if it lingers) and reap it."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1.0)
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def _info(line: bytes, name: bytes) -> tuple[str, bytes, int] | None:
    """An `info` (or `--batch-check`) reply for `name`: (oid, type, size); None when git
    has no such object."""
    if line in (name + b" missing", name + b" ambiguous"):
        return None
    head = line.split(b" ")
    if len(head) != 3 or head[1] not in (b"blob", b"tree", b"commit", b"tag"):
        raise _Broken("a malformed reply")
    oid = head[0].decode("ascii", "replace")
    if not _is_oid(oid):
        raise _Broken("a malformed reply")
    return oid, head[1], _size(head[2])


class _Way:
    """The cat-file process(es) answering one repository's questions: `Batch` (git 2.36
    on) or `Pair` (any git)."""

    where: Where
    index_stat: tuple[int, int, int] | None  # the index as it may have been read
    binary: tuple[str, int, int, int] | None = None  # the git it runs (`_binary`)

    def ask(self, spec: str, held: str, cap: int, deadline: float) -> tuple[str, bytes | None]:
        """(oid, blob) of `spec` (a blob: anything else is missing), the blob None when
        its oid is `held`; ("", None) when missing. GitFailed past `deadline` or over
        `cap` bytes; _Broken when a process is dead or broke the protocol."""
        name = os.fsencode(spec)
        found = _info(self._info(name, deadline), name)
        if found is None or found[1] != b"blob":
            return "", None
        oid, _, size = found
        if oid == held:
            return oid, None
        if size > cap:
            raise GitFailed(f"the committed file is larger than {cap // 1024} KiB (not read)")
        return oid, self._contents(oid, size, deadline)

    def _info(self, name: bytes, deadline: float) -> bytes:
        raise NotImplementedError

    def _contents(self, oid: str, size: int, deadline: float) -> bytes:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def refused(self, deadline: float) -> bool:
        """Whether its git does not know this way (asked once the process is gone)."""
        return False

    def close(self) -> None:
        raise NotImplementedError


class Batch(_Way):
    """One `git cat-file --batch-command` at a repository's top level (git 2.36 on):
    `info <spec>`, then `contents <oid>`."""

    def __init__(self, argv: Sequence[str], where: Where, env: dict[str, str]) -> None:
        self.where = where
        self.index_stat = _stat(where.index)
        self.one = _Process(argv, "--batch-command", where, env)

    def _info(self, name: bytes, deadline: float) -> bytes:
        self.one.send(b"info " + name + b"\n")
        return self.one.line(deadline)

    def _contents(self, oid: str, size: int, deadline: float) -> bytes:
        self.one.send(f"contents {oid}\n".encode())
        return self.one.blob(oid, size, deadline)

    def pids(self) -> list[int]:
        return [self.one.proc.pid] if self.one.alive() else []

    def alive(self) -> bool:
        return self.one.alive()

    def refused(self, deadline: float) -> bool:
        return self.one.refused(deadline)

    def close(self) -> None:
        self.one.close()


class Pair(_Way):
    """The same questions for a git without `--batch-command` (before 2.36: Ubuntu
    22.04's 2.34, Debian 11's 2.30): one `git cat-file --batch-check` (each object's
    oid, type and size) and, from the first blob read on, one `git cat-file --batch`
    (a blob by its oid), both long-lived, run and bounded as `Batch` is."""

    def __init__(self, argv: Sequence[str], where: Where, env: dict[str, str]) -> None:
        self.where = where
        self.index_stat = _stat(where.index)  # only the check reads the index
        self._argv, self._env = argv, env
        self.check = _Process(argv, "--batch-check", where, env)
        self.contents: _Process | None = None

    def _info(self, name: bytes, deadline: float) -> bytes:
        self.check.send(name + b"\n")
        return self.check.line(deadline)

    def _contents(self, oid: str, size: int, deadline: float) -> bytes:
        if self.contents is None:
            self.contents = _Process(self._argv, "--batch", self.where, self._env)
        self.contents.send(oid.encode() + b"\n")
        return self.contents.blob(oid, size, deadline)

    def pids(self) -> list[int]:
        procs = [self.check] if self.contents is None else [self.check, self.contents]
        return [p.proc.pid for p in procs if p.alive()]

    def alive(self) -> bool:
        return self.check.alive() and (self.contents is None or self.contents.alive())

    def close(self) -> None:
        self.check.close()
        if self.contents is not None:
            self.contents.close()


class _Broken(Exception):
    """The process died or broke the protocol: it is replaced."""


class _Late(Exception):
    """The process did not answer by the deadline: it is killed."""


class Batches:
    """The cat-file processes of one host, one per repository, each closed after `idle`
    seconds unused (by one waiting thread, there only while a process is)."""

    def __init__(self, idle: float = IDLE) -> None:
        self.idle = idle
        self._lock = threading.Lock()  # the tables below
        self._wake = threading.Condition(self._lock)
        self._batches: dict[str, _Way] = {}  # toplevel -> its process(es)
        # each git binary seen: whether it knows --batch-command (learnt from a refusal)
        self._batch_command: dict[tuple[str, int, int, int] | None, bool] = {}
        self._used: dict[str, float] = {}  # toplevel -> when last used (monotonic)
        self._asking: dict[str, threading.Lock] = {}  # toplevel -> one question at a time
        self._where: dict[str, tuple[Where | None, float]] = {}  # folder -> (repo, when)
        self._reaper: threading.Thread | None = None
        self._exit_hook = False

    def committed(
        self,
        path: str,
        *,
        argv: Sequence[str],
        env: dict[str, str],
        find: Runner,
        cap: int,
        deadline: float,
        held: str = "",
    ) -> Committed | None:
        """The blob of the file at `path` (absolute) at HEAD, else in the index; None when
        it is in no repository or neither has it. `find` runs a one-off git (the
        repository's discovery, once per folder while in use)."""
        folder, name = os.path.split(path)
        where = self._locate(folder, find, deadline)
        if where is None:
            return None
        rel = os.path.relpath(os.path.join(os.path.realpath(folder), name), where.toplevel)
        if rel.startswith(".." + os.sep) or rel == ".." or "\n" in rel or "\0" in rel:
            return None  # outside its work tree, or no name cat-file can be asked
        with self._lock:
            asking = self._asking.setdefault(where.toplevel, threading.Lock())
        with asking:
            oid, data = self._ask(where, argv, env, f"HEAD:{rel}", held, cap, deadline)
            if oid:
                return Committed(oid, "HEAD", data)
            oid, data = self._ask(where, argv, env, f":0:{rel}", held, cap, deadline, index=True)
            return Committed(oid, "the index", data) if oid else None

    def _ask(
        self,
        where: Where,
        argv: Sequence[str],
        env: dict[str, str],
        spec: str,
        held: str,
        cap: int,
        deadline: float,
        index: bool = False,
    ) -> tuple[str, bytes | None]:
        failed = 0
        while True:  # a dead or broken process is replaced once
            batch = self._batch(where, argv, env, fresh_index=index)
            try:
                return batch.ask(spec, held, cap, deadline)
            except _Late:
                self._drop(where.toplevel, batch)
                raise GitFailed("git took longer than the deadline (stopped)") from None
            except _Broken as exc:
                refused = str(exc) == "gone" and batch.refused(deadline)  # before it is reaped
                self._drop(where.toplevel, batch)
                if refused:
                    with self._lock:  # a git before 2.36: the two older modes from now on
                        known = self._batch_command.get(batch.binary)
                        self._batch_command[batch.binary] = False
                    if known is not False:
                        continue  # not a failure: the next question goes the other way
                failed += 1
                if failed == 2:
                    raise GitFailed(f"git cat-file failed: {exc}") from None

    def _batch(
        self, where: Where, argv: Sequence[str], env: dict[str, str], fresh_index: bool
    ) -> _Way:
        with self._lock:
            batch = self._batches.get(where.toplevel)
            stale = batch is not None and (
                not batch.alive() or (fresh_index and batch.index_stat != _stat(where.index))
            )
            if batch is None or stale:
                if batch is not None:
                    batch.close()
                binary = _binary(argv[0], env)
                modern = self._batch_command.get(binary, True) and not _forced_pair()
                batch = (Batch if modern else Pair)(argv, where, env)
                batch.binary = binary
                self._batches[where.toplevel] = batch
                if not self._exit_hook:
                    self._exit_hook = True
                    atexit.register(self.close)
            self._used[where.toplevel] = time.monotonic()
            self._start_reaper()
            return batch

    def _drop(self, toplevel: str, batch: _Way) -> None:
        batch.close()
        with self._lock:
            if self._batches.get(toplevel) is batch:
                del self._batches[toplevel]

    def _locate(self, folder: str, find: Runner, deadline: float) -> Where | None:
        """The repository holding `folder` (git's own discovery and safe.directory check;
        remembered while its process is in use, an idle period at most)."""
        now = time.monotonic()
        with self._lock:
            known = self._where.get(folder)
            if known is not None and now - known[1] < self.idle:
                return known[0]
        try:
            out = find(["rev-parse", "--show-toplevel", "--git-path", "index"], folder, deadline)
        except GitFailed as exc:
            if "dubious ownership" in str(exc) or "longer than" in str(exc):
                raise
            where = None  # not in a repository (or in its .git folder)
        else:
            lines = out.decode("utf-8", "surrogateescape").split("\n")
            if len(lines) < 2 or not lines[0]:
                where = None
            else:
                top = os.path.realpath(lines[0])
                where = Where(top, os.path.join(folder, lines[1]))
        with self._lock:
            self._where[folder] = (where, now)
            self._start_reaper()
        return where

    def _start_reaper(self) -> None:
        """(under the lock) The idle closer, when there is something to close."""
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name="kzn-git-idle", daemon=True)
            self._reaper.start()
        self._wake.notify()

    def _reap(self) -> None:
        with self._lock:
            while self._batches or self._where:
                now = time.monotonic()
                for top, used in list(self._used.items()):
                    if now - used >= self.idle:
                        del self._used[top]
                        batch = self._batches.pop(top, None)
                        if batch is not None:
                            batch.close()
                for folder, (_, when) in list(self._where.items()):
                    if now - when >= self.idle:
                        del self._where[folder]
                stamps = [*self._used.values(), *(w for _, w in self._where.values())]
                if stamps or self._batches:
                    self._wake.wait(max(0.01, min(stamps, default=now) + self.idle - now))
            self._reaper = None

    def pids(self) -> list[int]:
        """The processes running now (for the tests)."""
        with self._lock:
            return [pid for b in self._batches.values() for pid in b.pids()]

    def close(self) -> None:
        """Every process closed (the host's exit)."""
        with self._lock:
            batches = list(self._batches.values())
            self._batches.clear()
            self._used.clear()
            self._where.clear()
            self._wake.notify()
        for batch in batches:
            batch.close()


def _binary(name: str, env: dict[str, str]) -> tuple[str, int, int, int] | None:
    """The git program `name` runs as in `env` (its real path, device, inode and
    modification time: a git replaced in place is another), None when not found."""
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        return None
    real = os.path.realpath(found)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_mtime_ns)


def _forced_pair() -> bool:
    """The two older modes whatever git says (KZNLLM_GIT_BATCH_COMMAND=0: the tests run
    them on a recent git, and a user can, should a git's refusal be missed)."""
    return os.environ.get("KZNLLM_GIT_BATCH_COMMAND", "") == "0"


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _size(raw: bytes) -> int:
    if not raw.isdigit() or len(raw) > 15:
        raise _Broken("a malformed size")
    return int(raw)


def _is_oid(oid: str) -> bool:
    return len(oid) in (40, 64) and all(c in "0123456789abcdef" for c in oid)
