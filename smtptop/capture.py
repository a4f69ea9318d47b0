"""Capture sources: read pcap and pcapng files (optionally gzip-compressed).

The reader is our own raw record reader rather than scapy's packet classes: it hands the
engine ``(timestamp, link type, frame bytes)`` without dissecting anything, reads in large
chunks, and turns every way a file can be broken into a one-line :class:`CaptureError` or a
``truncated`` note, so that a bad file never produces a traceback and a cut file still yields
every complete record before the cut.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 20
MAX_RECORD = 16 << 20  # a record claiming more than this is corruption, not a packet

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"


class CaptureError(Exception):
    """A capture file that cannot be read at all; the message names the file and the reason."""


# One captured frame as the engine wants it: (timestamp, link type, frame bytes).  A plain
# tuple, because a million of them are made per million packets and a tuple costs a fifth of
# a dataclass instance.
Frame = tuple[float, int, bytes]


class CaptureFile:
    """Iterate the records of one capture file; ``truncated`` explains an early end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.truncated: str | None = None
        self.records = 0
        self.format = ""
        self._raw: BinaryIO | None = None
        self._stream: BinaryIO | None = None
        self._open()

    def _fail(self, reason: str) -> CaptureError:
        self.close()
        return CaptureError(f"{self.path}: {reason}")

    def _open(self) -> None:
        if os.path.isdir(self.path):
            raise CaptureError(f"{self.path}: is a directory, not a capture file")
        try:
            self._raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such file") from None
        except PermissionError:
            raise CaptureError(f"{self.path}: permission denied") from None
        except OSError as exc:
            raise CaptureError(f"{self.path}: cannot open ({exc.strerror})") from None
        self.size = os.fstat(self._raw.fileno()).st_size
        head = self._raw.read(4)
        self._raw.seek(0)
        if head[:2] == GZIP_MAGIC:
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            try:
                head = self._stream.read(4)
            except (OSError, EOFError, zlib.error) as exc:
                raise self._fail(f"broken gzip data ({exc})") from None
            self._stream.seek(0)
        else:
            self._stream = self._raw
        if not head:
            raise self._fail("empty file")
        if head in PCAP_MAGICS:
            self.format = "pcap"
        elif head == PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raise self._fail("not a pcap or pcapng capture (unknown magic number)")

    @property
    def position(self) -> int:
        """Bytes of the underlying file consumed so far, for progress displays."""
        if self._raw is None or self._raw.closed:
            return self.size
        return self._raw.tell()

    def close(self) -> None:
        for stream in (self._stream, self._raw):
            if stream is not None:
                stream.close()

    def __iter__(self) -> Iterator[Frame]:
        try:
            if self.format == "pcap":
                yield from self._pcap_records()
            else:
                yield from self._pcapng_records()
        except (OSError, EOFError, zlib.error) as exc:
            self.truncated = f"read error after {self.records} records ({exc})"
        finally:
            self.close()

    def _chunks(self) -> _ChunkReader:
        assert self._stream is not None
        return _ChunkReader(self._stream)

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
        unpack = struct.Struct(order + "IIII").unpack_from
        read = stream.read
        buf, pos, size, count = b"", 0, 0, 0
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
                yield sec + frac * unit, linktype, buf[pos + 16 : end]
                pos = end
        finally:
            self.records = count

    def _pcapng_records(self) -> Iterator[Frame]:
        reader = self._chunks()
        order = "<"
        interfaces: list[tuple[int, float, float]] = []  # (linktype, ts unit, ts offset)
        while True:
            head = reader.take(8)
            if head is None:
                if reader.leftover:
                    self.truncated = f"file ends inside a block header after {self.records} records"
                return
            if head[:4] == PCAPNG_SHB:
                bom = reader.peek(4)
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    self.truncated = "section header with an unknown byte-order mark"
                    return
                interfaces = []
            block_type, block_len = struct.unpack(order + "II", head)
            if block_len < 12 or block_len % 4 or block_len > MAX_RECORD:
                self.truncated = (
                    f"block of impossible length {block_len} after {self.records} records"
                )
                return
            body = reader.take(block_len - 8)
            if body is None:
                self.truncated = f"file ends inside a block after {self.records} records"
                return
            body = body[:-4]  # trailing copy of the block length
            if block_type == 1 and len(body) >= 8:
                try:
                    interfaces.append(_interface(order, body))
                except ValueError as exc:
                    self.truncated = f"{exc} after {self.records} records"
                    return
            elif block_type in (6, 2) and len(body) >= 20:
                iface, hi, lo, caplen = struct.unpack_from(order + "IIII", body, 0)
                if block_type == 2:
                    iface &= 0xFFFF
                if iface >= len(interfaces) or caplen > len(body) - 20:
                    self.truncated = f"malformed packet block after {self.records} records"
                    return
                linktype, unit, offset = interfaces[iface]
                self.records += 1
                yield ((hi << 32) | lo) * unit + offset, linktype, body[20 : 20 + caplen]
            elif block_type == 3 and len(body) >= 4 and interfaces:
                (origlen,) = struct.unpack_from(order + "I", body, 0)
                self.records += 1
                yield 0.0, interfaces[0][0], body[4 : 4 + origlen]


def _interface(order: str, body: bytes) -> tuple[int, float, float]:
    """Parse an Interface Description Block: link type, timestamp unit and offset."""
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
    return linktype, unit, offset


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream (gzip reads may be short)."""
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


class _ChunkReader:
    """Hands out exact-size slices from a stream read in large chunks."""

    __slots__ = ("_buf", "_eof", "_pos", "_stream")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._eof = False

    @property
    def leftover(self) -> int:
        return len(self._buf) - self._pos

    def _fill(self, need: int) -> bool:
        while len(self._buf) - self._pos < need and not self._eof:
            more = self._stream.read(max(CHUNK, need))
            if not more:
                self._eof = True
                break
            self._buf = self._buf[self._pos :] + more
            self._pos = 0
        return len(self._buf) - self._pos >= need

    def take(self, size: int) -> bytes | None:
        if len(self._buf) - self._pos < size and not self._fill(size):
            return None
        start = self._pos
        self._pos = start + size
        return self._buf[start : self._pos]

    def peek(self, size: int) -> bytes:
        self._fill(size)
        return self._buf[self._pos : self._pos + size]


class PcapWriter:
    """Append frames to a classic pcap file, flushed on demand, so that an interrupted
    capture still leaves a readable file (evidence for the ISP or a delisting request)."""

    def __init__(self, path: str, linktype: int, snaplen: int = 262144) -> None:
        self.path = path
        try:
            self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise CaptureError(f"{path}: cannot write ({exc.strerror})") from None
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
