"""The engine: frames in, per-connection SMTP events out.  Pure: no I/O, no threads.

:class:`Analyzer` runs decode → TCP reassembly → SMTP parsing for every frame and collects
``(session id, event)`` pairs: :class:`FlowOpened`, the parser's events, :class:`FlowClosed`,
and (with session id 0) who-is-who events from the DHCP, NetBIOS, DNS and ARP it skips.
:func:`apply` folds such a batch into a :class:`~smtptop.model.Model`.  The report runs both
in one loop; the TUI runs the analyzer in its capture thread and applies batches in the UI.

It owns the connection table: which endpoint is the client, port reuse, closed connections
lingering to absorb stray packets, idle timeouts and a bound on open connections.  A failure
while handling one packet is caught here, counted and sampled, and the capture goes on.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from smtptop import decode as dec
from smtptop import identity
from smtptop.model import Model
from smtptop.smtp import Event, SmtpParser
from smtptop.smtp import Limits as SmtpLimits
from smtptop.tcp import CLIENT, SERVER, Connection
from smtptop.tcp import Limits as TcpLimits

DEFAULT_PORTS = frozenset({25, 465, 587, 2525})
MAX_ERROR_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class EngineConfig:
    ports: frozenset[int] = DEFAULT_PORTS
    idle_timeout: float = 600.0
    linger: float = 60.0
    sweep_interval: float = 10.0
    max_connections: int = 65536
    smtp: SmtpLimits = field(default_factory=SmtpLimits)
    tcp: TcpLimits = field(default_factory=TcpLimits)


@dataclass(frozen=True, slots=True)
class FlowOpened:
    ts: float
    client: tuple[str, int]
    server: tuple[str, int]
    midstream: bool


@dataclass(frozen=True, slots=True)
class FlowClosed:
    ts: float
    reason: str
    client_bytes: int
    server_bytes: int
    packets: int
    conflicts: int = 0


FlowEvent = FlowOpened | FlowClosed | Event | identity.Sighting | identity.DnsLookup


@dataclass(slots=True)
class Stats:
    """What the engine saw and skipped; shown in the status bar and the report."""

    packets: int = 0
    bytes: int = 0
    smtp_packets: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    connections_evicted: int = 0
    idle_closed: int = 0
    tcp_conflicts: int = 0


class _Flow:
    __slots__ = ("closed", "conn", "id", "last_ts", "parser")

    def __init__(self, flow_id: int, conn: Connection, parser: SmtpParser, ts: float) -> None:
        self.id = flow_id
        self.conn = conn
        self.parser = parser
        self.last_ts = ts
        self.closed = False


class Analyzer:
    """Decode, reassemble and parse frames; collect events for the model."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.on_error = on_error  # told of every failure (the CLI appends them to a log)
        self.ports = frozenset(self.config.ports)
        self.stats = Stats()
        self.flows: OrderedDict[tuple[bytes, int, bytes, int], _Flow] = OrderedDict()
        self.out: list[tuple[int, FlowEvent]] = []
        self.last_ts = 0.0
        self._next_id = 1
        self._next_sweep = 0.0

    def take(self) -> list[tuple[int, FlowEvent]]:
        """Hand over the events collected since the last call."""
        out, self.out = self.out, []
        return out

    def packet(self, ts: float, linktype: int, frame: bytes) -> None:
        """Process one captured frame."""
        stats = self.stats
        stats.packets += 1
        stats.bytes += len(frame)
        if ts > self.last_ts:
            self.last_ts = ts
            if ts >= self._next_sweep:
                self._sweep(ts)
        try:
            seg = dec.decode(linktype, frame, self.ports)
            if type(seg) is str:
                stats.skipped[seg] = stats.skipped.get(seg, 0) + 1
                if seg == dec.SKIP_NON_TCP or seg == dec.SKIP_NON_IP:
                    self.out.extend([(0, e) for e in identity.observe(linktype, frame, ts)])
                return
            stats.smtp_packets += 1
            self._segment(seg, ts)  # type: ignore[arg-type]
        except Exception as exc:  # one bad packet must not stop the capture
            stats.errors += 1
            where = exc.__traceback__
            while where is not None and where.tb_next is not None:
                where = where.tb_next
            line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
            message = f"packet {stats.packets} at {ts:.6f}: {type(exc).__name__}: {exc} ({line})"
            if len(stats.error_samples) < MAX_ERROR_SAMPLES:
                stats.error_samples.append(message)
            if self.on_error is not None:
                self.on_error(message)

    def _segment(self, seg: dec.Segment, ts: float) -> None:
        src, dst, sport, dport, seq, ack, flags, payload = seg
        ports = self.ports
        if dport not in ports:
            from_client = False
        elif sport in ports:
            from_client = _initiator(src, sport, dst, dport, flags)
        else:
            from_client = True
        key = (src, sport, dst, dport) if from_client else (dst, dport, src, sport)
        flow = self.flows.get(key)
        syn_only = flags & (dec.SYN | dec.ACK) == dec.SYN
        if flow is not None and syn_only and (flow.closed or _new_isn(flow.conn, seq)):
            if not flow.closed:
                self._close(flow, ts, "port reused")
            del self.flows[key]
            flow = None
        if flow is None:
            flow = self._open(key, ts, midstream=not flags & dec.SYN)
        else:
            self.flows.move_to_end(key)
            flow.last_ts = ts
        if flow.closed:
            return
        flow.conn.segment(CLIENT if from_client else SERVER, seq, ack, flags, payload, ts)
        events = flow.parser.events()
        if events:
            fid = flow.id
            self.out.extend([(fid, e) for e in events])
        if flow.conn.closed:
            self._close(flow, ts, "reset" if flow.conn.reset else "closed")

    def _open(self, key: tuple[bytes, int, bytes, int], ts: float, *, midstream: bool) -> _Flow:
        if len(self.flows) >= self.config.max_connections:
            _, oldest = self.flows.popitem(last=False)
            if not oldest.closed:
                self.stats.connections_evicted += 1
                self._close(oldest, ts, "evicted: too many open connections")
        parser = SmtpParser(midstream=midstream, limits=self.config.smtp)
        flow = _Flow(self._next_id, Connection(parser, self.config.tcp), parser, ts)
        self._next_id += 1
        self.flows[key] = flow
        client_ip, client_port, server_ip, server_port = key
        client, server = (_ip(client_ip), client_port), (_ip(server_ip), server_port)
        self.out.append((flow.id, FlowOpened(ts, client, server, midstream)))
        return flow

    def _close(self, flow: _Flow, ts: float, reason: str) -> None:
        flow.closed = True
        conn = flow.conn
        conn.finish(ts)
        flow.parser.close(ts)
        events = flow.parser.events()
        client, server = conn.streams
        self.stats.tcp_conflicts += conn.conflicts
        self.out.extend([(flow.id, e) for e in events])
        self.out.append(
            (
                flow.id,
                FlowClosed(
                    ts,
                    reason,
                    client.bytes,
                    server.bytes,
                    client.packets + server.packets,
                    conn.conflicts,
                ),
            )
        )

    def _sweep(self, now: float) -> None:
        """Close idle connections and forget closed ones whose linger time is over."""
        config = self.config
        self._next_sweep = now + config.sweep_interval
        expired: list[tuple[bytes, int, bytes, int]] = []
        for key, flow in self.flows.items():
            idle = now - flow.last_ts
            if idle < config.linger:
                break
            if flow.closed:
                expired.append(key)
            elif idle >= config.idle_timeout:
                self.stats.idle_closed += 1
                self._close(flow, now, "idle timeout")
                expired.append(key)
        for key in expired:
            del self.flows[key]

    def finish(self) -> None:
        """The input is over: close every open connection."""
        for flow in self.flows.values():
            if not flow.closed:
                self._close(flow, max(flow.last_ts, self.last_ts), "capture ended")
        self.flows.clear()


def _initiator(src: bytes, sport: int, dst: bytes, dport: int, flags: int) -> bool:
    """Between two SMTP ports, guess whether the sender is the client."""
    if flags & dec.SYN:
        return not flags & dec.ACK
    if sport != dport:
        return sport > dport
    return src > dst


def _new_isn(conn: Connection, seq: int) -> bool:
    """A SYN whose sequence number does not fit the connection starts a new one."""
    expected = conn.streams[CLIENT].next_seq
    return expected is not None and (seq + 1) % (1 << 32) != expected


def _ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def apply(model: Model, batch: Iterable[tuple[int, FlowEvent]]) -> None:
    """Fold a batch of engine events into the model."""
    for session_id, event in batch:
        if isinstance(event, FlowOpened):
            model.open_session(
                session_id, event.client, event.server, event.ts, midstream=event.midstream
            )
        elif isinstance(event, identity.Sighting):
            model.sighting(event.ip, event.mac, event.name, event.source)
        elif isinstance(event, identity.DnsLookup):
            model.dns_lookup(event.ts, event.client, event.qtype, event.rcode)
        elif isinstance(event, FlowClosed):
            model.close_session(
                session_id,
                event.ts,
                event.reason,
                client_bytes=event.client_bytes,
                server_bytes=event.server_bytes,
                packets=event.packets,
                conflicts=event.conflicts,
            )
        else:
            model.apply(session_id, event)
