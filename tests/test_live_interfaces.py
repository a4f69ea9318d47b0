"""Several interfaces at once: ``smtptop report -i m1 -i m2`` counts every client host's
sessions whole, in one process and with engine processes, also when one host's sessions
come over both links and a session's two directions over different ones.

    client namespace                                 monitor namespace
    10.81.1.11, .12  c1 ===================== m1  10.81.1.2:25 (aiosmtpd)
    10.81.2.11       c2 ===================== m2  10.81.2.2:25 (aiosmtpd)
    10.81.9.7 (lo): to .1.2 over c1, to .2.2 over c2; every reply to it comes back over m1

smtptop runs in the monitor namespace on m1 and m2, twice at once: ``--workers 0`` (both
sockets read in one process) and ``--workers 2`` (a PACKET_FANOUT group of two sockets on
each interface, engine k reading socket k of both).  The kernel deals a packet to a socket
by its client's address alone, the same way in both groups, so 10.81.9.7's sessions over m2,
whose replies leave by m1, are still each in one engine: every host's figures must be what
the client sent.

Network safety: two namespaces made for the run, joined by two veth pairs, only on-link
routes and one host route inside them, no default route; every step bounded in time; the
namespaces and everything in them removed at the end, also after a failure.
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
from typing import Any

import pytest
from test_live_capture import IP, netns_exec, run
from test_live_gateway import wait_dropped
from test_live_mirror import MirrorLab, up_then_removed

REPO = Path(__file__).resolve().parent.parent
SERVERS = ("10.81.1.2", "10.81.2.2")
ROAMING = "10.81.9.7"  # a client host whose sessions take both links
# (client, server, sessions): what the client namespace sends
PLAN = [
    ("10.81.1.11", SERVERS[0], 2),
    ("10.81.1.12", SERVERS[0], 1),
    ("10.81.2.11", SERVERS[1], 2),
    (ROAMING, SERVERS[0], 2),
    (ROAMING, SERVERS[1], 2),
]
DURATION = 6.0
STEP = 15.0
SEND = textwrap.dedent(
    """
    import json, smtplib, sys
    for client, server, sessions in json.loads(sys.argv[1]):
        for number in range(sessions):
            with smtplib.SMTP(server, 25, local_hostname=f"pc-{client}",
                              source_address=(client, 0), timeout=10) as smtp:
                smtp.sendmail("me@office.example", ["you@example.org"], "Subject: hi\\r\\n\\r\\nhi")
    """
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and capture"),
    pytest.mark.skipif(IP is None, reason="needs ip (iproute2)"),
]


class TwoLinks(MirrorLab):
    """The mirror lab's way of running and cleaning up, over two namespaces of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.client, self.monitor = (f"smtptop-i{n}-{secrets.token_hex(3)}" for n in "cm")
        self.namespaces = (self.client, self.monitor)

    def up(self) -> None:
        assert IP is not None
        for ns in (self.client, self.monitor):
            run(IP, "netns", "add", ns)
            self.made.append(ns)
            self.ip(ns, "link set lo up")
            # 10.81.9.7's replies come in by c1 for a server it reached by c2, and its
            # packets to .2.2 reach m2 though the route back to it is m1's
            run(*netns_exec(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                            "net.ipv4.conf.default.rp_filter=0"))  # fmt: skip
        for link in ("1", "2"):
            self.ip(self.client, f"link add c{link} type veth peer name m{link} netns "
                    f"{self.monitor}")  # fmt: skip
            self.ip(self.client, f"addr add 10.81.{link}.1/24 dev c{link}")
            self.ip(self.monitor, f"addr add 10.81.{link}.2/24 dev m{link}")
        for address in ("10.81.1.11", "10.81.1.12"):
            self.ip(self.client, f"addr add {address}/24 dev c1")
        self.ip(self.client, "addr add 10.81.2.11/24 dev c2")
        self.ip(self.client, f"addr add {ROAMING}/32 dev lo")
        for ns, prefix in ((self.client, "c"), (self.monitor, "m")):
            for link in ("1", "2"):
                run(*netns_exec(ns, "sysctl", "-qw", f"net.ipv4.conf.{prefix}{link}.rp_filter=0"))
                self.ip(ns, f"link set {prefix}{link} up")
        self.ip(self.monitor, f"route add {ROAMING}/32 dev m1")
        for ns in self.made:
            assert not self.ip(ns, "route show default").strip(), f"{ns} has a default route"


@pytest.fixture
def links() -> Iterator[TwoLinks]:
    yield from up_then_removed(TwoLinks())


def sent() -> dict[str, tuple[int, int, int]]:
    """Each client host's sessions, distinct servers and accepted messages, from the plan."""
    hosts: dict[str, tuple[int, set[str]]] = {}
    for client, server, sessions in PLAN:
        count, servers = hosts.get(client, (0, set()))
        hosts[client] = (count + sessions, servers | {server})
    return {ip: (count, len(servers), count) for ip, (count, servers) in hosts.items()}


def figures(report: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {h["ip"]: (h["sessions"], h["destinations"], h["accepted_messages"])
            for h in report["hosts"]}  # fmt: skip


def test_two_interfaces_count_every_host_whole_in_one_process_and_in_engines(
    links: TwoLinks,
) -> None:
    for server in SERVERS:
        links.start(links.monitor, sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{server}:25",
                    "-c", "aiosmtpd.handlers.Sink")  # fmt: skip
    deadline = time.monotonic() + STEP
    while not all(f"{server}:25" in run(*netns_exec(links.monitor, "ss", "-Hltn"))
                  for server in SERVERS):  # fmt: skip
        assert time.monotonic() < deadline, "the servers did not start"
        time.sleep(0.05)
    env = ("env", "-u", "SUDO_USER", f"PYTHONPATH={REPO}")
    report = ("-m", "smtptop", "report", "-i", "m1", "-i", "m2", "--duration", str(DURATION),
              "--json", "--user", "nobody")  # fmt: skip
    runs = {
        workers: links.start(links.monitor, *env, sys.executable, *report, "--workers", workers)
        for workers in ("0", "2")
    }
    for process in runs.values():
        wait_dropped(process)
    done = subprocess.run(netns_exec(links.client, sys.executable, "-c", SEND, json.dumps(PLAN)),
                          capture_output=True, text=True, timeout=STEP, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = sent()
    for workers, process in runs.items():
        out, err = process.communicate(timeout=DURATION + STEP)
        assert process.returncode == 0, (workers, err)
        result = json.loads(out)
        assert figures(result) == expected, workers
        assert result["stats"]["sessions"] == sum(n for _, _, n in PLAN)
        assert result["warnings"] == []
        roaming = [s for s in result["sessions"] if s["client"].startswith(f"{ROAMING}:")]
        assert len(roaming) == 4 and {s["server"] for s in roaming} == {f"{s}:25" for s in SERVERS}
        assert all((s["partial"], s["outcome"]) == (False, "accepted") for s in roaming), workers
