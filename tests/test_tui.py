"""The monitor driven with Textual's Pilot: table, sorting, drill-down, filter, pause, quit,
hostile text."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import synth
from helpers import dealt_by_kernel, settle
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.widgets import RichLog, Sparkline

from smtptop.analysis import analyze, ranked_hosts
from smtptop.analyzer import Analyzer
from smtptop.capture import CaptureFile
from smtptop.errorlog import ErrorLog
from smtptop.evidence import next_steps
from smtptop.pipeline import ForkedFeeder
from smtptop.source import FeedBatch, Feeder, FileSource, Parallel, Progress, Source
from smtptop.tui import rows
from smtptop.tui.app import MonitorApp
from smtptop.tui.help_screen import HelpScreen
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.rules_screen import RulesScreen
from smtptop.tui.tables import KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen

SAMPLE = str(Path(__file__).resolve().parent.parent / "smtptop" / "data" / "office.pcap")
SIZE = (150, 45)


def hosts_table(app: MonitorApp) -> KeyedTable:
    return app.query_one("#hosts", KeyedTable)


def status(app: MonitorApp) -> str:
    return str(app.query_one("#status").render())


async def test_table_fills_in_report_order() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        analysis = analyze([SAMPLE])
        expected = [h.ip for h in ranked_hosts(analysis.model, analysis.verdicts())]
        assert hosts_table(app).keys == expected
        assert hosts_table(app).keys[0] == "192.168.0.108"
        text = status(app)
        assert "85 sessions" in text and "drops 0" in text and "end of capture" in text


async def test_sorting_keeps_the_cursor_on_its_host() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = hosts_table(app)
        table.move_cursor(row=table.keys.index("192.168.0.30"))
        assert app.sort_column == "verdict"
        await pilot.press("greater_than_sign")  # sort by sessions
        await pilot.pause()
        assert app.sort_column == "sessions"
        sessions = {h.ip: h.sessions for h in app.model.hosts.values()}
        assert [sessions[k] for k in table.keys] == sorted(sessions.values(), reverse=True)
        assert table.cursor_key() == "192.168.0.30"
        await pilot.press("r")
        await pilot.pause()
        assert [sessions[k] for k in table.keys] == sorted(sessions.values())
        assert table.cursor_key() == "192.168.0.30"
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert app.sort_column == "rejected"
        assert "Rej▲" in str(table.columns["rejected"].label)  # type: ignore[index]


async def test_drill_down_to_a_rejected_transcript_and_back() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HostScreen) and screen.ip == "192.168.0.108"
        host = app.model.hosts["192.168.0.108"]
        assert len(screen.query_one("#servers", KeyedTable).keys) == host.destinations
        sessions = screen.query_one("#sessions", KeyedTable)
        assert len(sessions.keys) == host.sessions
        spamhaus = next(
            s for s in app.model.sessions()
            if s.client_ip == "192.168.0.108"
            and s.outcome_reply and "zen.spamhaus" in s.outcome_reply.text
        )  # fmt: skip
        sessions.move_cursor(row=sessions.keys.index(str(spamhaus.id)))
        await pilot.press("enter")
        await pilot.pause()
        transcript = app.screen
        assert isinstance(transcript, TranscriptScreen)
        lines = [str(line.text) for line in transcript.query_one("#transcript").lines]
        assert any("S: 554" in line for line in lines)
        assert any("C: RCPT TO:" in line for line in lines)
        await pilot.press("escape", "escape")
        assert not isinstance(app.screen, HostScreen | TranscriptScreen)


async def test_filter_pause_help_and_quit() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", "0", ".", "3", "0")
        await pilot.pause()
        assert hosts_table(app).keys == ["192.168.0.30"]
        await pilot.press("escape")
        await pilot.pause()
        assert len(hosts_table(app).keys) == len(app.model.hosts)
        await pilot.press("p")
        assert app.paused and "PAUSED" in status(app)
        await pilot.press("p")
        assert not app.paused
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        feeder = app.feeder
        assert feeder is not None
        await pilot.press("q")
    feeder.join(timeout=2)
    assert not feeder.is_alive()


async def test_pause_freezes_the_view_while_capture_goes_on(tmp_path: Path) -> None:
    frames = []
    for i in range(6):
        conv = synth.Conversation(f"10.0.0.{i + 1}", 40000, "198.51.100.7", 25, start=i * 0.5)
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])
        frames += conv.frames
    path = tmp_path / "paced.pcap"
    synth.write_pcap(path, sorted(frames, key=lambda f: f.ts), synth.LINKTYPE_ETHERNET)
    app = MonitorApp(FileSource([str(path)], speed=1.0), refresh_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        await pilot.press("p")
        shown = list(hosts_table(app).keys)
        await settle(app, pilot)
        assert len(app.model.hosts) == 6
        assert hosts_table(app).keys == shown
        await pilot.press("p")
        await pilot.pause(0.3)
        assert len(hosts_table(app).keys) == 6


async def test_quitting_stops_a_slow_replay_at_once() -> None:
    app = MonitorApp(FileSource([SAMPLE], speed=0.001))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        feeder = app.feeder
        assert feeder is not None and feeder.is_alive()
        started = time.monotonic()
        await pilot.press("q")
    feeder.join(timeout=2)
    assert not feeder.is_alive() and time.monotonic() - started < 2


class _FloodSource(Source):
    """A live-like source: it cannot wait, so a full queue means dropped batches."""

    label = "flood"
    lossy = True
    rounds = 5

    def frames(self, stop: threading.Event):
        for _ in range(self.rounds):
            yield from CaptureFile(SAMPLE)


def test_lossy_source_counts_what_it_drops() -> None:
    """With a consumer that never keeps up, every event is either delivered or counted."""
    analyzer = Analyzer()
    produced = 0
    for record in _FloodSource().frames(threading.Event()):
        analyzer.packet(*record)
        produced += len(analyzer.take())
    delivered: list[FeedBatch] = []
    feeder = Feeder(_FloodSource(), delivered.append, max_batches=2)
    feeder.start()
    deadline = time.monotonic() + 30
    while feeder.progress().packets < analyzer.stats.packets:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    feeder.stop()  # the last batch waits for room that never comes
    feeder.join(timeout=5)
    assert not feeder.is_alive()
    final = feeder.progress()
    assert len(delivered) == 2
    assert final.dropped_batches > 0
    kept = sum(len(b.events) for b in delivered)
    assert kept + final.dropped_events >= produced  # finish() adds the closing events
    assert kept < produced


async def test_engine_processes_feed_the_monitor(tmp_path: Path) -> None:
    """A live capture with two engine processes (here fed the office capture as the kernel
    would deal it out): the monitor shows what one engine shows."""
    parts = dealt_by_kernel(SAMPLE, 2, tmp_path)
    group = Parallel([FileSource([p]) for p in parts], label="interface test0 · 2 engines",
                     waiting="")  # fmt: skip
    app = MonitorApp(group)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.feeder, ForkedFeeder)
        analysis = analyze([SAMPLE])
        expected = [h.ip for h in ranked_hosts(analysis.model, analysis.verdicts())]
        assert hosts_table(app).keys == expected
        text = status(app)
        assert "85 sessions" in text and "drops 0" in text and "2 engines" in text
        assert app.progress.packets == analysis.stats.packets


async def test_drops_are_shown_in_the_status_bar() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.progress.dropped_events = 1234
        app.update_view()
        assert "drops 1,234" in status(app)


HOSTILE = [
    b"[/]",
    b"[@click=app.quit]x[/]",
    b"\x1b]2;PWNED\x07",
    b"\x1b[31mred\x1b[0m",
    b"\xc2\x9b2J",  # C1 CSI
    b"\xe2\x80\xaeevil",  # right-to-left override
    b"[$accent]var[/] [b]bold",
]


@pytest.fixture
def hostile_capture(tmp_path: Path) -> str:
    frames = []
    for i, payload in enumerate(HOSTILE):
        conv = synth.Conversation("192.168.5.5", 41000 + i, f"198.51.100.{i + 1}", 25, start=i)
        conv.smtp(
            [
                ("S", b"220 " + payload + b" ESMTP\r\n"),
                ("C", b"EHLO " + payload + b"\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"MAIL FROM:<" + payload + b"@x.example>\r\n"),
                ("S", b"550 5.7.1 " + payload + b" blocked\r\n"),
            ]
        )
        frames += conv.frames
    path = tmp_path / "hostile.pcap"
    synth.write_pcap(path, frames, synth.LINKTYPE_ETHERNET)
    return str(path)


async def test_hostile_wire_text_is_shown_literally(hostile_capture: str) -> None:
    app = MonitorApp(FileSource([hostile_capture]))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        screens = []
        await pilot.press("enter")
        await pilot.pause()
        screens.append(app.screen)
        for row in range(len(HOSTILE)):
            sessions = app.screen.query_one("#sessions", KeyedTable)
            sessions.move_cursor(row=row)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, TranscriptScreen)
            rendered = "".join(
                segment.text
                for strip in app.screen._compositor.render_strips()
                for segment in strip
            )
            assert "\x1b" not in rendered and "\u202e" not in rendered and "\x9b" not in rendered
            await pilot.press("escape")
            await pilot.pause()
        assert app.is_running
        helos = set(app.model.hosts["192.168.5.5"].helos)
        assert "[@click=app.quit]x[/]" in helos and "[/]" in helos
        assert "\\x1b]2;PWNED\\x07" in helos
        svg = app.export_screenshot()
        assert "[@click=app.quit]x[/]" in svg.replace("&#160;", " ")


async def test_spambot_alert_notifies_rings_and_runs_the_command(tmp_path: Path) -> None:
    target = tmp_path / "alert.json"
    app = MonitorApp(FileSource([SAMPLE]), bell=True, alert_exec=f"cat > {target}")
    rings = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        deadline = time.monotonic() + 10
        while not target.exists() or not target.read_text():
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        messages = [n.message for n in app._notifications]
        assert any("192.168.0.108" in m and "spambot" in m for m in messages)
        assert rings == [1]
        assert "1 spambot" in status(app)
        app.update_view()
        assert rings == [1]  # once per host
    alert = json.loads(target.read_text())
    assert alert["ip"] == "192.168.0.108" and alert["verdict"] == "spambot"
    assert alert["names"]["dhcp-fqdn"] == "wxpanna.studio.lan"
    assert {r["signal"] for r in alert["reasons"]} >= {"blocklist", "helo"}


@pytest.mark.parametrize(
    ("command", "seconds"),
    [("cat > /dev/null; exit 3", 60.0), ("cat > /dev/null; exec sleep 30", 0.5)],
    ids=["exit-status", "timeout"],
)
async def test_a_failed_alert_command_shows_in_the_status_bar(
    command: str, seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that exits non-zero, or is still running at the timeout (and is killed),
    counts as failed, and the status bar says so."""
    monkeypatch.setattr("smtptop.tui.alert.ALERT_SECONDS", seconds)
    app = MonitorApp(FileSource([SAMPLE]), refresh_seconds=3600, alert_exec=command)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        deadline = time.monotonic() + 10
        while not app.alerts_failed:
            assert time.monotonic() < deadline, "the failure was never counted"
            await pilot.pause(0.05)
        app.update_status()
        assert app.alerts_failed == 1 and "1 alert command failed" in status(app)


async def test_drill_down_shows_the_verdict_and_who_the_host_is() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        first = hosts_table(app).keys[0]
        assert first == "192.168.0.108"
        await pilot.press("enter")
        await pilot.pause()
        line = str(app.screen.query_one("#verdict").render())
        assert "spambot" in line and "score" in line and "blocklist +40" in line
        reasons = app.screen.query_one("#reasons")
        assert not reasons.display  # folded to the one line until asked
        await pilot.press("v")
        await pilot.pause()
        assert reasons.display
        panel = str(reasons.render())
        assert "blocklist" in panel and "Spamhaus" in panel
        assert "wxpanna.studio.lan" in panel and "d4:be:d9:5e:10:8c" in panel
        title = str(app.screen.query_one("#title").render())
        assert "wxpanna.studio.lan" in title


async def test_c_in_the_drill_down_shows_the_rules_and_how_to_find_the_program() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, RulesScreen)
        shown = "\n".join(line.text for line in app.screen.query_one("#rules", RichLog).lines)
        assert shown.splitlines() == next_steps(app.detector, "192.168.0.108").splitlines()
        for expected in ("table inet smtptop_contain_192_168_0_108", "ip daddr { 198.51.100.25 }",
                         "iptables -I FORWARD -s 192.168.0.108", "/ip firewall filter",
                         "Get-NetTCPConnection -RemotePort 25"):  # fmt: skip
            assert expected in shown, expected
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HostScreen)


def chart(app: MonitorApp) -> tuple[str, list[float], list[float]]:
    """The drill-down's timeline: its caption and the data of its two sparklines."""
    screen = app.screen
    assert isinstance(screen, HostScreen)
    sessions = screen.query_one("#timeline-sessions", Sparkline).data
    rejected = screen.query_one("#timeline-rejected", Sparkline).data
    assert sessions is not None and rejected is not None
    caption = str(screen.query_one("#timeline-caption").render())
    return caption, list(sessions), list(rejected)


async def test_the_drill_down_charts_sessions_and_rejections_over_the_capture() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        host = app.model.hosts["192.168.0.108"]
        trend = hosts_table(app)._cells["192.168.0.108"][
            [c.key for c in rows.HOST_COLUMNS].index("trend")
        ]
        assert len(trend.plain) == rows.TREND_WIDTH and set(trend.plain) <= set(
            SparklineRenderable.BARS
        )
        await pilot.press("enter")
        await pilot.pause()
        caption, sessions, rejected = chart(app)
        span = int(app.model.last_ts // 60) - int(app.model.first_ts // 60) + 1
        assert len(sessions) == len(rejected) == span  # a bar a minute over the capture
        assert (sum(sessions), sum(rejected)) == (host.sessions, host.rejected_sessions)
        assert f"per minute: peak {max(sessions):.0f} sessions, {max(rejected):.0f} rejected" in (
            caption
        )
        await pilot.press("v")  # the reasons take the chart's room
        await pilot.pause()
        assert not app.screen.query_one("#timeline").display


async def chart_of(path: str) -> tuple[str, list[float], list[float]]:
    """The timeline in the drill-down of the first host of a capture."""
    app = MonitorApp(FileSource([path]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        return chart(app)


@pytest.mark.usefixtures("utc")
async def test_the_chart_puts_each_session_in_its_minute_and_widens_over_days(
    tmp_path: Path,
) -> None:
    starts = (1000.0, 1010.0, 1130.0, 1500.0)  # minutes 16, 16, 18 and 25
    caption, sessions, rejected = await chart_of(one_session(tmp_path, starts))
    assert sessions == [2, 0, 1, 0, 0, 0, 0, 0, 0, 1] and not any(rejected)
    assert "Timeline 00:16:40 → 00:25:00" in caption
    caption, sessions, _ = await chart_of(one_session(tmp_path, (1000.0, 1000.0 + 2 * 86400)))
    assert "per 16 minutes" in caption and len(sessions) <= rows.CHART_BINS
    assert sessions[0] == sessions[-1] == 1 and sum(sessions) == 2


def screen_text(app: MonitorApp) -> str:
    """The terminal as the user sees it."""
    return "\n".join(
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    )


class _QuietSource(Source):
    """A live-like source on which nothing arrives until the test stops it."""

    label = "eth1"
    waiting = "Waiting for SMTP on eth1 (filter: tcp port 25) …"

    def frames(self, stop: threading.Event):
        deadline = time.monotonic() + 30
        while not stop.wait(0.02) and time.monotonic() < deadline:
            yield None


async def test_waiting_for_smtp_says_where_it_listens() -> None:
    app = MonitorApp(_QuietSource(), refresh_seconds=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert not app.progress.finished and not app.model.hosts
        assert hosts_table(app).empty.plain == _QuietSource.waiting
        assert _QuietSource.waiting in screen_text(app)


async def test_a_filter_that_matches_nothing_says_so() -> None:
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("slash", *"nosuch", "enter")
        await pilot.pause()
        assert hosts_table(app).keys == []
        assert "no host matches 'nosuch'" in screen_text(app)


@pytest.fixture
def no_smtp_capture(tmp_path: Path) -> str:
    conv = synth.Conversation("192.168.1.20", 40000, "198.51.100.80", 80, start=1.0)
    conv.handshake()
    conv.send("C", b"GET / HTTP/1.0\r\n\r\n")
    conv.close()
    path = tmp_path / "web.pcap"
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    return str(path)


async def test_a_capture_without_smtp_says_so(no_smtp_capture: str) -> None:
    app = MonitorApp(FileSource([no_smtp_capture]))
    async with app.run_test(size=(120, 24)) as pilot:
        await settle(app, pilot)
        packets = sum(1 for _ in CaptureFile(no_smtp_capture))
        expected = (
            f"No SMTP in this capture: {packets} packets read, "
            "none of them SMTP on ports 25,465,587,2525"
        )
        assert hosts_table(app).empty.plain == expected
        assert expected in screen_text(app)
        assert "0 hosts" in status(app) and "0 sessions" in status(app)


def one_session(tmp_path: Path, starts: tuple[float, ...] = (1000.0,)) -> str:
    """A LAN host's sessions to the smarthost, one at each of ``starts``."""
    frames = []
    for index, start in enumerate(starts):
        conv = synth.Conversation("192.168.1.20", 40000 + index, "198.51.100.25", 25, start=start)
        conv.smtp([("S", b"220 relay ESMTP\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 ok\r\n"),
                   ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
        frames += conv.frames
    path = tmp_path / "sessions.pcap"
    synth.write_pcap(path, frames, synth.LINKTYPE_ETHERNET)
    return str(path)


async def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    app = MonitorApp(FileSource([one_session(tmp_path)]))
    async with app.run_test(size=(200, 24)) as pilot:
        await settle(app, pilot)
        assert "1 host " in status(app) + " " and "1 session" in status(app)
        assert "1 hosts" not in status(app) and "1 sessions" not in status(app)
        await pilot.press("enter")
        await pilot.pause()
        title = str(app.screen.query_one("#title").render())
        assert "1 session to 1 server, 0 rejected, 0 tempfailed, 0 messages accepted" in title


@pytest.mark.usefixtures("utc")
@pytest.mark.parametrize("days", [0, 2])
async def test_times_carry_their_date_when_the_capture_spans_days(
    tmp_path: Path, days: int
) -> None:
    """Two sessions two days apart: "Last seen", the sessions' start and the transcript
    show the date (a capture within a day shows the time alone)."""
    first = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    app = MonitorApp(FileSource([one_session(tmp_path, (first, first + days * 86400 + 60))]))
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(app, pilot)
        last = "Nov 16 22:14:20" if days else "22:14:20"
        text = screen_text(app)
        assert f"  {last}  " in text
        assert "Nov 14" not in text and ("Nov 16" in text) == bool(days)
        await pilot.press("enter")
        await pilot.pause()
        text = screen_text(app)
        starts = ("Nov 14 22:13:20", "Nov 16 22:14:20") if days else ("22:13:20", "22:14:20")
        assert all(f" {start}  " in text for start in starts), text
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        lines = [str(line.text) for line in app.screen.query_one("#transcript").lines]
        assert lines[0].startswith(f"{starts[0]}.") and "S: 220 relay ESMTP" in lines[0]


async def test_a_replay_shows_where_it_stands_in_capture_time() -> None:
    """The demo replays the sample: the status bar shows the capture time played and the
    capture's length, not how much of the file the reader has run ahead through."""
    from smtptop.progress import duration

    stamps = [record[0] for record in CaptureFile(SAMPLE)]
    span = duration(max(stamps) - min(stamps))
    app = MonitorApp(FileSource([SAMPLE], speed=10.0), refresh_seconds=0.1)
    async with app.run_test(size=(160, 24)) as pilot:
        deadline = time.monotonic() + 10
        while not app.progress.replay_span or not app.model.hosts:
            assert time.monotonic() < deadline, "the replay did not start"
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        text = status(app)
        played = app.progress.replay_at
        assert f"replay {duration(played)} of {span}" in text, text
        assert played < max(stamps) - min(stamps) and "reading" not in text
        assert "end of capture" not in text
        await pilot.press("q")


# -- hostile capture files (issue 12) --------------------------------------------------------


async def test_an_undecodable_capture_says_why(tmp_path: Path) -> None:
    """A link type smtptop cannot decode is not 'no SMTP on the network': the empty table
    and the warning say which link type it was."""
    conv = synth.Conversation("192.168.1.7", 40000, "198.51.100.9", 25, start=1.8e9)
    conv.handshake()
    path = tmp_path / "user0.pcap"
    synth.write_pcap(path, conv.frames, 147)
    app = MonitorApp(FileSource([str(path)]))
    async with app.run_test(size=(150, 24)) as pilot:
        await settle(app, pilot)
        why = f"{path}: link type 147 (USER0) is not one smtptop decodes: 3 packets skipped"
        assert hosts_table(app).empty.plain == f"No SMTP in this capture: {why}"
        assert app.progress.problem == why


async def test_clocks_beyond_any_calendar_are_clamped_and_shown(tmp_path: Path) -> None:
    """An interface offset of 2^62 s: the report coped, the monitor's times must too (in the
    table, the drill-down and the transcript)."""
    import struct

    from test_capture_hostile import clock_capture

    path = clock_capture(tmp_path / "far.pcapng", struct.pack("<HHq", 14, 8, 1 << 62))
    app = MonitorApp(FileSource([str(path)]))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert "were clamped" in app.progress.problem
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, HostScreen)
        session = next(iter(app.model.sessions()))
        app.push_screen(TranscriptScreen(app.state, session.id))
        await pilot.pause(0.3)
        lines = [str(line.text) for line in app.screen.query_one("#transcript").lines]
        assert any("S: 220 mx" in line for line in lines)
        await pilot.press("q")


async def test_the_status_bar_shows_what_a_gzip_file_unpacks_to() -> None:
    from smtptop.source import Progress

    app = MonitorApp(FileSource([SAMPLE]), refresh_seconds=3600)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.progress = Progress(packets=10, bytes_done=100_000, bytes_total=1_000_000,
                                bytes_unpacked=2_500_000_000)  # fmt: skip
        app.update_status()
        await pilot.pause()
        assert "reading 10% 2.5 GB unpacked" in status(app)
        await pilot.press("q")


@pytest.mark.parametrize(
    ("patch", "line"),
    [
        ("smtptop.tui.rows.stamp = boom", "the monitor failed: OverflowError: out of range"),
        ("smtptop.analyzer.Analyzer.feed = boom",
         "the capture thread failed: OverflowError: out of range"),
    ],
    ids=["ui", "capture-thread"],
)  # fmt: skip
def test_a_crash_of_the_monitor_is_one_line_and_a_failure(
    patch: str, line: str, tmp_path: Path
) -> None:
    """Whatever fails, in the UI or in the capture thread, the monitor ends with one line on
    stderr (not a screenful of traceback) and a non-zero exit status."""
    import pty
    import select
    import subprocess
    import sys

    log = tmp_path / "errors.log"
    script = (
        "import sys, smtptop.tui.rows, smtptop.analyzer\n"
        "def boom(*args, **kwargs): raise OverflowError('out of range')\n"
        f"{patch}\n"
        "from smtptop.cli import main\n"
        f"sys.exit(main(['-r', {SAMPLE!r}, '--error-log', {str(log)!r}]))\n"
    )
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=child, stdout=child,
                            stderr=child)  # fmt: skip
    os.close(child)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([parent], [], [], 0.2)[0]:
            continue
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the child is gone
            break
        if not chunk:
            break
        out += chunk
    status = proc.wait(timeout=30)
    os.close(parent)
    after = out[out.rfind(b"\x1b[?1049l") :].decode(errors="replace")  # the screen is back
    lines = [text for text in after.split("\r\n") if text.strip()]
    assert len(lines) == 1 and f"smtptop: {line}" in lines[0], after
    assert status != 0


async def test_status_bar_says_when_failures_could_not_be_logged(tmp_path: Path) -> None:
    """Issue 12, #13: the status bar names the log only when the failures are in it."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = ErrorLog(str(blocker / "errors.log"))
    app = MonitorApp(FileSource([SAMPLE]), refresh_seconds=3600, error_log=log)
    async with app.run_test(size=(200, 24)) as pilot:
        await settle(app, pilot)
        app.progress = Progress(errors=2, finished=True)
        app.update_status()
        assert f"2 analysis errors (see {log.path})" in status(app)
        log("a failure")
        app.update_status()
        assert log.problem and f"(not logged: {log.path}: {log.problem})" in status(app)


async def test_a_file_name_in_a_warning_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """The warnings about a capture name its file, and a file name is text the user may not
    have chosen: it reaches the screen made inert, like wire text."""
    capture = tmp_path / "evil\x1b]2;PWNED\x07.pcap"
    synth.write_pcap(capture, [], synth.LINKTYPE_ETHERNET)
    app = MonitorApp(FileSource([str(capture)]), refresh_seconds=3600)
    async with app.run_test(size=(200, 24)) as pilot:
        await settle(app, pilot)
        assert "no packets in" in app.progress.problem
        assert "\x1b" not in app.progress.problem
        assert "evil\\x1b]2;PWNED\\x07.pcap" in app.progress.problem


async def wait_for(pilot, done, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


async def test_e_writes_the_hosts_evidence_bundle_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the host table and from the drill-down: the packets are read back from the file
    being replayed, each press in a folder of its own."""
    monkeypatch.chdir(tmp_path)
    app = MonitorApp(FileSource([SAMPLE]))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: len(list(tmp_path.glob("smtptop-evidence-*"))) == 1)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("e")
        await wait_for(pilot, lambda: len(list(tmp_path.glob("smtptop-evidence-*"))) == 2)
        await wait_for(pilot, lambda: len(app._notifications) >= 2)
        said = [n.message for n in app._notifications]
    folders = sorted(tmp_path.glob("smtptop-evidence-192.168.0.108-*"))
    assert len(folders) == 2
    for folder in folders:
        assert f"evidence for 192.168.0.108 in {folder}" in said
        host = folder / "192.168.0.108"
        assert (host / "containment" / "nftables.nft").is_file()
        assert len(list(CaptureFile(str(host / "smtp.pcap")))) > 100
        assert "Spamhaus ZEN" in (host / "summary.md").read_text()


async def test_e_without_recorded_packets_says_how_to_get_them() -> None:
    class Unrecorded(FileSource):
        def recorded(self) -> list[str]:
            return []

    app = MonitorApp(Unrecorded([SAMPLE]))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("e")
        await pilot.pause()
        said = [n.message for n in app._notifications]
    assert any("capture with -w FILE" in message for message in said), said


class _Unrecorded(FileSource):
    """Like a live capture without -w: no file to read back from, and after the file it
    waits for more until stopped."""

    def recorded(self) -> list[str]:
        return []

    def frames(self, stop):
        yield from super().frames(stop)
        deadline = time.monotonic() + 60
        while not stop.wait(0.02) and time.monotonic() < deadline:
            yield None


def _bundle_frames(folder: Path) -> list[tuple[float, bytes]]:
    return [(ts, bytes(frame)) for ts, _, frame in CaptureFile(str(folder / "smtp.pcap"))]


def _read_back_frames(folder: Path, ip: str) -> list[tuple[float, bytes]]:
    """The host's bundle made from the sample file: its packets read back."""
    from smtptop.evidence import Capture, ReadBack, prepare, write_bundle
    from smtptop.files import invoking_user

    analysis = analyze([SAMPLE], workers=0)
    assert analysis.detector is not None
    texts = prepare(analysis.model, analysis.detector, analysis.verdicts(), Capture([], "t"),
                    [ip])  # fmt: skip
    write_bundle(texts, str(folder), ReadBack([SAMPLE], frozenset({25, 465, 587, 2525})),
                 owner=invoking_user())  # fmt: skip
    return _bundle_frames(folder / ip)


async def _press_e(app: MonitorApp, folder: Path) -> tuple[list[str], Path]:
    """``e`` on the top host: what the monitor said, and the host's folder in the bundle."""
    packets = analyze([SAMPLE], workers=0).stats.packets
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: app.progress.packets == packets)  # every one in a ring
        await wait_for(pilot, lambda: hosts_table(app).keys[:1] == ["192.168.0.108"])
        app.clear_notifications()  # the spambot's alert
        await pilot.press("e")
        await wait_for(pilot, lambda: len(app._notifications) >= 1)
        said = [n.message for n in app._notifications]
    (bundle,) = folder.glob("smtptop-evidence-192.168.0.108-*")
    assert said == [f"evidence for 192.168.0.108 in {bundle}"]
    return said, bundle / "192.168.0.108"


@pytest.mark.parametrize("engines", [0, 2])
async def test_e_live_takes_the_packets_from_the_evidence_buffer(
    tmp_path: Path, engines: int
) -> None:
    """Without a file to read back (a live capture without -w), e takes the host's packets
    from its engine's ring (from engine processes, asked over their control pipes): the
    same packets the replayed file holds, and the page says where they came from."""
    from smtptop.analyzer import EngineConfig

    if engines:
        parts = dealt_by_kernel(SAMPLE, engines, tmp_path)
        source: Source = Parallel([_Unrecorded([p]) for p in parts], label="test0", waiting="")
    else:
        source = _Unrecorded([SAMPLE])
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    app = MonitorApp(source, config=EngineConfig(evidence_buffer=8 << 20),
                     evidence_dir=str(bundles))  # fmt: skip
    _, host = await _press_e(app, bundles)
    assert isinstance(app.feeder, ForkedFeeder if engines else Feeder)
    from_ring = _bundle_frames(host)
    assert len(from_ring) > 100
    assert from_ring == _read_back_frames(tmp_path / "read-back", "192.168.0.108")
    page = (host / "summary.md").read_text()
    assert "evidence buffer kept (`--evidence-buffer` 8 MiB for all hosts" in page
    assert "did not fit" not in page


async def test_e_live_says_what_the_evidence_buffer_could_not_keep(tmp_path: Path) -> None:
    from smtptop.analyzer import EngineConfig

    bundles = tmp_path / "bundles"
    bundles.mkdir()
    app = MonitorApp(_Unrecorded([SAMPLE]), config=EngineConfig(evidence_buffer=64 << 10),
                     evidence_dir=str(bundles))  # fmt: skip
    _, host = await _press_e(app, bundles)
    kept = _bundle_frames(host)
    every = _read_back_frames(tmp_path / "read-back", "192.168.0.108")
    assert 0 < len(kept) < len(every)
    assert kept == every[-len(kept) :]  # the latest
    page = (host / "summary.md").read_text()
    gone = len(every) - len(kept)
    assert f"**{gone:,} earlier packets of this host (" in page
