"""The line that ends a request (kznllm_py/messages.py), as plain data."""

from __future__ import annotations

from kznllm_py.messages import end_message


def test_a_success_says_its_time_first_token_usage_and_rate():
    info = {
        "duration_ms": 1234.0,
        "first_token_ms": 250.0,
        "usage": {"input_tokens": 7, "output_tokens": 40},
        "tokens_per_s": 40.6,
    }
    assert end_message("ok", None, info) == (
        "done in 1.2s, first token 0.25s, 7→40 tokens, 41/s",
        "info",
    )
    assert end_message("ok", None, {"duration_ms": 50}) == ("done in 0.1s", "info")


def test_a_cut_answer_and_skipped_files_are_warnings_or_notes():
    info = {"duration_ms": 2000, "finish_reason": "length", "usage": {"output_tokens": 9}}
    assert end_message("ok", None, info) == (
        "the answer was cut at the token limit (truncated) after 2.0s, ?→9 tokens",
        "warn",
    )
    text, level = end_message("ok", None, {"duration_ms": 10, "skipped_files": 2})
    assert text.endswith("; 2 .kzn file(s) left out (:KznDebug shows which and why)")
    assert level == "info"


def test_a_failure_says_what_became_of_the_buffer_only_when_there_is_one():
    assert end_message("error", "boom", {}, wrote=False) == ("boom (buffer unchanged)", "error")
    assert end_message("error", "boom", {}, wrote=True) == ("boom (partial output kept)", "error")
    assert end_message("error", None, {}) == ("failed", "error")  # the CLI: no buffer
    assert end_message("cancelled", None, {}, wrote=False) == (
        "cancelled (buffer unchanged)",
        "warn",
    )
    assert end_message("cancelled", "why", {}) == ("cancelled: why", "warn")


def test_a_success_that_wrote_nothing_says_the_answer_was_empty():
    info = {"duration_ms": 500, "first_token_ms": 10}
    assert end_message("ok", None, info, wrote=False) == (
        "the answer was empty (buffer unchanged), after 0.5s, first token 0.01s",
        "warn",
    )
    assert end_message("ok", None, info, wrote=True)[0].startswith("done in 0.5s")
    assert end_message("ok", None, info)[0].startswith("done in 0.5s")  # the CLI: no buffer
