"""Who is that host: names and MACs from the broadcast chatter a SPAN port already carries.

An IP address alone does not tell the admin which PC to unplug.  Hosts announce themselves
all the time (DHCP, NetBIOS, mDNS, LLMNR, ARP) and the resolver names them in PTR answers, so
:func:`observe` reads those frames, which the SMTP decoder skips, and returns
:class:`Sighting` events.  It also returns every DNS question and answer code as a
:class:`DnsLookup`, because a spambot gives itself away by asking for many MX records.

Pure and defensive like :mod:`smtptop.decode`: ``struct`` parsing only, every offset checked
against the frame, compression pointers that may only jump backwards, at most
``MAX_RECORDS`` records a packet, and all wire text made inert by :func:`wire_text`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from struct import Struct
from typing import TYPE_CHECKING

from smtptop.decode import (
    ETH_IPV4,
    ETH_IPV6,
    IPV6_AH,
    IPV6_EXTENSIONS,
    link,
)
from smtptop.text import wire_text

if TYPE_CHECKING:
    from smtptop.layout import Layout

ETH_ARP = 0x0806
PROTO_UDP = 17

PORT_DNS = 53
PORTS_DHCP = (67, 68)
PORT_NBNS = 137
PORT_MDNS = 5353
PORT_LLMNR = 5355
PORTS = frozenset({PORT_DNS, *PORTS_DHCP, PORT_NBNS, PORT_MDNS, PORT_LLMNR})

TYPE_A = 1
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
TYPE_NB = 0x20
CLASS_IN = 1

MAX_RECORDS = 32  # questions and resource records read from one message
MAX_JUMPS = 16  # compression pointers followed within one name
MAX_NAME = 255  # octets of a name in wire form (RFC 1035)

_U16: Layout[tuple[int]] = Struct("!H")
# The IP headers without the addresses, which are copied only for a datagram on a port read
_IPV4: Layout[tuple[int, int, int, int, int, int, int, int]] = Struct("!BBHHHBBH")
_IPV6: Layout[tuple[int, int, int, int]] = Struct("!IHBB")
_UDP: Layout[tuple[int, int, int]] = Struct("!HHH")
_ARP: Layout[tuple[int, int, int, int, int, bytes, bytes]] = Struct("!HHBBH6s4s")
_DNS: Layout[tuple[int, int, int, int, int, int]] = Struct("!HHHHHH")
_RR: Layout[tuple[int, int, int, int]] = Struct("!HHIH")
_QUESTION: Layout[tuple[int, int]] = Struct("!HH")
_BOOTP: Layout[tuple[int, int, int, bytes, bytes, bytes]] = Struct("!BBB5x4x4s4s4x4x16s")

_DHCP_COOKIE = b"\x63\x82\x53\x63"
_DHCP_OPTIONS = 240  # BOOTP header (236) + cookie
_DHCP_CLIENT_TYPES = (1, 3, 8)  # DISCOVER, REQUEST, INFORM; DECLINE names someone else's IP
_DHCP_ACK = 5
_FQDN_E = 0x04  # option 81 flag: the name is in DNS wire format, not ASCII

_NBNS_REGISTRATIONS = (5, 8, 9, 15)  # registration, refresh (both codes), multi-homed
_NBNS_GROUP = 0x8000
_NBNS_HOST_SUFFIXES = (0x00, 0x20)  # workstation, file server; <03> may be the user's name
_NBNS_LETTERS = bytes(range(ord("A"), ord("P") + 1))
_HEX = b"0123456789abcdefABCDEF"
_ADDRESS_SIZE = {TYPE_A: 4, TYPE_AAAA: 16}

Record = tuple[list[bytes], int, int, int, bytes]  # owner labels, type, class, offset, data


@dataclass(frozen=True, slots=True)
class Sighting:
    """Evidence that an address has a name and/or a MAC."""

    ts: float
    ip: str | None  # IPv4/IPv6 text form
    mac: str | None  # "aa:bb:cc:dd:ee:ff"
    name: str | None  # as announced, made inert
    source: str  # "dhcp", "dhcp-fqdn", "nbns", "mdns", "llmnr", "dns-ptr" or "arp"


@dataclass(frozen=True, slots=True)
class DnsLookup:
    """A DNS question (rcode None) or the answer code for it, to spot bursts of MX lookups."""

    ts: float
    client: str  # the querying host's IP
    qname: str  # lower-cased: resolvers may randomise the case of queries (DNS 0x20)
    qtype: int  # 15 = MX, 1 = A, 12 = PTR ...
    rcode: int | None  # None for a query; the response code for a response (3 = NXDOMAIN)


Event = Sighting | DnsLookup


def observe(linktype: int, frame: bytes, ts: float) -> list[Event]:
    """Never raises on any input; returns [] for frames it does not understand."""
    offset, ethertype = link(linktype, frame)
    if ethertype == ETH_ARP:
        return _arp(frame, offset, ts)
    datagram = _udp(frame, offset, ethertype)
    if datagram is None:
        return []
    sport, dport, start, end = datagram
    if sport not in PORTS and dport not in PORTS:
        return []  # QUIC and the like: decided before anything is copied
    size = 4 if ethertype == ETH_IPV4 else 16
    at = offset + (12 if size == 4 else 8)  # the source address; the destination follows
    src, dst, payload = frame[at : at + size], frame[at + size : at + 2 * size], frame[start:end]
    ports = (sport, dport)
    if PORTS_DHCP[0] in ports or PORTS_DHCP[1] in ports:
        return _dhcp(payload, ts) if len(src) == 4 else []
    if PORT_NBNS in ports:
        return _nbns(payload, ts)
    if PORT_MDNS in ports:
        return _announcements(payload, ts, "mdns")
    if PORT_LLMNR in ports:
        return _announcements(payload, ts, "llmnr")
    if PORT_DNS in ports:
        return _dns(payload, ts, src, dst)
    return []


def _udp(frame: bytes, offset: int, ethertype: int) -> tuple[int, int, int, int] | None:
    """Return the ports of an unfragmented UDP datagram and where its payload starts and
    ends: nothing is copied, as most datagrams are on no port read here.

    A payload cut short by the snap length ends where the capture does: the parsers below
    check every offset anyway and read what is there.
    """
    if ethertype == ETH_IPV4:
        if len(frame) < offset + 20:
            return None
        vihl, _tos, total, _ident, frag, _ttl, proto, _csum = _IPV4.unpack_from(frame, offset)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or frag & 0x3FFF or proto != PROTO_UDP:
            return None
        pos, end = offset + ihl, offset + total
    elif ethertype == ETH_IPV6:
        if len(frame) < offset + 40:
            return None
        vtf, plen, nxt, _hops = _IPV6.unpack_from(frame, offset)
        if vtf >> 28 != 6:
            return None
        pos, end = offset + 40, offset + 40 + plen
        while nxt != PROTO_UDP:
            if pos + 8 > min(end, len(frame)):
                return None
            if nxt in IPV6_EXTENSIONS:
                nxt, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
            elif nxt == IPV6_AH:
                nxt, pos = frame[pos], pos + (frame[pos + 1] + 2) * 4
            else:
                return None  # a fragment, or another protocol
    else:
        return None
    end = min(end, len(frame))
    if pos + 8 > end:
        return None
    sport, dport, length = _UDP.unpack_from(frame, pos)
    if length < 8:
        return None
    return sport, dport, pos + 8, min(pos + length, end)


def _ip(packed: bytes) -> str:
    """Text form of a packed address; IPv4 by hand, as ``ipaddress`` is six times slower."""
    return ".".join(map(str, packed)) if len(packed) == 4 else str(ipaddress.IPv6Address(packed))


def _mac(packed: bytes) -> str:
    return packed.hex(":")


def _arp(frame: bytes, offset: int, ts: float) -> list[Event]:
    """The sender of any Ethernet/IPv4 request or reply; probes (sender 0.0.0.0) say nothing."""
    if len(frame) < offset + _ARP.size:
        return []
    htype, ptype, hlen, plen, op, sha, spa = _ARP.unpack_from(frame, offset)
    if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4) or op not in (1, 2):
        return []
    if spa == b"\0\0\0\0" or sha[0] & 0x01 or not any(sha):
        return []
    return [Sighting(ts, _ip(spa), _mac(sha), None, "arp")]


def _dhcp(payload: bytes, ts: float) -> list[Event]:
    """Client host names (options 12 and 81) with the client's MAC and address.

    A client's DISCOVER, REQUEST or INFORM names the address it asks for (option 50) or
    holds (ciaddr); the server's ACK binds yiaddr (ciaddr when answering an INFORM) to the
    client's chaddr, and may echo the name.  A name-less ACK still ties the IP to the MAC.
    """
    if len(payload) < _DHCP_OPTIONS or payload[236:240] != _DHCP_COOKIE:
        return []
    op, htype, hlen, ciaddr, yiaddr, chaddr = _BOOTP.unpack_from(payload, 0)
    options = _dhcp_options(payload)
    kind = next(iter(options.get(53, b"")), 0)
    if not ((op == 1 and kind in _DHCP_CLIENT_TYPES) or (op == 2 and kind == _DHCP_ACK)):
        return []
    requested = options.get(50, b"")
    if op == 1 and len(requested) == 4 and any(requested):
        address = requested
    else:
        address = next((a for a in (ciaddr, yiaddr) if any(a)), b"")
    ip = _ip(address) if address else None
    mac = _mac(chaddr[:6]) if htype == 1 and hlen == 6 else None
    events: list[Event] = []
    hostname = options.get(12, b"")[:MAX_NAME].rstrip(b"\0").rstrip(b".")
    if hostname:
        events.append(Sighting(ts, ip, mac, wire_text(hostname), "dhcp"))
    fqdn = _client_fqdn(options.get(81, b""))
    if fqdn:
        events.append(Sighting(ts, ip, mac, fqdn, "dhcp-fqdn"))
    if not events and ip is not None:
        events.append(Sighting(ts, ip, mac, None, "dhcp"))
    return events


def _dhcp_options(payload: bytes) -> dict[int, bytes]:
    """Options by code; repeated ones are concatenated (RFC 3396).  Truncation ends the list."""
    options: dict[int, bytes] = {}
    pos = _DHCP_OPTIONS
    while pos < len(payload):
        code = payload[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        if pos + 2 > len(payload) or pos + 2 + payload[pos + 1] > len(payload):
            break
        value = payload[pos + 2 : pos + 2 + payload[pos + 1]]
        options[code] = options.get(code, b"") + value
        pos += 2 + len(value)
    return options


def _client_fqdn(value: bytes) -> str | None:
    """Option 81: flags, two obsolete rcodes, then the name, in wire format if E is set."""
    if len(value) < 4:
        return None
    data = value[3 : 3 + MAX_NAME]
    if not value[0] & _FQDN_E:
        data = data.rstrip(b"\0").rstrip(b".")
        return wire_text(data) if data else None
    labels: list[bytes] = []
    pos = 0
    while pos < len(data) and 0 < data[pos] < 64:
        end = pos + 1 + data[pos]
        if end > len(data):
            break
        labels.append(data[pos + 1 : end])
        pos = end
    return _text(labels) if labels else None


def _nbns(payload: bytes, ts: float) -> list[Event]:
    """Names registered, refreshed or confirmed by a positive query response.

    Only unique workstation/server names (suffix <00> or <20>) count: group names are
    workgroups and domains, and other suffixes may carry a user name.
    """
    message = _message(payload)
    if message is None:
        return []
    flags, _questions, records = message
    response, opcode, rcode = flags >> 15, flags >> 11 & 0x0F, flags & 0x0F
    if response:
        if opcode != 0 or rcode != 0:
            return []
    elif opcode not in _NBNS_REGISTRATIONS:
        return []
    events: list[Event] = []
    for labels, rtype, rclass, _offset, data in records:
        name = _netbios_name(labels)
        if rtype != TYPE_NB or rclass != CLASS_IN or name is None:
            continue
        for entry in range(0, min(len(data), 6 * MAX_RECORDS) - 5, 6):
            nb_flags = _U16.unpack_from(data, entry)[0]
            address = data[entry + 2 : entry + 6]
            if not nb_flags & _NBNS_GROUP and any(address):
                events.append(Sighting(ts, _ip(address), None, name, "nbns"))
    return events[:MAX_RECORDS]


def _netbios_name(labels: list[bytes]) -> str | None:
    """Decode a first-level encoded name (RFC 1001 14.1) of a host; None for anything else."""
    if not labels or len(labels[0]) != 32 or labels[0].translate(None, _NBNS_LETTERS):
        return None
    halves = [letter - 0x41 for letter in labels[0]]
    raw = bytes(high << 4 | low for high, low in zip(halves[::2], halves[1::2], strict=True))
    if raw[15] not in _NBNS_HOST_SUFFIXES:
        return None
    name = raw[:15].rstrip(b" \0")
    return wire_text(name) if name else None


def _announcements(payload: bytes, ts: float, source: str) -> list[Event]:
    """mDNS/LLMNR responses: each A/AAAA record names its owner's address."""
    message = _message(payload)
    if message is None or not message[0] & 0x8000:
        return []
    events: list[Event] = []
    for labels, rtype, rclass, _offset, data in message[2]:
        # mDNS sets the top bit of the class to mean "cache flush"
        if _ADDRESS_SIZE.get(rtype) == len(data) and rclass & 0x7FFF == CLASS_IN and labels:
            events.append(Sighting(ts, _ip(data), None, _text(labels), source))
    return events


def _dns(payload: bytes, ts: float, src: bytes, dst: bytes) -> list[Event]:
    """Each question as a lookup by its client; PTR answers name the address they reverse."""
    message = _message(payload)
    if message is None:
        return []
    flags, questions, records = message
    if flags >> 11 & 0x0F:
        return []  # not a standard query: NOTIFY, UPDATE...
    response = bool(flags & 0x8000)
    client = _ip(dst if response else src)
    rcode = flags & 0x0F if response else None
    events: list[Event] = [
        DnsLookup(ts, client, _text([label.lower() for label in labels]), qtype, rcode)
        for labels, qtype in questions
    ]
    if rcode != 0:
        return events
    for labels, rtype, rclass, offset, _data in records:
        address = _reverse(labels) if rtype == TYPE_PTR and rclass == CLASS_IN else None
        target = _name(payload, offset) if address else None
        if target and target[0]:
            events.append(Sighting(ts, address, None, _text(target[0]), "dns-ptr"))
    return events


def address_of_reverse_name(name: str) -> str | None:
    """The address a ``d.c.b.a.in-addr.arpa`` (or ``ip6.arpa``) name, written out, stands for."""
    return _reverse(name.rstrip(".").encode("ascii", "replace").split(b"."))


def _reverse(labels: list[bytes]) -> str | None:
    """The address a ``d.c.b.a.in-addr.arpa`` or nibble ``ip6.arpa`` name stands for."""
    suffix = [label.lower() for label in labels[-2:]]
    if len(labels) == 6 and suffix == [b"in-addr", b"arpa"]:
        try:
            return str(ipaddress.IPv4Address(b".".join(reversed(labels[:4])).decode("ascii")))
        except ValueError:
            return None  # not four decimal octets (ipaddress also refuses leading zeros)
    if len(labels) == 34 and suffix == [b"ip6", b"arpa"]:
        nibbles = b"".join(reversed(labels[:32]))
        if len(nibbles) != 32 or nibbles.translate(None, _HEX):
            return None
        return str(ipaddress.IPv6Address(int(nibbles, 16)))
    return None


def _message(payload: bytes) -> tuple[int, list[tuple[list[bytes], int]], list[Record]] | None:
    """Header flags, questions and resource records (all sections) of a DNS-format message.

    Reads at most ``MAX_RECORDS`` entries in all; a malformed entry ends the reading but
    keeps what came before it.
    """
    if len(payload) < _DNS.size:
        return None
    _ident, flags, qdcount, ancount, nscount, arcount = _DNS.unpack_from(payload, 0)
    budget = MAX_RECORDS
    questions: list[tuple[list[bytes], int]] = []
    records: list[Record] = []
    pos = _DNS.size
    for _ in range(min(qdcount, budget)):
        name = _name(payload, pos)
        if name is None or name[1] + 4 > len(payload):
            return flags, questions, records
        qtype, _qclass = _QUESTION.unpack_from(payload, name[1])
        questions.append((name[0], qtype))
        pos = name[1] + 4
    budget -= len(questions)
    for _ in range(min(ancount + nscount + arcount, budget)):
        name = _name(payload, pos)
        if name is None or name[1] + _RR.size > len(payload):
            break
        rtype, rclass, _ttl, rdlength = _RR.unpack_from(payload, name[1])
        pos = name[1] + _RR.size
        if pos + rdlength > len(payload):
            break
        records.append((name[0], rtype, rclass, pos, payload[pos : pos + rdlength]))
        pos += rdlength
    return flags, questions, records


def _name(message: bytes, pos: int) -> tuple[list[bytes], int] | None:
    """Read a possibly compressed name; return its labels and the offset just past it.

    Every pointer must land before the start of the labels it ends, so positions strictly
    decrease and no loop is possible; ``MAX_JUMPS`` and ``MAX_NAME`` bound the work further.
    """
    labels: list[bytes] = []
    size = 1
    jumps = 0
    start = pos
    after = -1
    while pos < len(message):
        length = message[pos]
        if length == 0:
            return labels, pos + 1 if after < 0 else after
        if length >= 0xC0:
            if pos + 1 >= len(message) or jumps == MAX_JUMPS:
                return None
            target = (length & 0x3F) << 8 | message[pos + 1]
            if target >= start:
                return None
            if after < 0:
                after = pos + 2
            jumps += 1
            pos = start = target
            continue
        size += length + 1
        if length > 63 or size > MAX_NAME or pos + 1 + length > len(message):
            return None  # 0x40 and 0x80 label types are obsolete
        labels.append(message[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return None


def _text(labels: list[bytes]) -> str:
    """Labels as inert presentation text; a dot inside a label is escaped as ``\\.``."""
    return ".".join(wire_text(label.replace(b".", b"\\.")) for label in labels) or "."
