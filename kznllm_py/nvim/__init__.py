"""The Neovim edge: the pynvim plugin, the editor's calls, the buffer sink."""
