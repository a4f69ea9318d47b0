"""A capture on standard input (``smtptop report -``, ``smtptop -r -``): read as it arrives,
as a file is, its end the end of the capture.  The monitor on a stream is driven in tmux
(tests/test_tmux.py)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smtptop.cli import sample_path
from smtptop.rewind import Rewindable

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = Path(sample_path())


def smtptop(*args: str, stdin: bytes, **options: object) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "smtptop", *args], input=stdin, env=env,
                          capture_output=True, timeout=60, check=False, **options)  # type: ignore[call-overload]  # fmt: skip


@pytest.mark.parametrize("packed", [False, True], ids=["pcap", "gzip"])
def test_a_report_on_standard_input_is_the_report_on_the_file(packed: bool) -> None:
    data = SAMPLE.read_bytes()
    streamed = smtptop("report", "-", "--json", stdin=gzip.compress(data) if packed else data)
    read = smtptop("report", str(SAMPLE), "--json", stdin=b"")
    assert (streamed.returncode, streamed.stderr) == (0, b"")
    assert json.loads(streamed.stdout) == json.loads(read.stdout)


def test_a_stream_cut_inside_a_record_is_reported_like_a_cut_file(tmp_path: Path) -> None:
    cut = SAMPLE.read_bytes()[: SAMPLE.stat().st_size // 2 + 7]
    (tmp_path / "cut.pcap").write_bytes(cut)
    streamed = smtptop("report", "-", "--json", stdin=cut)
    read = smtptop("report", str(tmp_path / "cut.pcap"), "--json", stdin=b"")
    assert streamed.returncode == read.returncode
    said = streamed.stderr.decode()
    assert said.startswith("smtptop: warning: standard input: truncated: file ends inside record")
    assert said == read.stderr.decode().replace(str(tmp_path / "cut.pcap"), "standard input")
    assert json.loads(streamed.stdout)["hosts"] == json.loads(read.stdout)["hosts"]


@pytest.mark.parametrize(
    ("data", "said"),
    [(b"", "standard input: empty file"), (b"GET / HTTP/1.1\r\n", "standard input: not a pcap")],
)
def test_a_stream_that_is_no_capture_is_one_line(data: bytes, said: str) -> None:
    done = smtptop("report", "-", stdin=data)
    assert done.returncode == 1 and done.stdout == b""
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith(f"smtptop: {said}")


def test_the_monitor_without_a_terminal_for_its_keys_says_so() -> None:
    done = smtptop("-r", "-", stdin=SAMPLE.read_bytes(), start_new_session=True)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().startswith("smtptop: -r -: the monitor reads its keys from a ")
    assert "smtptop report - reads the stream" in done.stderr.decode()


def test_the_first_bytes_are_read_again_and_then_the_pipe() -> None:
    read, write = os.pipe()
    stream = Rewindable(os.fdopen(read, "rb", buffering=0))
    try:
        os.write(write, b"\x1f\x8b")
        assert stream.read(2) == b"\x1f\x8b"  # what has arrived: no wait for more
        os.write(write, b"abcdef")
        stream.seek(0)
        assert stream.read(4) == b"\x1f\x8b"  # the kept bytes first, then the pipe's
        assert stream.read(4) == b"abcd"
        stream.seek(0)
        stream.replayed()
        assert stream.read(100) == b"\x1f\x8babcd"
        assert stream.read(100) == b"ef"
        os.write(write, b"gh")
        assert stream.read(100) == b"gh" and stream.taken == 10
        with pytest.raises(OSError, match="read once"):
            stream.seek(0)
    finally:
        os.close(write)
        stream.close()
