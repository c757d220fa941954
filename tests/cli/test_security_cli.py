"""The threat model's attacks (docs/SECURITY.md) against the `kznllm` command line: a
server's escape sequences, a password in the base URL, another user's `.kzn`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests import cli_env
from tests.servers import LoopbackServer, Reply, json_reply, openai_events

REPO = Path(__file__).resolve().parents[2]
OSC52 = "\x1b]52;c;cm0gLXJmIH4K\x07"  # writes "rm -rf ~" to the clipboard
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
C1_CSI = "\x9b31m"


def kznllm(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["XDG_DATA_HOME"] = str(cwd / ".data")
    env["PYTHONPATH"] = str(REPO)
    return cli_env.kznllm(*args, cwd=cwd, env=env)


def loopback(base_url: str) -> list[str]:
    return ["--provider", "openai", "--model", "m", "--base-url", base_url]


def test_escape_sequences_from_a_server_are_shown_escaped_on_stderr(tmp_path: Path):
    attack = f"bad key {OSC52}{TITLE}{CLEAR}{C1_CSI}\nforged second line"
    with LoopbackServer() as server:
        server.queue(json_reply(401, {"error": {"message": attack}}))
        res = kznllm(tmp_path, "fill", *loopback(server.base_url), "q")
    assert res.returncode == 1 and res.stdout == b""
    err = res.stderr.decode()
    assert err == (
        "kznllm: openai error (HTTP 401): preset 'cli' sends no key (its api_key is unset) "
        "and the server wants one: bad key \\x1b]52;c;cm0gLXJmIH4K\\x07"
        "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[H\\x9b31m\\nforged second line\n"
    )
    assert not any(ord(c) < 0x20 and c != "\n" for c in err)


def test_the_answer_on_stdout_stays_byte_for_byte(tmp_path: Path):
    answer = ["colour: \x1b[31mred\x1b[0m", "\ttab\r\n", "é中"]
    with LoopbackServer() as server:
        server.queue(Reply(chunks=openai_events(answer)))
        res = kznllm(tmp_path, "fill", *loopback(server.base_url), "q")
    assert (res.returncode, res.stderr) == (0, b"")
    assert res.stdout == "".join(answer).encode()


def test_render_json_shows_no_password_of_the_base_url(tmp_path: Path):
    url = "http://bob:hunter2-cli-pass@127.0.0.1:9/v1"
    res = kznllm(tmp_path, "render", "--json", *loopback(url), "q")
    assert res.returncode == 0, res.stderr
    assert b"hunter2-cli-pass" not in res.stdout + res.stderr
    assert b'"url": "http://<redacted>@127.0.0.1:9/v1/chat/completions"' in res.stdout
    text = kznllm(tmp_path, "render", *loopback(url), "q")
    assert b"hunter2-cli-pass" not in text.stdout and b"<redacted>@127.0.0.1:9" in text.stdout


def test_a_world_writable_kzn_is_skipped_with_a_message_unless_allowed(tmp_path: Path):
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    notes = project / ".kzn" / "notes.md"
    notes.parent.mkdir()
    notes.write_text("PLANTED CONTEXT\n")
    notes.parent.chmod(0o777)
    url = "http://127.0.0.1:9/v1"
    res = kznllm(project, "render", *loopback(url), "q")
    assert res.returncode == 0
    assert b"PLANTED" not in res.stdout
    assert res.stderr.decode() == (
        f"kznllm: ignored the project folder {project / '.kzn'}: every user can write to it "
        "(kzn_allow in setup(), or --allow-kzn, trusts it)\n"
    )
    allowed = kznllm(project, "render", "--allow-kzn", str(project), *loopback(url), "q")
    assert (allowed.returncode, allowed.stderr) == (0, b"")
    assert b"PLANTED CONTEXT" in allowed.stdout
    assert f"- project folder: `{project / '.kzn'}`".encode() in allowed.stdout


def test_ten_thousand_tiny_files_are_cut_to_what_fits_wrappers_included(tmp_path: Path):
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    kzn = project / ".kzn"
    kzn.mkdir()
    for i in range(10_000):
        (kzn / f"f{i:05d}.txt").write_text("x\n")
    res = kznllm(project, "render", *loopback("http://127.0.0.1:9/v1"), "q")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    # the default context window of a custom preset: 32768 tokens, 60% for the files
    line = next(ln for ln in out.splitlines() if "estimated prompt tokens" in ln)
    percent = float(line.rsplit("(", 1)[1].rstrip("%)"))
    assert 50 < percent <= 61, line  # was 262%: each file's wrapper was not counted
    included = out.count("- included `.kzn/")
    skipped = [ln for ln in out.splitlines() if ln.startswith("- skipped `.kzn/")]
    assert included + len(skipped) == 10_000
    assert 1_000 < included < 10_000
    assert skipped[0].startswith(f"- skipped `.kzn/f{included:05d}.txt`: over the context budget")
    assert "with the prompt's wrapper around each file" in skipped[0]
