"""Zeek's logs as a source: ``conn.log``, ``smtp.log``, ``dhcp.log`` and ``dns.log`` lines
turned into the engine's event rows (:mod:`smtptop.wire`), so that one model, one detector
and one set of views serve packets and Zeek alike.

Where a network outgrows one machine, Zeek's workers parse SMTP on many cores and write these
logs; smtptop reads them instead of packets.  This module is pure: it is fed bytes and returns
rows; finding, reading and following the files is :mod:`smtptop.zeekfiles`'.

What the rows can say is what the logs carry (the README's "Zeek's logs instead of packets"):

* a session per ``conn.log`` connection to an SMTP port (``--ports``), TCP only: its start,
  end, bytes, packets and how it ended (``conn_state``); ``uid`` joins it to its
  ``smtp.log`` rows;
* per ``smtp.log`` row (one mail transaction): the HELO name, MAIL FROM, the RCPT TO
  addresses (a set: order and repeats are lost), whether STARTTLS was done, and the last
  line of the last reply before the row was written (``last_reply``); never the other
  replies, so a rejected RCPT followed by an accepted one, or by QUIT, is not seen as a
  rejection, and a session refused at the greeting has no row at all;
* which command the last reply answers is inferred: 221 QUIT, 354 DATA, 235/334/535/538
  AUTH, 220 with TLS STARTTLS; otherwise the end of data when the row carries a message's
  headers (date, from, subject, message-id, user agent, files), else the last RCPT, MAIL or
  HELO it carries;
* names and MAC addresses from ``dhcp.log`` (host name, client FQDN), DNS lookups (MX
  counts, NXDOMAIN) and PTR answers from ``dns.log``.

No transcript, no client dialect and no QUIT or pre-greeting talk: the model is marked as
fed from logs (:attr:`smtptop.model.Model.from_logs`) and the views and the detector say so.

Bad input is counted, never raised: a line that is not JSON or has the wrong number of
fields, a line before any ``#fields`` header, a missing field or a value that does not parse,
a line over :data:`MAX_LINE`; each reason with its first example (:class:`Problems`).
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from smtptop.identity import address_of_reverse_name
from smtptop.text import inert, wire_text
from smtptop.wire import (
    CLOSED,
    COMMAND,
    DNS_LOOKUP,
    MESSAGE_END,
    OPENED,
    REPLY,
    SIGHTING,
    TLS_STARTED,
    Row,
    Values,
)

KINDS = ("conn", "smtp", "dhcp", "dns")
MAX_LINE = 1 << 20  # a longer line is skipped and counted
MAX_PENDING = 1 << 18  # connections with smtp.log rows and no conn.log row yet
MAX_PENDING_ROWS = 1 << 20  # their rows together (one connection may send many mails)
MAX_CLOSED_UIDS = 1 << 16  # closed connections remembered, to catch a row that comes late
MAX_ENDING = 1 << 16  # conn.log rows of whole logs waiting for their transactions' rows
STALE_SECONDS = 900.0  # log time a follower's rows wait for their conn.log row
EXAMPLE_CHARS = 160  # of a problem's first example
MAX_TEXT = 4096  # of one field's value, before the model's own limits
MAX_TIME = float(1 << 40)  # seconds either side of 1970, as capture files are held to

# Zeek's TSV writer's defaults, used until the header says otherwise.
DEFAULT_SEPARATOR = b"\t"
DEFAULT_SET_SEPARATOR = b","
DEFAULT_EMPTY = b"(empty)"
DEFAULT_UNSET = b"-"
# Container fields of the logs read, for a header without #types (and JSON, where they are lists).
CONTAINERS = frozenset(
    {"rcptto", "to", "cc", "path", "fuids", "answers", "TTLs", "msg_types", "uids"}
)

# conn.log's conn_state, as the session's close reason (see smtptop.model.fold.CLOSE_NOTES).
CONN_STATES = {
    "SF": "closed",
    "RSTO": "reset",
    "RSTR": "reset",
    "RSTOS0": "reset",
    "RSTRH": "reset",
    "REJ": "refused (Zeek REJ)",
    "S0": "no answer to the SYN (Zeek S0)",
    "S1": "still open when Zeek logged it (S1)",
    "S2": "closed by the client only (Zeek S2)",
    "S3": "closed by the server only (Zeek S3)",
    "SH": "half open: no SYN-ACK seen (Zeek SH)",
    "SHR": "half open: no SYN seen (Zeek SHR)",
    "OTH": "no SYN seen (Zeek OTH)",
}
ENDED_WITHOUT_CONN = "no conn.log row"
LOGS_ENDED = "logs ended"
MESSAGE_FIELDS = ("date", "from", "subject", "msg_id", "user_agent", "fuids")
ENDPOINT_FIELDS = ("uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
# The fields each log's records keep: the others are not decoded.
USED_FIELDS = {
    "conn": frozenset(
        ("ts", *ENDPOINT_FIELDS, "proto", "duration", "orig_bytes", "resp_bytes",
         "orig_pkts", "resp_pkts", "conn_state", "history")
    ),
    "smtp": frozenset(
        ("ts", *ENDPOINT_FIELDS, "helo", "mailfrom", "rcptto", "last_reply", "tls",
         *MESSAGE_FIELDS)
    ),
    "dhcp": frozenset(("ts", "assigned_addr", "client_addr", "mac", "host_name", "client_fqdn")),
    "dns": frozenset(("ts", "id.orig_h", "query", "qtype", "rcode", "answers")),
}  # fmt: skip
AUTH_CODES = frozenset({235, 334, 535, 538})
_REPLY = re.compile(r"([2-5]\d\d)(?:[ -](.*))?", re.DOTALL)
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")

Value = str | tuple[str, ...] | None
Fields = dict[str, Value]


@dataclass(slots=True)
class Problems:
    """Skipped lines and values by reason, each with its first example (where, and what)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str, text: str | bytes) -> None:
        """Count one; the first of a reason is kept.  The reason, where and the example are
        made inert: each may hold a log's text (its #path, its name, its line)."""
        reason = inert(reason)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if reason not in self.examples:
            shown = wire_text(text[: EXAMPLE_CHARS + 1]) if isinstance(text, bytes) else inert(text)
            cut = shown[:EXAMPLE_CHARS] + ("..." if len(shown) > EXAMPLE_CHARS else "")
            self.examples[reason] = f"{inert(where)}: '{cut}'"

    def merge(self, other: Problems) -> None:
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            self.examples.setdefault(reason, other.examples[reason])

    def lines(self) -> list[str]:
        """One line per reason: how many, and the first example."""
        return [
            f"{count:,} skipped: {reason} (first: {self.examples[reason]})"
            for reason, count in sorted(self.counts.items())
        ]


def kind_of_name(name: str) -> str:
    """The log a file's name says it is: ``conn.log``, ``smtp.09:00:00-10:00:00.log.gz``,
    ``dns.2026-12-05-10-00-00.log``, ``smtp.json``; "" for another name."""
    base = name.rsplit("/", 1)[-1]
    kind = base.split(".", 1)[0]
    rest = base[len(kind) :]
    ends = (".log", ".log.gz", ".json", ".json.gz")
    return kind if kind in KINDS and rest.endswith(ends) else ""


class LogParser:
    """One log file's lines, fed as bytes as they come (:meth:`feed`), in Zeek's TSV format
    (its ``#`` header lines say the fields, separators and the log's kind) or as JSON lines
    (each line an object; ``id.orig_h`` flat, or ``id`` nested).  A line not yet ended waits
    for the rest, up to :data:`MAX_LINE`."""

    def __init__(self, name: str, kind: str = "") -> None:
        self.name = name  # for the problems' examples
        self.kind = kind or kind_of_name(name)
        self.problems = Problems()
        self.lines = 0
        self._pending = b""
        self._skipping = False  # inside a line over MAX_LINE
        self._separator = DEFAULT_SEPARATOR
        self._set_separator = DEFAULT_SET_SEPARATOR
        self._empty = DEFAULT_EMPTY
        self._unset = DEFAULT_UNSET
        self._fields: tuple[str, ...] = ()
        self._containers: frozenset[str] = CONTAINERS
        self._kept: list[tuple[int, str, bool]] = []  # position, name, container? of fields kept
        self._texts: tuple[str, ...] = ()  # separator, set separator, unset, empty; as text

    def feed(self, data: bytes) -> list[Fields]:
        """The records the lines completed by ``data`` hold."""
        records: list[Fields] = []
        data = self._pending + data
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif end - start > MAX_LINE:
                self.lines += 1
                self._too_long(data[start:end])
            else:
                self._line(data[start:end], records)
            start = end + 1
        rest = data[start:]
        if len(rest) > MAX_LINE:
            if not self._skipping:
                self.lines += 1
                self._too_long(rest)
            self._skipping, rest = True, b""
        self._pending = rest
        return records

    def _too_long(self, line: bytes) -> None:
        where = f"{self._where()} (over {MAX_LINE:,} bytes)"
        self.problems.add("line over the length limit", where, line)

    def end(self) -> list[Fields]:
        """The file ended: its last line, if it had no newline, is whole."""
        records: list[Fields] = []
        if self._pending and not self._skipping:
            self._line(self._pending, records)
        self._pending, self._skipping = b"", False
        return records

    def _where(self) -> str:
        return f"{self.name} line {self.lines}"

    def _line(self, line: bytes, records: list[Fields]) -> None:
        self.lines += 1
        line = line.removesuffix(b"\r")
        if not line.strip():
            return
        if line.startswith(b"#"):
            self._header(line)
        elif line.startswith(b"{"):
            self._json(line, records)
        elif not self._fields:
            self.problems.add("line before a #fields header", self._where(), line)
        else:
            self._tsv(line, records)

    def _header(self, line: bytes) -> None:
        if line.startswith(b"#separator "):
            self._separator = _unescape(line[len(b"#separator ") :].strip()) or DEFAULT_SEPARATOR
            return
        name, _, value = line[1:].partition(self._separator)
        if name == b"set_separator":
            self._set_separator = _unescape(value) or DEFAULT_SET_SEPARATOR
        elif name == b"empty_field":
            self._empty = value
        elif name == b"unset_field":
            self._unset = value
        elif name == b"path":
            self.kind = value.decode("utf-8", "replace")
        elif name == b"fields":
            self._fields = tuple(f.decode("utf-8", "replace") for f in value.split(self._separator))
            self._containers = CONTAINERS
            self._keep()
        elif name == b"types":
            types = value.split(self._separator)
            self._containers = frozenset(
                name
                for name, kind in zip(self._fields, types, strict=False)
                if kind.startswith((b"set[", b"vector[", b"table["))
            )
            self._keep()

    def _keep(self) -> None:
        """Which fields a data line keeps, and the header's separators and special values
        as text (they are ASCII in any header Zeek writes)."""
        special = (self._separator, self._set_separator, self._unset, self._empty)
        self._texts = tuple(value.decode("latin-1") for value in special)
        used = USED_FIELDS.get(self.kind)
        self._kept = [
            (at, name, name in self._containers)
            for at, name in enumerate(self._fields)
            if used is None or name in used
        ]

    def _tsv(self, line: bytes, records: list[Fields]) -> None:
        """One data line, decoded once: the separators and special values are ASCII in any
        header Zeek writes, so they split the text as they split the bytes."""
        values = line.decode("utf-8", "replace").split(self._texts[0])
        if len(values) != len(self._fields):
            reason = f"{len(values)} fields where #fields names {len(self._fields)}"
            self.problems.add("malformed line", self._where() + f" ({reason})", line)
            return
        record: Fields = {}
        _, set_separator, unset, empty = self._texts
        for at, name, container in self._kept:
            raw = values[at]
            if raw == unset:
                record[name] = None
            elif container:
                items = () if raw == empty else raw.split(set_separator)
                record[name] = tuple(_field_text(item) for item in items)
            else:
                record[name] = "" if raw == empty else _field_text(raw)
        records.append(record)

    def _json(self, line: bytes, records: list[Fields]) -> None:
        try:
            document = json.loads(line)
        except (ValueError, RecursionError):
            self.problems.add("malformed line", self._where() + " (not JSON)", line)
            return
        if not isinstance(document, dict):
            self.problems.add("malformed line", self._where() + " (not a JSON object)", line)
            return
        record: Fields = {}
        _flatten(document, "", record)
        path = record.pop("_path", None)
        if isinstance(path, str) and path:
            self.kind = path
        used = USED_FIELDS.get(self.kind)
        records.append(record if used is None else {k: v for k, v in record.items() if k in used})


def _flatten(document: dict[str, object], prefix: str, record: Fields) -> None:
    for key, value in document.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            _flatten(value, name + ".", record)
        elif isinstance(value, list):
            record[name] = tuple(_json_text(item) for item in value)
        else:
            record[name] = None if value is None else _json_text(value)


def _json_text(value: object) -> str:
    if value is True:
        return "T"
    if value is False:
        return "F"
    return (value if isinstance(value, str) else json.dumps(value))[:MAX_TEXT]


def _field_text(raw: str) -> str:
    """A TSV value as text: Zeek's escapes undone (they may spell the bytes of one UTF-8
    character), cut to :data:`MAX_TEXT`."""
    if "\\x" in raw:
        raw = _unescape(raw.encode("utf-8")).decode("utf-8", "replace")
    return raw[:MAX_TEXT]


def _unescape(raw: bytes) -> bytes:
    """Zeek writes a separator or an unprintable byte inside a value as ``\\xNN``."""
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(lambda match: bytes([int(match[1], 16)]), raw)


# -- typed records ---------------------------------------------------------------------------


class BadRecord(ValueError):
    """A record lacks a field the join needs, or a value does not parse."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int


@dataclass(frozen=True, slots=True)
class Conn:
    """A conn.log row: one connection, logged when it ended."""

    uid: str
    ts: float
    ends: Endpoints
    proto: str
    duration: float
    orig_bytes: int
    resp_bytes: int
    packets: int
    state: str
    history: str


@dataclass(frozen=True, slots=True)
class Transaction:
    """An smtp.log row: one mail transaction of a connection."""

    uid: str
    ts: float
    ends: Endpoints
    helo: str
    mailfrom: str | None
    rcptto: tuple[str, ...]
    last_reply: str
    tls: bool
    message: bool  # the row carries a message's headers or files: DATA was sent


def _required(record: Fields, name: str) -> str:
    value = record.get(name)
    if value is None or isinstance(value, tuple):
        raise BadRecord(f"missing field {name}")
    return value


def _optional(record: Fields, name: str) -> str:
    value = record.get(name)
    return value if isinstance(value, str) else ""


def record_time(record: Fields, name: str = "ts") -> float:
    """A record's time: seconds as Zeek's TSV and JSON write them, or ISO 8601."""
    text = _required(record, name)
    try:
        ts = float(text)
    except ValueError:
        try:  # JSON logs with json_timestamps=JSON::TS_ISO8601
            ts = datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise BadRecord(f"bad value of {name}") from None
    if not abs(ts) <= MAX_TIME:  # NaN too
        raise BadRecord(f"bad value of {name}")
    return ts


def _count(record: Fields, name: str) -> int:
    text = _optional(record, name)
    if not text:
        return 0
    try:
        return max(0, int(float(text)))
    except (ValueError, OverflowError):
        raise BadRecord(f"bad value of {name}") from None


def _seconds(record: Fields, name: str) -> float:
    text = _optional(record, name)
    try:
        value = float(text) if text else 0.0
    except ValueError:
        raise BadRecord(f"bad value of {name}") from None
    return value if math.isfinite(value) and value > 0 else 0.0


def _endpoints(record: Fields) -> Endpoints:
    ports = []
    for name in ("id.orig_p", "id.resp_p"):
        text = _required(record, name)
        if not text.isdigit() or not 0 <= int(text) < 65536:
            raise BadRecord(f"bad value of {name}")
        ports.append(int(text))
    hosts = []
    for name in ("id.orig_h", "id.resp_h"):
        address = _address(_required(record, name))
        if address is None:
            raise BadRecord(f"bad value of {name}")
        hosts.append(address)
    return Endpoints(hosts[0], ports[0], hosts[1], ports[1])


def conn_record(record: Fields) -> Conn:
    return Conn(
        uid=_required(record, "uid"),
        ts=record_time(record),
        ends=_endpoints(record),
        proto=_optional(record, "proto"),
        duration=_seconds(record, "duration"),
        orig_bytes=_count(record, "orig_bytes"),
        resp_bytes=_count(record, "resp_bytes"),
        packets=_count(record, "orig_pkts") + _count(record, "resp_pkts"),
        state=_optional(record, "conn_state"),
        history=_optional(record, "history"),
    )


def transaction_record(record: Fields) -> Transaction:
    rcptto = record.get("rcptto")
    mailfrom = record.get("mailfrom")
    return Transaction(
        uid=_required(record, "uid"),
        ts=record_time(record),
        ends=_endpoints(record),
        helo=_optional(record, "helo"),
        mailfrom=mailfrom if isinstance(mailfrom, str) else None,
        rcptto=rcptto if isinstance(rcptto, tuple) else (rcptto,) if rcptto else (),
        last_reply=_optional(record, "last_reply"),
        tls=_optional(record, "tls") == "T",
        message=any(record.get(name) for name in MESSAGE_FIELDS),
    )


# -- the join --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A connection's smtp.log rows, waiting for its conn.log row."""

    rows: list[Transaction]
    last_ts: float
    settled: int  # how many times the join had settled when its latest row came


class ZeekJoin:
    """Log records in, event rows out (:meth:`take`).  A connection's smtp.log rows wait for
    its conn.log row; at :meth:`settle` each connection whose row came becomes a whole
    session at once: opened at the connection's start, its transactions, closed at its end.
    Zeek logs a connection when it ends, so that is when the session is known whole.

    A follower settles a conn.log row at the end of the poll after the one that read it, so
    that smtp.log rows of the same connection, written by another of Zeek's writer threads,
    are in.  Its rows that wait longer than :data:`STALE_SECONDS` of log time (Zeek ends an
    idle connection after five minutes), and beyond :data:`MAX_PENDING` connections or
    :data:`MAX_PENDING_ROWS` rows the longest waiting, become sessions without a conn.log
    row.  What a record cannot say is counted in ``problems``.

    Sessions come whole, so the model sees one open at a time: how many a host had open at
    once is not known from logs (the sessions per minute are)."""

    def __init__(self, ports: Iterable[int], *, follow: bool = False) -> None:
        self.ports = frozenset(ports)
        self.follow = follow
        self.expect_conn = True  # a follower without conn.log makes sessions of rows at once
        self.problems = Problems()
        self.other_ports = 0  # smtp.log rows of servers on ports not in --ports
        self._rows: list[Row] = []
        self._pending: OrderedDict[str, _Pending] = OrderedDict()  # by uid, oldest first
        self._ended: list[Conn] = []  # a follower's conn.log rows to settle, as read
        self._ending: list[tuple[float, int, Conn]] = []  # whole logs': a heap by their end
        self._read = 0  # conn.log rows read: the heap's order of equal ends
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._next_id = 1
        self._clock = 0.0  # the latest log time seen
        self._settled = 0  # calls of settle()
        self._pending_rows = 0  # smtp.log rows waiting in _pending

    def take(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    def waiting(self) -> int:
        """Rows made and not taken yet."""
        return len(self._rows)

    def add(self, kind: str, record: Fields, where: str) -> None:
        """One parsed record of a log of this kind."""
        try:
            if kind == "conn":
                self.conn(conn_record(record))
            elif kind == "smtp":
                self.transaction(transaction_record(record))
            elif kind == "dhcp":
                self._lease(record)
            elif kind == "dns":
                self._lookup(record)
            else:
                self.problems.add(f"a record of Zeek's {kind or 'unnamed'} log", where, kind)
        except BadRecord as exc:
            self.problems.add(f"{kind}.log record: {exc}", where, repr(record))

    def conn(self, conn: Conn) -> None:
        if conn.proto != "tcp" or conn.ends.resp_p not in self.ports:
            return
        self._tick(conn.ts)
        if conn.uid in self._closed:
            return
        if self.follow:
            self._ended.append(conn)
        else:
            self._read += 1
            heapq.heappush(self._ending, (conn.ts + conn.duration, self._read, conn))

    def transaction(self, row: Transaction) -> None:
        if row.ends.resp_p not in self.ports:
            self.other_ports += 1
            return
        self._tick(row.ts)
        if row.uid in self._closed:
            self.problems.add("smtp.log row after its conn.log row", f"uid {row.uid}", row.uid)
            return
        self._pending_rows += 1
        pending = self._pending.get(row.uid)
        if pending is None:
            self._pending[row.uid] = _Pending([row], row.ts, self._settled)
        else:
            pending.rows.append(row)
            pending.last_ts = max(pending.last_ts, row.ts)
            pending.settled = self._settled
            self._pending.move_to_end(row.uid)

    def ended(self) -> int:
        """A follower's conn.log rows read and not settled yet."""
        return len(self._ended)

    def settle(self, ripe: int | None = None, until: float | None = None) -> None:
        """Make the sessions of the connections whose conn.log row came: all of them; for a
        follower the first ``ripe`` (those it read a poll ago); for whole logs, read merged
        by time, those that ended by ``until`` (log time), and the earliest beyond
        :data:`MAX_ENDING`.  Then, beyond the bounds, of those whose rows waited too long."""
        if self.follow:
            count = len(self._ended) if ripe is None else ripe
            ready, self._ended = self._ended[:count], self._ended[count:]
        else:
            ending, ready = self._ending, []
            while ending and (until is None or ending[0][0] <= until or len(ending) > MAX_ENDING):
                ready.append(heapq.heappop(ending)[2])
        for conn in ready:
            if conn.uid not in self._closed:
                pending = self._pending.pop(conn.uid, None)
                self._session(conn.uid, pending.rows if pending else [], conn, "")
        while self._pending:
            uid, pending = next(iter(self._pending.items()))
            waited = self._clock - pending.last_ts > STALE_SECONDS
            alone = not self.expect_conn and pending.settled < self._settled
            stale = self.follow and (waited or alone)
            full = len(self._pending) > MAX_PENDING or self._pending_rows > MAX_PENDING_ROWS
            if not (full or stale):
                break
            del self._pending[uid]
            self._session(uid, pending.rows, None, ENDED_WITHOUT_CONN)
        self._settled += 1

    def finish(self) -> None:
        """The logs ended: connections without a conn.log row end with them."""
        self.settle()
        for uid, pending in self._pending.items():
            self._session(uid, pending.rows, None, LOGS_ENDED)
        self._pending.clear()

    def _tick(self, ts: float) -> None:
        self._clock = max(self._clock, ts)

    def _session(
        self, uid: str, transactions: list[Transaction], conn: Conn | None, reason: str
    ) -> None:
        """One connection's rows: opened, its transactions, closed."""
        self._pending_rows -= len(transactions)
        sid = self._next_id
        self._next_id += 1
        ends = conn.ends if conn is not None else transactions[0].ends
        start = conn.ts if conn is not None else transactions[0].ts
        midstream = conn is not None and bool(conn.history) and not conn.history.startswith("S")
        client, server = (ends.orig_h, ends.orig_p), (ends.resp_h, ends.resp_p)
        self._rows.append((sid, OPENED, (start, client, server, midstream)))
        helo = ""
        for row in transactions:
            helo = self._fold(sid, helo, row)
        end = max([start, *(row.ts for row in transactions)])
        if conn is None:
            values: Values = (end, reason, 0, 0, 0, 0)
        else:
            end = max(end, conn.ts + conn.duration)
            why = CONN_STATES.get(conn.state, f"Zeek conn_state {inert(conn.state) or '-'}")
            values = (end, why, conn.orig_bytes, conn.resp_bytes, conn.packets, 0)
        self._rows.append((sid, CLOSED, values))
        self._closed[uid] = None
        if len(self._closed) > MAX_CLOSED_UIDS:
            self._closed.popitem(last=False)

    def _fold(self, sid: int, helo: str, row: Transaction) -> str:
        """The commands and the reply one smtp.log row says were sent (see the module's
        docstring for which command the reply is taken to answer); the HELO name now."""
        ts, rows = row.ts, self._rows
        last: tuple[int, Values] | None = None
        if row.helo and row.helo != helo:
            helo = row.helo
            last = _command(ts, "HELO", row.helo, "HELO " + row.helo)
            rows.append((sid, *last))
        if row.mailfrom is not None:
            last = _command(ts, "MAIL", f"FROM:<{row.mailfrom}>", f"MAIL FROM:<{row.mailfrom}>")
            rows.append((sid, *last))
        for address in row.rcptto:
            last = _command(ts, "RCPT", f"TO:<{address}>", f"RCPT TO:<{address}>")
            rows.append((sid, *last))
        match = _REPLY.fullmatch(row.last_reply.strip())
        if row.last_reply and match is None:
            self.problems.add("smtp.log last_reply without a reply code", f"uid {row.uid}",
                              row.last_reply)  # fmt: skip
        if match is not None:
            code = int(match[1])
            request = _answered(code, row, last)
            text = (match[2] or "").encode("utf-8", "replace")
            rows.append((sid, REPLY, (ts, code, (text,), request, False, False)))
        if row.tls:
            rows.append((sid, TLS_STARTED, (ts, False)))
        return helo

    def _lease(self, record: Fields) -> None:
        ts = record_time(record)
        self._tick(ts)
        found = (_address(_optional(record, n)) for n in ("assigned_addr", "client_addr"))
        address = next((a for a in found if a is not None), None)
        said_mac = _optional(record, "mac").lower()
        mac = said_mac if _MAC.fullmatch(said_mac) else None
        names: list[tuple[str | None, str]] = [
            (inert(text), source)  # a name the client chose: wire text, as the packet path's
            for name, source in (("host_name", "dhcp"), ("client_fqdn", "dhcp-fqdn"))
            if (text := _optional(record, name))
        ]
        for name, source in names or [(None, "dhcp")]:
            self._rows.append((0, SIGHTING, (ts, address, mac, name, source)))

    def _lookup(self, record: Fields) -> None:
        ts = record_time(record)
        self._tick(ts)
        client = _address(_required(record, "id.orig_h"))
        if client is None:
            raise BadRecord("bad value of id.orig_h")
        query = _optional(record, "query").lower()
        qtype, rcode = _count(record, "qtype"), _optional(record, "rcode")
        self._rows.append((0, DNS_LOOKUP, (ts, client, query, qtype, None)))
        if rcode.isdigit():
            self._rows.append((0, DNS_LOOKUP, (ts, client, query, qtype, int(rcode))))
        if qtype == 12 and rcode == "0":
            address = address_of_reverse_name(query)
            answers = record.get("answers")
            for name in answers if isinstance(answers, tuple) and address else ():
                if name and _address(name) is None:  # a name, not the address of an A record
                    self._rows.append((0, SIGHTING, (ts, address, None, inert(name), "dns-ptr")))


@functools.lru_cache(maxsize=65536)  # the same few addresses, line after line
def _address(text: str) -> str | None:
    """An address as the packet path writes it (IPv6 compressed), or None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _command(ts: float, verb: str, arg: str, line: str) -> tuple[int, Values]:
    return COMMAND, (
        ts,
        verb,
        arg.encode("utf-8", "replace"),
        line.encode("utf-8", "replace"),
        False,
    )


def _answered(
    code: int, row: Transaction, last: tuple[int, Values] | None
) -> tuple[int, Values] | None:
    """The request a transaction's last reply is taken to answer (the module's docstring)."""
    ts = row.ts
    if code == 221:
        return _command(ts, "QUIT", "", "QUIT")
    if code == 354:
        return _command(ts, "DATA", "", "DATA")
    if code in AUTH_CODES:
        return _command(ts, "AUTH", "", "AUTH")
    if code == 220 and row.tls:
        return _command(ts, "STARTTLS", "", "STARTTLS")
    if row.message:
        return MESSAGE_END, (ts, 0, (), True)
    return last
