"""What several test modules need: the real ``smtptop`` command in a subprocess, and a wait
for the monitor to have read its capture (bounded, so that a hang fails)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from textual.pilot import Pilot

from smtptop.tui.app import MonitorApp

ROOT = Path(__file__).resolve().parent.parent


def smtptop(
    *args: str, timeout: float = 60, cwd: str | Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``smtptop ARGS`` as a user runs it, from this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "smtptop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def settle(app: MonitorApp, pilot: Pilot[None], limit: float = 20.0) -> None:
    """Wait (bounded) until the source is read and the view redrawn."""
    deadline = time.monotonic() + limit
    while not app.progress.finished:
        assert time.monotonic() < deadline, "the capture did not finish loading"
        await pilot.pause(0.05)
    app.update_view()
    await pilot.pause()
