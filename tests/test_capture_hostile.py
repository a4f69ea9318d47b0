"""Hostile capture files through the real `smtptop report` command (issue 12): floods of
pcapng interface descriptions, gzip bombs and cut or junk-trailed .gz files, clocks out of
range, and captures that hold nothing smtptop can decode.  Each is built here with
``struct`` and ``gzip``; memory is the command's peak resident size, from ``wait4``."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import helpers
import pytest
import synth

from smtptop.capture import MAX_EMPTY_RUN, MAX_INTERFACES, MAX_TS

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"
ETH = synth.LINKTYPE_ETHERNET
MIB = 1 << 20


def smtptop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """With room for the bombs and floods these tests feed it."""
    return helpers.smtptop(*args, timeout=timeout)


def report(*args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    run = smtptop("report", "--json", *args)
    assert "Traceback" not in run.stderr, run.stderr
    return run, json.loads(run.stdout)


# Started from a small process: a child forked from this one (hundreds of MB after the other
# tests) would start its peak resident size at this process's size.
MEASURE = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL)\n"
    "print(os.wait4(proc.pid, 0)[2].ru_maxrss)\n"
)


def peak_report_mib(*args: str) -> float:
    """The peak resident memory of ``smtptop report`` on these, in MiB."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "smtptop", "report", *args]
    measured = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)  # fmt: skip
    return int(measured.stdout) / 1024


def block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int = ETH, options: bytes = b"") -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 65535) + options)


def epb(iface: int, ts_units: int, data: bytes) -> bytes:
    head = struct.pack("<IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data))
    return block(6, head + data)


def dialogue(start: float = 1.8e9) -> list[synth.Frame]:
    conv = synth.Conversation("192.168.1.7", 40000, "198.51.100.9", 25, start=start)
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"EHLO pc.example\r\n"), ("S", b"250 mx\r\n"),
               ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
    conv.close()
    return conv.frames


def test_a_flood_of_interface_descriptions_costs_neither_memory_nor_time(tmp_path: Path) -> None:
    """Five million interface descriptions (100 MB, 0.2 MB gzipped) used to be kept in a list
    (2 GB for 30 million); past the bound they are counted, and a packet on one is skipped."""
    flood = 5_000_000
    path = tmp_path / "idbs.pcapng.gz"
    frames = dialogue()
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(SHB + idb())
        out.write(b"".join(epb(0, int(f.ts * 1e6), f.data) for f in frames[:3]))
        extra = idb() * 100_000
        for _ in range(flood // 100_000):
            out.write(extra)
        out.write(b"".join(epb(0, int(f.ts * 1e6), f.data) for f in frames[3:]))
        out.write(epb(MAX_INTERFACES + 5, 0, frames[0].data))  # declared, not kept
    started = time.monotonic()
    run, result = report(str(path))
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    assert result["hosts"][0]["ip"] == "192.168.1.7" and len(result["sessions"]) == 1
    dropped = flood + 1 - MAX_INTERFACES
    warning = (f"{path}: {dropped:,} interface descriptions beyond the first "
               f"{MAX_INTERFACES:,} ignored; 1 packets on them skipped")  # fmt: skip
    assert result["warnings"] == [warning] and f"warning: {warning}" in run.stderr
    assert result["stats"]["skipped"]["interface not kept"] == 1
    assert result["stats"]["packets"] == len(frames) + 1
    assert elapsed < 60
    assert peak_report_mib(str(path)) < 200  # the list alone was 350 MB for five million


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_a_cut_gzip_yields_every_record_before_the_cut(cut: float, tmp_path: Path) -> None:
    """The last chunk of a cut .gz used to be lost: the demo capture cut at 90 % gave 0
    packets.  Now every record that decompresses whole is analysed."""
    plain = SAMPLE.read_bytes()
    packed = gzip.compress(plain)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: int(len(packed) * cut)])
    recoverable = len(zlib.decompressobj(31).decompress(packed[: int(len(packed) * cut)]))
    ends, pos = [], 24
    while pos + 16 <= len(plain):
        pos += 16 + struct.unpack_from("<I", plain, pos + 8)[0]
        ends.append(pos)
    expected = sum(1 for end in ends if end <= recoverable)  # whole before the cut
    assert 0 < expected < len(ends)
    run, result = report(str(path))
    assert run.returncode == 1
    assert result["stats"]["packets"] == expected
    assert result["warnings"][0].startswith(
        f"{path}: truncated: the gzip data is cut short after {expected:,} records"
    )
    assert result["hosts"]


def test_junk_after_the_gzip_data_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "junk.pcap.gz"
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()) + b"this is not gzip")
    run, result = report(str(path))
    records = smtptop("report", "--json", str(SAMPLE))
    assert result["stats"] == json.loads(records.stdout)["stats"]
    assert result["warnings"] == [f"{path}: junk after the gzip data ignored (1,867 records read)"]
    assert run.returncode == 1
    padded = tmp_path / "padded.pcap.gz"  # zero padding after the data is no junk (as gzip)
    padded.write_bytes(gzip.compress(SAMPLE.read_bytes()) + bytes(512))
    run, result = report(str(padded))
    assert run.returncode == 0 and result["warnings"] == []


def test_a_gzip_bomb_of_zeros_stops_at_once(tmp_path: Path) -> None:
    """A pcap header and 1 GB of zeros (1 MB gzipped) read as 16-byte empty records: after a
    million in a row the reading stops, in about a second, and says why."""
    path = tmp_path / "bomb.pcap.gz"
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, ETH))
        out.write(synth.pcap_bytes(dialogue(), ETH)[24:])
        zeros = bytes(MIB)
        for _ in range(1024):
            out.write(zeros)
    started = time.monotonic()
    run, result = report(str(path))
    assert time.monotonic() - started < 30  # it took minutes
    assert run.returncode == 1
    assert len(result["sessions"]) == 1
    assert result["stats"]["skipped"]["empty record"] == MAX_EMPTY_RUN
    assert f"{path}: stopped after 12 records: 1,000,000 empty records in a row" in run.stderr
    assert peak_report_mib(str(path)) < 200


def test_max_bytes_stops_reading_and_names_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "office.pcap.gz"
    path.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    run, result = report("--max-bytes", "100k", str(path))
    assert run.returncode == 1
    packets = result["stats"]["packets"]
    assert 100 < packets < 1867
    assert result["warnings"] == [
        f"{path}: stopped after 100.0 kB of capture data (--max-bytes), {packets:,} records "
        "read; the rest was not"
    ]
    whole = smtptop("report", "--max-bytes", "1G", str(path))
    assert whole.returncode == 0 and "warning" not in whole.stderr
    for bad in ("5X", "0", "-1M"):
        refused = smtptop("report", "--max-bytes", bad, str(path))
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    live = smtptop("report", "-i", "lo", "--max-bytes", "1M")
    assert live.returncode == 2 and "only applies to capture files" in live.stderr


def test_progress_shows_the_unpacked_bytes_of_a_bomb(tmp_path: Path) -> None:
    """A bomb of tiny records is real work: the progress line shows how much it unpacks to."""
    from test_progress import run_report

    path = tmp_path / "tiny.pcap.gz"
    record = struct.pack("<IIII", 1_800_000_000, 0, 1, 1) + b"E"
    with gzip.open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, ETH))
        out.write(record * 2_000_000)
    _, err = run_report(str(path), tty=True)
    assert b"smtptop: reading " in err and b"pkt/s" in err and b"MB unpacked" in err


def header_only(path: Path, linktype: int = ETH) -> Path:
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    return path


@pytest.mark.parametrize(
    ("name", "build", "warning"),
    [
        ("header only", lambda p: header_only(p), "no packets in {path}"),
        (
            "link type 147",
            lambda p: synth.write_pcap(p, dialogue(), 147),
            "{path}: link type 147 (USER0) is not one smtptop decodes: 12 packets skipped",
        ),
        (
            "nothing decodable",
            lambda p: synth.write_pcap(p, [synth.Frame(1.0, b"\0" * 10)] * 3, ETH),
            "{path}: no packet could be decoded (skipped: 3 truncated packet)",
        ),
    ],
)
def test_an_empty_report_says_why(name: str, build, warning: str, tmp_path: Path) -> None:
    """An empty report of a capture smtptop could not read is not 'no SMTP on the network':
    a warning says why, and the exit status is 1."""
    path = tmp_path / "capture.pcap"
    build(path)
    run, result = report(str(path))
    expected = warning.format(path=path)
    assert run.returncode == 1 and result["warnings"] == [expected]
    assert run.stderr.splitlines() == [f"smtptop: warning: {expected}"]


def test_a_capture_without_smtp_is_no_warning(tmp_path: Path) -> None:
    conv = synth.Conversation("192.168.1.20", 40000, "198.51.100.80", 80, start=1.8e9)
    conv.handshake()
    conv.close()
    path = tmp_path / "web.pcap"
    synth.write_pcap(path, conv.frames, ETH)
    run, result = report(str(path))
    assert run.returncode == 0 and result["warnings"] == [] and run.stderr == ""


def clock_capture(path: Path, options: bytes) -> Path:
    """A pcapng whose interface carries these clock options (if_tsresol, if_tsoffset)."""
    frames = dialogue(start=1.0)
    path.write_bytes(
        SHB + idb(ETH, options + b"\0\0\0\0") + b"".join(epb(0, int(f.ts), f.data) for f in frames)
    )
    return path


@pytest.mark.parametrize(
    "options",
    [
        struct.pack("<HHq", 14, 8, 1 << 62),  # if_tsoffset of 146 billion years
        struct.pack("<HHq", 14, 8, -(1 << 62)),
        struct.pack("<HHB3x", 9, 1, 0) + struct.pack("<HHq", 14, 8, (1 << 63) - 1),
        struct.pack("<HHB3x", 9, 1, 127),  # ticks of 10^-127 s
    ],
    ids=["offset", "negative-offset", "seconds-and-offset", "resolution"],
)
def test_clocks_out_of_range_are_clamped(options: bytes, tmp_path: Path) -> None:
    path = clock_capture(tmp_path / "clock.pcapng", options)
    run, result = report(str(path))
    assert run.returncode == 1 and len(result["sessions"]) == 1
    assert all(-MAX_TS <= s["start"] <= MAX_TS for s in result["sessions"])
    assert "were clamped" in result["warnings"][0]
