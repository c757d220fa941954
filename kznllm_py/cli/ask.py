"""`kznllm fill` and `kznllm render`: a request made from the arguments
(cli/job_args.py), its answer streamed to stdout as the editor would land it in --file
(cli/landing.py: shaped, between the range's blank edge lines; `--no-shape`: byte for
byte as it came) and recorded in the history as it came (`fill`), or the exact request
printed and nothing sent (`render`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Any

from kznllm_py import secrets
from kznllm_py.cli import history as cli_history
from kznllm_py.cli import job_args, landing, terminal
from kznllm_py.cli.terminal import err
from kznllm_py.errors import KznError
from kznllm_py.fill import job as payload
from kznllm_py.fill import shaping
from kznllm_py.history.recorder import before_delivery, record
from kznllm_py.messages import end_message
from kznllm_py.stream import demo_server
from kznllm_py.stream.client import new_client
from kznllm_py.stream.events import Retry, Text
from kznllm_py.stream.generation import Generation, RetryPolicy
from kznllm_py.stream.prepare import prepare_with_prompt


async def render(args: argparse.Namespace) -> int:
    try:
        job = job_args.job_from_args(job_args.continued(args))
        if job.preset.demo:
            # the demo server takes a free port when a fill starts: shown as such, not as
            # the port of a server started and stopped only for this
            job = replace(job, preset=replace(job.preset, demo=False, base_url=DEMO_URL_SHOWN))
        asked = await job_args.prompt_from_args(args, job)
        _, request, _ = await prepare_with_prompt(
            job.preset, job.ctx, search_dirs=job.search_dirs, prompt=asked
        )
        if args.json:
            text = json.dumps(
                {
                    "method": request.method,
                    "url": secrets.redact_url(request.url),
                    "headers": request.redacted_headers(),
                    "body": request.body,
                },
                indent=2,
                ensure_ascii=False,
            )
            text += "\n"
        else:
            text = payload.debug_text(job, request)
    except (KznError, OSError) as exc:
        err(str(exc))
        return 1
    finally:
        await demo_server.shutdown()
    if not args.raw:  # the buffer's, the project's text: escaped for the terminal
        text = terminal.json_text(text) if args.json else terminal.text(text)
    sys.stdout.write(text)
    return 0


async def fill(args: argparse.Namespace) -> int:
    try:
        job, land = job_args.job_and_landing(job_args.continued(args))
        asked = await job_args.prompt_from_args(args, job)
    except (KznError, OSError) as exc:
        err(f"{exc}")
        return 2
    preset, ctx = job.preset, job.ctx
    out = sys.stdout.buffer
    reader_gone = False
    started = False  # the answer's first text went (after the range's blank top lines)
    last = ""  # the answer's last character so far
    # at a terminal the answer's control characters are shown escaped (a pipe: bytes)
    screen = terminal.AnswerText() if _a_terminal(out) else None

    def write(text: str) -> bool:
        """`text` to stdout; False when the reader went away (`kznllm fill ... | head`)."""
        nonlocal reader_gone, last
        try:
            out.write(text.encode("utf-8"))
            out.flush()
        except BrokenPipeError:
            reader_gone = True
            return False
        last = text[-1:] or last
        return True

    dos = landing.Crlf() if land.crlf else None  # a DOS file's line breaks

    def emit(text: str) -> None:
        """The answer's text, as it lands (shaped): escaped at a terminal, to stdout."""
        nonlocal started
        if reader_gone:
            return  # the held-back rest of a stopped answer
        if not started:
            started, text = True, land.top + text
        text = dos.push(text) if dos is not None else text
        shown = screen.feed(text) if screen else text
        if shown:
            write(shown)

    pipe = shaping.Pipe(emit, land.shape, lines=land.lines)

    async with new_client() as client:
        generation = Generation(
            client,
            preset,
            ctx,
            job.timeouts,
            search_dirs=job.search_dirs,
            retry=RetryPolicy(tries=max(1, args.retries)),
            max_response_bytes=args.max_response_bytes,
            prompt=asked,
        )
        parent = getattr(args, "parent_id", None)
        with cli_history.recording(job, err, enabled=not args.no_history, parent_id=parent) as rec:
            async with generation.events() as events:
                async for event in events:
                    if rec is not None and (gate := before_delivery(rec, event)) is not None:
                        await events.hold(gate)  # the first text waits for the entry
                    match event:
                        case Text(text):
                            if reader_gone:
                                continue  # the held-back rest of a stopped answer
                            pipe.push(text)
                            if reader_gone:
                                events.stop()  # the answer ends, cancelled
                                continue  # history keeps what reached stdout
                        case Retry(_, wait, why):
                            err(f"{why}; trying again in {wait:g} s")
                    if rec is not None:
                        record(rec, event)
            outcome = events.outcome()
        pipe.close()  # what the shaping held, whatever the outcome (as the editor's)
        if outcome.status == "ok" and not started:
            emit("")  # an empty answer: the range's blank lines stay all the same
        if dos is not None and not reader_gone and (cr := dos.finish()):
            write(screen.feed(cr) if screen else cr)
        if screen and not reader_gone and (held := screen.flush()):
            write(held)
        whole_lines = ctx.mode == "replace" and ctx.selection.endswith("\n")
        if (whole_lines or _a_terminal(out)) and not reader_gone and last not in ("", "\n"):
            # whole lines were replaced: they end with a line break, as in the buffer; at
            # a terminal, the shell's prompt starts on a line of its own
            write("\r\n" if land.crlf else "\n")
        if started and land.bottom and not reader_gone:
            # the range's blank lines below the answer, left in place
            write(landing.Crlf().push(land.bottom) if land.crlf else land.bottom)
    await demo_server.shutdown()
    if reader_gone:
        # quiet, like other tools cut short by a pipe; and no second BrokenPipeError
        # when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a tool killed by the pipe
    text, level = end_message(outcome.status, outcome.error, outcome.to_dict())
    if level != "info":  # the editor's words; a plain success says nothing here
        err(text)
    return {"error": 1, "cancelled": 130}.get(outcome.status, 0)


def _a_terminal(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (OSError, ValueError):
        return False


DEMO_URL_SHOWN = "http://127.0.0.1:<port>/v1"  # `render` of the demo preset
