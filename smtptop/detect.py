"""Which LAN host is the spambot, and why: policy over the model, apart from parsing.

Zeek's split: the parser and the model say what happened; this module judges it.  It never
touches bytes or rendered text: it reads the model's records and the client lines as parsed.
It keeps a little evidence per host as sessions end (so that the verdict survives the model
forgetting old sessions) and scores each LAN host from declared signals.  Every point comes
with a reason that says what was seen.

The policy is data: :data:`SIGNALS` declares each signal (its name, points, thresholds, the
facts it reads and the one function that judges them), and :class:`DetectConfig` holds the
table with the verdict thresholds, so that a setting can be changed from the command line or
a configuration file (``--detect NAME=VALUE``, ``--detect-config FILE``), as Zeek's
``option`` does.  The README's table and the help screen are written from it
(:func:`signal_table`, :func:`policy_text`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from smtptop import blocklists, dialect
from smtptop.helo import helo_anomalies
from smtptop.model import AddressSet, Host, Identity, Model, Session, is_address, is_lan
from smtptop.text import plural

MAIL_CLIENTS = frozenset({"Outlook", "Thunderbird", "Apple Mail"})
MAX_CACHED = 4096
MAX_HELOS_CACHED = 65536  # (HELO, host, direct) judged: 10,000 hosts with a few names each
MAX_MX_COUNTED = 64  # port-25 servers per host whose sessions are counted one by one
# Client software is guessed from each of a host's first sessions, then from one in
# DIALECT_SAMPLE: a spambot opens thousands of sessions an hour, all in one dialect.
DIALECT_EVERY_SESSION = 64
DIALECT_SAMPLE = 16


class Rating(StrEnum):
    """A host's verdict.  Hosts outside the LAN are not judged (``UNJUDGED``)."""

    SPAMBOT = "spambot"
    SUSPICIOUS = "suspicious"
    NORMAL = "normal"
    UNJUDGED = ""


VERDICT_ORDER = {Rating.SPAMBOT: 0, Rating.SUSPICIOUS: 1, Rating.NORMAL: 2, Rating.UNJUDGED: 3}


class Group(StrEnum):
    """What a signal says about a host.  Misbehaviour is what makes a spambot (a busy host
    is not one by volume alone); volume and habits are not held against mail servers."""

    VOLUME = "volume"
    MISBEHAVIOUR = "misbehaviour"
    HABIT = "habit"


@dataclass(frozen=True, slots=True)
class Reason:
    signal: str
    evidence: str
    points: int


@dataclass(frozen=True, slots=True)
class Verdict:
    ip: str
    verdict: Rating
    score: int
    reasons: tuple[Reason, ...]
    dialect: str
    last_direct_mx: float | None = None  # its latest port-25 session to a foreign server
    quiet_since: float | None = None  # flagged, and no such session for quiet_after: since

    def quiet_for(self, now: float) -> float | None:
        """Seconds the flagged host has been quiet at ``now`` (None: not quiet)."""
        return None if self.quiet_since is None else now - self.quiet_since


@dataclass(slots=True)
class Evidence:
    """What the detector keeps per host from sessions that ended: counts, and the distinct
    port-25 servers packed (a spambot's are thousands); sessions per server only for the
    first MAX_MX_COUNTED of them, where the smarthost is (it is what a PC used first)."""

    sessions: int = 0  # where a QUIT could have been seen
    without_quit: int = 0
    pregreet: int = 0
    mx_sessions: int = 0
    mx_servers: AddressSet = field(default_factory=AddressSet)
    mx_counts: dict[str, int] = field(default_factory=dict)
    mx_last: dict[str, float] = field(default_factory=dict)  # the servers of mx_counts
    mx_last_other: float = float("-inf")  # the latest to a server not in mx_counts
    closed: int = 0  # sessions seen closing
    dialects: Counter[str] = field(default_factory=Counter)
    dialect_features: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything a signal may read about one host at one moment."""

    host: Host
    evidence: Evidence
    identity: Identity | None
    now: float
    window: float  # seconds that "recent" means
    relays: frozenset[str]  # the smarthost(s)
    direct_servers: int  # distinct port-25 servers other than the relays
    direct_sessions: int
    helo_kinds: Callable[[str, str, bool], list[str]]
    refusal_hits: Callable[[int, str], list[blocklists.BlocklistHit]]


Judge = Callable[[Facts, "Signal"], list[Reason]]


@dataclass(frozen=True, slots=True)
class Signal:
    """One declared signal: ``judge`` reads ``reads`` from :class:`Facts` and returns its
    reasons; a signal of several levels scores ``points[i]`` from threshold ``i`` on.
    Thresholds are "at least" unless ``when`` says otherwise."""

    name: str
    group: Group
    points: tuple[int, ...]
    limits: Mapping[str, float]
    when: str  # the README's and help's line: a format string over ``limits`` and ``window``
    reads: str
    judge: Judge

    def __getitem__(self, limit: str) -> float:
        return self.limits[limit]

    def describe(self, window: float) -> str:
        return self.when.format(window=_duration(window), **_shown(self.limits))

    def reason(self, evidence: str, level: int = 0) -> Reason:
        return Reason(self.name, evidence, self.points[level])


def _direct_to_mx(facts: Facts, signal: Signal) -> list[Reason]:
    if facts.direct_servers < signal["servers"]:
        return []
    shown = (
        f"{plural(facts.direct_sessions, 'session')} on port 25 to "
        f"{plural(facts.direct_servers, 'server')}"
    )
    relays = facts.relays
    if relays:
        smarthost = "smarthost" if len(relays) == 1 else "smarthosts"
        shown += f" other than the {smarthost} ({', '.join(sorted(relays))})"
    else:
        shown += " (no smarthost known)"
    return [signal.reason(shown)]


def _many_destinations(facts: Facts, signal: Signal) -> list[Reason]:
    host, now = facts.host, facts.now
    recent = sum(1 for s in host.servers.values() if now - s.last_seen <= facts.window)
    level = _level(recent, signal["servers"], signal["many"])
    if level is None:
        return []
    # rows are kept for the most recent servers only: past them, a lower bound
    more = "at least " if now - host.servers_evicted_seen <= facts.window else ""
    shown = (
        f"{more}{plural(recent, 'distinct server')} in the last {_duration(facts.window)} "
        f"({_count(signal['servers'])} or more)"
    )
    return [signal.reason(shown, level)]


def _rate(facts: Facts, signal: Signal) -> list[Reason]:
    host = facts.host
    per_minute = host.sessions_per_minute(facts.now)
    if per_minute < signal["per_minute"] and host.max_parallel < signal["parallel"]:
        return []
    shown = (
        f"{plural(int(per_minute), 'session')} in the last minute, "
        f"up to {host.max_parallel:,} at once"
    )
    return [signal.reason(shown)]


def _blocklist(facts: Facts, signal: Signal) -> list[Reason]:
    lists: dict[str, tuple[blocklists.BlocklistHit, int]] = {}
    for (code, text), count in facts.host.refusals.items():
        for hit in facts.refusal_hits(code, text):
            seen = lists.get(hit.name)
            lists[hit.name] = (hit, count + (seen[1] if seen else 0))
    ordered = sorted(lists.items(), key=lambda item: (-item[1][1], item[0]))
    reasons = []
    for index, (name, (hit, count)) in enumerate(ordered):
        kind = "refused" if hit.permanent else "deferred"
        shown = f"{name}: {kind} {plural(count, 'time')} ({hit.evidence!r})"
        reasons.append(Reason(signal.name, shown, signal.points[0] if index == 0 else 0))
    return reasons


def _rejections(facts: Facts, signal: Signal) -> list[Reason]:
    rejected, sessions = facts.host.rejected_sessions, facts.host.sessions
    if rejected < signal["sessions"] or rejected < signal["share"] * sessions:
        return []
    return [signal.reason(f"{rejected:,} of {plural(sessions, 'session')} rejected")]


def _helo(facts: Facts, signal: Signal) -> list[Reason]:
    kinds: dict[str, str] = {}
    direct = facts.direct_servers > 0
    for name in facts.host.helos:
        for kind in facts.helo_kinds(name, facts.host.ip, direct):
            kinds.setdefault(kind, name)
    if not kinds:
        return []
    return [signal.reason("; ".join(f"{kind} ({name!r})" for kind, name in kinds.items()))]


def _helo_changes(facts: Facts, signal: Signal) -> list[Reason]:
    names = len(facts.host.helos)
    if names < signal["names"]:
        return []
    return [signal.reason(plural(names, "different HELO/EHLO name"))]


def _pregreet(facts: Facts, signal: Signal) -> list[Reason]:
    spoke = facts.evidence.pregreet
    if spoke < signal["sessions"]:
        return []
    return [signal.reason(f"spoke before the greeting in {plural(spoke, 'session')}")]


def _sender_domains(facts: Facts, signal: Signal) -> list[Reason]:
    domains = facts.host.sender_domains
    level = _level(len(domains), signal["domains"], signal["many"])
    if level is None:
        return []
    sample = ", ".join(list(domains)[:4])
    shown = f"{plural(len(domains), 'different MAIL FROM domain')} ({sample}, ...)"
    return [signal.reason(shown, level)]


def _no_quit(facts: Facts, signal: Signal) -> list[Reason]:
    evidence = facts.evidence
    sessions, without = evidence.sessions, evidence.without_quit
    if sessions < signal["sessions"] or without <= signal["share"] * sessions:
        return []
    return [signal.reason(f"{without:,} of {plural(sessions, 'session')} ended without QUIT")]


def _dns_mx(facts: Facts, signal: Signal) -> list[Reason]:
    if facts.identity is None:
        return []
    lookups = facts.identity.mx_lookups(facts.now, facts.window)
    if lookups < signal["lookups"]:
        return []
    shown = f"{plural(lookups, 'MX lookup')} in the last {_duration(facts.window)}"
    return [signal.reason(shown)]


def _dialect(facts: Facts, signal: Signal) -> list[Reason]:
    families = set(facts.evidence.dialects)
    if not facts.direct_servers or not families or families & MAIL_CLIENTS:
        return []
    traits = ", ".join(facts.evidence.dialect_features[:4])
    shown = f"speaks like {', '.join(sorted(families))}, not a mail client ({traits})"
    return [signal.reason(shown)]


def _signal(
    name: str, group: Group, points: tuple[int, ...], when: str, reads: str, judge: Judge,
    **limits: float,
) -> Signal:  # fmt: skip
    return Signal(name, group, points, MappingProxyType(limits), when, reads, judge)


VOLUME, MISBEHAVIOUR, HABIT = Group.VOLUME, Group.MISBEHAVIOUR, Group.HABIT
SIGNALS: tuple[Signal, ...] = (
    _signal("direct-to-mx", VOLUME, (30,),
            "port-25 sessions to servers other than the smarthost ({servers} or more)",
            "port-25 servers and sessions per host; the smarthost", _direct_to_mx, servers=1),
    _signal("many-destinations", VOLUME, (20, 35),
            "{servers} / {many} or more distinct servers in the last {window}",
            "the host's servers and when each was last used", _many_destinations,
            servers=6, many=21),
    _signal("blocklist", MISBEHAVIOUR, (40,),
            "a refusal names a blocklist or a reputation block (Spamhaus ZEN/XBL/SBL/PBL/CSS/"
            "DBL, SpamCop, Barracuda, SORBS, UCEPROTECT, CBL, Microsoft S3140/5.7.606, Gmail "
            "4.7.0/4.7.28, Yahoo TSS04/BL21/BL23, Comcast BL000001 and more; 4xx deferrals too)",
            "the host's refusal texts", _blocklist),
    _signal("rejections", MISBEHAVIOUR, (15,),
            "{sessions} or more rejected sessions, {share} of all or more",
            "rejected and all sessions of the host", _rejections, sessions=3, share=0.3),
    _signal("helo", MISBEHAVIOUR, (15,),
            "HELO names spambots use: bare IP, an address literal that is not the host's, "
            "localhost, a big company's domain, an ISP's dynamic name, random letters; no dot, "
            "where the host speaks to foreign MX servers itself",
            "the host's HELO/EHLO names", _helo),
    _signal("helo-changes", HABIT, (10,),
            "{names} or more different HELO/EHLO names",
            "the host's HELO/EHLO names", _helo_changes, names=4),
    _signal("sender-domains", MISBEHAVIOUR, (10, 20),
            "{domains} / {many} or more distinct MAIL FROM domains",
            "the host's MAIL FROM domains", _sender_domains, domains=3, many=10),
    _signal("rate", VOLUME, (10,),
            "{per_minute} or more sessions in a minute, or {parallel} at once",
            "session starts and parallel sessions", _rate, per_minute=10, parallel=10),
    _signal("pregreet", MISBEHAVIOUR, (20,),
            "talking before the server's greeting in {sessions} or more sessions",
            "sessions where the client spoke first", _pregreet, sessions=1),
    _signal("no-quit", HABIT, (5,),
            "more than {share} of sessions ({sessions} or more) end without QUIT",
            "sessions ended with and without QUIT", _no_quit, sessions=3, share=0.5),
    _signal("dns-mx", HABIT, (10,),
            "{lookups} or more MX lookups in the last {window}",
            "the host's DNS queries for MX records", _dns_mx, lookups=10),
    _signal("dialect", HABIT, (10,),
            "direct to MX with no known mail client's dialect",
            "client commands as parsed, per session", _dialect),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DetectConfig:
    """The policy: what counts as the office's relay and mail servers, the signals, and the
    scores at which a host is suspicious or a spambot."""

    smarthosts: tuple[str, ...] = ()  # addresses or greeting names of the office's relay
    mail_servers: tuple[str, ...] = ()  # LAN hosts that are mail servers themselves
    suspicious: int = 25
    spambot: int = 60
    min_sessions: int = 3  # one session is thin evidence, unless a blocklist named the host
    window: float = 600.0  # seconds that "recent" means
    quiet_after: float = 600.0  # a flagged host without direct-to-MX for this long is quiet
    signals: tuple[Signal, ...] = SIGNALS

    def signal(self, name: str) -> Signal:
        return next(s for s in self.signals if s.name == name)

    def with_settings(self, settings: Mapping[str, str]) -> DetectConfig:
        """This policy with settings changed: ``spambot=70``, ``window=300``,
        ``rejections.sessions=5``, ``many-destinations.points=20,35``.  A ValueError names
        a setting that does not exist or a value that does not fit."""
        config = self
        for key, value in settings.items():
            name, dot, limit = key.partition(".")
            if not dot:
                config = config._with_threshold(key, value)
                continue
            signals = {s.name: s for s in config.signals}
            if name not in signals:
                raise ValueError(f"no signal {name!r} (signals: {', '.join(signals)})")
            signals[name] = _changed(signals[name], limit, value)
            config = dataclasses.replace(config, signals=tuple(signals.values()))
        return config

    def _with_threshold(self, key: str, value: str) -> DetectConfig:
        kind = THRESHOLDS.get(key)
        if kind is None:
            names = ", ".join([*THRESHOLDS, "SIGNAL.points", "SIGNAL.LIMIT"])
            raise ValueError(f"no setting {key!r} (settings: {names})")
        changes: dict[str, Any] = {key: kind(_number(key, value, kind))}
        return dataclasses.replace(self, **changes)


THRESHOLDS: dict[str, type[int] | type[float]] = {
    "suspicious": int, "spambot": int, "min_sessions": int, "window": float,
    "quiet_after": float,
}  # fmt: skip


def load_settings(path: str) -> dict[str, str]:
    """Settings from a TOML file: top-level thresholds, and a table per signal
    (``[signals.rejections]`` ``sessions = 5``).  Raises OSError or ValueError."""
    with open(path, "rb") as file:
        try:
            document = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: {exc}") from None
    settings: dict[str, str] = {}
    for key, value in document.items():
        if key == "signals" and isinstance(value, dict):
            for name, table in value.items():
                if not isinstance(table, dict):
                    raise ValueError(f"{path}: [signals.{name}] must be a table")
                for limit, number in table.items():
                    settings[f"{name}.{limit}"] = _setting(number)
        else:
            settings[key] = _setting(value)
    return settings


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _changed(signal: Signal, limit: str, value: str) -> Signal:
    if limit == "points":
        try:
            points = tuple(int(p) for p in value.split(","))
        except ValueError:
            raise ValueError(f"{signal.name}.points: {value!r} is not a list of integers") from None
        if len(points) != len(signal.points) or min(points) < 0:
            count = plural(len(signal.points), "number")
            raise ValueError(f"{signal.name}.points takes {count}, 0 or more")
        return dataclasses.replace(signal, points=points)
    if limit not in signal.limits:
        known = ", ".join(["points", *signal.limits])
        raise ValueError(f"{signal.name} has no setting {limit!r} (it has: {known})")
    number = _number(f"{signal.name}.{limit}", value, float)
    limits = MappingProxyType({**signal.limits, limit: number})
    return dataclasses.replace(signal, limits=limits)


def _number(key: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a number") from None
    if not number >= 0:
        raise ValueError(f"{key}: {value!r} must be 0 or more")
    return number


def signal_table(config: DetectConfig | None = None) -> str:
    """The signals as the README's Markdown table."""
    config = config or DetectConfig()
    rows = ["| signal | points | when |", "|---|---|---|"]
    for signal in config.signals:
        points = " / ".join(map(str, signal.points))
        rows.append(f"| `{signal.name}` | {points} | {signal.describe(config.window)} |")
    return "\n".join(rows)


def policy_text(config: DetectConfig | None = None) -> str:
    """How the signals' points make a verdict, in the words of the README and help."""
    config = config or DetectConfig()
    names = [s.name for s in config.signals if s.group is MISBEHAVIOUR]
    misbehaviour = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
    return (
        f"A host is a spambot from {config.spambot} points, if at least one of "
        f"{misbehaviour} is among its reasons and it has had {config.min_sessions} sessions "
        f"or a blocklist refusal. It is suspicious from {config.suspicious} points, and "
        "normal otherwise. Signals of volume and habit are not held against the LAN's own "
        "mail servers."
    )


class Attention(StrEnum):
    """How a host is coloured in the monitor: red, yellow, or not at all."""

    ALERT = "alert"
    WARN = "warn"
    NONE = ""


def attention(host: Host, verdict: Verdict | None, config: DetectConfig) -> Attention:
    """Red for a spambot, or a host whose destinations or rejections alone reach the
    signals' thresholds; yellow for a suspicious one, or any rejection or deferral."""
    rating = verdict.verdict if verdict else Rating.UNJUDGED
    if (
        rating is Rating.SPAMBOT
        or host.destinations >= config.signal("many-destinations")["servers"]
        or host.rejected_sessions >= config.signal("rejections")["sessions"]
    ):
        return Attention.ALERT
    if rating is Rating.SUSPICIOUS or host.rejected_sessions or host.tempfailed_sessions:
        return Attention.WARN
    return Attention.NONE


def colours_text(config: DetectConfig | None = None) -> str:
    """The help screen's words for :func:`attention`."""
    config = config or DetectConfig()
    servers = _count(config.signal("many-destinations")["servers"])
    rejected = _count(config.signal("rejections")["sessions"])
    return (
        f"Colours: a red host is a spambot, talks to {servers} or more servers or has "
        f"{rejected} or more rejected sessions; a yellow one is suspicious or had a rejection "
        "or a temporary failure."
    )


class Detector:
    """Scores LAN hosts; subscribe it to a model, then call :meth:`evaluate` for all hosts
    or :meth:`judge` for one."""

    def __init__(self, model: Model, config: DetectConfig | None = None) -> None:
        self.model = model
        self.config = config or DetectConfig()
        self.evidence: dict[str, Evidence] = {}
        self.inbound_servers: set[str] = set()
        self.destination_bytes = 0  # the mx_servers of all hosts, within the model's budget
        self.destinations_dropped = 0
        self._refusal_hits: dict[tuple[int, str], list[blocklists.BlocklistHit]] = {}
        self._helo_kinds: dict[tuple[str, str, bool], list[str]] = {}
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
            evidence = self.evidence[session.client_ip] = Evidence()
        if session.server_port == 25:
            self._mx_session(evidence, session.server_ip, session.end)
        evidence.closed += 1
        if self.model.from_logs:
            return  # Zeek logs no QUIT, no talk before the greeting, no client lines as sent
        if session.replies and not session.tls:  # QUIT cannot be seen inside TLS
            evidence.sessions += 1
            evidence.without_quit += not session.quit_sent
        evidence.pregreet += session.pregreet
        if evidence.closed > DIALECT_EVERY_SESSION and evidence.closed % DIALECT_SAMPLE:
            return  # a host's dialect is known by now: fingerprint a sample from here on
        if session.steps and not session.tls:
            found = dialect.fingerprint(
                session.steps,
                pipelined=session.pipelined,
                quit_sent=session.quit_sent,
                greeting_seen=not session.pregreet,
                pipelining_offered=session.pipelining_offered if session.greeting_seen else None,
            )
            if found.family in evidence.dialects or len(evidence.dialects) < 16:
                evidence.dialects[found.family] += 1
            evidence.dialect_features = found.features

    def _mx_session(self, evidence: Evidence, ip: str, ts: float) -> None:
        evidence.mx_sessions += 1
        if ip in evidence.mx_counts or len(evidence.mx_counts) < MAX_MX_COUNTED:
            evidence.mx_counts[ip] = evidence.mx_counts.get(ip, 0) + 1
            evidence.mx_last[ip] = max(ts, evidence.mx_last.get(ip, ts))
        else:
            evidence.mx_last_other = max(ts, evidence.mx_last_other)
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
        return found | {n for n in named if is_address(n)}

    # -- verdicts ------------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> dict[str, Verdict]:
        """A verdict for every client host (LAN hosts scored, others left blank)."""
        return self.judge_hosts(self.model.hosts, self.model.last_ts if now is None else now)

    def judge_hosts(
        self, ips: Iterable[str], now: float, relays: frozenset[str] | None = None
    ) -> dict[str, Verdict]:
        """Verdicts for the hosts named that the model has: the monitor judges a few at a
        time (the relays found once for all), since judging 10,000 hosts takes a second."""
        if relays is None:
            relays = frozenset(self.smarthosts())
        hosts = self.model.hosts
        return {ip: self.judge(hosts[ip], now, relays) for ip in ips if ip in hosts}

    def judge(self, host: Host, now: float, relays: frozenset[str]) -> Verdict:
        """The verdict on one host at ``now``, given the office's relays."""
        if not host.lan:
            return Verdict(host.ip, Rating.UNJUDGED, 0, (), "")
        config = self.config
        evidence = self.evidence.get(host.ip) or Evidence()
        mail_server = host.ip in config.mail_servers or host.ip in self.inbound_servers
        servers, sessions = _direct(evidence, relays)
        facts = Facts(
            host, evidence, self.model.identities.get(host.ip), now, config.window, relays,
            servers, sessions, self._helo, self._classify,
        )  # fmt: skip
        reasons: list[Reason] = []
        for signal in config.signals:
            if signal.group is MISBEHAVIOUR or not mail_server:
                reasons += signal.judge(facts, signal)
        score = sum(r.points for r in reasons)
        rating = self._rating(host, reasons, score)
        last = _last_direct(evidence, relays)
        flagged = rating is Rating.SPAMBOT or rating is Rating.SUSPICIOUS
        quiet = flagged and last is not None and now - last >= config.quiet_after
        return Verdict(host.ip, rating, score, tuple(reasons), _family(evidence), last,
                       last if quiet else None)  # fmt: skip

    def _rating(self, host: Host, reasons: list[Reason], score: int) -> Rating:
        config = self.config
        scored = {r.signal for r in reasons}
        misbehaved = any(s.group is MISBEHAVIOUR and s.name in scored for s in config.signals)
        repeated = host.sessions >= config.min_sessions or "blocklist" in scored
        if score >= config.spambot and misbehaved and repeated:
            return Rating.SPAMBOT
        if score >= config.suspicious:
            return Rating.SUSPICIOUS
        return Rating.NORMAL

    def _classify(self, code: int, text: str) -> list[blocklists.BlocklistHit]:
        key = (code, text)
        hits = self._refusal_hits.get(key)
        if hits is None:
            hits = blocklists.classify(code, text)
            if len(self._refusal_hits) < MAX_CACHED:
                self._refusal_hits[key] = hits
        return hits

    def _helo(self, name: str, ip: str, direct: bool) -> list[str]:
        key = (name, ip, direct)
        kinds = self._helo_kinds.get(key)
        if kinds is None:
            kinds = helo_anomalies(name, ip, direct_to_mx=direct)
            if len(self._helo_kinds) < MAX_HELOS_CACHED:
                self._helo_kinds[key] = kinds
        return kinds


def _family(evidence: Evidence) -> str:
    return evidence.dialects.most_common(1)[0][0] if evidence.dialects else ""


def _direct(evidence: Evidence, relays: frozenset[str]) -> tuple[int, int]:
    """Distinct port-25 servers other than the relays (exact) and the sessions to them
    (exact while the relays are among the servers counted one by one)."""
    relayed = [ip for ip in relays if ip in evidence.mx_servers]
    servers = evidence.mx_servers.size - len(relayed)
    return servers, evidence.mx_sessions - sum(evidence.mx_counts.get(ip, 0) for ip in relayed)


def _last_direct(evidence: Evidence, relays: frozenset[str]) -> float | None:
    """When the host's latest port-25 session to a server other than the relays ended."""
    times = (ts for ip, ts in evidence.mx_last.items() if ip not in relays)
    last = max(times, default=evidence.mx_last_other)
    last = max(last, evidence.mx_last_other)
    return last if last > float("-inf") else None


def _level(value: float, *thresholds: float) -> int | None:
    """The highest level whose threshold ``value`` reaches, or None below the first."""
    reached = [i for i, threshold in enumerate(thresholds) if value >= threshold]
    return reached[-1] if reached else None


def _count(value: float) -> str:
    return f"{value:g}"


def _shown(limits: Mapping[str, float]) -> dict[str, str]:
    """Limits as the table shows them: shares as percentages, counts as plain numbers."""
    return {k: f"{v:.0%}" if k == "share" else _count(v) for k, v in limits.items()}


def _duration(seconds: float) -> str:
    if seconds % 60 == 0:
        return plural(int(seconds // 60), "minute")
    return plural(int(seconds), "second")
