"""Hostile captures of issue 12, timed through ``smtptop report`` next to an in-order twin.

Each capture is one SMTP connection that abuses one resource class:

* ``in-order``: the baseline, ``--packets`` 100-byte segments of a message body, in order,
  the server ACKing every other one;
* ``holes``: the same segments, each after a one-byte hole that never fills (the server's
  duplicate ACKs name the hole), so the out-of-order store stays full all along;
* ``lf-flood``: ``--lf-mb`` megabytes of bare line feeds from the client in 65,000-byte
  segments, then as many from the server.

Every capture is timed as ``smtptop report --json FILE -o /dev/null`` (wall seconds, the
median of ``--runs``), with the interpreter given by ``--python`` and the code of the
checkout given by ``--tree`` (this one by default, so that an older tree can be timed
against it).

Usage::

    python bench/hostile.py [--packets 100000] [--lf-mb 30] [--runs 3] [--keep DIR]
    python bench/hostile.py --smoke      # small captures, one run each
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synth, the tests' capture builder

import synth  # noqa: E402

from smtptop.decode import ACK  # noqa: E402

CLIENT, SERVER = ("192.168.1.66", 50000), ("198.51.100.25", 25)
ISN_CLIENT, ISN_SERVER = 0xFFFF0000, 1000  # the client's sequence numbers wrap early on
START = 1_800_000_000.0
SEGMENT = 100
PSH = 0x08
LF_SEGMENT = 65_000
OPENING = [
    ("S", b"220 mx.example.net ESMTP\r\n"),
    ("C", b"EHLO pc.office.lan\r\n"),
    ("S", b"250 mx.example.net\r\n"),
    ("C", b"MAIL FROM:<a@office.example>\r\n"),
    ("S", b"250 ok\r\n"),
    ("C", b"RCPT TO:<b@example.org>\r\n"),
    ("S", b"250 ok\r\n"),
    ("C", b"DATA\r\n"),
    ("S", b"354 go on\r\n"),
]


def _opening(script: list[tuple[str, bytes]]) -> tuple[synth.Conversation, int, int]:
    """A handshake and ``script``; the next sequence numbers of client and server."""
    conv = synth.Conversation(*CLIENT, *SERVER, start=START, client_isn=ISN_CLIENT,
                              server_isn=ISN_SERVER)  # fmt: skip
    conv.smtp(script)
    sent = len(conv.stream("C")), len(conv.stream("S"))
    return conv, (ISN_CLIENT + 1 + sent[0]) % (1 << 32), (ISN_SERVER + 1 + sent[1]) % (1 << 32)


def _frame(ts: float, src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int,
           payload: bytes = b"") -> synth.Frame:  # fmt: skip
    packet = synth.tcp_packet(*src[:1], *dst[:1], src[1], dst[1], seq=seq % (1 << 32),
                              ack=ack % (1 << 32), flags=ACK | PSH if payload else ACK,
                              payload=payload)  # fmt: skip
    return synth.Frame(ts, synth.link_frame(synth.LINKTYPE_ETHERNET, packet))


def body_segments(packets: int, holes: bool) -> Iterator[synth.Frame]:
    """The ``in-order`` or ``holes`` capture: ``packets`` body segments and the ACKs."""
    conv, seq, server_seq = _opening(OPENING)
    yield from conv.frames
    ts, first = conv.frames[-1].ts, seq
    line = b"x" * (SEGMENT - 2) + b"\r\n"
    for number in range(packets):
        ts += 0.0001
        yield _frame(ts, CLIENT, SERVER, seq + holes, server_seq, line)
        seq += SEGMENT + holes
        if number % 2:
            yield _frame(ts, SERVER, CLIENT, server_seq, first if holes else seq)


def lf_flood(megabytes: int) -> Iterator[synth.Frame]:
    """The ``lf-flood`` capture: line feeds from the client, then from the server."""
    conv, seq, server_seq = _opening(OPENING[:3])
    yield from conv.frames
    ts = conv.frames[-1].ts
    flood = b"\n" * LF_SEGMENT
    for side in (CLIENT, SERVER):
        for _ in range(megabytes * 1_000_000 // LF_SEGMENT):
            ts += 0.001
            if side == CLIENT:
                yield _frame(ts, CLIENT, SERVER, seq, server_seq, flood)
                seq += LF_SEGMENT
            else:
                yield _frame(ts, SERVER, CLIENT, server_seq, seq, flood)
                server_seq += LF_SEGMENT


def write(folder: Path, packets: int, lf_mb: int) -> dict[str, Path]:
    captures = {
        "in-order": body_segments(packets, holes=False),
        "holes": body_segments(packets, holes=True),
        "lf-flood": lf_flood(lf_mb),
    }
    paths = {}
    for name, frames in captures.items():
        paths[name] = folder / f"{name}.pcap"
        synth.write_pcap(paths[name], frames, synth.LINKTYPE_ETHERNET)
    return paths


# Runs smtptop's CLI from the tree in argv[1], past an editable install's import hook.
RUN_TREE = (
    "import sys; tree = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
    "sys.path.insert(0, tree); from smtptop.cli import main; sys.exit(main())"
)


def time_report(python: str, tree: Path, path: Path) -> float:
    command = [python, "-c", RUN_TREE, str(tree), "report", "--json", str(path), "-o", "/dev/null"]
    began = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--lf-mb", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout to time")
    parser.add_argument("--keep", type=Path, help="write the captures here and keep them")
    parser.add_argument("--smoke", action="store_true", help="small captures, one run each")
    args = parser.parse_args(argv)
    if args.smoke:
        args.packets, args.lf_mb, args.runs = 2000, 1, 1
    with tempfile.TemporaryDirectory(prefix="smtptop-hostile-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        paths = write(folder, args.packets, args.lf_mb)
        print("| capture | size MB | median wall s | runs |\n|---|---:|---:|---|")
        for name, path in paths.items():
            runs = [time_report(args.python, args.tree, path) for _ in range(args.runs)]
            size = path.stat().st_size / 1e6
            shown = ", ".join(f"{r:.2f}" for r in runs)
            print(f"| {name} | {size:.1f} | {statistics.median(runs):.2f} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
