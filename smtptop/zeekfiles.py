"""Finding, reading and following Zeek's log files, for :mod:`smtptop.zeek`.

``smtptop report --zeek FILE_OR_DIR...`` reads logs whole (plain or gzipped, TSV or JSON):
a folder gives its ``conn``, ``smtp``, ``dhcp`` and ``dns`` logs, rotated pieces included
(zeekctl's ``logs/2026-12-05/smtp.09:00:00-10:00:00.log.gz``).  smtp.log is read first, its
rows kept by ``uid``; each conn.log row then makes its session whole at once (a hash join),
so that a session opens at the connection's start and no session stays open longer than its
row takes.

``smtptop --zeek DIR`` follows the current logs of a folder as Zeek writes them (zeekctl's
``logs/current``, or where a standalone ``zeek`` runs), as ``tail -F`` would: from their
start, then what is appended; a file renamed away at rotation is read to its end before its
successor is opened, and a file cut short is read again from its start.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from smtptop.text import inert
from smtptop.wire import Row
from smtptop.zeek import (
    KINDS,
    BadRecord,
    Conn,
    Fields,
    LogParser,
    Problems,
    Transaction,
    ZeekJoin,
    conn_record,
    kind_of_name,
    record_time,
    transaction_record,
)

CHUNK = 1 << 20  # bytes read at a time
SETTLE_GRACE = 300.0  # log seconds a connection's end waits for its transactions
SETTLE_EVERY = 1000  # records merged between settlements
GZIP_MAGIC = b"\x1f\x8b"
BATCH_ROWS = 1000  # rows handed on at a time


class ZeekError(Exception):
    """A log cannot be read at all (one line for the user)."""


@dataclass(slots=True)
class LogFile:
    path: str
    kind: str


class CutShort(Exception):
    """A gzipped log ends inside its compressed data: what came before the cut was read."""


def _chunks(path: str) -> Iterator[bytes]:
    """A log's bytes a chunk at a time, gunzipped when it is gzipped (each member of it).
    A cut gzip stream yields what decompressed up to the cut, then raises CutShort; it is
    decompressed a chunk at a time, so a gzip bomb is never held whole.  Raises OSError
    when the file cannot be read."""
    with open(path, "rb") as handle:
        data = handle.read(CHUNK)
        if not data.startswith(GZIP_MAGIC):
            while data:
                yield data
                data = handle.read(CHUNK)
            return
        stream = zlib.decompressobj(wbits=31)
        while data or (data := handle.read(CHUNK)):
            try:
                out = stream.decompress(data, CHUNK)
            except zlib.error as exc:
                raise CutShort(f"not gzip data: {exc}") from None
            if out:
                yield out
            data = stream.unconsumed_tail
            if stream.eof:  # a member ended; another may follow
                data = stream.unused_data or handle.read(CHUNK)
                if not data:
                    return
                stream = zlib.decompressobj(wbits=31)
        raise CutShort("the file ends inside its compressed data")


def _peek_kind(path: str) -> str:
    """The kind a log's own header (``#path``) or first JSON record (``_path``) says."""
    parser = LogParser(path)
    try:
        parser.feed(next(_chunks(path), b""))
    except OSError as exc:
        raise ZeekError(f"{path}: {exc.strerror}") from None
    except CutShort as exc:
        raise ZeekError(f"{path}: {exc}") from None
    return parser.kind


def find_logs(paths: Sequence[str]) -> list[LogFile]:
    """The logs to read: a folder's logs of the kinds read, and each file named (which must be
    one of them).  Raises ZeekError with one line."""
    found: list[LogFile] = []
    for path in paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                raise ZeekError(f"{path}: {exc.strerror}") from None
            logs = [
                LogFile(os.path.join(path, name), kind)
                for name in names
                if (kind := kind_of_name(name)) and os.path.isfile(os.path.join(path, name))
            ]
            if not any(log.kind in ("conn", "smtp") for log in logs):
                raise ZeekError(f"{path}: no conn.log or smtp.log in this folder")
            found += logs
        elif os.path.exists(path):
            kind = kind_of_name(path) or _peek_kind(path)
            if kind not in KINDS:
                said = f"Zeek's {inert(kind)}.log" if kind else "not a Zeek log smtptop can tell"
                raise ZeekError(
                    f"{path}: {said}; smtptop reads conn, smtp, dhcp and dns logs (named so, "
                    "or with their #path header)"
                )
            found.append(LogFile(path, kind))
        else:
            raise ZeekError(f"{path}: no such file or folder")
    return found


@dataclass(slots=True)
class LogReading:
    """What reading logs found besides the rows: records read and lines skipped."""

    records: int = 0
    problems: Problems = field(default_factory=Problems)
    other_ports: int = 0  # smtp.log rows of servers on ports not in --ports: not SMTP here

    def skipped(self) -> dict[str, int]:
        """Records not used, by reason, for the report's and the status bar's counts."""
        counts = dict(self.problems.counts)
        if self.other_ports:
            counts["smtp.log rows on ports not in --ports"] = self.other_ports
        return counts

    def warnings(self) -> list[str]:
        return self.problems.lines()


def _records(log: LogFile, reading: LogReading) -> Generator[tuple[str, Fields, str], None, None]:
    """A whole log's records, with its kind and where each came from."""
    parser = LogParser(log.path, log.kind)
    try:
        for chunk in _chunks(log.path):
            for record in parser.feed(chunk):
                yield parser.kind, record, f"{log.path} line {parser.lines}"
    except OSError as exc:
        reading.problems.add("log not readable", log.path, exc.strerror or str(exc))
    except CutShort as exc:  # the line it cut is not a line
        reading.problems.add("log cut short", f"{log.path} after line {parser.lines}", str(exc))
    else:
        for record in parser.end():
            yield parser.kind, record, f"{log.path} line {parser.lines}"
    reading.problems.merge(parser.problems)


def _first_time(log: LogFile) -> float:
    """The time of a log's first record that has one (-inf for none), to order rotated
    pieces and folders as they were written, whatever order they were named in."""
    records = _records(log, LogReading())
    try:
        for _, record, _ in records:
            try:
                return record_time(record)
            except BadRecord:
                continue
    finally:
        records.close()  # and the file with it
    return -math.inf


Keyed = tuple[float, int, int, Conn | Transaction]  # time, smtp before conn, order read


def _keyed(logs: list[LogFile], join: ZeekJoin, reading: LogReading) -> Iterator[Keyed]:
    """A kind's records in time order as Zeek wrote them: a transaction at its time, a
    connection at its end (it is logged then).  Records of another kind go to the join."""
    order = itertools.count()
    for log in sorted(logs, key=_first_time):
        for found, record, where in _records(log, reading):
            reading.records += 1
            try:
                if found == "smtp":
                    row = transaction_record(record)
                    yield row.ts, 0, next(order), row
                elif found == "conn":
                    conn = conn_record(record)
                    yield conn.ts + conn.duration, 1, next(order), conn
                else:
                    join.add(found, record, where)
            except BadRecord as exc:
                join.problems.add(f"{found}.log record: {exc}", where, repr(record))


def read_logs(
    logs: Sequence[LogFile], ports: frozenset[int], reading: LogReading
) -> Iterator[list[Row]]:
    """The rows of whole logs, a batch at a time: names and lookups first, then smtp.log and
    conn.log merged by time, so that a connection's transactions come before its end and
    wait for it only as long as it was open: memory follows the connections open at once,
    not the size of the logs.  A conn.log row settles once the logs are
    :data:`SETTLE_GRACE` seconds past its end (Zeek logs an idle connection up to five minutes
    after its last packet, and its last transaction with it), or when
    :data:`smtptop.zeek.MAX_ENDING` rows wait."""
    join = ZeekJoin(ports)
    for kind in ("dhcp", "dns"):
        for log in sorted((log for log in logs if log.kind == kind), key=_first_time):
            for found, record, where in _records(log, reading):
                reading.records += 1
                join.add(found, record, where)
                if join.waiting() >= BATCH_ROWS:
                    yield join.take()
    streams = [_keyed([log for log in logs if log.kind == kind], join, reading)
               for kind in ("smtp", "conn")]  # fmt: skip
    for count, (key, _, _, item) in enumerate(heapq.merge(*streams), start=1):
        if isinstance(item, Conn):
            join.conn(item)
        else:
            join.transaction(item)
        if count % SETTLE_EVERY == 0:
            join.settle(until=key - SETTLE_GRACE)
        if join.waiting() >= BATCH_ROWS:
            yield join.take()
    join.finish()
    reading.problems.merge(join.problems)
    reading.other_ports = join.other_ports
    yield join.take()


FOLLOW_ORDER = ("dhcp", "dns", "conn", "smtp")  # a session opens at its conn.log start time
MAX_READ_PER_POLL = 8 << 20  # bytes of one log read in one poll: catching up goes by steps


@dataclass(slots=True)
class _Followed:
    """One current log of a followed folder: the file open now, and where it stands."""

    path: str
    kind: str
    handle: BinaryIO | None = None
    identity: tuple[int, int] = (0, 0)  # device and inode of the file open
    position: int = 0
    parser: LogParser | None = None


class LogFollower:
    """The current logs of a folder, followed as Zeek writes and rotates them (the module's
    docstring).  Each :meth:`poll` returns the rows of what was appended since the last."""

    def __init__(self, folder: str, ports: frozenset[int]) -> None:
        if not os.path.isdir(folder):
            what = "not a folder" if os.path.exists(folder) else "no such folder"
            raise ZeekError(f"--zeek {folder}: {what} (the monitor follows a folder of logs)")
        self.folder = folder
        self.join = ZeekJoin(ports, follow=True)
        self.reading = LogReading()
        self._logs = [_Followed(os.path.join(folder, f"{kind}.log"), kind) for kind in FOLLOW_ORDER]

    def poll(self) -> list[Row]:
        """Rows of the lines appended since the last poll.  The connections whose conn.log
        row came at the last poll become sessions now, with the smtp.log rows that came
        since: Zeek writes them with it, from another thread.  Without a conn.log in the
        folder, smtp.log's rows make sessions one poll after they came."""
        ripe = self.join.ended()
        for log in self._logs:
            self._follow(log)
        self.join.expect_conn = any(log.kind == "conn" and log.handle for log in self._logs)
        self.join.settle(ripe)
        self.reading.other_ports = self.join.other_ports
        return self.join.take()

    def skipped(self) -> dict[str, int]:
        """Records not used so far, by reason."""
        return {**self.reading.skipped(), **self.problems().counts}

    def problems(self) -> Problems:
        """What was skipped so far, in all logs."""
        found = Problems()
        found.merge(self.reading.problems)
        found.merge(self.join.problems)
        for log in self._logs:
            if log.parser is not None:
                found.merge(log.parser.problems)
        return found

    def close(self) -> None:
        for log in self._logs:
            self._close(log)

    def _follow(self, log: _Followed) -> None:
        """Read what was appended; then, looking at the name after the read (Zeek may append
        meanwhile), read a file renamed away to its end and close it, or close one cut short,
        and open what the name holds now."""
        if log.handle is not None:
            self._read(log, MAX_READ_PER_POLL)
        try:
            status = os.stat(log.path)
        except OSError:
            status = None
        if log.handle is not None:
            if status is None or (status.st_dev, status.st_ino) != log.identity:
                self._read(log, None)  # rotated away: what was written before the rename
                self._close(log)
            elif status.st_size < log.position:
                self._close(log)  # cut short: read again from its start
        if log.handle is None and status is not None:
            try:
                log.handle = open(log.path, "rb")  # noqa: SIM115 - kept open while followed
            except OSError as exc:
                self.reading.problems.add("log not readable", log.path, exc.strerror or "")
                return
            opened = os.fstat(log.handle.fileno())
            log.identity, log.position = (opened.st_dev, opened.st_ino), 0
            log.parser = LogParser(log.path, log.kind)
            self._read(log, MAX_READ_PER_POLL)

    def _read(self, log: _Followed, limit: int | None) -> None:
        """Up to ``limit`` bytes of what is there (None: all of it)."""
        handle, parser = log.handle, log.parser
        assert handle is not None and parser is not None
        done = 0
        while limit is None or done < limit:
            chunk = handle.read(CHUNK)
            if not chunk:
                return
            done += len(chunk)
            log.position += len(chunk)
            self._add(parser, parser.feed(chunk))

    def _add(self, parser: LogParser, records: list[Fields]) -> None:
        self.reading.records += len(records)
        for record in records:
            self.join.add(parser.kind, record, f"{parser.name} line {parser.lines}")

    def _close(self, log: _Followed) -> None:
        if log.handle is None or log.parser is None:
            return
        self._add(log.parser, log.parser.end())
        self.reading.problems.merge(log.parser.problems)
        log.handle.close()
        log.handle, log.parser = None, None
