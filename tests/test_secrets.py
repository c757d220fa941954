"""API key resolution (env var, cmd:, none) and redaction."""

from __future__ import annotations

import time

import pytest

from kznllm_py import secrets
from kznllm_py.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(secrets, "_cmd_cache", {})


async def test_env_var_key_is_read_and_trimmed():
    assert await secrets.resolve("MY_KEY", env={"MY_KEY": "  sk-abc \n"}) == "sk-abc"


async def test_missing_env_var_names_the_variable_and_the_preset():
    with pytest.raises(ConfigError, match=r"preset 'p1'.*environment variable MY_KEY"):
        await secrets.resolve("MY_KEY", preset_id="p1", env={})


@pytest.mark.parametrize("spec", [None, False, ""])
async def test_no_key_for_servers_that_need_none(spec):
    assert await secrets.resolve(spec) is None


async def test_cmd_key_runs_once_trims_and_is_cached(tmp_path):
    counter = tmp_path / "runs"
    spec = f"cmd:echo run >> {counter}; printf '  sk-from-cmd  \\n'"
    assert await secrets.resolve(spec) == "sk-from-cmd"
    assert await secrets.resolve(spec) == "sk-from-cmd"
    assert counter.read_text().count("run") == 1


async def test_failing_cmd_shows_its_stderr_never_its_stdout():
    spec = "cmd:echo sk-leaked-secret; echo 'vault is locked' >&2; exit 3"
    with pytest.raises(ConfigError) as err:
        await secrets.resolve(spec, preset_id="p")
    text = str(err.value)
    assert "exit 3" in text and "vault is locked" in text
    assert "sk-leaked-secret" not in text


async def test_hanging_cmd_is_stopped_at_the_timeout(monkeypatch):
    monkeypatch.setattr(secrets, "CMD_TIMEOUT_S", 0.3)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="did not finish within"):
        await secrets.resolve("cmd:sleep 10")
    assert time.monotonic() - t0 < 3


async def test_cmd_with_empty_output_is_an_error():
    with pytest.raises(ConfigError, match="failed"):
        await secrets.resolve("cmd:true")


async def test_resolved_keys_are_redacted_from_any_text():
    key = await secrets.resolve("K", env={"K": "sk-redact-me-123"})
    assert key
    assert secrets.redact(f"401: bad key {key}!") == "401: bad key <redacted>!"


def test_describe_never_shows_a_command_or_key():
    assert secrets.describe("cmd:pass show openai") == "a key command (cmd:)"
    assert secrets.describe("OPENAI_API_KEY") == "$OPENAI_API_KEY"
    assert secrets.describe(False) == "no key"
