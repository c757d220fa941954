from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kznllm_py.client import new_client
from tests.nvim_child import Child
from tests.servers import LoopbackServer


@pytest.fixture
def nvim(tmp_path: Path) -> Iterator[Child]:
    child = Child(tmp_path)
    try:
        yield child
    finally:
        child.close()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """new_client() trusts the environment: a proxy there must not swallow loopback calls."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


@pytest.fixture
async def client(no_proxy: None) -> AsyncIterator[httpx.AsyncClient]:
    async with new_client() as c:
        yield c
