"""The report's two-process pipeline: the engine in a forked child, the model here.

It must give exactly the report one process gives, carry every kind of event across the
pipe as a row of plain values (smtptop.wire) holding all its fields, and turn a failing or
dying engine process into one line, not a hang.
"""

from __future__ import annotations

import ipaddress
import json
import marshal
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import MISSING, fields, is_dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, get_args

import pytest
import sample
import synth
from conformance.expected import corpus_root
from helpers import dealt_by_kernel

from smtptop import analyzer, identity, pipeline, smtp, wire
from smtptop.analysis import analyze, analyze_live
from smtptop.analyzer import Analyzer, FlowClosed, FlowEvent, FlowOpened
from smtptop.capture import CaptureFile
from smtptop.identity import DnsLookup, Sighting
from smtptop.render import to_json
from smtptop.smtp import (
    AuthResponse,
    Command,
    Gap,
    MessageEnd,
    Reply,
    Side,
    TlsStarted,
    Violation,
    ViolationKind,
)
from smtptop.source import FileSource, Parallel, Source, StopFlag

SAMPLE = str(sample.DEFAULT_OUTPUT)
pytestmark = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork"
)


def test_two_processes_give_the_same_report_as_one() -> None:
    """The bundled office (SMTP, TLS, AUTH, DHCP, NetBIOS, DNS) through both paths."""
    alone = to_json(analyze([SAMPLE], workers=0))
    paired = to_json(analyze([SAMPLE], workers=1))
    assert paired == alone
    assert alone["stats"]["packets"] > 1000 and alone["hosts"]


def one_engines_report(paths: list[str], workers: int) -> dict[str, Any]:
    """The JSON report, its sessions in a fixed order: engines hand over their hosts'
    sessions in turn, so sessions of different hosts can end up listed in another order."""
    document = to_json(analyze(paths, workers=workers))
    document["sessions"].sort(key=lambda s: json.dumps(s, sort_keys=True))
    return document


def corpus_captures() -> list[str]:
    root = corpus_root()
    return sorted(str(p) for p in root.rglob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_any_number_of_engines_gives_one_engines_report(workers: int, tmp_path: Path) -> None:
    """Per-host figures, verdicts and their reasons, servers, sessions, counts and notes are
    the same with the engine in 1, 2 or 4 processes as in this one: on the office capture
    (who-is-who from DHCP, NetBIOS and DNS included) and a truncated second file."""
    cut = tmp_path / "cut.pcap"
    data = Path(SAMPLE).read_bytes()
    cut.write_bytes(data[: len(data) // 3 + 5])
    paths = [SAMPLE, str(cut)]
    assert one_engines_report(paths, workers) == one_engines_report(paths, 0)


@pytest.mark.skipif(not corpus_captures(), reason=f"no corpus at {corpus_root()}")
def test_any_number_of_engines_gives_one_engines_report_on_the_corpus() -> None:
    """The public captures: IPv6, VLANs, odd link types, broken TCP, every dialect."""
    for path in corpus_captures():
        alone = one_engines_report([path], 0)
        for workers in (2, 4):
            assert one_engines_report([path], workers) == alone, (path, workers)


def test_an_engine_takes_whole_hosts_and_both_directions() -> None:
    """Every connection of a client, whatever its server and ports, goes to one engine, and
    so does each packet of it, whichever way it travels."""
    ports = frozenset({25, 587})

    def key(src: str, sport: int, dst: str, dport: int) -> bytes:
        address = ipaddress.ip_address
        return address(src).packed + address(dst).packed + sport.to_bytes(2) + dport.to_bytes(2)

    for shards in (2, 3, 4):
        for client in (f"192.0.2.{n}" for n in range(1, 40)):
            keys = [key(client, 40000 + n, f"198.51.100.{n}", (25, 587)[n % 2]) for n in range(8)]
            replies = [k[4:8] + k[:4] + k[10:12] + k[8:10] for k in keys]
            owners = {analyzer.shard_of(k, ports, shards) for k in keys + replies}
            assert len(owners) == 1 and owners <= set(range(shards))
    spread = {analyzer.shard_of(key(f"192.0.2.{n}", 4000, "198.51.100.1", 25), ports, 4)
              for n in range(1, 40)}  # fmt: skip
    assert spread == {0, 1, 2, 3}


def test_several_files_and_a_truncated_one(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = Path(SAMPLE).read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    paths = [SAMPLE, str(cut)]
    alone, paired = analyze(paths, workers=0), analyze(paths, workers=1)
    assert to_json(paired) == to_json(alone)
    assert paired.warnings == alone.warnings and "truncated" in paired.warnings[0]


def assert_a_fair_example(event: Any) -> None:
    """Each field holds a value that is neither its default nor equal to another field's, so
    that a field dropped, defaulted or swapped on the way shows."""
    values = [getattr(event, f.name) for f in fields(event)]
    assert len(set(values)) == len(values), event
    for f, value in zip(fields(event), values, strict=True):
        assert f.default is MISSING or value != f.default, (event, f.name)
        if is_dataclass(value):
            assert_a_fair_example(value)


# Events of every class the pipe carries, a reply with each kind of request and with none.
EXAMPLES: dict[type, list[Any]] = {
    FlowOpened: [FlowOpened(1.25, ("192.0.2.1", 40001), ("198.51.100.2", 2525), True)],
    FlowClosed: [FlowClosed(1.5, "reset", 1001, 1002, 1003, 1004)],
    Command: [Command(1.75, "MAIL", b"FROM:<a@b>", b"MAIL FROM:<a@b>", True)],
    AuthResponse: [AuthResponse(2.0, b"dXNlcg==")],
    MessageEnd: [MessageEnd(2.25, 1005, (b"Subject: x", b"From: y"), False)],
    Reply: [
        Reply(0.5, 220, (b"mx ready",), None, True, 1006),
        Reply(2.5, 550, (b"no",), Command(2.4, "RCPT", b"<c>", b"RCPT <c>", True), True, 1007),
        Reply(2.75, 535, (b"bad credentials",), AuthResponse(2.7, b"cGFzcw=="), True, 1008),
        Reply(3.0, 552, (b"too big",), MessageEnd(2.9, 1009, (b"To: z",), False), True, 1010),
    ],
    TlsStarted: [TlsStarted(3.25, True)],
    Gap: [Gap(3.5, Side.SERVER, 1011)],
    Violation: [Violation(3.75, Side.SERVER, ViolationKind.MALFORMED_REPLY, "bad reply line")],
    Sighting: [Sighting(4.0, "192.0.2.9", "aa:bb:cc:dd:ee:ff", "pc.lan", "dhcp")],
    DnsLookup: [DnsLookup(4.25, "192.0.2.10", "example.com", 15, 3)],
}


def test_the_pipe_carries_every_event_the_analyzer_emits() -> None:
    emitted = {*get_args(smtp.Event), FlowOpened, FlowClosed, *get_args(identity.Event)}
    assert set(get_args(FlowEvent)) == emitted
    assert set(wire.LAYOUTS) == emitted
    requests = {type(reply.request) for reply in EXAMPLES[Reply] if reply.request is not None}
    assert requests == set(get_args(smtp.Request))
    tags = [tag for tag, _ in wire.LAYOUTS.values()]
    assert sorted(tags) == list(range(len(emitted)))


@pytest.mark.parametrize("cls", list(wire.LAYOUTS), ids=lambda cls: cls.__name__)
def test_a_row_holds_every_field_in_order(cls: type) -> None:
    """The fold unpacks values by position: a field added to an event, or moved, has to be
    added or moved in its layout too.  Every event's time comes first."""
    names = wire.LAYOUTS[cls][1]
    assert names == tuple(f.name for f in fields(cls))
    assert names[0] == "ts"


def as_row_values(event: Any) -> tuple[Any, ...]:
    """What a row should hold for an event, worked out apart from wire.encode."""
    values = []
    for f in fields(event):
        value = getattr(event, f.name)
        if is_dataclass(value):
            value = (wire.LAYOUTS[type(value)][0], as_row_values(value))
        elif isinstance(value, IntEnum):
            value = value.value
        values.append(value)
    return tuple(values)


@pytest.mark.parametrize("cls", list(wire.LAYOUTS), ids=lambda cls: cls.__name__)
def test_every_event_kind_crosses_the_pipe_as_plain_values(cls: type) -> None:
    events = list(enumerate(EXAMPLES[cls], start=11))
    for _, event in events:
        assert_a_fair_example(event)
    rows = wire.encode(events)
    assert marshal.loads(marshal.dumps(rows)) == rows
    tag = wire.LAYOUTS[cls][0]
    assert rows == [(number, tag, as_row_values(event)) for number, event in events]
    for (_, _, values), (_, event) in zip(rows, events, strict=True):
        assert_plain(values, event)


def assert_plain(values: tuple[Any, ...], event: Any) -> None:
    """Equal is not enough: Side.SERVER == 1.  A row holds ints where the event holds an
    IntEnum, and the other values as they are."""
    for value, f in zip(values, fields(event), strict=True):
        sent = getattr(event, f.name)
        if is_dataclass(sent):
            assert_plain(value[1], sent)
        else:
            assert type(value) is (int if isinstance(sent, IntEnum) else type(sent)), f.name


def test_a_failing_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Analyzer, frames: object, max_events: int = 0) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Analyzer, "feed", broken)  # the forked child inherits the patch
    with pytest.raises(pipeline.EngineFailed, match="RuntimeError: disk on fire"):
        analyze([SAMPLE], workers=1)


def test_a_killed_engine_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(self: Analyzer, frames: object, max_events: int = 0) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    monkeypatch.setattr(Analyzer, "feed", killed)
    with pytest.raises(pipeline.EngineFailed, match="ended unexpectedly"):
        analyze([SAMPLE], workers=1)


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    """A big enough capture takes the two-process path on its own; a child that dies shows
    as one line and exit status 1."""
    path = tmp_path / "big.pcap"
    conv = synth.Conversation("192.168.1.2", 40000, "198.51.100.7", 25, start=1.8e9)
    conv.handshake()
    conv.server(b"220 hi\r\n")
    for _ in range(3000):
        conv.client(b"NOOP " + b"x" * 1400 + b"\r\n")
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    assert pipeline.default_workers([CaptureFile(str(path))]) == len(os.sched_getaffinity(0)) - 1
    script = (
        "import os, signal, sys; from smtptop.analyzer import Analyzer;"
        "Analyzer.feed = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL);"
        "from smtptop import pipeline; pipeline.default_workers = lambda c: 1;"
        "from smtptop.cli import main; sys.exit(main(['report', sys.argv[1]]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "smtptop: the analysis process ended unexpectedly (exit code -9)"
    ]


def test_engine_config_reaches_the_child(tmp_path: Path) -> None:
    """Ports are the engine's configuration: SMTP on 2626 is seen only when asked for."""
    conv = synth.Conversation("192.168.1.2", 40000, "198.51.100.7", 2626, start=1.8e9)
    conv.handshake()
    conv.server(b"554 5.7.1 blocked using zen.spamhaus.org\r\n")
    conv.close()
    path = tmp_path / "odd-port.pcap"
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    assert analyze([str(path)], workers=1).model.sessions_total == 0
    found = analyze([str(path)], ports=[2626], workers=1).model
    assert found.sessions_total == 1 and found.hosts["192.168.1.2"].rejected_sessions == 1


# -- live capture: the kernel deals packets to engine processes -----------------------------


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """A report's hosts, sessions (in a fixed order) and engine counters."""
    sessions = sorted(document["sessions"], key=lambda s: json.dumps(s, sort_keys=True))
    counters = ("packets", "bytes", "smtp_packets", "skipped", "errors", "sessions")
    return {
        "hosts": document["hosts"],
        "sessions": sessions,
        "stats": {name: document["stats"][name] for name in counters},
    }


@pytest.mark.parametrize("engines", [1, 2, 3])
def test_engine_processes_dealt_whole_hosts_give_one_engines_report(
    engines: int, tmp_path: Path
) -> None:
    """The office capture dealt out as the kernel would to 1, 2 or 3 sockets, each read by
    an engine process of its own: their events and counters together are one engine's."""
    parts = dealt_by_kernel(SAMPLE, engines, tmp_path)
    assert all(CaptureFile(p).size > 24 for p in parts), "every engine is dealt packets"
    group = Parallel([FileSource([p]) for p in parts], label="test", waiting="")
    live = analyze_live(group, duration=60.0)
    assert live.kernel_drops == 0 and live.warnings == []
    assert comparable(to_json(live)) == comparable(to_json(analyze([SAMPLE], workers=0)))


class Endless(Source):
    """A quiet live source: nothing arrives until it is told to stop."""

    def frames(self, stop: StopFlag) -> Iterator[synth.Frame | None]:
        while not stop.wait(0.05):
            yield None


def test_engine_processes_stop_when_asked_and_send_the_rest() -> None:
    stop = threading.Event()
    started = time.monotonic()
    batches = []
    for batch in pipeline.live_batches([Endless(), Endless()], analyzer.EngineConfig(), stop):
        stop.set()
        batches.append(batch)
        assert time.monotonic() - started < pipeline.STOP_GRACE
    assert batches[-1] is not None and batches[-1].finished
    assert [b for b in batches[:-1] if b is not None and b.finished] == []


class Failing(Source):
    def frames(self, stop: StopFlag) -> Iterator[synth.Frame | None]:
        yield None
        raise RuntimeError("disk on fire")


def test_a_failing_engine_process_is_one_line() -> None:
    stop = threading.Event()
    with pytest.raises(pipeline.EngineFailed, match="RuntimeError: disk on fire"):
        for _ in pipeline.live_batches([Endless(), Failing()], analyzer.EngineConfig(), stop):
            pass


def test_control_records_split_across_reads_are_put_together() -> None:
    from smtptop.pipeline import _CONTROL, _Controlled

    read, write = os.pipe()
    try:
        control = _Controlled(read)
        address = ipaddress.ip_address("10.0.0.1").packed
        request = _CONTROL.pack(b"P", 7, 0.0, len(address), address)
        os.write(write, request[:11])
        assert not control.wait(0.05) and control.requests == []
        os.write(write, request[11:] + _CONTROL.pack(b"T", 0, 123.5, 0, b""))
        assert not control.wait(0.05)  # a request and the end time do not stop it
        assert (control.requests, control.end) == ([(7, address)], 123.5)
        os.write(write, _CONTROL.pack(b"S", 0, 0.0, 0, b""))
        assert control.wait(0.05) and not control.gone
    finally:
        os.close(write)
    assert control.serve_until_gone(lambda: None) is None and control.gone  # end of file
    os.close(read)


def _engines(count: int) -> tuple[list[int], list[Any], list[Any]]:
    """Stand-ins for engine processes: the control pipes' read ends, the ends the engines
    answer on, and what ``RingRequests.attach`` takes."""
    import multiprocessing

    controls, answers, attached = [], [], []
    for _ in range(count):
        control_read, control_write = os.pipe()
        receiver, sender = multiprocessing.Pipe(duplex=False)
        controls.append(control_read)
        answers.append(sender)
        attached.append((control_write, receiver))
    return controls, answers, attached


def test_a_late_answer_to_an_earlier_request_is_passed_over() -> None:
    from smtptop import pipeline

    controls, answers, attached = _engines(1)
    requests = pipeline.RingRequests()
    requests.attach(attached)
    packed = ipaddress.ip_address("10.0.0.1").packed
    answers[0].send_bytes(marshal.dumps((99, 1 << 20, 0, [(packed, [(0.5, 1, b"old")], 0, 0)])))
    answers[0].send_bytes(marshal.dumps((1, 1 << 20, 3, [(packed, [(1.0, 1, b"x")], 2, 50)])))
    absent, held = requests.ask("10.0.0.1")
    host = held["10.0.0.1"]
    assert (host.packets, host.not_kept, host.not_kept_bytes) == ([(1.0, 1, b"x")], 2, 50)
    assert (host.budget, absent.budget, absent.unrecorded) == (1 << 20, 1 << 20, 3)
    kind, number, _, size, address = pipeline._CONTROL.unpack(os.read(controls[0], 100))
    assert (kind, number, address[:size]) == (b"P", 1, packed)
    requests.detach()
    with pytest.raises(pipeline.EngineFailed, match="have ended"):
        requests.ask(None)
    _closed(controls, answers, attached)


def test_an_engine_that_does_not_answer_fails_the_request_and_the_others_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smtptop import pipeline

    monkeypatch.setattr(pipeline, "ASK_SECONDS", 0.2)
    controls, answers, attached = _engines(2)
    requests = pipeline.RingRequests()
    requests.attach(attached)
    answers[1].send_bytes(marshal.dumps((1, 1 << 20, 0, [])))  # the first says nothing
    with pytest.raises(pipeline.EngineFailed, match="did not answer in time"):
        requests.ask(None)
    assert not attached[1][1].poll()  # the second's answer was taken: it is not left blocked
    _closed(controls, answers, attached)


def _closed(controls: list[int], answers: list[Any], attached: list[Any]) -> None:
    for fd, receiver in attached:
        os.close(fd)
        receiver.close()
    for fd in controls:
        os.close(fd)
    for sender in answers:
        sender.close()
