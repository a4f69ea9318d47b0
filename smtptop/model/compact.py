"""Compact containers and text costs: the units the model's budgets are counted in.

A spambot talks to tens of thousands of servers and opens thousands of sessions an hour, so
what grows per host is packed: distinct destinations in about 4 bytes per IPv4 address
(:class:`AddressSet`), recent timestamps in a fixed ring (:class:`TimeRing`), sessions per
minute in a bounded histogram whose bins widen as the capture grows (:class:`Timeline`).  Text is
budgeted in characters after escaping (:func:`text_cost`); a text cut to its budget says how
much went (:func:`cut`).
"""

from __future__ import annotations

import heapq
import ipaddress
import math
from array import array
from bisect import bisect_left

RECENT_STARTS = 64  # session starts (and MX lookups) remembered per host for rates
TIMELINE_BINS = 240  # per host: four hours at a minute a bin; a longer span widens the bins
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


class Timeline:
    """Sessions and rejected sessions of one host per bin of ``width`` minutes, over all it
    did.  Bin ``i`` counts the minutes from ``first + i * width``; ``first`` is a multiple of
    ``width``.  When a span needs more bins than allowed, neighbouring bins merge and the
    width doubles: the picture coarsens, no session is lost."""

    __slots__ = ("counts", "first", "width")

    def __init__(self) -> None:
        self.counts = array("Q")  # sessions, rejected: two per bin
        self.first = 0
        self.width = 1

    @property
    def bins(self) -> int:
        return len(self.counts) // 2

    def add(self, ts: float, rejected: bool, most: int) -> int:
        """Count a session (or, ``rejected``, its rejection) started at ``ts``, in at most
        ``most`` bins (or as many as it holds; two always: two minutes may sit either side
        of a bin edge at any width).  Returns the bins added, negative when merged, for the
        store's budget."""
        if not math.isfinite(ts):
            return 0
        minute, before = int(ts // 60), self.bins
        if not before:
            self.first, self.width = minute, 1
            self.counts.extend((0, 0))
        index = (minute - self.first) // self.width
        while max(index, self.bins - 1) - min(index, 0) + 1 > max(most, self.bins, 2):
            self._merge()
            index = (minute - self.first) // self.width
        if index < 0:
            self.counts[0:0] = array("Q", bytes(16 * -index))
            self.first += index * self.width
            index = 0
        elif index >= self.bins:
            self.counts.extend(array("Q", bytes(16 * (index - self.bins + 1))))
        self.counts[2 * index + rejected] += 1
        return self.bins - before

    def _merge(self) -> None:
        """Halve the bins: pairs of neighbours become one bin twice as wide."""
        width = 2 * self.width
        first = self.first - self.first % width
        shift = (self.first - first) // self.width
        old, merged = self.counts, array("Q", bytes(16 * ((self.bins + shift + 1) // 2)))
        for i in range(self.bins):
            j = 2 * ((i + shift) // 2)
            merged[j] += old[2 * i]
            merged[j + 1] += old[2 * i + 1]
        self.counts, self.first, self.width = merged, first, width

    def window(self, start: int, stop: int, most: int) -> tuple[int, list[int], list[int]]:
        """The minutes from ``start`` to ``stop`` (exclusive) in at most ``most`` bins (two
        at least, as in :meth:`add`): the
        width they take (this timeline's, doubled until they fit) and the sessions and the
        rejected sessions per bin; the first bin starts at ``start`` rounded down to it."""
        width = self.width
        while -(-(stop - (start - start % width)) // width) > max(most, 2):
            width *= 2
        start -= start % width
        size = max(0, -(-(stop - start) // width))
        sessions, rejected = [0] * size, [0] * size
        counts, own = self.counts, self.width
        low = max(0, (start - self.first) // own)
        for i in range(low, min(self.bins, low + size * width // own + 1)):
            j = (self.first + i * own - start) // width
            if 0 <= j < size:
                sessions[j] += counts[2 * i]
                rejected[j] += counts[2 * i + 1]
        return width, sessions, rejected
