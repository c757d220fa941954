"""A program run to its answer, bounded in time and output: stdin fed, stdout and the
head of stderr read, all through one selector on the calling thread (blocking: call it
off the event loop). The process runs in a session of its own and its whole group is
killed on any way out (a deadline passed, an answer over its cap, an error of ours), so
nothing it started outlives it. The git source's `git` (sources/git.py) and the CLI's
headless Neovim (sources/headless.py) run through it; each words its own failures."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

MAX_ERROR_BYTES = 4096  # of stderr kept, for the line that says why


class Expired(Exception):
    """The deadline passed before the program answered (it was killed)."""


class OverCap(Exception):
    """The program's stdout went past its cap (it was killed)."""


@dataclass(frozen=True, slots=True)
class Ran:
    code: int  # the exit status
    out: bytes  # stdout, whole (within the cap)
    err: bytes  # the first MAX_ERROR_BYTES or so of stderr


def run(
    argv: list[str],
    *,
    stdin: bytes | None,
    until: float,
    cap: int,
    env: dict[str, str],
    cwd: str | None = None,
) -> Ran:
    """Run `argv` (in `cwd`, with `env`) with `stdin` on its stdin (None: none), until
    `until` (time.monotonic()) at the latest, reading at most `cap` bytes of stdout.
    OSError when it cannot start; Expired, OverCap."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: killed whole, whatever it started
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    size = err_size = 0
    pending = memoryview(stdin or b"")
    try:
        with selectors.DefaultSelector() as sel:
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    os.set_blocking(f.fileno(), False)
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            if proc.stdin is not None:
                if pending:
                    sel.register(proc.stdin, selectors.EVENT_WRITE)
                else:
                    proc.stdin.close()
            while sel.get_map():
                left = until - time.monotonic()
                if left <= 0:
                    raise Expired
                for key, _ in sel.select(left):
                    if key.fileobj is proc.stdin:
                        assert proc.stdin is not None
                        try:
                            n = os.write(proc.stdin.fileno(), pending[:65536])
                        except BrokenPipeError:  # it stopped reading: its answer tells
                            n = len(pending)
                        pending = pending[n:]
                        if not pending:
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.data is out:
                        size += len(chunk)
                        if size > cap:
                            raise OverCap
                        out.append(chunk)
                    elif err_size < MAX_ERROR_BYTES:
                        err.append(chunk)
                        err_size += len(chunk)
            try:
                code = proc.wait(max(0.0, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Expired from None
    finally:
        if proc.returncode is None:
            _kill(proc)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    return Ran(code, b"".join(out), b"".join(err))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.wait()
