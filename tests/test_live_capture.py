"""Real SMTP traffic captured by tcpdump, checked against what the client says it did.

The synthetic captures elsewhere are built by our own code; here the bytes come from real
stacks: the kernel's TCP (segmentation offload, real ACK timing), aiosmtpd servers, smtplib,
a hand-pipelined socket client and swaks.  The client's own record of every session (see
live_client.py) is the ground truth; the expected counts follow the definitions in
smtptop.model applied to that record, never to smtptop's output.

Network safety: everything happens in two network namespaces made for the run and joined by
a veth pair, with on-link routes only and no default route, so no packet can leave them.  The
client side holds a LAN address (192.168.99.2) and an outside one (203.0.113.7, TEST-NET-3);
the servers are in 198.18.0.0/24 (RFC 2544 benchmarking).  Every subprocess and wait has a
time limit; the namespaces, and any process left inside them, go away even when a step fails.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from smtptop.analysis import analyze
from smtptop.render import to_json


def tool(name: str) -> str | None:
    """A command's path, also where root's tools live when PATH leaves out the sbin folders."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


TESTS = Path(__file__).parent
IP, SS, TCPDUMP, SWAKS = tool("ip"), tool("ss"), tool("tcpdump"), tool("swaks")

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and tcpdump"),
    pytest.mark.skipif(
        not (IP and SS and TCPDUMP), reason="needs ip and ss (iproute2) and tcpdump"
    ),
]

USER = "alice@corp.example"
PASSWORD = "Sup3r-S3cret-pw"
WRONG_PASSWORD = "Wr0ng-Guess-pw"
CLIENT_NET = "192.168.99.0/24"
CLIENT_IP = "192.168.99.2"
SERVER_NET = "198.18.0.0/24"
OUTSIDER_IP = "203.0.113.7"
SERVERS = {
    "accept": "198.18.0.10",
    "blocked": "198.18.0.11",
    "rbl": "198.18.0.12",
    "greylist": "198.18.0.13",
    "submission": "198.18.0.14",
}
LISTENING = {f"{ip}:{587 if role == 'submission' else 25}" for role, ip in SERVERS.items()}
FIRST_PORT = 41000
# --immediate-mode: every packet is written at once, none wait in a ring block at SIGINT.  It
# makes libpcap use one ring frame per packet, sized by the snap length (256 KiB), so -B gives
# the ring 64 MiB: the default 2 MiB holds 8 frames and dropped packets in bursts.  -Z root:
# tcpdump would otherwise drop to its own user, unable to write in pytest's temporary folder.
TCPDUMP_OPTIONS = "-i lan0 -n -U --immediate-mode -B 65536 -Z root"
STEP_TIMEOUT = 15.0
CLIENT_TIMEOUT = 30.0
SETTLE = 0.5  # after the client ends, time for the last FIN/ACKs to be captured

PLANNED = {
    "three-rcpt": "accepted",
    "two-messages": "accepted",
    "helo": "accepted",
    "pipelined": "accepted",
    "spam-at-end-of-data": "rejected",
    "blocked-at-greeting": "rejected",
    "rbl-at-rcpt": "rejected",
    "greylisted": "tempfailed",
    "ehlo-then-quit": "no-mail",
    "outsider": "accepted",
    "auth-plain": "accepted",
    "auth-login": "accepted",
    "auth-login-initial": "accepted",
    "auth-wrong-password": "rejected",
}
PLANNED_SWAKS = {"swaks-pipelined": "accepted", "swaks-auth-login": "accepted"}

# The definitions of smtptop.model, restated here to judge the client's record.
COUNTED_STAGES = {"greeting", "HELO", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "end of data"}
EHLO_NOT_SUPPORTED = {500, 502}


@dataclass
class LiveRun:
    truth: list[dict[str, Any]]
    pcap: Path
    report: dict[str, Any]
    tcpdump_counts: dict[str, int]


def run(*command: str, timeout: float = STEP_TIMEOUT) -> str:
    """Run a command to completion; its stderr becomes the failure message."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def netns_exec(ns: str, *command: str) -> list[str]:
    assert IP is not None
    return [IP, "netns", "exec", ns, *command]


class Lab:
    """Two namespaces joined by a veth pair; removes them and every process inside on exit."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.client, self.server = f"smtptop-{tag}-client", f"smtptop-{tag}-server"
        self.made: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def ip(self, ns: str, args: str) -> str:
        """``ip -n NS ARGS``: a command in one of our namespaces, never in the host's."""
        assert IP is not None and ns in self.made
        return run(IP, "-n", ns, *args.split())

    def __enter__(self) -> Lab:
        assert IP is not None
        client, server = self.client, self.server
        try:
            for ns in (client, server):
                run(IP, "netns", "add", ns)
                self.made.append(ns)
                self.ip(ns, "link set lo up")
            self.ip(client, f"link add lan0 type veth peer name wan0 netns {server}")
            self.ip(client, f"addr add {CLIENT_IP}/24 dev lan0")
            self.ip(client, f"addr add {OUTSIDER_IP}/32 dev lan0")
            for address in SERVERS.values():
                self.ip(server, f"addr add {address}/24 dev wan0")
            self.ip(client, "link set lan0 up")
            self.ip(server, "link set wan0 up")
            self.ip(client, f"route add {SERVER_NET} dev lan0")
            self.ip(server, f"route add {CLIENT_NET} dev wan0")
            self.ip(server, f"route add {OUTSIDER_IP}/32 dev wan0")
            for ns in self.made:
                routes = self.ip(ns, "route show default")
                assert not routes.strip(), f"{ns} must have no default route: {routes}"
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self, command: list[str], stderr: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        self.processes.append(process)
        return process

    def __exit__(self, *exc: object) -> None:
        assert IP is not None
        for process in self.processes:
            stop(process, signal.SIGTERM)
        remove_namespaces(self.made)


def remove_namespaces(made: list[str]) -> None:
    """Kill whatever still runs in our namespaces and delete them (the list is emptied)."""
    assert IP is not None
    for ns in made:
        pids = subprocess.run(
            [IP, "netns", "pids", ns],
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(
            [IP, "netns", "del", ns], capture_output=True, timeout=STEP_TIMEOUT, check=False
        )
    made.clear()


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    """Ask a process we started to end; kill it if it has not within a few seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_listening(lab: Lab, servers: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the server namespace's listening sockets until every server is up."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        assert servers.poll() is None, f"servers exited: {log.read_text()}"
        assert SS is not None
        listening = set(run(*netns_exec(lab.server, SS, "-Hltn")).split())
        if listening >= LISTENING:
            return
        time.sleep(0.05)
    pytest.fail(f"servers not listening after {STEP_TIMEOUT}s: {log.read_text()}")


def wait_capturing(tcpdump: subprocess.Popen[bytes]) -> bytes:
    """Read tcpdump's stderr until it says it is listening."""
    assert tcpdump.stderr is not None
    said = b""
    deadline = time.monotonic() + STEP_TIMEOUT
    while b"listening on" not in said:
        left = deadline - time.monotonic()
        assert left > 0 and tcpdump.poll() is None, f"tcpdump did not start: {said!r}"
        ready, _, _ = select.select([tcpdump.stderr], [], [], left)
        if ready:
            said += os.read(tcpdump.stderr.fileno(), 4096)
    return said


def tcpdump_counts(text: str) -> dict[str, int]:
    """tcpdump's closing counts: captured, received by filter, dropped by kernel."""
    found = re.findall(r"(\d+) packets? (captured|received by filter|dropped by kernel)", text)
    return {what: int(n) for n, what in found}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    """Run the whole scenario once, capture it, and analyse the capture."""
    assert TCPDUMP is not None
    tmp = tmp_path_factory.mktemp("live")
    pcap, server_log = tmp / "cap.pcap", tmp / "servers.log"
    plan = {
        **SERVERS,
        "user": USER,
        "password": PASSWORD,
        "wrong_password": WRONG_PASSWORD,
        "client_ip": CLIENT_IP,
        "outsider_ip": OUTSIDER_IP,
        "first_port": FIRST_PORT,
        "swaks": SWAKS or "",
        "lifetime": 60,
    }
    with Lab() as lab, server_log.open("wb") as log:
        servers = lab.start(
            netns_exec(
                lab.server, sys.executable, str(TESTS / "live_servers.py"), json.dumps(plan)
            ),
            log,
        )
        wait_listening(lab, servers, server_log)
        tcpdump = lab.start(
            netns_exec(lab.client, TCPDUMP, *TCPDUMP_OPTIONS.split(), "-w", str(pcap), "tcp"),
            subprocess.PIPE,
        )
        said = wait_capturing(tcpdump)
        client = subprocess.run(
            netns_exec(lab.client, sys.executable, str(TESTS / "live_client.py"), json.dumps(plan)),
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        assert client.returncode == 0, f"client failed: {client.stderr}"
        time.sleep(SETTLE)
        tcpdump.send_signal(signal.SIGINT)
        _, rest = tcpdump.communicate(timeout=STEP_TIMEOUT)
        counts = tcpdump_counts((said + rest).decode())
    truth = json.loads(client.stdout)["sessions"]
    yield LiveRun(truth, pcap, to_json(analyze([str(pcap)])), counts)


# -- the client's record, judged by smtptop's definitions -------------------------------------


def counted(session: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (stage, code)
        for stage, code in session["exchanges"]
        if stage in COUNTED_STAGES and not (stage == "EHLO" and code in EHLO_NOT_SUPPORTED)
    ]


def accepted(session: dict[str, Any]) -> int:
    return sum(
        1 for stage, code in session["exchanges"] if stage == "end of data" and code // 100 == 2
    )


def decisive(session: dict[str, Any]) -> tuple[str, int] | None:
    """The first reply that decides rejected (any 5xx) or else tempfailed (a 4xx)."""
    for klass in (5, 4):
        for stage, code in counted(session):
            if code // 100 == klass:
                return stage, code
    return None


def outcome(session: dict[str, Any]) -> str:
    decided = decisive(session)
    if decided:
        return "rejected" if decided[1] >= 500 else "tempfailed"
    return "accepted" if accepted(session) else "no-mail"


def announced_name(greeting: str) -> str:
    """The host a greeting names: its first word ("220 mx.example ESMTP"), but nothing for a
    refusal that starts with an enhanced status code ("554 5.7.1 Service unavailable")."""
    word = greeting.split(" ", 1)[0]
    return "" if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", word) else word


def endpoint(session: dict[str, Any]) -> str:
    return f"{session['client_ip']}:{session['client_port']}"


def by_client(run: LiveRun) -> dict[str, dict[str, Any]]:
    sessions = run.report["sessions"]
    clients = Counter(s["client"] for s in sessions)
    assert max(clients.values()) == 1, f"client endpoints seen twice: {clients}"
    return {s["client"]: s for s in sessions}


# -- the tests ---------------------------------------------------------------------------------


def test_scenario_ran_as_planned(live: LiveRun) -> None:
    """The servers and clients did their part; otherwise the other checks prove little."""
    planned = PLANNED | (PLANNED_SWAKS if SWAKS else {})
    assert {s["name"]: outcome(s) for s in live.truth} == planned
    assert [s["name"] for s in live.truth if s["tool"] == "swaks" and s["error"]] == []


def test_capture_is_complete_and_clean(live: LiveRun) -> None:
    counts, stats = live.tcpdump_counts, live.report["stats"]
    assert counts["dropped by kernel"] == 0
    assert counts["captured"] == counts["received by filter"] == stats["packets"]
    assert stats["errors"] == 0, stats["error_samples"]
    assert stats["skipped"] == {}
    assert stats["smtp_packets"] == stats["packets"]
    assert stats["sessions"] == len(live.truth)
    assert live.report["warnings"] == []


def expected_facts(truth: dict[str, Any]) -> dict[str, Any]:
    """What the report must say about a session, from the client's record alone."""
    decided = decisive(truth)
    return {
        "server": truth["server"],
        "helo": truth["helo"],
        "mail_from": truth["mail_from"],
        "rcpt_to": truth["rcpt_to"],
        "codes": [code for _, code in truth["exchanges"]],
        "outcome": outcome(truth),
        "decided by": decided and {"stage": decided[0], "code": decided[1]},
        "accepted_messages": accepted(truth),
        "recipients": len(truth["rcpt_to"]),
        "auth_user": truth["auth_user"],
        "partial": False,
        "close_reason": "closed",
    }


def reported_facts(session: dict[str, Any]) -> dict[str, Any]:
    """The same facts as the report's JSON states them."""
    reply = session["outcome_reply"]
    plain = ("server", "helo", "mail_from", "rcpt_to", "outcome", "accepted_messages")
    return {
        **{key: session[key] for key in plain},
        "codes": [r["code"] for r in session["replies"]],
        "decided by": reply and {"stage": reply["stage"], "code": reply["code"]},
        **{key: session[key] for key in ("recipients", "auth_user", "partial", "close_reason")},
    }


def test_sessions_match_what_the_client_saw(live: LiveRun) -> None:
    sessions = by_client(live)
    assert set(sessions) == {endpoint(t) for t in live.truth}
    problems = []
    for truth in live.truth:
        expected, actual = expected_facts(truth), reported_facts(sessions[endpoint(truth)])
        problems += [
            f"{truth['name']} {key}: expected {expected[key]!r}, got {actual[key]!r}"
            for key in expected
            if expected[key] != actual[key]
        ]
    assert not problems, "\n".join(problems)


def test_hosts_match_what_the_client_did(live: LiveRun) -> None:
    hosts = {h["ip"]: h for h in live.report["hosts"]}
    assert set(hosts) == {CLIENT_IP, OUTSIDER_IP}
    for ip, host in hosts.items():
        mine = [t for t in live.truth if t["client_ip"] == ip]
        servers = {t["server"].rsplit(":", 1)[0] for t in mine}
        outcomes = Counter(outcome(t) for t in mine)
        assert host["lan"] is (ip == CLIENT_IP)
        assert host["sessions"] == len(mine)
        assert host["destinations"] == len(servers)
        assert host["rejected_sessions"] == outcomes["rejected"]
        assert host["tempfailed_sessions"] == outcomes["tempfailed"]
        assert host["accepted_messages"] == sum(accepted(t) for t in mine)
        assert host["recipients"] == sum(len(t["rcpt_to"]) for t in mine)
        assert set(host["helos"]) == {t["helo"] for t in mine if t["helo"]}
        for server in host["servers"]:
            theirs = [t for t in mine if t["server"].rsplit(":", 1)[0] == server["ip"]]
            assert server["sessions"] == len(theirs)
            assert server["rejected_sessions"] == sum(outcome(t) == "rejected" for t in theirs)
            assert server["name"] == announced_name(theirs[0]["greeting"])
        assert {s["ip"] for s in host["servers"]} == servers


def test_options_ports_and_lan(live: LiveRun) -> None:
    """``ports=`` narrows what counts as SMTP; ``lan=`` widens what counts as LAN."""
    only_25 = to_json(analyze([str(live.pcap)], ports=[25]))
    assert {s["client"] for s in only_25["sessions"]} == {
        endpoint(t) for t in live.truth if t["server"].endswith(":25")
    }
    assert only_25["stats"]["skipped"].get("not an SMTP port", 0) > 0
    widened = to_json(analyze([str(live.pcap)], lan=["203.0.113.0/24"]))
    assert all(h["lan"] for h in widened["hosts"])


def auth_lines(transcript: list[dict[str, Any]]) -> list[str]:
    """The client's transcript lines from AUTH up to the server's last answer to it."""
    lines, inside = [], False
    for line in transcript:
        if line["kind"] == "C" and line["text"].upper().startswith("AUTH "):
            inside = True
        if inside and line["kind"] == "C":
            lines.append(line["text"])
        elif inside and line["kind"] == "S" and not line["text"].startswith("334"):
            inside = False
    return lines


def test_credentials_are_never_shown(live: LiveRun) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    plain_blobs = [b64(f"\0{USER}\0{p}") for p in (PASSWORD, WRONG_PASSWORD)]
    wire = live.pcap.read_bytes()
    for sent in (b64(PASSWORD), *plain_blobs):
        assert sent.encode() in wire  # the capture really carries them: the check is not vacuous
    hidden = [PASSWORD, WRONG_PASSWORD, b64(PASSWORD), b64(WRONG_PASSWORD), *plain_blobs]
    outputs = {"report": json.dumps(live.report)}
    for form in (["--json"], ["--csv"], []):
        done = subprocess.run(
            [sys.executable, "-m", "smtptop", "report", *form, str(live.pcap)],
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
            cwd=TESTS.parent,
        )
        assert done.returncode == 0, done.stderr
        outputs[" ".join(form) or "table"] = done.stdout + done.stderr
    assert json.loads(outputs["--json"])["sessions"] == live.report["sessions"]
    leaks = [(where, s) for where, text in outputs.items() for s in hidden if s in text]
    assert not leaks
    sessions = by_client(live)
    for truth in live.truth:
        if truth["auth_user"]:
            got = sessions[endpoint(truth)]
            assert got["auth_user"] == USER
            lines = auth_lines(got["transcript"])
            assert len(lines) == sum(stage == "AUTH" for stage, _ in truth["exchanges"])
            shown = [line for line in lines if not re.fullmatch(r"AUTH \w+( \*{8})?|\*{8}", line)]
            assert not shown, f"{truth['name']}: AUTH lines not masked: {shown}"


@pytest.mark.skipif(not SWAKS, reason="swaks is not installed (Debian package swaks)")
def test_swaks_sessions_were_captured(live: LiveRun) -> None:
    sessions = by_client(live)
    swaks = [t for t in live.truth if t["tool"] == "swaks"]
    assert {t["name"] for t in swaks} == set(PLANNED_SWAKS)
    for truth in swaks:
        got = sessions[endpoint(truth)]
        assert got["helo"] == "swaks.corp.example"
        assert got["outcome"] == "accepted"
        assert [r["code"] for r in got["replies"]] == [code for _, code in truth["exchanges"]]
