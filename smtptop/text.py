"""The one conversion from wire bytes to display text.

Everything that came from the network or a capture file (HELO names, addresses, reply texts,
headers) passes through :func:`wire_text` before any view sees it.  Control characters (C0,
DEL, C1), bidi overrides and zero-width characters are made visible as escapes, so that a
spambot's HELO can never move the cursor, recolour the terminal or change its title.
Views must still render the result as plain text (Rich ``Text``), never as markup.
"""

_UNSAFE = [
    *range(0x00, 0x09),
    *range(0x0A, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    *range(0x200B, 0x2010),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0xFEFF,
]
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE} | {0x09: "\\t"}


def wire_text(data: bytes) -> str:
    """Decode one line of wire bytes (UTF-8, undecodable bytes as ``\\xNN``) into inert text."""
    if data.isascii():
        text = data.decode("ascii")
        return text if text.isprintable() else text.translate(_ESCAPES)  # the common case
    return data.decode("utf-8", "backslashreplace").translate(_ESCAPES)


def inert(text: str) -> str:
    """Make an already-decoded string inert (for text that did not arrive as bytes)."""
    return text.translate(_ESCAPES)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``1,203 sessions``: a count with its noun agreeing."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"
