"""Prompt rendering with Jinja2: one template set per model family, sandboxed.

Templates are found on a search path, first hit wins: the project's
`.kzn/templates/<family>/`, the user's `stdpath('config')/kznllm/templates/<family>/`,
then the built-in `templates/<family>/`. Every family has `system.jinja` and
`user.jinja` (the debug view is no template: kznllm_py/prompt/debug_request.py);
completion-style families (qwen, llama) also have `prompt.jinja`
(one raw prompt) and qwen a fill-in-the-middle `fim.jinja`.

All templates render in Jinja2's immutable sandbox (project templates are untrusted),
with a time and size budget (kznllm_py/prompt/sandbox.py), with trim_blocks and lstrip_blocks;
a missing variable is falsy, never an error. A template error is one message: template
path, line, what is wrong.

Variables (documented in doc/kznllm.txt): user_query, visual_selection, replace,
current_buffer_context {path, filetype, text, cursor {row, col}, before, after},
context_files [{path, content}], context_sections [{kind, title, text, cut}] (the
user message's sections: kznllm_py/prompt/sections.py), project_rules [the same, for
the system prompt], prefill, preset {id, model}, date.
"""

from __future__ import annotations

import datetime
import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from kznllm_py import secrets
from kznllm_py.errors import ConfigError
from kznllm_py.prompt import debug_request, project_templates, sandbox
from kznllm_py.prompt.context import estimate_tokens
from kznllm_py.prompt.sections import Left, Placed
from kznllm_py.providers.base import HttpRequest, Message, Prompt

MODES = ("replace", "yap")
# the buffer text sent around the selection/cursor, each side (characters)
CONTEXT_CAP = 24_000


@dataclass(frozen=True)
class ContextFile:
    path: str
    content: str
    tokens: int = 0


@dataclass(frozen=True)
class FillContext:
    mode: str  # "replace" | "yap"
    query: str
    selection: str = ""
    filetype: str = ""
    path: str = ""
    before: str = ""  # buffer text before the selection / cursor
    after: str = ""  # buffer text after it
    # the buffer's 'commentstring' when the answer must be code for it (fill/shape.py)
    code_comment: str = ""
    cursor: tuple[int, int] | None = None  # 1-based row, 0-based byte column
    context_files: tuple[ContextFile, ...] = ()
    prefill: str = ""
    # the context sections sent (rules, scope, diagnostics, ...) and those left out
    sections: tuple[Placed, ...] = ()
    left: tuple[Left, ...] = ()


@dataclass(frozen=True)
class TemplateSet:
    """Where a family's templates come from. `explicit` maps a role (system, user,
    debug) to a file given in the preset; everything else goes through the search path."""

    family: str = "openai"
    search_dirs: tuple[Path, ...] = ()
    explicit: Mapping[str, str] = field(default_factory=dict)


@functools.cache  # found once: the package does not move while it runs (a miss raises)
def builtin_root() -> Path:
    here = Path(__file__).resolve().parent.parent  # the package (kznllm_py/)
    for candidate in (here.parent / "templates", here / "templates"):
        if (candidate / "_shared").is_dir():
            return candidate
    raise ConfigError(f"the built-in prompt templates are missing next to {here}")


def families(root: Path | None = None) -> tuple[str, ...]:
    """The template families under `root` (default: the built-in ones): every folder
    holding a `system.jinja`, sorted. A new family is a new folder, nothing else."""
    base = builtin_root() if root is None else root
    return tuple(sorted(p.parent.name for p in base.glob("*/system.jinja")))


# project template folders (real paths) in a search path: read confined, and judged
# against the trust database given (None: the caller decided, kznllm_py/fill/job.py)
_PROJECT: dict[Path, Path | None] = {}


def project_dir(root: str, trust_db: Path | None) -> Path:
    """A project's templates folder (`project_templates.templates_root`) as an entry of
    a search path: its templates are read through project_templates.ProjectLoader."""
    path = Path(root)
    _PROJECT[path] = trust_db
    return path


def search_path(
    *,
    project_kzn: Path | None = None,
    user_config: Path | None = None,
) -> tuple[Path, ...]:
    """The template roots, first hit wins: project (confined; whoever calls with it has
    decided it is trusted, see project_templates.decide), user, built-in."""
    dirs: list[Path] = []
    if project_kzn is not None:
        root = project_templates.templates_root(project_kzn)
        if root is not None:
            dirs.append(project_dir(root, None))
    if user_config is not None and (user_config / "kznllm" / "templates").is_dir():
        dirs.append(user_config / "kznllm" / "templates")
    dirs.append(builtin_root())
    return tuple(dirs)


def _loader(d: Path, trust_db: Path | None, project: bool) -> jinja2.BaseLoader:
    if project:
        return project_templates.ProjectLoader(str(d), trust_db)
    return jinja2.FileSystemLoader(str(d))


def _environment(dirs: tuple[Path, ...]) -> jinja2.Environment:
    return _cached_environment(tuple((d, _PROJECT.get(d), d in _PROJECT) for d in dirs))


@functools.lru_cache(maxsize=16)
def _cached_environment(dirs: tuple[tuple[Path, Path | None, bool], ...]) -> jinja2.Environment:
    env = sandbox.GuardedSandbox(
        loader=jinja2.ChoiceLoader([_loader(*d) for d in dirs]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
    )
    return env


def _template_position() -> tuple[str | None, int | None]:
    """The template file and line of the error being handled: Jinja rewrites tracebacks
    so that template frames carry the template's file name and line. The innermost one
    wins: an error inside an included or imported template is reported there, not at
    the template that pulled it in."""
    tb = sys.exc_info()[2]
    where: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:  # a rewritten template frame
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _render(ts: TemplateSet, role: str, variables: Mapping[str, Any]) -> str:
    env = _environment(ts.search_dirs or (builtin_root(),))
    explicit = ts.explicit.get(role)
    name = explicit or f"{ts.family}/{role}.jinja"
    template: jinja2.Template | None = None  # compiling may stop before there is one
    try:
        if explicit:
            file = Path(explicit).expanduser()
            template = env.from_string(file.read_text(encoding="utf-8"))
            template.filename = str(file)
        else:
            template = env.get_template(name)
        return sandbox.render_template(template, dict(variables))
    except sandbox.RenderStopped:
        raise
    except project_templates.TemplateRefused as exc:
        raise ConfigError(f"project template {exc}; nothing was sent") from None
    except jinja2.TemplateNotFound as exc:
        where = ", ".join(str(d) for d in (ts.search_dirs or (builtin_root(),)))
        raise ConfigError(f"template {exc.name} not found (searched {where})") from None
    except jinja2.TemplateSyntaxError as exc:
        path = exc.filename or explicit or name
        raise ConfigError(f"template {path}:{exc.lineno}: {exc.message}") from None
    except OSError as exc:
        raise ConfigError(f"template {name}: cannot read it: {exc.strerror or exc}") from None
    except Exception as exc:  # UndefinedError, SecurityError, errors inside filters...
        in_file, line = _template_position()
        shown = in_file or getattr(template, "filename", None) or name
        at = f":{line}" if line else ""
        if isinstance(exc, sandbox.RenderLimit):
            raise ConfigError(f"template {shown}{at}: {exc}") from None
        raise ConfigError(f"template {shown}{at}: {type(exc).__name__}: {exc}") from None


def variables(ctx: FillContext, *, preset_id: str = "", model: str = "") -> dict[str, Any]:
    if ctx.mode not in MODES:
        raise ConfigError(f"unknown mode {ctx.mode!r} (want one of {', '.join(MODES)})")
    before, after = ctx.before[-CONTEXT_CAP:], ctx.after[:CONTEXT_CAP]
    buffer = None
    if before or after or ctx.path or ctx.filetype:
        buffer = {
            "path": ctx.path,
            "filetype": ctx.filetype,
            "text": before + (ctx.selection if ctx.mode == "replace" else "") + after,
            "cursor": {"row": ctx.cursor[0], "col": ctx.cursor[1]} if ctx.cursor else None,
            "before": before,
            "after": after,
        }
    return {
        "user_query": ctx.query,
        "visual_selection": ctx.selection,
        # a yap in a code buffer: code only, prose as comments like `example`
        "code_answer": {
            "comment": ctx.code_comment,
            "example": ctx.code_comment.replace("%s", "a note", 1),
        }
        if ctx.code_comment
        else None,
        "replace": ctx.mode == "replace",
        "current_buffer_context": buffer,
        "context_files": [{"path": f.path, "content": f.content} for f in ctx.context_files],
        "context_sections": [_section(s) for s in ctx.sections if not s.system],
        "project_rules": [_section(s) for s in ctx.sections if s.system],
        "prefill": ctx.prefill,
        "preset": {"id": preset_id, "model": model},
        "date": datetime.date.today().isoformat(),
    }


def _section(s: Placed) -> dict[str, Any]:
    return {"kind": s.kind, "title": s.title, "text": s.text, "cut": s.cut}


def render(
    ctx: FillContext,
    templates: TemplateSet | None = None,
    *,
    preset_id: str = "",
    model: str = "",
) -> Prompt:
    ts = templates or TemplateSet()
    values = variables(ctx, preset_id=preset_id, model=model)
    system = _render(ts, "system", values).strip()
    user = _render(ts, "user", values).strip()
    return Prompt(system=system, messages=(Message("user", user),), prefill=ctx.prefill)


def render_raw(ctx: FillContext, templates: TemplateSet, role: str, **extra: Any) -> str:
    """A completion-style template (`prompt`, `fim`) as one string, untrimmed."""
    values = variables(ctx, preset_id=extra.pop("preset_id", ""), model=extra.pop("model", ""))
    return _render(templates, role, {**values, **extra})


def render_debug(
    request: HttpRequest,
    *,
    preset_id: str,
    provider: str = "",
    skipped: Sequence[Mapping[str, str]] = (),
    context_files: Sequence[ContextFile] = (),
    context_window: int | None = None,
    project_dir: str = "",
    sections: Sequence[Placed] = (),
    left: Sequence[Left] = (),
    notes: Sequence[str] = (),
) -> str:
    """The debug view's text: the exact request as it goes on the wire (system and
    messages in the provider's own shape), key headers redacted, what context went in.
    The layout is the plugin's own (kznllm_py/prompt/debug_request.py), no template."""
    body = request.body
    texts = [_content_text(m.get("content")) for m in body.get("messages") or []]
    system = body.get("system")
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts += [str(b.get("text", "")) for b in system if isinstance(b, dict)]
    prompt_tokens = sum(estimate_tokens(t) for t in texts)
    raw_prompt = body.get("prompt")
    prompt_tokens += estimate_tokens(raw_prompt) if isinstance(raw_prompt, str) else 0
    estimate: dict[str, Any] = {"prompt_tokens": prompt_tokens}
    if context_window:
        estimate["context_window"] = context_window
        estimate["percent"] = round(100 * prompt_tokens / context_window, 1)
    return debug_request.render(
        preset_id=preset_id,
        provider=provider,
        method=request.method,
        url=secrets.redact_url(request.url),
        headers=request.redacted_headers(),
        body=body,
        estimate=estimate,
        project_dir=project_dir,
        context_files=[{"path": f.path, "tokens": f.tokens} for f in context_files],
        skipped=skipped,
        sections=[{"title": s.title, "tokens": s.tokens, "cut": s.cut} for s in sections],
        left=[{"title": s.title, "reason": s.reason} for s in left],
        notes=notes,
    )


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "\n".join(str(b.get("text", b)) if isinstance(b, dict) else str(b) for b in content)
    return str(content)
