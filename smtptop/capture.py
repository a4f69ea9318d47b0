"""Capture sources: read pcap and pcapng files (optionally gzip-compressed).

The reader is our own raw record reader rather than scapy's packet classes: it hands the
engine ``(timestamp, link type, frame bytes)`` without dissecting anything, reads in large
chunks, and turns every way a file can be broken into a one-line :class:`CaptureError` or a
``truncated`` note, so that a bad file never produces a traceback and a cut file still yields
every complete record before the cut.  Given the engine's ports, it also hands over the
records the engine would skip without slicing them out (see :func:`prefilter`): on an
office's gateway, nearly all of them.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from itertools import islice
from struct import Struct
from typing import BinaryIO, cast

from smtptop import decode as dec
from smtptop.identity import ETH_ARP, PROTO_UDP
from smtptop.identity import PORTS as IDENTITY_PORTS
from smtptop.progress import data_size
from smtptop.rewind import Rewindable

CHUNK = 1 << 20
RAW_CHUNK = 1 << 16  # compressed bytes fed to zlib at a time
MAX_RECORD = 16 << 20  # a record claiming more than this is corruption, not a packet
# pcapng allows 2**32 interfaces a section, real files have a handful: past this many, an
# interface description is only counted, so a flood of them costs neither memory nor time.
MAX_INTERFACES = 65536
# A timestamp beyond +-2**40 s (about 34,800 years from 1970) is no clock's: an interface's
# offset or resolution is hostile.  Clamped, it stays a number every calendar function takes.
MAX_TS = float(1 << 40)
MIN_UNIT = 1e-18  # a finer tick cannot count to a minute in 64 bits
# A million empty records in a row (16 MB of headers that carry no packet) is zero fill or a
# decompression bomb, not a capture: nothing that follows is worth minutes of reading.
MAX_EMPTY_RUN = 1_000_000

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
SHB_TYPE = 0x0A0D0D0A
GZIP_MAGIC = b"\x1f\x8b"
STDIN, STDIN_NAME = "-", "standard input"  # the path that reads a stream, and its name
JUNK = "junk after the gzip data"

SKIP_EMPTY = "empty record"
SKIP_INTERFACE = "interface not kept"
# Skip reasons that mean a packet's link and network headers were read: a file that has
# none of them (and no SMTP) had nothing smtptop could decode.
DECODED = frozenset({dec.SKIP_NON_IP, dec.SKIP_NON_TCP, dec.SKIP_FRAGMENT, dec.SKIP_OTHER_PORT})
LINKTYPE_NAMES = {
    6: "IEEE802_5", 9: "PPP", 10: "FDDI", 50: "PPP_HDLC", 51: "PPP_ETHER", 104: "C_HDLC",
    105: "IEEE802_11", 107: "FRELAY", 119: "PRISM_HEADER", 127: "IEEE802_11_RADIOTAP",
    163: "IEEE802_11_AVS", 187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX", 192: "PPI",
    195: "IEEE802_15_4_WITHFCS", 220: "USB_LINUX_MMAPPED", 252: "WIRESHARK_UPPER_PDU",
    253: "NETLINK",
    **{147 + n: f"USER{n}" for n in range(16)},
}  # fmt: skip


class CaptureError(Exception):
    """A capture file that cannot be read at all; the message names the file and the reason."""


# One captured frame as the engine wants it: (timestamp, link type, frame bytes).  A plain
# tuple, because a million of them are made per million packets and a tuple costs a fifth of
# a dataclass instance.  A record the reader's prefilter set aside is (timestamp, its length,
# the skip reason): the engine still counts it and sees its time, but nothing was sliced.
Frame = tuple[float, int, bytes | str]
# Given a buffer, a record's offset in it and its length: the engine's skip reason for it, or
# None when the engine must see it.
Prefilter = Callable[[bytes, int, int], str | None]

_ETHER_IPV4 = Struct("!12xHBxH2xHxB10xHH")  # up to the ports of option-less IPv4
_ETHER_IPV4_LEN = 38
_U16 = Struct("!H")
_U32 = Struct("<I")
_U32BE = Struct("!I")
_IPV4 = Struct("!BxH2xHxB")  # version/IHL, total length, fragment field, protocol
_IPV6 = Struct("!B3xHB")  # version, payload length, next header
_PORTS = Struct("!HH")


def decodable(linktype: int) -> bool:
    """Whether the decoder knows this link type (asked of the decoder, not a second list)."""
    return dec.link(linktype, b"")[1] != dec.LINK_UNSUPPORTED


def prefilter(
    linktype: int, ports: frozenset[int], mirrors: frozenset[int] = dec.STANDARD_MIRRORS.udp()
) -> Prefilter | None:
    """The fast skip test for one link type's records, or None for link types it does not
    read.  It answers from fixed offsets, so that the reader need not slice nor the engine
    decode the bulk of an office's traffic (HTTPS, QUIC, IPv6, VLANs); it gives exactly the
    reason :func:`smtptop.decode.decode` would, and leaves every record it is unsure of, and
    every one :mod:`smtptop.identity` reads (ARP, and UDP on its ports), and every one a
    mirror may have sent (GRE, and UDP to the ``mirrors`` ports), to the engine."""
    if linktype == dec.LINKTYPE_ETHERNET:
        return _ethernet_prefilter(ports, mirrors)
    if not decodable(linktype):
        return lambda buf, pos, size: dec.SKIP_LINKTYPE

    def skip(buf: bytes, pos: int, size: int) -> str | None:
        offset, ethertype = _link(linktype, buf, pos, size)
        return _network(buf, pos, size, offset, ethertype, ports, mirrors)

    return skip


def _ethernet_prefilter(ports: frozenset[int], mirrors: frozenset[int]) -> Prefilter:
    """Ethernet's skip test, with option-less IPv4 read in one unpack: nearly all traffic."""
    unpack = _ETHER_IPV4.unpack_from
    identity = IDENTITY_PORTS

    def skip(buf: bytes, pos: int, size: int) -> str | None:
        if size >= _ETHER_IPV4_LEN:
            ethertype, vihl, total, frag, proto, sport, dport = unpack(buf, pos)
            if sport in ports or dport in ports:
                return None  # SMTP, or bytes that look like it: the engine decides
            if ethertype == dec.ETH_IPV4 and vihl == 0x45 and total >= 20:
                if frag & 0x3FFF:
                    return dec.SKIP_FRAGMENT
                if proto == dec.PROTO_TCP:
                    return None if total < 40 or 14 + total > size else dec.SKIP_OTHER_PORT
                if proto == PROTO_UDP and (sport in identity or dport in identity):
                    return None
                if proto == dec.PROTO_GRE or (proto == PROTO_UDP and dport in mirrors):
                    return None  # a mirror's: the engine takes the frame out and decides
                return dec.SKIP_NON_TCP
        offset, ethertype = _ether(buf, pos, size, 12)
        return _network(buf, pos, size, offset, ethertype, ports, mirrors)

    return skip


def _link(linktype: int, buf: bytes, pos: int, size: int) -> tuple[int, int]:
    """:func:`smtptop.decode.link` on a record in place: the network offset and ethertype."""
    if linktype == dec.LINKTYPE_LINUX_SLL:
        return _ether(buf, pos, size, 14)
    if linktype == dec.LINKTYPE_LINUX_SLL2:
        if size < 20:
            return 0, dec.LINK_TRUNCATED
        return _vlans(buf, pos, size, 20, _U16.unpack_from(buf, pos)[0])
    if linktype in (dec.LINKTYPE_NULL, dec.LINKTYPE_LOOP):
        if size < 4:
            return 0, dec.LINK_TRUNCATED
        family = (_U32BE if linktype == dec.LINKTYPE_LOOP else _U32).unpack_from(buf, pos)[0]
        if linktype == dec.LINKTYPE_NULL and family > 0xFFFF:
            family = _U32BE.unpack_from(buf, pos)[0]
        if family in dec.NULL_IPV4:
            return 4, dec.ETH_IPV4
        return (4, dec.ETH_IPV6) if family in dec.NULL_IPV6 else (0, 0)
    if not size:  # raw IP, the only link types left
        return 0, dec.LINK_TRUNCATED
    return 0, dec.ETH_IPV6 if buf[pos] >> 4 == 6 else dec.ETH_IPV4


def _ether(buf: bytes, pos: int, size: int, type_offset: int) -> tuple[int, int]:
    """An Ethernet-like header whose ethertype is at ``type_offset``, read as the decoder does."""
    if size < type_offset + 2:
        return 0, dec.LINK_TRUNCATED
    return _vlans(buf, pos, size, type_offset + 2, _U16.unpack_from(buf, pos + type_offset)[0])


def _vlans(buf: bytes, pos: int, size: int, offset: int, ethertype: int) -> tuple[int, int]:
    """Past any stack of 802.1Q / 802.1ad tags, as the decoder goes."""
    while ethertype in dec.VLAN_TYPES:
        if size < offset + 4:
            return 0, dec.LINK_TRUNCATED
        ethertype = _U16.unpack_from(buf, pos + offset + 2)[0]
        offset += 4
    return offset, ethertype


def _network(
    buf: bytes,
    pos: int,
    size: int,
    offset: int,
    ethertype: int,
    ports: frozenset[int],
    mirrors: frozenset[int],
) -> str | None:
    """The skip reason from the network header on, in the order the decoder checks."""
    if ethertype == dec.ETH_IPV4:
        if size < offset + 20:
            return None
        vihl, total, frag, proto = _IPV4.unpack_from(buf, pos + offset)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or total < ihl:
            return None
        if frag & 0x3FFF:
            return dec.SKIP_FRAGMENT
        start, end = offset + ihl, offset + total
    elif ethertype == dec.ETH_IPV6:
        if size < offset + 40:
            return None
        version, plen, proto = _IPV6.unpack_from(buf, pos + offset)
        start, end = offset + 40, offset + 40 + plen
        if version >> 4 != 6 or end > size:
            return None
        if proto in dec.IPV6_EXTENSIONS or proto == dec.IPV6_AH:
            return None  # the slow way: the decoder walks the extension headers
        if proto == dec.IPV6_FRAGMENT:
            return dec.SKIP_FRAGMENT if start + 8 <= end else dec.SKIP_NON_TCP
    elif ethertype == ETH_ARP or ethertype < 0:
        return None
    else:
        return dec.SKIP_NON_IP
    if proto == dec.PROTO_TCP:
        if end > size or start + 20 > end:
            return None
        sport, dport = _PORTS.unpack_from(buf, pos + start)
        return None if sport in ports or dport in ports else dec.SKIP_OTHER_PORT
    if proto == PROTO_UDP and start + 8 <= min(end, size):
        sport, dport = _PORTS.unpack_from(buf, pos + start)
        if sport in IDENTITY_PORTS or dport in IDENTITY_PORTS or dport in mirrors:
            return None
    return None if proto == dec.PROTO_GRE else dec.SKIP_NON_TCP


def linktype_name(linktype: int) -> str:
    name = LINKTYPE_NAMES.get(linktype)
    return f"link type {linktype} ({name})" if name else f"link type {linktype}"


def undecoded(skipped: dict[str, int], smtp_packets: int) -> str | None:
    """Why no packet was decoded, when none was, else None: an empty report must say whether
    the network had no SMTP or smtptop could read none of what it was given."""
    counts = {reason: n for reason, n in skipped.items() if n}
    if smtp_packets or not counts or counts.keys() & DECODED:
        return None
    if counts.keys() == {dec.SKIP_LINKTYPE}:
        return None  # the file's own note names the link types
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(counts.items()))
    return f"no packet could be decoded (skipped: {reasons})"


MIRROR_HINT_RECORDS = 10_000  # read again from each file when it held no SMTP


def mirror_hint(paths: Sequence[str], ports: frozenset[int]) -> str | None:
    """When the files held no SMTP: the UDP port where their first records carry SMTP in a
    TZSP or VXLAN wrapping, as a line that says how to name it; else None.  A mirror sent
    to a port of its own reads as "not TCP" until it is named.  Standard input cannot be
    read again, and a file that cannot be read is already said to be so."""
    found: Counter[tuple[str, int]] = Counter()
    for path in paths:
        if path != STDIN:
            _count_mirrors(path, ports, found)
    if not found:
        return None
    (kind, port), count = found.most_common(1)[0]
    return (f"{count:,} packets to UDP port {port} carry SMTP inside {kind.upper()}: if a "
            f"mirror sends there, name the port with --mirror-port {kind}:{port}")  # fmt: skip


def _count_mirrors(path: str, ports: frozenset[int], found: Counter[tuple[str, int]]) -> None:
    """Count the first records of ``path`` that carry SMTP to a mirror port not named."""
    try:
        records = iter(CaptureFile(path))
        with closing(records):
            for _, linktype, frame in islice(records, MIRROR_HINT_RECORDS):
                hit = dec.named_mirror(linktype, frame, ports) if isinstance(frame, bytes) else None
                if hit is not None:
                    found[hit] += 1
    except CaptureError:
        return  # the file's own note says why it cannot be read


class CaptureFile:
    """Iterate the records of one capture file.

    ``truncated`` explains an early end; :meth:`notes` gives every warning about the file
    (cut, capped, clamped, skipped, or nothing in it), and ``skipped`` counts the records the
    reader itself set aside, by reason, for the engine's ``skipped``.  ``max_bytes`` stops
    reading after that many bytes of capture data (after decompression).  Given the engine's
    ``ports`` (and the UDP ports of ``mirrors``), the reader hands the records the engine
    would skip over as skipped ones (see :data:`Frame` and :func:`prefilter`) instead of
    slicing them out."""

    def __init__(
        self,
        path: str,
        max_bytes: int | None = None,
        *,
        ports: frozenset[int] | None = None,
        mirrors: dec.MirrorPorts = dec.STANDARD_MIRRORS,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.ports = ports
        self.mirrors = mirrors
        self.truncated: str | None = None
        self.records = 0
        self.format = ""
        self.skipped: dict[str, int] = {}
        self.interfaces_dropped = 0
        self.clamped = 0  # timestamps, and interface offsets or resolutions, out of range
        self.zero_fill = False  # a run of empty records stopped the reading
        self.linktypes: set[int] = set()  # of the packets (pcap) or interfaces (pcapng)
        self._raw: BinaryIO | None = None
        self._stream: _Input | None = None
        self._open()

    def _fail(self, reason: str) -> CaptureError:
        self.close()
        return CaptureError(f"{self.path}: {reason}")

    def _open(self) -> None:
        if self.path == STDIN:
            self.path = STDIN_NAME  # in every message about it
            raw: BinaryIO = cast(BinaryIO, Rewindable(os.fdopen(os.dup(0), "rb", buffering=0)))
        else:
            raw = self._open_file()
        self._raw = raw
        self.size = 0 if isinstance(raw, Rewindable) else os.fstat(raw.fileno()).st_size
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        probe = _Input(raw, gzipped=gzipped, limit=None)
        head = _read_exact(probe, 4)
        if len(head) < 4 and probe.problem:
            raise self._fail(probe.problem)
        raw.seek(0)
        if isinstance(raw, Rewindable):
            raw.replayed()
        self._stream = _Input(raw, gzipped=gzipped, limit=self.max_bytes)
        if not head:
            raise self._fail("empty file")
        if head in PCAP_MAGICS:
            self.format = "pcap"
        elif head == PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raise self._fail("not a pcap or pcapng capture (unknown magic number)")

    def _open_file(self) -> BinaryIO:
        if os.path.isdir(self.path):
            raise CaptureError(f"{self.path}: is a directory, not a capture file")
        try:
            return open(self.path, "rb")  # closed by close()
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such file") from None
        except PermissionError:
            raise CaptureError(f"{self.path}: permission denied") from None
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open ({exc.strerror})") from None

    @property
    def position(self) -> int:
        """Bytes of the underlying file consumed so far, for progress displays."""
        if isinstance(self._raw, Rewindable):
            return self._raw.taken
        if self._raw is None or self._raw.closed:
            return self.size
        return self._raw.tell()

    @property
    def unpacked(self) -> int:
        """Bytes of capture data read so far: after decompression, which a bomb multiplies."""
        return self._stream.unpacked if self._stream is not None else 0

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()

    def notes(self, skipped: dict[str, int] | None = None, smtp_packets: int = 0) -> list[str]:
        """One line for each thing a reader of the report must know about this file; with
        the engine's figures for it (``skipped`` by reason, SMTP packets), also why no
        packet could be decoded, if none could."""
        notes = []
        stream = self._stream
        problem, capped = (stream.problem, stream.capped) if stream else ("", False)
        if capped:  # whatever the reader said of the record the cap cut is no news
            notes.append(
                f"{self.path}: stopped after {data_size(self.unpacked)} of capture data "
                f"(--max-bytes), {self.records:,} records read; the rest was not"
            )
        elif problem == JUNK:
            notes.append(f"{self.path}: {problem} ignored ({self.records:,} records read)")
        elif problem:
            where = f" ({self.truncated})" if self.truncated else ""
            notes.append(f"{self.path}: truncated: {problem} after {self.records:,} "
                         f"records{where}")  # fmt: skip
        elif self.truncated:
            notes.append(f"{self.path}: truncated: {self.truncated}")
        if self.zero_fill:
            notes.append(
                f"{self.path}: stopped after {self.records:,} records: {MAX_EMPTY_RUN:,} empty "
                "records in a row (zero fill, not packets)"
            )
        if self.interfaces_dropped:
            notes.append(
                f"{self.path}: {self.interfaces_dropped:,} interface descriptions beyond the "
                f"first {MAX_INTERFACES:,} ignored; "
                f"{self.skipped.get(SKIP_INTERFACE, 0):,} packets on them skipped"
            )
        if self.clamped:
            notes.append(
                f"{self.path}: {self.clamped:,} timestamps or interface clock settings out of "
                "range (beyond +-2^40 s, or ticks finer than 10^-18 s) were clamped"
            )
        if not self.records and not self.skipped and not self.truncated and not self.zero_fill:
            notes.append(f"no packets in {self.path}")
        elif self.records and self.linktypes and not any(map(decodable, self.linktypes)):
            kinds = ", ".join(linktype_name(t) for t in sorted(self.linktypes))
            are = "are not ones" if len(self.linktypes) > 1 else "is not one"
            notes.append(f"{self.path}: {kinds} {are} smtptop decodes: "
                         f"{self.records:,} packets skipped")  # fmt: skip
        elif skipped is not None and (why := undecoded(skipped, smtp_packets)):
            notes.append(f"{self.path}: {why}")
        return notes

    def __iter__(self) -> Generator[Frame, None, None]:
        try:
            if self.format == "pcap":
                yield from self._pcap_records()
            else:
                yield from self._pcapng_records()
        except (OSError, EOFError, zlib.error) as exc:
            self.truncated = f"read error after {self.records} records ({exc})"
        finally:
            self.close()

    def _skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def _prefilter(self, linktype: int) -> Prefilter | None:
        if self.ports is None:
            return None
        return prefilter(linktype, self.ports, self.mirrors.udp())

    def _pcap_records(self) -> Iterator[Frame]:
        """Records straight out of large chunks: the per-record path is one unpack, one
        slice and one tuple, since it runs for every packet of multi-gigabyte files."""
        stream = self._stream
        assert stream is not None
        header = _read_exact(stream, 24)
        if len(header) < 24:
            raise self._fail("file ends inside the pcap file header")
        order, unit = PCAP_MAGICS[header[:4]]
        linktype = struct.unpack(order + "I", header[20:24])[0] & 0xFFFF
        self.linktypes.add(linktype)
        skip = self._prefilter(linktype)
        unpack = struct.Struct(order + "IIII").unpack_from
        read = stream.read
        buf, pos, size, count = b"", 0, 0, 0
        empties, run, run_start = 0, 0, -1  # empty records: in all, and the latest run
        try:
            while True:
                if size - pos < 16:
                    more = read(CHUNK)
                    if not more:
                        if size - pos:
                            self.truncated = (
                                f"file ends inside a record header after {count} records"
                            )
                        return
                    buf, pos = buf[pos:] + more, 0
                    size = len(buf)
                    continue
                sec, frac, caplen, _origlen = unpack(buf, pos)
                if not caplen:  # nothing for the engine; a long run of them is zero fill
                    pos += 16
                    empties += 1
                    if run_start != count:
                        run_start, run = count, 0
                    run += 1
                    if run == MAX_EMPTY_RUN:
                        self.zero_fill = True
                        return
                    continue
                end = pos + 16 + caplen
                if end > size:
                    if caplen > MAX_RECORD:
                        self.truncated = (
                            f"record {count + 1} claims {caplen} bytes: corrupt from there on"
                        )
                        return
                    more = read(max(CHUNK, end - size))
                    if not more:
                        self.truncated = f"file ends inside record {count + 1}"
                        return
                    buf, pos = buf[pos:] + more, 0
                    size = len(buf)
                    continue
                count += 1
                if skip is not None and (reason := skip(buf, pos + 16, caplen)) is not None:
                    yield sec + frac * unit, caplen, reason
                else:
                    yield sec + frac * unit, linktype, buf[pos + 16 : end]
                pos = end
        finally:
            self.records = count
            if empties:
                self._skip(SKIP_EMPTY, empties)

    def _pcapng_records(self) -> Iterator[Frame]:
        """Blocks straight out of large chunks, as for pcap: a block costs one unpack and a
        few comparisons, and an interface description past the bound nothing more."""
        stream = self._stream
        assert stream is not None
        read = stream.read
        head = struct.Struct("<II")
        packet = struct.Struct("<IIII")
        order = "<"
        # (linktype, ts unit, ts offset, prefilter)
        interfaces: list[tuple[int, float, float, Prefilter | None]] = []
        declared = 0  # interface descriptions in this section, kept or not
        buf, pos, size = b"", 0, 0
        limit = MAX_TS
        while True:
            if size - pos < 12:
                more = read(CHUNK)
                if not more:
                    if size - pos:
                        self.truncated = (
                            f"file ends inside a block header after {self.records} records"
                        )
                    return
                buf, pos = buf[pos:] + more, 0
                size = len(buf)
                continue
            block_type, block_len = head.unpack_from(buf, pos)
            if block_type == SHB_TYPE:  # the same in either byte order
                bom = buf[pos + 8 : pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    self.truncated = "section header with an unknown byte-order mark"
                    return
                head, packet = struct.Struct(order + "II"), struct.Struct(order + "IIII")
                block_type, block_len = head.unpack_from(buf, pos)
                interfaces, declared = [], 0
            if block_len < 12 or block_len % 4 or block_len > MAX_RECORD:
                self.truncated = (
                    f"block of impossible length {block_len} after {self.records} records"
                )
                return
            end = pos + block_len
            if end > size:
                more = read(max(CHUNK, end - size))
                if not more:
                    self.truncated = f"file ends inside a block after {self.records} records"
                    return
                buf, pos = buf[pos:] + more, 0
                size = len(buf)
                continue
            if block_type == 6 or block_type == 2:
                if block_len >= 32:
                    iface, hi, lo, caplen = packet.unpack_from(buf, pos + 8)
                    if block_type == 2:
                        iface &= 0xFFFF
                    if caplen > block_len - 32 or iface >= declared:
                        self.truncated = f"malformed packet block after {self.records} records"
                        return
                    if iface >= len(interfaces):
                        self._skip(SKIP_INTERFACE)
                    elif not caplen:
                        self._skip(SKIP_EMPTY)
                    else:
                        linktype, unit, offset, skip = interfaces[iface]
                        ts = ((hi << 32) | lo) * unit + offset
                        if not -limit <= ts <= limit:
                            ts = limit if ts > 0 else -limit
                            self.clamped += 1
                        self.records += 1
                        if skip is not None and (reason := skip(buf, pos + 28, caplen)) is not None:
                            yield ts, caplen, reason
                        else:
                            yield ts, linktype, buf[pos + 28 : pos + 28 + caplen]
            elif block_type == 1:
                declared += 1
                if len(interfaces) >= MAX_INTERFACES:
                    self.interfaces_dropped += 1
                elif block_len >= 20:
                    try:
                        kept = self._interface(order, buf[pos + 8 : end - 4])
                        interfaces.append((*kept, self._prefilter(kept[0])))
                    except ValueError as exc:
                        self.truncated = f"{exc} after {self.records} records"
                        return
            elif block_type == 3 and block_len >= 16 and interfaces:
                (origlen,) = struct.unpack_from(order + "I", buf, pos + 8)
                data = buf[pos + 12 : min(pos + 12 + origlen, end - 4)]
                if data:
                    self.records += 1
                    yield 0.0, interfaces[0][0], data
                else:
                    self._skip(SKIP_EMPTY)
            pos = end

    def _interface(self, order: str, body: bytes) -> tuple[int, float, float]:
        """Parse an Interface Description Block: link type, timestamp unit and offset (a
        unit or offset out of range is clamped and counted)."""
        linktype = struct.unpack_from(order + "H", body, 0)[0]
        unit, offset = 1e-6, 0.0
        pos = 8
        while pos + 4 <= len(body):
            code, length = struct.unpack_from(order + "HH", body, pos)
            value = body[pos + 4 : pos + 4 + length]
            if code == 0:
                break
            if len(value) < length:
                raise ValueError("interface block with an option cut short")
            if code == 9 and length >= 1:
                res = value[0]
                unit = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0**-res
            elif code == 14 and length >= 8:
                offset = float(struct.unpack(order + "q", value[:8])[0])
            pos += 4 + length + (-length % 4)
        if unit < MIN_UNIT or not -MAX_TS <= offset <= MAX_TS:
            self.clamped += 1
            unit, offset = max(unit, MIN_UNIT), min(max(offset, -MAX_TS), MAX_TS)
        self.linktypes.add(linktype)
        return linktype, unit, offset


class _Input:
    """The capture's bytes: the file itself, or its gzip members decompressed in turn.

    Unlike :class:`gzip.GzipFile`, a read hands over everything that decompressed before a
    cut, corrupt data or junk after the last member, and notes the trouble in ``problem``
    instead of raising it with the last chunk lost: a cut ``.gz`` yields every complete
    record before the cut.  ``limit`` caps the bytes handed over (``capped`` says a cap
    left data unread)."""

    __slots__ = ("_gzipped", "_inflate", "_pending", "_raw", "capped", "limit", "problem",
                 "unpacked")  # fmt: skip

    def __init__(self, raw: BinaryIO, *, gzipped: bool, limit: int | None) -> None:
        self._raw = raw
        self._gzipped = gzipped
        self._inflate: zlib._Decompress | None = None  # None: between members
        self._pending = b""  # compressed bytes read but not yet fed to zlib
        self.limit = limit
        self.unpacked = 0
        self.capped = False
        self.problem = ""

    def read(self, size: int) -> bytes:
        if self.limit is not None:
            room = self.limit - self.unpacked
            if room <= 0:
                self.capped = self.capped or bool(self._read(1))
                return b""
            size = min(size, room)
        data = self._read(size)
        self.unpacked += len(data)
        return data

    def _read(self, size: int) -> bytes:
        if not self._gzipped:
            return self._raw.read(size)
        parts = []
        while size > 0 and not self.problem:
            if not self._pending:
                self._pending = self._raw.read(RAW_CHUNK)
                if not self._pending:
                    if self._inflate is not None:
                        self.problem = "the gzip data is cut short"
                    break
            if self._inflate is None and not self._next_member():
                continue
            inflate = self._inflate
            assert inflate is not None
            try:
                data = inflate.decompress(self._pending, size)
            except zlib.error as exc:
                self.problem = f"corrupt gzip data ({exc})"
                break
            parts.append(data)
            size -= len(data)
            self._pending = inflate.unconsumed_tail
            if inflate.eof:
                self._pending = inflate.unused_data
                self._inflate = None
        return b"".join(parts)

    def _next_member(self) -> bool:
        """Start the next gzip member, skip zero padding (as gzip does), or note junk."""
        if len(self._pending) < 2:
            more = self._raw.read(RAW_CHUNK)
            if more:
                self._pending += more
                return False
        if self._pending[:2] == GZIP_MAGIC:
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return True
        if not self._pending.strip(b"\0"):
            self._pending = b""
        else:
            self.problem = JUNK
        return False


def _read_exact(stream: _Input, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream."""
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


class PcapWriter:
    """Append frames to a classic pcap file, flushed on demand, so that an interrupted
    capture still leaves a readable file (evidence for the ISP or a delisting request)."""

    def __init__(self, out: BinaryIO, path: str, linktype: int, snaplen: int = 262144) -> None:
        """Write to ``out``, a file already made (safely, see :mod:`smtptop.files`) for
        ``path``, which names it in messages; the writer owns it from now on."""
        self.path = path
        self._file = out
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        self._record = struct.Struct("<IIII")
        self.records = 0

    def write(self, ts: float, data: bytes) -> None:
        seconds = int(ts)
        micros = min(999999, round((ts - seconds) * 1e6))
        self._file.write(self._record.pack(seconds, micros, len(data), len(data)) + data)
        self.records += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
