"""Bounded memory: peak and long-run RSS of the engine over a million SMTP sessions.

Streams ``--sessions`` SMTP sessions from ``--clients`` LAN hosts to ``--servers`` mail
servers through the real engine, as ``smtptop report`` does: :meth:`Analyzer.packet` on
Ethernet/IPv4/TCP frames built with ``struct`` in memory (no file), :func:`apply` into a
:class:`Model` with the :class:`Detector` attached, and a detector evaluation every sample,
as the monitor would.  The mix is mostly short sessions: greeting refused with 554, RCPT
refused with 550, greylisted with 450, a few messages accepted with small bodies, and some
sessions that end without QUIT.

VmRSS (/proc/self/status) is sampled every ``--sample-every`` sessions; the run executes
itself under ``/usr/bin/time -v`` (Debian package ``time``) for the peak.  At the end the
model's per-client sessions, rejected sessions and distinct destinations must equal what the
generator sent (the counts are exact whatever was evicted).

Usage::

    python bench/memory.py [--sessions 1000000] [--clients 5000] [--servers 50000]
    python bench/memory.py --smoke      # 20,000 sessions, small limits, bounds asserted

Prints a markdown report and writes it to bench/results/memory.md (not in ``--smoke``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from smtptop.analyzer import Analyzer  # noqa: E402
from smtptop.detect import Detector  # noqa: E402
from smtptop.model import Model, ModelLimits, apply  # noqa: E402

RESULTS = REPO / "bench" / "results" / "memory.md"
PEAK_GOAL_MB = 300
FLATNESS_GOAL = 1.10
# Warm-up lasts while the bounded per-host tables (server rows, the detector's per-server
# counts) are still filling: until the rows held grow by less than this between samples.
FILLED_GROWTH = 0.01
APPLY_EVERY = 2048  # frames per batch, as report.analyze
SPACING = 0.01  # seconds between session starts: 100 sessions a second
SMOKE_LIMITS = ModelLimits(
    max_sessions=500,
    max_kept_bytes=1 << 20,
    max_servers_per_host=8,
    max_destination_bytes=1 << 20,
)
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ETHERNET = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
LINKTYPE_ETHERNET = 1

GREETING = b"220 mx.example.net ESMTP\r\n"
EHLO = [("C", b"EHLO pc.office.lan\r\n"), ("S", b"250-mx.example.net\r\n250 PIPELINING\r\n")]
MAIL = [("C", b"MAIL FROM:<invoice@office.example>\r\n"), ("S", b"250 2.1.0 ok\r\n")]
RCPT = ("C", b"RCPT TO:<someone@example.org>\r\n")
QUIT = [("C", b"QUIT\r\n"), ("S", b"221 2.0.0 bye\r\n")]
BODY = b"From: a@office.example\r\nSubject: invoice\r\n\r\n" + b"x" * 400 + b"\r\n.\r\n"
# (name, share, rejected, script of (side, payload)); the client closes after the script
MIX: tuple[tuple[str, float, bool, list[tuple[str, bytes]]], ...] = (
    (
        "greeting 554",
        0.35,
        True,
        [("S", b"554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org\r\n"),
         *QUIT],
    ),
    (
        "RCPT 550",
        0.25,
        True,
        [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"550 5.1.1 user unknown\r\n"), *QUIT],
    ),
    (
        "greylisted 450",
        0.20,
        False,
        [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"450 4.7.1 greylisted, try later\r\n"),
         *QUIT],
    ),
    (
        "accepted",
        0.10,
        False,
        [("S", GREETING), *EHLO, *MAIL, RCPT, ("S", b"250 2.1.5 ok\r\n"), ("C", b"DATA\r\n"),
         ("S", b"354 go ahead\r\n"), ("C", BODY), ("S", b"250 2.0.0 queued as 4F2A\r\n"), *QUIT],
    ),
    ("no QUIT", 0.10, False, [("S", GREETING), *EHLO, *MAIL]),
)  # fmt: skip


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:  # fmt: skip
    """An Ethernet/IPv4/TCP frame (checksums left 0, as with checksum offload)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
    return ETHERNET + ip + tcp + payload


def session_frames(
    src: bytes, dst: bytes, sport: int, script: list[tuple[str, bytes]], ts: float
) -> Iterator[tuple[float, bytes]]:
    """One TCP connection: handshake, the script (each segment acknowledged by the next one
    of the other side), the client's FIN, the server's FIN, the last ACK."""
    cseq, sseq = 1000, 5000
    yield ts, frame(src, dst, sport, 25, cseq, 0, SYN)
    yield ts + 0.001, frame(dst, src, 25, sport, sseq, cseq + 1, SYN | ACK)
    cseq, sseq = cseq + 1, sseq + 1
    yield ts + 0.002, frame(src, dst, sport, 25, cseq, sseq, ACK)
    step = 0.003
    for side, payload in script:
        if side == "C":
            yield ts + step, frame(src, dst, sport, 25, cseq, sseq, PSH | ACK, payload)
            cseq += len(payload)
        else:
            yield ts + step, frame(dst, src, 25, sport, sseq, cseq, PSH | ACK, payload)
            sseq += len(payload)
        step += 0.001
    yield ts + step, frame(src, dst, sport, 25, cseq, sseq, FIN | ACK)
    yield ts + step + 0.001, frame(dst, src, 25, sport, sseq, cseq + 1, FIN | ACK)
    yield ts + step + 0.002, frame(src, dst, sport, 25, cseq + 1, sseq + 1, ACK)


@dataclass(slots=True)
class Sent:
    """What the generator sent, per client: sessions, rejected sessions, the server index
    of each client's next session (distinct destinations follow from it)."""

    sessions: array = field(default_factory=lambda: array("I"))
    rejected: array = field(default_factory=lambda: array("I"))
    kinds: dict[str, int] = field(default_factory=dict)


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


@dataclass(slots=True)
class Run:
    samples: list[tuple[int, float, int]] = field(default_factory=list)  # sessions, MiB, rows
    seconds: float = 0.0
    packets: int = 0
    model: Model | None = None


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(
    sessions: int,
    clients: int,
    servers: int,
    *,
    limits: ModelLimits | None = None,
    sample_every: int = 100_000,
    seed: int = 6,
    check: Callable[[Model, Detector], None] | None = None,
) -> tuple[Run, Sent]:
    """Stream the sessions through the engine; sample RSS, evaluate, call ``check``."""
    rng = random.Random(seed)
    analyzer = Analyzer()
    model = Model(limits=limits)
    detector = Detector(model)
    sent = Sent(array("I", bytes(4 * clients)), array("I", bytes(4 * clients)))
    cumulative, acc = [], 0.0
    for _, share, _, _ in MIX:
        acc += share
        cumulative.append(acc)
    client_addresses = [bytes(map(int, client_ip(c).split("."))) for c in range(clients)]
    result = Run(model=model)
    began = time.monotonic()
    packet, pending = analyzer.packet, 0
    for number in range(sessions):
        client = rng.randrange(clients)
        draw = rng.random()
        kind = next((i for i, edge in enumerate(cumulative) if draw < edge), len(MIX) - 1)
        name, _, rejected, script = MIX[kind]
        nth = sent.sessions[client]
        sent.sessions[client] = nth + 1
        sent.rejected[client] += rejected
        sent.kinds[name] = sent.kinds.get(name, 0) + 1
        server = server_ip(server_of(client, nth, servers))
        dst = bytes(map(int, server.split(".")))
        sport = 1024 + number % 60000
        for ts, data in session_frames(
            client_addresses[client], dst, sport, script, number * SPACING
        ):
            packet(ts, LINKTYPE_ETHERNET, data)
            pending += 1
        if pending >= APPLY_EVERY:
            apply(model, analyzer.take())
            pending = 0
        if (number + 1) % sample_every == 0:
            apply(model, analyzer.take())
            detector.evaluate()
            if check is not None:
                check(model, detector)
            rows = sum(len(host.servers) for host in model.hosts.values())
            result.samples.append((number + 1, rss_mib(), rows))
    analyzer.finish()
    apply(model, analyzer.take())
    detector.evaluate()
    if check is not None:
        check(model, detector)
    result.seconds = time.monotonic() - began
    result.packets = analyzer.stats.packets
    return result, sent


def check_bounds(model: Model, _: Detector) -> None:
    """The budgets hold and every session is accounted for."""
    limits = model.limits
    assert len(model.finished) <= limits.max_sessions
    assert model.kept_bytes <= limits.max_kept_bytes
    assert model.kept_bytes == sum(s.footprint() for s in model.finished.values())
    finished = model.sessions_total - len(model.open)
    assert len(model.finished) + model.sessions_not_kept == finished
    assert model.destination_bytes <= limits.max_destination_bytes
    kept = evicted = 0
    for host in model.hosts.values():
        assert host.sessions_kept + host.sessions_not_kept + host.open_sessions == host.sessions
        assert len(host.servers) <= limits.max_servers_per_host
        assert sum(s.sessions for s in host.servers.values()) + host.servers_dropped == (
            host.sessions
        )
        kept += host.sessions_kept
        evicted += host.sessions_not_kept
    assert (kept, evicted) == (len(model.finished), model.sessions_not_kept)


def check_exact(model: Model, sent: Sent, servers: int) -> None:
    """Per-client figures equal what was sent, whatever the model evicted."""
    assert model.sessions_total == sum(sent.sessions)
    for client, count in enumerate(sent.sessions):
        if not count:
            continue
        host = model.hosts[client_ip(client)]
        assert host.sessions == count, (client, host.sessions, count)
        assert host.rejected_sessions == sent.rejected[client], client
        assert host.destinations_uncounted == 0
        assert host.destinations == distinct_servers(count, servers), client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--servers", type=int, default=50_000)
    parser.add_argument("--sample-every", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="20,000 sessions, small limits")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        smoke()
        print("smoke: bounds held, aggregates exact")
        return 0
    if args.child:
        result, sent = run(
            args.sessions, args.clients, args.servers, sample_every=args.sample_every
        )
        assert result.model is not None
        check_exact(result.model, sent, args.servers)
        check_bounds(result.model, None)  # type: ignore[arg-type]
        model = result.model
        print(
            json.dumps(
                {
                    "samples": result.samples,
                    "seconds": result.seconds,
                    "packets": result.packets,
                    "kinds": sent.kinds,
                    "kept": len(model.finished),
                    "kept_bytes": model.kept_bytes,
                    "evicted": model.sessions_not_kept,
                    "hosts": len(model.hosts),
                    "servers": len(model.servers),
                    "destination_bytes": model.destination_bytes,
                }
            )
        )
        return 0
    return parent(args)


def warm_up(samples: list[list[float]] | list[tuple[int, float, int]]) -> int:
    """The first sample after which the rows held stopped growing (the tables are full)."""
    for index in range(1, len(samples)):
        before, now = samples[index - 1][2], samples[index][2]
        if now <= before * (1 + FILLED_GROWTH):
            return index - 1
    return len(samples) - 1


def smoke(sessions: int = 20_000) -> tuple[Run, Sent]:
    """A short run with small limits that asserts the bounds at every sample and the exact
    per-client figures at the end."""
    servers = 5000
    result, sent = run(
        sessions, 200, servers, limits=SMOKE_LIMITS, sample_every=2000, check=check_bounds
    )
    assert result.model is not None
    check_exact(result.model, sent, servers)
    assert result.model.sessions_not_kept > 0
    return result, sent


def parent(args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        __file__,
        "--child",
        f"--sessions={args.sessions}",
        f"--clients={args.clients}",
        f"--servers={args.servers}",
        f"--sample-every={args.sample_every}",
    ]
    shown = (
        f"python bench/memory.py --sessions {args.sessions} --clients {args.clients} "
        f"--servers {args.servers}"
    )
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        return done.returncode
    data = json.loads(done.stdout)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    peak = int(found.group(1)) / 1024 if found else float("nan")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", done.stderr)
    samples = data["samples"]
    warmup = warm_up(samples)
    judged = [rss for _, rss, _ in samples[warmup:]]
    flatness = max(judged) / min(judged) if judged else float("nan")
    fixed = [rss for _, rss, _ in samples[3:]]
    from_third = max(fixed) / min(fixed) if fixed else float("nan")
    lines = [
        "# Memory over a long run",
        "",
        f"Command: `{shown}` (runs itself under `/usr/bin/time -v`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}",
        "",
        f"Mix: {', '.join(f'{n} {k}' for k, n in data['kinds'].items())}; "
        f"{data['packets']} packets in {data['seconds']:.0f} s "
        f"({data['packets'] / data['seconds']:.0f} packets/s; "
        f"wall {wall.group(1) if wall else '?'} with the checks)",
        "",
        "| sessions | VmRSS MiB | server rows held |",
        "| ---: | ---: | ---: |",
        *(f"| {n:,} | {rss:.1f} | {rows:,} |" for n, rss, rows in samples),
        "",
        f"* peak RSS (`Maximum resident set size`): **{peak:.1f} MiB** "
        f"(goal <= {PEAK_GOAL_MB} MB): {'met' if peak <= PEAK_GOAL_MB else 'NOT met'}",
        f"* flatness, max/min of the samples once the per-host tables are full (from "
        f"{samples[warmup][0]:,} sessions, when the rows held grew less than "
        f"{FILLED_GROWTH:.0%}): **{flatness:.3f}** (goal <= {FLATNESS_GOAL}): "
        f"{'met' if flatness <= FLATNESS_GOAL else 'NOT met'}",
        f"* the same from the fourth sample on, full or not: **{from_third:.3f}**",
        f"* at the end: {data['kept']:,} sessions kept in full ({data['kept_bytes'] / 2**20:.1f} "
        f"MiB by Session.footprint), {data['evicted']:,} summarised; {data['hosts']:,} hosts, "
        f"{data['servers']:,} servers, destinations {data['destination_bytes'] / 2**20:.1f} MiB",
        "* per-client sessions, rejected sessions and distinct destinations equal what was "
        "sent: checked",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(f"written to {RESULTS.relative_to(REPO)}; child: {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
