"""The evidence bundle: what an admin hands the ISP or a blocklist's removal form, and the
rules and commands for the next steps, one folder per flagged host.

``DIR/<ip>/`` holds ``smtp.pcap`` (every packet of the host's SMTP connections, both
directions, read back from the capture; from a live capture without a file, those its
engine's ring kept: :mod:`smtptop.ring`), ``summary.json`` (``host``: its record as in the
JSON report; ``sessions``: its sessions kept in full), ``summary.md`` (a page for a ticket),
``transcripts.txt``, ``find-process.txt`` and ``containment/`` (see :mod:`smtptop.contain`).
The bundle is made in a private temporary folder beside DIR and renamed into place once
complete: a failure (a full disk) leaves nothing half written.  Every file is new
(``O_EXCL``, never following a symbolic link), mode 0600, and given to the user who ran
smtptop.  Credentials are masked in the text files as in every view, unless
``--show-credentials``; ``smtp.pcap`` holds whatever the wire held.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from smtptop import __version__, blocklists, build, contain
from smtptop import decode as dec
from smtptop.analysis import Analysis
from smtptop.capture import CaptureError, CaptureFile, PcapWriter
from smtptop.detect import Detector, Rating, Verdict
from smtptop.files import Owner
from smtptop.merge import by_time
from smtptop.model import Host, Identity, Model, Session, is_address
from smtptop.ring import HostPackets
from smtptop.schema import SessionRecord, host_record, record_fields, session_record
from smtptop.text import inert, plural
from smtptop.vendor import vendor

FLAGGED = (Rating.SPAMBOT, Rating.SUSPICIOUS)
TIMELINE_BAR = 40  # characters of the longest bar in summary.md's timeline
TIMELINE_ROWS = 1440  # summary.md's timeline rows at most (as wide as the host's bins)
MIB = 1 << 20
BUFFER_NOTE = "packets from smtptop's evidence buffer (--evidence-buffer)"  # how they were had


class EvidenceError(Exception):
    """The bundle cannot be made; the message is one line that says why."""


@dataclass(slots=True)
class Packets:
    """What went into one host's smtp.pcap."""

    written: int = 0
    other_link: int = 0  # on a link type other than the first one's (one pcap holds one)
    linktype: int | None = None
    writer: PcapWriter | None = None
    ring: HostPackets | None = None  # taken from a live capture's ring, not read back


@dataclass(slots=True)
class ReadBack:
    """The capture files to read the packets back from: a replay, or a live capture's -w."""

    paths: list[str]
    ports: frozenset[int]
    mirrors: dec.MirrorPorts = dec.STANDARD_MIRRORS


Recorded = ReadBack | Mapping[str, HostPackets]  # or the ring's copies, by host


@dataclass(slots=True)
class Capture:
    """How the capture was made, for summary.md."""

    paths: list[str]
    command: str
    notes: list[str] = field(default_factory=list)


def chosen_hosts(analysis: Analysis, asked: Sequence[str]) -> list[str]:
    """The hosts asked for (each must have talked SMTP in the capture), else every spambot
    and suspicious host."""
    hosts = analysis.model.hosts
    for ip in asked:
        if ip not in hosts:
            raise EvidenceError(f"--host {ip}: no SMTP from that address in the capture")
    if asked:
        return list(dict.fromkeys(asked))
    verdicts = analysis.verdicts()
    return [ip for ip, verdict in verdicts.items() if verdict.verdict in FLAGGED]


@dataclass(slots=True)
class Prepared:
    """One host's bundle as text, made where the model may be read (the monitor's own
    thread), before its packets are read back (which may take a while, in another)."""

    ip: str
    texts: dict[str, str]  # path in the host's folder: content (all but summary.md)
    page: str  # summary.md, but for its list of files, which counts the packets


def prepare(
    model: Model,
    detector: Detector,
    verdicts: Mapping[str, Verdict],
    capture: Capture,
    hosts: list[str],
) -> list[Prepared]:
    """Every text of each host's bundle."""
    prepared = []
    for ip in hosts:
        host = model.hosts[ip]
        verdict = verdicts.get(ip)
        identity = model.identities.get(ip)
        sessions = model.host_sessions(ip)
        plan = containment(detector, ip)
        record = {"host": host_record(host, verdict, identity), "sessions": session_list(sessions)}
        document = json.dumps(record, default=record_fields, ensure_ascii=False, indent=2)
        texts = {
            "summary.json": document + "\n",
            "transcripts.txt": transcripts(sessions),
            "find-process.txt": process_steps(model, ip),
            **{f"containment/{name}": text for name, text in contain.rules(plan).items()},
        }
        page = summary(host, verdict, identity, capture, plan)
        prepared.append(Prepared(ip, texts, page))
    return prepared


def write_bundle(
    prepared: list[Prepared], directory: str, recorded: Recorded, *, owner: Owner
) -> None:
    """Write ``directory`` with a folder per host, all or nothing."""
    target = os.path.abspath(directory)
    if os.path.lexists(target):
        raise EvidenceError(f"--evidence {directory}: it exists; name a new folder")
    parent = os.path.dirname(target)
    try:
        work = tempfile.mkdtemp(prefix=".smtptop-evidence-", dir=parent)
    except OSError as exc:
        raise EvidenceError(f"--evidence {directory}: cannot write in {parent} "
                            f"({exc.strerror})") from None  # fmt: skip
    try:
        _chown(work, owner)
        hosts = [p.ip for p in prepared]
        folders = {ip: os.path.join(work, ip) for ip in hosts}
        for folder in folders.values():
            os.mkdir(folder, 0o700)
            _chown(folder, owner)
        if isinstance(recorded, ReadBack):
            packets = _read_back(recorded, folders, owner)
        else:
            empty = HostPackets()  # the engines could not answer: the page says none
            packets = {ip: _from_ring(recorded.get(ip, empty), at, owner)
                       for ip, at in folders.items()}  # fmt: skip
        for host in prepared:
            _write_host(folders[host.ip], host, packets[host.ip], owner)
        if os.path.lexists(target):
            raise EvidenceError(f"--evidence {directory}: it appeared meanwhile; name a new one")
        os.rename(work, target)
    except BaseException as exc:  # nothing half written stays
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise EvidenceError(f"--evidence {directory}: cannot write ({exc.strerror})") from None
        if isinstance(exc, CaptureError):  # a file gone or changed since it was analysed
            raise EvidenceError(f"--evidence {directory}: reading back: {exc}") from None
        raise


def _chown(path: str, owner: Owner) -> None:
    if os.geteuid() == 0:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)


def _create(path: str, owner: Owner) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    if os.geteuid() == 0:
        os.fchown(fd, owner.uid, owner.gid)
    return fd


def _write_text(path: str, text: str, owner: Owner) -> None:
    with os.fdopen(_create(path, owner), "w", encoding="utf-8") as out:
        out.write(text)


def _read_back(recorded: ReadBack, folders: dict[str, str], owner: Owner) -> dict[str, Packets]:
    """One pass over the capture: every TCP packet on an SMTP port to or from each host,
    written as captured to ``<host>/smtp.pcap``."""
    found = {ip: Packets() for ip in folders}
    by_address = {ipaddress.ip_address(ip).packed: ip for ip in folders}
    ports, mirrors = recorded.ports, recorded.mirrors
    try:
        captures = [CaptureFile(path, ports=ports, mirrors=mirrors) for path in recorded.paths]
        for ts, outer_linktype, outer in by_time(captures):  # as the analysis read them
            if not isinstance(outer, bytes):  # set aside by the reader: not SMTP
                continue
            segment = dec.decode(outer_linktype, outer, ports)
            linktype, frame = outer_linktype, outer
            if not isinstance(segment, tuple):  # or a mirror's: the frame it carries
                linktype, frame, segment = dec.unwrap(linktype, frame, ports, segment, mirrors)
            if not isinstance(segment, tuple):
                continue
            key = segment[0]
            size = (len(key) - 4) // 2
            for address in (key[:size], key[size : 2 * size]):
                ip = by_address.get(address)
                if ip is not None:
                    _keep(found[ip], folders[ip], ts, linktype, frame, owner)
        for ip, packets in found.items():
            if packets.writer is None:  # nothing read back (the file was cut): an empty pcap
                _open(packets, folders[ip], dec.LINKTYPE_ETHERNET, owner)
    finally:
        for packets in found.values():
            if packets.writer is not None:
                packets.writer.close()
    return found


def _from_ring(ring: HostPackets, folder: str, owner: Owner) -> Packets:
    """The host's packets as the live capture's ring kept them."""
    packets = Packets(ring=ring)
    try:
        for ts, linktype, frame in ring.packets:
            _keep(packets, folder, ts, linktype, frame, owner)
        if packets.writer is None:
            _open(packets, folder, dec.LINKTYPE_ETHERNET, owner)
    finally:
        if packets.writer is not None:
            packets.writer.close()
    return packets


def _open(packets: Packets, folder: str, linktype: int, owner: Owner) -> PcapWriter:
    path = os.path.join(folder, "smtp.pcap")
    packets.linktype = linktype
    packets.writer = PcapWriter(os.fdopen(_create(path, owner), "wb"), path, linktype)
    return packets.writer


def _keep(
    packets: Packets, folder: str, ts: float, linktype: int, frame: bytes, owner: Owner
) -> None:
    writer = packets.writer or _open(packets, folder, linktype, owner)
    if linktype != packets.linktype:
        packets.other_link += 1
        return
    writer.write(ts, frame)
    packets.written += 1


def _write_host(folder: str, host: Prepared, packets: Packets, owner: Owner) -> None:
    for name, text in host.texts.items():
        path = os.path.join(folder, name)
        if not os.path.isdir(os.path.dirname(path)):
            os.mkdir(os.path.dirname(path), 0o700)
            _chown(os.path.dirname(path), owner)
        _write_text(path, text, owner)
    page = host.page + "\n".join(files_section(packets)) + "\n"
    _write_text(os.path.join(folder, "summary.md"), page, owner)


def session_list(sessions: list[Session]) -> list[SessionRecord]:
    return list(map(session_record, sessions))


def containment(detector: Detector, ip: str) -> contain.Containment:
    """The rules' plan for one host: port 25 allowed to the smarthost (learned or given)
    and the LAN's mail servers smtptop saw or was told of."""
    allowed = sorted(
        {*detector.smarthosts(), *detector.config.mail_servers, *detector.inbound_servers} - {ip}
    )
    seen = f"seen by smtptop {__version__} until {contain.made_when(detector.model.last_ts)}"
    return contain.Containment(ip, tuple(a for a in allowed if is_address(a)), seen)


def process_steps(model: Model, ip: str) -> str:
    """The commands that find the program on the host, for the systems its names suggest."""
    identity = model.identities.get(ip)
    host = model.hosts.get(ip)
    names = [*(identity.names.values() if identity else ()), *(host.helos if host else ())]
    return contain.process_commands(ip, model.host_sessions(ip), names)


def next_steps(detector: Detector, ip: str) -> str:
    """What the drill-down's ``c`` shows: every syntax's rules, then finding the program."""
    plan = containment(detector, ip)
    rules = [f"# --- {syntax} ---\n{write(plan)}" for syntax, write in contain.WRITERS.items()]
    return "\n".join([*rules, process_steps(detector.model, ip)])


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def transcripts(sessions: list[Session]) -> str:
    """Every kept session as the transcript view shows it, one after the other."""
    out: list[str] = []
    for session in sessions:
        out.append(f"=== {session.client} -> {session.server}  {_when(session.start)}  "
                   f"{session.outcome}  HELO {session.helo or '-'}")  # fmt: skip
        for line in session.transcript:
            clock = time.strftime("%H:%M:%S", time.gmtime(line.ts))
            out.append(f"{clock}.{int(line.ts % 1 * 1000):03d} {line.kind} {line.text}")
        if session.transcript_lines_not_kept:
            out.append(f"({plural(session.transcript_lines_not_kept, 'more line')} not kept)")
        out.append("")
    if not sessions:
        out.append("(no session of this host was kept in full)")
    return "\n".join(out) + "\n"


def _quoted(text: str) -> str:
    """Wire text as a Markdown code block no backtick in it can end."""
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    return f"{fence}text\n{inert(text)}\n{fence}"


def _longest_run(text: str, char: str) -> int:
    best = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        best = max(best, run)
    return best


def _cell(text: str) -> str:
    """Wire text in a table cell: no pipe or backslash can change the table."""
    return inert(text).replace("\\", "\\\\").replace("|", "\\|")


def timeline(host: Host) -> list[str]:
    """Sessions and rejected sessions per minute (the monitor's chart, as text rows with a
    bar): every session counted, kept in full or not."""
    first, last = int(host.first_seen // 60), int(host.last_seen // 60) + 1
    width, started, rejected = host.timeline.window(first, last, TIMELINE_ROWS)
    if not any(started):
        return ["(no session)"]
    start, most = first - first % width, max(started)
    rows = []
    for index, count in enumerate(started):
        if count:
            bar = "#" * max(1, round(count / most * TIMELINE_BAR))
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime((start + index * width) * 60))
            rows.append(f"{when}  {count:>8,}  {rejected[index]:>8,}  {bar}")
    per = "minute" if width == 1 else f"{width} minutes"
    return [f"{per} from (UTC)   sessions  rejected", *rows]


def summary(
    host: Host,
    verdict: Verdict | None,
    identity: Identity | None,
    capture: Capture,
    plan: contain.Containment,
) -> str:
    """The page for an abuse ticket or a delisting request, but for its list of files."""
    title = host.ip + (f" ({_cell(identity.name)})" if identity and identity.name else "")
    rating = f"{verdict.verdict} (score {verdict.score})" if verdict else "not judged"
    names = ", ".join(f"{_cell(n)} ({source})" for source, n in (identity.names.items()
                                                                if identity else ()))  # fmt: skip
    mac = identity.mac if identity else ""
    lines = [
        f"# SMTP evidence for {title}",
        "",
        f"smtptop rates this host **{rating}**.",
        "",
        "| | |",
        "|---|---|",
        f"| Address | {host.ip} ({'LAN' if host.lan else 'not LAN'}) |",
        f"| Names | {names or '-'} |",
        f"| MAC | {mac or '-'}{f' ({_cell(vendor(mac))})' if mac and vendor(mac) else ''} |",
        f"| First seen | {_when(host.first_seen)} |",
        f"| Last seen | {_when(host.last_seen)} |",
        f"| SMTP sessions | {host.sessions:,} to {plural(host.destinations, 'server')}; "
        f"{host.rejected_sessions:,} rejected, {host.tempfailed_sessions:,} temp-failed |",
        f"| Messages accepted | {host.accepted_messages:,} ({plural(host.recipients, 'recipient')})"
        " |",
        f"| HELO names | {', '.join(map(_cell, host.helos)) or '-'} |",
        "",
        "## Why",
        "",
    ]
    reasons = verdict.reasons if verdict else ()
    lines += [f"* {_cell(r.evidence)} ({r.signal}, {r.points} points)" for r in reasons]
    lines += ["" if reasons else "(no signal fired)", "## Rejections", ""]
    lines += _rejections(host)
    lines += [
        "",
        "## Servers",
        "",
        "| server | name | sessions | rejected |",
        "|---|---|---:|---:|",
    ]
    for row in sorted(host.servers.values(), key=lambda s: (-s.sessions, s.ip)):
        lines.append(f"| {row.ip} | {_cell(row.name) or '-'} | {row.sessions:,} | "
                     f"{row.rejected_sessions:,} |")  # fmt: skip
    if host.destinations > len(host.servers):
        lines.append(f"\n({plural(host.destinations - len(host.servers), 'more server')} "
                     "not listed)")  # fmt: skip
    lines += ["", "## Timeline", "", "```text", *timeline(host), "```"]
    if host.sessions_not_kept:
        lines.append(f"\n{plural(host.sessions_not_kept, 'session')} not kept in full are not "
                     "in the transcripts (they are in the counts and the timeline).")  # fmt: skip
    lines += ["", "## Containment", "", "On the gateway (nftables; iptables and MikroTik "
              "RouterOS are in `containment/`):", "", "```", contain.nftables(plan).rstrip(),
              "```", ""]  # fmt: skip
    lines += ["## How the capture was made", ""]
    lines += [f"* capture file: `{_cell(path)}`" for path in capture.paths]
    lines += [f"* note: {_cell(note)}" for note in capture.notes]
    lines += [
        f"* analysed by smtptop {__version__} ({build()}): `{_cell(capture.command)}`",
        f"* bundle made {_when(time.time())}",
        "",
    ]
    return "\n".join(lines) + "\n"


def files_section(packets: Packets) -> list[str]:
    lines = [
        "## Files",
        "",
        f"* `smtp.pcap`: {plural(packets.written, 'packet')} of this host's SMTP connections, "
        "both directions, as captured. **It holds whatever the wire held, AUTH credentials "
        "included: treat it as a secret.**",
    ]
    if packets.other_link:
        lines.append(f"  {plural(packets.other_link, 'packet')} on another link type could not "
                     "go into the same pcap and are left out.")  # fmt: skip
    ring = packets.ring
    if ring is not None:
        size = f"{ring.budget / MIB:g} MiB"
        lines.append(f"  They are what the live capture's evidence buffer kept (`--evidence-"
                     f"buffer` {size} for all hosts; the latest packets of each).")  # fmt: skip
        if ring.not_kept:
            lines.append(f"  **{plural(ring.not_kept, 'earlier packet')} of this host "
                         f"({ring.not_kept_bytes:,} bytes) did not fit and are not in it:** "
                         "a larger buffer, or `-w FILE`, keeps them.")  # fmt: skip
        if ring.unrecorded and not packets.written:
            beyond = plural(ring.unrecorded, "packet")
            lines.append(f"  **The buffer had no room for more hosts: {beyond} of the hosts "
                         "beyond its table were not kept, this host's among them.**")  # fmt: skip
    lines += [
        "* `summary.json`: the host's record as in `smtptop report --json`, and its sessions.",
        "* `transcripts.txt`: every session kept in full, as the transcript view shows it.",
        "* `find-process.txt`: the commands that find the program on the PC.",
        "* `containment/`: firewall rules that stop it sending mail past the smarthost.",
    ]
    return lines


def _rejections(host: Host) -> list[str]:
    """The refusals the host met, with the blocklists their texts name."""
    if not host.refusals:
        return ["(none)"]
    named: Counter[str] = Counter()
    lines: list[str] = []
    for (code, text), count in sorted(host.refusals.items(), key=lambda kv: -kv[1]):
        hits = blocklists.classify(code, text)
        for hit in hits:
            named[hit.name] += count
        lists = ", ".join(dict.fromkeys(h.name for h in hits)) or "no blocklist named"
        lines += [f"{plural(count, 'session')}, {lists}:", "", _quoted(f"{code} {text}"), ""]
    if named:
        summary = ", ".join(f"{_cell(name)} ({count:,})" for name, count in named.most_common())
        lines[:0] = [f"Blocklists named: {summary}.", ""]
    if host.refusals_not_kept:
        lines.append(f"({plural(host.refusals_not_kept, 'more refusal text')} not kept)")
    return lines
