"""Command line: ``smtptop report`` (and, as they arrive, the monitor's own options)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources

from smtptop import __version__
from smtptop.analyzer import DEFAULT_PORTS
from smtptop.capture import CaptureError

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


def sample_path() -> str:
    """The bundled demo capture: an office with one spambot-infected PC."""
    return str(resources.files("smtptop") / "data" / "office.pcap")


def _ports(text: str) -> frozenset[int]:
    try:
        ports = frozenset(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of port numbers: {text!r}") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise argparse.ArgumentTypeError(f"ports must be 1-65535: {text!r}")
    return ports


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR network: {text!r}") from None


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < speed <= 1e6:
        raise argparse.ArgumentTypeError("speed must be above 0")
    return speed


def _engine_options() -> argparse.ArgumentParser:
    """Options shared by the monitor and the report."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ports",
        type=_ports,
        default=DEFAULT_PORTS,
        metavar="P,...",
        help="SMTP ports (default: 25,465,587,2525)",
    )
    common.add_argument(
        "--lan",
        type=_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="also count this network as LAN (repeatable)",
    )
    common.add_argument(
        "--show-credentials",
        action="store_true",
        help="show AUTH exchanges unmasked (off by default)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _engine_options()
    parser = argparse.ArgumentParser(
        prog="smtptop",
        description="Which LAN host talks SMTP to whom, and what the servers answered.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"smtptop {__version__}")
    parser.add_argument(
        "-r", dest="read", action="append", default=[], metavar="FILE",
        help="monitor a capture file (pcap/pcapng, .gz too); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--speed", type=_speed, metavar="X",
        help="replay with the captured timing at X times speed (default: as fast as possible)",
    )  # fmt: skip
    parser.add_argument(
        "--top", type=int, default=200, metavar="N", help="show the top N hosts (default 200)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="replay the bundled office capture in the monitor",
        description="Replay the bundled capture of an office with one spambot-infected PC.",
        parents=[common],
    )
    demo.add_argument(
        "--speed", type=_speed, default=10.0, metavar="X", help="replay speed (default 10x)"
    )
    report = commands.add_parser(
        "report",
        help="analyse capture files and print per-host SMTP facts",
        description="Analyse pcap/pcapng files (optionally .gz) and print per-host SMTP facts.",
        parents=[common],
    )
    report.add_argument("files", nargs="*", metavar="FILE", help="capture files, read in order")
    report.add_argument("--sample", action="store_true", help="analyse the bundled demo capture")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (see the README)")
    form.add_argument("--csv", action="store_true", help="print CSV, one row per host")
    report.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (atomically)"
    )
    return parser


def run_monitor(paths: list[str], args: argparse.Namespace, speed: float | None) -> int:
    from smtptop.analyzer import EngineConfig
    from smtptop.source import FileSource
    from smtptop.tui.app import MonitorApp

    try:
        source = FileSource(paths, speed=speed)
    except CaptureError as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    app = MonitorApp(
        source,
        config=EngineConfig(ports=args.ports),
        lan=args.lan,
        show_credentials=args.show_credentials,
        top=max(1, getattr(args, "top", 200)),
    )
    app.run()
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    from smtptop.report import analyze, render_csv, render_table, to_json

    paths = list(args.files) + ([sample_path()] if args.sample else [])
    if not paths:
        print("smtptop report: give capture files, or --sample", file=sys.stderr)
        return EXIT_USAGE
    try:
        analysis = analyze(
            paths, ports=args.ports, lan=args.lan, show_credentials=args.show_credentials
        )
    except CaptureError as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        text = json.dumps(to_json(analysis), indent=2, ensure_ascii=False) + "\n"
    elif args.csv:
        text = render_csv(analysis)
    else:
        text = render_table(analysis)
    if args.output:
        _write_atomically(args.output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    for warning in analysis.warnings:
        print(f"smtptop: warning: {warning}", file=sys.stderr)
    return EXIT_INPUT if analysis.warnings else EXIT_OK


def _write_atomically(path: str, text: str) -> None:
    """Write a temporary file beside ``path`` and rename it: all of the report or none."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".smtptop-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            return run_report(args)
        if args.command == "demo":
            return run_monitor([sample_path()], args, args.speed)
        if args.read:
            return run_monitor(args.read, args, args.speed)
        parser.print_usage(sys.stderr)
        print(
            "smtptop: give -r FILE to monitor a capture, or try 'smtptop demo' "
            "(live capture on an interface is not available yet)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"smtptop: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
