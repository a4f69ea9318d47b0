"""What several test modules need: the real ``smtptop`` command in a subprocess, a wait for
the monitor to have read its capture (bounded, so that a hang fails), and a capture dealt
out as the kernel deals a live capture to engine processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import synth
from bpf_vm import run as run_bpf
from textual.pilot import Pilot

from smtptop import analyzer, bpf
from smtptop.capture import CaptureFile
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


def dealt_by_kernel(path: str, engines: int, folder: Path) -> list[str]:
    """The capture split as PACKET_FANOUT would deal it to ``engines`` sockets: each record to
    the file the fanout program names, run by the BPF interpreter with the offsets the kernel
    gives it (one VLAN tag taken off, as on receive)."""
    program = bpf.fanout_program(analyzer.DEFAULT_PORTS)
    parts: list[list[synth.Frame]] = [[] for _ in range(engines)]
    for ts, _, frame in CaptureFile(path):
        assert isinstance(frame, bytes)
        network = 18 if frame[12:14] == b"\x81\x00" else 14
        protocol = int.from_bytes(frame[network - 2 : network], "big")
        engine = run_bpf(program, frame, network=network, protocol=protocol) % engines
        parts[engine].append(synth.Frame(ts, frame))
    paths = []
    for engine, frames in enumerate(parts):
        paths.append(str(folder / f"engine{engine}.pcap"))
        synth.write_pcap(paths[-1], frames, synth.LINKTYPE_ETHERNET)
    return paths
