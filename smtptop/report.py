"""`smtptop report`: run the engine over capture files and print per-host facts.

Three renderings of the same model: a readable table (default), JSON (stable, documented in
the README) and CSV (one row per host, guarded against spreadsheet formula injection).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from smtptop.analyzer import DEFAULT_PORTS, Analyzer, EngineConfig, Stats, apply
from smtptop.capture import CaptureFile
from smtptop.detect import VERDICT_ORDER, DetectConfig, Detector, Verdict
from smtptop.model import Host, Identity, Model, Session, rank
from smtptop.pipeline import APPLY_EVERY, EngineBatch, engine_batches, worth_a_second_process
from smtptop.source import Bursts, Source
from smtptop.text import plural
from smtptop.vendor import vendor

LIVE_APPLY_SECONDS = 0.05  # a live capture's runs end this often, to check the deadline

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


@dataclass(slots=True)
class Analysis:
    """The result of analysing some files: the model, the engine's counters, file notes,
    and the detector that judges the hosts."""

    model: Model
    stats: Stats
    warnings: list[str] = field(default_factory=list)
    detector: Detector | None = None

    def __post_init__(self) -> None:
        if self.detector is None:
            self.detector = Detector(self.model)

    def verdicts(self) -> dict[str, Verdict]:
        assert self.detector is not None
        return self.detector.evaluate()


def analyze(
    paths: Sequence[str],
    *,
    ports: Iterable[int] = DEFAULT_PORTS,
    lan: Iterable[str] = (),
    show_credentials: bool = False,
    detect: DetectConfig | None = None,
    progress: Callable[[str, int, int, int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    parallel: bool | None = None,
    max_bytes: int | None = None,
) -> Analysis:
    """Analyse capture files in order.  Raises CaptureError if a file cannot be opened.

    ``progress`` is called now and then with the file being read, the bytes read of it,
    the packets so far and the bytes of capture data so far (after decompression: a gzip
    bomb shows there).  ``parallel`` runs the engine in a second process (None: when there
    are two CPUs and enough to read); the result is the same.  ``max_bytes`` stops reading
    a file after that many bytes of capture data, with a warning."""
    captures = [CaptureFile(path, max_bytes) for path in paths]
    if parallel is None:
        parallel = worth_a_second_process(captures)
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, Stats(), detector=Detector(model, detect))
    config = EngineConfig(ports=frozenset(ports))
    for message in engine_batches(captures, config, parallel=parallel):
        if isinstance(message, EngineBatch):
            apply(model, message.events)
            if on_error is not None:
                for error in message.errors:
                    on_error(error)
            if progress is not None:
                progress(message.path, message.position, message.packets, message.unpacked)
        else:
            analysis.stats = message.stats
            analysis.warnings.extend(message.warnings)
    return analysis


def analyze_live(
    source: Source,
    *,
    duration: float,
    ports: Iterable[int] = DEFAULT_PORTS,
    lan: Iterable[str] = (),
    show_credentials: bool = False,
    detect: DetectConfig | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Analysis:
    """Capture from a live source for ``duration`` seconds (or until Ctrl-C) and analyse."""
    analyzer = Analyzer(EngineConfig(ports=frozenset(ports)), on_error)
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, analyzer.stats, detector=Detector(model, detect))
    stop = threading.Event()
    deadline = time.monotonic() + duration
    bursts = Bursts(source.frames(stop))
    try:
        while not bursts.ended:
            analyzer.feed(bursts.next(min(deadline, time.monotonic() + LIVE_APPLY_SECONDS)))
            if len(analyzer.out) >= APPLY_EVERY:
                apply(model, analyzer.take())
            if time.monotonic() >= deadline:
                stop.set()
    except KeyboardInterrupt:
        analysis.warnings.append("interrupted: the report covers the capture until then")
    finally:
        drops = source.kernel_drops()
        source.close()
    if drops:
        analysis.warnings.append(f"the kernel dropped {drops} packets: the counts are low")
    analyzer.finish()
    apply(model, analyzer.take())
    return analysis


def analyze_paths(paths: Sequence[str], *, ports: Iterable[int] = DEFAULT_PORTS) -> dict[str, Any]:
    """The JSON report of some capture files, as a dict (what ``report --json`` prints)."""
    return to_json(analyze(paths, ports=ports))


def ranked_hosts(model: Model, verdicts: dict[str, Verdict] | None = None) -> list[Host]:
    """Spambots first, then suspicious hosts; within each, the most distinct destinations,
    then the most rejections."""
    judged = verdicts or {}

    def key(host: Host) -> tuple[object, ...]:
        verdict = judged.get(host.ip)
        order = VERDICT_ORDER[verdict.verdict] if verdict else VERDICT_ORDER[""]
        return (order, -(verdict.score if verdict else 0), *rank(host))

    return sorted(model.hosts.values(), key=key if judged else rank)


def session_json(session: Session) -> dict[str, Any]:
    decisive = session.decisive
    return {
        "client": session.client,
        "server": session.server,
        "start": session.start,
        "end": session.end,
        "helo": session.helo,
        "mail_from": list(session.mail_from),
        "rcpt_to": list(session.rcpt_to),
        "replies": [{"code": r.code, "text": r.text} for r in session.replies],
        "tls": session.tls,
        "partial": session.partial,
        "outcome": session.outcome,
        "outcome_reply": (
            {"code": decisive.code, "text": decisive.text, "stage": decisive.stage}
            if decisive
            else None
        ),
        "accepted_messages": session.accepted_messages,
        "recipients": session.recipients,
        "banner": session.banner,
        "auth": session.auth_mechanism,
        "auth_user": session.auth_user,
        "close_reason": session.close_reason,
        "bytes": {"client": session.client_bytes, "server": session.server_bytes},
        "transcript": [{"ts": t.ts, "kind": t.kind, "text": t.text} for t in session.transcript],
        "transcript_lines_not_kept": session.transcript_dropped,
        "replies_not_kept": session.replies_dropped,
        "reply_characters_not_kept": session.reply_text_dropped,
        "addresses_not_kept": session.addresses_dropped,
    }


def host_json(
    host: Host, verdict: Verdict | None = None, identity: Identity | None = None
) -> dict[str, Any]:
    mac = identity.mac if identity else ""
    return {
        "ip": host.ip,
        "lan": host.lan,
        "sessions": host.sessions,
        "destinations": host.destinations,
        "rejected_sessions": host.rejected_sessions,
        "tempfailed_sessions": host.tempfailed_sessions,
        "accepted_messages": host.accepted_messages,
        "recipients": host.recipients,
        "sessions_not_kept": host.sessions_evicted,
        "servers_not_listed": host.destinations - len(host.servers),
        "refusals_not_kept": host.refusals_dropped,
        "names_not_kept": host.names_dropped,
        "helos": list(host.helos),
        "servers": [
            {
                "ip": s.ip,
                "name": s.name,
                "sessions": s.sessions,
                "rejected_sessions": s.rejected_sessions,
            }
            for s in sorted(host.servers.values(), key=lambda s: (-s.sessions, s.ip))
        ],
        "first_seen": host.first_seen,
        "last_seen": host.last_seen,
        "verdict": verdict.verdict if verdict else "",
        "score": verdict.score if verdict else 0,
        "reasons": [
            {"signal": r.signal, "evidence": r.evidence, "points": r.points}
            for r in (verdict.reasons if verdict else ())
        ],
        "names": dict(identity.names) if identity else {},
        "mac": mac,
        "vendor": vendor(mac) if mac else "",
        "dialect": verdict.dialect if verdict else "",
    }


def render_json(analysis: Analysis) -> str:
    """The JSON report, one host or session per line.

    ``json``'s indenting encoder is pure Python and takes seconds on a big capture; each
    record on its own line goes through the C encoder and still reads (and greps) well.
    """
    parts = []
    for key, value in to_json(analysis).items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f"  {json.dumps(key)}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def to_json(analysis: Analysis) -> dict[str, Any]:
    model, stats = analysis.model, analysis.stats
    sessions = sorted(model.sessions(), key=lambda s: (s.start, s.id))
    verdicts = analysis.verdicts()
    return {
        "hosts": [
            host_json(h, verdicts.get(h.ip), model.identities.get(h.ip))
            for h in ranked_hosts(model, verdicts)
        ],
        "sessions": [session_json(s) for s in sessions],
        "stats": {
            "packets": stats.packets,
            "bytes": stats.bytes,
            "smtp_packets": stats.smtp_packets,
            "skipped": dict(sorted(stats.skipped.items())),
            "errors": stats.errors,
            "error_samples": list(stats.error_samples),
            "sessions": model.sessions_total,
            "sessions_kept": len(model.finished),
            "sessions_not_kept": model.sessions_evicted,
            "hosts_not_kept": model.hosts_dropped,
            "connections_evicted": stats.connections_evicted,
            "tcp_conflicts": stats.tcp_conflicts,
        },
        "warnings": list(analysis.warnings),
    }


def render_table(analysis: Analysis, *, lan_only: bool = False) -> str:
    """The readable report: one line per client host, then the counters."""
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
    lines = []
    for row in (header, *rows):
        cells = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    if not rows:
        lines.append("(no SMTP sessions found)")
    for h in hosts:
        verdict = verdicts.get(h.ip)
        if verdict and verdict.verdict in ("spambot", "suspicious"):
            lines.append("")
            lines.append(f"{h.ip} is {verdict.verdict} (score {verdict.score}):")
            lines.extend(f"  +{r.points:<3d}{r.signal:<18}{r.evidence}" for r in verdict.reasons)
    skipped = ", ".join(f"{n:,} {reason}" for reason, n in sorted(stats.skipped.items()))
    lines.append("")
    lines.append(
        f"{plural(stats.packets, 'packet')}, {stats.smtp_packets:,} on SMTP ports, "
        f"{plural(model.sessions_total, 'SMTP session')}, "
        f"{plural(stats.errors, 'analysis error')}"
    )
    if stats.tcp_conflicts:
        lines.append(
            f"{plural(stats.tcp_conflicts, 'retransmission')} contradicted the data already "
            "seen (the first copy was kept)"
        )
    if skipped:
        lines.append(f"skipped: {skipped}")
    if model.sessions_evicted:
        lines.append(
            f"{plural(model.sessions_evicted, 'older session')} summarised (not kept in full; "
            f"{len(model.finished):,} kept, the most recent per host, rejected ones first)"
        )
    lines.extend(f"warning: {w}" for w in analysis.warnings)
    return "\n".join(lines) + "\n"


def _helo_summary(host: Host) -> str:
    names = sorted(host.helos, key=lambda n: -host.helos[n])
    shown = ", ".join(names[:3])
    return f"{shown} (+{len(names) - 3})" if len(names) > 3 else shown


def csv_safe(value: object) -> str:
    """A cell that a spreadsheet will not run as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_csv(analysis: Analysis, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, "names", "reasons"])
    verdicts = analysis.verdicts()
    model = analysis.model
    for host in ranked_hosts(model, verdicts):
        data = host_json(host, verdicts.get(host.ip), model.identities.get(host.ip))
        data["helos"] = " ".join(host.helos)
        names = " ".join(sorted(set(data["names"].values())))
        reasons = "; ".join(f"{r['signal']}: {r['evidence']}" for r in data["reasons"])
        writer.writerow(
            [csv_safe(data[name]) for name in CSV_FIELDS] + [csv_safe(names), csv_safe(reasons)]
        )


def render_csv(analysis: Analysis) -> str:
    buffer = io.StringIO()
    write_csv(analysis, buffer)
    return buffer.getvalue()
