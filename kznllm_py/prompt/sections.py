"""What the model is shown beside the selection: labelled context sections (the project's
rules, the enclosing scope, the diagnostics, the definitions in use, the file's outline,
the uncommitted hunks), fitted into one token budget. Pure.

The budget (`context.budget` in setup(), tokens) holds the selection and the query
first, never cut; then each section in `ORDER`, each at most its `SHARES` of the budget
and at most what is left; then the buffer's lines around the selection (`fit_around`)
take what remains. A section cut to fit ends with a line saying so; a section that does
not fit at all (less than `MIN_TOKENS` left) is left out with the reason, which the
debug view and `:KznContext` show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kznllm_py import options
from kznllm_py.errors import ConfigError
from kznllm_py.prompt.context import estimate_tokens

# the order sections are fitted in (the first ones are the surest help), and each one's
# largest share of the budget
ORDER = ("rules", "scope", "diagnostics", "definitions", "outline", "git")
SHARES: Mapping[str, float] = {
    "rules": 0.15,
    "scope": 0.25,
    "diagnostics": 0.05,
    "definitions": 0.25,
    "outline": 0.10,
    "git": 0.10,
}
DEFAULT_BUDGET = 16_000  # tokens: the selection, the query, the sections and the lines around
MIN_TOKENS = 24  # a section with less room than this is left out, not cut to a stub
CUT_LINE = "[... cut to fit the context budget]"


# setup()'s `context` switches, and the section kinds each one turns on
SWITCHES: Mapping[str, tuple[str, ...]] = {
    "scope": ("scope",),
    "outline": ("outline",),
    "lsp": ("definitions",),
    "diagnostics": ("diagnostics",),
    "rules": ("rules",),
    "git": ("git",),
}
OFF_BY_DEFAULT = frozenset({"git"})
DEFAULT_LSP_TIMEOUT = 300  # ms from the keypress: the language servers' one deadline


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """setup()'s `context` (or `false`: every source off): { budget = tokens, lsp_timeout
    = ms, scope, outline, lsp, diagnostics, rules, git = true/false }."""

    budget: int = DEFAULT_BUDGET
    lsp_timeout: int = DEFAULT_LSP_TIMEOUT
    off: frozenset[str] = field(default_factory=lambda: OFF_BY_DEFAULT)

    def on(self, kind: str) -> bool:
        """Whether sections of `kind` are sent."""
        return not any(kind in kinds and name in self.off for name, kinds in SWITCHES.items())

    def for_editor(self) -> dict[str, Any]:
        """The switches and the deadline, as the editor's gathering reads them."""
        return {
            **{name: name not in self.off for name in SWITCHES},
            "budget": self.budget,
            "lsp_timeout": self.lsp_timeout,
        }


def context_options(value: Any, base: ContextOptions | None = None) -> ContextOptions:
    """setup()'s `context` checked (a ConfigError names what is wrong); with `base`, a
    preset's `context` over setup()'s: the fields it names change, the rest stay."""
    base = ContextOptions() if base is None else base
    if value is None or value == []:  # absent, or an empty Lua table
        return base
    if value is False:
        return ContextOptions(off=frozenset(SWITCHES))
    if not isinstance(value, Mapping):
        raise ConfigError("context must be false or a table { budget, scope, lsp, ... }")
    unknown = sorted(k for k in value if k not in SWITCHES and k not in ("budget", "lsp_timeout"))
    if unknown:
        raise ConfigError(f"context: unknown field {unknown[0]!r}")
    off = set(base.off)
    for name in SWITCHES:
        v = value.get(name)
        if v is None:
            continue
        if not isinstance(v, bool):
            raise ConfigError(f"context.{name} must be true or false, not {v!r}")
        (off.discard if v else off.add)(name)
    budget = options.whole(value, "budget", base.budget)
    if "budget" in value and (budget != value["budget"] or budget < 256):
        raise ConfigError("context.budget must be a whole number of tokens, 256 or more")
    timeout = options.whole(value, "lsp_timeout", base.lsp_timeout)
    if "lsp_timeout" in value and (timeout != value["lsp_timeout"] or not 0 <= timeout <= 5000):
        raise ConfigError("context.lsp_timeout must be a whole number of ms, 0 to 5000")
    return ContextOptions(budget=budget, lsp_timeout=timeout, off=frozenset(off))


@dataclass(frozen=True, slots=True)
class Section:
    """One source's contribution: `kind` (one of ORDER), a one-line `title` (what it is
    and where from, e.g. "enclosing function `parse` (lines 10-42)"), its `text`, and
    whether it belongs in the system prompt (the project's rules) rather than the user
    message."""

    kind: str
    title: str
    text: str
    system: bool = False
    # how to shorten `text` to a number of tokens when it is over its room (None: its
    # first whole lines, `cut_to`); the outline keeps the entries nearest the selection
    shorten: Callable[[int], str] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Placed:
    """A section as it is sent: `tokens` estimated, `cut` when shortened to fit."""

    kind: str
    title: str
    text: str
    tokens: int
    cut: bool = False
    system: bool = False


@dataclass(frozen=True, slots=True)
class Left:
    """A section not sent, and why (a plain phrase for the user)."""

    kind: str
    title: str
    tokens: int
    reason: str


@dataclass(frozen=True, slots=True)
class Fitted:
    placed: tuple[Placed, ...] = ()
    left: tuple[Left, ...] = ()
    remaining: int = 0  # tokens left for the lines around the selection


def _rank(section: Section) -> int:
    return ORDER.index(section.kind) if section.kind in ORDER else len(ORDER)


def cut_to(text: str, tokens: int) -> str:
    """The longest run of `text`'s whole first lines within `tokens`, the cut line
    included (a single line longer than that is cut at a character)."""
    room = tokens - estimate_tokens(CUT_LINE + "\n")
    kept = _within(text.split("\n"), room, lambda line, n: line[:n])
    return "\n".join([*kept, CUT_LINE]) if kept and kept[0] else CUT_LINE


def fit(
    sections: Iterable[Section],
    *,
    budget: int,
    reserved: int = 0,
    shares: Mapping[str, float] = SHARES,
) -> Fitted:
    """The sections that fit `budget` tokens once `reserved` (the selection and the
    query, never cut) is spoken for, in ORDER, each kind within its share (the sections
    of one kind, e.g. several rules files, share it); the rest left with the reason.
    Empty sections are dropped silently."""
    left_over = max(0, budget - reserved)
    placed: list[Placed] = []
    left: list[Left] = []
    by_kind: dict[str, int] = {}  # tokens placed of each kind: a share holds for all of them
    for s in sorted((s for s in sections if s.text.strip()), key=_rank):
        tokens = estimate_tokens(s.text)
        share = int(budget * shares.get(s.kind, 0.1)) - by_kind.get(s.kind, 0)
        cap = min(left_over, share)
        if tokens <= cap:
            placed.append(Placed(s.kind, s.title, s.text, tokens, False, s.system))
            left_over -= tokens
            by_kind[s.kind] = by_kind.get(s.kind, 0) + tokens
        elif cap >= MIN_TOKENS:
            text = s.shorten(cap) if s.shorten is not None else cut_to(s.text, cap)
            if estimate_tokens(text) > cap:  # a shortening that does not keep its word
                text = cut_to(s.text, cap)
            used = estimate_tokens(text)
            placed.append(Placed(s.kind, s.title, text, used, True, s.system))
            left_over -= used
            by_kind[s.kind] = by_kind.get(s.kind, 0) + used
        else:
            why = (
                "the selection and the query fill the context budget"
                if budget - reserved <= 0
                else "over the context budget"
            )
            left.append(Left(s.kind, s.title, tokens, why))
    return Fitted(tuple(placed), tuple(left), left_over)


def fit_around(
    before: str, after: str, tokens: int, keep: tuple[int, int] = (0, 0)
) -> tuple[str, str]:
    """The buffer's text before and after the selection within `tokens`: the lines
    nearest the selection kept, shared evenly (what one side does not need goes to the
    other). `keep`: how many of `before`'s last lines and `after`'s first lines are kept
    first, whole (the enclosing scope), when they fit."""
    if estimate_tokens(before) + estimate_tokens(after) <= tokens:
        return before, after
    if keep != (0, 0):
        b_lines, a_lines = before.split("\n"), after.split("\n")
        kb, ka = min(keep[0], len(b_lines)), min(keep[1], len(a_lines))
        b_keep, a_keep = "\n".join(b_lines[len(b_lines) - kb :]), "\n".join(a_lines[:ka])
        b_rest, a_rest = "\n".join(b_lines[: len(b_lines) - kb]), "\n".join(a_lines[ka:])
        # the joins cost their line breaks: one each side
        room = tokens - estimate_tokens(b_keep + "\n") - estimate_tokens("\n" + a_keep)
        if room >= 0:
            b, a = fit_around(b_rest, a_rest, room)
            kb_text = f"{b}\n{b_keep}" if b else b_keep
            ka_text = f"{a_keep}\n{a}" if a else a_keep
            return kb_text, ka_text
    half = tokens // 2
    b_need, a_need = estimate_tokens(before), estimate_tokens(after)
    b_room = max(half, tokens - a_need) if b_need > half else b_need
    a_room = max(0, tokens - min(b_need, b_room))
    return _tail(before, b_room), _head(after, a_room)


def _tail(text: str, tokens: int) -> str:
    """The last whole lines of `text` (and the part line it ends with) within `tokens`;
    a line nearest the selection too long for them keeps its characters nearest it."""
    kept = _within(reversed(text.split("\n")), tokens, lambda line, n: line[len(line) - n :])
    return "\n".join(reversed(kept))


def _head(text: str, tokens: int) -> str:
    """The first whole lines of `text` (and the part line it starts with) within `tokens`;
    a line nearest the selection too long for them keeps its characters nearest it."""
    return "\n".join(_within(text.split("\n"), tokens, lambda line, n: line[:n]))


def _within(lines: Iterable[str], tokens: int, part: Callable[[str, int], str]) -> list[str]:
    """The lines, in the order given, while their tokens fit `tokens`; the first one, when
    it alone does not fit, cut by `part(line, characters)` to what does."""
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = estimate_tokens(line + "\n")
        if used + cost > tokens:
            if not kept:  # the nearest line: as many of its nearest characters as fit
                low, high = 0, len(line)
                while low < high:  # the most characters whose tokens fit
                    mid = (low + high + 1) // 2
                    if estimate_tokens(part(line, mid) + "\n") <= tokens:
                        low = mid
                    else:
                        high = mid - 1
                kept.append(part(line, low))
            break
        kept.append(line)
        used += cost
    return kept
