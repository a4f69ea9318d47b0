"""The Zeek-logs benchmark's smoke run: a small office's sessions as a capture and as Zeek's
logs, both reported, compared and measured (correctness only; ``python bench/zeek_logs.py``
measures 200,000 sessions)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "zeek_logs.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_zeek_logs", BENCH)
    assert spec is not None and spec.loader is not None
    module = sys.modules["bench_zeek_logs"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not shutil.which("/usr/bin/time"), reason="needs GNU time")
def test_zeek_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench()
    assert bench.main(["--sessions", "1500", "--clients", "30", "--servers", "400",
                       "--no-write"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "per-client sessions and distinct destinations are equal" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"capture", "Zeek logs", "logs / capture"} <= rows.keys()
    assert rows["Zeek logs"].rstrip(" |").endswith("| 0")  # no refusal reaches last_reply


def test_the_logs_hold_what_zeek_writes_for_each_kind_of_session(tmp_path: Path) -> None:
    bench = load_bench()
    records = bench.write_logs(tmp_path, 400, 20, 100, refused=0.5)
    conn = (tmp_path / "conn.log").read_text().splitlines()
    smtp = [line.split("\t") for line in (tmp_path / "smtp.log").read_text().splitlines()
            if not line.startswith("#")]  # fmt: skip
    assert len([line for line in conn if not line.startswith("#")]) == 400
    assert records == 400 + len(smtp)
    replies = {row[bench.SMTP_FIELDS.index("last_reply")] for row in smtp}
    assert replies == {"221 2.0.0 bye", "250 2.0.0 queued as 4F2A", "250 2.1.0 ok"}
