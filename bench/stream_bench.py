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
        [--kznllm-nvim DIR --fidget-nvim DIR] [--root DIR ...] [--no-history]

With --kznllm-nvim (a work tree of chottolabs/kznllm.nvim, never part of this
repository) the same burst also goes to kznllm.nvim in a second Neovim, run for run
interleaved with ours (the same server, the same load), and the report puts the two side
by side: the burst's time from the server's first byte to the last text in the buffer,
their ratio, and the server's last byte -> the last write. kznllm.nvim streams through
curl (needed on PATH) and reports progress through fidget.nvim (--fidget-nvim, a work
tree of j-hui/fidget.nvim). Its prompt templates need minijinja-cli, which no package
registry ships: its side starts from the request its OpenAI provider builds (its own
make_curl_args and create_streaming_job, its own SSE handler and buffer writes), so its
keypress figures leave out its template rendering and are not compared.

Exit status 1 when any run's buffer text differs from the streamed text.
"""

from __future__ import annotations

import argparse
import contextlib
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
    "burst_ratio": 0.35,  # ours / kznllm.nvim's, server send start -> all text
    "last_byte_to_last_write_ms": 5.0,
}

# -- the Lua side: hooks that record Neovim's clock ------------------------------------

# the recorder both plugins' hooks share (`_G.kzn_bench`): a run's keypress, request
# start, writes ({ t_begin, t_end, bytes, wrote (0/1) }) and end, then the buffer's text
RECORDER = r"""
local B = { chan = chan, run = 0 }
_G.kzn_bench = B
function B.reset(run)
  B.run = run
  B.keypress = nil
  B.start = nil
  B.writes = {}
  B.done = nil
end
B.reset(0)
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

LUA_HOOKS = (
    r"""
local chan = ...
local kzn = require('kznllm')
local job = require('kznllm.job')
"""
    + RECORDER
    + r"""
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
"""
)

# kznllm.nvim's side: the same hooks around its BufferManager:write_content, and a fill
# that runs what its preset's invoke() runs after the prompt (templates aside)
KZNLLM_NVIM_HOOKS = (
    r"""
local chan, base_url = ...
local bm = require('kznllm.buffer').buffer_manager
local openai = require('kznllm.specs.openai')
vim.env.KZN_BENCH_KEY = 'bench'
"""
    + RECORDER
    + r"""
local orig_write = bm.write_content
bm.write_content = function(self, content, buf_id)
  local t0 = vim.uv.hrtime()
  local buf = buf_id or vim.api.nvim_get_current_buf()
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  orig_write(self, content, buf_id)
  local t1 = vim.uv.hrtime()
  local wrote = vim.api.nvim_buf_get_changedtick(buf) ~= tick and 1 or 0
  local w = B.writes
  w[#w + 1] = { t0, t1, #content, wrote }
end
function B.fill(run)
  B.reset(run)
  B.keypress = vim.uv.hrtime()
  local provider = openai.OpenAIProvider:new({
    api_key_name = 'KZN_BENCH_KEY',
    base_url = base_url,
  })
  local args = provider:make_curl_args({
    endpoint = '/v1/chat/completions',
    data = { model = 'test-model', stream = true, messages = { { role = 'user', content = 'q' } } },
  })
  B.start = vim.uv.hrtime()
  bm:create_streaming_job(args, provider.handle_sse_stream, function() end, function()
    vim.schedule(function()
      B.done = vim.uv.hrtime()
      vim.rpcnotify(B.chan, 'kzn_bench_done', run, { status = 'ok' })
    end)
  end)
end
"""
)

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
    _blob: bytes = b""

    def blob(self) -> bytes:
        """The whole response, rendered once (no Python work between the request and
        the send: in-process stages share the GIL with the server's thread)."""
        if not self._blob:
            self._blob = HEAD + b"".join(_chunked(e) for e in self.events) + b"0\r\n\r\n"
        return self._blob


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
        if script.gap <= 0:
            script.blob()  # rendered here, not in the server's thread
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
            blob = script.blob()
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

    def __init__(self, tmp: Path, root: Path = REPO, *, history: bool = True) -> None:
        super().__init__(tmp, root=root, setup=None if history else {"history": False})
        self.root = root
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


class KznllmNvimChild:
    """A second Neovim with chottolabs/kznllm.nvim (and fidget.nvim, which it requires)
    on 'runtimepath', the hooks above loaded; `fill` as BenchChild's."""

    def __init__(self, tmp: Path, plugin: Path, fidget: Path, base_url: str) -> None:
        from tests.nvim_child import embed

        self.nvim = embed(tmp, [fidget, plugin], xdg_prefix="kzn-nvim-")
        self.socket_path = str(tmp / "kzn-nvim.sock")
        self.nvim.funcs.serverstart(self.socket_path)
        # its base_url has no /v1 (its endpoint adds it)
        root = base_url.removesuffix("/v1")
        self.nvim.exec_lua(KZNLLM_NVIM_HOOKS, self.nvim.channel_id, root)
        self.pid = int(self.nvim.funcs.getpid())
        self.run_no = 0

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def fill(self, timeout: float = 30.0) -> tuple[dict[str, Any], dict[str, Any]]:
        self.run_no += 1
        run = self.run_no
        self.nvim.command("enew!")
        self.lua("_G.kzn_bench.fill(...)", run)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.nvim.next_message()
            if msg and msg[0] == "notification" and msg[1] == "kzn_bench_done" and msg[2][0] == run:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"kznllm.nvim run {run}: not done within {timeout}s")
        return {"status": "ok"}, self.lua("return _G.kzn_bench.collect()")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.nvim.close()


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
        # ... of which: until the last write's notification runs in Neovim (the host's
        # reads, decoding, parsing, pacing and the RPC), then the write itself in Lua
        "last_byte_to_last_write_start_ms": ms(wrote[-1][0] - served.send_end) if wrote else None,
        "last_write_lua_ms": ms(wrote[-1][1] - wrote[-1][0]) if wrote else None,
        # each write that changed the buffer: (its end, ms after the server's first byte;
        # its bytes), in --json --raw
        "writes_after_send_ms": [(round(ms(w[1] - served.send_start), 2), w[2]) for w in wrote],
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
    child: BenchChild | KznllmNvimChild,
    server: BenchServer,
    toks: list[str],
    *,
    gap: float = 0.0,
    pinger: Pinger | None = None,
) -> dict[str, Any]:
    events = openai_events(toks)
    server.queue(Script(events, len(toks), gap))
    before = len(server.served)
    host = child.host_pid() if isinstance(child, BenchChild) else None
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


# -- where the host's time goes: its stages, in this process ----------------------------


def host_stages(server: BenchServer, toks: list[str], runs: int = 15) -> dict[str, Any]:
    """The host's side of the burst, stage by stage, run in this process (this tree's
    kznllm_py) against the same server and bytes: CPU time (thread_time) of each stage
    over the body as the transport read it, medians of `runs`; and the whole generation
    with the plugin's coalescer, from the server's last byte to the last flush (what the
    editor's figure holds before the RPC and the Lua write)."""
    import asyncio

    from kznllm_py.nvim.editor import _WRITE
    from kznllm_py.prompt.presets import preset_from_dict
    from kznllm_py.prompt.prompts import FillContext
    from kznllm_py.providers import get_provider
    from kznllm_py.providers.base import Message, Prompt, TextDelta
    from kznllm_py.stream.answer import AnswerFilter
    from kznllm_py.stream.client import Timeouts, new_client, stream_bytes
    from kznllm_py.stream.coalesce import Coalescer, Pace
    from kznllm_py.stream.generation import Generation
    from kznllm_py.stream.sse import SSEDecoder

    events = openai_events(toks)
    expected = "".join(toks)
    provider = get_provider("openai")
    preset = preset_from_dict(
        {
            "id": "b",
            "provider": "openai",
            "model": "m",
            "base_url": server.base_url,
            "api_key": False,
        }
    )
    request = provider.build_request(
        base_url=server.base_url,
        model="m",
        prompt=Prompt("s", (Message("user", "q"),)),
        params={},
        api_key=None,
    )

    def cpu(f: Any) -> float:
        t = time.thread_time_ns()
        f()
        return ms(time.thread_time_ns() - t)

    async def one(client: Any) -> dict[str, float]:
        """One run of each stage on one body; then the whole generation on another."""
        server.queue(Script(events, len(toks)))
        chunks: list[bytes] = []
        t = time.thread_time_ns()
        async for chunk in stream_bytes(client, provider, request, Timeouts()):
            chunks.append(chunk)
        r: dict[str, float] = {"reads_ms": ms(time.thread_time_ns() - t)}
        decoder = SSEDecoder()
        decode = getattr(decoder, "decode_runs", decoder.decode)
        decoded: list[Any] = []
        r["sse_ms"] = cpu(lambda: decoded.extend(decode(c) for c in chunks))
        feed_into = provider.new_parser().feed_into  # type: ignore[attr-defined]
        deltas: list[Any] = []
        r["parse_ms"] = cpu(lambda: [feed_into(d, deltas) for d in decoded])
        text = "".join(d.text for d in deltas if type(d) is TextDelta)
        answer = AnswerFilter(False, cap=1 << 20)
        r["filter_ms"] = cpu(lambda: (answer.push(text), answer.finish()))
        r["pack_ms"] = cpu(lambda: msgpack.packb([2, "nvim_exec_lua", [_WRITE, [1, text, 9]]]))
        flushes: list[int] = []
        coalescer = Coalescer(
            lambda _t: flushes.append(time.monotonic_ns()), interval=Pace().interval
        )
        got: list[str] = []

        def on_text(x: str) -> None:
            got.append(x)
            coalescer.push(x)

        server.queue(Script(events, len(toks)))
        before = len(server.served)
        t = time.thread_time_ns()
        gen = Generation(client, preset, FillContext(mode="yap", query="q"), Timeouts())
        await gen.run(on_text)
        coalescer.close()
        r["generation_cpu_ms"] = ms(time.thread_time_ns() - t)
        with server.ready:
            server.ready.wait_for(lambda: len(server.served) > before, timeout=5)
        r["last_byte_to_flush_ms"] = ms(flushes[-1] - server.served[before].send_end)
        r["flushes"] = float(coalescer.writes)
        r["exact"] = float("".join(got) == expected)
        return r

    async def main() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        async with new_client() as client:
            await one(client)  # warms the pool and the imports up
            for _ in range(runs):
                for key, value in (await one(client)).items():
                    out.setdefault(key, []).append(value)
        return out

    res = asyncio.run(main())
    stages: dict[str, Any] = {k: summary(list(v)) for k, v in res.items() if k != "exact"}
    stages["exact"] = all(res["exact"])
    stages["runs"] = runs
    return stages


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


def spread(vals: list[float]) -> dict[str, float]:
    """The p50, p99, max and count of `vals` (sorted, not empty)."""
    return {"p50": pct(vals, 50), "p99": pct(vals, 99), "max": vals[-1], "n": len(vals)}


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
        "last_byte_to_last_write_start_ms",
        "last_write_lua_ms",
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
        out["token_latency_ms"] = spread(lat)
    pings = sorted(ms(x) for r in runs for x in r.get("ping_ns", []))
    if pings:
        out["ping_ms"] = spread(pings)
    return out


def side_by_side(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run i of ours against run i of theirs (the same load, seconds apart): the ratio of
    the burst's time, server's first byte -> all text in the buffer."""
    ratios = [
        a["send_to_all_ms"] / b["send_to_all_ms"]
        for a, b in zip(ours, theirs, strict=True)
        if a.get("send_to_all_ms") and b.get("send_to_all_ms")
    ]
    return {"ratio": summary(list(ratios)), "pairs": len(ratios)}


def fmt(s: dict[str, float] | None, unit: str = "ms", digits: int = 1) -> str:
    if s is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])} {unit}  (min {f.format(s['min'])}, max {f.format(s['max'])})"


def judged(label: str, s: dict[str, float] | None, judge: bool, target: str) -> str:
    """A figure's report line; when `judge`, with its median's verdict on TARGETS[target]."""
    return f"  {label} {fmt(s)}" + (verdict(s and s["median"], TARGETS[target]) if judge else "")


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
        burst = name == "burst"
        print(
            judged("keypress -> all text in buffer", agg["key_to_all_ms"], burst, "burst_total_ms")
        )
        print(f"  server send start -> all text  {fmt(agg['send_to_all_ms'])}")
        print(f"  server write of the response   {fmt(agg['server_send_ms'])}")
        s = agg["last_byte_to_last_write_ms"]
        print(judged("server's last byte -> last write", s, burst, "last_byte_to_last_write_ms"))
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
    theirs = res.get("kznllm_nvim")
    if theirs:
        ours = res["burst"]
        print(
            f"(c) side by side, {res['tokens']} tokens: kznllm-py vs kznllm.nvim ({theirs['dir']})"
        )
        print(f"    [{ours['runs']} runs each, interleaved; median (min, max)]")
        for key, what, unit in (
            ("send_to_all_ms", "server send start -> all text", "ms"),
            ("last_byte_to_last_write_ms", "server's last byte -> last write", "ms"),
            ("send_to_first_ms", "server sent 1st -> in buffer", "ms"),
            ("buffer_writes", "buffer writes", ""),
            ("nvim_cpu_ms", "Neovim CPU time per run", "ms"),
        ):
            digits = 0 if unit == "" else 1
            print(f"  {what:33s} ours   {fmt(ours[key], unit, digits)}")
            print(f"  {'':33s} theirs {fmt(theirs[key], unit, digits)}")
        r = res["side_by_side"]["ratio"]
        if r:
            print(
                f"  burst time ratio, ours/theirs    {r['median']:.2f}x  (min {r['min']:.2f}, "
                f"max {r['max']:.2f}; per pair of runs)"
                + verdict(r["median"], TARGETS["burst_ratio"])
            )
        print(
            f"  byte-exact                       ours {ours['exact_runs']}/{ours['runs']}, "
            f"theirs {theirs['exact_runs']}/{theirs['runs']}"
        )
        p = theirs.get("ping_ms")
        if p:
            print(
                f"  theirs: 2nd client nvim_eval('1') p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms"
            )
        print()
    b = res["burst"]
    st = res.get("stages")
    print("(e) where the burst's time goes, ours  [median (min, max)]")
    print(f"  in the editor ({b['runs']} runs above):")
    rows = [
        (
            "server's last byte -> last write starts (host + RPC)",
            b["last_byte_to_last_write_start_ms"],
        ),
        ("the last write in Lua", b["last_write_lua_ms"]),
    ]
    for what, value in rows:
        print(f"    {what:53s} {fmt(value, 'ms', 2)}")
    if st:
        print(f"  the host's stages, in this process ({st['runs']} runs; CPU time of each):")
        for key, what in (
            ("reads_ms", "transport: request + reads (httpx/aiohttp)"),
            ("sse_ms", "SSE decoding (sse.py)"),
            ("parse_ms", "provider parser (openai feed_into)"),
            ("filter_ms", "answer filter (think, fences, keys, cap)"),
            ("pack_ms", "msgpack of the write's notification"),
            ("generation_cpu_ms", "the whole generation (Generation.run)"),
        ):
            print(f"    {what:53s} {fmt(st[key], 'ms', 2)}")
        what = "server's last byte -> last flush (coalescer)"
        print(f"    {what:53s} {fmt(st['last_byte_to_flush_ms'], 'ms', 2)}")
        what = "flushes per burst"
        print(f"    {what:53s} {fmt(st['flushes'], '', 0)}  (byte-exact: {st['exact']})")
    print()
    roots = res.get("roots")
    if roots:
        print("(d) A/B: the burst in each tree, runs interleaved  [median (min, max)]")
        for root, agg in roots.items():
            print(f"  {root}{'  (this tree)' if root == str(REPO) else ''}")
            print(f"    server send start -> all text    {fmt(agg['send_to_all_ms'])}")
            print(f"    server's last byte -> last write {fmt(agg['last_byte_to_last_write_ms'])}")
            print(f"    Python host CPU time per run     {fmt(agg['host_cpu_ms'])}")
            print(f"    byte-exact                       {agg['exact_runs']}/{agg['runs']} runs")
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
    ap.add_argument(
        "--kznllm-nvim",
        type=Path,
        metavar="DIR",
        help="a work tree of chottolabs/kznllm.nvim: run the burst there too, side by side",
    )
    ap.add_argument(
        "--fidget-nvim",
        type=Path,
        metavar="DIR",
        help="a work tree of j-hui/fidget.nvim (kznllm.nvim requires it; "
        "default: DIR/../fidget.nvim)",
    )
    ap.add_argument(
        "--no-history",
        action="store_true",
        help="history off in every tree (what recording the fill adds to the burst)",
    )
    ap.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="another tree of this plugin (e.g. main's): its burst runs interleaved with "
        "this tree's, for an A/B in one run (repeatable)",
    )
    ap.add_argument(
        "--stage-runs",
        type=int,
        default=15,
        help="runs of the host's stages in this process, (e) (default 15; 0: none)",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    ap.add_argument("--raw", action="store_true", help="with --json: include every run")
    args = ap.parse_args(argv)

    theirs_dirs = None
    if args.kznllm_nvim is not None:
        plugin = args.kznllm_nvim.resolve()
        fidget = (args.fidget_nvim or plugin.parent / "fidget.nvim").resolve()
        missing = [
            what
            for what, ok in (
                (
                    f"{plugin}/lua/kznllm/buffer.lua (kznllm.nvim)",
                    (plugin / "lua/kznllm/buffer.lua").is_file(),
                ),
                (
                    f"{fidget}/lua/fidget/progress.lua (fidget.nvim, --fidget-nvim)",
                    (fidget / "lua/fidget/progress.lua").is_file(),
                ),
                ("curl on PATH (kznllm.nvim streams through it)", shutil.which("curl") is not None),
            )
            if not ok
        ]
        if missing:
            print("kznllm.nvim's side cannot run; missing: " + "; ".join(missing), file=sys.stderr)
            return 2
        theirs_dirs = (plugin, fidget)

    wall0 = time.monotonic()
    server = BenchServer()
    tmp = Path(tempfile.mkdtemp(prefix="kznbench-"))
    child = BenchChild(tmp, history=not args.no_history)
    pinger: Pinger | None = None
    theirs: KznllmNvimChild | None = None
    others: list[BenchChild] = []
    their_pinger: Pinger | None = None
    try:
        if theirs_dirs is not None:
            theirs = KznllmNvimChild(tmp, *theirs_dirs, server.base_url)
        for i, root in enumerate(args.root):
            other_tmp = tmp / f"root{i}"
            other_tmp.mkdir()
            others.append(BenchChild(other_tmp, root.resolve(), history=not args.no_history))
            others[-1].use_server(server.base_url)
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

        their_burst: list[dict[str, Any]] = []
        if theirs is not None:
            run_scenario(theirs, server, burst_toks)  # warm-up, as ours had
            their_pinger = None if args.no_ping else Pinger(theirs.socket_path)
        other_runs: list[list[dict[str, Any]]] = [[] for _ in others]
        for other in others:
            run_scenario(other, server, burst_toks)  # cold
            run_scenario(other, server, burst_toks)  # warm-up
        burst = []
        for _ in range(args.runs):  # interleaved: each run of ours next to one of theirs
            burst.append(
                run_scenario(child, server, burst_toks, pinger=None if args.no_ping else pinger)
            )
            if theirs is not None:
                their_burst.append(run_scenario(theirs, server, burst_toks, pinger=their_pinger))
            for other, runs in zip(others, other_runs, strict=True):
                runs.append(run_scenario(other, server, burst_toks))
        paced_toks = tokens(args.paced_tokens)
        paced = [
            run_scenario(child, server, paced_toks, gap=args.gap_ms / 1000)
            for _ in range(args.paced_runs)
        ]
        res["burst"] = aggregate(burst)
        res["roots"] = {
            str(other.root): aggregate(runs) for other, runs in zip(others, other_runs, strict=True)
        }
        if others:
            res["roots"][str(REPO)] = aggregate(
                [{k: v for k, v in r.items() if k != "ping_ns"} for r in burst]
            )
        if theirs is not None:
            res["kznllm_nvim"] = aggregate(their_burst)
            res["kznllm_nvim"]["dir"] = str(theirs_dirs[0]) if theirs_dirs else None
            res["side_by_side"] = side_by_side(burst, their_burst)
        res["paced"] = aggregate(paced)
        if args.stage_runs:
            res["stages"] = host_stages(server, burst_toks, args.stage_runs)
        res["host_rss_kb"] = proc_status(res["host_pid"]) if res["host_pid"] else None
        res["wall_s"] = time.monotonic() - wall0
        if args.json:
            cold = {k: v for k, v in res["cold"].items() if k != "token_latency_ms"}
            res["cold"] = cold
            if args.raw:
                res["burst_runs"] = [{k: v for k, v in r.items() if k != "ping_ns"} for r in burst]
                res["paced_runs"] = paced
                res["roots_runs"] = {
                    str(o.root): runs for o, runs in zip(others, other_runs, strict=True)
                }
            res["targets"] = TARGETS
            print(json.dumps(res, indent=2))
        else:
            print_report(res)
        ok = res["burst"]["exact"] and res["paced"]["exact"] and res["cold"]["exact"]
        return 0 if ok else 1
    finally:
        if pinger:
            pinger.close()
        if their_pinger:
            their_pinger.close()
        if theirs is not None:
            theirs.close()
        for other in others:
            other.close()
        child.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
