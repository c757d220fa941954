"""Trusted project files: a file from a repository that changes what is sent (project
templates; project rules next) is used only once the user trusted it with Neovim's own
mechanism for exrc files: `:trust`, `vim.secure.read()` (what `:KznTrust` goes
through) and `vim.secure.trust()`. Neovim keeps the choices in `stdpath('state')/trust`,
one `HASH PATH` line per file: the SHA-256 of the file's bytes when allowed, `!` when
denied; PATH is the file's real path. A file changed after it was trusted no longer
matches its hash: it is asked about again.

`vim.secure` has no call that answers "is it trusted?" without prompting, and the host
must not prompt (it runs off the editor's loop, and the CLI has no editor): `load()`
reads the trust file, read-only, in the format Neovim writes (runtime/lua/vim/secure.lua,
`read_trust`); it is the only code here that knows that format. `verdict()` judges the
bytes actually used, so what was checked is what is sent. Pure: no pynvim.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

TRUST_FILE = "trust"  # in stdpath('state'), as Neovim names it
MAX_TRUST_FILE = 4 * 1024 * 1024  # bytes read of it at most
DENIED = "!"
_LINE = re.compile(r"^(\S+) (.+)$")


def trust_file(state_dir: str | os.PathLike[str]) -> Path:
    """Neovim's trust database under `state_dir` (stdpath('state'))."""
    return Path(state_dir) / TRUST_FILE


def load(path: Path | None) -> dict[str, str]:
    """{real path: hash or "!"} from Neovim's trust file; empty when there is none (or
    it cannot be read): nothing is trusted then."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TRUST_FILE)
    except OSError:
        return {}
    trust: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").split("\n"):
        if m := _LINE.match(line):
            trust[m[2]] = m[1]  # the last line for a path wins, as in Neovim
    return trust


def digest(data: bytes) -> str:
    """The hash Neovim stores for a file: vim.fn.sha256 of its bytes, lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def verdict(real_path: str, data: bytes, trust: Mapping[str, str]) -> str | None:
    """None when the file at `real_path` (its real path) with these bytes is trusted,
    else why not: "not trusted", "denied" or "changed since it was trusted"."""
    known = trust.get(real_path)
    if known is None:
        return "not trusted"
    if known == DENIED:
        return "denied"
    if known != digest(data):
        return "changed since it was trusted"
    return None
