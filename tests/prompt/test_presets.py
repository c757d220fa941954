"""Presets (built-ins, user overrides, validation, the default) and what a preset does to
the request: Anthropic prompt caching and prefill, OpenAI o-series quirks."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlparse

import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.prompt.presets import (
    DEMO_ID,
    Preset,
    builtin_presets,
    check_presets,
    default_preset,
    merge_presets,
    pick,
    preset_from_dict,
    validate,
)
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import anthropic, openai
from kznllm_py.providers.base import Message, Prompt
from kznllm_py.stream.client import new_client
from kznllm_py.stream.prepare import prepare
from tests.servers import Reply, anthropic_events
from tests.streams import generate, loopback_preset

KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "GROQ_API_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*KEY_VARS, "VLLM_BASE_URL", "OLLAMA_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


def builtins() -> dict[str, Preset]:
    return {p.id: p for p in builtin_presets()}


def the_one(pred) -> Preset:
    found = [p for p in builtin_presets() if pred(p)]
    assert found, "no built-in preset matches"
    return found[0]


# -- built-ins -------------------------------------------------------------------------


@pytest.mark.parametrize("preset", builtin_presets(), ids=lambda p: p.id)
def test_every_builtin_validates(preset):
    validate(preset)
    assert preset.description
    # and survives the same path a user preset takes
    raw = {k: v for k, v in dataclasses.asdict(preset).items()}
    assert preset_from_dict(raw) == preset


def test_builtin_ids_are_unique_and_merge_keeps_them_all():
    ids = [p.id for p in builtin_presets()]
    assert len(ids) == len(set(ids))
    assert list(merge_presets(None).presets) == ids
    assert list(merge_presets([]).presets) == ids


def test_builtins_cover_claude_sonnet_and_haiku():
    for name in ("sonnet", "haiku"):
        p = the_one(lambda p, n=name: p.provider == "anthropic" and n in p.model)
        assert urlparse(p.base_url).hostname == "api.anthropic.com"
        assert p.api_key == "ANTHROPIC_API_KEY"
        assert p.family == "anthropic"
        assert p.cache_system is True


def test_builtins_cover_gpt_4o_mini_and_an_o_series_model():
    mini = the_one(lambda p: p.model == "gpt-4o-mini")
    reasoning = the_one(lambda p: p.provider == "openai" and openai.is_reasoning_model(p.model))
    for p in (mini, reasoning):
        assert p.provider == "openai"
        assert urlparse(p.base_url).hostname == "api.openai.com"
        assert p.api_key == "OPENAI_API_KEY"
    assert "max_tokens" not in reasoning.params


def test_builtin_qwen_coder_on_local_vllm_defaults_to_localhost():
    p = the_one(lambda p: "Qwen2.5-Coder" in p.model and "VLLM" in p.description)
    assert p.family == "qwen"
    assert p.api_key is False
    url = urlparse(p.base_url)
    assert url.hostname in ("127.0.0.1", "localhost")
    assert url.path == "/v1"


def test_builtin_qwen_coder_base_url_comes_from_vllm_base_url(monkeypatch):
    monkeypatch.setenv("VLLM_BASE_URL", "http://gpu-box:8001/v1")
    p = the_one(lambda p: "Qwen2.5-Coder" in p.model and "VLLM" in p.description)
    assert p.base_url == "http://gpu-box:8001/v1"
    validate(p)


def test_builtins_cover_llama_on_groq_and_deepseek_beta():
    groq = the_one(lambda p: urlparse(p.base_url).hostname == "api.groq.com")
    assert "llama" in groq.model.lower()
    assert groq.family == "llama"
    assert groq.api_key == "GROQ_API_KEY"
    deepseek = the_one(lambda p: p.model == "deepseek-chat")
    assert deepseek.base_url == "https://api.deepseek.com/beta"
    assert deepseek.family == "deepseek"
    assert deepseek.api_key == "DEEPSEEK_API_KEY"


def test_builtins_cover_local_ollama_on_v1():
    p = the_one(lambda p: "ollama" in p.id.lower())
    url = urlparse(p.base_url)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 11434, "/v1")
    assert p.provider == "openai"
    assert p.api_key is False


def test_builtins_cover_the_offline_demo():
    demo = builtins()[DEMO_ID]
    assert demo.demo is True
    assert demo.api_key is False
    assert "demo" in demo.description.lower()


# -- user presets ----------------------------------------------------------------------


def test_user_preset_adds_a_new_id():
    presets = merge_presets(
        [{"id": "lmstudio", "provider": "openai", "model": "m", "base_url": "http://h:1234/v1"}]
    ).presets
    assert list(presets)[-1] == "lmstudio"
    p = presets["lmstudio"]
    assert (p.provider, p.model, p.base_url) == ("openai", "m", "http://h:1234/v1")
    assert p.family == "openai"
    assert len(presets) == len(builtin_presets()) + 1


def test_partial_override_keeps_the_other_fields():
    before = builtins()["claude-sonnet"]
    after = merge_presets([{"id": "claude-sonnet", "model": "claude-sonnet-4-0"}]).presets[
        "claude-sonnet"
    ]
    assert after == dataclasses.replace(before, model="claude-sonnet-4-0")


def test_override_params_merge_with_the_builtin_params():
    base = builtins()["gpt-4o-mini"]
    p = merge_presets([{"id": "gpt-4o-mini", "params": {"temperature": 0.1, "seed": 7}}]).presets[
        "gpt-4o-mini"
    ]
    assert p.params == {**base.params, "temperature": 0.1, "seed": 7}
    assert p.params["stream_options"] == {"include_usage": True}
    assert (p.model, p.base_url, p.api_key) == (base.model, base.base_url, base.api_key)


def test_later_user_preset_overrides_an_earlier_one():
    presets = merge_presets(
        [
            {"id": "x", "provider": "openai", "model": "a", "params": {"top_p": 0.5}},
            {"id": "x", "model": "b", "params": {"seed": 1}},
        ]
    ).presets
    assert presets["x"].model == "b"
    assert presets["x"].params == {"top_p": 0.5, "seed": 1}


def test_none_values_leave_the_field_alone():
    p = merge_presets([{"id": "groq-llama", "model": None}]).presets["groq-llama"]
    assert p.model == builtins()["groq-llama"].model


BAD: list[tuple[str, Any, tuple[str, ...]]] = [
    (
        "unknown provider",
        {"id": "bad", "provider": "cohere", "model": "m"},
        ("preset 'bad'", "unknown provider 'cohere'", "anthropic", "openai"),
    ),
    ("missing model", {"id": "bad", "provider": "openai"}, ("preset 'bad'", "missing model")),
    (
        "empty model",
        {"id": "bad", "provider": "openai", "model": ""},
        ("preset 'bad'", "missing model"),
    ),
    ("missing provider", {"id": "bad", "model": "m"}, ("preset 'bad'", "missing provider")),
    (
        "bad URL, no scheme",
        {"id": "bad", "provider": "openai", "model": "m", "base_url": "localhost:8000/v1"},
        ("preset 'bad'", "bad base_url 'localhost:8000/v1'", "http"),
    ),
    (
        "bad URL, ftp",
        {"id": "bad", "provider": "openai", "model": "m", "base_url": "ftp://host/v1"},
        ("preset 'bad'", "bad base_url 'ftp://host/v1'"),
    ),
    (
        "bad URL, no host",
        {"id": "bad", "provider": "openai", "model": "m", "base_url": "http:///v1"},
        ("preset 'bad'", "bad base_url"),
    ),
    (
        "bad URL on a built-in override",
        {"id": "claude-haiku", "base_url": "api.anthropic.com"},
        ("preset 'claude-haiku'", "bad base_url 'api.anthropic.com'"),
    ),
    (
        "unknown field",
        {"id": "bad", "provider": "openai", "model": "m", "temprature": 0.2},
        ("preset 'bad'", "unknown field(s) temprature", "known: "),
    ),
    (
        "bad templates key",
        {"id": "bad", "provider": "openai", "model": "m", "templates": {"sytem": "/x.jinja"}},
        ("preset 'bad'", "templates: unknown key(s) sytem", "family", "system"),
    ),
    (
        "templates not a name or table",
        {"id": "bad", "provider": "openai", "model": "m", "templates": 3},
        ("preset 'bad'", "templates must be"),
    ),
    *[
        (
            f"bad context_window {value!r}",
            {"id": "bad", "provider": "openai", "model": "m", "context_window": value},
            ("preset 'bad'", "context_window must be a positive number of tokens"),
        )
        for value in (0, -1, "128k", 1.5, True)
    ],
    (
        "params not a table",
        {"id": "bad", "provider": "openai", "model": "m", "params": [1]},
        ("preset 'bad'", "params must be a table"),
    ),
    (
        "params not a table on an override",
        {"id": "o4-mini", "params": "fast"},
        ("preset 'o4-mini'", "params must be a table"),
    ),
    (
        "api_key true",
        {"id": "bad", "provider": "openai", "model": "m", "api_key": True},
        ("preset 'bad'", "api_key must be"),
    ),
    (
        "prefill not a string",
        {"id": "bad", "provider": "anthropic", "model": "m", "prefill": 1},
        ("preset 'bad'", "prefill must be a string"),
    ),
    (
        "unknown placement",
        {"id": "bad", "provider": "openai", "model": "m", "placement": "sideways"},
        ("preset 'bad'", "placement must be one of 'auto', 'cursor', 'below', 'above'"),
    ),
    ("no id", {"provider": "openai", "model": "m"}, ("needs an id",)),
    ("not a table", "gpt-4o-mini", ("a preset must be a table, not str",)),
    ("a list", [1, 2], ("a preset must be a table, not list",)),
]


@pytest.mark.parametrize(("raw", "expect"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_invalid_preset_names_the_field_and_the_reason(raw, expect):
    merged = merge_presets([raw])
    [msg] = merged.problems
    for part in expect:
        assert part in msg
    assert "\n" not in msg
    assert check_presets([raw]) == [msg]
    # left out, not fatal: every built-in (the demo too) is still there
    assert {p.id for p in builtin_presets()} <= set(merged.presets)


def test_check_presets_returns_every_problem_not_just_the_first():
    good = {"id": "fine", "provider": "openai", "model": "m"}
    user = [
        {"id": "one", "provider": "cohere", "model": "m"},
        good,
        "not a table",
        {"id": "two", "provider": "openai", "model": "m", "context_window": 0},
        {"id": "gpt-4o-mini", "temperature": 1},
        {"id": "fine", "params": {"seed": 1}},  # overrides the good one above: fine too
    ]
    problems = check_presets(user)
    assert len(problems) == 4
    assert "preset 'one'" in problems[0] and "cohere" in problems[0]
    assert "must be a table" in problems[1]
    assert "preset 'two'" in problems[2] and "context_window" in problems[2]
    assert "preset 'gpt-4o-mini'" in problems[3] and "temperature" in problems[3]


def test_check_presets_of_good_presets_is_empty():
    assert check_presets(None) == []
    assert check_presets([]) == []
    assert (
        check_presets(
            [
                {"id": "claude-sonnet", "model": "claude-opus-4-1", "prefill": "<answer>"},
                {"id": "mine", "provider": "anthropic", "model": "m", "templates": "anthropic"},
                {
                    "id": "t",
                    "provider": "openai",
                    "model": "m",
                    "templates": {"system": "/s.jinja"},
                },
            ]
        )
        == []
    )


# -- the default preset ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEMO_ID),
        ({"OPENAI_API_KEY": "sk-x"}, "gpt-4o-mini"),
        ({"GROQ_API_KEY": "gsk", "DEEPSEEK_API_KEY": "ds"}, "deepseek-chat"),
        ({"GROQ_API_KEY": "gsk"}, "groq-llama"),
        ({"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-ant"}, "claude-sonnet"),
        ({"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "  "}, DEMO_ID),
        ({"SOME_OTHER_KEY": "x"}, DEMO_ID),
    ],
)
def test_default_preset_is_the_first_builtin_with_a_key_else_demo(env, expected):
    presets = merge_presets(None).presets
    assert default_preset(presets, env).id == expected
    assert pick(presets, None, env).id == expected
    assert pick(presets, "", env).id == expected


def test_default_preset_reads_the_real_environment(monkeypatch):
    assert default_preset(merge_presets(None).presets).id == DEMO_ID
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert default_preset(merge_presets(None).presets).id == "claude-sonnet"


def test_default_preset_is_the_users_version_of_the_builtin():
    presets = merge_presets([{"id": "gpt-4o-mini", "model": "gpt-4.1-mini"}]).presets
    chosen = default_preset(presets, {"OPENAI_API_KEY": "sk-x"})
    assert (chosen.id, chosen.model) == ("gpt-4o-mini", "gpt-4.1-mini")


def test_default_preset_uses_the_key_variable_the_user_gave():
    presets = merge_presets([{"id": "claude-sonnet", "api_key": "MY_ANTHROPIC_KEY"}]).presets
    # the built-in's variable is set, but the user's preset reads another one
    assert default_preset(presets, {"ANTHROPIC_API_KEY": "x"}).id == "claude-haiku"
    assert default_preset(presets, {"MY_ANTHROPIC_KEY": "x"}).id == "claude-sonnet"


def test_pick_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' \(known: .*demo"):
        pick(merge_presets(None).presets, "nope")


# -- what presets do to the request ----------------------------------------------------

PROMPT = Prompt(system="SYS", messages=(Message("user", "hello"),))


def anthropic_request(**prompt: Any) -> dict[str, Any]:
    return anthropic.build_request(
        base_url="https://api.anthropic.com/v1",
        model="claude-x",
        prompt=dataclasses.replace(PROMPT, **prompt),
        params={},
        api_key=None,
    ).body


def test_anthropic_cache_system_marks_the_system_block_ephemeral():
    body = anthropic_request(cache_system=True)
    assert body["system"] == [
        {"type": "text", "text": "SYS", "cache_control": {"type": "ephemeral"}}
    ]
    assert anthropic_request()["system"] == [{"type": "text", "text": "SYS"}]


def test_anthropic_cache_system_without_a_system_sends_no_block():
    assert "system" not in anthropic_request(system="", cache_system=True)


@pytest.mark.parametrize(
    ("prefill", "sent"),
    [("<code>", "<code>"), ("```python\n", "```python"), ("def f(  \n\t", "def f(")],
)
def test_anthropic_prefill_is_a_final_assistant_message_trailing_space_stripped(prefill, sent):
    body = anthropic_request(prefill=prefill)
    assert body["messages"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": sent},
    ]


@pytest.mark.parametrize("prefill", ["", " ", "\n\t "])
def test_anthropic_blank_prefill_adds_no_message(prefill):
    assert anthropic_request(prefill=prefill)["messages"] == [{"role": "user", "content": "hello"}]


def openai_request(model: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return openai.build_request(
        base_url="https://api.openai.com/v1",
        model=model,
        prompt=PROMPT,
        params=params if params is not None else {"max_tokens": 100, "temperature": 1},
        api_key=None,
    ).body


@pytest.mark.parametrize("model", ["o1", "o1-preview", "o3-mini", "o4-mini", "openai/o3"])
def test_openai_o_series_folds_system_into_first_user_and_uses_max_completion_tokens(model):
    body = openai_request(model)
    assert body["messages"] == [{"role": "user", "content": "SYS\n\nhello"}]
    assert all(m["role"] != "system" for m in body["messages"])
    assert body["max_completion_tokens"] == 100
    assert "max_tokens" not in body


def test_openai_o_series_keeps_an_explicit_max_completion_tokens():
    body = openai_request("o4-mini", {"max_completion_tokens": 5})
    assert body["max_completion_tokens"] == 5
    assert "max_tokens" not in body


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "openai/gpt-4o", "llama-3.3-70b"])
def test_openai_gpt_4o_keeps_the_system_role_and_max_tokens(model):
    body = openai_request(model)
    assert body["messages"] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "hello"},
    ]
    assert body["max_tokens"] == 100
    assert "max_completion_tokens" not in body


async def test_o_series_builtin_preset_request_has_no_system_role():
    preset = dataclasses.replace(builtins()["o4-mini"], api_key=False)
    _, request = await prepare(preset, FillContext(mode="yap", query="why?"))
    [message] = request.body["messages"]
    assert message["role"] == "user"
    assert message["content"].endswith("\n\nwhy?")
    assert request.body["max_completion_tokens"] == 16_000
    assert request.body["reasoning_effort"] == "medium"


async def test_claude_builtin_preset_request_caches_the_system_and_prefills():
    preset = merge_presets(
        [{"id": "claude-haiku", "api_key": False, "prefill": "<answer>\n"}]
    ).presets["claude-haiku"]
    _, request = await prepare(preset, FillContext(mode="yap", query="hi"))
    [system] = request.body["system"]
    assert system["cache_control"] == {"type": "ephemeral"}
    assert request.body["messages"][-1] == {"role": "assistant", "content": "<answer>"}
    assert request.body["max_tokens"] == 8192


async def test_openai_preset_ignores_the_prefill():
    preset = preset_from_dict(
        {"id": "p", "provider": "openai", "model": "gpt-4o", "api_key": False, "prefill": "X"}
    )
    _, request = await prepare(preset, FillContext(mode="yap", query="hi"))
    assert [m["role"] for m in request.body["messages"]] == ["system", "user"]


async def test_anthropic_prefill_is_prepended_to_the_answer(server):
    server.queue(Reply(chunks=anthropic_events([" x = 1", "\n"])))
    preset = loopback_preset(
        "anthropic",
        server.base_url,
        model="claude-x",
        prefill="def f():\n   ",
        cache_system=True,
    )
    async with new_client() as client:
        out, text = await generate(client, preset, ctx=FillContext(mode="yap", query="q"))
    assert (out.status, out.error) == ("ok", None)
    assert text == "def f(): x = 1\n"
    [req] = server.requests
    assert req.body["messages"][-1] == {"role": "assistant", "content": "def f():"}
    assert req.body["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_a_preset_may_say_where_its_normal_mode_answers_go():
    presets = merge_presets([{"id": "gpt-4o-mini", "placement": "split"}]).presets
    assert presets["gpt-4o-mini"].placement == "split"
    assert presets["claude-haiku"].placement == ""  # setup()'s placement applies


def test_a_debug_template_in_a_preset_is_refused_with_why() -> None:
    """The debug view's layout is the plugin's own (no template can hide what is sent):
    a preset still naming a debug template is told so, not silently ignored."""
    raw = {"id": "d", "provider": "openai", "model": "m", "templates": {"debug": "/x.jinja"}}
    with pytest.raises(ConfigError, match=r"templates\.debug is no longer read"):
        preset_from_dict(raw)
