"""A generation's stream: HTTP, decoders, events, the answer's filters."""
