"""What a prompt is made of: presets, templates (sandboxed), the project's files."""
