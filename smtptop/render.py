"""The report's three renderings of an :class:`~smtptop.analysis.Analysis`: a readable
table (default), JSON (the records of :mod:`smtptop.schema`, documented in the README) and
CSV (one row per host, guarded against spreadsheet formula injection).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from smtptop.analysis import Analysis, analyze, ranked_hosts
from smtptop.analyzer import DEFAULT_PORTS
from smtptop.detect import Verdict
from smtptop.model import Host, Identity
from smtptop.schema import (
    FIELD_NAMES,
    HostRecord,
    ReportRecord,
    host_record,
    record_fields,
    report_record,
)
from smtptop.text import plural

CSV_FIELDS = (
    "ip",
    "lan",
    "verdict",
    "score",
    "mac",
    "vendor",
    "dialect",
    "sessions",
    "destinations",
    "rejected_sessions",
    "tempfailed_sessions",
    "accepted_messages",
    "recipients",
    "helos",
)

# One encoder for every record: json.dumps would make one per call.
_encode = json.JSONEncoder(ensure_ascii=False, default=record_fields).encode


def write_json(analysis: Analysis, out: TextIO) -> None:
    """Write the JSON report, one host or session per line, each record built, written and
    let go in turn: a big capture's report is never whole in memory.

    ``json``'s indenting encoder is pure Python and takes seconds on a big capture; each
    record on its own line goes through the C encoder and still reads (and greps) well.
    """
    report = report_record(analysis)
    write = out.write
    write("{\n")
    for index, name in enumerate(FIELD_NAMES[ReportRecord]):
        value, key = getattr(report, name), _encode(name)
        write(f",\n  {key}: " if index else f"  {key}: ")
        if isinstance(value, str | dict) or not isinstance(value, Iterable):
            write(_encode(value))
            continue
        opening = "[\n    "
        for item in value:
            write(opening)
            write(_encode(item))
            opening = ",\n    "
        write("[]" if opening == "[\n    " else "\n  ]")
    write("\n}\n")


def render_json(analysis: Analysis) -> str:
    """The JSON report as one string (for tests and :func:`to_json`)."""
    buffer = io.StringIO()
    write_json(analysis, buffer)
    return buffer.getvalue()


def to_json(analysis: Analysis) -> dict[str, Any]:
    """The JSON report as Python values: what ``report --json`` prints, read back."""
    document: dict[str, Any] = json.loads(render_json(analysis))
    return document


def host_json(
    host: Host, verdict: Verdict | None = None, identity: Identity | None = None
) -> dict[str, Any]:
    """One host's record as Python values, as the JSON report has it."""
    document: dict[str, Any] = json.loads(_encode(host_record(host, verdict, identity)))
    return document


def analyze_paths(paths: Sequence[str], *, ports: Iterable[int] = DEFAULT_PORTS) -> dict[str, Any]:
    """The JSON report of some capture files, as Python values."""
    return to_json(analyze(paths, ports=ports))


def write_table(analysis: Analysis, out: TextIO, *, lan_only: bool = False) -> None:
    """Write the readable report: one line per client host, then the counters; line by line,
    only the rows (one per host, to size the columns) held at once."""
    model, stats = analysis.model, analysis.stats
    verdicts = analysis.verdicts()
    hosts = [h for h in ranked_hosts(model, verdicts) if h.lan or not lan_only]
    header = ("HOST", "NAME", "VERDICT", "SESS", "DEST", "REJ", "TEMP", "MSGS", "RCPT", "HELO")
    rows = []
    for h in hosts:
        verdict = verdicts.get(h.ip)
        identity = model.identities.get(h.ip)
        rows.append(
            (
                h.ip,
                identity.name if identity else "",
                f"{verdict.verdict} {verdict.score}" if verdict and verdict.verdict else "-",
                str(h.sessions),
                str(h.destinations),
                str(h.rejected_sessions),
                str(h.tempfailed_sessions),
                str(h.accepted_messages),
                str(h.recipients),
                _helo_summary(h),
            )
        )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]

    def line(text: str) -> None:
        out.write(text + "\n")

    for row in (header, *rows):
        cells = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        line("  ".join([*cells, row[-1]]).rstrip())
    if not rows:
        line("(no SMTP sessions found)")
    for h in hosts:
        verdict = verdicts.get(h.ip)
        if verdict and verdict.verdict in ("spambot", "suspicious"):
            line("")
            line(f"{h.ip} is {verdict.verdict} (score {verdict.score}):")
            for r in verdict.reasons:
                line(f"  +{r.points:<3d}{r.signal:<18}{r.evidence}")
    skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(stats.skipped.items()))
    line("")
    if model.from_logs:
        line(
            f"{plural(stats.log_records, 'Zeek log record')}, "
            f"{plural(model.sessions_total, 'SMTP session')} (from logs: no transcripts; "
            "a refusal is seen only in a transaction's last reply)"
        )
    else:
        line(
            f"{plural(stats.packets, 'packet')}, {stats.smtp_packets:,} on SMTP ports, "
            f"{plural(model.sessions_total, 'SMTP session')}, "
            f"{plural(stats.errors, 'analysis error')}"
        )
    if stats.tcp_conflicts:
        line(
            f"{plural(stats.tcp_conflicts, 'retransmission')} contradicted the data already "
            "seen (the first copy was kept)"
        )
    if skipped:
        line(f"skipped: {skipped}")
    if model.sessions_not_kept:
        line(
            f"{plural(model.sessions_not_kept, 'older session')} summarised (not kept in full; "
            f"{len(model.finished):,} kept, the most recent per host, rejected ones first)"
        )
    for warning in analysis.warnings:
        line(f"warning: {warning}")


def render_table(analysis: Analysis, *, lan_only: bool = False) -> str:
    """The readable report as one string (for tests)."""
    buffer = io.StringIO()
    write_table(analysis, buffer, lan_only=lan_only)
    return buffer.getvalue()


def _helo_summary(host: Host) -> str:
    names = sorted(host.helos, key=lambda n: -host.helos[n])
    shown = ", ".join(names[:3])
    return f"{shown} (+{len(names) - 3})" if len(names) > 3 else shown


def csv_safe(value: object) -> str:
    """A cell that a spreadsheet will not run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_csv(analysis: Analysis, out: TextIO) -> None:
    """Write the CSV report, one host's row at a time."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, "names", "reasons"])
    verdicts = analysis.verdicts()
    model = analysis.model
    for host in ranked_hosts(model, verdicts):
        record = host_record(host, verdicts.get(host.ip), model.identities.get(host.ip))
        writer.writerow(map(csv_safe, _csv_cells(record)))


def _csv_cells(record: HostRecord) -> list[object]:
    """A host's row: the CSV_FIELDS of its record (lists joined by spaces), then its names and
    its reasons."""
    values = [getattr(record, name) for name in CSV_FIELDS]
    cells = [" ".join(v) if isinstance(v, tuple) else v for v in values]
    names = " ".join(sorted(set(record.names.values())))
    reasons = "; ".join(f"{r.signal}: {r.evidence}" for r in record.reasons)
    return [*cells, names, reasons]


def render_csv(analysis: Analysis) -> str:
    """The CSV report as one string (for tests)."""
    buffer = io.StringIO()
    write_csv(analysis, buffer)
    return buffer.getvalue()
