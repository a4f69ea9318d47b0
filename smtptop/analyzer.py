"""The engine: frames in, per-connection SMTP events out.  Pure: no I/O, no threads.

:class:`Analyzer` runs decode → TCP reassembly → SMTP parsing for every frame and collects
``(session id, event)`` pairs: :class:`FlowOpened`, the parser's events, :class:`FlowClosed`,
and (with session id 0) who-is-who events from the DHCP, NetBIOS, DNS and ARP it skips.
:func:`smtptop.model.apply` folds such a batch, as the rows of :mod:`smtptop.wire`, into a
:class:`~smtptop.model.Model`.  The report runs both in one loop (or the analyzer in a child
process); the TUI runs the analyzer in its capture thread and applies batches in the UI.

It owns the connection table: which endpoint is the client, port reuse, closed connections
lingering to absorb stray packets, idle timeouts and a bound on open connections.  A failure
while handling one packet is caught here, counted and sampled, and the capture goes on.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING

from smtptop import decode as dec
from smtptop import identity
from smtptop.ring import Kept, PacketRing
from smtptop.smtp import Event, ParserLimits, SmtpParser
from smtptop.tcp import CLIENT, SERVER, Connection, ReassemblyLimits

if TYPE_CHECKING:
    from smtptop.capture import Frame

DEFAULT_PORTS = dec.DEFAULT_PORTS
MAX_ERROR_SAMPLES = 20
SYN = dec.SYN
SYN_OR_ACK = dec.SYN | dec.ACK


@dataclass(frozen=True, slots=True)
class EngineConfig:
    ports: frozenset[int] = DEFAULT_PORTS
    mirrors: dec.MirrorPorts = dec.STANDARD_MIRRORS  # the UDP ports mirrors send to
    idle_timeout: float = 600.0
    linger: float = 60.0
    sweep_interval: float = 10.0
    max_connections: int = 65536
    smtp: ParserLimits = field(default_factory=ParserLimits)
    tcp: ReassemblyLimits = field(default_factory=ReassemblyLimits)
    # One of several engines (``--workers``).  Each numbers its sessions apart from the
    # others'.  Reading the same frames (capture files), this one takes the connections
    # whose client :func:`shard_of` gives it, and only shard 0 reports who-is-who; dealt
    # its own frames by the kernel (``kernel_sharded``, live PACKET_FANOUT), it takes every
    # connection it sees and reports who-is-who of what it sees.  Either way the engines'
    # events together are one engine's.
    shard: int = 0
    shards: int = 1
    kernel_sharded: bool = False
    # Bytes of SMTP packets kept per client host for evidence bundles (live capture without a
    # capture file), shared by the engines: each keeps its share (:mod:`smtptop.ring`).
    evidence_buffer: int = 0


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
    elsewhere: int = 0  # SMTP packets of connections another engine takes (shards)
    log_records: int = 0  # Zeek log records read (smtptop.zeek), instead of packets


class _Flow:
    """An open connection: its reassembly and its SMTP parser.  Once closed it is let go;
    only its key and last packet time linger (``Analyzer._lingering``)."""

    __slots__ = ("conn", "id", "kept", "key", "last_ts", "parser", "reverse")

    def __init__(
        self,
        flow_id: int,
        key: bytes,
        conn: Connection,
        parser: SmtpParser,
        ts: float,
        kept: Kept | None,
    ) -> None:
        self.id = flow_id
        self.key = key  # the wire key of the client's direction
        self.reverse = _reverse(key)  # and of the server's
        self.conn = conn
        self.parser = parser
        self.last_ts = ts
        self.kept = kept  # its client's packets in the evidence ring


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
        # Open connections by the wire key of their client's direction, and both directions'
        # wire keys to (connection, sending side): one dict lookup per packet.
        self.flows: dict[bytes, _Flow] = {}
        self._by_wire: dict[bytes, tuple[_Flow, int]] = {}
        # Closed connections waiting out their linger to absorb stray packets: the client's
        # wire key to the time of the last packet, some 100 bytes instead of the ~2.8 KB of
        # a connection's reassembly and parser.
        self._lingering: dict[bytes, float] = {}
        self.out: list[tuple[int, FlowEvent]] = []
        self.last_ts = 0.0
        self._next_id = self.config.shard + 1  # session ids: shard + 1, then every shards-th
        self._next_sweep = 0.0
        budget = self.config.evidence_buffer // self.config.shards
        self.ring = PacketRing(budget) if budget else None

    def take(self) -> list[tuple[int, FlowEvent]]:
        """Hand over the events collected since the last call."""
        out, self.out = self.out, []
        return out

    def packet(self, ts: float, linktype: int, frame: bytes) -> None:
        """Process one captured frame."""
        self.feed(((ts, linktype, frame),))

    def feed(self, frames: Iterable[Frame], max_events: int = 0) -> int:
        """Process frames; return how many were taken.

        With ``max_events``, stop early once that many events wait to be taken, so that a
        caller feeding a long iterator keeps memory bounded.  This loop runs for every packet
        of a capture: what it touches is bound to locals, and the common packet (the next
        bytes of a known connection, or a bare ACK) is a dict lookup and one call.
        """
        stats = self.stats
        decode, ports, by_wire, lookup = dec.decode, self.ports, self._by_wire, self._lookup
        out, skipped = self.out, stats.skipped
        shard, shards = self.config.shard, self.config.shards
        reader_sharded = shards > 1 and not self.config.kernel_sharded
        ring = self.ring
        packets = size = smtp_packets = elsewhere = 0
        last_ts = self.last_ts
        try:
            for ts, linktype, frame in frames:
                packets += 1
                if ts > last_ts:
                    last_ts = self.last_ts = ts
                    if ts >= self._next_sweep:
                        self._sweep(ts)
                if isinstance(frame, str):  # set aside by the reader's prefilter: the reason,
                    size += linktype  # and the record's length in the link type's place
                    skipped[frame] = skipped.get(frame, 0) + 1
                    continue
                size += len(frame)
                try:
                    seg = decode(linktype, frame, ports)
                    # Anything but a Segment is a skip reason, a str.  Tested as "not tuple",
                    # as cheap as "is str": mypy narrows seg to a Segment only from this test.
                    if type(seg) is not tuple:
                        reason: str = seg  # type: ignore[assignment]  # not a tuple: a str
                        inner = self._mirrored(reason, linktype, frame, ts)
                        if inner is None:
                            continue
                        linktype, frame, seg = inner
                    key, seq, ack, flags, payload = seg
                    entry = by_wire.get(key)
                    if entry is None and reader_sharded and shard_of(key, ports, shards) != shard:
                        elsewhere += 1
                        continue
                    smtp_packets += 1
                    if entry is None or flags & SYN_OR_ACK == SYN:
                        entry = lookup(key, seq, flags, ts)
                        if entry is None:  # a closed connection's stray packet, absorbed
                            if ring is not None:
                                ring.add(client_of(key, ports), ts, linktype, frame)
                            continue
                    flow, side = entry
                    if ring is not None:
                        ring.keep(flow.kept, ts, linktype, frame)
                    flow.last_ts = ts
                    conn = flow.conn
                    conn.segment(side, seq, ack, flags, payload, ts)
                    if conn.closed:  # closing drains the parser's events too, in order
                        self._close(flow, ts, "reset" if conn.reset else "closed", linger=True)
                    elif flow.parser.queued:
                        fid = flow.id
                        out.extend([(fid, event) for event in flow.parser.events()])
                    else:
                        continue
                    if max_events and len(out) >= max_events:
                        break
                except Exception as exc:  # one bad packet must not stop the capture
                    self._failed(exc, stats.packets + packets, ts)
        finally:
            stats.packets += packets
            stats.bytes += size
            stats.smtp_packets += smtp_packets
            stats.elsewhere += elsewhere
        return packets

    def _mirrored(
        self, reason: str, linktype: int, frame: bytes, ts: float
    ) -> tuple[int, bytes, dec.Segment] | None:
        """A frame the decoder skipped: the SMTP segment of the frame a mirror carries in it,
        as if captured here; or None once it is counted as skipped (who-is-who read from it,
        or from the frame the mirror carried)."""
        linktype, frame, seg = dec.unwrap(linktype, frame, self.ports, reason, self.config.mirrors)
        if isinstance(seg, str):
            self._skipped(seg, linktype, frame, ts)
            return None
        return linktype, frame, seg

    def _skipped(self, reason: str, linktype: int, frame: bytes, ts: float) -> None:
        """Count a frame that carries no SMTP; DHCP, NetBIOS, DNS and ARP still say who is who."""
        skipped = self.stats.skipped
        skipped[reason] = skipped.get(reason, 0) + 1
        reports_identity = self.config.shard == 0 or self.config.kernel_sharded
        if reports_identity and (reason == dec.SKIP_NON_TCP or reason == dec.SKIP_NON_IP):
            self.out.extend([(0, event) for event in identity.observe(linktype, frame, ts)])

    def _failed(self, exc: Exception, packet_number: int, ts: float) -> None:
        stats = self.stats
        stats.errors += 1
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else "?"
        message = f"packet {packet_number} at {ts:.6f}: {type(exc).__name__}: {exc} ({line})"
        if len(stats.error_samples) < MAX_ERROR_SAMPLES:
            stats.error_samples.append(message)
        if self.on_error is not None:
            self.on_error(message)

    def _lookup(self, key: bytes, seq: int, flags: int, ts: float) -> tuple[_Flow, int] | None:
        """The connection of a packet that starts one or is its first seen: which side is the
        client, and whether a SYN reuses the ports of an older connection.  None for a stray
        packet of a closed connection: it is absorbed."""
        size = (len(key) - 4) // 2
        sport = key[2 * size] << 8 | key[2 * size + 1]
        dport = key[2 * size + 2] << 8 | key[2 * size + 3]
        ports = self.ports
        if dport not in ports:
            from_client = False
        elif sport in ports:
            from_client = _initiator(key[:size], sport, key[size : 2 * size], dport, flags)
        else:
            from_client = True
        client_key = key if from_client else _reverse(key)
        syn = flags & SYN_OR_ACK == dec.SYN
        flow = self.flows.get(client_key)
        if flow is not None and syn and _new_isn(flow.conn, seq):
            self._close(flow, ts, "port reused")
            self._forget(flow)
            flow = None
        elif flow is None and client_key in self._lingering:
            if not syn:
                self._lingering[client_key] = ts
                return None
            del self._lingering[client_key]  # a SYN after the close starts anew
        if flow is None:
            flow = self._open(client_key, ts, midstream=not flags & dec.SYN)
        return flow, CLIENT if key == flow.key else SERVER

    def _open(self, key: bytes, ts: float, *, midstream: bool) -> _Flow:
        if len(self.flows) + len(self._lingering) >= self.config.max_connections:
            self._evict(ts)
        parser = SmtpParser(midstream=midstream, limits=self.config.smtp)
        size = (len(key) - 4) // 2
        kept = self.ring.host(key[:size]) if self.ring is not None else None
        flow = _Flow(self._next_id, key, Connection(parser, self.config.tcp), parser, ts, kept)
        self._next_id += self.config.shards
        self.flows[key] = flow
        self._by_wire[key] = (flow, CLIENT)
        self._by_wire[flow.reverse] = (flow, SERVER)
        client = (_ip(key[:size]), key[2 * size] << 8 | key[2 * size + 1])
        server = (_ip(key[size : 2 * size]), key[2 * size + 2] << 8 | key[2 * size + 3])
        self.out.append((flow.id, FlowOpened(ts, client, server, midstream)))
        return flow

    def _forget(self, flow: _Flow) -> None:
        del self.flows[flow.key]
        self._by_wire.pop(flow.key, None)
        self._by_wire.pop(flow.reverse, None)

    def _evict(self, ts: float) -> None:
        """The table is full: forget the least recently active eighth of it (open and
        lingering connections alike) at once, so that a flood of new connections costs a
        sort now and then, not a scan per packet."""
        table = [(flow.last_ts, key) for key, flow in self.flows.items()]
        table += [(last_ts, key) for key, last_ts in self._lingering.items()]
        table.sort(key=itemgetter(0))
        for _, key in table[: max(1, len(table) // 8)]:
            flow = self.flows.get(key)
            if flow is None:
                del self._lingering[key]
                continue
            self.stats.connections_evicted += 1
            self._close(flow, ts, "evicted: too many open connections")
            self._forget(flow)

    def _close(self, flow: _Flow, ts: float, reason: str, *, linger: bool = False) -> None:
        """Close a connection and emit its last events; with ``linger``, let go of it but
        for its key and last packet time, which absorb its stray packets for a while."""
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
        if linger:
            self._forget(flow)
            self._lingering[flow.key] = flow.last_ts

    def _sweep(self, now: float) -> None:
        """Close idle connections and forget closed ones whose linger time is over."""
        config = self.config
        self._next_sweep = now + config.sweep_interval
        lingering = self._lingering
        for key in [key for key, last_ts in lingering.items() if now - last_ts >= config.linger]:
            del lingering[key]
        quiet = max(config.linger, config.idle_timeout)
        idle = [flow for flow in self.flows.values() if now - flow.last_ts >= quiet]
        for flow in idle:
            self.stats.idle_closed += 1
            self._close(flow, now, "idle timeout")
            self._forget(flow)

    def finish(self, at: float = 0.0) -> None:
        """The input is over: close every open connection, at the last packet seen (or
        ``at``, when later: the last packet another engine of a live capture saw)."""
        end = max(self.last_ts, at)
        for flow in self.flows.values():
            self._close(flow, max(flow.last_ts, end), "capture ended")
        self.flows.clear()
        self._by_wire.clear()
        self._lingering.clear()


def shard_of(key: bytes, ports: frozenset[int], shards: int) -> int:
    """Which of ``shards`` engines takes the connection of a packet with this wire key: by
    its client's address, so that each engine has every connection of its hosts.  The same
    for both directions."""
    return zlib.crc32(client_of(key, ports)) % shards


def client_of(key: bytes, ports: frozenset[int]) -> bytes:
    """The packed address of the client of a packet with this wire key: the end not on an
    SMTP port; the lower address when both are (or neither)."""
    size = (len(key) - 4) // 2
    source, destination = key[:size], key[size : 2 * size]
    dport_in = (key[2 * size + 2] << 8 | key[2 * size + 3]) in ports
    sport_in = (key[2 * size] << 8 | key[2 * size + 1]) in ports
    if dport_in and not sport_in:
        return source
    if sport_in and not dport_in:
        return destination
    return min(source, destination)


def _reverse(key: bytes) -> bytes:
    """The wire key of the other direction: addresses swapped, ports swapped."""
    size = (len(key) - 4) // 2
    ports = 2 * size
    return key[size:ports] + key[:size] + key[ports + 2 :] + key[ports : ports + 2]


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
    if len(raw) == 4:
        return "%d.%d.%d.%d" % tuple(raw)  # noqa: UP031 - several times faster than ipaddress
    return str(ipaddress.ip_address(raw))
