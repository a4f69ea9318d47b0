"""The latest SMTP packets of each client host of a live capture, within a byte budget.

A bundle's ``smtp.pcap`` is read back from the capture file when there is one; a live capture
without ``-w`` has none, so its engine keeps each client's packets here as they pass
(``--evidence-buffer``).  When the budget is spent, the hosts that keep the most give up their
oldest packets first, down to a common level: a spambot's flood cannot push out the few
packets of a quiet PC, and the spambot keeps its latest.  What goes is counted per host, for
the bundle to say.

Pure and thread-agnostic: the capture thread adds while the monitor's thread may copy a
host's packets.  Packets are only appended to a host's list, and a trim replaces the list
whole, so a reader's copy is one consistent state without a lock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

PACKET_OVERHEAD = 96  # bytes a kept packet costs besides its frame: its tuple, its bytes object
HOST_OVERHEAD = 1024  # a host's record and list; hosts may take a quarter of the budget
TRIM_SHARE = 16  # a trim frees a sixteenth of the budget, so one happens that seldom

Packet = tuple[float, int, bytes]  # time, link type, frame: as captured


@dataclass(slots=True)
class HostPackets:
    """What the ring holds of one host, and what it could not keep."""

    packets: list[Packet] = field(default_factory=list)
    not_kept: int = 0  # packets that went to make room (the oldest), or never fitted
    not_kept_bytes: int = 0
    budget: int = 0  # the ring's, for the bundle to name


class _Kept:
    __slots__ = ("cost", "not_kept", "not_kept_bytes", "packets")

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.cost = 0  # of the packets from the first kept on
        self.not_kept = 0
        self.not_kept_bytes = 0


class PacketRing:
    """Each client host's latest packets, by packed address, in ``budget`` bytes for all."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.max_hosts = budget // (4 * HOST_OVERHEAD)
        self.used = 0
        self.hosts: dict[bytes, _Kept] = {}
        self.unrecorded = 0  # packets of hosts beyond max_hosts: none of theirs is kept

    def add(self, client: bytes, ts: float, linktype: int, frame: bytes) -> None:
        kept = self.hosts.get(client)
        if kept is None:
            if len(self.hosts) >= self.max_hosts:
                self.unrecorded += 1
                return
            kept = self.hosts[client] = _Kept()
            self.used += HOST_OVERHEAD
        kept.packets.append((ts, linktype, frame))
        cost = len(frame) + PACKET_OVERHEAD
        kept.cost += cost
        self.used += cost
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

    def _shed(self, kept: _Kept, level: int) -> None:
        packets, first = kept.packets, 0
        while kept.cost > level and first < len(packets):
            size = len(packets[first][2])
            kept.cost -= size + PACKET_OVERHEAD
            self.used -= size + PACKET_OVERHEAD
            kept.not_kept += 1
            kept.not_kept_bytes += size
            first += 1
        kept.packets = packets[first:]  # the packets that went are freed now

    def packets(self, ip: str) -> HostPackets:
        """A copy of what the ring holds of ``ip`` (nothing, if it never saw it)."""
        return self.packets_of(ipaddress.ip_address(ip).packed)

    def packets_of(self, client: bytes) -> HostPackets:
        kept = self.hosts.get(client)
        if kept is None:
            return HostPackets(budget=self.budget)
        return HostPackets(kept.packets[:], kept.not_kept, kept.not_kept_bytes, self.budget)
