"""A fill's job: its typed request (kznllm_py/fill/request.py) under the host's settings,
then the project's files and templates read into it (off the event loop)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kznllm_py.errors import printable
from kznllm_py.fill import fitting, request
from kznllm_py.fill.request import FillRequest
from kznllm_py.prompt import context, project_templates, prompts, sandbox, sections, trust
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.presets import Preset
from kznllm_py.prompt.sources import definitions, gathered, git, rules
from kznllm_py.prompt.sources import outline as outline_source
from kznllm_py.prompt.sources import scope as scope_source
from kznllm_py.providers.base import HttpRequest
from kznllm_py.settings import Settings
from kznllm_py.stream import prepare
from kznllm_py.stream.answer import DEFAULT_MAX_RESPONSE_BYTES
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.generation import RetryPolicy
from kznllm_py.stream.prepare import template_set


@dataclass(frozen=True)
class FillJob:
    preset: Preset
    ctx: prompts.FillContext
    timeouts: Timeouts
    search_dirs: tuple[Path, ...]
    debug: bool
    kzn_dir: Path | None
    skipped: tuple[context.Skipped, ...] = ()
    used_default: bool = False  # no preset chosen: the default was picked
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # answer + reasoning, UTF-8 bytes
    # `.kzn` folders skipped (not the user's, or writable by all): one line each
    ignored_kzn: tuple[str, ...] = ()
    # Neovim's trust database (stdpath('state')/trust): project templates need it
    trust_db: Path | None = None
    # how the user trusts project files, for the line that says they are not used
    trust_how: str = ":KznTrust reviews and trusts them"
    # lines to show once (project templates not used, and why)
    notices: tuple[str, ...] = ()
    # the context sections offered (kznllm_py/prompt/sections.py), fitted by `fitted`
    offered: tuple[sections.Section, ...] = ()
    context_options: sections.ContextOptions = field(default_factory=sections.ContextOptions)
    # what the editor said about gathering them (a source that failed or was late)
    gather_notes: tuple[str, ...] = ()
    # the language servers' definitions, read into `offered` by `with_definitions`
    definition_entries: tuple[definitions.Entry, ...] = ()
    definitions: definitions.Asked = field(default_factory=definitions.Asked)
    # the working directory where the fill was asked (the project's rules; the project
    # root is its git root)
    cwd: str = ""
    # the CLI's --range/--line rows (1-based), for its --git (the editor gathers git
    # at the keypress: lua/kznllm/context/git.lua)
    rows: tuple[int, int] | None = None
    # the enclosing scope offered: `fitted` sends only its title when the lines around
    # the selection hold it whole
    scope: scope_source.Scope | None = None
    # the file's outline offered: `fitted` leaves out the entries the lines around the
    # selection show (they are sent whole), and the section when none is left
    outline: outline_source.Outline | None = None
    # where the project's rules are read from (None: rules off, no project root, or no
    # rules file there), found once (`with_rules_root`: `job_of` on the loop, a few lstat
    # calls) and used by both the on-loop `reads_files` and the off-loop `with_files`
    rules_root: Path | None = None
    rules_looked: bool = False  # False: not looked for yet (a job built by hand: the CLI's)


def parse(p: Mapping[str, Any], settings: Settings | None = None) -> FillJob:
    """The job of a raw fill table (the CLI's and the tests' way in): `job_of` its
    typed request (kznllm_py/fill/request.py)."""
    return job_of(request.parse(p), settings)


def job_of(req: FillRequest, settings: Settings | None = None) -> FillJob:
    """The job of a fill request (what is new with each: the buffer's context, the
    query, the preset's id, the per-call flags) under the host's `settings` (validated
    once, at configure), without the project files yet (see `with_project_files`)."""
    settings = Settings() if settings is None else settings
    preset = settings.preset(req.preset)
    timeouts = Timeouts(**settings.timeouts)  # type: ignore[arg-type]
    retry = RetryPolicy(tries=settings.retries) if settings.retries else RetryPolicy()
    cap = settings.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES
    allow = list(settings.kzn_allow)
    cwd = req.cwd
    found = context.discover_kzn(Path(cwd), allow=allow) if cwd else context.Discovery(None)
    kzn_dir = found.kzn_dir
    # setup()'s `context`, with the preset's own over it (checked with the preset)
    shown = sections.context_options(preset.context, base=settings.context)
    ctx = prompts.FillContext(
        mode=req.mode,
        query=req.query,
        selection=req.selection,
        filetype=req.filetype,
        path=req.path,
        before=req.before,
        after=req.after,
        cursor=req.cursor,
    )
    job = FillJob(
        preset=preset,
        ctx=ctx,
        timeouts=timeouts,
        # the project's templates join in with_project_files, once judged trusted
        search_dirs=prompts.search_path(
            user_config=Path(settings.config_dir) if settings.config_dir else None,
        ),
        debug=req.debug,
        kzn_dir=kzn_dir,
        used_default=req.preset is None,
        retry=retry,
        max_response_bytes=cap,
        ignored_kzn=found.ignored,
        trust_db=trust.trust_file(settings.state_dir) if settings.state_dir else None,
        offered=tuple(s for s in gathered.sections(req.gathered, req.path) if shown.on(s.kind)),
        context_options=shown,
        gather_notes=(*req.gathered.notes, *_git_note(req), *req.gathered.definitions.notes()),
        definitions=req.gathered.definitions if shown.on("definitions") else (definitions.Asked()),
        cwd=cwd,
        scope=req.gathered.scope if shown.on("scope") else None,
        outline=req.gathered.outline if shown.on("outline") else None,
    )
    return with_rules_root(job)


def with_definitions(job: FillJob) -> FillJob:
    """The definitions the language servers gave, read (project files only, confined)
    into a section offered with the others (kznllm_py/prompt/sources/definitions.py);
    `fitted` leaves out those the lines around the selection hold once fitted. Reads
    files: off the event loop, and only when there are some (`job.definitions`)."""
    if not job.definitions.found or not job.cwd:
        return job
    root = str(context.project_root(Path(job.cwd)))
    return _with_entries(job, definitions.entries(job.definitions, root))


def _with_entries(job: FillJob, found: tuple[definitions.Entry, ...]) -> FillJob:
    offered = tuple(s for s in job.offered if s.kind != "definitions")
    sec = definitions.section_of(found)
    return replace(
        job, offered=offered if sec is None else (*offered, sec), definition_entries=found
    )


def _git_note(req: FillRequest) -> tuple[str, ...]:
    """Why the git section is empty (another user's repository, a hung git), if said."""
    found = req.gathered.git
    return (printable(found.note),) if found is not None and found.note else ()


def with_rules_root(job: FillJob) -> FillJob:
    """The job with `rules_root` found, once: a job that looked already is returned as
    it is. The rules on and a rules file at the project root (a few lstat calls)."""
    if job.rules_looked:
        return job
    root = None
    if job.context_options.on("rules"):
        root = rules.project_root(_absolute(job.ctx.path, job.cwd), job.cwd, job.kzn_dir)
        root = root if root is not None and rules.present(root) else None
    return replace(job, rules_root=root, rules_looked=True)


def reads_repo(job: FillJob) -> bool:
    """Whether `with_repo_context` has anything to do: git switched on, or the rules
    with a rules file at the project root (`with_rules_root`: a fill without any costs
    no hop to a thread and back)."""
    on = job.context_options.on
    if on("git") and job.ctx.path and job.rows is not None:
        return True
    return with_rules_root(job).rules_root is not None


def with_repo_context(job: FillJob) -> FillJob:
    """The project's rules (trusted ones, as system sections; a line naming those not
    sent) and, for the CLI's --git, the file's uncommitted hunks near its rows, offered
    to the budget (kznllm_py/prompt/sources/rules.py, git.py). Reads files and runs
    git: off the event loop."""
    job = with_rules_root(job)
    offered = list(job.offered)
    notices = list(job.notices)
    on = job.context_options.on
    path = _absolute(job.ctx.path, job.cwd)
    if job.rules_root is not None:
        share = rules.share_bytes(job.context_options.budget, sections.SHARES)
        found_rules = rules.collect(job.rules_root, share)
        decided = rules.decide(found_rules, path, job.trust_db, how=job.trust_how)
        offered += decided.sections
        notices += [decided.notice] if decided.notice else []
        job = replace(job, gather_notes=(*job.gather_notes, *decided.left))
    if on("git") and path and job.rows is not None:
        found = git.changes(path, job.rows)
        sec = git.section(found, job.ctx.path)
        offered += [sec] if sec is not None else []
        notices += [found.note] if found.note else []
    return replace(job, offered=tuple(offered), notices=tuple(notices))


def _absolute(path: str, cwd: str) -> str:
    """`path` made absolute against `cwd` (the CLI's --file may be relative)."""
    if not path or os.path.isabs(path) or not cwd:
        return path
    return os.path.join(cwd, path)


def project_review(job: FillJob) -> tuple[list[str], list[str], str | None]:
    """What `:KznTrust` asks about: the project's template files and rules files not
    trusted yet (real paths), lines for the refused and denied ones, and where they
    were looked for (None: no project). Reads files: off the event loop."""
    files: list[str] = []
    lines: list[str] = []
    where: list[str] = []
    if job.kzn_dir is not None:
        found = project_templates.review(job.kzn_dir, job.trust_db)
        files += found.files
        lines += found.lines
        where.append(str(job.kzn_dir / "templates"))
    root = rules.project_root(_absolute(job.ctx.path, job.cwd), job.cwd, job.kzn_dir)
    if root is not None:
        # every rules file, whatever the budget leaves of the share at a fill
        more, said = rules.review(rules.collect(root, rules.ALL_BYTES), job.trust_db)
        files += more
        lines += said
        where.append(str(root))
    return files, lines, " and ".join(where) if where else None


def reads_files(job: FillJob) -> bool:
    """Whether `with_files` has anything to read (else no hop to a thread and back)."""
    return job.kzn_dir is not None or bool(job.definitions.found) or reads_repo(job)


def with_files(job: FillJob) -> FillJob:
    """What a fill reads before its prompt: the `.kzn` folder's files and templates, the
    project's rules and git, the language servers' definitions (file I/O, git, template
    renders: run it off the event loop). The lines to say are in `job.notices`."""
    job = with_rules_root(job)
    if job.kzn_dir is not None:
        job = with_project_files(job)
    if reads_repo(job):
        job = with_repo_context(job)
    return with_definitions(job)


def fitted(job: FillJob) -> FillJob:
    """The job with its context sections fitted into the budget: the selection and the
    query first (never cut), then the sections in their order, then the buffer's lines
    around the selection in what is left (kznllm_py/prompt/sections.py). Pure, cheap."""
    ctx = job.ctx
    budget = job.context_options.budget
    reserved = estimate_tokens(ctx.selection) + estimate_tokens(ctx.query)
    offered, keep, kept = _scope_in_around(job, budget - reserved)
    fit = sections.fit(offered, budget=budget, reserved=reserved + kept)
    before, after = sections.fit_around(ctx.before, ctx.after, fit.remaining + kept, keep)
    narrowed = _outline_beside(job, before, after)
    if narrowed is not None:  # what the lines around show, said once
        return fitted(narrowed)  # the lines around only grow: fewer entries each time
    if job.definition_entries:  # a definition in the lines around as sent: sent once
        asked = job.definitions
        held = (asked.first - before.count("\n"), asked.last + after.count("\n"))
        unheld = definitions.unheld(job.definition_entries, *held)
        if unheld != job.definition_entries:
            return fitted(_with_entries(job, unheld))  # the lines around only grow
    return replace(
        job,
        ctx=replace(ctx, sections=fit.placed, left=fit.left, before=before, after=after),
    )


def _outline_beside(job: FillJob, before: str, after: str) -> FillJob | None:
    """The job with the outline's entries that the lines around the selection show (as
    fitted: `before` and `after` it) left out, and its section gone when none is left;
    None when there is nothing to leave out."""
    o = job.outline
    if o is None:
        return None
    ctx = job.ctx
    # the file's lines the request holds (1-based): the selection's (or the cursor's
    # line), and the lines of the code around it (fit_around cuts them at line ends)
    first = o.cursor - before.count("\n")
    last = o.cursor + ctx.selection.count("\n") + after.count("\n")
    if not any(first <= e.line <= last for e in o.entries):
        return None
    shown = outline_source.beside(o, first, last)
    offered = [s for s in job.offered if s.kind != "outline"]
    if shown is not None:
        at = next((i for i, s in enumerate(job.offered) if s.kind == "outline"), len(offered))
        offered.insert(at, outline_source.section(shown, ctx.path))
    return replace(job, outline=shown, offered=tuple(offered))


def _scope_in_around(
    job: FillJob, room: int
) -> tuple[tuple[sections.Section, ...], tuple[int, int], int]:
    """The sections to offer, the lines around to keep first and their tokens: when the
    lines around the selection hold the enclosing scope whole, and its lines fit its
    share, the scope is sent there (kept first) and its section is only its title."""
    s = job.scope
    if s is None:
        return job.offered, (0, 0), 0
    keep = scope_source.in_around(s, job.ctx.before, job.ctx.after)
    if keep is None:
        return job.offered, (0, 0), 0
    b_lines, a_lines = job.ctx.before.split("\n"), job.ctx.after.split("\n")
    kept = estimate_tokens("\n".join(b_lines[len(b_lines) - keep[0] :]) + "\n")
    kept += estimate_tokens("\n" + "\n".join(a_lines[: keep[1]]))
    share = int(job.context_options.budget * sections.SHARES["scope"])
    if kept > min(share, room):
        return job.offered, (0, 0), 0  # too big to keep whole there: the section, cut
    title = scope_source.noted(s)
    offered = tuple(title if o.kind == "scope" else o for o in job.offered)
    return offered, keep, kept


def debug_text(job: FillJob, request: HttpRequest) -> str:
    """The debug view of `request` as built for `job`: what `:KznDebug` and
    `kznllm render` show."""
    return prompts.render_debug(
        request,
        preset_id=job.preset.id,
        provider=job.preset.provider,
        skipped=[{"path": s.path, "reason": s.reason} for s in job.skipped],
        context_files=job.ctx.context_files,
        context_window=job.preset.context_window,
        project_dir=str(job.kzn_dir) if job.kzn_dir is not None else "",
        sections=job.ctx.sections,
        left=job.ctx.left,
        notes=job.gather_notes,
    )


def with_project_files(job: FillJob) -> FillJob:
    """Read the .kzn folder's files into the context, within the preset's budget: what
    the files cost in the rendered prompt, each file's wrapper (its path, tags,
    separators) included, fits the budget; files that do not are skipped with the
    reason. File I/O and rendering: run it off the event loop."""
    kzn_dir = job.kzn_dir
    if kzn_dir is None:
        return job
    job = with_project_templates(job)
    budget = context.budget_for(job.preset.context_window)
    found = context.collect(kzn_dir, budget_tokens=budget)
    files = tuple(prompts.ContextFile(f.path, f.content, f.tokens) for f in found.included)
    kept, dropped = fit_files(job, files, budget)
    return replace(
        job,
        ctx=replace(job.ctx, context_files=kept),
        skipped=(*dropped, *found.skipped),
    )


def with_project_templates(job: FillJob) -> FillJob:
    """The project's templates first on the search path when every one of the preset's
    family (and `_shared/`) is a confined regular file the user trusted
    (kznllm_py/prompt/project_templates.py); else the job says why, in one line. Reads files:
    off the event loop."""
    if job.kzn_dir is None:
        return job
    family = template_set(job.preset).family
    decision = project_templates.decide(job.kzn_dir, family, job.trust_db, how=job.trust_how)
    if decision.root is None:
        notices = (*job.notices, decision.notice) if decision.notice else job.notices
        return replace(job, notices=notices)
    first = prompts.project_dir(decision.root, job.trust_db)
    return replace(job, search_dirs=(first, *job.search_dirs))


def fit_files(
    job: FillJob, files: tuple[prompts.ContextFile, ...], budget: int
) -> tuple[tuple[prompts.ContextFile, ...], tuple[context.Skipped, ...]]:
    """The longest run of `files` whose cost in the rendered prompt (the tokens with
    them less the tokens without any) fits `budget`, and the rest as skipped. The
    renders share one template budget (2 s): a slow template fails the request; few
    are made (fill/fitting.py)."""
    if not files:
        return files, ()
    outer = sandbox.current()
    limits = sandbox.Budget(stop=outer.stop) if outer is not None else sandbox.Budget()

    def tokens(n: int) -> int:
        ctx = replace(job.ctx, context_files=files[:n])
        return prepare.prompt_tokens(prepare.render_prompt(job.preset, ctx, job.search_dirs))

    with sandbox.budget_scope(limits):
        base = tokens(0)
        low, cost = fitting.largest_fitting(
            lambda n: tokens(n) - base if n else 0, len(files), budget
        )
    if low == len(files):
        return files, ()
    left = budget - cost
    reason = (
        f"over the context budget with the prompt's wrapper around each file ({left} "
        f"token{'' if left == 1 else 's'} left)"
    )
    return files[:low], tuple(context.Skipped(f.path, reason) for f in files[low:])
