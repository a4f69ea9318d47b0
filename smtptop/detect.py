"""Which LAN host is the spambot, and why: policy over the model, apart from parsing.

Zeek's split: the parser and the model say what happened; this module judges it.  It never
touches bytes.  It keeps a little evidence per host as sessions end (so that the verdict
survives the model forgetting old sessions) and scores each LAN host from documented
signals.  Every point comes with a reason that says what was seen.

Signals and points (the README's table is this one):

============================  ======  ======================================================
signal                        points  when
============================  ======  ======================================================
direct-to-mx                      30  port-25 sessions to servers other than the smarthost
many-destinations             20/35  more than 5 / 20 distinct servers in the last 10 minutes
blocklist                         40  a refusal names a blocklist or a reputation block
rejections                        15  3 or more rejected sessions, 30 % of all or more
helo                              15  HELO/EHLO names of a kind spambots use
helo-changes                      10  more than 3 different HELO/EHLO names
sender-domains                 10/20  3 / 10 or more distinct MAIL FROM domains
rate                              10  10 or more sessions in a minute, or 10 in parallel
pregreet                          20  talking before the server's greeting
no-quit                            5  most sessions (3 or more) end without QUIT
dns-mx                            10  10 or more MX lookups in 10 minutes
dialect                           10  direct to MX with no known mail client's dialect
============================  ======  ======================================================

A host is a **spambot** from 60 points on, if at least one of the signals of misbehaviour
(blocklist, rejections, helo, pregreet, sender-domains) is among its reasons and it has had
3 sessions or a blocklist refusal; else **suspicious** from 25 points; else **normal**.
Hosts that are mail servers themselves (named with ``--mail-server``, or seen receiving SMTP
from outside) are not scored on volume.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from smtptop import blocklists, dialect
from smtptop.model import AddressSet, Host, Model, Session, is_lan
from smtptop.text import plural

WINDOW = 600.0
MIN_SESSIONS = 3  # one session is thin evidence, unless a blocklist already named the host
MISBEHAVIOUR = frozenset({"blocklist", "rejections", "helo", "pregreet", "sender-domains"})
MAIL_CLIENTS = frozenset({"Outlook", "Thunderbird", "Apple Mail"})
BIG_COMPANIES = (
    "gmail.com", "google.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
    "microsoft.com", "apple.com", "icloud.com", "amazon.com", "paypal.com", "dhl.com",
    "fedex.com", "ups.com", "ebay.com", "facebook.com", "aol.com", "yandex.ru", "mail.ru",
    "docusign.net", "wetransfer.com", "aexp.com", "chase.com", "wellsfargo.com",
)  # fmt: skip
MAX_CACHED = 4096
MAX_HELOS_CACHED = 65536  # (HELO, host) pairs judged: 10,000 hosts with a few names each
MAX_MX_COUNTED = 64  # port-25 servers per host whose sessions are counted one by one
# Client software is guessed from each of a host's first sessions, then from one in
# DIALECT_SAMPLE: a spambot opens thousands of sessions an hour, all in one dialect.
DIALECT_EVERY_SESSION = 64
DIALECT_SAMPLE = 16
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_EMBEDDED_IP = re.compile(r"\d{1,3}[-.]\d{1,3}[-.]\d{1,3}[-.]\d{1,3}")
_LETTERS = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class DetectConfig:
    smarthosts: tuple[str, ...] = ()  # addresses or greeting names of the office's relay
    mail_servers: tuple[str, ...] = ()  # LAN hosts that are mail servers themselves
    suspicious: int = 25
    spambot: int = 60


@dataclass(frozen=True, slots=True)
class Reason:
    signal: str
    evidence: str
    points: int


@dataclass(frozen=True, slots=True)
class Verdict:
    ip: str
    verdict: str  # "spambot", "suspicious", "normal", or "" for hosts outside the LAN
    score: int
    reasons: tuple[Reason, ...]
    dialect: str


VERDICT_ORDER = {"spambot": 0, "suspicious": 1, "normal": 2, "": 3}


@dataclass(slots=True)
class _Evidence:
    """What the detector keeps per host from sessions that ended: counts, and the distinct
    port-25 servers packed (a spambot's are thousands); sessions per server only for the
    first MAX_MX_COUNTED of them, where the smarthost is (it is what a PC used first)."""

    sessions: int = 0  # where a QUIT could have been seen
    without_quit: int = 0
    pregreet: int = 0
    mx_sessions: int = 0
    mx_servers: AddressSet = field(default_factory=AddressSet)
    mx_counts: dict[str, int] = field(default_factory=dict)
    closed: int = 0  # sessions seen closing
    dialects: Counter[str] = field(default_factory=Counter)
    dialect_features: tuple[str, ...] = ()


def helo_anomalies(helo: str, client_ip: str) -> list[str]:
    """The kinds of bad HELO/EHLO name this is (RFC 5321 wants an FQDN or an address
    literal; CBL and Haraka's helo.checks list what spambots send instead)."""
    name = helo.strip().lower()
    if not name:
        return []
    found = []
    if name in ("localhost", "localhost.localdomain") or name.startswith("localhost."):
        found.append("localhost")
    if _DOTTED_QUAD.fullmatch(name):
        found.append("bare IP address")
    elif name.startswith("[") and name.endswith("]"):
        literal = name[1:-1].removeprefix("ipv6:")
        if literal != client_ip.lower():
            found.append("address literal that is not the host's")
    elif "." not in name:
        found.append("no dot")
    if any(name == d or name.endswith("." + d) for d in BIG_COMPANIES):
        found.append("a big company's domain")
    if _EMBEDDED_IP.search(name) and not _DOTTED_QUAD.fullmatch(name.strip("[]")):
        found.append("an ISP's dynamic-address name")
    first = name.strip("[]").split(".", 1)[0]
    if _random_looking(first):
        found.append("random-looking")
    return found


def _random_looking(label: str) -> bool:
    letters = "".join(_LETTERS.findall(label))
    if len(letters) < 6 or len(letters) < len(label) - 2:
        return False
    vowels = sum(letters.count(v) for v in "aeiouy")
    return vowels / len(letters) < 0.25


class Detector:
    """Scores LAN hosts; subscribe it to a model, then call :meth:`evaluate`."""

    def __init__(self, model: Model, config: DetectConfig | None = None) -> None:
        self.model = model
        self.config = config or DetectConfig()
        self.evidence: dict[str, _Evidence] = {}
        self.inbound_servers: set[str] = set()
        self.destination_bytes = 0  # the mx_servers of all hosts, within the model's budget
        self.destinations_dropped = 0
        self._refusal_hits: dict[tuple[int, str], list[blocklists.BlocklistHit]] = {}
        self._helo_kinds: dict[tuple[str, str], list[str]] = {}
        model.on_session_closed.append(self.session_closed)

    # -- evidence ------------------------------------------------------------------------

    def session_closed(self, session: Session) -> None:
        lan = self.model.lan_networks
        if not is_lan(session.client_ip, lan):
            inbound = is_lan(session.server_ip, lan)
            if inbound and len(self.inbound_servers) < MAX_CACHED:
                self.inbound_servers.add(session.server_ip)  # a mail server on the LAN
            return
        evidence = self.evidence.get(session.client_ip)
        if evidence is None:
            if len(self.evidence) >= self.model.limits.max_hosts:
                return
            evidence = self.evidence[session.client_ip] = _Evidence()
        if session.replies and not session.tls:  # QUIT cannot be seen inside TLS
            evidence.sessions += 1
            evidence.without_quit += not session.quit_sent
        evidence.pregreet += session.pregreet
        if session.server_port == 25:
            self._mx_session(evidence, session.server_ip)
        evidence.closed += 1
        if evidence.closed > DIALECT_EVERY_SESSION and evidence.closed % DIALECT_SAMPLE:
            return  # a host's dialect is known by now: fingerprint a sample from here on
        commands = [t.text for t in session.transcript if t.kind == "C"]
        if commands and not session.tls:
            found = dialect.fingerprint(
                commands,
                pipelined=session.pipelined,
                quit_sent=session.quit_sent,
                greeting_seen=not session.pregreet,
                pipelining_offered=session.pipelining_offered if session.greeting_seen else None,
            )
            if found.family in evidence.dialects or len(evidence.dialects) < 16:
                evidence.dialects[found.family] += 1
            evidence.dialect_features = found.features

    def _mx_session(self, evidence: _Evidence, ip: str) -> None:
        evidence.mx_sessions += 1
        if ip in evidence.mx_counts or len(evidence.mx_counts) < MAX_MX_COUNTED:
            evidence.mx_counts[ip] = evidence.mx_counts.get(ip, 0) + 1
        if ip in evidence.mx_servers:
            return
        cost = AddressSet.cost(ip)
        if self.destination_bytes + cost > self.model.limits.max_destination_bytes:
            self.destinations_dropped += 1
            return
        self.destination_bytes += cost
        evidence.mx_servers.add(ip)

    # -- the smarthost -------------------------------------------------------------------

    def proposed_smarthost(self) -> str | None:
        """The server most LAN hosts use (two at least): probably the office's relay."""
        best = max(self.model.servers.values(), key=lambda s: s.lan_clients, default=None)
        return best.ip if best is not None and best.lan_clients >= 2 else None

    def smarthosts(self) -> set[str]:
        """Server addresses that count as the office's relay."""
        named = set(self.config.smarthosts)
        if not named:
            proposed = self.proposed_smarthost()
            return {proposed} if proposed else set()
        found = {
            server.ip
            for server in self.model.servers.values()
            if server.ip in named or (server.name and server.name.lower() in named)
        }
        return found | {n for n in named if _is_address(n)}

    # -- verdicts ------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> dict[str, Verdict]:
        """A verdict for every client host (LAN hosts scored, others left blank)."""
        at = self.model.last_ts if now is None else now
        relays = self.smarthosts()
        verdicts = {}
        for ip, host in self.model.hosts.items():
            if not host.lan:
                verdicts[ip] = Verdict(ip, "", 0, (), "")
                continue
            verdicts[ip] = self._judge(host, at, relays)
        return verdicts

    def _judge(self, host: Host, now: float, relays: set[str]) -> Verdict:
        evidence = self.evidence.get(host.ip) or _Evidence()
        mail_server = host.ip in self.config.mail_servers or host.ip in self.inbound_servers
        reasons: list[Reason] = []
        if not mail_server:
            reasons += self._volume(host, evidence, now, relays)
        reasons += self._misbehaviour(host, evidence)
        if not mail_server:
            reasons += self._habits(host, evidence, now, relays)
        score = sum(r.points for r in reasons)
        signals = {r.signal for r in reasons}
        repeated = host.sessions >= MIN_SESSIONS or "blocklist" in signals
        if score >= self.config.spambot and signals & MISBEHAVIOUR and repeated:
            verdict = "spambot"
        elif score >= self.config.suspicious:
            verdict = "suspicious"
        else:
            verdict = "normal"
        family = evidence.dialects.most_common(1)[0][0] if evidence.dialects else ""
        return Verdict(host.ip, verdict, score, tuple(reasons), family)

    def _volume(self, host: Host, evidence: _Evidence, now: float, relays: set[str]):
        reasons = []
        servers, sessions = _direct(evidence, relays)
        if servers:
            direct = f"{plural(sessions, 'session')} on port 25 to {plural(servers, 'server')}"
            if relays:
                smarthost = "smarthost" if len(relays) == 1 else "smarthosts"
                direct += f" other than the {smarthost} ({', '.join(sorted(relays))})"
            else:
                direct += " (no smarthost known)"
            reasons.append(Reason("direct-to-mx", direct, 30))
        recent = sum(1 for s in host.servers.values() if now - s.last_seen <= WINDOW)
        if recent > 5:
            points = 35 if recent > 20 else 20
            # rows are kept for the most recent servers only: past them, a lower bound
            more = "at least " if now - host.servers_evicted_seen <= WINDOW else ""
            reasons.append(
                Reason(
                    "many-destinations",
                    f"{more}{plural(recent, 'distinct server')} in the last 10 minutes "
                    "(more than 5)",
                    points,
                )
            )
        per_minute = host.sessions_per_minute(now)
        if per_minute >= 10 or host.max_parallel >= 10:
            reasons.append(
                Reason(
                    "rate",
                    f"{plural(int(per_minute), 'session')} in the last minute, "
                    f"up to {host.max_parallel:,} at once",
                    10,
                )
            )
        return reasons

    def _misbehaviour(self, host: Host, evidence: _Evidence) -> list[Reason]:
        reasons = []
        lists: dict[str, tuple[blocklists.BlocklistHit, int]] = {}
        for (code, text), count in host.refusals.items():
            for hit in self._classify(code, text):
                seen = lists.get(hit.name)
                lists[hit.name] = (hit, count + (seen[1] if seen else 0))
        ordered = sorted(lists.items(), key=lambda item: (-item[1][1], item[0]))
        for index, (name, (hit, count)) in enumerate(ordered):
            kind = "refused" if hit.permanent else "deferred"
            reasons.append(
                Reason(
                    "blocklist",
                    f"{name}: {kind} {plural(count, 'time')} ({hit.evidence!r})",
                    40 if index == 0 else 0,
                )
            )
        rejected, sessions = host.rejected_sessions, host.sessions
        if rejected >= 3 and rejected >= 0.3 * sessions:
            shown = f"{rejected:,} of {plural(sessions, 'session')} rejected"
            reasons.append(Reason("rejections", shown, 15))
        kinds: dict[str, str] = {}
        for name in host.helos:
            for kind in self._helo(name, host.ip):
                kinds.setdefault(kind, name)
        if kinds:
            shown = "; ".join(f"{kind} ({name!r})" for kind, name in kinds.items())
            reasons.append(Reason("helo", shown, 15))
        if len(host.helos) > 3:
            reasons.append(
                Reason("helo-changes", plural(len(host.helos), "different HELO/EHLO name"), 10)
            )
        if evidence.pregreet:
            reasons.append(
                Reason(
                    "pregreet",
                    f"spoke before the greeting in {plural(evidence.pregreet, 'session')}",
                    20,
                )
            )
        domains = len(host.sender_domains)
        if domains >= 3:
            sample = ", ".join(list(host.sender_domains)[:4])
            reasons.append(
                Reason(
                    "sender-domains",
                    f"{plural(domains, 'different MAIL FROM domain')} ({sample}, ...)",
                    20 if domains >= 10 else 10,
                )
            )
        return reasons

    def _habits(self, host: Host, evidence: _Evidence, now: float, relays: set[str]):
        reasons = []
        if evidence.sessions >= 3 and evidence.without_quit * 2 > evidence.sessions:
            reasons.append(
                Reason(
                    "no-quit",
                    f"{evidence.without_quit:,} of {plural(evidence.sessions, 'session')} "
                    "ended without QUIT",
                    5,
                )
            )
        identity = self.model.identities.get(host.ip)
        if identity is not None:
            mx = identity.mx_lookups(now, WINDOW)
            if mx >= 10:
                shown = f"{plural(mx, 'MX lookup')} in the last 10 minutes"
                reasons.append(Reason("dns-mx", shown, 10))
        direct = _direct(evidence, relays)[0] > 0
        families = set(evidence.dialects)
        if direct and families and not families & MAIL_CLIENTS:
            traits = ", ".join(evidence.dialect_features[:4])
            reasons.append(
                Reason(
                    "dialect",
                    f"speaks like {', '.join(sorted(families))}, not a mail client ({traits})",
                    10,
                )
            )
        return reasons

    def _classify(self, code: int, text: str) -> list[blocklists.BlocklistHit]:
        key = (code, text)
        hits = self._refusal_hits.get(key)
        if hits is None:
            hits = blocklists.classify(code, text)
            if len(self._refusal_hits) < MAX_CACHED:
                self._refusal_hits[key] = hits
        return hits

    def _helo(self, name: str, ip: str) -> list[str]:
        key = (name, ip)
        kinds = self._helo_kinds.get(key)
        if kinds is None:
            kinds = helo_anomalies(name, ip)
            if len(self._helo_kinds) < MAX_HELOS_CACHED:
                self._helo_kinds[key] = kinds
        return kinds


def _direct(evidence: _Evidence, relays: set[str]) -> tuple[int, int]:
    """Distinct port-25 servers other than the relays (exact) and the sessions to them
    (exact while the relays are among the servers counted one by one)."""
    relayed = [ip for ip in relays if ip in evidence.mx_servers]
    servers = evidence.mx_servers.size - len(relayed)
    return servers, evidence.mx_sessions - sum(evidence.mx_counts.get(ip, 0) for ip in relayed)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
