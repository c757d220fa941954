"""Memory benchmark: does the Python host's memory stay flat over many requests?

A real Neovim (tests/nvim_child.py: the plugin loaded like a user's, the Python host
started by the Lua shim, history on, in a temp data dir) fills a fresh scratch buffer
again and again from a loopback OpenAI-compatible server (tests/servers.py), one request
after the other. The host's resident set size (VmRSS in /proc/<pid>/status; the pid is
`jobpid()` of the host's RPC channel) is read after a warm-up and every --every requests.

    .venv/bin/python bench/memory_bench.py [--requests 1000] [--warmup 50] [--every 50]
        [--tokens 100] [--no-history] [--json] [--trace] [--host-env KEY=VALUE]

Growth per 100 requests is the least-squares slope of RSS over the samples after the
warm-up. History is written by a worker thread of the host, behind the fills: after the
last request the script waits until every entry is finished in the database, and reads
RSS again ("drained"): what a backlog of history writes held is gone by then, a leak is
not. --trace starts tracemalloc in the host (a sitecustomize.py on its PYTHONPATH,
read when the host starts) and prints the allocation sites that grew most between the
end of the warm-up and the point where history has caught up (what is still held then);
tracing slows the host and adds its own memory, so its RSS figures are not the ones to
quote.

Exit status 1 if a request does not end 'ok' or the buffer differs from the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.nvim_child import Child  # noqa: E402
from tests.servers import LoopbackServer, Reply, openai_events  # noqa: E402

MARKS = (250, 500, 750, 1000)

# Each fill: a fresh scratch buffer (the previous one is wiped when it is left), the
# query typed as :KznFill, the end reported to us by rpcnotify (no polling), and a
# watchdog that reports a timeout instead of hanging.
LUA_SETUP = r"""
local chan = ...
_G.kzn_mem = { chan = chan, run = 0 }
vim.api.nvim_create_autocmd('User', { pattern = 'KznllmDone', callback = function(ev)
  local M = _G.kzn_mem
  M.done = true
  local text = table.concat(vim.api.nvim_buf_get_lines(ev.data.bufnr, 0, -1, true), '\n')
  vim.rpcnotify(M.chan, 'kzn_mem_done', M.run, ev.data.status, text)
end })
function _G.kzn_mem.fill(run, timeout_ms)
  local M = _G.kzn_mem
  M.run, M.done = run, false
  _G.kzn_events, _G.kzn_msgs = {}, {} -- what tests/nvim_child.py records: not kept here
  vim.cmd('enew')
  vim.bo.buftype, vim.bo.bufhidden, vim.bo.swapfile = 'nofile', 'wipe', false
  vim.defer_fn(function()
    if M.run == run and not M.done then
      vim.rpcnotify(M.chan, 'kzn_mem_done', run, 'timeout', '')
    end
  end, timeout_ms)
  vim.cmd('KznFill q')
end
"""

SITECUSTOMIZE = r'''
"""kznllm memory_bench --trace: tracemalloc in the Python host. SIGUSR1 takes the
baseline snapshot; SIGUSR2 compares with it and writes the top growth to $KZN_TRACE_OUT."""
import os

if os.environ.get("KZN_TRACE_OUT"):
    import signal
    import tracemalloc

    tracemalloc.start(12)
    _base = []

    def _baseline(*_):
        _base[:] = [tracemalloc.take_snapshot()]

    def _compare(*_):
        snap = tracemalloc.take_snapshot()
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        snap = snap.filter_traces(keep)
        base = _base[0].filter_traces(keep)
        lines = []
        for stat in snap.compare_to(base, "traceback")[:12]:
            lines.append(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks")
            lines.extend("    " + ln for ln in stat.traceback.format()[-8:])
        total = sum(s.size for s in snap.statistics("filename"))
        lines.append(f"traced now: {total / 1024:.0f} KiB")
        out = os.environ["KZN_TRACE_OUT"]
        with open(out + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(out + ".tmp", out)  # whole, or not there

    signal.signal(signal.SIGUSR1, _baseline)
    signal.signal(signal.SIGUSR2, _compare)
'''


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def history_state(db: Path) -> tuple[int, int]:
    """(highest entry id, entries still 'running') in the history file, read-only."""
    if not db.exists():
        return 0, 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        top, running = con.execute(
            "SELECT coalesce(max(id), 0),"
            " (SELECT count(*) FROM entries WHERE status = 'running') FROM entries"
        ).fetchone()
    finally:
        con.close()
    return int(top), int(running)


def wait_drained(db: Path, total: int, pid: int, timeout: float = 300.0) -> float:
    """Wait until the host has finished all `total` entries in `db`; the seconds taken.
    The file belongs to another process, so this polls it (no event to wait on)."""
    t0 = time.monotonic()
    while history_state(db) != (total, 0):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"history still behind after {timeout:.0f} s: {history_state(db)}")
        os.kill(pid, 0)  # the host is alive
        time.sleep(0.05)
    return time.monotonic() - t0


def slope_per_100(samples: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of (request number, RSS kB), in kB per 100 requests."""
    n = len(samples)
    if n < 2:
        return None
    mx = sum(x for x, _ in samples) / n
    my = sum(y for _, y in samples) / n
    sxx = sum((x - mx) ** 2 for x, _ in samples)
    sxy = sum((x - mx) * (y - my) for x, y in samples)
    return 100 * sxy / sxx if sxx else 0.0


class MemChild(Child):
    def __init__(
        self, tmp: Path, env: dict[str, str] | None = None, *, history: bool = True
    ) -> None:
        super().__init__(tmp, setup={"history": history, "progress": True}, env=env)
        self.lua(LUA_SETUP, self.nvim.channel_id)
        self.run_no = 0

    def fill(self, expected: str, timeout: float = 30.0) -> None:
        self.run_no += 1
        run = self.run_no
        self.lua("_G.kzn_mem.fill(...)", run, int(timeout * 1000))
        while True:
            msg = self.nvim.next_message()
            if msg and msg[0] == "notification" and msg[1] == "kzn_mem_done":
                got_run, status, text = msg[2]
                if got_run == run:
                    break
        if status != "ok":
            raise RuntimeError(f"request {run}: {status}")
        if text != expected:
            raise RuntimeError(f"request {run}: the buffer differs from the answer")

    def host_pid(self) -> int:
        return int(self.lua("return vim.fn.jobpid(require('kznllm.host').chan)"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    toks = [f"tok{i} " for i in range(args.tokens)]
    expected = "".join(toks)
    reply = Reply(chunks=openai_events(toks, usage={"prompt_tokens": 50, "completion_tokens": 9}))
    with (
        tempfile.TemporaryDirectory(prefix="kznllm-membench-") as name,
        LoopbackServer(default=reply) as server,
    ):
        tmp = Path(name)
        env: dict[str, str] = {}
        trace_out = tmp / "trace.txt"
        if args.trace:
            site = tmp / "site"
            site.mkdir()
            (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env = {"PYTHONPATH": str(site), "KZN_TRACE_OUT": str(trace_out)}
        for item in args.host_env:  # e.g. PYTHONPATH=dir-with-a-sitecustomize.py
            key, _, value = item.partition("=")
            env[key] = value
        child = MemChild(tmp / "nvim", env=env, history=args.history)
        try:
            child.use_server(server.base_url)
            db = Path(child.lua("return vim.fn.stdpath('data')")) / "kznllm" / "history.sqlite3"
            t0 = time.monotonic()
            for _ in range(args.warmup):
                child.fill(expected)
            pid = child.host_pid()
            if args.history:  # start from a steady state: history caught up
                wait_drained(db, args.warmup, pid)
            if args.trace:
                os.kill(pid, signal.SIGUSR1)
            samples = [(0, rss_kb(pid))]
            start = samples[0][1]
            t1 = time.monotonic()
            for i in range(1, args.requests + 1):
                child.fill(expected)
                if i % args.every == 0 or i in MARKS:
                    samples.append((i, rss_kb(pid)))
            t2 = time.monotonic()
            behind, drain_s = (0, 0), 0.0
            if args.history:
                behind = history_state(db)
                drain_s = wait_drained(db, args.warmup + args.requests, pid)
            drained = rss_kb(pid)
            trace = None
            if args.trace:
                os.kill(pid, signal.SIGUSR2)
                deadline = time.monotonic() + 300  # comparing snapshots takes a while
                while not trace_out.exists() and time.monotonic() < deadline:
                    child.nvim.api.get_mode()  # a round trip, while the host writes
                    time.sleep(0.05)  # another process's file, no event to wait on
                trace = trace_out.read_text() if trace_out.exists() else "(no trace written)"
            db_kb = db.stat().st_size // 1024 if db.exists() else None
        finally:
            child.close()
        marks = {x: y for x, y in samples if x in (0, *MARKS)}
        after_warmup = [(x, y) for x, y in samples if x >= 0]
        return {
            "requests": args.requests,
            "warmup": args.warmup,
            "tokens": args.tokens,
            "answer_bytes": len(expected.encode()),
            "host_pid": pid,
            "rss_kb": samples,
            "rss_marks_kb": marks,
            "rss_start_kb": start,
            "rss_end_kb": samples[-1][1],
            "growth_kb_per_100": slope_per_100(after_warmup),
            "growth_kb_per_100_after_250": slope_per_100([s for s in samples if s[0] >= 250]),
            "warmup_s": t1 - t0,
            "run_s": t2 - t1,
            "requests_per_s": args.requests / (t2 - t1),
            "history_db_kb": db_kb,
            "history": args.history,
            "history_behind_at_end": (
                (args.warmup + args.requests) - behind[0] + behind[1] if args.history else 0
            ),
            "drain_s": drain_s,
            "rss_drained_kb": drained,
            "trace": trace,
        }


def print_report(r: dict[str, Any]) -> None:
    print(
        f"{r['requests']} fills in a row after {r['warmup']} warm-up, {r['tokens']} tokens "
        f"({r['answer_bytes']} bytes) each, history {'on' if r['history'] else 'off'}; "
        f"host pid {r['host_pid']}; "
        f"{r['run_s']:.1f} s ({r['requests_per_s']:.0f} requests/s)"
    )
    print("host RSS (VmRSS):")
    for x, y in r["rss_marks_kb"].items():
        label = "after warm-up" if x == 0 else f"after {x:>4}"
        print(f"  {label:>14}: {y / 1024:7.2f} MB")
    late = r["growth_kb_per_100_after_250"]
    print(
        f"growth: {r['growth_kb_per_100']:+.1f} kB per 100 requests (least squares over "
        f"every sample)"
        + (f", {late:+.1f} kB per 100 from request 250 on" if late is not None else "")
        + f"; {(r['rss_end_kb'] - r['rss_start_kb']) / 1024:+.2f} MB in all"
    )
    since = (r["rss_drained_kb"] - r["rss_start_kb"]) / 1024
    if r["history"]:
        print(
            f"history writes behind after the last request: {r['history_behind_at_end']} "
            f"entries unfinished; caught up {r['drain_s']:.1f} s later, host RSS then "
            f"{r['rss_drained_kb'] / 1024:.2f} MB ({since:+.2f} MB since the warm-up)"
        )
    if r["history_db_kb"] is not None:
        print(f"history file: {r['history_db_kb']} kB on disk")
    if r["trace"]:
        print("\ntracemalloc, top growth since the warm-up (host):")
        print(r["trace"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--every", type=int, default=50, help="sample RSS every N requests")
    ap.add_argument("--tokens", type=int, default=100, help="tokens per answer")
    ap.add_argument("--trace", action="store_true", help="tracemalloc in the host")
    ap.add_argument("--no-history", dest="history", action="store_false", help="history off")
    ap.add_argument(
        "--host-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for Neovim and the host (experiments), repeatable",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        res = run(args)
    except RuntimeError as exc:
        print(f"memory_bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print_report(res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
