"""Standard input read as a capture file is (``-r -``, ``report -``).

Not compiled with the core: it subclasses :class:`io.RawIOBase`, which mypyc does not.
"""

from __future__ import annotations

import io
from typing import BinaryIO


class Rewindable(io.RawIOBase):
    """A pipe as the reader reads a file: a read returns what has arrived (up to the size
    asked), and the first bytes, read to tell the format, can be read again (a pipe cannot
    seek back): until :meth:`replayed`, everything read is kept, and ``seek(0)`` reads it
    again."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._kept = b""  # read while the format was being told
        self._again = b""  # of those, what is to be read again
        self._keeping = True
        self.taken = 0  # bytes read from the pipe

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._again:
            data, self._again = self._again[:size], self._again[size:]
            return data
        data = self._raw.read(size) or b""
        self.taken += len(data)
        if self._keeping:
            self._kept += data
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset or whence or not self._keeping:
            raise io.UnsupportedOperation("a stream is read once")
        self._again = self._kept
        return 0

    def replayed(self) -> None:
        """The format is told: what was kept is read once more, then the pipe."""
        self._keeping = False
        self._kept = b""

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()
