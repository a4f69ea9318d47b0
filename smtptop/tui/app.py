"""The monitor: a top-like view of LAN hosts talking SMTP, with drill-down to raw sessions.

A :class:`~smtptop.source.Feeder` thread runs the engine on the source and hands batches of
events to the app through ``loop.call_soon_threadsafe`` into a bounded ``asyncio.Queue``; a
worker folds them into the model.  The screens redraw on a timer (about once a second),
touching only the cells that changed and keeping the cursor on its host when rows re-sort.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, RichLog, Static

from smtptop.analyzer import EngineConfig, apply
from smtptop.model import Host, Model
from smtptop.source import Batch, Feeder, Progress, Source
from smtptop.tui import rows
from smtptop.tui.tables import KeyedTable

REFRESH_SECONDS = 1.0
TOP_HOSTS = 200

HELP = """\
smtptop shows every host that talks SMTP, busiest talkers to the most servers first.

  Enter      drill down: a host's servers and sessions; on a session, its transcript
  Esc        back
  < >        sort by the previous / next column
  r          reverse the sort order
  /          filter hosts by address or HELO name (Esc clears)
  p          pause the display (the capture goes on)
  ctrl+p     command palette (every action is there)
  ?          this help
  q          quit

Colours: a red host talks to more than 5 servers or has 3 or more rejected sessions;
yellow ones had a rejection or a temporary failure. In transcripts, C: is the client,
S: the server (2xx green, 4xx yellow, 5xx red), -- a note from smtptop.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP), id="help")


class TranscriptScreen(Screen[None]):
    """The raw exchange of one session, growing while the session is still going."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, session_id: int) -> None:
        super().__init__()
        self.session_id = session_id
        self._written = 0

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield RichLog(id="transcript", wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        app = self.app
        assert isinstance(app, MonitorApp)
        session = app.model.session(self.session_id)
        if session is None:
            return
        title = Text.assemble(
            (f"{session.client} → {session.server}", "bold"),
            f"  {session.banner}  HELO {session.helo or '-'}  ",
            rows.session_outcome(session),
        )
        if session.tls:
            title.append("  TLS", style="cyan")
        if session.partial:
            title.append("  partial capture", style="magenta")
        self.query_one("#title", Static).update(title)
        log = self.query_one("#transcript", RichLog)
        for line in session.transcript[self._written :]:
            log.write(rows.transcript_line(line))
        self._written = len(session.transcript)
        if session.closed and session.transcript_dropped:
            log.write(Text(f"({session.transcript_dropped} more lines not kept)", style="dim"))
            self._written += session.transcript_dropped


class HostScreen(Screen[None]):
    """One host: the servers it talked to and its sessions."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, ip: str) -> None:
        super().__init__()
        self.ip = ip

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield KeyedTable(id="servers", cursor_type="row")
        yield KeyedTable(id="sessions", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        servers = self.query_one("#servers", KeyedTable)
        for label, width in (("Server", 16), ("Name", 28), ("Sess", 5), ("Rej", 5),
                             ("Temp", 5), ("Msgs", 5)):  # fmt: skip
            servers.add_column(label, width=width)
        sessions = self.query_one("#sessions", KeyedTable)
        for label, width in (("Start", 8), ("Server", 32), ("HELO", 18), ("MAIL FROM", 24),
                             ("Rcpt", 4), ("", 2), ("Outcome", 72)):  # fmt: skip
            sessions.add_column(label, width=width)
        sessions.focus()
        self.update_view()

    def update_view(self) -> None:
        app = self.app
        assert isinstance(app, MonitorApp)
        host = app.model.hosts.get(self.ip)
        if host is None:
            return
        title = Text.assemble(
            (host.ip, rows.LEVEL_STYLE[rows.host_level(host)] or "bold"),
            f"  {host.sessions} sessions to {host.destinations} servers, ",
            (f"{host.rejected_sessions} rejected", "bold red" if host.rejected_sessions else ""),
            f", {host.tempfailed_sessions} tempfailed, {host.accepted_messages} messages accepted",
        )
        self.query_one("#title", Static).update(title)
        servers = sorted(host.servers.values(), key=lambda s: (-s.rejected_sessions, -s.sessions))
        self.query_one("#servers", KeyedTable).show([(s.ip, rows.server_cells(s)) for s in servers])
        sessions = [s for s in app.model.sessions() if s.client_ip == self.ip]
        sessions.sort(key=lambda s: (s.start, s.id))
        self.query_one("#sessions", KeyedTable).show(
            [(str(s.id), rows.session_cells(s)) for s in sessions]
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "sessions" and event.row_key.value is not None:
            self.app.push_screen(TranscriptScreen(int(event.row_key.value)))


class MonitorApp(App[None]):
    """smtptop's terminal UI."""

    TITLE = "smtptop"
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    #title { height: auto; padding: 0 1; background: $panel; }
    #servers { height: 1fr; max-height: 12; }
    #sessions { height: 2fr; }
    #help { width: 84; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    HelpScreen { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
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
    ) -> None:
        super().__init__()
        self.source = source
        self.config = config or EngineConfig()
        self.model = Model(lan=lan, show_credentials=show_credentials)
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

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield KeyedTable(id="hosts", cursor_type="row")
        yield Input(placeholder="filter hosts by address or HELO", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hosts", KeyedTable)
        for column in rows.HOST_COLUMNS:
            table.add_column(column.label, width=column.width, key=column.key)
        table.focus()
        loop = asyncio.get_running_loop()
        queue = self._queue

        def deliver(batch: Batch) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, batch)

        self.feeder = Feeder(self.source, deliver, config=self.config, max_batches=self.max_batches)
        self.feeder.start()
        self.run_worker(self._drain(), exclusive=True, name="drain")
        self.set_interval(self.refresh_seconds, self.update_view)
        self.update_view()

    async def _drain(self) -> None:
        """Fold batches from the capture thread into the model."""
        while True:
            batch = await self._queue.get()
            apply(self.model, batch.events)
            if self.feeder is not None:
                self.feeder.release()
            self.progress = batch.progress
            if batch.progress.finished:
                self.update_view()
                if batch.progress.problem:
                    self.notify(batch.progress.problem, severity="warning", markup=False)

    # -- views ---------------------------------------------------------------------------

    def update_view(self) -> None:
        """Redraw what is on screen (unless paused): only changed cells."""
        if not self.paused:
            screen = self.screen
            if isinstance(screen, HostScreen | TranscriptScreen):
                screen.update_view()
            self._update_hosts()
        self._update_status()

    def visible_hosts(self) -> list[Host]:
        """The hosts the table shows, in order: filtered, sorted, the top N."""
        now = self.model.last_ts
        hosts: Iterable[Host] = self.model.hosts.values()
        needle = self.filter_text.lower()
        if needle:
            hosts = [
                h for h in hosts if needle in h.ip or any(needle in n.lower() for n in h.helos)
            ]
        ordered = sorted(hosts, key=rows.sort_key(self.sort_column, now))
        if self.sort_reverse:
            ordered.reverse()
        return ordered[: self.top]

    def _update_hosts(self) -> None:
        now = self.model.last_ts
        hosts = self.visible_hosts()
        self._shown_hosts = len(hosts)
        self.query_one("#hosts", KeyedTable).show([(h.ip, rows.host_cells(h, now)) for h in hosts])

    def _update_status(self) -> None:
        progress, model = self.progress, self.model
        status = Text(self.source.label, style="bold")
        status.append(f"  {progress.packets} pkts ({progress.smtp_packets} SMTP)")
        status.append(f"  {model.sessions_total} sessions")
        status.append(f"  {len(model.hosts)} hosts")
        if self._shown_hosts < len(model.hosts):
            status.append(f" (showing {self._shown_hosts})")
        drops = progress.dropped_events + progress.kernel_drops
        status.append(f"  drops {progress.dropped_events}", style="bold red" if drops else "")
        if progress.kernel_drops:
            status.append(f" +{progress.kernel_drops} kernel", style="bold red")
        span = int(model.last_ts - model.first_ts) if model.first_ts else 0
        status.append(f"  span {span // 3600:d}:{span // 60 % 60:02d}:{span % 60:02d}")
        if progress.errors:
            status.append(f"  {progress.errors} analysis errors", style="bold red")
        if not progress.finished and progress.bytes_total:
            share = 100 * progress.bytes_done // progress.bytes_total
            status.append(f"  reading {share}%", style="cyan")
        elif progress.finished:
            status.append("  end of capture", style="dim")
        if self.filter_text:
            status.append(f"  filter: {self.filter_text}", style="cyan")
        if self.paused:
            status.append("  PAUSED", style="reverse bold")
        self.query_one("#status", Static).update(status)

    # -- actions -------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "hosts" and event.row_key.value is not None:
            self.push_screen(HostScreen(event.row_key.value))

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
            table.columns[column.key].label = Text(label)  # type: ignore[index]
        table.refresh()

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
