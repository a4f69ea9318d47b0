"""The evidence ring of a live capture: each client's latest SMTP packets within a budget."""

from __future__ import annotations

import ipaddress
import random

import synth
from hypothesis import given, settings
from hypothesis import strategies as st

from smtptop.analyzer import Analyzer, EngineConfig
from smtptop.ring import HOST_OVERHEAD, PACKET_OVERHEAD, PacketRing


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def test_every_packet_is_kept_while_the_budget_has_room() -> None:
    ring = PacketRing(1 << 20)
    for i in range(100):
        ring.add(packed("192.168.0.5"), float(i), 1, bytes([i]) * 60)
    kept = ring.packets("192.168.0.5")
    assert [p[0] for p in kept.packets] == [float(i) for i in range(100)]
    assert (kept.not_kept, kept.not_kept_bytes, kept.budget) == (0, 0, 1 << 20)
    assert ring.packets("192.168.0.6").packets == []  # a host it never saw


def test_a_copy_stays_as_it_was_taken() -> None:
    ring = PacketRing(1 << 20)
    ring.add(packed("192.168.0.5"), 1.0, 1, b"x" * 60)
    taken = ring.packets("192.168.0.5")
    ring.add(packed("192.168.0.5"), 2.0, 1, b"y" * 60)
    assert len(taken.packets) == 1 and len(ring.packets("192.168.0.5").packets) == 2


def test_the_busiest_host_gives_up_its_oldest_packets_and_a_quiet_one_keeps_its_own() -> None:
    budget = 64 * 1024
    ring = PacketRing(budget)
    for i in range(5):
        ring.add(packed("192.168.0.7"), float(i), 1, b"q" * 100)
    for i in range(2000):
        ring.add(packed("192.168.0.108"), 10.0 + i, 1, i.to_bytes(4, "big") * 50)
        assert ring.used <= budget
    quiet, bot = ring.packets("192.168.0.7"), ring.packets("192.168.0.108")
    assert len(quiet.packets) == 5 and quiet.not_kept == 0
    assert bot.not_kept + len(bot.packets) == 2000 and bot.not_kept > 1000
    assert bot.not_kept_bytes == 200 * bot.not_kept
    assert [p[0] for p in bot.packets] == [10.0 + i for i in range(bot.not_kept, 2000)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(40, 1600)), max_size=400))
def test_the_budget_holds_and_every_packet_is_kept_or_counted(sends) -> None:
    budget = 48 * 1024
    ring = PacketRing(budget)
    sent: dict[str, list[int]] = {}
    for number, (host, size) in enumerate(sends):
        ip = f"10.0.0.{host}"
        ring.add(packed(ip), float(number), 1, bytes(size))
        sent.setdefault(ip, []).append(number)
        assert ring.used <= budget
    levels = []
    for ip, numbers in sent.items():
        kept = ring.packets(ip)
        assert kept.not_kept + len(kept.packets) == len(numbers)
        assert [int(p[0]) for p in kept.packets] == numbers[kept.not_kept :]  # the latest
        if kept.not_kept:
            levels.append(sum(len(p[2]) + PACKET_OVERHEAD for p in kept.packets))
    held = sum(len(p[2]) + PACKET_OVERHEAD for ip in sent for p in ring.packets(ip).packets)
    assert ring.used == held + HOST_OVERHEAD * len(sent)
    if levels:  # a host that gave some up holds no more than one packet above another's level
        assert max(levels) <= min(levels) + 1600 + PACKET_OVERHEAD


def test_hosts_beyond_the_table_are_counted_not_kept() -> None:
    ring = PacketRing(16 * HOST_OVERHEAD)  # room for four hosts' records
    for host in range(6):
        ring.add(packed(f"10.0.0.{host}"), 1.0, 1, b"p" * 60)
    assert ring.max_hosts == 4 and len(ring.hosts) == 4 and ring.unrecorded == 2
    beyond = ring.packets("10.0.0.5")
    assert (beyond.packets, beyond.unrecorded) == ([], 2)  # the bundle says why it is empty


def test_the_engine_keeps_both_directions_of_a_clients_smtp_and_nothing_else() -> None:
    rng = random.Random(3)
    frames: list[synth.Frame] = []
    for port in range(3):
        conv = synth.Conversation("192.168.0.9", 40000 + port, f"198.51.100.{port}", 25,
                                  start=1000.0 + port)  # fmt: skip
        conv.handshake()
        conv.smtp([("S", b"220 mx\r\n"), ("C", b"EHLO pc\r\n"), ("S", b"250 ok\r\n")])
        conv.close()
        frames += conv.frames
    web = synth.Conversation("192.168.0.9", 41000, "198.51.100.80", 80, start=1000.5)
    web.handshake()
    frames = sorted(frames + web.frames, key=lambda f: (f.ts, rng.random()))
    analyzer = Analyzer(EngineConfig(evidence_buffer=1 << 20))
    analyzer.feed((f.ts, synth.LINKTYPE_ETHERNET, f.data) for f in frames)
    assert analyzer.ring is not None
    kept = analyzer.ring.packets("192.168.0.9").packets
    smtp = [f for f in frames if f not in web.frames]
    assert [(ts, frame) for ts, _, frame in kept] == [(f.ts, f.data) for f in smtp]
    assert analyzer.ring.packets("198.51.100.0").packets == []  # servers are not clients
    assert Analyzer(EngineConfig()).ring is None  # off unless asked for
