"""Running the engine for ``smtptop report``: capture files or a live interface in, an
:class:`Analysis` out (the model, the engine's counters, warnings and the verdicts).

What is shown of it, and how, is :mod:`smtptop.render`'s job.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from smtptop.analyzer import DEFAULT_PORTS, Analyzer, EngineConfig, Stats
from smtptop.capture import CaptureFile, mirror_hint
from smtptop.decode import SKIP_NON_TCP, STANDARD_MIRRORS, MirrorPorts
from smtptop.detect import VERDICT_ORDER, DetectConfig, Detector, Rating, Verdict
from smtptop.model import Host, Model, apply, rank
from smtptop.pipeline import (
    APPLY_EVERY,
    EngineBatch,
    EngineFailed,
    RingRequests,
    default_workers,
    engine_batches,
    live_batches,
)
from smtptop.ring import HostPackets
from smtptop.source import Bursts, Parallel, Source
from smtptop.wire import encode

LIVE_APPLY_SECONDS = 0.05  # a live capture's runs end this often, to check the deadline


@dataclass(slots=True)
class Analysis:
    """The result of analysing some files: the model, the engine's counters, file notes,
    and the detector that judges the hosts."""

    model: Model
    stats: Stats
    warnings: list[str] = field(default_factory=list)
    detector: Detector | None = None
    kernel_drops: int = 0  # live capture: packets the kernel dropped before they were read
    source_drops: list[tuple[str, int]] = field(default_factory=list)  # by interface
    recorded: dict[str, HostPackets] | None = None  # live: each host's packets its ring kept

    def __post_init__(self) -> None:
        if self.detector is None:
            self.detector = Detector(self.model)

    def verdicts(self) -> dict[str, Verdict]:
        assert self.detector is not None
        return self.detector.evaluate()


def analyze(
    paths: Sequence[str],
    *,
    ports: Iterable[int] = DEFAULT_PORTS,
    lan: Iterable[str] = (),
    show_credentials: bool = False,
    detect: DetectConfig | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    workers: int | None = None,
    max_bytes: int | None = None,
    mirrors: MirrorPorts = STANDARD_MIRRORS,
) -> Analysis:
    """Analyse capture files as one capture, their records merged by timestamp (see
    :mod:`smtptop.merge`).  Raises CaptureError if a file cannot be opened.

    ``progress`` is called now and then with the bytes read of all the files together,
    the packets so far and the bytes of capture data so far (after decompression: a gzip
    bomb shows there).  ``workers`` runs the engine in that many processes of their own (0:
    in this one; None: one per CPU but this one's, when there is enough to read); the per-host
    figures and verdicts are the same.  ``max_bytes`` stops reading
    a file after that many bytes of capture data, with a warning.  ``mirrors`` names the UDP
    ports mirrors send to."""
    ports = frozenset(ports)
    captures = [CaptureFile(path, max_bytes, ports=ports, mirrors=mirrors) for path in paths]
    if workers is None:
        workers = default_workers(captures)
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, Stats(), detector=Detector(model, detect))
    config = EngineConfig(ports=ports, mirrors=mirrors)
    for message in engine_batches(captures, config, workers=workers):
        if isinstance(message, EngineBatch):
            apply(model, message.events)
            if on_error is not None:
                for error in message.errors:
                    on_error(error)
            if progress is not None:
                progress(message.position, message.packets, message.unpacked)
        else:
            analysis.stats = message.stats
            analysis.warnings.extend(message.warnings)
    stats = analysis.stats
    hint = (
        None
        if stats.smtp_packets or not stats.skipped.get(SKIP_NON_TCP)
        else mirror_hint(paths, ports)
    )
    if hint is not None:
        analysis.warnings.append(hint)
    return analysis


def analyze_zeek(
    paths: Sequence[str],
    *,
    ports: Iterable[int] = DEFAULT_PORTS,
    lan: Iterable[str] = (),
    show_credentials: bool = False,
    detect: DetectConfig | None = None,
) -> Analysis:
    """Analyse Zeek's logs (files, or folders of them) instead of packets.  Raises ZeekError
    when a log cannot be read at all; what it cannot use is counted in warnings."""
    from smtptop.zeekfiles import LogReading, find_logs, read_logs

    logs = find_logs(paths)
    model = Model(lan=lan, show_credentials=show_credentials)
    model.from_logs = True
    analysis = Analysis(model, Stats(), detector=Detector(model, detect))
    reading = LogReading()
    for rows in read_logs(logs, frozenset(ports), reading):
        apply(model, rows)
    analysis.stats.log_records = reading.records
    analysis.stats.skipped = reading.skipped()
    analysis.warnings.extend(reading.warnings())
    return analysis


def analyze_live(
    source: Source,
    *,
    duration: float,
    ports: Iterable[int] = DEFAULT_PORTS,
    lan: Iterable[str] = (),
    show_credentials: bool = False,
    detect: DetectConfig | None = None,
    on_error: Callable[[str], None] | None = None,
    evidence_buffer: int = 0,
    evidence_hosts: Callable[[Analysis], Sequence[str]] | None = None,
    mirrors: MirrorPorts = STANDARD_MIRRORS,
) -> Analysis:
    """Capture from a live source for ``duration`` seconds (or until Ctrl-C) and analyse:
    in this process, or, for a :class:`Parallel` source, in an engine process per socket.
    With ``evidence_buffer``, each client's latest SMTP packets are kept in that many bytes,
    and those of the hosts ``evidence_hosts`` picks at the end come back in ``recorded``,
    for their evidence bundles."""
    config = EngineConfig(ports=frozenset(ports), mirrors=mirrors, evidence_buffer=evidence_buffer)
    wanted = evidence_hosts if evidence_buffer else None
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, Stats(), detector=Detector(model, detect))
    deadline = time.monotonic() + duration
    if isinstance(source, Parallel):
        _forked_live(source, config, analysis, deadline, on_error, wanted)
    else:
        _inline_live(source, config, analysis, deadline, on_error, wanted)
    if analysis.kernel_drops:
        each = ", ".join(f"{name} {count}" for name, count in analysis.source_drops)
        analysis.warnings.append(
            f"the kernel dropped {analysis.kernel_drops} packets: the counts are low"
            + (f" ({each})" if len(analysis.source_drops) > 1 else "")
        )
    return analysis


def _inline_live(
    source: Source,
    config: EngineConfig,
    analysis: Analysis,
    deadline: float,
    on_error: Callable[[str], None] | None,
    wanted: Callable[[Analysis], Sequence[str]] | None,
) -> None:
    analyzer = Analyzer(config, on_error)
    analysis.stats = analyzer.stats
    model = analysis.model
    stop = threading.Event()
    bursts = Bursts(source.frames(stop))
    try:
        while not bursts.ended:
            analyzer.feed(bursts.next(min(deadline, time.monotonic() + LIVE_APPLY_SECONDS)))
            if len(analyzer.out) >= APPLY_EVERY:
                apply(model, encode(analyzer.take()))
            if time.monotonic() >= deadline:
                stop.set()
    except KeyboardInterrupt:
        analysis.warnings.append("interrupted: the report covers the capture until then")
    finally:
        analysis.kernel_drops, analysis.source_drops = source.drop_counts()
        source.close()
    analyzer.finish()
    apply(model, encode(analyzer.take()))
    ring = analyzer.ring
    if ring is not None and wanted is not None:
        analysis.recorded = {ip: ring.packets(ip) for ip in wanted(analysis)}


def _forked_live(
    source: Parallel,
    config: EngineConfig,
    analysis: Analysis,
    deadline: float,
    on_error: Callable[[str], None] | None,
    wanted: Callable[[Analysis], Sequence[str]] | None,
) -> None:
    """Ctrl-C (or SIGTERM) stops the engines rather than this loop, which then takes what
    they send as they finish: a KeyboardInterrupt raised while it waits for them would end
    their pipes with the rest of the capture still in them."""
    stop, interrupted = threading.Event(), threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        interrupted.set()
        stop.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, interrupt) for signum in handled} if main else {}
    requests = RingRequests() if wanted is not None else None
    try:
        for batch in live_batches(source.parts, config, stop, requests):
            if time.monotonic() >= deadline:
                stop.set()
            if batch is None:
                continue
            apply(analysis.model, batch.events)
            if on_error is not None:
                for error in batch.errors:
                    on_error(error)
            analysis.stats, analysis.kernel_drops = batch.stats, batch.kernel_drops
            analysis.source_drops = batch.by_source
            if batch.finished and requests is not None and wanted is not None:
                analysis.recorded = _asked(requests, wanted(analysis), analysis)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interrupted.is_set():
        analysis.warnings.append("interrupted: the report covers the capture until then")


def _asked(
    requests: RingRequests, hosts: Sequence[str], analysis: Analysis
) -> dict[str, HostPackets]:
    """The packets the engines' rings kept of each host (they answer until closed); when
    they cannot, a warning, and the bundles say they hold none."""
    recorded = {}
    try:
        for ip in hosts:
            absent, held = requests.ask(ip)
            recorded[ip] = held.get(ip, absent)
    except EngineFailed as exc:
        analysis.warnings.append(f"the evidence buffer's packets could not be had: {exc}")
    return recorded


def ranked_hosts(model: Model, verdicts: dict[str, Verdict] | None = None) -> list[Host]:
    """Spambots first, then suspicious hosts; within each, the most distinct destinations,
    then the most rejections."""
    judged = verdicts or {}

    def key(host: Host) -> tuple[object, ...]:
        verdict = judged.get(host.ip)
        order = VERDICT_ORDER[verdict.verdict] if verdict else VERDICT_ORDER[Rating.UNJUDGED]
        return (order, -(verdict.score if verdict else 0), *rank(host))

    return sorted(model.hosts.values(), key=key if judged else rank)
