from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from kznllm_py.stream.client import new_client
from tests.alone import Turns, runs_alone, unknown
from tests.nvim_child import Child
from tests.servers import LoopbackServer

# modules whose tests take seconds each: a fresh virtualenv, long property runs
SLOW_MODULES = frozenset({"test_install_path", "test_fuzz"})
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by what a test uses, so none can be forgotten: `nvim` for a test that
    starts a child Neovim (the fixture, or a module that builds `Child`s itself), `slow`
    for the modules above. `pytest -m "not slow"` is the quick run; CI runs all. `alone`
    for the tests tests/alone.py names (no other test runs meanwhile under xdist)."""
    collected: dict[str, set[str]] = {}
    for item in items:
        module = getattr(item, "module", None)
        if "nvim" in getattr(item, "fixturenames", ()) or getattr(module, "Child", None):
            item.add_marker(pytest.mark.nvim)
        if module is not None and module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        rel = item.path.relative_to(TESTS).as_posix()
        function = getattr(item, "originalname", item.name)
        collected.setdefault(rel, set()).add(function)
        if runs_alone(rel, function):
            item.add_marker(pytest.mark.alone)
    if stale := unknown(collected):
        raise pytest.UsageError(f"tests/alone.py names tests that do not exist: {stale}")


@pytest.fixture(scope="session")
def _turns(tmp_path_factory: pytest.TempPathFactory) -> Turns | None:
    """Under pytest-xdist, the run's turns (each worker's temp dir is in the run's)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return Turns(tmp_path_factory.getbasetemp().parent)


@pytest.fixture(autouse=True)
def _turn(request: pytest.FixtureRequest, _turns: Turns | None) -> Iterator[None]:
    """Each test in its turn (tests/alone.py), from before the fixtures it asks for
    start a Neovim or a server until they are gone."""
    if _turns is None:
        yield
        return
    with _turns.take(alone=request.node.get_closest_marker("alone") is not None):
        yield


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
