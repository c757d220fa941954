"""Review benchmark: `:%KznReview` of a 2,502-line JSON file ("disable every other item",
250 hunks) against the same answer without review (`:%KznFill`), A/B alternating in one
editor so the machine's load falls on both alike.

Neovim runs with its real TUI inside tmux (bench/editor_bench.py's TuiNvim); the answer
streams at ~1,000 tokens/s (4-character tokens, 1 ms apart). Printed per mode (median
of the runs): the editor's CPU time (server + TUI) and its share of the stream's wall
time, the ratio review / plain, the host's ping round trip (a Lua timer pings the host
every 20 ms: a stall of the host's loop shows as a long round trip), and the editor's
diff passes (count, total and longest, timed around kznllm.review_diff.hunks).

    .venv/bin/python bench/review_bench.py [--runs 2] [--gap-ms 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.editor_bench import TuiNvim, editor  # noqa: E402
from bench.stream_bench import BenchServer, Script, pct  # noqa: E402
from tests.review_json import json_lines, token_chunks  # noqa: E402
from tests.servers import openai_events  # noqa: E402

PROBE = r"""
local host = require('kznllm.host')
local P = { rtt = {}, sent = nil, diffs = {} }
_G.kzn_rb = P
local pong = host.pong
host.pong = function(...)
  if P.sent then
    P.rtt[#P.rtt + 1] = vim.uv.hrtime() - P.sent
    P.sent = nil
  end
  return pong(...)
end
local method = host.plugin_path .. ':function:KznllmHostCall'
function P.start()
  P.rtt, P.diffs, P.sent = {}, {}, nil
  P.timer = vim.uv.new_timer()
  P.timer:start(20, 20, vim.schedule_wrap(function()
    if host.chan and not P.sent then
      P.sent = vim.uv.hrtime()
      pcall(vim.rpcnotify, host.chan, method, { 'ping', vim.empty_dict() })
    end
  end))
end
function P.stop()
  P.timer:stop()
  P.timer:close()
  return { rtt = P.rtt, diffs = P.diffs }
end
local differ = require('kznllm.review_diff')
local hunks = differ.hunks
differ.hunks = function(...)
  local t0 = vim.uv.hrtime()
  local a, b = hunks(...)
  P.diffs[#P.diffs + 1] = vim.uv.hrtime() - t0
  return a, b
end
"""


def run(ed: TuiNvim, server: BenchServer, path: Path, cmd: str, gap: float) -> dict[str, Any]:
    answer = "\n".join(json_lines(disable_every_other=True)) + "\n"
    toks = token_chunks(answer, 4)
    ed.nvim.command(f"silent! edit! {path}")
    server.queue(Script(openai_events(toks), len(toks), gap))
    cpu0 = ed.cpu()
    ed.lua("_G.kzn_rb.start()")
    rec = ed.fill(cmd, timeout=300)
    probe = ed.lua("return _G.kzn_rb.stop()")
    cpu1 = ed.cpu()
    lines = ed.nvim.api.buf_get_lines(0, 0, -1, True)
    if lines != json_lines(disable_every_other=True):
        raise RuntimeError(f"{cmd}: the buffer does not hold the answer")
    reviewed = ed.lua("return vim.tbl_count(require('kznllm.review').reviews)")
    if reviewed:
        hunks = ed.lua("local _, r = next(require('kznllm.review').reviews) return #r.hunks")
        if hunks != 250:
            raise RuntimeError(f"review: {hunks} hunks, not 250")
        ed.nvim.command("KznAccept!")
    wall = (rec["done"] - rec["key"]) / 1e9
    cpu = (cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) / 1e9
    rtt = sorted(x / 1e6 for x in probe["rtt"])
    diffs = [x / 1e6 for x in probe["diffs"]]
    return {
        "tokens": len(toks),
        "wall_s": wall,
        "editor_cpu_s": cpu,
        "editor_cpu_share": cpu / wall,
        "host_ping_p50_ms": pct(rtt, 50),
        "host_ping_p99_ms": pct(rtt, 99),
        "host_ping_max_ms": rtt[-1] if rtt else float("nan"),
        "host_pings": len(rtt),
        "diff_passes": len(diffs),
        "diff_total_ms": sum(diffs),
        "diff_max_ms": max(diffs, default=0.0),
    }


def median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--gap-ms", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not shutil.which("tmux"):
        print("review_bench needs tmux (apt-get install tmux)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="kznreview-"))
    server = BenchServer()
    res: dict[str, list[dict[str, Any]]] = {"plain": [], "review": []}
    try:
        path = tmp / "items.json"
        path.write_text("\n".join(json_lines()) + "\n")
        with editor(tmp / "tui", server, "pause") as ed:
            ed.lua(PROBE)
            for _ in range(args.runs):  # A/B: the same load falls on both
                res["plain"].append(run(ed, server, path, "%KznFill q", args.gap_ms / 1000))
                res["review"].append(run(ed, server, path, "%KznReview q", args.gap_ms / 1000))
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: median(v) for k, v in res.items()}
    if args.json:
        print(json.dumps({"runs": res, "median": med}, indent=2))
        return 0
    p, r = med["plain"], med["review"]
    print(f"2,502-line JSON, {p['tokens']:.0f} tokens {args.gap_ms:g} ms apart, A/B, median of")
    print(f"{args.runs} runs each")
    for name, m in med.items():
        print(
            f"  {name:7} wall {m['wall_s']:.1f} s, editor CPU {m['editor_cpu_s']:.2f} s"
            f" ({m['editor_cpu_share'] * 100:.0f} %), host ping p50/p99/max"
            f" {m['host_ping_p50_ms']:.1f}/{m['host_ping_p99_ms']:.1f}/{m['host_ping_max_ms']:.1f}"
            f" ms ({m['host_pings']:.0f} pings)"
        )
    print(
        f"  review diff passes {r['diff_passes']:.0f}, {r['diff_total_ms']:.0f} ms in all,"
        f" longest {r['diff_max_ms']:.1f} ms"
    )
    ratio = r["editor_cpu_s"] / p["editor_cpu_s"]
    ok = "ok" if ratio <= 2 else "MISSED"
    print(f"  editor CPU review / plain: {ratio:.2f}  [{ok}: target <= 2]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
