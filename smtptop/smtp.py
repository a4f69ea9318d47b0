"""A passive, sans-I/O SMTP session parser.

Shaped like h11 and wsproto: the caller feeds each direction's reassembled bytes with
:meth:`SmtpParser.receive_data` (and gaps, and the end of the connection) and drains frozen
event dataclasses from :meth:`SmtpParser.events`.  The parser never does I/O, never raises on
wire input and keeps every buffer bounded: bad input becomes a :class:`Violation` event.

It does not judge the conversation (that is the model's and the detectors' work); it only
finds out what was said: commands, replies paired with the commands they answer (first in,
first out, which is what PIPELINING requires), message bodies (headers kept up to a bound,
the rest only counted), BDAT chunks, AUTH exchanges and the switch to TLS.
"""

from __future__ import annotations

import binascii
import re
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from itertools import repeat


class Side(IntEnum):
    """Which end of the connection sent the bytes."""

    CLIENT = 0
    SERVER = 1


KNOWN_VERBS = frozenset(
    {
        "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY",
        "EXPN", "HELP", "AUTH", "STARTTLS", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML",
        "XCLIENT", "XFORWARD", "X-ANONYMOUSTLS",
    }
)  # fmt: skip
GREETING_CODES = frozenset({220, 421, 554})
_VERB = re.compile(rb"[A-Za-z][A-Za-z0-9_-]{0,19}")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
_CR_LF = re.compile(rb"[\r\n]+")
_BDAT = re.compile(rb"\s*(\d{1,20})(?:\s+(LAST))?\s*", re.IGNORECASE)
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1f]")
_TLS_RECORD_TYPES = (0x14, 0x15, 0x16, 0x17)
MAX_BDAT_CHUNK = (1 << 63) - 1
MAX_VERB_CACHE = 4096
_VERB_CACHE: dict[bytes, str] = {}  # verbs as sent (any case) to the known verb they name
BINARY_LINES_BEFORE_GIVING_UP = 8


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds on what one session may make the parser hold."""

    max_line: int = 4096
    max_pending: int = 1000
    max_header_bytes: int = 16384
    max_header_lines: int = 200
    max_reply_lines: int = 100
    max_reply_bytes: int = 16384  # of one reply being collected: 65,536 connections may wait


@dataclass(frozen=True, slots=True)
class Command:
    """A client command line.  ``verb`` is upper-cased; empty when the line is not a command."""

    ts: float
    verb: str
    arg: bytes
    line: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A client line inside an AUTH exchange (credentials: views mask it)."""

    ts: float
    line: bytes


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The end of a DATA body: its size on the wire and its first header lines.

    ``complete`` is false when the body's end was not seen (a gap, or the capture ended).
    """

    ts: float
    size: int
    headers: tuple[bytes, ...]
    complete: bool = True


Request = Command | AuthResponse | MessageEnd


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole (possibly multi-line) server reply and the request it answers.

    ``request`` is None for the greeting (``greeting`` true) and for replies that answer
    nothing seen (a server timing out, or after a gap).
    """

    ts: float
    code: int
    lines: tuple[bytes, ...]
    request: Request | None
    greeting: bool = False
    cut: int = 0  # bytes of its lines past ``ParserLimits.max_reply_bytes``, not kept


@dataclass(frozen=True, slots=True)
class TlsStarted:
    """From here on the session is encrypted: STARTTLS accepted, or TLS from the first byte."""

    ts: float
    implicit: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """Bytes of one direction that the capture missed."""

    ts: float
    side: Side
    size: int


class ViolationKind(IntEnum):
    """What was wrong, for code to act on; ``Violation.reason`` says it for people."""

    LONG_LINE = 1
    EMPTY_LINES = 2
    CLIENT_NOT_SMTP = 3
    TOO_MANY_PENDING = 4
    BAD_BDAT = 5
    SERVER_NOT_SMTP = 6
    MALFORMED_REPLY = 7
    MIXED_CONTINUATION = 8


NOT_SMTP = frozenset({ViolationKind.CLIENT_NOT_SMTP, ViolationKind.SERVER_NOT_SMTP})


@dataclass(frozen=True, slots=True)
class Violation:
    """Input that is not SMTP as expected; parsing goes on."""

    ts: float
    side: Side
    kind: ViolationKind
    reason: str


Event = Command | AuthResponse | MessageEnd | Reply | TlsStarted | Gap | Violation

_COMMAND, _DATA, _BDAT_CHUNK = 0, 1, 2
_CLIENT, _SERVER = int(Side.CLIENT), int(Side.SERVER)  # plain ints: enum lookups are slow


class _Direction:
    """Per-direction line buffer with a bound on line length, and the run of empty lines it
    is in (``blanks``: how many so far, the last at ``blanks_ts``)."""

    __slots__ = ("blanks", "blanks_ts", "buf", "discarding", "opaque", "resync", "seen")

    def __init__(self, resync: bool) -> None:
        self.buf = b""
        self.discarding = False
        self.opaque = False
        self.resync = resync
        self.seen = False
        self.blanks = 0
        self.blanks_ts = 0.0


class SmtpParser:
    """Follow one SMTP connection from both directions and emit events."""

    def __init__(self, *, midstream: bool = False, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self.midstream = midstream
        self._client = _Direction(resync=midstream)
        self._server = _Direction(resync=midstream)
        self.queued: list[Event] = []  # not yet drained by events(); cheap to test for
        self._pending: deque[Request] = deque()
        self._blank_request: Request | None = None  # what the client's run of empty lines is
        self._greeting_pending = True
        self._mode = _COMMAND
        self._bdat_left = 0
        self._auth_active = False
        self._auth_confirmed = False
        self._starttls_sent = False
        self._data_acknowledged = False
        self._binary_lines = 0
        self._body_size = 0
        self._body_tail = b"\n"
        self._headers: list[bytes] = []
        self._header_bytes = 0
        self._in_headers = True
        self._reply_code = 0
        self._reply_lines: list[bytes] = []
        self._reply_bytes = 0
        self._reply_cut = 0
        self._replies_seen = False
        self._orphans = 0
        self.tls = False

    # -- feeding -------------------------------------------------------------------------

    def receive_data(self, side: Side | int, data: bytes, ts: float) -> None:
        """Feed bytes of one direction, in sequence order."""
        if not data:
            return
        client = side == _CLIENT
        if client:
            direction, other = self._client, self._server
        else:
            direction, other = self._server, self._client
        if other.blanks:  # its run of empty lines is over: its note comes before these bytes
            self._end_empty_lines(other, 1 - side)
        if direction.opaque:
            return
        if (
            (not direction.seen or direction.resync or (client and self._starttls_sent))
            and data[0] in _TLS_RECORD_TYPES
            and self._starts_tls(direction, Side(side), data, ts)
        ):
            return
        direction.seen = True
        if not client:
            self._server_data(data, ts)
        elif self._mode == _DATA and not self._in_headers and not direction.buf:
            self._body_data(data, ts)  # most client segments: the middle of a message
        else:
            self._client_data(data, ts)

    def receive_gap(self, side: Side | int, size: int, ts: float) -> None:
        """Tell the parser that ``size`` bytes of one direction were not captured."""
        self._end_runs()
        self.queued.append(Gap(ts, Side(side), size))
        direction = self._client if side == _CLIENT else self._server
        if direction.opaque:
            return
        partial = direction.buf.rstrip(b"\r") if not direction.discarding else b""
        direction.buf = b""
        direction.discarding = False
        if side != _CLIENT:
            if partial:
                self._server_line(partial, ts)
            self._flush_reply(ts)
            self._pending.clear()
            direction.resync = True
            return
        if self._mode == _BDAT_CHUNK and size < self._bdat_left:
            self._bdat_left -= size
            return
        if self._mode == _DATA:
            self._body_size += size + len(partial)
            self._body_tail = b""
            self._in_headers = False
            return
        if partial and self._mode == _COMMAND:
            self._client_line(partial, ts, truncated=True)
        self._mode = _COMMAND
        direction.resync = True

    def close(self, ts: float) -> None:
        """The connection is over: flush what is half-said (the client's words first)."""
        client, server = self._client, self._server
        if not client.opaque:
            if self._mode == _DATA:
                self._end_body(ts, complete=False)
            elif self._mode == _COMMAND and client.buf and not client.discarding:
                self._client_line(client.buf.rstrip(b"\r"), ts, truncated=False)
        client.buf = b""
        self._mode = _COMMAND
        if client.blanks:
            self._end_empty_lines(client, _CLIENT)
        if not server.opaque and server.buf and not server.discarding:
            self._server_line(server.buf.rstrip(b"\r"), ts)
        server.buf = b""
        self._end_runs()
        self._flush_reply(ts)

    def events(self) -> list[Event]:
        """Drain the events produced so far, oldest first (the caller owns the list)."""
        events, self.queued = self.queued, []
        return events

    @property
    def pending(self) -> int:
        """Requests still waiting for their reply."""
        return len(self._pending)

    # -- TLS -----------------------------------------------------------------------------

    def _starts_tls(self, direction: _Direction, side: Side, data: bytes, ts: float) -> bool:
        """Recognise a TLS record where SMTP text was expected and stop parsing that side.

        At the start of a direction it is implicit TLS (port 465 style); the other side keeps
        being parsed, since a plaintext server may still answer a confused client.
        """
        if len(data) < 3 or data[0] not in _TLS_RECORD_TYPES or data[1] != 3 or data[2] > 4:
            return False
        at_start = not direction.seen and not direction.buf
        after_starttls = side == _CLIENT and self._starttls_sent and not direction.buf
        if after_starttls or (direction.resync and not at_start):
            self._go_opaque(ts, implicit=False)
            return True
        if not at_start:
            return False
        self._tls_started(ts, implicit=True)
        direction.opaque = True
        direction.buf = b""
        return True

    def _tls_started(self, ts: float, *, implicit: bool) -> None:
        if not self.tls:
            self.tls = True
            self.queued.append(TlsStarted(ts, implicit))

    def _go_opaque(self, ts: float, *, implicit: bool) -> None:
        """Both directions are encrypted from here on."""
        self._tls_started(ts, implicit=implicit)
        for direction in (self._client, self._server):
            direction.opaque = True
            direction.buf = b""
        self._pending.clear()
        self._mode = _COMMAND

    # -- client --------------------------------------------------------------------------

    def _client_data(self, data: bytes, ts: float) -> None:
        direction = self._client
        buf = direction.buf + data if direction.buf else data
        pos = 0
        end = len(buf)
        lines = self._whole_lines(direction, buf) if self._mode == _COMMAND else None
        if lines is not None:
            client_line = self._client_line
            for line in lines:
                pos += len(line) + 1
                client_line(line.rstrip(b"\r") if line[-1:] == b"\r" else line, ts)
                if direction.opaque or self._mode != _COMMAND:
                    break
        while pos < end and not direction.opaque:
            if self._mode == _BDAT_CHUNK:
                take = min(self._bdat_left, end - pos)
                self._bdat_left -= take
                pos += take
                if not self._bdat_left:
                    self._mode = _COMMAND
                continue
            if self._mode == _DATA:
                consumed = self._body(buf, pos, ts)
            else:
                consumed = self._next_line(direction, _CLIENT, buf, pos, ts)
            if consumed == pos:
                break
            pos = consumed
        direction.buf = buf[pos:] if pos < end and not direction.opaque else b""

    def _whole_lines(self, direction: _Direction, buf: bytes) -> list[bytes] | None:
        """The whole lines of ``buf``, cut at every LF in one split (the unfinished rest is
        what their lengths leave), when no line needs cutting at the length limit and none is
        empty; None sends ``buf`` to :meth:`_next_line`, which takes runs of empty lines whole.
        """
        if direction.discarding:
            return None
        lines = buf.split(b"\n")
        rest = lines.pop()
        if (
            len(rest) > self.limits.max_line
            or b"" in lines  # a list search: much faster than looking for LF LF in ``buf``
            or b"\r" in lines
            or (lines and max(map(len, lines)) > self.limits.max_line)
        ):
            return None
        return lines

    def _next_line(self, direction: _Direction, side: int, buf: bytes, pos: int, ts: float) -> int:
        """Handle the line at ``buf[pos:]``; return the position after it (``pos``: need more).

        A line longer than the limit is handled cut at the limit and the rest of it dropped.
        A run of empty lines is taken whole, by one regular expression match.
        """
        if direction.discarding:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return len(buf)
            direction.discarding = False
            return nl + 1
        if buf[pos] in b"\r\n":
            # Empty lines up to the last LF before any "\r\r" (a line of CRs goes on below,
            # where it meets the length limit).  A repeated character class: fast in re.
            stop: int = _CR_LF.match(buf, pos).end()  # type: ignore[union-attr]  # CR or LF at pos
            crs = buf.find(b"\r\r", pos, stop)
            end = buf.rfind(b"\n", pos, stop if crs < 0 else crs) + 1
            if end:
                self._empty_lines(side, buf.count(b"\n", pos, end), ts)
                return end
        max_line = self.limits.max_line
        nl = buf.find(b"\n", pos, pos + max_line + 1)
        if nl < 0:
            if len(buf) - pos <= max_line:
                return pos
            self.queued.append(
                Violation(
                    ts, Side(side), ViolationKind.LONG_LINE, f"line longer than {max_line} bytes"
                )
            )
            direction.discarding = True
            line, pos, truncated = buf[pos : pos + max_line], pos + max_line, True
        else:
            line, pos, truncated = buf[pos:nl], nl + 1, False
            if line.endswith(b"\r"):
                line = line.rstrip(b"\r")
        if side == _CLIENT:
            self._client_line(line, ts, truncated=truncated)
        else:
            self._server_line(line, ts)
        return pos

    # -- empty lines -------------------------------------------------------------------

    def _empty_lines(self, side: int, count: int, ts: float) -> None:
        """``count`` empty lines in a row from one side.

        The first of a run is taken as any line (a client's is a command without a verb,
        which servers answer); the others only repeat it (:meth:`_more_empty_lines`), and the
        run's length becomes one note when it ends.  So a flood of line feeds costs no event,
        and no work, per byte.
        """
        direction = self._client if side == _CLIENT else self._server
        if not direction.blanks:
            if side == _CLIENT:
                self._client_line(b"", ts)
            else:
                self._server_line(b"", ts)
            count -= 1
        if count:
            self._more_empty_lines(direction, side, count, ts)

    def _start_empty_lines(self, direction: _Direction, request: Request | None, ts: float) -> None:
        """An empty line, taken as any line (it added ``request``), starts a run."""
        direction.blanks = 1
        direction.blanks_ts = ts
        self._blank_request = request

    def _more_empty_lines(self, direction: _Direction, side: int, count: int, ts: float) -> None:
        """More empty lines in a run: each of the client's waits for its reply, as the first
        does (servers answer every one), but none is an event."""
        direction.blanks += count
        direction.blanks_ts = ts
        request = self._blank_request
        if side == _CLIENT and request is not None:
            pending = self._pending
            room = self.limits.max_pending - len(pending)
            if room > 0:
                pending.extend(repeat(request, min(count, room)))

    def _end_empty_lines(self, direction: _Direction, side: int) -> None:
        """A run of empty lines is over: one note says how long it was."""
        if direction.blanks > 1:
            reason = f"{direction.blanks:,} empty lines"
            self.queued.append(
                Violation(direction.blanks_ts, Side(side), ViolationKind.EMPTY_LINES, reason)
            )
        direction.blanks = 0
        if side == _CLIENT:
            self._blank_request = None

    def _end_runs(self) -> None:
        """Both directions' runs are over (a gap, the end)."""
        for side, direction in ((_CLIENT, self._client), (_SERVER, self._server)):
            if direction.blanks:
                self._end_empty_lines(direction, side)

    # -- client lines --------------------------------------------------------------------

    def _client_line(self, line: bytes, ts: float, truncated: bool = False) -> None:
        """One client line.  The verb ends at the first space; when that is not a known verb,
        at the first run of ASCII whitespace, whitespace before it skipped, as lenient servers
        (Postfix) read it: ``AUTH\tPLAIN`` is AUTH."""
        direction = self._client
        if direction.blanks:
            if not line:
                self._more_empty_lines(direction, _CLIENT, 1, ts)
                return
            self._end_empty_lines(direction, _CLIENT)
        word = line.split(b" ", 1)
        verb = _VERB_CACHE.get(word[0])
        if verb is None:
            word = line.split(None, 1)
            verb_bytes = word[0] if word else b""
            verb = _VERB_CACHE.get(verb_bytes)
            if verb is None:
                verb = verb_bytes.decode("ascii").upper() if _VERB.fullmatch(verb_bytes) else ""
                if verb in KNOWN_VERBS and len(_VERB_CACHE) < MAX_VERB_CACHE:
                    _VERB_CACHE[verb_bytes] = verb
        if self._auth_active and (
            self._auth_confirmed or verb not in KNOWN_VERBS or _credential(line)
        ):
            response = AuthResponse(ts, line)
            self._push(response)
            if not line:
                self._start_empty_lines(direction, response, ts)
            return
        if direction.resync:
            if verb not in KNOWN_VERBS:
                if not line:
                    self._start_empty_lines(direction, None, ts)
                return
            direction.resync = False
        if _BINARY.search(line):
            self._binary_lines += 1
            if self._binary_lines >= BINARY_LINES_BEFORE_GIVING_UP:
                self.queued.append(
                    Violation(
                        ts, Side.CLIENT, ViolationKind.CLIENT_NOT_SMTP, "client does not speak SMTP"
                    )
                )
                direction.opaque = True
                direction.buf = b""
        else:
            self._binary_lines = 0
        arg = word[1] if len(word) > 1 else b""
        command = Command(ts, verb, arg, line, truncated)
        self._push(command)
        if verb == "DATA":
            self._start_body()
        elif verb == "BDAT":
            self._start_chunk(arg, ts)
        elif verb == "AUTH":
            self._auth_active = True
            self._auth_confirmed = False
        elif verb == "STARTTLS":
            self._starttls_sent = True
        elif not line:
            self._start_empty_lines(direction, command, ts)

    def _push(self, request: Request) -> None:
        self.queued.append(request)
        if len(self._pending) >= self.limits.max_pending:
            self.queued.append(
                Violation(
                    request.ts,
                    Side.CLIENT,
                    ViolationKind.TOO_MANY_PENDING,
                    "too many commands without a reply",
                )
            )
            self._pending.clear()
        self._pending.append(request)

    def _start_chunk(self, arg: bytes, ts: float) -> None:
        match = _BDAT.fullmatch(arg)
        size = int(match.group(1)) if match else -1
        if not match or size > MAX_BDAT_CHUNK:
            self.queued.append(
                Violation(ts, Side.CLIENT, ViolationKind.BAD_BDAT, "invalid BDAT argument")
            )
            return
        if size:
            self._mode = _BDAT_CHUNK
            self._bdat_left = size

    # -- message bodies ------------------------------------------------------------------

    def _start_body(self) -> None:
        self._mode = _DATA
        self._data_acknowledged = False
        self._body_size = 0
        self._body_tail = b"\n"
        self._headers = []
        self._header_bytes = 0
        self._in_headers = True

    def _body(self, buf: bytes, pos: int, ts: float) -> int:
        """Consume body bytes from ``buf[pos:]``; return the new position (``pos``: need more)."""
        end = len(buf)
        limits = self.limits
        while self._in_headers:
            nl = buf.find(b"\n", pos, pos + limits.max_line + 1)
            if nl < 0:
                if end - pos <= limits.max_line:
                    return pos
                # A header line over the limit ends header keeping, whether or not its end
                # came in the same segment: what is kept must not depend on segmentation.
                self._in_headers = False
                self._body_tail = b"\n"
                break
            line = buf[pos:nl].rstrip(b"\r")
            if line == b".":
                self._end_body(ts, complete=True)
                return nl + 1
            self._body_size += nl + 1 - pos
            pos = nl + 1
            if not line:
                self._in_headers = False
                self._body_tail = b"\n"
                break
            if line.startswith(b"."):
                line = line[1:]
            if (
                len(self._headers) < limits.max_header_lines
                and self._header_bytes + len(line) <= limits.max_header_bytes
            ):
                self._headers.append(line)
                self._header_bytes += len(line)
        if pos >= end:
            return end
        tail = self._body_tail
        window = tail + buf[pos:] if tail else buf[pos:]
        hit = window.find(b"\n.\r\n")
        hit_lf = window.find(b"\n.\n")
        term = 4
        if hit < 0 or 0 <= hit_lf < hit:
            hit, term = hit_lf, 3
        if hit < 0:
            self._body_size += end - pos
            self._body_tail = window[-3:]
            return end
        self._body_size += hit + 1 - len(tail)
        self._end_body(ts, complete=True)
        return pos + hit + term - len(tail)

    def _body_data(self, data: bytes, ts: float) -> None:
        """Message body past its headers: look for the end only."""
        tail = self._body_tail
        window = tail + data if tail else data
        if b"\n." not in window:
            self._body_size += len(data)
            self._body_tail = window[-3:]
            return
        self._client_data(data, ts)

    def _end_body(self, ts: float, *, complete: bool) -> None:
        self._mode = _COMMAND
        self._push(MessageEnd(ts, self._body_size, tuple(self._headers), complete))
        self._headers = []

    # -- server --------------------------------------------------------------------------

    def _server_data(self, data: bytes, ts: float) -> None:
        direction = self._server
        buf = direction.buf + data if direction.buf else data
        if self.midstream and not self._replies_seen and self._pending:
            self._orphans = max(0, _count_replies(buf) - len(self._pending))
        lines = self._whole_lines(direction, buf)
        if lines is not None:
            server_line = self._server_line
            for line in lines:
                server_line(line.rstrip(b"\r") if line[-1:] == b"\r" else line, ts)
                if direction.opaque:
                    direction.buf = b""
                    return
            direction.buf = buf[buf.rfind(b"\n") + 1 :]
            return
        pos = 0
        end = len(buf)
        while pos < end and not direction.opaque:
            consumed = self._next_line(direction, _SERVER, buf, pos, ts)
            if consumed == pos:
                break
            pos = consumed
        direction.buf = buf[pos:] if pos < end and not direction.opaque else b""

    def _server_line(self, line: bytes, ts: float) -> None:
        direction = self._server
        if direction.blanks:
            if not line:
                self._more_empty_lines(direction, _SERVER, 1, ts)
                return
            self._end_empty_lines(direction, _SERVER)
        code = _reply_code(line)
        if code < 0:
            if not line:
                self._start_empty_lines(direction, None, ts)
            if direction.resync:
                return
            if not self._reply_code and not self._replies_seen:
                self.queued.append(
                    Violation(
                        ts, Side.SERVER, ViolationKind.SERVER_NOT_SMTP, "server does not speak SMTP"
                    )
                )
                direction.opaque = True
                self._client.opaque = True
                return
            self.queued.append(
                Violation(ts, Side.SERVER, ViolationKind.MALFORMED_REPLY, "malformed reply line")
            )
            return
        direction.resync = False
        if self._reply_code and code != self._reply_code:
            self.queued.append(
                Violation(
                    ts,
                    Side.SERVER,
                    ViolationKind.MIXED_CONTINUATION,
                    "continuation line with a different reply code",
                )
            )
            self._flush_reply(ts)
        self._reply_code = code
        room = self.limits.max_reply_bytes - self._reply_bytes
        if len(self._reply_lines) < self.limits.max_reply_lines and room > 0:
            text = line[4 : 4 + room]
            self._reply_lines.append(text)
            self._reply_bytes += len(text)
            self._reply_cut += len(line) - 4 - len(text)
        else:
            self._reply_cut += max(0, len(line) - 4)
        if line[3:4] != b"-":
            self._flush_reply(ts)

    def _flush_reply(self, ts: float) -> None:
        code = self._reply_code
        if not code:
            return
        lines = tuple(self._reply_lines)
        self._reply_code = 0
        self._reply_lines = []
        self._reply_bytes = 0
        cut, self._reply_cut = self._reply_cut, 0
        self._replies_seen = True
        request: Request | None = None
        greeting = False
        if self._greeting_pending:
            self._greeting_pending = False
            if self.midstream:
                greeting = not self._pending and code in GREETING_CODES
            else:
                greeting = not self._pending or code in GREETING_CODES
        if self._orphans:
            self._orphans -= 1
        elif not greeting:
            if self._pending:
                request = self._pending.popleft()
            elif self._mode == _DATA and self._data_acknowledged:
                self._end_body(ts, complete=False)
                request = self._pending.popleft()
        self.queued.append(Reply(ts, code, lines, request, greeting, cut))
        self._after_reply(code, request, ts)

    def _after_reply(self, code: int, request: Request | None, ts: float) -> None:
        if isinstance(request, Command):
            verb = request.verb
            if verb == "DATA":
                if code == 354:
                    self._data_acknowledged = True
                elif self._mode == _DATA:
                    self._mode = _COMMAND
                    self._headers = []
            elif verb == "STARTTLS" and code == 220:
                self._go_opaque(ts, implicit=False)
                return
            elif verb == "STARTTLS":
                self._starttls_sent = False
        elif request is None and code == 354 and self._mode == _COMMAND:
            self._start_body()
            self._data_acknowledged = True
        if self._auth_active and (
            isinstance(request, AuthResponse)
            or (isinstance(request, Command) and request.verb == "AUTH")
        ):
            self._auth_confirmed = code == 334
            self._auth_active = code == 334


def _count_replies(data: bytes) -> int:
    """Complete replies (final lines) in a chunk of server data."""
    return sum(1 for line in data.split(b"\n")[:-1] if _reply_code(line) > 0 and line[3:4] != b"-")


def _credential(line: bytes) -> bool:
    """Whether a line that reads like a verb is a base64 credential: while an AUTH awaits its
    answer, a password such as "MDM" is sent as ``TURN``.  A real verb alone (QUIT, DATA,
    RSET...) decodes to bytes no one types."""
    if len(line) % 4 or not _BASE64.fullmatch(line):
        return False
    try:
        decoded = binascii.a2b_base64(line)
    except binascii.Error:
        return False
    return decoded.isascii() and decoded.decode("ascii").isprintable()


def _reply_code(line: bytes) -> int:
    """The reply code of a server line, or -1 when the line is not a reply."""
    digits = line[:3]
    if not digits.isdigit() or len(digits) < 3 or (len(line) > 3 and line[3] not in b" -"):
        return -1
    code = int(digits)
    return code if 100 <= code <= 599 else -1
