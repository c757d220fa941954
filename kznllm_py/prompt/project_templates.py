"""A project's templates (`.kzn/templates/`), confined and trusted before they are used.

A cloned repository writes its `.kzn` folder, so its templates are read as hostile:

* confined: a template resolves inside its own `.kzn/templates` (its folders' real
  paths inside the folder's real path: no link and no `..` leads out), is opened without
  following a final link (O_NOFOLLOW), must be a regular file (no FIFO, device or procfs
  link), and is refused when larger than `MAX_TEMPLATE_BYTES`, from its size before a
  byte is read (a 1 GiB sparse file costs nothing); reading it counts in the render's
  budget (kznllm_py/prompt/sandbox.py), and compiling it is bounded by that size;
* trusted: the family's folder (and `_shared/`) is used only when every file in it is
  trusted with Neovim's trust database (kznllm_py/prompt/trust.py; `:KznTrust`); until then the
  user's or the built-in templates are used and `decide()` says so in one line. The
  loader judges the bytes it compiles again, so a file changed after the check, or one
  pulled in from another folder, is refused, never sent.

Pure: no pynvim.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from kznllm_py.errors import printable, size_text
from kznllm_py.prompt import sandbox, trust

MAX_TEMPLATE_BYTES = 64 * 1024  # compiling one (uninterruptible at its end) stays well under 1 s
MAX_FILES = 64  # files looked at in a family's folder (and _shared/) when deciding
SHARED = "_shared"
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
OPEN_FLAGS |= getattr(os, "O_CLOEXEC", 0)


class TemplateRefused(Exception):
    """A project template that is not a trusted regular file inside .kzn/templates, or
    too large; the text says which and why."""


def inside(path: str, root: str) -> bool:
    """Whether the real path `path` is the real folder `root` or under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def templates_root(kzn_dir: Path) -> str | None:
    """The real path of `kzn_dir/templates` when it is a folder of its own (not a link
    elsewhere), None when there is none; TemplateRefused for a link."""
    path = kzn_dir / "templates"
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise TemplateRefused("templates: a symbolic link (refused)")
    if not stat.S_ISDIR(st.st_mode):
        return None
    return os.path.join(os.path.realpath(kzn_dir), "templates")


def read_confined(root: str, name: str) -> tuple[str, bytes]:
    """The real path and bytes of template `name` under the real folder `root`.
    jinja2.TemplateNotFound when there is no such file; TemplateRefused when it leads
    out, is a link or no regular file, or is too large."""
    pieces = name.replace("\\", "/").split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in pieces):
        raise TemplateRefused(f"{name}: a name with `..` or an absolute path (refused)")
    parent = os.path.realpath(os.path.join(root, *pieces[:-1]))
    if not inside(parent, root):
        raise TemplateRefused(f"{name}: a link leads out of .kzn/templates (refused)")
    full = os.path.join(parent, pieces[-1])
    budget = sandbox.current()
    if budget is not None:
        budget.check()
    try:
        fd = os.open(full, OPEN_FLAGS)
    except FileNotFoundError:
        raise jinja2.TemplateNotFound(name) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TemplateRefused(f"{name}: a symbolic link (refused)") from None
        raise TemplateRefused(f"{name}: cannot open it: {exc.strerror or exc}") from None
    try:
        data = read_regular(fd, MAX_TEMPLATE_BYTES, name, TemplateRefused)
    finally:
        os.close(fd)
    if budget is not None:
        budget.charge(len(data))
    return full, data


def regular_size(fd: int, cap: int, name: str, refused: type[Exception]) -> int:
    """The size of the open file `fd` when it is a regular file of at most `cap` bytes;
    else `refused` (its reason naming `name`), before a byte is read."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise refused(f"{name}: not a regular file (refused)")
    if st.st_size > cap:
        raise refused(
            f"{name}: larger than {size_text(cap)} ({size_text(st.st_size)}; refused unread)"
        )
    return st.st_size


def read_at_most(fd: int, cap: int, name: str, refused: type[Exception]) -> bytes:
    """The bytes of `fd`, `refused` if it holds (or grows, while read) past `cap`."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = os.read(fd, cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > cap:  # it grew while read
        raise refused(f"{name}: larger than {size_text(cap)} (refused)")
    return b"".join(chunks)


def read_regular(fd: int, cap: int, name: str, refused: type[Exception]) -> bytes:
    """The bytes of the regular file `fd`, of at most `cap` (regular_size, read_at_most)."""
    regular_size(fd, cap, name, refused)
    return read_at_most(fd, cap, name, refused)


class ProjectLoader(jinja2.BaseLoader):
    """Templates from a project's `.kzn/templates`, confined, and judged against the
    trust database `trust_db` when one is given (None: the caller already decided)."""

    def __init__(self, root: str, trust_db: Path | None) -> None:
        self.root = root
        self.trust_db = trust_db

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        full, data = read_confined(self.root, template)
        if self.trust_db is not None:
            why = trust.verdict(full, data, trust.load(self.trust_db))
            if why is not None:
                raise TemplateRefused(f"{template}: {why} (:KznTrust)")
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateRefused(f"{template}: not UTF-8 text") from None
        seen = _stamp(full), _stamp(self.trust_db)
        return source, full, lambda: (_stamp(full), _stamp(self.trust_db)) == seen


def _stamp(path: str | Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class Decision:
    """Whether the project's templates are used, and the line that says why not."""

    root: str | None  # the real templates folder to use, None: not used
    notice: str = ""


def _files(root: str, folder: str) -> list[str]:
    """Template names in `root/folder`, recursively, at most MAX_FILES (links are
    listed, not followed, so that they are refused)."""
    top = os.path.join(root, folder)
    if not os.path.lexists(top):
        return []
    if os.path.islink(top) or not os.path.isdir(top):
        return [folder]  # a file or a link where a folder should be: read, and refused
    names: list[str] = []
    stack = [folder]
    while stack and len(names) < MAX_FILES:
        rel = stack.pop()
        with contextlib.suppress(OSError), os.scandir(os.path.join(root, rel)) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = f"{rel}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                else:
                    names.append(name)
    return names[:MAX_FILES]


def decide(kzn_dir: Path, family: str, trust_db: Path | None, *, how: str) -> Decision:
    """Use the project's templates for `family` only when every file of its folder and
    of `_shared/` is a confined, trusted regular file; else the notice names the files
    and why (`how`: how the user trusts them). No project templates: nothing to say."""
    try:
        root = templates_root(kzn_dir)
    except TemplateRefused as exc:
        return Decision(None, _notice(kzn_dir / "templates", [str(exc)], how))
    if root is None:
        return Decision(None)
    names = [n for folder in (family, SHARED) for n in _files(root, folder)]
    if not names:
        return Decision(None)
    known = trust.load(trust_db)
    problems: list[str] = []
    for name in names:
        try:
            full, data = read_confined(root, name)
        except (TemplateRefused, jinja2.TemplateNotFound) as exc:
            problems.append(str(exc) if isinstance(exc, TemplateRefused) else f"{name}: gone")
            continue
        why = trust.verdict(full, data, known)
        if why is not None:
            problems.append(f"{name}: {why}")
    if problems:
        return Decision(None, _notice(Path(root), problems, how))
    return Decision(root)


@dataclass(frozen=True)
class Review:
    """What `:KznTrust` shows the user: the files to trust (real paths), and lines for
    those that cannot be trusted (refused) or were denied."""

    files: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


def review(kzn_dir: Path, trust_db: Path | None) -> Review:
    """Every template file of the project (every folder of `.kzn/templates`, at most
    4 x MAX_FILES) that is confined but not trusted yet; refused and denied ones are
    lines (a link is never offered: trusting it would trust where it leads)."""
    try:
        root = templates_root(kzn_dir)
    except TemplateRefused as exc:
        return Review(lines=(printable(str(exc)),))
    if root is None:
        return Review()
    folders = []
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        folders = sorted(e.name for e in entries)
    known = trust.load(trust_db)
    files: list[str] = []
    lines: list[str] = []
    names = [n for folder in folders for n in _files(root, folder)] if folders else []
    for name in names[: 4 * MAX_FILES]:
        try:
            full, data = read_confined(root, name)
        except (TemplateRefused, jinja2.TemplateNotFound) as exc:
            lines.append(printable(str(exc)))
            continue
        why = trust.verdict(full, data, known)
        if why == "denied":
            lines.append(f"{printable(name)}: denied earlier (:trust ++remove {full} to ask again)")
        elif why is not None:
            files.append(full)
    return Review(tuple(files), tuple(lines))


def _notice(root: Path, problems: list[str], how: str) -> str:
    shown = "; ".join(printable(p) for p in problems[:4])
    more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
    # the fix first: a narrow screen cuts the end of the line
    return (
        f"the project's templates are not used, the built-in ones are ({how}): "
        f"{shown}{more} in {printable(str(root))}"
    )
