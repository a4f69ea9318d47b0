"""Where analysis failures go: a log file, so that a bug seen once on real traffic can be
reported with the packet that caused it, while the capture carries on."""

from __future__ import annotations

import os
import threading
import time

MAX_LINES = 10000


def default_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "smtptop", "errors.log")


class ErrorLog:
    """Appends one line per failure, up to a bound; the file is made on the first one."""

    def __init__(self, path: str, limit: int = MAX_LINES) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.failed = False
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            if self.written >= self.limit or self.failed:
                return
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as log:
                    log.write(f"{stamp} {message}\n")
            except OSError:
                self.failed = True  # the count on screen still says how many there were
                return
            self.written += 1
