"""Generate a large, realistic SMTP capture and its ground truth, for the throughput benchmark.

The offline benchmark needs a capture the size of a busy gateway's day (a million packets and
more) whose every per-host figure is known in advance, so smtptop's report can be checked
exactly and timed against tshark on the same bytes.  :mod:`tests/synth.py` is built for small
test captures (one connection at a time, each segment ACKed); this writer packs frames with
:mod:`struct` directly, interleaves sessions in time and streams them to the file, so memory
holds only the sessions open at once.

The office (seen at its gateway, behind NAT as 192.0.2.10):

* ~190 users on 192.168.1-3.x submit through the smarthost (198.51.100.25:587) with AUTH
  PLAIN or LOGIN, pipelined or not; some always use STARTTLS (opaque from there on);
* two LAN mail relays deliver straight to outside servers on port 25: STARTTLS where offered,
  greylisting (450/451), the odd old server that answers EHLO with 502;
* six spambots talk to thousands of servers on port 25 and are refused: 554 at the greeting
  (Spamhaus), 550 at RCPT (Spamhaus, CBL, SpamCop), 421 greetings, greylisting, and many end
  with a RST instead of QUIT.

Servers live in documentation and benchmark ranges (198.18.0.0/15, 203.0.113.0/24,
198.51.100.0/24).  Every connection has a full handshake, random ISNs (sequence numbers wrap),
piggybacked and delayed ACKs, MSS-sized body segments with slow-start bursts, FIN or RST
teardown, valid IPv4 header checksums (TCP checksums are left 0).

The sidecar ``OUT.truth.json`` (``OUT.pcap.truth.json`` for ``OUT.pcap``) holds, per LAN
client, the figures ``smtptop report --json`` gives under the README's definitions: sessions,
destinations, rejected_sessions, tempfailed_sessions, accepted_messages and recipients (RCPT
commands sent), counting only what is visible before TLS.

Usage::

    python bench/gencapture.py OUT.pcap --packets 1000000 --seed 1
"""

from __future__ import annotations

import argparse
import base64
import heapq
import ipaddress
import json
import math
import random
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MSS = 1460
MASK32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT, SERVER = 0, 1
START_US = 1_790_000_000 * 1_000_000  # capture start, in microseconds since the epoch
ARRIVAL_MEAN_US = 50_000  # a new session every 50 ms on average
OFFICE_PUBLIC = "192.0.2.10"  # the office's NAT address, as the outside servers see it
SMARTHOST = "198.51.100.25"
SMARTHOST_NAME = "smtp.provider.example"
GATEWAY_MAC = bytes.fromhex("00000c9ff001")
# MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted.
SYN_OPTIONS = bytes.fromhex("020405b40103030801010402")

# The README's definitions: replies to these stages decide rejected/tempfailed sessions,
# except 500/502 to EHLO ("EHLO not supported": the client falls back to HELO) and a 5xx to
# DATA or BDAT when no RCPT of the transaction was accepted (it follows from the RCPTs).
COUNTED_STAGES = frozenset(
    {"greeting", "HELO", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "end of data"}
)
EHLO_NOT_SUPPORTED = frozenset({500, 502})

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_RECORD = struct.Struct("<IIII")
_PCAP_HEADER = struct.Struct("<IHHiIII").pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)

SPAMHAUS = (
    "5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org;"
    " https://www.spamhaus.org/query/ip/{ip}"
)
RCPT_BLOCKS = (
    SPAMHAUS,
    "5.7.1 <{rcpt}>: Recipient address rejected: Blocked - see"
    " https://www.spamcop.net/bl.shtml?{ip}",
    "5.7.1 Rejected: {ip} listed at cbl.abuseat.org (XBL), see"
    " https://www.spamhaus.org/query/ip/{ip}",
)
GREYLISTS = (
    (
        450,
        "4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see"
        " https://postgrey.schweikert.ch/help/{domain}.html",
    ),
    (451, "4.7.1 <{rcpt}>: Recipient address rejected: Please try again later"),
    (450, "4.7.1 Client host rejected: cannot find your reverse hostname, [{ip}]"),
)
_TEXT = (
    "the meeting invoice report quarterly please find attached regards thanks budget "
    "schedule project review draft final update customer order delivery shipment payment "
    "account password verify urgent offer discount free winner claim prize click here "
    "tomorrow monday office printer lunch team agenda minutes contract signed scan"
)
WORDS = _TEXT.split()
_NAMES = "anna ben clara david eva felix greta hans ida jan kim lena max nina otto"
FIRST_NAMES = _NAMES.split()
SPAM_HELOS = ("outlook.com", "dhl.com", "localhost", "WIN-{r}", "{r}", "[{pub}]", "{pub}")
SPAM_DOMAINS = ("paypal-secure.example", "dhl-track.example", "bank-verify.example", "{r}.example")


@dataclass(slots=True)
class Client:
    """A LAN host and how it speaks SMTP."""

    ip: str
    role: str  # "user" (via the smarthost), "relay" (LAN MTA) or "spambot"
    helo: str
    user: str
    auth: str  # "PLAIN" or "LOGIN"
    pipelining: bool
    starttls: bool
    ttl: int
    mac: bytes
    port: int


@dataclass(slots=True)
class Server:
    """An outside mail server: its banner, extensions and policy."""

    ip: str
    name: str
    domain: str
    software: str  # "postfix", "exim" or "exchange"
    rtt_us: int
    pipelining: bool
    starttls: bool
    ehlo_unsupported: bool
    greylists: bool
    greet_delay_us: int


@dataclass(slots=True)
class HostTruth:
    """What smtptop must report for one LAN client host."""

    role: str
    sessions: int = 0
    destinations: set[str] = field(default_factory=set)
    rejected_sessions: int = 0
    tempfailed_sessions: int = 0
    accepted_messages: int = 0
    recipients: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "role": self.role,
            "sessions": self.sessions,
            "destinations": len(self.destinations),
            "rejected_sessions": self.rejected_sessions,
            "tempfailed_sessions": self.tempfailed_sessions,
            "accepted_messages": self.accepted_messages,
            "recipients": self.recipients,
        }


def reply(code: int, *lines: str) -> bytes:
    """One SMTP reply, multi-line when given several lines."""
    last = len(lines) - 1
    return "".join(
        f"{code}{'-' if i < last else ' '}{line}\r\n" for i, line in enumerate(lines)
    ).encode()


class Connection:
    """One TCP connection: frames with exact seq/ack, and the SMTP facts visible in it.

    Time is in integer microseconds at the capture point, next to the client: the server's
    reaction shows up one RTT after what caused it, the client's within a fraction of a
    millisecond.
    """

    __slots__ = (
        "_base",
        "_eth",
        "_ident",
        "_ports",
        "_src_dst",
        "_ttl",
        "_window",
        "client",
        "frames",
        "messages",
        "nxt",
        "recipient_accepted",
        "recipients",
        "rejected",
        "rng",
        "rtt",
        "server",
        "t",
        "tempfailed",
    )

    def __init__(
        self, rng: random.Random, client: Client, server: Server, port: int, start: int
    ) -> None:
        self.rng = rng
        self.client = client
        self.server = server
        self.t = start
        self.rtt = server.rtt_us
        self.frames: list[tuple[int, bytes]] = []
        self.nxt = [rng.getrandbits(32), rng.getrandbits(32)]
        self._ident = [rng.getrandbits(16), rng.getrandbits(16)]
        self.rejected = False
        self.tempfailed = False
        self.recipient_accepted = False  # a RCPT of the current transaction was accepted
        self.messages = 0
        self.recipients = 0
        c_ip = ipaddress.IPv4Address(client.ip).packed
        s_ip = ipaddress.IPv4Address(server.ip).packed
        sport = client.port
        self._eth = (GATEWAY_MAC + client.mac + b"\x08\x00", client.mac + GATEWAY_MAC + b"\x08\x00")
        self._src_dst = ((c_ip, s_ip), (s_ip, c_ip))
        self._ports = ((sport, port), (port, sport))
        self._ttl = (client.ttl, rng.choice((46, 50, 53, 55, 57)))
        self._window = (1026, 502)  # scaled by 2**8, as the SYN options say
        # IPv4 header checksum: the words that never change in this direction, summed once.
        self._base = tuple(
            0x4500 + 0x4000 + (self._ttl[side] << 8 | 6) + _words(src) + _words(dst)
            for side, (src, dst) in enumerate(self._src_dst)
        )

    # -- TCP -----------------------------------------------------------------------------

    def emit(
        self, side: int, t: int, flags: int, payload: bytes = b"", options: bytes = b""
    ) -> None:
        """Append one frame from ``side`` at time ``t``, acknowledging all the peer sent."""
        seq = self.nxt[side]
        ack = self.nxt[1 - side] if flags & ACK else 0
        sport, dport = self._ports[side]
        window = 64240 if flags & SYN else self._window[side]
        tcp = _TCP.pack(sport, dport, seq, ack, (20 + len(options)) << 2, flags, window, 0, 0)
        total = 40 + len(options) + len(payload)
        ident = self._ident[side] = (self._ident[side] + 1) & 0xFFFF
        s = self._base[side] + total + ident
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        src, dst = self._src_dst[side]
        ip = _IP.pack(0x45, 0, total, ident, 0x4000, self._ttl[side], 6, ~s & 0xFFFF, src, dst)
        frame = self._eth[side] + ip + tcp + options + payload
        if len(frame) < 60:
            frame += bytes(60 - len(frame))  # the padding a real Ethernet wire adds
        self.frames.append((t, frame))
        self.nxt[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32

    def handshake(self) -> None:
        self.emit(CLIENT, self.t, SYN, options=SYN_OPTIONS)
        self.t += self.rtt
        self.emit(SERVER, self.t, SYN | ACK, options=SYN_OPTIONS)
        self.t += self._turn()
        self.emit(CLIENT, self.t, ACK)

    def bulk(self, side: int, data: bytes) -> None:
        """Send ``data`` in MSS segments, in slow-start bursts one RTT apart; the peer ACKs
        every second segment (delayed ACK) and the last one."""
        peer_delay = self.rtt if side == CLIENT else self._turn()
        t = self.t
        window = 10
        pos = 0
        unacked = 0
        end = len(data)
        while pos < end:
            burst_start = t
            for _ in range(window):
                if pos >= end:
                    break
                chunk = data[pos : pos + MSS]
                pos += len(chunk)
                self.emit(side, t, PSH | ACK if pos >= end else ACK, chunk)
                unacked += 1
                if unacked == 2 or pos >= end:
                    self.emit(1 - side, t + peer_delay, ACK)
                    unacked = 0
                t += 120  # 1,460 bytes at 100 Mbit/s
            window = min(window * 2, 44)
            if pos < end:
                t = max(t, burst_start + self.rtt)
        self.t = t + peer_delay

    def _turn(self) -> int:
        """How long the client takes to react to what the server sent."""
        return self.rng.randint(150, 900)

    def finish(self) -> None:
        """Orderly close after the server's last word: it sends FIN, the client answers."""
        self.t += 30
        self.emit(SERVER, self.t, FIN | ACK)
        self.t += self._turn()
        self.emit(CLIENT, self.t, FIN | ACK)
        self.t += self.rtt
        self.emit(SERVER, self.t, ACK)

    def reset(self) -> None:
        """The client drops the connection without QUIT."""
        self.t += self._turn()
        self.emit(CLIENT, self.t, RST | ACK)

    # -- SMTP ----------------------------------------------------------------------------

    def record(self, stage: str, code: int) -> None:
        """Apply the README's definitions to one visible reply."""
        if stage == "end of data" and 200 <= code < 300:
            self.messages += 1
        if stage in ("MAIL", "RCPT") and 200 <= code < 300:
            self.recipient_accepted = stage == "RCPT"
        if code < 400 or stage not in COUNTED_STAGES:
            return
        if stage == "EHLO" and code in EHLO_NOT_SUPPORTED:
            return
        if code >= 500 and stage in ("DATA", "BDAT") and not self.recipient_accepted:
            return
        if code >= 500:
            self.rejected = True
        else:
            self.tempfailed = True

    def greet(self, code: int, text: str) -> None:
        self.t += self.rtt + self.server.greet_delay_us
        self.emit(SERVER, self.t, PSH | ACK, reply(code, text))
        self.record("greeting", code)

    def ask(
        self,
        commands: Sequence[str],
        replies: Sequence[tuple[int, Sequence[str]]],
        *,
        stage: str = "",
    ) -> list[int]:
        """Send ``commands`` in one segment (pipelined when several) and the server's
        ``replies`` in one segment; return the reply codes."""
        self.t += self._turn()
        self.emit(CLIENT, self.t, PSH | ACK, "".join(f"{c}\r\n" for c in commands).encode())
        self.t += self.rtt + self.rng.randint(200, 20_000)
        self.emit(
            SERVER, self.t, PSH | ACK, b"".join(reply(code, *lines) for code, lines in replies)
        )
        for command, (code, _) in zip(commands, replies, strict=True):
            verb = stage or command.split(" ", 1)[0].upper()
            if verb == "RCPT":
                self.recipients += 1
            self.record(verb, code)
        return [code for code, _ in replies]

    def body(self, message: bytes, code: int, text: str) -> None:
        """Send a (dot-stuffed) message and its end-of-data line; the server answers."""
        self.t += self._turn()
        self.bulk(CLIENT, message + b".\r\n")
        self.t += self.rng.randint(2_000, 60_000)  # queueing, content scanning
        self.emit(SERVER, self.t, PSH | ACK, reply(code, text))
        self.record("end of data", code)

    def tls(self, app_bytes: int) -> None:
        """After ``220`` to STARTTLS: a TLS 1.3 handshake (well-formed hellos, the rest
        encrypted records of random bytes), the message, close.  Nothing in here is visible
        to an SMTP analyser, so it changes no figure."""
        rng = self.rng
        session_id = rng.randbytes(32)
        hello = b"\x03\x03" + rng.randbytes(32) + b"\x20" + session_id
        versions = bytes.fromhex("002b0003020304")  # supported_versions: TLS 1.3
        padding = bytes.fromhex("0015") + _length(bytes(rng.randint(100, 400)), 2)
        client_hello = (
            hello + bytes.fromhex("00061301130213030100") + _length(versions + padding, 2)
        )
        server_hello = hello + bytes.fromhex("130100") + _length(bytes.fromhex("002b00020304"), 2)
        change_cipher_spec = _record(0x14, 3, b"\x01")
        self.t += self._turn()
        self.emit(CLIENT, self.t, PSH | ACK, _record(0x16, 1, _handshake(1, client_hello)))
        self.t += self.rtt + rng.randint(500, 5_000)
        self.bulk(
            SERVER,
            _record(0x16, 3, _handshake(2, server_hello))
            + change_cipher_spec
            + _record(0x17, 3, rng.randbytes(rng.randint(2_500, 5_500))),  # certificate...
        )
        self.emit(
            CLIENT, self.t, PSH | ACK, change_cipher_spec + _record(0x17, 3, rng.randbytes(53))
        )
        for size in (60, 90, 70):  # EHLO, AUTH or MAIL/RCPT/DATA, as encrypted exchanges
            self.t += self._turn()
            self.emit(CLIENT, self.t, PSH | ACK, _record(0x17, 3, rng.randbytes(size)))
            self.t += self.rtt + rng.randint(200, 5_000)
            self.emit(SERVER, self.t, PSH | ACK, _record(0x17, 3, rng.randbytes(size + 100)))
        self.t += self._turn()
        payload = b"".join(
            _record(0x17, 3, rng.randbytes(min(16_384, app_bytes - done)))
            for done in range(0, app_bytes, 16_384)
        )
        self.bulk(CLIENT, payload)
        self.t += rng.randint(2_000, 40_000)
        self.emit(SERVER, self.t, PSH | ACK, _record(0x17, 3, rng.randbytes(60)))
        self.t += self._turn()
        self.emit(CLIENT, self.t, PSH | ACK, _record(0x15, 3, rng.randbytes(26)))
        self.t += 20
        self.emit(CLIENT, self.t, FIN | ACK)
        self.t += self.rtt
        self.emit(SERVER, self.t, PSH | ACK, _record(0x15, 3, rng.randbytes(26)))
        self.emit(SERVER, self.t + 20, FIN | ACK)
        self.t += 20 + self._turn()
        self.emit(CLIENT, self.t, ACK)


def _words(packed: bytes) -> int:
    return int.from_bytes(packed[:2], "big") + int.from_bytes(packed[2:], "big")


def _length(body: bytes, size: int) -> bytes:
    """``body`` preceded by its length in ``size`` bytes, as TLS encodes vectors."""
    return len(body).to_bytes(size, "big") + body


def _record(kind: int, minor: int, body: bytes) -> bytes:
    """A TLS record: type, version 3.minor, length, body."""
    return bytes((kind, 3, minor)) + _length(body, 2)


def _handshake(kind: int, body: bytes) -> bytes:
    """A TLS handshake message: type, 3-byte length, body."""
    return bytes((kind,)) + _length(body, 3)


class Generator:
    """Invent the office and its traffic; write frames in time order and tally the truth."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.clients = self._clients()
        self.servers = self._servers()
        self.smarthost = Server(
            SMARTHOST,
            SMARTHOST_NAME,
            "provider.example",
            "postfix",
            9_000,
            True,
            True,
            False,
            False,
            0,
        )
        self.truth = {c.ip: HostTruth(c.role) for c in self.clients}
        self.users = [c for c in self.clients if c.role == "user"]
        self.relays = [c for c in self.clients if c.role == "relay"]
        self.bots = [c for c in self.clients if c.role == "spambot"]
        text = [self._text_line() for _ in range(600)]
        self.text_lines = [b"." + line if line.startswith(b".") else line for line in text]
        self.b64_lines = [base64.b64encode(rng.randbytes(57)) for _ in range(300)]
        self.sessions = 0

    # -- the cast ------------------------------------------------------------------------

    def _clients(self) -> list[Client]:
        rng = self.rng
        hosts = rng.sample([f"192.168.{n}.{h}" for n in (1, 2, 3) for h in range(20, 250)], 198)
        roles = ["spambot"] * 6 + ["user"] * 190
        clients = [self._client(ip, role) for ip, role in zip(hosts, roles, strict=False)]
        clients += [self._client(ip, "relay") for ip in ("192.168.0.10", "192.168.0.11")]
        return clients

    def _client(self, ip: str, role: str) -> Client:
        rng = self.rng
        name = rng.choice(FIRST_NAMES)
        helo = {
            "user": rng.choice(
                (f"DESKTOP-{rng.getrandbits(28):07X}", f"[{ip}]", f"{name}-pc.office.lan")
            ),
            "relay": f"mail{ip.rsplit('.', 1)[1]}.office.example",
            "spambot": "",
        }[role]
        return Client(
            ip=ip,
            role=role,
            helo=helo,
            user=f"{name}.{rng.getrandbits(12)}@office.example",
            auth=rng.choice(("PLAIN", "LOGIN")),
            pipelining=role == "relay" or rng.random() < 0.5,
            starttls=role == "user" and rng.random() < 0.3,
            ttl=rng.choice((64, 128)),
            mac=bytes((0x02, 0x1A)) + ipaddress.IPv4Address(ip).packed,
            port=rng.randint(49152, 60000),
        )

    def _servers(self) -> list[Server]:
        rng = self.rng
        addresses: set[str] = set()
        while len(addresses) < 3600:
            addresses.add(str(ipaddress.IPv4Address(0xC6120000 + rng.randint(1, (1 << 17) - 2))))
        addresses.update(f"203.0.113.{h}" for h in rng.sample(range(1, 255), 200))
        addresses.update(f"198.51.100.{h}" for h in rng.sample(range(30, 255), 200))
        servers = []
        for i, ip in enumerate(sorted(addresses, key=lambda a: ipaddress.IPv4Address(a))):
            software = rng.choices(("postfix", "exim", "exchange"), (5, 3, 2))[0]
            domain = f"{rng.choice(WORDS)}{i}.{rng.choice(('example', 'test', 'invalid'))}"
            servers.append(
                Server(
                    ip=ip,
                    name=f"mx{rng.randint(1, 3)}.{domain}",
                    domain=domain,
                    software=software,
                    rtt_us=rng.randint(8_000, 180_000),
                    pipelining=rng.random() < 0.8,
                    starttls=rng.random() < 0.7,
                    ehlo_unsupported=rng.random() < 0.02,
                    greylists=rng.random() < 0.15,
                    greet_delay_us=rng.choice((0, 0, 0, 50_000, 300_000, 6_000_000)),
                )
            )
        rng.shuffle(servers)  # popularity (below) must not follow address order
        return servers

    def _server(self) -> Server:
        """A few servers are popular, most are seen rarely."""
        return self.servers[int(len(self.servers) * self.rng.random() ** 2.5)]

    # -- content -------------------------------------------------------------------------

    def _text_line(self) -> bytes:
        rng = self.rng
        line = " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
        if rng.random() < 0.04:
            line = "." + line  # dot-stuffed on the wire
        elif rng.random() < 0.01:
            line = "."
        return line.encode()

    def size(self) -> int:
        """A message size: log-uniform from 300 bytes to 100 KB (median about 5 KB)."""
        return int(math.exp(self.rng.uniform(math.log(300), math.log(100_000))))

    def message(self, sender: str, rcpts: Sequence[str], spam: bool) -> bytes:
        """A message as sent after ``354``: headers, blank line, dot-stuffed body, CRLF."""
        rng = self.rng
        size = self.size()
        subject = " ".join(rng.choices(WORDS, k=rng.randint(2, 6)))
        attach = size > 8_000 and rng.random() < 0.6
        headers = [
            f"From: <{sender}>",
            f"To: {', '.join(f'<{r}>' for r in rcpts)}",
            f"Subject: {subject.upper() if spam else subject}",
            "Date: Tue, 20 Oct 2026 09:14:03 +0200",
            f"Message-ID: <{rng.getrandbits(64):016x}@{sender.rpartition('@')[2]}>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=b1" if attach else "Content-Type: text/plain",
        ]
        lines = [line.encode() for line in headers]
        lines.append(b"")
        pool = self.b64_lines if attach else self.text_lines
        lines.extend(rng.choices(self.text_lines, k=4))
        lines.extend(rng.choices(pool, k=max(1, size // 60)))
        return b"\r\n".join(lines) + b"\r\n"

    def _ehlo_reply(self, server: Server, helo: str) -> tuple[int, list[str]]:
        if server.software == "exim":
            first = f"{server.name} Hello {helo} [{OFFICE_PUBLIC}]"
            ext = ["SIZE 52428800", "8BITMIME", "PIPELINING", "STARTTLS", "HELP"]
        elif server.software == "exchange":
            first = f"{server.name} Hello [{OFFICE_PUBLIC}]"
            ext = [
                "SIZE 157286400",
                "PIPELINING",
                "DSN",
                "ENHANCEDSTATUSCODES",
                "STARTTLS",
                "8BITMIME",
                "BINARYMIME",
                "CHUNKING",
                "SMTPUTF8",
            ]
        else:
            first = server.name
            ext = [
                "PIPELINING",
                "SIZE 10240000",
                "VRFY",
                "ETRN",
                "STARTTLS",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING",
            ]
        if server is self.smarthost:
            ext.insert(5, "AUTH PLAIN LOGIN")
        ext = [e for e in ext if (e != "PIPELINING" or server.pipelining)]
        ext = [e for e in ext if (e != "STARTTLS" or server.starttls)]
        return 250, [first, *ext]

    def _banner(self, server: Server) -> str:
        return {
            "postfix": f"{server.name} ESMTP Postfix",
            "exim": f"{server.name} ESMTP Exim 4.96 Tue, 20 Oct 2026 09:14:03 +0200",
            "exchange": f"{server.name} Microsoft ESMTP MAIL Service ready",
        }[server.software]

    # -- sessions ------------------------------------------------------------------------

    def session(self, start: int) -> Connection:
        """Pick a client and play one session; tally what smtptop must count."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            client, kind = rng.choice(self.bots), "spambot"
        elif roll < 0.5:
            client, kind = rng.choice(self.relays), "relay"
        else:
            client, kind = rng.choice(self.users), "user"
        server = self.smarthost if kind == "user" else self._server()
        port = 587 if kind == "user" else 25
        client.port = client.port + 1 if client.port < 65535 else 49152
        conn = Connection(rng, client, server, port, start)
        conn.handshake()
        getattr(self, f"_{kind}")(conn)
        truth = self.truth[client.ip]
        truth.sessions += 1
        truth.destinations.add(server.ip)
        truth.rejected_sessions += conn.rejected
        truth.tempfailed_sessions += conn.tempfailed and not conn.rejected
        truth.accepted_messages += conn.messages
        truth.recipients += conn.recipients
        self.sessions += 1
        return conn

    def _ehlo(self, conn: Connection, helo: str) -> bool:
        """EHLO, falling back to HELO on 502; return whether extensions were offered."""
        server = conn.server
        if server.ehlo_unsupported:
            conn.ask([f"EHLO {helo}"], [(502, ["5.5.2 Error: command not recognized"])])
            conn.ask([f"HELO {helo}"], [(250, [server.name])])
            return False
        conn.ask([f"EHLO {helo}"], [self._ehlo_reply(server, helo)])
        return True

    def _transaction(
        self,
        conn: Connection,
        sender: str,
        rcpts: Sequence[str],
        rcpt_replies: Sequence[tuple[int, str]],
        pipelined: bool,
        *,
        spam: bool,
        end: tuple[int, str],
    ) -> bool:
        """MAIL, RCPTs, DATA (one segment when pipelined) and the body if DATA got 354;
        return whether the transaction got as far as the end of data."""
        mail = f"MAIL FROM:<{sender}>"
        rcpt_cmds = [f"RCPT TO:<{r}>" for r in rcpts]
        replies = [(code, [text]) for code, text in rcpt_replies]
        accepted = any(code < 300 for code, _ in rcpt_replies)
        if pipelined:
            data = (354, ["End data with <CR><LF>.<CR><LF>"])
            if not accepted:
                data = (554, ["5.5.1 Error: no valid recipients"])
            codes = conn.ask([mail, *rcpt_cmds, "DATA"], [(250, ["2.1.0 Ok"]), *replies, data])
            if codes[-1] != 354:
                return False
        else:
            if conn.ask([mail], [(250, ["2.1.0 Ok"])])[0] != 250:
                return False
            for command, answer in zip(rcpt_cmds, replies, strict=True):
                conn.ask([command], [answer])
            if not accepted:
                return False
            conn.ask(["DATA"], [(354, ["End data with <CR><LF>.<CR><LF>"])])
        conn.body(self.message(sender, rcpts, spam), *end)
        return True

    def _quit_or_reset(self, conn: Connection, quit_share: float) -> None:
        if self.rng.random() < quit_share:
            conn.ask(["QUIT"], [(221, ["2.0.0 Bye"])])
            conn.finish()
        else:
            conn.reset()

    def _user(self, conn: Connection) -> None:
        """A PC submitting through the smarthost with AUTH, or STARTTLS first."""
        rng, client = self.rng, conn.client
        conn.greet(220, self._banner(conn.server))
        self._ehlo(conn, client.helo)
        if client.starttls:
            conn.ask(["STARTTLS"], [(220, ["2.0.0 Ready to start TLS"])])
            conn.tls(self.size())
            return
        login, secret = client.user, f"pw{rng.getrandbits(32):x}"
        ok = rng.random() >= 0.01
        result = (
            (235, ["2.7.0 Authentication successful"])
            if ok
            else (535, ["5.7.8 Error: authentication failed: authentication failure"])
        )
        if client.auth == "PLAIN":
            blob = base64.b64encode(f"\0{login}\0{secret}".encode()).decode()
            conn.ask([f"AUTH PLAIN {blob}"], [result])
        else:
            conn.ask(["AUTH LOGIN"], [(334, ["VXNlcm5hbWU6"])])
            conn.ask(
                [base64.b64encode(login.encode()).decode()], [(334, ["UGFzc3dvcmQ6"])], stage="AUTH"
            )
            conn.ask([base64.b64encode(secret.encode()).decode()], [result], stage="AUTH")
        if ok:
            for _ in range(rng.choices((1, 2, 3), (85, 10, 5))[0]):
                count = rng.choices((1, 2, 3, 5, 12), (60, 20, 10, 7, 3))[0]
                rcpts = [f"{rng.choice(FIRST_NAMES)}@{self._server().domain}" for _ in range(count)]
                rcpt_replies = [
                    (250, "2.1.5 Ok")
                    if rng.random() >= 0.005
                    else (550, f"5.1.1 <{r}>: Recipient address rejected: User unknown")
                    for r in rcpts
                ]
                end = (250, f"2.0.0 Ok: queued as {rng.getrandbits(40):010X}")
                if rng.random() < 0.01:
                    end = (552, "5.3.4 Message size exceeds fixed limit")
                if not self._transaction(
                    conn, client.user, rcpts, rcpt_replies, client.pipelining, spam=False, end=end
                ):
                    conn.ask(["RSET"], [(250, ["2.0.0 Ok"])])
        self._quit_or_reset(conn, 0.97)

    def _relay(self, conn: Connection) -> None:
        """The LAN MTA delivering outside: STARTTLS where offered, greylisting sometimes."""
        rng, client, server = self.rng, conn.client, conn.server
        if rng.random() < 0.01:
            conn.greet(421, "4.7.0 Too many concurrent SMTP connections; please try again later")
            conn.finish()
            return
        conn.greet(220, self._banner(server))
        extensions = self._ehlo(conn, client.helo)
        if extensions and server.starttls:
            if rng.random() >= 0.03:
                conn.ask(["STARTTLS"], [(220, ["2.0.0 Ready to start TLS"])])
                conn.tls(self.size())
                return
            conn.ask(["STARTTLS"], [(454, ["4.7.0 TLS not available due to local problem"])])
        rcpts = [f"{rng.choice(FIRST_NAMES)}@{server.domain}" for _ in range(rng.randint(1, 3))]
        if server.greylists and rng.random() < 0.6:
            code, text = rng.choice(GREYLISTS)
            rcpt_replies = [
                (code, text.format(rcpt=r, domain=server.domain, ip=OFFICE_PUBLIC)) for r in rcpts
            ]
        else:
            rcpt_replies = [(250, "2.1.5 Ok")] * len(rcpts)
        end = (250, f"2.0.0 Ok: queued as {rng.getrandbits(40):010X}")
        if rng.random() < 0.03:
            end = (451, "4.3.0 Temporary system failure, please try again later")
        self._transaction(
            conn,
            client.user,
            rcpts,
            rcpt_replies,
            extensions and server.pipelining,
            spam=False,
            end=end,
        )
        self._quit_or_reset(conn, 0.99)

    def _spambot(self, conn: Connection) -> None:
        """Direct to MX with a fake HELO; refused by blocklists, greylisted, or it gets
        through; it hangs up with RST half of the time."""
        rng, server = self.rng, conn.server
        rand = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(5, 10)))
        helo = rng.choice(SPAM_HELOS).format(r=rand, pub=OFFICE_PUBLIC)
        roll = rng.random()
        if roll < 0.28:
            conn.greet(554, SPAMHAUS.format(ip=OFFICE_PUBLIC))
            self._quit_or_reset(conn, 0.5)
            return
        if roll < 0.33:
            conn.greet(421, f"4.7.0 {server.name} Error: too many connections from {OFFICE_PUBLIC}")
            conn.finish()
            return
        conn.greet(220, self._banner(server))
        if rng.random() < 0.5:
            extensions = self._ehlo(conn, helo)
        else:
            conn.ask([f"HELO {helo}"], [(250, [server.name])])
            extensions = False
        pipelined = extensions and server.pipelining and rng.random() < 0.3
        for _ in range(rng.randint(1, 3)):
            domain = rng.choice(SPAM_DOMAINS).format(r=rand)
            sender = f"{rng.choice(FIRST_NAMES)}{rng.randint(1, 999)}@{domain}"
            rcpts = [f"{rng.choice(FIRST_NAMES)}@{server.domain}" for _ in range(rng.randint(1, 8))]
            fate = rng.random()
            ip = OFFICE_PUBLIC
            if fate < 0.35:
                text = rng.choice(RCPT_BLOCKS)
                rcpt_replies = [(550, text.format(rcpt=r, ip=ip)) for r in rcpts]
            elif fate < 0.35 + (0.5 if server.greylists else 0.1):
                code, text = rng.choice(GREYLISTS)
                rcpt_replies = [
                    (code, text.format(rcpt=r, domain=server.domain, ip=ip)) for r in rcpts
                ]
            else:
                rcpt_replies = [(250, "2.1.5 Ok")] * len(rcpts)
            end = (250, f"2.0.0 Ok: queued as {rng.getrandbits(40):010X}")
            if rng.random() < 0.1:
                end = (550, "5.7.1 Message rejected as spam by Content Filtering")
            if not self._transaction(
                conn, sender, rcpts, rcpt_replies, pipelined, spam=True, end=end
            ):
                break
        self._quit_or_reset(conn, 0.5)


def generate(path: Path, packets: int, seed: int) -> dict[str, object]:
    """Write the capture to ``path`` and its truth next to it; return the truth."""
    gen = Generator(seed)
    rng = gen.rng
    written = 0
    size = len(_PCAP_HEADER)
    heap: list[tuple[int, int, int, list[tuple[int, bytes]]]] = []
    order = 0  # ties between sessions go to the older one
    next_start = START_US
    record = _RECORD.pack
    with path.open("wb", buffering=1 << 20) as out:
        out.write(_PCAP_HEADER)

        def flush(until: int) -> None:
            nonlocal written, size
            while heap and heap[0][0] <= until:
                _, num, index, frames = heap[0]
                t, frame = frames[index]
                sec, usec = divmod(t, 1_000_000)
                n = len(frame)
                out.write(record(sec, usec, n, n))
                out.write(frame)
                written += 1
                size += 16 + n
                index += 1
                if index < len(frames):
                    heapq.heapreplace(heap, (frames[index][0], num, index, frames))
                else:
                    heapq.heappop(heap)

        while written < packets:
            flush(next_start - 1)
            if written >= packets:
                break
            frames = gen.session(next_start).frames
            frames.sort(key=lambda f: f[0])
            heapq.heappush(heap, (frames[0][0], order, 0, frames))
            order += 1
            next_start += max(1, int(rng.expovariate(1 / ARRIVAL_MEAN_US)))
        flush(1 << 62)
    truth: dict[str, object] = {
        "seed": seed,
        "packets": written,
        "bytes": size,
        "sessions": gen.sessions,
        "hosts": {
            ip: host.as_json()
            for ip, host in sorted(gen.truth.items(), key=lambda kv: ipaddress.IPv4Address(kv[0]))
            if host.sessions
        },
    }
    truth_path(path).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def truth_path(path: Path) -> Path:
    return path.with_name(path.name + ".truth.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the pcap file to write")
    parser.add_argument(
        "--packets",
        type=int,
        default=1_000_000,
        help="stop once this many packets are written and the open sessions have ended",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    truth = generate(args.out, args.packets, args.seed)
    took = time.perf_counter() - began
    print(
        f"{args.out}: {truth['packets']:,} packets, {truth['sessions']:,} sessions,"
        f" {truth['bytes'] / 1e6:.1f} MB in {took:.1f} s; truth in {truth_path(args.out)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
