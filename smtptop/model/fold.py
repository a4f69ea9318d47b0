"""The fold: parser and engine events applied to sessions and hosts.

:class:`Model` is the store (:mod:`smtptop.model.store`) fed by events: it decides what
happened (a session rejected, a message accepted, a user named by AUTH) and counts it, and
hands the store the text to keep within its budgets.  :func:`apply` folds a batch of the
analyzer's events into it, as the rows of :mod:`smtptop.wire`: each event's fields are
unpacked by position, in its dataclass's order.

Definitions (the README documents them; tests follow them):

* rejected session: a 5xx reply to the greeting, HELO/EHLO, AUTH, MAIL, RCPT, DATA, BDAT or
  the end of data; except 500 and 502 to EHLO, which mean "EHLO not supported" and make the
  client fall back to HELO (RFC 5321, section 3.2), not a refusal; and except a 5xx to DATA
  or BDAT when no RCPT of that transaction was accepted, which only follows from the RCPT
  replies (a pipelining server answers DATA ``554 no valid recipients`` after refusing them
  all: RFC 2920, section 3.1), so a greylisted sender's session (every RCPT 450) stays
  tempfailed;
* tempfailed session: no such 5xx, but a 4xx reply to one of them;
* accepted message: a 2xx reply to the end of DATA or to the last BDAT chunk;
* recipients: RCPT commands sent.

Counts never depend on what is kept: a session is counted into its host, its host's server
and the server table when it opens and as replies come, so the store evicting the session
later changes no figure.

AUTH credentials are masked in the transcript (``show_credentials`` reveals them); the user
an exchange names is read from its first client message, never a secret (:func:`_auth_user`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from smtptop.model.records import ClientStep, Host, ServerStats, Session, SmtpReply
from smtptop.model.store import ModelLimits, Store
from smtptop.smtp import NOT_SMTP
from smtptop.text import wire_text
from smtptop.wire import (
    AUTH_RESPONSE,
    CLOSED,
    COMMAND,
    DNS_LOOKUP,
    GAP,
    MESSAGE_END,
    OPENED,
    REPLY,
    SIGHTING,
    TLS_STARTED,
    VIOLATION,
    Row,
    Values,
)

MASK = "********"
_ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
COUNTED_STAGES = frozenset(
    {"greeting", "HELO", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "end of data"}
)
CLOSE_NOTES = {
    "closed": "connection closed",
    "reset": "connection reset",
    "idle timeout": "connection idle too long: smtptop stopped following it",
    "capture ended": "the capture ended with the connection still open",
    "port reused": "connection replaced by a new one on the same ports",
    "logs ended": "the logs end before this connection's conn.log row",
    "no conn.log row": "no conn.log row came: the session ends at its last smtp.log row",
}
EHLO_NOT_SUPPORTED = frozenset({500, 502})
DATA_STAGES = frozenset({"DATA", "BDAT"})


class Model(Store):
    """All sessions and hosts of one capture or one live run, as events build them."""

    def __init__(
        self,
        *,
        lan: Iterable[str] = (),
        limits: ModelLimits | None = None,
        show_credentials: bool = False,
    ) -> None:
        super().__init__(lan=lan, limits=limits)
        self.show_credentials = show_credentials
        self.sessions_total = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        # fed from Zeek's logs (smtptop.zeek), not packets: no transcript, no client dialect,
        # and QUIT or talk before the greeting are not known
        self.from_logs = False
        # client lines of the current AUTH exchange of a session, its initial response included
        self._login_step: dict[int, int] = {}

    # -- session lifecycle ---------------------------------------------------------------

    def open_session(
        self,
        session_id: int,
        client: tuple[str, int],
        server: tuple[str, int],
        ts: float,
        *,
        midstream: bool,
    ) -> Session:
        session = Session(session_id, *client, *server, start=ts, end=ts, midstream=midstream)
        self.add_open(session)
        self.sessions_total += 1
        self.first_ts = min(self.first_ts, ts) if self.first_ts else ts
        self.last_ts = max(self.last_ts, ts)
        known = self.server_for(session.server_ip)
        if known is not None:
            known.sessions += 1
            session.server_ip = known.ip  # one string per address, not one per session
        host = self.host_for(session.client_ip, ts)
        if host is not None:
            session.client_ip = host.ip
            host.last_seen = max(host.last_seen, ts)
            host.sessions += 1
            host.open_sessions += 1
            host.max_parallel = max(host.max_parallel, host.open_sessions)
            host.session_starts.append(ts)
            self.mark(host, ts, False)
            new = self.add_destination(host, session.server_ip)
            if new and known is not None and host.lan:
                known.lan_clients += 1
            stats = session.server_stats = self.server_row(host, session.server_ip, known)
            stats.sessions += 1
            stats.last_seen = ts
        return session

    def close_session(
        self,
        session_id: int,
        ts: float,
        reason: str,
        *,
        client_bytes: int,
        server_bytes: int,
        packets: int,
        conflicts: int = 0,
    ) -> None:
        session = self.open.get(session_id)
        if session is None:
            return
        session.closed = True
        session.close_reason = reason
        session.end = max(session.end, ts)
        session.client_bytes = client_bytes
        session.server_bytes = server_bytes
        session.packets = packets
        session.conflicts = conflicts
        if conflicts:
            self.keep_line(
                session,
                session.end,
                "*",
                f"{conflicts} retransmitted segments said something else than the first copy,"
                " which was kept",
            )
        note = CLOSE_NOTES.get(reason, f"connection ended: {reason}")
        no_quit = not (session.quit_sent or reason == "capture ended" or self.from_logs)
        how = " (no QUIT sent)" if no_quit else ""
        self.keep_line(session, session.end, "*", note + how)
        self._login_step.pop(session_id, None)
        host = self.hosts.get(session.client_ip)
        if host is not None:
            host.open_sessions -= 1
        session.server_stats = None
        self.finish(session)

    # -- events --------------------------------------------------------------------------

    def fold(self, session_id: int, tag: int, values: Values) -> None:
        """Fold one parser event, as a row's tag and values, into its session and host."""
        session = self.open.get(session_id)
        if session is None:
            return
        ts: float = values[0]
        session.end = max(session.end, ts)
        self.last_ts = max(self.last_ts, ts)
        if tag == REPLY:
            self._reply(session, values)
        elif tag == COMMAND:
            self._command(session, values)
        elif tag == AUTH_RESPONSE:
            self._auth_response(session, values)
        elif tag == MESSAGE_END:
            _, size, headers, complete = values
            session.outstanding += 1
            for header in headers:
                self.keep_line(session, ts, "H", wire_text(header))
            cut = "" if complete else " (end not seen)"
            self.keep_line(session, ts, "*", f"message body: {size} bytes{cut}")
        elif tag == TLS_STARTED:
            session.tls = True
            host = self.hosts.get(session.client_ip)
            if host is not None:
                host.tls_sessions += 1
            how = "implicit TLS" if values[1] else "TLS started"
            self.keep_line(session, ts, "*", f"{how}: the rest of the session is encrypted")
        elif tag == GAP:
            _, side, size = values
            session.gaps += 1
            who = "client" if side == 0 else "server"
            self.keep_line(session, ts, "*", f"{size} bytes from the {who} not captured")
        elif tag == VIOLATION:
            _, _, kind, reason = values
            session.violations += 1
            if kind in NOT_SMTP:
                session.non_smtp = True
            self.keep_line(session, ts, "*", reason)

    def _command(self, session: Session, values: Values) -> None:
        ts, verb, arg, line, truncated = values
        text = wire_text(line)
        if session.outstanding > 0 and verb not in ("DATA", "BDAT"):
            session.pipelined = True
        session.outstanding += 1
        sent, _, shown_arg = text.partition(" ")
        if verb == "AUTH":
            text = self._auth_command(session, arg, text)
            initial = len(arg.split()) > 1
            self.keep_step(session, ClientStep(sent, session.auth, initial))
        else:
            self.keep_step(session, ClientStep(sent, shown_arg))
        self.keep_line(session, ts, "C", text)
        if truncated:
            self.keep_line(session, ts, "*", "line cut at the length limit")
        if verb in ("HELO", "EHLO") and arg.strip():
            session.helo = wire_text(arg.strip())  # a line at most: counted in footprint()
            host = self.hosts.get(session.client_ip)
            if host is not None:
                helo = self.short_name(session.helo)
                self.keep_host_name(host, host.helos, helo, self.limits.max_helos)
        elif verb == "MAIL":
            sender = mailbox(wire_text(arg))
            self.keep_address(session, session.mail_from, sender)
            host = self.hosts.get(session.client_ip)
            domain = sender.rpartition("@")[2].lower()
            if host is not None and domain:
                limit = self.limits.max_sender_domains
                self.keep_host_name(host, host.sender_domains, self.short_name(domain), limit)
        elif verb == "RCPT":
            session.recipients += 1
            self.keep_address(session, session.rcpt_to, mailbox(wire_text(arg)))
            host = self.hosts.get(session.client_ip)
            if host is not None:
                host.recipients += 1
        elif verb == "QUIT":
            session.quit_sent = True

    def _auth_command(self, session: Session, arg: bytes, text: str) -> str:
        """Start an AUTH exchange: whatever came before (a refused mechanism, a cancelled
        one) is forgotten, so the user is read from this exchange's first message only."""
        parts = arg.split()
        mechanism = parts[0].decode("ascii", "replace").upper() if parts else ""
        session.auth = self.short_name(wire_text(mechanism.encode()))
        initial = len(parts) > 1
        session.auth_user = self.short_name(_auth_user(mechanism, parts[1])) if initial else ""
        self._login_step[session.id] = int(initial)
        if self.show_credentials or not initial:
            return text
        return f"AUTH {session.auth} {MASK}"

    def _auth_response(self, session: Session, values: Values) -> None:
        """A client line of an AUTH exchange: always masked; the first one names the user when
        the AUTH command had no initial response."""
        ts, line = values
        session.outstanding += 1
        self.keep_step(session, ClientStep("", ""))
        step = self._login_step.get(session.id)
        if step is not None:
            if step == 0:
                user = _auth_user(session.auth, line)
                session.auth_user = self.short_name(user)
            self._login_step[session.id] = step + 1
        shown = wire_text(line) if self.show_credentials or line == b"*" else MASK
        self.keep_line(session, ts, "C", shown)

    def _reply(self, session: Session, values: Values) -> None:
        ts, code, raw_lines, request, greeting, cut = values
        lines = [wire_text(line) for line in raw_lines]
        last = len(lines) - 1
        shown = [
            f"{code}{'-' if i < last else ' '}{line}" if line else str(code)
            for i, line in enumerate(lines)
        ]
        self.keep_lines(session, ts, "S", shown)
        stage = _stage(request, greeting)
        text = "\n".join(lines)
        decides = (
            stage in COUNTED_STAGES
            and code >= 400
            and not (stage == "EHLO" and code in EHLO_NOT_SUPPORTED)
            and not (code >= 500 and stage in DATA_STAGES and not session.recipient_accepted)
            and not session.rejected
            and (code >= 500 or not session.tempfailed)
        )
        if stage == "RCPT" and 200 <= code < 300:
            session.recipient_accepted = True
        elif stage in ("MAIL", "RSET") and 200 <= code < 300:
            session.recipient_accepted = False  # a new transaction
        reply = self.keep_reply(session, code, text, stage, decides, cut)
        host = self.hosts.get(session.client_ip)
        stats = session.server_stats
        if greeting:
            session.greeting_seen = True
            session.pregreet = session.outstanding > 0  # the client spoke first
        elif request is not None and session.outstanding > 0:
            session.outstanding -= 1
        if stage == "EHLO" and code == 250:
            session.pipelining_offered = "PIPELINING" in map(str.upper, lines)
        if code >= 400 and host is not None:
            self.keep_refusal(host, code, text)
        if greeting and lines:
            session.banner = self.short_name(_banner_name(lines[0]))
            server = self.servers.get(session.server_ip)
            if server is not None and not server.name:
                server.name = session.banner
            if stats is not None and not stats.name:
                stats.name = server.name if server is not None else session.banner
        if 200 <= code < 300 and _ends_message(request):
            session.accepted_messages += 1
            if host is not None:
                host.accepted_messages += 1
            if stats is not None:
                stats.accepted_messages += 1
        if decides:
            self._judge(session, host, stats, reply)

    def _judge(
        self, session: Session, host: Host | None, stats: ServerStats | None, reply: SmtpReply
    ) -> None:
        """Move the session to rejected or tempfailed (the reply decides: see ``_reply``),
        keeping host and server counts right."""
        if reply.code >= 500:
            was_tempfailed = session.tempfailed
            session.rejected = True
            session.tempfailed = False
            session.outcome_reply = reply
            for counter in (host, stats):
                if counter is not None:
                    counter.rejected_sessions += 1
                    counter.tempfailed_sessions -= was_tempfailed
            if host is not None:
                self.mark(host, session.start, True)
        else:
            session.tempfailed = True
            session.outcome_reply = reply
            for counter in (host, stats):
                if counter is not None:
                    counter.tempfailed_sessions += 1

    # -- identity ------------------------------------------------------------------------

    def sighting(self, ip: str | None, mac: str | None, name: str | None, source: str) -> None:
        """Evidence that an address has a name or a MAC (a DHCP request, an ARP reply...)."""
        if ip is None:
            if mac and name:
                self.name_mac(mac, name)
            return
        found = self.identity_for(ip)
        if found is None:
            return
        if mac:
            found.mac = mac
            early = self.names_by_mac.get(mac)
            if early and "dhcp" not in found.names:
                found.names["dhcp"] = early
        if name:
            found.names[source] = name

    def dns_lookup(self, ts: float, client: str, qtype: int, rcode: int | None) -> None:
        found = self.identity_for(client)
        if found is None:
            return
        if rcode is None:
            found.lookups += 1
            if qtype == 15:
                found.mx_times.append(ts)
        elif rcode == 3:
            found.nxdomain += 1


def apply(model: Model, rows: Iterable[Row]) -> None:
    """Fold a batch of engine events, as rows (:func:`smtptop.wire.encode`), into the model."""
    fold = model.fold
    for session_id, tag, values in rows:
        if tag == OPENED:
            ts, client, server, midstream = values
            model.open_session(session_id, client, server, ts, midstream=midstream)
        elif tag == CLOSED:
            ts, reason, client_bytes, server_bytes, packets, conflicts = values
            model.close_session(
                session_id,
                ts,
                reason,
                client_bytes=client_bytes,
                server_bytes=server_bytes,
                packets=packets,
                conflicts=conflicts,
            )
        elif session_id:  # who-is-who events have session id 0
            fold(session_id, tag, values)
        elif tag == SIGHTING:
            _, ip, mac, name, source = values
            model.sighting(ip, mac, name, source)
        elif tag == DNS_LOOKUP:
            ts, client, _, qtype, rcode = values
            model.dns_lookup(ts, client, qtype, rcode)


def mailbox(arg: str) -> str:
    """The address of a ``FROM:<a@b> SIZE=1`` / ``TO: <c@d>`` argument, without brackets."""
    _, sep, rest = arg.partition(":")
    if not sep:
        rest = arg
    rest = rest.strip()
    if rest.startswith("<"):
        close = rest.find(">")
        return rest[1:close] if close >= 0 else rest[1:]
    return rest.split(" ", 1)[0]


def _stage(request: tuple[int, Values] | None, greeting: bool) -> str:
    """What a reply answers, from its request as a row holds it."""
    if greeting:
        return "greeting"
    if request is None:
        return "unsolicited"
    tag, values = request
    if tag == COMMAND:
        verb: str = values[1]
        return verb or "unknown"
    if tag == MESSAGE_END:
        return "end of data"
    return "AUTH" if tag == AUTH_RESPONSE else "unsolicited"


def _ends_message(request: tuple[int, Values] | None) -> bool:
    """Whether a reply to this request answers the end of a message: DATA's or BDAT LAST."""
    if request is None:
        return False
    tag, values = request
    if tag == MESSAGE_END:
        return True
    return tag == COMMAND and values[1] == "BDAT" and values[2].upper().rstrip().endswith(b"LAST")


def _banner_name(line: str) -> str:
    """The host a greeting names: its first word, unless that is an enhanced status code."""
    word = line.split(" ", 1)[0]
    return "" if _ENHANCED_CODE.fullmatch(word) else word


def _auth_user(mechanism: str, data: bytes) -> str:
    """The user named by the first client message of an AUTH exchange, never a secret:
    PLAIN's authentication identity, LOGIN's user, CRAM-MD5's name before the digest, the
    ``user=`` of XOAUTH2 and the ``a=`` of OAUTHBEARER (not their tokens); nothing for other
    mechanisms."""
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return ""
    user = b""
    if mechanism == "PLAIN":
        fields = decoded.split(b"\0")
        user = fields[1] if len(fields) == 3 else b""
    elif mechanism == "LOGIN":
        user = decoded
    elif mechanism == "CRAM-MD5":
        user = decoded.rpartition(b" ")[0]
    elif mechanism == "XOAUTH2":
        fields = decoded.split(b"\x01")
        user = next((f[5:] for f in fields if f.startswith(b"user=")), b"")
    elif mechanism == "OAUTHBEARER":  # RFC 7628: the GS2 header before the first ^A
        header = decoded.split(b"\x01", 1)[0].split(b",")
        name = next((f[2:] for f in header if f.startswith(b"a=")), b"")
        user = name.replace(b"=2C", b",").replace(b"=3D", b"=")
    return wire_text(user)
