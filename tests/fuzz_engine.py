"""Fuzz the engine with mutated frames and mutated capture files, checking its invariants.

The engine reads bytes chosen by the spambot it hunts, so every input must leave it in one
piece: no exception escapes :meth:`Analyzer.packet` and none is caught inside it either
(``stats.errors`` stays 0: a caught exception is a bug that lost a packet), :class:`CaptureFile`
raises only :class:`CaptureError` or ends with ``truncated`` set, every buffer and collection
stays within its configured bound, every opened session is closed exactly once, the counts
add up, and no input takes longer than a time limit.

Usage (see tests/FUZZING.md)::

    python tests/fuzz_engine.py run --inputs 1000000 --jobs 2 --out /tmp/fuzz
    python tests/fuzz_engine.py atheris -- -runs=100000 /tmp/corpus   # coverage-guided
    python tests/fuzz_engine.py resources --minutes 10 --jobs 2 --out /tmp/res  # time, memory
    python tests/fuzz_engine.py replay FILE...
    python tests/fuzz_engine.py minimize FILE SIGNATURE

One fuzz input is bytes: a flags byte (bit 0: a capture file rather than frames; bit 1: tiny
limits, so that every bound is reached), then either the capture file, or frames as records
of (link type index, time step, length, frame).  The same bytes replay the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import importlib
import ipaddress
import json
import math
import multiprocessing
import os
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import synth

import smtptop
from smtptop.analyzer import DEFAULT_PORTS, Analyzer, EngineConfig, FlowClosed, FlowOpened
from smtptop.capture import CaptureError, CaptureFile
from smtptop.decode import decode
from smtptop.model import Host, Model, ModelLimits, Session
from smtptop.model import apply as apply_batch
from smtptop.smtp import ParserLimits
from smtptop.tcp import ReassemblyLimits
from smtptop.wire import encode

TARGET_CAPTURE = 0x01
TINY_LIMITS = 0x02
LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147, 9)  # the last two: unsupported
START = 1_800_000_000.0
RECORD = struct.Struct("<BBH")
MAX_FRAME = 9000
TIME_LIMIT = 2.0  # seconds one input may take
MAX_HOSTILE_SEGMENTS = 20_000  # out of order, in one resource input

DEFAULT = (EngineConfig(), ModelLimits())
TINY = (
    EngineConfig(
        idle_timeout=30.0,
        linger=5.0,
        sweep_interval=1.0,
        max_connections=4,
        smtp=ParserLimits(
            max_line=64, max_pending=4, max_header_bytes=64, max_header_lines=3, max_reply_lines=3
        ),
        tcp=ReassemblyLimits(max_ooo_bytes=512, max_ooo_segments=4),
    ),
    ModelLimits(
        max_sessions=2,
        max_hosts=2,
        max_servers_per_host=1,
        max_transcript_lines=12,
        max_transcript_bytes=400,
        max_addresses=2,
        max_replies=3,
        max_helos=1,
        max_sender_domains=1,
        max_refusals=1,
        max_identities=2,
    ),
)

PACKAGE = os.path.join(os.path.dirname(os.path.realpath(smtptop.__file__)), "")

# Signatures of findings whose cause is a known, not yet fixed bug in smtptop/, each with the
# regression test (xfail, strict) that shows it: the smoke test and atheris mode go on past
# these and stop at anything else.  Empty: every bug found so far is fixed.
KNOWN_BUGS: dict[str, str] = {}


class Hang(BaseException):
    """Raised by the alarm when one input runs past the time limit (not an Exception, so
    that the engine's own ``except Exception`` cannot swallow it)."""


# --- inputs ------------------------------------------------------------------------------------

Record = tuple[int, int, bytes]  # link type index, time step, frame


@dataclass(slots=True)
class FuzzInput:
    """A decoded fuzz input: frames for the engine, or the bytes of a capture file."""

    flags: int
    frames: list[Record] = field(default_factory=list)
    capture: bytes = b""

    @property
    def tiny(self) -> bool:
        return bool(self.flags & TINY_LIMITS)

    def encode(self) -> bytes:
        if self.flags & TARGET_CAPTURE:
            return bytes([self.flags]) + self.capture
        parts = [bytes([self.flags])]
        for link, step, frame in self.frames:
            frame = frame[:MAX_FRAME]
            parts.append(RECORD.pack(link % 256, step % 256, len(frame)) + frame)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> FuzzInput:
        """Any bytes are an input: a record cut short keeps what is there."""
        if not data:
            return cls(0)
        flags = data[0]
        if flags & TARGET_CAPTURE:
            return cls(flags, capture=data[1:])
        frames: list[Record] = []
        pos = 1
        while pos + RECORD.size <= len(data):
            link, step, size = RECORD.unpack_from(data, pos)
            pos += RECORD.size
            frames.append((link, step, data[pos : pos + size]))
            pos += size
        return cls(flags, frames=frames)


def timeline(frames: Sequence[Record]) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, link type, frame): steps of 1/16 s, long jumps past the idle timeout,
    and steps back in time, as merged or badly clocked captures have."""
    ts = START
    for link, step, frame in frames:
        if step < 240:
            ts += step / 16
        elif step < 255:
            ts += (step - 239) * 100.0
        else:
            ts -= 50.0
        yield ts, LINKTYPES[link % len(LINKTYPES)], frame


def _step(previous: float, ts: float) -> int:
    delta = ts - previous
    if delta < 0:
        return 255
    if delta >= 15:
        return min(254, 239 + round(delta / 100.0))
    return min(239, round(delta * 16))


def _records(linktype: int, frames: Sequence[synth.Frame]) -> list[Record]:
    link = LINKTYPES.index(linktype)
    records, previous = [], frames[0].ts if frames else START
    for frame in frames:
        records.append((link, _step(previous, frame.ts), frame.data))
        previous = frame.ts
    return records


# --- seeds ------------------------------------------------------------------------------------

DIALOGUE = [
    ("S", b"220 mx1.example.net ESMTP Postfix\r\n"),
    ("C", b"EHLO pc7.office.lan\r\n"),
    ("S", b"250-mx1.example.net\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"),
    ("C", b"MAIL FROM:<alice@office.example>\r\nRCPT TO:<bob@example.org>\r\n"),
    ("C", b"RCPT TO:<carol@example.org>\r\n"),
    ("S", b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <carol@example.org>: unknown\r\n"),
    ("C", b"DATA\r\n"),
    ("S", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    ("C", b"Subject: report\r\nFrom: a@b\r\n\r\nbody\r\n..dot\r\n.\r\n"),
    ("S", b"250 2.0.0 Ok: queued as 1A2B\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 2.0.0 Bye\r\n"),
]
AUTH_BDAT = [
    ("S", b"220 smtp.example.com ESMTP\r\n"),
    ("C", b"EHLO [192.168.1.7]\r\n"),
    ("S", b"250-smtp.example.com\r\n250-CHUNKING\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n"),
    ("C", b"AUTH LOGIN\r\n"),
    ("S", b"334 VXNlcm5hbWU6\r\n"),
    ("C", b"YWxpY2U=\r\n"),
    ("S", b"334 UGFzc3dvcmQ6\r\n"),
    ("C", b"c2VjcmV0\r\n"),
    ("S", b"235 2.7.0 Authentication successful\r\n"),
    ("C", b"MAIL FROM:<alice@example.com> BODY=BINARYMIME\r\n"),
    ("S", b"250 ok\r\n"),
    ("C", b"RCPT TO:<x@example.net>\r\n"),
    ("S", b"451 4.7.1 greylisted\r\n"),
    ("C", b"RCPT TO:<y@example.net>\r\n"),
    ("S", b"250 ok\r\n"),
    ("C", b"BDAT 12\r\nSubject: hi\r\n"),
    ("S", b"250 12 octets\r\n"),
    ("C", b"BDAT 5 LAST\r\nbody!"),
    ("S", b"250 queued\r\n"),
    ("C", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
    ("S", b"503 already authenticated\r\n"),
    ("C", b"RSET\nNOOP\nQUIT\n"),
    ("S", b"250 ok\n250 ok\n221 bye\n"),
]
STARTTLS = [
    ("S", b"220 mx.example.org ESMTP\r\n"),
    ("C", b"EHLO localhost\r\n"),
    ("S", b"250-mx.example.org\r\n250 STARTTLS\r\n"),
    ("C", b"STARTTLS\r\n"),
    ("S", b"220 2.0.0 Ready to start TLS\r\n"),
    ("C", b"\x16\x03\x01\x00\x2a" + bytes(range(42))),
    ("S", b"\x16\x03\x03\x00\x10" + bytes(16)),
]
REFUSED = [
    (
        "S",
        b"554 5.7.1 Service unavailable; client [192.168.1.7] blocked using zen.spamhaus.org\r\n",
    ),
    ("C", b"HELO 192-168-1-7.dyn.example\r\n"),
    ("S", b"503 5.5.1 no greeting\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 bye\r\n"),
]
PREGREET = [
    ("C", b"EHLO paypal.com\r\nMAIL FROM:<x@paypal.com>\r\n", 0.1),
    ("S", b"220 mx ESMTP\r\n", 5.0),
    ("S", b"250 mx\r\n250 ok\r\n"),
    ("C", b"RCPT TO:<a@b>\r\nDATA\r\n"),
    ("S", b"421 4.7.0 too fast\r\n"),
]
IMPLICIT_TLS = [
    ("C", b"\x16\x03\x01\x00\x10" + bytes(16)),
    ("S", b"\x16\x03\x03\x00\x08" + bytes(8)),
]
LINKS: list[tuple[int, dict[str, object]]] = [
    (synth.LINKTYPE_ETHERNET, {}),
    (synth.LINKTYPE_ETHERNET, {"vlans": (125,)}),
    (synth.LINKTYPE_ETHERNET, {"vlans": (100, 200)}),
    (synth.LINKTYPE_LINUX_SLL, {}),
    (synth.LINKTYPE_LINUX_SLL, {"vlans": (7,)}),
    (synth.LINKTYPE_LINUX_SLL2, {}),
    (synth.LINKTYPE_RAW, {}),
    (synth.LINKTYPE_NULL, {}),
    (synth.LINKTYPE_LOOP, {}),
]
PC, PC_MAC, ROUTER = "192.168.1.7", bytes.fromhex("001422010203"), "192.168.1.1"


def _conversation(
    script: list, linktype: int, extra: dict, *, ipv6: bool, port: int = 25, seed: int = 0
) -> synth.Conversation:
    client, server = ("fd00::7", "2001:db8::9") if ipv6 else (PC, "198.51.100.9")
    conv = synth.Conversation(
        client,
        50000 + seed,
        server,
        port,
        start=START,
        linktype=linktype,
        hop_by_hop=ipv6,
        pad=True,
        seed=seed,
        **extra,
    )
    conv.smtp(script)
    return conv


def _smtp_seeds() -> list[list[Record]]:
    seeds = []
    for index, (linktype, extra) in enumerate(LINKS):
        for ipv6 in (False, True):
            conv = _conversation(DIALOGUE, linktype, extra, ipv6=ipv6, seed=index)
            conv.close()
            seeds.append(_records(linktype, conv.frames))
    eth = synth.LINKTYPE_ETHERNET
    for number, (script, port) in enumerate(
        [(AUTH_BDAT, 587), (STARTTLS, 25), (REFUSED, 25), (PREGREET, 2525), (IMPLICIT_TLS, 465)]
    ):
        conv = _conversation(script, eth, {}, ipv6=number % 2 == 1, port=port, seed=number)
        conv.reset("server")
        seeds.append(_records(eth, conv.frames))
    # TCP mishaps: mid-stream start, reordering, a lost segment, conflicting overlaps.
    conv = _conversation(DIALOGUE, eth, {"mss": 8}, ipv6=False, seed=20)
    conv.inject("C", 3, b"XXXXXXXXXXXX")
    conv.close()
    frames = synth.swap(conv.frames, conv.segments[2].frame, conv.segments[5].frame)
    seeds.append(_records(eth, frames))
    seeds.append(_records(eth, synth.drop(frames, conv.segments[9])[3:]))
    seeds.append(_records(eth, synth.duplicate(frames, conv.segments[4])))
    refused = synth.Conversation(PC, 40000, "203.0.113.5", 25, start=START)
    refused.refused()
    silent = synth.Conversation(PC, 40001, "203.0.113.6", 25, start=START + 1)
    silent.unanswered()
    seeds.append(_records(eth, synth.merge(refused.frames, silent.frames)))
    return seeds


def _dns_name(text: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".") if p) + b"\0"


def _dns(flags: int, questions: Sequence[bytes], answers: Sequence[bytes] = ()) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, flags, len(questions), len(answers), 0, 0)
    return header + b"".join([*questions, *answers])


def _rr(owner: bytes, rtype: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, 120, len(rdata)) + rdata


def _netbios(host: bytes, suffix: int) -> bytes:
    raw = host.ljust(15, b" ") + bytes([suffix])
    encoded = bytes(0x41 + (b >> 4 if i % 2 == 0 else b & 15) for b in raw for i in (0, 1))
    return b"\x20" + encoded + b"\0"


def _bootp(op: int, options: bytes, *, yiaddr: str = "0.0.0.0") -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        op,
        1,
        6,
        0,
        0x3903F326,
        0,
        0x8000,
        bytes(4),
        ipaddress.ip_address(yiaddr).packed,
        bytes(4),
        bytes(4),
        PC_MAC,
        b"",
        b"",
    )
    return header + b"\x63\x82\x53\x63" + options + b"\xff"


def _identity_seed() -> list[Record]:
    """The broadcast chatter identity.observe reads: DHCP, DNS, NBNS, mDNS, LLMNR, ARP."""
    ip4 = ipaddress.ip_address(PC).packed

    def opt(code: int, value: bytes) -> bytes:
        return bytes([code, len(value)]) + value

    reverse = _dns_name("7.1.168.192.in-addr.arpa")
    payloads = [
        (
            "0.0.0.0",
            "255.255.255.255",
            68,
            67,
            _bootp(
                1,
                opt(53, b"\x03")
                + opt(50, ip4)
                + opt(12, b"WXPANNA")
                + opt(81, b"\x04\x00\x00\x07WXPANNA\x06studio\x03lan\x00"),
            ),
        ),
        (ROUTER, PC, 67, 68, _bootp(2, opt(53, b"\x05") + opt(12, b"wxpanna"), yiaddr=PC)),
        (PC, ROUTER, 53000, 53, _dns(0x0100, [_dns_name("example.org") + b"\x00\x0f\x00\x01"])),
        (
            ROUTER,
            PC,
            53,
            53001,
            _dns(
                0x8180,
                [reverse + b"\x00\x0c\x00\x01"],
                [_rr(b"\xc0\x0c", 12, _dns_name("pc7.office.lan"))],
            ),
        ),
        (ROUTER, PC, 53, 53002, _dns(0x8183, [_dns_name("nx.example") + b"\x00\x0f\x00\x01"])),
        (
            PC,
            "192.168.1.255",
            137,
            137,
            _dns(
                0x2910,
                [_netbios(b"WXPANNA", 0x00) + b"\x00\x20\x00\x01"],
                [_rr(b"\xc0\x0c", 0x20, b"\x00\x00" + ip4)],
            ),
        ),
        (
            PC,
            "224.0.0.251",
            5353,
            5353,
            _dns(0x8400, [], [_rr(_dns_name("wxpanna.local"), 1, ip4, 0x8001)]),
        ),
        (PC, "224.0.0.252", 5355, 5355, _dns(0x8000, [], [_rr(_dns_name("wxpanna"), 1, ip4)])),
        (
            "fe80::7",
            "ff02::fb",
            5353,
            5353,
            _dns(
                0x8400,
                [],
                [_rr(_dns_name("wxpanna.local"), 28, ipaddress.ip_address("fe80::7").packed)],
            ),
        ),
    ]
    frames = []
    for number, (src, dst, sport, dport, payload) in enumerate(payloads):
        packet = synth.udp_packet(src, dst, sport, dport, payload, hop_by_hop=":" in src)
        frame = synth.link_frame(synth.LINKTYPE_ETHERNET, packet, src_mac=PC_MAC)
        frames.append(synth.Frame(START + number, frame))
    frames.append(synth.Frame(START + 20, synth.arp_frame(1, PC_MAC, PC, ROUTER)))
    frames.append(synth.Frame(START + 21, synth.arp_frame(2, PC_MAC, PC, ROUTER, vlans=(5,))))
    return _records(synth.LINKTYPE_ETHERNET, frames)


def _capture_seeds(engine: Sequence[list[Record]]) -> list[bytes]:
    """Capture files in every format the reader knows, holding seed frames."""
    frames = [synth.Frame(ts, frame) for ts, _, frame in timeline(engine[0])]
    small = [synth.Frame(ts, frame) for ts, _, frame in timeline(engine[-1][:8])]
    files = [
        synth.pcap_bytes(frames, synth.LINKTYPE_ETHERNET),
        synth.pcap_bytes(small, synth.LINKTYPE_ETHERNET, nanosecond=True, big_endian=True),
        synth.pcap_bytes(small, synth.LINKTYPE_ETHERNET, snaplen=60),
        synth.pcapng_bytes(frames, synth.LINKTYPE_ETHERNET),
        synth.pcapng_bytes(small, synth.LINKTYPE_ETHERNET, tsresol=6, big_endian=True),
        synth.pcapng_bytes(small, synth.LINKTYPE_ETHERNET)
        + synth.pcapng_bytes(small, synth.LINKTYPE_RAW),
        _pcapng_odd_blocks(small),
    ]
    files += [gzip.compress(data, mtime=0) for data in files[:2] + files[3:5]]
    return files


def _pcapng_odd_blocks(frames: Sequence[synth.Frame]) -> bytes:
    """Simple and obsolete packet blocks, an unknown block and IDB options (tsresol with the
    power-of-two bit, tsoffset), which synth does not write."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(
        1,
        struct.pack("<HHI", 1, 0, 0)
        + struct.pack("<HHB3x", 9, 1, 0x94)
        + struct.pack("<HHq", 14, 8, 3600)
        + struct.pack("<HH", 0, 0),
    )
    parts = [shb, idb, block(0x0BAD, b"unknown block")]
    for number, frame in enumerate(frames):
        data = frame.data
        if number % 2:
            parts.append(block(3, struct.pack("<I", len(data)) + data))
        else:
            parts.append(
                block(2, struct.pack("<HHIIII", 0, 0, 0, number, len(data), len(data)) + data)
            )
    return b"".join(parts)


@dataclass(slots=True)
class Corpus:
    engine: list[list[Record]]
    captures: list[bytes]


_CORPUS: Corpus | None = None


def corpus() -> Corpus:
    """The seed corpus, built once per process."""
    global _CORPUS
    if _CORPUS is None:
        engine = _smtp_seeds()
        identities = _identity_seed()
        engine.append(identities)
        engine.append(identities[:4] + engine[0] + identities[4:])
        _CORPUS = Corpus(engine, _capture_seeds(engine))
    return _CORPUS


def seed_inputs() -> list[bytes]:
    """Every seed as a fuzz input, with default and with tiny limits."""
    seeds = corpus()
    inputs = []
    for flags in (0, TINY_LIMITS):
        inputs += [FuzzInput(flags, frames=list(s)).encode() for s in seeds.engine]
        inputs += [FuzzInput(flags | TARGET_CAPTURE, capture=c).encode() for c in seeds.captures]
    return inputs


# --- invariants -------------------------------------------------------------------------------


@dataclass(slots=True)
class Finding:
    """One broken invariant.  ``signature`` groups findings with the same cause."""

    signature: str
    detail: str


def _exception_signature(kind: str, exc: BaseException | None = None, text: str = "") -> str:
    """Exception type and the innermost smtptop function it passed through."""
    if exc is not None:
        frames = traceback.extract_tb(exc.__traceback__)
        name = type(exc).__name__
    else:
        lines = text.strip().splitlines()
        name = lines[-1].split(":", 1)[0].rsplit(".", 1)[-1] if lines else "?"
        frames = [
            traceback.FrameSummary(line.split('"')[1], 0, line.rsplit(" in ", 1)[-1])
            for line in lines
            if line.strip().startswith('File "')
        ]
    place = next(
        (f"{Path(f.filename).name}:{f.name}" for f in reversed(frames) if _ours(f.filename)),
        "?",
    )
    return f"{kind}:{name}@{place}"


def _ours(filename: str) -> bool:
    """Whether a frame's file is in the smtptop package: judged by the package's own folder,
    since a test file's path contains "smtptop" too when the checkout is named so (a plain
    ``git clone`` names it smtptop)."""
    return os.path.realpath(filename).startswith(PACKAGE)


class Checker:
    """Runs one input through the engine and collects every broken invariant."""

    def __init__(self, tiny: bool) -> None:
        config, limits = TINY if tiny else DEFAULT
        self.config, self.limits = config, limits
        self.analyzer = Analyzer(config, self._caught)
        self.stats = self.analyzer.stats
        self.tracebacks: list[str] = []
        self.model = Model(limits=limits)
        self.model.on_session_closed.append(self._check_session)
        self.packets = 0
        self.findings: list[Finding] = []
        self.opened: set[int] = set()
        self.closed: set[int] = set()
        self.conflicts = 0

    def _caught(self, message: str) -> None:
        """The analyzer tells of an exception it caught from inside its ``except`` block,
        so the traceback is still there to keep."""
        self.tracebacks.append(traceback.format_exc())

    def fail(self, signature: str, detail: str) -> None:
        if all(f.signature != signature for f in self.findings):
            self.findings.append(Finding(signature, detail))

    def feed(self, ts: float, linktype: int, frame: bytes) -> None:
        self.packets += 1
        try:
            self.analyzer.packet(ts, linktype, frame)
        except Exception as exc:
            self.fail(_exception_signature("escaped", exc), traceback.format_exc())
            return
        self._check_engine()
        self._apply(self.analyzer.take())
        if self.packets % 16 == 0:
            self._check_model(final=False)

    def finish(self) -> list[Finding]:
        try:
            self.analyzer.finish()
        except Exception as exc:
            self.fail(_exception_signature("finish", exc), traceback.format_exc())
        self._apply(self.analyzer.take())
        for text in self.tracebacks:
            self.fail(_exception_signature("caught", text=text), text)
        stats = self.stats
        if self.analyzer.flows:
            self.fail("count:flows left after finish", f"{len(self.analyzer.flows)} flows")
        classified = stats.smtp_packets + sum(stats.skipped.values())
        if stats.packets != self.packets or not (
            stats.packets - stats.errors <= classified <= stats.packets
        ):
            self.fail("count:packets", f"{stats!r}"[:300])
        if stats.tcp_conflicts != self.conflicts:
            self.fail("count:tcp conflicts", f"{stats.tcp_conflicts} != {self.conflicts}")
        if self.opened != self.closed:
            self.fail("count:sessions not closed", f"open: {sorted(self.opened - self.closed)}")
        self._check_model(final=True)
        return self.findings

    def _apply(self, batch: list[tuple[int, object]]) -> None:
        for session_id, event in batch:
            if isinstance(event, FlowOpened):
                if session_id in self.opened:
                    self.fail("count:session opened twice", str(session_id))
                self.opened.add(session_id)
            elif isinstance(event, FlowClosed):
                if session_id not in self.opened or session_id in self.closed:
                    self.fail("count:session closed twice or never opened", str(session_id))
                self.closed.add(session_id)
                self.conflicts += event.conflicts
            elif session_id and (session_id not in self.opened or session_id in self.closed):
                self.fail("count:event outside its session", f"{session_id}: {event!r}"[:300])
        try:
            apply_batch(self.model, encode(batch))
        except Exception as exc:
            self.fail(_exception_signature("model", exc), traceback.format_exc())

    def _check_engine(self) -> None:
        config, analyzer = self.config, self.analyzer
        if len(analyzer.flows) > config.max_connections:
            self.fail("bound:connections", f"{len(analyzer.flows)} > {config.max_connections}")
        smtp, tcp = config.smtp, config.tcp
        for flow in analyzer.flows.values():
            parser = flow.parser
            for name, direction in (("client", parser._client), ("server", parser._server)):
                if len(direction.buf) > smtp.max_line:
                    self.fail(f"bound:{name} line buffer", f"{len(direction.buf)} bytes")
            if parser._bdat_left < 0:
                self.fail("count:BDAT bytes left", str(parser._bdat_left))
            if len(parser._pending) > smtp.max_pending:
                self.fail("bound:pending requests", str(len(parser._pending)))
            if len(parser._reply_lines) > smtp.max_reply_lines:
                self.fail("bound:reply lines", str(len(parser._reply_lines)))
            if sum(map(len, parser._reply_lines)) > smtp.max_reply_bytes:
                self.fail("bound:reply bytes", str(sum(map(len, parser._reply_lines))))
            if len(parser._headers) > smtp.max_header_lines:
                self.fail("bound:header lines", str(len(parser._headers)))
            if parser._header_bytes > smtp.max_header_bytes:
                self.fail("bound:header bytes", str(parser._header_bytes))
            if parser.queued:
                self.fail("count:parser events not drained", str(len(parser.queued)))
            for stream in flow.conn.streams:
                held = sum(map(len, stream.ooo.values()))
                if held != stream.ooo_bytes:
                    self.fail("count:tcp ooo bytes", f"counted {stream.ooo_bytes}, held {held}")
                if len(stream.ooo) > tcp.max_ooo_segments:
                    self.fail("bound:tcp ooo segments", str(len(stream.ooo)))
                if held > tcp.max_ooo_bytes:
                    self.fail("bound:tcp ooo bytes", f"{held} > {tcp.max_ooo_bytes}")

    def _check_model(self, *, final: bool) -> None:
        model, limits = self.model, self.limits
        bound = self._bound
        bound("sessions kept", len(model.finished), limits.max_sessions)
        bound("hosts", len(model.hosts), limits.max_hosts)
        bound("identities", len(model.identities), limits.max_identities)
        bound("names by MAC", len(model.names_by_mac), limits.max_identities)
        if len(model.open) > self.config.max_connections:
            self.fail("bound:open sessions", str(len(model.open)))
        if model.sessions_total != len(self.opened):
            self.fail("count:sessions_total", f"{model.sessions_total} != {len(self.opened)}")
        if model.sessions_total != len(model.finished) + model.sessions_not_kept + len(model.open):
            self.fail("count:sessions kept + not kept + open != total", "")
        if sum(h.sessions for h in model.hosts.values()) + model.hosts_not_kept != (
            model.sessions_total
        ):
            self.fail("count:host sessions", "sum(host.sessions) + hosts_not_kept != total")
        open_by_host: dict[str, int] = {}
        for session in model.open.values():
            open_by_host[session.client_ip] = open_by_host.get(session.client_ip, 0) + 1
        for host in model.hosts.values():
            self._check_host(host, open_by_host.get(host.ip, 0))
        for session in model.open.values():
            self._check_session(session)
        if final and (model.open or model._login_step):
            self.fail("count:open sessions after finish", str(len(model.open)))

    def _check_host(self, host: Host, open_sessions: int) -> None:
        limits, bound = self.limits, self._bound
        bound("servers per host", len(host.servers), limits.max_servers_per_host)
        bound("helos", len(host.helos), limits.max_helos)
        bound("sender domains", len(host.sender_domains), limits.max_sender_domains)
        bound("refusals", len(host.refusals), limits.max_refusals)
        if host.max_parallel > self.config.max_connections:
            self.fail("bound:parallel sessions", f"{host.max_parallel}")
        if host.open_sessions != open_sessions:
            self.fail("count:host open sessions", f"{host.open_sessions} != {open_sessions}")
        if sum(s.sessions for s in host.servers.values()) + host.servers_dropped != host.sessions:
            self.fail("count:server sessions", host.ip)
        if min(host.rejected_sessions, host.tempfailed_sessions) < 0 or (
            host.rejected_sessions + host.tempfailed_sessions > host.sessions
        ):
            self.fail(
                "count:host rejected/tempfailed",
                f"{host.rejected_sessions}/{host.tempfailed_sessions} of {host.sessions}",
            )
        for stats in host.servers.values():
            if min(stats.rejected_sessions, stats.tempfailed_sessions) < 0 or (
                stats.rejected_sessions + stats.tempfailed_sessions > stats.sessions
            ):
                self.fail("count:server rejected/tempfailed", stats.ip)

    def _check_session(self, session: Session) -> None:
        limits, bound = self.limits, self._bound
        bound("transcript lines", len(session.transcript), limits.max_transcript_lines)
        bound("transcript bytes", session.transcript_bytes, limits.max_transcript_bytes)
        bound("MAIL FROM kept", len(session.mail_from), limits.max_addresses)
        bound("RCPT TO kept", len(session.rcpt_to), limits.max_addresses)
        bound("replies kept", len(session.replies), limits.max_replies)
        if session.transcript_bytes != sum(len(line.text) for line in session.transcript):
            self.fail("count:transcript bytes", str(session.id))
        if session.end < session.start:
            self.fail("count:session ends before it starts", str(session.id))
        if session.rejected and session.tempfailed:
            self.fail("count:rejected and tempfailed", str(session.id))
        if session.recipients < len(session.rcpt_to) or session.outstanding < 0:
            self.fail("count:recipients or outstanding", str(session.id))

    def _bound(self, what: str, value: int, limit: int) -> None:
        if value > limit:
            self.fail(f"bound:{what}", f"{value} > {limit}")


def check_frames(fuzz: FuzzInput) -> list[Finding]:
    """Run frames through decode, TCP, SMTP, identity and the model."""
    checker = Checker(fuzz.tiny)
    for ts, linktype, frame in timeline(fuzz.frames):
        checker.feed(ts, linktype, frame)
    return checker.finish()


def check_capture(fuzz: FuzzInput, path: str) -> list[Finding]:
    """Read capture bytes through CaptureFile (from ``path``) and feed the engine."""
    with open(path, "wb") as out:
        out.write(fuzz.capture)
    checker = Checker(fuzz.tiny)
    try:
        capture = CaptureFile(path)
    except CaptureError:
        return []
    except Exception as exc:
        return [Finding(_exception_signature("capture", exc), traceback.format_exc())]
    yielded = 0
    try:
        for ts, linktype, data in capture:
            yielded += 1
            if not isinstance(data, bytes) or ts != ts:
                checker.fail("capture:bad packet", repr((ts, linktype, data))[:200])
            checker.feed(ts, linktype, data)
    except CaptureError:
        pass
    except Exception as exc:
        checker.fail(_exception_signature("capture", exc), traceback.format_exc())
    if capture.records != yielded:
        checker.fail("capture:record count", f"{capture.records} != {yielded}")
    return checker.finish()


def check(data: bytes, path: str) -> list[Finding]:
    """Every broken invariant for one input (empty: all held)."""
    fuzz = FuzzInput.decode(data)
    return check_capture(fuzz, path) if fuzz.flags & TARGET_CAPTURE else check_frames(fuzz)


# --- resources -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """What one input may cost the engine (decode to model, as the report runs it), in
    proportion to its size: a cost that grows faster than the input (a scan of a store per
    packet, an event per byte) breaks it as the input grows.  Calibrated on this machine
    (tests/FUZZING.md): normal traffic costs 5-20 µs a packet and 0.03 µs a body byte; a
    2-byte garbage command line, the costliest thing a client can send, 0.8 µs a byte."""

    seconds: float = 0.2
    seconds_per_packet: float = 50e-6
    seconds_per_byte: float = 1.5e-6
    memory: int = 8 << 20
    memory_per_byte: float = 1.0
    events_per_packet: int = 8
    bytes_per_event: int = 2  # an event takes a line, and the shortest that is one is "x\n"


@dataclass(slots=True)
class Cost:
    """What one input cost: CPU time, peak traced memory, events for the model."""

    packets: int = 0
    payload: int = 0  # bytes of TCP payload
    seconds: float = 0.0
    peak: int = 0
    events: int = 0

    def over(self, budget: Budget) -> list[Finding]:
        found = []
        seconds = (
            budget.seconds
            + budget.seconds_per_packet * self.packets
            + budget.seconds_per_byte * self.payload
        )
        if self.seconds > seconds:
            found.append(Finding("resource:time", f"{self.seconds:.3f} s > {seconds:.3f} s {self}"))
        memory = budget.memory + budget.memory_per_byte * self.payload
        if self.peak > memory:
            found.append(Finding("resource:memory", f"{self.peak:,} > {memory:,.0f} B {self}"))
        events = budget.events_per_packet * self.packets + self.payload // budget.bytes_per_event
        if self.events > events:
            found.append(Finding("resource:events", f"{self.events:,} > {events:,} {self}"))
        return found


def _engine_run(frames: Sequence[tuple[float, int, bytes]], tiny: bool) -> int:
    """The engine as ``smtptop report`` runs it: frames through the analyzer, batches of
    events into the model.  Returns the number of events."""
    config, limits = TINY if tiny else DEFAULT
    analyzer, model = Analyzer(config), Model(limits=limits)
    pending, events = iter(frames), 0
    while analyzer.feed(pending, max_events=4096):
        batch = analyzer.take()
        events += len(batch)
        apply_batch(model, encode(batch))
    analyzer.finish()
    batch = analyzer.take()
    apply_batch(model, encode(batch))
    return events + len(batch)


def measure(fuzz: FuzzInput) -> Cost:
    """Run the engine twice: timed (process CPU time), then under tracemalloc for its peak
    (the frames themselves are allocated before)."""
    cost = Cost(packets=len(fuzz.frames))
    for link, _step, frame in fuzz.frames:
        fields = _tcp_fields(LINKTYPES[link % len(LINKTYPES)], frame)
        cost.payload += len(fields[1][7]) if fields else 0
    frames = list(timeline(fuzz.frames))
    began = time.process_time()
    cost.events = _engine_run(frames, fuzz.tiny)
    cost.seconds = time.process_time() - began
    tracemalloc.start()
    try:
        _engine_run(frames, fuzz.tiny)
        cost.peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return cost


class _Wire:
    """Frames of one Ethernet/IPv4 connection, each segment at the sequence number chosen."""

    LINK = LINKTYPES.index(synth.LINKTYPE_ETHERNET)

    def __init__(self, rng: random.Random, port: int = 25) -> None:
        self.ends = ((PC, 40000 + rng.randrange(20000)), ("198.51.100.9", port))
        self.next = [rng.getrandbits(32), rng.getrandbits(32)]
        self.records: list[Record] = []
        self.segment(0, b"", flags=0x02)
        self.next[0] += 1
        self.segment(1, b"", flags=0x12)
        self.next[1] += 1
        self.segment(0, b"")

    def segment(self, side: int, payload: bytes, *, skip: int = 0, flags: int = 0x18,
                ack: int | None = None) -> None:  # fmt: skip
        (src, sport), (dst, dport) = self.ends[side], self.ends[1 - side]
        packet = synth.tcp_packet(src, dst, sport, dport, seq=(self.next[side] + skip) % (1 << 32),
                                  ack=(self.next[1 - side] if ack is None else ack) % (1 << 32),
                                  flags=flags if payload or flags != 0x18 else 0x10,
                                  payload=payload)  # fmt: skip
        self.records.append((self.LINK, 0, synth.link_frame(synth.LINKTYPE_ETHERNET, packet)))

    def send(self, side: int, data: bytes, size: int = 8900) -> None:
        """``data`` in order, in segments of ``size`` bytes."""
        for at in range(0, len(data), size):
            self.segment(side, data[at : at + size])
            self.next[side] += len(data[at : at + size])


class Hostile:
    """Adversarial inputs for the resource classes of issue 12, of ``size`` payload bytes:
    out-of-order floods, floods of empty lines, long and many replies, AUTH dialogues,
    garbage command lines."""

    KINDS = ("out-of-order", "empty lines", "replies", "auth", "garbage lines")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def generate(self, size: int) -> tuple[str, bytes]:
        rng = self.rng
        kind = rng.choice(self.KINDS)
        wire = _Wire(rng, rng.choice((25, 587)))
        wire.send(1, b"220 mx.example.net ESMTP\r\n")
        wire.send(0, b"EHLO pc.office.lan\r\n")
        wire.send(1, b"250-mx.example.net\r\n250 PIPELINING\r\n")
        getattr(self, "_" + kind.replace(" ", "_").replace("-", "_"))(wire, size)
        flags = TINY_LIMITS if rng.random() < 0.2 else 0
        return kind, FuzzInput(flags, frames=wire.records).encode()

    def _out_of_order(self, wire: _Wire, size: int) -> None:
        """Segments each after a hole that never fills, duplicate ACKs naming the first hole,
        now and then an ACK past it, a conflicting copy of a buffered segment, a filled hole."""
        rng, sent, skip = self.rng, 0, 0
        hole = wire.next[0]
        stored: list[tuple[int, int]] = []
        grain = rng.choice((1, 10, 100, 8900))  # small ones keep the store full of segments
        while sent < size and len(stored) < MAX_HOSTILE_SEGMENTS:
            skip += rng.randint(1, 64)
            length = rng.randint(1, grain)
            wire.segment(0, bytes([65 + rng.randrange(26)]) * length, skip=skip)
            stored.append((skip, length))
            skip += length
            sent += length
            roll = rng.random()
            if roll < 0.1 and stored:
                at, length = rng.choice(stored)
                wire.segment(0, b"#" * (length + rng.randint(0, 50)), skip=at)
            elif roll < 0.15:
                wire.segment(0, b"fill", skip=rng.choice(stored)[0] - 4)
            past = roll > 0.97
            wire.segment(1, b"", ack=(hole + skip) if past else hole)

    def _empty_lines(self, wire: _Wire, size: int) -> None:
        """Bare LFs, CRLFs, lines of CRs, from either side, in commands, a body or AUTH."""
        rng = self.rng
        where = rng.choice(("commands", "data", "auth"))
        if where == "data":
            wire.send(0, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
            wire.send(1, b"250 ok\r\n250 ok\r\n354 go\r\n")
        elif where == "auth":
            wire.send(0, b"AUTH\tLOGIN\r\n")
            wire.send(1, b"334 VXNlcm5hbWU6\r\n")
        unit = rng.choice((b"\n", b"\r\n", b"\n\r\n", b"\r\r\n"))
        sides = rng.choice(((0,), (1,), (0, 1)))
        sent = 0
        while sent < size:
            side = rng.choice(sides)
            chunk = unit * rng.randint(1, 8900 // len(unit))
            wire.send(side, chunk)
            sent += len(chunk)
            if rng.random() < 0.05:
                wire.send(1 - side, b"500 5.5.2 Error: bad syntax\r\n" * rng.randint(1, 20))

    def _replies(self, wire: _Wire, size: int) -> None:
        """Pipelined commands answered by endless multi-line replies, over-long lines, code
        changes inside a reply."""
        rng, sent = self.rng, 0
        while sent < size:
            wire.send(0, b"RCPT TO:<x@example.org>\r\n" * rng.randint(1, 50))
            kind = rng.random()
            if kind < 0.5:
                data = b"250-" + b"x" * rng.randint(0, 100) + b"\r\n"
                data = data * rng.randint(1, 2000) + b"250 ok\r\n"
            elif kind < 0.8:
                data = b"250 " + b"y" * rng.randint(4000, 20000) + b"\r\n"
            else:
                data = b"250-a\r\n251-b\r\n" * rng.randint(1, 1000)
            wire.send(1, data, size=rng.choice((1, 7, 1460, 8900)) if len(data) < 2000 else 8900)
            sent += len(data)

    def _auth(self, wire: _Wire, size: int) -> None:
        """Many AUTH dialogues, spaced every way, pipelined, with empty and cancelled ones."""
        rng, sent = self.rng, 0
        verbs = (b"AUTH PLAIN", b"AUTH\tPLAIN", b"auth  plain", b" AUTH\x0bPLAIN")
        while sent < size:
            verb = rng.choice(verbs)
            if rng.random() < 0.5:
                client = verb + b" AGFsaWNlAHNlY3JldA==\r\nMAIL\tFROM:<a@b>\r\n"
                server = b"235 ok\r\n250 ok\r\n"
            else:
                client = verb.replace(b"PLAIN", b"LOGIN").replace(b"plain", b"login")
                client += b"\r\n" + rng.choice((b"dXNlcg==\r\nc2VjcmV0\r\n", b"\r\n*\r\n"))
                server = b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 no\r\n"
            wire.send(0, client)
            wire.send(1, server)
            sent += len(client) + len(server)

    def _garbage_lines(self, wire: _Wire, size: int) -> None:
        """Short lines that are no command, from the client, the server saying 500."""
        rng, sent = self.rng, 0
        while sent < size:
            line = rng.choice((b"x\n", b"x\r\n", b" \n", b"\t\r\n", b"\x00\n"))
            chunk = line * rng.randint(1, 8900 // len(line))
            wire.send(0, chunk)
            wire.send(1, b"500 5.5.2 Error: bad syntax\r\n" * rng.randint(0, 3))
            sent += len(chunk)


def check_resources(data: bytes, budget: Budget | None = None) -> tuple[Cost, list[Finding]]:
    """An input's cost, and the budgets it breaks."""
    cost = measure(FuzzInput.decode(data))
    return cost, cost.over(budget or Budget())


def resources(seconds: float, seed: int, *, sizes: Sequence[int] = (1 << 16, 1 << 21)) -> Report:
    """Hostile inputs, each checked for every invariant and against the budget, for
    ``seconds``; the slowest input per kind is kept in the report's ``costs``."""
    report = Report()
    rng = random.Random(seed)
    hostile = Hostile(rng)
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="smtptop-fuzz-") as folder:
        path = os.path.join(folder, "input")
        while time.monotonic() < deadline:
            size = round(math.exp(rng.uniform(math.log(sizes[0]), math.log(sizes[1]))))
            kind, data = hostile.generate(size)
            cost, found = check_resources(data)
            report.add(data, found + check_timed(data, path, limit=60.0))
            report.inputs += 1
            report.slowest = max(report.slowest, cost.seconds)
            worst = report.costs.get(kind)
            per_byte = cost.seconds / max(1, cost.payload)
            if worst is None or per_byte > worst.seconds / max(1, worst.payload):
                report.costs[kind] = cost
    return report


# --- mutation ---------------------------------------------------------------------------------

TOKENS = (
    b"\r\n", b"\n", b"\r", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"DATA\r\n", b"354 go ahead\r\n",
    b"250 ok\r\n", b"250-", b"220 ", b"221 bye\r\n", b"334 VXNlcm5hbWU6\r\n", b"AUTH LOGIN\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", b"AUTH CRAM-MD5\r\n", b"BDAT 10 LAST\r\n",
    b"BDAT 99999999999999999999\r\n", b"BDAT 3\r\n", b"STARTTLS\r\n", b"\x16\x03\x01\x00\x05",
    b"EHLO x\r\n", b"HELO \x1b]0;title\x07\r\n", b"MAIL FROM:<a@b.example>\r\n",
    b"RCPT TO:<c@d.example>\r\n", b"QUIT\r\n", b"RSET\r\n", b"\x00\x01\x02", b"\xff\xfe",
    "é\u202e".encode(), b"554 5.7.1 blocked using zen.spamhaus.org\r\n", b"421 bye\r\n",
    b"500 what\r\n", b"502 no\r\n", b"999 x\r\n", b"XCLIENT ADDR=1.2.3.4\r\n", b"*\r\n",
)  # fmt: skip
INTERESTING_32 = (0, 1, 12, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 16 << 20, (16 << 20) + 4, 65536)
TCP_FLAGS = (0x02, 0x12, 0x10, 0x18, 0x11, 0x01, 0x04, 0x14, 0x03, 0x07, 0x00, 0xFF)


def _tcp_fields(linktype: int, frame: bytes) -> tuple[int, tuple] | None:
    """The IP header's offset and the segment of a frame carrying TCP on an SMTP port."""
    decoded = decode(linktype, frame, DEFAULT_PORTS)
    if isinstance(decoded, str):
        return None
    key, seq, ack, flags, payload = decoded
    size = (len(key) - 4) // 2
    src, dst = key[:size], key[size : 2 * size]
    sport, dport = struct.unpack("!HH", key[2 * size :])
    seg = (src, dst, sport, dport, seq, ack, flags, payload)
    found = frame.find(src + dst)
    offset = found - (12 if len(src) == 4 else 8)
    if found < 0 or offset < 0 or frame[offset] >> 4 != (4 if len(src) == 4 else 6):
        return None
    return offset, seg


def _rebuild(frame: bytes, offset: int, seg: tuple, **changes: object) -> bytes:
    src, dst, sport, dport, seq, ack, flags, payload = seg
    fields = {"sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": flags}
    fields["payload"] = payload
    fields.update(changes)
    packet = synth.tcp_packet(
        str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), **fields
    )
    return frame[:offset] + packet


class Mutator:
    """Seeded, structure-aware mutations of frame lists and capture files."""

    def __init__(self, rng: random.Random, seeds: Corpus) -> None:
        self.rng = rng
        self.seeds = seeds

    def generate(self) -> bytes:
        """A fresh input: a seed, mutated one to eight times."""
        rng = self.rng
        flags = TINY_LIMITS if rng.random() < 0.5 else 0
        if rng.random() < 0.25:
            fuzz = FuzzInput(flags | TARGET_CAPTURE, capture=rng.choice(self.seeds.captures))
        else:
            fuzz = FuzzInput(flags, frames=list(rng.choice(self.seeds.engine)))
        for _ in range(rng.randint(1, 8)):
            self.mutate(fuzz)
        return fuzz.encode()

    def mutate(self, fuzz: FuzzInput) -> None:
        if fuzz.flags & TARGET_CAPTURE:
            fuzz.capture = self._mutate_capture(fuzz.capture)
        else:
            self._mutate_frames(fuzz.frames)

    def mutate_bytes(self, data: bytes, max_size: int) -> bytes:
        """One structured mutation of an encoded input (atheris' custom mutator)."""
        fuzz = FuzzInput.decode(data)
        for _ in range(self.rng.randint(1, 3)):
            self.mutate(fuzz)
        return fuzz.encode()[:max_size]

    # frames

    def _mutate_frames(self, frames: list[Record]) -> None:
        rng = self.rng
        if not frames:
            frames.extend(rng.choice(self.seeds.engine))
            return
        index = rng.randrange(len(frames))
        link, step, frame = frames[index]
        choice = rng.randrange(16)
        if choice == 0:
            frames[index] = (link, step, self._mutate_blob(frame))
        elif choice in (1, 2, 3, 4):
            frames[index] = (link, step, self._mutate_tcp(link, frame))
        elif choice == 5:
            frames[index] = (link, step, frame[: rng.randrange(len(frame) + 1)])
        elif choice == 6:
            del frames[index]
        elif choice == 7:
            frames.insert(rng.randrange(len(frames) + 1), frames[index])
        elif choice == 8:
            other = rng.randrange(len(frames))
            frames[index], frames[other] = frames[other], frames[index]
        elif choice == 9:
            donor = rng.choice(self.seeds.engine)
            start = rng.randrange(len(donor))
            at = rng.randrange(len(frames) + 1)
            frames[at:at] = donor[start : start + rng.randint(1, 12)]
        elif choice == 10:
            frames[index] = (rng.randrange(len(LINKTYPES)), step, frame)
        elif choice == 11:
            frames[index] = (link, rng.choice((0, 1, 16, 239, 240, 254, 255)), frame)
        elif choice == 12:
            self._split(frames, index)
        elif choice == 13:
            self._overlap(frames, index)
        elif choice == 14:
            frames[index] = (link, step, self._flood(link, frame))
        else:
            frames.reverse() if rng.random() < 0.1 else rng.shuffle(frames)

    def _mutate_tcp(self, link: int, frame: bytes) -> bytes:
        rng = self.rng
        fields = _tcp_fields(LINKTYPES[link % len(LINKTYPES)], frame)
        if fields is None:
            return self._mutate_blob(frame)
        offset, seg = fields
        payload, seq = seg[7], seg[4]
        choice = rng.randrange(7)
        if choice == 0:
            return _rebuild(frame, offset, seg, payload=self._mutate_payload(payload))
        if choice == 1:
            delta = rng.choice((1, -1, 2, -3, 100, 1 << 31, (1 << 31) - 1, rng.getrandbits(32)))
            return _rebuild(frame, offset, seg, seq=(seq + delta) % (1 << 32))
        if choice == 2:
            return _rebuild(frame, offset, seg, flags=rng.choice(TCP_FLAGS))
        if choice == 3:
            return _rebuild(frame, offset, seg, ack=rng.getrandbits(32))
        if choice == 4:
            port = rng.choice((25, 465, 587, 2525, 1024, 80))
            return _rebuild(frame, offset, seg, **{rng.choice(("sport", "dport")): port})
        if choice == 5:
            return _rebuild(frame, offset, seg, payload=payload + self._mutate_payload(b""))
        return _rebuild(frame, offset, seg, payload=b"")

    def _mutate_payload(self, payload: bytes) -> bytes:
        rng = self.rng
        tokens = b"".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.3 or not payload:
            return tokens * rng.choice((1, 1, 2, 30))
        at = rng.randrange(len(payload) + 1)
        if rng.random() < 0.5:
            return payload[:at] + tokens + payload[at:]
        return self._mutate_blob(payload)

    def _split(self, frames: list[Record], index: int) -> None:
        """Cut a data segment in two at a random byte (CRLF or a terminator may straddle)."""
        link, step, frame = frames[index]
        fields = _tcp_fields(LINKTYPES[link % len(LINKTYPES)], frame)
        if fields is None or len(fields[1][7]) < 2:
            return
        offset, seg = fields
        payload, seq = seg[7], seg[4]
        cut = self.rng.randrange(1, len(payload))
        first = _rebuild(frame, offset, seg, payload=payload[:cut])
        second = _rebuild(frame, offset, seg, seq=(seq + cut) % (1 << 32), payload=payload[cut:])
        frames[index : index + 1] = [(link, step, first), (link, 0, second)]

    def _overlap(self, frames: list[Record], index: int) -> None:
        """Send part of a data segment again, shifted and with other bytes."""
        link, _step, frame = frames[index]
        fields = _tcp_fields(LINKTYPES[link % len(LINKTYPES)], frame)
        if fields is None or not fields[1][7]:
            return
        offset, seg = fields
        rng = self.rng
        shift = rng.randint(-4, len(seg[7]))
        other = self._mutate_payload(seg[7][max(0, shift) :])
        copy = _rebuild(frame, offset, seg, seq=(seg[4] + shift) % (1 << 32), payload=other)
        frames.insert(rng.randrange(len(frames) + 1), (link, 0, copy))

    def _flood(self, link: int, frame: bytes) -> bytes:
        """A payload near the frame limit: one long line, blank lines, or binary bytes."""
        fields = _tcp_fields(LINKTYPES[link % len(LINKTYPES)], frame)
        if fields is None:
            return frame
        size = self.rng.choice((65, 4097, 8000))
        payload = self.rng.choice((b"A", b"\n", b"\x00", b"250-x\r\n", b"RCPT TO:<a@b>\r\n"))
        return _rebuild(frame, *fields, payload=(payload * size)[:size])

    # bytes

    def _mutate_blob(self, data: bytes) -> bytes:
        rng = self.rng
        if not data:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
        data = bytearray(data)
        choice = rng.randrange(7)
        at = rng.randrange(len(data))
        if choice == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1:
            data[at] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(8)))
        elif choice == 2:
            del data[at : at + rng.randint(1, 16)]
        elif choice == 3:
            data[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        elif choice == 4:
            value = rng.choice(INTERESTING_32)
            data[at : at + 4] = value.to_bytes(4, rng.choice(("little", "big")))
        elif choice == 5:
            data[at : at + 2] = rng.choice((0, 0xFFFF, 0x8100, 0x86DD, 0x0800, 6, 17)).to_bytes(
                2, "big"
            )
        else:
            end = rng.randrange(at, len(data) + 1)
            data[at:at] = data[at:end]
        return bytes(data)

    def _mutate_capture(self, data: bytes) -> bytes:
        rng = self.rng
        compressed = data[:2] == b"\x1f\x8b"
        if compressed and rng.random() < 0.7:
            with contextlib.suppress(OSError, EOFError, zlib.error):
                inner = gzip.decompress(data)
                return gzip.compress(self._mutate_capture(inner), mtime=0)
        choice = rng.randrange(6)
        if choice == 0 and data:
            at = rng.randrange(0, len(data), 4)
            value = rng.choice((*INTERESTING_32, rng.getrandbits(32)))
            return data[:at] + value.to_bytes(4, rng.choice(("little", "big"))) + data[at + 4 :]
        if choice == 1:
            return data[: rng.randrange(len(data) + 1)]
        if choice == 2 and not compressed and rng.random() < 0.3:
            return gzip.compress(data, mtime=0)
        if choice == 3:
            donor = rng.choice(self.seeds.captures)
            at, start = rng.randrange(len(data) + 1), rng.randrange(len(donor))
            return data[:at] + donor[start : start + rng.randint(4, 200)] + data[at:]
        return self._mutate_blob(data)


# --- drivers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in this (main) thread after ``seconds``."""

    def alarm(_signum: int, _frame: object) -> None:
        raise Hang

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_timed(data: bytes, path: str, limit: float = TIME_LIMIT) -> list[Finding]:
    """:func:`check` under the time limit; a hang is a finding too."""
    try:
        with time_limit(limit):
            return check(data, path)
    except Hang:
        return [Finding("hang", f"over {limit} s")]


@dataclass(slots=True)
class Report:
    """What a fuzzing run did and found (one worker's, or all of them merged)."""

    inputs: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    # signature -> (inputs that broke it, detail, the smallest such input)
    findings: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    costs: dict[str, Cost] = field(default_factory=dict)  # resource mode: worst per kind

    def add(self, data: bytes, findings: list[Finding]) -> None:
        for finding in findings:
            count, detail, smallest = self.findings.get(
                finding.signature, (0, finding.detail, data)
            )
            if len(data) < len(smallest):
                detail, smallest = finding.detail, data
            self.findings[finding.signature] = (count + 1, detail, smallest)

    def merge(self, other: Report) -> None:
        self.inputs += other.inputs
        self.seconds = max(self.seconds, other.seconds)
        self.slowest = max(self.slowest, other.slowest)
        for signature, (count, detail, data) in other.findings.items():
            mine = self.findings.get(signature)
            if mine is None or len(data) < len(mine[2]):
                self.findings[signature] = (count + (mine[0] if mine else 0), detail, data)
            else:
                self.findings[signature] = (mine[0] + count, mine[1], mine[2])

    def unknown(self) -> list[str]:
        return [s for s in self.findings if s not in KNOWN_BUGS]


def fuzz(
    inputs: int,
    seed: int,
    *,
    deadline: float | None = None,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Check the seeds, then ``inputs`` mutated inputs, or until the monotonic ``deadline``."""
    report = Report()
    rng = random.Random(seed)
    mutator = Mutator(rng, corpus())
    started = last = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smtptop-fuzz-") as folder:
        path = os.path.join(folder, "input")
        pending = seed_inputs() if seed == 0 else []
        while report.inputs < inputs and (deadline is None or time.monotonic() < deadline):
            data = pending.pop() if pending else mutator.generate()
            began = time.monotonic()
            report.add(data, check_timed(data, path))
            now = time.monotonic()
            report.slowest = max(report.slowest, now - began)
            report.inputs += 1
            if progress is not None and now - last > 10:
                last = now
                report.seconds = now - started
                progress(report)
    report.seconds = time.monotonic() - started
    return report


def _worker(args: tuple[int, int, str]) -> Report:
    inputs, seed, status = args

    def progress(report: Report) -> None:
        Path(status).write_text(f"{report.inputs} {report.seconds:.0f} {len(report.findings)}\n")

    return fuzz(inputs, seed, progress=progress)


def run(inputs: int, jobs: int, seed: int, out: Path) -> Report:
    """Fuzz over ``jobs`` processes, write findings to ``out``, and return the merged report."""
    out.mkdir(parents=True, exist_ok=True)
    shares = [inputs // jobs + (1 if k < inputs % jobs else 0) for k in range(jobs)]
    tasks = [(n, seed + k, str(out / f"worker{k}.status")) for k, n in enumerate(shares)]
    started = time.monotonic()
    with multiprocessing.Pool(jobs) as pool:
        reports = pool.map(_worker, tasks)
    total = Report()
    for part in reports:
        total.merge(part)
    total.seconds = time.monotonic() - started
    write_findings(total, out)
    summary = {
        "inputs": total.inputs,
        "seconds": round(total.seconds, 1),
        "inputs_per_second": round(total.inputs / total.seconds, 1),
        "slowest_input_seconds": round(total.slowest, 3),
        "findings": {
            s: {"inputs": c, "known": s in KNOWN_BUGS} for s, (c, _, _) in total.findings.items()
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return total


def write_findings(total: Report, out: Path) -> None:
    """Each finding's input and what was seen, named by its signature, into ``out``."""
    for signature, (count, detail, data) in total.findings.items():
        name = hashlib.sha1(signature.encode()).hexdigest()[:12]
        (out / f"finding-{name}.bin").write_bytes(data)
        (out / f"finding-{name}.txt").write_text(f"{signature}\n{count} inputs\n\n{detail}\n")


def _resource_worker(args: tuple[float, int]) -> Report:
    return resources(*args)


def run_resources(seconds: float, jobs: int, seed: int, out: Path) -> Report:
    """:func:`resources` over ``jobs`` processes; findings and summary.json go to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with multiprocessing.Pool(jobs) as pool:
        reports = pool.map(_resource_worker, [(seconds, seed + k) for k in range(jobs)])
    total = Report()
    for part in reports:
        total.merge(part)
        for kind, cost in part.costs.items():
            worst = total.costs.get(kind)
            if worst is None or cost.seconds / cost.payload > worst.seconds / worst.payload:
                total.costs[kind] = cost
    total.seconds = time.monotonic() - started
    write_findings(total, out)
    summary = {
        "inputs": total.inputs,
        "seconds": round(total.seconds, 1),
        "slowest_input_cpu_seconds": round(total.slowest, 3),
        "worst_per_byte": {
            kind: {
                "packets": c.packets,
                "payload": c.payload,
                "cpu_seconds": round(c.seconds, 4),
                "us_per_byte": round(c.seconds / c.payload * 1e6, 3),
                "us_per_packet": round(c.seconds / c.packets * 1e6, 1),
                "peak_bytes": c.peak,
                "events": c.events,
            }
            for kind, c in sorted(total.costs.items())
        },
        "findings": {s: {"inputs": c} for s, (c, _, _) in total.findings.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return total


def replay(paths: Sequence[str]) -> int:
    """Check saved inputs and print what each breaks."""
    failed = 0
    with tempfile.TemporaryDirectory(prefix="smtptop-fuzz-") as folder:
        for name in paths:
            findings = check_timed(Path(name).read_bytes(), os.path.join(folder, "input"))
            failed += bool(findings)
            for finding in findings:
                print(f"{name}: {finding.signature}\n{finding.detail}")
            if not findings:
                print(f"{name}: ok")
    return 1 if failed else 0


def minimize(data: bytes, signature: str) -> bytes:
    """A smaller input that still breaks ``signature``: drop frames, then cut each frame (or
    the capture file) from the end, keeping every step that keeps the finding."""
    with tempfile.TemporaryDirectory(prefix="smtptop-fuzz-") as folder:
        path = os.path.join(folder, "input")

        def breaks(candidate: FuzzInput) -> bool:
            found = check_timed(candidate.encode(), path)
            return any(f.signature == signature for f in found)

        fuzz = FuzzInput.decode(data)
        if not breaks(fuzz):
            raise ValueError(f"the input does not break {signature!r}")
        if fuzz.flags & TARGET_CAPTURE:
            for size in (64, 16, 4):
                while len(fuzz.capture) > size:
                    shorter = FuzzInput(fuzz.flags, capture=fuzz.capture[:-size])
                    if not breaks(shorter):
                        break
                    fuzz = shorter
            return fuzz.encode()
        index = 0
        while index < len(fuzz.frames):
            fewer = FuzzInput(fuzz.flags, frames=fuzz.frames[:index] + fuzz.frames[index + 1 :])
            if breaks(fewer):
                fuzz = fewer
            else:
                index += 1
        for index, (link, step, frame) in enumerate(fuzz.frames):
            for size in range(len(frame) - 1, 0, -1):
                frames = list(fuzz.frames)
                frames[index] = (link, step, frame[:size])
                if not breaks(FuzzInput(fuzz.flags, frames=frames)):
                    break
                fuzz = FuzzInput(fuzz.flags, frames=frames)
        return fuzz.encode()


def run_atheris(argv: list[str]) -> None:
    """Coverage-guided fuzzing with atheris/libFuzzer and the structured mutator."""
    import atheris  # only for this mode; the smoke test and ``run`` do without it

    # Import smtptop again, instrumented (only it: instrumenting everything is 4x slower),
    # and with it a fresh copy of this module that uses the instrumented engine.
    for name in [n for n in sys.modules if n.split(".")[0] == "smtptop"]:
        del sys.modules[name]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with atheris.instrument_imports(include=["smtptop"]):
        harness = importlib.import_module("fuzz_engine")
    mutator = harness.Mutator(random.Random(), harness.corpus())
    path = os.path.join(tempfile.mkdtemp(prefix="smtptop-atheris-"), "input")

    def one_input(data: bytes) -> None:
        findings = [f for f in harness.check(data, path) if f.signature not in KNOWN_BUGS]
        if findings:
            raise AssertionError("\n".join(f"{f.signature}\n{f.detail}" for f in findings))

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        mutator.rng.seed(seed)
        if mutator.rng.random() < 0.2:
            return atheris.Mutate(data, max_size)
        return mutator.mutate_bytes(data, max_size)

    corpus_dirs = [Path(a) for a in argv if not a.startswith("-")]
    if corpus_dirs and not any(corpus_dirs[0].iterdir()):
        for number, data in enumerate(harness.seed_inputs()):
            (corpus_dirs[0] / f"seed-{number:03d}").write_bytes(data)
    atheris.Setup([sys.argv[0], *argv], one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="seeded mutation fuzzing over several processes")
    go.add_argument("--inputs", type=int, default=100_000)
    go.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    go.add_argument("--seed", type=int, default=0)
    go.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    again = commands.add_parser("replay", help="check saved inputs")
    again.add_argument("files", nargs="+")
    smaller = commands.add_parser("minimize", help="shrink an input that breaks SIGNATURE")
    smaller.add_argument("file", type=Path)
    smaller.add_argument("signature")
    costly = commands.add_parser("resources", help="hostile inputs against time and memory")
    costly.add_argument("--minutes", type=float, default=10.0)
    costly.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    costly.add_argument("--seed", type=int, default=0)
    costly.add_argument("--out", type=Path, default=Path("fuzz-resources"))
    guided = commands.add_parser("atheris", help="coverage-guided (pip install atheris)")
    guided.add_argument("libfuzzer", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "run":
        report = run(args.inputs, args.jobs, args.seed, args.out)
        return 1 if report.unknown() else 0
    if args.command == "resources":
        report = run_resources(args.minutes * 60, args.jobs, args.seed, args.out)
        return 1 if report.unknown() else 0
    if args.command == "replay":
        return replay(args.files)
    if args.command == "minimize":
        shrunk = minimize(args.file.read_bytes(), args.signature)
        args.file.with_suffix(".min").write_bytes(shrunk)
        print(f"{len(shrunk)} bytes: {args.file.with_suffix('.min')}\n{shrunk.hex()}")
        return 0
    run_atheris([a for a in args.libfuzzer if a != "--"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
