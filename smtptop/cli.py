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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtptop",
        description="Which LAN host talks SMTP to whom, and what the servers answered.",
    )
    parser.add_argument("--version", action="version", version=f"smtptop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    report = commands.add_parser(
        "report",
        help="analyse capture files and print per-host SMTP facts",
        description="Analyse pcap/pcapng files (optionally .gz) and print per-host SMTP facts.",
    )
    report.add_argument("files", nargs="*", metavar="FILE", help="capture files, read in order")
    report.add_argument("--sample", action="store_true", help="analyse the bundled demo capture")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (see the README)")
    form.add_argument("--csv", action="store_true", help="print CSV, one row per host")
    report.add_argument(
        "--ports",
        type=_ports,
        default=DEFAULT_PORTS,
        metavar="P,...",
        help="SMTP ports (default: 25,465,587,2525)",
    )
    report.add_argument(
        "--lan",
        type=_network,
        action="append",
        default=[],
        metavar="CIDR",
        help="also count this network as LAN (repeatable)",
    )
    report.add_argument(
        "--show-credentials",
        action="store_true",
        help="show AUTH exchanges unmasked (off by default)",
    )
    report.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (atomically)"
    )
    return parser


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
        parser.print_help()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"smtptop: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
