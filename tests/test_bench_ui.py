"""The UI benchmarks still run and measure what they claim (their --smoke modes: small
sizes, correctness assertions, never timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def smoke(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_tui_redraw_smoke() -> None:
    out = smoke("tui_redraw.py")
    assert "| 300 | 300 / 50 |" in out


def test_startup_smoke() -> None:
    out = smoke("startup.py")
    assert "--help" in out and "first frame" in out
