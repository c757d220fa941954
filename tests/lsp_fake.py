"""A tiny language server of the tests' own, speaking JSON-RPC over stdio, that answers
definitions the way a hostile or broken server would (real pylsp serves the honest
cases: tests/lsp_helpers.py). Every message it receives is appended to LOG as one JSON
line, so a test can wait for what the editor sent (a $/cancelRequest).

    python tests/lsp_fake.py MODE LOG [TARGET [LINE]]

MODE: `silent` (never answers a request but `initialize`), `flood` (5,000 locations
outside the project, TARGET's LINE (0-based, default 0) among them at the 1,000th),
`malformed` (junk in every shape, then TARGET's LINE), `slow` (TARGET's LINE, honestly,
but SLOW_S = 0.8 s after each request: a server still warming up).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lsp_server import read_message, send


def location(uri: str, line: int = 0) -> dict[str, Any]:
    pos = {"line": line, "character": 0}
    return {"uri": uri, "range": {"start": pos, "end": pos}}


def definition(mode: str, target: str, line: int) -> Any:
    uri = Path(target).resolve().as_uri() if target else ""
    if mode == "flood":
        far = [location(f"file:///usr/lib/far/away{i}.py", i) for i in range(5000)]
        far[1000] = location(uri, line)
        return far
    # malformed: every wrong shape a location can take, then one right one
    return [
        "junk",
        42,
        None,
        {"uri": 7, "range": {}},
        {"uri": uri, "range": {"start": {"line": -3, "character": 0}}},
        {"uri": uri, "range": {"start": {"line": 1.5, "character": 0}}},
        {"uri": uri, "range": "x"},
        {"uri": "http://example.com/x.py", "range": {"start": {"line": 0, "character": 0}}},
        {"targetUri": uri},
        location("file:///" + "a" * 100_000 + ".py"),
        location(uri, line),
    ]


SLOW_S = 0.8


def main() -> int:
    mode, log = sys.argv[1], Path(sys.argv[2])
    target = sys.argv[3] if len(sys.argv) > 3 else ""
    line = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    stdin: BinaryIO = sys.stdin.buffer
    stdout: BinaryIO = sys.stdout.buffer
    lock = threading.Lock()  # `slow` answers from timer threads

    def reply(message: dict[str, Any]) -> None:
        with lock:
            send(stdout, message)

    while True:
        msg = read_message(stdin)
        if msg is None:
            return 0
        with log.open("a") as f:
            f.write(json.dumps({k: msg.get(k) for k in ("id", "method", "params")}) + "\n")
        method = msg.get("method")
        if method == "initialize":
            caps = {
                "textDocumentSync": {"openClose": True, "change": 1},
                "definitionProvider": True,
            }
            reply({"jsonrpc": "2.0", "id": msg["id"], "result": {"capabilities": caps}})
        elif method == "shutdown":
            reply({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        elif method == "exit":
            return 0
        elif "id" in msg and mode == "silent":
            continue  # a server that never answers
        elif method == "textDocument/definition" and mode == "slow":
            found = location(Path(target).as_uri(), line)
            late = {"jsonrpc": "2.0", "id": msg["id"], "result": found}
            threading.Timer(SLOW_S, reply, (late,)).start()
        elif method == "textDocument/definition":
            result = definition(mode, target, line)
            reply({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        elif "id" in msg and method is not None:
            error = {"code": -32601, "message": f"{method} not served"}
            reply({"jsonrpc": "2.0", "id": msg["id"], "error": error})


if __name__ == "__main__":
    sys.exit(main())
