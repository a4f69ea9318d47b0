"""Live capture throughput: the packet rate up to which ``smtptop report -i`` loses nothing.

tcpreplay pushes a generated SMTP capture (built with :mod:`tests/synth.py`: sessions with
message bodies, some refused) through a veth pair between two network namespaces made for the
run, at rising rates, for a few seconds each.  At the other end ``smtptop report -i --json``
captures headless and analyses; tcpdump, writing to /dev/null with the same 16 MiB buffer and
an SMTP filter, is the reference.  Per rate: packets sent (tcpreplay's count), packets smtptop
analysed (``stats.packets``), its kernel drops (the report's warning, from PACKET_STATISTICS),
tcpdump's captured and dropped counts, and drops on the veth itself.  The lossless ceiling is
the highest rate at which a tool received everything that was sent.

A capture ends once the kernel's receive queue of its socket is empty (smtptop: ``Rmem`` of
/proc/PID/net/packet) or after a fixed settling time (tcpdump), then SIGINT; so what was sent
is either received or counted as dropped, never cut off by the end of the run.

Usage (root; iproute2, tcpdump, tcpreplay)::

    python bench/live_capture.py [--rates 10000,25000,50000,100000,150000] [--seconds 3]

Prints a markdown table and writes it to bench/results/live_capture.md.

Network safety: two namespaces made for the run, joined by one veth pair; neither has an
address, a route or forwarding, and IPv6 is off in both, so the replayed frames (addresses in
192.168.0.0/16 and 198.18.0.0/15, foreign MAC addresses) end at the capture and nothing can
leave.  Every step has a time limit; the namespaces and every process in them are removed on
exit, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synth, the tests' capture builder

from synth import LINKTYPE_ETHERNET, Conversation, Frame, write_pcap  # noqa: E402

RATES = (10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 100_000, 150_000)
SECONDS = 3.0
RESULTS = REPO / "bench" / "results" / "live_capture.md"
TX, RX = "bench-tx", "bench-rx"
BUFFER_KIB = 16384  # smtptop's receive buffer (smtptop.live.RECEIVE_BUFFER), for tcpdump -B
TCPDUMP_FILTER = "tcp port 25 or tcp port 465 or tcp port 587 or tcp port 2525"
STEP_TIMEOUT = 20.0
SETTLE = 1.5  # tcpdump: longer than libpcap's 1 s ring-block timeout, so no block is left
QUIET_POLLS = 3  # smtptop: its receive queue must read empty this many times in a row
POLL = 0.2
SEED = 20261128


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        sys.exit(f"live_capture: needs {name} (apt-get install iproute2 tcpdump tcpreplay)")
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
    cpu_seconds: float = 0.0


def replay(lab: Lab, pcap: Path, rate: int, seconds: float) -> tuple[list[str], Sent]:
    """tcpreplay at ``rate`` packets/s for ``seconds``: its command line and its counts."""
    command = [tool("tcpreplay"), "-i", TX, "-K", "--pps", str(rate)]
    command += ["--limit", str(int(rate * seconds)), str(pcap)]
    out = run(*lab.exec(lab.tx, *command), timeout=seconds * 5 + STEP_TIMEOUT)
    actual = re.search(r"Actual: (\d+) packets", out)
    rated = re.search(r"([\d.]+) pps", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    if not (actual and rated and failed):
        raise RuntimeError(f"cannot read tcpreplay's counts: {out}")
    return command, Sent(int(actual[1]), float(rated[1]), int(failed[1]))


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


def smtptop_command() -> list[str]:
    env = ("env", f"PYTHONPATH={REPO}")
    report = ("report", "-i", RX, "--duration", "3600", "--json", "--user", "nobody")
    return [*env, sys.executable, "-m", "smtptop", *report]


def receive_queue(pid: int) -> int:
    """Bytes waiting in the kernel for the process's packet socket (its netns' only one)."""
    rows = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
    return sum(int(row.split()[6]) for row in rows)


def measure_smtptop(lab: Lab, pcap: Path, rate: int, seconds: float) -> Measured:
    process = subprocess.Popen(
        lab.exec(lab.rx, *smtptop_command()), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        until("smtptop to open its socket and drop root", lambda: dropped_root(process))
        links = lab.link_drops()
        _, sent = replay(lab, pcap, rate, seconds)
        quiet = 0
        deadline = time.monotonic() + STEP_TIMEOUT * 3
        while quiet < QUIET_POLLS and time.monotonic() < deadline:
            quiet = quiet + 1 if receive_queue(process.pid) == 0 else 0
            time.sleep(POLL)
        cpu = cpu_seconds(process.pid)
        out, err = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STEP_TIMEOUT)
    if process.returncode != 0:
        raise RuntimeError(f"smtptop exited {process.returncode}: {err.decode()}")
    report = json.loads(out)
    drops = re.search(r"the kernel dropped (\d+) packets", err.decode())
    kernel_drops = int(drops[1]) if drops else 0
    return Measured(sent, report["stats"]["packets"], kernel_drops, lab.link_drops() - links, cpu)


def cpu_seconds(pid: int) -> float:
    """User and system time of a process so far (start-up included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dropped_root(process: subprocess.Popen[bytes]) -> bool:
    """smtptop runs as nobody once its socket and filter are in place."""
    if process.poll() is not None:
        raise RuntimeError(f"smtptop exited {process.returncode}: {process.stderr.read()!r}")
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return line.split()[1] != "0"
    return False


def tcpdump_command() -> list[str]:
    return [tool("tcpdump"), "-i", RX, "-n", "-B", str(BUFFER_KIB), "-w", "/dev/null"]


def measure_tcpdump(lab: Lab, pcap: Path, rate: int, seconds: float) -> Measured:
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
        _, sent = replay(lab, pcap, rate, seconds)
        time.sleep(SETTLE)
        _, rest = stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(STEP_TIMEOUT)
    text = (said + rest).decode()
    counts = {
        w: int(n) for n, w in re.findall(r"(\d+) packets? (captured|dropped by kernel)", text)
    }
    return Measured(sent, counts["captured"], counts["dropped by kernel"], lab.link_drops() - links)


# -- the table -------------------------------------------------------------------------------


def lossless(rows: list[tuple[int, Measured]]) -> str:
    """The highest rate up to which every packet sent was received, in every run."""
    ceiling = ""
    for rate, m in rows:
        if m.received != m.sent.packets or m.sent.failed:
            break
        ceiling = f"{rate:,} pkt/s"
    return ceiling or f"below {rows[0][0]:,} pkt/s"


def table(results: list[tuple[int, Measured, Measured]]) -> list[str]:
    lines = [
        "| target pkt/s | smtptop: sent (achieved pkt/s) | analysed | kernel drops | CPU s "
        "| tcpdump: sent (achieved pkt/s) | captured | kernel drops | veth drops |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, ours, ref in results:
        lines.append(
            f"| {rate:,} | {ours.sent.packets:,} ({ours.sent.pps:,.0f}) | {ours.received:,} "
            f"| {ours.kernel_drops:,} | {ours.cpu_seconds:.1f} "
            f"| {ref.sent.packets:,} ({ref.sent.pps:,.0f}) "
            f"| {ref.received:,} | {ref.kernel_drops:,} "
            f"| {ours.link_drops:,} / {ref.link_drops:,} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rates",
        default=",".join(map(str, RATES)),
        help="packets per second, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=SECONDS, help="sending time per rate")
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("live_capture: needs root (network namespaces, packet capture)")
    rates = sorted(int(r) for r in args.rates.split(","))
    for name in ("ip", "tcpdump", "tcpreplay"):
        tool(name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smtptop-bench-") as tmp, Lab() as lab:
        pcap = Path(tmp) / "smtp.pcap"
        frames, sessions = generate(pcap, int(max(rates) * args.seconds))
        print(f"generated {frames:,} packets, {sessions:,} SMTP sessions", file=sys.stderr)
        results = []
        for rate in rates:
            ours = measure_smtptop(lab, pcap, rate, args.seconds)
            ref = measure_tcpdump(lab, pcap, rate, args.seconds)
            print(f"{rate:>7,} pkt/s: smtptop {ours}\n{'':14} tcpdump {ref}", file=sys.stderr)
            results.append((rate, ours, ref))
        replay_line = replay_command(pcap, args.seconds)
    ours_rows = [(rate, ours) for rate, ours, _ in results]
    ref_rows = [(rate, ref) for rate, _, ref in results]
    text = [
        "# Live capture throughput",
        "",
        f"`python bench/live_capture.py --rates {','.join(map(str, rates))} "
        f"--seconds {args.seconds:g}` on {platform.node()} ({os.cpu_count()} CPUs, "
        f"Linux {platform.release()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, smtptop {revision()}, "
        f"{time.monotonic() - started:.0f} s.",
        "",
        f"{frames:,} packets of {sessions:,} synthetic SMTP sessions (tests/synth.py), "
        f"replayed through a veth pair between two namespaces for {args.seconds:g} s per rate.",
        "",
        *table(results),
        "",
        f"Lossless ceiling: smtptop {lossless(ours_rows)}; tcpdump {lossless(ref_rows)} "
        "(highest rate tried at which every packet sent was received).",
        "",
        "Commands (in the receiving and the sending namespace; `.` is the checkout):",
        "",
        f"    {shlex.join(smtptop_command()).replace(str(REPO), '.')}",
        f"    {shlex.join([*tcpdump_command(), TCPDUMP_FILTER])}",
        f"    {replay_line}",
        "",
        "*analysed*: `stats.packets` of the JSON report; *kernel drops*: the report's "
        "warning (PACKET_STATISTICS) or tcpdump's count; *CPU s*: smtptop's user and system "
        "time, start-up included; *veth drops*: frames the veth pair "
        "dropped before any capture (smtptop run / tcpdump run). The headless report reads "
        "the socket in its own loop: it has no queue between capture and analysis, so no "
        "queue drops (those are the TUI's).",
    ]
    print("\n".join(text))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(text) + "\n")


def revision() -> str:
    """The commit measured, marked when the work tree differs from it."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "(not a git checkout)"


def replay_command(pcap: Path, seconds: float) -> str:
    shown = ["tcpreplay", "-i", TX, "-K", "--pps", "RATE", "--limit", f"RATE*{seconds:g}"]
    return shlex.join([*shown, pcap.name])


if __name__ == "__main__":
    main()
