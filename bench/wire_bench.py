"""What crosses between the editor and the Python host for one fill, with a 10-preset
setup(): the bytes Lua sends (msgpack, as `vim.rpcnotify` encodes them) and the kinds of
calls the host makes into Lua.

    .venv/bin/python bench/wire_bench.py [--root DIR] [--fills 3] [--json]

`--root` is a checkout of the plugin to measure (default: this one), so an older tree
can be measured with the same script (`git archive <commit> | tar -x -C DIR`). The
editor side wraps `vim.rpcnotify`; the host side is traced by a `sitecustomize` that
wraps pynvim's `Nvim.exec_lua` in the host process (only when KZN_TRACE is set).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.nvim_child import SPY_SENT, embed  # noqa: E402
from tests.servers import LoopbackServer, Reply, openai_events  # noqa: E402

TRACER = """
import json, os
if os.environ.get("KZN_TRACE"):
    import pynvim.api.nvim as _m
    _orig = _m.Nvim.exec_lua
    def _exec_lua(self, code, *args, **kw):
        with open(os.environ["KZN_TRACE"], "a") as f:
            f.write(json.dumps(code) + "\\n")
        return _orig(self, code, *args, **kw)
    _m.Nvim.exec_lua = _exec_lua
"""


def presets(base_url: str, n: int = 10) -> list[dict[str, Any]]:
    return [
        {
            "id": f"p{i}",
            "description": f"preset number {i} on the loopback server",
            "provider": "openai",
            "model": f"model-{i}",
            "base_url": base_url,
            "api_key": False,
            "params": {"temperature": 0.2, "max_tokens": 512},
        }
        for i in range(n)
    ]


def kind(code: str) -> str:
    m = re.search(r"require\('kznllm\.(\w+)'\)\.(\w+)", code)
    if m:
        return f"{m[1]}.{m[2]}"
    return "vim.notify" if "vim.notify" in code else code[:40]


def run(root: Path, fills: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="kzn-wire-"))
    trace = tmp / "trace.jsonl"
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TRACER)
    nvim = embed(tmp, [root], env={"KZN_TRACE": str(trace), "PYTHONPATH": str(site)})
    try:
        with LoopbackServer() as server:
            nvim.exec_lua(
                "require('kznllm').setup({ python = ..., presets = select(2, ...) })"
                " require('kznllm').state.preset = 'p3'",
                sys.executable,
                presets(server.base_url),
            )
            nvim.exec_lua(SPY_SENT)
            nvim.exec_lua(
                "_G.kzn_done = 0 vim.api.nvim_create_autocmd('User', { pattern = 'KznllmDone',"
                " callback = function() _G.kzn_done = _G.kzn_done + 1 end })"
            )
            per_fill: list[dict[str, Any]] = []
            for i in range(fills):
                server.queue(Reply(chunks=openai_events(["hello", " world"])))
                sent_before = len(nvim.exec_lua("return _G.kzn_sent"))
                lines_before = len(trace.read_text().splitlines()) if trace.exists() else 0
                nvim.command("KznFill q")
                deadline = time.monotonic() + 30
                while nvim.exec_lua("return _G.kzn_done") < i + 1:
                    if time.monotonic() > deadline:
                        raise SystemExit("timed out waiting for a fill")
                    nvim.api.get_mode()
                sent = nvim.exec_lua("return _G.kzn_sent")[sent_before:]
                calls = [kind(json.loads(x)) for x in trace.read_text().splitlines()]
                per_fill.append(
                    {
                        "sent": [(op, b) for op, b, _ in sent],
                        "fill_bytes": sum(b for op, b, _ in sent if op == "fill"),
                        "all_bytes": sum(b for _, b, _ in sent),
                        "host_calls": Counter(calls[lines_before:]),
                    }
                )
    finally:
        with contextlib.suppress(Exception):
            nvim.close()
    warm = per_fill[-1]  # the host is up: no start, no configure
    return {
        "root": str(root),
        "fill_message_bytes": warm["fill_bytes"],
        "bytes_sent_during_fill": warm["all_bytes"],
        "first_fill": {
            "ops": [op for op, _ in per_fill[0]["sent"]],
            "bytes": per_fill[0]["all_bytes"],
        },
        "host_call_kinds_per_fill": sorted(warm["host_calls"]),
        "host_calls_per_fill": dict(warm["host_calls"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO)
    ap.add_argument("--fills", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.root.resolve(), max(2, args.fills))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"tree: {out['root']}")
    print(f"fill message (Lua -> host): {out['fill_message_bytes']} bytes")
    print(f"all Lua -> host during a fill: {out['bytes_sent_during_fill']} bytes")
    print(f"first fill (host start): {out['first_fill']['ops']}, {out['first_fill']['bytes']} B")
    print("host -> Lua calls per fill:")
    for k, n in sorted(out["host_calls_per_fill"].items()):
        print(f"  {k:<24} x{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
