"""Bounded memory: the peak RSS of ``smtptop report --json`` over a million SMTP sessions.

Measures the command a user types, not an internal path: the whole process tree of
``smtptop report --json FILE -o OUT`` (the report and, with two CPUs, the engine it forks).
The capture is generated first (750 MiB, 10 s for a million sessions): ``--sessions``
sessions from ``--clients`` LAN hosts to ``--servers`` mail servers, one started every
millisecond, so that some 60,000 closed connections wait out their 60 s linger at any
time.  ``--refused`` of them are refused at the greeting with 554, as a spambot's are; the
rest get through to RCPT refused with 550, greylisting with 450, an accepted message, or end
without QUIT.

The command runs under ``/usr/bin/time -v`` (Debian package ``time``), whose "Maximum
resident set size" is the largest of the tree's processes only.  So the tree is also watched
through /proc every ``--interval`` seconds: the processes below ``time`` (found through
``/proc/PID/task/*/children``), each one's VmRSS and VmHWM (its own peak, as last read).
Two figures result: the largest sum of VmRSS seen at once (the tree's peak, sampled), and
the sum of every process's VmHWM, an upper bound of the tree's peak (the processes may peak
at different times, and the pages a forked child shares with its parent count twice).  The
goal is judged on the upper bound.  At the end each client's sessions, rejected sessions
and distinct destinations in the JSON must equal what the generator sent.

Usage::

    python bench/memory.py [--sessions 1000000] [--clients 5000] [--servers 50000]
    python bench/memory.py --source /tmp/mem-base --no-write   # the smtptop there (a worktree)

Prints a markdown report and writes it to bench/results/memory.md (not with ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import struct
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "memory.md"
PEAK_GOAL_MB = 300  # decimal megabytes: 286.1 MiB
SPACING_US = 1000  # between session starts: 1,000 sessions a second
STEP_US = 20  # between the packets of a session, so that sessions do not overlap
START_US = 1_790_000_000 * 1_000_000
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ETHERNET = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet

GREETING = b"220 mx.example.net ESMTP\r\n"
EHLO = [("C", b"EHLO pc.office.lan\r\n"), ("S", b"250-mx.example.net\r\n250 PIPELINING\r\n")]
MAIL = [("C", b"MAIL FROM:<invoice@office.example>\r\n"), ("S", b"250 2.1.0 ok\r\n")]
RCPT = ("C", b"RCPT TO:<someone@example.org>\r\n")
QUIT = [("C", b"QUIT\r\n"), ("S", b"221 2.0.0 bye\r\n")]
BODY = b"From: a@office.example\r\nSubject: invoice\r\n\r\n" + b"x" * 400 + b"\r\n.\r\n"
REFUSED = "greeting 554"
# (name, share of the sessions not refused at the greeting, rejected, script of (side,
# payload)); the client closes after the script
OTHERS: tuple[tuple[str, float, bool, list[tuple[str, bytes]]], ...] = (
    ("RCPT 550", 0.3, True,
     [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"550 5.1.1 user unknown\r\n"), *QUIT]),
    ("greylisted 450", 0.3, False,
     [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"450 4.7.1 greylisted, try later\r\n"),
      *QUIT]),
    ("accepted", 0.2, False,
     [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"250 2.1.5 ok\r\n"), ("C", b"DATA\r\n"),
      ("S", b"354 go ahead\r\n"), ("C", BODY), ("S", b"250 2.0.0 queued as 4F2A\r\n"), *QUIT]),
    ("no QUIT", 0.2, False, [("S", GREETING), *EHLO, *MAIL]),
)  # fmt: skip
REFUSAL = [
    ("S", b"554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org\r\n"),
    *QUIT,
]


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:  # fmt: skip
    """An Ethernet/IPv4/TCP frame (checksums left 0, as with checksum offload)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    return ETHERNET + ip + tcp + payload


def session_frames(src: bytes, dst: bytes, sport: int, script: list[tuple[str, bytes]]
                   ) -> Iterator[bytes]:  # fmt: skip
    """One TCP connection: handshake, the script (each segment acknowledged by the next one
    of the other side), the client's FIN, the server's FIN, the last ACK."""
    cseq, sseq = 1000, 5000
    yield frame(src, dst, sport, 25, cseq, 0, SYN)
    yield frame(dst, src, 25, sport, sseq, cseq + 1, SYN | ACK)
    cseq, sseq = cseq + 1, sseq + 1
    yield frame(src, dst, sport, 25, cseq, sseq, ACK)
    for side, payload in script:
        if side == "C":
            yield frame(src, dst, sport, 25, cseq, sseq, PSH | ACK, payload)
            cseq += len(payload)
        else:
            yield frame(dst, src, 25, sport, sseq, cseq, PSH | ACK, payload)
            sseq += len(payload)
    yield frame(src, dst, sport, 25, cseq, sseq, FIN | ACK)
    yield frame(dst, src, 25, sport, sseq, cseq + 1, FIN | ACK)
    yield frame(src, dst, sport, 25, cseq + 1, sseq + 1, ACK)


@dataclass(slots=True)
class Sent:
    """What the generator sent, per client: sessions and rejected sessions (distinct
    destinations follow from the sessions, see ``distinct_servers``)."""

    sessions: array = field(default_factory=lambda: array("I"))
    rejected: array = field(default_factory=lambda: array("I"))
    kinds: dict[str, int] = field(default_factory=dict)
    packets: int = 0


def client_ip(number: int) -> str:
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def server_ip(number: int) -> str:
    number += 1 << 17  # 198.18.0.0/15 and on: benchmarking space
    return f"198.{16 + (number >> 16)}.{number >> 8 & 255}.{number & 255}"


def server_of(client: int, nth: int, servers: int) -> int:
    """Every fifth session of a client goes to its previous server again."""
    return (client * 9973 + nth - nth // 5) % servers


def distinct_servers(sessions: int, servers: int) -> int:
    """How many servers ``server_of`` gives a client over its first ``sessions``."""
    if not sessions:
        return 0
    last = sessions - 1
    return min(last - last // 5 + 1, servers)


def pick(draw: float, refused: float) -> tuple[str, bool, list[tuple[str, bytes]]]:
    """The kind of session a draw in [0, 1) gives: name, rejected, script."""
    if draw < refused:
        return REFUSED, True, REFUSAL
    share = (draw - refused) / (1 - refused)
    for name, part, rejected, script in OTHERS[:-1]:
        if share < part:
            return name, rejected, script
        share -= part
    name, _, rejected, script = OTHERS[-1]
    return name, rejected, script


def generate(
    path: Path, sessions: int, clients: int, servers: int, *, refused: float, seed: int = 6
) -> Sent:
    """Write the capture (classic pcap, one session after the other) and say what it holds."""
    rng = random.Random(seed)
    sent = Sent(array("I", bytes(4 * clients)), array("I", bytes(4 * clients)))
    addresses = [bytes(map(int, client_ip(c).split("."))) for c in range(clients)]
    record = struct.Struct("<IIII").pack
    with path.open("wb") as out:
        out.write(PCAP_HEADER)
        for number in range(sessions):
            client = rng.randrange(clients)
            name, rejected, script = pick(rng.random(), refused)
            nth = sent.sessions[client]
            sent.sessions[client] = nth + 1
            sent.rejected[client] += rejected
            sent.kinds[name] = sent.kinds.get(name, 0) + 1
            dst = bytes(map(int, server_ip(server_of(client, nth, servers)).split(".")))
            sport = 1024 + number % 60000
            ts = START_US + number * SPACING_US
            chunks = []
            for data in session_frames(addresses[client], dst, sport, script):
                chunks.append(record(ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
                chunks.append(data)
                ts += STEP_US
            sent.packets += len(chunks) // 2
            out.write(b"".join(chunks))
    return sent


def check_exact(report: dict, sent: Sent, servers: int) -> None:
    """Per-client figures in the JSON equal what was sent."""
    hosts = {host["ip"]: host for host in report["hosts"]}
    assert report["stats"]["sessions"] == sum(sent.sessions)
    for client, count in enumerate(sent.sessions):
        if not count:
            continue
        host = hosts[client_ip(client)]
        assert host["sessions"] == count, (client, host["sessions"], count)
        assert host["rejected_sessions"] == sent.rejected[client], client
        assert host["destinations"] == distinct_servers(count, servers), client


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found += map(int, listing.read().split())
    except OSError:  # it ended
        pass
    return found


def _memory(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of a process in KiB; zeros once it ended."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


@dataclass(slots=True)
class Tree:
    """What the watcher saw of the process tree below ``/usr/bin/time``."""

    peak_kib: int = 0  # the largest sum of VmRSS at one sample
    hwm_kib: dict[int, int] = field(default_factory=dict)  # each process's VmHWM, last seen
    samples: int = 0

    def watch(self, root: int, interval: float, done: threading.Event) -> None:
        while not done.is_set():
            pending, total = _children(root), 0
            while pending:
                pid = pending.pop()
                pending += _children(pid)
                rss, hwm = _memory(pid)
                total += rss
                if hwm:
                    self.hwm_kib[pid] = max(hwm, self.hwm_kib.get(pid, 0))
            self.peak_kib = max(self.peak_kib, total)
            self.samples += 1
            done.wait(interval)


@dataclass(slots=True)
class Measured:
    tree_peak_mib: float  # sampled
    tree_bound_mib: float  # sum of the processes' own peaks
    largest_mib: float  # GNU time's Maximum resident set size
    processes: int
    wall: str
    smtptop: str  # where the package was imported from


def measure(
    capture: Path, out: Path, *, source: Path | None, interval: float, zeek: bool = False
) -> Measured:
    """Run ``smtptop report --json CAPTURE -o OUT`` (``--zeek CAPTURE`` for Zeek's logs)
    under ``/usr/bin/time -v`` and watch its process tree."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    where = subprocess.run(
        [sys.executable, "-c", "import smtptop; print(smtptop.__file__)"],
        env=env, capture_output=True, text=True, check=True, cwd=source or REPO,
    ).stdout.strip()  # fmt: skip
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "smtptop", "report", "--json",
               *(["--zeek"] if zeek else []), str(capture), "-o", str(out)]  # fmt: skip
    tree, done = Tree(), threading.Event()
    run = subprocess.Popen(command, env=env, cwd=source or REPO, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=tree.watch, args=(run.pid, interval, done))
    watcher.start()
    _, err = run.communicate()
    done.set()
    watcher.join()
    if run.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({run.returncode}):\n{err}")
    largest = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", err)
    return Measured(
        tree_peak_mib=tree.peak_kib / 1024,
        tree_bound_mib=sum(tree.hwm_kib.values()) / 1024,
        largest_mib=int(largest.group(1)) / 1024 if largest else float("nan"),
        processes=len(tree.hwm_kib),
        wall=wall.group(1) if wall else "?",
        smtptop=str(Path(where).parent),
    )


def machine() -> str:
    """The line that says where a benchmark ran."""
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )


def publish(report: str, results: Path, *, write: bool) -> None:
    """Print a benchmark's report, and write it to its results file."""
    print(report)
    if write:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(report)
        print(f"written to {results.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--servers", type=int, default=50_000)
    parser.add_argument("--refused", type=float, default=0.9, help="share refused at greeting")
    parser.add_argument("--capture", type=Path, help="where the capture goes (default: /tmp)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/out.json"))
    parser.add_argument("--source", type=Path, help="run the smtptop in this folder")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    capture = args.capture or Path(
        f"/tmp/smtptop-memory-{args.sessions}-{args.clients}-{args.servers}-{args.refused}.pcap"
    )
    began = time.monotonic()
    sent = generate(capture, args.sessions, args.clients, args.servers, refused=args.refused)
    generated = time.monotonic() - began
    measured = measure(capture.resolve(), args.out.resolve(), source=args.source,
                       interval=args.interval)  # fmt: skip
    check_exact(json.loads(args.out.read_text()), sent, args.servers)
    shown = f"smtptop report --json {capture} -o {args.out}"
    met = "met" if measured.tree_bound_mib * 2**20 <= PEAK_GOAL_MB * 10**6 else "NOT met"
    lines = [
        f"# Memory of `smtptop report` over {args.sessions:,} sessions",
        "",
        f"Command: `{shown}` under `/usr/bin/time -v`, smtptop from `{measured.smtptop}`; "
        f"capture from `python bench/memory.py --sessions {args.sessions} --clients "
        f"{args.clients} --servers {args.servers} --refused {args.refused}` "
        f"(generated in {generated:.0f} s)",
        "",
        machine(),
        "",
        f"Capture: {sent.packets:,} packets, {capture.stat().st_size / 2**20:,.0f} MiB; "
        f"{', '.join(f'{n:,} {k}' for k, n in sent.kinds.items())}; report wall {measured.wall}",
        "",
        f"* whole tree ({measured.processes} processes), sum of each one's peak (VmHWM): "
        f"**{measured.tree_bound_mib:.1f} MiB** (goal <= {PEAK_GOAL_MB} MB, "
        f"{PEAK_GOAL_MB * 10**6 / 2**20:.1f} MiB): {met}",
        f"* whole tree, largest sum of VmRSS seen at once (sampled every {args.interval} s): "
        f"{measured.tree_peak_mib:.1f} MiB",
        f"* largest single process (`/usr/bin/time -v` Maximum resident set size): "
        f"{measured.largest_mib:.1f} MiB",
        "* per-client sessions, rejected sessions and distinct destinations in the JSON equal "
        "what was sent: checked",
        "",
    ]
    publish("\n".join(lines), RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
