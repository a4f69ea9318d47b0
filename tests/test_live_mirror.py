"""A remote mirror, made by the kernel: smtptop on the far end of an ERSPAN, gretap or VXLAN
tunnel reports what a capture beside the client reports.

    client namespace                          server namespace
    10.77.0.1, .11, .12 (smtplib)  c0 ==== s0  10.77.0.2:25 (aiosmtpd)
      tc: c0's ingress and egress mirrored (u32 match all, mirred egress mirror) into
      tun0 (erspan / gretap / vxlan, 10.78.0.1 -> 10.78.0.2)
    10.78.0.1                      m0 ==== r0  10.78.0.2   collector namespace:
                                                           smtptop report -i r0 --mirror

smtptop captures twice at once: beside the client (``-i c0``) and on the collector (``-i r0
--mirror``, where only the tunnel's packets arrive).  The two reports' per-host figures must
be equal.  The kernel makes the encapsulation; one without ip_gre (gretap, ERSPAN) skips
those kinds with that reason, VXLAN needing only the vxlan module.

Network safety: three namespaces made for the run, joined by two veth pairs, only on-link
routes, no default route; every step bounded in time; the namespaces and everything in
them removed at the end, also after a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_live_capture import IP, netns_exec, remove_namespaces, run, stop
from test_live_gateway import wait_dropped

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("10.77.0.1", "10.77.0.11", "10.77.0.12")
SERVER = "10.77.0.2"
DURATION = 5.0
STEP = 15.0
TUNNELS = {
    "vxlan": "vxlan id 42 local 10.78.0.1 remote 10.78.0.2 dstport 4789 dev m0",
    "vxlan-8472": "vxlan id 43 local 10.78.0.1 remote 10.78.0.2 dstport 8472 dev m0",
    "vxlan-9000": "vxlan id 44 local 10.78.0.1 remote 10.78.0.2 dstport 9000 dev m0",
    "gretap": "gretap local 10.78.0.1 remote 10.78.0.2",
    "erspan-ii": "erspan local 10.78.0.1 remote 10.78.0.2 seq key 10 erspan_ver 1 erspan 123",
    "erspan-iii": "erspan local 10.78.0.1 remote 10.78.0.2 seq key 11 erspan_ver 2 "
    "erspan_dir ingress erspan_hwid 7",
}
# How the collector is told: --mirror takes the standard ports; a port of a tunnel's own is
# named, which lets it through the kernel filter as well.
RECEIVE = {"vxlan-9000": ("--mirror-port", "vxlan:9000")}
SEND = textwrap.dedent(
    """
    import smtplib, sys
    server, clients = sys.argv[1], sys.argv[2:]
    for round in range(2):
        for number, client in enumerate(clients):
            with smtplib.SMTP(server, 25, local_hostname=f"pc{number}",
                              source_address=(client, 0), timeout=10) as smtp:
                recipients = [f"user{n}@example.org" for n in range(number + 1)]
                smtp.sendmail(f"me{number}@office.example", recipients, "Subject: hi\\r\\n\\r\\nhi")
    """
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and capture"),
    pytest.mark.skipif(IP is None, reason="needs ip (iproute2)"),
]


class MirrorLab:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.client, self.server, self.collector = (f"smtptop-m{n}-{tag}" for n in "csr")
        self.namespaces = (self.client, self.server, self.collector)
        self.made: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def ip(self, ns: str, command: str) -> str:
        assert IP is not None
        return run(IP, "-n", ns, *command.split())

    def up(self) -> None:
        for ns in (self.client, self.server, self.collector):
            run(IP or "ip", "netns", "add", ns)
            self.made.append(ns)
            self.ip(ns, "link set lo up")
        self.ip(self.client, f"link add c0 type veth peer name s0 netns {self.server}")
        self.ip(self.client, f"link add m0 type veth peer name r0 netns {self.collector}")
        for address in CLIENTS:
            self.ip(self.client, f"addr add {address}/24 dev c0")
        self.ip(self.client, "addr add 10.78.0.1/24 dev m0")
        self.ip(self.server, f"addr add {SERVER}/24 dev s0")
        self.ip(self.collector, "addr add 10.78.0.2/24 dev r0")
        for ns, link in ((self.client, "c0"), (self.client, "m0"), (self.server, "s0"),
                         (self.collector, "r0")):  # fmt: skip
            self.ip(ns, f"link set {link} up")
        for ns in self.made:
            assert not self.ip(ns, "route show default").strip(), f"{ns} has a default route"

    def tunnel(self, kind: str) -> None:
        assert IP is not None
        made = subprocess.run([IP, "-n", self.client, "link", "add", "tun0", "type",
                               *TUNNELS[kind].split()], capture_output=True, text=True,
                              timeout=STEP, check=False)  # fmt: skip
        if made.returncode:
            pytest.skip(f"this kernel makes no {kind} device ({made.stderr.strip()}): "
                        "it needs the ip_gre module")  # fmt: skip
        self.ip(self.client, "link set tun0 up")
        tc = netns_exec(self.client, "tc")
        run(*tc, "qdisc", "add", "dev", "c0", "clsact")
        for direction in ("ingress", "egress"):
            run(*tc, "filter", "add", "dev", "c0", direction, "u32", "match", "u32", "0", "0",
                "action", "mirred", "egress", "mirror", "dev", "tun0")  # fmt: skip

    def start(self, ns: str, *command: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(netns_exec(ns, *command), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        self.processes.append(process)
        return process

    def smtptop(self, ns: str, *args: str) -> subprocess.Popen[bytes]:
        env = ("env", "-u", "SUDO_USER", f"PYTHONPATH={REPO}")
        return self.start(ns, *env, sys.executable, "-m", "smtptop", *args)

    def close(self) -> None:
        for process in self.processes:
            stop(process, 15)
        remove_namespaces(self.made)


Made = TypeVar("Made", bound=MirrorLab)


def up_then_removed(made: Made) -> Iterator[Made]:
    """A fixture's body: the lab made, then its namespaces gone, also after a failure."""
    try:
        made.up()
        yield made
    finally:
        made.close()
    assert IP is not None
    left = run(IP, "netns", "list")
    assert not any(ns in left for ns in made.namespaces), left


@pytest.fixture
def lab() -> Iterator[MirrorLab]:
    yield from up_then_removed(MirrorLab())


def figures(report: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Each host's figures: what a mirror must carry whole."""
    keys = ("sessions", "destinations", "rejected_sessions", "tempfailed_sessions",
            "accepted_messages", "recipients", "helos", "mac")  # fmt: skip
    return {h["ip"]: tuple(h.get(k) for k in keys) for h in report["hosts"]}


@pytest.mark.parametrize("kind", TUNNELS)
def test_a_mirror_through_a_tunnel_reports_what_a_capture_beside_the_client_does(
    lab: MirrorLab, kind: str
) -> None:
    lab.tunnel(kind)
    server = lab.start(lab.server, sys.executable, "-m", "aiosmtpd", "-n", "-l",
                       f"{SERVER}:25", "-c", "aiosmtpd.handlers.Sink")  # fmt: skip
    deadline = time.monotonic() + STEP
    while f"{SERVER}:25" not in run(*netns_exec(lab.server, "ss", "-Hltn")):
        assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    report = ("report", "--duration", str(DURATION), "--json", "--workers", "0", "--user",
              "nobody")  # fmt: skip
    direct = lab.smtptop(lab.client, *report, "-i", "c0")
    mirrored = lab.smtptop(lab.collector, *report, "-i", "r0", *RECEIVE.get(kind, ("--mirror",)))
    for process in (direct, mirrored):
        wait_dropped(process)
    sent = subprocess.run(netns_exec(lab.client, sys.executable, "-c", SEND, SERVER, *CLIENTS),
                          capture_output=True, text=True, timeout=STEP, check=False)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    results = []
    for process in (direct, mirrored):
        out, err = process.communicate(timeout=DURATION + STEP)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    beside, far = results
    assert set(figures(beside)) == set(CLIENTS)
    assert figures(far) == figures(beside)
    assert far["stats"]["sessions"] == beside["stats"]["sessions"] == 2 * len(CLIENTS)
    assert all(h["accepted_messages"] == 2 for h in far["hosts"])
    assert not any("mirror" in reason for reason in far["stats"]["skipped"])
