"""A 2,502-line JSON file and its "disable every other item" answer: the review that
took the old difflib diff 4.1 s per pass (all those repeated `{` / `},` lines). Shared by
tests/nvim/test_editor_review_big.py and bench/review_bench.py."""

from __future__ import annotations

ITEMS = 500  # five lines each, plus the brackets: 2,502 lines


def json_lines(disable_every_other: bool = False) -> list[str]:
    out = ["["]
    for i in range(ITEMS):
        off = disable_every_other and i % 2 == 1
        out += [
            "  {",
            f'    "id": {i},',
            f'    "name": "item {i}",',
            f'    "enabled": {"false" if off else "true"}',
            "  }," if i < ITEMS - 1 else "  }",
        ]
    out.append("]")
    return out


def token_chunks(text: str, size: int = 16) -> list[str]:
    """The answer cut in pieces of `size` characters (about four tokens each)."""
    return [text[i : i + size] for i in range(0, len(text), size)]
