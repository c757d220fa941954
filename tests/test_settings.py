"""The host's settings, validated once from what setup() sends (plain data, pure)."""

from __future__ import annotations

from pathlib import Path

from kznllm_py import settings
from kznllm_py.fill import job as payload
from kznllm_py.stream.client import Timeouts


def preset(pid: str, **extra: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": pid,
        "provider": "openai",
        "model": f"m-{pid}",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": False,
    }
    raw.update(extra)
    return raw


def test_presets_are_merged_once_with_the_presets_file_and_bad_ones_left_out(tmp_path: Path):
    file = tmp_path / "kznllm" / "presets.toml"
    file.parent.mkdir()
    file.write_text(
        '[[presets]]\nid = "shared"\nprovider = "openai"\nmodel = "s"\napi_key = false\n'
        'base_url = "http://127.0.0.1:9/v1"\n\n[[presets]]\nid = "filebad"\nprovider = "x"\n'
    )
    s = settings.from_config(
        {
            "config_dir": str(tmp_path),
            "presets": [preset("a"), {"id": "bad", "provider": "nope", "model": "m"}],
        }
    )
    assert {"a", "shared", "demo"} <= set(s.presets)
    assert "bad" not in s.presets and "filebad" not in s.presets
    [file_problem, user_problem] = s.problems
    assert file_problem.startswith(f"{file}: preset 'filebad'")
    assert user_problem.startswith("preset 'bad': unknown provider 'nope'")
    # a fill needs no presets of its own: it names one
    job = payload.parse({"id": 1, "mode": "yap", "query": "q", "preset": "shared"}, s)
    assert (job.preset.id, job.preset.model) == ("shared", "s")
    # the file is not read again per fill: the settings are what configure saw
    file.unlink()
    assert payload.parse({"preset": "shared"}, s).preset.id == "shared"


def test_a_bad_option_is_one_problem_and_keeps_its_default():
    s = settings.from_config(
        {"retries": 0, "history": "yes", "kzn_allow": 3, "timeouts": {"stall": "x"}}
    )
    assert [p.split(":")[0] for p in s.problems] == [
        "setup({ timeouts })",
        "setup({ retries })",
        "setup({ history })",
        "setup({ kzn_allow })",
    ]
    assert all(p.endswith("; the default is used") for p in s.problems)
    assert "retries must be a whole number of tries, 1 or more, not 0" in s.problems[1]
    job = payload.parse({"id": 1}, s)
    assert job.retry.tries == 3 and job.timeouts == Timeouts()
    assert s.history == settings.Settings().history and s.kzn_allow == ()


def test_good_options_reach_the_fill():
    s = settings.from_config(
        {
            "presets": [preset("a")],
            "retries": 5,
            "max_response_bytes": 4096,
            "timeouts": {"connect": 2, "total": False},
            "history": {"max_entries": 50},
            "kzn_allow": ["*"],
            "data_dir": "/tmp/d",
            "models": {"a": "picked-model", "gone": "x"},
            "generation": 7,
        }
    )
    assert s.problems == () and s.generation == 7
    job = payload.parse({"preset": "a"}, s)
    assert job.retry.tries == 5 and job.max_response_bytes == 4096
    assert job.timeouts == Timeouts(connect=2, total=None)
    assert job.preset.model == "picked-model"  # picked with :KznPreset!
    assert s.history == (True, 50, None) and s.history_enabled
    assert not settings.from_config({"history": False, "data_dir": "/d"}).history_enabled
    assert not settings.from_config({}).history_enabled  # nowhere to keep it


def test_empty_lua_tables_are_no_options():
    # an empty Lua table comes as [] or {}: the defaults, no problem
    s = settings.from_config({"presets": [], "timeouts": [], "models": [], "kzn_allow": {}})
    assert s.problems == () and s.timeouts == {} and s.models == {}
