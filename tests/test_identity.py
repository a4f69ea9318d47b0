"""Host identity from ARP, DHCP, NBNS, mDNS, LLMNR and DNS frames, and MAC vendor names.

Packets are packed by hand (with :mod:`tests/synth.py` for the IP/UDP and link layers), so every
field is known; scapy dissects the same bytes as an independent check of the hand packing and
of :func:`observe`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import synth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtptop import identity
from smtptop.identity import MAX_RECORDS, DnsLookup, Sighting, observe
from smtptop.text import inert
from smtptop.vendor import LOCALLY_ADMINISTERED, vendor

ROOT = Path(__file__).resolve().parent.parent
TS = 1_790_000_000.0
ETH = synth.LINKTYPE_ETHERNET
PC = "192.168.0.108"
PC_MAC = bytes.fromhex("001422010203")  # Dell Inc. in the manuf registry
ROUTER = "192.168.0.1"
ROUTER_MAC = bytes.fromhex("00000c0a0b0c")  # Cisco
LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276)


# --- packing helpers -------------------------------------------------------------------------


def ip(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def eth(packet: bytes, *, vlans: tuple[int, ...] = (), src_mac: bytes = PC_MAC) -> bytes:
    return synth.link_frame(ETH, packet, src_mac=src_mac, vlans=vlans)


def udp(
    src: str, dst: str, sport: int, dport: int, payload: bytes, *, src_mac: bytes = PC_MAC
) -> bytes:
    return eth(synth.udp_packet(src, dst, sport, dport, payload), src_mac=src_mac)


def name(text: str) -> bytes:
    """A DNS name in wire form, uncompressed."""
    labels = [label.encode() for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def question(qname: bytes, qtype: int, qclass: int = 1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype: int, rdata: bytes, rclass: int = 1, ttl: int = 120) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def message(
    flags: int,
    questions: Sequence[bytes] = (),
    answers: Sequence[bytes] = (),
    authority: Sequence[bytes] = (),
    additional: Sequence[bytes] = (),
    ident: int = 0x1234,
) -> bytes:
    counts = (len(questions), len(answers), len(authority), len(additional))
    sections = b"".join([*questions, *answers, *authority, *additional])
    return struct.pack("!HHHHHH", ident, flags, *counts) + sections


def netbios(host: bytes, suffix: int) -> bytes:
    """A first-level encoded NetBIOS name (RFC 1001 14.1), as a one-label DNS name."""
    raw = host.ljust(15, b" ") + bytes([suffix])
    encoded = bytes(letter for byte in raw for letter in (0x41 + (byte >> 4), 0x41 + (byte & 15)))
    return b"\x20" + encoded + b"\0"


def option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def bootp(
    op: int,
    options: bytes,
    *,
    ciaddr: str = "0.0.0.0",
    yiaddr: str = "0.0.0.0",
    chaddr: bytes = PC_MAC,
    cookie: bytes = b"\x63\x82\x53\x63",
) -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        6,
        0,
        0x3903F326,
        0,
        0x8000,
        ip(ciaddr),
        ip(yiaddr),
        bytes(4),
        bytes(4),
        chaddr,
        b"",
        b"",
    )
    return header + cookie + options + b"\xff"


# --- the frames of a small office ------------------------------------------------------------

FQDN = b"\x00\x00\x00WXPANNA.studio.lan"  # option 81: flags (no E: ASCII), rcode1, rcode2
WINDOWS_REQUEST = bootp(
    1,
    option(53, b"\x03")
    + option(61, b"\x01" + PC_MAC)
    + option(50, ip(PC))
    + option(54, ip(ROUTER))
    + option(12, b"WXPANNA")
    + option(81, FQDN)
    + option(60, b"MSFT 5.0")
    + option(55, bytes([1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252])),
)
DHCP_ACK = bootp(
    2,
    option(53, b"\x05")
    + option(54, ip(ROUTER))
    + option(51, struct.pack("!I", 86400))
    + option(1, ip("255.255.255.0"))
    + option(3, ip(ROUTER))
    + option(12, b"wxpanna"),
    yiaddr=PC,
)
NBNS_REGISTRATION = message(
    0x2910,  # opcode 5 (registration), recursion desired, broadcast
    [question(netbios(b"WXPANNA", 0x00), 0x20)],
    additional=[rr(b"\xc0\x0c", 0x20, struct.pack("!H", 0x0000) + ip(PC), ttl=300_000)],
    ident=0x8001,
)
MDNS_RESPONSE = message(
    0x8400,
    answers=[rr(name("macbook.local"), 1, ip("192.168.0.50"), rclass=0x8001)],
    additional=[rr(b"\xc0\x0c", 28, ip("fe80::1c2b:3aff:fe4d:5e6f"), rclass=0x8001)],
    ident=0,
)
LLMNR_RESPONSE = message(
    0x8000, [question(name("wxpanna"), 1)], [rr(b"\xc0\x0c", 1, ip(PC), ttl=30)], ident=0x4242
)
MX_QUERY = message(0x0100, [question(name("example.com"), 15)])
MX_NXDOMAIN = message(
    0x8183,
    [question(name("example.com"), 15)],
    authority=[rr(b"\xc0\x0c", 6, b"\x01a\xc0\x0c\x01b\xc0\x0c" + bytes(20))],
)
PTR_RESPONSE = message(
    0x8180,
    [question(name("108.0.168.192.in-addr.arpa"), 12)],
    [rr(b"\xc0\x0c", 12, name("wxpanna.studio.lan"))],
)


def frames() -> dict[str, bytes]:
    """One valid frame of each kind: the corpus for the mutation fuzzing below."""
    return {
        "dhcp-request": udp("0.0.0.0", "255.255.255.255", 68, 67, WINDOWS_REQUEST),
        "dhcp-ack": udp(ROUTER, PC, 67, 68, DHCP_ACK, src_mac=ROUTER_MAC),
        "nbns": udp(PC, "192.168.0.255", 137, 137, NBNS_REGISTRATION),
        "mdns": udp("192.168.0.50", "224.0.0.251", 5353, 5353, MDNS_RESPONSE),
        "llmnr": udp(PC, "192.168.0.20", 5355, 50000, LLMNR_RESPONSE),
        "mx-query": udp(PC, ROUTER, 53000, 53, MX_QUERY),
        "mx-nxdomain": udp(ROUTER, PC, 53, 53000, MX_NXDOMAIN),
        "ptr": udp(ROUTER, "192.168.0.20", 53, 53001, PTR_RESPONSE),
        "arp": synth.arp_frame(1, PC_MAC, PC, ROUTER),
    }


def assert_inert(events: list[Sighting | DnsLookup]) -> None:
    for event in events:
        for field in dataclasses.fields(event):
            value = getattr(event, field.name)
            if isinstance(value, str):
                assert "\x1b" not in value
                assert inert(value) == value, value


# --- DHCP ------------------------------------------------------------------------------------


def test_windows_dhcp_request_names_the_requested_address() -> None:
    events = observe(ETH, frames()["dhcp-request"], TS)
    mac = "00:14:22:01:02:03"
    assert events == [
        Sighting(TS, PC, mac, "WXPANNA", "dhcp"),
        Sighting(TS, PC, mac, "WXPANNA.studio.lan", "dhcp-fqdn"),
    ]


def test_dhcp_ack_binds_yiaddr_to_the_client_mac() -> None:
    events = observe(ETH, frames()["dhcp-ack"], TS)
    assert events == [Sighting(TS, PC, "00:14:22:01:02:03", "wxpanna", "dhcp")]


def test_dhcp_ack_without_a_name_still_ties_address_and_mac() -> None:
    ack = bootp(2, option(53, b"\x05") + option(54, ip(ROUTER)), yiaddr=PC)
    events = observe(ETH, udp(ROUTER, PC, 67, 68, ack), TS)
    assert events == [Sighting(TS, PC, "00:14:22:01:02:03", None, "dhcp")]


def test_dhcp_inform_ack_uses_ciaddr() -> None:
    ack = bootp(2, option(53, b"\x05"), ciaddr=PC)
    assert observe(ETH, udp(ROUTER, PC, 67, 68, ack), TS)[0].ip == PC  # type: ignore[union-attr]


def test_dhcp_renewal_uses_ciaddr() -> None:
    renew = bootp(1, option(53, b"\x03") + option(12, b"WXPANNA"), ciaddr=PC)
    assert observe(ETH, udp(PC, ROUTER, 68, 67, renew), TS) == [
        Sighting(TS, PC, "00:14:22:01:02:03", "WXPANNA", "dhcp")
    ]


def test_dhcp_discover_without_an_address_still_names_the_mac() -> None:
    discover = bootp(1, option(53, b"\x01") + option(12, b"WXPANNA"))
    events = observe(ETH, udp("0.0.0.0", "255.255.255.255", 68, 67, discover), TS)
    assert events == [Sighting(TS, None, "00:14:22:01:02:03", "WXPANNA", "dhcp")]


def test_dhcp_fqdn_in_wire_format() -> None:
    fqdn = b"\x05\x00\x00" + name("wxpanna.studio.lan")  # flags S|E
    request = bootp(1, option(53, b"\x03") + option(50, ip(PC)) + option(81, fqdn))
    events = observe(ETH, udp("0.0.0.0", "255.255.255.255", 68, 67, request), TS)
    assert events == [Sighting(TS, PC, "00:14:22:01:02:03", "wxpanna.studio.lan", "dhcp-fqdn")]


def test_dhcp_partial_wire_fqdn_and_split_option() -> None:
    """A partial name (no root label, last label cut short) and a host name split over two
    option 12 instances, with pad options between."""
    fqdn = b"\x04\x00\x00\x07wxpanna\x09studi"
    options = option(53, b"\x03") + option(12, b"WXP") + b"\0\0" + option(81, fqdn)
    options += option(12, b"ANNA\0")
    events = observe(ETH, udp(PC, ROUTER, 68, 67, bootp(1, options, ciaddr=PC)), TS)
    assert [(e.name, e.source) for e in events] == [  # type: ignore[union-attr]
        ("WXPANNA", "dhcp"),
        ("wxpanna", "dhcp-fqdn"),
    ]


@pytest.mark.parametrize(
    ("op", "kind"),
    [(2, 2), (2, 6), (1, 4), (1, 7), (1, 5)],
    ids=["offer", "nak", "decline", "release", "ack-from-a-client"],
)
def test_dhcp_messages_that_bind_nothing(op: int, kind: int) -> None:
    payload = bootp(
        op, option(53, bytes([kind])) + option(50, ip(PC)) + option(12, b"X"), yiaddr=PC
    )
    assert observe(ETH, udp(ROUTER, PC, 67, 68, payload), TS) == []


def test_bootp_without_the_magic_cookie_is_ignored() -> None:
    payload = bootp(1, option(53, b"\x03") + option(12, b"WXPANNA"), cookie=b"\0\0\0\0")
    assert observe(ETH, udp("0.0.0.0", "255.255.255.255", 68, 67, payload), TS) == []


def test_dhcp_over_ipv6_ports_is_ignored() -> None:
    frame = udp("fe80::1", "ff02::1:2", 68, 67, WINDOWS_REQUEST)
    assert observe(ETH, frame, TS) == []


# --- NBNS ------------------------------------------------------------------------------------


def test_nbns_registration_of_a_workstation_name() -> None:
    assert observe(ETH, frames()["nbns"], TS) == [Sighting(TS, PC, None, "WXPANNA", "nbns")]


@pytest.mark.parametrize("flags", [0x4010, 0x4810, 0x7910], ids=["refresh", "refresh-9", "mh"])
def test_nbns_refresh(flags: int) -> None:
    payload = NBNS_REGISTRATION[:2] + struct.pack("!H", flags) + NBNS_REGISTRATION[4:]
    assert observe(ETH, udp(PC, "192.168.0.255", 137, 137, payload), TS) == [
        Sighting(TS, PC, None, "WXPANNA", "nbns")
    ]


def test_nbns_positive_query_response() -> None:
    answer = rr(netbios(b"FILESRV", 0x20), 0x20, b"\x00\x00" + ip("192.168.0.5"), ttl=300_000)
    payload = message(0x8500, answers=[answer])
    events = observe(ETH, udp("192.168.0.5", PC, 137, 137, payload), TS)
    assert events == [Sighting(TS, "192.168.0.5", None, "FILESRV", "nbns")]


def test_nbns_ignores_groups_queries_negative_answers_and_other_suffixes() -> None:
    def registration(host: bytes, suffix: int, nb_flags: int) -> bytes:
        record = rr(b"\xc0\x0c", 0x20, struct.pack("!H", nb_flags) + ip(PC))
        return message(0x2910, [question(netbios(host, suffix), 0x20)], additional=[record])

    group = registration(b"WORKGROUP", 0x00, 0x8000)
    messenger = registration(b"ANNA", 0x03, 0x0000)  # the logged-on user, not the PC
    query = message(0x0110, [question(netbios(b"WXPANNA", 0x00), 0x20)])
    negative = message(0x8503, answers=[rr(netbios(b"WXPANNA", 0), 0x20, bytes(2) + ip(PC))])
    for payload in (group, messenger, query, negative):
        assert observe(ETH, udp(PC, "192.168.0.255", 137, 137, payload), TS) == []


def test_nbns_hostile_name_is_inert_and_entries_are_capped() -> None:
    entries = b"".join(b"\x00\x00" + ip(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(500))
    records = [rr(b"\xc0\x0c", 0x20, entries)] * 3
    payload = message(0x2910, [question(netbios(b"\x1b[2J\x07", 0), 0x20)], additional=records)
    events = observe(ETH, udp(PC, "192.168.0.255", 137, 137, payload), TS)
    assert len(events) == MAX_RECORDS
    assert events[0].name == "\\x1b[2J\\x07"  # type: ignore[union-attr]
    assert_inert(events)


# --- mDNS and LLMNR --------------------------------------------------------------------------


def test_mdns_response_names_both_addresses() -> None:
    assert observe(ETH, frames()["mdns"], TS) == [
        Sighting(TS, "192.168.0.50", None, "macbook.local", "mdns"),
        Sighting(TS, "fe80::1c2b:3aff:fe4d:5e6f", None, "macbook.local", "mdns"),
    ]


def test_mdns_over_ipv6_and_queries_ignored() -> None:
    frame = udp("fe80::1c2b:3aff:fe4d:5e6f", "ff02::fb", 5353, 5353, MDNS_RESPONSE)
    assert [e.ip for e in observe(ETH, frame, TS)] == [  # type: ignore[union-attr]
        "192.168.0.50",
        "fe80::1c2b:3aff:fe4d:5e6f",
    ]
    query = message(0x0000, [question(name("macbook.local"), 1)], ident=0)
    assert observe(ETH, udp(PC, "224.0.0.251", 5353, 5353, query), TS) == []


def test_llmnr_response() -> None:
    assert observe(ETH, frames()["llmnr"], TS) == [Sighting(TS, PC, None, "wxpanna", "llmnr")]


def test_llmnr_over_ipv6() -> None:
    payload = message(0x8000, [question(name("wxpanna"), 28)], [rr(b"\xc0\x0c", 28, ip("fe80::6"))])
    frame = udp("fe80::6", "fe80::20", 5355, 50000, payload)
    assert observe(ETH, frame, TS) == [Sighting(TS, "fe80::6", None, "wxpanna", "llmnr")]


def test_record_count_is_capped() -> None:
    answers = [rr(name(f"h{i}.local"), 1, ip(f"10.0.0.{i}")) for i in range(1, 101)]
    payload = message(0x8400, answers=answers, ident=0)
    events = observe(ETH, udp("10.0.0.1", "224.0.0.251", 5353, 5353, payload), TS)
    assert len(events) == MAX_RECORDS
    assert events[-1] == Sighting(TS, "10.0.0.32", None, "h32.local", "mdns")


# --- DNS -------------------------------------------------------------------------------------


def test_mx_query_and_its_nxdomain_response() -> None:
    assert observe(ETH, frames()["mx-query"], TS) == [DnsLookup(TS, PC, "example.com", 15, None)]
    assert observe(ETH, frames()["mx-nxdomain"], TS) == [DnsLookup(TS, PC, "example.com", 15, 3)]


def test_dns_query_names_are_lower_cased() -> None:
    payload = message(0x0100, [question(name("ExAmPlE.CoM"), 15)])
    lookup = observe(ETH, udp(PC, ROUTER, 53000, 53, payload), TS)[0]
    assert lookup == DnsLookup(TS, PC, "example.com", 15, None)


def test_dns_over_ipv6() -> None:
    query = udp("2001:db8::108", "2001:db8::1", 53000, 53, MX_QUERY)
    reply = udp("2001:db8::1", "2001:db8::108", 53, 53000, MX_NXDOMAIN)
    assert observe(ETH, query, TS) == [DnsLookup(TS, "2001:db8::108", "example.com", 15, None)]
    assert observe(ETH, reply, TS) == [DnsLookup(TS, "2001:db8::108", "example.com", 15, 3)]


def test_dns_update_is_not_a_lookup() -> None:
    update = message(0x2800, [question(name("studio.lan"), 6)])
    assert observe(ETH, udp(PC, ROUTER, 53000, 53, update), TS) == []


def test_ptr_answer_names_the_address() -> None:
    assert observe(ETH, frames()["ptr"], TS) == [
        DnsLookup(TS, "192.168.0.20", "108.0.168.192.in-addr.arpa", 12, 0),
        Sighting(TS, PC, None, "wxpanna.studio.lan", "dns-ptr"),
    ]


def test_ip6_arpa_ptr_answer() -> None:
    address = ipaddress.IPv6Address("2001:db8::108")
    owner = name(address.reverse_pointer)
    payload = message(0x8180, [question(owner, 12)], [rr(b"\xc0\x0c", 12, name("pc6.studio.lan"))])
    events = observe(ETH, udp(ROUTER, PC, 53, 53001, payload), TS)
    assert events[1:] == [Sighting(TS, "2001:db8::108", None, "pc6.studio.lan", "dns-ptr")]


@pytest.mark.parametrize(
    "owner",
    [
        "1.0.168.192.in-addr.arpa.example",
        "0/25.0.168.192.in-addr.arpa",
        "256.0.168.192.in-addr.arpa",
        "08.0.168.192.in-addr.arpa",
        "0.168.192.in-addr.arpa",
        "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    ],
)
def test_ptr_answers_for_other_names_are_not_sightings(owner: str) -> None:
    payload = message(0x8180, answers=[rr(name(owner), 12, name("x.lan"))])
    assert observe(ETH, udp(ROUTER, PC, 53, 53001, payload), TS) == []


def test_ptr_in_a_failed_response_is_ignored() -> None:
    payload = PTR_RESPONSE[:2] + b"\x81\x82" + PTR_RESPONSE[4:]  # SERVFAIL
    events = observe(ETH, udp(ROUTER, PC, 53, 53001, payload), TS)
    assert events == [DnsLookup(TS, PC, "108.0.168.192.in-addr.arpa", 12, 2)]


# --- ARP -------------------------------------------------------------------------------------


def test_arp_request_and_reply() -> None:
    request = synth.arp_frame(1, PC_MAC, PC, ROUTER)
    reply = synth.arp_frame(2, ROUTER_MAC, ROUTER, PC, target_mac=PC_MAC)
    assert observe(ETH, request, TS) == [Sighting(TS, PC, "00:14:22:01:02:03", None, "arp")]
    assert observe(ETH, reply, TS) == [Sighting(TS, ROUTER, "00:00:0c:0a:0b:0c", None, "arp")]


def test_arp_probe_is_skipped() -> None:
    assert observe(ETH, synth.arp_frame(1, PC_MAC, "0.0.0.0", PC), TS) == []


def test_arp_behind_vlan_tags_and_cooked_headers() -> None:
    expected = [Sighting(TS, PC, "00:14:22:01:02:03", None, "arp")]
    assert observe(ETH, synth.arp_frame(1, PC_MAC, PC, ROUTER, vlans=(100, 20)), TS) == expected
    body = synth.arp_frame(1, PC_MAC, PC, ROUTER)[14:]
    for linktype in (synth.LINKTYPE_LINUX_SLL, synth.LINKTYPE_LINUX_SLL2):
        for vlans in ((), (7,)):
            header = synth.link_header(linktype, 0x0806, src_mac=PC_MAC, vlans=vlans)
            assert observe(linktype, header + body, TS) == expected


# --- link layers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("linktype", "vlans"),
    [
        *[(1, ()), (1, (10,)), (1, (10, 20, 30))],
        *[(113, ()), (113, (5,)), (276, ()), (276, (5, 6))],
        *[(0, ()), (101, ()), (108, ())],
    ],
)
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_every_link_type(linktype: int, vlans: tuple[int, ...], family: str) -> None:
    client, server = (PC, ROUTER) if family == "ipv4" else ("2001:db8::108", "2001:db8::1")
    packet = synth.udp_packet(client, server, 53000, 53, MX_QUERY, hop_by_hop=family == "ipv6")
    frame = synth.link_frame(linktype, packet, vlans=vlans)
    assert observe(linktype, frame, TS) == [DnsLookup(TS, client, "example.com", 15, None)]


@pytest.mark.parametrize(
    ("linktype", "client"), [(12, PC), (14, PC), (228, PC), (229, "2001:db8::108")]
)
def test_raw_ip_aliases(linktype: int, client: str) -> None:
    server = ROUTER if ":" not in client else "2001:db8::1"
    packet = synth.udp_packet(client, server, 53000, 53, MX_QUERY)
    assert observe(linktype, packet, TS) == [DnsLookup(TS, client, "example.com", 15, None)]


def test_big_endian_null_header() -> None:
    frame = struct.pack("!I", 2) + synth.udp_packet(PC, ROUTER, 53000, 53, MX_QUERY)
    assert observe(0, frame, TS) == [DnsLookup(TS, PC, "example.com", 15, None)]


def test_padding_beyond_the_ip_length_is_not_read() -> None:
    packet = synth.udp_packet(PC, ROUTER, 53000, 53, MX_QUERY)
    frame = synth.link_frame(ETH, packet) + question(name("evil.example"), 15)
    assert len(observe(ETH, frame, TS)) == 1


def with_ipv6_extension(packet: bytes, proto: int, header: bytes) -> bytes:
    """Insert an extension header (whose next-header byte is patched in) after the IPv6 one."""
    length = struct.unpack_from("!H", packet, 4)[0] + len(header)
    fixed = packet[:4] + struct.pack("!HB", length, proto) + packet[7:40]
    return fixed + bytes([packet[6]]) + header[1:] + packet[40:]


def test_ipv6_authentication_header_is_skipped_and_fragments_are_not_read() -> None:
    packet = synth.udp_packet("2001:db8::108", "2001:db8::1", 53000, 53, MX_QUERY)
    ah = with_ipv6_extension(packet, 51, bytes([0, 4]) + bytes(22))  # (4 + 2) * 4 octets
    assert observe(ETH, eth(ah), TS) == [DnsLookup(TS, "2001:db8::108", "example.com", 15, None)]
    fragment = with_ipv6_extension(packet, 44, bytes(8))
    assert observe(ETH, eth(fragment), TS) == []


def test_frames_that_are_not_for_us() -> None:
    tcp = synth.tcp_packet(PC, ROUTER, 53000, 53, seq=1, payload=MX_QUERY)
    fragment = bytearray(synth.udp_packet(PC, ROUTER, 53000, 53, MX_QUERY))
    fragment[6] |= 0x20  # more fragments
    other_port = synth.udp_packet(PC, ROUTER, 53000, 54, MX_QUERY)
    for packet in (tcp, bytes(fragment), other_port):
        assert observe(ETH, eth(packet), TS) == []
    assert observe(ETH, synth.arp_frame(1, PC_MAC, PC, ROUTER), TS)
    assert observe(9999, synth.arp_frame(1, PC_MAC, PC, ROUTER), TS) == []


# --- hostile input ---------------------------------------------------------------------------


def test_name_reader_bounds() -> None:
    header = bytes(12)
    assert identity._name(header + b"\xc0\x0c", 12) is None  # points at itself
    assert identity._name(header + b"\x01a\xc0\x0e" + b"\x01b\xc0\x0c", 16) is None  # a loop
    assert identity._name(header + b"\xc0\x20", 12) is None  # forwards, past the end
    assert identity._name(header + b"\xc0", 12) is None  # pointer cut short
    assert identity._name(header + b"\x05ab", 12) is None  # label cut short
    assert identity._name(header + b"\x01a", 12) is None  # no root label
    assert identity._name(header + b"\x41" + bytes(70), 12) is None  # 0x40 label type
    long_name = b"".join(b"\x3f" + bytes([97 + i]) * 63 for i in range(4)) + b"\0"
    assert identity._name(header + long_name, 12) is None  # 256 octets
    assert identity._name(header + long_name[64:], 12) is not None


def test_name_reader_follows_a_bounded_chain_of_pointers() -> None:
    def chain(hops: int) -> tuple[bytes, int]:
        data = bytearray(bytes(12) + b"\x01a\x00")
        previous = 12
        for _ in range(hops):
            here = len(data)
            data += b"\x01b" + struct.pack("!H", 0xC000 | previous)
            previous = here
        return bytes(data), previous

    data, start = chain(identity.MAX_JUMPS)
    assert identity._name(data, start) == ([b"b"] * identity.MAX_JUMPS + [b"a"], len(data))
    data, start = chain(identity.MAX_JUMPS + 1)
    assert identity._name(data, start) is None


@pytest.mark.parametrize(
    "qname",
    [b"\xc0\x0c", b"\xc0\xff", b"\x03abc\xc0\x0c", b"\x3fabc", b"\x07example\xc0\x11\x00"],
    ids=["self", "past-end", "loop", "truncated", "forward"],
)
def test_hostile_compression_in_a_dns_query(qname: bytes) -> None:
    payload = message(0x0100, [question(qname, 15)])
    assert observe(ETH, udp(PC, ROUTER, 53000, 53, payload), TS) == []


def test_records_after_a_bad_one_are_not_read() -> None:
    payload = message(
        0x8400,
        answers=[rr(name("ok.local"), 1, ip("10.0.0.1")), b"\xc0\xff" + bytes(10)],
        ident=0,
    )
    events = observe(ETH, udp("10.0.0.1", "224.0.0.251", 5353, 5353, payload), TS)
    assert events == [Sighting(TS, "10.0.0.1", None, "ok.local", "mdns")]


def test_control_characters_come_out_inert() -> None:
    evil = b"\x1b]0;owned\x07\x1b[2J"
    owner = bytes([len(evil)]) + evil + b"\x08evil.com\x05local\x00"
    mdns = message(0x8400, answers=[rr(owner, 1, ip("10.0.0.9"))], ident=0)
    events = observe(ETH, udp("10.0.0.9", "224.0.0.251", 5353, 5353, mdns), TS)
    assert events[0].name == "\\x1b]0;owned\\x07\\x1b[2J.evil\\.com.local"  # type: ignore[union-attr]
    dhcp = bootp(1, option(53, b"\x03") + option(12, evil) + option(81, b"\0\0\0" + evil))
    ptr = message(0x8180, answers=[rr(name("9.0.0.10.in-addr.arpa"), 12, owner)])
    query = message(0x0100, [question(owner, 15)])
    for frame in (
        udp("0.0.0.0", "255.255.255.255", 68, 67, dhcp),
        udp(ROUTER, PC, 53, 53000, ptr),
        udp(PC, ROUTER, 53000, 53, query),
    ):
        events = observe(ETH, frame, TS)
        assert events
        assert_inert(events)


def test_every_truncation_of_every_frame() -> None:
    for frame in frames().values():
        for end in range(len(frame)):
            assert_inert(observe(ETH, frame[:end], TS))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(linktype=st.sampled_from(LINKTYPES), frame=st.binary(max_size=400))
def test_random_frames_never_raise(linktype: int, frame: bytes) -> None:
    assert_inert(observe(linktype, frame, TS))


@settings(max_examples=600)
@given(
    port=st.sampled_from([53, 67, 68, 137, 5353, 5355]),
    payload=st.binary(max_size=600),
    dhcp=st.booleans(),
)
def test_random_payloads_reach_every_parser(port: int, payload: bytes, dhcp: bool) -> None:
    """Random UDP payloads, optionally behind a valid BOOTP header, on every port we read."""
    if dhcp:
        payload = WINDOWS_REQUEST[:240] + payload
    for src, dst in ((PC, ROUTER), ("2001:db8::108", "2001:db8::1")):
        assert_inert(observe(ETH, udp(src, dst, port, port, payload), TS))


@settings(max_examples=600)
@given(data=st.data())
def test_mutated_frames_never_raise(data: st.DataObject) -> None:
    frame = bytearray(data.draw(st.sampled_from(sorted(frames().values()))))
    for _ in range(data.draw(st.integers(1, 8))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    assert_inert(observe(ETH, bytes(frame[:cut]), TS))


# --- cross-check with scapy ------------------------------------------------------------------


def test_scapy_reads_the_dhcp_frames_the_same_way() -> None:
    l2 = pytest.importorskip("scapy.layers.l2")
    dhcp = pytest.importorskip("scapy.layers.dhcp")
    for key in ("dhcp-request", "dhcp-ack"):
        frame = frames()[key]
        packet = l2.Ether(frame)
        options = dict(o for o in packet[dhcp.DHCP].options if isinstance(o, tuple))
        sightings = observe(ETH, frame, TS)
        mac = packet[dhcp.BOOTP].chaddr[:6].hex(":")
        address = options.get("requested_addr") or packet[dhcp.BOOTP].yiaddr
        assert {(s.ip, s.mac) for s in sightings} == {(address, mac)}  # type: ignore[union-attr]
        assert sightings[0].name == options["hostname"].decode()  # type: ignore[union-attr]
    request = l2.Ether(frames()["dhcp-request"])[dhcp.DHCP].options
    assert ("client_FQDN", FQDN) in request


def test_scapy_reads_the_dns_frames_the_same_way() -> None:
    l2 = pytest.importorskip("scapy.layers.l2")
    dns = pytest.importorskip("scapy.layers.dns")
    for key in ("mx-query", "mx-nxdomain", "ptr", "mdns", "llmnr"):
        frame = frames()[key]
        decoded = l2.Ether(frame)
        header = decoded[dns.DNS] if dns.DNS in decoded else dns.DNS(decoded.load)
        events = observe(ETH, frame, TS)
        lookups = [e for e in events if isinstance(e, DnsLookup)]
        if key in ("mx-query", "mx-nxdomain", "ptr"):
            assert [(e.qname, e.qtype) for e in lookups] == [
                (q.qname.decode().rstrip("."), q.qtype) for q in header.qd
            ]
            assert {e.rcode for e in lookups} == {header.rcode if header.qr else None}
        records = [*header.an, *header.ar]
        sightings = [e for e in events if isinstance(e, Sighting)]
        if key == "ptr":
            assert [s.name for s in sightings] == [r.rdata.decode().rstrip(".") for r in records]
        elif key in ("mdns", "llmnr"):
            assert [(s.ip, s.name) for s in sightings] == [
                (r.rdata, r.rrname.decode().rstrip(".")) for r in records
            ]


def test_scapy_reads_the_nbns_registration_the_same_way() -> None:
    l2 = pytest.importorskip("scapy.layers.l2")
    netbios = pytest.importorskip("scapy.layers.netbios")
    packet = l2.Ether(frames()["nbns"])
    registration = packet[netbios.NBNSRegistrationRequest]
    assert registration.QUESTION_NAME.rstrip() == b"WXPANNA"
    assert registration.SUFFIX == 0x4141  # <00>
    assert observe(ETH, frames()["nbns"], TS)[0].ip == registration.NB_ADDRESS  # type: ignore[union-attr]


def test_scapy_built_frames_are_read() -> None:
    """The other way round: frames packed by scapy, including its name compression."""
    l2 = pytest.importorskip("scapy.layers.l2")
    inet = pytest.importorskip("scapy.layers.inet")
    dns = pytest.importorskip("scapy.layers.dns")
    answer = dns.DNSRR(rrname="108.0.168.192.in-addr.arpa", type="PTR", rdata="wxpanna.studio.lan")
    reply = dns.DNS(
        id=7, qr=1, rd=1, ra=1, qd=dns.DNSQR(qname="108.0.168.192.in-addr.arpa", qtype="PTR")
    )
    reply.an = answer
    frame = bytes(
        l2.Ether(src=ROUTER_MAC.hex(":"))
        / l2.Dot1Q(vlan=10)
        / inet.IP(src=ROUTER, dst=PC)
        / inet.UDP(sport=53, dport=53001)
        / dns.DNS(bytes(reply)).compress()
    )
    assert observe(ETH, frame, TS) == [
        DnsLookup(TS, PC, "108.0.168.192.in-addr.arpa", 12, 0),
        Sighting(TS, PC, None, "wxpanna.studio.lan", "dns-ptr"),
    ]


# --- vendor ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mac", "expected"),
    [
        ("00:00:0c:12:34:56", "Cisco Systems, Inc"),  # manuf: 00:00:0C Cisco
        ("00:14:22:01:02:03", "Dell Inc."),  # 00:14:22 Dell
        ("F0-18-98-AA-BB-CC", "Apple, Inc."),  # F0:18:98 Apple, any separator and case
        ("00:50:56:01:02:03", "VMware, Inc."),  # 00:50:56 VMware
        ("00:1b:c5:00:00:05", "Converging Systems Inc."),  # 00:1B:C5:00:00/36 (MA-S)
        ("00:1b:c5:00:1a:15", "OpenRB.com, Direct SIA"),  # 00:1B:C5:00:10/36
        ("00:55:da:5f:00:01", "Nanoleaf"),  # 00:55:DA:50/28 (MA-M)
    ],
)
def test_vendor_of_registered_ouis(mac: str, expected: str) -> None:
    assert vendor(mac) == expected


def test_vendor_of_locally_administered_and_unknown_addresses() -> None:
    assert vendor(synth.mac_for(PC).hex(":")) == LOCALLY_ADMINISTERED  # 02:00:...
    assert vendor("da:a1:19:00:00:01") == LOCALLY_ADMINISTERED  # a phone's random MAC
    assert vendor("02:07:01:00:00:01") == LOCALLY_ADMINISTERED  # even with a historic entry
    assert vendor("0c:ff:ff:00:00:01") == ""  # not in the registry
    for bad in ("", "zz:zz:zz:zz:zz:zz", "00:14:22", "+0:14:22:01:02:03", "00:14:22:01:02:03:04"):
        assert vendor(bad) == ""


def test_vendor_loads_only_the_registry() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from smtptop.vendor import preload; "
        "assert 'scapy' not in sys.modules; preload(); "
        "print(sorted(m for m in sys.modules if m.startswith('scapy')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['scapy', 'scapy.libs', 'scapy.libs.manuf']"
