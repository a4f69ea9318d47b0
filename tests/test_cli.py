"""`smtptop report` as a user runs it: outputs, broken files, exit codes."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
import synth
from helpers import smtptop

from smtptop.analysis import analyze
from smtptop.capture import CaptureFile
from smtptop.cli import main
from smtptop.render import CSV_FIELDS, write_csv, write_json, write_table
from smtptop.schema import SCHEMA_VERSION, HostRecord

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "smtptop" / "data" / "office.pcap"


def test_table_puts_the_spambot_first() -> None:
    out = smtptop("report", "--sample")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["HOST", "NAME", "VERDICT", "SESS", "DEST"]
    assert lines[1].split()[:3] == ["192.168.0.108", "wxpanna.studio.lan", "spambot"]
    assert "192.168.0.108 is spambot" in out.stdout
    assert "analysis errors" in out.stdout


HOST_KEYS = ["ip", "lan", "sessions", "destinations", "rejected_sessions", "tempfailed_sessions"]
HOST_KEYS += ["accepted_messages", "recipients", "helos", "servers"]
SESSION_KEYS = ["client", "server", "start", "end", "helo", "mail_from", "rcpt_to", "replies"]
SESSION_KEYS += ["tls", "partial", "outcome"]


def test_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--json", str(SAMPLE)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"hosts", "sessions", "stats"}
    assert report["schema_version"] == SCHEMA_VERSION == 2
    host = report["hosts"][0]
    assert set(host) >= set(HOST_KEYS)
    assert set(host["servers"][0]) >= {"ip", "sessions", "rejected_sessions"}
    assert set(report["sessions"][0]) >= set(SESSION_KEYS)
    assert set(report["stats"]) >= {"packets", "bytes", "smtp_packets", "skipped", "errors"}
    assert report["stats"]["packets"] == sum(1 for _ in CaptureFile(str(SAMPLE)))


def test_csv_one_row_per_host_and_formula_guard(tmp_path: Path) -> None:
    conv = synth.Conversation("10.1.1.1", 40000, "198.51.100.1", 25, start=1.0)
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"HELO =cmd|' /C calc'!A0\r\n"), ("S", b"250 ok\r\n")])
    path = tmp_path / "f.pcap"
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    out = smtptop("report", "--csv", str(path), str(SAMPLE))
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 9
    assert set(CSV_FIELDS) <= {f.name for f in dataclasses.fields(HostRecord)}
    assert {r["ip"] for r in rows} >= {"10.1.1.1", "192.168.0.108"}
    formula = next(r for r in rows if r["ip"] == "10.1.1.1")
    assert formula["helos"] == "'=cmd|' /C calc'!A0"


def test_output_file_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    out = smtptop("report", "--json", "-o", str(target), str(SAMPLE))
    assert out.returncode == 0 and out.stdout == ""
    assert json.loads(target.read_text())["hosts"]
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


class Pieces(io.StringIO):
    """A text stream that remembers its largest single write."""

    largest = 0

    def write(self, text: str) -> int:
        self.largest = max(self.largest, len(text))
        return super().write(text)


@pytest.mark.parametrize("writer", [write_json, write_csv, write_table])
def test_reports_are_written_record_by_record(writer) -> None:
    """No report is joined into one string before it is written: no write is longer than a
    line (a JSON record, a CSV row, a table line)."""
    out = Pieces()
    writer(analyze([str(SAMPLE)]), out)
    lines = out.getvalue().splitlines(keepends=True)
    assert len(lines) > 5 and out.largest <= max(map(len, lines))


@pytest.mark.parametrize("flag", ["--json", "--csv", "--table"])
def test_output_file_and_stdout_get_the_same_bytes(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [flag] if flag != "--table" else []
    target = tmp_path / "report"
    assert main(["report", *flags, "-o", str(target), str(SAMPLE)]) == 0
    assert main(["report", *flags, str(SAMPLE)]) == 0
    assert capsys.readouterr().out.encode() == target.read_bytes()


def broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = SAMPLE.read_bytes()
    cases = {
        "missing": (tmp_path / "nope.pcap", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "empty": (tmp_path / "empty.pcap", "empty file"),
        "text": (tmp_path / "notes.txt", "not a pcap or pcapng"),
        "header only part": (tmp_path / "short.pcap", "inside the pcap file header"),
        "bad gzip": (tmp_path / "bad.pcap.gz", "gzip"),
    }
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello, this is not a capture\n")
    (tmp_path / "short.pcap").write_bytes(good[:10])
    (tmp_path / "bad.pcap.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    return cases


def test_output_to_a_pipe_writes_into_it_and_leaves_it_a_pipe(tmp_path: Path) -> None:
    """`-o /dev/null` once replaced the device with a file (a rename over it, as root).
    A FIFO stands in for the device: the report must go through it, and it must stay one."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert main(["report", "--sample", "--csv", "-o", str(fifo)]) == 0
    received, _ = reader.communicate(timeout=30)
    assert fifo.is_fifo()
    assert b"192.168.0.108" in received and received.startswith(b"ip,")


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "text", "header only part", "bad gzip"]
)
def test_unreadable_files_give_one_line_and_status_1(case: str, tmp_path: Path) -> None:
    path, reason = broken_files(tmp_path)[case]
    out = smtptop("report", str(path))
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert str(path) in out.stderr and reason in out.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_permission(tmp_path: Path) -> None:
    path = tmp_path / "secret.pcap"
    path.write_bytes(SAMPLE.read_bytes())
    path.chmod(0)
    out = smtptop("report", str(path))
    assert out.returncode == 1 and "permission denied" in out.stderr


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("cut mid-record", lambda b: b[: len(b) // 2]),
        ("absurd record length", lambda b: b[:24] + b"\0" * 8 + b"\xff\xff\xff\x7f" * 2 + b[40:]),
        ("cut pcapng", None),
    ],
)
def test_truncated_file_reports_what_was_read(name: str, mangle, tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    if mangle is None:
        conv = synth.Conversation("10.0.0.1", 1025, "198.51.100.1", 25, start=1.0)
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"HELO a.example\r\n"), ("S", b"250 ok\r\n")])
        data = synth.pcapng_bytes(conv.frames, 1)
        path.write_bytes(data[:-7])
    else:
        path.write_bytes(mangle(SAMPLE.read_bytes()))
    out = smtptop("report", "--json", str(path))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"{path}: truncated" in out.stderr
    report = json.loads(out.stdout)
    assert report["warnings"]
    if name != "absurd record length":
        assert report["sessions"]


def test_bad_arguments_are_usage_errors() -> None:
    for args, says in [
        (["report"], "give capture files"),
        (["report", "--ports", "25,x", str(SAMPLE)], "port"),
        (["report", "--lan", "not-a-net", str(SAMPLE)], "CIDR"),
    ]:
        bad = smtptop(*args)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.count("\n") == 1 and says in bad.stderr, bad.stderr
        assert "(see smtptop report --help)" in bad.stderr and "usage:" not in bad.stderr


def test_counts_agree_with_their_nouns(tmp_path: Path) -> None:
    """One of a thing is singular: "1 session ... to 1 server", never "1 sessions"."""
    conv = synth.Conversation("192.168.3.3", 40000, "198.51.100.1", 25, start=1.0)
    conv.smtp(
        [
            ("C", b"EHLO pc.example\r\n"),  # before the greeting
            ("S", b"220 mx\r\n"),
            ("S", b"554 5.7.1 blocked using zen.spamhaus.org\r\n"),
            ("C", b"QUIT\r\n"),
            ("S", b"221 bye\r\n"),
        ]
    )
    conv.close()
    path = tmp_path / "one.pcap"
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    out = smtptop("report", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "  +30 direct-to-mx      1 session on port 25 to 1 server (no smarthost known)" in lines
    assert "Spamhaus ZEN: refused 1 time ('zen.spamhaus.org')" in out.stdout
    assert "spoke before the greeting in 1 session\n" in out.stdout
    assert f"{len(conv.frames)} packets, " in out.stdout
    assert ", 1 SMTP session, 0 analysis errors\n" in out.stdout
    many = smtptop("report", str(SAMPLE)).stdout
    assert "63 sessions on port 25 to 56 servers other than the smarthost (198.51.100.25)" in many
    packets = sum(1 for _ in CaptureFile(str(SAMPLE)))
    assert packets >= 1000 and f"\n{packets:,} packets, " in many  # thousands are marked


def test_help_and_version_are_quick_to_reach() -> None:
    assert "report" in smtptop("--help").stdout
    assert smtptop("--version").stdout.startswith("smtptop ")


def test_analysis_errors_are_counted_logged_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import smtptop.analyzer

    real = smtptop.analyzer.dec.decode
    calls = {"n": 0}

    def flaky(linktype, frame, ports):
        calls["n"] += 1
        if calls["n"] in (5, 9):
            raise RuntimeError("boom")
        return real(linktype, frame, ports)

    monkeypatch.setattr(smtptop.analyzer.dec, "decode", flaky)
    log = tmp_path / "state" / "errors.log"
    assert main(["report", "--json", "--error-log", str(log), str(SAMPLE)]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["stats"]["errors"] == 2
    assert report["stats"]["packets"] == sum(1 for _ in CaptureFile(str(SAMPLE)))
    assert report["hosts"][0]["ip"] == "192.168.0.108"
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert "packet 5 " in lines[0] and "RuntimeError: boom" in lines[0]
    assert f"details in {log}" in out.err
