"""Proxies from the environment, through a real HTTP proxy (the proxy.py package) on
loopback, with the provider on another loopback address (127.0.0.2) so that a request
that skipped the proxy would still be answered, and the proxy's own access log says
which went through it. http targets are forwarded, https ones tunnelled (CONNECT);
NO_PROXY is honoured; a dead proxy is one clear message."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kznllm_py.prompt.presets import preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.client import Timeouts, new_client
from kznllm_py.stream.generation import Generation
from tests.servers import LoopbackServer, Reply, free_port_refusing, openai_events
from tests.waiting import wait_until

PROVIDER_HOST = "127.0.0.2"  # loopback, but not one of the never-proxied names
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class Proxy:
    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "proxy.log"
        port_file = tmp / "proxy.port"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0"),
                *("--port-file", str(port_file), "--num-workers", "1", "--num-acceptors", "1"),
                *("--log-level", "i", "--log-file", str(self.log)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        port = wait_until(
            lambda: port_file.exists() and port_file.read_text().strip(), 30, "proxy.py's port"
        )
        self.url = f"http://127.0.0.1:{port}"

    def access_lines(self) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return [line for line in text.splitlines() if "access_log" in line]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[Proxy]:
    p = Proxy(tmp_path_factory.mktemp("proxy"))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    return monkeypatch


async def fill(base_url: str) -> tuple[str, str | None, str]:
    preset = preset_from_dict(
        {"id": "p", "provider": "openai", "model": "m", "base_url": base_url, "api_key": False}
    )
    got: list[str] = []
    async with new_client() as client:  # the environment is read when the client is made
        out = await Generation(
            client, preset, FillContext(mode="yap", query="q"), Timeouts(5, 5)
        ).run(got.append)
    return out.status, out.error, "".join(got)


def through_proxy(proxy: Proxy, target: str, before: int) -> bool:
    return any(target in line for line in proxy.access_lines()[before:])


@pytest.mark.parametrize("var", ["HTTP_PROXY", "ALL_PROXY"])
async def test_http_requests_go_through_the_proxy_from_the_environment(var, proxy, env):
    env.setenv(var, proxy.url)
    with LoopbackServer(Reply(chunks=openai_events(["via ", "proxy"])), host=PROVIDER_HOST) as s:
        before = len(proxy.access_lines())
        assert await fill(s.base_url) == ("ok", None, "via proxy")
        target = f"{PROVIDER_HOST}:{s.port}"
        wait_until(lambda: through_proxy(proxy, target, before), 10, "the proxy's access line")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_https_requests_are_tunnelled_through_the_proxy(proxy, env, ca, tmp_path):
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    env.setenv("SSL_CERT_FILE", str(pem))
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port_refusing()}")  # not for https
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(PROVIDER_HOST).configure_cert(tls)
    reply = Reply(chunks=openai_events(["tunnelled"]))
    with LoopbackServer(reply, host=PROVIDER_HOST, tls=tls) as s:
        before = len(proxy.access_lines())
        assert await fill(s.base_url) == ("ok", None, "tunnelled")
        target = f"{PROVIDER_HOST}:{s.port}"
        wait_until(lambda: through_proxy(proxy, target, before), 10, "the proxy's CONNECT line")


@pytest.mark.parametrize("no_proxy", [PROVIDER_HOST, f"example.com,{PROVIDER_HOST}", "*"])
async def test_no_proxy_goes_direct(no_proxy, env):
    dead = f"http://127.0.0.1:{free_port_refusing()}"
    env.setenv("HTTP_PROXY", dead)
    env.setenv("NO_PROXY", no_proxy)
    with LoopbackServer(Reply(chunks=openai_events(["direct"])), host=PROVIDER_HOST) as s:
        assert await fill(s.base_url) == ("ok", None, "direct")


async def test_a_dead_proxy_is_one_clear_message(env):
    port = free_port_refusing()
    env.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    with LoopbackServer(host=PROVIDER_HOST) as s:
        status, error, text = await fill(s.base_url)
        assert s.requests == []  # never went direct
    assert (status, text) == ("error", "")
    assert error == (
        f"could not reach {PROVIDER_HOST}:{s.port} through the proxy: connection refused"
    )


async def test_a_socks_proxy_is_refused_with_a_clear_message(env):
    env.setenv("ALL_PROXY", f"socks5://127.0.0.1:{free_port_refusing()}")
    with LoopbackServer(host=PROVIDER_HOST) as s:
        status, error, _ = await fill(s.base_url)
        assert s.requests == []
    assert status == "error"
    assert error == (
        f"could not reach {PROVIDER_HOST}:{s.port} through the proxy: "
        "socks5 proxies are not supported (an http:// one is)"
    )


async def test_loopback_by_name_is_never_proxied(env):
    env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port_refusing()}")
    with LoopbackServer(Reply(chunks=openai_events(["local"]))) as s:  # 127.0.0.1
        assert await fill(s.base_url) == ("ok", None, "local")


def test_the_proxy_env_is_read_by_the_cli_too(proxy, tmp_path):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HTTP_PROXY"] = proxy.url
    env["KZN_TEST_PROXY_KEY"] = "sk-proxy-test"
    with LoopbackServer(Reply(chunks=openai_events(["cli"])), host=PROVIDER_HOST) as s:
        before = len(proxy.access_lines())
        res = subprocess.run(
            [
                *(sys.executable, "-m", "kznllm_py.cli.main", "fill", "--provider", "openai"),
                *("--model", "m", "--base-url", s.base_url, "--api-key", "KZN_TEST_PROXY_KEY"),
                "q",
            ],
            capture_output=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert (res.returncode, res.stdout, res.stderr) == (0, b"cli", b"")
        target = f"{PROVIDER_HOST}:{s.port}"
        wait_until(lambda: through_proxy(proxy, target, before), 10, "the proxy's access line")
