"""Run every benchmark, then rebuild BENCHMARKS.md from the result files they wrote.

Usage::

    python bench/all.py               # throughput, memory, Zeek logs, start-up, TUI redraw
    python bench/all.py --live        # and live capture too (root, Debian's tcpreplay)
    python bench/all.py --page-only   # rebuild BENCHMARKS.md from bench/results as it is

Each benchmark measures smtptop against a baseline taken in the same run on the same
machine and writes ``bench/results/<name>.md``; BENCHMARKS.md is those files put together,
never typed by hand.  Run it on an otherwise idle machine: the figures are times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PAGE = REPO / "BENCHMARKS.md"

# (result file, the command that writes it, needs root and tcpreplay)
BENCHMARKS = (
    ("throughput", ["bench/throughput.py"], False),
    ("merge", ["bench/merge.py"], False),
    ("memory", ["bench/memory.py"], False),
    ("zeek_logs", ["bench/zeek_logs.py"], False),
    ("startup", ["bench/startup.py", "--runs", "10"], False),
    ("tui_redraw", ["bench/tui_redraw.py"], False),
    ("live_capture", ["bench/live_capture.py"], True),
    ("live_tui", ["bench/live_capture.py", "--tui"], True),  # the monitor alone, quicker
)
PLOTS = {"throughput": "throughput.svg"}

INTRO = """# Benchmarks

`python bench/all.py` runs every benchmark below and rebuilds this page from the files they
write to `bench/results/` (`--live` adds the live-capture one, which needs root and Debian's
`tcpreplay`).  Every figure is measured against a baseline taken in the same run, on the
same machine: tshark, the tcpdump BPF pass and scapy's raw reader for throughput, tcpdump
for live capture, the same sessions as a capture for Zeek's logs.  Where both builds are
measured (the core compiled with mypyc, and pure Python: see the README), each row names its
build.
CI runs a small version of each benchmark (`--smoke`) and checks its output, not its speed.
"""


def run(live: bool) -> None:
    for name, command, needs_root in BENCHMARKS:
        if needs_root and not live:
            continue
        print(f"== {name}: {' '.join(command)}", flush=True)
        subprocess.run([sys.executable, *command], cwd=REPO, check=True)


def page() -> str:
    parts = [INTRO]
    for name, _command, _root in BENCHMARKS:
        path = RESULTS / f"{name}.md"
        if not path.exists():
            continue
        lines = path.read_text().rstrip("\n").splitlines()
        body = [f"#{line}" if line.startswith("#") else line for line in lines]
        parts.append("\n".join(body))
        plot = PLOTS.get(name)
        if plot and (RESULTS / plot).exists():
            parts.append(f"![{name}](bench/results/{plot})")
        parts.append(f"Source: [`bench/results/{name}.md`](bench/results/{name}.md).")
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", action="store_true", help="also the live-capture benchmark")
    parser.add_argument("--page-only", action="store_true", help="only rebuild BENCHMARKS.md")
    args = parser.parse_args()
    if not args.page_only:
        run(args.live)
    PAGE.write_text(page())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
