"""The history's database file and its life (stdlib sqlite3, no Neovim): where it lives,
how it is opened, and what is done when it cannot be read. What is in its rows is
history/store.py's.

Every call opens its own connection (or, `keep_open`, one per thread kept between
calls), so any thread may run one; two processes (two Neovims, the CLI) may write at
once: WAL journal, a busy timeout and a bounded retry when the database is locked.

The file is created 0600 (SQLite gives its -wal and -shm files the same mode) in a
directory created 0700. A database that cannot be read (not a database, corrupt) is
renamed aside with a timestamp suffix, never deleted, and a fresh one is started;
`Database.notice` then holds a HistoryError that says so, to show the user.

`read_only=True` (what `kznllm history` uses) creates, migrates and moves aside
nothing: it opens the file through SQLite's `mode=ro` URI, and where even that needs to
write (a WAL database in a read-only folder has no -shm file to make) as `immutable`,
which nobody can change there anyway; a write raises one HistoryError.

The schema comes from the append-only migrations in history/migrations.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from kznllm_py.errors import HistoryError
from kznllm_py.history.migrations import migrate, schema_version, user_version
from kznllm_py.stdpath import nvim_stdpath

DB_NAME = "history.sqlite3"
BUSY_TIMEOUT_S = 5.0
LOCK_RETRIES = 3  # attempts after the first, when the busy timeout was not enough

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26

T = TypeVar("T")


# ---------------------------------------------------------------------------- paths


def default_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the plugin keeps the history: stdpath('data')/kznllm/history.sqlite3."""
    return Path(data_dir) / "kznllm" / DB_NAME


def nvim_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Neovim's stdpath('data') computed outside Neovim (XDG_DATA_HOME, NVIM_APPNAME)."""
    return nvim_stdpath("data", env)


# ---------------------------------------------------------------------------- sqlite errors


class _CorruptDatabase(sqlite3.DatabaseError):
    """quick_check found damage (SQLite itself raised nothing)."""


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return _code(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text or "busy" in text


def _is_corrupt(exc: BaseException) -> bool:
    if isinstance(exc, _CorruptDatabase):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()
    return (
        _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
        or "not a database" in text
        or "malformed" in text
    )


def _retry_busy(fn: Callable[[], T]) -> T:
    """`fn()`, again a few times while the database stays locked past the busy timeout."""
    for attempt in range(LOCK_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            time.sleep(0.05 * 2**attempt)
    return fn()


def _quick_check(db: sqlite3.Connection) -> None:
    rows = db.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        raise _CorruptDatabase("; ".join(str(row[0]) for row in rows[:3]))


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory (POSIX), so two processes never both move the
    database aside; without flock, no lock."""
    try:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------------- the file


class Database:
    """The database file at `path` (created with its directory when missing): a
    transaction run on it (`_run`), with busy retries and a bad file moved aside."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keep_open: bool = False,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._immutable = False  # read-only and SQLite could not even make its -shm
        self.notice: HistoryError | None = None  # set when a bad file was moved aside
        # keep_open: one connection per thread, kept between calls. Closing the last
        # connection to a WAL database checkpoints it and deletes the -wal file (~10 ms
        # on a loaded machine): a recorder that writes six times per request would fall
        # behind fast fills, its queue holding memory. Close with close().
        self._keep_open = keep_open
        self._local = threading.local()
        self._init()

    def close(self) -> None:
        """Close this thread's kept connection, if any."""
        db = getattr(self._local, "db", None)
        self._local.db = None
        if db is not None:
            db.close()

    def compact(self) -> None:
        """Give the file the space of deleted rows back (WAL truncated, VACUUM)."""
        self._run("compact the database", _compact)

    # -- the connection

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: no fsync per commit
            db.execute("PRAGMA secure_delete = ON")  # deleted text is zeroed, not left behind
        except BaseException:
            db.close()
            raise
        return db

    def behind(self) -> bool:
        """The database's schema is older than this kznllm's (its migrations not run)."""
        return self._run("read the schema version", user_version) < schema_version()

    def _connect_read_only(self) -> sqlite3.Connection:
        """The file through `mode=ro`: SQLite never writes it (nor creates it). A WAL
        database whose folder is read-only cannot get the -shm file a reader needs: it is
        then opened `immutable` (no locks, no WAL), true where nothing can write."""
        uri = self.path.absolute().as_uri()
        for immutable in (False, True) if not self._immutable else (True,):
            db = sqlite3.connect(
                f"{uri}?mode=ro{'&immutable=1' if immutable else ''}",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
            )
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                db.close()
                if immutable or not self.path.is_file():
                    raise
                continue  # cannot open the -shm / -wal files: read-only all the way
            except BaseException:
                db.close()
                raise
            self._immutable = immutable
            return db
        raise sqlite3.OperationalError("unable to open database file")  # not reached

    def _once(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        db = getattr(self._local, "db", None) if self._keep_open else None
        if db is None:
            db = self._connect()
            if self._keep_open:
                self._local.db = db
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")  # take the write lock now: the busy timeout works
            result = fn(db)
            if write:
                db.execute("COMMIT")
            return result
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.rollback()
            raise
        finally:
            if not self._keep_open:
                db.close()

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T], write: bool = False) -> T:
        if self.read_only:
            if write:
                raise HistoryError(f"history: could not {what}: {self.path} is open read-only")
            try:
                return self._once(fn, write)
            except sqlite3.Error as exc:
                if _is_corrupt(exc):
                    raise HistoryError(
                        f"the history database {self.path} could not be read ({exc}); read "
                        "only, it is left as it is (the next fill moves it aside)"
                    ) from exc
                raise HistoryError(f"history: could not {what} ({self.path}): {exc}") from exc
        if not self.path.exists():  # removed (or moved aside) since: start a new one
            self.close()
            self._init()
        try:
            return _retry_busy(lambda: self._once(fn, write))
        except sqlite3.Error as exc:
            self.close()  # a kept connection to a bad file is not used again
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: sqlite3.Error) -> HistoryError:
        if _is_corrupt(exc):
            return self._recover(exc)
        if _is_busy(exc):
            return HistoryError(
                f"history: could not {what}: the database {self.path} stayed locked "
                f"by another process"
            )
        return HistoryError(f"history: could not {what} ({self.path}): {exc}")

    # -- opening, and recovering from a bad file

    def _init(self) -> None:
        if self.read_only:
            return  # nothing is created, migrated or moved aside
        self._create_file()
        try:
            _retry_busy(self._setup)
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                raise HistoryError(f"cannot open the history database {self.path}: {exc}") from exc
            self._recover(exc)
            self._create_file()
            try:
                _retry_busy(self._setup)
            except sqlite3.Error as again:
                raise HistoryError(
                    f"cannot start a new history database {self.path}: {again}"
                ) from again

    def _create_file(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise HistoryError(
                f"cannot create the history database {self.path}: {exc.strerror or exc}"
            ) from exc
        try:
            if os.fstat(fd).st_mode & 0o077 and hasattr(os, "fchmod"):
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _setup(self) -> None:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode = WAL")
            _quick_check(db)
            migrate(db, self.path)
        finally:
            db.close()

    def _still_bad(self) -> bool:
        if not self.path.exists():
            return False
        try:
            db = self._connect()
            try:
                _quick_check(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            return _is_corrupt(exc)
        return False

    def _recover(self, exc: BaseException) -> HistoryError:
        why = str(exc) or type(exc).__name__
        with _dir_lock(self.path.parent):
            if not self._still_bad():  # another process was faster
                return HistoryError(
                    f"the history database {self.path} could not be read ({why}); "
                    f"it was replaced by a new one: try again"
                )
            target = self._move_aside(why)
        notice = HistoryError(
            f"the history database {self.path} could not be read ({why}); it was moved "
            f"to {target} and a new one was started"
        )
        self.notice = notice
        return notice

    def _move_aside(self, why: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            # the -wal first: left behind, it would be replayed into the new database
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.rename(side, f"{target}{suffix}")
            os.rename(self.path, target)
        except OSError as err:
            raise HistoryError(
                f"the history database {self.path} could not be read ({why}) nor moved "
                f"aside: {err.strerror or err}"
            ) from err
        return target


def _compact(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("VACUUM")
