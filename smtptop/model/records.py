"""What the model keeps: a record per session, per client host and per server, and who an
address is.

These are the facts an admin asks about: per session, who spoke to whom, what HELO and
envelope were used and what the server answered; per LAN host, how many sessions, distinct
servers, rejected and tempfailed sessions, accepted messages.  The fold
(:mod:`smtptop.model.fold`) fills them in; the store (:mod:`smtptop.model.store`) keeps them
within its budgets.  Where a fact is also in the JSON report, it has the JSON's name.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from smtptop.model.compact import AddressSet, Timeline, TimeRing, text_cost

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
OUTCOMES = ("rejected", "tempfailed", "accepted", "tls", "not-smtp", "no-mail")
NAME_SOURCES = ("dhcp-fqdn", "dhcp", "nbns", "dns-ptr", "mdns", "llmnr")
SESSION_BYTES = 1024  # a session without lines and names: the object and its lists
LINE_BYTES = 120  # a transcript line, reply or address: the object, its string, a list slot


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
    replies_not_kept: int = 0
    reply_bytes: int = 0  # characters of the replies' texts, against max_reply_bytes
    reply_characters_not_kept: int = 0  # characters cut from the replies' texts
    address_bytes: int = 0
    addresses_not_kept: int = 0
    recipients: int = 0
    accepted_messages: int = 0
    rejected: bool = False
    tempfailed: bool = False
    outcome_reply: SmtpReply | None = None  # the reply that made it rejected or tempfailed
    tls: bool = False
    gaps: int = 0
    conflicts: int = 0
    non_smtp: bool = False
    violations: int = 0
    auth: str = ""  # the mechanism of its latest AUTH command
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
    transcript_lines_not_kept: int = 0
    held: int = 0  # what its lines, replies and addresses cost, by text_cost()
    server_stats: ServerStats | None = None  # its host's row for its server, while open

    def footprint(self) -> int:
        """About the bytes a finished session holds: what ``max_kept_bytes`` budgets.  Every
        line, reply and address is counted as it is kept (``held``), so this is O(1)."""
        names = (self.helo, self.banner, self.auth, self.auth_user)
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
    refusals_not_kept: int = 0
    refusal_bytes: int = 0  # characters of the refusal texts kept
    names_not_kept: int = 0  # HELO names and sender domains not kept (over their bounds)
    servers: dict[str, ServerStats] = field(default_factory=dict)  # least recently used first
    servers_dropped: int = 0  # sessions counted in no row of ``servers``
    servers_evicted_seen: float = float("-inf")  # the latest last_seen of a row that went
    destination_set: AddressSet = field(default_factory=AddressSet)
    destinations_uncounted: int = 0  # sessions to servers the full budget could not record
    session_starts: TimeRing = field(default_factory=TimeRing)
    timeline: Timeline = field(default_factory=Timeline)  # sessions, rejected per minute
    sessions_not_kept: int = 0  # finished sessions the store let go (summarised)
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


def is_address(text: str) -> bool:
    """An IPv4 or IPv6 address (what may go into a firewall rule or be looked up as one)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
