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
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, RichLog, Static

from smtptop import identity
from smtptop.analyzer import EngineConfig, FlowEvent, FlowOpened, apply
from smtptop.detect import DetectConfig, Detector, Verdict
from smtptop.errorlog import ErrorLog
from smtptop.model import Model
from smtptop.source import Batch, Feeder, Progress, Source
from smtptop.speed import Speedometer, clock
from smtptop.tui import rows
from smtptop.tui.tables import KeyedTable

REFRESH_SECONDS = 1.0
FOLD_CHUNK = 200  # events folded (about 5 ms) before the event loop gets a turn
JUDGE_CHUNK = 100  # hosts judged (about 10 ms) before the event loop gets a turn
REJUDGE_REFRESHES = 20  # every host is judged again within this many refreshes (time windows)
TIMED_COLUMNS = frozenset({"rate"})  # sort keys that change with time alone
HOST_TABLE_ACTIONS = frozenset({"sort", "reverse", "filter", "clear_filter"})
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

The Verdict column says spambot, suspicious or normal with a score; Enter on a host shows
every reason behind it. The first time a host turns spambot, smtptop says so (with --bell
it rings; with --alert-exec it runs your command with the host's JSON on stdin).

Colours: a red host is a spambot, talks to more than 5 servers or has 3 or more rejected
sessions; yellow ones are suspicious or had a rejection or a temporary failure. In
transcripts, C: is the client, S: the server (2xx green, 4xx yellow, 5xx red), -- a note
from smtptop.
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
        self.ready = False  # set once mounted: the refresh timer may fire before that

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield RichLog(id="transcript", wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
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
        self.ready = False  # set once mounted: the refresh timer may fire before that

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield Static(id="reasons")
        yield KeyedTable(id="servers")
        yield KeyedTable(id="sessions")
        yield Footer()

    def on_mount(self) -> None:
        servers = self.query_one("#servers", KeyedTable)
        for label, width in (("Server", 16), ("Name", 28), ("Sess", 5), ("Rej", 5),
                             ("Temp", 5), ("Msgs", 5)):  # fmt: skip
            servers.add_column(label, width=width)
        sessions = self.query_one("#sessions", KeyedTable)
        for label, width in (("Start", 8), ("Server", 28), ("HELO", 16), ("MAIL FROM", 22),
                             ("Rcpt", 4), ("", 2), ("Outcome", 64)):  # fmt: skip
            sessions.add_column(label, width=width)
        sessions.focus()
        self.ready = True
        self.update_view()

    def update_view(self) -> None:
        app = self.app
        assert isinstance(app, MonitorApp)
        host = app.model.hosts.get(self.ip)
        if host is None:
            return
        name = app.name_of(host.ip)
        title = Text.assemble(
            (host.ip, rows.LEVEL_STYLE[rows.host_level(host)] or "bold"),
            f" {name}" if name else "",
            f"  {host.sessions} sessions to {host.destinations} servers, ",
            (f"{host.rejected_sessions} rejected", "bold red" if host.rejected_sessions else ""),
            f", {host.tempfailed_sessions} tempfailed, {host.accepted_messages} messages accepted",
        )
        verdict = app.verdicts.get(host.ip)
        self.query_one("#reasons", Static).update(rows.reasons_text(verdict, app.facts(host.ip)))
        servers = sorted(host.servers.values(), key=lambda s: (-s.rejected_sessions, -s.sessions))
        self.query_one("#servers", KeyedTable).show([(s.ip, rows.server_cells(s)) for s in servers])
        sessions = app.model.host_sessions(self.ip)
        if host.sessions_evicted or len(servers) < host.destinations:
            title.append(
                f"  showing {len(sessions):,} of {host.sessions:,} sessions; "
                f"{host.sessions_evicted:,} older summarised; "
                f"{len(servers):,} of {host.destinations:,} servers (the most recent)",
                style="dim",
            )
        self.query_one("#title", Static).update(title)
        self.query_one("#sessions", KeyedTable).show(
            [(str(s.id), rows.session_cells(s)) for s in sessions]
        )

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "sessions":
            self.app.push_screen(TranscriptScreen(int(event.key)))


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


class MonitorApp(App[None]):
    """smtptop's terminal UI."""

    TITLE = "smtptop"
    CSS = """
    #status { height: 1; background: $panel; padding: 0 1; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    #title { height: auto; padding: 0 1; background: $panel; }
    #reasons { height: auto; max-height: 14; padding: 0 1; }
    #servers { height: 1fr; max-height: 12; }
    #sessions { height: 2fr; }
    #help { width: 98; height: auto; border: round $accent; padding: 1 2; background: $surface; }
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

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield KeyedTable(id="hosts")
        yield Input(placeholder="filter hosts by address or HELO", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hosts", KeyedTable)
        for column in rows.HOST_COLUMNS:
            table.add_column(column.label, width=column.width, key=column.key)
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
            if batch.progress.finished:
                self.update_view()
                if batch.progress.problem:
                    self.notify(batch.progress.problem, severity="warning", markup=False)

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
        self._update_status()

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
        return [
            rows.HostRow(model.hosts[ip], self.verdicts.get(ip), self.name_of(ip), now)
            for ip in top
        ]

    def _update_hosts(self) -> None:
        shown = self.visible_rows()
        self._shown_hosts = len(shown)
        self.query_one("#hosts", KeyedTable).show([(r.host.ip, rows.host_cells(r)) for r in shown])

    def _alert(self, verdict: Verdict) -> None:
        """A host just turned spambot: say so, ring if asked, run the alert command."""
        name = self.name_of(verdict.ip)
        who = f"{verdict.ip} ({name})" if name else verdict.ip
        why = "; ".join(r.evidence for r in verdict.reasons if r.points)[:300]
        self.notify(
            f"{who} looks like a spambot (score {verdict.score}): {why}",
            title="spambot",
            severity="error",
            timeout=15,
            markup=False,
        )
        if self.ring_bell:
            self.bell()
        if self.alert_exec:
            from smtptop.report import host_json

            host = self.model.hosts[verdict.ip]
            document = host_json(host, verdict, self.model.identities.get(verdict.ip))
            threading.Thread(
                target=self._run_alert, args=(json.dumps(document),), daemon=True
            ).start()

    def _run_alert(self, document: str) -> None:
        assert self.alert_exec is not None
        try:
            done = subprocess.run(
                self.alert_exec, shell=True, input=document, text=True, timeout=60,
                capture_output=True, check=False,
            )  # fmt: skip
            failed = done.returncode != 0
        except (OSError, subprocess.TimeoutExpired):
            failed = True
        if failed:
            self.alerts_failed += 1

    def _update_status(self) -> None:
        progress, model = self.progress, self.model
        status = Text(self.source.label, style="bold")
        status.append(f"  {progress.packets} pkts ({progress.smtp_packets} SMTP)")
        status.append(f"  {model.sessions_total} sessions")
        if model.sessions_evicted:
            status.append(f" ({model.sessions_evicted:,} older summarised)", style="dim")
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
            where = f" (see {self.error_log.path})" if self.error_log else ""
            status.append(f"  {progress.errors} analysis errors{where}", style="bold red")
        spambots = sum(1 for v in self.verdicts.values() if v.verdict == "spambot")
        if spambots:
            status.append(f"  {spambots} spambot{'s' if spambots > 1 else ''}", style="bold red")
        if self.alerts_failed:
            status.append(f"  {self.alerts_failed} alert commands failed", style="bold red")
        if not progress.finished and progress.bytes_total:
            share = 100 * progress.bytes_done // progress.bytes_total
            self._speed.update(time.monotonic(), progress.packets, progress.bytes_done)
            status.append(f"  reading {share}%", style="cyan")
            rate = self._speed.packets_per_second()
            if rate:
                status.append(f" {rate:,.0f} pkt/s", style="cyan")
            eta = self._speed.eta(progress.bytes_total)
            if eta is not None:
                status.append(f" ETA {clock(eta)}", style="cyan")
        elif progress.finished:
            status.append("  end of capture", style="dim")
        if self.filter_text:
            status.append(f"  filter: {self.filter_text}", style="cyan")
        if self.paused:
            status.append("  PAUSED", style="reverse bold")
        self.query_one("#status", Static).update(status)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool:
        """Sorting and filtering act on the host table: only where it is on screen."""
        return not (action in HOST_TABLE_ACTIONS and len(self.screen_stack) > 1)

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "hosts":
            self.push_screen(HostScreen(event.key))

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
