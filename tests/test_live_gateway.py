"""smtptop capturing live at an office gateway, as on a switch's SPAN port, end to end.

test_live_capture.py checks the analysis of real traffic that tcpdump captured; here smtptop
captures it itself, through its own packet socket and kernel filter, headless and in the TUI,
dropping root once the socket is open.  The traffic crosses a router, so the capture sees what
a SPAN port at the gateway sees: the LAN hosts' packets in, the servers' answers out.

    lan namespace                 gw namespace (ip_forward=1)          inet namespace
    192.168.77.10 (spambot)  lan0 ==== gw-lan | gw-inet ==== inet0     198.18.0.10-.14:
    192.168.77.11 (office)          192.168.77.1/24   198.18.0.1/24    the aiosmtpd servers
    203.0.113.12  (office)          203.0.113.1/24                     of live_servers.py
    198.51.100.7  (visitor)         smtptop -i gw-lan
                             lan-flood ==== gw-flood (no addresses: frames sent raw, at
                                                      full speed, make the kernel drop)

The spambot talks to every server; the office PCs send ordinary mail (live_gateway_client.py).
203.0.113.12 is no private address: it counts as LAN only because the capture interface
carries its subnet.  198.51.100.7 sits on the LAN segment but in no subnet of the gateway's,
so it is not LAN.  The client's own record of every session is the ground truth, judged by
test_live_capture's restatement of smtptop's definitions.  A second veth pair, with no
address, carries a flood of synthetic SMTP frames (live_flood.py) faster than smtptop can
analyse: the kernel's drops must then show in the report and the monitor.

Network safety: three namespaces made for the run, joined by veth pairs; the only routes
are on-link ones and the routes between these namespaces (LAN to 198.18.0.0/24 via the
gateway, and back), no default route anywhere, so no packet can leave them.  The flood pair
has no address and does not forward; its frames carry foreign MAC addresses and end there.
Every wait and subprocess has a time limit; the namespaces, every process left in them and the
tmux server go away even when a step fails, and the fixture checks that the namespaces are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from synth import LINKTYPE_ETHERNET, Conversation, write_pcap
from test_live_capture import (
    LISTENING,
    SERVERS,
    accepted,
    announced_name,
    expected_facts,
    outcome,
    remove_namespaces,
    reported_facts,
    run,
    stop,
    tool,
)

from smtptop.capture import CaptureFile
from smtptop.live import privilege_hint

TESTS = Path(__file__).parent
REPO = TESTS.parent
IP, SS, TCPDUMP, SWAKS, TMUX, NFT = (
    tool(n) for n in ("ip", "ss", "tcpdump", "swaks", "tmux", "nft")
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and capture"),
    pytest.mark.skipif(
        not (IP and SS and TCPDUMP), reason="needs ip and ss (iproute2) and tcpdump"
    ),
]

NOBODY = pwd.getpwnam("nobody")
IFACE = "gw-lan"
FLOOD_TX, FLOOD_RX = "lan-flood", "gw-flood"
FLOOD_SESSIONS = 2000  # 24,000 frames, sent FLOOD_ROUNDS times over
FLOOD_ROUNDS = 6
SPAMBOT = "192.168.77.10"
OFFICE = ["192.168.77.11", "203.0.113.12"]
VISITOR = "198.51.100.7"
# 203.0.113.0/24 (TEST-NET-3) is in no default LAN range: only the interface makes it LAN.
LAN_SUBNETS = {"192.168.77.0/24": "192.168.77.1/24", "203.0.113.0/24": "203.0.113.1/24"}
EXPECTED_LAN = {SPAMBOT: True, "192.168.77.11": True, "203.0.113.12": True, VISITOR: False}
SERVER_NET, GW_INET = "198.18.0.0/24", "198.18.0.1"
SMTP_FILTER = "tcp port 25 or tcp port 587"
TUI_COLUMNS = {
    "sessions": "Sess",
    "destinations": "Dest",
    "rejected_sessions": "Rej",
    "tempfailed_sessions": "Temp",
    "accepted_messages": "Msgs",
    "recipients": "Rcpt",
}
STEP_TIMEOUT = 15.0
CLIENT_TIMEOUT = 30.0
CAPTURE_SECONDS = 6.0  # the headless capture; the clients need about one second of it
SETTLE = 0.3  # after the clients end, time for the last FIN/ACKs to reach the capture
SIGINT_GRACE = 3.0  # an interrupted capture must have printed its report by then
TIME_TOLERANCE = 2e-6  # -w writes microseconds; the live capture has nanoseconds
SERVER_LIFETIME = 120  # the servers stop by themselves after this, whatever happens


def plan(first_port: int, *, spambot: str = "", office: list[str] | None = None) -> str:
    """The JSON plan shared by the servers and the clients."""
    return json.dumps(
        {
            **SERVERS,
            "user": "alice@corp.example",
            "password": "Sup3r-S3cret-pw",
            "wrong_password": "Wr0ng-Guess-pw",
            "first_port": first_port,
            "swaks": SWAKS or "",
            "lifetime": SERVER_LIFETIME,
            "spambot": spambot,
            "office": office or [],
        }
    )


class Gateway:
    """The three namespaces and two veth pairs above; removes all of it on exit."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.lan, self.gw, self.inet = (f"smtptop-{tag}-{n}" for n in ("lan", "gw", "inet"))
        self.tmux_socket = Path(tempfile.gettempdir()) / f"smtptop-{tag}.tmux"
        self.made: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def ip(self, ns: str, args: str) -> str:
        """``ip -n NS ARGS``: a command in one of our namespaces, never in the host's."""
        assert IP is not None and ns in self.made
        return run(IP, "-n", ns, *args.split())

    def exec(self, ns: str, *command: str) -> list[str]:
        assert IP is not None and ns in self.made
        return [IP, "netns", "exec", ns, *command]

    def __enter__(self) -> Gateway:
        assert IP is not None
        lan, gw, inet = self.lan, self.gw, self.inet
        try:
            for ns in (lan, gw, inet):
                run(IP, "netns", "add", ns)
                self.made.append(ns)
                self.ip(ns, "link set lo up")
            self.ip(lan, f"link add lan0 type veth peer name {IFACE} netns {gw}")
            self.ip(inet, f"link add inet0 type veth peer name gw-inet netns {gw}")
            for address in (SPAMBOT, *OFFICE):
                self.ip(lan, f"addr add {address}/24 dev lan0")
            self.ip(lan, f"addr add {VISITOR}/32 dev lan0")
            for address in LAN_SUBNETS.values():
                self.ip(gw, f"addr add {address} dev {IFACE}")
            self.ip(gw, f"addr add {GW_INET}/24 dev gw-inet")
            for address in SERVERS.values():
                self.ip(inet, f"addr add {address}/24 dev inet0")
            self.ip(lan, f"link add {FLOOD_TX} type veth peer name {FLOOD_RX} netns {gw}")
            for ns, link in ((lan, FLOOD_TX), (gw, FLOOD_RX)):
                run(*self.exec(ns, "sysctl", "-qw", f"net.ipv6.conf.{link}.disable_ipv6=1"))
            links = ((lan, "lan0"), (gw, IFACE), (gw, "gw-inet"), (inet, "inet0"))
            for ns, link in (*links, (lan, FLOOD_TX), (gw, FLOOD_RX)):
                self.ip(ns, f"link set {link} up")
            run(*self.exec(gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
            run(*self.exec(gw, "sysctl", "-qw", f"net.ipv4.conf.{FLOOD_RX}.forwarding=0"))
            gw_lan = LAN_SUBNETS["192.168.77.0/24"].split("/")[0]
            self.ip(lan, f"route add {SERVER_NET} via {gw_lan} dev lan0")
            self.ip(gw, f"route add {VISITOR}/32 dev {IFACE}")
            for network in (*LAN_SUBNETS, f"{VISITOR}/32"):
                self.ip(inet, f"route add {network} via {GW_INET} dev inet0")
            for ns in self.made:
                routes = self.ip(ns, "route show default")
                assert not routes.strip(), f"{ns} must have no default route: {routes}"
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self, command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, **options)
        self.processes.append(process)
        return process

    def smtptop(self, *args: str) -> list[str]:
        """smtptop from this checkout, inside the gateway namespace."""
        environment = ("env", "-u", "SUDO_USER", "TZ=UTC", f"PYTHONPATH={REPO}")
        return self.exec(self.gw, *environment, sys.executable, "-m", "smtptop", *args)

    def clients(self, first_port: int, **hosts: Any) -> list[dict[str, Any]]:
        """Run the LAN's clients to completion; their record of every session."""
        script = str(TESTS / "live_gateway_client.py")
        done = subprocess.run(
            self.exec(self.lan, sys.executable, script, plan(first_port, **hosts)),
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"clients failed: {done.stderr}"
        return json.loads(done.stdout)["sessions"]

    def tmux(self, *args: str, check: bool = True) -> str:
        """tmux on a server of our own, never the user's.

        Its environment is given without LINES and COLUMNS, which Textual would take over
        the pane's real size: under pytest, GNU readline has put LINES=24 and COLUMNS=80 into
        the process's C environment (not os.environ), which children inherit by default.
        """
        assert TMUX is not None
        command = [TMUX, "-S", str(self.tmux_socket), *args]
        done = subprocess.run(
            command,
            env={k: v for k, v in os.environ.items() if k not in ("LINES", "COLUMNS")},
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0 or not check, f"{shlex.join(command)}: {done.stderr}"
        return done.stdout

    def __exit__(self, *exc: object) -> None:
        assert IP is not None
        for process in self.processes:
            stop(process, signal.SIGTERM)
        if TMUX is not None:
            self.tmux("kill-server", check=False)
        self.tmux_socket.unlink(missing_ok=True)
        remove_namespaces(self.made)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The namespaces with the servers listening; checks afterwards that nothing is left."""
    log_path = tmp_path_factory.mktemp("gateway") / "servers.log"
    gateway = Gateway()
    with gateway, log_path.open("wb") as log:
        servers = gateway.start(
            gateway.exec(gateway.inet, sys.executable, str(TESTS / "live_servers.py"), plan(0)),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.monotonic() + STEP_TIMEOUT
        while not set(run(*gateway.exec(gateway.inet, str(SS), "-Hltn")).split()) >= LISTENING:
            assert servers.poll() is None, f"servers exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"servers not up: {log_path.read_text()}"
            time.sleep(0.05)
        yield gateway
    assert IP is not None
    left = run(IP, "netns", "list")
    assert not any(ns in left for ns in (gateway.lan, gateway.gw, gateway.inet)), left


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict: ``Uid`` is "real effective saved filesystem"."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {
        key: value.strip() for key, _, value in (line.partition(":") for line in text.split("\n"))
    }


def wait_dropped(process: subprocess.Popen[bytes]) -> dict[str, str]:
    """Wait until smtptop runs as nobody, which it does once its socket and filter are set:
    from then on every packet is captured.  Returns its /proc status at that moment."""
    uid, status = str(NOBODY.pw_uid), {}
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate(timeout=STEP_TIMEOUT)
            pytest.fail(f"smtptop exited {process.returncode}: {err!r}")
        with contextlib.suppress(FileNotFoundError):
            status = proc_status(process.pid)
            # real: only the drop itself sets it (checking the outputs as that user sets the
            # effective id alone, before the socket and the -w file are made); the test checks
            # the rest
            if status["Uid"].split()[0] == uid:
                return status
        time.sleep(0.02)
    pytest.fail(f"smtptop still runs as uid {status.get('Uid')} after {STEP_TIMEOUT}s")


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two JSON reports differ; times may differ by the microsecond rounding of -w."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for key in a for d in differences(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= TIME_TOLERANCE else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def file_report(pcap: Path, *options: str) -> dict[str, Any]:
    """``smtptop report --json`` of a capture file."""
    out = run(sys.executable, "-m", "smtptop", "report", "--json", *options, str(pcap))
    return json.loads(out)


def tcpdump_lines(pcap: Path, *expression: str) -> int:
    """The packets tcpdump reads from a file (one line each), optionally filtered."""
    assert TCPDUMP is not None
    return len(run(TCPDUMP, "-n", "-r", str(pcap), *expression).splitlines())


def session_problems(truth: list[dict[str, Any]], report: dict[str, Any]) -> list[str]:
    """Every fact of every session that the report states differently from the client."""
    clients = Counter(s["client"] for s in report["sessions"])
    assert clients and max(clients.values()) == 1, f"client endpoints seen twice: {clients}"
    sessions = {s["client"]: s for s in report["sessions"]}
    expected_endpoints = {f"{t['client_ip']}:{t['client_port']}" for t in truth}
    assert set(sessions) == expected_endpoints
    problems = []
    for t in truth:
        expected = expected_facts(t)
        actual = reported_facts(sessions[f"{t['client_ip']}:{t['client_port']}"])
        problems += [
            f"{t['client_ip']} {t['name']} {key}: expected {expected[key]!r}, got {actual[key]!r}"
            for key in expected
            if expected[key] != actual[key]
        ]
    return problems


def host_facts(truth: list[dict[str, Any]], ip: str) -> dict[str, Any]:
    """A host's figures in the report, from the client's record alone."""
    mine = [t for t in truth if t["client_ip"] == ip]
    by_server: dict[str, list[dict[str, Any]]] = {}
    for t in mine:
        by_server.setdefault(t["server"].rsplit(":", 1)[0], []).append(t)
    outcomes = Counter(outcome(t) for t in mine)
    return {
        "ip": ip,
        "sessions": len(mine),
        "destinations": len(by_server),
        "rejected_sessions": outcomes["rejected"],
        "tempfailed_sessions": outcomes["tempfailed"],
        "accepted_messages": sum(accepted(t) for t in mine),
        "recipients": sum(len(t["rcpt_to"]) for t in mine),
        "helos": {t["helo"] for t in mine if t["helo"]},
        "servers": {
            server: {
                "name": announced_name(theirs[0]["greeting"]),
                "sessions": len(theirs),
                "rejected_sessions": sum(outcome(t) == "rejected" for t in theirs),
            }
            for server, theirs in by_server.items()
        },
    }


def reported_host(host: dict[str, Any]) -> dict[str, Any]:
    """The same figures as the report's JSON states them."""
    keys = ("ip", "sessions", "destinations", "rejected_sessions", "tempfailed_sessions")
    return {
        **{key: host[key] for key in (*keys, "accepted_messages", "recipients")},
        "helos": set(host["helos"]),
        "servers": {
            s["ip"]: {key: s[key] for key in ("name", "sessions", "rejected_sessions")}
            for s in host["servers"]
        },
    }


# -- a headless capture: its ground truth, root dropped, the -w file ---------------------------


@dataclass
class Headless:
    truth: list[dict[str, Any]]
    report: dict[str, Any]
    stderr: str
    returncode: int
    status_at_start: dict[str, str]
    status_while_capturing: dict[str, str]
    cmdline: list[str]
    gw_pids: list[int]
    pid: int
    seconds: float
    evidence: Path


@pytest.fixture(scope="module")
def headless(lab: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Headless:
    """``report -i gw-lan --duration --json --user nobody -w`` while the whole LAN sends."""
    assert IP is not None
    evidence = tmp_path_factory.mktemp("headless") / "evidence.pcap"
    command = lab.smtptop(
        *("report", "-i", IFACE, "--duration", str(CAPTURE_SECONDS), "--json"),
        *("--user", "nobody", "-w", str(evidence), "--workers", "1"),
    )
    process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    at_start = wait_dropped(process)
    started = time.monotonic()
    gw_pids = [int(p) for p in run(IP, "netns", "pids", lab.gw).split()]
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode().split("\0")
    truth = lab.clients(41000, spambot=SPAMBOT, office=[*OFFICE, VISITOR])
    time.sleep(SETTLE)
    assert process.poll() is None, "the capture ended before the clients did: raise CAPTURE_SECONDS"
    while_capturing = proc_status(process.pid)
    out, err = process.communicate(timeout=CAPTURE_SECONDS + STEP_TIMEOUT)
    return Headless(
        truth=truth,
        report=json.loads(out),
        stderr=err.decode(),
        returncode=process.returncode,
        status_at_start=at_start,
        status_while_capturing=while_capturing,
        cmdline=cmdline,
        gw_pids=gw_pids,
        pid=process.pid,
        seconds=time.monotonic() - started,
        evidence=evidence,
    )


def test_headless_capture_ends_after_its_duration(headless: Headless) -> None:
    assert headless.returncode == 0, headless.stderr
    assert headless.stderr == ""
    assert CAPTURE_SECONDS - 0.5 <= headless.seconds <= CAPTURE_SECONDS + SIGINT_GRACE


def test_scenario_ran_as_planned(headless: Headless) -> None:
    """The spambot met every kind of answer, the office PCs only acceptance."""
    bot = Counter(outcome(t) for t in headless.truth if t["client_ip"] == SPAMBOT)
    assert {"accepted", "rejected", "tempfailed", "no-mail"} <= set(bot)
    others = {outcome(t) for t in headless.truth if t["client_ip"] != SPAMBOT}
    assert others == {"accepted"}
    assert {t["client_ip"] for t in headless.truth} == set(EXPECTED_LAN)


def test_live_sessions_match_what_the_clients_saw(headless: Headless) -> None:
    problems = session_problems(headless.truth, headless.report)
    assert not problems, "\n".join(problems)


def test_live_hosts_match_what_the_clients_did(headless: Headless) -> None:
    hosts = {h["ip"]: h for h in headless.report["hosts"]}
    assert set(hosts) == set(EXPECTED_LAN)
    for ip, host in hosts.items():
        assert reported_host(host) == host_facts(headless.truth, ip)
    ranked = [h["ip"] for h in headless.report["hosts"]]
    assert ranked[0] == SPAMBOT, "the spambot tops the report"


def test_lan_comes_from_the_capture_interface(headless: Headless) -> None:
    """203.0.113.12 is LAN only because gw-lan carries 203.0.113.0/24; the visitor is not."""
    assert {h["ip"]: h["lan"] for h in headless.report["hosts"]} == EXPECTED_LAN
    offline = file_report(headless.evidence)
    assert {h["ip"]: h["lan"] for h in offline["hosts"]} == EXPECTED_LAN | {"203.0.113.12": False}


def test_live_capture_is_clean(headless: Headless) -> None:
    stats = headless.report["stats"]
    assert stats["errors"] == 0, stats["error_samples"]
    assert stats["sessions"] == len(headless.truth)
    assert stats["sessions_not_kept"] == stats["hosts_not_kept"] == 0
    assert stats["connections_evicted"] == 0
    assert headless.report["warnings"] == []


def engine_processes(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@contextlib.contextmanager
def folder_for_nobody() -> Iterator[Path]:
    """A folder that smtptop, running as nobody after root, may write a bundle in."""
    folder = Path(tempfile.mkdtemp(prefix="smtptop-live-evidence-", dir="/tmp"))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tcpdump_on(lab: Gateway, pcap: Path) -> subprocess.Popen[bytes]:
    """tcpdump on the capture interface beside smtptop, once it listens: the truth of what
    crossed it."""
    assert TCPDUMP is not None
    command = lab.exec(lab.gw, TCPDUMP, "-i", IFACE, "-n", "-U", "-Z", "root", "-w", str(pcap),
                       "tcp")  # fmt: skip
    process = lab.start(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    line = process.stderr.readline()  # "listening on gw-lan ...", or why not
    assert b"listening on" in line, line
    return process


def bundle_frames(folder: Path) -> list[bytes]:
    return [bytes(frame) for _, _, frame in CaptureFile(str(folder / SPAMBOT / "smtp.pcap"))]


def same_packets(ours: list[bytes], truth: list[bytes]) -> bool:
    """The same frames, each connection's each direction in the same order.  Two packet
    sockets may see frames of different connections, or of the two directions of one,
    interleaved differently (the router hands them to the sockets on different CPUs), never
    one direction of one connection reordered."""
    flow = slice(26, 38)  # IPv4 addresses and TCP ports, after an Ethernet header

    def flows(frames: list[bytes]) -> dict[bytes, list[bytes]]:
        found: dict[bytes, list[bytes]] = {}
        for frame in frames:
            found.setdefault(frame[flow], []).append(frame)
        return found

    return sorted(ours) == sorted(truth) and flows(ours) == flows(truth)


@pytest.mark.parametrize(("workers", "first_port"), [(0, 45000), (2, 46000)])
def test_engines_in_any_number_report_what_the_clients_did(
    lab: Gateway, workers: int, first_port: int, tmp_path: Path
) -> None:
    """``--workers 0`` captures and analyses in one process; with 2, the kernel deals the
    packets to two engine processes by client host (PACKET_FANOUT), and the report is the
    same: every session and every host's figures as the clients did them.  Its evidence
    bundle, made without -w from the engines' rings, holds every SMTP packet of the spambot
    that tcpdump saw on the same interface, as the bundle read back from tcpdump's file."""
    truth_pcap = tmp_path / "tcpdump.pcap"
    with folder_for_nobody() as place:
        evidence = place / "evidence"
        tcpdump = tcpdump_on(lab, truth_pcap)
        command = lab.smtptop(
            *("report", "-i", IFACE, "--duration", str(CAPTURE_SECONDS), "--json"),
            *("--user", "nobody", "--workers", str(workers)),
            *("--evidence", str(evidence), "--host", SPAMBOT),
        )
        process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_dropped(process)
        truth = lab.clients(first_port, spambot=SPAMBOT, office=[*OFFICE, VISITOR])
        time.sleep(SETTLE)
        assert process.poll() is None, "the capture ended before the clients did"
        engines = engine_processes(process.pid)
        assert len(engines) == workers
        for pid in engines:  # forked after root was given up
            assert proc_status(pid)["Uid"].split() == [str(NOBODY.pw_uid)] * 4
        out, err = process.communicate(timeout=CAPTURE_SECONDS + STEP_TIMEOUT)
        stop(tcpdump, signal.SIGINT)
        assert process.returncode == 0, err
        assert err.decode().splitlines() == [f"smtptop: evidence for 1 host in {evidence}"]
        report = json.loads(out)
        problems = session_problems(truth, report)
        assert not problems, "\n".join(problems)
        hosts = {h["ip"]: h for h in report["hosts"]}
        assert set(hosts) == set(EXPECTED_LAN)
        for ip, host in hosts.items():
            assert reported_host(host) == host_facts(truth, ip)
        assert report["stats"]["sessions"] == len(truth)
        assert report["stats"]["errors"] == report["stats"]["connections_evicted"] == 0
        assert report["warnings"] == []
        read_back = tmp_path / "read-back"
        offline = subprocess.run(
            [sys.executable, "-m", "smtptop", "report", str(truth_pcap), "--evidence",
             str(read_back), "--host", SPAMBOT, "--lan", "192.168.77.0/24"],
            capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False,
        )  # fmt: skip
        assert offline.returncode == 0, offline.stderr
        live = bundle_frames(evidence)
        assert len(live) > 100 and same_packets(live, bundle_frames(read_back))
        files = [path for path in (evidence / SPAMBOT).rglob("*") if path.is_file()]
        for path in files:  # written as nobody: it could not give them to root
            info = path.stat()
            assert (info.st_uid, info.st_mode & 0o777) == (NOBODY.pw_uid, 0o600), path
        page = (evidence / SPAMBOT / "summary.md").read_text()
        assert "evidence buffer kept" in page and "did not fit" not in page
        assert f"live capture on {IFACE}" in page


def test_root_is_dropped_once_the_socket_is_open(headless: Headless) -> None:
    assert headless.gw_pids == [headless.pid], "the smtptop process is the one in the namespace"
    assert headless.cmdline[1:5] == ["-m", "smtptop", "report", "-i"]
    nobody = f"{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}\t{NOBODY.pw_uid}"
    group = f"{NOBODY.pw_gid}\t{NOBODY.pw_gid}\t{NOBODY.pw_gid}\t{NOBODY.pw_gid}"
    for status in (headless.status_at_start, headless.status_while_capturing):
        assert status["Uid"] == nobody  # real, effective, saved and filesystem: no way back
        assert status["Gid"] == group
        assert set(status["Groups"].split()) <= {str(NOBODY.pw_gid)}  # root's groups are gone
        sets = ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd")
        assert {name: int(status[name], 16) for name in sets} == dict.fromkeys(sets, 0)
        assert status["NoNewPrivs"] == "1"  # no way back through a setuid or setcap program


def test_evidence_file_is_private_to_the_user_who_ran_smtptop(headless: Headless) -> None:
    """Root ran it (no sudo): the file holding AUTH secrets is root's, 0600, not nobody's."""
    info = headless.evidence.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o600)
    stats = headless.report["stats"]
    assert tcpdump_lines(headless.evidence) == stats["packets"]
    assert tcpdump_lines(headless.evidence, SMTP_FILTER) == stats["smtp_packets"]
    offline = file_report(headless.evidence, "--lan", "203.0.113.0/24")
    problems = differences(headless.report, offline)
    assert not problems, "\n".join(problems[:20])


# -- containment: the rules smtptop prints, applied at the gateway ----------------------------


def mail(lab: Gateway, source: str, server: str) -> str:
    """Send one message with smtplib from ``source`` to ``server``:25; what happened."""
    script = (
        "import smtplib, sys\n"
        "try:\n"
        "    with smtplib.SMTP(sys.argv[2], 25, source_address=(sys.argv[1], 0), timeout=5) as s:\n"
        "        s.sendmail('pc@corp.example', ['it@accept.test'], 'Subject: t\\r\\n\\r\\nhi')\n"
        "    print('sent')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except smtplib.SMTPException as exc:\n"
        "    print('answered', type(exc).__name__)\n"
    )
    done = subprocess.run(
        lab.exec(lab.lan, sys.executable, "-c", script, source, server),
        capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(NFT is None, reason="needs nft (Debian's nftables)")
def test_containment_rules_stop_the_spambot_and_keep_the_smarthost(
    headless: Headless, lab: Gateway, tmp_path: Path
) -> None:
    """``report --contain`` on the headless capture, applied at the gateway with nft: the
    spambot can no longer reach a foreign MX on port 25, its mail through the smarthost still
    goes, the other PCs are untouched; the removal command in the rules' comment undoes it."""
    smarthost, foreign = SERVERS["accept"], SERVERS["greylist"]
    rules = run(
        sys.executable, "-m", "smtptop", "report", str(headless.evidence),
        "--contain", "--host", SPAMBOT, "--smarthost", smarthost,
    )  # fmt: skip
    assert mail(lab, SPAMBOT, foreign) == "answered SMTPRecipientsRefused"  # greylisted: 4xx
    path = tmp_path / "contain.nft"
    path.write_text(rules)
    assert NFT is not None
    run(*lab.exec(lab.gw, NFT, "-f", str(path)))
    removal = re.search(r"^# Remove: (nft .*)$", rules, re.MULTILINE)
    assert removal is not None, rules
    try:
        assert mail(lab, SPAMBOT, foreign) == "refused"
        assert mail(lab, SPAMBOT, smarthost) == "sent"
        assert mail(lab, OFFICE[0], foreign) == "answered SMTPRecipientsRefused"
    finally:
        run(*lab.exec(lab.gw, *removal[1].replace("nft", NFT, 1).split()))
    assert mail(lab, SPAMBOT, foreign) == "answered SMTPRecipientsRefused"


# -- Ctrl-C ends a long capture with a report and a complete -w file ---------------------------


def test_interrupt_prints_the_report_and_completes_the_file(lab: Gateway, tmp_path: Path) -> None:
    evidence = tmp_path / "interrupted.pcap"
    command = lab.smtptop(
        *("report", "-i", IFACE, "--duration", "120", "--json"),
        *("--user", "nobody", "-w", str(evidence), "--workers", "1"),
    )
    process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_dropped(process)
    truth = lab.clients(42000, office=OFFICE[:1])
    time.sleep(SETTLE)
    assert process.poll() is None
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=STEP_TIMEOUT)
    assert time.monotonic() - interrupted < SIGINT_GRACE
    assert process.returncode == 0, err
    report = json.loads(out)
    assert [w.split(":")[0] for w in report["warnings"]] == ["interrupted"]
    assert err.decode().splitlines() == [f"smtptop: warning: {report['warnings'][0]}"]
    problems = session_problems(truth, report)
    assert not problems, "\n".join(problems)
    assert tcpdump_lines(evidence) == report["stats"]["packets"]
    problems = differences(report["sessions"], file_report(evidence)["sessions"])
    assert not problems, "\n".join(problems[:20])


# -- the TUI in tmux ------------------------------------------------------------------------


def host_row(screen: str, ip: str) -> dict[str, int] | None:
    """A host's figures on the monitor's screen, by column label: a label starts where its
    column does (numbers are right-aligned under it), so other columns may come and go."""
    lines = screen.splitlines()
    header = next((line for line in lines if line.split()[:1] == ["Host"]), None)
    row = next((line for line in lines if line.split()[:1] == [ip]), None)
    if header is None or row is None:
        return None
    labels = list(re.finditer(r"\S+(?: \S+)*", header))  # two spaces or more apart
    ends = [label.start() for label in labels[1:]] + [len(row)]
    cells = {
        label.group().rstrip("▲▼"): row[label.start() : end].strip()
        for label, end in zip(labels, ends, strict=True)
    }
    return {
        label: int(cells[label]) for label in TUI_COLUMNS.values() if cells.get(label, "").isdigit()
    }


class Monitor:
    """smtptop's TUI in a 160x45 pane of the lab's tmux server, capturing as nobody."""

    def __init__(self, lab: Gateway, iface: str, tmp: Path) -> None:
        self.lab, self.iface, self.name = lab, iface, f"monitor-{iface}"
        config, self.exit_status = tmp / "tmux.conf", tmp / "exit-status"
        config.write_text("set -g remain-on-exit on\n")  # keeps the last screen for a failure
        # The shell notes the exit status: tmux's #{pane_dead_status} is sometimes never set.
        monitor = shlex.join(lab.smtptop("-i", iface, "--user", "nobody"))
        command = f"{monitor}; echo $? > {shlex.quote(str(self.exit_status))}"
        size = ("-x", "160", "-y", "45")
        lab.tmux("-f", str(config), "new-session", "-d", "-s", self.name, *size, command)
        self.wait_for("its status bar", lambda shown: bool(self.status(shown)))

    def screen(self) -> str:
        return self.lab.tmux("capture-pane", "-p", "-t", self.name)

    def status(self, shown: str) -> str:
        return next((line for line in shown.splitlines() if f"interface {self.iface}" in line), "")

    def wait_for(self, what: str, done: Callable[[str], object]) -> str:
        """Poll the screen until ``done`` holds; returns that screen."""
        shown, deadline = "", time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            shown = self.screen()
            if done(shown):
                return shown
            time.sleep(0.2)
        pytest.fail(f"the monitor never showed {what}:\n{shown}")

    def quit(self) -> None:
        """Press q; the monitor must exit, with status 0."""
        self.lab.tmux("send-keys", "-t", self.name, "q")
        deadline = time.monotonic() + STEP_TIMEOUT
        while not self.exit_status.exists() or not self.exit_status.read_text():
            assert time.monotonic() < deadline, f"q did not end the monitor:\n{self.screen()}"
            time.sleep(0.1)
        assert self.exit_status.read_text() == "0\n", f"exited {self.exit_status.read_text()}"


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_monitor_shows_the_spambot(lab: Gateway, tmp_path: Path) -> None:
    monitor = Monitor(lab, IFACE, tmp_path)
    truth = lab.clients(43000, spambot=SPAMBOT, office=OFFICE[:1])
    expected = {
        ip: {label: host_facts(truth, ip)[key] for key, label in TUI_COLUMNS.items()}
        for ip in (SPAMBOT, OFFICE[0])
    }

    def complete(shown: str) -> bool:
        """Every session counted, in the status bar and in both hosts' rows."""
        rows = {ip: host_row(shown, ip) for ip in expected}
        return rows == expected and f" {len(truth)} sessions" in monitor.status(shown)

    shown = monitor.wait_for(f"{len(truth)} sessions and the rows {expected}", complete)
    status = monitor.status(shown)
    assert "drops 0" in status and "kernel" not in status and "error" not in status, status
    rows = [
        line.split()[0]
        for line in shown.splitlines()
        if line.split()[:1] in ([SPAMBOT], [OFFICE[0]])
    ]
    assert rows == [SPAMBOT, OFFICE[0]], "the spambot tops the list"
    assert IP is not None
    for pid in run(IP, "netns", "pids", lab.gw).split():
        assert proc_status(int(pid))["Uid"].split()[0] == str(NOBODY.pw_uid)
    monitor.quit()


# -- setup errors are one line --------------------------------------------------------------


def test_unknown_interface_lists_the_real_ones(lab: Gateway) -> None:
    done = subprocess.run(
        lab.smtptop("-i", "nosuchif0"), capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    assert (done.returncode, done.stdout) == (1, "")
    links = lab.ip(lab.gw, "-o link show").splitlines()  # in index order, as smtptop lists them
    names = ", ".join(line.split(":")[1].strip().split("@")[0] for line in links)
    assert names == f"lo, {IFACE}, gw-inet, {FLOOD_RX}"
    assert done.stderr == f"smtptop: no interface 'nosuchif0'; there are: {names}\n"


def test_unprivileged_capture_says_how_to_get_privileges() -> None:
    """As nobody (with nobody's home, as sudo -u sets it): the one-line privileges hint.
    Run in the host's namespace: the socket is refused before anything is captured."""
    command = [sys.executable, "-m", "smtptop", "report", "-i", "lo", "--duration", "1"]
    as_nobody: dict[str, Any] = {
        "user": NOBODY.pw_uid,
        "group": NOBODY.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "PYTHONPATH": str(REPO), "HOME": NOBODY.pw_dir},
        "capture_output": True,
        "text": True,
        "timeout": STEP_TIMEOUT,
        "check": False,
    }
    # The interpreter, its packages and the checkout must be readable by nobody at all.
    probe = f"import netifaces, scapy; open({str(REPO / 'smtptop' / '__init__.py')!r}).close()"
    usable = subprocess.run([sys.executable, "-c", probe], **as_nobody)
    if usable.returncode:
        pytest.skip(f"nobody cannot run {sys.executable} on this checkout: {usable.stderr}")
    done = subprocess.run(command, **as_nobody)
    assert (done.returncode, done.stdout) == (1, "")
    assert "Traceback" not in done.stderr, done.stderr
    # test_live_setup checks what the hint says for own and shared interpreters.
    assert done.stderr == f"smtptop: {privilege_hint('lo')}\n"


# -- kernel drops are shown, never silent ---------------------------------------------------


@pytest.fixture(scope="module")
def flood_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short SMTP sessions as synthetic frames, to be sent far faster than smtptop analyses."""
    frames = []
    for i in range(FLOOD_SESSIONS):
        client, server = f"192.168.78.{10 + i % 100}", f"198.18.1.{10 + i % 50}"
        conv = Conversation(client, 20000 + i // 100, server, 25, start=1.79e9 + i * 0.01)
        conv.smtp(
            [
                ("S", b"220 mx.flood.test ESMTP\r\n"),
                ("C", b"EHLO pc.flood.test\r\n"),
                ("S", b"250 mx.flood.test\r\n"),
                ("C", b"QUIT\r\n"),
                ("S", b"221 Bye\r\n"),
            ]
        )
        conv.close()
        frames += conv.frames
    path = tmp_path_factory.mktemp("flood") / "flood.pcap"
    write_pcap(path, frames, LINKTYPE_ETHERNET)
    return path


def flood(lab: Gateway, pcap: Path) -> int:
    """Send the flood from the LAN namespace; the number of frames sent."""
    script = str(TESTS / "live_flood.py")
    command = ("env", f"PYTHONPATH={REPO}", sys.executable, script, FLOOD_TX, str(pcap))
    return int(run(*lab.exec(lab.lan, *command, str(FLOOD_ROUNDS)), timeout=CLIENT_TIMEOUT))


def arrived(lab: Gateway) -> int:
    """Frames the capture end of the flood pair has received so far."""
    info = json.loads(lab.ip(lab.gw, f"-j -s link show {FLOOD_RX}"))
    return int(info[0]["stats64"]["rx"]["packets"])


def tree_sockets(pid: int) -> set[str]:
    """The sockets open in a process and the processes below it: with engine processes, the
    capture sockets are theirs (the first process closes its copies once they are forked)."""
    found, pending = set(), [pid]
    while pending:
        process = pending.pop()
        with contextlib.suppress(OSError):  # it ended, or closed the descriptor meanwhile
            for fd in Path(f"/proc/{process}/fd").iterdir():
                with contextlib.suppress(OSError):
                    found.add(os.readlink(fd))
            for task in Path(f"/proc/{process}/task").iterdir():
                pending += map(int, (task / "children").read_text().split())
    return {link for link in found if link.startswith("socket:[")}


def wait_drained(pid: int) -> None:
    """Wait until the packet sockets of smtptop's processes have nothing left queued in the
    kernel."""
    quiet, deadline = 0, time.monotonic() + STEP_TIMEOUT
    while quiet < 3:  # empty three times in a row, not just between two bursts
        assert time.monotonic() < deadline, "smtptop did not catch up with the flood"
        sockets = tree_sockets(pid)
        rows = [row.split() for row in Path(f"/proc/{pid}/net/packet").read_text().splitlines()]
        mine = [int(row[6]) for row in rows[1:] if f"socket:[{row[8]}]" in sockets]
        assert mine, "no packet socket of smtptop's found"
        quiet = quiet + 1 if sum(mine) == 0 else 0
        time.sleep(0.1)


def test_kernel_drops_are_reported(lab: Gateway, flood_pcap: Path) -> None:
    """Every frame that reached the interface is analysed or counted as dropped."""
    command = lab.smtptop(
        *("report", "-i", FLOOD_RX, "--duration", "60", "--json", "--user", "nobody")
    )
    process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_dropped(process)
    before = arrived(lab)
    sent = flood(lab, flood_pcap)
    wait_drained(process.pid)
    delivered = arrived(lab) - before
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=STEP_TIMEOUT)
    assert process.returncode == 3, "a lossy capture has its own exit status, for scripts"
    report = json.loads(out)
    found = re.search(r"the kernel dropped (\d+) packets", err.decode())
    assert found, err
    dropped = int(found[1])
    assert 0 < dropped < delivered <= sent
    assert report["stats"]["packets"] + dropped == delivered
    assert f"the kernel dropped {dropped} packets: the counts are low" in report["warnings"]


@pytest.mark.skipif(TMUX is None, reason="needs tmux")
def test_monitor_shows_kernel_drops(lab: Gateway, flood_pcap: Path, tmp_path: Path) -> None:
    monitor = Monitor(lab, FLOOD_RX, tmp_path)
    flood(lab, flood_pcap)
    shown = monitor.wait_for("kernel drops", lambda s: re.search(r"\+[1-9][\d,]* kernel", s))
    assert re.search(r"drops [\d,]+ \+[1-9][\d,]* kernel", monitor.status(shown))
    monitor.quit()


# -- SIGTERM while packets flow: an orderly end, every time ---------------------------------

SIGTERM_RUNS = 10
PCAP_HEADER = 24  # -w holds more once the capture loop has written (flushed) a frame
SIGTERM_FLOOD_ROUNDS = 40  # outlasts a run; stopped right after its signal


def test_sigterm_while_traffic_flows_ends_cleanly(
    lab: Gateway, flood_pcap: Path, tmp_path: Path
) -> None:
    """A service manager's SIGTERM lands anywhere in the capture loop: the report and the -w
    file are completed, and the capture generator never flushes a file already closed."""
    sender = ("env", f"PYTHONPATH={REPO}", sys.executable, str(TESTS / "live_flood.py"))
    for attempt in range(SIGTERM_RUNS):  # 1 run in 4 printed "Exception ignored" before
        evidence = tmp_path / f"term-{attempt}.pcap"
        command = lab.smtptop(
            *("report", "-i", FLOOD_RX, "--duration", "60", "--json", "--user", "nobody"),
            *("-w", str(evidence)),
        )
        process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_dropped(process)
        before = arrived(lab)
        flood_process = lab.start(
            lab.exec(lab.lan, *sender, FLOOD_TX, str(flood_pcap), str(SIGTERM_FLOOD_ROUNDS)),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STEP_TIMEOUT
        while arrived(lab) == before or evidence.stat().st_size <= PCAP_HEADER:
            assert time.monotonic() < deadline, "smtptop is not capturing the flood"
            time.sleep(0.01)
        time.sleep(0.03 * attempt)  # a different moment of the flood each time
        assert flood_process.poll() is None, "the flood ended before the signal"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=STEP_TIMEOUT)
        stop(flood_process, signal.SIGTERM)
        text = err.decode()
        assert "Exception ignored" not in text and "Traceback" not in text, text
        assert process.returncode in (0, 3), text
        assert json.loads(out)["warnings"][0].startswith("interrupted")
        assert tcpdump_lines(evidence) > 0


# -- the setcap route: a user's own interpreter copy gives its capabilities up -------------


@pytest.fixture
def setcap_python() -> Iterator[Path]:
    """A ``--copies`` venv of this interpreter (its packages through the system site) with
    cap_net_raw,cap_net_admin+eip, in a folder nobody can reach; removed afterwards."""
    setcap = tool("setcap")
    if setcap is None:
        pytest.skip("needs setcap (Debian package libcap2-bin)")
    folder = Path(tempfile.mkdtemp(prefix="smtptop-setcap-"))
    try:
        folder.chmod(0o755)
        venv = folder / "venv"
        run(sys.executable, "-m", "venv", "--copies", "--without-pip", "--system-site-packages",
            str(venv), timeout=CLIENT_TIMEOUT)  # fmt: skip
        python = venv / "bin" / "python3"
        assert not python.is_symlink()
        run(setcap, "cap_net_raw,cap_net_admin+eip", str(python))
        yield python
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], timeout=STEP_TIMEOUT)


def test_setcap_interpreter_run_by_a_user_drops_its_capabilities(
    lab: Gateway, setcap_python: Path
) -> None:
    """nobody runs the setcap'd copy: it opens the socket with the file's capabilities, then
    holds none while it parses what the LAN sends (CapEff was 0x3000 for the whole run)."""
    ids = (f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups")
    environment = ("env", "-i", f"HOME={NOBODY.pw_dir}", f"PYTHONPATH={REPO}", "TZ=UTC")
    command = lab.exec(
        lab.gw, "setpriv", *ids, *environment, str(setcap_python), "-m", "smtptop",
        "report", "-i", IFACE, "--duration", str(CAPTURE_SECONDS), "--json",
    )  # fmt: skip
    process = lab.start(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, status = time.monotonic() + STEP_TIMEOUT, {}
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate(timeout=STEP_TIMEOUT)
        with contextlib.suppress(FileNotFoundError, KeyError):
            status = proc_status(process.pid)
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            if cmdline[:3] == [str(setcap_python).encode(), b"-m", b"smtptop"] and not int(
                status["CapEff"], 16
            ):
                break
        time.sleep(0.02)
    else:
        pytest.fail(f"smtptop kept CapEff {status.get('CapEff')} after {STEP_TIMEOUT}s")
    truth = lab.clients(44000, office=OFFICE[:1])
    time.sleep(SETTLE)
    while_capturing = proc_status(process.pid)
    out, err = process.communicate(timeout=CAPTURE_SECONDS + STEP_TIMEOUT)
    assert (process.returncode, err) == (0, b"")
    assert while_capturing["Uid"].split() == [str(NOBODY.pw_uid)] * 4
    sets = ("CapEff", "CapPrm", "CapInh", "CapAmb")
    assert {name: int(while_capturing[name], 16) for name in sets} == dict.fromkeys(sets, 0)
    assert while_capturing["NoNewPrivs"] == "1"
    problems = session_problems(truth, json.loads(out))
    assert not problems, "\n".join(problems)
