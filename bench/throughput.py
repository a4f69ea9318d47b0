"""Offline throughput: how fast ``smtptop report`` reads the captures users give it, next to
tshark, the tcpdump BPF pass and the raw read floor, as ratios measured in one run.

Two captures by default (``--captures``):

* smtp: SMTP alone, from ``bench/gencapture.py --packets 1000000`` (a busy mail gateway);
* office: an office's SPAN port, from ``bench/officecapture.py --packets 2000000``: under 5 %
  SMTP, the rest web traffic and chatter that smtptop's prefilter has to skip cheaply.

Generated captures are kept in ``--cache`` (a directory under the system's temp directory),
named by the generator, its arguments and a digest of the generators' source, so a rerun does
not spend minutes writing 2 GB again.  ``--file`` benchmarks a capture of your own instead
(as the one capture ``--captures`` names, whose goals it is judged against; smtp by default).

The methods, each on the same capture with the page cache warm:

* smtptop: ``smtptop report --json FILE -o TMP/report.json``, once per build (``--smtptop
  PATH``, repeatable: each an smtptop executable, labelled by what its ``--version`` says;
  default ``python -m smtptop`` from this checkout), each with ``--workers`` 0 (one process),
  1 (one engine process, the model in another: the default on two CPUs) and 2 (two engine
  processes, each taking half the hosts, and the model);
* tshark: ``tshark -q -Y smtp -r FILE`` (Wireshark's own TCP reassembly and SMTP dissection);
* tcpdump BPF pass: ``tcpdump -r FILE -w /dev/null EXPR``, EXPR being the packets smtptop keeps
  (TCP on its SMTP ports; ARP, DHCP, DNS, NetBIOS, mDNS and LLMNR for host identities; behind
  up to two VLAN tags): the kernel filter of :mod:`smtptop.bpf` in tcpdump's syntax;
* raw floor: a Python process that only iterates the file's records with scapy's
  ``RawPcapReader``, no decoding: no pure-Python reader can beat it by much.

Each runs ``--runs`` times, round robin (the order rotating each round) so that load from
elsewhere hits all alike; medians of wall time and of CPU time (user + system, the command's
children included) give packets/s and CPU microseconds per packet, and the ratios are judged
against the issue's goals.  Then ``bench/stages.py`` gives each build's CPU cost per stage.
Results go to bench/results/throughput.md and throughput.svg.

``--smoke`` checks instead of timing: small captures, one run each; smtptop's per-host
figures equal the generator's ground truth (for the office capture, that of its SMTP part),
every worker count gives the same report, every reader counts the same packets, tcpdump keeps
exactly the packets smtptop's own kernel filter keeps, tshark exits 0, the stage timer runs.
Exit status 1 on any mismatch.

Usage::

    python bench/throughput.py [--captures smtp,office] [--runs 3] [--smtptop PATH ...]
        [--packets 1000000] [--office-packets 2000000] [--file CAPTURE] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
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
from typing import Any

from officecapture import SMTP_SHARE

from smtptop import bpf
from smtptop.decode import DEFAULT_PORTS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # bpf_vm, the tests' BPF interpreter

from bpf_vm import run as run_bpf  # noqa: E402

BENCH = REPO / "bench"
RESULTS = BENCH / "results"
STAGES = BENCH / "stages.py"
GENERATORS = {"smtp": BENCH / "gencapture.py", "office": BENCH / "officecapture.py"}
DEFAULT_PACKETS = {"smtp": 1_000_000, "office": 2_000_000}
SMOKE_PACKETS = {"smtp": 20_000, "office": 40_000}
DESCRIPTIONS = {
    "smtp": "SMTP only: a mail gateway's submissions, relays and spambots",
    "office": "an office's SPAN port: web, QUIC, DNS, ARP, IPv6, VLANs; SMTP a few per cent",
}
# (capture, baseline method, least smtptop/baseline ratio of packets/s, wall time)
GOALS = (("smtp", "tshark", 2.0), ("office", "tshark", 5.0), ("office", "tcpdump BPF", 0.3))
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
TOOLS = ("tshark", "tcpdump")
WORKERS = (0, 1, 2)
DEFAULT_WORKERS = min(len(os.sched_getaffinity(0)) - 1, 8)  # smtptop's own default here
STAGE_NAMES = ("read", "engine", "marshal", "fold", "detect")


def bpf_expression() -> str:
    """What smtptop keeps, in tcpdump's syntax.  ``vlan`` moves the offsets of every test
    after it, so the untagged tests come first and each VLAN level nests inside the last."""
    plain = " or ".join(
        [f"tcp port {port}" for port in sorted(DEFAULT_PORTS)]
        + [f"udp port {port}" for port in bpf.UDP_IDENTITY_PORTS]
        + ["arp"]
    )
    return f"{plain} or (vlan and ({plain} or (vlan and ({plain}))))"


@dataclass(slots=True)
class Build:
    """One smtptop to measure: how to run it, its ``--version`` label, how to run stages."""

    label: str
    argv: list[str]
    stages_argv: list[str] | None  # None: not a Python script, so no stage timings
    env: dict[str, str]


@dataclass(slots=True)
class Method:
    """One way of reading a capture, and what its runs measured."""

    name: str
    argv: list[str]
    shown: str  # the command as the results show it
    env: dict[str, str]
    build: str = ""  # the smtptop build's label, for smtptop's methods
    workers: int | None = None  # for smtptop's methods: its --workers
    report: Path | None = None
    walls: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    stdout: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_times)

    def run(self) -> None:
        """Run once; a failure ends the benchmark, since its timing would mean nothing."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(self.argv, capture_output=True, text=True, cwd=REPO, env=self.env)
        wall = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(
                f"throughput: {self.name} failed (exit {done.returncode}): {shlex.join(self.argv)}"
                f"\n{done.stderr.strip()}"
            )
        self.walls.append(wall)
        self.cpu_times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        self.stdout = done.stdout


@dataclass(slots=True)
class Capture:
    """One capture benchmarked, its methods and each build's stage timings."""

    name: str
    path: Path
    source: str  # how it was made, for the results
    truth: Path | None  # the ground truth of its SMTP sessions, when known
    methods: list[Method] = field(default_factory=list)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # by build label

    @property
    def floor(self) -> Method:
        return next(m for m in self.methods if m.name == "raw floor")

    @property
    def packets(self) -> int:
        return int(self.floor.stdout)

    @property
    def smtp_share(self) -> float:
        """The share of packets on SMTP ports, as smtptop's report counts them."""
        report = next(m.report for m in self.methods if m.report is not None)
        return int(json.loads(report.read_text())["stats"]["smtp_packets"]) / self.packets

    def method(self, name: str) -> Method | None:
        return next((m for m in self.methods if m.name == name), None)


def version_label(argv: list[str], env: dict[str, str]) -> str:
    """The build as ``--version`` names it: the parenthesised part, else the whole line."""
    done = subprocess.run([*argv, "--version"], capture_output=True, text=True, cwd=REPO, env=env)
    line = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not line:
        sys.exit(f"throughput: {shlex.join(argv)} --version failed: {done.stderr.strip()}")
    found = re.search(r"\((.+)\)", line[0])
    return found.group(1) if found else line[0]


def builds(paths: list[str]) -> list[Build]:
    """The smtptop builds to compare: each ``--smtptop`` executable, else ``python -m
    smtptop`` from this checkout (its stages run with the checkout first on the path, as
    ``-m`` puts it there)."""
    if not paths:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "smtptop"]
        return [Build(version_label(argv, env), argv, [sys.executable, str(STAGES)], env)]
    found: list[Build] = []
    for given in paths:
        path = shutil.which(given) or sys.exit(f"throughput: --smtptop {given}: not found")
        first = Path(path).read_bytes()[:256].split(b"\n", 1)[0].decode(errors="replace")
        python = first[2:].strip() if first.startswith("#!") and "python" in first else None
        stages = [python, str(STAGES)] if python else None
        label = version_label([path], dict(os.environ))
        if any(b.label == label for b in found):
            label = f"{label}, {given}"
        found.append(Build(label, [path], stages, dict(os.environ)))
    return found


def tool_version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].rstrip(".") if lines else "unknown"


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


def warm(path: Path) -> None:
    """Read the whole file so that every method finds it in the page cache."""
    with path.open("rb") as stream:
        while stream.read(1 << 24):
            pass


def generator_digest() -> str:
    """Changes when either generator's code does, so a stale cached capture is not reused."""
    digest = hashlib.sha256()
    for path in GENERATORS.values():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cached(cache: Path, name: str, packets: int, seed: int) -> tuple[Path, str]:
    """The generated capture for these arguments, written first if the cache lacks it; and
    the command that made it.  Written under a temporary name, so that an interrupted run
    leaves nothing that looks complete."""
    command = f"bench/{GENERATORS[name].name} --packets {packets} --seed {seed}"
    path = cache / f"{name}-{packets}-seed{seed}-{generator_digest()}.pcap"
    if path.exists():
        return path, f"{command} (cached)"
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    began = time.perf_counter()
    argv = [sys.executable, str(GENERATORS[name]), str(partial), "--packets", str(packets)]
    subprocess.run([*argv, "--seed", str(seed)], check=True)
    truth = partial.with_name(partial.name + ".truth.json")
    if truth.exists():
        truth.replace(path.with_name(path.name + ".truth.json"))
    partial.replace(path)
    return path, f"{command} ({time.perf_counter() - began:.0f} s to write)"


def captures(args: argparse.Namespace, smoke: bool) -> list[Capture]:
    """The captures asked for, generated or found in the cache (or the ``--file``)."""
    names = args.captures.split(",") if args.captures else ["smtp", "office"]
    if unknown := set(names) - GENERATORS.keys():
        sys.exit(f"throughput: unknown capture {', '.join(sorted(unknown))} (smtp, office)")
    if args.file is not None:
        if args.captures is None:
            names = ["smtp"]
        if len(names) != 1:
            sys.exit("throughput: --file is one capture: name it with --captures smtp or office")
        truth = args.file.with_name(args.file.name + ".truth.json")
        return [Capture(names[0], args.file, f"`{args.file}`", truth if truth.exists() else None)]
    sizes = {"smtp": args.packets, "office": args.office_packets}
    found = []
    for name in names:
        packets = SMOKE_PACKETS[name] if smoke else sizes[name]
        path, source = cached(args.cache, name, packets, args.seed)
        truth = path.with_name(path.name + ".truth.json")
        if name == "office" and smoke:  # its SMTP part is gencapture's, with the same seed
            smtp_part, _ = cached(args.cache, "smtp", max(1, int(packets * SMTP_SHARE)), args.seed)
            truth = smtp_part.with_name(smtp_part.name + ".truth.json")
        found.append(Capture(name, path, source, truth if truth.exists() else None))
    return found


def methods(capture: Capture, work: Path, found: list[Build], tools: set[str]) -> list[Method]:
    """Every build of smtptop with each worker count, tshark, tcpdump and the raw floor (but
    those whose tool is not in ``tools``: a smoke run goes on without them)."""
    path = str(capture.path)
    runs: list[Method] = []
    for index, build in enumerate(found):
        for workers in WORKERS:
            report = work / f"{capture.name}-{index}-{workers}.json"
            argv = [*build.argv, "report", "--workers", str(workers), "--json", path]
            shown = f"smtptop report --workers {workers} --json FILE -o TMP/report.json"
            name = f"smtptop ({build.label}), --workers {workers}"
            argv += ["-o", str(report)]
            runs.append(Method(name, argv, shown, build.env, build.label, workers, report))
    plain = dict(os.environ)
    if "tshark" in tools:
        argv = ["tshark", "-q", "-Y", "smtp", "-r", path]
        runs.append(Method("tshark", argv, "tshark -q -Y smtp -r FILE", plain))
    if "tcpdump" in tools:
        argv = ["tcpdump", "-r", path, "-w", "/dev/null", bpf_expression()]
        runs.append(Method("tcpdump BPF", argv, "tcpdump -r FILE -w /dev/null EXPR", plain))
    argv = [sys.executable, "-c", RAW_FLOOR, path]
    runs.append(Method("raw floor", argv, "python -c 'iterate scapy RawPcapReader(FILE)'", plain))
    return runs


def run_stages(capture: Capture, build: Build) -> dict[str, Any]:
    """``bench/stages.py`` on the capture under the build's interpreter."""
    if build.stages_argv is None:
        return {"error": "its executable is not a Python script, so no stage timings"}
    argv = [*build.stages_argv, str(capture.path)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=build.env)
    if done.returncode != 0:
        return {"error": f"stages.py failed: {done.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compare(report: dict[str, Any], truth: dict[str, Any], packets: int) -> list[str]:
    """Every difference between smtptop's report and the ground truth of the SMTP sessions."""
    problems = []
    if report["stats"]["packets"] != packets:
        problems.append(f"packets: smtptop {report['stats']['packets']}, the file {packets}")
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


def bpf_kept(path: Path) -> int:
    """How many of the capture's packets smtptop's own kernel filter keeps, by running its
    program (:func:`smtptop.bpf.default_program`) in Python: tcpdump's must agree."""
    from scapy.utils import RawPcapReader

    program = bpf.default_program(DEFAULT_PORTS)
    return sum(1 for frame, _ in RawPcapReader(str(path)) if run_bpf(program, frame))


def smoke_one(capture: Capture, work: Path, found: list[Build], tools: set[str]) -> list[str]:
    """Correctness, not speed, on one capture: the problems found."""
    problems = []
    capture.methods = timed = methods(capture, work, found, tools)
    for method in timed:
        if method.name == "tcpdump BPF":
            method.argv[method.argv.index("/dev/null")] = str(work / "kept.pcap")
        method.run()
        print(f"smoke: {capture.name}: {method.name} exited 0")
    packets = capture.packets
    if capture.truth is None:
        print(f"smoke: {capture.name}: no ground truth: smtptop's figures are not checked")
    reports = {}
    for method in timed:
        if method.report is None:
            continue
        report = reports[method.name] = json.loads(method.report.read_text())
        if capture.truth is not None:
            truth = json.loads(capture.truth.read_text())
            problems += [f"{method.name}: {p}" for p in compare(report, truth, packets)]
        elif report["stats"]["packets"] != packets:
            problems.append(f"{method.name}: counts {report['stats']['packets']} packets")
    first, *others = reports.items()
    for name, report in others:
        if report["hosts"] != first[1]["hosts"]:
            problems.append(f"{name}: its hosts differ from those of {first[0]}")
    if "tcpdump" in tools:
        from scapy.utils import RawPcapReader

        kept = sum(1 for _ in RawPcapReader(str(work / "kept.pcap")))
        expected = bpf_kept(capture.path)
        if kept != expected:
            problems.append(f"tcpdump kept {kept} packets, smtptop's kernel filter {expected}")
        else:
            print(f"smoke: {capture.name}: tcpdump keeps {kept:,} packets, as smtptop's does")
    for build in found:
        stages = run_stages(capture, build)
        if "error" in stages or stages["packets"] != packets:
            problems.append(f"stages.py ({build.label}): {stages.get('error', stages)}")
    return problems


def smoke(found_captures: list[Capture], work: Path, found: list[Build], tools: set[str]) -> int:
    problems = []
    for capture in found_captures:
        problems += [f"{capture.name}: {p}" for p in smoke_one(capture, work, found, tools)]
    for problem in problems:
        print(f"smoke: MISMATCH {problem}")
    if problems:
        return 1
    print("smoke: OK: every build's report equals the ground truth, whatever the worker count")
    return 0


def per_second(packets: int, seconds: float) -> str:
    return f"{packets / seconds:,.0f}"


def goal_rows(capture: Capture) -> list[str]:
    """The ratios of packets/s, wall time, each smtptop build as a user runs it (its default
    worker count here) against a baseline."""
    rows = []
    smtptops = [m for m in capture.methods if m.workers == DEFAULT_WORKERS]
    for name, baseline, goal in GOALS:
        other = capture.method(baseline)
        if name != capture.name or other is None:
            continue
        for method in smtptops:
            ratio = other.wall / method.wall
            rows.append(
                f"| {name} | smtptop ({method.build}) / {baseline} | {ratio:.2f}x | >= {goal:g}x"
                f" | {'met' if ratio >= goal else '**not met**'} |"
            )
    for method in smtptops:
        ratio = capture.floor.wall / method.wall
        rows.append(f"| {capture.name} | smtptop ({method.build}) / raw floor | {ratio:.2f}x | | |")
    return rows


def stage_rows(capture: Capture) -> tuple[list[str], list[str]]:
    """The stage table's rows for one capture, and notes on builds it could not time."""
    rows, notes = [], []
    for label, stages in capture.stages.items():
        if "error" in stages:
            notes.append(f"{capture.name}, {label}: {stages['error']}")
            continue
        if stages["build"] not in label:
            imported = f"{stages['build']} from {stages['smtptop']}"
            notes.append(f"{capture.name}, {label}: stages.py imported another build, {imported}")
            continue
        us = stages["us_per_packet"]
        cells = [f"{us[name]:.2f}" for name in STAGE_NAMES]
        rows.append(f"| {capture.name} | {label} | {' | '.join(cells)} | {sum(us.values()):.2f} |")
    return rows, notes


def write_markdown(done: list[Capture], runs: int) -> Path:
    command = shlex.join(["python", "bench/throughput.py", *sys.argv[1:]])
    tshark = tool_version(["tshark", "--version"])
    tcpdump = ", ".join(
        subprocess.run(
            ["tcpdump", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[:2]
    )
    lines = [
        "# Offline throughput",
        "",
        f"`{command}`, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, smtptop"
        f" {commit()}.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {tshark}, {tcpdump}.",
        "",
        "Captures (page cache warm):",
        "",
    ]
    for capture in done:
        lines.append(
            f"* {capture.name}: {DESCRIPTIONS[capture.name]}; {capture.source};"
            f" {capture.packets:,} packets, {capture.path.stat().st_size / 1e6:,.1f} MB,"
            f" {capture.smtp_share:.1%} on SMTP ports."
        )
    lines += [
        "",
        f"Median of {runs} runs each, round robin.  CPU is user + system time of the command"
        " and its children.  The tcpdump BPF pass keeps what smtptop keeps (its kernel filter,"
        f" `smtptop/bpf.py`, in tcpdump's syntax): `{bpf_expression()}`.",
    ]
    for capture in done:
        lines += [
            "",
            f"## {capture.name} capture, {capture.packets:,} packets",
            "",
            "| method | command | median wall s | CPU s | packets/s |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [
            f"| {m.name} | `{m.shown}` | {m.wall:.2f} | {m.cpu:.2f}"
            f" | {per_second(capture.packets, m.wall)} |"
            for m in capture.methods
        ]
    lines += [
        "",
        "## Against the goals",
        "",
        "Ratios of packets/s (wall time), smtptop on two CPUs.",
        "",
        "| capture | ratio | measured | goal | |",
        "|---|---|---:|---:|---|",
    ]
    for capture in done:
        lines += goal_rows(capture)
    lines += [
        "",
        "## By worker count",
        "",
        "`--workers N` runs the engine in N processes of their own, each reading every record"
        " and taking the connections of its share of the client hosts, while the first"
        " process folds their events into the model (0: everything in one process; the"
        f" default is one per CPU but one, {DEFAULT_WORKERS} here).  CPU µs per packet is the"
        " cost per core; with more cores than here, the wall time falls until the process"
        " that folds, which the stage table prices, is the one that waits.",
        "",
        "| capture | build | workers | wall s | CPU s | packets/s | CPU µs/packet"
        " | packets per CPU-second |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for capture in done:
        for m in (m for m in capture.methods if m.workers is not None):
            lines.append(
                f"| {capture.name} | {m.build} | {m.workers} | {m.wall:.2f} | {m.cpu:.2f}"
                f" | {per_second(capture.packets, m.wall)}"
                f" | {m.cpu / capture.packets * 1e6:.2f} | {per_second(capture.packets, m.cpu)} |"
            )
    lines += [
        "",
        "## By stage",
        "",
        "CPU µs per packet of the capture, from `bench/stages.py` (one process,"
        " `time.process_time`): reading the records; the engine (decoding, TCP reassembly,"
        " SMTP parsing, its events as rows); marshalling the rows that cross between the two"
        " processes;"
        " folding them into the model; the detector's verdicts.",
        "",
        "| capture | build | " + " | ".join(STAGE_NAMES) + " | total |",
        "|---|---|" + "---:|" * (len(STAGE_NAMES) + 1),
    ]
    notes = []
    for capture in done:
        rows, left_out = stage_rows(capture)
        lines += rows
        notes += left_out
    if notes:
        lines += ["", *(f"* not measured: {note}" for note in notes)]
    lines += ["", "## Wall times of every run (s)", ""]
    for capture in done:
        lines += [
            f"* {capture.name}, {m.name}: {', '.join(f'{w:.2f}' for w in m.walls)}"
            for m in capture.methods
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "throughput.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_svg(done: list[Capture]) -> Path:
    """A panel per capture of packets/s bars, each goal a dashed line across the bars; the
    scale is logarithmic, since the tcpdump pass runs some fifty times faster than the rest."""
    longest = max(len(m.name) for capture in done for m in capture.methods)
    left, width, bar, gap = 16 + 7 * longest, 520, 22, 8
    colours = {"tshark": "#888888", "tcpdump BPF": "#555555", "raw floor": "#bbbbbb"}
    goal_colours = ("#d35400", "#8e44ad", "#16a085")
    parts: list[str] = []
    y = 10
    for capture in done:
        rates = [capture.packets / m.wall for m in capture.methods]
        goals = [
            (f"goal: {goal:g}x {baseline}", goal * capture.packets / other.wall)
            for name, baseline, goal in GOALS
            if name == capture.name and (other := capture.method(baseline)) is not None
        ]
        values = [*rates, *(value for _, value in goals)]
        low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))

        def x(value: float, low: int = low, high: int = high) -> float:
            return left + width * (math.log10(value) - low + 0.3) / (high - low + 0.3)

        parts.append(
            f'<text x="{left}" y="{y + 16}" font-size="15" font-weight="bold">{capture.name}'
            f" capture, packets/s, log scale ({capture.packets:,} packets)</text>"
        )
        y += 30
        first, bottom = y, y + len(rates) * (bar + gap)
        for decade in range(low, high + 1):
            at = x(10.0**decade)
            parts += [
                f'<line x1="{at:.1f}" y1="{first - 4}" x2="{at:.1f}" y2="{bottom - gap + 4}"'
                ' stroke="#dddddd"/>',
                f'<text x="{at:.1f}" y="{bottom + 10}" text-anchor="middle" font-size="10"'
                f' fill="#777777">{10**decade:,}</text>',
            ]
        for method, value in zip(capture.methods, rates, strict=True):
            default = method.workers == DEFAULT_WORKERS
            colour = colours.get(method.name, "#2b7bba" if default else "#8fbfe0")
            parts += [
                f'<text x="{left - 8}" y="{y + bar / 2 + 5}" text-anchor="end">'
                f"{method.name}</text>",
                f'<rect x="{left}" y="{y}" width="{x(value) - left:.1f}" height="{bar}"'
                f' fill="{colour}"/>',
                f'<text x="{x(value) + 6:.1f}" y="{y + bar / 2 + 5}">{value:,.0f}</text>',
            ]
            y += bar + gap
        y += 12
        for (label, value), colour in zip(goals, goal_colours, strict=False):
            dash = f'stroke="{colour}" stroke-width="2" stroke-dasharray="5,3"'
            parts.append(
                f'<line x1="{x(value):.1f}" y1="{first - 4}" x2="{x(value):.1f}" y2="{y - gap + 4}"'
                f" {dash}/>"
            )
            y += 18
            parts += [
                f'<line x1="{left}" y1="{y - 4}" x2="{left + 24}" y2="{y - 4}" {dash}/>',
                f'<text x="{left + 30}" y="{y}" fill="{colour}">{label}: {value:,.0f}'
                " packets/s</text>",
            ]
        y += 24
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{y}"'
        ' font-family="sans-serif" font-size="13">'
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "throughput.svg"
    body = [header, '<rect width="100%" height="100%" fill="white"/>', *parts, "</svg>"]
    path.write_text("\n".join(body) + "\n")
    return path


def benchmark(done: list[Capture], work: Path, found: list[Build], runs: int) -> int:
    for capture in done:
        warm(capture.path)
        capture.methods = timed = methods(capture, work, found, set(TOOLS))
        for round_ in range(runs):
            for i in range(len(timed)):
                method = timed[(round_ + i) % len(timed)]
                method.run()
                print(
                    f"{capture.name} run {round_ + 1}/{runs}: {method.name}"
                    f" {method.walls[-1]:.2f} s",
                    flush=True,
                )
        for method in timed:
            if method.report is not None:
                counted = json.loads(method.report.read_text())["stats"]["packets"]
                if counted != capture.packets:
                    sys.exit(
                        f"throughput: {capture.name}: {method.name} counts {counted} packets,"
                        f" scapy {capture.packets}"
                    )
        for build in found:
            print(f"{capture.name}: stages.py ({build.label})", flush=True)
            capture.stages[build.label] = run_stages(capture, build)
    markdown = write_markdown(done, runs)
    svg = write_svg(done)
    print(markdown.read_text(), end="")
    print(f"wrote {markdown.relative_to(REPO)} and {svg.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captures", help="which captures, comma-separated (smtp,office)")
    parser.add_argument(
        "--packets", type=int, default=DEFAULT_PACKETS["smtp"], help="smtp capture's packets"
    )
    parser.add_argument(
        "--office-packets",
        type=int,
        default=DEFAULT_PACKETS["office"],
        help="office capture's packets",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each method (default 3)")
    parser.add_argument(
        "--smtptop",
        action="append",
        default=[],
        metavar="PATH",
        help="an smtptop executable to measure (repeatable; default: python -m smtptop)",
    )
    parser.add_argument("--file", type=Path, help="benchmark this capture instead of generating")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "smtptop-bench-captures",
        help="where generated captures are kept between runs",
    )
    parser.add_argument("--smoke", action="store_true", help="small captures, checked not timed")
    args = parser.parse_args(argv)
    tools = {tool for tool in TOOLS if shutil.which(tool)}
    if missing := sorted(set(TOOLS) - tools):
        if not args.smoke:
            sys.exit(f"throughput: needs {', '.join(missing)} (apt-get install tshark tcpdump)")
        print(
            f"smoke: without {', '.join(missing)}: not installed (apt-get install tshark tcpdump)"
        )
    found = builds(args.smtptop)
    chosen = captures(args, args.smoke)
    with tempfile.TemporaryDirectory(prefix="smtptop-throughput-") as tmp:
        if args.smoke:
            return smoke(chosen, Path(tmp), found, tools)
        return benchmark(chosen, Path(tmp), found, args.runs)


if __name__ == "__main__":
    sys.exit(main())
