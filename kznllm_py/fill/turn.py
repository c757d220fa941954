"""A fill's own logic, pure: what it sends and records (a fresh request, `:KznSend`'s
edited view, a follow-up, a re-run), where a normal-mode answer goes and the context
split there, the headings written before the answer, history's new entry. Plain data
in, plain data out: the plugin does the I/O (history reads, the editor's calls)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kznllm_py.fill.job import FillJob
from kznllm_py.fill.request import PLACEMENTS, FillRequest, Spot, placement
from kznllm_py.history import conversation
from kznllm_py.history.records import Entry, NewEntry
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers.base import Prompt
from kznllm_py.stream.events import Outcome

__all__ = [
    "PLACEMENTS",
    "FillEnd",
    "Turn",
    "at_spot",
    "new_entry",
    "placement",
    "span_json",
    "turn",
]


@dataclass(frozen=True)
class Turn:
    """What a fill sends and records: the job, the prompt when it is not rendered from
    the templates (a follow-up or re-run), the entry it follows, the recorded mode, and
    the text written before the answer."""

    job: FillJob
    prompt: Prompt | None
    parent_id: int | None
    mode: str
    head: str
    span: str = ""  # a re-run's: where the selection of the entry it re-asks stood


@dataclass(frozen=True)
class FillEnd:
    """How a fill ended, the record the editor's `job.finish` gets (as `to_dict()`:
    lua/kznllm/job/init.lua reads the outcome's figures, `fold`, `preset`, `writes`,
    `pace_ms`, `skipped_files` and `notice`)."""

    outcome: Outcome
    preset: str
    writes: int  # the buffer writes it took
    pace_ms: float  # the write pace it ended at
    fold: list[int] | None = None  # the debug view's reasoning lines (1-based, inclusive)
    skipped_files: int = 0  # `.kzn` files left out
    notice: str | None = None  # a line to show once (the offline demo model answered)

    def to_dict(self) -> dict[str, Any]:
        info = self.outcome.to_dict()
        if self.fold is not None:
            info["fold"] = self.fold
        info["preset"] = self.preset
        info["writes"] = self.writes
        info["pace_ms"] = round(self.pace_ms, 1)
        if self.skipped_files:
            info["skipped_files"] = self.skipped_files
        if self.notice is not None:
            info["notice"] = self.notice
        return info


def turn(req: FillRequest, job: FillJob, entry: Entry | None = None) -> Turn:
    """The turn of `req`: `entry` is the history entry it follows up or re-runs (the
    caller reads it: `req.followup or req.rerun`), None for any other fill."""
    if req.send is not None:  # :KznSend: the debug view as edited
        head = f"\n\n## Answer ({job.preset.id}, to the edited request)\n\n"
        from kznllm_py.prompt import debug_request

        # history's entry says so, with the question as the view now asks it
        ctx = replace(job.ctx, mode="yap", query=debug_request.last_question(req.send))
        return Turn(replace(job, ctx=ctx), None, None, "send", head)
    if entry is None:
        return Turn(job, None, None, "debug" if job.debug else job.ctx.mode, "")
    answer = f"## Answer ({job.preset.id})\n\n"
    if req.followup:
        prompt = conversation.follow_up(entry, job.ctx.query)
        ctx = replace(job.ctx, mode="yap")
        head = f"\n\n## You\n\n{job.ctx.query}\n\n{answer}"
        return Turn(replace(job, ctx=ctx), prompt, entry.id, "chat", head)
    mode = entry.mode if entry.mode in ("replace", "yap") else "yap"
    ctx = replace(
        job.ctx,
        mode=mode,
        query=entry.query,
        selection=entry.selection,
        path=entry.path,
        filetype=entry.filetype,
    )
    head = f"# kznllm re-run of #{entry.id} with {job.preset.id}\n\n## Query\n\n"
    head += f"{entry.query}\n\n{answer}"
    t = Turn(replace(job, ctx=ctx), conversation.rerun(entry), None, "rerun", head)
    return replace(t, span=entry.span)  # where the selection it re-asks stood


def at_spot(ctx: FillContext, where: str, spot: Spot | None) -> FillContext:
    """The context split where the answer will go, not at the cursor: the editor sends
    it split after the cursor's character, with `spot`: the cursor line's text before
    and after that point. 'line' on a blank line: its end; 'line' elsewhere and
    'below': the start of the next line; 'above': the start of the cursor's line. A
    context that does not hold the line as said is left as it is."""
    if where == "cursor" or spot is None:
        return ctx
    head, rest = spot.head, spot.rest
    before, after = ctx.before, ctx.after
    if not before.endswith(head) or not after.startswith(rest):
        return ctx
    if where == "above":
        return replace(ctx, before=before[: len(before) - len(head)], after=head + after)
    if where == "line" and spot.blank:
        return replace(ctx, before=before + rest, after=after[len(rest) :])
    tail = after[len(rest) :]
    return replace(ctx, before=before + rest + "\n", after=tail[1:] if tail[:1] == "\n" else tail)


def span_json(req: FillRequest, ctx: FillContext) -> str:
    """Where a replace's selection stood, for history (:KznApply finds it again)."""
    if ctx.mode != "replace" or req.span is None:
        return ""
    return req.span.to_json()


def new_entry(job: FillJob, *, mode: str, parent_id: int | None = None) -> NewEntry:
    """What a fill's entry starts with: the ask, where it was made, the preset's model."""
    ctx = job.ctx
    return NewEntry(
        mode=mode,
        query=ctx.query,
        preset_id=job.preset.id,
        provider=job.preset.provider,
        model=job.preset.model,
        path=ctx.path,
        filetype=ctx.filetype,
        selection=ctx.selection,
        parent_id=parent_id,
    )
