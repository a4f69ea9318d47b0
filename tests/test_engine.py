"""The whole engine on generated captures: link types, formats, TCP mishaps, definitions."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sample
import synth

from smtptop.analysis import Analysis, analyze
from smtptop.analyzer import Analyzer, EngineConfig
from smtptop.model import Model, apply
from smtptop.render import to_json
from smtptop.wire import encode

ROOT = Path(__file__).resolve().parent.parent

DIALOGUE = [
    ("S", b"220 mx1.example.net ESMTP Postfix\r\n"),
    ("C", b"EHLO pc7.office.lan\r\n"),
    ("S", b"250-mx1.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
    ("C", b"MAIL FROM:<alice@office.example>\r\nRCPT TO:<bob@example.org>\r\n"),
    ("C", b"RCPT TO:<carol@example.org>\r\n"),
    ("S", b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <carol@example.org>: unknown\r\n"),
    ("C", b"DATA\r\n"),
    ("S", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    ("C", b"Subject: report\r\n\r\n" + b"x" * 70 + b"\r\n" + b"y" * 4000 + b"\r\n.\r\n"),
    ("S", b"250 2.0.0 Ok: queued as 1A2B\r\n"),
    ("C", b"QUIT\r\n"),
    ("S", b"221 2.0.0 Bye\r\n"),
]


def conversation(client: str = "192.168.1.7", server: str = "198.51.100.9", **kw):
    conv = synth.Conversation(client, 50123, server, 25, start=1_800_000_000.0, **kw)
    conv.smtp(DIALOGUE)
    conv.close()
    return conv


def run(frames, linktype: int = synth.LINKTYPE_ETHERNET, *, tmp_path: Path, name="c.pcap"):
    path = tmp_path / name
    synth.write_pcap(path, frames, linktype)
    return to_json(analyze([str(path)]))


def assert_dialogue_session(report: dict, client: str = "192.168.1.7") -> dict:
    (session,) = report["sessions"]
    assert session["client"].rsplit(":", 1)[0].strip("[]") == client
    assert session["helo"] == "pc7.office.lan"
    assert session["mail_from"] == ["alice@office.example"]
    assert session["rcpt_to"] == ["bob@example.org", "carol@example.org"]
    assert [r["code"] for r in session["replies"]] == [220, 250, 250, 250, 550, 354, 250, 221]
    assert session["outcome"] == "rejected"
    assert session["accepted_messages"] == 1
    assert report["stats"]["errors"] == 0
    return session


LINKS = [
    ("ethernet", synth.LINKTYPE_ETHERNET, {}),
    ("802.1Q", synth.LINKTYPE_ETHERNET, {"vlans": (125,)}),
    ("QinQ", synth.LINKTYPE_ETHERNET, {"vlans": (100, 200)}),
    ("cooked v1", synth.LINKTYPE_LINUX_SLL, {}),
    ("cooked v1 + VLAN", synth.LINKTYPE_LINUX_SLL, {"vlans": (7,)}),
    ("cooked v2", synth.LINKTYPE_LINUX_SLL2, {}),
    ("raw IP", synth.LINKTYPE_RAW, {}),
    ("BSD null", synth.LINKTYPE_NULL, {}),
    ("OpenBSD loop", synth.LINKTYPE_LOOP, {}),
]


@pytest.mark.parametrize(("name", "linktype", "extra"), LINKS, ids=[n for n, _, _ in LINKS])
@pytest.mark.parametrize("ipv6", [False, True], ids=["IPv4", "IPv6"])
def test_every_link_type_and_ip_version(name, linktype, extra, ipv6, tmp_path) -> None:
    client, server = ("fd00::7", "2001:db8::9") if ipv6 else ("192.168.1.7", "198.51.100.9")
    conv = conversation(client, server, linktype=linktype, hop_by_hop=ipv6, pad=True, **extra)
    report = run(conv.frames, linktype, tmp_path=tmp_path)
    session = assert_dialogue_session(report, client)
    if ipv6:
        assert session["client"] == "[fd00::7]:50123"
        assert session["server"] == "[2001:db8::9]:25"
    assert report["hosts"][0]["lan"] is True


@pytest.mark.parametrize(
    "writer",
    [
        lambda p, f: synth.write_pcap(p, f, 1, nanosecond=True),
        lambda p, f: synth.write_pcap(p, f, 1, big_endian=True),
        lambda p, f: synth.write_pcapng(p, f, 1),
        lambda p, f: synth.write_pcapng(p, f, 1, tsresol=6, big_endian=True),
    ],
    ids=["pcap-ns", "pcap-big-endian", "pcapng", "pcapng-us-big-endian"],
)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_file_formats_and_timestamps(writer, suffix: str, tmp_path: Path) -> None:
    conv = conversation()
    path = tmp_path / f"c.cap{suffix}"
    writer(path, conv.frames)
    report = to_json(analyze([str(path)]))
    session = assert_dialogue_session(report)
    assert session["start"] == pytest.approx(conv.frames[0].ts, abs=1e-6)
    bye = next(f.ts for f in conv.frames if b"221 2.0.0" in f.data)
    assert bye <= session["end"] <= conv.frames[-1].ts
    assert report["stats"]["packets"] == len(conv.frames)


def test_reordered_duplicated_and_overlapping_segments(tmp_path: Path) -> None:
    conv = conversation(mss=500)
    frames = synth.duplicate(conv.frames, conv.segments[6])
    frames = synth.duplicate(frames, conv.segments[2])
    for first in (5, 8, 11):
        frames = synth.swap(frames, conv.segments[first].frame, conv.segments[first + 1].frame)
    session = assert_dialogue_session(run(frames, tmp_path=tmp_path))
    assert not session["partial"]


def test_lost_segment_in_body_marks_partial_but_keeps_counting(tmp_path: Path) -> None:
    conv = conversation(mss=500)
    body_segments = [s for s in conv.segments if s.by == "C" and b"y" * 100 in s.payload]
    frames = synth.drop(conv.frames, body_segments[2])
    session = assert_dialogue_session(run(frames, tmp_path=tmp_path))
    assert session["partial"]
    assert any("not captured" in t["text"] for t in session["transcript"])


def test_capture_begun_mid_session(tmp_path: Path) -> None:
    conv = conversation()
    start = next(i for i, f in enumerate(conv.frames) if b"RCPT TO:<carol" in f.data)
    report = run(conv.frames[start:], tmp_path=tmp_path)
    (session,) = report["sessions"]
    assert session["partial"]
    assert session["helo"] == ""
    assert session["rcpt_to"] == ["carol@example.org"]
    assert session["outcome"] == "rejected"
    assert session["accepted_messages"] == 1


def test_port_reuse_makes_a_new_session(tmp_path: Path) -> None:
    first = conversation()
    second = synth.Conversation(
        "192.168.1.7", 50123, "198.51.100.9", 25, start=first.now + 5, seed=9
    )
    second.smtp([("S", b"554 5.7.1 blocked using zen.spamhaus.org\r\n"), ("C", b"QUIT\r\n")])
    second.close()
    report = run(first.frames + second.frames, tmp_path=tmp_path)
    outcomes = [s["outcome"] for s in report["sessions"]]
    assert outcomes == ["rejected", "rejected"]
    assert [r["code"] for r in report["sessions"][1]["replies"]] == [554]
    host = report["hosts"][0]
    assert (host["sessions"], host["destinations"], host["rejected_sessions"]) == (2, 1, 2)


def test_fragments_other_ports_and_garbage_are_counted(tmp_path: Path) -> None:
    conv = conversation()
    frag = bytearray(conv.frames[3].data)
    frag[14 + 6] |= 0x20  # IPv4 "more fragments"
    frames = [
        *conv.frames,
        synth.Frame(conv.now, bytes(frag)),
        synth.Frame(conv.now, b"\x00" * 10),
        synth.Frame(conv.now, conv.frames[3].data[:30]),
    ]
    other = synth.Conversation("192.168.1.7", 40000, "198.51.100.9", 443, start=conv.now)
    other.handshake()
    other.client(b"\x16\x03\x01hello")
    report = run(frames + other.frames, tmp_path=tmp_path)
    skipped = report["stats"]["skipped"]
    assert skipped["IP fragment"] == 1
    assert skipped["truncated packet"] == 2
    assert skipped["not an SMTP port"] == len(other.frames)
    assert len(report["sessions"]) == 1


def test_custom_ports_and_lan_networks(tmp_path: Path) -> None:
    conv = synth.Conversation("203.0.113.5", 40001, "198.51.100.9", 2526, start=1.0)
    conv.smtp(DIALOGUE)
    path = tmp_path / "p.pcap"
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    assert to_json(analyze([str(path)]))["sessions"] == []
    report = to_json(analyze([str(path)], ports=[2526], lan=["203.0.113.0/24"]))
    assert report["hosts"][0]["lan"] is True
    assert report["sessions"][0]["helo"] == "pc7.office.lan"


def test_bundled_sample_matches_its_generation_plan() -> None:
    """The report of the demo capture agrees with the plan the generator followed."""
    report = to_json(analyze([str(ROOT / "smtptop" / "data" / "office.pcap")]))
    assert report["stats"]["errors"] == 0
    hosts = {h["ip"]: h for h in report["hosts"]}
    truth = sample.scenario().hosts()
    assert set(hosts) == set(truth)
    for ip, expected in truth.items():
        host = hosts[ip]
        assert host["sessions"] == expected.connections, ip
        assert host["destinations"] == len(expected.attempted), ip
        assert host["rejected_sessions"] == expected.rejected, ip
        assert host["tempfailed_sessions"] == expected.deferred, ip
        assert host["accepted_messages"] == expected.messages, ip
        assert host["recipients"] == expected.recipients_accepted + expected.recipients_refused
        assert set(host["helos"]) == set(expected.helos), ip
    bot = max(report["hosts"], key=lambda h: h["destinations"])
    assert report["hosts"][0] is bot


def test_one_engine_for_batches_and_whole_files(tmp_path: Path) -> None:
    """Applying events in small batches (as the TUI does) gives the same model."""
    path = ROOT / "smtptop" / "data" / "office.pcap"
    whole = to_json(analyze([str(path)]))
    from smtptop.capture import CaptureFile

    analyzer, model = Analyzer(), Model()
    analysis = Analysis(model, analyzer.stats)
    for record in CaptureFile(str(path)):
        analyzer.packet(*record)
        apply(model, encode(analyzer.take()))
    analyzer.finish()
    apply(model, encode(analyzer.take()))
    assert to_json(analysis) == whole


PURE = [
    "smtptop.decode",
    "smtptop.identity",
    "smtptop.tcp",
    "smtptop.smtp",
    "smtptop.model",
    "smtptop.model.compact",
    "smtptop.model.records",
    "smtptop.model.store",
    "smtptop.model.fold",
    "smtptop.analyzer",
    "smtptop.ring",
    "smtptop.wire",
    "smtptop.zeek",
]
FORBIDDEN = [
    "socket",
    "threading",
    "asyncio",
    "selectors",
    "subprocess",
    "textual",
    "rich",
    "scapy",
]


def test_engine_core_is_pure() -> None:
    """decode, identity, tcp, smtp, model, the analyzer and the Zeek log parser import no
    I/O, threads, UI or scapy (checked in a clean interpreter, without site-packages, so
    nothing else has loaded them first)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        + "; ".join(f"import {m}" for m in PURE)
        + f"; print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert out.stdout.strip() == "[]"


def module_imports() -> dict[str, set[str]]:
    """smtptop's modules and the smtptop modules each imports when it is loaded: at module
    level, ``if TYPE_CHECKING:`` blocks included (a cycle for the type checker is a cycle
    of layers too); not inside functions, where a late import is a deliberate choice."""
    package = ROOT / "smtptop"
    paths = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        found = set()
        pending = list(ast.parse(path.read_text(encoding="utf-8")).body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.If | ast.Try):
                pending += [*node.body, *node.orelse, *getattr(node, "handlers", ())]
            elif isinstance(node, ast.ExceptHandler):
                pending += node.body
        graph[name] = {module for module in found if module in paths and module != name}
    return graph


def test_no_import_cycles() -> None:
    """Every module depends on the ones below it only: the model's store never reaches its
    fold, the model never the detector or the report's records."""
    graph = module_imports()
    assert "smtptop.model.store" in graph["smtptop.model.fold"]  # the walk sees imports
    cycles = []

    def visit(name: str, path: list[str], done: set[str]) -> None:
        for imported in sorted(graph[name]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported, [*path, imported], done)
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert cycles == []


def _run_engine(frames, config: EngineConfig) -> Model:
    analyzer, model = Analyzer(config), Model()
    for frame in frames:
        analyzer.packet(frame.ts, synth.LINKTYPE_ETHERNET, frame.data)
    analyzer.finish()
    apply(model, encode(analyzer.take()))
    return model


def test_idle_connections_are_closed_and_counted() -> None:
    quiet = synth.Conversation("192.168.1.7", 50000, "198.51.100.9", 25, start=0.0)
    quiet.smtp([("S", b"220 mx\r\n"), ("C", b"HELO a.example\r\n")])
    later = synth.Conversation("192.168.1.8", 50001, "198.51.100.9", 25, start=1000.0)
    later.smtp([("S", b"220 mx\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])
    later.close()
    model = _run_engine(quiet.frames + later.frames, EngineConfig(idle_timeout=300.0))
    reasons = {s.client_ip: s.close_reason for s in model.sessions()}
    assert reasons == {"192.168.1.7": "idle timeout", "192.168.1.8": "closed"}


def test_open_connections_are_bounded() -> None:
    frames = []
    for i in range(10):
        conv = synth.Conversation(f"192.168.1.{i + 1}", 50000, "198.51.100.9", 25, start=i)
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"HELO a.example\r\n")])
        frames += conv.frames
    frames.sort(key=lambda f: f.ts)
    model = _run_engine(frames, EngineConfig(max_connections=4))
    reasons = sorted(s.close_reason for s in model.sessions())
    assert reasons.count("evicted: too many open connections") == 6
    assert reasons.count("capture ended") == 4
    assert all(s.helo == "a.example" for s in model.sessions())


def test_a_full_table_forgets_the_least_recently_active() -> None:
    """Sixteen open connections fill the table; the first keeps talking.  The seventeenth
    makes room by forgetting an eighth of the table: the two quiet for longest, not the
    oldest one that is still busy."""
    frames = []
    for i in range(17):
        conv = synth.Conversation(f"192.168.1.{i + 1}", 50000, "198.51.100.9", 25, start=i)
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"HELO a.example\r\n")])
        if i == 0:
            conv.client(b"NOOP\r\n", delay=15.0)
        frames += conv.frames
    frames.sort(key=lambda f: f.ts)
    model = _run_engine(frames, EngineConfig(max_connections=16))
    evicted = sorted(s.client_ip for s in model.sessions() if s.close_reason.startswith("evicted"))
    assert evicted == ["192.168.1.2", "192.168.1.3"]


def test_a_closed_connection_lingers_small_and_absorbs_its_stray_packets() -> None:
    """Once closed, a connection keeps only its key and last packet time (no reassembly, no
    parser); its late packets are absorbed, not taken for a new session, until its linger
    is over."""
    conv = conversation()
    analyzer, model = Analyzer(), Model()
    for frame in conv.frames:
        analyzer.packet(frame.ts, synth.LINKTYPE_ETHERNET, frame.data)
    assert not analyzer.flows and len(analyzer._lingering) == 1
    for frame in conv.frames[3:]:  # the whole dialogue again, retransmitted after the close
        analyzer.packet(conv.now + 5, synth.LINKTYPE_ETHERNET, frame.data)
    assert not analyzer.flows and list(analyzer._lingering.values()) == [conv.now + 5]
    other = conversation(client="192.168.1.8")
    analyzer.packet(conv.now + 120, synth.LINKTYPE_ETHERNET, other.frames[0].data)
    assert not analyzer._lingering  # the linger is over: forgotten
    analyzer.finish()
    apply(model, encode(analyzer.take()))
    assert sorted(s.client_ip for s in model.sessions()) == ["192.168.1.7", "192.168.1.8"]
    assert analyzer.stats.errors == 0
