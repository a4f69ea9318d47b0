"""The built-in kernel filter, run by a small BPF interpreter on generated frames.

The same programs are attached to real sockets in the live-capture tests; here every branch
(VLAN depths, IPv4/IPv6, TCP/UDP, fragments, ARP, raw IP links) is checked frame by frame.
"""

from __future__ import annotations

import pytest
import synth
from bpf_vm import run

from smtptop import bpf
from smtptop.decode import STANDARD_MIRRORS, MirrorPorts

TCP_PORTS = (25, 465, 587, 2525)


def tcp(src: str, dst: str, sport: int, dport: int, **kw) -> bytes:
    return synth.tcp_packet(src, dst, sport, dport, seq=1, payload=b"EHLO x\r\n", **kw)


V4 = ("192.168.0.108", "198.51.100.7")
V6 = ("fd00::108", "2001:db8::7")
ETHER = bpf.default_program(TCP_PORTS)
RAW = bpf.default_program(TCP_PORTS, ethernet=False)


@pytest.mark.parametrize("vlans", [(), (10,), (10, 20)], ids=["untagged", "802.1Q", "QinQ"])
@pytest.mark.parametrize("hosts", [V4, V6], ids=["IPv4", "IPv6"])
def test_smtp_ports_pass_in_both_directions(vlans, hosts) -> None:
    for port in TCP_PORTS:
        to_server = tcp(hosts[0], hosts[1], 40000, port)
        to_client = tcp(hosts[1], hosts[0], port, 40000)
        for packet in (to_server, to_client):
            frame = synth.link_frame(synth.LINKTYPE_ETHERNET, packet, vlans=vlans)
            assert run(ETHER, frame) == bpf.SNAPLEN
    other = synth.link_frame(synth.LINKTYPE_ETHERNET, tcp(*hosts, 40000, 443), vlans=vlans)
    assert run(ETHER, other) == 0


@pytest.mark.parametrize("hosts", [V4, V6], ids=["IPv4", "IPv6"])
def test_identity_udp_passes_and_other_udp_does_not(hosts) -> None:
    for port in bpf.UDP_IDENTITY_PORTS:
        packet = synth.udp_packet(*hosts, 50000, port, b"x" * 20)
        assert run(ETHER, synth.link_frame(synth.LINKTYPE_ETHERNET, packet)) == bpf.SNAPLEN
    ntp = synth.udp_packet(*hosts, 50000, 123, b"x" * 20)
    assert run(ETHER, synth.link_frame(synth.LINKTYPE_ETHERNET, ntp)) == 0


def test_ip_options_move_the_ports() -> None:
    """IPv4 header length comes from the packet, not a constant."""
    packet = bytearray(tcp(*V4, 40000, 25))
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    packet[0] = 0x46
    packet[2:4] = (len(packet) + 4).to_bytes(2, "big")
    with_options = bytes(packet[:20]) + options + bytes(packet[20:])
    assert run(ETHER, synth.link_frame(synth.LINKTYPE_ETHERNET, with_options)) == bpf.SNAPLEN


def test_later_fragments_and_other_protocols_are_dropped() -> None:
    packet = bytearray(tcp(*V4, 40000, 25))
    packet[6:8] = (0x0010).to_bytes(2, "big")  # fragment offset 16
    assert run(ETHER, synth.link_frame(synth.LINKTYPE_ETHERNET, bytes(packet))) == 0
    icmp = bytearray(tcp(*V4, 40000, 25))
    icmp[9] = 1
    assert run(ETHER, synth.link_frame(synth.LINKTYPE_ETHERNET, bytes(icmp))) == 0
    arp = synth.arp_frame(1, b"\x02" * 6, "192.168.0.108", "192.168.0.1")
    assert run(ETHER, arp) == bpf.SNAPLEN
    assert run(ETHER, b"\xff" * 12 + b"\x88\xcc" + b"\0" * 40) == 0  # LLDP
    assert run(ETHER, b"\xff" * 10) == 0


def test_raw_ip_links() -> None:
    for hosts in (V4, V6):
        assert run(RAW, tcp(hosts[0], hosts[1], 40000, 587)) == bpf.SNAPLEN
        assert run(RAW, tcp(hosts[0], hosts[1], 40000, 80)) == 0


def test_every_jump_fits_and_too_many_ports_is_refused() -> None:
    for program in (ETHER, RAW, bpf.default_program(range(1000, 1030))):
        for _code, jt, jf, _k in program:
            assert 0 <= jt <= 255 and 0 <= jf <= 255
        assert program[-1][0] == bpf.RET
    with pytest.raises(ValueError, match="too many ports"):
        bpf.default_program(range(1000, 1100))


# -- the fanout program: which engine process a live packet goes to -------------------------

FANOUT = bpf.fanout_program(TCP_PORTS)


def dealt(packet: bytes, *, vlans: tuple[int, ...] = ()) -> int:
    """What the fanout program returns for an IP packet in an Ethernet frame, where the
    kernel has found its network header (after the VLAN tags it did not take off)."""
    ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    frame = synth.link_frame(synth.LINKTYPE_ETHERNET, packet, vlans=vlans)
    return run(FANOUT, frame, network=14 + 4 * len(vlans), protocol=ethertype)


@pytest.mark.parametrize("hosts", [V4, V6], ids=["IPv4", "IPv6"])
def test_fanout_deals_both_directions_of_a_client_to_one_engine(hosts) -> None:
    client, server = hosts
    for port in TCP_PORTS:
        to_server = dealt(tcp(client, server, 40000, port))
        assert dealt(tcp(server, client, port, 40000)) == to_server
        assert dealt(tcp(client, "198.51.100.99", 41000, port)) == to_server, "by client only"
    for port in (53, 67):  # identity: the client's DNS and DHCP go with its sessions
        query = synth.udp_packet(client, server, 50000, port, b"x" * 20)
        answer = synth.udp_packet(server, client, port, 50000, b"x" * 20)
        assert dealt(query) == dealt(answer) == dealt(tcp(client, server, 40000, 25))


def test_fanout_reads_from_the_network_header_whatever_the_link() -> None:
    """The kernel hands the program its own offsets: a tagged frame deals like an untagged
    one, and IPv4 options move the ports without moving the client."""
    packet = tcp(*V4, 40000, 25)
    assert dealt(packet, vlans=(10,)) == dealt(packet)
    options = bytearray(packet)
    options[0] = 0x46
    options[2:4] = (len(packet) + 4).to_bytes(2, "big")
    with_options = bytes(options[:20]) + b"\x01\x01\x01\x00" + bytes(options[20:])
    reply = tcp(V4[1], V4[0], 25, 40000)
    assert dealt(with_options) == dealt(reply)


def test_fanout_spreads_an_office_over_the_engines() -> None:
    """256 clients of one /24 (and of one IPv6 /64): every engine of 2, 4 or 8 gets a fair
    share, so a busy office is not all on one core."""
    for prefix in ("192.168.1.", "fd00::"):
        values = [dealt(tcp(f"{prefix}{n}", "198.51.100.7", 40000, 25)) for n in range(256)]
        for engines in (2, 4, 8):
            shares = [sum(1 for v in values if v % engines == e) for e in range(engines)]
            assert min(shares) >= 256 // engines // 2, (prefix, engines, shares)


def test_fanout_sends_what_is_not_ip_to_the_first_engine() -> None:
    arp = synth.arp_frame(1, synth.mac_for("192.168.1.10"), "192.168.1.10", "192.168.1.1")
    assert run(FANOUT, arp, network=14, protocol=0x0806) == 0


@pytest.mark.parametrize("vlans", [(), (10,)], ids=["untagged", "802.1Q"])
@pytest.mark.parametrize("hosts", [V4, V6], ids=["IPv4", "IPv6"])
def test_with_mirror_gre_and_the_mirror_ports_pass(vlans, hosts) -> None:
    """--mirror: ERSPAN and gretap (GRE), VXLAN and TZSP (UDP) reach the engine; without
    it the built-in filter keeps them out, as it keeps out other UDP and protocols."""
    mirror = bpf.default_program(TCP_PORTS, mirrors=STANDARD_MIRRORS)
    raw_mirror = bpf.default_program(TCP_PORTS, ethernet=False, mirrors=STANDARD_MIRRORS)
    gre = bytearray(tcp(*hosts, 40000, 443))
    gre[9 if hosts is V4 else 6] = 47
    packets = [bytes(gre), *(synth.udp_packet(*hosts, 50000, port, b"x" * 20)
                             for port in (4789, 8472, 37008))]  # fmt: skip
    for packet in packets:
        frame = synth.link_frame(synth.LINKTYPE_ETHERNET, packet, vlans=vlans)
        assert run(mirror, frame) == bpf.SNAPLEN
        assert run(ETHER, frame) == 0
        assert run(raw_mirror, packet) == bpf.SNAPLEN and run(RAW, packet) == 0
    for packet in (tcp(*hosts, 40000, 25), synth.udp_packet(*hosts, 50000, 53, b"q" * 20)):
        assert run(mirror, synth.link_frame(synth.LINKTYPE_ETHERNET, packet)) == bpf.SNAPLEN
    ntp = synth.udp_packet(*hosts, 50000, 123, b"x" * 20)
    assert run(mirror, synth.link_frame(synth.LINKTYPE_ETHERNET, ntp)) == 0


@pytest.mark.parametrize("hosts", [V4, V6], ids=["IPv4", "IPv6"])
def test_a_mirror_port_named_passes_besides_the_standard_ones(hosts) -> None:
    """--mirror-port tzsp:40000 --mirror-port vxlan:9000: those ports pass too, and only
    in the program given them."""
    named = MirrorPorts(vxlan=frozenset({4789, 8472, 9000}), tzsp=frozenset({37008, 40000}))
    program = bpf.default_program(TCP_PORTS, mirrors=named)
    for port in (4789, 8472, 9000, 37008, 40000):
        frame = synth.link_frame(
            synth.LINKTYPE_ETHERNET, synth.udp_packet(*hosts, 50000, port, b"x" * 20)
        )
        assert run(program, frame) == bpf.SNAPLEN, port
        standard = bpf.default_program(TCP_PORTS, mirrors=STANDARD_MIRRORS)
        assert run(standard, frame) == (0 if port in (9000, 40000) else bpf.SNAPLEN), port
    other = synth.udp_packet(*hosts, 50000, 9001, b"x" * 20)
    assert run(program, synth.link_frame(synth.LINKTYPE_ETHERNET, other)) == 0
