"""Conversations over history: the provider-neutral prompt as history stores it, the
prompt of a follow-up (earlier turns as alternating messages, the system kept) and of a
re-run (the same prompt again, for another preset). Pure."""

from __future__ import annotations

import json
from typing import Any

from kznllm_py.errors import KznError
from kznllm_py.history.records import Entry
from kznllm_py.providers.base import Message, Prompt


class ConversationError(KznError):
    """An entry that cannot be continued or re-run."""


def prompt_to_json(prompt: Prompt) -> str:
    """What history keeps of a prompt: system and turns (the prefill is the answer's
    start, so it is part of the response, not of the prompt)."""
    return json.dumps(
        {
            "system": prompt.system,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
        },
        ensure_ascii=False,
    )


def prompt_from_json(text: str) -> Prompt | None:
    """The stored prompt, or None when there is none or it does not parse."""
    if not text:
        return None
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    system = data.get("system")
    raw = data.get("messages")
    if not isinstance(system, str) or not isinstance(raw, list):
        return None
    messages: list[Message] = []
    for m in raw:
        if not isinstance(m, dict):
            return None
        role, content = m.get("role"), m.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str):
            return None
        messages.append(Message(role, content))
    return Prompt(system=system, messages=tuple(messages))


def _asked(entry: Entry) -> Prompt:
    """The prompt `entry` was sent with; for entries recorded without one (older
    versions), its query alone."""
    prompt = prompt_from_json(entry.prompt)
    if prompt is not None and prompt.messages:
        return prompt
    if not entry.query.strip():
        raise ConversationError(f"history entry {entry.id} has no prompt to continue")
    return Prompt(system="", messages=(Message("user", entry.query),))


def rerun(entry: Entry) -> Prompt:
    """The same turns again (another preset's answer to the same prompt)."""
    return _asked(entry)


def follow_up(entry: Entry, query: str) -> Prompt:
    """`entry`'s turns, its answer, then `query`: turns alternate user / assistant and
    the system text is kept. An entry without an answer (failed, cancelled before the
    first token) contributes no assistant turn: the new query joins its last question."""
    if not query.strip():
        raise ConversationError("a follow-up needs a question")
    asked = _asked(entry)
    messages = list(asked.messages)
    answer = entry.response.strip()
    if answer:
        messages += [Message("assistant", answer), Message("user", query)]
    elif messages and messages[-1].role == "user":
        messages[-1] = Message("user", f"{messages[-1].content}\n\n{query}")
    else:
        messages.append(Message("user", query))
    return Prompt(system=asked.system, messages=tuple(messages))
