"""kznllm-py: stream LLM answers into Neovim buffers.

The pure core (sse, providers, prompts, presets, secrets, generation) never imports
pynvim; `plugin.py` and `editor.py` are the Neovim edge, `cli.py` the command line.
"""

__version__ = "0.1.0"
