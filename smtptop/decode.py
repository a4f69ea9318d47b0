"""Link, IP and TCP header decoding with ``struct``: pure, no dissection library.

:func:`decode` turns one captured frame into a TCP segment tuple, or into the reason it was
skipped; :func:`unwrap` takes a mirrored frame out of its TZSP, ERSPAN, GRE or VXLAN wrapping
(:func:`decapsulate`), so that it is analysed as if captured where it was mirrored.
:func:`decode` runs once per packet, so it builds no objects beyond the result tuple and
the payload slice, and it rejects packets on other ports before slicing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtptop.layout import Layout


LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
DLT_RAW_ALIASES = (12, 14)
RAW_IP_LINKTYPES = frozenset((LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, *DLT_RAW_ALIASES))

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
NULL_IPV4 = (2,)
NULL_IPV6 = (10, 23, 24, 28, 30)
IPV6_EXTENSIONS = (0, 43, 60, 135, 139, 140)
IPV6_FRAGMENT = 44
IPV6_AH = 51
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
VXLAN_PORTS = frozenset((4789, 8472))  # IANA's, and Linux's default (flannel's too)
TZSP_PORT = 37008
GRE_TEB = 0x6558  # transparent Ethernet bridging: Linux gretap
GRE_ERSPAN_II = 0x88BE  # type I too, without the sequence number
GRE_ERSPAN_III = 0x22EB
MAX_NESTING = 2  # encapsulations taken off one frame at most (ERSPAN of VXLAN, say)
LINK_TRUNCATED = -1
LINK_UNSUPPORTED = -2

DEFAULT_PORTS = frozenset({25, 465, 587, 2525})  # SMTP, SMTPS, submission, the common alternate

SKIP_LINKTYPE = "unsupported link type"
SKIP_NON_IP = "not IP"
SKIP_NON_TCP = "not TCP"
SKIP_FRAGMENT = "IP fragment"
SKIP_TRUNCATED = "truncated packet"
SKIP_MALFORMED = "malformed header"
SKIP_OTHER_PORT = "not an SMTP port"
SKIP_MIRROR_CUT = "mirror header cut short"
SKIP_NESTED = "mirrored more than twice"

_U16: Layout[tuple[int]] = Struct("!H")
_U32: Layout[tuple[int]] = Struct("<I")
_U32BE: Layout[tuple[int]] = Struct("!I")
_IPV4: Layout[tuple[int, int, int, int, int, int, int, int, bytes, bytes]] = Struct("!BBHHHBBH4s4s")
_IPV6: Layout[tuple[int, int, int, int, bytes, bytes]] = Struct("!IHBB16s16s")
_TCP: Layout[tuple[int, int, int, int, int, int]] = Struct("!HHIIBB")
# Ethernet + option-less IPv4 + TCP in one unpack: ethertype, version/IHL, total length,
# fragment field, protocol, source and destination port, seq, ack, data offset, flags.
_ETHER_IPV4_TCP: Layout[tuple[int, int, int, int, int, int, int, int, int, int, int]] = Struct(
    "!12xHBxH2xHxB10xHHIIBB"
)
_ETHER_IPV4_TCP_LEN = 14 + 20 + 20

# (wire key, seq, ack, TCP flags, payload).  The wire key is the source address, the
# destination address, then the source and destination ports, as raw bytes in wire order:
# one slice that names a connection and its direction, cheap to hash.
Segment = tuple[bytes, int, int, int, bytes]
Unwrapped = tuple[int, bytes, Segment | str]  # link type, frame, and its segment or skip reason


@dataclass(frozen=True, slots=True)
class MirrorPorts:
    """The UDP ports that carry mirrored frames, by wrapping: the standard ones, and any a
    sender was told to use instead (``--mirror-port``).  A port says how to read the
    payload: a wrapping is never guessed from the bytes."""

    vxlan: frozenset[int] = VXLAN_PORTS
    tzsp: frozenset[int] = frozenset((TZSP_PORT,))

    def udp(self) -> frozenset[int]:
        return self.vxlan | self.tzsp


STANDARD_MIRRORS = MirrorPorts()

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10


def decode(linktype: int, frame: bytes, ports: frozenset[int] | set[int]) -> Segment | str:
    """Decode a frame to a TCP segment on one of ``ports``; otherwise return a skip reason.

    Ethernet + IPv4 without options is nearly all traffic: it is read with one unpack.
    """
    if linktype == LINKTYPE_ETHERNET and len(frame) >= _ETHER_IPV4_TCP_LEN:
        ethertype, vihl, total, frag, proto, sport, dport, seq, ack, doff, flags = (
            _ETHER_IPV4_TCP.unpack_from(frame)
        )
        if ethertype == ETH_IPV4 and vihl == 0x45 and proto == PROTO_TCP and not frag & 0x3FFF:
            end = 14 + total
            if total < 20:
                return SKIP_MALFORMED
            if total < 40 or end > len(frame):
                return SKIP_TRUNCATED
            if sport not in ports and dport not in ports:
                return SKIP_OTHER_PORT
            hlen = (doff >> 4) * 4
            if hlen < 20 or 34 + hlen > end:
                return SKIP_MALFORMED
            return frame[26:38], seq, ack, flags, frame[34 + hlen : end]
    offset, ethertype = link(linktype, frame)
    if ethertype == ETH_IPV4:
        return _ipv4(frame, offset, ports)
    if ethertype == ETH_IPV6:
        return _ipv6(frame, offset, ports)
    if ethertype == LINK_UNSUPPORTED:
        return SKIP_LINKTYPE
    return SKIP_TRUNCATED if ethertype == LINK_TRUNCATED else SKIP_NON_IP


def link(linktype: int, frame: bytes) -> tuple[int, int]:
    """The network-layer offset of a frame and its ethertype, past any VLAN tags.

    The ethertype is ``LINK_TRUNCATED`` or ``LINK_UNSUPPORTED`` when it cannot be read; a
    loopback header's non-IP family gives 0.  Shared with :mod:`smtptop.identity`.
    """
    if linktype == LINKTYPE_ETHERNET:
        return _ether(frame, 12)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ether(frame, 14)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return 0, LINK_TRUNCATED
        return _ether_at(frame, 20, _U16.unpack_from(frame, 0)[0])
    if linktype in RAW_IP_LINKTYPES:
        if not frame:
            return 0, LINK_TRUNCATED
        return 0, ETH_IPV6 if frame[0] >> 4 == 6 else ETH_IPV4
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return 0, LINK_TRUNCATED
        family = (_U32BE if linktype == LINKTYPE_LOOP else _U32).unpack_from(frame, 0)[0]
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = _U32BE.unpack_from(frame, 0)[0]  # written on a big-endian machine
        if family in NULL_IPV4:
            return 4, ETH_IPV4
        if family in NULL_IPV6:
            return 4, ETH_IPV6
        return 0, 0
    return 0, LINK_UNSUPPORTED


def _ether(frame: bytes, type_offset: int) -> tuple[int, int]:
    if len(frame) < type_offset + 2:
        return 0, LINK_TRUNCATED
    return _ether_at(frame, type_offset + 2, _U16.unpack_from(frame, type_offset)[0])


def _ether_at(frame: bytes, offset: int, ethertype: int) -> tuple[int, int]:
    """Skip any stack of 802.1Q / 802.1ad tags; return the payload offset and its type."""
    while ethertype in VLAN_TYPES:
        if len(frame) < offset + 4:
            return 0, LINK_TRUNCATED
        ethertype = _U16.unpack_from(frame, offset + 2)[0]
        offset += 4
    return offset, ethertype


def _ipv4(frame: bytes, offset: int, ports: frozenset[int] | set[int]) -> Segment | str:
    if len(frame) < offset + 20:
        return SKIP_TRUNCATED
    vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(frame, offset)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or total < ihl:
        return SKIP_MALFORMED
    if frag & 0x3FFF:
        return SKIP_FRAGMENT
    if proto != PROTO_TCP:
        return SKIP_NON_TCP
    end = offset + total
    if end > len(frame):
        return SKIP_TRUNCATED
    return _tcp(frame, offset + ihl, end, src, dst, ports)


def _ipv6(frame: bytes, offset: int, ports: frozenset[int] | set[int]) -> Segment | str:
    if len(frame) < offset + 40:
        return SKIP_TRUNCATED
    vtf, plen, nxt, _hops, src, dst = _IPV6.unpack_from(frame, offset)
    if vtf >> 28 != 6:
        return SKIP_MALFORMED
    end = offset + 40 + plen
    if end > len(frame):
        return SKIP_TRUNCATED
    pos = offset + 40
    while nxt != PROTO_TCP:
        if pos + 8 > end:
            return SKIP_TRUNCATED if nxt in IPV6_EXTENSIONS else SKIP_NON_TCP
        if nxt in IPV6_EXTENSIONS:
            nxt, hlen = frame[pos], (frame[pos + 1] + 1) * 8
        elif nxt == IPV6_AH:
            nxt, hlen = frame[pos], (frame[pos + 1] + 2) * 4
        elif nxt == IPV6_FRAGMENT:
            return SKIP_FRAGMENT
        else:
            return SKIP_NON_TCP
        pos += hlen
    return _tcp(frame, pos, end, src, dst, ports)


def _tcp(
    frame: bytes, pos: int, end: int, src: bytes, dst: bytes, ports: frozenset[int] | set[int]
) -> Segment | str:
    if pos + 20 > end:
        return SKIP_TRUNCATED
    sport, dport, seq, ack, doff, flags = _TCP.unpack_from(frame, pos)
    if sport not in ports and dport not in ports:
        return SKIP_OTHER_PORT
    hlen = (doff >> 4) * 4
    if hlen < 20 or pos + hlen > end:
        return SKIP_MALFORMED
    return src + dst + frame[pos : pos + 4], seq, ack, flags, frame[pos + hlen : end]


def unwrap(
    linktype: int,
    frame: bytes,
    ports: frozenset[int],
    reason: str,
    mirrors: MirrorPorts = STANDARD_MIRRORS,
) -> Unwrapped:
    """A frame :func:`decode` skipped for ``reason``: the frame a mirror carries in it (each
    wrapping taken off in turn, :data:`MAX_NESTING` at most), with its link type and its
    segment; or, for a frame no mirror carries in it, the frame and the reason it is skipped
    (the mirror's trouble, if that is why)."""
    for depth in range(MAX_NESTING + 1):
        inner = decapsulate(linktype, frame, mirrors) if reason == SKIP_NON_TCP else None
        if inner is None:
            break
        if isinstance(inner, str) or depth == MAX_NESTING:
            reason = inner if isinstance(inner, str) else SKIP_NESTED
            break
        linktype, frame = inner
        seg = decode(linktype, frame, ports)
        if isinstance(seg, tuple):
            return linktype, frame, seg
        reason = seg
    return linktype, frame, reason


def decapsulate(
    linktype: int, frame: bytes, mirrors: MirrorPorts = STANDARD_MIRRORS
) -> tuple[int, bytes] | str | None:
    """The frame a mirror carries (TZSP, ERSPAN I to III, GRE with Ethernet or IP, VXLAN; on
    UDP, to the ports ``mirrors`` names), as a link type and bytes, to be analysed as if
    captured here; a skip reason for a mirror header that is cut short or carries something
    else (the kind named, never guessed); None for a frame that is no mirror's."""
    payload = _ip_payload(linktype, frame)
    if payload is None:
        return None
    proto, start, end = payload
    if proto == PROTO_GRE:
        return _gre(frame, start, end)
    if proto == PROTO_UDP and start + 8 <= end:
        dport = _U16.unpack_from(frame, start + 2)[0]
        if dport in mirrors.vxlan:
            return _vxlan(frame, start + 8, end)
        if dport in mirrors.tzsp:
            return _tzsp(frame, start + 8, end)
    return None


def _ip_payload(linktype: int, frame: bytes) -> tuple[int, int, int] | None:
    """The protocol of an unfragmented IPv4 or IPv6 packet and where its payload starts and
    ends in ``frame``; None for anything else."""
    offset, ethertype = link(linktype, frame)
    if ethertype == ETH_IPV4:
        if len(frame) < offset + 20:
            return None
        vihl, _tos, total, _ident, frag, _ttl, proto, _csum, _src, _dst = _IPV4.unpack_from(
            frame, offset
        )
        start, end = offset + (vihl & 0x0F) * 4, min(offset + total, len(frame))
        if vihl >> 4 != 4 or frag & 0x3FFF or start > end:
            return None
        return proto, start, end
    if ethertype == ETH_IPV6:
        if len(frame) < offset + 40:
            return None
        _vtf, plen, proto, _hops, _src, _dst = _IPV6.unpack_from(frame, offset)
        return proto, offset + 40, min(offset + 40 + plen, len(frame))
    return None


def named_mirror(linktype: int, frame: bytes, ports: frozenset[int]) -> tuple[str, int] | None:
    """For UDP to a port no mirror is known on: the wrapping ("tzsp" or "vxlan") and the
    port under which it would carry an SMTP segment on ``ports``, else None.  The decoder
    checks the frame inside, so the hint to name the port (``--mirror-port``) is never a
    guess from a few bytes."""
    payload = _ip_payload(linktype, frame)
    if payload is None:
        return None
    proto, start, end = payload
    if proto != PROTO_UDP or start + 8 > end:
        return None
    port = _U16.unpack_from(frame, start + 2)[0]
    if port in STANDARD_MIRRORS.vxlan or port in STANDARD_MIRRORS.tzsp:
        return None
    single: frozenset[int] = frozenset((port,))
    none: frozenset[int] = frozenset()
    for kind, mirrors in (
        ("tzsp", MirrorPorts(vxlan=none, tzsp=single)),
        ("vxlan", MirrorPorts(vxlan=single, tzsp=none)),
    ):
        if isinstance(unwrap(linktype, frame, ports, SKIP_NON_TCP, mirrors)[2], tuple):
            return kind, port
    return None


def _gre(frame: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    if pos + 4 > end:
        return SKIP_MIRROR_CUT
    flags, protocol = _U16.unpack_from(frame, pos)[0], _U16.unpack_from(frame, pos + 2)[0]
    if flags & 0x7:
        return f"mirror: GRE version {flags & 0x7}"
    if flags & 0x4000:
        return "mirror: GRE with source routing"
    sequenced = bool(flags & 0x1000)  # checksum, key and sequence number: 4 bytes each
    pos += 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + sequenced)
    if protocol == GRE_TEB:
        return _inner(LINKTYPE_ETHERNET, frame, pos, end)
    if protocol in (ETH_IPV4, ETH_IPV6):
        return _inner(LINKTYPE_RAW, frame, pos, end)
    if protocol == GRE_ERSPAN_II:
        return _inner(LINKTYPE_ETHERNET, frame, pos + 8 if sequenced else pos, end)  # I: none
    if protocol == GRE_ERSPAN_III:
        if pos + 12 > end:
            return SKIP_MIRROR_CUT
        kind = frame[pos + 10] >> 2 & 0x1F
        if kind:
            return f"mirror: ERSPAN frame type {kind}"
        return _inner(LINKTYPE_ETHERNET, frame, pos + (20 if frame[pos + 11] & 1 else 12), end)
    return f"mirror: GRE protocol {protocol:#06x}"


def _vxlan(frame: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    if pos + 8 > end:
        return SKIP_MIRROR_CUT
    return _inner(LINKTYPE_ETHERNET, frame, pos + 8, end)


def _tzsp(frame: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    """TZSP (MikroTik's packet sniffer streaming): version 1, a type, the encapsulated
    protocol (1: Ethernet), tagged fields up to the end tag, then the frame."""
    if pos + 4 > end:
        return SKIP_MIRROR_CUT
    if frame[pos] != 1:
        return f"mirror: TZSP version {frame[pos]}"
    protocol = _U16.unpack_from(frame, pos + 2)[0]
    pos += 4
    while True:
        if pos >= end:
            return SKIP_MIRROR_CUT
        tag = frame[pos]
        if tag == 1:  # the end of the tags
            pos += 1
            break
        if tag == 0:  # padding
            pos += 1
            continue
        if pos + 2 > end:
            return SKIP_MIRROR_CUT
        pos += 2 + frame[pos + 1]
    if protocol != 1:
        return f"mirror: TZSP encapsulation {protocol}"
    return _inner(LINKTYPE_ETHERNET, frame, pos, end)


def _inner(linktype: int, frame: bytes, pos: int, end: int) -> tuple[int, bytes] | str:
    return (linktype, frame[pos:end]) if pos < end else SKIP_MIRROR_CUT
