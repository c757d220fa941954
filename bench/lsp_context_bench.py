"""What the definitions source (issue 25 item 2) costs, with the real pylsp attached to a
16,000-line Python buffer of a small project (its functions call helpers of another file):

  gather      the keypress's own cost: `kznllm.context`'s start (every source: names
              collected, definition requests sent), context.lsp on vs off, in the editor
  at_once     keypress -> request at the server with the query given at once
              (`:'<,'>KznFill q`): the wait is the servers' answers, at most the deadline
  typed_300   the query confirmed 300 ms after the keypress (a user typing it):
              confirm -> request at the server

Runs interleave on / off, a fill each in turn, so the machine's load falls on both alike;
medians in ms.

    .venv/bin/python bench/lsp_context_bench.py [--fills 10] [--gathers 60] [--lines 16000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lsp_helpers import start_pylsp  # noqa: E402
from tests.nvim_child import Child  # noqa: E402
from tests.servers import LoopbackServer, Reply, openai_events  # noqa: E402

HELPERS = (
    "def parse_config(path):\n    return {'path': path}\n\n\ndef scale(x):\n    return 2 * x\n"
)

GATHER = """
local on, range = ...
require('kznllm').setup({ context = { lsp = on, lsp_timeout = 5000 } })
local ctx = require('kznllm.context')
local t = vim.uv.hrtime()
local pending = ctx.start(0, range)
local took = (vim.uv.hrtime() - t) / 1e6
vim.wait(5000, function() return pending.waiting == 0 end, 1)
return { took, (vim.uv.hrtime() - t) / 1e6 }
"""


def project(lines: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="kzn-lsp-bench-"))
    (root / "helpers.py").write_text(HELPERS)
    body = ["from helpers import parse_config, scale", ""]
    i = 0
    while len(body) < lines:
        body += [
            f"def step_{i}(path):",
            "    cfg = parse_config(path)",
            f"    return scale(len(cfg)) + {i}",
            "",
        ]
        i += 1
    (root / "main.py").write_text("\n".join(body[:lines]) + "\n")
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=10)
    ap.add_argument("--gathers", type=int, default=60)
    ap.add_argument("--lines", type=int, default=16000)
    args = ap.parse_args()
    root = project(args.lines)
    mid = args.lines // 2 // 4 * 4 + 3  # a `def step_N` line
    got: dict[str, list[float]] = {}
    with_def = [0, 0]  # typed fills with lsp on, and those with the definition in
    with LoopbackServer() as server:
        nvim = Child(Path(tempfile.mkdtemp(prefix="kzn-lsp-bench-nvim-")))
        try:
            nvim.use_server(server.base_url)
            nvim.nvim.command(f"cd {root}")
            nvim.nvim.command("edit main.py")
            start_pylsp(nvim, root)
            rng = [mid - 1, 0, mid + 1, 0]  # the three lines of one function
            for i in range(args.gathers):
                for on in (True, False) if i % 2 else (False, True):
                    took, answered = nvim.lua(GATHER, on, rng)
                    got.setdefault(f"gather lsp={'on' if on else 'off'}", []).append(took)
                    if on:  # every server answered (no deadline here: 5 s)
                        got.setdefault("all_answered", []).append(answered)
            n = 0
            for i in range(args.fills):
                for on in (True, False) if i % 2 else (False, True):
                    nvim.lua(
                        "require('kznllm').setup({ context = { lsp = ..., lsp_timeout = 300 } })",
                        on,
                    )
                    tag = "on" if on else "off"
                    # query given at once
                    server.queue(Reply(chunks=openai_events(["ok"])))
                    t0 = time.time()
                    nvim.nvim.command(f"{mid},{mid + 2}KznFill q")
                    n += 1
                    server.wait_requests(n, timeout=30)
                    got.setdefault(f"at_once lsp={tag}", []).append(
                        (server.requests[-1].at - t0) * 1000
                    )
                    nvim.wait_done(n)
                    nvim.nvim.command("silent! undo")
                    # the query typed: confirmed 300 ms after the keypress
                    server.queue(Reply(chunks=openai_events(["ok"])))
                    nvim.feed(f"{mid}GVjj k")
                    nvim.wait_for(lambda: nvim.nvim.api.get_mode()["mode"] == "c", what="prompt")
                    time.sleep(0.3)  # the user typing the query (a bench, not a wait)
                    t0 = time.time()
                    nvim.nvim.input("q<CR>")
                    n += 1
                    server.wait_requests(n, timeout=30)
                    got.setdefault(f"typed_300 lsp={tag}", []).append(
                        (server.requests[-1].at - t0) * 1000
                    )
                    user = server.requests[-1].body["messages"][-1]["content"]
                    if on:
                        with_def[0] += 1
                        with_def[1] += "parse_config` in helpers.py" in user
                    nvim.wait_done(n)
                    nvim.nvim.command("silent! undo")
        finally:
            nvim.close()
    print(f"ms, medians (min-max); {args.lines}-line Python buffer, pylsp attached")
    print(
        "  typed fills with lsp on carrying parse_config's definition: "
        f"{with_def[1]} of {with_def[0]}"
    )
    for name, values in got.items():
        print(
            f"  {name:<20} {statistics.median(values):8.2f}"
            f"  ({min(values):.2f}-{max(values):.2f}, n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
