"""The reasoning switch (`reasoning = 'off'|'low'|'medium'|'high'`): one preset field
and CLI option, spelled per provider by data (the golden requests of every mapping are
in tests/golden/wire/, `=== reasoning=... ===`). Here: what is refused at setup (field
and reason), raw params beside the switch, a model picked later, and `kznllm render`
/ `kznllm fill -o reasoning high` against a loopback server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.prompt.presets import (
    builtin_presets,
    merge_presets,
    preset_from_dict,
    request_params,
)
from kznllm_py.settings import Settings
from tests.cli_env import clean_env
from tests.servers import LoopbackServer, Reply, openai_events

NO_FILE = {"XDG_CONFIG_HOME": "/nonexistent"}


def problems_of(raw: dict[str, Any]) -> tuple[str, ...]:
    merged = merge_presets([raw], file=None, env=NO_FILE)
    assert raw["id"] not in merged.presets or not merged.problems
    return merged.problems


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            {"provider": "openai", "model": "o4-mini", "reasoning": "off"},
            "reasoning: 'off' is not possible with openai model 'o4-mini': o-series models "
            "always reason (lowest: 'low')",
        ),
        (
            {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "reasoning": "low"},
            "reasoning: 'low' is not possible with anthropic model 'claude-3-5-haiku-latest': "
            "this Claude model does not think",
        ),
        (
            {"provider": "gemini", "model": "gemini-2.5-pro", "reasoning": "off"},
            "cannot stop thinking",
        ),
        (
            {"provider": "mistral", "model": "magistral-medium-latest", "reasoning": "high"},
            "reasoning: mistral model 'magistral-medium-latest' has no reasoning switch",
        ),
        (
            {"provider": "openai", "model": "gpt-5", "reasoning": "hard"},
            "reasoning: want one of 'off', 'low', 'medium', 'high', not 'hard'",
        ),
        (
            {
                "provider": "openai",
                "model": "gpt-5",
                "reasoning": "high",
                "params": {"reasoning_effort": "low"},
            },
            "reasoning: params.reasoning_effort = 'low' says otherwise than reasoning = 'high'",
        ),
    ],
)
def test_a_level_the_provider_cannot_do_is_refused_at_setup_with_field_and_reason(
    raw: dict[str, Any], reason: str
) -> None:
    [problem] = problems_of({"id": "p", **raw})
    assert problem.startswith("preset 'p': ")
    assert reason in problem


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        pytest.param(
            {
                "provider": "responses",
                "model": "gpt-5.1",
                "reasoning": "high",
                "params": {"reasoning": {"summary": "detailed"}, "max_output_tokens": 99},
            },
            {"reasoning": {"effort": "high", "summary": "detailed"}, "max_output_tokens": 99},
            id="raw-params-still-pass-and-may-change-a-detail-of-the-switch",
        ),
        pytest.param(
            {
                "provider": "anthropic",
                "model": "claude-haiku-4-5",
                "reasoning": "medium",
                "params": {"max_tokens": 1000, "temperature": 0.7, "top_k": 5, "metadata": {}},
            },
            {
                "thinking": {"type": "enabled", "budget_tokens": 8192},
                "max_tokens": 9192,
                "metadata": {},
            },
            id="anthropic-budget-grows-max-tokens-and-drops-what-thinking-refuses",
        ),
    ],
)
def test_the_switch_beside_raw_params_gives_the_request_params(
    raw: dict[str, Any], sent: dict[str, Any]
) -> None:
    assert request_params(preset_from_dict({"id": "p", **raw})) == sent


def test_no_switch_leaves_params_as_they_are() -> None:
    for p in builtin_presets():
        if not p.reasoning:
            assert request_params(p) == dict(p.params)


def test_builtin_reasoning_presets_use_the_switch() -> None:
    by_id = {p.id: p for p in builtin_presets()}
    assert request_params(by_id["o4-mini"])["reasoning_effort"] == "medium"
    assert request_params(by_id["gpt-5-mini"])["reasoning"] == {"effort": "low", "summary": "auto"}


def test_a_model_picked_later_that_cannot_do_the_level_is_an_error_at_the_fill() -> None:
    preset = preset_from_dict(
        {"id": "g", "provider": "gemini", "model": "gemini-2.5-flash", "reasoning": "off"}
    )
    settings = Settings(presets={"g": preset}, models={"g": "gemini-2.5-pro"})
    with pytest.raises(ConfigError, match="reasoning: 'off' is not possible"):
        request_params(settings.preset("g"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(XDG_CONFIG_HOME=str(cwd / "cfg")),
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def test_cli_option_reasoning_sends_the_providers_spelling(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = run_cli(
        "fill",
        "--provider",
        "openai",
        "--model",
        "gpt-5.1",
        "--base-url",
        server.url + "/v1",
        "-o",
        "reasoning",
        "off",
        "--no-project",
        "q",
        cwd=tmp_path,
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "ok", "")
    [req] = server.requests
    assert req.body["reasoning_effort"] == "none" and "reasoning" not in req.body


def test_cli_option_reasoning_refused_with_the_reason_and_nothing_sent(tmp_path: Path) -> None:
    res = run_cli(
        "render",
        "--preset",
        "gpt-4o-mini",
        "-o",
        "reasoning",
        "high",
        "--no-project",
        "q",
        cwd=tmp_path,
    )
    assert res.returncode != 0 and res.stdout == ""
    assert "reasoning: 'high' is not possible with openai model 'gpt-4o-mini'" in res.stderr


def test_cli_option_reasoning_as_a_table_stays_a_raw_param(tmp_path: Path) -> None:
    raw = json.dumps({"effort": "low"})
    res = run_cli(
        "render",
        "--provider",
        "responses",
        "--model",
        "gpt-5",
        "-o",
        "reasoning",
        raw,
        "--no-project",
        "q",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert '- reasoning: `{"effort": "low"}`' in res.stdout


def test_setup_reports_a_refused_level_once_and_keeps_the_other_presets() -> None:
    from kznllm_py.settings import from_config

    bad = {"id": "o", "provider": "openai", "model": "o3", "reasoning": "off"}
    good = {"id": "g", "provider": "openai", "model": "gpt-5.1", "reasoning": "off"}
    settings = from_config({"presets": [bad, good]})
    [problem] = [p for p in settings.problems if "preset 'o'" in p]
    assert "reasoning: 'off' is not possible with openai model 'o3'" in problem
    assert "o" not in settings.presets
    assert request_params(settings.presets["g"]) == {"reasoning_effort": "none"}
