"""A small language server for bench/editor_bench.py's `lsp` scenario: it speaks LSP over
stdio, asks for incremental text sync, and keeps each document's text up to date with
every didChange, as a real server does. What the bench measures is Neovim's side
(its LSP client turning each buffer change into a didChange), so nothing else is done.

    python bench/lsp_server.py   (started by Neovim's vim.lsp.start)
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    if length is None:
        return None
    return json.loads(stream.read(length))


def send(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stream.flush()


def apply(text: str, change: dict[str, Any]) -> str:
    """`text` after one contentChange (positions in UTF-16 units: the bench's text is
    ASCII, so they are characters)."""
    if "range" not in change:
        return str(change["text"])
    lines = text.split("\n")
    r = change["range"]
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)

    def at(pos: dict[str, int]) -> int:
        row = min(pos["line"], len(lines))
        return min(starts[row] + pos["character"], len(text))

    return text[: at(r["start"])] + str(change["text"]) + text[at(r["end"]) :]


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    docs: dict[str, str] = {}
    while True:
        msg = read_message(stdin)
        if msg is None:
            return 0
        method = msg.get("method")
        params = msg.get("params") or {}
        if method == "initialize":
            caps = {"textDocumentSync": {"openClose": True, "change": 2}}
            send(stdout, {"jsonrpc": "2.0", "id": msg["id"], "result": {"capabilities": caps}})
        elif method == "shutdown":
            send(stdout, {"jsonrpc": "2.0", "id": msg["id"], "result": None})
        elif method == "exit":
            return 0
        elif method == "textDocument/didOpen":
            doc = params["textDocument"]
            docs[doc["uri"]] = doc["text"]
        elif method == "textDocument/didChange":
            uri = params["textDocument"]["uri"]
            text = docs.get(uri, "")
            for change in params["contentChanges"]:
                text = apply(text, change)
            docs[uri] = text
        elif "id" in msg and method is not None:  # a request we do not serve
            error = {"code": -32601, "message": f"{method} not served"}
            send(stdout, {"jsonrpc": "2.0", "id": msg["id"], "error": error})


if __name__ == "__main__":
    sys.exit(main())
