"""Render the README's screenshots: the real monitor on the bundled sample, headless.

Each picture is what ``smtptop demo`` (the command the README's "Try it" runs) shows once
the capture is replayed, at 150 columns and in an 80x24 terminal; its window title is that
command.  Run ``python screenshots/generate.py`` after changing what the monitor shows;
tests/test_screenshots.py fails while the committed pictures are stale.  The SVGs are
Textual's own; the PNGs come from CairoSVG (``pip install '.[screenshots]'``, with Debian's
``fonts-firacode``), because rsvg-convert misplaces Textual's spans.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from smtptop.source import FileSource

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
SPAMBOT = "192.168.0.108"
WIDTH = 150
# name: (columns, lines), and the view: the host table, the spambot's drill-down, or the
# transcript of a session Spamhaus refused.
SHOTS = {
    "hosts": ((WIDTH, 12), "hosts"),
    "drilldown": ((WIDTH, 40), "drilldown"),
    "transcript": ((WIDTH, 26), "transcript"),
    "hosts-80x24": ((80, 24), "hosts"),
    "drilldown-80x24": ((80, 24), "drilldown"),
}
COMMAND = "smtptop demo"  # the window title: the command the README shows beside them
LOAD_SECONDS = 60.0
# Rich lays each run of text over its cells with textLength; cairo ignores that and advances
# Fira Code by its hinted width, so runs are spaced out to their cells before conversion.
TEXT_RUN = re.compile(r'<text ([^>]*?)textLength="([\d.]+)"([^>]*)>(.*?)</text>', re.S)
FONT = "Fira Code"
FONT_PX = 20


@contextmanager
def utc() -> Iterator[None]:
    """Show capture times in UTC, so the pictures are the same on every machine."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


async def wait_loaded(pilot: Pilot[None]) -> None:
    """Until the whole sample is in the model and drawn (bounded: a hang must not hang CI)."""
    from smtptop.tui.app import MonitorApp

    app = pilot.app
    assert isinstance(app, MonitorApp)
    deadline = time.monotonic() + LOAD_SECONDS
    while not app.progress.finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sample was not loaded within {LOAD_SECONDS:g} s")
        await pilot.pause(0.05)
    app.update_view()
    await pilot.pause()


async def open_spamhaus_rejection(pilot: Pilot[None]) -> None:
    """On the spambot's drill-down, open its first session that zen.spamhaus.org refused."""
    from smtptop.tui.app import MonitorApp
    from smtptop.tui.tables import KeyedTable

    app = pilot.app
    assert isinstance(app, MonitorApp)
    table = app.screen.query_one("#sessions", KeyedTable)
    for row, key in enumerate(table.keys):
        session = app.model.session(int(key))
        if session is None or session.outcome != "rejected" or session.outcome_reply is None:
            continue
        if session.outcome_reply.code == 554 and "spamhaus" in session.outcome_reply.text:
            table.move_cursor(row=row)
            break
    else:
        raise LookupError(f"{SPAMBOT} has no session rejected with 554 by Spamhaus")
    await pilot.press("enter")
    await pilot.pause()


def demo_source() -> FileSource:
    """The source ``smtptop demo`` reads (the sample, labelled as replayed at the demo's
    speed), read at once: the end of a replay looks the same, without its minute of waiting."""
    from smtptop.cli import DEMO_SPEED
    from smtptop.source import FileSource

    source = FileSource([str(SAMPLE)], speed=DEMO_SPEED)
    source.speed = None
    return source


async def render(name: str) -> str:
    """One screenshot of the monitor on the sample, as Textual's SVG."""
    from smtptop.tui.app import MonitorApp
    from smtptop.tui.tables import KeyedTable

    size, view = SHOTS[name]
    # No periodic redraw: the views are drawn explicitly once the file is read.
    app = MonitorApp(demo_source(), refresh_seconds=3600)
    async with app.run_test(size=size) as pilot:
        await wait_loaded(pilot)
        if view in ("drilldown", "transcript"):
            hosts = app.query_one("#hosts", KeyedTable)
            hosts.move_cursor(row=hosts.keys.index(SPAMBOT))
            await pilot.press("enter")
            await pilot.pause()
        if view == "transcript":
            await open_spamhaus_rejection(pilot)
        return app.export_screenshot(title=COMMAND)


def render_all() -> dict[str, str]:
    """Every screenshot by name, times in UTC."""
    with utc():
        return {name: asyncio.run(render(name)) for name in SHOTS}


def fit_runs(svg: str) -> str:
    """Space each text run out to the cells Rich gave it (see TEXT_RUN)."""
    import cairocffi

    context = cairocffi.Context(cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, 1, 1))
    context.select_font_face(FONT)
    context.set_font_size(FONT_PX)
    advance = context.text_extents("M")[4]

    def spaced(match: re.Match[str]) -> str:
        before, length, after, text = match.groups()
        glyphs = len(html.unescape(text))
        spacing = (float(length) - advance * glyphs) / glyphs if glyphs else 0.0
        return (
            f'<text {before}textLength="{length}" letter-spacing="{spacing:.4f}"{after}>'
            f"{text}</text>"
        )

    return TEXT_RUN.sub(spaced, svg)


def write_png(svg: str, path: Path) -> None:
    import cairosvg

    cairosvg.svg2png(bytestring=fit_runs(svg).encode(), write_to=str(path))


def main() -> int:
    sys.path.insert(0, str(ROOT))  # render this working tree, installed or not
    for name, svg in render_all().items():
        (HERE / f"{name}.svg").write_text(svg, encoding="utf-8")
        write_png(svg, HERE / f"{name}.png")
        print(f"screenshots/{name}.svg, screenshots/{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
