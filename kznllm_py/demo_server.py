"""The offline demo model: a tiny OpenAI-compatible server on loopback.

It is clearly a demo, never a silent fallback: its answers say so. It streams a
deterministic answer built from the request at a realistic rate (default 60 tokens/s):
in replace mode (a `<selection>` in the prompt) it returns the selected code under a
comment naming the request; otherwise a short explanation of what it received.

`kznllm demo-server` runs it in the foreground; the plugin and the CLI start it
in-process, on an ephemeral port, when the `demo` preset is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

from kznllm_py.providers.jsonfast import dumps, loads_body

DEFAULT_RATE = 60.0  # tokens per second
MODEL = "kznllm-demo"

_COMMENT = {
    "python": "#",
    "sh": "#",
    "bash": "#",
    "ruby": "#",
    "yaml": "#",
    "toml": "#",
    "lua": "--",
    "sql": "--",
    "haskell": "--",
    "vim": '"',
}


def _last_user_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            return content if isinstance(content, str) else str(content)
    return str(body.get("prompt") or "")


def answer_for(body: dict[str, Any]) -> str:
    """The demo's deterministic answer to a chat-completions request body."""
    user = _last_user_text(body)
    system = " ".join(
        str(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "system"
    )
    query = user.rsplit("\n\n", 1)[-1].strip() or "(empty query)"
    selection = re.search(r"<selection>\n(.*?)\n</selection>", user, re.S)
    filetype = re.search(r"in a (\w+) file", system)
    if selection is not None:
        lead = _COMMENT.get(filetype.group(1) if filetype else "", "//")
        return f"{lead} kznllm demo model (offline): {query}\n{selection.group(1)}"
    return (
        f"This is the kznllm offline demo model, not a real LLM. You asked: {query!r}. "
        "A real answer streams here, token by token, at the cursor. Set OPENAI_API_KEY "
        "or ANTHROPIC_API_KEY and pick a preset with :KznPreset to talk to a real model."
    )


def tokens(text: str) -> Iterator[str]:
    """Split text into word-ish tokens whose concatenation is the text."""
    yield from re.findall(r"\s*\S+|\s+", text)


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    obj = {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + dumps(obj) + b"\n\n"


class DemoServer:
    def __init__(self, rate: float = DEFAULT_RATE) -> None:
        self.rate = rate
        self._server: asyncio.Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> DemoServer:
        self.loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # idle keep-alive connections too: since Python 3.12, wait_closed() waits
            # for every connection, and a client may keep one open for ever
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    def abandon(self) -> None:
        """Stop listening without awaiting: for a server whose loop is not the running one
        (closed, or gone with its `asyncio.run`)."""
        if self._server is not None:
            # its loop may be in a state we cannot fix: then the port is lost
            with contextlib.suppress(Exception):
                self._server.close()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server is shutting down; this connection ends with it
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = [*lines[0].split(" "), "", ""][:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_bytes = await reader.readexactly(int(headers.get("content-length") or 0))
        if method != "POST" or not path.endswith("/chat/completions"):
            msg = dumps({"error": {"message": f"demo server: no route {method} {path}"}})
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(msg), msg)
            )
            await writer.drain()
            return True
        body = loads_body(body_bytes) or {}
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        delay = 1.0 / self.rate if self.rate > 0 else 0.0
        parts = [_chunk(tok) for tok in tokens(answer_for(body))]
        parts.append(_chunk(None, "stop"))
        parts.append(b"data: [DONE]\n\n")
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


_running: DemoServer | None = None


async def ensure_running(rate: float = DEFAULT_RATE) -> DemoServer:
    """The process's in-process demo server, started on first use in the running loop.

    A server left behind by another (often closed) event loop would still accept
    connections at the kernel level and never answer them: it is closed and replaced."""
    global _running
    loop = asyncio.get_running_loop()
    if _running is not None and _running.loop is not loop:
        _running.abandon()
        _running = None
    if _running is None:
        _running = await DemoServer(rate).start()
    return _running


async def shutdown() -> None:
    global _running
    if _running is not None:
        server, _running = _running, None
        if server.loop is asyncio.get_running_loop():
            await server.close()
        else:
            server.abandon()
