"""The monitor: a top-like view of LAN hosts talking SMTP, with drill-down to raw sessions.

A :class:`~smtptop.source.Feeder` thread runs the engine on the source and hands batches of
events to the app through ``loop.call_soon_threadsafe`` into a bounded ``asyncio.Queue``; a
worker folds them into the model.  The screens redraw on a timer (about once a second),
touching only the cells that changed and keeping the cursor on its host when rows re-sort.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, RichLog, Static
from textual.worker import WorkerFailed

from smtptop import identity
from smtptop.analyzer import EngineConfig, FlowEvent, FlowOpened, apply
from smtptop.detect import DetectConfig, Detector, Verdict
from smtptop.errorlog import ErrorLog
from smtptop.keys import keys_text
from smtptop.model import Model, Session, TranscriptLine
from smtptop.source import Batch, Feeder, Progress, Source
from smtptop.speed import Speedometer, clock, size
from smtptop.text import inert, plural
from smtptop.tui import rows
from smtptop.tui.tables import KeyedTable

REFRESH_SECONDS = 1.0
FOLD_CHUNK = 200  # events folded (about 5 ms) before the event loop gets a turn
JUDGE_CHUNK = 100  # hosts judged (about 10 ms) before the event loop gets a turn
REJUDGE_REFRESHES = 20  # every host is judged again within this many refreshes (time windows)
TIMED_COLUMNS = frozenset({"rate"})  # sort keys that change with time alone
HOST_TABLE_ACTIONS = frozenset({"sort", "reverse", "filter", "clear_filter"})
TOP_HOSTS = 200

COLOURS = """\
Colours: a red host is a spambot, talks to more than 5 servers or has 3 or more
rejected sessions; a yellow one is suspicious or had a rejection or a temporary
failure. In transcripts C: is the client, S: the server (2xx green, 4xx yellow,
5xx red), and -- a note from smtptop. The first time a host turns spambot the
status bar says so (--bell rings, --alert-exec runs your command).
"""
DAY = 86400.0
SESSION_ROWS = 2000  # rows of the drill-down's session table; o, / and a server narrow it
TOAST_SECONDS = 4
DRILL_TABLES = {"servers": rows.SERVER_COLUMNS, "sessions": rows.SESSION_COLUMNS}
MATCH_STYLE = {False: "bold black on yellow", True: "bold black on bright_cyan"}  # current?
CUT_STATUS = 20  # a warning in the status bar is cut to the room left, down to this
WARNING_SECONDS = 8  # a capture's problem: the status bar keeps it after the toast


def dated(model: Model) -> bool:
    """Whether times need their date: the capture spans more than a day."""
    return model.last_ts - model.first_ts > DAY


class HelpScreen(ModalScreen[None]):
    """The keys (from :mod:`smtptop.keys`, as ``--help`` lists them) and the colours."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(keys_text() + "\n\n" + COLOURS.rstrip()), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help", VerticalScroll).focus()


def _ready(screen: Screen[None]) -> MonitorApp:
    app = screen.app
    assert isinstance(app, MonitorApp)
    return app


class TranscriptScreen(Screen[None]):
    """The raw exchange of one session, growing while the session is still going; ``/``
    searches it and ``n``/``N`` step through the matches."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match(1)", "Next"),
        Binding("N", "next_match(-1)", "Previous"),
    ]

    def __init__(self, session_id: int) -> None:
        super().__init__()
        self.session_id = session_id
        self._written = 0
        self.ready = False  # set once mounted: the refresh timer may fire before that
        self.needle = ""
        self._pattern: re.Pattern[str] | None = None  # the search, compiled once
        self.matches: list[int] = []  # the log lines where matching transcript lines start
        self.match = -1

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield RichLog(id="transcript", wrap=True, markup=False, highlight=False, min_width=20)
        yield Input(
            placeholder="search the transcript (Enter: done, Esc: clear)",
            id="search",
            select_on_focus=False,
        )
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
        self.query_one("#transcript", RichLog).focus()
        self.update_view()

    def update_view(self) -> None:
        app = _ready(self)
        session = app.model.session(self.session_id)
        if session is None:
            return
        log = self.query_one("#transcript", RichLog)
        when = dated(app.model)
        for line in session.transcript[self._written :]:
            self._write(log, line, when)
        self._written = len(session.transcript)
        if session.closed and session.transcript_dropped:
            log.write(Text(f"({plural(session.transcript_dropped, 'more line')} not kept)",
                           style="dim"))  # fmt: skip
            self._written += session.transcript_dropped
        title = Text.assemble(
            (f"{session.client} → {session.server}", "bold"),
            f"  {session.banner}  HELO {session.helo or '-'}  ",
            rows.session_outcome(session),
        )
        if session.tls:
            title.append("  TLS", style="cyan")
        if session.partial:
            title.append("  partial capture", style="magenta")
        if self.needle:
            found = len(self.matches)
            where = f"match {self.match + 1} of {found}" if found else "no match"
            title.append(f"  search {self.needle!r}: {where}", style="reverse" if found else "")
        self.query_one("#title", Static).update(title)

    def _write(self, log: RichLog, line: TranscriptLine, when: bool) -> None:
        text = rows.transcript_line(line, when)
        pattern = self._pattern
        if pattern is not None and pattern.search(line.text):
            current = len(self.matches) == self.match
            self.matches.append(len(log.lines))
            text.highlight_regex(pattern, style=MATCH_STYLE[current])
        log.write(text, scroll_end=False if pattern else None)  # a search scrolls to its match

    def _rewrite(self) -> None:
        """Draw the whole transcript again, marking the matches of the search."""
        log = self.query_one("#transcript", RichLog)
        log.clear()
        self.matches = []
        self._written = 0
        self.update_view()
        if self.matches:
            log.scroll_to(y=max(0, self.matches[self.match] - 2), animate=False)

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("shown")
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()  # the search is this screen's, not the host filter
        self.needle = event.value.strip()
        self._pattern = re.compile(re.escape(self.needle), re.IGNORECASE) if self.needle else None
        self.match = 0
        self._rewrite()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("shown")
        self.query_one("#transcript", RichLog).focus()

    def action_next_match(self, step: int) -> None:
        if self.matches:
            self.match = (self.match + step) % len(self.matches)
            self._rewrite()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_class("shown") or self.needle:
            search.value = ""
            search.remove_class("shown")
            self.query_one("#transcript", RichLog).focus()
            return
        self.app.pop_screen()


class HostScreen(Screen[None]):
    """One host: the verdict, the servers it talked to and its sessions.  Each table sorts
    and filters on its own; ``o`` picks the kind of sessions shown, Enter on a server shows
    only its sessions."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("less_than_sign", "sort(-1)", "Sort ←", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort →", show=False),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("o", "kind", "Only…"),
        Binding("v", "reasons", "Reasons"),
    ]

    def __init__(self, ip: str) -> None:
        super().__init__()
        self.ip = ip
        self.ready = False  # set once mounted: the refresh timer may fire before that
        self.sort = {"servers": rows.SERVER_SORT, "sessions": rows.SESSION_SORT}
        self.reverse = {"servers": False, "sessions": False}
        self.kind = rows.SESSION_KINDS[0]
        self.server: str | None = None  # show only the sessions to this server
        self.needle = ""
        self.expanded = False
        self._made: dict[int, tuple[bool, tuple[Text, ...]]] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="verdict")
        yield Static(id="reasons")
        yield KeyedTable(id="servers")
        yield Static(id="sessions-bar")
        yield KeyedTable(id="sessions")
        yield Input(
            placeholder="filter servers and sessions (Enter: done, Esc: clear)",
            id="drill-filter",
            select_on_focus=False,
        )
        yield Footer()

    def on_mount(self) -> None:
        for table_id, columns in DRILL_TABLES.items():
            add_columns(self.query_one(f"#{table_id}", KeyedTable), columns)
            self._mark_sorted(table_id)
        sessions = self.query_one("#sessions", KeyedTable)
        sessions.focus()
        self.ready = True
        self.update_view()

    def update_view(self) -> None:
        app = _ready(self)
        host = app.model.hosts.get(self.ip)
        if host is None:
            return
        name = app.name_of(host.ip)
        title = Text.assemble(
            (host.ip, rows.LEVEL_STYLE[rows.host_level(host)] or "bold"),
            f" {name}" if name else "",
            f"  {plural(host.sessions, 'session')} to {plural(host.destinations, 'server')}, ",
            (f"{host.rejected_sessions:,} rejected", "bold red" if host.rejected_sessions else ""),
            f", {host.tempfailed_sessions:,} tempfailed, "
            f"{plural(host.accepted_messages, 'message')} accepted",
        )
        verdict = app.verdicts.get(host.ip)
        self.query_one("#verdict", Static).update(rows.verdict_line(verdict))
        reasons = self.query_one("#reasons", Static)
        reasons.display = self.expanded
        self.query_one("#servers", KeyedTable).display = not self.expanded  # room for both
        if self.expanded:
            reasons.update(rows.reasons_text(verdict, app.facts(host.ip)))
        needle = self.needle.lower()
        servers = [s for s in host.servers.values() if not needle or _matches(needle, s.ip, s.name)]
        self._order("servers", servers)
        self.query_one("#servers", KeyedTable).show([(s.ip, rows.server_cells(s)) for s in servers])
        kept = app.model.host_sessions(self.ip)
        if host.sessions_evicted or len(host.servers) < host.destinations:
            title.append(
                f"  showing {len(kept):,} of {plural(host.sessions, 'session')}; "
                f"{host.sessions_evicted:,} older summarised; "
                f"{len(host.servers):,} of {plural(host.destinations, 'server')} listed",
                style="dim",
            )
        self.query_one("#title", Static).update(title)
        when = dated(app.model)
        shown = [s for s in kept if self._wanted(s, needle, when)]
        self._order("sessions", shown)
        table = self.query_one("#sessions", KeyedTable)
        table.show([(str(s.id), self._cells(s, when)) for s in shown[:SESSION_ROWS]])
        empty = f"no session here: {self._what()}" if kept else "no session kept"
        table.set_empty(Text(empty, style="dim"))
        self.query_one("#sessions-bar", Static).update(self._bar(len(shown), len(kept)))
        if len(self._made) > 2 * len(kept):  # forget the rows of sessions no longer kept
            ids = {s.id for s in kept}
            self._made = {i: cells for i, cells in self._made.items() if i in ids}

    def _cells(self, session: Session, when: bool) -> tuple[Text, ...]:
        """A session's row; a finished session's is made once (a spambot keeps thousands)."""
        if not session.closed:
            return rows.session_cells(session, when)
        cells = self._made.get(session.id)
        if cells is None or cells[0] != when:
            cells = self._made[session.id] = (when, rows.session_cells(session, when))
        return cells[1]

    def _what(self) -> str:
        """The sessions shown, in words: "rejected", "to 192.0.2.7", "matching 'x'"."""
        parts = [] if self.kind == "all" else [self.kind]
        if self.server:
            parts.append(f"to {self.server}")
        if self.needle:
            parts.append(f"matching {inert(self.needle)!r}")
        return " ".join(parts) if parts else "all"

    def _bar(self, shown: int, kept: int) -> Text:
        text = Text(" Sessions: ", style="bold")
        text.append(self._what(), style="cyan" if shown != kept else "")
        text.append(f" ({shown:,} of {kept:,})  ", style="dim")
        if shown > SESSION_ROWS:
            text.append(f"the first {SESSION_ROWS:,} listed  ", style="yellow")
        keys = "o: kind  Enter on a server: its sessions"
        text.append(keys + ("  Esc: all" if shown != kept else ""), style="dim")
        return text

    def _wanted(self, session: Session, needle: str, when: bool) -> bool:
        if self.kind != "all" and session.outcome != self.kind:
            return False
        if self.server and session.server_ip != self.server:
            return False
        if needle:
            outcome = self._cells(session, when)[-1].plain  # made once per finished session
            return _matches(needle, session.server, session.banner, session.helo,
                            *session.mail_from, outcome)  # fmt: skip
        return True

    def _order(self, table_id: str, items: list[Any]) -> None:
        """Sort a drill-down table's rows by its sort column (its ``value`` is the key)."""
        column = next(c for c in DRILL_TABLES[table_id] if c.key == self.sort[table_id])
        items.sort(key=column.value, reverse=self.reverse[table_id])

    def _focused_table(self) -> str:
        focused = self.focused
        servers = isinstance(focused, KeyedTable) and focused.id == "servers"
        return "servers" if servers else "sessions"

    def _mark_sorted(self, table_id: str) -> None:
        table = self.query_one(f"#{table_id}", KeyedTable)
        arrow = "▲" if self.reverse[table_id] else "▼"
        for column in DRILL_TABLES[table_id]:
            mark = arrow if column.key == self.sort[table_id] else ""
            table.set_label(column.key, column.label + mark)

    def action_sort(self, step: int) -> None:
        table_id = self._focused_table()
        keys = [c.key for c in DRILL_TABLES[table_id]]
        self.sort_by(table_id, keys[(keys.index(self.sort[table_id]) + step) % len(keys)])

    def sort_by(self, table_id: str, key: str) -> None:
        self.sort[table_id] = key
        self._mark_sorted(table_id)
        self.update_view()

    def action_reverse(self) -> None:
        self.reverse_table(self._focused_table())

    def reverse_table(self, table_id: str) -> None:
        self.reverse[table_id] = not self.reverse[table_id]
        self._mark_sorted(table_id)
        self.update_view()

    def action_kind(self) -> None:
        kinds = rows.SESSION_KINDS
        self.kind = kinds[(kinds.index(self.kind) + 1) % len(kinds)]
        self.update_view()

    def action_reasons(self) -> None:
        self.expanded = not self.expanded
        self.update_view()

    def action_filter(self) -> None:
        field = self.query_one("#drill-filter", Input)
        field.add_class("shown")
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()  # the drill-down's filter, not the host table's
        self.needle = event.value.strip()
        self.update_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("shown")
        self.query_one("#sessions", KeyedTable).focus()

    def action_back(self) -> None:
        """Clear what narrows the view first (filter, server, kind); then go back."""
        field = self.query_one("#drill-filter", Input)
        if field.has_class("shown") or self.needle or self.server or self.kind != "all":
            field.value = ""
            field.remove_class("shown")
            self.needle, self.server, self.kind = "", None, rows.SESSION_KINDS[0]
            self.query_one("#sessions", KeyedTable).focus()
            self.update_view()
            return
        self.app.pop_screen()

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        if event.table.id == "sessions":
            self.app.push_screen(TranscriptScreen(int(event.key)))
        else:
            self.server = None if self.server == event.key else event.key
            self.query_one("#sessions", KeyedTable).focus()
            self.update_view()

    def on_keyed_table_header_selected(self, event: KeyedTable.HeaderSelected) -> None:
        event.stop()
        table_id = event.table.id or "sessions"
        if self.sort[table_id] == event.key:
            self.reverse_table(table_id)
        else:
            self.sort_by(table_id, event.key)


def _matches(needle: str, *fields: str) -> bool:
    return any(needle in field.lower() for field in fields)


def add_columns(table: KeyedTable, columns: tuple[rows.Column, ...]) -> None:
    for column in columns:
        table.add_column(
            column.label,
            width=column.width,
            key=column.key,
            priority=column.priority,
            cut=column.cut,
            grow=column.grow,
            pinned=column.pinned,
        )


def _ports(ports: Iterable[int]) -> str:
    return ",".join(map(str, sorted(ports)))


class RollingDetector(Detector):
    """Judges the hosts it is given rather than all of them: at 10,000 hosts a full
    :meth:`evaluate` takes about a second, far longer than the UI may stall."""

    def judge(self, ips: Iterable[str], now: float, relays: set[str]) -> dict[str, Verdict]:
        hosts = self.model.hosts
        judged = {}
        for ip in ips:
            host = hosts.get(ip)
            if host is None:
                continue
            judged[ip] = self._judge(host, now, relays) if host.lan else Verdict(ip, "", 0, (), "")
        return judged


class MonitorFailed(Exception):
    """The capture thread failed; the message is the one line the monitor ends with."""


class MonitorApp(App[None]):
    """smtptop's terminal UI."""

    TITLE = "smtptop"
    failure = ""  # why the monitor crashed: the one line it ends with
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #hosts { height: 1fr; }
    Input { dock: bottom; display: none; }
    Input.shown { display: block; }
    #title { height: auto; padding: 0 1; background: $panel; }
    #verdict { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #reasons { height: auto; max-height: 50%; padding: 0 1; overflow-y: auto; }
    #servers { height: auto; max-height: 30%; }
    #sessions-bar { height: 1; background: $panel; }
    #sessions { height: 1fr; }
    #help { width: 80; max-width: 100%; height: auto; max-height: 100%;
            border: round $accent; padding: 0 1; background: $surface; }
    HelpScreen { align: center middle; }
    Toast { max-width: 50%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p", "pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("less_than_sign", "sort(-1)", "Sort ←"),
        Binding("greater_than_sign", "sort(1)", "Sort →"),
        Binding("r", "reverse", "Reverse"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(
        self,
        source: Source,
        *,
        config: EngineConfig | None = None,
        lan: Iterable[str] = (),
        show_credentials: bool = False,
        top: int = TOP_HOSTS,
        refresh_seconds: float = REFRESH_SECONDS,
        max_batches: int = 64,
        detect: DetectConfig | None = None,
        bell: bool = False,
        alert_exec: str | None = None,
        error_log: ErrorLog | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.config = config or EngineConfig()
        self.model = Model(lan=lan, show_credentials=show_credentials)
        self.detector = RollingDetector(self.model, detect)
        self.verdicts: dict[str, Verdict] = {}
        self.ring_bell = bell
        self.alert_exec = alert_exec
        self.alerts_failed = 0
        self.error_log = error_log
        self._flagged: set[str] = set()
        self.top = top
        self.refresh_seconds = refresh_seconds
        self.max_batches = max_batches
        self.progress = Progress()
        self.sort_column = rows.DEFAULT_SORT
        self.sort_reverse = False
        self.paused = False
        self.filter_text = ""
        self.feeder: Feeder | None = None
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=max_batches)
        self._shown_hosts = 0
        self._dirty: set[str] = set()  # hosts with events since they were last judged
        self._relays: set[str] | None = None
        self._rotation: Iterator[str] = iter(())
        self._keys: dict[str, tuple[object, ...]] = {}  # sort key of every host
        self._keys_column = ""
        self._refreshing = False
        self._speed = Speedometer()
        self.last_alert = ""

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield KeyedTable(id="hosts")
        yield Input(
            placeholder="filter hosts by address, name or HELO", id="filter", select_on_focus=False
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hosts", KeyedTable)
        add_columns(table, rows.HOST_COLUMNS)
        table.focus()
        self._mark_sorted()
        loop = asyncio.get_running_loop()
        queue = self._queue

        def deliver(batch: Batch) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, batch)

        self.feeder = Feeder(self.source, deliver, config=self.config, max_batches=self.max_batches)
        self.feeder.start()
        self.run_worker(self._drain(), exclusive=True, name="drain")
        self.set_interval(self.refresh_seconds, self._refresh_later)
        # the first hosts show a quarter of a tick after start, not a whole one
        self.set_timer(self.refresh_seconds / 4, self._refresh_later)
        self.update_view()

    async def _drain(self) -> None:
        """Fold batches from the capture thread into the model, a slice at a time: a batch
        holds up to 1,000 events and several may be waiting, which folded in one go would
        stall the UI (``Queue.get`` does not yield while the queue has items)."""
        while True:
            batch = await self._queue.get()
            events = batch.events
            for start in range(0, len(events), FOLD_CHUNK):
                chunk = events[start : start + FOLD_CHUNK]
                self._touch(chunk)
                apply(self.model, chunk)
                await asyncio.sleep(0)
            if self.feeder is not None:
                self.feeder.release()
            self.progress = batch.progress
            if batch.progress.failure:
                raise MonitorFailed(batch.progress.failure)
            if batch.progress.finished:
                self.update_view()
                if batch.progress.problem:
                    self.notify(batch.progress.problem, severity="warning", markup=False,
                                timeout=WARNING_SECONDS)  # fmt: skip

    def _touch(self, events: list[tuple[int, FlowEvent]]) -> None:
        """Note the hosts these events change (before they are folded: a closing event
        takes its session out of the open ones)."""
        dirty, open_sessions = self._dirty, self.model.open
        for session_id, event in events:
            session = open_sessions.get(session_id) if session_id else None
            if session is not None:
                dirty.add(session.client_ip)
            elif isinstance(event, FlowOpened):
                dirty.add(event.client[0])
            elif isinstance(event, identity.Sighting) and event.ip:
                dirty.add(event.ip)
            elif isinstance(event, identity.DnsLookup):
                dirty.add(event.client)

    # -- views ---------------------------------------------------------------------------

    def update_view(self) -> None:
        """Judge the hosts, alert on new spambots, redraw (unless paused) changed cells."""
        for _ in self._refresh_steps():
            pass

    def _refresh_later(self) -> None:
        """The timer's redraw: the same steps, giving the event loop a turn between them."""
        if not self._refreshing:
            self.run_worker(self._refresh(), group="refresh")

    async def _refresh(self) -> None:
        self._refreshing = True
        try:
            for _ in self._refresh_steps():
                await asyncio.sleep(0)
        finally:
            self._refreshing = False

    def _refresh_steps(self) -> Iterator[None]:
        """Judge the hosts that changed, plus a share of the others (verdicts and rates
        also change as time passes), a slice at a time; then redraw."""
        if not self.is_running:  # the timer can still fire while the app shuts down
            return
        model = self.model
        now = model.last_ts
        relays = self.detector.smarthosts()
        if relays != self._relays:  # every direct-to-MX verdict depends on it
            self._relays = relays
            self._dirty.update(model.hosts)
        todo = [ip for ip in model.hosts if ip not in self.verdicts]
        todo += self._dirty
        self._dirty = set()
        todo += self._stale(len(model.hosts) // REJUDGE_REFRESHES + 1)
        for start in range(0, len(todo), JUDGE_CHUNK):
            self._judged(self.detector.judge(todo[start : start + JUDGE_CHUNK], now, relays))
            yield
        if self.sort_column in TIMED_COLUMNS or self._keys_column != self.sort_column:
            self._keys_column = self.sort_column
            every = list(model.hosts)
            for start in range(0, len(every), JUDGE_CHUNK * 10):
                self._rekey(every[start : start + JUDGE_CHUNK * 10], now)
                yield
        if not self.paused:
            screen = self.screen
            if isinstance(screen, HostScreen | TranscriptScreen) and screen.ready:
                screen.update_view()
            self._update_hosts()
        self.update_status()

    def _stale(self, count: int) -> list[str]:
        """The next ``count`` hosts in a round over all of them."""
        picked: list[str] = []
        for _ in range(2):
            wanted = range(count - len(picked))
            picked += (ip for _, ip in zip(wanted, self._rotation, strict=False))
            if len(picked) >= count:
                break
            self._rotation = iter(list(self.model.hosts))
        return picked

    def _judged(self, verdicts: dict[str, Verdict]) -> None:
        """Keep new verdicts and sort keys; alert on hosts that just turned spambot."""
        self.verdicts.update(verdicts)
        self._rekey(verdicts, self.model.last_ts)
        for ip, verdict in verdicts.items():
            if verdict.verdict == "spambot" and ip not in self._flagged:
                self._flagged.add(ip)
                self._alert(verdict)

    def _rekey(self, ips: Iterable[str], now: float) -> None:
        key = rows.sort_key(self.sort_column)
        hosts, keys = self.model.hosts, self._keys
        for ip in ips:
            host = hosts.get(ip)
            if host is not None:
                keys[ip] = key(rows.HostRow(host, self.verdicts.get(ip), self.name_of(ip), now))

    def name_of(self, ip: str) -> str:
        identity = self.model.identities.get(ip)
        return identity.name if identity is not None else ""

    def facts(self, ip: str) -> list[tuple[str, str]]:
        """Who a host is, for the drill-down."""
        from smtptop.vendor import vendor

        identity = self.model.identities.get(ip)
        host = self.model.hosts.get(ip)
        verdict = self.verdicts.get(ip)
        names = ", ".join(f"{n} ({s})" for s, n in identity.names.items()) if identity else ""
        mac = identity.mac if identity else ""
        made_by = vendor(mac) if mac else ""
        return [
            ("names", names),
            ("MAC", f"{mac} {made_by}".strip()),
            ("client software", verdict.dialect if verdict else ""),
            ("HELO names", ", ".join(host.helos) if host else ""),
        ]

    def visible_rows(self) -> list[rows.HostRow]:
        """The hosts the table shows, in order: filtered, sorted, the top N (picked with a
        heap from the kept sort keys: sorting 10,000 hosts every second is too slow)."""
        model, keys = self.model, self._keys
        now = model.last_ts
        missing = [ip for ip in model.hosts if ip not in keys]
        if missing:
            self._rekey(missing, now)
        candidates: Iterable[str] = model.hosts
        needle = self.filter_text.lower()
        if needle:
            candidates = [
                ip
                for ip, host in model.hosts.items()
                if needle in ip
                or needle in self.name_of(ip).lower()
                or any(needle in n.lower() for n in host.helos)
            ]
        pick = heapq.nlargest if self.sort_reverse else heapq.nsmallest
        top = pick(self.top, candidates, key=keys.__getitem__)
        when = dated(model)
        return [
            rows.HostRow(model.hosts[ip], self.verdicts.get(ip), self.name_of(ip), now, when)
            for ip in top
        ]

    def _update_hosts(self) -> None:
        shown = self.visible_rows()
        self._shown_hosts = len(shown)
        table = self.query_one("#hosts", KeyedTable)
        table.show([(r.host.ip, rows.host_cells(r)) for r in shown])
        table.set_empty(self.empty_text())

    def empty_text(self) -> Text:
        """What the host table says while it shows no host."""
        if self.filter_text:
            return Text(f"no host matches {inert(self.filter_text)!r}  (Esc clears the filter)",
                        style="yellow")  # fmt: skip
        progress = self.progress
        if progress.finished and progress.problem:  # why: nothing in it, nothing decodable...
            return Text(f"No SMTP in this capture: {progress.problem}", style="yellow")
        if progress.finished:
            return Text(
                f"No SMTP in this capture: {plural(progress.packets, 'packet')} read, "
                f"none of them SMTP on ports {_ports(self.config.ports)}",
                style="yellow",
            )
        if self.source.waiting:
            return Text(self.source.waiting, style="dim")
        return Text("Waiting for SMTP…", style="dim")

    def _alert(self, verdict: Verdict) -> None:
        """A host just turned spambot: say so, ring if asked, run the alert command."""
        name = self.name_of(verdict.ip)
        who = f"{verdict.ip} ({name})" if name else verdict.ip
        self.last_alert = verdict.ip
        self.notify(
            f"{who} turned spambot (score {verdict.score})",
            severity="error",
            timeout=TOAST_SECONDS,
            markup=False,
        )
        if self.ring_bell:
            self.bell()
        if self.alert_exec:
            from smtptop.report import host_json

            host = self.model.hosts[verdict.ip]
            document = host_json(host, verdict, self.model.identities.get(verdict.ip))
            threading.Thread(
                target=self._run_alert,
                args=(json.dumps(document), self._alert_environment(verdict)),
                daemon=True,
            ).start()

    def _run_alert(self, document: str, environment: dict[str, str]) -> None:
        assert self.alert_exec is not None
        try:
            done = subprocess.run(
                self.alert_exec, shell=True, input=document, text=True, timeout=60,
                capture_output=True, check=False, env=environment,
            )  # fmt: skip
            failed = done.returncode != 0
        except (OSError, subprocess.TimeoutExpired):
            failed = True
        if failed:
            self.alerts_failed += 1

    @staticmethod
    def _alert_environment(verdict: Verdict) -> dict[str, str]:
        """What the alert command gets (the README lists it): a fixed PATH, the home of the
        user smtptop runs as (root has been given up), the locale and time zone, and the
        alert.  Nothing else of the environment smtptop was started with: it may hold
        secrets, and root's PATH or tmux socket have no business in an unprivileged command."""
        import os
        import pwd

        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:  # a uid without a passwd entry
            home = "/"
        environment = {"PATH": "/usr/bin:/bin", "HOME": home}
        environment |= {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ") if k in os.environ}
        return environment | {
            "SMTPTOP_IP": verdict.ip,
            "SMTPTOP_VERDICT": verdict.verdict,
            "SMTPTOP_SCORE": str(verdict.score),
        }

    def update_status(self) -> None:
        """The status bar, fitted to its width: what must never be missed (spambots, drops,
        errors, pause, filter, end of capture) stays; counters give way first; a warning is
        cut to the room left rather than dropped."""
        status = self.query_one("#status", Static)
        parts = self.status_parts()
        room = status.size.width or self.size.width

        warning = next((part for part in parts if part[1].plain.startswith("warning: ")), None)

        def fits() -> bool:
            return sum(text.cell_len + 2 for _, text in parts) <= room

        def drop(keep: object) -> None:
            """Drop the parts that give way first (never those of priority 0, nor ``keep``)
            until all fit."""
            while not fits():
                droppable = [part for part in parts if part[0] and part is not keep]
                if not droppable:
                    return
                parts.remove(max(droppable, key=lambda part: part[0]))

        drop(warning)
        if warning is not None and not fits():  # all else has given way: cut the warning
            others = sum(text.cell_len + 2 for _, text in parts if text is not warning[1])
            warning[1].truncate(max(CUT_STATUS, room - others - 2), overflow="ellipsis")
        drop(None)
        line = Text()
        for index, (_, text) in enumerate(parts):
            if index:
                line.append("  ")
            line.append_text(text)
        status.update(line)

    def status_parts(self) -> list[tuple[int, Text]]:
        """The status bar's pieces in order, each with how soon it gives way (0: never)."""
        progress, model = self.progress, self.model
        parts: list[tuple[int, Text]] = []
        spambots = sum(1 for v in self.verdicts.values() if v.verdict == "spambot")
        if spambots:
            parts.append((0, Text(plural(spambots, "spambot"), style="bold white on red")))
            if self.last_alert:
                parts.append((1, Text(f"latest {self.last_alert}", style="bold red")))
        if self.paused:
            parts.append((0, Text("PAUSED", style="reverse bold")))
        if self.filter_text:
            parts.append((0, Text(f"filter: {inert(self.filter_text)}", style="cyan")))
        drops = progress.dropped_events + progress.kernel_drops
        dropped = Text(f"drops {progress.dropped_events:,}", style="bold red" if drops else "")
        if progress.kernel_drops:
            dropped.append(f" +{progress.kernel_drops:,} kernel", style="bold red")
        parts.append((0, dropped))
        if progress.errors:
            log = self.error_log
            if log is None:
                where = ""
            elif log.problem:
                where = f" (not logged: {log.path}: {log.problem})"
            else:
                where = f" (see {log.path})"
            parts.append((0, Text(f"{plural(progress.errors, 'analysis error')}{where}",
                                  style="bold red")))  # fmt: skip
        if self.alerts_failed:
            parts.append((1, Text(f"{plural(self.alerts_failed, 'alert command')} failed",
                                  style="bold red")))  # fmt: skip
        if progress.finished:
            parts.append((0, Text("end of capture", style="bold")))
            if progress.problem:  # the toast goes; this stays
                problem = progress.problem
                for path in getattr(self.source, "paths", ()):  # its name says enough here
                    problem = problem.replace(path, os.path.basename(path))
                parts.append((1, Text("warning: " + problem, style="bold yellow")))
        elif progress.replay_span:
            at = min(progress.replay_at, progress.replay_span)
            parts.append((2, Text(f"replay {clock(at)} of {clock(progress.replay_span)}",
                                  style="cyan")))  # fmt: skip
        elif progress.bytes_total:
            parts.append((2, self._reading(progress)))
        parts.append((5, Text(self.source.label, style="bold")))
        hosts = Text(plural(len(model.hosts), "host"))
        if self._shown_hosts < len(model.hosts):
            hosts.append(f" ({self._shown_hosts:,} shown)")
        parts.append((3, hosts))
        sessions = Text(plural(model.sessions_total, "session"))
        if model.sessions_evicted:
            sessions.append(f" ({model.sessions_evicted:,} older summarised)", style="dim")
        parts.append((4, sessions))
        packets = f"{plural(progress.packets, 'pkt')} ({progress.smtp_packets:,} SMTP)"
        parts.append((6, Text(packets)))
        span = int(model.last_ts - model.first_ts) if model.first_ts else 0
        parts.append((7, Text(f"span {clock(span)}")))
        return parts

    def _reading(self, progress: Progress) -> Text:
        share = 100 * progress.bytes_done // progress.bytes_total
        self._speed.update(time.monotonic(), progress.packets, progress.bytes_done)
        text = Text(f"reading {share}%", style="cyan")
        if progress.bytes_unpacked > progress.bytes_done:  # compressed: where a bomb shows
            text.append(f" {size(progress.bytes_unpacked)} unpacked")
        rate = self._speed.packets_per_second()
        if rate:
            text.append(f" {rate:,.0f} pkt/s")
        eta = self._speed.eta(progress.bytes_total)
        if eta is not None:
            text.append(f" ETA {clock(eta)}")
        return text

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self.update_status)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool:
        """Sorting and filtering act on the host table: only where it is on screen."""
        return not (action in HOST_TABLE_ACTIONS and len(self.screen_stack) > 1)

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "hosts":
            self.push_screen(HostScreen(event.key))

    def on_keyed_table_header_selected(self, event: KeyedTable.HeaderSelected) -> None:
        if event.table.id == "hosts":
            if event.key == self.sort_column:
                self.action_reverse()
            else:
                self.set_sort(event.key)

    def action_sort(self, step: int) -> None:
        index = rows.SORTABLE.index(self.sort_column)
        self.set_sort(rows.SORTABLE[(index + step) % len(rows.SORTABLE)])

    def set_sort(self, column: str) -> None:
        self.sort_column = column
        self._mark_sorted()
        self.update_view()

    def _mark_sorted(self) -> None:
        table = self.query_one("#hosts", KeyedTable)
        arrow = "▲" if self.sort_reverse else "▼"
        for column in rows.HOST_COLUMNS:
            label = column.label + (arrow if column.key == self.sort_column else "")
            table.set_label(column.key, label)

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._mark_sorted()
        self.update_view()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.update_view()

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.add_class("shown")
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.value = ""
        field.remove_class("shown")
        self.filter_text = ""
        self.query_one("#hosts", KeyedTable).focus()
        self.update_view()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.update_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("shown")
        self.query_one("#hosts", KeyedTable).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for column in rows.HOST_COLUMNS:
            yield SystemCommand(
                f"Sort hosts by {column.label}",
                f"Order the host table by the {column.label!r} column",
                lambda key=column.key: self.set_sort(key),
            )
        yield SystemCommand("Reverse sort order", "Flip the host table", self.action_reverse)
        yield SystemCommand("Pause or resume display", "The capture goes on", self.action_pause)
        yield SystemCommand("Filter hosts", "By address or HELO name", self.action_filter)
        yield SystemCommand("Help", "Keys and colours", self.action_help)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the monitor; after a crash, say so in one line once the terminal is back
        (Rich would wrap it at the terminal's width).  Returns what :meth:`exit` was given,
        as Textual's own ``run`` does."""
        result = super().run(*args, **kwargs)
        if self.failure:
            print(f"smtptop: {self.failure}", file=sys.stderr)
        return result

    def _handle_exception(self, error: Exception) -> None:
        """Any crash ends the monitor with one line on stderr (see :meth:`run`) and exit
        status 1 (``return_code``), not Textual's screenful of traceback and locals; the
        traceback goes to the error log."""
        cause = error.error if isinstance(error, WorkerFailed) else error
        if isinstance(cause, MonitorFailed):
            self.failure = str(cause)
        else:
            self.failure = f"the monitor failed: {type(cause).__name__}: {cause}"
            if self.error_log is not None:
                self.error_log("".join(traceback.format_exception(cause)).rstrip())
                self.failure += f" (traceback in {self.error_log.path})"
        super()._handle_exception(error)  # exits, and keeps the error for tests' pilots
        self._exit_renderables.clear()

    async def action_quit(self) -> None:
        self.stop_capture()
        self.exit()

    def stop_capture(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()

    def on_unmount(self) -> None:
        self.stop_capture()
        if self.feeder is not None:
            self.feeder.join(timeout=2)
