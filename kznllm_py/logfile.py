"""The host's log file: `stdpath('log')/kznllm.log`, created 0600, rotated (1 MiB, three
old files kept), level from setup({ log = { level = ... } }). Every record passes
through `secrets.redact()` when it is written, so a key that reached a message by any
path is scrubbed (a second net: the callers log no key to begin with).

    log = logfile.configure("/home/u/.local/state/nvim", "debug")
    log.info("fill %d: %s", job_id, what)

At level "debug" the request as sent is logged (URL, headers with keys redacted,
body); at "info" one line per request and its outcome; "warn" and "error" only
problems; "off" writes nothing and creates no file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from kznllm_py import secrets
from kznllm_py.errors import ConfigError

LOG_NAME = "kznllm.log"
MAX_BYTES = 1024 * 1024
BACKUPS = 3
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
DEFAULT_LEVEL = "info"

logger = logging.getLogger("kznllm")
logger.propagate = False  # never into pynvim's or the root logger's handlers
logger.setLevel(LEVELS["off"])


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose files are created 0600 (the rotated ones too)."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.baseFilename, 0o600)  # an older file made with a wider mode
        return os.fdopen(fd, self.mode.replace("w", "a"), encoding=self.encoding)


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return secrets.redact(super().format(record))


def parse_level(value: object) -> int:
    if value is None:
        return LEVELS[DEFAULT_LEVEL]
    if isinstance(value, str) and value.lower() in LEVELS:
        return LEVELS[value.lower()]
    raise ConfigError(f"log.level must be one of {', '.join(LEVELS)}, not {value!r}")


def configure(log_dir: str | os.PathLike[str] | None, level: object = None) -> logging.Logger:
    """Point the `kznllm` logger at `log_dir`/kznllm.log at `level`. Called again, it
    only changes the level (and the file, if the directory changed)."""
    lvl = parse_level(level)
    logger.setLevel(lvl)
    if lvl > logging.CRITICAL or not log_dir:
        return logger
    path = Path(log_dir) / LOG_NAME
    for h in list(logger.handlers):
        if isinstance(h, _PrivateRotatingHandler) and h.baseFilename == str(path.absolute()):
            return logger
        logger.removeHandler(h)
        h.close()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = _PrivateRotatingHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8", delay=True
    )
    handler.setFormatter(
        _Redacting("%(asctime)s %(levelname)s [%(process)d] %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    logger.addHandler(handler)
    return logger
