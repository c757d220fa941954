"""API key resolution (env var, cmd:, none) and redaction."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kznllm_py import secrets
from kznllm_py.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(secrets, "_cmd_cache", {})


async def test_env_var_key_is_read_and_trimmed():
    assert await secrets.resolve("MY_KEY", env={"MY_KEY": "  sk-abc \n"}) == "sk-abc"


async def test_missing_env_var_names_the_variable_and_the_preset():
    with pytest.raises(ConfigError, match=r"^set MY_KEY for preset 'p1': its API key is missing"):
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


async def test_a_cmd_key_is_the_first_line_of_its_output_and_the_rest_is_dropped():
    spec = "cmd:printf 'sk-first-line-key-42\\nlogin: me@example.com\\nurl: https://x\\n'"
    assert await secrets.resolve(spec) == "sk-first-line-key-42"
    assert secrets.redact("me@example.com sk-first-line-key-42") == "me@example.com <redacted>"
    assert not any("example.com" in s for s in secrets._known)


async def test_a_cmd_key_with_an_empty_first_line_is_an_error():
    with pytest.raises(ConfigError, match="no key on the first line of its output"):
        await secrets.resolve("cmd:printf '\\nsk-second-line\\n'", preset_id="p")


def test_every_line_of_a_multi_line_secret_is_redacted():
    secrets.remember("sk-line-one-aaaa\nsk-line-two-bbbb")
    assert secrets.redact("got sk-line-two-bbbb, then sk-line-one-aaaa") == (
        "got <redacted>, then <redacted>"
    )


def test_clip_redacts_before_it_cuts_so_no_part_of_a_key_is_left():
    key = "sk-proj-" + "k" * 150
    secrets.remember(key)
    text = "x" * 290 + key + " tail"
    naive = secrets.redact(text[:300])
    assert key[:10] in naive  # what cutting first leaked
    clipped = secrets.clip(text, 300)
    assert clipped == "x" * 290 + "<redacted>"
    assert "sk-proj" not in clipped


@pytest.mark.parametrize("value", ["Bearer sk-a\nlogin: me", "Bearer sk-a\r\nX: 1", "sk\0x"])
def test_a_header_with_cr_lf_or_nul_is_refused_naming_the_preset_not_the_value(value):
    with pytest.raises(ConfigError) as err:
        secrets.check_headers({"Content-Type": "application/json", "Authorization": value}, "p1")
    text = str(err.value)
    assert text.startswith("preset 'p1': the Authorization header holds a line break or NUL")
    assert "sk" not in text.replace("settings", "") and "login" not in text


def test_userinfo_of_a_url_is_redacted_and_its_password_remembered():
    url = "https://bob:hunter2-pass%21@proxy.example:8443/v1/chat"
    assert secrets.redact_url(url) == "https://<redacted>@proxy.example:8443/v1/chat"
    assert secrets.redact_url("https://api.example/v1") == "https://api.example/v1"
    secrets.remember_url(url)
    assert secrets.redact("auth hunter2-pass! failed") == "auth <redacted> failed"
    assert secrets.redact("auth hunter2-pass%21 failed") == "auth <redacted> failed"


def test_a_key_with_gaps_between_its_characters_is_redacted_and_a_cut_one_too() -> None:
    key = "sk-gaps-0123456789abcdef"
    secrets.remember(key)
    assert secrets.redact(f"a {key[:6]} \n\u200b{key[6:]} b") == "a <redacted> b"
    assert secrets.redact(f"a {key[:4]}\u00ad{key[4:]}") == "a <redacted>"
    # a cap cut the key: its first part is no key to redact(), but redact_cut drops it
    cut = f"page text {key[:5]} {key[5:9]}"
    assert secrets.redact(cut) == cut
    assert secrets.redact_cut(cut) == "page text <redacted>"
    assert secrets.redact_cut("page text sk-") == "page text sk-"  # under 4 characters


STREAMED_KEY = "sk-streamed-5e1d0c7b9a"


@settings(deadline=None)
@given(
    before=st.text(max_size=40),
    after=st.text(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=8),
)
def test_a_key_a_server_streams_back_is_redacted_however_the_pieces_fall(
    before: str, after: str, cuts: list[int]
) -> None:
    secrets.remember(STREAMED_KEY)
    text = before + STREAMED_KEY + after
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    stream = secrets.SecretStream()
    shown = [stream.push(p) for p in pieces]
    shown.append(stream.finish())
    assert not any(STREAMED_KEY in s for s in shown)
    assert "".join(shown) == secrets.redact(text)
    assert secrets.REDACTED in "".join(shown)


def test_a_streamed_text_with_no_key_in_it_comes_through_as_it_is() -> None:
    secrets.remember(STREAMED_KEY)
    stream = secrets.SecretStream()
    out = [stream.push(p) for p in ("def f():\n", "    return 's", "k-' + x\n")]
    assert "".join(out) + stream.finish() == "def f():\n    return 'sk-' + x\n"
