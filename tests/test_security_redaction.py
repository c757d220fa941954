"""A server that splits the key so that redaction misses it: an HTML error page whose
title breaks the key with an inline tag, a line break, an entity or a zero-width space
(the page's reduction to text joins the pieces with spaces), a body whose cap cuts the
key in two, a models list that echoes it. Through the real CLI against a real loopback
server: the key, and any 8 of its characters, appear neither on stderr nor in history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kznllm_py.history import HistoryStore, default_path, nvim_data_dir
from kznllm_py.stream.client import ERROR_BODY_CAP
from tests.cli_env import clean_env
from tests.servers import LoopbackServer, Reply

KEY_VAR = "KZN_SPLIT_KEY"
KEY = "sk-split-4f9a2c7e1b8d63aa"


def _pieces(text: str) -> set[str]:
    return {KEY[i : i + 8] for i in range(len(KEY) - 7)} & {
        text[i : i + 8] for i in range(len(text))
    }


def _leaks(text: str) -> list[str]:
    squashed = "".join(text.split()).replace("\u200b", "")
    return sorted(_pieces(squashed))


def _html(status: int, page: str) -> Reply:
    return Reply(
        status=status, headers={"Content-Type": "text/html"}, chunks=[page.encode("utf-8")]
    )


SPLIT_PAGES = {
    "bold-tag": f"<html><title>bad key {KEY[:9]}<b>{KEY[9:]}</b></title></html>",
    "line-break": f"<html><title>bad key {KEY[:12]}\n   {KEY[12:]}</title></html>",
    "entity": f"<html><title>key {KEY[:5]}&#x{ord(KEY[5]):x};{KEY[6:]}</title></html>",
    "zero-width": f"<html><body><p>key {KEY[:7]}\u200b{KEY[7:]}</p></body></html>",
    "spans": "<html><body>" + "".join(f"<span>{c}</span>" for c in KEY) + "</body></html>",
    "cut-at-the-cap": "<html><body>" + " " * (ERROR_BODY_CAP - 12 - 10) + KEY + "</body></html>",
}


def _fill(base_url: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "kznllm_py.cli.main", "fill", "--provider", "openai"]
    argv += ["--model", "m", "--base-url", base_url + "/v1", "--api-key", KEY_VAR, "--retries", "1"]
    return subprocess.run(
        [*argv, "hi"], cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, timeout=60
    )


@pytest.mark.parametrize("name", sorted(SPLIT_PAGES))
def test_a_key_split_in_an_html_error_page_never_reaches_stderr_or_history(
    tmp_path: Path, server: LoopbackServer, name: str
) -> None:
    server.queue(_html(401, SPLIT_PAGES[name]))
    env = clean_env(**{KEY_VAR: KEY, "XDG_DATA_HOME": str(tmp_path / "data")})
    env.pop("NVIM_APPNAME", None)
    out = _fill(server.base_url, env, tmp_path)
    err = out.stderr.decode()
    assert out.returncode != 0 and "HTTP 401" in err, err
    assert "<redacted>" in err, err
    assert _leaks(err) == [], err
    store = HistoryStore(default_path(nvim_data_dir(env)), read_only=True)
    [row] = store.list()
    entry = store.get(row.id)
    assert entry is not None and entry.error and "<redacted>" in entry.error
    assert _leaks(json.dumps(entry.to_dict(), ensure_ascii=False)) == []


def test_a_models_list_that_echoes_the_key_shows_it_nowhere(
    tmp_path: Path, server: LoopbackServer
) -> None:
    """A listing that does not read (echoing the key past the 200th character) and one
    whose model names carry it."""
    odd = json.dumps({"unexpected": "x" * 190 + KEY})
    names = json.dumps({"data": [{"id": f"gpt {KEY}"}]})
    ctype = {"Content-Type": "application/json"}
    server.queue(Reply(headers=ctype, chunks=[odd.encode()]))
    server.queue(Reply(headers=ctype, chunks=[names.encode()]))
    env = clean_env(**{KEY_VAR: KEY})
    argv = [sys.executable, "-m", "kznllm_py.cli.main", "models", "--provider", "openai"]
    argv += ["--base-url", server.base_url + "/v1", "--api-key", KEY_VAR]
    first = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert first.returncode == 1 and b"unexpected models list" in first.stderr
    assert _leaks(first.stderr.decode()) == [], first.stderr
    second = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.decode() == "gpt <redacted>\n"
