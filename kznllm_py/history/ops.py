"""What the history sidebar asks the host for: the page of entries with the context
section, one entry (to open, yank or put), deleting and clearing. No Neovim here: the
plugin passes the Lua payload in and sends the returned dicts back.

Every store call runs on the recorder's thread, after the writes queued before it, so a
sidebar refreshed when a request ends shows that request's outcome."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kznllm_py import history, options, secrets
from kznllm_py.errors import KznError
from kznllm_py.history import HistoryStore
from kznllm_py.history import view as sidebar
from kznllm_py.history.recorder import HistoryRecorder
from kznllm_py.prompt import context

if TYPE_CHECKING:
    from kznllm_py.settings import Settings


def context_info(p: Mapping[str, Any], settings: Settings) -> sidebar.ContextInfo:
    """The sidebar's context section: the preset the next request would use (and
    whether its key is there), the current buffer, the `.kzn` files it would send.
    Reads files: call it off the event loop."""
    info: dict[str, Any] = {
        "buffer_path": options.text(p, "path"),
        "filetype": options.text(p, "filetype"),
    }
    try:
        chosen = p.get("preset")
        preset = settings.preset(chosen if isinstance(chosen, str) else None)
    except KznError as exc:
        return sidebar.ContextInfo(error=secrets.redact(str(exc)), **info)
    info.update(
        preset_id=preset.id,
        provider=preset.provider,
        model=preset.model,
        key=secrets.describe(preset.api_key),
        key_present=secrets.present(preset.api_key),
    )
    cwd = options.text(p, "cwd")
    allow = list(settings.kzn_allow)
    kzn_dir = context.find_kzn_dir(Path(cwd), allow=allow) if cwd else None
    if kzn_dir is not None:
        try:
            budget = context.budget_for(preset.context_window)
            found = context.collect(kzn_dir, budget_tokens=budget)
            info["kzn"] = sidebar.KznFiles(
                directory=_short(kzn_dir, cwd),
                files=[(f.path, f.tokens) for f in found.included],
                skipped=[(s.path, s.reason) for s in found.skipped],
                budget=budget,
            )
        except (KznError, OSError) as exc:
            info["kzn"] = sidebar.KznFiles(directory=_short(kzn_dir, cwd), error=str(exc))
    return sidebar.ContextInfo(**info)


def _short(path: Path, cwd: str) -> str:
    """`path` as the sidebar shows it: relative to the working directory when inside
    it, else with the home directory as ~."""
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        home = str(Path.home())
        text = str(path)
        return "~" + text[len(home) :] if text.startswith(home + "/") else text


class HistoryOps:
    """One per host, around the host's recorder. `live` maps the ids of entries being
    streamed by this host to their job ids (the plugin keeps it)."""

    UNDO_DEPTH = 50  # deleted entries `u` in the sidebar can bring back, newest first

    def __init__(self, recorder: HistoryRecorder, live: Mapping[int, int]) -> None:
        self.recorder = recorder
        self.live = live
        self._deleted: list[dict[str, Any]] = []

    async def view(self, p: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
        """A page of the sidebar; the first page (offset 0) with the context section."""
        flt = sidebar.parse_filter(options.text(p, "filter"))
        offset = max(0, int(p.get("offset") or 0))
        first = offset == 0

        def read(
            store: HistoryStore,
        ) -> tuple[list[history.EntrySummary], int, Any, float | None]:
            where = {"text": flt.text or None, "preset": flt.preset or None}
            where["status"] = flt.status or None
            total = store.count(**where)
            entries = store.list(limit=sidebar.PAGE, offset=offset, **where)
            if not first:
                return entries, total, None, None
            midnight = datetime.combine(date.today(), datetime.min.time()).timestamp()
            return entries, total, context_info(p, settings), store.spent(midnight)[0]

        entries, total, ctx, spent = await self.recorder.read(read)
        keys = {**sidebar.DEFAULT_KEYS, **_keys(p.get("keys"))}
        out = sidebar.render(
            entries,
            total=total,
            offset=offset,
            now=time.time(),
            live=dict(self.live),
            context=ctx,
            flt=flt,
            keys=keys,
            show_help=bool(p.get("help")),
            width=_width(p.get("width")),
            spent_today=spent,
        )
        out["seq"] = p.get("seq")
        out["keys"] = {name: lhs for name, lhs in keys.items() if lhs}  # the editor maps these
        return out

    async def entry(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """One entry for `action`: 'open' (the conversation view), 'yank' or 'put'
        (the response)."""
        entry_id = int(p.get("id") or 0)
        action = options.text(p, "action") or "open"
        if action == "open":
            chain = await self.recorder.read(lambda s: s.chain(entry_id))
            if not chain:
                raise KznError(f"history entry {entry_id} is gone")
            return {"action": action, **sidebar.entry_view(chain)}
        entry = await self.recorder.read(lambda s: s.get(entry_id))
        if entry is None:
            raise KznError(f"history entry {entry_id} is gone")
        return {
            "action": action,
            "id": entry_id,
            "text": entry.response,
            "register": p.get("register"),
            # for 'apply': what the answer replaces, and where it was
            "selection": entry.selection,
            "path": entry.path,
            "status": entry.status,
        }

    async def delete(self, entry_id: int) -> bool:
        """Delete the entry; `undelete` brings it back (this host keeps the last few)."""
        taken = await self.recorder.read(lambda s: s.take(entry_id))
        if taken is None:
            return False
        self._deleted = [*self._deleted[-(self.UNDO_DEPTH - 1) :], taken]
        return True

    async def undelete(self) -> int:
        """Put back the entry deleted last; its id, or 0 when there is none to restore."""
        while self._deleted:
            taken = self._deleted.pop()

            def put_back(store: HistoryStore, t: dict[str, Any] = taken) -> bool:
                return store.restore(t)

            if await self.recorder.read(put_back):
                return int(taken["row"]["id"])
        return 0

    async def clear(self) -> int:
        self._deleted.clear()  # what was cleared stays gone: nothing to bring back
        return await self.recorder.read(lambda s: s.clear())

    async def review_outcome(self, p: Mapping[str, Any]) -> bool:
        """The editor's word on a reviewed answer: {id, status = 'rejected'}."""
        entry_id, status = p.get("id"), p.get("status")
        if not isinstance(entry_id, int) or isinstance(entry_id, bool) or status != "rejected":
            return False
        return bool(await self.recorder.read(lambda s: s.set_review_outcome(entry_id, status)))

    async def get(self, entry_id: int) -> history.Entry | None:
        return await self.recorder.read(lambda s: s.get(entry_id))


def _width(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 80


def _keys(value: Any) -> dict[str, str]:
    """setup()'s sidebar keys over the defaults (view.DEFAULT_KEYS, the one place they
    are): a key, or false ("") for none."""
    if not isinstance(value, Mapping):
        return {}
    return {
        k: v if isinstance(v, str) else ""
        for k, v in value.items()
        if k in sidebar.DEFAULT_KEYS and (isinstance(v, str) or v is False)
    }
