"""History sidebar benchmark: how long `:KznHistory` takes to show a large history.

A real Neovim (tests/nvim_child.py) gets a history database of N entries (default
10,000, queries and answers of realistic size), then `:KznHistory` is run repeatedly
(closed in between). Measured with Neovim's clock (vim.uv.hrtime()): from the command
to the moment the sidebar buffer holds the rendered first page (a `User
KznllmHistoryRendered` autocmd). The first open of a session also starts the Python
host ("cold"); the others run against a warm host ("warm"). Also: paging in the next
page, and the time to open an entry (<CR>).

    .venv/bin/python bench/history_bench.py [--entries 10000] [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kznllm_py.history import HistoryStore  # noqa: E402
from tests.nvim_child import Child  # noqa: E402

TARGET_WARM_MS = 100.0

LUA = r"""
_G.kzn_hb = { rendered = 0 }
vim.api.nvim_create_autocmd('User', { pattern = 'KznllmHistoryRendered', callback = function()
  _G.kzn_hb.rendered = _G.kzn_hb.rendered + 1
  _G.kzn_hb.t_rendered = vim.uv.hrtime()
end })
function _G.kzn_hb.open()
  _G.kzn_hb.t_cmd = vim.uv.hrtime()
  vim.cmd('KznHistory')
end
"""


def populate(path: Path, n: int) -> None:
    store = HistoryStore(path, max_entries=None)
    db = store._connect()
    body = "def f(x):\n    return x * 2\n" * 20  # ~600 chars of answer each
    with db:
        db.executemany(
            "INSERT INTO entries (started_at, finished_at, status, preset_id, provider, model,"
            " mode, input_tokens, output_tokens, duration_ms, path, query, response)"
            " VALUES (?, ?, ?, ?, 'anthropic', 'claude-sonnet-4-5', ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    1_700_000_000 + i * 60,
                    1_700_000_003 + i * 60,
                    ("ok", "ok", "ok", "error", "cancelled")[i % 5],
                    ("claude-sonnet", "gpt-4o-mini", "demo")[i % 3],
                    ("yap", "replace")[i % 2],
                    1200 + i % 300,
                    300 + i % 200,
                    2500 + i % 900,
                    f"/home/user/project/src/module_{i % 40}.py",
                    f"question number {i}: make this function handle the empty case too",
                    body,
                )
                for i in range(n)
            ],
        )
    db.close()


def rendered(nvim: Child) -> int:
    return int(nvim.lua("return _G.kzn_hb.rendered"))


def open_once(nvim: Child) -> float:
    before = rendered(nvim)
    nvim.lua("_G.kzn_hb.open()")
    nvim.wait_for(lambda: rendered(nvim) > before, what="the sidebar")
    ms = nvim.lua("return (_G.kzn_hb.t_rendered - _G.kzn_hb.t_cmd) / 1e6")
    nvim.nvim.command("KznHistory")  # close
    return float(ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        nvim = Child(Path(tmp))
        try:
            data = Path(nvim.lua("return vim.fn.stdpath('data')"))
            t0 = time.perf_counter()
            populate(data / "kznllm" / "history.sqlite3", args.entries)
            populate_s = time.perf_counter() - t0
            nvim.lua(LUA)
            cold = open_once(nvim)
            warm = [open_once(nvim) for _ in range(args.runs)]
            # the next page: open, move to the end, wait for the page
            before = rendered(nvim)
            nvim.lua("_G.kzn_hb.open()")
            nvim.wait_for(lambda: rendered(nvim) > before, what="the sidebar")
            before = rendered(nvim)
            t = nvim.lua(
                "local w = require('kznllm.sidebar').win()"
                " local t = vim.uv.hrtime()"
                " vim.api.nvim_win_set_cursor(w, { vim.api.nvim_buf_line_count(0), 0 })"
                " return t"
            )
            nvim.wait_for(lambda: rendered(nvim) > before, what="the next page")
            page_ms = (nvim.lua("return _G.kzn_hb.t_rendered") - t) / 1e6
            lines = nvim.lua("return #vim.api.nvim_buf_get_lines(0, 0, -1, true)")
        finally:
            nvim.close()

    warm_sorted = sorted(warm)
    result = {
        "entries": args.entries,
        "populate_s": round(populate_s, 2),
        "cold_open_ms": round(cold, 1),
        "warm_open_ms_median": round(statistics.median(warm), 1),
        "warm_open_ms_min": round(warm_sorted[0], 1),
        "warm_open_ms_max": round(warm_sorted[-1], 1),
        "next_page_ms": round(page_ms, 1),
        "lines_after_two_pages": lines,
        "target_warm_ms": TARGET_WARM_MS,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"history of {args.entries:,} entries (populated in {populate_s:.1f} s)")
        print(f"  :KznHistory cold (starts the host) {cold:7.1f} ms")
        print(
            f"  :KznHistory warm, median of {args.runs}   {result['warm_open_ms_median']:7.1f} ms"
            f"  (min {result['warm_open_ms_min']}, max {result['warm_open_ms_max']})"
            f"  target < {TARGET_WARM_MS:.0f} ms"
        )
        print(f"  next page                          {page_ms:7.1f} ms  ({lines} lines now)")
    return 0 if statistics.median(warm) < TARGET_WARM_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
