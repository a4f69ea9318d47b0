"""The report's records, declared once: what ``smtptop report --json`` writes and the README
documents.

In the spirit of Zeek's ``Info`` records with ``&log``: each record is a frozen dataclass
whose fields carry a one-line description (``metadata["doc"]``), built from the model's
objects by one function per record, so that each can be built, and written, on its own.
The JSON writer (:mod:`smtptop.render`) writes the fields in the order declared here, and
:func:`fields_markdown` writes the README's field list from the same declarations (a test
holds the README to it).  A fact the model keeps has the same name here and there.

The records sit above the model and the detector, which they read; neither imports them.
"""

from __future__ import annotations

import dataclasses
import textwrap
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from smtptop.analysis import Analysis, ranked_hosts
from smtptop.analyzer import Stats
from smtptop.detect import Reason, Verdict
from smtptop.model import (
    NAME_SOURCES,
    OUTCOMES,
    Host,
    Identity,
    Model,
    ServerStats,
    Session,
    SmtpReply,
    TranscriptLine,
)
from smtptop.vendor import vendor

# Raised when a field is renamed or removed or changes meaning; a new field does not raise
# it.  The JSON before it had no version (1); 2 is the first declared schema.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """A server the host used: a row of the monitor's server table."""

    ip: str = field(metadata={"doc": "the server's address"})
    name: str = field(metadata={"doc": "the host name in its greeting"})
    sessions: int = field(metadata={"doc": "the host's sessions to it"})
    rejected_sessions: int = field(metadata={"doc": "of those, the rejected ones"})


@dataclass(frozen=True, slots=True)
class ReasonRecord:
    """A reason behind the verdict."""

    signal: str = field(metadata={"doc": 'the signal (the table in "Finding the spambot")'})
    evidence: str = field(metadata={"doc": "what was seen, in words"})
    points: int = field(metadata={"doc": "what it added to the score"})


@dataclass(frozen=True, slots=True)
class HostRecord:
    """An SMTP client host and everything it did."""

    ip: str = field(metadata={"doc": "its address"})
    lan: bool = field(metadata={"doc": "whether it is a LAN host (see Definitions)"})
    sessions: int = field(metadata={"doc": "the SMTP sessions it opened"})
    destinations: int = field(
        metadata={"doc": "the distinct server addresses it opened sessions to"}
    )
    rejected_sessions: int = field(metadata={"doc": "its rejected sessions"})
    tempfailed_sessions: int = field(metadata={"doc": "its tempfailed sessions"})
    accepted_messages: int = field(metadata={"doc": "the messages its servers accepted"})
    recipients: int = field(metadata={"doc": "the RCPT commands it sent"})
    sessions_not_kept: int = field(
        metadata={"doc": "its sessions summarised: in its figures, not kept in full"}
    )
    servers_not_listed: int = field(
        metadata={"doc": "servers counted in `destinations` without a row in `servers`"}
    )
    refusals_not_kept: int = field(
        metadata={"doc": "refusals past its text budgets: counted, their texts not kept"}
    )
    names_not_kept: int = field(
        metadata={"doc": "HELO names and sender domains that did not fit their budgets"}
    )
    helos: tuple[str, ...] = field(metadata={"doc": "its HELO/EHLO names, first used first"})
    servers: tuple[ServerRecord, ...] = field(
        metadata={"doc": "the servers it used most recently, most sessions first"}
    )
    first_seen: float = field(metadata={"doc": "when its first session started"})
    last_seen: float = field(metadata={"doc": "when its latest session started"})
    verdict: str = field(
        metadata={"doc": "`spambot`, `suspicious` or `normal`; empty outside the LAN (not judged)"}
    )
    score: int = field(metadata={"doc": "the points of its reasons together"})
    reasons: tuple[ReasonRecord, ...] = field(
        metadata={"doc": "every signal that scored, with what was seen"}
    )
    names: dict[str, str] = field(
        metadata={"doc": "its names by source: " + ", ".join(f"`{s}`" for s in NAME_SOURCES)}
    )
    mac: str = field(metadata={"doc": "its MAC address, from ARP or DHCP"})
    vendor: str = field(metadata={"doc": "the MAC's manufacturer"})
    dialect: str = field(
        metadata={"doc": "the client software its sessions look like most, or `unknown`"}
    )
    last_direct_mx: float | None = field(
        metadata={
            "doc": "when its latest port-25 session to a server other than the smarthost "
            "ended; null if none"
        }
    )
    quiet_since: float | None = field(
        metadata={
            "doc": "a spambot or suspicious host that sent nothing to foreign mail servers "
            "for `--quiet-after` seconds (default 600) before the capture's end: since when "
            "(the all-clear for a delisting request; its verdict stands); null otherwise"
        }
    )


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """A server reply."""

    code: int = field(metadata={"doc": "the reply code"})
    text: str = field(metadata={"doc": "its text; the lines of a multi-line reply joined by `\\n`"})


@dataclass(frozen=True, slots=True)
class OutcomeReplyRecord:
    """The reply that made a session rejected or tempfailed."""

    code: int = field(metadata={"doc": "the reply code"})
    text: str = field(metadata={"doc": "its text"})
    stage: str = field(
        metadata={"doc": "what it answered: `greeting`, `EHLO`, `RCPT`, `end of data`, ..."}
    )


@dataclass(frozen=True, slots=True)
class ByteCountsRecord:
    """The bytes of a session, each way."""

    client: int = field(metadata={"doc": "the bytes the client sent (TCP payload)"})
    server: int = field(metadata={"doc": "the bytes the server sent"})


@dataclass(frozen=True, slots=True)
class TranscriptRecord:
    """A line of a session as shown."""

    ts: float = field(metadata={"doc": "when it was sent"})
    kind: str = field(
        metadata={
            "doc": "`C` (client line), `S` (server line), `H` (a message header the client"
            " sent; bodies are only counted) or `*` (a note from smtptop: body size, TLS,"
            " a gap, a protocol violation)"
        }
    )
    text: str = field(metadata={"doc": "the line; AUTH credentials masked"})


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session kept in full: one TCP connection to an SMTP port."""

    client: str = field(metadata={"doc": "the client's `ip:port` (IPv6: `[addr]:port`)"})
    server: str = field(metadata={"doc": "the server's `ip:port`"})
    start: float = field(metadata={"doc": "its first packet"})
    end: float = field(metadata={"doc": "its last event"})
    helo: str = field(metadata={"doc": "the latest non-empty HELO/EHLO argument"})
    mail_from: tuple[str, ...] = field(
        metadata={"doc": "every MAIL FROM address the client sent, whatever the reply"}
    )
    rcpt_to: tuple[str, ...] = field(
        metadata={"doc": "every RCPT TO address the client sent, whatever the reply"}
    )
    replies: tuple[ReplyRecord, ...] = field(metadata={"doc": "the server's replies"})
    tls: bool = field(metadata={"doc": "whether it turned to TLS, after which nothing is seen"})
    partial: bool = field(
        metadata={"doc": "picked up mid-stream or with bytes missing: facts may be incomplete"}
    )
    outcome: str = field(metadata={"doc": ", ".join(f"`{o}`" for o in OUTCOMES)})
    outcome_reply: OutcomeReplyRecord | None = field(
        metadata={"doc": "the reply that made it rejected or tempfailed"}
    )
    accepted_messages: int = field(metadata={"doc": "the messages the server accepted"})
    recipients: int = field(metadata={"doc": "the RCPT commands sent"})
    banner: str = field(metadata={"doc": "the host name the server gave in its greeting"})
    auth: str = field(metadata={"doc": "the mechanism of its latest AUTH command"})
    auth_user: str = field(
        metadata={"doc": "the account an AUTH exchange named, never a password or token"}
    )
    close_reason: str = field(
        metadata={"doc": "how it ended: `closed`, `reset`, `idle timeout`, `capture ended`, ..."}
    )
    bytes: ByteCountsRecord = field(metadata={"doc": "the bytes each side sent"})
    transcript: tuple[TranscriptRecord, ...] = field(
        metadata={"doc": "what was said, line by line"}
    )
    transcript_lines_not_kept: int = field(
        metadata={"doc": "transcript lines past its bounds: counted, not kept"}
    )
    replies_not_kept: int = field(metadata={"doc": "replies past its bounds"})
    reply_characters_not_kept: int = field(
        metadata={"doc": "characters cut from the replies' texts"}
    )
    addresses_not_kept: int = field(
        metadata={"doc": "MAIL FROM and RCPT TO addresses past its bounds"}
    )


@dataclass(frozen=True, slots=True)
class StatsRecord:
    """What the input held and what smtptop made of it."""

    packets: int = field(metadata={"doc": "the packets read"})
    bytes: int = field(metadata={"doc": "their bytes, as captured"})
    smtp_packets: int = field(metadata={"doc": "the packets on SMTP ports"})
    skipped: dict[str, int] = field(
        metadata={
            "doc": "the packets that carry no SMTP (with `--zeek`: the log lines and records"
            " not used), counted by reason"
        }
    )
    errors: int = field(
        metadata={"doc": "the packets whose analysis failed (a bug; the capture goes on)"}
    )
    error_samples: tuple[str, ...] = field(
        metadata={"doc": "the first of those failures: which packet, and why"}
    )
    sessions: int = field(metadata={"doc": "the SMTP sessions seen"})
    sessions_kept: int = field(metadata={"doc": "the sessions kept in full (`sessions`)"})
    sessions_not_kept: int = field(
        metadata={"doc": "the sessions summarised: in the host figures, not kept in full"}
    )
    hosts_not_kept: int = field(
        metadata={"doc": "the sessions of client hosts past the bound on hosts, in no host"}
    )
    connections_evicted: int = field(
        metadata={"doc": "connections let go while open, for room in the connection table"}
    )
    tcp_conflicts: int = field(
        metadata={
            "doc": "retransmissions that said something else than the copy already taken"
            " (the first copy is kept)"
        }
    )
    log_records: int = field(
        metadata={"doc": "the Zeek log records read (`report --zeek`); 0 for packets"}
    )


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """The report: one object.

    Its hosts and sessions are streams, each record built as it is written: a big report
    never holds them all at once, and each is garbage once written."""

    schema_version: int = field(
        metadata={
            "doc": f"{SCHEMA_VERSION}; raised when a field is renamed, removed or changes meaning"
        }
    )
    hosts: Iterable[HostRecord] = field(
        metadata={
            "doc": "the SMTP client hosts: spambots first, then suspicious hosts, then the"
            " others; within each, most distinct destinations first, then most rejections"
        }
    )
    sessions: Iterable[SessionRecord] = field(
        metadata={"doc": "the sessions kept in full, in the order they started"}
    )
    stats: StatsRecord = field(metadata={"doc": "what the input held"})
    warnings: tuple[str, ...] = field(
        metadata={"doc": "what went wrong with the input, as standard error says it"}
    )


RECORDS = (
    ReportRecord,
    HostRecord,
    ServerRecord,
    ReasonRecord,
    SessionRecord,
    ReplyRecord,
    OutcomeReplyRecord,
    ByteCountsRecord,
    TranscriptRecord,
    StatsRecord,
)
FIELD_NAMES: dict[type, tuple[str, ...]] = {
    record: tuple(f.name for f in dataclasses.fields(record)) for record in RECORDS
}


def server_record(stats: ServerStats) -> ServerRecord:
    return ServerRecord(stats.ip, stats.name, stats.sessions, stats.rejected_sessions)


def reason_record(reason: Reason) -> ReasonRecord:
    return ReasonRecord(reason.signal, reason.evidence, reason.points)


def host_record(
    host: Host, verdict: Verdict | None = None, identity: Identity | None = None
) -> HostRecord:
    mac = identity.mac if identity else ""
    servers = sorted(host.servers.values(), key=lambda s: (-s.sessions, s.ip))
    return HostRecord(
        ip=host.ip,
        lan=host.lan,
        sessions=host.sessions,
        destinations=host.destinations,
        rejected_sessions=host.rejected_sessions,
        tempfailed_sessions=host.tempfailed_sessions,
        accepted_messages=host.accepted_messages,
        recipients=host.recipients,
        sessions_not_kept=host.sessions_not_kept,
        servers_not_listed=host.destinations - len(host.servers),
        refusals_not_kept=host.refusals_not_kept,
        names_not_kept=host.names_not_kept,
        helos=tuple(host.helos),
        servers=tuple(map(server_record, servers)),
        first_seen=host.first_seen,
        last_seen=host.last_seen,
        verdict=verdict.verdict.value if verdict else "",
        score=verdict.score if verdict else 0,
        reasons=tuple(map(reason_record, verdict.reasons)) if verdict else (),
        names=dict(identity.names) if identity else {},
        mac=mac,
        vendor=vendor(mac) if mac else "",
        dialect=verdict.dialect if verdict else "",
        last_direct_mx=verdict.last_direct_mx if verdict else None,
        quiet_since=verdict.quiet_since if verdict else None,
    )


def reply_record(reply: SmtpReply) -> ReplyRecord:
    return ReplyRecord(reply.code, reply.text)


def outcome_reply_record(reply: SmtpReply) -> OutcomeReplyRecord:
    return OutcomeReplyRecord(reply.code, reply.text, reply.stage)


def byte_counts_record(session: Session) -> ByteCountsRecord:
    return ByteCountsRecord(session.client_bytes, session.server_bytes)


def transcript_record(line: TranscriptLine) -> TranscriptRecord:
    return TranscriptRecord(line.ts, line.kind, line.text)


def session_record(session: Session) -> SessionRecord:
    decided = session.outcome_reply
    return SessionRecord(
        client=session.client,
        server=session.server,
        start=session.start,
        end=session.end,
        helo=session.helo,
        mail_from=tuple(session.mail_from),
        rcpt_to=tuple(session.rcpt_to),
        replies=tuple(map(reply_record, session.replies)),
        tls=session.tls,
        partial=session.partial,
        outcome=session.outcome,
        outcome_reply=outcome_reply_record(decided) if decided else None,
        accepted_messages=session.accepted_messages,
        recipients=session.recipients,
        banner=session.banner,
        auth=session.auth,
        auth_user=session.auth_user,
        close_reason=session.close_reason,
        bytes=byte_counts_record(session),
        transcript=tuple(map(transcript_record, session.transcript)),
        transcript_lines_not_kept=session.transcript_lines_not_kept,
        replies_not_kept=session.replies_not_kept,
        reply_characters_not_kept=session.reply_characters_not_kept,
        addresses_not_kept=session.addresses_not_kept,
    )


def stats_record(model: Model, stats: Stats) -> StatsRecord:
    return StatsRecord(
        packets=stats.packets,
        bytes=stats.bytes,
        smtp_packets=stats.smtp_packets,
        skipped=dict(sorted(stats.skipped.items())),
        errors=stats.errors,
        error_samples=tuple(stats.error_samples),
        sessions=model.sessions_total,
        sessions_kept=len(model.finished),
        sessions_not_kept=model.sessions_not_kept,
        hosts_not_kept=model.hosts_not_kept,
        connections_evicted=stats.connections_evicted,
        tcp_conflicts=stats.tcp_conflicts,
        log_records=stats.log_records,
    )


def report_record(analysis: Analysis) -> ReportRecord:
    """The report, its hosts and sessions to be built one by one as they are read."""
    model = analysis.model
    verdicts = analysis.verdicts()
    hosts = ranked_hosts(model, verdicts)
    sessions = sorted(model.sessions(), key=lambda s: (s.start, s.id))
    return ReportRecord(
        schema_version=SCHEMA_VERSION,
        hosts=(host_record(h, verdicts.get(h.ip), model.identities.get(h.ip)) for h in hosts),
        sessions=map(session_record, sessions),
        stats=stats_record(model, analysis.stats),
        warnings=tuple(analysis.warnings),
    )


def record_fields(record: object) -> dict[str, Any]:
    """A record as the JSON object it is written as: its fields in declaration order (the
    ``default`` of the JSON encoder, which calls it for every record it meets)."""
    names = FIELD_NAMES.get(type(record))
    if names is None:
        raise TypeError(f"{type(record).__name__} is not a report record")
    return {name: getattr(record, name) for name in names}


def fields_markdown() -> str:
    """The README's field list: one paragraph per record, each nested record after the one
    that holds it, one line per field with its JSON type and description."""
    return "\n".join(_record_markdown(ReportRecord, ""))


def _record_markdown(record: type, path: str) -> list[str]:
    title = (record.__doc__ or "").strip().splitlines()[0]
    out = [f"`{path}`: {title}" if path else title, ""]
    nested: list[tuple[str, type]] = []
    hints = typing.get_type_hints(record)
    for item in dataclasses.fields(record):
        kind, inner = _json_type(hints[item.name])
        if inner is not None:
            at = f"{path}.{item.name}" if path else item.name
            nested.append((at + "[]" if kind.startswith("list") else at, inner))
        line = f"* `{item.name}` ({kind}): {item.metadata['doc']}"
        out.append(textwrap.fill(line, 95, subsequent_indent="  ", break_on_hyphens=False))
    out.append("")
    for at, inner in nested:
        out += _record_markdown(inner, at)
    return out


_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(hint: Any) -> tuple[str, type | None]:
    """How a field's type reads in JSON, and the record it nests, if any."""
    if hint in _SCALARS:
        return _SCALARS[hint], None
    if hint in FIELD_NAMES:
        return "object", hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        kind, nested = _json_type(inner)
        return f"{kind} or null", nested
    if origin is tuple or origin is Iterable:
        kind, nested = _json_type(args[0])
        return f"list of {kind}s", nested
    if origin is dict:
        kind, nested = _json_type(args[1])
        return f"object of {kind}s", nested
    raise TypeError(f"no JSON type for {hint!r}")
