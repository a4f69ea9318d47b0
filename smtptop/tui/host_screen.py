"""One host's drill-down: its verdict, the servers it talked to and its sessions."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Sparkline, Static

from smtptop.detect import attention
from smtptop.model import Session
from smtptop.text import inert, plural
from smtptop.tui import rows
from smtptop.tui.state import MonitorState
from smtptop.tui.tables import KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen

SESSION_ROWS = 2000  # rows of the drill-down's session table; o, / and a server narrow it
TALL = 36  # screen rows from which the timeline's bars take three lines, not one
DRILL_TABLES = {"servers": rows.SERVER_COLUMNS, "sessions": rows.SESSION_COLUMNS}


class HostScreen(Screen[None]):
    """One host: the verdict, the servers it talked to and its sessions.  Each table sorts
    and filters on its own; ``o`` picks the kind of sessions shown, Enter on a server shows
    only its sessions."""

    CSS_PATH: ClassVar[list[str | PurePath]] = ["common.tcss", "host_screen.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("less_than_sign", "sort(-1)", "Sort ←", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort →", show=False),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("o", "kind", "Only…"),
        Binding("v", "reasons", "Reasons"),
        Binding("c", "contain", "Contain", show=False),
        Binding("e", "evidence", "Evidence", show=False),
    ]

    class Evidence(Message):
        """The user asked for this host's evidence bundle (the app writes it)."""

        def __init__(self, ip: str) -> None:
            super().__init__()
            self.ip = ip

    class Contain(Message):
        """The user asked how to contain this host (the app, which has the detector, answers)."""

        def __init__(self, ip: str) -> None:
            super().__init__()
            self.ip = ip

    def __init__(self, state: MonitorState, ip: str) -> None:
        super().__init__()
        self.state = state
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
        with Vertical(id="timeline"):
            yield Static(id="timeline-caption")
            with Horizontal(classes="timeline-row"):
                yield Static("sessions", classes="timeline-label")
                yield Sparkline([], id="timeline-sessions")
            with Horizontal(classes="timeline-row"):
                yield Static("rejected", classes="timeline-label")
                yield Sparkline([], id="timeline-rejected")
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
            rows.add_columns(self.query_one(f"#{table_id}", KeyedTable), columns)
            self._mark_sorted(table_id)
        sessions = self.query_one("#sessions", KeyedTable)
        sessions.focus()
        self.ready = True
        self.update_view()

    def update_view(self) -> None:
        state = self.state
        host = state.model.hosts.get(self.ip)
        if host is None:
            return
        name = state.name_of(host.ip)
        title = Text.assemble(
            (host.ip, rows.LEVEL_STYLE[attention(host, None, state.policy)] or "bold"),
            f" {name}" if name else "",
            f"  {plural(host.sessions, 'session')} to {plural(host.destinations, 'server')}, ",
            (f"{host.rejected_sessions:,} rejected", "bold red" if host.rejected_sessions else ""),
            f", {host.tempfailed_sessions:,} tempfailed, "
            f"{plural(host.accepted_messages, 'message')} accepted",
        )
        if state.model.from_logs:
            title.append("  from Zeek's logs: last replies only (v: more)", style="yellow")
        verdict = state.verdicts.get(host.ip)
        self.query_one("#verdict", Static).update(rows.verdict_line(verdict, state.model.last_ts))
        reasons = self.query_one("#reasons", Static)
        reasons.display = self.expanded
        for hidden in ("#servers", "#timeline"):  # room for the reasons
            self.query_one(hidden).display = not self.expanded
        if self.expanded:
            reasons.update(rows.reasons_text(verdict, state.facts(host.ip)))
        else:
            self._draw_chart(
                rows.chart(host, state.model.first_ts, state.model.last_ts, state.dated)
            )
        needle = self.needle.lower()
        servers = [s for s in host.servers.values() if not needle or _matches(needle, s.ip, s.name)]
        self._order("servers", servers)
        self.query_one("#servers", KeyedTable).show([(s.ip, rows.server_cells(s)) for s in servers])
        kept = state.model.host_sessions(self.ip)
        if host.sessions_not_kept or len(host.servers) < host.destinations:
            title.append(
                f"  showing {len(kept):,} of {plural(host.sessions, 'session')}; "
                f"{host.sessions_not_kept:,} older summarised; "
                f"{len(host.servers):,} of {plural(host.destinations, 'server')} listed",
                style="dim",
            )
        self.query_one("#title", Static).update(title)
        when = state.dated
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

    def _draw_chart(self, chart: rows.Chart) -> None:
        """Textual's sparklines redraw only when their data changed."""
        self.query_one("#timeline-caption", Static).update(chart.caption)
        self.query_one("#timeline-sessions", Sparkline).data = chart.sessions
        self.query_one("#timeline-rejected", Sparkline).data = chart.rejected

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height >= TALL, "-tall")

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

    def action_contain(self) -> None:
        self.post_message(self.Contain(self.ip))

    def action_evidence(self) -> None:
        self.post_message(self.Evidence(self.ip))

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
            self.app.push_screen(TranscriptScreen(self.state, int(event.key)))
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
