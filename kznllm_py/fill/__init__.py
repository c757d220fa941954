"""A fill: its typed request, its job, its own logic (pure), the debug view."""
