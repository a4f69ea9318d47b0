"""The kernel deals live packets to smtptop's engine processes as the fanout program says.

Two capture sockets of :func:`smtptop.live.open_group` on one end of a veth pair receive
synthetic SMTP frames sent raw from the other end: every frame reaches exactly one socket,
the one the BPF interpreter predicts from :func:`smtptop.bpf.fanout_program`, so both
directions of every client go to one engine, and both engines get clients.

Network safety: one namespace made for the test, holding a veth pair with no address and no
route; frames sent into it end there.  Every subprocess has a time limit, and the namespace
goes away even when a step fails.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import synth
from bpf_vm import run as run_bpf
from test_live_capture import IP, netns_exec, remove_namespaces, run

from smtptop import bpf

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace and capture"),
    pytest.mark.skipif(IP is None, reason="needs ip (iproute2)"),
]

TESTS = Path(__file__).parent
PORTS = (25, 465, 587, 2525)
CLIENTS = [f"192.168.5.{n}" for n in range(1, 17)] + [f"fd00::{n:x}" for n in range(1, 9)]
SERVER_V4, SERVER_V6 = "198.51.100.25", "2001:db8::25"
HELPER_TIMEOUT = 30.0


def ethernet(packet: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    return synth.link_frame(
        synth.LINKTYPE_ETHERNET,
        packet,
        src_mac=b"\x02\x00\x00\x00\x00\x01",
        dst_mac=b"\x02\x00\x00\x00\x00\x02",
        vlans=vlans,
    )


def frames() -> tuple[list[bytes], list[bytes]]:
    """SMTP both ways for every client (some behind a VLAN tag), and web traffic that the
    sockets' filter must keep out."""
    smtp, other = [], []
    for n, client in enumerate(CLIENTS):
        server = SERVER_V6 if ":" in client else SERVER_V4
        port = PORTS[n % len(PORTS)]
        vlans = (7,) if n % 3 == 0 else ()
        for src, dst, sport, dport in ((client, server, 40000 + n, port),
                                       (server, client, port, 40000 + n)):  # fmt: skip
            packet = synth.tcp_packet(src, dst, sport, dport, seq=1, payload=b"EHLO pc\r\n")
            smtp.append(ethernet(packet, vlans))
        other.append(ethernet(synth.tcp_packet(client, server, 40000 + n, 443, seq=1)))
    return smtp, other


def engine_for(frame: bytes, engines: int) -> int:
    tagged = frame[12:14] == b"\x81\x00"
    network = 18 if tagged else 14
    protocol = int.from_bytes(frame[network - 2 : network], "big")
    return run_bpf(bpf.fanout_program(PORTS), frame, network=network, protocol=protocol) % engines


def client_of(frame: bytes) -> str:
    network = 18 if frame[12:14] == b"\x81\x00" else 14
    packet = frame[network:]
    for client in CLIENTS:
        packed = ipaddress.ip_address(client).packed
        if packet[0] >> 4 == 4 and packed in (packet[12:16], packet[16:20]):
            return client
        if packet[0] >> 4 == 6 and packed in (packet[8:24], packet[24:40]):
            return client
    raise AssertionError("a frame of no client")


@pytest.fixture
def namespace() -> str:
    name = f"smtptop-{secrets.token_hex(4)}-fanout"
    made = [name]
    try:
        run(IP, "netns", "add", name)
        run(IP, "-n", name, "link", "add", "fo-send", "type", "veth", "peer", "name", "fo-cap")
        for link in ("fo-send", "fo-cap"):
            run(IP, "-n", name, "link", "set", link, "up")
        yield name
    finally:
        remove_namespaces(made)


@pytest.mark.parametrize("engines", [2, 3])
def test_kernel_deals_each_client_to_the_engine_the_program_names(namespace, engines) -> None:
    smtp, other = frames()
    command = netns_exec(
        namespace, sys.executable, str(TESTS / "live_fanout.py"),
        "fo-send", "fo-cap", str(engines), ",".join(map(str, PORTS)),
    )  # fmt: skip
    done = subprocess.run(
        command,
        input=json.dumps([f.hex() for f in smtp + other]),
        capture_output=True,
        text=True,
        timeout=HELPER_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    received = [[bytes.fromhex(f) for f in seen] for seen in json.loads(done.stdout)]
    assert sorted(f for seen in received for f in seen) == sorted(smtp), "each once, no web"
    for engine, seen in enumerate(received):
        assert seen, f"engine {engine} was dealt no client"
        for frame in seen:
            assert engine_for(frame, engines) == engine, client_of(frame)
    owners: dict[str, set[int]] = {}
    for engine, seen in enumerate(received):
        for frame in seen:
            owners.setdefault(client_of(frame), set()).add(engine)
    assert set(owners) == set(CLIENTS)
    assert all(len(engines_) == 1 for engines_ in owners.values()), owners
