"""Wire text is inert: controls and every invisible Unicode character come out as escapes."""

from __future__ import annotations

import unicodedata

import pytest

from smtptop.text import inert, wire_text

INVISIBLE = ("Cf", "Zl", "Zp")


def escape(code: int) -> str:
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


@pytest.mark.parametrize(
    "char",
    ["\u061c", "\u2028", "\u2029", "\ufff9", "\U000e0001", "\U000e0041", "\U000e007f", "\xad",
     "\u200e", "\u200f", "\u202e", "\u2066", "\ufeff", "\x1b", "\x9b", "\x7f"],
)  # fmt: skip
def test_each_listed_character_is_escaped(char: str) -> None:
    code = ord(char)
    assert wire_text(f"a{char}b".encode()) == f"a{escape(code)}b"
    assert inert(f"a{char}b") == f"a{escape(code)}b"


def test_every_format_separator_and_tag_character_is_escaped() -> None:
    """The whole code space, by this Python's Unicode database: a character added to Cf,
    Zl or Zp in a later Unicode version, anywhere, fails here until the table knows it."""
    wanted = [
        c
        for c in range(0x110000)
        if unicodedata.category(chr(c)) in INVISIBLE or 0xE0000 <= c <= 0xE007F
    ]
    assert len(wanted) > 190
    text = "".join(map(chr, wanted))
    assert inert(text) == "".join(map(escape, wanted))
    assert wire_text(text.encode("utf-8", "surrogatepass")) == inert(text)


@pytest.mark.parametrize("text", ["é", "Grüße", "日本語", "Ω≈ç√", "😀", "naïve café", "tab-less"])
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert wire_text(text.encode()) == text == inert(text)


def test_undecodable_bytes_and_tabs_stay_visible() -> None:
    assert wire_text(b"a\xffb\tc") == "a\\xffb\\tc"
