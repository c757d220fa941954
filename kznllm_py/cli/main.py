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
import os
import sys

from kznllm_py.cli import ask, listings, serve
from kznllm_py.cli import history as cli_history
from kznllm_py.cli.parser import parser, with_command
from kznllm_py.cli.terminal import err


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(with_command(sys.argv[1:] if argv is None else argv))
    try:
        code = _command(args)
        sys.stdout.flush()  # a reader gone away is found here, not in Python's exit
        return code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        # `kznllm models | head -1`: quiet, as other tools cut short by a pipe are
        # (fill has its own, to record what reached the reader)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def _command(args: argparse.Namespace) -> int:
    if args.command == "fill":
        return asyncio.run(ask.fill(args))
    if args.command == "render":
        return asyncio.run(ask.render(args))
    if args.command == "presets":
        return listings.presets(args)
    if args.command == "models":
        return asyncio.run(listings.models(args))
    if args.command == "demo-server":
        return asyncio.run(serve.demo_model(args))
    if args.command == "history":
        return cli_history.show(args, err)
    if args.command == "demo":
        from kznllm_py.nvim import demo

        return demo.main(check=args.check)
    return 2


if __name__ == "__main__":
    sys.exit(main())
