"""What the monitor's tables show: columns, cells, sort orders, colours.

Every cell is a Rich ``Text`` built from strings that the model already made inert with
``wire_text``; nothing here is ever parsed as markup.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text

from smtptop.model import Host, ServerStats, Session, SmtpReply, TranscriptLine, rank

MANY_DESTINATIONS = 5  # ntopng's "SMTP server contacts" alert fires above this
MANY_REJECTIONS = 3


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    value: Callable[[Host, float], object]
    numeric: bool = True


def _helo(host: Host) -> str:
    if not host.helos:
        return ""
    names = sorted(host.helos, key=lambda n: -host.helos[n])
    return names[0] + (f" (+{len(names) - 1})" if len(names) > 1 else "")


HOST_COLUMNS = (
    Column("host", "Host", 17, lambda h, now: h.ip, numeric=False),
    Column("sessions", "Sess", 6, lambda h, now: h.sessions),
    Column("destinations", "Dest", 6, lambda h, now: h.destinations),
    Column("rejected", "Rej", 6, lambda h, now: h.rejected_sessions),
    Column("tempfailed", "Temp", 6, lambda h, now: h.tempfailed_sessions),
    Column("accepted", "Msgs", 6, lambda h, now: h.accepted_messages),
    Column("recipients", "Rcpt", 6, lambda h, now: h.recipients),
    Column("rate", "S/min", 6, lambda h, now: h.sessions_per_minute(now)),
    Column("last", "Last seen", 9, lambda h, now: h.last_seen),
    Column("helo", "HELO", 30, lambda h, now: _helo(h), numeric=False),
)
SORTABLE = tuple(c.key for c in HOST_COLUMNS)
DEFAULT_SORT = "destinations"


def host_level(host: Host) -> str:
    """How abnormal a host looks: "alert", "warn" or ""."""
    if host.destinations > MANY_DESTINATIONS or host.rejected_sessions >= MANY_REJECTIONS:
        return "alert"
    if host.rejected_sessions or host.tempfailed_sessions:
        return "warn"
    return ""


LEVEL_STYLE = {"alert": "bold red", "warn": "yellow", "": ""}


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


def host_cells(host: Host, now: float) -> tuple[Text, ...]:
    """The row of one host, styled by how abnormal it looks."""
    style = LEVEL_STYLE[host_level(host)]
    cells = []
    for column in HOST_COLUMNS:
        value = column.value(host, now)
        if column.key == "last":
            text = clock(float(value))  # type: ignore[arg-type]
        elif column.key == "rate":
            text = f"{value:g}"
        else:
            text = str(value)
        justify = "right" if column.numeric and column.key != "last" else "left"
        cell_style = style if column.key in ("host", "destinations", "rejected") else ""
        if column.key == "tempfailed" and host.tempfailed_sessions:
            cell_style = "yellow"
        cells.append(Text(text, style=cell_style, justify=justify, no_wrap=True))  # type: ignore[arg-type]
    return tuple(cells)


def sort_key(column: str, now: float) -> Callable[[Host], tuple[object, ...]]:
    """Largest numbers first, text in order; ties in the default order (see ``rank``)."""
    getter = next(c for c in HOST_COLUMNS if c.key == column)
    if column == "host":
        return lambda host: (ipaddress.ip_address(host.ip).packed, *rank(host))
    if getter.numeric:
        return lambda host: (-getter.value(host, now), *rank(host))  # type: ignore[operator]
    return lambda host: (str(getter.value(host, now)), *rank(host))


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


def reply_summary(reply: SmtpReply | None) -> str:
    if reply is None:
        return ""
    first = reply.text.split("\n", 1)[0]
    return f"{reply.code} {first}".strip()


def session_outcome(session: Session) -> Text:
    """Outcome word, then the reply that decided it (or the last reply)."""
    reply = session.decisive or (session.replies[-1] if session.replies else None)
    word = session.outcome if session.closed else f"{session.outcome}…"
    text = Text(word, style=OUTCOME_STYLE.get(session.outcome, ""))
    summary = reply_summary(reply)
    if summary:
        text.append(" " + summary)
    return text


def session_cells(session: Session) -> tuple[Text, ...]:
    server = session.server + (f" {session.banner}" if session.banner else "")
    senders = session.mail_from
    mail_from = (senders[0] if senders else "") + (
        f" (+{len(senders) - 1})" if len(senders) > 1 else ""
    )
    flags = "".join(flag for flag, on in (("T", session.tls), ("P", session.partial)) if on)
    return (
        Text(clock(session.start)),
        Text(server, no_wrap=True),
        Text(session.helo, no_wrap=True),
        Text(mail_from, no_wrap=True),
        Text(str(session.recipients), justify="right"),
        Text(flags),
        session_outcome(session),
    )


def reply_style(code: int) -> str:
    return {2: "green", 3: "blue", 4: "yellow", 5: "bold red"}.get(code // 100, "")


def transcript_line(line: TranscriptLine) -> Text:
    """One transcript line: time, who spoke (by colour and prefix), what was said."""
    stamp = (
        time.strftime("%H:%M:%S", time.localtime(line.ts)) + f".{int(line.ts * 1000) % 1000:03d}"
    )
    text = Text(stamp + " ", style="dim")
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
