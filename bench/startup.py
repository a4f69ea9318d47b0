"""Start-up time: ``smtptop --help``, and the monitor's first frame with a host on it.

``--help`` is timed as a subprocess (median of ``--runs``).  The first frame: ``smtptop -r
smtptop/data/office.pcap`` runs in a pseudo-terminal (120x40, TERM=xterm-256color) and the
clock stops when its output first shows a LAN address, i.e. the host table's first row; the
monitor is then told to quit with ``q``.  The installed ``smtptop`` script is run directly
(a pyenv shim in front of it adds about 0.1 s that is not smtptop's).  ``--smtptop PATH``
(repeatable) times those scripts instead, one build each: the goals hold for the compiled and
the pure-Python build alike.

Usage::

    python bench/startup.py [--runs 10] [--smtptop .venv/bin/smtptop ...]
    python bench/startup.py --smoke      # one run of each, asserts they work

Writes bench/results/startup.md (not with --smoke).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import platform
import pty
import re
import select
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "smtptop" / "data" / "office.pcap"
RESULTS = REPO / "bench" / "results" / "startup.md"
HOST_ROW = re.compile(rb"192\.168\.\d{1,3}\.\d{1,3}")
TIMEOUT = 30.0


def smtptop_command() -> list[str]:
    """The console script next to this Python, else ``python -m smtptop``."""
    script = Path(sys.executable).with_name("smtptop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smtptop"]


def build_label(command: list[str]) -> str:
    """The build ``--version`` names, in its brackets: "compiled with mypyc", "pure Python"."""
    said = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True)
    return said.stdout.strip().partition("(")[2].rstrip(")") or said.stdout.strip()


def time_help(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run([*command, "--help"], capture_output=True, check=True)
    return time.perf_counter() - began


def time_first_frame(command: list[str], size: tuple[int, int] = (120, 40)) -> float:
    """Seconds from spawning the monitor in a pty until a host row is on screen."""
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(size[0]), LINES=str(size[1]))
    began = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the monitor, on the pty
        os.execve(command[0], [*command, "-r", str(SAMPLE)], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    seen = b""
    try:
        while time.perf_counter() - began < TIMEOUT:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen = seen[-64:] + chunk
            if HOST_ROW.search(seen):
                return time.perf_counter() - began
        raise RuntimeError("no host row on screen")
    finally:
        stop(pid, fd)


def stop(pid: int, fd: int) -> None:
    """Quit the monitor with its own key; kill it if it has not gone within 5 s."""
    os.write(fd, b"q")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            break
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                os.read(fd, 65536)  # keep the pty drained so the monitor can exit
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="one run each, correctness only")
    parser.add_argument(
        "--smtptop", action="append", metavar="PATH", help="an smtptop script to time (repeatable)"
    )
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs
    commands = [[path] for path in args.smtptop] if args.smtptop else [smtptop_command()]
    lines = [
        "| build | what | median s | min s | max s | goal s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for command in commands:
        label = build_label(command)
        helps = [time_help(command) for _ in range(runs)]
        frames = [time_first_frame(command) for _ in range(runs)]
        if args.smoke:
            assert helps[0] > 0 and frames[0] > 0
            print(f"{label}: --help {helps[0]:.3f} s, first frame {frames[0]:.3f} s")
            continue
        rows = [
            ("`smtptop --help`", helps, 0.3),
            (f"first frame of `smtptop -r {SAMPLE.relative_to(REPO)}`", frames, 1.0),
        ]
        for name, values, goal in rows:
            lines.append(
                f"| {label} | {name} | {statistics.median(values):.3f} | {min(values):.3f} "
                f"| {max(values):.3f} | {goal} |"
            )
    if args.smoke:
        return
    command = ", ".join(f"`{' '.join(c)}`" for c in commands)
    text = (
        "# Start-up\n\n"
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} at the end.\n\n"
        f"Command: `python bench/startup.py {' '.join(sys.argv[1:])}` ({runs} runs each of "
        f"{command}; "
        "first frame in a 120x40 pty until a host address is drawn).\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
