"""The store: hosts, sessions, servers and identities, within fixed budgets.

Memory is bounded by :class:`ModelLimits`.  The store keeps what the fold
(:mod:`smtptop.model.fold`) hands it and says no when a budget is full; the fold counts
either way, so counts never depend on what is kept.  The store knows nothing of events:
the fold calls it, never the other way round.

Finished sessions are kept in full under one global budget, ``max_sessions`` sessions and
``max_kept_bytes`` bytes, and evicted by this policy (:meth:`Store.finish`):

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
* ``sessions_not_kept`` (per host and in total) counts what went, so that kept + not kept +
  open == sessions seen.

Eviction is O(1) per session: hosts sit in buckets by how many sessions they keep, a count
changes by one at a time, so the fullest bucket is found from the previous one.

Text is budgeted wherever it is kept, in characters after escaping (a control byte shown as
``\\x01`` costs four; text that is not ASCII is counted at four bytes a character:
:func:`~smtptop.model.compact.text_cost`): each reply and the replies of a session, the
transcript, the addresses, a host's refusal texts and names, and all hosts' names and
refusals together; open sessions share a budget of their own.  A cut text ends in a marker
saying how much went (:func:`~smtptop.model.compact.cut`), and what a budget refused is
counted.  :meth:`Session.footprint` counts every string kept, as it is kept.

Distinct destinations per host are exact, in packed addresses
(:class:`~smtptop.model.compact.AddressSet`), up to a byte budget for all hosts together;
per-server rows of a host are its most recently used ``max_servers_per_host`` servers, and
the sessions of the rows that went are counted.  Each host's sessions per minute
(:class:`~smtptop.model.compact.Timeline`) take at most ``TIMELINE_BINS`` bins, all hosts
together ``max_timeline_bins``; past either, bins widen.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from smtptop.model.compact import TIMELINE_BINS, AddressSet, cut, text_cost
from smtptop.model.records import (
    LINE_BYTES,
    ClientStep,
    Host,
    Identity,
    Server,
    ServerStats,
    Session,
    SmtpReply,
    TranscriptLine,
    is_lan,
)

MAX_STEPS = 64  # client lines kept per open session for its dialect (a few say it)


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """How much the model keeps; everything beyond is counted, not stored."""

    max_sessions: int = 20000  # finished sessions kept in full, all hosts together
    max_kept_bytes: int = 64 << 20  # Session.footprint() of the kept sessions together
    max_hosts: int = 100000
    max_servers: int = 200000  # the server table (Store.servers)
    max_servers_per_host: int = 64  # per-server rows of a host: its most recently used
    max_destination_bytes: int = 32 << 20  # AddressSet.cost() of all hosts together
    max_timeline_bins: int = 1 << 20  # Timeline bins of all hosts, 16 bytes each
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


class Store:
    """The hosts, sessions, servers and identities of one capture or one live run, each
    table and text within :class:`ModelLimits`.  Its methods keep what fits and count what
    does not; the fold decides what happened."""

    def __init__(self, *, lan: Iterable[str] = (), limits: ModelLimits | None = None) -> None:
        self.limits = limits or ModelLimits()
        self.lan_networks = tuple(ipaddress.ip_network(n, strict=False) for n in lan)
        self.hosts: dict[str, Host] = {}
        self.open: dict[int, Session] = {}
        self.finished: dict[int, Session] = {}  # kept in full, in the order they ended
        # hosts by the sessions they keep, each bucket in the order its hosts entered it
        self._by_kept: dict[int, OrderedDict[str, Host]] = {}
        self._most_kept = 0  # the fullest bucket
        self._unhosted = Host("", False, 0.0, 0.0)  # keeps the sessions of hosts not kept
        self.kept_bytes = 0
        self.sessions_not_kept = 0
        self.hosts_not_kept = 0
        self.servers: dict[str, Server] = {}
        self.servers_dropped = 0  # sessions to servers the full table could not hold
        self.destination_bytes = 0
        self.timeline_bins = 0
        self.on_session_closed: list[Callable[[Session], None]] = []
        self.identities: dict[str, Identity] = {}
        self.names_by_mac: dict[str, str] = {}
        self.identities_dropped = 0
        self.open_bytes = 0  # Session.held of the open sessions together
        self.host_text_bytes = 0  # HELO names, sender domains and refusal texts of all hosts

    # -- sessions ------------------------------------------------------------------------

    def add_open(self, session: Session) -> None:
        self.open[session.id] = session

    def finish(self, session: Session) -> None:
        """An open session has closed: let it go from the open ones, tell the hooks, drop
        its client lines (the hooks read them), and keep it in full, evicting by the policy
        in the module's docstring until the global budgets hold."""
        del self.open[session.id]
        self.open_bytes -= session.held
        for hook in self.on_session_closed:
            hook(session)
        session.held -= sum(map(_step_cost, session.steps))
        session.steps = []
        self._keep(session, self.hosts.get(session.client_ip))

    def _keep(self, session: Session, host: Host | None) -> None:
        """O(1) amortised: each session is kept once and evicted at most once, and each
        moves its host by one bucket."""
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
        self.sessions_not_kept += 1
        host.sessions_not_kept += 1
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
            entered = buckets.get(count)
            if entered is None:
                entered = buckets[count] = OrderedDict()
            entered[host.ip] = host
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

    # -- what an open session keeps --------------------------------------------------------

    def hold(self, session: Session, cost: int) -> bool:
        """Count strings an open session keeps into its ``held`` and the open sessions'
        budget; False, counting nothing, when that budget is full."""
        if self.open_bytes + cost > self.limits.max_open_bytes:
            return False
        self.open_bytes += cost
        session.held += cost
        return True

    def keep_lines(self, session: Session, ts: float, kind: str, texts: list[str]) -> None:
        """Several lines at once (a multi-line reply): one bounds check when they fit."""
        size = sum(map(len, texts))
        limits = self.limits
        if (
            len(session.transcript) + len(texts) <= limits.max_transcript_lines
            and session.transcript_bytes + size <= limits.max_transcript_bytes
            and self.hold(session, LINE_BYTES * len(texts) + sum(map(text_cost, texts)))
        ):
            session.transcript.extend([TranscriptLine(ts, kind, text) for text in texts])
            session.transcript_bytes += size
        else:
            for text in texts:
                self.keep_line(session, ts, kind, text)

    def keep_line(self, session: Session, ts: float, kind: str, text: str) -> None:
        limits = self.limits
        if (
            len(session.transcript) >= limits.max_transcript_lines
            or session.transcript_bytes + len(text) > limits.max_transcript_bytes
            or not self.hold(session, LINE_BYTES + text_cost(text))
        ):
            session.transcript_lines_not_kept += 1
            return
        session.transcript.append(TranscriptLine(ts, kind, text))
        session.transcript_bytes += len(text)

    def keep_step(self, session: Session, step: ClientStep) -> None:
        """Keep a client line's facts for the session's dialect, the first MAX_STEPS."""
        if len(session.steps) < MAX_STEPS and self.hold(session, _step_cost(step)):
            session.steps.append(step)

    def keep_address(self, session: Session, kept: list[str], address: str) -> None:
        limits = self.limits
        if (
            len(kept) < limits.max_addresses
            and session.address_bytes + len(address) <= limits.max_address_bytes
            and self.hold(session, LINE_BYTES + text_cost(address))
        ):
            kept.append(address)
            session.address_bytes += len(address)
        else:
            session.addresses_not_kept += 1

    def keep_reply(
        self, session: Session, code: int, text: str, stage: str, decides: bool, gone: int
    ) -> SmtpReply:
        """The reply as kept, its text cut to its bounds, into ``replies`` while they have
        room.  A reply that decides the outcome always gets ``max_reply_text``, whatever its
        session's replies took, and is held past their bounds: it is shown as the outcome."""
        limits = self.limits
        room = limits.max_reply_text
        if not decides:
            room = min(room, max(0, limits.max_reply_bytes - session.reply_bytes))
        reply = SmtpReply(code, cut(text, room, gone), stage)
        if len(session.replies) < limits.max_replies and self.hold(
            session, LINE_BYTES + text_cost(reply.text)
        ):
            session.replies.append(reply)
            session.reply_bytes += len(reply.text)
            session.reply_characters_not_kept += max(0, len(text) - room) + gone
            return reply
        session.replies_not_kept += 1
        if decides:
            cost = LINE_BYTES + text_cost(reply.text)
            session.held += cost
            self.open_bytes += cost
        return reply

    def short_name(self, text: str) -> str:
        """A name as kept: a banner name, AUTH mechanism or user, a HELO name or domain."""
        return cut(text, self.limits.max_name)

    # -- what a host keeps ---------------------------------------------------------------

    def host_for(self, ip: str, ts: float) -> Host | None:
        """The host of a client address, made on its first session; None when the table is
        full (counted in ``hosts_not_kept``)."""
        host = self.hosts.get(ip)
        if host is None:
            if len(self.hosts) >= self.limits.max_hosts:
                self.hosts_not_kept += 1
                return None
            host = self.hosts[ip] = Host(ip, is_lan(ip, self.lan_networks), ts, ts)
        return host

    def server_for(self, ip: str) -> Server | None:
        """The server table's entry for an address; None when the table is full (counted in
        ``servers_dropped``)."""
        server = self.servers.get(ip)
        if server is None:
            if len(self.servers) >= self.limits.max_servers:
                self.servers_dropped += 1
                return None
            server = self.servers[ip] = Server(ip)
        return server

    def add_destination(self, host: Host, ip: str) -> bool:
        """Count a distinct destination of a host, exactly while the byte budget lasts;
        whether it is one the host had not used before."""
        if ip in host.destination_set:
            return False
        cost = AddressSet.cost(ip)
        if self.destination_bytes + cost > self.limits.max_destination_bytes:
            host.destinations_uncounted += 1
            return False
        self.destination_bytes += cost
        host.destination_set.add(ip)
        return True

    def mark(self, host: Host, ts: float, rejected: bool) -> None:
        """Count a session that started at ``ts`` (or its rejection) in the host's timeline;
        beyond the budget of all timelines its bins widen instead of growing."""
        timeline = host.timeline
        room = max(0, self.limits.max_timeline_bins - self.timeline_bins)
        self.timeline_bins += timeline.add(ts, rejected, min(TIMELINE_BINS, timeline.bins + room))

    def server_row(self, host: Host, ip: str, server: Server | None) -> ServerStats:
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

    def keep_host_name(self, host: Host, table: dict[str, int], name: str, bound: int) -> None:
        """Count a HELO name or sender domain of a host; a new one is kept while its table
        and the hosts' text budget have room, else counted in ``names_not_kept``."""
        if name in table:
            table[name] += 1
        elif len(table) < bound and self._host_text(name):
            table[name] = 1
        else:
            host.names_not_kept += 1

    def keep_refusal(self, host: Host, code: int, text: str) -> None:
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
            host.refusals_not_kept += 1

    def _host_text(self, text: str) -> bool:
        """Count a string a host keeps into the budget of all hosts; False when it is full."""
        cost = LINE_BYTES + text_cost(text)
        if self.host_text_bytes + cost > self.limits.max_host_text_bytes:
            return False
        self.host_text_bytes += cost
        return True

    # -- identities ----------------------------------------------------------------------

    def identity_for(self, ip: str) -> Identity | None:
        """Who an address is, made when first asked; None when the table is full."""
        identity = self.identities.get(ip)
        if identity is None:
            if len(self.identities) >= self.limits.max_identities:
                self.identities_dropped += 1
                return None
            identity = self.identities[ip] = Identity(ip)
        return identity

    def name_mac(self, mac: str, name: str) -> None:
        """A name given to a MAC before its address is known (a DHCP request), while the
        table has room or the MAC is already in it."""
        if mac in self.names_by_mac or len(self.names_by_mac) < self.limits.max_identities:
            self.names_by_mac[mac] = name


def _step_cost(step: ClientStep) -> int:
    return LINE_BYTES + text_cost(step.verb) + text_cost(step.arg)


def _victim(others: int, rejected: int) -> int:
    """The class whose oldest session goes (0: not rejected, 1: rejected): those not rejected
    while they are more than a quarter of what is kept, so rejected sessions stay longest."""
    return 0 if others and (not rejected or others * 4 > others + rejected) else 1
