from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kznllm_py.stream.client import new_client
from tests.nvim_child import Child
from tests.servers import LoopbackServer

# modules whose tests take seconds each: a fresh virtualenv, long property runs
SLOW_MODULES = frozenset({"test_install_path", "test_fuzz"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by what a test uses, so none can be forgotten: `nvim` for a test that
    starts a child Neovim (the fixture, or a module that builds `Child`s itself), `slow`
    for the modules above. `pytest -m "not slow"` is the quick run; CI runs all."""
    for item in items:
        module = getattr(item, "module", None)
        if "nvim" in getattr(item, "fixturenames", ()) or getattr(module, "Child", None):
            item.add_marker(pytest.mark.nvim)
        if module is not None and module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _own_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kznllm fill` records in Neovim's data dir: each test (and every CLI it runs,
    which inherits the environment) gets its own, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.delenv("NVIM_APPNAME", raising=False)


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


@pytest.fixture(scope="module")
def loopback() -> Iterator[LoopbackServer]:
    """One loopback server for all the tests of a module."""
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
