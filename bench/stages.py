"""Where ``smtptop report``'s time goes: CPU microseconds per packet for each stage, on one
capture, in one process (``time.process_time``), so a change can be aimed at the stage that
costs.

The stages, in the order a report runs them (the two-process report runs the first two in
the engine process, the rest in the model process):

* read: iterating the capture's records (:class:`~smtptop.capture.CaptureFile` with its
  prefilter), nothing else;
* engine: the engine on those records, less the read, its events encoded as rows (measured
  as read and engine together, ``engine_batches(..., workers=0)``, as a one-process
  report runs them);
* marshal: ``marshal.dumps`` and ``marshal.loads`` of each batch of rows, as they cross the
  pipe (the pipe itself is not counted);
* fold: :func:`smtptop.model.apply` on the rows, with the detector subscribed to closed
  sessions as the report has it;
* detect: ``Detector(model).evaluate()``, the verdicts for every host.

It imports whichever smtptop the interpreter finds, so it measures the build being compared:
``--python`` runs it under another interpreter (a virtualenv's).  Prints one JSON object.

Usage::

    python bench/stages.py CAPTURE [--python .venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import sys
import time
from pathlib import Path
from typing import Any

STAGES = ("read", "engine", "marshal", "fold", "detect")


def measure(path: str) -> dict[str, Any]:
    """Run every stage over the capture; the engine's batches stream through the later
    stages, so memory holds one batch at a time."""
    from smtptop.analyzer import DEFAULT_PORTS, EngineConfig
    from smtptop.capture import CaptureFile
    from smtptop.detect import Detector
    from smtptop.model import Model, apply
    from smtptop.pipeline import EngineBatch, engine_batches

    clock = time.process_time
    ports = frozenset(DEFAULT_PORTS)
    spent = dict.fromkeys(STAGES, 0.0)

    began = clock()
    packets = sum(1 for _ in CaptureFile(path, None, ports=ports))
    spent["read"] = clock() - began

    model = Model()
    detector = Detector(model)  # before the fold: it follows closed sessions
    config = EngineConfig(ports=ports)
    batches = iter(engine_batches([CaptureFile(path, None, ports=ports)], config, workers=0))
    while True:
        began = clock()
        message = next(batches, None)
        spent["engine"] += clock() - began
        if message is None:
            break
        if not isinstance(message, EngineBatch):
            continue
        began = clock()
        rows = marshal.loads(marshal.dumps(message.events))
        spent["marshal"] += clock() - began
        began = clock()
        apply(model, rows)
        spent["fold"] += clock() - began
    spent["engine"] = max(0.0, spent["engine"] - spent["read"])
    began = clock()
    hosts = len(detector.evaluate())
    spent["detect"] = clock() - began
    return result(path, packets, spent, hosts)


def result(path: str, packets: int, spent: dict[str, float], hosts: int) -> dict[str, Any]:
    import smtptop

    return {
        "capture": path,
        "packets": packets,
        "hosts": hosts,
        "python": sys.executable,
        "smtptop": str(Path(smtptop.__file__).parent),
        "build": smtptop.build(),
        "seconds": {name: round(spent[name], 4) for name in STAGES},
        "us_per_packet": {name: round(spent[name] / max(packets, 1) * 1e6, 3) for name in STAGES},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", help="the pcap or pcapng file to read")
    parser.add_argument("--python", help="run under this interpreter instead (a build's venv)")
    args = parser.parse_args(argv)
    if args.python:  # the same script and capture, under the build's own interpreter
        os.execv(args.python, [args.python, os.path.abspath(__file__), args.capture])
    print(json.dumps(measure(args.capture), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
