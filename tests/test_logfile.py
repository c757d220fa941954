"""The host's log file: private (0600, rotated files too), rotated, levelled, and
scrubbed of every key the process resolved."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kznllm_py import logfile, secrets
from kznllm_py.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_logger() -> Iterator[None]:
    yield
    for h in list(logfile.logger.handlers):
        logfile.logger.removeHandler(h)
        h.close()
    logfile.logger.setLevel(logfile.LEVELS["off"])


def flush() -> None:
    for h in logfile.logger.handlers:
        h.flush()


def test_the_log_is_created_0600_and_scrubs_keys(tmp_path: Path):
    secrets.remember("sk-log-canary-1234567")
    log = logfile.configure(tmp_path / "state", "info")
    log.info("the provider said: bad key sk-log-canary-1234567")
    log.debug("not at info")
    flush()
    path = tmp_path / "state" / "kznllm.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "bad key <redacted>" in text and "sk-log-canary" not in text
    assert "not at info" not in text


def test_rotation_keeps_three_old_files_all_private(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(logfile, "MAX_BYTES", 2000)
    log = logfile.configure(tmp_path, "debug")
    for i in range(400):
        log.debug("line %d %s", i, "x" * 40)
    flush()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["kznllm.log", "kznllm.log.1", "kznllm.log.2", "kznllm.log.3"]
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert p.stat().st_size <= 2100
    assert "line 399" in (tmp_path / "kznllm.log").read_text()


def test_an_existing_wider_file_is_made_private(tmp_path: Path):
    path = tmp_path / "kznllm.log"
    path.write_text("old\n")
    path.chmod(0o644)
    logfile.configure(tmp_path, "warn").warning("new")
    flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("old\n")


def test_off_writes_nothing_and_reconfiguring_changes_the_level(tmp_path: Path):
    log = logfile.configure(tmp_path, "off")
    log.error("nothing")
    assert list(tmp_path.iterdir()) == []
    log = logfile.configure(tmp_path, "error")
    log.warning("below the level")
    log.error("kept")
    logfile.configure(tmp_path, "debug")  # the same file: one handler still
    log.debug("now kept too")
    flush()
    assert len(log.handlers) == 1
    text = (tmp_path / "kznllm.log").read_text()
    assert "below the level" not in text and "kept" in text and "now kept too" in text
    assert log.getEffectiveLevel() == logging.DEBUG


def test_an_unknown_level_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"log\.level must be one of debug, info"):
        logfile.parse_level("loud")
