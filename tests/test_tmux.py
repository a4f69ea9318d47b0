"""The monitor in a real terminal (tmux), driven by keys and read off the screen as a person
would: the spambot on top, its transcript, the filter, the columns an 80x24 terminal shows
(every number checked against ``smtptop report --json``), and a clean quit.

Every check waits (bounded) until the screen shows what it checks: tmux may be read while a
frame is only half drawn, so nothing is asserted on a frame picked for another reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smtptop.analysis import analyze
from smtptop.tui import rows

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
SPAMBOT = "192.168.0.108"
WAIT_SECONDS = 60.0
TMUX = shutil.which("tmux")
# The monitor as a person starts it, in UTC; the shell writes down its exit status: tmux 3.3
# sometimes marks a pane dead without reaping its process (#{pane_dead_status} stays empty)
# and drops its last output.
MONITOR = 'TZ=UTC PYTHONPATH="$1" "$2" -m smtptop -r "$3"; echo $? > "$4"'

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

    def monitor(self, capture: Path, status: Path, width: int, height: int) -> None:
        """``smtptop -r capture`` from this checkout; its exit status goes to ``status``."""
        args = [str(ROOT), sys.executable, str(capture), str(status)]
        self.start(["sh", "-c", MONITOR, "sh", *args], width, height)

    def screen(self, history: bool = False) -> str:
        """What the pane shows (with its scrollback: a crash's traceback scrolls off)."""
        return self.tmux("capture-pane", "-p", *(["-S", "-"] if history else []), "-t", self.name)

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def pane(self, field: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.name, f"#{{{field}}}").strip()

    def wait(self, what: str, check: Callable[[str], object]) -> str:
        """The screen once ``check`` accepts it: returns true and raises no AssertionError
        (bounded: fails with the last screen and the last thing ``check`` found wrong)."""
        deadline = time.monotonic() + WAIT_SECONDS
        wrong = ""
        while True:
            dead = self.pane("pane_dead") == "1"
            screen = self.screen()  # after the look at pane_dead: a dead pane's last screen
            try:
                if check(screen):
                    return screen
                wrong = ""
            except AssertionError as error:
                wrong = f" ({error})"
            if dead:
                pytest.fail(f"the monitor ended before {what}{wrong}:\n{self.screen(True)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {WAIT_SECONDS:g} s{wrong}; the screen:\n{screen}")
            time.sleep(0.1)

    def exit_status(self, status: Path) -> str:
        """The monitor's exit status, once it has ended and the shell has written it down
        (the whole line: the file exists a moment before the number is in it)."""
        deadline = time.monotonic() + WAIT_SECONDS
        written = ""
        while self.pane("pane_dead") != "1" or not written.endswith("\n"):
            if time.monotonic() > deadline:
                pytest.fail(f"still running after {WAIT_SECONDS:g} s:\n{self.screen(True)}")
            time.sleep(0.1)
            written = status.read_text() if status.exists() else ""
        return written.strip()

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
MORE = re.compile(r"(?:← )?\+(\d+) cols?(?: →)?$")  # the header's mark of hidden columns
ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+$")
CLOCK = re.compile(r"\d\d:\d\d:\d\d$")


@dataclass
class Table:
    """A table read off the screen: its labels (sort arrows dropped), the header's mark of
    hidden columns ("" without one) and its rows as {label: cell}."""

    labels: list[str] = field(default_factory=list)
    mark: str = ""
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        """How many columns the mark says are hidden (0 without a mark)."""
        found = MORE.search(self.mark)
        return int(found[1]) if found else 0


def read_table(screen: str, first: str, key: re.Pattern[str]) -> Table:
    """The table whose header starts with the label ``first``, cut where the header's labels
    start; its rows are the lines below whose first cell matches ``key``.

    Labels start at their column's left edge and numbers end at its right one, so this holds
    whatever columns come and go.  The mark of hidden columns (``+5 cols →``) is at the
    header's right end; it is no column, and the last column's cells end where it starts.
    No such header (another screen): an empty table.
    """
    lines = screen.splitlines()
    starts = [line.split()[0].rstrip("▲▼") if line.strip() else "" for line in lines]
    if first not in starts:
        return Table()
    at = starts.index(first)
    header = lines[at].rstrip()
    mark = MORE.search(header)
    end = mark.start() if mark else None
    found = [(m.start(), m.group().rstrip("▲▼")) for m in LABEL.finditer(header[:end])]
    table = Table([label for _, label in found], mark.group() if mark else "")
    for line in lines[at + 1 :]:
        cells = {
            label: line[start : (found[i + 1][0] if i + 1 < len(found) else end)].strip()
            for i, (start, label) in enumerate(found)
        }
        if not key.match(cells[first]):
            break
        table.rows.append(cells)
    return table


def host_table(screen: str) -> list[dict[str, str]]:
    """The host table's rows as {column label: cell}."""
    return read_table(screen, "Host", ADDRESS).rows


def test_monitor_in_tmux(terminal: Terminal, tmp_path: Path) -> None:
    expected = analyze([str(SAMPLE)]).model.hosts
    bot = expected[SPAMBOT]
    status = tmp_path / "status"
    terminal.monitor(SAMPLE, status, 160, 45)

    labels = ("Sess", "Dest", "Rej", "Temp", "Msgs", "Rcpt")
    counts = (bot.sessions, bot.destinations, bot.rejected_sessions, bot.tempfailed_sessions,
              bot.accepted_messages, bot.recipients)  # fmt: skip

    def loaded(screen: str) -> bool:
        rows = host_table(screen)
        assert "end of capture" in screen, "the capture is not read yet"
        assert len(rows) == len(expected), f"{len(rows)} hosts shown of {len(expected)}"
        assert rows[0]["Host"] == SPAMBOT, "the spambot is not the first row"
        shown = {label: rows[0].get(label) for label in labels}
        assert shown == dict(zip(labels, map(str, counts), strict=True)), shown
        return True

    terminal.wait("loaded host table with the spambot's counts on top", loaded)

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

    def filtered(screen: str) -> bool:
        rows = host_table(screen)
        return [row["Host"] for row in rows] == ["192.168.0.30"] and "filter: 0.30" in screen

    terminal.wait("one host left and the filter in the status bar", filtered)

    terminal.keys("Escape")
    terminal.wait(
        "every host back and no filter",
        lambda s: (
            len(host_table(s)) == len(expected)
            and "filter:" not in s
            and "filter hosts by address" not in s
        ),
    )

    terminal.keys("q")
    exit_status = terminal.exit_status(status)
    assert exit_status == "0", f"exit status {exit_status}:\n{terminal.screen(history=True)}"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """``smtptop report --json`` on the sample, as a person would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "smtptop", "report", "--json", str(SAMPLE)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def utc(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def host_cells(report: dict[str, Any], ip: str) -> dict[str, str]:
    """What each host-table column should show for ``ip``, from the report's JSON."""
    host = next(h for h in report["hosts"] if h["ip"] == ip)
    sessions = [s for s in report["sessions"] if s["client"].rsplit(":", 1)[0] == ip]
    # The monitor's "now" is the capture's last event; S/min counts the minute before it.
    now = max(s["end"] for s in report["sessions"])
    # HELO: the name most sessions gave (ties in the order first seen), and how many more.
    used = Counter(s["helo"] for s in sessions if s["helo"])
    helos = sorted(host["helos"], key=lambda name: -used[name])
    names = host["names"]
    name = next((names[s] for s in ("dhcp-fqdn", "dhcp", "nbns", "dns-ptr", "mdns", "llmnr")
                 if s in names), "")  # fmt: skip
    return {
        "Host": ip,
        "Name": name,
        "Verdict": f"{host['verdict']} {host['score']}",
        "Sess": str(host["sessions"]),
        "Dest": str(host["destinations"]),
        "Rej": str(host["rejected_sessions"]),
        "Temp": str(host["tempfailed_sessions"]),
        "Msgs": str(host["accepted_messages"]),
        "Rcpt": str(host["recipients"]),
        "S/min": str(sum(1 for s in sessions if s["start"] >= now - 60)),
        "Last seen": utc(host["last_seen"]),
        "Last 30 min": trend(sessions, now),
        "HELO": helos[0] + (f" (+{len(helos) - 1})" if len(helos) > 1 else ""),
    }


def trend(sessions: list[dict[str, Any]], now: float) -> str:
    """The sparkline of the sessions each of the last 30 minutes started (Textual's own
    renderable draws it; the counts are the JSON's)."""
    last = int(now // 60)
    started = Counter(int(s["start"] // 60) for s in sessions)
    return rows.sparkline(tuple(started[m] for m in range(last - 29, last + 1))).plain


CUT = frozenset({"Name", "HELO"})  # text columns, the only ones ever cut (with an ellipsis)


def whole_or_cut(shown: str, full: str, may_cut: bool) -> bool:
    """``shown`` is ``full``, or (where cutting is allowed) its start and an ellipsis."""
    return shown == full or (may_cut and shown.endswith("…") and full.startswith(shown[:-1]))


def check_row(table: Table, ip: str, want: dict[str, str]) -> None:
    row = next((r for r in table.rows if r["Host"] == ip), None)
    assert row is not None, f"no row for {ip}"
    for label, shown in row.items():
        assert label in want, f"a column this test does not know: {label!r}"
        assert whole_or_cut(shown, want[label], label in CUT), (
            f"{label} shows {shown!r}, the JSON says {want[label]!r}"
        )


def session_text(session: dict[str, Any], reply: dict[str, Any] | None) -> str:
    """An outcome cell in full: the outcome, then a reply's code and first line."""
    if reply is None:
        return session["outcome"]
    return f"{session['outcome']} {reply['code']} {reply['text'].split(chr(10))[0]}".strip()


def check_session_row(row: dict[str, str], sessions: list[dict[str, Any]]) -> None:
    """A drill-down session row is one of the host's sessions in the JSON: its server, start,
    recipients, flags and outcome (a refusal with the very reply that refused)."""
    candidates = [s for s in sessions if s["server"] == row["Server"] and
                  utc(s["start"]) == row["Start"]]  # fmt: skip
    assert candidates, f"no session in the JSON to {row['Server']} at {row['Start']}"
    rcpt, *flags = row["Rcpt"].split()  # the flags column has no label: it joins Rcpt's cell
    problems = []
    for session in candidates:
        flagged = "T" * session["tls"] + "P" * session["partial"]
        if session["outcome"] in ("rejected", "tempfailed"):
            outcomes = [session_text(session, session["outcome_reply"])]
        else:
            outcomes = [session_text(session, None)]
            outcomes += [session_text(session, reply) for reply in session["replies"]]
        if rcpt != str(session["recipients"]) or "".join(flags) != flagged:
            problems.append(f"Rcpt {row['Rcpt']!r}, the JSON says {session['recipients']}"
                            f" {flagged}")  # fmt: skip
        elif not any(whole_or_cut(row["Outcome"], full, True) for full in outcomes):
            problems.append(f"Outcome {row['Outcome']!r}, the JSON says {outcomes[0]!r}")
        else:
            return
    raise AssertionError(f"{row['Start']} {row['Server']}: {'; '.join(problems)}")


MUST_SHOW = ("Host", "Verdict", "Sess", "Dest", "Rej", "Temp")  # at 80 columns (issue 11)


def test_monitor_at_80x24(terminal: Terminal, tmp_path: Path, report: dict[str, Any]) -> None:
    """At 80x24: the columns the issue requires, every number in the spambot's row equal to
    the JSON's (never cut), the hidden columns brought in with → and l, the drill-down's
    session rows with their outcomes, and Ctrl-C quitting cleanly."""
    want = host_cells(report, SPAMBOT)
    status = tmp_path / "status"
    terminal.monitor(SAMPLE, status, 80, 24)

    def hosts_shown(screen: str) -> Table:
        assert "end of capture" in screen, "the capture is not read yet"
        table = read_table(screen, "Host", ADDRESS)
        assert len(table.rows) == len(report["hosts"]), f"{len(table.rows)} hosts shown"
        assert table.rows[0]["Host"] == SPAMBOT, "the spambot is not the first row"
        check_row(table, SPAMBOT, want)
        assert table.hidden == len(want) - len(table.labels), (
            f"the header says {table.mark!r} with {len(table.labels)} of {len(want)} shown"
        )
        return table

    def first_view(screen: str) -> bool:
        table = hosts_shown(screen)
        missing = [label for label in MUST_SHOW if label not in table.labels]
        assert not missing, f"not shown at 80 columns: {missing}"
        assert table.mark.endswith("→"), f"no '+N cols →' mark in the header: {table.mark!r}"
        return True

    screen = terminal.wait("host table with the spambot's row as in the JSON", first_view)
    views = [read_table(screen, "Host", ADDRESS).labels]
    # → (then l) until the last column is in: each press shows other columns, as in the JSON.
    for key in ["Right"] + ["l"] * len(want):
        terminal.keys(key)
        screen = terminal.wait(
            f"other columns after {key}",
            lambda s: hosts_shown(s).labels not in views,
        )
        table = read_table(screen, "Host", ADDRESS)
        views.append(table.labels)
        if not table.mark.endswith("→"):
            break
    else:
        pytest.fail(f"the columns never came to an end; the last view: {views[-1]}")
    seen = {label for labels in views for label in labels}
    assert seen == set(want), f"never shown: {set(want) - seen}"
    assert not {"Msgs", "Rcpt"} <= set(views[0]), "Msgs and Rcpt are not hidden at 80 columns"

    terminal.keys(*["h"] * len(views))
    terminal.wait("first columns again after h", lambda s: hosts_shown(s).labels == views[0])

    terminal.keys("Enter")
    sessions = [s for s in report["sessions"] if s["client"].rsplit(":", 1)[0] == SPAMBOT]
    host = next(h for h in report["hosts"] if h["ip"] == SPAMBOT)
    title = f"{host['sessions']} sessions to {host['destinations']} servers"

    def drilled(screen: str) -> bool:
        assert title in screen, f"no {title!r}"
        table = read_table(screen, "Start", CLOCK)
        assert {"Start", "Server", "Rcpt", "Outcome"} <= set(table.labels), table.labels
        assert len(table.rows) >= 8, f"{len(table.rows)} session rows shown"
        for row in table.rows:  # a toast over the rows fails this until it is gone
            check_session_row(row, sessions)
        assert any(row["Outcome"].startswith("rejected 554 ") for row in table.rows), (
            "no 'rejected 554' session shown"
        )
        return True

    terminal.wait("drill-down sessions as in the JSON", drilled)

    terminal.keys("C-c")
    exit_status = terminal.exit_status(status)
    assert exit_status == "0", f"exit status {exit_status}:\n{terminal.screen(history=True)}"


def test_wire_text_cannot_drive_the_terminal(terminal: Terminal, tmp_path: Path) -> None:
    """A HELO, a sender and a reply full of markup and escape sequences show as text: the
    pane title stays, nothing is clicked, the app keeps running."""
    import synth

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
    terminal.monitor(capture, tmp_path / "status", 160, 45)
    title = terminal.pane("pane_title")
    terminal.wait("host table", lambda s: "192.168.9.9" in s and "end of capture" in s)
    terminal.keys("Enter")
    terminal.wait("drill-down", lambda s: "1 session to 1 server" in s)
    terminal.keys("Enter")
    wanted = ("\\x1b]2;PWNED\\x07[@click=app.quit]x[/]\\x1b[31mRED", "\\x9b2J\\u202e")
    terminal.wait("transcript with the hostile text as text",
                  lambda s: "S: 550" in s and all(text in s for text in wanted))  # fmt: skip
    assert terminal.pane("pane_title") == title != "PWNED"
    assert terminal.pane("pane_dead") != "1"
    colours = terminal.tmux("capture-pane", "-p", "-e", "-t", terminal.name)
    assert "RED" in colours and "\x1b[31mRED" not in colours


# The capture on standard input, the pipe held open by a fifo until the test closes it: a
# stream still arriving, as from `ssh router tcpdump -U -w -`.
STREAMED = '(cat "$3"; cat "$5") | TZ=UTC PYTHONPATH="$1" "$2" -m smtptop -r -; echo $? > "$4"'


def test_a_stream_on_standard_input_is_monitored_as_it_comes(
    terminal: Terminal, tmp_path: Path
) -> None:
    """``... | smtptop -r -``: the hosts show while the stream is still open, the keys come
    from the terminal (Enter drills down, Esc comes back), the end of the stream is the end
    of the capture, and q quits cleanly."""
    status, held = tmp_path / "status", tmp_path / "held"
    os.mkfifo(held)
    args = [str(ROOT), sys.executable, str(SAMPLE), str(status), str(held)]
    terminal.start(["sh", "-c", STREAMED, "sh", *args], 120, 30)
    writer = os.open(held, os.O_WRONLY)  # the stream stays open until this closes
    try:
        bot = analyze([str(SAMPLE)]).model.hosts[SPAMBOT]

        def spambot_shown(screen: str) -> bool:
            assert "standard input" in screen.splitlines()[0], "no stream in the status bar"
            row = next((r for r in host_table(screen) if r["Host"] == SPAMBOT), None)
            assert row is not None, "the spambot is not in the table"
            assert row["Sess"] == str(bot.sessions), row
            assert "end of capture" not in screen.splitlines()[0], "ended while still open"
            return True

        terminal.wait("the spambot while the stream is open", spambot_shown)
        terminal.keys("Enter")
        terminal.wait("the spambot's drill-down", lambda s: "Timeline" in s)
        terminal.keys("Escape")
        terminal.wait("the host table again", lambda s: bool(host_table(s)))
    finally:
        os.close(writer)
    terminal.wait("the end of the stream", lambda s: "end of capture" in s.splitlines()[0])
    terminal.keys("q")
    assert terminal.exit_status(status) == "0"
