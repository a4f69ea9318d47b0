"""Offline throughput: how fast ``smtptop report`` reads a capture, next to tshark and the
raw read floor, on the same file in one run.

Three commands, each on the same capture with the page cache warm:

* smtptop: ``smtptop report --json FILE -o TMP/report.json`` (the full analysis and report);
* tshark: ``tshark -q -Y smtp -r FILE`` (Wireshark's own TCP reassembly and SMTP dissection);
* raw floor: a Python process that only iterates the file's records with scapy's
  ``RawPcapReader``, no decoding: no pure-Python reader can beat it by much.

Each runs ``--runs`` times, round robin (the order rotating each round) so that load from
elsewhere hits all of them alike; the median wall time gives packets/s, and the ratios are
judged against issue 6's goals: smtptop at least 2x tshark and at least 0.5x the raw floor.
The capture comes from ``bench/gencapture.py`` (``--packets``) unless ``--file`` names one.
Results go to bench/results/throughput.md and throughput.svg.

``--smoke`` checks instead of timing: a ~20k packet capture, one run each, smtptop's per-host
figures equal to the generator's ground truth, tshark exits 0, every reader counts the same
packets.  Exit status 1 on any mismatch.

Usage::

    python bench/throughput.py [--packets 1000000] [--runs 5] [--file CAPTURE] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from smtptop.capture import CaptureFile

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
GENERATOR = REPO / "bench" / "gencapture.py"
SMOKE_PACKETS = 20_000
GOAL_VS_TSHARK = 2.0
GOAL_VS_FLOOR = 0.5
HOST_FIGURES = (
    "sessions",
    "destinations",
    "rejected_sessions",
    "tempfailed_sessions",
    "accepted_messages",
    "recipients",
)
RAW_FLOOR = (
    "import sys\n"
    "from scapy.utils import RawPcapReader\n"
    "print(sum(1 for _ in RawPcapReader(sys.argv[1])))\n"
)


@dataclass(slots=True)
class Method:
    """One way of reading the capture, and what its runs measured."""

    name: str
    argv: list[str]
    shown: str  # the command as the results show it
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    stdout: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus)

    def run(self) -> None:
        """Run once; a failure ends the benchmark, since its timing would mean nothing."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(self.argv, capture_output=True, text=True)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(
                f"throughput: {self.name} failed (exit {done.returncode}): {shlex.join(self.argv)}"
                f"\n{done.stderr.strip()}"
            )
        self.walls.append(wall)
        self.cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        self.stdout = done.stdout


def smtptop_argv() -> list[str]:
    """The ``smtptop`` script of this interpreter's environment, else ``python -m smtptop``."""
    script = Path(sys.executable).with_name("smtptop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smtptop"]


def tshark_version(tshark: str) -> str:
    first = subprocess.run([tshark, "--version"], capture_output=True, text=True).stdout
    return first.splitlines()[0].rstrip(".") if first else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    """The checkout's commit, marked when the working tree differs from it."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev} (modified)" if dirty else rev or "unknown"


def warm(path: Path) -> int:
    """Read the whole file so every method finds it in the page cache; return its packets."""
    with path.open("rb") as stream:
        while stream.read(1 << 24):
            pass
    capture = CaptureFile(str(path))
    for _ in capture:
        pass
    if capture.truncated:
        sys.exit(f"throughput: {path}: {capture.truncated}")
    return capture.records


def generate(path: Path, packets: int, seed: int) -> float:
    """Write a capture with bench/gencapture.py; return how long that took."""
    began = time.perf_counter()
    argv = [sys.executable, str(GENERATOR), str(path), "--packets", str(packets)]
    subprocess.run([*argv, "--seed", str(seed)], check=True)
    return time.perf_counter() - began


def compare(report: dict, truth: dict) -> list[str]:
    """Every difference between smtptop's per-host figures and the ground truth."""
    problems = []
    if report["stats"]["packets"] != truth["packets"]:
        problems.append(f"packets: smtptop {report['stats']['packets']}, truth {truth['packets']}")
    if report["stats"]["errors"]:
        problems.append(f"smtptop analysis errors: {report['stats']['error_samples']}")
    hosts = {host["ip"]: host for host in report["hosts"] if host["lan"]}
    for ip in sorted(hosts.keys() - truth["hosts"].keys()):
        problems.append(f"{ip}: in smtptop's report, not in the truth")
    for ip, expected in truth["hosts"].items():
        host = hosts.get(ip)
        if host is None:
            problems.append(f"{ip}: missing from smtptop's report")
            continue
        for key in HOST_FIGURES:
            if host[key] != expected[key]:
                problems.append(
                    f"{ip} ({expected['role']}): {key} smtptop {host[key]}, truth {expected[key]}"
                )
    return problems


def methods(path: Path, report: Path, tshark: str | None) -> list[Method]:
    """smtptop, tshark (when installed) and the raw floor, on one capture."""
    found = [
        Method(
            "smtptop",
            [*smtptop_argv(), "report", "--json", str(path), "-o", str(report)],
            "smtptop report --json FILE -o TMP/report.json",
        )
    ]
    if tshark is not None:
        argv = [tshark, "-q", "-Y", "smtp", "-r", str(path)]
        found.append(Method("tshark", argv, "tshark -q -Y smtp -r FILE"))
    argv = [sys.executable, "-c", RAW_FLOOR, str(path)]
    found.append(Method("raw floor", argv, "python -c 'iterate scapy.utils.RawPcapReader(FILE)'"))
    return found


def smoke(path: Path, work: Path, tshark: str | None) -> int:
    """Correctness, not speed: one run each, checked against the generator's truth."""
    truth_file = path.with_name(path.name + ".truth.json")
    if not truth_file.exists():
        sys.exit(f"throughput: --smoke needs the ground truth {truth_file}")
    truth = json.loads(truth_file.read_text())
    packets = warm(path)
    problems = []
    if packets != truth["packets"]:
        problems.append(f"packets: the file has {packets}, the truth says {truth['packets']}")
    report = work / "report.json"
    if tshark is None:
        print("smoke: tshark skipped: it is not installed (apt-get install tshark)")
    ran = methods(path, report, tshark)
    for method in ran:
        method.run()
        print(f"smoke: {method.name} exited 0")
    problems += compare(json.loads(report.read_text()), truth)
    floor = ran[-1]
    if int(floor.stdout) != packets:
        problems.append(f"packets: scapy's RawPcapReader counts {floor.stdout.strip()}")
    for problem in problems:
        print(f"smoke: MISMATCH {problem}")
    if problems:
        return 1
    print(
        f"smoke: OK: {packets:,} packets, {truth['sessions']:,} sessions; smtptop's figures for"
        f" {len(truth['hosts'])} LAN hosts equal the ground truth"
    )
    return 0


def rate(packets: int, seconds: float) -> str:
    return f"{packets / seconds:,.0f}"


def write_markdown(
    timed: list[Method], packets: int, size: int, source: str, tshark: str, runs: int
) -> Path:
    smtptop, tshark_run, floor = timed
    vs_tshark = tshark_run.wall / smtptop.wall
    vs_floor = floor.wall / smtptop.wall
    command = shlex.join(["python", "bench/throughput.py", *sys.argv[1:]])
    lines = [
        "# Offline throughput",
        "",
        f"`{command}`, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, smtptop"
        f" {commit()}.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {tshark}.",
        "",
        f"Capture: {source}; {packets:,} packets, {size / 1e6:,.1f} MB, page cache warm."
        f" Median of {runs} runs each, round robin.",
        "",
        "| method | command | median wall s | CPU s | packets/s |",
        "|---|---|---:|---:|---:|",
    ]
    for method in timed:
        lines.append(
            f"| {method.name} | `{method.shown}` | {method.wall:.2f} | {method.cpu:.2f}"
            f" | {rate(packets, method.wall)} |"
        )
    lines += [
        "",
        "| ratio (packets/s) | measured | goal | |",
        "|---|---:|---:|---|",
        f"| smtptop / tshark | {vs_tshark:.2f}x | >= {GOAL_VS_TSHARK}x |"
        f" {'met' if vs_tshark >= GOAL_VS_TSHARK else '**not met**'} |",
        f"| smtptop / raw floor | {vs_floor:.2f}x | >= {GOAL_VS_FLOOR}x |"
        f" {'met' if vs_floor >= GOAL_VS_FLOOR else '**not met**'} |",
        "",
        "Wall times of every run (s):",
        "",
    ]
    lines += [f"* {m.name}: {', '.join(f'{w:.2f}' for w in m.walls)}" for m in timed]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "throughput.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_svg(timed: list[Method], packets: int) -> Path:
    """A horizontal bar chart of packets/s; the goals are marked across smtptop's bar."""
    _, tshark_run, floor = timed
    rates = [packets / m.wall for m in timed]
    goals = [
        (f"goal: {GOAL_VS_TSHARK:g}x tshark", GOAL_VS_TSHARK * packets / tshark_run.wall),
        (f"goal: {GOAL_VS_FLOOR:g}x raw floor", GOAL_VS_FLOOR * packets / floor.wall),
    ]
    top = max(*rates, *(value for _, value in goals)) * 1.15
    left, width, bar, gap = 110, 520, 34, 18
    height = 60 + len(timed) * (bar + gap) + 36

    def x(value: float) -> float:
        return left + width * value / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 40}" height="{height}"'
        ' font-family="sans-serif" font-size="13">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">Offline throughput,'
        f" packets/s ({packets:,} packets)</text>",
    ]
    colours = ["#2b7bba", "#888888", "#bbbbbb"]
    for i, (method, value) in enumerate(zip(timed, rates, strict=True)):
        y = 50 + i * (bar + gap)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar / 2 + 5}" text-anchor="end">{method.name}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{x(value) - left:.1f}" height="{bar}"'
            f' fill="{colours[i]}"/>'
        )
        parts.append(f'<text x="{x(value) + 6:.1f}" y="{y + bar / 2 + 5}">{value:,.0f}</text>')
    bottom = 50 + len(timed) * (bar + gap)
    for j, ((label, value), colour) in enumerate(zip(goals, ("#d35400", "#8e44ad"), strict=True)):
        dash = f'stroke="{colour}" stroke-width="2" stroke-dasharray="5,3"'
        parts.append(
            f'<line x1="{x(value):.1f}" y1="44" x2="{x(value):.1f}" y2="{56 + bar}" {dash}/>'
        )
        y = bottom + 10 + 18 * j
        parts.append(f'<line x1="{left}" y1="{y - 4}" x2="{left + 24}" y2="{y - 4}" {dash}/>')
        parts.append(
            f'<text x="{left + 30}" y="{y}" fill="{colour}">{label}: {value:,.0f} packets/s</text>'
        )
    parts.append("</svg>")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "throughput.svg"
    path.write_text("\n".join(parts) + "\n")
    return path


def benchmark(path: Path, work: Path, tshark: str, runs: int, source: str) -> int:
    packets = warm(path)
    report = work / "report.json"
    timed = methods(path, report, tshark)
    for round_ in range(runs):
        for i in range(len(timed)):
            method = timed[(round_ + i) % len(timed)]
            method.run()
            print(f"run {round_ + 1}/{runs}: {method.name} {method.walls[-1]:.2f} s", flush=True)
    counted = json.loads(report.read_text())["stats"]["packets"], int(timed[-1].stdout)
    if counted != (packets, packets):
        sys.exit(f"throughput: packet counts differ: file {packets}, smtptop and scapy {counted}")
    markdown = write_markdown(
        timed, packets, path.stat().st_size, source, tshark_version(tshark), runs
    )
    svg = write_svg(timed, packets)
    print(markdown.read_text(), end="")
    print(f"wrote {markdown.relative_to(REPO)} and {svg.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--packets", type=int, default=1_000_000, help="packets to generate (default 1,000,000)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each method (default 5)")
    parser.add_argument("--file", type=Path, help="benchmark this capture instead of generating")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--smoke", action="store_true", help="a small capture, checked instead of timed"
    )
    args = parser.parse_args(argv)
    tshark = shutil.which("tshark")
    with tempfile.TemporaryDirectory(prefix="smtptop-throughput-") as tmp:
        work = Path(tmp)
        path = args.file
        source = f"`{path}`" if path else ""
        if path is None:
            path = work / "capture.pcap"
            packets = SMOKE_PACKETS if args.smoke else args.packets
            took = generate(path, packets, args.seed)
            source = f"bench/gencapture.py --packets {packets} --seed {args.seed} ({took:.0f} s)"
        if args.smoke:
            return smoke(path, work, tshark)
        if tshark is None:
            sys.exit("throughput: needs tshark (apt-get install tshark)")
        return benchmark(path, work, tshark, args.runs, source)


if __name__ == "__main__":
    sys.exit(main())
