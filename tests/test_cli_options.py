"""The command line's options: refused combinations, the same meaning before or after the
command, several capture files read as one in time order, and a --help that shows how to use it."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
from pathlib import Path

import helpers
import pytest
import synth

from smtptop.cli import file_source, main, parse_args, sample_path
from smtptop.keys import keys_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = sample_path()


# (argv, what the one line must say); "W" stands for a -w file that must never be made
REFUSED = [
    (["-r", SAMPLE, "-i", "lo"], "-r reads files and -i captures live"),
    (["-i", "lo", "-r", SAMPLE], "-r reads files and -i captures live"),
    (["-r", SAMPLE, "-w", "W"], "-w only applies to a live capture (-i), not to -r"),
    (["--no-promisc", "-r", SAMPLE], "--no-promisc only applies to a live capture"),
    (["-r", SAMPLE, "-f", "tcp port 25"], "-f only applies to a live capture"),
    (["-r", SAMPLE, "--user", "nobody"], "--user only applies to a live capture"),
    (["demo", "-w", "W"], "-w does not apply to 'smtptop demo'"),
    (["-w", "W", "demo"], "-w does not apply to 'smtptop demo'"),
    (["demo", "-i", "lo"], "-i does not apply to 'smtptop demo'"),
    (["-i", "lo", "demo"], "-i does not apply to 'smtptop demo'"),
    (["-r", SAMPLE, "demo"], "-r does not apply to 'smtptop demo'"),
    (["report", "--duration", "5", SAMPLE], "--duration only applies to a live capture"),
    (["report", "--sample", "--duration", "5"], "--duration only applies to a live capture"),
    (["report", "-i", "lo", "--duration", "0"], "--duration: must be above 0"),
    (["report", "--sample", "-w", "W"], "-w only applies to a live capture (-i)"),
    (["report", "--sample", "--user", "nobody"], "--user only applies to a live capture"),
    (["report", "--sample", "-i", "lo"], "give capture files or -i IFACE, not both"),
    (["-r", SAMPLE, "--workers", "2"], "--workers only applies to a live capture (-i), not to -r"),
    (["demo", "--workers", "2"], "--workers does not apply to 'smtptop demo'"),
    (["report", "--sample", "--workers", "65"], "--workers: must be 0 to 64, not 65"),
    (["report", "-i", "lo", "--max-bytes", "5M"], "--max-bytes only applies to capture files"),
    (["report", "-i", "lo", "--workers", "2", "-w", "W"], "-w writes what one socket captures"),
    (["-i", "lo", "-w", "W", "--workers", "3"], "give --workers 1 (or 0), not 3"),
    (["report", "-i", "lo", SAMPLE], "give capture files or -i IFACE, not both"),
    (["report"], "give capture files, --sample, -i IFACE, or --zeek LOGS"),
    (["--top", "0"], "--top: must be 1 or more"),
    (["--top", "-5", "-r", SAMPLE], "--top: must be 1 or more"),
    (["demo", "--top", "0"], "--top: must be 1 or more"),
    (["--top", "many"], "--top: not a whole number"),
    (["-r", SAMPLE, "--speed", "0"], "--speed: must be above 0"),
    (["--speed", "-2", "-r", SAMPLE], "--speed: must be above 0"),
    (["--speed", "nan", "demo"], "--speed: must be above 0"),
    (["demo", "--speed", "fast"], "--speed: not a number"),
    (["--speed", "5"], "--speed only applies to replaying files"),
    (["-i", "lo", "--speed", "5"], "--speed only applies to replaying files"),
    (["--top", "5", "report", "--sample"], "--top does not apply to 'smtptop report'"),
    (["report", "--sample", "--top", "5"], "--top does not apply to 'smtptop report'"),
    (["report", "--sample", "--bell"], "--bell does not apply to 'smtptop report'"),
    (["report", "--sample", "--speed", "2"], "--speed does not apply to 'smtptop report'"),
    (["report", "-r", SAMPLE], "-r does not apply to 'smtptop report'"),
    (["-r", SAMPLE, "report"], "-r does not apply to 'smtptop report'"),
    (["interfaces", "--top", "3"], "--top does not apply to 'smtptop interfaces'"),
    (["--lan", "10.0.0.0/8", "interfaces"], "--lan does not apply to 'smtptop interfaces'"),
    (["report", "--json", "--csv", "--sample"], "--csv: not allowed with argument --json"),
    (["--ports", "25,x", "report", SAMPLE], "--ports: not a list of port numbers"),
    (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
    (["interfaces", "--detect", "spambot=70"], "--detect does not apply to 'smtptop interfaces'"),
    (["demo", "--detect", "spambot"], "--detect: expected NAME=VALUE, not 'spambot'"),
    (["--detect", "many=1", "report", SAMPLE], "--detect: no setting 'many'"),
    (["report", "--sample", "--evidence-buffer", "1M"], "--evidence-buffer only applies to a live"),
    (["-r", SAMPLE, "--evidence-buffer", "1M"], "--evidence-buffer only applies to a live"),
    (["-i", "lo", "--evidence-buffer", "lots"], "--evidence-buffer: not a size such as 500M"),
    (["-i", "lo", "--evidence-buffer", "64K"], "--evidence-buffer: must be 0 (none) or 1M or more"),
    (["report", "--sample", "--evidence-dir", "/tmp"], "--evidence-dir does not apply to 'smtptop"),
    (["report", "--sample", "--evid", "/tmp/x"], "unrecognized arguments: --evid"),
    (["report", "-i", "lo", "--evidence", "E", "--evidence-buffer", "0"], "needs the packets"),
    (["-r", "-", SAMPLE], "-r -: standard input is read alone, not with files"),
    (["-r", "-", "--speed", "2"], "--speed replays files: a stream on standard input"),
    (["report", "-", SAMPLE], "-: standard input is read alone, not with files"),
    (["report", "-", "--evidence", "E"], "--evidence reads the packets back from files"),
    (["report", "-", "--workers", "2"], "--workers: standard input is read by one process"),
    (["report", SAMPLE, "--zeek", "/tmp"], "--zeek reads logs: give capture files, -i IFACE"),
    (["report", "--zeek", "/tmp", "-i", "lo"], "--zeek reads logs: give capture files, -i IFACE"),
    (["report", "--zeek", "/tmp", "--evidence", "E"], "Zeek's logs hold none"),
    (["report", "--zeek", "/tmp", "--workers", "2"], "--workers applies to capture files, not"),
    (["report", "--zeek", "/tmp", "--max-bytes", "1M"], "--max-bytes applies to capture files"),
    (["report", "--zeek", "/tmp", "-w", "W"], "-w only applies to a live capture (-i)"),
    (["--zeek", "/tmp", "-r", SAMPLE], "--zeek follows logs: give -r, -i or --zeek, not two"),
    (["--zeek", "/tmp", "-i", "lo"], "--zeek follows logs: give -r, -i or --zeek, not two"),
    (["--zeek", "/tmp", "/var"], "the monitor follows one folder"),
    (["--zeek", "/tmp", "--speed", "2"], "--speed applies to packets, not to --zeek logs"),
    (["--zeek", "/tmp", "-w", "W"], "-w applies to packets, not to --zeek logs"),
    (["demo", "--zeek", "/tmp"], "--zeek does not apply to 'smtptop demo'"),
    (["-r", "-", "-r", SAMPLE], "-r -: standard input is read alone, not with files"),
    (["-i", "lo", "-i", "lo"], "-i lo is given twice: each interface is captured once"),
    (["-i", "lo", "report", "-i", "lo"], "-i lo is given twice"),
    (["report", "-i", "lo", "-i", "eth9", "-i", "lo"], "-i lo is given twice"),
    (["report", "-i", "lo", "-i", "eth9", "-w", "W"], "-w writes what one interface captures"),
    (["-i", "lo", "-i", "eth9", "-w", "W", "--workers", "1"], "-w writes what one interface"),
    (["-i", "lo", "-i", "eth9", "-r", SAMPLE], "-r reads files and -i captures live"),
    (["report", "-i", "lo", "-i", "eth9", SAMPLE], "give capture files or -i IFACE, not both"),
    (["report", "-i", "lo", "-i", "eth9", "--max-bytes", "5M"], "--max-bytes only applies"),
    (["report", SAMPLE, "--mirror-port", "gre:9000"], "not KIND:PORT with KIND tzsp or vxlan"),
    (["report", SAMPLE, "--mirror-port", "tzsp:0"], "not KIND:PORT"),
    (["report", SAMPLE, "--mirror-port", "vxlan"], "not KIND:PORT"),
    (["report", SAMPLE, "--mirror-port", "vxlan:37008"], "UDP 37008 is TZSP's already"),
    (
        ["-r", SAMPLE, "--mirror-port", "tzsp:9000", "--mirror-port", "vxlan:9000"],
        "UDP 9000 is TZSP's already",
    ),
    (
        ["report", SAMPLE, "--mirror-port", "tzsp:53"],
        "report: error: --mirror-port tzsp:53: smtptop reads who is who on UDP 53",
    ),
    (["report", "--zeek", SAMPLE, "--mirror-port", "tzsp:9000"], "applies to capture files"),
    (["--zeek", "/tmp", "--mirror-port", "tzsp:9000"], "applies to packets, not to --zeek"),
    (["demo", "--mirror-port", "tzsp:9000"], "--mirror-port does not apply to 'smtptop demo'"),
]


def smtptop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """From ``/``: no option may depend on the folder it is run from."""
    return helpers.smtptop(*args, timeout=timeout, cwd="/")


@pytest.mark.parametrize(("argv", "says"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_combination_that_cannot_apply_is_one_line_and_status_2(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = tmp_path / "evidence.pcap"
    argv = [str(written) if arg == "W" else arg for arg in argv]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out = capsys.readouterr()
    assert exited.value.code == 2
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert says in lines[0]
    assert lines[0].startswith("smtptop") and ": error: " in lines[0]
    assert lines[0].endswith(" --help)") and "(see smtptop" in lines[0]
    assert "usage:" not in out.err
    assert not written.exists()


def test_the_real_command_refuses_with_one_line_too() -> None:
    out = smtptop("--top", "0", "-r", SAMPLE)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "smtptop: error: --top: must be 1 or more, not 0 (see smtptop --help)\n"
    out = smtptop("report", "--duration", "5", SAMPLE)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "smtptop report: error: --duration only applies to a live capture (-i) "
        "(see smtptop report --help)"
    ]


SAME = [
    (["--speed", "5", "demo"], ["demo", "--speed", "5"], {"speed": 5.0, "read": [SAMPLE]}),
    (["--top", "7", "--bell", "demo"], ["demo", "--bell", "--top", "7"], {"top": 7, "bell": True}),
    (
        ["--alert-exec", "cat", "--error-log", "/tmp/e.log", "demo"],
        ["demo", "--error-log", "/tmp/e.log", "--alert-exec", "cat"],
        {"alert_exec": "cat", "error_log": "/tmp/e.log"},
    ),
    (
        ["--lan", "10.9.0.0/16", "report", SAMPLE],
        ["report", "--lan", "10.9.0.0/16", SAMPLE],
        {"lan": ["10.9.0.0/16"], "files": [SAMPLE]},
    ),
    (
        ["--ports", "25,2526", "--show-credentials", "report", "--sample"],
        ["report", "--sample", "--show-credentials", "--ports", "25,2526"],
        {"ports": frozenset({25, 2526}), "show_credentials": True},
    ),
    (
        ["--smarthost", "relay.example", "--mail-server", "10.0.0.5", "report", SAMPLE],
        ["report", "--mail-server", "10.0.0.5", SAMPLE, "--smarthost", "relay.example"],
        {"smarthost": ["relay.example"], "mail_server": ["10.0.0.5"]},
    ),
    (
        ["-i", "eth1", "-w", "x.pcap", "--user", "nobody", "--no-promisc", "report"],
        ["report", "--no-promisc", "-i", "eth1", "--user", "nobody", "-w", "x.pcap"],
        {"interface": ["eth1"], "write": "x.pcap", "user": "nobody", "promisc": False},
    ),
]


@pytest.mark.parametrize(("before", "after", "values"), SAME)
def test_an_option_means_the_same_before_or_after_the_command(
    before: list[str], after: list[str], values: dict[str, object]
) -> None:
    resolved = vars(parse_args(before))
    assert resolved == vars(parse_args(after))
    assert {name: resolved[name] for name in values} == values


def test_repeated_options_add_up_across_the_command() -> None:
    args = parse_args(["--lan", "10.1.0.0/16", "report", "--lan", "10.2.0.0/16", "--sample"])
    assert args.lan == ["10.1.0.0/16", "10.2.0.0/16"]
    assert parse_args(["--speed", "2", "demo", "--speed", "3"]).speed == 3.0


def test_interfaces_add_up_across_the_command_in_the_order_given() -> None:
    assert parse_args(["-i", "eth2", "report", "-i", "eth1"]).interface == ["eth2", "eth1"]
    assert parse_args(["-i", "eth1", "-i", "eth2", "--workers", "2"]).interface == [
        "eth1",
        "eth2",
    ]


def test_defaults_are_filled_in_for_what_was_not_given() -> None:
    demo = parse_args(["demo"])
    assert (demo.speed, demo.read, demo.top, demo.lan) == (10.0, [SAMPLE], 200, [])
    replay = parse_args(["-r", SAMPLE])
    assert (replay.speed, replay.interface, replay.promisc) == (None, [], True)
    assert parse_args(["report", "-i", "lo"]).duration == 60.0
    assert parse_args(["report", "-i", "lo", "--duration", "600"]).duration == 600.0
    assert parse_args(["report", SAMPLE]).duration is None
    assert parse_args(["report", "--sample", SAMPLE]).files == [SAMPLE, SAMPLE]


def test_lan_given_before_the_command_reaches_the_report(tmp_path: Path) -> None:
    """Through the real command: the option before `report` counts as it does after it."""
    path = tmp_path / "outside.pcap"
    conv = synth.Conversation("203.0.113.5", 40000, "198.51.100.1", 25, start=1.0)
    conv.smtp([("S", b"220 mx\r\n"), ("C", b"HELO a.example\r\n"), ("S", b"250 ok\r\n")])
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    runs = {
        "none": smtptop("report", "--json", str(path)),
        "before": smtptop("--lan", "203.0.113.0/24", "report", "--json", str(path)),
        "after": smtptop("report", "--json", "--lan", "203.0.113.0/24", str(path)),
    }
    lan = {where: json.loads(out.stdout)["hosts"][0]["lan"] for where, out in runs.items()}
    assert lan == {"none": False, "before": True, "after": True}


def split_capture(folder: Path) -> tuple[Path, Path]:
    """One SMTP session cut in two files, as `tcpdump -G` rotation leaves it."""
    conv = synth.Conversation("192.168.7.20", 40001, "198.51.100.9", 25, start=1_700_000_000.0)
    conv.smtp([("S", b"220 mx.example ESMTP\r\n"), ("C", b"EHLO pc.example\r\n")])
    conv.smtp([("S", b"250 mx.example\r\n")])
    cut = len(conv.frames)
    conv.smtp(
        [
            ("C", b"MAIL FROM:<a@example.org>\r\n", 5.0),
            ("S", b"250 ok\r\n"),
            ("C", b"RCPT TO:<b@example.net>\r\n"),
            ("S", b"550 5.1.1 no such user\r\n"),
            ("C", b"QUIT\r\n"),
            ("S", b"221 bye\r\n"),
        ]
    )
    conv.close()
    early, late = folder / "b-early.pcap", folder / "a-late.pcap"
    synth.write_pcap(early, conv.frames[:cut], synth.LINKTYPE_ETHERNET)
    synth.write_pcap(late, conv.frames[cut:], synth.LINKTYPE_ETHERNET)
    return early, late


def test_report_reads_files_in_time_order_whatever_the_order_given(tmp_path: Path) -> None:
    early, late = split_capture(tmp_path)
    given_late_first = smtptop("report", "--json", str(late), str(early))
    given_early_first = smtptop("report", "--json", str(early), str(late))
    assert given_late_first.returncode == 0, given_late_first.stderr
    assert given_late_first.stdout == given_early_first.stdout
    report = json.loads(given_late_first.stdout)
    [session] = report["sessions"]
    assert (session["helo"], session["partial"], session["outcome"]) == (
        "pc.example",
        False,
        "rejected",
    )
    assert session["mail_from"] == ["a@example.org"]


@pytest.mark.parametrize(
    "argv", [["-r", "LATE", "-r", "EARLY"], ["-r", "LATE", "EARLY"], ["-r", "EARLY", "LATE"]]
)
def test_the_monitor_reads_every_file_in_time_order(argv: list[str], tmp_path: Path) -> None:
    early, late = split_capture(tmp_path)
    names = {"EARLY": str(early), "LATE": str(late)}
    source = file_source(parse_args([names.get(arg, arg) for arg in argv]))
    assert source.paths == [str(early), str(late)]
    times = [ts for ts, _, _ in source.frames(threading.Event())]
    assert len(times) > 10 and times == sorted(times)


def test_a_file_that_cannot_be_read_still_gives_its_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    for argv in (["report", SAMPLE, str(missing)], ["-r", SAMPLE, str(missing)]):
        out = smtptop(*argv)
        assert out.returncode == 1, out
        assert out.stderr == f"smtptop: {missing}: no such file\n"


def test_help_shows_examples_and_the_keys() -> None:
    out = smtptop("--help")
    assert out.returncode == 0
    for example in (
        "sudo smtptop -i eth1 ",
        "smtptop demo ",
        "smtptop -r capture.pcap --speed 5 ",
        "smtptop report capture.pcap --json ",
        "sudo smtptop report -i eth1 --duration 600 --json -o spam.json\n",
    ):
        assert f"\n  {example}" in out.stdout
    assert textwrap.indent(keys_text(), "  ") in out.stdout
    assert "their packets merged by timestamp" in " ".join(out.stdout.split())
    report = smtptop("report", "--help")
    assert "their packets merged by timestamp" in " ".join(report.stdout.split())
    assert "--duration SECONDS" in report.stdout and "--top" not in report.stdout


def test_quiet_after_reaches_the_detector() -> None:
    args = parse_args(["report", "--sample", "--quiet-after", "3600"])
    assert args.policy.quiet_after == 3600.0
    assert parse_args(["demo"]).policy.quiet_after == 600.0


def test_an_evidence_dir_that_is_not_a_folder_is_refused_before_the_monitor_starts(
    tmp_path: Path,
) -> None:
    for argv in (["-r", SAMPLE], ["demo"]):
        done = smtptop(*argv, "--evidence-dir", str(tmp_path / "missing"))
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"smtptop: --evidence-dir {tmp_path / 'missing'}: no such folder\n"
