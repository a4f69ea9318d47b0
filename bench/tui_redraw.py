"""TUI redraw cost: how long the monitor's event loop stalls under a steady SMTP load.

The real :class:`~smtptop.tui.app.MonitorApp` runs headless (``App.run_test``) on a synthetic
source that replays generated SMTP sessions (handshake, EHLO, MAIL, RCPT, a refusal or a
delivered message, QUIT, FIN) paced to about ``--rate`` engine events per second, spread
round-robin over N LAN hosts, so rows really change: hosts appear, counters grow, verdicts
flip.  The frames go through the real Feeder thread and engine, as a live capture's would.

A ticker task sleeps 10 ms at a time on the app's event loop; how late it wakes is the stall
the user would feel (a key press waits that long).  The app's ``update_view`` (judge every
host, redraw the screens) and the worker's batch folding are timed too.

Usage::

    python bench/tui_redraw.py [--hosts 200,2000,10000] [--seconds 10] [--rate 10000]
    python bench/tui_redraw.py --smoke     # small and quick, asserts correctness only

Prints a markdown table and writes it to bench/results/tui_redraw.md (not with --smoke).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synth, the tests' capture builder

import synth  # noqa: E402

from smtptop.cli import tune_collector  # noqa: E402
from smtptop.source import Source  # noqa: E402
from smtptop.tui import app as app_module  # noqa: E402
from smtptop.tui.app import MonitorApp  # noqa: E402
from smtptop.tui.tables import KeyedTable  # noqa: E402

RESULTS = REPO / "bench" / "results" / "tui_redraw.md"
TICK = 0.01
SIZE = (120, 40)
STALL_GOAL = 0.100
SESSION_SECONDS = 0.6  # how long each generated session stays open


def host_address(index: int) -> str:
    return f"10.{index // 62500 % 250}.{index // 250 % 250}.{index % 250 + 1}"


def session_frames(index: int, hosts: int, start: float) -> list[synth.Frame]:
    """One session of host ``index % hosts``: a third refused (some naming Spamhaus), a
    sixth tempfailed, the rest deliver a short message."""
    host = index % hosts
    client = host_address(host)
    server = f"198.18.{index % 50}.{index // 50 % 250 + 1}"
    conv = synth.Conversation(
        client, 20000 + index // hosts % 40000, server, 25, start=start, rtt=0.01
    )
    script: list[tuple[str, bytes] | tuple[str, bytes, float]] = [
        ("S", b"220 mx%d.example ESMTP\r\n" % (index % 50)),
        ("C", b"EHLO pc-%d.corp.example\r\n" % host, 0.05),
        ("S", b"250-mx.example\r\n250 PIPELINING\r\n"),
        ("C", b"MAIL FROM:<u%d@sender%d.example>\r\n" % (index, index % 7), 0.05),
    ]
    kind = index % 6
    if kind in (0, 1):
        reply = b"554 5.7.1 blocked using zen.spamhaus.org" if kind == 0 else b"550 5.1.1 no"
        script += [("S", reply + b"\r\n")]
    elif kind == 2:
        script += [("S", b"451 4.7.1 try again later\r\n")]
    else:
        script += [
            ("S", b"250 2.1.0 Ok\r\n"),
            ("C", b"RCPT TO:<r%d@example.net>\r\n" % index, 0.05),
            ("S", b"250 2.1.5 Ok\r\n"),
            ("C", b"DATA\r\n"),
            ("S", b"354 go ahead\r\n"),
            ("C", b"Subject: x\r\n\r\nhello\r\n.\r\n", 0.1),
            ("S", b"250 2.0.0 queued\r\n"),
        ]
    script += [("C", b"QUIT\r\n", 0.05), ("S", b"221 2.0.0 Bye\r\n")]
    conv.smtp(script)
    conv.close()
    return conv.frames


EVENTS_PER_SESSION = 12  # opened, commands and replies, closed: measured on this load


class Frame(NamedTuple):
    """A captured frame: unpacks as the engine's (ts, linktype, data) tuple."""

    ts: float
    linktype: int
    data: bytes


@dataclass(slots=True)
class Load:
    """Frames with offsets from the start, generated before the run."""

    frames: list[tuple[float, bytes]]
    sessions: int


def make_load(hosts: int, seconds: float, rate: int) -> Load:
    sessions = max(hosts, int(seconds * rate / EVENTS_PER_SESSION))
    spacing = max(0.0, seconds - SESSION_SECONDS) / sessions
    frames = synth.merge(*(session_frames(i, hosts, i * spacing) for i in range(sessions)))
    return Load([(f.ts, f.data) for f in frames], sessions)


class PacedSource(Source):
    """Yields the generated frames at their offsets from the first ``frames`` call, stamped
    with the wall clock, as a live capture would."""

    label = "synthetic load"

    def __init__(self, load: Load) -> None:
        self.load = load
        self.behind = 0.0  # how late the last frame went out: the feeder kept up if small

    def frames(self, stop: threading.Event) -> Iterator[Frame | None]:
        started = time.monotonic()
        wall = time.time()
        for offset, data in self.load.frames:
            wait = started + offset - time.monotonic()
            if wait > 0.002:
                yield None  # let the feeder hand over what it holds
                if stop.wait(wait):
                    return
            yield Frame(wall + offset, synth.LINKTYPE_ETHERNET, data)
        self.behind = time.monotonic() - started - self.load.frames[-1][0]


@dataclass(slots=True)
class Timings:
    ticks: list[float] = field(default_factory=list)
    views: list[float] = field(default_factory=list)  # a refresh's own time, all slices
    slices: list[float] = field(default_factory=list)  # a refresh's longest slice
    folds: list[float] = field(default_factory=list)


def timed(target: Callable[..., object], into: list[float]) -> Callable[..., object]:
    def wrapper(*args: object, **kwargs: object) -> object:
        began = time.perf_counter()
        try:
            return target(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - began)

    return wrapper


def timed_steps(
    steps: Callable[[], Iterator[None]], timings: Timings
) -> Callable[[], Iterator[None]]:
    """Time a refresh's slices (the app yields to the event loop between them)."""

    def wrapper() -> Iterator[None]:
        total = longest = 0.0
        began = time.perf_counter()
        for _ in steps():
            spent = time.perf_counter() - began
            total, longest = total + spent, max(longest, spent)
            yield
            began = time.perf_counter()
        spent = time.perf_counter() - began
        timings.views.append(total + spent)
        timings.slices.append(max(longest, spent))

    return wrapper


@dataclass(slots=True)
class Result:
    hosts: int
    shown_hosts: int
    model_hosts: int
    packets: int
    events: int
    sessions: int
    seconds: float
    behind: float
    cpu: float
    max_stall: float
    p99_stall: float
    stalls_over_goal: int
    view_median: float
    view_max: float
    slice_max: float
    fold_max: float


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(hosts: int, seconds: float, rate: int, top: int = 200) -> Result:
    load = make_load(hosts, seconds, rate)
    source = PacedSource(load)
    app = MonitorApp(source, top=top)
    timings = Timings()
    app._refresh_steps = timed_steps(app._refresh_steps, timings)  # type: ignore[method-assign]
    real_apply = app_module.apply
    folded = [0]

    def counting_apply(model: object, batch: list[object]) -> None:
        folded[0] += len(batch)
        real_apply(model, batch)  # type: ignore[arg-type]

    app_module.apply = timed(counting_apply, timings.folds)  # type: ignore[assignment]
    try:
        async with app.run_test(size=SIZE) as pilot:
            cpu0 = time.process_time()
            began = time.perf_counter()
            while not app.progress.finished:
                before = time.perf_counter()
                await asyncio.sleep(TICK)
                timings.ticks.append(time.perf_counter() - before - TICK)
                if time.perf_counter() - began > seconds * 3 + 30:
                    raise RuntimeError("the load did not finish")
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu0
            app.update_view()
            await pilot.pause()
            table = app.query_one("#hosts", KeyedTable)
            shown = len(table.keys)
            assert app.feeder is not None
            packets = app.feeder.analyzer.stats.packets
            model_hosts = len(app.model.hosts)
            sessions = app.model.sessions_total
    finally:
        app_module.apply = real_apply
    ticks = timings.ticks
    return Result(
        hosts=hosts,
        shown_hosts=shown,
        model_hosts=model_hosts,
        packets=packets,
        events=folded[0],
        sessions=sessions,
        seconds=elapsed,
        behind=source.behind,
        cpu=cpu,
        max_stall=max(ticks, default=0.0),
        p99_stall=percentile(ticks, 0.99),
        stalls_over_goal=sum(1 for t in ticks if t > STALL_GOAL),
        view_median=statistics.median(timings.views) if timings.views else 0.0,
        view_max=max(timings.views, default=0.0),
        slice_max=max(timings.slices, default=0.0),
        fold_max=max(timings.folds, default=0.0),
    )


def ms(value: float) -> str:
    return f"{value * 1000:.0f}"


def table(results: list[Result]) -> str:
    lines = [
        "| hosts (N) | in model / shown | sessions | packets | events/s | run s | feeder behind s "
        "| CPU s | max stall ms | p99 stall ms | stalls > 100 ms | refresh median / max ms "
        "| longest refresh slice ms | longest fold ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.hosts:,} | {r.model_hosts:,} / {r.shown_hosts} | {r.sessions:,} "
            f"| {r.packets:,} | {r.events / r.seconds:,.0f} | {r.seconds:.1f} "
            f"| {r.behind:.2f} | {r.cpu:.1f} "
            f"| {ms(r.max_stall)} | {ms(r.p99_stall)} | {r.stalls_over_goal} "
            f"| {ms(r.view_median)} / {ms(r.view_max)} | {ms(r.slice_max)} | {ms(r.fold_max)} |"
        )
    return "\n".join(lines)


def machine() -> str:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"commit {commit or '?'} (plus uncommitted changes), load average {load:.2f} at start"
    )


def smoke() -> None:
    """Small load: the app keeps up, shows the top rows, and the ticker ran."""
    result = asyncio.run(measure(hosts=300, seconds=2.0, rate=3000, top=50))
    assert result.model_hosts == 300, result
    assert result.shown_hosts == 50, result
    assert result.sessions >= 300, result
    assert result.view_median > 0 and result.max_stall >= 0, result
    print(table([result]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="200,2000,10000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=10_000, help="engine events per second")
    parser.add_argument("--smoke", action="store_true", help="small run, correctness only")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args()
    tune_collector()  # as the smtptop command does before it starts the monitor
    if args.smoke:
        smoke()
        return
    header = machine()
    results = []
    for hosts in (int(n) for n in args.hosts.split(",")):
        result = asyncio.run(measure(hosts, args.seconds, args.rate))
        print(table([result]).splitlines()[-1], flush=True)
        results.append(result)
    command = (
        f"python bench/tui_redraw.py --hosts {args.hosts} --seconds {args.seconds:g} "
        f"--rate {args.rate}"
    )
    text = (
        "# TUI redraw cost\n\n"
        f"Machine: {header}.\n\nCommand: `{command}` (headless `run_test`, {SIZE[0]}x{SIZE[1]}, "
        f"top 200 rows, a {TICK * 1000:.0f} ms ticker on the app's loop; stall = how late it "
        "woke).\n\n" + table(results) + "\n"
    )
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
