"""Check the synthetic capture builder against independent parsing, scapy and tcpdump."""

import gzip
import io
import ipaddress
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import synth
from hypothesis import given
from hypothesis import strategies as st
from synth import (
    ACK,
    FIN,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PSH,
    RST,
    SYN,
    Conversation,
    Frame,
)

LINKTYPES = [
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_NULL,
    LINKTYPE_LOOP,
]
VLAN_CAPABLE = {LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2}
START = 1_793_610_000.25
TCPDUMP = shutil.which("tcpdump")


def naive_checksum(data: bytes) -> int:
    """RFC 1071 word by word, to check the big-integer shortcut."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass
class Packet:
    """What the tests' own minimal decoder extracts from a frame."""

    vlans: list[int]
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes
    ip_checksum_ok: bool
    tcp_checksum_ok: bool


def strip_link(linktype: int, data: bytes) -> tuple[list[int], bytes]:
    """Return the VLAN ids and the IP packet inside a frame."""
    vlans: list[int] = []
    if linktype == LINKTYPE_RAW:
        return vlans, data
    if linktype == LINKTYPE_NULL:
        assert struct.unpack("<I", data[:4])[0] in (2, 24)
        return vlans, data[4:]
    if linktype == LINKTYPE_LOOP:
        assert struct.unpack("!I", data[:4])[0] in (2, 24)
        return vlans, data[4:]
    if linktype == LINKTYPE_ETHERNET:
        offset = 12
    elif linktype == LINKTYPE_LINUX_SLL:
        packet_type, hatype, halen = struct.unpack("!HHH", data[:6])
        assert (packet_type in (0, 4), hatype, halen) == (True, 1, 6)
        offset = 14
    else:
        _, _, _, hatype, packet_type, halen = struct.unpack_from("!HHIHBB", data)
        assert (hatype, packet_type in (0, 4), halen) == (1, True, 6)
        offset = 0
    (ethertype,) = struct.unpack_from("!H", data, offset)
    offset = 20 if linktype == LINKTYPE_LINUX_SLL2 else offset + 2
    while ethertype in (0x8100, 0x88A8):
        tci, ethertype = struct.unpack_from("!HH", data, offset)
        vlans.append(tci & 0x0FFF)
        offset += 4
    assert ethertype in (0x0800, 0x86DD)
    return vlans, data[offset:]


def decode(linktype: int, data: bytes) -> Packet:
    vlans, ip = strip_link(linktype, data)
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        (total,) = struct.unpack_from("!H", ip, 2)
        ip_ok = naive_checksum(ip[:ihl]) == 0
        assert ip[9] == 6
        src, dst = ip[12:16], ip[16:20]
        tcp = ip[ihl:total]
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    else:
        assert version == 6
        (length,) = struct.unpack_from("!H", ip, 4)
        next_header, offset = ip[6], 40
        while next_header == 0:  # hop-by-hop options
            next_header, offset = ip[offset], offset + (ip[offset + 1] + 1) * 8
        assert next_header == 6
        ip_ok = True  # IPv6 has no header checksum
        src, dst = ip[8:24], ip[24:40]
        tcp = ip[offset : 40 + length]
        pseudo = src + dst + struct.pack("!I3xB", len(tcp), 6)
    sport, dport, seq, ack, offset_byte, flags = struct.unpack_from("!HHIIBB", tcp)
    return Packet(
        vlans=vlans,
        src=str(ipaddress.ip_address(src)),
        dst=str(ipaddress.ip_address(dst)),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        payload=tcp[(offset_byte >> 4) * 4 :],
        ip_checksum_ok=ip_ok,
        tcp_checksum_ok=naive_checksum(pseudo + tcp) == 0,
    )


def session(
    addresses: tuple[str, str] = ("192.168.0.10", "198.51.100.25"), **options: Any
) -> tuple[Conversation, bytes, bytes]:
    """Play a short SMTP session with a multi-segment DATA; return what each side sent."""
    conv = Conversation(addresses[0], 50123, addresses[1], 25, start=START, **options)
    body = b"Subject: test\r\n\r\n" + b"".join(b"line %05d of the body\r\n" % i for i in range(250))
    script = [
        ("S", b"220 mx.example ESMTP\r\n"),
        ("C", b"EHLO pc.studio.lan\r\n"),
        ("S", b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        ("C", b"MAIL FROM:<a@studio-example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"),
        ("S", b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n"),
        ("C", body + b".\r\n"),
        ("S", b"250 2.0.0 Ok: queued as 4AbC\r\n", 0.05),
        ("C", b"QUIT\r\n"),
        ("S", b"221 2.0.0 Bye\r\n"),
    ]
    conv.smtp(script)
    conv.close()
    client_data = b"".join(step[1] for step in script if step[0] == "C")
    server_data = b"".join(step[1] for step in script if step[0] == "S")
    return conv, client_data, server_data


def reassemble(packets: list[Packet], sender: str, isn: int) -> bytes:
    """Place payloads by sequence number relative to the SYN (first copy wins)."""
    stream: dict[int, int] = {}
    for packet in packets:
        if packet.src != sender:
            continue
        relative = (packet.seq - isn - 1) % 2**32
        for index, byte in enumerate(packet.payload):
            stream.setdefault(relative + index, byte)
    assert sorted(stream) == list(range(len(stream))), "hole in the stream"
    return bytes(stream[i] for i in range(len(stream)))


@given(st.binary(max_size=300))
def test_checksum_matches_word_by_word_sum(data: bytes) -> None:
    assert synth.internet_checksum(data) == naive_checksum(data)


@pytest.mark.parametrize("data", [b"", b"\0\0\0", b"\xff\xff", b"\xff\xff\xff\xff", b"\x12"])
def test_checksum_edge_cases(data: bytes) -> None:
    assert synth.internet_checksum(data) == naive_checksum(data)


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("family", ["ipv4", "ipv6", "ipv6-hbh"])
def test_every_frame_decodes_with_valid_checksums_and_sequence(linktype: int, family: str) -> None:
    addresses = (
        ("192.168.0.10", "198.51.100.25") if family == "ipv4" else ("2001:db8::10", "2001:db8::25")
    )
    vlans = (100, 200) if linktype in VLAN_CAPABLE else ()
    conv, client_data, server_data = session(
        addresses, linktype=linktype, vlans=vlans, hop_by_hop=family == "ipv6-hbh"
    )
    packets = [decode(linktype, frame.data) for frame in conv.frames]
    assert all(p.ip_checksum_ok and p.tcp_checksum_ok for p in packets)
    assert all(p.vlans == list(vlans) for p in packets)
    client, server = addresses
    assert reassemble(packets, client, conv.isn["C"]) == client_data
    assert reassemble(packets, server, conv.isn["S"]) == server_data
    # No segment exceeds the MSS, and the DATA body really was split.
    assert max(len(p.payload) for p in packets) == 1460
    assert packets[0].flags == SYN and packets[1].flags == SYN | ACK and packets[2].flags == ACK
    assert packets[1].ack == (conv.isn["C"] + 1) % 2**32


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_sequence_and_ack_numbers_track_every_byte(family: str) -> None:
    addresses = (
        ("192.168.0.10", "198.51.100.25") if family == "ipv4" else ("2001:db8::10", "2001:db8::25")
    )
    conv, _, _ = session(addresses)
    client = addresses[0]
    expected = {"C": (conv.isn["C"] + 1) % 2**32, "S": (conv.isn["S"] + 1) % 2**32}
    for frame in conv.frames[3:]:
        packet = decode(LINKTYPE_ETHERNET, frame.data)
        side, peer = ("C", "S") if packet.src == client else ("S", "C")
        assert packet.seq == expected[side]
        assert packet.flags & ACK and packet.ack == expected[peer]
        expected[side] = (expected[side] + len(packet.payload) + (packet.flags & FIN)) % 2**32
    last = decode(LINKTYPE_ETHERNET, conv.frames[-1].data)
    assert last.flags == ACK and last.src == client


def test_segments_are_recorded_with_offsets_and_continue_sequence() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, client_isn=1000)
    conv.handshake()
    conv.client(b"a" * 2500, segment=1000)
    assert [s.offset for s in conv.segments] == [0, 1000, 2000]
    assert [s.seq for s in conv.segments] == [1001, 2001, 3001]
    assert [len(s.payload) for s in conv.segments] == [1000, 1000, 500]
    packets = [decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames]
    # Each segment is followed by the server's ACK of it; only the last one has PSH.
    assert [(p.src, p.flags) for p in packets[3:]] == [
        ("10.0.0.1", ACK),
        ("10.0.0.2", ACK),
        ("10.0.0.1", ACK),
        ("10.0.0.2", ACK),
        ("10.0.0.1", PSH | ACK),
        ("10.0.0.2", ACK),
    ]
    assert [p.ack for p in packets[4::2]] == [2001, 3001, 3501]


def test_sequence_numbers_wrap_around() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, client_isn=2**32 - 5)
    conv.handshake()
    conv.client(b"0123456789", segment=4)
    packets = [decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames]
    assert [s.seq for s in conv.segments] == [2**32 - 4, 0, 4]
    assert reassemble(packets, "10.0.0.1", 2**32 - 5) == b"0123456789"
    assert packets[-1].ack == 6  # (2**32 - 4 + 10) modulo 2**32


def test_smtp_piggybacks_acks_on_replies() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START)
    conv.smtp([("S", b"220 hi\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])
    flags = [decode(LINKTYPE_ETHERNET, f.data).flags for f in conv.frames]
    # Handshake, banner, QUIT (acks banner), 221 (acks QUIT), client's ACK of the 221.
    assert flags == [SYN, SYN | ACK, ACK, PSH | ACK, PSH | ACK, PSH | ACK, ACK]


def test_clock_follows_rtt_and_delay() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, rtt=0.1)
    conv.handshake()
    conv.client(b"HELO x\r\n", delay=2.0, ack=False)
    conv.server(b"250 ok\r\n", delay=0.5)
    times = [f.ts for f in conv.frames]
    assert times[0] == START
    assert times[1] == pytest.approx(START + 0.1)  # SYN-ACK one round trip after SYN
    assert times[3] - times[2] == pytest.approx(2.0 + conv.gap)  # after the client's own ACK
    assert times[4] - times[3] == pytest.approx(0.1 + 0.5)
    assert times == sorted(times)
    assert all(round(t, 6) == t for t in times)


def test_close_reset_refused_and_unanswered() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START)
    conv.handshake()
    conv.close("server")
    flags = [decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames[3:]]
    assert [(p.src, p.flags) for p in flags] == [
        ("10.0.0.2", FIN | ACK),
        ("10.0.0.1", FIN | ACK),
        ("10.0.0.2", ACK),
    ]
    assert flags[1].ack == flags[0].seq + 1 and flags[2].ack == flags[1].seq + 1
    with pytest.raises(RuntimeError):
        conv.client(b"late")

    conv = Conversation("10.0.0.1", 40001, "10.0.0.2", 25, start=START)
    conv.handshake()
    conv.reset("client")
    last = decode(LINKTYPE_ETHERNET, conv.frames[-1].data)
    assert last.flags == RST | ACK and last.src == "10.0.0.1"

    conv = Conversation("10.0.0.1", 40002, "10.0.0.2", 25, start=START)
    conv.refused()
    syn, rst = (decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames)
    assert syn.flags == SYN and rst.flags == RST | ACK and rst.ack == syn.seq + 1

    conv = Conversation("10.0.0.1", 40003, "10.0.0.2", 25, start=START)
    conv.unanswered(retries=2)
    syns = [decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames]
    assert [p.flags for p in syns] == [SYN] * 3 and len({p.seq for p in syns}) == 1
    assert [round(f.ts - START, 3) for f in conv.frames] == [0.0, 1.0, 3.0]


def test_send_before_handshake_is_refused() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START)
    with pytest.raises(RuntimeError):
        conv.client(b"x")
    with pytest.raises(ValueError):
        conv.send("nobody", b"x")


def test_vlan_tags_and_padding_on_ethernet() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, vlans=(10, 20), pad=True)
    conv.handshake()
    syn, _, ack = (f.data for f in conv.frames)
    assert struct.unpack_from("!HHHHH", syn, 12) == (0x88A8, 10, 0x8100, 20, 0x0800)
    assert len(ack) == 62  # 14 + 8 (two tags) + 20 + 20: already above the 60-byte minimum
    plain = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, pad=True)
    plain.handshake()
    assert len(plain.frames[2].data) == 60  # a 54-byte pure ACK padded like on the wire
    assert decode(LINKTYPE_ETHERNET, plain.frames[2].data).payload == b""
    with pytest.raises(ValueError):
        Conversation("10.0.0.1", 1, "10.0.0.2", 25, start=START, linktype=LINKTYPE_RAW, vlans=(5,))


def test_null_and_loop_family_byte_order() -> None:
    for linktype, fmt in ((LINKTYPE_NULL, "<I"), (LINKTYPE_LOOP, "!I")):
        v4 = Conversation("10.0.0.1", 1, "10.0.0.2", 25, start=START, linktype=linktype)
        v6 = Conversation("::1", 1, "::2", 25, start=START, linktype=linktype)
        v4.handshake()
        v6.handshake()
        assert struct.unpack_from(fmt, v4.frames[0].data)[0] == 2
        assert struct.unpack_from(fmt, v6.frames[0].data)[0] == 24


def test_linux_cooked_headers() -> None:
    v1 = Conversation("10.0.0.1", 1, "10.0.0.2", 25, start=START, linktype=LINKTYPE_LINUX_SLL)
    v2 = Conversation("10.0.0.1", 1, "10.0.0.2", 25, start=START, linktype=LINKTYPE_LINUX_SLL2)
    for conv in (v1, v2):
        conv.handshake()
    out, into = v1.frames[0].data, v1.frames[1].data
    assert struct.unpack_from("!HHH6s2xH", out) == (4, 1, 6, synth.mac_for("10.0.0.1"), 0x0800)
    assert struct.unpack_from("!H", into)[0] == 0
    protocol, reserved, ifindex, hatype, pkttype, halen, addr = struct.unpack_from(
        "!HHIHBB6s", v2.frames[0].data
    )
    assert (protocol, reserved, ifindex, hatype, pkttype, halen) == (0x0800, 0, 1, 1, 4, 6)
    assert addr == synth.mac_for("10.0.0.1") and v2.frames[0].data[20] == 0x45


def test_udp_and_arp_helpers() -> None:
    packet = synth.udp_packet("192.168.0.10", "192.168.0.1", 53000, 53, b"\x12\x34query")
    assert naive_checksum(packet[:20]) == 0
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 17, len(packet) - 20)
    assert naive_checksum(pseudo + packet[20:]) == 0
    arp = synth.arp_frame(1, b"\x00\x11\x22\x33\x44\x55", "192.168.0.1", "192.168.0.108")
    assert len(arp) == 60 and arp[:6] == synth.BROADCAST_MAC and arp[12:14] == b"\x08\x06"


def test_reorder_drop_duplicate_helpers_keep_time_order() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START)
    conv.handshake()
    conv.client(bytes(range(256)) * 20, segment=1000)
    first, second, third = conv.segments[:3]
    frames = synth.swap(conv.frames, first.frame, third.frame)
    assert [f.data for f in frames].index(third.frame.data) < [f.data for f in frames].index(
        first.frame.data
    )
    assert [f.ts for f in frames] == [f.ts for f in conv.frames]
    shuffled = synth.shuffle_segments(conv.frames, conv.segments, seed=3)
    assert sorted(f.data for f in shuffled) == sorted(f.data for f in conv.frames)
    assert [f.data for f in shuffled] != [f.data for f in conv.frames]
    assert [f.ts for f in shuffled] == [f.ts for f in conv.frames]
    lossy = synth.drop(conv.frames, second)
    assert len(lossy) == len(conv.frames) - 1 and second.frame not in lossy
    twice = synth.duplicate(conv.frames, first, after=third.frame)
    copies = [f for f in twice if f.data == first.frame.data]
    assert len(copies) == 2 and [f.ts for f in twice] == sorted(f.ts for f in twice)
    packets = [decode(LINKTYPE_ETHERNET, f.data) for f in shuffled]
    assert reassemble(packets, "10.0.0.1", conv.isn["C"]) == conv.stream("C")


def test_retransmit_and_conflicting_overlap() -> None:
    conv = Conversation("10.0.0.1", 40000, "10.0.0.2", 25, start=START, client_isn=0)
    conv.handshake()
    conv.client(b"AAAABBBBCCCC", segment=4)
    straddling = conv.retransmit("C", 2, 10)
    assert (straddling.seq, straddling.payload) == (3, b"AABBBBCC")
    conflicting = conv.inject("C", 10, b"XXYYYY")  # overlaps 2 bytes, adds 4 new ones
    assert conflicting.seq == 11
    assert conv.stream("C") == b"AAAABBBBCCCCYYYY"  # first copy wins in the record
    conv.client(b"DD")
    assert conv.segments[-1].seq == 17 and conv.segments[-1].offset == 16
    packets = [decode(LINKTYPE_ETHERNET, f.data) for f in conv.frames]
    assert [p.ack for p in packets if p.src == "10.0.0.2"][-1] == 19


def test_merge_is_stable_and_time_ordered() -> None:
    a = [Frame(START, b"a1"), Frame(START + 2, b"a2")]
    b = [Frame(START, b"b1"), Frame(START + 1, b"b2")]
    assert [f.data for f in synth.merge(a, b)] == [b"a1", b"b1", b"b2", b"a2"]


def read_pcap(data: bytes) -> tuple[int, list[tuple[int, int, int, bytes]]]:
    """Return (linktype, [(seconds, fraction, original length, data)]) of a classic pcap."""
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    _, major, minor, _, _, _, linktype = struct.unpack_from(order + "IHHiIII", data)
    assert (major, minor) == (2, 4)
    records, offset = [], 24
    while offset < len(data):
        seconds, fraction, caplen, length = struct.unpack_from(order + "IIII", data, offset)
        records.append((seconds, fraction, length, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return linktype, records


def read_pcapng(data: bytes) -> tuple[int, int, list[tuple[int, bytes]]]:
    """Return (linktype, if_tsresol, [(timestamp units, data)]) of a one-interface pcapng."""
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    offset, linktype, tsresol, packets = 0, -1, 6, []
    while offset < len(data):
        block_type, length = struct.unpack_from(order + "II", data, offset)
        assert struct.unpack_from(order + "I", data, offset + length - 4)[0] == length
        assert length % 4 == 0
        body = data[offset + 8 : offset + length - 4]
        if block_type == 1:
            linktype = struct.unpack_from(order + "H", body)[0]
            position = 8
            while position < len(body):
                code, size = struct.unpack_from(order + "HH", body, position)
                if code == 9:
                    tsresol = body[position + 4]
                position += 4 + size + (-size % 4)
        elif block_type == 6:
            _, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body)
            packets.append(((high << 32) | low, body[20 : 20 + caplen]))
        offset += length
    return linktype, tsresol, packets


@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_variants_round_trip(nanosecond: bool, big_endian: bool) -> None:
    conv, _, _ = session()
    data = synth.pcap_bytes(
        conv.frames, LINKTYPE_ETHERNET, nanosecond=nanosecond, big_endian=big_endian
    )
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    assert struct.unpack_from(">I" if big_endian else "<I", data)[0] == magic
    linktype, records = read_pcap(data)
    assert linktype == LINKTYPE_ETHERNET and len(records) == len(conv.frames)
    scale = 10**9 if nanosecond else 10**6
    for frame, (seconds, fraction, length, payload) in zip(conv.frames, records, strict=True):
        assert payload == frame.data and length == len(frame.data)
        assert seconds * 10**6 + fraction * 10**6 // scale == round(frame.ts * 10**6)


def test_pcap_snaplen_truncates_but_keeps_original_length() -> None:
    conv, _, _ = session()
    _, records = read_pcap(synth.pcap_bytes(conv.frames, LINKTYPE_ETHERNET, snaplen=96))
    assert max(len(r[3]) for r in records) == 96
    assert max(r[2] for r in records) == 1514


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("tsresol", [6, 9])
def test_pcapng_round_trip(big_endian: bool, tsresol: int) -> None:
    conv, _, _ = session(linktype=LINKTYPE_LINUX_SLL2)
    data = synth.pcapng_bytes(
        conv.frames, LINKTYPE_LINUX_SLL2, tsresol=tsresol, big_endian=big_endian
    )
    linktype, resolution, packets = read_pcapng(data)
    assert (linktype, resolution) == (LINKTYPE_LINUX_SLL2, tsresol)
    assert [p[1] for p in packets] == [f.data for f in conv.frames]
    for frame, (units, _) in zip(conv.frames, packets, strict=True):
        assert units * 10**6 // 10**tsresol == round(frame.ts * 10**6)


def test_writers_accept_paths_files_and_gzip(tmp_path: Path) -> None:
    conv, _, _ = session()
    expected = synth.pcap_bytes(conv.frames, LINKTYPE_ETHERNET)
    synth.write_pcap(tmp_path / "a.pcap", conv.frames, LINKTYPE_ETHERNET)
    synth.write_pcap(str(tmp_path / "a.pcap.gz"), conv.frames, LINKTYPE_ETHERNET)
    buffer = io.BytesIO()
    synth.write_pcap(buffer, conv.frames, LINKTYPE_ETHERNET)
    assert (tmp_path / "a.pcap").read_bytes() == expected == buffer.getvalue()
    assert gzip.decompress((tmp_path / "a.pcap.gz").read_bytes()) == expected
    synth.write_pcapng(tmp_path / "b.pcapng.gz", conv.frames, LINKTYPE_ETHERNET)
    packed = (tmp_path / "b.pcapng.gz").read_bytes()
    assert gzip.decompress(packed) == synth.pcapng_bytes(conv.frames, LINKTYPE_ETHERNET)
    synth.write_pcapng(tmp_path / "c.pcapng.gz", conv.frames, LINKTYPE_ETHERNET)
    assert (tmp_path / "c.pcapng.gz").read_bytes() == packed  # reproducible: no mtime inside


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_scapy_agrees_on_checksums(linktype: int, family: str) -> None:
    pytest.importorskip("scapy")
    from scapy.all import conf
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    decoder = conf.l2types.num2layer[linktype]  # how scapy's own pcap reader decodes it
    skip = 0
    if family == "ipv6" and linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # scapy binds IPv6 to the running system's AF_INET6 (10 on Linux), not BSD's 24.
        decoder, skip = IPv6, 4
    addresses = (
        ("192.168.0.10", "198.51.100.25") if family == "ipv4" else ("2001:db8::10", "2001:db8::25")
    )
    vlans = (30,) if linktype in VLAN_CAPABLE else ()
    conv, client_data, _ = session(
        addresses, linktype=linktype, vlans=vlans, hop_by_hop=family == "ipv6"
    )
    layer = IP if family == "ipv4" else IPv6
    sent = b""
    for frame in conv.frames:
        packet = decoder(frame.data[skip:])
        assert layer in packet and TCP in packet
        rebuilt = packet.copy()
        del rebuilt[TCP].chksum
        if family == "ipv4":
            del rebuilt[IP].chksum
        recomputed = decoder(bytes(rebuilt))
        assert recomputed[TCP].chksum == packet[TCP].chksum
        if family == "ipv4":
            assert recomputed[IP].chksum == packet[IP].chksum
        if packet[layer].src == addresses[0]:
            sent += bytes(packet[TCP].payload)
    assert sent == client_data


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize("writer", ["pcap", "pcap-ns-be", "pcapng", "pcap.gz"])
def test_tcpdump_reads_files_and_finds_checksums_correct(
    tmp_path: Path, linktype: int, writer: str
) -> None:
    vlans = (42,) if linktype in VLAN_CAPABLE else ()
    conv, _, _ = session(linktype=linktype, vlans=vlans)
    path = tmp_path / f"capture.{writer}"
    if writer == "pcapng":
        synth.write_pcapng(path, conv.frames, linktype)
    elif writer == "pcap-ns-be":
        synth.write_pcap(path, conv.frames, linktype, nanosecond=True, big_endian=True)
    else:
        synth.write_pcap(path, conv.frames, linktype)
    if writer == "pcap.gz":
        plain = tmp_path / "capture.pcap"
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        path = plain
    result = subprocess.run(
        [str(TCPDUMP), "-nn", "-vv", "-tt", "-r", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "truncated" not in result.stdout + result.stderr
    assert "incorrect" not in result.stdout and "bad cksum" not in result.stdout
    assert result.stdout.count("(correct)") == len(conv.frames)
    stamps = [line.split()[0] for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert stamps == [f"{frame.ts:.6f}" for frame in conv.frames]
