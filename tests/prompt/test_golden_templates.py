"""Golden tests: every built-in template family, in every mode, rendered to the exact
text committed under tests/golden/. A change to a template shows up here as a diff to
review; after reviewing, regenerate with KZN_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kznllm_py.prompt.prompts import (
    ContextFile,
    FillContext,
    TemplateSet,
    families,
    render,
    render_raw,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("KZN_UPDATE_GOLDEN") == "1"

BUFFER = dict(
    filetype="python",
    path="src/shop.py",
    before="import math\n\n\ndef total(prices):\n",
    after="\n\nprint(total([1, 2]))\n",
    cursor=(4, 0),
)
FILES = (ContextFile(".kzn/style.md", "Prefer pure functions.\n"),)
VARIANTS = {
    "replace-full": FillContext(
        mode="replace",
        query="skip negative prices",
        selection="    return sum(prices)",
        context_files=FILES,
        prefill="    ",
        **BUFFER,
    ),
    "replace-no-context": FillContext(
        mode="replace", query="make it faster", selection="x = [i for i in range(10)]"
    ),
    "yap-full": FillContext(mode="yap", query="why math?", context_files=FILES, **BUFFER),
    "yap-query-only": FillContext(mode="yap", query="what is a monad?"),
}


def rendered(family: str, ctx: FillContext) -> str:
    ts = TemplateSet(family)
    prompt = render(ctx, ts, preset_id="golden", model="m")
    parts = [f"=== system ===\n{prompt.system}\n", f"=== user ===\n{prompt.messages[0].content}\n"]
    if family in ("qwen", "llama", "openai"):
        parts.append(f"=== prompt.jinja ===\n{render_raw(ctx, ts, 'prompt')}\n")
    if family == "qwen":
        parts.append(f"=== fim.jinja ===\n{render_raw(ctx, ts, 'fim')}\n")
    return "\n".join(parts)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("family", families())
def test_builtin_template_renders_exactly_as_committed(family: str, variant: str):
    path = GOLDEN / f"{family}__{variant}.txt"
    text = rendered(family, VARIANTS[variant])
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}: run with KZN_UPDATE_GOLDEN=1, review it"
    assert text == path.read_text(encoding="utf-8")
