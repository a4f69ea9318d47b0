"""Run the engine over capture files, in engine processes of their own when that pays.

The engine (reading, decoding, reassembly, SMTP parsing) takes more than half of a report's
time, the model (folding events into sessions and hosts) the rest.  :func:`engine_batches`
forks engine processes (``report --workers``; by default one per CPU but the one that folds)
that stream their event batches back through pipes while the caller folds them.  Each engine
reads every record and takes the connections of its share of the client hosts
(:func:`smtptop.analyzer.shard_of`): its sessions are numbered apart from the others', and
only the first reports who-is-who.  A host's events come from one engine in the order one
process makes them, so every per-host figure, and the verdicts, are the same whatever the
number of engines (a test compares 0, 1, 2 and 4).

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
from dataclasses import dataclass, field, fields, replace
from itertools import islice
from multiprocessing.connection import Connection
from typing import Any

from smtptop.analyzer import MAX_ERROR_SAMPLES, Analyzer, EngineConfig, Stats
from smtptop.capture import CaptureFile
from smtptop.wire import Row, encode

APPLY_EVERY = 2048  # records per batch
MAX_WAITING_EVENTS = 8192  # events per batch at most (a flood of blank lines)
MIN_PARALLEL_BYTES = 4 << 20  # below this a second process costs more than it saves
# Every engine reads every record: beyond this many, the reading they repeat costs more than
# sharing the rest of the engine saves (bench/throughput.py has the costs per stage).
MAX_DEFAULT_WORKERS = 8
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


def default_workers(captures: list[CaptureFile]) -> int:
    """Engine processes for these files: one for each CPU but the one that folds, when fork
    is available and there is enough to read that starting processes pays; else none (the
    engine runs in this process)."""
    cpus = len(os.sched_getaffinity(0))
    if (
        cpus < 2
        or "fork" not in multiprocessing.get_all_start_methods()
        or sum(capture.size for capture in captures) < MIN_PARALLEL_BYTES
    ):
        return 0
    return min(cpus - 1, MAX_DEFAULT_WORKERS)


def engine_batches(
    captures: list[CaptureFile], config: EngineConfig, *, workers: int
) -> Iterator[EngineBatch | Outcome]:
    """The engine's batches for these files, then their :class:`Outcome`: from this process
    (``workers`` 0) or from that many forked engine processes, each taking its share of the
    client hosts."""
    return _forked(captures, config, workers) if workers else _inline(captures, config)


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
        smtp_before, skipped_before = stats.smtp_packets + stats.elsewhere, dict(stats.skipped)
        while feed(islice(frames, APPLY_EVERY), MAX_WAITING_EVENTS):
            position = capture.position
            yield EngineBatch(encode(analyzer.take()), path, position, stats.packets,
                              errors[:], unpacked + capture.unpacked)  # fmt: skip
            errors.clear()
        position = capture.size
        unpacked += capture.unpacked
        count_skipped(stats, capture.skipped)
        skipped = {r: n - skipped_before.get(r, 0) for r, n in stats.skipped.items()}
        smtp_packets = stats.smtp_packets + stats.elsewhere - smtp_before  # all engines' together
        warnings.extend(capture.notes(skipped, smtp_packets))
    analyzer.finish()
    yield EngineBatch(encode(analyzer.take()), path, position, stats.packets, errors[:], unpacked)
    yield Outcome(stats, warnings)


def count_skipped(stats: Stats, skipped: dict[str, int]) -> None:
    """Add the records a reader set aside (empty ones, ones on an interface not kept) to the
    engine's counts: they are packets of the file, skipped for a reason like any other."""
    for reason, count in skipped.items():
        stats.skipped[reason] = stats.skipped.get(reason, 0) + count
        stats.packets += count


def _forked(
    captures: list[CaptureFile], config: EngineConfig, workers: int
) -> Iterator[EngineBatch | Outcome]:
    """Fork the engine processes, then pass on their batches in turn, one from each, as
    they read the same records in step; the outcome is theirs added up."""
    context = multiprocessing.get_context("fork")
    receivers: list[Connection] = []
    children = []
    for shard in range(workers):
        receiver, sender = context.Pipe(duplex=False)
        with contextlib.suppress(OSError):  # a bigger pipe lets the engine run ahead (Linux)
            fcntl.fcntl(receiver.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        shard_config = replace(config, shard=shard, shards=workers)
        child = context.Process(
            target=_engine_process,
            args=(captures, shard_config, sender, shard > 0),
            name=f"smtptop-engine-{shard}",
        )
        child.start()
        sender.close()
        receivers.append(receiver)
        children.append(child)
    for capture in captures:
        capture.close()  # the children read them; this process's copies are not needed
    outcomes: dict[int, Outcome] = {}
    path, position, packets, unpacked = "", 0, 0, 0  # as the first engine last said
    try:
        while len(outcomes) < workers:
            for shard, receiver in enumerate(receivers):
                if shard in outcomes:
                    continue
                message = _receive(receiver, children[shard])
                kind = message[0]
                if kind == _BATCH:
                    _, rows, at_path, at, read, errors, at_unpacked = message
                    if shard == 0:  # every engine reads every record: one says how far
                        path, position, packets, unpacked = at_path, at, read, at_unpacked
                    yield EngineBatch(rows, path, position, packets, errors, unpacked)
                elif kind == _OUTCOME:
                    outcomes[shard] = Outcome(Stats(*message[1]), message[2])
                else:
                    raise EngineFailed(f"the analysis process failed: {message[1]}")
        yield _merged([outcomes[shard] for shard in range(workers)])
    finally:
        for receiver in receivers:
            receiver.close()
        for child in children:
            child.join(1)
            if child.is_alive():
                child.terminate()
                child.join()


def _receive(receiver: Connection, child: multiprocessing.process.BaseProcess) -> Any:
    try:
        return marshal.loads(receiver.recv_bytes())
    except (EOFError, OSError):
        child.join(1)
        raise EngineFailed(
            f"the analysis process ended unexpectedly (exit code {child.exitcode})"
        ) from None


def _merged(outcomes: list[Outcome]) -> Outcome:
    """One engine's outcome from several's.  Every engine read every record, so the counts
    of records (packets, bytes, skipped by reason) and the notes on the files are each
    engine's, taken from the first; what they counted of their own connections adds up."""
    first = outcomes[0].stats
    stats = Stats(packets=first.packets, bytes=first.bytes, skipped=first.skipped)
    for outcome in outcomes:
        part = outcome.stats
        stats.smtp_packets += part.smtp_packets
        stats.errors += part.errors
        stats.error_samples.extend(part.error_samples)
        stats.connections_evicted += part.connections_evicted
        stats.idle_closed += part.idle_closed
        stats.tcp_conflicts += part.tcp_conflicts
    del stats.error_samples[MAX_ERROR_SAMPLES:]
    return Outcome(stats, outcomes[0].warnings)


def _engine_process(
    captures: list[CaptureFile], config: EngineConfig, sender: Connection, reopen: bool
) -> None:
    """The child: run the engine and send what it finds; a closed pipe means stop.  Files
    opened before the fork share their read position with every other child: all but one
    child open them again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        if reopen:
            captures = [CaptureFile(c.path, c.max_bytes, ports=c.ports) for c in captures]
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
