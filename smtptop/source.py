"""Capture sources and the thread that runs the engine on them for the monitor.

A :class:`Source` yields captured frames (files, or a live socket).  A :class:`Feeder`
thread runs the engine's decode → TCP → SMTP stages on them and hands the resulting events
over in batches (for a :class:`Parallel` source, whose parts each have an engine process of
their own, :class:`smtptop.pipeline.ForkedFeeder` passes on theirs), through a callback the
app wires to ``loop.call_soon_threadsafe``.  The number of batches in flight is bounded by a
semaphore: a file source waits for room (replaying a file must not lose anything), a live
source cannot wait, so it drops the batch and counts what it dropped, for the status bar.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Protocol

from smtptop.analyzer import Analyzer, EngineConfig, Stats
from smtptop.capture import (
    STDIN,
    STDIN_NAME,
    CaptureError,
    CaptureFile,
    Frame,
    mirror_hint,
    undecoded,
)
from smtptop.decode import SKIP_NON_TCP, STANDARD_MIRRORS, MirrorPorts
from smtptop.merge import by_time
from smtptop.ring import HostPackets
from smtptop.text import inert
from smtptop.wire import Row, encode
from smtptop.zeekfiles import LogFollower

BATCH_EVENTS = 1000
BATCH_SECONDS = 0.02
BURST_FRAMES = 256  # frames handed to the engine in one call at most
SLOT_WAIT = 0.1
STREAM_QUEUE = 4096  # records read from standard input, waiting for the engine
STREAM_POLL = 0.05  # how often a stream's reader and its taker look up from waiting
ZEEK_POLL = 0.5  # how often followed Zeek logs are read for what was appended
MAX_WAIT = 60.0  # a replay waits for its next packet in steps of at most this (threading's
# timeouts overflow past a few centuries, and a hostile file's clock can jump millennia)


class _End(Enum):
    """A source's end, told from its pauses (None): a sentinel whose type mypy narrows."""

    END = 0


_END: Final = _End.END  # a global: cheaper to read than the enum's attribute


@dataclass(slots=True)
class Progress:
    """What the source and the engine have done so far (a snapshot, safe to share)."""

    packets: int = 0
    smtp_packets: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_unpacked: int = 0  # capture data read, after decompression (a gzip bomb shows)
    errors: int = 0
    dropped_batches: int = 0
    dropped_events: int = 0
    kernel_drops: int = 0
    # each capture's own kernel drops, by name, when there are several (-i eth1 -i eth2)
    source_drops: list[tuple[str, int]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    problem: str = ""
    failure: str = ""  # the capture thread failed: the monitor ends with this line
    log_records: int = 0  # Zeek's logs: records read (instead of packets)
    log_problem: str = ""  # and the first kind of line skipped, with its example
    replay_at: float = 0.0  # a replay: capture seconds played so far
    replay_span: float = 0.0  # and in all (0 when not a replay)


@dataclass(slots=True)
class FeedBatch:
    """What the :class:`Feeder` hands the monitor: engine events for the model, and where the
    source stands."""

    events: list[Row]  # as smtptop.wire.encode makes them, in this thread
    progress: Progress


class StopFlag(Protocol):
    """Tells a source to stop: a threading.Event, or a pipe from the parent process."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Source:
    """Where frames come from.  ``lossy`` sources drop batches rather than wait."""

    label = ""
    lossy = False
    waiting = ""  # what the monitor says while no SMTP has been seen
    from_logs = False  # Zeek's logs (ZeekSource): sessions without packets or transcripts

    def frames(self, stop: StopFlag) -> Iterator[Frame | None]:
        """Captured frames until the source ends or ``stop`` is set; None now and then
        while nothing arrives, so that the caller can hand over what it holds."""
        raise NotImplementedError

    def position(self) -> tuple[int, int]:
        """Bytes done and bytes in all (0, 0 when unknown)."""
        return 0, 0

    def warnings(self) -> list[str]:
        return []

    def unpacked(self) -> int:
        """Bytes of capture data read so far, after decompression (0 when not a file)."""
        return 0

    def skipped(self) -> dict[str, int]:
        """Records the source itself set aside, by reason (empty, on an interface not kept)."""
        return {}

    def replay(self) -> tuple[float, float]:
        """Capture seconds replayed and in all ((0, 0) when not a timed replay)."""
        return 0.0, 0.0

    def kernel_drops(self) -> int:
        """Frames the kernel dropped before we could read them (live sources)."""
        return 0

    def drops(self) -> list[tuple[str, int]]:
        """The kernel's drops of each interface read (its name and count), which add up to
        :meth:`kernel_drops`; none for files."""
        return []

    def mirror_hint(self, ports: frozenset[int]) -> str | None:
        """Once it held no SMTP: where it holds a mirror on a port not named (files only,
        read again; see :func:`smtptop.capture.mirror_hint`)."""
        return None

    def drop_counts(self) -> tuple[int, list[tuple[str, int]]]:
        """The kernel's drops in all and by interface, from one reading of the sockets'
        counters (read twice, the second would hold drops the first had not seen)."""
        by_source = self.drops()
        return (sum(n for _, n in by_source) if by_source else self.kernel_drops()), by_source

    def recorded(self) -> list[str]:
        """Capture files holding what this source delivers, to read packets back from
        (an evidence bundle): the files replayed, or a live capture's ``-w`` file."""
        return []

    def close(self) -> None:
        """Release what the source holds (sockets, files)."""


class FileSource(Source):
    """Capture files read as one capture, merged by timestamp (:func:`smtptop.merge.by_time`):
    as fast as possible, or replayed at ``speed`` times the captured pace (so the table grows
    as it did on the wire)."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        speed: float | None = None,
        ports: frozenset[int] | None = None,
        mirrors: MirrorPorts = STANDARD_MIRRORS,
    ) -> None:
        """``ports``: the engine's SMTP ports (and ``mirrors``, the UDP ports mirrors send to),
        for the reader to pass over other traffic."""
        self.paths = list(paths)
        self.speed = speed
        names = ", ".join(os.path.basename(p) for p in self.paths)
        self.label = f"file {names}" + (f" at {speed:g}x" if speed else "")
        self._captures = [CaptureFile(p, ports=ports, mirrors=mirrors) for p in self.paths]
        self._total = sum(c.size for c in self._captures)
        self._played = 0.0
        self._span = 0.0

    def replay(self) -> tuple[float, float]:
        return self._played, self._span

    def recorded(self) -> list[str]:
        return list(self.paths)

    def _measure_span(self) -> float:
        """Capture seconds from the first packet to the last, read ahead for a timed replay:
        the reader runs ahead of the clock, so how much was read says nothing of where the
        replay stands."""
        first = last = None
        for path in self.paths:
            for record in CaptureFile(path):  # closes itself at the end
                ts = record[0]
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
        return (last - first) if first is not None and last is not None else 0.0

    def position(self) -> tuple[int, int]:
        return sum(capture.position for capture in self._captures), self._total

    def warnings(self) -> list[str]:
        return [note for capture in self._captures for note in capture.notes()]

    def mirror_hint(self, ports: frozenset[int]) -> str | None:
        return mirror_hint(self.paths, ports)

    def unpacked(self) -> int:
        return sum(capture.unpacked for capture in self._captures)

    def skipped(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for capture in self._captures:
            for reason, count in capture.skipped.items():
                counts[reason] = counts.get(reason, 0) + count
        return counts

    def frames(self, stop: StopFlag) -> Iterator[Frame | None]:
        first: float | None = None
        if self.speed:
            self._span = self._measure_span()
        started = time.monotonic()
        records = by_time(self._captures)
        try:
            for record in records:
                if stop.is_set():
                    return
                if self.speed:
                    if first is None:
                        first = record[0]
                    self._played = record[0] - first
                    due = started + self._played / self.speed
                    while (wait := due - time.monotonic()) > 0:
                        if stop.wait(min(wait, MAX_WAIT)):
                            return
                yield record
        finally:
            records.close()  # and with it every file


class StreamSource(FileSource):
    """A capture streamed on standard input (``-r -``: ``ssh router tcpdump -U -w - | smtptop
    -r -``), read in a thread of its own as it arrives, so that a packet reaches the monitor
    when it comes, not when the next one does.  Its end is the end of the capture."""

    def __init__(
        self, *, ports: frozenset[int] | None = None, mirrors: MirrorPorts = STANDARD_MIRRORS
    ) -> None:
        super().__init__([STDIN], ports=ports, mirrors=mirrors)
        self.label = STDIN_NAME

    def recorded(self) -> list[str]:
        return []  # read once: the packets of a bundle come from the evidence buffer

    def frames(self, stop: StopFlag) -> Iterator[Frame | None]:
        capture = self._captures[0]
        records: queue.Queue[Frame | None] = queue.Queue(STREAM_QUEUE)

        def read() -> None:
            for record in itertools.chain(capture, [None]):  # None: the end
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        records.put(record, timeout=STREAM_POLL)
                        break
                if stop.is_set():
                    capture.close()
                    return

        threading.Thread(target=read, name="smtptop-stdin", daemon=True).start()
        while not stop.is_set():
            try:
                record = records.get(timeout=STREAM_POLL)
            except queue.Empty:
                yield None  # nothing came: the caller may look up
                continue
            if record is None:
                return
            yield record


class Parallel(Source):
    """Sources each read by an engine process of its own: the sockets of a live capture's
    PACKET_FANOUT group, among which the kernel deals out the packets by client host."""

    lossy = True

    def __init__(self, parts: Sequence[Source], *, label: str, waiting: str) -> None:
        self.parts = list(parts)
        self.label = label
        self.waiting = waiting

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def recorded(self) -> list[str]:
        return [path for part in self.parts for path in part.recorded()]


class Bursts:
    """A source's frames cut into runs for :meth:`Analyzer.feed`, which takes a run in one
    call instead of one call a packet.  A run ends at the source's next pause (None), after
    ``BURST_FRAMES``, at a deadline (time to hand events over), or at the end (``ended``)."""

    def __init__(self, frames: Iterator[Frame | None]) -> None:
        self._frames = frames
        self.ended = False

    def next(self, until: float) -> Iterator[Frame]:
        frames = self._frames
        for _ in range(BURST_FRAMES):
            record = next(frames, _END)
            if record is _END:
                self.ended = True
                return
            if record is None:
                return
            yield record
            if time.monotonic() >= until:
                return


class Feeding(threading.Thread):
    """The thread that delivers a source's events to the monitor in batches, and where it
    stands; what runs the engine is the subclass's (:class:`Feeder` in this thread,
    :class:`smtptop.pipeline.ForkedFeeder` in processes of its own)."""

    def __init__(
        self,
        source: Source,
        deliver: Callable[[FeedBatch], None],
        *,
        config: EngineConfig | None = None,
        max_batches: int = 64,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="smtptop-capture", daemon=True)
        self.source = source
        self.deliver = deliver
        self.config = config or EngineConfig()
        self.on_error = on_error
        self.stats = Stats()  # the engine's counters so far
        self.stop_event = threading.Event()
        self._slots = threading.Semaphore(max_batches)
        self._dropped_batches = 0
        self._dropped_events = 0
        self._problem = ""
        self._failure = ""

    def release(self) -> None:
        """The consumer has taken a batch: make room for another."""
        self._slots.release()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except CaptureError as exc:
            self._problem = str(exc)
        except Exception as exc:  # a bug: the monitor ends with one line, not a dead thread
            self._failure = f"the capture thread failed: {type(exc).__name__}: {exc}"
        finally:
            self.source.close()
        warnings = self.source.warnings()
        progress = self.progress()
        why = undecoded(progress.skipped, progress.smtp_packets)
        if not progress.smtp_packets and progress.skipped.get(SKIP_NON_TCP):
            hint = self.source.mirror_hint(self.config.ports)
            warnings += [hint] if hint else []
        # shown on screen: a file's name is text the user may not have chosen either
        self._problem = inert(self._problem or "; ".join([*warnings, *([why] if why else [])]))
        self._hand_over(self._remaining(), finished=True)

    def _run(self) -> None:
        """Run the engine until the source ends or the thread is stopped, handing events
        over with :meth:`_hand_over`."""
        raise NotImplementedError

    def _remaining(self) -> list[Row]:
        """Events not handed over yet, at the end (after a failure too)."""
        return []

    def _drop_counts(self) -> tuple[int, list[tuple[str, int]]]:
        return self.source.drop_counts()

    def host_packets(self, ip: str) -> HostPackets | None:
        """What the engine's evidence ring holds of ``ip``; None without a ring (a replay,
        or -w: the packets are in the files).  May wait for an engine: not for the UI's
        thread.  Raises EngineFailed when the engines cannot answer."""
        return None

    def progress(self, *, finished: bool = False) -> Progress:
        stats = self.stats
        done, total = self.source.position()
        played, span = self.source.replay()
        skipped = dict(stats.skipped)
        aside = self.source.skipped()
        for reason, count in aside.items():
            skipped[reason] = skipped.get(reason, 0) + count
        kernel, by_source = self._drop_counts()
        return Progress(
            packets=stats.packets + sum(aside.values()),
            smtp_packets=stats.smtp_packets,
            bytes_done=total if finished else done,
            bytes_total=total,
            bytes_unpacked=self.source.unpacked(),
            errors=stats.errors,
            dropped_batches=self._dropped_batches,
            dropped_events=self._dropped_events,
            kernel_drops=kernel,
            source_drops=by_source if len(by_source) > 1 else [],
            skipped=skipped,
            finished=finished,
            problem=self._problem,
            failure=self._failure,
            replay_at=played,
            replay_span=span,
        )

    def _hand_over(self, events: list[Row], *, finished: bool = False) -> None:
        """Deliver events and the progress; a lossy source drops them when the monitor is
        behind, counted (a batch of progress alone is not a loss)."""
        if not self._take_slot(wait=finished or not self.source.lossy):
            if events:
                self._dropped_batches += 1
                self._dropped_events += len(events)
            return
        self.deliver(FeedBatch(events, self.progress(finished=finished)))

    def _take_slot(self, *, wait: bool) -> bool:
        if not wait:
            return self._slots.acquire(blocking=False)
        while not self._slots.acquire(timeout=SLOT_WAIT):
            if self.stop_event.is_set():
                return False
        return True


class Feeder(Feeding):
    """Runs the engine on a source in this thread."""

    analyzer: Analyzer | None = None  # made when the thread starts

    def _run(self) -> None:
        self.analyzer = analyzer = Analyzer(self.config, self.on_error)
        self.stats = analyzer.stats
        bursts = Bursts(self.source.frames(self.stop_event))
        last_flush = time.monotonic()
        while not bursts.ended:
            analyzer.feed(bursts.next(last_flush + BATCH_SECONDS), BATCH_EVENTS)
            if len(analyzer.out) >= BATCH_EVENTS or (
                time.monotonic() - last_flush >= BATCH_SECONDS
            ):
                self._hand_over(encode(analyzer.take()))
                last_flush = time.monotonic()
        if not self.stop_event.is_set():
            analyzer.finish()

    def _remaining(self) -> list[Row]:
        return encode(self.analyzer.take()) if self.analyzer is not None else []

    def host_packets(self, ip: str) -> HostPackets | None:
        ring = self.analyzer.ring if self.analyzer is not None else None
        return ring.packets(ip) if ring is not None else None


class ZeekSource(Source):
    """A folder of Zeek's current logs, followed as Zeek writes them (``--zeek DIR``): no
    frames; :class:`ZeekFeeder` turns the lines into events."""

    from_logs = True

    def __init__(self, folder: str, *, ports: frozenset[int]) -> None:
        """Raises ZeekError (one line) when the folder cannot be followed."""
        self.follower = LogFollower(folder, ports)
        self.label = f"Zeek logs {inert(folder)}"
        self.waiting = f"Waiting for Zeek to log SMTP connections in {inert(folder)} ..."

    def skipped(self) -> dict[str, int]:
        return self.follower.skipped()

    def close(self) -> None:
        self.follower.close()


class ZeekFeeder(Feeding):
    """Reads what Zeek appended to its logs, every :data:`ZEEK_POLL` seconds, into events."""

    def _run(self) -> None:
        source = self.source
        assert isinstance(source, ZeekSource)
        follower = source.follower
        while not self.stop_event.is_set():
            rows = follower.poll()
            self.stats.log_records = follower.reading.records
            for start in range(0, len(rows), BATCH_EVENTS):
                self._hand_over(rows[start : start + BATCH_EVENTS])
            if not rows:
                self._hand_over([])  # where it stands: records read, lines skipped
            self.stop_event.wait(ZEEK_POLL)

    def progress(self, *, finished: bool = False) -> Progress:
        progress = super().progress(finished=finished)
        source = self.source
        assert isinstance(source, ZeekSource)
        progress.log_records = self.stats.log_records
        first = source.follower.problems().lines()  # inert already: Problems makes them so
        progress.log_problem = first[0] if first else ""
        return progress
