"""The README's screenshots still show what the monitor shows.

The SVGs are regenerated headless and their terminal text compared with the committed ones:
text, not bytes or pixels, so a Textual or font upgrade that only restyles them does not fail
here.  ``python screenshots/generate.py`` brings them up to date.  Each is in the README's
"Try it", as big as its name says (150 columns unless it says ``-80x24``), titled with the
command shown there.
"""

from __future__ import annotations

import html
import importlib.util
import re
import struct
from pathlib import Path
from types import ModuleType

import pytest

SHOTS = Path(__file__).resolve().parent.parent / "screenshots"
RUN = re.compile(
    r'<text [^>]*x="([\d.]+)"[^>]*textLength="([\d.]+)"[^>]*'
    r'clip-path="url\(#terminal-\d+-line-(\d+)\)"[^>]*>(.*?)</text>',
    re.S,
)
VIEWBOX = re.compile(r'<svg [^>]*viewBox="0 0 ([\d.]+) ([\d.]+)"')
TITLE = re.compile(r'<text class="terminal-\d+-title"[^>]*>(.*?)</text>', re.S)
FIX = "regenerate them: python screenshots/generate.py"
README = SHOTS.parent / "README.md"
# name: (columns, lines) of the terminal it shows
NAMES = {
    "hosts": (150, 12),
    "drilldown": (150, 40),
    "transcript": (150, 26),
    "hosts-80x24": (80, 24),
    "drilldown-80x24": (80, 24),
    "evidence": (150, 24),
    "contain": (150, 40),
}


def generator() -> ModuleType:
    """screenshots/generate.py, loaded by path: screenshots/ is not a package."""
    spec = importlib.util.spec_from_file_location("generate", SHOTS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def terminal_text(svg: str) -> list[str]:
    """The screen as lines of text: each run of text put back at its column.

    Rich writes no run for blank cells, so runs are placed by their x, in cells as wide as
    its own runs say (textLength over characters).
    """
    runs = [
        (float(x), float(length), int(line), html.unescape(text).replace("\xa0", " "))
        for x, length, line, text in RUN.findall(svg)
    ]
    if not runs:
        return []
    cell = next(length / len(text) for _, length, _, text in runs if text)
    lines: dict[int, list[str]] = {}
    for x, _, line, text in runs:
        column = round(x / cell)
        chars = lines.setdefault(line, [])
        chars.extend(" " * (column + len(text) - len(chars)))
        chars[column : column + len(text)] = text
    return ["".join(lines.get(n, [])).rstrip() for n in range(max(lines) + 1)]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.fixture(scope="module")
def fresh() -> dict[str, str]:
    return generator().render_all()


def try_it() -> str:
    """The README's "Try it" section."""
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]


def test_generator_makes_these() -> None:
    assert list(generator().SHOTS) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_screenshot_is_current(fresh: dict[str, str], name: str) -> None:
    committed = SHOTS / f"{name}.svg"
    assert committed.exists(), f"{committed} is missing: {FIX}"
    old, new = terminal_text(committed.read_text(encoding="utf-8")), terminal_text(fresh[name])
    assert any("192.168.0.108" in line for line in new), "the spambot is not in the picture"
    assert old == new, f"screenshots/{name}.svg no longer shows what the monitor shows: {FIX}"


@pytest.mark.parametrize("name", NAMES)
def test_screenshot_size(fresh: dict[str, str], name: str) -> None:
    """The terminal in the picture is as big as its name says: every line of it drawn (the
    footer is the last), none wider."""
    columns, lines = NAMES[name]
    text = terminal_text(fresh[name])
    assert len(text) == lines, f"{name}: {len(text)} lines"
    assert max(len(line) for line in text) <= columns, f"{name}: wider than {columns}"
    assert any(len(line) > columns - 4 for line in text), f"{name}: narrower than {columns}"


def test_80_columns_show_what_the_issue_asks() -> None:
    """At 80x24 the host view keeps host, verdict, sessions, destinations, rejected and
    tempfailed, and marks the hidden columns; the drill-down shows sessions' outcomes."""
    hosts = terminal_text((SHOTS / "hosts-80x24.svg").read_text(encoding="utf-8"))
    header = next(line for line in hosts if line.split()[:1] == ["Host"])
    assert re.search(r"  \+\d+ cols →$", header), f"no hidden-columns mark: {header!r}"
    for label in ("Verdict", "Sess", "Dest", "Rej", "Temp"):
        assert label in header, f"{label} is not shown at 80 columns: {header!r}"
    drill = terminal_text((SHOTS / "drilldown-80x24.svg").read_text(encoding="utf-8"))
    outcomes = [line for line in drill if re.search(r"\d\d:\d\d:\d\d .* rejected 55\d ", line)]
    assert len(outcomes) >= 5, "the drill-down shows few rejected sessions at 80x24"


@pytest.mark.parametrize("name", NAMES)
def test_readme_shows_it_under_its_command(name: str) -> None:
    """The README's "Try it" shows the picture, and runs the command in its title."""
    section = try_it()
    assert f"](screenshots/{name}.png)" in section, f"README's Try it lacks {name}.png"
    found = TITLE.search((SHOTS / f"{name}.svg").read_text(encoding="utf-8"))
    assert found is not None, f"screenshots/{name}.svg has no title"
    title = html.unescape(found[1]).replace("\xa0", " ")
    assert title == generator().COMMAND, title
    commands = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert re.search(rf"(^|[ /]){re.escape(title)}$", commands, re.M), (
        f"the window title {title!r} is not the command README's Try it runs"
    )


@pytest.mark.parametrize("name", NAMES)
def test_png_matches_svg(name: str) -> None:
    """A PNG beside each SVG, of the SVG's size (CairoSVG draws 1 px per SVG unit)."""
    png, svg = SHOTS / f"{name}.png", SHOTS / f"{name}.svg"
    assert png.exists(), f"{png} is missing: {FIX}"
    box = VIEWBOX.search(svg.read_text(encoding="utf-8"))
    assert box is not None, f"{svg} has no viewBox"
    assert png_size(png) == (round(float(box[1])), round(float(box[2]))), FIX


def test_the_story_ends_with_the_evidence_and_the_rules() -> None:
    """e said where the spambot's bundle went; c shows the rules that contain it and how to
    find the program on the PC."""
    lines = terminal_text((SHOTS / "evidence.svg").read_text(encoding="utf-8"))
    toast = "".join(line.split("▌")[1] for line in lines if "▌" in line)  # wrapped in its box
    said = "evidence for 192.168.0.108 in /tmp/smtptop-demo/smtptop-evidence-192.168.0.108-"
    assert said.replace(" ", "") in toast.replace(" ", ""), lines
    rules = "\n".join(terminal_text((SHOTS / "contain.svg").read_text(encoding="utf-8")))
    for expected in ("table inet smtptop_contain_", "Find the program on 192.168.0.108"):
        assert expected in rules, expected
