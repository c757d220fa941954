"""Streaming benchmark: how fast and how smoothly a fill lands in a real Neovim.

A real Neovim (tests/nvim_child.py: the plugin loaded like a user's, the Python host
started by the Lua shim) is pointed at a purpose-built loopback OpenAI-compatible
server, and `:KznFill q<CR>` is typed. Scenarios:

  burst  the server streams N chat.completion.chunk events (one token each) with no
         delay, the whole response pre-rendered and written in one go, then [DONE]
  paced  200 tokens, 20 ms apart

Times come from Neovim's own clock (vim.uv.hrtime(), CLOCK_MONOTONIC): a Lua hook
records the moment :KznFill runs (the "keypress") and the start/end of every
`require('kznllm.job').write` call. The server records when it sends each event with
time.monotonic_ns(), the same clock (checked at start-up, see "clock check"), so server
send times and buffer write times compare directly. A second client, connected over a
socket (serverstart), pings `nvim_eval('1')` every ~1 ms during the burst.

    .venv/bin/python bench/stream_bench.py [--runs 7] [--paced-runs 3] [--tokens 5000]
        [--paced-tokens 200] [--gap-ms 20] [--no-ping] [--json [--raw]]

Exit status 1 when any run's buffer text differs from the streamed text.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.nvim_child import Child  # noqa: E402
from tests.servers import openai_events  # noqa: E402

TARGETS = {
    "burst_total_ms": 40.0,
    "paced_send_to_buffer_ms": 15.0,
    "ping_p99_ms": 5.0,
    "host_rss_mb": 80.0,
}

# -- the Lua side: hooks that record Neovim's clock ------------------------------------

LUA_HOOKS = r"""
local chan = ...
local kzn = require('kznllm')
local job = require('kznllm.job')
local B = { chan = chan, run = 0 }
_G.kzn_bench = B
function B.reset(run)
  B.run = run
  B.keypress = nil
  B.start = nil
  B.writes = {}   -- { t_begin, t_end, bytes, wrote(0/1) }
  B.done = nil
end
B.reset(0)
local orig_cmd = kzn.command_fill
kzn.command_fill = function(...)
  B.keypress = B.keypress or vim.uv.hrtime()
  return orig_cmd(...)
end
local orig_start = kzn.start
kzn.start = function(...)
  B.start = B.start or vim.uv.hrtime()
  return orig_start(...)
end
local orig_write = job.write
job.write = function(id, text)
  local t0 = vim.uv.hrtime()
  local j = job.jobs[id]
  local buf = j and j.buf
  local tick = buf and vim.api.nvim_buf_is_valid(buf) and vim.api.nvim_buf_get_changedtick(buf)
  orig_write(id, text)
  local t1 = vim.uv.hrtime()
  local wrote = 0
  if tick and vim.api.nvim_buf_is_valid(buf) and vim.api.nvim_buf_get_changedtick(buf) ~= tick then
    wrote = 1
  end
  local w = B.writes
  w[#w + 1] = { t0, t1, #text, wrote }
end
vim.api.nvim_create_autocmd('User', {
  pattern = 'KznllmDone',
  callback = function(ev)
    B.done = vim.uv.hrtime()
    vim.rpcnotify(B.chan, 'kzn_bench_done', B.run, ev.data)
  end,
})
function B.watchdog(run, ms)
  vim.defer_fn(function()
    if B.run == run and not B.done then
      vim.rpcnotify(B.chan, 'kzn_bench_done', run, { status = 'timeout' })
    end
  end, ms)
end
function B.collect()
  local buf = vim.api.nvim_get_current_buf()
  return {
    keypress = B.keypress,
    start = B.start,
    done = B.done,
    writes = B.writes,
    text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, true), '\n'),
  }
end
"""

# -- the server ------------------------------------------------------------------------


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class Script:
    """One response: `events` (SSE events; events[1:1+n_tokens] carry the tokens), sent
    all at once (gap 0) or one every `gap` seconds."""

    events: list[bytes]
    n_tokens: int
    gap: float = 0.0


@dataclass
class Served:
    request_at: int = 0  # ns, the request fully read
    send_start: int = 0  # ns, before the first byte of the response
    send_end: int = 0  # ns, after the last byte
    token_sent: list[int] = field(default_factory=list)  # ns, per token event (paced)


class BenchServer:
    """A minimal HTTP/1.1 keep-alive server on 127.0.0.1, one thread per connection.
    Each request is answered by the next queued Script."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.script: Script | None = None
        self.served: list[Served] = []
        self.ready = threading.Condition()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="bench-server").start()

    def queue(self, script: Script) -> None:
        self.script = script

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                served = Served(request_at=time.monotonic_ns())
                script = self.script
                assert script is not None, "no script queued"
                self._respond(conn, script, served)
                with self.ready:
                    self.served.append(served)
                    self.ready.notify_all()
        except OSError:
            return
        finally:
            conn.close()

    @staticmethod
    def _respond(conn: socket.socket, script: Script, served: Served) -> None:
        events = script.events
        if script.gap <= 0:
            blob = HEAD + b"".join(_chunked(e) for e in events) + b"0\r\n\r\n"
            served.send_start = time.monotonic_ns()
            conn.sendall(blob)
            served.send_end = time.monotonic_ns()
            return
        n = script.n_tokens
        served.send_start = time.monotonic_ns()
        conn.sendall(HEAD + _chunked(events[0]))
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i * script.gap  # the first token at once, then one per gap
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            served.token_sent.append(time.monotonic_ns())
            conn.sendall(_chunked(events[1 + i]))
        conn.sendall(b"".join(_chunked(e) for e in events[1 + n :]) + b"0\r\n\r\n")
        served.send_end = time.monotonic_ns()

    def close(self) -> None:
        self._closed = True
        self.sock.close()


# -- the second client: raw msgpack-rpc over the socket --------------------------------


class Pinger:
    """Calls nvim_eval('1') about every `interval` s from its own thread and connection;
    records each round trip (ns)."""

    def __init__(self, path: str, interval: float = 0.001) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.interval = interval
        self.msgid = 0
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ping(self) -> int:
        self.msgid += 1
        msg = msgpack.packb([0, self.msgid, "nvim_eval", ["1"]])
        t0 = time.perf_counter_ns()
        self.sock.sendall(msg)
        while True:
            for obj in self.unpacker:
                if obj[0] == 1 and obj[1] == self.msgid:
                    if obj[2] is not None:
                        raise RuntimeError(f"nvim_eval failed: {obj[2]}")
                    return time.perf_counter_ns() - t0
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("nvim closed the socket")
            self.unpacker.feed(data)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.ping())
            time.sleep(self.interval)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pinger")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def close(self) -> None:
        self.sock.close()


# -- the editor ------------------------------------------------------------------------


class BenchChild(Child):
    """tests.nvim_child.Child, plus a listening socket for a second client and the
    timing hooks."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.socket_path = str(tmp / "nvim.sock")
        self.nvim.funcs.serverstart(self.socket_path)
        self.lua(LUA_HOOKS, self.nvim.channel_id)
        self.pid = int(self.nvim.funcs.getpid())
        self.run_no = 0

    def fill(self, timeout: float = 30.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """Type :KznFill in an empty buffer; block until KznllmDone; return the done
        data and what the hooks recorded."""
        self.run_no += 1
        run = self.run_no
        self.nvim.command("enew!")
        self.lua("_G.kzn_bench.reset(...) _G.kzn_bench.watchdog(...)", run, int(timeout * 1000))
        self.nvim.input(":KznFill q<CR>")
        while True:
            msg = self.nvim.next_message()
            if msg and msg[0] == "notification" and msg[1] == "kzn_bench_done" and msg[2][0] == run:
                done = msg[2][1]
                break
        if done.get("status") == "timeout":
            raise RuntimeError(f"run {run}: no KznllmDone within {timeout}s")
        return done, self.lua("return _G.kzn_bench.collect()")

    def host_pid(self) -> int | None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != self.pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"start_host" in f.read():
                        return int(entry)
            except (OSError, ValueError, IndexError):
                continue
        return None


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])  # kB
    return out


def cpu_ns(pid: int | None) -> int | None:
    """CPU time (ns) spent so far by all threads of `pid` (/proc/.../schedstat)."""
    if not pid:
        return None
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return None
    return total


def clock_check(child: Child, n: int = 50) -> dict[str, Any]:
    """Is vim.uv.hrtime() the same clock as time.monotonic_ns()? Every reading of
    Neovim's clock must fall between two readings of ours around the RPC call."""
    ok = 0
    slack = []
    for _ in range(n):
        t0 = time.monotonic_ns()
        h = int(child.lua("return vim.uv.hrtime()"))
        t1 = time.monotonic_ns()
        if t0 <= h <= t1:
            ok += 1
        slack.append((t1 - t0) / 1e6)
    return {"samples": n, "bracketed": ok, "same_clock": ok == n, "rtt_ms_max": max(slack)}


# -- scenarios -------------------------------------------------------------------------


def tokens(n: int) -> list[str]:
    # mostly "tokNNN ", a line break every 16 tokens: multi-line text, as code would be
    return [f"tok{i}\n" if i % 16 == 15 else f"tok{i} " for i in range(n)]


def ms(ns: float) -> float:
    return ns / 1e6


def analyse(
    rec: dict[str, Any], served: Served, expected: str, toks: list[str], done: dict[str, Any]
) -> dict[str, Any]:
    writes = rec["writes"]
    key = rec["keypress"]
    wrote = [w for w in writes if w[3]]
    first_end = wrote[0][1] if wrote else None
    last_end = wrote[-1][1] if wrote else None
    n = len(toks)
    r: dict[str, Any] = {
        "status": done.get("status"),
        "exact": rec["text"] == expected,
        "bytes_expected": len(expected.encode()),
        "bytes_written": sum(w[2] for w in writes),
        "write_calls": len(writes),
        "buffer_writes": len(wrote),
        "write_ms_total": sum(ms(w[1] - w[0]) for w in writes),
        "write_ms_max": max((ms(w[1] - w[0]) for w in writes), default=0.0),
        "key_to_request_ms": ms(served.request_at - key),
        "key_to_first_ms": ms(first_end - key) if first_end else None,
        "key_to_all_ms": ms(last_end - key) if last_end else None,
        "key_to_done_ms": ms(rec["done"] - key) if rec["done"] else None,
        "send_to_first_ms": ms(first_end - served.send_start) if first_end else None,
        "send_to_all_ms": ms(last_end - served.send_start) if last_end else None,
        "server_send_ms": ms(served.send_end - served.send_start),
        "last_byte_to_last_write_ms": ms(last_end - served.send_end) if last_end else None,
    }
    if first_end and last_end:
        span = (last_end - served.send_start) / 1e9
        r["tokens_per_s"] = n / span if span > 0 else None
    if served.token_sent:
        # when was each token in the buffer? the first write whose end covers its bytes
        ends = []
        acc = 0
        for w in wrote:
            acc += w[2]
            ends.append((acc, w[1]))
        lat = []
        pos = 0
        j = 0
        for i, tok in enumerate(toks):
            pos += len(tok.encode())
            while j < len(ends) and ends[j][0] < pos:
                j += 1
            if j < len(ends):
                lat.append(ms(ends[j][1] - served.token_sent[i]))
        r["token_latency_ms"] = lat
        r["send_to_first_ms"] = lat[0] if lat else None
    return r


def run_scenario(
    child: BenchChild,
    server: BenchServer,
    toks: list[str],
    *,
    gap: float = 0.0,
    pinger: Pinger | None = None,
) -> dict[str, Any]:
    events = openai_events(toks)
    server.queue(Script(events, len(toks), gap))
    before = len(server.served)
    host = child.host_pid()
    cpu0 = {"host": cpu_ns(host), "nvim": cpu_ns(child.pid)}
    if pinger:
        pinger.samples = []
        pinger.start()
    try:
        done, rec = child.fill(timeout=30 + gap * len(toks))
    finally:
        if pinger:
            pinger.stop()
    with server.ready:
        server.ready.wait_for(lambda: len(server.served) > before, timeout=5)
    cpu1 = {"host": cpu_ns(host), "nvim": cpu_ns(child.pid)}
    r = analyse(rec, server.served[-1], "".join(toks), toks, done)
    for who in ("host", "nvim"):
        a, b = cpu0[who], cpu1[who]
        r[f"{who}_cpu_ms"] = ms(b - a) if a is not None and b is not None else None
    if pinger:
        r["ping_ns"] = list(pinger.samples)
    return r


# -- figures ---------------------------------------------------------------------------


def summary(values: list[float | None]) -> dict[str, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(p / 100 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [
        "key_to_request_ms",
        "key_to_first_ms",
        "send_to_first_ms",
        "key_to_all_ms",
        "send_to_all_ms",
        "key_to_done_ms",
        "server_send_ms",
        "last_byte_to_last_write_ms",
        "tokens_per_s",
        "write_calls",
        "buffer_writes",
        "write_ms_total",
        "write_ms_max",
        "host_cpu_ms",
        "nvim_cpu_ms",
    ]
    out: dict[str, Any] = {k: summary([r.get(k) for r in runs]) for k in keys}
    out["runs"] = len(runs)
    out["exact"] = all(r["exact"] for r in runs)
    out["exact_runs"] = sum(r["exact"] for r in runs)
    out["status"] = sorted({str(r["status"]) for r in runs})
    lat = sorted(x for r in runs for x in r.get("token_latency_ms", []))
    if lat:
        out["token_latency_ms"] = {
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "max": lat[-1],
            "n": len(lat),
        }
    pings = sorted(ms(x) for r in runs for x in r.get("ping_ns", []))
    if pings:
        out["ping_ms"] = {
            "p50": pct(pings, 50),
            "p99": pct(pings, 99),
            "max": pings[-1],
            "n": len(pings),
        }
    return out


def fmt(s: dict[str, float] | None, unit: str = "ms", digits: int = 1) -> str:
    if s is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])} {unit}  (min {f.format(s['min'])}, max {f.format(s['max'])})"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return ""
    return f"  [ok, target <= {target:g}]" if value <= target else f"  [OVER target {target:g}]"


def print_report(res: dict[str, Any]) -> None:
    c = res["clock"]
    print(
        f"clock check: vim.uv.hrtime() bracketed by time.monotonic_ns() in "
        f"{c['bracketed']}/{c['samples']} RPC round trips -> "
        f"{'same clock (CLOCK_MONOTONIC)' if c['same_clock'] else 'NOT the same clock!'}"
    )
    print(f"machine: {os.cpu_count()} CPUs; nvim pid {res['nvim_pid']}, host pid {res['host_pid']}")
    ev = res["event_bytes"]
    print(f"chunk events: {ev:.0f} bytes each on average (SSE data line incl. framing)")
    print()
    cold = res["cold"]
    print(f"cold first fill (host start), {res['tokens']} tokens, burst:")
    print(f"  keypress -> request at server  {cold['key_to_request_ms']:.1f} ms")
    print(f"  keypress -> first token         {cold['key_to_first_ms']:.1f} ms")
    print(f"  keypress -> all text in buffer  {cold['key_to_all_ms']:.1f} ms")
    print(f"  byte-exact: {cold['exact']}")
    print()
    for name, agg, title in (
        ("burst", res["burst"], f"(a) burst: {res['tokens']} tokens, no delay"),
        ("paced", res["paced"], f"(b) paced: {res['paced_tokens']} tokens, 20 ms apart"),
    ):
        print(f"{title}  [{agg['runs']} runs, median (min, max)]")
        print(f"  keypress -> request at server  {fmt(agg['key_to_request_ms'])}")
        print(f"  keypress -> first token        {fmt(agg['key_to_first_ms'])}")
        if name == "paced":
            s = agg["send_to_first_ms"]
            print(
                f"  server sent 1st -> in buffer   {fmt(s)}"
                + verdict(s and s["median"], TARGETS["paced_send_to_buffer_ms"])
            )
            t = agg.get("token_latency_ms")
            if t:
                print(
                    f"  every token, sent -> buffer    p50 {t['p50']:.1f} ms, "
                    f"p99 {t['p99']:.1f} ms, max {t['max']:.1f} ms  (n={t['n']})"
                )
        else:
            print(f"  server sent 1st -> in buffer   {fmt(agg['send_to_first_ms'])}")
        s = agg["key_to_all_ms"]
        line = f"  keypress -> all text in buffer {fmt(s)}"
        if name == "burst":
            line += verdict(s and s["median"], TARGETS["burst_total_ms"])
        print(line)
        print(f"  server send start -> all text  {fmt(agg['send_to_all_ms'])}")
        print(f"  server write of the response   {fmt(agg['server_send_ms'])}")
        print(f"  server's last byte -> last write {fmt(agg['last_byte_to_last_write_ms'])}")
        print(f"  keypress -> KznllmDone         {fmt(agg['key_to_done_ms'])}")
        print(f"  tokens/s (send start -> all)   {fmt(agg['tokens_per_s'], 'tok/s', 0)}")
        print(f"  write notifications            {fmt(agg['write_calls'], '', 0)}")
        print(f"  ... of which wrote the buffer  {fmt(agg['buffer_writes'], '', 0)}")
        print(f"  Lua write time, total per run  {fmt(agg['write_ms_total'], 'ms', 2)}")
        print(f"  Lua write time, longest call   {fmt(agg['write_ms_max'], 'ms', 2)}")
        print(f"  Python host CPU time per run   {fmt(agg['host_cpu_ms'])}")
        print(f"  Neovim CPU time per run        {fmt(agg['nvim_cpu_ms'])}")
        print(
            f"  byte-exact                     {agg['exact_runs']}/{agg['runs']} runs"
            f"  (status {', '.join(agg['status'])})"
        )
        p = agg.get("ping_ms")
        if p:
            print(
                f"  2nd client nvim_eval('1')      p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms, "
                f"max {p['max']:.2f} ms  (n={p['n']})" + verdict(p["p99"], TARGETS["ping_p99_ms"])
            )
        print()
    idle = res.get("idle_ping_ms")
    if idle:
        print(
            f"2nd client nvim_eval('1') while idle: p50 {idle['p50']:.2f} ms, "
            f"p99 {idle['p99']:.2f} ms, max {idle['max']:.2f} ms"
        )
    rss = res["host_rss_kb"]
    if rss:
        print(
            f"Python host memory: peak (VmHWM) {rss['VmHWM'] / 1024:.1f} MB, "
            f"now (VmRSS) {rss['VmRSS'] / 1024:.1f} MB"
            + verdict(rss["VmHWM"] / 1024, TARGETS["host_rss_mb"])
        )
    print(f"bench wall time: {res['wall_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="burst runs (default 7)")
    ap.add_argument("--paced-runs", type=int, default=3, help="paced runs (default 3)")
    ap.add_argument("--tokens", type=int, default=5000, help="burst tokens (default 5000)")
    ap.add_argument("--paced-tokens", type=int, default=200, help="paced tokens (default 200)")
    ap.add_argument("--gap-ms", type=float, default=20.0, help="paced gap (default 20 ms)")
    ap.add_argument(
        "--no-ping", action="store_true", help="no second client pinging during the burst"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    ap.add_argument("--raw", action="store_true", help="with --json: include every run")
    args = ap.parse_args(argv)

    wall0 = time.monotonic()
    server = BenchServer()
    tmp = Path(tempfile.mkdtemp(prefix="kznbench-"))
    child = BenchChild(tmp)
    pinger: Pinger | None = None
    try:
        child.use_server(server.base_url)
        res: dict[str, Any] = {"clock": clock_check(child), "tokens": args.tokens}
        res["paced_tokens"] = args.paced_tokens
        burst_toks = tokens(args.tokens)
        events = openai_events(burst_toks)
        res["event_bytes"] = sum(len(e) for e in events[1 : 1 + args.tokens]) / args.tokens

        # cold: the host starts on this first fill
        res["cold"] = run_scenario(child, server, burst_toks)
        res["nvim_pid"] = child.pid
        res["host_pid"] = child.host_pid()
        # warm-up: one throwaway fill (imports done, connection in the pool)
        run_scenario(child, server, burst_toks)

        pinger = Pinger(child.socket_path)
        pinger.samples = []
        for _ in range(300):
            pinger.samples.append(pinger.ping())
            time.sleep(0.001)
        idle = sorted(ms(x) for x in pinger.samples)
        res["idle_ping_ms"] = {"p50": pct(idle, 50), "p99": pct(idle, 99), "max": idle[-1]}

        burst = [
            run_scenario(child, server, burst_toks, pinger=None if args.no_ping else pinger)
            for _ in range(args.runs)
        ]
        paced_toks = tokens(args.paced_tokens)
        paced = [
            run_scenario(child, server, paced_toks, gap=args.gap_ms / 1000)
            for _ in range(args.paced_runs)
        ]
        res["burst"] = aggregate(burst)
        res["paced"] = aggregate(paced)
        res["host_rss_kb"] = proc_status(res["host_pid"]) if res["host_pid"] else None
        res["wall_s"] = time.monotonic() - wall0
        if args.json:
            cold = {k: v for k, v in res["cold"].items() if k != "token_latency_ms"}
            res["cold"] = cold
            if args.raw:
                res["burst_runs"] = [{k: v for k, v in r.items() if k != "ping_ns"} for r in burst]
                res["paced_runs"] = paced
            res["targets"] = TARGETS
            print(json.dumps(res, indent=2))
        else:
            print_report(res)
        ok = res["burst"]["exact"] and res["paced"]["exact"] and res["cold"]["exact"]
        return 0 if ok else 1
    finally:
        if pinger:
            pinger.close()
        child.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
