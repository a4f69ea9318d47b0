"""The monitor's keys and mouse, as in top and htop (issue 11): a cursor that keeps to the top
row until moved and then follows its host, the moving keys, ctrl+c, sorting by a click on a
header, the drill-down's own sort, filter, kinds of session and servers, and the
transcript's search."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import synth
from helpers import settle

from smtptop.capture import CaptureFile, Frame
from smtptop.source import FileSource, Source
from smtptop.tui import rows
from smtptop.tui.app import MonitorApp
from smtptop.tui.help_screen import HelpScreen
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.tables import KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen

SAMPLE = str(Path(__file__).resolve().parent.parent / "smtptop" / "data" / "office.pcap")
SPAMBOT = "192.168.0.108"
SMARTHOST = "198.51.100.25"
LIMIT = 20.0
PLAIN = [
    ("S", b"220 relay ESMTP\r\n"),
    ("C", b"EHLO pc\r\n"),
    ("S", b"250 ok\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 bye\r\n"),
]


def monitor(source: Source | None = None) -> MonitorApp:
    return MonitorApp(source or FileSource([SAMPLE]), refresh_seconds=3600)


def table(app: MonitorApp, name: str) -> KeyedTable:
    return app.screen.query_one(f"#{name}", KeyedTable)


def screen_text(app: MonitorApp) -> str:
    return "\n".join(
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    )


def quiet_hosts(path: Path, sessions: dict[str, int], start: float) -> str:
    """A capture of LAN hosts, each sending ``n`` plain sessions to the smarthost."""
    frames = []
    for ip, count in sessions.items():
        for index in range(count):
            conv = synth.Conversation(ip, 40000 + index, SMARTHOST, 587, start=start + index)
            conv.smtp(PLAIN)
            conv.close()
            frames += conv.frames
    synth.write_pcap(path, sorted(frames, key=lambda f: f.ts), synth.LINKTYPE_ETHERNET)
    return str(path)


class Gated(Source):
    """Capture files played one after the other, each after its gate opens: the test says
    when new traffic arrives."""

    label = "gated"

    def __init__(self, *paths: str) -> None:
        self.paths = paths
        self.gates = [threading.Event() for _ in paths[1:]]

    def frames(self, stop: threading.Event) -> Iterator[Frame | None]:
        for index, path in enumerate(self.paths):
            if index:
                while not self.gates[index - 1].wait(0.02):
                    if stop.is_set():
                        return
                    yield None
            yield from CaptureFile(path)


async def until(pilot, done, what: str, limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"{what} within {limit:g} s"
        await pilot.pause(0.05)


@pytest.mark.parametrize("moved", [False, True], ids=["untouched", "moved"])
async def test_cursor_keeps_to_the_top_row_until_moved_then_follows_its_host(
    tmp_path: Path, moved: bool
) -> None:
    first = quiet_hosts(tmp_path / "a.pcap", {"192.168.7.1": 3, "192.168.7.2": 1}, 1000.0)
    later = quiet_hosts(tmp_path / "b.pcap", {"192.168.7.2": 4}, 1100.0)
    source = Gated(first, later)
    app = monitor(source)
    async with app.run_test(size=(120, 30)) as pilot:
        hosts = table(app, "hosts")
        await pilot.press("greater_than_sign")  # by sessions
        assert app.sort_column == "sessions"
        await until(pilot, lambda: app.model.sessions_total == 4, "the first sessions")
        app.update_view()
        await pilot.pause()
        assert hosts.keys == ["192.168.7.1", "192.168.7.2"]
        if moved:
            await pilot.press("j", "k")  # down and back: on the top row, but moved there
        assert hosts.cursor_row == 0 and hosts.cursor_key() == "192.168.7.1"
        source.gates[0].set()
        await until(pilot, lambda: app.progress.finished, "the second capture")
        app.update_view()
        await pilot.pause()
        assert hosts.keys == ["192.168.7.2", "192.168.7.1"]
        if moved:
            assert hosts.cursor_key() == "192.168.7.1" and hosts.cursor_row == 1
            await pilot.press("g")  # back to the top: kept there again
            assert hosts.cursor_key() == "192.168.7.2"
            await pilot.press("less_than_sign")  # by verdict: the top row changes
            assert hosts.cursor_row == 0
        else:
            assert hosts.cursor_key() == "192.168.7.2" and hosts.cursor_row == 0


async def test_sorting_keeps_an_untouched_cursor_on_the_top_row() -> None:
    app = monitor()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        hosts = table(app, "hosts")
        assert hosts.cursor_key() == SPAMBOT
        await pilot.press("greater_than_sign", "r")  # sessions, fewest first
        await pilot.pause()
        assert hosts.cursor_row == 0 and hosts.cursor_key() == hosts.keys[0] != SPAMBOT


def visible(sessions: KeyedTable) -> range:
    top = sessions.scroll_offset.y
    return range(top, top + sessions.scrollable_content_region.height - 1)


async def test_moving_keys() -> None:
    """j k, ↓ ↑, g G, Home End, PgUp PgDn on the spambot's 63 sessions at 80x24: the cursor
    moves and stays on screen."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("j", "j", "down")
        assert table(app, "hosts").cursor_row == 3
        await pilot.press("k", "up")
        assert table(app, "hosts").cursor_row == 1
        await pilot.press("g", "enter")
        await pilot.pause()
        assert isinstance(app.screen, HostScreen) and app.screen.ip == SPAMBOT
        sessions = table(app, "sessions")
        last = sessions.row_count - 1
        assert last == 62
        page = sessions.size.height - 1
        steps = [
            ("j", 1), ("down", 2), ("k", 1), ("pagedown", 1 + page), ("pagedown", 1 + 2 * page),
            ("pageup", 1 + page), ("G", last), ("home", 0), ("end", last), ("g", 0),
            ("up", 0), ("pageup", 0), ("G", last), ("down", last), ("pagedown", last),
        ]  # fmt: skip
        for key, row in steps:
            await pilot.press(key)
            await pilot.pause()
            assert sessions.cursor_row == row, key
            assert row in visible(sessions), (key, row, visible(sessions))


@pytest.mark.parametrize("where", ["hosts", "filter", "drill-down", "transcript", "help"])
async def test_ctrl_c_quits_cleanly_from_anywhere(where: str) -> None:
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        keys = {
            "hosts": [],
            "filter": ["slash", "1"],
            "drill-down": ["enter"],
            "transcript": ["enter", "enter"],
            "help": ["question_mark"],
        }[where]
        await pilot.press(*keys)
        await pilot.pause()
        expected = {"drill-down": HostScreen, "transcript": TranscriptScreen, "help": HelpScreen}
        if where in expected:
            assert isinstance(app.screen, expected[where])
        feeder = app.feeder
        assert feeder is not None
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running and app.return_code == 0
        assert feeder.stop_event.is_set()
    feeder.join(timeout=2)
    assert not feeder.is_alive()


def header_x(table: KeyedTable, key: str) -> int:
    left = 0
    for shown in table.shown_columns:
        if shown == key:
            return left + 1
        left += table.columns[shown].drawn + 2
    raise AssertionError(f"{key} not shown: {table.shown_columns}")


async def test_clicking_a_header_sorts_and_again_reverses() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        hosts = table(app, "hosts")
        sessions = {ip: h.sessions for ip, h in app.model.hosts.items()}
        assert await pilot.click(hosts, offset=(header_x(hosts, "sessions"), 0))
        await pilot.pause()
        assert app.sort_column == "sessions" and not app.sort_reverse
        assert [sessions[k] for k in hosts.keys] == sorted(sessions.values(), reverse=True)
        assert hosts.columns["sessions"].label.plain == "Sess▼"
        await pilot.click(hosts, offset=(header_x(hosts, "sessions"), 0))
        await pilot.pause()
        assert app.sort_reverse
        assert [sessions[k] for k in hosts.keys] == sorted(sessions.values())
        assert hosts.columns["sessions"].label.plain == "Sess▲"
        await pilot.click(hosts, offset=(header_x(hosts, "host"), 0))
        await pilot.pause()
        assert app.sort_column == "host" and hosts.columns["sessions"].label.plain == "Sess"


async def test_clicking_rows_moves_then_opens() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        hosts = table(app, "hosts")
        target = hosts.keys[2]
        await pilot.click(hosts, offset=(2, 3))  # the third row: moves the cursor
        await pilot.pause()
        assert hosts.cursor_key() == target and not isinstance(app.screen, HostScreen)
        await pilot.click(hosts, offset=(2, 3))  # again: opens it
        await pilot.pause()
        assert isinstance(app.screen, HostScreen) and app.screen.ip == target


def server_rows(app: MonitorApp) -> list:
    host = app.model.hosts[SPAMBOT]
    return [host.servers[ip] for ip in table(app, "servers").keys]


def session_rows(app: MonitorApp) -> list:
    return [app.model.session(int(key)) for key in table(app, "sessions").keys]


async def open_spambot(app: MonitorApp, pilot) -> HostScreen:
    await settle(app, pilot)
    await pilot.press("enter")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, HostScreen) and screen.ip == SPAMBOT
    return screen


async def test_drill_down_sort_keys_act_on_the_focused_table() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_spambot(app, pilot)
        assert screen.focused is table(app, "sessions")
        servers_before = table(app, "servers").keys
        starts = [s.start for s in session_rows(app)]
        assert starts == sorted(starts)
        await pilot.press("r")
        await pilot.pause()
        assert [s.start for s in session_rows(app)] == sorted(starts, reverse=True)
        assert table(app, "sessions").columns["start"].label.plain == "Start▲"
        await pilot.press("greater_than_sign")  # sessions by server, still reversed
        await pilot.pause()
        assert screen.sort["sessions"] == "server"
        order = [rows.SESSION_COLUMNS[1].value(s) for s in session_rows(app)]
        assert order == sorted(order, reverse=True)
        assert table(app, "servers").keys == servers_before  # the other table untouched
        await pilot.press("tab")
        await pilot.pause()
        assert screen.focused is table(app, "servers")
        await pilot.press("greater_than_sign")  # servers: from "rejected" to "tempfailed"
        await pilot.pause()
        assert screen.sort == {"servers": "tempfailed", "sessions": "server"}
        temp = [s.tempfailed_sessions for s in server_rows(app)]
        assert temp == sorted(temp, reverse=True) and temp[0] > 0
        await pilot.press("r")
        await pilot.pause()
        assert [s.tempfailed_sessions for s in server_rows(app)] == sorted(temp)
        await pilot.press("less_than_sign", "less_than_sign")  # back past "rejected"
        await pilot.pause()
        assert screen.sort["servers"] == "sessions"
        many = [s.sessions for s in server_rows(app)]
        assert many == sorted(many) and many[-1] == 2  # still reversed: fewest first
        assert screen.reverse == {"servers": True, "sessions": True}
        await pilot.click(table(app, "servers"), offset=(1, 0))  # the Server header
        await pilot.pause()
        assert screen.sort["servers"] == "server"


async def test_drill_down_filter() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_spambot(app, pilot)
        await pilot.press("slash", *"outlook", "enter")
        await pilot.pause()
        servers = server_rows(app)
        assert servers and all("outlook" in s.name.lower() for s in servers)
        sessions = session_rows(app)
        assert sessions and len(sessions) < app.model.hosts[SPAMBOT].sessions
        bar = screen_text(app)
        assert f"matching 'outlook' ({len(sessions)} of 63)" in bar
        await pilot.press("escape")
        await pilot.pause()
        assert len(table(app, "sessions").keys) == 63
        assert isinstance(app.screen, HostScreen)


async def test_drill_down_filter_leaves_the_host_filter_alone() -> None:
    """The drill-down's and the transcript's search fields are their own: typing in them
    does not filter the host table."""
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_spambot(app, pilot)
        await pilot.press("slash", *"outlook", "enter")
        await pilot.pause()
        assert app.filter_text == ""
        await pilot.press("enter", "slash", *"554", "enter")
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        assert app.filter_text == ""


async def test_o_cycles_the_kind_of_sessions_shown() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_spambot(app, pilot)
        host = app.model.hosts[SPAMBOT]
        counts = {"all": 63}
        for kind in ("rejected", "tempfailed", "accepted", "all"):
            await pilot.press("o")
            await pilot.pause()
            assert screen.kind == kind
            shown = session_rows(app)
            if kind != "all":
                assert shown and all(s.outcome == kind for s in shown)
                counts[kind] = len(shown)
                assert f"Sessions: {kind} ({len(shown)} of 63)" in screen_text(app)
            else:
                assert len(shown) == 63
        assert counts["rejected"] == host.rejected_sessions
        assert counts["tempfailed"] == host.tempfailed_sessions
        await pilot.press("o", "o")  # tempfailed; Esc clears it before it goes back
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HostScreen) and screen.kind == "all"
        assert len(session_rows(app)) == 63


async def test_enter_on_a_server_shows_its_sessions_and_escape_clears_then_goes_back() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_spambot(app, pilot)
        servers = table(app, "servers")
        await pilot.press("tab")
        assert screen.focused is servers
        busiest = max(server_rows(app), key=lambda s: (s.sessions, s.ip))
        assert busiest.sessions == 2
        servers.move_cursor(row=servers.keys.index(busiest.ip))
        await pilot.press("enter")
        await pilot.pause()
        assert screen.focused is table(app, "sessions")
        shown = session_rows(app)
        assert len(shown) == 2 and {s.server_ip for s in shown} == {busiest.ip}
        assert f"to {busiest.ip} (2 of 63)" in screen_text(app)
        await pilot.press("enter")  # a session of that server: its transcript
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        assert app.model.session(app.screen.session_id).server_ip == busiest.ip
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and len(session_rows(app)) == 2
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and len(session_rows(app)) == 63
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HostScreen)
        assert table(app, "hosts").keys[0] == SPAMBOT


def transcript_title(app: MonitorApp) -> str:
    return str(app.screen.query_one("#title").render())


async def test_transcript_search_steps_through_matches() -> None:
    app = monitor()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_spambot(app, pilot)
        session = session_rows(app)[0]
        replies = [line for line in session.transcript if "554" in line.text]
        assert len(replies) == 5, [line.text for line in session.transcript]
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TranscriptScreen)
        await pilot.press("slash", *"spamhaus", "enter")
        await pilot.pause()
        assert "search 'spamhaus': match 1 of 5" in transcript_title(app)
        await pilot.press("n", "n")
        assert "match 3 of 5" in transcript_title(app)
        await pilot.press("N", "N", "N")
        assert "match 5 of 5" in transcript_title(app)
        await pilot.press("n")
        assert "match 1 of 5" in transcript_title(app)
        await pilot.press("escape")  # clears the search
        await pilot.pause()
        assert app.screen is screen and "search" not in transcript_title(app)
        await pilot.press("slash", *"zzz", "enter")
        await pilot.pause()
        assert "search 'zzz': no match" in transcript_title(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and "search" not in transcript_title(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HostScreen)
