from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
