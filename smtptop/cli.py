"""Command line: ``smtptop report`` (and, as they arrive, the monitor's own options)."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from typing import TextIO

from smtptop import __version__
from smtptop.decode import DEFAULT_PORTS  # struct only: --help stays quick

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
GC_YOUNG_THRESHOLD = 50_000
PROGRESS_EVERY = 0.25  # seconds between redraws of the report's progress line


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
        help=f"SMTP ports (default: {','.join(map(str, sorted(DEFAULT_PORTS)))})",
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
    common.add_argument(
        "--error-log", metavar="FILE",
        help="where analysis failures are logged (default: "
        "~/.local/state/smtptop/errors.log, made on the first one)",
    )  # fmt: skip
    common.add_argument(
        "--smarthost", action="append", default=[], metavar="HOST",
        help="the office's mail relay, by address or greeting name (repeatable; "
        "default: the server most LAN hosts use)",
    )  # fmt: skip
    common.add_argument(
        "--mail-server", action="append", default=[], metavar="IP",
        help="a LAN host that is a mail server itself: not judged on volume (repeatable)",
    )  # fmt: skip
    return common


def _error_log(args: argparse.Namespace):  # -> ErrorLog
    from smtptop.errorlog import ErrorLog, default_path

    return ErrorLog(args.error_log or default_path())


def _detect_config(args: argparse.Namespace):  # -> DetectConfig
    from smtptop.detect import DetectConfig

    return DetectConfig(
        smarthosts=tuple(h.lower() for h in args.smarthost),
        mail_servers=tuple(args.mail_server),
    )


def _add_alert_options(parser: argparse.ArgumentParser) -> None:
    """What the monitor does when a host first turns spambot (it always notifies)."""
    parser.add_argument(
        "--bell", action="store_true", help="ring the terminal bell when a host turns spambot"
    )
    parser.add_argument(
        "--alert-exec", metavar="CMD",
        help="run CMD (with a shell) when a host turns spambot, the host's JSON on its stdin",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    common = _engine_options()
    live = _live_options()
    parser = argparse.ArgumentParser(
        prog="smtptop",
        description="Which LAN host talks SMTP to whom, and what the servers answered. "
        "With no -r or -i, captures on the interface that carries the default route.",
        parents=[common, live],
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
    _add_alert_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="replay the bundled office capture in the monitor",
        description="Replay the bundled capture of an office with one spambot-infected PC.",
        parents=[common],
    )
    _add_alert_options(demo)
    demo.add_argument(
        "--speed", type=_speed, default=10.0, metavar="X", help="replay speed (default 10x)"
    )
    commands.add_parser(
        "interfaces",
        help="list the network interfaces (* marks the default-route one)",
        description="List network interfaces with their addresses.",
    )
    report = commands.add_parser(
        "report",
        help="analyse capture files (or capture for a while) and print per-host SMTP facts",
        description="Analyse pcap/pcapng files (optionally .gz), or capture on an interface "
        "for --duration seconds, and print per-host SMTP facts.",
        parents=[common, live],
    )
    report.add_argument(
        "--duration", type=_speed, default=60.0, metavar="SECONDS",
        help="with -i: capture for this long (default 60; Ctrl-C stops early)",
    )  # fmt: skip
    report.add_argument("files", nargs="*", metavar="FILE", help="capture files, read in order")
    report.add_argument("--sample", action="store_true", help="analyse the bundled demo capture")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (see the README)")
    form.add_argument("--csv", action="store_true", help="print CSV, one row per host")
    report.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (atomically)"
    )
    return parser


def _live_options() -> argparse.ArgumentParser:
    """Options of a live capture, for the monitor and the headless report."""
    live = argparse.ArgumentParser(add_help=False)
    live.add_argument(
        "-i", dest="interface", metavar="IFACE",
        help="capture on this interface (the monitor's default: the default-route interface)",
    )  # fmt: skip
    live.add_argument(
        "--no-promisc", dest="promisc", action="store_false",
        help="do not put the interface in promiscuous mode",
    )  # fmt: skip
    live.add_argument(
        "-f", dest="expression", metavar="EXPR",
        help="kernel filter in tcpdump syntax instead of the built-in one (needs libpcap)",
    )  # fmt: skip
    live.add_argument(
        "-w", dest="write", metavar="FILE",
        help="also write the captured packets to a pcap file (raw: AUTH secrets included)",
    )  # fmt: skip
    live.add_argument(
        "--user", metavar="USER",
        help="after opening the socket, run as USER (default: $SUDO_USER, else nobody)",
    )  # fmt: skip
    return live


def open_live(args: argparse.Namespace, iface: str):  # -> (LiveSource, lan networks)
    """Open the capture socket (as root, if we are root)."""
    from smtptop.live import LiveSource, interface_networks

    source = LiveSource(
        iface,
        ports=args.ports,
        promisc=args.promisc,
        expression=args.expression,
        write=args.write,
    )
    return source, [*args.lan, *interface_networks(iface)]


def give_up_root(args: argparse.Namespace, source: object) -> None:
    """Drop root once the socket is open, before any packet is parsed."""
    from smtptop.live import LiveSource, drop_privileges

    if not isinstance(source, LiveSource):
        return
    try:
        drop_privileges(args.user, owned_files=[args.write] if args.write else [])
    except BaseException:
        source.close()
        raise


def run_monitor(args: argparse.Namespace, paths: list[str], speed: float | None) -> int:
    from smtptop.analyzer import EngineConfig
    from smtptop.capture import CaptureError
    from smtptop.live import CaptureSetupError, default_interface
    from smtptop.source import FileSource, Source
    from smtptop.tui.app import MonitorApp

    lan = list(args.lan)
    source: Source
    try:
        if paths:
            source = FileSource(paths, speed=speed)
        else:
            iface = args.interface or default_interface()
            if iface is None:
                print("smtptop: no default route: name an interface with -i", file=sys.stderr)
                return EXIT_USAGE
            source, lan = open_live(args, iface)
    except (CaptureError, CaptureSetupError) as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    app = MonitorApp(
        source,
        config=EngineConfig(ports=args.ports),
        lan=lan,
        show_credentials=args.show_credentials,
        top=max(1, getattr(args, "top", 200)),
        detect=_detect_config(args),
        bell=args.bell,
        alert_exec=args.alert_exec,
        error_log=_error_log(args),
    )
    try:
        give_up_root(args, source)
    except CaptureSetupError as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    app.run()
    return EXIT_OK


def run_interfaces() -> int:
    from smtptop.live import list_interfaces

    for interface in list_interfaces():
        mark = "*" if interface.default else " "
        print(f"{mark} {interface.name:16} {' '.join(interface.addresses)}".rstrip())
    print("(* carries the default route: plain 'smtptop' captures there)")
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    from smtptop.capture import CaptureError
    from smtptop.live import CaptureSetupError
    from smtptop.pipeline import EngineFailed
    from smtptop.report import analyze, analyze_live, render_csv, render_json, render_table

    paths = list(args.files) + ([sample_path()] if args.sample else [])
    if not paths and not args.interface:
        print("smtptop report: give capture files, --sample, or -i IFACE", file=sys.stderr)
        return EXIT_USAGE
    if paths and args.interface:
        print("smtptop report: files or an interface, not both", file=sys.stderr)
        return EXIT_USAGE
    errors = _error_log(args)
    try:
        if args.interface:
            # a service manager stops with SIGTERM: report what was captured, as for Ctrl-C
            signal.signal(signal.SIGTERM, _interrupt)
            source, lan = open_live(args, args.interface)
            give_up_root(args, source)
            analysis = analyze_live(
                source,
                duration=args.duration,
                ports=args.ports,
                lan=lan,
                show_credentials=args.show_credentials,
                detect=_detect_config(args),
                on_error=errors,
            )
        else:
            progress = ReadProgress(paths, sys.stderr) if sys.stderr.isatty() else None
            try:
                analysis = analyze(
                    paths,
                    ports=args.ports,
                    lan=args.lan,
                    show_credentials=args.show_credentials,
                    detect=_detect_config(args),
                    progress=progress,
                    on_error=errors,
                )
            finally:
                if progress is not None:
                    progress.erase()
    except (CaptureError, CaptureSetupError, EngineFailed) as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.json:
        text = render_json(analysis)
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
    if analysis.stats.errors:
        print(
            f"smtptop: {analysis.stats.errors} packets could not be analysed; "
            f"details in {errors.path}",
            file=sys.stderr,
        )
    return EXIT_INPUT if analysis.warnings and not args.interface else EXIT_OK


class ReadProgress:
    """The report's progress line on a terminal's stderr: bytes done of all files, share,
    packets per second and time left, redrawn in place a few times a second and erased
    at the end, so that the report itself is never mixed with it."""

    def __init__(self, paths: Sequence[str], out: TextIO) -> None:
        from smtptop.speed import Speedometer

        self.out = out
        self.sizes = {path: os.path.getsize(path) for path in paths}
        self.total = sum(self.sizes.values())
        self.speed = Speedometer()
        self.speed.update(time.monotonic(), 0, 0)
        self._drawn = 0.0
        self._width = 0

    def __call__(self, reading: str, position: int, packets: int) -> None:
        from smtptop.speed import describe

        now = time.monotonic()
        if now - self._drawn < PROGRESS_EVERY:
            return
        before = 0
        for path, size in self.sizes.items():
            if path == reading:
                break
            before += size
        done = min(self.total, before + position)
        self.speed.update(now, packets, done)
        line = "smtptop: reading " + describe(self.speed, done, self.total)
        self.out.write("\r" + line.ljust(self._width))
        self.out.flush()
        self._width = len(line)
        self._drawn = now

    def erase(self) -> None:
        if self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _write_atomically(path: str, text: str) -> None:
    """Write a temporary file beside ``path`` and rename it: all of the report or none.
    A device or a pipe (``-o /dev/null``, ``-o /dev/stdout``) is written to as it is:
    renaming over it would replace the device with a plain file."""
    if os.path.exists(path) and not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".smtptop-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def tune_collector() -> None:
    """The engine makes and drops millions of small objects (events, tuples) next to a model
    of many long-lived ones; at CPython's default of a young collection every 700
    allocations, the collector took a third of a report's time."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_collector()
    try:
        if args.command == "report":
            return run_report(args)
        if args.command == "demo":
            return run_monitor(args, [sample_path()], args.speed)
        if args.command == "interfaces":
            return run_interfaces()
        return run_monitor(args, args.read, args.speed)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"smtptop: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
