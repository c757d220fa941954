"""The one line that ends a request, for the editor and the CLI alike. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kznllm_py.pricing import dollars

KEPT = " (partial output kept)"
UNCHANGED = " (buffer unchanged)"


def end_message(
    status: str, error: str | None, info: Mapping[str, Any], *, wrote: bool | None = None
) -> tuple[str, str]:
    """(text, level) of a request that ended with `status` ('ok', 'error', 'cancelled'),
    `error` and the outcome's `info` (Outcome.to_dict(): timings, usage, finish reason,
    skipped files). `wrote`: whether text went into a buffer (None: there is none, as in
    the CLI), said after a failure, and after a success that wrote nothing (an empty or
    all-blank answer). Level: 'info', 'warn' or 'error'. No prefix: the editor puts
    "kznllm: " before it, the CLI's stderr lines have theirs."""
    if status == "ok":
        extra = ""
        if info.get("first_token_ms") is not None:
            extra = f", first token {info['first_token_ms'] / 1000:.2f}s"
        usage = info.get("usage") or {}
        if usage.get("output_tokens") is not None:
            extra += f", {usage.get('input_tokens', '?')}→{usage['output_tokens']} tokens"
            if usage.get("cached_input_tokens"):
                extra += f" ({usage['cached_input_tokens']} cached)"
        if info.get("cost_usd") is not None:
            extra += f", {dollars(info['cost_usd'])}"
        if info.get("tokens_per_s"):
            extra += f", {info['tokens_per_s']:.0f}/s"
        if info.get("skipped_files"):
            n = info["skipped_files"]
            extra += f"; {n} .kzn file(s) left out (:KznDebug shows which and why)"
        secs = float(info.get("duration_ms") or 0) / 1000
        if info.get("finish_reason") == "length":
            cut = "the answer was cut at the token limit (truncated)"
            return f"{cut} after {secs:.1f}s{extra}", "warn"
        if info.get("finish_reason") == "content_filter":
            cut = "the answer was stopped by the provider's content filter (partial)"
            return f"{cut} after {secs:.1f}s{extra}", "warn"
        if wrote is False:  # the model's answer left nothing to write
            return f"the answer was empty{UNCHANGED}, after {secs:.1f}s{extra}", "warn"
        return f"done in {secs:.1f}s{extra}", "info"
    kept = "" if wrote is None else KEPT if wrote else UNCHANGED
    if status == "cancelled":
        return "cancelled" + (f": {error}" if error else "") + kept, "warn"
    return (error or "failed") + kept, "error"
