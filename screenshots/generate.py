"""Render the README's screenshots: the real monitor on the bundled sample, headless.

Each picture is what ``smtptop demo`` (the command the README's "Try it" runs) shows once
the capture is replayed, at 150 columns and in an 80x24 terminal; its window title is that
command.  The last two end the story: ``e`` on the spambot (its bundle written to a folder
of the script's, named at the sample's last minute rather than the wall clock, so that the
picture does not change between runs) and ``c``.  Run ``python screenshots/generate.py``
after changing what the monitor shows; tests/test_screenshots.py fails while the committed
pictures are stale.  The SVGs are
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
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from smtptop.source import FileSource

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
SPAMBOT = "192.168.0.108"
WIDTH = 150
# name: (columns, lines), and the view: the host table, the spambot's drill-down, the
# transcript of a session Spamhaus refused, the drill-down once e wrote the spambot's
# evidence bundle, or what c shows: the rules that contain it.
SHOTS = {
    "hosts": ((WIDTH, 12), "hosts"),
    "drilldown": ((WIDTH, 40), "drilldown"),
    "transcript": ((WIDTH, 26), "transcript"),
    "hosts-80x24": ((80, 24), "hosts"),
    "drilldown-80x24": ((80, 24), "drilldown"),
    "evidence": ((WIDTH, 24), "evidence"),
    "contain": ((WIDTH, 40), "contain"),
}
COMMAND = "smtptop demo"  # the window title: the command the README shows beside them
LOAD_SECONDS = 60.0
# Rich lays each run of text over its cells with textLength; cairo ignores that and advances
# Fira Code by its hinted width, so runs are spaced out to their cells before conversion.
TEXT_RUN = re.compile(r'<text ([^>]*?)textLength="([\d.]+)"([^>]*)>(.*?)</text>', re.S)
SAMPLE_END = 1_793_610_749  # the sample's last packet (09:12 UTC): the evidence folder's time
EVIDENCE_DIR = "/tmp/smtptop-demo"
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
    async with app.run_test(size=size, notifications=view == "evidence") as pilot:
        await wait_loaded(pilot)
        if view != "hosts":
            hosts = app.query_one("#hosts", KeyedTable)
            hosts.move_cursor(row=hosts.keys.index(SPAMBOT))
            await pilot.press("enter")
            await pilot.pause()
        if view == "transcript":
            await open_spamhaus_rejection(pilot)
        elif view == "contain":
            await pilot.press("c")
            await pilot.pause()
        elif view == "evidence":
            await write_evidence(pilot)
        return app.export_screenshot(title=COMMAND)


async def write_evidence(pilot: Pilot[None]) -> None:
    """``e`` on the spambot's drill-down, until the monitor says where the bundle went (the
    spambot's alert cleared first).  The bundle goes to a folder of the script's own, made
    and removed here, at a path that is the same on every machine."""
    import shutil

    from smtptop.tui import app as monitor

    app = pilot.app
    assert isinstance(app, monitor.MonitorApp)
    app.clear_notifications()
    place = Path(EVIDENCE_DIR)
    shutil.rmtree(place, ignore_errors=True)
    place.mkdir()
    app.evidence_dir = str(place)
    try:
        with fixed_folder_time(monitor):
            await pilot.press("e")
            deadline = time.monotonic() + LOAD_SECONDS
            while not app._notifications:
                if time.monotonic() > deadline:
                    raise TimeoutError("the evidence bundle was not written")
                await pilot.pause(0.05)
        await pilot.pause()
    finally:
        shutil.rmtree(place, ignore_errors=True)


@contextmanager
def fixed_folder_time(module: ModuleType) -> Iterator[None]:
    """The monitor names a bundle's folder after the wall clock: here, after the sample's
    last minute, so that the picture is the same on every run."""
    wall = time.gmtime(SAMPLE_END)

    class Clock:
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        @staticmethod
        def strftime(form: str, when: object = None) -> str:
            return time.strftime(form, wall)

    saved = module.time
    module.time = Clock()
    try:
        yield
    finally:
        module.time = saved


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
