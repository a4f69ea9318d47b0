"""The README says what the code does: the key table has the same entries as
``smtptop.keys`` (which ``--help`` and the help screen print), and the JSON section is the
rendering of the records ``report --json`` is written from (``smtptop.schema``)."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

from smtptop.analysis import analyze
from smtptop.keys import KEYS
from smtptop.render import to_json
from smtptop.schema import RECORDS, SCHEMA_VERSION, ReportRecord, fields_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
SAMPLE = README.parent / "smtptop" / "data" / "office.pcap"
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


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n### {title}\n") + 1 :]
    return section[: section.index("\n#", 1)]


def test_readme_documents_the_json_as_declared() -> None:
    """The JSON section's field list is the rendering of the records the JSON is written
    from, whole and alone: every field documented, none documented twice or by hand."""
    section = readme_section("JSON")
    rendering = fields_markdown()
    assert rendering in section
    documented = [line for line in section.splitlines() if line.startswith("* `")]
    assert documented == [line for line in rendering.splitlines() if line.startswith("* `")]


def test_the_json_has_the_declared_fields_in_their_order() -> None:
    """Every object of a real report has exactly its record's fields, in declaration order."""
    report = to_json(analyze([str(SAMPLE)]))
    hints = {record: typing.get_type_hints(record) for record in RECORDS}

    def check(value: object, record: type) -> int:
        assert isinstance(value, dict)
        assert list(value) == [f.name for f in dataclasses.fields(record)], record.__name__
        checked = 1
        for name, hint in hints[record].items():
            nested = [a for a in (hint, *typing.get_args(hint)) if a in hints]
            if nested:
                items = value[name] if isinstance(value[name], list) else [value[name]]
                checked += sum(check(item, nested[0]) for item in items if item is not None)
        return checked

    assert report["schema_version"] == SCHEMA_VERSION
    assert check(report, ReportRecord) > 1000
    assert any(s["outcome_reply"] for s in report["sessions"])  # the nested object was seen
