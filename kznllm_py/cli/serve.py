"""`kznllm demo-server`: the offline demo model on loopback, in the foreground."""

from __future__ import annotations

import argparse

from kznllm_py.stream import demo_server


async def demo_model(args: argparse.Namespace) -> int:
    server = await demo_server.DemoServer(args.rate).start(port=args.port)
    print(f"kznllm offline demo model (not a real LLM) at {server.base_url}", flush=True)
    print("use: --provider openai --model kznllm-demo --base-url " + server.base_url, flush=True)
    await server.serve_forever()
    return 0
