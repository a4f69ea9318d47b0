"""The README's screenshots still show what the monitor shows.

The SVGs are regenerated headless and their terminal text compared with the committed ones:
text, not bytes or pixels, so a Textual or font upgrade that only restyles them does not fail
here.  ``python screenshots/generate.py`` brings them up to date.
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
FIX = "regenerate them: python screenshots/generate.py"


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


@pytest.mark.parametrize("name", ["hosts", "drilldown", "transcript"])
def test_screenshot_is_current(fresh: dict[str, str], name: str) -> None:
    committed = SHOTS / f"{name}.svg"
    assert committed.exists(), f"{committed} is missing: {FIX}"
    old, new = terminal_text(committed.read_text(encoding="utf-8")), terminal_text(fresh[name])
    assert any("192.168.0.108" in line for line in new), "the spambot is not in the picture"
    assert old == new, f"screenshots/{name}.svg no longer shows what the monitor shows: {FIX}"


@pytest.mark.parametrize("name", ["hosts", "drilldown", "transcript"])
def test_png_matches_svg(name: str) -> None:
    """A PNG beside each SVG, of the SVG's size (CairoSVG draws 1 px per SVG unit)."""
    png, svg = SHOTS / f"{name}.png", SHOTS / f"{name}.svg"
    assert png.exists(), f"{png} is missing: {FIX}"
    box = VIEWBOX.search(svg.read_text(encoding="utf-8"))
    assert box is not None, f"{svg} has no viewBox"
    assert png_size(png) == (round(float(box[1])), round(float(box[2]))), FIX
