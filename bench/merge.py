"""What reading several capture files as one costs (``smtptop/merge.py``): CPU time per
packet of reading the records alone and of a whole one-process report (``analyze(...,
workers=0)``) on one capture, on the same capture cut in four pieces (``tcpdump -C``: no
overlap, the merge compares each record with one number), and dealt to two files that
overlap all along (two mirrors, every other packet in each: the merge's worst case, a heap
step per packet).  Each layout's per-host figures are checked against the single file's.

It imports whichever smtptop the interpreter finds, so it measures the build being compared.

Usage::

    python bench/merge.py [--packets 300000] [--runs 3] [--smoke]

Writes bench/results/merge.md (not with --smoke, which only checks that it runs and that the
layouts agree, on a small capture).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results" / "merge.md"
LINKTYPE_ETHERNET = 1


def layouts(path: Path, folder: Path) -> dict[str, list[str]]:
    """The capture as one file, as four pieces in a row, and dealt to two overlapping files."""
    from smtptop.capture import CaptureFile, PcapWriter

    records = [(ts, data) for ts, _, data in CaptureFile(str(path)) if isinstance(data, bytes)]
    pieces = [folder / f"piece{n}.pcap" for n in range(4)]
    sites = [folder / f"site{n}.pcap" for n in range(2)]
    writers = {p: PcapWriter(p.open("wb"), str(p), LINKTYPE_ETHERNET) for p in pieces + sites}
    size = -(-len(records) // len(pieces))
    for index, (ts, data) in enumerate(records):
        writers[pieces[index // size]].write(ts, data)
        writers[sites[index % 2]].write(ts, data)
    for writer in writers.values():
        writer.close()
    return {
        "one file": [str(path)],
        "4 pieces in a row": [str(p) for p in pieces],
        "2 overlapping files": [str(p) for p in sites],
    }


def cpu(runs: int, work: Callable[[list[str]], object], paths: list[str]) -> float:
    """The least CPU time of ``runs`` runs of ``work(paths)``, in seconds."""
    best = float("inf")
    for _ in range(runs):
        began = time.process_time()
        work(paths)
        best = min(best, time.process_time() - began)
    return best


def read(paths: list[str]) -> int:
    """Every record of the files, merged; how many there were."""
    from smtptop.capture import CaptureFile
    from smtptop.merge import by_time

    return sum(1 for _ in by_time([CaptureFile(path) for path in paths]))


def report(paths: list[str]) -> object:
    from smtptop.analysis import analyze

    return analyze(paths, workers=0)


def figures(paths: list[str]) -> dict[str, tuple[int, ...]]:
    from smtptop.analysis import analyze

    model = analyze(paths, workers=0).model
    return {ip: (h.sessions, h.rejected_sessions, h.tempfailed_sessions, h.accepted_messages)
            for ip, h in model.hosts.items()}  # fmt: skip


def measure(packets: int, runs: int) -> list[tuple[str, int, float, float]]:
    """(layout, packets, read µs a packet, report µs a packet) for each layout."""
    import gencapture

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "capture.pcap"
        gencapture.generate(path, packets, seed=1)
        found = layouts(path, Path(folder))
        expected = figures(found["one file"])
        for name, paths in found.items():
            assert figures(paths) == expected, f"{name}: the per-host figures differ"
            count = read(paths)
            reading, reporting = cpu(runs, read, paths), cpu(runs, report, paths)
            rows.append((name, count, reading * 1e6 / count, reporting * 1e6 / count))
    return rows


def table(rows: list[tuple[str, int, float, float]]) -> str:
    lines = ["| layout | packets | read µs/packet | report µs/packet |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {count:,} | {reading:.3f} | {reporting:.2f} |"
              for name, count, reading, reporting in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a small run, nothing written")
    args = parser.parse_args()
    if args.smoke:
        args.packets, args.runs = 3000, 1
    from smtptop import build

    rows = measure(args.packets, args.runs)
    text = table(rows)
    print(text, end="")
    if args.smoke:
        return
    load = os.getloadavg()[0]
    RESULTS.write_text(
        "# Several capture files read as one\n\n"
        f"Machine: {platform.node() or 'unknown'}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, smtptop {build()}, load average {load:.2f} at the end."
        "\n\n"
        f"Command: `python bench/merge.py --packets {args.packets} --runs {args.runs}` (a "
        "capture from `bench/gencapture.py`, seed 1; CPU time, the least of the runs).\n\n"
        + text
        + f"\nThe report on the four pieces costs {more(rows, 1)} than on the single file: "
        "while one file is ahead of the others, the merge compares each record's time with "
        f"one number. On two files that take turns at every packet it costs {more(rows, 2)}: "
        "a heap step a packet, and the engine's skip counts told apart by file at each turn. "
        "Every layout gives the single file's per-host figures.\n"
    )


def more(rows: list[tuple[str, int, float, float]], row: int) -> str:
    """How much more (or less) than the first row a row's report costs, in words."""
    change = rows[row][3] / rows[0][3] - 1
    return f"{abs(change):.0%} {'more' if change >= 0 else 'less'}"


if __name__ == "__main__":
    main()
