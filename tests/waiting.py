"""Waiting in the tests for what nothing can report: another process's state (a host
that exits, a proxy's log line, a row another process writes). The condition is polled
with short naps up to a deadline; what Neovim or a loopback server can report is waited
on through them instead (`Child.wait_for`, `LoopbackServer.wait_*`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    pred: Callable[[], T],
    timeout: float,
    what: str,
    nap: float = 0.02,
    between: Callable[[], object] | None = None,
) -> T:
    """`pred()`'s first true value, polled every `nap` s (or after each `between()`: a
    round trip that lets what it waits on happen, `Child.wait_for`'s); past `timeout`
    s, an AssertionError that names `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        if between is None:
            time.sleep(nap)
        else:
            between()
