"""Several capture files read as one: merged by timestamp (mirrors from several sites
overlap in time), one pending record per file, pieces of one capture read as before, each
file's warnings its own; and a report on two overlapping files is the report on the file
mergecap makes of them."""

from __future__ import annotations

import ipaddress
import json
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import helpers
import pytest
import synth

from smtptop.analysis import analyze
from smtptop.capture import CaptureFile
from smtptop.merge import by_time
from smtptop.source import FileSource

ETH = synth.LINKTYPE_ETHERNET
START = 1_700_000_000.0


def records(times: list[float], tag: int) -> list[tuple[float, int, bytes]]:
    """Records as the reader makes them, each carrying its file and place."""
    return [(ts, 1, bytes([tag, place])) for place, ts in enumerate(times)]


def test_records_come_in_time_order_ties_in_file_order() -> None:
    rng = random.Random(16)
    files = [records(sorted(rng.choice(range(40)) * 0.5 for _ in range(30)), tag)
             for tag in range(4)]  # fmt: skip
    merged = list(by_time(files))
    # a stable sort of all of them, file after file, keeps ties in the order of the files
    assert merged == sorted((r for f in files for r in f), key=lambda record: record[0])
    assert len({r[0] for r in merged}) < len(merged)  # there were ties to break


def test_pieces_that_do_not_overlap_read_as_one_after_the_other() -> None:
    """A piece's own clock may step back (NTP); it is still read whole before the next."""
    pieces = [records([1.0, 5.0, 3.0, 5.0], 0), records([5.0, 9.0, 6.0], 1), records([], 2),
              records([9.0, 12.0], 3)]  # fmt: skip
    assert list(by_time(pieces)) == [r for piece in pieces for r in piece]


def test_the_order_within_a_file_is_kept_when_files_overlap() -> None:
    """A record whose clock jumped ahead holds its file's later ones back behind it."""
    jumps = records([1.0, 10.0, 2.0], 0)
    other = records([1.5, 3.0], 1)
    assert [r[2] for r in by_time([jumps, other])] == [
        bytes(pair) for pair in ([0, 0], [1, 0], [1, 1], [0, 1], [0, 2])
    ]


class Counted:
    """A file's records, counting how many the merge has taken."""

    def __init__(self, rows: list[tuple[float, int, bytes]]) -> None:
        self.rows = rows
        self.taken = 0
        self.closed = False

    def __iter__(self) -> Iterator[tuple[float, int, bytes]]:
        try:
            for row in self.rows:
                self.taken += 1
                yield row
        finally:
            self.closed = True


def test_one_record_per_file_waits_and_switches_are_told() -> None:
    rng = random.Random(7)
    files = [Counted(records(sorted(rng.uniform(0, 10) for _ in range(200)), tag))
             for tag in range(3)]  # fmt: skip
    switches: list[int] = []
    handed = [0, 0, 0]
    told: list[int] = []
    for record in by_time(files, switches.append):
        tag = record[2][0]
        handed[tag] += 1
        for index, file in enumerate(files):  # what a file gave the merge and it holds back
            assert file.taken - handed[index] <= 1
        if not told or told[-1] != tag:
            told.append(tag)
    assert handed == [200, 200, 200]
    assert switches == told  # told before each record of another file than the last


def test_closing_the_merge_closes_every_file() -> None:
    files = [Counted(records([1.0, 2.0, 3.0], 0)), Counted(records([1.5, 2.5], 1))]
    merged = by_time(files)
    next(merged)
    merged.close()
    assert all(file.closed for file in files)


def two_sites(folder: Path) -> tuple[Path, Path]:
    """Mirrors of two sites, overlapping in time: each holds its own hosts' sessions, and one
    session's two directions took different paths (client to server seen at site A, the
    replies at site B), which only a merge by time puts back together.  Site B's clock runs
    25 µs off site A's steps of 50 µs: no two records of the two files share a time, so the
    order mergecap makes is the only one."""
    site_a, site_b = [], []
    for number in range(4):
        a = synth.Conversation(f"192.168.1.{10 + number}", 40000 + number, "198.51.100.7", 25,
                               start=START + number * 0.3)  # fmt: skip
        b = synth.Conversation(f"10.0.0.{10 + number}", 41000 + number, "203.0.113.9", 25,
                               start=START + number * 0.3 + 0.000025)  # fmt: skip
        for conv, site in ((a, site_a), (b, site_b)):
            conv.smtp([("S", b"220 mx ESMTP\r\n"), ("C", b"EHLO pc.example\r\n"),
                       ("S", b"250 mx\r\n"), ("C", b"MAIL FROM:<me@office.example>\r\n"),
                       ("S", b"250 ok\r\n"), ("C", b"RCPT TO:<you@example.org>\r\n"),
                       ("S", b"550 5.7.1 blocked using zen.spamhaus.org\r\n"),
                       ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
            conv.close()
            site.extend(conv.frames)
    split = synth.Conversation("192.168.1.50", 42000, "198.51.100.8", 587, start=START + 0.1)
    split.smtp([("S", b"220 relay ESMTP\r\n"), ("C", b"EHLO laptop\r\n"), ("S", b"250 relay\r\n"),
                ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")])  # fmt: skip
    split.close()
    client_ip = ipaddress.ip_address("192.168.1.50").packed
    for frame in split.frames:  # the client's source address at bytes 26-29 of Ethernet IPv4
        from_client = frame.data[26:30] == client_ip
        (site_a if from_client else site_b).append(
            synth.Frame(frame.ts + (0 if from_client else 0.000025), frame.data)
        )
    times_a, times_b = {f.ts for f in site_a}, {f.ts for f in site_b}
    assert not times_a & times_b
    path_a, path_b = folder / "site-a.pcap", folder / "site-b.pcap"
    synth.write_pcap(path_a, sorted(site_a, key=lambda f: f.ts), ETH)
    synth.write_pcap(path_b, sorted(site_b, key=lambda f: f.ts), ETH)
    return path_a, path_b


@pytest.mark.skipif(shutil.which("mergecap") is None, reason="needs mergecap (tshark)")
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_report_on_overlapping_files_is_the_report_on_their_mergecap_merge(
    tmp_path: Path, workers: str
) -> None:
    site_a, site_b = two_sites(tmp_path)
    merged = tmp_path / "merged.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), str(site_a), str(site_b)],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    one = helpers.smtptop("report", "--json", "--workers", workers, str(merged))
    two = helpers.smtptop("report", "--json", "--workers", workers, str(site_b), str(site_a))
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert two.stdout == one.stdout
    report = json.loads(two.stdout)
    assert report["stats"]["sessions"] == 9
    [split] = [s for s in report["sessions"] if s["client"] == "192.168.1.50:42000"]
    assert (split["helo"], split["partial"], split["close_reason"]) == ("laptop", False, "closed")


def test_each_engine_process_reads_the_files_merged(tmp_path: Path) -> None:
    site_a, site_b = two_sites(tmp_path)
    reports = [analyze([str(site_a), str(site_b)], workers=workers) for workers in (0, 1, 3)]
    hosts = [{ip: (h.sessions, h.rejected_sessions) for ip, h in r.model.hosts.items()}
             for r in reports]  # fmt: skip
    assert hosts[0] == hosts[1] == hosts[2]
    assert len(hosts[0]) == 9 and all(r.warnings == [] for r in reports)
    assert reports[2].stats.packets == reports[0].stats.packets > 0


def test_a_cut_file_among_overlapping_ones_gives_its_one_warning(tmp_path: Path) -> None:
    site_a, site_b = two_sites(tmp_path)
    count = sum(1 for _ in CaptureFile(str(site_b)))
    count_a = sum(1 for _ in CaptureFile(str(site_a)))
    whole = site_b.read_bytes()
    site_b.write_bytes(whole[: len(whole) - 30])  # inside its last record
    expected = [f"{site_b}: truncated: file ends inside record {count}"]
    for workers in (0, 2):
        analysis = analyze([str(site_a), str(site_b)], workers=workers)
        assert analysis.warnings == expected
        assert analysis.stats.packets == count_a + count - 1  # every record before the cut
    source = FileSource([str(site_a), str(site_b)])
    times = [frame[0] for frame in source.frames(threading.Event()) if frame is not None]
    assert times == sorted(times)
    assert source.warnings() == expected
    assert source.position() == (site_a.stat().st_size + site_b.stat().st_size,) * 2


def test_a_replay_plays_the_merged_packets_at_their_pace(tmp_path: Path) -> None:
    site_a, site_b = two_sites(tmp_path)
    source = FileSource([str(site_a), str(site_b)], speed=20.0)
    started = time.monotonic()
    times = [frame[0] for frame in source.frames(threading.Event()) if frame is not None]
    took = time.monotonic() - started
    played, span = source.replay()
    assert times == sorted(times) and played == span == times[-1] - times[0]
    assert span / 20.0 <= took < span / 20.0 + 2.0  # the whole span, at 20 times its pace


def test_max_bytes_cuts_each_file_with_its_own_warning(tmp_path: Path) -> None:
    site_a, site_b = two_sites(tmp_path)
    analysis = analyze([str(site_a), str(site_b)], max_bytes=2000, workers=0)
    assert [w.split(":")[0] for w in analysis.warnings] == [str(site_a), str(site_b)]
    assert all("(--max-bytes)" in warning for warning in analysis.warnings)


def test_an_evidence_bundle_holds_a_hosts_packets_from_every_file_in_time_order(
    tmp_path: Path,
) -> None:
    site_a, site_b = two_sites(tmp_path)
    bundle = tmp_path / "evidence"
    done = helpers.smtptop("report", "--evidence", str(bundle), "--host", "192.168.1.50",
                           str(site_b), str(site_a))  # fmt: skip
    assert done.returncode == 0, done.stderr
    kept = [(ts, data) for ts, _, data in CaptureFile(str(bundle / "192.168.1.50" / "smtp.pcap"))]
    host = ipaddress.ip_address("192.168.1.50").packed  # at either end, bytes 26 to 33
    from_a = [r for r in CaptureFile(str(site_a)) if host in r[2][26:34]]
    from_b = [r for r in CaptureFile(str(site_b)) if host in r[2][26:34]]
    assert kept == sorted((ts, data) for ts, _, data in [*from_a, *from_b])
    assert from_a and from_b
