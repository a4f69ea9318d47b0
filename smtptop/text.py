"""The one conversion from wire bytes to display text.

Everything that came from the network or a capture file (HELO names, addresses, reply texts,
headers) passes through :func:`wire_text` before any view sees it.  Control characters (C0,
DEL, C1) and every Unicode format character, line and paragraph separator and tag (general
categories Cf, Zl and Zp, and the tag block U+E0000-U+E007F: bidi overrides and isolates,
zero-width characters, the Arabic letter mark, the soft hyphen, interlinear annotation
anchors...) are made visible as escapes written as Python writes them (``\\x1b``,
``\\u202e``, ``\\U000e0001``), so that a spambot's HELO can never move the cursor, recolour
the terminal, change its title, reorder what is shown or hide text.  Views must still render
the result as plain text (Rich ``Text``), never as markup.
"""

import unicodedata

_INVISIBLE = frozenset({"Cf", "Zl", "Zp"})
# Where Unicode puts format characters: the BMP, the SMP, and plane 14 (tags).  Scanning only
# these at import takes about 10 ms where the whole code space would take 170; planes 2-13
# hold ideographs and unassigned code points, 15-16 private use (tests check the whole space).
_FORMAT_PLANES = (range(0x20000), range(0xE0000, 0xE1000))


def _escape(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe() -> list[int]:
    controls = [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)]
    category = unicodedata.category
    invisible = [c for plane in _FORMAT_PLANES for c in plane if category(chr(c)) in _INVISIBLE]
    return [*controls, *invisible, *range(0xE0000, 0xE0080)]


_ESCAPES = {code: _escape(code) for code in _unsafe()} | {0x09: "\\t"}


def wire_text(data: bytes) -> str:
    """Decode one line of wire bytes (UTF-8, undecodable bytes as ``\\xNN``) into inert text."""
    if data.isascii():
        text = data.decode("ascii")
        return text if text.isprintable() else text.translate(_ESCAPES)  # the common case
    return inert(data.decode("utf-8", "backslashreplace"))


def inert(text: str) -> str:
    """Make an already-decoded string inert (for text that did not arrive as bytes).

    Every escaped character is one :meth:`str.isprintable` rejects, so printable text (most
    non-ASCII names) skips the translation."""
    return text if text.isprintable() else text.translate(_ESCAPES)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 session``, ``2 sessions``, ``1,203 sessions``: a count with its noun agreeing."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"
