"""The monitor: a top-like view of LAN hosts talking SMTP, with drill-down to raw sessions.

A :class:`~smtptop.source.Feeder` thread runs the engine on the source (or, for a live
capture with engine processes, a :class:`~smtptop.pipeline.ForkedFeeder` passes on theirs)
and hands batches of events to the app through ``loop.call_soon_threadsafe`` into a bounded
``asyncio.Queue``; a worker folds them into the model.  The screens redraw on a timer (about
once a second), touching only the cells that changed and keeping the cursor on its host when
rows re-sort.  The host table is the app's own screen; the drill-down, transcript and help
screens are in modules of their own and are handed a
:class:`~smtptop.tui.state.MonitorState` to show.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import Any, ClassVar

from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import WorkerFailed

from smtptop import wire
from smtptop.analyzer import EngineConfig
from smtptop.detect import DetectConfig, Detector, Verdict
from smtptop.errorlog import ErrorLog
from smtptop.evidence import (
    BUFFER_NOTE,
    Capture,
    EvidenceError,
    Prepared,
    ReadBack,
    Recorded,
    next_steps,
    prepare,
    write_bundle,
)
from smtptop.files import invoking_user
from smtptop.model import Model, apply
from smtptop.pipeline import EngineFailed, ForkedFeeder
from smtptop.progress import Speedometer, data_size, duration
from smtptop.ring import HostPackets
from smtptop.source import (
    FeedBatch,
    Feeder,
    Feeding,
    Parallel,
    Progress,
    Source,
    ZeekFeeder,
    ZeekSource,
)
from smtptop.text import inert, plural
from smtptop.tui import rows
from smtptop.tui.alert import alert_environment, run_alert
from smtptop.tui.help_screen import HelpScreen
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.rules_screen import RulesScreen
from smtptop.tui.state import MonitorState
from smtptop.tui.tables import KeyedTable
from smtptop.tui.transcript_screen import TranscriptScreen
from smtptop.wire import Row

REFRESH_SECONDS = 1.0
FOLD_CHUNK = 200  # events folded (about 5 ms) before the event loop gets a turn
JUDGE_CHUNK = 100  # hosts judged (about 10 ms) before the event loop gets a turn
REJUDGE_REFRESHES = 20  # every host is judged again within this many refreshes (time windows)
TIMED_COLUMNS = frozenset({"rate", "trend"})  # sort keys that change with time alone
HOST_TABLE_ACTIONS = frozenset({"sort", "reverse", "filter", "clear_filter"})
TOP_HOSTS = 200
TOAST_SECONDS = 4
CUT_STATUS = 20  # a warning in the status bar is cut to the room left, down to this
WARNING_SECONDS = 8  # a capture's problem: the status bar keeps it after the toast


def _ports(ports: Iterable[int]) -> str:
    return ",".join(map(str, sorted(ports)))


class MonitorFailed(Exception):
    """The capture thread failed; the message is the one line the monitor ends with."""


class MonitorApp(App[None]):
    """smtptop's terminal UI."""

    TITLE = "smtptop"
    failure = ""  # why the monitor crashed: the one line it ends with
    CSS_PATH: ClassVar[list[str | PurePath]] = ["common.tcss", "app.tcss"]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p", "pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("less_than_sign", "sort(-1)", "Sort ←"),
        Binding("greater_than_sign", "sort(1)", "Sort →"),
        Binding("r", "reverse", "Reverse"),
        Binding("e", "evidence", "Evidence", show=False),
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
        evidence_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.evidence_dir = evidence_dir  # where e writes bundles (None: the current folder)
        self.config = config or EngineConfig()
        self.model = Model(lan=lan, show_credentials=show_credentials)
        self.model.from_logs = source.from_logs
        self.detector = Detector(self.model, detect)
        self.verdicts: dict[str, Verdict] = {}
        self.state = MonitorState(
            self.model, self.verdicts, self.detector.config
        )  # what the screens are handed
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
        self.feeder: Feeding | None = None
        self._queue: asyncio.Queue[FeedBatch] = asyncio.Queue(maxsize=max_batches)
        self._shown_hosts = 0
        self._dirty: set[str] = set()  # hosts with events since they were last judged
        self._relays: frozenset[str] | None = None
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
        rows.add_columns(table, rows.HOST_COLUMNS)
        table.focus()
        self._mark_sorted()
        loop = asyncio.get_running_loop()
        queue = self._queue

        def deliver(batch: FeedBatch) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, batch)

        if isinstance(self.source, Parallel):  # its engines run in processes of their own
            self.feeder = ForkedFeeder(
                self.source, deliver, config=self.config, max_batches=self.max_batches
            )
        elif isinstance(self.source, ZeekSource):
            self.feeder = ZeekFeeder(
                self.source, deliver, config=self.config, max_batches=self.max_batches
            )
        else:
            self.feeder = Feeder(
                self.source, deliver, config=self.config, max_batches=self.max_batches
            )
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

    def _touch(self, rows: list[Row]) -> None:
        """Note the hosts these events change (before they are folded: a closing event
        takes its session out of the open ones)."""
        dirty, open_sessions = self._dirty, self.model.open
        for session_id, tag, values in rows:
            session = open_sessions.get(session_id) if session_id else None
            if session is not None:
                dirty.add(session.client_ip)
            elif tag == wire.OPENED:
                dirty.add(values[1][0])  # the client's (address, port)
            elif (tag == wire.SIGHTING or tag == wire.DNS_LOOKUP) and values[1]:
                dirty.add(values[1])  # the address sighted, or the client that asked

    # -- views ---------------------------------------------------------------------------

    def update_view(self) -> None:
        """Judge the hosts, alert on new spambots, redraw (unless paused) changed cells."""
        for _ in self._refresh_steps():
            pass

    def _refresh_later(self) -> None:
        """The timer's redraw: the same steps, giving the event loop a turn between them."""
        if not self._refreshing:
            self._refresh()

    @work(group="refresh")
    async def _refresh(self) -> None:
        """A worker that makes its coroutine when it runs: one that never runs (the timer
        fired as the app shut down) leaves no coroutine unawaited."""
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
        relays = frozenset(self.detector.smarthosts())
        if relays != self._relays:  # every direct-to-MX verdict depends on it
            self._relays = relays
            self._dirty.update(model.hosts)
        todo = [ip for ip in model.hosts if ip not in self.verdicts]
        todo += self._dirty
        self._dirty = set()
        todo += self._stale(len(model.hosts) // REJUDGE_REFRESHES + 1)
        for start in range(0, len(todo), JUDGE_CHUNK):
            self._judged(self.detector.judge_hosts(todo[start : start + JUDGE_CHUNK], now, relays))
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
        hosts, keys, name_of = self.model.hosts, self._keys, self.state.name_of
        for ip in ips:
            host = hosts.get(ip)
            if host is not None:
                keys[ip] = key(rows.HostRow(host, self.verdicts.get(ip), name_of(ip), now))

    def visible_rows(self) -> list[rows.HostRow]:
        """The hosts the table shows, in order: filtered, sorted, the top N (picked with a
        heap from the kept sort keys: sorting 10,000 hosts every second is too slow)."""
        model, keys, name_of = self.model, self._keys, self.state.name_of
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
                or needle in name_of(ip).lower()
                or any(needle in n.lower() for n in host.helos)
            ]
        pick = heapq.nlargest if self.sort_reverse else heapq.nsmallest
        top = pick(self.top, candidates, key=keys.__getitem__)
        when, policy = self.state.dated, self.state.policy
        return [
            rows.HostRow(model.hosts[ip], self.verdicts.get(ip), name_of(ip), now, when, policy)
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
        name = self.state.name_of(verdict.ip)
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
            from smtptop.render import host_json

            host = self.model.hosts[verdict.ip]
            document = host_json(host, verdict, self.model.identities.get(verdict.ip))
            run = self._run_alert(self.alert_exec, json.dumps(document), verdict)
            self.run_worker(run, name=f"alert {verdict.ip}", group="alert")

    async def _run_alert(self, command: str, document: str, verdict: Verdict) -> None:
        """Run the alert command as a worker on the app's loop, which is where the status
        bar reads the count of failed ones."""
        if not await run_alert(command, document, alert_environment(verdict)):
            self.alerts_failed += 1

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
        parts.extend(self._drops(progress))
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
            parts.append((2, Text(f"replay {duration(at)} of {duration(progress.replay_span)}",
                                  style="cyan")))  # fmt: skip
        elif progress.bytes_total:
            parts.append((2, self._reading(progress)))
        parts.append((5, Text(self.source.label, style="bold")))
        hosts = Text(plural(len(model.hosts), "host"))
        if self._shown_hosts < len(model.hosts):
            hosts.append(f" ({self._shown_hosts:,} shown)")
        parts.append((3, hosts))
        sessions = Text(plural(model.sessions_total, "session"))
        if model.sessions_not_kept:
            sessions.append(f" ({model.sessions_not_kept:,} older summarised)", style="dim")
        parts.append((4, sessions))
        if self.source.from_logs:
            parts.append((6, Text(plural(progress.log_records, "log record"))))
            if progress.log_problem:
                parts.append((1, Text(f"warning: {progress.log_problem}", style="bold yellow")))
        else:
            packets = f"{plural(progress.packets, 'pkt')} ({progress.smtp_packets:,} SMTP)"
            parts.append((6, Text(packets)))
        span = int(model.last_ts - model.first_ts) if model.first_ts else 0
        parts.append((7, Text(f"span {duration(span)}")))
        return parts

    @staticmethod
    def _drops(progress: Progress) -> list[tuple[int, Text]]:
        """What was lost: the batches the monitor could not keep up with, and the kernel's
        drops, added to them (``drops 0 +12 kernel``) or, with several interfaces, each
        one's own after them (``drops 0  eth1 kernel drops 0  eth2 kernel drops 12``); an
        interface that lost nothing gives way when the line is short of room."""
        own = progress.dropped_events
        if not progress.source_drops:
            lost = own + progress.kernel_drops
            dropped = Text(f"drops {own:,}", style="bold red" if lost else "")
            if progress.kernel_drops:
                dropped.append(f" +{progress.kernel_drops:,} kernel", style="bold red")
            return [(0, dropped)]
        parts = [(0, Text(f"drops {own:,}", style="bold red" if own else ""))]
        for name, count in progress.source_drops:
            text = f"{inert(name)} kernel drops {count:,}"
            parts.append((0, Text(text, style="bold red")) if count else (1, Text(text)))
        return parts

    def _reading(self, progress: Progress) -> Text:
        share = 100 * progress.bytes_done // progress.bytes_total
        self._speed.update(time.monotonic(), progress.packets, progress.bytes_done)
        text = Text(f"reading {share}%", style="cyan")
        if progress.bytes_unpacked > progress.bytes_done:  # compressed: where a bomb shows
            text.append(f" {data_size(progress.bytes_unpacked)} unpacked")
        rate = self._speed.packets_per_second()
        if rate:
            text.append(f" {rate:,.0f} pkt/s")
        eta = self._speed.eta(progress.bytes_total)
        if eta is not None:
            text.append(f" ETA {duration(eta)}")
        return text

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self.update_status)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool:
        """Sorting and filtering act on the host table: only where it is on screen."""
        return not (action in HOST_TABLE_ACTIONS and len(self.screen_stack) > 1)

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        if event.table.id == "hosts":
            self.push_screen(HostScreen(self.state, event.key))

    def on_host_screen_contain(self, message: HostScreen.Contain) -> None:
        self.push_screen(RulesScreen(message.ip, next_steps(self.detector, message.ip)))

    def on_host_screen_evidence(self, message: HostScreen.Evidence) -> None:
        self.write_evidence(message.ip)

    def action_evidence(self) -> None:
        ip = self.query_one("#hosts", KeyedTable).cursor_key()
        if ip is not None:
            self.write_evidence(ip)

    def write_evidence(self, ip: str) -> None:
        """The host's evidence bundle, in a new folder: its texts made here, from the live
        model; its packets, in a thread so the screen goes on, read back from the capture
        files (a replay, or the -w file) or taken from the engine's evidence ring."""
        paths = self.source.recorded()
        ring = self.config.evidence_buffer and self.feeder is not None
        if self.source.from_logs:
            self.notify("Zeek's logs hold no packets: no evidence bundle (c gives the rules)",
                        severity="warning", timeout=WARNING_SECONDS)  # fmt: skip
            return
        if not paths and not ring:
            self.notify("evidence needs the packets: capture with -w FILE, or replay a file",
                        severity="warning", timeout=WARNING_SECONDS)  # fmt: skip
            return
        notes = [] if paths else [BUFFER_NOTE]
        capture = Capture(paths, f"smtptop monitor, {self.source.label}", notes)
        texts = prepare(self.model, self.detector, self.verdicts, capture, [ip])
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"smtptop-evidence-{ip.replace(':', '-')}-{stamp}"
        base = folder = os.path.abspath(os.path.join(self.evidence_dir or os.curdir, name))
        for number in itertools.count(2):  # twice in a second: a folder of its own
            if not os.path.lexists(folder):
                break
            folder = f"{base}-{number}"
        self._write_bundle(texts, paths, folder)

    @work(thread=True, group="evidence")
    def _write_bundle(self, texts: list[Prepared], paths: list[str], folder: str) -> None:
        ip = texts[0].ip
        try:
            recorded: Recorded
            if paths:
                recorded = ReadBack(paths, frozenset(self.config.ports), self.config.mirrors)
            else:
                assert self.feeder is not None
                recorded = {ip: self.feeder.host_packets(ip) or HostPackets()}
            write_bundle(texts, folder, recorded, owner=invoking_user())
        except (EvidenceError, EngineFailed) as exc:
            self.call_from_thread(self.notify, f"evidence for {ip}: {exc}", severity="error",
                                  markup=False, timeout=WARNING_SECONDS)  # fmt: skip
            return
        self.call_from_thread(self.notify, f"evidence for {ip} in {folder}",
                              markup=False, timeout=WARNING_SECONDS)  # fmt: skip

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
            self.push_screen(HelpScreen(self.detector.config))

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
