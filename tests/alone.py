"""The suite runs in parallel (pytest-xdist, the README's test command); a test that
holds the code to a bound of time or CPU runs alone: no test of another worker runs
while it does, so it measures what it always measured, on a machine as quiet as a
serial run's.

`ALONE` names those tests, by module (relative to tests/): `None` for every test of the
module, else the test functions (every parametrization of each). What counts: a bound
on wall-clock or CPU time of a few seconds or less (`elapsed < 1.0`, an idle host's CPU
ticks, the pace of writes), the watchdog at its 1 s silence, which a starved host
trips, or a bound on work that takes all of a core (the decompression bombs). A
generous bound on a light test (`< 10`: "ends, not hangs") runs in parallel.

`Turns` is a readers-writer lock over files in the run's shared temp dir: every test
takes it shared, a test in `ALONE` exclusive; a gate taken first keeps a waiting
exclusive turn from being starved by a stream of shared ones. Without xdist there is
nothing to share and nothing is taken."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ALONE: dict[str, tuple[str, ...] | None] = {
    "test_faults.py": None,
    "test_secrets.py": ("test_hanging_cmd_is_stopped_at_the_timeout",),
    "cli/test_cli_tree_context.py": (
        "test_a_hung_neovim_is_killed_at_the_deadline_with_what_it_started",
    ),
    "fill/test_shape.py": ("test_a_long_line_without_a_break_is_shaped_in_linear_time",),
    "history/test_history.py": ("test_listing_10000_entries_is_fast",),
    "nvim/test_editor.py": ("test_escape_cancels_mid_stream_within_100ms_and_keeps_partial_text",),
    "nvim/test_editor_indicators.py": ("test_the_progress_keeps_moving_at_five_tokens_a_second",),
    "nvim/test_editor_pace.py": None,
    "nvim/test_editor_prestart.py": None,
    "nvim/test_editor_review_big.py": None,
    "nvim/test_editor_review_keys.py": (
        "test_a_user_map_is_neither_shadowed_nor_delayed_and_the_line_names_only_free_keys",
        "test_no_builtin_command_or_default_map_is_shadowed_while_a_review_is_open",
    ),
    "nvim/test_editor_watchdog.py": None,
    "nvim/test_security_editor.py": (
        "test_a_fresh_hosts_first_fill_saves_its_partial_answer_within_a_second_and_survives_a_kill",
        "test_a_spinning_project_template_leaves_other_fills_free_and_fails_with_one_message",
        "test_escape_while_a_project_template_renders_cancels_at_once",
    ),
    "prompt/test_context.py": ("test_two_thousand_small_files_collect_quickly",),
    "prompt/test_context_definitions.py": (
        "test_a_server_that_never_answers_is_cancelled_and_the_fill_goes_at_the_deadline",
        "test_with_no_server_giving_definitions_the_fill_goes_at_once",
    ),
    "prompt/test_context_diagnostics.py": (
        "test_a_source_slower_than_the_deadline_is_left_out_and_the_fill_goes_at_the_deadline",
    ),
    "prompt/test_context_git.py": (
        "test_a_hung_git_is_stopped_at_the_deadline",
        "test_a_wedged_cat_file_is_killed_at_the_deadline_and_replaced",
    ),
    "prompt/test_context_late_answers.py": None,
    "prompt/test_context_rules.py": (
        "test_an_oversized_rules_file_is_refused_before_a_byte_is_read",
        "test_mdc_front_matter_decides_which_files_a_rule_applies_to",
    ),
    "prompt/test_headless_run.py": None,
    "prompt/test_project_templates.py": None,
    "prompt/test_sandbox.py": None,
    "stream/test_client_http.py": (
        "test_cancel_mid_stream_closes_the_connection",
        "test_connect_timeout",
        "test_read_stall_keeps_partial_text",
    ),
    "stream/test_demo_server.py": ("test_demo_preset_survives_a_closed_event_loop",),
    "stream/test_quirks.py": ("test_final_event_ends_the_answer_though_the_body_stays_open",),
    "stream/test_network.py": (
        "test_a_compression_bomb_in_the_editor_fails_one_fill_and_the_host_stays_small",
        "test_a_hostile_response_ends_the_request_in_time_and_small",
    ),
    "stream/test_realserver.py": None,
    "stream/test_sse.py": (
        "test_a_big_event_within_the_line_limit_in_64k_chunks",
        "test_a_big_multi_line_event_within_the_limit_in_64k_chunks",
    ),
    "stream/test_stream_deadlines.py": None,
    "stream/test_transport.py": (
        "test_a_dead_reused_connection_is_retried_once_on_a_fresh_one",
        "test_a_response_head_must_come_within_the_stall_timeout",
        "test_a_slow_head_on_a_fresh_connection_waits_the_stall_timeout",
    ),
}


def runs_alone(module: str, function: str) -> bool:
    """Whether test `function` of `module` (relative to tests/) is in `ALONE`."""
    if module not in ALONE:
        return False
    names = ALONE[module]
    return names is None or function in names


def unknown(collected: dict[str, set[str]]) -> list[str]:
    """The entries of `ALONE` that name no test of a collected module (`collected`:
    module -> its test functions): a renamed test would silently run in parallel."""
    return [
        f"{module}::{name}"
        for module, names in ALONE.items()
        if module in collected and names is not None
        for name in names
        if name not in collected[module]
    ]


class Turns:
    """The lock files of one parallel run, in `shared` (the run's temp dir, which every
    worker sees and pytest cleans up as it does every temp dir)."""

    def __init__(self, shared: Path) -> None:
        self.gate = shared / "turns.gate"
        self.room = shared / "turns.room"

    @contextmanager
    def take(self, alone: bool) -> Iterator[None]:
        """Hold a turn: shared with the other workers' tests, or the whole run's when
        `alone`. flock() blocks until the turn is free: no polling, no sleep."""
        with self.gate.open("a") as gate, self.room.open("a") as room:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
            finally:
                if not alone:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            yield  # both released when closed
