"""The built-in kernel filter, run by a small BPF interpreter on generated frames.

The same programs are attached to real sockets in the live-capture tests; here every branch
(VLAN depths, IPv4/IPv6, TCP/UDP, fragments, ARP, raw IP links) is checked frame by frame.
"""

from __future__ import annotations

import pytest
import synth
from bpf_vm import run

from smtptop import bpf

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
