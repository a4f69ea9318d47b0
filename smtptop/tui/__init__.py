"""The terminal monitor (Textual)."""
