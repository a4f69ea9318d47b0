"""Classic BPF programs for the capture socket, assembled here instead of by libpcap.

A fresh Debian machine has no libpcap, and scapy compiles filter expressions through it, so
the default kernel filter is built by this module: TCP on the SMTP ports and UDP on the few
ports identity detection reads (DNS, DHCP, NetBIOS, mDNS, LLMNR), plus ARP; over IPv4 and
IPv6, behind up to two VLAN tags that the kernel did not strip.  The kernel drops everything
else before it is copied to us, which is what keeps a busy SPAN port affordable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from smtptop.decode import PROTO_GRE, MirrorPorts

# Opcodes (linux/filter.h)
LD_ABS = 0x20  # A = word at [k]
LDH_ABS = 0x28  # A = half word at [k]
LDB_ABS = 0x30  # A = byte at [k]
LDH_IND = 0x48  # A = half word at [X + k]
LDX_MSH = 0xB1  # X = 4 * ([k] & 0x0f)
JEQ = 0x15  # pc += (A == k) ? jt : jf
JSET = 0x45  # pc += (A & k) ? jt : jf
AND = 0x54  # A &= k
JA = 0x05  # pc += k
RET = 0x06  # accept k bytes (0 drops)
RET_A = 0x16  # return A
TAX = 0x07  # X = A
RSH = 0x74  # A >>= k
XOR_X = 0xAC  # A ^= X
# Loads at these offsets (k as unsigned) read the kernel's own view of the packet:
# relative to the network header wherever the link header ends, and the protocol
# (the ethertype, after the kernel has taken off a VLAN tag).
NETWORK = 0xFFF00000  # SKF_NET_OFF
PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + SKF_AD_PROTOCOL

SNAPLEN = 262144
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
UDP_IDENTITY_PORTS = (53, 67, 68, 137, 5353, 5355)

Instruction = tuple[int, int, int, int]  # code, jt, jf, k


@dataclass(frozen=True, slots=True)
class _Jump:
    code: int
    k: int
    true: str | None  # label, or None for the next instruction
    false: str | None


class _Assembler:
    """Labels instead of relative offsets; forward jumps only, as BPF requires."""

    def __init__(self) -> None:
        self.items: list[Instruction | _Jump | str] = []

    def op(self, code: int, k: int = 0) -> None:
        self.items.append((code, 0, 0, k))

    def jump(self, code: int, k: int, true: str | None, false: str | None = None) -> None:
        self.items.append(_Jump(code, k, true, false))

    def goto(self, label: str) -> None:
        self.items.append(_Jump(JA, 0, label, None))

    def label(self, name: str) -> None:
        self.items.append(name)

    def program(self) -> list[Instruction]:
        where: dict[str, int] = {}
        count = 0
        for item in self.items:
            if isinstance(item, str):
                where[item] = count
            else:
                count += 1
        out: list[Instruction] = []
        for item in self.items:
            if isinstance(item, str):
                continue
            if not isinstance(item, _Jump):
                out.append(item)
                continue
            pc = len(out)
            jt, jf = (
                0 if name is None else where[name] - pc - 1 for name in (item.true, item.false)
            )
            if jt < 0 or jf < 0:
                raise ValueError("BPF jumps go forward only")
            if item.code == JA:
                out.append((JA, 0, 0, jt))
            elif jt > 255 or jf > 255:
                raise ValueError("too many ports for one BPF program")
            else:
                out.append((item.code, jt, jf, item.k))
        return out


def _port_test(
    asm: _Assembler, offset: int, ports: Iterable[int], tag: str, *, indexed: bool
) -> None:
    """Accept if the source or destination port (at ``offset``) is one of ``ports``."""
    load = LDH_IND if indexed else LDH_ABS
    for field in (offset, offset + 2):
        asm.op(load, field)
        for port in ports:
            asm.jump(JEQ, port, f"accept{tag}")
    asm.goto(f"reject{tag}")


def _ip_versions(
    asm: _Assembler,
    base: int,
    tag: str,
    tcp: tuple[int, ...],
    udp: tuple[int, ...],
    gre: bool,
) -> None:
    """IPv4 and IPv6 at ``base``: TCP to ``tcp`` ports or UDP to ``udp`` ports (and, with
    ``gre``, GRE, which carries ERSPAN and gretap mirrors).

    Each block ends in its own accept and reject, so that no jump is longer than BPF allows.
    """
    asm.label(f"v4{tag}")
    asm.op(LDB_ABS, base + 9)
    if gre:
        asm.jump(JEQ, PROTO_GRE, f"accept{tag}")
    asm.jump(JEQ, 6, f"v4tcp{tag}")
    asm.jump(JEQ, 17, f"v4udp{tag}", f"reject{tag}")
    for proto, ports in ((f"v4tcp{tag}", tcp), (f"v4udp{tag}", udp)):
        asm.label(proto)
        asm.op(LDH_ABS, base + 6)
        asm.jump(JSET, 0x1FFF, f"reject{tag}")  # a later fragment carries no ports
        asm.op(LDX_MSH, base)
        _port_test(asm, base, ports, tag, indexed=True)
    asm.label(f"v6{tag}")
    asm.op(LDB_ABS, base + 6)
    if gre:
        asm.jump(JEQ, PROTO_GRE, f"accept{tag}")
    asm.jump(JEQ, 6, f"v6tcp{tag}")
    asm.jump(JEQ, 17, f"v6udp{tag}", f"reject{tag}")
    for proto, ports in ((f"v6tcp{tag}", tcp), (f"v6udp{tag}", udp)):
        asm.label(proto)
        _port_test(asm, base + 40, ports, tag, indexed=False)
    asm.label(f"accept{tag}")
    asm.op(RET, SNAPLEN)
    asm.label(f"reject{tag}")
    asm.op(RET, 0)


def default_program(
    tcp_ports: Iterable[int],
    udp_ports: Iterable[int] = UDP_IDENTITY_PORTS,
    *,
    ethernet: bool = True,
    mirrors: MirrorPorts | None = None,
) -> list[Instruction]:
    """The kernel filter for an Ethernet (or, with ``ethernet=False``, raw IP) interface;
    with ``mirrors``, also what mirrors send (GRE, and UDP to those TZSP and VXLAN ports),
    for the engine to take the mirrored frames out."""
    mirror = mirrors is not None
    udp_ports = (*udp_ports, *(mirrors.udp() if mirrors is not None else ()))
    tcp, udp = tuple(sorted(set(tcp_ports))), tuple(sorted(set(udp_ports)))
    asm = _Assembler()
    if not ethernet:
        asm.op(LDB_ABS, 0)
        asm.op(AND, 0xF0)
        asm.jump(JEQ, 0x40, "v4r")
        asm.jump(JEQ, 0x60, "v6r", "rejectr")
        _ip_versions(asm, 0, "r", tcp, udp, mirror)
        return asm.program()
    for depth, base in enumerate((14, 18, 22)):
        tag = str(depth)
        asm.label(f"eth{depth}")
        asm.op(LDH_ABS, base - 2)
        if depth < 2:
            for vlan in VLAN_TYPES:
                asm.jump(JEQ, vlan, f"eth{depth + 1}")
        asm.jump(JEQ, 0x0800, f"v4{tag}")
        asm.jump(JEQ, 0x86DD, f"v6{tag}")
        asm.jump(JEQ, 0x0806, f"accept{tag}", f"reject{tag}")
        _ip_versions(asm, base, tag, tcp, udp, mirror)
    return asm.program()


def fanout_program(
    tcp_ports: Iterable[int], udp_ports: Iterable[int] = UDP_IDENTITY_PORTS
) -> list[Instruction]:
    """The program that deals packets out to a PACKET_FANOUT group's sockets (the kernel
    takes what it returns modulo their number): by the client's address, the end whose
    port is not a server's (SMTP, or the DNS, DHCP... ports identity reads), folded to one
    byte, so that each engine has every connection of its hosts in both directions.  Loads
    are relative to the network header, which the kernel has found whatever the link type
    and VLAN tags; what is not IP (ARP) goes to the first socket."""
    servers = tuple(sorted(set(tcp_ports) | set(udp_ports)))
    asm = _Assembler()
    asm.op(LDH_ABS, PROTOCOL)
    asm.jump(JEQ, 0x0800, "v4")
    asm.jump(JEQ, 0x86DD, "v6", "other")
    for version, protocol_at, fragment, sources, destinations in (
        ("v4", 9, True, 12, 16),
        ("v6", 6, False, 20, 36),  # the last word of each address
    ):
        asm.label(version)
        asm.op(LDB_ABS, NETWORK + protocol_at)
        asm.jump(JEQ, 6, f"{version}ports")
        asm.jump(JEQ, 17, f"{version}ports", f"{version}source")
        asm.label(f"{version}ports")
        if fragment:
            asm.op(LDH_ABS, NETWORK + 6)
            asm.jump(JSET, 0x1FFF, f"{version}source")  # a later fragment carries no ports
            asm.op(LDX_MSH, NETWORK)
            asm.op(LDH_IND, NETWORK)
        else:
            asm.op(LDH_ABS, NETWORK + 40)
        for port in servers:
            asm.jump(JEQ, port, f"{version}destination")
        asm.label(f"{version}source")
        asm.op(LD_ABS, NETWORK + sources)
        asm.goto("fold")
        asm.label(f"{version}destination")
        asm.op(LD_ABS, NETWORK + destinations)
        asm.goto("fold")
    asm.label("fold")
    for shift in (16, 8):
        asm.op(TAX)
        asm.op(RSH, shift)
        asm.op(XOR_X)
    asm.op(RET_A)
    asm.label("other")
    asm.op(RET, 0)
    return asm.program()
