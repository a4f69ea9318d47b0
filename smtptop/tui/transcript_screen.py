"""One session's raw exchange, as the drill-down opens it."""

from __future__ import annotations

import re
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static

from smtptop.model import TranscriptLine
from smtptop.text import plural
from smtptop.tui import rows
from smtptop.tui.state import LOGS_TRANSCRIPT, MonitorState

MATCH_STYLE = {False: "bold black on yellow", True: "bold black on bright_cyan"}  # current?


class TranscriptScreen(Screen[None]):
    """The raw exchange of one session, growing while the session is still going; ``/``
    searches it and ``n``/``N`` step through the matches."""

    CSS_PATH = "common.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match(1)", "Next"),
        Binding("N", "next_match(-1)", "Previous"),
    ]

    def __init__(self, state: MonitorState, session_id: int) -> None:
        super().__init__()
        self.state = state
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
        session = self.state.model.session(self.session_id)
        if session is None:
            return
        log = self.query_one("#transcript", RichLog)
        when = self.state.dated
        if not log.lines and self.state.model.from_logs:
            log.write(Text(LOGS_TRANSCRIPT, style="yellow"))
        for line in session.transcript[self._written :]:
            self._write(log, line, when)
        self._written = len(session.transcript)
        if session.closed and session.transcript_lines_not_kept:
            log.write(Text(f"({plural(session.transcript_lines_not_kept, 'more line')} not kept)",
                           style="dim"))  # fmt: skip
            self._written += session.transcript_lines_not_kept
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
