"""How far reading has got: speed and time left, for the report's progress line and the
monitor's status bar (not the replay pace that ``--speed`` sets).

Rates are taken over the last few seconds rather than since the start, so that the ETA
follows a file whose later part is denser (or gzip-slower) than its beginning.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 5.0


@dataclass(slots=True)
class Speedometer:
    """Packets and bytes per second from successive readings of running totals."""

    window: float = WINDOW
    _samples: deque[tuple[float, int, int]] = field(default_factory=deque)

    def update(self, now: float, packets: int, done: int) -> None:
        samples = self._samples
        samples.append((now, packets, done))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()

    def _span(self) -> tuple[float, int, int]:
        if len(self._samples) < 2:
            return 0.0, 0, 0
        (t0, p0, b0), (t1, p1, b1) = self._samples[0], self._samples[-1]
        return t1 - t0, p1 - p0, b1 - b0

    def packets_per_second(self) -> float:
        seconds, packets, _ = self._span()
        return packets / seconds if seconds > 0 else 0.0

    def eta(self, total: int) -> float | None:
        """Seconds until ``total`` bytes are done at the recent pace; None if unknown."""
        seconds, _, done = self._span()
        if seconds <= 0 or done <= 0 or not self._samples:
            return None
        return max(0.0, (total - self._samples[-1][2]) * seconds / done)


def duration(seconds: float) -> str:
    """0:07, 12:03, 1:02:03."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def elapsed(seconds: float) -> str:
    """How long, as an admin says it: 45s, 14m, 1h 12m, 3d 4h."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def data_size(count: float) -> str:
    """1.5 kB, 283.0 MB: decimal units, as file managers show file sizes."""
    if count < 1000:
        return f"{count:.0f} B"
    for unit in ("kB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} GB"


def describe(speed: Speedometer, done: int, total: int) -> str:
    """ "12.3 MB / 45.6 MB  27%  123,456 pkt/s  ETA 0:14" (rate and ETA once known)."""
    share = 100 * done // total if total else 0
    text = f"{data_size(done)} / {data_size(total)}  {share}%"
    rate = speed.packets_per_second()
    if rate:
        text += f"  {rate:,.0f} pkt/s"
    eta = speed.eta(total)
    if eta is not None:
        text += f"  ETA {duration(eta)}"
    return text
