"""The network as an attacker or a broken middlebox shapes it, through `kznllm fill` (a
subprocess, so that its peak RSS is its own: os.wait4) and through Generation: every
case ends the request with one clear message, in time, with the process small.
Also TLS: an untrusted certificate says so, SSL_CERT_FILE trusts a private CA."""

from __future__ import annotations

import functools
import gzip
import itertools
import os
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
import trustme

from kznllm_py.prompt.presets import preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import Generation
from tests.servers import LoopbackServer, Reply, http_response, openai_events

KEY_VAR = "KZN_TEST_NET_KEY"
RSS_LIMIT_MB = 100  # the CLI peaks at 42-50 MB in these cases; the attacks are 200 MB+
MB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("no_proxy")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("SSL_CERT_FILE", None)
    env.update({KEY_VAR: "sk-net-test", **extra})
    return env


# runs the CLI and, at its exit, writes its own peak RSS (VmHWM: the high-water mark of
# this process's memory, not inherited from pytest as a child's ru_maxrss is)
MEASURED = """
import atexit, os, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["KZN_TEST_PEAK"], "w").write(line.split()[1])
atexit.register(peak)
sys.argv[0] = "kznllm"
runpy.run_module("kznllm_py.cli.main", run_name="__main__")
"""


def fill_measured(
    tmp_path: Path, base_url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, float, float]:
    """Run `kznllm fill` to its end: (exit code, stderr, seconds, peak RSS in MB)."""
    args = [sys.executable, "-c", MEASURED, "fill", "--provider", "openai"]
    args += ["--model", "m", "--base-url", base_url, "--api-key", KEY_VAR, *extra, "q"]
    peak = tmp_path / "peak"
    t0 = time.perf_counter()
    res = subprocess.run(
        args,
        cwd=tmp_path,
        env={**(env or cli_env()), "KZN_TEST_PEAK": str(peak)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    elapsed = time.perf_counter() - t0
    return res.returncode, res.stderr.decode(), elapsed, int(peak.read_text()) / 1024


CLI = [sys.executable, "-m", "kznllm_py.cli.main", "fill", "--provider", "openai", "--model", "m"]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


@functools.cache
def bomb(encoding: str) -> bytes:
    """200 MB of line ends (each an empty SSE line: no event, nothing for the text cap
    to count), compressed to a few hundred KB (gzip, deflate) or a few KB (br)."""
    ends = b"\n" * (200 * MB)
    if encoding == "gzip":
        return gzip.compress(ends, 9)
    if encoding == "deflate":
        return zlib.compress(ends, 9)
    return brotli.compress(ends, quality=1)


def bomb_reply(encoding: str) -> Reply:
    head = HEAD + f"Content-Encoding: {encoding}\r\n\r\n".encode()
    return Reply(raw=head + bomb(encoding))


def endless_line() -> Iterator[bytes]:
    yield b"data: "
    yield from itertools.repeat(b"x" * MB, 200)  # 200 MB, never a newline


ATTACKS = {
    # name: (the reply (made when the test runs), the error text, extra CLI options)
    "negative-chunk-size": (
        lambda: Reply(raw=HEAD + b"Transfer-Encoding: chunked\r\n\r\n-6\r\n" + b"x" * 4096),
        "{host} sent a malformed HTTP response: invalid character in chunk size",
        (),
    ),
    "200MB-line": (
        lambda: Reply(chunks=endless_line()),
        "a line of the stream passed 8 MB without an end; stopped",
        (),
    ),
    "gzip-bomb": (
        lambda: bomb_reply("gzip"),
        "{host} sent more than 64 MB of response body (the limit grows with max_response_bytes); "
        "stopped",
        (),
    ),
    "deflate-bomb": (
        lambda: bomb_reply("deflate"),
        "{host} sent more than 64 MB of response body (the limit grows with max_response_bytes); "
        "stopped",
        (),
    ),
    "brotli-bomb": (
        lambda: bomb_reply("br"),
        "{host} sent more than 64 MB of response body (the limit grows with max_response_bytes); "
        "stopped",
        (),
    ),
    "raw-flood": (  # comments only: nothing for the text cap to count
        lambda: Reply(chunks=itertools.repeat(b": " + b"k" * 65536 + b"\n", 2000)),
        "{host} sent more than 16 MB of response body (the limit grows with max_response_bytes); "
        "stopped",
        ("--max-response-bytes", "65536"),
    ),
    "trickled-headers": (
        lambda: Reply(raw_chunks=[bytes([b]) for b in http_response(200, b"x")], gap=0.1),
        "{host} sent no complete response head within 1 s (stalled); the limit is the stall "
        "timeout option",
        ("--stall-timeout", "1"),
    ),
    "endless-103": (
        lambda: Reply(raw_chunks=itertools.repeat(b"HTTP/1.1 103 Early Hints\r\n\r\n"), gap=0.01),
        "{host} sent no complete response head within 1 s (stalled); the limit is the stall "
        "timeout option",
        ("--stall-timeout", "1"),
    ),
    "comments-only": (
        lambda: Reply(chunks=itertools.repeat(b": keep-alive\n\n"), gap=0.05),
        "{host} did not finish the answer within 1.5 s; the limit is the total timeout option",
        ("--total-timeout", "1.5"),
    ),
    # a comment every 0.5 s keeps the stall timeout (1 s) from ever firing
    "keep-alive-before-any-token": (
        lambda: Reply(chunks=itertools.repeat(b": keep-alive\n\n"), gap=0.5),
        "{host} sent no token within 2 s (nothing, or only keep-alive comments or empty "
        "events); the limit is the first_token timeout option",
        ("--stall-timeout", "1", "--first-token-timeout", "2"),
    ),
    "keep-alive-after-tokens": (
        lambda: Reply(
            chunks=itertools.chain(
                openai_events(["kept"], done=False)[:2], itertools.repeat(b": keep-alive\n\n")
            ),
            gap=0.5,
        ),
        "{host} did not finish the answer within 3 s; the limit is the total timeout option",
        ("--stall-timeout", "1", "--first-token-timeout", "2", "--total-timeout", "3"),
    ),
}


@pytest.mark.parametrize("case", list(ATTACKS))
def test_a_hostile_response_ends_the_request_in_time_and_small(case, tmp_path):
    reply, says, extra = ATTACKS[case]
    with LoopbackServer(default=reply()) as server:
        code, stderr, elapsed, rss_mb = fill_measured(tmp_path, server.base_url, *extra)
    assert code == 1, stderr
    assert stderr == "kznllm: " + says.format(host=f"127.0.0.1:{server.port}") + "\n"
    assert elapsed < 20, f"{case}: {elapsed:.1f} s"
    assert rss_mb < RSS_LIMIT_MB, f"{case}: peak RSS {rss_mb:.0f} MB"


def test_a_compressed_answer_within_the_caps_is_decoded(tmp_path):
    body = b"".join(openai_events(["zip", "ped ✓"]))
    for encoding, data in [
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", zlib.compress(body)[2:-4]),  # raw deflate, as some servers send it
        ("br", brotli.compress(body)),
        ("gzip, br", brotli.compress(gzip.compress(body))),
    ]:
        head = HEAD + f"Content-Encoding: {encoding}\r\n".encode()
        with LoopbackServer(default=Reply(raw=head + b"\r\n" + data)) as server:
            res = subprocess.run(
                [*CLI, "--base-url", server.base_url, "--api-key", KEY_VAR, "q"],
                capture_output=True,
                env=cli_env(),
                cwd=tmp_path,
                timeout=30,
            )
        assert (res.returncode, res.stdout.decode(), res.stderr) == (0, "zipped ✓", b""), encoding
        assert "gzip" in server.requests[0].headers["accept-encoding"]


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[LoopbackServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with LoopbackServer(tls=ctx) as server:
        yield server


def preset(base_url: str):
    return preset_from_dict(
        {"id": "t", "provider": "openai", "model": "m", "base_url": base_url, "api_key": False}
    )


async def answer(base_url: str) -> tuple[str, str | None, str]:
    got: list[str] = []
    async with new_client() as client:
        out = await Generation(
            client, preset(base_url), FillContext(mode="yap", query="q"), Timeouts(5, 5)
        ).run(got.append)
    return out.status, out.error, "".join(got)


async def test_an_untrusted_certificate_says_verification_failed_and_how_to_fix_it(
    tls_server, monkeypatch
):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    status, error, text = await answer(tls_server.base_url)
    assert (status, text) == ("error", "")
    assert error == (
        f"could not connect to 127.0.0.1:{tls_server.port}: certificate verification failed "
        "(unable to get local issuer certificate); to trust a private CA, set "
        "SSL_CERT_FILE to its PEM file"
    )


async def test_ssl_cert_file_trusts_a_private_ca(tls_server, ca, tmp_path, monkeypatch):
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    tls_server.queue(Reply(chunks=openai_events(["over ", "TLS"])))
    assert await answer(tls_server.base_url) == ("ok", None, "over TLS")


# -- the timeouts as setup() gives them ------------------------------------------------


def test_the_timeouts_come_with_the_settings_and_are_validated_there():
    from kznllm_py import settings
    from kznllm_py.fill import job as payload

    base = {"id": 1, "mode": "yap", "query": "q"}
    assert payload.parse(base).timeouts == Timeouts()  # 10, 60, 600, 5, 120
    given = {"connect": 1, "stall": 2, "total": 30, "reused": 0.5, "first_token": 7}
    s = settings.from_config({"timeouts": given})
    assert payload.parse(base, s).timeouts == Timeouts(1, 2, 30, 0.5, 7)
    s = settings.from_config({"timeouts": {"total": False, "first_token": False}})
    assert payload.parse(base, s).timeouts.total is None
    assert payload.parse(base, s).timeouts.first_token is None
    # a bad one is said once, at configure, and the defaults stand
    s = settings.from_config({"timeouts": {"reused": "soon"}})
    assert payload.parse(base, s).timeouts == Timeouts()
    [problem] = s.problems
    assert problem.startswith("setup({ timeouts }): timeouts: connect, stall, total, reused and")
    assert problem.endswith("; the default is used")


# -- the same in the editor: the host stays small and the buffer as it was ------------------


def test_a_compression_bomb_in_the_editor_fails_one_fill_and_the_host_stays_small(tmp_path):
    from tests.nvim_child import Child

    child = Child(tmp_path, env={"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": ""})
    try:
        with LoopbackServer(default=bomb_reply("gzip")) as server:
            child.set_lines(["keep me"])
            child.use_server(server.base_url)
            t0 = time.perf_counter()
            child.nvim.command("KznFill q")
            done = child.wait_done(timeout=60)[0]
            elapsed = time.perf_counter() - t0
        assert done["status"] == "error"
        assert "sent more than 64 MB of response body" in done["error"]
        assert child.lines() == ["keep me"]
        assert elapsed < 20, elapsed
        pid = child.lua("return vim.fn.jobpid(require('kznllm.host').chan)")
        status = Path(f"/proc/{pid}/status").read_text()
        hwm_mb = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
        assert hwm_mb / 1024 < RSS_LIMIT_MB, f"host peak RSS {hwm_mb / 1024:.0f} MB"
    finally:
        child.close()
