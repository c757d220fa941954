"""`:KznContext`: what a fill at the cursor (or on the selection) would send now, section
by section, without sending anything: the host builds the same job a fill builds
(`job_of`, the project's files, rules and definitions: `with_files`, then `fitted`) and
this renders it. Pure but for `build`, which reads off the event loop as a fill does."""

from __future__ import annotations

from kznllm_py.errors import printable
from kznllm_py.fill import job as payload
from kznllm_py.fill.request import FillRequest
from kznllm_py.prompt import debug_request, sandbox
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.settings import Settings

TITLE = "# kznllm context: what a fill here would send now (nothing was sent)"


async def build(req: FillRequest, settings: Settings) -> payload.FillJob:
    """The fitted job of `req`, as `_fill` builds it before it renders the prompt."""
    job = payload.job_of(req, settings)
    if payload.reads_files(job):
        job = await sandbox.run_off_loop(payload.with_files, job)
    return payload.fitted(job)


def _tokens(n: int) -> str:
    return f"~{n} token{'' if n == 1 else 's'}"


def render(job: payload.FillJob) -> list[str]:
    """The view's lines: the preset, the budget and what uses it, each section sent
    (in the debug view's words, then its text) and each left out with why."""
    ctx = job.ctx
    preset = job.preset
    asked = estimate_tokens(ctx.selection) + estimate_tokens(ctx.query)
    placed = sum(s.tokens for s in ctx.sections)
    around = estimate_tokens(ctx.before) + estimate_tokens(ctx.after)
    budget = job.context_options.budget
    what = "the selection" if ctx.mode == "replace" else "the cursor"
    out = [
        TITLE,
        "",
        f"- at {what} in {printable(ctx.path or '[No Name]')}",
        f"- preset: `{printable(preset.id)}` ({printable(preset.provider)} "
        f"{printable(preset.model)})",
        f"- budget: {budget} tokens; used {_tokens(asked + placed + around)}: the "
        f"selection and the query {_tokens(asked)} (never cut), the sections "
        f"{_tokens(placed)}, the lines around {_tokens(around)} "
        f"({ctx.before.count(chr(10)) + 1 if ctx.before else 0} before, "
        f"{ctx.after.count(chr(10)) + 1 if ctx.after else 0} after)",
    ]
    out += [f"- {printable(n)}" for n in job.notices]
    if not ctx.sections and not ctx.left:
        out.append("- no context sections (no parser, server or rules here, or all off)")
    out += debug_request.section_lines(
        [{"title": s.title, "tokens": s.tokens, "cut": s.cut} for s in ctx.sections],
        [{"title": s.title, "reason": s.reason} for s in ctx.left],
        job.gather_notes,
    )
    for s in ctx.sections:
        where = ", in the system prompt" if s.system else ""
        cut = ", cut to fit" if s.cut else ""
        out += ["", f"## {printable(s.title)}", "", f"_{s.kind}, {_tokens(s.tokens)}{cut}{where}_"]
        out += ["", *debug_request.fenced(s.text).split("\n")]
    return out
