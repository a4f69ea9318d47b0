"""The memory benchmark's smoke run: a small generated capture through ``smtptop report
--json`` under ``/usr/bin/time -v``, its process tree watched, the figures exact
(correctness only; ``python bench/memory.py`` measures a million sessions)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "memory.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    module = sys.modules["bench_memory"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registered first: its dataclasses look it up
    return module


@pytest.mark.skipif(not shutil.which("/usr/bin/time"), reason="needs GNU time")
def test_memory_bench_smoke(tmp_path: Path) -> None:
    bench = load_bench()
    capture, out = tmp_path / "small.pcap", tmp_path / "out.json"
    sent = bench.generate(capture, 2000, 40, 300, refused=0.9)
    assert sum(sent.sessions) == 2000
    assert set(sent.kinds) == {bench.REFUSED, *(name for name, *_ in bench.OTHERS)}
    assert 0.85 < sent.kinds[bench.REFUSED] / 2000 < 0.95
    measured = bench.measure(capture, out, source=None, interval=0.01)
    report = json.loads(out.read_text())
    bench.check_exact(report, sent, 300)
    assert report["stats"]["packets"] == sent.packets
    assert measured.processes >= 1
    assert 0 < measured.largest_mib <= measured.tree_bound_mib
    assert 0 < measured.tree_peak_mib <= measured.tree_bound_mib


def test_generator_counts_destinations_as_the_model_does() -> None:
    bench = load_bench()
    picked = {bench.server_of(7, n, 50) for n in range(23)}
    assert len(picked) == bench.distinct_servers(23, 50)
    assert bench.distinct_servers(1000, 50) == 50
