"""The latest SMTP packets of each client host of a live capture, within a byte budget.

A bundle's ``smtp.pcap`` is read back from the capture file when there is one; a live capture
without ``-w`` has none, so its engine keeps each client's packets here as they pass
(``--evidence-buffer``).  When the budget is spent, the hosts that keep the most give up their
oldest packets first, down to a common level: a spambot's flood cannot push out the few
packets of a quiet PC, and the spambot keeps its latest.  What goes is counted per host, for
the bundle to say.

A host's packets lie back to back in one bytearray, with their times and link types and
lengths in two arrays: no object per packet for the garbage collector to walk, which costs
the engine more than the copying does.  The capture thread adds while the monitor's thread
may copy a host's packets: an append writes the bytes, then the time, then the length, so a
reader that copies the lengths first finds the rest there (each copy one call, whole under
the GIL); a trim, which takes packets off the front, bumps a version before and after, and
a reader that saw it change copies again.
"""

from __future__ import annotations

import ipaddress
from array import array
from dataclasses import dataclass, field

PACKET_OVERHEAD = 24  # bytes a kept packet costs besides its frame: its time, its length
HOST_OVERHEAD = 1024  # a host's record and arrays; hosts may take a quarter of the budget
TRIM_SHARE = 16  # a trim frees a sixteenth of the budget, so one happens that seldom
LENGTH = 0xFFFFFFFF  # the low half of a packet's entry in ``Kept.meta``; link type above

Packet = tuple[float, int, bytes]  # time, link type, frame: as captured


@dataclass(slots=True)
class HostPackets:
    """What the ring holds of one host, and what it could not keep."""

    packets: list[Packet] = field(default_factory=list)
    not_kept: int = 0  # packets that went to make room (the oldest), or never fitted
    not_kept_bytes: int = 0
    budget: int = 0  # the ring's, for the bundle to name
    unrecorded: int = 0  # a host it never held: the packets of hosts it had no room for


class Kept:
    """One host's packets in the ring."""

    __slots__ = ("cost", "data", "meta", "not_kept", "not_kept_bytes", "times", "version")

    def __init__(self) -> None:
        self.data = bytearray()  # the frames, back to back
        self.times = array("d")
        self.meta = array("Q")  # link type << 32 | length, one per frame
        self.cost = 0  # of the packets kept
        self.not_kept = 0
        self.not_kept_bytes = 0
        self.version = 0  # odd while a trim takes packets off the front


class PacketRing:
    """Each client host's latest packets, by packed address, in ``budget`` bytes for all."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.max_hosts = budget // (4 * HOST_OVERHEAD)
        self.used = 0
        self.hosts: dict[bytes, Kept] = {}
        self.unrecorded = 0  # packets of hosts beyond max_hosts: none of theirs is kept

    def host(self, client: bytes) -> Kept | None:
        """The record of a client (made on its first packet); None when the table is full.
        The engine looks it up once per connection and keeps it there."""
        kept = self.hosts.get(client)
        if kept is None and len(self.hosts) < self.max_hosts:
            kept = self.hosts[client] = Kept()
            self.used += HOST_OVERHEAD
        return kept

    def add(self, client: bytes, ts: float, linktype: int, frame: bytes) -> None:
        self.keep(self.host(client), ts, linktype, frame)

    def keep(self, kept: Kept | None, ts: float, linktype: int, frame: bytes) -> None:
        """Keep a packet of the host ``kept`` (None: of a host there was no room for)."""
        if kept is None:
            self.unrecorded += 1
            return
        size = len(frame)
        kept.data += frame
        kept.times.append(ts)
        kept.meta.append(linktype << 32 | size)
        kept.cost += size + PACKET_OVERHEAD
        self.used += size + PACKET_OVERHEAD
        if self.used > self.budget:
            self._trim(self.used - (self.budget - self.budget // TRIM_SHARE))

    def _trim(self, excess: int) -> None:
        """Free ``excess`` bytes: every host above a common level gives up its oldest
        packets until it is down to that level (the level found from the hosts' costs,
        largest first)."""
        ranked = sorted(self.hosts.values(), key=lambda kept: kept.cost, reverse=True)
        level, above = 0, 0
        for count, kept in enumerate(ranked, 1):
            above += kept.cost
            following = ranked[count].cost if count < len(ranked) else 0
            if above - count * following >= excess:
                level = max(following, (above - excess) // count)
                break
        for kept in ranked:
            if kept.cost <= level:
                break
            self._shed(kept, level)

    def _shed(self, kept: Kept, level: int) -> None:
        meta = kept.meta
        count = size = 0
        while kept.cost > level and count < len(meta):
            length = meta[count] & LENGTH
            kept.cost -= length + PACKET_OVERHEAD
            self.used -= length + PACKET_OVERHEAD
            size += length
            count += 1
        kept.version += 1
        kept.not_kept += count
        kept.not_kept_bytes += size
        del kept.data[:size]  # a bytearray gives up its front without moving the rest
        del kept.times[:count]
        del meta[:count]
        kept.version += 1

    def packets(self, ip: str) -> HostPackets:
        """A copy of what the ring holds of ``ip`` (nothing, if it never saw it)."""
        return self.packets_of(ipaddress.ip_address(ip).packed)

    def packets_of(self, client: bytes) -> HostPackets:
        kept = self.hosts.get(client)
        if kept is None:
            return HostPackets(budget=self.budget, unrecorded=self.unrecorded)
        while True:  # each copy is one call, whole under the GIL; a trim between them shows
            version = kept.version
            meta = kept.meta[:]  # first: the bytes and time of each are there already
            times = kept.times[:]
            data = bytes(kept.data)
            not_kept, not_kept_bytes = kept.not_kept, kept.not_kept_bytes
            if version % 2 == 0 and kept.version == version:
                break
        packets, at = [], 0
        for ts, entry in zip(times, meta, strict=False):  # packets added since: not taken
            end = at + (entry & LENGTH)
            packets.append((ts, entry >> 32, data[at:end]))
            at = end
        return HostPackets(packets, not_kept, not_kept_bytes, self.budget)
