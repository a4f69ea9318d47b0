"""Compact containers and text costs: the units the model's budgets are counted in.

A spambot talks to tens of thousands of servers and opens thousands of sessions an hour, so
what grows per host is packed: distinct destinations in about 4 bytes per IPv4 address
(:class:`AddressSet`), recent timestamps in a fixed ring (:class:`TimeRing`).  Text is
budgeted in characters after escaping (:func:`text_cost`); a text cut to its budget says how
much went (:func:`cut`).
"""

from __future__ import annotations

import heapq
import ipaddress
from array import array
from bisect import bisect_left

RECENT_STARTS = 64  # session starts (and MX lookups) remembered per host for rates
V4_BYTES, V6_BYTES = 4, 100  # what a destination costs in an AddressSet


def text_cost(text: str) -> int:
    """The bytes a kept string's characters take: one each for ASCII (escaped wire text mostly
    is), else counted as four (one astral character makes a str take four a character)."""
    return len(text) if text.isascii() else 4 * len(text)


def cut(text: str, room: int, gone: int = 0) -> str:
    """``text`` cut to ``room`` characters, ending in a marker saying how many went (``gone``
    of them before it arrived: the parser's own bound)."""
    if len(text) <= room and not gone:
        return text
    return f"{text[:room]}...({max(0, len(text) - room) + gone:,} characters not kept)"


class AddressSet:
    """Distinct IP addresses, exact, in about 4 bytes per IPv4 address: a sorted array of
    packed addresses, and a small set of recent additions merged into it once it holds an
    eighth as many (O(log n) amortised per address).  IPv6 addresses, rare as SMTP
    destinations, are kept in a set of ints (about 100 bytes each)."""

    __slots__ = ("_recent", "_sorted", "_v6", "size")

    def __init__(self) -> None:
        self._sorted = array("I")
        self._recent: set[int] = set()
        self._v6: set[int] | None = None  # made on the first IPv6 address
        self.size = 0

    def __contains__(self, ip: str) -> bool:
        if ":" in ip:
            return self._v6 is not None and _packed(ip) in self._v6
        key = _packed(ip)
        if key in self._recent:
            return True
        found, at = self._sorted, bisect_left(self._sorted, key)
        return at < len(found) and found[at] == key

    def add(self, ip: str) -> None:
        """Add an address that is not in the set yet (the caller checked)."""
        self.size += 1
        if ":" in ip:
            if self._v6 is None:
                self._v6 = set()
            self._v6.add(_packed(ip))
            return
        self._recent.add(_packed(ip))
        if len(self._recent) > 16 + len(self._sorted) // 8:
            self._sorted = array("I", heapq.merge(self._sorted, sorted(self._recent)))
            self._recent.clear()

    @staticmethod
    def cost(ip: str) -> int:
        """The bytes one more address costs, for the budget of all sets together."""
        return V6_BYTES if ":" in ip else V4_BYTES


def _packed(ip: str) -> int:
    if ":" in ip:
        return int(ipaddress.IPv6Address(ip))
    a, b, c, d = ip.split(".")
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


class TimeRing:
    """The last :data:`RECENT_STARTS` timestamps of something, in 8 bytes each: enough to
    say "10 or more in a minute" without a deque of float objects per host."""

    __slots__ = ("_next", "_times")

    def __init__(self) -> None:
        self._times = array("d")
        self._next = 0

    def append(self, ts: float) -> None:
        if len(self._times) < RECENT_STARTS:
            self._times.append(ts)
        else:
            self._times[self._next] = ts
            self._next = (self._next + 1) % RECENT_STARTS

    def count_since(self, since: float) -> int:
        return sum(1 for t in self._times if t >= since)
