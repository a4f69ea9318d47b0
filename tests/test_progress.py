"""Reading progress: on a terminal's stderr while ``smtptop report`` reads, never on a pipe;
packets per second and time left in the monitor's status bar."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import synth

from smtptop.progress import Speedometer, describe, duration, elapsed
from smtptop.source import FileSource, Progress
from smtptop.tui.app import MonitorApp


def big_capture(path: Path, sessions: int = 1500, spacing: float = 1.0) -> str:
    frames = []
    for i in range(sessions):
        conv = synth.Conversation(f"192.168.1.{i % 200 + 1}", 20000 + i, "198.51.100.7", 25,
                                  start=1.79e9 + i * spacing)  # fmt: skip
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 mx\r\n"),
                   ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
        conv.close()
        frames += conv.frames
    synth.write_pcap(path, frames, synth.LINKTYPE_ETHERNET)
    return str(path)


def run_report(path: str, *, tty: bool) -> tuple[str, bytes]:
    """The report's stdout, and what it wrote to stderr (a pty or a pipe)."""
    command = [sys.executable, "-m", "smtptop", "report", path]
    if not tty:
        done = subprocess.run(command, capture_output=True, timeout=120, check=True)
        return done.stdout.decode(), done.stderr
    parent, child = pty.openpty()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    err = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([parent], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(parent, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    assert proc.stdout is not None
    with proc.stdout:
        out = proc.stdout.read().decode()
    proc.wait(timeout=30)
    os.close(parent)
    return out, err


def test_progress_on_a_terminal_and_not_on_a_pipe(tmp_path: Path) -> None:
    path = big_capture(tmp_path / "big.pcap")
    out, err = run_report(path, tty=True)
    assert "192.168.1.1 " in out and "reading" not in out
    assert b"smtptop: reading " in err and b"%" in err and b"pkt/s" in err
    assert err.endswith(b"\r")  # the line was erased: the terminal is left clean
    out_pipe, err_pipe = run_report(path, tty=False)
    assert out_pipe == out
    assert b"reading" not in err_pipe and b"\r" not in err_pipe


def test_speedometer_rates_and_time_left() -> None:
    speed = Speedometer(window=5.0)
    assert speed.eta(100) is None and speed.packets_per_second() == 0
    for second in range(11):
        speed.update(float(second), 1000 * second, 10 * second)
    assert speed.packets_per_second() == 1000
    assert speed.eta(200) == 10.0  # 100 bytes done at 10 per second
    assert duration(3723) == "1:02:03" and duration(7) == "0:07"
    assert describe(speed, 100, 200) == "100 B / 200 B  50%  1,000 pkt/s  ETA 0:10"


async def test_status_bar_shows_where_a_replay_stands(tmp_path: Path) -> None:
    """A replay reads ahead of its clock, so the read position says nothing of where it
    stands: the status bar shows capture time played of capture time in all."""
    path = big_capture(tmp_path / "replay.pcap", sessions=6000, spacing=0.01)
    span = duration(5999 * 0.01 + 0.2)  # the last session lasts a fraction of a second
    app = MonitorApp(FileSource([path], speed=10.0))
    async with app.run_test(size=(150, 45)) as pilot:
        played: list[str] = []
        deadline = time.monotonic() + 20
        while len(set(played)) < 3 and time.monotonic() < deadline:
            await pilot.pause(0.2)
            app.update_view()
            text = str(app.query_one("#status").render())
            found = re.search(r"replay (\d+:\d\d) of (\d+:\d\d)", text)
            if found:
                assert found[2] == span and "reading" not in text, text
                played.append(found[1])
        assert len(set(played)) >= 3, played
        assert played == sorted(played, key=lambda t: int(t.replace(":", "")))
        await pilot.press("q")


async def test_status_bar_shows_packets_per_second_and_time_left(tmp_path: Path) -> None:
    path = big_capture(tmp_path / "small.pcap", sessions=10)
    app = MonitorApp(FileSource([path]), refresh_seconds=3600)
    async with app.run_test(size=(150, 45)) as pilot:
        deadline = time.monotonic() + 20
        while not app.progress.finished:  # no batch may come after the figures set here
            assert time.monotonic() < deadline, "the capture did not finish loading"
            await pilot.pause(0.05)
        for packets, done in ((1000, 100), (4000, 400)):
            app.progress = Progress(packets=packets, bytes_done=done, bytes_total=1000)
            app.update_status()
            await pilot.pause(0.3)
        text = str(app.query_one("#status").render())
        assert "reading 40%" in text and "pkt/s" in text and "ETA" in text, text
        await pilot.press("q")


def test_elapsed_reads_as_an_admin_says_it() -> None:
    assert [elapsed(s) for s in (0, 45, 14 * 60 + 59, 4320, 3 * 86400 + 4 * 3600 + 5)] == [
        "0s", "45s", "14m", "1h 12m", "3d 4h",
    ]  # fmt: skip
