"""Mirrored traffic: frames a switch, a router or a cloud sends inside TZSP, ERSPAN, GRE or
VXLAN are analysed as if captured where they were mirrored.

The office sample is wrapped here, every frame, in each encapsulation as its standard lays it
out (tshark, where installed, must find the same SMTP packets in the wrapped file as in the
sample: the wrapping is what the real senders make), and the report on the wrapped capture
must be the report on the sample.  Hostile mirror headers are counted skips."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
import synth
from test_stream import smtptop as from_stdin

from smtptop import decode as dec
from smtptop.analysis import analyze
from smtptop.analyzer import Analyzer
from smtptop.capture import CaptureFile
from smtptop.cli import main, sample_path
from smtptop.render import to_json
from smtptop.tui.app import MonitorApp
from smtptop.tui.tables import KeyedTable

SAMPLE = sample_path()
TSHARK = shutil.which("tshark")
SMTP_PORTS = "25,465,587,2525"
ETHERNET = 14


def outer_ipv4(proto: int, payload: bytes) -> bytes:
    """A mirror's packet from 10.99.0.1 to the collector 10.99.0.2, in Ethernet."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                         bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2]))  # fmt: skip
    checksum = synth.internet_checksum(header)
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    macs = bytes.fromhex("020000000002020000000001")
    return macs + b"\x08\x00" + header + payload


def outer_ipv6(proto: int, payload: bytes) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64,
                         bytes.fromhex("fd00" + "00" * 13 + "01"),
                         bytes.fromhex("fd00" + "00" * 13 + "02"))  # fmt: skip
    return bytes.fromhex("020000000002020000000001") + b"\x86\xdd" + header + payload


def udp(dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", 49152, dport, 8 + len(payload), 0) + payload


def tzsp(frame: bytes, port: int = dec.TZSP_PORT) -> bytes:
    # version 1, type 0 (received), Ethernet; a padding tag, then the end tag
    return outer_ipv4(dec.PROTO_UDP, udp(port, b"\x01\x00\x00\x01\x00\x01" + frame))


def erspan_ii(frame: bytes) -> bytes:
    gre = struct.pack("!HHI", 0x1000, dec.GRE_ERSPAN_II, 7)  # with a sequence number
    header = struct.pack("!HHI", 0x1000 | 5, 0x0800 | 42, 0)  # version 1, VLAN 5, session 42
    return outer_ipv4(dec.PROTO_GRE, gre + header + frame)


def erspan_iii(frame: bytes) -> bytes:
    gre = struct.pack("!HH", 0x1000, dec.GRE_ERSPAN_III) + struct.pack("!I", 9)
    header = struct.pack("!HHIHBB", 0x2000 | 5, 42, 123456, 0, 0, 1)  # version 2, O: a subheader
    return outer_ipv4(dec.PROTO_GRE, gre + header + bytes(8) + frame)


def gretap(frame: bytes) -> bytes:
    return outer_ipv4(dec.PROTO_GRE, struct.pack("!HHI", 0x2000, dec.GRE_TEB, 77) + frame)


def vxlan(frame: bytes, port: int = 4789) -> bytes:
    return outer_ipv6(dec.PROTO_UDP, udp(port, b"\x08\x00\x00\x00\x00\x01\x2c\x00" + frame))


def vxlan_linux(frame: bytes) -> bytes:
    """On Linux's default port, where a vxlan device sends unless told otherwise."""
    return vxlan(frame, 8472)


def gre_ip(frame: bytes) -> bytes | None:
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype not in (dec.ETH_IPV4, dec.ETH_IPV6):
        return None  # GRE carrying IP carries no ARP
    return outer_ipv4(dec.PROTO_GRE, struct.pack("!HH", 0, ethertype) + frame[ETHERNET:])


WRAPS: dict[str, Callable[[bytes], bytes | None]] = {
    "tzsp": tzsp,
    "erspan-ii": erspan_ii,
    "erspan-iii": erspan_iii,
    "gretap": gretap,
    "vxlan": vxlan,
    "vxlan-8472": vxlan_linux,
    "gre-ip": gre_ip,
}


def wrapped(path: Path, wrap: Callable[[bytes], bytes | None]) -> Path:
    frames = []
    for ts, _, frame in CaptureFile(SAMPLE):
        assert isinstance(frame, bytes)
        outer = wrap(frame)
        if outer is not None:
            frames.append(synth.Frame(ts, outer))
    synth.write_pcap(path, frames, synth.LINKTYPE_ETHERNET)
    return path


# Mirrors sent to a port of their own (a MikroTik's streaming server port, a vxlan device's
# dstport): read once the port is named with --mirror-port.
NAMED_PORTS: dict[str, tuple[str, Callable[[bytes], bytes | None]]] = {
    "tzsp-40000": ("tzsp:40000", lambda frame: tzsp(frame, 40000)),
    "vxlan-9000": ("vxlan:9000", lambda frame: vxlan(frame, 9000)),
}

# Wireshark dissects VXLAN on IANA's port only: Linux's is named for it, as are the others.
DECODE_AS = {
    "vxlan-8472": ["-d", "udp.port==8472,vxlan"],
    "tzsp-40000": ["-d", "udp.port==40000,tzsp"],
    "vxlan-9000": ["-d", "udp.port==9000,vxlan"],
}


def smtp_frames(path: Path | str, kind: str = "") -> int:
    assert TSHARK is not None
    command = [TSHARK, "-r", str(path), *DECODE_AS.get(kind, []), "-Y",
               f"tcp.port in {{{SMTP_PORTS}}}"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return len(done.stdout.splitlines())


@pytest.mark.parametrize("kind", WRAPS)
def test_a_mirrored_capture_reports_as_the_capture_itself(kind: str, tmp_path: Path) -> None:
    mirrored = to_json(analyze([str(wrapped(tmp_path / f"{kind}.pcap", WRAPS[kind]))]))
    direct = to_json(analyze([SAMPLE]))
    if kind == "gre-ip":  # no Ethernet inside: no MAC, no ARP (the capture's last frame)
        for document in (mirrored, direct):
            for host in document["hosts"]:
                for field in ("mac", "vendor", "names", "last_seen", "last_direct_mx"):
                    host.pop(field, None)
            for session in document["sessions"]:
                if session["close_reason"] == "capture ended":  # at the last frame carried
                    del session["end"], session["transcript"][-1]["ts"]
    assert mirrored["sessions"] == direct["sessions"]
    assert mirrored["hosts"] == direct["hosts"]
    assert "mirror" not in " ".join(mirrored["stats"]["skipped"])


@pytest.mark.skipif(TSHARK is None, reason="needs tshark (Debian package tshark)")
@pytest.mark.parametrize("kind", [*(k for k in WRAPS if k != "gre-ip"), *NAMED_PORTS])
def test_tshark_finds_the_same_smtp_packets_inside(kind: str, tmp_path: Path) -> None:
    """The wrapping is each standard's: tshark's own dissectors take the frames out."""
    wrap = WRAPS[kind] if kind in WRAPS else NAMED_PORTS[kind][1]
    inside = smtp_frames(wrapped(tmp_path / f"{kind}.pcap", wrap), kind)
    assert inside == smtp_frames(SAMPLE)


def report(*args: str, status: int = 0) -> dict:
    done = helpers.smtptop("report", "--json", *args)
    assert done.returncode == status, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("kind", NAMED_PORTS)
def test_a_mirror_on_a_port_of_its_own_is_read_once_the_port_is_named(
    kind: str, tmp_path: Path
) -> None:
    """Unnamed, the port's packets are UDP like any other, counted, and a warning says which
    option reads them; named with --mirror-port, the report is the sample's, read in this
    process or by engine processes."""
    named, wrap = NAMED_PORTS[kind]
    path = str(wrapped(tmp_path / f"{kind}.pcap", wrap))
    direct = report(SAMPLE)
    for workers in ("0", "2"):
        unnamed = report("--workers", workers, path, status=1)
        assert unnamed["sessions"] == [] and unnamed["stats"]["skipped"] == {
            dec.SKIP_NON_TCP: direct["stats"]["packets"]
        }
        port, wrapping = named.split(":")[1], named.split(":")[0].upper()
        assert unnamed["warnings"] == [
            f"{direct['stats']['smtp_packets']:,} packets to UDP port {port} carry SMTP inside "
            f"{wrapping}: if a mirror sends there, name the port with --mirror-port {named}"
        ]
    for workers in ("0", "2"):
        mirrored = report("--workers", workers, "--mirror-port", named, path)
        assert mirrored["sessions"] == direct["sessions"], workers
        assert mirrored["hosts"] == direct["hosts"], workers
        assert not any("mirror" in reason for reason in mirrored["stats"]["skipped"])


def test_udp_that_carries_no_smtp_inside_gets_no_hint(tmp_path: Path) -> None:
    """Random payloads to one port, and the sample itself: nothing to name, no warning."""
    rng = random.Random(9000)
    junk = [
        synth.Frame(1.0 + n, outer_ipv4(dec.PROTO_UDP, udp(9000, rng.randbytes(rng.randrange(90)))))
        for n in range(3000)
    ]
    synth.write_pcap(tmp_path / "junk.pcap", junk, synth.LINKTYPE_ETHERNET)
    assert report(str(tmp_path / "junk.pcap"))["warnings"] == []
    assert report(SAMPLE)["warnings"] == []


async def test_the_monitor_names_the_option_for_a_mirror_on_a_port_not_named(
    tmp_path: Path,
) -> None:
    """The empty table says what to give, instead of only "none of them SMTP"."""
    from test_tui import screen_text

    from smtptop.source import FileSource

    path = str(wrapped(tmp_path / "t.pcap", NAMED_PORTS["tzsp-40000"][1]))
    app = MonitorApp(FileSource([path]))
    async with app.run_test(size=(80, 24)) as pilot:
        await helpers.settle(app, pilot)
        assert "name the port with --mirror-port tzsp:40000" in app.progress.problem
        shown = app.query_one("#hosts", KeyedTable).empty.plain
        assert shown.startswith("No SMTP in this capture: ") and "tzsp:40000" in shown
        app.clear_notifications()  # the toast says it whole too: the table must, wrapped
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert any(line.startswith(" No SMTP in this capture: ") for line in lines)
        assert any(line.rstrip().endswith("--mirror-port tzsp:40000") for line in lines)


def test_a_stream_of_a_mirror_on_a_named_port_reports_as_the_capture(tmp_path: Path) -> None:
    """``tcpdump -w - udp port 40000 | smtptop report --mirror-port tzsp:40000 -``."""
    path = wrapped(tmp_path / "t.pcap", NAMED_PORTS["tzsp-40000"][1])
    done = from_stdin(
        "report", "--json", "--mirror-port", "tzsp:40000", "-", stdin=path.read_bytes()
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sessions"] == report(SAMPLE)["sessions"]


def test_evidence_from_a_mirror_on_a_named_port_holds_the_frames_it_carried(
    tmp_path: Path,
) -> None:
    """The bundle's packets are read back from the file with the ports named."""
    path = str(wrapped(tmp_path / "t.pcap", NAMED_PORTS["tzsp-40000"][1]))
    host = "192.168.0.108"
    for name, args in (("direct", [SAMPLE]), ("named", ["--mirror-port", "tzsp:40000", path])):
        done = helpers.smtptop("report", "--evidence", str(tmp_path / name), "--host", host, *args)
        assert done.returncode == 0, done.stderr
    found = {
        name: [bytes(f) for _, _, f in CaptureFile(str(tmp_path / name / host / "smtp.pcap"))]
        for name in ("direct", "named")
    }
    assert found["named"] == found["direct"] and found["direct"]


async def test_the_monitor_reads_a_mirror_on_the_port_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``smtptop -r FILE --mirror-port tzsp:40000``: the monitor's reader and engine both
    take the port's packets as TZSP."""
    path = str(wrapped(tmp_path / "t.pcap", NAMED_PORTS["tzsp-40000"][1]))
    started: list[MonitorApp] = []
    monkeypatch.setattr(MonitorApp, "run", lambda app: started.append(app))
    assert main(["-r", path, "--mirror-port", "tzsp:40000"]) == 0
    app = started[0]
    async with app.run_test(size=(120, 30)) as pilot:
        await helpers.settle(app, pilot)
        sessions = to_json(analyze([SAMPLE]))["stats"]["sessions"]
        assert sessions and f" {sessions} sessions" in str(app.query_one("#status").render())


def one_frame(ts: float = 1.0) -> bytes:
    conv = synth.Conversation("192.168.1.20", 40000, "198.51.100.25", 25, start=ts)
    conv.handshake()
    return conv.frames[0].data


@pytest.mark.parametrize(
    ("outer", "reason"),
    [
        (
            outer_ipv4(dec.PROTO_UDP, udp(dec.TZSP_PORT, b"\x01\x00\x00\x01\x05\xff")),
            dec.SKIP_MIRROR_CUT,
        ),  # a tag that claims more than the packet holds
        (
            outer_ipv4(dec.PROTO_UDP, udp(dec.TZSP_PORT, b"\x01\x00\x00\x12\x01" + one_frame())),
            "mirror: TZSP encapsulation 18",
        ),
        (
            outer_ipv4(dec.PROTO_UDP, udp(dec.TZSP_PORT, b"\x02\x00\x00\x01\x01")),
            "mirror: TZSP version 2",
        ),
        (
            outer_ipv4(dec.PROTO_GRE, struct.pack("!HH", 0, 0x880B) + b"ppp"),
            "mirror: GRE protocol 0x880b",
        ),
        (outer_ipv4(dec.PROTO_GRE, struct.pack("!HH", 1, dec.GRE_TEB)), "mirror: GRE version 1"),
        (
            outer_ipv4(dec.PROTO_GRE, struct.pack("!HH", 0x1000, dec.GRE_ERSPAN_III)),
            dec.SKIP_MIRROR_CUT,
        ),
        (outer_ipv4(dec.PROTO_GRE, b"\x00"), dec.SKIP_MIRROR_CUT),
        (outer_ipv4(dec.PROTO_UDP, udp(4789, b"\x08\x00")), dec.SKIP_MIRROR_CUT),
        (vxlan(vxlan(vxlan(one_frame()))), dec.SKIP_NESTED),
    ],
    ids=[
        "tzsp-tag",
        "tzsp-802.11",
        "tzsp-version",
        "gre-ppp",
        "gre-v1",
        "erspan-cut",
        "gre-cut",
        "vxlan-cut",
        "thrice",
    ],
)
def test_a_hostile_or_foreign_mirror_header_is_a_counted_skip(outer: bytes, reason: str) -> None:
    analyzer = Analyzer()
    analyzer.packet(1.0, dec.LINKTYPE_ETHERNET, outer)
    assert analyzer.stats.skipped == {reason: 1}
    assert analyzer.stats.errors == 0 and not analyzer.flows


def test_twice_mirrored_is_taken_out_twice() -> None:
    analyzer = Analyzer()
    analyzer.packet(1.0, dec.LINKTYPE_ETHERNET, erspan_ii(vxlan(one_frame())))
    assert analyzer.stats.skipped == {} and len(analyzer.flows) == 1


def test_a_bundle_from_a_mirrored_capture_holds_the_frames_the_mirror_carried(
    tmp_path: Path,
) -> None:
    from smtptop.evidence import Capture, ReadBack, chosen_hosts, prepare, write_bundle
    from smtptop.files import invoking_user

    ports = frozenset({25, 465, 587, 2525})
    found = {}
    for name, path in (("direct", SAMPLE), ("tzsp", str(wrapped(tmp_path / "t.pcap", tzsp)))):
        analysis = analyze([path])
        assert analysis.detector is not None
        hosts = chosen_hosts(analysis, [])
        texts = prepare(analysis.model, analysis.detector, analysis.verdicts(),
                        Capture([path], "t"), hosts)  # fmt: skip
        write_bundle(texts, str(tmp_path / name), ReadBack([path], ports), owner=invoking_user())
        found[name] = {
            host: [bytes(f) for _, _, f in CaptureFile(str(tmp_path / name / host / "smtp.pcap"))]
            for host in hosts
        }
    assert found["tzsp"] == found["direct"] and all(found["direct"].values())


def test_the_hint_reads_the_frame_inside_and_never_fails_on_a_cut() -> None:
    """``named_mirror`` names a port only when the frame inside is SMTP, and a frame cut
    anywhere is at worst no hint."""
    frame, ports = one_frame(), dec.DEFAULT_PORTS
    ethernet = dec.LINKTYPE_ETHERNET
    assert dec.named_mirror(ethernet, tzsp(frame, 40000), ports) == ("tzsp", 40000)
    assert dec.named_mirror(ethernet, vxlan(frame, 9000), ports) == ("vxlan", 9000)
    assert dec.named_mirror(ethernet, tzsp(frame), ports) is None  # read already
    assert dec.named_mirror(ethernet, vxlan(frame, 8472), ports) is None
    assert dec.named_mirror(ethernet, frame, ports) is None  # TCP itself
    assert dec.named_mirror(ethernet, tzsp(frame, 40000), frozenset({2525})) is None
    for outer in (tzsp(frame, 40000), vxlan(frame, 9000)):
        cuts = {dec.named_mirror(ethernet, outer[:size], ports) for size in range(len(outer))}
        assert cuts == {None}
