"""The offline throughput benchmark stays trustworthy: its generated capture is reproducible
and says what its ground truth says, and smtptop's report of it equals that truth (the
benchmark's ``--smoke`` mode; timing is not tested here)."""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import sys
from pathlib import Path

from smtptop.capture import CaptureFile

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def generate(path: Path, seed: int, packets: int = 3000) -> dict:
    options = ["--packets", str(packets), "--seed", str(seed)]
    subprocess.run(
        [sys.executable, str(BENCH / "gencapture.py"), str(path), *options],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(path.with_name(path.name + ".truth.json").read_text())


def test_smoke_report_equals_ground_truth() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "throughput.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke: OK" in result.stdout


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = generate(tmp_path / "a.pcap", seed=7)
    second = generate(tmp_path / "b.pcap", seed=7)
    other = generate(tmp_path / "c.pcap", seed=8)
    assert first == second
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.pcap").read_bytes() != (tmp_path / "c.pcap").read_bytes()
    assert first != other


def frames(path: Path) -> list[tuple[int, bytes]]:
    """The records of a little-endian classic pcap with microsecond stamps."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1" and data[20:24] == b"\x01\0\0\0"  # Ethernet
    out, pos = [], 24
    while pos < len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        out.append((sec * 1_000_000 + usec, data[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    return out


def test_ground_truth_describes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    truth = generate(path, seed=3)
    capture = CaptureFile(str(path))
    for _ in capture:
        pass
    assert capture.truncated is None
    assert capture.records == truth["packets"] >= 3000
    assert path.stat().st_size == truth["bytes"]
    records = frames(path)
    assert len(records) == truth["packets"]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(records))
    syns = 0
    for _, frame in records:
        assert sum(struct.unpack("!10H", frame[14:34])) % 0xFFFF == 0, "IPv4 header checksum"
        syns += frame[47] & 0x12 == 0x02  # SYN without ACK: a session starts
    hosts = truth["hosts"].values()
    assert syns == truth["sessions"] == sum(host["sessions"] for host in hosts)
    assert {host["role"] for host in hosts} == {"user", "relay", "spambot"}
    for host in hosts:
        assert host["rejected_sessions"] + host["tempfailed_sessions"] <= host["sessions"]
        assert 1 <= host["destinations"] <= host["sessions"]


def test_merge_smoke_reads_every_layout_to_the_same_figures() -> None:
    """bench/merge.py's --smoke: the capture in pieces and dealt to two overlapping files
    reads, merged, to the single file's packets and per-host figures (it asserts those)."""
    done = subprocess.run([sys.executable, str(BENCH / "merge.py"), "--smoke"],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|") for line in done.stdout.splitlines()[2:]]
    assert [row[1].strip() for row in rows] == ["one file", "4 pieces in a row",
                                                "2 overlapping files"]  # fmt: skip
    assert len({row[2] for row in rows}) == 1  # the same packets in every layout
