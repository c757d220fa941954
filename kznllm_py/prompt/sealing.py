"""Text from outside (a context section, a `.kzn` file, the buffer around the
selection) kept inside the block the templates put it in. Pure.

The templates put such text raw between `<context ...>` and `</context>` (`<file ...>`
and `</file>`), or under a `--- title ---` line: a rules file, a definition or a project
file holding `</context>`, or a line `--- x ---`, would end its block early, and what
follows would read as the request's own text (a second `<cursor/>` would even move where
the answer goes). What was chosen, and why:

- only the exact sequences that could end or open a block are changed, each by one
  backslash, so the text stays readable and faithful: `</context>` becomes `<\\/context>`,
  `<selection/>` becomes `<\\selection/>` (a `<` followed by one of the templates' own tag
  names, `TAG_NAMES`, in any case, a `/` or spaces between), and in the `--- title ---`
  style a line shaped as a title (`--- x ---`) becomes `\\--- x ---`. Code, prose and
  markdown read as they did (a per-request boundary would change every block's framing,
  and the golden requests with it, for text that holds none of these);
- it is reversible (`unseal(seal(t)) == t`): a sequence that already has backslashes
  gets one more, so a text holding `<\\/context>` itself reads back as it was, and a
  reader of the request (the tests' parser) gets exactly the text given;
- a chat format's special token (`<|im_end|>`, `<|eot_id|>`, DeepSeek's with fullwidth
  bars, U+FF5C) becomes `<\\|im_end|>` in both styles: a local server (llama.cpp, vLLM,
  Ollama) renders the chat template to one string and reads special tokens in it, so such
  a text would end the user's turn and open another; only a whole token is changed (`<|`
  as an operator of Elm or F# stays as it is);
- the `--- title ---` style has no closing tag, so its blocks end with a line of their own
  (`--- end of context ---`): without it the last block's text could not be told from the
  user's query that follows it. (templates/_shared/macros.jinja)

The selection (the text to rewrite) and the query are the user's own and go raw: the
answer must reproduce the selection character for character, and a selection shown
escaped would come back escaped."""

from __future__ import annotations

import re

# the tags the built-in templates use: blocks, the spot markers, the request
TAG_NAMES = ("context", "file", "project_files", "selection", "cursor", "request")
# the `--- title ---` style's own tags: the spot markers and the selection's block
MARKER_NAMES = ("selection", "cursor")


def _tag(names: tuple[str, ...], lead: str = "") -> re.Pattern[str]:
    """`<`, then `lead`, then the backslashes already there (group 1), then a tag name
    with what may stand before it (group 2)."""
    alternatives = "|".join(names)
    return re.compile(rf"<{lead}(\\*)(\s*/?\s*(?:{alternatives})\b)", re.IGNORECASE)


# a chat format's special token: `<|name|>`, or DeepSeek's with fullwidth bars
_TOKEN = r"[|\uff5c][^\s|\uff5c<>]{1,40}[|\uff5c]>"
_SPECIAL = re.compile(rf"<(\\*)({_TOKEN})")
_SPECIAL_BACK = re.compile(rf"<\\(\\*)({_TOKEN})")
_TAG = _tag(TAG_NAMES)
_MARKER = _tag(MARKER_NAMES)
_TAG_BACK = _tag(TAG_NAMES, r"\\")  # a sealed one: the backslash seal added first
_MARKER_BACK = _tag(MARKER_NAMES, r"\\")
# a line a reader would take for a `--- title ---` line: three dashes, something that is
# not a dash or a space, three dashes at its end (spaces or a CR after them)
_TITLE_LINE = re.compile(r"^(\\*)(---(?=[^\n]*[^\s\-])[^\n]*---[ \t\r]*)$", re.MULTILINE)
_TITLE_LINE_BACK = re.compile(r"^\\(\\*)(---(?=[^\n]*[^\s\-])[^\n]*---[ \t\r]*)$", re.MULTILINE)


def seal(text: str, tag_style: bool = True) -> str:
    """`text` with every sequence that could end or open a block in that style taken
    out of the markup by one more backslash (see the module's doc)."""
    if "<" in text:
        text = _SPECIAL.sub(r"<\\\1\2", text)
        text = (_TAG if tag_style else _MARKER).sub(r"<\\\1\2", text)
    if tag_style or "---" not in text:
        return text
    return _TITLE_LINE.sub(r"\\\1\2", text)


def unseal(text: str, tag_style: bool = True) -> str:
    """The text `seal` was given (its inverse)."""
    text = _SPECIAL_BACK.sub(r"<\1\2", text)
    text = (_TAG_BACK if tag_style else _MARKER_BACK).sub(r"<\1\2", text)
    return text if tag_style else _TITLE_LINE_BACK.sub(r"\1\2", text)
