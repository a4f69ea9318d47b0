"""The README's key table says what the monitor's keys do: the same entries as
``smtptop.keys`` (which ``--help`` and the help screen print)."""

from __future__ import annotations

import re
from pathlib import Path

from smtptop.keys import KEYS

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| ([^|]*) \| `([^`]+)` \| (.+) \|$")


def readme_keys() -> list[tuple[str, str, str]]:
    """(section, keys, what they do) from the table under "### Keys"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Keys") :]
    section = section[: section.index("\n#", 1)]
    rows, current = [], ""
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            current = match[1].strip() or current
            rows.append((current, match[2], match[3]))
    return rows


def test_readme_lists_every_key_as_the_monitor_does() -> None:
    expected = [(section, keys, does) for section, entries in KEYS for keys, does in entries]
    assert readme_keys() == expected
