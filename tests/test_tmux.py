"""The monitor in a real terminal (tmux), driven by keys and read off the screen as a person
would: the spambot on top, its transcript, the filter, and a clean quit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtptop.report import analyze

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
SPAMBOT = "192.168.0.108"
WAIT_SECONDS = 60.0
TMUX = shutil.which("tmux")

pytestmark = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (Debian package tmux; CI installs it)"
)


class Terminal:
    """One tmux server of its own (own socket, no user config) running one pane."""

    def __init__(self, name: str, socket: Path) -> None:
        assert TMUX is not None
        self.base = [TMUX, "-S", str(socket), "-f", os.devnull]
        self.name = name
        # Passed explicitly, without COLUMNS and LINES: Textual would size itself by them
        # rather than by the pane, and readline (which pytest loads) exports them at the C
        # level, out of os.environ's sight.  Without TMUX too, should pytest run inside tmux.
        self.env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, timeout=10,
            check=True,
        )  # fmt: skip
        return result.stdout

    def start(self, command: list[str], width: int, height: int) -> None:
        # default-size: the pane is born at its size, not resized under a starting program.
        # remain-on-exit keeps the pane, so its last screen can be read.
        size = f"{width}x{height}"
        self.tmux(
            "start-server", ";",
            "set-option", "-g", "default-size", size, ";",
            "set-option", "-g", "remain-on-exit", "on", ";",
            "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), *command,
        )  # fmt: skip

    def screen(self, history: bool = False) -> str:
        """What the pane shows (with its scrollback: a crash's traceback scrolls off)."""
        return self.tmux("capture-pane", "-p", *(["-S", "-"] if history else []), "-t", self.name)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def pane(self, field: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.name, f"#{{{field}}}").strip()

    def wait(self, what: str, check: Callable[[str], bool]) -> str:
        """The screen once ``check`` accepts it (bounded: fails with the last screen)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            dead = self.pane("pane_dead") == "1"
            screen = self.screen()  # after the look at pane_dead: a dead pane's last screen
            if check(screen):
                return screen
            if dead:
                pytest.fail(f"the monitor ended before {what}:\n{self.screen(history=True)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {WAIT_SECONDS:g} s; the screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], env=self.env, capture_output=True, timeout=10)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    # The socket in tmp_path: tmux leaves a killed server's socket file behind.
    term = Terminal(f"smtptop-test-{uuid.uuid4().hex[:8]}", tmp_path / "tmux")
    try:
        yield term
    finally:
        term.close()


LABEL = re.compile(r"\S+(?: \S+)*")  # header labels: columns are 2+ spaces apart
ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+$")


def host_table(screen: str) -> list[dict[str, str]]:
    """The host table's rows as {column label: cell}, cut where the header's labels start.

    Labels start at their column's left edge and numbers end at its right one, so this holds
    whatever columns come and go.  No header (another screen): no rows.
    """
    lines = screen.splitlines()
    headers = [
        i for i, line in enumerate(lines) if line.split()[:1] == ["Host"] and " Sess" in line
    ]
    if not headers:
        return []
    labels = [(m.start(), m.group().rstrip("▲▼")) for m in LABEL.finditer(lines[headers[0]])]
    rows = []
    for line in lines[headers[0] + 1 :]:
        cells = {
            label: line[start : (labels[i + 1][0] if i + 1 < len(labels) else None)].strip()
            for i, (start, label) in enumerate(labels)
        }
        if not ADDRESS.match(cells["Host"]):
            break
        rows.append(cells)
    return rows


def test_monitor_in_tmux(terminal: Terminal, tmp_path: Path) -> None:
    expected = analyze([str(SAMPLE)]).model.hosts
    bot = expected[SPAMBOT]
    # The shell writes down the exit status: tmux 3.3 sometimes marks a pane dead without
    # reaping its process (#{pane_dead_status} stays empty) and drops its last output.
    status = tmp_path / "status"
    script = 'TZ=UTC PYTHONPATH="$1" "$2" -m smtptop -r "$3"; echo $? > "$4"'
    args = [str(ROOT), sys.executable, str(SAMPLE), str(status)]
    terminal.start(["sh", "-c", script, "sh", *args], 160, 45)

    screen = terminal.wait("loaded host table", lambda s: SPAMBOT in s and "end of capture" in s)
    rows = host_table(screen)
    assert len(rows) == len(expected), screen
    first = rows[0]
    assert first["Host"] == SPAMBOT, f"the spambot is not the first row:\n{screen}"
    shown = {label: first.get(label) for label in ("Sess", "Dest", "Rej", "Temp", "Msgs", "Rcpt")}
    counts = (bot.sessions, bot.destinations, bot.rejected_sessions, bot.tempfailed_sessions,
              bot.accepted_messages, bot.recipients)  # fmt: skip
    assert shown == dict(zip(shown, map(str, counts), strict=True)), screen

    terminal.keys("Enter")
    title = f"{bot.sessions} sessions to {bot.destinations} servers"
    terminal.wait("drill-down of the spambot", lambda s: title in s)
    terminal.keys("Enter")
    terminal.wait(
        "554 from zen.spamhaus.org in a transcript",
        lambda s: any(re.search(r"S: 554 .*zen\.spamhaus\.org", line) for line in s.splitlines()),
    )

    terminal.keys("Escape")
    terminal.wait("drill-down again", lambda s: title in s and "S: 554" not in s)
    terminal.keys("Escape")
    terminal.wait("host table again", lambda s: title not in s and len(host_table(s)) > 1)

    terminal.keys("/")
    terminal.wait("filter field", lambda s: "filter hosts by address" in s)
    terminal.keys("0.30", literal=True)
    screen = terminal.wait("one host left", lambda s: len(host_table(s)) == 1)
    assert host_table(screen)[0]["Host"] == "192.168.0.30", screen
    assert "filter: 0.30" in screen, screen

    terminal.keys("Escape")
    screen = terminal.wait("every host back", lambda s: len(host_table(s)) == len(expected))
    assert "filter:" not in screen and "filter hosts by address" not in screen, screen

    terminal.keys("q")
    deadline = time.monotonic() + WAIT_SECONDS
    while terminal.pane("pane_dead") != "1" or not status.exists():
        assert time.monotonic() < deadline, f"still running after q:\n{terminal.screen()}"
        time.sleep(0.1)
    exit_status = status.read_text().strip()
    assert exit_status == "0", f"exit status {exit_status}:\n{terminal.screen(history=True)}"


def test_wire_text_cannot_drive_the_terminal(terminal: Terminal, tmp_path: Path) -> None:
    """A HELO, a sender and a reply full of markup and escape sequences show as text: the
    pane title stays, nothing is clicked, the app keeps running."""
    from smtptop import synth

    hostile = b"\x1b]2;PWNED\x07[@click=app.quit]x[/]\x1b[31mRED\x9b2J\xe2\x80\xae"
    conv = synth.Conversation("192.168.9.9", 41000, "198.51.100.9", 25, start=1.0)
    conv.smtp(
        [
            ("S", b"220 " + hostile + b" ESMTP\r\n"),
            ("C", b"EHLO " + hostile + b"\r\n"),
            ("S", b"250 ok\r\n"),
            ("C", b"MAIL FROM:<" + hostile + b"@x.example>\r\n"),
            ("S", b"550 5.7.1 " + hostile + b"\r\n"),
        ]
    )
    capture = tmp_path / "hostile.pcap"
    synth.write_pcap(capture, conv.frames, synth.LINKTYPE_ETHERNET)
    script = 'TZ=UTC PYTHONPATH="$1" "$2" -m smtptop -r "$3"'
    terminal.start(["sh", "-c", script, "sh", str(ROOT), sys.executable, str(capture)], 160, 45)
    title = terminal.pane("pane_title")
    terminal.wait("host table", lambda s: "192.168.9.9" in s and "end of capture" in s)
    terminal.keys("Enter")
    terminal.wait("drill-down", lambda s: "1 session to 1 server" in s)
    terminal.keys("Enter")
    screen = terminal.wait("transcript", lambda s: "S: 550" in s)
    assert "\\x1b]2;PWNED\\x07[@click=app.quit]x[/]\\x1b[31mRED" in screen, screen
    assert "\\x9b2J\\u202e" in screen, screen
    assert terminal.pane("pane_title") == title != "PWNED"
    assert terminal.pane("pane_dead") != "1"
    colours = terminal.tmux("capture-pane", "-p", "-e", "-t", terminal.name)
    assert "RED" in colours and "\x1b[31mRED" not in colours
