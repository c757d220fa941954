"""The offline demo model: a tiny OpenAI-compatible server on loopback.

It is clearly a demo, never a silent fallback: its answers say so. It streams a
deterministic answer built from the request at a realistic rate (default 60 tokens/s):
in replace mode (a `<selection>` in the prompt) it returns the selected code under a
comment naming the request; otherwise a short explanation of what it received.

It answers as a real server does (aiohttp's web server): `GET /v1/models` lists its
models, an unknown model or route is a 404 with an OpenAI-style error body.
`kznllm demo-server` runs it in the foreground; the plugin and the CLI start it
in-process, on an ephemeral port, when the `demo` preset is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from kznllm_py.providers.jsonfast import dumps, loads_body

DEFAULT_RATE = 60.0  # tokens per second
MODEL = "kznllm-demo"
FAST_MODEL = "kznllm-demo-fast"  # the same answers, unpaced: a burst, as a fast model sends
MODELS = (MODEL, FAST_MODEL)
MAX_BODY = 32 * 1024 * 1024  # a request body past this is refused (413)

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
        code = selection.group(1)
        # the comment at the selection's own indentation, as a good model writes it (at
        # column 0 above indented code, the replace's shaping took it for a dedented
        # answer and indented the code twice)
        first = code.lstrip("\r\n")
        indent = first[: len(first) - len(first.lstrip(" \t"))]
        return f"{indent}{lead} kznllm demo model (offline): {query}\n{code}"
    return (
        f"This is the kznllm offline demo model, not a real LLM. You asked: {query!r}. "
        "A real answer streams here, token by token, at the cursor. Set OPENAI_API_KEY "
        "or ANTHROPIC_API_KEY and pick a preset with :KznPreset to talk to a real model."
    )


def tokens(text: str) -> Iterator[str]:
    """Split text into word-ish tokens whose concatenation is the text."""
    yield from re.findall(r"\s*\S+|\s+", text)


def _chunk(content: str | None, model: str = MODEL, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    obj = {
        "id": "chatcmpl-demo",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + dumps(obj) + b"\n\n"


class DemoServer:
    """The demo model on aiohttp's server: `POST /v1/chat/completions` streams, `GET
    /v1/models` lists the models, an unknown model or route is a 404 with an OpenAI-style
    error body, as a real server answers."""

    def __init__(self, rate: float = DEFAULT_RATE) -> None:
        self.rate = rate
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> DemoServer:
        self.loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        # our own socket: abandon() can close it even when the loop that serves it is gone
        sock = socket.create_server((host, port))
        self._sock = sock
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        return self

    async def serve_forever(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()  # idle keep-alive connections end too
        self._sock = None

    def abandon(self) -> None:
        """Stop listening without awaiting: for a server whose loop is not the running one
        (closed, or gone with its `asyncio.run`)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._runner = None

    def _speed(self, model: str) -> float:
        return 0.0 if model == FAST_MODEL else self.rate

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "kznllm"} for m in MODELS]
        return _json({"object": "list", "data": data})

    async def _no_route(self, request: web.Request) -> web.Response:
        msg = f"demo server: no route {request.method} {request.path}"
        return _error(404, msg, "invalid_request_error", None)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = loads_body(await request.read())
        if not isinstance(body, dict):
            return _error(400, "the request body is not a JSON object", "invalid_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        if model not in MODELS:
            known = ", ".join(MODELS)
            msg = f"The model `{model[:100]}` does not exist (this demo server has: {known})"
            return _error(404, msg, "invalid_request_error", "model_not_found")
        resp = web.StreamResponse(headers={"Cache-Control": "no-cache"})
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        rate = self._speed(model)
        delay = 1.0 / rate if rate > 0 else 0.0
        parts = [_chunk(tok, model) for tok in tokens(answer_for(body))]
        parts.append(_chunk(None, model, "stop"))
        parts.append(b"data: [DONE]\n\n")
        try:
            for part in parts:
                await resp.write(part)
                if delay:
                    await asyncio.sleep(delay)
            await resp.write_eof()
        except ConnectionResetError:  # the client went away (cancel, Ctrl-C, `| head`)
            pass  # the end of this answer, not a traceback on the user's terminal
        return resp


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    err = {"message": message, "type": kind, "param": None, "code": code}
    return _json({"error": err}, status)


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
