"""`kznllm`'s arguments: the parser of every command, and the checks of the values
its options take (seconds, counts, line ranges, byte caps), each a usage error (exit 2)
when wrong. `kznllm PROMPT` reads as `kznllm fill PROMPT` (`with_command`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kznllm_py.errors import KznError
from kznllm_py.prompt.sources import headless
from kznllm_py.providers import PROVIDERS
from kznllm_py.stream import demo_server
from kznllm_py.stream.answer import DEFAULT_MAX_RESPONSE_BYTES, check_max_response_bytes
from kznllm_py.stream.client import Timeouts
from kznllm_py.stream.generation import RetryPolicy


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


def parser() -> argparse.ArgumentParser:
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
            "--no-shape",
            action="store_true",
            help="print the model's text as it came; by default, with --file and --range or "
            "--line (or a piped selection), the answer is printed as the editor lands it: "
            "re-indented to the selection when it came dedented, between the range's blank "
            "edge lines (left in place, not sent), at --line: fences out, prose as comments",
        )
        cmd.add_argument(
            "--shiftwidth",
            type=_count,
            metavar="N",
            help="the file's indentation step (default: its own, else Neovim's for the filetype)",
        )
        cmd.add_argument(
            "--commentstring",
            metavar="TEXT",
            help="the file's comment syntax, as Vim's 'commentstring' ('# %%s'; default: "
            "Neovim's for the filetype)",
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


def _line_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition(":")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        a = b = 0
    if a < 1 or b < a:
        raise argparse.ArgumentTypeError(f"want N or A:B, lines from 1 with A <= B, not {text!r}")
    return a, b


def _byte_count(text: str) -> int:
    try:
        return check_max_response_bytes(int(text))
    except (ValueError, KznError):
        why = f"want a whole number of bytes, 1 or more, not {text!r}"
        raise argparse.ArgumentTypeError(why) from None


COMMANDS = ("fill", "render", "models", "presets", "demo-server", "demo", "history")


def with_command(argv: list[str]) -> list[str]:
    """`kznllm PROMPT` (and `kznllm -m M PROMPT`) is `kznllm fill ...`, as `llm PROMPT`
    is `llm prompt ...`; a subcommand's name wins (`kznllm fill models` asks "models")."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        return ["fill", *argv]
    return argv
