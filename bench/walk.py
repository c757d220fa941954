"""A fill's walk through the package: which modules it enters and how often it climbs
back up the layers (a lower module calling into a higher one: a callback), traced in a
real host while a fill runs in an embedded Neovim against a loopback server.

    .venv/bin/python bench/walk.py            # the figures
    .venv/bin/python bench/walk.py --edges    # and each call from module to module

A `sitecustomize` (only when KZN_WALK is set) profiles the host's loop thread from the
handler of the second fill (`_start_fill`; the first also imports and warms up) to the
job's end line (`BufferSink.finish`) and writes each call from a function of the
package into one of another module of it, as `caller module, callee module, callee
function`. Counted from those, each distinct edge once (a coroutine's every resume, a
write per token, count one):

  modules entered    the package's modules a call entered (the handler's own included)
  edges              distinct calls from one module into another
  climbs back up     edges into a module of a higher layer (bench/imports.py's LAYERS)
    ... through a declared protocol   of those, calls of a method that the lower module
                     declares itself in a `typing.Protocol` (fill.run's Sink and Host: the
                     editor and the host are handed down, the runner calls back through
                     them by design)
    ... other        the rest: a callable or iterator handed down (the coalescer's write,
                     the generation's event generator, the sandbox's function to run), or
                     a helper that lives above the module calling it: each one to judge
  plugin entered     edges into kznllm_py.nvim.plugin from another module
  plugin calls out   edges from kznllm_py.nvim.plugin: the work the dispatcher does itself

A climb can never be a call by name: the lower module would have to import the higher
one, which tests/test_architecture.py refuses (lazy imports included). Every climb is
thus a call into something handed down; the protocol figure says which of them go
through an interface the lower module owns. Both figures are printed, the total as
before.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import imports  # noqa: E402
from tests.nvim_child import Child  # noqa: E402
from tests.servers import LoopbackServer, Reply, openai_events  # noqa: E402

TRACER = r"""
import os, sys, threading
_out = os.environ.get("KZN_WALK")
if _out:
    _pkg = os.sep + "kznllm_py" + os.sep
    _seen = set()
    _on = [False]
    _fills = [0]

    def _module(code):
        path = code.co_filename
        i = path.rfind(_pkg)
        if i < 0:
            return None
        name = path[i + 1 : -3].replace(os.sep, ".")
        return name.removesuffix(".__init__")

    def _profile(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_name == "_start_fill" and _module(code) == "kznllm_py.nvim.plugin":
            _fills[0] += 1
            _on[0] = _fills[0] == 2  # the first fill imports and warms up: not a fill's own
        if not _on[0]:
            return
        callee = _module(code)
        back = frame.f_back
        caller = _module(back.f_code) if back is not None else None
        if callee and caller and callee != caller:
            edge = (caller, callee, code.co_qualname)
            if edge not in _seen:
                _seen.add(edge)
                with open(_out, "a") as f:
                    f.write("\t".join(edge) + "\n")
        if code.co_name == "finish" and callee == "kznllm_py.nvim.editor":
            _on[0] = False

    if threading.current_thread() is threading.main_thread():
        sys.setprofile(_profile)
"""


def walk(root: Path) -> list[tuple[str, str, str]]:
    tmp = Path(tempfile.mkdtemp(prefix="kzn-walk-"))
    out = tmp / "walk.tsv"
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TRACER)
    env = {"KZN_WALK": str(out), "PYTHONPATH": str(site)}
    with LoopbackServer() as server:
        child = Child(tmp, env=env, root=root, setup={"history": True})
        try:
            server.queue(*(Reply(chunks=openai_events(["hello", " world"])) for _ in range(2)))
            child.use_server(server.base_url)
            for _ in range(2):  # the second is traced
                child.fill_scratch()
        finally:
            child.close()
    rows = [tuple(line.split("\t")) for line in out.read_text().splitlines()]
    return [(a, b, c) for a, b, c in rows]


def climbs(edges: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The edges into a module of a higher layer."""
    return [(a, b, c) for a, b, c in edges if (imports.layer(b) or 0) > (imports.layer(a) or 0)]


def protocols(module: str, root: Path = REPO) -> dict[str, str]:
    """The members of the `typing.Protocol` classes `module` declares: name -> class."""
    path = imports.modules(root).get(module)
    if path is None:
        return {}
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef) and any(
            (isinstance(b, ast.Name) and b.id == "Protocol")
            or (isinstance(b, ast.Attribute) and b.attr == "Protocol")
            for b in node.bases
        ):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[item.name] = node.name
    return out


def through(edge: tuple[str, str, str], root: Path = REPO) -> str | None:
    """The protocol of the caller's module the climb `edge` calls through, if any."""
    caller, _, qualname = edge
    return protocols(caller, root).get(qualname.rsplit(".", 1)[-1])


def figures(edges: list[tuple[str, str, str]], root: Path = REPO) -> dict[str, int]:
    pairs = {(a, b) for a, b, _ in edges}
    entered = {b for _, b in pairs} | {"kznllm_py.nvim.plugin"}
    up = climbs(edges)
    declared = [e for e in up if through(e, root)]
    plugin = {e for e in edges if e[1] == "kznllm_py.nvim.plugin"}
    out = {e for e in edges if e[0] == "kznllm_py.nvim.plugin"}
    return {
        "modules entered": len(entered),
        "edges": len(edges),
        "climbs back up": len(up),
        "... through a declared protocol": len(declared),
        "... other": len(up) - len(declared),
        "plugin entered": len(plugin),
        "plugin calls out": len(out),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO, help="the plugin tree to trace")
    ap.add_argument("--edges", action="store_true", help="print each edge too")
    args = ap.parse_args(argv)
    edges = walk(args.root)
    if args.edges:
        up = set(climbs(edges))
        for a, b, c in sorted(edges):
            mark = ""
            if (a, b, c) in up:
                proto = through((a, b, c), args.root)
                mark = f"  ^ through {a}.{proto}" if proto else "  ^"
            print(f"{a} -> {b}.{c}{mark}")
    print(json.dumps(figures(edges, args.root), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
