"""The debug view's request: its text (`render`), the plugin's own layout and no template
a project could override, and that text read back (`parse`) as the body `:KznSend`
sends after the user edited the view, to the preset the view names (`origin`, `check`).
Pure.

Layout, top to bottom: a title (`# kznllm debug: PRESET · MODEL`), the request line
(`` `POST URL` ``), the preset and the provider (`- preset: `"id"``, `- provider:
`"openai"``: JSON, so no name breaks its line), the headers (keys redacted), `##
Parameters` (`- name: `json``), `## Context` (token estimate, project folder, files
included and skipped), then `## System`, `## User`, `## Assistant` (or `## Prompt`)
sections, each holding fenced texts, and a `---` line that ends the request (the
answer follows it and is never read back).

Every text of the request (the buffer's, a project file's, a template's) sits in a
fence of backticks longer than any run of backticks inside it (five at least), so no
line of it can close the fence or become structure. A text holding a CR or a NUL, which
a buffer line cannot keep as they are, is fenced as `text escaped`: its backslashes,
CRs and NULs written `\\\\`, `\\r`, `\\0`. Paths and reasons of the context section are
shown as JSON strings when they hold a backtick or a control character. Reading the
view back gives exactly the body that was rendered (tests/fill/test_debug_view_property.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kznllm_py.errors import ConfigError, printable

MIN_FENCE = 5
TITLE = "# kznllm debug: "
_TITLE = re.compile(r"^# kznllm debug: .* · (?P<model>.+)$")
_PARAM = re.compile(r"^- (?P<name>[A-Za-z0-9_.-]+): `(?P<value>.*)`$")
_FIELDS = re.compile(r"^_\((?P<name>cache_control|fields): (?P<json>.*)\)_$")
_OPEN = re.compile(r"^(?P<fence>`{5,})text(?P<escaped> escaped)?$")
_REQUEST_LINE = re.compile(r"^`(?P<method>[A-Z]+) (?P<url>\S+)`$")
_ESCAPES = {"\\\\": "\\", "\\r": "\r", "\\0": "\0"}
_UNESCAPE = re.compile(r"\\[\\r0]")
ROLES = {"System": "system", "User": "user", "Assistant": "assistant", "Developer": "developer"}
HEADINGS = {role: heading for heading, role in ROLES.items()}


# -- rendering ----------------------------------------------------------------------------


def fence_for(text: str) -> str:
    """Backticks longer than the longest run of them in `text`, five at least."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(MIN_FENCE, longest + 1)


def fenced(text: str) -> str:
    """`text` in a fence it cannot close; escaped when it holds a CR or a NUL."""
    info = "text"
    if "\r" in text or "\0" in text:
        info = "text escaped"
        text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\0", "\\0")
    fence = fence_for(text)
    return f"{fence}{info}\n{text}\n{fence}"


def _code(text: str) -> str:
    """An inline code span for a name or path: as it is when safe, else a JSON string."""
    if "`" in text or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return f"`{text}`"


def section_lines(
    sections: Sequence[Mapping[str, Any]],
    left: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
) -> list[str]:
    """The context sections sent, those left out and why, and what the editor said
    about gathering them: one line each, in the same words in the debug view and in
    `:KznContext` (kznllm_py/fill/context_view.py)."""
    out = []
    for sec in sections:
        cut = ", cut to fit" if sec.get("cut") else ""
        out.append(f"- section {_code(str(sec['title']))} (~{sec.get('tokens', 0)} tokens{cut})")
    for sec in left:
        out.append(f"- left out {_code(str(sec['title']))}: {printable(str(sec['reason']))}")
    out += [f"- {printable(n)}" for n in notes]
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(
    *,
    preset_id: str,
    provider: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    estimate: Mapping[str, Any],
    project_dir: str = "",
    context_files: Sequence[Mapping[str, Any]] = (),
    skipped: Sequence[Mapping[str, str]] = (),
    sections: Sequence[Mapping[str, Any]] = (),
    left: Sequence[Mapping[str, Any]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The view's text for a request (`url` and `headers` already redacted)."""
    rest = dict(body)
    messages = rest.pop("messages", None) or []
    system = rest.pop("system", None)
    prompt = rest.pop("prompt", None)
    model = rest.pop("model", "")
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    out = [f"{TITLE}{printable(preset_id)} · {printable(str(model))}", ""]
    out.append(f"`{method} {printable(url)}`")
    out.append("")
    out.append(f"- preset: `{_json(preset_id)}`")
    out.append(f"- provider: `{_json(provider)}`")
    out += [f"- {printable(name)}: {printable(value)}" for name, value in headers.items()]
    out += ["", "## Parameters", ""]
    out += [f"- {name}: `{_json(value)}`" for name, value in rest.items()]
    out += ["", "## Context", ""]
    tokens = f"- estimated prompt tokens: ~{estimate.get('prompt_tokens', 0)}"
    if estimate.get("context_window"):
        tokens += f" of {estimate['context_window']} ({estimate.get('percent')}%)"
    out.append(tokens)
    if project_dir:
        out.append(f"- project folder: {_code(project_dir)}")
    for f in context_files:
        out.append(f"- included {_code(str(f['path']))} (~{f.get('tokens', 0)} tokens)")
    for s in skipped:
        out.append(f"- skipped {_code(s['path'])}: {printable(s['reason'])}")
    if not project_dir and not context_files and not skipped:
        out.append("- no project files (no `.kzn` folder)")
    out += section_lines(sections, left, notes)
    if system:
        out += ["", "## System"]
        for block in system:
            extra = {k: v for k, v in block.items() if k not in ("type", "text")}
            if "cache_control" in extra:
                out += ["", f"_(cache_control: {_json(extra.pop('cache_control'))})_"]
            if extra or block.get("type", "text") != "text":
                out += ["", f"_(fields: {_json({'type': block.get('type'), **extra})})_"]
            out += ["", fenced(str(block.get("text", "")))]
    for message in messages:
        role = str(message.get("role", ""))
        heading = HEADINGS.get(role) or role.capitalize()
        out += ["", f"## {printable(heading)}", ""]
        extra = {k: v for k, v in message.items() if k not in ("role", "content")}
        if extra:
            out += [f"_(fields: {_json(extra)})_", ""]
        out.append(fenced(_content_text(message.get("content"))))
    if prompt is not None:
        out += ["", "## Prompt", "", fenced(str(prompt))]
    out += ["", "---"]
    return "\n".join(out) + "\n\n"


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "\n".join(str(b.get("text", b)) if isinstance(b, dict) else str(b) for b in content)
    return "" if content is None else str(content)


# -- reading back --------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where the view's request was made for: its preset, provider and URL."""

    preset: str
    provider: str
    method: str
    url: str


def origin(text: str) -> Origin | None:
    """The preset, provider and request line the view names (before its first section);
    None when it names none (a view from before views named their preset)."""
    found: dict[str, str] = {}
    for line in text.split("\n"):
        if line.startswith("## ") or line == "---":
            break
        if m := _REQUEST_LINE.match(line):
            found.setdefault("method", m["method"])
            found.setdefault("url", m["url"])
        elif (m := _PARAM.match(line)) and m["name"] in ("preset", "provider"):
            try:
                value = json.loads(m["value"])
            except ValueError:
                continue
            if isinstance(value, str):
                found.setdefault(m["name"], value)
    if not {"preset", "provider", "url"} <= found.keys():
        return None
    return Origin(found["preset"], found["provider"], found.get("method", "POST"), found["url"])


def preset_of(text: str, known: Collection[str]) -> str:
    """The preset a view names, which `:KznSend` sends with (not the current one):
    ConfigError when the view names none or setup() no longer has it."""
    view = origin(text)
    if view is None:
        raise ConfigError(
            "this view names no preset (made by an older kznllm); nothing was sent "
            "(:KznDebug makes a new one)"
        )
    if view.preset not in known:
        raise ConfigError(
            f"the preset {printable(view.preset)!r} this view was made with is gone "
            "(setup() no longer has it); nothing was sent"
        )
    return view.preset


def check(text: str, *, preset_id: str, provider: str, url: str) -> None:
    """Refuse to send a view's request where the view was not made for: its preset now
    uses another provider or URL (`url` redacted, as the view shows it)."""
    view = origin(text)
    if view is None:
        raise ConfigError("this view names no preset (made by an older kznllm); nothing was sent")
    if (view.preset, view.provider, view.url) != (preset_id, provider, url):
        raise ConfigError(
            f"preset {preset_id!r} now sends to {provider} at {printable(url)}, not to "
            f"{printable(view.provider)} at {printable(view.url)} as this view was made "
            "for; nothing was sent (:KznDebug makes a view for it as it is now)"
        )


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


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
    fence: str | None = None  # the open fence's backticks
    escaped = False
    lines: list[str] = []
    extra: dict[str, Any] = {}
    for n, line in enumerate(text.split("\n"), start=1):
        if fence is not None:
            if line == fence:
                content = "\n".join(lines)
                content = _unescape(content) if escaped else content
                _add(section, content, extra, body, messages, system, system_on_top)
                fence, extra = None, {}
            else:
                lines.append(line)
            continue
        if m := _OPEN.match(line):
            if section in ("", "Parameters", "Context"):
                raise ConfigError(f"line {n}: a text outside a System, User, Assistant or Prompt")
            fence, escaped, lines = m["fence"], bool(m["escaped"]), []
        elif line.startswith("`````"):
            raise ConfigError(f"line {n}: a fence opens with `text` or `text escaped`")
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
        elif section not in ("", "Parameters", "Context") and (m := _FIELDS.match(line)):
            try:
                value = json.loads(m["json"])
            except ValueError as exc:
                raise ConfigError(f"line {n}: {m['name']}: not JSON ({exc})") from None
            if m["name"] == "cache_control":
                extra["cache_control"] = value
            elif isinstance(value, dict):
                extra.update(value)
        elif section == "Parameters" and line.startswith("- "):
            raise ConfigError(f"line {n}: want `- name: \\`json\\``, got {line[:60]!r}")
    if fence is not None:
        raise ConfigError(f"a {section} text is not closed (its {fence} line is missing)")
    if messages:
        body["messages"] = messages
    if system:
        body["system"] = system
    return body


def _add(
    section: str,
    text: str,
    extra: dict[str, Any],
    body: dict[str, Any],
    messages: list[dict[str, Any]],
    system: list[dict[str, Any]],
    system_on_top: bool,
) -> None:
    if section == "Prompt":
        body["prompt"] = text
    elif section == "System" and system_on_top:
        block: dict[str, Any] = {"type": extra.pop("type", None) or "text", "text": text}
        system.append({**block, **extra})
    else:
        role = ROLES.get(section, section.lower())
        message: dict[str, Any] = {"role": role, "content": text}
        messages.append({**message, **extra})
