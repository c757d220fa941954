"""Context sources: each module turns one kind of fact into a `sections.Section` (see
kznllm_py/prompt/sections.py for the budget they share).

What the editor knows (the diagnostics, the enclosing scope, the outline, the definitions
the language servers give) is gathered by lua/kznllm/context/ at the keypress and
arrives in the fill's `context` table; `gathered.parse` types it once, bounded (the
editor's table is as untrusted as any input). What the host reads itself is read off the
event loop: the project's rules when the fill's job is built (kznllm_py/fill/job.py
`with_repo_context`), git's committed text at the keypress, asked by the editor's git
source (`git_blob`), which diffs it and relays the diff with the fill (the CLI's --git
runs git when its job is built).
"""
