"""What a fill cost: prices as data (the dated built-in table, a preset's own `price`),
the cost of a usage counted by hand (cached input at its price, reasoning tokens as
output), and where it shows: the end line, history (with the price it was counted at,
never rewritten), `kznllm history` and `--cost [--since DAY]`, the statusline. No price
known: tokens only."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kznllm_py import pricing
from kznllm_py.history import HistoryStore, NewEntry
from kznllm_py.messages import end_message
from kznllm_py.prompt.presets import builtin_presets, merge_presets, preset_from_dict, preset_price
from kznllm_py.prompt.prompts import FillContext
from tests.cli_env import clean_env, kznllm
from tests.nvim_child import Child
from tests.servers import LoopbackServer, Reply
from tests.streams import cursor_preset, generate, loopback_preset

PRICE = {"input": 2.0, "cached_input": 0.5, "output": 8.0}
USAGE = {
    "input_tokens": 10_000,
    "cached_input_tokens": 6_000,
    "output_tokens": 1_500,
    "reasoning_tokens": 1_000,
}
# by hand: 4,000 uncached input at $2/M + 6,000 cached at $0.5/M + 1,500 output (1,000 of
# them reasoning) at $8/M = $0.008 + $0.003 + $0.012
HAND = 0.023


def test_cost_counts_cached_input_at_its_price_and_reasoning_as_output() -> None:
    assert pricing.cost(USAGE, pricing.as_price(PRICE)) == pytest.approx(HAND, abs=1e-12)


def test_cost_without_cached_tokens_is_all_input_at_input_price() -> None:
    usage = {"input_tokens": 1_000, "output_tokens": 100}
    price = pricing.as_price(PRICE)
    assert pricing.cost(usage, price) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)


def test_no_price_or_no_counts_is_no_cost() -> None:
    assert pricing.cost(USAGE, None) is None
    assert pricing.cost({"output_tokens": 3}, pricing.as_price(PRICE)) is None
    assert pricing.cost(None, pricing.as_price(PRICE)) is None


def test_builtin_table_is_dated_and_prices_the_builtin_presets_at_their_hosts() -> None:
    date, _table = pricing.builtin_table()
    assert date == "2025-10-15"
    priced = {p.id for p in builtin_presets() if preset_price(p) is not None}
    assert priced == {
        "claude-sonnet",
        "claude-haiku",
        "gpt-4o-mini",
        "o4-mini",
        "gpt-5-mini",
        "deepseek-chat",
        "groq-llama",
    }
    # Claude Sonnet 4.5, a cached fill (the recorded Anthropic stream's usage): 472 input
    # at $3/M, 2,048 read from the cache at $0.30/M, 89 output at $15/M
    sonnet = {p.id: p for p in builtin_presets()}["claude-sonnet"]
    usage = {"input_tokens": 2520, "cached_input_tokens": 2048, "output_tokens": 89}
    assert pricing.cost(usage, preset_price(sonnet)) == pytest.approx(
        (472 * 3 + 2048 * 0.30 + 89 * 15) / 1e6
    )


@pytest.mark.parametrize(
    "raw",
    [
        # the same model behind a proxy, a router or a local server bills otherwise
        {"provider": "openai", "model": "gpt-4o-mini", "base_url": "https://openrouter.ai/api/v1"},
        {"provider": "openai", "model": "Qwen/Qwen3-8B", "base_url": "http://127.0.0.1:8000/v1"},
        {"provider": "azure", "model": "gpt-4o-mini", "base_url": "https://r.openai.azure.com"},
    ],
)
def test_no_price_is_guessed(raw: dict[str, Any]) -> None:
    assert preset_price(preset_from_dict({"id": "x", **raw})) is None


def test_a_presets_own_price_goes_over_the_table() -> None:
    p = preset_from_dict(
        {"id": "mini", "provider": "openai", "model": "gpt-4o-mini", "price": PRICE}
    )
    assert preset_price(p) == pricing.as_price(PRICE)


def test_a_model_picked_later_does_not_take_the_presets_own_price() -> None:
    from kznllm_py.settings import Settings

    p = preset_from_dict({"id": "mini", "provider": "openai", "model": "m-1", "price": PRICE})
    assert preset_price(Settings(presets={"mini": p}).preset("mini")) is not None
    picked = Settings(presets={"mini": p}, models={"mini": "m-2"}).preset("mini")
    assert picked.model == "m-2" and preset_price(picked) is None


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ({"input": 2.0, "output": 8.0}, "price: missing cached_input"),
        ({**PRICE, "cache_write": 1.0}, "price: unknown cache_write"),
        ({**PRICE, "output": "8"}, "price: output: want a number of US dollars"),
        ({**PRICE, "input": -1}, "price: input: want a number of US dollars"),
        ("cheap", "price: want a table"),
    ],
)
def test_a_bad_price_is_refused_at_setup_with_field_and_reason(price: Any, reason: str) -> None:
    raw = {"id": "p", "provider": "openai", "model": "m", "price": price}
    merged = merge_presets([raw], file=None, env={"XDG_CONFIG_HOME": "/nonexistent"})
    [problem] = merged.problems
    assert problem.startswith(f"preset 'p': {reason}")


def test_the_end_line_shows_tokens_cached_and_cost_or_tokens_only() -> None:
    info = {"duration_ms": 1200, "usage": USAGE, "cost_usd": HAND}
    text, level = end_message("ok", None, info)
    assert text == "done in 1.2s, 10000→1500 tokens (6000 cached), $0.0230"
    assert level == "info"
    unpriced, _ = end_message("ok", None, {"duration_ms": 1200, "usage": USAGE})
    assert unpriced == "done in 1.2s, 10000→1500 tokens (6000 cached)"


def test_statusline_figures() -> None:
    assert pricing.figures(USAGE, HAND) == "10.0k→1500 $0.0230"
    assert pricing.figures(USAGE, None) == "10.0k→1500"
    assert pricing.figures(None, None) == ""


def test_history_keeps_the_cost_and_price_it_was_counted_at(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    old = store.start(NewEntry(mode="yap", query="old", started_at=time.time() - 3 * 86400))
    store.finish(old, "ok", usage=USAGE, cost_usd=HAND, price=json.dumps(PRICE))
    new = store.start(NewEntry(mode="yap", query="new"))
    store.finish(new, "ok", usage={"input_tokens": 5, "output_tokens": 5})  # no price
    entry = store.get(old)
    assert entry is not None
    assert (entry.cost_usd, json.loads(entry.price)) == (HAND, PRICE)
    assert (entry.cached_input_tokens, entry.reasoning_tokens) == (6000, 1000)
    assert store.spent() == (pytest.approx(HAND), 1, 1)
    assert store.spent(time.time() - 86400) == (0.0, 0, 1)


# -- end to end: a priced preset over loopback, through the CLI and the editor ---------------


def responses_stream() -> list[bytes]:
    usage = {
        "input_tokens": 10_000,
        "input_tokens_details": {"cached_tokens": 6_000},
        "output_tokens": 1_500,
        "output_tokens_details": {"reasoning_tokens": 1_000},
    }
    events = [
        {"type": "response.created", "response": {"status": "in_progress"}},
        {"type": "response.output_text.delta", "delta": "x = 1\n"},
        {"type": "response.completed", "response": {"status": "completed", "usage": usage}},
    ]
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events]


async def test_a_generation_reports_its_cost_at_the_presets_price(
    server: LoopbackServer, client: Any
) -> None:
    server.queue(Reply(chunks=responses_stream()))
    preset = loopback_preset("responses", server.url + "/v1", model="gpt-5-mini", price=PRICE)
    out, _ = await generate(client, preset, ctx=FillContext(mode="yap", query="q"))
    assert out.status == "ok"
    assert out.cost_usd == pytest.approx(HAND) and out.price == PRICE
    assert out.to_dict()["usage"] == USAGE


def write_presets(config: Path, url: str) -> None:
    (config / "nvim" / "kznllm").mkdir(parents=True)
    (config / "nvim" / "kznllm" / "presets.toml").write_text(
        f"""
[[presets]]
id = "priced"
provider = "responses"
model = "gpt-5-mini"
base_url = "{url}/v1"
api_key = false
price = {{ input = 2.0, cached_input = 0.5, output = 8.0 }}
""",
        encoding="utf-8",
    )


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(XDG_CONFIG_HOME=str(home / "cfg"), XDG_DATA_HOME=str(home / "data"))
    return kznllm(*args, cwd=home, env=env, text=True, timeout=30)


def test_cli_history_lists_the_cost_and_totals_it(server: LoopbackServer, tmp_path: Path) -> None:
    write_presets(tmp_path / "cfg", server.url)
    server.queue(Reply(chunks=responses_stream()), Reply(chunks=responses_stream()))
    for _ in range(2):
        res = run_cli(["fill", "--preset", "priced", "--no-project", "q"], tmp_path)
        assert (res.returncode, res.stdout, res.stderr) == (0, "x = 1\n", "")
    listed = run_cli(["history"], tmp_path)
    assert listed.stdout.count("10000/1500  $0.0230") == 2, listed.stdout
    shown = run_cli(["history", "show", "1"], tmp_path).stdout
    assert "tokens:      10000/1500 (in/out; 6000 cached, 1000 reasoning)" in shown
    assert "cost:        $0.0230 at $2 in, $0.5 cached, $8 out per M" in shown
    total = run_cli(["history", "--cost"], tmp_path)
    assert (total.returncode, total.stdout, total.stderr) == (0, "$0.05\n", "")  # 2 x 0.023
    later = run_cli(["history", "--cost", "--since", "2999-01-01"], tmp_path)
    assert later.stdout == "$0.00\n"
    bad = run_cli(["history", "--cost", "--since", "yesterday"], tmp_path)
    assert bad.returncode == 2 and "--since: want a day as YYYY-MM-DD" in bad.stderr


def test_editor_end_line_and_statusline_show_tokens_and_cost(
    nvim: Child, server: LoopbackServer
) -> None:
    preset = cursor_preset("priced", "responses", server.url, model="gpt-5-mini", price=PRICE)
    nvim.lua("require('kznllm').setup({ presets = { ... } })", preset)
    nvim.lua("require('kznllm').state.preset = 'priced'")
    nvim.nvim.options["columns"] = 200  # the whole end line in :messages
    server.queue(Reply(chunks=responses_stream()))
    nvim.nvim.command("KznFill q")
    [done] = nvim.wait_done(1)
    assert done["status"] == "ok" and done["usage"]["cached_input_tokens"] == 6000
    nvim.wait_for(
        lambda: "$0.0230" in nvim.lua("return require('kznllm.actions').status()"),
        what="the statusline to show the cost",
    )
    assert nvim.lua("return require('kznllm.actions').status()") == (
        "kznllm priced 10.0k→1500 $0.0230"
    )
    said = nvim.nvim.api.exec2("messages", {"output": True})["output"]
    said += "\n".join(nvim.messages())
    assert "10000→1500 tokens (6000 cached), $0.0230" in said
