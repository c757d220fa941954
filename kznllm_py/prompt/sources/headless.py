"""The enclosing scope and the outline of a file outside the editor (the CLI's --scope
and --outline): Neovim itself, run headless, parses the file with its own tree-sitter
parsers and the editor's own sources (lua/kznllm/context/scope.lua, outline.lua, through
lua/kznllm/context/headless.lua); its answer is typed by the editor's Python
(sources/scope.py, outline.py) into the same sections.

No parser library here: Neovim has the parsers (bundled: C, Lua, Vimscript, vimdoc,
markdown, query; a clean Neovim does not see those the user installed), and the `nvim`
extra brings one.

Bounded and confined: the caller reads the file once (its bytes go to Neovim on stdin,
Neovim opens nothing of the project); Neovim runs with no user config, plugins, shada,
swap file, modelines or exrc (`--clean -u NONE -i NONE -n --noplugin`), with an
environment of the few variables it needs (no API key reaches it), in a process group
of its own that is killed at the deadline; its answer is read up to `MAX_ANSWER_BYTES`.
Which Neovim: `$KZNLLM_NVIM`, else `nvim` on PATH."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kznllm_py.errors import printable
from kznllm_py.prompt.sources import bounded
from kznllm_py.prompt.sources import outline as outline_source
from kznllm_py.prompt.sources import scope as scope_source
from kznllm_py.prompt.sources.outline import Outline
from kznllm_py.prompt.sources.scope import Scope

ENV = "KZNLLM_NVIM"  # which Neovim (a path or a name on PATH)
DEFAULT_DEADLINE = 3.0  # seconds for the whole run, start to answer
MAX_ANSWER_BYTES = 1 << 20  # the scope (192 KiB at most) and 300 outline entries fit
SOURCES = ("scope", "outline")
# what Neovim is given of the environment (its folders, the locale, the terminal type)
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "VIMRUNTIME")
KEPT_ENV_PREFIXES = ("XDG_",)


@dataclass(frozen=True, slots=True)
class Found:
    scope: Scope | None = None
    outline: Outline | None = None
    filetype: str = ""  # as Neovim detected it (or as given)
    # why nothing (or not all) came: no Neovim, no parser, the deadline, a failure
    problem: str = ""


class Failed(Exception):
    """The headless Neovim did not answer (its why, one line)."""


def nvim_program(env: Mapping[str, str] | None = None) -> str | None:
    """The Neovim to run: `$KZNLLM_NVIM` (a path, or a name looked up on PATH), else
    `nvim` on PATH; None when there is none."""
    env = os.environ if env is None else env
    wanted = env.get(ENV) or "nvim"
    return shutil.which(wanted, path=env.get("PATH"))


def lua_dir() -> Path | None:
    """The plugin's `lua/` folder: beside the package (a checkout, an editable install)
    or inside it (a wheel)."""
    here = Path(__file__).resolve().parents[2]  # the package, kznllm_py/
    for candidate in (here.parent / "lua", here / "lua"):
        if (candidate / "kznllm" / "context" / "headless.lua").is_file():
            return candidate
    return None


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith(KEPT_ENV_PREFIXES)}


def ask(
    data: bytes,
    name: str,
    *,
    rows: tuple[int, int, int, int],
    want: frozenset[str] = frozenset(SOURCES),
    filetype: str = "",
    budget: int = 16_000,
    deadline: float = DEFAULT_DEADLINE,
    program: str | None = None,
) -> Found:
    """The scope and/or outline (`want`) of the file whose bytes are `data` (its `name`
    picks the filetype when `filetype` is empty), around `rows` (0-based, end exclusive:
    the editor's range), for a budget of `budget` tokens. Never raises: what is missing
    and why is in `Found.problem`."""
    program = program or nvim_program()
    if program is None:
        return Found(problem=f"no Neovim found (`nvim` on PATH or ${ENV}): no {_words(want)}")
    lua = lua_dir()
    if lua is None:
        return Found(problem=f"the plugin's Lua files are missing: no {_words(want)}")
    argv = [
        program,
        "--clean",
        "-u",
        "NONE",
        "-i",
        "NONE",
        "-n",
        "--noplugin",
        "-l",
        str(lua / "kznllm" / "context" / "headless.lua"),
        str(lua),
        filetype,
        os.path.basename(name),
        *(str(r) for r in rows),
        str(budget),
        ",".join(sorted(want)),
    ]
    try:
        raw = run(argv, data, deadline=deadline, cap=MAX_ANSWER_BYTES)
        # a file's bytes need not be UTF-8: its lines come back as they are
        answer = json.loads(raw.decode("utf-8", "replace"))
        if not isinstance(answer, dict):
            raise ValueError("not an object")
    except Failed as exc:
        return Found(problem=f"{program}: {exc}: no {_words(want)}")
    except ValueError as exc:
        return Found(problem=f"{program}: an answer that does not read ({exc}): no {_words(want)}")
    raw_ft = answer.get("ft")
    ft = printable(raw_ft[:64]) if isinstance(raw_ft, str) else ""
    if answer.get("error") == "no parser":
        what = f"no tree-sitter parser for {ft or 'this file type'} in {program}"
        return Found(filetype=ft, problem=f"{what}: no {_words(want)}")
    error = answer.get("error")
    problem = f"{program}: {printable(error[:300])}" if isinstance(error, str) else ""
    return Found(
        scope=scope_source.parse(answer.get("scope")) if "scope" in want else None,
        outline=outline_source.parse(answer.get("outline")) if "outline" in want else None,
        filetype=ft,
        problem=problem,
    )


def _words(want: frozenset[str]) -> str:
    return " or ".join(s for s in SOURCES if s in want)


def run(argv: list[str], data: bytes, *, deadline: float, cap: int) -> bytes:
    """Run `argv` with `data` on its stdin; its stdout once it exits 0 within `deadline`
    seconds, at most `cap` bytes. Failed otherwise; the process group is killed on any
    way out (a hung program, an answer over the cap: sources/bounded.py)."""
    try:
        ran = bounded.run(
            argv, stdin=data, until=time.monotonic() + deadline, cap=cap, env=_environment()
        )
    except OSError as exc:
        raise Failed(f"cannot run it: {exc.strerror or exc}") from None
    except bounded.Expired:
        raise Failed(f"no answer within {deadline:g} s (killed)") from None
    except bounded.OverCap:
        raise Failed(f"an answer over {cap} bytes (killed)") from None
    if ran.code != 0:
        why = ran.err.decode("utf-8", "replace").strip().splitlines()
        line = printable(why[-1][:300]) if why else ""
        raise Failed(f"exited with {ran.code}" + (f" ({line})" if line else ""))
    return ran.out
