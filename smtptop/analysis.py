"""Running the engine for ``smtptop report``: capture files or a live interface in, an
:class:`Analysis` out (the model, the engine's counters, warnings and the verdicts).

What is shown of it, and how, is :mod:`smtptop.render`'s job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from smtptop.analyzer import DEFAULT_PORTS, Analyzer, EngineConfig, Stats
from smtptop.capture import CaptureFile
from smtptop.detect import VERDICT_ORDER, DetectConfig, Detector, Rating, Verdict
from smtptop.model import Host, Model, apply, rank
from smtptop.pipeline import APPLY_EVERY, EngineBatch, default_workers, engine_batches
from smtptop.source import Bursts, Source
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
    progress: Callable[[str, int, int, int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    workers: int | None = None,
    max_bytes: int | None = None,
) -> Analysis:
    """Analyse capture files in order.  Raises CaptureError if a file cannot be opened.

    ``progress`` is called now and then with the file being read, the bytes read of it,
    the packets so far and the bytes of capture data so far (after decompression: a gzip
    bomb shows there).  ``workers`` runs the engine in that many processes of their own (0:
    in this one; None: one per CPU but this one's, when there is enough to read); the per-host
    figures and verdicts are the same.  ``max_bytes`` stops reading
    a file after that many bytes of capture data, with a warning."""
    captures = [CaptureFile(path, max_bytes, ports=frozenset(ports)) for path in paths]
    if workers is None:
        workers = default_workers(captures)
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, Stats(), detector=Detector(model, detect))
    config = EngineConfig(ports=frozenset(ports))
    for message in engine_batches(captures, config, workers=workers):
        if isinstance(message, EngineBatch):
            apply(model, message.events)
            if on_error is not None:
                for error in message.errors:
                    on_error(error)
            if progress is not None:
                progress(message.path, message.position, message.packets, message.unpacked)
        else:
            analysis.stats = message.stats
            analysis.warnings.extend(message.warnings)
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
) -> Analysis:
    """Capture from a live source for ``duration`` seconds (or until Ctrl-C) and analyse."""
    analyzer = Analyzer(EngineConfig(ports=frozenset(ports)), on_error)
    model = Model(lan=lan, show_credentials=show_credentials)
    analysis = Analysis(model, analyzer.stats, detector=Detector(model, detect))
    stop = threading.Event()
    deadline = time.monotonic() + duration
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
        drops = source.kernel_drops()
        source.close()
    if drops:
        analysis.warnings.append(f"the kernel dropped {drops} packets: the counts are low")
    analyzer.finish()
    apply(model, encode(analyzer.take()))
    return analysis


def ranked_hosts(model: Model, verdicts: dict[str, Verdict] | None = None) -> list[Host]:
    """Spambots first, then suspicious hosts; within each, the most distinct destinations,
    then the most rejections."""
    judged = verdicts or {}

    def key(host: Host) -> tuple[object, ...]:
        verdict = judged.get(host.ip)
        order = VERDICT_ORDER[verdict.verdict] if verdict else VERDICT_ORDER[Rating.UNJUDGED]
        return (order, -(verdict.score if verdict else 0), *rank(host))

    return sorted(model.hosts.values(), key=key if judged else rank)
