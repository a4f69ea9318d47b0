"""Per-connection TCP reassembly: in-order bytes for each direction, with gaps marked.

A passive monitor sees retransmissions, overlaps, reordering and loss.  Each direction keeps
the next expected sequence number; data at or before it is trimmed (the first copy wins),
data after it waits in a bounded out-of-order store.  Missing bytes become a gap when the
peer acknowledges past them, when the store overflows, or when the connection ends, so the
parser can resynchronise instead of waiting forever.  Bytes go straight to a sink (the SMTP
parser) without intermediate lists.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Protocol

from smtptop.decode import ACK, FIN, RST, SYN

CLIENT = 0
SERVER = 1
REORDER_ACKS = 3  # peer ACKs past a hole before it counts as lost, not merely reordered
SEQ_MOD = 1 << 32
HALF = 1 << 31
CONTROL = SYN | FIN | RST


class StreamSink(Protocol):
    """Where reassembled bytes go (the SMTP parser implements this)."""

    def receive_data(self, side: int, data: bytes, ts: float) -> None: ...

    def receive_gap(self, side: int, size: int, ts: float) -> None: ...


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """Bounds on what one connection may buffer while waiting for missing segments."""

    max_ooo_bytes: int = 256 * 1024
    max_ooo_segments: int = 256


def _rel(seq: int, base: int) -> int:
    """Signed distance from ``base`` to ``seq`` in sequence space."""
    d = (seq - base) % SEQ_MOD
    return d - SEQ_MOD if d >= HALF else d


class _Stream:
    """One direction.  Its out-of-order store keeps segments by their position in an unbounded
    count of bytes (``next_abs`` is the position of ``next_seq``; it need only be right while
    the store holds something), so keys sort without sequence-number wrap-around: the keys in
    order are ``ooo_keys``, found by bisection.  Stored segments never overlap (overlapping
    ones are merged, the bytes that came first kept), so one segment meets a neighbour or the
    segments it overlaps, never the whole store."""

    __slots__ = (
        "bytes",
        "conflicts",
        "fin_seq",
        "gap_bytes",
        "hole_acks",
        "last",
        "last_seq",
        "next_abs",
        "next_seq",
        "ooo",
        "ooo_bytes",
        "ooo_keys",
        "packets",
        "retransmitted",
    )

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.next_abs = 0
        self.ooo: dict[int, bytes] = {}  # position -> payload
        self.ooo_keys: list[int] = []  # the positions, in order
        self.ooo_bytes = 0
        self.fin_seq: int | None = None
        self.hole_acks = 0
        self.conflicts = 0  # retransmissions whose bytes differ from the copy already taken
        self.last = b""  # the last segment delivered, to spot such conflicts
        self.last_seq = 0
        self.packets = 0
        self.bytes = 0
        self.retransmitted = 0
        self.gap_bytes = 0

    @property
    def finished(self) -> bool:
        """Every byte up to this side's FIN has been delivered."""
        return self.fin_seq is not None and self.fin_seq == self.next_seq


class Connection:
    """One TCP connection, reassembled into its sink."""

    __slots__ = ("closed", "handshake", "limits", "reset", "sink", "streams")

    def __init__(self, sink: StreamSink, limits: ReassemblyLimits | None = None) -> None:
        self.sink = sink
        self.limits = limits or ReassemblyLimits()
        self.streams = (_Stream(), _Stream())
        self.handshake = False
        self.reset = False
        self.closed = False  # both sides finished, or a reset

    @property
    def gap_bytes(self) -> int:
        return self.streams[CLIENT].gap_bytes + self.streams[SERVER].gap_bytes

    @property
    def conflicts(self) -> int:
        return self.streams[CLIENT].conflicts + self.streams[SERVER].conflicts

    def segment(self, side: int, seq: int, ack: int, flags: int, payload: bytes, ts: float) -> None:
        """Take one captured segment sent by ``side``.

        The common case, the next expected bytes (or a bare ACK) with nothing buffered, is
        handled inline: it is most of every capture.
        """
        streams = self.streams
        stream = streams[side]
        stream.packets += 1
        expected = stream.next_seq
        if flags & CONTROL or expected is None:
            self._control(stream, side, seq, ack, flags, payload, ts)
            return
        if flags & ACK:
            peer = streams[1 - side]
            if peer.ooo:
                self._acked(peer, 1 - side, ack, ts)
                self._update_closed()
        if not payload:
            return
        stream.bytes += len(payload)
        if seq == expected and not stream.ooo:
            self.sink.receive_data(side, payload, ts)
            stream.last, stream.last_seq = payload, seq
            stream.next_seq = (seq + len(payload)) % SEQ_MOD
            stream.hole_acks = 0
            if stream.fin_seq is not None:
                self._update_closed()
        else:
            self._data(stream, side, seq, payload, ts)
            self._update_closed()

    def _control(
        self, stream: _Stream, side: int, seq: int, ack: int, flags: int, payload: bytes, ts: float
    ) -> None:
        """A segment with SYN, FIN or RST, or the first one seen from this side."""
        stream.bytes += len(payload)
        if flags & RST:
            self.reset = self.closed = True
            return
        if flags & SYN:
            self.handshake = True
            seq = (seq + 1) % SEQ_MOD
            if stream.next_seq is None:
                stream.next_seq = seq
        elif stream.next_seq is None:
            stream.next_seq = seq
        if flags & ACK:
            peer = self.streams[1 - side]
            if peer.ooo and peer.next_seq is not None:
                self._acked(peer, 1 - side, ack, ts)
        if payload:
            self._data(stream, side, seq, payload, ts)
        if flags & FIN:
            stream.fin_seq = (seq + len(payload)) % SEQ_MOD
        self._update_closed()

    def _update_closed(self) -> None:
        client, server = self.streams
        self.closed = self.reset or (client.finished and server.finished)

    def finish(self, ts: float) -> None:
        """No more packets will come: deliver what is buffered, marking the holes as gaps."""
        for side, stream in enumerate(self.streams):
            while stream.ooo:
                self._skip_to_buffered(stream, side, ts)

    def _data(self, stream: _Stream, side: int, seq: int, payload: bytes, ts: float) -> None:
        assert stream.next_seq is not None
        offset = _rel(seq, stream.next_seq)
        if offset > 0:
            self._store(stream, stream.next_abs + offset, payload)
            self._bound(stream, side, ts)
            return
        if offset:
            self._check_overlap(stream, seq, payload[: min(len(payload), -offset)])
        if len(payload) + offset <= 0:
            stream.retransmitted += 1
            return
        if offset:
            payload = payload[-offset:]
        stream.hole_acks = 0
        if stream.ooo:  # it fills the hole: through the store, where the first copies win
            self._store(stream, stream.next_abs, payload)
            self._drain(stream, side, ts)
        else:
            self._deliver(stream, side, payload, ts)

    def _deliver(self, stream: _Stream, side: int, payload: bytes, ts: float) -> None:
        assert stream.next_seq is not None
        self.sink.receive_data(side, payload, ts)
        stream.last, stream.last_seq = payload, stream.next_seq
        stream.next_seq = (stream.next_seq + len(payload)) % SEQ_MOD
        stream.next_abs += len(payload)

    @staticmethod
    def _check_overlap(stream: _Stream, seq: int, old_part: bytes) -> None:
        """Count a retransmission that says something else than what was taken (the first
        copy wins, but an evasion attempt should not go unnoticed)."""
        start = _rel(seq, stream.last_seq)
        end = start + len(old_part)
        if start >= 0 and end <= len(stream.last) and stream.last[start:end] != old_part:
            stream.conflicts += 1

    @staticmethod
    def _store(stream: _Stream, key: int, payload: bytes) -> None:
        """Keep a segment that starts at position ``key``.  Where it overlaps stored ones,
        their bytes (which came first) win, each contradiction is counted, and the whole
        becomes one stored segment: a cost in the segments met, not in the store's size."""
        keys, ooo = stream.ooo_keys, stream.ooo
        end = key + len(payload)
        low = bisect_right(keys, key)
        if low and keys[low - 1] + len(ooo[keys[low - 1]]) > key:
            low -= 1  # the segment before reaches into this one
        high = bisect_left(keys, end, low)
        if low == high:  # it meets nothing: the common case
            keys.insert(low, key)
            ooo[key] = payload
            stream.ooo_bytes += len(payload)
            return
        start = min(key, keys[low])
        pieces: list[bytes] = []
        at = start
        for other_key in keys[low:high]:
            other = ooo.pop(other_key)
            stream.ooo_bytes -= len(other)
            if other_key > at:
                pieces.append(payload[at - key : other_key - key])
            first, last = max(key, other_key), min(end, other_key + len(other))
            if payload[first - key : last - key] != other[first - other_key : last - other_key]:
                stream.conflicts += 1
            pieces.append(other)
            at = other_key + len(other)
        if end > at:
            pieces.append(payload[at - key :])
        elif high - low == 1 and start == keys[low]:
            stream.retransmitted += 1  # all of it was there already
        merged = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        keys[low:high] = [start]
        ooo[start] = merged
        stream.ooo_bytes += len(merged)

    def _bound(self, stream: _Stream, side: int, ts: float) -> None:
        """Give up holes, earliest first, until the store is within its limits."""
        limits = self.limits
        while stream.ooo and (
            stream.ooo_bytes > limits.max_ooo_bytes or len(stream.ooo) > limits.max_ooo_segments
        ):
            self._skip_to_buffered(stream, side, ts)

    def _drain(self, stream: _Stream, side: int, ts: float) -> None:
        """Deliver the stored segments that have become contiguous, in one pass."""
        keys, ooo = stream.ooo_keys, stream.ooo
        taken = 0
        for key in keys:
            if key != stream.next_abs:  # stored segments start past next_abs: a hole
                break
            payload = ooo.pop(key)
            stream.ooo_bytes -= len(payload)
            taken += 1
            self._deliver(stream, side, payload, ts)
        del keys[:taken]

    def _skip_to_buffered(self, stream: _Stream, side: int, ts: float) -> None:
        """Give up on the hole before the earliest buffered segment: report a gap."""
        assert stream.next_seq is not None
        missing = stream.ooo_keys[0] - stream.next_abs
        stream.gap_bytes += missing
        self.sink.receive_gap(side, missing, ts)
        stream.next_seq = (stream.next_seq + missing) % SEQ_MOD
        stream.next_abs += missing
        self._drain(stream, side, ts)

    def _acked(self, stream: _Stream, side: int, ack: int, ts: float) -> None:
        """The peer acknowledged bytes of ``stream`` beyond a hole.

        After a few such ACKs the missing bytes are not late but lost: report the gap.
        """
        assert stream.next_seq is not None
        earliest = (stream.next_seq + stream.ooo_keys[0] - stream.next_abs) % SEQ_MOD
        if _rel(ack, earliest) < 0:
            return
        stream.hole_acks += 1
        if stream.hole_acks >= REORDER_ACKS:
            self._skip_to_buffered(stream, side, ts)
