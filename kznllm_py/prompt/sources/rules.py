"""The project's rules for writing code (`AGENTS.md`, `CLAUDE.md`,
`.github/copilot-instructions.md`, `.cursorrules`, `.cursor/rules/*.mdc`), read from the
project root into the system prompt, one section per file titled with its path.

A cloned repository writes these files, and they change what is sent, so they follow
the rules of project templates (kznllm_py/prompt/project_templates.py):

* confined: a file counts only when its real path is inside the root's real path (a
  link inside the project is read where it leads, once; a link out, to
  `/proc/self/environ` or `~/.ssh`, is refused); it is opened with O_NOFOLLOW and
  O_NONBLOCK, must be a regular file, and is refused unread when larger than
  `MAX_RULE_BYTES` (from fstat, and again while reading should it grow); all the files
  together read at most the rules' share of the context budget (`share_bytes`): the
  later ones are left out unread;
* trusted: a file is sent only when its bytes match Neovim's trust database
  (kznllm_py/prompt/trust.py, `:KznTrust`); until then it is not sent and `notice()` says
  which files and how to trust them, in one line. A file changed since it was trusted
  is not sent until trusted again.

Which files, in this fixed order (all of them, within the share): `NAMES`, then the
`.mdc` files of `.cursor/rules/` sorted by name. An `.mdc` file's front matter (`---`
lines at its top: `description`, `globs`, `alwaysApply`) says when it applies: with
`alwaysApply: true`, or without `globs`, always; else only when the buffer's path
matches one of its globs (`applies`). The front matter itself is not sent.

Which root (`project_root`): the git root of the buffer's file, else of the working
directory, else the folder holding the `.kzn` folder; none: no rules. Reads files: run
it off the event loop. No pynvim.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kznllm_py.errors import printable
from kznllm_py.prompt import context, project_templates, trust
from kznllm_py.prompt.sections import Section

NAMES = ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md", ".cursorrules")
MDC_DIR = ".cursor/rules"
MAX_RULE_BYTES = 64 * 1024  # one file, from fstat before a byte is read
MAX_MDC_FILES = 32  # .mdc files looked at
MAX_LISTED = 4096  # entries of .cursor/rules listed
ALL_BYTES = (len(NAMES) + MAX_MDC_FILES) * MAX_RULE_BYTES  # every file at its cap
_HOW = ":KznTrust reviews and trusts them"


@dataclass(frozen=True, slots=True)
class Rule:
    """A rules file read: `path` relative to the root ("/"-separated), `real` its real
    path (what the trust database names), its bytes, and the text to send (an .mdc
    file's body, without its front matter)."""

    path: str
    real: str
    data: bytes
    text: str
    globs: tuple[str, ...] = ()
    always: bool = True


@dataclass(frozen=True, slots=True)
class Found:
    """The rules files of a root: those read (trusted or not), and one line for each
    refused (a link out, too large, not text) or left out (over the share)."""

    root: str = ""
    rules: tuple[Rule, ...] = ()
    refused: tuple[str, ...] = ()
    # files left out unread because the earlier ones used the rules' share (the debug
    # view says so; no trust question about them)
    left: tuple[str, ...] = ()


def project_root(path: str, cwd: str, kzn_dir: Path | None) -> Path | None:
    """Where the rules are looked for: the git root of the buffer's file (`path`), else
    of the working directory, else the folder holding `kzn_dir`; None: none of these."""
    for start in (os.path.dirname(path) if path else "", cwd):
        if start and os.path.isabs(start):
            root = _git_root(Path(start))
            if root is not None:
                return root
    return kzn_dir.parent if kzn_dir is not None else None


def _git_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding `.git`, never above the home folder
    when `start` is in it (the `.kzn` search's own rule: kznllm_py/prompt/context.py)."""
    root = context.project_root(start)
    return root if os.path.lexists(root / ".git") else None


def present(root: Path) -> bool:
    """Whether `root` has any rules file (or a `.cursor/rules` folder): lstat only."""
    return any(os.path.lexists(root / n) for n in NAMES) or os.path.lexists(root / MDC_DIR)


class Refused(Exception):
    """A rules file that is not a confined regular text file within its caps."""


class OverShare(Refused):
    """A rules file larger than what the earlier ones left of the rules' share."""


def read_confined(
    root: str, rel: str, cap: int = MAX_RULE_BYTES, room: int | None = None
) -> tuple[str, bytes] | None:
    """The real path and bytes of `rel` under the real folder `root`; None when there
    is no such file; Refused (with why) when it leads out, is no regular file, is
    larger than `cap` or than the `room` left of the share (refused unread), or grows
    past them while read."""
    full = os.path.join(root, *rel.split("/"))
    if not os.path.lexists(full):
        return None
    real = os.path.realpath(full)
    if not project_templates.inside(real, root):
        raise Refused(f"{rel}: a link to outside the project ({real}; refused)")
    try:
        fd = os.open(real, project_templates.OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{rel}: a symbolic link (refused)") from None
        raise Refused(f"{rel}: cannot open it: {exc.strerror or exc}") from None
    try:
        size = project_templates.regular_size(fd, cap, rel, Refused)
        if room is not None and size > room:
            raise OverShare(f"{rel}: over the rules' share of the context budget (left out unread)")
        data = project_templates.read_at_most(
            fd, cap if room is None else min(cap, room), rel, Refused
        )
    finally:
        os.close(fd)
    return real, data


def _names(root: str) -> list[str]:
    """The rules files to look at under `root`, in their fixed order."""
    names = list(NAMES)
    folder = os.path.join(root, *MDC_DIR.split("/"))
    if os.path.isdir(folder) and project_templates.inside(os.path.realpath(folder), root):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            listed = itertools.islice(entries, MAX_LISTED)  # a folder of a million files
            mdc = sorted(e.name for e in listed if e.name.endswith(".mdc"))
            names += [f"{MDC_DIR}/{n}" for n in mdc[:MAX_MDC_FILES]]
    return names


def collect(root: Path, share_bytes: int) -> Found:
    """The rules files of `root` (see the module doc), reading at most `share_bytes`
    in all (at least one whole file's cap: the budget then cuts it to the share): a
    file past that is left out unread, with the reason."""
    real_root = os.path.realpath(root)
    rules: list[Rule] = []
    refused: list[str] = []
    left: list[str] = []
    seen: set[str] = set()
    used = 0
    total = max(share_bytes, MAX_RULE_BYTES)  # the first file is read whole, then cut to fit
    for rel in _names(real_root):
        try:
            got = read_confined(real_root, rel, MAX_RULE_BYTES, room=total - used)
        except OverShare as exc:
            left.append(str(exc))
            continue
        except Refused as exc:
            refused.append(str(exc))
            continue
        if got is None:
            continue
        real, data = got
        if real in seen:  # CLAUDE.md -> AGENTS.md: the same file, sent once
            continue
        seen.add(real)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            refused.append(f"{rel}: not UTF-8 text (refused)")
            continue
        used += len(data)
        globs: tuple[str, ...] = ()
        always = True
        if rel.endswith(".mdc"):
            meta, text = front_matter(text)
            globs = parse_globs(meta.get("globs", ""))
            always = meta.get("alwaysapply", "").strip().lower() == "true" or not globs
        rules.append(Rule(rel, real, data, text, globs, always))
    return Found(real_root, tuple(rules), tuple(refused), tuple(left))


# -- .mdc front matter and globs ---------------------------------------------------------

_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*:\s*(.*)$")


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """An .mdc file's front matter ({key in lowercase: raw value}; a YAML list's `- x`
    items joined with commas) and the body after it. No front matter: ({}, text)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    meta: dict[str, str] = {}
    key = ""
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return meta, "\n".join(lines[i + 1 :]).lstrip("\n")
        item = line.strip()
        if item.startswith("- ") and key:  # a YAML list under the last key
            meta[key] = f"{meta[key]},{item[2:]}" if meta[key] else item[2:]
        elif m := _KEY.match(line):
            key = m[1].lower()
            meta[key] = m[2].strip()
    return {}, text  # no closing line: no front matter


def parse_globs(value: str) -> tuple[str, ...]:
    """`*.py, src/**/*.ts`, `["*.py", "*.pyi"]`: the globs, quotes and brackets off."""
    value = value.strip().removeprefix("[").removesuffix("]")
    # commas inside braces (`*.{ts,tsx}`) belong to the glob
    parts = re.split(r",(?![^{]*\})", value)
    globs = (p.strip().strip("'\"").strip() for p in parts)
    return tuple(g for g in globs if g)[:32]


MAX_GLOB = 256  # characters of one glob (a longer one matches nothing)
MAX_PATTERNS = 64  # globs of one rule, braces expanded


def _braces(glob: str, limit: int = MAX_PATTERNS) -> list[str]:
    """`*.{ts,tsx}` -> [`*.ts`, `*.tsx`]: at most `limit` (the first group, then the rest)."""
    m = re.search(r"\{([^{}]*)\}", glob)
    if not m:
        return [glob]
    out: list[str] = []
    for alt in m[1].split(","):
        out += _braces(glob[: m.start()] + alt + glob[m.end() :], limit - len(out))
        if len(out) >= limit:
            break
    return out[:limit]


def _segments_match(globs: list[str], parts: list[str]) -> bool:
    """Whether the path `parts` matches the glob `globs` segment by segment: `**` is any
    number of folders, every other segment an fnmatch pattern of one name (`*`, `?`,
    `[...]`; fnmatch's patterns do not backtrack exponentially). A table of
    len(globs) x len(parts): no recursion."""
    n, m = len(globs), len(parts)
    # ok[i][j]: globs[i:] matches parts[j:]
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        for j in range(m, -1, -1):
            if globs[i] == "**":
                ok[i][j] = ok[i + 1][j] or (j < m and ok[i][j + 1])
            else:
                ok[i][j] = j < m and ok[i + 1][j + 1] and fnmatch.fnmatchcase(parts[j], globs[i])
    return ok[0][0]


def matches(glob: str, rel: str) -> bool:
    """Whether the path `rel` (relative to the root, "/"-separated) matches `glob`: a
    glob without "/" matches the file's name in any folder (`*.py`), one with "/" the
    path from the root (`src/**/*.ts`; a leading "/" or "./" is the root)."""
    if len(glob) > MAX_GLOB:
        return False
    parts = rel.split("/")[:64]
    for g in _braces(glob):
        g = g.removeprefix("./").lstrip("/")
        if "/" not in g:
            if fnmatch.fnmatchcase(parts[-1], g):
                return True
        elif _segments_match([x for x in g.split("/") if x][:32], parts):
            return True
    return False


def applies(rule: Rule, path: str, root: str) -> bool:
    """Whether `rule` applies to the buffer at `path` (absolute; "" for none)."""
    if rule.always:
        return True
    if not path:
        return False
    real = os.path.realpath(path)
    if not project_templates.inside(real, root):
        return False
    rel = os.path.relpath(real, root).replace(os.sep, "/")
    return any(matches(g, rel) for g in rule.globs[:MAX_PATTERNS])


# -- what is sent, and what is said ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decided:
    sections: tuple[Section, ...] = ()
    notice: str = ""  # one line: the files not sent and how to trust them ("" when none)
    left: tuple[str, ...] = ()  # files left out for the budget, one line each


def decide(found: Found, path: str, trust_db: Path | None, *, how: str = _HOW) -> Decided:
    """The sections of the trusted rules that apply to the buffer at `path`, and the
    line naming every file not sent because it is untrusted, changed or refused."""
    known = trust.load(trust_db)
    sections: list[Section] = []
    problems = list(found.refused)
    for rule in found.rules:
        why = trust.verdict(rule.real, rule.data, known)
        if why is not None:
            problems.append(f"{rule.path}: {why}")
        elif applies(rule, path, found.root) and rule.text.strip():
            title = printable(rule.path)  # under the template's own heading for rules
            sections.append(Section("rules", title, rule.text, system=True))
    left = tuple(printable(why) for why in found.left)
    return Decided(tuple(sections), notice(found.root, problems, how), left)


def notice(root: str, problems: list[str], how: str = _HOW) -> str:
    if not problems:
        return ""
    shown = "; ".join(printable(p) for p in problems[:4])
    more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
    # the fix first: a narrow screen cuts the end of the line
    return f"the project's rules are not sent ({how}): {shown}{more} in {printable(root)}"


def review(found: Found, trust_db: Path | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What `:KznTrust` offers: the real paths of the rules files not trusted yet (a
    changed one again), and lines for the refused and the denied ones."""
    known = trust.load(trust_db)
    files: list[str] = []
    lines = [printable(r) for r in found.refused]
    for rule in found.rules:
        why = trust.verdict(rule.real, rule.data, known)
        if why == "denied":
            lines.append(
                f"{printable(rule.path)}: denied earlier (:trust ++remove {rule.real} to ask again)"
            )
        elif why is not None:
            files.append(rule.real)
    return tuple(files), tuple(lines)


def share_bytes(budget_tokens: int, shares: Mapping[str, float]) -> int:
    """The bytes the rules files may read in all: their share of the budget, at 4 bytes
    a token (the estimate's rate for ASCII: text of that size fits the share)."""
    return int(budget_tokens * shares.get("rules", 0.15)) * 4
