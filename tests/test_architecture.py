"""The package's shape holds, checked from its own imports (ast: bench/imports.py):
the core never imports the Neovim edge, pynvim is imported only there, no module
circles, nothing imports up the declared layer order, every module has a layer; and
docs/ARCHITECTURE.md names only paths that exist. Each check is shown to fail on a
planted import."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench import imports

ROOT = Path(__file__).resolve().parent.parent


def test_the_core_never_imports_the_neovim_edge_nor_pynvim() -> None:
    assert imports.edge_leaks() == []


def test_no_circles_and_nothing_imports_upward() -> None:
    g = imports.graph()
    assert imports.circles(g) == []
    assert imports.upward(g) == []  # a module with no declared layer counts here too


def test_the_graph_sees_lazy_imports_and_leaves_type_only_ones_out() -> None:
    g = imports.graph()
    # the plugin imports the prompt's rendering inside a function (lazily): an import still
    assert "kznllm_py.stream.prepare" in g["kznllm_py.nvim.plugin"]
    # history's sidebar calls name the settings for the type checker only
    assert "kznllm_py.settings" not in g["kznllm_py.history.ops"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package to plant imports in."""
    shutil.copytree(ROOT / "kznllm_py", tmp_path / "kznllm_py")
    return tmp_path


def _plant(tree: Path, module: str, line: str) -> None:
    path = tree / "kznllm_py" / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_a_planted_upward_import_is_found(tree: Path) -> None:
    _plant(tree, "errors.py", "from kznllm_py.fill import turn")
    up = imports.upward(imports.graph(tree))
    assert ("kznllm_py.errors", "kznllm_py.fill.turn") in up


def test_a_planted_circle_is_found(tree: Path) -> None:
    _plant(tree, "stream/sse.py", "from kznllm_py.providers import base")
    found = imports.circles(imports.graph(tree))
    assert any({"kznllm_py.stream.sse", "kznllm_py.providers.base"} <= set(c) for c in found)


def test_a_planted_import_of_the_edge_or_of_pynvim_is_found(tree: Path) -> None:
    _plant(tree, "settings.py", "def f() -> None:\n    from kznllm_py.nvim import calls")
    _plant(tree, "prompt/trust.py", "import pynvim")
    assert imports.edge_leaks(tree) == ["kznllm_py.prompt.trust", "kznllm_py.settings"]


def test_a_module_without_a_layer_counts_as_climbing(tree: Path) -> None:
    (tree / "kznllm_py" / "stray.py").write_text("from kznllm_py import errors\n")
    assert ("kznllm_py.stray", "kznllm_py.errors") in imports.upward(imports.graph(tree))


def test_the_architecture_doc_names_only_paths_that_exist() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"\b((?:kznllm_py|lua/kznllm|bench|tests|templates)/[\w./*<>-]*)", text))
    assert len(named) > 20
    missing = []
    for path in sorted(named):
        path = path.rstrip(".")
        if "<" in path:  # a pattern: templates/<family>/*.jinja
            path = re.sub(r"<[^>]+>", "*", path)
        if not (list(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()):
            missing.append(path)
    assert missing == []


def test_the_tests_mirror_the_packages_folders() -> None:
    """Each folder of tests/ that holds tests is a folder of the package (tests/nvim/:
    the editor's); tests/ itself holds the top's and the helpers."""
    package = {p.name for p in (ROOT / "kznllm_py").iterdir() if (p / "__init__.py").exists()}
    tests = {p.parent.name for p in (ROOT / "tests").glob("*/test_*.py")}
    assert tests and tests <= package, tests - package
    assert {"stream", "providers", "prompt", "fill", "history", "cli", "nvim"} <= tests


def test_the_command_runs_as_its_folder_too() -> None:
    """`python -m kznllm_py.cli` (the folder) is the `kznllm` command, as it was when
    the CLI was one module."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("usage: kznllm ")
