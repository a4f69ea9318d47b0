"""Build synthetic TCP/SMTP captures byte by byte.

Tests, the bundled sample and benchmarks need captures whose every field is known in advance,
so frames are packed here with :mod:`struct` (stdlib only, no scapy): valid IPv4/IPv6/TCP/UDP
checksums, exact sequence and acknowledgement numbers, any of the link types the decoder reads,
and classic pcap or pcapng files (optionally gzip-compressed).

Typical use::

    conv = Conversation("192.168.0.10", 50000, "198.51.100.25", 25, start=1_790_000_000.0)
    conv.handshake()
    conv.smtp([("S", b"220 mx ESMTP\\r\\n"), ("C", b"EHLO pc\\r\\n"), ("S", b"250 mx\\r\\n")])
    conv.close()
    write_pcap("out.pcap", conv.frames, LINKTYPE_ETHERNET)

Imperfect traffic for reassembly tests: every data segment is recorded in
``Conversation.segments`` (with its frame), so :func:`swap`, :func:`shuffle_segments`,
:func:`drop` and :func:`duplicate` can reorder, lose or repeat them in a frame list;
:meth:`Conversation.retransmit` and :meth:`Conversation.inject` send overlapping segments,
optionally with conflicting bytes.
"""

import contextlib
import gzip
import ipaddress
import math
import os
import random
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import BinaryIO

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_IPV6 = 0x86DD

AF_INET = 2
AF_INET6 = 24  # the BSD value; 28 (FreeBSD) and 30 (macOS) also occur in the wild

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

CLIENT = "C"
SERVER = "S"
_SIDES = {"C": CLIENT, "client": CLIENT, "S": SERVER, "server": SERVER}
_PEER = {CLIENT: SERVER, SERVER: CLIENT}

BROADCAST_MAC = b"\xff" * 6
_ETH_MIN = 60  # shortest Ethernet frame without FCS; the wire pads shorter ones with zeros
_MASK32 = 0xFFFFFFFF

# Options of a typical SYN: MSS, NOP, NOP, SACK permitted (the MSS value is patched in).
_SYN_OPTIONS = struct.Struct("!BBHBBBB")


@dataclass(slots=True)
class Frame:
    """One captured packet: capture time in UNIX seconds and the link-layer bytes."""

    ts: float
    data: bytes


@dataclass(slots=True)
class Segment:
    """A data-carrying TCP segment, kept so tests can reorder, drop or duplicate its frame."""

    frame: Frame
    by: str  # CLIENT or SERVER
    seq: int  # absolute sequence number of the first payload byte
    offset: int  # position of the first payload byte in the sender's byte stream
    payload: bytes


def internet_checksum(data: bytes) -> int:
    """Return the RFC 1071 checksum of `data`.

    The one's-complement sum of 16-bit big-endian words equals the whole buffer read as one
    big integer modulo 0xFFFF (2**16 is 1 modulo 0xFFFF), which CPython computes far faster
    than a Python loop over words.
    """
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0:
        # A non-zero buffer sums to 0xFFFF (negative zero), an all-zero one to plain zero.
        return 0 if any(data) else 0xFFFF
    return ~total & 0xFFFF


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _ip_packet(
    src: bytes,
    dst: bytes,
    proto: int,
    transport: bytes,
    checksum_at: int,
    *,
    ident: int,
    ttl: int,
    hop_by_hop: bool = False,
    flow: int = 0,
    zero_means_none: bool = False,
) -> bytes:
    """Fill in the transport checksum (pseudo-header included) and prepend the IP header."""
    length = len(transport)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        pseudo = src + dst + struct.pack("!I3xB", length, proto)
    checksum = internet_checksum(pseudo + transport)
    if zero_means_none and checksum == 0:
        checksum = 0xFFFF  # UDP sends a computed zero as all ones; zero means "no checksum"
    transport = transport[:checksum_at] + struct.pack("!H", checksum) + transport[checksum_at + 2 :]
    if len(src) == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + length, ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst
        )
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        return header + transport
    extension = b""
    next_header = proto
    if hop_by_hop:
        # Hop-by-hop options header holding one PadN option: 8 bytes, nothing to act on.
        extension = struct.pack("!BBBB4x", proto, 0, 1, 4)
        next_header = 0
    header = struct.pack(
        "!IHBB16s16s",
        0x60000000 | (flow & 0xFFFFF),
        len(extension) + length,
        next_header,
        ttl,
        src,
        dst,
    )
    return header + extension + transport


def tcp_packet(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    payload: bytes = b"",
    window: int = 64240,
    options: bytes = b"",
    ident: int = 0,
    ttl: int = 64,
    hop_by_hop: bool = False,
) -> bytes:
    """Return one IPv4 or IPv6 packet (no link header) carrying a TCP segment."""
    return _tcp(
        _packed(src),
        _packed(dst),
        sport,
        dport,
        seq=seq,
        ack=ack,
        flags=flags,
        payload=payload,
        window=window,
        options=options,
        ident=ident,
        ttl=ttl,
        hop_by_hop=hop_by_hop,
    )


def _tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes,
    window: int,
    options: bytes,
    ident: int,
    ttl: int,
    hop_by_hop: bool,
    flow: int = 0,
) -> bytes:
    if len(options) % 4:
        raise ValueError("TCP options must be padded to a multiple of 4 bytes")
    header = struct.pack(
        "!HHIIBBHHH",
        sport,
        dport,
        seq & _MASK32,
        ack & _MASK32,
        (20 + len(options)) << 2,  # data offset in 32-bit words, in the high nibble
        flags,
        window,
        0,
        0,
    )
    return _ip_packet(
        src,
        dst,
        6,
        header + options + payload,
        16,
        ident=ident,
        ttl=ttl,
        hop_by_hop=hop_by_hop,
        flow=flow,
    )


def udp_packet(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes,
    *,
    ident: int = 0,
    ttl: int = 64,
    hop_by_hop: bool = False,
) -> bytes:
    """Return one IPv4 or IPv6 packet (no link header) carrying a UDP datagram."""
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return _ip_packet(
        _packed(src),
        _packed(dst),
        17,
        header + payload,
        6,
        ident=ident,
        ttl=ttl,
        hop_by_hop=hop_by_hop,
        zero_means_none=True,
    )


def link_header(
    linktype: int,
    ethertype: int,
    *,
    src_mac: bytes = b"\0" * 6,
    dst_mac: bytes = b"\0" * 6,
    vlans: Sequence[int] = (),
    outgoing: bool = False,
    ifindex: int = 1,
) -> bytes:
    """Return the link-layer bytes that precede a packet of `ethertype` on `linktype`.

    VLAN tags (first tag outermost; with two or more tags the outer one uses the 802.1ad
    type 0x88a8) exist on Ethernet and the Linux cooked headers, where the protocol field
    then names the tag. Cooked headers carry the sender's MAC and mark the packet as
    outgoing (4) or addressed to this host (0).
    """
    if vlans and linktype not in (LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        raise ValueError(f"VLAN tags are not possible on link type {linktype}")
    tags = b""
    inner = ethertype
    for position, vlan in enumerate(reversed(vlans)):
        outermost = position == len(vlans) - 1
        tpid = ETHERTYPE_QINQ if outermost and len(vlans) > 1 else ETHERTYPE_VLAN
        tags = struct.pack("!HH", vlan & 0x0FFF, inner) + tags
        inner = tpid
    # `inner` is now the type of the first thing after the link header proper.
    if linktype == LINKTYPE_ETHERNET:
        return dst_mac + src_mac + struct.pack("!H", inner) + tags
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 4 if outgoing else 0, 1, 6, src_mac, inner) + tags
    if linktype == LINKTYPE_LINUX_SLL2:
        return (
            struct.pack("!HHIHBB8s", inner, 0, ifindex, 1, 4 if outgoing else 0, 6, src_mac) + tags
        )
    if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        raise ValueError(f"link type {linktype} carries only IP")
    if linktype == LINKTYPE_RAW:
        return b""
    family = AF_INET if ethertype == ETHERTYPE_IPV4 else AF_INET6
    if linktype == LINKTYPE_NULL:
        return struct.pack("<I", family)
    if linktype == LINKTYPE_LOOP:
        return struct.pack("!I", family)
    raise ValueError(f"unsupported link type {linktype}")


def link_frame(
    linktype: int,
    packet: bytes,
    *,
    src_mac: bytes = b"\0" * 6,
    dst_mac: bytes = b"\0" * 6,
    vlans: Sequence[int] = (),
    outgoing: bool = False,
    pad: bool = False,
) -> bytes:
    """Wrap an IP `packet` in the link header of `linktype`.

    With `pad`, Ethernet frames shorter than 60 bytes get the zero padding a real wire adds,
    so decoders must trust the IP total length rather than the frame length.
    """
    ethertype = ETHERTYPE_IPV4 if packet[0] >> 4 == 4 else ETHERTYPE_IPV6
    prefix = link_header(
        linktype, ethertype, src_mac=src_mac, dst_mac=dst_mac, vlans=vlans, outgoing=outgoing
    )
    return _pad(prefix + packet) if pad and linktype == LINKTYPE_ETHERNET else prefix + packet


def _pad(frame: bytes) -> bytes:
    return frame + b"\0" * (_ETH_MIN - len(frame)) if len(frame) < _ETH_MIN else frame


def arp_frame(
    op: int,
    sender_mac: bytes,
    sender_ip: str,
    target_ip: str,
    *,
    target_mac: bytes = b"\0" * 6,
    vlans: Sequence[int] = (),
) -> bytes:
    """Return an Ethernet ARP request (op 1, broadcast) or reply (op 2, to `target_mac`)."""
    body = struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        ETHERTYPE_IPV4,
        6,
        4,
        op,
        sender_mac,
        _packed(sender_ip),
        target_mac,
        _packed(target_ip),
    )
    dst = BROADCAST_MAC if op == 1 else target_mac
    header = link_header(
        LINKTYPE_ETHERNET, ETHERTYPE_ARP, src_mac=sender_mac, dst_mac=dst, vlans=vlans
    )
    return _pad(header + body)


def mac_for(address: str) -> bytes:
    """Return a stable locally administered MAC derived from an IP address."""
    return b"\x02\x00" + ipaddress.ip_address(address).packed[-4:]


class Conversation:
    """One TCP connection between a client and a server, producing frames with correct seq/ack.

    The capture point sits next to the client (a SPAN port at the office gateway): a packet
    the server sends in reaction to the client shows up `rtt` seconds after the client's
    packet, the client reacts within `client_turn`, and back-to-back packets from one side
    are `gap` apart; every send's `delay` adds think time on top. Timestamps are rounded to
    the microsecond so they survive a classic pcap unchanged.

    Every data segment is followed by a pure ACK from the peer, except (with ``ack=False``)
    the last one of a send, whose acknowledgement then rides on the peer's next data, as
    :meth:`smtp` does between command and reply. `frames` holds everything in order;
    `segments` records the data-carrying ones; `isn` maps "C" and "S" to the initial sequence
    numbers (drawn from `seed` and the endpoints unless given).

    IPv6 addresses give IPv6 packets, with an 8-byte hop-by-hop header before TCP when
    `hop_by_hop` is set; `vlans` tags every frame (Ethernet and Linux cooked only); `pad`
    zero-pads short Ethernet frames to 60 bytes as the wire does.
    """

    def __init__(
        self,
        client: str,
        client_port: int,
        server: str,
        server_port: int,
        *,
        start: float,
        linktype: int = LINKTYPE_ETHERNET,
        vlans: tuple[int, ...] = (),
        mss: int = 1460,
        rtt: float = 0.02,
        client_turn: float = 0.0002,
        gap: float = 0.00005,
        client_mac: bytes | None = None,
        server_mac: bytes | None = None,
        client_isn: int | None = None,
        server_isn: int | None = None,
        client_ttl: int = 64,
        server_ttl: int = 64,
        hop_by_hop: bool = False,
        pad: bool = False,
        seed: int = 0,
    ) -> None:
        self.client_addr = client
        self.server_addr = server
        self.client_port = client_port
        self.server_port = server_port
        self.linktype = linktype
        self.mss = mss
        self.rtt = rtt
        self.client_turn = client_turn
        self.gap = gap
        self.now = start
        self.frames: list[Frame] = []
        self.segments: list[Segment] = []
        self._pad = pad and linktype == LINKTYPE_ETHERNET
        self._hop_by_hop = hop_by_hop
        # Seeding with the endpoints gives every connection its own ISNs and IP IDs.
        rng = random.Random(f"{seed}/{client}/{client_port}/{server}/{server_port}")
        isn = {
            CLIENT: rng.getrandbits(32) if client_isn is None else client_isn,
            SERVER: rng.getrandbits(32) if server_isn is None else server_isn,
        }
        self.isn = isn
        self._next = dict(isn)  # next sequence number each side sends
        self._streams = {CLIENT: bytearray(), SERVER: bytearray()}
        self._ident = {CLIENT: rng.getrandbits(16), SERVER: rng.getrandbits(16)}
        self._flow = {CLIENT: rng.getrandbits(20), SERVER: rng.getrandbits(20)}
        self._ttl = {CLIENT: client_ttl, SERVER: server_ttl}
        self._window = {CLIENT: 64240, SERVER: 29200}
        self._addr = {CLIENT: _packed(client), SERVER: _packed(server)}
        self._port = {CLIENT: client_port, SERVER: server_port}
        if len(self._addr[CLIENT]) != len(self._addr[SERVER]):
            raise ValueError("client and server must both be IPv4 or both IPv6")
        ethertype = ETHERTYPE_IPV4 if len(self._addr[CLIENT]) == 4 else ETHERTYPE_IPV6
        macs = {
            CLIENT: client_mac if client_mac is not None else mac_for(client),
            SERVER: server_mac if server_mac is not None else mac_for(server),
        }
        self._prefix = {
            side: link_header(
                linktype,
                ethertype,
                src_mac=macs[side],
                dst_mac=macs[_PEER[side]],
                vlans=vlans,
                outgoing=side == CLIENT,
            )
            for side in (CLIENT, SERVER)
        }
        self._last: str | None = None
        self._established = False
        self._closed = False

    def stream(self, by: str) -> bytes:
        """Return the bytes `by` has sent so far, first transmission winning on overlaps."""
        return bytes(self._streams[_side(by)])

    def handshake(self) -> None:
        """Emit SYN, SYN-ACK and ACK."""
        self._syn()
        self._emit(SERVER, SYN | ACK, options=self._syn_options())
        self._next[SERVER] += 1
        self._emit(CLIENT, ACK)
        self._established = True

    def refused(self) -> None:
        """Emit a SYN answered by RST-ACK, as from a closed port or a firewall."""
        self._syn()
        self._emit(SERVER, RST | ACK, seq=0)
        self._closed = True

    def unanswered(self, retries: int = 2, rto: float = 1.0) -> None:
        """Emit a SYN nobody answers, retransmitted `retries` times with doubling timeouts."""
        self._syn()
        for attempt in range(retries):
            self._emit(
                CLIENT,
                SYN,
                seq=self.isn[CLIENT],
                delay=rto * 2**attempt,
                options=self._syn_options(),
            )
        self._closed = True

    def client(
        self, data: bytes, *, delay: float = 0.0, segment: int | None = None, ack: bool = True
    ) -> None:
        """Send `data` from the client in segments of at most `segment` (default MSS) bytes."""
        self.send(CLIENT, data, delay=delay, segment=segment, ack=ack)

    def server(
        self, data: bytes, *, delay: float = 0.0, segment: int | None = None, ack: bool = True
    ) -> None:
        """Send `data` from the server in segments of at most `segment` (default MSS) bytes."""
        self.send(SERVER, data, delay=delay, segment=segment, ack=ack)

    def send(
        self,
        by: str,
        data: bytes,
        *,
        delay: float = 0.0,
        segment: int | None = None,
        ack: bool = True,
    ) -> None:
        """Send `data` from side `by` ("C"/"client" or "S"/"server"), each segment ACKed."""
        side = _side(by)
        self._require_established()
        if not data:
            raise ValueError("nothing to send")
        size = segment or self.mss
        count = math.ceil(len(data) / size)
        for index in range(count):
            last = index == count - 1
            chunk = data[index * size : (index + 1) * size]
            offset = len(self._streams[side])
            self._data(
                side, offset, chunk, PSH | ACK if last else ACK, delay if index == 0 else 0.0
            )
            if ack or not last:
                self._emit(_PEER[side], ACK)

    def inject(
        self, by: str, offset: int, payload: bytes, *, delay: float = 0.0, ack: bool = True
    ) -> Segment:
        """Send `payload` at stream position `offset` of side `by`, whatever was sent there.

        Bytes inside what was already sent overlap it (possibly with different content, to
        test which copy a reassembler keeps); bytes past the end extend the stream.
        """
        side = _side(by)
        self._require_established()
        stream = self._streams[side]
        if not 0 <= offset <= len(stream) or not payload:
            raise ValueError("offset must lie within the stream sent so far")
        segment = self._data(side, offset, payload, PSH | ACK, delay)
        if ack:
            self._emit(_PEER[side], ACK)
        return segment

    def retransmit(
        self,
        by: str,
        start: int,
        end: int | None = None,
        *,
        delay: float = 0.0,
        ack: bool = True,
    ) -> Segment:
        """Resend stream bytes [start:end) of side `by` exactly as sent: a duplicate, or an
        overlap when the range straddles earlier segment boundaries."""
        side = _side(by)
        payload = bytes(self._streams[side][start:end])
        return self.inject(side, start, payload, delay=delay, ack=ack)

    def ack(self, by: str, *, delay: float = 0.0) -> None:
        """Emit a pure ACK from `by`."""
        self._emit(_side(by), ACK, delay=delay)

    def fin(self, by: str, *, delay: float = 0.0) -> None:
        """Emit FIN-ACK from `by`; the FIN takes one sequence number."""
        side = _side(by)
        self._require_established()
        self._emit(side, FIN | ACK, delay=delay)
        self._next[side] += 1

    def close(self, by: str = "client", *, delay: float = 0.0) -> None:
        """Close both ways: FIN from `by`, FIN-ACK from the peer, final ACK from `by`."""
        side = _side(by)
        self.fin(side, delay=delay)
        self.fin(_PEER[side])
        self._emit(side, ACK)
        self._closed = True

    def reset(self, by: str = "server", *, delay: float = 0.0) -> None:
        """Abort the connection with RST-ACK from `by`."""
        self._require_open()
        self._emit(_side(by), RST | ACK, delay=delay)
        self._closed = True

    def smtp(self, script: Iterable[tuple[str, bytes] | tuple[str, bytes, float]]) -> None:
        """Play a dialogue of ("C" | "S", data[, delay]) steps, handshaking first if needed.

        The acknowledgement of each step rides on the peer's next step, as real stacks do
        with delayed ACKs; a step followed by one from the same side (or the last step) is
        ACKed on its own.
        """
        steps = list(script)
        if not self._established:
            self.handshake()
        for index, step in enumerate(steps):
            by, data = step[0], step[1]
            delay = step[2] if len(step) == 3 else 0.0
            following = steps[index + 1][0] if index + 1 < len(steps) else None
            ack = following is None or _side(following) == _side(by)
            self.send(by, data, delay=delay, ack=ack)

    def _syn_options(self) -> bytes:
        return _SYN_OPTIONS.pack(2, 4, self.mss, 1, 1, 4, 2)

    def _syn(self) -> None:
        self._require_open()
        self._emit(CLIENT, SYN, options=self._syn_options())
        self._next[CLIENT] += 1

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("the connection is already closed")

    def _require_established(self) -> None:
        self._require_open()
        if not self._established:
            raise RuntimeError("call handshake() first (drop its frames to start mid-stream)")

    def _data(self, side: str, offset: int, payload: bytes, flags: int, delay: float) -> Segment:
        stream = self._streams[side]
        base = self.isn[side] + 1
        seq = (base + offset) & _MASK32
        end = offset + len(payload)
        if end > len(stream):
            stream += payload[len(stream) - offset :]
            self._next[side] = base + len(stream)
        frame = self._emit(side, flags, seq=seq, payload=payload, delay=delay)
        segment = Segment(frame, side, seq, offset, payload)
        self.segments.append(segment)
        return segment

    def _emit(
        self,
        side: str,
        flags: int,
        *,
        seq: int | None = None,
        payload: bytes = b"",
        options: bytes = b"",
        delay: float = 0.0,
    ) -> Frame:
        if self._last is None:
            pass
        elif side == self._last:
            self.now += self.gap
        elif side == SERVER:
            self.now += self.rtt
        else:
            self.now += self.client_turn
        self.now = round(self.now + delay, 6)
        self._last = side
        peer = _PEER[side]
        # The ACK field acknowledges all the peer sent, whether or not the capture kept it.
        ack = self._next[peer] if flags & ACK else 0
        self._ident[side] += 1
        packet = _tcp(
            self._addr[side],
            self._addr[peer],
            self._port[side],
            self._port[peer],
            seq=self._next[side] if seq is None else seq,
            ack=ack,
            flags=flags,
            payload=payload,
            window=self._window[side],
            options=options,
            ident=self._ident[side],
            ttl=self._ttl[side],
            hop_by_hop=self._hop_by_hop,
            flow=self._flow[side],
        )
        data = self._prefix[side] + packet
        frame = Frame(self.now, _pad(data) if self._pad else data)
        self.frames.append(frame)
        return frame


def _side(by: str) -> str:
    try:
        return _SIDES[by]
    except KeyError:
        raise ValueError(f"side must be 'C', 'S', 'client' or 'server', not {by!r}") from None


def merge(*streams: Iterable[Frame]) -> list[Frame]:
    """Interleave frame lists by timestamp; ties keep argument order, so output is stable."""
    return sorted((frame for stream in streams for frame in stream), key=lambda f: f.ts)


def _position(frames: Sequence[Frame], target: Frame) -> int:
    for index, frame in enumerate(frames):
        if frame is target:
            return index
    raise ValueError("frame not in list")


def _rearrange(frames: Sequence[Frame], moves: dict[int, Frame]) -> list[Frame]:
    """Put moves[i] at position i; a moved frame is copied with the timestamp of its new
    position, so the capture stays in time order as a real out-of-order arrival would."""
    result = list(frames)
    for index, frame in moves.items():
        result[index] = Frame(frames[index].ts, frame.data)
    return result


def swap(frames: Sequence[Frame], first: Frame, second: Frame) -> list[Frame]:
    """Return a copy of `frames` with `first` and `second` exchanged (out-of-order arrival)."""
    a, b = _position(frames, first), _position(frames, second)
    return _rearrange(frames, {a: second, b: first})


def shuffle_segments(
    frames: Sequence[Frame], targets: Iterable[Segment | Frame], seed: int = 0
) -> list[Frame]:
    """Return a copy of `frames` with the `targets` permuted among their own positions."""
    chosen = [target.frame if isinstance(target, Segment) else target for target in targets]
    positions = [_position(frames, frame) for frame in chosen]
    order = list(chosen)
    random.Random(seed).shuffle(order)
    return _rearrange(frames, dict(zip(positions, order, strict=True)))


def drop(frames: Sequence[Frame], *targets: Segment | Frame) -> list[Frame]:
    """Return a copy of `frames` without `targets` (packets the capture lost)."""
    gone = {id(target.frame if isinstance(target, Segment) else target) for target in targets}
    return [frame for frame in frames if id(frame) not in gone]


def duplicate(
    frames: Sequence[Frame], target: Segment | Frame, *, after: Frame | None = None
) -> list[Frame]:
    """Return a copy of `frames` with a second copy of `target` placed after `after`
    (default: right after the original), timed like the frame it follows."""
    original = target.frame if isinstance(target, Segment) else target
    anchor = _position(frames, after if after is not None else original)
    result = list(frames)
    result.insert(anchor + 1, Frame(frames[anchor].ts, original.data))
    return result


PathOrFile = str | os.PathLike[str] | BinaryIO


@contextlib.contextmanager
def _output(target: PathOrFile) -> Iterator[BinaryIO | gzip.GzipFile]:
    """Yield a writable binary file; paths ending in .gz are gzip-compressed reproducibly."""
    if not isinstance(target, str | os.PathLike):
        yield target
        return
    path = os.fspath(target)
    with open(path, "wb") as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                yield packed
        else:
            yield raw


def _ts_units(ts: float, digits: int) -> int:
    """Return `ts` in units of 10**-digits seconds.

    Going through the shortest decimal that reads back as `ts` (its repr) keeps
    1790000000.143456 at exactly ...143456000 ns instead of the binary float's ...143455999,
    which a microsecond reader would truncate to the wrong microsecond.
    """
    return int(Decimal(repr(ts)).scaleb(digits).to_integral_value(ROUND_HALF_EVEN))


def _pcap_chunks(
    frames: Iterable[Frame], linktype: int, nanosecond: bool, big_endian: bool, snaplen: int
) -> Iterator[bytes]:
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    digits = 9 if nanosecond else 6
    yield struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    record = struct.Struct(order + "IIII")
    for frame in frames:
        seconds, fraction = divmod(_ts_units(frame.ts, digits), 10**digits)
        data = frame.data[:snaplen]
        yield record.pack(seconds, fraction, len(data), len(frame.data))
        yield data


def write_pcap(
    path_or_file: PathOrFile,
    frames: Iterable[Frame],
    linktype: int,
    *,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> None:
    """Write a classic pcap file in any of its four magic variants (µs/ns, little/big endian).

    Frames longer than `snaplen` are truncated, keeping their original length in the record.
    """
    with _output(path_or_file) as out:
        for chunk in _pcap_chunks(frames, linktype, nanosecond, big_endian, snaplen):
            out.write(chunk)


def pcap_bytes(
    frames: Iterable[Frame],
    linktype: int,
    *,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """Return what :func:`write_pcap` would write."""
    return b"".join(_pcap_chunks(frames, linktype, nanosecond, big_endian, snaplen))


def _pcapng_option(order: str, code: int, value: bytes) -> bytes:
    padding = b"\0" * (-len(value) % 4)
    return struct.pack(order + "HH", code, len(value)) + value + padding


def _pcapng_block(order: str, block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def _pcapng_chunks(
    frames: Iterable[Frame], linktype: int, tsresol: int, big_endian: bool, snaplen: int
) -> Iterator[bytes]:
    order = ">" if big_endian else "<"
    end_of_options = struct.pack(order + "HH", 0, 0)
    shb_options = _pcapng_option(order, 4, b"smtptop.synth") + end_of_options  # shb_userappl
    yield _pcapng_block(
        order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_options
    )
    idb_options = _pcapng_option(order, 9, bytes([tsresol])) + end_of_options  # if_tsresol
    yield _pcapng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + idb_options)
    for frame in frames:
        units = _ts_units(frame.ts, tsresol)
        data = frame.data[:snaplen] if snaplen else frame.data
        body = struct.pack(
            order + "IIIII", 0, units >> 32, units & _MASK32, len(data), len(frame.data)
        )
        yield _pcapng_block(order, 6, body + data + b"\0" * (-len(data) % 4))


def write_pcapng(
    path_or_file: PathOrFile,
    frames: Iterable[Frame],
    linktype: int,
    *,
    tsresol: int = 9,
    big_endian: bool = False,
    snaplen: int = 0,
) -> None:
    """Write a pcapng file: SHB, one IDB (with if_tsresol 10**-tsresol s) and one EPB a frame.

    The nanosecond default makes readers honour if_tsresol instead of assuming microseconds.
    `snaplen` 0 means unlimited.
    """
    with _output(path_or_file) as out:
        for chunk in _pcapng_chunks(frames, linktype, tsresol, big_endian, snaplen):
            out.write(chunk)


def pcapng_bytes(
    frames: Iterable[Frame],
    linktype: int,
    *,
    tsresol: int = 9,
    big_endian: bool = False,
    snaplen: int = 0,
) -> bytes:
    """Return what :func:`write_pcapng` would write."""
    return b"".join(_pcapng_chunks(frames, linktype, tsresol, big_endian, snaplen))
