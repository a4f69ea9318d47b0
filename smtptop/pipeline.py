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

A live capture (``--workers`` with ``-i``) gives each engine process a socket of its own in
a PACKET_FANOUT group (:func:`smtptop.live.open_group`): the kernel deals every packet to one
of them by its client's address, each engine runs capture and analysis of its share, and
:func:`live_batches` passes on their batches as they come (:class:`ForkedFeeder`, to the
monitor), with their counters added up.

Events cross the pipe as the rows of :mod:`smtptop.wire` through :mod:`marshal` (pickling a
slotted dataclass costs several microseconds, more than the engine spends on most packets),
and are folded as rows: nothing is rebuilt on this side.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import marshal
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from itertools import islice
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import Any

from smtptop.analyzer import MAX_ERROR_SAMPLES, Analyzer, EngineConfig, Stats
from smtptop.capture import CaptureFile
from smtptop.merge import by_time
from smtptop.ring import HostPackets
from smtptop.source import Bursts, Feeding, Parallel, Source, StopFlag
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
    position: int  # bytes read of all the files together
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


def default_live_workers() -> int:
    """Engine processes for a live capture: one for each CPU but the one that folds (and
    draws the monitor), when fork is available; else none (capture and engine run in this
    process, in a thread of the monitor's)."""
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2 or "fork" not in multiprocessing.get_all_start_methods():
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
    analyzer = Analyzer(config, errors.append)
    stats = analyzer.stats
    feed = analyzer.feed
    shares = _SkippedShares(stats.skipped, len(captures))
    records = by_time(captures, shares.switch)
    while feed(islice(records, APPLY_EVERY), MAX_WAITING_EVENTS):
        yield EngineBatch(encode(analyzer.take()), _read(captures), stats.packets, errors[:],
                          _unpacked(captures))  # fmt: skip
        errors.clear()
    shares.switch(-1)
    warnings: list[str] = []
    for capture, skipped in zip(captures, shares.shares, strict=True):
        taken = max(0, capture.records - sum(skipped.values()))  # decoded, SMTP or not
        count_skipped(stats, capture.skipped)
        for reason, count in capture.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        warnings.extend(capture.notes(skipped, taken))
    analyzer.finish()
    yield EngineBatch(encode(analyzer.take()), _read(captures), stats.packets, errors[:],
                      _unpacked(captures))  # fmt: skip
    yield Outcome(stats, warnings)


def _read(captures: list[CaptureFile]) -> int:
    return sum(capture.position for capture in captures)


def _unpacked(captures: list[CaptureFile]) -> int:
    return sum(capture.unpacked for capture in captures)


class _SkippedShares:
    """The engine's skipped records, by reason, told apart by the file they came from (each
    file's notes say why none of its packets could be decoded, when none could).  The merge
    says when the records start to come from another file; the counts are taken then, and
    cost nothing while one file is read."""

    def __init__(self, skipped: dict[str, int], files: int) -> None:
        self._skipped = skipped  # the engine's own counts, as they grow
        self.shares: list[dict[str, int]] = [{} for _ in range(files)]
        self._current = -1
        self._before: dict[str, int] = {}

    def switch(self, index: int) -> None:
        """Records come from file ``index`` from now on (-1: no more records)."""
        skipped, before = self._skipped, self._before
        if skipped != before:  # most runs of SMTP packets skip none: one comparison
            if self._current >= 0:
                share = self.shares[self._current]
                for reason, count in skipped.items():
                    if count != before.get(reason, 0):
                        share[reason] = share.get(reason, 0) + count - before.get(reason, 0)
            self._before = dict(skipped)
        self._current = index


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
    position, packets, unpacked = 0, 0, 0  # as the first engine last said
    try:
        while len(outcomes) < workers:
            for shard, receiver in enumerate(receivers):
                if shard in outcomes:
                    continue
                message = _receive(receiver, children[shard])
                kind = message[0]
                if kind == _BATCH:
                    _, rows, at, read, errors, at_unpacked = message
                    if shard == 0:  # every engine reads every record: one says how far
                        position, packets, unpacked = at, read, at_unpacked
                    yield EngineBatch(rows, position, packets, errors, unpacked)
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
    return Outcome(_connections_added(stats, [o.stats for o in outcomes]), outcomes[0].warnings)


def _connections_added(total: Stats, parts: list[Stats]) -> Stats:
    """``total`` with what each engine counted of its own connections added in."""
    for part in parts:
        total.smtp_packets += part.smtp_packets
        total.errors += part.errors
        total.error_samples.extend(part.error_samples)
        total.connections_evicted += part.connections_evicted
        total.idle_closed += part.idle_closed
        total.tcp_conflicts += part.tcp_conflicts
    del total.error_samples[MAX_ERROR_SAMPLES:]
    return total


def _engine_process(
    captures: list[CaptureFile], config: EngineConfig, sender: Connection, reopen: bool
) -> None:
    """The child: run the engine and send what it finds; a closed pipe means stop.  Files
    opened before the fork share their read position with every other child: all but one
    child open them again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        if reopen:
            captures = [
                CaptureFile(c.path, c.max_bytes, ports=c.ports, mirrors=c.mirrors) for c in captures
            ]
        for message in _inline(captures, config):
            if isinstance(message, EngineBatch):
                payload: tuple[Any, ...] = (
                    _BATCH,
                    message.events,
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


# -- live capture, one socket per engine process --------------------------------------------

LIVE_BATCH_SECONDS = 0.05  # an engine process hands over this often (sooner when it has more)
LIVE_BATCH_EVENTS = 1000
LIVE_POLL_SECONDS = 0.2  # how often the parent looks up from waiting (to see a stop)
STOP_GRACE = 5.0  # after a stop, how long an engine has to send its last events


@dataclass(slots=True)
class LiveBatch:
    """Events from one engine process, and every engine's counters so far, added up."""

    events: list[Row]
    errors: list[str]  # one line per packet that failed
    stats: Stats
    kernel_drops: int  # what the kernel dropped before any socket of the group could read
    by_source: list[tuple[str, int]]  # those drops by interface, in the order given
    finished: bool = False  # every engine has ended: the counters are final


_CONTROL = struct.Struct("=cIdB16s")  # kind, request number, time, address length, address
ASK_SECONDS = 10.0  # how long an engine has to answer a request for its ring
_RUNNING, _STOPPED, _ENDED = 0, 1, 2  # an engine's state, in each batch it sends


class _Controlled:
    """An engine process's end of its control pipe: the parent's messages, each one
    ``_CONTROL`` record (written whole, so that threads of the parent cannot interleave
    them).  ``S`` stops the capture; ``T`` gives the time the capture ended (the last packet
    any engine saw), at which the engine closes the connections still open, as one engine
    would have; ``P`` asks for what the evidence ring holds of a host (no address: of every
    host).  End of file (the parent is done, or died) stops it too, so that no engine
    outlives the monitor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._set = False
        self._pending = b""
        self.gone = False
        self.end: float | None = None
        self.requests: list[tuple[int, bytes]] = []  # (number, packed address or b"")

    def is_set(self) -> bool:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> bool:
        if not self._set:
            self._read(timeout)
        return self._set

    def _read(self, timeout: float | None) -> None:
        if self.gone or not select.select([self._fd], [], [], timeout)[0]:
            return
        chunk = os.read(self._fd, 4096)
        if not chunk:
            self.gone = self._set = True
            return
        data = self._pending + chunk
        whole = len(data) - len(data) % _CONTROL.size
        for kind, number, at, size, address in _CONTROL.iter_unpack(data[:whole]):
            if kind == b"S":
                self._set = True
            elif kind == b"T":
                self.end = at
            elif kind == b"P":
                self.requests.append((number, address[:size]))
        self._pending = data[whole:]

    def end_time(self, serve: Callable[[], None]) -> float | None:
        """Wait for the capture's end time, answering requests meanwhile; None if the
        parent is gone."""
        while self.end is None and not self.gone:
            self._read(None)
            serve()
        return self.end

    def serve_until_gone(self, serve: Callable[[], None]) -> None:
        """Answer requests until the parent closes the pipe (a report asks at the end)."""
        while not self.gone:
            self._read(None)
            serve()


class _Engines:
    """The engine processes of a live capture, and this process's ends of their pipes: the
    batches they send, the control pipes, and the pipes their answers to ring requests come
    back on."""

    def __init__(
        self, sources: list[Source], config: EngineConfig, requests: RingRequests | None
    ) -> None:
        context = multiprocessing.get_context("fork")
        self.receivers: dict[Connection, int] = {}
        self.controls: list[int] = []
        self.answers: list[Connection] = []
        self.children: list[multiprocessing.process.BaseProcess] = []
        self.stopped_since = 0.0
        self.ended = False
        self.requests = requests
        shards = len(sources)
        for shard, source in enumerate(sources):
            receiver, sender = context.Pipe(duplex=False)
            self.receivers[receiver] = shard
            answers, answer = context.Pipe(duplex=False)
            self.answers.append(answers)
            control_read, control_write = os.pipe()
            self.controls.append(control_write)
            shard_config = replace(config, shard=shard, shards=shards, kernel_sharded=True)
            others = [*self.controls, *(r.fileno() for r in [*self.receivers, *self.answers])]
            child = context.Process(
                target=_live_engine_process,
                args=(source, shard_config, (sender, answer), control_read, others),
                name=f"smtptop-engine-{shard}",
            )
            child.start()
            self.children.append(child)
            sender.close()
            answer.close()
            os.close(control_read)
        if requests is not None:
            requests.attach(list(zip(self.controls, self.answers, strict=True)))

    def stop(self) -> None:
        """Ask every engine to stop capturing and send what it holds."""
        if not self.stopped_since:
            self.stopped_since = time.monotonic()
            self._tell(_CONTROL.pack(b"S", 0, 0.0, 0, b""))

    def end(self, at: float) -> None:
        """Every engine has stopped: tell them when the capture ended.  They then answer
        ring requests until their control pipes close."""
        self.stop()
        self._tell(_CONTROL.pack(b"T", 0, at, 0, b""))
        self.ended = True

    def _tell(self, message: bytes) -> None:
        for fd in self.controls:
            with contextlib.suppress(BrokenPipeError):  # it died: its pipe says so
                os.write(fd, message)

    def close(self) -> None:
        if self.requests is not None:
            self.requests.detach()
        for fd in self.controls:
            os.close(fd)
        for connection in [*self.receivers, *self.answers]:
            connection.close()
        for child in self.children:
            child.join(1)
            if child.is_alive():
                child.kill()  # engines ignore SIGTERM: it is the parent's to handle
                child.join()


class RingRequests:
    """Questions to a live capture's engine processes about what their evidence rings hold
    (:mod:`smtptop.ring`), from any thread, one at a time.  Each engine answers on a pipe of
    its own, between two runs of its loop; an answer to an earlier question that timed out
    is recognised by its number and passed over."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: list[tuple[int, Connection]] = []
        self._number = 0

    def attach(self, engines: list[tuple[int, Connection]]) -> None:
        with self._lock:
            self._engines = engines

    def detach(self) -> None:
        with self._lock:
            self._engines = []

    def ask(self, ip: str | None) -> tuple[HostPackets, dict[str, HostPackets]]:
        """What the rings hold of ``ip`` (None: of every host they saw), and what they say
        of a host they do not hold (their budget, all engines together, and the packets of
        hosts they had no room for).  Raises EngineFailed when the engines cannot answer."""
        address = b"" if ip is None else ipaddress.ip_address(ip).packed
        with self._lock:
            if not self._engines:
                raise EngineFailed("the capture's analysis processes have ended")
            self._number = number = self._number % 0xFFFFFFFF + 1
            message = _CONTROL.pack(b"P", number, 0.0, len(address), address)
            try:
                for fd, _ in self._engines:
                    os.write(fd, message)
            except OSError:
                raise EngineFailed("an analysis process has ended") from None
            deadline = time.monotonic() + ASK_SECONDS
            absent, found, parts = HostPackets(), dict[str, HostPackets](), Counter[str]()
            failure: EngineFailed | None = None
            for _, answers in self._engines:  # every one read: an answer left would block it
                try:
                    budget, unrecorded, held = _answer(answers, number, deadline)
                except EngineFailed as exc:
                    failure = failure or exc
                    continue
                absent.budget += budget
                absent.unrecorded += unrecorded
                for packed, packets, not_kept, not_kept_bytes in held:
                    ip = str(ipaddress.ip_address(packed))
                    host = found.setdefault(ip, HostPackets())
                    host.packets += packets
                    host.not_kept += not_kept
                    host.not_kept_bytes += not_kept_bytes
                    parts[ip] += 1
        if failure is not None:
            raise failure
        for ip, host in found.items():
            if parts[ip] > 1:  # the fanout gives a host to one engine: in the order it came
                host.packets.sort(key=itemgetter(0))
            host.budget = absent.budget
        return absent, found


def _answer(answers: Connection, number: int, deadline: float) -> tuple[int, int, list[Any]]:
    try:
        while answers.poll(max(0.0, deadline - time.monotonic())):
            reply = marshal.loads(answers.recv_bytes())
            if reply[0] == number:
                return reply[1], reply[2], reply[3]
    except (EOFError, OSError):
        raise EngineFailed("an analysis process ended before it answered") from None
    raise EngineFailed("an analysis process did not answer in time")


def live_batches(
    sources: list[Source],
    config: EngineConfig,
    stop: StopFlag,
    requests: RingRequests | None = None,
) -> Iterator[LiveBatch | None]:
    """Fork an engine process for each source (the sockets of a PACKET_FANOUT group) and pass
    on their batches as they come; None when nothing came for a while, so that the caller
    can look up.  Once ``stop`` is set (or every source has ended) the engines close their
    connections at the time of the last packet any of them saw and send what is left; the
    last batch is ``finished``, with the final counters.  ``requests`` reaches the engines'
    rings until the generator is closed, so also when handed the finished batch."""
    engines: _Engines | None = None
    try:
        engines = _Engines(sources, config, requests)
        for source in sources:
            source.close()  # this process's copies: each socket is read by its engine
        yield from _passed_on(engines, stop)
    finally:
        for source in sources:
            source.close()
        if engines is not None:
            engines.close()


def _passed_on(engines: _Engines, stop: StopFlag) -> Iterator[LiveBatch | None]:
    shards = len(engines.children)
    latest: list[tuple[Stats, int, list[tuple[str, int]]]] = [(Stats(), 0, [])] * shards
    last_seen: dict[int, float] = {}  # engines stopped, and the last packet each saw
    running = set(range(shards))
    while running:
        if stop.is_set():
            engines.stop()
        if len(last_seen) == shards and not engines.ended:
            engines.end(max(last_seen.values()))
        if engines.stopped_since and time.monotonic() - engines.stopped_since > STOP_GRACE:
            raise EngineFailed("an analysis process did not stop when asked")
        waiting = [r for r, shard in engines.receivers.items() if shard in running]
        ready = multiprocessing.connection.wait(waiting, LIVE_POLL_SECONDS)
        if not ready:
            yield None
            continue
        for connection in ready:
            assert isinstance(connection, Connection)
            shard = engines.receivers[connection]
            message = _receive(connection, engines.children[shard])
            if message[0] == _FAILURE:
                raise EngineFailed(f"the analysis process failed: {message[1]}")
            _, rows, errors, counters, drops, by_source, state, last_ts = message
            latest[shard] = (Stats(*counters), drops, [(name, count) for name, count in by_source])
            if state == _STOPPED:
                last_seen[shard] = last_ts
            elif state == _ENDED:
                running.discard(shard)
            yield LiveBatch(rows, errors, *_added(latest))
    yield LiveBatch([], [], *_added(latest), finished=True)


def _added(
    latest: list[tuple[Stats, int, list[tuple[str, int]]]],
) -> tuple[Stats, int, list[tuple[str, int]]]:
    """The engines' counters and drops together: each saw packets of its own, so all add;
    the drops by interface too (each engine reads a socket of every interface)."""
    parts = [part for part, _, _ in latest]
    skipped: dict[str, int] = {}
    for part in parts:
        for reason, count in part.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    records = Stats(packets=sum(p.packets for p in parts), bytes=sum(p.bytes for p in parts),
                    skipped=skipped)  # fmt: skip
    by_source: dict[str, int] = {}
    for _, _, drops in latest:
        for name, count in drops:
            by_source[name] = by_source.get(name, 0) + count
    total = sum(drops for _, drops, _ in latest)
    return _connections_added(records, parts), total, list(by_source.items())


def _live_engine_process(
    source: Source,
    config: EngineConfig,
    senders: tuple[Connection, Connection],
    control_fd: int,
    others: list[int],
) -> None:
    """The child: capture from its socket, run the engine, send rows and counters, until the
    control pipe says stop (or the source ends); then close what is open when told the end
    time, send the rest, and answer ring requests until the parent closes the control pipe.
    ``others`` are the parent's ends of the pipes (this engine's and those forked before):
    held here, they would keep the engines from seeing the parent close them, or end."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the parent's to handle: it stops us
        signal.signal(signum, signal.SIG_IGN)
    for fd in others:
        os.close(fd)
    sender, answers = senders
    control = _Controlled(control_fd)
    errors: list[str] = []
    analyzer = Analyzer(config, errors.append)
    stats = analyzer.stats

    def send(state: int) -> None:
        counters = [getattr(stats, f.name) for f in fields(Stats)]
        rows = encode(analyzer.take())
        drops, by_source = source.drop_counts()
        message = (_BATCH, rows, errors[:], counters, drops, by_source, state, analyzer.last_ts)
        sender.send_bytes(marshal.dumps(message))
        errors.clear()

    def serve() -> None:
        ring = analyzer.ring
        for number, address in control.requests:
            held = []
            if ring is not None:
                for client in [address] if address else list(ring.hosts):
                    kept = ring.packets_of(client)
                    if kept.packets or kept.not_kept:
                        held.append((client, kept.packets, kept.not_kept, kept.not_kept_bytes))
            budget, unrecorded = (ring.budget, ring.unrecorded) if ring is not None else (0, 0)
            answers.send_bytes(marshal.dumps((number, budget, unrecorded, held)))
        control.requests.clear()

    try:
        bursts = Bursts(source.frames(control))
        sent = time.monotonic()
        while not bursts.ended:
            analyzer.feed(bursts.next(sent + LIVE_BATCH_SECONDS), LIVE_BATCH_EVENTS)
            if len(analyzer.out) >= LIVE_BATCH_EVENTS or (
                time.monotonic() - sent >= LIVE_BATCH_SECONDS
            ):
                send(_RUNNING)
                sent = time.monotonic()
            serve()
        send(_STOPPED)
        end = control.end_time(serve)
        if end is None:
            return
        analyzer.finish(end)
        send(_ENDED)
        control.serve_until_gone(serve)
    except (BrokenPipeError, ConnectionResetError):
        return
    except Exception as exc:  # reported by the parent as one line, not a child traceback
        with contextlib.suppress(OSError):
            sender.send_bytes(marshal.dumps((_FAILURE, f"{type(exc).__name__}: {exc}")))
    finally:
        source.close()
        sender.close()
        answers.close()


class ForkedFeeder(Feeding):
    """The monitor's feeder for a :class:`Parallel` source: passes on what its engine
    processes send (:func:`live_batches`)."""

    source: Parallel
    _drops = 0  # the kernel's, on every socket of the group
    _by_source: tuple[tuple[str, int], ...] = ()  # those drops by interface
    requests: RingRequests | None = None  # made as the engines start, with evidence buffers

    def _drop_counts(self) -> tuple[int, list[tuple[str, int]]]:
        return self._drops, list(self._by_source)

    def host_packets(self, ip: str) -> HostPackets | None:
        if self.requests is None:
            return None
        absent, held = self.requests.ask(ip)
        return held.get(ip) or absent

    def _run(self) -> None:
        if self.config.evidence_buffer:
            self.requests = RingRequests()
        try:
            parts, config, stop = self.source.parts, self.config, self.stop_event
            for batch in live_batches(parts, config, stop, self.requests):
                if batch is None:
                    continue
                self.stats, self._drops = batch.stats, batch.kernel_drops
                self._by_source = tuple(batch.by_source)
                if self.on_error is not None:
                    for error in batch.errors:
                        self.on_error(error)
                if batch.events or not batch.finished:
                    self._hand_over(batch.events)
        except EngineFailed as exc:
            self._failure = str(exc)
