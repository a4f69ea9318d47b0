"""The evidence bundle and the containment rules, as ``smtptop report`` writes them.

The bundle's pcap is checked against tshark's own selection of the same capture; the rules
are checked by nft itself (a namespace test in test_live_gateway.py shows them working);
bad input (an existing or unwritable folder, a host not in the capture, a full disk) must
give one line and leave nothing half written.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from helpers import smtptop
from test_live_capture import IP, remove_namespaces, run

from smtptop import contain
from smtptop.analysis import analyze
from smtptop.capture import CaptureFile
from smtptop.cli import CONTAIN_SYNTAXES
from smtptop.cli import sample_path as demo_path
from smtptop.evidence import chosen_hosts

SAMPLE = demo_path()
TSHARK, NFT = shutil.which("tshark"), shutil.which("nft") or shutil.which("nft", path="/usr/sbin")
PORTS = "25,465,587,2525"
FILES = {"smtp.pcap", "summary.json", "summary.md", "transcripts.txt", "find-process.txt",
         "containment"}  # fmt: skip
RULES = {"nftables.nft", "iptables.sh", "routeros.rsc"}


@pytest.fixture(scope="module")
def flagged() -> list[str]:
    hosts = chosen_hosts(analyze([SAMPLE], workers=0), [])
    assert hosts, "the demo has a spambot"
    return hosts


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bundle") / "evidence"
    done = smtptop("report", SAMPLE, "--evidence", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith(f"in {folder}")
    assert done.stdout.startswith("HOST"), "the report is printed as well"
    return folder


def test_a_folder_per_flagged_host_with_every_file_private(bundle: Path, flagged) -> None:
    assert sorted(p.name for p in bundle.iterdir()) == sorted(flagged)
    for host in flagged:
        folder = bundle / host
        assert {p.name for p in folder.iterdir()} == FILES
        assert {p.name for p in (folder / "containment").iterdir()} == RULES
        for path in [folder, *folder.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".smtptop")]


def tshark_selection(path: str, host: str) -> list[int]:
    """The frame lengths of what tshark selects as this host's SMTP packets."""
    done = subprocess.run(
        [TSHARK, "-r", path, "-Y", f"ip.addr=={host} && tcp.port in {{{PORTS}}}",
         "-T", "fields", "-e", "frame.len"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [int(n) for n in done.stdout.split()]


@pytest.mark.skipif(TSHARK is None, reason="needs tshark")
def test_the_pcap_holds_what_tshark_selects_and_opens_cleanly(bundle: Path, flagged) -> None:
    for host in flagged:
        pcap = bundle / host / "smtp.pcap"
        lengths = [len(frame) for _, _, frame in CaptureFile(str(pcap))]
        assert lengths == tshark_selection(SAMPLE, host)
        assert sum(lengths) > 0
        done = subprocess.run([TSHARK, "-r", str(pcap), "-q"], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        warnings = [line for line in done.stderr.splitlines() if not line.startswith("Running as")]
        assert (done.returncode, warnings) == (0, [])


def test_summary_json_is_the_hosts_record_and_its_sessions(bundle: Path, flagged) -> None:
    report = json.loads(smtptop("report", SAMPLE, "--json").stdout)
    for host in flagged:
        summary = json.loads((bundle / host / "summary.json").read_text())
        assert list(summary) == ["host", "sessions"]
        sessions = summary["sessions"]
        assert summary["host"] == next(h for h in report["hosts"] if h["ip"] == host)
        theirs = [s for s in report["sessions"] if s["client"].startswith(f"{host}:")]
        assert sorted(sessions, key=json.dumps) == sorted(theirs, key=json.dumps)


def test_summary_md_names_the_blocklists_the_verdict_and_the_capture(bundle: Path, flagged) -> None:
    page = (bundle / flagged[0] / "summary.md").read_text()
    for expected in ("spambot", "Spamhaus ZEN", "blocked using zen.spamhaus.org", "## Timeline",
                     "direct-to-mx", os.path.basename(SAMPLE), "AUTH credentials"):  # fmt: skip
        assert expected in page, expected
    assert f"nft delete table inet {contain.table_name(flagged[0])}" in page


def test_summary_md_timeline_counts_every_session_by_minute(bundle: Path, flagged) -> None:
    host = analyze([SAMPLE], workers=0).model.hosts[flagged[0]]
    page = (bundle / flagged[0] / "summary.md").read_text()
    block = page.split("## Timeline\n\n```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].split() == ["minute", "from", "(UTC)", "sessions", "rejected"]
    rows = [line.split() for line in block[1:]]
    minutes = [f"{day} {hour}" for day, hour, *_ in rows]
    assert minutes == sorted(set(minutes)) and len(minutes) > 5
    sessions = sum(int(row[2]) for row in rows)
    rejected = sum(int(row[3]) for row in rows)
    assert (sessions, rejected) == (host.sessions, host.rejected_sessions)
    for row in rows:
        assert int(row[2]) >= int(row[3]) and set(row[4]) == {"#"}


def auth_host() -> str:
    analysis = analyze([SAMPLE], workers=0)
    return next(s.client_ip for s in analysis.model.sessions() if s.auth)


def test_credentials_are_masked_unless_asked_for(tmp_path: Path) -> None:
    host = auth_host()
    revealed = analyze([SAMPLE], workers=0, show_credentials=True)
    secrets = {
        line.text
        for s in revealed.model.host_sessions(host)
        for line in s.transcript
        if line.kind == "C" and s.auth and line.text.endswith("=")
    }
    assert secrets, "the AUTH exchange's base64 lines"
    for shown, options in ((False, ()), (True, ("--show-credentials",))):
        folder = tmp_path / f"shown-{shown}"
        done = smtptop("report", SAMPLE, "--evidence", str(folder), "--host", host, *options)
        assert done.returncode == 0, done.stderr
        for name in ("transcripts.txt", "summary.json"):
            text = (folder / host / name).read_text()
            assert all((secret in text) == shown for secret in secrets), (name, shown)


def test_contain_prints_rules_that_nft_accepts(tmp_path: Path, flagged) -> None:
    done = smtptop("report", SAMPLE, "--contain")
    assert done.returncode == 0, done.stderr
    assert "inet smtptop_contain_" in done.stdout and "reject with tcp reset" in done.stdout
    assert "198.51.100.25" in done.stdout, "the learned smarthost is allowed"
    for syntax in CONTAIN_SYNTAXES:
        text = smtptop("report", SAMPLE, "--contain", syntax).stdout
        assert text == "".join(contain.WRITERS[syntax](plan(host)) for host in flagged)
    if NFT is None or IP is None or os.geteuid() != 0:
        pytest.skip("checking the syntax with nft needs root, nft and ip")
    rules = tmp_path / "rules.nft"
    rules.write_text(done.stdout)
    namespace = "smtptop-nft-check"
    made = [namespace]
    try:
        run(IP, "netns", "add", namespace)
        run(IP, "netns", "exec", namespace, NFT, "-c", "-f", str(rules))
    finally:
        remove_namespaces(made)


def plan(host: str) -> contain.Containment:
    from smtptop.evidence import containment

    detector = analyze([SAMPLE], workers=0).detector
    assert detector is not None
    return containment(detector, host)


def test_the_cli_lists_every_syntax() -> None:
    assert tuple(contain.WRITERS) == CONTAIN_SYNTAXES


def test_rules_refuse_what_is_not_an_address() -> None:
    with pytest.raises(ValueError):
        contain.Containment("192.168.1.5; rm -rf /", (), "seen")
    with pytest.raises(ValueError):
        contain.Containment("192.168.1.5", ("smtp.example; reboot",), "seen")


def test_without_a_known_smarthost_every_port_25_is_refused() -> None:
    plan = contain.Containment("192.168.1.5", (), "seen")
    assert "accept" not in contain.nftables(plan).replace("policy accept", "")
    assert "no smarthost known" in contain.nftables(plan)
    assert contain.iptables(plan).count("iptables -I") == 1


def test_ipv6_hosts_get_ipv6_rules_with_only_ipv6_servers() -> None:
    plan = contain.Containment("fd00::5", ("198.51.100.25", "2001:db8::25"), "seen")
    assert "ip6 saddr fd00::5" in contain.nftables(plan)
    assert "ip6 daddr { 2001:db8::25 }" in contain.nftables(plan)
    assert "ip6tables -I FORWARD -s fd00::5" in contain.iptables(plan)
    assert "/ipv6 firewall filter" in contain.routeros(plan)
    assert "198.51.100.25" not in contain.iptables(plan)


def test_find_process_puts_the_likely_system_first() -> None:
    assert contain.likely_systems(["DESKTOP-4F2K9"])[0] == "Windows"
    assert contain.likely_systems(["Annas-MacBook-Pro"])[0] == "macOS"
    assert contain.likely_systems([])[0] == "Windows"


# -- bad input: one line, nothing half written ------------------------------------------------


def refused(*args: str) -> str:
    done = smtptop("report", SAMPLE, *args)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smtptop: "), done.stderr
    return lines[0]


def test_an_existing_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "keep").write_text("mine")
    assert "it exists; name a new folder" in refused("--evidence", str(folder))
    assert [p.name for p in folder.iterdir()] == ["keep"]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    assert "it exists" in refused("--evidence", str(link))
    assert not (tmp_path / "elsewhere").exists()


def test_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = refused("--evidence", str(blocker / "evidence"))
    assert f"cannot write in {blocker}" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: captures, then runs as nobody")
def test_a_live_capture_checks_its_evidence_folder_as_the_user_it_becomes(tmp_path: Path) -> None:
    """Refused before the capture starts, not at its end: nobody cannot write in a folder
    of root's (pytest's own, mode 0700)."""
    folder = tmp_path / "evidence"
    done = smtptop("report", "-i", "lo", "--duration", "30", "--user", "nobody",
                   "--evidence", str(folder), timeout=20)  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"smtptop: --evidence {folder}: running as nobody, smtptop cannot "
                           f"write in {tmp_path}\n")  # fmt: skip


def test_a_host_not_in_the_capture_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    line = refused("--evidence", str(folder), "--host", "10.9.9.9")
    assert line == "smtptop: --host 10.9.9.9: no SMTP from that address in the capture"
    assert not folder.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts a small tmpfs")
def test_a_full_disk_leaves_nothing_half_written(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk))
    try:
        line = refused("--evidence", str(disk / "evidence"))
        assert line.endswith("cannot write (No space left on device)")
        assert list(disk.iterdir()) == []
    finally:
        run("umount", str(disk))


def test_host_and_evidence_options_are_checked_before_any_work() -> None:
    for args, said in (
        (("--host", "10.0.0.1"), "--host chooses the hosts of --evidence or --contain"),
        (("--contain", "--host", "not-an-ip"), "--host: not an IP address: 'not-an-ip'"),
        (("--contain", "--json"), "not allowed with argument"),
        (("--contain", "pf"), "invalid choice: 'pf'"),
    ):
        done = smtptop("report", SAMPLE, *args)
        assert done.returncode == 2 and said in done.stderr, (args, done.stderr)
    done = smtptop("report", "-i", "lo", "--evidence", "/tmp/never", "--evidence-buffer", "0")
    assert done.returncode == 2 and "--evidence with -i needs the packets" in done.stderr


def test_a_capture_gone_since_it_was_analysed_is_one_error(tmp_path: Path) -> None:
    from smtptop.evidence import Capture, EvidenceError, ReadBack, prepare, write_bundle
    from smtptop.files import invoking_user

    copy = tmp_path / "capture.pcap"
    shutil.copy(SAMPLE, copy)
    analysis = analyze([str(copy)], workers=0)
    hosts = chosen_hosts(analysis, [])
    copy.unlink()
    target = tmp_path / "evidence"
    with pytest.raises(EvidenceError, match="reading back"):
        capture = Capture([str(copy)], "test")
        assert analysis.detector is not None
        texts = prepare(analysis.model, analysis.detector, analysis.verdicts(), capture, hosts)
        recorded = ReadBack([str(copy)], frozenset({25, 465, 587, 2525}))
        write_bundle(texts, str(target), recorded, owner=invoking_user())
    assert list(tmp_path.iterdir()) == []


def test_a_host_the_evidence_buffer_had_no_room_for_says_so(tmp_path: Path) -> None:
    from smtptop.evidence import Capture, prepare, write_bundle
    from smtptop.files import invoking_user
    from smtptop.ring import HostPackets

    analysis = analyze([SAMPLE], workers=0)
    host = chosen_hosts(analysis, [])[0]
    assert analysis.detector is not None
    texts = prepare(analysis.model, analysis.detector, analysis.verdicts(), Capture([], "t"),
                    [host])  # fmt: skip
    missing = {host: HostPackets(budget=1 << 20, unrecorded=1234)}
    write_bundle(texts, str(tmp_path / "ev"), missing, owner=invoking_user())
    page = (tmp_path / "ev" / host / "summary.md").read_text()
    assert "`smtp.pcap`: 0 packets" in page
    assert "no room for more hosts: 1,234 packets of the hosts beyond its table" in page
    assert list(CaptureFile(str(tmp_path / "ev" / host / "smtp.pcap"))) == []  # a valid pcap
