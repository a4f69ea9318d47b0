"""The reader's prefilter (issue 14): every record it sets aside is one the engine would skip
for the same reason and :mod:`smtptop.identity` would find nothing in, on every link type,
behind VLAN tags, over IPv4 and IPv6, cut anywhere; and the engine's events and figures are
the same with it as without it."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest
import synth

from smtptop import decode as dec
from smtptop import identity
from smtptop.analyzer import EngineConfig
from smtptop.capture import CaptureError, CaptureFile, prefilter
from smtptop.pipeline import EngineBatch, engine_batches

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
PORTS = dec.DEFAULT_PORTS
CLIENT, SERVER, LAN_PEER = "192.168.1.7", "198.51.100.9", "192.168.1.1"
CLIENT6, SERVER6 = "2001:db8::7", "2001:db8:ffff::9"
LINKS = {
    "ethernet": (synth.LINKTYPE_ETHERNET, ()),
    "802.1Q": (synth.LINKTYPE_ETHERNET, (10,)),
    "QinQ": (synth.LINKTYPE_ETHERNET, (100, 10)),
    "cooked v1": (synth.LINKTYPE_LINUX_SLL, ()),
    "cooked v1 + VLAN": (synth.LINKTYPE_LINUX_SLL, (7,)),
    "cooked v2": (synth.LINKTYPE_LINUX_SLL2, ()),
    "cooked v2 + QinQ": (synth.LINKTYPE_LINUX_SLL2, (100, 7)),
    "raw IP": (synth.LINKTYPE_RAW, ()),
    "BSD null": (synth.LINKTYPE_NULL, ()),
    "OpenBSD loop": (synth.LINKTYPE_LOOP, ()),
}


def _fragment(packet: bytes, field: int) -> bytes:
    """An IPv4 packet with its fragment field (flags and offset) set to ``field``."""
    return packet[:6] + struct.pack("!H", field) + packet[8:]


def _ipv6_fragment(packet: bytes) -> bytes:
    """An IPv6 packet's payload put behind a fragment header."""
    payload_length, nxt = struct.unpack_from("!HB", packet, 4)
    header = struct.pack("!BBHI", nxt, 0, 1, 7)  # offset 0, more fragments
    return (
        packet[:4]
        + struct.pack("!HB", payload_length + 8, 44)
        + packet[7:40]
        + header
        + packet[40:]
    )


def _next_header(packet: bytes, nxt: int) -> bytes:
    """An IPv6 packet whose payload claims to be protocol ``nxt``."""
    return packet[:6] + bytes([nxt]) + packet[7:]


def _with_options(packet: bytes) -> bytes:
    """An IPv4 packet with four bytes of options (IHL 6)."""
    total = struct.unpack_from("!H", packet, 2)[0] + 4
    return (
        bytes([0x46])
        + packet[1:2]
        + struct.pack("!H", total)
        + packet[4:20]
        + bytes(4)
        + packet[20:]
    )


def tcp(src: str, dst: str, sport: int, dport: int, **kw: object) -> bytes:
    return synth.tcp_packet(src, dst, sport, dport, seq=1000, payload=b"hello", **kw)


# IP packets: the kinds an office carries, and the corners the decoder checks.
PACKETS = {
    "smtp": tcp(CLIENT, SERVER, 50000, 25),
    "smtp reply": tcp(SERVER, CLIENT, 587, 50000),
    "https": tcp(CLIENT, SERVER, 50000, 443),
    "https, IPv4 options": _with_options(tcp(CLIENT, SERVER, 50000, 443)),
    "smtp, IPv4 options": _with_options(tcp(CLIENT, SERVER, 50000, 25)),
    "https fragment": _fragment(tcp(CLIENT, SERVER, 50000, 443), 0x2000),
    "later fragment": _fragment(tcp(CLIENT, SERVER, 50000, 443), 0x0010),
    "smtp, later fragment": _fragment(tcp(CLIENT, SERVER, 50000, 25), 0x0010),
    "quic": synth.udp_packet(CLIENT, SERVER, 50000, 443, bytes(1200)),
    "quic fragment": _fragment(synth.udp_packet(CLIENT, SERVER, 50000, 443, bytes(40)), 0x2000),
    "dns": synth.udp_packet(CLIENT, LAN_PEER, 50000, 53, bytes(30)),
    "dns fragment": _fragment(synth.udp_packet(LAN_PEER, CLIENT, 53, 50000, bytes(30)), 0x2000),
    "dhcp": synth.udp_packet("0.0.0.0", "255.255.255.255", 68, 67, bytes(300)),
    "netbios": synth.udp_packet(CLIENT, "192.168.1.255", 137, 137, bytes(50)),
    "icmp": synth.tcp_packet(CLIENT, SERVER, 0, 0, seq=0)[:9] + b"\x01" + bytes(30),
    "https6": tcp(CLIENT6, SERVER6, 50000, 443),
    "smtp6": tcp(CLIENT6, SERVER6, 50000, 25),
    "https6 hop-by-hop": tcp(CLIENT6, SERVER6, 50000, 443, hop_by_hop=True),
    "smtp6 hop-by-hop": tcp(CLIENT6, SERVER6, 50000, 25, hop_by_hop=True),
    "quic6": synth.udp_packet(CLIENT6, SERVER6, 50000, 443, bytes(1200)),
    "mdns6": synth.udp_packet(CLIENT6, "ff02::fb", 5353, 5353, bytes(40)),
    "llmnr6 hop-by-hop": synth.udp_packet(
        CLIENT6, "ff02::1:3", 50000, 5355, bytes(40), hop_by_hop=True
    ),
    "smtp6 fragment": _ipv6_fragment(tcp(CLIENT6, SERVER6, 50000, 25)),
    "quic6 fragment": _ipv6_fragment(synth.udp_packet(CLIENT6, SERVER6, 50000, 443, bytes(9))),
    "icmpv6": _next_header(tcp(CLIENT6, SERVER6, 0, 0), 58),
    "ipv6 no next header": _next_header(tcp(CLIENT6, SERVER6, 0, 0), 59),
}
# What an office is made of: the prefilter must set these aside on every link type.
BULK = {"https", "https, IPv4 options", "https fragment", "later fragment", "quic",
        "quic fragment", "icmp", "https6", "quic6", "icmpv6", "ipv6 no next header",
        "smtp6 fragment", "quic6 fragment"}  # fmt: skip
ETHER_ONLY = {
    "arp": synth.arp_frame(1, synth.mac_for(CLIENT), CLIENT, LAN_PEER),
    "arp 802.1Q": synth.arp_frame(2, synth.mac_for(CLIENT), CLIENT, LAN_PEER, vlans=(10,)),
    "lldp": bytes(12) + b"\x88\xcc" + bytes(40),
    "stp": bytes(12) + b"\x00\x26" + b"\x42\x42\x03" + bytes(35),
    "vlan lldp": bytes(12) + b"\x81\x00\x00\x0a\x88\xcc" + bytes(40),
}


def frames() -> list[tuple[str, int, bytes]]:
    """(name, link type, frame) for every packet on every link, and the Ethernet-only ones."""
    table = [
        (f"{packet} on {link}", linktype, synth.link_frame(linktype, data, vlans=vlans))
        for link, (linktype, vlans) in LINKS.items()
        for packet, data in PACKETS.items()
    ]
    table += [(name, synth.LINKTYPE_ETHERNET, data) for name, data in ETHER_ONLY.items()]
    loop_family = struct.pack("<I", 7)  # a BSD loopback packet of no IP family
    table.append(("null, other family", synth.LINKTYPE_NULL, loop_family + PACKETS["https"]))
    table.append(("null, big-endian", synth.LINKTYPE_NULL, struct.pack(">I", 2) + PACKETS["https"]))
    table.append(("ppp", 9, b"\xff\x03\x00\x21" + PACKETS["https"]))  # not decoded at all
    return table


TABLE = [pytest.param(name, linktype, frame, id=name) for name, linktype, frame in frames()]


def check(linktype: int, frame: bytes, ports: frozenset[int] = PORTS) -> str | None:
    """The prefilter's answer, read in place from within a larger buffer; asserted to be
    the decoder's, and identity's nothing, whenever it sets the frame aside."""
    test = prefilter(linktype, ports)
    assert test is not None
    buffer = b"\xa5" * 7 + frame + b"\x5a" * 64  # bytes past the record must not be read
    reason = test(buffer, 7, len(frame))
    assert reason == test(frame, 0, len(frame))
    if reason is not None:
        assert dec.decode(linktype, frame, ports) == reason
        if reason in (dec.SKIP_NON_TCP, dec.SKIP_NON_IP):
            assert identity.observe(linktype, frame, 0.0) == []
    return reason


@pytest.mark.parametrize(("name", "linktype", "frame"), TABLE)
def test_decisions_equal_the_decoders(name: str, linktype: int, frame: bytes) -> None:
    reason = check(linktype, frame)
    kind = name.split(" on ")[0]
    if kind in BULK or kind in ("lldp", "stp", "vlan lldp", "null, other family", "ppp"):
        assert reason is not None, f"{name} left to the engine"
    if kind.startswith(("smtp", "dns", "dhcp", "netbios", "mdns", "llmnr", "arp")) and (
        "fragment" not in kind
    ):
        assert reason is None, f"{name} set aside: {reason}"


@pytest.mark.parametrize(("name", "linktype", "frame"), TABLE)
def test_decisions_on_every_cut_of_every_frame(name: str, linktype: int, frame: bytes) -> None:
    for size in range(len(frame)):
        check(linktype, frame[:size])


def test_decisions_on_mangled_headers() -> None:
    """Random bytes of the headers changed: the prefilter never disagrees with the decoder."""
    rng = random.Random(14)
    table = frames()
    for _ in range(20000):
        _, linktype, frame = rng.choice(table)
        mangled = bytearray(frame[:80])
        for _ in range(rng.randint(1, 3)):
            mangled[rng.randrange(len(mangled))] = rng.choice(
                (0, 0x45, 0x60, 6, 17, 53, 25, rng.randrange(256))
            )
        check(linktype, bytes(mangled) + frame[80:])


def test_other_port_sets() -> None:
    https = synth.link_frame(synth.LINKTYPE_ETHERNET, PACKETS["https"])
    assert check(synth.LINKTYPE_ETHERNET, https, frozenset({443})) is None
    smtp = synth.link_frame(synth.LINKTYPE_ETHERNET, PACKETS["smtp"])
    assert check(synth.LINKTYPE_ETHERNET, smtp, frozenset({2525})) == dec.SKIP_OTHER_PORT


@pytest.mark.parametrize("linktype", [synth.LINKTYPE_ETHERNET, synth.LINKTYPE_LINUX_SLL])
@pytest.mark.parametrize("hosts", [("10.99.0.1", "10.99.0.2"), ("fd00::1", "fd00::2")])
def test_udp_to_a_named_mirror_port_is_left_to_the_engine(
    linktype: int, hosts: tuple[str, str]
) -> None:
    """A port named with --mirror-port may carry a mirrored SMTP frame: handed over, as the
    standard mirror ports are; unnamed, set aside as the decoder would."""
    named = frozenset({40000, *dec.STANDARD_MIRRORS.udp()})
    frame = synth.link_frame(linktype, synth.udp_packet(*hosts, 50000, 40000, b"x" * 40))
    test = prefilter(linktype, PORTS, named)
    assert test is not None and test(frame, 0, len(frame)) is None
    assert check(linktype, frame) == dec.SKIP_NON_TCP


def office(seed: int) -> list[synth.Frame]:
    """SMTP sessions among the traffic of an office: web, QUIC, DNS, ARP, IPv6, fragments."""
    rng = random.Random(seed)
    conversations = []
    start = 1_800_000_000.0
    for number in range(4):
        client = f"192.168.1.{10 + number}"
        conv = synth.Conversation(client, 40000 + number, SERVER, (25, 587)[number % 2],
                                  start=start + number * 3)  # fmt: skip
        conv.smtp([("S", b"220 mx ESMTP\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 ok\r\n"),
                   ("C", b"MAIL FROM:<a@b.example>\r\n"), ("S", b"250 ok\r\n"),
                   ("C", b"RCPT TO:<c@d.example>\r\n"),
                   ("S", b"554 5.7.1 blocked using zen.spamhaus.org\r\n"),
                   ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
        conv.close()
        conversations.append(conv.frames)
    noise = []
    kinds = [k for k in PACKETS if not k.startswith("smtp")]
    for index in range(600):
        ts = start + index * 0.05 + rng.random() * 0.01
        if rng.random() < 0.1:
            data = rng.choice(list(ETHER_ONLY.values()))
        else:
            packet = PACKETS[rng.choice(kinds)]
            vlans = rng.choice(((), (), (10,), (100, 10)))
            data = synth.link_frame(synth.LINKTYPE_ETHERNET, packet, vlans=vlans)
        noise.append(synth.Frame(ts, data))
    dns = synth.udp_packet(LAN_PEER, CLIENT, 53, 50000, bytes.fromhex(
        "1234818000010001000000000378797a076578616d706c650000010001c00c00010001000001"
        "2c0004c633640a"))  # fmt: skip
    noise.append(synth.Frame(start + 31.0, synth.link_frame(synth.LINKTYPE_ETHERNET, dns)))
    return synth.merge(noise, *conversations)


def run(paths: list[Path], ports: frozenset[int] | None) -> tuple[list, object, list[str]]:
    events: list = []
    captures = [CaptureFile(str(path), ports=ports) for path in paths]
    for message in engine_batches(captures, EngineConfig(), workers=0):
        if isinstance(message, EngineBatch):
            events.extend(message.events)
        else:
            return events, message.stats, message.warnings
    raise AssertionError("no outcome")


def assert_same(paths: list[Path]) -> None:
    without, with_prefilter = run(paths, None), run(paths, PORTS)
    events, stats, warnings = with_prefilter
    assert stats == without[1]
    assert warnings == without[2]
    assert events == without[0]
    assert stats.skipped.get(dec.SKIP_OTHER_PORT)


@pytest.mark.parametrize(
    "writer",
    [
        lambda p, f: synth.write_pcap(p, f, synth.LINKTYPE_ETHERNET),
        lambda p, f: synth.write_pcap(p, f, synth.LINKTYPE_ETHERNET, big_endian=True, snaplen=90),
        lambda p, f: synth.write_pcapng(p, f, synth.LINKTYPE_ETHERNET),
        lambda p, f: synth.write_pcapng(p, f, synth.LINKTYPE_ETHERNET, snaplen=70),
    ],
    ids=["pcap", "pcap, snap length 90", "pcapng", "pcapng, snap length 70"],
)
def test_engine_figures_equal_without_the_prefilter(writer, tmp_path: Path) -> None:
    first, second = tmp_path / "a.cap", tmp_path / "b.cap"
    writer(first, office(1))
    writer(second, office(2))
    assert_same([first, second])


@pytest.mark.parametrize("link", [name for name in LINKS if name != "ethernet"])
def test_engine_figures_equal_on_every_link_type(link: str, tmp_path: Path) -> None:
    linktype, vlans = LINKS[link]
    conv = synth.Conversation(CLIENT, 40000, SERVER, 25, start=1_800_000_000.0,
                              linktype=linktype, vlans=vlans)  # fmt: skip
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])
    noise = [synth.Frame(1_800_000_000.0 + n / 10, synth.link_frame(linktype, packet, vlans=vlans))
             for n, packet in enumerate(PACKETS.values())]  # fmt: skip
    path = tmp_path / "c.pcap"
    synth.write_pcap(path, synth.merge(noise, conv.frames), linktype)
    assert_same([path])


def test_engine_figures_equal_on_the_sample() -> None:
    assert_same([SAMPLE])


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcap.gz"])
def test_cut_files_read_the_same(kind: str, tmp_path: Path) -> None:
    """A file cut anywhere, or with a record claiming too much: the same records and notes."""
    whole = tmp_path / f"whole.{kind}"
    write = synth.write_pcapng if kind == "pcapng" else synth.write_pcap
    write(whole, office(3)[:200], synth.LINKTYPE_ETHERNET)
    data = whole.read_bytes()
    rng = random.Random(3)
    contents = [data[: rng.randrange(len(data))] for _ in range(30)]
    if kind == "pcap":
        contents.append(data[:24] + struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + data[24:])
    for number, content in enumerate(contents):
        path = tmp_path / f"cut{number}.{kind}"
        path.write_bytes(content)
        try:
            plain = CaptureFile(str(path))
        except CaptureError as exc:
            with pytest.raises(CaptureError, match=re.escape(str(exc))):
                CaptureFile(str(path), ports=PORTS)
            continue
        filtered = CaptureFile(str(path), ports=PORTS)
        times = [record[0] for record in plain]
        assert [record[0] for record in filtered] == times
        assert (filtered.records, filtered.truncated, filtered.notes()) == (
            plain.records, plain.truncated, plain.notes())  # fmt: skip
