"""TCP reassembly: order, retransmissions, overlaps, gaps, bounds."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from smtptop.decode import ACK, FIN, RST, SYN
from smtptop.tcp import CLIENT, SERVER, Connection, ReassemblyLimits

ISN = 0xFFFFFF00  # close to the wrap-around, so every test crosses it


class Recorder:
    """A sink that keeps what each side delivered, gaps written as ``<gap N>``."""

    def __init__(self) -> None:
        self.streams: dict[int, bytearray] = {CLIENT: bytearray(), SERVER: bytearray()}
        self.gaps: list[tuple[int, int]] = []

    def receive_data(self, side: int, data: bytes, ts: float) -> None:
        self.streams[side] += data

    def receive_gap(self, side: int, size: int, ts: float) -> None:
        self.gaps.append((side, size))
        self.streams[side] += b"<gap %d>" % size


def segments(data: bytes, size: int, isn: int = ISN) -> list[tuple[int, bytes]]:
    """Cut ``data`` into (seq, payload) pieces; the first byte is at isn + 1."""
    return [((isn + 1 + i) % (1 << 32), data[i : i + size]) for i in range(0, len(data), size)]


def connection(**limits) -> tuple[Connection, Recorder]:
    sink = Recorder()
    conn = Connection(sink, ReassemblyLimits(**limits))
    conn.segment(CLIENT, ISN, 0, SYN, b"", 0.0)
    conn.segment(SERVER, 5000, (ISN + 1) % (1 << 32), SYN | ACK, b"", 0.0)
    return conn, sink


DATA = bytes(range(256)) * 20


def test_in_order_delivery_across_sequence_wrap() -> None:
    conn, sink = connection()
    for seq, payload in segments(DATA, 100):
        conn.segment(CLIENT, seq, 5001, ACK, payload, 0.0)
    assert bytes(sink.streams[CLIENT]) == DATA
    assert not sink.gaps


def test_out_of_order_duplicates_and_overlaps_first_copy_wins() -> None:
    conn, sink = connection()
    pieces = segments(DATA, 100)
    rng = random.Random(7)
    shuffled = pieces + rng.sample(pieces, 10)
    rng.shuffle(shuffled)
    overlapping = [((seq - 30) % (1 << 32), DATA[max(0, i * 100 - 30) : i * 100 + 60])
                   for i, (seq, _) in enumerate(pieces) if i]  # fmt: skip
    for seq, payload in shuffled + overlapping:
        conn.segment(CLIENT, seq, 5001, ACK, payload, 0.0)
    conn.finish(1.0)
    assert bytes(sink.streams[CLIENT]) == DATA
    assert not sink.gaps
    assert conn.streams[CLIENT].retransmitted >= 10
    assert conn.conflicts == 0


def test_conflicting_retransmission_keeps_the_first_copy() -> None:
    conn, sink = connection()
    conn.segment(CLIENT, (ISN + 1) % (1 << 32), 5001, ACK, b"HELO first\r\n", 0.0)
    conn.segment(CLIENT, (ISN + 1) % (1 << 32), 5001, ACK, b"HELO other\r\nQUIT\r\n", 0.0)
    assert bytes(sink.streams[CLIENT]) == b"HELO first\r\nQUIT\r\n"
    assert conn.conflicts == 1
    conn.segment(CLIENT, (ISN + 1) % (1 << 32), 5001, ACK, b"HELO first\r\n", 0.0)
    assert conn.conflicts == 1  # an honest retransmission is no conflict


def test_conflicting_copies_of_a_buffered_segment_are_counted() -> None:
    conn, sink = connection()
    later = (ISN + 1 + 6) % (1 << 32)
    conn.segment(CLIENT, later, 5001, ACK, b"MAIL FROM:<a@b>\r\n", 0.0)
    conn.segment(CLIENT, later, 5001, ACK, b"MAIL FROM:<x@y>\r\n", 0.0)
    conn.segment(CLIENT, (ISN + 1) % (1 << 32), 5001, ACK, b"HELO a", 0.0)
    assert bytes(sink.streams[CLIENT]) == b"HELO aMAIL FROM:<a@b>\r\n"
    assert conn.conflicts == 1


def test_peer_ack_past_a_hole_declares_a_gap() -> None:
    conn, sink = connection()
    pieces = segments(DATA, 100)
    for seq, payload in pieces[:3] + pieces[4:6]:
        conn.segment(CLIENT, seq, 5001, ACK, payload, 0.0)
    assert bytes(sink.streams[CLIENT]) == DATA[:300]
    for _ in range(2):
        conn.segment(SERVER, 5001, pieces[5][0], ACK, b"", 0.0)
    assert not sink.gaps  # maybe only reordered
    conn.segment(SERVER, 5001, pieces[5][0], ACK, b"", 0.0)
    assert sink.gaps == [(CLIENT, 100)]
    assert bytes(sink.streams[CLIENT]) == DATA[:300] + b"<gap 100>" + DATA[400:600]
    assert conn.gap_bytes == 100


def test_buffer_bound_forces_a_gap() -> None:
    conn, sink = connection(max_ooo_segments=5)
    pieces = segments(DATA, 10)
    for seq, payload in pieces[1:20]:
        conn.segment(CLIENT, seq, 5001, ACK, payload, 0.0)
        assert len(conn.streams[CLIENT].ooo) <= 5
    assert sink.gaps == [(CLIENT, 10)]
    assert bytes(sink.streams[CLIENT]).endswith(DATA[10:200])


def test_finish_flushes_buffered_data_after_holes() -> None:
    conn, sink = connection()
    pieces = segments(DATA, 100)
    conn.segment(CLIENT, *pieces[2][:1], 5001, ACK, pieces[2][1], 0.0)
    conn.finish(1.0)
    assert sink.gaps == [(CLIENT, 200)]
    assert bytes(sink.streams[CLIENT]) == b"<gap 200>" + DATA[200:300]


def test_midstream_pickup_starts_at_first_segment() -> None:
    sink = Recorder()
    conn = Connection(sink)
    conn.segment(SERVER, 123456, 99, ACK, b"250 ok\r\n", 0.0)
    conn.segment(CLIENT, 99, 123464, ACK, b"QUIT\r\n", 0.0)
    assert not conn.handshake
    assert bytes(sink.streams[SERVER]) == b"250 ok\r\n"
    assert bytes(sink.streams[CLIENT]) == b"QUIT\r\n"


def test_fin_both_ways_and_reset_close() -> None:
    conn, _ = connection()
    conn.segment(CLIENT, (ISN + 1) % (1 << 32), 5001, ACK | FIN, b"QUIT\r\n", 0.0)
    assert not conn.closed
    conn.segment(SERVER, 5001, (ISN + 8) % (1 << 32), ACK | FIN, b"221 bye\r\n", 0.0)
    assert conn.closed
    other, _ = connection()
    other.segment(SERVER, 5001, 0, RST, b"", 0.0)
    assert other.closed and other.reset


def test_fin_waits_for_missing_data() -> None:
    conn, sink = connection()
    pieces = segments(b"HELO a\r\nQUIT\r\n", 8)
    conn.segment(SERVER, 5001, 0, ACK | FIN, b"", 0.0)
    conn.segment(CLIENT, pieces[1][0], 5002, ACK | FIN, pieces[1][1], 0.0)
    assert not conn.closed
    conn.segment(CLIENT, pieces[0][0], 5002, ACK, pieces[0][1], 0.0)
    assert conn.closed
    assert bytes(sink.streams[CLIENT]) == b"HELO a\r\nQUIT\r\n"


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=8, max_value=64),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=(1 << 32) - 1),
)
def test_any_order_with_duplicates_gives_the_same_stream(size: int, seed: int, isn: int) -> None:
    rng = random.Random(seed)
    sink = Recorder()
    conn = Connection(sink)
    conn.segment(CLIENT, isn, 0, SYN, b"", 0.0)
    data = DATA[:1500]
    pieces = segments(data, size, isn)
    mixed = pieces + [rng.choice(pieces) for _ in range(len(pieces) // 3)]  # within the bound
    rng.shuffle(mixed)
    for seq, payload in mixed:
        conn.segment(CLIENT, seq, 0, ACK, payload, 0.0)
    conn.finish(0.0)
    assert bytes(sink.streams[CLIENT]) == data
    assert not sink.gaps


def test_a_segment_that_fills_the_hole_keeps_the_bytes_buffered_first() -> None:
    """The first copy wins between a buffered segment and the one that fills the hole too."""
    conn, sink = connection()
    start = (ISN + 1) % (1 << 32)
    conn.segment(CLIENT, (start + 5) % (1 << 32), 5001, ACK, b"FROM:<a@b>\r\n", 0.0)
    conn.segment(CLIENT, start, 5001, ACK, b"MAIL FROM:<evil@x>\r\n", 0.0)
    assert bytes(sink.streams[CLIENT]) == b"MAIL FROM:<a@b>\r\n>\r\n"
    assert conn.conflicts == 1


def _lines_run_in_tcp(work: object) -> int:
    """How many lines of smtptop/tcp.py ``work()`` executes: Python work, counted exactly."""
    import sys

    import smtptop.tcp

    path, count = smtptop.tcp.__file__, 0

    def tracer(frame, event, _arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if frame.f_code.co_filename != path:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        work()  # type: ignore[operator]
    finally:
        sys.settrace(None)
    return count


def _holes(segments: int, packets: int) -> tuple[int, int]:
    """Lines run by ``packets`` segments each after a hole that never fills, with a dup ACK
    after each, once the store holds ``segments`` of them; and by filling the holes left."""
    conn, _ = connection(max_ooo_segments=segments)
    start = (ISN + 1) % (1 << 32)
    hole = start
    for n in range(segments):
        conn.segment(CLIENT, (start + 1 + 11 * n) % (1 << 32), 5001, ACK, b"x" * 10, 0.0)

    def flood() -> None:
        for n in range(segments, segments + packets):
            conn.segment(CLIENT, (start + 1 + 11 * n) % (1 << 32), 5001, ACK, b"x" * 10, 0.0)
            conn.segment(SERVER, 5001, hole, ACK, b"", 0.0)

    flooding = _lines_run_in_tcp(flood)
    assert len(conn.streams[CLIENT].ooo) == segments  # full all along: one hole given up each

    def fill() -> None:  # the holes not given up, in order: each delivers two segments
        for n in range(packets, segments + packets):
            conn.segment(CLIENT, (start + 11 * n) % (1 << 32), 5001, ACK, b"y", 0.0)

    filling = _lines_run_in_tcp(fill)
    assert not conn.streams[CLIENT].ooo
    return flooding, filling


def test_out_of_order_work_does_not_grow_with_the_store() -> None:
    """Each segment after a hole, and each ACK, costs the same with 16 or 1,024 segments
    buffered (it was a scan of the store: 14.9 s for 100,000 packets against 0.64 s in
    order); filling the holes costs the same per segment delivered."""
    packets = 200
    small_flood, small_fill = _holes(16, packets)
    large_flood, large_fill = _holes(1024, packets)
    assert large_flood <= small_flood * 1.05
    per_hole = large_fill / 1024
    assert per_hole <= small_fill / 16 * 1.05
