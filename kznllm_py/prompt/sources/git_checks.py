"""The host's check of a diff the git source sent early (lua/kznllm/context/git.lua):
an editor that holds a committed text diffs against it at the keypress and the fill
goes at once, naming the oid of that text and the ask (`git_blob`) it sent with it, so
the fill never waits for the host's round trip. The host holds such a fill until its
own answer to that ask says whether the oid is still the file's: when it is, the diff
stands; when it is not (a commit, a checkout since), until the editor's diff of the
keypress's text against the new committed text comes (`git_diff`). Each wait is
bounded: past it the fill goes without the git section, and a note says why.

One `Checks` per host, on its event loop; it keeps the last KEEP asks. `settled` says
whether the diff the fill carries stands (`Settled.stands`), and if not, what takes its
place."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from kznllm_py.prompt.sources import git
from kznllm_py.prompt.sources.git import Changes

KEEP = 50  # asks remembered (the editor forgets an unanswered one after as many)
ANSWER_WAIT = git.TIMEOUT + 1.0  # s: the host's own answer (its gits are bounded by TIMEOUT)
REDIFF_WAIT = 2.0  # s: the editor's diff against the new committed text

T = TypeVar("T")


@dataclass
class _Ask:
    oid: asyncio.Future[str]  # the oid the host found for the file ("" for none)
    rediff: asyncio.Future[Changes | None]  # the editor's diff against the new text


@dataclass(frozen=True, slots=True)
class Settled:
    """What the check says of a fill's git section. `stands`: the diff the fill carries
    goes as it is (nothing to check, its oid confirmed, or the editor's new diff the
    same); else `changes` goes in its place (the new diff, a note, or None: none)."""

    changes: Changes | None
    stands: bool


class Checks:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # the host's loop, given: a cold host handles the keypress's ask before its
        # loop runs (asyncio.get_running_loop() then fails, and the ask was lost)
        self._loop = loop
        self._asks: OrderedDict[int, _Ask] = OrderedDict()

    def asked(self, request: int) -> None:
        """The editor's ask `request` came (before any fill that names it)."""
        loop = self._loop
        self._asks[request] = _Ask(loop.create_future(), loop.create_future())
        while len(self._asks) > KEEP:
            self._asks.popitem(last=False)

    def answered(self, request: int, oid: str) -> None:
        """The host's answer to ask `request` named `oid` ("" for none)."""
        ask = self._asks.get(request)
        if ask is not None and not ask.oid.done():
            ask.oid.set_result(oid)

    def rediffed(self, request: int, raw: object) -> None:
        """The editor's diff for ask `request` against the new committed text (its
        `git` table, as untrusted as a fill's: typed by git.parse)."""
        ask = self._asks.get(request)
        if ask is not None and not ask.rediff.done():
            ask.rediff.set_result(git.parse(raw))

    async def settled(self, found: Changes | None) -> Settled:
        """`found` as the fill may use it: a diff sent early (`check`) stands once the
        host's answer confirms its oid, else the editor's diff against the new text
        takes its place; unchecked (an ask never seen, or no answer in time), a note."""
        if found is None or not found.check:
            return Settled(found, stands=True)
        sent = Changes(found.hunks, found.base, found.note)  # as checked: no ask, no oid
        ask = self._asks.get(found.check)
        if ask is None:  # a host that never saw the ask (started since): not checked
            note = Changes(note="git: the committed text could not be checked (not sent)")
            return Settled(note, stands=False)
        try:
            oid = await _within(ask.oid, ANSWER_WAIT)
            if oid == found.oid:
                return Settled(sent, stands=True)
            rediff = await _within(ask.rediff, REDIFF_WAIT)
            return Settled(rediff, stands=rediff == sent)
        except TimeoutError:
            note = Changes(note="git: the committed text could not be checked in time")
            return Settled(note, stands=False)


async def _within(fut: asyncio.Future[T], timeout: float) -> T:
    """`fut`'s result, waited for at most `timeout` s (TimeoutError past it); one that
    is done already costs no turn of the loop (the answer usually came before the fill)."""
    if fut.done():
        return fut.result()
    return await asyncio.wait_for(asyncio.shield(fut), timeout)
