"""BENCHMARKS.md is the benchmarks' result files put together, never typed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_all():
    spec = importlib.util.spec_from_file_location("bench_all", REPO / "bench" / "all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_holds_every_result_file(tmp_path: Path, monkeypatch) -> None:
    bench_all = load_all()
    monkeypatch.setattr(bench_all, "RESULTS", tmp_path)
    (tmp_path / "throughput.md").write_text("# Offline throughput\n\n| a | b |\n|---|---|\n")
    (tmp_path / "throughput.svg").write_text("<svg/>")
    (tmp_path / "memory.md").write_text("# Memory\n\n## Samples\n\npeak 243 MiB\n")
    page = bench_all.page()
    assert page.startswith("# Benchmarks\n")
    assert "## Offline throughput" in page and "### Samples" in page
    assert "| a | b |" in page and "peak 243 MiB" in page
    assert "![throughput](bench/results/throughput.svg)" in page
    assert page.index("## Offline throughput") < page.index("## Memory")
    assert "bench/results/startup.md" not in page  # a benchmark not run yet is left out


def test_the_committed_page_is_up_to_date() -> None:
    """Whoever re-ran a benchmark also rebuilt the page (python bench/all.py --page-only)."""
    assert (REPO / "BENCHMARKS.md").read_text() == load_all().page()
