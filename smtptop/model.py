"""Sessions and per-host facts built from parser events: pure and bounded.

The model turns SMTP events into what an admin asks about: per session, who spoke to whom,
what HELO and envelope were used and what the server answered; per LAN host, how many
sessions, distinct servers, rejected and tempfailed sessions, accepted messages.  Every
collection that grows with traffic has a bound, and what a bound cuts is counted.

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

Memory is bounded by :class:`ModelLimits`.  Counts never depend on what is kept: a session is
counted into its host, its host's server and the server table when it opens and as replies
come, so evicting the session later changes no figure.  Finished sessions are kept in full
under one global budget, ``max_sessions`` sessions and ``max_kept_bytes`` bytes, and evicted
by this policy (:meth:`Model.close_session`):

* while both budgets have room, every host keeps all its sessions: there is no per-host cap,
  so the spambot an admin hunts keeps all its evidence while there is room for it;
* over a budget, a session goes from the host that keeps the most sessions (of hosts that
  keep as many, the one that has kept that many longest), so a spambot with 10,000 sessions
  gives up sessions before a PC with 5 loses any;
* within that host its oldest session goes, taken from those that were not rejected while
  they are more than a quarter of what it keeps, else from its rejected ones: rejected
  sessions, the evidence an admin wants, stay longest;
* the victim host is chosen by kept sessions for both budgets, not by bytes: sessions are
  what the drill-down shows, and a session's footprint is bounded by the transcript, reply
  and address limits (about 0.5 MiB with the default limits), so no host holds much of the
  byte budget with few sessions; choosing by bytes would take the one long session of a
  quiet host first;
* sessions whose host was not kept (``max_hosts``) are kept as one more host, without an
  address, which holds them all and so tends to give them up first;
* ``sessions_evicted`` (per host and in total) counts what went, so that kept + evicted +
  open == sessions seen.

Eviction is O(1) per session: hosts sit in buckets by how many sessions they keep, a count
changes by one at a time, so the fullest bucket is found from the previous one.

Text is budgeted wherever it is kept, in characters after escaping (a control byte shown as
``\\x01`` costs four; text that is not ASCII is counted at four bytes a character): each
reply and the replies of a session, the transcript, the addresses, a host's refusal texts
and names, and all hosts' names and refusals together; open sessions share a budget of their
own.  A cut text ends in a marker saying how much went (:func:`cut`), and what a budget
refused is counted.  :meth:`Session.footprint` counts every string kept, as it is kept.

Distinct destinations per host are exact, in packed addresses (:class:`AddressSet`), up to a
byte budget for all hosts together; per-server rows of a host are its most recently used
``max_servers_per_host`` servers, and the sessions of the rows that went are counted.
"""

from __future__ import annotations

import base64
import binascii
import functools
import heapq
import ipaddress
import re
from array import array
from bisect import bisect_left
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from smtptop.smtp import (
    NOT_SMTP,
    AuthResponse,
    Command,
    Event,
    Gap,
    MessageEnd,
    Reply,
    TlsStarted,
    Violation,
)
from smtptop.text import wire_text

MASK = "********"
_ENHANCED_CODE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
COUNTED_STAGES = frozenset(
    {"greeting", "HELO", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "end of data"}
)
DEFAULT_LAN = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
CLOSE_NOTES = {
    "closed": "connection closed",
    "reset": "connection reset",
    "idle timeout": "connection idle too long: smtptop stopped following it",
    "capture ended": "the capture ended with the connection still open",
    "port reused": "connection replaced by a new one on the same ports",
}
EHLO_NOT_SUPPORTED = frozenset({500, 502})
DATA_STAGES = frozenset({"DATA", "BDAT"})
OUTCOMES = ("rejected", "tempfailed", "accepted", "tls", "not-smtp", "no-mail")


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """How much the model keeps; everything beyond is counted, not stored."""

    max_sessions: int = 20000  # finished sessions kept in full, all hosts together
    max_kept_bytes: int = 64 << 20  # Session.footprint() of the kept sessions together
    max_hosts: int = 100000
    max_servers: int = 200000  # the server table (Model.servers)
    max_servers_per_host: int = 64  # per-server rows of a host: its most recently used
    max_destination_bytes: int = 32 << 20  # AddressSet.cost() of all hosts together
    max_open_bytes: int = 64 << 20  # Session.footprint() of the open sessions together
    # Per session; text is counted in characters after escaping (what is kept), and a cut
    # text ends in a marker saying how many characters went.
    max_transcript_lines: int = 400
    max_transcript_bytes: int = 65536
    max_addresses: int = 1000  # MAIL FROM and RCPT TO addresses kept, each list
    max_address_bytes: int = 65536  # both lists together
    max_replies: int = 200
    max_reply_text: int = 4096  # of one reply
    max_reply_bytes: int = 65536  # of all the replies kept
    max_name: int = 256  # a banner name, AUTH mechanism or user; a HELO name or domain of a host
    # Per host
    max_helos: int = 32
    max_sender_domains: int = 64
    max_refusals: int = 64  # distinct refusal texts, kept for detection
    max_refusal_text: int = 1024  # of one refusal: blocklists name themselves early
    max_refusal_bytes: int = 16384  # of all the refusal texts of a host
    max_host_text_bytes: int = 64 << 20  # HELO names, sender domains, refusals: all hosts
    max_identities: int = 65536


SESSION_BYTES = 1024  # a session without lines and names: the object and its lists
LINE_BYTES = 120  # a transcript line, reply or address: the object, its string, a list slot
MAX_STEPS = 64  # client lines kept per open session for its dialect (a few say it)
RECENT_STARTS = 64  # session starts (and MX lookups) remembered per host for rates
V4_BYTES, V6_BYTES = 4, 100  # what a destination costs in an AddressSet


def text_cost(text: str) -> int:
    """The bytes a kept string's characters take: one each for ASCII (escaped wire text mostly
    is), else counted as four (one astral character makes a str take four a character)."""
    return len(text) if text.isascii() else 4 * len(text)


def cut(text: str, room: int, gone: int = 0) -> str:
    """``text`` cut to ``room`` characters, ending in a marker saying how many went (``gone``
    of them before it arrived: the parser's own bound)."""
    if len(text) <= room and not gone:
        return text
    return f"{text[:room]}...({max(0, len(text) - room) + gone:,} characters not kept)"


class AddressSet:
    """Distinct IP addresses, exact, in about 4 bytes per IPv4 address: a sorted array of
    packed addresses, and a small set of recent additions merged into it once it holds an
    eighth as many (O(log n) amortised per address).  IPv6 addresses, rare as SMTP
    destinations, are kept in a set of ints (about 100 bytes each)."""

    __slots__ = ("_recent", "_sorted", "_v6", "size")

    def __init__(self) -> None:
        self._sorted = array("I")
        self._recent: set[int] = set()
        self._v6: set[int] | None = None  # made on the first IPv6 address
        self.size = 0

    def __contains__(self, ip: str) -> bool:
        if ":" in ip:
            return self._v6 is not None and _packed(ip) in self._v6
        key = _packed(ip)
        if key in self._recent:
            return True
        found, at = self._sorted, bisect_left(self._sorted, key)
        return at < len(found) and found[at] == key

    def add(self, ip: str) -> None:
        """Add an address that is not in the set yet (the caller checked)."""
        self.size += 1
        if ":" in ip:
            if self._v6 is None:
                self._v6 = set()
            self._v6.add(_packed(ip))
            return
        self._recent.add(_packed(ip))
        if len(self._recent) > 16 + len(self._sorted) // 8:
            self._sorted = array("I", heapq.merge(self._sorted, sorted(self._recent)))
            self._recent.clear()

    @staticmethod
    def cost(ip: str) -> int:
        """The bytes one more address costs, for the budget of all sets together."""
        return V6_BYTES if ":" in ip else V4_BYTES


def _packed(ip: str) -> int:
    if ":" in ip:
        return int(ipaddress.IPv6Address(ip))
    a, b, c, d = ip.split(".")
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


class TimeRing:
    """The last :data:`RECENT_STARTS` timestamps of something, in 8 bytes each: enough to
    say "10 or more in a minute" without a deque of float objects per host."""

    __slots__ = ("_next", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._next = 0

    def append(self, ts: float) -> None:
        if len(self._times) < RECENT_STARTS:
            self._times.append(ts)
        else:
            self._times[self._next] = ts
            self._next = (self._next + 1) % RECENT_STARTS

    def count_since(self, since: float) -> int:
        return sum(1 for t in self._times if t >= since)


@dataclass(slots=True)
class TranscriptLine:
    """One line of a session as shown: ``kind`` is C (client), S (server), H (message
    header sent by the client) or * (a note from smtptop: body size, TLS, gap, violation)."""

    ts: float
    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class ClientStep:
    """A client line as parsed, for telling client software apart (its dialect): a command's
    verb and argument exactly as sent, or a line inside an AUTH exchange, whose text (a
    secret) is not kept.  Kept while the session is open, then let go."""

    verb: str  # as sent: "EHLO", "mail", "Rcpt"; "" for a line inside an AUTH exchange
    arg: str  # as sent; for AUTH only its mechanism
    initial_response: bool = False  # AUTH sent with its first message on the same line


@dataclass(slots=True)
class SmtpReply:
    code: int
    text: str
    stage: str


@dataclass(slots=True)
class Session:
    """One TCP connection to an SMTP port."""

    id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    start: float
    end: float
    midstream: bool = False
    helo: str = ""
    banner: str = ""
    mail_from: list[str] = field(default_factory=list)
    rcpt_to: list[str] = field(default_factory=list)
    replies: list[SmtpReply] = field(default_factory=list)
    replies_dropped: int = 0
    reply_bytes: int = 0  # characters of the replies' texts, against max_reply_bytes
    reply_text_dropped: int = 0  # characters cut from the replies' texts
    address_bytes: int = 0
    addresses_dropped: int = 0
    recipients: int = 0
    accepted_messages: int = 0
    rejected: bool = False
    tempfailed: bool = False
    decisive: SmtpReply | None = None
    tls: bool = False
    gaps: int = 0
    conflicts: int = 0
    non_smtp: bool = False
    violations: int = 0
    auth_mechanism: str = ""
    auth_user: str = ""
    quit_sent: bool = False
    greeting_seen: bool = False
    pregreet: bool = False  # commands sent before the server's greeting
    pipelined: bool = False
    pipelining_offered: bool = False
    outstanding: int = 0
    recipient_accepted: bool = False  # a RCPT of the current transaction was accepted
    steps: list[ClientStep] = field(default_factory=list)  # the first MAX_STEPS, while open
    closed: bool = False
    close_reason: str = ""
    client_bytes: int = 0
    server_bytes: int = 0
    packets: int = 0
    transcript: list[TranscriptLine] = field(default_factory=list)
    transcript_bytes: int = 0
    transcript_dropped: int = 0
    held: int = 0  # what its lines, replies and addresses cost, by text_cost()
    server_stats: ServerStats | None = None  # its host's row for its server, while open

    def footprint(self) -> int:
        """About the bytes a finished session holds: what ``max_kept_bytes`` budgets.  Every
        line, reply and address is counted as it is kept (``held``), so this is O(1)."""
        names = (self.helo, self.banner, self.auth_mechanism, self.auth_user)
        return SESSION_BYTES + self.held + sum(map(text_cost, names))

    @property
    def partial(self) -> bool:
        """Picked up mid-stream or with bytes missing: the facts may be incomplete."""
        return self.midstream or self.gaps > 0

    @property
    def outcome(self) -> str:
        if self.rejected:
            return "rejected"
        if self.tempfailed:
            return "tempfailed"
        if self.accepted_messages:
            return "accepted"
        if self.tls:
            return "tls"
        if self.non_smtp:
            return "not-smtp"
        return "no-mail"

    @property
    def client(self) -> str:
        return endpoint(self.client_ip, self.client_port)

    @property
    def server(self) -> str:
        return endpoint(self.server_ip, self.server_port)


@dataclass(slots=True)
class ServerStats:
    """What one client host did with one server."""

    ip: str
    name: str = ""
    sessions: int = 0
    rejected_sessions: int = 0
    tempfailed_sessions: int = 0
    accepted_messages: int = 0
    last_seen: float = 0.0


@dataclass(slots=True)
class Server:
    """A server address over all client hosts: its name and how many LAN hosts use it (the
    smarthost is the one most do)."""

    ip: str
    name: str = ""
    sessions: int = 0
    lan_clients: int = 0


@dataclass(slots=True)
class Host:
    """An SMTP client host and everything it did."""

    ip: str
    lan: bool
    first_seen: float
    last_seen: float
    sessions: int = 0
    rejected_sessions: int = 0
    tempfailed_sessions: int = 0
    accepted_messages: int = 0
    recipients: int = 0
    tls_sessions: int = 0
    open_sessions: int = 0
    max_parallel: int = 0
    helos: dict[str, int] = field(default_factory=dict)
    sender_domains: dict[str, int] = field(default_factory=dict)
    refusals: dict[tuple[int, str], int] = field(default_factory=dict)
    refusals_dropped: int = 0
    refusal_bytes: int = 0  # characters of the refusal texts kept
    names_dropped: int = 0  # HELO names and sender domains not kept (over their bounds)
    servers: dict[str, ServerStats] = field(default_factory=dict)  # least recently used first
    servers_dropped: int = 0  # sessions counted in no row of ``servers``
    servers_evicted_seen: float = float("-inf")  # the latest last_seen of a row that went
    destination_set: AddressSet = field(default_factory=AddressSet)
    destinations_uncounted: int = 0  # sessions to servers the full budget could not record
    session_starts: TimeRing = field(default_factory=TimeRing)
    sessions_evicted: int = 0
    kept: tuple[deque[int], deque[int]] = field(default_factory=lambda: (deque(), deque()))

    @property
    def destinations(self) -> int:
        """Distinct server addresses: exact unless ``destinations_uncounted``."""
        return self.destination_set.size

    @property
    def sessions_kept(self) -> int:
        """Finished sessions kept in full (not rejected, rejected)."""
        return len(self.kept[0]) + len(self.kept[1])

    def sessions_per_minute(self, now: float) -> float:
        """Sessions opened in the last minute before ``now`` (at most RECENT_STARTS)."""
        return float(self.session_starts.count_since(now - 60.0))


NAME_SOURCES = ("dhcp-fqdn", "dhcp", "nbns", "dns-ptr", "mdns", "llmnr")


@dataclass(slots=True)
class Identity:
    """Who an address is, from DHCP, NetBIOS, mDNS, LLMNR, DNS PTR and ARP, and what it
    asked DNS (spambots look up MX records in bursts)."""

    ip: str
    mac: str = ""
    names: dict[str, str] = field(default_factory=dict)  # source -> name
    lookups: int = 0
    nxdomain: int = 0
    mx_times: TimeRing = field(default_factory=TimeRing)

    @property
    def name(self) -> str:
        """The most trustworthy name: what the host itself announced first."""
        return next((self.names[s] for s in NAME_SOURCES if s in self.names), "")

    def mx_lookups(self, now: float, window: float) -> int:
        return self.mx_times.count_since(now - window)


def rank(host: Host) -> tuple[int, int, int, str]:
    """The default order of hosts: most distinct servers, then most rejections, then most
    sessions; the address breaks ties."""
    return (-host.destinations, -host.rejected_sessions, -host.sessions, host.ip)


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def is_lan(ip: str, extra: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> bool:
    """RFC 1918, RFC 6598, link-local, IPv6 ULA, or a network the user named."""
    return _is_lan(ip, tuple(extra))


@functools.lru_cache(maxsize=65536)  # asked for every session: parsing the address is slow
def _is_lan(ip: str, extra: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in (*DEFAULT_LAN, *extra))


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


def _stage(reply: Reply) -> str:
    request = reply.request
    if reply.greeting:
        return "greeting"
    if isinstance(request, Command):
        return request.verb or "unknown"
    if isinstance(request, MessageEnd):
        return "end of data"
    if isinstance(request, AuthResponse):
        return "AUTH"
    return "unsolicited"


class Model:
    """All sessions and hosts of one capture or one live run."""

    def __init__(
        self,
        *,
        lan: Iterable[str] = (),
        limits: ModelLimits | None = None,
        show_credentials: bool = False,
    ) -> None:
        self.limits = limits or ModelLimits()
        self.lan_networks = tuple(ipaddress.ip_network(n, strict=False) for n in lan)
        self.show_credentials = show_credentials
        self.hosts: dict[str, Host] = {}
        self.open: dict[int, Session] = {}
        self.finished: dict[int, Session] = {}  # kept in full, in the order they ended
        # hosts by the sessions they keep, each bucket in the order its hosts entered it
        self._by_kept: dict[int, OrderedDict[str, Host]] = {}
        self._most_kept = 0  # the fullest bucket
        self._unhosted = Host("", False, 0.0, 0.0)  # keeps the sessions of hosts not kept
        self.kept_bytes = 0
        self.sessions_total = 0
        self.sessions_evicted = 0
        self.hosts_dropped = 0
        self.servers: dict[str, Server] = {}
        self.servers_dropped = 0  # sessions to servers the full table could not hold
        self.destination_bytes = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.on_session_closed: list[Callable[[Session], None]] = []
        self.identities: dict[str, Identity] = {}
        self.names_by_mac: dict[str, str] = {}
        self.identities_dropped = 0
        self.open_bytes = 0  # Session.held of the open sessions together
        self.host_text_bytes = 0  # HELO names, sender domains and refusal texts of all hosts
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
        self.open[session_id] = session
        self.sessions_total += 1
        self.first_ts = min(self.first_ts, ts) if self.first_ts else ts
        self.last_ts = max(self.last_ts, ts)
        server = self._server(session.server_ip)
        if server is not None:
            session.server_ip = server.ip  # one string per address, not one per session
        host = self._host(session.client_ip, ts)
        if host is not None:
            session.client_ip = host.ip
            host.sessions += 1
            host.open_sessions += 1
            host.max_parallel = max(host.max_parallel, host.open_sessions)
            host.session_starts.append(ts)
            self._destination(host, server, session.server_ip)
            stats = session.server_stats = self._server_row(host, session.server_ip, server)
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
        session = self.open.pop(session_id, None)
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
            self._line(
                session,
                session.end,
                "*",
                f"{conflicts} retransmitted segments said something else than the first copy,"
                " which was kept",
            )
        note = CLOSE_NOTES.get(reason, f"connection ended: {reason}")
        how = "" if session.quit_sent or reason == "capture ended" else " (no QUIT sent)"
        self._line(session, session.end, "*", note + how)
        self._login_step.pop(session_id, None)
        self.open_bytes -= session.held
        host = self.hosts.get(session.client_ip)
        if host is not None:
            host.open_sessions -= 1
        session.server_stats = None
        for hook in self.on_session_closed:
            hook(session)
        session.held -= sum(map(_step_cost, session.steps))  # read by the hooks, now let go
        session.steps = []
        self._keep(session, host)

    def _keep(self, session: Session, host: Host | None) -> None:
        """Keep a finished session in full, then evict by the policy in the module's
        docstring until the global budgets hold.  O(1) amortised: each session is kept once
        and evicted at most once, and each moves its host by one bucket."""
        limits = self.limits
        if host is None:
            host = self._unhosted
        self.finished[session.id] = session
        self.kept_bytes += session.footprint()
        host.kept[int(session.rejected)].append(session.id)
        self._rebucket(host, 1)
        while len(self.finished) > limits.max_sessions or self.kept_bytes > limits.max_kept_bytes:
            self._evict(next(iter(self._by_kept[self._most_kept].values())))

    def _evict(self, host: Host) -> None:
        """Forget the oldest kept session of a host, from the class :func:`_victim` picks."""
        session = self.finished.pop(host.kept[_victim(*map(len, host.kept))].popleft())
        self.kept_bytes -= session.footprint()
        self.sessions_evicted += 1
        host.sessions_evicted += 1
        self._rebucket(host, -1)

    def _rebucket(self, host: Host, step: int) -> None:
        """Move a host whose kept sessions just changed by ``step`` (1 or -1) to the end of
        its new bucket, and keep ``_most_kept`` on the fullest bucket."""
        buckets, count = self._by_kept, host.sessions_kept
        before = count - step
        if before:
            bucket = buckets[before]
            del bucket[host.ip]
            if not bucket:
                del buckets[before]
        if count:
            bucket = buckets.get(count)
            if bucket is None:
                bucket = buckets[count] = OrderedDict()
            bucket[host.ip] = host
        if count > self._most_kept or (before == self._most_kept and before not in buckets):
            self._most_kept = count  # grew past it, or emptied it and sits one below

    def sessions(self) -> list[Session]:
        """Kept sessions, finished ones first, in the order they ended, then open ones."""
        return [*self.finished.values(), *self.open.values()]

    def host_sessions(self, ip: str) -> list[Session]:
        """One host's kept sessions, finished and open, in the order they started."""
        host = self.hosts.get(ip)
        if host is None:
            return []
        finished = [self.finished[i] for queue in host.kept for i in queue]
        found = [*finished, *(s for s in self.open.values() if s.client_ip == ip)]
        return sorted(found, key=lambda s: (s.start, s.id))

    def session(self, session_id: int) -> Session | None:
        return self.open.get(session_id) or self.finished.get(session_id)

    # -- events --------------------------------------------------------------------------

    def apply(self, session_id: int, event: Event) -> None:
        """Fold one parser event into its session and host."""
        session = self.open.get(session_id)
        if session is None:
            return
        session.end = max(session.end, event.ts)
        self.last_ts = max(self.last_ts, event.ts)
        if isinstance(event, Reply):
            self._reply(session, event)
        elif isinstance(event, Command):
            self._command(session, event)
        elif isinstance(event, AuthResponse):
            self._auth_response(session, event)
        elif isinstance(event, MessageEnd):
            session.outstanding += 1
            for header in event.headers:
                self._line(session, event.ts, "H", wire_text(header))
            cut = "" if event.complete else " (end not seen)"
            self._line(session, event.ts, "*", f"message body: {event.size} bytes{cut}")
        elif isinstance(event, TlsStarted):
            session.tls = True
            host = self.hosts.get(session.client_ip)
            if host is not None:
                host.tls_sessions += 1
            how = "implicit TLS" if event.implicit else "TLS started"
            self._line(session, event.ts, "*", f"{how}: the rest of the session is encrypted")
        elif isinstance(event, Gap):
            session.gaps += 1
            side = "client" if event.side == 0 else "server"
            self._line(session, event.ts, "*", f"{event.size} bytes from the {side} not captured")
        elif isinstance(event, Violation):
            session.violations += 1
            if event.kind in NOT_SMTP:
                session.non_smtp = True
            self._line(session, event.ts, "*", event.reason)

    def _command(self, session: Session, event: Command) -> None:
        verb = event.verb
        text = wire_text(event.line)
        if session.outstanding > 0 and verb not in ("DATA", "BDAT"):
            session.pipelined = True
        session.outstanding += 1
        sent, _, arg = text.partition(" ")
        if verb == "AUTH":
            text = self._auth_command(session, event, text)
            initial = len(event.arg.split()) > 1
            self._step(session, ClientStep(sent, session.auth_mechanism, initial))
        else:
            self._step(session, ClientStep(sent, arg))
        self._line(session, event.ts, "C", text)
        if event.truncated:
            self._line(session, event.ts, "*", "line cut at the length limit")
        if verb in ("HELO", "EHLO") and event.arg.strip():
            session.helo = wire_text(event.arg.strip())  # a line at most: counted in footprint()
            host = self.hosts.get(session.client_ip)
            if host is not None:
                helo = self._name(session.helo)
                self._host_name(host, host.helos, helo, self.limits.max_helos)
        elif verb == "MAIL":
            sender = mailbox(wire_text(event.arg))
            self._address(session, session.mail_from, sender)
            host = self.hosts.get(session.client_ip)
            domain = sender.rpartition("@")[2].lower()
            if host is not None and domain:
                limit = self.limits.max_sender_domains
                self._host_name(host, host.sender_domains, self._name(domain), limit)
        elif verb == "RCPT":
            session.recipients += 1
            self._address(session, session.rcpt_to, mailbox(wire_text(event.arg)))
            host = self.hosts.get(session.client_ip)
            if host is not None:
                host.recipients += 1
        elif verb == "QUIT":
            session.quit_sent = True

    def _auth_command(self, session: Session, event: Command, text: str) -> str:
        """Start an AUTH exchange: whatever came before (a refused mechanism, a cancelled
        one) is forgotten, so the user is read from this exchange's first message only."""
        parts = event.arg.split()
        mechanism = parts[0].decode("ascii", "replace").upper() if parts else ""
        session.auth_mechanism = self._name(wire_text(mechanism.encode()))
        initial = len(parts) > 1
        session.auth_user = self._name(_auth_user(mechanism, parts[1])) if initial else ""
        self._login_step[session.id] = int(initial)
        if self.show_credentials or not initial:
            return text
        return f"AUTH {session.auth_mechanism} {MASK}"

    def _auth_response(self, session: Session, event: AuthResponse) -> None:
        """A client line of an AUTH exchange: always masked; the first one names the user when
        the AUTH command had no initial response."""
        session.outstanding += 1
        self._step(session, ClientStep("", ""))
        step = self._login_step.get(session.id)
        if step is not None:
            if step == 0:
                user = _auth_user(session.auth_mechanism, event.line)
                session.auth_user = self._name(user)
            self._login_step[session.id] = step + 1
        shown = wire_text(event.line) if self.show_credentials or event.line == b"*" else MASK
        self._line(session, event.ts, "C", shown)

    def _reply(self, session: Session, event: Reply) -> None:
        code = event.code
        lines = [wire_text(line) for line in event.lines]
        last = len(lines) - 1
        shown = [
            f"{code}{'-' if i < last else ' '}{line}" if line else str(code)
            for i, line in enumerate(lines)
        ]
        self._lines(session, event.ts, "S", shown)
        stage = _stage(event)
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
        reply, kept = self._keep_reply(session, code, text, stage, decides, event.cut)
        host = self.hosts.get(session.client_ip)
        stats = session.server_stats
        if event.greeting:
            session.greeting_seen = True
            session.pregreet = session.outstanding > 0  # the client spoke first
        elif event.request is not None and session.outstanding > 0:
            session.outstanding -= 1
        if stage == "EHLO" and code == 250:
            session.pipelining_offered = "PIPELINING" in map(str.upper, lines)
        if code >= 400 and host is not None:
            self._refusal(host, code, text)
        if event.greeting and lines:
            session.banner = self._name(_banner_name(lines[0]))
            server = self.servers.get(session.server_ip)
            if server is not None and not server.name:
                server.name = session.banner
            if stats is not None and not stats.name:
                stats.name = server.name if server is not None else session.banner
        if 200 <= code < 300 and self._ends_message(event):
            session.accepted_messages += 1
            if host is not None:
                host.accepted_messages += 1
            if stats is not None:
                stats.accepted_messages += 1
        if decides:
            self._judge(session, host, stats, reply)
            if not kept:  # past the replies kept, yet shown as the outcome: held all the same
                cost = LINE_BYTES + text_cost(reply.text)
                session.held += cost
                self.open_bytes += cost

    @staticmethod
    def _ends_message(event: Reply) -> bool:
        request = event.request
        if isinstance(request, MessageEnd):
            return True
        return (
            isinstance(request, Command)
            and request.verb == "BDAT"
            and request.arg.upper().rstrip().endswith(b"LAST")
        )

    def _keep_reply(
        self, session: Session, code: int, text: str, stage: str, decides: bool, gone: int
    ) -> tuple[SmtpReply, bool]:
        """The reply as kept, its text cut to its bounds (a reply that decides the outcome
        always gets ``max_reply_text``, whatever its session's replies took), and whether
        it went into ``replies``."""
        limits = self.limits
        room = limits.max_reply_text
        if not decides:
            room = min(room, max(0, limits.max_reply_bytes - session.reply_bytes))
        reply = SmtpReply(code, cut(text, room, gone), stage)
        if len(session.replies) < limits.max_replies and self._hold(
            session, LINE_BYTES + text_cost(reply.text)
        ):
            session.replies.append(reply)
            session.reply_bytes += len(reply.text)
            session.reply_text_dropped += max(0, len(text) - room) + gone
            return reply, True
        session.replies_dropped += 1
        return reply, False

    def _judge(
        self, session: Session, host: Host | None, stats: ServerStats | None, reply: SmtpReply
    ) -> None:
        """Move the session to rejected or tempfailed (the reply decides: see ``_reply``),
        keeping host and server counts right."""
        if reply.code >= 500:
            was_tempfailed = session.tempfailed
            session.rejected = True
            session.tempfailed = False
            session.decisive = reply
            for counter in (host, stats):
                if counter is not None:
                    counter.rejected_sessions += 1
                    counter.tempfailed_sessions -= was_tempfailed
        else:
            session.tempfailed = True
            session.decisive = reply
            for counter in (host, stats):
                if counter is not None:
                    counter.tempfailed_sessions += 1

    # -- identity ------------------------------------------------------------------------

    def sighting(self, ip: str | None, mac: str | None, name: str | None, source: str) -> None:
        """Evidence that an address has a name or a MAC (a DHCP request, an ARP reply...)."""
        if ip is None:
            if (
                mac
                and name
                and (
                    mac in self.names_by_mac or len(self.names_by_mac) < self.limits.max_identities
                )
            ):
                self.names_by_mac[mac] = name
            return
        identity = self._identity(ip)
        if identity is None:
            return
        if mac:
            identity.mac = mac
            early = self.names_by_mac.get(mac)
            if early and "dhcp" not in identity.names:
                identity.names["dhcp"] = early
        if name:
            identity.names[source] = name

    def dns_lookup(self, ts: float, client: str, qtype: int, rcode: int | None) -> None:
        identity = self._identity(client)
        if identity is None:
            return
        if rcode is None:
            identity.lookups += 1
            if qtype == 15:
                identity.mx_times.append(ts)
        elif rcode == 3:
            identity.nxdomain += 1

    def _identity(self, ip: str) -> Identity | None:
        identity = self.identities.get(ip)
        if identity is None:
            if len(self.identities) >= self.limits.max_identities:
                self.identities_dropped += 1
                return None
            identity = self.identities[ip] = Identity(ip)
        return identity

    # -- bounded storage -----------------------------------------------------------------

    def _lines(self, session: Session, ts: float, kind: str, texts: list[str]) -> None:
        """Several lines at once (a multi-line reply): one bounds check when they fit."""
        size = sum(map(len, texts))
        limits = self.limits
        if (
            len(session.transcript) + len(texts) <= limits.max_transcript_lines
            and session.transcript_bytes + size <= limits.max_transcript_bytes
            and self._hold(session, LINE_BYTES * len(texts) + sum(map(text_cost, texts)))
        ):
            session.transcript.extend([TranscriptLine(ts, kind, text) for text in texts])
            session.transcript_bytes += size
        else:
            for text in texts:
                self._line(session, ts, kind, text)

    def _line(self, session: Session, ts: float, kind: str, text: str) -> None:
        limits = self.limits
        if (
            len(session.transcript) >= limits.max_transcript_lines
            or session.transcript_bytes + len(text) > limits.max_transcript_bytes
            or not self._hold(session, LINE_BYTES + text_cost(text))
        ):
            session.transcript_dropped += 1
            return
        session.transcript.append(TranscriptLine(ts, kind, text))
        session.transcript_bytes += len(text)

    def _hold(self, session: Session, cost: int) -> bool:
        """Count strings an open session keeps into its ``held`` and the open sessions'
        budget; False, counting nothing, when that budget is full."""
        if self.open_bytes + cost > self.limits.max_open_bytes:
            return False
        self.open_bytes += cost
        session.held += cost
        return True

    def _step(self, session: Session, step: ClientStep) -> None:
        """Keep a client line's facts for the session's dialect, the first MAX_STEPS."""
        if len(session.steps) < MAX_STEPS and self._hold(session, _step_cost(step)):
            session.steps.append(step)

    def _address(self, session: Session, kept: list[str], address: str) -> None:
        limits = self.limits
        if (
            len(kept) < limits.max_addresses
            and session.address_bytes + len(address) <= limits.max_address_bytes
            and self._hold(session, LINE_BYTES + text_cost(address))
        ):
            kept.append(address)
            session.address_bytes += len(address)
        else:
            session.addresses_dropped += 1

    def _name(self, text: str) -> str:
        return cut(text, self.limits.max_name)

    def _host_text(self, text: str) -> bool:
        """Count a string a host keeps into the budget of all hosts; False when it is full."""
        cost = LINE_BYTES + text_cost(text)
        if self.host_text_bytes + cost > self.limits.max_host_text_bytes:
            return False
        self.host_text_bytes += cost
        return True

    def _host_name(self, host: Host, table: dict[str, int], name: str, bound: int) -> None:
        """Count a HELO name or sender domain of a host; a new one is kept while its table
        and the hosts' text budget have room, else counted in ``names_dropped``."""
        if name in table:
            table[name] += 1
        elif len(table) < bound and self._host_text(name):
            table[name] = 1
        else:
            host.names_dropped += 1

    def _refusal(self, host: Host, code: int, text: str) -> None:
        """Keep each distinct refusal text once (cut to ``max_refusal_text``), with a count:
        detection names blocklists from them even after the sessions themselves are no
        longer kept."""
        limits = self.limits
        text = cut(text, limits.max_refusal_text)
        key = (code, text)
        if key in host.refusals:
            host.refusals[key] += 1
        elif (
            len(host.refusals) < limits.max_refusals
            and host.refusal_bytes + len(text) <= limits.max_refusal_bytes
            and self._host_text(text)
        ):
            host.refusals[key] = 1
            host.refusal_bytes += len(text)
        else:
            host.refusals_dropped += 1

    def _host(self, ip: str, ts: float) -> Host | None:
        host = self.hosts.get(ip)
        if host is None:
            if len(self.hosts) >= self.limits.max_hosts:
                self.hosts_dropped += 1
                return None
            host = self.hosts[ip] = Host(ip, is_lan(ip, self.lan_networks), ts, ts)
        host.last_seen = max(host.last_seen, ts)
        return host

    def _server(self, ip: str) -> Server | None:
        server = self.servers.get(ip)
        if server is None:
            if len(self.servers) >= self.limits.max_servers:
                self.servers_dropped += 1
                return None
            server = self.servers[ip] = Server(ip)
        server.sessions += 1
        return server

    def _destination(self, host: Host, server: Server | None, ip: str) -> None:
        """Count a distinct destination of a host, exactly while the byte budget lasts."""
        if ip in host.destination_set:
            return
        cost = AddressSet.cost(ip)
        if self.destination_bytes + cost > self.limits.max_destination_bytes:
            host.destinations_uncounted += 1
            return
        self.destination_bytes += cost
        host.destination_set.add(ip)
        if server is not None and host.lan:
            server.lan_clients += 1

    def _server_row(self, host: Host, ip: str, server: Server | None) -> ServerStats:
        """The host's row for a server, most recently used last; the least recently used row
        goes beyond the bound, its sessions counted in ``servers_dropped``."""
        rows = host.servers
        stats = rows.pop(ip, None)  # and in again: a plain dict as a compact LRU
        if stats is not None:
            rows[ip] = stats
            return stats
        stats = rows[ip] = ServerStats(ip, server.name if server is not None else "")
        if len(rows) > self.limits.max_servers_per_host:
            old = rows.pop(next(iter(rows)))
            host.servers_dropped += old.sessions
            host.servers_evicted_seen = max(host.servers_evicted_seen, old.last_seen)
        return stats


def _step_cost(step: ClientStep) -> int:
    return LINE_BYTES + text_cost(step.verb) + text_cost(step.arg)


def _victim(others: int, rejected: int) -> int:
    """The class whose oldest session goes (0: not rejected, 1: rejected): those not rejected
    while they are more than a quarter of what is kept, so rejected sessions stay longest."""
    return 0 if others and (not rejected or others * 4 > others + rejected) else 1


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
