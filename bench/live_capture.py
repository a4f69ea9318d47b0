"""Live capture throughput: the packet rate up to which smtptop loses nothing, against tcpdump.

tcpreplay pushes a generated SMTP capture (built with :mod:`tests/synth.py`: sessions with
message bodies, some refused) through a veth pair between two network namespaces made for the
run, for 30 s per rate.  At the other end one of three captures:

* ``smtptop report -i --json``, headless, with each ``--workers`` count asked for (0: capture
  and analysis in one process; N: N engine processes, each reading a socket of a
  PACKET_FANOUT group, and the process that folds): packets analysed (``stats.packets``) and
  kernel drops (the report's warning, from PACKET_STATISTICS, summed over the sockets);
* tcpdump, the reference, writing to /dev/null with the same 16 MiB buffer and an SMTP
  filter: packets captured and dropped by the kernel;
* the monitor itself, ``smtptop -i`` in a tmux session (300x50) of its own, as it starts
  by default (each host's latest SMTP packets kept for evidence bundles: a 64 MiB evidence
  buffer) and with ``--evidence-buffer 0``, the baseline that shows what the buffer costs:
  packets, kernel
  drops and queue drops (events the capture thread dropped because the UI fell behind) read
  from its status bar, and how long a key press takes to show: ``p`` (pause) is sent about
  once a second while the replay runs and the pane is polled until ``PAUSED`` appears, then
  again until it goes (a few presses before the replay give the idle floor).  That
  key-to-screen time bounds the event loop's stall from above (it adds Textual's render,
  tmux and the polling); bench/tui_redraw.py measures the stall itself on a synthetic source.

A rate is lossless when the tool received every packet sent, with no kernel or queue drop.
Each tool's lossless ceiling is searched for: from 50,000 pkt/s (the TUI goal's rate) the
rate doubles or halves (3,125 to 400,000) until one lossless and one lossy rate bracket it,
at most 5 probes, then bisection narrows the bracket to within 10 %, at most 3 more: at most
8 probes per tool, 24 in all.  ``--rates`` measures a fixed list instead.

A capture ends once the kernel's receive queue of its socket is empty (smtptop: ``Rmem`` of
/proc/PID/net/packet) or after a fixed settling time (tcpdump), then SIGINT (the monitor:
once its status bar stops changing, then ``q``); so what was sent is either received or
counted as dropped, never cut off by the end of the run.

Usage (root; iproute2, tcpdump, tcpreplay, tmux)::

    python bench/live_capture.py [--seconds 30] [--rates 25000,50000] [--workers 0,1,2] [--tui]

Prints a markdown table and writes it to bench/results/live_capture.md.

Network safety: two namespaces made for the run, joined by one veth pair; neither has an
address, a route or forwarding, and IPv6 is off in both, so the replayed frames (addresses in
192.168.0.0/16 and 198.18.0.0/15, foreign MAC addresses) end at the capture and nothing can
leave.  Every step has a time limit; the namespaces and every process in them (the tmux
server too) are removed on exit, also after a failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synth, the tests' capture builder

from synth import LINKTYPE_ETHERNET, Conversation, Frame, write_pcap  # noqa: E402

SECONDS = 30.0
START_RATE = 50_000  # the search's first rate, and the one the TUI goal names
MIN_RATE, MAX_RATE = 3_125, 400_000  # the search doubles or halves within these
BRACKET_PROBES = 5  # 50,000 down to 3,125 in halvings; up to 400,000 takes 4
BISECT_PROBES = 3  # a factor of 2 narrowed to 2 ** (1/8) = 1.09
PRECISION = 1.10
SENDER_SHORT = 0.95  # tcpreplay sent less than this share of the rate: it is the limit
GOAL_RATIO = 0.7  # smtptop's headless ceiling against tcpdump's
STALL_GOAL_MS = 100.0
PCAP_PACKETS = 1_500_000  # 50,000 pkt/s for 30 s; longer runs loop over it (see replay)
RESULTS = REPO / "bench" / "results" / "live_capture.md"
RESULTS_TUI = REPO / "bench" / "results" / "live_tui.md"  # --tui: the monitor alone
TUI, TUI_NO_BUFFER = "smtptop TUI", "smtptop TUI --evidence-buffer 0"
TX, RX = "bench-tx", "bench-rx"
EXIT_LOSS = 3  # smtptop report -i: the kernel dropped packets (a lossy probe, not a failure)
BUFFER_KIB = 16384  # smtptop's receive buffer (smtptop.live.RECEIVE_BUFFER), for tcpdump -B
TCPDUMP_FILTER = "tcp port 25 or tcp port 465 or tcp port 587 or tcp port 2525"
STEP_TIMEOUT = 20.0
SETTLE = 1.5  # tcpdump: longer than libpcap's 1 s ring-block timeout, so no block is left
QUIET_POLLS = 3  # smtptop: its receive queue must read empty this many times in a row
POLL = 0.2
TUI_SIZE = ("300", "50")  # wide enough for every part of the status bar, drops and all
TUI_REFRESH = 1.2  # a little more than the monitor's status refresh (1 s)
SETTLE_READS = 10  # the monitor's status bar is read until it repeats, this many times at most
IDLE_KEYS = 4  # key probes before the replay (pause, resume, twice)
KEY_EVERY = 1.0  # seconds between key probes while the replay runs
KEY_TIMEOUT = 5.0
KEY_POLL = 0.002  # between screen reads: each is a tmux client, not free on 2 CPUs
SESSION = "bench"
SEED = 20261128


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        sys.exit(f"live_capture: needs {name} (apt-get install iproute2 tcpdump tcpreplay tmux)")
    return path


# -- the capture to replay -------------------------------------------------------------------


def session(index: int, rng: random.Random) -> list[Frame]:
    """One SMTP session from one of 200 LAN hosts to one of 1,000 servers; a tenth of them
    refused at RCPT, the others deliver a message of 1 to 8 KiB."""
    client = f"192.168.{77 + index % 200 // 100}.{10 + index % 100}"
    server = f"198.18.{index % 1000 // 200}.{10 + index % 200}"
    conv = Conversation(client, 20000 + index // 200, server, 25, start=1.79e9 + index * 0.01)
    helo = f"pc-{index % 200:03d}.corp.example".encode()
    refused = index % 10 == 0
    lines = rng.randint(12, 100)
    body = b"".join(b"line %06d %s\r\n" % (i, b"x" * 64) for i in range(lines))
    script: list[tuple[str, bytes]] = [
        ("S", b"220 mx%d.example ESMTP\r\n" % (index % 1000)),
        ("C", b"EHLO " + helo + b"\r\n"),
        ("S", b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"),
        ("C", b"MAIL FROM:<user%d@corp.example>\r\n" % index),
        ("S", b"250 2.1.0 Ok\r\n"),
        ("C", b"RCPT TO:<someone%d@example.net>\r\n" % index),
    ]
    if refused:
        script += [("S", b"550 5.7.1 blocked using zen.spamhaus.org\r\n")]
    else:
        message = b"Subject: report %d\r\nFrom: <user@corp.example>\r\n\r\n" % index + body
        script += [
            ("S", b"250 2.1.5 Ok\r\n"),
            ("C", b"DATA\r\n"),
            ("S", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
            ("C", message + b".\r\n"),
            ("S", b"250 2.0.0 Ok: queued as %08X\r\n" % index),
        ]
    script += [("C", b"QUIT\r\n"), ("S", b"221 2.0.0 Bye\r\n")]
    conv.smtp(script)
    conv.close()
    return conv.frames


def generate(path: Path, packets: int) -> tuple[int, int]:
    """Write a capture of at least ``packets`` frames; returns (frames, sessions)."""
    rng = random.Random(SEED)
    counts = [0, 0]

    def frames() -> Iterator[Frame]:
        while counts[0] < packets:
            made = session(counts[1], rng)
            counts[0] += len(made)
            counts[1] += 1
            yield from made

    write_pcap(path, frames(), LINKTYPE_ETHERNET)
    return counts[0], counts[1]


# -- the namespaces ----------------------------------------------------------------------------


def run(*command: str, timeout: float = STEP_TIMEOUT) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(command)} exited {done.returncode}: {done.stderr}")
    return done.stdout


class Lab:
    """Two namespaces with a veth pair and nothing else; removed with all processes on exit."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tx, self.rx = f"smtptop-bench-{tag}-tx", f"smtptop-bench-{tag}-rx"
        self.ip = tool("ip")
        self.made: list[str] = []

    def exec(self, ns: str, *command: str) -> list[str]:
        return [self.ip, "netns", "exec", ns, *command]

    def __enter__(self) -> Lab:
        try:
            for ns in (self.tx, self.rx):
                run(self.ip, "netns", "add", ns)
                self.made.append(ns)
                run(self.ip, "-n", ns, "link", "set", "lo", "up")
                off = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
                run(*self.exec(ns, "sysctl", "-qw", *off))
            run(self.ip, "-n", self.tx, "link", "add", TX, "type", "veth", "peer", "name", RX)
            run(self.ip, "-n", self.tx, "link", "set", RX, "netns", self.rx)
            run(self.ip, "-n", self.tx, "link", "set", TX, "up")
            run(self.ip, "-n", self.rx, "link", "set", RX, "up")
            for ns in self.made:
                routes = run(self.ip, "-n", ns, "route", "show")
                if routes.strip():
                    raise RuntimeError(f"{ns} must have no routes: {routes}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def link_drops(self) -> int:
        """Frames the veth pair itself dropped (sender's TX and receiver's RX)."""
        dropped = 0
        for ns, link, way in ((self.tx, TX, "tx"), (self.rx, RX, "rx")):
            info = json.loads(run(self.ip, "-n", ns, "-j", "-s", "link", "show", link))
            dropped += info[0]["stats64"][way]["dropped"]
        return dropped

    def __exit__(self, *exc: object) -> None:
        for ns in self.made:
            pids = subprocess.run(
                [self.ip, "netns", "pids", ns], capture_output=True, text=True, timeout=10
            )
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run([self.ip, "netns", "del", ns], capture_output=True, timeout=10)
        self.made.clear()


# -- one measurement -----------------------------------------------------------------------------


@dataclass
class Capture:
    path: Path
    frames: int
    sessions: int


@dataclass
class Sent:
    packets: int
    pps: float
    failed: int


@dataclass
class Measured:
    sent: Sent
    received: int
    kernel_drops: int
    link_drops: int
    cpu_seconds: float
    queue_drops: int = 0  # the monitor's: events dropped between capture thread and UI
    keys_ms: list[float] = field(default_factory=list)  # the monitor's key-to-screen times
    idle_ms: list[float] = field(default_factory=list)  # the same before the replay: the floor

    @property
    def lossless(self) -> bool:
        complete = self.received == self.sent.packets and not self.sent.failed
        return complete and not self.kernel_drops and not self.queue_drops


def replay(lab: Lab, pcap: Capture, rate: int, seconds: float) -> Sent:
    """tcpreplay at ``rate`` packets/s for ``seconds``.  Past the end of the capture it loops
    with ``--unique-ip``, which moves each loop's addresses (checksums kept), so every loop's
    sessions are new flows to the analyser, not retransmissions."""
    count = int(rate * seconds)
    command = [tool("tcpreplay"), "-i", TX, "-K", "--pps", str(rate), "--limit", str(count)]
    if count > pcap.frames:
        command += ["--loop", str(-(-count // pcap.frames)), "--unique-ip"]
    out = run(*lab.exec(lab.tx, *command, str(pcap.path)), timeout=seconds * 5 + STEP_TIMEOUT)
    actual = re.search(r"Actual: (\d+) packets", out)
    rated = re.search(r"([\d.]+) pps", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    if not (actual and rated and failed):
        raise RuntimeError(f"cannot read tcpreplay's counts: {out}")
    return Sent(int(actual[1]), float(rated[1]), int(failed[1]))


def stop(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGINT, then the output; a process that does not end in time is killed."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=STEP_TIMEOUT * 3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate(timeout=STEP_TIMEOUT)
        raise


def until(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(POLL / 4)


def smtptop_command(workers: int) -> list[str]:
    env = ("env", f"PYTHONPATH={REPO}")
    report = ("report", "-i", RX, "--duration", "3600", "--json", "--user", "nobody")
    return [*env, sys.executable, "-m", "smtptop", *report, "--workers", str(workers)]


def monitor_command(*options: str) -> list[str]:
    return [
        "env",
        f"PYTHONPATH={REPO}",
        sys.executable,
        "-m",
        "smtptop",
        "-i",
        RX,
        "--user",
        "nobody",
        *options,
    ]


def receive_queue(pid: int) -> int:
    """Bytes waiting in the kernel for the process's packet socket (its netns' only one)."""
    rows = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
    return sum(int(row.split()[6]) for row in rows)


def drain(pid: int) -> None:
    """Wait (bounded) until the process has read everything the kernel queued for it."""
    quiet = 0
    deadline = time.monotonic() + STEP_TIMEOUT * 3
    while quiet < QUIET_POLLS and time.monotonic() < deadline:
        quiet = quiet + 1 if receive_queue(pid) == 0 else 0
        time.sleep(POLL)


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and its children (the engine processes) so far,
    start-up included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tasks = Path(f"/proc/{pid}/task").iterdir()  # the monitor forks from its capture thread
    children = [child for task in tasks for child in (task / "children").read_text().split()]
    return own + sum(cpu_seconds(int(child)) for child in children)


def dropped_root(pid: int) -> bool:
    """smtptop runs as nobody once its socket and filter are in place."""
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return line.split()[1] != "0"
    return False


def running(process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        said = process.stderr.read() if process.stderr else b""
        raise RuntimeError(f"smtptop exited {process.returncode}: {said!r}")
    return True


def headless(workers: int) -> Measure:
    def measure_smtptop(lab: Lab, pcap: Capture, rate: int, seconds: float) -> Measured:
        return measure_report(lab, pcap, rate, seconds, workers)

    return measure_smtptop


def measure_report(lab: Lab, pcap: Capture, rate: int, seconds: float, workers: int) -> Measured:
    process = subprocess.Popen(
        lab.exec(lab.rx, *smtptop_command(workers)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        until("smtptop to drop root", lambda: running(process) and dropped_root(process.pid))
        links = lab.link_drops()
        sent = replay(lab, pcap, rate, seconds)
        drain(process.pid)
        cpu = cpu_seconds(process.pid)
        out, err = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STEP_TIMEOUT)
    if process.returncode not in (0, EXIT_LOSS):
        raise RuntimeError(f"smtptop exited {process.returncode}: {err.decode()}")
    report = json.loads(out)
    drops = re.search(r"the kernel dropped (\d+) packets", err.decode())
    kernel_drops = int(drops[1]) if drops else 0
    return Measured(sent, report["stats"]["packets"], kernel_drops, lab.link_drops() - links, cpu)


def tcpdump_command() -> list[str]:
    return [tool("tcpdump"), "-i", RX, "-n", "-B", str(BUFFER_KIB), "-w", "/dev/null"]


def measure_tcpdump(lab: Lab, pcap: Capture, rate: int, seconds: float) -> Measured:
    process = subprocess.Popen(
        lab.exec(lab.rx, *tcpdump_command(), TCPDUMP_FILTER),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    said = b""
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + STEP_TIMEOUT
        while b"listening on" not in said:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {said.decode()}")
            if select.select([process.stderr], [], [], POLL)[0]:
                said += os.read(process.stderr.fileno(), 4096)
        links = lab.link_drops()
        sent = replay(lab, pcap, rate, seconds)
        time.sleep(SETTLE)
        cpu = cpu_seconds(process.pid)
        _, rest = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STEP_TIMEOUT)
    text = (said + rest).decode()
    counts = {
        w: int(n) for n, w in re.findall(r"(\d+) packets? (captured|dropped by kernel)", text)
    }
    dropped, links = counts["dropped by kernel"], lab.link_drops() - links
    return Measured(sent, counts["captured"], dropped, links, cpu)


# the monitor's status bar: "drops 12 +3 kernel  interface bench-rx  …  1,234 pkts (…)"
STATUS = re.compile(r"drops ([\d,]+)(?: \+([\d,]+) kernel)?.*?  ([\d,]+) pkts? \(")


class Monitor:
    """``smtptop -i`` in a tmux session on a server of its own (socket in the run's temporary
    directory) started inside the receiving namespace; :meth:`close` ends the server."""

    def __init__(self, lab: Lab, directory: Path, options: tuple[str, ...]) -> None:
        self.lab = lab
        self.options = options
        self.tmux = [tool("tmux"), "-S", str(directory / "tmux.sock")]
        self.config = directory / "tmux.conf"
        self.config.write_text("set -g remain-on-exit on\n")  # a crash's last line stays
        self.pid = 0

    def start(self) -> None:
        width, height = TUI_SIZE
        command = shlex.join(["exec", *monitor_command(*self.options)])
        new = ("new-session", "-d", "-s", SESSION, "-x", width, "-y", height, command)
        run(*self.lab.exec(self.lab.rx, *self.tmux, "-f", str(self.config), *new))
        self.pid = int(self.pane("#{pane_pid}"))

    def pane(self, what: str) -> str:
        return run(*self.tmux, "display-message", "-p", "-t", SESSION, what).strip()

    def screen(self) -> str:
        return run(*self.tmux, "capture-pane", "-p", "-t", SESSION)

    def status(self) -> str:
        """The status bar (the screen's first line); an ended monitor is an error."""
        screen = self.screen()
        if self.pane("#{pane_dead}") == "1":
            raise RuntimeError(f"the monitor ended: {screen.strip()}")
        return screen.split("\n", 1)[0]

    def counts(self) -> tuple[int, int, int]:
        """Packets analysed, kernel drops, queue drops (events), as the status bar says."""
        found = STATUS.search(self.status())
        if found is None:
            raise RuntimeError(f"cannot read the monitor's status bar: {self.status()}")
        queue, kernel, packets = (int((n or "0").replace(",", "")) for n in found.groups())
        return packets, kernel, queue

    def settled(self) -> tuple[int, int, int]:
        """The counts, once two status refreshes in a row show the same."""
        last = self.counts()
        for _ in range(SETTLE_READS):
            time.sleep(TUI_REFRESH)
            now = self.counts()
            if now == last:
                return now
            last = now
        raise RuntimeError(f"the monitor's counts did not settle: {last}")

    def key_ms(self) -> float:
        """Press ``p`` and time until the status bar's PAUSED mark flips (KEY_TIMEOUT at most:
        a longer stall counts as that)."""
        paused = "PAUSED" in self.status()
        start = time.monotonic()
        run(*self.tmux, "send-keys", "-t", SESSION, "p")
        while ("PAUSED" in self.screen().split("\n", 1)[0]) == paused:
            if time.monotonic() - start > KEY_TIMEOUT:
                break
            time.sleep(KEY_POLL)
        return (time.monotonic() - start) * 1000

    def quit(self) -> None:
        """``q``, then the pane must be dead without a failure: tmux 3.3 does not always
        report a dead pane's exit status, so the line smtptop ends a failure with is looked
        for too."""
        run(*self.tmux, "send-keys", "-t", SESSION, "q")
        until("the monitor to quit", lambda: self.pane("#{pane_dead}") == "1")
        screen = self.screen().strip()
        status = re.search(r"Pane is dead \(status (\d+)", screen)
        if "smtptop:" in screen or (status and status[1] != "0"):
            raise RuntimeError(f"the monitor failed: {screen}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=STEP_TIMEOUT)


def monitor(*options: str) -> Measure:
    def measure_monitor(lab: Lab, pcap: Capture, rate: int, seconds: float) -> Measured:
        return measure_tui(lab, pcap, rate, seconds, options)

    return measure_monitor


def measure_tui(
    lab: Lab, pcap: Capture, rate: int, seconds: float, options: tuple[str, ...]
) -> Measured:
    monitor = Monitor(lab, pcap.path.parent, options)
    try:
        monitor.start()
        until("the monitor to show", lambda: "interface" in monitor.status())
        until("the monitor to drop root", lambda: dropped_root(monitor.pid))
        idle = [monitor.key_ms() for _ in range(IDLE_KEYS)]
        links = lab.link_drops()
        keys: list[float] = []
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(replay, lab, pcap, rate, seconds)
            deadline = time.monotonic() + seconds * 5 + STEP_TIMEOUT
            while not sending.done() and time.monotonic() < deadline:
                keys += (monitor.key_ms(), monitor.key_ms())  # pause, resume
                wait_for([sending], timeout=KEY_EVERY)
            sent = sending.result()
        drain(monitor.pid)
        packets, kernel, queue = monitor.settled()
        cpu = cpu_seconds(monitor.pid)
        monitor.quit()
    finally:
        monitor.close()
    return Measured(sent, packets, kernel, lab.link_drops() - links, cpu, queue, keys, idle)


# -- the search ----------------------------------------------------------------------------------


Measure = Callable[[Lab, Capture, int, float], Measured]
Probe = Callable[[int], Measured]


def prober(name: str, measure_one: Measure, lab: Lab, pcap: Capture, seconds: float) -> Probe:
    """One capture at a given rate, logged as it ends (a search takes minutes)."""

    def probe(rate: int) -> Measured:
        measured = measure_one(lab, pcap, rate, seconds)
        print(f"{name:>16} {rate:>7,} pkt/s: {measured}", file=sys.stderr)
        return measured

    return probe


def measure(rates: list[int] | None, probe: Probe) -> list[tuple[int, Measured]]:
    """The given rates, or a search for the lossless ceiling: doubling or halving from
    START_RATE until a lossless and a lossy rate bracket it, then geometric bisection to
    within PRECISION; BRACKET_PROBES + BISECT_PROBES probes at most."""
    if rates is not None:
        return [(rate, probe(rate)) for rate in rates]
    done: list[tuple[int, Measured]] = []

    def lossless(rate: int) -> bool:
        done.append((rate, probe(rate)))
        return done[-1][1].lossless

    low = high = None
    rate = START_RATE
    for _ in range(BRACKET_PROBES):
        if not MIN_RATE <= rate <= MAX_RATE:
            break
        if lossless(rate):
            low = rate
            if done[-1][1].sent.pps < rate * SENDER_SHORT:  # no point asking for more
                break
        else:
            high = rate
        if low is not None and high is not None:
            break
        rate = rate * 2 if high is None else rate // 2
    for _ in range(BISECT_PROBES):
        if low is None or high is None or high / low <= PRECISION:
            break
        middle = int(round(math.sqrt(low * high), -2))
        if lossless(middle):
            low = middle
        else:
            high = middle
    return done


@dataclass
class Ceiling:
    """The highest rate that was lossless with every lower rate tried (0: none was) and the
    lowest lossy rate above it (None: none, so the ceiling is only a lower bound)."""

    rate: int
    lossy: int | None
    achieved: float  # what tcpreplay sent at ``rate``

    @classmethod
    def of(cls, probes: list[tuple[int, Measured]]) -> Ceiling:
        ordered = sorted(probes, key=lambda probe: probe[0])
        best, achieved = 0, 0.0
        for rate, m in ordered:
            if not m.lossless:
                return cls(best, rate, achieved)
            best, achieved = rate, m.sent.pps
        return cls(best, None, achieved)

    @property
    def pps(self) -> float:
        """The ceiling in packets actually sent per second, when tcpreplay fell short."""
        return (
            min(self.rate, self.achieved) if self.achieved < self.rate * SENDER_SHORT else self.rate
        )

    def __str__(self) -> str:
        if not self.rate:
            return f"below {self.lossy:,} pkt/s (lossy at every rate tried)"
        text = f"{self.rate:,} pkt/s"
        if self.achieved < self.rate * SENDER_SHORT:
            text += f" (tcpreplay reached {self.achieved:,.0f})"
        if self.lossy is None:
            return f"≥ {text}: lossless at every rate tried"
        return f"{text} (lossy at {self.lossy:,})"


def ratio(ours: Ceiling, ref: Ceiling) -> str:
    """smtptop's ceiling over tcpdump's, against GOAL_RATIO, with the direction a lower
    bound on either side leaves open."""
    if not ref.rate:
        return "no ratio: tcpdump lost packets at every rate tried"
    value = ours.pps / ref.pps
    if ref.lossy is None and ours.lossy is None:
        return f"{value:.2f}, both only lower bounds: undetermined (try higher rates)"
    if ref.lossy is None:  # tcpdump's could be higher: the ratio could be lower
        met = "not met" if value < GOAL_RATIO else "undetermined (tcpdump's is a lower bound)"
        return f"≤ {value:.2f} against the {GOAL_RATIO} goal: {met}"
    if ours.lossy is None:
        met = "met" if value >= GOAL_RATIO else "undetermined (smtptop's is a lower bound)"
        return f"≥ {value:.2f} against the {GOAL_RATIO} goal: {met}"
    met = "met" if value >= GOAL_RATIO else "not met"
    return f"{value:.2f} against the {GOAL_RATIO} goal: {met}"


def plain_ratio(ours: Ceiling, ref: Ceiling) -> str:
    """One ceiling over another, saying where either is only a lower bound."""
    if not ref.rate or not ours.rate:
        return "no ratio: one of them lost packets at every rate tried"
    value = ours.pps / ref.pps
    if ours.lossy is None or ref.lossy is None:
        return f"{value:.2f} (a lower bound on one side: try higher rates)"
    return f"{value:.2f}"


# -- the table -------------------------------------------------------------------------------


def table(runs: list[tuple[str, list[tuple[int, Measured]]]]) -> list[str]:
    lines = [
        "| capture | target pkt/s | sent (achieved pkt/s) | received | kernel drops "
        "| queue drops | veth drops | CPU s | key → screen ms: max / median (n), idle | lossless |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, probes in runs:
        for rate, m in sorted(probes, key=lambda probe: probe[0]):
            queue = f"{m.queue_drops:,}" if name.startswith(TUI) else "-"
            keys = "-"
            if m.keys_ms:
                keys = f"{max(m.keys_ms):.0f} / {statistics.median(m.keys_ms):.0f} "
                keys += f"({len(m.keys_ms)}), {statistics.median(m.idle_ms):.0f}"
            lines.append(
                f"| {name} | {rate:,} | {m.sent.packets:,} ({m.sent.pps:,.0f}) "
                f"| {m.received:,} | {m.kernel_drops:,} | {queue} | {m.link_drops:,} "
                f"| {m.cpu_seconds:.1f} | {keys} | {'yes' if m.lossless else 'no'} |"
            )
    return lines


def responsiveness(probes: list[tuple[int, Measured]]) -> str:
    """The TUI goal: at START_RATE, the longest key-to-screen time against STALL_GOAL_MS."""
    at = [m for rate, m in probes if rate == START_RATE and m.keys_ms]
    if not at:
        return f"not measured at {START_RATE:,} pkt/s"
    longest = max(max(m.keys_ms) for m in at)
    met = "met" if longest <= STALL_GOAL_MS else "not met"
    lossless = "lossless" if all(m.lossless for m in at) else "not lossless"
    return (
        f"at {START_RATE:,} pkt/s the monitor was {lossless}; longest key press to screen "
        f"{longest:.0f} ms against the {STALL_GOAL_MS:.0f} ms goal: {met}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates", help="packets per second, comma-separated (default: search for the ceiling)"
    )
    parser.add_argument("--seconds", type=float, default=SECONDS, help="sending time per rate")
    parser.add_argument(
        "--workers", default="0,1,2", help="headless --workers counts to measure (default 0,1,2)"
    )
    parser.add_argument("--tui", action="store_true", help="only the monitor (smtptop -i)")
    parser.add_argument("--output", type=Path, help="markdown file to write (default: "
                        "bench/results/live_capture.md, with --tui live_tui.md)")  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("live_capture: needs root (network namespaces, packet capture)")
    rates = sorted(int(r) for r in args.rates.split(",")) if args.rates else None
    for name in ("ip", "tcpdump", "tcpreplay", "tmux"):
        tool(name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("live_capture: terminated"))  # cleanup
    workers = [int(w) for w in args.workers.split(",")]
    output = args.output or (RESULTS_TUI if args.tui else RESULTS)
    captures: list[tuple[str, Measure]] = [
        (TUI, monitor()),
        (TUI_NO_BUFFER, monitor("--evidence-buffer", "0")),
    ]
    if not args.tui:
        captures[:0] = [
            *((f"headless --workers {w}", headless(w)) for w in workers),
            ("tcpdump", measure_tcpdump),
        ]
    started = time.monotonic()
    runs: list[tuple[str, list[tuple[int, Measured]]]] = []
    with tempfile.TemporaryDirectory(prefix="smtptop-bench-") as tmp, Lab() as lab:
        needed = int(max(rates or [MAX_RATE]) * args.seconds)
        pcap = Capture(Path(tmp) / "smtp.pcap", 0, 0)
        pcap.frames, pcap.sessions = generate(pcap.path, min(needed, PCAP_PACKETS))
        print(f"generated {pcap.frames:,} packets, {pcap.sessions:,} sessions", file=sys.stderr)
        for name, measure_one in captures:
            probe = prober(name, measure_one, lab, pcap, args.seconds)
            runs.append((name, measure(rates, probe)))
    ceilings = {name: Ceiling.of(probes) for name, probes in runs}
    found = "within 10 %" if rates is None else "among the rates given"
    summary = [f"* {name}: {ceilings[name]}" for name, _ in runs]
    if not args.tui:
        for w in workers:
            ours, ref = ceilings[f"headless --workers {w}"], ceilings["tcpdump"]
            summary.append(f"* headless --workers {w} / tcpdump: {ratio(ours, ref)}")
    summary.append(f"* TUI goal: {responsiveness(dict(runs)[TUI])}")
    buffered = plain_ratio(ceilings[TUI], ceilings[TUI_NO_BUFFER])
    summary.append(f"* TUI with its evidence buffer (the default) / without: {buffered}")
    shown = ["python", "bench/live_capture.py", "--seconds", f"{args.seconds:g}"]
    shown += ["--rates", ",".join(map(str, rates))] if rates else []
    shown += ["--tui"] if args.tui else ["--workers", args.workers]
    heading = "by the monitor, with and without its evidence buffer" if args.tui else "throughput"
    text = [
        f"# Live capture {heading}",
        "",
        f"`{shlex.join(shown)}` on {platform.node()} ({os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, smtptop {revision()} ({build()}), "
        f"{time.monotonic() - started:.0f} s.",
        "",
        f"{pcap.frames:,} packets of {pcap.sessions:,} synthetic SMTP sessions "
        "(tests/synth.py), replayed through a veth pair between two namespaces for "
        f"{args.seconds:g} s per rate (looped, each loop on new addresses, when a rate needs "
        "more).",
        "",
        *table(runs),
        "",
        f"Lossless ceilings ({found}; lossless: every packet sent received, no drop):",
        "",
        *summary,
        "",
        "Commands (in the receiving and the sending namespace; `.` is the checkout):",
        "",
        f"    {shlex.join(smtptop_command(workers[-1])).replace(str(REPO), '.')}",
        f"    {shlex.join([*tcpdump_command(), TCPDUMP_FILTER])}",
        f"    tmux new-session -d -x {TUI_SIZE[0]} -y {TUI_SIZE[1]} "
        f"{shlex.quote(shlex.join(['exec', *monitor_command()]).replace(str(REPO), '.'))}"
        " (and with --evidence-buffer 0)",
        f"    {replay_command(args.seconds)}",
        "",
        "*received*: `stats.packets` of the JSON report, tcpdump's captured count, or the "
        "monitor's packet count (status bar); *kernel drops*: the report's warning "
        "(PACKET_STATISTICS), tcpdump's count, or the monitor's `+N kernel`; *queue drops*: "
        "events the monitor's capture thread dropped because the UI was behind (its "
        "`drops N`; the headless report has no such queue); *veth drops*: frames the veth "
        "pair dropped before any capture; *CPU s*: user and system time of the capturing "
        "process and its engine processes, start-up included; *key → screen*: from "
        "`tmux send-keys p` until the status bar shows the pause toggled (polled every few "
        "ms), max / median (count) over the run, and the median of a few presses before it "
        "(idle: the floor that Textual's rendering, tmux and the polling add): an upper "
        "bound on the event loop's stall, which bench/tui_redraw.py measures on a synthetic "
        "source.",
    ]
    print("\n".join(text))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(text) + "\n")


def revision() -> str:
    """The commit measured, marked when the work tree differs from it."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "(not a git checkout)"


def build() -> str:
    """Which build of smtptop the checkout runs: the compiled one when an editable install
    left its modules beside the sources (``--version`` says the same)."""
    done = subprocess.run(
        [sys.executable, "-c", "import smtptop; print(smtptop.build())"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return done.stdout.strip()


def replay_command(seconds: float) -> str:
    shown = ["tcpreplay", "-i", TX, "-K", "--pps", "RATE", "--limit", f"RATE*{seconds:g}"]
    return f"{shlex.join(shown)} [--loop N --unique-ip] smtp.pcap"


if __name__ == "__main__":
    main()
