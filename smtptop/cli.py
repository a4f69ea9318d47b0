"""Command line: the monitor (``smtptop``, ``smtptop demo``), ``smtptop report`` and
``smtptop interfaces``.

Every option is honest: one that cannot apply to what was asked is refused with one line,
never silently ignored, and an option means the same before or after the command."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from smtptop import __version__
from smtptop.decode import DEFAULT_PORTS  # struct only: --help stays quick
from smtptop.keys import keys_text  # plain data: --help lists the keys without Textual

if TYPE_CHECKING:
    from smtptop.source import FileSource

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
GC_YOUNG_THRESHOLD = 50_000
PROGRESS_EVERY = 0.25  # seconds between redraws of the report's progress line
DEMO_SPEED = 10.0
REPORT_DURATION = 60.0  # seconds a live report captures when -i comes without --duration
MAX_VALUE = 1e6  # for --speed and --duration: anything larger is a slip of the keyboard
SUB = "sub_"  # prefix of the destinations of a command's copy of a shared option


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


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_VALUE:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_VALUE:,.0f}: {text!r}")
    return value


def _top(text: str) -> int:
    try:
        top = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if top < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {top}")
    return top


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and a hint, not the usage block:
    the line is what a user reads, and ``--help`` is one command away."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}  # the commands' parsers, by name

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(slots=True, frozen=True)
class Shared:
    """An option of the monitor that commands may share: its flag, its default (filled in
    after parsing, see `_merge`) and what argparse needs to know about it."""

    flag: str
    default: Any
    settings: dict[str, Any]


def _shared(flag: str, default: Any, **settings: Any) -> Shared:
    return Shared(flag, default, settings)


# Each is added to the main parser and to every command it applies to, all with a suppressed
# default, so that which were given, and where, can be told apart afterwards.
OPTIONS: dict[str, Shared] = {
    "read": _shared(
        "-r", [], action="extend", nargs="+", metavar="FILE",
        help="monitor capture files (pcap/pcapng, .gz too): -r a.pcap b.pcap or -r a -r b; "
        "read in the order of their first packets, whatever the order given",
    ),
    "interface": _shared(
        "-i", None, metavar="IFACE",
        help="capture on this interface (default: the one carrying the default route)",
    ),
    "speed": _shared(
        "--speed", None, type=_positive, metavar="X",
        help="replay files at X times their captured pace (default: as fast as possible)",
    ),
    "top": _shared("--top", 200, type=_top, metavar="N", help="show the top N hosts (default 200)"),
    "bell": _shared(
        "--bell", False, action="store_true",
        help="ring the terminal bell when a host turns spambot",
    ),
    "alert_exec": _shared(
        "--alert-exec", None, metavar="CMD",
        help="run CMD (with a shell) when a host turns spambot, the host's JSON on its stdin",
    ),
    "ports": _shared(
        "--ports", DEFAULT_PORTS, type=_ports, metavar="P,...",
        help=f"SMTP ports (default: {','.join(map(str, sorted(DEFAULT_PORTS)))})",
    ),
    "lan": _shared(
        "--lan", [], type=_network, action="append", metavar="CIDR",
        help="also count this network as LAN (repeatable)",
    ),
    "show_credentials": _shared(
        "--show-credentials", False, action="store_true",
        help="show AUTH exchanges unmasked (off by default)",
    ),
    "smarthost": _shared(
        "--smarthost", [], action="append", metavar="HOST",
        help="the office's mail relay, by address or greeting name (repeatable; "
        "default: the server most LAN hosts use)",
    ),
    "mail_server": _shared(
        "--mail-server", [], action="append", metavar="IP",
        help="a LAN host that is a mail server itself: not judged on volume (repeatable)",
    ),
    "error_log": _shared(
        "--error-log", None, metavar="FILE",
        help="where analysis failures are logged (default: "
        "~/.local/state/smtptop/errors.log, made on the first one)",
    ),
    "promisc": _shared(
        "--no-promisc", True, action="store_false",
        help="leave the interface's promiscuous mode alone (live capture only)",
    ),
    "expression": _shared(
        "-f", None, metavar="EXPR",
        help="a kernel filter in tcpdump syntax instead of the built-in one "
        "(needs libpcap; live capture only)",
    ),
    "write": _shared(
        "-w", None, metavar="FILE",
        help="also write the captured packets to a pcap file "
        "(raw: AUTH secrets included; live capture only)",
    ),
    "user": _shared(
        "--user", None, metavar="USER",
        help="after opening the socket, run as USER (default: $SUDO_USER, else nobody; "
        "live capture only)",
    ),
}  # fmt: skip
APPENDED = ("read", "lan", "smarthost", "mail_server")  # given before and after the command
ENGINE = ("ports", "lan", "show_credentials", "smarthost", "mail_server", "error_log")
LIVE = ("interface", "promisc", "expression", "write", "user")
LIVE_ONLY = ("promisc", "expression", "write", "user")
ALERTS = ("top", "bell", "alert_exec")
MONITOR = ("read", "interface", "speed", *ALERTS, *ENGINE, *LIVE_ONLY)
APPLIES = {
    None: MONITOR,
    "demo": ("speed", *ALERTS, *ENGINE),
    "report": (*LIVE, *ENGINE),
    "interfaces": (),
}
HELP = {  # a command's own wording of a shared option
    ("demo", "speed"): f"replay at X times the captured pace (default {DEMO_SPEED:g})",
    ("report", "interface"): "capture on this interface for --duration seconds",
}


def _flag(name: str) -> str:
    return OPTIONS[name].flag


def _add_shared(parser: argparse.ArgumentParser, command: str | None) -> None:
    """Every shared option, on every parser: those that do not apply to the command are
    hidden from its help, and refused with the same line wherever they were put."""
    prefix = SUB if command else ""
    for name, option in OPTIONS.items():
        text = option.settings["help"] if name in APPLIES[command] else argparse.SUPPRESS
        settings = {**option.settings, "help": HELP.get((command, name), text)}
        parser.add_argument(option.flag, dest=prefix + name, default=argparse.SUPPRESS, **settings)


EXAMPLES = """\
examples:
  sudo smtptop                        capture where the default route goes
  sudo smtptop -i eth1                capture on eth1 (`smtptop interfaces` lists them)
  sudo smtptop -i eth1 -w ev.pcap     keep the packets too (AUTH secrets included)
  smtptop demo                        replay the bundled capture of an infected office
  smtptop -r capture.pcap --speed 5   replay a file at 5 times its pace
  smtptop -r mon.pcap tue.pcap.gz     several files, read in time order
  smtptop report capture.pcap --json  per-host facts, without the monitor
  sudo smtptop report -i eth1 --duration 600 --json -o spam.json
                                      capture for 10 minutes, headless (for cron)

Options mean the same before or after the command: `smtptop --lan 10.9.0.0/16 report
FILE` is `smtptop report --lan 10.9.0.0/16 FILE`. One that does not apply is an error.
"""

REPORT_EXAMPLES = """\
examples:
  smtptop report capture.pcap                 a table, the worst hosts first
  smtptop report a.pcap b.pcap.gz --json      files are read in time order
  smtptop report --sample --csv -o hosts.csv  the bundled capture, as CSV
  sudo smtptop report -i eth1 --duration 600 --json -o spam.json
"""


def build_parser() -> Parser:
    parser = Parser(
        prog="smtptop",
        description="Which LAN host talks SMTP to whom, and what the servers answered.\n"
        "With no -r or -i, captures on the interface that carries the default route.",
        epilog=EXAMPLES + "\nkeys in the monitor:\n" + textwrap.indent(keys_text(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smtptop {__version__}")
    _add_shared(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = parser.commands["demo"] = commands.add_parser(
        "demo",
        help="replay the bundled office capture in the monitor",
        description="Replay the bundled capture of an office with one spambot-infected PC.",
    )
    _add_shared(demo, "demo")
    interfaces = parser.commands["interfaces"] = commands.add_parser(
        "interfaces",
        help="list the network interfaces (* marks the default-route one)",
        description="List network interfaces with their addresses.",
    )
    _add_shared(interfaces, "interfaces")
    report = parser.commands["report"] = commands.add_parser(
        "report",
        help="analyse capture files (or capture for a while) and print per-host SMTP facts",
        description="Analyse pcap/pcapng files (optionally .gz), or capture on an interface\n"
        "for --duration seconds, and print per-host SMTP facts.",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_shared(report, "report")
    report.add_argument(
        "--duration", type=_positive, metavar="SECONDS",
        help=f"with -i: capture for this long (default {REPORT_DURATION:g}; Ctrl-C stops early)",
    )  # fmt: skip
    report.add_argument(
        "files", nargs="*", metavar="FILE",
        help="capture files, read in the order of their first packets",
    )  # fmt: skip
    report.add_argument("--sample", action="store_true", help="analyse the bundled demo capture")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (see the README)")
    form.add_argument("--csv", action="store_true", help="print CSV, one row per host")
    report.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (atomically)"
    )
    return parser


def _merge(args: argparse.Namespace) -> set[str]:
    """Fold a command's copies of the shared options into the main ones (later wins, lists
    add up), fill in the defaults, and say which options were given."""
    given = set()
    for name, option in OPTIONS.items():
        default = option.default
        before = getattr(args, name, argparse.SUPPRESS)
        after = getattr(args, SUB + name, argparse.SUPPRESS)
        if hasattr(args, SUB + name):
            delattr(args, SUB + name)
        if before is argparse.SUPPRESS and after is argparse.SUPPRESS:
            setattr(args, name, list(default) if isinstance(default, list) else default)
            continue
        given.add(name)
        values = [v for v in (before, after) if v is not argparse.SUPPRESS]
        if name in APPENDED:
            setattr(args, name, [item for value in values for item in value])
        else:
            setattr(args, name, values[-1])
    return given


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked and resolved: an option that cannot apply to what was asked
    exits with one line and status 2; ``demo`` becomes the monitor on the bundled capture,
    ``report --sample`` one more file."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = _merge(args)
    command = args.command
    for path in args.read:  # `smtptop -r a.pcap report`: -r took the command for a file
        if path in parser.commands and not os.path.exists(path):
            parser.error(f"-r does not apply to 'smtptop {path}'")
    for name in sorted(given - set(APPLIES[command])):
        where = ", which takes its files as arguments" if name == "read" else ""
        parser.error(f"{_flag(name)} does not apply to 'smtptop {command}'{where}")
    live_only = sorted(given & set(LIVE_ONLY))
    if command == "report":
        report = parser.commands["report"]
        args.files = [*args.files, *([sample_path()] if args.sample else [])]
        if args.interface is not None and args.files:
            report.error("give capture files or -i IFACE, not both")
        if args.interface is None and not args.files:
            report.error("give capture files, --sample, or -i IFACE")
        if args.interface is None and args.duration is not None:
            report.error("--duration only applies to a live capture (-i)")
        if args.interface is None and live_only:
            report.error(f"{_flag(live_only[0])} only applies to a live capture (-i)")
        if args.interface is not None and args.duration is None:
            args.duration = REPORT_DURATION
    elif command == "demo":
        args.read = [sample_path()]
        if args.speed is None:
            args.speed = DEMO_SPEED
    elif command is None:
        if args.read and args.interface is not None:
            parser.error("-r reads files and -i captures live: give one or the other")
        if args.read and live_only:
            parser.error(f"{_flag(live_only[0])} only applies to a live capture (-i), not to -r")
        if not args.read and args.speed is not None:
            parser.error("--speed only applies to replaying files (-r, demo)")
    return args


def _error_log(args: argparse.Namespace):  # -> ErrorLog
    from smtptop.errorlog import ErrorLog, default_path

    return ErrorLog(args.error_log or default_path())


def _detect_config(args: argparse.Namespace):  # -> DetectConfig
    from smtptop.detect import DetectConfig

    return DetectConfig(
        smarthosts=tuple(h.lower() for h in args.smarthost),
        mail_servers=tuple(args.mail_server),
    )


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


def in_time_order(paths: Sequence[str]) -> list[str]:
    """The files sorted by the time of their first packet, so that the pieces of one capture
    (``tcpdump -C`` or ``-G``) are read as one, in whatever order they were named.  Only the
    first record of each is read; files without one come first.  A file that cannot be read
    raises its one-line CaptureError."""
    from smtptop.capture import CaptureFile

    starts = []
    for index, path in enumerate(paths):
        records = iter(CaptureFile(path))
        first = next(records, None)
        records.close()
        starts.append((-float("inf") if first is None else first[0], index, path))
    return [path for _, _, path in sorted(starts)]


def file_source(args: argparse.Namespace) -> FileSource:
    """The monitor's capture files (``-r``, or demo's), in time order."""
    from smtptop.source import FileSource

    return FileSource(in_time_order(args.read), speed=args.speed)


def run_monitor(args: argparse.Namespace) -> int:
    from smtptop.analyzer import EngineConfig
    from smtptop.capture import CaptureError
    from smtptop.live import CaptureSetupError, default_interface
    from smtptop.source import Source
    from smtptop.tui.app import MonitorApp

    lan = list(args.lan)
    source: Source
    try:
        if args.read:
            source = file_source(args)
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
        top=args.top,
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
    from smtptop.text import plural

    errors = _error_log(args)
    try:
        if args.interface is not None:
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
            paths = in_time_order(args.files)
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
            f"smtptop: {plural(analysis.stats.errors, 'packet')} could not be analysed; "
            f"details in {errors.path}",
            file=sys.stderr,
        )
    return EXIT_INPUT if analysis.warnings and args.interface is None else EXIT_OK


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
    args = parse_args(argv)
    tune_collector()
    try:
        if args.command == "report":
            return run_report(args)
        if args.command == "interfaces":
            return run_interfaces()
        return run_monitor(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"smtptop: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
