"""The report's two-process pipeline: the engine in a forked child, the model here.

It must give exactly the report one process gives, carry every kind of event across the
pipe unchanged, and turn a failing or dying engine process into one line, not a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from smtptop import pipeline, sample, synth
from smtptop.analyzer import Analyzer, FlowClosed, FlowOpened
from smtptop.capture import CaptureFile
from smtptop.identity import DnsLookup, Sighting
from smtptop.report import analyze, to_json
from smtptop.smtp import AuthResponse, Command, Gap, MessageEnd, Reply, Side, TlsStarted, Violation

SAMPLE = str(Path(sample.__file__).parent / "data" / "office.pcap")
pytestmark = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork"
)


def test_two_processes_give_the_same_report_as_one() -> None:
    """The bundled office (SMTP, TLS, AUTH, DHCP, NetBIOS, DNS) through both paths."""
    alone = to_json(analyze([SAMPLE], parallel=False))
    paired = to_json(analyze([SAMPLE], parallel=True))
    assert paired == alone
    assert alone["stats"]["packets"] > 1000 and alone["hosts"]


def test_several_files_and_a_truncated_one(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    data = Path(SAMPLE).read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    paths = [SAMPLE, str(cut)]
    alone, paired = analyze(paths, parallel=False), analyze(paths, parallel=True)
    assert to_json(paired) == to_json(alone)
    assert paired.warnings == alone.warnings and "truncated" in paired.warnings[0]


def test_every_event_kind_crosses_the_pipe_unchanged() -> None:
    command = Command(1.5, "MAIL", b"FROM:<a@b>", b"MAIL FROM:<a@b>", False)
    events = [
        (1, FlowOpened(1.0, ("192.0.2.1", 40000), ("198.51.100.2", 25), False)),
        (1, command),
        (1, Reply(1.6, 250, (b"ok", b"more"), command, False)),
        (1, Reply(1.1, 220, (b"hi",), None, True)),
        (1, AuthResponse(1.7, b"dXNlcg==")),
        (1, MessageEnd(1.8, 1234, (b"Subject: x",), True)),
        (1, Reply(1.9, 250, (b"queued",), MessageEnd(1.8, 1234, (), False), False)),
        (1, TlsStarted(2.0, True)),
        (1, Gap(2.1, Side.SERVER, 99)),
        (1, Violation(2.2, Side.CLIENT, "line longer than 4096 bytes")),
        (1, FlowClosed(2.3, "reset", 10, 20, 5, 1)),
        (0, Sighting(2.4, "192.0.2.1", "aa:bb:cc:dd:ee:ff", "pc.lan", "dhcp")),
        (0, DnsLookup(2.5, "192.0.2.1", "example.com", 15, 3)),
    ]
    back = pipeline._decode(
        pipeline.marshal.loads(pipeline.marshal.dumps(pipeline._encode(events)))
    )
    assert back == events
    assert all(type(a) is type(b) for (_, a), (_, b) in zip(back, events, strict=True))
    assert type(back[8][1].side) is Side


def test_a_failing_engine_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Analyzer, frames: object, max_events: int = 0) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Analyzer, "feed", broken)  # the forked child inherits the patch
    with pytest.raises(pipeline.EngineFailed, match="RuntimeError: disk on fire"):
        analyze([SAMPLE], parallel=True)


def test_a_killed_engine_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(self: Analyzer, frames: object, max_events: int = 0) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    monkeypatch.setattr(Analyzer, "feed", killed)
    with pytest.raises(pipeline.EngineFailed, match="ended unexpectedly"):
        analyze([SAMPLE], parallel=True)


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
    assert pipeline.worth_a_second_process([CaptureFile(str(path))]) == (
        len(os.sched_getaffinity(0)) > 1
    )
    script = (
        "import os, signal, sys; from smtptop.analyzer import Analyzer;"
        "Analyzer.feed = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL);"
        "from smtptop import pipeline; pipeline.worth_a_second_process = lambda c: True;"
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
    assert analyze([str(path)], parallel=True).model.sessions_total == 0
    found = analyze([str(path)], ports=[2626], parallel=True).model
    assert found.sessions_total == 1 and found.hosts["192.168.1.2"].rejected_sessions == 1
