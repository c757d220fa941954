"""Azure OpenAI: OpenAI's Chat Completions body and stream, at an Azure deployment URL,
with the key in the `api-key` header (never `Authorization`).

How a preset says where (`base_url`), tried in this order:

- a deployment URL, `https://RES.openai.azure.com/openai/deployments/DEP` (anything after
  the deployment name, e.g. `/chat/completions?api-version=...`, may be left on): that
  deployment; an `api-version` in its query is used unless `params.api_version` says
  otherwise;
- the v1 API, `https://RES.openai.azure.com/openai/v1`: `{base_url}/chat/completions`, the
  deployment name as `model` in the body, no `api-version` (unless `params.api_version`);
- the resource endpoint, `https://RES.openai.azure.com` (as in `$AZURE_OPENAI_ENDPOINT`;
  `*.cognitiveservices.azure.com` and API gateways alike): `model` is the deployment,
  `{base_url}/openai/deployments/{model}/chat/completions?api-version={api_version}`.

`params.api_version` (default `DEFAULT_API_VERSION`, the latest GA data-plane inference
version) goes to the query string, never into the body. For deployment URLs the body has
no `model` (the deployment picks the model). The stream is OpenAI's, plus Azure's extras,
which the OpenAI parser skips: a first chunk with empty `choices` carrying
`prompt_filter_results`, `content_filter_results` next to each delta, and chunks with
filter results and no delta at all.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from kznllm_py.errors import ConfigError
from kznllm_py.providers import openai
from kznllm_py.providers.base import Auth, HttpRequest, Param, Prompt, Provider, non_empty, post

NAME = "azure"
DEFAULT_API_VERSION = "2024-10-21"
# the built-in preset's base_url when $AZURE_OPENAI_ENDPOINT is not set: valid as a URL
# (so that the preset list loads), refused with a clear message when used
PLACEHOLDER_ENDPOINT = "https://YOUR-RESOURCE.openai.azure.com"
ENDPOINT_VAR = "AZURE_OPENAI_ENDPOINT"
_DEPLOYMENTS = "/openai/deployments/"


def chat_url(base_url: str, deployment: str, api_version: str | None) -> tuple[str, bool]:
    """The chat completions URL for `base_url` (see the module docstring), and whether the
    body names the model (the v1 API) rather than the URL (a deployment)."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    version = api_version or query.pop("api-version", "") or DEFAULT_API_VERSION
    query.pop("api-version", None)
    if path.endswith("/openai/v1"):
        path += "/chat/completions"
        if not api_version:
            version = ""  # the v1 API takes no dated version
        in_body = True
    else:
        at = (path + "/").find(_DEPLOYMENTS)
        if at >= 0:
            # a deployment URL: keep its deployment, drop whatever route follows it
            name = path[at + len(_DEPLOYMENTS) :].split("/", 1)[0]
            if not name:
                raise ConfigError(f"azure: no deployment name in base_url {base_url!r}")
            path = path[:at] + _DEPLOYMENTS + name
        else:
            path += _DEPLOYMENTS + quote(deployment, safe="")
        path += "/chat/completions"
        in_body = False
    if version:
        query["api-version"] = version
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), "")), in_body


def build_request(
    *, base_url: str, model: str, prompt: Prompt, params: dict[str, Any], api_key: str | None
) -> HttpRequest:
    if urlsplit(base_url).hostname == urlsplit(PLACEHOLDER_ENDPOINT).hostname:
        raise ConfigError(
            f"azure: no endpoint: set ${ENDPOINT_VAR} (https://<resource>.openai.azure.com) "
            f"or the preset's base_url"
        )
    params = dict(params)
    api_version = params.pop("api_version", None)
    url, model_in_body = chat_url(base_url, model, api_version)
    # OpenAI's body (o-series handling included: it goes by the deployment's name)
    oa = openai.build_request(base_url="", model=model, prompt=prompt, params=params, api_key=None)
    body = dict(oa.body)
    if not model_in_body:
        body.pop("model", None)
    return post(url, body, api_key, auth=Auth("api-key", ""))


def error_message(body: Any) -> str | None:
    """`{"error": {"code", "message"}}` as "code: message" (Azure's codes say what is wrong:
    DeploymentNotFound, content_filter, 429...); else what OpenAI's reader finds (e.g. the
    gateway's `{"statusCode": 401, "message": ...}`)."""
    message = openai.error_message(body)
    if message and isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        if isinstance(code, str | int) and not isinstance(code, bool) and str(code):
            code = str(code)
            if not message.startswith(code):
                message = f"{code}: {message}"
    return message


PROVIDER = Provider(
    name=NAME,
    description="Azure OpenAI (a deployment, the v1 API or the resource endpoint)",
    default_base_url=PLACEHOLDER_ENDPOINT,
    build_request=build_request,
    error_message=error_message,
    new_parser=partial(openai.Parser, NAME),  # errors name this provider
    reasoning=True,
    params={**openai.PARAMS, "api_version": Param((str,), non_empty)},
    needs_base_url=True,
    # a deployment name is the model's name by convention: OpenAI's rules
    reasoning_rules=openai.REASONING_RULES,
)
