"""The package's shape, counted from its own imports (ast, nothing is run): modules and
folders, circles (files that import each other in a loop, through any number of steps),
imports that climb the declared layer order, and the core's imports of the Neovim edge.

    python bench/imports.py          # the figures
    python bench/imports.py --edges  # and every import, one `a -> b` a line

An import inside `if TYPE_CHECKING:` is for the type checker only and is not counted;
an import inside a function (a lazy one) is."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "kznllm_py"

# the layers, lowest first: a module may import its own layer and those below, never one
# above. A module's layer is that of the longest prefix of its dotted name listed here
# (a folder, or one module of it where the folder spans layers, as history/ does).
LAYERS: tuple[tuple[str, ...], ...] = (
    # the ground: errors, the option schema, paths, logging, redaction, prices, messages
    (
        "errors",
        "options",
        "stdpath",
        "logfile",
        "secrets",
        "pricing",
        "messages",
        "stream.fences",
        "stream.think",
        "fill.fitting",
    ),
    # the incremental decoders
    ("stream.sse", "stream.ndjson", "stream.decoding"),
    # the wire formats; the history's rows and store
    ("providers", "history"),
    # HTTP and the typed events; what a prompt is made of; what history's entries say
    ("stream", "prompt", "history.conversation", "apply"),
    # one generation (its request prepared, its stream); the settings; history's recorder
    # and views; a fill's typed request
    (
        "stream.generation",
        "stream.prepare",
        "models",
        "settings",
        "history.recorder",
        "history.view",
        "fill.request",
        "fill.known",
        "fill.debug_view",
        "fill.shape",
        "fill.shaping",
        "fill.edges",
    ),
    # a fill's job, the sidebar's calls
    ("fill.job", "history.ops"),
    # a fill's own logic; a fill run from its request to its end; what a fill would
    # send (:KznContext)
    ("fill.turn", "fill.run", "fill.context_view"),
    # the edges: the command line and Neovim
    ("cli", "nvim"),
)
EDGE = f"{PACKAGE}.nvim"  # the only folder that may import pynvim


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its __init__)."""
    out: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    tree: ast.AST, name: str, is_package: bool, typing: bool = False
) -> Iterable[tuple[str, list[str]]]:
    """What `tree` (module `name`) imports: (module, names taken from it), TYPE_CHECKING
    blocks left out unless `typing`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node) and not typing:
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            yield base, [a.name for a in node.names]
        stack.extend(ast.iter_child_nodes(node))


def graph(root: Path = ROOT, typing: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports. `from pkg import mod` is an import of
    mod; a package's __init__ counts only when its own names are taken. `typing`: the
    imports for the type checker only (TYPE_CHECKING) count too."""
    mods = modules(root)
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        deps: set[str] = set()
        for base, names in _imports(tree, name, path.name == "__init__.py", typing):
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in mods]
            deps.update(subs)
            if base in mods and (len(subs) < len(names) or not names):
                deps.add(base)
        deps.discard(name)
        deps.discard(PACKAGE)
        out[name] = deps
    return out


def external(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the top-level names of what it imports from outside the package."""
    out: dict[str, set[str]] = {}
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(), str(path))
        tops = {b.split(".")[0] for b, _ in _imports(tree, name, path.name == "__init__.py")}
        out[name] = {t for t in tops if t and t != PACKAGE}
    return out


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module (Tarjan's), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def layer(name: str) -> int | None:
    """The layer of module `name` (None: not declared)."""
    rest = name.removeprefix(PACKAGE + ".")
    best: tuple[int, int] | None = None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            fits = rest == prefix or rest.startswith(prefix + ".")
            if fits and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    return None if best is None else best[0]


def upward(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one (and of modules with no layer)."""
    out = []
    for a, deps in sorted(g.items()):
        for b in sorted(deps):
            la, lb = layer(a), layer(b)
            if la is None or lb is None or lb > la:
                out.append((a, b))
    return out


def _in(name: str, folder: str) -> bool:
    return name == folder or name.startswith(folder + ".")


def edge_leaks(root: Path = ROOT) -> list[str]:
    """What breaks the edge's rule: a module of the core (all but the edges, cli/ and
    nvim/) importing the Neovim edge, or a module outside nvim/ importing pynvim."""
    g, ext = graph(root), external(root)
    edges = (EDGE, f"{PACKAGE}.cli")
    return sorted(
        m
        for m in g
        if ("pynvim" in ext[m] and not _in(m, EDGE))
        or (not any(_in(m, e) for e in edges) and any(_in(d, EDGE) for d in g[m]))
    )


def main(argv: list[str]) -> int:
    g = graph()
    mods = modules()
    folders = {p.parent for p in mods.values()} - {ROOT / PACKAGE}
    top = [m for m, p in mods.items() if p.parent == ROOT / PACKAGE and m != PACKAGE]
    lines = {m: len(p.read_text().splitlines()) for m, p in mods.items()}
    print(f"modules: {len(mods)} ({len(top)} at the top), folders: {len(folders)}")
    found = circles(g)
    typed = circles(graph(typing=True))
    print(f"circles: {len(found)} ({len(typed)} counting the type checker's imports)")
    for part in found or typed:
        print("  " + " <-> ".join(part))
    up = upward(g)
    print(f"upward imports: {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    print(f"the core importing the Neovim edge, pynvim outside it: {edge_leaks() or 'none'}")
    print("largest modules:")
    for m in sorted(lines, key=lines.__getitem__, reverse=True)[:5]:
        print(f"  {lines[m]:5d}  {m}")
    if "--edges" in argv:
        for a in sorted(g):
            for b in sorted(g[a]):
                print(f"{a} -> {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
