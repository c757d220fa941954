"""The one provider contract: every registered provider declares what it supports as data
and offers the same pure functions; the code outside the provider modules never branches
on a provider's name (presets.py and generation.py read the declarations)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest

from kznllm_py.errors import StreamError
from kznllm_py.prompt.presets import preset_from_dict
from kznllm_py.prompt.prompts import families
from kznllm_py.providers import PROVIDERS
from kznllm_py.providers.base import Message, Param, Prompt, Provider
from kznllm_py.providers.jsonfast import dumps
from kznllm_py.stream.generation import DECODERS

ROOT = Path(__file__).resolve().parents[2]
PROMPT = Prompt("sys", (Message("user", "hi"),), raw="raw prompt")


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_declares_its_capabilities_as_data(name: str) -> None:
    p = PROVIDERS[name]
    assert type(p) is Provider and p.name == name
    assert p.stream_format in DECODERS
    assert p.family in families()
    url = urlparse(p.default_base_url)
    assert url.scheme in ("http", "https") and url.netloc
    assert all(type(spec) is Param for spec in p.params.values())
    assert all(type(flag) is bool for flag in (p.raw_prompt, p.supports_prefill, p.reasoning))


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_provider_builds_a_streamed_request_and_parses_an_empty_body(name: str) -> None:
    p = PROVIDERS[name]
    base = "https://res.openai.azure.com" if p.needs_base_url else p.default_base_url
    req = p.build_request(base_url=base, model="m", prompt=PROMPT, params={}, api_key="k-1")
    assert req.method == "POST" and req.url.startswith(base.rstrip("/"))
    assert "k-1" not in str(req.redacted_headers()) and "k-1" not in str(req.body)
    if p.raw_prompt:
        assert "raw prompt" in str(req.body)
    else:
        assert "hi" in str(req.body)
    with pytest.raises(StreamError, match=f"^{name}: "):
        p.new_parser().finish()  # a body that ended before anything: cut short


@pytest.mark.parametrize("name", [n for n, p in PROVIDERS.items() if not p.raw_prompt])
def test_a_system_text_is_sent_and_an_empty_one_is_no_system_at_all(name: str) -> None:
    p = PROVIDERS[name]
    base = "https://res.openai.azure.com" if p.needs_base_url else p.default_base_url

    def body(system: str) -> str:
        prompt = Prompt(system, (Message("user", "hi"),))
        req = p.build_request(base_url=base, model="m", prompt=prompt, params={}, api_key=None)
        return dumps(req.body).decode()

    assert "SYSTEM-TEXT" in body("SYSTEM-TEXT")
    assert "system" not in body("").lower()  # no system role, block or instruction


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_wrongly_typed_param_is_refused_naming_the_preset_and_field(name: str) -> None:
    p = PROVIDERS[name]
    typed = next(k for k, spec in p.params.items() if int not in spec.types)
    raw = {"id": "x", "provider": name, "model": "m", "params": {typed: 3 + 4j}}
    if p.needs_base_url:
        raw["base_url"] = "https://res.openai.azure.com"
    with pytest.raises(Exception, match=f"^preset 'x': params.{typed}: want "):
        preset_from_dict(raw)


# bodies that hold no words of any provider (not JSON, an empty error, an empty text)
WORDLESS = [None, "404 page not found", [], {}, {"error": None}, {"error": ""}]
WORDLESS += [{"error": {"message": ""}}, {"message": ""}, {"detail": ""}]


@pytest.mark.parametrize("body", WORDLESS, ids=repr)
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_an_error_body_without_words_gives_no_message(name: str, body: object) -> None:
    assert PROVIDERS[name].error_message(body) is None  # the caller shows the status


def test_the_editor_offers_a_model_list_for_every_provider_that_declares_one() -> None:
    lua = (ROOT / "lua" / "kznllm" / "models.lua").read_text()
    table = re.search(r"^M\.unlisted = \{(.*)\}$", lua, re.M)
    assert table is not None
    unlisted = set(re.findall(r"(\w+) = true", table.group(1)))
    assert unlisted == {name for name, p in PROVIDERS.items() if p.models is None}


def test_closed_providers_refuse_unknown_params_and_open_ones_pass_them() -> None:
    for name, p in PROVIDERS.items():
        problems = p.check_params({"no_such_param": 1})
        if p.open_params:
            assert problems == [], name
        else:
            assert problems and problems[0][0] == "params.no_such_param", name


def _provider_names_in(path: Path) -> list[str]:
    """Provider names compared against, or provider modules imported, in `path`."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in PROVIDERS:
                    found.append(f"line {node.lineno}: compares with {side.value!r}")
        if isinstance(node, ast.ImportFrom) and node.module == "kznllm_py.providers":
            found += [f"imports {a.name}" for a in node.names if a.name in PROVIDERS]
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "kznllm_py.providers."
        ):
            mod = (node.module or "").rsplit(".", 1)[-1]
            if mod in PROVIDERS:
                found.append(f"imports kznllm_py.providers.{mod}")
    return found


@pytest.mark.parametrize(
    "module",
    [
        "prompt/presets.py",
        "stream/generation.py",
        "stream/prepare.py",
        "prompt/prompts.py",
        "fill/job.py",
    ],
)
def test_the_core_names_no_provider(module: str) -> None:
    assert _provider_names_in(ROOT / "kznllm_py" / module) == []
