"""What the monitor's tables show: columns, cells, sort orders, colours.

Every cell is a Rich ``Text`` built from strings that the model already made inert with
``wire_text``; nothing here is ever parsed as markup.
"""

from __future__ import annotations

import io
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rich.color import Color
from rich.console import Console, JustifyMethod
from rich.text import Text
from textual.renderables.sparkline import Sparkline

from smtptop.detect import VERDICT_ORDER, Attention, DetectConfig, Rating, Verdict, attention
from smtptop.model import Host, ServerStats, Session, SmtpReply, TranscriptLine, rank
from smtptop.progress import elapsed

if TYPE_CHECKING:
    from smtptop.tui.tables import KeyedTable

DEFAULT_POLICY = DetectConfig()
TREND_MINUTES = 30  # the host table's sparkline
CHART_BINS = 240  # the drill-down's timeline: at most four hours at a minute a bin
TREND_WIDTH = 15
TREND_LOW, TREND_HIGH = Color.from_rgb(88, 88, 88), Color.from_rgb(255, 175, 0)
_SPARK_CONSOLE = Console(file=io.StringIO(), width=TREND_WIDTH, color_system="truecolor")


@dataclass(frozen=True, slots=True)
class HostRow:
    """Everything one row of the host table is made from."""

    host: Host
    verdict: Verdict | None
    name: str
    now: float
    dated: bool = False  # the capture spans more than a day: times carry their date
    policy: DetectConfig = DEFAULT_POLICY  # what makes a row red or yellow

    @property
    def score(self) -> int:
        return self.verdict.score if self.verdict else 0

    @property
    def order(self) -> int:
        return VERDICT_ORDER[self.verdict.verdict if self.verdict else Rating.UNJUDGED]

    @property
    def trend(self) -> tuple[int, ...]:
        """Sessions per bin over the last ``TREND_MINUTES`` (a minute a bin, unless the
        host's timeline has widened its bins)."""
        minute = int(self.now // 60)
        start = minute - TREND_MINUTES + 1
        return tuple(self.host.timeline.window(start, minute + 1, TREND_MINUTES)[1])


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """What a column of a table shows, and how it gives way on a narrow screen (the table
    lays it out as a :class:`~smtptop.tui.tables.ColumnLayout`): lowest ``priority`` shown
    first; only ``cut`` columns are ever cut; ``grow`` is a share of the free width."""

    key: str
    label: str
    width: int
    value: Callable[[Any], Any]  # the value shown (hosts), or the sort key (drill-down)
    numeric: bool = True
    priority: int = 0
    cut: bool = False
    grow: int = 0
    pinned: bool = False


def add_columns(table: KeyedTable, specs: tuple[ColumnSpec, ...]) -> None:
    """Give ``table`` these columns, in order."""
    for spec in specs:
        table.add_column(
            spec.label,
            width=spec.width,
            key=spec.key,
            priority=spec.priority,
            cut=spec.cut,
            grow=spec.grow,
            pinned=spec.pinned,
        )


def _helo(host: Host) -> str:
    if not host.helos:
        return ""
    names = sorted(host.helos, key=lambda n: -host.helos[n])
    return names[0] + (f" (+{len(names) - 1})" if len(names) > 1 else "")


def _verdict(row: HostRow) -> str:
    verdict = row.verdict
    if verdict is None or not verdict.verdict:
        return ""
    quiet = verdict.quiet_for(row.now)
    return f"{verdict.verdict} {verdict.score}" + (f" quiet {elapsed(quiet)}" if quiet else "")


# At 80 columns: host, verdict, sessions, destinations, rejected, tempfailed and a name.
HOST_COLUMNS = (
    ColumnSpec("host", "Host", 13, lambda r: r.host.ip, numeric=False, priority=0, pinned=True),
    ColumnSpec("name", "Name", 12, lambda r: r.name, numeric=False, priority=6, cut=True, grow=2),
    ColumnSpec("verdict", "Verdict", 7, _verdict, numeric=False, priority=1),
    ColumnSpec("sessions", "Sess", 4, lambda r: r.host.sessions, priority=2),
    ColumnSpec("destinations", "Dest", 4, lambda r: r.host.destinations, priority=3),
    ColumnSpec("rejected", "Rej", 3, lambda r: r.host.rejected_sessions, priority=4),
    ColumnSpec("tempfailed", "Temp", 4, lambda r: r.host.tempfailed_sessions, priority=5),
    ColumnSpec("accepted", "Msgs", 4, lambda r: r.host.accepted_messages, priority=7),
    ColumnSpec("recipients", "Rcpt", 4, lambda r: r.host.recipients, priority=8),
    ColumnSpec("rate", "S/min", 5, lambda r: r.host.sessions_per_minute(r.now), priority=10),
    ColumnSpec("last", "Last seen", 8, lambda r: r.host.last_seen, priority=9),
    ColumnSpec("trend", "Last 30 min", TREND_WIDTH, lambda r: sum(r.trend), priority=12),
    ColumnSpec(
        "helo", "HELO", 10, lambda r: _helo(r.host), numeric=False, priority=11, cut=True, grow=3
    ),
)
SORTABLE = tuple(c.key for c in HOST_COLUMNS)
DEFAULT_SORT = "verdict"


LEVEL_STYLE = {Attention.ALERT: "bold red", Attention.WARN: "yellow", Attention.NONE: ""}
VERDICT_STYLE = {"spambot": "bold white on red", "suspicious": "bold yellow", "normal": "green"}


def stamp(ts: float, dated: bool = False) -> str:
    """A capture time as local wall time, with the date when the capture spans days (a
    timestamp no calendar can show, from a hostile file, shows as ``?``)."""
    if not ts:
        return ""
    try:
        return time.strftime("%b %d %H:%M:%S" if dated else "%H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):
        return "?"


def host_cells(row: HostRow) -> tuple[Text, ...]:
    """The row of one host, styled by how abnormal it looks."""
    host = row.host
    style = LEVEL_STYLE[attention(host, row.verdict, row.policy)]
    cells = []
    for column in HOST_COLUMNS:
        if column.key == "trend":  # its value, the sessions it draws, is for sorting
            cells.append(sparkline(row.trend))
            continue
        value = column.value(row)
        if column.key == "last":
            text = stamp(float(value), row.dated)
        elif column.key == "rate":
            text = f"{value:g}"
        else:
            text = str(value)
        justify: JustifyMethod = "right" if column.numeric and column.key != "last" else "left"
        cell_style = style if column.key in ("host", "destinations", "rejected") else ""
        if column.key == "tempfailed" and host.tempfailed_sessions:
            cell_style = "yellow"
        elif column.key == "verdict" and row.verdict:
            cell_style = VERDICT_STYLE.get(row.verdict.verdict, "")
        cells.append(Text(text, style=cell_style, justify=justify, no_wrap=True))
    return tuple(cells)


@lru_cache(maxsize=4096)
def _sparkline(data: tuple[int, ...]) -> Text:
    console = _SPARK_CONSOLE
    line = Sparkline(data, width=TREND_WIDTH, min_color=TREND_LOW, max_color=TREND_HIGH)
    text = Text(no_wrap=True)
    for segment in console.render(line, console.options.update_width(TREND_WIDTH)):
        text.append(segment.text, segment.style)
    return text


def sparkline(data: tuple[int, ...]) -> Text:
    """Textual's sparkline of ``data`` as a cell (made once per shape: most hosts share a
    few, a quiet host's is flat)."""
    return _sparkline(data).copy()


def sort_key(column: str) -> Callable[[HostRow], tuple[object, ...]]:
    """Largest numbers first, text in order, spambots first; ties in the default order."""
    getter = next(c for c in HOST_COLUMNS if c.key == column)
    if column == "host":
        return lambda r: (ipaddress.ip_address(r.host.ip).packed, *rank(r.host))
    if column == "verdict":
        return lambda r: (r.order, -r.score, *rank(r.host))
    if getter.numeric:
        return lambda r: (-getter.value(r), *rank(r.host))
    return lambda r: (str(getter.value(r)), *rank(r.host))


def verdict_line(verdict: Verdict | None, now: float) -> Text:
    """The verdict in one line: word, score, how long a flagged host has been quiet, and
    the signals that scored (the drill-down shows this until the reasons are expanded)."""
    text = Text()
    if verdict is None or not verdict.verdict:
        return text
    text.append(f" {verdict.verdict} ", style=VERDICT_STYLE.get(verdict.verdict, "bold"))
    text.append(f" score {verdict.score}")
    quiet = verdict.quiet_for(now)
    if quiet is not None:
        text.append(f"  quiet for {elapsed(quiet)}", style="bold green")
        text.append(" (no SMTP to foreign MX since then)")
    scored = [r for r in verdict.reasons if r.points]
    if scored:
        text.append(": ")
        text.append(", ".join(f"{r.signal} +{r.points}" for r in scored), style="cyan")
    return text


@dataclass(frozen=True, slots=True)
class Chart:
    """A host's sessions and rejected sessions per bin over the whole capture."""

    sessions: list[int]
    rejected: list[int]
    caption: Text


def chart(host: Host, first_ts: float, last_ts: float, dated: bool) -> Chart:
    """The drill-down's timeline: bins from the capture's first minute to its last, a
    minute each unless that takes more than ``CHART_BINS``."""
    start, stop = int(first_ts // 60), int(last_ts // 60) + 1
    width, sessions, rejected = host.timeline.window(start, stop, CHART_BINS)
    per = "per minute" if width == 1 else f"per {width} minutes"
    caption = Text(" Timeline ", style="bold")
    caption.append(f"{stamp(first_ts, dated)} → {stamp(last_ts, dated)}")
    caption.append(f" ({elapsed(last_ts - first_ts)})", style="dim")
    caption.append(f", {per}: peak {max(sessions, default=0):,} sessions, ")
    caption.append(
        f"{max(rejected, default=0):,} rejected", style="bold red" if any(rejected) else ""
    )
    return Chart(sessions, rejected, caption)


def reasons_text(verdict: Verdict | None, facts: list[tuple[str, str]]) -> Text:
    """The drill-down's expanded panel: every reason with its points, who the host is."""
    text = Text()
    if verdict is not None and verdict.verdict:
        for reason in verdict.reasons:
            text.append(f"  +{reason.points:<3d}", style="bold")
            text.append(f"{reason.signal:<18}", style="cyan")
            text.append(reason.evidence + "\n")
    for label, value in facts:
        if value:
            text.append(f"  {label}: ", style="dim")
            text.append(value + "\n")
    text.rstrip()
    return text


def _address_order(ip: str) -> bytes:
    try:
        return ipaddress.ip_address(ip).packed
    except ValueError:
        return ip.encode()


# Drill-down tables: ``value`` is what a column sorts by, in its natural order.
SERVER_COLUMNS = (
    ColumnSpec("server", "Server", 9, lambda s: _address_order(s.ip), numeric=False, pinned=True),
    ColumnSpec(
        "name", "Name", 12, lambda s: s.name.lower(), numeric=False, priority=5, cut=True, grow=1
    ),
    ColumnSpec("sessions", "Sess", 4, lambda s: -s.sessions, priority=1),
    ColumnSpec("rejected", "Rej", 3, lambda s: -s.rejected_sessions, priority=2),
    ColumnSpec("tempfailed", "Temp", 4, lambda s: -s.tempfailed_sessions, priority=3),
    ColumnSpec("accepted", "Msgs", 4, lambda s: -s.accepted_messages, priority=4),
)
SERVER_SORT = "rejected"


def server_cells(stats: ServerStats) -> tuple[Text, ...]:
    rejected_style = "bold red" if stats.rejected_sessions else ""
    return (
        Text(stats.ip, no_wrap=True),
        Text(stats.name, no_wrap=True),
        Text(str(stats.sessions), justify="right"),
        Text(str(stats.rejected_sessions), style=rejected_style, justify="right"),
        Text(str(stats.tempfailed_sessions), justify="right"),
        Text(str(stats.accepted_messages), justify="right"),
    )


OUTCOME_STYLE = {
    "rejected": "bold red",
    "tempfailed": "yellow",
    "accepted": "green",
    "tls": "cyan",
    "not-smtp": "magenta",
    "no-mail": "dim",
}
OUTCOME_ORDER = {outcome: rank for rank, outcome in enumerate(OUTCOME_STYLE)}


def reply_summary(reply: SmtpReply | None) -> str:
    if reply is None:
        return ""
    first = reply.text.split("\n", 1)[0]
    return f"{reply.code} {first}".strip()


def session_outcome(session: Session) -> Text:
    """Outcome word, then the reply that decided it: the refusal, the acceptance of the
    last message, or else the last reply."""
    accepted = [r for r in session.replies if r.stage in ("end of data", "BDAT") and r.code < 300]
    reply = session.outcome_reply or (accepted[-1] if accepted else None)
    if reply is None and session.replies:
        reply = session.replies[-1]
    word = session.outcome if session.closed else f"{session.outcome}…"
    text = Text(word, style=OUTCOME_STYLE.get(session.outcome, ""))
    summary = reply_summary(reply)
    if summary:
        text.append(" " + summary)
    return text


def _flags(session: Session) -> str:
    return "".join(flag for flag, on in (("T", session.tls), ("P", session.partial)) if on)


def _first_sender(session: Session) -> str:
    senders = session.mail_from
    return (senders[0] if senders else "") + (f" (+{len(senders) - 1})" if len(senders) > 1 else "")


SESSION_COLUMNS = (
    ColumnSpec("start", "Start", 8, lambda s: (s.start, s.id), priority=1),
    ColumnSpec(
        "server",
        "Server",
        9,
        lambda s: (_address_order(s.server_ip), s.server_port),
        numeric=False,
        pinned=True,
    ),
    ColumnSpec(
        "banner",
        "Name",
        10,
        lambda s: s.banner.lower(),
        numeric=False,
        priority=6,
        cut=True,
        grow=1,
    ),
    ColumnSpec(
        "helo", "HELO", 10, lambda s: s.helo.lower(), numeric=False, priority=4, cut=True, grow=1
    ),
    ColumnSpec(
        "mail_from",
        "MAIL FROM",
        12,
        lambda s: _first_sender(s).lower(),
        numeric=False,
        priority=5,
        cut=True,
        grow=2,
    ),
    ColumnSpec("recipients", "Rcpt", 4, lambda s: -s.recipients, priority=3),
    ColumnSpec("flags", "", 2, _flags, numeric=False, priority=7),
    ColumnSpec(
        "outcome",
        "Outcome",
        22,
        lambda s: OUTCOME_ORDER.get(s.outcome, 99),
        numeric=False,
        priority=2,
        cut=True,
        grow=6,
    ),
)
SESSION_SORT = "start"
SESSION_KINDS = ("all", "rejected", "tempfailed", "accepted")  # what ``o`` cycles through


def session_cells(session: Session, dated: bool = False) -> tuple[Text, ...]:
    return (
        Text(stamp(session.start, dated)),
        Text(session.server, no_wrap=True),
        Text(session.banner, no_wrap=True),
        Text(session.helo, no_wrap=True),
        Text(_first_sender(session), no_wrap=True),
        Text(str(session.recipients), justify="right"),
        Text(_flags(session)),
        session_outcome(session),
    )


def reply_style(code: int) -> str:
    return {2: "green", 3: "blue", 4: "yellow", 5: "bold red"}.get(code // 100, "")


def transcript_line(line: TranscriptLine, dated: bool = False) -> Text:
    """One transcript line: time, who spoke (by colour and prefix), what was said."""
    text = Text(stamp(line.ts, dated) + f".{int(line.ts * 1000) % 1000:03d} ", style="dim")
    if line.kind == "C":
        text.append("C: ", style="bold cyan")
        text.append(line.text, style="cyan")
    elif line.kind == "S":
        code = int(line.text[:3]) if line.text[:3].isdigit() else 0
        text.append("S: ", style="bold")
        text.append(line.text, style=reply_style(code))
    elif line.kind == "H":
        text.append("C: ", style="bold cyan")
        text.append(line.text, style="dim cyan")
    else:
        text.append("-- ", style="magenta")
        text.append(line.text, style="italic magenta")
    return text
