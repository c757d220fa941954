"""Prompt templates with a budget: Jinja2's immutable sandbox, tightened so that an
untrusted template (a cloned repository's `.kzn/templates/`) can make its own request
fail, never the host freeze or grow.

A render runs under a `Budget`: a deadline (`TIME_LIMIT_S`), a stop flag (cancel), an
output-size limit and an allocation allowance. Jinja2 compiles a template to Python, so
the checks are put into the compiled template where a template can spend without bound:

* every `for` loop iterates through a guard that checks the deadline and the stop flag
  at each step (nested `range(100000)` loops stop at the deadline);
* every call (`environment.call`, also macros, `caller()`, recursive `loop()`), every
  filter and the intercepted operators `*`, `**`, `+`, `%` check it too, refuse whole
  numbers past `MAX_INT_ARG` as arguments, and refuse, before computing it, a string or
  list repetition, a concatenation, a power or a padded format larger than `VALUE_CAP`;
* every value made by a call, a filter, an operator, a `~` concatenation and every
  piece written to the output is charged to the allowance (`ALLOC_CAP` characters), so
  repeating a big value in a loop (into a macro's buffer, say) stops long before memory
  runs out; the output itself stops at `OUTPUT_CAP` characters;
* `lipsum` makes at most 100 paragraphs of 1000 words; `range` keeps the sandbox's
  100,000 cap;
* compiling counts too: the lexer's every token and the code generator's every node
  check the deadline (a project template's reading and size: project_templates.py).

`run_off_loop` runs a render on a thread of its own, so the host's event loop is never
blocked; cancelling the awaiting task sets the stop flag, and the render stops at its
next check. Pure: no pynvim.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.lexer import TokenStream
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from kznllm_py.errors import printable
from kznllm_py.prompt import sealing

TIME_LIMIT_S = 2.0
OUTPUT_CAP = 4 * 1024 * 1024  # characters a template may write
VALUE_CAP = OUTPUT_CAP  # characters (or items) of any one value it makes
ALLOC_CAP = 16 * OUTPUT_CAP  # characters (or items) of all the values it makes
MAX_INT_ARG = 100_000  # the largest whole number passed to a call or a filter
MAX_POW_BITS = 4096

T = TypeVar("T")


class RenderLimit(Exception):
    """A template went past its budget (time, size); the text says which limit."""


class RenderStopped(Exception):
    """The render was cancelled (the request was)."""


@dataclass
class Budget:
    time_limit: float = TIME_LIMIT_S
    stop: threading.Event = field(default_factory=threading.Event)
    output_cap: int = OUTPUT_CAP
    alloc_cap: int = ALLOC_CAP
    spent: int = 0  # characters charged so far
    charges: int = 0  # values charged so far
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.time_limit

    def check(self) -> None:
        if self.stop.is_set():
            raise RenderStopped("cancelled")
        if time.monotonic() > self.deadline:
            raise RenderLimit(
                f"rendering took longer than {self.time_limit:g} s (the time limit of a "
                "prompt template); stopped"
            )

    def charge(self, n: int) -> None:
        self.spent += n
        if self.spent > self.alloc_cap:
            raise RenderLimit(
                f"the template made more than {self.alloc_cap:,} characters of values "
                "(the allocation limit of a prompt template); stopped"
            )
        self.charges += 1
        if not self.charges & 31:  # the clock every 32 values: loops check at each step
            self.check()


_local = threading.local()


def current() -> Budget | None:
    return getattr(_local, "budget", None)


@contextlib.contextmanager
def budget_scope(budget: Budget | None = None) -> Iterator[Budget]:
    """Make `budget` (or the one already active, or a fresh one) this thread's budget."""
    outer = current()
    active = budget or outer or Budget()
    _local.budget = active
    try:
        yield active
    finally:
        _local.budget = outer


def run_limited(fn: Callable[..., T], *args: Any, budget: Budget | None = None, **kw: Any) -> T:
    with budget_scope(budget):
        return fn(*args, **kw)


async def run_off_loop(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """`fn(*args, **kw)` on a thread of its own under a fresh budget; cancelling the
    caller stops the render at its next check (and does not wait for it)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    budget = Budget()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = run_limited(fn, *args, budget=budget, **kw)
        except BaseException as exc:  # handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(settle, False, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=work, name="kzn-render", daemon=True).start()
    try:
        return await future
    except asyncio.CancelledError:
        budget.stop.set()
        raise


# -- the checks --------------------------------------------------------------------------


def _weight(value: Any, limit: int = VALUE_CAP) -> int:
    """Characters (strings) plus items (containers) in `value`, nested containers
    included; counting stops once past `limit` (a list of 100,000 references to one
    big string weighs what printing it would cost, not 100,000)."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 0
    total = len(value)
    stack = [iter(value.items() if isinstance(value, dict) else value)]
    while stack and total <= limit:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.append(iter(item))
        elif isinstance(item, dict):
            total += len(item)
            stack.append(iter(item.items()))
    return total


_END = object()


def _charge(value: Any) -> Any:
    budget = current()
    if budget is None:
        return value
    n = _weight(value)
    if n > VALUE_CAP:
        raise RenderLimit(f"a value of {n:,} characters is over the {VALUE_CAP:,} limit")
    if isinstance(value, Iterator) and not isinstance(value, str):
        return _guarded_iter(value, budget)
    budget.charge(n)
    return value


def _guarded_iter(items: Any, budget: Budget) -> Iterator[Any]:
    for item in items:
        budget.check()
        yield item


def _check_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if type(value) is int and abs(value) > MAX_INT_ARG:
            raise RenderLimit(
                f"the number {value} is over the {MAX_INT_ARG:,} limit for an argument"
            )


_WIDTHS = re.compile(r"\d+")


def _check_format(fmt: str, args: Any) -> None:
    """A %-format or str.format string pads at most VALUE_CAP characters in all, and
    takes no widths from its arguments (`%*d`, `{:{w}}`)."""
    if "*" in fmt and "%" in fmt and re.search(r"%[-#0 +]*\*|%[-#0 +]*\d*\.\*", fmt):
        raise RenderLimit("a format that takes its width from an argument is refused")
    if re.search(r"\{[^{}]*\{", fmt):
        raise RenderLimit("a format with nested replacement fields is refused")
    total = sum(int(m) for m in _WIDTHS.findall(fmt) if len(m) < 12) + len(fmt)
    if total > VALUE_CAP or any(len(m) >= 12 for m in _WIDTHS.findall(fmt)):
        raise RenderLimit(f"a format padding past {VALUE_CAP:,} characters is refused")


def _precheck_binop(op: str, left: Any, right: Any) -> None:
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and type(n) is int
                and _weight(seq) * max(n, 0) > VALUE_CAP
            ):
                raise RenderLimit(
                    f"repeating a value of size {_weight(seq):,} {n:,} times is over the "
                    f"{VALUE_CAP:,} limit"
                )
    elif op == "**":
        if (
            type(left) is int
            and type(right) is int
            and left not in (0, 1, -1)
            and right * max(abs(left).bit_length(), 1) > MAX_POW_BITS
        ):
            raise RenderLimit(f"{left} ** {right} is too large a number")
    elif op == "+":
        seqs = (str, list, tuple)
        if (
            isinstance(left, seqs)
            and isinstance(right, seqs)
            and _weight(left) + _weight(right) > VALUE_CAP
        ):
            raise RenderLimit(f"a value over the {VALUE_CAP:,} limit")
    elif op == "%" and isinstance(left, str):
        _check_format(left, right)


# str methods whose result can be far larger than their inputs, checked before the call
def _precheck_method(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Raise for a call that would make a value over VALUE_CAP; the arguments to call
    with (an iterator given to join() is read, under the budget, to be measured)."""
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    if not isinstance(owner, str):
        return args
    if name in ("format", "format_map"):
        _check_format(owner, args)
    elif name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            count = len(owner) + 1 if not old else owner.count(old)
            if len(owner) + count * len(new) > VALUE_CAP:
                raise RenderLimit(f"a replace() over the {VALUE_CAP:,} limit")
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple) else list(_charge(iter(args[0])))
        total = sum(len(x) if isinstance(x, str) else 0 for x in items)
        if total + len(owner) * len(items) > VALUE_CAP:
            raise RenderLimit(f"a join() over the {VALUE_CAP:,} limit")
        return (items, *args[1:])
    elif name == "expandtabs" and owner.count("\t") * (args[0] if args else 8) > VALUE_CAP:
        raise RenderLimit(f"an expandtabs() over the {VALUE_CAP:,} limit")
    return args


def _precheck_padding(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`indent` and `wordwrap` add a string to every line: lines x its length."""
    text = str(args[0])
    if name == "indent":
        pad = args[1] if len(args) > 1 else kwargs.get("width", 4)
        per_line, lines = (len(pad) if isinstance(pad, str) else int(pad)), text.count("\n") + 1
    else:
        width = args[1] if len(args) > 1 else kwargs.get("width", 79)
        wrap = args[4] if len(args) > 4 else kwargs.get("wrapstring") or "\n"
        per_line, lines = len(str(wrap)), len(text) // max(int(width), 1) + text.count("\n") + 1
    if len(text) + per_line * lines > VALUE_CAP:
        raise RenderLimit(f"{name} over the {VALUE_CAP:,} limit")


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    kind = getattr(getattr(fn, "jinja_pass_arg", None), "name", None)

    @jinja2.pass_context  # never folded at compile time: it always runs under the budget
    @functools.wraps(fn)
    def guarded(context: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        if budget is not None:
            budget.check()
            _check_args(args[1:], kwargs)
            if name == "replace" and len(args) >= 3:
                _precheck_method(str(args[0]).replace, args[1:3], {})
            elif name == "join" and args:
                items = args[0] if isinstance(args[0], list | tuple) else list(_charge(args[0]))
                sep = args[1] if len(args) > 1 else kwargs.get("d", "")
                _precheck_method(str(sep).join, ([str(x) for x in items],), {})
                args = (items, *args[1:])
            elif name == "format" and args:
                _check_format(str(args[0]), args[1:])
            elif name in ("indent", "wordwrap") and args:
                _precheck_padding(name, args, kwargs)
            elif name == "sum":
                # adding lists or strings copies all so far at each step, inside one C
                # call that holds the GIL: quadratic, and the host's loop would wait
                start = args[2] if len(args) > 2 else kwargs.get("start", 0)
                if not isinstance(start, int | float):
                    raise RenderLimit("sum() of lists or strings is refused (join them)")
            elif name == "tojson":
                indent = args[1] if len(args) > 1 else kwargs.get("indent")
                if isinstance(indent, int) and indent > 16:
                    raise RenderLimit("tojson() indents at most 16 spaces")
        if kind == "context":
            result = fn(context, *args, **kwargs)
        elif kind == "eval_context":
            result = fn(context.eval_ctx, *args, **kwargs)
        elif kind == "environment":
            result = fn(context.environment, *args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        return _charge(result)

    guarded.jinja_pass_arg = jinja2.utils._PassArg.context  # type: ignore[attr-defined]
    return guarded


@jinja2.pass_context
def _loop_guard(context: Any, iterable: Any) -> Any:
    budget = current()
    if budget is None or isinstance(iterable, jinja2.Undefined):
        return iterable
    return _guarded_iter(iterable, budget)


@jinja2.pass_context
def _charged(context: Any, value: Any) -> Any:
    budget = current()
    if budget is None:
        return value
    n = len(value) if isinstance(value, str) else _weight(value)
    if n <= VALUE_CAP and not isinstance(value, str):
        n = max(n, len(str(value)))
    if n > VALUE_CAP:
        raise RenderLimit(f"a value of {n:,} characters is over the {VALUE_CAP:,} limit")
    budget.charge(n)
    return value


def _guarded_range(*args: int) -> range:
    budget = current()
    if budget is not None:
        budget.check()
    rng = safe_range(*args)
    if budget is not None:
        budget.charge(len(rng))
    return rng


def _small_lipsum(lipsum: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(lipsum)
    def small(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        if n > 100 or max > 1000:
            raise RenderLimit("lipsum() is limited to 100 paragraphs of 1000 words")
        return lipsum(n, html, min, max)

    return small


class _Guards(NodeTransformer):
    """Puts the checks into a parsed template: loops, `~` and every output piece."""

    def _wrap(self, node: nodes.Node, name: str) -> nodes.Expr:
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    # generic_visit edits the node in place and returns it
    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, "_kzn_loop")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._wrap(node, "_kzn_value")

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        wrapped: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                child = nodes.Const(child.data, lineno=child.lineno)
            wrapped.append(self._wrap(child, "_kzn_value"))
        node.nodes = wrapped
        return node


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja's code generator, checking the budget at every node it writes out: turning
    a large template into Python is seconds of work, counted and stopped like a render."""

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        if budget is not None:
            budget.check()
        return super().visit(node, *args, **kwargs)


class GuardedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the budget's checks (see the module doc); an unsafe
    attribute raises at once. (Jinja's own sandbox returns an undefined value that
    raises only when used in certain ways; with ChainableUndefined, missing is falsy,
    `{{ cycler.__init__.__globals__.os }}` would then render as "" and pass silently.)"""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedCodeGenerator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["lipsum"] = _small_lipsum(generate_lorem_ipsum)  # Jinja's own lipsum
        self.globals["range"] = _guarded_range
        self.filters = {name: _guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters["_kzn_loop"] = _loop_guard
        self.filters["_kzn_value"] = _charged
        # a name from outside (a file's path, a section's title) on one line, its control
        # characters escaped: a crafted file name cannot start a line of the prompt's own
        self.filters["printable"] = _guard_filter("printable", printable)
        # a text from outside kept inside its block (`</context>`, `<cursor/>`, a line
        # `--- x ---` taken out of the markup): kznllm_py/prompt/sealing.py
        self.filters["sealed"] = _guard_filter("sealed", sealing.seal)

    def _tokenize(
        self,
        source: str,
        name: str | None,
        filename: str | None = None,
        state: str | None = None,
    ) -> TokenStream:
        """Lexing and parsing (driven by the tokens) count in the budget: a check at
        every token. (TokenStream._iter: an internal of Jinja2 3.1, like _parse.)"""
        stream = super()._tokenize(source, name, filename, state)
        budget = current()
        if budget is not None:
            stream._iter = _guarded_iter(stream._iter, budget)
        return stream

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        guarded = _Guards().visit(super()._parse(source, name, filename))
        assert isinstance(guarded, nodes.Template)  # a Template is visited in place
        return guarded

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if current() is not None:
            _precheck_binop(operator, left, right)
        return _charge(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        if budget is not None:
            budget.check()
            _check_args(args, kwargs)
            args = _precheck_method(__obj, args, kwargs)
        return _charge(super().call(__context, __obj, *args, **kwargs))


def render_template(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """`template.render(**variables)` under the active budget (or a fresh one), the
    output stopped at the budget's output cap."""
    with budget_scope() as budget:
        pieces: list[str] = []
        size = 0
        for piece in template.generate(**variables):
            size += len(piece)
            if size > budget.output_cap:
                raise RenderLimit(
                    f"the template wrote more than {budget.output_cap:,} characters "
                    "(the output limit of a prompt template); stopped"
                )
            pieces.append(piece)
        return "".join(pieces)
