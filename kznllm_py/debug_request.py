"""The debug view read back as a request body: what `:KznSend` sends after the user
edited the view (its model, parameters, system, messages or raw prompt). Pure.

The view (templates/_shared/debug.jinja) shows each text in a fence of five backticks,
so headings inside a message are text, never structure: a section is a `## Heading`
line outside a fence; `## Parameters` holds `- name: `json`` items; `## System`,
`## User`, `## Assistant` and `## Prompt` each hold fenced texts; a `---` line outside
a fence ends the request (the answer follows it)."""

from __future__ import annotations

import json
import re
from typing import Any

from kznllm_py.errors import ConfigError

FENCE = "`````"
_TITLE = re.compile(r"^# kznllm debug: .* · (?P<model>.+)$")
_PARAM = re.compile(r"^- (?P<name>[A-Za-z0-9_.-]+): `(?P<value>.*)`$")
_CACHE = re.compile(r"^_\(cache_control: (?P<json>.*)\)_$")
ROLES = {"System": "system", "User": "user", "Assistant": "assistant"}


def last_question(text: str) -> str:
    """The last User text of a debug view (what an edited request asks), or "" when the
    view does not read (sending it says why)."""
    try:
        body = parse(text, system_on_top=False)
    except ConfigError:
        return ""
    for message in reversed(body.get("messages") or []):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            return content
    return ""


def parse(text: str, *, system_on_top: bool) -> dict[str, Any]:
    """The body the view shows. `system_on_top`: the provider takes the system text as
    a top-level `system` (Anthropic), not as a message. ConfigError names the line of
    anything that does not read."""
    body: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    section = ""
    fenced: list[str] | None = None
    cache: Any = None
    for n, line in enumerate(text.split("\n"), start=1):
        if fenced is not None:
            if line == FENCE:
                _add(section, "\n".join(fenced), cache, body, messages, system, system_on_top)
                fenced, cache = None, None
            else:
                fenced.append(line)
            continue
        if line.startswith(FENCE):
            if section not in (*ROLES, "Prompt"):
                raise ConfigError(f"line {n}: a text outside a System, User, Assistant or Prompt")
            fenced = []
        elif line == "---":
            break
        elif line.startswith("## "):
            section = line[3:].strip()
        elif m := _TITLE.match(line):
            body["model"] = m["model"].strip()
        elif section == "Parameters" and (m := _PARAM.match(line)):
            try:
                body[m["name"]] = json.loads(m["value"])
            except json.JSONDecodeError as exc:
                col = m.start("value") + exc.pos + 1  # where in the line the JSON breaks
                raise ConfigError(
                    f"line {n}, column {col}: parameter {m['name']}: write a JSON value ({exc.msg})"
                ) from None
        elif section == "System" and (m := _CACHE.match(line)):
            cache = json.loads(m["json"])
        elif section == "Parameters" and line.startswith("- "):
            raise ConfigError(f"line {n}: want `- name: \\`json\\``, got {line[:60]!r}")
    if fenced is not None:
        raise ConfigError(f"a {section} text is not closed (its {FENCE} line is missing)")
    if messages:
        body["messages"] = messages
    if system:
        body["system"] = system
    return body


def _add(
    section: str,
    text: str,
    cache: Any,
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    system: list[dict[str, Any]],
    system_on_top: bool,
) -> None:
    if section == "Prompt":
        body["prompt"] = text
    elif section == "System" and system_on_top:
        block: dict[str, Any] = {"type": "text", "text": text}
        if cache is not None:
            block["cache_control"] = cache
        system.append(block)
    else:
        messages.append({"role": ROLES[section], "content": text})
