"""Project context (".kzn mode"): the files of the nearest `.kzn` folder, read into the
prompt within a token budget. Pure: standard library only, no pynvim, no subprocesses.

Which `.kzn` folder (`discover_kzn`), like git's safe.directory rule: the nearest one at
or above the working directory, but never above the project root (the nearest folder
holding `.git`, else the working directory itself; never above the home directory when
the working directory is inside it); and only one owned by the user and not writable by
every user (checked on the folder a symlink leads to), and not a symlink to outside the
folder holding it (a cloned `.kzn -> ../../.ssh`). Another user's `/tmp/.kzn` is
skipped with a one-line reason; a folder named in the allow-list (`kzn_allow`, or "*")
is used whoever owns it.

Rules of `collect`:

* The `.kzn` folder is walked depth-first in a deterministic order: the entries of each
  directory sorted by name (code-point order), so the files come out sorted by their
  path components, whatever the locale or the file system's own order.
* Hidden files are included; `.gitignore` files are not applied (a `.gitignore` in the
  folder is just one more file). The `.kzn/templates/` subtree is not walked: templates
  shape the prompt, they are not context.
* Symlinks are followed when they resolve inside the project root (the folder holding
  `.kzn`) or inside the `.kzn` folder's own real location; others are refused. Every
  directory is walked at most once, so directory symlink cycles cannot loop.
* A file larger than `per_file_cap`, a binary file (a NUL byte in its first 8 KiB, or
  not valid UTF-8), anything that is not a regular file and anything unreadable is
  skipped, with the reason as a plain sentence.
* Files are included in order while their estimated tokens fit `budget_tokens`; from
  the first one that would not fit, the rest are skipped as over the budget (and not
  read at all).
* At most `MAX_ENTRIES` entries are listed, all directories together (a directory is
  listed in its own order up to what is left, then sorted); past them, one skipped
  line says the rest were not looked at.

`path` strings are relative to the project root and use "/", e.g. ".kzn/notes.md".
Only a `.kzn` folder that cannot be listed at all raises (a `ConfigError`); everything
else is reported per file in `ContextFiles.skipped`.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kznllm_py.errors import ConfigError

KZN_DIR_NAME = ".kzn"
TEMPLATES_DIR_NAME = "templates"
DEFAULT_PER_FILE_CAP = 256 * 1024
DEFAULT_BUDGET_SHARE = 0.6
BINARY_SNIFF_BYTES = 8 * 1024
# entries of the folder looked at, all directories together: a cloned `.kzn` of a million
# files costs a bounded listing, and the rest is one line
MAX_ENTRIES = 10_000

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ContextFile:
    path: str  # relative to the project root, "/"-separated
    content: str
    tokens: int


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the project root, "/"-separated
    reason: str  # a plain sentence for the user


@dataclass(frozen=True)
class ContextFiles:
    included: list[ContextFile]
    skipped: list[Skipped]
    total_tokens: int


# -- finding the folder ------------------------------------------------------------------


@dataclass(frozen=True)
class Discovery:
    kzn_dir: Path | None  # absolute (normalised, symlinks not resolved)
    ignored: tuple[str, ...] = ()  # one line each: the folder skipped and why


def project_root(start: Path, home: Path | None = None) -> Path:
    """The highest folder a project's `.kzn` may be in: the nearest folder at or above
    `start` holding `.git` (a repository, or a worktree's `.git` file), never above the
    home directory when `start` is inside it; else `start` itself."""
    here = Path(os.path.abspath(os.fspath(start)))
    home = Path(os.path.abspath(os.fspath(home or Path.home())))
    inside_home = here == home or home in here.parents
    for folder in (here, *here.parents):
        if inside_home and folder != home and home not in folder.parents:
            break  # above the home directory
        if os.path.lexists(folder / ".git"):
            return folder
    return here


def discover_kzn(
    start: Path,
    *,
    home: Path | None = None,
    allow: Iterable[str] = (),
    uid: int | None = None,
) -> Discovery:
    """The `.kzn` folder to use from `start` (see the module doc), and the ones skipped.

    `start` is made absolute and need not exist. A `.kzn` that is a file, or that
    cannot be examined, does not count."""
    here = Path(os.path.abspath(os.fspath(start)))
    root = project_root(here, home)
    me = os.geteuid() if uid is None else uid
    allowed = list(allow)
    ignored: list[str] = []
    for folder in (here, *here.parents):
        candidate = folder / KZN_DIR_NAME
        if os.path.isdir(candidate):  # follows symlinks; never raises
            why = _untrusted(candidate, me) or _leads_out(candidate, folder)
            if why is None or _allowed(candidate, allowed):
                return Discovery(candidate, tuple(ignored))
            ignored.append(
                f"ignored the project folder {candidate}: {why} (kzn_allow in setup(), or "
                "--allow-kzn, trusts it)"
            )
        if folder == root:
            break
    return Discovery(None, tuple(ignored))


def find_kzn_dir(start: Path, **kwargs: Any) -> Path | None:
    """The `.kzn` folder `discover_kzn` would use, or None."""
    return discover_kzn(start, **kwargs).kzn_dir


def allow_list(value: object) -> list[str]:
    """The `kzn_allow` option: `.kzn` folders (or their projects) trusted whoever owns
    them; "*" trusts every one."""
    allow = value or []
    if isinstance(allow, str):
        allow = [allow]
    if isinstance(allow, dict):  # a Lua table that is not a list
        allow = list(allow.values())
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError("kzn_allow must be a list of folder paths (or '*')")
    return allow


def _untrusted(folder: Path, uid: int) -> str | None:
    try:
        st = os.stat(folder)
    except OSError as exc:
        return f"cannot examine it: {_os_reason(exc)}"
    if st.st_uid != uid:
        return f"it is owned by {_user_name(st.st_uid)}, not by you"
    if st.st_mode & stat.S_IWOTH:
        return "every user can write to it"
    return None


def _leads_out(candidate: Path, folder: Path) -> str | None:
    """Why a `.kzn` that is a symlink out of the folder holding it does not count: git
    clones symlinks as they are, and a repository's `.kzn -> ../../.ssh` leads to a
    folder the user owns (the ownership rule passes) whose files would be sent."""
    if not os.path.islink(candidate):
        return None
    real = os.path.realpath(candidate)
    if _inside(real, (os.path.realpath(folder),)):
        return None
    return f"it is a symlink to outside the project ({real})"


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _allowed(folder: Path, allow: list[str]) -> bool:
    if "*" in allow:
        return True
    real = os.path.realpath(folder)
    targets = {real, os.path.dirname(real)}
    return any(
        isinstance(a, str) and a and os.path.realpath(os.path.expanduser(a)) in targets
        for a in allow
    )


# -- token estimate and budget -----------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """A fast, dependency-free upper-leaning estimate of the tokens in `text`.

    ASCII counts 4 bytes a token (English prose and code with BPE tokenizers run at
    roughly 3.5 to 4.5 characters a token); every other character counts its UTF-8
    bytes divided by 3, i.e. one token per CJK character (3 bytes), about 2/3 for an
    accented Latin letter (2 bytes), 4/3 for an emoji (4 bytes). Plain `bytes / 4`
    would count CJK at 0.75 tokens a character, which real tokenizers exceed.

    The result is `ceil(ascii / 4 + other_bytes / 3)`: 0 only for "", additive in its
    parts, hence monotonic: appending text never lowers it."""
    return -(-_twelfths(text) // 12)


def _twelfths(text: str) -> int:
    """Twelfths of a token: ceil(a/4 + o/3) == ceil((3a + 4o) / 12), in integers."""
    if text.isascii():
        return 3 * len(text)
    total = len(text.encode("utf-8", "surrogatepass"))
    ascii_count = len(text.encode("ascii", "ignore"))
    return 3 * ascii_count + 4 * (total - ascii_count)


class TokenTally:
    """`estimate_tokens` of a text that comes a piece at a time: the same figure as of
    the whole, at the cost of each piece."""

    __slots__ = ("_twelfths",)

    def __init__(self) -> None:
        self._twelfths = 0

    def add(self, text: str) -> None:
        self._twelfths += _twelfths(text)

    @property
    def tokens(self) -> int:
        return -(-self._twelfths // 12)


def budget_for(context_window: int, share: float = DEFAULT_BUDGET_SHARE, reserved: int = 0) -> int:
    """Tokens the project context may use: `share` of the preset's context window (60%
    by default, leaving room for the prompt and the answer), less `reserved` tokens
    already spoken for; never below 0."""
    if isinstance(context_window, bool) or not isinstance(context_window, int):
        raise ConfigError(
            f"context_window must be a whole number of tokens, not {context_window!r}"
        )
    if context_window <= 0:
        raise ConfigError(f"context_window must be positive, not {context_window}")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ConfigError(f"the context share must be a number in (0, 1], not {share!r}")
    if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
        raise ConfigError(f"reserved tokens must be a whole number >= 0, not {reserved!r}")
    return max(0, math.floor(context_window * share) - reserved)


# -- collecting --------------------------------------------------------------------------


def collect(
    kzn_dir: Path, *, budget_tokens: int, per_file_cap: int = DEFAULT_PER_FILE_CAP
) -> ContextFiles:
    """Read the files of `kzn_dir` (see the module doc for the rules)."""
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 0:
        raise ConfigError(f"the context budget must be a whole number >= 0, not {budget_tokens!r}")
    if isinstance(per_file_cap, bool) or not isinstance(per_file_cap, int) or per_file_cap < 0:
        raise ConfigError(f"the per-file cap must be a whole number >= 0, not {per_file_cap!r}")

    included: list[ContextFile] = []
    skipped: list[Skipped] = []
    total = 0
    over_reason = ""  # set at the first file that does not fit the budget

    for item in _walk(Path(kzn_dir)):
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        rel, path = item
        if over_reason:
            skipped.append(Skipped(rel, over_reason))
            continue
        text, why = read_text(path, per_file_cap)
        if text is None:
            skipped.append(Skipped(rel, why))
            continue
        tokens = estimate_tokens(text)
        if total + tokens > budget_tokens:
            left = budget_tokens - total
            over_reason = f"over the context budget ({left} token{'' if left == 1 else 's'} left)"
            skipped.append(Skipped(rel, over_reason))
            continue
        total += tokens
        included.append(ContextFile(rel, text, tokens))

    return ContextFiles(included=included, skipped=skipped, total_tokens=total)


def _walk(kzn_dir: Path) -> Iterator[tuple[str, str] | Skipped]:
    """Yield (relative path, path to open) for every file to consider, and a `Skipped`
    for every entry refused on the way, depth-first in sorted order."""
    top = os.fspath(kzn_dir)
    prefix = os.path.basename(os.path.abspath(top)) or KZN_DIR_NAME
    try:
        top_st = os.stat(top)
        top_real = os.path.realpath(top)
        if not stat.S_ISDIR(top_st.st_mode):
            raise ConfigError(f"{top}: the project context folder is not a directory")
        room = [MAX_ENTRIES]  # what may still be listed, all directories together
        entries = _listdir(top, room)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the project context folder {top}: {_os_reason(exc)}"
        ) from None

    root_real = os.path.realpath(os.path.dirname(os.path.abspath(top)))
    allowed = (root_real, top_real)

    templates_key: tuple[int, int] | None = None
    try:
        t_st = os.stat(os.path.join(top, TEMPLATES_DIR_NAME))
        if stat.S_ISDIR(t_st.st_mode):
            templates_key = (t_st.st_dev, t_st.st_ino)
    except OSError:
        pass

    top_key = (top_st.st_dev, top_st.st_ino)
    walked: dict[tuple[int, int], str] = {top_key: prefix}  # every directory walked
    on_path: list[tuple[int, int]] = [top_key]  # the directories being walked, outermost first
    # one frame per open directory: (its sorted entries, next index, rel prefix, real path)
    frames: list[tuple[list[os.DirEntry[str]], list[int], str, str]] = [
        (entries, [0], prefix + "/", top_real)
    ]

    while frames:
        entries, pos, rel_dir, real_dir = frames[-1]
        if pos[0] >= len(entries):
            frames.pop()
            on_path.pop()
            continue
        entry = entries[pos[0]]
        pos[0] += 1
        rel = rel_dir + entry.name
        if len(frames) == 1 and entry.name == TEMPLATES_DIR_NAME and templates_key is not None:
            continue  # prompt templates, not context (even when symlinked from elsewhere)

        try:
            if entry.is_symlink():
                try:
                    real = os.path.realpath(entry.path, strict=True)
                except OSError as exc:
                    yield Skipped(rel, _symlink_reason(exc))
                    continue
                if not _inside(real, allowed):
                    yield Skipped(rel, f"symlink to outside the project ({real}), refused")
                    continue
                st = os.stat(real)
                mode = st.st_mode
            else:
                real = real_dir + os.sep + entry.name
                st = None
                # the file type comes with the directory listing: no stat call
                if entry.is_file(follow_symlinks=False):
                    mode = stat.S_IFREG
                elif entry.is_dir(follow_symlinks=False):
                    mode = stat.S_IFDIR
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            yield Skipped(rel, f"cannot read: {_os_reason(exc)}")
            continue

        if stat.S_ISREG(mode):
            yield rel, entry.path
            continue
        if not stat.S_ISDIR(mode):
            yield Skipped(rel, f"not a regular file ({_kind(mode)})")
            continue

        # a directory
        try:
            if st is None:
                st = entry.stat(follow_symlinks=False)
            key = (st.st_dev, st.st_ino)
            if key == templates_key:
                continue  # prompt templates, not context
            if key in walked:
                first = walked[key]
                if key in on_path:
                    yield Skipped(
                        rel, f"directory symlink cycle (leads back to {first}), not followed"
                    )
                else:
                    yield Skipped(rel, f"same directory as {first}, already read")
                continue
            children = _listdir(entry.path, room)
        except OSError as exc:
            yield Skipped(rel, f"cannot read directory: {_os_reason(exc)}")
            continue
        walked[key] = rel
        on_path.append(key)
        frames.append((children, [0], rel + "/", real))
    if room[0] < 0:  # a listing was cut: what was listed was looked at, the rest not
        yield Skipped(prefix + "/…", f"more than {MAX_ENTRIES:,} entries: the rest not looked at")


def _listdir(path: str, room: list[int]) -> list[os.DirEntry[str]]:
    """The entries of `path`, sorted by name, at most `room[0]` of them (taken from it);
    one more there makes `room[0]` negative: the listing was cut (and the next ones list
    nothing)."""
    if room[0] < 0:
        return []
    with os.scandir(path) as it:
        got = list(itertools.islice(it, max(room[0], 0) + 1))
    room[0] -= len(got)
    return sorted(got[: len(got) + min(room[0], 0)], key=lambda e: e.name)


def read_text(path: str, cap: int) -> tuple[str | None, str]:
    """The text of the regular file at `path` (never blocking on a FIFO), read to at most
    `cap` bytes even if it grows meanwhile: (text, "") or (None, why it was skipped: not
    a regular file, over the cap, binary, not UTF-8, unreadable). The one reader of
    project text files (`.kzn` files, the definitions' files); the caller confines the
    path (links resolved and checked) first."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        return None, f"cannot read: {_os_reason(exc)}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"not a regular file ({_kind(st.st_mode)})"
        if st.st_size > cap:
            return None, f"larger than {_size(cap)} ({_size(st.st_size)})"
        chunks: list[bytes] = []
        got = 0
        while got <= cap:  # the file may grow after fstat: never read past cap + 1
            chunk = os.read(fd, min(_READ_CHUNK, cap + 1 - got) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        return None, f"cannot read: {_os_reason(exc)}"
    finally:
        os.close(fd)
    if got > cap:
        return None, f"larger than {_size(cap)} (it grew while being read)"
    data = b"".join(chunks)
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None, "binary file (a NUL byte in its first 8 KiB)"
    if data.isascii():
        return data.decode("ascii"), ""
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return None, f"binary or not UTF-8 text (invalid byte at offset {exc.start})"


def _inside(real: str, roots: tuple[str, ...]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _symlink_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "broken symlink (its target does not exist)"
    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    return f"cannot follow symlink: {_os_reason(exc)}"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _size(n: int) -> str:
    """Bytes for people: "512 bytes", "300 KiB", "1.5 MiB" (rounded up, never down, so
    a size just over a cap never reads as equal to it)."""
    if n < 1024:
        return f"{n} byte{'' if n == 1 else 's'}"
    if n < 1024 * 1024:
        return f"{-(-n // 1024)} KiB"
    tenths = -(-n * 10 // (1024 * 1024))
    return f"{tenths // 10}.{tenths % 10} MiB" if tenths % 10 else f"{tenths // 10} MiB"
