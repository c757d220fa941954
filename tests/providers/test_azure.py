"""Azure OpenAI: the deployment URL with its `api-version`, the key in `api-key`, OpenAI's
body and stream with Azure's extras (empty-`choices` chunks carrying filter results), its
error bodies; pure request building, then the real client over loopback, then the
`kznllm` command line (fill, and render with the key redacted)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.prompt.presets import (
    Preset,
    builtin_presets,
    check_presets,
    default_preset,
    merge_presets,
    preset_from_dict,
)
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.providers import azure, get_provider
from kznllm_py.providers.base import Message, Prompt
from kznllm_py.stream.client import new_client
from tests.cli_env import kznllm as run_cli
from tests.servers import LoopbackServer, Reply, json_reply
from tests.streams import generate

KEY_VAR = "KZN_TEST_AZURE_KEY"
KEY = "azk-0123456789abcdef-SECRET"
CTX = FillContext(mode="yap", query="say hello", filetype="python")
PROMPT = Prompt("You are terse.", (Message("user", "hi"),))
TEXTS = ["Hél", "lo\n", "wörld ✓ 🎉"]
AZURE_VARS = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_DEPLOYMENT",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DEEPSEEK_API_KEY",
    "GROQ_API_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*AZURE_VARS, "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_VAR, KEY)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_client() as c:
        yield c


def build(base_url: str, model: str = "my-gpt4o", **params: Any):
    return azure.build_request(
        base_url=base_url, model=model, prompt=PROMPT, params=params, api_key=KEY
    )


# -- Azure's stream, as it comes off the wire ---------------------------------------------

FILTER_OK = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def azure_events(
    texts: list[str], *, finish: str = "stop", usage: dict[str, int] | None = None
) -> list[bytes]:
    """A chat completions stream as Azure sends it: first a chunk with empty `choices`
    and the prompt's filter results, a role-only delta, content deltas each with its
    filter results, the finish chunk, an asynchronous-filter annotation with no delta,
    an optional usage chunk (empty `choices`), then [DONE]."""
    base = {
        "created": 1700000000,
        "id": "chatcmpl-azure",
        "model": "gpt-4o-2024-08-06",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_azure",
    }

    def choice(delta: dict[str, Any], reason: str | None, filters: dict) -> dict[str, Any]:
        return {
            "content_filter_results": filters,
            "delta": delta,
            "finish_reason": reason,
            "index": 0,
            "logprobs": None,
        }

    out = [
        _sse(
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTER_OK}],
            }
        ),
        _sse({**base, "choices": [choice({"content": "", "role": "assistant"}, None, {})]}),
    ]
    out += [_sse({**base, "choices": [choice({"content": t}, None, FILTER_OK)]}) for t in texts]
    out.append(_sse({**base, "choices": [choice({}, finish, {})]}))
    out.append(
        _sse(
            {
                "choices": [
                    {
                        "content_filter_offsets": {
                            "check_offset": 0,
                            "start_offset": 0,
                            "end_offset": 20,
                        },
                        "content_filter_results": FILTER_OK,
                        "finish_reason": None,
                        "index": 0,
                    }
                ],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
            }
        )
    )
    if usage is not None:
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


# -- the URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "want"),
    [
        # the resource endpoint ($AZURE_OPENAI_ENDPOINT): the model is the deployment
        (
            "https://res.openai.azure.com",
            "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions"
            "?api-version=2024-10-21",
        ),
        (
            "https://res.cognitiveservices.azure.com/",
            "https://res.cognitiveservices.azure.com/openai/deployments/my-gpt4o/chat/completions"
            "?api-version=2024-10-21",
        ),
        # the full deployment URL: its deployment wins, its route and version are kept
        (
            "https://res.openai.azure.com/openai/deployments/other-dep",
            "https://res.openai.azure.com/openai/deployments/other-dep/chat/completions"
            "?api-version=2024-10-21",
        ),
        (
            "https://res.openai.azure.com/openai/deployments/other-dep/chat/completions"
            "?api-version=2024-06-01",
            "https://res.openai.azure.com/openai/deployments/other-dep/chat/completions"
            "?api-version=2024-06-01",
        ),
        # the v1 API: OpenAI's route, no dated version
        (
            "https://res.openai.azure.com/openai/v1/",
            "https://res.openai.azure.com/openai/v1/chat/completions",
        ),
        # behind an API gateway with a path prefix
        (
            "https://gw.example.com/aoai",
            "https://gw.example.com/aoai/openai/deployments/my-gpt4o/chat/completions"
            "?api-version=2024-10-21",
        ),
    ],
)
def test_url_from_endpoint_deployment_url_or_v1(base_url: str, want: str) -> None:
    assert build(base_url).url == want


def test_params_api_version_goes_to_the_query_never_the_body() -> None:
    req = build("https://res.openai.azure.com", api_version="2025-01-01-preview", top_p=0.5)
    assert req.url.endswith("/chat/completions?api-version=2025-01-01-preview")
    assert "api_version" not in req.body
    assert req.body["top_p"] == 0.5
    # it also wins over a version left in a deployment URL
    url = (
        "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=2023-05-15"
    )
    assert build(url, api_version="2024-10-21").url.endswith("?api-version=2024-10-21")


def test_deployment_name_is_quoted_in_the_path() -> None:
    req = build("https://res.openai.azure.com", model="team a/gpt")
    assert "/openai/deployments/team%20a%2Fgpt/chat/completions" in req.url


def test_key_goes_in_api_key_header_and_is_redacted() -> None:
    req = build("https://res.openai.azure.com")
    assert req.headers["api-key"] == KEY
    assert "Authorization" not in req.headers
    assert req.redacted_headers()["api-key"] == "<redacted>"
    assert KEY not in json.dumps(req.redacted_headers())
    no_key = azure.build_request(
        base_url="https://res.openai.azure.com",
        model="d",
        prompt=PROMPT,
        params={},
        api_key=None,
    )
    assert "api-key" not in no_key.headers and no_key.secret_headers == frozenset()


def test_body_is_openais_without_model_for_a_deployment_and_with_it_for_v1() -> None:
    body = build("https://res.openai.azure.com").body
    assert "model" not in body
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
    ]
    assert build("https://res.openai.azure.com/openai/v1").body["model"] == "my-gpt4o"


def test_o_series_deployment_gets_openais_reasoning_model_body() -> None:
    body = build("https://res.openai.azure.com", model="o4-mini", max_tokens=100).body
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body


def test_placeholder_endpoint_says_which_variable_to_set() -> None:
    with pytest.raises(ConfigError, match=r"set \$AZURE_OPENAI_ENDPOINT"):
        build(azure.PLACEHOLDER_ENDPOINT)


def test_deployment_url_without_a_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="no deployment name"):
        build("https://res.openai.azure.com/openai/deployments/")


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist.",
                }
            },
            "DeploymentNotFound: The API deployment for this resource does not exist.",
        ),
        (
            {
                "error": {
                    "code": "content_filter",
                    "message": "The response was filtered due to the prompt triggering "
                    "Azure OpenAI's content management policy.",
                    "param": "prompt",
                    "status": 400,
                    "innererror": {"code": "ResponsibleAIPolicyViolation"},
                }
            },
            "content_filter: The response was filtered due to the prompt triggering "
            "Azure OpenAI's content management policy.",
        ),
        ({"error": {"code": "429", "message": "429: Rate limit is exceeded."}}, "429: Rate limit"),
        (
            {"statusCode": 401, "message": "Access denied due to invalid subscription key."},
            "Access denied due to invalid subscription key.",
        ),
        ({"error": {"message": "no code"}}, "no code"),
        ({"unrelated": 1}, None),
    ],
)
def test_error_message_names_azures_code_and_text(body: dict, want: str | None) -> None:
    got = azure.error_message(body)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.startswith(want)


# -- presets ------------------------------------------------------------------------------


def test_azure_is_a_registered_provider() -> None:
    assert get_provider("azure") is azure.PROVIDER


def test_builtin_azure_preset_takes_endpoint_and_deployment_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "prod-gpt4o")
    p = {p.id: p for p in builtin_presets()}["azure"]
    assert (p.provider, p.base_url, p.model) == (
        "azure",
        "https://res.openai.azure.com",
        "prod-gpt4o",
    )
    assert p.api_key == "AZURE_OPENAI_API_KEY"
    # no version in the preset: the provider's default goes to the query string
    request = azure.build_request(
        base_url=p.base_url,
        model=p.model,
        prompt=Prompt("", ()),
        params=dict(p.params),
        api_key=None,
    )
    assert f"api-version={azure.DEFAULT_API_VERSION}" in request.url
    assert p.family == "openai"


def test_builtin_azure_without_endpoint_is_never_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"AZURE_OPENAI_API_KEY": "k"}
    assert default_preset(merge_presets(None).presets, env).id == "demo"
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    assert default_preset(merge_presets(None).presets, env).id == "azure"


@pytest.mark.parametrize("version", [20241021, "", None, ["2024-10-21"]])
def test_bad_api_version_is_reported_with_the_field(version: object) -> None:
    if version is None:
        assert check_presets([{"id": "az", "provider": "azure", "model": "d"}]) == []
        return
    problems = check_presets(
        [
            {
                "id": "az",
                "provider": "azure",
                "model": "d",
                "base_url": "https://res.openai.azure.com",
                "params": {"api_version": version},
            }
        ]
    )
    assert len(problems) == 1
    assert problems[0].startswith("preset 'az': params.api_version: want ")


# -- over loopback, through the real client ---------------------------------------------


def loopback_preset(server: LoopbackServer, **extra: Any) -> Preset:
    raw: dict[str, Any] = {
        "id": "test-azure",
        "provider": "azure",
        "model": "my-dep",
        "base_url": server.url,  # the resource endpoint
        "api_key": KEY_VAR,
        **extra,
    }
    return preset_from_dict(raw)


# one generation, one try, with this module's context
run = partial(generate, ctx=CTX)


async def test_request_on_the_wire_path_query_header_and_body(server, client) -> None:
    server.queue(Reply(chunks=azure_events(["x"])))
    preset = loopback_preset(server, params={"temperature": 0.1})
    out, text = await run(client, preset)
    assert (out.status, text) == ("ok", "x")
    [req] = server.requests
    assert req.method == "POST"
    assert req.path == "/openai/deployments/my-dep/chat/completions?api-version=2024-10-21"
    assert req.headers["api-key"] == KEY
    assert "authorization" not in req.headers
    assert req.headers["content-type"] == "application/json"
    assert "model" not in req.body and "api_version" not in req.body
    assert req.body["stream"] is True and req.body["temperature"] == 0.1
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]
    assert req.body["messages"][-1]["content"].endswith("say hello")


async def test_stream_with_filter_results_and_empty_choices_is_byte_exact(server, client) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    stream = azure_events(TEXTS, usage=usage)
    # one event per read, then all of it in one read
    server.queue(Reply(chunks=stream), Reply(chunks=[b"".join(stream)]))
    for _ in range(2):
        out, text = await run(client, loopback_preset(server))
        assert (out.status, out.error, text) == ("ok", None, "".join(TEXTS))
        assert out.usage == {"input_tokens": 12, "output_tokens": 3}
        assert out.finish_reason == "stop"


async def test_content_filter_finish_is_reported_as_the_finish_reason(server, client) -> None:
    server.queue(Reply(chunks=azure_events(["cut"], finish="content_filter")))
    out, text = await run(client, loopback_preset(server))
    assert (out.status, text, out.finish_reason) == ("ok", "cut", "content_filter")


@pytest.mark.parametrize(
    ("status", "body", "want"),
    [
        (
            404,
            {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist.",
                }
            },
            "azure error (HTTP 404): DeploymentNotFound: The API deployment for this "
            "resource does not exist.",
        ),
        (
            401,
            {"statusCode": 401, "message": "Access denied due to invalid subscription key."},
            "azure error (HTTP 401): check $KZN_TEST_AZURE_KEY (preset 'test-azure'): the "
            "server refused the key: Access denied due to invalid subscription key.",
        ),
    ],
)
async def test_error_body_is_one_message_with_status_and_azures_text(
    status, body, want, server, client
) -> None:
    server.queue(json_reply(status, body))
    out, text = await run(client, loopback_preset(server))
    assert (out.status, text, out.error) == ("error", "", want)


async def test_error_echoing_the_key_is_redacted(server, client) -> None:
    body = {"error": {"code": "401", "message": f"Invalid key {KEY} for this resource."}}
    server.queue(json_reply(401, body))
    out, _ = await run(client, loopback_preset(server))
    assert out.status == "error"
    assert KEY not in (out.error or "")
    assert "Invalid key <redacted>" in (out.error or "")


async def test_mid_stream_error_is_attributed_to_azure(server, client) -> None:
    stream = azure_events(["part"])
    err = _sse({"error": {"code": "server_error", "message": "The server had an error."}})
    server.queue(Reply(chunks=[*stream[:3], err]))
    out, text = await run(client, loopback_preset(server))
    assert (out.status, text) == ("error", "part")
    assert out.error == "azure error: The server had an error."


# -- the command line ---------------------------------------------------------------------


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    env.pop("all_proxy", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env.update(extra)
    return env


def kznllm(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return run_cli(*args, cwd=tmp_path, env=env, timeout=30)


def test_cli_fill_with_the_builtin_azure_preset(server, tmp_path) -> None:
    server.queue(Reply(chunks=azure_events(TEXTS)))
    env = cli_env(
        tmp_path,
        AZURE_OPENAI_ENDPOINT=server.url,
        AZURE_OPENAI_DEPLOYMENT="cli-dep",
        AZURE_OPENAI_API_KEY=KEY,
    )
    res = kznllm(tmp_path, "fill", "--preset", "azure", "say hi", env=env)
    assert (res.returncode, res.stderr) == (0, b"")
    assert res.stdout == "".join(TEXTS).encode()
    [req] = server.requests
    assert req.path == "/openai/deployments/cli-dep/chat/completions?api-version=2024-10-21"
    assert req.headers["api-key"] == KEY
    assert req.body["stream_options"] == {"include_usage": True}


def test_cli_fill_error_goes_to_stderr_without_the_key(server, tmp_path) -> None:
    body = {"error": {"code": "DeploymentNotFound", "message": f"No deployment (key {KEY})"}}
    server.queue(json_reply(404, body))
    env = cli_env(tmp_path, AZURE_OPENAI_API_KEY=KEY)
    res = kznllm(tmp_path, "fill", "--preset", "azure", "--base-url", server.url, "say hi", env=env)
    assert res.returncode == 1 and res.stdout == b""
    err = res.stderr.decode()
    assert err.startswith("kznllm: azure error (HTTP 404): DeploymentNotFound: No deployment")
    assert KEY not in err


def test_cli_fill_without_an_endpoint_says_what_to_set(tmp_path) -> None:
    env = cli_env(tmp_path, AZURE_OPENAI_API_KEY=KEY)
    res = kznllm(tmp_path, "fill", "--preset", "azure", "say hi", env=env)
    assert res.returncode == 1 and res.stdout == b""
    assert b"set $AZURE_OPENAI_ENDPOINT" in res.stderr


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "debug-view"])
def test_render_shows_the_request_with_the_key_redacted(as_json: bool, tmp_path) -> None:
    env = cli_env(
        tmp_path, AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_API_KEY=KEY
    )
    args = ["render", "--preset", "azure", *(["--json"] if as_json else []), "q"]
    res = kznllm(tmp_path, *args, env=env)
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    assert KEY not in out
    assert "res.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions" in out
    assert "api-version=2024-10-21" in out
    if as_json:
        shown = json.loads(out)
        assert shown["headers"]["api-key"] == "<redacted>"
        assert "model" not in shown["body"]
    else:
        assert "api-key" in out and "<redacted>" in out
