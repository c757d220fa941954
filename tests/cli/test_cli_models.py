"""The CLI's request options and model lists, as a user runs them: `kznllm` as a
subprocess against a loopback server. `--provider completions` without a preset,
`-o/--option NAME VALUE`, and `kznllm models` for every provider family that lists
its models (OpenAI-compatible, Ollama, Anthropic, Gemini with their pagination, and
Mistral)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py import models
from kznllm_py.providers import PROVIDERS
from tests.cli_env import clean_env
from tests.servers import LoopbackServer, Reply, json_reply, openai_events

KEY_VAR = "KZN_TEST_MODELS_KEY"
KEY = "sk-models-test-0123456789"


def kznllm(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = clean_env("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OLLAMA_BASE_URL", **{KEY_VAR: KEY})
    return subprocess.run(
        [sys.executable, "-m", "kznllm_py.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def models_cli(tmp_path: Path, provider: str, base_url: str, *extra: str):
    """`kznllm models` for a server of `provider` at `base_url`, with the test key."""
    return kznllm(
        tmp_path,
        "models",
        "--provider",
        provider,
        "--base-url",
        base_url,
        "--api-key",
        KEY_VAR,
        *extra,
    )


def completion_events(texts: list[str]) -> list[bytes]:
    out = [
        b"data: " + json.dumps({"choices": [{"index": 0, "text": t}]}).encode() + b"\n\n"
        for t in texts
    ]
    done = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
    return [*out, b"data: " + json.dumps(done).encode() + b"\n\n", b"data: [DONE]\n\n"]


# -- fill: --provider completions, -o ------------------------------------------------------


def test_provider_completions_works_without_a_preset(server, tmp_path):
    server.queue(Reply(chunks=completion_events(["def ", "f(): ..."])))
    res = kznllm(
        tmp_path,
        *("fill", "--provider", "completions", "--model", "base-7b"),
        *("--base-url", server.base_url, "write f"),
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "def f(): ...", "")
    [req] = server.requests
    assert req.path == "/v1/completions"
    prompt = req.body["prompt"]
    assert "write f" in prompt and prompt.endswith("Answer:\n")
    assert "<|im_start|>" not in prompt  # no model's chat tokens: any model reads it


def test_options_set_typed_request_parameters(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = kznllm(
        tmp_path,
        *("fill", "--provider", "openai", "--model", "m", "--base-url", server.base_url),
        *("--api-key", KEY_VAR),
        *("-o", "temperature", "0.2", "--option", "max_tokens", "64"),
        *("-o", "stop", '["\\n\\n"]', "-o", "user", "alice", "-o", "logprobs", "true"),
        "q",
    )
    assert (res.returncode, res.stdout, res.stderr) == (0, "ok", "")
    body = server.requests[0].body
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 64
    assert body["stop"] == ["\n\n"]
    assert body["user"] == "alice"  # not JSON: the text as given
    assert body["logprobs"] is True
    assert body["stream"] is True  # an option cannot turn streaming off


def test_options_override_a_presets_params_and_keep_the_rest(server, tmp_path):
    server.queue(Reply(chunks=openai_events(["ok"])))
    res = kznllm(
        tmp_path,
        *("fill", "--preset", "gpt-4o-mini", "--base-url", server.base_url),
        *("-o", "temperature", "0", "-o", "seed", "7", "q"),
        OPENAI_API_KEY=KEY,
    )
    assert res.returncode == 0, res.stderr
    body = server.requests[0].body
    assert (body["temperature"], body["seed"]) == (0, 7)
    assert body["stream_options"] == {"include_usage": True}  # the preset's own
    assert body["model"] == "gpt-4o-mini"


def test_render_shows_the_options_and_sends_nothing(tmp_path):
    res = kznllm(
        tmp_path,
        *("render", "--provider", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"),
        *("-o", "temperature", "0.3", "--json", "q"),
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["body"]["temperature"] == 0.3


# -- kznllm models -------------------------------------------------------------------------


def test_models_of_an_openai_compatible_server(server, tmp_path):
    server.queue(
        json_reply(200, {"object": "list", "data": [{"id": "b-model"}, {"id": "a-model"}]})
    )
    res = models_cli(tmp_path, "openai", server.base_url)
    assert (res.returncode, res.stdout, res.stderr) == (0, "a-model\nb-model\n", "")
    [req] = server.requests
    assert (req.method, req.path) == ("GET", "/v1/models")
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_models_of_ollama_from_its_preset_and_base_url_variable(server, tmp_path):
    # the built-in `ollama` preset speaks Ollama's OpenAI-compatible /v1: /v1/models
    listing = {
        "object": "list",
        "data": [
            {"id": "qwen2.5-coder:7b", "object": "model", "owned_by": "library"},
            {"id": "llama3.2:1b", "object": "model", "owned_by": "library"},
        ],
    }
    server.queue(json_reply(200, listing))
    res = kznllm(
        tmp_path, "models", "--preset", "ollama", "--json", OLLAMA_BASE_URL=server.base_url
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == ["llama3.2:1b", "qwen2.5-coder:7b"]
    assert server.requests[0].path == "/v1/models"


def test_models_of_native_ollama(server, tmp_path):
    server.queue(json_reply(200, {"models": [{"name": "phi4:latest"}]}))
    res = kznllm(tmp_path, "models", "--provider", "ollama", "--base-url", server.url)
    assert (res.returncode, res.stdout) == (0, "phi4:latest\n")
    assert server.requests[0].path == "/api/tags"
    assert "authorization" not in server.requests[0].headers


def test_models_of_ollama_behind_a_proxy_send_its_key_as_fills_do(server, tmp_path):
    server.queue(json_reply(200, {"models": [{"name": "phi4:latest"}]}))
    res = models_cli(tmp_path, "ollama", server.url)
    assert (res.returncode, res.stdout) == (0, "phi4:latest\n")
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_models_of_anthropic_follow_the_pages(server, tmp_path):
    server.queue(
        json_reply(
            200,
            {
                "data": [{"id": "claude-b", "type": "model"}],
                "has_more": True,
                "first_id": "claude-b",
                "last_id": "claude-b",
            },
        ),
        json_reply(
            200,
            {
                "data": [{"id": "claude-a", "type": "model"}],
                "has_more": False,
                "first_id": "claude-a",
                "last_id": "claude-a",
            },
        ),
    )
    res = models_cli(tmp_path, "anthropic", server.url)
    assert (res.returncode, res.stdout, res.stderr) == (0, "claude-a\nclaude-b\n", "")
    first, second = server.requests
    assert first.path == "/v1/models?limit=1000"
    assert second.path == "/v1/models?limit=1000&after_id=claude-b"
    assert first.headers["x-api-key"] == KEY
    assert first.headers["anthropic-version"]


def test_models_of_gemini_that_generate_content(server, tmp_path):
    server.queue(
        json_reply(
            200,
            {
                "models": [
                    {
                        "name": "models/gemini-2.5-flash",
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    },
                    {
                        "name": "models/text-embedding-004",
                        "supportedGenerationMethods": ["embedContent"],
                    },
                ],
                "nextPageToken": "p2",
            },
        ),
        json_reply(
            200,
            {
                "models": [
                    {
                        "name": "models/gemini-2.5-pro",
                        "supportedGenerationMethods": ["generateContent"],
                    },
                ]
            },
        ),
    )
    res = models_cli(tmp_path, "gemini", server.base_url + "beta")
    assert (res.returncode, res.stdout, res.stderr) == (0, "gemini-2.5-flash\ngemini-2.5-pro\n", "")
    assert server.requests[1].path == "/v1beta/models?pageSize=1000&pageToken=p2"
    assert server.requests[0].headers["x-goog-api-key"] == KEY


def test_models_of_mistral_that_chat(server, tmp_path):
    listing = {
        "object": "list",
        "data": [
            {"id": "mistral-small-latest", "capabilities": {"completion_chat": True}},
            {"id": "mistral-embed", "capabilities": {"completion_chat": False}},
            {"id": "codestral-2501"},  # a card without capabilities is kept
        ],
    }
    server.queue(json_reply(200, listing))
    res = models_cli(tmp_path, "mistral", server.base_url)
    assert (res.returncode, res.stdout, res.stderr) == (
        0,
        "codestral-2501\nmistral-small-latest\n",
        "",
    )
    [req] = server.requests
    assert (req.method, req.path) == ("GET", "/v1/models")
    assert req.headers["authorization"] == f"Bearer {KEY}"


def test_models_error_is_the_providers_message(server, tmp_path):
    server.queue(json_reply(401, {"error": {"message": f"bad key {KEY}", "type": "auth"}}))
    res = models_cli(tmp_path, "openai", server.base_url)
    assert res.returncode == 1
    assert res.stderr == (
        "kznllm: openai error (HTTP 401): check $KZN_TEST_MODELS_KEY (preset 'cli'): "
        "the server refused the key: bad key <redacted>\n"
    )


def test_a_models_list_of_the_wrong_shape_is_one_message(server, tmp_path):
    server.queue(json_reply(200, {"models": "none here"}))
    res = models_cli(tmp_path, "openai", server.base_url)
    assert res.returncode == 1
    assert res.stderr.startswith("kznllm: openai: unexpected models list: ")


@pytest.mark.parametrize("name", [n for n, p in PROVIDERS.items() if p.models is not None])
def test_every_listing_refuses_a_body_of_the_wrong_shape(name):
    listing = PROVIDERS[name].models
    assert listing is not None
    with pytest.raises((KeyError, TypeError, AttributeError)):
        listing.parse(["not", "a", "table"])


def test_models_of_a_provider_without_a_list(tmp_path):
    res = kznllm(tmp_path, "models", "--provider", "azure", "--base-url", "https://x.example")
    assert res.returncode == 1
    assert "listing models is not supported for provider 'azure'" in res.stderr


def test_a_server_that_pages_forever_is_not_followed_forever(tmp_path):
    endless = {"data": [{"id": "m"}], "has_more": True, "last_id": "m"}
    with LoopbackServer(default=json_reply(200, endless)) as srv:
        res = kznllm(tmp_path, "models", "--provider", "anthropic", "--base-url", srv.url)
    assert (res.returncode, res.stdout) == (0, "m\n")
    assert len(srv.requests) == models.MAX_PAGES
