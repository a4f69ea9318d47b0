"""The memory benchmark's smoke run: bounds hold and host figures stay exact under eviction
(correctness only; ``python bench/memory.py`` measures the RSS)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "memory.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    assert spec is not None and spec.loader is not None
    module = sys.modules["bench_memory"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registered first: its dataclasses look it up
    return module


def test_memory_bench_smoke() -> None:
    bench = load_bench()
    result, sent = bench.smoke(10_000)
    model = result.model
    assert model.sessions_total == sum(sent.sessions) == 10_000
    limits = bench.SMOKE_LIMITS
    assert len(model.finished) < limits.max_sessions  # here the byte budget binds
    assert model.kept_bytes <= limits.max_kept_bytes < model.kept_bytes + 4096
    assert model.sessions_not_kept == 10_000 - len(model.finished)
    assert set(sent.kinds) == {name for name, *_ in bench.MIX}
    assert any(h.servers_dropped for h in model.hosts.values())  # server rows went too


def test_generator_counts_destinations_as_the_model_does() -> None:
    bench = load_bench()
    picked = {bench.server_of(7, n, 50) for n in range(23)}
    assert len(picked) == bench.distinct_servers(23, 50)
    assert bench.distinct_servers(1000, 50) == 50


def test_warm_up_ends_where_the_bounded_tables_are_full() -> None:
    """Flatness is judged from the sample at which the rows held stop growing."""
    bench = load_bench()
    filling = [(100_000, 160.0, 80_000), (200_000, 180.0, 160_000), (300_000, 200.0, 240_000)]
    full = [(400_000, 210.0, 320_000), (500_000, 212.0, 320_500), (600_000, 213.0, 320_500)]
    assert bench.warm_up(filling + full) == 3
    assert bench.warm_up(filling) == 2  # never full: only the last sample is judged
