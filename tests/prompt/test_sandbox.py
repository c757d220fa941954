"""Project templates with a budget: attack templates from a cloned repository stop with
one clear message, in bounded time and memory, and a render can be cancelled. Pure
(the editor side, with a real Neovim, is in test_security_editor.py)."""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from pathlib import Path

import pytest

from kznllm_py.errors import ConfigError
from kznllm_py.prompt import prompts, sandbox
from kznllm_py.prompt.prompts import FillContext, TemplateSet

BIG_QUERY = "q" * 1_000_000

# (name, template, the words the message must hold)
ATTACKS = [
    (
        "nested-ranges",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "longer than 2 s",
    ),
    (
        "nested-ranges-with-output",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "",
    ),
    ("string-repetition", '{{ "a" * 10**9 }}', "limit"),
    ("power", "{{ 9 ** 99999999 }}", "too large"),
    ("list-repetition", "{{ [user_query] * 100000 }}", "limit"),
    (
        "doubling",
        '{% set ns = namespace(s="ab") %}{% for i in range(64) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "limit",
    ),
    (
        "macro-buffer",
        "{% macro m() %}{% for i in range(100000) %}{% for j in range(100000) %}"
        "{{ user_query }}{% endfor %}{% endfor %}{% endmacro %}{{ m() }}",
        "limit",
    ),
    ("format-width", '{{ "{:>999999999}".format(1) }}', "format"),
    ("percent-width", '{{ "%0999999999d" % 1 }}', "format"),
    ("percent-star", '{{ "%*d" % (99999, 1) }}', "format"),
    ("center-filter", '{{ "x"|center(1000000000) }}', "limit"),
    (
        "join-of-a-generator",
        '{{ range(100000)|map("string")|join("x" * 100000) }}',
        "join",
    ),
    ("replace-filter", '{{ user_query|replace("q", "qq" * 1000) }}', "replace"),
    ("replace-method", '{{ user_query.replace("", "abc" * 10000) }}', "replace"),
    ("indent", '{{ ("a\\n" * 1000000)|indent(100000) }}', "indent"),
    ("lipsum", "{{ lipsum(100000) }}", "lipsum"),
    # one C call holding the GIL for seconds: quadratic list additions
    ("sum-of-lists", "{{ range(100000)|batch(1)|list|sum(start=[]) }}", "sum()"),
    ("tojson-indent", "{{ context_files|tojson(indent=100000) }}", "tojson"),
    (
        "output",
        "{% for i in range(100000) %}{{ user_query }}{% endfor %}",
        "limit",
    ),
    (
        "recursive-macro",
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "",
    ),
    (
        "recursive-loop",
        "{% for i in range(100000) recursive %}{{ loop(range(100000)) }}{% endfor %}",
        "",
    ),
]


def project_templates(tmp_path: Path, system: str) -> TemplateSet:
    root = tmp_path / "proj" / ".kzn" / "templates" / "openai"
    root.mkdir(parents=True)
    (root / "system.jinja").write_text(system, encoding="utf-8")
    dirs = prompts.search_path(project_kzn=tmp_path / "proj" / ".kzn")
    return TemplateSet("openai", dirs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(("name", "template", "words"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_an_attack_template_fails_its_request_in_bounded_time_and_memory(
    name: str, template: str, words: str, tmp_path: Path
):
    ts = project_templates(tmp_path, "line one\n" + template)
    before = peak_rss_mb()
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        prompts.render(FillContext(mode="yap", query=BIG_QUERY), ts)
    took = time.monotonic() - started
    message = str(err.value)
    assert message.startswith("template "), message
    assert "system.jinja" in message
    assert "\n" not in message
    assert words in message
    # the deadline is 2 s; the load of the shared machine may add to it
    assert took < sandbox.TIME_LIMIT_S + 3, f"{name}: {took:.1f} s"
    # nothing near the gigabytes the template asked for
    assert peak_rss_mb() - before < 600, f"{name}: +{peak_rss_mb() - before:.0f} MB"


def test_the_time_limit_names_the_template_and_its_line(tmp_path: Path):
    ts = project_templates(
        tmp_path,
        "one\ntwo\n{% for i in range(100000) %}{% for j in range(100000) %}"
        "{% endfor %}{% endfor %}",
    )
    with pytest.raises(ConfigError) as err:
        prompts.render(FillContext(mode="yap", query="q"), ts)
    path = tmp_path / "proj" / ".kzn" / "templates" / "openai" / "system.jinja"
    assert str(err.value) == (
        f"template {path}:3: rendering took longer than 2 s (the time limit of a prompt "
        "template); stopped"
    )


def test_ordinary_templates_render_as_before_under_the_budget(tmp_path: Path):
    ts = project_templates(
        tmp_path,
        "{% for f in context_files %}<{{ f.path }}>{{ f.content | trim }}{% endfor %}"
        '{{ "-" * 20 }}{{ "%5s|" % "ab" }}{{ "{:>4}".format(7) }}{{ range(3)|join(",") }}'
        "{{ user_query|center(9) }}{{ lipsum(1, html=False)|length > 0 }}",
    )
    ctx = FillContext(
        mode="yap",
        query="hey",
        context_files=(prompts.ContextFile(".kzn/a.md", " A \n"),),
    )
    system = prompts.render(ctx, ts).system
    assert system == "<.kzn/a.md>A" + "-" * 20 + "   ab|   70,1,2   hey   True"


async def test_rendering_off_the_loop_leaves_the_loop_free_and_cancel_stops_it(
    tmp_path: Path,
):
    ts = project_templates(
        tmp_path,
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    ctx = FillContext(mode="yap", query="q")
    before = {t.name for t in threading.enumerate()}
    task = asyncio.ensure_future(sandbox.run_off_loop(prompts.render, ctx, ts))
    # the loop keeps running: ticks of 10 ms come on time while the template spins
    late = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        late = max(late, time.monotonic() - t0 - 0.01)
    assert not task.done()
    assert late < 0.5
    # another render meanwhile completes
    other = await sandbox.run_off_loop(prompts.render, FillContext(mode="yap", query="hi"))
    assert "hi" in other.messages[0].content
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    def render_threads() -> int:
        return sum(
            1 for t in threading.enumerate() if t.name == "kzn-render" and t.name not in before
        )

    # the thread stops at its next check, long before the 2 s deadline
    deadline = time.monotonic() + 5
    while render_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert render_threads() == 0
    assert time.monotonic() - started < 1.0


async def test_a_render_past_its_time_limit_off_the_loop_is_a_config_error(tmp_path: Path):
    ts = project_templates(
        tmp_path,
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    with pytest.raises(ConfigError, match="longer than 2 s"):
        await sandbox.run_off_loop(prompts.render, FillContext(mode="yap", query="q"), ts)
