"""The one schema of option checks (kznllm_py/options.py): what a loose Lua table's
field reads as, for settings, a fill's request and history's calls alike."""

from __future__ import annotations

from kznllm_py import options


def test_a_text_field_takes_only_a_string_and_falls_back_to_its_default() -> None:
    p = {"a": "x", "n": 3, "t": [], "nil": None}
    assert options.text(p, "a") == "x"
    assert [options.text(p, k) for k in ("n", "t", "nil", "absent")] == ["", "", "", ""]
    assert options.text(p, "n", "auto") == "auto"


def test_a_whole_number_field_refuses_booleans_fractions_and_strings() -> None:
    p = {"i": 7, "f": 7.0, "frac": 7.5, "b": True, "s": "7"}
    assert options.whole(p, "i") == 7
    assert options.whole(p, "f") == 7  # msgpack may send a Lua number as a float
    assert [options.whole(p, k, -1) for k in ("frac", "b", "s", "absent")] == [-1, -1, -1, -1]


def test_a_number_is_never_a_boolean() -> None:
    assert options.is_number(1.5) and options.is_number(0)
    assert not options.is_number(True) and not options.is_number("1")
