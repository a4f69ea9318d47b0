"""Expected SMTP sessions for each corpus capture, read from the peers' own expected outputs.

The corpus pairs every capture with the expected output of the project it comes from: Zeek
btest baselines, Suricata-verify checks (and the dialog in their READMEs), Arkime session
documents and nDPI flow lists. Each peer logs a different unit, so this module turns their
outputs into claims about *our* sessions (one TCP connection to an SMTP port) and keeps only
what is comparable:

* Zeek logs one smtp.log row per mail transaction, none for a connection without MAIL, RCPT
  or STARTTLS, and only the last line of the last reply; the rows of one connection (uid) are
  merged. Its event dumps (``out``, ``smtp-events.json``) list every command and reply line.
* Suricata logs one eve event per transaction and no server replies; a check names a few
  fields of some events, so it gives partial claims unless every transaction is named.
* Arkime logs one document per session, but its address fields are lower-cased sets mixing
  envelope and header addresses, and its status-code tag is only the reply to end of data.
* nDPI lists every flow with its endpoints and whether it became encrypted, nothing more.

Anything a peer logs that we do not (MIME headers, files, alerts, anomalies) is left out.
Run ``python -m tests.conformance.expected`` for a readable summary of every capture.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PORTS: tuple[int, ...] = (25, 465, 587, 2525)

PEERS: dict[str, str] = {
    "traces/": "zeek",
    "other/OISF-suricata-verify/": "suricata",
    "other/arkime-arkime/": "arkime",
    "other/ntop-nDPI/": "ndpi",
}

# An inclusive (min, max) count; max None = no upper bound.
Range = tuple[int, int | None]


class Match(StrEnum):
    """How a peer's list relates to ours."""

    EXACT = "exact"  # same items in the same order
    SET = "set"  # same distinct items; order and repeats ignored
    SUBSEQUENCE = "subsequence"  # the expected items occur in ours in this order
    SUBSET = "subset"  # each expected item occurs in ours at least as often
    WITHIN = "within"  # each of our items is among the expected ones


@dataclass(frozen=True, slots=True)
class Items:
    """Expected list values and how they must relate to our list."""

    values: tuple[str, ...] | tuple[int, ...]
    match: Match
    casefold: bool = False  # the peer lower-cases (Arkime)
    ignore_empty: bool = False  # the peer cannot log the null sender "<>" (Zeek's mailfrom)


@dataclass(slots=True)
class ExpectedSession:
    """Claims one peer source makes about one of our sessions; None means "not stated"."""

    source: str
    client_ip: str | None = None
    client_port: int | None = None
    server_ip: str | None = None
    server_port: int | None = None
    helo: str | None = None
    helo_casefold: bool = False
    mail_from: Items | None = None
    rcpt_to: Items | None = None
    rcpt_count: Range | None = None
    reply_codes: Items | None = None
    tls: bool | None = None
    partial: bool | None = None
    accepted: Range | None = None
    span: tuple[float, float] | None = None  # first and last packet time, epoch seconds
    zeek_rows: tuple[int, ...] = ()  # 1-based data rows of the smtp.log named in source
    notes: list[str] = field(default_factory=list)

    def key(self) -> tuple[str, int, str, int] | None:
        """The connection's 4-tuple when the peer names all of it."""
        client_ip, client_port = self.client_ip, self.client_port
        server_ip, server_port = self.server_ip, self.server_port
        if client_ip is None or client_port is None or server_ip is None or server_port is None:
            return None
        return (client_ip, client_port, server_ip, server_port)

    def describe(self) -> str:
        """One readable line of what is claimed."""
        client = _endpoint(self.client_ip, self.client_port)
        parts = [f"{self.source}: {client} -> {_endpoint(self.server_ip, self.server_port)}"]
        if self.helo is not None:
            parts.append(f"helo={self.helo[:40]!r}" + ("(any case)" if self.helo_casefold else ""))
        for name, items in (
            ("mail_from", self.mail_from),
            ("rcpt_to", self.rcpt_to),
            ("codes", self.reply_codes),
        ):
            if items is not None:
                parts.append(f"{name}={items.match}{_short(items.values)}")
        if self.rcpt_count is not None:
            parts.append(f"rcpt_count={_range(self.rcpt_count)}")
        for name, value in (("tls", self.tls), ("partial", self.partial)):
            if value is not None:
                parts.append(f"{name}={value}")
        if self.accepted is not None:
            parts.append(f"accepted={_range(self.accepted)}")
        if self.span is not None:
            parts.append(f"span={self.span[0]:.3f}..{self.span[1]:.3f}")
        if self.zeek_rows:
            parts.append(f"rows={','.join(map(str, self.zeek_rows))}")
        parts.extend(f"[{note}]" for note in self.notes)
        return " ".join(parts)


@dataclass(slots=True)
class CaptureExpectation:
    """Everything the peers' outputs say about one capture run with our ports."""

    capture: str
    peer: str
    sessions: list[ExpectedSession] = field(default_factory=list)
    min_sessions: int = 0
    max_sessions: int | None = None
    packets: int | None = None  # packets in the file, where a peer counts them
    bytes: int | None = None  # their captured bytes, where a peer counts them
    excluded: list[str] = field(default_factory=list)  # peer sessions on other ports
    sources: list[str] = field(default_factory=list)  # files that gave claims or bounds
    ignored: list[str] = field(default_factory=list)  # files read for nothing comparable

    def at_least(self, count: int) -> None:
        """A source describes this many distinct sessions on our ports."""
        self.min_sessions = max(self.min_sessions, count)

    def at_most(self, count: int) -> None:
        """A source lists every connection, so we cannot have more sessions than this."""
        self.max_sessions = count if self.max_sessions is None else min(self.max_sessions, count)


@dataclass(frozen=True, slots=True)
class IndexRow:
    """A capture row of INDEX.md; its tshark-derived columns only cross-check our parsers."""

    capture: str
    frames: int
    sessions: tuple[tuple[str, str, int], ...]  # (client ip, server ip, server port)
    reply_codes: dict[int, int]


def _short(values: tuple[str, ...] | tuple[int, ...], limit: int = 6) -> str:
    shown = ", ".join(str(v)[:40] for v in values[:limit])
    more = f", ... (+{len(values) - limit})" if len(values) > limit else ""
    return f"[{shown}{more}]"


def _range(value: Range) -> str:
    low, high = value
    return str(low) if low == high else f"{low}..{'' if high is None else high}"


def _ip(text: str) -> str:
    return str(ip_address(text.strip("[]")))


def _endpoint(ip: str | None, port: int | None) -> str:
    host = ip or "?"
    return f"[{host}]:{port or '?'}" if ":" in host else f"{host}:{port or '?'}"


def corpus_root() -> Path:
    """The corpus folder: $SMTPTOP_CORPUS, else the shared corpus next to the repository;
    resolved, so that paths found under it and resolved paths compare (it may be a link)."""
    env = os.environ.get("SMTPTOP_CORPUS")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
    return root.resolve()


def peer_of(capture: str) -> str:
    """The project whose expected output comes with a capture."""
    return next(peer for prefix, peer in PEERS.items() if capture.startswith(prefix))


def index_rows(root: Path) -> list[IndexRow]:
    """The rows of the "Files" table of INDEX.md, one per capture."""
    rows = []
    in_files = False
    for line in (root / "INDEX.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_files = line == "## Files"
        if not (in_files and line.startswith("| `")):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        sessions = []
        for entry in cells[8].split("<br>"):
            client, _, server = entry.split(" helo=")[0].partition("\u2192")
            host, _, port = server.rpartition(":")
            sessions.append((_ip(client), _ip(host), int(port)))
        codes = {}
        for pair in cells[7].split():
            code, _, count = pair.partition("\u00d7")
            codes[int(code)] = int(count)
        rows.append(IndexRow(cells[0].strip("`"), int(cells[3]), tuple(sessions), codes))
    return rows


def mailbox(text: str) -> str:
    """The address of a MAIL FROM / RCPT TO argument: "FROM:<a@b> SIZE=9" -> "a@b", "<>" -> ""."""
    text = text.strip()
    head, colon, tail = text.partition(":")
    if colon and head.strip().upper() in ("FROM", "TO"):
        text = tail.strip()
    if text.startswith("<"):
        return text[1:].partition(">")[0]
    return text.split()[0] if text else ""


def _is_last_chunk(bdat_argument: str) -> bool:
    words = bdat_argument.split()
    return len(words) == 2 and words[1].upper() == "LAST"


# --- Zeek -----------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), text)


@dataclass(slots=True)
class ZeekLog:
    """A Zeek ASCII log or zeek-cut output: field names and rows (unset fields are None)."""

    fields: list[str]
    rows: list[dict[str, str | None]]
    set_separator: str = ","

    def items(self, row: dict[str, str | None], name: str) -> list[str]:
        """The elements of a set or vector field ("(empty)" and unset give none)."""
        value = row.get(name)
        return [_unescape(v) for v in value.split(self.set_separator)] if value else []


def parse_zeek_log(text: str) -> ZeekLog:
    """Parse a log with a ``#fields`` header, or zeek-cut output whose first line names fields."""
    separator, set_separator, empty, unset = "\t", ",", "(empty)", "-"
    fields: list[str] | None = None
    rows: list[dict[str, str | None]] = []
    for line in text.splitlines():
        if line.startswith("#separator "):
            separator = _unescape(line.split(" ", 1)[1])
        elif line.startswith("#"):
            key, _, value = line[1:].partition(separator)
            if key == "set_separator":
                set_separator = value
            elif key == "empty_field":
                empty = value
            elif key == "unset_field":
                unset = value
            elif key == "fields":
                fields = value.split(separator)
        elif line:
            values = line.split(separator)
            if fields is None:
                fields = values
                continue
            rows.append(
                {
                    name: None if v == unset else "" if v == empty else v
                    for name, v in zip(fields, values, strict=True)
                }
            )
    return ZeekLog(fields or [], rows, set_separator)


@dataclass(frozen=True, slots=True)
class ZeekEvent:
    """One smtp_request, smtp_reply (one line) or smtp_starttls event of a connection."""

    uid: str
    kind: str  # "request", "reply" or "starttls"
    command: str  # the request's verb, or the command Zeek pairs the reply with
    text: str  # the request argument or the reply line's text
    code: int = 0
    more: bool | None = None  # cont_resp: more lines follow; None when the dump omits it


_REQUEST_LINE = re.compile(r"^(C\w+), T, ([^,]*), (.*)$")


def parse_zeek_out(text: str) -> list[ZeekEvent]:
    """Events printed by a btest script: "smtp_reply, uid, F, code, cmd, msg" and
    "smtp_request, uid, T, cmd, arg", or bare requests "uid, T, cmd, arg"."""
    events = []
    for line in text.splitlines():
        if line.startswith("smtp_reply, "):
            _, uid, _, code, command, message = line.split(", ", 5)
            events.append(ZeekEvent(uid, "reply", command, message, int(code)))
        elif line.startswith("smtp_request, "):
            _, uid, _, command, argument = line.split(", ", 4)
            events.append(ZeekEvent(uid, "request", command, argument))
        elif match := _REQUEST_LINE.match(line):
            events.append(ZeekEvent(match[1], "request", match[2], match[3]))
    return events


def parse_zeek_event_json(
    text: str,
) -> tuple[list[ZeekEvent], dict[str, tuple[str, int, str, int]]]:
    """Events of DumpEvents' JSON output (concatenated documents) and each uid's endpoints."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    decoder = json.JSONDecoder()
    events: list[ZeekEvent] = []
    endpoints: dict[str, tuple[str, int, str, int]] = {}
    position = 0
    while True:
        while position < len(body) and body[position].isspace():
            position += 1
        if position == len(body):
            return events, endpoints
        document, position = decoder.raw_decode(body, position)
        args = document["args"]
        uid, conn_id = args["c"]["uid"], args["c"]["id"]
        endpoints[uid] = (
            _ip(conn_id["orig_h"]),
            conn_id["orig_p"]["port"],
            _ip(conn_id["resp_h"]),
            conn_id["resp_p"]["port"],
        )
        if document["event"] == "smtp_request":
            events.append(ZeekEvent(uid, "request", args["command"], args["arg"]))
        elif document["event"] == "smtp_reply":
            events.append(
                ZeekEvent(uid, "reply", args["cmd"], args["msg"], args["code"], args["cont_resp"])
            )
        elif document["event"] == "smtp_starttls":
            events.append(ZeekEvent(uid, "starttls", "", ""))


def zeek_trace(folder: Path) -> str | None:
    """The capture a baseline's btest runs on: "$TRACES/smtp/x.pcap" is "traces/smtp__x.pcap"."""
    test_txt = (folder / "TEST.txt").read_text(encoding="utf-8")
    match = re.search(r"\$TRACES/(\S+?\.pcap(?:ng)?(?:\.gz)?)", test_txt)
    return "traces/" + match[1].replace("/", "__") if match else None


def _conn_key(row: dict[str, str | None]) -> tuple[str, int, str, int] | None:
    orig_h, orig_p = row.get("id.orig_h"), row.get("id.orig_p")
    resp_h, resp_p = row.get("id.resp_h"), row.get("id.resp_p")
    if orig_h is None or orig_p is None or resp_h is None or resp_p is None:
        return None
    return (_ip(orig_h), int(orig_p), _ip(resp_h), int(resp_p))


def _reply_code(reply: str | None) -> int:
    return int(reply[:3]) if reply else 0


def zeek_session_from_rows(
    rows: list[tuple[int, dict[str, str | None]]], log: ZeekLog, source: str, weirds: set[str]
) -> ExpectedSession:
    """Merge one connection's smtp.log rows (one per mail transaction) into session claims."""
    numbers = tuple(number for number, _ in rows)
    session = ExpectedSession(f"{source} rows {_range((numbers[0], numbers[-1]))}")
    session.zeek_rows = numbers
    last = rows[-1][1]
    # helo: Zeek copies the latest HELO/EHLO argument into every row; the last row has the latest.
    session.helo = last["helo"]
    # mailfrom: each MAIL FROM flushes the previous transaction, so rows and MAIL FROM commands
    # match one to one; Zeek leaves mailfrom unset for "<>", so our "" entries are not compared.
    mails = tuple(row["mailfrom"] for _, row in rows if row["mailfrom"] is not None)
    session.mail_from = Items(mails, Match.EXACT, ignore_empty=True)
    # rcptto is a set per transaction (duplicates merged, order lost); addresses beyond
    # max_rcptto_addresses (weird smtp_too_many_rcptto_addresses) are dropped.
    per_row = [log.items(row, "rcptto") for _, row in rows]
    addresses = tuple(sorted({address for row in per_row for address in row}))
    capped = "smtp_too_many_rcptto_addresses" in weirds
    session.rcpt_to = Items(addresses, Match.SUBSET if capped else Match.SET)
    if any(per_row):
        session.rcpt_count = (sum(map(len, per_row)), None)
    # last_reply is the last line of the last reply before a row was written; consecutive rows
    # may quote the same reply, so repeats are collapsed.
    replies = [row["last_reply"] for _, row in rows if row["last_reply"]]
    collapsed = [reply for i, reply in enumerate(replies) if i == 0 or reply != replies[i - 1]]
    if collapsed:
        session.reply_codes = Items(tuple(map(_reply_code, collapsed)), Match.SUBSEQUENCE)
    session.tls = any(row["tls"] == "T" for _, row in rows)
    # A row ends with a message when the next row's trans_depth is one higher (the reply to "."
    # or to BDAT LAST bumps it); its last_reply is then that reply. For the last row it is
    # inferred: after RCPT, a 2xx other than 220/221 is the end-of-data reply unless the
    # connection died right after a MAIL/RCPT/RSET reply.
    accepted = 0
    for index, (_, row) in enumerate(rows):
        code = _reply_code(row["last_reply"])
        if index + 1 < len(rows):
            ended = int(rows[index + 1][1]["trans_depth"] or 0) > int(row["trans_depth"] or 0)
        else:
            ended = code not in (220, 221) and bool(per_row[index])
            if ended and 200 <= code < 300:
                session.notes.append("last row's acceptance inferred from last_reply")
        if ended and 200 <= code < 300:
            accepted += 1
    session.accepted = (accepted, accepted)
    if "smtp_excessive_invalid_mail_transactions" in weirds:
        # Zeek disabled its analyzer (a lowered max_invalid_mail_transactions): the rows cover
        # only the start of the connection.
        session.mail_from = Items(mails, Match.SUBSEQUENCE, ignore_empty=True)
        session.rcpt_to = Items(addresses, Match.SUBSET)
        session.tls = None
        session.accepted = (accepted, None)
        session.notes.append("analyzer disabled: rows cover the start only")
    return session


def zeek_session_from_events(
    events: list[ZeekEvent], source: str, with_replies: bool
) -> ExpectedSession:
    """Session claims from one connection's smtp events, in the order Zeek raised them."""
    helos: list[str] = []
    mails: list[str] = []
    rcpts: list[str] = []
    codes: list[int] = []
    chunks: deque[str] = deque()  # BDAT arguments awaiting their reply
    accepted = 0
    previous: ZeekEvent | None = None  # the last reply line, if no request came since
    for event in events:
        if event.kind == "request":
            previous = None
            verb = event.command.upper()
            if verb in ("HELO", "EHLO") and event.text:  # an empty one keeps the known name
                helos.append(event.text)
            elif verb == "MAIL":
                mails.append(mailbox(event.text))
            elif verb == "RCPT":
                rcpts.append(mailbox(event.text))
            elif verb == "BDAT":
                chunks.append(event.text)
        elif event.kind == "reply":
            # Zeek raises smtp_reply per line. A line continues a reply when the previous one
            # said so (cont_resp); dumps without cont_resp continue a reply on the same code
            # and paired command with no request in between (true in this corpus: only EHLO
            # replies span lines, and nothing is pipelined behind EHLO).
            continues = previous is not None and (
                previous.more
                if previous.more is not None
                else (previous.code, previous.command) == (event.code, event.command)
            )
            previous = event
            if continues:
                continue
            codes.append(event.code)
            if event.command == "BDAT" and chunks:
                end_of_data = _is_last_chunk(chunks.popleft())
            else:
                end_of_data = event.command == "."
            if end_of_data and 200 <= event.code < 300:
                accepted += 1
    session = ExpectedSession(source)
    if helos:
        session.helo = helos[-1]
    # Zeek raises smtp_request for every known verb, so every MAIL and RCPT is there.
    session.mail_from = Items(tuple(mails), Match.EXACT)
    session.rcpt_to = Items(tuple(rcpts), Match.EXACT)
    if with_replies:
        session.reply_codes = Items(tuple(codes), Match.EXACT)
        session.accepted = (accepted, accepted)
    return session


_ZEEK_IGNORED = {
    "smtp-events.log": "text form of smtp-events.json",
    "http.log": "HTTP of the CONNECT tunnel",
    "tunnel.log": "tunnel discovery",
    "ssl.log": "TLS handshake details",
    "x509.log": "certificates",
    "out": "no smtp_request/smtp_reply events",
    "output": "no rcptto count",
}


def _with_endpoints(
    session: ExpectedSession, key: tuple[str, int, str, int] | None
) -> ExpectedSession:
    if key is not None:
        session.client_ip, session.client_port, session.server_ip, session.server_port = key
    return session


@dataclass(slots=True)
class _Baseline:
    """One btest baseline folder while it is being read."""

    exp: CaptureExpectation
    ports: tuple[int, ...]
    endpoints: dict[str, tuple[str, int, str, int]] = field(default_factory=dict)
    smtp_uids: set[str] = field(default_factory=set)  # connections shown carrying SMTP
    described: set[str] = field(default_factory=set)  # connections a claim is about
    used: set[str] = field(default_factory=set)  # file names that gave something

    def in_ports(self, uid: str) -> bool:
        key = self.endpoints.get(uid)
        return key is None or key[3] in self.ports

    def add(self, uid: str, session: ExpectedSession) -> None:
        key = self.endpoints.get(uid)
        if key is not None and key[3] not in self.ports:
            self.exp.excluded.append(f"{session.source}: server port {key[3]}")
            return
        self.exp.sessions.append(_with_endpoints(session, key))
        self.described.add(uid)
        self.smtp_uids.add(uid)


def _zeek_baseline(folder: Path, exp: CaptureExpectation, rel: str, ports: tuple[int, ...]) -> None:
    """Add what one btest baseline folder says about the trace its TEST.txt runs on."""
    texts = {
        path.name: path.read_text(encoding="utf-8", errors="replace")
        for path in sorted(folder.iterdir())
    }
    logs = {
        name: parse_zeek_log(text)
        for name, text in texts.items()
        if name.endswith((".log", ".cut"))
    }
    base = _Baseline(exp, ports, used={"TEST.txt"})
    for log in logs.values():
        for row in log.rows:
            key = _conn_key(row)
            if row.get("uid") and key is not None:
                base.endpoints[row["uid"] or ""] = key

    weirds: dict[str, set[str]] = defaultdict(set)
    for row in logs["weird.log"].rows if "weird.log" in logs else []:
        uid, name = row.get("uid"), row.get("name") or ""
        if uid and ((row.get("source") or "").startswith("SMTP") or name.startswith("smtp_")):
            weirds[uid].add(name)
            base.smtp_uids.add(uid)
            base.used.add("weird.log")

    if "smtp.log" in logs:
        base.used.add("smtp.log")
        by_uid: dict[str, list[tuple[int, dict[str, str | None]]]] = defaultdict(list)
        for number, row in enumerate(logs["smtp.log"].rows, start=1):
            by_uid[row["uid"] or ""].append((number, row))
        for uid, rows in by_uid.items():
            base.add(
                uid, zeek_session_from_rows(rows, logs["smtp.log"], f"{rel}/smtp.log", weirds[uid])
            )

    if events := parse_zeek_out(texts.get("out", "")):
        base.used.add("out")
        with_replies = any(event.kind == "reply" for event in events)
        for uid in dict.fromkeys(event.uid for event in events):
            mine = [event for event in events if event.uid == uid]
            base.add(uid, zeek_session_from_events(mine, f"{rel}/out", with_replies))

    if "smtp-events.json" in texts:
        base.used.add("smtp-events.json")
        events, endpoints = parse_zeek_event_json(texts["smtp-events.json"])
        base.endpoints.update(endpoints)
        for uid in dict.fromkeys(event.uid for event in events):
            mine = [event for event in events if event.uid == uid]
            session = zeek_session_from_events(mine, f"{rel}/smtp-events.json", with_replies=True)
            # DumpEvents with include=/smtp_/ would print smtp_starttls too.
            session.tls = any(event.kind == "starttls" for event in mine)
            base.add(uid, session)

    count = re.search(r"^rcptto, (\d+)$", texts.get("output", ""), re.MULTILINE)
    if count and len(weirds) == 1:
        # address-limits prints |rcptto| after the limit was applied; the weird says more
        # addresses were sent than the limit kept.
        base.used.add("output")
        uid, names = next(iter(weirds.items()))
        session = ExpectedSession(f"{rel}/output")
        session.rcpt_count = (int(count[1]) + ("smtp_too_many_rcptto_addresses" in names), None)
        base.add(uid, session)

    if "intel.log" in logs:
        # Intel::seen reports indicators found in the envelope (IN_MAIL_FROM, IN_RCPT_TO) and in
        # headers (IN_FROM, IN_TO, ...); only the envelope ones are ours to compare.
        base.used.add("intel.log")
        seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for row in logs["intel.log"].rows:
            seen[row["uid"] or ""][row["seen.where"] or ""].append(row["seen.indicator"] or "")
        for uid, where in seen.items():
            session = ExpectedSession(f"{rel}/intel.log")
            if where.get("SMTP::IN_MAIL_FROM"):
                session.mail_from = Items(tuple(where["SMTP::IN_MAIL_FROM"]), Match.SUBSET)
            if where.get("SMTP::IN_RCPT_TO"):
                session.rcpt_to = Items(tuple(where["SMTP::IN_RCPT_TO"]), Match.SUBSET)
            base.add(uid, session)

    for name in ("files.log", "files.log.cut", "files.cut"):
        if name in logs:
            # Files extracted from mail: the connection carried SMTP, nothing more to compare.
            base.used.add(name)
            base.smtp_uids.update(row["uid"] or "" for row in logs[name].rows if row.get("uid"))

    for uid in sorted(base.smtp_uids - base.described):
        if uid in base.endpoints:
            base.add(uid, ExpectedSession(f"{rel}: connection of SMTP weirds or files"))

    for name in ("conn.log", "conn.log.cut"):
        if name in logs:
            # conn.log lists every connection of the trace: an upper bound on our sessions.
            base.used.add(name)
            rows = logs[name].rows
            exp.at_most(sum(1 for row in rows if _resp_port(row) in (*ports, None)))
            for row in rows:
                key = _conn_key(row)
                if key is not None and key[3] in ports and int(row.get("missed_bytes") or 0):
                    session = ExpectedSession(f"{rel}/{name}", partial=True)
                    session.notes.append(f"missed_bytes={row['missed_bytes']}")
                    exp.sessions.append(_with_endpoints(session, key))

    exp.at_least(sum(1 for uid in base.smtp_uids if base.in_ports(uid)))
    for name in texts:
        if name in base.used:
            exp.sources.append(f"{rel}/{name}")
        else:
            exp.ignored.append(f"{rel}/{name}: {_ZEEK_IGNORED.get(name, 'MIME or file content')}")


def _resp_port(row: dict[str, str | None]) -> int | None:
    value = row.get("id.resp_p")
    return int(value) if value else None


# --- Suricata -------------------------------------------------------------------------------


def _version(value: object) -> tuple[int, ...]:
    return tuple(int(part) for part in str(value).split("."))


def _requires_ok(requires: dict[str, object] | None, version: tuple[int, ...]) -> bool:
    """Whether a check applies to Suricata at this version (other requirements are assumed met)."""
    for key, value in (requires or {}).items():
        wanted = _version(value)
        if key == "min-version" and version < wanted:
            return False
        if key == "lt-version" and version >= wanted:
            return False
        if key == "version" and version[: len(wanted)] != wanted:
            return False
    return True


def suricata_version(root: Path) -> tuple[int, ...]:
    """The newest version any check names: checks for older versions show superseded behaviour."""
    versions = [(0,)]
    for path in (root / "other" / "OISF-suricata-verify").glob("*/test.yaml"):
        text = path.read_text(encoding="utf-8")
        versions += [_version(v) for v in re.findall(r"min-version: *([\d.]+)", text)]
    return max(versions)


@dataclass(slots=True)
class Transcript:
    """The "--->" / "<---" dialog a Suricata-verify README shows."""

    complete: bool  # it starts at the server greeting
    helos: list[str] = field(default_factory=list)
    mail_from: list[str] = field(default_factory=list)
    rcpt_to: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    accepted: int = 0


def parse_transcript(text: str) -> Transcript | None:
    """Parse the dialog inside code fences; a reply's "NNN-" lines continue it (FIFO pairing)."""
    fenced = text.split("```")[1::2]
    lines = [
        line.rstrip()
        for block in fenced
        for line in block.splitlines()
        if line.startswith(("<--- ", "---> "))
    ]
    if not lines:
        return None
    transcript = Transcript(complete=lines[0].startswith("<--- 220"))
    pending: deque[tuple[str, str]] = deque()
    open_code: int | None = None  # code of a reply whose last line ended in "-"
    for line in lines:
        body = re.sub(r"\s+\*\*\*.*\*\*\*$", "", line[5:]).strip()
        if line.startswith("<---"):
            code, more = int(body[:3]), body[3:4] == "-"
            if code != open_code:
                transcript.codes.append(code)
                verb, argument = pending.popleft() if pending else ("", "")
                end_of_data = verb == "." or (verb == "BDAT" and _is_last_chunk(argument))
                if end_of_data and 200 <= code < 300:
                    transcript.accepted += 1
            open_code = code if more else None
            continue
        open_code = None
        if body.startswith("("):  # "(message body, N bytes)" stands for data, not commands
            continue
        verb, _, argument = body.partition(" ")
        verb = verb.upper()
        pending.append((verb, argument))
        if verb in ("HELO", "EHLO") and argument.strip():  # an empty one keeps the known name
            transcript.helos.append(argument.strip())
        elif verb == "MAIL":
            transcript.mail_from.append(mailbox(argument))
        elif verb == "RCPT":
            transcript.rcpt_to.append(mailbox(argument))
    return transcript


def _keys(value: object) -> set[str]:
    """The keys of a not-has-key entry: one name or a list of names."""
    if isinstance(value, list):
        return {str(key) for key in value}
    return set() if value is None else {str(value)}


def _rcpt_list(match: dict[str, object]) -> list[str]:
    rcpts = []
    while f"smtp.rcpt_to[{len(rcpts)}]" in match:
        rcpts.append(mailbox(str(match[f"smtp.rcpt_to[{len(rcpts)}]"])))
    return rcpts


def _suricata_session(match: dict[str, object], source: str) -> ExpectedSession | None:
    """Claims of one eve event that a check expects exactly once, if it concerns SMTP."""
    event = match.get("event_type")
    smtp_fields = any(key.startswith("smtp.") for key in match)
    flow = event == "flow" and "smtp" in (match.get("app_proto"), match.get("app_proto_tc"))
    anomaly = event == "anomaly" and "src_port" in match
    if not (smtp_fields or flow or anomaly or event == "smtp"):
        return None
    session = ExpectedSession(source)
    if "src_ip" in match:
        session.client_ip = _ip(str(match["src_ip"]))
    if "src_port" in match:
        session.client_port = int(str(match["src_port"]))
    if "dest_ip" in match:
        session.server_ip = _ip(str(match["dest_ip"]))
    if "dest_port" in match:
        session.server_port = int(str(match["dest_port"]))
    if "smtp.helo" in match:
        # Suricata cuts an over-long line and keeps its CR; the argument is what precedes it.
        session.helo = str(match["smtp.helo"]).rstrip("\r\n")
    # One event is one transaction: its sender and recipients are some of our session's.
    if "smtp.mail_from" in match:
        session.mail_from = Items((mailbox(str(match["smtp.mail_from"])),), Match.SUBSET)
    if rcpts := _rcpt_list(match):
        session.rcpt_to = Items(tuple(rcpts), Match.SUBSEQUENCE)
    if flow and match.get("app_proto") == "tls":
        # The client spoke TLS from the start (implicit TLS), whatever the server answered.
        session.tls = True
    return session


def _suricata_transactions(
    txs: dict[int, dict[str, object]], total: int | None, source: str
) -> ExpectedSession | None:
    """Our session's envelope as the concatenation of Suricata's transactions in tx_id order:
    exact when the checks name every transaction and close every list, else in order only."""
    every = total is not None and set(txs) == set(range(total))
    if len(txs) < 2 and not every:
        return None
    mails: list[str] = []
    rcpts: list[str] = []
    mails_closed = rcpts_closed = every
    for tx_id in sorted(txs):
        match = txs[tx_id]
        absent = _keys(match.get("not-has-key"))
        if "smtp.mail_from" in match:
            mails.append(mailbox(str(match["smtp.mail_from"])))
        elif "smtp.mail_from" not in absent:
            mails_closed = False
        listed = _rcpt_list(match)
        rcpts += listed
        if not ({f"smtp.rcpt_to[{len(listed)}]", "smtp.rcpt_to"} & absent):
            rcpts_closed = False
    session = ExpectedSession(f"{source} transactions {','.join(map(str, sorted(txs)))}")
    if mails or mails_closed:
        session.mail_from = Items(tuple(mails), Match.EXACT if mails_closed else Match.SUBSEQUENCE)
    if rcpts or rcpts_closed:
        session.rcpt_to = Items(tuple(rcpts), Match.EXACT if rcpts_closed else Match.SUBSEQUENCE)
    return session if session.mail_from or session.rcpt_to else None


def _suricata_test(
    root: Path,
    folder: Path,
    expectations: dict[str, CaptureExpectation],
    ports: tuple[int, ...],
    version: tuple[int, ...],
) -> None:
    """Add what one Suricata-verify test (test.yaml and README.md) says about its pcap."""
    spec = yaml.safe_load((folder / "test.yaml").read_text(encoding="utf-8"))
    if "pcap" in spec:
        pcap = (folder / spec["pcap"]).resolve()
    else:
        pcap = next(p for p in sorted(folder.iterdir()) if p.suffix in (".pcap", ".pcapng"))
    exp = expectations.get(pcap.relative_to(root.resolve()).as_posix())
    rel = folder.relative_to(root).as_posix()
    if exp is None:
        return
    if not _requires_ok(spec.get("requires"), version):
        exp.ignored.append(f"{rel}/test.yaml: requires {spec['requires']}")
        return
    exp.sources.append(f"{rel}/test.yaml")
    source = f"{rel}/test.yaml"
    # With --simulate-ips Suricata drops the flow on a firewall verdict and logs no later
    # transaction; the capture itself is complete, so event counts there say nothing about us.
    inline = "--simulate-ips" in (spec.get("args") or [])
    total: int | None = None
    txs: dict[int, dict[str, object]] = {}
    untagged: list[dict[str, object]] = []
    clients: set[int] = set()
    smtp_seen = False
    helo_reset = False  # a duplicate HELO/EHLO: Suricata keeps the first, we the latest
    for check in spec.get("checks") or []:
        if "stats" in check:
            stats = check["stats"]
            if "decoder.pkts" in stats:
                exp.packets = int(stats["decoder.pkts"])
            if "decoder.bytes" in stats:
                exp.bytes = int(stats["decoder.bytes"])
            if stats.get("app_layer.tx.smtp"):
                total, smtp_seen = int(stats["app_layer.tx.smtp"]), True
            continue
        check_filter = check.get("filter") or {}
        match = check_filter.get("match") or {}
        if not _requires_ok(check_filter.get("requires"), version) or not check_filter.get("count"):
            continue  # "count: 0" checks are about alerts, drops or anomalies, not our sessions
        count = int(check_filter["count"])
        if match.get("anomaly.event") == "DUPLICATE_FIELDS":
            helo_reset = True
        if set(match) == {"event_type"} and match["event_type"] == "smtp":
            total, smtp_seen = count, True
            continue
        session = _suricata_session(match, source)
        smtp_seen |= session is not None
        if session is None or count != 1:
            continue
        if session.server_port is not None and session.server_port not in ports:
            exp.excluded.append(f"{source}: server port {session.server_port}")
            continue
        if session.client_port is not None:
            clients.add(session.client_port)
        # Several events of one transaction (smtp, fileinfo, alert) repeat the same fields.
        if session != ExpectedSession(source) and session not in exp.sessions:
            exp.sessions.append(session)
        if match.get("event_type") == "smtp" and "tx_id" in match:
            txs.setdefault(int(match["tx_id"]), {}).update(match)
        elif match.get("event_type") in ("smtp", None):
            untagged.append(match)
    if total == 1 and not txs:
        txs[0] = {key: value for match in untagged for key, value in match.items()}
    if not inline and (combined := _suricata_transactions(txs, total, source)):
        exp.sessions.append(combined)

    readme = folder / "README.md"
    transcript = parse_transcript(readme.read_text(encoding="utf-8")) if readme.exists() else None
    if transcript is not None:
        exp.sources.append(f"{rel}/README.md")
        exp.sessions.append(_transcript_session(transcript, f"{rel}/README.md"))
        # The dialog shows whether a later HELO/EHLO changed the argument Suricata keeps.
        helo_reset = len(set(transcript.helos)) > 1
        smtp_seen = True
    elif readme.exists():
        exp.ignored.append(f"{rel}/README.md: no dialog transcript")
    if helo_reset:
        for session in exp.sessions:
            if session.source == source and session.helo is not None:
                session.helo = None
                session.notes.append("helo not compared: Suricata keeps the first HELO/EHLO")
    exp.at_least(max(len(clients), int(smtp_seen)))


def _transcript_session(transcript: Transcript, source: str) -> ExpectedSession:
    """A README dialog shown from the greeting is the whole session; otherwise only a part."""
    match = Match.EXACT if transcript.complete else Match.SUBSEQUENCE
    session = ExpectedSession(source)
    if transcript.helos:
        session.helo = transcript.helos[-1]
    session.mail_from = Items(tuple(transcript.mail_from), match)
    session.rcpt_to = Items(tuple(transcript.rcpt_to), match)
    session.reply_codes = Items(tuple(transcript.codes), match)
    if transcript.complete:
        session.accepted = (transcript.accepted, transcript.accepted)
    elif transcript.accepted:
        session.accepted = (transcript.accepted, None)
    return session


# --- Arkime ---------------------------------------------------------------------------------


def _arkime_session(body: dict[str, Any], source: str) -> ExpectedSession:
    """Claims of one Arkime session document."""
    email = body.get("email", {})
    tags = body.get("tags", [])
    session = ExpectedSession(source)
    session.client_ip, session.client_port = _ip(body["source"]["ip"]), body["source"]["port"]
    session.server_ip = _ip(body["destination"]["ip"])
    session.server_port = body["destination"]["port"]
    session.span = (body["firstPacket"] / 1000, body["lastPacket"] / 1000)
    hellos = email.get("smtpHello", [])
    if len(hellos) == 1:  # a set of every HELO/EHLO argument, lower-cased
        session.helo, session.helo_casefold = hellos[0], True
    # Arkime tags STARTTLS on the command, not on the 220, then re-detects SMTP in whatever
    # plaintext follows (smtp-decrypted.pcap has the decrypted dialog): what it logs after the
    # STARTTLS is invisible to us, so addresses are only an upper bound and codes not compared.
    starttls = "smtp:starttls" in tags
    protocols = body.get("protocol", [])
    if "tls" in protocols:
        session.tls = True
    elif not starttls:
        session.tls = False
    # email.src / email.dst hold MAIL FROM / RCPT TO plus the From / To / Cc header addresses
    # once headers were parsed (email.header present): then ours are only among them.
    envelope_only = "header" not in email and not starttls
    for name, key in (("mail_from", "src"), ("rcpt_to", "dst")):
        if key in email or envelope_only:
            items = Items(
                tuple(email.get(key, [])), Match.SET if envelope_only else Match.WITHIN, True
            )
            setattr(session, name, items)
    codes = sorted(
        {int(tag.rsplit(":", 1)[1]) for tag in tags if tag.startswith("smtp:statuscode:")}
    )
    if codes and not starttls:
        # smtp:statuscode:N is the server's first line after the client's "." (a set).
        session.reply_codes = Items(tuple(codes), Match.SUBSET)
        accepted_any = any(200 <= code < 300 for code in codes)
        session.accepted = (1, None) if accepted_any else (0, 0)
    return session


def _arkime_test(
    root: Path, path: Path, expectations: dict[str, CaptureExpectation], ports: tuple[int, ...]
) -> None:
    exp = expectations.get(path.with_suffix(".pcap").relative_to(root).as_posix())
    if exp is None:
        return
    source = path.relative_to(root).as_posix()
    exp.sources.append(source)
    in_ports = 0
    for number, document in enumerate(json.loads(path.read_text(encoding="utf-8"))["sessions3"]):
        body = document["body"]
        if body.get("ipProtocol") != 6:
            continue
        port = body["destination"]["port"]
        if port not in ports:
            exp.excluded.append(f"{source} session {number}: server port {port}")
            continue
        in_ports += 1
        exp.sessions.append(_arkime_session(body, f"{source} session {number}"))
    # Arkime writes a document for every session of the pcap.
    exp.at_least(in_ports)
    exp.at_most(in_ports)


# --- nDPI -----------------------------------------------------------------------------------

_NDPI_FLOW = re.compile(r"^\s*\d+\s+TCP\s+(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(.*)$")


def _ndpi_out(
    root: Path, path: Path, expectations: dict[str, CaptureExpectation], ports: tuple[int, ...]
) -> None:
    exp = expectations.get(path.relative_to(root).as_posix().removesuffix(".out"))
    if exp is None:
        return
    source = path.relative_to(root).as_posix()
    exp.sources.append(source)
    in_ports = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        flow = _NDPI_FLOW.match(line)
        if flow is None:
            continue
        left, right = (_ip(flow[1]), int(flow[2])), (_ip(flow[3]), int(flow[4]))
        client, server = (
            (left, right) if right[1] in ports or left[1] not in ports else (right, left)
        )
        if server[1] not in ports:
            exp.excluded.append(f"{source}: flow {left} <-> {right}")
            continue
        in_ports += 1
        protocol = re.search(r"\[proto: [\d.]+/([^\]]+)\]", flow[5])
        name = protocol[1] if protocol else ""
        session = ExpectedSession(f"{source} {name}")
        session.client_ip, session.client_port = client
        session.server_ip, session.server_port = server
        # nDPI names a flow SMTPS (Mail_SMTPS in older releases) or TLS once it carries TLS,
        # whether from the start (465) or after STARTTLS was accepted; plain SMTP stays SMTP.
        session.tls = "SMTPS" in name or "TLS" in name
        exp.sessions.append(session)
    # ndpiReader prints every flow it saw.
    exp.at_least(in_ports)
    exp.at_most(in_ports)


# --- all peers ------------------------------------------------------------------------------


def load_expectations(
    root: Path, ports: tuple[int, ...] = DEFAULT_PORTS
) -> dict[str, CaptureExpectation]:
    """Expectations for every capture of INDEX.md, from every peer file that concerns it."""
    expectations = {
        row.capture: CaptureExpectation(row.capture, peer_of(row.capture))
        for row in index_rows(root)
    }
    for folder in sorted((root / "baselines").iterdir()):
        capture = zeek_trace(folder)
        if capture in expectations:
            exp = expectations[capture]
            _zeek_baseline(folder, exp, folder.relative_to(root).as_posix(), ports)
    version = suricata_version(root)
    for test_yaml in sorted((root / "other" / "OISF-suricata-verify").glob("*/test.yaml")):
        _suricata_test(root, test_yaml.parent, expectations, ports, version)
    for path in sorted((root / "other" / "arkime-arkime").glob("*.test")):
        _arkime_test(root, path, expectations, ports)
    for path in sorted((root / "other" / "ntop-nDPI").glob("*.out")):
        _ndpi_out(root, path, expectations, ports)
    for exp in expectations.values():
        exp.at_least(len({s.key() for s in exp.sessions} - {None}))
    return expectations


def summary(expectations: dict[str, CaptureExpectation]) -> str:
    """A readable listing of every capture's expectation."""
    lines = []
    for capture, exp in expectations.items():
        high = "?" if exp.max_sessions is None else exp.max_sessions
        packets = "" if exp.packets is None else f", {exp.packets} packets / {exp.bytes} bytes"
        lines.append(f"{capture} [{exp.peer}] sessions {exp.min_sessions}..{high}{packets}")
        lines += [f"    {session.describe()}" for session in exp.sessions]
        lines += [f"    excluded: {text}" for text in exp.excluded]
        lines += [f"    ignored: {text}" for text in exp.ignored]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(load_expectations(corpus_root())))
