"""Command line: the monitor (``smtptop``, ``smtptop demo``), ``smtptop report`` and
``smtptop interfaces``.

Every option is honest: one that cannot apply to what was asked is refused with one line,
never silently ignored, and an option means the same before or after the command."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import shlex
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from smtptop import __version__, build
from smtptop.decode import DEFAULT_PORTS, STANDARD_MIRRORS, MirrorPorts  # struct only: quick
from smtptop.keys import keys_text  # plain data: --help lists the keys without Textual

if TYPE_CHECKING:
    from pwd import struct_passwd

    from smtptop.analysis import Analysis
    from smtptop.detect import DetectConfig
    from smtptop.errorlog import ErrorLog
    from smtptop.files import Owner, Report
    from smtptop.source import FileSource, Source

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_LOSS = 3  # report -i: the kernel dropped packets, so the counts are low
GC_YOUNG_THRESHOLD = 50_000
PROGRESS_EVERY = 0.25  # seconds between redraws of the report's progress line
DEMO_SPEED = 10.0
CONTAIN_SYNTAXES = ("nftables", "iptables", "routeros")
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


MIRROR_KINDS = ("tzsp", "vxlan")


def _mirror_port(text: str) -> tuple[str, int]:
    kind, _, port = text.partition(":")
    kind = kind.strip().lower()
    if kind not in MIRROR_KINDS or not port.strip().isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"not KIND:PORT with KIND tzsp or vxlan and PORT 1-65535: {text!r}"
        )
    return kind, int(port)


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


MAX_WORKERS = 64  # --workers
SIZE_UNITS = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
MIN_EVIDENCE_BUFFER = 10**6


def _size(text: str) -> int:
    """500M, 2G, 1.5T or a plain number of bytes: decimal units, as the progress line shows."""
    number = text.strip().upper().removesuffix("B")
    scale = SIZE_UNITS.get(number[-1:], 1)
    try:
        count = int(float(number[:-1] if scale > 1 else number) * scale)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a size such as 500M or 2G: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 byte or more: {text!r}")
    return count


def _buffer_size(text: str) -> int:
    """A size as for --max-bytes, 1M at least (a share for each of 8 engines), or 0 (none)."""
    if text.strip() == "0":
        return 0
    size = _size(text)
    if size < MIN_EVIDENCE_BUFFER:
        raise argparse.ArgumentTypeError(f"must be 0 (none) or 1M or more: {text!r}")
    return size


def _top(text: str) -> int:
    try:
        top = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if top < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {top}")
    return top


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= workers <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_WORKERS}, not {workers}")
    return workers


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name.strip(), value.strip()


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and a hint, not the usage block:
    the line is what a user reads, and ``--help`` is one command away.  Options are not
    abbreviated: ``--evidence`` must not be taken for ``--evidence-buffer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
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
        "read as one capture, their packets merged by timestamp (mirrors of several sites, "
        "or the pieces of one capture)",
    ),
    "zeek": _shared(
        "--zeek", [], action="extend", nargs="+", metavar="PATH",
        help="read Zeek's conn, smtp, dhcp and dns logs instead of packets: the monitor follows "
        "a folder of current logs as Zeek writes them; report reads log files and folders "
        "(TSV or JSON, .gz too)",
    ),
    "interface": _shared(
        "-i", [], action="append", metavar="IFACE",
        help="capture on this interface (default: the one carrying the default route); "
        "repeatable: -i eth1 -i eth2 captures on both into one view",
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
    "detect": _shared(
        "--detect", [], type=_setting, action="append", metavar="NAME=VALUE",
        help="change a detection setting: spambot=70, rejections.sessions=5, "
        "many-destinations.points=20,35 (repeatable; the README lists them)",
    ),
    "quiet_after": _shared(
        "--quiet-after", None, type=_positive, metavar="SECONDS",
        help="a spambot or suspicious host that sends nothing to foreign mail servers for "
        "this long shows as quiet, the all-clear for delisting (default 600)",
    ),
    "detect_config": _shared(
        "--detect-config", None, metavar="FILE",
        help="detection settings from a TOML file (--detect settings override it)",
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
        "(raw: AUTH secrets included; live capture on one interface only)",
    ),
    "mirror": _shared(
        "--mirror", False, action="store_true",
        help="the interface receives a mirror (TZSP, ERSPAN, GRE, VXLAN): let it through the "
        "built-in kernel filter (live capture only; files need nothing)",
    ),
    "mirror_port": _shared(
        "--mirror-port", [], type=_mirror_port, action="append", metavar="KIND:PORT",
        help="a mirror sent to a UDP port of its own: tzsp:PORT or vxlan:PORT (besides "
        "37008 and 4789, 8472; repeatable; live, it lets that port through as --mirror does)",
    ),
    "user": _shared(
        "--user", None, metavar="USER",
        help="after opening the socket, run as USER (default: $SUDO_USER, else nobody; "
        "live capture only)",
    ),
    "workers": _shared(
        "--workers", None, type=_workers, metavar="N",
        help="engine processes, each taking its share of the hosts (default: one per CPU "
        "but one, at most 8; for capture files only from 4 MB; 0: all in one process)",
    ),
    "evidence_buffer": _shared(
        "--evidence-buffer", 64 << 20, type=_buffer_size, metavar="SIZE",
        help="keep each host's latest SMTP packets in this much memory, all hosts together, "
        "for evidence bundles (default 64 MiB; 0: none; live capture only: -w keeps all)",
    ),
    "evidence_dir": _shared(
        "--evidence-dir", None, metavar="DIR",
        help="where e writes evidence bundles (default: the current folder)",
    ),
    "max_bytes": _shared(
        "--max-bytes", None, type=_size, metavar="N",
        help="stop reading a capture file after N bytes of data, after decompression "
        "(500M, 2G; a warning names the cut)",
    ),
}  # fmt: skip
# given before and after the command
APPENDED = (
    "read", "zeek", "interface", "lan", "smarthost", "mail_server", "detect", "mirror_port",
)  # fmt: skip
ENGINE = (
    "ports", "lan", "show_credentials", "smarthost", "mail_server", "detect", "detect_config",
    "quiet_after", "error_log",
)  # fmt: skip
LIVE = ("interface", "promisc", "expression", "write", "user", "evidence_buffer", "mirror")
LIVE_ONLY = ("promisc", "expression", "write", "user", "evidence_buffer", "mirror")
ALERTS = ("top", "bell", "alert_exec", "evidence_dir")
MONITOR = (
    "read", "zeek", "interface", "speed", *ALERTS, *ENGINE, *LIVE_ONLY, "workers", "mirror_port",
)  # fmt: skip
APPLIES = {
    None: MONITOR,
    "demo": ("speed", *ALERTS, *ENGINE),
    "report": (*LIVE, *ENGINE, "zeek", "max_bytes", "workers", "mirror_port"),
    "interfaces": (),
}
HELP: dict[tuple[str | None, str], str] = {  # a command's own wording of a shared option
    ("demo", "speed"): f"replay at X times the captured pace (default {DEMO_SPEED:g})",
    ("report", "interface"): "capture on this interface for --duration seconds (repeatable: "
    "-i eth1 -i eth2 captures on both into one report)",
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
  sudo smtptop -i eth1 -i eth2        several interfaces into one view, each one's drops shown
  smtptop demo                        replay the bundled capture of an infected office
  smtptop -r capture.pcap --speed 5   replay a file at 5 times its pace
  smtptop -r site1.pcap site2.pcap    several files, merged by packet time
  ssh gw tcpdump -U -w - | smtptop -r -
                                      a capture streamed from elsewhere, as it comes
  smtptop --zeek /opt/zeek/logs/current
                                      follow a Zeek cluster's logs instead of packets
  smtptop report capture.pcap --json  per-host facts, without the monitor
  sudo smtptop report -i eth1 --duration 600 --json -o spam.json
                                      capture for 10 minutes, headless (for cron)

Options mean the same before or after the command: `smtptop --lan 10.9.0.0/16 report
FILE` is `smtptop report --lan 10.9.0.0/16 FILE`. One that does not apply is an error.
"""

REPORT_EXAMPLES = """\
examples:
  smtptop report capture.pcap                 a table, the worst hosts first
  smtptop report a.pcap b.pcap.gz --json      files merged by packet time
  smtptop report --sample --csv -o hosts.csv  the bundled capture, as CSV
  smtptop report --zeek /opt/zeek/logs/2026-12-05
                                              a day of Zeek's logs instead of packets
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
    parser.add_argument("--version", action="version", version=f"smtptop {__version__} ({build()})")
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
        help="capture files, read as one capture, their packets merged by timestamp",
    )  # fmt: skip
    report.add_argument("--sample", action="store_true", help="analyse the bundled demo capture")
    form = report.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON (see the README)")
    form.add_argument("--csv", action="store_true", help="print CSV, one row per host")
    form.add_argument(
        "--contain", nargs="?", const="nftables", choices=CONTAIN_SYNTAXES, metavar="SYNTAX",
        help="print, instead of the report, firewall rules for the gateway that allow the "
        "flagged hosts port 25 only to the smarthost: nftables (default), iptables or routeros",
    )  # fmt: skip
    report.add_argument(
        "--evidence", metavar="DIR",
        help="also write an evidence bundle per flagged host into DIR, a new folder "
        "(capture files only; smtp.pcap in it holds AUTH secrets)",
    )  # fmt: skip
    report.add_argument(
        "--host", action="append", default=[], metavar="IP",
        help="--evidence and --contain for this host instead of every spambot and suspicious "
        "one (repeatable)",
    )  # fmt: skip
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
        if args.interface and args.files:
            report.error("give capture files or -i IFACE, not both")
        if args.zeek:
            _check_zeek_report(args, given, report)
        elif not args.interface and not args.files:
            report.error("give capture files, --sample, -i IFACE, or --zeek LOGS")
        if not args.interface and args.duration is not None:
            report.error("--duration only applies to a live capture (-i)")
        if not args.interface and live_only:
            report.error(f"{_flag(live_only[0])} only applies to a live capture (-i)")
        if args.interface and "max_bytes" in given:
            report.error("--max-bytes only applies to capture files, not to -i")
        if args.interface and args.evidence and not (args.write or args.evidence_buffer):
            report.error("--evidence with -i needs the packets: -w FILE, or an --evidence-buffer")
        if "-" in args.files and len(args.files) > 1:
            report.error("-: standard input is read alone, not with files")
        if "-" in args.files and args.evidence:
            report.error("--evidence reads the packets back from files, not from standard "
                         "input: write the stream to a file, then report on it")  # fmt: skip
        if "-" in args.files and (args.workers or 0) > 1:
            report.error("--workers: standard input is read by one process")
        if args.host and not (args.evidence or args.contain):
            report.error("--host chooses the hosts of --evidence or --contain: give one")
        from smtptop.model import is_address

        for host in args.host:
            if not is_address(host):
                report.error(f"--host: not an IP address: {host!r}")
        if args.interface and args.duration is None:
            args.duration = REPORT_DURATION
    elif command == "demo":
        args.read = [sample_path()]
        if args.speed is None:
            args.speed = DEMO_SPEED
    elif command is None:
        if args.zeek:
            _check_zeek_monitor(args, given, parser)
        if args.read and args.interface:
            parser.error("-r reads files and -i captures live: give one or the other")
        if "-" in args.read and len(args.read) > 1:
            parser.error("-r -: standard input is read alone, not with files")
        if "-" in args.read and args.speed is not None:
            parser.error("--speed replays files: a stream on standard input comes at its pace")
        live_only = sorted(given & {*LIVE_ONLY, "workers"})  # the monitor replays in a thread
        if args.read and live_only:
            parser.error(f"{_flag(live_only[0])} only applies to a live capture (-i), not to -r")
        if not args.read and args.speed is not None:
            parser.error("--speed only applies to replaying files (-r, demo)")
    interfaces = getattr(args, "interface", [])
    for iface in interfaces:
        if interfaces.count(iface) > 1:
            parser.error(f"-i {iface} is given twice: each interface is captured once")
    if getattr(args, "write", None) and len(interfaces) > 1:
        parser.error("-w writes what one interface captures: give one -i, or capture each "
                     "interface with a smtptop of its own")  # fmt: skip
    workers = getattr(args, "workers", None) or 0
    if getattr(args, "write", None) and workers > 1:
        parser.error(f"-w writes what one socket captures: give --workers 1 (or 0), not {workers}")
    args.mirrors = _mirrors(args.mirror_port, parser.commands.get(command, parser))
    if "detect" in APPLIES[command]:
        try:
            args.policy = _detect_config(args)
        except OSError as exc:
            parser.error(f"--detect-config {args.detect_config}: {exc.strerror}")
        except ValueError as exc:
            parser.error(f"--detect: {exc}")
    return args


def _mirrors(named: Sequence[tuple[str, int]], parser: Parser) -> MirrorPorts:
    """The UDP ports mirrors send to: the standard ones and those named with --mirror-port.
    A port is read as one wrapping only, and never one that carries who-is-who."""
    from smtptop.identity import PORTS as IDENTITY_PORTS

    kinds = {"tzsp": set(STANDARD_MIRRORS.tzsp), "vxlan": set(STANDARD_MIRRORS.vxlan)}
    for kind, port in named:
        other = next((k for k, ports in kinds.items() if k != kind and port in ports), None)
        if other is not None:
            parser.error(f"--mirror-port {kind}:{port}: UDP {port} is {other.upper()}'s already")
        if port in IDENTITY_PORTS:
            parser.error(f"--mirror-port {kind}:{port}: smtptop reads who is who on UDP {port}")
        kinds[kind].add(port)
    return MirrorPorts(vxlan=frozenset(kinds["vxlan"]), tzsp=frozenset(kinds["tzsp"]))


def _check_zeek_report(args: argparse.Namespace, given: set[str], report: Parser) -> None:
    """``report --zeek``: logs hold no packets, so what reads or captures packets is refused."""
    if args.files or args.interface:
        report.error("--zeek reads logs: give capture files, -i IFACE or --zeek, not two")
    if args.evidence:
        report.error("--evidence writes the packets of a host: Zeek's logs hold none")
    for name in ("max_bytes", "workers", "mirror_port"):
        if name in given:
            report.error(f"{_flag(name)} applies to capture files, not to --zeek logs")


def _check_zeek_monitor(args: argparse.Namespace, given: set[str], parser: Parser) -> None:
    """``smtptop --zeek DIR``: one folder followed, nothing of packets."""
    if args.read or args.interface:
        parser.error("--zeek follows logs: give -r, -i or --zeek, not two")
    if len(args.zeek) > 1:
        parser.error("--zeek: the monitor follows one folder (smtptop report reads several)")
    packets_only = sorted(given & {*LIVE_ONLY, "workers", "speed", "mirror_port"})
    if packets_only:
        parser.error(f"{_flag(packets_only[0])} applies to packets, not to --zeek logs")


def _error_log(args: argparse.Namespace) -> ErrorLog:
    """Made after root is given up: the default path is the home of the user smtptop runs as."""
    from smtptop.errorlog import ErrorLog, default_path

    return ErrorLog(args.error_log or default_path())


def _detect_config(args: argparse.Namespace) -> DetectConfig:
    """The detection policy: the defaults, the file's settings, then each ``--detect``.
    Raises OSError (the file) or ValueError (a setting)."""
    from smtptop.detect import DetectConfig, load_settings

    settings = load_settings(args.detect_config) if args.detect_config else {}
    settings.update(dict(args.detect))
    if args.quiet_after is not None:
        settings["quiet_after"] = str(args.quiet_after)
    config = DetectConfig(
        smarthosts=tuple(h.lower() for h in args.smarthost),
        mail_servers=tuple(args.mail_server),
    )
    return config.with_settings(settings)


def check_outputs(args: argparse.Namespace, user: struct_passwd | None, owner: Owner) -> None:
    """Before anything is captured: can the user smtptop will run as write what it writes
    after root is given up (an --error-log; the -o report, which it renames into place when
    it is the report's owner)?  A report lost at the end of a ten-minute capture is worse
    than a refusal at once.  -w needs no check: it is opened before, and written through
    that descriptor."""
    from smtptop import files
    from smtptop.live import acting_as

    evidence = getattr(args, "evidence", None)
    if evidence and os.path.lexists(evidence):
        raise files.OutputError(f"--evidence {evidence}: it exists; name a new folder")
    evidence_dir = getattr(args, "evidence_dir", None)
    wanted = [
        ("--error-log", args.error_log, False),
        ("--evidence", evidence, True),  # made beside it, then renamed into place
        ("--evidence-dir", evidence_dir, False),
    ]
    if evidence_dir and not os.path.isdir(evidence_dir):
        raise files.OutputError(f"--evidence-dir {evidence_dir}: no such folder")
    output = getattr(args, "output", None)
    if output and not files.is_stream(output) and not _made_now(user, owner):
        wanted.append(("-o", output, True))  # renamed into place: its folder is what counts
    with acting_as(user):
        for flag, path, folder_only in wanted:
            problem = path and files.writable_problem(path, folder_only=folder_only)
            if problem:
                who = f"running as {user.pw_name}, smtptop" if user else "smtptop"
                raise files.OutputError(f"{flag} {path}: {who} {problem}")


def _made_now(user: struct_passwd | None, owner: Owner) -> bool:
    """Whether the -o file is made when the capture starts (see files.Report)."""
    return user is not None and user.pw_uid != owner.uid


def open_live(
    args: argparse.Namespace, ifaces: Sequence[str], owner: Owner
) -> tuple[Source, list[str]]:
    """Open the capture sockets of every interface (as root, if we are root) and the -w
    file, for ``owner``: read in this process (``--workers 0``), or by engine processes,
    each with a socket of each interface.  The LAN networks are --lan's and every
    interface's own."""
    from smtptop.live import interface_networks, open_interfaces
    from smtptop.pipeline import default_live_workers

    workers = args.workers
    if workers is None:  # -w is written by the one process that reads its socket
        workers = min(default_live_workers(), 1) if args.write else default_live_workers()
    options = {
        "ports": args.ports,
        "promisc": args.promisc,
        "expression": args.expression,
        "write": args.write,
        "owner": owner,
        "mirrors": args.mirrors if args.mirror or args.mirror_port else None,
    }
    source = open_interfaces(ifaces, workers, **options)
    networks = [network for iface in ifaces for network in interface_networks(iface)]
    return source, list(dict.fromkeys([*args.lan, *networks]))


def give_up_root(source: Source, user: struct_passwd | None) -> None:
    """Drop root and every capability once the socket is open, before any packet is parsed
    (and before an engine process is forked)."""
    from smtptop.live import Interfaces, LiveSource, drop_privileges
    from smtptop.source import Parallel

    if not isinstance(source, LiveSource | Interfaces | Parallel):
        return
    try:
        drop_privileges(user)
    except BaseException:
        source.close()
        raise


def in_time_order(paths: Sequence[str]) -> list[str]:
    """The files sorted by the time of their first packet: the order in which the merge by
    timestamp (:mod:`smtptop.merge`) breaks ties, and the pieces of one capture (``tcpdump
    -C`` or ``-G``) are listed in, in whatever order they were named.  Only the first record
    of each is read; files without one come first.  A file that cannot be read raises its
    one-line CaptureError."""
    from smtptop.capture import CaptureFile

    if len(paths) < 2:  # nothing to order: a file without packets is not read twice
        return list(paths)
    starts = []
    for index, path in enumerate(paths):
        records = iter(CaptureFile(path))
        first = next(records, None)
        records.close()
        starts.append((-float("inf") if first is None else first[0], index, path))
    return [path for _, _, path in sorted(starts)]


def file_source(args: argparse.Namespace) -> FileSource:
    """The monitor's capture files (``-r``, or demo's), in time order; or standard input
    (``-r -``), read as it comes, the keys then read from the terminal."""
    from smtptop.capture import STDIN
    from smtptop.source import FileSource, StreamSource

    if args.read == [STDIN]:
        if sys.stderr.isatty():  # until the stream's first bytes come, the screen says so
            print("smtptop: waiting for a capture on standard input...", file=sys.stderr)
        source = StreamSource(ports=frozenset(args.ports), mirrors=args.mirrors)  # fd 0's copy
        keys_from_terminal()
        return source
    return FileSource(
        in_time_order(args.read),
        speed=args.speed,
        ports=frozenset(args.ports),
        mirrors=args.mirrors,
    )


def keys_from_terminal() -> None:
    """Standard input carries the capture: the monitor reads its keys from the terminal
    (fd 0 becomes /dev/tty; the capture reads its own copy of the pipe)."""
    from smtptop.files import OutputError

    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError as exc:
        raise OutputError(f"-r -: the monitor reads its keys from a terminal ({exc.strerror});"
                          " without one, smtptop report - reads the stream") from None  # fmt: skip
    os.dup2(terminal, 0)
    os.close(terminal)


def run_monitor(args: argparse.Namespace) -> int:
    from smtptop.analyzer import EngineConfig
    from smtptop.capture import CaptureError
    from smtptop.files import OutputError, invoking_user
    from smtptop.live import CaptureSetupError, default_interface, run_as
    from smtptop.source import StreamSource, ZeekSource
    from smtptop.tui.app import MonitorApp
    from smtptop.zeekfiles import ZeekError

    lan = list(args.lan)
    source: Source
    buffer = 0  # the packets of a replay, or of -w, are read back from the files
    try:
        if args.zeek:
            check_outputs(args, None, invoking_user())
            source = ZeekSource(args.zeek[0], ports=frozenset(args.ports))
        elif args.read:
            check_outputs(args, None, invoking_user())
            source = file_source(args)
            if isinstance(source, StreamSource):  # read once: bundles take the buffer's packets
                buffer = args.evidence_buffer
        else:
            default = default_interface() if not args.interface else None
            ifaces = args.interface or ([default] if default is not None else [])
            if not ifaces:
                print("smtptop: no default route: name an interface with -i", file=sys.stderr)
                return EXIT_USAGE
            user, owner = run_as(args.user), invoking_user()
            check_outputs(args, user, owner)
            source, lan = open_live(args, ifaces, owner)
            give_up_root(source, user)
            buffer = 0 if args.write else args.evidence_buffer
    except (CaptureError, CaptureSetupError, OutputError, ZeekError) as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    app = MonitorApp(
        source,
        config=EngineConfig(ports=args.ports, mirrors=args.mirrors, evidence_buffer=buffer),
        evidence_dir=args.evidence_dir,
        lan=lan,
        show_credentials=args.show_credentials,
        top=args.top,
        detect=args.policy,
        bell=args.bell,
        alert_exec=args.alert_exec,
        error_log=_error_log(args),
    )
    app.run()
    return EXIT_INPUT if app.failure else EXIT_OK


def run_interfaces() -> int:
    from smtptop.live import list_interfaces

    for interface in list_interfaces():
        mark = "*" if interface.default else " "
        print(f"{mark} {interface.name:16} {' '.join(interface.addresses)}".rstrip())
    print("(* carries the default route: plain 'smtptop' captures there)")
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    """The report; its exit statuses are documented in the README ("smtptop report")."""
    from smtptop.files import OutputError, Report, invoking_user
    from smtptop.live import CaptureSetupError, run_as

    owner = invoking_user()  # before root is given up
    try:
        user = run_as(args.user) if args.interface else None
        check_outputs(args, user, owner)
        made_now = _made_now(user, owner)
        output = Report(args.output, owner, made_now=made_now) if args.output else None
    except (CaptureSetupError, OutputError) as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        return _report(args, owner, user, output)
    finally:
        if output is not None:
            output.discard()  # closes it; without a commit, the target is left as it was


def _report(
    args: argparse.Namespace, owner: Owner, user: struct_passwd | None, output: Report | None
) -> int:
    from smtptop.analysis import analyze, analyze_live, analyze_zeek
    from smtptop.capture import STDIN, CaptureError
    from smtptop.evidence import EvidenceError, chosen_hosts
    from smtptop.files import OutputError
    from smtptop.live import CaptureSetupError
    from smtptop.pipeline import EngineFailed
    from smtptop.render import write_csv, write_json, write_table
    from smtptop.text import plural
    from smtptop.zeekfiles import ZeekError

    lost = 0
    paths: list[str] = []  # the files, in time order
    try:
        if args.interface:
            # a service manager stops with SIGTERM: report what was captured, as for Ctrl-C
            signal.signal(signal.SIGTERM, _interrupt)
            source, lan = open_live(args, args.interface, owner)
            give_up_root(source, user)
            errors = _error_log(args)
            analysis = analyze_live(
                source,
                duration=args.duration,
                ports=args.ports,
                lan=lan,
                show_credentials=args.show_credentials,
                detect=args.policy,
                on_error=errors,
                evidence_buffer=0 if args.write or not args.evidence else args.evidence_buffer,
                evidence_hosts=lambda done: chosen_hosts(done, args.host),
                mirrors=args.mirrors,
            )
            lost = analysis.kernel_drops  # the total: counted until the sockets closed
        elif args.zeek:
            errors = _error_log(args)
            analysis = analyze_zeek(
                args.zeek,
                ports=args.ports,
                lan=args.lan,
                show_credentials=args.show_credentials,
                detect=args.policy,
            )
        else:
            errors = _error_log(args)
            paths = in_time_order(args.files)
            shown = sys.stderr.isatty() and STDIN not in paths  # a stream has no size to show
            progress = ReadProgress(paths, sys.stderr) if shown else None
            try:
                analysis = analyze(
                    paths,
                    ports=args.ports,
                    lan=args.lan,
                    show_credentials=args.show_credentials,
                    detect=args.policy,
                    progress=progress,
                    on_error=errors,
                    max_bytes=args.max_bytes,
                    workers=args.workers,
                    mirrors=args.mirrors,
                )
            finally:
                if progress is not None:
                    progress.erase()
        flagged = chosen_hosts(analysis, args.host) if args.evidence or args.contain else []
    except (
        CaptureError,
        CaptureSetupError,
        EngineFailed,
        OutputError,
        EvidenceError,
        ZeekError,
    ) as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return EXIT_INPUT
    out = output.text if output is not None else sys.stdout
    if args.contain:
        write_rules(analysis, flagged, args.contain, out)
    elif args.json:  # written record by record: the report is never whole in memory
        write_json(analysis, out)
    elif args.csv:
        write_csv(analysis, out)
    else:
        write_table(analysis, out)
    if output is not None:
        output.commit()
    else:
        sys.stdout.flush()
    for warning in analysis.warnings:
        print(f"smtptop: warning: {warning}", file=sys.stderr)
    if args.evidence and not write_evidence(args, analysis, flagged, owner, paths):
        return EXIT_INPUT
    if analysis.stats.errors:
        failed = plural(analysis.stats.errors, "packet")
        if errors.problem:
            where = f"their details could not be written to {errors.path} ({errors.problem})"
        else:
            where = f"details in {errors.path}"
        print(f"smtptop: {failed} could not be analysed; {where}", file=sys.stderr)
    if args.interface:
        return EXIT_LOSS if lost else EXIT_OK
    return EXIT_INPUT if analysis.warnings else EXIT_OK


def write_rules(analysis: Analysis, hosts: list[str], syntax: str, out: TextIO) -> None:
    """``--contain``: the rules of one syntax for each host, ready to paste."""
    from smtptop import contain
    from smtptop.evidence import containment

    if not hosts:
        out.write("# smtptop: no spambot or suspicious host: nothing to contain\n")
    write = contain.WRITERS[syntax]
    detector = analysis.detector
    assert detector is not None
    for ip in hosts:
        out.write(write(containment(detector, ip)))


def write_evidence(
    args: argparse.Namespace, analysis: Analysis, hosts: list[str], owner: Owner, paths: list[str]
) -> bool:
    """``--evidence DIR``: the bundle of ``paths`` (the files, in time order; of a live
    capture, its -w file or its engines' rings), or one line saying why not."""
    from smtptop.evidence import (
        BUFFER_NOTE,
        Capture,
        EvidenceError,
        ReadBack,
        Recorded,
        prepare,
        write_bundle,
    )
    from smtptop.text import plural

    if not hosts:
        print("smtptop: no spambot or suspicious host: no evidence written", file=sys.stderr)
        return True
    command = shlex.join(["smtptop", *sys.argv[1:]])
    notes = list(analysis.warnings)
    recorded: Recorded
    if args.interface:
        ifaces = ", ".join(args.interface)
        notes.insert(0, f"live capture on {ifaces} for up to {args.duration:g} s")
    if paths or args.write:  # the files, or a live capture's -w file: read back, all of it
        paths = paths or [args.write]
        recorded = ReadBack(paths, frozenset(args.ports), args.mirrors)
    else:
        recorded = analysis.recorded or {}
        notes.append(BUFFER_NOTE)
    capture = Capture(paths, command, notes)
    try:
        assert analysis.detector is not None
        texts = prepare(analysis.model, analysis.detector, analysis.verdicts(), capture, hosts)
        write_bundle(texts, args.evidence, recorded, owner=owner)
    except EvidenceError as exc:
        print(f"smtptop: {exc}", file=sys.stderr)
        return False
    print(f"smtptop: evidence for {plural(len(hosts), 'host')} in {args.evidence}",
          file=sys.stderr)  # fmt: skip
    return True


class ReadProgress:
    """The report's progress line on a terminal's stderr: bytes done of all files, share,
    packets per second and time left, redrawn in place a few times a second and erased
    at the end, so that the report itself is never mixed with it."""

    def __init__(self, paths: Sequence[str], out: TextIO) -> None:
        from smtptop.progress import Speedometer

        self.out = out
        self.total = sum(os.path.getsize(path) for path in paths)
        self.speed = Speedometer()
        self.speed.update(time.monotonic(), 0, 0)
        self._drawn = 0.0
        self._width = 0

    def __call__(self, position: int, packets: int, unpacked: int) -> None:
        from smtptop.progress import data_size, describe

        now = time.monotonic()
        if now - self._drawn < PROGRESS_EVERY:
            return
        done = min(self.total, position)
        self.speed.update(now, packets, done)
        line = "smtptop: reading " + describe(self.speed, done, self.total)
        if unpacked > done:  # compressed: the data it unpacks to, where a bomb shows
            line += f"  {data_size(unpacked)} unpacked"
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
