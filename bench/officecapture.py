"""Generate an office's capture as a SPAN port sees it: mostly not SMTP, for the prefilter.

``bench/gencapture.py`` writes SMTP alone, which says nothing about what smtptop costs on a
real gateway, where some 97 % of the packets are web traffic and chatter the engine skips.
This writer takes gencapture's SMTP sessions (about 4 % of the packets, in their own time
order) and weaves between them, at times spread over the same span:

* HTTPS over TCP 443 (full-size data and bare ACKs), from the office's ~200 PCs to some
  hundred web servers, some of it on 802.1Q-tagged and a little on QinQ-tagged frames;
* QUIC over UDP 443; DNS questions to the office resolver and its answers (A records);
* ARP requests and replies; IPv6 HTTPS and QUIC, ICMPv6 behind a hop-by-hop header (the
  decoder's slow way), ICMP echoes and spanning-tree frames (not IP).

Seeded and deterministic: the same arguments write the same bytes.

Usage::

    python bench/officecapture.py OUT.pcap --packets 2000000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gencapture

SMTP_SHARE = 0.035
GATEWAY_MAC = gencapture.GATEWAY_MAC
RESOLVER = bytes((192, 168, 1, 1))
MLD_GROUP = bytes.fromhex("ff020000000000000000000000000016")
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
WEB_NAMES = (
    "www.example.com", "cdn.example.net", "mail.example.org", "login.example.com",
    "docs.example.net", "updates.example.org", "api.example.com", "static.example.net",
)  # fmt: skip


def _ipv4(src: bytes, dst: bytes, proto: int, body: bytes) -> bytes:
    return _IPV4.pack(0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0, src, dst) + body


def _ipv6(src: bytes, dst: bytes, nxt: int, body: bytes) -> bytes:
    return _IPV6.pack(6 << 28, len(body), nxt, 64, src, dst) + body


def _tcp(sport: int, dport: int, seq: int, payload: bytes) -> bytes:
    flags = 0x18 if payload else 0x10
    return _TCP.pack(sport, dport, seq, seq ^ 0x5A5A5A5A, 5 << 4, flags, 502, 0, 0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return _UDP.pack(sport, dport, 8 + len(payload), 0) + payload


def _dns_name(name: str) -> bytes:
    return b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\0"


class Office:
    """The office's hosts and servers, and one frame of each kind of non-SMTP traffic."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pcs = [bytes((192, 168, n, h)) for n in (1, 2, 3) for h in range(20, 90)]
        self.macs = [bytes((0x02, 0, 0, 0, n, h)) for n in (1, 2, 3) for h in range(20, 90)]
        self.web = [bytes((198, 18, 1 + n // 250, n % 250 + 1)) for n in range(120)]
        self.pcs6 = [bytes.fromhex(f"20010db8000100000000000000{n:06x}") for n in range(60)]
        self.web6 = [bytes.fromhex(f"20010db8ffff00000000000000{n:06x}") for n in range(40)]
        self.noise = rng.randbytes(4096)
        kinds: list[tuple[float, Callable[[], bytes]]] = [
            (0.48, self.https),
            (0.22, self.quic),
            (0.03, self.dns),
            (0.03, self.arp),
            (0.08, self.tagged),
            (0.01, self.qinq),
            (0.08, self.https6),
            (0.03, self.quic6),
            (0.01, self.icmpv6),
            (0.02, self.ping),
            (0.01, self.stp),
        ]
        self.kinds = [kind for _, kind in kinds]
        self.weights = [weight for weight, _ in kinds]

    def frames(self, count: int) -> list[bytes]:
        return [kind() for kind in self.rng.choices(self.kinds, self.weights, k=count)]

    def _payload(self, size: int) -> bytes:
        start = self.rng.randrange(len(self.noise) - size)
        return self.noise[start : start + size]

    def _pc(self) -> tuple[bytes, bytes]:
        index = self.rng.randrange(len(self.pcs))
        return self.pcs[index], self.macs[index]

    def _ether(self, mac: bytes, ethertype: int, body: bytes, outbound: bool) -> bytes:
        dst, src = (GATEWAY_MAC, mac) if outbound else (mac, GATEWAY_MAC)
        return dst + src + struct.pack("!H", ethertype) + body

    def _web_packet(self) -> tuple[bytes, bool]:
        """An HTTPS segment as IPv4: server data (full size) or the client's ACK."""
        rng = self.rng
        pc, _ = self._pc()
        server, port = rng.choice(self.web), 49152 + rng.randrange(16000)
        seq = rng.getrandbits(32)
        if rng.random() < 0.6:
            return _ipv4(server, pc, 6, _tcp(443, port, seq, self._payload(1460))), False
        return _ipv4(pc, server, 6, _tcp(port, 443, seq, b"")), True

    def https(self) -> bytes:
        packet, outbound = self._web_packet()
        return self._ether(self._pc()[1], 0x0800, packet, outbound)

    def tagged(self) -> bytes:
        packet, outbound = self._web_packet()
        vlan = struct.pack("!HH", 10 + self.rng.randrange(3), 0x0800)
        return self._ether(self._pc()[1], 0x8100, vlan + packet, outbound)

    def qinq(self) -> bytes:
        packet, outbound = self._web_packet()
        tags = struct.pack("!HHHH", 100, 0x8100, 10, 0x0800)
        return self._ether(self._pc()[1], 0x88A8, tags + packet, outbound)

    def quic(self) -> bytes:
        rng = self.rng
        pc, mac = self._pc()
        server, port = rng.choice(self.web), 49152 + rng.randrange(16000)
        if rng.random() < 0.7:
            body = _udp(443, port, self._payload(1200 + rng.randrange(150)))
            return self._ether(mac, 0x0800, _ipv4(server, pc, 17, body), False)
        body = _udp(port, 443, self._payload(40 + rng.randrange(60)))
        return self._ether(mac, 0x0800, _ipv4(pc, server, 17, body), True)

    def dns(self) -> bytes:
        rng = self.rng
        pc, mac = self._pc()
        port, ident = 49152 + rng.randrange(16000), rng.getrandbits(16)
        qtype = rng.choice((1, 1, 28))
        question = _dns_name(rng.choice(WEB_NAMES)) + struct.pack("!HH", qtype, 1)
        if rng.random() < 0.5:
            message = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
            return self._ether(mac, 0x0800, _ipv4(pc, RESOLVER, 17, _udp(port, 53, message)), True)
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + rng.choice(self.web)
        message = struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + answer
        return self._ether(mac, 0x0800, _ipv4(RESOLVER, pc, 17, _udp(53, port, message)), False)

    def arp(self) -> bytes:
        pc, mac = self._pc()
        target = self.rng.choice(self.pcs)
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + pc + bytes(6) + target
        return b"\xff" * 6 + mac + b"\x08\x06" + body + bytes(18)

    def https6(self) -> bytes:
        rng = self.rng
        pc, server = rng.choice(self.pcs6), rng.choice(self.web6)
        port, seq = 49152 + rng.randrange(16000), rng.getrandbits(32)
        mac = self._pc()[1]
        if rng.random() < 0.6:
            packet = _ipv6(server, pc, 6, _tcp(443, port, seq, self._payload(1440)))
            return self._ether(mac, 0x86DD, packet, False)
        return self._ether(mac, 0x86DD, _ipv6(pc, server, 6, _tcp(port, 443, seq, b"")), True)

    def quic6(self) -> bytes:
        rng = self.rng
        pc, server = rng.choice(self.pcs6), rng.choice(self.web6)
        body = _udp(443, 49152 + rng.randrange(16000), self._payload(1200))
        return self._ether(self._pc()[1], 0x86DD, _ipv6(server, pc, 17, body), False)

    def icmpv6(self) -> bytes:
        """An MLD report behind a hop-by-hop header: the decoder walks it the slow way."""
        hop_by_hop = bytes((58, 0, 5, 2, 0, 0, 1, 0))
        body = hop_by_hop + bytes((143, 0, 0, 0, 0, 0, 0, 1)) + self._payload(20)
        packet = _ipv6(self.rng.choice(self.pcs6), MLD_GROUP, 0, body)
        return self._ether(self._pc()[1], 0x86DD, packet, True)

    def ping(self) -> bytes:
        pc, mac = self._pc()
        body = bytes((8, 0, 0, 0)) + self._payload(60)
        return self._ether(mac, 0x0800, _ipv4(pc, self.rng.choice(self.web), 1, body), True)

    def stp(self) -> bytes:
        bpdu = b"\x42\x42\x03" + bytes(35)
        return b"\x01\x80\xc2\x00\x00\x00" + GATEWAY_MAC + struct.pack("!H", len(bpdu)) + bpdu


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(microseconds, frame) of the little-endian microsecond pcap gencapture writes."""
    with path.open("rb") as capture:
        capture.read(24)
        while header := capture.read(16):
            sec, usec, caplen, _ = _RECORD.unpack(header)
            yield sec * 1_000_000 + usec, capture.read(caplen)


def generate(path: Path, packets: int, seed: int) -> tuple[int, int]:
    """Write the capture to ``path``; return (packets, SMTP packets) written."""
    rng = random.Random(seed)
    office = Office(rng)
    with tempfile.TemporaryDirectory() as scratch:
        smtp_path = Path(scratch) / "smtp.pcap"
        gencapture.generate(smtp_path, max(1, int(packets * SMTP_SHARE)), seed)
        smtp = list(_records(smtp_path))
    ratio = (packets - len(smtp)) / len(smtp)
    written, previous = 0, smtp[0][0] - 1_000
    record = _RECORD.pack
    with path.open("wb", buffering=1 << 20) as out:
        out.write(gencapture._PCAP_HEADER)
        for index, (at, frame) in enumerate(smtp):
            fillers = office.frames(max(0, round((index + 1) * ratio) - (written - index)))
            step = (at - previous) / (len(fillers) + 1)
            for number, filler in enumerate(fillers, 1):
                sec, usec = divmod(previous + int(step * number), 1_000_000)
                out.write(record(sec, usec, len(filler), len(filler)) + filler)
            sec, usec = divmod(at, 1_000_000)
            out.write(record(sec, usec, len(frame), len(frame)) + frame)
            written += len(fillers) + 1
            previous = at
    return written, len(smtp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the pcap file to write")
    parser.add_argument("--packets", type=int, default=2_000_000, help="about this many")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    written, smtp = generate(args.out, args.packets, args.seed)
    print(
        f"{args.out}: {written:,} packets, {smtp:,} of them SMTP ({smtp / written:.1%}),"
        f" in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
