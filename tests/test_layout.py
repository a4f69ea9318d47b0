"""The monitor fitted to the terminal, from 80x24 to 250x60 (issue 11): columns by priority,
hidden whole behind a ``+N cols →`` mark and reached with the sideways keys, every number and
address drawn whole, free width to the text columns; the status bar by priority; a drill-down,
a help and notifications that fit an 80x24 terminal.

What the screen shows is read back from Textual's compositor and compared with the model."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import synth
from helpers import settle

from smtptop.analysis import analyze
from smtptop.keys import keys_text
from smtptop.source import FileSource, Progress
from smtptop.tui import rows
from smtptop.tui.app import MonitorApp
from smtptop.tui.help_screen import HelpScreen, help_text
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.tables import CELL_PADDING, KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen

SAMPLE = str(Path(__file__).resolve().parent.parent / "smtptop" / "data" / "office.pcap")
SPAMBOT = "192.168.0.108"
SMARTHOST = "198.51.100.25"
SIZES = [(80, 24), (100, 30), (120, 40), (160, 45), (200, 50), (250, 60)]
ESSENTIAL = ("host", "verdict", "sessions", "destinations", "rejected", "tempfailed")
LONG_V6_CLIENT = "fd12:3456:789a:1:1234:5678:9abc:def0"  # 36 characters: as long as they get
LONG_V6_SERVER = "2001:db8:ffff:abcd:1234:5678:9abc:de{:02x}"


def monitor(*paths: str) -> MonitorApp:
    return MonitorApp(FileSource(list(paths or [SAMPLE])), refresh_seconds=3600)


def screen_lines(app: MonitorApp) -> list[str]:
    """The terminal's lines as the user sees them."""
    return [
        "".join(segment.text for segment in strip)
        for strip in app.screen._compositor.render_strips()
    ]


def table_lines(app: MonitorApp, table: KeyedTable) -> list[str]:
    """The lines of the screen the table covers (header first), scrollbar left out."""
    region = table.scrollable_content_region
    return [line[region.x : region.right] for line in screen_lines(app)[region.y : region.bottom]]


def cells_on(table: KeyedTable, line: str) -> dict[str, str]:
    """What each column shows on one drawn line, by column key; the padding around each
    cell must be blank, or a value ran into its neighbour."""
    shown, left = {}, 0
    for key in table.shown_columns:
        drawn = table.columns[key].drawn
        cell = line[left : left + drawn + 2 * CELL_PADDING]
        assert cell[:CELL_PADDING].isspace() and cell[-CELL_PADDING:].isspace(), (key, line)
        shown[key] = cell[CELL_PADDING:-CELL_PADDING].strip()
        left += drawn + 2 * CELL_PADDING
    return shown


def shows_whole_or_cut(shown: str, value: str) -> bool:
    """A text column shows its value whole, or its start with an ellipsis."""
    return shown == value or (shown.endswith("…") and value.startswith(shown[:-1]))


def mark(table: KeyedTable) -> str:
    hidden = len(table.columns) - len(table.shown_columns)
    return f"+{hidden} col{'s' if hidden != 1 else ''}"


def check_rows(app: MonitorApp, table: KeyedTable, cells: dict[str, tuple]) -> int:
    """Every row on screen shows each of its values whole (numbers, addresses, times) or,
    for the columns that may be cut, its start; returns the rows checked."""
    lines = table_lines(app, table)
    header = cells_on(table, lines[0])
    for key in table.shown_columns:
        label = table.columns[key].label.plain
        assert shows_whole_or_cut(header[key], label.rstrip("▲▼")) or header[key] == label
    keys = table.keys[table.scroll_offset.y :]
    checked = 0
    for key, line in zip(keys, lines[1:], strict=False):
        shown = cells_on(table, line)
        for index, column in enumerate(table.columns.values()):
            if column.key not in shown:
                continue
            value = cells[key][index].plain
            if column.cut:
                assert shows_whole_or_cut(shown[column.key], value), (column.key, value, line)
            else:
                assert shown[column.key] == value.strip(), (column.key, value, line)
        checked += 1
    return checked


def host_cells(app: MonitorApp) -> dict[str, tuple]:
    return {row.host.ip: rows.host_cells(row) for row in app.visible_rows()}


def no_free_width_while_cut(table: KeyedTable) -> None:
    """Free width goes to the columns that can use it: while one of them is cut, the table
    has no width left over."""
    cut = [k for k in table.shown_columns if table.columns[k].grow and _is_cut(table, k)]
    if not cut:
        return
    used = sum(table.columns[k].drawn + 2 * CELL_PADDING for k in table.shown_columns)
    room = table.scrollable_content_region.width
    if table.hidden:
        room -= len(table._more_label(table.hidden)) + 1
    assert used >= room, f"{room - used} cells unused while {cut} are cut"


def _is_cut(table: KeyedTable, key: str) -> bool:
    column = table.columns[key]
    return column.drawn < column.widest


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_host_table_values_are_whole_at_every_size(width: int, height: int) -> None:
    analysis = analyze([SAMPLE])
    host = analysis.model.hosts[SPAMBOT]
    verdict = analysis.verdicts()[SPAMBOT]
    expected = {
        "host": SPAMBOT,
        "verdict": f"{verdict.verdict} {verdict.score}",
        "sessions": str(host.sessions),
        "destinations": str(host.destinations),
        "rejected": str(host.rejected_sessions),
        "tempfailed": str(host.tempfailed_sessions),
        "accepted": str(host.accepted_messages),
        "recipients": str(host.recipients),
    }
    app = monitor()
    async with app.run_test(size=(width, height)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#hosts", KeyedTable)
        assert set(ESSENTIAL) <= set(table.shown_columns)
        lines = table_lines(app, table)
        spambot = cells_on(table, lines[1 + table.keys.index(SPAMBOT)])
        for key, value in expected.items():
            if key in spambot:
                assert spambot[key] == value, (key, lines)
        assert check_rows(app, table, host_cells(app)) == len(app.model.hosts)
        header = lines[0].rstrip()
        hidden = len(rows.HOST_COLUMNS) - len(table.shown_columns)
        assert table.hidden == hidden
        if hidden:
            assert header.endswith(f"{mark(table)} →"), header
            assert "trend" not in table.shown_columns  # the sparkline gives way first
        else:
            assert "col" not in header
        if width >= 200:
            assert hidden == 0
            assert spambot["name"] == "wxpanna.studio.lan" and spambot["helo"].startswith("[203.")
        no_free_width_while_cut(table)


async def test_eighty_columns_show_the_essential_host_columns() -> None:
    """The issue's exact request: host, verdict, sessions, destinations, rejected and
    tempfailed at 80 columns, the hidden rest counted in the header."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#hosts", KeyedTable)
        header = table_lines(app, table)[0]
        for label in ("Host", "Verdict", "Sess", "Dest", "Rej", "Temp"):
            assert f" {label}" in header
        assert "+6 cols →" in header


def busier_office(tmp_path: Path, hosts: int = 20) -> str:
    """More quiet hosts next to the sample's, all talking to the smarthost: the host table
    no longer fits 24 lines, so it scrolls (and loses a column to its scrollbar)."""
    last = analyze([SAMPLE]).model.hosts[SPAMBOT].last_seen
    frames = []
    for index in range(hosts):
        conv = synth.Conversation(
            f"192.168.0.{150 + index}", 41000, SMARTHOST, 587, start=last - 300 + index
        )
        conv.smtp([("S", b"220 relay ESMTP\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 ok\r\n"),
                   ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
        frames += conv.frames
    path = tmp_path / "busier.pcap"
    synth.write_pcap(path, sorted(frames, key=lambda f: f.ts), synth.LINKTYPE_ETHERNET)
    return str(path)


async def test_a_long_host_list_scrolls_inside_the_table(tmp_path: Path) -> None:
    """More hosts than lines at 80x24: the table scrolls between the status bar and the
    footer (the screen itself does not), and End brings the last host into view."""
    app = monitor(SAMPLE, busier_office(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#hosts", KeyedTable)
        footer = app.screen.query_one("Footer")
        assert table.row_count == 28
        assert table.region.bottom <= footer.region.y
        await pilot.press("end")
        await pilot.pause()
        last = table.keys[-1]
        assert table.cursor_key() == last
        above_footer = screen_lines(app)[: footer.region.y]
        assert any(line.startswith(f" {last} ") for line in above_footer), last


def expected_mark(table: KeyedTable) -> str:
    scrolled = table._first > 0
    more_right = "helo" not in table.shown_columns
    return f"{'← ' if scrolled else ''}{mark(table)}{' →' if more_right or not scrolled else ''}"


@pytest.mark.parametrize("busy", [False, True], ids=["office", "busier-office"])
@pytest.mark.parametrize(("right", "left"), [("l", "h"), ("right", "left")])
async def test_sideways_keys_reach_every_hidden_column(
    tmp_path: Path, busy: bool, right: str, left: str
) -> None:
    """At 80x24, → (l) brings in the hidden columns one after the other and ← (h) goes back;
    the host address stays; the header's mark always says which way more columns are, and
    every value is whole whichever columns are shown."""
    paths = [SAMPLE, busier_office(tmp_path)] if busy else [SAMPLE]
    app = monitor(*paths)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#hosts", KeyedTable)
        start = table.shown_columns
        seen = set(start)
        for _ in range(len(rows.HOST_COLUMNS)):
            await pilot.press(right)
            await pilot.pause()
            shown = table.shown_columns
            assert shown[0] == "host"
            seen |= set(shown)
            header = table_lines(app, table)[0].rstrip()
            if table.hidden:
                assert header.endswith(expected_mark(table)), header
            check_rows(app, table, host_cells(app))
        assert seen == {c.key for c in rows.HOST_COLUMNS}
        for _ in range(len(rows.HOST_COLUMNS)):
            await pilot.press(left)
            await pilot.pause()
            header = table_lines(app, table)[0].rstrip()
            assert header.endswith(expected_mark(table)), header
        assert table.shown_columns == start


async def test_drill_down_fits_eighty_by_twenty_four() -> None:
    """One line of verdict (its reasons on v), then at least 8 sessions whose outcome shows,
    every number and address whole."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HostScreen)
        verdict = screen.query_one("#verdict")
        assert verdict.region.height == 1
        line = screen_lines(app)[verdict.region.y]
        assert "spambot" in line and "score 180" in line
        assert not screen.query_one("#reasons").display
        sessions = screen.query_one("#sessions", KeyedTable)
        visible = sessions.scrollable_content_region.height - 1
        assert visible >= 8
        assert "outcome" in sessions.shown_columns
        made = {key: rows.session_cells(app.model.session(int(key))) for key in sessions.keys}
        assert check_rows(app, sessions, made) == visible
        for key, line in zip(sessions.keys, table_lines(app, sessions)[1:], strict=False):
            outcome = app.model.session(int(key)).outcome
            assert cells_on(sessions, line)["outcome"].startswith(outcome)
        servers = screen.query_one("#servers", KeyedTable)
        host = app.model.hosts[SPAMBOT]
        stats = {ip: rows.server_cells(s) for ip, s in host.servers.items()}
        assert check_rows(app, servers, stats) >= 3
        await pilot.press("v")
        await pilot.pause()
        reasons = screen.query_one("#reasons")
        assert reasons.display
        assert "Spamhaus ZEN" in "\n".join(screen_lines(app))
        await pilot.press("v")
        await pilot.pause()
        assert not reasons.display


async def test_drill_down_verdict_line_is_whole_or_marked_cut() -> None:
    """At 80 columns the verdict's one line does not hold every signal; what is left out
    must show as cut (…), not end on a dangling comma as if the list were complete."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        line = screen_lines(app)[app.screen.query_one("#verdict").region.y].strip()
        whole = rows.verdict_line(app.verdicts[SPAMBOT], app.model.last_ts).plain.strip()
        assert line == whole or (line.endswith("…") and whole.startswith(line[:-1])), line


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_drill_down_values_are_whole_and_free_width_is_used(width: int, height: int) -> None:
    app = monitor()
    async with app.run_test(size=(width, height)) as pilot:
        await settle(app, pilot)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        sessions = screen.query_one("#sessions", KeyedTable)
        servers = screen.query_one("#servers", KeyedTable)
        assert {"start", "server", "outcome"} <= set(sessions.shown_columns)
        assert {"server", "sessions", "rejected", "tempfailed"} <= set(servers.shown_columns)
        made = {key: rows.session_cells(app.model.session(int(key))) for key in sessions.keys}
        assert check_rows(app, sessions, made) >= 8
        host = app.model.hosts[SPAMBOT]
        stats = {ip: rows.server_cells(s) for ip, s in host.servers.items()}
        assert check_rows(app, servers, stats) >= 3
        no_free_width_while_cut(sessions)
        no_free_width_while_cut(servers)


def ipv6_capture(tmp_path: Path, client: str, server: str, sessions: int = 3) -> str:
    frames = []
    for index in range(sessions):
        conv = synth.Conversation(
            client, 40000 + index, server.format(index), 25, start=1000.0 + 10 * index
        )
        conv.smtp(
            [
                ("S", b"220 a-rather-long-mail-server-banner.example.com ESMTP\r\n"),
                ("C", b"EHLO a-rather-long-helo-name-of-the-client.example.org\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"MAIL FROM:<someone@example.org>\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"RCPT TO:<x@example.com>\r\n"),
                ("S", b"550 5.7.1 refused: your address is listed\r\n"),
            ]
        )
        frames += conv.frames
    path = tmp_path / "v6.pcap"
    synth.write_pcap(path, sorted(frames, key=lambda f: f.ts), synth.LINKTYPE_ETHERNET)
    return str(path)


def whole_on_a_line(text: str, lines: list[str]) -> bool:
    return any(text in line for line in lines)


@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_long_ipv6_addresses_are_never_cut(tmp_path: Path, width: int, height: int) -> None:
    app = monitor(ipv6_capture(tmp_path, LONG_V6_CLIENT, LONG_V6_SERVER))
    async with app.run_test(size=(width, height)) as pilot:
        await settle(app, pilot)
        hosts = app.query_one("#hosts", KeyedTable)
        assert hosts.keys == [LONG_V6_CLIENT]
        check_rows(app, hosts, host_cells(app))
        assert whole_on_a_line(LONG_V6_CLIENT, table_lines(app, hosts))
        await pilot.press("enter")
        await pilot.pause()
        servers = app.screen.query_one("#servers", KeyedTable)
        sessions = app.screen.query_one("#sessions", KeyedTable)
        lines = screen_lines(app)
        for index in range(3):
            server = LONG_V6_SERVER.format(index)
            assert whole_on_a_line(server, table_lines(app, servers)), server
            assert whole_on_a_line(f"[{server}]:25", table_lines(app, sessions)), server
        assert whole_on_a_line(LONG_V6_CLIENT, lines)
        made = {key: rows.session_cells(app.model.session(int(key))) for key in sessions.keys}
        assert check_rows(app, sessions, made) == 3
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TranscriptScreen)
        session = app.model.session(app.screen.session_id)
        lines = screen_lines(app)
        assert whole_on_a_line(session.client, lines) and whole_on_a_line(session.server, lines)


async def test_short_ipv6_addresses_leave_room_for_the_essential_columns(tmp_path: Path) -> None:
    app = monitor(ipv6_capture(tmp_path, "fd00:10::108", "2001:db8:25::{}"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        hosts = app.query_one("#hosts", KeyedTable)
        assert set(ESSENTIAL) <= set(hosts.shown_columns)
        check_rows(app, hosts, host_cells(app))


def status_line(app: MonitorApp) -> str:
    status = app.query_one("#status")
    return screen_lines(app)[status.region.y]


async def test_status_bar_counters_give_way_first() -> None:
    """Narrow, the packet count and the span go first; wide, everything shows."""
    wide, narrow = monitor(), monitor()
    async with wide.run_test(size=(200, 50)) as pilot:
        await settle(wide, pilot)
        line = status_line(wide)
        for part in ("1 spambot", "drops 0", "end of capture", "8 hosts", "85 sessions",
                     "1,867 pkts", "span 12:17"):  # fmt: skip
            assert part in line, (part, line)
    async with narrow.run_test(size=(120, 40)) as pilot:
        await settle(narrow, pilot)
        line = status_line(narrow)
        assert "85 sessions" in line and "pkts" not in line and "span" not in line


async def test_status_bar_keeps_what_must_not_be_missed_at_eighty_columns() -> None:
    """Spambots, drops, PAUSED, the filter and the end of the capture all fit 80 columns;
    the counters make room for them."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "slash", *"192.168", "enter")
        await pilot.pause()
        line = status_line(app)
        for part in ("1 spambot", "PAUSED", "filter: 192.168", "drops 0", "end of capture"):
            assert part in line, (part, line)


async def test_a_replay_keeps_its_position_beside_a_spambot_at_eighty_columns() -> None:
    """The demo at 80 columns: once the spambot is flagged, the host and session counts give
    way before the replay's position does."""
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.progress = Progress(replay_at=35, replay_span=749)
        app.update_status()
        line = status_line(app)
        for part in ("1 spambot", "drops 0", "replay 0:35 of 12:29"):
            assert part in line, (part, line)
        assert "85 sessions" not in line, line


@pytest.mark.parametrize("width", [80, 200])
async def test_a_capture_problem_stays_in_the_status_bar_cut_to_fit(
    tmp_path: Path, width: int
) -> None:
    """A truncated file: after its toast has gone, the warning stays in the status bar, cut
    to the room left beside what must never be missed."""
    packed = gzip.compress(Path(SAMPLE).read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) * 9 // 10])
    app = monitor(str(cut))
    async with app.run_test(size=(width, 24)) as pilot:
        await settle(app, pilot)
        app.update_status()
        line = status_line(app)
        assert "warning: " in line and "truncated" in line, line
        for part in ("1 spambot", "drops 0", "end of capture"):
            assert part in line, (part, line)
        assert len(line.rstrip()) <= width, line


async def test_status_bar_keeps_the_end_of_capture_beside_an_ipv6_spambot(tmp_path: Path) -> None:
    app = monitor(ipv6_capture(tmp_path, LONG_V6_CLIENT, LONG_V6_SERVER))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.verdicts[LONG_V6_CLIENT].verdict == "spambot"
        line = status_line(app)
        for part in ("1 spambot", "drops 0", "end of capture"):
            assert part in line, (part, line)


async def test_help_fits_eighty_by_twenty_four_and_scrolls_to_its_end() -> None:
    app = monitor()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one("#help")
        assert box.region.x >= 0 and box.region.right <= 80 and box.region.bottom <= 24
        seen: list[str] = []
        for _ in range(10):  # a page at a time, down to the end
            seen += screen_lines(app)
            await pilot.press("pagedown")
            await pilot.pause()
        seen += screen_lines(app)
        for line in keys_text().splitlines():
            assert whole_on_a_line(line.strip(), seen), line
        last = help_text(app.detector.config).splitlines()[-1]  # the last signal, at the end
        assert whole_on_a_line(last.strip(), seen), last
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_spambot_notification_is_short() -> None:
    app = monitor()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.pause(0.2)
        messages = [n.message for n in app._notifications]
        assert messages and all(len(m) <= 80 for m in messages), messages
        from textual.widgets._toast import Toast

        toasts = list(app.screen.query(Toast))
        assert toasts
        for toast in toasts:
            assert toast.region.width <= 40 and toast.region.height <= 4, toast.region
