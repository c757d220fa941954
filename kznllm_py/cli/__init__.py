"""The kznllm command."""
