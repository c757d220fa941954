"""What `kznllm fill`, `render` and `models` are asked, read from their arguments: the
preset (`--preset`, or one made of `--provider`, `--model`, ...), the FillJob (the
selection from a file or stdin, `--file` around it with its scope and outline, the
project's `.kzn` folder, rules and git) and the prompt given instead of the templates'
own (`-c`'s conversation, `-s`'s system text). What the user should know on the way is
said on stderr; what makes the request impossible is a KznError."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from kznllm_py import history
from kznllm_py.cli import file_context, landing
from kznllm_py.cli.terminal import err
from kznllm_py.errors import KznError
from kznllm_py.fill import job as payload
from kznllm_py.fill import shaping
from kznllm_py.history.conversation import follow_up
from kznllm_py.prompt import context, sandbox
from kznllm_py.prompt.presets import Preset, merge_presets, pick, preset_from_dict
from kznllm_py.prompt.prompts import FillContext, search_path
from kznllm_py.prompt.sections import ContextOptions
from kznllm_py.prompt.sources import headless
from kznllm_py.prompt.trust import trust_file
from kznllm_py.providers import get_provider
from kznllm_py.providers.base import Prompt
from kznllm_py.stdpath import nvim_stdpath
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.prepare import render_prompt


def merged(user: list[Any] | None) -> dict[str, Preset]:
    """The presets (built-ins, the presets file's, `user`); each invalid one is said on
    stderr and left out, the rest work."""
    found = merge_presets(user)
    for problem in found.problems:
        err(f"warning: {problem} (left out)")
    return found.presets


def preset_from_args(args: argparse.Namespace, *, need_model: bool = True) -> Preset:
    presets = merged(None)
    custom: dict[str, object] = {
        k: v
        for k, v in (
            ("provider", args.provider),
            ("base_url", args.base_url),
            ("model", getattr(args, "model", None)),
            ("api_key", args.api_key),
        )
        if v
    }
    options = _options(getattr(args, "option", None) or [])
    # -o reasoning high: the reasoning switch (a table stays a raw param)
    level = options.pop("reasoning") if isinstance(options.get("reasoning"), str) else None
    if args.preset or set(custom) <= {"model"}:  # a preset (or the default), changed
        base = pick(presets, args.preset)
        if options:
            custom["params"] = options
        if level is not None:
            custom["reasoning"] = level
        return preset_from_dict({"id": base.id, **custom}, base=base) if custom else base
    if options:
        custom["params"] = options
    if level is not None:
        custom["reasoning"] = level
    if "provider" not in custom or ("model" not in custom and need_model):
        raise KznError(
            "without --preset, give at least --provider and --model"
            if need_model
            else "without --preset, give at least --provider and --base-url"
        )
    custom.setdefault("model", "-")  # listing models needs none
    custom.setdefault("api_key", False)
    if custom["provider"] == "completions":
        # a raw prompt without chat tokens, for any completion model (a preset's family
        # gives a model's own format: --preset, or templates in setup())
        custom.setdefault("templates", "openai")
    return preset_from_dict({"id": "cli", **custom})


def _options(pairs: list[list[str]]) -> dict[str, object]:
    """-o NAME VALUE pairs as request parameters: VALUE as JSON when it parses."""
    params: dict[str, object] = {}
    for name, value in pairs:
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    return params


_FILETYPES = {
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "rs": "rust",
    "rb": "ruby",
    "md": "markdown",
    "hs": "haskell",
    "kt": "kotlin",
    "cpp": "cpp",
    "cc": "cpp",
    "h": "c",
    "yml": "yaml",
}


def _selection(args: argparse.Namespace) -> str | None:
    """The code to rewrite: --selection-file (or '-', stdin), else piped stdin, else the
    --range of --file; None in yap mode."""
    if args.selection_file == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if args.selection_file is not None:
        return Path(args.selection_file).read_text(encoding="utf-8")
    piped = _stdin_selection()
    if piped is not None:
        return piped
    return None


def _stdin_selection() -> str | None:
    """Piped or redirected stdin is the selection (`sed -n 4,9p f.py | kznllm fill ...`);
    a terminal, /dev/null or a closed stdin is not."""
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISREG(mode)):
        return None
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    return text or None


def _split_file(
    lines: list[str], rng: tuple[int, int] | None, args: argparse.Namespace
) -> tuple[str, str, str | None]:
    """The file's text before and after the selection (`rng`: --range without its blank
    edge lines) or the insertion point (--line), and the range's own text; without
    either, all of it is before."""
    if rng is None and args.line is None:
        return "".join(lines), "", None
    first, last = rng or (args.line[0] + 1, args.line[0])
    before = "".join(lines[: first - 1])
    chosen = "".join(lines[first - 1 : last])
    return before, "".join(lines[last:]), chosen if rng else None


def _lines_of(data: bytes, args: argparse.Namespace) -> list[str]:
    """--file's lines (with their line breaks), split where Neovim splits them: at LF
    only (str.splitlines also splits at a form feed, VT, FS, NEL, U+2028 or a lone CR,
    and --range then named other lines than the editor's); KznError when --range/--line
    is past its end. A DOS file's lines without their CR, as Neovim's buffer holds them
    (and sends them: its answer gets CR LF line breaks, cli/landing.py)."""
    text = data.decode("utf-8", errors="replace")
    if landing.dos(data):
        text = text.replace("\r\n", "\n")
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # what follows the last line break (nothing, usually)
    if not lines[-1]:
        lines.pop()
    last = args.range[1] if args.range else args.line[0] if args.line else 0
    if last > len(lines):
        raise KznError(f"--range/--line past the end of {args.file} ({len(lines)} lines)")
    return lines


def job_from_args(args: argparse.Namespace) -> payload.FillJob:
    return job_and_landing(args)[0]


def job_and_landing(args: argparse.Namespace) -> tuple[payload.FillJob, landing.Landing]:
    """The job, and how its answer is printed: as the editor would land it in --file
    (cli/landing.py; as it comes with --no-shape)."""
    if (args.range or args.line) and args.file is None:
        raise KznError("--range and --line need --file (where the lines are)")
    if getattr(args, "git", False) and args.file is None:
        raise KznError("--git needs --file (the file whose uncommitted changes to send)")
    for flag in ("outline", "scope"):
        if getattr(args, flag, None) and args.file is None:
            raise KznError(f"--{flag} needs --file (the file Neovim's tree-sitter reads)")
    preset = preset_from_args(args)
    selection = _selection(args)
    before, after, path, filetype = "", "", "", args.filetype
    data = b""
    lines: list[str] = []
    rng = args.range  # --range without its blank edge lines, which stay (the editor's)
    top = bottom = ""
    if selection is not None and selection.endswith("\n"):  # whole lines, piped: the same
        top, selection, bottom = landing.edges(selection)
    if args.file is not None:
        data = file_context.read_file(args.file)  # its bytes, read once
        lines = _lines_of(data, args)
        if args.range and selection is None:
            rng = landing.inner(lines, *args.range)
            top = "".join(lines[args.range[0] - 1 : rng[0] - 1])
            bottom = "".join(lines[rng[1] : args.range[1]])
        before, after, chosen = _split_file(lines, rng, args)
        if selection is None:
            selection = chosen
        path = str(args.file)
        ext = args.file.suffix.lstrip(".")
        filetype = filetype or _FILETYPES.get(ext, ext)
    ctx = FillContext(
        mode="replace" if selection is not None else "yap",
        query=args.query,
        selection=selection or "",
        filetype=filetype,
        path=path,
        before=before,
        after=after,
    )
    land = landing.Landing()
    if not getattr(args, "no_shape", False):  # --no-shape: the model's text as it came
        buffer = landing.options_for(
            filetype,
            lines,
            commentstring=getattr(args, "commentstring", None),
            shiftwidth=getattr(args, "shiftwidth", None),
        )
        on = preset.shape is not False  # a preset's shape = false: edges only, as the editor
        crlf = landing.dos(data or (top + (selection or "")).encode())
        if selection is not None:
            land = landing.for_range(
                selection, filetype, buffer, top=top, bottom=bottom, enabled=on, crlf=crlf
            )
        elif args.line:
            shaped = landing.for_line(lines, args.line[0], filetype, buffer, crlf=crlf)
            land = shaped if on else landing.Landing(crlf=crlf)
    # an answer shaped as code is asked in the file's syntax (the editor's shaping.asked)
    ctx = shaping.asked(ctx, land.shape)
    found = context.Discovery(None)
    if not args.no_project:
        found = context.discover_kzn(Path.cwd(), allow=args.allow_kzn)
    for line in found.ignored:
        err(f"{line}")
    kzn_dir = found.kzn_dir
    options = _context_options(args)
    tree = _tree_context(args, data, path, options.budget, rng)
    connect = getattr(args, "connect_timeout", Timeouts.connect)
    stall = getattr(args, "stall_timeout", Timeouts.stall)
    total = getattr(args, "total_timeout", Timeouts.total) or None
    first_token = getattr(args, "first_token_timeout", Timeouts.first_token) or None
    job = payload.FillJob(
        preset=preset,
        ctx=ctx,
        timeouts=Timeouts(connect=connect, stall=stall, total=total, first_token=first_token),
        # the project's templates join in with_project_files, once judged trusted
        search_dirs=search_path(user_config=nvim_stdpath("config")),
        debug=False,
        kzn_dir=kzn_dir,
        trust_db=trust_file(nvim_stdpath("state")),
        trust_how="trust them in Neovim: :KznTrust",
        context_options=options,
        cwd=os.getcwd(),
        # --outline, --scope: Neovim's tree-sitter, run headless (cli/file_context.py)
        offered=tree.sections,
        scope=tree.scope,
        outline=tree.outline,
        gather_notes=(tree.problem,) if tree.problem and not tree.loud else (),
        # --git: the hunks near --range/--line, else the file's first ones
        rows=rng or ((args.line[0], args.line[0]) if args.line else (1, 1 << 30)),
    )
    job = payload.fitted(payload.with_files(job))  # .kzn, --rules (trusted ones), --git
    for line in job.notices:
        err(line)
    return job, land


def _tree_context(
    args: argparse.Namespace, data: bytes, path: str, budget: int, rng: tuple[int, int] | None
) -> file_context.TreeContext:
    """--file's scope and outline from a headless Neovim (--outline, --scope); what is
    missing said on stderr when asked for by name, else only in render's notes."""
    if args.file is None:
        return file_context.TreeContext()
    what = file_context.asked(
        getattr(args, "outline", None),
        getattr(args, "scope", None),
        positioned=bool(args.range or args.line),
    )
    if getattr(args, "scope", None) and "scope" not in what.want:
        err("--scope: no --range or --line to find the enclosing scope of")
    tree = file_context.tree_context(
        data,
        path,
        what=what,
        where=rng or args.line,
        after_line=args.line is not None,
        filetype=args.filetype,
        budget=budget,
        deadline=getattr(args, "nvim_timeout", headless.DEFAULT_DEADLINE),
    )
    if tree.loud:
        err(f"--{'/--'.join(sorted(what.named))}: {tree.problem}")
    return tree


def _context_options(args: argparse.Namespace) -> ContextOptions:
    """The context switches the CLI's flags set: the project's rules (on unless
    --no-rules) and git (--git); the others as their defaults."""
    off = set(ContextOptions().off) | {"rules", "git"}
    off -= {name for name in ("rules", "git") if getattr(args, name, name == "rules")}
    return ContextOptions(off=frozenset(off))


def continued(args: argparse.Namespace) -> argparse.Namespace:
    """With -c: the newest history entry becomes `args.parent_id`, and its preset the one
    used when none is named (as simonw/llm continues with the conversation's model)."""
    args.parent_id = None
    if not getattr(args, "continue_", False):
        return args
    db = history.default_path(history.nvim_data_dir())
    store = history.HistoryStore(db) if db.exists() else None
    try:
        newest = store.list(limit=1) if store is not None else []
    finally:
        if store is not None:
            store.close()
    if not newest:
        raise KznError(f"-c: no conversation to continue (the history at {db} is empty)")
    args.parent_id = newest[0].id
    if not (args.preset or args.provider) and newest[0].preset_id in merge_presets(None).presets:
        args.preset = newest[0].preset_id
    return args


async def prompt_from_args(args: argparse.Namespace, job: payload.FillJob) -> Prompt | None:
    """The prompt to send instead of the templates' own: -c's conversation with this
    query as its next turn, and -s's system text; None: the templates, as they are."""
    system = getattr(args, "system", None)
    parent = getattr(args, "parent_id", None)
    if system is None and parent is None:
        return None
    if parent is not None:
        db = history.default_path(history.nvim_data_dir())
        store = history.HistoryStore(db)
        try:
            entry = store.get(parent)
        finally:
            store.close()
        if entry is None:
            raise KznError(f"-c: history entry {parent} is gone")
        asked = follow_up(entry, job.ctx.query)
    else:
        if get_provider(job.preset.provider).raw_prompt:
            raise KznError(f"-s: preset {job.preset.id} sends one raw prompt, with no system")
        asked = await sandbox.run_off_loop(render_prompt, job.preset, job.ctx, job.search_dirs)
    return asked if system is None else replace(asked, system=system)
