"""Where analysis failures go: a log file, so that a bug seen once on real traffic can be
reported with the packet that caused it, while the capture carries on."""

from __future__ import annotations

import os
import stat
import threading
import time

MAX_LINES = 10000
FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def default_path() -> str:
    """For the user smtptop runs as: ask after root has been given up."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "smtptop", "errors.log")


class ErrorLog:
    """Appends one line per failure, up to a bound; the file is made on the first one, mode
    0600 (a failure may quote the packet), and only ever a regular file of this user's is
    appended to, never a link planted in its place.  Failures that could not be written are
    counted in ``unlogged``, and ``problem`` says why, for the one line that reports them."""

    def __init__(self, path: str, limit: int = MAX_LINES) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.unlogged = 0
        self.problem = ""
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            if self.written >= self.limit:
                return
            if self.problem:
                self.unlogged += 1
                return
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                self._append(f"{stamp} {message}\n")
            except OSError as exc:
                self.problem = exc.strerror or str(exc)
                self.unlogged += 1
                return
            self.written += 1

    def _append(self, line: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        fd = os.open(self.path, FLAGS, 0o600)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise OSError(0, "not a regular file of this user's")
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
