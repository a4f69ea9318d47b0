"""How well smtptop.helo tells real host names from generated ones, and how fast.

Uses the tables of tests/test_helo.py (a hand-written table of real office, home and vendor
host names; seeded generators of random names) and prints: the data file's size, the
threshold refitted by cross-validation next to the one in the module, false positives on the
real table (and on its names with words the training list lacks), glued initials on the
training surnames, the detection rate of each generator, and microseconds per call (timeit).

Usage::

    python bench/helo_names.py
"""

from __future__ import annotations

import re
import sys
import time
import timeit
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_helo  # the tables live with the test that asserts on them

from smtptop import helo

INITIALS = "abcdefghijklmnoprstuvw"
CALLS = 20_000
HARD = "English letter frequencies"


def first_label(name: str) -> str:
    return name.split(".", 1)[0]


def main() -> None:
    data = resources.files("smtptop").joinpath("data", "helo_names.txt").read_bytes()
    words = helo.training_words()
    names = helo.training_names(words)
    counts = ", ".join(f"{len(words[section])} {section}" for section in helo.SECTIONS)
    print(f"data file: {len(data):,} bytes; {counts}; {len(names):,} training names")

    started = time.perf_counter()
    centre, threshold = helo.fit(words, helo.FALSE_ALARM)
    took = time.perf_counter() - started
    print(
        f"fit ({helo.FALSE_ALARM:.0%} of held-out real names below, 5 folds, {took:.1f} s): "
        f"CENTRE {centre:.4f} THRESHOLD {threshold:.4f}; "
        f"module: {helo.CENTRE:.4f} {helo.THRESHOLD:.4f}"
    )

    known = {word for section in words.values() for word in section}
    unseen = [
        name
        for name in test_helo.REAL_NAMES
        if any(run not in known for run in re.findall(r"[a-z]{3,}", first_label(name).lower()))
    ]
    for title, table in (("real table", test_helo.REAL_NAMES), ("  with unseen words", unseen)):
        wrong = [name for name in table if test_helo.judged_random(name)]
        print(f"{title}: {len(wrong)} of {len(table)} called random", *wrong)
    glued = [i + surname for surname in words["surname"] for i in INITIALS]
    wrong = [name for name in glued if helo.random_looking(name)]
    print(f"initial + training surname (kbrandt): {len(wrong)} of {len(glued):,} called random")

    rates = test_helo.detection_rates()
    for kind, rate in rates.items():
        hard = " (the hard case)" if kind == HARD else ""
        print(f"caught, {kind}{hard}: {rate:.1%} of {len(test_helo.RANDOM[kind])}")
    print(f"caught, all generators: {sum(rates.values()) / len(rates):.1%}")

    helo._model.cache_clear()
    started = time.perf_counter()
    helo.random_looking("warm-up")
    print(f"model load (once, on first use): {(time.perf_counter() - started) * 1000:.0f} ms")
    labels = [first_label(name) for name in test_helo.REAL_NAMES] + [
        first_label(name) for names in test_helo.RANDOM.values() for name in names
    ]
    cycle = iter(labels * (CALLS // len(labels) + 1))
    seconds = timeit.timeit(lambda: helo.random_looking(next(cycle)), number=CALLS)
    print(f"random_looking: {seconds / CALLS * 1e6:.1f} µs per label ({CALLS:,} calls)")
    cycle = iter(test_helo.REAL_NAMES * (CALLS // len(test_helo.REAL_NAMES) + 1))
    seconds = timeit.timeit(
        lambda: helo.helo_anomalies(next(cycle), test_helo.CLIENT, direct_to_mx=True), number=CALLS
    )
    print(f"helo_anomalies: {seconds / CALLS * 1e6:.1f} µs per name ({CALLS:,} calls)")


if __name__ == "__main__":
    main()
