"""`kznllm render` and `kznllm presets` as a user runs them: subprocesses in a temporary
working directory, with a private config dir and no keys but the test's own."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py.cli import main as cli
from kznllm_py.prompt import prompts
from kznllm_py.prompt.presets import builtin_presets, preset_from_dict
from kznllm_py.prompt.prompts import FillContext
from kznllm_py.stream.prepare import prepare
from tests import cli_env
from tests.servers import LoopbackServer
from tests.trusting import allow

CANARY_VAR = "KZN_TEST_RENDER_KEY"
CANARY = "sk-canary-7f3a9c1e-d0-not-leak"
KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "GROQ_API_KEY")


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # no real user templates (XDG_CONFIG_HOME)
    extra = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), CANARY_VAR: CANARY, **extra}
    # Neovim's trust database of the test's own (project templates need trust)
    extra.setdefault("XDG_STATE_HOME", str(tmp_path / "state"))
    return cli_env.clean_env(*KEY_VARS, "NVIM_APPNAME", "VLLM_BASE_URL", "OLLAMA_BASE_URL", **extra)


def kznllm(
    cwd: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = clean_env(cwd) if env is None else env
    return cli_env.kznllm(
        *args, cwd=cwd, env=env, timeout=30, text=True, encoding="utf-8", input=stdin
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def loopback(server: LoopbackServer, provider: str = "openai") -> list[str]:
    return [
        "--provider",
        provider,
        "--base-url",
        server.base_url,
        "--model",
        f"{provider}-render-model",
        "--api-key",
        CANARY_VAR,
    ]


# -- render ----------------------------------------------------------------------------


def test_render_demo_prints_the_request_and_exits_0(tmp_path):
    res = kznllm(tmp_path, "render", "hello there", "--preset", "demo")
    assert (res.returncode, res.stderr) == (0, "")
    out = res.stdout
    assert out.startswith("# kznllm debug: demo · kznllm-demo\n")
    assert "`POST http://127.0.0.1:" in out and "/v1/chat/completions`" in out
    assert "- stream: `true`" in out
    system = prompts.render(FillContext(mode="yap", query="hello there")).system
    assert f"## System\n\n`````text\n{system}\n`````\n" in out
    assert "## User\n\n`````text\nhello there\n`````\n" in out
    assert "- no project files (no `.kzn` folder)" in out


def test_render_prints_the_exact_request_and_sends_nothing(server, tmp_path, monkeypatch):
    res = kznllm(tmp_path, "render", "what does it do?", *loopback(server))
    assert (res.returncode, res.stderr) == (0, "")
    assert server.requests == []
    assert server.connections_accepted == 0

    # the same request, built here: the output is exactly its debug view
    monkeypatch.setenv(CANARY_VAR, CANARY)
    preset = preset_from_dict(
        {
            "id": "cli",
            "provider": "openai",
            "base_url": server.base_url,
            "model": "openai-render-model",
            "api_key": CANARY_VAR,
        }
    )
    ctx = FillContext(mode="yap", query="what does it do?")
    _, request = asyncio.run(prepare(preset, ctx))
    expected = prompts.render_debug(
        request,
        preset_id="cli",
        provider="openai",
        context_window=preset.context_window,
    )
    assert res.stdout == expected

    out = res.stdout
    assert f"`POST {server.base_url}/chat/completions`" in out
    assert "- Authorization: <redacted>\n" in out
    assert "- Content-Type: application/json\n" in out
    assert "## User\n\n`````text\nwhat does it do?\n`````\n" in out


def test_render_shows_the_params_of_a_preset(server, tmp_path):
    env = clean_env(tmp_path, OPENAI_API_KEY=CANARY)
    res = kznllm(
        tmp_path, "render", "q", "--preset", "gpt-4o-mini", "--base-url", server.base_url, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "# kznllm debug: gpt-4o-mini · gpt-4o-mini\n" in res.stdout
    assert "- temperature: `0.7`\n" in res.stdout
    assert '- stream_options: `{"include_usage": true}`\n' in res.stdout
    assert CANARY not in res.stdout + res.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "secret_header"),
    [
        (["--provider", "openai", "--model", "m", "--api-key", CANARY_VAR], "Authorization"),
        (["--preset", "claude-sonnet", "--api-key", CANARY_VAR], "x-api-key"),
        (["--preset", "gpt-4o-mini", "--api-key", f"cmd:echo {CANARY}"], "Authorization"),
    ],
    ids=["openai-env", "anthropic-env", "openai-cmd"],
)
def test_render_never_shows_the_key(args, secret_header, server, tmp_path):
    res = kznllm(tmp_path, "render", "q", "--base-url", server.base_url, *args)
    assert res.returncode == 0, res.stderr
    assert CANARY not in res.stdout
    assert CANARY not in res.stderr
    assert f"- {secret_header}: <redacted>\n" in res.stdout
    assert server.requests == []


def test_render_of_an_anthropic_preset_shows_the_cached_system_block(server, tmp_path):
    args = ["--preset", "claude-haiku", "--base-url", server.base_url, "--api-key", CANARY_VAR]
    res = kznllm(tmp_path, "render", "q", *args)
    assert res.returncode == 0, res.stderr
    assert f"`POST {server.base_url}/messages`" in res.stdout
    assert '_(cache_control: {"type": "ephemeral"})_' in res.stdout
    assert "- anthropic-version: 2023-06-01\n" in res.stdout
    assert "## User\n\n`````text\n<request>\nq\n</request>\n`````\n" in res.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / ".kzn" / "notes.md", "Use tabs, never spaces.\n")
    write(root / ".kzn" / "big.log", "x" * (300 * 1024))
    write(root / ".kzn" / "templates" / "openai" / "user.jinja", "PROJECT USER: {{ user_query }}")
    (root / "src" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()  # the project root: its .kzn is found from below it
    return root


@pytest.mark.parametrize("where", [".", "src/deep"])
def test_render_shows_the_project_files_included_and_skipped(project, server, where, tmp_path):
    env = clean_env(tmp_path)
    allow(Path(env["XDG_STATE_HOME"]) / "nvim", project / ".kzn/templates/openai/user.jinja")
    res = kznllm(project / where, "render", "q", *loopback(server), env=env)
    assert (res.returncode, res.stderr) == (0, "")
    out = res.stdout
    assert f"- project folder: `{project / '.kzn'}`" in out
    assert "- included `.kzn/notes.md` (~" in out
    assert "- skipped `.kzn/big.log`: larger than 256 KiB (300 KiB)\n" in out
    assert "Use tabs, never spaces." in out
    assert "xxxxxxxx" not in out
    # the project's templates shape the prompt; they are not context
    assert "## User\n\n`````text\nPROJECT USER: q\n`````\n" in out
    assert ".kzn/templates" not in out
    assert "no project files" not in out
    assert server.requests == []


def test_render_no_project_leaves_the_project_out(project, server):
    res = kznllm(project, "render", "q", "--no-project", *loopback(server))
    assert (res.returncode, res.stderr) == (0, "")
    out = res.stdout
    assert ".kzn/" not in out
    assert "Use tabs" not in out
    assert "PROJECT USER" not in out
    assert "## User\n\n`````text\nq\n`````\n" in out
    assert "- no project files (no `.kzn` folder)" in out


def test_render_uses_the_user_config_templates(server, tmp_path):
    env = clean_env(tmp_path, NVIM_APPNAME="kzn-test")
    write(
        tmp_path / "xdg" / "kzn-test" / "kznllm" / "templates" / "openai" / "system.jinja",
        "USER CONFIG SYSTEM",
    )
    res = kznllm(tmp_path, "render", "q", *loopback(server), env=env)
    assert res.returncode == 0, res.stderr
    assert "## System\n\n`````text\nUSER CONFIG SYSTEM\n`````\n" in res.stdout


def test_render_template_error_is_one_line_on_stderr(project, server):
    bad = write(
        project / ".kzn" / "templates" / "openai" / "system.jinja", "ok\n{{ user_query.__class__ }}"
    )
    env = clean_env(project)
    allow(Path(env["XDG_STATE_HOME"]) / "nvim", bad, project / ".kzn/templates/openai/user.jinja")
    res = kznllm(project, "render", "q", *loopback(server), env=env)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr == f"kznllm: template {bad}:2: SecurityError: " + (
        "access to attribute '__class__' of 'str' object is unsafe\n"
    )
    assert server.requests == []


def test_render_missing_key_names_the_variable(server, tmp_path):
    res = kznllm(tmp_path, "render", "q", "--preset", "gpt-4o-mini", "--base-url", server.base_url)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "set OPENAI_API_KEY for preset" in res.stderr and "API key is missing" in res.stderr


# -- presets ---------------------------------------------------------------------------


def listed(stdout: str) -> list[tuple[bool, str]]:
    header, *rows = stdout.splitlines()
    assert header.split() == ["id", "provider", "model", "key"]
    return [(line[0] == "*", line[1:].split()[0]) for line in rows]


def test_presets_lists_ids_with_the_demo_starred_without_keys(tmp_path):
    res = kznllm(tmp_path, "presets")
    assert (res.returncode, res.stderr) == (0, "")
    rows = listed(res.stdout)
    assert [pid for _, pid in rows] == [p.id for p in builtin_presets()]
    assert [pid for starred, pid in rows if starred] == ["demo"]


def test_presets_stars_the_first_preset_with_a_key(tmp_path):
    env = clean_env(tmp_path, OPENAI_API_KEY=CANARY, GROQ_API_KEY=CANARY)
    res = kznllm(tmp_path, "presets", env=env)
    assert res.returncode == 0
    assert [pid for starred, pid in listed(res.stdout) if starred] == ["gpt-4o-mini"]
    assert CANARY not in res.stdout
    lines = {line[1:].split()[0]: line for line in res.stdout.splitlines()[1:]}
    assert lines["gpt-4o-mini"].endswith("yes ($OPENAI_API_KEY)")
    assert lines["claude-sonnet"].endswith("no ($ANTHROPIC_API_KEY)")
    assert lines["ollama"].endswith("not needed")


def test_presets_json_lists_every_id(tmp_path):
    res = kznllm(tmp_path, "presets", "--json")
    assert res.returncode == 0
    rows = json.loads(res.stdout)
    assert [p["id"] for p in rows] == [p.id for p in builtin_presets()]
    assert {p["id"]: p["key_present"] for p in rows}["demo"] is None


BAD_PRESETS = [
    {"id": "one", "provider": "cohere", "model": "m"},
    {"id": "two", "provider": "openai"},
    {"id": "claude-sonnet", "base_url": "not a url"},
    {"id": "four", "provider": "openai", "model": "m", "colour": "red"},
    "five",
]
GOOD_PRESETS = [
    {"id": "claude-sonnet", "model": "claude-opus-4-1", "params": {"temperature": 0}},
    {"id": "local", "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"},
]


def test_presets_check_stdin_reports_one_line_per_bad_preset(tmp_path):
    res = kznllm(tmp_path, "presets", "--check", "-", stdin=json.dumps(BAD_PRESETS + GOOD_PRESETS))
    assert res.returncode == 1
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == len(BAD_PRESETS)
    assert all(line.startswith("kznllm: ") for line in lines)
    assert "preset 'one'" in lines[0] and "unknown provider 'cohere'" in lines[0]
    assert "preset 'two'" in lines[1] and "missing model" in lines[1]
    assert "preset 'claude-sonnet'" in lines[2] and "bad base_url" in lines[2]
    assert "preset 'four'" in lines[3] and "colour" in lines[3]
    assert "must be a table" in lines[4]


def test_presets_check_good_presets_exits_0(tmp_path):
    res = kznllm(tmp_path, "presets", "--check", "-", stdin=json.dumps(GOOD_PRESETS))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def check_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[int, str, str]:
    """`kznllm presets --check -` without a subprocess (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = cli.main(["presets", "--check", "-"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("text", ["", "[]", "{}", "null"])
def test_presets_check_of_nothing_exits_0(text, monkeypatch, capsys):
    assert check_in_process(monkeypatch, capsys, text) == (0, "", "")


def test_presets_check_json_gives_the_problems(tmp_path):
    path = write(tmp_path / "presets.json", json.dumps(BAD_PRESETS[:2] + GOOD_PRESETS))
    res = kznllm(tmp_path, "presets", "--check", str(path), "--json")
    assert res.returncode == 1
    assert res.stderr == ""
    problems = json.loads(res.stdout)["problems"]
    assert len(problems) == 2
    assert "cohere" in problems[0] and "missing model" in problems[1]
    res = kznllm(tmp_path, "presets", "--check", "-", "--json", stdin=json.dumps(GOOD_PRESETS))
    assert (res.returncode, json.loads(res.stdout), res.stderr) == (0, {"problems": []}, "")


@pytest.mark.parametrize("text", ["[{", "42", '"claude-sonnet"'])
def test_presets_check_of_something_not_a_list_exits_2(text, monkeypatch, capsys):
    code, out, err = check_in_process(monkeypatch, capsys, text)
    assert (code, out) == (2, "")
    assert err.startswith("kznllm: cannot read presets: ")
    assert err.count("\n") == 1


def test_presets_check_of_a_missing_file_exits_2(tmp_path, capsys):
    assert cli.main(["presets", "--check", str(tmp_path / "nope.json")]) == 2
    assert capsys.readouterr().err.startswith("kznllm: cannot read presets: ")


def test_render_json_is_the_exact_request_with_the_file_as_buffer_context(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    pass\n")
    res = kznllm(tmp_path, "render", "--preset", "demo", "--file", str(src), "--json", "explain")
    assert (res.returncode, res.stderr) == (0, "")
    req = json.loads(res.stdout)
    assert req["method"] == "POST" and req["url"].endswith("/v1/chat/completions")
    assert req["body"]["stream"] is True
    system, user = req["body"]["messages"]
    assert "python" in system["content"]
    assert "def f():\n    pass\n<cursor/>" in user["content"]
    assert user["content"].endswith("explain")


def test_render_leaves_untrusted_project_templates_out_with_one_line(project, server, tmp_path):
    """Not trusted in Neovim's database: the built-in templates, and one line on stderr
    that says which file and how to trust it; the project's context files still go in."""
    res = kznllm(project, "render", "q", *loopback(server), env=clean_env(tmp_path))
    assert res.returncode == 0
    assert res.stderr == (
        "kznllm: the project's templates are not used, the built-in ones are (trust them in "
        f"Neovim: :KznTrust): openai/user.jinja: not trusted in {project / '.kzn' / 'templates'}\n"
    )
    assert "PROJECT USER" not in res.stdout and "## User\n\n`````text\nq\n`````\n" in res.stdout
    assert "Use tabs, never spaces." in res.stdout
