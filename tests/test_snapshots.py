"""Snapshots of the monitor's screens on the bundled sample, to catch layout regressions.

The baselines are SVGs in tests/__snapshots__/test_snapshots/.  After an intended change to a
screen, look at the report of the failing run (snapshot_report.html), then accept it with
``pytest tests/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

pytest.importorskip("pytest_textual_snapshot", reason="pip install pytest-textual-snapshot")

from textual.pilot import Pilot

from smtptop.cli import sample_path
from smtptop.source import FileSource
from smtptop.tui.app import MonitorApp
from smtptop.tui.help_screen import HelpScreen
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.tables import KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen

SIZES = [(80, 24), (120, 40), (200, 50)]
SPAMBOT = "192.168.0.108"
LOAD_SECONDS = 60.0

SnapCompare = Callable[..., bool]


pytestmark = pytest.mark.usefixtures("utc")  # conftest.py: times the same on every machine


def monitor() -> MonitorApp:
    # No periodic redraw: the views are drawn explicitly once the file is read, and a timer
    # tick could land mid-screenshot.
    return MonitorApp(FileSource([sample_path()]), refresh_seconds=3600)


async def loaded(pilot: Pilot[None]) -> None:
    """Until the whole sample is in the model and drawn (bounded, so a hang fails)."""
    app = pilot.app
    assert isinstance(app, MonitorApp)
    deadline = time.monotonic() + LOAD_SECONDS
    while not app.progress.finished:
        assert time.monotonic() < deadline, f"sample not loaded within {LOAD_SECONDS:g} s"
        await pilot.pause(0.05)
    app.update_view()
    await pilot.pause()


async def spambot(pilot: Pilot[None]) -> None:
    """The spambot's drill-down (without the toast that announced it, which would hide
    the bottom right of the screen)."""
    await loaded(pilot)
    pilot.app.clear_notifications()
    hosts = pilot.app.query_one("#hosts", KeyedTable)
    assert hosts.keys[0] == SPAMBOT
    hosts.move_cursor(row=0)
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, HostScreen)


async def spamhaus_rejection(pilot: Pilot[None]) -> None:
    """The transcript of the spambot's first session that zen.spamhaus.org refused."""
    await spambot(pilot)
    app = pilot.app
    assert isinstance(app, MonitorApp)
    sessions = app.screen.query_one("#sessions", KeyedTable)
    rows = [
        row
        for row, key in enumerate(sessions.keys)
        if (session := app.model.session(int(key))) is not None
        and session.outcome == "rejected"
        and session.outcome_reply is not None
        and session.outcome_reply.code == 554
        and "spamhaus" in session.outcome_reply.text
    ]
    assert rows, f"{SPAMBOT} has no session rejected with 554 by Spamhaus"
    sessions.move_cursor(row=rows[0])
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, TranscriptScreen)


async def help_screen(pilot: Pilot[None]) -> None:
    await loaded(pilot)
    pilot.app.clear_notifications()
    await pilot.press("question_mark")
    await pilot.pause()
    assert isinstance(pilot.app.screen, HelpScreen)


VIEWS = {
    "hosts": loaded,  # every host of the sample, the spambot on top
    "drilldown": spambot,  # the spambot's servers and sessions
    "transcript": spamhaus_rejection,  # a session refused: the office is on a blocklist
}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("view", list(VIEWS))
def test_view(snap_compare: SnapCompare, view: str, size: tuple[int, int]) -> None:
    """Each screen at the smallest terminal it must fit, a common one and a wide one."""
    assert snap_compare(monitor(), terminal_size=size, run_before=VIEWS[view])


def test_help(snap_compare: SnapCompare) -> None:
    """The help over the host table, in the smallest terminal."""
    assert snap_compare(monitor(), terminal_size=(80, 24), run_before=help_screen)
