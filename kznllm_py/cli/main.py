"""`kznllm`: the same core as the plugin, from the command line.

kznllm [-m MODEL] [-s SYSTEM] [-c] PROMPT
    is `kznllm fill PROMPT`, as `llm PROMPT` (a subcommand's name wins). -m: the model,
    -s: the system prompt, -c: continue the last conversation (the newest history entry).
kznllm fill [--preset ID | --provider P --base-url URL --model M --api-key NAME|cmd:...]
            [--selection-file F|-] [--file F [--range A:B | --line N]] [--filetype FT] QUERY
    streams the answer's text to stdout, byte-exact, nothing else; errors go to
    stderr with a non-zero exit (1 failure, 2 usage, 130 interrupted). Piped stdin is
    the selection (replace mode); --range says where it sits in --file.
    -o/--option NAME VALUE sets a request parameter (temperature, max_tokens, ...);
    -o reasoning off|low|medium|high is the reasoning switch, in the provider's spelling.
    The run is recorded in the editor's history (see below); --no-history: not.
    The project's rules files (AGENTS.md, CLAUDE.md, ...) go into the system prompt once
    trusted in Neovim (:KznTrust), as in the editor; --no-rules: not. --git: --file's
    uncommitted hunks near --range/--line (else its first ones; git diff HEAD).
    --outline, --scope (on by default with --file): the file's outline and the scope
    enclosing --range/--line, from a headless Neovim's tree-sitter ($KZNLLM_NVIM, else
    nvim on PATH; killed after --nvim-timeout); --no-outline/--no-scope: not.
kznllm render [same options as fill] QUERY
    prints the exact request fill would send (keys redacted), sends nothing.
kznllm models [--preset ID | --provider P --base-url URL --api-key NAME] [--json]
    lists the models the server offers (OpenAI-compatible /models, Ollama's /api/tags,
    Anthropic's, Gemini's and Mistral's model lists).
kznllm presets [--check FILE|-] [--json]
    lists the presets (* = the default), or validates a JSON list of user presets.
    Every command also reads <nvim config dir>/kznllm/presets.toml, as the editor does.
kznllm demo-server [--port N] [--rate TOKENS_PER_S]
    the offline demo model (OpenAI-compatible) on 127.0.0.1, in the foreground.
kznllm demo [--check]
    opens Neovim with the plugin on a sample file, against the offline demo model.
kznllm history [-n N] [--json] [--preset ID] [--status S] [--db PATH]
kznllm history --cost [--since YYYY-MM-DD] [--db PATH]
    prints what the recorded fills cost in US dollars ("$1.23"; fills without a
    known price are counted apart, on stderr).
kznllm history show ID [--json] [--db PATH]
    lists the recorded interactions (the editor's and `kznllm fill`'s), newest first,
    or prints one whole entry.
    Stored text is printed with control characters escaped; --raw: as it is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kznllm_py import history, secrets
from kznllm_py.cli import file_context, terminal
from kznllm_py.cli import history as cli_history
from kznllm_py.errors import KznError, printable
from kznllm_py.fill import job as payload
from kznllm_py.history.conversation import follow_up
from kznllm_py.history.recorder import before_delivery, record
from kznllm_py.messages import end_message
from kznllm_py.prompt import context, sandbox
from kznllm_py.prompt.presets import Preset, check_presets, merge_presets, pick, preset_from_dict
from kznllm_py.prompt.prompts import FillContext, search_path
from kznllm_py.prompt.sections import ContextOptions
from kznllm_py.prompt.sources import headless
from kznllm_py.prompt.trust import trust_file
from kznllm_py.providers import PROVIDERS, get_provider
from kznllm_py.providers.base import Prompt
from kznllm_py.stdpath import nvim_stdpath
from kznllm_py.stream import demo_server
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.events import Retry, Text
from kznllm_py.stream.generation import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Generation,
    RetryPolicy,
    check_max_response_bytes,
    prepare_with_prompt,
    render_prompt,
)


def _seconds(text: str, *, zero: bool = True) -> float:
    """A timeout in seconds, as setup() takes it: finite, not negative (0: no limit, where
    `zero`), else positive."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a number of seconds, got {text!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        least = "0 (no limit)" if zero else "more than 0"
        raise argparse.ArgumentTypeError(f"want {least} seconds or more, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, zero=False)


def _count(text: str) -> int:
    """A count of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"want 1 or more, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kznllm", description="Stream LLM answers (kznllm-py).")
    sub = ap.add_subparsers(dest="command", required=True)

    fill = sub.add_parser("fill", help="stream an answer to stdout")
    render = sub.add_parser("render", help="print the exact request fill would send; send nothing")
    for cmd in (fill, render):
        cmd.add_argument("query", help="what to ask")
        cmd.add_argument("--preset", help="a preset id (default: first with a key, else demo)")
        cmd.add_argument("--provider", choices=sorted(PROVIDERS))
        cmd.add_argument("--base-url")
        cmd.add_argument("-m", "--model", help="the model (of the preset, or the default one)")
        cmd.add_argument(
            "-s", "--system", help="the system prompt, instead of the templates' system text"
        )
        cmd.add_argument(
            "-c",
            "--continue",
            dest="continue_",
            action="store_true",
            help="continue the last conversation (the newest history entry, its preset too)",
        )
        cmd.add_argument("--api-key", help="env var NAME, or cmd:<shell command>")
        cmd.add_argument(
            "-o",
            "--option",
            nargs=2,
            action="append",
            default=[],
            metavar=("NAME", "VALUE"),
            help="a request parameter (temperature, max_tokens, ...); VALUE is read as JSON "
            'when it parses (0.2, 512, true, ["x"]), else as text; repeatable',
        )
        cmd.add_argument(
            "--selection-file",
            help="replace mode: the code to rewrite ('-': stdin; piped stdin is read too)",
        )
        cmd.add_argument("--filetype", default="", help="the selection's filetype, for the prompt")
        cmd.add_argument(
            "--file", type=Path, help="the file being edited: its text is the buffer context"
        )
        where = cmd.add_mutually_exclusive_group()
        where.add_argument(
            "--range",
            type=_line_range,
            metavar="A:B",
            help="with --file: the selection is lines A to B of it (1-based, inclusive)",
        )
        where.add_argument(
            "--line",
            type=_line_range,
            metavar="N",
            help="with --file: the answer goes after line N (no selection)",
        )
        cmd.add_argument(
            "--no-project", action="store_true", help="ignore the .kzn folder of the cwd"
        )
        cmd.add_argument(
            "--allow-kzn",
            action="append",
            default=[],
            metavar="DIR",
            help="trust this .kzn folder (or project) whoever owns it; '*': every one",
        )
        cmd.add_argument(
            "--rules",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="the project's rules (AGENTS.md, CLAUDE.md, .cursor/rules/*.mdc, ...) in the "
            "system prompt, each once trusted in Neovim (:KznTrust); on by default",
        )
        cmd.add_argument(
            "--git",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="--file's uncommitted changes (git diff HEAD) near --range/--line; off by default",
        )
        cmd.add_argument(
            "--outline",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="--file's outline (its definitions' lines, nearest --range/--line first) from "
            "Neovim's tree-sitter, run headless ($KZNLLM_NVIM, else nvim on PATH; 0.1-0.2 s, "
            "~0.3 s for a 14,000-line file); on by default with --file (no Neovim or no "
            "parser: said on stderr when asked for by name, else in render's notes)",
        )
        cmd.add_argument(
            "--scope",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the function, method or class of --file enclosing --range/--line, whole "
            "(the same headless Neovim); on by default with --range/--line",
        )
        cmd.add_argument(
            "--nvim-timeout",
            type=_positive_seconds,
            default=headless.DEFAULT_DEADLINE,
            metavar="SECONDS",
            help="the deadline of that Neovim, killed past it (default: %(default)s)",
        )
    render.add_argument(
        "--json", action="store_true", help="the exact request (URL, headers, body) as JSON"
    )
    render.add_argument("--raw", action="store_true", help="texts as they are (no escaping)")
    fill.add_argument(
        "--retries",
        type=_count,
        default=RetryPolicy.tries,
        help="tries when turned away (429, 503)",
    )
    fill.add_argument("--connect-timeout", type=_positive_seconds, default=Timeouts.connect)
    fill.add_argument("--stall-timeout", type=_positive_seconds, default=Timeouts.stall)
    fill.add_argument(
        "--total-timeout",
        type=_seconds,
        default=Timeouts.total,
        help="seconds for the whole answer (default: 600; 0: no limit)",
    )
    fill.add_argument(
        "--first-token-timeout",
        type=_seconds,
        default=Timeouts.first_token,
        help="seconds from the request to its first token (default: 120; 0: no limit)",
    )
    fill.add_argument(
        "--no-history",
        action="store_true",
        help="do not record this run in the history (Neovim's data dir, as the editor does)",
    )
    fill.add_argument(
        "--max-response-bytes",
        type=_byte_count,
        default=DEFAULT_MAX_RESPONSE_BYTES,
        help="stop the answer past this many bytes of text (default: 1 MB)",
    )

    models = sub.add_parser("models", help="list the models a preset's server offers")
    models.add_argument("--preset", help="a preset id (default: first with a key, else demo)")
    models.add_argument("--provider", choices=sorted(PROVIDERS))
    models.add_argument("--base-url")
    models.add_argument("--api-key", help="env var NAME, or cmd:<shell command>")
    models.add_argument("--json", action="store_true", help="a JSON list")
    models.add_argument("--connect-timeout", type=_positive_seconds, default=Timeouts.connect)
    models.add_argument("--stall-timeout", type=_positive_seconds, default=Timeouts.stall)

    presets = sub.add_parser("presets", help="list the presets, or check user presets")
    presets.add_argument(
        "--check", metavar="FILE", help="validate a JSON list of user presets ('-': stdin)"
    )
    presets.add_argument(
        "--user", metavar="FILE", help="list with these user presets (JSON list; '-': stdin)"
    )
    presets.add_argument("--json", action="store_true", help="machine-readable output")

    srv = sub.add_parser("demo-server", help="run the offline demo model on loopback")
    srv.add_argument("--port", type=int, default=8787)
    srv.add_argument("--rate", type=float, default=demo_server.DEFAULT_RATE)

    demo = sub.add_parser("demo", help="open Neovim with the plugin against the demo model")
    demo.add_argument("--check", action="store_true", help="headless: run the demo, assert")

    hist = sub.add_parser("history", help="list the recorded interactions, or show one")
    hist.add_argument("-n", type=_count, default=50, help="how many (newest first)")
    hist.add_argument("--json", action="store_true", help="machine-readable output")
    hist.add_argument("--raw", action="store_true", help="stored text as it is (no escaping)")
    hist.add_argument("--preset", help="only this preset's entries")
    hist.add_argument("--status", choices=["ok", "error", "cancelled", "rejected", "running"])
    hist.add_argument("--db", type=Path, help="the database (default: Neovim's data dir)")
    hist.add_argument(
        "--cost", action="store_true", help="print what the recorded fills cost, as $D.CC"
    )
    hist.add_argument("--since", metavar="DAY", help="with --cost: from DAY (YYYY-MM-DD) on")
    hist_sub = hist.add_subparsers(dest="history_command")
    show = hist_sub.add_parser("show", help="print one whole entry")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    show.add_argument("--db", type=Path, default=argparse.SUPPRESS)
    show.add_argument("--raw", action="store_true", default=argparse.SUPPRESS)
    return ap


def _err(text: str) -> None:
    """One line on stderr: redacted, and with control characters shown escaped (a
    server's or a project's text must not drive the terminal: OSC 52, titles, clears)."""
    print(f"kznllm: {printable(secrets.redact(text))}", file=sys.stderr)


def _line_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition(":")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        a = b = 0
    if a < 1 or b < a:
        raise argparse.ArgumentTypeError(f"want N or A:B, lines from 1 with A <= B, not {text!r}")
    return a, b


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


def _byte_count(text: str) -> int:
    try:
        return check_max_response_bytes(int(text))
    except (ValueError, KznError):
        why = f"want a whole number of bytes, 1 or more, not {text!r}"
        raise argparse.ArgumentTypeError(why) from None


def _merged(user: list[Any] | None) -> dict[str, Preset]:
    """The presets (built-ins, the presets file's, `user`); each invalid one is said on
    stderr and left out, the rest work."""
    merged = merge_presets(user)
    for problem in merged.problems:
        _err(f"warning: {problem} (left out)")
    return merged.presets


def _preset_from_args(args: argparse.Namespace, *, need_model: bool = True) -> Preset:
    presets = _merged(None)
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


def _split_file(text: str, args: argparse.Namespace) -> tuple[str, str, str | None]:
    """The file's text before and after the selection (--range) or the insertion point
    (--line), and the range's own text; without either, all of it is before."""
    if args.range is None and args.line is None:
        return text, "", None
    lines = text.splitlines(keepends=True)
    first, last = args.range or (args.line[0] + 1, args.line[0])
    if last > len(lines):
        raise KznError(f"--range/--line past the end of {args.file} ({len(lines)} lines)")
    before = "".join(lines[: first - 1])
    chosen = "".join(lines[first - 1 : last])
    return before, "".join(lines[last:]), chosen if args.range else None


def _job_from_args(args: argparse.Namespace) -> payload.FillJob:
    if (args.range or args.line) and args.file is None:
        raise KznError("--range and --line need --file (where the lines are)")
    if getattr(args, "git", False) and args.file is None:
        raise KznError("--git needs --file (the file whose uncommitted changes to send)")
    for flag in ("outline", "scope"):
        if getattr(args, flag, None) and args.file is None:
            raise KznError(f"--{flag} needs --file (the file Neovim's tree-sitter reads)")
    preset = _preset_from_args(args)
    selection = _selection(args)
    before, after, path, filetype = "", "", "", args.filetype
    data = b""
    if args.file is not None:
        data = file_context.read_file(args.file)  # its bytes, read once
        text = data.decode("utf-8", errors="replace")
        before, after, chosen = _split_file(text, args)
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
    found = context.Discovery(None)
    if not args.no_project:
        found = context.discover_kzn(Path.cwd(), allow=args.allow_kzn)
    for line in found.ignored:
        _err(f"{line}")
    kzn_dir = found.kzn_dir
    options = _context_options(args)
    tree = _tree_context(args, data, path, options.budget)
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
        rows=args.range or ((args.line[0], args.line[0]) if args.line else (1, 1 << 30)),
    )
    job = payload.fitted(payload.with_files(job))  # .kzn, --rules (trusted ones), --git
    for line in job.notices:
        _err(line)
    return job


def _tree_context(
    args: argparse.Namespace, data: bytes, path: str, budget: int
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
        _err("--scope: no --range or --line to find the enclosing scope of")
    tree = file_context.tree_context(
        data,
        path,
        what=what,
        where=args.range or args.line,
        after_line=args.line is not None,
        filetype=args.filetype,
        budget=budget,
        deadline=getattr(args, "nvim_timeout", headless.DEFAULT_DEADLINE),
    )
    if tree.loud:
        _err(f"--{'/--'.join(sorted(what.named))}: {tree.problem}")
    return tree


def _context_options(args: argparse.Namespace) -> ContextOptions:
    """The context switches the CLI's flags set: the project's rules (on unless
    --no-rules) and git (--git); the others as their defaults."""
    off = set(ContextOptions().off) | {"rules", "git"}
    off -= {name for name in ("rules", "git") if getattr(args, name, name == "rules")}
    return ContextOptions(off=frozenset(off))


async def _render(args: argparse.Namespace) -> int:
    try:
        job = _job_from_args(_continued(args))
        if job.preset.demo:
            # the demo server takes a free port when a fill starts: shown as such, not as
            # the port of a server started and stopped only for this
            job = replace(job, preset=replace(job.preset, demo=False, base_url=DEMO_URL_SHOWN))
        asked = await _prompt_from_args(args, job)
        _, request, _ = await prepare_with_prompt(
            job.preset, job.ctx, search_dirs=job.search_dirs, prompt=asked
        )
        if args.json:
            text = json.dumps(
                {
                    "method": request.method,
                    "url": secrets.redact_url(request.url),
                    "headers": request.redacted_headers(),
                    "body": request.body,
                },
                indent=2,
                ensure_ascii=False,
            )
            text += "\n"
        else:
            text = payload.debug_text(job, request)
    except (KznError, OSError) as exc:
        _err(str(exc))
        return 1
    finally:
        await demo_server.shutdown()
    if not args.raw:  # the buffer's, the project's text: escaped for the terminal
        text = terminal.json_text(text) if args.json else terminal.text(text)
    sys.stdout.write(text)
    return 0


def _server(base_url: str) -> dict[str, Any] | None:
    """Where a preset's server is: scheme, host and port (never a userinfo password)."""
    parts = urlsplit(base_url or "")
    if not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return {"scheme": parts.scheme, "host": parts.hostname, "port": port}


def _read_user_presets(source: str) -> list[Any]:
    """A JSON list of user presets from a file or stdin ('-'); KznError when unreadable."""
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text()
        user = json.loads(raw or "[]")
    except (OSError, ValueError) as exc:
        raise KznError(f"cannot read presets: {exc}") from exc
    if user is None:
        return []
    if isinstance(user, dict):  # an empty Lua table encodes as {}
        user = list(user.values())
    if not isinstance(user, list):
        raise KznError(f"cannot read presets: want a JSON list, not {type(user).__name__}")
    return user


def _presets(args: argparse.Namespace) -> int:
    try:
        user = _read_user_presets(args.check or args.user) if args.check or args.user else []
    except KznError as exc:
        _err(str(exc))
        return 2
    if args.check:
        problems = check_presets(user)  # the presets file's too
        if args.json:
            print(json.dumps({"problems": problems}))
        for problem in [] if args.json else problems:
            _err(f"{problem}")
        return 1 if problems else 0
    presets = _merged(user)
    default = pick(presets, None)
    rows = [
        {
            "id": p.id,
            "description": p.description,
            "provider": p.provider,
            "model": p.model,
            "server": _server(p.base_url),
            "key": secrets.describe(p.api_key),
            "key_present": secrets.present(p.api_key),
            "default": p.id == default.id,
        }
        for p in presets.values()
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    words: dict[object, str] = {True: "yes", False: "no", None: "not needed"}
    table: list[tuple[str, ...]] = [("", "id", "provider", "model", "key")]
    for r in rows:
        present = words[r["key_present"]]
        if r["key_present"] is not None:
            present += f" ({r['key']})"
        mark = "*" if r["default"] else " "
        table.append((mark, str(r["id"]), str(r["provider"]), str(r["model"]), present))
    for line in aligned(table):
        print(line)
    return 0


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as lines whose columns line up, each as wide as its widest cell (in display
    cells: a wide character counts twice), two spaces between; no trailing spaces."""
    import unicodedata

    def width(cell: str) -> int:
        wide = sum(unicodedata.east_asian_width(ch) in "WF" for ch in cell)
        return len(cell) + wide - sum(bool(unicodedata.combining(ch)) for ch in cell)

    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c + " " * (w - width(c)) for c, w in zip(r[:-1], widths, strict=False)]
        out.append(" ".join([*cells[:1], "  ".join([*cells[1:], r[-1]])]).rstrip())
    return out


async def _models(args: argparse.Namespace) -> int:
    from kznllm_py import models

    try:
        preset = _preset_from_args(args, need_model=False)
        timeouts = Timeouts(connect=args.connect_timeout, stall=args.stall_timeout)
        async with new_client() as client:
            names = await models.preset_models(client, preset, timeouts)
    except KznError as exc:
        _err(str(exc))
        return 1
    if args.json:  # the names are the server's: escaped for the terminal
        print(terminal.json_text(json.dumps(names, ensure_ascii=False)))
    else:
        for name in names:
            print(terminal.line(name))
    return 0


async def _fill(args: argparse.Namespace) -> int:
    try:
        job = _job_from_args(_continued(args))
        asked = await _prompt_from_args(args, job)
    except (KznError, OSError) as exc:
        _err(f"{exc}")
        return 2
    preset, ctx = job.preset, job.ctx
    out = sys.stdout.buffer
    reader_gone = False
    last = ""  # the answer's last character so far
    # at a terminal the answer's control characters are shown escaped (a pipe: bytes)
    screen = terminal.AnswerText() if _a_terminal(out) else None

    def write(text: str) -> bool:
        """`text` to stdout; False when the reader went away (`kznllm fill ... | head`)."""
        nonlocal reader_gone, last
        try:
            out.write(text.encode("utf-8"))
            out.flush()
        except BrokenPipeError:
            reader_gone = True
            return False
        last = text[-1:] or last
        return True

    async with new_client() as client:
        generation = Generation(
            client,
            preset,
            ctx,
            job.timeouts,
            search_dirs=job.search_dirs,
            retry=RetryPolicy(tries=max(1, args.retries)),
            max_response_bytes=args.max_response_bytes,
            prompt=asked,
        )
        parent = getattr(args, "parent_id", None)
        with cli_history.recording(job, _err, enabled=not args.no_history, parent_id=parent) as rec:
            async with generation.events() as events:
                async for event in events:
                    if rec is not None and (gate := before_delivery(rec, event)) is not None:
                        await events.hold(gate)  # the first text waits for the entry
                    match event:
                        case Text(text):
                            if reader_gone:
                                continue  # the held-back rest of a stopped answer
                            shown = screen.feed(text) if screen else text
                            if shown and not write(shown):
                                events.stop()  # the answer ends, cancelled
                                continue  # history keeps what reached stdout
                        case Retry(_, wait, why):
                            _err(f"{why}; trying again in {wait:g} s")
                    if rec is not None:
                        record(rec, event)
            outcome = events.outcome()
        if screen and not reader_gone and (held := screen.flush()):
            write(held)
        whole_lines = ctx.mode == "replace" and ctx.selection.endswith("\n")
        if (whole_lines or _a_terminal(out)) and not reader_gone and last not in ("", "\n"):
            # whole lines were replaced: they end with a line break, as in the buffer; at
            # a terminal, the shell's prompt starts on a line of its own
            write("\n")
    await demo_server.shutdown()
    if reader_gone:
        # quiet, like other tools cut short by a pipe; and no second BrokenPipeError
        # when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a tool killed by the pipe
    text, level = end_message(outcome.status, outcome.error, outcome.to_dict())
    if level != "info":  # the editor's words; a plain success says nothing here
        _err(text)
    return {"error": 1, "cancelled": 130}.get(outcome.status, 0)


def _a_terminal(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (OSError, ValueError):
        return False


DEMO_URL_SHOWN = "http://127.0.0.1:<port>/v1"  # `render` of the demo preset


def _continued(args: argparse.Namespace) -> argparse.Namespace:
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


async def _prompt_from_args(args: argparse.Namespace, job: payload.FillJob) -> Prompt | None:
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


async def _demo_server(args: argparse.Namespace) -> int:
    server = await demo_server.DemoServer(args.rate).start(port=args.port)
    print(f"kznllm offline demo model (not a real LLM) at {server.base_url}", flush=True)
    print("use: --provider openai --model kznllm-demo --base-url " + server.base_url, flush=True)
    await server.serve_forever()
    return 0


COMMANDS = ("fill", "render", "models", "presets", "demo-server", "demo", "history")


def _with_command(argv: list[str]) -> list[str]:
    """`kznllm PROMPT` (and `kznllm -m M PROMPT`) is `kznllm fill ...`, as `llm PROMPT`
    is `llm prompt ...`; a subcommand's name wins (`kznllm fill models` asks "models")."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        return ["fill", *argv]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_with_command(sys.argv[1:] if argv is None else argv))
    try:
        code = _command(args)
        sys.stdout.flush()  # a reader gone away is found here, not in Python's exit
        return code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        # `kznllm models | head -1`: quiet, as other tools cut short by a pipe are
        # (fill has its own, to record what reached the reader)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def _command(args: argparse.Namespace) -> int:
    if args.command == "fill":
        return asyncio.run(_fill(args))
    if args.command == "render":
        return asyncio.run(_render(args))
    if args.command == "presets":
        return _presets(args)
    if args.command == "models":
        return asyncio.run(_models(args))
    if args.command == "demo-server":
        return asyncio.run(_demo_server(args))
    if args.command == "history":
        return cli_history.show(args, _err)
    if args.command == "demo":
        from kznllm_py.nvim import demo

        return demo.main(check=args.check)
    return 2


if __name__ == "__main__":
    sys.exit(main())
