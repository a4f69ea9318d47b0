"""Hostile traffic through the real engine (Analyzer, Model, the report's Analysis and JSON).

A spambot, or whoever hides behind it, chooses every byte smtptop reads.  Each test sends one
kind of abuse (session floods, endless lines and bodies, unanswered pipelining, SYN floods,
conflicting TCP overlaps, replies to nothing, binary noise) and checks that memory stays
within the engine's bounds (the analyzer's flow table, the parser's buffers and queues, the
model's collections), that the counts stay exact where they can be, and that whatever a bound
cut is counted and shown.

``python tests/test_adversarial.py sessions 1000000`` runs the session flood at full size
(tests/FUZZING.md has its time and peak memory); the test runs a tenth of it.
"""

from __future__ import annotations

import ipaddress
import json
import random
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import synth
from fuzz_engine import AUTH_BDAT, DIALOGUE, PREGREET, REFUSED, TOKENS

import smtptop.analysis as analysis_module
from smtptop import pipeline
from smtptop.analysis import Analysis
from smtptop.analyzer import Analyzer, EngineConfig
from smtptop.model import Model, ModelLimits, Session, apply
from smtptop.render import to_json
from smtptop.smtp import ParserLimits, SmtpParser
from smtptop.tcp import ReassemblyLimits
from smtptop.wire import encode

ETH = synth.LINKTYPE_ETHERNET
PC = "192.168.1.66"
MX = "198.51.100.25"
START = 1_800_000_000.0
MB = 1 << 20
BATCH_EVENTS = 1000  # as the live capture thread: apply once this many events are waiting
EVICTED = "evicted: too many open connections"
DIALOGUES = (DIALOGUE, AUTH_BDAT, PREGREET, REFUSED)  # the fuzz harness's seeds


class Run:
    """One engine, fed frame by frame as the live monitor does, with its bounds checked."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        limits: ModelLimits | None = None,
        check_every: int = 256,
    ) -> None:
        self.analyzer = Analyzer(config or EngineConfig())
        self.config = self.analyzer.config
        self.model = Model(limits=limits)
        self.limits = self.model.limits
        self.analysis = Analysis(self.model, self.analyzer.stats)
        self.check_every = check_every
        self.packets = 0
        self.events = 0
        self.closed: Counter[str] = Counter()
        self.peak_flows = 0
        self.peak_open = 0
        self.model.on_session_closed.append(self._session_closed)

    def feed(self, frames: Iterable[synth.Frame], linktype: int = ETH) -> None:
        analyzer, model, packet = self.analyzer, self.model, self.analyzer.packet
        for frame in frames:
            waiting = len(analyzer.out)
            packet(frame.ts, linktype, frame.data)
            self.events += len(analyzer.out) - waiting
            self.packets += 1
            self.peak_flows = max(self.peak_flows, len(analyzer.flows))
            if len(analyzer.out) >= BATCH_EVENTS:
                apply(model, encode(analyzer.take()))
            if self.packets % self.check_every == 0:
                self.check_bounds()

    def finish(self) -> dict:
        """End the capture; return the report's JSON."""
        self.check_bounds()
        self.analyzer.finish()
        apply(self.model, encode(self.analyzer.take()))
        assert not self.analyzer.flows and not self.model.open
        stats = self.analyzer.stats
        assert stats.errors == 0, stats.error_samples
        assert stats.packets == self.packets
        return to_json(self.analysis)

    def check_bounds(self) -> None:
        """Everything that grows with traffic is within its configured bound."""
        config, limits, analyzer, model = self.config, self.limits, self.analyzer, self.model
        self.peak_open = max(self.peak_open, len(model.open))
        assert len(analyzer.flows) <= config.max_connections
        assert len(model.open) <= config.max_connections
        smtp = config.smtp
        for flow in analyzer.flows.values():
            parser = flow.parser
            assert len(parser._client.buf) <= smtp.max_line
            assert len(parser._server.buf) <= smtp.max_line
            assert len(parser._pending) <= smtp.max_pending
            assert len(parser._reply_lines) <= smtp.max_reply_lines
            assert len(parser._headers) <= smtp.max_header_lines
            assert parser._header_bytes <= smtp.max_header_bytes
            for stream in flow.conn.streams:
                assert len(stream.ooo) <= config.tcp.max_ooo_segments
                assert stream.ooo_bytes <= config.tcp.max_ooo_bytes
        assert len(model.finished) <= limits.max_sessions
        assert len(model.hosts) <= limits.max_hosts
        for host in model.hosts.values():
            assert len(host.servers) <= limits.max_servers_per_host
            assert len(host.helos) <= limits.max_helos
            assert len(host.sender_domains) <= limits.max_sender_domains
            assert len(host.refusals) <= limits.max_refusals
            assert host.open_sessions <= config.max_connections
        for session in model.open.values():
            self._check_session(session)

    def _session_closed(self, session: Session) -> None:
        self.closed[session.close_reason] += 1
        self._check_session(session)

    def _check_session(self, session: Session) -> None:
        limits = self.limits
        assert len(session.transcript) <= limits.max_transcript_lines
        assert session.transcript_bytes <= limits.max_transcript_bytes
        assert len(session.mail_from) <= limits.max_addresses
        assert len(session.rcpt_to) <= limits.max_addresses
        assert len(session.replies) <= limits.max_replies


def only_session(run: Run) -> Session:
    (session,) = run.model.sessions()
    return session


def notes(session: Session) -> list[str]:
    return [line.text for line in session.transcript if line.kind == "*"]


def greeted(*, mss: int = 1460, port: int = 50000) -> synth.Conversation:
    """A session past its greeting and EHLO."""
    conv = synth.Conversation(PC, port, MX, 25, start=START, mss=mss)
    conv.smtp([("S", b"220 mx ESMTP\r\n"), ("C", b"EHLO pc66\r\n"), ("S", b"250 mx\r\n")])
    return conv


# --- a million sessions from one host ----------------------------------------------------------

ACCEPTED = [
    ("S", b"220 mx.example.net ESMTP\r\n"),
    ("C", b"EHLO pc000000\r\n"),
    ("S", b"250 mx.example.net\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 bye\r\n"),
]
REFUSED = [
    ("S", b"554 5.7.1 Service unavailable; blocked using zen.spamhaus.org\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 bye\r\n"),
]


class _Template:
    """One session's frames with the client port, server address and HELO number left open,
    so a flood of sessions costs a few slices a frame instead of packing every packet."""

    def __init__(self, script: list[tuple[str, bytes]]) -> None:
        conv = synth.Conversation(PC, 1024, "20.0.0.0", 25, start=0.0, rtt=0.002)
        conv.smtp(script)
        conv.close()
        client_ip = ipaddress.ip_address(PC).packed
        self.frames = []
        for frame in conv.frames:
            data = frame.data
            if data[47] == synth.ACK and len(data) == 54:
                continue  # a bare ACK: nothing for the engine but time, and floods are slow
            from_client = data[26:30] == client_ip
            helo = data.find(b"pc000000")
            self.frames.append((frame.ts, from_client, data, helo))

    def session(self, number: int, start: float) -> Iterator[synth.Frame]:
        port = struct.pack("!H", 1024 + number % 64000)
        server = struct.pack("!I", 0x14000000 + number)  # 20.0.0.0 onwards
        helo = b"pc%06d" % (number % 1_000_000)
        for ts, from_client, data, at in self.frames:
            if from_client:
                data = data[:30] + server + port + data[36:]
            else:
                data = data[:26] + server + data[30:36] + port + data[38:]
            if at >= 0:
                data = data[:at] + helo + data[at + 8 :]
            yield synth.Frame(start + ts, data)


def session_flood(count: int, spacing: float = 0.01) -> Iterator[synth.Frame]:
    """``count`` sessions from PC, each to another server, every fourth refused by a
    blocklist; sessions overlap a little, and ports come back after 64,000 sessions."""
    accepted, refused = _Template(ACCEPTED), _Template(REFUSED)
    for number in range(count):
        template = refused if number % 4 == 3 else accepted
        yield from template.session(number, START + number * spacing)


def flood_sessions(count: int, limits: ModelLimits | None = None) -> tuple[Run, dict]:
    run = Run(limits=limits, check_every=4096)
    run.feed(session_flood(count))
    return run, run.finish()


def check_session_flood(run: Run, report: dict, count: int) -> None:
    model, limits = run.model, run.limits
    kept = min(count, limits.max_sessions)  # one host, under the byte budget
    servers = min(count, limits.max_servers_per_host)
    assert model.sessions_total == count
    assert len(model.finished) == kept and model.sessions_not_kept == count - kept
    assert report["stats"]["sessions"] == count
    assert report["stats"]["sessions_not_kept"] == count - kept
    assert len(report["sessions"]) == kept
    assert run.closed == {"closed": count}
    (host,) = model.hosts.values()
    assert host.sessions == count
    assert host.rejected_sessions == count // 4 and host.tempfailed_sessions == 0
    assert host.destinations == count  # exact: only the per-server rows are bounded
    assert len(host.servers) == servers and host.servers_dropped == count - servers
    assert sum(s.sessions for s in host.servers.values()) + host.servers_dropped == count
    assert len(host.helos) == limits.max_helos
    assert (host.refusals_not_kept, sum(host.refusals.values())) == (0, count // 4)
    assert host.open_sessions == 0 and host.max_parallel < 100
    (json_host,) = report["hosts"]
    assert (json_host["sessions"], json_host["rejected_sessions"]) == (count, count // 4)
    assert run.peak_flows < 10_000  # closed connections linger a minute, then go


def test_a_hundred_thousand_sessions_from_one_host() -> None:
    """A spambot's day: every session counted, refusals counted, old sessions and servers past
    their bounds summarised, and the flow table emptied as connections close."""
    count = 100_000
    limits = ModelLimits(max_servers_per_host=50_000)  # reach that bound too
    run, report = flood_sessions(count, limits)
    check_session_flood(run, report, count)


# --- endless lines, bodies and pipelines -------------------------------------------------------


def test_a_ten_megabyte_line_without_crlf() -> None:
    """Cut at the line limit, said so once, the rest dropped; the next line parses."""
    conv = greeted()
    conv.client(b"A" * (10 * MB))
    conv.client(b"\r\nQUIT\r\n")
    conv.server(b"221 bye\r\n")
    conv.close()
    run = Run(check_every=64)
    run.feed(conv.frames)
    report = run.finish()
    session = only_session(run)
    max_line = run.config.smtp.max_line
    commands = [line.text for line in session.transcript if line.kind == "C"]
    assert commands == ["EHLO pc66", "A" * max_line, "QUIT"]
    assert notes(session)[:2] == [
        f"line longer than {max_line} bytes",
        "line cut at the length limit",
    ]
    assert session.violations == 1 and session.quit_sent
    assert session.client_bytes == len(conv.stream("C"))
    assert report["sessions"][0]["bytes"]["client"] == 10 * MB + len(b"EHLO pc66\r\n\r\nQUIT\r\n")


@pytest.mark.parametrize("ending", ["capture ends", "server times out"])
def test_data_that_never_ends(ending: str) -> None:
    """A 10 MB body without its terminator: counted, headers bounded, marked unfinished."""
    conv = greeted(mss=65000)
    conv.smtp([("C", b"DATA\r\n"), ("S", b"354 go ahead\r\n")])
    headers = b"".join(b"X-Header-%04d: %s\r\n" % (n, b"h" * 60) for n in range(1000))
    line = b"b" * 998 + b"\r\n"
    body = headers + b"\r\n" + line * ((10 * MB - len(headers)) // len(line))
    conv.client(body)
    if ending == "server times out":
        conv.server(b"421 4.4.2 mx Error: timeout exceeded\r\n")
    run = Run(check_every=16)
    run.feed(conv.frames)
    report = run.finish()
    session = only_session(run)
    smtp = run.config.smtp
    kept = [line.text for line in session.transcript if line.kind == "H"]
    assert len(kept) <= smtp.max_header_lines and sum(map(len, kept)) <= smtp.max_header_bytes
    assert f"message body: {len(body)} bytes (end not seen)" in notes(session)
    assert session.accepted_messages == 0
    if ending == "server times out":
        assert session.outcome == "tempfailed" and session.outcome_reply.stage == "end of data"
        assert report["sessions"][0]["outcome_reply"]["code"] == 421
    else:
        assert session.close_reason == "capture ended" and session.outcome == "no-mail"


def test_headers_do_not_depend_on_segmentation() -> None:
    """A 5,000-byte first header line: in one 64 KB (offloaded) segment, or in 1,460-byte ones."""
    body = b"X-Long: " + b"x" * 5000 + b"\r\nSubject: hello\r\n\r\nbody\r\n.\r\n"
    shown = []
    for mss in (65000, 1460):
        conv = greeted(mss=mss)
        conv.smtp([("C", b"DATA\r\n"), ("S", b"354 go ahead\r\n"), ("C", body)])
        conv.smtp([("S", b"250 queued\r\n")])
        run = Run()
        run.feed(conv.frames)
        run.finish()
        shown.append([line.text for line in only_session(run).transcript if line.kind == "H"])
    assert shown[0] == shown[1]


def parsed(steps: list[tuple[int, bytes]], cuts: list[list[int]], limits: ParserLimits) -> list:
    """The parser's events for a dialogue, each step's bytes fed in pieces cut at ``cuts``."""
    parser = SmtpParser(limits=limits)
    for (side, data), points in zip(steps, cuts, strict=True):
        for start, end in zip([0, *points], [*points, len(data)], strict=True):
            parser.receive_data(side, data[start:end], 0.0)
    parser.close(0.0)
    return parser.events()


@pytest.mark.parametrize(
    "limits",
    [ParserLimits(), ParserLimits(16, 3, 20, 2, 2)],
    ids=["default limits", "tiny limits"],
)
def test_segmentation_does_not_change_what_is_parsed(limits: ParserLimits) -> None:
    """The attacker chooses the segment boundaries: mutated dialogues give the same events
    in one piece as cut anywhere (TLS records are left out: they are recognised only at the
    start of a segment, by design)."""
    rng = random.Random(5)
    tokens = [t for t in TOKENS if not t.startswith(b"\x16")]
    for _ in range(300):
        steps = [(0 if s[0] == "C" else 1, s[1]) for s in rng.choice(DIALOGUES)]
        for _ in range(rng.randint(1, 6)):
            index = rng.randrange(len(steps))
            side, data = steps[index]
            at = rng.randrange(len(data) + 1)
            insert = b"".join(rng.choice(tokens) for _ in range(rng.randint(1, 3)))
            steps[index] = (side, data[:at] + insert * rng.choice((1, 5, 300)) + data[at:])
        cuts = [sorted(rng.sample(range(1, len(d)), min(len(d) - 1, 8))) for _, d in steps]
        whole = parsed(steps, [[] for _ in steps], limits)
        assert parsed(steps, cuts, limits) == whole, steps


def test_a_hundred_thousand_pipelined_commands_without_replies() -> None:
    """Every recipient counted; what the parser and the model hold stays bounded; the
    overflow is a violation each time, and what the transcript could not keep is counted."""
    count = 100_000
    conv = greeted()
    conv.client(b"MAIL FROM:<spam@example.biz>\r\n" + b"RCPT TO:<victim@example.org>\r\n" * count)
    conv.close()
    run = Run(check_every=32)
    run.feed(conv.frames)
    report = run.finish()
    session = only_session(run)
    limits, max_pending = run.limits, run.config.smtp.max_pending
    commands = count + 1  # MAIL and the RCPTs; EHLO was answered
    overflows = (commands - 1) // max_pending
    assert session.recipients == count and run.model.hosts[PC].recipients == count
    assert session.rcpt_to == ["victim@example.org"] * limits.max_addresses
    assert session.mail_from == ["spam@example.biz"] and session.pipelined
    assert session.violations == overflows
    # greeting, EHLO, its reply, the commands, the overflow notes, the closing note
    lines = 3 + commands + overflows + 1
    assert len(session.transcript) == limits.max_transcript_lines
    assert session.transcript_lines_not_kept == lines - limits.max_transcript_lines
    assert report["sessions"][0]["transcript_lines_not_kept"] == session.transcript_lines_not_kept


def test_replies_without_commands() -> None:
    """Replies to nothing answer nothing: no counts move, and they stay bounded."""
    conv = synth.Conversation(PC, 50000, MX, 25, start=START)
    replies = b"250 ok\r\n" * 500 + b"550 5.7.1 go away\r\n" * 500 + b"250 2.0.0 queued\r\n"
    long_reply = b"250-x\r\n" * 100_000 + b"250 done\r\n"
    conv.smtp([("S", b"220 mx ESMTP\r\n"), ("S", replies), ("S", long_reply)])
    conv.close("server")
    run = Run(check_every=16)
    run.feed(conv.frames)
    report = run.finish()
    session = only_session(run)
    limits = run.limits
    assert len(session.replies) == limits.max_replies
    assert session.replies_not_kept == 1 + 1001 + 1 - limits.max_replies
    assert {r.stage for r in session.replies[1:]} == {"unsolicited"}
    assert session.outcome == "no-mail" and session.outcome_reply is None
    assert session.accepted_messages == 0 and session.outstanding == 0
    assert run.model.hosts[PC].rejected_sessions == 0
    assert session.transcript_lines_not_kept > 0
    assert report["sessions"][0]["transcript_lines_not_kept"] == session.transcript_lines_not_kept


# --- floods and noise --------------------------------------------------------------------------


def syn_flood(count: int, seed: int = 1) -> tuple[list[synth.Frame], int]:
    """``count`` SYNs from random source ports of one host, each with its own ISN; also
    returns how many distinct ports they came from."""
    rng = random.Random(seed)
    template = synth.link_frame(
        ETH, synth.tcp_packet(PC, MX, 1024, 25, seq=0, flags=synth.SYN, options=bytes(4))
    )
    frames, ports = [], set()
    for number in range(count):
        port = rng.randrange(1024, 65536)
        ports.add(port)
        head = struct.pack("!HHI", port, 25, number)
        frames.append(synth.Frame(START + number * 0.0001, template[:34] + head + template[42:]))
    return frames, len(ports)


def test_syn_flood() -> None:
    """Every SYN is a session; open connections stay within max_connections; every session
    ends once, evicted (and counted), replaced on its port, or at the end of the capture.

    The table is smaller than the default 65,536 so that one host's 64,512 ports overflow it.
    """
    count, max_connections = 100_000, 4096
    frames, ports = syn_flood(count)
    run = Run(EngineConfig(max_connections=max_connections), check_every=1024)
    run.feed(frames)
    report = run.finish()
    stats, model = run.analyzer.stats, run.model
    evicted = stats.connections_evicted
    assert model.sessions_total == report["stats"]["sessions"] == count
    assert run.peak_flows <= max_connections and run.peak_open <= max_connections
    assert model.hosts[PC].max_parallel <= max_connections
    assert run.closed[EVICTED] == evicted == report["stats"]["connections_evicted"]
    assert run.closed["capture ended"] <= max_connections
    assert sum(run.closed.values()) == count
    assert set(run.closed) <= {EVICTED, "port reused", "capture ended"}
    # the table stayed full: a full table forgets its least recently active eighth at once
    assert max_connections * 7 // 8 < run.closed["capture ended"] <= max_connections
    assert evicted > count - ports  # more evictions than ports came back
    kept = min(count, run.limits.max_sessions)  # one host, under the byte budget
    assert len(model.finished) == kept and model.sessions_not_kept == count - kept


@pytest.mark.parametrize("first", ["client", "server", "mid-stream"])
def test_binary_garbage_both_ways(first: str) -> None:
    """Noise on port 25: identified as not SMTP (or ignored mid-stream) at a bounded cost."""
    rng = random.Random(first)
    conv = synth.Conversation(PC, 50000, MX, 25, start=START)
    conv.handshake()
    sides = ["C", "S"] if first != "server" else ["S", "C"]
    for number in range(64):
        noise = bytes(rng.getrandbits(8) for _ in range(16384))
        conv.send(sides[number % 2], b"\x00" + noise)
    conv.close()
    frames = conv.frames[3:] if first == "mid-stream" else conv.frames
    run = Run(check_every=16)
    run.feed(frames)
    run.finish()
    session = only_session(run)
    assert session.client_bytes == session.server_bytes == 32 * 16385
    assert session.helo == "" and session.recipients == 0 and not session.replies
    if first == "mid-stream":
        assert session.midstream and session.violations == 0
    else:
        assert session.non_smtp and session.outcome == "not-smtp"
        assert run.events < 64  # it stops parsing once it knows
    assert len(session.transcript) <= 32  # a few lines before it gives up


# --- TCP overlaps ------------------------------------------------------------------------------


def client_commands(frames: list[synth.Frame], conflicts: int = 0) -> list[str]:
    """The client's lines as parsed, after checking that ``conflicts`` retransmissions that
    contradicted the first copy were counted and noted."""
    run = Run(check_every=1)
    run.feed(frames)
    report = run.finish()
    session = only_session(run)
    assert session.conflicts == report["stats"]["tcp_conflicts"] == conflicts
    noted = [text for text in notes(session) if "said something else" in text]
    assert len(noted) == bool(conflicts)
    return [line.text for line in session.transcript if line.kind == "C"]


def client_segment(conv: synth.Conversation, offset: int, payload: bytes) -> synth.Frame:
    """A client segment at ``offset`` in its byte stream, packed by hand: synth sends only
    what extends or repeats the stream it has."""
    seq = (conv.isn["C"] + 1 + offset) % (1 << 32)
    packet = synth.tcp_packet(PC, MX, conv.client_port, 25, seq=seq, payload=payload)
    return synth.Frame(conv.frames[-1].ts + 0.001, synth.link_frame(ETH, packet))


def test_a_conflicting_retransmission_loses_to_the_first_copy() -> None:
    conv = greeted()
    at = len(conv.stream("C"))
    conv.client(b"MAIL FROM:<first@example.org>\r\n")
    conv.inject("C", at, b"MAIL FROM:<evil!@example.org>\r\n")
    conv.client(b"RCPT TO:<bob@", ack=False)
    conv.inject("C", at + 40, b"XXXXexample.org>\r\n")  # overlaps "bob@", then goes on
    conv.close()
    assert client_commands(conv.frames, conflicts=2)[1:] == [
        "MAIL FROM:<first@example.org>",
        "RCPT TO:<bob@example.org>",
    ]


def test_conflicting_out_of_order_copies_at_one_place_keep_the_first() -> None:
    conv = greeted()
    at = len(conv.stream("C"))
    frames = [
        *conv.frames,
        client_segment(conv, at + 11, b"first@exa"),  # after a hole
        client_segment(conv, at + 11, b"evil!@exa"),
        client_segment(conv, at, b"MAIL FROM:<"),  # fills the hole
        client_segment(conv, at + 20, b"mple.org>\r\n"),
    ]
    assert client_commands(frames, conflicts=1)[1] == "MAIL FROM:<first@example.org>"


def test_overlapping_out_of_order_segments_keep_the_first_copy() -> None:
    """Buffered segments that overlap from different starts: the bytes that came first win,
    and the contradiction is counted (the later one won, uncounted, until fuzzing found it)."""
    conv = greeted()
    at = len(conv.stream("C"))
    frames = [
        *conv.frames,
        client_segment(conv, at + 14, b"st@exa"),  # bytes 14..20 arrive first, after a hole
        client_segment(conv, at + 11, b"firEVIL"),  # 11..18, conflicting on 14..18
        client_segment(conv, at, b"MAIL FROM:<"),  # fills the hole
        client_segment(conv, at + 20, b"mple.org>\r\n"),
    ]
    assert client_commands(frames, conflicts=1)[1] == "MAIL FROM:<first@example.org>"


# --- bounds that did not hold ------------------------------------------------------------------


def test_out_of_order_store_stays_bounded() -> None:
    """Many one-byte segments after holes, then big segments far ahead: when each big one
    pushed out only the earliest one-byte segment, the store grew to 16 MiB."""
    tcp = ReassemblyLimits()
    run = Run(EngineConfig(tcp=tcp), check_every=1 << 30)
    conv = greeted()
    at = len(conv.stream("C"))
    run.feed(conv.frames)
    (flow,) = run.analyzer.flows.values()
    stream = flow.conn.streams[0]
    peak = 0
    tiny = [(at + 2 + 2 * n, b"t") for n in range(tcp.max_ooo_segments - 3)]
    big = [(at + 100_000 + 65_000 * n, b"B" * 65_000) for n in range(tcp.max_ooo_segments)]
    for offset, payload in tiny + big:
        run.feed([client_segment(conv, offset, payload)])
        peak = max(peak, stream.ooo_bytes)
    run.finish()
    assert peak <= tcp.max_ooo_bytes


def test_report_batches_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight 65,000-byte segments of one-letter commands, over a quarter of a million events:
    the model takes them as they come (it took them every 2,048 records, ~150 bytes waiting
    per byte read).  Blank lines would not do: a run of them is one event now."""
    conv = greeted(mss=65000)
    for _ in range(8):
        conv.client(b"x\n" * 32500, ack=False)
    conv.close()
    path = tmp_path / "short-lines.pcap"
    synth.write_pcap(path, conv.frames, ETH)
    batches: list[int] = []
    real_apply = analysis_module.apply

    def counting_apply(model: Model, batch: list) -> None:
        batches.append(len(batch))
        real_apply(model, batch)

    monkeypatch.setattr(analysis_module, "apply", counting_apply)
    analysis = analysis_module.analyze([str(path)], workers=0)
    assert analysis.model.sessions_total == 1
    one_record = 32500 + 33 + 2  # a command a line, an overflow note per 1,000, FlowOpened...
    assert max(batches) <= pipeline.MAX_WAITING_EVENTS + one_record


# --- text a hostile server makes smtptop keep ----------------------------------------------


PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def report_peak(capture: Path, out: Path) -> int:
    """Run ``smtptop report --json`` on a capture; the peak resident bytes of the command and
    the worker it forks.  A small Python starts it: a child forked from this test's process
    would count the test's own memory in its peak."""
    command = [sys.executable, "-m", "smtptop", "report", "--json", "-o", str(out), str(capture)]
    peak = subprocess.check_output([sys.executable, "-c", PEAK_OF_CHILD, *command], text=True)
    return int(peak) * 1024


def hostile_reply(code: int, lines: int, last: bytes = b"") -> bytes:
    """A reply of ``lines`` lines of 4,000 control bytes (each kept as the four characters
    of its escape)."""
    body = b"".join(b"%d-" % code + b"\x01" * 4000 + b"\r\n" for _ in range(lines - 1))
    return body + b"%d " % code + last + b"\x01" * 4000 + b"\r\n"


def test_huge_replies_are_cut_and_counted(tmp_path: Path) -> None:
    """Finding #1 of issue 12: 100-line replies of control bytes to every command.  Unbounded,
    these 75 replies of 1.6 MB escaped each took 750 MB."""
    reply = hostile_reply(250, 100)
    frames = []
    for n in range(3):
        conv = greeted(port=41000 + n)
        conv.smtp([step for _ in range(25) for step in (("C", b"NOOP\r\n"), ("S", reply))])
        conv.close()
        frames += conv.frames
    capture = tmp_path / "replies.pcap.gz"
    synth.write_pcap(capture, frames, ETH)
    out = tmp_path / "report.json"
    assert report_peak(capture, out) < 150 * MB
    assert out.stat().st_size < 2 * MB
    sessions = json.loads(out.read_text())["sessions"]
    assert len(sessions) == 3
    texts = [r["text"] for s in sessions for r in s["replies"]]
    assert len(texts) == 3 * 27 and all(len(t) <= 4096 + 40 for t in texts)
    # The parser collects 16 KiB of a reply (4 lines and 384 bytes, escaped four times over,
    # joined by 4 newlines), the model keeps 4,096 characters of that; the bytes the parser
    # did not collect count one each.
    collected, received = 16_384, 100 * 4000
    gone = (collected * 4 + 4 - 4096) + (received - collected)
    assert texts[2].endswith(f"...({gone:,} characters not kept)")
    assert sum(s["reply_characters_not_kept"] for s in sessions) > 0


def test_many_huge_refusals_per_host_are_cut_and_counted(tmp_path: Path) -> None:
    """The second route of finding #1: 64 distinct refusals of 800 KB escaped per host, from
    4 hosts: the hosts' refusal tables and the blocklist classifier see at most 1 KiB of each
    (refusals that differ only past it count as one).  Unbounded, this took 1.3 GB."""
    frames = []
    for h in range(4):
        conv = synth.Conversation(f"192.168.3.{h + 1}", 40000, MX, 25, start=START + h)
        script = [("S", b"220 mx ESMTP\r\n")]
        for t in range(64):
            script += [
                ("C", b"MAIL FROM:<a@b.example>\r\n"),
                ("S", hostile_reply(550, 50, b"%d " % t)),
            ]
        conv.smtp(script)
        conv.close()
        frames += conv.frames
    capture = tmp_path / "refusals.pcap.gz"
    synth.write_pcap(capture, frames, ETH)
    out = tmp_path / "report.json"
    assert report_peak(capture, out) < 150 * MB
    assert out.stat().st_size < 2 * MB
    report = json.loads(out.read_text())
    assert [h["rejected_sessions"] for h in report["hosts"]] == [1] * 4
    model = analysis_module.analyze([str(capture)], workers=0).model
    for host in model.hosts.values():
        assert host.refusal_bytes <= model.limits.max_refusal_bytes
        assert sum(host.refusals.values()) + host.refusals_not_kept == 64  # each counted
        assert all(len(text) <= 1024 + 40 for _, text in host.refusals)
    shown = {h["ip"]: h["refusals_not_kept"] for h in report["hosts"]}
    assert shown == {ip: host.refusals_not_kept for ip, host in model.hosts.items()}


def test_a_line_feed_flood_is_one_note_with_its_count() -> None:
    """2 MB of bare LFs each way were an event a byte (30 MB took 74 s, 100 MB over five
    minutes); now each run is one line and one note with the exact count."""
    conv = greeted(mss=65000)
    for _ in range(32):
        conv.client(b"\n" * 65000, ack=False)
    for _ in range(32):
        conv.server(b"\n" * 65000, ack=False)
    conv.close()
    run = Run()
    run.feed(conv.frames)
    run.finish()
    assert run.events < 20
    session = only_session(run)
    assert notes(session).count("2,080,000 empty lines") == 2  # the client's, the server's
    assert [line.text for line in session.transcript if line.kind == "C"] == ["EHLO pc66", ""]


# --- the full-size flood -----------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``sessions N``: the session flood at any size, with its time."""
    if len(argv) != 2 or argv[0] != "sessions":
        print("usage: python tests/test_adversarial.py sessions COUNT", file=sys.stderr)
        return 2
    count = int(argv[1])
    began = time.monotonic()
    run, report = flood_sessions(count)
    seconds = time.monotonic() - began
    check_session_flood(run, report, count)
    print(
        f"{count} sessions, {run.packets} packets in {seconds:.1f} s "
        f"({run.packets / seconds:.0f} packets/s); peak flows {run.peak_flows}; "
        f"sessions kept {len(run.model.finished)}, not kept {run.model.sessions_not_kept}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
