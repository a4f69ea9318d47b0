"""Several capture files read as one capture, in the order of their packets' timestamps.

Mirrors from several sites, or captures on several interfaces, overlap in time: read one
after the other, a session seen in two of them would be folded out of order.  A k-way merge
takes, each time, the earliest record any file holds next (ties in the order the files were
given), holding one record per file.  Pieces of one capture cut by ``tcpdump -C`` or ``-G``
do not overlap, so they are read exactly as one after the other would read them; and while
one file stays ahead of the others' next records, the merge only compares each of its
records with one number, which keeps that case nearly as cheap as reading in turn.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable, Sequence

from smtptop.capture import Frame


def by_time(
    captures: Sequence[Iterable[Frame]], on_switch: Callable[[int], None] | None = None
) -> Generator[Frame, None, None]:
    """The records of ``captures`` merged by timestamp, ties broken by their order in
    ``captures``; within one capture the order is kept, whatever its clock says.
    ``on_switch`` is told the index of the capture the next records come from each time it
    changes, before that record is handed over: everything handed over until then came from
    the capture it was told before."""
    readers = [iter(capture) for capture in captures]
    try:
        heap: list[tuple[float, int, Frame]] = []
        for index, reader in enumerate(readers):
            first = next(reader, None)
            if first is not None:
                heap.append((first[0], index, first))
        heapq.heapify(heap)
        while heap:
            _, index, record = heapq.heappop(heap)
            if on_switch is not None:
                on_switch(index)
            reader = readers[index]
            if not heap:  # the others are done: the rest of this one, as it comes
                yield record
                yield from reader
                return
            next_ts, next_index, _ = heap[0]
            while True:
                yield record
                following = next(reader, None)
                if following is None:
                    break
                ts = following[0]
                if ts > next_ts or (ts == next_ts and index > next_index):
                    heapq.heappush(heap, (ts, index, following))
                    break
                record = following
    finally:
        for reader in readers:
            close = getattr(reader, "close", None)
            if close is not None:
                close()
