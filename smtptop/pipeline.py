"""Run the engine over capture files, in a second process when that is worth it.

The engine (reading, decoding, reassembly, SMTP parsing) and the model (folding events into
sessions and hosts, judging them) each take about half of a report's time.  With two CPUs,
:func:`engine_batches` forks a child that runs the engine and streams its event batches back
through a pipe while the caller folds them.  The batches arrive in exactly the order one
process would make them, so the report is the same either way.

Events cross the pipe as the rows of :mod:`smtptop.wire` through :mod:`marshal` (pickling a
slotted dataclass costs several microseconds, more than the engine spends on most packets),
and are folded as rows: nothing is rebuilt on this side.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import multiprocessing
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from multiprocessing.connection import Connection
from typing import Any

from smtptop.analyzer import Analyzer, EngineConfig, Stats
from smtptop.capture import CaptureFile
from smtptop.wire import Row, encode

APPLY_EVERY = 2048  # records per batch
MAX_WAITING_EVENTS = 8192  # events per batch at most (a flood of blank lines)
MIN_PARALLEL_BYTES = 4 << 20  # below this a second process costs more than it saves
PIPE_BYTES = 1 << 20  # Linux's default ceiling for a pipe's buffer (fs.pipe-max-size)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_BATCH, _OUTCOME, _FAILURE = 0, 1, 2


class EngineFailed(Exception):
    """The engine process died or failed; the message says how."""


@dataclass(slots=True)
class EngineBatch:
    """The engine's events from some records of the capture files, and where the reading
    stands (for progress displays)."""

    events: list[Row]
    path: str
    position: int
    packets: int
    errors: list[str] = field(default_factory=list)  # one line per packet that failed
    unpacked: int = 0  # bytes of capture data read, after decompression (a bomb shows here)


@dataclass(slots=True)
class Outcome:
    """The input is over: the engine's counters and notes about the files."""

    stats: Stats
    warnings: list[str]


def worth_a_second_process(captures: list[CaptureFile]) -> bool:
    """Two CPUs, fork available, and enough to read that starting a process pays."""
    return (
        len(os.sched_getaffinity(0)) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and sum(capture.size for capture in captures) >= MIN_PARALLEL_BYTES
    )


def engine_batches(
    captures: list[CaptureFile], config: EngineConfig, *, parallel: bool
) -> Iterator[EngineBatch | Outcome]:
    """The engine's batches for these files, then their :class:`Outcome`."""
    return _forked(captures, config) if parallel else _inline(captures, config)


def _inline(captures: list[CaptureFile], config: EngineConfig) -> Iterator[EngineBatch | Outcome]:
    errors: list[str] = []
    warnings: list[str] = []
    analyzer = Analyzer(config, errors.append)
    stats = analyzer.stats
    feed = analyzer.feed
    path, position, unpacked = "", 0, 0
    for capture in captures:
        frames = iter(capture)
        path = capture.path
        smtp_before, skipped_before = stats.smtp_packets, dict(stats.skipped)
        while feed(islice(frames, APPLY_EVERY), MAX_WAITING_EVENTS):
            position = capture.position
            yield EngineBatch(encode(analyzer.take()), path, position, stats.packets,
                              errors[:], unpacked + capture.unpacked)  # fmt: skip
            errors.clear()
        position = capture.size
        unpacked += capture.unpacked
        count_skipped(stats, capture.skipped)
        skipped = {r: n - skipped_before.get(r, 0) for r, n in stats.skipped.items()}
        warnings.extend(capture.notes(skipped, stats.smtp_packets - smtp_before))
    analyzer.finish()
    yield EngineBatch(encode(analyzer.take()), path, position, stats.packets, errors[:], unpacked)
    yield Outcome(stats, warnings)


def count_skipped(stats: Stats, skipped: dict[str, int]) -> None:
    """Add the records a reader set aside (empty ones, ones on an interface not kept) to the
    engine's counts: they are packets of the file, skipped for a reason like any other."""
    for reason, count in skipped.items():
        stats.skipped[reason] = stats.skipped.get(reason, 0) + count
        stats.packets += count


def _forked(captures: list[CaptureFile], config: EngineConfig) -> Iterator[EngineBatch | Outcome]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    with contextlib.suppress(OSError):  # a bigger pipe lets the engine run ahead (Linux)
        fcntl.fcntl(receiver.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    child = context.Process(
        target=_engine_process, args=(captures, config, sender), name="smtptop-engine"
    )
    child.start()
    sender.close()
    for capture in captures:
        capture.close()  # the child reads them; this process's copies are not needed
    try:
        while True:
            try:
                message = marshal.loads(receiver.recv_bytes())
            except (EOFError, OSError):
                child.join(1)
                raise EngineFailed(
                    f"the analysis process ended unexpectedly (exit code {child.exitcode})"
                ) from None
            kind = message[0]
            if kind == _BATCH:
                _, rows, path, position, packets, errors, unpacked = message
                yield EngineBatch(rows, path, position, packets, errors, unpacked)
            elif kind == _OUTCOME:
                yield Outcome(Stats(*message[1]), message[2])
                return
            else:
                raise EngineFailed(f"the analysis process failed: {message[1]}")
    finally:
        receiver.close()
        child.join(1)
        if child.is_alive():
            child.terminate()
            child.join()


def _engine_process(captures: list[CaptureFile], config: EngineConfig, sender: Connection) -> None:
    """The child: run the engine and send what it finds; a closed pipe means stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        for message in _inline(captures, config):
            if isinstance(message, EngineBatch):
                payload: tuple[Any, ...] = (
                    _BATCH,
                    message.events,
                    message.path,
                    message.position,
                    message.packets,
                    message.errors,
                    message.unpacked,
                )
            else:
                stats = [getattr(message.stats, f.name) for f in fields(Stats)]
                payload = (_OUTCOME, stats, message.warnings)
            sender.send_bytes(marshal.dumps(payload))
    except (BrokenPipeError, ConnectionResetError):
        return
    except Exception as exc:  # reported by the parent as one line, not a child traceback
        try:
            sender.send_bytes(marshal.dumps((_FAILURE, f"{type(exc).__name__}: {exc}")))
        except OSError:
            return
    finally:
        sender.close()
